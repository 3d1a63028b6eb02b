// SPDX-License-Identifier: GPL-2.0

//! Live Update Orchestrator (LUO): the file handler and FLB interfaces.
//!
//! A *file handler* knows how to carry one kind of file (memfd, vfio, iommufd...) across a
//! kexec: it preserves the file's backing state into KHO memory, returns a 64-bit handle that
//! LUO writes into the handover, and rebuilds the file from that handle in the next kernel.
//! A *File-Lifecycle-Bound* object (FLB) is state shared by all files of some handlers (e.g. an
//! IOMMU domain): preserved with the first such file, finished with the last.
//!
//! LUO drives both through the traits here, [`FileHandler`] and [`Flb`]. Handlers written in C
//! register a `struct liveupdate_file_handler` with `liveupdate_register_file_handler()`;
//! [`CFileHandler`] and [`CFlb`] adapt them to the traits.
//!
//! The per-file state of a handler is a typed Rust value ([`FileHandler::State`]) that LUO owns
//! between `preserve` and `unpreserve`/`finish`; only the 64-bit handle crosses the kexec.
//!
//! C header: [`include/linux/liveupdate.h`](srctree/include/linux/liveupdate.h)

use crate::{
    bindings,
    error::to_result,
    fs::File,
    prelude::*,
    sync::aref::ARef,
    types::Opaque, //
};
use core::ptr::NonNull;

/// Length of a handler or FLB compatible string, including the NUL.
pub const COMPAT_LEN: usize = bindings::LIVEUPDATE_HNDL_COMPAT_LENGTH as usize;

/// What happened to a preserved file in the new kernel before `finish`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrieveStatus {
    /// Userspace never asked for the file: `finish` must release the preserved state.
    NotRetrieved,
    /// The file was rebuilt and handed to userspace.
    Retrieved,
    /// Rebuilding the file failed with this error (the failure is sticky).
    Failed(Error),
}

impl RetrieveStatus {
    /// The C encoding: 0, 1, or a negative errno.
    pub fn to_c(self) -> c_int {
        match self {
            Self::NotRetrieved => 0,
            Self::Retrieved => 1,
            Self::Failed(e) => e.to_errno(),
        }
    }
}

/// A file handler: how to preserve and restore one kind of file.
///
/// LUO calls these methods with the locks described in
/// `Documentation/core-api/liveupdate-rust.rst`; none of them may call back into LUO.
pub trait FileHandler: Send + Sync {
    /// State kept for a preserved file between [`FileHandler::preserve`] and
    /// [`FileHandler::unpreserve`] in the same kernel. It never crosses the kexec.
    type State: Send;

    /// The handler's compatible string, written into the handover for every file it preserves.
    fn compatible(&self) -> &CStr;

    /// Whether this handler can preserve `file`. The first handler that says yes wins.
    fn can_preserve(&self, file: &File) -> bool;

    /// Preserves `file`: returns the 64-bit handle for the handover and the per-file state.
    fn preserve(&self, file: &File) -> Result<(u64, Self::State)>;

    /// Undoes [`FileHandler::preserve`] (session closed before the reboot).
    fn unpreserve(&self, file: &File, data: u64, state: Self::State);

    /// Called at reboot, in preservation order; may update the handle. An error aborts the
    /// reboot, and the files already frozen are unfrozen.
    fn freeze(&self, _file: &File, _data: &mut u64, _state: &mut Self::State) -> Result {
        Ok(())
    }

    /// Undoes [`FileHandler::freeze`] after a failed reboot.
    fn unfreeze(&self, _file: &File, _data: u64, _state: &mut Self::State) {}

    /// Rebuilds the file from the handle `data` in the new kernel. Called at most once per file.
    fn retrieve(&self, data: u64) -> Result<ARef<File>>;

    /// Whether the file can be finished now (all files of a session are asked first).
    fn can_finish(&self, _file: Option<&File>, _data: u64, _status: RetrieveStatus) -> bool {
        true
    }

    /// Releases what is left of the preserved state once userspace is done with the session.
    fn finish(&self, file: Option<&File>, data: u64, status: RetrieveStatus);

    /// The key used to refuse preserving the same object twice (default: the `struct file`).
    fn get_id(&self, file: &File) -> usize {
        file.as_ptr() as usize
    }

    /// Takes a reference on the module implementing the handler. `false` if it is going away.
    fn try_get_owner(&self) -> bool {
        true
    }

    /// Drops the reference taken by [`FileHandler::try_get_owner`].
    fn put_owner(&self) {}
}

/// State of a file preserved by a C handler: its `private_data` pointer.
pub struct CPrivate(*mut c_void);

// SAFETY: The pointer is only passed back to the C handler that created it; C handlers must
// cope with being called from any task (as with the C LUO).
unsafe impl Send for CPrivate {}

/// A file handler written in C (`struct liveupdate_file_handler`).
///
/// # Invariants
///
/// `raw` points to a registered handler whose ops have `can_preserve`, `preserve`,
/// `unpreserve`, `retrieve` and `finish`, and which stays valid while `self` exists.
pub struct CFileHandler {
    raw: NonNull<bindings::liveupdate_file_handler>,
}

// SAFETY: C handlers are shared, immutable after registration, and callable from any task.
unsafe impl Send for CFileHandler {}
// SAFETY: See above.
unsafe impl Sync for CFileHandler {}

impl CFileHandler {
    /// Wraps a C handler, checking that its mandatory operations are present (`EINVAL`).
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_file_handler` that stays valid (and whose
    /// ops stay unchanged) until the returned object is dropped.
    pub unsafe fn from_raw(raw: *mut bindings::liveupdate_file_handler) -> Result<Self> {
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
    pub fn as_raw(&self) -> *mut bindings::liveupdate_file_handler {
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
}

fn file_ptr(file: Option<&File>) -> *mut bindings::file {
    file.map_or(core::ptr::null_mut(), |f| f.as_ptr())
}

impl FileHandler for CFileHandler {
    type State = CPrivate;

    fn compatible(&self) -> &CStr {
        // SAFETY: The handler is valid; `compatible` is a fixed array that C handlers fill with
        // a NUL-terminated string (a missing NUL is caught by `from_bytes_until_nul`).
        let bytes =
            unsafe { &*(&raw const (*self.raw.as_ptr()).compatible).cast::<[u8; COMPAT_LEN]>() };
        CStr::from_bytes_until_nul(bytes).unwrap_or(c"")
    }

    fn can_preserve(&self, file: &File) -> bool {
        match self.ops().can_preserve {
            // SAFETY: The handler and file are valid for the duration of the call.
            Some(f) => unsafe { f(self.raw.as_ptr(), file.as_ptr()) },
            None => false,
        }
    }

    fn preserve(&self, file: &File) -> Result<(u64, CPrivate)> {
        let mut args = self.args(file.as_ptr(), 0);
        let f = self.ops().preserve.ok_or(EINVAL)?;
        // SAFETY: `args` is a valid argument block for this handler and file.
        to_result(unsafe { f(&mut args) })?;
        Ok((args.serialized_data, CPrivate(args.private_data)))
    }

    fn unpreserve(&self, file: &File, data: u64, state: CPrivate) {
        let mut args = self.args(file.as_ptr(), data);
        args.private_data = state.0;
        if let Some(f) = self.ops().unpreserve {
            // SAFETY: `args` is a valid argument block for this handler and file.
            unsafe { f(&mut args) };
        }
    }

    fn freeze(&self, file: &File, data: &mut u64, state: &mut CPrivate) -> Result {
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

    fn unfreeze(&self, file: &File, data: u64, state: &mut CPrivate) {
        if let Some(f) = self.ops().unfreeze {
            let mut args = self.args(file.as_ptr(), data);
            args.private_data = state.0;
            // SAFETY: `args` is a valid argument block for this handler and file.
            unsafe { f(&mut args) };
        }
    }

    fn retrieve(&self, data: u64) -> Result<ARef<File>> {
        let f = self.ops().retrieve.ok_or(EINVAL)?;
        let mut args = self.args(core::ptr::null_mut(), data);
        // SAFETY: `args` is a valid argument block for this handler.
        to_result(unsafe { f(&mut args) })?;
        let file = NonNull::new(args.file).ok_or(EINVAL)?;
        // SAFETY: A successful retrieve gives us a file with one reference that we now own.
        Ok(unsafe { ARef::from_raw(file.cast()) })
    }

    fn can_finish(&self, file: Option<&File>, data: u64, status: RetrieveStatus) -> bool {
        let Some(f) = self.ops().can_finish else {
            return true;
        };
        let mut args = self.args(file_ptr(file), data);
        args.retrieve_status = status.to_c();
        // SAFETY: `args` is a valid argument block for this handler.
        unsafe { f(&mut args) }
    }

    fn finish(&self, file: Option<&File>, data: u64, status: RetrieveStatus) {
        if let Some(f) = self.ops().finish {
            let mut args = self.args(file_ptr(file), data);
            args.retrieve_status = status.to_c();
            // SAFETY: `args` is a valid argument block for this handler.
            unsafe { f(&mut args) };
        }
    }

    fn get_id(&self, file: &File) -> usize {
        match self.ops().get_id {
            // SAFETY: The file is valid for the duration of the call.
            Some(f) => unsafe { f(file.as_ptr()) },
            None => file.as_ptr() as usize,
        }
    }

    fn try_get_owner(&self) -> bool {
        // SAFETY: `owner` is NULL (built-in) or the module that provides the ops.
        unsafe { bindings::try_module_get(self.ops().owner) }
    }

    fn put_owner(&self) {
        // SAFETY: Pairs with a successful `try_get_owner`.
        unsafe { bindings::module_put(self.ops().owner) }
    }
}

/// A File-Lifecycle-Bound object: state shared by the preserved files of some handlers.
pub trait Flb: Send + Sync {
    /// The FLB's compatible string, written into the handover.
    fn compatible(&self) -> &CStr;
    /// Preserves the shared state (first file of a linked handler); returns its handle and
    /// the live object.
    fn preserve(&self) -> Result<(u64, usize)>;
    /// Undoes [`Flb::preserve`] (the last linked file was unpreserved).
    fn unpreserve(&self, data: u64, obj: usize);
    /// Rebuilds the object from its handle in the new kernel.
    fn retrieve(&self, data: u64) -> Result<usize>;
    /// Releases the object once the last linked file has finished.
    fn finish(&self, data: u64, obj: usize);
    /// Takes a reference on the owner module. `false` if it is going away.
    fn try_get_owner(&self) -> bool {
        true
    }
    /// Drops the reference taken by [`Flb::try_get_owner`].
    fn put_owner(&self) {}
}

/// An FLB written in C (`struct liveupdate_flb`).
///
/// # Invariants
///
/// `raw` points to a valid FLB with all four ops, valid while `self` exists.
pub struct CFlb {
    raw: NonNull<bindings::liveupdate_flb>,
}

// SAFETY: C FLBs are immutable after registration and callable from any task.
unsafe impl Send for CFlb {}
// SAFETY: See above.
unsafe impl Sync for CFlb {}

impl CFlb {
    /// Wraps a C FLB, checking that all four ops are present (`EINVAL`).
    ///
    /// # Safety
    ///
    /// `raw` must point to a valid `struct liveupdate_flb` that stays valid (with unchanged
    /// ops) until the returned object is dropped.
    pub unsafe fn from_raw(raw: *mut bindings::liveupdate_flb) -> Result<Self> {
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

    /// The C FLB.
    pub fn as_raw(&self) -> *mut bindings::liveupdate_flb {
        self.raw.as_ptr()
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
}

impl Flb for CFlb {
    fn compatible(&self) -> &CStr {
        // SAFETY: The FLB is valid; `compatible` is a fixed array holding a C string.
        let bytes =
            unsafe { &*(&raw const (*self.raw.as_ptr()).compatible).cast::<[u8; COMPAT_LEN]>() };
        CStr::from_bytes_until_nul(bytes).unwrap_or(c"")
    }

    fn preserve(&self) -> Result<(u64, usize)> {
        self.call(self.ops().preserve, 0, 0)
    }

    fn unpreserve(&self, data: u64, obj: usize) {
        self.call_void(self.ops().unpreserve, data, obj)
    }

    fn retrieve(&self, data: u64) -> Result<usize> {
        Ok(self.call(self.ops().retrieve, data, 0)?.1)
    }

    fn finish(&self, data: u64, obj: usize) {
        self.call_void(self.ops().finish, data, obj)
    }

    fn try_get_owner(&self) -> bool {
        // SAFETY: `owner` is NULL (built-in) or the module that provides the ops.
        unsafe { bindings::try_module_get(self.ops().owner) }
    }

    fn put_owner(&self) {
        // SAFETY: Pairs with a successful `try_get_owner`.
        unsafe { bindings::module_put(self.ops().owner) }
    }
}

/// A file handler written in Rust, registered with LUO for as long as this object lives.
///
/// LUO sees it as any other handler (`struct liveupdate_file_handler`); its calls come back
/// to `T` through the trampolines of [`Registration`], with the per-file state boxed in the
/// C `private_data`.
///
/// # Invariants
///
/// Once constructed, `raw` is registered with LUO until drop, with `ops` pointing to
/// `RegistrationVTable::<T>::OPS` (a failed registration leaves `ops` NULL).
#[repr(C)]
#[pin_data(PinnedDrop)]
pub struct Registration<T: FileHandler + 'static> {
    #[pin]
    raw: Opaque<bindings::liveupdate_file_handler>,
    handler: T,
}

// SAFETY: LUO may call the handler from any task; `T: Send + Sync`.
unsafe impl<T: FileHandler + 'static> Send for Registration<T> {}
// SAFETY: See above.
unsafe impl<T: FileHandler + 'static> Sync for Registration<T> {}

impl<T: FileHandler + 'static> Registration<T> {
    /// Registers `handler` under its [`FileHandler::compatible`] string (at most 47 bytes).
    pub fn register(handler: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            handler,
            raw <- Opaque::try_ffi_init(|slot: *mut bindings::liveupdate_file_handler| {
                // SAFETY: `slot` is valid for writes; an all-zero handler is a valid
                // starting point (empty private list heads are set up by LUO).
                unsafe { slot.write(pin_init::zeroed()) };
                Ok::<(), Error>(())
            }),
        })
        .pin_chain(|this| {
            let compat = this.handler.compatible().to_bytes_with_nul();
            if compat.len() > COMPAT_LEN || compat.len() < 2 {
                return Err(EINVAL);
            }
            let raw = this.raw.get();
            // SAFETY: `raw` is valid and not yet shared with C; `compatible` is a
            // `const char[]` in C only to stop handlers from changing it after registration.
            unsafe {
                (*raw).ops = &RegistrationVTable::<T>::OPS;
                let dst = (&raw mut (*raw).compatible).cast::<u8>();
                core::ptr::copy_nonoverlapping(compat.as_ptr(), dst, compat.len());
            }
            // SAFETY: `raw` is a valid, pinned handler that stays alive until `drop`
            // unregisters it.
            let res = to_result(unsafe { bindings::liveupdate_register_file_handler(raw) });
            if res.is_err() {
                // SAFETY: Not registered, so not shared; a NULL `ops` tells `drop`.
                unsafe { (*raw).ops = core::ptr::null() };
            }
            res
        })
    }

    /// The handler.
    pub fn handler(&self) -> &T {
        &self.handler
    }
}

#[pinned_drop]
impl<T: FileHandler + 'static> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        let raw = self.raw.get();
        // SAFETY: `raw` is valid; `ops` is NULL only if registration failed.
        if unsafe { (*raw).ops.is_null() } {
            return;
        }
        // SAFETY: The handler was registered by `register`.
        unsafe { bindings::liveupdate_unregister_file_handler(raw) };
    }
}

/// The C ops of a [`Registration<T>`].
struct RegistrationVTable<T>(core::marker::PhantomData<T>);

impl<T: FileHandler + 'static> RegistrationVTable<T> {
    /// # Safety
    ///
    /// `h` must be the handler of a live `Registration<T>`.
    unsafe fn handler<'a>(h: *mut bindings::liveupdate_file_handler) -> &'a T {
        // SAFETY: `Registration<T>` is `repr(C)` with `raw` first, so the handler pointer is
        // also a pointer to the registration, which is alive while it is registered.
        unsafe { &(*h.cast::<Registration<T>>()).handler }
    }

    /// # Safety
    ///
    /// `file` must be NULL or a valid file for the duration of the call.
    unsafe fn file<'a>(file: *mut bindings::file) -> Option<&'a File> {
        // SAFETY: As above; LUO does not hold an `fdget_pos` region on it.
        (!file.is_null()).then(|| unsafe { File::from_raw_file(file) })
    }

    fn status(s: c_int) -> RetrieveStatus {
        match s {
            0 => RetrieveStatus::NotRetrieved,
            s if s > 0 => RetrieveStatus::Retrieved,
            e => RetrieveStatus::Failed(Error::from_errno(e)),
        }
    }

    /// # Safety
    ///
    /// `h` must be the handler of a live `Registration<T>` and `file` a valid file.
    unsafe extern "C" fn can_preserve(
        h: *mut bindings::liveupdate_file_handler,
        file: *mut bindings::file,
    ) -> bool {
        // SAFETY: LUO passes its registered handler and a valid file.
        match unsafe { (Self::handler(h), Self::file(file)) } {
            (h, Some(f)) => h.can_preserve(f),
            _ => false,
        }
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: LUO passes a valid argument block for its registered handler and a file.
        let (a, h, f) = unsafe {
            (
                &mut *args,
                Self::handler((*args).handler),
                Self::file((*args).file),
            )
        };
        let Some(f) = f else {
            return EINVAL.to_errno();
        };
        match h
            .preserve(f)
            .and_then(|(data, state)| Ok((data, KBox::new(state, GFP_KERNEL)?)))
        {
            Ok((data, state)) => {
                a.serialized_data = data;
                a.private_data = KBox::into_raw(state).cast();
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: LUO passes the argument block of a file this handler preserved.
        let (a, h, f) = unsafe {
            (
                &mut *args,
                Self::handler((*args).handler),
                Self::file((*args).file),
            )
        };
        if a.private_data.is_null() {
            return;
        }
        // SAFETY: `private_data` was set by `preserve` from `KBox::into_raw` and LUO passes
        // it to `unpreserve` once, as the last call for this file.
        let state = unsafe { KBox::from_raw(a.private_data.cast::<T::State>()) };
        a.private_data = core::ptr::null_mut();
        if let Some(f) = f {
            h.unpreserve(f, a.serialized_data, KBox::into_inner(state));
        }
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn freeze(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: LUO passes the argument block of a file this handler preserved.
        let (a, h, f) = unsafe {
            (
                &mut *args,
                Self::handler((*args).handler),
                Self::file((*args).file),
            )
        };
        let (Some(f), false) = (f, a.private_data.is_null()) else {
            return EINVAL.to_errno();
        };
        // SAFETY: `private_data` is the live state box made by `preserve`; LUO serializes
        // calls for one file.
        let state = unsafe { &mut *a.private_data.cast::<T::State>() };
        let mut data = a.serialized_data;
        match h.freeze(f, &mut data, state) {
            Ok(()) => {
                a.serialized_data = data;
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn unfreeze(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: LUO passes the argument block of a file this handler preserved.
        let (a, h, f) = unsafe {
            (
                &mut *args,
                Self::handler((*args).handler),
                Self::file((*args).file),
            )
        };
        if let (Some(f), false) = (f, a.private_data.is_null()) {
            // SAFETY: As in `freeze`.
            let state = unsafe { &mut *a.private_data.cast::<T::State>() };
            h.unfreeze(f, a.serialized_data, state);
        }
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: LUO passes a valid argument block for its registered handler.
        let (a, h) = unsafe { (&mut *args, Self::handler((*args).handler)) };
        match h.retrieve(a.serialized_data) {
            Ok(file) => {
                a.file = ARef::into_raw(file).as_ptr().cast();
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn can_finish(args: *mut bindings::liveupdate_file_op_args) -> bool {
        // SAFETY: LUO passes a valid argument block for its registered handler.
        let (a, h, f) = unsafe {
            (
                &*args,
                Self::handler((*args).handler),
                Self::file((*args).file),
            )
        };
        h.can_finish(f, a.serialized_data, Self::status(a.retrieve_status))
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a live
    /// `Registration<T>`, and whose `file` is NULL or valid for the duration of the call.
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: LUO passes a valid argument block for its registered handler.
        let (a, h, f) = unsafe {
            (
                &*args,
                Self::handler((*args).handler),
                Self::file((*args).file),
            )
        };
        h.finish(f, a.serialized_data, Self::status(a.retrieve_status));
    }

    const OPS: bindings::liveupdate_file_ops = bindings::liveupdate_file_ops {
        can_preserve: Some(Self::can_preserve),
        preserve: Some(Self::preserve),
        unpreserve: Some(Self::unpreserve),
        freeze: Some(Self::freeze),
        unfreeze: Some(Self::unfreeze),
        retrieve: Some(Self::retrieve),
        can_finish: Some(Self::can_finish),
        finish: Some(Self::finish),
        get_id: None,
        owner: core::ptr::null_mut(),
    };
}

/// The `/dev/liveupdate` uAPI structs, as plain-old-data for user copies.
pub mod uapi {
    use crate::transmute::{
        AsBytes,
        FromBytes, //
    };
    pub use crate::uapi::{
        liveupdate_ioctl_create_session as CreateSession,
        liveupdate_ioctl_retrieve_session as RetrieveSession,
        liveupdate_session_finish as Finish,
        liveupdate_session_get_name as GetName,
        liveupdate_session_preserve_fd as PreserveFd,
        liveupdate_session_retrieve_fd as RetrieveFd, //
    };

    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: The uAPI struct has only integer and byte-array fields and no padding
            // (checked by the assertion below), so every bit pattern is valid and all bytes
            // are initialized.
            unsafe impl FromBytes for $t {}
            // SAFETY: See above.
            unsafe impl AsBytes for $t {}
        )*};
    }
    pod!(
        CreateSession,
        RetrieveSession,
        PreserveFd,
        RetrieveFd,
        Finish,
        GetName
    );

    const _: () = {
        assert!(size_of::<CreateSession>() == 72);
        assert!(size_of::<RetrieveSession>() == 72);
        assert!(size_of::<PreserveFd>() == 16);
        assert!(size_of::<RetrieveFd>() == 16);
        assert!(size_of::<Finish>() == 8);
        assert!(size_of::<GetName>() == 72);
    };
}
