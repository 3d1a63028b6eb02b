// SPDX-License-Identifier: GPL-2.0

//! The Live Update Orchestrator (LUO), in Rust.
//!
//! LUO lets userspace (a VMM agent) keep file descriptors, and the memory behind them, across a
//! kexec into a new kernel. It is a drop-in replacement for the C LUO: same `/dev/liveupdate`
//! uAPI and errnos, same in-kernel API (`include/linux/liveupdate.h`) and same "luo-v5"
//! handover format. See `Documentation/core-api/liveupdate-rust.rst`.
//!
//! # Locking
//!
//! Locks, outermost first (a lock is never taken while a later one is held):
//!
//! 1. [`Luo::state`] (a reader/writer semaphore): held for reading by every session
//!    operation (create, retrieve, the session ioctls, close) and for writing by the reboot
//!    path, so that the handover is written while nothing changes.
//! 2. [`Luo::incoming`]: the previous kernel's sessions until the first open.
//! 3. [`Luo::sessions`]: the session maps and the session handover reservation.
//! 4. `Session::inner`: one session's files.
//! 5. [`Luo::registry`] (a reader/writer semaphore): handlers and FLBs. Held for writing to
//!    register, unregister, link or unlink; for reading by PRESERVE_FD from the handler lookup
//!    (`can_preserve`) to the claim (module reference, id, FLB preserve), and by the first open
//!    from each lookup to the module reference, as the C LUO holds its register rwsem: a
//!    handler is unregistered, and its module unloaded, only between such sections.
//! 6. The FLB state locks (held while calling that FLB's ops).
//! 7. [`Luo::preserved`]: the ids of all preserved files.
//! 8. [`Luo::flb_states`]: the state of every FLB in use (a leaf: the FLB API takes it, also
//!    from FLB ops, and so do linking and unlinking, under the registry).
//! 9. [`Luo::timeline`] (a spinlock): the timeline of the live update; a leaf, held only to
//!    store stamps.
//!
//! No lock is held while copying to or from userspace. Handlers and FLBs are called with no
//! LUO-wide mutex held: only `state` for reading (for writing in `freeze`/`unfreeze`: as in
//! the C LUO, the reboot path excludes every other LUO operation), `registry` for reading in
//! `can_preserve`, `get_id` and the FLB `preserve` of PRESERVE_FD (and the FLB `unpreserve`
//! when that fails), and in the FLB `retrieve`/`finish` that a file's FINISH may cause, as
//! the C LUO holds its register rwsem there (`luo_flb_file_preserve()`,
//! `luo_flb_file_finish()`), and for FLB ops that FLB's own lock. So a handler or FLB op must
//! not register, unregister, link or unlink handlers or FLBs (in either LUO, that deadlocks).

use kernel::{
    kho,
    new_mutex,
    new_rwsem,
    new_spinlock,
    prelude::*,
    rbtree::RBTree,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        rwsem::{
            ReadGuard,
            RwSemaphore, //
        },
        Arc,
        Mutex,
        SetOnce,
        SpinLock, //
    },
    ModuleMetadata,
    ThisModule, //
};

mod abi;
mod block;
pub mod capi;
mod device;
mod file_set;
mod flb;
mod handover;
mod name;
mod parse;
mod registered;
mod registry;
mod session;
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
mod test_handler;
mod timeline;
mod token_index;
mod ucmd;

use file_set::{
    FileSet,
    LuoFile, //
};
use name::Name;
use registry::Registry;
use session::Sessions;

/// Prefix of every message printed by LUO (as the C LUO's `pr_fmt`).
const __LOG_PREFIX: &[u8] = b"luo\0";

/// LUO is built into the kernel image: there is no module.
pub(crate) struct LocalModule;

impl ModuleMetadata for LocalModule {
    const NAME: &'static CStr = c"luo";
    const THIS_MODULE: ThisModule = {
        // SAFETY: A NULL module pointer is `THIS_MODULE` of built-in code; `try_module_get`
        // and `module_put` accept it.
        unsafe { ThisModule::from_ptr(core::ptr::null_mut()) }
    };
}

/// `liveupdate=` on the command line; forced off when KHO is off or setup fails.
static ENABLED: Atomic<bool> = Atomic::new(false);

/// The global LUO state, set up by the early initcall.
static LUO: SetOnce<Pin<KBox<Luo>>> = SetOnce::new();

/// Whether live update is enabled on this boot.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// The global LUO state (`ENODEV` before the early initcall ran or if it failed).
pub(crate) fn luo() -> Result<&'static Luo> {
    LUO.as_ref().map(|l| l.as_ref().get_ref()).ok_or(ENODEV)
}

/// What the reboot path changes, under [`Luo::state`].
pub(crate) struct State {
    /// The sessions are serialized for the kexec: LUO refuses every change (`EBUSY`) and
    /// closing a session keeps it for the next kernel.
    pub(crate) frozen: bool,
}

/// The global state of LUO.
#[pin_data]
pub(crate) struct Luo {
    /// Excludes the reboot path (writer) from every session operation (readers).
    #[pin]
    pub(crate) state: RwSemaphore<State>,
    /// Sessions of both kernels.
    #[pin]
    pub(crate) sessions: Mutex<Sessions>,
    /// File handlers and FLBs: see the lock order above for who holds it, and how.
    #[pin]
    pub(crate) registry: RwSemaphore<Registry>,
    /// The state of every FLB in use (a leaf lock).
    #[pin]
    pub(crate) flb_states: Mutex<flb::FlbStates>,
    /// The id (`get_id`) of every preserved or retrieved-but-unfinished file: one
    /// preservation per file system-wide.
    #[pin]
    preserved: Mutex<RBTree<usize, ()>>,
    /// The previous kernel's sessions; turned into incoming sessions on first open.
    #[pin]
    incoming: Mutex<IncomingState>,
    /// The previous kernel's FLB table (read-only after boot); `None` if it handed over none.
    incoming_flbs: Option<KVVec<handover::InFlb>>,
    /// The previous kernel's live update number; 0 after a cold boot.
    incoming_num: u64,
    /// The timeline of the live update that booted this kernel, and the stamps of the next.
    #[pin]
    pub(crate) timeline: SpinLock<timeline::Timeline>,
}

/// The previous kernel's sessions, before they become incoming sessions.
struct IncomingState {
    sessions: KVVec<handover::InSession>,
    /// Files of dropped sessions, finished (not retrieved) at the first open.
    dropped: KVVec<handover::InFile>,
    /// `None` until the first open of `/dev/liveupdate` builds the sessions, then how that went.
    /// A failure is sticky, as in the C LUO.
    deserialized: Option<Result>,
}

impl Luo {
    fn new(data: handover::Incoming, boot: u64) -> impl PinInit<Self, Error> {
        let handover::Incoming {
            liveupdate_num,
            sessions: in_sessions,
            dropped,
            flbs,
        } = data;
        let tl = timeline::Timeline::new(boot, liveupdate_num, liveupdate_num != 0);
        try_pin_init!(Self {
            timeline <- new_spinlock!(tl, "luo::timeline"),
            incoming_flbs: flbs,
            incoming_num: liveupdate_num,
            state <- new_rwsem!(State { frozen: false }, "luo::state"),
            sessions <- new_mutex!(Sessions::new(), "luo::sessions"),
            registry <- new_rwsem!(Registry::new(), "luo::registry"),
            flb_states <- new_mutex!(flb::FlbStates::new(), "luo::flb_states"),
            preserved <- new_mutex!(RBTree::new(), "luo::preserved"),
            incoming <- new_mutex!(
                IncomingState {
                    sessions: in_sessions,
                    dropped,
                    deserialized: None,
                },
                "luo::incoming"
            ),
        })
    }

    /// Records that the file with `id` is preserved (`EBUSY` if it already is).
    pub(crate) fn claim_id(&self, id: usize) -> Result {
        let node = kernel::rbtree::RBTreeNodeReservation::new(GFP_KERNEL)?;
        // One walk down the tree for the check and the insert.
        match self.preserved.lock().entry(id) {
            kernel::rbtree::Entry::Occupied(_) => Err(EBUSY),
            kernel::rbtree::Entry::Vacant(v) => {
                v.insert((), node);
                Ok(())
            }
        }
    }

    /// Forgets a preserved file id.
    pub(crate) fn release_id(&self, id: usize) {
        self.preserved.lock().remove(&id);
    }

    /// Starts a session operation: holds off the reboot path until the guard is dropped.
    /// `EBUSY` once the reboot path has serialized the sessions (the C LUO blocks forever).
    pub(crate) fn enter(&self) -> Result<ReadGuard<'_, State>> {
        let state = self.state.read();
        if state.frozen {
            return Err(EBUSY);
        }
        Ok(state)
    }

    /// Turns the previous kernel's sessions into incoming sessions (first open of the
    /// device), now that the file handlers are registered.
    ///
    /// A file whose handler is not registered, or whose handler's module is going away, is
    /// dropped with a warning; the rest of its session is kept. Only an allocation failure makes
    /// this fail; then this open and every later one fail with `EIO`.
    ///
    /// Then the files of the sessions dropped at boot (see [`handover::Incoming::dropped`])
    /// are finished by their handlers, as files of a session that is never retrieved would be
    /// at its FINISH, so that what they hold (pages, devices) is given back.
    pub(crate) fn deserialize(&self) -> Result {
        let mut inc = self.incoming.lock();
        let (res, dropped) = match inc.deserialized {
            Some(res) => (res, KVVec::new()),
            None => {
                self.timeline
                    .lock()
                    .mark_in(timeline::InPoint::Open, timeline::now());
                let sessions = core::mem::take(&mut inc.sessions);
                let res = self.build_incoming(sessions).map_err(|e| {
                    pr_warn!(
                        "cannot build the incoming sessions ({:?}): /dev/liveupdate stays unusable\n",
                        e
                    );
                    EIO
                });
                inc.deserialized = Some(res);
                let in_dropped = core::mem::take(&mut inc.dropped);
                (res, self.claim_files(in_dropped, None))
            }
        };
        // Handlers are called with no LUO mutex held.
        drop(inc);
        for f in dropped.into_iter() {
            f.finish_dropped(self);
        }
        // Only the first open's (`mark_in` keeps the first stamp).
        self.timeline
            .lock()
            .mark_in(timeline::InPoint::Opened, timeline::now());
        res
    }

    /// Matches files of the previous kernel to their registered handlers, taking a reference on
    /// each handler's module. A file without one, or whose module is going away, is dropped
    /// with a warning naming `session` (with none, the file was in a dropped session: nothing
    /// is logged). On allocation failure the files not matched yet are dropped.
    fn claim_files(
        &self,
        files: KVVec<handover::InFile>,
        session: Option<&Name>,
    ) -> KVVec<LuoFile> {
        let Ok(mut out) = KVVec::with_capacity(files.len(), GFP_KERNEL) else {
            return KVVec::new();
        };
        // Held from each lookup to the file's module reference, so that the handler cannot be
        // unregistered and its module unloaded in between.
        let reg = self.registry.read();
        // Files of one handler usually come together: remember the last lookup (of this
        // section: the handler may be gone in the next one).
        let mut last: Option<([u8; abi::COMPAT_LEN], Arc<registry::Handler>)> = None;
        for f in files.into_iter() {
            let handler = match &last {
                Some((c, h)) if *c == f.compat => Some(h.clone()),
                _ => {
                    let compat = abi::get_str(&f.compat).unwrap_or(c"");
                    let h = reg.find_by_compatible(compat);
                    if let Some(h) = &h {
                        last = Some((f.compat, h.clone()));
                    }
                    h
                }
            };
            // A handler whose module is going away is as good as unregistered: its file is
            // dropped, and the open goes on (the C LUO fails it with `EIO`).
            let found = handler.and_then(|h| h.ops.try_get_owner().map(|owner| (owner, h)));
            let Some((owner, handler)) = found else {
                if let Some(name) = session {
                    pr_warn!(
                        "session [{}]: dropped token {:#x}: no registered handler for compatible '{}'\n",
                        kernel::str::BStr::from_bytes(name.as_bytes()),
                        f.token,
                        abi::get_str(&f.compat).unwrap_or(c"")
                    );
                }
                continue;
            };
            // Within the capacity: at most one file per handover entry.
            if out
                .push_within_capacity(LuoFile::incoming(handler, owner, f.token, f.data))
                .is_err()
            {
                break;
            }
        }
        out
    }

    fn build_incoming(&self, in_sessions: KVVec<handover::InSession>) -> Result {
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test_handler::deserialize_fault()?;
        let mut sessions = self.sessions.lock();
        for ins in in_sessions.into_iter() {
            // An incoming session is never on `Sessions::out`: only the by-name token is kept.
            let session = session::NewSession::new(ins.name, true)?.by_name;
            let wanted = ins.files.len();
            let files = self.claim_files(ins.files, Some(&ins.name));
            if files.capacity() < wanted {
                // Out of memory: the files, dropped, give their module references back.
                return Err(ENOMEM);
            }
            session.inner.lock().files = FileSet::incoming(files)?;
            sessions.add_incoming(session)?;
        }
        Ok(())
    }

    /// Takes the previous kernel's handover entry of an FLB, to retrieve it (see
    /// [`handover::InFlb::take`]).
    ///
    /// `ENODATA` if the previous kernel handed over no FLB table, `ENOENT` if this FLB is not
    /// in it.
    pub(crate) fn take_incoming_flb(&self, compat: &CStr) -> Result<&handover::InFlb> {
        self.incoming_flbs
            .as_ref()
            .ok_or(ENODATA)?
            .iter()
            .find(|f| abi::get_str(&f.compat) == Some(compat))
            .ok_or(ENOENT)?
            .take()
    }
}

/// `liveupdate=` (an early parameter, parsed by the C glue).
#[no_mangle]
pub extern "C" fn luo_rs_set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Early initcall: sets up the global state.
#[no_mangle]
pub extern "C" fn luo_rs_early_init() -> c_int {
    let boot = timeline::now();
    if !kho::is_enabled() {
        if enabled() {
            pr_warn!("Disabling liveupdate because KHO is disabled\n");
        }
        ENABLED.store(false, Relaxed);
        return 0;
    }
    let incoming = handover::read_incoming();
    match KBox::pin_init(Luo::new(incoming, boot), GFP_KERNEL) {
        Ok(l) => {
            LUO.populate(l);
            0
        }
        Err(e) => {
            pr_err!("cannot allocate the LUO state: {:?}\n", e);
            ENABLED.store(false, Relaxed);
            e.to_errno()
        }
    }
}

/// Late initcall: registers `/dev/liveupdate` (before handlers register, also late).
#[no_mangle]
pub extern "C" fn luo_rs_late_init() -> c_int {
    if !enabled() {
        return 0;
    }
    let setup = luo().and_then(|l| {
        // As the C LUO, the number wraps (it comes from the previous kernel).
        let h = handover::Handover::new(l.incoming_num.wrapping_add(1))?;
        l.sessions.lock().handover = Some(h);
        Ok(())
    });
    if let Err(e) = setup {
        pr_err!("failed to prepare LUO state: {:?}\n", e);
        ENABLED.store(false, Relaxed);
        return e.to_errno();
    }
    if let Err(e) = device::LuoDevice::register() {
        pr_err!("cannot register /dev/liveupdate: {:?}\n", e);
        ENABLED.store(false, Relaxed);
        return e.to_errno();
    }
    if let Ok(l) = luo() {
        // The timeline is not needed for a live update: without it, the next kernel shows
        // only its own part.
        match timeline::Timeline::new_out() {
            Ok(out) => l.timeline.lock().set_out(out),
            Err(e) => pr_warn!("timeline: cannot hand one over: {:?}\n", e),
        }
        l.timeline
            .lock()
            .mark_in(timeline::InPoint::Init, timeline::now());
        timeline::debugfs_init();
    }
    #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
    if let Err(e) = test_handler::init() {
        pr_err!("cannot register the test handler: {:?}\n", e);
    }
    0
}

/// A point of the reboot path that the C glue sees (`luo_glue.c`): 2, device shutdown begins
/// (a reboot notifier of the lowest priority); 3, syscore shutdown (the last point before
/// `machine_kexec()`).
#[no_mangle]
pub extern "C" fn luo_rs_timeline_mark(point: u32) {
    let p = match point {
        2 => timeline::OutPoint::Devices,
        3 => timeline::OutPoint::Jump,
        _ => return,
    };
    if let Ok(l) = luo() {
        l.timeline.lock().mark_out(p, timeline::now());
    }
}
