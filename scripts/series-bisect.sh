#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds every prefix of the upstream series (make series-bisect): the
# pristine tree, then each patch applied in turn, configured for VARIANT
# (tinyconfig plus its fragments, merged afresh at each step, since a patch
# may add Kconfig options) and built incrementally in one build directory.
# One line per prefix: "ok host:series-bisect:NN subject", or "not ok ..."
# if it fails to build or its build prints a warning.
# Too slow for make check (a change under rust/kernel rebuilds the kernel
# crate), so it runs on demand.
#
# Usage: series-bisect.sh [VARIANT]   (gcc variants only; default rust)
# Logs: build/bisect/logs/NN.log, times in build/bisect/times.tsv.
. "$(dirname "$0")/lib.sh"

variant=${1:-rust}
is_llvm "$variant" && die "series-bisect.sh builds gcc variants only, not $variant"
B=$BUILD/bisect
src=$B/src obj=$B/obj-$variant cfg=$B/cfg
rm -rf "$B"
mkdir -p "$B/logs" "$obj" "$cfg"
# The series applied with git am (its other gates need not pass here).
"$REPO/scripts/series.py" check > "$B/series-check.txt" ||
	grep -qx 'ok host:series:am' "$B/series-check.txt" ||
	die "the series does not apply: see $B/series-check.txt"
repo=$BUILD/series-work/am
mapfile -t commits < <(git -C "$repo" rev-list --reverse HEAD)
# A hardlinked copy: every file a patch changes is removed and written anew,
# never written through a link into the pristine tree.
cp -al "$SRC_PRISTINE" "$src"
# shellcheck disable=SC2046 # one word per fragment path
fragment_options $(variant_fragments "$variant") > "$B/fragment"
toolchain_env "$variant"
bmake() { make -s -C "$src" ARCH=x86_64 -j"$JOBS" RUSTC=rustc BINDGEN=bindgen "$@"; }

# Writes the files commit $2 changed since commit $1.
checkout() {
	local f mode
	git -C "$repo" diff --name-only --no-renames "$1" "$2" | while read -r f; do
		rm -f "$src/$f"
		mode=$(git -C "$repo" ls-tree "$2" -- "$f" | cut -d' ' -f1)
		[ -n "$mode" ] || continue
		mkdir -p "$(dirname "$src/$f")"
		git -C "$repo" show "$2:$f" > "$src/$f"
		[ "$mode" != 100755 ] || chmod +x "$src/$f"
	done
}

# Configures $cfg afresh; the build directory takes the result only if it
# differs, so an unchanged configuration rebuilds nothing.
configure() {
	bmake O="$cfg" tinyconfig > /dev/null &&
		"$src/scripts/kconfig/merge_config.sh" -m -O "$cfg" "$cfg/.config" "$B/fragment" > /dev/null &&
		bmake O="$cfg" olddefconfig > /dev/null || return 1
	cmp -s "$cfg/.config" "$obj/.config" && return 0
	cp "$cfg/.config" "$obj/.config" && bmake O="$obj" olddefconfig > /dev/null
}

failed=0
printf 'prefix\tseconds\trc\twarnings\n' > "$B/times.tsv"
for k in "${!commits[@]}"; do
	c=${commits[$k]}
	[ "$k" -eq 0 ] || checkout "${commits[$((k - 1))]}" "$c"
	name=$(printf '%02d' "$k")
	subject=$(git -C "$repo" log -1 --format=%s "$c")
	log=$B/logs/$name.log
	t0=$(date +%s)
	rc=0
	{ configure && bmake O="$obj" bzImage &&
		{ ! grep -qx 'CONFIG_MODULES=y' "$obj/.config" || bmake O="$obj" modules; }; } > "$log" 2>&1 || rc=$?
	warnings=$(awk '/^warning|: warning:/ { n++ } END { print n + 0 }' "$log")
	printf '%s\t%s\t%s\t%s\n' "$name" "$(($(date +%s) - t0))" "$rc" "$warnings" >> "$B/times.tsv"
	if [ "$rc" -eq 0 ] && [ "$warnings" -eq 0 ]; then
		echo "ok host:series-bisect:$name $subject"
	elif [ "$rc" -eq 0 ]; then
		failed=$((failed + 1))
		echo "not ok host:series-bisect:$name $subject # $warnings warning lines, the first: $(grep -m1 -E 'warning' "$log" | cut -c1-160)"
	else
		failed=$((failed + 1))
		echo "not ok host:series-bisect:$name $subject # $(grep -m1 -E 'error' "$log" | cut -c1-160)"
	fi
done
echo "# $((${#commits[@]} - failed)) of ${#commits[@]} prefixes build ($variant); logs: $B/logs"
[ "$failed" -eq 0 ]
