// SPDX-License-Identifier: GPL-2.0
//! The test's own packet plumbing, independent of luod's: raw
//! `SOCK_SEQPACKET` connections, packets with `SCM_RIGHTS`, a receive with
//! a deadline, and the header of a reply read by hand. Tests use it where
//! they must see exactly what luod sends (an unsolicited error reply, a
//! hang-up) or must not block (a request left pending).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// A new `SOCK_SEQPACKET` Unix socket (close-on-exec).
pub fn seqpacket() -> io::Result<OwnedFd> {
    Ok(net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// A raw connection to the luod socket at `path`.
pub fn connect(path: &str) -> io::Result<OwnedFd> {
    let s = seqpacket()?;
    net::connect(&s, &SocketAddrUnix::new(path)?)?;
    Ok(s)
}

/// Send one packet with `fds` attached.
pub fn send(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > 4 || !cmsg.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds"));
    }
    let n = net::sendmsg(sock, &[IoSlice::new(data)], &mut cmsg, SendFlags::NOSIGNAL)?;
    if n != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// A received packet: its bytes and fds.
#[derive(Debug)]
pub struct Packet {
    /// The bytes.
    pub data: Vec<u8>,
    /// The fds that came with it.
    pub fds: Vec<OwnedFd>,
}

/// Is `fd` readable (or hung up) within `timeout`?
pub fn readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// What a receive with a deadline got.
#[derive(Debug)]
pub enum Got {
    /// A packet.
    Packet(Packet),
    /// The peer hung up (end of file, or the connection was reset).
    HangUp,
    /// Nothing before the deadline.
    Nothing,
}

/// Receive one packet of at most 64 KiB, waiting at most `timeout`.
pub fn recv(sock: impl AsFd, timeout: Duration) -> io::Result<Got> {
    if !readable(sock.as_fd(), timeout)? {
        return Ok(Got::Nothing);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match net::recvmsg(
            sock.as_fd(),
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CONNRESET) => return Ok(Got::HangUp),
            Err(rustix::io::Errno::AGAIN) => return Ok(Got::Nothing),
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(Got::HangUp);
    }
    buf.truncate(msg.bytes.min(buf.len()));
    Ok(Got::Packet(Packet { data: buf, fds }))
}

/// The header and errno of a reply, read by hand: (version, op, errno).
pub fn reply_header(data: &[u8]) -> Result<(u16, u16, u32), String> {
    if data.len() < 12 || &data[..4] != b"LUOD" {
        return Err(format!("not a luod reply: {:02x?}", &data[..data.len().min(16)]));
    }
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    Ok((u16_at(4), u16_at(6), u32::from_le_bytes([data[8], data[9], data[10], data[11]])))
}
