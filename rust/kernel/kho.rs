// SPDX-License-Identifier: GPL-2.0

//! Kexec HandOver (KHO): memory that survives a kexec into the next kernel.
//!
//! Outgoing: [`PreservedPage`] is a zeroed page that KHO hands over to the next kernel unless it
//! is dropped first; [`Subtree`] names a page so the next kernel can find it.
//!
//! Incoming: [`retrieve_subtree`] finds a named blob left by the previous kernel, and
//! [`IncomingPage::retrieve_subtree`] claims it when it is one page and its name is a
//! [`SubtreeName`]. Physical addresses read from the previous kernel's data are
//! [`IncomingPhys`]: they cannot be dereferenced until [`IncomingPage::restore`] has checked
//! that KHO really preserved a page there, so a corrupt handover cannot make the kernel touch
//! memory that is not preserved.
//!
//! What KHO cannot check is *whose* page an address names: every user's preserved pages look
//! alike. Restoring a page frees it to this kernel when the [`IncomingPage`] is dropped, so
//! restoring another user's page (for example a `reserve_mem` region, which stays in use
//! without ever being restored) would hand memory in use to the page allocator. That is why
//! [`IncomingPage::restore`] is `unsafe`: its caller vouches that the address names one of its
//! own pages. The same holds for a subtree name ([`SubtreeName::new`]), for a handle
//! ([`Handover::new`]) and for the fields of a handover format that hold addresses
//! ([`VmallocField`], [`PfnField`]): each is vouched for once, with `unsafe`, where it is
//! declared, and safe code can then restore only what those declarations name.
//!
//! C header: [`include/linux/kexec_handover.h`](srctree/include/linux/kexec_handover.h)

use crate::bindings;

mod array;
pub mod bytes;
mod folio;
mod handover;
mod page;
mod subtree;
mod vmalloc;

pub use array::{
    ArrayBuilder,
    PreservedArray,
    RestoredArray, //
};
pub use folio::{
    HeldFolio,
    IncomingFolio,
    IncomingFolios,
    PreservedFolio,
    FOLIO_BATCH, //
};
pub use handover::{
    Handover,
    HandoverArray,
    HandoverPage,
    HandoverVmalloc,
    PfnField,
    VmallocField, //
};
pub use page::{
    preserved_order,
    IncomingPage,
    IncomingPhys,
    PreservedPage, //
};
pub use subtree::{
    retrieve_subtree,
    Subtree,
    SubtreeName, //
};
pub use vmalloc::{
    VmallocDescriptor,
    VMALLOC_DESCRIPTOR_SIZE, //
};

/// Returns whether KHO is enabled on this boot (`kho=` and `CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT`).
pub fn is_enabled() -> bool {
    // SAFETY: Reads a flag; callable at any time.
    unsafe { bindings::kho_is_enabled() }
}
