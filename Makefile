# SPDX-License-Identifier: GPL-2.0
# Rust Live Update Orchestrator: build, test and demo harness.
#   make check [LUO="c rust rust-kasan"]
#                               every test; ends with "N passed, M failed"
#   make demo [SIZE=256M] [LUO=rust|c]
#                               a live update in QEMU, shown step by step
#   make kernel LUO=c|rust|rust-kasan  just build one kernel variant
#   make bench                  time the C and the Rust LUO, print Rust/C ratios

LUO ?= c rust rust-kasan
# Guest RAM the demo preserves across the kexec (K/M/G suffixes).
SIZE ?= 256M
export BUILD ?= $(CURDIR)/build
export SIZE

.PHONY: check demo bench deps prepare kernel clean

check:
	@scripts/check.sh $(LUO)

# The demo runs one variant: rust unless LUO is given (make demo LUO=c).
demo:
	@$(if $(filter file,$(origin LUO)),,LUO='$(LUO)') scripts/demo.sh

bench:
	@scripts/bench.sh

deps:
	@scripts/deps.sh

prepare: deps
	@scripts/prepare-tree.sh

kernel: prepare
	@for v in $(LUO); do scripts/build-kernel.sh $$v || exit 1; done

clean:
	rm -rf $(BUILD)
