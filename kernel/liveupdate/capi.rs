// SPDX-License-Identifier: GPL-2.0

//! The C API of `include/linux/liveupdate.h`, for handlers and FLBs written in C.
//!
//! Every function is checked against its C prototype by `#[export]`.

use crate::{
    enabled,
    flb::{
        FlbPin,
        FlbState, //
    },
    luo,
    registered::RegisteredHandler, //
};
use kernel::{
    bindings,
    macros::export,
    prelude::*, //
};

#[cfg(CONFIG_LIVEUPDATE_TEST)]
// The handler struct has a flexible-array member in a nested type; only its address is passed.
#[expect(improper_ctypes)]
extern "C" {
    /// The self-test of `lib/tests/liveupdate.c`, told about every new handler.
    fn liveupdate_test_register(fh: *mut bindings::liveupdate_file_handler);
}

/// Returns whether live update is enabled on this boot.
///
/// # Safety
///
/// Always safe to call.
#[export]
pub unsafe extern "C" fn liveupdate_enabled() -> bool {
    enabled()
}

/// Serializes all sessions before a kexec; called by `kernel_kexec()`.
///
/// # Safety
///
/// Must be called from the reboot path with `system_transition_mutex` held.
#[export]
pub unsafe extern "C" fn liveupdate_reboot() -> c_int {
    if !enabled() {
        return 0;
    }
    match luo().and_then(|l| l.reboot()) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Registers a file handler.
///
/// # Safety
///
/// `fh` must point to a valid handler that stays valid, with its ops unchanged, until it is
/// unregistered and, after that, for as long as LUO holds a reference on its owner module
/// (every file LUO has preserved or received for it holds one): a handler of built-in code for
/// good, one of a loadable module until the module is unloaded.
#[export]
pub unsafe extern "C" fn liveupdate_register_file_handler(
    fh: *mut bindings::liveupdate_file_handler,
) -> c_int {
    if !enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: `fh` points to a valid handler (the caller's guarantee). LUO calls the returned
    // object only while it is in the registry, under `Luo::registry`, which unregistering takes
    // for writing, or from a file that holds a reference on the handler's module: while `fh`
    // is valid, by the caller's guarantee.
    let res = unsafe { RegisteredHandler::from_raw(fh) }
        .and_then(|h| luo().and_then(|l| l.write_registry().register(h)));
    if let Err(e) = res {
        return e.to_errno();
    }
    #[cfg(CONFIG_LIVEUPDATE_TEST)]
    // SAFETY: `fh` is a registered, valid handler.
    unsafe {
        liveupdate_test_register(fh)
    };
    0
}

/// Unregisters a file handler and unlinks its FLBs.
///
/// # Safety
///
/// `fh` must be a valid handler pointer.
#[export]
pub unsafe extern "C" fn liveupdate_unregister_file_handler(
    fh: *mut bindings::liveupdate_file_handler,
) {
    if !enabled() {
        return;
    }
    if let Ok(l) = luo() {
        l.write_registry().unregister(fh);
    }
}

/// Links an FLB to a registered handler.
///
/// # Safety
///
/// `fh` must be a valid handler; `flb` must be a valid FLB that stays valid, with its ops
/// unchanged, until it is unregistered from every handler and, after that, for as long as
/// LUO holds a reference on its owner module (while it is preserved, or retrieved and not
/// finished): a static FLB of built-in code, or of a loadable module that unregisters it
/// before it goes.
#[export]
pub unsafe extern "C" fn liveupdate_register_flb(
    fh: *mut bindings::liveupdate_file_handler,
    flb: *mut bindings::liveupdate_flb,
) -> c_int {
    if !enabled() {
        return EOPNOTSUPP.to_errno();
    }
    let res = luo().and_then(|l| {
        // The registry first: `flb_states` is the innermost LUO lock (see the lock order in
        // `luo_rs.rs`). The pin keeps the state in `flb_states` until it is linked.
        let mut reg = l.write_registry();
        // SAFETY: `flb` is valid while it is linked, pinned, or holds a module reference (the
        // caller's guarantee), as `FlbStates::pin` requires.
        let pin = unsafe { l.flb_states().pin(flb) }?;
        reg.link_flb(fh, &pin)
    });
    match res {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Unlinks an FLB from a handler. Once it is unlinked from every handler, and neither
/// preserved nor retrieved and unfinished, LUO keeps nothing that points to it.
///
/// # Safety
///
/// `fh` and `flb` must be valid pointers, `flb` as for [`liveupdate_register_flb`].
#[export]
pub unsafe extern "C" fn liveupdate_unregister_flb(
    fh: *mut bindings::liveupdate_file_handler,
    flb: *mut bindings::liveupdate_flb,
) {
    if !enabled() {
        return;
    }
    if let Ok(l) = luo() {
        // As in `liveupdate_register_flb`: the registry, then `flb_states`.
        let mut reg = l.write_registry();
        // SAFETY: As in `liveupdate_register_flb`.
        let pin = unsafe { l.flb_states().pin(flb) };
        let res = pin.and_then(|pin| reg.unlink_flb(fh, &pin));
        if let Err(e) = res {
            pr_err!("cannot unregister an FLB: {:?}\n", e);
        }
    }
}

/// Looks up the FLB's state, creating it if it has none, pinned for the duration of a call.
///
/// # Safety
///
/// `flb` must be a valid FLB, as for [`liveupdate_register_flb`].
unsafe fn flb_state(flb: *mut bindings::liveupdate_flb) -> Result<FlbPin> {
    let l = luo()?;
    // SAFETY: `flb` is valid while it is linked, pinned, or holds a module reference (the
    // caller's guarantee), as `FlbStates::pin` requires.
    unsafe { l.flb_states().pin(flb) }
}

/// Takes a reference to an FLB object with `get` and stores the object in `*objp`.
///
/// # Safety
///
/// `flb` must be a valid FLB, as for [`liveupdate_register_flb`]; `objp` must be valid for
/// writes.
unsafe fn flb_get(
    flb: *mut bindings::liveupdate_flb,
    objp: *mut *mut c_void,
    get: fn(&FlbState) -> Result<usize>,
) -> c_int {
    // SAFETY: `flb` is a valid FLB (the caller's guarantee).
    match unsafe { flb_state(flb) }.and_then(|s| get(&s)) {
        Ok(obj) => {
            // SAFETY: `objp` is valid for writes by the caller's guarantee.
            unsafe { *objp = obj as *mut c_void };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// Gets (retrieving on first use) the FLB's object from the previous kernel.
///
/// # Safety
///
/// `flb` must be a valid FLB, as for [`liveupdate_register_flb`]; `objp` must be valid for
/// writes.
#[export]
pub unsafe extern "C" fn liveupdate_flb_get_incoming(
    flb: *mut bindings::liveupdate_flb,
    objp: *mut *mut c_void,
) -> c_int {
    if !enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: `flb` is a valid FLB and `objp` valid for writes (the caller's guarantee).
    unsafe { flb_get(flb, objp, FlbState::get_incoming) }
}

/// Drops a reference taken by `liveupdate_flb_get_incoming`.
///
/// # Safety
///
/// `flb` must be a valid FLB, as for [`liveupdate_register_flb`].
#[export]
pub unsafe extern "C" fn liveupdate_flb_put_incoming(flb: *mut bindings::liveupdate_flb) {
    if !enabled() {
        return;
    }
    // SAFETY: `flb` is a valid FLB (the caller's guarantee).
    if let Ok(s) = unsafe { flb_state(flb) } {
        s.put_incoming();
    }
}

/// Gets the live outgoing object of a preserved FLB.
///
/// # Safety
///
/// `flb` must be a valid FLB, as for [`liveupdate_register_flb`]; `objp` must be valid for
/// writes.
#[export]
pub unsafe extern "C" fn liveupdate_flb_get_outgoing(
    flb: *mut bindings::liveupdate_flb,
    objp: *mut *mut c_void,
) -> c_int {
    if !enabled() {
        return EOPNOTSUPP.to_errno();
    }
    // SAFETY: `flb` is a valid FLB and `objp` valid for writes (the caller's guarantee).
    unsafe { flb_get(flb, objp, FlbState::get_outgoing) }
}

/// Drops a reference taken by `liveupdate_flb_get_outgoing`.
///
/// # Safety
///
/// `flb` must be a valid FLB, as for [`liveupdate_register_flb`].
#[export]
pub unsafe extern "C" fn liveupdate_flb_put_outgoing(flb: *mut bindings::liveupdate_flb) {
    if !enabled() {
        return;
    }
    // SAFETY: `flb` is a valid FLB (the caller's guarantee).
    if let Ok(s) = unsafe { flb_state(flb) } {
        s.put_outgoing();
    }
}
