#!/usr/bin/env python3
"""Applies insta's pending inline snapshots (`.*.pending-snap`) to the test
sources, for machines without `cargo insta`. Usage:
    INSTA_UPDATE=always INSTA_FORCE_PASS=1 cargo test -p soong --test it
    python3 cli/tests/apply-snapshots.py
"""
import glob, json, os, re

root = os.path.dirname(os.path.abspath(__file__))
for pending in glob.glob(os.path.join(root, "it", ".*.pending-snap")):
    source = os.path.join(os.path.dirname(pending), os.path.basename(pending)[1:-len(".pending-snap")])
    entries = {}
    for line in open(pending):
        if line.strip():
            entry = json.loads(line)
            if entry.get("new"):
                entries[entry["line"]] = entry["new"]["snapshot"]
    text = open(source).read()
    lines = text.split("\n")
    offsets = [0]
    for l in lines:
        offsets.append(offsets[-1] + len(l) + 1)
    for line_no in sorted(entries, reverse=True):
        start = offsets[line_no - 1]
        m = re.compile(r'@(r(#*))?"').search(text, start)
        if m.group(1) is not None:
            end = text.index('"' + m.group(2), m.end()) + 1 + len(m.group(2))
        else:
            i = m.end()
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            end = i + 1
        snap = entries[line_no]
        hashes = "#"
        while ('"' + hashes) in snap:
            hashes += "#"
        # Indent like the `@` line.
        line_start = text.rfind("\n", 0, m.start()) + 1
        indent = re.match(r"\s*", text[line_start:]).group(0) + "    "
        body = "\n".join((indent + l) if l.strip() else "" for l in snap.split("\n"))
        new = "@r%s\"\n%s\n%s\"%s" % (hashes, body, indent[:-4] if len(indent) >= 4 else "", hashes)
        text = text[: m.start()] + new + text[end:]
    open(source, "w").write(text)
    os.remove(pending)
    print("updated", source, len(entries))
