#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The upstream patch series, generated from the overlay and patches/.

  series.py make [-o DIR]   write the series to DIR (build/series): git
                            format-patch output against Linux 7.3.4, with
                            a cover letter
  series.py check           make it, then its gates, one line each:
                            "ok host:series:CASE" or "not ok ... # why"

The source stays what the harness builds: our files at their kernel paths
and patches/*.patch over Debian's pristine tree (scripts/prepare-tree.sh).
series/series.toml cuts the difference between the pristine and the
prepared tree into patches: each patch owns whole files ("files", globs),
and a file several patches change is cut into its change blocks ("hunks":
per file, the patterns of the lines that are the patch's). A pure
insertion is cut further, at each line that matches a pattern, so that
neighbouring #include or "pub mod" lines can go to different patches. A
new file can be cut that way too: it is added by the first patch that owns
a part of it, which must own its first line.
Every change must have exactly one owner, so the series cannot drift from
the tree: the check rebuilds the tree from the series and compares.

Gates (series.py check):
  assigned    every change of the prepared tree has one owner
  messages    subjects "area: summary" under 76 columns, a body, a
              sign-off, no reference to this repository's harness
  am          git am of the series onto the pristine files succeeds
  tree        the tree it gives is the prepared tree, file by file
  checkpatch  checkpatch.pl --strict: no ERROR; only the WARNING and
              CHECK types series.toml keeps, each with its reason
  rustfmt     rustfmt --check (the kernel's make rustfmtcheck) of every
              Rust file the series adds or changes
  bisect      every prefix of the series (the pristine tree, then each
              patch in turn) is in the ledger series/bisect.tsv as built
              with clippy (CLIPPY=1) without error or warning by make
              series-bisect, under its key: the git tree of the prefix and
              the hash of the options it was configured and built with
              (scripts/lib.sh bisect_fragment, bisect_make_flags). A
              prefix that changed since it was built fails the gate.

  series.py keys [REPO]     the key of every prefix of the series applied
                            in REPO (build/series-work/am), one line each:
                            "NN TREE CONFIG RECORDED" (RECORDED: ok if
                            the ledger has it built, else -)
  series.py ledger REPO TIMES
                            write the ledger: the prefixes series-bisect.sh
                            built (TIMES: its times.tsv) of the series in
                            REPO under their keys, and the ledger's rows of
                            the other prefixes whose keys still match
"""
import argparse
import fnmatch
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD") or os.path.join(REPO, "build")
PRISTINE = os.path.join(BUILD, "src", "pristine")
SRC = os.path.join(BUILD, "src", "linux")
SPEC = os.path.join(REPO, "series", "series.toml")
COVER = os.path.join(REPO, "series", "cover-letter.txt")
WORK = os.path.join(BUILD, "series-work")
OUT = os.path.join(BUILD, "series")
# What a commit message must not name: the harness, not the kernel.
HARNESS_WORDS = re.compile(r"make (check|bench|demo|quick)|suites\.toml|scripts/|harness|"
                           r"build/|\bissue \d|\bsession \d|patches/\d{4}", re.I)
SUBJECT = re.compile(r"^[A-Za-z0-9_./-]+(: [A-Za-z0-9_./-]+)*: [a-z].*[^.]$")


class SeriesError(Exception):
    pass


def read(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except FileNotFoundError:
        return None


def load_spec():
    with open(SPEC, "rb") as f:
        spec = tomllib.load(f)
    for i, p in enumerate(spec["patch"]):
        p["index"] = i
        p.setdefault("files", [])
        p.setdefault("hunks", {})
    return spec


def managed_files(spec):
    """The files the prepared tree changes, less what the series leaves out."""
    text = read(os.path.join(SRC, ".managed"))
    if text is None:
        raise SeriesError("no %s: prepare the tree first (scripts/prepare-tree.sh)" % SRC)
    out = []
    for f in sorted(set(text.split())):
        if any(f.startswith(x) for x in spec.get("exclude", [])):
            continue
        if read(os.path.join(PRISTINE, f)) != read(os.path.join(SRC, f)):
            out.append(f)
    return out


def blocks(old, new):
    """The change blocks from OLD to NEW lines: (start, old_len, new_lines)."""
    if old == new:
        return []
    d = os.path.join(WORK, "diff")
    os.makedirs(d, exist_ok=True)
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    for path, lines in ((a, old), (b, new)):
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write("".join(lines))
    p = subprocess.run(["git", "diff", "--no-index", "--no-color", "-U0", a, b],
                       capture_output=True, text=True, errors="surrogateescape")
    out = []
    cur = None
    last = None
    for line in p.stdout.splitlines(keepends=True):
        m = re.match(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", line)
        if m:
            start = int(m.group(1))
            n = int(m.group(2)) if m.group(2) is not None else 1
            # "-5,0": an insertion after line 5; "-5,2": lines 5 and 6.
            cur = [start if n == 0 else start - 1, n, []]
            out.append(cur)
        elif cur is not None and line.startswith("+"):
            cur[2].append(line[1:])
        elif line.startswith("\\") and last is not None and last.startswith("+"):
            # The added line ends the file without a newline.
            cur[2][-1] = cur[2][-1].rstrip("\n")
        last = line
    return out


def split_lines(text):
    return [] if text is None else text.splitlines(keepends=True)


def owners_of(spec, f):
    whole = [p for p in spec["patch"] if any(fnmatch.fnmatchcase(f, g) for g in p["files"])]
    cut = [p for p in spec["patch"] if f in p["hunks"]]
    return whole, cut


def match(spec, cut, f, line):
    hit = [p for p in cut if any(re.search(rx, line) for rx in p["hunks"][f])]
    if len(hit) > 1:
        raise SeriesError("%s: %r matches the patterns of %s" %
                          (f, line.rstrip("\n"), " and ".join(repr(p["subject"]) for p in hit)))
    return hit[0] if hit else None


def assign(spec, files):
    """Each file's changes, with their owners: {file: (kind, data)}.

    kind "whole": data is the owning patch's index; kind "cut": data is a
    list of segments (start, old_len, new_lines, owner index), in order.
    """
    plan = {}
    for f in files:
        whole, cut = owners_of(spec, f)
        if whole and cut or len(whole) > 1:
            raise SeriesError("%s is owned by more than one patch: %s" %
                              (f, ", ".join(repr(p["subject"]) for p in whole + cut)))
        if whole:
            plan[f] = ("whole", whole[0]["index"])
            continue
        if not cut:
            raise SeriesError("%s is in no patch of series/series.toml" % f)
        old = split_lines(read(os.path.join(PRISTINE, f)))
        new = split_lines(read(os.path.join(SRC, f)))
        if not new:
            raise SeriesError("%s is removed: a whole file belongs to one patch" % f)
        segs = []
        for start, n, lines in blocks(old, new):
            if n == 0:
                # A pure insertion: a new segment at each line that matches.
                cur = None
                for line in lines:
                    owner = match(spec, cut, f, line)
                    if owner is not None and (cur is None or owner["index"] != cur[3]):
                        cur = [start, 0, [], owner["index"]]
                        segs.append(cur)
                    elif cur is None:
                        raise SeriesError("%s: the insertion after line %d starts with %r, "
                                          "which no pattern matches" % (f, start, line.rstrip("\n")))
                    cur[2].append(line)
                # Blank lines between two parts separate them. Inside a file
                # they end the part before (it is followed by more of the
                # file); at its end, and so everywhere in a new file (one
                # insertion at its end), they begin the part after, so that
                # no patch leaves a blank line at the end of the file or
                # before the line the next part resumes at.
                mine = [s for s in segs if s[0] == start and s[1] == 0]
                if start == len(old):
                    for a, b in zip(mine, mine[1:]):
                        while a[2] and not a[2][-1].strip():
                            b[2].insert(0, a[2].pop())
            else:
                gone = old[start:start + n]
                hits = (match(spec, cut, f, x) for x in gone + lines)
                owners = {h["index"] for h in hits if h is not None}
                if len(owners) != 1:
                    raise SeriesError("%s: the change of lines %d-%d %s" % (
                        f, start + 1, start + n, "matches no pattern" if not owners else
                        "matches the patterns of several patches"))
                segs.append([start, n, lines, owners.pop()])
        if not old and segs and segs[0][3] != min(s[3] for s in segs):
            raise SeriesError("%s is new: the first patch that owns a part of it must own its "
                              "first line" % f)
        plan[f] = ("cut", segs)
    unused = [(p["subject"], f) for p in spec["patch"] for f in p["hunks"] if f not in plan]
    unused += [(p["subject"], g) for p in spec["patch"] for g in p["files"]
               if not any(fnmatch.fnmatchcase(f, g) for f in files)]
    if unused:
        raise SeriesError("%r names %s, which the tree does not change" % unused[0])
    return plan


def state(f, kind, data, k):
    """The content of F once patches 0..K are applied (None: absent)."""
    if kind == "whole":
        return read(os.path.join(SRC if data <= k else PRISTINE, f))
    pristine = read(os.path.join(PRISTINE, f))
    if pristine is None and all(owner > k for _, _, _, owner in data):
        return None
    old = split_lines(pristine)
    out, pos = [], 0
    for start, n, lines, owner in data:
        out += old[pos:start]
        pos = start
        if owner <= k:
            out += lines
            pos = start + n
    out += old[pos:]
    return "".join(out)


def git(cwd, *args, env=None, check=True):
    p = subprocess.run(["git", "-C", cwd] + list(args), capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise SeriesError("git %s: %s" % (" ".join(args), (p.stderr or p.stdout).strip()[-600:]))
    return p.stdout


def git_env(spec):
    name, email = re.match(r"^(.*) <(.*)>$", spec["author"]).groups()
    date = spec["date"]
    return dict(os.environ, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name,
                GIT_COMMITTER_EMAIL=email, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date,
                GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")


def write(root, f, text):
    path = os.path.join(root, f)
    if text is None:
        if os.path.exists(path):
            os.remove(path)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(text)


def base_repo(spec, path, files):
    """A repository whose first commit holds the pristine files the series touches."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    env = git_env(spec)
    git(path, "init", "-q", "-b", "master", env=env)
    for f in files:
        write(path, f, read(os.path.join(PRISTINE, f)))
    git(path, "add", "-A", env=env)
    git(path, "commit", "-q", "--allow-empty", "-m", spec["base"], env=env)
    return env


def message(spec, p):
    body = p["body"].strip()
    return "%s\n\n%s\n\nSigned-off-by: %s\n" % (p["subject"], body, spec["author"])


def cmd_make(out=OUT):
    spec = load_spec()
    files = managed_files(spec)
    plan = assign(spec, files)
    repo = os.path.join(WORK, "repo")
    env = base_repo(spec, repo, files)
    for p in spec["patch"]:
        k = p["index"]
        for f, (kind, data) in plan.items():
            if kind == "whole" and data != k:
                continue
            if kind == "cut" and not any(s[3] == k for s in data):
                continue
            write(repo, f, state(f, kind, data, k))
        git(repo, "add", "-A", env=env)
        subprocess.run(["git", "-C", repo, "commit", "-q", "-F", "-"], input=message(spec, p),
                       text=True, env=env, check=True, capture_output=True)
    shutil.rmtree(out, ignore_errors=True)
    git(repo, "format-patch", "-q", "--cover-letter", "--no-signature", "--subject-prefix=PATCH",
        "-o", out, "HEAD~%d" % len(spec["patch"]), env=env)
    cover = sorted(os.listdir(out))[0]
    text = read(os.path.join(out, cover))
    blurb = read(COVER).strip()
    title, _, rest = blurb.partition("\n")
    text = text.replace("*** SUBJECT HERE ***", title.strip()).replace("*** BLURB HERE ***", rest.strip())
    write(out, cover, text)
    return spec, files, plan, out


def check_messages(spec):
    bad = []
    for p in spec["patch"]:
        s = p["subject"]
        if len(s) > 75 or not SUBJECT.match(s):
            bad.append("subject %r: 'area: imperative summary', under 76 columns" % s)
        if len(p.get("body", "").strip()) < 40:
            bad.append("%r has no body that says why" % s)
        m = HARNESS_WORDS.search(s + "\n" + p.get("body", ""))
        if m:
            bad.append("%r names the harness (%r)" % (s, m.group(0)))
        for line in p.get("body", "").splitlines():
            if len(line) > 75:
                bad.append("%r: a body line over 75 columns: %r" % (s, line[:40]))
                break
    return bad


def check_am(spec, files, out):
    repo = os.path.join(WORK, "am")
    env = base_repo(spec, repo, files)
    pats = [os.path.join(out, x) for x in sorted(os.listdir(out)) if not x.startswith("0000-")]
    p = subprocess.run(["git", "-C", repo, "am", "-q", "--whitespace=error-all"] + pats,
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return repo, ["git am: " + (p.stdout + p.stderr).strip().splitlines()[0]]
    n = int(git(repo, "rev-list", "--count", "HEAD").strip()) - 1
    return repo, ([] if n == len(spec["patch"]) else ["git am made %d commits, not %d" % (n, len(spec["patch"]))])


def check_tree(files, repo):
    bad = []
    for f in files:
        if read(os.path.join(repo, f)) != read(os.path.join(SRC, f)):
            bad.append("%s differs from the prepared tree" % f)
    listed = set(git(repo, "ls-files").split())
    for f in sorted(listed - set(files)):
        if read(os.path.join(repo, f)) != read(os.path.join(PRISTINE, f)):
            bad.append("%s: changed by the series, not by the tree" % f)
    return bad


def subject_of(path):
    """The subject of a patch file, without its "[PATCH n/m] " prefix."""
    m = re.search(r"^Subject: (?:\[[^]]*\] )?(.*)$", read(path) or "", re.M)
    return m.group(1) if m else ""


def check_checkpatch(spec, out, log):
    """checkpatch --strict over the whole series, in one run (it reads the
    tree's headers once per run)."""
    cp = os.path.join(SRC, "scripts", "checkpatch.pl")
    keep = spec.get("checkpatch_keep", {})
    bad, counts = [], {}
    pats = sorted(x for x in os.listdir(out) if not x.startswith("0000-"))
    subjects = {x: subject_of(os.path.join(out, x)) for x in pats}
    p = subprocess.run([cp, "--strict", "--terse", "--show-types", "--no-summary", "--color=never",
                        "--root=" + PRISTINE] + [os.path.join(out, x) for x in pats],
                       capture_output=True, text=True, cwd=PRISTINE)
    with open(log, "w") as lf:
        lf.write(p.stdout + p.stderr)
    for line in p.stdout.splitlines():
        m = re.match(r"^(?:.*/)?([^/:]+\.patch):\d+: (ERROR|WARNING|CHECK):([A-Z_0-9]+):", line)
        if not m:
            if line.strip():
                bad.append("checkpatch: " + line[:160])
            continue
        x, level, kind = m.groups()
        counts[(level, kind)] = counts.get((level, kind), 0) + 1
        rule = keep.get(kind)
        kept = rule is not None and subjects.get(x, "").startswith(rule.get("only", ""))
        if level == "ERROR" or not kept:
            bad.append("%s: %s" % (x[:4], line.split(": ", 1)[-1][:160]))
    if p.returncode not in (0, 1):
        bad.append("checkpatch.pl exited %d (see %s)" % (p.returncode, log))
    return bad, counts


LEDGER = os.path.join(REPO, "series", "bisect.tsv")
BISECT_VARIANT = "rust"


def config_key(variant=BISECT_VARIANT):
    """The hash of the options series-bisect.sh configures a prefix with, and of
    the make flags it builds it with."""
    out = subprocess.run(["bash", "-c", '. "$0/scripts/lib.sh"; bisect_fragment "$1"; bisect_make_flags',
                          REPO, variant], capture_output=True, text=True, check=True).stdout
    return hashlib.sha256(out.encode()).hexdigest()[:16]


def prefix_keys(repo, variant=BISECT_VARIANT):
    """(NN, tree, config key, subject) of every prefix of the series applied in REPO."""
    cfg = config_key(variant)
    out = []
    for k, line in enumerate(git(repo, "log", "--reverse", "--format=%T %s").splitlines()):
        tree, subject = line.split(" ", 1)
        out.append(("%02d" % k, tree, cfg, subject))
    return out


def read_ledger(path=LEDGER):
    """{(NN, tree, config): (result, row)} of the ledger's rows."""
    rows = {}
    for line in (read(path) or "").splitlines():
        if not line or line.startswith("#") or line.startswith("prefix\t"):
            continue
        f = line.split("\t")
        if len(f) >= 6:
            rows[(f[0], f[1], f[2])] = (f[5], line)
    return rows


LEDGER_HEAD = """\
# Every prefix of the series built by make series-bisect (scripts/series-bisect.sh):
# configured with scripts/lib.sh bisect_fragment %s, built with bisect_make_flags
# (clippy) without error or warning ("ok"), or not. Keys: the git tree of the
# prefix and the hash of those options and flags.
# Written by scripts/series.py ledger; make check's host:series:bisect reads it.
prefix\ttree\tconfig\tseconds\twarnings\tresult\tsubject
""" % BISECT_VARIANT


def cmd_ledger(repo, times):
    keys = prefix_keys(repo)
    old = read_ledger()
    built = {}
    for line in (read(times) or "").splitlines()[1:]:
        nn, secs, rc, warns = line.split("\t")[:4]
        built[nn] = (secs, warns, "ok" if rc == "0" and warns == "0" else
                     "rc %s, %s warning lines" % (rc, warns))
    rows = []
    for nn, tree, cfg, subject in keys:
        if nn in built:
            secs, warns, res = built[nn]
            rows.append("\t".join((nn, tree, cfg, secs, warns, res, subject)))
        elif (nn, tree, cfg) in old:
            rows.append(old[(nn, tree, cfg)][1])
    with open(LEDGER, "w") as f:
        f.write(LEDGER_HEAD + "".join(r + "\n" for r in rows))
    return 0


def check_rustfmt(files):
    """rustfmt --check of the Rust files the series adds or changes, as the
    kernel's make rustfmtcheck runs it: in the prepared tree, which the tree
    gate compares with the series', with the tree's .rustfmt.toml."""
    rs = [os.path.join(SRC, f) for f in files if f.endswith(".rs")]
    if not rs:
        return []
    path = os.path.expanduser("~/.cargo/bin") + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("rustfmt", path=path)
    if exe is None:
        return ["no rustfmt in PATH or ~/.cargo/bin"]
    p = subprocess.run([exe, "--check"] + rs, capture_output=True, text=True, cwd=SRC)
    if p.returncode == 0:
        return []
    bad = sorted(set(re.findall(r"^Diff in (.+?):\d+:$", p.stdout, re.M)))
    if bad:
        return ["%s is not as rustfmt formats it (make rustfmt)" % os.path.relpath(f, SRC) for f in bad]
    return ["rustfmt exited %d: %s" % (p.returncode, (p.stderr or p.stdout).strip()[:300])]


def check_bisect(repo):
    ledger = read_ledger()
    bad = []
    for nn, tree, cfg, subject in prefix_keys(repo):
        got = ledger.get((nn, tree, cfg))
        if got is None:
            bad.append("prefix %s (%s) has not been built since it changed: run make series-bisect"
                       % (nn, subject[:60]))
        elif got[0] != "ok":
            bad.append("prefix %s (%s) did not build: %s" % (nn, subject[:60], got[0]))
    return bad


def cmd_check():
    results = []
    log = os.path.join(WORK, "checkpatch.log")
    os.makedirs(WORK, exist_ok=True)
    try:
        spec, files, plan, out = cmd_make()
        results.append(("assigned", []))
    except (SeriesError, subprocess.CalledProcessError, OSError, KeyError) as e:
        why = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else str(e)
        results.append(("assigned", [why]))
        for c in ("messages", "am", "tree", "checkpatch", "rustfmt", "bisect"):
            results.append((c, ["the series could not be made"]))
        return report(results)
    results.append(("messages", check_messages(spec)))
    am_ok = False
    try:
        repo, bad = check_am(spec, files, out)
        am_ok = not bad
        results.append(("am", bad))
        results.append(("tree", check_tree(files, repo) if not bad else ["git am failed"]))
    except SeriesError as e:
        results.append(("am", [str(e)]))
        results.append(("tree", ["git am failed"]))
    bad, counts = check_checkpatch(spec, out, log)
    results.append(("checkpatch", bad))
    results.append(("rustfmt", check_rustfmt(files)))
    results.append(("bisect", check_bisect(repo) if am_ok else ["git am failed"]))
    n = len(spec["patch"])
    notes = ["# %d patches in %s, %d files" % (n, out, len(files))]
    if counts:
        notes.append("# checkpatch --strict: " + ", ".join(
            "%d %s:%s" % (c, lv, k) for (lv, k), c in sorted(counts.items())) + " (log: %s)" % log)
    else:
        notes.append("# checkpatch --strict: nothing")
    return report(results, notes)


def report(results, notes=()):
    for case, bad in results:
        if bad:
            print("not ok host:series:%s # %s" % (case, bad[0]))
            for b in bad[1:8]:
                print("#   " + b)
        else:
            print("ok host:series:%s" % case)
    for n in notes:
        print(n)
    return 1 if any(bad for _, bad in results) else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("-o", "--output", default=OUT)
    sub.add_parser("check")
    ks = sub.add_parser("keys")
    ks.add_argument("repo", nargs="?", default=os.path.join(WORK, "am"))
    lg = sub.add_parser("ledger")
    lg.add_argument("repo")
    lg.add_argument("times")
    args = ap.parse_args()
    if args.cmd == "keys":
        ledger = read_ledger()
        for nn, tree, cfg, _ in prefix_keys(args.repo):
            got = ledger.get((nn, tree, cfg))
            print(nn, tree, cfg, got[0] if got and got[0] == "ok" else "-")
        return 0
    if args.cmd == "ledger":
        return cmd_ledger(args.repo, args.times)
    if args.cmd == "make":
        try:
            _, _, _, out = cmd_make(args.output)
        except SeriesError as e:
            print("series.py: " + str(e), file=sys.stderr)
            return 2
        print("==> series: %s" % out)
        for x in sorted(os.listdir(out)):
            print("    " + x)
        return 0
    return cmd_check()


if __name__ == "__main__":
    sys.exit(main())
