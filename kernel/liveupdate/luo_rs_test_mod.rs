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
//! Only for testing: never build it into a production kernel.

use kernel::{
    bindings,
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
    }, //
};

module! {
    type: LuoRsTestMod,
    name: "luo_rs_test_mod",
    authors: ["The LUO Rust team"],
    description: "Test file handler module for the Rust Live Update Orchestrator",
    license: "GPL",
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

/// The module: its handler is registered while it is loaded.
struct LuoRsTestMod {
    _registration: Registration<PipeHandler>,
}

impl kernel::Module for LuoRsTestMod {
    fn init(module: &'static ThisModule) -> Result<Self> {
        Ok(Self {
            _registration: Registration::new(module, PipeHandler)?,
        })
    }
}
