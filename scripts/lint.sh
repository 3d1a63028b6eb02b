#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Static checks of the repository, each one line of output:
#   lint:rustfmtcheck  the kernel's `make rustfmtcheck` on the prepared tree
#                      (every .rs file in it: ours, the ones patches/
#                      changes, upstream's, and tools/liveupdate with its own
#                      rustfmt.toml)
#   lint:clippy        the rust variant's kernel built with CLIPPY=1 and
#                      KRUSTFLAGS=-Dwarnings (every Rust warning, clippy's
#                      included, is an error), in $BUILD/obj-lint: a copy of
#                      $BUILD/obj-rust, so that only the Rust objects
#                      rebuild and make check's build directories stay as
#                      they are
#   lint:checkpatch    the kernel's scripts/checkpatch.pl --strict on our
#                      files at kernel paths and on patches/*.patch (policy
#                      below)
#   lint:shellcheck    scripts/*.sh
#   lint:cargo-fmt     cargo fmt --check in tools/liveupdate
#   lint:cargo-clippy  cargo clippy --all-targets -- -D warnings in
#                      tools/liveupdate
#   lint:suites-doc    the table of suites in scripts/README.md is the one
#                      scripts/harness.py doc generates from scripts/suites.toml
# Each prints "ok lint:NAME" or "not ok lint:NAME # reason" followed by its
# first findings as "#   " lines; the last line is "N passed, M failed".
# Exit status 1 if any check failed. Full output: $LOGS/lint/NAME.log.
# The tree is prepared first (scripts/prepare-tree.sh), as for a build.
# Usage: lint.sh [CHECK...]   (default: all of them, in the order above)
. "$(dirname "$0")/lib.sh"

CHECKS="rustfmtcheck clippy trust-api checkpatch shellcheck cargo-fmt cargo-clippy suites-doc"
LINT_OBJ=$(obj_dir lint)
LINT_BASE=rust
WS=$REPO/tools/liveupdate
# How many findings of a failed check are shown (the log has them all).
SHOW=15
export PATH="$HOME/.cargo/bin:$PATH"

# Each lint_NAME LOG runs one check with its output in LOG. On failure it
# returns 1 and prints the reason on its first line, then its findings, one
# a line.

lint_rustfmtcheck() {
	local log=$1 files
	kmake lint rustfmtcheck > "$log" 2>&1 && return 0
	files=$(sed -n "s#^Diff in $SRC/\(.*\):[0-9]*:\$#\1#p" "$log" | sort -u)
	if [ -z "$files" ]; then
		echo "make rustfmtcheck failed"
		tail -n 5 "$log"
	else
		# (A file that patches/ changes is fixed in its patch.)
		echo "$(wc -l <<< "$files") files not as rustfmt formats them (make rustfmt)"
		echo "$files"
	fi
	return 1
}

# rust_findings LOG: "FILE:LINE: MESSAGE" for each error and warning rustc or
# clippy printed in LOG (the message line, then its "--> FILE:LINE:COL").
rust_findings() {
	sed 's/\x1b\[[0-9;]*m//g' "$1" | awk -v src="$SRC/" '
		/^(error|warning)(\[[^]]*\])?: / {
			if ($0 ~ /^error: aborting due to/ || $0 ~ /warnings? emitted$/ ||
			    $0 ~ /^error: could not compile/) { msg = ""; next }
			msg = $0; next
		}
		msg != "" && /^ *--> / {
			f = $2; sub("^" src, "", f); sub(/:[0-9]+$/, "", f)
			print f ": " msg; msg = ""
		}' | sort -u
}

# The lint build directory: a copy of the rust variant's, made again when
# that one's configuration changed. As build-kernel.sh does for a variant
# copy, the saved commands get the copy's path, or everything rebuilds.
lint_obj() {
	local base
	base=$(obj_dir "$LINT_BASE")
	if [ ! -f "$base/vmlinux" ]; then
		echo "no $base/vmlinux: make kernel LUO=$LINT_BASE first"
		return 1
	fi
	if [ -f "$LINT_OBJ/.config" ] && cmp -s "$base/.luo-config-hash" "$LINT_OBJ/.luo-config-hash"; then
		return 0
	fi
	log "lint: copying $base to $LINT_OBJ"
	rm -rf "$LINT_OBJ" "$LINT_OBJ.tmp"
	cp -a "$base" "$LINT_OBJ.tmp"
	grep -rlZF --include='.*.cmd' --include='*.d' "$base/" "$LINT_OBJ.tmp" |
		xargs -0r sed -i "s#$base/#$LINT_OBJ/#g"
	mv "$LINT_OBJ.tmp" "$LINT_OBJ"
}

lint_clippy() {
	local log=$1 found
	lint_obj >> "$log" 2>&1 || { tail -n 1 "$log"; return 1; }
	# KRUSTFLAGS, not W=e: W=e changes the C flags too, and every C object
	# would rebuild. vmlinux: every Rust object is in it (none is a module).
	kmake lint CLIPPY=1 KRUSTFLAGS=-Dwarnings vmlinux >> "$log" 2>&1 && return 0
	found=$(rust_findings "$log")
	if [ -z "$found" ]; then
		echo "the kernel build failed"
		grep -v '^make' "$log" | tail -n 5
	else
		echo "$(wc -l <<< "$found") Rust warnings (clippy's or rustc's)"
		echo "$found"
	fi
	return 1
}

# checkpatch policy:
#  - kernel code (our files under kernel/ rust/ mm/ drivers/ include/, and
#    patches/*.patch): every ERROR, WARNING and CHECK (--strict) is a finding;
#  - selftests (tools/testing/): ERROR and WARNING are; the CHECKs are not
#    (they are in the log): CAMELCASE flags libc's PRIx64 and friends,
#    BIT_MACRO asks for BIT() which userspace does not have, LONG_LINE_STRING
#    is the style's own exception, MULTIPLE_ASSIGNMENTS and
#    UNNECESSARY_PARENTHESES are taste in test code. Two warnings are
#    ignored there, being wrong about these files: EMBEDDED_FUNCTION_NAME
#    (it takes "/proc/meminfo" in meminfo() for the function's name) and
#    QUOTED_WHITESPACE_BEFORE_NEWLINE (" \n" is a delimiter set for strtok
#    and strcspn, not a message).
#  - A patch in patches/ is a bare diff: checkpatch is given it behind a
#    made-up mail header (subject, body, sign-off), without which it takes
#    every blank context line for an added line with trailing whitespace
#    and wants a commit message and a Signed-off-by that the series does not
#    have. Line numbers are those of the patch file.
CP_HDR_LINES=7
# files PATH...: the files git has (or would add) under PATH... of the
# repository, NUL-terminated.
files() {
	git -C "$REPO" ls-files -z --cached --others --exclude-standard -- "$@"
}
lint_checkpatch() {
	local log=$1 cp=$SRC/scripts/checkpatch.pl out found p tmp name
	local opts=(--no-tree --strict --terse --show-types --no-summary --color=never)
	[ -x "$cp" ] || { echo "no $cp"; return 1; }
	out=$(mktemp -d)
	# shellcheck disable=SC2064 # $out is fixed now
	trap "rm -rf '$out'" RETURN
	# checkpatch runs in $out, where the top directories of the repository
	# are links: it needs the files' repository paths (tools/ is userspace
	# to it), and in a git checkout it writes a cache file
	# (.checkpatch-camelcase.*) to its working directory.
	mkdir "$out/tree"
	for p in kernel rust mm drivers include tools; do ln -s "$REPO/$p" "$out/tree/$p"; done
	files kernel rust mm drivers include | (cd "$out/tree" && xargs -0r "$cp" "${opts[@]}" -f) \
		> "$out/kernel" 2>&1 || true
	files tools/testing | (cd "$out/tree" && xargs -0r "$cp" "${opts[@]}" -f \
		--ignore EMBEDDED_FUNCTION_NAME,QUOTED_WHITESPACE_BEFORE_NEWLINE) \
		> "$out/selftests" 2>&1 || true
	: > "$out/patches"
	for p in "$REPO"/patches/*.patch; do
		[ -e "$p" ] || continue
		tmp=$out/$(basename "$p")
		name=$(basename "$p" .patch)
		{
			printf 'From: Lint <lint@localhost>\nSubject: [PATCH] %s\n\n' "$name"
			printf '%s\n\nSigned-off-by: Lint <lint@localhost>\n---\n' "$name"
			cat "$p"
		} > "$tmp"
		(cd "$out/tree" && "$cp" "${opts[@]}" "$tmp") 2>&1 |
			awk -v f="$tmp" -v name="patches/$(basename "$p")" -v h="$CP_HDR_LINES" '
				index($0, f ":") == 1 {
					rest = substr($0, length(f) + 2)
					n = rest; sub(/:.*/, "", n); sub(/^[0-9]+/, "", rest)
					print name ":" (n - h) rest; next
				}
				{ print }' >> "$out/patches" || true
	done
	cat "$out/kernel" "$out/selftests" "$out/patches" > "$log"
	found=$({
		grep -E '^[^ ]+:[0-9]+: (ERROR|WARNING|CHECK):' "$out/kernel" "$out/patches" -h
		grep -E '^[^ ]+:[0-9]+: (ERROR|WARNING):' "$out/selftests"
	} || true)
	[ -z "$found" ] && return 0
	echo "$(wc -l <<< "$found") findings (see the policy in scripts/lint.sh)"
	echo "$found"
	return 1
}

# lint:shellcheck runs at the default severity (style). The scripts are
# bash (lib.sh is sourced, so they have no #! line:
# -s bash), and follow lib.sh (-x, found next to them). Not reported:
#  - SC2317 (command unreachable): shellcheck 0.9 says it of every function
#    that only a trap or a variable calls;
#  - SC2034 (variable unused) in the sourced files: their variables are for
#    the scripts that source them.
lint_shellcheck() {
	local log=$1 f found scripts=() sourced=()
	if ! command -v shellcheck > /dev/null; then
		echo "shellcheck is not installed (apt-get install shellcheck)"
		return 1
	fi
	cd "$REPO"
	for f in scripts/*.sh; do
		if head -n 1 "$f" | grep -q '^#!'; then scripts+=("$f"); else sourced+=("$f"); fi
	done
	{
		shellcheck -x -P SCRIPTDIR -s bash -e SC2317 -f gcc "${scripts[@]}"
		[ ${#sourced[@]} -eq 0 ] ||
			shellcheck -x -P SCRIPTDIR -s bash -e SC2317,SC2034 -f gcc "${sourced[@]}"
	} > "$log" 2>&1
	found=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: ' "$log" || true)
	[ -z "$found" ] && return 0
	echo "$(wc -l <<< "$found") findings"
	echo "$found"
	return 1
}

lint_cargo-fmt() {
	local log=$1 files
	command -v cargo > /dev/null || { echo "cargo not found"; return 1; }
	(cd "$WS" && cargo fmt --check) > "$log" 2>&1 && return 0
	files=$(sed -n "s#^Diff in $WS/\(.*\):[0-9]*:\$#tools/liveupdate/\1#p" "$log" | sort -u)
	if [ -z "$files" ]; then
		echo "cargo fmt --check failed"
		tail -n 5 "$log"
	else
		echo "$(wc -l <<< "$files") files not as rustfmt formats them (cargo fmt in tools/liveupdate)"
		echo "$files"
	fi
	return 1
}

lint_cargo-clippy() {
	local log=$1 found
	command -v cargo > /dev/null || { echo "cargo not found"; return 1; }
	# The target directory of make check's host checks and build-agent.sh.
	(cd "$WS" && CARGO_TARGET_DIR=$BUILD/agent/target \
		cargo clippy --locked --all-targets -- -D warnings) > "$log" 2>&1 && return 0
	found=$(SRC=$WS rust_findings "$log" | sed 's#^#tools/liveupdate/#')
	if [ -z "$found" ]; then
		echo "cargo clippy failed"
		tail -n 5 "$log"
	else
		echo "$(wc -l <<< "$found") clippy or rustc warnings"
		echo "$found"
	fi
	return 1
}

# The trust boundary of kernel::kho (issue 22, item 3), as compile-fail
# tests: safe code cannot claim a KHO subtree by a name of its choosing,
# declare a subtree name without `unsafe`, or turn a word of a handover page
# or array into a Handover. Each snippet is type-checked against the lint
# build's kernel crate with the command line kbuild used for the memfd
# handler, and must fail with its error code. A control snippet that does the
# same through the declared, unsafe way must pass, so that a broken command
# line fails this check instead of passing it.
trust_api_snippets=(
	'control::// SAFETY: a test name, used by nothing.
const NAME: SubtreeName = unsafe { SubtreeName::new(c"trust-api") };
pub fn f() -> Result { IncomingPage::retrieve_subtree(&NAME).map(|_| ()) }'
	'E0308::pub fn f() -> Result { IncomingPage::retrieve_subtree(c"LUO").map(|_| ()) }'
	'E0133::pub const NAME: SubtreeName = SubtreeName::new(c"LUO");'
	'E0599::pub fn f(p: &HandoverPage) { let _ = p.vmalloc_at(0); }'
	'E0599::pub fn f(p: &HandoverPage) { let _ = p.handover_at(0); }'
)
lint_trust-api() {
	local log=$1 cmd tmp i want body out bad=0
	lint_obj >> "$log" 2>&1 || { tail -n 1 "$log"; return 1; }
	[ -f "$LINT_OBJ/rust/libkernel.rmeta" ] ||
		kmake lint CLIPPY=1 vmlinux >> "$log" 2>&1 || { echo "the kernel build failed"; return 1; }
	cmd=$(sed -n 's/^savedcmd_[^ ]* := //p' "$LINT_OBJ/mm/.memfd_luo_rs.o.cmd")
	cmd=${cmd%%;*}
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # $tmp is fixed now
	trap "rm -rf '$tmp'" RETURN
	cmd=$(sed -e 's# --emit=[^ ]*##g' -e "s# --out-dir [^ ]*# --out-dir $tmp#" \
		-e "s# [^ ]*/mm/memfd_luo_rs\.rs# SNIPPET#" <<< "$cmd")
	for i in "${!trust_api_snippets[@]}"; do
		want=${trust_api_snippets[$i]%%::*}
		body=${trust_api_snippets[$i]#*::}
		printf '%s\n%s\n' "use kernel::{kho::{HandoverPage, IncomingPage, SubtreeName}, prelude::*};" \
			"$body" > "$tmp/trust_api_$i.rs"
		out=$(cd "$LINT_OBJ" && RUSTC_BOOTSTRAP=1 bash -c \
			"${cmd/SNIPPET/$tmp/trust_api_$i.rs} --cap-lints=allow --emit=metadata" 2>&1)
		echo "== snippet $i, want $want: $body" >> "$log"
		echo "$out" >> "$log"
		if [ "$want" = control ]; then
			! grep -q '^error' <<< "$out" ||
				{ echo "the control snippet does not build"; bad=1; }
		elif ! grep -q "^error\[$want\]" <<< "$out"; then
			echo "snippet $i built or failed otherwise, want error[$want]: $body"
			bad=1
		fi
	done
	return $bad
}

lint_suites-doc() {
	local log=$1
	"$REPO/scripts/harness.py" doc --check > "$log" 2>&1 && return 0
	echo "scripts/README.md's table of suites is stale: run scripts/harness.py doc"
	return 1
}

want=${*:-$CHECKS}
for c in $want; do
	case " $CHECKS " in *" $c "*) ;; *) die "unknown check '$c' (checks: $CHECKS)" ;; esac
done
mkdir -p "$LOGS/lint"
"$REPO/scripts/prepare-tree.sh" > "$LOGS/lint/prepare.log" 2>&1 ||
	die "scripts/prepare-tree.sh failed: $LOGS/lint/prepare.log"

passed=0 failed=0
for c in $want; do
	log=$LOGS/lint/$c.log
	: > "$log"
	t0=$SECONDS
	if out=$("lint_$c" "$log"); then
		echo "ok lint:$c"
		passed=$((passed + 1))
	else
		echo "not ok lint:$c # $(head -n 1 <<< "$out")"
		n=$(($(wc -l <<< "$out") - 1))
		if [ "$n" -gt 0 ]; then
			tail -n +2 <<< "$out" | head -n "$SHOW" | sed 's/^/#   /'
			[ "$n" -le "$SHOW" ] || echo "#   ... $((n - SHOW)) more"
		fi
		echo "#   log: $log"
		failed=$((failed + 1))
	fi
	echo "$c: $((SECONDS - t0)) s" >> "$LOGS/lint/times"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
