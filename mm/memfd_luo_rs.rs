// SPDX-License-Identifier: GPL-2.0

//! The memfd live update handler, in Rust (`CONFIG_LIVEUPDATE_MEMFD_RUST`).
//!
//! It carries a memfd across a kexec in the "memfd-v2" format of upstream's C handler
//! (`mm/memfd_luo.c`, `include/linux/kho/abi/memfd.h`), byte for byte: a memfd preserved by
//! either handler is retrieved by the other. It registers through
//! [`kernel::liveupdate::Registration`], so it works under the C LUO and the Rust LUO.
//!
//! Where it deliberately differs from the C handler:
//! - **Holes stay holes.** Only the folios that exist are pinned and preserved; the C handler
//!   allocates (and preserves) a zeroed page for every hole. The format allows it, since
//!   every folio entry carries its index, and the C reader handles it.
//! - Folios are pinned in batches of 16384 per `memfd_pin_folios` call, range by populated
//!   range (a file without holes is one range, found without a search), and preserved 1024
//!   per `kho_preserve_folios` call (one round trip of KHO's lock). A folio already dirty
//!   and uptodate is not locked (the C handler locks every folio to mark it).
//! - A retrieve that fails setting up the file (seals, size) frees the folios (C leaks them).
//! - Everything read from the previous kernel is validated: before any folio is restored, the
//!   page holding `memfd_luo_ser`, its reserved `flags` (must be 0), the seals, size and
//!   position, `nr_folios` against the size and the folio array, every chunk of the array,
//!   and every entry's flags (only DIRTY and UPTODATE) and index (inside the size, strictly
//!   increasing); then, folio by folio, that the pfn starts a preserved folio and that the
//!   folio fits (aligned, starting inside the size, no overlap). A bad handover is refused
//!   with an errno, never a panic.
//!
//! Two fixes of upstream's C handler, which this series makes in both handlers: a memfd sealed
//! with `F_SEAL_EXEC` comes back without exec bits and writable, as `MFD_NOEXEC_SEAL` made it
//! (upstream's comes back 0777 and write-sealed), and seals added after `PRESERVE_FD` are read
//! again at `freeze` (upstream drops them).
//!
//! See `Documentation/core-api/liveupdate-rust.rst`.

use core::marker::PhantomData;
use kernel::{
    fs::File,
    kho::{
        self,
        PfnField,
        VmallocField, //
    },
    kho::{
        bytes,
        ArrayBuilder,
        Handover,
        HandoverArray,
        HandoverPage,
        IncomingFolios,
        PreservedArray,
        PreservedFolio,
        PreservedPage,
        VmallocDescriptor, //
    },
    liveupdate::{
        self,
        FileHandler,
        Registration,
        RetrieveStatus, //
    },
    memfd::{
        handover::{
            FolioPfn,
            Folios, //
        },
        seals,
        FolioRun,
        Kind,
        Memfd,
        MemfdLock,
        NewMemfd,
        PinnedFolio,
        MAX_FILE_SIZE, //
    },
    page::PAGE_SIZE,
    prelude::*,
    sync::aref::ARef,
    time::{
        delay::fsleep,
        Delta, //
    },
};

module! {
    type: MemfdLuo,
    name: "memfd_luo_rs",
    authors: ["The LUO Rust team"],
    description: "memfd live update handler (memfd-v2), in Rust",
    license: "GPL",
}

/// The "memfd-v2" format (`include/linux/kho/abi/memfd.h`), as pure functions.
mod abi {
    use super::*;

    /// The handler's compatible string (`MEMFD_LUO_FH_COMPATIBLE`).
    pub(crate) const COMPATIBLE: &CStr = c"memfd-v2";
    /// The compatible string of hugetlbfs memfds (`HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE`).
    #[cfg(CONFIG_HUGETLBFS)]
    pub(crate) const HUGE_COMPATIBLE: &CStr = c"hugetlb-memfd-rs-v1";

    /// `MEMFD_LUO_FOLIO_DIRTY`.
    pub(crate) const FOLIO_DIRTY: u64 = 1;
    /// `MEMFD_LUO_FOLIO_UPTODATE`.
    pub(crate) const FOLIO_UPTODATE: u64 = 2;
    const FOLIO_FLAGS: u64 = FOLIO_DIRTY | FOLIO_UPTODATE;

    /// `MEMFD_LUO_ALL_SEALS`.
    pub(crate) const ALL_SEALS: u32 = seals::SEAL
        | seals::SHRINK
        | seals::GROW
        | seals::WRITE
        | seals::FUTURE_WRITE
        | seals::EXEC;

    /// Size of `struct memfd_luo_ser`.
    pub(crate) const SER_SIZE: usize = 48;
    /// Size of `struct memfd_luo_folio_ser`.
    pub(crate) const FOLIO_SER_SIZE: usize = 16;
    /// Size of `struct hugetlb_memfd_rs_ser`: the memfd-v2 header, then `page_shift` and
    /// `reserved`.
    pub(crate) const HUGE_SER_SIZE: usize = SER_SIZE + 8;

    /// Width of the `pfn` bitfield, in the first word of a folio entry.
    pub(crate) const PFN_BITS: u32 = 52;
    /// Offset of `pos` in `struct memfd_luo_ser`.
    pub(crate) const SER_POS_OFFSET: usize = 0;
    /// Offset of `seals` in `struct memfd_luo_ser`.
    pub(crate) const SER_SEALS_OFFSET: usize = 16;
    /// Offset of the folio array's `struct kho_vmalloc` in `struct memfd_luo_ser`.
    pub(crate) const SER_FOLIOS_OFFSET: usize = 32;
    const PFN_MASK: u64 = (1 << PFN_BITS) - 1;

    const _: () = {
        assert!(SER_FOLIOS_OFFSET == <Folios as kernel::kho::VmallocField>::OFFSET);
        assert!(PFN_BITS == <FolioPfn as kernel::kho::PfnField>::BITS);
        assert!(size_of::<kernel::bindings::memfd_luo_ser>() == SER_SIZE);
        assert!(size_of::<kernel::bindings::memfd_luo_folio_ser>() == FOLIO_SER_SIZE);
        assert!(size_of::<FolioSer>() == FOLIO_SER_SIZE);
    };
    #[cfg(CONFIG_HUGETLBFS)]
    const _: () = {
        assert!(size_of::<kernel::bindings::hugetlb_memfd_rs_ser>() == HUGE_SER_SIZE);
        assert!(
            SER_FOLIOS_OFFSET
                == <kernel::memfd::handover::HugeFolios as kernel::kho::VmallocField>::OFFSET
        );
        assert!(
            HUGE_COMPATIBLE.to_bytes_with_nul().len()
                == kernel::bindings::HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE.len()
        );
    };

    /// A `struct memfd_luo_folio_ser`: `{ u64 pfn:52, flags:12; u64 index }`, as two words.
    pub(crate) type FolioSer = [u64; 2];

    /// Encodes a folio entry (`pfn` must fit in 52 bits).
    pub(crate) fn folio_ser(pfn: u64, flags: u64, index: u64) -> FolioSer {
        [(pfn & PFN_MASK) | (flags << PFN_BITS), index]
    }

    /// A decoded folio entry.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct FolioEntry {
        pub(crate) pfn: u64,
        pub(crate) flags: u64,
        pub(crate) index: u64,
    }

    pub(crate) fn folio_entry(e: &FolioSer) -> FolioEntry {
        FolioEntry {
            pfn: e[0] & PFN_MASK,
            flags: e[0] >> PFN_BITS,
            index: e[1],
        }
    }

    /// `struct memfd_luo_ser`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub(crate) struct MemfdSer {
        pub(crate) pos: u64,
        pub(crate) size: u64,
        pub(crate) seals: u32,
        pub(crate) flags: u32,
        pub(crate) nr_folios: u64,
        pub(crate) folios: VmallocDescriptor,
        /// hugetlb-memfd-rs-v1 only (`struct hugetlb_memfd_rs_ser`): log2 of the huge page
        /// size; 0 for memfd-v2, which does not have it.
        pub(crate) page_shift: u32,
    }

    impl MemfdSer {
        /// Encodes the header at the start of `b` (`SER_SIZE` bytes, and with `huge` the 8 of
        /// `struct hugetlb_memfd_rs_ser` after them; nothing is written to a shorter buffer).
        pub(crate) fn write(&self, b: &mut [u8], huge: bool) {
            if huge {
                let Some(h) = b.get_mut(..HUGE_SER_SIZE) else {
                    return;
                };
                // In range: `h` is `HUGE_SER_SIZE` bytes; `reserved` stays 0.
                let _ = bytes::put_le_u32(h, SER_SIZE, self.page_shift);
                let _ = bytes::put_le_u32(h, SER_SIZE + 4, 0);
            }
            let Some(b) = b.first_chunk_mut::<SER_SIZE>() else {
                return;
            };
            // In range: `b` is `SER_SIZE` bytes.
            let _ = bytes::put_le_u64(b, SER_POS_OFFSET, self.pos);
            let _ = bytes::put_le_u64(b, 8, self.size);
            let _ = bytes::put_le_u32(b, SER_SEALS_OFFSET, self.seals);
            let _ = bytes::put_le_u32(b, 20, self.flags);
            let _ = bytes::put_le_u64(b, 24, self.nr_folios);
            let _ = bytes::put(b, 32, self.folios.to_bytes());
        }

        /// Decodes the header at the start of `b` (missing bytes read as zeroes), with `huge`
        /// as `struct hugetlb_memfd_rs_ser`. Its `reserved` word must be 0 (`EINVAL`).
        pub(crate) fn read(b: &[u8], huge: bool) -> Result<Self> {
            let mut page_shift = 0;
            if huge {
                page_shift = bytes::le_u32(b, SER_SIZE).unwrap_or(0);
                if bytes::le_u32(b, SER_SIZE + 4).unwrap_or(0) != 0 {
                    return Err(EINVAL);
                }
            }
            Ok(Self {
                pos: bytes::le_u64(b, SER_POS_OFFSET).unwrap_or(0),
                size: bytes::le_u64(b, 8).unwrap_or(0),
                seals: bytes::le_u32(b, SER_SEALS_OFFSET).unwrap_or(0),
                flags: bytes::le_u32(b, 20).unwrap_or(0),
                nr_folios: bytes::le_u64(b, 24).unwrap_or(0),
                folios: VmallocDescriptor::from_bytes(&bytes::get(b, 32).unwrap_or_default()),
                page_shift,
            })
        }

        /// The size in pages.
        pub(crate) fn size_pages(&self) -> u64 {
            self.size.div_ceil(PAGE_SIZE as u64)
        }

        /// Checks a header that [`MemfdSer::validate`] refused with `EOPNOTSUPP` (unknown seals,
        /// or a huge page size this kernel does not have) for the rest, so that the folios of a
        /// file that is only freed can be: all but the seals and the page size.
        pub(crate) fn validate_for_discard(&self) -> Result {
            Self {
                seals: self.seals & ALL_SEALS,
                page_shift: 0,
                ..*self
            }
            .validate(Kind::Shmem)
        }

        /// Checks the header read from the previous kernel.
        ///
        /// `EOPNOTSUPP` for unknown seals (as the C handler), and for a huge page size this
        /// kernel does not have (with `kind` [`Kind::Hugetlb`], whose order is the one the
        /// header names); `EINVAL` for anything else.
        pub(crate) fn validate(&self, kind: Kind) -> Result {
            if self.seals & !ALL_SEALS != 0 {
                return Err(EOPNOTSUPP);
            }
            match kind {
                Kind::Shmem if self.page_shift != 0 => return Err(EINVAL),
                #[cfg(CONFIG_HUGETLBFS)]
                Kind::Hugetlb { order } => {
                    if order == 0 || !kernel::memfd::huge_page_order_supported(order) {
                        return Err(EOPNOTSUPP);
                    }
                }
                _ => {}
            }
            if self.flags != 0
                || self.size > MAX_FILE_SIZE as u64
                || self.pos > MAX_FILE_SIZE as u64
            {
                return Err(EINVAL);
            }
            // The C writer refuses files above UINT_MAX pages (EFBIG).
            if self.size_pages() > u64::from(u32::MAX) || self.nr_folios > self.size_pages() {
                return Err(EINVAL);
            }
            if self.nr_folios != 0 {
                let bytes = self.nr_folios * FOLIO_SER_SIZE as u64;
                if bytes > u64::from(self.folios.total_pages) * PAGE_SIZE as u64 {
                    return Err(EINVAL);
                }
            }
            Ok(())
        }
    }

    /// Checks the folio entries of a file of `size_pages` pages: only known flags, indices
    /// inside the file and strictly increasing. Entries with pfn 0 are skipped (the C reader
    /// skips them too).
    pub(crate) fn check_folios(entries: &[FolioSer], size_pages: u64) -> Result {
        let mut next = 0u64;
        for e in entries.iter().map(folio_entry).filter(|e| e.pfn != 0) {
            if e.flags & !FOLIO_FLAGS != 0 || e.index >= size_pages || e.index < next {
                return Err(EINVAL);
            }
            next = e.index + 1;
        }
        Ok(())
    }

    /// Checks an entry against the order of the folio preserved at its pfn: aligned, starting
    /// inside the file and after the previous folio (`next`). Returns the index after it.
    ///
    /// A large folio may reach past the end of the file: shmem allocates such folios, both
    /// writers preserve them, and the C reader takes them.
    pub(crate) fn check_folio_extent(
        e: &FolioEntry,
        order: u32,
        next: u64,
        size_pages: u64,
    ) -> Result<u64> {
        let nr = 1u64.checked_shl(order).ok_or(EINVAL)?;
        let end = e.index.checked_add(nr).ok_or(EINVAL)?;
        if e.index % nr != 0 || e.index < next || e.index >= size_pages {
            return Err(EINVAL);
        }
        Ok(end)
    }
}

use abi::{
    FolioSer,
    MemfdSer, //
};

/// What a preserved memfd holds until it is unpreserved: the header page, the folio array
/// and the preserved, pinned folios.
struct State {
    ser: PreservedPage,
    array: Option<PreservedArray<FolioSer>>,
    /// Sorted by index.
    folios: KVVec<PreservedFolio<PinnedFolio>>,
    /// Pages in `folios`.
    pages: usize,
    /// The size the header records (the mapping is frozen: it cannot change).
    size: u64,
}

/// A handover format of this handler: memfd-v2 for shmem memfds ([`ShmemFormat`]) and
/// hugetlb-memfd-rs-v1 for hugetlbfs ones ([`HugetlbFormat`]). The two differ only in the
/// header (hugetlb-memfd-rs-v1 adds the huge page size) and in the files they take.
trait Format: Send + Sync + 'static {
    /// The handler's compatible string.
    const COMPATIBLE: &'static CStr;
    /// Whether the header is `struct hugetlb_memfd_rs_ser`.
    const HUGE: bool;
    /// The folio array field of the header.
    type Folios: VmallocField<Elem = FolioSer>;
    /// The pfn of an element of the folio array.
    type Pfn: PfnField<Array = Self::Folios>;
    /// `file` as a memfd this format takes (`can_preserve`): an unlinked one.
    fn memfd(file: &File) -> Option<Memfd<'_>>;
    /// `file` as a memfd, for a file this format took (it may have been linked since).
    fn taken(file: &File) -> Option<Memfd<'_>>;
    /// What a file of header `ser` is, before the header is validated: `EOPNOTSUPP` for a page
    /// size no kernel has.
    fn kind(ser: &MemfdSer) -> Result<Kind>;
}

/// memfd-v2: shmem memfds, byte for byte as upstream's C handler.
struct ShmemFormat;

impl Format for ShmemFormat {
    const COMPATIBLE: &'static CStr = abi::COMPATIBLE;
    const HUGE: bool = false;
    type Folios = Folios;
    type Pfn = FolioPfn;

    fn memfd(file: &File) -> Option<Memfd<'_>> {
        Memfd::new(file)
    }

    fn taken(file: &File) -> Option<Memfd<'_>> {
        // `can_preserve` took it as an unlinked memfd; it may have been linked since (an
        // `O_TMPFILE` file), which changes nothing for a handover.
        Memfd::from_shmem(file)
    }

    fn kind(_ser: &MemfdSer) -> Result<Kind> {
        Ok(Kind::Shmem)
    }
}

/// hugetlb-memfd-rs-v1 (`include/linux/kho/abi/hugetlb_memfd_rs.h`): hugetlbfs memfds.
#[cfg(CONFIG_HUGETLBFS)]
struct HugetlbFormat;

#[cfg(CONFIG_HUGETLBFS)]
impl Format for HugetlbFormat {
    const COMPATIBLE: &'static CStr = abi::HUGE_COMPATIBLE;
    const HUGE: bool = true;
    type Folios = kernel::memfd::handover::HugeFolios;
    type Pfn = kernel::memfd::handover::HugeFolioPfn;

    fn memfd(file: &File) -> Option<Memfd<'_>> {
        Memfd::hugetlb(file)
    }

    fn taken(file: &File) -> Option<Memfd<'_>> {
        // A hugetlbfs memfd cannot be linked: its mount is not reachable by any path.
        Memfd::hugetlb(file)
    }

    fn kind(ser: &MemfdSer) -> Result<Kind> {
        let order = ser
            .page_shift
            .checked_sub(kernel::page::PAGE_SHIFT as u32)
            .ok_or(EOPNOTSUPP)?;
        Ok(Kind::Hugetlb { order })
    }
}

/// The handler, for the files of format `F`.
struct MemfdHandler<F: Format>(PhantomData<F>);

/// What [`MemfdHandler::restore_handover`] restores of a handle: its page, the header, what
/// the file is, and the folio array if it has folios.
type Restored<F> = (
    HandoverPage,
    MemfdSer,
    Kind,
    Option<HandoverArray<<F as Format>::Folios>>,
);

/// How many folios `preserve` hands to KHO per call (`kho_preserve_folios`).
const KHO_BATCH: usize = 1024;

impl<F: Format> MemfdHandler<F> {
    /// Preserves the memfd while its inode lock is held and its mapping frozen.
    fn preserve_locked(memfd: &Memfd<'_>, lock: &kernel::memfd::MemfdLock<'_>) -> Result<State> {
        let mut ser = PreservedPage::new()?;
        let seals = lock.seals()?;
        if seals & !abi::ALL_SEALS != 0 {
            return Err(EOPNOTSUPP);
        }
        let size = lock.size();
        let size = u64::try_from(size).map_err(|_| EINVAL)?;
        if size.div_ceil(PAGE_SIZE as u64) > u64::from(u32::MAX) {
            return Err(EFBIG);
        }
        // One pass: each folio is pinned, preserved, made ready and written into the folio
        // array that KHO will preserve, in place. The page count bounds the number of
        // folios, so up to 4 GiB of order-0 folios the vectors are allocated once; past
        // that (or if pages are added meanwhile) they grow by doubling. The cap keeps a
        // file of large folios, which has far fewer folios than pages, from allocating 24
        // bytes per page up front.
        let est = match memfd.kind() {
            Kind::Shmem => lock.present_pages(),
            // One folio per huge page: 512 or 262144 pages each.
            #[cfg(CONFIG_HUGETLBFS)]
            Kind::Hugetlb { order } => lock.present_pages() >> order,
        }
        .min(1 << 20);
        let mut folios = KVVec::<PreservedFolio<PinnedFolio>>::with_capacity(est, GFP_KERNEL)?;
        let mut entries = ArrayBuilder::<FolioSer>::with_capacity(est)?;
        let mut pages = 0usize;
        // Folios pinned and not yet preserved: they are preserved `KHO_BATCH` at a time, with
        // one round trip of KHO's lock each.
        // (None allocated for a file without pages: a PRESERVE_FD of an empty memfd is a
        // hot path for VMMs that preserve many small files.)
        let mut pending = KVVec::<PinnedFolio>::with_capacity(KHO_BATCH.min(est), GFP_KERNEL)?;
        lock.pin_present_folios(|folio, info| {
            folio.prepare_for_handover();
            entries.push(abi::folio_ser(
                info.pfn,
                abi::FOLIO_DIRTY | abi::FOLIO_UPTODATE,
                info.index as u64,
            ))?;
            pending.push(folio, GFP_KERNEL)?;
            pages += info.nr_pages;
            if pending.len() == KHO_BATCH {
                PreservedFolio::preserve_all(&mut pending, &mut folios)?;
            }
            Ok(())
        })?;
        PreservedFolio::preserve_all(&mut pending, &mut folios)?;
        let array = if entries.is_empty() {
            None
        } else {
            Some(entries.preserve()?)
        };
        let hdr = MemfdSer {
            pos: memfd.pos() as u64,
            size,
            seals,
            flags: 0,
            nr_folios: folios.len() as u64,
            folios: array.as_ref().map(|a| a.descriptor()).unwrap_or_default(),
            page_shift: match memfd.kind() {
                Kind::Shmem => 0,
                #[cfg(CONFIG_HUGETLBFS)]
                Kind::Hugetlb { order } => order + kernel::page::PAGE_SHIFT as u32,
            },
        };
        write_ser::<F>(&mut ser, &hdr);
        Ok(State {
            ser,
            array,
            pages,
            folios,
            size,
        })
    }

    /// The last look at a preserved memfd before the kexec, with new folios refused: the
    /// folios added since `preserve`, the position and the seals.
    fn freeze_stopped(memfd: &Memfd<'_>, state: &mut State) -> Result {
        // Seals are only ever added, each `F_ADD_SEALS` with one store under the inode lock, so
        // they are read without it: this sees every seal added before the reboot, and the lock
        // would not make it more exact (a seal added just after the unlock would be lost too).
        let seals = memfd.seals();
        if seals & !abi::ALL_SEALS != 0 {
            return Err(EOPNOTSUPP);
        }
        // Preserved folios are pinned (never swapped out) and the frozen mapping cannot lose a
        // page, so the file holds more pages (resident or swapped out) only if some were added
        // since `preserve`. New folios are refused now, so the count is exact, and the common
        // case, nothing added, needs neither the inode lock nor a walk: at the reboot every
        // memfd comes here.
        // The mapping is frozen, so the size cannot have changed: the handover would name
        // folios beyond the size it records, and the next kernel would refuse the file. Fail
        // the reboot instead if it did.
        if memfd.size() as u64 != state.size {
            pr_warn!(
                "memfd: size changed from {} to {} after preserve, failing the freeze\n",
                state.size,
                memfd.size()
            );
            return Err(EBUSY);
        }
        if memfd.present_pages() > state.pages {
            preserve_new_folios_at_freeze::<F>(&lock_for_freeze(memfd)?, state)?;
        }
        let pos = memfd.pos() as u64;
        let b = state.ser.bytes_mut();
        // In range: the page holds the whole header.
        let _ = bytes::put_le_u64(b, abi::SER_POS_OFFSET, pos);
        let _ = bytes::put_le_u32(b, abi::SER_SEALS_OFFSET, seals);
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::corrupt::<F>(memfd.inode_id(), state);
        Ok(())
    }

    /// Frees every preserved folio the array names from entry `from` on (a file never
    /// retrieved, or the rest of a failed retrieve), `next` being the first index the folio of
    /// entry `from` may start at. The array is this handler's own handover data, validated (by
    /// `restore_handover`) before any entry is restored; entries that do not name a preserved
    /// folio (or one already restored) are skipped, quietly.
    ///
    /// Each folio must fit where its entry puts it, as `retrieve` checks: at the first that
    /// does not, that folio is freed and the rest are left (leaked: the rest of its batch,
    /// restored already, and the later entries), since an array that is wrong there may name
    /// pages that are not this file's. The folios are restored in batches, as `retrieve` does.
    fn discard_folios(
        array: &HandoverArray<F::Folios>,
        from: usize,
        mut next: u64,
        size_pages: u64,
    ) {
        // The folios freed here may be reached by a translation adopted from the previous kernel.
        liveupdate::end_adopted_translations();
        let entries = array.as_slice();
        let mut from = from;
        let mut batch = IncomingFolios::new();
        while from < entries.len() {
            let to = entries.len().min(from + kho::FOLIO_BATCH);
            batch.restore_pfns::<F::Pfn>(array, from..to);
            for (k, e) in entries[from..to].iter().enumerate() {
                let Ok(folio) = batch.take(k) else {
                    continue;
                };
                match abi::check_folio_extent(&abi::folio_entry(e), folio.order(), next, size_pages)
                {
                    Ok(end) => next = end,
                    Err(_) => {
                        // This misfit is freed; the rest of the batch is left (see above).
                        batch.leak();
                        return;
                    }
                }
            }
            from = to;
        }
    }

    /// A retrieve failed at entry `i` (of file index `index`) with `err`, the entries before
    /// `to` being restored already (those not yet in the file were freed).
    ///
    /// A corrupt entry (`EINVAL`) is refused quietly, like every other check of the handover;
    /// anything else is this kernel failing to take the folio. The folios inserted before it
    /// belong to the file, freed with it (as C's `fput`). The entries from `to` on are freed
    /// only when the array is sound: a corrupt array may name pages that are not this file's,
    /// so then they are left (leaked), as `finish` leaves those of a corrupt file, and so is
    /// the rest of the entry's batch, restored already (the caller leaks it). C frees them in
    /// both cases.
    fn retrieve_failed(
        array: &HandoverArray<F::Folios>,
        err: Error,
        i: usize,
        index: u64,
        to: usize,
        next: u64,
        size_pages: u64,
    ) {
        if err != EINVAL {
            pr_err!(
                "memfd: failed to restore folio {} (index {}): {:?}\n",
                i,
                index,
                err
            );
            Self::discard_folios(array, to, next, size_pages);
        }
    }

    /// The empty memfd of header `ser` (validated): exec bits, seals, position and size.
    ///
    /// A file sealed with `F_SEAL_EXEC` is made as `MFD_NOEXEC_SEAL` makes it, without exec bits
    /// (mode 0666): adding `F_SEAL_EXEC` to a file with exec bits adds the write seals too
    /// (W^X), so a writable `MFD_NOEXEC_SEAL` memfd would come back executable and
    /// write-sealed. The mode itself is not in the handover: a file that had exec bits when
    /// `F_SEAL_EXEC` was added comes back without them (as with the C handler).
    fn new_memfd(ser: &MemfdSer, kind: Kind) -> Result<NewMemfd> {
        let noexec = ser.seals & seals::EXEC != 0;
        let mut memfd = match kind {
            Kind::Shmem if noexec => NewMemfd::new_noexec()?,
            Kind::Shmem => NewMemfd::new()?,
            #[cfg(CONFIG_HUGETLBFS)]
            Kind::Hugetlb { order } => NewMemfd::new_hugetlb(order, noexec)?,
        };
        memfd.add_seals(ser.seals)?;
        memfd.set_pos(i64::try_from(ser.pos).map_err(|_| EINVAL)?)?;
        memfd.set_size(i64::try_from(ser.size).map_err(|_| EINVAL)?)?;
        Ok(memfd)
    }

    /// Restores the header page and the folio array of handle `data`, validated.
    ///
    /// `data` is the handle this handler's counterpart wrote for this file: the page of its
    /// `memfd_luo_ser`, restored once (retrieve and finish never both restore it).
    ///
    /// With `usable` unset (a file that is only freed), a header that this kernel could not
    /// make a file of but that is otherwise sound is taken too: unknown seals, or a huge page
    /// size it has no hstate for (freeing a folio needs only the order KHO recorded).
    fn restore_handover(data: Handover, usable: bool) -> Result<Restored<F>> {
        let page = HandoverPage::restore(data)?;
        let ser = MemfdSer::read(page.bytes(), F::HUGE)?;
        let checked = F::kind(&ser).and_then(|kind| ser.validate(kind).map(|()| kind));
        let kind = match checked {
            Ok(kind) => kind,
            Err(e) if e == EOPNOTSUPP && !usable => {
                ser.validate_for_discard()?;
                // Only freed: what the file would have been does not matter.
                Kind::Shmem
            }
            Err(e) => return Err(e),
        };
        let array = if ser.nr_folios == 0 {
            None
        } else {
            let len = usize::try_from(ser.nr_folios).map_err(|_| EINVAL)?;
            // The pages the descriptor names are checked before they are restored.
            let a = HandoverArray::restore(page.vmalloc::<F::Folios>()?, len)?;
            abi::check_folios(a.as_slice(), ser.size_pages())?;
            Some(a)
        };
        Ok((page, ser, kind, array))
    }
}

/// The folio array for `n` folios (`None` if there are none), from `folios` in index order.
fn new_array<'a>(
    n: usize,
    folios: impl Iterator<Item = &'a PreservedFolio<PinnedFolio>>,
) -> Result<Option<PreservedArray<FolioSer>>> {
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(PreservedArray::new(n, |a| {
        for (e, f) in a.iter_mut().zip(folios) {
            let f = f.get();
            *e = abi::folio_ser(
                f.pfn(),
                abi::FOLIO_DIRTY | abi::FOLIO_UPTODATE,
                f.index() as u64,
            );
        }
    })?))
}

/// Merges two lists of folios sorted by index.
fn merge_by_index<'a>(
    a: &'a [PreservedFolio<PinnedFolio>],
    b: &'a [PreservedFolio<PinnedFolio>],
) -> impl Iterator<Item = &'a PreservedFolio<PinnedFolio>> {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    core::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.get().index() < x.get().index() => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// Preserves the folios that appeared since `preserve` (holes written to meanwhile, e.g.
/// guest memory touched for the first time), so that no write is lost. The C handler has
/// no holes left after `preserve`, so it never needs this.
///
/// Linear in the number of folios. On error the state is unchanged.
fn preserve_new_folios<F: Format>(lock: &MemfdLock<'_>, state: &mut State) -> Result {
    let mut added = KVVec::<PreservedFolio<PinnedFolio>>::new();
    let old = &state.folios;
    lock.pin_present_folios(|folio, _| {
        if old
            .binary_search_by_key(&folio.index(), |f| f.get().index())
            .is_ok()
        {
            // Already preserved: dropping this second pin keeps the first.
            return Ok(());
        }
        let folio = PreservedFolio::new(folio)?;
        folio.get().prepare_for_handover();
        added.push(folio, GFP_KERNEL)?;
        Ok(())
    })?;
    if added.is_empty() {
        return Ok(());
    }
    let n = old.len() + added.len();
    let array = new_array(n, merge_by_index(old, &added))?;
    let mut merged = KVVec::with_capacity(n, GFP_KERNEL)?;
    let mut a = core::mem::take(&mut state.folios).into_iter().peekable();
    let mut b = added.into_iter().peekable();
    loop {
        let take_b = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => y.get().index() < x.get().index(),
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => break,
        };
        let next = if take_b { b.next() } else { a.next() };
        if let Some(f) = next {
            // Cannot fail: the capacity is reserved.
            merged.push(f, GFP_KERNEL)?;
        }
    }
    state.pages = merged.iter().map(|f| f.get().nr_pages()).sum();
    state.folios = merged;
    // Our own header, written by `preserve`: it reads back.
    let mut hdr = MemfdSer::read(state.ser.bytes(), F::HUGE)?;
    hdr.nr_folios = n as u64;
    hdr.folios = array.as_ref().map(|a| a.descriptor()).unwrap_or_default();
    write_ser::<F>(&mut state.ser, &hdr);
    // The old array is unpreserved and freed here.
    state.array = array;
    Ok(())
}

/// How many times `freeze` tries to preserve the folios added since `preserve` while that fails
/// with `ENOMEM`, `FREEZE_LOCK_WAIT` apart.
const FREEZE_PIN_TRIES: u32 = 10;

/// [`preserve_new_folios`] for `freeze`, tried again while it fails with `ENOMEM`.
///
/// Pinning a folio for the handover (`memfd_pin_folios`) first moves it out of memory that
/// must not stay pinned (movable zones and CMA areas, which include KHO's scratch areas, where
/// a hugetlbfs pool page grown at run time often is), and the pin returns `ENOMEM` when that
/// move fails. A move can fail for a moment: with the VMM's writer still running (it gets
/// SIGBUS from `stop_new_folios` and exits, unmapping the file), the pin at freeze failed in
/// about one run in ten of `hugetlb:s1_racing_writer_armed` under KASAN, and a second try 10 ms
/// later succeeded (two runs of eight needed it). The reboot is failed only if `ENOMEM`
/// persists; `preserve_new_folios` leaves the state unchanged on error, so a try starts afresh.
fn preserve_new_folios_at_freeze<F: Format>(lock: &MemfdLock<'_>, state: &mut State) -> Result {
    let mut tries = 1;
    loop {
        match preserve_new_folios::<F>(lock, state) {
            Err(e) if e == ENOMEM && tries < FREEZE_PIN_TRIES => {
                tries += 1;
                fsleep(FREEZE_LOCK_WAIT);
            }
            Err(e) => {
                pr_warn!(
                    "memfd: cannot preserve the folios added since preserve ({} tries): {:?}\n",
                    tries,
                    e
                );
                return Err(e);
            }
            Ok(()) => {
                if tries > 1 {
                    pr_info!(
                        "memfd: folios added since preserve preserved at try {}\n",
                        tries
                    );
                }
                return Ok(());
            }
        }
    }
}

/// How long `freeze` waits for the inode lock, in tries `FREEZE_LOCK_WAIT` apart.
const FREEZE_LOCK_TRIES: u32 = 100;
/// The wait between two tries of the inode lock at `freeze` (100 tries: one second).
const FREEZE_LOCK_WAIT: Delta = Delta::from_millis(10);

/// Takes the inode lock for `freeze`, waiting at most a second.
///
/// The reboot path must not hang on a file: a task can hold the inode lock indefinitely (a
/// `write(2)` whose source buffer faults on a userfaultfd range that nobody serves). Then the
/// freeze fails with `EBUSY`, LUO fails the reboot and thaws what it froze, and the VMM can
/// retry once its writer is stopped.
fn lock_for_freeze<'a>(memfd: &Memfd<'a>) -> Result<MemfdLock<'a>> {
    for _ in 0..FREEZE_LOCK_TRIES {
        if let Some(lock) = memfd.try_lock() {
            return Ok(lock);
        }
        fsleep(FREEZE_LOCK_WAIT);
    }
    pr_warn!("memfd: inode lock held for a second at freeze, failing it\n");
    Err(EBUSY)
}

fn write_ser<F: Format>(page: &mut PreservedPage, hdr: &MemfdSer) {
    hdr.write(page.bytes_mut(), F::HUGE);
}

impl<F: Format> FileHandler for MemfdHandler<F> {
    type State = State;

    fn compatible(&self) -> &CStr {
        F::COMPATIBLE
    }

    fn can_preserve(&self, file: &File) -> bool {
        F::memfd(file).is_some()
    }

    fn preserve(&self, file: &File) -> Result<(u64, State)> {
        let memfd = F::taken(file).ok_or(EINVAL)?;
        let lock = memfd.lock();
        lock.set_frozen(true);
        let state = Self::preserve_locked(&memfd, &lock).inspect_err(|_| lock.set_frozen(false))?;
        Ok((state.ser.phys(), state))
    }

    fn unpreserve(&self, file: &File, _data: u64, state: State) {
        if let Some(memfd) = F::taken(file) {
            let lock = memfd.lock();
            lock.set_frozen(false);
            // Cleared by `unfreeze` after a failed reboot already; this keeps the file usable
            // whatever the order of LUO's calls.
            memfd.stop_new_folios(false);
            // Unpreserve and unpin under the lock, as the C handler does.
            drop(state);
            drop(lock);
        }
    }

    fn freeze(&self, file: &File, _data: &mut u64, state: &mut State) -> Result {
        // The position and the seals may have changed since preserve, and holes may have been
        // written; nothing else can.
        let memfd = F::taken(file).ok_or(EINVAL)?;
        // From here on a write or fault into a hole fails (EPERM, SIGBUS) instead of landing in
        // a folio that the walk below would miss and the kexec would lose. Writes into pages
        // that exist still land in preserved memory.
        memfd.stop_new_folios(true);
        let r = Self::freeze_stopped(&memfd, state);
        if r.is_err() {
            // LUO calls `unfreeze` only for the files frozen before this one.
            memfd.stop_new_folios(false);
        }
        r
    }

    fn unfreeze(&self, file: &File, _data: u64, _state: &mut State) {
        // The reboot failed: the VMM runs on, and may write into holes again (they are
        // preserved at the next freeze). No lock: this runs on the reboot path, which a writer
        // holding the inode lock must not hang.
        if let Some(memfd) = F::taken(file) {
            memfd.stop_new_folios(false);
        }
    }

    fn retrieve(&self, data: Handover) -> Result<ARef<File>> {
        // The folios become userspace's, which may free them while a device kept running through
        // the kexec still writes to them through a translation adopted from the previous kernel:
        // each is held until those translations end, from before anything could free it. The
        // folios this function frees itself (`discard_folios`) end the translations first.
        let hold = liveupdate::adopted_translations();
        let (_page, ser, kind, array) = Self::restore_handover(data, true)?;
        // The handover is sound from here on: if the file cannot be set up, its folios are
        // freed (the C handler leaks them when adding the seals fails).
        let mut memfd = match Self::new_memfd(&ser, kind) {
            Ok(m) => m,
            Err(e) => {
                if let Some(array) = &array {
                    Self::discard_folios(array, 0, 0, ser.size_pages());
                }
                return Err(e);
            }
        };
        if let Some(array) = array {
            let entries = array.as_slice();
            let size_pages = ser.size_pages();
            let mut next = 0;
            let mut run = FolioRun::new();
            let mut batch = IncomingFolios::new();
            // Folios are restored and inserted in batches: KHO updates the managed page counts
            // once per batch, and the page cache is filled run by run.
            let mut from = 0;
            while from < entries.len() {
                let to = entries.len().min(from + kho::FOLIO_BATCH);
                batch.restore_pfns::<F::Pfn>(&array, from..to);
                for (k, raw) in entries[from..to].iter().enumerate() {
                    let e = abi::folio_entry(raw);
                    // No folio (the pfn field is 0: what `pfn` reads as no handle).
                    if e.pfn == 0 {
                        continue;
                    }
                    // The pfn is checked quietly by `restore_pfns`, and the folio's
                    // extent below, so no two entries can name the same folio.
                    let r = batch.take(k).and_then(|folio| {
                        if hold {
                            liveupdate::hold_for_adopted_translations(&folio);
                        }
                        // The folio must fit where its entry puts it (aligned, inside the file,
                        // after the previous one); a misfit is freed with the rest.
                        next = abi::check_folio_extent(&e, folio.order(), next, size_pages)?;
                        // Always dirty, whatever the entry's DIRTY flag says: shmem has no copy
                        // of a clean folio anywhere, so reclaim would drop its contents. A
                        // folio that is not uptodate reads as zeroes until written, as a
                        // fallocated page does.
                        run.push(folio, e.index as usize, e.flags & abi::FOLIO_UPTODATE != 0)?;
                        if run.is_full() {
                            memfd.insert_folios(&mut run)?;
                        }
                        Ok(())
                    });
                    if let Err(err) = r {
                        if err == EINVAL {
                            // A corrupt entry: the rest of the batch may be another user's
                            // preserved memory, which must not be freed (see `retrieve_failed`).
                            batch.leak();
                        }
                        let i = from + k;
                        Self::retrieve_failed(&array, err, i, e.index, to, next, size_pages);
                        return Err(err);
                    }
                }
                from = to;
            }
            if let Err(err) = memfd.insert_folios(&mut run) {
                Self::retrieve_failed(
                    &array,
                    err,
                    entries.len(),
                    0,
                    entries.len(),
                    next,
                    size_pages,
                );
                return Err(err);
            }
        }
        memfd.into_file()
    }

    fn finish(&self, _file: Option<&File>, data: Handover, status: RetrieveStatus) {
        // A retrieved file owns its folios; a failed retrieve freed what it could.
        if status != RetrieveStatus::NotRetrieved {
            return;
        }
        match Self::restore_handover(data, false) {
            Ok((_page, ser, _, Some(array))) => {
                Self::discard_folios(&array, 0, 0, ser.size_pages())
            }
            Ok(_) => {}
            Err(e) => pr_warn!("memfd: not freeing a corrupt preserved memfd: {:?}\n", e),
        }
    }

    fn get_id(file: &File) -> usize {
        // The inode, linked or not: `linkat(2)` on an `O_TMPFILE` file after `PRESERVE_FD` must
        // not change the id (every file this handler took is shmem).
        F::taken(file).map_or(file.as_ptr() as usize, |m| m.inode_id())
    }
}

struct MemfdLuo {
    _registration: Option<Registration<MemfdHandler<ShmemFormat>>>,
    #[cfg(CONFIG_HUGETLBFS)]
    _hugetlb: Option<Registration<MemfdHandler<HugetlbFormat>>>,
}

/// Registers the handler of format `F`; `None` if LUO is disabled on this boot.
fn register<F: Format>(
    module: &'static ThisModule,
) -> Result<Option<Registration<MemfdHandler<F>>>> {
    match Registration::new(module, MemfdHandler::<F>(PhantomData)) {
        Ok(r) => Ok(Some(r)),
        Err(e) if e == EOPNOTSUPP => Ok(None),
        Err(e) => {
            pr_err!(
                "Could not register luo filesystem handler {}: {:?}\n",
                F::COMPATIBLE,
                e
            );
            Err(e)
        }
    }
}

impl kernel::Module for MemfdLuo {
    fn init(module: &'static ThisModule) -> Result<Self> {
        #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
        test::init()?;
        Ok(Self {
            _registration: register::<ShmemFormat>(module)?,
            // Without it, hugetlbfs memfds are not taken; memfd-v2 still is.
            #[cfg(CONFIG_HUGETLBFS)]
            _hugetlb: register::<HugetlbFormat>(module).unwrap_or(None),
        })
    }
}

/// Corrupting the handover of chosen memfds on purpose (`CONFIG_LIVEUPDATE_RUST_TEST`), to
/// test how the next kernel's `retrieve` refuses it.
///
/// debugfs `liveupdate/test_memfd`, ioctl `_IO('M', 1)` `CORRUPT(fd << 8 | mode)`: when the memfd
/// `fd` (of the calling process, shmem or hugetlbfs) is frozen at the next reboot, its
/// handover is corrupted:
/// 1 a pfn of no preserved folio, 2 an index beyond the size, 3 `nr_folios` beyond the array,
/// 4 unknown folio flags, 5 unknown header flags, 6 unknown seals, 7 the array descriptor
/// pointing at no preserved page, 8 folio indices out of order, 9 every folio entry without
/// its DIRTY flag (a sound handover the next kernel must still treat as dirty).
///
/// Modes for hugetlbfs memfds (hugetlb-memfd-rs-v1); 10, 11 and 13 change nothing in a
/// memfd-v2 handover, which has no page size: 10 a page size no kernel has huge pages of
/// (`page_shift` 22, 4 MiB), 11 the other huge page size of x86-64 (`page_shift` 21 and 30
/// swapped), 12 the pfn of the first folio entry plus one (inside its huge page), 13 the
/// `reserved` word non-zero, 14 the first folio entry without its UPTODATE flag (hugetlbfs
/// has no folio that reads as zeroes; shmem takes it as one). At most 16 memfds.
///
/// ioctl `_IO('M', 2)` `HOLD_LOCK(fd)` takes the inode lock of the memfd `fd` and sleeps three
/// seconds holding it, as a `write(2)` stuck on a fault would (`freeze` must give up after a
/// second).
#[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
mod test {
    use super::*;
    use kernel::{
        debugfs,
        fs::LocalFile,
        ioctl::_IO,
        sync::{
            atomic::{
                Atomic,
                Relaxed, //
            },
            SetOnce,
        },
    };

    const CORRUPT: u32 = _IO(b'M' as u32, 1);
    const HOLD_LOCK: u32 = _IO(b'M' as u32, 2);
    const SLOTS: usize = 16;
    static IDS: [Atomic<usize>; SLOTS] = [const { Atomic::new(0) }; SLOTS];
    static MODES: [Atomic<u32>; SLOTS] = [const { Atomic::new(0) }; SLOTS];

    pub(super) fn corrupt<F: Format>(id: usize, state: &mut State) {
        let Some(slot) = IDS.iter().position(|i| i.load(Relaxed) == id) else {
            return;
        };
        // Once: a reboot that fails and is tried again must not corrupt a corrupt handover.
        let mode = MODES[slot].xchg(0, Relaxed);
        // The hugetlbfs modes would name another file's page in a shmem handover.
        if mode >= 10 && !F::HUGE {
            return;
        }
        let Ok(mut hdr) = MemfdSer::read(state.ser.bytes(), F::HUGE) else {
            return;
        };
        if let Some(array) = state.array.as_mut() {
            let a = array.as_mut_slice();
            let n = a.len();
            let pfn_mask = (1u64 << abi::PFN_BITS) - 1;
            match (mode, a.first_mut()) {
                (1, Some(e)) => e[0] = (e[0] & !pfn_mask) | ((1u64 << 40) - 1),
                (4, Some(e)) => e[0] |= 0x100u64 << 52,
                (12, Some(e)) => {
                    e[0] = (e[0] & !pfn_mask) | ((e[0] & pfn_mask).wrapping_add(1) & pfn_mask)
                }
                (14, Some(e)) => e[0] &= !(abi::FOLIO_UPTODATE << abi::PFN_BITS),
                _ => {}
            }
            if mode == 2 {
                if let Some(e) = a.last_mut() {
                    e[1] = hdr.size_pages() + 1;
                }
            }
            if mode == 9 {
                for e in a.iter_mut() {
                    e[0] &= !(abi::FOLIO_DIRTY << 52);
                }
            }
            if mode == 8 && n >= 2 {
                let i0 = a[0][1];
                a[0][1] = a[1][1];
                a[1][1] = i0;
            }
        }
        match mode {
            3 => hdr.nr_folios = u64::from(hdr.folios.total_pages) * 256 + 1,
            5 => hdr.flags = 1,
            6 => hdr.seals |= 0x40,
            7 => hdr.folios.first = 0x1234_5000,
            10 => hdr.page_shift = 22,
            11 => hdr.page_shift = if hdr.page_shift == 30 { 21 } else { 30 },
            _ => {}
        }
        write_ser::<F>(&mut state.ser, &hdr);
        if mode == 13 && F::HUGE {
            // In range: the page holds the whole header; `write_ser` wrote `reserved` as 0.
            let _ = bytes::put_le_u32(state.ser.bytes_mut(), abi::SER_SIZE + 4, 1);
        }
        pr_info!("memfd: corrupted the handover of a memfd (mode {})\n", mode);
    }

    /// The key [`corrupt`] finds the memfd `file` by at `freeze` (its inode), for a shmem or a
    /// hugetlbfs memfd; `None` for any other file.
    fn memfd_id(file: &LocalFile) -> Option<usize> {
        let memfd = Memfd::new(file);
        #[cfg(CONFIG_HUGETLBFS)]
        let memfd = memfd.or_else(|| Memfd::hugetlb(file));
        memfd.map(|m| m.inode_id())
    }

    /// debugfs `liveupdate/test_memfd`.
    struct Control;

    impl debugfs::Ioctl for Control {
        fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
            if cmd == HOLD_LOCK {
                let fd = u32::try_from(arg).map_err(|_| EINVAL)?;
                let file = LocalFile::fget(fd)?;
                let memfd = Memfd::from_shmem(&file).ok_or(EINVAL)?;
                let _lock = memfd.lock();
                fsleep(Delta::from_secs(3));
                return Ok(0);
            }
            if cmd != CORRUPT {
                return Err(ENOTTY);
            }
            let fd = u32::try_from(arg >> 8).map_err(|_| EINVAL)?;
            let mode = (arg & 0xff) as u32;
            let file = LocalFile::fget(fd)?;
            let id = memfd_id(&file).ok_or(EINVAL)?;
            let slot = IDS
                .iter()
                .position(|i| i.cmpxchg(0, id, Relaxed).is_ok() || i.load(Relaxed) == id)
                .ok_or(ENOSPC)?;
            MODES[slot].store(mode, Relaxed);
            Ok(0)
        }
    }

    /// debugfs `liveupdate/test_memfd`, kept for the kernel's life (the handler is built in).
    static CONTROL: SetOnce<Pin<KBox<debugfs::File<Control>>>> = SetOnce::new();

    pub(super) fn init() -> Result {
        let dir = kernel::liveupdate::debugfs_dir();
        CONTROL.populate(KBox::pin_init(
            dir.ioctl_file(c"test_memfd", Control),
            GFP_KERNEL,
        )?);
        Ok(())
    }
}

#[kunit_tests(luo_rs_memfd)]
mod tests {
    use super::abi::*;
    use super::*;

    #[test]
    fn folio_entry_layout_matches_the_c_bitfield() {
        // pfn:52 in the low bits, flags:12 above, as GCC lays out the C bitfield.
        let e = folio_ser(0x000f_ffff_ffff_ffff, 3, 7);
        assert_eq!(e[0], 0x003f_ffff_ffff_ffff);
        assert_eq!(e[1], 7);
        let d = folio_entry(&e);
        assert_eq!(d.pfn, 0x000f_ffff_ffff_ffff);
        assert_eq!(d.flags, 3);
        assert_eq!(d.index, 7);
        // A pfn wider than 52 bits cannot spill into the flags.
        assert_eq!(folio_entry(&folio_ser(1 << 52, 0, 0)).flags, 0);
    }

    #[test]
    fn header_round_trips_at_the_c_offsets() {
        let h = MemfdSer {
            pos: 1,
            size: 2,
            seals: 3,
            flags: 0,
            nr_folios: 4,
            folios: VmallocDescriptor {
                first: 0x1000,
                total_pages: 5,
                flags: 1,
                order: 0,
            },
            page_shift: 0,
        };
        let mut b = [0u8; SER_SIZE];
        h.write(&mut b, false);
        assert_eq!(b[16], 3);
        assert_eq!(b[24], 4);
        assert_eq!(&b[32..40], &0x1000u64.to_le_bytes());
        assert_eq!(b[40], 5);
        assert_eq!(b[44], 1);
        assert_eq!(MemfdSer::read(&b, false), Ok(h));
    }

    /// The folio array of a file whose page count was 0 when preserve sized it: no area until
    /// the first entry, then one that grows; an empty builder preserves a one-entry area.
    #[test]
    fn folio_array_from_a_zero_estimate() -> Result {
        drop(ArrayBuilder::<FolioSer>::with_capacity(0)?);
        let mut b = ArrayBuilder::<FolioSer>::with_capacity(0)?;
        assert!(b.is_empty());
        for i in 0..600u64 {
            b.push(folio_ser(i + 1, FOLIO_DIRTY, i))?;
        }
        assert_eq!(b.len(), 600);
        let a = b.preserve()?;
        assert_eq!(a.as_slice().len(), 600);
        assert_eq!(folio_entry(&a.as_slice()[599]).index, 599);
        let empty = ArrayBuilder::<FolioSer>::with_capacity(0)?.preserve()?;
        assert_eq!(empty.as_slice().len(), 0);
        Ok(())
    }

    /// The hugetlb-memfd-rs-v1 header: memfd-v2's, then `page_shift` and a `reserved` word,
    /// which must be 0.
    #[cfg(CONFIG_HUGETLBFS)]
    #[test]
    fn huge_header_round_trips() {
        let h = MemfdSer {
            size: 1 << 21,
            page_shift: 21,
            ..MemfdSer::default()
        };
        let mut b = [0u8; HUGE_SER_SIZE];
        h.write(&mut b, true);
        assert_eq!(&b[SER_SIZE..SER_SIZE + 4], &21u32.to_le_bytes());
        assert_eq!(MemfdSer::read(&b, true), Ok(h));
        b[SER_SIZE + 4] = 1;
        assert_eq!(MemfdSer::read(&b, true), Err(EINVAL));
        assert_eq!(h.validate(Kind::Hugetlb { order: 9 }), Ok(()));
        // No kernel has huge pages of 4 KiB, or of 2^60 pages.
        assert_eq!(h.validate(Kind::Hugetlb { order: 0 }), Err(EOPNOTSUPP));
        assert_eq!(h.validate(Kind::Hugetlb { order: 60 }), Err(EOPNOTSUPP));
        // memfd-v2 has no page size.
        assert_eq!(h.validate(Kind::Shmem), Err(EINVAL));
    }

    #[test]
    fn header_validation() {
        let good = MemfdSer {
            pos: 0,
            size: 4 * PAGE_SIZE as u64,
            seals: ALL_SEALS,
            flags: 0,
            nr_folios: 2,
            folios: VmallocDescriptor {
                first: 0x1000,
                total_pages: 1,
                flags: 1,
                order: 0,
            },
            page_shift: 0,
        };
        assert_eq!(good.validate(Kind::Shmem), Ok(()));
        assert_eq!(
            MemfdSer {
                seals: 0x40,
                ..good
            }
            .validate(Kind::Shmem),
            Err(EOPNOTSUPP)
        );
        assert_eq!(
            MemfdSer { flags: 1, ..good }.validate(Kind::Shmem),
            Err(EINVAL)
        );
        assert_eq!(
            MemfdSer {
                pos: u64::MAX,
                ..good
            }
            .validate(Kind::Shmem),
            Err(EINVAL)
        );
        assert_eq!(
            MemfdSer {
                size: u64::MAX,
                ..good
            }
            .validate(Kind::Shmem),
            Err(EINVAL)
        );
        // More folios than pages in the file.
        assert_eq!(
            MemfdSer {
                nr_folios: 5,
                ..good
            }
            .validate(Kind::Shmem),
            Err(EINVAL)
        );
        // More folios than the array holds (256 entries per page).
        let big = MemfdSer {
            size: 1 << 30,
            nr_folios: 257,
            ..good
        };
        assert_eq!(big.validate(Kind::Shmem), Err(EINVAL));
        assert_eq!(
            MemfdSer {
                nr_folios: 256,
                ..big
            }
            .validate(Kind::Shmem),
            Ok(())
        );
        // An empty file needs no array.
        let empty = MemfdSer {
            size: 0,
            nr_folios: 0,
            folios: VmallocDescriptor::default(),
            ..good
        };
        assert_eq!(empty.validate(Kind::Shmem), Ok(()));
    }

    #[test]
    fn folio_array_validation() {
        let ok = [folio_ser(10, 3, 0), folio_ser(11, 3, 5), folio_ser(0, 0, 0)];
        assert_eq!(check_folios(&ok, 6), Ok(()));
        // An index beyond the size.
        assert_eq!(check_folios(&ok, 5), Err(EINVAL));
        // Unknown flag bits.
        assert_eq!(check_folios(&[folio_ser(10, 4, 0)], 6), Err(EINVAL));
        // Indices must strictly increase (no duplicates, no overlap).
        assert_eq!(
            check_folios(&[folio_ser(10, 3, 2), folio_ser(11, 3, 2)], 6),
            Err(EINVAL)
        );
        assert_eq!(
            check_folios(&[folio_ser(10, 3, 3), folio_ser(11, 3, 1)], 6),
            Err(EINVAL)
        );
    }

    #[test]
    fn folio_extent_validation() {
        let e = |index| FolioEntry {
            pfn: 1,
            flags: 3,
            index,
        };
        // An order-2 folio must be 4-aligned, inside the file, after the previous one.
        assert_eq!(check_folio_extent(&e(4), 2, 0, 8), Ok(8));
        assert_eq!(check_folio_extent(&e(2), 2, 0, 8), Err(EINVAL));
        // A large folio that reaches past the end of the file (shmem makes them).
        assert_eq!(check_folio_extent(&e(8), 2, 0, 9), Ok(12));
        assert_eq!(check_folio_extent(&e(8), 2, 0, 8), Err(EINVAL));
        assert_eq!(check_folio_extent(&e(4), 2, 5, 16), Err(EINVAL));
        assert_eq!(check_folio_extent(&e(0), 64, 0, 16), Err(EINVAL));
    }
}
