"""Turns a small Markdown page (headings, paragraphs, lists, code blocks, tables) into a man page.

    python3 tools/md2man.py docs/libnss_ec2.md NAME SECTION > libnss_ec2.8

Enough for the project's own pages; not a general converter.
"""

import re
import sys


def inline(t):
    t = t.replace("\\", "\\e").replace("-", "\\-")
    t = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", t)
    t = re.sub(r"\*([^*]+)\*", r"\\fI\1\\fR", t)
    t = re.sub(r"\[([^]]+)\]\([^)]+\)", r"\1", t)
    return t


def line_start(t):
    return "\\&" + t if t.startswith((".", "'")) else t


def main():
    src, name, section = sys.argv[1], sys.argv[2], sys.argv[3]
    lines = open(src, encoding="utf-8").read().splitlines()
    out = [f'.TH {name.upper()} {section} "" "nss-ec2" "System Administration"']
    code = False
    for l in lines:
        if l.startswith("```"):
            out.append(".EE" if code else ".EX")
            code = not code
            continue
        if code:
            out.append(line_start(l.replace("\\", "\\e").replace("-", "\\-")))
            continue
        if l.startswith("# "):
            continue
        if l.startswith("## "):
            out.append(f".SH {l[3:].upper()}")
        elif l.startswith("### "):
            out.append(f".SS {l[4:]}")
        elif l.startswith(("* ", "- ")):
            out.append(".IP \\(bu 2")
            out.append(line_start(inline(l[2:])))
        elif l.startswith("|"):
            cells = [c.strip() for c in l.strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells):
                continue
            out.append(".br")
            out.append(line_start(" \\(em ".join(inline(c) for c in cells)))
        elif not l.strip():
            out.append(".PP")
        else:
            out.append(line_start(inline(l.strip())))
    sys.stdout.write("\n".join(out) + "\n")


main()
