#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make demo`: a live update in QEMU, shown the way an operator watches one.
#
# In the VM, a VM host (tools/liveupdate/luo-vmm-demo) fills SIZE bytes of
# guest RAM (a memfd) with a reproducible pattern, writes the VM state (vCPU
# registers, ...) into a second memfd, preserves both in the LUO session
# "vm-demo" and the kernel kexecs into itself (kexec_file_load + KHO). The
# new kernel gets both memfds back, every byte is checked, and the session
# is finished. The blackout is measured here, on the host, from the serial
# stream: from the guest's `DEMO: reboot` line to its `DEMO: verified` line.
# The kernel's own breakdown follows: the VM host prints its timeline
# (/sys/kernel/debug/liveupdate/timeline, the Rust LUO only) at the end, each
# line as `DEMO timeline: ...`, and the rows of `luoctl timeline` as
# `DEMO breakdown: ...` (or one `DEMO timeline-error: ...` line).
#
# With VFIO=1 the VM is run-vm.sh's q35 with an emulated Intel IOMMU and four
# QEMU edu PCI devices (LUO_VM_VFIO=1), and the VM host also passes one
# through (--vfio=0000:00:02.0, the first edu): stage 1 binds it to vfio-pci
# and an iommufd, maps guest RAM into its IOAS, checks a DMA round trip and
# preserves the device fd in the same session; the new kernel binds the
# device to vfio-pci, retrieves it, binds it to a new iommufd and maps the
# retrieved guest RAM (inside the blackout: a VMM must before its VM runs),
# and after the memory is verified the device DMAs from guest RAM to itself
# and back to elsewhere in guest RAM, which is checked byte for byte.
# The device keeps running through the kexec (phase 2, "vfio-pci-rs-v2":
# vfio_pci_luo_rs.keep_running=1; KEEP_RUNNING=0 for phase 1, where it is
# reset at freeze): stage 1 has it DMA 4095 bytes of guest RAM to elsewhere
# in guest RAM while the kernels switch (started by vfio-pci's test hook at
# the kexec), stage 2 maps guest RAM before it attaches the device, prints
# the kernel's line on the switch from the adopted IOMMU translation (how
# long the device's context entry was not present), and finds that copy in
# the retrieved guest RAM (Documentation/core-api/liveupdate-vfio-rust.rst,
# "Devices that keep running").
#
# With HUGETLB=1 (or 2M) guest RAM is a hugetlbfs memfd of 2 MiB pages
# (memfd_create(MFD_HUGETLB | MFD_HUGE_2MB), --hugetlb=2M), as
# production VMMs back guest RAM; HUGETLB=1G: of 1 GiB pages. Only the Rust
# memfd handler preserves such a file ("hugetlb-memfd-rs-v1"), so LUO=c is
# refused. SIZE is rounded up to whole pages (said so). The pages come from
# the pool:
# - 2 MiB: the VM host grows the pool at run time in the first kernel
#   (nr_hugepages), as a host does before it starts a VM. The command line
#   gets no hugepages=: init carries the command line into the next kernel,
#   which would build a second pool of SIZE beside the preserved pages. So
#   the next kernel has no pool, and the restored pages are surplus pages.
#   VM memory as for shmem.
# - 1 GiB: such pages cannot be counted on at run time, so the command line
#   asks for them (hugepagesz=1G hugepages=N, N = SIZE / 1 GiB). The next
#   kernel, which gets the same command line, builds its own pool of N
#   beside the N preserved pages, so the VM has room for both: 2N + 4 GiB
#   (+1 on the VFIO machine: q35 has 2 GiB below the PCI hole, the default
#   machine 3), for N whole 1 GiB blocks free of any preserved page, KHO
#   scratch and the kernel in each kernel. KHO's scratch areas get the
#   fixed sizes of the hugetlb suite (kho_scratch=64M,256M,256M; 6 GiB, a
#   1 GiB page in each kernel, scripts/suites.toml): the default sizing
#   scales with the first kernel's memblock reservations, which grow with
#   RAM (the memmap), and every 1 GiB block a scratch area reaches into is
#   one the next kernel cannot take a 1 GiB page from (memblock_alloc_hugetlb
#   skips KHO scratch).
# The new kernel checks that guest RAM came back as hugetlbfs (fstatfs
# f_type 0x958458f6) with the same page size (st_blksize) before it checks
# every byte; the summary names the page kind.
#
# Environment:
#   SIZE=256M          guest RAM to preserve (K/M/G suffixes), passed to
#                      the VM host in bytes as --size=
#   DEMO_LUO / LUO     rust (default) or c
#   VFIO=1             add the passthrough device (needs LUO=rust: the C
#                      variant has no vfio-pci live update handler)
#   KEEP_RUNNING=0     with VFIO=1: phase 1, the device reset at freeze
#                      (default 1: it keeps running through the kexec)
#   HUGETLB=1|2M|1G    guest RAM on 2 MiB or 1 GiB hugetlbfs pages (needs
#                      LUO=rust: the C memfd handler has no hugetlb support)
#   V=1                stream the whole serial log
#   DEMO_TIMEOUT=S     hard limit for the VM (default: from SIZE)
#   DEMO_KERNEL=FILE   boot this prebuilt bzImage of the same variant instead
#                      of fetching and building the kernel (for development;
#                      the guest programs and the initramfs are still built)
# Exit status 0 only if the memory (and with VFIO=1 the device) came back
# verified.
. "$(dirname "$0")/lib.sh"

v=${DEMO_LUO:-${LUO:-rust}}
case $v in c | rust) ;; *) die "DEMO_LUO/LUO must be c or rust, not '$v'" ;; esac
vfio=${VFIO:-0}
case $vfio in 0 | '') vfio=0 ;; 1) ;; *) die "VFIO must be 0 or 1, not '$vfio'" ;; esac
keep=${KEEP_RUNNING:-1}
case $keep in 0 | 1) ;; *) die "KEEP_RUNNING must be 0 or 1, not '$keep'" ;; esac
# The vfio-pci handler (Rust, config/vfio-rust.config) is built in the
# variants with Rust; c has none.
if [ "$vfio" = 1 ]; then
	has_vfio_rust "$v" || die "VFIO=1: LUO=$v has no vfio-pci live update handler; run make demo VFIO=1 [LUO=rust]"
fi
hugetlb=${HUGETLB:-0}
case ${hugetlb,,} in
0 | '') hugetlb='' ;;
1 | 2m) hugetlb=2M ;;
1g) hugetlb=1G ;;
*) die "HUGETLB must be 1 (or 2M: 2 MiB pages) or 1G (1 GiB pages), not '$hugetlb'" ;;
esac
# hugetlbfs memfds are preserved by the Rust memfd handler only
# (CONFIG_LIVEUPDATE_MEMFD_RUST); the C one refuses them (ENOENT).
if [ -n "$hugetlb" ]; then
	# shellcheck disable=SC2046 # one word per fragment path
	fragment_options $(variant_fragments "$v") | grep -qx 'CONFIG_LIVEUPDATE_MEMFD_RUST=y' ||
		die "HUGETLB=$HUGETLB: LUO=$v's memfd handler (the C one) has no hugetlb support: PRESERVE_FD of a hugetlbfs memfd fails with ENOENT; run make demo HUGETLB=$HUGETLB [LUO=rust]"
fi
size_arg=${SIZE:-256M}

# Bytes of a size with an optional K/M/G/T suffix (powers of 1024, like
# luo-vmm-demo's --size).
to_bytes() {
	local n u
	[[ $1 =~ ^([0-9]+)([KkMmGgTt]?)([iI]?[bB])?$ ]] || return 1
	n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2],,}
	case $u in
	'') echo $((10#$n)) ;; k) echo $((10#$n << 10)) ;; m) echo $((10#$n << 20)) ;;
	g) echo $((10#$n << 30)) ;; t) echo $((10#$n << 40)) ;;
	esac
}
size=$(to_bytes "$size_arg") || die "SIZE=$size_arg: expected bytes with an optional K, M or G suffix, e.g. 256M"
[ "$size" -ge 4096 ] || die "SIZE=$size_arg: at least 4K"
[ "$vfio" = 0 ] || [ "$size" -ge $((64 << 10)) ] || die "SIZE=$size_arg: at least 64K with VFIO=1 (room for the device's DMA)"
# A hugetlbfs memfd is sized in whole huge pages: round SIZE up (said in
# the boot line and the summary).
page=0 page_name='' size_note=''
case $hugetlb in
2M) page=$((2 << 20)) page_name='2 MiB' ;;
1G) page=$((1 << 30)) page_name='1 GiB' ;;
esac
if [ "$page" -gt 0 ] && [ $((size % page)) -ne 0 ]; then
	size=$(((size + page - 1) / page * page))
	size_note=" (SIZE=$size_arg rounded up to whole $page_name pages)"
fi
size_mib=$(((size + (1 << 20) - 1) >> 20))
mem_mib=$((1024 + 2 * size_mib))
extra_tmo=0
if [ "$hugetlb" = 1G ]; then
	# N preserved pages, the next kernel's own pool of N, and 4 GiB
	# (the machine's low memory, KHO scratch, the kernels): see above.
	mem_mib=$(((2 * (size >> 30) + 4 + vfio) << 10))
	extra_tmo=60
fi
tmo=${DEMO_TIMEOUT:-$((240 + size_mib / 2 + 120 * vfio + extra_tmo))}

# Host monotonic time in centiseconds (/proc/uptime), into $NOW.
now() {
	local u
	read -r u _ < /proc/uptime
	NOW=$((10#${u/./}))
}
secs() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }
human() {
	local n=$1 u
	for u in T:40 G:30 M:20 K:10; do
		if [ "$n" -ge $((1 << ${u#*:})) ] && [ $((n % (1 << ${u#*:}))) -eq 0 ]; then
			echo "$((n >> ${u#*:})) ${u%:*}iB"
			return
		fi
	done
	echo "$n bytes"
}
now
T0=$NOW
stage() {
	now
	printf '[%7ss] %-8s %s\n' "$(secs $((NOW - T0)))" "$1" "$2"
}
quiet() {
	local l=$BUILD/demo-$1.log
	shift
	"$@" > "$l" 2>&1 || {
		tail -n 30 "$l"
		die "failed, see $l"
	}
}

mkdir -p "$BUILD" "$LOGS"
if [ -n "${DEMO_KERNEL:-}" ]; then
	[ -f "$DEMO_KERNEL" ] || die "DEMO_KERNEL=$DEMO_KERNEL: no such file"
	k=$DEMO_KERNEL
	stage fetch "skipped: prebuilt LUO=$v kernel $k (DEMO_KERNEL)"
	stage build "guest programs (logs: $BUILD/demo-{guest,agent}.log)"
else
	stage fetch "toolchain and Linux $KVER_SERIES source (logs: $BUILD/demo-{fetch,prepare}.log)"
	quiet fetch "$REPO/scripts/deps.sh"
	quiet prepare "$REPO/scripts/prepare-tree.sh"
	k=$(obj_dir "$v")/arch/x86/boot/bzImage
	stage build "LUO=$v kernel and guest programs (logs: $BUILD/demo-{build,guest,agent}.log)"
	quiet build "$REPO/scripts/build-kernel.sh" "$v"
fi
quiet guest "$REPO/scripts/build-guest.sh" "$v"
quiet agent "$REPO/scripts/build-agent.sh"
# The demo's own initramfs: our PID 1 and the VM host, nothing else.
g=$BUILD/demo-$v
mkdir -p "$g/tests"
cp "$BUILD/guest-$v/init" "$g/init"
cp "$BUILD/agent/luo-vmm-demo" "$g/tests/luo-vmm-demo"
quiet initramfs "$REPO/scripts/mkinitramfs.sh" "$g/kexec.cpio" "$g" "$k"
stage build "done: $(basename "$k") $(du -k "$k" | cut -f1) KiB, initramfs $(du -k "$g/kexec.cpio" | cut -f1) KiB (with the next kernel)"

tag=$v
# The kernel's parameters; after "--", init's words and the VM host's
# arguments (guest/init.c).
cmdline="kunit.enable=0"
args="test=luo-vmm-demo stages=2 --size=$size"
machine=''
if [ "$vfio" = 1 ]; then
	tag+=-vfio
	args+=" --vfio=0000:00:02.0"
	[ "$keep" = 0 ] || cmdline+=" vfio_pci_luo_rs.keep_running=1"
	machine=', q35 + Intel IOMMU + 4 edu devices'
	export LUO_VM_VFIO=1
fi
ram_kind=''
case $hugetlb in
2M)
	# No hugepages=: the VM host grows the pool at run time (see above).
	args+=" --hugetlb=2M"
	;;
1G)
	args+=" --hugetlb=1G"
	cmdline+=" hugepagesz=1G hugepages=$((size / page)) kho_scratch=64M,256M,256M"
	;;
esac
if [ -n "$hugetlb" ]; then
	tag+=-hugetlb$hugetlb
	ram_kind=" on $page_name hugetlb pages ($((size / page)))"
fi
serial=$LOGS/demo-$tag.log
qlog=$LOGS/demo-$tag.qemu.log
rm -f "$serial"
stage boot "QEMU (TCG$machine), $mem_mib MiB, LUO=$v, guest RAM $(human "$size")$ram_kind$size_note, timeout ${tmo}s (serial log: $serial)"
case $hugetlb in
2M) stage boot "huge pages: the VM host grows the 2 MiB pool at run time; the next kernel gets no pool (its restored pages are surplus pages)" ;;
1G) stage boot "huge pages: command line hugepagesz=1G hugepages=$((size / page)) (the next kernel builds its own pool beside the preserved pages), kho_scratch=64M,256M,256M" ;;
esac
"$REPO/scripts/run-vm.sh" "$k" "$g/kexec.cpio" "$serial" "$tmo" "${mem_mib}M" "$cmdline -- $args" 2> "$qlog" &
qemu=$!
# On any exit, stop the VM if it still runs. run-vm.sh's child is
# timeout(1), which runs QEMU in a process group of its own: note it once
# QEMU is up (run-vm.sh itself may die first, e.g. on a SIGTERM to us all).
vm_pg=''
stop_vm() {
	local c
	for c in $vm_pg $(cat "/proc/$qemu/task/$qemu/children" 2>/dev/null); do
		if kill -0 -- "-$c" 2>/dev/null; then kill -TERM -- "-$c" 2>/dev/null; fi
	done
	if kill -0 "$qemu" 2>/dev/null; then kill -TERM "$qemu" 2>/dev/null; fi
	return 0
}
trap stop_vm EXIT
while [ ! -f "$serial" ]; do
	if ! kill -0 "$qemu" 2>/dev/null; then
		[ -f "$serial" ] && break
		rc=0
		wait "$qemu" || rc=$?
		cat "$qlog" >&2
		die "QEMU did not start (exit status $rc)"
	fi
	sleep 0.1
done
vm_pg=$(cat "/proc/$qemu/task/$qemu/children" 2>/dev/null) || vm_pg=''

# Follow the serial log; note the host time of the lines that matter.
boots=0 t_reboot='' t_kexec='' t_boot2='' t_restored='' t_verified=''
preserved='' preserve_ms='' verified='' stage2_exit='' kerr=0 panic='' guest_err='' ram_back='' ram_pool=''
dev_bdf='' dev_preserved='' dev_restored='' dev_restore_ms='' dev_ok='' kept_dma='' switch_ns=''
tl_rows=() tl_err=''
show() { printf '           %s\n' "$1"; }
while IFS= read -r line; do
	line=${line%$'\r'}
	[ "${V:-0}" = 1 ] && show "$line"
	case $line in
	*"] Linux version "*)
		boots=$((boots + 1))
		[ $boots -eq 2 ] && { now; t_boot2=$NOW; }
		w=${line#*] Linux version }
		stage "$([ $boots -eq 1 ] && echo boot || echo restore)" "kernel $boots: Linux ${w%% *}"
		;;
	"DEMO: stage 1:"*) stage boot "${line#DEMO: }" ;;
	"DEMO: filled "* | "DEMO: VM state: "* | "DEMO: huge page pool: "*) stage preserve "${line#DEMO: }" ;;
	"DEMO: preserved "*)
		[[ $line =~ ^DEMO:\ preserved\ [0-9]+\ fds\ \(([0-9]+)\ bytes\)\ in\ ([0-9]+)\ ms ]] &&
			preserved=${BASH_REMATCH[1]} preserve_ms=${BASH_REMATCH[2]}
		[[ $line == *", token "*" device "* ]] && dev_preserved=1
		stage preserve "${line#DEMO: }"
		;;
	"DEMO: holder "*) stage preserve "${line#DEMO: }" ;;
	"DEMO: device OK: "*)
		dev_ok=1
		stage verify "${line#DEMO: }"
		;;
	"DEMO: device DMA during the kexec landed: "*)
		kept_dma=1
		stage verify "${line#DEMO: }"
		;;
	"DEMO: device "*" kept running; the kernel: "*)
		[[ $line =~ switched\ from\ the\ adopted\ translation\ to\ domain\ [0-9]+\ in\ ([0-9]+)\ ns ]] &&
			switch_ns=${BASH_REMATCH[1]}
		stage restore "${line#DEMO: }"
		;;
	"DEMO: device "*)
		[[ $line =~ ^DEMO:\ device\ ([0-9a-f:.]+)\  ]] && dev_bdf=${BASH_REMATCH[1]}
		stage "$([ -z "$t_reboot" ] && echo preserve || echo restore)" "${line#DEMO: }"
		;;
	"DEMO: reboot")
		now
		t_reboot=$NOW
		stage kexec "the VM host handed over; blackout starts"
		;;
	*"kexec_core: Starting new kernel"*)
		now
		t_kexec=$NOW
		stage kexec "${line#*] }"
		;;
	*"] KHO: "* | *"] luo: "*) [ "${V:-0}" = 1 ] || show "${line#*] }" ;;
	"DEMO: stage 2:"*) stage restore "${line#DEMO: }" ;;
	"DEMO: restored "*)
		now
		t_restored=$NOW
		[[ $line =~ ,\ device\ .*\ bound\ and\ mapped\ in\ ([0-9]+)\ ms ]] &&
			dev_restored=1 dev_restore_ms=${BASH_REMATCH[1]}
		stage restore "${line#DEMO: }"
		;;
	"DEMO: verified "*)
		now
		t_verified=$NOW
		[[ $line =~ ^DEMO:\ verified\ ([0-9]+)\ bytes\ OK ]] && verified=${BASH_REMATCH[1]}
		stage verify "${line#DEMO: }"
		;;
	"DEMO: guest RAM is "*)
		# The kind of file guest RAM came back as, checked by the VM host,
		# and the huge page pool of the new kernel.
		ram_back=${line#DEMO: guest RAM is }
		[[ $ram_back == *"; "* ]] && ram_pool=${ram_back#*; }
		ram_back=${ram_back%%; *}
		stage verify "${line#DEMO: }"
		;;
	"DEMO: VM state OK"* | "DEMO: finished "* | "DEMO: report: "*) stage verify "${line#DEMO: }" ;;
	"DEMO: error: "* | "DEMO: MISMATCH"*)
		guest_err=${guest_err:-${line#DEMO: }}
		stage ERROR "${line#DEMO: }"
		;;
	# The kernel's timeline (the raw lines are in the serial log).
	"DEMO timeline: "*) ;;
	"DEMO breakdown: "*) tl_rows+=("${line#DEMO breakdown: }") ;;
	"DEMO timeline-error: "*) tl_err=${line#DEMO timeline-error: } ;;
	"DEMO: "*) show "$line" ;;
	"LUO-HARNESS: stage 2 exit "*) stage2_exit=${line##* } ;;
	"LUO-HARNESS: stage "*" start" | "LUO-HARNESS: stage "*" exit 0" | "LUO-HARNESS: done") ;;
	"LUO-HARNESS: "*) stage ERROR "${line#LUO-HARNESS: }" ;;
	"LUO-KMSG-ERR: "*)
		kerr=$((kerr + 1))
		[ "${V:-0}" = 1 ] || show "kernel error: ${line#LUO-KMSG-ERR: }"
		;;
	*"Kernel panic"* | *"] BUG: "* | *"] WARNING: "* | *"] Oops"*)
		[[ $line == *"Kernel panic"* ]] && panic=${line#*] }
		[ "${V:-0}" = 1 ] || show "${line#*] }"
		;;
	esac
done < <(tail -n +1 -s 0.1 -f --pid="$qemu" "$serial")
rc=0
wait "$qemu" || rc=$?
trap - EXIT

# Verdict: the guest verified every byte it had preserved, its stage 2
# exited 0, and the VM powered off by itself.
why=''
if [ $rc -eq 124 ]; then
	why="the VM did not finish within ${tmo}s (DEMO_TIMEOUT)"
elif [ $rc -ne 0 ]; then
	why="QEMU exited with status $rc"
	[ -s "$qlog" ] && why+=": $(tail -n 3 "$qlog" | tr '\n' ' ')(see $qlog)"
elif [ -n "$panic" ]; then
	why="the kernel panicked: $panic"
elif [ -n "$guest_err" ]; then
	why="the VM host reported: $guest_err"
elif [ -z "$t_reboot" ]; then
	why="the VM host never handed over (no 'DEMO: reboot' line)"
elif [ $boots -lt 2 ]; then
	why="the new kernel never booted"
elif [ -z "$verified" ]; then
	why="the new kernel never verified the memory"
elif [ "$verified" != "$preserved" ]; then
	why="verified $verified bytes, but $preserved were preserved"
elif [ -n "$hugetlb" ] && [[ $ram_back != "hugetlbfs, $page_name pages ("* ]]; then
	why="guest RAM was not seen back on hugetlbfs $page_name pages ('DEMO: guest RAM is ...': ${ram_back:-none})"
elif [ "$vfio" = 1 ] && [ -z "$dev_ok" ]; then
	why="the device's DMA through guest RAM was never verified"
elif [ "$vfio" = 1 ] && [ "$keep" = 1 ] && { [ -z "$kept_dma" ] || [ -z "$switch_ns" ]; }; then
	why="the device kept running, but its DMA during the kexec or its switch to the new kernel's IOMMU domain was not seen"
elif [ "$stage2_exit" != 0 ]; then
	why="the VM host exited with status ${stage2_exit:-?} after verifying"
fi

echo
echo "Summary (LUO=$v, SIZE=$size_arg$([ -n "$size_note" ] && echo " rounded up to $(human "$size")")$([ "$vfio" = 1 ] && echo ", VFIO=1")$([ -n "$hugetlb" ] && echo ", HUGETLB=$hugetlb"), QEMU/TCG; serial log: $serial)"
if [ -n "$preserved" ]; then
	printf '  %-18s%s bytes in 2 memfds: guest RAM %s%s + VM state %s bytes%s\n' \
		preserved "$preserved" "$(human "$size")" "${ram_kind:- (shmem)}" "$((preserved - size))" \
		"$([ -n "$dev_preserved" ] && echo ", and the device ${dev_bdf:-?} (edu)")"
	printf '  %-18s%s ms (guest clock: create the session, preserve both memfds%s)\n' "time to preserve" "$preserve_ms" \
		"$([ -n "$dev_preserved" ] && echo " and the device")"
else
	printf '  %-18snothing\n' preserved
fi
span() {
	if [ -n "$2" ] && [ -n "$3" ]; then printf '    %-24s%6s s\n' "$1" "$(secs $(($3 - $2)))"; fi
}
if [ -n "$t_reboot" ] && [ -n "$t_verified" ]; then
	printf '  %-18s%s s (host clock: from "DEMO: reboot" to "DEMO: verified")\n' blackout \
		"$(secs $((t_verified - t_reboot)))"
	span "freeze, kexec" "$t_reboot" "$t_kexec"
	span "purgatory, kernel start" "$t_kexec" "$t_boot2"
	span "boot, retrieve" "$t_boot2" "$t_restored"
	if [ -n "$dev_restore_ms" ]; then
		printf '    %-24s%6s s (guest clock: bind to vfio-pci, retrieve, new iommufd, map guest RAM)\n' \
			"  of which the device" "$(secs $((dev_restore_ms / 10)))"
	fi
	span "verify every byte" "$t_restored" "$t_verified"
elif [ -n "$t_reboot" ]; then
	now
	printf '  %-18snot over: nothing verified %s s after "DEMO: reboot"\n' blackout "$(secs $((NOW - t_reboot)))"
fi
# The kernel's breakdown, from the VM host: a title ("kernel timeline (from
# PATH): ...") and its rows, already indented.
if [ ${#tl_rows[@]} -gt 0 ]; then
	printf '  %s\n' "${tl_rows[@]}"
elif [ -n "$tl_err" ]; then
	if [ "$v" = c ]; then
		printf '  %-18s%s\n' "kernel timeline" "none: the C LUO has no timeline ($tl_err)"
	else
		printf '  %-18s%s\n' "kernel timeline" "none: $tl_err"
	fi
fi
[ $kerr -eq 0 ] || printf '  %-18s%d (LUO-KMSG-ERR lines in the serial log)\n' "kernel errors" "$kerr"
if [ -n "$ram_back" ]; then
	printf '  %-18s%s\n' "guest RAM back as" "$ram_back"
	[ -z "$ram_pool" ] || printf '  %-18s%s (in the new kernel)\n' "huge page pool" "$ram_pool"
fi
if [ "$vfio" = 1 ]; then
	printf '  %-18s%s (edu) %s, DMA through guest RAM verified: %s\n' device "${dev_bdf:-0000:00:02.0}" \
		"$([ -n "$dev_restored" ] && echo retrieved || echo "not retrieved")" "$([ -n "$dev_ok" ] && echo yes || echo no)"
	if [ "$keep" = 1 ]; then
		printf '  %-18s%s; %s\n' "kept running" \
			"its DMA during the kexec landed in guest RAM: $([ -n "$kept_dma" ] && echo yes || echo no)" \
			"$([ -n "$switch_ns" ] && echo "switched to the new kernel's IOMMU domain with its context entry absent for $switch_ns ns" || echo "no switch seen")"
	fi
fi
if [ -z "$why" ]; then
	printf '  %-18syes: every byte came back\n' verified
	exit 0
fi
printf '  %-18sno: %s\n' verified "$why"
echo
if [ -s "$serial" ]; then
	echo "Last lines of the serial log ($serial):"
	tail -n 25 "$serial" | sed 's/^/  | /'
else
	echo "The serial log ($serial) is empty."
fi
exit 1
