// SPDX-License-Identifier: GPL-2.0

//! Extensible ioctl arguments with a leading size field ("argsz" structs).
//!
//! Many ioctls (iommufd, LUO, `openat2`, `clone3`) take a pointer to a struct whose first field
//! is a `u32` holding the size userspace built it with. Older userspace may pass a smaller
//! struct, newer userspace a larger one. This module implements the kernel's
//! `copy_struct_from_user()` rules for them:
//!
//! - bytes the user did not provide are zero,
//! - bytes beyond the kernel's struct must be zero, otherwise the call fails with `E2BIG`.
//!
//! C header: [`include/linux/uaccess.h`](srctree/include/linux/uaccess.h)

use crate::{
    bindings,
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// Reads the leading `u32` size field of an argsz struct at `ptr`.
///
/// Fails with `EFAULT` if the four bytes cannot be read.
pub fn read_size(ptr: UserPtr) -> Result<u32> {
    UserSlice::new(ptr, size_of::<u32>()).reader().read::<u32>()
}

/// Copies a `T` from `ptr`, where userspace says the struct is `user_size` bytes long.
///
/// Has the semantics of the C `copy_struct_from_user()`: if `user_size` is smaller than `T`,
/// the missing tail is zero; if it is larger, the extra bytes must all be zero or the call
/// fails with `E2BIG` (before anything is copied). A fault gives `EFAULT`.
pub fn copy_struct_from_user<T: FromBytes + AsBytes>(ptr: UserPtr, user_size: usize) -> Result<T> {
    let ksize = size_of::<T>();
    if user_size > ksize {
        // SAFETY: `check_zeroed_user` only reads user memory through the uaccess routines,
        // which handle faults; the range lies entirely in the user-provided buffer.
        let ret = unsafe {
            bindings::check_zeroed_user(
                ptr.wrapping_byte_add(ksize).as_const_ptr(),
                user_size - ksize,
            )
        };
        match ret {
            0 => return Err(E2BIG),
            r if r < 0 => return Err(Error::from_errno(r)),
            _ => {}
        }
    }
    // SAFETY: `T: FromBytes`, so every bit pattern, including all zeroes, is a valid `T`.
    let mut val: T = unsafe { core::mem::zeroed() };
    let n = user_size.min(ksize);
    UserSlice::new(ptr, n)
        .reader()
        .read_slice(&mut val.as_bytes_mut()[..n])?;
    Ok(val)
}

/// Copies `val` back to `ptr`, at most `user_size` bytes (the inputs are echoed too).
///
/// This is the reply of an argsz ioctl: userspace that knows a smaller struct gets only
/// the part it knows. A fault gives `EFAULT`.
pub fn respond<T: AsBytes>(ptr: UserPtr, user_size: usize, val: &T) -> Result {
    let bytes = val.as_bytes();
    let n = user_size.min(bytes.len());
    UserSlice::new(ptr, n).writer().write_slice(&bytes[..n])
}
