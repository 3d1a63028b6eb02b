// SPDX-License-Identifier: GPL-2.0

//! Vmalloc arrays: [`PreservedArray`] and [`ArrayBuilder`] for the next kernel,
//! [`RestoredArray`] for an array the previous kernel preserved.

use super::{
    vmalloc::{
        check_vmalloc_chunks,
        IncomingChunks, //
    },
    VmallocDescriptor, //
};
use crate::{
    bindings,
    error::to_result,
    page::PAGE_SIZE,
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    }, //
};
use core::ptr::NonNull;

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
    ///
    /// [`IncomingPage::restore`]: crate::kho::IncomingPage::restore
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
