# SPDX-License-Identifier: GPL-2.0
# Common settings for the harness scripts. Sourced, never run.
#
# Layout (all under $BUILD, which is ./build unless BUILD= says otherwise):
#   apt/            private apt state (sources.list, lists, cache)
#   debs/ -> cache  downloaded .deb files live in $CACHE (outside the clone)
#   toolchain/      rust-src extracted, libclang venv
#   src/pristine/   linux-source-7.3 as Debian ships it (never modified)
#   src/linux/      pristine + our overlay + patches/*.patch (hardlinked copy)
#   obj-c/ obj-rust/  kernel build directories, one per LUO variant
#   guest-<v>/      guest binaries and initramfs per variant
#   logs/           serial logs of every VM run

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
CACHE=${LUO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/luo-rs}
SRC_PRISTINE=$BUILD/src/pristine
SRC=$BUILD/src/linux
TOOLCHAIN=$BUILD/toolchain
LOGS=$BUILD/logs
JOBS=${JOBS:-$(nproc)}
KVER_SERIES=7.3

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Environment the kernel build needs for Rust (set by toolchain_env).
toolchain_env() {
	local rs
	rs=$(cat "$TOOLCHAIN/rust-lib-src" 2>/dev/null) || die "toolchain not installed: run scripts/deps.sh"
	export RUST_LIB_SRC=$rs
	export LIBCLANG_PATH
	LIBCLANG_PATH=$(cat "$TOOLCHAIN/libclang-path")
	export PATH="$HOME/.cargo/bin:$PATH"
}

obj_dir() { echo "$BUILD/obj-$1"; }

kmake() {
	local variant=$1; shift
	toolchain_env
	make -s -C "$SRC" O="$(obj_dir "$variant")" ARCH=x86_64 -j"$JOBS" \
		RUSTC=rustc BINDGEN=bindgen "$@"
}
