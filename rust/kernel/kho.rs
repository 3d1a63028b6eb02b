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

use crate::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    page::PAGE_SIZE,
    prelude::*,
    rbtree::RBTree,
    transmute::{
        AsBytes,
        FromBytes, //
    }, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};
use macros::kunit_tests;

pub mod bytes;

/// Returns whether KHO is enabled on this boot (`kho=` and `CONFIG_KEXEC_HANDOVER_ENABLE_DEFAULT`).
pub fn is_enabled() -> bool {
    // SAFETY: Reads a flag; callable at any time.
    unsafe { bindings::kho_is_enabled() }
}

/// A zeroed, page-sized allocation that KHO preserves for the next kernel.
///
/// Dropping it frees the page and removes it from the handover. [`PreservedPage::hand_over`]
/// leaves it for the next kernel instead.
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
    fn as_ptr(&self) -> *mut c_void {
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

/// A physical address read from the previous kernel's handover data: not trusted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct IncomingPhys(pub u64);

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
    pub const unsafe fn new(name: &'static CStr) -> Self {
        // INVARIANT: By the caller's guarantee.
        Self(name)
    }

    /// The name, e.g. to publish this kernel's subtree under it with [`Subtree::add`].
    pub const fn name(&self) -> &'static CStr {
        self.0
    }
}

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

/// A physical address that a KHO user's counterpart in the previous kernel wrote *for this
/// user*, in a handover format both know: the handle the user was given (e.g. the one LUO
/// passes to a file handler's `retrieve` and `finish`; its format is the handler's compatible
/// string), or an address read, from memory restored through such a handle, out of a field
/// that the format declares to hold one ([`HandoverPage::vmalloc`], [`HandoverArray::pfn`]).
///
/// Unlike an [`IncomingPhys`], it vouches for ownership: whatever KHO preserved where it points
/// was preserved for the holder. So the holder may restore (and thereby free) that memory in
/// safe code ([`HandoverPage::restore`], [`IncomingFolio::restore_handover`],
/// [`HandoverArray::restore`]). Its value is still untrusted input: it may point at nothing
/// preserved, which those functions refuse, quietly, with `EINVAL`.
///
/// It can only be made with [`Handover::new`], which is `unsafe`, or read through a field
/// declaration ([`VmallocField`], [`PfnField`]), which is `unsafe` to implement, from memory
/// restored through one. Any other word of that memory stays plain data: it may hold a value
/// that userspace chose.
///
/// # Invariants
///
/// Memory that KHO preserved at `phys` in the previous kernel was preserved for the holder, and
/// nothing else in this kernel restores it. If `format` is `Some`, that memory is laid out as
/// the handover format it names says; otherwise it is plain data (e.g. a folio of a file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handover {
    phys: u64,
    format: Option<&'static CStr>,
}

impl Handover {
    /// Vouches for `phys`, a handle of handover format `format`.
    ///
    /// # Safety
    ///
    /// `phys` was written by the caller's counterpart in the previous kernel to name memory it
    /// preserved for the caller, laid out as handover format `format` says (so every field that
    /// a [`VmallocField`] or [`PfnField`] of `format` declares holds what it declares), and
    /// nothing else in this kernel restores that memory.
    pub unsafe fn new(phys: u64, format: &'static CStr) -> Self {
        // INVARIANT: By the caller's guarantee.
        Self {
            phys,
            format: Some(format),
        }
    }

    /// The raw value (for users that do not restore memory with it, and for messages).
    pub fn raw(self) -> u64 {
        self.phys
    }

    /// The handover format of the memory it names; `None` for plain data, such as a folio
    /// read from a [`PfnField`].
    pub fn format(self) -> Option<&'static CStr> {
        self.format
    }
}

/// A field of a handover format that holds the [`VmallocDescriptor`] of an array of
/// [`VmallocField::Elem`] preserved for the format's reader, in the page its handle names:
/// what [`HandoverPage::vmalloc`] reads.
///
/// A handover format is laid out by its ABI header (e.g. `include/linux/kho/abi/memfd.h`), so
/// its fields are declared next to the bindings of that header, once per field, not by the
/// code that reads them.
///
/// # Safety
///
/// In every handover of format [`VmallocField::FORMAT`], the [`VMALLOC_DESCRIPTOR_SIZE`] bytes
/// at byte [`VmallocField::OFFSET`] of the page the handle names are stored by the format's
/// writers as the descriptor of a vmalloc area of `Elem`s that they preserved for the format's
/// reader: whatever KHO preserved at the addresses of the descriptor and of its chunk pages was
/// preserved for the reader.
pub unsafe trait VmallocField {
    /// The handover format (for a LUO file handler, its compatible string).
    const FORMAT: &'static CStr;
    /// Byte offset of the descriptor in the page.
    const OFFSET: usize;
    /// The elements of the array.
    type Elem: AsBytes + FromBytes;
}

/// A field of the elements of the array in [`PfnField::Array`] that holds the page frame number
/// of a folio preserved for the format's reader: what [`HandoverArray::pfn`] reads.
///
/// # Safety
///
/// In every handover of the format of [`PfnField::Array`], the low [`PfnField::BITS`] bits of
/// the little-endian 64-bit word [`PfnField::WORD`] of each element of that array are stored
/// by the format's writers as 0 or as the page frame number of a folio that they preserved for
/// the format's reader: whatever KHO preserved there was preserved for the reader.
pub unsafe trait PfnField {
    /// The array whose elements hold the field.
    type Array: VmallocField;
    /// Index of the 64-bit word of the element that holds the field.
    const WORD: usize;
    /// Width of the field, in the low bits of the word.
    const BITS: u32;
}

/// A page restored through a [`Handover`]: the holder's own handover data.
///
/// Dropping it frees the page.
///
/// # Invariants
///
/// If `format` is `Some`, the page is laid out as the handover format it names says, as for
/// [`Handover`].
pub struct HandoverPage {
    page: IncomingPage,
    format: Option<&'static CStr>,
}

impl HandoverPage {
    /// Claims the preserved page at `h`.
    ///
    /// Fails with `EINVAL` if `h` is not a page that KHO preserved (and that was not restored
    /// yet), or is a folio larger than a page.
    pub fn restore(h: Handover) -> Result<Self> {
        // SAFETY: By the invariants of `Handover`, what KHO preserved at `h` was preserved for
        // the holder and nothing else restores it; `restore` checks, quietly, that a preserved
        // page is there.
        let page = unsafe { IncomingPage::restore(IncomingPhys(h.phys)) }?;
        // INVARIANT: The page `h` names, in the format of `h`.
        Ok(Self {
            page,
            format: h.format,
        })
    }

    /// The contents of the page.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        self.page.bytes()
    }

    /// The vmalloc descriptor in field `F` of the page; `EINVAL` if the page is not of the
    /// handover format of `F` (or is plain data) or `F` does not fit in it.
    pub fn vmalloc<F: VmallocField>(&self) -> Result<HandoverVmalloc<F>> {
        if self.format != Some(F::FORMAT) {
            return Err(EINVAL);
        }
        let a = bytes::get(self.bytes(), F::OFFSET).ok_or(EINVAL)?;
        // INVARIANT: Field `F` of a page of format `F::FORMAT` restored through a `Handover`:
        // by the safety requirements of `VmallocField`, its addresses name memory preserved
        // for the holder.
        Ok(HandoverVmalloc {
            desc: VmallocDescriptor::from_bytes(&a),
            _field: PhantomData,
        })
    }
}

/// A [`VmallocDescriptor`] read from field `F` of memory restored through a [`Handover`] (see
/// [`HandoverPage::vmalloc`]): the pages it names are the holder's.
///
/// # Invariants
///
/// As for [`Handover`], for the addresses of the descriptor and of its chunk pages, in the
/// format of `F`: the array holds `F::Elem`s.
pub struct HandoverVmalloc<F: VmallocField> {
    desc: VmallocDescriptor,
    _field: PhantomData<F>,
}

impl<F: VmallocField> HandoverVmalloc<F> {
    /// The descriptor.
    pub fn descriptor(&self) -> VmallocDescriptor {
        self.desc
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
        unsafe { Self::restore(IncomingPhys(h.phys)) }
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
    pub(crate) unsafe fn from_raw(folio: NonNull<bindings::folio>) -> Self {
        // SAFETY: The folio is valid (a restored folio whose reference the caller owns).
        let order = unsafe { bindings::folio_order(folio.as_ptr()) };
        // INVARIANT: By the caller's guarantee, a restored folio with its reference; its order.
        Self { folio, order }
    }

    /// The folio, still owned by `self`.
    #[inline]
    pub(crate) fn as_raw(&self) -> *mut bindings::folio {
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

/// How many folios [`IncomingFolios::restore_handovers`] restores at most.
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

/// The descriptor of a preserved vmalloc area (`struct kho_vmalloc`), as it is stored in
/// handover data: 16 bytes, little-endian on the supported architectures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmallocDescriptor {
    /// Physical address of the first chunk page (0 if none).
    pub first: u64,
    /// Number of pages in the area.
    pub total_pages: u32,
    /// KHO's vmalloc flags (1: `VM_ALLOC`, 2: `VM_ALLOW_HUGE_VMAP`).
    pub flags: u16,
    /// Order of each preserved block of pages.
    pub order: u16,
}

/// Size of [`VmallocDescriptor`] in handover data.
pub const VMALLOC_DESCRIPTOR_SIZE: usize = 16;

const _: () = assert!(size_of::<bindings::kho_vmalloc>() == VMALLOC_DESCRIPTOR_SIZE);

/// Number of page addresses in a chunk of a preserved vmalloc area (`KHO_VMALLOC_SIZE`).
const VMALLOC_CHUNK_ENTRIES: usize = (PAGE_SIZE - 8) / 8;

impl VmallocDescriptor {
    /// Encodes the descriptor.
    pub fn to_bytes(self) -> [u8; VMALLOC_DESCRIPTOR_SIZE] {
        let mut b = [0u8; VMALLOC_DESCRIPTOR_SIZE];
        // The offsets are in range: `b` has the descriptor's size.
        let _ = bytes::put_le_u64(&mut b, 0, self.first);
        let _ = bytes::put_le_u32(&mut b, 8, self.total_pages);
        let _ = bytes::put_le_u16(&mut b, 12, self.flags);
        let _ = bytes::put_le_u16(&mut b, 14, self.order);
        b
    }

    /// Decodes a descriptor (no validation).
    pub fn from_bytes(b: &[u8; VMALLOC_DESCRIPTOR_SIZE]) -> Self {
        // The offsets are in range: `b` has the descriptor's size.
        Self {
            first: bytes::le_u64(b, 0).unwrap_or(0),
            total_pages: bytes::le_u32(b, 8).unwrap_or(0),
            flags: bytes::le_u16(b, 12).unwrap_or(0),
            order: bytes::le_u16(b, 14).unwrap_or(0),
        }
    }

    fn to_raw(self) -> bindings::kho_vmalloc {
        let b = self.to_bytes();
        // SAFETY: `kho_vmalloc` is 16 bytes of integers (checked above), in the layout
        // `to_bytes` writes; every bit pattern is valid.
        unsafe { core::ptr::read_unaligned(b.as_ptr().cast()) }
    }

    fn from_raw(raw: &bindings::kho_vmalloc) -> Self {
        let mut b = [0u8; VMALLOC_DESCRIPTOR_SIZE];
        // SAFETY: `raw` is 16 initialized bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                core::ptr::from_ref(raw).cast::<u8>(),
                b.as_mut_ptr(),
                VMALLOC_DESCRIPTOR_SIZE,
            )
        };
        Self::from_bytes(&b)
    }
}

/// A vmalloc array of `T` that KHO preserves for the next kernel (`kho_preserve_vmalloc`).
///
/// The next kernel gets it back with [`RestoredArray::restore`] from its
/// [`PreservedArray::descriptor`]. Dropping it unpreserves and frees it.
///
/// # Invariants
///
/// `ptr` is a `vzalloc` area of at least `len` elements of `T`, preserved by KHO with
/// descriptor `desc`, owned by `self`.
pub struct PreservedArray<T: AsBytes + FromBytes> {
    ptr: NonNull<T>,
    len: usize,
    desc: bindings::kho_vmalloc,
}

// SAFETY: The array is plain memory owned by `self`.
unsafe impl<T: AsBytes + FromBytes + Send> Send for PreservedArray<T> {}
// SAFETY: Shared references only read.
unsafe impl<T: AsBytes + FromBytes + Sync> Sync for PreservedArray<T> {}

impl<T: AsBytes + FromBytes> PreservedArray<T> {
    /// Allocates a zeroed array of `len` elements, lets `fill` write it, then preserves it.
    pub fn new(len: usize, fill: impl FnOnce(&mut [T])) -> Result<Self> {
        let bytes = len.checked_mul(size_of::<T>()).ok_or(ENOMEM)?.max(1);
        // SAFETY: `vzalloc_noprof` has no preconditions.
        let p = NonNull::new(unsafe { bindings::vzalloc_noprof(bytes as c_ulong) })
            .ok_or(ENOMEM)?
            .cast::<T>();
        // SAFETY: The area is page-aligned (so aligned for `T`), zeroed, and `len` elements
        // long; zeroes are a valid `T` (`FromBytes`); nothing else refers to it.
        fill(unsafe { core::slice::from_raw_parts_mut(p.as_ptr(), len) });
        let mut desc = VmallocDescriptor::default().to_raw();
        // SAFETY: `p` is a vmalloc area; `desc` is a valid descriptor to fill.
        let r = unsafe { bindings::kho_preserve_vmalloc(p.as_ptr().cast(), &mut desc) };
        if r != 0 {
            // SAFETY: `p` came from `vzalloc` and is not preserved (KHO undid it on error).
            unsafe { bindings::vfree(p.as_ptr().cast()) };
            return Err(Error::from_errno(r));
        }
        // INVARIANT: Allocated, filled and preserved above.
        Ok(Self { ptr: p, len, desc })
    }

    /// The descriptor to write into handover data.
    pub fn descriptor(&self) -> VmallocDescriptor {
        VmallocDescriptor::from_raw(&self.desc)
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is valid for `len` elements (type invariant).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The elements, for writing. KHO preserves the pages, not a copy: what is written
    /// before the kexec is what the next kernel reads.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: `ptr` is valid for `len` elements (type invariant) and uniquely borrowed.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: AsBytes + FromBytes> Drop for PreservedArray<T> {
    fn drop(&mut self) {
        // SAFETY: The area is preserved with `desc` and owned by `self` (type invariant).
        unsafe {
            bindings::kho_unpreserve_vmalloc(&mut self.desc);
            bindings::vfree(self.ptr.as_ptr().cast());
        }
    }
}

/// A zeroed vmalloc array of `T` being filled, not preserved yet; [`ArrayBuilder::preserve`]
/// makes it a [`PreservedArray`].
///
/// It lets a caller write each element once, as it produces it, into the memory that KHO will
/// preserve, instead of collecting the elements elsewhere and copying them into a
/// [`PreservedArray`] afterwards. With a good capacity estimate there is one allocation;
/// otherwise it grows by doubling. A capacity of zero allocates nothing until the first push
/// (a vmalloc area costs thousands of instructions to map and unmap).
///
/// # Invariants
///
/// If `cap` is zero, `ptr` is dangling, `len` is zero and `self` owns no memory. Otherwise
/// `ptr` is a `vzalloc` area of `cap` elements of `T`, owned by `self`; the first `len`
/// elements are written and the rest are zero.
pub struct ArrayBuilder<T: AsBytes + FromBytes> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
}

// SAFETY: The array is plain memory owned by `self`.
unsafe impl<T: AsBytes + FromBytes + Send> Send for ArrayBuilder<T> {}

/// Allocates a zeroed vmalloc area of `n` (at least 1) elements of `T`.
fn vzalloc_array<T>(n: usize) -> Result<NonNull<T>> {
    let bytes = n.max(1).checked_mul(size_of::<T>()).ok_or(ENOMEM)?.max(1);
    // SAFETY: `vzalloc_noprof` has no preconditions.
    let p = NonNull::new(unsafe { bindings::vzalloc_noprof(bytes as c_ulong) }).ok_or(ENOMEM)?;
    Ok(p.cast::<T>())
}

impl<T: AsBytes + FromBytes> ArrayBuilder<T> {
    /// An empty array with room for `cap` elements before it has to grow (no allocation if
    /// `cap` is zero).
    pub fn with_capacity(cap: usize) -> Result<Self> {
        if cap == 0 {
            // INVARIANT: No area, nothing written.
            return Ok(Self {
                ptr: NonNull::dangling(),
                len: 0,
                cap: 0,
            });
        }
        let ptr = vzalloc_array::<T>(cap)?;
        // INVARIANT: A fresh zeroed area of `cap` elements, none written.
        Ok(Self { ptr, len: 0, cap })
    }

    /// The number of elements written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no element was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves the `len` written elements into a new zeroed area of `cap` elements.
    fn realloc(&mut self, cap: usize) -> Result {
        let cap = cap.max(self.len).max(1);
        let p = vzalloc_array::<T>(cap)?;
        // SAFETY: Both areas hold at least `len` elements (none if `self.cap` is zero: then
        // `len` is zero and the dangling `ptr` is aligned) and do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr.as_ptr(), p.as_ptr(), self.len) };
        if self.cap > 0 {
            // SAFETY: The old area came from `vzalloc` and is owned by `self` (type
            // invariant); it is replaced right after.
            unsafe { bindings::vfree(self.ptr.as_ptr().cast()) };
        }
        // INVARIANT: The new area holds the `len` written elements, zeroes after them.
        self.ptr = p;
        self.cap = cap;
        Ok(())
    }

    /// Appends `v`, growing the area (doubling it) when it is full.
    pub fn push(&mut self, v: T) -> Result {
        if self.len == self.cap {
            self.realloc(self.cap.checked_mul(2).ok_or(ENOMEM)?)?;
        }
        // SAFETY: `len < cap`, so the slot is inside the area owned by `self`; it is written,
        // not read.
        unsafe { self.ptr.as_ptr().add(self.len).write(v) };
        // INVARIANT: One more element written.
        self.len += 1;
        Ok(())
    }

    /// The elements written so far.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: The first `len` elements are initialized (type invariant).
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Preserves the array (its first [`ArrayBuilder::len`] elements).
    ///
    /// KHO preserves whole pages, so an area more than a page larger than its elements need
    /// (a capacity estimate that was too high) is first moved to one of the right size.
    pub fn preserve(mut self) -> Result<PreservedArray<T>> {
        let need = (self.len.max(1) * size_of::<T>()).div_ceil(PAGE_SIZE);
        let have = (self.cap * size_of::<T>()).div_ceil(PAGE_SIZE);
        if self.cap == 0 || have > need + 1 {
            self.realloc(self.len)?;
        }
        let mut desc = VmallocDescriptor::default().to_raw();
        // SAFETY: `cap` is not zero now, so `ptr` is a vmalloc area owned by `self`; `desc` is
        // a valid descriptor to fill.
        to_result(unsafe { bindings::kho_preserve_vmalloc(self.ptr.as_ptr().cast(), &mut desc) })?;
        let (ptr, len) = (self.ptr, self.len);
        core::mem::forget(self);
        // INVARIANT: A vzalloc area of at least `len` elements, preserved just now with `desc`;
        // ownership moved from the builder, which is forgotten.
        Ok(PreservedArray { ptr, len, desc })
    }
}

impl<T: AsBytes + FromBytes> Drop for ArrayBuilder<T> {
    fn drop(&mut self) {
        if self.cap > 0 {
            // SAFETY: With a nonzero `cap` the area came from `vzalloc` and is owned by `self`
            // (type invariant).
            unsafe { bindings::vfree(self.ptr.as_ptr().cast()) };
        }
    }
}

/// What [`check_vmalloc_chunks`] reads: which addresses start a preserved page, and the words
/// of chunk pages. [`IncomingChunks`] reads the previous kernel's memory; KUnit gives the walk
/// hostile chains through a fake.
trait ChunkSource {
    /// Whether KHO preserved an order-0 page at `phys` in the previous kernel (and it was not
    /// restored since).
    fn is_preserved_page(&mut self, phys: u64) -> bool;

    /// The `i`-th 64-bit word of the chunk page at `phys`.
    ///
    /// # Safety
    ///
    /// [`ChunkSource::is_preserved_page`] returned `true` for `phys`, and `i < PAGE_SIZE / 8`.
    unsafe fn chunk_word(&self, phys: u64, i: usize) -> u64;
}

/// The chunk pages of a preserved vmalloc area, in the memory the previous kernel handed over.
struct IncomingChunks;

impl ChunkSource for IncomingChunks {
    fn is_preserved_page(&mut self, phys: u64) -> bool {
        matches!(preserved_order(IncomingPhys(phys)), Ok(0))
    }

    unsafe fn chunk_word(&self, phys: u64, i: usize) -> u64 {
        // SAFETY: By the caller's guarantee `phys` starts a preserved page: memory the previous
        // kernel handed over, reserved in this one and mapped in the direct map (page aligned,
        // so the word is aligned), and word `i` is inside it. It is read through a raw pointer,
        // with no reference formed: the page is not this kernel's until
        // `kho_restore_vmalloc` restores it.
        unsafe { bindings::phys_to_virt(phys).cast::<u64>().add(i).read() }
    }
}

/// Records `phys` as seen: `EINVAL` if it does not start a preserved order-0 page or was seen
/// before.
fn visit_vmalloc_page(seen: &mut RBTree<u64, ()>, mem: &mut impl ChunkSource, phys: u64) -> Result {
    if !mem.is_preserved_page(phys) {
        return Err(EINVAL);
    }
    match seen.try_create_and_insert(phys, (), GFP_KERNEL)? {
        Some(_) => Err(EINVAL),
        None => Ok(()),
    }
}

/// Checks the chunk pages of a preserved vmalloc area, starting at `first`, before KHO walks
/// them: an area of `total` order-0 pages for an array of `need` bytes.
///
/// `total` must be the pages `need` takes (at least one), or one more: what
/// [`ArrayBuilder::preserve`] may leave; `vmalloc` itself, and so the C writers, take exactly
/// what is needed. Every chunk and page address must start a preserved order-0 page and appear
/// once; every chunk but the last is full, the last may be empty only after a full one, and the
/// chunks hold exactly `total` pages. Anything else is `EINVAL`.
///
/// A repeated address is refused when it appears, so whatever the previous kernel wrote (a
/// chunk linked to itself, a chunk full of one page, a huge `total`), the walk visits at most
/// `total` distinct pages and their chunks, and `seen` holds no more.
fn check_vmalloc_chunks(
    first: u64,
    total: usize,
    need: usize,
    mem: &mut impl ChunkSource,
) -> Result {
    let needed = need.div_ceil(PAGE_SIZE).max(1);
    if total < needed || total > needed + 1 {
        return Err(EINVAL);
    }
    // `kho_preserve_vmalloc()` starts a new chunk as soon as one is full, so an area of
    // k * VMALLOC_CHUNK_ENTRIES pages has an empty last chunk: k + 1 chunks.
    let max_chunks = total / VMALLOC_CHUNK_ENTRIES + 1;
    let mut seen = RBTree::<u64, ()>::new();
    let mut chunk = first;
    let mut chunks = 0usize;
    let mut pages = 0usize;
    while chunk != 0 {
        chunks += 1;
        if chunks > max_chunks {
            return Err(EINVAL);
        }
        visit_vmalloc_page(&mut seen, mem, chunk)?;
        let mut n = 0usize;
        while n < VMALLOC_CHUNK_ENTRIES {
            // SAFETY: `chunk` starts a preserved page (checked by `visit_vmalloc_page` above),
            // and `n + 1 <= VMALLOC_CHUNK_ENTRIES < PAGE_SIZE / 8`.
            let p = unsafe { mem.chunk_word(chunk, n + 1) };
            if p == 0 {
                break;
            }
            pages += 1;
            if pages > total {
                return Err(EINVAL);
            }
            visit_vmalloc_page(&mut seen, mem, p)?;
            n += 1;
        }
        // SAFETY: As above, for word 0: the address of the next chunk.
        let next = unsafe { mem.chunk_word(chunk, 0) };
        // Every chunk but the last is full; the last may be empty only after a full one.
        if (next != 0 && n != VMALLOC_CHUNK_ENTRIES) || (n == 0 && chunks == 1) {
            return Err(EINVAL);
        }
        chunk = next;
    }
    if pages != total {
        return Err(EINVAL);
    }
    Ok(())
}

/// A preserved vmalloc array of `T` restored in the next kernel (`kho_restore_vmalloc`).
///
/// Dropping it frees it.
///
/// # Invariants
///
/// `ptr` is a vmalloc area restored by `kho_restore_vmalloc`, valid for `len` elements of
/// `T`, owned by `self`.
pub struct RestoredArray<T: FromBytes> {
    ptr: NonNull<T>,
    len: usize,
}

// SAFETY: The array is plain memory owned by `self`.
unsafe impl<T: FromBytes + Send> Send for RestoredArray<T> {}

impl<T: FromBytes> RestoredArray<T> {
    /// Restores the first `len` elements of the array that `desc` describes.
    ///
    /// Every address in the descriptor and its chunk pages is checked, quietly, before KHO
    /// walks them (see `check_vmalloc_chunks`): `total_pages` must be what `len` elements
    /// take (or one page more), each address must start a preserved order-0 page and appear
    /// once, and the chunks must hold exactly `total_pages` pages. Anything else is `EINVAL`.
    /// Only order-0 areas without huge mappings are accepted (what `vmalloc`, `vzalloc` and
    /// `vcalloc` make).
    ///
    /// # Safety
    ///
    /// As for [`IncomingPage::restore`]: the previous kernel preserved these pages for the
    /// caller, and nothing else in this kernel uses or restores them.
    pub unsafe fn restore(desc: VmallocDescriptor, len: usize) -> Result<Self> {
        if desc.order != 0 || desc.flags & !1 != 0 {
            return Err(EINVAL);
        }
        let need = len.checked_mul(size_of::<T>()).ok_or(EINVAL)?;
        check_vmalloc_chunks(
            desc.first,
            desc.total_pages as usize,
            need,
            &mut IncomingChunks,
        )?;
        let raw = desc.to_raw();
        // SAFETY: Every page the descriptor names is a distinct preserved order-0 page
        // (checked above, so KHO's walk neither faults nor warns), the caller's to take.
        let p = unsafe { bindings::kho_restore_vmalloc(&raw) };
        let ptr = NonNull::new(p.cast::<T>()).ok_or(EINVAL)?;
        // INVARIANT: The area is `total_pages` pages, at least `len` elements (checked above).
        Ok(Self { ptr, len })
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is valid for `len` elements (type invariant); every bit pattern is a
        // valid `T` (`FromBytes`); nothing writes to it.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: FromBytes> Drop for RestoredArray<T> {
    fn drop(&mut self) {
        // SAFETY: The area came from `kho_restore_vmalloc` and is owned by `self`.
        unsafe { bindings::vfree(self.ptr.as_ptr().cast()) };
    }
}

/// A preserved vmalloc array restored through a [`HandoverVmalloc`] of field `F`: the holder's
/// own, so the page frame numbers in the fields its format declares name the holder's memory
/// ([`HandoverArray::pfn`]).
///
/// # Invariants
///
/// The array of field `F` of memory restored through a [`Handover`].
pub struct HandoverArray<F: VmallocField> {
    array: RestoredArray<F::Elem>,
    _field: PhantomData<F>,
}

impl<F: VmallocField> HandoverArray<F> {
    /// Restores the first `len` elements of the array `desc` describes, checked as
    /// [`RestoredArray::restore`] checks them (`EINVAL` for anything unsound).
    pub fn restore(desc: HandoverVmalloc<F>, len: usize) -> Result<Self> {
        // SAFETY: By the invariants of `HandoverVmalloc`, the pages the descriptor names were
        // preserved for the holder and nothing else restores them.
        let array = unsafe { RestoredArray::restore(desc.desc, len) }?;
        // INVARIANT: Restored from field `F`.
        Ok(Self {
            array,
            _field: PhantomData,
        })
    }

    /// The elements.
    #[inline]
    pub fn as_slice(&self) -> &[F::Elem] {
        self.array.as_slice()
    }

    /// The page frame number in field `P` of element `i`, as the [`Handover`] address of that
    /// frame, whose contents are plain data. `None` if the field is 0 (no frame) or does not
    /// exist (`i`, or `P`'s word or width, out of range).
    pub fn pfn<P: PfnField<Array = F>>(&self, i: usize) -> Option<Handover> {
        let bits = P::BITS;
        if bits == 0 || bits > 64 - crate::page::PAGE_SHIFT as u32 {
            return None;
        }
        let e = self.as_slice().get(i)?.as_bytes();
        let pfn = bytes::le_u64(e, P::WORD.checked_mul(8)?)? & (u64::MAX >> (64 - bits));
        if pfn == 0 {
            return None;
        }
        // INVARIANT: Field `P` of an element of the array of field `F`, restored through a
        // `Handover`: by the safety requirements of `PfnField`, a frame preserved for the
        // holder. Its contents are not vouched for (a file's data, say): no format. `bits`
        // leaves room for the shift.
        Some(Handover {
            phys: pfn << crate::page::PAGE_SHIFT,
            format: None,
        })
    }
}

#[kunit_tests(rust_kho)]
mod tests {
    use super::*;

    const PG: u64 = PAGE_SIZE as u64;

    /// After this many lookups the fake says "not preserved", so that a walk that does not stop
    /// by itself still ends (and the test fails on the count).
    const LOOKUP_LIMIT: usize = 8192;

    /// Memory for [`check_vmalloc_chunks`]: every nonzero page-aligned address is a preserved
    /// page, and `word` gives the words of the chunk pages. Lookups are counted.
    struct Fake<W: Fn(u64, usize) -> u64> {
        word: W,
        lookups: usize,
    }

    impl<W: Fn(u64, usize) -> u64> ChunkSource for Fake<W> {
        fn is_preserved_page(&mut self, phys: u64) -> bool {
            self.lookups += 1;
            self.lookups <= LOOKUP_LIMIT && phys != 0 && phys % PG == 0
        }

        unsafe fn chunk_word(&self, phys: u64, i: usize) -> u64 {
            (self.word)(phys, i)
        }
    }

    fn fake<W: Fn(u64, usize) -> u64>(word: W) -> Fake<W> {
        Fake { word, lookups: 0 }
    }

    /// Two chunks as `kho_preserve_vmalloc()` writes them: a full one, then one with one page.
    #[test]
    fn vmalloc_chunks_as_kho_writes_them() {
        const A: u64 = 0x10_0000;
        const B: u64 = 0x20_0000;
        let word = |c: u64, i: usize| match (c, i) {
            (A, 0) => B,
            (A, i) => 0x100_0000 + i as u64 * PG,
            (B, 1) => 0x200_0000,
            _ => 0,
        };
        let mut m = fake(word);
        assert_eq!(
            check_vmalloc_chunks(A, 512, 512 * PAGE_SIZE, &mut m),
            Ok(())
        );
        assert_eq!(m.lookups, 2 + 512);
        // One page more than the array needs (`ArrayBuilder::preserve`), not two.
        assert_eq!(
            check_vmalloc_chunks(A, 512, 511 * PAGE_SIZE, &mut fake(word)),
            Ok(())
        );
        assert_eq!(
            check_vmalloc_chunks(A, 512, 510 * PAGE_SIZE, &mut fake(word)),
            Err(EINVAL)
        );
        // Fewer pages than the array needs.
        assert_eq!(
            check_vmalloc_chunks(A, 512, 512 * PAGE_SIZE + 1, &mut fake(word)),
            Err(EINVAL)
        );
    }

    /// `total_pages = 0xffffffff` for a one-page array, over a chunk linked to itself and
    /// full of one page: refused before any chunk is read.
    #[test]
    fn vmalloc_total_beyond_what_len_needs() {
        const C: u64 = 0x10_0000;
        let mut m = fake(|c: u64, i: usize| if i == 0 { c } else { 0x200_0000 });
        assert_eq!(
            check_vmalloc_chunks(C, u32::MAX as usize, 16, &mut m),
            Err(EINVAL)
        );
        assert_eq!(m.lookups, 0);
    }

    /// A page listed twice is refused at its second appearance, also when the count of pages
    /// comes out right; so is a chunk listed as a page.
    #[test]
    fn vmalloc_repeated_page_refused_when_it_appears() {
        const C: u64 = 0x10_0000;
        let mut m = fake(|_c: u64, i: usize| if (1..=4).contains(&i) { 0x200_0000 } else { 0 });
        assert_eq!(
            check_vmalloc_chunks(C, 4, 4 * PAGE_SIZE, &mut m),
            Err(EINVAL)
        );
        assert_eq!(m.lookups, 3);
        let mut m = fake(|c: u64, i: usize| if i == 1 { c } else { 0 });
        assert_eq!(check_vmalloc_chunks(C, 1, 8, &mut m), Err(EINVAL));
        assert_eq!(m.lookups, 2);
    }

    /// A full chunk linked to itself is refused when it comes round again, before its pages
    /// are read a second time.
    #[test]
    fn vmalloc_chunk_linked_to_itself_refused_when_it_reappears() {
        const C: u64 = 0x10_0000;
        let mut m = fake(|c: u64, i: usize| {
            if i == 0 {
                c
            } else {
                0x100_0000 + i as u64 * PG
            }
        });
        let total = 2 * VMALLOC_CHUNK_ENTRIES;
        assert_eq!(
            check_vmalloc_chunks(C, total, total * PAGE_SIZE, &mut m),
            Err(EINVAL)
        );
        assert_eq!(m.lookups, 1 + VMALLOC_CHUNK_ENTRIES + 1);
    }
}
