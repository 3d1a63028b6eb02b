// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
//! Packets with file descriptors (`SCM_RIGHTS`) on `SOCK_SEQPACKET` sockets.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

/// Most fds accepted in one received packet; more are closed.
const RECV_FDS: usize = 8;

/// A received packet.
#[derive(Debug)]
pub struct Packet {
    /// Its bytes (up to the buffer size).
    pub data: Vec<u8>,
    /// It was longer than the buffer (the rest is lost).
    pub truncated: bool,
    /// Some fds did not fit (they were closed by the kernel).
    pub fds_truncated: bool,
    /// The fds that came with it (close-on-exec).
    pub fds: Vec<OwnedFd>,
}

/// Send one packet with `fds` attached.
pub fn send(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && (fds.len() > RECV_FDS || !cmsg.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "too many fds for one packet"));
    }
    let n = net::sendmsg(sock, &[IoSlice::new(data)], &mut cmsg, SendFlags::NOSIGNAL)?;
    if n != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send of a packet"));
    }
    Ok(())
}

/// Receive one packet of at most `max` bytes. `Ok(None)` at end of file.
pub fn recv(sock: impl AsFd, max: usize) -> io::Result<Option<Packet>> {
    let mut buf = vec![0u8; max];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let msg = loop {
        match net::recvmsg(
            sock.as_fd(),
            &mut [IoSliceMut::new(&mut buf)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::TRUNC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r?,
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    if msg.bytes == 0 && fds.is_empty() && !msg.flags.contains(ReturnFlags::TRUNC) {
        return Ok(None);
    }
    let truncated = msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > max;
    buf.truncate(msg.bytes.min(max));
    Ok(Some(Packet { data: buf, truncated, fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC), fds }))
}

/// A new `SOCK_SEQPACKET` Unix socket (close-on-exec).
pub fn seqpacket() -> io::Result<OwnedFd> {
    Ok(net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// Connect a `SOCK_SEQPACKET` socket to the filesystem path `path`.
pub fn connect_path(path: &Path) -> io::Result<OwnedFd> {
    let s = seqpacket()?;
    net::connect(&s, &SocketAddrUnix::new(path)?)?;
    Ok(s)
}

/// Connect a `SOCK_SEQPACKET` socket to an abstract address.
pub fn connect_abstract(name: &[u8]) -> io::Result<OwnedFd> {
    let s = seqpacket()?;
    net::connect(&s, &SocketAddrUnix::new_abstract_name(name)?)?;
    Ok(s)
}

/// A connected pair of `SOCK_SEQPACKET` Unix sockets (close-on-exec), for
/// tests and in-process peers.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_their_fds() {
        let (a, b) = socketpair().unwrap();
        let (x, _y) = socketpair().unwrap();
        send(&a, b"one", &[x.as_fd()]).unwrap();
        send(&a, b"two", &[]).unwrap();
        let p = recv(&b, 16).unwrap().unwrap();
        assert_eq!((p.data.as_slice(), p.fds.len(), p.truncated), (&b"one"[..], 1, false));
        let p = recv(&b, 2).unwrap().unwrap();
        assert_eq!((p.data.as_slice(), p.fds.len(), p.truncated), (&b"tw"[..], 0, true));
        let too_many: Vec<BorrowedFd<'_>> = (0..RECV_FDS + 1).map(|_| x.as_fd()).collect();
        assert!(send(&a, b"x", &too_many).is_err());
        drop(a);
        assert!(recv(&b, 16).unwrap().is_none());
    }
}
