// SPDX-License-Identifier: GPL-2.0

//! The argument of a LUO ioctl: a user pointer to a struct that starts with its own size.

use kernel::{
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    }, //
};

/// A LUO ioctl argument, with the size userspace gave.
pub(crate) struct Ucmd {
    ptr: UserPtr,
    size: usize,
}

impl Ucmd {
    /// Reads the size field (`EFAULT` if it cannot be read).
    pub(crate) fn new(arg: usize) -> Result<Self> {
        let ptr = UserPtr::from_addr(arg);
        // One `get_user()`, as the C LUO.
        let size = UserSlice::new(ptr, size_of::<u32>()).reader().read_u32()? as usize;
        Ok(Self { ptr, size })
    }

    /// `EINVAL` if userspace's struct is smaller than `min` bytes.
    pub(crate) fn check_min(&self, min: usize) -> Result {
        if self.size < min {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Copies the struct in (`E2BIG` for a non-zero tail beyond what the kernel knows); the
    /// tail userspace did not pass reads as zero.
    pub(crate) fn read<T: FromBytes + AsBytes + Zeroable>(&self) -> Result<T> {
        UserSlice::new(self.ptr, self.size)
            .reader()
            .read_extensible()
    }

    /// Copies the reply out, at most the size userspace gave (the inputs are echoed too):
    /// userspace that knows a smaller struct gets only the part it knows.
    pub(crate) fn respond<T: AsBytes>(&self, val: &T) -> Result {
        if self.size >= size_of::<T>() {
            // The whole struct: one fixed-size copy.
            return UserSlice::new(self.ptr, size_of::<T>()).writer().write(val);
        }
        let bytes = val.as_bytes();
        let n = self.size.min(bytes.len());
        UserSlice::new(self.ptr, n)
            .writer()
            .write_slice(&bytes[..n])
    }
}
