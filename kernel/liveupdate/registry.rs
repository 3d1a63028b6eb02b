// SPDX-License-Identifier: GPL-2.0

//! The registry of file handlers and FLBs.
//!
//! Handlers are kept in registration order, which is also the order in which they are asked
//! `can_preserve`. Each handler has the list of FLBs linked to it, in link order.

use crate::flb::{
    FlbState,
    FLB_MAX, //
};
use kernel::{
    bindings,
    fs::File,
    liveupdate::{
        CFileHandler,
        CFlb,
        FileHandler,
        Flb, //
    },
    prelude::*,
    rbtree::RBTree,
    sync::Arc, //
};

/// A registered file handler.
pub(crate) struct Handler {
    pub(crate) ops: CFileHandler,
}

struct Slot {
    handler: Arc<Handler>,
    /// FLBs linked to the handler, in link order.
    flbs: KVec<Arc<FlbState>>,
}

struct RegisteredFlb {
    flb: Arc<FlbState>,
    /// Number of handlers the FLB is linked to.
    users: usize,
}

/// Handlers and FLBs. Protected by `Luo::registry`.
pub(crate) struct Registry {
    slots: KVec<Slot>,
    /// FLBs linked to at least one handler, in first-registration order.
    registered: KVec<RegisteredFlb>,
    /// State of every FLB LUO has seen, keyed by the address of its `struct liveupdate_flb`.
    known_flbs: RBTree<usize, Arc<FlbState>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            slots: KVec::new(),
            registered: KVec::new(),
            known_flbs: RBTree::new(),
        }
    }

    /// Registers a handler (`EEXIST` if its compatible string is taken).
    pub(crate) fn register(&mut self, ops: CFileHandler) -> Result {
        if self
            .slots
            .iter()
            .any(|s| s.handler.ops.compatible() == ops.compatible())
        {
            pr_err!(
                "File handler registration failed: Compatible string '{}' already registered.\n",
                ops.compatible()
            );
            return Err(EEXIST);
        }
        let handler = Arc::new(Handler { ops }, GFP_KERNEL)?;
        self.slots.push(
            Slot {
                handler,
                flbs: KVec::new(),
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    fn slot_index(&self, raw: *mut bindings::liveupdate_file_handler) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.handler.ops.as_raw() == raw)
    }

    /// Unregisters a handler and unlinks its FLBs. Files it preserved keep their reference.
    pub(crate) fn unregister(&mut self, raw: *mut bindings::liveupdate_file_handler) {
        let Some(i) = self.slot_index(raw) else {
            return;
        };
        let slot = self.slots.remove(i);
        if let Ok(slot) = slot {
            for flb in slot.flbs.iter() {
                self.drop_user(flb);
            }
        }
    }

    /// The handler that takes `file`: the first one whose `can_preserve` says yes.
    pub(crate) fn find_for_file(&self, file: &File) -> Option<Arc<Handler>> {
        self.slots
            .iter()
            .find(|s| s.handler.ops.can_preserve(file))
            .map(|s| s.handler.clone())
    }

    /// The handler with the given compatible string (for files from the previous kernel).
    pub(crate) fn find_by_compatible(&self, compat: &CStr) -> Option<Arc<Handler>> {
        self.slots
            .iter()
            .find(|s| s.handler.ops.compatible() == compat)
            .map(|s| s.handler.clone())
    }

    /// The FLBs linked to `handler`, in link order.
    pub(crate) fn flbs_of(&self, handler: &Arc<Handler>) -> &[Arc<FlbState>] {
        self.slots
            .iter()
            .find(|s| Arc::ptr_eq(&s.handler, handler))
            .map_or(&[], |s| &s.flbs[..])
    }

    /// The state of an FLB, created on first use.
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_flb` that stays valid for the rest of the
    /// kernel's life (FLBs are static objects of built-in code).
    pub(crate) unsafe fn flb_state(
        &mut self,
        raw: *mut bindings::liveupdate_flb,
    ) -> Result<Arc<FlbState>> {
        if let Some(s) = self.known_flbs.get(&(raw as usize)) {
            return Ok(s.clone());
        }
        // SAFETY: Guaranteed by the caller.
        let ops = unsafe { CFlb::from_raw(raw) }?;
        let state = FlbState::new(ops)?;
        self.known_flbs
            .try_create_and_insert(raw as usize, state.clone(), GFP_KERNEL)?;
        Ok(state)
    }

    /// Links an FLB to a registered handler.
    pub(crate) fn link_flb(
        &mut self,
        fh: *mut bindings::liveupdate_file_handler,
        flb: Arc<FlbState>,
    ) -> Result {
        let i = self.slot_index(fh).ok_or(EINVAL)?;
        if self.slots[i].flbs.iter().any(|f| Arc::ptr_eq(f, &flb)) {
            return Err(EEXIST);
        }
        self.slots[i].flbs.reserve(1, GFP_KERNEL)?;
        match self
            .registered
            .iter()
            .position(|r| Arc::ptr_eq(&r.flb, &flb))
        {
            Some(r) => self.registered[r].users += 1,
            None => {
                if self.registered.len() >= FLB_MAX {
                    return Err(ENOSPC);
                }
                if self
                    .registered
                    .iter()
                    .any(|r| r.flb.ops.compatible() == flb.ops.compatible())
                {
                    return Err(EEXIST);
                }
                self.registered.push(
                    RegisteredFlb {
                        flb: flb.clone(),
                        users: 1,
                    },
                    GFP_KERNEL,
                )?;
            }
        }
        self.slots[i].flbs.push(flb, GFP_KERNEL)?;
        Ok(())
    }

    fn drop_user(&mut self, flb: &Arc<FlbState>) {
        if let Some(r) = self
            .registered
            .iter()
            .position(|r| Arc::ptr_eq(&r.flb, flb))
        {
            self.registered[r].users -= 1;
            if self.registered[r].users == 0 {
                let _ = self.registered.remove(r);
            }
        }
    }

    /// Unlinks an FLB from a handler.
    pub(crate) fn unlink_flb(
        &mut self,
        fh: *mut bindings::liveupdate_file_handler,
        flb: &Arc<FlbState>,
    ) {
        let pos = self.slot_index(fh).and_then(|i| {
            self.slots[i]
                .flbs
                .iter()
                .position(|f| Arc::ptr_eq(f, flb))
                .map(|p| (i, p))
        });
        let Some((i, p)) = pos else {
            pr_warn!(
                "Failed to unregister FLB '{}': not found in file handler\n",
                flb.ops.compatible()
            );
            return;
        };
        let _ = self.slots[i].flbs.remove(p);
        self.drop_user(flb);
    }

    /// Registered FLBs, for the handover table.
    pub(crate) fn registered_flbs(&self) -> impl Iterator<Item = &Arc<FlbState>> {
        self.registered.iter().map(|r| &r.flb)
    }
}
