// SPDX-License-Identifier: GPL-2.0
//! Who sent a request: per-message credentials and capabilities.
//!
//! Every accepted connection gets `SO_PASSCRED`, so the kernel attaches
//! the sender's pid, uid and gid to **each** packet (`SCM_CREDENTIALS`):
//! a connection handed to another process (or kept across a `setuid()`)
//! speaks with the credentials of whoever sends, not of whoever connected.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use rustix::net;

/// Most fds kept from one packet; a packet with more is refused.
const RECV_FDS: usize = 8;

/// `CAP_SYS_BOOT` (include/uapi/linux/capability.h).
const CAP_SYS_BOOT: u32 = 22;

/// The sender of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cred {
    /// Its pid (in luod's pid namespace; 0 if it has none there).
    pub pid: i32,
    /// Its uid (in luod's user namespace).
    pub uid: u32,
}

/// A request packet.
#[derive(Debug)]
pub struct Packet {
    /// Its bytes.
    pub data: Vec<u8>,
    /// It was longer than the buffer.
    pub truncated: bool,
    /// More fds than a packet may carry came with it (all closed).
    pub too_many_fds: bool,
    /// The fds that came with it.
    pub fds: Vec<OwnedFd>,
    /// The sender, if the kernel said (it always does with `SO_PASSCRED`).
    pub cred: Option<Cred>,
}

/// Turn on per-message credentials on an accepted connection.
pub fn pass_credentials(sock: BorrowedFd<'_>) -> io::Result<()> {
    Ok(net::sockopt::set_socket_passcred(sock, true)?)
}

/// Receive one packet of at most `max` bytes with its credentials.
/// `Ok(None)` at end of file.
///
/// A packet without credentials of its own (sent before `SO_PASSCRED` was
/// on; the listening socket has it, and accepted sockets inherit it, so
/// only a race could cause this) shows pid 0 and the overflow uid; so does
/// a sender outside luod's pid namespace. Such a packet is attributed to
/// `connector` (the connection's `SO_PEERCRED`) only if the uid matches
/// it; otherwise it has no usable credentials (`cred: None`).
///
/// `recvmsg` is called through libc, not rustix: rustix's `UCred` holds
/// the pid as a non-zero type, and pid 0 is exactly the case above.
pub fn recv(sock: BorrowedFd<'_>, max: usize, connector: Cred) -> io::Result<Option<Packet>> {
    const SPACE: usize = 256;
    let mut buf = vec![0u8; max];
    let mut space = [0u64; SPACE / 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr().cast();
    msg.msg_controllen = SPACE;
    let n = loop {
        // SAFETY: `msg` points to one iovec over `buf` (len bytes, alive
        // and exclusively borrowed for the call) and to `space` (SPACE
        // bytes, u64-aligned as cmsghdr needs) for the control data.
        let n =
            unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    let mut cred = None;
    // SAFETY: the CMSG_* macros walk the control data the kernel wrote into
    // `space` (msg_controllen bytes); each header they return lies within
    // it, and its data holds cmsg_len - CMSG_LEN(0) bytes.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                    for i in 0..len / size_of::<i32>() {
                        let raw = data.cast::<i32>().add(i).read_unaligned();
                        // SAFETY (of from_raw_fd): the kernel just installed
                        // this fd in our table for this message; we own it.
                        fds.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if len >= size_of::<libc::ucred>() => {
                    let u = data.cast::<libc::ucred>().read_unaligned();
                    cred = Some(Cred { pid: u.pid, uid: u.uid });
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let cred = match cred {
        Some(c) if c.pid == 0 => (c.uid == connector.uid).then_some(connector),
        c => c,
    };
    let trunc = msg.msg_flags & libc::MSG_TRUNC != 0;
    let too_many_fds = msg.msg_flags & libc::MSG_CTRUNC != 0 || fds.len() > RECV_FDS;
    if n == 0 && fds.is_empty() && !trunc {
        return Ok(None);
    }
    let truncated = trunc || n > max;
    buf.truncate(n.min(max));
    Ok(Some(Packet { data: buf, truncated, too_many_fds, fds, cred }))
}

/// The uid the kernel shows for ids not mapped into luod's user namespace.
pub fn overflow_uid() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/overflowuid")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65534)
}

/// May the sender `cred` load or start the next kernel?
///
/// It must be root in luod's user namespace **when it sent the request**
/// (`cred.uid`, which the kernel took at send time: a process that
/// changes uid afterwards, e.g. by exec'ing a setuid program, does not
/// become root for a request it sent before), and hold `CAP_SYS_BOOT` in
/// its effective set in luod's user namespace (a process in a user
/// namespace of its own shows a full `CapEff` that means nothing here).
///
/// The pid is pinned with a pidfd before `/proc/<pid>` is read, and the
/// process must still be alive afterwards (its pidfd not readable) with
/// every uid 0, so a pid reused in between is not mistaken for the sender.
pub fn may_boot(cred: Cred) -> Result<(), String> {
    if cred.uid != 0 {
        return Err(format!("the sender is uid {}, not root", cred.uid));
    }
    let pid = rustix::process::Pid::from_raw(cred.pid).ok_or("the sender has no pid in luod's namespace")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open({}): {e}", cred.pid))?;
    // Without CONFIG_USER_NS (no /proc/self/ns/user) every process is in
    // the initial user namespace.
    match std::fs::read_link("/proc/self/ns/user") {
        Ok(mine) => {
            let p = format!("/proc/{}/ns/user", cred.pid);
            if std::fs::read_link(&p).map_err(|e| format!("{p}: {e}"))? != mine {
                return Err(format!("pid {} is in another user namespace", cred.pid));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("/proc/self/ns/user: {e}")),
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", cred.pid))
        .map_err(|e| format!("reading the status of pid {}: {e}", cred.pid))?;
    let mut fds = [rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN)];
    let exited = rustix::event::poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 }))
        .map_err(|e| e.to_string())?
        > 0;
    if exited {
        return Err(format!("pid {} exited", cred.pid));
    }
    if !caps_allow(&status) {
        return Err(format!("pid {} lacks CAP_SYS_BOOT (or is not root throughout)", cred.pid));
    }
    Ok(())
}

/// From a `/proc/<pid>/status` text: every uid (real, effective, saved,
/// filesystem) is 0 and the effective capabilities have `CAP_SYS_BOOT`.
fn caps_allow(status: &str) -> bool {
    let field = |k: &str| status.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    let uids: Vec<&str> = field("Uid:").map(|v| v.split_whitespace().collect()).unwrap_or_default();
    let root = uids.len() == 4 && uids.iter().all(|u| *u == "0");
    let cap = field("CapEff:").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0);
    root && cap & (1 << CAP_SYS_BOOT) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_parse() {
        let s = "Name:\tx\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
        assert!(caps_allow(s));
        let s = "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffbfffff\n";
        assert!(!caps_allow(s), "bit 22 clear");
        let s = "Uid:\t1001\t0\t0\t0\nCapEff:\t000001ffffffffff\n";
        assert!(!caps_allow(s), "real uid 1001 (a setuid program)");
        assert!(!caps_allow("Uid:\t0\nCapEff:\t000001ffffffffff\n"));
        assert!(!caps_allow("Uid:\t0\t0\t0\t0\n"));
    }

    #[test]
    fn this_process() {
        let me = Cred { pid: std::process::id() as i32, uid: rustix::process::getuid().as_raw() };
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(may_boot(me).is_ok(), me.uid == 0 && caps_allow(&status));
        assert!(may_boot(Cred { uid: 1001, ..me }).is_err());
    }
}
