// SPDX-License-Identifier: GPL-2.0
//! What backs guest RAM: a shmem memfd (the default) or a hugetlbfs memfd
//! of 2 MiB or 1 GiB pages (`memfd_create(MFD_HUGETLB | MFD_HUGE_2MB)`, as
//! production VMMs back guest RAM), the huge page pool that a hugetlbfs
//! memfd takes its pages from, and how a retrieved memfd proves its kind.

use std::os::fd::AsFd;

use rustix::fs::{fstat, fstatfs, MemfdFlags};

use crate::units::human;

/// `statfs.f_type` of hugetlbfs (`HUGETLBFS_MAGIC`, `include/uapi/linux/magic.h`).
pub const HUGETLBFS_MAGIC: u32 = 0x9584_58f6;
/// `statfs.f_type` of tmpfs, where shmem memfds live (`TMPFS_MAGIC`).
pub const TMPFS_MAGIC: u32 = 0x0102_1994;
/// Where the kernel shows its huge page pools.
const HUGEPAGES: &str = "/sys/kernel/mm/hugepages";

/// The kind of memory behind guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// A shmem memfd (base pages, or whatever folios shmem makes).
    Shmem,
    /// A hugetlbfs memfd of 2 MiB pages.
    Huge2M,
    /// A hugetlbfs memfd of 1 GiB pages.
    Huge1G,
}

impl Backing {
    /// Parse `2M` or `1G` (`--hugetlb`; also `1` for 2 MiB as
    /// `make demo HUGETLB=1` says it), or `0`/`shmem` for none.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "no" | "shmem" => Ok(Self::Shmem),
            "1" | "2m" | "2mb" | "2mib" | "2048k" | "hugetlb-2m" => Ok(Self::Huge2M),
            "1g" | "1gb" | "1gib" | "hugetlb-1g" => Ok(Self::Huge1G),
            _ => Err(format!("bad huge page size {s:?}: expected 2M or 1G")),
        }
    }

    /// The name in the VM state (`"ram_backing"`), which [`Backing::parse`] reads back.
    pub fn name(self) -> &'static str {
        match self {
            Self::Shmem => "shmem",
            Self::Huge2M => "hugetlb-2M",
            Self::Huge1G => "hugetlb-1G",
        }
    }

    /// The huge page size, or `None` for shmem.
    pub fn huge_page(self) -> Option<u64> {
        match self {
            Self::Shmem => None,
            Self::Huge2M => Some(2 << 20),
            Self::Huge1G => Some(1 << 30),
        }
    }

    /// For humans: `shmem`, `hugetlbfs, 2 MiB pages`.
    pub fn describe(self) -> String {
        match self.huge_page() {
            None => "shmem".to_string(),
            Some(p) => format!("hugetlbfs, {} pages", human(p)),
        }
    }

    /// The `memfd_create(2)` flags of guest RAM. No `MFD_ALLOW_SEALING`:
    /// the demo seals nothing, shmem or hugetlbfs.
    pub fn memfd_flags(self) -> MemfdFlags {
        match self {
            Self::Shmem => MemfdFlags::CLOEXEC,
            Self::Huge2M => MemfdFlags::CLOEXEC | MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB,
            Self::Huge1G => MemfdFlags::CLOEXEC | MemfdFlags::HUGETLB | MemfdFlags::HUGE_1GB,
        }
    }

    /// `size` as huge pages: an error unless it is a whole number of them
    /// (a hugetlbfs file is sized in whole pages). 0 for shmem.
    pub fn pages(self, size: u64) -> Result<u64, String> {
        match self.huge_page() {
            None => Ok(0),
            Some(p) if size % p == 0 && size > 0 => Ok(size / p),
            Some(p) => Err(format!(
                "guest RAM of {} ({size} bytes) is not a whole number of {} pages: a hugetlbfs memfd is \
                 sized in whole huge pages",
                human(size),
                human(p)
            )),
        }
    }

    /// Whether a file with this `statfs.f_type` and `st_blksize` is guest
    /// RAM of this kind: hugetlbfs with this page size, or tmpfs.
    pub fn matches(self, seen: Seen) -> bool {
        match self.huge_page() {
            None => seen.f_type == TMPFS_MAGIC,
            Some(p) => seen.f_type == HUGETLBFS_MAGIC && seen.blksize == p,
        }
    }
}

/// What a file says of itself: `fstatfs(2)`'s `f_type`, `fstat(2)`'s `st_blksize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The file system's magic number.
    pub f_type: u32,
    /// The preferred I/O size: the huge page size on hugetlbfs.
    pub blksize: u64,
}

impl Seen {
    /// Ask the kernel about `fd`.
    pub fn of(fd: impl AsFd) -> Result<Self, String> {
        let fs = fstatfs(fd.as_fd()).map_err(|e| format!("fstatfs(guest RAM): {e}"))?;
        let st = fstat(fd.as_fd()).map_err(|e| format!("fstat(guest RAM): {e}"))?;
        // f_type is a long; the magic numbers are 32 bits.
        Ok(Self { f_type: fs.f_type as u32, blksize: st.st_blksize as u64 })
    }

    /// For humans: `statfs f_type 0x958458f6 (hugetlbfs), st_blksize 2097152`.
    pub fn describe(self) -> String {
        let fs = match self.f_type {
            HUGETLBFS_MAGIC => "hugetlbfs",
            TMPFS_MAGIC => "tmpfs",
            _ => "neither hugetlbfs nor tmpfs",
        };
        format!("statfs f_type {:#x} ({fs}), st_blksize {}", self.f_type, self.blksize)
    }
}

/// The counters of one huge page pool (`/sys/kernel/mm/hugepages/hugepages-<N>kB/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    /// `nr_hugepages`: every page of the pool, surplus pages included.
    pub total: u64,
    /// `free_hugepages`.
    pub free: u64,
    /// `resv_hugepages`: free pages promised to mappings.
    pub resv: u64,
    /// `surplus_hugepages`: pages beyond the persistent pool (the next
    /// kernel counts restored pages here while a file holds them).
    pub surplus: u64,
}

impl Pool {
    /// Free pages nobody has reserved.
    pub fn available(&self) -> u64 {
        self.free.saturating_sub(self.resv)
    }
}

fn pool_dir(page: u64) -> String {
    format!("{HUGEPAGES}/hugepages-{}kB", page >> 10)
}

fn read_counter(dir: &str, name: &str) -> Result<u64, String> {
    let path = format!("{dir}/{name}");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.trim().parse().map_err(|_| format!("{path}: not a number: {:?}", text.trim()))
}

/// The pool of `page`-byte huge pages.
pub fn pool(page: u64) -> Result<Pool, String> {
    let dir = pool_dir(page);
    Ok(Pool {
        total: read_counter(&dir, "nr_hugepages")?,
        free: read_counter(&dir, "free_hugepages")?,
        resv: read_counter(&dir, "resv_hugepages")?,
        surplus: read_counter(&dir, "surplus_hugepages")?,
    })
}

/// Make sure the pool of `backing`'s pages has `need` pages nobody else
/// has: as a host does before it starts a VM on huge pages. 2 MiB pages
/// are added at run time (`nr_hugepages`, up to three tries: each write
/// makes the kernel try again, compacting memory); 1 GiB pages only come
/// from the kernel command line (`hugepagesz=1G hugepages=N`), so a short
/// 1 GiB pool is an error. Returns the pool before and after.
pub fn ensure_pool(backing: Backing, need: u64) -> Result<(Pool, Pool), String> {
    let Some(page) = backing.huge_page() else {
        return Err("guest RAM on shmem has no huge page pool".into());
    };
    let before = pool(page)?;
    let mut now = before;
    if now.available() >= need {
        return Ok((before, now));
    }
    if backing == Backing::Huge1G {
        return Err(format!(
            "the 1 GiB page pool has {} free pages, guest RAM needs {need}: 1 GiB pages come from the \
             kernel command line (hugepagesz=1G hugepages={need}), with memory to spare",
            now.available()
        ));
    }
    let path = format!("{}/nr_hugepages", pool_dir(page));
    for _ in 0..3 {
        let want = now.total + (need - now.available());
        std::fs::write(&path, format!("{want}\n"))
            .map_err(|e| format!("cannot write {want} to {path}: {e}"))?;
        now = pool(page)?;
        if now.available() >= need {
            return Ok((before, now));
        }
    }
    Err(format!(
        "the {} page pool has {} free pages after growing it to {} (nr_hugepages), guest RAM needs {need}: \
         not enough free memory in whole huge pages; give the VM more memory",
        human(page),
        now.available(),
        now.total
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        assert_eq!(Backing::parse("2M"), Ok(Backing::Huge2M));
        assert_eq!(Backing::parse("1"), Ok(Backing::Huge2M));
        assert_eq!(Backing::parse("1g"), Ok(Backing::Huge1G));
        assert_eq!(Backing::parse("0"), Ok(Backing::Shmem));
        assert_eq!(Backing::parse(""), Ok(Backing::Shmem));
        assert!(Backing::parse("4K").is_err());
        assert!(Backing::parse("2G").is_err());
        for b in [Backing::Shmem, Backing::Huge2M, Backing::Huge1G] {
            assert_eq!(Backing::parse(b.name()), Ok(b));
        }
    }

    #[test]
    fn whole_pages() {
        assert_eq!(Backing::Huge2M.pages(256 << 20), Ok(128));
        assert_eq!(Backing::Huge1G.pages(2 << 30), Ok(2));
        assert_eq!(Backing::Shmem.pages(4097), Ok(0));
        assert!(Backing::Huge2M.pages(3 << 20).is_err());
        assert!(Backing::Huge1G.pages(256 << 20).is_err());
        assert!(Backing::Huge2M.pages(0).is_err());
    }

    #[test]
    fn matches_only_its_kind() {
        let h2 = Seen { f_type: HUGETLBFS_MAGIC, blksize: 2 << 20 };
        let h1 = Seen { f_type: HUGETLBFS_MAGIC, blksize: 1 << 30 };
        let shm = Seen { f_type: TMPFS_MAGIC, blksize: 4096 };
        assert!(Backing::Huge2M.matches(h2));
        assert!(!Backing::Huge2M.matches(h1));
        assert!(!Backing::Huge2M.matches(shm));
        assert!(Backing::Huge1G.matches(h1));
        assert!(!Backing::Huge1G.matches(h2));
        assert!(Backing::Shmem.matches(shm));
        assert!(!Backing::Shmem.matches(h2));
        // A tmpfs file with a 2 MiB block size is not hugetlbfs.
        assert!(!Backing::Huge2M.matches(Seen { f_type: TMPFS_MAGIC, blksize: 2 << 20 }));
    }

    /// The check on real files of this (host) kernel: a shmem memfd, and
    /// hugetlbfs memfds of the page sizes it has (memfd_create and
    /// ftruncate take no page from the pool; skipped where it has none).
    #[test]
    fn seen_on_real_memfds() {
        use rustix::fs::{ftruncate, memfd_create};
        let shm = memfd_create("seen-shmem", Backing::Shmem.memfd_flags()).expect("memfd_create");
        ftruncate(&shm, 4096).expect("ftruncate");
        let seen = Seen::of(&shm).expect("Seen::of");
        assert_eq!(seen.f_type, TMPFS_MAGIC, "{}", seen.describe());
        assert!(Backing::Shmem.matches(seen));
        assert!(!Backing::Huge2M.matches(seen) && !Backing::Huge1G.matches(seen));
        for b in [Backing::Huge2M, Backing::Huge1G] {
            let page = b.huge_page().unwrap();
            let Ok(fd) = memfd_create("seen-huge", b.memfd_flags()) else {
                continue; // no hugetlbfs, or no pages of this size
            };
            ftruncate(&fd, page).expect("ftruncate to one huge page");
            let seen = Seen::of(&fd).expect("Seen::of");
            assert_eq!(seen, Seen { f_type: HUGETLBFS_MAGIC, blksize: page }, "{}", seen.describe());
            assert!(b.matches(seen));
            assert!(!Backing::Shmem.matches(seen));
        }
    }

    #[test]
    fn pool_dirs() {
        assert_eq!(pool_dir(2 << 20), "/sys/kernel/mm/hugepages/hugepages-2048kB");
        assert_eq!(pool_dir(1 << 30), "/sys/kernel/mm/hugepages/hugepages-1048576kB");
    }
}
