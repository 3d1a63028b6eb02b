// SPDX-License-Identifier: GPL-2.0

//! The ioctls of LUO's files (`/dev/liveupdate` and the session files): a table per file
//! ([`Ioctl`]), decoded with the C LUO's checks in its order ([`decode`]), and the argument,
//! a user pointer to a struct that starts with its own size ([`Ucmd`]).

use kernel::{
    ioctl::{
        _IO,
        _IOC_NR, //
    },
    prelude::*,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    uapi::LIVEUPDATE_IOCTL_TYPE, //
};

/// One ioctl of a LUO file: the command `op` has number `nr`, and its argument struct is at
/// least `min_size` bytes (the whole struct the kernel knows, as in the C LUO).
pub(crate) struct Ioctl<C> {
    nr: u32,
    op: C,
    min_size: usize,
}

impl<C> Ioctl<C> {
    /// Command `op`, number `nr`, whose argument is a `T`.
    pub(crate) const fn new<T>(nr: u32, op: C) -> Self {
        Self {
            nr,
            op,
            min_size: size_of::<T>(),
        }
    }
}

/// Decodes ioctl `cmd` of a file whose commands are `table`, with the C LUO's checks in its
/// order: a number not in the table (`EINVAL`), an unreadable size (`EFAULT`), the wrong
/// encoding (`ENOTTY`), a struct shorter than the command's (`EINVAL`). The command's own
/// checks come after these.
pub(crate) fn decode<C: Copy>(table: &[Ioctl<C>], cmd: u32, arg: usize) -> Result<(C, Ucmd)> {
    let nr = _IOC_NR(cmd);
    let def = table.iter().find(|d| d.nr == nr).ok_or(EINVAL)?;
    let ucmd = Ucmd::new(arg)?;
    if cmd != _IO(LIVEUPDATE_IOCTL_TYPE, nr) {
        return Err(ENOIOCTLCMD);
    }
    ucmd.check_min(def.min_size)?;
    Ok((def.op, ucmd))
}

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
    fn check_min(&self, min: usize) -> Result {
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
