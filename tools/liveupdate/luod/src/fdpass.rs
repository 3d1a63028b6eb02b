// SPDX-License-Identifier: GPL-2.0
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
