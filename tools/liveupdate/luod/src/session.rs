// SPDX-License-Identifier: GPL-2.0
//! The sessions luod tracks, each behind its own lock, and the registry
//! that finds them.
//!
//! # Locks
//!
//! In the order they nest:
//! 1. `Daemon::kexec` (loads, reboots, the manifest);
//! 2. [`Session::inner`]: one session's fd and files; held across the
//!    kernel calls on that session, never across a client's file;
//! 3. leaves, under which nothing else is taken: the [`Registry`] lock
//!    (which sessions exist, usage per uid, connections per uid; nothing
//!    blocks under it), the formats of the next kernel, and the keeper's
//!    lock (which may wait for the holder: at most its socket timeouts,
//!    and a restart of it).
//!
//! `Daemon::kexec` is only ever tried (`try_lock`) by create and close,
//! so they never wait for a load or a reboot.
//!
//! Session locks nest in one case: a retrieve that just made its session
//! `Retrieved` (or removed it) rewrites the kept list of incoming
//! sessions, which locks each session still `Incoming`. A thread holding
//! an `Incoming` session's lock never waits for another session's lock,
//! so this cannot close a cycle.
//!
//! No lock is held while a client's fd is examined or dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::SessFd;
use crate::proto::State;

/// Most files luod tracks per session.
pub const MAX_FILES_PER_SESSION: usize = 3000;

/// Direction byte of an outgoing session's key.
pub const OUT: u8 = b'o';
/// Direction byte of an incoming (or retrieved) session's key.
pub const IN: u8 = b'i';

/// The key of a session: its direction byte, then its kernel name.
pub fn key(dir: u8, kname: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(kname.len() + 1);
    k.push(dir);
    k.extend_from_slice(kname);
    k
}

/// One preserved file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRec {
    /// Its size at preserve time.
    pub bytes: u64,
    /// The compatible of the handler that preserves it, if known.
    pub compat: Option<String>,
}

/// What a session's lock protects.
#[derive(Debug, Default)]
pub struct Inner {
    /// The session fd (`None`: an incoming session not retrieved yet).
    pub fd: Option<SessFd>,
    /// Its files by token.
    pub files: BTreeMap<u64, FileRec>,
    /// `files` is complete (false after a restart through the fd store).
    pub files_known: bool,
    /// Closed or finished: the registry no longer has it.
    pub gone: bool,
}

/// A session.
///
/// # Invariants
///
/// `files` and `bytes` equal the count and the sum of `inner.files` once
/// the thread that changes `inner` releases it.
#[derive(Debug)]
pub struct Session {
    /// Direction byte and kernel name.
    pub key: Vec<u8>,
    /// The uid that owns it (from the kernel name; `None`: root's).
    pub owner: Option<u32>,
    state: AtomicU8,
    files: AtomicU32,
    bytes: AtomicU64,
    /// Its fd and files.
    pub inner: Mutex<Inner>,
}

impl Session {
    /// A new session.
    pub fn new(key: Vec<u8>, state: State, inner: Inner) -> Arc<Self> {
        let owner = key.get(1..).and_then(crate::names::owner);
        let s = Arc::new(Self {
            key,
            owner,
            state: AtomicU8::new(state as u8),
            files: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
            inner: Mutex::new(inner),
        });
        {
            let g = s.lock();
            s.summarize(&g);
        }
        s
    }

    /// The kernel name.
    pub fn kname(&self) -> &[u8] {
        self.key.get(1..).unwrap_or_default()
    }

    /// Lock it.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Its state (without its lock).
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed)).unwrap_or(State::Incoming)
    }

    /// Set its state; the caller holds its lock.
    pub fn set_state(&self, _held: &Inner, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Its file count and bytes (without its lock).
    pub fn counts(&self) -> (u32, u64) {
        (self.files.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }

    /// Refresh the counts from `held` (its locked inner).
    pub fn summarize(&self, held: &Inner) {
        let n = u32::try_from(held.files.len()).unwrap_or(u32::MAX);
        let b = held.files.values().fold(0u64, |a, f| a.saturating_add(f.bytes));
        self.files.store(n, Ordering::Relaxed);
        self.bytes.store(b, Ordering::Relaxed);
    }

    /// The record kept with its fd for a restart: `2`, state, files
    /// complete, file count (`u32`), then per file token and bytes (`u64`)
    /// and the code of its handler's compatible ([`COMPAT_CODES`]).
    pub fn record(&self, held: &Inner) -> Vec<u8> {
        let mut v = Vec::with_capacity(RECORD_HEADER + RECORD_PER_FILE * held.files.len());
        v.push(b'2');
        v.push(self.state() as u8);
        v.push(u8::from(held.files_known));
        v.extend_from_slice(&(held.files.len() as u32).to_le_bytes());
        for (t, f) in &held.files {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&f.bytes.to_le_bytes());
            v.push(compat_code(f.compat.as_deref()));
        }
        v
    }
}

/// Handler compatibles a record names by a code (its index + 1; 0: none
/// or another). New ones go at the end: a code is kept across a restart,
/// and a luod that does not know one reads the file as of unknown kind.
pub const COMPAT_CODES: &[&str] = &[
    crate::image::MEMFD_COMPATIBLE,
    crate::image::VFIO_PCI_COMPATIBLE,
    crate::image::HUGETLB_MEMFD_COMPATIBLE,
    crate::image::VFIO_PCI_RUNNING_COMPATIBLE,
];
const RECORD_HEADER: usize = 7;
const RECORD_PER_FILE: usize = 17;
// Every session's record fits in one holder packet.
const _: () = assert!(RECORD_HEADER + RECORD_PER_FILE * MAX_FILES_PER_SESSION <= crate::keeper::MAX_RECORD);

fn compat_code(c: Option<&str>) -> u8 {
    c.and_then(|c| COMPAT_CODES.iter().position(|k| *k == c)).map_or(0, |i| i as u8 + 1)
}

/// Parse a record written by [`Session::record`]: state, files, whether
/// they are complete.
pub fn parse_record(r: &[u8]) -> Option<(State, BTreeMap<u64, FileRec>, bool)> {
    let rest = r.strip_prefix(b"2")?;
    let state = State::from_u8(*rest.first()?)?;
    let known = *rest.get(1)? != 0;
    let n = u32::from_le_bytes(rest.get(2..6)?.try_into().ok()?) as usize;
    if n > MAX_FILES_PER_SESSION || rest.len() != RECORD_HEADER - 1 + RECORD_PER_FILE * n {
        return None;
    }
    let mut files = BTreeMap::new();
    for p in rest[RECORD_HEADER - 1..].chunks_exact(RECORD_PER_FILE) {
        let token = u64::from_le_bytes(p.get(..8)?.try_into().ok()?);
        let bytes = u64::from_le_bytes(p.get(8..16)?.try_into().ok()?);
        let code = *p.get(16)? as usize;
        let compat = code.checked_sub(1).and_then(|i| COMPAT_CODES.get(i)).map(|c| c.to_string());
        files.insert(token, FileRec { bytes, compat });
    }
    Some((state, files, known))
}

/// What a uid uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Outgoing sessions.
    pub sessions: u64,
    /// Preserved files.
    pub files: u64,
    /// Preserved bytes.
    pub bytes: u64,
    /// Open connections.
    pub connections: u64,
}

/// Which sessions exist, and what each uid uses. A leaf lock.
#[derive(Debug, Default)]
pub struct Registry {
    /// Sessions by key.
    pub sessions: BTreeMap<Vec<u8>, Arc<Session>>,
    /// Usage by uid (root too, for `luoctl status`; root has no limits).
    pub usage: BTreeMap<u32, Usage>,
}

impl Registry {
    /// The usage of `uid`.
    pub fn usage(&mut self, uid: u32) -> &mut Usage {
        self.usage.entry(uid).or_default()
    }

    /// Remove `s` if the registry still has it under its key.
    pub fn remove(&mut self, s: &Arc<Session>) -> bool {
        if self.sessions.get(&s.key).is_some_and(|x| Arc::ptr_eq(x, s)) {
            self.sessions.remove(&s.key);
            return true;
        }
        false
    }

    /// Give back what the outgoing session `s` was charged (`files`
    /// files of `bytes` bytes, and the session itself if `session`).
    pub fn uncharge(&mut self, s: &Session, session: bool, files: u64, bytes: u64) {
        let uid = s.owner.unwrap_or(0);
        let u = self.usage(uid);
        if session {
            u.sessions = u.sessions.saturating_sub(1);
        }
        u.files = u.files.saturating_sub(files);
        u.bytes = u.bytes.saturating_sub(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut files = BTreeMap::new();
        files.insert(1, FileRec { bytes: 4096, compat: Some("memfd-v2".into()) });
        files.insert(2, FileRec { bytes: 2 << 20, compat: Some("hugetlb-memfd-rs-v1".into()) });
        files.insert(3, FileRec { bytes: 0, compat: Some("vfio-pci-rs-v1".into()) });
        files.insert(u64::MAX, FileRec { bytes: 0, compat: None });
        let s = Session::new(key(IN, b"u1001/vm"), State::Retrieved, Inner::default());
        let inner = Inner { files: files.clone(), files_known: true, ..Default::default() };
        let r = s.record(&inner);
        assert_eq!(parse_record(&r), Some((State::Retrieved, files, true)));
        for n in 0..r.len() {
            assert_eq!(parse_record(&r[..n]), None);
        }
        assert_eq!(s.owner, Some(1001));
        assert_eq!(s.kname(), b"u1001/vm");
    }

    /// The codes are kept across a restart, by luods of other versions.
    #[test]
    fn compat_codes_are_stable() {
        assert_eq!(compat_code(Some("memfd-v2")), 1);
        assert_eq!(compat_code(Some("vfio-pci-rs-v1")), 2);
        assert_eq!(compat_code(Some("hugetlb-memfd-rs-v1")), 3);
        assert_eq!(compat_code(Some("vfio-pci-rs-v2")), 4);
        assert_eq!(compat_code(Some("memfd-v1")), 0);
        assert_eq!(compat_code(None), 0);
        // A code this luod does not know: a file of unknown kind.
        let s = Session::new(key(OUT, b"x"), State::Outgoing, Inner::default());
        let mut files = BTreeMap::new();
        files.insert(1, FileRec { bytes: 1, compat: Some("memfd-v2".into()) });
        let mut r = s.record(&Inner { files, files_known: true, ..Default::default() });
        *r.last_mut().unwrap() = COMPAT_CODES.len() as u8 + 1;
        let (_, files, _) = parse_record(&r).unwrap();
        assert_eq!(files[&1].compat, None);
    }

    #[test]
    fn registry_removes_only_the_same_session() {
        let mut r = Registry::default();
        let a = Session::new(key(OUT, b"x"), State::Outgoing, Inner::default());
        let b = Session::new(key(OUT, b"x"), State::Outgoing, Inner::default());
        r.sessions.insert(a.key.clone(), Arc::clone(&b));
        assert!(!r.remove(&a));
        assert!(r.remove(&b));
    }
}
