// SPDX-License-Identifier: GPL-2.0
//! A shared mapping of a whole memfd, the way a VMM maps guest RAM. The
//! only `unsafe` code of this program.

use std::ffi::c_void;
use std::io;
use std::os::fd::AsFd;
use std::ptr::NonNull;

use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// `len` bytes of a file mapped `MAP_SHARED` (and pre-faulted with
/// `MAP_POPULATE`) at offset 0, unmapped on drop.
///
/// The slices it hands out assume that nothing else writes the file while
/// they live: the demo's memfds are private to this process.
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
    write: bool,
}

impl Mapping {
    /// Map `len` (> 0) bytes of `fd`, readable, and writable if `write`.
    pub fn new(fd: impl AsFd, len: usize, write: bool) -> io::Result<Self> {
        let prot = if write { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        // SAFETY: a new mapping at an address the kernel picks (null hint)
        // cannot alias any memory Rust knows about.
        let ptr = unsafe {
            mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED | MapFlags::POPULATE, fd.as_fd(), 0)
        }?;
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Self { ptr, len, write })
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes, owned by
        // `self` (unmapped only in drop); see the type's note on writers.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len) }
    }

    /// The mapped bytes, writable. Panics unless mapped with `write`.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        assert!(self.write, "read-only mapping");
        // SAFETY: as in `bytes`; `&mut self` makes this the only slice.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length, and no
        // slice of it outlives `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr(), self.len) };
    }
}
