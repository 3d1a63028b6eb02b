#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read a VM's serial log and print one verdict line per test case.

  verdict.py [OPTIONS] kselftest LOG PREFIX SOURCE.c
        cases = TEST/TEST_F names in SOURCE.c; the program must exit 0
  verdict.py [OPTIONS] stages LOG PREFIX CASE STAGES
        one case spanning STAGES boots
  verdict.py [OPTIONS] ktap LOG PREFIX CASES_FILE
        cases = lines of CASES_FILE, each reported as "ok N <case>" (KTAP)
  verdict.py [OPTIONS] kunit LOG PREFIX SOURCE.rs...
        cases = #[test] functions of the #[kunit_tests(SUITE)] modules
        (and the KUNIT_CASE()s of a SOURCE.c)
  verdict.py [OPTIONS] [--cases CASES_FILE] panic LOG PREFIX CASE PATTERN...
        one case: stage 1 passes (with an "ok" line for each case of
        CASES_FILE), then the next kernel panics, every PATTERN in its
        messages before the panic or in the panic line

  OPTIONS: --allow CASE=REGEX (a warning the run expects, see below; any
  number of them) and --first-log PATH (the first serial log of a VM that
  timed out and was run again, LOG being the retry's).

The same from Python: judge(mode, log, args, allow=(), first_log=None)
returns the (case, why) pairs, why None for a case that passed.

Prints "ok PREFIX:case" or "not ok PREFIX:case # reason" per case. A kernel
problem fails the case that was running when it was printed, or every case
when none was (kselftest), or the case whose result line follows it (ktap,
kunit). Kernel problems: WARNING, BUG, Oops, panic, lockdep, KASAN/UBSAN,
debugobjects ("ODEBUG:" matches "BUG:"), list corruption (DEBUG_LIST), hung
tasks, RCU stalls, any message of level err or worse, "printk messages
dropped" (the console lost messages the verdict did not see), and any message
of level warning from LUO (C and Rust), the memfd live update handlers (C and
Rust), the Rust vfio-pci live update handler and KHO (WATCHED), unless the run
allows it. An allow entry (CASE, REGEX) excuses a watched warning whose text
(after the level and time stamp) REGEX matches whole (re.fullmatch) if CASE is
the case it is charged to, or a case that ran before it in the same boot (its
result line, or its kselftest RUN line, came first), or if CASE is "*" (any
case of the run). The console prints kernel messages from a kthread, often
after userspace lines written later: an entry names the case that causes its
message, whose own result line the message can come before or after. An
entry (CASE, REGEX, "error") excuses a message of level err the same way,
for the IOMMU faults of a DMA a test expects to be blocked. Nothing else is
ever allowed (a WARNING splat, an error no entry names, dropped messages).

Kernel messages are read with their level when the VM ran with
console_msg_format=syslog ("<N>[time] text"), which also covers what the
kernel printed on the reboot path; "LUO-KMSG-ERR:" lines (init's kmsg monitor)
are errors too.

A VM that timed out and ran again (first_log): a kernel problem in the first
log fails the run (case "(first run)"); a first log without one fails it too
(case "flaky-timeout"), unless it ends as the one known emulator hang does
(hang_signature()).

Exit status: 0 if every case passed, 1 if one failed, 2 if this script itself
failed (then it prints a "not ok PREFIX:(verdict)" line).
"""
import re
import sys

PROBLEM = re.compile(
    r"(WARNING:|BUG:|Oops|Kernel panic|general protection fault|"
    r"possible circular locking|possible recursive locking|inconsistent lock state|"
    r"INFO: lockdep|lockdep is turned off|UBSAN:|KASAN:|kernel BUG|"
    r"list_\w+ corruption|"
    r"rcu: INFO|INFO: task .* blocked|LUO-KMSG-ERR:|LUO-KMSG-WARN:|"
    r"\*\* \d+ printk messages dropped \*\*)"
)

# The prefixes of the messages of LUO, the memfd and vfio-pci live update
# handlers and KHO, whose warnings are problems unless allowed: "luo" (the C
# LUO's pr_fmt, KBUILD_MODNAME of luo.o; the Rust LUO's __LOG_PREFIX in
# kernel/liveupdate/luo_rs.rs, its test handler's too), "memfd_luo"
# (mm/memfd_luo.c), "memfd_luo_rs" and "vfio_pci_luo_rs" (the module! names
# of mm/memfd_luo_rs.rs and drivers/vfio/pci/vfio_pci_luo_rs.rs), "KHO"
# (kernel/liveupdate/kexec_handover*.c).
WATCHED = re.compile(r"(luo|memfd_luo|memfd_luo_rs|vfio_pci_luo_rs|KHO): ")
# What read() puts in front of a watched warning, and of an error.
WARN_MARK = "LUO-KMSG-WARN: "
ERR_MARK = "LUO-KMSG-ERR: "
# "<level>[time]": the syslog prefix of a console line (after any terminal noise).
LEVEL = re.compile(r"<(\d+)>(?=\[\s*\d+\.\d+\])")
# The time stamp in front of a kernel message's text.
STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
# Messages of high level that every VM prints when it ends.
BENIGN = re.compile(r"reboot: (Restarting system|Power down|System halted)")

# The one known emulator hang (the analysis is at the top of
# scripts/run-vm.sh): Linux 7.3's clocksource watchdog deadlocks early boot
# with clocksource_done_booting()'s stop_machine() under TCG. Its log: a
# kernel booted (BOOT) and stopped before it switched clocksources (its last
# boot has no SWITCHED line, whichever clocksource) and before it started
# init (no INIT line), with no kernel problem.
EARLY_BOOT_STALL = "early-boot clocksource stall"
BOOT = "Linux version "
SWITCHED = "clocksource: Switched to clocksource "
INIT = "Run /init as init process"


def read(path):
    """The log's lines, with syslog level prefixes turned into markers.

    A kernel message of level err or worse gets ERR_MARK in front, and a
    watched warning (WATCHED) WARN_MARK, so that PROBLEM matches them; the
    level prefix is removed from every line.
    """
    try:
        with open(path, errors="replace") as f:
            raw = f.read().splitlines()
    except FileNotFoundError:
        return []
    lines = []
    # Userspace output cut by kernel messages: the console can print a kernel message in
    # the middle of a userspace write ("ok 15 double_pres<6>[ 4.8] ...", the rest of the
    # line after the message). The text before a message is kept here and joined with the
    # next userspace text: a userspace line always ends with its own newline, so text glued
    # to a kernel message is never a whole line.
    partial = ""
    for line in raw:
        m = LEVEL.search(line)
        if not m:
            lines.append(partial + line)
            partial = ""
            continue
        head = line[:m.start()]
        # Text with terminal control sequences before a kernel message is the
        # firmware's ("Booting from ROM..\x1bc\x1b[?7l" as the kernel starts).
        if head.strip() and "\x1b" not in head:
            partial += head
        lines.append(mark(int(m.group(1)) & 7, line[m.end():]))
    if partial:
        lines.append(partial)
    return lines


def mark(level, line):
    """A kernel message of LEVEL ("[time] text"), with its problem marker if any."""
    if BENIGN.search(line):
        return line
    if level <= 3:
        return ERR_MARK + line
    if level == 4 and WATCHED.match(message(line)):
        return WARN_MARK + line
    return line


def message(line):
    """A kernel message's text, without marker and time stamp."""
    for m in (WARN_MARK, ERR_MARK):
        if line.startswith(m):
            line = line[len(m):]
    return STAMP.sub("", line.strip(), count=1).strip()


def compile_allow(allow):
    """The allow entries as (case, compiled regex, kind) triples.

    An entry is (CASE, REGEX) for a watched warning, or (CASE, REGEX, "error")
    for a message of level err that a test causes on purpose (an IOMMU fault of
    a DMA it expects to be blocked).
    """
    out = []
    for a in allow:
        case, rx, kind = (tuple(a) + ("warning",))[:3]
        if kind not in ("warning", "error"):
            raise ValueError("allow entry %r: kind %r is neither warning nor error" % (a, kind))
        out.append((case, re.compile(rx), kind))
    return out


def allowed(line, names, allow):
    """Is LINE a watched warning, or an error, that an entry of ALLOW excuses in NAMES?"""
    if line.startswith(WARN_MARK):
        kind = "warning"
    elif line.startswith(ERR_MARK):
        kind = "error"
    else:
        return False
    text = message(line)
    return any((case == "*" or case in names) and k == kind and rx.fullmatch(text)
               for case, rx, k in allow)


class Run:
    """What a log says of a run: the result of each case and the problems charged to it.

    result[case] is None (no result line), "ok", or why the case failed by its own
    report ("failed ...", "skipped ..."); a case reported more than once keeps its
    first failure. problems[case] are the kernel problems charged to it (case None:
    to no case); order lists every problem in log order.
    """

    def __init__(self, cases, allow):
        self.cases = cases
        self.allow = allow
        self.result = {c: None for c in cases}
        self.problems = {}
        self.order = []

    def report(self, case, why):
        """A result line of CASE: why None when it passed."""
        if self.result.get(case) in (None, "ok"):
            self.result[case] = why or "ok"

    def charge(self, case, line, names=None):
        """A problem line charged to CASE, unless allowed for CASE (or for NAMES).

        NAMES: the cases an allow entry may name to excuse it, CASE by default.
        """
        if allowed(line, (case,) if names is None else names, self.allow):
            return
        self.problems.setdefault(case, []).append(line.strip())
        self.order.append(line.strip())

    def verdict(self, case, shared=True):
        """CASE's verdict: its own report, then its problems (and the uncharged ones)."""
        res = self.result[case]
        if res is None:
            return "no result in the log"
        if res != "ok":
            return res
        probs = self.problems.get(case, []) + (self.problems.get(None, []) if shared else [])
        return "kernel: " + first(probs) if probs else None


def first(problems):
    """The problem to name in a verdict: the first with words in it.

    A report's first line can be a separator ("=====" before a KASAN report).
    """
    return next((p for p in problems if re.search(r"[A-Za-z]", message(p))), problems[0])


def status(ok, rest):
    """A result line's verdict (None: passed)."""
    if ok and "# SKIP" in rest:
        return "skipped" + rest
    return None if ok else "failed" + rest


def source_cases(source):
    """The TEST/TEST_F names of a kselftest source."""
    with open(source) as f:
        src = f.read()
    cases = []
    for m in re.finditer(r"^TEST(?:_F|_F_TIMEOUT|_HARNESS)?\(\s*(\w+)\s*,\s*(\w+)", src, re.M):
        cases.append(m.group(2))
    for m in re.finditer(r"^TEST\(\s*(\w+)\s*\)", src, re.M):
        cases.append(m.group(1))
    return cases


def stage_exits(lines):
    """init's "stage K exit STATUS" lines: {K: STATUS}."""
    exits = {}
    for line in lines:
        m = re.match(r"LUO-HARNESS: stage (\d+) exit (\d+)", line)
        if m:
            exits[int(m.group(1))] = int(m.group(2))
    return exits


def kselftest(lines, args, allow):
    """Cases = TEST/TEST_F names in args[0]; problems outside a case fail every case.

    The program must exit 0 ("LUO-HARNESS: stage 1 exit 0"): a missing or other exit
    status is a failing "(harness)" case, unless a case failed and the status is the
    harness's own (1: failed, 4: skipped).
    """
    source = args[0]
    run = Run(source_cases(source), allow)
    current = None
    started = []  # the cases started so far (one boot)
    for line in lines:
        m = re.search(r"#\s+RUN\s+\S+\.(\w+)\s", line + " ")
        if m and m.group(1) in run.result:
            current = m.group(1)
            started.append(current)
            continue
        m = re.match(r"^(not ok|ok) \d+ \S+\.(\w+)(.*)$", line)
        if m and m.group(2) in run.result:
            run.report(m.group(2), status(m.group(1) == "ok", m.group(3)))
            current = None
            continue
        if PROBLEM.search(line):
            run.charge(current, line, started)
    out = [(c, run.verdict(c)) for c in run.cases]
    if not run.cases:
        return out + [("(no cases found in %s)" % source, "no cases")], run
    code = stage_exits(lines).get(1)
    failed = any(why for _, why in out)
    if code is None:
        why = "no \"LUO-HARNESS: stage 1 exit\" line"
        out.append(("(harness)", "; ".join([why] + harness_failures(lines))))
    elif code != 0 and not (failed and code in (1, 4)):
        out.append(("(harness)", "stage 1 exited %d" % code))
    elif "LUO-HARNESS: done" not in lines:
        out.append(("(harness)", "no completion line"))
    return out, run


def stages(lines, args, allow):
    """One case (args[0]) spanning args[1] boots, each of which must exit 0."""
    case, n = args[0], int(args[1])
    run = Run([case], allow)
    exits = stage_exits(lines)
    for line in lines:
        if PROBLEM.search(line):
            run.charge(case, line)
    why = None
    for s in range(1, n + 1):
        if s not in exits:
            why = "stage %d did not finish" % s
            for line in lines:
                if line.startswith("LUO-HARNESS:") and "failed" in line:
                    why += " (" + line + ")"
            break
        if exits[s] != 0:
            why = "stage %d exited %d" % (s, exits[s])
            break
    if why is None and "LUO-HARNESS: done" not in lines:
        why = "no completion line"
    if why is None and run.order:
        why = "kernel: " + first(run.order)
    return [(case, why)], run


def kunit_cases(sources):
    """(suite, case) of the #[test] functions of #[kunit_tests(SUITE)] modules.

    A C source (the build's rust/doctests_kernel_generated_kunit.c) gives the
    KUNIT_CASE()s of its suite's `.name`.
    """
    cases = []
    for path in sources:
        suite = None
        expect_fn = False
        with open(path) as f:
            text = f.read().splitlines()
        if path.endswith(".c"):
            names = re.findall(r'^\s*\.name = "(\w+)"', "\n".join(text), re.M)
            if len(names) != 1:
                raise ValueError("%s: %d KUnit suite names, want 1" % (path, len(names)))
            cases += [(names[0], m.group(1)) for m in
                      (re.match(r"\s*KUNIT_CASE\((\w+)\)", t) for t in text) if m]
            continue
        for line in text:
            m = re.search(r"#\[kunit_tests\((\w+)\)\]", line)
            if m:
                suite = m.group(1)
            if suite and re.match(r"\s*#\[test\]", line):
                expect_fn = True
                continue
            m = re.match(r"\s*fn (\w+)", line)
            if expect_fn and m:
                cases.append((suite, m.group(1)))
                expect_fn = False
    return cases


def kunit(lines, sources, allow):
    """Cases = "SUITE.case" of the sources; a problem fails the case whose result follows."""
    names = ["%s.%s" % c for c in kunit_cases(sources)]
    run = Run(names, allow)
    suite = None
    pending = []  # (problem, the cases reported before it in its boot)
    boot = []
    for line in lines:
        body = re.sub(r"^\[\s*[0-9.]+\]\s*", "", line).strip()
        m = re.match(r"#\s*Subtest:\s*(\w+)", body)
        if m:
            suite = m.group(1)
            continue
        m = re.match(r"^(not ok|ok) \d+ (\w+)(.*)$", body)
        if m and "%s.%s" % (suite, m.group(2)) in run.result:
            case = "%s.%s" % (suite, m.group(2))
            run.report(case, status(m.group(1) == "ok", m.group(3)))
            boot = settle(run, case, pending, boot)
            continue
        if BOOT in line:
            boot = []
        if PROBLEM.search(line):
            pending.append((line, list(boot)))
    trailing(run, pending)
    out = [(c, run.verdict(c, shared=False)) for c in names]
    if None in run.problems:
        out.append(("(after the last case)", "kernel: " + first(run.problems[None])))
    if not names:
        out.append(("(no KUnit cases found)", "no cases"))
    return out, run


def settle(run, case, pending, boot):
    """A result line of CASE: charge it the PENDING problems; the new BOOT list.

    PENDING are (problem, cases reported before it in its boot) pairs; BOOT the
    cases reported since the last kernel boot, CASE now among them.
    """
    for p, before in pending:
        run.charge(case, p, before + [case])
    pending.clear()
    return boot + [case]


def trailing(run, pending):
    """Problems after the last result line: charged to no case.

    They belong to a case still running (a truncated log), to one reported
    before them in their boot, or to none: an entry for one of those cases,
    or "*", allows them.
    """
    unreported = [c for c in run.cases if run.result[c] is None]
    for p, before in pending:
        run.charge(None, p, before + unreported)
    pending.clear()


def harness_failures(lines):
    """Why the boots did not run to the end, from init's and kselftest's lines."""
    why = []
    for line in lines:
        m = re.match(r"LUO-HARNESS: stage (\d+) exit (\d+)", line)
        if m and m.group(2) != "0":
            why.append("stage %s exited %s" % m.groups())
        elif line.startswith("LUO-HARNESS:") and "failed" in line:
            why.append(line.strip())
        elif line.startswith("Bail out!"):
            why.append(line.strip())
    return why


def list_cases(path):
    """The case names of a cases file, one a line, in order, once each."""
    cases = []
    with open(path) as f:
        text = f.read().splitlines()
    for line in text:
        if line.strip() and line.strip() not in cases:
            cases.append(line.strip())
    return cases


def ktap(lines, args, allow):
    """Cases = lines of args[0]; a problem fails the case whose result line follows."""
    cases_file = args[0]
    run = Run(list_cases(cases_file), allow)
    pending = []  # kernel problems since the previous result line (see settle())
    boot = []  # the cases reported since the last kernel boot
    last = None  # the last "# ..." line since the previous result line
    for line in lines:
        m = re.match(r"^(not ok|ok) \d+ ([A-Za-z0-9_.:-]+)(.*)$", line)
        if m and m.group(2) in run.result:
            ok, case, rest = m.group(1) == "ok", m.group(2), m.group(3)
            why = status(ok, rest)
            if not ok and last:
                why += ": " + (last[len(case) + 2:] if last.startswith(case + ": ") else last)
            run.report(case, why)
            boot = settle(run, case, pending, boot)
            last = None
            continue
        if BOOT in line:
            boot = []
        if PROBLEM.search(line):
            pending.append((line, list(boot)))
        elif line.startswith("# ") and not line.startswith("# Totals:"):
            last = line[2:].strip()
    trailing(run, pending)
    out = [(c, run.verdict(c, shared=False)) for c in run.cases]
    harness = harness_failures(lines)
    for i, (c, why) in enumerate(out):
        if why == "no result in the log" and harness:
            out[i] = (c, why + " (" + "; ".join(harness) + ")")
    if None in run.problems:
        out.append(("(after the last case)", "kernel: " + first(run.problems[None])))
    if not run.cases:
        out.append(("(no cases in %s)" % cases_file, "no cases"))
    elif all(why is None for _, why in out) and (harness or "LUO-HARNESS: done" not in lines):
        out.append(("(harness)", "; ".join(harness) or "no completion line"))
    return out, run


def expected_panic(lines, args, allow):
    """A run that passes only if the next kernel panics as args[1] says.

    args: CASE, PATTERN (a string or a list of strings), CASES_FILE ("" or
    absent: none). Stage 1 must exit 0 with an "ok" line (not a skip) for every
    case of CASES_FILE, no failed KTAP case and no kernel problem; the kernel it
    kexecs into must panic ("Kernel panic - not syncing: ...") before stage 2
    starts, and every PATTERN must be in that kernel's lines before the panic
    or in the panic line. Kernel lines that contain a PATTERN are expected, not
    problems; what follows the panic line (its backtrace) is not read.
    """
    case = args[0]
    patterns = [args[1]] if isinstance(args[1], str) else list(args[1])
    wanted = list_cases(args[2]) if len(args) > 2 and args[2] else []
    run = Run([case], allow)
    panic = next((i for i, x in enumerate(lines) if "Kernel panic - not syncing" in x), len(lines))
    for line in lines[:panic]:
        if PROBLEM.search(line) and not any(p in line for p in patterns):
            run.charge(case, line)
    return [(case, panic_why(lines, panic, wanted, patterns, run))], run


def panic_why(lines, panic, wanted, patterns, run):
    """Why an expected-panic run failed (None: it did not), its panic at index PANIC."""
    exit1 = next((i for i, x in enumerate(lines[:panic])
                  if re.match(r"LUO-HARNESS: stage 1 exit \d+", x)), None)
    if exit1 is None:
        if panic < len(lines):
            return "panicked before stage 1 ended: " + lines[panic].strip()
        return "stage 1 did not finish"
    stage1 = lines[:exit1 + 1]
    failed = [x.strip() for x in stage1 if re.match(r"^not ok \d+ ", x)]
    if failed:
        return "stage 1: " + failed[0]
    code = re.match(r"LUO-HARNESS: stage 1 exit (\d+)", lines[exit1]).group(1)
    if code != "0":
        return "stage 1 exited " + code
    passed = set()
    for x in stage1:
        m = re.match(r"^ok \d+ ([A-Za-z0-9_.:-]+)(.*)$", x)
        if m and "# SKIP" not in m.group(2):
            passed.add(m.group(1))
    missing = [c for c in wanted if c not in passed]
    if missing:
        return "stage 1: no \"ok\" line for " + ", ".join(missing)
    if run.order:
        return "kernel: " + first(run.order)
    if panic == len(lines):
        return "the next kernel did not panic"
    after = lines[exit1 + 1:panic + 1]
    absent = [p for p in patterns if not any(p in x for x in after)]
    if absent:
        return "a different panic: %s (no %r before it)" % (lines[panic].strip(), absent[0])
    if any(x.startswith("LUO-HARNESS: stage 2 start") for x in after):
        return "stage 2 started"
    return None


MODES = {
    "kselftest": kselftest,
    "stages": stages,
    "ktap": ktap,
    "kunit": kunit,
    "panic": expected_panic,
}


def judge(mode, log, args, allow=(), first_log=None):
    """The (case, why) verdicts of a run (why None: the case passed).

    mode and args: "kselftest" [SOURCE.c], "stages" [CASE, N], "ktap" [CASES_FILE],
    "kunit" [SOURCE.rs, ...], "panic" [CASE, PATTERN or [PATTERN, ...], CASES_FILE
    or ""]. allow: (case, regex) pairs, the watched warnings the run expects (case
    "*": in any case of the run). first_log: the first serial log of a VM that
    timed out and was run again (log is the retry's).
    """
    allow = compile_allow(allow)
    out, _ = MODES[mode](read(log), args, allow)
    if first_log is not None:
        out += first_run(mode, first_log, args, allow, out)
    return out


def first_run(mode, first_log, args, allow, out):
    """The verdict of a timed-out first run: [] or one failing case.

    Its kernel problems are found and charged as in the retry's log (so the
    same allow entries apply; those after the last result line may belong to
    any case without one). Without one, the timeout itself fails the run
    ("flaky-timeout", at the first log's last line), unless the log ends as a
    known emulator hang does (hang_signature()).
    """
    lines = read(first_log)
    _, run = MODES[mode](lines, args, allow)
    if run.order:
        return [("(first run)", "kernel: %s (first run, timed out)" % first(run.order))]
    if hang_signature(first_log, allow):
        return []
    last = next((x.strip() for x in reversed(lines) if x.strip()), "(an empty log)")
    retry = "the retry passed" if all(why is None for _, why in out) else "the retry failed too"
    return [("flaky-timeout", "the first run timed out at %s; %s" % (last[:200], retry))]


def hang_signature(first_log, allow=()):
    """The name of the known emulator hang FIRST_LOG ends with, or None.

    One is known, EARLY_BOOT_STALL: the clocksource watchdog's early-boot
    deadlock (scripts/run-vm.sh). Its log: a kernel booted ("Linux version"),
    the last kernel that booted stopped before "clocksource: Switched to
    clocksource" (any clocksource) and before "Run /init as init process", and
    the log has no kernel problem (a watched warning that an entry of ALLOW,
    for any of its cases, excuses is none). An empty log is not this hang.
    """
    lines = read(first_log)
    allow = compile_allow(allow)
    names = {case for case, _, _ in allow}
    if any(PROBLEM.search(x) and not allowed(x, names, allow) for x in lines):
        return None
    boots = [i for i, x in enumerate(lines) if BOOT in x]
    if not boots:
        return None
    last_boot = lines[boots[-1]:]
    if any(SWITCHED in x or INIT in x for x in last_boot):
        return None
    return EARLY_BOOT_STALL


def options(argv):
    """The CLI's options and the rest of its arguments."""
    allow, first_log, cases, rest = [], None, "", []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--allow", "--first-log", "--cases"):
            if i + 1 >= len(argv):
                raise ValueError("%s needs a value" % a)
            v = argv[i + 1]
            if a == "--allow":
                case, sep, rx = v.partition("=")
                if not sep:
                    raise ValueError("--allow %r: not CASE=REGEX" % v)
                allow.append((case, rx))
            elif a == "--first-log":
                first_log = v
            else:
                cases = v
            i += 2
            continue
        rest.append(a)
        i += 1
    return allow, first_log, cases, rest


def main():
    prefix = "(unknown)"
    try:
        allow, first_log, cases, rest = options(sys.argv[1:])
        mode, log, prefix = rest[:3]
        args = rest[3:]
        if mode == "panic":
            args = [args[0], args[1:], cases]
        elif mode not in MODES:
            raise ValueError("unknown mode %r" % mode)
        return report(judge(mode, log, args, allow, first_log), prefix)
    except Exception as e:  # a crash of this script must fail the case, not hide it
        print("not ok %s:(verdict) # verdict.py failed: %r" % (prefix, e))
        return 2


def report(res, prefix):
    failed = 0
    for case, why in res:
        if why:
            failed += 1
            print("not ok %s:%s # %s" % (prefix, case, why))
        else:
            print("ok %s:%s" % (prefix, case))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
