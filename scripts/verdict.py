#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Read a VM's serial log and print one verdict line per test case.

  verdict.py kselftest LOG PREFIX SOURCE.c   cases = TEST/TEST_F names in SOURCE.c
  verdict.py stages LOG PREFIX CASE STAGES   one case spanning STAGES boots
  verdict.py ktap LOG PREFIX CASES_FILE      cases = lines of CASES_FILE, each
                                             reported as "ok N <case>" (KTAP)
  verdict.py panic LOG PREFIX CASE PATTERN   one case: stage 1 passes, then the
                                             next kernel panics with PATTERN

Prints "ok PREFIX:case" or "not ok PREFIX:case # reason" per case. A kernel
problem (WARNING, BUG, Oops, panic, lockdep, KASAN/UBSAN, debugobjects
("ODEBUG:" matches "BUG:"), list corruption (DEBUG_LIST), any message of
level err or worse) fails the case that was running when it was printed, or
every case when none was. So does a LUO message at warning level that rejects
or drops part of a handover, unless the run corrupted its handover on purpose
(luo.corrupt= on its command line), or it is the drop of a file whose handler
the run removed on purpose (luo.expect_unknown=COMPATIBLE: only the "dropped
token" warnings naming that handler).

Kernel messages are read with their level when the VM ran with
console_msg_format=syslog ("<N>[time] text"), which also covers what the
kernel printed on the reboot path; "LUO-KMSG-ERR:" lines (init's kmsg monitor)
are errors too.

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
    r"rcu: INFO|INFO: task .* blocked|LUO-KMSG-ERR:)"
)


# A warning from LUO that it did not take over part of the handover.
REJECTION = re.compile(
    r"luo: (rejected handover|dropped |session list is unusable|bad FLB table|"
    r"block chain|session \[.*\]: dropped)"
)
# "<level>[time]": the syslog prefix of a console line (after any terminal noise).
LEVEL = re.compile(r"<(\d+)>(?=\[\s*\d+\.\d+\])")
# Messages of high level that every VM prints when it ends.
BENIGN = re.compile(r"reboot: (Restarting system|Power down|System halted)")


def read(path):
    """The log's lines, with syslog level prefixes turned into markers.

    A kernel message of level err or worse, or a LUO rejection at warning level
    in a run that did not ask for corruption, gets "LUO-KMSG-ERR: " in front so
    that PROBLEM matches it; the level prefix is removed from every line.
    """
    try:
        with open(path, errors="replace") as f:
            raw = f.read().splitlines()
    except FileNotFoundError:
        return []
    cmdlines = [line for line in raw if "Command line:" in line]
    corrupting = any("luo.corrupt=" in line for line in cmdlines)
    # luo.expect_unknown=COMPAT: the run drops files of handler COMPAT on purpose.
    unknown = set()
    for line in cmdlines:
        unknown.update(re.findall(r"luo\.expect_unknown=(\S+)", line))
    expected = [
        re.compile(r"dropped token 0x[0-9a-f]+: no registered handler for compatible '%s'$"
                   % re.escape(u)) for u in unknown
    ]
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
        if head.strip() and not head.strip().startswith("\x1b"):
            partial += head
        level = int(m.group(1)) & 7
        line = line[m.end():]
        if BENIGN.search(line):
            pass
        elif level == 4 and any(e.search(line.rstrip()) for e in expected):
            pass
        elif level <= 3 or (level == 4 and not corrupting and REJECTION.search(line)):
            line = "LUO-KMSG-ERR: " + line
        lines.append(line)
    if partial:
        lines.append(partial)
    return lines


def kselftest(log, prefix, source):
    src = open(source).read()
    cases = []
    for m in re.finditer(r"^TEST(?:_F|_F_TIMEOUT|_HARNESS)?\(\s*(\w+)\s*,\s*(\w+)", src, re.M):
        cases.append(m.group(2))
    for m in re.finditer(r"^TEST\(\s*(\w+)\s*\)", src, re.M):
        cases.append(m.group(1))
    result = {c: None for c in cases}
    problems = {c: [] for c in cases}
    global_problems = []
    current = None
    for line in read(log):
        m = re.search(r"#\s+RUN\s+\S+\.(\w+)\s", line + " ")
        if m and m.group(1) in result:
            current = m.group(1)
            continue
        m = re.match(r"^(not ok|ok) \d+ \S+\.(\w+)(.*)$", line)
        if m and m.group(2) in result:
            status, case, rest = m.groups()
            if status == "ok" and "# SKIP" in rest:
                result[case] = "skipped" + rest
            elif status == "ok":
                result[case] = "ok"
            else:
                result[case] = "failed" + rest
            current = None
            continue
        if PROBLEM.search(line):
            (problems[current] if current else global_problems).append(line.strip())
    out = []
    for c in cases:
        why = None
        if result[c] is None:
            why = "no result in the log"
        elif result[c] != "ok":
            why = result[c]
        elif problems[c] or global_problems:
            why = "kernel: " + (problems[c] or global_problems)[0]
        out.append((c, why))
    if not cases:
        out.append(("(no cases found in %s)" % source, "no cases"))
    elif "LUO-HARNESS: done" not in read(log):
        out.append(("(harness)", "no completion line"))
    return out


def stages(log, case, n):
    lines = read(log)
    exits = {}
    problems = []
    for line in lines:
        m = re.match(r"LUO-HARNESS: stage (\d+) exit (\d+)", line)
        if m:
            exits[int(m.group(1))] = int(m.group(2))
        if PROBLEM.search(line):
            problems.append(line.strip())
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
    if why is None and problems:
        why = "kernel: " + problems[0]
    return [(case, why)]


def kunit(log, prefix, sources):
    """Cases = #[test] functions of the #[kunit_tests(SUITE)] modules in the sources."""
    cases = []
    for path in sources:
        suite = None
        expect_fn = False
        for line in open(path):
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
    result = {c: None for c in cases}
    problems = []
    suite = None
    for line in read(log):
        body = re.sub(r"^\[\s*[0-9.]+\]\s*", "", line)
        m = re.match(r"#\s*Subtest:\s*(\w+)", body.strip())
        if m:
            suite = m.group(1)
            continue
        m = re.match(r"^(not ok|ok) \d+ (\w+)(.*)$", body.strip())
        if m and (suite, m.group(2)) in result:
            status, case, rest = m.groups()
            if status == "ok" and "# SKIP" not in rest:
                result[(suite, case)] = "ok"
            else:
                result[(suite, case)] = ("skipped" if status == "ok" else "failed") + rest
            continue
        if PROBLEM.search(line):
            problems.append(line.strip())
    out = []
    for c in cases:
        name = "%s.%s" % c
        if result[c] is None:
            out.append((name, "no result in the log"))
        elif result[c] != "ok":
            out.append((name, result[c]))
        elif problems:
            out.append((name, "kernel: " + problems[0]))
        else:
            out.append((name, None))
    if not cases:
        out.append(("(no KUnit cases found)", "no cases"))
    return out


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


def ktap(log, cases_file):
    cases = []
    for line in read(cases_file):
        if line.strip() and line.strip() not in cases:
            cases.append(line.strip())
    lines = read(log)
    result = {}
    pending = []  # kernel problems since the previous result line
    diag = None  # the last "# ..." line since the previous result line
    for line in lines:
        m = re.match(r"^(not ok|ok) \d+ ([A-Za-z0-9_.:-]+)(.*)$", line)
        if m and m.group(2) in cases:
            status, case, rest = m.groups()
            if status == "ok" and "# SKIP" in rest:
                why = "skipped" + rest
            elif status == "ok":
                why = "kernel: " + pending[0] if pending else None
            else:
                if diag and diag.startswith(case + ": "):
                    diag = diag[len(case) + 2:]
                why = "failed" + rest + (": " + diag if diag else "")
            # A case reported more than once keeps its first failure.
            if result.get(case) is None:
                result[case] = why
            pending = []
            diag = None
            continue
        if PROBLEM.search(line):
            pending.append(line.strip())
        elif line.startswith("# ") and not line.startswith("# Totals:"):
            diag = line[2:].strip()
    out = []
    harness = harness_failures(lines)
    for c in cases:
        if c not in result:
            why = "no result in the log"
            if harness:
                why += " (" + "; ".join(harness) + ")"
            out.append((c, why))
        else:
            out.append((c, result[c]))
    if pending:
        out.append(("(after the last case)", "kernel: " + pending[0]))
    if not cases:
        out.append(("(no cases in %s)" % cases_file, "no cases"))
    elif all(why is None for _, why in out) and (harness or "LUO-HARNESS: done" not in lines):
        out.append(("(harness)", "; ".join(harness) or "no completion line"))
    return out


def expected_panic(log, case, pattern):
    """A run that passes only if the next kernel panics with PATTERN.

    Stage 1 must exit 0 with no failed KTAP case and no kernel problem, and
    the kernel it kexecs into must panic ("Kernel panic - not syncing: ...")
    with a message containing PATTERN before stage 2 starts.
    """
    lines = read(log)
    stage1_done = False
    for line in lines:
        if "Kernel panic - not syncing" in line:
            if not stage1_done:
                return [(case, "panicked before stage 1 ended: " + line.strip())]
            if pattern not in line:
                return [(case, "a different panic: " + line.strip())]
            if any(x.startswith("LUO-HARNESS: stage 2 start") for x in lines):
                return [(case, "stage 2 started")]
            return [(case, None)]
        if re.match(r"^not ok \d+ ", line):
            return [(case, "stage 1: " + line.strip())]
        if PROBLEM.search(line):
            return [(case, "kernel: " + line.strip())]
        m = re.match(r"LUO-HARNESS: stage 1 exit (\d+)", line)
        if m:
            if m.group(1) != "0":
                return [(case, "stage 1 exited " + m.group(1))]
            stage1_done = True
    if not stage1_done:
        return [(case, "stage 1 did not finish")]
    return [(case, "the next kernel did not panic")]


def main():
    mode, log, prefix = sys.argv[1:4]
    try:
        return report(mode, log, prefix)
    except Exception as e:  # a crash of this script must fail the case, not hide it
        print("not ok %s:(verdict) # verdict.py failed: %r" % (prefix, e))
        return 2


def report(mode, log, prefix):
    if mode == "kselftest":
        res = kselftest(log, prefix, sys.argv[4])
    elif mode == "kunit":
        res = kunit(log, prefix, sys.argv[4:])
    elif mode == "ktap":
        res = ktap(log, sys.argv[4])
    elif mode == "panic":
        res = expected_panic(log, sys.argv[4], sys.argv[5])
    else:
        res = stages(log, sys.argv[4], int(sys.argv[5]))
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
