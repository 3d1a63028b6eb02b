// SPDX-License-Identifier: GPL-2.0
//! Which handover formats a kernel image can read: the check before a live
//! update's point of no return.
//!
//! Every kernel of this project carries a table of the handover formats it
//! accepts, an ELF note of vmlinux (`kernel/liveupdate/luo_formats.c`,
//! Documentation/core-api/liveupdate-formats.rst):
//!
//! - name `"LUO"`, type [`NOTE_FORMATS`] (1);
//! - descriptor, in the byte order of the ELF file: a `u32` version
//!   ([`FORMATS_VERSION`], 1), then NUL-terminated compatible strings up to
//!   the end of the descriptor, empty ones (padding) skipped.
//!
//! [`accepted_formats`] finds it in an x86 bzImage (the boot protocol's
//! payload is vmlinux as an ELF file, compressed with LZ4, gzip, xz, LZMA or
//! zstd) or in a raw vmlinux, through the ELF program headers (`PT_NOTE`),
//! else its section headers (`SHT_NOTE`). [`running_formats`] reads the
//! running kernel's own table from `/sys/kernel/notes`.
//!
//! The image is hostile input: every offset and size is checked, the
//! decompressed payload is capped at [`MAX_PAYLOAD`] bytes, and nothing
//! panics.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;

use rustix::fs::FileType;

/// The compatible string of the LUO core handover (`LUO_ABI_COMPATIBLE`).
pub const CORE_COMPATIBLE: &str = "luo-v5";
/// The compatible string of the Kexec HandOver root (`KHO_FDT_COMPATIBLE`).
pub const KHO_COMPATIBLE: &str = "kho-v4";
/// The memfd handler's compatible string, of the C and the Rust handler
/// alike (`MEMFD_LUO_FH_COMPATIBLE`).
pub const MEMFD_COMPATIBLE: &str = "memfd-v2";
/// The compatible string of a hugetlbfs memfd (`memfd_create(MFD_HUGETLB)`)
/// (`HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE`): the Rust memfd handler's own, in
/// kernels built with it and `CONFIG_HUGETLBFS`. The C memfd handler, and
/// upstream, have none: their LUO refuses a handover that holds one.
pub const HUGETLB_MEMFD_COMPATIBLE: &str = "hugetlb-memfd-rs-v1";
/// The vfio-pci handler's compatible string (`VFIO_PCI_RS_LUO_FH_COMPATIBLE`):
/// the Rust handler's own, not the posted series' "vfio-pci-v1".
pub const VFIO_PCI_COMPATIBLE: &str = "vfio-pci-rs-v1";
/// The compatible string of the vfio-pci handler that keeps devices
/// running through the kexec (`VFIO_PCI_RS_V2_LUO_FH_COMPATIBLE`): it takes
/// the devices of a kernel built with `CONFIG_INTEL_IOMMU_LIVEUPDATE` and
/// booted with `vfio_pci_luo_rs.keep_running=1`.
pub const VFIO_PCI_RUNNING_COMPATIBLE: &str = "vfio-pci-rs-v2";
/// The compatible string of the VT-d translation handed over for devices
/// kept running (`VTD_LU_RS_SUBTREE`). A next kernel without it turns
/// translation off at boot, and a device still doing DMA then writes to
/// the physical addresses its IOVAs name: a file of
/// [`VFIO_PCI_RUNNING_COMPATIBLE`] needs it too.
pub const VTD_LU_COMPATIBLE: &str = "vtd-lu-rs-v1";
/// The kernel command line parameter that keeps devices running.
const KEEP_RUNNING_PARAM: &str = "vfio_pci_luo_rs.keep_running=";

/// The name of the ELF note that holds the table.
pub const NOTE_NAME: &str = "LUO";
/// The type of the ELF note that holds the table.
pub const NOTE_FORMATS: u32 = 1;
/// The version of the table's layout that this module reads.
pub const FORMATS_VERSION: u32 = 1;

/// The largest decompressed payload (vmlinux) this module reads, in bytes.
pub const MAX_PAYLOAD: usize = 512 << 20;
/// The largest note segment or section this module reads, in bytes.
const MAX_NOTES: u64 = 1 << 20;
/// The most program or section headers read.
const MAX_HEADERS: u64 = 1 << 16;
/// The memory an xz or LZMA decoder may take for its dictionary, in KiB.
const MAX_DICT_KIB: u32 = 128 << 10;

/// `TMPFS_MAGIC` of `statfs(2)`: shmem files, memfds included.
const TMPFS_MAGIC: u32 = 0x0102_1994;
/// `HUGETLBFS_MAGIC` of `statfs(2)`: hugetlbfs files, `MFD_HUGETLB` memfds
/// included.
const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;

/// The table of handover formats of a kernel image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formats {
    /// The version of the table's layout ([`FORMATS_VERSION`]).
    pub version: u32,
    /// The compatible strings the kernel accepts, in the table's order.
    pub compatibles: Vec<String>,
}

impl Formats {
    /// Whether the kernel reads the handover format `compat`.
    pub fn accepts(&self, compat: &str) -> bool {
        self.compatibles.iter().any(|c| c == compat)
    }
}

/// Why an image could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImageError {
    /// Reading the file failed.
    Io(io::Error),
    /// Neither an x86 bzImage nor an ELF file.
    NotAKernel,
    /// A bzImage compressed with a method this module does not decode.
    UnsupportedCompression(String),
    /// The compressed payload does not decode.
    Decompress {
        /// The compression method.
        method: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The payload decompresses to more than [`MAX_PAYLOAD`] bytes.
    TooLarge,
    /// The image is inconsistent: truncated, bad headers, a bad table.
    Malformed(String),
    /// The image has a table, of a layout version this module does not read.
    UnknownVersion(u32),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the image: {e}"),
            Self::NotAKernel => f.write_str("not a kernel image (neither an x86 bzImage nor an ELF vmlinux)"),
            Self::UnsupportedCompression(m) => {
                write!(f, "the kernel is compressed with {m}, which cannot be read here")
            }
            Self::Decompress { method, detail } => {
                write!(f, "the {method} payload does not decompress: {detail}")
            }
            Self::TooLarge => write!(f, "the payload decompresses to more than {} MiB", MAX_PAYLOAD >> 20),
            Self::Malformed(what) => write!(f, "malformed image: {what}"),
            Self::UnknownVersion(v) => {
                write!(f, "the table of handover formats has version {v}, this tool reads version {FORMATS_VERSION}")
            }
        }
    }
}

impl std::error::Error for ImageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ImageError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn malformed(what: impl Into<String>) -> ImageError {
    ImageError::Malformed(what.into())
}

/// The table of handover formats of the kernel image `kernel` (an x86
/// bzImage or an ELF vmlinux), read with positional reads (its file offset
/// is left alone).
///
/// `Ok(Some)`: the table; `Ok(None)`: a kernel image without a table (one
/// that predates it: it cannot be verified); `Err`: unreadable, or not a
/// kernel image.
pub fn accepted_formats(kernel: BorrowedFd<'_>) -> Result<Option<Formats>, ImageError> {
    let file = File::from(kernel.try_clone_to_owned()?);
    let size = file.metadata()?.len();
    formats_of(&FileSource { file, size })
}

/// The table of the running kernel, from `/sys/kernel/notes`: `Ok(None)` if
/// it has none.
pub fn running_formats() -> Result<Option<Formats>, ImageError> {
    let mut notes = Vec::new();
    File::open("/sys/kernel/notes")?.take(MAX_NOTES).read_to_end(&mut notes)?;
    scan_notes(&notes, 4, cfg!(target_endian = "big")).and_then(found)
}

/// The compatible string of the handler that preserves `file` in our
/// kernels: [`MEMFD_COMPATIBLE`] for an unlinked shmem file (a memfd),
/// [`HUGETLB_MEMFD_COMPATIBLE`] for an unlinked hugetlbfs file (a memfd of
/// `MFD_HUGETLB`, of any huge page size; the kernel refuses one of a
/// hugetlbfs that userspace mounted, later), [`VFIO_PCI_COMPATIBLE`] for the
/// file of a vfio device bound to vfio-pci, opened through its cdev
/// (`/dev/vfio/devices/vfioN`) or its group (`VFIO_GROUP_GET_DEVICE_FD`);
/// `None` for anything else.
pub fn handler_compatible(file: BorrowedFd<'_>) -> Option<&'static str> {
    let st = rustix::fs::fstat(file).ok()?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind == FileType::RegularFile {
        let fs = rustix::fs::fstatfs(file).ok()?;
        // The magic is a 32-bit value; `f_type` is signed, and 32 bits
        // wide on some targets (where HUGETLBFS_MAGIC reads negative).
        let magic = fs.f_type as u32;
        return memfd_compatible(kind, magic, st.st_nlink == 0);
    }
    // A vfio device file, whichever way it was opened, names its device in
    // its fdinfo (vfio_device_show_fdinfo()); the handler takes vfio-pci's.
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).ok()?;
    let syspath = info.lines().find_map(|l| l.strip_prefix("vfio-device-syspath:"))?.trim();
    let driver = std::fs::read_link(format!("{syspath}/driver")).ok()?;
    if driver.file_name()? != "vfio-pci" {
        return None;
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let has_v2 = || running_formats().ok().flatten().is_some_and(|f| f.accepts(VFIO_PCI_RUNNING_COMPATIBLE));
    Some(vfio_compatible(keep_running(&cmdline) && has_v2()))
}

/// Whether `cmdline` (the running kernel's command line) sets
/// `vfio_pci_luo_rs.keep_running`. The module parameter has no sysfs file.
/// A Rust module parameter is set once: the first value [`kstrtobool`]
/// reads counts (a later one fails with `EEXIST`, one it cannot read with
/// `EINVAL`, and a bare name is refused). Only the kernel parameters count,
/// not init's arguments after a standalone `--`.
fn keep_running(cmdline: &str) -> bool {
    liveupdate::cmdline::split(cmdline)
        .0
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(KEEP_RUNNING_PARAM))
        .find_map(kstrtobool)
        .unwrap_or(false)
}

/// A boolean as the kernel's `kstrtobool()` reads it (the first one or two
/// characters), or `None` where it fails.
fn kstrtobool(v: &str) -> Option<bool> {
    match v.as_bytes() {
        [b'e' | b'E' | b'y' | b'Y' | b't' | b'T' | b'1', ..] => Some(true),
        [b'd' | b'D' | b'n' | b'N' | b'f' | b'F' | b'0', ..] => Some(false),
        [b'o' | b'O', b'n' | b'N', ..] => Some(true),
        [b'o' | b'O', b'f' | b'F', ..] => Some(false),
        _ => None,
    }
}

/// The format of a vfio-pci device file: the handler that keeps it running
/// takes it when this kernel `keeps_running` (has that handler, with its
/// parameter set), the other one otherwise.
fn vfio_compatible(keeps_running: bool) -> &'static str {
    if keeps_running {
        VFIO_PCI_RUNNING_COMPATIBLE
    } else {
        VFIO_PCI_COMPATIBLE
    }
}

/// The formats a file preserved by the handler of `compat` needs the next
/// kernel to read: that handler's, and for a device kept running the VT-d
/// handover too.
pub fn formats_for(compat: &str) -> impl Iterator<Item = &str> {
    let vtd = (compat == VFIO_PCI_RUNNING_COMPATIBLE).then_some(VTD_LU_COMPATIBLE);
    std::iter::once(compat).chain(vtd)
}

/// Which memfd format preserves a file of type `kind` on a filesystem of
/// `statfs(2)` magic `f_type`, `unlinked` if it has no link (`st_nlink`
/// 0): the memfd handlers take an unlinked file only (memfd_luo.c's and
/// memfd_luo_rs.rs's `can_preserve`), a shmem one as [`MEMFD_COMPATIBLE`],
/// a hugetlbfs one as [`HUGETLB_MEMFD_COMPATIBLE`]; `None` for any other.
fn memfd_compatible(kind: FileType, f_type: u32, unlinked: bool) -> Option<&'static str> {
    if kind != FileType::RegularFile || !unlinked {
        return None;
    }
    match f_type {
        TMPFS_MAGIC => Some(MEMFD_COMPATIBLE),
        HUGETLBFS_MAGIC => Some(HUGETLB_MEMFD_COMPATIBLE),
        _ => None,
    }
}

/// Random access to the bytes of an image.
trait Source {
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// `len` bytes at `off`, all of them or an error.
    fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, ImageError>;
}

struct FileSource {
    file: File,
    size: u64,
}

/// Whether `[off, off + len)` lies inside `size` bytes.
fn in_bounds(off: u64, len: u64, size: u64) -> bool {
    off.checked_add(len).is_some_and(|end| end <= size)
}

impl Source for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        if !in_bounds(off, len, self.size) {
            return Err(malformed(format!(
                "{len} bytes at offset {off} are past its end ({} bytes)",
                self.size
            )));
        }
        let len = usize::try_from(len).map_err(|_| malformed("a region too large to read"))?;
        let mut buf = vec![0; len];
        self.file.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read(&self, off: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        let range = usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(o, l)| Some(o..o.checked_add(l)?))
            .filter(|r| r.end <= self.len())
            .ok_or_else(|| {
                malformed(format!("{len} bytes at offset {off} are past its end ({} bytes)", self.len()))
            })?;
        Ok(self[range].to_vec())
    }
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The offsets of the x86 boot protocol header (Documentation/arch/x86/boot.rst).
mod bzimage {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const PAYLOAD_OFFSET: usize = 0x248;
    pub const PAYLOAD_LENGTH: usize = 0x24c;
    /// The end of the fields read.
    pub const END: usize = 0x250;
    /// The first protocol version with payload_offset and payload_length.
    pub const MIN_VERSION: u16 = 0x0208;
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn formats_of(src: &(impl Source + ?Sized)) -> Result<Option<Formats>, ImageError> {
    let head = src.read(0, src.size().min(bzimage::END as u64))?;
    if head.starts_with(ELF_MAGIC) {
        return elf_formats(src);
    }
    if head.len() < bzimage::END
        || le16(&head, bzimage::BOOT_FLAG) != 0xaa55
        || &head[bzimage::HEADER..bzimage::HEADER + 4] != b"HdrS"
    {
        return Err(ImageError::NotAKernel);
    }
    let version = le16(&head, bzimage::VERSION);
    if version < bzimage::MIN_VERSION {
        return Err(malformed(format!(
            "boot protocol {}.{:02} has no payload fields",
            version >> 8,
            version & 0xff
        )));
    }
    // The protected-mode kernel follows the boot sector and the setup
    // sectors; payload_offset counts from there.
    let setup_sects = match head[bzimage::SETUP_SECTS] {
        0 => 4,
        n => u64::from(n),
    };
    let off = (setup_sects + 1) * 512 + u64::from(le32(&head, bzimage::PAYLOAD_OFFSET));
    let len = u64::from(le32(&head, bzimage::PAYLOAD_LENGTH));
    if len > MAX_PAYLOAD as u64 {
        return Err(ImageError::TooLarge);
    }
    let payload = src.read(off, len)?;
    let vmlinux = decompress(&payload, MAX_PAYLOAD)?;
    if !vmlinux.starts_with(ELF_MAGIC) {
        return Err(malformed("the bzImage's payload is not an ELF file"));
    }
    elf_formats(vmlinux.as_slice())
}

/// The payload of a bzImage, decompressed, at most `cap` bytes of it. The
/// kernel's build appends the decompressed size (`size_append`, 4 bytes) to
/// every method but gzip; the decoders stop at the end of their stream and
/// leave it.
fn decompress(payload: &[u8], cap: usize) -> Result<Vec<u8>, ImageError> {
    match payload {
        [0x02, 0x21, 0x4c, 0x18, ..] => unlz4_legacy(payload, cap),
        [0x1f, 0x8b, ..] => read_capped("gzip", flate2::read::GzDecoder::new(payload), cap),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            read_capped("xz", lzma_rust2::XzReader::new_mem_limit(payload, false, MAX_DICT_KIB), cap)
        }
        [0x5d, 0x00, 0x00, ..] => {
            let r = lzma_rust2::LzmaReader::new_mem_limit(payload, MAX_DICT_KIB, None)
                .map_err(|e| ImageError::Decompress { method: "lzma", detail: e.to_string() })?;
            read_capped("lzma", r, cap)
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => unzstd(payload, cap),
        [b'B', b'Z', b'h', ..] => Err(ImageError::UnsupportedCompression("bzip2".into())),
        [0x89, b'L', b'Z', b'O', ..] => Err(ImageError::UnsupportedCompression("lzo".into())),
        [0x7f, b'E', b'L', b'F', ..] => Ok(payload.to_vec()),
        _ => {
            let magic: Vec<String> = payload.iter().take(4).map(|b| format!("{b:02x}")).collect();
            Err(ImageError::UnsupportedCompression(format!("an unknown method (magic {})", magic.join(" "))))
        }
    }
}

/// All of `r`, at most `cap` bytes of it.
fn read_capped(method: &'static str, r: impl Read, cap: usize) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    r.take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ImageError::Decompress { method, detail: e.to_string() })?;
    if out.len() > cap {
        return Err(ImageError::TooLarge);
    }
    Ok(out)
}

/// LZ4's legacy frame (`lz4 -l`, what the kernel's build writes): the magic,
/// then blocks of a little-endian `u32` size and an LZ4 block, each
/// independent and decompressing to at most 8 MiB; the magic again starts
/// another stream; a last word of 4 bytes is the kernel's size trailer.
fn unlz4_legacy(payload: &[u8], cap: usize) -> Result<Vec<u8>, ImageError> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK: usize = 8 << 20;
    // LZ4_compressBound(8 MiB)
    const MAX_CHUNK: usize = BLOCK + BLOCK / 255 + 16;
    let bad = |detail: String| ImageError::Decompress { method: "lz4", detail };
    let mut out = Vec::new();
    let mut block = vec![0; BLOCK];
    let mut pos = 4;
    while payload.len() - pos >= 4 {
        let word = le32(payload, pos);
        if word == MAGIC {
            pos += 4;
            continue;
        }
        if word == 0 || payload.len() - pos == 4 {
            break;
        }
        pos += 4;
        let chunk = word as usize;
        if chunk > MAX_CHUNK || chunk > payload.len() - pos {
            return Err(bad(format!("a block of {chunk} bytes at offset {}", pos - 4)));
        }
        if out.len() >= cap {
            return Err(ImageError::TooLarge);
        }
        let n = lz4_flex::block::decompress_into(&payload[pos..pos + chunk], &mut block)
            .map_err(|e| bad(format!("block at offset {}: {e}", pos - 4)))?;
        out.extend_from_slice(&block[..n]);
        pos += chunk;
    }
    if out.len() > cap {
        return Err(ImageError::TooLarge);
    }
    Ok(out)
}

/// A zstd frame. The kernel's build compresses with `zstd -22 --ultra` from
/// a pipe: the frame declares a 128 MiB window, and the decoder keeps up to
/// a window of output besides what it hands out. No match reaches further
/// back than the data decoded, so a window larger than the payload (as its
/// size trailer says, at most `cap`) is lowered to the smallest one that
/// holds it. A trailer that lies makes the frame fail to decode, no more.
fn unzstd(payload: &[u8], cap: usize) -> Result<Vec<u8>, ImageError> {
    const SINGLE_SEGMENT: u8 = 0x20;
    let window = |wd: u8| {
        let base = 1u64 << (10 + (wd >> 3));
        base + base / 8 * u64::from(wd & 7)
    };
    let mut head = payload.get(..6).map(<[u8]>::to_vec).unwrap_or_default();
    let size = payload.len().checked_sub(4).map(|at| u64::from(le32(payload, at)).min(cap as u64));
    if let (Some(&fhd), Some(&wd), Some(size)) = (head.get(4), head.get(5), size) {
        if fhd & SINGLE_SEGMENT == 0 {
            if let Some(fit) = (0..=u8::MAX).find(|&d| window(d) >= size).filter(|&d| window(d) < window(wd))
            {
                head[5] = fit;
            }
        }
    }
    let rest = payload.get(head.len()..).unwrap_or_default();
    let decoder = ruzstd::decoding::StreamingDecoder::new(head.as_slice().chain(rest))
        .map_err(|e| ImageError::Decompress { method: "zstd", detail: e.to_string() })?;
    read_capped("zstd", decoder, cap)
}

/// The fields of an ELF file header and program and section headers that
/// are read, in its class and byte order.
struct Elf {
    is64: bool,
    big: bool,
}

impl Elf {
    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.big {
            u16::from_be_bytes(v)
        } else {
            u16::from_le_bytes(v)
        }
    }

    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big {
            u32::from_be_bytes(v)
        } else {
            u32::from_le_bytes(v)
        }
    }

    /// A word: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, b: &[u8], at: usize) -> u64 {
        if !self.is64 {
            return u64::from(self.u32(b, at));
        }
        let hi_lo = (u64::from(self.u32(b, at)), u64::from(self.u32(b, at + 4)));
        if self.big {
            hi_lo.0 << 32 | hi_lo.1
        } else {
            hi_lo.1 << 32 | hi_lo.0
        }
    }
}

const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;

fn elf_formats(src: &(impl Source + ?Sized)) -> Result<Option<Formats>, ImageError> {
    let ident = src.read(0, 16.min(src.size()))?;
    if ident.len() < 16 || !ident.starts_with(ELF_MAGIC) {
        return Err(malformed("truncated ELF header"));
    }
    let elf = match (ident[4], ident[5]) {
        (c @ (1 | 2), d @ (1 | 2)) => Elf { is64: c == 2, big: d == 2 },
        (c, d) => return Err(malformed(format!("ELF class {c}, data encoding {d}"))),
    };
    let eh = src.read(0, if elf.is64 { 64 } else { 52 })?;
    // (e_phoff, e_shoff, e_phentsize at), by class.
    let (phoff, shoff, at) = if elf.is64 {
        (elf.word(&eh, 32), elf.word(&eh, 40), 54)
    } else {
        (elf.word(&eh, 28), elf.word(&eh, 32), 42)
    };
    let (phentsize, phnum) = (elf.u16(&eh, at), elf.u16(&eh, at + 2));
    let (shentsize, shnum) = (elf.u16(&eh, at + 4), elf.u16(&eh, at + 6));

    let mut other_version = None;
    let mut scan = |off: u64, size: u64, align: u64| -> Result<Option<Formats>, ImageError> {
        if size > MAX_NOTES {
            return Err(malformed(format!("a note area of {size} bytes")));
        }
        match scan_notes(&src.read(off, size)?, if align == 8 { 8 } else { 4 }, elf.big)? {
            Scan::Found(f) => Ok(Some(f)),
            Scan::OtherVersion(v) => {
                other_version = Some(v);
                Ok(None)
            }
            Scan::None => Ok(None),
        }
    };
    // PT_NOTE segments: p_type, p_offset, p_filesz, p_align.
    let (ph_min, ph_fields) = if elf.is64 { (56, (0, 8, 32, 48)) } else { (32, (0, 4, 16, 28)) };
    for ph in headers(src, phoff, phentsize, phnum, ph_min)? {
        if elf.u32(&ph, ph_fields.0) == PT_NOTE {
            let (off, size, align) =
                (elf.word(&ph, ph_fields.1), elf.word(&ph, ph_fields.2), elf.word(&ph, ph_fields.3));
            if let Some(f) = scan(off, size, align)? {
                return Ok(Some(f));
            }
        }
    }
    // SHT_NOTE sections: sh_type, sh_offset, sh_size, sh_addralign.
    let (sh_min, sh_fields) = if elf.is64 { (64, (4, 24, 32, 48)) } else { (40, (4, 16, 20, 32)) };
    for sh in headers(src, shoff, shentsize, shnum, sh_min)? {
        if elf.u32(&sh, sh_fields.0) == SHT_NOTE {
            let (off, size, align) =
                (elf.word(&sh, sh_fields.1), elf.word(&sh, sh_fields.2), elf.word(&sh, sh_fields.3));
            if let Some(f) = scan(off, size, align)? {
                return Ok(Some(f));
            }
        }
    }
    match other_version {
        Some(v) => Err(ImageError::UnknownVersion(v)),
        None => Ok(None),
    }
}

/// The `num` headers of `entsize` bytes at `off` (none if `off` or `num`
/// is 0), each cut to its first `min` bytes.
fn headers(
    src: &(impl Source + ?Sized),
    off: u64,
    entsize: u16,
    num: u16,
    min: usize,
) -> Result<Vec<Vec<u8>>, ImageError> {
    if off == 0 || num == 0 {
        return Ok(Vec::new());
    }
    if usize::from(entsize) < min {
        return Err(malformed(format!("ELF headers of {entsize} bytes")));
    }
    let total = u64::from(entsize) * u64::from(num);
    if total > MAX_HEADERS * 64 {
        return Err(malformed("too many ELF headers"));
    }
    let all = src.read(off, total)?;
    Ok(all.chunks_exact(usize::from(entsize)).map(|h| h[..min].to_vec()).collect())
}

/// What a note area holds.
enum Scan {
    /// A table of the version this module reads.
    Found(Formats),
    /// Only a table of another version.
    OtherVersion(u32),
    /// No table.
    None,
}

/// Looks for the table in a note area (a `PT_NOTE` segment, an `SHT_NOTE`
/// section, `/sys/kernel/notes`), whose entries are aligned to `align`.
fn scan_notes(notes: &[u8], align: usize, big: bool) -> Result<Scan, ImageError> {
    let elf = Elf { is64: false, big };
    let align_up = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
    let mut other = None;
    let mut pos = 0;
    while notes.len() - pos >= 12 {
        let (namesz, descsz, ntype) = (elf.u32(notes, pos), elf.u32(notes, pos + 4), elf.u32(notes, pos + 8));
        let name_at = pos + 12;
        let name_end = name_at.checked_add(namesz as usize).filter(|&e| e <= notes.len());
        let desc_at = name_end.and_then(align_up);
        let desc_end = desc_at.and_then(|d| d.checked_add(descsz as usize)).filter(|&e| e <= notes.len());
        let (Some(name_end), Some(desc_at), Some(desc_end)) = (name_end, desc_at, desc_end) else {
            return Err(malformed(format!("a note at offset {pos} runs past the end of its area")));
        };
        let name = &notes[name_at..name_end];
        if ntype == NOTE_FORMATS && name.strip_suffix(b"\0").unwrap_or(name) == NOTE_NAME.as_bytes() {
            match parse_table(&notes[desc_at..desc_end], &elf)? {
                Ok(f) => return Ok(Scan::Found(f)),
                Err(v) => other = Some(v),
            }
        }
        pos = match align_up(desc_end) {
            Some(p) if p <= notes.len() => p,
            _ => break,
        };
    }
    Ok(other.map_or(Scan::None, Scan::OtherVersion))
}

/// The table of a note's descriptor: `Ok(Err(version))` if of another
/// version.
fn parse_table(desc: &[u8], elf: &Elf) -> Result<Result<Formats, u32>, ImageError> {
    if desc.len() < 4 {
        return Err(malformed("a LUO note without a version"));
    }
    let version = elf.u32(desc, 0);
    if version != FORMATS_VERSION {
        return Ok(Err(version));
    }
    let compatibles = desc[4..]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| {
            String::from_utf8(s.to_vec()).map_err(|_| malformed("a compatible string that is not UTF-8"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ok(Formats { version, compatibles }))
}

/// Turns a scan into the answer of [`accepted_formats`].
fn found(scan: Scan) -> Result<Option<Formats>, ImageError> {
    match scan {
        Scan::Found(f) => Ok(Some(f)),
        Scan::OtherVersion(v) => Err(ImageError::UnknownVersion(v)),
        Scan::None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    const TABLE: &[&str] = &["kho-v4", "luo-v5", "memfd-v2", "vfio-pci-rs-v1"];

    /// A note: name, type, descriptor, 4-aligned, little-endian.
    fn note(name: &str, ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend((name.len() as u32 + 1).to_le_bytes());
        n.extend((desc.len() as u32).to_le_bytes());
        n.extend(ntype.to_le_bytes());
        n.extend(name.as_bytes());
        n.push(0);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n.extend(desc);
        while n.len() % 4 != 0 {
            n.push(0);
        }
        n
    }

    fn table_desc(version: u32, compats: &[&str]) -> Vec<u8> {
        let mut d = version.to_le_bytes().to_vec();
        for c in compats {
            d.extend(c.as_bytes());
            d.push(0);
        }
        // Padding, as the kernel's struct has.
        d.push(0);
        d
    }

    /// The notes of a kernel like ours: GNU build id, Xen-like, then LUO.
    fn kernel_notes(compats: &[&str]) -> Vec<u8> {
        let mut n = note("GNU", 3, &[0xab; 20]);
        n.extend(note("Linux", 6, b"\x01\x01\x00\x00"));
        n.extend(note(NOTE_NAME, NOTE_FORMATS, &table_desc(1, compats)));
        n
    }

    /// A minimal ELF64 little-endian file: a PT_LOAD and a PT_NOTE program
    /// header (if `phdr`), and an SHT_NOTE section (if `shdr`), over `notes`.
    fn elf64(notes: &[u8], phdr: bool, shdr: bool) -> Vec<u8> {
        let phnum: u16 = if phdr { 2 } else { 0 };
        let shnum: u16 = if shdr { 2 } else { 0 };
        let notes_off = 64 + 56 * u64::from(phnum);
        let shoff = (notes_off + notes.len() as u64 + 7) & !7;
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(ELF_MAGIC);
        f[4] = 2; // ELFCLASS64
        f[5] = 1; // ELFDATA2LSB
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        f[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        f[32..40].copy_from_slice(&(if phdr { 64u64 } else { 0 }).to_le_bytes());
        f[40..48].copy_from_slice(&(if shdr { shoff } else { 0 }).to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&phnum.to_le_bytes());
        f[58..60].copy_from_slice(&64u16.to_le_bytes());
        f[60..62].copy_from_slice(&shnum.to_le_bytes());
        for ptype in [1u32, PT_NOTE].iter().take(phnum.into()) {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&ptype.to_le_bytes());
            ph[8..16].copy_from_slice(&notes_off.to_le_bytes());
            ph[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
            ph[48..56].copy_from_slice(&4u64.to_le_bytes());
            f.extend(ph);
        }
        f.extend(notes);
        f.resize(shoff as usize, 0);
        if shdr {
            f.extend([0u8; 64]); // SHN_UNDEF
            let mut sh = vec![0u8; 64];
            sh[4..8].copy_from_slice(&SHT_NOTE.to_le_bytes());
            sh[24..32].copy_from_slice(&notes_off.to_le_bytes());
            sh[32..40].copy_from_slice(&(notes.len() as u64).to_le_bytes());
            sh[48..56].copy_from_slice(&4u64.to_le_bytes());
            f.extend(sh);
        }
        // What the kernel's build appends to vmlinux.bin: relocations.
        f.extend([0u8; 40]);
        f
    }

    fn lz4_legacy(data: &[u8]) -> Vec<u8> {
        let mut out = 0x184c_2102u32.to_le_bytes().to_vec();
        for block in data.chunks(8 << 20) {
            let c = lz4_flex::block::compress(block);
            out.extend((c.len() as u32).to_le_bytes());
            out.extend(c);
        }
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A bzImage-like file: boot sector and setup, then the protected-mode
    /// part with the payload at payload_offset, with the kernel's size
    /// trailer if `trailer`.
    fn bzimage(compressed: &[u8], vmlinux_len: usize, trailer: bool) -> Vec<u8> {
        let setup_sects = 3u8;
        let mut f = vec![0u8; (usize::from(setup_sects) + 1) * 512];
        f[bzimage::SETUP_SECTS] = setup_sects;
        f[bzimage::BOOT_FLAG..bzimage::BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        f[bzimage::HEADER..bzimage::HEADER + 4].copy_from_slice(b"HdrS");
        f[bzimage::VERSION..bzimage::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        let mut payload = compressed.to_vec();
        if trailer {
            payload.extend((vmlinux_len as u32).to_le_bytes());
        }
        let payload_offset = 0x3a0u32;
        f[bzimage::PAYLOAD_OFFSET..bzimage::PAYLOAD_OFFSET + 4]
            .copy_from_slice(&payload_offset.to_le_bytes());
        f[bzimage::PAYLOAD_LENGTH..bzimage::PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend(vec![0x90u8; payload_offset as usize]);
        f.extend(payload);
        f.extend([0xccu8; 100]);
        f
    }

    fn expect_table(r: Result<Option<Formats>, ImageError>, compats: &[&str]) {
        let f = r.expect("readable").expect("a table");
        assert_eq!(f.version, FORMATS_VERSION);
        assert_eq!(f.compatibles, compats);
    }

    #[test]
    fn raw_elf_through_program_and_section_headers() {
        let notes = kernel_notes(TABLE);
        expect_table(formats_of(elf64(&notes, true, true).as_slice()), TABLE);
        expect_table(formats_of(elf64(&notes, true, false).as_slice()), TABLE);
        expect_table(formats_of(elf64(&notes, false, true).as_slice()), TABLE);
        let f = formats_of(elf64(&notes, true, true).as_slice()).unwrap().unwrap();
        assert!(f.accepts(CORE_COMPATIBLE) && f.accepts(MEMFD_COMPATIBLE) && f.accepts(VFIO_PCI_COMPATIBLE));
        assert!(!f.accepts("memfd-v1") && !f.accepts("") && !f.accepts("luo"));
    }

    #[test]
    fn empty_table_accepts_nothing() {
        let notes = kernel_notes(&[]);
        let f = formats_of(elf64(&notes, true, true).as_slice()).unwrap().unwrap();
        assert!(f.compatibles.is_empty() && !f.accepts(CORE_COMPATIBLE));
    }

    #[test]
    fn bzimage_lz4_and_gzip() {
        let vmlinux = elf64(&kernel_notes(TABLE), true, true);
        expect_table(formats_of(bzimage(&lz4_legacy(&vmlinux), vmlinux.len(), true).as_slice()), TABLE);
        expect_table(formats_of(bzimage(&lz4_legacy(&vmlinux), vmlinux.len(), false).as_slice()), TABLE);
        expect_table(formats_of(bzimage(&gzip(&vmlinux), vmlinux.len(), false).as_slice()), TABLE);
        expect_table(formats_of(bzimage(&gzip(&vmlinux), vmlinux.len(), true).as_slice()), TABLE);
    }

    #[test]
    fn bzimage_lz4_several_blocks_and_streams() {
        // More than one 8 MiB block, and a second stream after the magic.
        let mut vmlinux = elf64(&kernel_notes(TABLE), true, true);
        vmlinux.resize(9 << 20, 0x5a);
        let mut lz = lz4_legacy(&vmlinux);
        assert_eq!(unlz4_legacy(&lz, MAX_PAYLOAD).unwrap(), vmlinux);
        lz.extend(lz4_legacy(b"more"));
        let mut both = vmlinux.clone();
        both.extend(b"more");
        assert_eq!(unlz4_legacy(&lz, MAX_PAYLOAD).unwrap(), both);
        expect_table(formats_of(bzimage(&lz, both.len(), true).as_slice()), TABLE);
    }

    #[test]
    fn bzimage_zstd_with_the_kernels_window() {
        let vmlinux = elf64(&kernel_notes(TABLE), true, true);
        let mut z = ruzstd::encoding::compress_to_vec(
            vmlinux.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        expect_table(formats_of(bzimage(&z, vmlinux.len(), true).as_slice()), TABLE);
        // As zstd -22 --ultra writes from a pipe: a 128 MiB window, no
        // single segment, no content size.
        assert_eq!(z[4] & 0x20, 0, "the encoder wrote a single-segment frame");
        z[5] = 17 << 3;
        expect_table(formats_of(bzimage(&z, vmlinux.len(), true).as_slice()), TABLE);
        // A trailer larger than the window leaves the window alone; one that
        // lies (smaller than the data) fails the frame or changes nothing.
        let mut big = z.clone();
        big.extend((200u32 << 20).to_le_bytes());
        assert_eq!(decompress(&big, MAX_PAYLOAD).unwrap(), vmlinux);
        let mut small = z.clone();
        small.extend(1u32.to_le_bytes());
        assert!(decompress(&small, MAX_PAYLOAD).map_or(true, |v| v == vmlinux));
    }

    #[test]
    fn bzimage_xz_with_bcj_and_lzma() {
        let vmlinux = elf64(&kernel_notes(TABLE), true, true);
        // As scripts/xz_wrap.sh: CRC32, the x86 BCJ filter, LZMA2.
        let mut opts = lzma_rust2::XzOptions::with_preset(6);
        opts.set_check_sum_type(lzma_rust2::CheckType::Crc32);
        opts.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
        let mut w = lzma_rust2::XzWriter::new(Vec::new(), opts).unwrap();
        w.write_all(&vmlinux).unwrap();
        let xz = w.finish().unwrap();
        expect_table(formats_of(bzimage(&xz, vmlinux.len(), true).as_slice()), TABLE);

        let mut w = lzma_rust2::LzmaWriter::new_use_header(
            Vec::new(),
            &lzma_rust2::LzmaOptions::with_preset(6),
            None,
        )
        .unwrap();
        w.write_all(&vmlinux).unwrap();
        let lzma = w.finish().unwrap();
        expect_table(formats_of(bzimage(&lzma, vmlinux.len(), true).as_slice()), TABLE);
    }

    #[test]
    fn image_without_a_table() {
        let notes = note("GNU", 3, &[0xab; 20]);
        let vmlinux = elf64(&notes, true, true);
        assert!(formats_of(vmlinux.as_slice()).unwrap().is_none());
        assert!(formats_of(bzimage(&lz4_legacy(&vmlinux), vmlinux.len(), true).as_slice())
            .unwrap()
            .is_none());
        // No notes at all, no headers at all.
        assert!(formats_of(elf64(&[], false, false).as_slice()).unwrap().is_none());
        // The right name with another type, another name with the right type.
        let mut n = note(NOTE_NAME, 2, &table_desc(1, TABLE));
        n.extend(note("LUOX", NOTE_FORMATS, &table_desc(1, TABLE)));
        assert!(formats_of(elf64(&n, true, true).as_slice()).unwrap().is_none());
    }

    #[test]
    fn other_versions() {
        let mut n = note(NOTE_NAME, NOTE_FORMATS, &table_desc(2, &["luo-v9"]));
        let only_v2 = elf64(&n, true, true);
        assert!(matches!(formats_of(only_v2.as_slice()), Err(ImageError::UnknownVersion(2))));
        // A v2 note beside a v1 note: the v1 one is read.
        n.extend(note(NOTE_NAME, NOTE_FORMATS, &table_desc(1, TABLE)));
        expect_table(formats_of(elf64(&n, true, true).as_slice()), TABLE);
    }

    #[test]
    fn garbage_and_truncation() {
        assert!(matches!(formats_of(&b""[..]), Err(ImageError::NotAKernel)));
        assert!(matches!(formats_of(&[0x42u8; 4096][..]), Err(ImageError::NotAKernel)));
        let vmlinux = elf64(&kernel_notes(TABLE), true, true);
        let image = bzimage(&lz4_legacy(&vmlinux), vmlinux.len(), true);
        // Every truncation of the bzImage and of the ELF file is an error
        // or no table, never a panic.
        for len in (0..image.len() - 100).step_by(7) {
            let r = formats_of(&image[..len]);
            assert!(r.is_err(), "truncated to {len}: {r:?}");
        }
        for len in 0..vmlinux.len() {
            let _ = formats_of(&vmlinux[..len]);
        }
        // Every single-byte corruption of the ELF file and of the image's
        // header and payload.
        for at in 0..vmlinux.len() {
            for v in [0x00, 0xff, 0x80] {
                let mut bad = vmlinux.clone();
                bad[at] = v;
                let _ = formats_of(bad.as_slice());
            }
        }
        for at in (0x1f0..0x260).chain(2048..image.len()) {
            let mut bad = image.clone();
            bad[at] ^= 0xff;
            let _ = formats_of(bad.as_slice());
        }
        // Pseudo-random garbage behind a valid header, for each method.
        let mut x = 0x1234_5678_9abc_def0u64;
        for magic in [
            &[0x02, 0x21, 0x4c, 0x18][..],
            &[0x1f, 0x8b, 8, 0],
            b"\xfd7zXZ\0",
            &[0x5d, 0, 0],
            &[0x28, 0xb5, 0x2f, 0xfd],
        ] {
            for _ in 0..50 {
                let mut p = magic.to_vec();
                for _ in 0..200 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    p.push(x as u8);
                }
                assert!(formats_of(bzimage(&p, 1000, true).as_slice()).is_err());
            }
        }
    }

    #[test]
    fn hostile_sizes() {
        // A bzImage whose payload_length is past the end of the file.
        let vmlinux = elf64(&kernel_notes(TABLE), true, true);
        let mut image = bzimage(&lz4_legacy(&vmlinux), vmlinux.len(), true);
        image[bzimage::PAYLOAD_LENGTH..bzimage::PAYLOAD_LENGTH + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(formats_of(image.as_slice()), Err(ImageError::TooLarge)));
        image[bzimage::PAYLOAD_LENGTH..bzimage::PAYLOAD_LENGTH + 4]
            .copy_from_slice(&(1u32 << 20).to_le_bytes());
        assert!(matches!(formats_of(image.as_slice()), Err(ImageError::Malformed(_))));
        // An LZ4 block that claims more than the payload has.
        let mut lz = lz4_legacy(&vmlinux);
        lz[4..8].copy_from_slice(&(1u32 << 22).to_le_bytes());
        assert!(matches!(unlz4_legacy(&lz, MAX_PAYLOAD), Err(ImageError::Decompress { .. })));
        // Bombs: 64 MiB of zeros, decompressed with a cap of 16 MiB.
        let zeros = vec![0u8; 64 << 20];
        let cap = 16 << 20;
        for bomb in [lz4_legacy(&zeros), gzip(&zeros)] {
            assert!(matches!(decompress(&bomb, cap), Err(ImageError::TooLarge)));
            assert_eq!(decompress(&bomb, 64 << 20).unwrap().len(), 64 << 20);
        }
        let z =
            ruzstd::encoding::compress_to_vec(zeros.as_slice(), ruzstd::encoding::CompressionLevel::Fastest);
        assert!(matches!(decompress(&z, cap), Err(ImageError::TooLarge)));
        // A note whose sizes run past its area.
        let mut n = kernel_notes(TABLE);
        let at = n.len() - table_desc(1, TABLE).len().next_multiple_of(4) - 4 - 12;
        n[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(formats_of(elf64(&n, true, false).as_slice()), Err(ImageError::Malformed(_))));
    }

    #[test]
    fn unsupported_compressions_are_named() {
        let e = formats_of(bzimage(b"BZh91AY&SY", 0, true).as_slice()).unwrap_err();
        assert!(e.to_string().contains("bzip2"), "{e}");
        let e = formats_of(bzimage(b"\x89LZO\0\r\n", 0, true).as_slice()).unwrap_err();
        assert!(e.to_string().contains("lzo"), "{e}");
        let e = formats_of(bzimage(b"\x01\x02\x03\x04", 0, true).as_slice()).unwrap_err();
        assert!(e.to_string().contains("01 02 03 04"), "{e}");
    }

    #[test]
    fn through_a_file_descriptor() {
        let vmlinux = elf64(&kernel_notes(TABLE), true, true);
        let fd = rustix::fs::memfd_create("image", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        let mut f = File::from(fd);
        f.write_all(&bzimage(&lz4_legacy(&vmlinux), vmlinux.len(), true)).unwrap();
        expect_table(accepted_formats(f.as_fd()), TABLE);
        // The file offset is left where it was.
        assert_eq!(
            rustix::fs::seek(&f, rustix::fs::SeekFrom::Current(0)).unwrap() as usize,
            f.metadata().unwrap().len() as usize
        );
        // A memfd is preserved by the memfd handler.
        assert_eq!(handler_compatible(f.as_fd()), Some(MEMFD_COMPATIBLE));
    }

    #[test]
    fn memfd_formats_by_filesystem_and_links() {
        let reg = FileType::RegularFile;
        assert_eq!(memfd_compatible(reg, TMPFS_MAGIC, true), Some(MEMFD_COMPATIBLE));
        assert_eq!(memfd_compatible(reg, HUGETLBFS_MAGIC, true), Some(HUGETLB_MEMFD_COMPATIBLE));
        // A linked file (on /dev/shm, a hugetlbfs mount) is no memfd.
        assert_eq!(memfd_compatible(reg, TMPFS_MAGIC, false), None);
        assert_eq!(memfd_compatible(reg, HUGETLBFS_MAGIC, false), None);
        // Nor is an unlinked file of another filesystem (ext4), nor what
        // is not a regular file.
        assert_eq!(memfd_compatible(reg, 0xef53, true), None);
        assert_eq!(memfd_compatible(FileType::Directory, TMPFS_MAGIC, true), None);
        assert_eq!(memfd_compatible(FileType::CharacterDevice, HUGETLBFS_MAGIC, true), None);
        // statfs(2)'s f_type as a 32-bit target's signed word holds it.
        let wrapped = (HUGETLBFS_MAGIC as i32) as i64 as u32;
        assert_eq!(memfd_compatible(reg, wrapped, true), Some(HUGETLB_MEMFD_COMPATIBLE));
    }

    /// A hugetlbfs memfd, if this kernel has hugetlbfs: creating one takes
    /// no huge page (only faulting one in would), so a host without a
    /// pool of huge pages still has it.
    #[test]
    fn handler_compatible_of_a_hugetlbfs_memfd() {
        let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::HUGETLB;
        match rustix::fs::memfd_create("huge", flags) {
            Ok(fd) => assert_eq!(handler_compatible(fd.as_fd()), Some(HUGETLB_MEMFD_COMPATIBLE)),
            // No CONFIG_HUGETLBFS (EINVAL), or a sandbox refusing it:
            // memfd_formats_by_filesystem_and_links covers the logic.
            Err(e) => eprintln!("no hugetlbfs memfd on this host ({e}): not checked through an fd"),
        }
    }

    #[test]
    fn vfio_format_follows_keep_running() {
        assert!(keep_running("ro vfio_pci_luo_rs.keep_running=1 quiet"));
        for v in ["Y", "on", "true", "enable", "ON", "yes"] {
            assert!(keep_running(&format!("vfio_pci_luo_rs.keep_running={v}")), "{v}");
        }
        for v in ["0", "n", "off", "false", "disable", "x", "", "o"] {
            assert!(!keep_running(&format!("vfio_pci_luo_rs.keep_running={v}")), "{v}");
        }
        // Set once: the first value read counts; one not read is skipped.
        assert!(keep_running("vfio_pci_luo_rs.keep_running=1 vfio_pci_luo_rs.keep_running=n"));
        assert!(!keep_running("vfio_pci_luo_rs.keep_running=n vfio_pci_luo_rs.keep_running=1"));
        assert!(keep_running("vfio_pci_luo_rs.keep_running=x vfio_pci_luo_rs.keep_running=1"));
        assert!(!keep_running("xvfio_pci_luo_rs.keep_running=1 vfio_pci_luo_rs.keep_running"));
        assert!(!keep_running(""));
        assert_eq!(vfio_compatible(true), VFIO_PCI_RUNNING_COMPATIBLE);
        assert_eq!(vfio_compatible(false), VFIO_PCI_COMPATIBLE);
        assert_eq!(
            formats_for(VFIO_PCI_RUNNING_COMPATIBLE).collect::<Vec<_>>(),
            ["vfio-pci-rs-v2", "vtd-lu-rs-v1"]
        );
        assert_eq!(formats_for(VFIO_PCI_COMPATIBLE).collect::<Vec<_>>(), ["vfio-pci-rs-v1"]);
        assert_eq!(formats_for(MEMFD_COMPATIBLE).collect::<Vec<_>>(), ["memfd-v2"]);
    }

    #[test]
    fn keep_running_is_a_kernel_parameter_only() {
        // After a standalone `--`: init's arguments, which the kernel does not read.
        assert!(!keep_running("ro -- vfio_pci_luo_rs.keep_running=1"));
        assert!(!keep_running("ro quiet -- test=demo stage=1 vfio_pci_luo_rs.keep_running=1\n"));
        assert!(keep_running("vfio_pci_luo_rs.keep_running=1 -- vfio_pci_luo_rs.keep_running=0"));
        assert!(keep_running("ro vfio_pci_luo_rs.keep_running=1 -- test=demo"));
    }

    #[test]
    fn handler_compatible_of_other_files() {
        let dir = std::env::temp_dir();
        let f = File::open(&dir).unwrap();
        assert_eq!(handler_compatible(f.as_fd()), None);
        let null = File::open("/dev/null").unwrap();
        assert_eq!(handler_compatible(null.as_fd()), None);
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert_eq!(handler_compatible(r.as_fd()), None);
    }

    /// The image of the rust variant, if it was built.
    #[test]
    #[ignore = "needs build/obj-rust/arch/x86/boot/bzImage (make kernel LUO=rust)"]
    fn built_rust_bzimage() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../build/obj-rust/arch/x86/boot/bzImage");
        let f = File::open(path).expect("no bzImage: make kernel LUO=rust");
        let formats = accepted_formats(f.as_fd()).unwrap().expect("the bzImage has no table");
        for c in
            [KHO_COMPATIBLE, CORE_COMPATIBLE, MEMFD_COMPATIBLE, HUGETLB_MEMFD_COMPATIBLE, VFIO_PCI_COMPATIBLE]
        {
            assert!(formats.accepts(c), "{c} not in {:?}", formats.compatibles);
        }
    }
}
