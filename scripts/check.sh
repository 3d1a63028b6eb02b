#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check`: build and run every test, one line per case:
#   ok <variant>:<suite>:<case>     or     not ok <variant>:<suite>:<case> # why
# and finally "N passed, M failed". Exit status 1 if anything failed.
# Usage: check.sh VARIANT...
. "$(dirname "$0")/lib.sh"

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(c)
results=$BUILD/results.txt
mkdir -p "$BUILD"
: > "$results"

report() { # report LINE...: print and record verdict lines
	local l
	for l in "$@"; do
		echo "$l"
		echo "$l" >> "$results"
	done
}

# vm_case VARIANT SUITE CASE INITRD STAGES TIMEOUT MODE [EXTRA]
#   MODE is "kselftest:SOURCE" or "stages"
vm_case() {
	local v=$1 suite=$2 case=$3 initrd=$4 stages=$5 tmo=$6 mode=$7 extra=${8:-}
	local kernel serial out rc=0
	kernel=$(obj_dir "$v")/arch/x86/boot/bzImage
	serial=$LOGS/$v/$suite-$case.log
	"$REPO/scripts/run-vm.sh" "$kernel" "$initrd" "$serial" "$tmo" 1G \
		"kunit.enable=0 luo.test=$case luo.stages=$stages $extra" || rc=$?
	if [ "$mode" = stages ]; then
		out=$("$REPO/scripts/verdict.py" stages "$serial" "$v:$suite" "$case" "$stages") || true
	else
		out=$("$REPO/scripts/verdict.py" kselftest "$serial" "$v:$suite" "${mode#kselftest:}") || true
	fi
	[ $rc -eq 124 ] && out=$(echo "$out" | sed 's/^ok \(.*\)$/not ok \1 # VM timed out/; s/^\(not ok .*\)$/\1 (VM timed out after '"$tmo"'s)/')
	mapfile -t lines <<< "$out"
	report "${lines[@]}"
	if grep -q '^not ok' <<< "$out"; then
		echo "#   serial log: $serial"
	fi
}

run_variant() {
	local v=$1 g
	if ! "$REPO/scripts/build-kernel.sh" "$v"; then
		report "not ok $v:build:kernel # see the messages above"
		return
	fi
	if ! "$REPO/scripts/build-guest.sh" "$v"; then
		report "not ok $v:build:guest # see the messages above"
		return
	fi
	g=$BUILD/guest-$v
	local k
	k=$(obj_dir "$v")/arch/x86/boot/bzImage
	"$REPO/scripts/mkinitramfs.sh" "$g/single.cpio" "$g"
	"$REPO/scripts/mkinitramfs.sh" "$g/kexec.cpio" "$g" "$k"

	log "running LUO=$v tests under QEMU (logs: $LOGS/$v/)"
	vm_case "$v" liveupdate liveupdate "$g/single.cpio" 1 300 \
		"kselftest:$SRC/tools/testing/selftests/liveupdate/liveupdate.c"
	vm_case "$v" uapi luo_rs_uapi "$g/single.cpio" 1 300 \
		"kselftest:$SRC/tools/testing/selftests/liveupdate/luo_rs_uapi.c"
	local t
	for t in luo_kexec_simple luo_multi_session luo_stress_files luo_stress_sessions; do
		vm_case "$v" kexec "$t" "$g/kexec.cpio" 2 300 stages
	done
}

start=$(date +%s)
"$REPO/scripts/deps.sh"
"$REPO/scripts/prepare-tree.sh"
for v in "${variants[@]}"; do
	run_variant "$v"
done

passed=$(grep -c '^ok ' "$results" || true)
failed=$(grep -c '^not ok ' "$results" || true)
log "check took $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
