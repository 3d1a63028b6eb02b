// SPDX-License-Identifier: GPL-2.0

//! Named pages (KHO subtrees): [`Subtree`] publishes one for the next kernel,
//! [`retrieve_subtree`] finds one left by the previous kernel, [`SubtreeName`] declares a name.

use super::{
    IncomingPhys,
    PreservedPage, //
};
use crate::{
    bindings,
    error::to_result,
    page::PAGE_SIZE,
    prelude::*, //
};

/// A page published to the next kernel under a name (a KHO "subtree").
///
/// The next kernel finds it with [`retrieve_subtree`]. Dropping it withdraws and frees it.
pub struct Subtree {
    page: PreservedPage,
}

impl Subtree {
    /// Publishes the first `size` bytes of `page` under `name`.
    pub fn add(name: &'static CStr, page: PreservedPage, size: usize) -> Result<Self> {
        if size > PAGE_SIZE {
            return Err(EINVAL);
        }
        // SAFETY: `name` is a static string; the blob stays valid for `size` bytes until
        // `drop` removes the subtree, since `Self` owns the page.
        to_result(unsafe { bindings::kho_add_subtree(name.as_char_ptr(), page.as_ptr(), size) })?;
        Ok(Self { page })
    }

    /// The published page, for updating it before the kexec.
    pub fn page_mut(&mut self) -> &mut PreservedPage {
        &mut self.page
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        // SAFETY: The blob was added by `add` and is still valid.
        unsafe { bindings::kho_remove_subtree(self.page.as_ptr()) };
    }
}

/// Finds the blob the previous kernel published under `name`.
///
/// Returns its physical address and size, or `ENOENT` if there is none (e.g. a cold boot).
pub fn retrieve_subtree(name: &CStr) -> Result<(IncomingPhys, usize)> {
    let mut phys: bindings::phys_addr_t = 0;
    let mut size: usize = 0;
    // SAFETY: `name` is NUL-terminated; the out-pointers are valid locals.
    to_result(unsafe { bindings::kho_retrieve_subtree(name.as_char_ptr(), &mut phys, &mut size) })?;
    Ok((IncomingPhys(phys), size))
}

/// The name of a KHO subtree that belongs to one user of this kernel: the key to the page the
/// previous kernel published under it ([`IncomingPage::retrieve_subtree`]).
///
/// A subtree name is global: KHO cannot tell whose page the previous kernel published under
/// it, and claiming another user's page (one it reads in place, say) would take memory in use.
/// So a name is declared once, with `unsafe` ([`SubtreeName::new`]), by the code that owns it.
///
/// # Invariants
///
/// Nothing in this kernel retrieves, restores, writes or frees the page that the previous
/// kernel published under `self.0`, except [`IncomingPage::retrieve_subtree`] with a
/// `SubtreeName` of that name.
///
/// [`IncomingPage::retrieve_subtree`]: crate::kho::IncomingPage::retrieve_subtree
pub struct SubtreeName(&'static CStr);

impl SubtreeName {
    /// Declares `name` as the name of a subtree of its declarer.
    ///
    /// # Safety
    ///
    /// Nothing in this kernel retrieves, restores, writes or frees the page that the previous
    /// kernel published under `name`, except [`IncomingPage::retrieve_subtree`] with a
    /// `SubtreeName` of `name`: no C code uses `name`, and Rust code uses it only through a
    /// `SubtreeName`.
    ///
    /// [`IncomingPage::retrieve_subtree`]: crate::kho::IncomingPage::retrieve_subtree
    pub const unsafe fn new(name: &'static CStr) -> Self {
        // INVARIANT: By the caller's guarantee.
        Self(name)
    }

    /// The name, e.g. to publish this kernel's subtree under it with [`Subtree::add`].
    pub const fn name(&self) -> &'static CStr {
        self.0
    }
}
