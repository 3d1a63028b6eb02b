// SPDX-License-Identifier: GPL-2.0
//! Keeping session fds across a luod restart.
//!
//! Under systemd, luod puts every session fd in the service's fd store and
//! gets them back in `LISTEN_FDS` when it restarts. The `FDNAME` is the
//! key: `o` (outgoing), `i` (incoming) or `m` (luod's manifest) followed by
//! the hex of the kernel session name, so an outgoing and a retrieved
//! `vm-42` never share a name, and any name (`:`, non-ASCII) can be
//! stored. Each store or removal is followed by `BARRIER=1`: when luod
//! replies, systemd has processed it.
//!
//! Elsewhere luod starts a *holder*: a copy of the luod binary
//! (`/proc/self/exe --holder`, in its own session) that listens on
//! `holder.sock` in luod's 0700 state directory (not an abstract name that
//! any user could take first), keeps a duplicate of every session fd with
//! luod's record of it, and hands them all back to the next luod that
//! connects (same euid only). luod tells the holder about every change; if
//! the holder dies, luod starts another and gives it everything again.
//!
//! Holder packets (`SOCK_SEQPACKET`): `LUOH`, op `u8` (1 put, 2 drop,
//! 3 end of the initial dump), key (`u16` length + bytes), and for put a
//! record (`u32` length + bytes) and optionally one fd.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
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
/// The holder's socket in the state directory `dir`.
pub fn holder_path(dir: &Path) -> PathBuf {
    dir.join("holder.sock")
}

/// A connection to the holder.
#[derive(Debug)]
struct HolderLink {
    sock: OwnedFd,
}

impl HolderLink {
    /// Connect to the holder of `dir`, starting one if none answers, and
    /// take what it holds.
    fn connect_or_spawn(dir: &Path) -> io::Result<(Self, Vec<Held>)> {
        let path = holder_path(dir);
        if let Ok(sock) = fdpass::connect_path(&path) {
            return Self::take_over(sock);
        }
        Command::new("/proc/self/exe")
            .arg0("luod-holder")
            .arg("--holder")
            .arg("--state-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut last = io::Error::other("holder did not start");
        for _ in 0..200 {
            match fdpass::connect_path(&path) {
                Ok(sock) => return Self::take_over(sock),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(last)
    }

    fn take_over(sock: OwnedFd) -> io::Result<(Self, Vec<Held>)> {
        let peer = net::sockopt::socket_peercred(&sock)?;
        if peer.uid != rustix::process::geteuid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the holder socket belongs to uid {}, not us: refusing it", peer.uid.as_raw()),
            ));
        }
        net::sockopt::set_socket_timeout(&sock, net::sockopt::Timeout::Recv, Some(Duration::from_secs(10)))?;
        net::sockopt::set_socket_timeout(&sock, net::sockopt::Timeout::Send, Some(Duration::from_secs(10)))?;
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
        Ok((Self { sock }, held))
    }

    fn put(&self, key: &[u8], record: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
        fdpass::send(&self.sock, &encode(PUT, key, record), &fds)
    }

    fn drop_key(&self, key: &[u8]) -> io::Result<()> {
        fdpass::send(&self.sock, &encode(DROP, key, &[]), &[])
    }
}

/// Run the holder of the state directory `dir` (`luod --holder`).
pub fn run_holder(dir: &Path) -> io::Result<()> {
    let _ = rustix::process::setsid();
    let _ = rustix::process::chdir("/");
    let path = holder_path(dir);
    let listener = fdpass::seqpacket()?;
    // Only a luod holding the state directory's lock starts a holder, and
    // it found nobody listening: the path is stale.
    let _ = std::fs::remove_file(&path);
    net::bind(&listener, &SocketAddrUnix::new(path.as_path())?)?;
    net::listen(&listener, 4)?;
    let me = rustix::process::geteuid();
    let mut entries: BTreeMap<Vec<u8>, (Vec<u8>, Option<OwnedFd>)> = BTreeMap::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let conn = match net::accept_with(&listener, net::SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(10);
        match net::sockopt::socket_peercred(&conn) {
            Ok(c) if c.uid == me => {}
            _ => continue,
        }
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

/// Where luod keeps sessions for its next start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeeperKind {
    /// Nowhere: sessions die with luod.
    Nothing,
    /// The holder process.
    Holder,
    /// systemd's fd store.
    FdStore,
}

/// What is kept, for replaying to a new holder.
struct Kept {
    record: Vec<u8>,
    fd: Option<OwnedFd>,
}

struct KeeperState {
    link: Option<HolderLink>,
    mirror: BTreeMap<Vec<u8>, Kept>,
}

/// Keeps session fds for luod's next start.
///
/// # Locks
///
/// `state` is taken with a session's lock held (order: session → keeper)
/// and never with the registry lock held.
pub struct Keeper {
    kind: KeeperKind,
    /// The holder could not be restarted: sessions are kept nowhere.
    lost: std::sync::atomic::AtomicBool,
    dir: PathBuf,
    /// The holder link and the mirror of what it holds.
    state: Mutex<KeeperState>,
}

/// The `FDNAME` of a key: its direction byte, then the hex of the name.
pub fn fdname(key: &[u8]) -> String {
    let Some((&dir, name)) = key.split_first() else { return String::new() };
    let mut s = String::with_capacity(1 + 2 * name.len());
    s.push(char::from(dir));
    for b in name {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The key of an `FDNAME` written by [`fdname`].
pub fn key_of_fdname(n: &str) -> Option<Vec<u8>> {
    let (dir, hex) = n.split_at_checked(1)?;
    if !matches!(dir, "o" | "i" | "m" | "n") || hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    let mut key = vec![dir.as_bytes()[0]];
    for i in (0..hex.len()).step_by(2) {
        key.push(u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()?);
    }
    Some(key)
}

impl Keeper {
    /// A keeper of `kind` (for [`KeeperKind::Holder`], the holder of the
    /// state directory `dir` is started or taken over); what an earlier
    /// luod left is returned.
    pub fn new(kind: KeeperKind, dir: &Path) -> (Self, Vec<Held>) {
        let mut held = Vec::new();
        let mut link = None;
        let mut kind = kind;
        if kind == KeeperKind::Holder {
            match HolderLink::connect_or_spawn(dir) {
                Ok((l, h)) => {
                    held = h;
                    link = Some(l);
                }
                Err(e) => {
                    crate::log(&format!("warning: no holder process ({e}): sessions die with luod"));
                    kind = KeeperKind::Nothing;
                }
            }
        }
        let mut mirror = BTreeMap::new();
        for h in &mut held {
            let fd = h.fd.as_ref().and_then(|f| f.try_clone().ok());
            mirror.insert(h.key.clone(), Kept { record: h.record.clone(), fd });
        }
        let state = Mutex::new(KeeperState { link, mirror });
        (Self { kind, lost: Default::default(), dir: dir.to_path_buf(), state }, held)
    }

    /// Where sessions are kept.
    pub fn kind(&self) -> KeeperKind {
        self.kind
    }

    /// Where sessions are kept now: [`KeeperKind::Nothing`] once the
    /// holder died and could not be restarted (until a restart works).
    pub fn working(&self) -> KeeperKind {
        if self.lost.load(std::sync::atomic::Ordering::Relaxed) {
            KeeperKind::Nothing
        } else {
            self.kind
        }
    }

    fn lock(&self) -> MutexGuard<'_, KeeperState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `fd` (if any) and `record` under `key` (replacing what was).
    pub fn put(&self, key: &[u8], record: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        match self.kind {
            KeeperKind::Nothing => Ok(()),
            KeeperKind::FdStore => match fd {
                Some(fd) => {
                    let name = fdname(key);
                    sd_notify::notify_with_fds(
                        &[sd_notify::NotifyState::FdStore, sd_notify::NotifyState::FdName(&name)],
                        &[fd],
                    )?;
                    crate::notify::barrier()
                }
                None => Ok(()),
            },
            KeeperKind::Holder => {
                let mut st = self.lock();
                let dup = fd.map(|f| f.try_clone_to_owned()).transpose()?;
                st.mirror.insert(key.to_vec(), Kept { record: record.to_vec(), fd: dup });
                let r = st.link.as_ref().map(|l| l.put(key, record, fd));
                match r {
                    Some(Ok(())) => Ok(()),
                    _ => self.respawn(&mut st),
                }
            }
        }
    }

    /// Forget `key`.
    pub fn remove(&self, key: &[u8]) -> io::Result<()> {
        match self.kind {
            KeeperKind::Nothing => Ok(()),
            KeeperKind::FdStore => {
                let name = fdname(key);
                sd_notify::notify(&[
                    sd_notify::NotifyState::FdStoreRemove,
                    sd_notify::NotifyState::FdName(&name),
                ])?;
                crate::notify::barrier()
            }
            KeeperKind::Holder => {
                let mut st = self.lock();
                st.mirror.remove(key);
                let r = st.link.as_ref().map(|l| l.drop_key(key));
                match r {
                    Some(Ok(())) => Ok(()),
                    _ => self.respawn(&mut st),
                }
            }
        }
    }

    /// The holder died (or never answered): start another and give it
    /// everything again.
    fn respawn(&self, st: &mut KeeperState) -> io::Result<()> {
        st.link = None;
        self.lost.store(true, std::sync::atomic::Ordering::Relaxed);
        let (link, stale) = HolderLink::connect_or_spawn(&self.dir)?;
        // A holder that answered with entries of its own is not the one
        // that died: make it hold exactly the mirror.
        for h in stale {
            if !st.mirror.contains_key(&h.key) {
                link.drop_key(&h.key)?;
            }
        }
        for (key, k) in &st.mirror {
            link.put(key, &k.record, k.fd.as_ref().map(|f| f.as_fd()))?;
        }
        crate::log(&format!("holder restarted with {} entries", st.mirror.len()));
        st.link = Some(link);
        self.lost.store(false, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdnames() {
        for key in [&b"ovm-42"[..], b"ivm-42", b"ou1001/vm:42", "o\u{e9}t\u{e9}".as_bytes()] {
            let n = fdname(key);
            assert!(n.bytes().all(|b| b.is_ascii_alphanumeric()), "{n}");
            assert_eq!(key_of_fdname(&n).as_deref(), Some(key));
        }
        assert_ne!(fdname(b"ovm"), fdname(b"ivm"));
        assert_eq!(key_of_fdname("luod.sock"), None);
        assert_eq!(key_of_fdname("o6"), None);
        assert_eq!(key_of_fdname("o"), None);
        assert_eq!(key_of_fdname("x61"), None);
    }

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
