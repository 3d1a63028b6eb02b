# SPDX-License-Identifier: GPL-2.0
# Common settings for the harness scripts. Sourced, never run.
#
# Layout (all under $BUILD, which is ./build unless BUILD= says otherwise):
#   apt/            private apt state (sources.list, lists, cache)
#   debs/ -> cache  downloaded .deb files live in $CACHE (outside the clone)
#   toolchain/      rust-src extracted, libclang venv
#   src/pristine/   linux-source-7.3 as Debian ships it (never modified)
#   src/linux/      pristine + our overlay + patches/*.patch (hardlinked copy)
#   obj-<variant>/  kernel build directories, one per variant
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

# Kernel variants: c (the C LUO), rust (our Rust LUO), rust-kasan (the Rust
# LUO built with LLVM=$LLVM_SUFFIX under KASAN, UBSAN, lockdep, debugobjects),
# and the two mixed memfd handler combinations: c-rust-memfd (the C LUO with
# the Rust memfd handler) and rust-c-memfd (the Rust LUO with the C one).
# c and rust have the C and the Rust memfd handler respectively. c-bench and
# rust-bench are c and rust on a production-like configuration
# (config/bench.config), for make bench.
VARIANTS="c rust rust-kasan c-rust-memfd rust-c-memfd c-bench rust-bench"
# Debian's clang/lld/llvm used for the LLVM=1 variants (clang-19, ld.lld-19, ...).
LLVM_SUFFIX=-19
LLVM_PREFIX=/usr/lib/llvm-${LLVM_SUFFIX#-}

# is_rust_luo VARIANT: does this variant build the Rust LUO?
is_rust_luo() { case $1 in rust|rust-kasan|rust-c-memfd|rust-bench) return 0 ;; *) return 1 ;; esac; }
# has_rust_memfd VARIANT: does this variant build the Rust memfd handler
# (mm/memfd_luo_rs.rs, CONFIG_LIVEUPDATE_MEMFD_RUST) instead of the C one?
has_rust_memfd() {
	# shellcheck disable=SC2046
	fragment_options $(variant_fragments "$1") | grep -qx 'CONFIG_LIVEUPDATE_MEMFD_RUST=y'
}
# has_vfio_rust VARIANT: does this variant build the Rust vfio-pci handler
# (drivers/vfio/pci/vfio_pci_luo_rs.rs, CONFIG_VFIO_PCI_LIVEUPDATE_RUST)?
has_vfio_rust() {
	# shellcheck disable=SC2086
	# shellcheck disable=SC2046 # one word per fragment path
	fragment_options $(variant_fragments "$1") | grep -qx 'CONFIG_VFIO_PCI_LIVEUPDATE_RUST=y'
}
# fragment_options FRAGMENT...: the options the fragments set, each option's
# last setting only (a later fragment overrides an earlier one, as in
# merge_config.sh), in the order of first appearance.
fragment_options() {
	cat "$@" | awk '
		/^CONFIG_[A-Za-z0-9_]+=/ { o = $0; sub(/=.*/, "", o) }
		/^# CONFIG_[A-Za-z0-9_]+ is not set$/ { o = $2 }
		o != "" { if (!(o in v)) order[n++] = o; v[o] = $0; o = "" }
		END { for (i = 0; i < n; i++) print v[order[i]] }'
}
# base_variant VARIANT: the variant whose build directory a first build of
# VARIANT starts from (a copy, rebuilt incrementally: Kbuild recompiles only
# what the options that differ reach), or nothing.
base_variant() {
	case $1 in
	rust) echo c ;;
	c-rust-memfd) echo rust ;;
	rust-c-memfd) echo c-rust-memfd ;;
	esac
}
# is_llvm VARIANT: is this variant built with clang (LLVM=...)?
is_llvm() { [ "$1" = rust-kasan ]; }

# Extra kernel command line of a variant's test VMs (carried across kexec).
# rust-kasan: KHO sizes its scratch areas as 200% of the memblock kernel
# reservations, and the per-node area also counts the lowmem and global
# scratch areas reserved just before it, so about 8x in all. KASAN's shadow
# (1/8 of RAM) is such a reservation: 8x no longer fits in any RAM size
# ("KHO: Failed to reserve nid 0 scratch buffer", LUO disabled). 75% leaves
# room for the next kernel (shadow included) and its kexec segments.
#
# rust-kasan also boots with no5lvl: with 5-level paging (QEMU's -cpu max has
# LA57), an interrupt taken early in boot, before the alternatives are
# patched, makes KASAN see pgtable_l5_enabled() as false and report a
# direct-map access as a "wild-memory-access" (seen once in handle_edge_irq
# during identify_cpu in a kexec'd kernel). That is a false report, unrelated
# to LUO; 4-level paging avoids it.
variant_cmdline() {
	case $1 in
	rust-kasan) echo "kho_scratch=75% no5lvl" ;;
	esac
}

# Config fragments of a variant, in merge order.
variant_fragments() {
	case $1 in
	rust-kasan) echo "$REPO/config/common.config $REPO/config/vfio.config $REPO/config/rust.config $REPO/config/vfio-rust.config $REPO/config/vtd-lu.config $REPO/config/rust-kasan.config" ;;
	c) echo "$REPO/config/common.config $REPO/config/vfio.config $REPO/config/c.config" ;;
	rust) echo "$REPO/config/common.config $REPO/config/vfio.config $REPO/config/rust.config $REPO/config/vfio-rust.config $REPO/config/vtd-lu.config $REPO/config/doctests.config" ;;
	c-rust-memfd) echo "$REPO/config/common.config $REPO/config/vfio.config $REPO/config/c.config $REPO/config/c-rust-memfd.config $REPO/config/vfio-rust.config $REPO/config/vtd-lu.config" ;;
	rust-c-memfd) echo "$REPO/config/common.config $REPO/config/vfio.config $REPO/config/rust.config $REPO/config/vfio-rust.config $REPO/config/rust-c-memfd.config" ;;
	c-bench) echo "$REPO/config/common.config $REPO/config/c.config $REPO/config/bench.config" ;;
	rust-bench) echo "$REPO/config/common.config $REPO/config/rust.config $REPO/config/bench.config" ;;
	*) echo "$REPO/config/common.config $REPO/config/$1.config" ;;
	esac
}

# bisect_fragment VARIANT: the options make series-bisect configures each
# prefix of the series with: the variant's, without the kernel crate's
# doctests (config/doctests.config). Every prefix would rebuild them, and
# objtool warns about two of upstream's in 7.3.4 (kernel::num::bounded),
# which would fail every prefix; the variant's own build compiles and runs
# them on the whole series. The key of the bisect ledger hashes it.
bisect_fragment() {
	# shellcheck disable=SC2046 # one word per fragment path
	fragment_options $(variant_fragments "$1") | grep -v '^CONFIG_RUST_KERNEL_DOCTESTS='
}

# bisect_make_flags: what make series-bisect builds each prefix with besides
# the options: clippy in place of rustc, so that a clippy finding in any
# prefix is a warning, which fails the prefix. The key of the ledger hashes
# them too.
bisect_make_flags() {
	echo "CLIPPY=1"
}

# Environment the kernel build needs for Rust (set by toolchain_env [VARIANT]).
# A clang-built variant gives bindgen the libclang of that same clang: the
# kernel passes clang's own C flags to bindgen, which an older libclang may
# not know.
toolchain_env() {
	local rs
	rs=$(cat "$TOOLCHAIN/rust-lib-src" 2>/dev/null) || die "toolchain not installed: run scripts/deps.sh"
	export RUST_LIB_SRC=$rs
	export LIBCLANG_PATH
	if is_llvm "${1:-}"; then
		LIBCLANG_PATH=$LLVM_PREFIX/lib
	else
		LIBCLANG_PATH=$(cat "$TOOLCHAIN/libclang-path")
	fi
	export PATH="$HOME/.cargo/bin:$PATH"
}

obj_dir() { echo "$BUILD/obj-$1"; }
# bench_guest DIR PROGRAM...: DIR/init and DIR/tests/PROGRAM (from
# tools/testing/selftests/liveupdate/PROGRAM.c) for the bench VMs, compiled
# from the repository (the prepared tree may predate them) with
# build-guest.sh's flags against the headers of build/obj-c-bench; exports
# GEN_INIT_CPIO for mkinitramfs.sh.
bench_guest() {
	local g=$1 t inc=$BUILD/obj-c-bench/usr/include st=$SRC/tools/testing/selftests
	shift
	[ -f "$inc/linux/liveupdate.h" ] || die "no exported headers in $BUILD/obj-c-bench/usr: run make kernel LUO=c-bench once"
	local cflags=(-static -O2 -D_GNU_SOURCE= -Wall -Wno-unused-function -isystem "$inc"
		-I "$st/liveupdate/lib/include" -I "$st")
	mkdir -p "$g/tests"
	gcc "${cflags[@]}" -o "$g/init" "$REPO/guest/init.c" || die "cannot build init"
	for t in "$@"; do
		gcc "${cflags[@]}" -o "$g/tests/$t" "$REPO/tools/testing/selftests/liveupdate/$t.c" \
			"$st/liveupdate/lib/lu_utils.c" || die "cannot build $t"
	done
	export GEN_INIT_CPIO=$BUILD/obj-c-bench/usr/gen_init_cpio
}

kmake() {
	local variant=$1 llvm_args=()
	shift
	toolchain_env "$variant"
	if is_llvm "$variant"; then llvm_args+=(LLVM="$LLVM_SUFFIX"); fi
	make -s -C "$SRC" O="$(obj_dir "$variant")" ARCH=x86_64 -j"$JOBS" \
		RUSTC=rustc BINDGEN=bindgen "${llvm_args[@]}" "$@"
}
