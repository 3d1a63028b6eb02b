// SPDX-License-Identifier: GPL-2.0
//! `luo-vmm-demo`: a VM host across a live update, for `make demo`.
//!
//! Usage:
//!
//! ```text
//! luo-vmm-demo -s 1|2 [--size SIZE] [--seed N] [--hugetlb 2M|1G] [--vfio BDF] [--require-timeline]
//! ```
//!
//! Options come from argv only (never the kernel command line), as
//! `--opt VALUE` or `--opt=VALUE`; stage 2 takes the same ones as stage 1
//! and checks what it retrieves against them.
//!
//! - `-s 1` (the old kernel): creates the VM's guest RAM, a memfd of SIZE
//!   bytes (`--size`, else 256M; K/M/G/T suffixes), fills it with a
//!   reproducible pattern through a shared mapping, writes the VM state
//!   (vCPU registers, seed, size, backing; a small JSON text) into a second
//!   memfd, preserves both in the LUO session `vm-demo` and leaves the
//!   session to a holder process. Its last line is `DEMO: reboot`; the caller then kexecs.
//! - `-s 2` (the new kernel): retrieves the session and both memfds, checks
//!   the VM state, that guest RAM is the kind of file it was, and every
//!   byte of guest RAM, finishes the session and prints a report.
//!
//! With huge pages (`--hugetlb 2M|1G`; else shmem), guest RAM is a
//! hugetlbfs memfd (`MFD_HUGETLB | MFD_HUGE_2MB` or `MFD_HUGE_1GB`; SIZE
//! must be a whole number of pages), as production VMMs back guest RAM. Stage 1 takes its
//! pages from the pool: it grows the 2 MiB pool at run time
//! (`nr_hugepages`) if it has too few free pages; 1 GiB pages must be
//! there already (`hugepagesz=1G hugepages=N` on the kernel command line).
//! Stage 2 checks that the retrieved file is hugetlbfs (`fstatfs` f_type
//! `0x958458f6`) with the same page size (`st_blksize`), as the VM state
//! says, and fails otherwise; only a kernel with the Rust memfd handler
//! preserves such a file ("hugetlb-memfd-rs-v1"; the C one has no hugetlb
//! support, PRESERVE_FD fails with ENOENT).
//!
//! With a passthrough device (`--vfio BDF`, e.g. `0000:00:02.0`, the first
//! QEMU edu device of `scripts/run-vm.sh` with `LUO_VM_VFIO=1`):
//! - stage 1 binds it to vfio-pci, opens its vfio cdev, binds it to an
//!   iommufd, maps guest RAM into the IOAS (IOMMU_IOAS_MAP_FILE of the
//!   memfd, IOVA = offset in guest RAM, as a VMM maps guest-physical
//!   addresses; only the first 256 MiB, all the edu's 28-bit DMA mask
//!   reaches), does a DMA round trip guest RAM -> device -> guest RAM as a
//!   pre-check (and puts the pattern back), and preserves the device fd in
//!   the session next to guest RAM;
//! - stage 2 binds the device to vfio-pci again (the new kernel has no
//!   driver for it), retrieves a fresh device fd, binds it to a new iommufd
//!   and maps the retrieved guest RAM (all before `DEMO: restored`, so inside
//!   the blackout, as a VMM must before its VM runs), then, after every byte
//!   is verified, DMAs 4095 bytes from guest RAM to the device and back to
//!   another place in guest RAM, and checks that copy and every other byte
//!   again (`DEMO: device OK: ...`).
//!
//! With `vfio_pci_luo_rs.keep_running=1` among the kernel parameters
//! (phase 2, "vfio-pci-rs-v2"), the device keeps running through the
//! kexec: stage 1 loads 4095 bytes of guest RAM into it and has vfio-pci's
//! test hook (armed through debugfs `liveupdate/test_vfio`) start its DMA of them to
//! elsewhere in guest RAM at the kexec, after device shutdown (without the hook, it is
//! started at once, in flight at `reboot()`); stage 2 maps guest RAM before
//! it attaches the device, prints the kernel's line on the switch from the
//! adopted IOMMU translation, waits for the device's DMA, and checks that
//! guest RAM holds that copy (`DEMO: device DMA during the kexec landed`).
//!
//! Session `vm-demo`, tokens: `0x1` guest RAM, `0x2` VM state, `0x3` the
//! device.
//!
//! Last, stage 2 prints the kernel's own breakdown of the blackout, from
//! its timeline file (`/sys/kernel/debug/liveupdate/timeline`, the Rust LUO
//! only; debugfs is mounted if it is not): every line of the file as
//! `DEMO timeline: LINE`, then the breakdown (the rows of
//! `luoctl timeline`, whose parser this program shares) as
//! `DEMO breakdown: ROW`, the first one its title; or, if the file cannot be
//! read or parsed, one `DEMO timeline-error: WHY` line. That fails the demo
//! only with `--require-timeline` (as `make check` runs it), which also
//! requires every row of the breakdown to be measured.
//!
//! Every other line starts with `DEMO: `; the host harness
//! (`scripts/demo.sh`) reads `DEMO: preserved N bytes ... in T ms`,
//! `DEMO: reboot`, `DEMO: restored ...` and `DEMO: verified N bytes OK`
//! (and the breakdown). Exit status 0 on success, 1 on any error or
//! mismatch (reported as `DEMO: error: ...` / `DEMO: MISMATCH ...`), 2 for
//! a usage error.
#![deny(unsafe_code)]

mod backing;
#[allow(unsafe_code)]
mod mapping;
mod pattern;
mod state;
mod units;
#[allow(unsafe_code)]
mod vfio;

use liveupdate::timeline;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use liveupdate::{Device, Error};
use rustix::fs::{fstat, ftruncate, memfd_create, MemfdFlags};

use backing::{Backing, Seen};
use mapping::Mapping;
use state::Vm;
use units::{human, mib_per_s, ms, parse_size};
use vfio::{Edu, Iommufd, EDU_DMA_MAX, EDU_IOVA_LIMIT};

/// The LUO session that carries the VM.
const SESSION: &str = "vm-demo";
/// Token of the guest RAM memfd.
const TOKEN_RAM: u64 = 0x1;
/// Token of the VM state memfd.
const TOKEN_STATE: u64 = 0x2;
/// Guest RAM size without `--size`.
const DEFAULT_SIZE: u64 = 256 << 20;
/// Smallest guest RAM accepted.
const MIN_SIZE: u64 = 4096;
/// Token of the passthrough device's vfio cdev fd.
const TOKEN_DEVICE: u64 = 0x3;
/// Smallest guest RAM with the device (room for two DMAs apart).
const DEVICE_MIN_SIZE: u64 = 64 << 10;
/// IOVA of guest RAM offset 0: IOVA = guest-physical address.
const RAM_IOVA: u64 = 0;
/// vfio-pci's module parameter that keeps devices running through the kexec
/// (no sysfs file: it is read from the kernel parameters).
const KEEP_RUNNING: &str = "vfio_pci_luo_rs.keep_running=";
/// Where the DMA across the kexec copies from, in guest RAM.
const BLACKOUT_FROM: u64 = 0x6011;

/// Whether this kernel preserves vfio devices running ("vfio-pci-rs-v2",
/// booted with `vfio_pci_luo_rs.keep_running=1`): then the device keeps
/// doing DMA through the kexec. The module parameter is set once, by the
/// first value `kstrtobool()` reads (its first one or two characters).
/// Only the kernel parameters count: not init's arguments, after a
/// standalone `--` on the command line.
fn keeps_running() -> bool {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    keeps_running_in(&cmdline)
}

/// [`keeps_running`] for the kernel command line `cmdline`.
fn keeps_running_in(cmdline: &str) -> bool {
    liveupdate::cmdline::split(cmdline)
        .0
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(KEEP_RUNNING))
        .find_map(|v| match v.as_bytes() {
            [b'e' | b'E' | b'y' | b'Y' | b't' | b'T' | b'1', ..] | [b'o' | b'O', b'n' | b'N', ..] => {
                Some(true)
            }
            [b'd' | b'D' | b'n' | b'N' | b'f' | b'F' | b'0', ..] | [b'o' | b'O', b'f' | b'F', ..] => {
                Some(false)
            }
            _ => None,
        })
        == Some(true)
}

/// The DMA across the kexec, for guest RAM of `ram_size` bytes: from
/// [`BLACKOUT_FROM`] to near the window's end, clear of stage 2's DMA.
fn blackout_copy(ram_size: u64) -> (u64, u64, u64) {
    (BLACKOUT_FROM, dma_window(ram_size) - 0x6000 + 0x123, EDU_DMA_MAX)
}

/// Mount debugfs if it is not: `""`, or why it could not be.
fn mount_debugfs() -> String {
    match rustix::mount::mount("none", DEBUGFS, "debugfs", rustix::mount::MountFlags::empty(), None) {
        Ok(()) | Err(rustix::io::Errno::BUSY) => String::new(),
        Err(e) => format!(" (mounting debugfs on {DEBUGFS}: {e})"),
    }
}

/// The first kernel message of this boot that contains `needle`, from
/// `needle` on.
fn kmsg_find(needle: &str) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open("/dev/kmsg")
        .ok()?;
    let mut rec = vec![0u8; 4096];
    loop {
        match f.read(&mut rec) {
            Ok(0) => return None,
            Ok(n) => {
                let text = String::from_utf8_lossy(&rec[..n]);
                if let Some(at) = text.find(needle) {
                    return Some(text[at..].trim_end().to_string());
                }
            }
            // A record overwritten while reading: go on with the next.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PIPE.raw_os_error()) => {}
            Err(_) => return None,
        }
    }
}

type R<T = ()> = Result<T, String>;

macro_rules! say {
    ($($arg:tt)*) => {{
        println!("DEMO: {}", format_args!($($arg)*));
    }};
}

#[derive(Debug, Default, PartialEq)]
struct Args {
    stage: u32,
    size: Option<u64>,
    seed: Option<u64>,
    hugetlb: Option<Backing>,
    vfio: Option<String>,
    /// `--require-timeline`: no readable, fully measured timeline fails the demo.
    require_timeline: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: luo-vmm-demo -s 1|2 [--size SIZE] [--seed N] [--hugetlb 2M|1G] [--vfio BDF] \
         [--require-timeline]"
    );
    eprintln!("  -s 1: create, fill and preserve guest RAM and VM state in LUO session \"{SESSION}\"");
    eprintln!("  -s 2: after the kexec, retrieve and verify them, then finish the session");
    eprintln!("  (stage 2 takes the options of stage 1 and checks guest RAM against them)");
    eprintln!("  --size SIZE: guest RAM, bytes with optional K/M/G/T suffix (default: 256M)");
    eprintln!("  --seed N: the pattern's seed, decimal or 0x hex (default: from the clock)");
    eprintln!(
        "  --hugetlb 2M|1G: guest RAM on hugetlbfs pages of this size (default: shmem); \
         SIZE a whole number of them"
    );
    eprintln!("  --vfio BDF: a QEMU edu device to pass through and preserve too (e.g. 0000:00:02.0)");
    eprintln!(
        "  --require-timeline: fail if the kernel's timeline cannot be read or a row of its \
         breakdown is not measured"
    );
    eprintln!("  Options with a value also take the form --opt=VALUE.");
    std::process::exit(2);
}

fn parse_args() -> Args {
    parse_args_from(std::env::args().skip(1)).unwrap_or_else(|e| {
        if !e.is_empty() {
            eprintln!("luo-vmm-demo: {e}");
        }
        usage()
    })
}

/// The options in `argv` (without the program name); an empty error for
/// `--help`.
fn parse_args_from(argv: impl IntoIterator<Item = String>) -> R<Args> {
    let mut a = Args::default();
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        // `--opt=VALUE` as well as `--opt VALUE`.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let takes_value = matches!(name.as_str(), "-s" | "--size" | "--seed" | "--hugetlb" | "--vfio");
        let v = match (takes_value, inline) {
            (true, Some(v)) => v,
            (true, None) => it.next().ok_or_else(|| format!("{name} needs a value"))?,
            (false, Some(_)) => return Err(format!("{name} takes no value")),
            (false, None) => String::new(),
        };
        match name.as_str() {
            "-s" => a.stage = v.parse().map_err(|_| format!("-s {v:?}: expected 1 or 2"))?,
            "--size" => a.size = Some(parse_size(&v).map_err(|e| format!("--size: {e}"))?),
            "--seed" => {
                let n = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse().ok(),
                };
                a.seed = Some(n.ok_or_else(|| format!("--seed {v:?}: expected a number"))?);
            }
            "--hugetlb" => a.hugetlb = Some(Backing::parse(&v).map_err(|e| format!("--hugetlb: {e}"))?),
            "--vfio" if v.is_empty() => return Err("--vfio needs a BDF".into()),
            "--vfio" => a.vfio = Some(v),
            "--require-timeline" => a.require_timeline = true,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {name:?}")),
        }
    }
    if !(1..=2).contains(&a.stage) {
        return Err("-s 1|2 is required".into());
    }
    Ok(a)
}

fn main() {
    liveupdate::holder::serve_if_holder();
    let args = parse_args();
    let result = match args.stage {
        1 => stage1(&args),
        _ => stage2(&args),
    };
    if let Err(e) = result {
        say!("error: {e}");
        std::process::exit(1);
    }
}

/// The bytes of guest RAM the device can reach, mapped at [`RAM_IOVA`]:
/// all of it up to the edu's 28-bit DMA mask, in whole pages.
fn dma_window(ram_size: u64) -> u64 {
    (ram_size & !0xfff).min(EDU_IOVA_LIMIT - RAM_IOVA)
}

/// A nonce for the edu liveness register.
fn nonce(seed: u64) -> u32 {
    (pattern::word(0x11fe, seed) >> 16) as u32
}

/// Print a guest RAM mismatch report (`what`: which check).
fn report_mismatch(m: &pattern::Mismatch, ram_size: u64, what: &str) {
    say!("MISMATCH: {} of {} words of guest RAM differ{what}; the first:", m.words, ram_size.div_ceil(8));
    for b in &m.first {
        say!(
            "MISMATCH:   offset {:#012x} (page {}): expected {:#018x}, found {:#018x}",
            b.offset,
            b.offset / 4096,
            b.expected,
            b.found
        );
    }
}

fn memfd(name: &str, flags: MemfdFlags) -> R<OwnedFd> {
    memfd_create(name, flags).map_err(|e| format!("memfd_create({name}, {flags:?}): {e}"))
}

fn to_usize(n: u64) -> R<usize> {
    usize::try_from(n).map_err(|_| format!("{n} bytes do not fit in the address space"))
}

fn stage1(args: &Args) -> R {
    let size = args.size.unwrap_or(DEFAULT_SIZE);
    if size < MIN_SIZE {
        return Err(format!("guest RAM of {size} bytes is too small (at least {MIN_SIZE})"));
    }
    let backing = args.hugetlb.unwrap_or(Backing::Shmem);
    let huge_pages = backing.pages(size)?;
    let bdf = args.vfio.as_deref();
    if bdf.is_some() && size < DEVICE_MIN_SIZE {
        return Err(format!(
            "guest RAM of {size} bytes is too small for the device's DMA (at least {})",
            human(DEVICE_MIN_SIZE)
        ));
    }
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        pattern::word(nanos, u64::from(std::process::id()))
    });
    let vm = Vm { seed, ram_bytes: size, backing };
    let on = match backing {
        Backing::Shmem => String::new(),
        b => format!(" on {}", b.describe()),
    };
    say!(
        "stage 1: VM host, session \"{SESSION}\": {} of guest RAM ({size} bytes){on}, seed {seed:#018x}",
        human(size)
    );

    // Huge pages come from the pool: as a host does before it starts such
    // a VM, make sure the pool has them (2 MiB ones grown at run time).
    if let Some(page) = backing.huge_page() {
        let t = Instant::now();
        let (before, after) = backing::ensure_pool(backing, huge_pages)?;
        if after.total != before.total {
            say!(
                "huge page pool: grew the {} pool from {} to {} pages (nr_hugepages, at run time) in {} ms: \
                 {} free, guest RAM needs {huge_pages}",
                human(page),
                before.total,
                after.total,
                ms(t.elapsed()),
                after.available()
            );
        } else {
            say!(
                "huge page pool: the {} pool already has {} pages (nr_hugepages), {} free: guest RAM needs \
                 {huge_pages}",
                human(page),
                after.total,
                after.available()
            );
        }
    }

    // Guest RAM: a memfd, mapped shared like a VMM maps it, filled. It
    // stays mapped until it is preserved (the device's DMA pre-check reads
    // and writes guest RAM through this mapping: a hugetlbfs file has no
    // write(2)).
    let t = Instant::now();
    let ram = memfd("vm-demo-ram", backing.memfd_flags())?;
    ftruncate(&ram, size).map_err(|e| format!("cannot size guest RAM to {size} bytes: {e}"))?;
    // MAP_POPULATE: the kernel allocates (and zeroes) every page here; on
    // hugetlbfs, mmap() first reserves them in the pool.
    let mut map = Mapping::new(&ram, to_usize(size)?, true)
        .map_err(|e| format!("cannot map {} of guest RAM ({}): {e}", human(size), backing.describe()))?;
    let alloc = t.elapsed();
    pattern::fill(map.bytes_mut(), seed);
    let fill = t.elapsed();
    let pages = match backing.huge_page() {
        Some(p) => format!(" ({huge_pages} hugetlb pages of {})", human(p)),
        None => String::new(),
    };
    say!(
        "filled {}{pages} in {} ms: allocate {} ms, write {} ms ({} MiB/s)",
        human(size),
        ms(fill),
        ms(alloc),
        ms(fill - alloc),
        mib_per_s(size, fill - alloc)
    );

    // VM state: a small text in its own memfd.
    let text = vm.render(SESSION, TOKEN_RAM);
    let st = memfd("vm-demo-state", MemfdFlags::CLOEXEC)?;
    File::from(st.try_clone().map_err(|e| e.to_string())?)
        .write_all(text.as_bytes())
        .map_err(|e| format!("cannot write the VM state: {e}"))?;
    say!("VM state: {} bytes ({} vCPUs, registers, seed, RAM size and backing)", text.len(), state::VCPUS);

    // The passthrough device: set up, DMA-checked, kept for the session.
    let device = match bdf {
        Some(b) => Some(device_stage1(b, &ram, &mut map, size, seed)?),
        None => None,
    };
    drop(map);

    // Preserve them all in one session.
    let t = Instant::now();
    let dev = Device::open().map_err(|e| e.to_string())?;
    let session = dev.create_session(SESSION).map_err(|e| e.to_string())?;
    session.preserve_fd(&ram, TOKEN_RAM).map_err(|e| match (&e, backing) {
        (Error::NotFound { .. }, Backing::Huge2M | Backing::Huge1G) => format!(
            "guest RAM: {e}: this kernel's memfd handler does not take hugetlbfs memfds (only the Rust \
             one does, \"hugetlb-memfd-rs-v1\"; the C one has no hugetlb support)"
        ),
        _ => format!("guest RAM: {e}"),
    })?;
    session.preserve_fd(&st, TOKEN_STATE).map_err(|e| format!("VM state: {e}"))?;
    if let Some((edu, _)) = &device {
        session.preserve_fd(edu, TOKEN_DEVICE).map_err(|e| format!("device {}: {e}", edu.bdf()))?;
    }
    let preserve = t.elapsed();
    let total = size + text.len() as u64;
    match &device {
        None => say!(
            "preserved 2 fds ({total} bytes) in {} ms: session \"{SESSION}\", token {TOKEN_RAM:#x} guest RAM, \
             token {TOKEN_STATE:#x} VM state",
            ms(preserve)
        ),
        Some((edu, _)) => say!(
            "preserved 3 fds ({total} bytes) in {} ms: session \"{SESSION}\", token {TOKEN_RAM:#x} guest RAM, \
             token {TOKEN_STATE:#x} VM state, token {TOKEN_DEVICE:#x} device {} (edu)",
            ms(preserve),
            edu.bdf()
        ),
    }

    // The session lives as long as its fd: a holder keeps it to the kexec
    // (and the device and its iommufd, as the VMM would keep them open).
    let mut keep = vec![session.as_fd()];
    if let Some((edu, iommu)) = &device {
        keep.push(edu.as_fd());
        keep.push(iommu.as_fd());
    }
    let holder = liveupdate::holder::spawn(&keep, [SESSION])
        .map_err(|e| format!("cannot start the session holder: {e}"))?;
    say!("holder pid {} keeps session \"{SESSION}\" open across the kexec", holder.id());
    drop(keep);
    if let Some((edu, _)) = &device {
        if keeps_running() {
            arm_blackout_dma(edu, size)?;
        }
    }
    drop(device);
    drop(session);
    drop(dev);
    say!("reboot");
    Ok(())
}

/// Stage 1's device: bind `bdf` to vfio-pci, open its cdev, bind it to an
/// iommufd, map guest RAM (`ram`, `size` bytes of the pattern of `seed`,
/// mapped in this process as `map`) into the IOAS, and check a DMA round
/// trip through guest RAM (whose pattern is put back afterwards, through
/// `map`: a hugetlbfs file has no write(2)).
fn device_stage1(bdf: &str, ram: &OwnedFd, map: &mut Mapping, size: u64, seed: u64) -> R<(Edu, Iommufd)> {
    let t = Instant::now();
    vfio::check_edu(bdf)?;
    let before = vfio::bind_vfio_pci(bdf)?;
    let (file, path) = vfio::open_cdev(bdf)?;
    let iommu = Iommufd::open()?;
    let edu = Edu::bind(bdf, file, &iommu)?;
    edu.check_alive(nonce(seed))?;
    let window = dma_window(size);
    iommu.map_file(ram, window, RAM_IOVA)?;
    say!(
        "device {bdf} (edu): bound to vfio-pci (driver before: {}), {} bound to an iommufd (IOAS {}), \
         guest RAM mapped for DMA at IOVA {RAM_IOVA:#x}-{:#x} ({}) in {} ms",
        before.as_deref().unwrap_or("none"),
        path.display(),
        iommu.ioas(),
        RAM_IOVA + window - 1,
        human(window),
        ms(t.elapsed())
    );

    // The pre-check: near the start of the window to near its end.
    let (from, to, n) = (0x1123, window - 0x2000 + 0x45, EDU_DMA_MAX);
    let t = Instant::now();
    edu.dma_round_trip(RAM_IOVA + from, RAM_IOVA + to, n)?;
    let dma = t.elapsed();
    let (to_at, n_at) = (to_usize(to)?, to_usize(n)?);
    let got = &map.bytes()[to_at..to_at + n_at];
    let want: Vec<u8> = (from..from + n).map(|o| pattern::byte(o, seed)).collect();
    if got != want {
        let at = got.iter().zip(&want).take_while(|(a, b)| a == b).count() as u64;
        say!(
            "MISMATCH: device DMA pre-check: guest RAM {:#x} holds {:#04x}, want {:#04x} (byte {at} of the \
             {n} copied from {from:#x})",
            to + at,
            got[at as usize],
            want[at as usize]
        );
        return Err(format!("device {bdf}: the DMA pre-check copied wrong bytes"));
    }
    // Put the pattern back where the DMA wrote.
    let back: Vec<u8> = (to..to + n).map(|o| pattern::byte(o, seed)).collect();
    map.bytes_mut()[to_at..to_at + n_at].copy_from_slice(&back);
    say!(
        "device {bdf} (edu): DMA pre-check OK: {n} bytes guest RAM {from:#x} -> device -> guest RAM {to:#x} \
         in {} ms (the pattern put back there)",
        ms(dma)
    );
    Ok((edu, iommu))
}

/// Stage 1, with a device that keeps running through the kexec: load 4095
/// bytes of guest RAM into the device and have it write them back elsewhere
/// in guest RAM while the kernels switch. vfio-pci's test hook starts that
/// DMA at the kexec, after device shutdown (it runs 100 ms later, while the
/// next kernel boots); without the hook it is started now, and is in flight
/// at `reboot()`. Stage 2 finds the copy in the guest RAM it retrieves.
fn arm_blackout_dma(edu: &Edu, size: u64) -> R {
    let bdf = edu.bdf();
    let (from, to, n) = blackout_copy(size);
    edu.load(RAM_IOVA + from, n)?;
    let mount = mount_debugfs();
    let when = match vfio::arm_at_kexec(RAM_IOVA + to, n) {
        Ok(()) => {
            "at the kexec, after device shutdown (vfio-pci's test hook), to run while the next kernel boots"
                .to_string()
        }
        Err(e) => {
            edu.start_store(RAM_IOVA + to, n)?;
            format!("now, in flight at reboot() (no test hook: {e}{mount})")
        }
    };
    say!(
        "device {bdf} (edu) keeps running through the kexec (vfio-pci-rs-v2): its DMA of {n} bytes guest RAM \
         {from:#x} -> device -> guest RAM {to:#x} starts {when}"
    );
    Ok(())
}

fn stage2(args: &Args) -> R {
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()));
    match uptime {
        Some(u) => say!("stage 2: new kernel, userspace {u:.2} s after it started"),
        None => say!("stage 2: new kernel"),
    }

    let t = Instant::now();
    let dev = Device::open().map_err(|e| e.to_string())?;
    let session = match dev.retrieve_session(SESSION) {
        Ok(s) => s,
        Err(e @ Error::NotFound { .. }) => {
            return Err(format!("{e}: the previous kernel handed over no session \"{SESSION}\""))
        }
        Err(e) => return Err(e.to_string()),
    };
    let ram = session.retrieve_fd(TOKEN_RAM).map_err(|e| format!("guest RAM (token {TOKEN_RAM:#x}): {e}"))?;
    let st =
        session.retrieve_fd(TOKEN_STATE).map_err(|e| format!("VM state (token {TOKEN_STATE:#x}): {e}"))?;
    let ram_size = fstat(&ram).map_err(|e| format!("fstat(guest RAM): {e}"))?.st_size as u64;
    // What the retrieved file is (checked against the VM state below).
    let seen = Seen::of(&ram)?;
    // The device, before the VM could run: bound, retrieved, its DMA mapped.
    let device = match &args.vfio {
        Some(b) => Some(device_stage2(b, &session, &ram, ram_size)?),
        None => None,
    };
    let restore = t.elapsed();
    // Read from offset 0: a memfd comes back with its file position (here
    // at the end, where stage 1's write left it).
    let st_size = fstat(&st).map_err(|e| format!("fstat(VM state): {e}"))?.st_size as u64;
    let mut text = vec![0u8; to_usize(st_size)?];
    File::from(st).read_exact_at(&mut text, 0).map_err(|e| format!("cannot read the VM state: {e}"))?;
    let total = ram_size + text.len() as u64;
    match &device {
        None => say!(
            "restored 2 fds ({total} bytes) in {} ms: session \"{SESSION}\", guest RAM {} ({ram_size} bytes), \
             VM state {} bytes",
            ms(restore),
            human(ram_size),
            text.len()
        ),
        Some(d) => say!(
            "restored 3 fds ({total} bytes) in {} ms: session \"{SESSION}\", guest RAM {} ({ram_size} bytes), \
             VM state {} bytes, device {} (edu) bound and mapped in {} ms",
            ms(restore),
            human(ram_size),
            text.len(),
            d.edu.bdf(),
            ms(d.restore)
        ),
    }

    // The VM state: parse it, then rebuild it and compare every byte.
    let t = Instant::now();
    let text = String::from_utf8(text).map_err(|_| "MISMATCH: the VM state is not text".to_string())?;
    let vm = Vm::parse(&text).map_err(|e| format!("MISMATCH: {e}"))?;
    let expected = vm.render(SESSION, TOKEN_RAM);
    if text != expected {
        let at = text.bytes().zip(expected.bytes()).take_while(|(a, b)| a == b).count();
        say!(
            "MISMATCH: VM state differs from byte {at} on ({} bytes, expected {})",
            text.len(),
            expected.len()
        );
        return Err("VM state corrupted".into());
    }
    say!(
        "VM state OK: seed {:#018x}, {} vCPUs, guest RAM {} bytes ({})",
        vm.seed,
        state::VCPUS,
        vm.ram_bytes,
        vm.backing.name()
    );
    if let Some(w) = args.hugetlb.filter(|&w| w != vm.backing) {
        say!(
            "MISMATCH: the VM state says guest RAM is {}, --hugetlb says {}",
            vm.backing.describe(),
            w.describe()
        );
        return Err("guest RAM has the wrong backing".into());
    }
    // The retrieved file must be what stage 1 made: hugetlbfs of the same
    // page size (or shmem), not a copy on other pages.
    if !vm.backing.matches(seen) {
        say!("MISMATCH: guest RAM came back as {}, but it was {}", seen.describe(), vm.backing.describe());
        return Err("guest RAM came back as another kind of file".into());
    }
    let seen_as = format!("(statfs f_type {:#x}, st_blksize {})", seen.f_type, seen.blksize);
    match vm.backing.huge_page() {
        None => say!("guest RAM is {} {seen_as}, as before the kexec", vm.backing.describe()),
        Some(page) => {
            let pages = vm.backing.pages(ram_size)?;
            // The restored pages are surplus pages while the file holds them.
            let pool = match backing::pool(page) {
                Ok(p) => format!(
                    "the {} pool: {} pages, {} of them surplus, {} free",
                    human(page),
                    p.total,
                    p.surplus,
                    p.free
                ),
                Err(e) => e,
            };
            say!(
                "guest RAM is {} {seen_as}, as before the kexec: {pages} pages; {pool}",
                vm.backing.describe()
            );
        }
    }
    if ram_size != vm.ram_bytes {
        say!("MISMATCH: guest RAM memfd has {ram_size} bytes, the VM state says {}", vm.ram_bytes);
        return Err("guest RAM has the wrong size".into());
    }
    if let Some(w) = args.size.filter(|&w| w != ram_size) {
        say!("MISMATCH: guest RAM has {ram_size} bytes, --size says {w}");
        return Err("guest RAM has the wrong size".into());
    }
    if ram_size < MIN_SIZE {
        return Err(format!("guest RAM of {ram_size} bytes is too small (at least {MIN_SIZE})"));
    }

    // Guest RAM: every byte against the pattern; with a device that kept
    // running, with the copy its DMA made during the kexec.
    let blackout = device.as_ref().filter(|_| keeps_running()).map(|_| blackout_copy(ram_size));
    {
        let mut map = Mapping::new(&ram, to_usize(ram_size)?, blackout.is_some())
            .map_err(|e| format!("cannot map {} of guest RAM: {e}", human(ram_size)))?;
        let r = match blackout {
            Some((from, to, n)) => {
                pattern::verify_copy(map.bytes(), vm.seed, to_usize(from)?, to_usize(to)?, to_usize(n)?)
            }
            None => pattern::verify(map.bytes(), vm.seed),
        };
        if let Err(m) = r {
            let what = match blackout {
                Some((from, to, n)) => {
                    format!(" (the device's DMA during the kexec: {n} bytes {from:#x} -> {to:#x})")
                }
                None => String::new(),
            };
            report_mismatch(&m, ram_size, &what);
            return Err("guest RAM corrupted".into());
        }
        if let Some((from, to, n)) = blackout {
            say!(
                "device DMA during the kexec landed: guest RAM {to:#x} holds the {n} bytes of {from:#x}, through \
                 the IOMMU translation both kernels kept (the pattern put back there)"
            );
            let back: Vec<u8> = (to..to + n).map(|o| pattern::byte(o, vm.seed)).collect();
            let at = to_usize(to)?;
            map.bytes_mut()[at..at + back.len()].copy_from_slice(&back);
        }
    }
    let verify = t.elapsed();
    say!(
        "verified {total} bytes OK in {} ms ({} MiB/s): every byte of guest RAM and VM state",
        ms(verify),
        mib_per_s(total, verify)
    );

    if let Some(d) = &device {
        device_dma_check(d, &ram, ram_size, vm.seed)?;
    }

    let t = Instant::now();
    session.finish().map_err(|e| e.to_string())?;
    let finish = t.elapsed();
    if device.is_some() {
        // FINISH makes the kernel log (the test FLBs of the demo kernel),
        // and its console thread prints those lines later, to the same
        // UART as our stdout: on the VFIO machine they reliably landed in
        // the middle of the next line. Let it catch up first.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    say!("finished session \"{SESSION}\" in {} ms: the VM now runs on the restored memory", ms(finish));
    drop(session);
    drop(dev);
    let dev_note = match &device {
        Some(d) => format!(
            "; device {} (edu) retrieved, bound and mapped in {} ms, its DMA through guest RAM verified",
            d.edu.bdf(),
            ms(d.restore)
        ),
        None => String::new(),
    };
    say!(
        "report: {total} bytes ({} guest RAM ({}) + {} bytes VM state) came through the kexec; \
         retrieve {} ms, verify {} ms, finish {} ms{dev_note}",
        human(ram_size),
        vm.backing.describe(),
        text.len(),
        ms(restore),
        ms(verify),
        ms(finish)
    );
    print_timeline(args.require_timeline)
}

/// Where debugfs is mounted.
const DEBUGFS: &str = "/sys/kernel/debug";

/// The kernel's own breakdown of the live update, from its timeline file
/// (after FINISH, so that it has the finish calls): each line of the file
/// as `DEMO timeline: `, then the breakdown as `DEMO breakdown: `, or one
/// `DEMO timeline-error: ` line on why there is none (the C LUO has no
/// timeline). An error only if `require` (`--require-timeline`, as make
/// check runs the demo): a timeline that cannot be read or parsed, or a
/// row of the breakdown that is not measured, fails the demo; otherwise
/// this is telemetry.
fn print_timeline(require: bool) -> R {
    let fail = |why: String| -> R {
        println!("DEMO timeline-error: {why}");
        if require {
            return Err(format!("the kernel's timeline: {why}"));
        }
        Ok(())
    };
    // The demo's init mounts debugfs; mount it if not (EBUSY: it is).
    let mount = mount_debugfs();
    let path = timeline::DEFAULT_PATH;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read {path}: {e}{mount}")),
    };
    for line in text.lines() {
        println!("DEMO timeline: {line}");
    }
    let t = match timeline::Timeline::parse(&text) {
        Ok(t) => t,
        Err(e) => return fail(format!("{path} is malformed: {e}")),
    };
    t.render(path).iter().for_each(|row| println!("DEMO breakdown: {row}"));
    match t.breakdown().iter().find(|r| r.value.ns().is_none()) {
        Some(r) => fail(format!("{} is {}", r.label, r.value.state())),
        None => Ok(()),
    }
}

/// Stage 2's device, bound to a new iommufd with guest RAM mapped.
struct Restored {
    edu: Edu,
    /// Kept open: the IOAS that maps guest RAM for the device.
    _iommu: Iommufd,
    /// Time to bind, retrieve, bind and map it.
    restore: std::time::Duration,
}

/// Stage 2's device: bind `bdf` to vfio-pci (the new kernel has no driver
/// for it), retrieve its fresh, unbound cdev file from `session`, bind it
/// to a new iommufd and map the retrieved guest RAM as stage 1 did.
fn device_stage2(
    bdf: &str,
    session: &liveupdate::IncomingSession,
    ram: &OwnedFd,
    ram_size: u64,
) -> R<Restored> {
    if ram_size < DEVICE_MIN_SIZE {
        return Err(format!(
            "guest RAM of {ram_size} bytes is too small for the device's DMA (at least {})",
            human(DEVICE_MIN_SIZE)
        ));
    }
    let t = Instant::now();
    vfio::check_edu(bdf)?;
    let before = vfio::bind_vfio_pci(bdf)?;
    let bind = t.elapsed();
    let file = session
        .retrieve_fd(TOKEN_DEVICE)
        .map_err(|e| format!("device {bdf} (token {TOKEN_DEVICE:#x}): {e}"))?;
    let retrieve = t.elapsed() - bind;
    // Guest RAM is mapped first, then the device attached: a device that
    // kept running goes from the translation the kernel adopted straight to
    // one that maps the same IOVAs to the same pages.
    let iommu = Iommufd::open()?;
    let window = dma_window(ram_size);
    iommu.map_file(ram, window, RAM_IOVA)?;
    let map = t.elapsed() - bind - retrieve;
    let edu = Edu::bind(bdf, File::from(file), &iommu)?;
    let attach = t.elapsed() - bind - retrieve - map;
    let restore = t.elapsed();
    say!(
        "device {bdf} (edu): bound to vfio-pci in {} ms (driver before: {}), retrieved in {} ms, guest RAM \
         mapped for DMA at IOVA {RAM_IOVA:#x}-{:#x} ({}) in a new iommufd (IOAS {}) in {} ms, the device \
         bound and attached to it in {} ms",
        ms(bind),
        before.as_deref().unwrap_or("none"),
        ms(retrieve),
        RAM_IOVA + window - 1,
        human(window),
        iommu.ioas(),
        ms(map),
        ms(attach)
    );
    if keeps_running() {
        // The kernel says how long the device's context entry was not
        // present while the attach replaced the adopted one.
        let b = bdf.strip_prefix("0000:").unwrap_or(bdf);
        match kmsg_find(&format!("{b} switched from the adopted translation")) {
            Some(line) => say!("device {bdf} (edu) kept running; the kernel: \"{line}\""),
            None => {
                return Err(format!(
                    "device {bdf}: kept running, but the kernel logged no switch from an adopted translation"
                ))
            }
        }
        edu.wait_dma()?;
    }
    Ok(Restored { edu, _iommu: iommu, restore })
}

/// After guest RAM is verified: the device answers, DMAs from guest RAM to
/// itself and back to another place in guest RAM, and guest RAM holds that
/// copy and the pattern everywhere else.
fn device_dma_check(d: &Restored, ram: &OwnedFd, ram_size: u64, seed: u64) -> R {
    let bdf = d.edu.bdf();
    let window = dma_window(ram_size);
    // Near the end of the window to near its start (stage 1 went the other way).
    let (from, to, n) = (window - 0x4000 + 0x321, 0x3009, EDU_DMA_MAX);
    let t = Instant::now();
    d.edu.check_alive(nonce(seed) ^ 0x2)?;
    d.edu.dma_round_trip(RAM_IOVA + from, RAM_IOVA + to, n)?;
    let dma = t.elapsed();
    let t = Instant::now();
    let map = Mapping::new(ram, to_usize(ram_size)?, false)
        .map_err(|e| format!("cannot map {} of guest RAM: {e}", human(ram_size)))?;
    if let Err(m) = pattern::verify_copy(map.bytes(), seed, from as usize, to as usize, n as usize) {
        report_mismatch(&m, ram_size, &format!(" after the device's DMA of {n} bytes {from:#x} -> {to:#x}"));
        return Err(format!("device {bdf}: guest RAM is wrong after its DMA"));
    }
    say!(
        "device OK: {bdf} (edu) answers, DMA of {n} bytes guest RAM {from:#x} -> device -> guest RAM {to:#x} \
         in {} ms; the copy and every other byte of guest RAM checked in {} ms",
        ms(dma),
        ms(t.elapsed())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> R<Args> {
        parse_args_from(argv.iter().map(|a| a.to_string()))
    }

    #[test]
    fn options_with_a_space_or_an_equals_sign() {
        let want = Args {
            stage: 2,
            size: Some(16 << 20),
            seed: Some(0x2a),
            hugetlb: Some(Backing::Huge2M),
            vfio: Some("0000:00:02.0".into()),
            require_timeline: true,
        };
        let spaced = [
            "-s",
            "2",
            "--size",
            "16M",
            "--seed",
            "0x2a",
            "--hugetlb",
            "2M",
            "--vfio",
            "0000:00:02.0",
            "--require-timeline",
        ];
        assert_eq!(parse(&spaced), Ok(want));
        let joined = [
            "-s",
            "2",
            "--size=16M",
            "--seed=42",
            "--hugetlb=2M",
            "--vfio=0000:00:02.0",
            "--require-timeline",
        ];
        assert_eq!(parse(&joined), parse(&spaced));
    }

    #[test]
    fn absent_options_are_the_defaults() {
        // 256M of shmem, no device, the timeline not required.
        assert_eq!(parse(&["-s", "1"]), Ok(Args { stage: 1, ..Args::default() }));
    }

    #[test]
    fn bad_arguments() {
        for argv in [
            &[][..],
            &["-s", "3"],
            &["--size", "16M"],
            &["-s", "1", "--size"],
            &["-s", "1", "--size=lots"],
            &["-s", "1", "--hugetlb=4M"],
            &["-s", "1", "--seed=x"],
            &["-s", "1", "--vfio="],
            &["-s", "1", "--vfio"],
            &["-s", "1", "--require-timeline=yes"],
            &["-s", "1", "luo.demo_size=16M"],
            &["-s=1"],
        ] {
            assert!(parse(argv).is_err(), "{argv:?}");
        }
        assert_eq!(parse(&["--help"]), Err(String::new()));
    }

    #[test]
    fn keep_running_is_a_kernel_parameter() {
        assert!(keeps_running_in("ro vfio_pci_luo_rs.keep_running=1 -- test=luo-vmm-demo stage=1"));
        assert!(!keeps_running_in("ro -- test=luo-vmm-demo vfio_pci_luo_rs.keep_running=1"));
        assert!(!keeps_running_in("vfio_pci_luo_rs.keep_running=0 vfio_pci_luo_rs.keep_running=1"));
        assert!(!keeps_running_in(""));
    }
}
