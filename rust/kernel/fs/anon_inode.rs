// SPDX-License-Identifier: GPL-2.0

//! Files on the shared anonymous inode.
//!
//! Subsystems hand out objects to userspace as file descriptors without a filesystem of their
//! own (eventfd, epoll, io_uring, LUO sessions) by creating a `struct file` on the kernel's
//! shared anonymous inode with their own file operations.
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    bindings,
    error::{
        from_err_ptr,
        VTABLE_DEFAULT_ERROR, //
    },
    fs::File,
    module::this_module,
    prelude::*,
    sync::aref::ARef,
    types::ForeignOwnable, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// Operations of a file on the anonymous inode.
///
/// The file owns one `Self::Ptr` from creation until release.
#[vtable]
pub trait AnonInodeOps: Sized {
    /// The object the file owns.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Called when the last reference to the file is dropped.
    fn release(data: Self::Ptr, _file: &File) {
        drop(data);
    }

    /// Handler for ioctls.
    fn ioctl(
        _data: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _cmd: u32,
        _arg: usize,
    ) -> Result<isize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// Creates a new file on the anonymous inode, owning `data`.
///
/// `name` is shown in `/proc/<pid>/fd` as `anon_inode:<name>`. `flags` are the file's open
/// flags (e.g. `O_RDWR`). On failure `data` is dropped.
pub fn create_file<T: AnonInodeOps>(name: &CStr, data: T::Ptr, flags: u32) -> Result<ARef<File>> {
    let ptr = data.into_foreign();
    // SAFETY: `name` is a valid NUL-terminated string; the vtable is a static with the
    // lifetime of the kernel; `ptr` came from `into_foreign` and is given back by `release`.
    let file = unsafe {
        bindings::anon_inode_getfile(
            name.as_char_ptr(),
            AnonInodeVTable::<T>::build(),
            ptr.cast(),
            flags as c_int,
        )
    };
    match from_err_ptr(file) {
        // SAFETY: `anon_inode_getfile` returned a valid file with one reference that we own.
        Ok(file) => Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) }),
        Err(e) => {
            // SAFETY: The file was not created, so nothing else owns `ptr`.
            drop(unsafe { T::Ptr::from_foreign(ptr) });
            Err(e)
        }
    }
}

/// The `file_operations` of files created by [`create_file`] for `T`.
struct AnonInodeVTable<T: AnonInodeOps>(PhantomData<T>);

impl<T: AnonInodeOps> AnonInodeVTable<T> {
    /// # Safety
    ///
    /// `file` must be a file created by [`create_file::<T>`] that is being released.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: The release call of a file owns the private data, which `create_file` set to
        // a pointer from `T::Ptr::into_foreign`.
        let data = unsafe { T::Ptr::from_foreign((*file).private_data.cast()) };
        // SAFETY: The file is valid for the duration of this call and there is no active
        // fdget_pos region on it.
        let file = unsafe { File::from_raw_file(file) };
        T::release(data, file);
        0
    }

    /// # Safety
    ///
    /// `file` must be a file created by [`create_file::<T>`].
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: Ioctl calls can borrow the private data of the file until release.
        let data = unsafe { T::Ptr::borrow((*file).private_data.cast()) };
        // SAFETY: The file is valid for the duration of this call and there is no active
        // fdget_pos region on it.
        let file = unsafe { File::from_raw_file(file) };
        match T::ioctl(data, file, cmd, arg) {
            Ok(ret) => ret as c_long,
            Err(err) => err.to_errno() as c_long,
        }
    }

    const VTABLE: bindings::file_operations = bindings::file_operations {
        release: Some(Self::release),
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        owner: this_module::<T::OwnerModule>().as_ptr(),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::file_operations {
        &Self::VTABLE
    }
}
