// SPDX-License-Identifier: GPL-2.0

//! The global state of LUO ([`Luo`]): its locks, in the order of the crate's documentation,
//! the ids of the preserved files, and the previous kernel's sessions until the first open of
//! `/dev/liveupdate` turns them into incoming sessions.

use crate::{
    abi,
    file_set::{
        FileSet,
        InFile,
        LuoFile, //
    },
    flb::FlbStates,
    flb_table::InFlb,
    handover::{
        Incoming,
        State, //
    },
    name::Name,
    registry::{
        Handler,
        Registry, //
    },
    session::{
        InSession,
        Sessions, //
    },
    timeline::{
        now,
        InPoint,
        Timeline, //
    }, //
};
use kernel::{
    new_mutex,
    new_rwsem,
    new_spinlock,
    prelude::*,
    rbtree::{
        Entry,
        RBTree,
        RBTreeNodeReservation, //
    },
    sync::{
        rwsem::{
            ReadGuard,
            RwSemaphore,
            WriteGuard, //
        },
        Arc,
        Mutex,
        MutexGuard,
        SpinLock,
        SpinLockGuard, //
    }, //
};

/// The global state of LUO.
#[pin_data]
pub(crate) struct Luo {
    /// Excludes the reboot path (writer) from every session operation (readers).
    #[pin]
    state: RwSemaphore<State>,
    /// Sessions of both kernels.
    #[pin]
    sessions: Mutex<Sessions>,
    /// File handlers and FLBs: see the lock order in the crate's documentation for who holds
    /// it, and how.
    #[pin]
    registry: RwSemaphore<Registry>,
    /// The state of every FLB in use (a leaf lock).
    #[pin]
    flb_states: Mutex<FlbStates>,
    /// The id (`get_id`) of every preserved or retrieved-but-unfinished file: one
    /// preservation per file system-wide.
    #[pin]
    preserved: Mutex<RBTree<usize, ()>>,
    /// The previous kernel's sessions; turned into incoming sessions on first open.
    #[pin]
    incoming: Mutex<IncomingState>,
    /// The previous kernel's FLB table (read-only after boot); `None` if it handed over none.
    incoming_flbs: Option<KVVec<InFlb>>,
    /// The previous kernel's live update number; 0 after a cold boot.
    incoming_num: u64,
    /// The timeline of the live update that booted this kernel, and the stamps of the next.
    #[pin]
    timeline: SpinLock<Timeline>,
}

/// The previous kernel's sessions, before they become incoming sessions.
struct IncomingState {
    sessions: KVVec<InSession>,
    /// Files of dropped sessions, finished (not retrieved) at the first open.
    dropped: KVVec<InFile>,
    /// `None` until the first open of `/dev/liveupdate` builds the sessions, then how that went.
    /// A failure is sticky, as in the C LUO.
    deserialized: Option<Result>,
}

impl Luo {
    /// The state of a kernel booted at `boot` (a timeline stamp), to which the previous
    /// kernel handed over `data`.
    pub(crate) fn new(data: Incoming, boot: u64) -> impl PinInit<Self, Error> {
        let (liveupdate_num, in_sessions, dropped, flbs) = data.into_parts();
        let tl = Timeline::new(boot, liveupdate_num, liveupdate_num != 0);
        try_pin_init!(Self {
            timeline <- new_spinlock!(tl, "luo::timeline"),
            incoming_flbs: flbs,
            incoming_num: liveupdate_num,
            state <- new_rwsem!(State::new(), "luo::state"),
            sessions <- new_mutex!(Sessions::new(), "luo::sessions"),
            registry <- new_rwsem!(Registry::new(), "luo::registry"),
            flb_states <- new_mutex!(FlbStates::new(), "luo::flb_states"),
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

    /// The previous kernel's live update number; 0 after a cold boot.
    pub(crate) fn incoming_num(&self) -> u64 {
        self.incoming_num
    }

    /// Holds off the reboot path (whether or not it ran already) until the guard is dropped.
    pub(crate) fn read_state(&self) -> ReadGuard<'_, State> {
        self.state.read()
    }

    /// Excludes every session operation, for the reboot path.
    pub(crate) fn write_state(&self) -> WriteGuard<'_, State> {
        self.state.write()
    }

    /// The sessions of both kernels.
    pub(crate) fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock()
    }

    /// The registered handlers and FLBs, to look them up or call them.
    pub(crate) fn read_registry(&self) -> ReadGuard<'_, Registry> {
        self.registry.read()
    }

    /// The registered handlers and FLBs, to change them.
    pub(crate) fn write_registry(&self) -> WriteGuard<'_, Registry> {
        self.registry.write()
    }

    /// The state of every FLB in use.
    pub(crate) fn flb_states(&self) -> MutexGuard<'_, FlbStates> {
        self.flb_states.lock()
    }

    /// The timeline, to stamp a point of the live update.
    pub(crate) fn timeline(&self) -> SpinLockGuard<'_, Timeline> {
        self.timeline.lock()
    }

    /// Records that the file with `id` is preserved (`EBUSY` if it already is).
    pub(crate) fn claim_id(&self, id: usize) -> Result {
        let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
        // One walk down the tree for the check and the insert.
        match self.preserved.lock().entry(id) {
            Entry::Occupied(_) => Err(EBUSY),
            Entry::Vacant(v) => {
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
        if state.frozen() {
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
    /// Then the files of the sessions dropped at boot (see [`Incoming`]) are finished by their
    /// handlers, as files of a session that is never retrieved would be at its FINISH, so that
    /// what they hold (pages, devices) is given back.
    pub(crate) fn deserialize(&self) -> Result {
        let mut inc = self.incoming.lock();
        let (res, dropped) = match inc.deserialized {
            Some(res) => (res, KVVec::new()),
            None => {
                self.timeline().mark_in(InPoint::Open, now());
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
        self.timeline().mark_in(InPoint::Opened, now());
        res
    }

    /// Matches files of the previous kernel to their registered handlers, taking a reference on
    /// each handler's module. A file without one, or whose module is going away, is dropped
    /// with a warning naming `session` (with none, the file was in a dropped session: nothing
    /// is logged). On allocation failure the files not matched yet are dropped.
    fn claim_files(&self, files: KVVec<InFile>, session: Option<&Name>) -> KVVec<LuoFile> {
        let Ok(mut out) = KVVec::with_capacity(files.len(), GFP_KERNEL) else {
            return KVVec::new();
        };
        // Held from each lookup to the file's module reference, so that the handler cannot be
        // unregistered and its module unloaded in between.
        let reg = self.registry.read();
        // Files of one handler usually come together: remember the last lookup (of this
        // section: the handler may be gone in the next one).
        let mut last: Option<([u8; abi::COMPAT_LEN], Arc<Handler>)> = None;
        for f in files.into_iter() {
            let handler = match &last {
                Some((c, h)) if c == f.compat() => Some(h.clone()),
                _ => {
                    let compat = abi::get_str(f.compat()).unwrap_or(c"");
                    let h = reg.find_by_compatible(compat);
                    if let Some(h) = &h {
                        last = Some((*f.compat(), h.clone()));
                    }
                    h
                }
            };
            // A handler whose module is going away is as good as unregistered: its file is
            // dropped, and the open goes on (the C LUO fails it with `EIO`).
            let found = handler.and_then(|h| h.ops().try_get_owner().map(|owner| (owner, h)));
            let Some((owner, handler)) = found else {
                if let Some(name) = session {
                    pr_warn!(
                        "session [{}]: dropped token {:#x}: no registered handler for compatible '{}'\n",
                        kernel::str::BStr::from_bytes(name.as_bytes()),
                        f.token(),
                        abi::get_str(f.compat()).unwrap_or(c"")
                    );
                }
                continue;
            };
            // Within the capacity: at most one file per handover entry.
            if out
                .push_within_capacity(LuoFile::incoming(f, handler, owner))
                .is_err()
            {
                break;
            }
        }
        out
    }

    fn build_incoming(&self, in_sessions: KVVec<InSession>) -> Result {
        #[cfg(CONFIG_FAULT_INJECTION)]
        if should_fail_deserialize() {
            return Err(ENOMEM);
        }
        let mut sessions = self.sessions.lock();
        for ins in in_sessions.into_iter() {
            let (name, in_files) = ins.into_parts();
            let wanted = in_files.len();
            let files = self.claim_files(in_files, Some(&name));
            if files.capacity() < wanted {
                // Out of memory: the files, dropped, give their module references back.
                return Err(ENOMEM);
            }
            sessions.add_incoming(name, FileSet::incoming(files)?)?;
        }
        Ok(())
    }

    /// Takes the previous kernel's handover entry of an FLB, to retrieve it (see
    /// [`InFlb::take`]).
    ///
    /// `ENODATA` if the previous kernel handed over no FLB table, `ENOENT` if this FLB is not
    /// in it.
    pub(crate) fn take_incoming_flb(&self, compat: &CStr) -> Result<&InFlb> {
        self.incoming_flbs
            .as_ref()
            .ok_or(ENODATA)?
            .iter()
            .find(|f| f.is(compat))
            .ok_or(ENOENT)?
            .take()
    }
}

#[cfg(CONFIG_FAULT_INJECTION)]
extern "C" {
    /// `should_fail()` of the fault attribute `fail_liveupdate_deserialize` (`luo_glue.c`).
    fn luo_rs_should_fail_deserialize() -> bool;
}

/// Whether the fault-injection attribute `fail_liveupdate_deserialize` fails this first open.
#[cfg(CONFIG_FAULT_INJECTION)]
fn should_fail_deserialize() -> bool {
    // SAFETY: The function takes no argument and only reads and updates its own attribute,
    // under the attribute's own synchronisation; any task context may call it.
    unsafe { luo_rs_should_fail_deserialize() }
}
