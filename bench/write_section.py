#!/usr/bin/env python3
"""Replaces one benchmark's section of docs/performance.md.

    bench/write_section.py NAME DOC < section.md

The section on stdin is wrapped in <!-- bench:NAME:begin ... --> / <!-- bench:NAME:end --> markers;
an existing section with those markers is replaced in place, otherwise the new one is appended.
"""
import os
import re
import sys


def main():
    name, doc = sys.argv[1], sys.argv[2]
    body = sys.stdin.read().strip("\n")
    begin = "<!-- bench:%s:begin (written by bench/%s.sh; edits inside these markers are overwritten) -->" % (name, name)
    section = "%s\n%s\n\n<!-- bench:%s:end -->" % (begin, body, name)
    text = open(doc).read() if os.path.exists(doc) else (
        "# Performance\n\nMeasured with `make bench`; each section is rewritten by the benchmark that owns it.\n")
    pat = re.compile(r"<!-- bench:%s:begin.*?<!-- bench:%s:end -->" % (re.escape(name), re.escape(name)), re.S)
    if pat.search(text):
        text = pat.sub(lambda m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(doc + ".tmp", "w") as f:
        f.write(text)
    os.replace(doc + ".tmp", doc)
    print("wrote the %s section of %s" % (name, doc))


if __name__ == "__main__":
    main()
