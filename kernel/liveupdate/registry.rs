// SPDX-License-Identifier: GPL-2.0

//! The registry of file handlers and FLBs.
//!
//! Handlers are kept in registration order, which is also the order in which they are asked
//! `can_preserve`. Each handler has the list of FLBs linked to it, in link order.
//!
//! The registry is behind `Luo::registry`, a reader/writer semaphore. Registering,
//! unregistering, linking and unlinking hold it for writing. A handler found here may be
//! called only while it is held for reading, or once a reference on the handler's module has
//! been taken under it (see [`RegisteredHandler::try_get_owner`]): a handler of a loadable
//! module is unregistered, under the write lock, before the module goes away.

use crate::{
    abi::{
        put_str,
        COMPAT_LEN, //
    },
    flb::{
        FlbPin,
        FlbState,
        FLB_MAX, //
    },
    registered::RegisteredHandler, //
};
use kernel::{
    bindings,
    kho::bytes,
    prelude::*,
    sync::Arc, //
};

/// A registered handler with the FLBs linked to it at one point in time.
///
/// Linking or unlinking an FLB replaces the entry. An outgoing file keeps the entry it was
/// preserved with, so it drops exactly the FLB references it took; an incoming file puts the
/// FLBs of the handler's entry at the time it is finished (see [`Registry::current`]). An entry
/// outlives its registration only in files, which hold a reference on the handler's module.
pub(crate) struct Handler {
    ops: Arc<RegisteredHandler>,
    /// The compatible string as the handover stores it (NUL padded), computed once so that
    /// the reboot path only copies it, in 8-byte words: a 48-byte array copy would be a call
    /// to `memmove()` per file (see [`Handler::write_compat`]).
    compat: [u64; COMPAT_LEN / 8],
    /// FLBs linked to the handler, in link order.
    flbs: KVec<Arc<FlbState>>,
}

impl Handler {
    /// The handler's callbacks.
    pub(crate) fn ops(&self) -> &RegisteredHandler {
        &self.ops
    }

    /// The FLBs linked to the handler, in link order.
    pub(crate) fn flbs(&self) -> &[Arc<FlbState>] {
        &self.flbs
    }

    /// Writes the compatible string as the handover stores it, at the start of `dst` (the
    /// reboot path: six word stores, not a copy of the 48-byte array).
    pub(crate) fn write_compat(&self, dst: &mut [u8]) {
        for (i, w) in self.compat.iter().enumerate() {
            let _ = bytes::put_ne_u64(dst, i * 8, *w);
        }
    }

    /// The compatible string as the handover stores it, in words.
    pub(crate) fn compat(&self) -> &[u64; COMPAT_LEN / 8] {
        &self.compat
    }

    fn new(ops: Arc<RegisteredHandler>, flbs: KVec<Arc<FlbState>>) -> Result<Arc<Self>> {
        let mut compat = [0u64; COMPAT_LEN / 8];
        put_str(compat.as_mut_bytes(), ops.compatible().to_bytes());
        Ok(Arc::new(Self { ops, compat, flbs }, GFP_KERNEL)?)
    }
}

struct FlbUse {
    flb: Arc<FlbState>,
    /// Number of handlers the FLB is linked to.
    users: usize,
}

/// Handlers and FLBs. Protected by `Luo::registry`.
pub(crate) struct Registry {
    /// The registered handlers, in registration order.
    handlers: KVec<Arc<Handler>>,
    /// FLBs linked to at least one handler, in first-registration order.
    registered: KVec<FlbUse>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            handlers: KVec::new(),
            registered: KVec::new(),
        }
    }

    fn index(&self, raw: *mut bindings::liveupdate_file_handler) -> Option<usize> {
        self.handlers.iter().position(|h| h.ops.as_raw() == raw)
    }

    /// Registers a handler (`EEXIST` if its compatible string is taken).
    pub(crate) fn register(&mut self, ops: RegisteredHandler) -> Result {
        if self
            .handlers
            .iter()
            .any(|h| h.ops.compatible() == ops.compatible())
        {
            pr_err!(
                "File handler registration failed: Compatible string '{}' already registered.\n",
                ops.compatible()
            );
            return Err(EEXIST);
        }
        let h = Handler::new(Arc::new(ops, GFP_KERNEL)?, KVec::new())?;
        self.handlers.push(h, GFP_KERNEL)?;
        Ok(())
    }

    /// Unregisters a handler and unlinks its FLBs. Files it preserved keep their entry.
    ///
    /// Cannot fail. Once the caller drops the write lock, no lookup can return the handler, and
    /// none still in progress can call it: LUO calls it again only for files that hold a
    /// reference on its module.
    pub(crate) fn unregister(&mut self, raw: *mut bindings::liveupdate_file_handler) {
        let Some(old) = self.index(raw).and_then(|i| self.handlers.remove(i).ok()) else {
            return;
        };
        for flb in old.flbs.iter() {
            self.drop_user(flb);
            flb.unlinked();
        }
    }

    /// Replaces handler `i` by one with the FLB list `flbs`.
    fn relink(&mut self, i: usize, flbs: KVec<Arc<FlbState>>) -> Result {
        let slot = self.handlers.get_mut(i).ok_or(EINVAL)?;
        *slot = Handler::new(slot.ops.clone(), flbs)?;
        Ok(())
    }

    /// Links an FLB to a registered handler.
    pub(crate) fn link_flb(
        &mut self,
        fh: *mut bindings::liveupdate_file_handler,
        flb: &FlbPin,
    ) -> Result {
        let flb: &Arc<FlbState> = flb;
        let i = self.index(fh).ok_or(EINVAL)?;
        let cur = &self.handlers.get(i).ok_or(EINVAL)?.flbs;
        if cur.iter().any(|f| Arc::ptr_eq(f, flb)) {
            return Err(EEXIST);
        }
        let pos = self
            .registered
            .iter()
            .position(|r| Arc::ptr_eq(&r.flb, flb));
        if pos.is_none() {
            if self.registered.len() >= FLB_MAX {
                return Err(ENOSPC);
            }
            if self
                .registered
                .iter()
                .any(|r| r.flb.ops().compatible() == flb.ops().compatible())
            {
                return Err(EEXIST);
            }
            self.registered.reserve(1, GFP_KERNEL)?;
        }
        let mut flbs = KVec::with_capacity(cur.len() + 1, GFP_KERNEL)?;
        for f in cur.iter() {
            flbs.push(f.clone(), GFP_KERNEL)?;
        }
        flbs.push(flb.clone(), GFP_KERNEL)?;
        self.relink(i, flbs)?;
        flb.linked();
        match pos {
            Some(r) => self.registered[r].users += 1,
            // Cannot fail: reserved above.
            None => self.registered.push(
                FlbUse {
                    flb: flb.clone(),
                    users: 1,
                },
                GFP_KERNEL,
            )?,
        }
        Ok(())
    }

    fn drop_user(&mut self, flb: &Arc<FlbState>) {
        if let Some(r) = self
            .registered
            .iter()
            .position(|r| Arc::ptr_eq(&r.flb, flb))
        {
            self.registered[r].users = self.registered[r].users.saturating_sub(1);
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
    ) -> Result {
        let linked = self
            .index(fh)
            .filter(|&i| self.handlers[i].flbs.iter().any(|f| Arc::ptr_eq(f, flb)));
        let Some(i) = linked else {
            pr_warn!(
                "Failed to unregister FLB '{}': not found in file handler\n",
                flb.ops().compatible()
            );
            return Ok(());
        };
        let mut flbs = KVec::with_capacity(self.handlers[i].flbs.len(), GFP_KERNEL)?;
        for f in self.handlers[i].flbs.iter() {
            if !Arc::ptr_eq(f, flb) {
                flbs.push(f.clone(), GFP_KERNEL)?;
            }
        }
        self.relink(i, flbs)?;
        self.drop_user(flb);
        flb.unlinked();
        Ok(())
    }

    /// Registered FLBs, for the handover table.
    pub(crate) fn registered_flbs(&self) -> impl Iterator<Item = &Arc<FlbState>> {
        self.registered.iter().map(|r| &r.flb)
    }

    /// The handler that takes `file`: the first one whose `can_preserve` says yes.
    ///
    /// It calls `can_preserve` with the registry held for reading, as the C LUO does with its
    /// register rwsem: a handler can be unregistered (and its module unloaded) only between
    /// such calls. The caller takes a reference on the handler's module before it lets go of
    /// the registry, if it keeps the handler.
    pub(crate) fn find_for_file(&self, file: &kernel::fs::File) -> Option<Arc<Handler>> {
        self.handlers
            .iter()
            .find(|h| h.ops.can_preserve(file))
            .cloned()
    }

    /// The entry of the handler of `entry`, with the FLBs linked to it now; `None` if it is
    /// unregistered. The handler is the same `struct liveupdate_file_handler`, as in the C LUO,
    /// whose FLB list belongs to that struct.
    pub(crate) fn current(&self, entry: &Handler) -> Option<&Arc<Handler>> {
        self.handlers.get(self.index(entry.ops.as_raw())?)
    }

    /// The handler with the given compatible string (for files from the previous kernel). As
    /// for [`Registry::find_for_file`], the caller takes a reference on its module before it
    /// lets go of the registry.
    pub(crate) fn find_by_compatible(&self, compat: &CStr) -> Option<Arc<Handler>> {
        self.handlers
            .iter()
            .find(|h| h.ops.compatible() == compat)
            .cloned()
    }
}
