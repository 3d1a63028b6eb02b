#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make bench`: time the LUO operations under the upstream C LUO and under
# our Rust LUO in the same run, on production-like kernels (variants c-bench
# and rust-bench: config/bench.config over c and rust, so without lockdep,
# list and KHO debugging, KUnit or test handlers), print per-operation costs
# with Rust/C ratios, and draw them against n in build/bench/bench.svg.
# A benchmark, not a test: the exit status is non-zero only if a run failed
# (a VM that timed out, crashed or did not finish), never because of a time.
#
# Guest program: tools/testing/selftests/liveupdate/luo_rs_bench.c, run at
# every n of BENCH_N (the scaling curve) in three modes, on empty memfds:
#   single    one boot: n PRESERVE_FD into one session, closing that session
#             (unpreserve), n CREATE_SESSION, closing them
#   sessions  kexec with n sessions: stage-1 create, reboot path, stage-2
#             open (deserialize), RETRIEVE_SESSION, FINISH, close
#   files     kexec with n memfds in one session: stage-1 PRESERVE_FD,
#             reboot path, stage-2 open, RETRIEVE_FD, FINISH
#   memfd     the memfd handler (luo_rs_memfd_bench.c): PRESERVE_FD and
#             RETRIEVE_FD of one dense memfd of each BENCH_MEMFD_MIB size, the
#             C handler (on the c kernel) against the Rust one (on the rust
#             kernel), in MiB/s; and a 16 GiB memfd with 64 MiB written
#             (sparse) in a 2 GiB VM, where the C handler runs out of memory
#   restore   the restore path (luo_rs_memfd_bench.c): RETRIEVE_FD of one
#             dense memfd of 4 KiB pages of each BENCH_RESTORE_MIB size, each
#             kernel's own memfd handler, with -smp 1, 2 and 4
#             (BENCH_RESTORE_SMP; 1 only with BENCH_ICOUNT=1, which has no
#             parallel vCPUs); the Rust LUO's 1 GiB run also prints the kernel's
#             timeline of that live update (debugfs liveupdate/timeline), which
#             the report breaks down
#   huge      guest RAM on huge pages (luo_rs_memfd_bench.c, --kind=):
#             PRESERVE_FD and RETRIEVE_FD of one dense file of each
#             BENCH_HUGE_GIB size, of 4 KiB pages (shmem) and of 2 MiB shmem
#             THP folios (thp), each on both kernels, and of 2 MiB and 1 GiB
#             hugetlbfs pages (hugetlb2m, hugetlb1g; the Rust handler only),
#             the kind checked by the guest; per GiB, with the handover
#             metadata per GiB computed from the folio counts
# Every timed loop stops after BENCH_CAP_S seconds (the C LUO is quadratic in
# sessions and in files per session): the table then shows "> X", X being
# the mean cost of the operations done, a lower bound of the cost at n.
# The reboot path (liveupdate_reboot's freeze + serialization, then device
# shutdown) is the printk-time delta between the guest's /dev/kmsg marker,
# written just before it calls reboot(KEXEC), and "kexec_core: Starting new
# kernel".
#
# Environment:
#   BENCH_RUNS=3         VM runs per mode, n and variant (the median is shown)
#   BENCH_BIG_RUNS=1     the same for n >= 100000
#   BENCH_N="100 1000 10000 100000"
#   BENCH_CAP_S=120      cap of one timed loop, in seconds
#   BENCH_MODES="single sessions files memfd restore huge"
#   BENCH_MEMFD_MIB="256 1024 4096"   memfd sizes (VM memory: 2.5x + 1 GiB)
#   BENCH_RESTORE_MIB="1024 4096"     restore sizes (VM memory: 2.5x + 1 GiB)
#   BENCH_RESTORE_SMP="1 2 4"         vCPUs of the restore runs (1 with
#                                     BENCH_ICOUNT=1)
#   BENCH_HUGE_GIB="1 4" file sizes of the huge mode, in GiB (VM memory: 2x +
#                        4 GiB, see run_huge). The huge mode runs once unless
#                        BENCH_RUNS is given
#   BENCH_KERNEL_DIR=DIR use DIR/c.bzImage and DIR/rust.bzImage instead of
#                        building the kernels (development only; the exported
#                        uapi headers and gen_init_cpio of build/obj-c-bench
#                        must exist already)
#   BENCH_TSC_KHZ=KHZ    the guest's TSC rate, for tsc_early_khz= (default:
#                        the host's TSC rate, measured; see below)
#   BENCH_ICOUNT=1       run the VMs with QEMU -icount shift=0: the guest clock
#                        counts guest instructions (1 ns each), so every time
#                        printed is an instruction count, the same from run to
#                        run whatever the host's load (single-threaded TCG:
#                        slower; no tsc_early_khz=)
#   BENCH_RESULTS_MD=FILE where the report is kept with its date and command
#                        line (default bench/results.md; empty: nowhere)
# Output: the tables on stdout and in build/bench/report.txt, the chart in
# build/bench/bench.svg, the medians in build/bench/scale.json. Serial logs:
# build/logs/bench/<variant>-<mode>-<n>-<run>.log. The report also replaces
# the block of its kind (timed, or BENCH_ICOUNT=1) in bench/results.md, under
# a header with the date, the command line, the commit, the time taken and
# the machine (scripts/bench-report.py --results-md); the rest of that file
# is kept.
. "$(dirname "$0")/lib.sh"
bench_start=$SECONDS
# The command line, for bench/results.md: the BENCH_* settings given, then
# "make bench" (make sets MAKELEVEL in its recipes' environment) or this
# script. Taken now, before this script sets any of them.
bench_command() {
	local var val cmd=
	for var in BENCH_RUNS BENCH_BIG_RUNS BENCH_N BENCH_CAP_S BENCH_MODES BENCH_MEMFD_MIB \
		BENCH_HUGE_GIB BENCH_KERNEL_DIR BENCH_TSC_KHZ BENCH_ICOUNT; do
		[ -n "${!var+set}" ] || continue
		val=${!var}
		case $val in *[[:space:]]*|'') val="\"$val\"" ;; esac
		cmd+="$var=$val "
	done
	if [ -n "${MAKELEVEL:-}" ]; then cmd+="make bench"; else cmd+="scripts/bench.sh"; fi
	echo "$cmd"
}
command_line=$(bench_command)

runs=${BENCH_RUNS:-3}
big_runs=${BENCH_BIG_RUNS:-1}
cap_s=${BENCH_CAP_S:-120}
read -r -a scale_n <<< "${BENCH_N:-100 1000 10000 100000}"
read -r -a modes <<< "${BENCH_MODES:-single sessions files memfd restore huge}"
read -r -a restore_mib <<< "${BENCH_RESTORE_MIB:-1024 4096}"
if [ "${BENCH_ICOUNT:-0}" = 1 ]; then
	read -r -a restore_smp <<< "${BENCH_RESTORE_SMP:-1}"
else
	read -r -a restore_smp <<< "${BENCH_RESTORE_SMP:-1 2 4}"
fi
read -r -a memfd_mib <<< "${BENCH_MEMFD_MIB:-256 1024 4096}"
read -r -a huge_gib <<< "${BENCH_HUGE_GIB-1 4}"
# The huge mode's VMs are big and slow: one run of each unless BENCH_RUNS says.
huge_runs=${BENCH_RUNS:-1}
kdir=${BENCH_KERNEL_DIR:-}
# Labels; the kernels are the LABEL-bench variants.
variants=(c rust)
for m in "${modes[@]}"; do
	case $m in single|sessions|files|memfd|restore|huge) ;; *) die "BENCH_MODES: unknown mode '$m'" ;; esac
done
for g in "${huge_gib[@]}"; do
	case $g in [1-9]|[1-9][0-9]) ;; *) die "BENCH_HUGE_GIB: '$g' is not a number of GiB (1 to 99)" ;; esac
done
out=$BUILD/bench
blogs=$LOGS/bench
results=$out/results.txt
failed=0

kernel_of() {
	if [ -n "$kdir" ]; then echo "$kdir/$1.bzImage"; else echo "$(obj_dir "$1-bench")/arch/x86/boot/bzImage"; fi
}
runs_of() { if [ "$1" -ge 100000 ]; then echo "$big_runs"; else echo "$runs"; fi; }

# The chart's plotting library: matplotlib from PyPI, in a venv of its own.
venv=$CACHE/venv-bench
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
	log "installing matplotlib (PyPI) into $venv"
	python3 -m venv "$venv" || die "cannot create $venv"
	"$venv/bin/pip" install -q 'matplotlib>=3.6,<4' || die "cannot install matplotlib"
fi

# Kernels, headers and the guest programs: init, luo_rs_bench and
# luo_rs_memfd_bench only.
mkdir -p "$out/guest/tests" "$blogs"
g=$out/guest
if [ -z "$kdir" ]; then
	"$REPO/scripts/deps.sh"
	"$REPO/scripts/prepare-tree.sh"
	for v in "${variants[@]}"; do "$REPO/scripts/build-kernel.sh" "$v-bench"; done
else
	for v in "${variants[@]}"; do
		[ -f "$(kernel_of "$v")" ] || die "BENCH_KERNEL_DIR: no $(kernel_of "$v")"
	done
fi
bench_guest "$g" luo_rs_bench luo_rs_memfd_bench
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
	if gcc -O2 -o "$out/tsc-khz" "$out/tsc-khz.c"; then tsc_khz=$("$out/tsc-khz"); fi
fi
[ "$tsc_khz" != none ] || tsc_khz=
[ -n "$tsc_khz" ] || [ -n "${LUO_VM_ICOUNT:-}" ] || log "no TSC rate for the guest: its times may move in 4 ms steps"

# run_bench VARIANT MODE N RUN: one VM; appends "variant mode key n value"
# lines to $results (times in ns; "mem_OP n slab used" in bytes; "OP n
# capped ns done" for a loop stopped by the cap), or counts a failure.
run_bench() {
	local v=$1 m=$2 n=$3 r=$4 serial=$blogs/$1-$2-$3-$4.log initrd stages rc=0 extra='' mem=2G tmo=300
	if [ "$m" = single ]; then initrd=$out/single.cpio stages=1; else initrd=$out/kexec-$v.cpio stages=2; fi
	[ -n "$tsc_khz" ] && extra="tsc_early_khz=$tsc_khz"
	if [ "$n" -ge 100000 ]; then mem=4G tmo=$(( cap_s * 6 + 600 )); fi
	"$REPO/scripts/run-vm.sh" "$(kernel_of "$v")" "$initrd" "$serial" "$tmo" "$mem" \
		"kunit.enable=0 $extra -- test=luo_rs_bench stages=$stages -m $m -n $n -c $cap_s" || rc=$?
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
capped = re.search(r"BENCH capped op=(\S+) n=(\d+) done=(\d+) ns=(\d+)", log)
if not capped and f"BENCH done mode={mode} stage={stages}" not in log:
    why.append(f"no 'BENCH done mode={mode} stage={stages}'")
out = []
for mt in re.finditer(r"BENCH ([a-z_]+) n=(\d+) ns=(\d+)", log):
    out.append(f"{v} {mode} {mt.group(1)} {mt.group(2)} {mt.group(3)}")
for mt in re.finditer(r"BENCH mem ([a-z_]+) n=(\d+) slab=(-?\d+) used=(-?\d+)", log):
    out.append(f"{v} {mode} mem_{mt.group(1)} {mt.group(2)} {mt.group(3)} {mt.group(4)}")
for mt in re.finditer(r"BENCH slab ([a-z_]+) n=(\d+) cache=(\S+) bytes=(-?\d+)", log):
    out.append(f"{v} {mode} slab_{mt.group(1)} {mt.group(2)} {mt.group(3)} {mt.group(4)}")
if capped:
    out.append(f"{v} {mode} {capped.group(1)} {capped.group(2)} capped {capped.group(4)} {capped.group(3)}")
def ts(pat, start=0):
    mt = re.compile(r"\[\s*(\d+\.\d+)\] " + pat).search(log, start)
    return (float(mt.group(1)), mt.end()) if mt else (None, None)
if stages == 2 and not capped:
    t0, end = ts(r"luo_rs_bench: reboot_start")
    t1, end2 = ts(r"kexec_core: Starting new kernel", end or 0)
    if t0 is None or t1 is None:
        why.append("no reboot marker or no 'Starting new kernel'")
    else:
        n = re.search(rf"BENCH start mode={mode} stage=1 n=(\d+)", log).group(1)
        out.append(f"{v} {mode} reboot_path {n} {round((t1 - t0) * 1e9)}")
for line in out:
    print(line)
if why:
    print("; ".join(why), file=sys.stderr)
    sys.exit(1)
EOF
	then
		echo "bench: $v $m n=$n run $r FAILED (serial log: $serial)" >&2
		failed=$((failed + 1))
		return
	fi
	if grep -aq 'LUO-KMSG-ERR' "$serial"; then
		echo "bench: $v $m n=$n run $r: the kernel printed errors (see $serial)" >&2
	fi
}

# run_memfd VARIANT MIB SPARSE RUN: one luo_rs_memfd_bench VM (a kexec);
# appends "variant memfd OP MIB ns" lines to $memfd_results. A run that fails
# is recorded as "variant memfd OP MIB fail", and counted as a failed run
# unless it is the expected one: the C handler on the sparse memfd (it pins,
# so allocates, every hole of the 16 GiB file in a 2 GiB VM).
run_memfd() {
	local v=$1 mib=$2 sparse=$3 r=$4 serial mem rc=0 extra='' op memfd_tmo=600 sparse_arg=
	serial=$blogs/$v-memfd-$mib-$sparse-$r.log
	[ "$sparse" = 0 ] || sparse_arg=--sparse
	mem=$(( mib * 5 / 2 + 1024 ))
	[ "$sparse" = 0 ] || mem=2048
	[ "$mem" -ge 2048 ] || mem=2048
	[ -z "$tsc_khz" ] || extra="tsc_early_khz=$tsc_khz"
	# Single-threaded TCG is slower.
	[ -z "${LUO_VM_ICOUNT:-}" ] || memfd_tmo=1800
	"$REPO/scripts/run-vm.sh" "$(kernel_of "$v")" "$out/kexec-$v.cpio" "$serial" "$memfd_tmo" "${mem}M" \
		"kunit.enable=0 $extra -- test=luo_rs_memfd_bench stages=2 --mib=$mib $sparse_arg" || rc=$?
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

# run_restore VARIANT MIB SMP RUN: one luo_rs_memfd_bench VM (a kexec) with
# SMP vCPUs; appends "variant MIB SMP ns" (RETRIEVE_FD's time, or "fail") to
# $restore_results. The Rust LUO's first run of each size with one vCPU keeps
# the kernel's timeline of the live update in $out/timeline-MIB.txt.
run_restore() {
	local v=$1 mib=$2 smp=$3 r=$4 serial mem rc=0 extra='' tmo=900 ns
	serial=$blogs/$v-restore-$mib-smp$smp-$r.log
	mem=$(( mib * 5 / 2 + 1024 ))
	[ -z "$tsc_khz" ] || extra="tsc_early_khz=$tsc_khz"
	[ -z "${LUO_VM_ICOUNT:-}" ] || tmo=2400
	LUO_VM_SMP=$smp "$REPO/scripts/run-vm.sh" "$(kernel_of "$v")" "$out/kexec-$v.cpio" "$serial" "$tmo" "${mem}M" \
		"kunit.enable=0 $extra -- test=luo_rs_memfd_bench stages=2 --mib=$mib --timeline" || rc=$?
	ns=$(tr -d '\r' < "$serial" | sed -nE "s/.*BENCH memfd_retrieve mib=$mib ns=([0-9]+).*/\1/p" | head -1)
	if [ "$rc" -eq 0 ] && [ -n "$ns" ] && grep -aq 'BENCH done' "$serial"; then
		echo "$v $mib $smp $ns" >> "$restore_results"
		if [ "$v" = rust ] && [ "$smp" = 1 ] && [ ! -s "$out/timeline-$mib.txt" ]; then
			tr -d '\r' < "$serial" | sed -nE 's/.*BENCH timeline: (.*)/\1/p' > "$out/timeline-$mib.txt"
		fi
		return
	fi
	echo "$v $mib $smp fail" >> "$restore_results"
	echo "bench: $v restore $mib MiB -smp $smp run $r FAILED (serial log: $serial)" >&2
	failed=$((failed + 1))
}

# run_huge VARIANT KIND GIB RUN: one luo_rs_memfd_bench VM (a kexec) with a
# dense file of GIB GiB of KIND (shmem, thp, hugetlb2m, hugetlb1g); appends
# "variant kind gib OP value" lines to $huge_results (OP: preserve and
# retrieve in ns, folios and folio_kib as the guest checked them), or
# "variant kind gib fail -", counted as a failed run.
# The VM, the same for every kind of a size: twice the file plus 4 GiB (6 and
# 12 GiB at the default sizes) and kho_scratch=64M,384M,384M. hugetlb1g needs
# the twice: 1 GiB pages can only be had at boot (hugepagesz=1G
# hugepages=GIB), and the kexec passes the same command line on, so the next
# kernel reserves a pool of its own beside the preserved pages (which its
# RETRIEVE_FD makes surplus pages). The other kinds get as much so that
# nothing but the kind differs between the rows of a size, and so that the
# file does not land in KHO's scratch areas, from where PRESERVE_FD would
# have to migrate it first: they are CMA in the first kernel, at the top of
# the Normal zone (the memory above 4 GiB; the 3 GiB below it are DMA32), and
# the page allocator takes movable pages from CMA once CMA holds half of a
# zone's free memory. With 2x + 4 GiB the Normal zone keeps more than twice
# the 768 MiB of scratch free once the file is written (its
# "memfd_preserve_migrated" line in the serial log shows CmaFree). The sizes
# are given, as the hugetlb suite of make check does, because KHO otherwise
# sizes the scratch from the memblock reservations, which grow with the VM;
# the next kernel's early boot (its 190 MiB of memmap at 12 GiB, the kernel
# and the initramfs) runs in them. The 2 MiB hugetlb pool is grown at run
# time by the guest, in the first kernel only. hugetlb1g gets 1 GiB more:
# the next kernel's pool needs GIB free aligned 1 GiB blocks, which the
# preserved pages and the scratch areas fragment (at 4 GiB in 12 GiB it
# found 3).
run_huge() {
	local v=$1 kind=$2 gib=$3 r=$4 serial mem cmd tmo rc=0
	serial=$blogs/$v-huge-$kind-$gib-$r.log
	mem=$(( (2 * gib + 4) * 1024 ))
	cmd="kho_scratch=64M,384M,384M"
	if [ "$kind" = hugetlb1g ]; then
		mem=$(( mem + 1024 ))
		cmd+=" hugepagesz=1G hugepages=$gib"
	fi
	[ -z "$tsc_khz" ] || cmd+=" tsc_early_khz=$tsc_khz"
	tmo=$(( 300 + 150 * gib ))
	[ "$tmo" -ge 600 ] || tmo=600
	# Single-threaded TCG is slower.
	[ -z "${LUO_VM_ICOUNT:-}" ] || tmo=$(( tmo * 3 ))
	"$REPO/scripts/run-vm.sh" "$(kernel_of "$v")" "$out/kexec-$v.cpio" "$serial" "$tmo" "${mem}M" \
		"kunit.enable=0 $cmd -- test=luo_rs_memfd_bench stages=2 --mib=$(( gib * 1024 )) --kind=$kind" || rc=$?
	if [ "$rc" -eq 0 ] && python3 - "$serial" "$v" "$kind" "$gib" >> "$huge_results" <<'EOF'
import re, sys
serial, v, kind, gib = sys.argv[1:5]
log = open(serial, "rb").read().decode("utf-8", "replace").replace("\r", "")
suffix = "" if kind == "shmem" else "_" + kind
mib = int(gib) * 1024
out, why = [], []
for op in ("preserve", "retrieve"):
    m = re.search(rf"BENCH memfd_{op}{suffix} mib={mib} ns=(\d+)", log)
    if m:
        out.append(f"{v} {kind} {gib} {op} {m.group(1)}")
    else:
        why.append(f"no 'BENCH memfd_{op}{suffix} mib={mib}'")
m = re.search(rf"BENCH memfd_kind kind={kind} mib={mib} folios=(\d+) folio_kib=(\d+)", log)
if m:
    out += [f"{v} {kind} {gib} folios {m.group(1)}", f"{v} {kind} {gib} folio_kib {m.group(2)}"]
else:
    why.append(f"no 'BENCH memfd_kind kind={kind}'")
for s in (f"BENCH memfd_kind_restored kind={kind}", "BENCH done"):
    if s not in log:
        why.append(f"no '{s}'")
if why:
    print("; ".join(why), file=sys.stderr)
    sys.exit(1)
print("\n".join(out))
EOF
	then
		if grep -aq 'LUO-KMSG-ERR' "$serial"; then
			echo "bench: $v huge $kind $gib GiB run $r: the kernel printed errors (see $serial)" >&2
		fi
		return
	fi
	echo "$v $kind $gib fail -" >> "$huge_results"
	echo "bench: $v huge $kind $gib GiB run $r FAILED (serial log: $serial)" >&2
	failed=$((failed + 1))
}

: > "$results"
memfd_results=$out/memfd-results.txt
: > "$memfd_results"
huge_results=$out/huge-results.txt
: > "$huge_results"
restore_results=$out/restore-results.txt
: > "$restore_results"
rm -f "$out"/timeline-*.txt
start=$(date +%s)
maxruns=$runs
[ "$big_runs" -le "$maxruns" ] || maxruns=$big_runs
[ "$huge_runs" -le "$maxruns" ] || maxruns=$huge_runs
for r in $(seq 1 "$maxruns"); do
	for m in "${modes[@]}"; do
		for v in "${variants[@]}"; do
			if [ "$m" = memfd ]; then
				[ "$r" -le "$runs" ] || continue
				log "bench run $r/$runs: memfd on LUO=$v"
				for mib in "${memfd_mib[@]}"; do run_memfd "$v" "$mib" 0 "$r"; done
				# The sparse case once: its outcome does not vary.
				[ "$r" -gt 1 ] || run_memfd "$v" 64 1 "$r"
				continue
			fi
			if [ "$m" = restore ]; then
				[ "$r" -le "$runs" ] || continue
				log "bench run $r/$runs: restore on LUO=$v"
				for mib in "${restore_mib[@]}"; do
					for smp in "${restore_smp[@]}"; do run_restore "$v" "$mib" "$smp" "$r"; done
				done
				continue
			fi
			if [ "$m" = huge ]; then
				[ "$r" -le "$huge_runs" ] || continue
				log "bench run $r/$huge_runs: guest RAM on huge pages on LUO=$v"
				for g in "${huge_gib[@]}"; do
					for kind in shmem thp hugetlb2m hugetlb1g; do
						# The C memfd handler takes shmem memfds only.
						[ "$v" = rust ] || [ "${kind#hugetlb}" = "$kind" ] || continue
						run_huge "$v" "$kind" "$g" "$r"
					done
				done
				continue
			fi
			for n in "${scale_n[@]}"; do
				[ "$r" -le "$(runs_of "$n")" ] || continue
				log "bench run $r/$(runs_of "$n"): $m n=$n on LUO=$v"
				run_bench "$v" "$m" "$n" "$r"
			done
		done
	done
done
log "bench took $(( $(date +%s) - start ))s (QEMU TCG; ${tsc_khz:+tsc_early_khz=$tsc_khz; }logs: $blogs/)"

report=$out/report.txt
day=$(date -u +%Y-%m-%d)
clock="time"
[ "${LUO_VM_ICOUNT:-0}" != 1 ] || clock=icount
{
# The scaling report only if a scaling mode ran.
if [ -s "$results" ]; then
	"$venv/bin/python" "$REPO/scripts/bench-report.py" "$results" "$out/scale.json" "$out/bench.svg" \
		"$runs" "$big_runs" "$cap_s" "$day" "$clock" || failed=$((failed + 1))
fi
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
print("production-like kernels (config/bench.config),")
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
if [ -s "$restore_results" ]; then
	"$venv/bin/python" "$REPO/scripts/bench-report.py" --restore "$restore_results" "$out" "$clock" \
		"$out/restore.svg" "$day" || failed=$((failed + 1))
fi
if [ -s "$huge_results" ]; then
	"$venv/bin/python" "$REPO/scripts/bench-report.py" --huge "$huge_results" "$huge_runs" "$clock" ||
		failed=$((failed + 1))
fi
} > "$report"
cat "$report"
log "report: $report, chart: $out/bench.svg"

# Keep the report with its date and command line (bench/results.md).
results_md=${BENCH_RESULTS_MD-$REPO/bench/results.md}
if [ -n "$results_md" ]; then
	took=$(( SECONDS - bench_start ))
	commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
	# Uncommitted changes outside bench/ (an earlier run's results.md is not one).
	if [ "$commit" != unknown ] && ! git -C "$REPO" diff --quiet HEAD -- . ':(exclude)bench' 2>/dev/null; then
		commit="$commit (with uncommitted changes)"
	fi
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1) || cpu=
	qemu=$(qemu-system-x86_64 --version 2>/dev/null | sed -n '1s/^QEMU emulator version /QEMU /p') || qemu=
	machine="$(nproc) CPUs${cpu:+, $cpu}${qemu:+; $qemu}"
	if "$venv/bin/python" "$REPO/scripts/bench-report.py" --results-md "$results_md" "$clock" "$report" \
		"$day" "$command_line" "$commit" "$((took / 60))m$(printf %02d $((took % 60)))s" "$machine" "$failed"; then
		log "results: $results_md"
	else
		echo "bench: cannot write $results_md" >&2
	fi
fi
[ "$failed" -eq 0 ] || { echo "bench: $failed run(s) failed" >&2; exit 1; }
