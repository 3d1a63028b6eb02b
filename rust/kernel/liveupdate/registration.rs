// SPDX-License-Identifier: GPL-2.0

//! Registering a Rust [`FileHandler`] with LUO.
//!
//! LUO keeps a pointer to the registered `struct liveupdate_file_handler` in every file it
//! preserved or received from the previous kernel for that handler, and the C API has no way
//! to say when it drops the last one: `liveupdate_unregister_file_handler()` does not wait for
//! those files. A [`Registration`] is therefore split in two:
//!
//! - a small *descriptor* (the C handler and its ops) that LUO points to. Once registered it is
//!   never freed, so no pointer LUO keeps can dangle;
//! - the handler value `T`, behind an [`Arc`]. The registration holds one reference, every file
//!   preserved in this kernel holds one (in its per-file state) until it is unpreserved, and a
//!   call in progress holds one for its duration.
//!
//! Dropping the registration unregisters the handler and drops the registration's reference.
//! Files it preserved keep working with it until they are unpreserved. Files of the previous
//! kernel that LUO had already matched to it can no longer be retrieved (`ENODEV`) and are
//! finished without calling the handler, so their preserved memory stays unused until the
//! next kexec.
//!
//! The handler is tied to the module that registers it: LUO takes a reference on that module
//! for every preserved or incoming file, as it does for handlers written in C. A loadable module
//! registers with the [`ThisModule`] its [`Module::init`](crate::Module::init) gets and drops the
//! registration when it is unloaded: once the drop has unregistered the handler, LUO calls it
//! only for its files, which keep the module loaded (so the module has none left by then). It
//! registers last in its `init`, which must not fail afterwards: LUO may take references on the
//! module as soon as the handler is registered, and a module whose `init` fails is freed
//! whatever references it has. The descriptor stays allocated, as always: loading and unloading
//! such a module leaves one descriptor behind each time.

use super::{
    FileHandler,
    Handover,
    RetrieveStatus,
    COMPAT_LEN, //
};
use crate::{
    bindings,
    error::to_result,
    fs::File,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        LockClassKey,
        SpinLock, //
    },
    types::Opaque,
    ThisModule, //
};
use core::ptr::NonNull;

/// The name and lock class of every descriptor's handler lock, for all `T`.
///
/// Not generic on purpose: `new_spinlock!` in `Registration::<T>::new` puts its `static` key in a
/// generic function, where it is one item for every `T`, while the name literal is emitted by
/// each crate that instantiates the function. With two handler crates (LUO's test handler and
/// the memfd handler), lockdep then found one key with two names and warned ("found a different
/// class ... with the same key").
#[inline(never)]
fn handler_lock_class() -> (&'static CStr, Pin<&'static LockClassKey>) {
    (c"luo_rs_handler", crate::static_lock_class!())
}

/// A file handler written in Rust, registered with LUO for as long as this object lives.
///
/// See the [module documentation](self) for what happens to files when it is dropped.
///
/// # Examples
///
/// ```ignore
/// struct MyModule {
///     _reg: Registration<MyHandler>,
/// }
///
/// impl kernel::Module for MyModule {
///     fn init(module: &'static ThisModule) -> Result<Self> {
///         // LUO takes a reference on `module` for every file it keeps for the handler.
///         Ok(Self {
///             _reg: Registration::new(module, MyHandler::new())?,
///         })
///     }
/// }
/// ```
///
/// # Invariants
///
/// `desc` points to a `Descriptor<T>` that was registered with LUO by [`Registration::new`] and
/// that is never freed.
pub struct Registration<T: FileHandler> {
    desc: NonNull<Descriptor<T>>,
}

// SAFETY: The descriptor is never freed and its mutable part is behind a spinlock; `T` is
// `Send + Sync`.
unsafe impl<T: FileHandler> Send for Registration<T> {}
// SAFETY: `&Registration` only gives `&T`, and `T: Sync`.
unsafe impl<T: FileHandler> Sync for Registration<T> {}

/// What LUO points to: the C handler, its ops, and the handler value while registered.
///
/// # Invariants
///
/// `raw.ops` points to `ops`, and `ops` holds the trampolines of `Descriptor<T>`. Both stay
/// unchanged once registered.
#[repr(C)]
#[pin_data]
struct Descriptor<T: FileHandler> {
    /// First field: a handler pointer is a descriptor pointer.
    #[pin]
    raw: Opaque<bindings::liveupdate_file_handler>,
    ops: bindings::liveupdate_file_ops,
    /// The handler; `None` once the registration is dropped.
    #[pin]
    handler: SpinLock<Option<Arc<T>>>,
}

/// The per-file state of an outgoing file: it keeps the handler alive until `unpreserve`.
struct Preserved<T: FileHandler> {
    handler: Arc<T>,
    state: T::State,
}

impl<T: FileHandler> Registration<T> {
    /// Registers `handler` under its [`FileHandler::compatible`] string, on behalf of `module`.
    ///
    /// Fails with `EINVAL` if the compatible string is empty or longer than [`COMPAT_LEN`] - 1
    /// bytes, and with LUO's error otherwise (`EEXIST` for a compatible string already taken,
    /// `EOPNOTSUPP` if live update is disabled).
    pub fn new(module: &'static ThisModule, handler: T) -> Result<Self> {
        let compat = handler.compatible().to_bytes_with_nul();
        if compat.len() > COMPAT_LEN || compat.len() < 2 {
            return Err(EINVAL);
        }
        let mut bytes = [0u8; COMPAT_LEN];
        bytes[..compat.len()].copy_from_slice(compat);
        let handler = Arc::new(handler, GFP_KERNEL)?;
        let desc = KBox::pin_init(
            pin_init!(Descriptor::<T> {
                // SAFETY: An all-zero handler is a valid start: LUO sets up its private list
                // heads at registration. `ops` is set below, once the address is final.
                raw <- Opaque::ffi_init(|slot: *mut bindings::liveupdate_file_handler| unsafe {
                    slot.write(pin_init::zeroed())
                }),
                ops: Descriptor::<T>::ops(module),
                handler <- {
                    let (name, key) = handler_lock_class();
                    SpinLock::new(Some(handler), name, key)
                },
            }),
            GFP_KERNEL,
        )?;
        let raw = desc.raw.get();
        // SAFETY: `raw` is valid and not shared with C yet. `compatible` is `const` in C only to
        // stop changes after registration.
        unsafe {
            (*raw).ops = &desc.ops;
            (&raw mut (*raw).compatible)
                .cast::<[u8; COMPAT_LEN]>()
                .write(bytes);
        }
        // SAFETY: `raw` is a fully set up handler. If registration succeeds the descriptor is
        // leaked below and so stays valid for as long as LUO may use it.
        to_result(unsafe { bindings::liveupdate_register_file_handler(raw) })?;
        // SAFETY: The descriptor is never moved out of its allocation: it is only ever used
        // through the raw pointer, pinned.
        let desc = KBox::into_raw(unsafe { Pin::into_inner_unchecked(desc) });
        // INVARIANT: Registered above and never freed (see `drop`).
        Ok(Self {
            // SAFETY: `KBox::into_raw` never returns NULL.
            desc: unsafe { NonNull::new_unchecked(desc) },
        })
    }

    /// The handler.
    pub fn handler(&self) -> Option<Arc<T>> {
        self.desc().handler()
    }

    /// The registered C handler, for the parts of the C API that take one, such as
    /// `liveupdate_register_flb()`. It stays valid for the rest of the kernel's life.
    pub fn as_raw(&self) -> *mut bindings::liveupdate_file_handler {
        self.desc().raw.get()
    }

    fn desc(&self) -> &Descriptor<T> {
        // SAFETY: By the type invariants the descriptor is valid forever.
        unsafe { self.desc.as_ref() }
    }
}

impl<T: FileHandler> Drop for Registration<T> {
    fn drop(&mut self) {
        let desc = self.desc();
        // SAFETY: The handler was registered by `new` and is still valid.
        unsafe { bindings::liveupdate_unregister_file_handler(desc.raw.get()) };
        let handler = desc.handler.lock().take();
        drop(handler);
        // The descriptor itself is leaked on purpose: see the module documentation.
    }
}

impl<T: FileHandler> Descriptor<T> {
    /// The handler, if still registered.
    fn handler(&self) -> Option<Arc<T>> {
        self.handler.lock().clone()
    }

    /// The compatible string the descriptor was registered with: the handover format of its
    /// files.
    fn compatible(&'static self) -> &'static CStr {
        // SAFETY: `Registration::new` wrote a NUL-terminated string into `compatible` before the
        // descriptor was shared, and nothing writes it afterwards (it is `const` in C).
        let bytes =
            unsafe { &*(&raw const (*self.raw.get()).compatible).cast::<[u8; COMPAT_LEN]>() };
        CStr::from_bytes_until_nul(bytes).unwrap_or(c"")
    }

    /// # Safety
    ///
    /// `h` must be the handler of a registered `Descriptor<T>`.
    unsafe fn from_raw<'a>(h: *mut bindings::liveupdate_file_handler) -> &'a Self {
        // SAFETY: `Descriptor<T>` is `repr(C)` with `raw` (a transparent wrapper) first, so the
        // handler pointer is the descriptor pointer; registered descriptors are never freed.
        unsafe { &*h.cast::<Self>() }
    }

    /// # Safety
    ///
    /// `file` must be NULL or a valid file for the duration of the returned borrow.
    unsafe fn file<'a>(file: *mut bindings::file) -> Option<&'a File> {
        // SAFETY: Valid by the caller's guarantee. LUO never calls a handler inside an
        // `fdget_pos` section of the file.
        (!file.is_null()).then(|| unsafe { File::from_raw_file(file) })
    }

    /// # Safety
    ///
    /// `args` must be a valid argument block whose `handler` is the handler of a registered
    /// `Descriptor<T>` and whose `file` is NULL or valid for the duration of the call.
    unsafe fn args<'a>(
        args: *mut bindings::liveupdate_file_op_args,
    ) -> (
        &'a mut bindings::liveupdate_file_op_args,
        &'static Self,
        Option<&'a File>,
    ) {
        // SAFETY: By the caller's guarantee.
        unsafe {
            let a = &mut *args;
            let desc = Self::from_raw(a.handler);
            let file = Self::file(a.file);
            (a, desc, file)
        }
    }

    /// # Safety
    ///
    /// `a.private_data` must be NULL or the state box made by `preserve` for this file, not yet
    /// released by `unpreserve`; LUO serializes the calls for one file.
    unsafe fn preserved<'a>(a: &bindings::liveupdate_file_op_args) -> Option<&'a mut Preserved<T>> {
        // SAFETY: By the caller's guarantee.
        unsafe { a.private_data.cast::<Preserved<T>>().as_mut() }
    }

    /// # Safety
    ///
    /// `h` must be the handler of a registered `Descriptor<T>` and `file` a valid file.
    unsafe extern "C" fn can_preserve(
        h: *mut bindings::liveupdate_file_handler,
        file: *mut bindings::file,
    ) -> bool {
        // SAFETY: By the function's safety requirements.
        let (desc, file) = unsafe { (Self::from_raw(h), Self::file(file)) };
        match (desc.handler(), file) {
            (Some(h), Some(f)) => h.can_preserve(f),
            _ => false,
        }
    }

    /// # Safety
    ///
    /// As for [`Self::args`].
    unsafe extern "C" fn preserve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (a, desc, file) = unsafe { Self::args(args) };
        let (Some(handler), Some(file)) = (desc.handler(), file) else {
            return ENODEV.to_errno();
        };
        // Allocated first: once `preserve` succeeds, nothing may fail without `unpreserve`.
        let slot = match KBox::<Preserved<T>>::new_uninit(GFP_KERNEL) {
            Ok(slot) => slot,
            Err(_) => return ENOMEM.to_errno(),
        };
        match handler.preserve(file) {
            Ok((data, state)) => {
                let p = KBox::write(slot, Preserved { handler, state });
                a.serialized_data = data;
                a.private_data = KBox::into_raw(p).cast();
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// As for [`Self::args`], and `private_data` as for [`Self::preserved`]. It is the last call
    /// for the file.
    unsafe extern "C" fn unpreserve(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the function's safety requirements.
        let (a, _, file) = unsafe { Self::args(args) };
        if a.private_data.is_null() {
            return;
        }
        // SAFETY: `private_data` came from `KBox::into_raw` in `preserve` and this is the last
        // call for the file, so the box is ours.
        let p = unsafe { KBox::from_raw(a.private_data.cast::<Preserved<T>>()) };
        a.private_data = core::ptr::null_mut();
        let Preserved { handler, state } = KBox::into_inner(p);
        if let Some(f) = file {
            handler.unpreserve(f, a.serialized_data, state);
        }
    }

    /// # Safety
    ///
    /// As for [`Self::args`], and `private_data` as for [`Self::preserved`].
    unsafe extern "C" fn freeze(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (a, _, file) = unsafe { Self::args(args) };
        // SAFETY: By the function's safety requirements.
        let (Some(f), Some(p)) = (file, unsafe { Self::preserved(a) }) else {
            return EINVAL.to_errno();
        };
        let mut data = a.serialized_data;
        match p.handler.freeze(f, &mut data, &mut p.state) {
            Ok(()) => {
                a.serialized_data = data;
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// As for [`Self::args`], and `private_data` as for [`Self::preserved`].
    unsafe extern "C" fn unfreeze(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the function's safety requirements.
        let (a, _, file) = unsafe { Self::args(args) };
        // SAFETY: By the function's safety requirements.
        if let (Some(f), Some(p)) = (file, unsafe { Self::preserved(a) }) {
            p.handler.unfreeze(f, a.serialized_data, &mut p.state);
        }
    }

    /// The handle of an incoming file of `desc`, vouched for as the handler's own, in the
    /// handover format its compatible string names.
    fn handover(a: &bindings::liveupdate_file_op_args, desc: &'static Self) -> Handover {
        // SAFETY: In the new kernel, LUO (C or Rust) passes `retrieve`, `can_finish` and
        // `finish` of the handler `desc` the `serialized_data` that the previous kernel's
        // handler with the same compatible string (this handler's counterpart, a writer of the
        // format that string names) returned from `preserve` or `freeze` for this file; LUO
        // itself restores none of the memory it names, and no other handler is given it.
        unsafe { Handover::new(a.serialized_data, desc.compatible()) }
    }

    /// # Safety
    ///
    /// As for [`Self::args`].
    unsafe extern "C" fn retrieve(args: *mut bindings::liveupdate_file_op_args) -> c_int {
        // SAFETY: By the function's safety requirements.
        let (a, desc, _) = unsafe { Self::args(args) };
        let Some(h) = desc.handler() else {
            return ENODEV.to_errno();
        };
        match h.retrieve(Self::handover(a, desc)) {
            Ok(file) => {
                a.file = ARef::into_raw(file).as_ptr().cast();
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// As for [`Self::args`].
    unsafe extern "C" fn can_finish(args: *mut bindings::liveupdate_file_op_args) -> bool {
        // SAFETY: By the function's safety requirements.
        let (a, desc, file) = unsafe { Self::args(args) };
        desc.handler().is_none_or(|h| {
            h.can_finish(
                file,
                Self::handover(a, desc),
                RetrieveStatus::from_c(a.retrieve_status),
            )
        })
    }

    /// # Safety
    ///
    /// As for [`Self::args`].
    unsafe extern "C" fn finish(args: *mut bindings::liveupdate_file_op_args) {
        // SAFETY: By the function's safety requirements.
        let (a, desc, file) = unsafe { Self::args(args) };
        if let Some(h) = desc.handler() {
            h.finish(
                file,
                Self::handover(a, desc),
                RetrieveStatus::from_c(a.retrieve_status),
            );
        }
    }

    /// # Safety
    ///
    /// `file` must be a valid file for the duration of the call.
    unsafe extern "C" fn get_id(file: *mut bindings::file) -> c_ulong {
        // SAFETY: By the function's safety requirements.
        match unsafe { Self::file(file) } {
            Some(f) => T::get_id(f) as c_ulong,
            None => 0,
        }
    }

    fn ops(module: &'static ThisModule) -> bindings::liveupdate_file_ops {
        bindings::liveupdate_file_ops {
            can_preserve: Some(Self::can_preserve),
            preserve: Some(Self::preserve),
            unpreserve: Some(Self::unpreserve),
            freeze: Some(Self::freeze),
            unfreeze: Some(Self::unfreeze),
            retrieve: Some(Self::retrieve),
            can_finish: Some(Self::can_finish),
            finish: Some(Self::finish),
            get_id: Some(Self::get_id),
            owner: module.as_ptr(),
        }
    }
}
