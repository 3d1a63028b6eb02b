#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# `make check`: build and run every test, one line per case:
#   ok <variant>:<suite>:<case>     or     not ok <variant>:<suite>:<case> # why
# and finally "N passed, M failed". Exit status 1 if anything failed.
# Usage: check.sh VARIANT...   (see VARIANTS in scripts/lib.sh; default c)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/luod-suites.sh"

variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(c)
results=$BUILD/results.txt
# Guest memory: KHO reserves scratch areas of twice the boot-time reservations
# (kernel, initramfs); with nested initramfs for kexec chains, 1G is too tight.
VM_MEM=${VM_MEM:-2G}
# A VM that times out runs once more (scripts/run-vm.sh); noted() reports it.
export LUO_VM_RETRY=1
# noted SERIAL: a "# retried" line if run-vm.sh had to run that VM twice.
noted() {
	[ ! -f "$1.timeout" ] || report "# retried after a VM timeout: $1 (first log: $1.timeout)"
}
mkdir -p "$BUILD"
: > "$results"

report() { # report LINE...: print and record verdict lines
	local l
	for l in "$@"; do
		echo "$l"
		echo "$l" >> "$results"
	done
}

# vm_timeout VARIANT SECONDS: a VM timeout scaled for the variant's kernel
# (KASAN, UBSAN, lockdep and debugobjects make rust-kasan boots slower).
vm_timeout() {
	case $1 in
	rust-kasan) echo $(( $2 * 3 )) ;;
	*) echo "$2" ;;
	esac
}

# Kernel messages on the serial console carry their level ("<3>[ 1.2] ..."),
# so the verdict sees errors and LUO rejections wherever they were printed,
# the reboot path included.
KMSG_FMT=console_msg_format=syslog

# timed_out RC: did run-vm.sh's timeout stop the VM (124, or 137 when it had
# to kill QEMU)?
timed_out() { [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; }

# vm_case VARIANT SUITE CASE INITRD STAGES TIMEOUT MODE [EXTRA]
#   MODE is "kselftest:SOURCE", "ktap:LISTFILE" (case names, one a line) or "stages"
vm_case() {
	local v=$1 suite=$2 case=$3 initrd=$4 stages=$5 tmo=$6 mode=$7 extra=${8:-}
	local kernel serial out rc=0
	tmo=$(vm_timeout "$v" "$tmo")
	kernel=$(obj_dir "$v")/arch/x86/boot/bzImage
	serial=$LOGS/$v/$suite-$case.log
	"$REPO/scripts/run-vm.sh" "$kernel" "$initrd" "$serial" "$tmo" "$VM_MEM" \
		"kunit.enable=0 luo.test=$case luo.stages=$stages $KMSG_FMT $extra $(variant_cmdline "$v")" || rc=$?
	noted "$serial"
	if [ "$mode" = stages ]; then
		out=$("$REPO/scripts/verdict.py" stages "$serial" "$v:$suite" "$case" "$stages") || true
	elif [[ $mode == ktap:* ]]; then
		out=$("$REPO/scripts/verdict.py" ktap "$serial" "$v:$suite" "${mode#ktap:}") || true
	else
		out=$("$REPO/scripts/verdict.py" kselftest "$serial" "$v:$suite" "${mode#kselftest:}") || true
	fi
	timed_out "$rc" && out=$(echo "$out" | sed 's/^ok \(.*\)$/not ok \1 # VM timed out/; s/^\(not ok .*\)$/\1 (VM timed out after '"$tmo"'s)/')
	[ -n "$out" ] || out="not ok $v:$suite:$case # no verdict (verdict.py printed nothing)"
	mapfile -t lines <<< "$out"
	report "${lines[@]}"
	if grep -q '^not ok' <<< "$out"; then
		echo "#   serial log: $serial"
	fi
}

# build_variant VARIANT: the kernel, the guest programs and the agent of one
# variant. Prints "not ok" verdict lines (not recorded) for what failed.
build_variant() {
	local v=$1 g=$BUILD/guest-$1
	if ! "$REPO/scripts/build-kernel.sh" "$v"; then
		echo "not ok $v:build:kernel # see the messages above"
	elif ! "$REPO/scripts/build-guest.sh" "$v"; then
		echo "not ok $v:build:guest # see the messages above"
	elif ! "$REPO/scripts/build-agent.sh" "$g/tests"; then
		echo "not ok $v:build:agent # see the messages above"
	fi
}

# Scheduling. The first variant's kernel builds in the foreground. The other
# variants' kernels then build one after another in one background queue
# (most of them start from a copy of an earlier build, see base_variant),
# while the tests run as jobs: one per variant, and the interop matrix once
# the c and rust kernels exist. A job waits for the builds it needs. While
# the queue builds, one job runs at a time (a build takes both CPUs); after,
# two (a TCG VM mostly keeps one CPU busy). Each job writes its own results
# file and message log; the output shows them in job order, the running head
# job's as they come, the others' when their turn comes.

# build_queue VARIANT...: build each, in order; $LOGS/build-V.rc says how it
# ended (0: built), $LOGS/build-queue.done that the queue is finished.
# (Run in a background subshell: the trap marks the queue finished however
# it ends, so that nothing waits for it forever.)
build_queue() {
	local v rc
	trap 'touch "$LOGS/build-queue.done"' EXIT
	for v in "$@"; do
		rc=0
		build_variant "$v" > "$LOGS/build-$v.log" 2>&1 || rc=$?
		if grep -q '^not ok ' "$LOGS/build-$v.log"; then rc=1; fi
		set_rc "$LOGS/build-$v.rc" "$rc"
	done
}

# set_rc FILE RC: write a status file whole (readers poll for it).
set_rc() { echo "$2" > "$1.tmp" && mv "$1.tmp" "$1"; }

# wait_build VARIANT: wait for its build; 0 if it built.
wait_build() {
	local f=$LOGS/build-$1.rc
	while [ ! -f "$f" ]; do
		if [ -f "$LOGS/build-queue.done" ]; then
			[ -f "$f" ] || return 1
			break
		fi
		sleep 2
	done
	[ "$(cat "$f")" = 0 ]
}

# variant_job VARIANT: the build's messages and failures, then its tests.
variant_job() {
	local v=$1 fail
	if ! wait_build "$v"; then
		grep -v '^not ok ' "$LOGS/build-$v.log" >&2 || true
		fail=$(grep '^not ok ' "$LOGS/build-$v.log" || true)
		[ -n "$fail" ] || fail="not ok $v:build:pipeline # see $LOGS/build-$v.log"
		mapfile -t lines <<< "$fail"
		report "${lines[@]}"
		return 0
	fi
	[ ! -f "$LOGS/build-$v.log" ] || grep -v '^not ok ' "$LOGS/build-$v.log" >&2 || true
	run_variant "$v"
}

# interop_job: the interop matrix (the C-vs-Rust fuzz-diff comparison reads
# the c and rust jobs' logs: it runs after every job, at the end).
interop_job() {
	if ! wait_build c || ! wait_build rust; then
		report "not ok interop:build # the c or the rust kernel did not build"
		return 0
	fi
	export GEN_INIT_CPIO
	GEN_INIT_CPIO=$(obj_dir c)/usr/gen_init_cpio
	log "running interop tests (C LUO <-> Rust LUO)"
	interop c rust
	interop rust c
}

# start_job NAME: run a job in the background (NAME is a variant or
# "interop"); $LOGS/job-NAME.rc says it ended. The job itself runs under
# set -e as the whole script used to (started with "&" and waited for, not
# as "( ... ) || rc=$?", which would turn set -e off inside it): a command
# that fails stops the job, recorded as "not ok NAME:harness".
start_job() {
	local name=$1 out=$LOGS/job-$1.out
	rm -f "$LOGS/job-$name.rc"
	{
		rc=0
		(
			results=$BUILD/results-$name.txt
			: > "$results"
			if [ "$name" = interop ]; then interop_job; else variant_job "$name"; fi
		) &
		wait $! || rc=$?
		if [ "$rc" -ne 0 ]; then
			echo "not ok $name:harness # the job exited $rc (see $out)" |
				tee -a "$BUILD/results-$name.txt"
		fi
		set_rc "$LOGS/job-$name.rc" "$rc"
	} > "$out" 2>&1 &
}

# run_jobs NAME...: run the jobs, at most lanes() at a time, printing their
# output in order; then append their results to $results in the same order.
lanes() { if [ -f "$LOGS/build-queue.done" ]; then echo 2; else echo 1; fi; }
run_jobs() {
	local names=("$@") next=0 head=0 running=0 shown=0 size i out
	while [ "$head" -lt ${#names[@]} ]; do
		while [ "$next" -lt ${#names[@]} ] && [ "$running" -lt "$(lanes)" ]; do
			start_job "${names[$next]}"
			next=$((next + 1))
			running=$((running + 1))
		done
		sleep 2
		running=0
		for ((i = head; i < next; i++)); do
			[ -f "$LOGS/job-${names[$i]}.rc" ] || running=$((running + 1))
		done
		# The head job's new output; the next job's when the head is done.
		while [ "$head" -lt "$next" ]; do
			out=$LOGS/job-${names[$head]}.out
			size=$(stat -c %s "$out" 2>/dev/null || echo 0)
			if [ "$size" -gt "$shown" ]; then
				head -c "$size" "$out" | tail -c +$((shown + 1))
				shown=$size
			fi
			[ -f "$LOGS/job-${names[$head]}.rc" ] || break
			[ "$(stat -c %s "$out")" -eq "$shown" ] || continue
			cat "$BUILD/results-${names[$head]}.txt" >> "$results"
			head=$((head + 1))
			shown=0
		done
	done
}

run_variant() {
	local v=$1 g
	g=$BUILD/guest-$v
	local k
	k=$(obj_dir "$v")/arch/x86/boot/bzImage
	export GEN_INIT_CPIO
	GEN_INIT_CPIO=$(obj_dir "$v")/usr/gen_init_cpio
	"$REPO/scripts/mkinitramfs.sh" "$g/single.cpio" "$g"
	"$REPO/scripts/mkinitramfs.sh" "$g/kexec.cpio" "$g" "$k"

	log "running LUO=$v tests under QEMU (logs: $LOGS/$v/)"
	case $v in
	rust-kasan) sanitizer_suites "$v"; return ;;
	c-rust-memfd|rust-c-memfd) mixed_memfd_suites "$v"; return ;;
	esac
	vm_case "$v" liveupdate liveupdate "$g/single.cpio" 1 300 \
		"kselftest:$SRC/tools/testing/selftests/liveupdate/liveupdate.c"
	vm_case "$v" uapi luo_rs_uapi "$g/single.cpio" 1 300 \
		"kselftest:$SRC/tools/testing/selftests/liveupdate/luo_rs_uapi.c"
	local t
	for t in luo_kexec_simple luo_multi_session luo_stress_files luo_stress_sessions; do
		vm_case "$v" kexec "$t" "$g/kexec.cpio" 2 300 stages
	done
	"$g/tests/luo_rs_kexec" --list > "$g/luo_rs_kexec.list"
	"$g/tests/luo_rs_chain" --list > "$g/luo_rs_chain.list"
	"$REPO/scripts/mkinitramfs.sh" "$g/chain.cpio" "$g" "$k" "$k"
	vm_case "$v" kexec luo_rs_kexec "$g/kexec.cpio" 2 300 "ktap:$g/luo_rs_kexec.list"
	# 3G for the chain: KHO's default scratch (kho_scratch 200%) is twice the
	# boot-time reservations for lowmem, and twice those *plus the lowmem
	# scratch itself* for node 0, in one contiguous block. With the chain's
	# 80 MiB initramfs that block is ~870 MiB, which 2G cannot always hold
	# once KASLR places the kernel mid-memory ("KHO: Failed to reserve nid 0
	# scratch buffer", seen in CI; ~9% of boots by the memblock=debug sizes).
	# With 3G the largest free block is always big enough.
	VM_MEM=3G vm_case "$v" chain luo_rs_chain "$g/chain.cpio" 3 300 "ktap:$g/luo_rs_chain.list"
	# The userspace crate against the real kernel: single boot and across a kexec.
	"$g/tests/luo-agent-tests" --list > "$g/agent-single.list"
	{ "$g/tests/luo-agent-tests" -s 1 --list; "$g/tests/luo-agent-tests" -s 2 --list; } |
		sort -u > "$g/agent-kexec.list"
	vm_case "$v" agent luo-agent-tests "$g/single.cpio" 1 300 "ktap:$g/agent-single.list"
	vm_case "$v" agent-kexec luo-agent-tests "$g/kexec.cpio" 2 300 "ktap:$g/agent-kexec.list"
	# luod (tools/liveupdate/luod), the broker VMMs talk to, over its socket.
	luod_suites "$v"
	# Threads racing on sessions, the device fd, FLBs and the reboot itself.
	ktap_case "$v" race luo_rs_race
	# FLB data, big memfds with holes and seals, FLB finish after the last file.
	lifecycle_case "$v"
	memfd_suites "$v"
	# luo_rs_fuzz: random, kexec and (C and Rust) diff mode, one suite per seed.
	fuzz_cases "$v"
	[ "$v" != c ] || expected_panic_case
	if is_rust_luo "$v"; then
		rust_luo_suites "$v"
		# What this kernel writes, the next one reads: 100,000 sessions and a
		# 100,000-file session (not on rust-kasan: minutes under KASAN).
		ktap_case "$v" capacity luo_rs_capacity 600
	fi
}

# memfd_suites VARIANT: the memfd handler across a kexec, whichever is built
# (luo_rs_memfd: contents, size, seals, position, holes, fallocated pages,
# writes after PRESERVE_FD). With the Rust handler (mm/memfd_luo_rs.rs) also
# eight corrupt memfd handovers refused with an errno, and on rust a 16 GiB
# memfd with 64 MiB written, preserved in a 2 GiB VM without filling its holes.
memfd_suites() {
	local v=$1
	ktap_case "$v" memfd luo_rs_memfd
	has_rust_memfd "$v" || return 0
	ktap_case "$v" memfd-corrupt luo_rs_memfd_corrupt
	[ "$v" = rust-kasan ] || ktap_case "$v" memfd-sparse luo_rs_memfd_sparse
}

# mixed_memfd_suites VARIANT: the C LUO with the Rust memfd handler
# (c-rust-memfd) and the Rust LUO with the C one (rust-c-memfd), so that all
# four LUO x memfd combinations run the same memfd tests: upstream's
# (liveupdate.c and the four kexec tests, all preserving memfds), luo_rs_memfd
# and luo_rs_lifecycle, and with the Rust handler luo_rs_memfd_sparse.
mixed_memfd_suites() {
	local v=$1 g=$BUILD/guest-$1 t
	# Upstream's single-boot kselftest on one of the two (its memfd cases
	# run under both LUOs in c and rust already; the time budget).
	if [ "$v" = c-rust-memfd ]; then
		vm_case "$v" liveupdate liveupdate "$g/single.cpio" 1 300 \
			"kselftest:$SRC/tools/testing/selftests/liveupdate/liveupdate.c"
	fi
	for t in luo_kexec_simple luo_multi_session luo_stress_files luo_stress_sessions; do
		vm_case "$v" kexec "$t" "$g/kexec.cpio" 2 300 stages
	done
	lifecycle_case "$v"
	ktap_case "$v" memfd luo_rs_memfd
	if has_rust_memfd "$v"; then ktap_case "$v" memfd-sparse luo_rs_memfd_sparse; fi
	# A passthrough device (QEMU's edu behind an emulated IOMMU) and its
	# guest's RAM across a kexec, with the Rust vfio-pci handler: under the C
	# LUO on c-rust-memfd, under the Rust LUO on rust-c-memfd (with the
	# handler's KUnit case). Every variant but rust-kasan builds PCI and vfio
	# (config/vfio.config, 40% more objects), so that each one after c
	# starts from a copy of an earlier build and recompiles little (see
	# base_variant); with PCI on these two only, PCI=y rebuilt nearly all of
	# c-rust-memfd's copy of the rust build.
	if has_vfio_rust "$v"; then vfio_suites "$v"; fi
	if [ "$v" = rust-c-memfd ]; then kunit_case "$v"; fi
}

# vfio_suites VARIANT: the vfio-pci live update handler
# (drivers/vfio/pci/vfio_pci_luo_rs.rs) on the q35 machine of run-vm.sh
# LUO_VM_VFIO=1 (emulated Intel IOMMU, four edu devices): luo_rs_vfio
# (refusals, EBUSY, a failed freeze and EIO, retrieve, FINISH rules, and a
# 64 MiB guest-RAM memfd mapped into a new IOAS for an edu DMA after the
# kexec) and, with the Rust test handlers (CONFIG_LIVEUPDATE_RUST_TEST),
# luo_rs_vfio_corrupt (hostile vfio-pci-v1 handovers refused with an errno).
# On rust-c-memfd also demo-vfio: make demo VFIO=1's VMM (luo-vmm-demo, 16 MiB of
# guest RAM and edu 0000:00:02.0): its stage 2 exits 0 only if every byte and
# the device's DMA through the retrieved guest RAM check out.
vfio_suites() {
	local v=$1 g=$BUILD/guest-$1
	LUO_VM_VFIO=1 ktap_case "$v" vfio luo_rs_vfio
	if is_rust_luo "$v"; then LUO_VM_VFIO=1 ktap_case "$v" vfio-corrupt luo_rs_vfio_corrupt; fi
	if [ "$v" = rust-c-memfd ]; then
		LUO_VM_VFIO=1 vm_case "$v" demo-vfio luo-vmm-demo "$g/kexec.cpio" 2 300 stages \
			"luo.demo_vfio=1 luo.demo_size=16M"
	fi
}

# lifecycle_case VARIANT: luo_rs_lifecycle; with luo.lifecycle=small (a
# 16 MiB lc-big and no lc-511) everywhere but on rust: the 767 MiB of those
# two take 30-60 s of a VM (lc-511 alone 13 s of stage 1 on rust, and
# writing it with pwrite() instead of page faults saved nothing), and the
# interop runs write and check them across the C and the Rust LUO and memfd
# handlers in both directions.
lifecycle_case() {
	local v=$1 g=$BUILD/guest-$1 small=
	[ "$v" = rust ] || small=small
	"$g/tests/luo_rs_lifecycle" --list $small > "$g/luo_rs_lifecycle.list"
	vm_case "$v" lifecycle luo_rs_lifecycle "$g/kexec.cpio" 2 300 \
		"ktap:$g/luo_rs_lifecycle.list" "${small:+luo.lifecycle=small}"
}

# ktap_case VARIANT SUITE TEST [TIMEOUT [EXTRA]]: a two-stage (kexec) test
# whose cases are listed by "TEST --list".
ktap_case() {
	local v=$1 suite=$2 t=$3 tmo=${4:-300} extra=${5:-} g=$BUILD/guest-$1
	"$g/tests/$t" --list > "$g/$t.list"
	vm_case "$v" "$suite" "$t" "$g/kexec.cpio" 2 "$tmo" "ktap:$g/$t.list" "$extra"
}

# rust_luo_suites VARIANT: the suites only a Rust LUO variant has, after
# run_variant built its guest: KUnit, and through the Rust test file handler
# (CONFIG_LIVEUPDATE_RUST_TEST) failure paths, fixes of upstream bugs,
# corrupt handovers and the hardening regressions.
rust_luo_suites() {
	local v=$1 g=$BUILD/guest-$1 m
	kunit_case "$v"
	# A failed freeze fails the reboot and rolls back; a failed retrieve is sticky.
	ktap_case "$v" faults luo_rs_faults
	# Deliberate fixes of upstream bugs (on the C LUO the next kernel panics).
	ktap_case "$v" fixes luo_rs_fixes
	# get_id of a Rust handler, a failed reboot racing ioctls and a close,
	# retrieve generations.
	ktap_case "$v" hardening luo_rs_hardening
	# A failed first open of /dev/liveupdate stays failed.
	ktap_case "$v" sticky luo_rs_sticky
	# A session closed while the reboot serializes is not counted in the handover.
	ktap_case "$v" reboot-race luo_rs_reboot_race
	# A file whose handler is gone in the next kernel is dropped, the rest kept.
	ktap_case "$v" unknown luo_rs_unknown 300 luo.expect_unknown=luo-rs-test-v1
	# Deliberately corrupt handovers: the next kernel boots and keeps what validates.
	local modes=$CORRUPT_MODES
	[ "$v" = rust-kasan ] && modes=$KASAN_CORRUPT_MODES
	for m in $modes; do
		"$g/tests/luo_rs_corrupt" --list "$m" > "$g/luo_rs_corrupt-$m.list"
		vm_case "$v" "corrupt$m" luo_rs_corrupt "$g/kexec.cpio" 2 300 \
			"ktap:$g/luo_rs_corrupt-$m.list" "luo.corrupt=$m"
	done
}

# The corruption modes of luo_rs_corrupt (kernel/liveupdate/test_handler.rs).
CORRUPT_MODES="1 2 3 4 5 6 7 8 9 10 11 12"
# On rust-kasan, one mode per parsing stage, to keep a clean-clone make check
# under 35 minutes: a wrong root (1), a looping chain (3: a page restored
# twice) and a file count beyond its list (9). The overflow modes (7, 8, 11)
# exercise compiler-inserted checks that are the same on rust, which runs all
# twelve.
KASAN_CORRUPT_MODES="1 3 9"

# sanitizer_suites VARIANT: what runs on rust-kasan (KASAN, UBSAN, lockdep,
# debugobjects): the Rust LUO's uAPI and kexec semantics, the lifecycle
# cases, the races, and every suite of rust_luo_suites (with the corruption
# modes of KASAN_CORRUPT_MODES). Upstream's kselftests, the chain, agent and
# capacity tests run on rust only: each boot is 2-3 times slower here, and
# they exercise no Rust LUO path that these do not.
sanitizer_suites() {
	local v=$1 g=$BUILD/guest-$1
	vm_case "$v" uapi luo_rs_uapi "$g/single.cpio" 1 300 \
		"kselftest:$SRC/tools/testing/selftests/liveupdate/luo_rs_uapi.c"
	vm_case "$v" kexec luo_kexec_simple "$g/kexec.cpio" 2 300 stages
	ktap_case "$v" kexec luo_rs_kexec
	lifecycle_case "$v"
	memfd_suites "$v"
	ktap_case "$v" race luo_rs_race
	fuzz_cases "$v"
	rust_luo_suites "$v"
}

# Host checks of the userspace crate (tools/liveupdate), against the uapi
# header exported by the first kernel built.
host_checks() {
	local v=$1 ws=$REPO/tools/liveupdate step name
	mkdir -p "$LOGS/host"
	# test-no-kernel: the library crate alone, as a VMM project would build
	# it, with no kernel build to find (the layout check against the uapi
	# header notes that it cannot run; "test" runs it).
	for step in "test:cargo test --locked" \
		"test-no-kernel:env -u LIVEUPDATE_UAPI_INCLUDE BUILD=/nonexistent cargo test --locked -p liveupdate" \
		"package:cargo package --locked --allow-dirty -p liveupdate" \
		"clippy:cargo clippy --locked --all-targets -- -D warnings" \
		"fmt:cargo fmt --check"; do
		name=${step%%:*}
		# shellcheck disable=SC2086
		if (cd "$ws" && LIVEUPDATE_UAPI_INCLUDE=$(obj_dir "$v")/usr/include \
			CARGO_TARGET_DIR=$BUILD/agent/target ${step#*:}) > "$LOGS/host/$name.log" 2>&1; then
			report "ok host:liveupdate-crate:$name"
		else
			report "not ok host:liveupdate-crate:$name # see $LOGS/host/$name.log"
		fi
	done
}

# KUnit suites of the Rust LUO (#[kunit_tests] in kernel/liveupdate/*.rs and
# rust/kernel/*.rs), run at boot in the VM.
kunit_case() {
	local v=$1 g=$BUILD/guest-$1 serial=$LOGS/$1/kunit.log out rc=0
	"$REPO/scripts/run-vm.sh" "$(obj_dir "$v")/arch/x86/boot/bzImage" "$g/single.cpio" "$serial" "$(vm_timeout "$v" 300)" "$VM_MEM" \
		"kunit.filter_glob=luo_rs* luo.test=none luo.stages=1 $KMSG_FMT $(variant_cmdline "$v")" || rc=$?
	noted "$serial"
	local srcs=("$SRC"/kernel/liveupdate/*.rs "$SRC/rust/kernel/kho/field.rs" "$SRC/rust/kernel/rbtree/intrusive.rs")
	if has_rust_memfd "$v"; then srcs+=("$SRC/mm/memfd_luo_rs.rs"); fi
	if has_vfio_rust "$v"; then srcs+=("$SRC/drivers/vfio/pci/vfio_pci_luo_rs.rs"); fi
	out=$("$REPO/scripts/verdict.py" kunit "$serial" "$v:kunit" "${srcs[@]}") || true
	timed_out "$rc" && out=$(echo "$out" | sed 's/^ok \(.*\)$/not ok \1 # VM timed out/')
	[ -n "$out" ] || out="not ok $v:kunit # no verdict (verdict.py printed nothing)"
	mapfile -t lines <<< "$out"
	report "${lines[@]}"
	if grep -q '^not ok' <<< "$out"; then echo "#   serial log: $serial"; fi
}

# The interop matrix: kexec from one variant's kernel into the other's (same
# handover ABI), with the guest programs of the first. Each test's stage 1
# runs on FROM, its stage 2 on TO: upstream's stress tests (multi-block
# session and file chains), luo_rs_kexec (uAPI semantics across
# the kexec, a 63-byte name), luo_rs_lifecycle (FLB data, memfds of 256 MiB
# with holes, seals and position, compared byte for byte) and luo_rs_fixes
# (the handover after a failed CREATE_SESSION; into the C LUO with
# luo.fixes_reader=c, where the C kernel is the oracle: it panics on an
# empty block), and the memfd handler's luo_rs_memfd (C memfd into Rust memfd
# and back: memfd-v2 is the same format) and luo_rs_memfd_sparse.
interop() {
	local from=$1 to=$2 g=$BUILD/guest-$1 p=interop:$1-to-$2
	local kf kt t list extra
	kf=$(obj_dir "$from")/arch/x86/boot/bzImage
	kt=$(obj_dir "$to")/arch/x86/boot/bzImage
	if [ ! -f "$kf" ] || [ ! -f "$kt" ]; then
		report "not ok $p:kernels # no kernel ($kf or $kt is missing)"
		return
	fi
	"$REPO/scripts/mkinitramfs.sh" "$g/to-$to.cpio" "$g" "$kt"
	for t in luo_stress_files luo_stress_sessions; do
		interop_run "$p" "$kf" "$g/to-$to.cpio" "$t" stages
	done
	local tests="luo_rs_kexec luo_rs_lifecycle luo_rs_fixes luo_rs_memfd"
	# A sparse memfd from the Rust memfd handler: the C reader gets the holes.
	if has_rust_memfd "$from"; then tests="$tests luo_rs_memfd_sparse"; fi
	for t in $tests; do
		# Lists of their own: the c and rust jobs may write $g/$t.list now.
		list=$g/interop-$t.list extra=
		if [ "$t" = luo_rs_fixes ] && [ "$to" = c ]; then
			list=$g/interop-$t-c.list extra=luo.fixes_reader=c
			"$g/tests/$t" --list c > "$list"
		else
			"$g/tests/$t" --list > "$list"
		fi
		interop_run "$p" "$kf" "$g/to-$to.cpio" "$t" "ktap:$list" "$extra"
	done
}

# interop_run PREFIX KERNEL INITRD TEST MODE [EXTRA]: one two-boot run of the
# interop matrix; MODE is "stages" or "ktap:LISTFILE".
interop_run() {
	local p=$1 k=$2 initrd=$3 t=$4 mode=$5 extra=${6:-} serial out rc=0
	serial=$LOGS/${p#interop:}-$t.log
	"$REPO/scripts/run-vm.sh" "$k" "$initrd" "$serial" 300 "$VM_MEM" \
		"kunit.enable=0 luo.test=$t luo.stages=2 $KMSG_FMT $extra" || rc=$?
	noted "$serial"
	if [ "$mode" = stages ]; then
		out=$("$REPO/scripts/verdict.py" stages "$serial" "$p" "$t" 2) || true
	else
		out=$("$REPO/scripts/verdict.py" ktap "$serial" "$p" "${mode#ktap:}") || true
	fi
	timed_out "$rc" && out=$(echo "$out" | sed 's/^ok \(.*\)$/not ok \1 # VM timed out/')
	[ -n "$out" ] || out="not ok $p:$t # no verdict (verdict.py printed nothing)"
	mapfile -t lines <<< "$out"
	report "${lines[@]}"
	if grep -q '^not ok' <<< "$out"; then echo "#   serial log: $serial"; fi
}

# expected_panic_case: the C LUO's own bug, measured rather than asserted.
# luo_rs_fixes' stage 1 on the C LUO (a CREATE_SESSION that fails with EEXIST
# when the session blocks are full leaves an empty block linked), then a kexec
# into the same C kernel, which must panic at boot on that block. The case
# passes only if it does.
expected_panic_case() {
	local v=c g=$BUILD/guest-c serial out rc=0
	serial=$LOGS/c/fixes-panic-luo_rs_fixes.log
	"$REPO/scripts/run-vm.sh" "$(obj_dir c)/arch/x86/boot/bzImage" "$g/kexec.cpio" "$serial" 120 "$VM_MEM" \
		"kunit.enable=0 luo.test=luo_rs_fixes luo.stages=2 $KMSG_FMT" || rc=$?
	noted "$serial"
	out=$("$REPO/scripts/verdict.py" panic "$serial" "$v:fixes-panic" next_kernel_panics \
		"The incoming tree failed to initialize properly") || true
	timed_out "$rc" && out="not ok $v:fixes-panic:next_kernel_panics # VM timed out"
	[ -n "$out" ] || out="not ok $v:fixes-panic:next_kernel_panics # no verdict"
	report "$out"
	if grep -q '^not ok' <<< "$out"; then echo "#   serial log: $serial"; fi
}

# The seeds of luo_rs_fuzz (tools/testing/selftests/liveupdate/luo_rs_fuzz.c),
# one suite per seed as for corruptN: random mode (one boot, 4 threads, 20000
# operations), kexec mode (random in both boots, stage 2 on the incoming
# sessions) and diff mode (one thread, deterministic; C and Rust must print
# the same outcome lines, see fuzz_diff_compare). make check runs a few seeds
# (its time budget); make fuzz SEED= DURATION= runs any seed for longer.
FUZZ_SEEDS="1"
FUZZ_KASAN_SEEDS="1"
FUZZ_KEXEC_SEEDS="1"
FUZZ_DIFF_SEEDS="1"

# fuzz_cases VARIANT: luo_rs_fuzz on one variant (after run_variant built its guest).
fuzz_cases() {
	local v=$1 g=$BUILD/guest-$1 s seeds=$FUZZ_SEEDS kexec_seeds=$FUZZ_KEXEC_SEEDS
	[ "$v" = rust-kasan ] && seeds=$FUZZ_KASAN_SEEDS
	# On c (upstream's C LUO) only the diff mode, which makes it the oracle
	# for the Rust LUO; fuzzing the C LUO itself is not this project's job
	# (and its two VMs were make check's time budget).
	[ "$v" = c ] && seeds= kexec_seeds=
	for s in $seeds; do
		"$g/tests/luo_rs_fuzz" --list random "$s" > "$g/luo_rs_fuzz-$s.list"
		vm_case "$v" "fuzz$s" luo_rs_fuzz "$g/single.cpio" 1 300 \
			"ktap:$g/luo_rs_fuzz-$s.list" "luo.fuzz_seed=$s"
	done
	for s in $kexec_seeds; do
		"$g/tests/luo_rs_fuzz" --list kexec "$s" > "$g/luo_rs_fuzz-kexec-$s.list"
		vm_case "$v" "fuzz-kexec$s" luo_rs_fuzz "$g/kexec.cpio" 2 300 \
			"ktap:$g/luo_rs_fuzz-kexec-$s.list" "luo.fuzz_seed=$s"
	done
	[ "$v" != rust-kasan ] || return 0
	for s in $FUZZ_DIFF_SEEDS; do
		"$g/tests/luo_rs_fuzz" --list diff "$s" > "$g/luo_rs_fuzz-diff-$s.list"
		vm_case "$v" "fuzz-diff$s" luo_rs_fuzz "$g/kexec.cpio" 2 300 \
			"ktap:$g/luo_rs_fuzz-diff-$s.list" "luo.fuzz_seed=$s luo.fuzz_diff=1"
	done
}

# fuzz_diff_compare SEED: the C and the Rust LUO printed the same "# diff:"
# outcome lines in fuzz-diffSEED. The digests (computed in the guests over
# both stages, immune to kernel messages cutting a console line) decide; the
# first differing line says where.
fuzz_diff_compare() {
	local seed=$1 lc=$LOGS/c/fuzz-diff$1-luo_rs_fuzz.log lr=$LOGS/rust/fuzz-diff$1-luo_rs_fuzz.log
	local dc dr first miss=
	dc=$(grep -a -o '# diff-digest: [0-9a-f]*' "$lc" 2>/dev/null | tail -n 1) || true
	dr=$(grep -a -o '# diff-digest: [0-9a-f]*' "$lr" 2>/dev/null | tail -n 1) || true
	if [ -n "$dc" ] && [ "$dc" = "$dr" ]; then
		report "ok fuzz-diff:c-vs-rust:seed$seed"
		return
	fi
	# Outcome lines without a kernel message glued to their end.
	first=$(awk 'NR == FNR { c[FNR] = $0; n = FNR; next }
		c[FNR] != $0 { print "c: " c[FNR] " | rust: " $0; bad = 1; exit }
		END { if (!bad && n != FNR) print "c: " n " lines | rust: " FNR " lines" }' \
		<(grep -a -o '# diff: .*' "$lc" 2>/dev/null | tr -d '\r' | sed -E 's/(<[0-9]+>)?\[ *[0-9]+\.[0-9]+\].*//') \
		<(grep -a -o '# diff: .*' "$lr" 2>/dev/null | tr -d '\r' | sed -E 's/(<[0-9]+>)?\[ *[0-9]+\.[0-9]+\].*//')) || true
	[ -n "$dc" ] || miss=c
	[ -n "$dr" ] || miss="${miss:+$miss and }rust"
	[ -z "$miss" ] || first="no digest from $miss (run incomplete)${first:+; $first}"
	report "not ok fuzz-diff:c-vs-rust:seed$seed # ${first:-digests differ: c ${dc#*: }, rust ${dr#*: }}"
	echo "#   serial logs: $lc $lr"
}

# check_counts: every suite of the variants that ran reported as many cases as
# scripts/expected-cases lists ("PREFIX COUNT", PREFIX as in "ok PREFIX:case"),
# so a suite or a case that vanishes is a failure.
check_counts() {
	local prefix want got ran=" ${variants[*]} "
	while read -r prefix want; do
		case $prefix in
		''|'#'*) continue ;;
		host:*) ;;
		interop:*|fuzz-diff:*) [[ $ran == *" c "* && $ran == *" rust "* ]] || continue ;;
		*) [[ $ran == *" ${prefix%%:*} "* ]] || continue ;;
		esac
		got=$(grep -cE "^(not )?ok $prefix:" "$results" || true)
		if [ "$got" != "$want" ]; then
			report "not ok check:cases:$prefix # $got cases, expected $want (scripts/expected-cases)"
		fi
	done < "$REPO/scripts/expected-cases"
	# A suite that is not in the list is an error too: the list must name it.
	for prefix in $(sed -nE 's/^(not )?ok ([^:]+:[^:]+):.*/\2/p' "$results" | grep -v '^check:' | sort -u); do
		grep -q "^$prefix " "$REPO/scripts/expected-cases" ||
			report "not ok check:cases:$prefix # not in scripts/expected-cases"
	done
}

start=$(date +%s)
"$REPO/scripts/deps.sh"
"$REPO/scripts/prepare-tree.sh"
mkdir -p "$LOGS"
rm -f "$LOGS"/build-*.rc "$LOGS"/build-*.log "$LOGS/build-queue.done" "$BUILD"/results-*.txt
# The first build in the foreground, its messages as they come (its job
# reports a failure).
vfail=$(build_variant "${variants[0]}")
if [ -n "$vfail" ]; then
	echo "$vfail" > "$LOGS/build-${variants[0]}.log"
	echo 1 > "$LOGS/build-${variants[0]}.rc"
else
	echo 0 > "$LOGS/build-${variants[0]}.rc"
	host_checks "${variants[0]}"
fi
# Background builds and VMs ignore SIGINT (no job control): on an interrupt
# or TERM, stop everything in the process group.
trap 'trap - INT TERM; kill -TERM 0 2>/dev/null; exit 130' INT TERM
build_queue "${variants[@]:1}" &
# The interop matrix needs only the c and rust kernels: it comes right after
# the later of their jobs, so that it runs beside rust-kasan's long job
# rather than alone at the end.
both=
if [[ " ${variants[*]} " == *" c "* && " ${variants[*]} " == *" rust "* ]]; then
	both=1
fi
job_names=()
interop_left=$both
for v in "${variants[@]}"; do
	job_names+=("$v")
	if [ -n "$interop_left" ] && [[ " ${job_names[*]} " == *" c "* && " ${job_names[*]} " == *" rust "* ]]; then
		job_names+=(interop)
		interop_left=
	fi
done
run_jobs "${job_names[@]}"
wait
if [ -n "$both" ]; then
	for s in $FUZZ_DIFF_SEEDS; do fuzz_diff_compare "$s"; done
fi

check_counts
passed=$(grep -c '^ok ' "$results" || true)
failed=$(grep -c '^not ok ' "$results" || true)
log "check took $(( $(date +%s) - start ))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
