// SPDX-License-Identifier: GPL-2.0

//! Addresses vouched for as the holder's own: a [`Handover`], the fields of a handover format
//! that hold one ([`VmallocField`], [`PfnField`]), and what is restored through them
//! ([`HandoverPage`], [`HandoverVmalloc`], [`HandoverArray`]).

use super::{
    bytes,
    IncomingPage,
    IncomingPhys,
    RestoredArray,
    VmallocDescriptor, //
};
use crate::{
    page::PAGE_SIZE,
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    }, //
};
use core::marker::PhantomData;

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
///
/// [`IncomingFolio::restore_handover`]: crate::kho::IncomingFolio::restore_handover
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
///
/// [`VMALLOC_DESCRIPTOR_SIZE`]: crate::kho::VMALLOC_DESCRIPTOR_SIZE
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
