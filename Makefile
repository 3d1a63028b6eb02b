# SPDX-License-Identifier: GPL-2.0
# Rust Live Update Orchestrator: build, test and demo harness.
#   make check [LUO="c rust rust-kasan c-rust-memfd rust-c-memfd"] [SUITES="uapi kexec"]
#                               every test (or the suites named, globs allowed);
#                               ends with "N passed, M failed"
#   make quick                  lint, KUnit and the single-boot suites on rust
#   make lint                   rustfmt, clippy, kho's compile-fail tests, checkpatch,
#                               shellcheck, cargo
#   make demo [SIZE=256M] [LUO=rust|c] [VFIO=1]
#                               a live update in QEMU, shown step by step
#                               (VFIO=1: with a passthrough PCI device; LUO=rust)
#   make kernel LUO=VARIANT      just build one kernel variant (scripts/lib.sh VARIANTS)
#   make bench                  time the C and the Rust LUO, print Rust/C ratios
#   make series                 the upstream patch series, in build/series
#                               (git format-patch against Linux 7.3.4)
#   make series-check           make it and check it: git am onto pristine,
#                               the tree it gives, checkpatch, and the bisect
#                               ledger has every prefix built (also in check)
#   make series-bisect [FIRST=N|auto]
#                               build every prefix (from N; auto: from the
#                               first the ledger lacks), update the ledger
#   make fuzz [SEED=1] [DURATION=60] [LUO=rust]
#                               the seeded ioctl fuzzer for longer; replays a seed

LUO ?= c rust rust-kasan c-rust-memfd rust-c-memfd
# Guest RAM the demo preserves across the kexec (K/M/G suffixes).
SIZE ?= 256M
export BUILD ?= $(CURDIR)/build
export SIZE

# Suites to run (names or globs of scripts/suites.toml); empty: all.
SUITES ?=
# Parallel jobs of the check schedule: a kernel build takes both CPUs and a
# TCG VM about one, so two jobs: one VM beside a build, two VMs after.
CHECK_JOBS ?= 2
export SUITES

.PHONY: check quick lint demo bench fuzz deps prepare kernel clean series series-check series-bisect

# The schedule is generated from scripts/suites.toml (scripts/harness.py):
# one make target per run, depending on its kernel, initramfs and manifest
# entry, so a second make check reruns only what changed (and what failed).
# The kernels build in the background beside it, one after the other
# (harness.py builds; its own output in build/logs/builds.log). Runs and the
# builder share CHECK_JOBS CPU slots (harness.py cpu_slot); make runs one
# job more, for the stamp that waits for a build.
SCHEDULE = rm -rf $(BUILD)/chain && mkdir -p $(BUILD)/chain $(BUILD)/logs && \
	{ CHECK_JOBS=$(CHECK_JOBS) scripts/harness.py builds > $(BUILD)/logs/builds.log 2>&1 & b=$$!; } && \
	CHECK_JOBS=$(CHECK_JOBS) $(MAKE) --no-print-directory -k -j$$(($(CHECK_JOBS) + 1)) -O \
		-f $(BUILD)/check.mk all; s=$$?; \
	wait $$b; scripts/harness.py summary --make-status $$s

check: prepare
	@scripts/harness.py gen-make --variants "$(LUO)" --suites "$(SUITES)" -o $(BUILD)/check.mk
	@$(SCHEDULE)

# make quick: KUnit and every single-boot suite on the rust variant (which
# builds its kernel), then lint (its clippy build starts from that kernel's);
# it fails if either does.
quick: prepare
	@scripts/harness.py gen-make --quick --suites "$(SUITES)" -o $(BUILD)/check.mk
	@$(SCHEDULE); rc=$$?; scripts/lint.sh && exit $$rc

lint: prepare
	@scripts/lint.sh

# The demo runs one variant: rust unless LUO is given (make demo LUO=c).
# VFIO=1 adds a passthrough edu PCI device, preserved next to guest RAM.
demo:
	@$(if $(filter file,$(origin LUO)),,LUO='$(LUO)') VFIO='$(VFIO)' scripts/demo.sh

bench:
	@scripts/bench.sh

# The series is made from the prepared tree (our files and patches/ over the
# pristine one), cut as series/series.toml says.
series: prepare
	@scripts/series.py make

series-check: prepare
	@scripts/series.py check

# Every prefix of the series built on the rust config (LUO=c for the c one):
# one build directory, incremental, about 22 minutes, too slow for make
# check, which reads what it recorded instead (series/bisect.tsv, rust only).
# FIRST=N starts at prefix N (from the previous run's build if there is one);
# FIRST=auto at the first prefix the ledger lacks.
series-bisect: prepare
	@scripts/series-bisect.sh $(if $(filter file,$(origin LUO)),rust,$(LUO)) $(FIRST)

# make fuzz [SEED=1] [DURATION=60] [OPS=100000000] [THREADS=4] [LUO=rust|c|rust-kasan]:
# luo_rs_fuzz in random mode in one VM, for DURATION seconds or OPS operations;
# a failure prints "# replay: ..." and the failing thread's last operations.
# Serial log: build/logs/fuzz-<variant>-<seed>.log
SEED ?= 1
DURATION ?= 60
OPS ?= 100000000
THREADS ?= 4
# After "--": init's words and the fuzzer's options (guest/init.c).
FUZZ_ARGS = test=luo_rs_fuzz stages=1 --mode=random --seed=$(SEED) --ops=$(OPS) \
	--threads=$(THREADS) --time=$(DURATION)

# The warning the fuzzer causes on purpose (a PRESERVE_FD reply that faults),
# as the fuzz1 suite allows it (scripts/suites.toml).
FUZZ_ALLOW = fuzz_seed_$(SEED)_no_unexpected_errno=luo: The file was successfully preserved, but response to user failed

fuzz: prepare
	@v=$(if $(filter file,$(origin LUO)),rust,$(LUO)); g=$(BUILD)/guest-$$v; \
	log=$(BUILD)/logs/fuzz-$$v-$(SEED).log; \
	extra=$$(bash -c '. scripts/lib.sh && variant_cmdline "$$0"' $$v); \
	scripts/build-kernel.sh $$v && scripts/build-guest.sh $$v && \
	scripts/mkinitramfs.sh $$g/single.cpio $$g && \
	$$g/tests/luo_rs_fuzz --list --mode=random --seed=$(SEED) > $$g/fuzz-$(SEED).list && \
	{ scripts/run-vm.sh $(BUILD)/obj-$$v/arch/x86/boot/bzImage $$g/single.cpio $$log \
		$$(( $(DURATION) * 3 + 300 )) 2G "kunit.enable=0 console_msg_format=syslog $$extra -- $(FUZZ_ARGS)" || true; } && \
	echo "serial log: $$log" && scripts/verdict.py --allow "$(FUZZ_ALLOW)" ktap $$log $$v:fuzz $$g/fuzz-$(SEED).list

deps:
	@scripts/deps.sh

prepare: deps
	@scripts/prepare-tree.sh

kernel: prepare
	@for v in $(LUO); do scripts/build-kernel.sh $$v || exit 1; done

clean:
	rm -rf $(BUILD)
