// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Raw definitions from the kernel's `include/uapi/linux/liveupdate.h`.
//!
//! These mirror the C header one to one (sizes, field offsets, ioctl
//! numbers). They are checked against the real header by the
//! `uapi_layout` test, which compiles a C program that includes it.
//! Most users want [`Device`](crate::Device) and [`Session`](crate::Session)
//! instead.

use rustix::ioctl::{opcode, Opcode};

/// `LIVEUPDATE_IOCTL_TYPE`: the ioctl type (magic) of LUO, `0xBA`.
pub const LIVEUPDATE_IOCTL_TYPE: u8 = 0xBA;

/// `LIVEUPDATE_SESSION_NAME_LENGTH`: size of a session name buffer,
/// including the terminating NUL (so names are 1..=63 bytes).
pub const LIVEUPDATE_SESSION_NAME_LENGTH: usize = 64;

/// `LIVEUPDATE_CMD_CREATE_SESSION` (device fd).
pub const LIVEUPDATE_CMD_CREATE_SESSION: u8 = 0x00;
/// `LIVEUPDATE_CMD_RETRIEVE_SESSION` (device fd).
pub const LIVEUPDATE_CMD_RETRIEVE_SESSION: u8 = 0x01;
/// `LIVEUPDATE_CMD_SESSION_PRESERVE_FD` (session fd).
pub const LIVEUPDATE_CMD_SESSION_PRESERVE_FD: u8 = 0x40;
/// `LIVEUPDATE_CMD_SESSION_RETRIEVE_FD` (session fd).
pub const LIVEUPDATE_CMD_SESSION_RETRIEVE_FD: u8 = 0x41;
/// `LIVEUPDATE_CMD_SESSION_FINISH` (session fd).
pub const LIVEUPDATE_CMD_SESSION_FINISH: u8 = 0x42;
/// `LIVEUPDATE_CMD_SESSION_GET_NAME` (session fd).
pub const LIVEUPDATE_CMD_SESSION_GET_NAME: u8 = 0x43;

/// `LIVEUPDATE_IOCTL_CREATE_SESSION` = `_IO(0xBA, 0x00)`.
pub const LIVEUPDATE_IOCTL_CREATE_SESSION: Opcode =
    opcode::none(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_CREATE_SESSION);
/// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION` = `_IO(0xBA, 0x01)`.
pub const LIVEUPDATE_IOCTL_RETRIEVE_SESSION: Opcode =
    opcode::none(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_RETRIEVE_SESSION);
/// `LIVEUPDATE_SESSION_PRESERVE_FD` = `_IO(0xBA, 0x40)`.
pub const LIVEUPDATE_SESSION_PRESERVE_FD: Opcode =
    opcode::none(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_PRESERVE_FD);
/// `LIVEUPDATE_SESSION_RETRIEVE_FD` = `_IO(0xBA, 0x41)`.
pub const LIVEUPDATE_SESSION_RETRIEVE_FD: Opcode =
    opcode::none(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_RETRIEVE_FD);
/// `LIVEUPDATE_SESSION_FINISH` = `_IO(0xBA, 0x42)`.
pub const LIVEUPDATE_SESSION_FINISH: Opcode =
    opcode::none(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_FINISH);
/// `LIVEUPDATE_SESSION_GET_NAME` = `_IO(0xBA, 0x43)`.
pub const LIVEUPDATE_SESSION_GET_NAME: Opcode =
    opcode::none(LIVEUPDATE_IOCTL_TYPE, LIVEUPDATE_CMD_SESSION_GET_NAME);

/// The `size` value for a struct: its full size (the kernel's min size).
const fn size_of_u32<T>() -> u32 {
    core::mem::size_of::<T>() as u32
}

/// `struct liveupdate_ioctl_create_session`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateSession {
    /// Input: `sizeof(struct liveupdate_ioctl_create_session)`.
    pub size: u32,
    /// Output: the new session fd.
    pub fd: i32,
    /// Input: NUL-terminated session name.
    pub name: [u8; LIVEUPDATE_SESSION_NAME_LENGTH],
}

/// `struct liveupdate_ioctl_retrieve_session`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrieveSession {
    /// Input: `sizeof(struct liveupdate_ioctl_retrieve_session)`.
    pub size: u32,
    /// Output: the retrieved session fd.
    pub fd: i32,
    /// Input: NUL-terminated session name.
    pub name: [u8; LIVEUPDATE_SESSION_NAME_LENGTH],
}

/// `struct liveupdate_session_preserve_fd` (`token` is `__aligned_u64`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreserveFd {
    /// Input: `sizeof(struct liveupdate_session_preserve_fd)`.
    pub size: u32,
    /// Input: the fd to preserve.
    pub fd: i32,
    /// Input: the caller's token for this file, unique in the session.
    pub token: u64,
}

/// `struct liveupdate_session_retrieve_fd` (`token` is `__aligned_u64`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetrieveFd {
    /// Input: `sizeof(struct liveupdate_session_retrieve_fd)`.
    pub size: u32,
    /// Output: the new fd of the restored file.
    pub fd: i32,
    /// Input: the token the file was preserved under.
    pub token: u64,
}

/// `struct liveupdate_session_finish`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finish {
    /// Input: `sizeof(struct liveupdate_session_finish)`.
    pub size: u32,
    /// Input: must be zero.
    pub reserved: u32,
}

/// `struct liveupdate_session_get_name`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetName {
    /// Input: `sizeof(struct liveupdate_session_get_name)`.
    pub size: u32,
    /// Input: must be zero.
    pub reserved: u32,
    /// Output: NUL-terminated session name.
    pub name: [u8; LIVEUPDATE_SESSION_NAME_LENGTH],
}

impl CreateSession {
    /// A request for `name` (a raw, NUL-padded name buffer), `size` filled in.
    pub const fn new(name: [u8; LIVEUPDATE_SESSION_NAME_LENGTH]) -> Self {
        Self { size: size_of_u32::<Self>(), fd: -1, name }
    }
}

impl RetrieveSession {
    /// A request for `name` (a raw, NUL-padded name buffer), `size` filled in.
    pub const fn new(name: [u8; LIVEUPDATE_SESSION_NAME_LENGTH]) -> Self {
        Self { size: size_of_u32::<Self>(), fd: -1, name }
    }
}

impl PreserveFd {
    /// A request to preserve `fd` under `token`, `size` filled in.
    pub const fn new(fd: i32, token: u64) -> Self {
        Self { size: size_of_u32::<Self>(), fd, token }
    }
}

impl RetrieveFd {
    /// A request to retrieve the file preserved under `token`, `size` filled in.
    pub const fn new(token: u64) -> Self {
        Self { size: size_of_u32::<Self>(), fd: -1, token }
    }
}

impl Finish {
    /// A finish request, `size` filled in, `reserved` zero.
    pub const fn new() -> Self {
        Self { size: size_of_u32::<Self>(), reserved: 0 }
    }
}

impl Default for Finish {
    fn default() -> Self {
        Self::new()
    }
}

impl GetName {
    /// A get-name request, `size` filled in, `reserved` zero.
    pub const fn new() -> Self {
        Self { size: size_of_u32::<Self>(), reserved: 0, name: [0; LIVEUPDATE_SESSION_NAME_LENGTH] }
    }
}

impl Default for GetName {
    fn default() -> Self {
        Self::new()
    }
}
