// SPDX-License-Identifier: GPL-2.0

//! Chains of KHO-preserved pages holding fixed-size entries ("KHO blocks").
//!
//! The luo-v5 handover stores sessions, and the files of each session, as a singly linked
//! chain of pages. Each page starts with a 16-byte header `{ u64 next_pa; u64 count }` and is
//! followed by `count` packed entries. Every block but the last is full.
//!
//! A [`BlockSet`] reserves the pages while entries are created, so that the reboot path only
//! writes into memory it already owns and never allocates.

use kernel::{
    kho::PreservedPage,
    page::PAGE_SIZE,
    prelude::*, //
};

/// Size of the block header.
pub(crate) const HEADER_SIZE: usize = 16;

/// The most blocks one set may have, as in the C LUO (about 40 MiB of 4 KiB pages). Also the
/// longest chain accepted from the previous kernel.
pub(crate) const MAX_BLOCKS: usize = 10000;

/// Number of entries of `entry_size` bytes that fit in one block.
pub(crate) const fn per_block(entry_size: usize) -> usize {
    (PAGE_SIZE - HEADER_SIZE) / entry_size
}

/// Number of blocks needed for `count` entries of `entry_size` bytes.
pub(crate) const fn blocks_needed(count: usize, entry_size: usize) -> usize {
    count.div_ceil(per_block(entry_size))
}

/// Preserved pages reserved for the entries of one chain.
pub(crate) struct BlockSet {
    blocks: KVec<PreservedPage>,
    entry_size: usize,
}

impl BlockSet {
    /// An empty set for entries of `entry_size` bytes.
    pub(crate) const fn new(entry_size: usize) -> Self {
        Self {
            blocks: KVec::new(),
            entry_size,
        }
    }

    /// Makes room for `count` entries.
    ///
    /// Fails with `ENOSPC` beyond [`MAX_BLOCKS`] blocks or `ENOMEM`, leaving the set as it was.
    pub(crate) fn grow(&mut self, count: usize) -> Result {
        let need = blocks_needed(count, self.entry_size);
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
        self.blocks.truncate(blocks_needed(count, self.entry_size));
    }

    /// Number of reserved blocks.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }
}
