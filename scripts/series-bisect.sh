#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds every prefix of the upstream series (make series-bisect): the
# pristine tree, then each patch applied in turn, configured for VARIANT
# (tinyconfig plus scripts/lib.sh bisect_fragment, merged afresh at each
# step, since a patch may add Kconfig options) and built incrementally in
# one build directory.
# One line per prefix: "ok host:series-bisect:NN subject", or "not ok ..."
# if it fails to build or its build prints a warning, clippy's included
# (scripts/lib.sh bisect_make_flags).
# Too slow for make check (about 22 minutes from the pristine tree: a change
# under rust/kernel rebuilds the kernel crate). It writes what it built to
# the ledger series/bisect.tsv, keyed by each prefix's tree, options and
# make flags, which make check reads (series.py's bisect gate): a patch
# changed since its prefixes were built fails make check until they are
# built again.
#
# Usage: series-bisect.sh [VARIANT [FIRST]]   (gcc variants only; default rust)
# FIRST: build the prefixes from FIRST on, starting from the previous run's
# tree and build directory if there is one (every file the series touches
# written afresh where it differs), else from a full build of prefix FIRST.
# FIRST=auto: from the first prefix the ledger does not have built.
# Logs: build/bisect/logs/NN.log, times in build/bisect/times.tsv.
. "$(dirname "$0")/lib.sh"

variant=${1:-rust}
first=${2:-0}
is_llvm "$variant" && die "series-bisect.sh builds gcc variants only, not $variant"
B=$BUILD/bisect
src=$B/src obj=$B/obj-$variant cfg=$B/cfg
[ "$variant" = rust ] || [ "$first" != auto ] || die "FIRST=auto: the ledger is of the rust variant"
mkdir -p "$B"
# The series applied with git am (its other gates need not pass here).
"$REPO/scripts/series.py" check > "$B/series-check.txt" ||
	grep -qx 'ok host:series:am' "$B/series-check.txt" ||
	die "the series does not apply: see $B/series-check.txt"
# A copy of the applied series: make check (host:series) makes it afresh.
repo=$B/am
rm -rf "$repo"
cp -a "$BUILD/series-work/am" "$repo"
mapfile -t commits < <(git -C "$repo" rev-list --reverse HEAD)
if [ "$first" = auto ]; then
	first=$("$REPO/scripts/series.py" keys "$repo" | awk '$4 != "ok" { print $1 + 0; exit }')
	if [ -z "$first" ]; then
		echo "# the ledger has every prefix of the series built: nothing to do"
		exit 0
	fi
fi
case $first in '' | *[!0-9]*) die "FIRST must be a prefix number or auto, not '$first'" ;; esac
if [ "$first" -eq 0 ] || [ ! -d "$src" ] || [ ! -f "$obj/.config" ]; then
	rm -rf "$src" "$obj" "$cfg"
	# A hardlinked copy: every file a patch changes is removed and written
	# anew, never written through a link into the pristine tree.
	cp -al "$SRC_PRISTINE" "$src"
fi
rm -rf "$B/logs"
mkdir -p "$B/logs" "$obj" "$cfg"
bisect_fragment "$variant" > "$B/fragment"
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

# Brings the tree to commit $1 from whatever state it is in: each file the
# series touches is written afresh (new mtime) where it differs.
sync_to() {
	local f want
	git -C "$repo" log --format= --name-only | sort -u | while read -r f; do
		[ -n "$f" ] || continue
		want=$B/want
		if git -C "$repo" cat-file -e "$1:$f" 2> /dev/null; then
			git -C "$repo" show "$1:$f" > "$want"
		elif [ -f "$SRC_PRISTINE/$f" ]; then
			cp "$SRC_PRISTINE/$f" "$want"
		else
			rm -f "$src/$f"
			continue
		fi
		cmp -s "$want" "$src/$f" && continue
		rm -f "$src/$f"
		mkdir -p "$(dirname "$src/$f")"
		mv "$want" "$src/$f"
	done
}

failed=0
[ "$first" -lt "${#commits[@]}" ] || die "the series has only ${#commits[@]} prefixes"
printf 'prefix\tseconds\trc\twarnings\n' > "$B/times.tsv"
for k in "${!commits[@]}"; do
	c=${commits[$k]}
	[ "$k" -ge "$first" ] || continue
	if [ "$k" -eq "$first" ] && [ "$k" -gt 0 ]; then
		sync_to "$c"
	elif [ "$k" -gt 0 ]; then
		checkout "${commits[$((k - 1))]}" "$c"
	fi
	name=$(printf '%02d' "$k")
	subject=$(git -C "$repo" log -1 --format=%s "$c")
	log=$B/logs/$name.log
	t0=$(date +%s)
	rc=0
	# shellcheck disable=SC2046 # one word per flag
	{ configure && bmake O="$obj" $(bisect_make_flags) bzImage &&
		{ ! grep -qx 'CONFIG_MODULES=y' "$obj/.config" ||
			bmake O="$obj" $(bisect_make_flags) modules; }; } > "$log" 2>&1 || rc=$?
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
echo "# $((${#commits[@]} - first - failed)) of $((${#commits[@]} - first)) prefixes from $first on build ($variant); logs: $B/logs"
if [ "$variant" = rust ]; then
	"$REPO/scripts/series.py" ledger "$repo" "$B/times.tsv"
	echo "# ledger: $REPO/series/bisect.tsv"
fi
[ "$failed" -eq 0 ]
