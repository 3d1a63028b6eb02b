// SPDX-License-Identifier: GPL-2.0
//! A passthrough device the way a VMM drives one: a QEMU `edu` test device
//! (1234:11e8) bound to vfio-pci, opened through its vfio cdev
//! (`/dev/vfio/devices/vfioN`), bound to an iommufd whose IOAS maps guest
//! RAM, and made to DMA through guest RAM. With `mapping.rs`, the only
//! `unsafe` code of this program: the vfio and iommufd ioctls and the BAR0
//! MMIO accesses.
//!
//! The steps are those of `tools/testing/selftests/liveupdate/luo_rs_vfio.h`
//! (the C helpers of the vfio suite), in Rust.
//!
//! An edu device has a 1 MiB BAR0: an ID register, a liveness register that
//! returns the complement of what was written, and a DMA engine that copies
//! between bus addresses (IOVAs here, with a 28-bit DMA mask) and a 4 KiB
//! buffer of its own.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use rustix::ioctl::{ioctl, opcode, Opcode, Setter, Updater};
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// PCI vendor and device ID of QEMU's edu device.
pub const EDU_VENDOR: u16 = 0x1234;
/// See [`EDU_VENDOR`].
pub const EDU_DEVICE: u16 = 0x11e8;
/// What the edu ID register reads.
const EDU_ID: u32 = 0x0100_00ed;
const EDU_REG_ID: usize = 0x00;
const EDU_REG_LIVE: usize = 0x04;
const EDU_REG_DMA_SRC: usize = 0x80;
const EDU_REG_DMA_DST: usize = 0x88;
const EDU_REG_DMA_CNT: usize = 0x90;
const EDU_REG_DMA_CMD: usize = 0x98;
const EDU_DMA_RUN: u64 = 0x1;
const EDU_DMA_TO_RAM: u64 = 0x2;
/// The device-side address of the edu DMA buffer.
const EDU_BUF: u64 = 0x40000;
/// The longest edu DMA: QEMU 7.2 aborts on a transfer that ends exactly at
/// the end of the device's 4 KiB buffer.
pub const EDU_DMA_MAX: u64 = 4095;
/// The edu DMA mask is 28 bits: every IOVA it uses is below this.
pub const EDU_IOVA_LIMIT: u64 = 1 << 28;
const EDU_DMA_TIMEOUT: Duration = Duration::from_secs(10);

/// `PCI_COMMAND` in config space, and its bits.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 0x2;
const PCI_COMMAND_MASTER: u16 = 0x4;

// ioctl numbers and structs of <linux/vfio.h> and <linux/iommufd.h>; both
// use type ';', no size encoded (_IO).
const VFIO_DEVICE_GET_REGION_INFO: Opcode = opcode::none(b';', 100 + 8);
const VFIO_DEVICE_BIND_IOMMUFD: Opcode = opcode::none(b';', 100 + 18);
const VFIO_DEVICE_ATTACH_IOMMUFD_PT: Opcode = opcode::none(b';', 100 + 19);
const IOMMU_IOAS_ALLOC: Opcode = opcode::none(b';', 0x81);
const IOMMU_IOAS_MAP_FILE: Opcode = opcode::none(b';', 0x8f);

const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `struct vfio_device_bind_iommufd`.
#[repr(C)]
#[derive(Default)]
struct VfioDeviceBindIommufd {
    argsz: u32,
    flags: u32,
    iommufd: i32,
    out_devid: u32,
    token_uuid_ptr: u64,
}

/// `struct vfio_device_attach_iommufd_pt`.
#[repr(C)]
#[derive(Default)]
struct VfioDeviceAttachIommufdPt {
    argsz: u32,
    flags: u32,
    pt_id: u32,
    pasid: u32,
}

/// `struct vfio_region_info`.
#[repr(C)]
#[derive(Default)]
struct VfioRegionInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    cap_offset: u32,
    size: u64,
    offset: u64,
}

/// `struct iommu_ioas_alloc`.
#[repr(C)]
#[derive(Default)]
struct IommuIoasAlloc {
    size: u32,
    flags: u32,
    out_ioas_id: u32,
}

/// `struct iommu_ioas_map_file`.
#[repr(C)]
#[derive(Default)]
struct IommuIoasMapFile {
    size: u32,
    flags: u32,
    ioas_id: u32,
    fd: i32,
    start: u64,
    length: u64,
    iova: u64,
}

// The numbers and sizes as <linux/vfio.h> and <linux/iommufd.h> give them
// (x86_64; the kernel checks the sizes).
const _: () = assert!(VFIO_DEVICE_GET_REGION_INFO == 0x3b6c && VFIO_DEVICE_BIND_IOMMUFD == 0x3b76);
const _: () = assert!(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77);
const _: () = assert!(IOMMU_IOAS_ALLOC == 0x3b81 && IOMMU_IOAS_MAP_FILE == 0x3b8f);
const _: () = assert!(size_of::<VfioDeviceBindIommufd>() == 24);
const _: () = assert!(size_of::<VfioDeviceAttachIommufdPt>() == 16);
const _: () = assert!(size_of::<VfioRegionInfo>() == 32);
const _: () = assert!(size_of::<IommuIoasAlloc>() == 12);
const _: () = assert!(size_of::<IommuIoasMapFile>() == 40);

/// `argsz`/`size` of a uapi struct.
const fn argsz<T>() -> u32 {
    size_of::<T>() as u32
}

/// An ioctl that reads and writes `*arg`.
///
/// # Safety
///
/// `OP` must be an ioctl of `fd`'s driver whose argument is a `T`.
unsafe fn update<const OP: Opcode, T>(fd: BorrowedFd<'_>, arg: &mut T) -> io::Result<()> {
    // SAFETY: the caller vouches for the opcode and the argument type; `arg`
    // is a live, exclusive `T` for the duration of the call.
    unsafe { ioctl(fd, Updater::<OP, T>::new(arg)) }.map_err(io::Error::from)
}

type R<T = ()> = Result<T, String>;

// ---- sysfs ----

fn sysfs_dev(bdf: &str) -> PathBuf {
    Path::new("/sys/bus/pci/devices").join(bdf)
}

fn sysfs_read(path: &Path) -> R<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| format!("read {}: {e}", path.display()))
}

fn sysfs_write(path: &Path, val: &str) -> R {
    std::fs::write(path, val).map_err(|e| format!("write \"{val}\" to {}: {e}", path.display()))
}

/// The driver `bdf` is bound to, if any.
pub fn driver(bdf: &str) -> Option<String> {
    let target = std::fs::read_link(sysfs_dev(bdf).join("driver")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Check that `bdf` is an edu device.
pub fn check_edu(bdf: &str) -> R {
    let dir = sysfs_dev(bdf);
    if !dir.exists() {
        return Err(format!("{bdf}: no such PCI device (is this the VFIO demo's VM, LUO_VM_VFIO=1?)"));
    }
    let id = |f: &str| -> R<u16> {
        let v = sysfs_read(&dir.join(f))?;
        u16::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| format!("{bdf}: bad {f} {v:?}"))
    };
    let (v, d) = (id("vendor")?, id("device")?);
    if (v, d) != (EDU_VENDOR, EDU_DEVICE) {
        return Err(format!(
            "{bdf} is {v:04x}:{d:04x}, not an edu device ({EDU_VENDOR:04x}:{EDU_DEVICE:04x})"
        ));
    }
    Ok(())
}

/// Bind `bdf` to vfio-pci (driver_override, then drivers_probe), unless it
/// is bound to it already. Returns the driver it had before.
pub fn bind_vfio_pci(bdf: &str) -> R<Option<String>> {
    let before = driver(bdf);
    if before.as_deref() == Some("vfio-pci") {
        return Ok(before);
    }
    let dir = sysfs_dev(bdf);
    if before.is_some() {
        sysfs_write(&dir.join("driver/unbind"), bdf)?;
    }
    sysfs_write(&dir.join("driver_override"), "vfio-pci")?;
    sysfs_write(Path::new("/sys/bus/pci/drivers_probe"), bdf)?;
    match driver(bdf) {
        Some(d) if d == "vfio-pci" => Ok(before),
        d => Err(format!(
            "{bdf}: not bound to vfio-pci after drivers_probe (driver: {})",
            d.as_deref().unwrap_or("none")
        )),
    }
}

/// `/dev/vfio/devices/vfioN` of `bdf` (bound to vfio-pci).
pub fn cdev_path(bdf: &str) -> R<PathBuf> {
    let dir = sysfs_dev(bdf).join("vfio-dev");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with("vfio") {
            return Ok(Path::new("/dev/vfio/devices").join(name));
        }
    }
    Err(format!("{}: no vfioN entry", dir.display()))
}

/// Open `bdf`'s vfio cdev (an unbound device file).
pub fn open_cdev(bdf: &str) -> R<(File, PathBuf)> {
    let path = cdev_path(bdf)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("open {} ({bdf}): {e}", path.display()))?;
    Ok((f, path))
}

// ---- iommufd ----

/// An iommufd with one IOAS.
pub struct Iommufd {
    fd: OwnedFd,
    ioas: u32,
}

impl Iommufd {
    /// Open `/dev/iommu` and allocate an IOAS.
    pub fn open() -> R<Self> {
        let fd: OwnedFd = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/iommu")
            .map_err(|e| format!("open /dev/iommu: {e}"))?
            .into();
        let mut a = IommuIoasAlloc { size: argsz::<IommuIoasAlloc>(), ..Default::default() };
        // SAFETY: IOMMU_IOAS_ALLOC takes a struct iommu_ioas_alloc.
        unsafe { update::<IOMMU_IOAS_ALLOC, _>(fd.as_fd(), &mut a) }
            .map_err(|e| format!("IOMMU_IOAS_ALLOC: {e}"))?;
        Ok(Self { fd, ioas: a.out_ioas_id })
    }

    /// The IOAS id.
    pub fn ioas(&self) -> u32 {
        self.ioas
    }

    /// Map `len` bytes of `file` from offset 0 at `iova`, readable and
    /// writable by devices (IOMMU_IOAS_MAP_FILE: the IOAS pins the file's
    /// pages, not a process's mapping of them).
    pub fn map_file(&self, file: impl AsFd, len: u64, iova: u64) -> R {
        let mut m = IommuIoasMapFile {
            size: argsz::<IommuIoasMapFile>(),
            flags: IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE,
            ioas_id: self.ioas,
            fd: std::os::fd::AsRawFd::as_raw_fd(&file.as_fd()),
            start: 0,
            length: len,
            iova,
        };
        // SAFETY: IOMMU_IOAS_MAP_FILE takes a struct iommu_ioas_map_file;
        // `fd` stays open for the call (borrowed).
        unsafe { update::<IOMMU_IOAS_MAP_FILE, _>(self.fd.as_fd(), &mut m) }
            .map_err(|e| format!("IOMMU_IOAS_MAP_FILE of {len} bytes at IOVA {iova:#x}: {e}"))
    }
}

impl AsFd for Iommufd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

// ---- the device ----

/// BAR0 mapped from the device file, unmapped on drop.
struct Bar {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Bar {
    fn reg(&self, off: usize, width: usize) -> *mut c_void {
        assert!(off % width == 0 && off + width <= self.len, "BAR0 register {off:#x} out of range");
        // SAFETY: in bounds of the mapping (checked above).
        unsafe { self.ptr.as_ptr().byte_add(off) }
    }

    fn rd32(&self, off: usize) -> u32 {
        // SAFETY: an aligned register inside the live mapping; MMIO needs a
        // volatile access (one 32-bit load).
        unsafe { self.reg(off, 4).cast::<u32>().read_volatile() }
    }

    fn wr32(&self, off: usize, v: u32) {
        // SAFETY: as in rd32.
        unsafe { self.reg(off, 4).cast::<u32>().write_volatile(v) }
    }

    fn rd64(&self, off: usize) -> u64 {
        // SAFETY: as in rd32 (one 64-bit load).
        unsafe { self.reg(off, 8).cast::<u64>().read_volatile() }
    }

    fn wr64(&self, off: usize, v: u64) {
        // SAFETY: as in rd32.
        unsafe { self.reg(off, 8).cast::<u64>().write_volatile(v) }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: mapped by Edu::bind with this length; no pointer into it
        // outlives `self`.
        let _ = unsafe { munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// An edu device file bound to an iommufd and attached to its IOAS, with
/// BAR0 mapped.
pub struct Edu {
    bdf: String,
    file: File,
    cfg_off: u64,
    bar: Bar,
}

fn region_info(file: &File, index: u32) -> io::Result<VfioRegionInfo> {
    let mut ri = VfioRegionInfo { argsz: argsz::<VfioRegionInfo>(), index, ..Default::default() };
    // SAFETY: VFIO_DEVICE_GET_REGION_INFO takes a struct vfio_region_info
    // (argsz covers no capability chain).
    unsafe { update::<VFIO_DEVICE_GET_REGION_INFO, _>(file.as_fd(), &mut ri) }?;
    Ok(ri)
}

impl Edu {
    /// Bind `file` (a vfio cdev file of `bdf`, not bound yet) to `iommufd`,
    /// attach it to its IOAS, and map BAR0.
    pub fn bind(bdf: &str, file: File, iommufd: &Iommufd) -> R<Self> {
        let mut b = VfioDeviceBindIommufd {
            argsz: argsz::<VfioDeviceBindIommufd>(),
            iommufd: std::os::fd::AsRawFd::as_raw_fd(&iommufd.as_fd()),
            ..Default::default()
        };
        // SAFETY: VFIO_DEVICE_BIND_IOMMUFD takes a struct
        // vfio_device_bind_iommufd (no token: flags 0).
        unsafe { update::<VFIO_DEVICE_BIND_IOMMUFD, _>(file.as_fd(), &mut b) }
            .map_err(|e| format!("{bdf}: VFIO_DEVICE_BIND_IOMMUFD: {e}"))?;
        let mut at = VfioDeviceAttachIommufdPt {
            argsz: argsz::<VfioDeviceAttachIommufdPt>(),
            pt_id: iommufd.ioas(),
            ..Default::default()
        };
        // SAFETY: VFIO_DEVICE_ATTACH_IOMMUFD_PT takes a struct
        // vfio_device_attach_iommufd_pt.
        unsafe { update::<VFIO_DEVICE_ATTACH_IOMMUFD_PT, _>(file.as_fd(), &mut at) }
            .map_err(|e| format!("{bdf}: VFIO_DEVICE_ATTACH_IOMMUFD_PT {}: {e}", iommufd.ioas()))?;
        let cfg = region_info(&file, VFIO_PCI_CONFIG_REGION_INDEX)
            .map_err(|e| format!("{bdf}: VFIO_DEVICE_GET_REGION_INFO (config): {e}"))?;
        let bar = region_info(&file, VFIO_PCI_BAR0_REGION_INDEX)
            .map_err(|e| format!("{bdf}: VFIO_DEVICE_GET_REGION_INFO (BAR0): {e}"))?;
        if bar.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 || bar.size < EDU_BUF {
            return Err(format!(
                "{bdf}: BAR0 flags {:#x} size {:#x}: not an mmap-able edu BAR",
                bar.flags, bar.size
            ));
        }
        let len = usize::try_from(bar.size).map_err(|_| format!("{bdf}: BAR0 of {:#x} bytes", bar.size))?;
        // SAFETY: a new shared mapping of the device's BAR0 region at an
        // address the kernel picks; it aliases nothing Rust knows about.
        let ptr = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                file.as_fd(),
                bar.offset,
            )
        }
        .map_err(|e| format!("{bdf}: mmap of BAR0: {e}"))?;
        let ptr = NonNull::new(ptr).ok_or_else(|| format!("{bdf}: mmap of BAR0 returned NULL"))?;
        Ok(Self { bdf: bdf.to_string(), file, cfg_off: cfg.offset, bar: Bar { ptr, len } })
    }

    /// The device's PCI address.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// Set `bits` in PCI_COMMAND through the config region.
    fn set_command(&self, bits: u16) -> R {
        let at = self.cfg_off + PCI_COMMAND;
        let read = || -> R<u16> {
            let mut b = [0u8; 2];
            self.file
                .read_exact_at(&mut b, at)
                .map_err(|e| format!("{}: config read of PCI_COMMAND: {e}", self.bdf))?;
            Ok(u16::from_le_bytes(b))
        };
        let cmd = read()?;
        if cmd & bits == bits {
            return Ok(());
        }
        self.file
            .write_all_at(&(cmd | bits).to_le_bytes(), at)
            .map_err(|e| format!("{}: config write of PCI_COMMAND: {e}", self.bdf))?;
        let cmd = read()?;
        if cmd & bits != bits {
            return Err(format!("{}: PCI_COMMAND {cmd:#x} lacks {bits:#x} after writing it", self.bdf));
        }
        Ok(())
    }

    /// Memory decoding on, then the ID register and the liveness register
    /// answer as an edu's do.
    pub fn check_alive(&self, nonce: u32) -> R {
        self.set_command(PCI_COMMAND_MEMORY)?;
        let id = self.bar.rd32(EDU_REG_ID);
        if id != EDU_ID {
            return Err(format!("{}: ID register {id:#x}, want {EDU_ID:#x}", self.bdf));
        }
        self.bar.wr32(EDU_REG_LIVE, nonce);
        let got = self.bar.rd32(EDU_REG_LIVE);
        if got != !nonce {
            return Err(format!(
                "{}: liveness register {got:#x} after writing {nonce:#x}, want {:#x}",
                self.bdf, !nonce
            ));
        }
        Ok(())
    }

    /// Start one DMA of `cnt` bytes; `to_ram`: device buffer to RAM, else
    /// RAM to the device buffer. edu runs it 100 ms after the command.
    fn start(&self, src: u64, dst: u64, cnt: u64, to_ram: bool) {
        self.bar.wr64(EDU_REG_DMA_SRC, src);
        self.bar.wr64(EDU_REG_DMA_DST, dst);
        self.bar.wr64(EDU_REG_DMA_CNT, cnt);
        self.bar.wr64(EDU_REG_DMA_CMD, EDU_DMA_RUN | if to_ram { EDU_DMA_TO_RAM } else { 0 });
    }

    /// Whether a DMA is still running (started, not yet done).
    pub fn dma_running(&self) -> bool {
        self.bar.rd64(EDU_REG_DMA_CMD) & EDU_DMA_RUN != 0
    }

    /// Wait for the DMA running (if any) to end.
    pub fn wait_dma(&self) -> R {
        let t = Instant::now();
        while self.dma_running() {
            if t.elapsed() >= EDU_DMA_TIMEOUT {
                return Err(format!("{}: DMA still running after {} ms", self.bdf, t.elapsed().as_millis()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// One DMA of `cnt` bytes, as [`Edu::start`], waited for.
    fn dma(&self, src: u64, dst: u64, cnt: u64, to_ram: bool) -> R {
        self.start(src, dst, cnt, to_ram);
        self.wait_dma().map_err(|e| format!("{e} (DMA {src:#x} -> {dst:#x}, {cnt} bytes)"))
    }

    /// Load `cnt` bytes from IOVA `from` into the device's buffer (bus
    /// mastering on first), for a later [`Edu::start_store`] or a DMA armed
    /// elsewhere.
    pub fn load(&self, from: u64, cnt: u64) -> R {
        if cnt == 0 || cnt > EDU_DMA_MAX || from + cnt > EDU_IOVA_LIMIT {
            return Err(format!("{}: bad DMA from {from:#x} of {cnt} bytes", self.bdf));
        }
        self.set_command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)?;
        self.dma(from, EDU_BUF, cnt, false)
    }

    /// Start a DMA of the first `cnt` bytes of the device's buffer to IOVA
    /// `to`, without waiting: it runs 100 ms from now.
    pub fn start_store(&self, to: u64, cnt: u64) -> R {
        if cnt == 0 || cnt > EDU_DMA_MAX || to + cnt > EDU_IOVA_LIMIT {
            return Err(format!("{}: bad DMA to {to:#x} of {cnt} bytes", self.bdf));
        }
        self.start(EDU_BUF, to, cnt, true);
        Ok(())
    }

    /// Copy `cnt` bytes from IOVA `from` to IOVA `to` through the device:
    /// RAM to its buffer, then its buffer to RAM (bus mastering on first).
    pub fn dma_round_trip(&self, from: u64, to: u64, cnt: u64) -> R {
        if cnt == 0 || cnt > EDU_DMA_MAX || from + cnt > EDU_IOVA_LIMIT || to + cnt > EDU_IOVA_LIMIT {
            return Err(format!("{}: bad DMA {from:#x} -> {to:#x} of {cnt} bytes", self.bdf));
        }
        self.set_command(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)?;
        self.dma(from, EDU_BUF, cnt, false)?;
        self.dma(EDU_BUF, to, cnt, true)
    }
}

/// The vfio-pci handler's test controls (`CONFIG_LIVEUPDATE_RUST_TEST`),
/// whose ioctl `DMA` arms vfio-pci's test hook that starts a DMA at the kexec.
pub const TEST_VFIO: &str = "/sys/kernel/debug/liveupdate/test_vfio";

/// The argument of `TEST_VFIO_DMA`: `when` 2 is "at the kexec"; `n` writes of
/// `w[i][1]` at offset `w[i][0]` of BAR0.
#[repr(C)]
struct TestVfioDma {
    when: u32,
    n: u32,
    w: [[u64; 2]; 4],
}

const TEST_VFIO_DMA: Opcode = opcode::write::<TestVfioDma>(b'V', 2);

/// Ask vfio-pci's test hook (through [`TEST_VFIO`]) to start a DMA of the
/// first `cnt` bytes of the buffer of the next device frozen to keep running
/// to IOVA `to`, at the kexec, after device shutdown: it runs 100 ms later,
/// while the next kernel boots.
pub fn arm_at_kexec(to: u64, cnt: u64) -> R {
    if cnt == 0 || cnt > EDU_DMA_MAX || to + cnt > EDU_IOVA_LIMIT {
        return Err(format!("bad DMA to {to:#x} of {cnt} bytes"));
    }
    let arg = TestVfioDma {
        when: 2,
        n: 4,
        w: [
            [EDU_REG_DMA_SRC as u64, EDU_BUF],
            [EDU_REG_DMA_DST as u64, to],
            [EDU_REG_DMA_CNT as u64, cnt],
            [EDU_REG_DMA_CMD as u64, EDU_DMA_RUN | EDU_DMA_TO_RAM],
        ],
    };
    let file =
        OpenOptions::new().read(true).write(true).open(TEST_VFIO).map_err(|e| format!("{TEST_VFIO}: {e}"))?;
    // SAFETY: `TEST_VFIO_DMA` is an ioctl of the test controls' file, whose
    // argument is a `TestVfioDma`, which the kernel only reads.
    unsafe { ioctl(&file, Setter::<TEST_VFIO_DMA, TestVfioDma>::new(arg)) }
        .map_err(|e| format!("{TEST_VFIO}: DMA: {}", io::Error::from(e)))
}

impl AsFd for Edu {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
