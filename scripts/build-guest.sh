#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the static guest programs of one variant: our PID 1 and the
# liveupdate selftests (upstream's and ours, luo_rs_*.c) from the prepared
# tree, against that variant's exported uapi headers.
#
# The selftests build through kselftest (tools/testing/selftests/liveupdate/
# Makefile, patches/0009 adds our programs): objects, dependency files and
# programs go to $BUILD/guest-VARIANT/obj, and make rebuilds only what a
# changed source or header reaches. The programs are then copied to tests/
# (everything there goes into the initramfs), each only when it differs, and
# so are the kernel's modules, if it has any.
# Usage: build-guest.sh VARIANT
. "$(dirname "$0")/lib.sh"

variant=${1:?usage: build-guest.sh VARIANT}
obj=$(obj_dir "$variant")
out=$BUILD/guest-$variant
lu=$SRC/tools/testing/selftests/liveupdate
base=$(base_variant "$variant")
[ -f "$obj/usr/include/linux/liveupdate.h" ] || die "no exported headers in $obj/usr: build the kernel first"

# A variant with a base variant (see base_variant) starts from its programs
# (the same uapi): init, tests/ and the selftests' obj/, which the base's
# runs (possibly running now) never write; its initramfs
# files come and go. The dependency files name the base's directories by
# their absolute paths: name the copy's (its kernel build directory, and so
# its exported headers, is a copy of the base's too, mtimes kept), or
# everything rebuilds.
bout=$BUILD/guest-$base
if [ -n "$base" ] && [ ! -d "$out/obj" ] && [ -d "$bout/obj" ]; then
	mkdir -p "$out"
	rm -rf "$out/obj.tmp"
	cp -a "$bout/obj" "$out/obj.tmp"
	grep -rlZF --include='*.d' -e "$bout/" -e "$(obj_dir "$base")/" "$out/obj.tmp" |
		xargs -0r sed -i "s#$bout/#$out/#g; s#$(obj_dir "$base")/#$obj/#g"
	mv "$out/obj.tmp" "$out/obj"
	[ -d "$out/tests" ] || cp -a "$bout/tests" "$out/tests"
	[ -f "$out/init" ] || [ ! -f "$bout/init" ] || cp -a "$bout/init" "$out/init"
fi
mkdir -p "$out/tests" "$out/obj"

# init: not a selftest; rebuilt when guest/init.c or the uapi header is newer.
if [ ! -f "$out/init" ] ||
	[ -n "$(find "$REPO/guest/init.c" "$obj/usr/include/linux/liveupdate.h" -newer "$out/init" -print -quit)" ]; then
	gcc -static -s -O2 -D_GNU_SOURCE= -Wall -Wno-unused-function -isystem "$obj/usr/include" \
		-o "$out/init" "$REPO/guest/init.c" || die "cannot build init"
fi

# The selftests, static (USERLDFLAGS: kselftest's lib.mk adds it to LDFLAGS).
make -s -C "$lu" -j"$JOBS" OUTPUT="$out/obj" \
	KHDR_INCLUDES="-isystem $obj/usr/include" USERLDFLAGS="-static -s" ||
	die "cannot build the liveupdate selftests (tools/testing/selftests/liveupdate)"

# The programs are the executable files of obj/ (objects, dependency files
# and libliveupdate/ are not).
n=0
while read -r f; do
	t=$out/tests/$(basename "$f")
	if ! cmp -s "$f" "$t"; then
		cp -p "$f" "$t.tmp" && mv -f "$t.tmp" "$t"
	fi
	n=$((n + 1))
done < <(find "$out/obj" -maxdepth 1 -type f -perm -u+x)
[ "$n" -gt 0 ] || die "no selftest programs in $out/obj"

# The variant's loadable modules (build-kernel.sh builds them if it has
# CONFIG_MODULES), next to the programs: /tests/NAME.ko in the guest, for the
# tests that load them. A module the variant no longer builds goes.
kos=" "
if grep -qx 'CONFIG_MODULES=y' "$obj/.config" && [ -f "$obj/modules.order" ]; then
	while read -r m; do
		f=$obj/${m%.o}.ko
		[ -f "$f" ] || die "module $f not built (see $obj/build.log)"
		t=$out/tests/$(basename "$f")
		if ! cmp -s "$f" "$t"; then
			cp -p "$f" "$t.tmp" && mv -f "$t.tmp" "$t"
		fi
		kos="$kos$(basename "$f") "
	done < "$obj/modules.order"
fi
for t in "$out"/tests/*.ko; do
	[ -e "$t" ] || continue
	case $kos in *" $(basename "$t") "*) ;; *) rm -f "$t" ;; esac
done
