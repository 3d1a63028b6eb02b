// SPDX-License-Identifier: GPL-2.0

//! Reader/writer semaphores.
//!
//! A [`RwSemaphore`] protects data that many tasks read at the same time and few write: any
//! number of readers, or one writer. Both sides may sleep while they hold it.
//!
//! C header: [`include/linux/rwsem.h`](srctree/include/linux/rwsem.h)

use crate::{
    bindings,
    prelude::*,
    str::CStr,
    sync::LockClassKey,
    types::{
        NotThreadSafe,
        Opaque, //
    },
};
use core::{
    cell::UnsafeCell,
    marker::PhantomPinned,
    ops::{
        Deref,
        DerefMut, //
    },
};

/// Creates a [`RwSemaphore`] initialiser with the given name and a newly-created lock class.
///
/// It uses the name if one is given, otherwise it generates one based on the file name and line
/// number.
#[macro_export]
macro_rules! new_rwsem {
    ($inner:expr $(, $name:literal)? $(,)?) => {
        $crate::sync::rwsem::RwSemaphore::new(
            $inner, $crate::optional_name!($($name)?), $crate::static_lock_class!())
    };
}
pub use new_rwsem;

/// A reader/writer semaphore protecting a `T`.
///
/// Exposes the kernel's `struct rw_semaphore`. [`RwSemaphore::read`] gives shared access and may
/// run alongside other readers; [`RwSemaphore::write`] gives exclusive access. Both block
/// (uninterruptibly) until the semaphore is available.
///
/// # Examples
///
/// ```
/// use kernel::{new_rwsem, sync::rwsem::RwSemaphore};
///
/// let sem = KBox::pin_init(new_rwsem!(0u32, "example"), GFP_KERNEL)?;
/// *sem.write() += 1;
/// assert_eq!(*sem.read(), 1);
/// # Ok::<(), Error>(())
/// ```
///
/// Readers see what the last writer left, through any number of read guards in turn:
///
/// ```
/// use kernel::{new_rwsem, sync::rwsem::RwSemaphore};
///
/// fn total(sem: &RwSemaphore<KVec<u32>>) -> u32 {
///     sem.read().iter().sum()
/// }
///
/// let sem = KBox::pin_init(new_rwsem!(KVec::new()), GFP_KERNEL)?;
/// assert_eq!(total(&sem), 0);
/// {
///     let mut v = sem.write();
///     v.push(2, GFP_KERNEL)?;
///     v.push(3, GFP_KERNEL)?;
/// }
/// assert_eq!(total(&sem), 5);
/// assert_eq!(sem.read().len(), 2);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `inner` is a `struct rw_semaphore` initialised by `__init_rwsem`, pinned for the life of
/// `self`. `data` is only accessed through the guards, which hold the semaphore in the matching
/// mode.
#[pin_data]
pub struct RwSemaphore<T: ?Sized> {
    #[pin]
    inner: Opaque<bindings::rw_semaphore>,
    #[pin]
    _pin: PhantomPinned,
    data: UnsafeCell<T>,
}

// SAFETY: The semaphore can be moved to another task together with its data if the data can.
unsafe impl<T: ?Sized + Send> Send for RwSemaphore<T> {}

// SAFETY: Readers on several tasks share `&T` (hence `T: Sync`); a writer gets `&mut T`, possibly
// on another task than the one that made it (hence `T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for RwSemaphore<T> {}

impl<T> RwSemaphore<T> {
    /// Constructs a new semaphore initialiser. Use [`new_rwsem!`] rather than this.
    pub fn new(t: T, name: &'static CStr, key: Pin<&'static LockClassKey>) -> impl PinInit<Self> {
        pin_init!(Self {
            data: UnsafeCell::new(t),
            _pin: PhantomPinned,
            // INVARIANT: `__init_rwsem` initialises the semaphore in place.
            // SAFETY: `slot` is valid for writes and pinned; `name` and `key` are static.
            inner <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_rwsem(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }
}

impl<T: ?Sized> RwSemaphore<T> {
    /// Takes the semaphore for reading; sleeps until no writer holds it.
    pub fn read(&self) -> ReadGuard<'_, T> {
        // SAFETY: `inner` is initialised by the type invariants.
        unsafe { bindings::down_read(self.inner.get()) };
        // INVARIANT: The semaphore is held for reading until the guard is dropped.
        ReadGuard {
            sem: self,
            _not_send: NotThreadSafe,
        }
    }

    /// Takes the semaphore for writing; sleeps until nobody else holds it.
    pub fn write(&self) -> WriteGuard<'_, T> {
        // SAFETY: `inner` is initialised by the type invariants.
        unsafe { bindings::down_write(self.inner.get()) };
        // INVARIANT: The semaphore is held for writing until the guard is dropped.
        WriteGuard {
            sem: self,
            _not_send: NotThreadSafe,
        }
    }
}

/// Shared access to the data of a [`RwSemaphore`], held for reading.
///
/// # Invariants
///
/// `sem` is held for reading by the current task while the guard exists.
#[must_use = "the semaphore is released immediately when the guard is unused"]
pub struct ReadGuard<'a, T: ?Sized> {
    sem: &'a RwSemaphore<T>,
    _not_send: NotThreadSafe,
}

impl<T: ?Sized> Deref for ReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants the semaphore is held for reading, so no writer has a
        // mutable reference to the data.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the current task holds the semaphore for reading.
        unsafe { bindings::up_read(self.sem.inner.get()) };
    }
}

/// Exclusive access to the data of a [`RwSemaphore`], held for writing.
///
/// # Invariants
///
/// `sem` is held for writing by the current task while the guard exists.
#[must_use = "the semaphore is released immediately when the guard is unused"]
pub struct WriteGuard<'a, T: ?Sized> {
    sem: &'a RwSemaphore<T>,
    _not_send: NotThreadSafe,
}

impl<T: ?Sized> Deref for WriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants the semaphore is held for writing: nobody else accesses
        // the data.
        unsafe { &*self.sem.data.get() }
    }
}

impl<T: ?Sized> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: As in `deref`, and the guard is borrowed mutably.
        unsafe { &mut *self.sem.data.get() }
    }
}

impl<T: ?Sized> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the current task holds the semaphore for writing.
        unsafe { bindings::up_write(self.sem.inner.get()) };
    }
}
