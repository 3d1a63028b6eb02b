// SPDX-License-Identifier: GPL-2.0

//! The orchestrator's side: calling the file handlers and FLBs registered through the C API.
//!
//! LUO receives `struct liveupdate_file_handler` and `struct liveupdate_flb` pointers from
//! `liveupdate_register_file_handler()` and `liveupdate_register_flb()`, from handlers written
//! in C or registered with [`Registration`](kernel::liveupdate::Registration). The types here
//! wrap them and call their ops.

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::to_result,
    fs::File,
    liveupdate::{
        RetrieveStatus,
        COMPAT_LEN, //
    },
    module::ModuleRef,
    prelude::*,
    sync::aref::ARef, //
};

/// Length of an FLB's compatible string, including the NUL.
const FLB_COMPAT_LEN: usize = bindings::LIVEUPDATE_FLB_COMPAT_LENGTH as usize;

/// The `private_data` a handler attached to a file it preserved, kept by the orchestrator.
pub(crate) struct PrivateData(*mut c_void);

// SAFETY: The pointer is only passed back to the C handler that created it; C handlers must
// cope with being called from any task (as with the C LUO).
unsafe impl Send for PrivateData {}

/// A registered file handler (`struct liveupdate_file_handler`), as the orchestrator calls it.
///
/// A handler of a loadable module stays valid only until the module is unloaded, which
/// happens after it is unregistered. The orchestrator that made this object (see
/// [`RegisteredHandler::from_raw`]) calls it only while the handler is registered, under a lock
/// that unregistering takes, or while it holds a reference on the handler's module
/// ([`RegisteredHandler::try_get_owner`]).
///
/// # Invariants
///
/// `raw` points to a handler whose ops have `can_preserve`, `preserve`, `unpreserve`,
/// `retrieve` and `finish`, valid whenever a method of `self` is called.
pub(crate) struct RegisteredHandler {
    raw: NonNull<bindings::liveupdate_file_handler>,
}

// SAFETY: C handlers are shared, immutable after registration, and callable from any task.
unsafe impl Send for RegisteredHandler {}
// SAFETY: See above.
unsafe impl Sync for RegisteredHandler {}

impl RegisteredHandler {
    /// Wraps a C handler, checking that its mandatory operations are present (`EINVAL`).
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_file_handler` whose ops stay unchanged,
    /// and the caller must call the methods of the returned object only while `raw` is valid:
    /// for a handler of built-in code, always; for one of a loadable module, while it is
    /// registered with the caller (which must not let it be unregistered during a call) or
    /// while the caller holds a reference on its module taken with
    /// [`RegisteredHandler::try_get_owner`].
    pub(crate) unsafe fn from_raw(raw: *mut bindings::liveupdate_file_handler) -> Result<Self> {
        let raw = NonNull::new(raw).ok_or(EINVAL)?;
        // SAFETY: `raw` is valid by the caller's guarantee.
        let ops = unsafe { (*raw.as_ptr()).ops };
        if ops.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `ops` is non-null and valid with the handler.
        let o = unsafe { &*ops };
        if o.preserve.is_none()
            || o.unpreserve.is_none()
            || o.retrieve.is_none()
            || o.finish.is_none()
            || o.can_preserve.is_none()
        {
            return Err(EINVAL);
        }
        // INVARIANT: checked above and guaranteed by the caller.
        Ok(Self { raw })
    }

    /// The C handler.
    pub(crate) fn as_raw(&self) -> *mut bindings::liveupdate_file_handler {
        self.raw.as_ptr()
    }

    fn ops(&self) -> &bindings::liveupdate_file_ops {
        // SAFETY: By the type invariants the handler and its ops are valid.
        unsafe { &*(*self.raw.as_ptr()).ops }
    }

    fn args(&self, file: *mut bindings::file, data: u64) -> bindings::liveupdate_file_op_args {
        bindings::liveupdate_file_op_args {
            handler: self.raw.as_ptr(),
            retrieve_status: 0,
            file,
            serialized_data: data,
            private_data: core::ptr::null_mut(),
        }
    }
    /// The handler's compatible string.
    pub(crate) fn compatible(&self) -> &CStr {
        // SAFETY: The handler is valid; `compatible` is a fixed array that C handlers fill with
        // a NUL-terminated string (a missing NUL is caught by `from_bytes_until_nul`).
        let bytes =
            unsafe { &*(&raw const (*self.raw.as_ptr()).compatible).cast::<[u8; COMPAT_LEN]>() };
        CStr::from_bytes_until_nul(bytes).unwrap_or(c"")
    }

    /// Calls `can_preserve`.
    pub(crate) fn can_preserve(&self, file: &File) -> bool {
        match self.ops().can_preserve {
            // SAFETY: The handler and file are valid for the duration of the call.
            Some(f) => unsafe { f(self.raw.as_ptr(), file.as_ptr()) },
            None => false,
        }
    }

    /// Calls `preserve`: the handle for the handover and the handler's `private_data`.
    pub(crate) fn preserve(&self, file: &File) -> Result<(u64, PrivateData)> {
        let mut args = self.args(file.as_ptr(), 0);
        let f = self.ops().preserve.ok_or(EINVAL)?;
        // SAFETY: `args` is a valid argument block for this handler and file.
        to_result(unsafe { f(&mut args) })?;
        Ok((args.serialized_data, PrivateData(args.private_data)))
    }

    /// Calls `unpreserve` (the last call for the file).
    pub(crate) fn unpreserve(&self, file: &File, data: u64, state: PrivateData) {
        let mut args = self.args(file.as_ptr(), data);
        args.private_data = state.0;
        if let Some(f) = self.ops().unpreserve {
            // SAFETY: `args` is a valid argument block for this handler and file.
            unsafe { f(&mut args) };
        }
    }

    /// Calls `freeze`, if the handler has it; it may update the handle.
    pub(crate) fn freeze(&self, file: &File, data: &mut u64, state: &mut PrivateData) -> Result {
        let Some(f) = self.ops().freeze else {
            return Ok(());
        };
        let mut args = self.args(file.as_ptr(), *data);
        args.private_data = state.0;
        // SAFETY: `args` is a valid argument block for this handler and file.
        to_result(unsafe { f(&mut args) })?;
        *data = args.serialized_data;
        Ok(())
    }

    /// Calls `unfreeze`, if the handler has it.
    pub(crate) fn unfreeze(&self, file: &File, data: u64, state: &mut PrivateData) {
        if let Some(f) = self.ops().unfreeze {
            let mut args = self.args(file.as_ptr(), data);
            args.private_data = state.0;
            // SAFETY: `args` is a valid argument block for this handler and file.
            unsafe { f(&mut args) };
        }
    }

    /// Calls `retrieve`: the new file, with one reference that the caller now owns.
    pub(crate) fn retrieve(&self, data: u64) -> Result<ARef<File>> {
        let f = self.ops().retrieve.ok_or(EINVAL)?;
        let mut args = self.args(core::ptr::null_mut(), data);
        // SAFETY: `args` is a valid argument block for this handler.
        to_result(unsafe { f(&mut args) })?;
        let file = NonNull::new(args.file).ok_or(EINVAL)?;
        // SAFETY: A successful retrieve gives us a file with one reference that we now own.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }

    /// Calls `can_finish`, if the handler has it (`true` otherwise).
    pub(crate) fn can_finish(
        &self,
        file: Option<&File>,
        data: u64,
        status: RetrieveStatus,
    ) -> bool {
        let Some(f) = self.ops().can_finish else {
            return true;
        };
        let mut args = self.args(file_ptr(file), data);
        args.retrieve_status = status.to_c();
        // SAFETY: `args` is a valid argument block for this handler.
        unsafe { f(&mut args) }
    }

    /// Calls `finish`.
    pub(crate) fn finish(&self, file: Option<&File>, data: u64, status: RetrieveStatus) {
        if let Some(f) = self.ops().finish {
            let mut args = self.args(file_ptr(file), data);
            args.retrieve_status = status.to_c();
            // SAFETY: `args` is a valid argument block for this handler.
            unsafe { f(&mut args) };
        }
    }

    /// The id that keeps an object from being preserved twice: `get_id`, or the file.
    pub(crate) fn get_id(&self, file: &File) -> usize {
        match self.ops().get_id {
            // SAFETY: The file is valid for the duration of the call.
            Some(f) => unsafe { f(file.as_ptr()) },
            None => file.as_ptr() as usize,
        }
    }

    /// Takes a reference on the handler's module (`None` if it is going away), which keeps the
    /// handler valid until it is dropped.
    pub(crate) fn try_get_owner(&self) -> Option<ModuleRef> {
        // SAFETY: By the type invariants the ops are valid; `owner` is NULL (built-in) or the
        // module that provides them, valid as long as they are.
        unsafe { ModuleRef::try_get(self.ops().owner) }
    }
}

/// A registered File-Lifecycle-Bound object (`struct liveupdate_flb`), as the orchestrator
/// calls it.
///
/// # Invariants
///
/// `raw` points to a valid FLB with all four ops while the [`FlbState`](crate::flb::FlbState)
/// that owns `self` is in `Luo::flb_states`. A state dropped from there may still be held,
/// until they go, by entries of files that gave all their FLB references back (see
/// `Registry`), but is never used again.
pub(crate) struct RegisteredFlb {
    raw: NonNull<bindings::liveupdate_flb>,
}

// SAFETY: C FLBs are immutable after registration and callable from any task.
unsafe impl Send for RegisteredFlb {}
// SAFETY: See above.
unsafe impl Sync for RegisteredFlb {}

impl RegisteredFlb {
    /// Wraps a C FLB, checking that all four ops are present (`EINVAL`).
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_flb` that stays valid (with unchanged
    /// ops) while the state that will own the returned object is in `Luo::flb_states`.
    pub(crate) unsafe fn from_raw(raw: *mut bindings::liveupdate_flb) -> Result<Self> {
        let raw = NonNull::new(raw).ok_or(EINVAL)?;
        // SAFETY: `raw` is valid by the caller's guarantee.
        let ops = unsafe { (*raw.as_ptr()).ops };
        if ops.is_null() {
            return Err(EINVAL);
        }
        // SAFETY: `ops` is non-null and valid with the FLB.
        let o = unsafe { &*ops };
        if o.preserve.is_none()
            || o.unpreserve.is_none()
            || o.retrieve.is_none()
            || o.finish.is_none()
        {
            return Err(EINVAL);
        }
        // INVARIANT: checked above and guaranteed by the caller.
        Ok(Self { raw })
    }

    fn ops(&self) -> &bindings::liveupdate_flb_ops {
        // SAFETY: By the type invariants the FLB and its ops are valid.
        unsafe { &*(*self.raw.as_ptr()).ops }
    }

    fn call(
        &self,
        op: Option<unsafe extern "C" fn(*mut bindings::liveupdate_flb_op_args) -> c_int>,
        data: u64,
        obj: usize,
    ) -> Result<(u64, usize)> {
        let f = op.ok_or(EINVAL)?;
        let mut args = bindings::liveupdate_flb_op_args {
            flb: self.raw.as_ptr(),
            data,
            obj: obj as *mut c_void,
        };
        // SAFETY: `args` is a valid argument block for this FLB.
        to_result(unsafe { f(&mut args) })?;
        Ok((args.data, args.obj as usize))
    }

    fn call_void(
        &self,
        op: Option<unsafe extern "C" fn(*mut bindings::liveupdate_flb_op_args)>,
        data: u64,
        obj: usize,
    ) {
        if let Some(f) = op {
            let mut args = bindings::liveupdate_flb_op_args {
                flb: self.raw.as_ptr(),
                data,
                obj: obj as *mut c_void,
            };
            // SAFETY: `args` is a valid argument block for this FLB.
            unsafe { f(&mut args) };
        }
    }

    /// The C FLB (its address keys its state).
    pub(crate) fn as_raw(&self) -> *mut bindings::liveupdate_flb {
        self.raw.as_ptr()
    }

    /// The FLB's compatible string.
    pub(crate) fn compatible(&self) -> &CStr {
        // SAFETY: The FLB is valid; `compatible` is a fixed array holding a C string.
        let bytes = unsafe {
            &*(&raw const (*self.raw.as_ptr()).compatible).cast::<[u8; FLB_COMPAT_LEN]>()
        };
        CStr::from_bytes_until_nul(bytes).unwrap_or(c"")
    }

    /// Calls `preserve`: the handle and the live object.
    pub(crate) fn preserve(&self) -> Result<(u64, usize)> {
        self.call(self.ops().preserve, 0, 0)
    }

    /// Calls `unpreserve`.
    pub(crate) fn unpreserve(&self, data: u64, obj: usize) {
        self.call_void(self.ops().unpreserve, data, obj)
    }

    /// Calls `retrieve`: the object rebuilt from the handle.
    pub(crate) fn retrieve(&self, data: u64) -> Result<usize> {
        Ok(self.call(self.ops().retrieve, data, 0)?.1)
    }

    /// Calls `finish`.
    pub(crate) fn finish(&self, data: u64, obj: usize) {
        self.call_void(self.ops().finish, data, obj)
    }

    /// Takes a reference on the FLB's module (`None` if it is going away), given back when it is
    /// dropped.
    pub(crate) fn try_get_owner(&self) -> Option<ModuleRef> {
        // SAFETY: By the type invariants the ops are valid; `owner` is NULL (built-in) or the
        // module that provides them, valid as long as they are.
        unsafe { ModuleRef::try_get(self.ops().owner) }
    }
}

fn file_ptr(file: Option<&File>) -> *mut bindings::file {
    file.map_or(core::ptr::null_mut(), |f| f.as_ptr())
}
