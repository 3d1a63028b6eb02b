// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! The only module with `unsafe` code: it issues the LUO ioctls and the
//! `kexec_file_load` system call, and turns kernel-returned fd numbers into
//! [`OwnedFd`]s.
//!
//! Every function here takes the exact request type of its ioctl, so the
//! opcode/struct pairing is fixed at this one place (and checked against
//! the C header by the `uapi_layout` test).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::ioctl::{ioctl, Opcode, Updater};

use crate::uapi;

/// Issue ioctl `OP` on `fd` with `arg` as its in/out argument.
///
/// # Safety
///
/// `T` must be the argument struct the kernel expects for `OP`: LUO reads
/// at most `arg.size` bytes and writes back at most `min(arg.size,
/// sizeof(kernel struct))` bytes, so `arg.size` must be `size_of::<T>()`
/// (all our request constructors do that) and `T` must have the layout
/// of the kernel struct.
unsafe fn update<const OP: Opcode, T>(fd: BorrowedFd<'_>, arg: &mut T) -> Result<(), Errno> {
    // SAFETY: the caller guarantees that `T` is the kernel's argument type
    // for `OP`; `arg` is a valid, exclusive reference for the whole call.
    unsafe { ioctl(fd, Updater::<OP, T>::new(arg)) }
}

/// Take ownership of an fd number the kernel just returned in a reply.
fn owned_from_reply(fd: RawFd) -> Result<OwnedFd, Errno> {
    if fd < 0 {
        // A successful LUO ioctl always installs a new fd; anything else is
        // a kernel bug, reported as an I/O error rather than trusted.
        return Err(Errno::IO);
    }
    // SAFETY: on success LUO installed a fresh fd (fd_install) for this
    // process and handed its number to us alone; nothing else owns it, so
    // wrapping it in an `OwnedFd` (closed exactly once on drop) is sound.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `LIVEUPDATE_IOCTL_CREATE_SESSION` on the device fd.
pub(crate) fn create_session(dev: BorrowedFd<'_>, req: &mut uapi::CreateSession) -> Result<OwnedFd, Errno> {
    req.size = core::mem::size_of::<uapi::CreateSession>() as u32;
    // SAFETY: `CreateSession` is `struct liveupdate_ioctl_create_session`
    // (layout checked by tests/uapi_layout.rs) and `size` is set to it.
    unsafe { update::<{ uapi::LIVEUPDATE_IOCTL_CREATE_SESSION }, _>(dev, req)? };
    owned_from_reply(req.fd)
}

/// `LIVEUPDATE_IOCTL_RETRIEVE_SESSION` on the device fd.
pub(crate) fn retrieve_session(
    dev: BorrowedFd<'_>,
    req: &mut uapi::RetrieveSession,
) -> Result<OwnedFd, Errno> {
    req.size = core::mem::size_of::<uapi::RetrieveSession>() as u32;
    // SAFETY: `RetrieveSession` is `struct liveupdate_ioctl_retrieve_session`
    // (layout checked by tests/uapi_layout.rs) and `size` is set to it.
    unsafe { update::<{ uapi::LIVEUPDATE_IOCTL_RETRIEVE_SESSION }, _>(dev, req)? };
    owned_from_reply(req.fd)
}

/// `LIVEUPDATE_SESSION_PRESERVE_FD` on a session fd.
pub(crate) fn preserve_fd(session: BorrowedFd<'_>, file: BorrowedFd<'_>, token: u64) -> Result<(), Errno> {
    let mut req = uapi::PreserveFd::new(file.as_raw_fd(), token);
    // SAFETY: `PreserveFd` is `struct liveupdate_session_preserve_fd`
    // (layout checked by tests/uapi_layout.rs), built with its own size.
    // The fd number is borrowed for the duration of the call.
    unsafe { update::<{ uapi::LIVEUPDATE_SESSION_PRESERVE_FD }, _>(session, &mut req) }
}

/// `LIVEUPDATE_SESSION_RETRIEVE_FD` on a session fd.
pub(crate) fn retrieve_fd(session: BorrowedFd<'_>, token: u64) -> Result<OwnedFd, Errno> {
    let mut req = uapi::RetrieveFd::new(token);
    // SAFETY: `RetrieveFd` is `struct liveupdate_session_retrieve_fd`
    // (layout checked by tests/uapi_layout.rs), built with its own size.
    unsafe { update::<{ uapi::LIVEUPDATE_SESSION_RETRIEVE_FD }, _>(session, &mut req)? };
    owned_from_reply(req.fd)
}

/// `LIVEUPDATE_SESSION_FINISH` on a session fd.
pub(crate) fn finish(session: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut req = uapi::Finish::new();
    // SAFETY: `Finish` is `struct liveupdate_session_finish` (layout
    // checked by tests/uapi_layout.rs), built with its own size.
    unsafe { update::<{ uapi::LIVEUPDATE_SESSION_FINISH }, _>(session, &mut req) }
}

/// `LIVEUPDATE_SESSION_GET_NAME` on a session fd.
pub(crate) fn get_name(session: BorrowedFd<'_>) -> Result<uapi::GetName, Errno> {
    let mut req = uapi::GetName::new();
    // SAFETY: `GetName` is `struct liveupdate_session_get_name` (layout
    // checked by tests/uapi_layout.rs), built with its own size.
    unsafe { update::<{ uapi::LIVEUPDATE_SESSION_GET_NAME }, _>(session, &mut req)? };
    Ok(req)
}

/// `kexec_file_load(2)`: `kernel` and `initrd` are borrowed for the call;
/// `initrd == None` passes -1 and the caller must set
/// `KEXEC_FILE_NO_INITRAMFS` in `flags`.
pub(crate) fn kexec_file_load(
    kernel: Option<BorrowedFd<'_>>,
    initrd: Option<BorrowedFd<'_>>,
    cmdline: &CStr,
    flags: u64,
) -> std::io::Result<()> {
    let kfd = kernel.map_or(-1, |fd| fd.as_raw_fd());
    let ifd = initrd.map_or(-1, |fd| fd.as_raw_fd());
    let bytes = cmdline.to_bytes_with_nul();
    // SAFETY: kexec_file_load(kernel_fd, initrd_fd, cmdline_len, cmdline,
    // flags) only reads `cmdline_len` bytes from `cmdline`, which points to
    // a live NUL-terminated buffer of exactly that length; the fds are
    // borrowed (valid) or -1. No memory of ours is written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            libc::c_long::from(kfd),
            libc::c_long::from(ifd),
            bytes.len() as libc::c_ulong,
            bytes.as_ptr(),
            flags as libc::c_ulong,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Close every fd of this process above 2 that is not in `keep` (the
/// holder's start-up; see [`crate::holder`]), with `close_range(2)`
/// between the kept ones.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().filter_map(|&f| u32::try_from(f).ok()).filter(|&f| f > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: u32 = 3;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > first {
            let last = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: called once at the start of the holder, before it
            // creates any fd-owning object: no live OwnedFd/File in this
            // process refers to these numbers (they were inherited), so
            // closing them invalidates nothing. close_range() takes plain
            // integers and no pointers.
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        }
        first = k.saturating_add(1);
    }
}

impl FromRawFd for crate::Session {
    /// # Safety
    ///
    /// `fd` must be an open fd that the caller owns (as for
    /// [`OwnedFd::from_raw_fd`]); it should be a LUO session fd.
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        // SAFETY: the caller hands over ownership of the open fd `fd`.
        Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } }
    }
}

impl FromRawFd for crate::Device {
    /// # Safety
    ///
    /// `fd` must be an open fd that the caller owns (as for
    /// [`OwnedFd::from_raw_fd`]); it should be an fd of `/dev/liveupdate`.
    unsafe fn from_raw_fd(fd: RawFd) -> Self {
        // SAFETY: the caller hands over ownership of the open fd `fd`.
        Self { fd: unsafe { OwnedFd::from_raw_fd(fd) } }
    }
}
