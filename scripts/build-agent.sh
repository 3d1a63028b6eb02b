#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the userspace LUO tools of tools/liveupdate (luoctl, luod, luod-tests, luo-agent-tests,
# luo-vmm-demo) as static x86_64 binaries for the guest, into $BUILD/agent/
# (or OUTDIR).
# Idempotent: cargo rebuilds only what changed, and the binaries are copied
# only when they differ. Crates come from crates.io (pinned by Cargo.lock).
# Usage: build-agent.sh [OUTDIR]
. "$(dirname "$0")/lib.sh"

out=${1:-$BUILD/agent}
ws=$REPO/tools/liveupdate
target=x86_64-unknown-linux-gnu
bins=(luoctl luo-agent-tests luo-vmm-demo luod luod-tests)
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$BUILD/agent/target}
# Only the --target artifacts get these flags; host build scripts do not.
export RUSTFLAGS="-C target-feature=+crt-static"

command -v cargo >/dev/null || die "cargo not found"
mkdir -p "$out"
bin_args=()
for b in "${bins[@]}"; do bin_args+=(--bin "$b"); done
cargo build --quiet --locked --release --target "$target" -j "${CARGO_BUILD_JOBS:-$JOBS}" \
	--manifest-path "$ws/Cargo.toml" "${bin_args[@]}" ||
	die "cargo build of tools/liveupdate failed"

for b in "${bins[@]}"; do
	src=$CARGO_TARGET_DIR/$target/release/$b
	# A static binary has no program interpreter (ld.so).
	if LC_ALL=C readelf -lW "$src" 2>/dev/null | grep -q 'Requesting program interpreter'; then
		die "$b is dynamically linked"
	fi
	if ! cmp -s "$src" "$out/$b"; then
		cp "$src" "$out/$b.tmp" && mv "$out/$b.tmp" "$out/$b"
		log "agent: $out/$b"
	fi
done
