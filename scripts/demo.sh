#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make demo`: a live update in QEMU, shown step by step.
# Until our Rust LUO and VMM agent exist, this runs upstream's
# luo_kexec_simple on the LUO=${LUO:-c} kernel: a memfd is preserved in a
# session, the kernel kexecs into itself, and the new kernel gets it back.
# V=1 prints the whole serial log.
. "$(dirname "$0")/lib.sh"

v=${DEMO_LUO:-c}
t0=$(date +%s.%N)
stage() { printf '[%6.1fs] %s\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$*"; }
quiet() { local l=$BUILD/demo-$1.log; shift; "$@" > "$l" 2>&1 || { tail -n 30 "$l"; die "failed, see $l"; }; }

mkdir -p "$BUILD"
stage "fetch: toolchain and Linux $KVER_SERIES source (log: $BUILD/demo-fetch.log)"
quiet fetch "$REPO/scripts/deps.sh"
quiet prepare "$REPO/scripts/prepare-tree.sh"
stage "build: LUO=$v kernel and guest programs (log: $(obj_dir "$v")/build.log)"
quiet build "$REPO/scripts/build-kernel.sh" "$v"
quiet guest "$REPO/scripts/build-guest.sh" "$v"
k=$(obj_dir "$v")/arch/x86/boot/bzImage
"$REPO/scripts/mkinitramfs.sh" "$BUILD/guest-$v/kexec.cpio" "$BUILD/guest-$v" "$k"

serial=$LOGS/demo.log
stage "boot: QEMU (TCG), serial log $serial"
"$REPO/scripts/run-vm.sh" "$k" "$BUILD/guest-$v/kexec.cpio" "$serial" 300 1G \
	"kunit.enable=0 luo.test=luo_kexec_simple luo.stages=2" &
qemu=$!
while [ ! -f "$serial" ]; do sleep 0.1; done
if [ "${V:-0}" = 1 ]; then
	filter='.'
else
	filter='Linux version|KHO: found|luo: |LUO-HARNESS|STAGE|PASSED|FAIL'
fi
tail -n +1 -f "$serial" --pid=$qemu | grep --line-buffered -E "$filter" | while IFS= read -r line; do
	case $line in
	*"Linux version"*) stage "kernel: ${line#*] }" ;;
	*"stage 1 exit 0"*) stage "kexec: stage 1 done, rebooting into the new kernel" ;;
	*) printf '           %s\n' "$line" ;;
	esac
done
wait $qemu || true
if "$REPO/scripts/verdict.py" stages "$serial" "$v:demo" luo_kexec_simple 2; then
	stage "verified: the memfd came back intact after the kexec"
else
	stage "FAILED: see $serial"
	exit 1
fi
