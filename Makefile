# SPDX-License-Identifier: GPL-2.0
# Rust Live Update Orchestrator: build, test and demo harness.
#   make check [LUO="c rust"]   every test; ends with "N passed, M failed"
#   make demo                   a live update in QEMU, shown step by step
#   make kernel LUO=c|rust      just build one kernel variant

LUO ?= c rust
export BUILD ?= $(CURDIR)/build

.PHONY: check demo deps prepare kernel clean

check:
	@scripts/check.sh $(LUO)

demo:
	@scripts/demo.sh

deps:
	@scripts/deps.sh

prepare: deps
	@scripts/prepare-tree.sh

kernel: prepare
	@for v in $(LUO); do scripts/build-kernel.sh $$v || exit 1; done

clean:
	rm -rf $(BUILD)
