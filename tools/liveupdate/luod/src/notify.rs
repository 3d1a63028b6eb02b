// SPDX-License-Identifier: GPL-2.0
//! systemd integration without libsystemd: `sd_notify` (with fds, for the
//! fd store) and socket activation (`LISTEN_FDS`).

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::net::{
    self, AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
};

/// The first fd passed by socket activation.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Is `$NOTIFY_SOCKET` set (we run as a `Type=notify` service)?
pub fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// Send `state` (e.g. `"READY=1"`) to `$NOTIFY_SOCKET`, with `fds`
/// attached (for `FDSTORE=1`). `Ok(false)` when not under systemd.
pub fn notify(state: &str, fds: &[BorrowedFd<'_>]) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let path = path.into_encoded_bytes();
    let addr = match path.split_first() {
        Some((b'@', rest)) => SocketAddrUnix::new_abstract_name(rest)?,
        Some((b'/', _)) => SocketAddrUnix::new(std::ffi::OsString::from_vec_compat(path))?,
        _ => return Err(io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not a unix socket")),
    };
    let sock =
        net::socket_with(AddressFamily::UNIX, net::SocketType::DGRAM, net::SocketFlags::CLOEXEC, None)?;
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > 4 || !cmsg.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
    }
    net::sendmsg_addr(&sock, &addr, &[io::IoSlice::new(state.as_bytes())], &mut cmsg, SendFlags::NOSIGNAL)?;
    Ok(true)
}

trait FromVecCompat {
    fn from_vec_compat(v: Vec<u8>) -> Self;
}

impl FromVecCompat for std::ffi::OsString {
    fn from_vec_compat(v: Vec<u8>) -> Self {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(v)
    }
}

/// A name systemd accepts as `FDNAME`: 1..=255 printable ASCII bytes, no `:`.
pub fn valid_fdname(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= 255 && name.iter().all(|&b| (0x21..0x7f).contains(&b) && b != b':')
}

/// The fds passed by systemd (`LISTEN_PID` must be us), with their
/// `LISTEN_FDNAMES` names. Takes ownership of fds 3.. and unsets the
/// variables so children do not see them.
pub fn listen_fds() -> Vec<(OwnedFd, String)> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|p| p == rustix::process::getpid().as_raw_nonzero().get());
    let n = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok()).unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|s| s.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !pid_ok || !(1..=4096).contains(&n) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0..n {
        let raw = SD_LISTEN_FDS_START + i;
        // Only take fds that are really open.
        // SAFETY: fcntl(F_GETFD) on any integer is harmless.
        if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
            continue;
        }
        // SAFETY: systemd passed fds 3..3+LISTEN_FDS to this process
        // (LISTEN_PID is ours) and nothing else in luod owns them: luod
        // calls this once, first thing, before opening any fd.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
        out.push((fd, names.get(i as usize).cloned().unwrap_or_default()));
    }
    out
}
