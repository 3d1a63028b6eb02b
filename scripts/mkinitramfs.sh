#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build a (nested) initramfs for a chain of boots.
# Usage: mkinitramfs.sh OUT GUESTDIR [NEXT_KERNEL...]
# The archive holds /init and /tests/* from GUESTDIR. With NEXT_KERNEL
# arguments it also holds /kernel (the first of them) and /initrd.img (an
# archive built the same way for the rest), so each boot can kexec the next.
. "$(dirname "$0")/lib.sh"

out=${1:?}; guest=${2:?}; shift 2
# GEN_INIT_CPIO: the tool of a finished kernel build (make check sets it while
# another variant may still be building); else the first one found.
gen=${GEN_INIT_CPIO:-}
[ -n "$gen" ] || for v in $VARIANTS; do
	[ -x "$(obj_dir "$v")/usr/gen_init_cpio" ] && { gen=$(obj_dir "$v")/usr/gen_init_cpio; break; }
done
[ -n "$gen" ] || die "usr/gen_init_cpio not built"

list=$(mktemp)
trap 'rm -f "$list" "$out.inner"' EXIT
{
	for d in /dev /proc /sys /tmp /tests; do echo "dir $d 0755 0 0"; done
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "file /init $guest/init 0755 0 0"
	for t in "$guest"/tests/*; do echo "file /tests/$(basename "$t") $t 0755 0 0"; done
} > "$list"
if [ $# -gt 0 ]; then
	next=$1; shift
	"$0" "$out.inner" "$guest" "$@"
	echo "file /kernel $next 0644 0 0" >> "$list"
	echo "file /initrd.img $out.inner 0644 0 0" >> "$list"
	"$gen" "$list" > "$out.tmp"
	rm -f "$out.inner"
else
	"$gen" "$list" > "$out.tmp"
fi
mv "$out.tmp" "$out"
