// SPDX-License-Identifier: GPL-2.0

//! Folios: [`PreservedFolio`] keeps a folio for the next kernel, [`IncomingFolio`] and
//! [`IncomingFolios`] restore folios the previous kernel preserved.

use super::{
    bytes,
    Handover,
    HandoverArray,
    IncomingPhys,
    PfnField, //
};
use crate::{
    bindings,
    error::to_result,
    page::PAGE_SIZE,
    prelude::*,
    transmute::AsBytes, //
};
use core::ptr::NonNull;

/// A handle that keeps a folio alive and in place (a pin or a reference), so that KHO can
/// preserve it.
///
/// # Safety
///
/// [`HeldFolio::as_folio`] returns the same valid folio for as long as the value lives, and
/// the folio is not migrated or freed meanwhile.
pub unsafe trait HeldFolio {
    /// The folio.
    fn as_folio(&self) -> *mut bindings::folio;
}

/// A folio that KHO preserves for the next kernel (`kho_preserve_folio`) while `self` lives.
///
/// Dropping it unpreserves the folio, then drops the handle.
///
/// # Invariants
///
/// The folio of `folio` is preserved by KHO, once, on behalf of `self`.
pub struct PreservedFolio<F: HeldFolio> {
    folio: F,
}

impl<F: HeldFolio> PreservedFolio<F> {
    /// Preserves the folio held by `folio`.
    ///
    /// The folio must not be in KHO scratch memory (pinning with `FOLL_PIN`/`FOLL_LONGTERM`
    /// migrates it out of CMA, where scratch lives); with `CONFIG_KEXEC_HANDOVER_DEBUG` KHO
    /// refuses such a folio with `EINVAL`.
    pub fn new(folio: F) -> Result<Self> {
        // SAFETY: The folio is valid and stays in place while `folio` lives (`HeldFolio`).
        to_result(unsafe { bindings::kho_preserve_folio(folio.as_folio()) })?;
        // INVARIANT: Just preserved.
        Ok(Self { folio })
    }

    /// Preserves every folio of `held` with one call of KHO (`kho_preserve_folios`: one round
    /// trip of KHO's lock, where [`PreservedFolio::new`] takes one per folio) and appends them
    /// to `out`, in order; `held` is left empty. On error none of them is preserved, and
    /// `held` is emptied (the handles are dropped).
    ///
    /// The folios must not be in KHO scratch memory, as for [`PreservedFolio::new`].
    pub fn preserve_all(held: &mut KVVec<F>, out: &mut KVVec<Self>) -> Result {
        let n = held.len();
        if n == 0 {
            return Ok(());
        }
        let nr = u32::try_from(n).map_err(|_| EINVAL)?;
        let mut raw = KVVec::<*mut bindings::folio>::with_capacity(n, GFP_KERNEL)?;
        for f in held.iter() {
            raw.push(f.as_folio(), GFP_KERNEL)?;
        }
        // Room for all of them, so that none can be left preserved but not owned.
        out.reserve(n, GFP_KERNEL)?;
        // SAFETY: `raw` holds `nr` valid folios, each held in place by its handle in `held`
        // (`HeldFolio`) for as long as it stays preserved: the handles move into `out` below.
        let r = to_result(unsafe { bindings::kho_preserve_folios(raw.as_mut_ptr(), nr) });
        if let Err(e) = r {
            held.clear();
            return Err(e);
        }
        for folio in held.drain_all() {
            // INVARIANT: Preserved just now, once, by `kho_preserve_folios`. `out` has room
            // (reserved above); were it to fail, dropping the value would unpreserve it.
            let _ = out.push_within_capacity(Self { folio });
        }
        Ok(())
    }

    /// The handle of the preserved folio.
    pub fn get(&self) -> &F {
        &self.folio
    }
}

impl<F: HeldFolio> Drop for PreservedFolio<F> {
    fn drop(&mut self) {
        // SAFETY: The folio is preserved on behalf of `self` (type invariant) and still valid.
        unsafe { bindings::kho_unpreserve_folio(self.folio.as_folio()) };
    }
}

/// A folio the previous kernel preserved, restored in this kernel (`kho_restore_folio`).
///
/// Dropping it frees the folio.
///
/// # Invariants
///
/// `folio` was restored by `kho_try_restore_folio` or `kho_try_restore_folios`; `self` owns one
/// reference and nothing else uses the folio; `order` is its order. The only other reference
/// there may be is one held for IOMMU translations adopted from the previous kernel
/// ([`crate::liveupdate::hold_for_adopted_translations`]), which only drops it.
pub struct IncomingFolio {
    folio: NonNull<bindings::folio>,
    order: u32,
}

// SAFETY: The folio is owned by `self` and can be freed from any thread.
unsafe impl Send for IncomingFolio {}

impl IncomingFolio {
    /// Claims the preserved folio at `phys`.
    ///
    /// Fails with `EINVAL`, quietly, if no preserved folio starts at `phys` (a corrupt
    /// address, a tail page, or a folio already restored).
    ///
    /// # Safety
    ///
    /// As for [`IncomingPage::restore`]: the previous kernel preserved the folio at `phys` for
    /// the caller, and nothing else in this kernel uses or restores it.
    ///
    /// [`IncomingPage::restore`]: crate::kho::IncomingPage::restore
    pub unsafe fn restore(phys: IncomingPhys) -> Result<Self> {
        if phys.0 == 0 || phys.0 % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `kho_try_restore_folio` checks, quietly, that a preserved folio starts at
        // the (page-aligned) `phys` and returns NULL otherwise, in one lookup (checking with
        // `kho_preserved_order` first, then restoring, doubled the cost of the `pfn_valid`
        // lookup); by the caller's guarantee the folio is the caller's to take.
        let folio =
            NonNull::new(unsafe { bindings::kho_try_restore_folio(phys.0) }).ok_or(EINVAL)?;
        // SAFETY: The folio is valid.
        let order = unsafe { bindings::folio_order(folio.as_ptr()) };
        // INVARIANT: Just restored, with one reference; its order.
        Ok(Self { folio, order })
    }

    /// Claims the preserved folio at `h`, the holder's own.
    ///
    /// Fails with `EINVAL`, quietly, if no preserved folio starts at `h` (a corrupt address, a
    /// tail page, or a folio already restored).
    pub fn restore_handover(h: Handover) -> Result<Self> {
        // SAFETY: By the invariants of `Handover`, what KHO preserved at `h` was preserved for
        // the holder, and nothing else restores it.
        unsafe { Self::restore(IncomingPhys(h.raw())) }
    }

    /// The order of the folio.
    #[inline]
    pub fn order(&self) -> u32 {
        self.order
    }

    /// The number of pages in the folio.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        1usize << self.order()
    }

    /// Takes back a folio given up with [`IncomingFolio::into_raw`].
    ///
    /// # Safety
    ///
    /// `folio` was given up by [`IncomingFolio::into_raw`], and its reference is the caller's
    /// to give.
    pub unsafe fn from_raw(folio: NonNull<bindings::folio>) -> Self {
        // SAFETY: The folio is valid (a restored folio whose reference the caller owns).
        let order = unsafe { bindings::folio_order(folio.as_ptr()) };
        // INVARIANT: By the caller's guarantee, a restored folio with its reference; its order.
        Self { folio, order }
    }

    /// The folio, still owned by `self`.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::folio {
        self.folio.as_ptr()
    }

    /// Gives up ownership: the caller now owns the folio's reference.
    #[inline]
    pub fn into_raw(self) -> NonNull<bindings::folio> {
        let f = self.folio;
        core::mem::forget(self);
        f
    }
}

impl Drop for IncomingFolio {
    fn drop(&mut self) {
        // SAFETY: `self` owns a reference (type invariant).
        unsafe { bindings::folio_put(self.folio.as_ptr()) };
    }
}

/// How many folios [`IncomingFolios::restore_pfns`] restores at most.
pub const FOLIO_BATCH: usize = 32;

/// Folios the previous kernel preserved, restored in this kernel in batches
/// (`kho_try_restore_folios`: the managed page counts are updated once per batch, not once per
/// folio), and taken out by their place in the batch ([`IncomingFolios::take`]). Dropping it,
/// or restoring the next batch, frees the folios not taken.
///
/// # Invariants
///
/// `folios[..len]` are null or folios restored by `kho_try_restore_folios`, each owned by
/// `self` (its only reference) and used by nothing else, of order `orders[i]`; `left` of them
/// are not null.
pub struct IncomingFolios {
    folios: [*mut bindings::folio; FOLIO_BATCH],
    orders: [u32; FOLIO_BATCH],
    len: usize,
    left: usize,
}

// SAFETY: The folios are owned by `self` and can be freed from any thread.
unsafe impl Send for IncomingFolios {}

impl IncomingFolios {
    /// No folio.
    pub fn new() -> Self {
        // INVARIANT: Empty.
        Self {
            folios: [core::ptr::null_mut(); FOLIO_BATCH],
            orders: [0; FOLIO_BATCH],
            len: 0,
            left: 0,
        }
    }

    /// Frees the folios not taken, then claims the folios whose page frame numbers field `P`
    /// of elements `range` of `array` holds (at most [`FOLIO_BATCH`] of them; place `k` of the
    /// batch is element `range.start + k`), as [`HandoverArray::pfn`] reads them: preserved
    /// for the holder. A field of 0 leaves its place empty.
    ///
    /// A frame that starts no preserved folio (a corrupt number, a tail page, or a folio
    /// already restored) is refused quietly: its place is empty.
    pub fn restore_pfns<P: PfnField>(
        &mut self,
        array: &HandoverArray<P::Array>,
        range: core::ops::Range<usize>,
    ) {
        self.free();
        let bits = P::BITS;
        let elems = match array.as_slice().get(range) {
            Some(e) if bits != 0 && bits <= 64 - crate::page::PAGE_SHIFT as u32 => e,
            _ => &[],
        };
        let mask = u64::MAX >> (64 - bits.max(1));
        let word = P::WORD.saturating_mul(8);
        let mut phys = [0 as bindings::phys_addr_t; FOLIO_BATCH];
        let mut len = 0;
        for (p, e) in phys.iter_mut().zip(elems) {
            let pfn = bytes::le_u64(e.as_bytes(), word).unwrap_or(0) & mask;
            // No overflow: `bits` leaves room for the shift.
            *p = pfn << crate::page::PAGE_SHIFT;
            len += 1;
        }
        // SAFETY: `phys`, `folios` and `orders` hold `len <= FOLIO_BATCH` elements. By the
        // safety requirements of `PfnField`, each non-zero frame of field `P` of an element of
        // the array of field `P::Array`, restored through a `Handover` (the invariant of
        // `HandoverArray`), was preserved for the holder, and nothing else restores it;
        // `kho_try_restore_folios` checks, quietly, that a preserved folio starts at each (a
        // zero address, or one of no preserved folio, gives NULL).
        let done = unsafe {
            bindings::kho_try_restore_folios(
                phys.as_ptr(),
                self.folios.as_mut_ptr(),
                self.orders.as_mut_ptr(),
                len as u32,
            )
        };
        // INVARIANT: Each non-null pointer of the first `len` is a folio just restored, with
        // one reference, of the order beside it; `done` of them.
        self.len = len;
        self.left = done as usize;
    }

    /// Takes the folio at place `i` of the batch; `EINVAL` if there is none (its handle named
    /// no preserved folio, it had no handle, or it was taken).
    #[inline]
    pub fn take(&mut self, i: usize) -> Result<IncomingFolio> {
        if i >= self.len {
            return Err(EINVAL);
        }
        let slot = self.folios.get_mut(i).ok_or(EINVAL)?;
        let folio = NonNull::new(core::mem::take(slot)).ok_or(EINVAL)?;
        // INVARIANT: The folio, restored by `kho_try_restore_folios` with one reference, moves
        // out of `self` (its place is null now) to the `IncomingFolio`.
        self.left = self.left.saturating_sub(1);
        Ok(IncomingFolio {
            folio,
            order: self.orders[i],
        })
    }

    /// Gives up the folios not taken without freeing them, for a holder that finds its handover
    /// corrupt and cannot tell whether they are its own: freeing another user's preserved memory
    /// would hand it to the page allocator while that user may still read it. They stay
    /// allocated, owned by no one (a leak, which is safe).
    pub fn leak(&mut self) {
        for f in self.folios.iter_mut().take(self.len) {
            *f = core::ptr::null_mut();
        }
        // INVARIANT: Empty.
        self.len = 0;
        self.left = 0;
    }

    fn free(&mut self) {
        if self.left == 0 {
            // INVARIANT: Every place is null.
            self.len = 0;
            return;
        }
        for f in self.folios.iter_mut().take(self.len) {
            if !f.is_null() {
                // SAFETY: `self` owns the only reference of each folio not taken (type
                // invariant); its place is cleared.
                unsafe { bindings::folio_put(core::mem::take(f)) };
            }
        }
        // INVARIANT: Empty.
        self.len = 0;
        self.left = 0;
    }
}

impl Default for IncomingFolios {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IncomingFolios {
    fn drop(&mut self) {
        self.free();
    }
}
