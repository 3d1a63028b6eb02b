#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot one VM under QEMU/TCG and wait for it to power off.
# Usage: run-vm.sh KERNEL INITRD SERIAL_LOG TIMEOUT_S MEM "EXTRA CMDLINE"
# Exit status: QEMU's, or 124 on timeout. The verdict is in the serial log.
# no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check
# can fail ("MP-BIOS bug: 8254 timer not connected", an error-level message),
# a known false alarm in VMs.
# tsc=nowatchdog: no clocksource watchdog. Linux 7.3's watchdog checks the
# TSC of the other CPU from the timer softirq: it sends that CPU an IPI and
# waits for it with interrupts off, giving up after a timeout read from the
# timekeeping clock. Until clocksource_done_booting() (an fs_initcall) that
# clock is jiffies, which stops when no CPU takes timer interrupts. If the
# other CPU has interrupts off too, waiting for this one, the wait never ends.
# clocksource_done_booting() itself switches clocksources with stop_machine(),
# whose CPUs disable interrupts one after the other: a watchdog timer that
# fires on the boot CPU between the two deadlocks both. Under TCG on a loaded
# host the window is wide (a vCPU thread can be descheduled inside it). Seen
# six times in about 1,700 make check VMs, only on kernels with ACPI (HPET is
# the watchdog; without ACPI there is none), the serial log stopping before
# "Switched to clocksource tsc-early"; the console prints from a kthread, so
# the last line shown is earlier (often "vgaarb: loaded"). The TSC is the
# only clocksource the watchdog watches here, so this turns it off.
. "$(dirname "$0")/lib.sh"

# LUO_VM_ICOUNT=1: QEMU -icount shift=0 (no MTTCG; the guest clock advances
# 1 ns per guest instruction), so guest-measured times are instruction counts,
# independent of the host's load (used by `BENCH_ICOUNT=1 make bench`).

# LUO_VM_VFIO=1: the vfio suite's machine, a q35 with QEMU's emulated Intel
# IOMMU and four edu test devices (1234:11e8, at 00:02.0 to 00:05.0, with a
# 39-bit DMA mask so that a test can put guest RAM at an IOVA above the VM's
# RAM: see luo_rs_vfio_dma.c), booted with intel_iommu=on. Without it, QEMU's default i440fx machine with no
# devices (-nodefaults).
# LUO_VM_PLUGIN=ARGS: one vCPU and QEMU's -plugin ARGS (scripts/bench-prof.sh).
# LUO_VM_SMP=N: N vCPUs instead of 2 (make bench's restore rows).
kernel=$1 initrd=$2 serial=$3 tmo=$4 mem=$5 extra=$6
accel=(-accel tcg) smp=${LUO_VM_SMP:-2}
[ "${LUO_VM_ICOUNT:-0}" = 1 ] && accel+=(-icount shift=0)
if [ -n "${LUO_VM_PLUGIN:-}" ]; then
	accel+=(-plugin "$LUO_VM_PLUGIN")
	smp=1
fi
if [ "${LUO_VM_VFIO:-0}" = 1 ]; then
	edu=edu,dma_mask=0x7fffffffff
	# shellcheck disable=SC2054 # the commas are QEMU's option syntax
	accel+=(-M q35 -device intel-iommu -device "$edu",addr=02.0 -device "$edu",addr=03.0
		-device "$edu",addr=04.0 -device "$edu",addr=05.0)
	extra="intel_iommu=on $extra"
fi
mkdir -p "$(dirname "$serial")"
rm -f "$serial" "$serial.timeout"
run() {
	timeout --kill-after=5 "$tmo" qemu-system-x86_64 \
		"${accel[@]}" -cpu max -smp "$smp" -m "$mem" \
		-no-reboot -nographic -nodefaults \
		-serial file:"$serial" \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 panic=-1 oops=panic hung_task_panic=1 softlockup_panic=1 no_timer_check tsc=nowatchdog liveupdate=on $extra" </dev/null
}
# LUO_VM_RETRY=1 (make check): a VM that times out runs once more, and the
# retry's log is judged. Added for the early-boot deadlock above before it
# was understood. The retry is never silent: it is said on stderr and the
# first serial log is kept as $serial.timeout, which scripts/verdict.py
# judges too: a kernel report in it fails the case, and a timeout that does
# not match the early-boot clocksource stall above is a failing
# "flaky-timeout" case (scripts/harness.py). A test that hangs every time
# still times out.
rc=0
run || rc=$?
if { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && [ "${LUO_VM_RETRY:-0}" = 1 ]; then
	touch "$serial"
	mv "$serial" "$serial.timeout"
	echo "run-vm: $serial: the VM timed out after ${tmo}s; running it once more (first log: $serial.timeout)" >&2
	rc=0
	run || rc=$?
fi
exit "$rc"
