// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Check `liveupdate::uapi` against the kernel's own uapi header.
//!
//! A small C program that includes <linux/liveupdate.h> prints every
//! struct's size, alignment and field offsets/sizes, and every ioctl
//! number; the Rust definitions must match exactly. The header comes from
//! `$LIVEUPDATE_UAPI_INCLUDE` (a directory holding `linux/liveupdate.h`),
//! else from the project's exported headers (`build/obj-c/usr/include`,
//! `build/obj-rust/usr/include`) or the prepared tree's `include/uapi`.
//! With `$LIVEUPDATE_UAPI_INCLUDE` set (as `make check` does) a missing
//! header is a failure; without it and without a kernel build next to this
//! crate (a fresh clone, or the packaged crate, whose `uapi` module is the
//! vendored definition) the check is skipped with a note on stderr. The C
//! compiler is `$CC`, else `cc`.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use liveupdate::uapi::*;

/// Compiler arguments (-I, -D) that make <linux/liveupdate.h> the
/// kernel's header.
fn include_args() -> Option<Vec<std::ffi::OsString>> {
    let mut args = Vec::new();
    let (dirs, raw_tree) = include_dirs()?;
    for dir in dirs {
        args.push("-I".into());
        args.push(dir.into_os_string());
    }
    if raw_tree {
        // Unexported uapi headers warn unless this is set (as in the
        // kernel's own header checks).
        args.push("-D__EXPORTED_HEADERS__".into());
    }
    Some(args)
}

/// Include directories to compile against, in order, and whether they are
/// a raw source tree rather than exported headers.
fn include_dirs() -> Option<(Vec<PathBuf>, bool)> {
    if let Some(dir) = std::env::var_os("LIVEUPDATE_UAPI_INCLUDE") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("linux/liveupdate.h").is_file(),
            "LIVEUPDATE_UAPI_INCLUDE={} has no linux/liveupdate.h",
            dir.display()
        );
        return Some((vec![dir], false));
    }
    // This crate is tools/liveupdate/liveupdate in the project repository.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let build = std::env::var_os("BUILD").map_or_else(|| repo.join("build"), PathBuf::from);
    for exported in ["obj-c/usr/include", "obj-rust/usr/include"] {
        let dir = build.join(exported);
        if dir.join("linux/liveupdate.h").is_file() {
            return Some((vec![dir], false));
        }
    }
    // The prepared source tree: its uapi dirs (asm-generic etc. come from
    // the arch uapi dir and the system headers).
    let src = build.join("src/linux");
    if src.join("include/uapi/linux/liveupdate.h").is_file() {
        let dirs = vec![
            src.join("include/uapi"),
            src.join("arch/x86/include/uapi"),
            src.join("arch/x86/include/generated/uapi"),
        ];
        return Some((dirs, true));
    }
    eprintln!(
        "note: uapi layout check skipped: no kernel uapi header linux/liveupdate.h (set \
         LIVEUPDATE_UAPI_INCLUDE to a directory that has it, e.g. an exported build/obj-c/usr/include; \
         looked in {})",
        build.display()
    );
    None
}

const C_PROGRAM: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include <linux/liveupdate.h>

#define S(t) printf("sizeof %s %zu\nalignof %s %zu\n", #t, sizeof(struct t), #t, _Alignof(struct t))
#define F(t, f) printf("offsetof %s.%s %zu\nsizeof %s.%s %zu\n", #t, #f, offsetof(struct t, f), \
                       #t, #f, sizeof(((struct t *)0)->f))
#define C(c) printf("const %s %llu\n", #c, (unsigned long long)(c))

int main(void)
{
	C(LIVEUPDATE_IOCTL_TYPE);
	C(LIVEUPDATE_SESSION_NAME_LENGTH);
	C(LIVEUPDATE_CMD_CREATE_SESSION);
	C(LIVEUPDATE_CMD_RETRIEVE_SESSION);
	C(LIVEUPDATE_CMD_SESSION_PRESERVE_FD);
	C(LIVEUPDATE_CMD_SESSION_RETRIEVE_FD);
	C(LIVEUPDATE_CMD_SESSION_FINISH);
	C(LIVEUPDATE_CMD_SESSION_GET_NAME);
	C(LIVEUPDATE_IOCTL_CREATE_SESSION);
	C(LIVEUPDATE_IOCTL_RETRIEVE_SESSION);
	C(LIVEUPDATE_SESSION_PRESERVE_FD);
	C(LIVEUPDATE_SESSION_RETRIEVE_FD);
	C(LIVEUPDATE_SESSION_FINISH);
	C(LIVEUPDATE_SESSION_GET_NAME);

	S(liveupdate_ioctl_create_session);
	F(liveupdate_ioctl_create_session, size);
	F(liveupdate_ioctl_create_session, fd);
	F(liveupdate_ioctl_create_session, name);
	S(liveupdate_ioctl_retrieve_session);
	F(liveupdate_ioctl_retrieve_session, size);
	F(liveupdate_ioctl_retrieve_session, fd);
	F(liveupdate_ioctl_retrieve_session, name);
	S(liveupdate_session_preserve_fd);
	F(liveupdate_session_preserve_fd, size);
	F(liveupdate_session_preserve_fd, fd);
	F(liveupdate_session_preserve_fd, token);
	S(liveupdate_session_retrieve_fd);
	F(liveupdate_session_retrieve_fd, size);
	F(liveupdate_session_retrieve_fd, fd);
	F(liveupdate_session_retrieve_fd, token);
	S(liveupdate_session_finish);
	F(liveupdate_session_finish, size);
	F(liveupdate_session_finish, reserved);
	S(liveupdate_session_get_name);
	F(liveupdate_session_get_name, size);
	F(liveupdate_session_get_name, reserved);
	F(liveupdate_session_get_name, name);
	return 0;
}
"#;

/// Compile and run the C program; its output as a key -> value map.
fn c_values() -> Option<BTreeMap<String, u64>> {
    let include = include_args()?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("uapi_layout");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, C_PROGRAM).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(include);
    cmd.args(["-std=gnu11", "-Wall", "-Werror", "-o"]).arg(&exe).arg(&src);
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "compiling the layout probe failed ({cmd:?}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&exe).output().expect("cannot run the layout probe");
    assert!(out.status.success());
    let mut map = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (key, value) = line.rsplit_once(' ').unwrap();
        map.insert(key.to_string(), value.parse().unwrap());
    }
    Some(map)
}

macro_rules! field {
    ($expect:ident, $cname:literal, $ty:ty, $field:ident) => {{
        let value = <$ty>::default_for_layout();
        $expect.push((
            concat!("offsetof ", $cname, ".", stringify!($field)).to_string(),
            offset_of!($ty, $field) as u64,
        ));
        $expect.push((
            concat!("sizeof ", $cname, ".", stringify!($field)).to_string(),
            size_of_val(&value.$field) as u64,
        ));
    }};
}

macro_rules! strukt {
    ($expect:ident, $cname:literal, $ty:ty, $($field:ident),+) => {{
        $expect.push((concat!("sizeof ", $cname).to_string(), size_of::<$ty>() as u64));
        $expect.push((concat!("alignof ", $cname).to_string(), align_of::<$ty>() as u64));
        $( field!($expect, $cname, $ty, $field); )+
    }};
}

/// A value of each struct, only to measure field sizes.
trait DefaultForLayout {
    fn default_for_layout() -> Self;
}
impl DefaultForLayout for CreateSession {
    fn default_for_layout() -> Self {
        CreateSession::new([0; 64])
    }
}
impl DefaultForLayout for RetrieveSession {
    fn default_for_layout() -> Self {
        RetrieveSession::new([0; 64])
    }
}
impl DefaultForLayout for PreserveFd {
    fn default_for_layout() -> Self {
        PreserveFd::new(0, 0)
    }
}
impl DefaultForLayout for RetrieveFd {
    fn default_for_layout() -> Self {
        RetrieveFd::new(0)
    }
}
impl DefaultForLayout for Finish {
    fn default_for_layout() -> Self {
        Finish::new()
    }
}
impl DefaultForLayout for GetName {
    fn default_for_layout() -> Self {
        GetName::new()
    }
}

fn rust_values() -> Vec<(String, u64)> {
    let mut e: Vec<(String, u64)> = Vec::new();
    let consts: [(&str, u64); 14] = [
        ("LIVEUPDATE_IOCTL_TYPE", LIVEUPDATE_IOCTL_TYPE.into()),
        ("LIVEUPDATE_SESSION_NAME_LENGTH", LIVEUPDATE_SESSION_NAME_LENGTH as u64),
        ("LIVEUPDATE_CMD_CREATE_SESSION", LIVEUPDATE_CMD_CREATE_SESSION.into()),
        ("LIVEUPDATE_CMD_RETRIEVE_SESSION", LIVEUPDATE_CMD_RETRIEVE_SESSION.into()),
        ("LIVEUPDATE_CMD_SESSION_PRESERVE_FD", LIVEUPDATE_CMD_SESSION_PRESERVE_FD.into()),
        ("LIVEUPDATE_CMD_SESSION_RETRIEVE_FD", LIVEUPDATE_CMD_SESSION_RETRIEVE_FD.into()),
        ("LIVEUPDATE_CMD_SESSION_FINISH", LIVEUPDATE_CMD_SESSION_FINISH.into()),
        ("LIVEUPDATE_CMD_SESSION_GET_NAME", LIVEUPDATE_CMD_SESSION_GET_NAME.into()),
        ("LIVEUPDATE_IOCTL_CREATE_SESSION", LIVEUPDATE_IOCTL_CREATE_SESSION as u64),
        ("LIVEUPDATE_IOCTL_RETRIEVE_SESSION", LIVEUPDATE_IOCTL_RETRIEVE_SESSION as u64),
        ("LIVEUPDATE_SESSION_PRESERVE_FD", LIVEUPDATE_SESSION_PRESERVE_FD as u64),
        ("LIVEUPDATE_SESSION_RETRIEVE_FD", LIVEUPDATE_SESSION_RETRIEVE_FD as u64),
        ("LIVEUPDATE_SESSION_FINISH", LIVEUPDATE_SESSION_FINISH as u64),
        ("LIVEUPDATE_SESSION_GET_NAME", LIVEUPDATE_SESSION_GET_NAME as u64),
    ];
    for (name, value) in consts {
        e.push((format!("const {name}"), value));
    }
    strukt!(e, "liveupdate_ioctl_create_session", CreateSession, size, fd, name);
    strukt!(e, "liveupdate_ioctl_retrieve_session", RetrieveSession, size, fd, name);
    strukt!(e, "liveupdate_session_preserve_fd", PreserveFd, size, fd, token);
    strukt!(e, "liveupdate_session_retrieve_fd", RetrieveFd, size, fd, token);
    strukt!(e, "liveupdate_session_finish", Finish, size, reserved);
    strukt!(e, "liveupdate_session_get_name", GetName, size, reserved, name);
    e
}

#[test]
fn rust_definitions_match_the_kernel_header() {
    let Some(c) = c_values() else { return };
    let rust = rust_values();
    let mut mismatches = Vec::new();
    for (key, value) in &rust {
        match c.get(key) {
            Some(cv) if cv == value => {}
            Some(cv) => mismatches.push(format!("{key}: C {cv:#x}, Rust {value:#x}")),
            None => mismatches.push(format!("{key}: not printed by the C probe")),
        }
    }
    assert_eq!(c.len(), rust.len(), "the C probe and the Rust list cover different items");
    assert!(mismatches.is_empty(), "uapi mismatches:\n{}", mismatches.join("\n"));
}

#[test]
fn size_fields_are_filled_in() {
    assert_eq!(CreateSession::new([0; 64]).size as usize, size_of::<CreateSession>());
    assert_eq!(RetrieveSession::new([0; 64]).size as usize, size_of::<RetrieveSession>());
    assert_eq!(PreserveFd::new(3, 7).size as usize, size_of::<PreserveFd>());
    assert_eq!(RetrieveFd::new(7).size as usize, size_of::<RetrieveFd>());
    assert_eq!(Finish::new().size as usize, size_of::<Finish>());
    assert_eq!(GetName::new().size as usize, size_of::<GetName>());
}
