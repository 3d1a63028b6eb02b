// SPDX-License-Identifier: GPL-2.0

//! Live Update Orchestrator (LUO): the file handler interface.
//!
//! A *file handler* knows how to carry one kind of file (memfd, vfio, iommufd...) across a
//! kexec: it preserves the file's backing state into KHO memory, returns a 64-bit handle that
//! LUO writes into the handover, and rebuilds the file from that handle in the next kernel.
//!
//! Handlers written in Rust implement [`FileHandler`] and register with a [`Registration`].
//! They work with either implementation of LUO (C or Rust): the registration hands LUO a
//! `struct liveupdate_file_handler` whose ops call back into the trait.
//!
//! The per-file state of a handler is a typed Rust value ([`FileHandler::State`]) that lives
//! between `preserve` and `unpreserve`; only the 64-bit handle crosses the kexec.
//!
//! C header: [`include/linux/liveupdate.h`](srctree/include/linux/liveupdate.h)

use crate::{
    bindings,
    fs::File,
    prelude::*,
    sync::aref::ARef, //
};

pub use crate::kho::Handover;

mod registration;

pub use registration::Registration;

/// The debugfs directory of live update, `liveupdate/`, which LUO and the file handlers share
/// (the C LUO has none): made by the first call, and kept for the kernel's life.
///
/// If debugfs is disabled or the directory cannot be made, files made in it are not made, as
/// everywhere in [`debugfs`](crate::debugfs).
pub fn debugfs_dir() -> &'static crate::debugfs::Dir {
    use crate::sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        SetOnce,
    };
    static DIR: SetOnce<crate::debugfs::Dir> = SetOnce::new();
    /// Set by the one call that makes the directory.
    static MAKING: Atomic<bool> = Atomic::new(false);
    loop {
        if let Some(dir) = DIR.as_ref() {
            return dir;
        }
        if MAKING.cmpxchg(false, true, Relaxed).is_ok() {
            DIR.populate(crate::debugfs::Dir::new(c"liveupdate"));
        } else {
            // Another task is making it (at most a few microseconds, once per boot).
            crate::time::delay::fsleep(crate::time::Delta::from_millis(1));
        }
    }
}

/// Ends every IOMMU translation this kernel adopted from the previous one for devices that kept
/// running through the kexec (`iommu_liveupdate_end_adopted`): their DMA faults from here on,
/// until userspace attaches them to a domain of its own.
///
/// An adopted translation reaches memory the previous kernel preserved, typically a guest's
/// RAM. A handler calls this before it frees such memory itself (memory it hands to userspace
/// is held instead: [`hold_for_adopted_translations`]). Only the first call does any work.
pub fn end_adopted_translations() {
    #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
    // SAFETY: No precondition: the function takes its own locks, in process context, which a
    // handler's `retrieve` and `finish` are.
    unsafe {
        bindings::iommu_liveupdate_end_adopted()
    }
}

/// Whether an IOMMU translation this kernel adopted from the previous one is still in place
/// (`iommu_liveupdate_adopted`): a device kept running through the kexec may still write to the
/// memory the previous kernel preserved. Once false, it stays false.
pub fn adopted_translations() -> bool {
    #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
    // SAFETY: No precondition.
    let live = unsafe { bindings::iommu_liveupdate_adopted() };
    #[cfg(not(CONFIG_INTEL_IOMMU_LIVEUPDATE))]
    let live = false;
    live
}

/// Keeps `folio` allocated while the IOMMU translations adopted from the previous kernel are in
/// place (`iommu_liveupdate_hold_folio`), whatever its new owner does with it.
///
/// A device kept running through the kexec may write to the folio until userspace attaches it
/// to a domain of its own, and userspace, which gets the folio in a restored file, may free it
/// before. A handler calls this for each folio it restores for userspace, before the folio can
/// be freed (before it is inserted anywhere). The reference is dropped when the last adopted
/// translation ends. If it cannot be recorded, every adopted translation is ended instead.
pub fn hold_for_adopted_translations(folio: &crate::kho::IncomingFolio) {
    #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
    // SAFETY: `folio` is a valid folio, of which `IncomingFolio` owns a reference for as long as
    // this call lasts; the function takes a reference of its own, never uses the folio but to
    // drop that reference, and sleeps only on its own mutex (a handler's `retrieve` runs in
    // process context).
    unsafe {
        bindings::iommu_liveupdate_hold_folio(folio.as_raw())
    };
    #[cfg(not(CONFIG_INTEL_IOMMU_LIVEUPDATE))]
    let _ = folio;
}

/// Test hook (`CONFIG_LIVEUPDATE_RUST_TEST`, `iommu_liveupdate_test_corrupt`): the IOMMU driver
/// corrupts the handover of the translation it keeps for devices kept running, at the next
/// kexec, in the way `mode` names (1 to 5, see `drivers/iommu/intel/liveupdate.c`; 0 disarms),
/// to test how the next kernel refuses it. `EINVAL` for another mode; `ENODEV` in a kernel built
/// without `CONFIG_INTEL_IOMMU_LIVEUPDATE`. Where no VT-d unit keeps a translation, nothing is
/// corrupted.
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
pub fn test_corrupt_iommu_handover(mode: u32) -> Result {
    #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
    // SAFETY: No precondition: the function only checks and stores the number.
    let ret = crate::error::to_result(unsafe { bindings::iommu_liveupdate_test_corrupt(mode) });
    #[cfg(not(CONFIG_INTEL_IOMMU_LIVEUPDATE))]
    let ret = {
        let _ = mode;
        Err(ENODEV)
    };
    ret
}

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

    /// Decodes the C encoding (any positive value means retrieved).
    pub fn from_c(s: c_int) -> Self {
        match s {
            0 => Self::NotRetrieved,
            s if s > 0 => Self::Retrieved,
            e => Self::Failed(Error::from_errno(e)),
        }
    }
}

/// A file handler: how to preserve and restore one kind of file.
///
/// LUO calls these methods with the locks described in
/// `Documentation/core-api/liveupdate-rust.rst`: never with a LUO-wide lock held, except
/// [`FileHandler::freeze`] and [`FileHandler::unfreeze`], which run on the reboot path while
/// LUO excludes every other LUO operation. None of them may create, preserve, retrieve or finish
/// sessions or files.
pub trait FileHandler: Send + Sync + 'static {
    /// State kept for a preserved file between [`FileHandler::preserve`] and
    /// [`FileHandler::unpreserve`] in the same kernel. It never crosses the kexec.
    type State: Send;

    /// The handler's compatible string, written into the handover for every file it preserves
    /// (at most [`COMPAT_LEN`] - 1 bytes).
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
    ///
    /// `data` comes from the previous kernel: it must be validated like any untrusted input.
    /// It is a [`Handover`]: what KHO preserved where it points (and where the addresses stored
    /// there point) was preserved for this handler, so the handler may restore it in safe code.
    fn retrieve(&self, data: Handover) -> Result<ARef<File>>;

    /// Whether the file can be finished now (all files of a session are asked first).
    fn can_finish(&self, _file: Option<&File>, _data: Handover, _status: RetrieveStatus) -> bool {
        true
    }

    /// Releases what is left of the preserved state once userspace is done with the session.
    fn finish(&self, file: Option<&File>, data: Handover, status: RetrieveStatus);

    /// The key that stops the same object from being preserved twice, system-wide: a second
    /// `PRESERVE_FD` of a file with the same id fails with `EBUSY`. The default is the
    /// `struct file`; a handler whose files share a backing object (e.g. an inode) returns that.
    ///
    /// It has no `self` because the C operation (`get_id(struct file *)`) has no handler
    /// argument.
    fn get_id(file: &File) -> usize
    where
        Self: Sized,
    {
        file.as_ptr() as usize
    }
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
