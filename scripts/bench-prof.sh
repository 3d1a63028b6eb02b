#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Where the C and the Rust LUO spend their instructions, function by function:
# the profile behind the constant-factor work of make bench.
#
# Usage: scripts/bench-prof.sh [MODE...]    (modes of luo_rs_bench, or memfd;
#                                            default: single sessions files)
# Environment:
#   BENCH_N=100          operations per timed loop
#   PROF_OPS="op ..."    only these operations (default: every one the modes time)
#   PROF_TOP=25          functions shown per operation
#   PROF_WATCH="fn ..."  also show who calls these kernel functions
#   PROF_MEMFD_MIB=256   the memfd mode's file: PRESERVE_FD and RETRIEVE_FD of
#                        one dense memfd of this size (luo_rs_memfd_bench),
#                        each side's own memfd handler; counts are per 4 KiB
#                        page
#
# Needs the bench kernels (build/obj-c-bench and build/obj-rust-bench: make
# bench builds them, or make kernel LUO=c-bench / LUO=rust-bench). Each mode
# runs luo_rs_bench with -P (luo_rs_memfd_bench with --prof) in one VM per kernel, under QEMU TCG
# with one vCPU, nokaslr and the tbprof plugin (scripts/bench-prof/tbprof.c),
# which counts every guest instruction between the bench's markers, the
# getppid() and getpgrp() it makes around each timed loop (machine_kexec ends
# the reboot path). Counts are exact and repeatable (no timer, no sampling);
# scripts/bench-prof/report.py maps them to functions with System.map.
#
# Output, per operation: instructions per operation for C and Rust, their
# ratio, and the functions whose share differs most. The reboot path also
# gets a "LUO share" line without the console, printk, scheduler and timer
# functions, which depend on when the console's kthread runs rather than on
# the LUO. Files: build/bench/prof/ (raw counts: MODE-VARIANT.tb, serial logs:
# MODE-VARIANT.log).
. "$(dirname "$0")/lib.sh"

read -r -a modes <<< "${*:-single sessions files}"
n=${BENCH_N:-100}
out=$BUILD/bench/prof
g=$out/guest
mkdir -p "$out"
for v in c rust; do
	[ -f "$(obj_dir "$v-bench")/vmlinux" ] ||
		die "no $(obj_dir "$v-bench")/vmlinux: run make bench or make kernel LUO=$v-bench first"
done

gcc -O2 -Wall -shared -fPIC -o "$out/tbprof.so" "$REPO/scripts/bench-prof/tbprof.c" ||
	die "cannot build the QEMU plugin"
bench_guest "$g" luo_rs_bench luo_rs_memfd_bench
"$REPO/scripts/mkinitramfs.sh" "$out/single.cpio" "$g" > /dev/null
for v in c rust; do
	"$REPO/scripts/mkinitramfs.sh" "$out/kexec-$v.cpio" "$g" \
		"$(obj_dir "$v-bench")/arch/x86/boot/bzImage" > /dev/null
done

# addr VARIANT SYMBOL: the symbol's address in that kernel (nokaslr).
addr() { awk -v s="$2" '$3 == s { print "0x" $1; exit }' "$(obj_dir "$1-bench")/System.map"; }

for m in "${modes[@]}"; do
	mem=2G pn=$n
	args="test=luo_rs_bench -m $m -n $n -P"
	case $m in single) stages=1 initrd=$out/single.cpio ;; sessions|files) stages=2 ;;
	memfd)
		stages=2 mib=${PROF_MEMFD_MIB:-256}
		mem=$(( mib * 5 / 2 + 1024 ))M pn=$(( mib * 256 ))
		args="test=luo_rs_memfd_bench --mib=$mib --prof" ;;
	*) die "unknown mode '$m'" ;; esac
	for v in c rust; do
		[ "$m" = single ] || initrd=$out/kexec-$v.cpio
		plugin="$out/tbprof.so,on=$(addr "$v" __x64_sys_getppid),off=$(addr "$v" __x64_sys_getpgrp),off=$(addr "$v" machine_kexec),out=$out/$m-$v.tb"
		for f in ${PROF_WATCH:-}; do
			a=$(addr "$v" "$f")
			[ -n "$a" ] || die "PROF_WATCH: no function $f in the $v-bench kernel"
			plugin+=",watch=$a"
		done
		log "profiling $m on $v (n=$pn)"
		LUO_VM_PLUGIN=$plugin "$REPO/scripts/run-vm.sh" "$(obj_dir "$v-bench")/arch/x86/boot/bzImage" \
			"$initrd" "$out/$m-$v.log" 1800 "$mem" \
			"nokaslr kunit.enable=0 console_msg_format=syslog -- stages=$stages $args" ||
			die "the $m VM on $v failed (serial log: $out/$m-$v.log)"
		grep -Eq "BENCH done( mode=$m stage=$stages)?\s*$" "$out/$m-$v.log" ||
			die "luo_rs_bench did not finish on $v (serial log: $out/$m-$v.log)"
	done
	python3 "$REPO/scripts/bench-prof/report.py" "$out" "$BUILD" "$m" "$pn" "${PROF_TOP:-25}" ${PROF_OPS:+"$PROF_OPS"}
done
