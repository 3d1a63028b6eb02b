#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Make $SRC = pristine Linux 7.3 + our overlay + patches/*.patch.
#
# $SRC starts as a hardlinked copy of the pristine tree. Every file we touch
# is written by rename (never in place), so the pristine tree stays intact.
# Only files whose content changes get a new mtime: re-preparing after an
# edit rebuilds just what the edit touched.
. "$(dirname "$0")/lib.sh"

# Top-level directories of the repo that hold files at their kernel paths.
OVERLAY_DIRS="Documentation drivers include kernel lib mm rust tools"

[ -f "$SRC_PRISTINE/.extracted" ] || die "no kernel source: run scripts/deps.sh"

if [ ! -f "$SRC/.prepared" ]; then
	log "creating the working tree (hardlinks to the pristine tree)"
	rm -rf "$SRC"
	cp -al "$SRC_PRISTINE" "$SRC.tmp"
	: > "$SRC.tmp/.managed"
	mv "$SRC.tmp" "$SRC"
	touch "$SRC/.prepared"
fi

stage=$(mktemp -d "$BUILD/src/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# 1. Overlay files (tracked and untracked-but-not-ignored, so edits in
#    progress are picked up too).
cd "$REPO"
# shellcheck disable=SC2086
git ls-files --cached --others --exclude-standard -- $OVERLAY_DIRS | sort -u > "$stage/.overlay"
while read -r f; do
	[ -f "$REPO/$f" ] || continue
	mkdir -p "$stage/$(dirname "$f")"
	cp "$REPO/$f" "$stage/$f"
done < "$stage/.overlay"

# 2. Patches, in order, applied on top of pristine + overlay.
: > "$stage/.patched"
for p in "$REPO"/patches/*.patch; do
	[ -e "$p" ] || continue
	grep -E '^\+\+\+ ' "$p" | awk '{print $2}' | sed 's|^b/||' | grep -v '^/dev/null$' >> "$stage/.patched" || true
done
sort -u -o "$stage/.patched" "$stage/.patched"
while read -r f; do
	if [ ! -e "$stage/$f" ] && [ -f "$SRC_PRISTINE/$f" ]; then
		mkdir -p "$stage/$(dirname "$f")"
		cp "$SRC_PRISTINE/$f" "$stage/$f"
	fi
done < "$stage/.patched"
for p in "$REPO"/patches/*.patch; do
	[ -e "$p" ] || continue
	patch -p1 -s -d "$stage" --no-backup-if-mismatch -r - -N < "$p" ||
		die "patch does not apply: $(basename "$p")"
done

# 3. Sync: every file managed now or last time gets its wanted content:
#    the staged file, else the pristine one, else it is removed.
cat "$stage/.overlay" "$stage/.patched" | sort -u > "$stage/.wanted"
changed=0
while read -r f; do
	if [ -f "$stage/$f" ]; then
		want=$stage/$f
	elif [ -f "$SRC_PRISTINE/$f" ]; then
		want=$SRC_PRISTINE/$f
	else
		if [ -e "$SRC/$f" ]; then rm -f "$SRC/$f"; changed=$((changed + 1)); fi
		continue
	fi
	if ! cmp -s "$want" "$SRC/$f"; then
		mkdir -p "$SRC/$(dirname "$f")"
		cp "$want" "$SRC/$f.luo-tmp"
		chmod --reference="$want" "$SRC/$f.luo-tmp"
		mv -f "$SRC/$f.luo-tmp" "$SRC/$f"
		changed=$((changed + 1))
	fi
done < <(sort -u "$stage/.wanted" "$SRC/.managed")
cp "$stage/.wanted" "$SRC/.managed"
log "tree ready: $(wc -l < "$stage/.overlay") overlay files, $(find "$REPO/patches" -maxdepth 1 -name '*.patch' | wc -l) patches, $changed updated"
