// SPDX-License-Identifier: GPL-2.0

//! The token index of a session's files: which position of the session's file vector holds
//! the file with a given token.
//!
//! Outgoing sessions gain and lose files one by one, with tokens in any order, so their index
//! is a red-black tree (O(log n) insert, lookup and removal). An incoming session gets all its
//! files at once from the handover and never gains one later, so its index is a vector sorted
//! once: no allocation or rebalancing per file when `/dev/liveupdate` is first opened, and the
//! same O(log n) lookup.

use kernel::{
    prelude::*,
    rbtree::{
        RBTree,
        RBTreeNodeReservation, //
    }, //
};

/// Token to file position.
///
/// # Invariants
///
/// In [`TokenIndex::Sorted`] the entries are sorted by token and no two have the same token.
pub(crate) enum TokenIndex {
    /// An outgoing session's index.
    Tree(RBTree<u64, usize>),
    /// An incoming session's index: `(token, position)` pairs.
    Sorted(KVVec<(u64, usize)>),
}

impl TokenIndex {
    /// An empty index, for an outgoing session.
    pub(crate) fn new() -> Self {
        Self::Tree(RBTree::new())
    }

    /// The index of an incoming session whose file `i` has token `tokens[i]`, built in one go.
    /// `EEXIST` if two files have the same token.
    pub(crate) fn sorted(tokens: impl ExactSizeIterator<Item = u64>) -> Result<Self> {
        let mut v = KVVec::with_capacity(tokens.len(), GFP_KERNEL)?;
        for (i, t) in tokens.enumerate() {
            v.push((t, i), GFP_KERNEL)?;
        }
        v.sort_unstable_by_key(|e| e.0);
        if v.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(EEXIST);
        }
        // INVARIANT: Sorted just now, and checked for duplicate tokens.
        Ok(Self::Sorted(v))
    }

    /// The position of the file with `token`.
    pub(crate) fn get(&self, token: u64) -> Option<usize> {
        match self {
            Self::Tree(t) => t.get(&token).copied(),
            Self::Sorted(v) => v
                .binary_search_by_key(&token, |e| e.0)
                .ok()
                .and_then(|i| v.get(i))
                .map(|e| e.1),
        }
    }

    /// Adds `token` at `position` with the room `node` reserved. The caller makes sure that
    /// `token` is not in the index. Only an outgoing session's index takes new files:
    /// `EINVAL` for the other kind.
    pub(crate) fn insert(
        &mut self,
        token: u64,
        position: usize,
        node: RBTreeNodeReservation<u64, usize>,
    ) -> Result {
        match self {
            Self::Tree(t) => {
                t.insert(node.into_node(token, position));
                Ok(())
            }
            Self::Sorted(_) => Err(EINVAL),
        }
    }
}

#[kunit_tests(luo_rs_token_index)]
mod tests {
    use super::*;

    #[test]
    fn sorted_index_finds_every_token() -> Result {
        let tokens = [7u64, 3, u64::MAX, 0, 42];
        let idx = TokenIndex::sorted(tokens.iter().copied())?;
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(idx.get(*t), Some(i));
        }
        assert_eq!(idx.get(5), None);
        assert_eq!(idx.get(u64::MAX - 1), None);
        Ok(())
    }

    #[test]
    fn sorted_index_refuses_duplicate_tokens() {
        let tokens = [1u64, 9, 4, 9];
        assert_eq!(
            TokenIndex::sorted(tokens.iter().copied()).err(),
            Some(EEXIST)
        );
    }

    #[test]
    fn only_the_tree_takes_new_files() -> Result {
        let mut tree = TokenIndex::new();
        tree.insert(5, 0, RBTreeNodeReservation::new(GFP_KERNEL)?)?;
        assert_eq!(tree.get(5), Some(0));
        let mut sorted = TokenIndex::sorted([1u64].iter().copied())?;
        let node = RBTreeNodeReservation::new(GFP_KERNEL)?;
        assert_eq!(sorted.insert(2, 1, node).err(), Some(EINVAL));
        assert_eq!(sorted.get(2), None);
        Ok(())
    }
}
