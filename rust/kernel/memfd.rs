// SPDX-License-Identifier: GPL-2.0

//! memfd files (`memfd_create(2)`: shmem files, and with `MFD_HUGETLB` hugetlbfs files), as a
//! live update handler sees them.
//!
//! Outgoing: [`Memfd`] borrows an existing memfd. Under its inode lock ([`MemfdLock`]) a handler
//! reads the size and the seals, freezes the mapping (no truncate, no growth, no hole punching)
//! and pins the folios that exist ([`MemfdLock::pin_present_folios`]) **without** filling the
//! holes: a sparse memfd stays sparse. A pinned folio is a [`PinnedFolio`].
//!
//! Incoming: [`NewMemfd`] builds a memfd from scratch in the next kernel: seals, position, size,
//! and folios inserted one by one into its page cache ([`NewMemfd::insert_folio`]).
//!
//! Both kinds ([`Kind`]) are handled alike: hugetlbfs has the same freeze and "no new folios"
//! states as shmem (`hugetlbfs_freeze()`, `hugetlbfs_stop_new_folios()`), and a restored huge
//! page goes into a new hugetlbfs memfd through `hugetlb_insert_restored_folio()`.
//!
//! C headers: [`include/linux/memfd.h`](srctree/include/linux/memfd.h),
//! [`include/linux/shmem_fs.h`](srctree/include/linux/shmem_fs.h),
//! [`include/linux/hugetlb.h`](srctree/include/linux/hugetlb.h)

use crate::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::{
        File,
        LocalFile, //
    },
    kho::{
        HeldFolio,
        IncomingFolio, //
    },
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::aref::ARef, //
};
use core::ptr::NonNull;

/// The seals (`F_SEAL_*`, uAPI values).
pub mod seals {
    /// `F_SEAL_SEAL`: no more seals can be added.
    pub const SEAL: u32 = 0x1;
    /// `F_SEAL_SHRINK`: the file cannot shrink.
    pub const SHRINK: u32 = 0x2;
    /// `F_SEAL_GROW`: the file cannot grow.
    pub const GROW: u32 = 0x4;
    /// `F_SEAL_WRITE`: the contents cannot change.
    pub const WRITE: u32 = 0x8;
    /// `F_SEAL_FUTURE_WRITE`: no new writable mappings or writes.
    pub const FUTURE_WRITE: u32 = 0x10;
    /// `F_SEAL_EXEC`: the exec bits cannot change.
    pub const EXEC: u32 = 0x20;
}

/// `MFD_ALLOW_SEALING` (uAPI).
const MFD_ALLOW_SEALING: u32 = 0x2;
/// `MFD_NOEXEC_SEAL` (uAPI): no exec bits in the mode, sealed with `F_SEAL_EXEC`.
const MFD_NOEXEC_SEAL: u32 = 0x8;
/// `MFD_HUGETLB` (uAPI): a hugetlbfs file.
#[cfg(CONFIG_HUGETLBFS)]
const MFD_HUGETLB: u32 = 0x4;
/// `MFD_HUGE_SHIFT` (uAPI): where `MFD_HUGETLB` flags hold log2 of the huge page size.
#[cfg(CONFIG_HUGETLBFS)]
const MFD_HUGE_SHIFT: u32 = 26;

/// What backs a memfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// shmem (`memfd_create(2)` without `MFD_HUGETLB`): folios of any order.
    Shmem,
    /// hugetlbfs (`MFD_HUGETLB`): huge pages of `1 << order` pages each, every folio one.
    #[cfg(CONFIG_HUGETLBFS)]
    Hugetlb {
        /// The huge page order (9 for 2 MiB pages and 18 for 1 GiB ones on x86-64).
        order: u32,
    },
}

/// Whether this kernel has huge pages of `1 << order` pages (an hstate of that size).
#[cfg(CONFIG_HUGETLBFS)]
pub fn huge_page_order_supported(order: u32) -> bool {
    let Some(size) = (PAGE_SIZE as c_ulong).checked_shl(order) else {
        return false;
    };
    // SAFETY: Looks the size up in the hstate table, which never changes after boot.
    order > 0 && !unsafe { bindings::size_to_hstate(size) }.is_null()
}

/// The largest file size and position (`MAX_LFS_FILESIZE` on 64-bit).
pub const MAX_FILE_SIZE: i64 = i64::MAX;

/// How many folios [`MemfdLock::pin_present_folios`] pins per call of `memfd_pin_folios`
/// (a 128 KiB buffer).
///
/// A batch bounds the work `memfd_pin_folios` redoes when it has to migrate folios out of
/// CMA (KHO's scratch areas are CMA) and start over (`-EAGAIN`): it unpins and re-pins the
/// batch, not the file. Those migrations are what makes preserving a large memfd superlinear
/// (the share of a memfd in CMA grows with its size). A batch must not be small: with 64
/// folios a call, preserving 1 GiB took 2.3 times as long as the C handler's single call.
const PIN_BATCH: usize = 16384;

/// An existing memfd: a shmem file, or a hugetlbfs file made by `memfd_create(MFD_HUGETLB)`.
///
/// [`Memfd::new`] takes only unlinked shmem files (a tmpfs file has a name); [`Memfd::from_shmem`]
/// takes any shmem file, for a file that was a memfd once: an `O_TMPFILE` tmpfs file is unlinked
/// until `linkat(2)` gives it a name, which can happen at any time. [`Memfd::hugetlb`] takes
/// only unlinked files of hugetlbfs's internal mounts (what `memfd_create(MFD_HUGETLB)` makes),
/// which nobody can link: not a file of a hugetlbfs that userspace mounted, whose subpool a
/// handover would not carry.
///
/// # Invariants
///
/// `file` is a shmem file if `kind` is [`Kind::Shmem`], and a hugetlbfs memfd of huge pages of
/// order `order` if it is [`Kind::Hugetlb`].
pub struct Memfd<'a> {
    file: &'a LocalFile,
    kind: Kind,
}

impl<'a> Memfd<'a> {
    /// Returns `file` as a memfd, or `None` if it is not an unlinked shmem file.
    pub fn new(file: &'a LocalFile) -> Option<Self> {
        // SAFETY: `file` is a valid file for the duration of the call.
        if unsafe { bindings::shmem_file_is_unlinked(file.as_ptr()) } {
            // INVARIANT: Just checked.
            Some(Self {
                file,
                kind: Kind::Shmem,
            })
        } else {
            None
        }
    }

    /// Returns `file` as a hugetlbfs memfd, or `None` if it is not one.
    #[cfg(CONFIG_HUGETLBFS)]
    pub fn hugetlb(file: &'a LocalFile) -> Option<Self> {
        // SAFETY: `file` is a valid file for the duration of the call.
        if !unsafe { bindings::hugetlbfs_file_is_memfd(file.as_ptr()) } {
            return None;
        }
        // SAFETY: `file` is a hugetlbfs file (just checked), whose hstate never changes.
        let order = unsafe { bindings::hugetlbfs_file_page_order(file.as_ptr()) };
        // INVARIANT: Just checked.
        Some(Self {
            file,
            kind: Kind::Hugetlb { order },
        })
    }

    /// What backs the memfd.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Returns `file` as a memfd if it is a shmem file, linked or not.
    ///
    /// Whether a file is shmem never changes, so a file that [`Memfd::new`] took once is always
    /// taken here, even after `linkat(2)` gave it a name.
    pub fn from_shmem(file: &'a LocalFile) -> Option<Self> {
        // SAFETY: `file` is a valid file for the duration of the call.
        if unsafe { bindings::shmem_file(file.as_ptr()) } {
            // INVARIANT: Just checked.
            Some(Self {
                file,
                kind: Kind::Shmem,
            })
        } else {
            None
        }
    }

    fn inode(&self) -> *mut bindings::inode {
        // SAFETY: `file` is valid; `f_inode` never changes for an open file.
        unsafe { (*self.file.as_ptr()).f_inode }
    }

    /// A key for the memfd's backing object (its inode), the same for every file of it.
    pub fn inode_id(&self) -> usize {
        self.inode() as usize
    }

    /// The file size in bytes (`i_size`), read without the inode lock: a snapshot, exact
    /// while the mapping is frozen ([`MemfdLock::set_frozen`]).
    pub fn size(&self) -> i64 {
        // SAFETY: The inode is valid while `file` is; `i_size_read` needs no lock on 64-bit.
        unsafe { bindings::i_size_read(self.inode()) }
    }

    /// The file position (`f_pos`). It can change at any time; this is a snapshot.
    pub fn pos(&self) -> i64 {
        // SAFETY: `file` is valid. The position can be written concurrently (as in C, which
        // reads it without `f_pos_lock` too); a volatile read of an aligned 64-bit integer
        // cannot tear on 64-bit.
        unsafe { core::ptr::read_volatile(&raw const (*self.file.as_ptr()).f_pos) }
    }

    /// The seals (`F_SEAL_*`), read without the inode lock.
    ///
    /// Seals are only ever added, each `F_ADD_SEALS` with one store under the inode lock, so
    /// this has every seal added before the call; one added concurrently may be missing.
    /// [`MemfdLock::seals`] reads them under the lock.
    pub fn seals(&self) -> u32 {
        match self.kind {
            // SAFETY: `file` is a valid shmem file (type invariant), so its inode is a valid
            // shmem inode; the helper only reads its seals (`READ_ONCE`).
            Kind::Shmem => unsafe { bindings::shmem_seals(self.inode()) },
            // SAFETY: As above, for a hugetlbfs inode.
            #[cfg(CONFIG_HUGETLBFS)]
            Kind::Hugetlb { .. } => unsafe { bindings::hugetlbfs_seals(self.inode()) },
        }
    }

    /// The number of pages the file holds, read without the inode lock: see
    /// [`MemfdLock::present_pages`], which the inode lock does not make exact either (a fault
    /// adds a page without it).
    pub fn present_pages(&self) -> usize {
        match self.kind {
            // SAFETY: `file` is a valid shmem file (type invariant), so its inode is a shmem
            // inode; the helper only reads two counters (`READ_ONCE`).
            Kind::Shmem => unsafe { bindings::shmem_present_pages(self.inode()) as usize },
            // SAFETY: The inode is valid; the helper only reads its mapping's page count
            // (`READ_ONCE`). hugetlbfs pages are never swapped out.
            #[cfg(CONFIG_HUGETLBFS)]
            Kind::Hugetlb { .. } => unsafe { bindings::mapping_nrpages(self.inode()) as usize },
        }
    }

    /// Takes the inode lock (`inode_lock`).
    pub fn lock(&self) -> MemfdLock<'a> {
        // SAFETY: The inode is valid while `file` is; it is unlocked by `MemfdLock::drop`.
        unsafe { bindings::inode_lock(self.inode()) };
        // INVARIANT: The lock was just taken.
        MemfdLock {
            memfd: Memfd {
                file: self.file,
                kind: self.kind,
            },
        }
    }

    /// Refuses every new folio (or allows them again): while refused, a write into a hole fails
    /// with `EPERM` and a fault on one raises `SIGBUS`; pages that exist can still be read and
    /// written (`shmem_stop_new_folios`). Needs no lock.
    ///
    /// Once this returns with `stop` set, [`MemfdLock::present_pages`] and
    /// [`MemfdLock::pin_present_folios`] see every page the file will ever have until it is
    /// allowed again: a walk after this is the last one a handover needs.
    ///
    /// For a hugetlbfs memfd, stopping sleeps until every folio insertion in progress in any
    /// hugetlbfs file is done (it takes each hugetlb fault mutex once): it must not be called
    /// with a folio lock or a hugetlb fault mutex held.
    pub fn stop_new_folios(&self, stop: bool) {
        match self.kind {
            // SAFETY: `file` is a shmem file (type invariant), so its inode is a valid shmem
            // inode; the function changes the flag with atomic bit operations and needs no
            // lock.
            Kind::Shmem => unsafe { bindings::shmem_stop_new_folios(self.inode(), stop) },
            // SAFETY: `file` is a hugetlbfs file (type invariant); the function needs no lock,
            // and the caller holds none that a fault mutex holder waits for (see above).
            #[cfg(CONFIG_HUGETLBFS)]
            Kind::Hugetlb { .. } => unsafe {
                bindings::hugetlbfs_stop_new_folios(self.inode(), stop)
            },
        }
    }

    /// Takes the inode lock if it is free (`inode_trylock`), or returns `None`.
    pub fn try_lock(&self) -> Option<MemfdLock<'a>> {
        // SAFETY: The inode is valid while `file` is; if taken, it is unlocked by
        // `MemfdLock::drop`.
        if unsafe { bindings::inode_trylock(self.inode()) } == 0 {
            return None;
        }
        // INVARIANT: The lock was just taken.
        Some(MemfdLock {
            memfd: Memfd {
                file: self.file,
                kind: self.kind,
            },
        })
    }
}

/// A memfd with its inode lock held.
///
/// # Invariants
///
/// The inode lock of `memfd` is held (exclusive) by `self`.
pub struct MemfdLock<'a> {
    memfd: Memfd<'a>,
}

impl MemfdLock<'_> {
    /// The file size in bytes (`i_size`).
    pub fn size(&self) -> i64 {
        // SAFETY: The inode is valid.
        unsafe { bindings::i_size_read(self.memfd.inode()) }
    }

    /// The number of pages the file holds: those in the page cache (`nrpages`) plus those
    /// swapped out (`shmem_inode_info::swapped`). Holes are not counted.
    ///
    /// Both change under their own locks (a fault can add a page inside the size while the
    /// inode lock is held); this is a snapshot of each.
    pub fn present_pages(&self) -> usize {
        self.memfd.present_pages()
    }

    /// The seals (`F_SEAL_*`).
    pub fn seals(&self) -> Result<u32> {
        // SAFETY: `file` is valid.
        let s = unsafe { bindings::memfd_get_seals(self.memfd.file.as_ptr()) };
        u32::try_from(s).map_err(|_| Error::from_errno(s))
    }

    /// Freezes the mapping (or thaws it): while frozen, the size cannot change and no hole can
    /// be punched (`EPERM`); writes and faults inside the size still work.
    pub fn set_frozen(&self, frozen: bool) {
        match self.memfd.kind {
            // SAFETY: The inode lock is held (type invariant), as `shmem_freeze` requires, and
            // `memfd` is a shmem file.
            Kind::Shmem => unsafe { bindings::shmem_freeze(self.memfd.inode(), frozen) },
            // SAFETY: The inode lock is held (type invariant), as `hugetlbfs_freeze` requires,
            // and `memfd` is a hugetlbfs file.
            #[cfg(CONFIG_HUGETLBFS)]
            Kind::Hugetlb { .. } => unsafe {
                bindings::hugetlbfs_freeze(self.memfd.inode(), frozen)
            },
        }
    }

    /// Pins every folio that exists in the file, in index order, and hands each to `f` with
    /// where it is ([`FolioInfo`]).
    ///
    /// Holes are skipped: no folio is allocated for them (a swapped-out folio is read back).
    /// Each folio is handed over once, even when it spans several pages. The time taken is
    /// linear in the number of folios and independent of the size of the holes.
    pub fn pin_present_folios(
        &self,
        mut f: impl FnMut(PinnedFolio, FolioInfo) -> Result,
    ) -> Result {
        let size = self.size();
        if size <= 0 {
            return Ok(());
        }
        let size = size as u64;
        let npages = usize::try_from(size.div_ceil(PAGE_SIZE as u64)).map_err(|_| EFBIG)?;
        let file = self.memfd.file.as_ptr();
        // SAFETY: `file` is valid; `f_mapping` of a shmem file never changes.
        let mapping = unsafe { (*file).f_mapping };
        // SAFETY: `mapping` is valid; only the field address is taken.
        let xa = unsafe { &raw mut (*mapping).i_pages };
        // A small file needs a small buffer (the allocation is most of the cost of pinning a
        // one-page memfd).
        let batch = PIN_BATCH.min(npages);
        let mut raw = KVVec::<*mut bindings::folio>::new();
        raw.resize(batch, core::ptr::null_mut(), GFP_KERNEL)?;
        // A file without holes needs no search for them. The search steps through every
        // entry of the page cache (`page_cache_next_miss`), which with lockdep's RCU checks
        // cost a seventh of preserving a dense 256 MiB memfd. The frozen mapping cannot lose
        // pages, and each index holds at most one page, so a file that holds at least as many
        // pages as its size, none of them at or beyond the end of the file, has no hole. Pages
        // beyond the end (`fallocate(FALLOC_FL_KEEP_SIZE)`, or a large folio straddling it)
        // count in `present_pages` too, so a file with any takes the search: pinning a hole
        // would allocate a page for it, which `stop_new_folios` refuses.
        let dense = self.present_pages() >= npages && {
            let mut idx = npages as c_ulong;
            // SAFETY: `xa` is the mapping's valid xarray; `xa_find` takes the RCU read lock
            // itself. XA_PRESENT (8) matches folios and swap entries.
            unsafe { bindings::xa_find(xa, &mut idx, c_ulong::MAX, 8) }.is_null()
        };
        // First index not handed over yet.
        let mut next = 0usize;
        while next < npages {
            let (start, end) = if dense {
                (next, npages)
            } else {
                let mut idx = next as c_ulong;
                // SAFETY: `xa` is the mapping's valid xarray; `xa_find` takes the RCU read
                // lock itself. XA_PRESENT (8) matches folios and swap entries.
                let entry = unsafe { bindings::xa_find(xa, &mut idx, (npages - 1) as c_ulong, 8) };
                if entry.is_null() {
                    break;
                }
                let start = idx as usize;
                let miss = {
                    let _rcu = crate::sync::rcu::read_lock();
                    // SAFETY: `mapping` is valid; the RCU read lock is held, as required.
                    let m = unsafe {
                        bindings::page_cache_next_miss(mapping, start as c_ulong, npages - start)
                    };
                    m as usize
                };
                // A swap entry counts as a miss: pin that one index, which reads it back.
                let end = if miss > start {
                    miss.min(npages)
                } else {
                    start + 1
                };
                (start, end)
            };
            let mut pos = start;
            while pos < end {
                let mut offset: c_ulong = 0;
                let last = ((end << PAGE_SHIFT) as u64 - 1).min(size - 1);
                // SAFETY: `file` is a shmem or hugetlbfs file (type invariant), as
                // `memfd_pin_folios` takes, `raw` has room for `batch` folios and
                // `start <= last < size`.
                let n = unsafe {
                    bindings::memfd_pin_folios(
                        file,
                        (pos << PAGE_SHIFT) as i64,
                        last as i64,
                        raw.as_mut_ptr(),
                        batch as u32,
                        &mut offset,
                    )
                };
                let n = usize::try_from(n).map_err(|_| Error::from_errno(n as c_int))?;
                if n == 0 || n > batch {
                    return Err(EINVAL);
                }
                // INVARIANT: `memfd_pin_folios` returned `n` folios, each pinned once; the
                // batch hands each out or unpins it.
                let pinned = PinnedBatch {
                    raw: raw.get(..n).ok_or(EINVAL)?,
                    next: 0,
                };
                for folio in pinned {
                    let info = folio.info();
                    let fend = info.index + info.nr_pages;
                    if fend <= next {
                        // Already handed over (a large folio met again): drop unpins it.
                        continue;
                    }
                    next = fend;
                    pos = pos.max(fend);
                    f(folio, info)?;
                }
            }
            next = next.max(end);
        }
        Ok(())
    }
}

impl Drop for MemfdLock<'_> {
    fn drop(&mut self) {
        // SAFETY: The inode lock is held by `self` (type invariant).
        unsafe { bindings::inode_unlock(self.memfd.inode()) };
    }
}

/// Folios just pinned by `memfd_pin_folios`, handed out one by one as [`PinnedFolio`]s.
///
/// # Invariants
///
/// Each of `raw[next..]` is a valid folio pinned once on behalf of `self`.
struct PinnedBatch<'a> {
    raw: &'a [*mut bindings::folio],
    next: usize,
}

impl Iterator for PinnedBatch<'_> {
    type Item = PinnedFolio;

    fn next(&mut self) -> Option<PinnedFolio> {
        let p = *self.raw.get(self.next)?;
        self.next += 1;
        // INVARIANT: The pin on `p` moves from the batch to the `PinnedFolio`.
        NonNull::new(p).map(|folio| PinnedFolio { folio })
    }
}

impl Drop for PinnedBatch<'_> {
    fn drop(&mut self) {
        for &p in self.raw.get(self.next..).unwrap_or(&[]) {
            // SAFETY: The batch still owns this pin (type invariant).
            unsafe { bindings::unpin_folio(p) };
        }
    }
}

/// A folio of a memfd pinned with `FOLL_PIN` (it cannot be migrated, swapped or freed
/// while pinned).
///
/// # Invariants
///
/// `folio` is a valid folio on which `self` owns one `FOLL_PIN` pin.
pub struct PinnedFolio {
    folio: NonNull<bindings::folio>,
}

// SAFETY: A pin can be dropped from any thread.
unsafe impl Send for PinnedFolio {}
// SAFETY: Shared references only read the folio's attributes.
unsafe impl Sync for PinnedFolio {}

/// Where a folio is: its first page frame, its index in its file and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioInfo {
    /// The page frame number of the folio's first page.
    pub pfn: u64,
    /// The index (in pages) of the folio in its file.
    pub index: usize,
    /// The number of pages in the folio.
    pub nr_pages: usize,
}

impl PinnedFolio {
    /// The folio's page frame number, index and size, read in one call.
    pub fn info(&self) -> FolioInfo {
        let mut index: c_ulong = 0;
        let mut nr: c_ulong = 0;
        // SAFETY: The folio is valid (type invariant) and, pinned in a page cache, keeps its
        // index; the out-pointers are valid locals.
        let pfn = unsafe { bindings::folio_pfn_index_nr(self.folio.as_ptr(), &mut index, &mut nr) };
        FolioInfo {
            pfn: pfn as u64,
            index: index as usize,
            nr_pages: nr as usize,
        }
    }

    /// The page frame number of the folio's first page.
    pub fn pfn(&self) -> u64 {
        // SAFETY: The folio is valid (type invariant).
        unsafe { bindings::folio_pfn(self.folio.as_ptr()) as u64 }
    }

    /// The index (in pages) of the folio in its file.
    pub fn index(&self) -> usize {
        // SAFETY: The folio is valid; a pinned page-cache folio keeps its index.
        (unsafe { bindings::folio_pos(self.folio.as_ptr()) } as u64 >> PAGE_SHIFT) as usize
    }

    /// The number of pages in the folio.
    pub fn nr_pages(&self) -> usize {
        // SAFETY: The folio is valid.
        unsafe { bindings::folio_nr_pages(self.folio.as_ptr()) as usize }
    }

    /// Makes the folio safe to hand over: marks it dirty (so the next kernel never reclaims
    /// it as clean) and, if it was never written (fallocated), zeroes it and marks it
    /// uptodate. This is what upstream's memfd handler does to every folio, except that a
    /// folio already dirty and uptodate is left alone without taking its lock: a pinned folio
    /// is never written back or reclaimed (which would clean it), and a shmem folio never
    /// loses `PG_uptodate`.
    pub fn prepare_for_handover(&self) {
        // SAFETY: The folio is valid and pinned, in the mapping of a memfd (`PinnedFolio`s are
        // only made by `MemfdLock::pin_present_folios`): the function uses only the generic
        // folio operations (a hugetlbfs folio in a page cache is dirty and uptodate, so it
        // returns at once). It may take the folio lock, which may sleep, which is allowed here
        // (the callers run in process context).
        unsafe { bindings::shmem_prepare_folio_for_handover(self.folio.as_ptr()) };
    }
}

// SAFETY: `as_folio` returns the pinned folio, valid and unmovable while `self` lives.
unsafe impl HeldFolio for PinnedFolio {
    fn as_folio(&self) -> *mut bindings::folio {
        self.folio.as_ptr()
    }
}

impl Drop for PinnedFolio {
    fn drop(&mut self) {
        // SAFETY: `self` owns one pin on the folio (type invariant).
        unsafe { bindings::unpin_folio(self.folio.as_ptr()) };
    }
}

/// A memfd being built in the next kernel (created with `MFD_ALLOW_SEALING`, and with
/// `MFD_NOEXEC_SEAL` by [`NewMemfd::new_noexec`]; named `memfd:`). [`NewMemfd::into_file`]
/// hands it out.
///
/// # Invariants
///
/// `file` is a memfd created by `memfd_alloc_file`, of the kind `kind`; `added` pages were
/// inserted into its page cache by [`NewMemfd::insert_folio`] and not yet accounted with
/// `shmem_account_restored_pages` (always 0 for hugetlbfs); `size` is its `i_size`; no folio of
/// its page cache reaches page index `end` or beyond.
pub struct NewMemfd {
    file: Option<ARef<File>>,
    kind: Kind,
    added: c_long,
    size: i64,
    end: usize,
}

impl NewMemfd {
    /// Creates an empty memfd that allows sealing, with mode 0777.
    pub fn new() -> Result<Self> {
        Self::alloc(MFD_ALLOW_SEALING, Kind::Shmem)
    }

    /// Creates an empty memfd as `memfd_create(MFD_NOEXEC_SEAL)` does: mode 0666 (no exec bits)
    /// and sealed with `F_SEAL_EXEC`; it allows more seals.
    ///
    /// Adding `F_SEAL_EXEC` to a memfd made by [`NewMemfd::new`] would also add the write seals
    /// (`memfd_add_seals` makes a file with exec bits W^X), so a memfd that must come back
    /// writable and sealed with `F_SEAL_EXEC` is made with this.
    pub fn new_noexec() -> Result<Self> {
        Self::alloc(MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL, Kind::Shmem)
    }

    /// Creates an empty hugetlbfs memfd of huge pages of `1 << order` pages, as
    /// `memfd_create(MFD_HUGETLB)` does; with `noexec`, as [`NewMemfd::new_noexec`] does.
    /// `EOPNOTSUPP` if this kernel has no huge pages of that size.
    #[cfg(CONFIG_HUGETLBFS)]
    pub fn new_hugetlb(order: u32, noexec: bool) -> Result<Self> {
        if !huge_page_order_supported(order) {
            return Err(EOPNOTSUPP);
        }
        let shift = order + PAGE_SHIFT as u32;
        let mut flags = MFD_ALLOW_SEALING | MFD_HUGETLB | (shift << MFD_HUGE_SHIFT);
        if noexec {
            flags |= MFD_NOEXEC_SEAL;
        }
        Self::alloc(flags, Kind::Hugetlb { order })
    }

    /// Creates an empty memfd; `flags` are `MFD_*` flags, with `MFD_HUGETLB` and the page size
    /// of `kind` for a hugetlbfs one.
    fn alloc(flags: u32, kind: Kind) -> Result<Self> {
        // SAFETY: The name is a valid NUL-terminated string. `flags` make a file of `kind`
        // (callers pass `MFD_HUGETLB` with the page size of `kind` exactly for a hugetlbfs
        // one, whose hstate exists), as the type invariant and `insert_folio` need.
        let f = from_err_ptr(unsafe { bindings::memfd_alloc_file(c"".as_char_ptr(), flags) })?;
        let f = NonNull::new(f).ok_or(ENOMEM)?;
        // SAFETY: `memfd_alloc_file` returned a new file with one reference, which we own;
        // `File` is a transparent wrapper of `struct file`.
        let file = unsafe { ARef::from_raw(f.cast::<File>()) };
        // INVARIANT: A fresh memfd with nothing inserted.
        Ok(Self {
            file: Some(file),
            kind,
            added: 0,
            size: 0,
            end: 0,
        })
    }

    fn raw(&self) -> *mut bindings::file {
        self.file
            .as_ref()
            .map_or(core::ptr::null_mut(), |f| f.as_ptr())
    }

    fn inode(&self) -> *mut bindings::inode {
        // SAFETY: `file` is valid until `into_file` or `drop` takes it.
        unsafe { (*self.raw()).f_inode }
    }

    /// Adds seals (`F_SEAL_*`), as `fcntl(F_ADD_SEALS)` would.
    ///
    /// Like [`NewMemfd::set_pos`] and [`NewMemfd::set_size`], it takes `&mut self`: it changes
    /// the file, which only the builder's owner may do before [`NewMemfd::into_file`].
    pub fn add_seals(&mut self, seals: u32) -> Result {
        // SAFETY: `file` is a valid memfd.
        to_result(unsafe { bindings::memfd_add_seals(self.raw(), seals) })
    }

    /// Sets the file position; `EINVAL` if it is negative.
    pub fn set_pos(&mut self, pos: i64) -> Result {
        // SAFETY: `file` is valid and not yet visible to anyone else.
        let r = unsafe { bindings::vfs_setpos(self.raw(), pos, MAX_FILE_SIZE) };
        if r < 0 {
            return Err(Error::from_errno(r as c_int));
        }
        Ok(())
    }

    /// Sets the size; `EINVAL` if it is negative.
    pub fn set_size(&mut self, size: i64) -> Result {
        if size < 0 {
            return Err(EINVAL);
        }
        // SAFETY: The inode is valid; nobody else can see the file yet, so no lock is needed
        // to serialize size updates.
        unsafe { bindings::i_size_write(self.inode(), size) };
        // INVARIANT: The size just written.
        self.size = size;
        Ok(())
    }

    /// The file size in bytes.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Inserts `folio` into the page cache at page `index`, charged to the current task's
    /// memory cgroup and accounted to the file, and marked dirty (shmem has no other copy of
    /// it). A folio that is not `uptodate` reads as zeroes until written.
    ///
    /// `EINVAL` if the folio does not start within the size or `index` is not aligned to the
    /// folio's size; `EEXIST` if the range is already populated; `ENOMEM`/`ENOSPC` from
    /// charging and accounting. On error the folio is freed.
    ///
    /// In a hugetlbfs memfd the folio must be one huge page of the file's size (`EINVAL`
    /// otherwise) and hold data (`uptodate`: hugetlbfs has no folio that reads as zeroes); it
    /// becomes an in-use surplus huge page, given back to the page allocator when the file
    /// drops it (see `hugetlb_insert_restored_folio()`).
    pub fn insert_folio(&mut self, folio: IncomingFolio, index: usize, uptodate: bool) -> Result {
        let nr = folio.nr_pages();
        let size_pages = (self.size() as u64).div_ceil(PAGE_SIZE as u64);
        // The folio's last index must not overflow.
        index.checked_add(nr).ok_or(EINVAL)?;
        // A large folio may reach past the end of the file (shmem allocates such folios).
        if index % nr != 0 || index as u64 >= size_pages {
            return Err(EINVAL);
        }
        #[cfg(CONFIG_HUGETLBFS)]
        if let Kind::Hugetlb { order } = self.kind {
            if folio.order() != order || !uptodate {
                return Err(EINVAL);
            }
            let f = folio.into_raw().as_ptr();
            // SAFETY: `f` is a folio we own (one reference), in no mapping and seen by no one
            // else, of the file's huge page order; the file is a new hugetlbfs memfd of this
            // builder, on an internal mount, that no one else can see; `index` is aligned to
            // the huge page and starts within the size (checked above), so `index >> order`
            // is the huge page's index. The function consumes the reference, on error too.
            let err = unsafe {
                bindings::hugetlb_insert_restored_folio(self.raw(), f, (index >> order) as c_ulong)
            };
            to_result(err)?;
            // INVARIANT: The huge page ends at `index + nr` (no overflow: checked above).
            self.end = self.end.max(index + nr);
            return Ok(());
        }
        let f = folio.into_raw().as_ptr();
        // SAFETY: `f` is a folio we own (one reference) that is in no mapping and that no one
        // else can see; the inode is the memfd's; `index` is aligned and starts within the
        // size (checked above). The function consumes the reference, on error too (the folio
        // and its charge are then freed); it refuses a range that is not empty.
        let err = unsafe {
            bindings::shmem_insert_restored_folio(self.inode(), f, index as c_ulong, uptodate)
        };
        to_result(err)?;
        // INVARIANT: `nr` more pages were inserted, below `index + nr` (no overflow: checked
        // above).
        self.added += nr as c_long;
        self.end = self.end.max(index + nr);
        Ok(())
    }

    /// Inserts the folios of `run` (which is left empty), as [`NewMemfd::insert_folio`] does for
    /// each, in one batch: for a file of many folios, the page cache is walked from one slot to
    /// the next, and the blocks, the statistics and the LRU lists are updated once per batch.
    ///
    /// `EINVAL`, with nothing inserted (the run's folios are freed), if the run does not start
    /// at or after the end of every folio inserted before (by either method) or its last folio
    /// does not start within the size. On an error of the page cache or the accounting
    /// (`ENOMEM`, `ENOSPC`) the folios before the one that failed are inserted and the rest are
    /// freed. In a hugetlbfs memfd each folio is inserted by [`NewMemfd::insert_folio`].
    pub fn insert_folios(&mut self, run: &mut FolioRun) -> Result {
        let n = run.len;
        if n == 0 {
            return Ok(());
        }
        let size_pages = (self.size() as u64).div_ceil(PAGE_SIZE as u64);
        let last = run.index.get(n - 1).copied().unwrap_or(c_ulong::MAX);
        if (run.start as u64) < self.end as u64 || last as u64 >= size_pages {
            run.clear();
            return Err(EINVAL);
        }
        let end = run.end;
        #[cfg(CONFIG_HUGETLBFS)]
        if let Kind::Hugetlb { .. } = self.kind {
            let mut r = Ok(());
            for i in 0..n {
                let f = core::mem::take(&mut run.folios[i]);
                let Some(folio) = NonNull::new(f) else {
                    continue;
                };
                // SAFETY: The run owned this folio's reference, given up by `into_raw` in
                // `push` (its place is null now).
                let folio = unsafe { IncomingFolio::from_raw(folio) };
                if r.is_ok() {
                    let (index, uptodate) = (run.index[i], run.uptodate & (1 << i) != 0);
                    r = self.insert_folio(folio, index, uptodate);
                }
            }
            run.forget();
            return r;
        }
        let mut inserted: c_long = 0;
        // SAFETY: `run.folios[..n]` are folios restored from the previous kernel whose
        // references the run owns: in no mapping, and seen by no one else (`FolioRun`
        // invariant). The inode is the memfd's, a shmem one, not yet visible to anyone else.
        // Each index is aligned to its folio and starts after the end of the folio before it
        // (`FolioRun` invariant), the first at or after `end` (checked above), so every range
        // is empty; the last starts within the size (checked above), so all do; `n <=
        // FolioRun::MAX <= BITS_PER_LONG`. The function consumes every reference, on error
        // too.
        let err = unsafe {
            bindings::shmem_insert_restored_folios(
                self.inode(),
                run.folios.as_mut_ptr(),
                run.index.as_ptr(),
                run.uptodate,
                n as u32,
                &mut inserted,
            )
        };
        // The references were given away.
        run.forget();
        // INVARIANT: `inserted` more pages were inserted, all below the run's end.
        self.added += inserted;
        self.end = end;
        to_result(err)
    }

    fn recalc(&mut self) {
        if self.added != 0 && !self.raw().is_null() {
            // SAFETY: The inode is valid; `added` pages were inserted and not yet accounted.
            unsafe { bindings::shmem_account_restored_pages(self.inode(), self.added) };
            // INVARIANT: Accounted now.
            self.added = 0;
        }
    }

    /// Finishes the memfd and returns its file.
    pub fn into_file(mut self) -> Result<ARef<File>> {
        self.recalc();
        self.file.take().ok_or(EINVAL)
    }
}

impl Drop for NewMemfd {
    fn drop(&mut self) {
        // Account what was inserted before the file (and its folios) go away.
        self.recalc();
    }
}

/// Folios restored for a [`NewMemfd`], to be inserted in one call of
/// [`NewMemfd::insert_folios`], in index order. Dropping it frees them.
///
/// # Invariants
///
/// `folios[..len]` are folios restored from the previous kernel that `self` owns (one reference
/// each), in no mapping and seen by no one else; `index[i]` is aligned to the size of
/// `folios[i]` and at or after the end of `folios[i - 1]`; `start` is `index[0]` and `end` the
/// end of the last folio (both 0 when empty); bit `i` of `uptodate` says whether `folios[i]`
/// holds data.
pub struct FolioRun {
    folios: [*mut bindings::folio; FolioRun::MAX],
    index: [c_ulong; FolioRun::MAX],
    uptodate: c_ulong,
    len: usize,
    start: usize,
    end: usize,
}

// SAFETY: The folios are owned by `self` and can be freed from any thread.
unsafe impl Send for FolioRun {}

impl FolioRun {
    /// The most folios a run holds.
    pub const MAX: usize = 32;

    /// An empty run.
    pub fn new() -> Self {
        // INVARIANT: Empty.
        Self {
            folios: [core::ptr::null_mut(); Self::MAX],
            index: [0; Self::MAX],
            uptodate: 0,
            len: 0,
            start: 0,
            end: 0,
        }
    }

    /// Whether the run holds no folio.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the run holds [`FolioRun::MAX`] folios.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == Self::MAX
    }

    /// Appends `folio`, to go at page `index`; a folio that is not `uptodate` reads as zeroes
    /// until written.
    ///
    /// `EINVAL` (the folio is freed) if `index` is not aligned to the folio's size, the folio
    /// would end beyond the largest page index, or it does not start at or after the end of
    /// the folio before it; `ENOSPC` (the folio is freed) if the run is full.
    #[inline]
    pub fn push(&mut self, folio: IncomingFolio, index: usize, uptodate: bool) -> Result {
        let nr = folio.nr_pages();
        let end = index.checked_add(nr).ok_or(EINVAL)?;
        if index & (nr - 1) != 0 || (self.len > 0 && index < self.end) {
            return Err(EINVAL);
        }
        let i = self.len;
        if i >= Self::MAX {
            return Err(ENOSPC);
        }
        if i == 0 {
            self.start = index;
        }
        // INVARIANT: The folio's reference moves to the run; `index` is aligned and after the
        // previous folio (checked above).
        self.folios[i] = folio.into_raw().as_ptr();
        self.index[i] = index as c_ulong;
        self.uptodate |= c_ulong::from(uptodate) << i;
        self.end = end;
        self.len = i + 1;
        Ok(())
    }

    /// Empties the run without freeing its folios (their references were given away).
    fn forget(&mut self) {
        // INVARIANT: Empty.
        self.len = 0;
        self.uptodate = 0;
        self.start = 0;
        self.end = 0;
    }

    /// Frees the folios and empties the run.
    fn clear(&mut self) {
        for &f in self.folios.iter().take(self.len) {
            // SAFETY: The run owns one reference of each of its folios (type invariant).
            unsafe { bindings::folio_put(f) };
        }
        self.forget();
    }
}

impl Default for FolioRun {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FolioRun {
    fn drop(&mut self) {
        self.clear();
    }
}

/// The fields of the "memfd-v2" handover ([`include/linux/kho/abi/memfd.h`]) that name memory
/// preserved for the memfd handler, for [`kho::HandoverPage::vmalloc`] and
/// [`kho::HandoverArray::pfn`](crate::kho::HandoverArray::pfn).
///
/// [`include/linux/kho/abi/memfd.h`]: srctree/include/linux/kho/abi/memfd.h
/// [`kho::HandoverPage::vmalloc`]: crate::kho::HandoverPage::vmalloc
pub mod handover {
    use crate::{
        bindings,
        kho::{
            PfnField,
            VmallocField, //
        },
        prelude::*,
    };

    /// `folios` of `struct memfd_luo_ser` (the page a handle names): the folio array.
    pub struct Folios;

    // SAFETY: By the memfd-v2 ABI (`MEMFD_LUO_FH_COMPATIBLE`), `folios` of `struct
    // memfd_luo_ser` is the `struct kho_vmalloc` of the array of `struct memfd_luo_folio_ser`
    // (16 bytes each: two little-endian words on the supported architectures) that the writer
    // preserved with `kho_preserve_vmalloc()` for the reader.
    unsafe impl VmallocField for Folios {
        const FORMAT: &'static CStr =
            match CStr::from_bytes_with_nul(bindings::MEMFD_LUO_FH_COMPATIBLE) {
                Ok(s) => s,
                Err(_) => panic!("MEMFD_LUO_FH_COMPATIBLE is not a C string"),
            };
        const OFFSET: usize = core::mem::offset_of!(bindings::memfd_luo_ser, folios);
        type Elem = [u64; 2];
    }

    /// `pfn` of `struct memfd_luo_folio_ser` (an element of [`Folios`]): `u64 pfn:52`, the low
    /// bits of the first word.
    pub struct FolioPfn;

    // SAFETY: By the memfd-v2 ABI, `pfn` is the page frame number of a folio that the writer
    // preserved with `kho_preserve_folio()` for the reader, in the low 52 bits of the first
    // word of the entry (a bitfield; the entry is 16 bytes, checked below).
    unsafe impl PfnField for FolioPfn {
        type Array = Folios;
        const WORD: usize = 0;
        const BITS: u32 = 52;
    }

    const _: () = assert!(size_of::<bindings::memfd_luo_folio_ser>() == size_of::<[u64; 2]>());

    /// `memfd.folios` of `struct hugetlb_memfd_rs_ser`: the folio array of a hugetlbfs memfd.
    #[cfg(CONFIG_HUGETLBFS)]
    pub struct HugeFolios;

    // SAFETY: By the hugetlb-memfd-rs-v1 ABI (`HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE`,
    // `include/linux/kho/abi/hugetlb_memfd_rs.h`), `memfd.folios` of `struct
    // hugetlb_memfd_rs_ser` is the `struct kho_vmalloc` of the array of `struct
    // memfd_luo_folio_ser` that the writer preserved with `kho_preserve_vmalloc()` for the
    // reader, as in memfd-v2.
    #[cfg(CONFIG_HUGETLBFS)]
    unsafe impl VmallocField for HugeFolios {
        const FORMAT: &'static CStr =
            match CStr::from_bytes_with_nul(bindings::HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE) {
                Ok(s) => s,
                Err(_) => panic!("HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE is not a C string"),
            };
        const OFFSET: usize = core::mem::offset_of!(bindings::hugetlb_memfd_rs_ser, memfd)
            + core::mem::offset_of!(bindings::memfd_luo_ser, folios);
        type Elem = [u64; 2];
    }

    /// `pfn` of an element of [`HugeFolios`], as [`FolioPfn`] for memfd-v2.
    #[cfg(CONFIG_HUGETLBFS)]
    pub struct HugeFolioPfn;

    // SAFETY: By the hugetlb-memfd-rs-v1 ABI, `pfn` is the page frame number of a huge page
    // that the writer preserved with `kho_preserve_folio()` for the reader, in the low 52 bits
    // of the first word of the entry, as in memfd-v2.
    #[cfg(CONFIG_HUGETLBFS)]
    unsafe impl PfnField for HugeFolioPfn {
        type Array = HugeFolios;
        const WORD: usize = 0;
        const BITS: u32 = 52;
    }
}
