// SPDX-License-Identifier: GPL-2.0

//! Preserved vmalloc areas: their descriptor ([`VmallocDescriptor`]), and the check of the
//! chunk pages of an incoming one before KHO walks them.

use super::{
    bytes,
    preserved_order,
    IncomingPhys, //
};
use crate::{
    bindings,
    page::PAGE_SIZE,
    prelude::*,
    rbtree::RBTree, //
};
use macros::kunit_tests;

/// The descriptor of a preserved vmalloc area (`struct kho_vmalloc`), as it is stored in
/// handover data: 16 bytes, little-endian on the supported architectures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmallocDescriptor {
    /// Physical address of the first chunk page (0 if none).
    pub first: u64,
    /// Number of pages in the area.
    pub total_pages: u32,
    /// KHO's vmalloc flags (1: `VM_ALLOC`, 2: `VM_ALLOW_HUGE_VMAP`).
    pub flags: u16,
    /// Order of each preserved block of pages.
    pub order: u16,
}

/// Size of [`VmallocDescriptor`] in handover data.
pub const VMALLOC_DESCRIPTOR_SIZE: usize = 16;

const _: () = assert!(size_of::<bindings::kho_vmalloc>() == VMALLOC_DESCRIPTOR_SIZE);

/// Number of page addresses in a chunk of a preserved vmalloc area (`KHO_VMALLOC_SIZE`).
const VMALLOC_CHUNK_ENTRIES: usize = (PAGE_SIZE - 8) / 8;

impl VmallocDescriptor {
    /// Encodes the descriptor.
    pub fn to_bytes(self) -> [u8; VMALLOC_DESCRIPTOR_SIZE] {
        let mut b = [0u8; VMALLOC_DESCRIPTOR_SIZE];
        // The offsets are in range: `b` has the descriptor's size.
        let _ = bytes::put_le_u64(&mut b, 0, self.first);
        let _ = bytes::put_le_u32(&mut b, 8, self.total_pages);
        let _ = bytes::put_le_u16(&mut b, 12, self.flags);
        let _ = bytes::put_le_u16(&mut b, 14, self.order);
        b
    }

    /// Decodes a descriptor (no validation).
    pub fn from_bytes(b: &[u8; VMALLOC_DESCRIPTOR_SIZE]) -> Self {
        // The offsets are in range: `b` has the descriptor's size.
        Self {
            first: bytes::le_u64(b, 0).unwrap_or(0),
            total_pages: bytes::le_u32(b, 8).unwrap_or(0),
            flags: bytes::le_u16(b, 12).unwrap_or(0),
            order: bytes::le_u16(b, 14).unwrap_or(0),
        }
    }

    pub(super) fn to_raw(self) -> bindings::kho_vmalloc {
        let b = self.to_bytes();
        // SAFETY: `kho_vmalloc` is 16 bytes of integers (checked above), in the layout
        // `to_bytes` writes; every bit pattern is valid.
        unsafe { core::ptr::read_unaligned(b.as_ptr().cast()) }
    }

    pub(super) fn from_raw(raw: &bindings::kho_vmalloc) -> Self {
        let mut b = [0u8; VMALLOC_DESCRIPTOR_SIZE];
        // SAFETY: `raw` is 16 initialized bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                core::ptr::from_ref(raw).cast::<u8>(),
                b.as_mut_ptr(),
                VMALLOC_DESCRIPTOR_SIZE,
            )
        };
        Self::from_bytes(&b)
    }
}

/// What [`check_vmalloc_chunks`] reads: which addresses start a preserved page, and the words
/// of chunk pages. [`IncomingChunks`] reads the previous kernel's memory; KUnit gives the walk
/// hostile chains through a fake.
pub(super) trait ChunkSource {
    /// Whether KHO preserved an order-0 page at `phys` in the previous kernel (and it was not
    /// restored since).
    fn is_preserved_page(&mut self, phys: u64) -> bool;

    /// The `i`-th 64-bit word of the chunk page at `phys`.
    ///
    /// # Safety
    ///
    /// [`ChunkSource::is_preserved_page`] returned `true` for `phys`, and `i < PAGE_SIZE / 8`.
    unsafe fn chunk_word(&self, phys: u64, i: usize) -> u64;
}

/// The chunk pages of a preserved vmalloc area, in the memory the previous kernel handed over.
pub(super) struct IncomingChunks;

impl ChunkSource for IncomingChunks {
    fn is_preserved_page(&mut self, phys: u64) -> bool {
        matches!(preserved_order(IncomingPhys(phys)), Ok(0))
    }

    unsafe fn chunk_word(&self, phys: u64, i: usize) -> u64 {
        // SAFETY: By the caller's guarantee `phys` starts a preserved page: memory the previous
        // kernel handed over, reserved in this one and mapped in the direct map (page aligned,
        // so the word is aligned), and word `i` is inside it. It is read through a raw pointer,
        // with no reference formed: the page is not this kernel's until
        // `kho_restore_vmalloc` restores it.
        unsafe { bindings::phys_to_virt(phys).cast::<u64>().add(i).read() }
    }
}

/// Records `phys` as seen: `EINVAL` if it does not start a preserved order-0 page or was seen
/// before.
fn visit_vmalloc_page(seen: &mut RBTree<u64, ()>, mem: &mut impl ChunkSource, phys: u64) -> Result {
    if !mem.is_preserved_page(phys) {
        return Err(EINVAL);
    }
    match seen.try_create_and_insert(phys, (), GFP_KERNEL)? {
        Some(_) => Err(EINVAL),
        None => Ok(()),
    }
}

/// Checks the chunk pages of a preserved vmalloc area, starting at `first`, before KHO walks
/// them: an area of `total` order-0 pages for an array of `need` bytes.
///
/// `total` must be the pages `need` takes (at least one), or one more: what
/// [`ArrayBuilder::preserve`] may leave; `vmalloc` itself, and so the C writers, take exactly
/// what is needed. Every chunk and page address must start a preserved order-0 page and appear
/// once; every chunk but the last is full, the last may be empty only after a full one, and the
/// chunks hold exactly `total` pages. Anything else is `EINVAL`.
///
/// A repeated address is refused when it appears, so whatever the previous kernel wrote (a
/// chunk linked to itself, a chunk full of one page, a huge `total`), the walk visits at most
/// `total` distinct pages and their chunks, and `seen` holds no more.
///
/// [`ArrayBuilder::preserve`]: crate::kho::ArrayBuilder::preserve
pub(super) fn check_vmalloc_chunks(
    first: u64,
    total: usize,
    need: usize,
    mem: &mut impl ChunkSource,
) -> Result {
    let needed = need.div_ceil(PAGE_SIZE).max(1);
    if total < needed || total > needed + 1 {
        return Err(EINVAL);
    }
    // `kho_preserve_vmalloc()` starts a new chunk as soon as one is full, so an area of
    // k * VMALLOC_CHUNK_ENTRIES pages has an empty last chunk: k + 1 chunks.
    let max_chunks = total / VMALLOC_CHUNK_ENTRIES + 1;
    let mut seen = RBTree::<u64, ()>::new();
    let mut chunk = first;
    let mut chunks = 0usize;
    let mut pages = 0usize;
    while chunk != 0 {
        chunks += 1;
        if chunks > max_chunks {
            return Err(EINVAL);
        }
        visit_vmalloc_page(&mut seen, mem, chunk)?;
        let mut n = 0usize;
        while n < VMALLOC_CHUNK_ENTRIES {
            // SAFETY: `chunk` starts a preserved page (checked by `visit_vmalloc_page` above),
            // and `n + 1 <= VMALLOC_CHUNK_ENTRIES < PAGE_SIZE / 8`.
            let p = unsafe { mem.chunk_word(chunk, n + 1) };
            if p == 0 {
                break;
            }
            pages += 1;
            if pages > total {
                return Err(EINVAL);
            }
            visit_vmalloc_page(&mut seen, mem, p)?;
            n += 1;
        }
        // SAFETY: As above, for word 0: the address of the next chunk.
        let next = unsafe { mem.chunk_word(chunk, 0) };
        // Every chunk but the last is full; the last may be empty only after a full one.
        if (next != 0 && n != VMALLOC_CHUNK_ENTRIES) || (n == 0 && chunks == 1) {
            return Err(EINVAL);
        }
        chunk = next;
    }
    if pages != total {
        return Err(EINVAL);
    }
    Ok(())
}

#[kunit_tests(rust_kho)]
mod tests {
    use super::*;

    const PG: u64 = PAGE_SIZE as u64;

    /// After this many lookups the fake says "not preserved", so that a walk that does not stop
    /// by itself still ends (and the test fails on the count).
    const LOOKUP_LIMIT: usize = 8192;

    /// Memory for [`check_vmalloc_chunks`]: every nonzero page-aligned address is a preserved
    /// page, and `word` gives the words of the chunk pages. Lookups are counted.
    struct Fake<W: Fn(u64, usize) -> u64> {
        word: W,
        lookups: usize,
    }

    impl<W: Fn(u64, usize) -> u64> ChunkSource for Fake<W> {
        fn is_preserved_page(&mut self, phys: u64) -> bool {
            self.lookups += 1;
            self.lookups <= LOOKUP_LIMIT && phys != 0 && phys % PG == 0
        }

        unsafe fn chunk_word(&self, phys: u64, i: usize) -> u64 {
            (self.word)(phys, i)
        }
    }

    fn fake<W: Fn(u64, usize) -> u64>(word: W) -> Fake<W> {
        Fake { word, lookups: 0 }
    }

    /// Two chunks as `kho_preserve_vmalloc()` writes them: a full one, then one with one page.
    #[test]
    fn vmalloc_chunks_as_kho_writes_them() {
        const A: u64 = 0x10_0000;
        const B: u64 = 0x20_0000;
        let word = |c: u64, i: usize| match (c, i) {
            (A, 0) => B,
            (A, i) => 0x100_0000 + i as u64 * PG,
            (B, 1) => 0x200_0000,
            _ => 0,
        };
        let mut m = fake(word);
        assert_eq!(
            check_vmalloc_chunks(A, 512, 512 * PAGE_SIZE, &mut m),
            Ok(())
        );
        assert_eq!(m.lookups, 2 + 512);
        // One page more than the array needs (`ArrayBuilder::preserve`), not two.
        assert_eq!(
            check_vmalloc_chunks(A, 512, 511 * PAGE_SIZE, &mut fake(word)),
            Ok(())
        );
        assert_eq!(
            check_vmalloc_chunks(A, 512, 510 * PAGE_SIZE, &mut fake(word)),
            Err(EINVAL)
        );
        // Fewer pages than the array needs.
        assert_eq!(
            check_vmalloc_chunks(A, 512, 512 * PAGE_SIZE + 1, &mut fake(word)),
            Err(EINVAL)
        );
    }

    /// `total_pages = 0xffffffff` for a one-page array, over a chunk linked to itself and
    /// full of one page: refused before any chunk is read.
    #[test]
    fn vmalloc_total_beyond_what_len_needs() {
        const C: u64 = 0x10_0000;
        let mut m = fake(|c: u64, i: usize| if i == 0 { c } else { 0x200_0000 });
        assert_eq!(
            check_vmalloc_chunks(C, u32::MAX as usize, 16, &mut m),
            Err(EINVAL)
        );
        assert_eq!(m.lookups, 0);
    }

    /// A page listed twice is refused at its second appearance, also when the count of pages
    /// comes out right; so is a chunk listed as a page.
    #[test]
    fn vmalloc_repeated_page_refused_when_it_appears() {
        const C: u64 = 0x10_0000;
        let mut m = fake(|_c: u64, i: usize| if (1..=4).contains(&i) { 0x200_0000 } else { 0 });
        assert_eq!(
            check_vmalloc_chunks(C, 4, 4 * PAGE_SIZE, &mut m),
            Err(EINVAL)
        );
        assert_eq!(m.lookups, 3);
        let mut m = fake(|c: u64, i: usize| if i == 1 { c } else { 0 });
        assert_eq!(check_vmalloc_chunks(C, 1, 8, &mut m), Err(EINVAL));
        assert_eq!(m.lookups, 2);
    }

    /// A full chunk linked to itself is refused when it comes round again, before its pages
    /// are read a second time.
    #[test]
    fn vmalloc_chunk_linked_to_itself_refused_when_it_reappears() {
        const C: u64 = 0x10_0000;
        let mut m = fake(|c: u64, i: usize| {
            if i == 0 {
                c
            } else {
                0x100_0000 + i as u64 * PG
            }
        });
        let total = 2 * VMALLOC_CHUNK_ENTRIES;
        assert_eq!(
            check_vmalloc_chunks(C, total, total * PAGE_SIZE, &mut m),
            Err(EINVAL)
        );
        assert_eq!(m.lookups, 1 + VMALLOC_CHUNK_ENTRIES + 1);
    }
}
