// SPDX-License-Identifier: GPL-2.0

//! A file handler in a loadable module (`CONFIG_LIVEUPDATE_RUST_TEST_MOD`), to test that a
//! handler module can be unloaded at any time: the selftest `luo_rs_module` loads and unloads
//! it in a loop while threads preserve its files, and while the first open of
//! `/dev/liveupdate` after a kexec builds the incoming sessions.
//!
//! It takes pipes (FIFOs): no built-in handler does, and a pipe's file operations are not the
//! module's, so a preserved pipe keeps the module loaded only through LUO's reference on it.
//! Nothing is preserved: the handle is a constant, and `retrieve` fails with `EOPNOTSUPP` (the
//! test only checks which files the next kernel kept). `can_preserve` sleeps a millisecond
//! before it says yes, which widens the window in which an unload races a `PRESERVE_FD` that
//! is asking the handler.
//!
//! With `flb=1` it also has an FLB, a static of the module as a C module's would be, linked to
//! its handler while it is loaded: the selftest `luo_rs_module_flb` checks that LUO keeps
//! nothing pointing to it once the module is gone, and that the FLB is retrieved once per
//! boot, however often the module is loaded. The FLB logs each of its ops.
//!
//! Only for testing: never build it into a production kernel.

use kernel::{
    bindings,
    error::to_result,
    ffi::c_void,
    fs::File,
    liveupdate::{
        FileHandler,
        Handover,
        Registration,
        RetrieveStatus, //
    },
    prelude::*,
    sync::aref::ARef,
    time::{
        delay::fsleep,
        Delta, //
    },
    types::Opaque, //
};

module! {
    type: LuoRsTestMod,
    name: "luo_rs_test_mod",
    authors: ["The LUO Rust team"],
    description: "Test file handler module for the Rust Live Update Orchestrator",
    license: "GPL",
    params: {
        flb: bool {
            default: false,
            description: "Link the module's FLB to its handler",
        },
    },
}

/// The handler's compatible string.
const COMPATIBLE: &CStr = c"luo-rs-test-mod-v1";

/// The handle of every file: nothing is preserved.
const HANDLE: u64 = 0x7e57_0d00;

/// The file handler for pipes.
struct PipeHandler;

impl PipeHandler {
    /// Whether `file` is a pipe or a FIFO.
    fn is_fifo(file: &File) -> bool {
        // SAFETY: `file` is valid, and so is its inode, which never changes for an open file.
        let mode = unsafe { (*(*file.as_ptr()).f_inode).i_mode };
        u32::from(mode) & bindings::S_IFMT == bindings::S_IFIFO
    }
}

impl FileHandler for PipeHandler {
    type State = ();

    fn compatible(&self) -> &CStr {
        COMPATIBLE
    }

    fn can_preserve(&self, file: &File) -> bool {
        if !Self::is_fifo(file) {
            return false;
        }
        fsleep(Delta::from_millis(1));
        true
    }

    fn preserve(&self, _file: &File) -> Result<(u64, ())> {
        Ok((HANDLE, ()))
    }

    fn unpreserve(&self, _file: &File, _data: u64, _state: ()) {}

    fn retrieve(&self, _data: Handover) -> Result<ARef<File>> {
        Err(EOPNOTSUPP)
    }

    fn finish(&self, _file: Option<&File>, _data: Handover, _status: RetrieveStatus) {}
}

/// The module's FLB and its ops: statics of the module, written by [`ModFlb::init`] before
/// anything refers to them, then only read (the Rust LUO does not use `private`).
struct ModFlb {
    flb: Opaque<bindings::liveupdate_flb>,
    ops: Opaque<bindings::liveupdate_flb_ops>,
}

// SAFETY: Written once by `init`, before the FLB is linked (see above); only read afterwards.
unsafe impl Sync for ModFlb {}

static MOD_FLB: ModFlb = ModFlb {
    flb: Opaque::zeroed(),
    ops: Opaque::zeroed(),
};

/// The FLB's compatible string.
const FLB_COMPATIBLE: &[u8] = b"luo-rs-test-mod-flb-v1\0";
const _: () = assert!(FLB_COMPATIBLE.len() <= bindings::LIVEUPDATE_FLB_COMPAT_LENGTH as usize);

/// The FLB's handle.
const FLB_DATA: u64 = 0x7e57_0f1b;

impl ModFlb {
    /// Sets up the FLB for `module`.
    ///
    /// # Safety
    ///
    /// Nothing may refer to the FLB: it is not linked.
    unsafe fn init(&self, module: &'static ThisModule) {
        let (flb, ops) = (self.flb.get(), self.ops.get());
        // SAFETY: Nothing refers to the FLB or its ops (the caller's guarantee). The string
        // fits (checked above); `compatible` is `const` in C only to stop later changes.
        unsafe {
            ops.write(bindings::liveupdate_flb_ops {
                preserve: Some(flb_preserve),
                unpreserve: Some(flb_unpreserve),
                retrieve: Some(flb_retrieve),
                finish: Some(flb_finish),
                owner: module.as_ptr(),
            });
            (*flb).ops = ops;
            core::ptr::copy_nonoverlapping(
                FLB_COMPATIBLE.as_ptr(),
                (&raw mut (*flb).compatible).cast::<u8>(),
                FLB_COMPATIBLE.len(),
            );
        }
    }

    /// `liveupdate_flb_get_incoming()`, the reference put back at once: 0 or -errno.
    fn get_incoming(&self) -> i32 {
        let mut obj: *mut c_void = core::ptr::null_mut();
        // SAFETY: The FLB is set up and a static of this module, which is running; `obj` is
        // valid for writes.
        let r = unsafe { bindings::liveupdate_flb_get_incoming(self.flb.get(), &mut obj) };
        if r == 0 {
            // SAFETY: Puts the reference taken just above.
            unsafe { bindings::liveupdate_flb_put_incoming(self.flb.get()) };
        }
        r
    }
}

/// # Safety
///
/// `argp` must be a valid argument block (LUO calls it so).
unsafe extern "C" fn flb_preserve(argp: *mut bindings::liveupdate_flb_op_args) -> i32 {
    // SAFETY: `argp` is valid by the function's safety requirements.
    unsafe {
        (*argp).data = FLB_DATA;
        (*argp).obj = MOD_FLB.flb.get().cast();
    }
    pr_info!("FLB preserved\n");
    0
}

/// # Safety
///
/// `argp` must be a valid argument block (LUO calls it so).
unsafe extern "C" fn flb_unpreserve(_argp: *mut bindings::liveupdate_flb_op_args) {
    pr_info!("FLB unpreserved\n");
}

/// # Safety
///
/// `argp` must be a valid argument block (LUO calls it so).
unsafe extern "C" fn flb_retrieve(argp: *mut bindings::liveupdate_flb_op_args) -> i32 {
    // SAFETY: `argp` is valid by the function's safety requirements.
    let data = unsafe { (*argp).data };
    pr_info!("FLB retrieved {:#x}\n", data);
    if data != FLB_DATA {
        return EINVAL.to_errno();
    }
    // SAFETY: As above.
    unsafe { (*argp).obj = MOD_FLB.flb.get().cast() };
    0
}

/// # Safety
///
/// `argp` must be a valid argument block (LUO calls it so).
unsafe extern "C" fn flb_finish(_argp: *mut bindings::liveupdate_flb_op_args) {
    pr_info!("FLB finished\n");
}

/// The FLB linked to the handler; unlinked when dropped.
struct FlbLink {
    fh: *mut bindings::liveupdate_file_handler,
}

// SAFETY: Only the pointer is kept, for `liveupdate_unregister_flb()`, callable from any task.
unsafe impl Send for FlbLink {}
// SAFETY: See above.
unsafe impl Sync for FlbLink {}

impl Drop for FlbLink {
    fn drop(&mut self) {
        // SAFETY: `fh` is registered (the registration is dropped after this link) and the
        // FLB is linked to it.
        unsafe { bindings::liveupdate_unregister_flb(self.fh, MOD_FLB.flb.get()) };
    }
}

/// The module: its handler is registered while it is loaded.
struct LuoRsTestMod {
    /// Dropped first: the FLB is unlinked before the handler is unregistered.
    _flb: Option<FlbLink>,
    _registration: Registration<PipeHandler>,
}

impl kernel::Module for LuoRsTestMod {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let registration = Registration::new(module, PipeHandler)?;
        let mut link = None;
        if module_parameters::flb.value() {
            let fh = registration.as_raw();
            // SAFETY: Nothing refers to the FLB before it is linked, just below.
            unsafe { MOD_FLB.init(module) };
            // SAFETY: `fh` is a registered handler and the FLB is a static of this module,
            // which unlinks it (`FlbLink`) before it goes.
            let r = to_result(unsafe { bindings::liveupdate_register_flb(fh, MOD_FLB.flb.get()) });
            // The module cannot fail once its handler is registered (see `Registration`): a
            // failure leaves it without its FLB, which the test sees.
            match r {
                Ok(()) => {
                    link = Some(FlbLink { fh });
                    pr_info!("FLB incoming at load: {}\n", MOD_FLB.get_incoming());
                }
                Err(e) => pr_warn!("cannot link the FLB: {:?}\n", e),
            }
        }
        Ok(Self {
            _flb: link,
            _registration: registration,
        })
    }
}
