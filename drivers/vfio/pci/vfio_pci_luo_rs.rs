// SPDX-License-Identifier: GPL-2.0

//! The vfio-pci live update file handler, in Rust (`CONFIG_VFIO_PCI_LIVEUPDATE_RUST`).
//!
//! A VMM preserves the cdev file of a passthrough device (`/dev/vfio/devices/vfioN`, bound to
//! an iommufd) in a live update session next to its guest's memory; after the kexec it
//! retrieves a new cdev file for the same PCI function, binds it to a new iommufd, maps the
//! retrieved guest memory and goes on. This is phase 1 of upstream's posted "vfio/pci: Base
//! Live Update support for VFIO" (v5), and the device is quiesced and reset at the reboot: DMA
//! in flight, interrupts and the IOMMU state are not preserved. The handover starts like the
//! posted "vfio-pci-v1" record (the physical address of a preserved page that starts with the
//! packed `{u32 domain; u16 bdf}`), but its semantics differ (see below), so it goes under a
//! private compatible string, "vfio-pci-rs-v1" (`include/linux/kho/abi/vfio_pci_rs.h`): a kernel
//! with the posted handler finds no handler for these files instead of misreading them.
//!
//! It registers through [`kernel::liveupdate::Registration`], so it works under the C LUO and
//! the Rust LUO. A preserved device is held: opening it through its cdev or group fails with
//! `EBUSY`, from `preserve` (or `unpreserve`) in the outgoing kernel, and in the next kernel
//! from the handler's registration at boot until its file is finished (a handler that does
//! not register holds nothing). Where it differs from the posted C handler:
//! - The next kernel learns which devices to hold from a list the handler publishes as a KHO
//!   subtree of its own ([`HELD_SUBTREE`]): Linux 7.3 has no PCI live update core ("pci-v1"),
//!   which the posted handler relies on for that. A kernel without the list (e.g. one with
//!   the posted handler) retrieves the devices all the same, but does not hold them.
//! - `can_finish` refuses only a retrieved file that is not bound to an iommufd (userspace can
//!   retrieve it again and bind it). A device that userspace never retrieved or whose
//!   retrieve failed does not keep its session from finishing; the posted handler refuses
//!   both, and such a session could never be finished.
//! - A failed `freeze` leaves the devices frozen before it frozen (no `unfreeze`, as upstream):
//!   their files get `EIO` until the device is closed.
//!
//! With `CONFIG_INTEL_IOMMU_LIVEUPDATE` a second handler, registered first, takes the same
//! files under "vfio-pci-rs-v2" when the module parameter `keep_running` is set: those devices
//! keep running through the kexec (not reset, bus mastering on, their VT-d translation handed
//! over for the next kernel to adopt; `vfio_pci_core_liveupdate_freeze_running`).
//!
//! See `Documentation/core-api/liveupdate-vfio-rust.rst`.

use kernel::{
    fs::File,
    kho::{
        self,
        Handover,
        HandoverPage,
        IncomingPage,
        PreservedPage,
        Subtree, //
    },
    liveupdate::{
        self,
        FileHandler,
        Registration,
        RetrieveStatus, //
    },
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    vfio, //
};

module! {
    type: VfioPciLuo,
    name: "vfio_pci_luo_rs",
    authors: ["The LUO Rust team"],
    description: "vfio-pci live update file handler (vfio-pci-rs-v1, -v2), in Rust",
    license: "GPL",
    params: {
        keep_running: bool {
            default: false,
            description: "Keep preserved devices running through the kexec (vfio-pci-rs-v2)",
        },
    },
}

/// The "vfio-pci-rs-v1" handover format (`include/linux/kho/abi/vfio_pci_rs.h`).
mod abi {
    use kernel::{
        kho::bytes,
        pci,
        prelude::*, //
    };

    /// The compatible string of the handover: not upstream's "vfio-pci-v1", whose semantics
    /// differ (`VFIO_PCI_RS_LUO_FH_COMPATIBLE`).
    pub(super) const COMPATIBLE: &CStr = c"vfio-pci-rs-v1";
    /// The compatible string of a device kept running through the kexec: the same record, but
    /// the device is not reset, keeps bus mastering, and its IOMMU translation is handed over
    /// (`VFIO_PCI_RS_RUNNING_LUO_FH_COMPATIBLE`).
    #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
    pub(super) const RUNNING_COMPATIBLE: &CStr = c"vfio-pci-rs-v2";
    /// `sizeof(struct vfio_pci_rs_device_ser)`: packed, no padding.
    pub(super) const SER_SIZE: usize = 24;
    /// `VFIO_PCI_RS_SER_F_DSN`: the record holds a device serial number.
    const F_DSN: u16 = 1;

    /// `struct vfio_pci_rs_device_ser`: where a PCI function is, and which device it is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) struct DeviceSer {
        /// PCI domain.
        pub(super) domain: u32,
        /// Bus, device and function (`pci_dev_id`).
        pub(super) bdf: u16,
        /// Vendor ID.
        pub(super) vendor: u16,
        /// Device ID.
        pub(super) device: u16,
        /// Subsystem vendor ID.
        pub(super) subsystem_vendor: u16,
        /// Subsystem ID.
        pub(super) subsystem_device: u16,
        /// The PCI Express device serial number, if the device has one.
        pub(super) dsn: Option<u64>,
    }

    impl DeviceSer {
        /// The record of `pdev`, as it is now.
        pub(super) fn of(pdev: &pci::Device) -> Self {
            Self {
                domain: pdev.domain_nr(),
                bdf: pdev.dev_id(),
                vendor: pdev.vendor_id().as_raw(),
                device: pdev.device_id(),
                subsystem_vendor: pdev.subsystem_vendor_id(),
                subsystem_device: pdev.subsystem_device_id(),
                dsn: pdev.dsn(),
            }
        }

        /// Whether `other` names the same location (domain, bus, device and function).
        pub(super) fn same_place(&self, other: &Self) -> bool {
            self.domain == other.domain && self.bdf == other.bdf
        }

        /// Writes the record at the start of `b` (little-endian, as the packed C struct holds it
        /// on x86_64); `None` if `b` is too short.
        pub(super) fn write(self, b: &mut [u8]) -> Option<()> {
            let flags = if self.dsn.is_some() { F_DSN } else { 0 };
            bytes::put_le_u32(b, 0, self.domain)?;
            bytes::put_le_u16(b, 4, self.bdf)?;
            bytes::put_le_u16(b, 6, self.vendor)?;
            bytes::put_le_u16(b, 8, self.device)?;
            bytes::put_le_u16(b, 10, self.subsystem_vendor)?;
            bytes::put_le_u16(b, 12, self.subsystem_device)?;
            bytes::put_le_u16(b, 14, flags)?;
            bytes::put_le_u64(b, 16, self.dsn.unwrap_or(0))
        }

        /// Reads the record from the start of `b`: `EINVAL` if `b` is too short or a flag this
        /// kernel does not know is set.
        pub(super) fn read(b: &[u8]) -> Result<Self> {
            let flags = bytes::le_u16(b, 14).ok_or(EINVAL)?;
            if flags & !F_DSN != 0 {
                return Err(EINVAL);
            }
            let dsn = bytes::le_u64(b, 16).ok_or(EINVAL)?;
            Ok(Self {
                domain: bytes::le_u32(b, 0).ok_or(EINVAL)?,
                bdf: bytes::le_u16(b, 4).ok_or(EINVAL)?,
                vendor: bytes::le_u16(b, 6).ok_or(EINVAL)?,
                device: bytes::le_u16(b, 8).ok_or(EINVAL)?,
                subsystem_vendor: bytes::le_u16(b, 10).ok_or(EINVAL)?,
                subsystem_device: bytes::le_u16(b, 12).ok_or(EINVAL)?,
                dsn: (flags & F_DSN != 0).then_some(dsn),
            })
        }
    }

    const _: () =
        assert!(SER_SIZE == core::mem::size_of::<kernel::bindings::vfio_pci_rs_device_ser>());
    const _: () = assert!(F_DSN as u32 == kernel::bindings::VFIO_PCI_RS_SER_F_DSN);
}

use abi::DeviceSer;

/// The KHO subtree listing the devices preserved for the next kernel, so that it holds them
/// from boot (our own format, not upstream's; `struct vfio_pci_rs_held`): a page with a
/// little-endian `u32` count, four reserved bytes, then `count` entries of a device record
/// ([`DeviceSer`]) followed by the `u64` handle of the file that preserved it.
const HELD_SUBTREE: &CStr = vfio::LIVEUPDATE_HELD_SUBTREE.name();
/// Bytes of the list's header and of each entry.
const HELD_HDR: usize = 8;
const HELD_ENTRY: usize = abi::SER_SIZE + 8;
/// How many devices the list holds: at most this many can be preserved at once.
const HELD_MAX: usize = (PAGE_SIZE - HELD_HDR) / HELD_ENTRY;

const _: () = assert!(HELD_HDR == core::mem::size_of::<kernel::bindings::vfio_pci_rs_held>());
const _: () =
    assert!(HELD_ENTRY == core::mem::size_of::<kernel::bindings::vfio_pci_rs_held_entry>());

/// A device in the list of preserved devices: its record and its file's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    dev: DeviceSer,
    handle: u64,
}

impl Held {
    /// Reads entry `i` of a list page.
    fn read(page: &[u8], i: usize) -> Result<Self> {
        let off = HELD_HDR + i * HELD_ENTRY;
        let e = page.get(off..off + HELD_ENTRY).ok_or(EINVAL)?;
        Ok(Self {
            dev: DeviceSer::read(e)?,
            handle: kernel::kho::bytes::le_u64(e, abi::SER_SIZE).ok_or(EINVAL)?,
        })
    }

    /// Writes entry `i` of a list page.
    fn write(self, page: &mut [u8], i: usize) -> Option<()> {
        let off = HELD_HDR + i * HELD_ENTRY;
        let e = page.get_mut(off..off + HELD_ENTRY)?;
        self.dev.write(e)?;
        kernel::kho::bytes::put_le_u64(e, abi::SER_SIZE, self.handle)
    }
}

/// The devices preserved for the next kernel, as published in [`HELD_SUBTREE`].
///
/// # Invariants
///
/// The subtree's page holds `devs.len()` (at most [`HELD_MAX`]) and the entries of `devs`, in
/// order, in the format of [`HELD_SUBTREE`].
struct Outgoing {
    /// `None` if the subtree could not be published (the next kernel then holds nothing).
    subtree: Option<Subtree>,
    devs: KVec<Held>,
}

impl Outgoing {
    fn add(&mut self, dev: Held) -> Result {
        if self.devs.len() >= HELD_MAX {
            return Err(ENOSPC);
        }
        self.devs.push(dev, GFP_KERNEL)?;
        self.publish();
        Ok(())
    }

    /// Removes the entry of the file whose handle is `handle`.
    fn remove(&mut self, handle: u64) {
        self.devs.retain(|d| d.handle != handle);
        self.publish();
    }

    fn publish(&mut self) {
        let Some(subtree) = self.subtree.as_mut() else {
            return;
        };
        let page = subtree.page_mut().bytes_mut();
        // INVARIANT: The count and every entry are rewritten from `devs` (at most `HELD_MAX`,
        // so every entry fits in the page).
        let n = self.devs.len().min(HELD_MAX);
        let _ = kernel::kho::bytes::put_le_u32(&mut page[..], 0, n as u32);
        for (i, d) in self.devs.iter().take(n).enumerate() {
            let _ = d.write(&mut page[..], i);
        }
    }
}

/// The devices the previous kernel preserved, held from the handler's registration until their
/// files are finished: opening them through vfio fails with `EBUSY` meanwhile.
///
/// # Invariants
///
/// Every entry of `held` is held in vfio core at its location ([`vfio::hold_incoming_pci`]), no
/// two entries share a location, and every location held through `Holds` is an entry's: each is
/// released when its entry is removed, and all of them when `Holds` is dropped.
struct Holds {
    /// The devices still held, with the handles of their files.
    held: KVec<Held>,
    /// Files of the list not finished yet: once none is left, every device still held (one
    /// whose file's handle was corrupt, say) is released too.
    left: usize,
}

impl Holds {
    /// Nothing held.
    const fn none() -> Self {
        Self {
            held: KVec::new(),
            left: 0,
        }
    }

    /// Reads the previous kernel's list, if any, and holds its devices.
    ///
    /// Called once the handler is registered, before userspace runs: a handler that could not
    /// register (live update off, no memory) holds nothing, and what it holds is released when
    /// it is dropped.
    fn hold_listed() -> Self {
        let mut holds = Self::none();
        let page = match IncomingPage::retrieve_subtree(&vfio::LIVEUPDATE_HELD_SUBTREE) {
            Ok((page, _)) => page,
            Err(e) => {
                if e != ENOENT {
                    pr_warn!("vfio-pci: no list of preserved devices: {:?}\n", e);
                }
                return holds;
            }
        };
        let n = kernel::kho::bytes::le_u32(&page[..], 0).map_or(0, |n| n as usize);
        if n > HELD_MAX {
            pr_warn!("vfio-pci: ignoring a list of {} preserved devices\n", n);
            return holds;
        }
        for i in 0..n {
            let Ok(h) = Held::read(&page[..], i) else {
                continue;
            };
            if holds.held.iter().any(|o| o.dev.same_place(&h.dev)) {
                continue;
            }
            if holds.held.reserve(1, GFP_KERNEL).is_err()
                || vfio::hold_incoming_pci(h.dev.domain, h.dev.bdf).is_err()
            {
                continue;
            }
            // INVARIANT: Held just above, at a location no other entry has; the capacity was
            // reserved, so the push cannot fail and leave the location held without an entry.
            if holds.held.push_within_capacity(h).is_err() {
                vfio::release_incoming_pci(h.dev.domain, h.dev.bdf);
            }
        }
        holds.left = n;
        holds
    }

    /// A file of the previous kernel's was finished: `handle` is its handle, `dev` its device if
    /// known.
    ///
    /// The list names each device's file by its handle, so the device is released even when
    /// the file's record is corrupt or its retrieve failed.
    fn finished(&mut self, handle: u64, dev: Option<DeviceSer>) {
        let named = self.held.iter().any(|h| h.handle == handle);
        // INVARIANT: Each entry removed is released.
        self.held.retain(|h| {
            let done = if named {
                h.handle == handle
            } else {
                dev.is_some_and(|d| h.dev.same_place(&d))
            };
            if done {
                vfio::release_incoming_pci(h.dev.domain, h.dev.bdf);
            }
            !done
        });
        self.left = self.left.saturating_sub(1);
        if self.left == 0 {
            self.release_all();
        }
    }

    fn release_all(&mut self) {
        // INVARIANT: Each entry removed is released.
        for h in self.held.drain_all() {
            vfio::release_incoming_pci(h.dev.domain, h.dev.bdf);
        }
    }
}

impl Drop for Holds {
    fn drop(&mut self) {
        self.release_all();
    }
}

/// What the handlers of both formats share: the devices preserved for the next kernel, and
/// those the previous kernel preserved.
///
/// Locks: `outgoing` and `incoming` are leaves (only the vfio core's xarray is touched under
/// `incoming`), taken inside LUO's callbacks and at registration, never both at once.
struct Shared {
    /// The devices preserved for the next kernel.
    outgoing: Pin<KBox<Mutex<Outgoing>>>,
    /// The devices the previous kernel preserved, still held (none until registered).
    incoming: Pin<KBox<Mutex<Holds>>>,
}

impl Shared {
    fn new() -> Result<Arc<Self>> {
        let subtree = if kho::is_enabled() {
            PreservedPage::new()
                .and_then(|p| Subtree::add(HELD_SUBTREE, p, PAGE_SIZE))
                .inspect_err(|e| {
                    pr_warn!("vfio-pci: cannot publish the preserved devices: {:?}\n", e)
                })
                .ok()
        } else {
            None
        };
        Ok(Arc::new(
            Self {
                outgoing: KBox::pin_init(
                    new_mutex!(Outgoing {
                        subtree,
                        devs: KVec::new(),
                    }),
                    GFP_KERNEL,
                )?,
                incoming: KBox::pin_init(new_mutex!(Holds::none()), GFP_KERNEL)?,
            },
            GFP_KERNEL,
        )?)
    }
}

/// The handler of one format: "vfio-pci-rs-v1" (the device is reset at freeze) or, with
/// `running`, "vfio-pci-rs-v2" (the device keeps running through the kexec).
struct VfioPciHandler {
    shared: Arc<Shared>,
    /// Whether this handler keeps its devices running.
    running: bool,
}

/// An outgoing device's state: the preserved page holding its [`DeviceSer`].
struct State {
    ser: PreservedPage,
}

impl VfioPciHandler {
    /// The file of the device `ser` names, as `retrieve` describes.
    fn open_preserved(&self, ser: &DeviceSer) -> Result<ARef<File>> {
        let Some(dev) = vfio::Device::find_pci(ser.domain, ser.bdf) else {
            pr_warn!(
                "vfio-pci: no vfio device {:04x}:{:02x}:{:02x}.{} to retrieve (bind it to vfio-pci first)\n",
                ser.domain,
                ser.bdf >> 8,
                (ser.bdf >> 3) & 0x1f,
                ser.bdf & 7
            );
            return Err(ENODEV);
        };
        let pdev = dev.pci().ok_or(ENODEV)?;
        let now = DeviceSer::of(pdev);
        if now != *ser {
            // After a bus renumbering another device can sit where the preserved one was.
            pr_warn!(
                "vfio-pci: {:04x}:{:02x}:{:02x}.{} is not the device preserved there: {:04x}:{:04x} (subsystem {:04x}:{:04x}, serial {:x}), preserved {:04x}:{:04x} (subsystem {:04x}:{:04x}, serial {:x})\n",
                ser.domain,
                ser.bdf >> 8,
                (ser.bdf >> 3) & 0x1f,
                ser.bdf & 7,
                now.vendor,
                now.device,
                now.subsystem_vendor,
                now.subsystem_device,
                now.dsn.unwrap_or(0),
                ser.vendor,
                ser.device,
                ser.subsystem_vendor,
                ser.subsystem_device,
                ser.dsn.unwrap_or(0)
            );
            return Err(ENODEV);
        }
        if !dev.is_liveupdate_capable() {
            return Err(ENODEV);
        }
        let file = dev.open_cdev()?;
        if self.running {
            dev.liveupdate_retrieved_running();
        }
        Ok(file)
    }
}

impl FileHandler for VfioPciHandler {
    type State = State;

    fn compatible(&self) -> &CStr {
        #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
        if self.running {
            return abi::RUNNING_COMPATIBLE;
        }
        abi::COMPATIBLE
    }

    /// A vfio-pci device file opened through the cdev and itself bound to an iommufd (not
    /// another cdev file of a device that some other file bound); not a device of a variant
    /// driver, not an Intel display device, not a virtual function.
    fn can_preserve(&self, file: &File) -> bool {
        let Some(dev) = vfio::Device::from_file(file) else {
            return false;
        };
        let Some(pdev) = dev.pci() else {
            return false;
        };
        // With `keep_running`, the handler that keeps devices running is registered first and
        // takes every device it can; without it, that handler takes none.
        if self.running && !module_parameters::keep_running.value() {
            return false;
        }
        dev.is_liveupdate_capable() && !pdev.is_virtfn() && vfio::file_cdev_bound(file)
    }

    fn preserve(&self, file: &File) -> Result<(u64, State)> {
        let dev = vfio::Device::from_file(file).ok_or(EINVAL)?;
        let pdev = dev.pci().ok_or(EINVAL)?;
        let ser = DeviceSer::of(pdev);
        let mut page = PreservedPage::new()?;
        ser.write(page.bytes_mut()).ok_or(EINVAL)?;
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::corrupt_ser(&mut page);
        self.shared.outgoing.lock().add(Held {
            dev: ser,
            handle: page.phys(),
        })?;
        dev.set_liveupdate_busy(true);
        Ok((page.phys(), State { ser: page }))
    }

    fn unpreserve(&self, file: &File, _data: u64, state: State) {
        if let Some(dev) = vfio::Device::from_file(file) {
            if self.running {
                dev.liveupdate_unkeep();
            }
            dev.set_liveupdate_busy(false);
        }
        self.shared.outgoing.lock().remove(state.ser.phys());
        drop(state.ser);
    }

    fn freeze(&self, file: &File, _data: &mut u64, _state: &mut State) -> Result {
        let dev = vfio::Device::from_file(file).ok_or(EINVAL)?;
        if self.running {
            dev.liveupdate_freeze_running()?;
        } else {
            dev.liveupdate_freeze()?;
        }
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::corrupt_handle(_data, &_state.ser);
        Ok(())
    }

    /// A failed reboot: a device kept running is stopped at a later kexec again, and its
    /// IOMMU translation is no longer handed over; it stays frozen, as with the other format.
    fn unfreeze(&self, file: &File, _data: u64, _state: &mut State) {
        if self.running {
            if let Some(dev) = vfio::Device::from_file(file) {
                dev.liveupdate_unkeep();
            }
        }
    }

    /// Opens the function the record names if a vfio-pci device drives it and it is the same
    /// device (IDs and serial number), else fails with `ENODEV`.
    ///
    /// A retrieve that fails is final (LUO keeps its error), so a device kept running that it
    /// does not hand over is stopped, as `finish` stops one never retrieved; if the record
    /// cannot be read, every adopted translation is ended, since which device it named is
    /// unknown.
    fn retrieve(&self, data: Handover) -> Result<ARef<File>> {
        // The page is freed once read: the device is all it names.
        let ser = HandoverPage::restore(data).and_then(|page| DeviceSer::read(page.bytes()));
        let ser = match ser {
            Ok(ser) => ser,
            Err(e) => {
                if self.running {
                    liveupdate::end_adopted_translations();
                }
                return Err(e);
            }
        };
        let r = self.open_preserved(&ser);
        if r.is_err() && self.running {
            vfio::liveupdate_stop_kept_pci(ser.domain, ser.bdf);
        }
        r
    }

    /// A retrieved file must itself be bound to an iommufd: then vfio lets no other file bind
    /// the device, and releasing the hold gives it to no one else. One that is not can be
    /// retrieved again (the same file) and bound. Files never retrieved, or whose retrieve
    /// failed, do not keep their session from finishing.
    fn can_finish(&self, file: Option<&File>, _data: Handover, status: RetrieveStatus) -> bool {
        match (status, file) {
            (RetrieveStatus::Retrieved, Some(f)) => vfio::file_cdev_bound(f),
            _ => true,
        }
    }

    fn finish(&self, file: Option<&File>, data: Handover, status: RetrieveStatus) {
        let dev = match (status, file) {
            (RetrieveStatus::Retrieved, Some(f)) => vfio::Device::from_file(f)
                .and_then(|d| d.pci())
                .map(DeviceSer::of),
            // A retrieve, failed or not, freed the page already.
            (RetrieveStatus::NotRetrieved, _) => match HandoverPage::restore(data) {
                Ok(page) => DeviceSer::read(page.bytes()).ok(),
                Err(e) => {
                    pr_warn!(
                        "vfio-pci: not freeing a corrupt preserved device: {:?}\n",
                        e
                    );
                    // Which device it named is unknown: end every adopted translation.
                    if self.running {
                        liveupdate::end_adopted_translations();
                    }
                    None
                }
            },
            // A failed retrieve stopped its device already.
            _ => None,
        };
        // A device kept running that no process took: stop it before it is released.
        if self.running && status != RetrieveStatus::Retrieved {
            if let Some(d) = dev {
                vfio::liveupdate_stop_kept_pci(d.domain, d.bdf);
            }
        }
        self.shared.incoming.lock().finished(data.raw(), dev);
    }

    fn get_id(file: &File) -> usize {
        // One preservation per device, whichever file names it.
        match vfio::Device::from_file(file) {
            Some(d) => core::ptr::from_ref(d) as usize,
            None => file.as_ptr() as usize,
        }
    }
}

struct VfioPciLuo {
    /// The handler that keeps devices running: first, so that it takes the devices it can.
    #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
    _running: Option<Registration<VfioPciHandler>>,
    _registration: Option<Registration<VfioPciHandler>>,
    /// debugfs `liveupdate/test_vfio`, removed when the module goes.
    #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
    _test: Pin<KBox<kernel::debugfs::File<test::Control>>>,
}

/// Registers the handler of one format; `None` if LUO is disabled on this boot.
fn register(
    module: &'static ThisModule,
    shared: &Arc<Shared>,
    running: bool,
) -> Result<Option<Registration<VfioPciHandler>>> {
    let handler = VfioPciHandler {
        shared: shared.clone(),
        running,
    };
    match Registration::new(module, handler) {
        Ok(r) => Ok(Some(r)),
        // LUO is disabled on this boot.
        Err(e) if e == EOPNOTSUPP => Ok(None),
        Err(e) => {
            pr_err!(
                "vfio-pci: could not register the live update handler: {:?}\n",
                e
            );
            Err(e)
        }
    }
}

impl kernel::Module for VfioPciLuo {
    fn init(module: &'static ThisModule) -> Result<Self> {
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        let test = test::init()?;
        let shared = Shared::new()?;
        #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
        let running = register(module, &shared, true)?;
        let registration = register(module, &shared, false)?;
        // Only a registered handler holds the previous kernel's devices: one that is not (live
        // update off, no memory) would never finish their files to release them.
        if registration.is_some() {
            let holds = Holds::hold_listed();
            *shared.incoming.lock() = holds;
        }
        Ok(Self {
            #[cfg(CONFIG_INTEL_IOMMU_LIVEUPDATE)]
            _running: running,
            _registration: registration,
            #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
            _test: test,
        })
    }
}

/// Test controls (`CONFIG_LIVEUPDATE_RUST_TEST`): ioctls of debugfs `liveupdate/test_vfio`.
///
/// - `_IO('V', 1)` `CORRUPT(mode)` corrupts the handover of the next preserved device on
///   purpose, to test how the next kernel's `retrieve` refuses it: the device gets 1 a domain
///   that does not exist (0x7fff), 2 a function that does not exist (bdf 0xffff), 3 (at
///   freeze) a handle that names no preserved page, 4 (at freeze) a handle of 0, 5 another
///   device ID (its bits flipped): the function is there, but not the device.
/// - `_IOW('V', 2, struct { u32 when; u32 n; u64 w[4][2]; })` `DMA` arms up to four 64-bit
///   writes (`w[i]` = offset, value) to BAR 0 of the next device frozen to keep running, done
///   right after its freeze (`when` 1) or at the kexec after device shutdown (`when` 2), to
///   start a DMA at that point of the reboot ([`kernel::vfio::test_arm_bar0_writes`]).
/// - `_IO('V', 3)` `IOMMU_CORRUPT(mode)` corrupts the IOMMU's handover of the translation kept
///   for such devices ([`kernel::liveupdate::test_corrupt_iommu_handover`]; 0 disarms).
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
mod test {
    use super::*;
    use kernel::{
        debugfs,
        ioctl::{
            _IO,
            _IOW, //
        },
        sync::atomic::{
            Atomic,
            Relaxed, //
        },
        uaccess::{
            UserPtr,
            UserSlice, //
        },
        vfio::TestWrite,
    };

    const CORRUPT: u32 = _IO(b'V' as u32, 1);
    /// The argument of `DMA`: `u32 when, n; u64 w[4][2]`.
    const DMA_ARG: usize = 8 + 4 * 16;
    const DMA: u32 = _IOW::<[u8; DMA_ARG]>(b'V' as u32, 2);
    const IOMMU_CORRUPT: u32 = _IO(b'V' as u32, 3);
    /// The mode for the next preserved device (0: none).
    static NEXT: Atomic<u32> = Atomic::new(0);
    /// Marker written after the struct in the page of a device whose handle freeze corrupts.
    const HANDLE_MARK: usize = abi::SER_SIZE + 8;

    pub(super) fn corrupt_ser(page: &mut PreservedPage) {
        let mode = NEXT.xchg(0, Relaxed);
        let b = page.bytes_mut();
        match mode {
            1 => b[0..4].copy_from_slice(&0x7fffu32.to_le_bytes()),
            2 => b[4..6].copy_from_slice(&0xffffu16.to_le_bytes()),
            3 | 4 => b[HANDLE_MARK] = mode as u8,
            5 => {
                let device = u16::from_le_bytes([b[8], b[9]]) ^ 0xffff;
                b[8..10].copy_from_slice(&device.to_le_bytes());
            }
            _ => return,
        }
        pr_info!(
            "vfio-pci: corrupting the handover of a device (mode {})\n",
            mode
        );
    }

    pub(super) fn corrupt_handle(data: &mut u64, page: &PreservedPage) {
        match page.bytes()[HANDLE_MARK] {
            // Inside the preserved page but not its start: no preserved page starts there.
            3 => *data = page.phys() + 0x800,
            4 => *data = 0,
            _ => {}
        }
    }

    /// debugfs `liveupdate/test_vfio`.
    pub(super) struct Control;

    impl debugfs::Ioctl for Control {
        fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
            match cmd {
                CORRUPT => {
                    let mode = u32::try_from(arg).map_err(|_| EINVAL)?;
                    if !(1..=5).contains(&mode) {
                        return Err(EINVAL);
                    }
                    NEXT.store(mode, Relaxed);
                }
                DMA => arm_dma(arg)?,
                IOMMU_CORRUPT => {
                    let mode = u32::try_from(arg).map_err(|_| EINVAL)?;
                    liveupdate::test_corrupt_iommu_handover(mode)?;
                }
                _ => return Err(ENOTTY),
            }
            Ok(0)
        }
    }

    /// `DMA`: reads the caller's argument at `arg` and arms its writes.
    fn arm_dma(arg: usize) -> Result {
        let mut b = [0u8; DMA_ARG];
        UserSlice::new(UserPtr::from_addr(arg), DMA_ARG)
            .reader()
            .read_slice(&mut b)?;
        let u32_at = |off| {
            kho::bytes::get(&b, off)
                .map(u32::from_ne_bytes)
                .ok_or(EINVAL)
        };
        let u64_at = |off| kho::bytes::ne_u64(&b, off).ok_or(EINVAL);
        let at_kexec = match u32_at(0)? {
            1 => false,
            2 => true,
            _ => return Err(EINVAL),
        };
        let n = usize::try_from(u32_at(4)?)?;
        let mut w = [TestWrite::default(); 4];
        if !(1..=w.len()).contains(&n) {
            return Err(EINVAL);
        }
        let mut off = 8;
        for t in w.iter_mut() {
            *t = TestWrite {
                offset: u64_at(off)?,
                value: u64_at(off + 8)?,
            };
            off += 16;
        }
        kernel::vfio::test_arm_bar0_writes(at_kexec, w.get(..n).ok_or(EINVAL)?)
    }

    /// Makes debugfs `liveupdate/test_vfio`, which lasts as long as the returned file.
    pub(super) fn init() -> Result<Pin<KBox<debugfs::File<Control>>>> {
        let dir = kernel::liveupdate::debugfs_dir();
        KBox::pin_init(dir.ioctl_file(c"test_vfio", Control), GFP_KERNEL)
    }
}

#[kunit_tests(luo_rs_vfio)]
mod tests {
    use super::abi::*;

    #[test]
    fn ser_layout_extends_upstreams() {
        let s = DeviceSer {
            domain: 0x1234_5678,
            bdf: 0x9abc,
            vendor: 0x1af4,
            device: 0x1100,
            subsystem_vendor: 0x8086,
            subsystem_device: 0x0001,
            dsn: Some(0x0102_0304_0506_0708),
        };
        let mut b = [0u8; SER_SIZE];
        assert!(s.write(&mut b).is_some());
        // The posted series' "vfio-pci-v1" record first, then the device's identity.
        assert_eq!(b[..6], [0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a]);
        assert_eq!(
            b[6..16],
            [0xf4, 0x1a, 0x00, 0x11, 0x86, 0x80, 0x01, 0x00, 0x01, 0x00]
        );
        assert_eq!(b[16..], [0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
        assert_eq!(DeviceSer::read(&b), Ok(s));
        assert!(DeviceSer::read(&b[..SER_SIZE - 1]).is_err());
    }

    #[test]
    fn ser_without_dsn_and_unknown_flags() {
        let s = DeviceSer {
            domain: 0,
            bdf: 0x0010,
            vendor: 0x1234,
            device: 0x11e8,
            subsystem_vendor: 0x1af4,
            subsystem_device: 0x1100,
            dsn: None,
        };
        let mut b = [0xffu8; SER_SIZE];
        assert!(s.write(&mut b).is_some());
        assert_eq!(b[14..], [0u8; 10]);
        assert_eq!(DeviceSer::read(&b), Ok(s));
        // A flag this kernel does not know: the record is refused.
        b[14] = 2;
        assert!(DeviceSer::read(&b).is_err());
    }
}
