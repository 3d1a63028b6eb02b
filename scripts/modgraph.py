#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Prints the module graph of a Rust crate made of one directory's files.

For each module (file) of the crate: its lines, its crate-visible items
(`pub(crate)` and `pub`, fields included) and the modules it uses
(`crate::m` paths, `use crate::{m, ...}` groups, and `super::` for the root).

  modgraph.py [--dot] DIR ROOT
e.g. modgraph.py kernel/liveupdate luo_rs
"""
import argparse
import pathlib
import re
import sys


def uses(text, mods, root):
    """The crate modules that `text` names."""
    found = set()
    for m in re.finditer(r"\bcrate::(\w+)", text):
        found.add(m.group(1))
    # `use crate::{ a, b::{..}, c }`: the names at the group's top level.
    for m in re.finditer(r"\buse crate::\{", text):
        depth, i, tok = 1, m.end(), ""
        while i < len(text) and depth:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if depth == 1 and (c.isalnum() or c == "_"):
                tok += c
            elif tok:
                found.add(tok)
                tok = ""
            if depth == 1 and c == ":" and tok == "":
                pass
            i += 1
        if tok:
            found.add(tok)
    out = set()
    for name in found:
        if name in mods:
            out.add(name)
        elif name[:1].isupper() or name in ("luo", "enabled"):
            out.add(root)
    return out


def strip_comments(text):
    return "\n".join(l.split("//")[0] for l in text.splitlines())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dot", action="store_true")
    ap.add_argument("dir")
    ap.add_argument("root")
    a = ap.parse_args()
    d = pathlib.Path(a.dir)
    rootfile = d / (a.root + ".rs")
    roottext = rootfile.read_text()
    mods = set(re.findall(r"^\s*(?:pub(?:\(crate\))? )?mod (\w+);", roottext, re.M))
    files = {a.root: rootfile}
    for m in sorted(mods):
        p = d / (m + ".rs")
        if p.exists():
            files[m] = p
    rows = []
    for name, p in files.items():
        text = p.read_text()
        code = strip_comments(text)
        vis = len(re.findall(r"\bpub(?:\(crate\))? ", code))
        fields = len(re.findall(r"^\s+pub\(crate\) \w+:", code, re.M))
        dep = uses(code, mods, a.root)
        if name == a.root:
            # The root names its modules by bare paths.
            dep |= {m for m in re.findall(r"\b(\w+)::", code) if m in mods}
        dep = sorted(dep - {name})
        rows.append((name, len(text.splitlines()), vis, fields, dep))
    if a.dot:
        print("digraph liveupdate {")
        for name, _, _, _, dep in rows:
            for t in dep:
                print(f'  "{name}" -> "{t}";')
        print("}")
        return 0
    edges = sum(len(r[4]) for r in rows)
    print(f"{'module':16} {'lines':>5} {'pub':>4} {'fields':>6}  uses")
    for name, n, vis, fields, dep in rows:
        print(f"{name:16} {n:5} {vis:4} {fields:6}  {' '.join(dep)}")
    print(f"{len(rows)} modules, {edges} edges, "
          f"{sum(r[2] for r in rows)} crate-visible items, "
          f"{sum(r[3] for r in rows)} crate-visible fields")
    return 0


if __name__ == "__main__":
    sys.exit(main())
