// SPDX-License-Identifier: GPL-2.0

//! The argument of a LUO ioctl: a user pointer to a struct that starts with its own size.

use kernel::{
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::UserPtr,
    uaccess_argsz, //
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
        let size = uaccess_argsz::read_size(ptr)? as usize;
        Ok(Self { ptr, size })
    }

    /// `EINVAL` if userspace's struct is smaller than `min` bytes.
    pub(crate) fn check_min(&self, min: usize) -> Result {
        if self.size < min {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Copies the struct in (`E2BIG` for a non-zero tail beyond what the kernel knows).
    pub(crate) fn read<T: FromBytes + AsBytes>(&self) -> Result<T> {
        uaccess_argsz::copy_struct_from_user(self.ptr, self.size)
    }

    /// Copies the reply out, at most the size userspace gave.
    pub(crate) fn respond<T: AsBytes>(&self, val: &T) -> Result {
        uaccess_argsz::respond(self.ptr, self.size, val)
    }
}
