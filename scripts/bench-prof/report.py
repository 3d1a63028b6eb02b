#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Report of scripts/bench-prof.sh: instructions per operation, C against Rust,
by function.

Usage: report.py OUT BUILD MODE N TOP [OP...]
Reads OUT/MODE-{c,rust}.{tb,log} and BUILD/obj-{c,rust}-bench/System.map.
"""
import bisect
import collections
import re
import sys

# Functions whose count depends on when the console's printer kthread, the
# scheduler or the timers run, not on the LUO (the reboot path's LUO share).
# "update_" only at the start of a word: the scheduler's update_curr() and
# __update_load_avg_se(), not liveupdate_reboot(); "serial8250", not
# luo_session_serialize().
NOISE = re.compile(
    r"nbcon|serial8250|uart|console|printk|prb_|desc_|format_decode|^number$|"
    r"vsnprintf|string|msg_|sched|(^|_)update_|vruntime|enqueue|dequeue|switch|"
    r"timekeep|clock|tick|hrtimer|rcu|irq|apic|wake|entity|cfs|load_avg|"
    r"decay|pick_next|task|idle|^native_|^asm_|timer|softirq|ktime|^cpu_|"
    r"spin|fair|rq_|eevdf")


def symbols(path):
    addrs, names = [], []
    for line in open(path):
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    order = sorted(range(len(addrs)), key=addrs.__getitem__)
    return [addrs[i] for i in order], [names[i] for i in order]


def readable(sym):
    """A Rust v0 symbol's identifiers joined by '::' (crate hashes, generic
    arguments' structure and backrefs dropped: enough to tell functions apart)."""
    if not sym.startswith("_R"):
        return sym
    idents, i = [], 2
    while i < len(sym):
        ch = sym[i]
        if ch.isdigit():
            m = re.match(r"(\d+)_?", sym[i:])
            n = int(m.group(1))
            start = i + m.end()
            idents.append(sym[start:start + n])
            i = start + n
        elif ch in "CMXY" and sym[i + 1:i + 2] == "s" or ch == "B":
            # A disambiguator ("Cs<hash>_", "Ms1_") or a backref ("B5_").
            j = sym.find("_", i)
            i = j + 1 if j > 0 else len(sym)
        else:
            i += 1
    if len(idents) > 5:
        idents = idents[:3] + ["…"] + idents[-2:]
    return "::".join(idents) or sym


def name_of(syms, va):
    addrs, names = syms
    i = bisect.bisect_right(addrs, va) - 1
    return names[i] if i >= 0 and va >= 0xffffffff80000000 else "(user)"


def load(out, build, mode, v):
    syms = symbols(f"{build}/obj-{v}-bench/System.map")
    log = open(f"{out}/{mode}-{v}.log", errors="replace").read()
    ops = re.findall(r"BENCH prof op=(\w+)", log)
    per = collections.defaultdict(collections.Counter)
    edges = collections.defaultdict(collections.Counter)
    for line in open(f"{out}/{mode}-{v}.tb"):
        f = line.split()
        phase = int(f[1])
        if phase > len(ops):
            continue
        op = ops[phase - 1]
        if f[0] == "phase":
            per[op][readable(name_of(syms, int(f[2], 16)))] += int(f[3]) * int(f[4])
        elif f[0] == "edge":
            key = tuple(readable(name_of(syms, int(x, 16))) for x in f[2:5])
            edges[op][key] += int(f[5])
    return ops, per, edges


def main():
    out, build, mode, n, top = sys.argv[1:6]
    n, top = int(n), int(top)
    wanted = sys.argv[6:]
    c_ops, c, c_edges = load(out, build, mode, "c")
    r_ops, r, r_edges = load(out, build, mode, "rust")
    if c_ops != r_ops:
        sys.exit(f"the two runs timed different operations: {c_ops} / {r_ops}")
    for op in c_ops:
        if wanted and op not in wanted:
            continue
        tc, tr = sum(c[op].values()), sum(r[op].values())
        print(f"\n{mode} {op}, n={n}: instructions per operation: "
              f"C {tc / n:.0f}, Rust {tr / n:.0f}, Rust/C {tr / max(tc, 1):.2f}")
        if op == "reboot_path":
            lc = sum(x for k, x in c[op].items() if not NOISE.search(k))
            lr = sum(x for k, x in r[op].items() if not NOISE.search(k))
            print(f"  LUO share (no console, printk, scheduler, timers): "
                  f"C {lc / n:.0f}, Rust {lr / n:.0f}, Rust/C {lr / max(lc, 1):.2f}")
        keys = sorted(set(c[op]) | set(r[op]),
                      key=lambda k: -abs(r[op][k] - c[op][k]))
        print(f"  {'function':60} {'C':>8} {'Rust':>8}")
        for k in keys[:top]:
            print(f"  {k[:60]:60} {c[op][k] / n:8.1f} {r[op][k] / n:8.1f}")
        for v, e in (("C", c_edges[op]), ("Rust", r_edges[op])):
            for (to, p1, p2), cnt in e.most_common(top):
                print(f"  {v} calls per op {cnt / n:6.2f}: {to} <- {p1} <- {p2}")


if __name__ == "__main__":
    main()
