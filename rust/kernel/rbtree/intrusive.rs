// SPDX-License-Identifier: GPL-2.0

//! Intrusive red-black trees: the node is a field of the item.
//!
//! [`RBTree`](super::RBTree) allocates a node for every entry and finds an entry by its key.
//! An intrusive [`Tree`] keeps its node, a [`Links`], inside the item itself, so that:
//! - an insertion allocates nothing and cannot fail for lack of memory;
//! - an item leaves its tree without a search and without a free: [`Tree::remove`] unlinks the
//!   node the item holds.
//!
//! Items are reference counted. The tree owns one [`ListArc<T, ID>`] of each item it holds,
//! the same token that [`List`](crate::list::List) uses: there is at most one per item and
//! `ID`, so an item is in at most one tree (or list) of each `ID`. An item can be in a list and
//! in a tree at the same time with two IDs (see [`ListArc::pair_from_pin_unique`]).
//!
//! C header: [`include/linux/rbtree.h`](srctree/include/linux/rbtree.h)
//!
//! # Examples
//!
//! The KUnit suite `rust_rbtree_intrusive` at the end of this file: an item type with its
//! [`Links`], [`impl_has_tree_links!`] and [`TreeItem`], then insertion, lookup, removal and drop.
//! The Rust LUO keeps its sessions by name in two such trees (`kernel/liveupdate/session.rs`).

use crate::{
    bindings,
    list::{
        ListArc,
        ListArcSafe, //
    },
    prelude::*,
    sync::ArcBorrow,
    types::Opaque, //
};
use core::{
    cmp::Ordering,
    marker::PhantomData,
    ptr, //
};
use macros::kunit_tests;

/// The node of an item in a [`Tree`] with this `ID`.
///
/// # Invariants
///
/// While the item is in no tree, the node is empty: all zeroes. A node in a tree is never all
/// zeroes: the root is black (parent NULL, color 1), and every other node has a parent. (C's
/// `RB_CLEAR_NODE()` marks an empty node with a pointer to itself instead, which a moved node
/// would no longer match.)
#[pin_data]
#[repr(transparent)]
pub struct Links<const ID: u64 = 0> {
    #[pin]
    node: Opaque<bindings::rb_node>,
}

// SAFETY: The node is only written through a `&mut Tree` that holds the item, or by `Tree::remove`
// whose caller promises the same; it has no thread affinity.
unsafe impl<const ID: u64> Send for Links<ID> {}
// SAFETY: A shared `&Links` gives no access to the node; see `Send`.
unsafe impl<const ID: u64> Sync for Links<ID> {}

impl<const ID: u64> Links<ID> {
    /// An empty node: the item is in no tree.
    pub fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // INVARIANT: The node is empty: all zeroes.
            node: Opaque::zeroed(),
        })
    }
}

/// Marks `node` as in no tree: all zeroes (see [`Links`]).
///
/// # Safety
///
/// `node` is valid for writes and no one else accesses it now.
unsafe fn clear(node: *mut bindings::rb_node) {
    // SAFETY: By the function's precondition.
    unsafe {
        ptr::write(
            node,
            bindings::rb_node {
                __rb_parent_color: 0,
                rb_right: ptr::null_mut(),
                rb_left: ptr::null_mut(),
            },
        )
    };
}

/// Declares that the type has a [`Links<ID>`] field, at byte offset `OFFSET`.
///
/// Implement it with [`impl_has_tree_links!`].
///
/// # Safety
///
/// `OFFSET` is the byte offset in `Self` of a field of type [`Links<ID>`], which is structurally
/// pinned.
pub unsafe trait HasTreeLinks<const ID: u64 = 0> {
    /// The byte offset of the [`Links<ID>`] field.
    const OFFSET: usize;
}

/// Implements [`HasTreeLinks`] for a type with a [`Links`] field.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_has_tree_links {
    ($(impl HasTreeLinks<$id:tt> for $self:ty { self.$field:ident })*) => {$(
        const _: () = {
            // The field has exactly the type `Links<$id>`: this only compiles if it does. A raw
            // place, unlike a reference, is not dereferenced into a field's target, so a
            // `KBox<Links>` or `&Links` field does not pass.
            #[allow(dead_code)]
            fn check(item: *const $self) -> *const $crate::rbtree::intrusive::Links<$id> {
                // SAFETY: Never called; taking a field's address reads nothing.
                unsafe { ::core::ptr::addr_of!((*item).$field) }
            }
        };
        // SAFETY: `OFFSET` is the offset of `$field`, which has type `Links<$id>` (checked
        // above) and is a field of `$self` itself (`offset_of!` follows no pointer).
        unsafe impl $crate::rbtree::intrusive::HasTreeLinks<$id> for $self {
            const OFFSET: usize = ::core::mem::offset_of!($self, $field);
        }
    )*};
}
pub use impl_has_tree_links;

/// An item of a [`Tree`] with this `ID`: it has the node, the [`ListArc`] token and a key.
pub trait TreeItem<const ID: u64 = 0>: ListArcSafe<ID> + HasTreeLinks<ID> + Sized {
    /// The key the tree orders its items by.
    type Key: Ord + ?Sized;

    /// The item's key. It must not change while the item is in a tree (the tree would then be
    /// out of order: lookups could miss, but memory stays safe).
    fn key(&self) -> &Self::Key;
}

/// An intrusive red-black tree of reference-counted items, ordered by key, with unique keys.
///
/// # Invariants
///
/// - `root` is the root of a valid `rb_root` tree whose every node is the [`Links<ID>`] of an
///   item of type `T` (at `T::OFFSET`).
/// - The tree owns one [`ListArc<T, ID>`] of each of these items, turned into a raw pointer with
///   [`ListArc::into_raw`].
/// - No two items have equal keys.
pub struct Tree<T: TreeItem<ID>, const ID: u64 = 0> {
    root: bindings::rb_root,
    _items: PhantomData<ListArc<T, ID>>,
}

// SAFETY: The tree owns `ListArc`s of its items, which may move to and drop on any thread if
// `T: Send + Sync`; the raw pointers of `rb_root` are only followed through the tree.
unsafe impl<T: TreeItem<ID> + Send + Sync, const ID: u64> Send for Tree<T, ID> {}
// SAFETY: A `&Tree` only gives out `&T` (and `ArcBorrow<T>`), which is fine if `T: Sync`.
unsafe impl<T: TreeItem<ID> + Send + Sync, const ID: u64> Sync for Tree<T, ID> {}

impl<T: TreeItem<ID>, const ID: u64> Default for Tree<T, ID> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: TreeItem<ID>, const ID: u64> Tree<T, ID> {
    /// An empty tree.
    pub const fn new() -> Self {
        // INVARIANT: An empty tree.
        Self {
            root: bindings::rb_root {
                rb_node: ptr::null_mut(),
            },
            _items: PhantomData,
        }
    }

    /// Whether the tree holds no item.
    pub fn is_empty(&self) -> bool {
        self.root.rb_node.is_null()
    }

    /// The node of `item`.
    fn node(item: *const T) -> *mut bindings::rb_node {
        // `Links<ID>` is a transparent `Opaque<rb_node>`, at `T::OFFSET` by `HasTreeLinks`.
        item.cast::<u8>()
            .wrapping_add(T::OFFSET)
            .cast::<bindings::rb_node>()
            .cast_mut()
    }

    /// The item whose node is `node`. If `node` is a node of this tree, the item is live while
    /// the tree holds it, and the pointer has the provenance of the tree's reference (nodes
    /// are linked with pointers made by [`ListArc::into_raw`]).
    fn item(node: *mut bindings::rb_node) -> *const T {
        // By the type invariants, `node` is the `Links<ID>` of a `T` at `T::OFFSET`.
        node.cast::<u8>().wrapping_sub(T::OFFSET).cast::<T>()
    }

    /// The item with this key, if any.
    pub fn get(&self, key: &T::Key) -> Option<ArcBorrow<'_, T>> {
        let mut node = self.root.rb_node;
        while !node.is_null() {
            let item = Self::item(node);
            // SAFETY: `node` is a node of this tree (the root, or a child of one of its nodes),
            // so `item` is live while `self` is borrowed.
            node = match key.cmp(unsafe { &*item }.key()) {
                // SAFETY: `node` is a valid node, so its child pointers can be read; the tree
                // is not modified while `self` is borrowed.
                Ordering::Less => unsafe { (*node).rb_left },
                // SAFETY: As above.
                Ordering::Greater => unsafe { (*node).rb_right },
                Ordering::Equal => {
                    // SAFETY: The tree made the pointer with `ListArc::into_raw`, which is
                    // `Arc::into_raw`, and keeps that reference while `self` is borrowed: the
                    // count stays above zero, and no `UniqueArc` of the item can exist.
                    return Some(unsafe { ArcBorrow::from_raw(item) });
                }
            };
        }
        None
    }

    /// Inserts `item`; if an item with an equal key is there already, gives `item` back.
    pub fn insert(&mut self, item: ListArc<T, ID>) -> Result<(), ListArc<T, ID>> {
        let mut parent = ptr::null_mut();
        let mut link: *mut *mut bindings::rb_node = &mut self.root.rb_node;
        // SAFETY: `link` points at the root pointer, which is valid.
        while !unsafe { *link }.is_null() {
            // SAFETY: As above, then at a child pointer of a node of this tree.
            parent = unsafe { *link };
            // SAFETY: `parent` is a node of this tree, so its item is live.
            let other = unsafe { &*Self::item(parent) };
            link = match item.key().cmp(other.key()) {
                // SAFETY: `parent` is a valid node, and `&mut self` excludes other access.
                Ordering::Less => unsafe { &raw mut (*parent).rb_left },
                // SAFETY: As above.
                Ordering::Greater => unsafe { &raw mut (*parent).rb_right },
                Ordering::Equal => return Err(item),
            };
        }
        let node = Self::node(ListArc::into_raw(item));
        // SAFETY: `node` is the node of the item just turned into a raw pointer, which the tree
        // now owns; the `ListArc` was the only one for `ID`, so the item is in no other tree of
        // this `ID` and no one else touches its node. `parent` and `link` are the place found
        // above in this tree, which `&mut self` keeps unchanged.
        unsafe {
            bindings::rb_link_node(node, parent, link);
            bindings::rb_insert_color(node, &mut self.root);
        }
        // INVARIANT: The node is linked in key order, and its key was not in the tree; the tree
        // owns the `ListArc`.
        Ok(())
    }

    /// Removes `item` from this tree and gives back the tree's reference to it; `None` if the
    /// item is in no tree.
    ///
    /// # Safety
    ///
    /// `item` is not in, or being inserted into, another tree with this `ID`.
    pub unsafe fn remove(&mut self, item: &T) -> Option<ListArc<T, ID>> {
        let item = ptr::from_ref(item);
        let node = Self::node(item);
        // SAFETY: The item is in this tree, which `&mut self` excludes others from, or in no
        // tree, where no one writes its node (the caller's precondition): the read is not a
        // data race.
        if unsafe { (*node).__rb_parent_color } == 0 {
            // By the invariant of `Links`, an empty node: in no tree.
            return None;
        }
        // SAFETY: The node is not empty, so the item is in a tree, which by the caller's
        // precondition is this one.
        unsafe { bindings::rb_erase(node, &mut self.root) };
        // SAFETY: The node is out of the tree; no one else accesses it.
        unsafe { clear(node) };
        // INVARIANT: The node is empty again, and the tree gives up its `ListArc`.
        // SAFETY: The tree made `item`'s pointer with `ListArc::into_raw` when it inserted it.
        Some(unsafe { ListArc::from_raw(item) })
    }
}

impl<T: TreeItem<ID>, const ID: u64> Drop for Tree<T, ID> {
    fn drop(&mut self) {
        // SAFETY: `self.root` is a valid tree.
        let mut node = unsafe { bindings::rb_first_postorder(&self.root) };
        while !node.is_null() {
            // SAFETY: `node` is a node of this tree; in post-order, its children were visited
            // (and cleared) already, and the next node is found before this one is cleared.
            let next = unsafe { bindings::rb_next_postorder(node) };
            let item = Self::item(node);
            // SAFETY: The tree is going away and no one else accesses the node.
            unsafe { clear(node) };
            // INVARIANT: The item is in no tree now; the tree gives up its `ListArc`.
            // SAFETY: The tree made the pointer with `ListArc::into_raw`.
            drop(unsafe { ListArc::<T, ID>::from_raw(item) });
            node = next;
        }
    }
}

#[kunit_tests(rust_rbtree_intrusive)]
mod tests {
    use super::*;
    use crate::{
        list::impl_list_arc_safe,
        sync::Arc, //
    };

    #[pin_data]
    struct Item {
        key: u64,
        #[pin]
        links: Links<1>,
    }

    impl_list_arc_safe! {
        impl ListArcSafe<0> for Item { untracked; }
        impl ListArcSafe<1> for Item { untracked; }
    }
    impl_has_tree_links! {
        impl HasTreeLinks<1> for Item { self.links }
    }
    impl TreeItem<1> for Item {
        type Key = u64;
        fn key(&self) -> &u64 {
            &self.key
        }
    }

    /// An item, its tree token (`ListArc<_, 1>`) and a plain reference.
    fn item(key: u64) -> Result<(ListArc<Item, 1>, Arc<Item>)> {
        let unique = crate::sync::UniqueArc::pin_init(
            pin_init!(Item {
                key,
                links <- Links::new(),
            }),
            GFP_KERNEL,
        )?;
        let (list, tree) = ListArc::<Item, 0>::pair_from_pin_unique::<1>(unique);
        Ok((tree, list.into_arc()))
    }

    #[test]
    fn insert_get_remove_in_any_order() -> Result {
        let mut tree = Tree::<Item, 1>::new();
        let mut items = KVec::new();
        // 0, 37, 74, ... modulo 101: every key once, in an order that rebalances the tree.
        for i in 0..101u64 {
            let (token, item) = item(i * 37 % 101)?;
            assert!(tree.insert(token).is_ok());
            items.push(item, GFP_KERNEL)?;
        }
        for i in 0..101u64 {
            assert_eq!(tree.get(&i).map(|it| it.key), Some(i));
        }
        assert!(tree.get(&101).is_none());
        for it in items.iter().step_by(2) {
            // SAFETY: `tree` is the only tree with ID 1.
            let back = unsafe { tree.remove(it) };
            assert_eq!(back.map(|b| b.key), Some(it.key));
            // SAFETY: As above.
            assert!(unsafe { tree.remove(it) }.is_none());
        }
        for (n, it) in items.iter().enumerate() {
            assert_eq!(tree.get(&it.key).is_some(), n % 2 == 1);
        }
        Ok(())
    }

    #[test]
    fn duplicate_key_is_given_back() -> Result {
        let mut tree = Tree::<Item, 1>::new();
        let (a, _a) = item(5)?;
        let (b, b_ref) = item(5)?;
        assert!(tree.insert(a).is_ok());
        let back = tree.insert(b);
        assert!(back.as_ref().is_err_and(|b| ptr::eq(&**b, &*b_ref)));
        // The twin was not linked: it is in no tree.
        // SAFETY: `tree` is the only tree with ID 1.
        assert!(unsafe { tree.remove(&b_ref) }.is_none());
        Ok(())
    }

    #[test]
    fn drop_gives_every_reference_back() -> Result {
        let mut refs = KVec::new();
        {
            let mut tree = Tree::<Item, 1>::new();
            assert!(tree.is_empty());
            for i in 0..20 {
                let (token, item) = item(i)?;
                assert!(tree.insert(token).is_ok());
                refs.push(item, GFP_KERNEL)?;
            }
            assert!(!tree.is_empty());
        }
        let mut tree = Tree::<Item, 1>::new();
        for r in refs.into_iter() {
            // The tree's reference is gone: this one is the last.
            let unique = Arc::into_unique_or_drop(r);
            assert!(unique.is_some());
            let Some(unique) = unique else {
                continue;
            };
            // The node was cleared: the item is in no tree (an uncleared node would be
            // unlinked from a tree it is not in).
            // SAFETY: `tree` is the only tree with ID 1.
            assert!(unsafe { tree.remove(&unique) }.is_none());
            // And it can go in a tree again.
            assert!(tree.insert(ListArc::from(unique)).is_ok());
        }
        Ok(())
    }
}
