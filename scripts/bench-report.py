#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""make bench's scaling report: per-operation costs of the C and the Rust LUO
against n, a table with Rust/C ratios, the issue's goals computed from it,
kernel memory per session and per file, and a log-log chart (one panel per
operation). Also writes the report into bench/results.md.

Usage: bench-report.py RESULTS JSON SVG RUNS BIG_RUNS CAP_S DATE [CLOCK]
RESULTS lines (scripts/bench.sh run_bench):
  VARIANT MODE OP N NS               a timed loop of N operations
  VARIANT MODE mem_OP N SLAB USED    memory growth across N operations, bytes
  VARIANT MODE slab_OP N CACHE BYTES growth of one slab cache across them
  VARIANT MODE OP N capped NS DONE   a loop stopped by the cap after DONE
CLOCK: "time" (default), or "icount" for VMs run with QEMU -icount shift=0
(BENCH_ICOUNT=1), where every guest time is an instruction count.

       bench-report.py --results-md MD CLOCK REPORT DATE COMMAND COMMIT TOOK MACHINE [FAILED]
writes the report that scripts/bench.sh printed (the file REPORT) into the
markdown file MD (bench/results.md) as the block of its CLOCK, between
"<!-- bench-report:CLOCK:begin -->" and "<!-- bench-report:CLOCK:end -->",
under a header with the date, the command line, the commit, the time the
run took, the machine and the number of failed runs (if any). An earlier
block of that CLOCK is replaced; the rest of MD (the other CLOCK's block,
notes) is kept. A new block goes before the "<!-- bench-report:notes -->"
line, or at the end; a missing MD is created with RESULTS_MD_INTRO.

       bench-report.py --huge RESULTS RUNS [CLOCK]
prints the table "guest RAM on huge pages" (the huge mode of scripts/bench.sh)
from RESULTS lines (scripts/bench.sh run_huge):
  VARIANT KIND GIB preserve NS       PRESERVE_FD of a dense file of GIB GiB
  VARIANT KIND GIB retrieve NS       RETRIEVE_FD of it in the next kernel
  VARIANT KIND GIB folios N          its folios, as the guest checked them
  VARIANT KIND GIB folio_kib KIB     the size of each
  VARIANT KIND GIB fail -            a run that failed
KIND: shmem (4 KiB pages), thp (2 MiB shmem THP folios), hugetlb2m, hugetlb1g.

       bench-report.py --restore RESULTS OUT CLOCK SVG DATE
prints the restore table (the restore mode of scripts/bench.sh) from RESULTS
lines (scripts/bench.sh run_restore):
  VARIANT MIB SMP NS                 RETRIEVE_FD of a dense memfd of MIB MiB
  VARIANT MIB SMP fail               a run that failed
and the blackout of the Rust LUO's live update of each size, from the kernel's
timeline in OUT/timeline-MIB.txt (debugfs liveupdate/timeline, as printed by
the guest); draws the table as a bar chart into SVG.
"""
import json
import os
import re
import statistics
import sys

RESULTS_MD_INTRO = """# make bench: the latest figures

`make bench` (scripts/bench.sh, through scripts/bench-report.py) writes its
report here: a timed run replaces the "time" block, a run with
`BENCH_ICOUNT=1` (guest instruction counts) the "icount" block, each with its
date and command line. Everything outside those blocks is kept from run to
run. How the figures are measured and what the columns mean:
[README.md](README.md).
"""
BLOCK_TITLE = {
    "time": "Timed run (QEMU TCG)",
    "icount": "Instruction counts (QEMU -icount shift=0)",
}


def results_md(md, clock, report, date, command, commit, took, machine, failed="0"):
    """Put REPORT into MD as the block of CLOCK; see the usage above."""
    if clock not in BLOCK_TITLE:
        sys.exit(f"bench-report.py: unknown clock '{clock}'")
    text = open(report).read()
    # The report without its surrounding blank lines and the chart's path (a
    # file under build/, not kept with the figures).
    lines = [line for line in text.splitlines() if not line.startswith("chart: ")]
    body = "\n".join(lines).strip("\n")
    head = [f"## {BLOCK_TITLE[clock]}: {date}", "",
            f"- command: `{command}`",
            f"- commit: {commit}",
            f"- took: {took}",
            f"- machine: {machine}"]
    if failed != "0":
        head.append(f"- failed runs: {failed} (their figures are missing; see the serial logs)")
    begin, end = f"<!-- bench-report:{clock}:begin -->", f"<!-- bench-report:{clock}:end -->"
    block = "\n".join([begin] + head + ["", "```", body, "```", end]) + "\n"
    old = open(md).read() if os.path.exists(md) else RESULTS_MD_INTRO
    m = re.search(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", old, re.S)
    if m:
        new = old[:m.start()] + block + old[m.end():]
    elif "<!-- bench-report:notes -->" in old:
        i = old.index("<!-- bench-report:notes -->")
        new = old[:i] + block + "\n" + old[i:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(os.path.abspath(md)), exist_ok=True)
    with open(md + ".tmp", "w") as f:
        f.write(new)
    os.replace(md + ".tmp", md)


# The huge mode's kinds of file, in table order.
HUGE_KINDS = (("shmem", "4 KiB memfd"), ("thp", "THP memfd"), ("hugetlb2m", "hugetlb 2 MiB"),
              ("hugetlb1g", "hugetlb 1 GiB"))
# Handover metadata of one file (the memfd-v2 header, 48 bytes, or the
# hugetlb-memfd-rs-v1 one, 56; a folio array of 16-byte entries in a vmalloc
# area that KHO preserves page by page, listing the array's pages in chunk
# pages of 511 addresses each, a new chunk page started whenever one fills).
FOLIO_ENTRY, CHUNK_ADDRS, PAGE = 16, 511, 4096


def handover_bytes(kind, folios):
    """(metadata bytes, bytes of the pages KHO keeps for it) of a file of FOLIOS folios:
    the header, the folio array and the chunk pages; the second counts whole pages
    (the header's page, the array's pages and the chunk pages)."""
    header = 56 if kind.startswith("hugetlb") else 48
    array_pages = max(1, -(-folios * FOLIO_ENTRY // PAGE))
    chunks = 1 + array_pages // CHUNK_ADDRS
    return header + folios * FOLIO_ENTRY + chunks * PAGE, (1 + array_pages + chunks) * PAGE


def huge_report(path, runs, clock="time"):
    """The table "guest RAM on huge pages"; see the usage above."""
    rows = {}   # (kind, gib, variant) -> {"preserve": [ns], "retrieve": [ns], "folios": [n], ...}
    for line in open(path):
        f = line.split()
        if len(f) != 5:
            continue
        v, kind, gib, op, val = f
        r = rows.setdefault((kind, int(gib), v), {})
        if op == "fail":
            r["fail"] = r.get("fail", 0) + 1
        else:
            r.setdefault(op, []).append(int(val))
    sizes = sorted({k[1] for k in rows})

    def per_gib(kind, gib, v, op):
        """Median ns per GiB, or None."""
        xs = rows.get((kind, gib, v), {}).get(op)
        return statistics.median(xs) / gib if xs else None

    icount = clock == "icount"
    ms, rate = ("Minsn", "GiB/Ginsn") if icount else ("ms", "GiB/s")
    print("\nGuest RAM on huge pages: PRESERVE_FD and RETRIEVE_FD of one dense file of each size")
    print("(BENCH_HUGE_GIB) of 4 KiB pages, of 2 MiB shmem THP folios or of hugetlbfs pages;")
    print("the C memfd handler on the C LUO (shmem memfds only), the Rust one on the Rust LUO;")
    print(f"production-like kernels, median of up to {runs} run(s), QEMU TCG"
          + (" with -icount shift=0," if icount else " (compare ratios)."))
    if icount:
        print("so every time is a count of guest instructions: Minsn/GiB = millions of")
        print("instructions per GiB of file, GiB/Ginsn = GiB per 10^9 instructions.")
    else:
        print("Time per GiB of file, and GiB/s.")
    print("The guest checks the kind (ShmemHugePages, the shmem THP counters, the hugetlb pool's")
    print("free and surplus pages) and 'folios' is the file's folio count it checked. Metadata")
    print("per GiB, computed from that count (not measured): 'bytes' = the header (48 bytes; 56")
    print("for hugetlb) + 16 bytes per folio + the 4 KiB chunk pages that list the folio array's")
    print("pages (511 a chunk); 'KHO KiB' = the whole pages KHO keeps for it (the header's page,")
    print("the array's pages, the chunk pages). '4K C/this': RETRIEVE_FD per GiB of the 4 KiB")
    print("memfd on the C LUO at the same size, over this row's ('fails': the run failed).\n")
    hdr1 = (f"{'':<13} {'':>3} {'':<4} {'':>7}  {'PRESERVE_FD':^16}  {'RETRIEVE_FD':^16}"
            f"  {'metadata per GiB':^17}  {'retrieve':>9}")
    hdr2 = (f"{'kind':<13} {'GiB':>3} {'LUO':<4} {'folios':>7}  {ms + '/GiB':>9} {rate:>6}"
            f"  {ms + '/GiB':>9} {rate:>6}  {'bytes':>9} {'KHO KiB':>7}  {'4K C/this':>9}")
    print(hdr1)
    print(hdr2)
    print("-" * len(hdr2))

    def sig(x):
        """x with about three significant digits, no exponent."""
        if x >= 100:
            return f"{x:.0f}"
        if x >= 10:
            return f"{x:.1f}"
        if x >= 1:
            return f"{x:.2f}"
        return f"{x:.3g}" if x >= 1e-4 else f"{x:.6f}"

    def times(x):
        if x is None:
            return "-", "-"
        return sig(x / 1e6), (sig(1e9 / x) if x else "-")

    goal = []
    for gib in sizes:
        base = per_gib("shmem", gib, "c", "retrieve")
        for kind, label in HUGE_KINDS:
            for v in ("c", "rust"):
                r = rows.get((kind, gib, v))
                if r is None:
                    continue
                pre, ret = per_gib(kind, gib, v, "preserve"), per_gib(kind, gib, v, "retrieve")
                fails = "fails" if r.get("fail") and pre is None else "-"
                (pm, pr), (rm, rr) = times(pre), times(ret)
                if pre is None:
                    pm = fails
                if ret is None:
                    rm = fails
                folios = max(r["folios"]) if r.get("folios") else None
                if folios is not None:
                    meta, held = handover_bytes(kind, folios)
                    ms_, hs = f"{meta / gib:.0f}", f"{held / gib / 1024:.0f}"
                    fs = str(folios)
                else:
                    ms_, hs, fs = "-", "-", "-"
                ratio = base / ret if base and ret else None
                rs = "-" if ratio is None else (f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x")
                if kind == "hugetlb2m" and v == "rust":
                    goal.append((gib, ratio))
                name = "C" if v == "c" else "Rust"
                print(f"{label:<13} {gib:>3} {name:<4} {fs:>7}  {pm:>9} {pr:>6}  {rm:>9} {rr:>6}"
                      f"  {ms_:>9} {hs:>7}  {rs:>9}")
        print()
    if goal:
        parts = [f"{gib} GiB: " + (f"{x:.0f}x ({'met' if x >= 50 else 'NOT met'})" if x else "no data")
                 for gib, x in goal]
        print("Goal: hugetlb 2 MiB RETRIEVE_FD at least 50x cheaper per GiB than the 4 KiB memfd on")
        print(f"the C LUO: {'; '.join(parts)}")


def timeline(path):
    """The records of a timeline file: {name: t} for points, {(name, handler): (first, last,
    files, busy)} for spans (None for '-'), and the header's fields."""
    points, spans, head = {}, {}, {}
    for line in open(path):
        f = line.split()
        if not f:
            continue
        if f[0] == "liveupdate" and len(f) >= 8:
            head = {"num": f[1], "clock": f[3], "continuous": f[-1] == "yes"}
            continue
        num = lambda x: None if x == "-" else int(x)  # noqa: E731
        if f[0] in ("out.freeze", "in.retrieve", "in.finish") and len(f) >= 6:
            kv = dict(x.split("=", 1) for x in f[4:] if "=" in x)
            spans[(f[0], f[1])] = (num(f[2]), num(f[3]), int(kv.get("files", 0)),
                                   int(kv.get("busy_ns", 0)))
        elif len(f) == 2:
            points[f[0]] = num(f[1])
    return head, points, spans


def blackout(path, mib, clock):
    """The breakdown of one live update from its timeline (rows as luoctl timeline)."""
    head, p, sp = timeline(path)
    unit, div = ("M instructions", 1e6) if clock == "icount" else ("ms", 1e6)
    print(f"\nBlackout of one live update of a {mib} MiB memfd (Rust LUO), from the kernel's "
          f"timeline\n(debugfs liveupdate/timeline; clock {head.get('clock', '?')}, "
          f"{'one clock across the kexec' if head.get('continuous') else 'each kernel on its own clock'}"
          f"), {unit}:\n")

    def gap(a, b):
        x, y = p.get(a), p.get(b)
        if x is None or y is None:
            return "unmeasured"
        if y < x:
            return "inconsistent"
        return f"{(y - x) / div:10.3f}"

    rows = [("reboot path (out.reboot -> out.jump)", gap("out.reboot", "out.jump"))]
    rows.append(("  freeze and serialize (-> out.serialized)", gap("out.reboot", "out.serialized")))
    for (name, h), (first, last, files, busy) in sp.items():
        if name == "out.freeze":
            rows.append((f"    freeze {h}: {files} file(s), in the handler", f"{busy / div:10.3f}"))
    rows.append(("  device and syscore shutdown (out.devices -> out.jump)", gap("out.devices", "out.jump")))
    if head.get("continuous"):
        rows.append(("kexec, purgatory and early boot (out.jump -> in.boot)", gap("out.jump", "in.boot")))
    else:
        rows.append(("kexec, purgatory and early boot", "unmeasured"))
    rows.append(("boot to /dev/liveupdate (in.boot -> in.init)", gap("in.boot", "in.init")))
    rows.append(("until the first open (in.init -> in.open)", gap("in.init", "in.open")))
    rows.append(("first open: deserialize (in.open -> in.opened)", gap("in.open", "in.opened")))
    last_retrieve = None
    for (name, h), (first, last, files, busy) in sp.items():
        if name in ("in.retrieve", "in.finish"):
            what = "RETRIEVE_FD" if name == "in.retrieve" else "FINISH"
            rows.append((f"{what} {h}: {files} file(s), in the handler", f"{busy / div:10.3f}"))
            if name == "in.retrieve" and last is not None:
                last_retrieve = max(last_retrieve or 0, last)
    if head.get("continuous") and last_retrieve is not None and p.get("out.reboot") is not None:
        rows.append(("total: reboot path to the last RETRIEVE_FD",
                     f"{(last_retrieve - p['out.reboot']) / div:10.3f}"))
    for label, v in rows:
        print(f"  {label:<62} {v:>12}")


def restore_report(results, out, clock, svg, date):
    rows = {}
    for line in open(results):
        v, mib, smp, ns = line.split()
        rows.setdefault((int(mib), int(smp)), {"c": [], "rust": []})[v].append(
            None if ns == "fail" else int(ns))
    icount = clock == "icount"
    print("\nRestore: RETRIEVE_FD of one dense memfd of 4 KiB pages, each kernel's own memfd handler")
    print("(the C one on the C LUO, the Rust one on the Rust LUO), median of runs;")
    if icount:
        print("instructions per 4 KiB page (QEMU -icount shift=0, one vCPU).\n")
        hdr = f"{'size':>8} {'vCPUs':>5} {'C insn/page':>12} {'Rust insn/page':>15} {'Rust/C':>7}"
    else:
        print("GiB/s (QEMU TCG: compare the ratios).\n")
        hdr = f"{'size':>8} {'vCPUs':>5} {'C GiB/s':>9} {'Rust GiB/s':>11} {'Rust/C':>7}"
    print(hdr)
    print("-" * len(hdr))
    chart, goal = [], []
    for (mib, smp) in sorted(rows):
        pages = mib * 256
        cell = {}
        for v in ("c", "rust"):
            ok = [x for x in rows[(mib, smp)][v] if x]
            if not ok:
                cell[v] = None
                continue
            ns = statistics.median(ok)
            cell[v] = ns / pages if icount else (mib / 1024) / (ns / 1e9)
        c, r = cell["c"], cell["rust"]
        size = f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"
        if icount:
            ratio = f"{r / c:.2f}" if c and r else "-"
            cs, rs = (f"{c:.0f}" if c else "fails"), (f"{r:.0f}" if r else "fails")
            print(f"{size:>8} {smp:>5} {cs:>12} {rs:>15} {ratio:>7}")
            if smp == 1:
                goal.append((size, r / c if c and r else None))
        else:
            ratio = f"{r / c:.2f}" if c and r else "-"
            cs, rs = (f"{c:.2f}" if c else "fails"), (f"{r:.2f}" if r else "fails")
            print(f"{size:>8} {smp:>5} {cs:>9} {rs:>11} {ratio:>7}")
        chart.append((f"{size}\n{smp} vCPU", c, r))
    if icount and goal:
        parts = [f"{s}: " + (f"{x:.2f} ({'met' if x <= 0.5 else 'NOT met'})" if x else "no data")
                 for s, x in goal]
        print("\nGoal: RETRIEVE_FD at least 2x cheaper than C per page (Rust/C <= 0.50): "
              + "; ".join(parts))
    for path in sorted(os.listdir(out)):
        m = re.match(r"timeline-(\d+)\.txt$", path)
        if m and os.path.getsize(os.path.join(out, path)):
            blackout(os.path.join(out, path), int(m.group(1)), clock)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(1.6 * max(len(chart), 3), 3.6))
    xs = range(len(chart))
    ax.bar([x - 0.2 for x in xs], [c or 0 for _, c, _ in chart], 0.4, label="C LUO, C handler",
           color="tab:blue")
    ax.bar([x + 0.2 for x in xs], [r or 0 for _, _, r in chart], 0.4, label="Rust LUO, Rust handler",
           color="tab:orange")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([label for label, _, _ in chart], fontsize=8)
    ax.set_ylabel("instructions per 4 KiB page" if icount else "GiB/s")
    ax.set_title(f"RETRIEVE_FD of a dense memfd ({date}, QEMU TCG"
                 f"{', -icount' if icount else ''})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(svg)
    print(f"\nchart: {svg}")


if len(sys.argv) > 1 and sys.argv[1] == "--restore":
    if len(sys.argv) != 7:
        sys.exit("usage: bench-report.py --restore RESULTS OUT CLOCK SVG DATE")
    restore_report(*sys.argv[2:])
    sys.exit(0)

if len(sys.argv) > 1 and sys.argv[1] == "--huge":
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: bench-report.py --huge RESULTS RUNS [CLOCK]")
    huge_report(*sys.argv[2:])
    sys.exit(0)

if len(sys.argv) > 1 and sys.argv[1] == "--results-md":
    if len(sys.argv) not in (10, 11):
        sys.exit("usage: bench-report.py --results-md MD CLOCK REPORT DATE COMMAND COMMIT TOOK MACHINE [FAILED]")
    results_md(*sys.argv[2:])
    sys.exit(0)

results, json_out, svg_out, runs, big_runs, cap_s, date = sys.argv[1:8]
clock = sys.argv[8] if len(sys.argv) > 8 else "time"

# (mode, op, label) in table order; per-operation cost = total / n.
OPS = [
    ("single", "create_session", "CREATE_SESSION"),
    ("single", "close_session", "session close"),
    ("single", "preserve_fd", "PRESERVE_FD (one session)"),
    ("single", "unpreserve_fd", "unpreserve (session close)"),
    ("sessions", "create_session", "CREATE_SESSION (kexec run)"),
    ("sessions", "reboot_path", "reboot path (n sessions)"),
    ("sessions", "restore_open", "restore: first open (n sessions)"),
    ("sessions", "retrieve_session", "RETRIEVE_SESSION"),
    ("sessions", "finish_session", "FINISH (one session each)"),
    ("sessions", "close_incoming_session", "close retrieved session"),
    ("files", "preserve_fd", "PRESERVE_FD (kexec run)"),
    ("files", "reboot_path", "reboot path (n files)"),
    ("files", "restore_open", "restore: first open (n files)"),
    ("files", "retrieve_fd", "RETRIEVE_FD"),
    ("files", "finish_files", "FINISH (n files, per file)"),
]
VARIANTS = ("c", "rust")

times = {}    # (mode, op, n) -> variant -> [ns]
capped = {}   # (mode, op, n) -> variant -> [(ns, done)]
mem = {}      # (mode, op, n) -> variant -> [(slab, used)]
slabs = {}    # (mode, op, n) -> variant -> cache -> [bytes]
for line in open(results):
    f = line.split()
    if len(f) == 7 and f[4] == "capped":
        v, mode, op, n, _, ns, done = f
        capped.setdefault((mode, op, int(n)), {}).setdefault(v, []).append((int(ns), int(done)))
    elif len(f) == 6 and f[2].startswith("slab_"):
        v, mode, op, n, cache, b = f
        slabs.setdefault((mode, op[5:], int(n)), {}).setdefault(v, {}).setdefault(cache, []).append(int(b))
    elif len(f) == 6 and f[2].startswith("mem_"):
        v, mode, op, n, slab, used = f
        mem.setdefault((mode, op[4:], int(n)), {}).setdefault(v, []).append((int(slab), int(used)))
    elif len(f) == 5:
        v, mode, op, n, ns = f
        times.setdefault((mode, op, int(n)), {}).setdefault(v, []).append(int(ns))

ns_all = sorted({k[2] for k in times} | {k[2] for k in capped})


def per_op(mode, op, n, v):
    """(microseconds per operation, is_lower_bound, spread) or None."""
    xs = times.get((mode, op, n), {}).get(v)
    if xs:
        spread = max(xs) / min(xs) if min(xs) else None
        return statistics.median(xs) / n / 1e3, False, spread
    cs = capped.get((mode, op, n), {}).get(v)
    if cs:
        ns, done = min(cs, key=lambda c: c[0] / c[1])
        return ns / done / 1e3, True, None
    return None


def not_reached(mode, n, v):
    """Did an earlier loop of that run (same mode, n and variant) hit the cap?"""
    return any(k[0] == mode and k[2] == n and v in d for k, d in capped.items())


def fmt(x, w, mode=None, n=None, v=None):
    if x is None:
        return f"{'(capped)' if mode and not_reached(mode, n, v) else '-':>{w}}"
    us, low, _ = x
    s = f"{us:.1f}" if us < 1000 else f"{us:.0f}"
    return f"{'> ' + s if low else s:>{w}}"


print(f"\nLUO scaling benchmark, {date}: production-like kernels (config/bench.config: -O2,")
print("full SLUB; no lockdep, list or KHO debugging, KUnit or test handlers), QEMU TCG")
if clock == "icount":
    print("with -icount shift=0: every guest time is a count of guest instructions (1 ns")
    print("each), the same from run to run, so 'us/op' is thousands of instructions per")
    print(f"operation (the loop's total / n); median of {runs} VM runs ({big_runs} at n >= 100000).")
    print(f"'> X': the loop was stopped after {cap_s} s of guest time; X is the mean cost of")
    print("the operations done (a lower bound).")
else:
    print(f"(compare ratios, not absolute times), median of {runs} VM runs ({big_runs} at n >= 100000). Cost per")
    print("operation in microseconds (the loop's total / n). '> X': the loop was stopped")
    print(f"after {cap_s} s; X is the mean cost of the operations done (a lower bound).")
print("'(capped)': not measured, because an earlier loop of the same run hit the cap.\n")
hdr = f"{'operation':<34} {'n':>7} {'C us/op':>10} {'Rust us/op':>10} {'Rust/C':>9} {'spread':>6}"
print(hdr)
print("-" * len(hdr))
chart = {}
for mode, op, label in OPS:
    printed = False
    for n in ns_all:
        c, r = per_op(mode, op, n, "c"), per_op(mode, op, n, "rust")
        if c is None and r is None:
            continue
        printed = True
        # Against a capped C time, Rust/C is an upper bound.
        rs = "-"
        if c and r and not r[1]:
            rs = f"{'< ' if c[1] else ''}{r[0] / c[0]:.2g}"
        spread = max([x[2] for x in (c, r) if x and x[2]] or [0])
        sp = f"{spread:.2f}" if spread else "-"
        print(f"{label:<34} {n:>7} {fmt(c, 10, mode, n, 'c')} {fmt(r, 10, mode, n, 'rust')} {rs:>9} {sp:>6}")
        for v, x in (("c", c), ("rust", r)):
            if x:
                chart.setdefault(f"{mode}/{op}", {"label": label}).setdefault(v, {})[n] = \
                    {"us_per_op": round(x[0], 3), "lower_bound": x[1]}
    if printed:
        print()

# The goals of the performance issue, computed from the table.
print("Goals (production-like config, this run):")


def val(mode, op, n, v):
    x = per_op(mode, op, n, v)
    return x if x else None


lo = min(ns_all) if ns_all else None
if lo == 100:
    worst = []
    for mode, op, label in OPS:
        c, r = val(mode, op, 100, "c"), val(mode, op, 100, "rust")
        if c and r and not c[1] and not r[1]:
            worst.append((r[0] / c[0], label))
    worst.sort(reverse=True)
    over = [f"{label} {x:.2f}" for x, label in worst if x > 1.0]
    print(f"- n=100, every operation Rust/C <= 1.0: {'met' if not over else 'NOT met: ' + ', '.join(over)}"
          f" (largest ratio {worst[0][0]:.2f}, {worst[0][1]})" if worst else "- n=100: no data")
for op, label, goal in (("create_session", "CREATE_SESSION", 20), ("preserve_fd", "PRESERVE_FD", 3)):
    c, r = val("single", op, 10000, "c"), val("single", op, 10000, "rust")
    if c and r:
        sp = c[0] / r[0]
        print(f"- n=10,000, {label} C/Rust >= {goal}x: {'>= ' if c[1] else ''}{sp:.1f}x "
              f"({'met' if sp >= goal else 'NOT met'})")
    else:
        print(f"- n=10,000, {label}: no data")
if 100000 in ns_all and lo == 100:
    grow, missing = [], []
    for mode, op, label in OPS:
        a, b = val(mode, op, 100, "rust"), val(mode, op, 100000, "rust")
        if not b or b[1]:
            missing.append(label)
        elif a:
            grow.append((b[0] / a[0], label))
    grow.sort(reverse=True)
    if grow:
        over = [f"{label} {x:.2f}" for x, label in grow if x > 1.5]
        print(f"- n=100,000, Rust per-op cost within 1.5x of its n=100 cost: "
              f"{'met' if not over else 'NOT met: ' + ', '.join(over)} (largest {grow[0][0]:.2f}, {grow[0][1]})")
    print(f"- n=100,000, the Rust LUO completes every phase: "
          f"{'yes' if not missing else 'NO: ' + ', '.join(missing)}")
rp = {n: val("files", "reboot_path", n, "rust") for n in ns_all}
if rp.get(10000):
    base = rp.get(100)
    total_ms = rp[10000][0] * 10000 / 1e3
    share = (total_ms - base[0] * 100 / 1e3) if base else None
    print(f"- reboot path with 10,000 files (Rust LUO): {total_ms:.2f} ms from the marker to "
          f"'Starting new kernel'" + (f"; {share:.2f} ms more than with 100 files (the LUO share "
                                      f"estimate; goal < 1 ms: {'met' if share < 1 else 'NOT met'})"
                                      if share is not None else ""))
    c = val("files", "reboot_path", 10000, "c")
    if c:
        print(f"  (C LUO: {c[0] * 10000 / 1e3:.2f} ms)")

print("\nKernel memory per operation at n (bytes; growth of Slab and of MemTotal-MemFree in")
print("/proc/meminfo across the n operations, fds open; median of runs):\n")
hdr = f"{'operation':<26} {'n':>7} {'C slab':>8} {'Rust slab':>9} {'C used':>8} {'Rust used':>9}"
print(hdr)
print("-" * len(hdr))
memj = {}
for op, label in (("create_session", "per session (CREATE)"), ("preserve_fd", "per file (PRESERVE_FD)")):
    for n in ns_all:
        row = mem.get(("single", op, n))
        if not row:
            continue
        cells = []
        for v in VARIANTS:
            xs = row.get(v)
            if xs:
                slab = statistics.median(x[0] for x in xs) / n
                used = statistics.median(x[1] for x in xs) / n
                memj.setdefault(op, {}).setdefault(v, {})[n] = {"slab": round(slab), "used": round(used)}
                cells.append((f"{slab:.0f}", f"{used:.0f}"))
            else:
                cells.append(("-", "-"))
        print(f"{label:<26} {n:>7} {cells[0][0]:>8} {cells[1][0]:>9} {cells[0][1]:>8} {cells[1][1]:>9}")

# Where that memory goes: the slab caches that grew, at the largest n that has
# both sides (/proc/slabinfo needs CONFIG_SLUB_DEBUG, which config/bench.config
# sets). A cache missing on one side grew by less than 4 bytes per operation.
slabj = {}
if any(all(v in d for v in VARIANTS) for k, d in slabs.items() if k[0] == "single"):
    print("\nSlab caches that grew, bytes per operation at the largest n that both sides have")
    print("(/proc/slabinfo; median of runs):\n")
    hdr2 = f"{'operation':<26} {'n':>7} {'cache':<24} {'C':>8} {'Rust':>8}"
    print(hdr2)
    print("-" * len(hdr2))
for op, label in (("create_session", "per session (CREATE)"), ("preserve_fd", "per file (PRESERVE_FD)")):
    both = [n for n in ns_all if all(v in slabs.get(("single", op, n), {}) for v in VARIANTS)]
    if not both:
        continue
    n = max(both)
    row = slabs[("single", op, n)]
    per = {v: {c: statistics.median(xs) / n for c, xs in row[v].items()} for v in VARIANTS}
    names = sorted(set(per["c"]) | set(per["rust"]),
                   key=lambda c: -max(abs(per["c"].get(c, 0)), abs(per["rust"].get(c, 0))))
    for c in names:
        cells = [f"{per[v][c]:.0f}" if c in per[v] else "-" for v in VARIANTS]
        print(f"{label:<26} {n:>7} {c:<24} {cells[0]:>8} {cells[1]:>8}")
        slabj.setdefault(op, {"n": n})[c] = {v: round(per[v][c]) for v in VARIANTS if c in per[v]}

json.dump({"date": date, "clock": clock, "runs": int(runs), "big_runs": int(big_runs), "cap_s": int(cap_s),
           "per_op_us": chart, "memory_bytes_per_op": memj, "slab_caches_per_op": slabj}, open(json_out, "w"), indent=1)

# The chart: one log-log panel per operation, C and Rust side by side.
import matplotlib  # noqa: E402
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

keys = [f"{m}/{o}" for m, o, _ in OPS if f"{m}/{o}" in chart]
if not keys:
    # No scaling mode ran (e.g. BENCH_MODES=huge): nothing to draw.
    sys.exit(0)
cols = 4
rows = (len(keys) + cols - 1) // cols
fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
for ax, key in zip(axes.flat, keys):
    d = chart[key]
    for v, color in (("c", "tab:blue"), ("rust", "tab:orange")):
        pts = sorted(d.get(v, {}).items())
        if not pts:
            continue
        xs = [n for n, _ in pts]
        ys = [p["us_per_op"] for _, p in pts]
        ax.plot(xs, ys, "-o", color=color, label=f"{'C' if v == 'c' else 'Rust'} LUO", markersize=4)
        low = [(n, p["us_per_op"]) for n, p in pts if p["lower_bound"]]
        if low:
            ax.plot([x for x, _ in low], [y for _, y in low], "^", color=color, markersize=9,
                    label=f"{'C' if v == 'c' else 'Rust'}: capped (lower bound)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(d["label"], fontsize=9)
    ax.set_xlabel("n", fontsize=8)
    ax.set_ylabel("us per operation", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
fig.suptitle(f"LUO per-operation cost vs n, C and Rust ({date}, production-like config, QEMU TCG"
             f"{', -icount: us = thousands of instructions' if clock == 'icount' else ''})",
             fontsize=11)
fig.tight_layout()
fig.savefig(svg_out)
print(f"\nchart: {svg_out}")
