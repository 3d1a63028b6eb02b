// SPDX-License-Identifier: GPL-2.0

//! Chains of KHO-preserved pages holding fixed-size entries ("KHO blocks").
//!
//! The luo-v5 handover stores sessions, and the files of each session, as a singly linked
//! chain of pages. Each page starts with a 16-byte header `{ u64 next_pa; u64 count }` and is
//! followed by `count` packed entries. Every block but the last is full.
//!
//! A [`BlockSet`] reserves the pages while entries are created, so that the reboot path only
//! writes into memory it already owns and never allocates.

use crate::{
    abi::{
        get_u64,
        put_u64, //
    },
    parse::{
        PageBytes,
        PageSource,
        ParseError,
        ParseResult, //
    }, //
};
use core::num::NonZeroUsize;
use kernel::{
    kho::{
        IncomingPage,
        IncomingPhys,
        PreservedPage, //
    },
    page::PAGE_SIZE,
    prelude::*, //
};

/// Size of the block header.
pub(crate) const HEADER_SIZE: usize = 16;

/// The most blocks one set may have, as in the C LUO (about 40 MiB of 4 KiB pages). Also the
/// longest chain accepted from the previous kernel.
pub(crate) const MAX_BLOCKS: usize = 10000;

/// Number of entries of `entry_size` bytes that fit in one block (at least 1, so that it can
/// always be divided by).
pub(crate) const fn per_block(entry_size: usize) -> usize {
    match (PAGE_SIZE - HEADER_SIZE).checked_div(entry_size) {
        Some(n) if n > 0 => n,
        _ => 1,
    }
}

/// Preserved pages reserved for the entries of one chain.
///
/// # Invariants
///
/// `per == per_block(entry_size)` (computed once: every create, close and preserve sizes the
/// set, and the division showed in their profiles).
pub(crate) struct BlockSet {
    blocks: KVec<PreservedPage>,
    entry_size: usize,
    /// Never 0, which the type says, so that dividing by it has no division-by-zero check.
    per: NonZeroUsize,
}

impl BlockSet {
    /// An empty set for entries of `entry_size` bytes.
    pub(crate) const fn new(entry_size: usize) -> Self {
        // INVARIANT: `per` is computed from `entry_size` here, and neither changes.
        Self {
            blocks: KVec::new(),
            entry_size,
            per: match NonZeroUsize::new(per_block(entry_size)) {
                Some(n) => n,
                None => NonZeroUsize::MIN,
            },
        }
    }

    /// Number of blocks needed for `count` entries.
    fn needed(&self, count: usize) -> usize {
        count.div_ceil(self.per.get())
    }

    /// Makes room for `count` entries.
    ///
    /// Fails with `ENOSPC` beyond [`MAX_BLOCKS`] blocks or `ENOMEM`, leaving the set as it was.
    pub(crate) fn grow(&mut self, count: usize) -> Result {
        let need = self.needed(count);
        if need > MAX_BLOCKS {
            return Err(ENOSPC);
        }
        let orig = self.blocks.len();
        while self.blocks.len() < need {
            let res = PreservedPage::new().and_then(|p| Ok(self.blocks.push(p, GFP_KERNEL)?));
            if let Err(e) = res {
                self.blocks.truncate(orig);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Frees the blocks not needed for `count` entries.
    pub(crate) fn shrink(&mut self, count: usize) {
        self.blocks.truncate(self.needed(count));
    }

    /// Gives back the blocks beyond those `count` entries need once more than one is spare:
    /// closing sessions one by one then divides at block boundaries only, not on every close.
    /// The reboot path trims exactly ([`BlockSet::shrink`]) before it writes the chain.
    pub(crate) fn shrink_lazily(&mut self, count: usize) {
        let per = self.per.get();
        if count.saturating_add(2 * per) <= self.blocks.len().saturating_mul(per) {
            self.shrink(count);
        }
    }

    /// Number of reserved blocks (for the KUnit tests).
    #[cfg(CONFIG_KUNIT)]
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// The pages, in chain order (for the test handler's deliberate corruption).
    #[cfg(CONFIG_LIVEUPDATE_RUST_TEST)]
    pub(crate) fn pages_mut(&mut self) -> &mut [PreservedPage] {
        &mut self.blocks
    }

    /// Starts writing `total` entries into the reserved blocks (the reboot path: no
    /// allocation). Block headers are written here; entries are handed out in order by
    /// [`BlockWriter::next_slot`].
    ///
    /// `ENOSPC` if fewer blocks were reserved than `total` entries need.
    pub(crate) fn writer(&mut self, total: usize) -> Result<BlockWriter<'_>> {
        let per = self.per.get();
        let need = self.needed(total);
        if need > self.blocks.len() {
            return Err(ENOSPC);
        }
        let mut next = 0u64;
        for (b, block) in self.blocks.iter_mut().take(need).enumerate().rev() {
            let phys = block.phys();
            let n = (total - b * per).min(per);
            let page = block.bytes_mut();
            put_u64(page, 0, next);
            put_u64(page, 8, n as u64);
            next = phys;
        }
        // INVARIANT: No entry of the `need` blocks was handed out; `blocks` has them all.
        Ok(BlockWriter {
            head: next,
            blocks: self.blocks.iter_mut(),
            cur: &mut [],
            left: total,
            entry_size: self.entry_size,
            per,
        })
    }
}

/// Writes the entries of a chain, in order. See [`BlockSet::writer`].
///
/// # Invariants
///
/// `cur` holds the entries of the current block not handed out yet, `blocks` the blocks after
/// it, and `left` counts the entries still to hand out (in `cur` first, then at most `per` in
/// each later block), with `per == per_block(entry_size)`.
pub(crate) struct BlockWriter<'a> {
    head: u64,
    blocks: core::slice::IterMut<'a, PreservedPage>,
    cur: &'a mut [u8],
    left: usize,
    entry_size: usize,
    per: usize,
}

impl<'a> BlockWriter<'a> {
    /// Physical address of the first block, 0 for an empty chain.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// The next entry, for the caller to write whole: nothing zeroes it first, so every byte
    /// must be written. `None` once `total` entries were handed out, or if `N` is not the
    /// entry size. Writing in place spares a copy of each entry on the reboot path, and
    /// handing out entries from the current block spares a lookup of the block for each.
    pub(crate) fn next_slot<const N: usize>(&mut self) -> Option<&'a mut [u8; N]> {
        if N != self.entry_size || self.left == 0 {
            return None;
        }
        if self.cur.len() < N {
            // The current block is done: the next one holds the next `per` entries, or what
            // is left.
            let n = self.left.min(self.per);
            let page = self.blocks.next()?.bytes_mut();
            // INVARIANT: The next block's entries; none of them was handed out.
            self.cur = page.get_mut(HEADER_SIZE..HEADER_SIZE + n * N)?;
        }
        let (e, rest) = core::mem::take(&mut self.cur).split_first_chunk_mut::<N>()?;
        // INVARIANT: `e` is handed out and leaves `cur`.
        self.cur = rest;
        self.left -= 1;
        Some(e)
    }
}

/// The pages KHO preserved for LUO in the previous kernel: what the parser reads at boot.
pub(crate) struct KhoPages;

impl PageSource for KhoPages {
    type Page = IncomingPage;

    /// Restores a page that LUO's handover points to: a block of a chain, or the FLB table.
    ///
    /// `phys` is checked (aligned, preserved, one page), but whose page it is cannot be: the
    /// luo-v5 handover carries no proof that a page was preserved by LUO. LUO trusts that the
    /// addresses in its own handover name its own pages. See "Trust" in
    /// `Documentation/core-api/liveupdate-rust.rst`.
    fn take(&mut self, phys: IncomingPhys) -> Result<IncomingPage> {
        // SAFETY: `phys` was read from LUO's handover, which the previous kernel's LUO wrote
        // with the addresses of pages it preserved for LUO (`kho_alloc_preserve`); no other
        // part of this kernel restores or uses those pages.
        unsafe { IncomingPage::restore(phys) }
    }
}

impl PageBytes for IncomingPage {
    fn bytes(&self) -> &[u8] {
        IncomingPage::bytes(self)
    }
}

/// Reads a chain of blocks taken from `src`, calling `entry` for each entry in order (with
/// `src`, to take the pages an entry points to), and frees its pages. Returns the number of
/// entries.
///
/// The chain is hostile data. It is rejected if an address is not a page that KHO preserved
/// (this also catches a cycle: a page can be restored only once), if it has more than
/// [`MAX_BLOCKS`] blocks, or if a block's count is 0 (except in a last block after others,
/// which the C LUO writes) or more than fits. Entries of the blocks before the bad one have been
/// passed to `entry` already. An error of `entry` stops the walk.
pub(crate) fn read_chain<S: PageSource>(
    src: &mut S,
    head: IncomingPhys,
    entry_size: usize,
    mut entry: impl FnMut(&mut S, &[u8]) -> ParseResult,
) -> ParseResult<usize> {
    let per = per_block(entry_size);
    let mut pages = KVVec::new();
    let mut next = head;
    let mut total = 0usize;
    while next.0 != 0 {
        if pages.len() >= MAX_BLOCKS {
            pr_warn!("block chain longer than {} blocks\n", MAX_BLOCKS);
            return Err(ParseError::Corrupt("its block chain is too long"));
        }
        let Ok(page) = src.take(next) else {
            pr_warn!("block chain: {:#x} is not a preserved page\n", next.0);
            return Err(ParseError::Corrupt("its block chain has a bad address"));
        };
        let bytes = page.bytes();
        let count = get_u64(bytes, 8);
        next = IncomingPhys(get_u64(bytes, 0));
        if count == 0 && next.0 == 0 && !pages.is_empty() {
            // An empty last block: the C LUO leaves one linked when a CREATE_SESSION fails
            // with EEXIST after growing a full block set (its reader then panics). It holds
            // nothing, so the chain read so far is complete.
            pages.push(page, GFP_KERNEL)?;
            break;
        }
        if count == 0 || count > per as u64 {
            pr_warn!("block chain: bad entry count {} (1..={})\n", count, per);
            return Err(ParseError::Corrupt("a block has a bad entry count"));
        }
        // `count` is at most `per`, so the entries fit in the page.
        for e in bytes[HEADER_SIZE..]
            .chunks_exact(entry_size)
            .take(count as usize)
        {
            entry(src, e)?;
        }
        total = total.saturating_add(count as usize);
        // Keep the pages until the whole chain is read, so an address seen twice fails to
        // restore instead of pointing at a page freed meanwhile.
        pages.push(page, GFP_KERNEL)?;
    }
    Ok(total)
}

#[kunit_tests(luo_rs_block)]
mod tests {
    use super::*;

    #[test]
    fn entries_per_block_match_the_c_luo() {
        // 51 sessions (80 B) and 63 files (64 B) per 4 KiB block, as in the spec.
        assert_eq!(per_block(80), (PAGE_SIZE - 16) / 80);
        assert_eq!(per_block(64), (PAGE_SIZE - 16) / 64);
        if PAGE_SIZE == 4096 {
            assert_eq!(per_block(80), 51);
            assert_eq!(per_block(64), 63);
        }
    }

    #[test]
    fn blocks_needed_rounds_up() {
        let per = per_block(64);
        let files = BlockSet::new(64);
        assert_eq!(files.needed(0), 0);
        assert_eq!(files.needed(1), 1);
        assert_eq!(files.needed(per), 1);
        assert_eq!(files.needed(per + 1), 2);
        // The C limits: 510,000 sessions and 630,000 files fit in MAX_BLOCKS.
        if PAGE_SIZE == 4096 {
            assert_eq!(BlockSet::new(80).needed(510_000), MAX_BLOCKS);
            assert_eq!(files.needed(630_000), MAX_BLOCKS);
        }
    }

    #[test]
    fn writer_chains_blocks_in_order() -> Result {
        let per = per_block(64);
        let mut set = BlockSet::new(64);
        set.grow(per + 2)?;
        assert_eq!(set.len(), 2);
        assert!(set.writer(2 * per + 1).is_err());
        let mut w = set.writer(per + 2)?;
        let head = w.head();
        let mut n = 0u64;
        assert!(w.next_slot::<80>().is_none());
        while let Some(e) = w.next_slot::<64>() {
            e.fill(0);
            put_u64(e, 0, n);
            n += 1;
        }
        assert_eq!(n, per as u64 + 2);
        assert_eq!(head, set.blocks[0].phys());
        let b0 = set.blocks[0].bytes();
        assert_eq!(get_u64(b0, 0), set.blocks[1].phys());
        assert_eq!(get_u64(b0, 8), per as u64);
        assert_eq!(get_u64(b0, HEADER_SIZE + 64), 1);
        let b1 = set.blocks[1].bytes();
        assert_eq!(get_u64(b1, 0), 0);
        assert_eq!(get_u64(b1, 8), 2);
        assert_eq!(get_u64(b1, HEADER_SIZE + 64), per as u64 + 1);
        set.shrink(per);
        assert_eq!(set.len(), 1);
        set.shrink(0);
        assert_eq!(set.len(), 0);

        // Whole entries written in place (`next_slot`), across two blocks.
        set.grow(per + 1)?;
        let mut w = set.writer(per + 1)?;
        assert!(w.next_slot::<32>().is_none());
        for i in 0..=per {
            let e = w.next_slot::<64>();
            assert!(e.is_some());
            if let Some(e) = e {
                *e = [i as u8; 64];
            }
        }
        assert!(w.next_slot::<64>().is_none());
        let b0 = set.blocks[0].bytes();
        assert_eq!(b0[HEADER_SIZE], 0);
        assert_eq!(b0[HEADER_SIZE + 64 * (per - 1) + 63], (per - 1) as u8);
        let b1 = set.blocks[1].bytes();
        assert_eq!(get_u64(b1, 8), 1);
        assert_eq!(b1[HEADER_SIZE..HEADER_SIZE + 64], [per as u8; 64]);
        Ok(())
    }

    #[test]
    fn grow_refuses_beyond_the_limit() {
        let mut set = BlockSet::new(64);
        assert_eq!(set.grow(per_block(64) * MAX_BLOCKS + 1).err(), Some(ENOSPC));
        assert_eq!(set.len(), 0);
    }
}
