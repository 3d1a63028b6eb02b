// SPDX-License-Identifier: GPL-2.0

//! VFIO devices, for the live update file handlers that preserve them.
//!
//! What a handler needs from vfio core and vfio-pci: the device behind a device file, whether
//! it may be preserved, holding it so that nobody else opens it, quiescing it at the reboot, and
//! in the next kernel finding it again and opening a new cdev file for userspace.
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)

use crate::{
    bindings,
    device,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::File,
    pci,
    prelude::*,
    sync::aref::ARef,
    types::Opaque, //
};
use core::{
    ffi::c_void,
    ptr::NonNull, //
};

/// A registered vfio device (`struct vfio_device`).
///
/// Only references exist; they are borrowed from something that keeps the device registered:
/// a vfio device file open on it ([`Device::from_file`]) or a [`Registered`] reference.
///
/// # Invariants
///
/// `self.0` is a `struct vfio_device` that stays registered for the lifetime of every
/// reference to `Device`.
#[repr(transparent)]
pub struct Device(Opaque<bindings::vfio_device>);

// SAFETY: The vfio core synchronizes every operation this type exposes (`dev_set->lock`, the
// registration reference count), so a `Device` can be used from any thread.
unsafe impl Send for Device {}
// SAFETY: See above: all methods take `&self` and are safe to call concurrently.
unsafe impl Sync for Device {}

impl Device {
    /// The device a vfio device file was opened on, or `None` if `file` is not one (a group
    /// file, any other file).
    pub fn from_file(file: &File) -> Option<&Device> {
        // SAFETY: `file` is a valid file; `vfio_device_from_file` reads its `f_op` and, for a
        // vfio device file, its private data.
        let raw = NonNull::new(unsafe { bindings::vfio_device_from_file(file.as_ptr()) })?;
        // SAFETY: A vfio device file holds a registration reference on its device until it is
        // released, and `file` is borrowed for the returned lifetime; `Device` is a transparent
        // wrapper of `struct vfio_device`.
        Some(unsafe { &*raw.as_ptr().cast::<Device>() })
    }

    fn as_raw(&self) -> *mut bindings::vfio_device {
        self.0.get()
    }

    /// The device that the vfio device drives (for vfio-pci, the PCI function).
    pub fn parent(&self) -> &device::Device {
        // SAFETY: `dev` is set before the device is registered and never changes; the driver
        // that registered the vfio device stays bound to `dev`, which is therefore alive, for as
        // long as the vfio device is registered (the type invariant).
        unsafe { device::Device::from_raw((*self.as_raw()).dev) }
    }

    /// The PCI function of a vfio-pci device, or `None` for a device of another bus.
    pub fn pci(&self) -> Option<&pci::Device> {
        <&pci::Device>::try_from(self.parent()).ok()
    }

    /// Whether a live update may preserve the device: it is driven by vfio-pci itself (not a
    /// variant driver, whose device state would be lost), is not an Intel display device, and
    /// is not being unbound or removed.
    pub fn is_liveupdate_capable(&self) -> bool {
        // SAFETY: The device is registered (type invariant); the function reads its ops.
        unsafe { bindings::vfio_pci_liveupdate_capable(self.as_raw()) }
    }

    /// Holds (`true`) or releases the device for a live update: while held, opening it through
    /// its cdev or its group fails with `EBUSY`; files already open are not affected.
    pub fn set_liveupdate_busy(&self, busy: bool) {
        // SAFETY: The device is registered (type invariant); the function takes
        // `dev_set->lock`.
        unsafe { bindings::vfio_device_set_liveupdate_busy(self.as_raw(), busy) }
    }

    /// Quiesces the device for the reboot into the next kernel (see
    /// `vfio_pci_core_liveupdate_freeze`): `EBUSY` if it is being unbound or removed, `EINVAL`
    /// if it has an interrupt enabled or is not in D0, the reset's error if its reset failed;
    /// else it is reset and every access through its open files fails with `EIO` (a fault on a
    /// BAR mapping with `SIGBUS`) until it is closed. Only for devices that are
    /// [capable](Device::is_liveupdate_capable) when preserved; `EINVAL` for a device that is
    /// not vfio-pci's own.
    pub fn liveupdate_freeze(&self) -> Result {
        // Not `is_liveupdate_capable`, which is false for a device being removed: that one gets
        // `EBUSY` from the freeze itself.
        // SAFETY: The device is registered (type invariant); the function reads its ops.
        if !unsafe { bindings::vfio_pci_is_vfio_pci(self.as_raw()) } {
            return Err(EINVAL);
        }
        // SAFETY: The device is vfio-pci's own (just checked), so it is embedded in a
        // `struct vfio_pci_core_device` as its `vdev` member; it is registered (type invariant).
        let vdev =
            unsafe { crate::container_of!(self.as_raw(), bindings::vfio_pci_core_device, vdev) };
        // SAFETY: `vdev` is a registered vfio-pci device; the function takes its locks.
        to_result(unsafe { bindings::vfio_pci_core_liveupdate_freeze(vdev) })
    }

    /// The `struct vfio_pci_core_device` of a vfio-pci device; `EINVAL` for a device that is
    /// not vfio-pci's own.
    fn pci_core(&self) -> Result<*mut bindings::vfio_pci_core_device> {
        // SAFETY: The device is registered (type invariant); the function reads its ops.
        if !unsafe { bindings::vfio_pci_is_vfio_pci(self.as_raw()) } {
            return Err(EINVAL);
        }
        // SAFETY: The device is vfio-pci's own (just checked), so it is embedded in a
        // `struct vfio_pci_core_device` as its `vdev` member.
        Ok(unsafe { crate::container_of!(self.as_raw(), bindings::vfio_pci_core_device, vdev) })
    }

    /// Freezes the device for the reboot into the next kernel, but keeps it running (see
    /// `vfio_pci_core_liveupdate_freeze_running`): it is not reset, it keeps bus mastering
    /// through the kexec, and its IOMMU translation is handed over for the next kernel to
    /// adopt. Every access through its open files fails with `EIO` from here on. `EBUSY` if it
    /// is being unbound or removed or is frozen already, `EINVAL` if it has an interrupt
    /// enabled or is not in D0 (or is not vfio-pci's own), `EOPNOTSUPP` if its IOMMU cannot
    /// keep its translation.
    pub fn liveupdate_freeze_running(&self) -> Result {
        let vdev = self.pci_core()?;
        // SAFETY: `vdev` is a registered vfio-pci device; the function takes its locks.
        to_result(unsafe { bindings::vfio_pci_core_liveupdate_freeze_running(vdev) })
    }

    /// Undoes what [`Device::liveupdate_freeze_running`] did for the next kernel, after a
    /// failed reboot: the device stays frozen, but a later kexec stops it and hands over no
    /// IOMMU translation. Does nothing for a device that is not vfio-pci's own.
    pub fn liveupdate_unkeep(&self) {
        if let Ok(vdev) = self.pci_core() {
            // SAFETY: `vdev` is a registered vfio-pci device; the function takes its locks.
            unsafe { bindings::vfio_pci_core_liveupdate_unkeep(vdev) }
        }
    }

    /// For a handler retrieving a device that the previous kernel kept running: if this kernel
    /// adopted its IOMMU translation, the next open (the retriever's) neither resets it nor
    /// clears its bus mastering (`vfio_pci_core_liveupdate_retrieved_running`). Any other
    /// opener would end the adopted translation and reset it. Does nothing for a device that is
    /// not vfio-pci's own.
    pub fn liveupdate_retrieved_running(&self) {
        if let Ok(vdev) = self.pci_core() {
            // SAFETY: `vdev` is a registered vfio-pci device; the function takes its locks.
            unsafe { bindings::vfio_pci_core_liveupdate_retrieved_running(vdev) }
        }
    }

    /// Finds the registered vfio device of the PCI function `bdf` (as [`pci::Device::dev_id`]
    /// gives it) in PCI domain `domain`, if a vfio driver drives it.
    pub fn find_pci(domain: u32, bdf: u16) -> Option<Registered> {
        let key = PciKey { domain, bdf };
        // SAFETY: `match_pci` only reads `key` through the pointer, during the call.
        let raw = unsafe {
            bindings::vfio_find_device(core::ptr::from_ref(&key).cast::<c_void>(), Some(match_pci))
        };
        // INVARIANT: `vfio_find_device` returned the device with a registration reference,
        // which the `Registered` now owns.
        NonNull::new(raw).map(Registered)
    }
}

/// Whether `file` is a vfio device file opened through its device's cdev and bound to an iommufd
/// (`VFIO_DEVICE_BIND_IOMMUFD`): `file` itself, whatever other files of the device are. A bound
/// file stays bound until it is released.
pub fn file_cdev_bound(file: &File) -> bool {
    // SAFETY: `file` is a valid file; the function reads its private data only once it has
    // checked that it is a vfio device file.
    unsafe { bindings::vfio_file_cdev_bound(file.as_ptr()) }
}

/// What [`Device::find_pci`] looks for.
struct PciKey {
    domain: u32,
    bdf: u16,
}

/// `device_match_t` of [`Device::find_pci`].
///
/// # Safety
///
/// `dev` is a valid device and `data` points to a [`PciKey`].
unsafe extern "C" fn match_pci(dev: *mut bindings::device, data: *const c_void) -> c_int {
    // SAFETY: By the function's safety requirements.
    let (dev, key) = unsafe { (device::Device::from_raw(dev), &*data.cast::<PciKey>()) };
    match <&pci::Device>::try_from(dev) {
        Ok(p) => c_int::from(p.domain_nr() == key.domain && p.dev_id() == key.bdf),
        Err(_) => 0,
    }
}

/// A registration reference on a vfio device: the device stays registered (its driver bound)
/// until it is dropped.
///
/// # Invariants
///
/// `self.0` is a registered `struct vfio_device` on which `self` owns a registration reference.
pub struct Registered(NonNull<bindings::vfio_device>);

// SAFETY: A registration reference may be dropped from any thread.
unsafe impl Send for Registered {}
// SAFETY: Shared references only give a `&Device`, which is `Sync`.
unsafe impl Sync for Registered {}

impl core::ops::Deref for Registered {
    type Target = Device;

    fn deref(&self) -> &Device {
        // SAFETY: The device is registered while `self` exists (type invariant); `Device` is a
        // transparent wrapper of `struct vfio_device`.
        unsafe { &*self.0.as_ptr().cast::<Device>() }
    }
}

impl Registered {
    /// Opens a new cdev file for the device, as opening `/dev/vfio/devices/vfioN` would (not
    /// bound to an iommufd yet), even while the device is held for a live update.
    pub fn open_cdev(&self) -> Result<ARef<File>> {
        // SAFETY: `self` holds a registration reference on the device (type invariant).
        let f =
            from_err_ptr(unsafe { bindings::vfio_device_liveupdate_cdev_open(self.0.as_ptr()) })?;
        let f = NonNull::new(f).ok_or(ENOMEM)?;
        // SAFETY: The function returned a new file with one reference, which we own; `File` is
        // a transparent wrapper of `struct file`.
        Ok(unsafe { ARef::from_raw(f.cast::<File>()) })
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        // SAFETY: `self` owns a registration reference on the device (type invariant).
        unsafe { bindings::vfio_device_put_registration(self.0.as_ptr()) };
    }
}

/// Holds the PCI function `bdf` in domain `domain` for the previous kernel's live update
/// sessions: until [`release_incoming_pci`], its vfio device cannot be opened through its cdev
/// or group (`EBUSY`), whether or not a vfio driver is bound to it yet. [`Registered::open_cdev`]
/// still opens it, for the process that retrieves it.
pub fn hold_incoming_pci(domain: u32, bdf: u16) -> Result {
    // SAFETY: The function has no preconditions.
    to_result(unsafe { bindings::vfio_liveupdate_hold_incoming_pci(domain, bdf) })
}

/// Releases a function held by [`hold_incoming_pci`]; releasing one that is not held does
/// nothing.
pub fn release_incoming_pci(domain: u32, bdf: u16) {
    // SAFETY: The function has no preconditions.
    unsafe { bindings::vfio_liveupdate_release_incoming_pci(domain, bdf) }
}

/// The KHO subtree in which the vfio-pci live update handler lists the devices it preserved,
/// so that the next kernel holds them from boot ([`hold_incoming_pci`]):
/// `VFIO_PCI_RS_HELD_SUBTREE` of `include/linux/kho/abi/vfio_pci_rs.h`.
#[cfg(CONFIG_KEXEC_HANDOVER)]
// SAFETY: The name is reserved for that list. The only C user, vfio-pci's early boot reader
// (`vfio_pci_liveupdate_early_init`), reads the page in place and never restores or frees it,
// and Rust code can only claim the previous kernel's page under it through this declaration.
pub const LIVEUPDATE_HELD_SUBTREE: crate::kho::SubtreeName =
    unsafe { crate::kho::SubtreeName::new(c"vfio-pci-rs-held-v1") };

/// Stops the PCI function `bdf` in PCI `domain`, kept running by the previous kernel, whose file
/// was finished without being retrieved (`vfio_pci_liveupdate_stop_kept`): its adopted IOMMU
/// translation ends and its bus mastering is cleared. Nothing happens if there is no such
/// function.
pub fn liveupdate_stop_kept_pci(domain: u32, bdf: u16) {
    // SAFETY: No precondition: the function looks the device up and holds a reference on it
    // while it works.
    unsafe { bindings::vfio_pci_liveupdate_stop_kept(domain, bdf) }
}

/// A 64-bit write to BAR 0 of a device, for [`test_arm_bar0_writes`]: `value` at byte `offset`.
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
#[derive(Clone, Copy, Default)]
pub struct TestWrite {
    /// The offset in BAR 0: a multiple of 8, below 1 MiB.
    pub offset: u64,
    /// The value written.
    pub value: u64,
}

/// Test hook (`CONFIG_LIVEUPDATE_RUST_TEST`, `vfio_pci_core_liveupdate_test_arm`): `writes` (one
/// to four) are done to BAR 0 of the next device frozen to keep running, if it is memory that
/// holds them all, right after its freeze, or at the kexec, after device shutdown, if
/// `at_kexec`. A test starts a DMA that way at a chosen point of the reboot, when no process
/// runs any more. Arming again replaces what was armed; `EINVAL` for a bad count or offset.
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
pub fn test_arm_bar0_writes(at_kexec: bool, writes: &[TestWrite]) -> Result {
    let mut w = [bindings::vfio_pci_lu_test_write { off: 0, val: 0 }; 4];
    if writes.is_empty() || writes.len() > w.len() {
        return Err(EINVAL);
    }
    for (c, t) in w.iter_mut().zip(writes) {
        c.off = t.offset;
        c.val = t.value;
    }
    // SAFETY: `w` holds `writes.len()` (at most 4) initialized entries, which the function only
    // reads, before it returns.
    to_result(unsafe {
        bindings::vfio_pci_core_liveupdate_test_arm(at_kexec, w.as_ptr(), writes.len() as u32)
    })
}
