"""Writes debian/copyright (DEP-5) with the licence of every crate the binaries link.

    python3 tools/gen-copyright.py > debian/copyright

The crate list comes from `cargo tree -e normal` for ec2cached and nss-ec2 (what ships, not the
test tools). tests/e2e/test_packages.py checks the committed file is current.
"""

import re
import subprocess

out = subprocess.run(
    ["cargo", "tree", "--locked", "-e", "normal", "--prefix", "none", "-p", "ec2cached", "-p", "nss-ec2",
     "--format", "{p}|{l}"],
    check=True, capture_output=True, text=True).stdout
crates = {}
for line in out.splitlines():
    line = line.replace(" (*)", "").strip()
    if "|" not in line:
        continue
    pkg, lic = line.split("|", 1)
    m = re.match(r"(\S+) v(\S+)", pkg)
    if not m or "(/" in pkg:  # the workspace's own crates
        continue
    name, ver = m.groups()
    crates[(name, ver)] = lic.strip().replace("/", " OR ").replace("  ", " ") or "see crate"
ids = sorted({t for lic in crates.values() for t in re.findall(r"[A-Za-z0-9.\-]+", lic)} - {"OR", "AND", "WITH", "see", "crate"})

TEXTS = {
    "Apache-2.0": "On Debian systems, the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.",
    "MIT": ("Permission is hereby granted, free of charge, to any person obtaining a copy of this software and\n"
            " associated documentation files (the \"Software\"), to deal in the Software without restriction,\n"
            " including without limitation the rights to use, copy, modify, merge, publish, distribute,\n"
            " sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is\n"
            " furnished to do so, subject to the following conditions:\n .\n"
            " The above copyright notice and this permission notice shall be included in all copies or\n"
            " substantial portions of the Software.\n .\n"
            " THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING\n"
            " BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND\n"
            " NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,\n"
            " DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\n"
            " OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE."),
    "ISC": ("Permission to use, copy, modify, and/or distribute this software for any purpose with or without\n"
            " fee is hereby granted, provided that the above copyright notice and this permission notice appear\n"
            " in all copies.\n .\n"
            " THE SOFTWARE IS PROVIDED \"AS IS\" AND THE AUTHOR DISCLAIMS ALL WARRANTIES WITH REGARD TO THIS\n"
            " SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE\n"
            " AUTHOR BE LIABLE FOR ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES\n"
            " WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN ACTION OF CONTRACT,\n"
            " NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE\n"
            " OF THIS SOFTWARE."),
    "MIT-0": ("Permission is hereby granted, free of charge, to any person obtaining a copy of this software,\n"
              " to deal in the Software without restriction, including without limitation the rights to use,\n"
              " copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software.\n .\n"
              " THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND."),
    "BSD-3-Clause": ("Redistribution and use in source and binary forms, with or without modification, are permitted\n"
                     " provided that the following conditions are met:\n"
                     " 1. Redistributions of source code must retain the above copyright notice, this list of\n"
                     " conditions and the following disclaimer.\n"
                     " 2. Redistributions in binary form must reproduce the above copyright notice, this list of\n"
                     " conditions and the following disclaimer in the documentation and/or other materials provided\n"
                     " with the distribution.\n"
                     " 3. Neither the name of the copyright holder nor the names of its contributors may be used to\n"
                     " endorse or promote products derived from this software without specific prior written\n"
                     " permission.\n .\n"
                     " THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS \"AS IS\" AND ANY EXPRESS OR\n"
                     " IMPLIED WARRANTIES ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE\n"
                     " LIABLE FOR ANY DAMAGES ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE."),
    "Unicode-3.0": ("Permission is hereby granted, free of charge, to any person obtaining a copy of data files and\n"
                    " any associated documentation (the \"Data Files\") or software and any associated documentation\n"
                    " (the \"Software\") to deal in the Data Files or Software without restriction, provided that\n"
                    " this copyright and permission notice appear with all copies. See https://www.unicode.org/license.txt."),
    "Unlicense": "This is free and unencumbered software released into the public domain (https://unlicense.org).",
    "BSL-1.0": "On Debian systems, see the Boost Software License 1.0 at https://www.boost.org/LICENSE_1_0.txt.",
    "LLVM-exception": "The LLVM exception to the Apache License 2.0: https://llvm.org/LICENSE.txt.",
}

print("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
print("Upstream-Name: nss-ec2")
print("Comment: The binaries statically link these crates from crates.io (generated by")
print(" tools/gen-copyright.py from Cargo.lock; crate, version, licence):")
for (name, ver), lic in sorted(crates.items()):
    print(f" {name} {ver}: {lic}")
print(" .")
print(" Both also statically link the Rust standard library (MIT OR Apache-2.0), and")
print(" libnss_ec2.so.2 links GCC's unwinder, libgcc_eh.a (GPL-3+ WITH GCC-exception-3.1: the GCC")
print(" Runtime Library Exception allows this; on Debian systems see /usr/share/common-licenses/GPL-3).")
print()
print("Files: *")
print("Copyright: 2026 The nss-ec2 developers")
print("License: MIT or Apache-2.0")
print()
for i in ids:
    print(f"License: {i}")
    print(" " + TEXTS.get(i, "See the crate's own licence file.").replace("\n .\n", "\n .\n"))
    print()
print("License: MIT or Apache-2.0")
print(" At your option, the MIT licence or the Apache License 2.0 (both above; the source has")
print(" their full texts in LICENSE-MIT and LICENSE-APACHE).")
