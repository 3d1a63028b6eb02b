// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Loading and starting the next kernel (`kexec_file_load(2)` and
//! `reboot(LINUX_REBOOT_CMD_KEXEC)`).
//!
//! Live update needs `kexec_file_load` (not `kexec_load`): only then does
//! Kexec HandOver pass the preserved state to the next kernel. LUO saves
//! the open outgoing sessions during [`exec`], before any device is shut
//! down; if that fails, `reboot` returns the error and the kexec is
//! cancelled.

use std::convert::Infallible;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::system::{reboot, RebootCommand};

use crate::sys;

/// `KEXEC_FILE_UNLOAD`: unload the loaded image.
pub const KEXEC_FILE_UNLOAD: u64 = 0x1;
/// `KEXEC_FILE_ON_CRASH`: load into the crash kernel area.
pub const KEXEC_FILE_ON_CRASH: u64 = 0x2;
/// `KEXEC_FILE_NO_INITRAMFS`: there is no initramfs (initrd fd is ignored).
pub const KEXEC_FILE_NO_INITRAMFS: u64 = 0x4;

/// Load `kernel` (a bzImage/Image fd), an optional `initrd` and the
/// command line of the next kernel with `kexec_file_load(2)`.
///
/// Fails with `InvalidInput` if `cmdline` has a NUL byte; other errors
/// are the system call's (`EPERM` without `CAP_SYS_BOOT`, `ENOEXEC` for
/// an image the kernel cannot load, `EBUSY` while another load runs...).
pub fn load(kernel: impl AsFd, initrd: Option<BorrowedFd<'_>>, cmdline: &str) -> io::Result<()> {
    let cmdline = CString::new(cmdline)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "kernel command line has a NUL byte"))?;
    let flags = if initrd.is_some() { 0 } else { KEXEC_FILE_NO_INITRAMFS };
    sys::kexec_file_load(Some(kernel.as_fd()), initrd, &cmdline, flags)
}

/// Unload a kernel loaded by [`load`].
pub fn unload() -> io::Result<()> {
    sys::kexec_file_load(None, None, c"", KEXEC_FILE_UNLOAD | KEXEC_FILE_NO_INITRAMFS)
}

/// Sync the file systems and reboot into the kernel loaded by [`load`].
///
/// On success this does not return. LUO serializes the outgoing sessions
/// first; an error there (or no loaded image: `EINVAL`) is returned and the
/// system keeps running.
pub fn exec() -> io::Result<Infallible> {
    rustix::fs::sync();
    reboot(RebootCommand::Kexec)?;
    // reboot(KEXEC) only returns on failure; if it ever returned 0, say so.
    Err(io::Error::other("reboot(LINUX_REBOOT_CMD_KEXEC) returned without rebooting"))
}
