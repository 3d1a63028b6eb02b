#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Configure (tinyconfig + config/common.config + config/<variant>.config;
# rust-kasan adds config/rust.config before its own and builds with
# LLVM=-19) and build the kernel of one variant in its own build directory,
# and its modules if it has CONFIG_MODULES.
# A variant with a base variant (rust, c-rust-memfd, rust-c-memfd; see
# base_variant) starts its first build from a copy of the base's build
# directory.
# Usage: build-kernel.sh VARIANT   (one of $VARIANTS in scripts/lib.sh)
. "$(dirname "$0")/lib.sh"

variant=${1:?usage: build-kernel.sh VARIANT}
case " $VARIANTS " in *" $variant "*) ;; *) die "LUO must be one of $VARIANTS, not '$variant'" ;; esac
obj=$(obj_dir "$variant")
base=$(base_variant "$variant")
if [ ! -f "$obj/.config" ] && [ -n "$base" ] && [ -f "$(obj_dir "$base")/vmlinux" ]; then
	log "$variant kernel: starting from a copy of the $base build"
	rm -rf "$obj"
	cp -a "$(obj_dir "$base")" "$obj.tmp"
	rm -f "$obj.tmp/.luo-config-hash"
	# The host tools' (objtool's) saved commands name their output directory
	# by its absolute path: name the copy's, or they rebuild, and every
	# object that depends on them with them.
	grep -rlZF --include='.*.cmd' --include='*.d' "$(obj_dir "$base")/" "$obj.tmp" |
		xargs -0r sed -i "s#$(obj_dir "$base")/#$obj/#g"
	mv "$obj.tmp" "$obj"
fi
mkdir -p "$obj"

if is_rust_luo "$variant" && ! grep -q 'config LIVEUPDATE_RUST' "$SRC/kernel/liveupdate/Kconfig"; then
	die "LUO=$variant: this tree has no CONFIG_LIVEUPDATE_RUST yet (issue 'Rust LUO, part 1')"
fi

if is_llvm "$variant"; then
	{ command -v "clang$LLVM_SUFFIX" >/dev/null && command -v "ld.lld$LLVM_SUFFIX" >/dev/null; } ||
		die "LUO=$variant needs clang$LLVM_SUFFIX and ld.lld$LLVM_SUFFIX: run scripts/deps.sh"
fi

frags=$(variant_fragments "$variant")
# The compiler is part of the configuration (CC_IS_CLANG, CLANG_VERSION, ...).
# shellcheck disable=SC2086 # one word per fragment path
want_hash=$({ cat $frags; if is_llvm "$variant"; then echo "LLVM=$LLVM_SUFFIX"; fi; } | sha256sum | cut -c1-16)
if [ ! -f "$obj/.config" ] || [ "$(cat "$obj/.luo-config-hash" 2>/dev/null)" != "$want_hash" ]; then
	log "configuring $variant kernel"
	kmake "$variant" tinyconfig >/dev/null
	# shellcheck disable=SC2086
	fragment_options $frags > "$obj/.luo-fragment"
	"$SRC/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$obj/.luo-fragment" >/dev/null
	kmake "$variant" olddefconfig >/dev/null
	# Every option the fragments ask for must really be set.
	bad=0
	while read -r line; do
		case $line in
		CONFIG_*=*)
			grep -qxF "$line" "$obj/.config" || { echo "config: wanted '$line', got '$(grep -E "^(# )?${line%%=*}[= ]" "$obj/.config" || echo unset)'" >&2; bad=1; } ;;
		"# CONFIG_"*" is not set")
			opt=${line#\# }; opt=${opt%% *}
			! grep -q "^$opt=" "$obj/.config" || { echo "config: wanted $opt unset" >&2; bad=1; } ;;
		esac
	done < "$obj/.luo-fragment"
	[ $bad -eq 0 ] || die "kernel configuration for LUO=$variant is missing options (see above)"
	echo "$want_hash" > "$obj/.luo-config-hash"
fi

log "building $variant kernel (log: $obj/build.log)"
if ! kmake "$variant" bzImage > "$obj/build.log" 2>&1; then
	tail -n 40 "$obj/build.log" >&2
	die "kernel build failed (LUO=$variant), full log: $obj/build.log"
fi
# The loadable modules of a variant with CONFIG_MODULES (the test handler
# module, CONFIG_LIVEUPDATE_RUST_TEST_MOD): build-guest.sh puts every .ko in
# the initramfs.
if grep -qx 'CONFIG_MODULES=y' "$obj/.config" &&
	! kmake "$variant" modules >> "$obj/build.log" 2>&1; then
	tail -n 40 "$obj/build.log" >&2
	die "module build failed (LUO=$variant), full log: $obj/build.log"
fi
if [ ! -f "$obj/usr/include/linux/liveupdate.h" ] || [ "$SRC/include/uapi/linux/liveupdate.h" -nt "$obj/usr/include/linux/liveupdate.h" ]; then
	kmake "$variant" headers_install INSTALL_HDR_PATH="$obj/usr" >/dev/null
fi
grep -iE 'warning:' "$obj/build.log" | grep -v '^make' | head -20 >&2 || true
log "kernel: $obj/arch/x86/boot/bzImage"
