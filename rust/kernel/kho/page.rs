// SPDX-License-Identifier: GPL-2.0

//! Preserved pages: [`PreservedPage`] for the next kernel, and in this one the untrusted
//! addresses of the previous kernel ([`IncomingPhys`]) and the pages restored from them
//! ([`IncomingPage`]).

use super::{
    retrieve_subtree,
    SubtreeName, //
};
use crate::{
    bindings,
    error::from_err_ptr,
    page::PAGE_SIZE,
    prelude::*, //
};
use core::ptr::NonNull;

/// A zeroed, page-sized allocation that KHO preserves for the next kernel.
///
/// Dropping it frees the page and removes it from the handover; one still alive at the kexec
/// is handed over.
///
/// # Invariants
///
/// `ptr` points to a live `PAGE_SIZE` allocation from `kho_alloc_preserve`, owned by `self`.
pub struct PreservedPage {
    ptr: NonNull<u8>,
}

// SAFETY: The page is plain memory owned by `self`; it can be used and freed from any thread.
unsafe impl Send for PreservedPage {}
// SAFETY: Shared references only allow reading the address.
unsafe impl Sync for PreservedPage {}

impl PreservedPage {
    /// Allocates a zeroed page and marks it preserved.
    pub fn new() -> Result<Self> {
        // SAFETY: `kho_alloc_preserve` has no preconditions; it returns an ERR_PTR on failure.
        let ptr = from_err_ptr(unsafe { bindings::kho_alloc_preserve(PAGE_SIZE) })?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: `ptr` is a fresh `PAGE_SIZE` allocation from `kho_alloc_preserve`.
        Ok(Self { ptr })
    }

    /// The physical address of the page, as the next kernel will see it.
    pub fn phys(&self) -> u64 {
        // SAFETY: `ptr` is a valid direct-map address by the type invariants.
        unsafe { bindings::virt_to_phys(self.ptr.as_ptr().cast()) }
    }

    /// The contents of the page.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        // SAFETY: The page is valid for `PAGE_SIZE` bytes and owned by `self`.
        unsafe { &*self.ptr.as_ptr().cast() }
    }

    /// The contents of the page, for writing.
    pub fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        // SAFETY: The page is valid for `PAGE_SIZE` bytes and uniquely borrowed through `self`.
        unsafe { &mut *self.ptr.as_ptr().cast() }
    }

    /// Raw pointer to the page, e.g. for [`Subtree::add`].
    ///
    /// [`Subtree::add`]: crate::kho::Subtree::add
    pub(super) fn as_ptr(&self) -> *mut c_void {
        self.ptr.as_ptr().cast()
    }
}

impl Drop for PreservedPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the page came from `kho_alloc_preserve` and is owned
        // by `self`.
        unsafe { bindings::kho_unpreserve_free(self.as_ptr()) };
    }
}

/// A physical address read from the previous kernel's handover data: not trusted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct IncomingPhys(pub u64);

/// A page the previous kernel preserved with [`PreservedPage`], restored in this kernel.
///
/// Dropping it frees the page.
///
/// # Invariants
///
/// `folio` is an order-0 folio restored by `kho_restore_folio` and owned by `self` (one
/// reference); `ptr` is its direct-map address.
pub struct IncomingPage {
    folio: NonNull<bindings::folio>,
    ptr: NonNull<u8>,
}

// SAFETY: The page is plain memory owned by `self`.
unsafe impl Send for IncomingPage {}
// SAFETY: Shared references only allow reading.
unsafe impl Sync for IncomingPage {}

impl IncomingPage {
    /// Claims the page the previous kernel published under `name` with [`Subtree::add`], for
    /// the rest of this kernel's life.
    ///
    /// It is never freed: KHO's debugfs (`in/sub_fdts/NAME`) keeps showing it. Returns its
    /// contents and the size the previous kernel gave; `ENOENT` if there is no such subtree
    /// (e.g. after a cold boot), `EINVAL` if it is not a whole preserved page or was claimed
    /// already.
    ///
    /// [`Subtree::add`]: crate::kho::Subtree::add
    pub fn retrieve_subtree(name: &SubtreeName) -> Result<(&'static [u8; PAGE_SIZE], usize)> {
        let (phys, len) = retrieve_subtree(name.name())?;
        // SAFETY: By the invariants of `SubtreeName`, nothing else in this kernel uses or
        // restores the page published under `name`; `restore` checks, quietly, that a whole
        // preserved page is there, and fails once it was restored (by an earlier call). Besides
        // the caller, only KHO's debugfs reads the page, which stays valid because it is never
        // freed or written here.
        let page = unsafe { Self::restore(phys) }?;
        let ptr = page.ptr;
        // Keep the folio reference for good (see above).
        core::mem::forget(page);
        // SAFETY: The page is valid for `PAGE_SIZE` bytes for the rest of the kernel's life,
        // and nothing writes to it.
        Ok((unsafe { &*ptr.as_ptr().cast() }, len))
    }

    /// Claims the preserved page at `phys`.
    ///
    /// Fails with `EINVAL` if `phys` is not page aligned, is not a KHO-preserved folio, or
    /// is a preserved folio larger than a page. Each page can be restored once.
    ///
    /// # Safety
    ///
    /// The previous kernel preserved the page at `phys` for the caller (with [`PreservedPage`]
    /// or `kho_alloc_preserve`), and nothing else in this kernel uses or restores that page.
    /// An address taken from the caller's own handover data meets this as long as that data
    /// was written by the caller's counterpart in the previous kernel.
    pub unsafe fn restore(phys: IncomingPhys) -> Result<Self> {
        if phys.0 == 0 || phys.0 % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        // Check quietly first: `kho_restore_folio` warns about memory KHO did not preserve,
        // and an address from the previous kernel may be anything.
        // SAFETY: `kho_preserved_order` accepts any address.
        if unsafe { bindings::kho_preserved_order(phys.0) } != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `kho_restore_folio` checks that `phys` is an online page carrying KHO's
        // preservation magic and returns NULL otherwise; by the caller's guarantee the page is
        // the caller's to take.
        let folio = NonNull::new(unsafe { bindings::kho_restore_folio(phys.0) }).ok_or(EINVAL)?;
        // SAFETY: `folio` is a valid folio we own a reference to.
        let (order, addr) = unsafe {
            (
                bindings::folio_order(folio.as_ptr()),
                bindings::folio_address(folio.as_ptr()),
            )
        };
        let Some(ptr) = NonNull::new(addr.cast::<u8>()).filter(|_| order == 0) else {
            // SAFETY: We own the reference taken by `kho_restore_folio`.
            unsafe { bindings::folio_put(folio.as_ptr()) };
            return Err(EINVAL);
        };
        // INVARIANT: `folio` was just restored as an order-0 folio and `ptr` maps it.
        Ok(Self { folio, ptr })
    }

    /// The contents of the page.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        // SAFETY: The page is valid for `PAGE_SIZE` bytes and owned by `self`.
        unsafe { &*self.ptr.as_ptr().cast() }
    }
}

impl Drop for IncomingPage {
    fn drop(&mut self) {
        // SAFETY: By the type invariants we own one reference to the restored folio.
        unsafe { bindings::folio_put(self.folio.as_ptr()) };
    }
}

/// Returns the order of the folio KHO preserved at `phys` in the previous kernel, without
/// restoring it and without warning; `EINVAL` if no preserved range starts there (or it was
/// already restored).
pub fn preserved_order(phys: IncomingPhys) -> Result<u32> {
    if phys.0 == 0 || phys.0 % PAGE_SIZE as u64 != 0 {
        return Err(EINVAL);
    }
    // SAFETY: `kho_preserved_order` accepts any address.
    let order = unsafe { bindings::kho_preserved_order(phys.0) };
    u32::try_from(order).map_err(|_| EINVAL)
}
