// SPDX-License-Identifier: GPL-2.0
//! Keeping session fds across a luod restart.
//!
//! Under systemd, luod puts every session fd in the service's fd store
//! (`FDSTORE=1`, `FDNAME=<session name>`) and gets them back in
//! `LISTEN_FDS` when it restarts. Elsewhere it starts a *holder*: a copy of
//! the luod binary (`/proc/self/exe --holder`, in its own session) that
//! listens on the abstract Unix socket `luod-holder:<socket path>`, keeps a
//! duplicate of every session fd with luod's record of it, and hands them
//! all back to the next luod that connects (same euid only). luod tells the
//! holder about every change, so a session closed or finished through luod
//! is released by the holder too.
//!
//! Holder packets (`SOCK_SEQPACKET`): `LUOH`, op `u8` (1 put, 2 drop,
//! 3 end of the initial dump), key (`u16` length + bytes: `o` or `i` and
//! the session name), and for put a record (`u32` length + bytes) and
//! optionally one fd.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::net::{self, SocketAddrUnix};

use crate::fdpass;

const MAGIC: &[u8; 4] = b"LUOH";
const PUT: u8 = 1;
const DROP: u8 = 2;
const END: u8 = 3;
/// Largest holder packet.
pub const MAX_PACKET: usize = 64 * 1024;
/// Largest record.
pub const MAX_RECORD: usize = MAX_PACKET - 512;

/// One held entry: luod's record and the session fd (none for an incoming
/// session luod knows of but has not retrieved).
#[derive(Debug)]
pub struct Held {
    /// Key: `o`/`i` and the session name.
    pub key: Vec<u8>,
    /// luod's record of the session.
    pub record: Vec<u8>,
    /// The session fd.
    pub fd: Option<OwnedFd>,
}

/// The abstract socket name of the holder for luod socket `socket`.
pub fn holder_name(socket: &str) -> Vec<u8> {
    format!("luod-holder:{socket}").into_bytes()
}

fn encode(op: u8, key: &[u8], record: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + key.len() + record.len());
    v.extend_from_slice(MAGIC);
    v.push(op);
    let key = &key[..key.len().min(255)];
    v.extend_from_slice(&(key.len() as u16).to_le_bytes());
    v.extend_from_slice(key);
    if op == PUT {
        let record = &record[..record.len().min(MAX_RECORD)];
        v.extend_from_slice(&(record.len() as u32).to_le_bytes());
        v.extend_from_slice(record);
    }
    v
}

fn decode(p: &[u8]) -> Option<(u8, Vec<u8>, Vec<u8>)> {
    let rest = p.strip_prefix(MAGIC)?;
    let (&op, rest) = rest.split_first()?;
    let klen = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let key = rest.get(2..2 + klen)?.to_vec();
    let rest = &rest[2 + klen..];
    if op != PUT {
        return rest.is_empty().then_some((op, key, Vec::new()));
    }
    let rlen = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let record = rest.get(4..4 + rlen)?.to_vec();
    (rest.len() == 4 + rlen).then_some((op, key, record))
}

/// luod's connection to its holder.
#[derive(Debug)]
pub struct HolderLink {
    sock: OwnedFd,
}

impl HolderLink {
    /// Connect to a running holder and take its entries; or start a new
    /// holder (nothing held yet). `exe` is the program to start.
    pub fn connect_or_spawn(socket: &str) -> io::Result<(Self, Vec<Held>)> {
        let name = holder_name(socket);
        if let Ok(sock) = fdpass::connect_abstract(&name) {
            return Self::take_over(sock);
        }
        Command::new("/proc/self/exe")
            .arg0("luod-holder")
            .args(["--holder", "--socket", socket])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut last = io::Error::other("holder did not start");
        for _ in 0..200 {
            match fdpass::connect_abstract(&name) {
                Ok(sock) => return Self::take_over(sock),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(last)
    }

    fn take_over(sock: OwnedFd) -> io::Result<(Self, Vec<Held>)> {
        // Abstract names have no permissions: anyone could have bound this
        // one first. Only a holder of our own euid gets the session fds.
        let peer = net::sockopt::socket_peercred(&sock)?;
        if peer.uid != rustix::process::geteuid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the holder socket belongs to uid {}, not us: refusing it", peer.uid.as_raw()),
            ));
        }
        net::sockopt::set_socket_timeout(&sock, net::sockopt::Timeout::Recv, Some(Duration::from_secs(10)))?;
        let mut held = Vec::new();
        loop {
            let p = fdpass::recv(&sock, MAX_PACKET)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "holder closed"))?;
            let Some((op, key, record)) = decode(&p.data) else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "bad packet from the holder"));
            };
            match op {
                END => break,
                PUT => held.push(Held { key, record, fd: p.fds.into_iter().next() }),
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "bad op from the holder")),
            }
        }
        net::sockopt::set_socket_timeout(&sock, net::sockopt::Timeout::Recv, None)?;
        Ok((Self { sock }, held))
    }

    /// Hold (or replace) `key`.
    pub fn put(&self, key: &[u8], record: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        fdpass::send(&self.sock, &encode(PUT, key, record), &fds)
    }

    /// Release `key`.
    pub fn drop_key(&self, key: &[u8]) -> io::Result<()> {
        fdpass::send(&self.sock, &encode(DROP, key, &[]), &[])
    }
}

/// The holder process (`luod --holder --socket PATH`): never returns
/// unless it cannot listen (another holder owns the name: exit quietly).
pub fn run_holder(socket: &str) -> io::Result<()> {
    let _ = rustix::process::setsid();
    let _ = rustix::process::chdir("/");
    let listener = fdpass::seqpacket()?;
    net::bind(&listener, &SocketAddrUnix::new_abstract_name(&holder_name(socket))?)?;
    net::listen(&listener, 4)?;
    let me = rustix::process::geteuid();
    let mut entries: BTreeMap<Vec<u8>, (Vec<u8>, Option<OwnedFd>)> = BTreeMap::new();
    loop {
        let Ok(conn) = net::accept_with(&listener, net::SocketFlags::CLOEXEC) else {
            continue;
        };
        match net::sockopt::socket_peercred(&conn) {
            Ok(c) if c.uid == me => {}
            _ => continue,
        }
        // Hand everything over, then follow luod's changes until it goes.
        let mut ok = true;
        for (key, (record, fd)) in &entries {
            let fds: Vec<BorrowedFd<'_>> = fd.iter().map(|f| f.as_fd()).collect();
            if fdpass::send(&conn, &encode(PUT, key, record), &fds).is_err() {
                ok = false;
                break;
            }
        }
        if !ok || fdpass::send(&conn, &encode(END, &[], &[]), &[]).is_err() {
            continue;
        }
        while let Ok(Some(p)) = fdpass::recv(&conn, MAX_PACKET) {
            match decode(&p.data) {
                Some((PUT, key, record)) => {
                    entries.insert(key, (record, p.fds.into_iter().next()));
                }
                Some((DROP, key, _)) => {
                    entries.remove(&key);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip() {
        let p = encode(PUT, b"ovm", b"rec");
        assert_eq!(decode(&p), Some((PUT, b"ovm".to_vec(), b"rec".to_vec())));
        let p = encode(DROP, b"ivm", b"");
        assert_eq!(decode(&p), Some((DROP, b"ivm".to_vec(), Vec::new())));
        for n in 0..p.len() {
            assert_eq!(decode(&p[..n]), None);
        }
    }
}
