// SPDX-License-Identifier: GPL-2.0

//! File-Lifecycle-Bound objects (FLBs): state shared by the preserved files of some handlers.
//!
//! An FLB is preserved when the first file of any handler it is linked to is preserved, and
//! unpreserved when the last such file is. In the next kernel it is retrieved on demand and
//! finished when the last linked file is finished.
//!
//! State is kept per `struct liveupdate_flb` (keyed by its address), also before the FLB is
//! registered: C users may ask for their incoming object first.

use crate::{
    luo,
    registered::RegisteredFlb, //
};
use kernel::{
    bindings,
    module::ModuleRef,
    new_mutex,
    prelude::*,
    rbtree::RBTree,
    sync::{
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
#[pin_data]
pub(crate) struct FlbState {
    pub(crate) ops: RegisteredFlb,
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
                out <- new_mutex!(Outgoing::default(), "luo_flb::out"),
                inc <- new_mutex!(Incoming::default(), "luo_flb::inc"),
            }),
            GFP_KERNEL,
        )
    }

    /// A file of a linked handler is being preserved.
    pub(crate) fn file_preserve(&self) -> Result {
        let mut out = self.out.lock();
        if out.count == 0 {
            let owner = self.ops.try_get_owner().ok_or(ENODEV)?;
            // On failure `owner` is dropped: the module reference goes with it.
            let (data, obj) = self.ops.preserve()?;
            out.data = data;
            out.obj = obj;
            out.owner = Some(owner);
        }
        out.count = out.count.checked_add(1).ok_or(EOVERFLOW)?;
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
        if out.count == 0 {
            self.ops.unpreserve(out.data, out.obj);
            out.data = 0;
            out.obj = 0;
            out.owner = None;
        }
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
        let (data, count) = luo()?.incoming_flb(self.ops.compatible())?;
        inc.data = data;
        inc.count = count;
        let owner = self.ops.try_get_owner().ok_or(ENODEV)?;
        match self.ops.retrieve(data) {
            Ok(obj) => {
                inc.obj = obj;
                inc.status = 1;
                inc.owner = Some(owner);
                Ok(())
            }
            Err(e) => {
                // `owner` is dropped: the module reference goes with it.
                inc.status = e.to_errno();
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
        if inc.count == 0 {
            // As the C LUO: `finish` gets the object, and 0 for the data.
            self.ops.finish(0, inc.obj);
            inc.data = 0;
            inc.obj = 0;
            inc.finished = true;
            inc.owner = None;
        }
    }
}

/// The state of every FLB LUO has seen, keyed by the address of its `struct liveupdate_flb`.
/// Protected by `Luo::flb_states`, a leaf lock: FLB ops may call the FLB API, which looks
/// FLBs up here while that FLB's `out` or `inc` lock is held.
pub(crate) struct FlbStates(RBTree<usize, Arc<FlbState>>);

impl FlbStates {
    pub(crate) fn new() -> Self {
        Self(RBTree::new())
    }

    /// The state of an FLB, created on first use.
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_flb` that stays valid for the rest of the
    /// kernel's life (FLBs are static objects of built-in code).
    pub(crate) unsafe fn get(
        &mut self,
        raw: *mut bindings::liveupdate_flb,
    ) -> Result<Arc<FlbState>> {
        if let Some(s) = self.0.get(&(raw as usize)) {
            return Ok(s.clone());
        }
        // SAFETY: The caller guarantees that `raw` is valid for the rest of the kernel's life,
        // longer than the `RegisteredFlb` (kept here and in handler entries).
        let ops = unsafe { RegisteredFlb::from_raw(raw) }?;
        let state = FlbState::new(ops)?;
        self.0
            .try_create_and_insert(raw as usize, state.clone(), GFP_KERNEL)?;
        Ok(state)
    }
}
