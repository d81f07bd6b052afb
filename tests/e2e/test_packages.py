"""The Debian packages, built with dpkg-buildpackage and installed with dpkg into a throwaway
Debian 12 root (tests/mkchroot): nsswitch.conf in and out, real programs resolving through the
system configuration, reinstall, upgrade, purge, lintian, and the unit's hardening."""

import os
import re
import subprocess
import sys
import threading
import http.server

import pytest

from pkghelp import DNS_ADDR, FLEET, ROOT, TARGET, Root, debs, host_arch, run  # noqa: F401 (debs: a fixture)


@pytest.fixture
def root(tmp_path):
    return Root(tmp_path / "root")


@pytest.fixture
def dns(tmp_path):
    """dnsmasq on 127.0.0.78 with one name, so the chroot's `dns` source has something to find."""
    hosts = tmp_path / "dns-hosts"
    hosts.write_text("192.0.2.53 www.example.test\n")
    p = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                          f"--addn-hosts={hosts}", f"--listen-address={DNS_ADDR}", "--bind-interfaces", "--port=53",
                          "--user=root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield
    p.terminate()
    p.wait()


@pytest.fixture
def web():
    """An HTTP server on 127.0.0.1 that curl reaches through a .ec2 name."""

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello from web.tphon.ec2\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s.server_address[1]
    s.shutdown()


def test_install_resolve_reinstall_upgrade_purge(debs, root, dns, web):
    v1, v2 = debs
    original = root.nsswitch()
    assert root.hosts_line().split() == ["hosts:", "files", "dns"]

    root.dpkg_i(v1["libnss-ec2"], v1["ec2cached"])
    line = root.hosts_line()
    print("hosts: line after install:", line)
    assert line.split() == ["hosts:", "files", "ec2", "[NOTFOUND=return]", "dns"]
    st = root.sh("stat -c '%U %a' /var/lib/ec2cached; id -u ec2cached").stdout.split()
    assert st[:2] == ["ec2cached", "755"]

    # The installed daemon, as its own account, publishes; every program resolves through
    # the system nsswitch.conf.
    (root.path / "tmp" / "fleet.json").write_text(FLEET)
    r = root.sh("setpriv --reuid=ec2cached --regid=ec2cached --init-groups "
                "/usr/sbin/ec2cached refresh --from-file /tmp/fleet.json")
    assert "published /var/lib/ec2cached/hosts.snap" in r.stderr
    assert root.sh("getent hosts web.tphon.ec2").stdout.split()[:2] == ["127.0.0.1", "web.tphon.ec2"]
    assert root.sh("getent hosts localhost").stdout.split()[0] in ("127.0.0.1", "::1")
    assert root.sh("getent hosts www.example.test").stdout.split()[0] == "192.0.2.53", "dns still answers"
    assert root.sh("getent hosts nosuch.tphon.ec2", check=False).returncode == 2
    assert root.sh("python3 -c \"import socket; print(socket.gethostbyname('1.web.tphon.ec2'))\"").stdout.strip() == "127.0.0.1"
    assert root.sh(f"curl -sS http://web.tphon.ec2:{web}/").stdout == "hello from web.tphon.ec2\n"
    assert root.sh("ec2cached status").returncode == 0
    for page in ("ec2cached.8.gz", "libnss_ec2.8.gz", "nss-ec2.8.gz"):
        assert (root.path / "usr/share/man/man8" / page).exists(), page

    # Reinstall and upgrade never add it twice.
    root.dpkg_i(v1["libnss-ec2"], v1["ec2cached"])
    assert root.hosts_line().split().count("ec2") == 1
    # A daemon never runs ahead of the module (it could write a format the module cannot read):
    # ec2cached Breaks older libnss-ec2, so dpkg refuses it alone, and takes both with the module
    # first (docs/operations.md, "Versions that belong together").
    r = root.dpkg_i(v2["ec2cached"], check=False)
    assert r.returncode != 0 and "break" in r.stderr, r.stderr
    assert root.sh("dpkg-query -W -f '${Version}' ec2cached").stdout == "0.1.0"
    root.dpkg_i(v2["libnss-ec2"], v2["ec2cached"])
    assert root.sh("dpkg-query -W -f '${Version} ' ec2cached libnss-ec2").stdout.split() == ["0.1.1", "0.1.1"]
    # Nor may the module go back under the daemon.
    r = root.dpkg_i(v1["libnss-ec2"], check=False)
    assert r.returncode != 0 and "break" in r.stderr, r.stderr
    assert root.hosts_line().split().count("ec2") == 1
    assert "/etc/ec2cached.toml" in root.sh("cat /var/lib/dpkg/info/ec2cached.conffiles").stdout

    # Purge restores the file exactly and removes the state.
    root.sh("dpkg --purge ec2cached libnss-ec2")
    assert root.nsswitch() == original
    assert not (root.path / "var/lib/ec2cached").exists()
    assert root.sh("getent passwd ec2cached", check=False).returncode == 2

    # An admin who took ec2 out keeps it out across upgrades.
    root.dpkg_i(v1["libnss-ec2"], v1["ec2cached"])
    root.sh("sed -i 's/ ec2 \\[NOTFOUND=return\\]//' /etc/nsswitch.conf")
    assert root.nsswitch() == original
    root.dpkg_i(v2["libnss-ec2"], v2["ec2cached"])
    assert root.nsswitch() == original, "upgrade re-added what the admin removed"
    root.sh("dpkg --purge ec2cached libnss-ec2")
    assert root.nsswitch() == original


def test_unit_verifies_and_is_hardened(debs, tmp_path):
    v1, _ = debs
    tree = tmp_path / "x"
    run("dpkg-deb", "-x", str(v1["ec2cached"]), str(tree))
    run("dpkg-deb", "-x", str(v1["libnss-ec2"]), str(tree))
    unit = next(tree.glob("**/ec2cached.service"))
    # Boot order: it provides host names, so it is pulled in by and ordered before
    # nss-lookup.target, and tells systemd it is ready (Type=notify) only once names resolve.
    props = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            props.setdefault(k.strip(), []).extend(v.split())
    assert "nss-lookup.target" in props["Before"], props
    assert "nss-lookup.target" in props["Wants"], props
    assert props["Type"] == ["notify"], props
    assert "nss-lookup.target" not in props.get("After", []), props
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    print("exposure:", m.group(1))
    assert float(m.group(1)) <= 2.0
    # verify: the binary it names must exist; point it at the unpacked one.
    local = tmp_path / "ec2cached.service"
    local.write_text(unit.read_text().replace("/usr/sbin/ec2cached", str(tree / "usr/sbin/ec2cached")))
    # verify also looks up the Documentation= man pages: the packaged ones.
    env = {**os.environ, "MANPATH": str(tree / "usr/share/man")}
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "ec2cached.service" not in r.stderr, r.stderr


def test_lintian_has_no_errors(debs):
    v1, _ = debs
    r = subprocess.run(["lintian", "--fail-on", "error", "--display-info", str(v1["libnss-ec2"]), str(v1["ec2cached"])],
                       capture_output=True, text=True, timeout=600)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not re.search(r"^E: ", r.stdout, re.M), r.stdout


def test_packages_ship_the_right_files(debs, tmp_path):
    v1, _ = debs
    libdir = f"usr/lib/{host_arch('MULTIARCH')}"
    lib = run("dpkg-deb", "-c", str(v1["libnss-ec2"]))
    assert f"./{libdir}/libnss_ec2.so.2" in lib
    daemon = run("dpkg-deb", "-c", str(v1["ec2cached"]))
    for f in ("./usr/sbin/ec2cached", "./etc/ec2cached.toml", "ec2cached.service", "ec2cached.8.gz"):
        assert f in daemon, f
    # The facts for Facter and Ansible, executable where each looks by default, and the alert rules.
    modes = {line.split()[5]: line.split()[0] for line in daemon.splitlines()}
    assert modes.get("./etc/facter/facts.d/ec2cached") == "-rwxr-xr-x", daemon
    assert modes.get("./etc/ansible/facts.d/ec2cached.fact") == "-rwxr-xr-x", daemon
    assert modes.get("./usr/share/ec2cached/ec2cached.rules.yml") == "-rw-r--r--", daemon
    # DNS: the socket unit and the two routing examples, shipped, none enabled or started.
    for f in ("ec2cached-dns.socket", "resolved-ec2.conf", "dnsmasq-ec2.conf", "ec2.negative"):
        found = [k for k in modes if k.endswith("/" + f)]
        assert len(found) == 1 and modes[found[0]] == "-rw-r--r--", (f, daemon)
    scripts = tmp_path / "control"
    run("dpkg-deb", "-e", str(v1["ec2cached"]), str(scripts))
    postinst = (scripts / "postinst").read_text()
    assert "ec2cached-dns.socket" in postinst, postinst  # known to deb-systemd-helper (purge) ...
    lines = postinst.splitlines()
    for i, line in enumerate(lines):
        if "ec2cached-dns.socket" in line:  # ... but never started, and enabled only again on an
            # upgrade when the administrator had enabled it (debhelper's was-enabled guard)
            assert not re.search(r"\b(start|restart)\b", line), line
            if re.search(r"\benable\b", line):
                assert any("was-enabled 'ec2cached-dns.socket'" in x for x in lines[max(0, i - 3):i]), postinst
    assert "deb-systemd-invoke stop ec2cached-dns.socket" in (scripts / "prerm").read_text()
    sock = tmp_path / "sock"
    run("dpkg-deb", "-x", str(v1["ec2cached"]), str(sock))
    unit = next(sock.glob("**/ec2cached-dns.socket")).read_text()
    for want in ("ListenDatagram=127.0.0.153:53", "ListenStream=127.0.0.153:53", "Service=ec2cached.service"):
        assert want in unit.splitlines(), unit
    assert "DNS=127.0.0.153\nDomains=~ec2" in next(sock.glob("**/resolved-ec2.conf")).read_text()
    assert "server=/ec2/127.0.0.153" in next(sock.glob("**/dnsmasq-ec2.conf")).read_text().splitlines()
    # Issue 23, item 11: the negative trust anchor for hosts with DNSSEC=yes, in resolved's format.
    nta = [l for l in next(sock.glob("**/ec2.negative")).read_text().splitlines() if l and not l.startswith(";")]
    assert nta == ["ec2"], nta
    tree = tmp_path / "lib"
    run("dpkg-deb", "-x", str(v1["libnss-ec2"]), str(tree))
    so = tree / libdir / "libnss_ec2.so.2"
    assert "Library soname: [libnss_ec2.so.2]" in run("readelf", "-d", str(so))


def test_copyright_lists_every_linked_crate():
    want = run(sys.executable, str(ROOT / "tools" / "gen-copyright.py"), cwd=ROOT)
    assert (ROOT / "debian" / "copyright").read_text() == want, "run: python3 tools/gen-copyright.py > debian/copyright"


def test_make_install_puts_the_same_files_in_the_same_places(debs, tmp_path):
    """`make install` (non-Debian systems) installs what the packages ship, where they ship it."""
    v1, _ = debs
    dest = tmp_path / "dest"
    env = {**os.environ, "CARGO_TARGET_DIR": str(TARGET)}
    run("make", "-C", str(ROOT), "man", f"CARGO_TARGET_DIR={TARGET}", env=env)
    run("make", "-C", str(ROOT), "install", f"DESTDIR={dest}", f"CARGO_TARGET_DIR={TARGET}", env=env)
    made = {"/" + str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    packaged = set()
    for deb in v1.values():
        for line in run("dpkg-deb", "-c", str(deb)).splitlines():
            path = line.split()[5].lstrip(".")  # perms owner size date time PATH [-> target]
            if not path.endswith("/") and "/usr/share/doc/" not in path:
                packaged.add(re.sub(r"\.gz$", "", path))
    # The unit: /lib/systemd/system in the package, /usr/lib/systemd/system by make (merged /usr).
    norm = {p.replace("/usr/lib/systemd/", "/lib/systemd/") for p in made}
    assert packaged <= norm, packaged - norm
    assert norm - packaged == {"/usr/lib/sysusers.d/ec2cached.conf"}, norm - packaged
    run("make", "-C", str(ROOT), "uninstall", f"DESTDIR={dest}", env=env)
    left = {"/" + str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}
    assert left == {"/etc/ec2cached.toml"}, "uninstall keeps only the configuration"
