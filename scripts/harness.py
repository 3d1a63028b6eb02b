#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The runner of `make check`, driven by the manifest scripts/suites.toml.

  harness.py gen-make [--variants V...] [--suites S...] [--quick] -o FILE
        the make schedule of the selected runs (see make_schedule())
  harness.py run ID        one run: boot its VM(s) (or run its host command),
                           judge the log, write build/results/ID.txt, print it
  harness.py stamp VARIANT record what the variant's kernel and guest programs
                           are now (rewritten only when they changed)
  harness.py builds        build the selected kernels one after the other, in
                           the background beside the schedule's make
  harness.py wait-build VARIANT
                           a stamp's recipe: wait for that build to end
  harness.py summary       the selected runs' results in manifest order, the
                           case counts, and "N passed, M failed"
  harness.py doc [--check] the table of suites in scripts/README.md
  harness.py list          every run of the manifest: its ID and case count

Every run is one boot chain (or host command) and reports one line per case:
"ok PREFIX:case" or "not ok PREFIX:case # why", PREFIX being VARIANT:SUITE
(interop runs: interop:SUITE; host runs: host:SUITE). A run must report
exactly the number of cases the manifest gives it.
"""
import argparse
import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import verdict  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD") or os.path.join(REPO, "build")
MANIFEST = os.path.join(REPO, "scripts", "suites.toml")
LOGS = os.path.join(BUILD, "logs")
RESULTS = os.path.join(BUILD, "results")
SPECS = os.path.join(BUILD, "specs")
STAMPS = os.path.join(BUILD, "stamp")
SELECTION = os.path.join(BUILD, "check-runs.json")
SRC = os.path.join(BUILD, "src", "linux")
# Where the background builder (cmd_builds) says which builds ended.
CHAIN = os.path.join(BUILD, "chain")
# What each build and run took, in this check (record_time).
TIMES = os.path.join(LOGS, "times.tsv")
ALL_VARIANTS = ["c", "rust", "rust-kasan", "c-rust-memfd", "rust-c-memfd"]
# Kernels build one at a time, in this order: each of rust, c-rust-memfd and
# rust-c-memfd starts from a copy of an earlier build (base_variant in
# scripts/lib.sh); rust-kasan (clang, every object differs) builds from
# scratch early, so that its long suites overlap the later builds.
BUILD_ORDER = ["c", "rust", "rust-kasan", "c-rust-memfd", "rust-c-memfd"]
# A case of the run itself rather than of the program ("(harness)", ...).
PSEUDO = re.compile(r"^\(|^flaky-timeout$")


def die(msg):
    print("harness.py: " + msg, file=sys.stderr)
    sys.exit(2)


def obj(v):
    return os.path.join(BUILD, "obj-" + v)


def kernel(v):
    return os.path.join(obj(v), "arch", "x86", "boot", "bzImage")


def guest(v):
    return os.path.join(BUILD, "guest-" + v)


def variant_cmdline(v):
    """Kernel parameters every VM of the variant needs (see scripts/lib.sh)."""
    out = subprocess.run(["bash", "-c", '. "$0/scripts/lib.sh"; variant_cmdline "$1"', REPO, v],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def has_config(v, opt):
    try:
        with open(os.path.join(obj(v), ".config")) as f:
            return any(line.strip() == opt + "=y" for line in f)
    except FileNotFoundError:
        return False


# --- the manifest ----------------------------------------------------------

def subst(value, n):
    if n is None:
        return value
    if isinstance(value, str):
        return value.replace("{n}", str(n))
    if isinstance(value, list):
        return [subst(x, n) for x in value]
    return value


def load_runs():
    """Every concrete run of the manifest, in manifest order."""
    with open(MANIFEST, "rb") as f:
        m = tomllib.load(f)
    defaults = m.get("defaults", {})
    scale = m.get("timeout_scale", {})
    allow = m.get("allow", {})
    runs = []
    seen = set()
    for i, entry in enumerate(m.get("run", [])):
        e = dict(defaults)
        e.update(entry)
        for key in ("suite", "program", "count"):
            if key not in e:
                die("run %d of the manifest has no %s" % (i + 1, key))
        for n in e.get("each", [None]):
            r = {k: subst(v, n) for k, v in e.items() if k != "each"}
            r["allow"] = [list(a) for a in allow.get(r["suite"], {}).get("entries", [])] + \
                [list(a) for a in r.get("allow", [])]
            if "interop" in r:
                frm, to = r["interop"]
                pairs = [(None, frm, to)]
            else:
                pairs = [(v, v, None) for v in r.get("variants", [])]
            for v, frm, to in pairs:
                c = dict(r)
                c["variant"] = v
                c["from"] = frm
                c["to"] = to
                c["kernels"] = [frm] + ([to] if to else [])
                if "needs" in r:  # a host run: the kernels it needs (built headers)
                    c["kernels"] = list(r["needs"])
                if isinstance(r["count"], dict):
                    if v not in r["count"]:
                        die("run %s: no count for %s" % (r["suite"], v))
                    c["count"] = r["count"][v]
                if r["mode"] == "host":
                    c["prefix"] = "host:" + r["suite"]
                    c["id"] = "host/" + r["suite"]
                elif to:
                    c["prefix"] = "interop:" + r["suite"]
                    c["id"] = "interop/%s-%s" % (r["suite"], r["program"])
                elif r["mode"] == "compare":
                    c["prefix"] = r["suite"] + ":c-vs-rust"
                    c["id"] = "compare/" + r["suite"]
                else:
                    c["prefix"] = "%s:%s" % (v, r["suite"])
                    c["id"] = "%s/%s-%s" % (v, r["suite"], r["program"])
                c["timeout"] = int(r["timeout"] * max([scale.get(k, 1) for k in c["kernels"]] + [1]))
                if c["id"] in seen:
                    die("two runs are named %s" % c["id"])
                seen.add(c["id"])
                runs.append(c)
    return runs


def select(runs, variants, suites, quick=False):
    """The runs of the given variants and suites (globs); quick: single boots."""
    out = []
    for r in runs:
        if any(k not in variants for k in r["kernels"]):
            continue
        if suites and not any(fnmatch.fnmatchcase(r["suite"], s) for s in suites):
            continue
        if quick and not (r["mode"] in ("kunit", "canary", "host") or r["stages"] == 1):
            continue
        if r["mode"] == "compare":
            if any(x.split("/")[0] not in variants for x in r["compare"]):
                continue
            # The runs it compares come with it.
            have = {x["id"] for x in out}
            out += [x for x in runs if x["id"] in r["compare"] and x["id"] not in have]
        out.append(r)
    return out


def by_id(run_id):
    for r in load_runs():
        if r["id"] == run_id:
            return r
    die("no run %s in %s" % (run_id, MANIFEST))


# --- the make schedule -----------------------------------------------------

def write_if_changed(path, text):
    """Write PATH only if its content differs (so make sees no change)."""
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def initrd(r):
    """The initramfs a run boots: built by the make schedule."""
    kind = r["initrd"]
    if kind == "to":
        return os.path.join(guest(r["from"]), "to-%s.cpio" % r["to"])
    return os.path.join(guest(r["kernels"][0]), kind + ".cpio")


def crate_files():
    """The files of tools/liveupdate that git knows: the host checks' inputs."""
    out = subprocess.run(["git", "-C", REPO, "ls-files", "tools/liveupdate"], capture_output=True,
                         text=True, check=True).stdout.split()
    return [os.path.join(REPO, f) for f in out if os.path.exists(os.path.join(REPO, f))]


def series_files():
    """What the series is made of: our kernel files, patches/, series/, series.py."""
    out = subprocess.run(["git", "-C", REPO, "ls-files", "Documentation", "drivers", "include", "kernel",
                          "lib", "mm", "rust", "tools/testing", "patches", "series", "scripts/series.py"],
                         capture_output=True, text=True, check=True).stdout.split()
    return [os.path.join(REPO, f) for f in out if os.path.exists(os.path.join(REPO, f))]


def harness_hash():
    """The harness files a run's verdict depends on: a change reruns every run."""
    h = hashlib.sha256()
    for f in ("scripts/harness.py", "scripts/verdict.py", "scripts/run-vm.sh", "scripts/lib.sh",
              "scripts/mkinitramfs.sh", "guest/init.c"):
        with open(os.path.join(REPO, f), "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def run_deps(r):
    """The files a run's result depends on (its make prerequisites)."""
    deps = [os.path.join(SPECS, r["id"] + ".json")]
    if r["mode"] == "host":
        if r["suite"] == "series":
            deps += series_files()
        elif r["suite"] == "verdict":
            deps.append(os.path.join(REPO, "scripts", "verdict.py"))
            tdir = os.path.join(REPO, "scripts", "tests")
            for root, _, files in os.walk(tdir):
                deps += [os.path.join(root, f) for f in files if "__pycache__" not in root]
        else:
            deps += [os.path.join(STAMPS, k) for k in r["kernels"]]
            deps += crate_files()
    elif r["mode"] == "compare":
        deps += [os.path.join(RESULTS, x + ".txt") for x in r["compare"]]
    else:
        deps += [os.path.join(STAMPS, k) for k in r["kernels"]]
        deps.append(initrd(r))
    return deps


def make_schedule(sel, variants):
    """A makefile: per-variant build stamps, initramfs files, one target per run.

    A run's result file depends on its kernels' stamps, its initramfs and its
    spec (its manifest entry), so make reruns only what changed. Kernel builds
    run one at a time (order-only prerequisites in BUILD_ORDER); each takes
    both CPUs, so with -j2 one VM runs beside a build, two VMs after.
    """
    py = shlex.quote(os.path.abspath(__file__))
    q = shlex.quote
    out = ["# Generated by scripts/harness.py gen-make: do not edit.",
           ".SUFFIXES:", ".PHONY: all FORCE", "FORCE:", ""]
    needed = needed_builds(sel)
    results = []
    cpios = {}
    hh = harness_hash()
    # make starts ready prerequisites of "all" in this order (the manifest's).
    for r in sel:
        res = os.path.join(RESULTS, r["id"] + ".txt")
        spec = os.path.join(SPECS, r["id"] + ".json")
        body = {k: v for k, v in r.items() if k != "doc"}
        body["harness"] = hh
        write_if_changed(spec, json.dumps(body, sort_keys=True, indent=1) + "\n")
        deps = run_deps(r)
        if r["mode"] not in ("host", "compare"):
            cpios[initrd(r)] = r
        results.append(res)
        out.append("%s: %s" % (res, " ".join(deps)))
        out.append("\t@%s run %s" % (py, q(r["id"])))
    out.append("")
    for cp, r in cpios.items():
        g = guest(r["kernels"][0])
        gen = os.path.join(obj(r["kernels"][0]), "usr", "gen_init_cpio")
        kind = r["initrd"]
        nexts = {"single": [], "kexec": [kernel(r["kernels"][0])],
                 "chain": [kernel(r["kernels"][0])] * 2, "to": [kernel(r["to"])] if r["to"] else []}[kind]
        out.append("%s: %s" % (cp, " ".join(os.path.join(STAMPS, k) for k in r["kernels"])))
        have = " && ".join("[ -f %s ]" % q(os.path.join(STAMPS, k)) for k in r["kernels"])
        out.append("\t@rm -f %s; if %s; then GEN_INIT_CPIO=%s %s/scripts/mkinitramfs.sh %s %s %s; fi" %
                   (q(cp), have, q(gen), q(REPO), q(cp), q(g), " ".join(q(n) for n in nexts)))
    out.append("")
    prev = None
    for v in needed:
        # The kernels build one after the other in the background, outside
        # make's job slots (cmd_builds, started by the Makefile next to this
        # make): a stamp's recipe waits for its build. Were the builds jobs
        # of this make, each would queue behind every run that became ready
        # before it, and the long sanitizer build would start minutes late.
        # The order-only chain keeps one waiter at a time in a job slot; the
        # CPU slots (cpu_slot) keep one VM beside a build and two after.
        st = os.path.join(STAMPS, v)
        order = (" | " + os.path.join(STAMPS, prev)) if prev else ""
        out.append("%s: FORCE%s" % (st, order))
        out.append("\t@%s wait-build %s" % (py, v))
        prev = v
    out.append("")
    out.insert(5, "all: " + " ".join(results))
    return "\n".join(out) + "\n"


def cmd_gen_make(args):
    runs = load_runs()
    variants = args.variants.split() if args.variants else list(ALL_VARIANTS)
    if args.quick:
        variants = ["rust"]
    for v in variants:
        if v not in ALL_VARIANTS:
            die("no variant %s (one of %s)" % (v, " ".join(ALL_VARIANTS)))
    suites = args.suites.split() if args.suites else []
    sel = select(runs, variants, suites, args.quick)
    if not sel:
        die("no run matches LUO='%s' SUITES='%s'" % (" ".join(variants), " ".join(suites)))
    write_if_changed(args.output, make_schedule(sel, variants))
    os.makedirs(LOGS, exist_ok=True)
    with open(SELECTION, "w") as f:
        json.dump({"ids": [r["id"] for r in sel], "builds": needed_builds(sel),
                   "start": time.time()}, f)
    with open(TIMES, "w"):
        pass


def needed_builds(sel):
    """The variants whose kernels the selected runs need, in BUILD_ORDER."""
    return sorted({k for r in sel for k in r["kernels"] if r["mode"] != "compare"},
                  key=BUILD_ORDER.index)


def record_time(kind, name, start):
    """One line of build/logs/times.tsv: what ran, when, for how long."""
    with open(TIMES, "a") as f:
        f.write("%s\t%s\t%.1f\t%.1f\n" % (kind, name, start, time.time() - start))


def build_steps(v):
    """The commands that build variant V's kernel and guest programs."""
    return " && ".join(shlex.join([os.path.join(REPO, "scripts", s), a]) for s, a in
                       (("build-kernel.sh", v), ("build-guest.sh", v),
                        ("build-agent.sh", os.path.join(guest(v), "tests"))))


def cmd_builds(args):
    """Build the selection's kernels one after the other (see make_schedule).

    Started by the Makefile beside the check's make, after it emptied
    build/chain. Writes build/chain/VARIANT.done ("ok" or "failed") after
    each build, and removes a failed variant's stamp, so that its runs report
    the failure (cmd_run) and the next variant still builds.
    """
    with open(SELECTION) as f:
        builds = json.load(f)["builds"]
    os.makedirs(CHAIN, exist_ok=True)
    write_if_changed(os.path.join(CHAIN, "pid"), "%d\n" % os.getpid())
    # The kernel's own make must not see the check's make flags (-O, -k, ...).
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    with cpu_slot(block_on=cpu_slots() - 1):
        build_all(builds, env)
    return 0


def build_all(builds, env):
    for v in builds:
        start = time.time()
        with open(os.path.join(LOGS, "build-%s.log" % v), "w") as log:
            ok = subprocess.run(["sh", "-c", build_steps(v)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env).returncode == 0
        try:
            if ok:
                cmd_stamp(argparse.Namespace(variant=v))
        except OSError as e:
            print("harness.py: stamping %s: %s" % (v, e), file=sys.stderr)
            ok = False
        if not ok and os.path.exists(os.path.join(STAMPS, v)):
            os.remove(os.path.join(STAMPS, v))
        record_time("build", v, start)
        write_if_changed(os.path.join(CHAIN, v + ".done"), "ok\n" if ok else "failed\n")


# The CPUs of the machine, as CHECK_JOBS slots (flock()ed files in CHAIN):
# a run that boots VMs or runs host commands holds one while it runs, and
# the builder holds one from its first build to its last, so that a build
# (which takes both CPUs) has one VM beside it, not two. Make itself runs
# one job more than there are slots, for the stamp that waits for a build.
def cpu_slots():
    return max(1, int(os.environ.get("CHECK_JOBS", "2")))


@contextlib.contextmanager
def cpu_slot(block_on=None):
    """Hold a CPU slot for the duration (the builder asks for BLOCK_ON)."""
    os.makedirs(CHAIN, exist_ok=True)
    names = [block_on] if block_on is not None else list(range(cpu_slots()))
    while True:
        for i in names:
            f = open(os.path.join(CHAIN, "cpu%d" % i), "a")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if block_on is not None else fcntl.LOCK_NB))
            except BlockingIOError:
                f.close()
                continue
            try:
                yield i
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        time.sleep(0.5)


def builder_alive():
    try:
        with open(os.path.join(CHAIN, "pid")) as f:
            os.kill(int(f.read()), 0)
        return True
    except (OSError, ValueError):
        return False


def cmd_wait_build(args):
    """The recipe of a stamp: wait for cmd_builds to end the variant's build."""
    v = args.variant
    log = os.path.join(LOGS, "build-%s.log" % v)
    done = os.path.join(CHAIN, v + ".done")
    print("==> building %s (log: %s)" % (v, log), flush=True)
    seen_builder = False
    while not os.path.exists(done):
        alive = builder_alive()
        seen_builder = seen_builder or alive
        # A builder that never wrote its pid in 60 s, or that is gone, ends
        # the wait: the variant did not build.
        if not alive and (seen_builder or time.time() - os.stat(SELECTION).st_mtime > 60):
            if os.path.exists(done):
                break
            print("harness.py: the build chain stopped before %s (see %s)" %
                  (v, os.path.join(LOGS, "builds.log")))
            if os.path.exists(os.path.join(STAMPS, v)):
                os.remove(os.path.join(STAMPS, v))
            return 0
        time.sleep(1)
    with open(done) as f:
        if f.read().strip() != "ok":
            try:
                with open(log, errors="replace") as g:
                    print("".join(g.readlines()[-30:]), end="")
            except FileNotFoundError:
                pass
    return 0


def cmd_stamp(args):
    """What the variant's kernel and guest programs are: sizes and mtimes."""
    v = args.variant
    # What goes into the initramfs: init and tests/ (not the objects in obj/).
    files = [kernel(v), os.path.join(guest(v), "init")]
    tests = os.path.join(guest(v), "tests")
    files += [os.path.join(tests, n) for n in os.listdir(tests) if not n.endswith(".tmp")]
    h = hashlib.sha256()
    for p in sorted(files):
        st = os.stat(p)
        h.update(("%s %d %d\n" % (os.path.relpath(p, BUILD), st.st_size, st.st_mtime_ns)).encode())
    write_if_changed(os.path.join(STAMPS, v), h.hexdigest() + "\n")


# --- one run ---------------------------------------------------------------

def case_list(r, path):
    """Write the cases of a ktap run (PROGRAM --list ARGS LIST_ARGS) to PATH."""
    prog = os.path.join(guest(r["kernels"][0]), "tests", r["program"])
    args = r.get("list_args", [])
    if args == ["@stages"]:
        names = []
        for s in range(1, r["stages"] + 1):
            names += subprocess.run([prog, "-s", str(s), "--list"] + r.get("args", []),
                                    capture_output=True, text=True, check=True).stdout.split()
        text = "\n".join(sorted(set(names))) + "\n"
    else:
        text = subprocess.run([prog, "--list"] + r.get("args", []) + args, capture_output=True,
                              text=True, check=True).stdout
    with open(path, "w") as f:
        f.write(text)


# KUnit takes one suite glob. Ours are luo_rs_* (the Rust LUO and its handlers) and, for the
# general abstractions, rust_kho, rust_kho_bytes and rust_hashtable; and the kernel crate's
# doctests, rust_doctests_kernel, where a variant builds them (CONFIG_RUST_KERNEL_DOCTESTS):
# upstream's and those of the abstractions we add, on the crate as our series changes it.
# Upstream's other Rust suites (rust_kernel_*, rust_kvec, rust_allocator, rust_atomics...) are
# left out. A suite of ours that the glob misses shows up as cases without a result.
KUNIT_GLOB = "[lr]u[os][_t][_r][dhkrs][_abho]*"


def kunit_sources(v):
    srcs = sorted(os.path.join(SRC, "kernel", "liveupdate", f)
                  for f in os.listdir(os.path.join(SRC, "kernel", "liveupdate")) if f.endswith(".rs"))
    srcs += [os.path.join(SRC, "rust", "kernel", "kho", "vmalloc.rs"),
             os.path.join(SRC, "rust", "kernel", "kho", "bytes.rs"),
             os.path.join(SRC, "rust", "kernel", "hashtable.rs")]
    if has_config(v, "CONFIG_LIVEUPDATE_MEMFD_RUST"):
        srcs.append(os.path.join(SRC, "mm", "memfd_luo_rs.rs"))
    if has_config(v, "CONFIG_VFIO_PCI_LIVEUPDATE_RUST"):
        srcs.append(os.path.join(SRC, "drivers", "vfio", "pci", "vfio_pci_luo_rs.rs"))
    if has_config(v, "CONFIG_RUST_KERNEL_DOCTESTS"):
        gen = os.path.join(obj(v), "rust", "doctests_kernel_generated_kunit.c")
        if not os.path.exists(gen):
            die("%s: CONFIG_RUST_KERNEL_DOCTESTS, but the build made no %s" % (v, gen))
        srcs.append(gen)
    return srcs


def boot(r, serial):
    """Run the run's VM chain; returns run-vm.sh's exit status.

    The kernel's parameters come first; after "--", init's words and the
    program's arguments, which the kernel hands to init (guest/init.c)."""
    v = r["kernels"][0]
    cmd = ["kunit.enable=0"]
    if r["mode"] == "kunit":
        cmd = ["kunit.filter_glob=" + KUNIT_GLOB]
    cmd += ["console_msg_format=syslog"]
    cmd += r.get("cmdline", "").split()
    # The variants' own parameters, unless the run sets the same one.
    keys = {p.split("=", 1)[0] for p in cmd}
    for k in r["kernels"]:
        cmd += [p for p in variant_cmdline(k) if p.split("=", 1)[0] not in keys and p not in cmd]
    if "--" in cmd:
        die("run %s: the kernel parameters hold \"--\"" % r["id"])
    cmd += ["--", "test=" + ("none" if r["mode"] == "kunit" else r["program"]),
            "stages=%d" % r["stages"]]
    if r["mode"] == "canary":
        cmd.append("canary=" + r["canary"])
    cmd += r.get("args", [])
    env = dict(os.environ, LUO_VM_RETRY="1", LUO_VM_VFIO="1" if r["machine"] == "vfio" else "0")
    p = subprocess.run([os.path.join(REPO, "scripts", "run-vm.sh"), kernel(v), initrd(r), serial,
                        str(r["timeout"]), r["memory"], " ".join(cmd)], env=env)
    return p.returncode


def judge_vm(r):
    """Boot and judge one run: list of (case, why)."""
    serial = os.path.join(LOGS, r["id"] + ".log")
    lists = os.path.join(BUILD, "lists")
    os.makedirs(os.path.join(lists, os.path.dirname(r["id"])), exist_ok=True)
    mode = r["mode"]
    listfile = os.path.join(lists, r["id"] + ".list")
    if mode == "ktap":
        case_list(r, listfile)
        args = [listfile]
    elif mode == "canary":
        with open(listfile, "w") as f:
            f.write("%s_triggered\n" % r["canary"])
        args = [listfile]
    elif mode == "kselftest":
        args = [os.path.join(SRC, "tools", "testing", "selftests", "liveupdate", r["program"] + ".c")]
    elif mode == "stages":
        args = [r["program"], r["stages"]]
    elif mode == "kunit":
        args = kunit_sources(r["variant"])
    elif mode == "panic":
        # Stage 1's cases must pass before the next kernel panics.
        case_list(r, listfile)
        with open(listfile) as f:
            s1 = [c for c in f.read().split() if c.startswith("s1_")]
        with open(listfile, "w") as f:
            f.write("\n".join(s1) + "\n")
        args = ["next_kernel_panics", r["panic"], listfile]
    else:
        die("unknown mode %s" % mode)
    rc = boot(r, serial)
    first = serial + ".timeout"
    first = first if os.path.exists(first) else None
    vmode = "ktap" if mode == "canary" else mode
    res = verdict.judge(vmode, serial, args, allow=[tuple(a) for a in r.get("allow", [])],
                        first_log=first)
    notes = []
    if first:
        sig = verdict.hang_signature(first)
        notes.append("# retried after a VM timeout%s: %s (first log: %s)" %
                     (" (known hang: %s)" % sig if sig else "", serial, first))
    if rc in (124, 137):
        res = [(c, (why + " " if why else "") + "(VM timed out after %ds)" % r["timeout"])
               for c, why in res]
    if mode == "canary":
        res = canary_verdict(r["canary"], res)
    return res, notes, serial


# What the verdict must say of each canary's run (guest/init.c canary()):
# a kernel problem ("kernel: ..." in a case's reason) with this text. A
# message of level err reaches the verdict twice, through the console's
# level prefix and through init's kmsg monitor, in either order: either one
# will do. A LUO warning reaches it through the console only ("[time]").
CANARY = {
    "warn": "WARNING:",
    "hung": "blocked for more than",
    "lockup": "BUG: soft lockup",
    "err": "LUO-KMSG-ERR: ",
    "luo-warn": "LUO-KMSG-WARN: [",
}


def canary_verdict(kind, res):
    """The canary made the kernel report a problem: the verdict must fail the run on it."""
    whys = [why or "" for _, why in res]
    case = kind + "_detected"
    if any(w.startswith("kernel: ") and CANARY[kind] in w for w in whys):
        return [(case, None)]
    return [(case, "the verdict did not fail the run on '%s': %s" %
             (CANARY[kind], "; ".join(w for w in whys if w) or "every case passed"))]


# A host step that takes longer has hung (a cold cargo build takes minutes).
HOST_TIMEOUT = 1800
HOST_STEPS = [
    ("test", "cargo test --locked", {}),
    ("test-no-kernel", "cargo test --locked -p liveupdate",
     {"LIVEUPDATE_UAPI_INCLUDE": None, "BUILD": "/nonexistent"}),
    # One call for the three published crates: cargo verifies luod-client
    # against the luod-proto it just packaged (not yet published).
    ("package", "cargo package --locked --allow-dirty -p liveupdate -p luod-proto -p luod-client", {}),
    ("c-client", "make -C luod-client-c check", {}),
    ("clippy", "cargo clippy --locked --all-targets -- -D warnings", {}),
    ("fmt", "cargo fmt --check", {}),
]


def judge_script(suite, argv):
    """A host script that prints "ok host:SUITE:case" lines (and "# " notes)."""
    log = os.path.join(LOGS, "host", suite + ".log")
    with open(log, "w") as f:
        p = subprocess.run([sys.executable] + argv, stdout=subprocess.PIPE, stderr=f, text=True,
                           timeout=HOST_TIMEOUT)
        f.write(p.stdout)
    res, notes = [], []
    for line in p.stdout.splitlines():
        m = re.match(r"^(not ok|ok) host:%s:(\S+)(?: # (.*))?$" % re.escape(suite), line)
        if m:
            res.append((m.group(2), None if m.group(1) == "ok" else (m.group(3) or "failed")))
        elif line.startswith("# "):
            notes.append(line)
    if p.returncode != 0 and all(why is None for _, why in res):
        res.append(("(runner)", "%s exited %d (see %s)" % (os.path.relpath(argv[0], REPO), p.returncode, log)))
    return res, notes, log


def judge_host(r):
    """Host commands: the userspace crate's checks, the verdict's unit tests, the series."""
    os.makedirs(os.path.join(LOGS, "host"), exist_ok=True)
    if r["suite"] == "series":
        return judge_script("series", [os.path.join(REPO, "scripts", "series.py"), "check"])
    if r["suite"] == "verdict":
        return judge_script("verdict", [os.path.join(REPO, "scripts", "tests", "run.py")])
    ws = os.path.join(REPO, "tools", "liveupdate")
    res = []
    for name, cmd, extra in HOST_STEPS:
        env = dict(os.environ, LIVEUPDATE_UAPI_INCLUDE=os.path.join(obj("c"), "usr", "include"),
                   CARGO_TARGET_DIR=os.path.join(BUILD, "agent", "target"))
        env["PATH"] = os.path.expanduser("~/.cargo/bin") + ":" + env.get("PATH", "")
        for k, val in extra.items():
            if val is None:
                env.pop(k, None)
            else:
                env[k] = val
        log = os.path.join(LOGS, "host", name + ".log")
        with open(log, "w") as f:
            try:
                p = subprocess.run(cmd.split(), cwd=ws, env=env, stdout=f, stderr=subprocess.STDOUT,
                                   timeout=HOST_TIMEOUT)
                why = None if p.returncode == 0 else "exit %d, see %s" % (p.returncode, log)
            except subprocess.TimeoutExpired:
                why = "timed out after %ds, see %s" % (HOST_TIMEOUT, log)
        res.append((name, why))
    return res, [], os.path.join(LOGS, "host")


def judge_compare(r):
    """fuzz-diff: the C and the Rust LUO printed the same outcome digest."""
    logs = [os.path.join(LOGS, x + ".log") for x in r["compare"]]
    digests = []
    for path in logs:
        try:
            with open(path, errors="replace") as f:
                found = re.findall(r"# diff-digest: ([0-9a-f]+)", f.read())
        except FileNotFoundError:
            found = []
        digests.append(found[-1] if found else None)
    case = "seed1"
    if digests[0] and digests[0] == digests[1]:
        return [(case, None)], [], logs[0]
    if None in digests:
        why = "no digest from %s (run incomplete)" % " and ".join(
            x.split("/")[0] for x, d in zip(r["compare"], digests) if d is None)
    else:
        why = "digests differ: %s %s, %s %s" % (r["compare"][0].split("/")[0], digests[0],
                                                r["compare"][1].split("/")[0], digests[1])
        why += first_difference(logs)
    return [(case, why)], [], " ".join(logs)


def first_difference(logs):
    """The first differing "# diff:" outcome line of two logs, if any."""
    outs = []
    for path in logs:
        with open(path, errors="replace") as f:
            outs.append([re.sub(r"(<[0-9]+>)?\[ *[0-9]+\.[0-9]+\].*", "", m).rstrip("\r")
                         for m in re.findall(r"# diff: .*", f.read())])
    for a, b in zip(*outs):
        if a != b:
            return "; first difference: c: %s | rust: %s" % (a, b)
    return "; c: %d lines | rust: %d lines" % (len(outs[0]), len(outs[1]))


def cmd_run(args):
    r = by_id(args.id)
    res_path = os.path.join(RESULTS, r["id"] + ".txt")
    os.makedirs(os.path.dirname(res_path), exist_ok=True)
    missing = [k for k in r["kernels"] if not os.path.exists(os.path.join(STAMPS, k))]
    busy = r["mode"] != "compare" and not missing
    # A run that boots VMs or runs host commands waits for a CPU slot first.
    with cpu_slot() if busy else contextlib.nullcontext():
        start = time.time()
        try:
            if missing and r["mode"] != "compare":
                log = " ".join(os.path.join(LOGS, "build-%s.log" % k) for k in missing)
                res, notes = [("(build)", "the %s kernel or guest programs did not build"
                               % " and ".join(missing))], []
            elif r["mode"] == "host":
                res, notes, log = judge_host(r)
            elif r["mode"] == "compare":
                res, notes, log = judge_compare(r)
            else:
                res, notes, log = judge_vm(r)
        except Exception as e:  # a harness failure fails the run, it never hides it
            res, notes, log = [("(harness)", "harness.py failed: %r" % e)], [], "-"
        record_time("run", r["id"], start)
    real = [c for c, _ in res if not PSEUDO.search(c)]
    if len(real) != r["count"]:
        res.append(("(count)", "%d cases, the manifest expects %d (scripts/suites.toml)"
                    % (len(real), r["count"])))
    lines = []
    for c, why in res:
        if why:
            lines.append("not ok %s:%s # %s" % (r["prefix"], c, why))
        else:
            lines.append("ok %s:%s" % (r["prefix"], c))
    if any(x.startswith("not ok") for x in lines):
        notes.append("#   log: %s" % log)
    with open(res_path + ".tmp", "w") as f:
        f.write("\n".join(lines + notes) + "\n")
    os.replace(res_path + ".tmp", res_path)
    print("\n".join(lines + notes), flush=True)


# --- the summary -------------------------------------------------------------

def stale_dep(r, result):
    """A prerequisite of the run that is missing or newer than its result."""
    t = os.stat(result).st_mtime_ns
    for d in run_deps(r):
        try:
            if os.stat(d).st_mtime_ns > t:
                return "%s is newer than the result" % d
        except FileNotFoundError:
            return "%s is missing" % d
    return None


def cmd_summary(args):
    try:
        with open(SELECTION) as f:
            selection = json.load(f)
    except FileNotFoundError:
        die("no selection: run gen-make first")
    runs = {r["id"]: r for r in load_runs()}
    lines = []
    failed_paths = []
    for rid in selection["ids"]:
        r = runs.get(rid)
        prefix = r["prefix"] if r else rid
        path = os.path.join(RESULTS, rid + ".txt")
        try:
            with open(path) as f:
                got = [x for x in f.read().splitlines() if x.startswith(("ok ", "not ok "))]
        except FileNotFoundError:
            blame = " ".join("build-%s.log" % k for k in (r["kernels"] if r else []))
            got = ["not ok %s:(run) # no result: the run did not happen (see %s in %s)"
                   % (prefix, blame or "the output above", LOGS)]
        if not got:
            got = ["not ok %s:(run) # its result file %s has no case" % (prefix, path)]
        # A result counts only if the run ran after everything it depends on
        # (make -k skips a run whose prerequisite failed, and leaves an old
        # result file in place).
        elif r and os.path.exists(path) and all(x.startswith("ok ") for x in got):
            stale = stale_dep(r, path)
            if stale:
                got.append("not ok %s:(stale) # %s: the run did not run after it changed" % (prefix, stale))
        lines += got
        if any(x.startswith("not ok") for x in got) and os.path.exists(path):
            failed_paths.append(path)
    # Failed runs run again next time, whatever changed or not.
    for path in failed_paths:
        os.replace(path, path + ".failed")
    with open(os.path.join(BUILD, "results.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if args.make_status and not any(x.startswith("not ok") for x in lines):
        lines.append("not ok check:schedule # make exited %d with every run reported: see above"
                     % args.make_status)
    failed = [x for x in lines if x.startswith("not ok")]
    passed = [x for x in lines if x.startswith("ok ")]
    if failed:
        print("# failed:")
        print("\n".join(failed))
    print("==> check took %ds" % (time.time() - selection.get("start", time.time())), file=sys.stderr)
    print_times()
    print("%d passed, %d failed" % (len(passed), len(failed)))
    return 1 if failed or not passed else 0


def print_times():
    """Where the check's time went (build/logs/times.tsv), on stderr."""
    builds, runs = [], []
    try:
        with open(TIMES) as f:
            for line in f:
                kind, name, _, took = line.rstrip("\n").split("\t")
                (builds if kind == "build" else runs).append((float(took), name))
    except (FileNotFoundError, ValueError):
        return
    if builds:
        print("==> builds: " + ", ".join("%s %ds" % (n, t) for t, n in builds), file=sys.stderr)
    if runs:
        runs.sort(reverse=True)
        print("==> %d runs took %ds in all; the longest: %s" % (
            len(runs), sum(t for t, _ in runs), ", ".join("%s %ds" % (n, t) for t, n in runs[:5])),
            file=sys.stderr)


def cmd_list(args):
    for r in load_runs():
        print(r["id"], r["count"])


def program_label(p):
    return {"none": "(KUnit, at boot)", "host": "(on the host)"}.get(p, "`%s`" % p)


def entry_doc(r):
    """The doc of a run as the manifest writes it (corruptN: one per mode)."""
    return "{n}" if r["suite"].startswith("corrupt") else r["doc"]


def doc_table():
    """Markdown table of the suites: one row per suite and its variants."""
    rows = {}
    order = []
    for r in load_runs():
        key = r["prefix"].split(":", 1)[1] if r["variant"] and r["mode"] != "compare" else r["prefix"]
        key = re.sub(r"^corrupt\d+$", "corruptN", key)
        if key not in rows:
            rows[key] = {"variants": [], "programs": [], "count": {}, "docs": []}
            order.append(key)
        row = rows[key]
        where = ("host" if r["mode"] == "host" else
                 "c and rust" if r["mode"] == "compare" else
                 r["variant"] or "%s → %s" % (r["from"], r["to"]))
        if where not in row["variants"]:
            row["variants"].append(where)
        if r["program"] not in row["programs"]:
            row["programs"].append(r["program"])
        if r["doc"] not in row["docs"] and "{n}" not in entry_doc(r):
            row["docs"].append(r["doc"])
        row["count"][where] = row["count"].get(where, 0) + r["count"]
    out = ["| suite | program | variants (cases) | what it tests |", "|---|---|---|---|"]
    for key in order:
        row = rows[key]
        doc = "; ".join(row["docs"])
        if key == "corruptN":
            doc = "deliberately corrupted handovers (--mode=N): the next kernel boots and keeps what validates"
        out.append("| `%s` | %s | %s | %s |" % (
            key, ", ".join(program_label(p) for p in row["programs"]),
            ", ".join("%s (%d)" % (w, row["count"][w]) for w in row["variants"]), doc))
    return "\n".join(out)


def cmd_doc(args):
    path = os.path.join(REPO, "scripts", "README.md")
    with open(path) as f:
        text = f.read()
    begin, end = "<!-- suites:begin -->", "<!-- suites:end -->"
    if begin not in text or end not in text:
        die("%s has no %s ... %s markers" % (path, begin, end))
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    total = sum(r["count"] for r in load_runs())
    table = ("\n<!-- generated by scripts/harness.py doc from scripts/suites.toml -->\n"
             "%s\n\n%d cases in all on the five variants.\n" % (doc_table(), total))
    new = head + begin + table + end + tail
    if args.check:
        if new != text:
            print("not ok lint:suites-doc # scripts/README.md is not what scripts/harness.py doc writes")
            return 1
        print("ok lint:suites-doc")
        return 0
    if new != text:
        with open(path, "w") as f:
            f.write(new)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen-make")
    g.add_argument("--variants", default="")
    g.add_argument("--suites", default="")
    g.add_argument("--quick", action="store_true")
    g.add_argument("-o", "--output", required=True)
    s = sub.add_parser("run")
    s.add_argument("id")
    s = sub.add_parser("stamp")
    s.add_argument("variant")
    sub.add_parser("builds")
    s = sub.add_parser("wait-build")
    s.add_argument("variant")
    s = sub.add_parser("summary")
    s.add_argument("--make-status", type=int, default=0)
    sub.add_parser("list")
    d = sub.add_parser("doc")
    d.add_argument("--check", action="store_true")
    args = ap.parse_args()
    return {"gen-make": cmd_gen_make, "run": cmd_run, "stamp": cmd_stamp, "builds": cmd_builds,
            "wait-build": cmd_wait_build, "summary": cmd_summary,
            "list": cmd_list, "doc": cmd_doc}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
