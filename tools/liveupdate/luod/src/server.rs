// SPDX-License-Identifier: GPL-2.0
//! The daemon: state, request handling and the accept loop.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use liveupdate::Device;

use crate::backend::{Dev, SessFd};
use rustix::fs::{memfd_create, MemfdFlags};
use rustix::net;

use crate::keeper::{HolderLink, MAX_RECORD};
use crate::notify;
use crate::policy::Policy;
use crate::proto::{self, Entry, ErrorReply, HandOver, Reply, Request, State, StatusInfo};
use crate::{fdpass, log};

/// Name of luod's own session carrying its manifest across a kexec.
pub const MANIFEST_SESSION: &str = "luod.manifest";
/// Session names with this prefix are luod's own: clients cannot use them.
pub const RESERVED_PREFIX: &[u8] = b"luod.";
/// Most files luod tracks per session.
pub const MAX_FILES_PER_SESSION: usize = 3000;
/// Most concurrent client connections.
pub const MAX_CLIENTS: usize = 128;

/// Daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket path.
    pub socket: String,
    /// The LUO device node.
    pub device: PathBuf,
    /// The authorization policy.
    pub policy: Policy,
    /// Keep sessions in a holder process when not under systemd.
    pub holder: bool,
    /// Testing luod without LUO: see [`Dev::Fake`].
    pub fake_device: bool,
}

#[derive(Debug)]
struct Sess {
    session: Option<SessFd>,
    owner: Option<u32>,
    state: State,
    /// token -> size in bytes at preserve time.
    files: BTreeMap<u64, u64>,
}

impl Sess {
    fn bytes(&self) -> u64 {
        self.files.values().fold(0u64, |a, &b| a.saturating_add(b))
    }

    fn record(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + 16 * self.files.len());
        v.push(self.state as u8);
        v.extend_from_slice(&self.owner.unwrap_or(u32::MAX).to_le_bytes());
        v.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (t, b) in &self.files {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&b.to_le_bytes());
        }
        v
    }

    fn from_record(r: &[u8], session: Option<SessFd>) -> Option<Self> {
        let state = State::from_u8(*r.first()?)?;
        let owner = u32::from_le_bytes(r.get(1..5)?.try_into().ok()?);
        let n = u32::from_le_bytes(r.get(5..9)?.try_into().ok()?) as usize;
        if r.len() != 9 + 16 * n {
            return None;
        }
        let mut files = BTreeMap::new();
        for c in r[9..].chunks_exact(16) {
            files.insert(
                u64::from_le_bytes(c[..8].try_into().ok()?),
                u64::from_le_bytes(c[8..].try_into().ok()?),
            );
        }
        Some(Self { session, owner: (owner != u32::MAX).then_some(owner), state, files })
    }
}

enum Keeper {
    Holder(HolderLink),
    FdStore,
    Nothing,
}

struct Daemon {
    cfg: Config,
    dev: Option<Dev>,
    dev_error: String,
    outgoing: BTreeMap<Vec<u8>, Sess>,
    incoming: BTreeMap<Vec<u8>, Sess>,
    manifest: Option<SessFd>,
    keeper: Keeper,
    handed_over: Option<bool>,
    lu_number: Option<u64>,
}

fn err(errno: i32, message: impl Into<String>) -> ErrorReply {
    ErrorReply { errno: errno as u32, message: message.into() }
}

fn luo_err(e: &liveupdate::Error, what: &str) -> ErrorReply {
    err(e.errno(), format!("{what}: {e}"))
}

fn key(dir: u8, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(dir);
    k.extend_from_slice(name);
    k
}

fn show(name: &[u8]) -> String {
    proto::display_name(name)
}

impl Daemon {
    fn new(cfg: Config) -> Self {
        let opened =
            if cfg.fake_device { Ok(Dev::Fake) } else { Device::open_path(&cfg.device).map(Dev::Real) };
        let (dev, dev_error) = match opened {
            Ok(d) => (Some(d), String::new()),
            Err(e) => (None, format!("opening {}: {e}", cfg.device.display())),
        };
        if !dev_error.is_empty() {
            log(&dev_error);
        }
        let scanned = scan_kmsg();
        Daemon {
            dev,
            dev_error,
            outgoing: BTreeMap::new(),
            incoming: BTreeMap::new(),
            manifest: None,
            keeper: Keeper::Nothing,
            handed_over: scanned.map(|n| n.is_some()),
            lu_number: scanned.flatten(),
            cfg,
        }
    }

    fn may(&self, uid: u32, name: &[u8], owner: Option<u32>) -> bool {
        uid == 0 || owner == Some(uid) || self.cfg.policy.grants(uid, name)
    }

    fn dev(&self) -> Result<&Dev, ErrorReply> {
        self.dev.as_ref().ok_or_else(|| {
            err(libc::ENODEV, format!("{} is not usable: {}", self.cfg.device.display(), self.dev_error))
        })
    }

    fn keep(&self, dir: u8, name: &[u8], s: &Sess) {
        let fd = s.session.as_ref().map(|x| x.as_fd());
        let r = match &self.keeper {
            Keeper::Holder(h) => h.put(&key(dir, name), &s.record(), fd),
            Keeper::FdStore => match fd {
                Some(fd) if notify::valid_fdname(name) => {
                    let name = String::from_utf8_lossy(name);
                    notify::notify(&format!("FDSTORE=1\nFDNAME={name}"), &[fd]).map(drop)
                }
                Some(_) => Err(io::Error::other("name is not a valid FDNAME: not in the fd store")),
                None => Ok(()),
            },
            Keeper::Nothing => Ok(()),
        };
        if let Err(e) = r {
            log(&format!("warning: cannot keep session {} for a restart: {e}", show(name)));
        }
    }

    fn unkeep(&self, dir: u8, name: &[u8]) {
        let r = match &self.keeper {
            Keeper::Holder(h) => h.drop_key(&key(dir, name)),
            Keeper::FdStore if notify::valid_fdname(name) => {
                let name = String::from_utf8_lossy(name);
                notify::notify(&format!("FDSTOREREMOVE=1\nFDNAME={name}"), &[]).map(drop)
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            log(&format!("warning: cannot release session {} in the keeper: {e}", show(name)));
        }
    }

    fn visible(&self, uid: u32) -> Vec<Entry> {
        let mut v = Vec::new();
        for (map, _) in [(&self.outgoing, 'o'), (&self.incoming, 'i')] {
            for (name, s) in map {
                if self.may(uid, name, s.owner) {
                    v.push(Entry {
                        name: name.clone(),
                        state: s.state,
                        owner: s.owner,
                        files: s.files.len() as u32,
                        bytes: s.bytes(),
                    });
                }
            }
        }
        v
    }

    fn handover(&self, uid: u32) -> HandOver {
        let mut h = HandOver::default();
        for e in self.visible(uid) {
            match e.state {
                State::Outgoing => {
                    h.sessions += 1;
                    h.files += e.files;
                    h.bytes = h.bytes.saturating_add(e.bytes);
                }
                State::Incoming | State::Retrieved => h.dropped += 1,
            }
        }
        h
    }

    fn handle(
        &mut self,
        uid: u32,
        pid: i32,
        req: Request,
        mut fds: Vec<OwnedFd>,
    ) -> Result<(Reply, Option<OwnedFd>), ErrorReply> {
        let want_fds = match &req {
            Request::Preserve { .. } => 1..=1,
            Request::KexecLoad { .. } => 1..=2,
            _ => 0..=0,
        };
        if !want_fds.contains(&fds.len()) {
            return Err(err(
                libc::EINVAL,
                format!("{:?} takes {:?} fds, got {}", req.op(), want_fds, fds.len()),
            ));
        }
        if let Some(name) = match &req {
            Request::Create { name } | Request::Preserve { name, .. } | Request::Close { name } => Some(name),
            Request::RetrieveSession { name }
            | Request::RetrieveFd { name, .. }
            | Request::Finish { name } => Some(name),
            _ => None,
        } {
            if name.starts_with(RESERVED_PREFIX) {
                return Err(err(libc::EPERM, "session names starting with \"luod.\" are luod's own"));
            }
        }
        let done = Ok((Reply::Done, None));
        match req {
            Request::Status => {
                let vis = self.visible(uid);
                Ok((
                    Reply::Status(StatusInfo {
                        version: proto::VERSION,
                        device_ok: self.dev.is_some(),
                        device_error: self.dev_error.clone(),
                        handed_over: self.handed_over,
                        live_update_number: self.lu_number,
                        outgoing: self.handover(uid),
                        incoming: vis.iter().filter(|e| e.state == State::Incoming).count() as u32,
                        retrieved: vis.iter().filter(|e| e.state == State::Retrieved).count() as u32,
                    }),
                    None,
                ))
            }
            Request::List { offset } => {
                let vis = self.visible(uid);
                let total = vis.len() as u32;
                let entries = vis.into_iter().skip(offset as usize).take(proto::LIST_PAGE).collect();
                Ok((Reply::List { total, entries }, None))
            }
            Request::Create { name } => {
                if uid != 0
                    && self.cfg.policy.grants.iter().any(|g| name.starts_with(&g.prefix) && g.uid != uid)
                    && !self.cfg.policy.grants(uid, &name)
                {
                    return Err(err(
                        libc::EPERM,
                        format!("session name {} is reserved by the policy for another uid", show(&name)),
                    ));
                }
                if self.outgoing.contains_key(&name) {
                    return Err(err(libc::EEXIST, format!("an outgoing session {} exists", show(&name))));
                }
                let session = self.dev()?.create(&name).map_err(|e| luo_err(&e, "creating the session"))?;
                let s = Sess {
                    session: Some(session),
                    owner: Some(uid),
                    state: State::Outgoing,
                    files: BTreeMap::new(),
                };
                self.keep(b'o', &name, &s);
                self.outgoing.insert(name.clone(), s);
                done
            }
            Request::Preserve { name, token } => {
                let s = self.outgoing_of(uid, &name)?;
                if s.files.len() >= MAX_FILES_PER_SESSION {
                    return Err(err(
                        libc::ENOSPC,
                        format!("luod tracks at most {MAX_FILES_PER_SESSION} files per session"),
                    ));
                }
                if self.cfg.fake_device && s.files.contains_key(&token) {
                    return Err(err(libc::EEXIST, format!("token {token} is used in {}", show(&name))));
                }
                let fd = fds.pop().ok_or_else(|| err(libc::EINVAL, "no fd"))?;
                let size = rustix::fs::fstat(&fd).map(|st| st.st_size.max(0) as u64).unwrap_or(0);
                let session = s.session.as_ref().ok_or_else(|| err(libc::EIO, "session fd missing"))?;
                session.preserve_fd(fd.as_fd(), token).map_err(|e| luo_err(&e, "preserving the fd"))?;
                if let Some(s) = self.outgoing.get_mut(&name) {
                    s.files.insert(token, size);
                }
                if let Some(s) = self.outgoing.get(&name) {
                    self.keep(b'o', &name, s);
                }
                done
            }
            Request::Close { name } => {
                self.outgoing_of(uid, &name)?;
                self.unkeep(b'o', &name);
                self.outgoing.remove(&name);
                done
            }
            Request::RetrieveSession { name } => {
                let owner = self.incoming.get(&name).and_then(|s| s.owner);
                if !self.may(uid, &name, owner) {
                    return Err(err(libc::EPERM, format!("incoming session {} is not yours", show(&name))));
                }
                if let Some(s) = self.incoming.get(&name) {
                    if s.state == State::Retrieved {
                        return done;
                    }
                }
                let session = match self.dev()?.retrieve(&name) {
                    Ok(s) => s,
                    Err(liveupdate::Error::NotFound { .. }) => {
                        self.incoming.remove(&name);
                        self.unkeep(b'i', &name);
                        return Err(err(
                            libc::ENOENT,
                            format!("the previous kernel handed over no session {}", show(&name)),
                        ));
                    }
                    Err(e) => return Err(luo_err(&e, "retrieving the session")),
                };
                let (owner, files) = match self.incoming.remove(&name) {
                    Some(s) => (s.owner, s.files),
                    None => (None, BTreeMap::new()),
                };
                let s = Sess {
                    session: Some(session),
                    owner: owner.or((uid != 0).then_some(uid)),
                    state: State::Retrieved,
                    files,
                };
                self.keep(b'i', &name, &s);
                self.incoming.insert(name.clone(), s);
                log(&format!("uid {uid} (pid {pid}) retrieved session {}", show(&name)));
                done
            }
            Request::RetrieveFd { name, token } => {
                let s = self.retrieved(uid, &name)?;
                let session = s.session.as_ref().ok_or_else(|| err(libc::EIO, "session fd missing"))?;
                let fd = session.retrieve_fd(token).map_err(|e| luo_err(&e, "retrieving the fd"))?;
                Ok((Reply::Done, Some(fd)))
            }
            Request::Finish { name } => {
                let s = self.retrieved(uid, &name)?;
                let session = s.session.as_ref().ok_or_else(|| err(libc::EIO, "session fd missing"))?;
                session.finish().map_err(|e| luo_err(&e, "finishing the session"))?;
                self.unkeep(b'i', &name);
                self.incoming.remove(&name);
                log(&format!("uid {uid} (pid {pid}) finished session {}", show(&name)));
                done
            }
            Request::KexecLoad { cmdline } => {
                if uid != 0 {
                    return Err(err(libc::EPERM, "only root may load the next kernel"));
                }
                if !liveupdate_on(&cmdline) {
                    return Err(err(
                        libc::EINVAL,
                        "the new command line lacks liveupdate=on: nothing would be handed over",
                    ));
                }
                self.dev()?;
                let h = self.handover(0);
                self.write_manifest()?;
                let mut it = fds.into_iter();
                let kernel = it.next().ok_or_else(|| err(libc::EINVAL, "no kernel fd"))?;
                let initrd = it.next();
                liveupdate::kexec::load(&kernel, initrd.as_ref().map(|f| f.as_fd()), &cmdline).map_err(
                    |e| err(e.raw_os_error().unwrap_or(libc::EIO), format!("kexec_file_load: {e}")),
                )?;
                log(&format!(
                    "next kernel loaded by pid {pid}: {} sessions, {} files, {} bytes handed over; {} incoming sessions dropped",
                    h.sessions, h.files, h.bytes, h.dropped
                ));
                Ok((Reply::Kexec(h), None))
            }
        }
    }

    /// The outgoing session `name`, if `uid` may touch it.
    fn outgoing_of(&self, uid: u32, name: &[u8]) -> Result<&Sess, ErrorReply> {
        let s = self
            .outgoing
            .get(name)
            .ok_or_else(|| err(libc::ENOENT, format!("no outgoing session {}", show(name))))?;
        if !self.may(uid, name, s.owner) {
            return Err(err(libc::EPERM, format!("session {} is not yours", show(name))));
        }
        Ok(s)
    }

    fn retrieved(&self, uid: u32, name: &[u8]) -> Result<&Sess, ErrorReply> {
        let s = self
            .incoming
            .get(name)
            .ok_or_else(|| err(libc::ENOENT, format!("no retrieved session {}", show(name))))?;
        if !self.may(uid, name, s.owner) {
            return Err(err(libc::EPERM, format!("session {} is not yours", show(name))));
        }
        if s.state != State::Retrieved {
            return Err(err(libc::EINVAL, format!("session {} is not retrieved yet", show(name))));
        }
        Ok(s)
    }

    /// Write luod's manifest (names, owners, file counts of the outgoing
    /// sessions) into its own session, for the luod of the next kernel.
    fn write_manifest(&mut self) -> Result<(), ErrorReply> {
        let io_err =
            |e: io::Error| err(e.raw_os_error().unwrap_or(libc::EIO), format!("writing the manifest: {e}"));
        if self.manifest.take().is_some() {
            self.unkeep(b'm', MANIFEST_SESSION.as_bytes());
        }
        let mut text = String::from("luod-manifest 1\n");
        for (name, s) in &self.outgoing {
            let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
            let owner = s.owner.map_or("-".to_string(), |o| o.to_string());
            text.push_str(&format!("{hex} {owner} {}\n", hex_files(&s.files)));
        }
        let mem = memfd_create("luod-manifest", MemfdFlags::CLOEXEC).map_err(|e| io_err(e.into()))?;
        let mut f = File::from(mem);
        f.write_all(text.as_bytes()).map_err(io_err)?;
        let session = self
            .dev()?
            .create(MANIFEST_SESSION.as_bytes())
            .map_err(|e| luo_err(&e, "creating the manifest session"))?;
        session.preserve_fd(f.as_fd(), 0).map_err(|e| luo_err(&e, "preserving the manifest"))?;
        // Kept like the sessions: a luod restarted between the kernel load
        // and the kexec must not lose it.
        let kept = match &self.keeper {
            Keeper::Holder(h) => h.put(&key(b'm', MANIFEST_SESSION.as_bytes()), &[], Some(session.as_fd())),
            Keeper::FdStore => {
                notify::notify(&format!("FDSTORE=1\nFDNAME={MANIFEST_SESSION}"), &[session.as_fd()]).map(drop)
            }
            Keeper::Nothing => Ok(()),
        };
        if let Err(e) = kept {
            log(&format!("warning: cannot keep the manifest for a restart: {e}"));
        }
        self.manifest = Some(session);
        Ok(())
    }

    /// Read the previous luod's manifest, if the previous kernel has one.
    fn read_manifest(&mut self) {
        let Some(dev) = self.dev.as_ref() else { return };
        let session = match dev.retrieve(MANIFEST_SESSION.as_bytes()) {
            Ok(s) => s,
            Err(liveupdate::Error::NotFound { .. }) => return,
            Err(e) => {
                log(&format!("cannot retrieve the previous manifest: {e}"));
                return;
            }
        };
        self.handed_over = Some(true);
        let text = session.retrieve_fd(0).ok().and_then(|fd| {
            let mut f = File::from(fd);
            let mut s = String::new();
            f.seek(SeekFrom::Start(0)).ok()?;
            f.take(16 << 20).read_to_string(&mut s).ok()?;
            Some(s)
        });
        let _ = session.finish();
        let Some(text) = text else {
            log("the previous manifest is unreadable");
            return;
        };
        let mut lines = text.lines();
        if lines.next() != Some("luod-manifest 1") {
            log("the previous manifest has an unknown format");
            return;
        }
        for l in lines {
            let mut w = l.split(' ');
            let (Some(hex), Some(owner), files) = (w.next(), w.next(), w.next().unwrap_or("")) else {
                continue;
            };
            let Some(name) = unhex(hex) else { continue };
            if name.is_empty() || name.len() > liveupdate::MAX_NAME_LEN || self.incoming.contains_key(&name) {
                continue;
            }
            let files = parse_files(files);
            let s = Sess { session: None, owner: owner.parse().ok(), state: State::Incoming, files };
            self.keep(b'i', &name, &s);
            self.incoming.insert(name, s);
        }
    }

    /// Take back the sessions kept for a restart.
    fn recover(&mut self, held: Vec<crate::keeper::Held>) {
        for h in held {
            let Some((&dir, name)) = h.key.split_first() else { continue };
            let session = h.fd.map(|fd| SessFd::from_fd(fd, self.cfg.fake_device));
            if dir == b'm' {
                self.manifest = session;
                continue;
            }
            let Some(s) = Sess::from_record(&h.record, session) else {
                log(&format!("dropping an unreadable held record for {}", show(name)));
                continue;
            };
            match dir {
                b'o' => self.outgoing.insert(name.to_vec(), s),
                _ => self.incoming.insert(name.to_vec(), s),
            };
        }
    }

    /// Sessions from systemd's fd store: name from the kernel (GET_NAME;
    /// the `FDNAME` systemd passed back in `LISTEN_FDNAMES` when the kernel
    /// gives none, as for `--fake-device`), direction probed, owner and
    /// files unknown (the policy decides).
    fn recover_fdstore(&mut self, fds: Vec<(OwnedFd, String)>) {
        for (fd, fdname) in fds {
            let session = SessFd::from_fd(fd, self.cfg.fake_device);
            let name = session.name_bytes().or_else(|| {
                let n = fdname.into_bytes();
                (notify::valid_fdname(&n) && n.len() <= liveupdate::MAX_NAME_LEN).then_some(n)
            });
            let Some(name) = name else {
                log("dropping an fd from the fd store: no session name");
                continue;
            };
            if name == MANIFEST_SESSION.as_bytes() {
                self.manifest = Some(session);
                continue;
            }
            // RETRIEVE_FD is refused with EINVAL on outgoing sessions only.
            let outgoing =
                matches!(session.retrieve_fd(u64::MAX), Err(liveupdate::Error::InvalidArgument { .. }));
            let state = if outgoing { State::Outgoing } else { State::Retrieved };
            let s = Sess { session: Some(session), owner: None, state, files: BTreeMap::new() };
            if outgoing {
                self.outgoing.insert(name, s);
            } else {
                self.incoming.insert(name, s);
            }
        }
    }
}

fn hex_files(files: &BTreeMap<u64, u64>) -> String {
    files.iter().map(|(t, b)| format!("{t:x}:{b:x}")).collect::<Vec<_>>().join(",")
}

fn parse_files(s: &str) -> BTreeMap<u64, u64> {
    s.split(',')
        .filter_map(|p| {
            let (t, b) = p.split_once(':')?;
            Some((u64::from_str_radix(t, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .take(MAX_FILES_PER_SESSION)
        .collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Does `cmdline` turn LUO on? The last `liveupdate=` wins, as in the kernel.
pub fn liveupdate_on(cmdline: &str) -> bool {
    cmdline
        .split_ascii_whitespace()
        .rev()
        .find_map(|w| w.strip_prefix("liveupdate="))
        .is_some_and(|v| matches!(v, "on" | "1" | "y" | "Y" | "yes" | "true"))
}

/// The live update number from the kernel log ("liveupdate number: N"),
/// `Some(None)` if the log was read and has no such line.
fn scan_kmsg() -> Option<Option<u64>> {
    let fd = rustix::fs::open(
        "/dev/kmsg",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut buf = vec![0u8; 8192];
    let mut found = None;
    for _ in 0..200_000 {
        match rustix::io::read(&fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = String::from_utf8_lossy(&buf[..n]);
                if let Some(i) = rec.find("liveupdate number: ") {
                    let num: String = rec[i + 19..].chars().take_while(|c| c.is_ascii_digit()).collect();
                    found = num.parse().ok();
                }
            }
            Err(rustix::io::Errno::PIPE) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    Some(found)
}

/// Run the daemon: never returns unless it cannot start.
pub fn run(cfg: Config, activated: Vec<(OwnedFd, String)>) -> io::Result<()> {
    // Split socket activation fds: the listening socket, and the session
    // fds from the fd store.
    let mut listener = None;
    let mut stored = Vec::new();
    for (fd, name) in activated {
        let is_sock = rustix::fs::fstat(&fd)
            .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket)
            .unwrap_or(false);
        if is_sock && listener.is_none() {
            listener = Some(fd);
        } else {
            stored.push((fd, name));
        }
    }
    let mut d = Daemon::new(cfg);
    if notify::under_systemd() {
        d.keeper = Keeper::FdStore;
        d.recover_fdstore(stored);
    } else if d.cfg.holder {
        match HolderLink::connect_or_spawn(&d.cfg.socket) {
            Ok((link, held)) => {
                log(&format!("holder: {} sessions taken back", held.len()));
                d.keeper = Keeper::Holder(link);
                d.recover(held);
            }
            Err(e) => log(&format!("warning: no holder process ({e}): sessions die with luod")),
        }
    }
    d.read_manifest();
    let listener = match listener {
        Some(l) => l,
        None => {
            let l = fdpass::seqpacket()?;
            let _ = std::fs::remove_file(&d.cfg.socket);
            // Access control is luod's job (SO_PEERCRED), not the mode's:
            // the socket is created 0666 through the umask (not chmod()ed
            // by path afterwards, which could follow a planted symlink).
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o111));
            let bound = net::SocketAddrUnix::new(d.cfg.socket.as_str()).and_then(|a| net::bind(&l, &a));
            rustix::process::umask(old);
            bound?;
            net::listen(&l, 64)?;
            l
        }
    };
    let _ = notify::notify("READY=1", &[]);
    log(&format!(
        "listening on {} ({} outgoing, {} incoming sessions)",
        d.cfg.socket,
        d.outgoing.len(),
        d.incoming.len()
    ));
    let shared = Arc::new(Mutex::new(d));
    let clients = Arc::new(AtomicUsize::new(0));
    loop {
        let conn = match net::accept_with(&listener, net::SocketFlags::CLOEXEC) {
            Ok(c) => c,
            Err(e) => {
                log(&format!("accept: {e}"));
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            clients.fetch_sub(1, Ordering::SeqCst);
            let e = err(libc::EMFILE, format!("too many clients (at most {MAX_CLIENTS})"));
            let _ = fdpass::send(&conn, &proto::encode_reply(0, &Err(e)), &[]);
            continue;
        }
        let (shared, clients) = (Arc::clone(&shared), Arc::clone(&clients));
        let spawned = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || {
            serve(&shared, conn);
            clients.fetch_sub(1, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            log(&format!("cannot start a client thread: {e}"));
        }
    }
}

/// luod's request handling without the socket, for tests on kernels
/// without Unix sockets: the same code as the daemon minus transport,
/// `SO_PEERCRED` (the caller names the uid) and restart safety.
pub struct Engine(Daemon);

impl Engine {
    /// Open the device, read the kernel log and the previous manifest.
    pub fn new(cfg: Config) -> Self {
        let mut d = Daemon::new(cfg);
        d.read_manifest();
        Self(d)
    }

    /// Handle `req` from `uid` with `fds`, as the daemon does.
    pub fn handle(
        &mut self,
        uid: u32,
        req: Request,
        fds: Vec<OwnedFd>,
    ) -> Result<(Reply, Option<OwnedFd>), ErrorReply> {
        self.0.handle(uid, 0, req, fds)
    }
}

fn lock(m: &Mutex<Daemon>) -> MutexGuard<'_, Daemon> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serve one client until it hangs up.
fn serve(shared: &Mutex<Daemon>, conn: OwnedFd) {
    let Ok(cred) = net::sockopt::socket_peercred(&conn) else { return };
    let (uid, pid) = (cred.uid.as_raw(), cred.pid.as_raw_nonzero().get());
    loop {
        let p = match fdpass::recv(&conn, proto::MAX_REQUEST) {
            Ok(Some(p)) => p,
            Ok(None) | Err(_) => return,
        };
        let (op, result) = if p.truncated {
            (0, Err(err(libc::EMSGSIZE, format!("request longer than {} bytes", proto::MAX_REQUEST))))
        } else if p.fds_truncated || p.fds.len() > proto::MAX_FDS {
            (0, Err(err(libc::EINVAL, format!("more than {} fds in a request", proto::MAX_FDS))))
        } else {
            match proto::decode_request(&p.data) {
                Err(e) => (0, Err(err(libc::EPROTO, format!("bad request: {e}")))),
                Ok(req) => {
                    let op = req.op() as u16;
                    (op, lock(shared).handle(uid, pid, req, p.fds))
                }
            }
        };
        let (reply, fd) = match result {
            Ok((r, fd)) => (Ok(r), fd),
            Err(e) => (Err(e), None),
        };
        let fds: Vec<BorrowedFd<'_>> = fd.iter().map(|f| f.as_fd()).collect();
        if fdpass::send(&conn, &proto::encode_reply(op, &reply), &fds).is_err() {
            return;
        }
    }
}

/// Bound for records kept (documented limit check).
const _: () = assert!(9 + 16 * MAX_FILES_PER_SESSION <= MAX_RECORD);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_check() {
        assert!(liveupdate_on("a liveupdate=on b"));
        assert!(liveupdate_on("liveupdate=1"));
        assert!(!liveupdate_on("a b"));
        assert!(!liveupdate_on("liveupdate=on liveupdate=off"));
        assert!(!liveupdate_on("xliveupdate=on"));
    }

    #[test]
    fn records_round_trip() {
        let mut files = BTreeMap::new();
        files.insert(1, 4096);
        files.insert(u64::MAX, 0);
        let s = Sess { session: None, owner: Some(1001), state: State::Retrieved, files };
        let back = Sess::from_record(&s.record(), None).unwrap();
        assert_eq!((back.owner, back.state, back.files), (s.owner, s.state, s.files.clone()));
        assert!(Sess::from_record(&s.record()[..5], None).is_none());
    }

    #[test]
    fn manifest_fields() {
        let mut f = BTreeMap::new();
        f.insert(0x10, 0x2000);
        f.insert(1, 0);
        assert_eq!(parse_files(&hex_files(&f)), f);
        assert_eq!(unhex("61ff"), Some(vec![0x61, 0xff]));
        assert_eq!(unhex("6"), None);
    }
}
