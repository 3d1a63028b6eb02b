// SPDX-License-Identifier: GPL-2.0

//! The vfio-pci live update file handler, in Rust (`CONFIG_VFIO_PCI_LIVEUPDATE_RUST`).
//!
//! A VMM preserves the cdev file of a passthrough device (`/dev/vfio/devices/vfioN`, bound to
//! an iommufd) in a live update session next to its guest's memory; after the kexec it
//! retrieves a new cdev file for the same PCI function, binds it to a new iommufd, maps the
//! retrieved guest memory and goes on. This is phase 1 of upstream's posted "vfio/pci: Base
//! Live Update support for VFIO" (v5): the handover is "vfio-pci-v1", byte for byte
//! (`include/linux/kho/abi/vfio_pci.h`: the physical address of a preserved page that starts
//! with the packed `{u32 domain; u16 bdf}`), and the device is quiesced and reset at the
//! reboot: DMA in flight, interrupts and the IOMMU state are not preserved.
//!
//! It registers through [`kernel::liveupdate::Registration`], so it works under the C LUO and
//! the Rust LUO. Where it differs from the posted C handler:
//! - The device is held (`EBUSY` on opening it through its cdev or group) from `preserve` to
//!   `unpreserve` in the outgoing kernel. In the next kernel it is not held before it is
//!   retrieved: Linux 7.3 has no PCI live update core to know the incoming devices early.
//! - `can_finish` refuses only a retrieved file that userspace still holds without having
//!   bound it to an iommufd. A device that userspace never retrieved (LUO retrieves it to
//!   finish it) or whose retrieve failed does not keep its session from finishing; the posted
//!   handler refuses both, and such a session could never be finished.
//! - A failed `freeze` leaves the devices frozen before it frozen (no `unfreeze`, as upstream):
//!   their files get `EIO` until the device is closed.
//!
//! See `Documentation/core-api/liveupdate-rust.rst`.

use kernel::{
    fs::File,
    kho::{
        Handover,
        HandoverPage,
        PreservedPage, //
    },
    liveupdate::{
        FileHandler,
        Registration,
        RetrieveStatus, //
    },
    prelude::*,
    sync::aref::ARef,
    vfio, //
};

module! {
    type: VfioPciLuo,
    name: "vfio_pci_luo_rs",
    authors: ["The LUO Rust team"],
    description: "vfio-pci live update file handler (vfio-pci-v1), in Rust",
    license: "GPL",
}

/// The "vfio-pci-v1" handover format (`include/linux/kho/abi/vfio_pci.h`).
mod abi {
    use kernel::prelude::*;

    /// The compatible string of the handover.
    pub(super) const COMPATIBLE: &CStr = c"vfio-pci-v1";
    /// `sizeof(struct vfio_pci_core_device_ser)`: packed, no padding.
    pub(super) const SER_SIZE: usize = 6;

    /// `struct vfio_pci_core_device_ser`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) struct DeviceSer {
        /// PCI domain.
        pub(super) domain: u32,
        /// Bus, device and function (`pci_dev_id`).
        pub(super) bdf: u16,
    }

    impl DeviceSer {
        /// The bytes, as the C handler's packed struct holds them (little-endian on x86_64).
        pub(super) fn to_bytes(self) -> [u8; SER_SIZE] {
            let mut b = [0u8; SER_SIZE];
            b[0..4].copy_from_slice(&self.domain.to_le_bytes());
            b[4..6].copy_from_slice(&self.bdf.to_le_bytes());
            b
        }

        /// Reads the struct from the start of `page`.
        pub(super) fn read(page: &[u8]) -> Result<Self> {
            let b = page.get(..SER_SIZE).ok_or(EINVAL)?;
            Ok(Self {
                domain: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                bdf: u16::from_le_bytes([b[4], b[5]]),
            })
        }
    }

    const _: () = assert!(SER_SIZE == core::mem::size_of::<kernel::bindings::vfio_pci_core_device_ser>());
}

use abi::DeviceSer;

/// The handler; it has no state of its own.
struct VfioPciHandler;

/// An outgoing device's state: the preserved page holding its [`DeviceSer`].
struct State {
    ser: PreservedPage,
}

impl FileHandler for VfioPciHandler {
    type State = State;

    fn compatible(&self) -> &CStr {
        abi::COMPATIBLE
    }

    /// A vfio-pci device file opened through the cdev and bound to an iommufd; not a device of
    /// a variant driver, not an Intel display device, not a virtual function.
    fn can_preserve(&self, file: &File) -> bool {
        let Some(dev) = vfio::Device::from_file(file) else {
            return false;
        };
        let Some(pdev) = dev.pci() else {
            return false;
        };
        dev.is_liveupdate_capable() && !pdev.is_virtfn() && dev.cdev_bound()
    }

    fn preserve(&self, file: &File) -> Result<(u64, State)> {
        let dev = vfio::Device::from_file(file).ok_or(EINVAL)?;
        let pdev = dev.pci().ok_or(EINVAL)?;
        let ser = DeviceSer {
            domain: pdev.domain_nr(),
            bdf: pdev.dev_id(),
        };
        let mut page = PreservedPage::new()?;
        page.bytes_mut()[..abi::SER_SIZE].copy_from_slice(&ser.to_bytes());
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::corrupt_ser(&mut page);
        dev.set_liveupdate_busy(true);
        Ok((page.phys(), State { ser: page }))
    }

    fn unpreserve(&self, file: &File, _data: u64, state: State) {
        if let Some(dev) = vfio::Device::from_file(file) {
            dev.set_liveupdate_busy(false);
        }
        drop(state.ser);
    }

    fn freeze(&self, file: &File, _data: &mut u64, _state: &mut State) -> Result {
        vfio::Device::from_file(file)
            .ok_or(EINVAL)?
            .liveupdate_freeze()?;
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::corrupt_handle(_data, &_state.ser);
        Ok(())
    }

    fn retrieve(&self, data: Handover) -> Result<ARef<File>> {
        // The page is freed when this returns: the device is all it names.
        let page = HandoverPage::restore(data)?;
        let ser = DeviceSer::read(page.bytes())?;
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
        if !dev.is_liveupdate_capable() {
            return Err(ENODEV);
        }
        dev.open_cdev()
    }

    fn can_finish(&self, file: Option<&File>, _data: Handover, status: RetrieveStatus) -> bool {
        match (status, file) {
            // LUO holds one reference to the retrieved file: anything beyond it is userspace's,
            // which must have taken the device (bound it to an iommufd) first.
            (RetrieveStatus::Retrieved, Some(f)) if f.count() > 1 => {
                vfio::Device::from_file(f).is_some_and(|d| d.cdev_bound())
            }
            _ => true,
        }
    }

    fn finish(&self, _file: Option<&File>, data: Handover, status: RetrieveStatus) {
        // A retrieve, failed or not, freed the page already.
        if status == RetrieveStatus::NotRetrieved {
            if let Err(e) = HandoverPage::restore(data) {
                pr_warn!("vfio-pci: not freeing a corrupt preserved device: {:?}\n", e);
            }
        }
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
    _registration: Option<Registration<VfioPciHandler>>,
}

impl kernel::Module for VfioPciLuo {
    fn init(module: &'static ThisModule) -> Result<Self> {
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::init()?;
        let registration = match Registration::new(module, VfioPciHandler) {
            Ok(r) => Some(r),
            // LUO is disabled on this boot.
            Err(e) if e == EOPNOTSUPP => None,
            Err(e) => {
                pr_err!("vfio-pci: could not register the live update handler: {:?}\n", e);
                return Err(e);
            }
        };
        Ok(Self {
            _registration: registration,
        })
    }
}

/// Corrupting the handover of the next preserved device on purpose
/// (`CONFIG_LIVEUPDATE_RUST_TEST`), to test how the next kernel's `retrieve` refuses it.
///
/// `/dev/vfio_luo_rs_test`, ioctl `_IO('V', 1)` `CORRUPT(mode)`: the next device preserved
/// gets 1 a domain that does not exist (0x7fff), 2 a function that does not exist (bdf
/// 0xffff), 3 (at freeze) a handle that names no preserved page, 4 (at freeze) a handle of 0.
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
mod test {
    use super::*;
    use kernel::{
        ioctl::_IO,
        miscdevice::{
            MiscDevice,
            MiscDeviceOptions,
            MiscDeviceRegistration, //
        },
        sync::atomic::{
            Atomic,
            Relaxed, //
        },
    };

    const CORRUPT: u32 = _IO(b'V' as u32, 1);
    /// The mode for the next preserved device (0: none).
    static NEXT: Atomic<u32> = Atomic::new(0);
    /// Marker written after the struct in the page of a device whose handle freeze corrupts.
    const HANDLE_MARK: usize = 8;

    pub(super) fn corrupt_ser(page: &mut PreservedPage) {
        let mode = NEXT.xchg(0, Relaxed);
        let b = page.bytes_mut();
        match mode {
            1 => b[0..4].copy_from_slice(&0x7fffu32.to_le_bytes()),
            2 => b[4..6].copy_from_slice(&0xffffu16.to_le_bytes()),
            3 | 4 => b[HANDLE_MARK] = mode as u8,
            _ => return,
        }
        pr_info!("vfio-pci: corrupting the handover of a device (mode {})\n", mode);
    }

    pub(super) fn corrupt_handle(data: &mut u64, page: &PreservedPage) {
        match page.bytes()[HANDLE_MARK] {
            // Inside the preserved page but not its start: no preserved page starts there.
            3 => *data = page.phys() + 0x800,
            4 => *data = 0,
            _ => {}
        }
    }

    struct TestDevice;

    #[vtable]
    impl MiscDevice for TestDevice {
        type Ptr = ();

        fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
            Ok(())
        }

        fn ioctl((): (), _file: &File, cmd: u32, arg: usize) -> Result<isize> {
            if cmd != CORRUPT {
                return Err(ENOTTY);
            }
            let mode = u32::try_from(arg).map_err(|_| EINVAL)?;
            if !(1..=4).contains(&mode) {
                return Err(EINVAL);
            }
            NEXT.store(mode, Relaxed);
            Ok(0)
        }
    }

    pub(super) fn init() -> Result {
        let dev = KBox::pin_init(
            MiscDeviceRegistration::<TestDevice>::register(MiscDeviceOptions {
                name: c"vfio_luo_rs_test",
            }),
            GFP_KERNEL,
        )?;
        core::mem::forget(dev);
        Ok(())
    }
}

#[kunit_tests(luo_rs_vfio)]
mod tests {
    use super::abi::*;

    #[test]
    fn ser_layout_is_upstreams() {
        let s = DeviceSer {
            domain: 0x1234_5678,
            bdf: 0x9abc,
        };
        assert_eq!(s.to_bytes(), [0x78, 0x56, 0x34, 0x12, 0xbc, 0x9a]);
        assert_eq!(DeviceSer::read(&s.to_bytes()), Ok(s));
        assert!(DeviceSer::read(&[0u8; 5]).is_err());
    }
}
