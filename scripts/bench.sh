#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: time the LUO operations under the upstream C LUO and under
# our Rust LUO in the same run, and print a table with the Rust/C ratios.
# A benchmark, not a test: the exit status is non-zero only if a run failed
# (a VM that timed out, crashed or did not finish), never because of a time.
#
# Guest program: tools/testing/selftests/liveupdate/luo_rs_bench.c. Modes:
#   single    one boot: PRESERVE_FD, unpreserve (session close),
#             CREATE_SESSION, session close, N=10000 each
#   sessions  kexec with 2000 sessions: stage-1 create, reboot path,
#             stage-2 open (deserialize), RETRIEVE_SESSION, FINISH, close
#   files     kexec with 500 memfds in one session: stage-1 PRESERVE_FD,
#             reboot path, stage-2 open, RETRIEVE_FD, FINISH
#   memfd     the memfd handler (luo_rs_memfd_bench.c): PRESERVE_FD and
#             RETRIEVE_FD of one dense memfd of each BENCH_MEMFD_MIB size, the
#             C handler (on the c kernel) against the Rust one (on the rust
#             kernel), in MiB/s; and a 16 GiB memfd with 64 MiB written
#             (sparse) in a 2 GiB VM, where the C handler runs out of memory
# The reboot path (liveupdate_reboot's freeze + serialization, then device
# shutdown) is the printk-time delta between the guest's /dev/kmsg marker,
# written just before it calls reboot(KEXEC), and "kexec_core: Starting new
# kernel".
#
# Environment:
#   BENCH_RUNS=3         VM runs per mode and variant (the median is shown)
#   BENCH_MODES="single sessions files memfd"
#   BENCH_MEMFD_MIB="256 1024 4096"   memfd sizes (VM memory: 2.5x + 1 GiB)
#   BENCH_KERNEL_DIR=DIR use DIR/c.bzImage and DIR/rust.bzImage instead of
#                        building the kernels (development only; the exported
#                        uapi headers and gen_init_cpio of build/obj-c must
#                        exist already)
#   BENCH_TSC_KHZ=KHZ    the guest's TSC rate, for tsc_early_khz= (default:
#                        the host's TSC rate, measured; see below)
#   BENCH_ICOUNT=1       run the VMs with QEMU -icount shift=0: the guest clock
#                        counts guest instructions (1 ns each), so every time
#                        printed is an instruction count, the same from run to
#                        run whatever the host's load (single-threaded TCG:
#                        slower; no tsc_early_khz=)
# Serial logs: build/logs/bench/<variant>-<mode>-<run>.log.
. "$(dirname "$0")/lib.sh"

runs=${BENCH_RUNS:-3}
read -r -a modes <<< "${BENCH_MODES:-single sessions files memfd}"
read -r -a memfd_mib <<< "${BENCH_MEMFD_MIB:-256 1024 4096}"
kdir=${BENCH_KERNEL_DIR:-}
variants=(c rust)
for m in "${modes[@]}"; do
	case $m in single|sessions|files|memfd) ;; *) die "BENCH_MODES: unknown mode '$m'" ;; esac
done
out=$BUILD/bench
blogs=$LOGS/bench
results=$out/results.txt
failed=0

kernel_of() {
	if [ -n "$kdir" ]; then echo "$kdir/$1.bzImage"; else echo "$(obj_dir "$1")/arch/x86/boot/bzImage"; fi
}

# Kernels, headers and the guest programs: init and luo_rs_bench only.
mkdir -p "$out/guest/tests" "$blogs"
g=$out/guest
if [ -z "$kdir" ]; then
	"$REPO/scripts/deps.sh"
	"$REPO/scripts/prepare-tree.sh"
	for v in "${variants[@]}"; do "$REPO/scripts/build-kernel.sh" "$v"; done
	"$REPO/scripts/build-guest.sh" c
	cp "$BUILD/guest-c/init" "$g/init"
	cp "$BUILD/guest-c/tests/luo_rs_bench" "$g/tests/luo_rs_bench"
	cp "$BUILD/guest-c/tests/luo_rs_memfd_bench" "$g/tests/luo_rs_memfd_bench"
else
	for v in "${variants[@]}"; do
		[ -f "$(kernel_of "$v")" ] || die "BENCH_KERNEL_DIR: no $(kernel_of "$v")"
	done
	inc=$(obj_dir c)/usr/include
	[ -f "$inc/linux/liveupdate.h" ] || die "no exported headers in $(obj_dir c)/usr: run make kernel LUO=c once"
	# The prepared tree may predate our latest luo_rs_bench.c: compile it
	# from the repository, with build-guest.sh's flags.
	st=$SRC/tools/testing/selftests
	cflags=(-static -O2 -D_GNU_SOURCE= -Wall -Wno-unused-function -isystem "$inc"
		-I "$st/liveupdate/lib/include" -I "$st")
	gcc "${cflags[@]}" -o "$g/init" "$REPO/guest/init.c" || die "cannot build init"
	gcc "${cflags[@]}" -o "$g/tests/luo_rs_bench" \
		"$REPO/tools/testing/selftests/liveupdate/luo_rs_bench.c" \
		"$st/liveupdate/lib/lu_utils.c" || die "cannot build luo_rs_bench"
	gcc "${cflags[@]}" -o "$g/tests/luo_rs_memfd_bench" \
		"$REPO/tools/testing/selftests/liveupdate/luo_rs_memfd_bench.c" \
		"$st/liveupdate/lib/lu_utils.c" || die "cannot build luo_rs_memfd_bench"
fi
"$REPO/scripts/mkinitramfs.sh" "$out/single.cpio" "$g"
for v in "${variants[@]}"; do
	"$REPO/scripts/mkinitramfs.sh" "$out/kexec-$v.cpio" "$g" "$(kernel_of "$v")"
done

# The guest's TSC rate, passed as tsc_early_khz=. Under TCG the guest reads
# the host's TSC, but the guest kernel's own calibration against the emulated
# PIT often fails on a busy host (and always after a kexec): the kernel then
# marks the TSC unstable, and CLOCK_MONOTONIC and printk times fall back to
# jiffies (4 ms steps). So measure the host's TSC rate once, here.
tsc_khz=${BENCH_TSC_KHZ:-}
if [ "${BENCH_ICOUNT:-0}" = 1 ]; then
	export LUO_VM_ICOUNT=1
	tsc_khz=none
fi
if [ -z "$tsc_khz" ] && [ "$(uname -m)" = x86_64 ] && grep -qw constant_tsc /proc/cpuinfo; then
	cat > "$out/tsc-khz.c" <<'CEOF'
#include <stdio.h>
#include <time.h>
#include <x86intrin.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_RAW, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void)
{
	struct timespec d = { 0, 500000000 };
	double t0 = now(), t1;
	unsigned long long c0 = __rdtsc(), c1;

	nanosleep(&d, NULL);
	c1 = __rdtsc();
	t1 = now();
	printf("%.0f\n", (c1 - c0) / (t1 - t0) / 1000);
	return 0;
}
CEOF
	gcc -O2 -o "$out/tsc-khz" "$out/tsc-khz.c" && tsc_khz=$("$out/tsc-khz") || true
fi
[ "$tsc_khz" != none ] || tsc_khz=
[ -n "$tsc_khz" ] || [ -n "${LUO_VM_ICOUNT:-}" ] || log "no TSC rate for the guest: its times may move in 4 ms steps"

# run_bench VARIANT MODE RUN: one VM; appends "variant mode key value" lines
# (nanoseconds) to $results, or counts a failure.
run_bench() {
	local v=$1 m=$2 r=$3 serial=$blogs/$1-$2-$3.log initrd stages rc=0 extra=
	if [ "$m" = single ]; then initrd=$out/single.cpio stages=1; else initrd=$out/kexec-$v.cpio stages=2; fi
	[ -n "$tsc_khz" ] && extra="tsc_early_khz=$tsc_khz"
	"$REPO/scripts/run-vm.sh" "$(kernel_of "$v")" "$initrd" "$serial" 180 1G \
		"kunit.enable=0 luo.test=luo_rs_bench luo.stages=$stages luo.bench=$m $extra" || rc=$?
	if ! python3 - "$serial" "$v" "$m" "$stages" "$rc" >> "$results" <<'EOF'
import re, sys
serial, v, mode, stages, rc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
log = open(serial, "rb").read().decode("utf-8", "replace")
why = []
if rc == 124:
    why.append("VM timed out")
err = re.search(r"BENCH error [^\n]*", log)
if err:
    why.append(err.group(0))
if f"BENCH done mode={mode} stage={stages}" not in log:
    why.append(f"no 'BENCH done mode={mode} stage={stages}'")
out = []
# BENCH lines, keyed by stage: a stage starts with "BENCH start ... stage=K".
stage = 1
for mt in re.finditer(r"BENCH start mode=\S+ stage=(\d)|BENCH ([a-z_]+) n=(\d+) ns=(\d+)", log):
    if mt.group(1):
        stage = int(mt.group(1))
    else:
        out.append(f"{v} {mode} {mt.group(2)} {mt.group(3)} {mt.group(4)}")
def ts(pat, start=0):
    mt = re.compile(r"\[\s*(\d+\.\d+)\] " + pat).search(log, start)
    return (float(mt.group(1)), mt.end()) if mt else (None, None)
if stages == 2:
    t0, end = ts(r"luo_rs_bench: reboot_start")
    t1, end2 = ts(r"kexec_core: Starting new kernel", end or 0)
    if t0 is None or t1 is None:
        why.append("no reboot marker or no 'Starting new kernel'")
    else:
        n = re.search(rf"BENCH start mode={mode} stage=1 n=(\d+)", log).group(1)
        out.append(f"{v} {mode} reboot_path {n} {round((t1 - t0) * 1e9)}")
        # Boot timestamps of the kexec'd kernel (informational).
        for key, pat in (("boot_luo_retrieved", r"luo: Retrieved live update data"),
                         ("boot_run_init", r"Run /init as init process")):
            t, _ = ts(pat, end2)
            if t is not None:
                out.append(f"{v} {mode} {key} {n} {round(t * 1e9)}")
for line in out:
    print(line)
if why:
    print("; ".join(why), file=sys.stderr)
    sys.exit(1)
EOF
	then
		echo "bench: $v $m run $r FAILED (serial log: $serial)" >&2
		failed=$((failed + 1))
		return
	fi
	if grep -aq 'LUO-KMSG-ERR' "$serial"; then
		echo "bench: $v $m run $r: the kernel printed errors (see $serial)" >&2
	fi
}

# run_memfd VARIANT MIB SPARSE RUN: one luo_rs_memfd_bench VM (a kexec);
# appends "variant memfd OP MIB ns" lines to $memfd_results. A run that fails
# is recorded as "variant memfd OP MIB fail", and counted as a failed run
# unless it is the expected one: the C handler on the sparse memfd (it pins,
# so allocates, every hole of the 16 GiB file in a 2 GiB VM).
run_memfd() {
	local v=$1 mib=$2 sparse=$3 r=$4 serial mem rc=0 extra= op memfd_tmo=600
	serial=$blogs/$v-memfd-$mib-$sparse-$r.log
	mem=$(( mib * 5 / 2 + 1024 ))
	[ "$sparse" = 0 ] || mem=2048
	[ "$mem" -ge 2048 ] || mem=2048
	[ -z "$tsc_khz" ] || extra="tsc_early_khz=$tsc_khz"
	# Single-threaded TCG is slower.
	[ -z "${LUO_VM_ICOUNT:-}" ] || memfd_tmo=1800
	"$REPO/scripts/run-vm.sh" "$(kernel_of "$v")" "$out/kexec-$v.cpio" "$serial" "$memfd_tmo" "${mem}M" \
		"kunit.enable=0 luo.test=luo_rs_memfd_bench luo.stages=2 luo.memfd_mib=$mib luo.memfd_sparse=$sparse $extra" || rc=$?
	op=memfd
	[ "$sparse" = 0 ] || op=memfd_sparse16g
	if [ "$rc" -eq 0 ] && grep -aq 'BENCH done' "$serial"; then
		sed -nE "s/.*BENCH memfd_(preserve|retrieve)(_sparse16g)? mib=([0-9]+) ns=([0-9]+).*/$v memfd ${op}_\\1 \\3 \\4/p" \
			"$serial" | tr -d '\r' >> "$memfd_results"
		return
	fi
	echo "$v memfd ${op}_preserve $mib fail" >> "$memfd_results"
	if [ "$sparse" = 1 ] && [ "$v" = c ]; then
		log "bench: the C memfd handler fails on the sparse memfd, as expected (serial log: $serial)"
	else
		echo "bench: $v memfd $mib MiB (sparse=$sparse) run $r FAILED (serial log: $serial)" >&2
		failed=$((failed + 1))
	fi
}

: > "$results"
memfd_results=$out/memfd-results.txt
: > "$memfd_results"
start=$(date +%s)
for r in $(seq 1 "$runs"); do
	for m in "${modes[@]}"; do
		for v in "${variants[@]}"; do
			log "bench run $r/$runs: $m on LUO=$v"
			if [ "$m" = memfd ]; then
				for mib in "${memfd_mib[@]}"; do run_memfd "$v" "$mib" 0 "$r"; done
				# The sparse case once: its outcome does not vary.
				[ "$r" -gt 1 ] || run_memfd "$v" 64 1 "$r"
			else
				run_bench "$v" "$m" "$r"
			fi
		done
	done
done
log "bench took $(( $(date +%s) - start ))s (QEMU TCG; ${tsc_khz:+tsc_early_khz=$tsc_khz; }logs: $blogs/)"

python3 - "$results" "$runs" <<'EOF'
import statistics, sys
rows = {}
order = []
for line in open(sys.argv[1]):
    v, mode, op, n, ns = line.split()
    key = (mode, op, int(n))
    if key not in rows:
        rows[key] = {"c": [], "rust": []}
        order.append(key)
    rows[key][v].append(int(ns) / 1e6)
info = {"boot_luo_retrieved": "boot ts: luo Retrieved", "boot_run_init": "boot ts: Run /init"}
def f(x, w, p):
    return f"{x:>{w}.{p}f}" if x is not None else f"{'-':>{w}}"
print(f"\nLUO benchmark: median of {sys.argv[2]} VM runs per variant; QEMU TCG, so compare ratios,")
print("not absolute times. 'best' = Rust/C of the fastest runs; 'spread' = slowest/fastest run.\n")
hdr = (f"{'mode':<8} {'operation':<24} {'n':>6} {'C ms':>9} {'Rust ms':>9} {'Rust/C':>6} {'best':>5}"
       f" {'C us/op':>8} {'Rust us/op':>10} {'spread':>6}")
print(hdr)
print("-" * len(hdr))
for key in order:
    mode, op, n = key
    c, r = rows[key]["c"], rows[key]["rust"]
    cm = statistics.median(c) if c else None
    rm = statistics.median(r) if r else None
    ratio = rm / cm if cm and rm is not None else None
    best = min(r) / min(c) if c and r and min(c) else None
    spread = max([max(x) / min(x) for x in (c, r) if x and min(x)] or [0]) or None
    per = op not in info
    print(f"{mode:<8} {info.get(op, op):<24} {n:>6} {f(cm, 9, 1)} {f(rm, 9, 1)} {f(ratio, 6, 2)} {f(best, 5, 2)}"
          f" {f(cm * 1e3 / n if per and cm is not None else None, 8, 1)}"
          f" {f(rm * 1e3 / n if per and rm is not None else None, 10, 1)} {f(spread, 6, 1)}")
print("""
reboot_path: printk time from the guest's /dev/kmsg marker (written just before it
  calls reboot(KEXEC)) to "kexec_core: Starting new kernel": LUO freeze and
  serialization, then device shutdown.
restore_open: the first open of /dev/liveupdate after the kexec. The C LUO parses
  the incoming block chains there; the Rust LUO parses them at boot
  (early_initcall) and only builds the session objects at open.
boot ts: printk time of that line in the kexec'd kernel (boot noise, not LUO only).""")
EOF
if [ -s "$memfd_results" ]; then
	python3 - "$memfd_results" "$runs" <<'EOF'
import statistics, sys
rows, order = {}, []
for line in open(sys.argv[1]):
    v, _, op, mib, ns = line.split()
    key = (op, int(mib))
    if key not in rows:
        rows[key] = {"c": [], "rust": []}
        order.append(key)
    rows[key][v].append(None if ns == "fail" else int(ns))
def rate(mib, xs):
    ok = [x for x in xs if x]
    if not ok:
        return None, ("fails" if xs else "-")
    r = mib * 1e9 / statistics.median(ok)
    return r, f"{r:.0f}"
print("\nmemfd handler: the C handler (on the C LUO) and the Rust one (on the Rust LUO),")
print(f"MiB/s, median of up to {sys.argv[2]} runs; QEMU TCG, so compare ratios. sparse16g: a")
print("16 GiB memfd with 64 MiB written, in a 2 GiB VM ('fails': the run failed; the C")
print("handler runs out of memory pinning every hole).\n")
hdr = f"{'operation':<28} {'MiB':>6} {'C MiB/s':>9} {'Rust MiB/s':>11} {'Rust/C':>7}"
print(hdr)
print("-" * len(hdr))
for op, mib in order:
    (c, cs), (r, rs) = rate(mib, rows[(op, mib)]["c"]), rate(mib, rows[(op, mib)]["rust"])
    ratio = f"{r / c:.2f}" if c and r else "-"
    print(f"{op:<28} {mib:>6} {cs:>9} {rs:>11} {ratio:>7}")
EOF
fi
[ "$failed" -eq 0 ] || { echo "bench: $failed run(s) failed" >&2; exit 1; }
