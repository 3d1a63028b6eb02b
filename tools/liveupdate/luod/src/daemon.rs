// SPDX-License-Identifier: GPL-2.0
//! The daemon's state and its requests. See luod.8.md for what each
//! request may do and session.rs for the locks.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use liveupdate::Device;
use rustix::fs::{memfd_create, MemfdFlags};

use crate::backend::{Dev, SessFd};
use crate::events::Events;
use crate::keeper::{Held, Keeper, KeeperKind};
use crate::names::{self, show};
use crate::peer::{self, Cred};
use crate::policy::Policy;
use crate::proto::{self, Entry, ErrorReply, HandOver, Reply, Request, State, StatusInfo};
use crate::session::{self, FileRec, Inner, Registry, Session, IN, MAX_FILES_PER_SESSION, OUT};
use crate::{image, log};

/// Name of luod's own session carrying its manifest across a kexec.
pub const MANIFEST_SESSION: &str = "luod.manifest";
/// Handlers whose format a file of unknown kind may need: every file
/// handler luod knows. A file is of unknown kind when
/// [`image::handler_compatible`] could not tell, or when its kind was lost
/// (a session adopted without its record, a record of an older luod that
/// did not know hugetlbfs memfds); the next kernel must then read them all.
const KNOWN_HANDLERS: &[&str] =
    &[image::MEMFD_COMPATIBLE, image::HUGETLB_MEMFD_COMPATIBLE, image::VFIO_PCI_COMPATIBLE];
/// Longest wait of a reboot for acknowledgements.
const MAX_REBOOT_WAIT_MS: u32 = 60_000;
/// Key direction byte of the kept list of incoming sessions.
const INCOMING_LIST: u8 = b'n';
/// How long a create waits for a session of the same name that is being
/// closed (by luod, the holder or the fd store) to go away.
const CREATE_RETRY: Duration = Duration::from_secs(2);

/// The state of the outgoing and incoming sessions before a load.
struct Snapshot {
    /// The formats the next kernel must read.
    need: BTreeSet<String>,
    /// For each format first needed: (format, session name).
    needed_by: Vec<(String, String)>,
    /// What the kexec hands over and drops.
    handover: HandOver,
    /// Unfinished incoming sessions.
    incoming: Vec<Arc<Session>>,
}

/// Daemon configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket path.
    pub socket: String,
    /// The private state directory (lock, holder socket).
    pub state_dir: PathBuf,
    /// The LUO device node.
    pub device: PathBuf,
    /// The authorization policy.
    pub policy: Policy,
    /// Keep sessions in a holder process when not under systemd.
    pub holder: bool,
    /// Testing luod without LUO: see [`Dev::Fake`].
    pub fake_device: bool,
}

/// The result of a request: a reply and maybe an fd for the client.
pub type Outcome = Result<(Reply, Option<OwnedFd>), ErrorReply>;

/// An error reply.
pub fn err(errno: i32, message: impl Into<String>) -> ErrorReply {
    ErrorReply { errno: errno as u32, message: message.into() }
}

fn luo_err(e: &liveupdate::Error, what: &str) -> ErrorReply {
    err(e.errno(), format!("{what}: {e}"))
}

fn io_err(e: &io::Error, what: &str) -> ErrorReply {
    err(e.raw_os_error().unwrap_or(libc::EIO), format!("{what}: {e}"))
}

/// The daemon.
pub struct Daemon {
    /// Configuration.
    pub cfg: Config,
    dev: Option<Dev>,
    dev_error: String,
    overflow_uid: u32,
    /// Sessions and usage (a leaf lock).
    reg: Mutex<Registry>,
    /// Loads, reboots and the manifest; outermost lock. Holds the
    /// manifest session of the last load.
    kexec: Mutex<Option<SessFd>>,
    /// A kernel was loaded through luod: the manifest follows changes.
    loaded: AtomicBool,
    /// The manifest misses a change (written at the next reboot).
    manifest_dirty: AtomicBool,
    /// The formats of the kernel loaded through luod (a leaf lock).
    next_formats: Mutex<Option<image::Formats>>,
    keeper: Keeper,
    /// Subscribers to kexec events.
    pub events: Events,
    handed_over: Option<bool>,
    lu_number: Option<u64>,
}

/// Open the device, retrying for five seconds while it is busy (the
/// previous owner is still closing it).
fn open_device(cfg: &Config) -> Result<Dev, String> {
    if cfg.fake_device {
        return Ok(Dev::Fake);
    }
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match Device::open_path(&cfg.device) {
            Ok(d) => return Ok(Dev::Real(d)),
            Err(e) if e.errno() == libc::EBUSY && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(format!("opening {}: {e}", cfg.device.display())),
        }
    }
}

impl Daemon {
    /// Open the device and read the kernel log; `keeper` says where
    /// sessions are kept for a restart.
    pub fn new(cfg: Config, keeper: Keeper) -> Self {
        let (dev, dev_error) = match open_device(&cfg) {
            Ok(d) => (Some(d), String::new()),
            Err(e) => {
                log(&e);
                (None, e)
            }
        };
        let scanned = scan_kmsg();
        Daemon {
            dev,
            dev_error,
            overflow_uid: peer::overflow_uid(),
            reg: Mutex::new(Registry::default()),
            kexec: Mutex::new(None),
            loaded: AtomicBool::new(false),
            manifest_dirty: AtomicBool::new(false),
            next_formats: Mutex::new(None),
            keeper,
            events: Events::default(),
            handed_over: scanned.map(|n| n.is_some()),
            lu_number: scanned.flatten(),
            cfg,
        }
    }

    /// The registry (a leaf lock: take nothing while holding it).
    pub fn reg(&self) -> MutexGuard<'_, Registry> {
        self.reg.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kexec_lock(&self) -> MutexGuard<'_, Option<SessFd>> {
        self.kexec.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dev(&self) -> Result<&Dev, ErrorReply> {
        self.dev.as_ref().ok_or_else(|| {
            err(libc::ENODEV, format!("{} is not usable: {}", self.cfg.device.display(), self.dev_error))
        })
    }

    fn keep(&self, s: &Session, held: &Inner) {
        let fd = held.fd.as_ref().map(|f| f.as_fd());
        if let Err(e) = self.keeper.put(&s.key, &s.record(held), fd) {
            log(&format!("warning: cannot keep session {} for a restart: {e}", show(s.kname())));
        }
    }

    fn unkeep(&self, s: &Session) {
        if let Err(e) = self.keeper.remove(&s.key) {
            log(&format!("warning: cannot release session {} in the keeper: {e}", show(s.kname())));
        }
    }

    /// The kernel name of `name` for `uid`, if the policy lets `uid` use it.
    fn kname(&self, uid: u32, name: &[u8]) -> Result<Vec<u8>, ErrorReply> {
        let k = names::kernel_name(uid, name).map_err(|(e, m)| err(e, m))?;
        if uid != 0 && !self.cfg.policy.allows(uid, name) {
            return Err(err(
                libc::EPERM,
                format!("the policy does not grant uid {uid} the name {}", show(name)),
            ));
        }
        Ok(k)
    }

    fn find(&self, dir: u8, kname: &[u8], name: &[u8]) -> Result<Arc<Session>, ErrorReply> {
        let what = if dir == OUT { "outgoing" } else { "incoming" };
        self.reg()
            .sessions
            .get(&session::key(dir, kname))
            .cloned()
            .ok_or_else(|| err(libc::ENOENT, format!("you have no {what} session {}", show(name))))
    }

    /// Handle one request from `cred`; `fds` came with it (the caller
    /// drops them after replying, outside every lock).
    pub fn handle(&self, cred: Cred, req: Request, fds: &[OwnedFd]) -> Outcome {
        let uid = cred.uid;
        if uid == self.overflow_uid {
            return Err(err(libc::EPERM, "the sender's uid is not mapped in luod's namespace"));
        }
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
        let needs_grant = !matches!(req, Request::Status | Request::List { .. });
        if uid != 0 && needs_grant && !self.cfg.policy.knows(uid) {
            return Err(err(libc::EPERM, format!("the policy grants uid {uid} nothing")));
        }
        let done = Ok((Reply::Done, None));
        match req {
            Request::Status => Ok((Reply::Status(self.status(uid)), None)),
            Request::List { offset } => {
                let vis = self.visible(uid);
                let total = vis.len() as u32;
                let entries = vis.into_iter().skip(offset as usize).take(proto::LIST_PAGE).collect();
                Ok((Reply::List { total, entries }, None))
            }
            Request::Create { name } => self.create(uid, &name).and(done),
            Request::Preserve { name, token } => match fds.first() {
                Some(fd) => self.preserve(uid, &name, token, fd.as_fd()).and(done),
                None => Err(err(libc::EINVAL, "no fd")),
            },
            Request::Close { name } => self.close(uid, &name).and(done),
            Request::RetrieveSession { name } => self.retrieve_session(cred, &name).and(done),
            Request::RetrieveFd { name, token } => {
                let kname = self.kname(uid, &name)?;
                let s = self.find(IN, &kname, &name)?;
                let g = s.lock();
                if g.gone {
                    return Err(err(libc::ENOENT, format!("session {} is finished", show(&name))));
                }
                let Some(fd) = g.fd.as_ref().filter(|_| s.state() == State::Retrieved) else {
                    return Err(err(libc::EINVAL, format!("session {} is not retrieved yet", show(&name))));
                };
                let f = fd.retrieve_fd(token).map_err(|e| luo_err(&e, "retrieving the fd"))?;
                Ok((Reply::Done, Some(f)))
            }
            Request::Finish { name } => self.finish(cred, &name).and(done),
            Request::KexecLoad { cmdline, flags } => self.kexec_load(cred, &cmdline, flags, fds),
            Request::Reboot { timeout_ms, flags } => self.reboot(cred, timeout_ms, flags).and(done),
            Request::Subscribe | Request::Ack { .. } => {
                Err(err(libc::EINVAL, "Subscribe and Ack are for the connection's event channel"))
            }
        }
    }

    /// May `cred` subscribe to kexec events? (As for any request that
    /// needs a grant.)
    pub fn may_subscribe(&self, cred: Cred) -> Result<(), ErrorReply> {
        if cred.uid == self.overflow_uid {
            return Err(err(libc::EPERM, "the sender's uid is not mapped in luod's namespace"));
        }
        if cred.uid != 0 && !self.cfg.policy.knows(cred.uid) {
            return Err(err(libc::EPERM, format!("the policy grants uid {} nothing", cred.uid)));
        }
        Ok(())
    }

    fn status(&self, uid: u32) -> StatusInfo {
        let vis = self.visible(uid);
        let mut outgoing = HandOver::default();
        for e in &vis {
            match e.state {
                State::Outgoing => {
                    outgoing.sessions += 1;
                    outgoing.files += e.files;
                    outgoing.bytes = outgoing.bytes.saturating_add(e.bytes);
                }
                State::Incoming | State::Retrieved => outgoing.dropped += 1,
            }
        }
        StatusInfo {
            version: proto::VERSION,
            device_ok: self.dev.is_some(),
            device_error: self.dev_error.clone(),
            handed_over: self.handed_over,
            live_update_number: self.lu_number,
            outgoing,
            incoming: vis.iter().filter(|e| e.state == State::Incoming).count() as u32,
            retrieved: vis.iter().filter(|e| e.state == State::Retrieved).count() as u32,
            keeper: match self.keeper.working() {
                KeeperKind::Nothing => proto::Keeper::None,
                KeeperKind::Holder => proto::Keeper::Holder,
                KeeperKind::FdStore => proto::Keeper::FdStore,
            },
            kexec_loaded: kexec_loaded(),
            uid,
            subscribers: self.events.count(),
        }
    }

    /// The sessions `uid` may see, named as it names them.
    fn visible(&self, uid: u32) -> Vec<Entry> {
        let all: Vec<Arc<Session>> = self.reg().sessions.values().cloned().collect();
        let mut v = Vec::new();
        for s in all {
            let Some(name) = names::shown_to(uid, s.kname()) else { continue };
            let (files, bytes) = s.counts();
            v.push(Entry { name, state: s.state(), owner: s.owner.or(Some(0)), files, bytes });
        }
        v
    }

    fn create(&self, uid: u32, name: &[u8]) -> Result<(), ErrorReply> {
        let kname = self.kname(uid, name)?;
        let dev = self.dev()?;
        let s = Session::new(session::key(OUT, &kname), State::Outgoing, Inner::default());
        let mut g = s.lock();
        {
            let mut r = self.reg();
            if r.sessions.contains_key(&s.key) {
                return Err(err(libc::EEXIST, format!("an outgoing session {} exists", show(name))));
            }
            let owner = s.owner.unwrap_or(0);
            let limit = self.cfg.policy.limits(owner).sessions;
            let u = r.usage(owner);
            if owner != 0 && u.sessions >= limit {
                return Err(err(libc::EDQUOT, format!("uid {owner} has its {limit} sessions")));
            }
            u.sessions += 1;
            r.sessions.insert(s.key.clone(), Arc::clone(&s));
        }
        // A session of this name being closed elsewhere (a keeper's copy)
        // goes away shortly: wait for it rather than fail with EEXIST.
        let until = Instant::now() + CREATE_RETRY;
        let created = loop {
            match dev.create(&kname) {
                Err(liveupdate::Error::AlreadyExists { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                r => break r,
            }
        };
        match created {
            Ok(fd) => {
                g.fd = Some(fd);
                g.files_known = true;
                self.keep(&s, &g);
                drop(g);
                self.refresh_manifest();
                Ok(())
            }
            Err(e) => {
                g.gone = true;
                let mut r = self.reg();
                r.remove(&s);
                r.uncharge(&s, true, 0, 0);
                Err(luo_err(&e, "creating the session"))
            }
        }
    }

    fn preserve(&self, uid: u32, name: &[u8], token: u64, fd: BorrowedFd<'_>) -> Result<(), ErrorReply> {
        // The file first, before any lock: what it is, whose, how open.
        let st = rustix::fs::fstat(fd).map_err(|e| err(e.raw_os_error(), format!("fstat: {e}")))?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if !matches!(kind, rustix::fs::FileType::RegularFile | rustix::fs::FileType::CharacterDevice) {
            return Err(err(
                libc::EINVAL,
                "luod preserves regular files (memfds) and character devices only",
            ));
        }
        if uid != 0 {
            if st.st_uid != uid {
                return Err(err(libc::EPERM, format!("the file belongs to uid {}, not to you", st.st_uid)));
            }
            let fl =
                rustix::fs::fcntl_getfl(fd).map_err(|e| err(e.raw_os_error(), format!("F_GETFL: {e}")))?;
            if fl & rustix::fs::OFlags::RWMODE != rustix::fs::OFlags::RDWR {
                return Err(err(libc::EACCES, "the file is not open read-write"));
            }
        }
        let bytes = if kind == rustix::fs::FileType::RegularFile { st.st_size.max(0) as u64 } else { 0 };
        let compat = image::handler_compatible(fd).map(str::to_owned);
        self.check_next_kernel(compat.as_deref())?;
        let kname = self.kname(uid, name)?;
        let s = self.find(OUT, &kname, name)?;
        let owner = s.owner.unwrap_or(0);
        {
            let lim = self.cfg.policy.limits(owner);
            let mut r = self.reg();
            let u = r.usage(owner);
            if owner != 0 && u.files >= lim.files {
                return Err(err(libc::EDQUOT, format!("uid {owner} has its {} files", lim.files)));
            }
            if owner != 0 && u.bytes.saturating_add(bytes) > lim.bytes {
                return Err(err(libc::EDQUOT, format!("uid {owner} would pass its {} bytes", lim.bytes)));
            }
            u.files += 1;
            u.bytes = u.bytes.saturating_add(bytes);
        }
        let mut g = s.lock();
        let r = (|| {
            let sfd =
                g.fd.as_ref()
                    .filter(|_| !g.gone)
                    .ok_or_else(|| err(libc::ENOENT, format!("session {} was closed", show(name))))?;
            if g.files.len() >= MAX_FILES_PER_SESSION {
                return Err(err(
                    libc::ENOSPC,
                    format!("luod tracks at most {MAX_FILES_PER_SESSION} files per session"),
                ));
            }
            if self.cfg.fake_device && g.files.contains_key(&token) {
                return Err(err(libc::EEXIST, format!("token {token} is used in {}", show(name))));
            }
            sfd.preserve_fd(fd, token).map_err(|e| luo_err(&e, "preserving the fd"))
        })();
        match r {
            Ok(()) => {
                g.files.insert(token, FileRec { bytes, compat });
                s.summarize(&g);
                self.keep(&s, &g);
                Ok(())
            }
            Err(e) => {
                drop(g);
                self.reg().uncharge(&s, false, 1, bytes);
                Err(e)
            }
        }
    }

    fn close(&self, uid: u32, name: &[u8]) -> Result<(), ErrorReply> {
        let kname = self.kname(uid, name)?;
        let key = session::key(OUT, &kname);
        let s = self
            .reg()
            .sessions
            .remove(&key)
            .ok_or_else(|| err(libc::ENOENT, format!("you have no outgoing session {}", show(name))))?;
        let mut g = s.lock();
        g.gone = true;
        let fd = g.fd.take();
        let (files, bytes) =
            (g.files.len() as u64, g.files.values().fold(0u64, |a, f| a.saturating_add(f.bytes)));
        drop(g);
        self.reg().uncharge(&s, true, files, bytes);
        self.unkeep(&s);
        // The kernel unpreserves the files here; no lock is held.
        drop(fd);
        self.refresh_manifest();
        Ok(())
    }

    fn retrieve_session(&self, cred: Cred, name: &[u8]) -> Result<(), ErrorReply> {
        let kname = self.kname(cred.uid, name)?;
        let dev = self.dev()?;
        let key = session::key(IN, &kname);
        let fresh = Session::new(key.clone(), State::Incoming, Inner::default());
        let mut fresh_g = fresh.lock();
        let (s, is_fresh) = {
            let mut r = self.reg();
            match r.sessions.get(&key) {
                Some(s) => (Arc::clone(s), false),
                None => {
                    r.sessions.insert(key, Arc::clone(&fresh));
                    (Arc::clone(&fresh), true)
                }
            }
        };
        let mut other_g;
        let g: &mut Inner = if is_fresh {
            &mut fresh_g
        } else {
            drop(fresh_g);
            other_g = s.lock();
            &mut other_g
        };
        if g.gone {
            return Err(err(libc::ENOENT, format!("session {} is finished", show(name))));
        }
        if s.state() == State::Retrieved {
            return Ok(());
        }
        match dev.retrieve(&kname) {
            Ok(fd) => {
                g.fd = Some(fd);
                s.set_state(g, State::Retrieved);
                self.keep(&s, g);
                log(&format!("uid {} (pid {}) retrieved session {}", cred.uid, cred.pid, show(&kname)));
                self.keep_incoming();
                Ok(())
            }
            Err(e) => {
                let not_found = matches!(e, liveupdate::Error::NotFound { .. });
                if not_found || is_fresh {
                    g.gone = true;
                    self.reg().remove(&s);
                    if !is_fresh {
                        self.unkeep(&s);
                        self.keep_incoming();
                    }
                }
                if not_found {
                    return Err(err(
                        libc::ENOENT,
                        format!("the previous kernel handed over no session {} of yours", show(name)),
                    ));
                }
                Err(luo_err(&e, "retrieving the session"))
            }
        }
    }

    fn finish(&self, cred: Cred, name: &[u8]) -> Result<(), ErrorReply> {
        let kname = self.kname(cred.uid, name)?;
        let s = self.find(IN, &kname, name)?;
        let mut g = s.lock();
        if g.gone {
            return Err(err(libc::ENOENT, format!("session {} is finished", show(name))));
        }
        let Some(fd) = g.fd.as_ref().filter(|_| s.state() == State::Retrieved) else {
            return Err(err(libc::EINVAL, format!("session {} is not retrieved yet", show(name))));
        };
        fd.finish().map_err(|e| luo_err(&e, "finishing the session"))?;
        g.gone = true;
        let fd = g.fd.take();
        drop(g);
        self.reg().remove(&s);
        self.unkeep(&s);
        drop(fd);
        log(&format!("uid {} (pid {}) finished session {}", cred.uid, cred.pid, show(&kname)));
        Ok(())
    }

    fn may_boot(&self, cred: Cred) -> Result<(), ErrorReply> {
        peer::may_boot(cred).map_err(|e| {
            err(libc::EPERM, format!("loading or starting the next kernel needs root with CAP_SYS_BOOT: {e}"))
        })
    }

    /// What the outgoing sessions need the next kernel to read, and a
    /// summary of the handover.
    fn snapshot(&self) -> Snapshot {
        let all: Vec<Arc<Session>> = self.reg().sessions.values().cloned().collect();
        let incoming: Vec<Arc<Session>> =
            all.iter().filter(|s| s.key.first() == Some(&IN)).cloned().collect();
        let mut need: BTreeSet<String> = BTreeSet::new();
        need.insert(image::CORE_COMPATIBLE.to_string());
        let mut h = HandOver { dropped: incoming.len() as u32, ..Default::default() };
        let mut needed_by: Vec<(String, String)> = Vec::new();
        for s in all.iter().filter(|s| s.key.first() == Some(&OUT)) {
            let g = s.lock();
            if g.gone {
                continue;
            }
            h.sessions += 1;
            h.files += g.files.len() as u32;
            h.bytes = g.files.values().fold(h.bytes, |a, f| a.saturating_add(f.bytes));
            for c in needed_formats(&g) {
                if need.insert(c.clone()) {
                    needed_by.push((c, show(s.kname())));
                }
            }
        }
        Snapshot { need, needed_by, handover: h, incoming }
    }

    fn kexec_load(&self, cred: Cred, cmdline: &str, flags: u32, fds: &[OwnedFd]) -> Outcome {
        self.may_boot(cred)?;
        if !liveupdate_on(cmdline) {
            return Err(err(
                libc::EINVAL,
                "the new command line lacks liveupdate=on: nothing would be handed over",
            ));
        }
        self.dev()?;
        let kernel = fds.first().ok_or_else(|| err(libc::EINVAL, "no kernel fd"))?;
        let initrd = fds.get(1);
        // The image is the client's file: read it before taking any lock.
        let formats = if flags & proto::KEXEC_UNVERIFIED == 0 {
            let f = image::accepted_formats(kernel.as_fd()).map_err(|e| {
                err(
                    libc::ENOEXEC,
                    format!("cannot read the next kernel's image: {e} (--unverified to load anyway)"),
                )
            })?;
            let Some(f) = f else {
                return Err(err(
                    libc::ENOEXEC,
                    "the next kernel has no table of the formats it reads: cannot verify the handover (--unverified to load anyway)",
                ));
            };
            Some(f)
        } else {
            None
        };
        // From here on, files preserved meanwhile are checked against it.
        let before = std::mem::replace(&mut *self.next_formats(), formats.clone());
        let r = self.load_checked(cred, cmdline, flags, kernel, initrd, formats.as_ref());
        if r.is_err() {
            *self.next_formats() = before;
        }
        r
    }

    fn load_checked(
        &self,
        cred: Cred,
        cmdline: &str,
        flags: u32,
        kernel: &OwnedFd,
        initrd: Option<&OwnedFd>,
        formats: Option<&image::Formats>,
    ) -> Outcome {
        let Snapshot { need, needed_by, handover: h, incoming } = self.snapshot();
        if !incoming.is_empty() && flags & proto::KEXEC_DROP_INCOMING == 0 {
            let first = incoming.first().map(|s| show(s.kname())).unwrap_or_default();
            return Err(err(
                libc::EBUSY,
                format!(
                    "{} incoming sessions are not finished (e.g. {first}): the kexec would drop them (--drop-incoming)",
                    incoming.len()
                ),
            ));
        }
        if let Some(formats) = formats {
            let missing: Vec<&String> = need.iter().filter(|c| !formats.accepts(c)).collect();
            if let Some(first) = missing.first() {
                let who = needed_by
                    .iter()
                    .find(|(c, _)| c == *first)
                    .map(|(_, s)| format!(", needed by session {s}"));
                return Err(err(
                    libc::ENOEXEC,
                    format!(
                        "the next kernel cannot read {}{}",
                        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                        who.unwrap_or_default()
                    ),
                ));
            }
        }
        let mut manifest = self.kexec_lock();
        self.write_manifest(&mut manifest)?;
        self.loaded.store(true, Ordering::Relaxed);
        liveupdate::kexec::load(kernel, initrd.map(|f| f.as_fd()), cmdline)
            .map_err(|e| io_err(&e, "kexec_file_load"))?;
        log(&format!(
            "next kernel loaded by uid {} (pid {}): {} sessions, {} files, {} bytes handed over; {} incoming sessions dropped",
            cred.uid, cred.pid, h.sessions, h.files, h.bytes, h.dropped
        ));
        Ok((Reply::Kexec(h), None))
    }

    /// The formats of the kernel last loaded through luod (a leaf lock).
    fn next_formats(&self) -> MutexGuard<'_, Option<image::Formats>> {
        self.next_formats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A file of compatible `compat` (`None`: unknown) may be preserved
    /// only if the kernel loaded through luod, if any, reads it.
    fn check_next_kernel(&self, compat: Option<&str>) -> Result<(), ErrorReply> {
        let f = self.next_formats();
        let Some(f) = f.as_ref().filter(|_| kexec_loaded() || self.cfg.fake_device) else {
            return Ok(());
        };
        let wanted: Vec<&str> = match compat {
            Some(c) => vec![c],
            None => KNOWN_HANDLERS.to_vec(),
        };
        match wanted.iter().find(|c| !f.accepts(c)) {
            Some(c) => Err(err(
                libc::ENOEXEC,
                format!("the loaded next kernel cannot read {c}: load another kernel first"),
            )),
            None => Ok(()),
        }
    }

    fn reboot(&self, cred: Cred, timeout_ms: u32, flags: u32) -> Result<(), ErrorReply> {
        self.may_boot(cred)?;
        let timeout_ms = timeout_ms.min(MAX_REBOOT_WAIT_MS);
        let mut manifest = self.kexec_lock();
        if !self.cfg.fake_device && !kexec_loaded() {
            return Err(err(libc::ENOEXEC, "no next kernel is loaded"));
        }
        let timeout = Duration::from_millis(u64::from(timeout_ms));
        let missing = self.events.announce(timeout);
        if missing > 0 && flags & proto::REBOOT_FORCE == 0 {
            self.events.cancel();
            return Err(err(
                libc::ETIMEDOUT,
                format!("{missing} subscribers did not acknowledge within {timeout_ms} ms: kexec cancelled"),
            ));
        }
        if self.loaded.load(Ordering::Relaxed) && self.manifest_dirty.swap(false, Ordering::Relaxed) {
            if let Err(e) = self.write_manifest(&mut manifest) {
                log(&format!("warning: cannot refresh the manifest: {}", e.message));
            }
        }
        log(&format!(
            "kexec started by uid {} (pid {}); {missing} subscribers did not acknowledge",
            cred.uid, cred.pid
        ));
        if self.cfg.fake_device {
            return Ok(());
        }
        match liveupdate::kexec::exec() {
            Ok(never) => match never {},
            Err(e) => {
                self.events.cancel();
                Err(io_err(&e, "reboot(LINUX_REBOOT_CMD_KEXEC)"))
            }
        }
    }

    /// Rewrite the manifest after a change, if a kernel was loaded through
    /// luod. Never waits for a load or a reboot in progress: then the
    /// manifest is marked stale, and the reboot rewrites it.
    fn refresh_manifest(&self) {
        if !self.loaded.load(Ordering::Relaxed) {
            return;
        }
        let mut m = match self.kexec.try_lock() {
            Ok(m) => m,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.manifest_dirty.store(true, Ordering::Relaxed);
                return;
            }
        };
        if let Err(e) = self.write_manifest(&mut m) {
            self.manifest_dirty.store(true, Ordering::Relaxed);
            log(&format!("warning: cannot refresh the manifest: {}", e.message));
        }
    }

    /// Write luod's manifest (kernel names and files of the outgoing
    /// sessions) into its own session, for the luod of the next kernel.
    /// A listing aid only: owners come from the kernel names.
    fn write_manifest(&self, slot: &mut Option<SessFd>) -> Result<(), ErrorReply> {
        let mkey = session::key(b'm', MANIFEST_SESSION.as_bytes());
        let all: Vec<Arc<Session>> = self.reg().sessions.values().cloned().collect();
        let text = manifest_text(all.iter().filter(|s| s.key.first() == Some(&OUT)));
        let f = text_memfd("luod-manifest", &text)?;
        if slot.take().is_some() {
            if let Err(e) = self.keeper.remove(&mkey) {
                log(&format!("warning: cannot drop the old manifest from the keeper: {e}"));
            }
        }
        let dev = self.dev()?;
        let until = Instant::now() + CREATE_RETRY;
        let session = loop {
            match dev.create(MANIFEST_SESSION.as_bytes()) {
                Err(liveupdate::Error::AlreadyExists { .. }) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                r => break r.map_err(|e| luo_err(&e, "creating the manifest session"))?,
            }
        };
        session.preserve_fd(f.as_fd(), 0).map_err(|e| luo_err(&e, "preserving the manifest"))?;
        if let Err(e) = self.keeper.put(&mkey, &[], Some(session.as_fd())) {
            log(&format!("warning: cannot keep the manifest for a restart: {e}"));
        }
        *slot = Some(session);
        Ok(())
    }

    /// Keep the list of the incoming sessions not retrieved yet (a memfd
    /// in the keeper), so a restarted luod still knows them: the previous
    /// kernel's manifest can be read once only.
    fn keep_incoming(&self) {
        let key = session::key(INCOMING_LIST, b"luod.incoming");
        let all: Vec<Arc<Session>> = self.reg().sessions.values().cloned().collect();
        let pending: Vec<&Arc<Session>> =
            all.iter().filter(|s| s.key.first() == Some(&IN) && s.state() == State::Incoming).collect();
        let r = if pending.is_empty() {
            self.keeper.remove(&key)
        } else {
            match text_memfd("luod-incoming", &manifest_text(pending.into_iter())) {
                Ok(f) => self.keeper.put(&key, &[], Some(f.as_fd())),
                Err(e) => Err(io::Error::other(e.message)),
            }
        };
        if let Err(e) = r {
            log(&format!("warning: cannot keep the list of incoming sessions: {e}"));
        }
    }

    /// Learn the incoming sessions a manifest lists.
    fn learn_incoming(&self, text: &str) {
        for (kname, files) in parse_manifest(text) {
            let key = session::key(IN, &kname);
            if self.reg().sessions.contains_key(&key) {
                continue;
            }
            let inner = Inner { files, files_known: true, ..Default::default() };
            let s = Session::new(key.clone(), State::Incoming, inner);
            self.reg().sessions.insert(key, s);
        }
    }

    /// Read the previous luod's manifest, if the previous kernel has one.
    pub fn read_manifest(&self) -> Option<bool> {
        let dev = self.dev.as_ref()?;
        let session = match dev.retrieve(MANIFEST_SESSION.as_bytes()) {
            Ok(s) => s,
            Err(liveupdate::Error::NotFound { .. }) => return None,
            Err(e) => {
                log(&format!("cannot retrieve the previous manifest: {e}"));
                return Some(true);
            }
        };
        let text = session.retrieve_fd(0).ok().and_then(|fd| read_text(fd).ok());
        let _ = session.finish();
        match text {
            Some(text) => self.learn_incoming(&text),
            None => log("the previous manifest is unreadable"),
        }
        self.keep_incoming();
        Some(true)
    }

    /// Take back the sessions an earlier luod left in the holder.
    pub fn recover(&self, held: Vec<Held>) {
        for h in held {
            let Some((&dir, kname)) = h.key.split_first() else { continue };
            if dir == INCOMING_LIST {
                if let Some(text) = h.fd.and_then(|fd| read_text(fd).ok()) {
                    self.learn_incoming(&text);
                }
                continue;
            }
            let fd = h.fd.map(|fd| SessFd::from_fd(fd, self.cfg.fake_device));
            if dir == b'm' {
                *self.kexec_lock() = fd;
                self.loaded.store(true, Ordering::Relaxed);
                continue;
            }
            let (state, inner) = match session::parse_record(&h.record) {
                Some((state, files, known)) => (state, Inner { fd, files, files_known: known, gone: false }),
                None => {
                    // Keep the session (its fd is the kernel's): only
                    // luod's notes about it are lost.
                    log(&format!(
                        "warning: unreadable held record for {}: its files are unknown",
                        show(kname)
                    ));
                    let state = if dir == OUT { State::Outgoing } else { State::Retrieved };
                    let state = if fd.is_none() { State::Incoming } else { state };
                    (state, Inner { fd, ..Default::default() })
                }
            };
            self.adopt(dir, kname, state, inner);
        }
    }

    fn adopt(&self, dir: u8, kname: &[u8], state: State, inner: Inner) {
        if dir != OUT && dir != IN {
            return;
        }
        let s = Session::new(session::key(dir, kname), state, inner);
        let (files, bytes) = s.counts();
        let mut r = self.reg();
        if dir == OUT {
            let u = r.usage(s.owner.unwrap_or(0));
            u.sessions += 1;
            u.files += u64::from(files);
            u.bytes = u.bytes.saturating_add(bytes);
        }
        r.sessions.insert(s.key.clone(), s);
    }

    /// Sessions from systemd's fd store, by their `FDNAME` (direction and
    /// kernel name); for other names, the kernel's name and a probe.
    pub fn recover_fdstore(&self, fds: Vec<(OwnedFd, String)>) {
        for (fd, fdname) in fds {
            if let Some(key) =
                crate::keeper::key_of_fdname(&fdname).filter(|k| k.first() == Some(&INCOMING_LIST))
            {
                match read_text(fd) {
                    Ok(text) => self.learn_incoming(&text),
                    Err(e) => log(&format!("warning: the kept list {} is unreadable: {e}", show(&key))),
                }
                continue;
            }
            let session = SessFd::from_fd(fd, self.cfg.fake_device);
            let key = match crate::keeper::key_of_fdname(&fdname) {
                Some(k) => k,
                None => {
                    let Some(name) = session.name_bytes() else {
                        log(&format!("dropping fd {fdname:?} from the fd store: no session name"));
                        continue;
                    };
                    // RETRIEVE_FD is refused with EINVAL on outgoing sessions only.
                    let out = matches!(
                        session.retrieve_fd(u64::MAX),
                        Err(liveupdate::Error::InvalidArgument { .. })
                    );
                    session::key(if out { OUT } else { IN }, &name)
                }
            };
            let Some((&dir, kname)) = key.split_first() else { continue };
            if dir == b'm' {
                *self.kexec_lock() = Some(session);
                self.loaded.store(true, Ordering::Relaxed);
                continue;
            }
            let state = if dir == OUT { State::Outgoing } else { State::Retrieved };
            self.adopt(dir, kname, state, Inner { fd: Some(session), ..Default::default() });
        }
    }

    /// Where sessions are kept for a restart.
    pub fn keeper_kind(&self) -> KeeperKind {
        self.keeper.kind()
    }

    /// Number of sessions (for the start-up log line).
    pub fn counts(&self) -> (usize, usize) {
        let r = self.reg();
        let out = r.sessions.keys().filter(|k| k.first() == Some(&OUT)).count();
        (out, r.sessions.len() - out)
    }
}

/// The formats the next kernel must read for the files of `g`: each
/// file's handler, or every handler luod knows for a file of unknown kind.
fn needed_formats(g: &Inner) -> Vec<String> {
    let mut v: Vec<String> = g
        .files
        .values()
        .filter_map(|f| f.compat.as_deref())
        .flat_map(image::formats_for)
        .map(str::to_owned)
        .collect();
    if !g.files_known || g.files.values().any(|f| f.compat.is_none()) {
        v.extend(KNOWN_HANDLERS.iter().map(|c| c.to_string()));
    }
    v
}

/// A manifest: its version line, then one line per session, the hex of
/// its kernel name and `token:bytes` of its files (hex, comma separated).
fn manifest_text<'a>(sessions: impl Iterator<Item = &'a Arc<Session>>) -> String {
    let mut text = String::from("luod-manifest 2\n");
    for s in sessions {
        let g = s.lock();
        if g.gone {
            continue;
        }
        let hex: String = s.kname().iter().map(|b| format!("{b:02x}")).collect();
        let files: Vec<String> = g.files.iter().map(|(t, f)| format!("{t:x}:{:x}", f.bytes)).collect();
        text.push_str(&format!("{hex} {}\n", files.join(",")));
    }
    text
}

/// Parse [`manifest_text`]: kernel names and files; bad lines are skipped.
fn parse_manifest(text: &str) -> Vec<(Vec<u8>, std::collections::BTreeMap<u64, FileRec>)> {
    let mut lines = text.lines();
    if lines.next() != Some("luod-manifest 2") {
        log("a manifest has an unknown format");
        return Vec::new();
    }
    let mut out = Vec::new();
    for l in lines {
        let mut w = l.split(' ');
        let (Some(hex), files) = (w.next(), w.next().unwrap_or("")) else { continue };
        let Some(kname) = unhex(hex) else { continue };
        if kname.is_empty() || kname.len() > liveupdate::MAX_NAME_LEN {
            continue;
        }
        out.push((kname, parse_files(files)));
    }
    out
}

/// `text` in a new memfd.
fn text_memfd(name: &str, text: &str) -> Result<File, ErrorReply> {
    let mem = memfd_create(name, MemfdFlags::CLOEXEC).map_err(|e| io_err(&e.into(), name))?;
    let mut f = File::from(mem);
    f.write_all(text.as_bytes()).map_err(|e| io_err(&e, name))?;
    Ok(f)
}

/// The text of a file (at most 16 MiB), from its start.
fn read_text(fd: OwnedFd) -> io::Result<String> {
    let mut f = File::from(fd);
    let mut s = String::new();
    f.seek(SeekFrom::Start(0))?;
    f.take(16 << 20).read_to_string(&mut s)?;
    Ok(s)
}

fn parse_files(s: &str) -> std::collections::BTreeMap<u64, FileRec> {
    s.split(',')
        .filter_map(|p| {
            let (t, b) = p.split_once(':')?;
            Some((
                u64::from_str_radix(t, 16).ok()?,
                FileRec { bytes: u64::from_str_radix(b, 16).ok()?, compat: None },
            ))
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

/// Is a next kernel loaded (`/sys/kernel/kexec_loaded`)?
pub fn kexec_loaded() -> bool {
    std::fs::read_to_string("/sys/kernel/kexec_loaded").is_ok_and(|s| s.trim() == "1")
}

/// Does `cmdline` turn LUO on? The last `liveupdate=` wins, as in the kernel.
/// Only its kernel parameters count: the words after a standalone `--` are
/// init's arguments, which the kernel does not read.
pub fn liveupdate_on(cmdline: &str) -> bool {
    liveupdate::cmdline::split(cmdline)
        .0
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
    fn cmdline_check_ignores_init_arguments() {
        assert!(!liveupdate_on("x -- liveupdate=on"));
        assert!(!liveupdate_on("-- liveupdate=on"));
        assert!(liveupdate_on("liveupdate=on -- liveupdate=off"));
        assert!(liveupdate_on("a liveupdate=on -- test=t stage=1\n"));
        assert!(!liveupdate_on("liveupdate=on liveupdate=off -- liveupdate=on"));
        // Not the separator: a word that only starts with `--`.
        assert!(liveupdate_on("a --x liveupdate=on"));
    }

    #[test]
    fn manifest_fields() {
        assert_eq!(unhex("61ff"), Some(vec![0x61, 0xff]));
        assert_eq!(unhex("6"), None);
        let f = parse_files("10:2000,1:0,zz:1");
        assert_eq!(f.len(), 2);
        assert_eq!(f.get(&0x10).map(|r| r.bytes), Some(0x2000));
    }

    #[test]
    fn formats_needed_by_files() {
        let rec = |c: Option<&str>| FileRec { bytes: 1, compat: c.map(str::to_owned) };
        let mut g = Inner { files_known: true, ..Default::default() };
        g.files.insert(1, rec(Some(image::MEMFD_COMPATIBLE)));
        g.files.insert(2, rec(Some(image::HUGETLB_MEMFD_COMPATIBLE)));
        let mut need = needed_formats(&g);
        need.sort();
        assert_eq!(need, ["hugetlb-memfd-rs-v1", "memfd-v2"]);
        // A device kept running needs the VT-d handover read too.
        g.files.insert(4, rec(Some(image::VFIO_PCI_RUNNING_COMPATIBLE)));
        let mut need = needed_formats(&g);
        need.sort();
        assert_eq!(need, ["hugetlb-memfd-rs-v1", "memfd-v2", "vfio-pci-rs-v2", "vtd-lu-rs-v1"]);
        g.files.remove(&4);
        // A file of unknown kind may be any of them, a hugetlbfs memfd too.
        g.files.insert(3, rec(None));
        let need = needed_formats(&g);
        assert!(KNOWN_HANDLERS.iter().all(|c| need.iter().any(|n| n == c)), "{need:?}");
        assert!(KNOWN_HANDLERS.contains(&image::HUGETLB_MEMFD_COMPATIBLE));
        g.files.remove(&3);
        g.files_known = false;
        let need = needed_formats(&g);
        assert!(KNOWN_HANDLERS.iter().all(|c| need.iter().any(|n| n == c)), "{need:?}");
    }
}
