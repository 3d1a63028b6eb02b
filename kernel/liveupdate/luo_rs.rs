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
//! 1. `Luo::state` (a reader/writer semaphore): held for reading by every session
//!    operation (create, retrieve, the session ioctls, close) and for writing by the reboot
//!    path, so that the handover is written while nothing changes.
//! 2. `Luo::incoming`: the previous kernel's sessions until the first open.
//! 3. `Luo::sessions`: the session maps and the session handover reservation.
//! 4. `Session::inner`: one session's files.
//! 5. `Luo::registry` (a reader/writer semaphore): handlers and FLBs. Held for writing to
//!    register, unregister, link or unlink; for reading by PRESERVE_FD from the handler lookup
//!    (`can_preserve`) to the claim (module reference, id, FLB preserve), and by the first open
//!    from each lookup to the module reference, as the C LUO holds its register rwsem: a
//!    handler is unregistered, and its module unloaded, only between such sections.
//! 6. The FLB state locks (held while calling that FLB's ops).
//! 7. `Luo::preserved`: the ids of all preserved files.
//! 8. `Luo::flb_states`: the state of every FLB in use (a leaf: the FLB API takes it, also
//!    from FLB ops, and so do linking and unlinking, under the registry).
//! 9. `Luo::timeline` (a spinlock): the timeline of the live update; a leaf, held only to
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
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        SetOnce, //
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
mod flb_table;
mod handover;
mod name;
mod orchestrator;
mod parse;
mod registered;
mod registry;
mod session;
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
mod test_handler;
mod timeline;
mod token_index;
mod ucmd;

use orchestrator::Luo;

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
        let h = handover::Handover::new(l.incoming_num().wrapping_add(1))?;
        l.write_state().set_root(h);
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
            Ok(out) => l.timeline().set_out(out),
            Err(e) => pr_warn!("timeline: cannot hand one over: {:?}\n", e),
        }
        l.timeline()
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
        l.timeline().mark_out(p, timeline::now());
    }
}
