// SPDX-License-Identifier: GPL-2.0

//! File-Lifecycle-Bound objects (FLBs): state shared by the preserved files of some handlers.
//!
//! An FLB is preserved when the first file of any handler it is linked to is preserved, and
//! unpreserved when the last such file is. In the next kernel it is retrieved on demand and
//! finished when the last linked file is finished.
//!
//! State is kept per `struct liveupdate_flb` (keyed by its address), also before the FLB is
//! registered: C users may ask for their incoming object first. It is dropped as soon as
//! nothing uses it (see [`FlbState`]'s `busy`), so that an FLB may be an object of a loadable
//! module: once unregistered and idle, LUO keeps nothing that points to it.

use crate::{
    luo,
    registered::RegisteredFlb, //
};
use core::ops::Deref;
use kernel::{
    bindings,
    module::ModuleRef,
    new_mutex,
    prelude::*,
    rbtree::RBTree,
    sync::{
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        Arc,
        Mutex, //
    }, //
};

/// The most FLBs that can be registered: what fits in the one-page handover table
/// (`LUO_FLB_MAX`).
pub(crate) const FLB_MAX: usize = (kernel::page::PAGE_SIZE
    - size_of::<bindings::luo_flb_header_ser>())
    / size_of::<bindings::luo_flb_ser>();

/// This kernel's side of an FLB.
#[derive(Default)]
struct Outgoing {
    /// Preserved files (and `get_outgoing` users) holding the FLB.
    count: u64,
    data: u64,
    obj: usize,
    /// A reference on the FLB's module while the FLB is preserved.
    owner: Option<ModuleRef>,
}

/// The previous kernel's side of an FLB.
#[derive(Default)]
struct Incoming {
    /// Users still to finish: starts at the previous kernel's count when retrieved.
    count: u64,
    data: u64,
    obj: usize,
    /// 0: not retrieved yet; 1: retrieved; < 0: the sticky retrieve error.
    status: i32,
    finished: bool,
    /// A reference on the FLB's module from its retrieve until its finish.
    owner: Option<ModuleRef>,
}

/// One FLB and its state.
///
/// Lock order: `out` and `inc` come after `Luo::registry` (PRESERVE_FD takes `out` with the
/// registry held for reading, the reboot path to write the FLB table; files are unpreserved
/// and finished without it) and before `Luo::flb_states`, which an FLB op may take through the
/// FLB API while LUO holds that FLB's lock.
///
/// # Invariants
///
/// `busy` is the number of handlers the FLB is linked to, plus the FLB API calls and
/// registrations in progress on it ([`FlbPin`]), plus one while it is preserved (`out.count`
/// is not 0) and one while its incoming object is live (retrieved and not finished). It only
/// goes up from 0 under `Luo::flb_states`; whoever takes it down to 0 then calls
/// [`FlbStates::prune`], which drops the state from `Luo::flb_states`. So a state is in
/// `Luo::flb_states` with `busy` at 0 only until that call, and while `busy` is not 0 the FLB
/// is linked, or in a call of the FLB API (whose caller keeps it valid), or LUO holds a
/// reference on its module (`out.owner`, `inc.owner`).
#[pin_data]
pub(crate) struct FlbState {
    ops: RegisteredFlb,
    busy: Atomic<usize>,
    #[pin]
    out: Mutex<Outgoing>,
    #[pin]
    inc: Mutex<Incoming>,
}

impl FlbState {
    pub(crate) fn new(ops: RegisteredFlb) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                ops,
                busy: Atomic::new(0),
                out <- new_mutex!(Outgoing::default(), "luo_flb::out"),
                inc <- new_mutex!(Incoming::default(), "luo_flb::inc"),
            }),
            GFP_KERNEL,
        )
    }

    /// The FLB's callbacks.
    pub(crate) fn ops(&self) -> &RegisteredFlb {
        &self.ops
    }

    /// A file of a linked handler is being preserved.
    pub(crate) fn file_preserve(&self) -> Result {
        let mut out = self.out.lock();
        let count = out.count.checked_add(1).ok_or(EOVERFLOW)?;
        if out.count == 0 {
            let owner = self.ops.try_get_owner().ok_or(ENODEV)?;
            // On failure `owner` is dropped: the module reference goes with it.
            let (data, obj) = self.ops.preserve()?;
            out.data = data;
            out.obj = obj;
            out.owner = Some(owner);
            // INVARIANT: Preserved now. The FLB is linked to the handler of the file being
            // preserved (PRESERVE_FD holds the registry for reading), so `busy` is not 0.
            self.busy.add(1, Relaxed);
        }
        out.count = count;
        Ok(())
    }

    /// Drops one outgoing reference; the last one unpreserves the FLB.
    pub(crate) fn put_outgoing(&self) {
        let mut out = self.out.lock();
        if out.count == 0 {
            pr_warn!("FLB '{}': unbalanced outgoing put\n", self.ops.compatible());
            return;
        }
        out.count -= 1;
        if out.count != 0 {
            return;
        }
        self.ops.unpreserve(out.data, out.obj);
        out.data = 0;
        out.obj = 0;
        // The module reference goes last, once LUO keeps nothing pointing to the FLB.
        let owner = out.owner.take();
        drop(out);
        self.release();
        drop(owner);
    }

    /// Takes `busy` down by one; at 0, drops the state from `Luo::flb_states`.
    fn release(&self) {
        if self.busy.fetch_sub(1, Full) == 1 {
            if let Ok(l) = luo() {
                l.flb_states().prune(self);
            }
        }
    }

    /// The FLB was linked to a handler.
    ///
    /// The caller holds an [`FlbPin`] on it, so `busy` is not 0.
    pub(crate) fn linked(&self) {
        // INVARIANT: Not 0 before (the caller's pin), one more link after.
        self.busy.add(1, Relaxed);
    }

    /// The FLB was unlinked from a handler.
    pub(crate) fn unlinked(&self) {
        self.release();
    }

    /// `liveupdate_flb_get_outgoing`: a new reference to the live outgoing object.
    pub(crate) fn get_outgoing(&self) -> Result<usize> {
        let mut out = self.out.lock();
        if out.obj == 0 {
            return Err(ENOENT);
        }
        out.count = out.count.checked_add(1).ok_or(EOVERFLOW)?;
        Ok(out.obj)
    }

    /// The outgoing entry for the handover: `(data, count)` if the FLB is preserved.
    pub(crate) fn outgoing_entry(&self) -> Option<(u64, u64)> {
        let out = self.out.lock();
        (out.count > 0).then_some((out.data, out.count))
    }

    fn retrieve_locked(&self, inc: &mut Incoming) -> Result {
        if inc.finished {
            return Err(ENODATA);
        }
        if inc.status < 0 {
            return Err(Error::from_errno(inc.status));
        }
        if inc.status > 0 {
            return Ok(());
        }
        let owner = self.ops.try_get_owner().ok_or(ENODEV)?;
        let l = luo()?;
        // The entry is taken once per boot, whichever FLB object asks: a module unloaded and
        // loaded again gets a new state, and must not retrieve (and restore) the data twice.
        let entry = match l.take_incoming_flb(self.ops.compatible()) {
            Ok(entry) => entry,
            Err(e) => {
                inc.status = e.to_errno();
                return Err(e);
            }
        };
        inc.data = entry.data();
        inc.count = entry.count();
        match self.ops.retrieve(entry.data()) {
            Ok(obj) => {
                inc.obj = obj;
                inc.status = 1;
                inc.owner = Some(owner);
                // INVARIANT: Live now. The caller holds a pin or the FLB is linked (a file's
                // finish, with the registry held for reading), so `busy` is not 0.
                self.busy.add(1, Relaxed);
                Ok(())
            }
            Err(e) => {
                // `owner` is dropped: the module reference goes with it.
                inc.status = e.to_errno();
                entry.failed(e);
                Err(e)
            }
        }
    }

    /// `liveupdate_flb_get_incoming`: retrieves the object on first use, takes a reference.
    pub(crate) fn get_incoming(&self) -> Result<usize> {
        let mut inc = self.inc.lock();
        if inc.obj == 0 {
            self.retrieve_locked(&mut inc)?;
        }
        // The count came from the previous kernel: bounded when parsed, checked here anyway.
        inc.count = inc.count.checked_add(1).ok_or(EOVERFLOW)?;
        Ok(inc.obj)
    }

    /// Drops one incoming reference; the last one finishes the FLB.
    ///
    /// Unlike the C LUO, a put before any get first retrieves the FLB (which sets the count
    /// the previous kernel recorded) instead of underflowing the count and never finishing.
    pub(crate) fn put_incoming(&self) {
        let mut inc = self.inc.lock();
        if inc.status == 0 && self.retrieve_locked(&mut inc).is_err() {
            return;
        }
        if inc.status < 0 || inc.finished || inc.count == 0 {
            return;
        }
        inc.count -= 1;
        if inc.count != 0 {
            return;
        }
        // As the C LUO: `finish` gets the object, and 0 for the data.
        self.ops.finish(0, inc.obj);
        inc.data = 0;
        inc.obj = 0;
        inc.finished = true;
        // The module reference goes last, once LUO keeps nothing pointing to the FLB.
        let owner = inc.owner.take();
        drop(inc);
        self.release();
        drop(owner);
    }
}

/// An FLB API call or a registration in progress on an FLB: keeps its state in
/// `Luo::flb_states` (see [`FlbState`]'s `busy`).
///
/// # Invariants
///
/// The pin was counted in `self.0.busy`.
pub(crate) struct FlbPin(Arc<FlbState>);

impl Deref for FlbPin {
    type Target = Arc<FlbState>;

    fn deref(&self) -> &Arc<FlbState> {
        &self.0
    }
}

impl Drop for FlbPin {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The state of every FLB in use, keyed by the address of its `struct liveupdate_flb`.
/// Protected by `Luo::flb_states`, a leaf lock: FLB ops may call the FLB API, which looks
/// FLBs up here while that FLB's `out` or `inc` lock is held.
///
/// # Invariants
///
/// Every state here is keyed by the address of its FLB, and is dropped from here once its
/// `busy` count is 0 (see [`FlbState`]).
pub(crate) struct FlbStates(RBTree<usize, Arc<FlbState>>);

impl FlbStates {
    pub(crate) fn new() -> Self {
        Self(RBTree::new())
    }

    /// The state of an FLB, created if it has none, pinned until the returned pin is dropped.
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_flb` that stays valid (with unchanged
    /// ops) while it is linked to a handler, while the returned pin lives, and while LUO holds a
    /// reference on its `ops->owner` module: a static FLB of built-in code or of a loadable
    /// module, unregistered from every handler before the module goes away.
    pub(crate) unsafe fn pin(&mut self, raw: *mut bindings::liveupdate_flb) -> Result<FlbPin> {
        let state = match self.0.get(&(raw as usize)) {
            Some(s) => s.clone(),
            None => {
                // SAFETY: The caller guarantees that `raw` is valid while the state can use
                // it: the state is dropped from here, and so stops being found and used, once
                // its FLB is unlinked, unpinned, and holds no module reference (see
                // [`FlbState`]'s invariants).
                let ops = unsafe { RegisteredFlb::from_raw(raw) }?;
                let state = FlbState::new(ops)?;
                self.0
                    .try_create_and_insert(raw as usize, state.clone(), GFP_KERNEL)?;
                state
            }
        };
        // INVARIANT: Counted under `Luo::flb_states`, which the caller holds (`&mut self`).
        state.busy.add(1, Relaxed);
        Ok(FlbPin(state))
    }

    /// Drops `state` from here if nothing uses it any more.
    ///
    /// `busy` only goes up from 0 under the lock held here, so a state seen idle stays so.
    fn prune(&mut self, state: &FlbState) {
        if state.busy.load(Relaxed) != 0 {
            return;
        }
        let key = state.ops.as_raw() as usize;
        if self
            .0
            .get(&key)
            .is_some_and(|s| core::ptr::eq::<FlbState>(&**s, state))
        {
            // INVARIANT: Idle: dropped. A later use of the FLB makes a new state.
            drop(self.0.remove(&key));
        }
    }

    /// How many FLBs have a state (the test handler reports it).
    #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
    pub(crate) fn len(&self) -> usize {
        self.0.iter().count()
    }
}
