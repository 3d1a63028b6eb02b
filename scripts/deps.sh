#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything the harness needs, idempotently:
#  - Debian packages for building and booting a kernel (gcc, and clang/lld/llvm
#    19 for the rust-kasan variant),
#  - bindgen-cli (crates.io) and libclang >= 17 (PyPI wheel, in a venv),
#  - Debian's linux-source-7.3 and the rust-src matching `rustc --version`,
#    fetched through a private apt state under $BUILD/apt whose sources.list
#    is derived from the machine's own Debian apt sources.
. "$(dirname "$0")/lib.sh"

# lz4: the kernels are LZ4-compressed (config/common.config).
DEB_PKGS="qemu-system-x86 bc bison flex libelf-dev libssl-dev cpio rsync python3-venv xz-utils lz4 gcc make patch libc6-dev binutils shellcheck"
# The LLVM=-19 variant (rust-kasan): clang-19, ld.lld-19, llvm-ar-19, ... and
# libclang-19 for its bindgen.
DEB_PKGS+=" clang$LLVM_SUFFIX lld$LLVM_SUFFIX llvm$LLVM_SUFFIX libclang1$LLVM_SUFFIX"

install_debian_packages() {
	local missing=() p
	for p in $DEB_PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing Debian packages: ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

install_bindgen() {
	export PATH="$HOME/.cargo/bin:$PATH"
	if command -v bindgen >/dev/null && bindgen --version >/dev/null 2>&1; then
		return 0
	fi
	log "installing bindgen-cli from crates.io"
	cargo install --locked --quiet bindgen-cli
}

install_libclang() {
	local venv=$CACHE/venv-libclang path
	if [ ! -x "$venv/bin/python" ]; then
		log "creating libclang venv"
		python3 -m venv "$venv"
	fi
	if ! "$venv/bin/python" -c 'import clang' 2>/dev/null; then
		log "installing libclang wheel from PyPI"
		"$venv/bin/pip" install -q 'libclang>=17,<19'
	fi
	path=$("$venv/bin/python" -c 'import clang, os; print(os.path.join(os.path.dirname(clang.__file__), "native"))')
	[ -e "$path/libclang.so" ] || die "libclang.so not found in $path"
	mkdir -p "$TOOLCHAIN"
	echo "$path" > "$TOOLCHAIN/libclang-path"
}

# The Debian mirror URI the machine already uses (no host name in the repo).
debian_uri() {
	local uri=""
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
	fi
	if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
	fi
	[ -n "$uri" ] || die "cannot find a Debian apt source URI on this machine"
	echo "$uri"
}

APT_DIR=$BUILD/apt
apt_private() {
	local tool=$1; shift
	"$tool" -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
		-o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$APT_DIR/lists" \
		-o Dir::Cache="$APT_DIR/cache" \
		-o Dir::State::Status=/dev/null \
		-o Debug::NoLocking=1 \
		-o APT::Sandbox::User=root "$@"
}

apt_private_update() {
	[ -f "$APT_DIR/updated" ] && return 0
	local uri
	uri=$(debian_uri)
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie-backports main" \
		> "$APT_DIR/sources.list"
	log "updating private apt lists (trixie-backports from $uri)"
	apt_private apt-get update -qq
	touch "$APT_DIR/updated"
}

# fetch_deb PACKAGE VERSION-REGEX -> prints the path of the cached .deb
fetch_deb() {
	local pkg=$1 re=$2 cached ver
	mkdir -p "$CACHE/debs"
	cached=$(find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" | while read -r f; do
		v=$(dpkg-deb -f "$f" Version); [[ $v =~ $re ]] && echo "$f"; done | sort -V | tail -n1)
	if [ -n "$cached" ]; then echo "$cached"; return 0; fi
	apt_private_update
	ver=$(apt_private apt-cache madison "$pkg" | awk -F'|' '{gsub(/ /, "", $2); print $2}' |
		grep -E "$re" | sort -V | tail -n1)
	[ -n "$ver" ] || return 1
	log "downloading $pkg=$ver"
	(cd "$CACHE/debs" && apt_private apt-get download -qq "$pkg=$ver" 2>/dev/null)
	find "$CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" | while read -r f; do
		[ "$(dpkg-deb -f "$f" Version)" = "$ver" ] && echo "$f"; done | tail -n1
}

install_rust_src() {
	local rv deb dir
	rv=$(rustc --version | awk '{print $2}')
	[ -n "$rv" ] || die "rustc not found"
	if [ -f "$TOOLCHAIN/rust-src.version" ] && [ "$(cat "$TOOLCHAIN/rust-src.version")" = "$rv" ]; then
		return 0
	fi
	deb=$(fetch_deb rust-src "^${rv//./\\.}\\+") ||
		die "no Debian rust-src package matches rustc $rv (trixie-backports has: $(apt_private apt-cache madison rust-src | awk -F'|' '{printf "%s ", $2}'))"
	log "extracting $(basename "$deb")"
	rm -rf "$TOOLCHAIN/rust-src"
	mkdir -p "$TOOLCHAIN/rust-src"
	dpkg -x "$deb" "$TOOLCHAIN/rust-src"
	dir=$TOOLCHAIN/rust-src/usr/src/rustc-$rv/library
	[ -f "$dir/core/src/lib.rs" ] || die "rust-src $rv has no core/src/lib.rs at $dir"
	echo "$dir" > "$TOOLCHAIN/rust-lib-src"
	echo "$rv" > "$TOOLCHAIN/rust-src.version"
}

install_kernel_source() {
	local deb ver tarball
	if [ -f "$SRC_PRISTINE/.extracted" ]; then
		return 0
	fi
	deb=$(fetch_deb "linux-source-$KVER_SERIES" "^${KVER_SERIES//./\\.}\\.") ||
		die "linux-source-$KVER_SERIES not found in trixie-backports"
	ver=$(dpkg-deb -f "$deb" Version)
	log "extracting linux-source-$KVER_SERIES $ver (takes about a minute)"
	rm -rf "$BUILD/src/deb" "$SRC_PRISTINE.tmp"
	mkdir -p "$BUILD/src/deb" "$SRC_PRISTINE.tmp"
	dpkg -x "$deb" "$BUILD/src/deb"
	tarball=$(ls "$BUILD"/src/deb/usr/src/linux-source-"$KVER_SERIES".tar.*)
	tar -xf "$tarball" -C "$SRC_PRISTINE.tmp" --strip-components=1
	rm -rf "$BUILD/src/deb"
	grep -q "^PATCHLEVEL = ${KVER_SERIES#*.}$" "$SRC_PRISTINE.tmp/Makefile" ||
		die "extracted source is not Linux $KVER_SERIES"
	echo "$ver" > "$SRC_PRISTINE.tmp/.extracted"
	rm -rf "$SRC_PRISTINE" "$SRC"
	mv "$SRC_PRISTINE.tmp" "$SRC_PRISTINE"
}

install_debian_packages
install_bindgen
install_libclang
install_rust_src
install_kernel_source
