#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the static guest programs of one variant: our PID 1 and the
# liveupdate selftests (upstream's and ours) from the prepared tree, against
# that variant's exported uapi headers.
# Usage: build-guest.sh VARIANT
. "$(dirname "$0")/lib.sh"

variant=${1:?usage: build-guest.sh VARIANT}
obj=$(obj_dir "$variant")
out=$BUILD/guest-$variant
st=$SRC/tools/testing/selftests
lu=$st/liveupdate
base=$(base_variant "$variant")
# A variant with a base variant (see base_variant) starts from its programs
# (the same uapi): init and tests/ only, which the base's test job (possibly
# running now, see check.sh) never writes; its initramfs files come and go.
if [ ! -d "$out/tests" ] && [ -n "$base" ] && [ -d "$BUILD/guest-$base/tests" ]; then
	mkdir -p "$out"
	cp -a "$BUILD/guest-$base/tests" "$out/tests"
	[ ! -f "$BUILD/guest-$base/init" ] || cp -a "$BUILD/guest-$base/init" "$out/init"
fi
mkdir -p "$out/tests"
[ -f "$obj/usr/include/linux/liveupdate.h" ] || die "no exported headers in $obj/usr: build the kernel first"

CFLAGS="-static -s -O2 -D_GNU_SOURCE= -Wall -Wno-unused-function -isystem $obj/usr/include -I $lu/lib/include -I $st"

# cc OUT SRC... : rebuild only when a source or header is newer.
cc_static() {
	local outf=$1; shift
	local newest
	if [ -f "$outf" ]; then
		newest=$(find "$@" "$lu/lib" "$lu"/luo_rs_*.h "$obj/usr/include/linux/liveupdate.h" -newer "$outf" -print -quit)
		[ -z "$newest" ] && return 0
	fi
	# shellcheck disable=SC2086
	gcc $CFLAGS -o "$outf" "$@" || die "cannot build $(basename "$outf")"
}

cc_static "$out/init" "$REPO/guest/init.c"
cc_static "$out/tests/liveupdate" "$lu/liveupdate.c" "$lu/lib/lu_utils.c"
for t in luo_kexec_simple luo_multi_session luo_stress_files luo_stress_sessions; do
	cc_static "$out/tests/$t" "$lu/$t.c" "$lu/lib/lu_utils.c"
done
# Our own selftests: tools/testing/selftests/liveupdate/luo_rs_*.c
for f in "$lu"/luo_rs_*.c; do
	[ -e "$f" ] || continue
	cc_static "$out/tests/$(basename "$f" .c)" "$f" "$lu/lib/lu_utils.c"
done
