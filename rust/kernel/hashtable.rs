// SPDX-License-Identifier: GPL-2.0

//! Intrusive hash tables: the chain node is a field of the item.
//!
//! A [`HashTable`] keeps items with unique keys in chains of `hlist` nodes ([`HashLinks`])
//! that are fields of the items themselves, as C's `include/linux/hashtable.h` does, so that:
//! - an item leaves its table without a search and without a free: [`HashTable::remove`]
//!   unlinks the node the item holds, in a few stores;
//! - an insertion allocates nothing but, now and then, a larger bucket array
//!   ([`HashTable::reserve`]).
//!
//! Keys are hashed with a secret seed drawn when the table first gets its buckets, so that
//! whoever chooses the keys (userspace, say) cannot choose them to collide.
//!
//! Items are reference counted: the table owns one [`ListArc<T, ID>`] of each item it holds,
//! the token that [`List`](crate::list::List) uses, so an item is in at most one list or table
//! of each `ID`.
//!
//! C header: [`include/linux/list.h`](srctree/include/linux/list.h) (`hlist`)
//!
//! # Examples
//!
//! A table of ports by number:
//!
//! ```
//! use kernel::{
//!     hashtable::{
//!         impl_has_hash_links,
//!         HashItem,
//!         HashLinks,
//!         HashTable, //
//!     },
//!     list::{
//!         impl_list_arc_safe,
//!         ListArc, //
//!     },
//!     sync::Arc,
//! };
//!
//! #[pin_data]
//! struct Port {
//!     number: u16,
//!     #[pin]
//!     links: HashLinks,
//! }
//!
//! impl_list_arc_safe! {
//!     impl ListArcSafe<0> for Port { untracked; }
//! }
//! impl_has_hash_links! {
//!     impl HasHashLinks<0> for Port { self.links }
//! }
//! impl HashItem for Port {
//!     type Key = u16;
//!     fn key(&self) -> &u16 {
//!         &self.number
//!     }
//!     fn hash(key: &u16, seed: u64) -> u64 {
//!         (u64::from(*key) ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
//!     }
//! }
//!
//! fn port(number: u16) -> Result<ListArc<Port>> {
//!     ListArc::pin_init(
//!         try_pin_init!(Port { number, links <- HashLinks::new() }),
//!         GFP_KERNEL,
//!     )
//! }
//!
//! let mut ports = HashTable::<Port>::new();
//! // No bucket before the first `reserve`: the item comes back.
//! assert!(ports.insert(port(22)?).is_err());
//! for number in [22, 80, 443] {
//!     ports.reserve()?;
//!     assert!(ports.insert(port(number)?).is_ok());
//! }
//! // Keys are unique: a second port 80 comes back too.
//! assert!(ports.insert(port(80)?).is_err());
//! assert_eq!(ports.len(), 3);
//! assert_eq!(ports.get(&443).map(|p| p.number), Some(443));
//! assert!(ports.get(&8080).is_none());
//!
//! // Removing an item takes the item itself, and gives the table's reference back.
//! let http = Arc::from(ports.get(&80).ok_or(ENOENT)?);
//! // SAFETY: `ports` is the only table of `Port`s with ID 0.
//! let back = unsafe { ports.remove(&http) };
//! assert!(back.is_some_and(|p| p.number == 80));
//! // SAFETY: As above.
//! assert!(unsafe { ports.remove(&http) }.is_none());
//! assert_eq!(ports.len(), 2);
//! # Ok::<(), Error>(())
//! ```
//!
//! The KUnit suite `rust_hashtable` at the end of this file tests growth, long chains and
//! references. The Rust LUO keeps its sessions by name in such tables
//! (`kernel/liveupdate/session.rs`).

use crate::{
    alloc::KVVec,
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
    marker::PhantomData,
    ptr, //
};
use macros::kunit_tests;

/// The chain node of an item in a [`HashTable`] with this `ID`.
///
/// # Invariants
///
/// While the item is in no table, the node is empty: both pointers are NULL. A node in a table
/// has a non-NULL `pprev` (C's `hlist_unhashed()` tells the two apart the same way).
#[pin_data]
#[repr(transparent)]
pub struct HashLinks<const ID: u64 = 0> {
    #[pin]
    node: Opaque<bindings::hlist_node>,
}

// SAFETY: The node is only written through a `&mut HashTable` that holds the item, or by
// `HashTable::remove` whose caller promises the same; it has no thread affinity.
unsafe impl<const ID: u64> Send for HashLinks<ID> {}
// SAFETY: A shared `&HashLinks` gives no access to the node; see `Send`.
unsafe impl<const ID: u64> Sync for HashLinks<ID> {}

impl<const ID: u64> HashLinks<ID> {
    /// An empty node: the item is in no table.
    pub fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // INVARIANT: Empty: all zeroes.
            node: Opaque::zeroed(),
        })
    }
}

/// Declares that the type has a [`HashLinks<ID>`] field, at byte offset `OFFSET`.
///
/// Implement it with [`impl_has_hash_links!`].
///
/// # Safety
///
/// `OFFSET` is the byte offset in `Self` of a field of type [`HashLinks<ID>`], which is
/// structurally pinned.
pub unsafe trait HasHashLinks<const ID: u64 = 0> {
    /// The byte offset of the [`HashLinks<ID>`] field.
    const OFFSET: usize;
}

/// Implements [`HasHashLinks`] for a type with a [`HashLinks`] field.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_has_hash_links {
    ($(impl HasHashLinks<$id:tt> for $self:ty { self.$field:ident })*) => {$(
        const _: () = {
            // The field has exactly the type `HashLinks<$id>`: this only compiles if it does.
            #[allow(dead_code)]
            fn check(item: *const $self) -> *const $crate::hashtable::HashLinks<$id> {
                // SAFETY: Never called; taking a field's address reads nothing.
                unsafe { ::core::ptr::addr_of!((*item).$field) }
            }
        };
        // SAFETY: `OFFSET` is the offset of `$field`, which has type `HashLinks<$id>` (checked
        // above) and is a field of `$self` itself (`offset_of!` follows no pointer).
        unsafe impl $crate::hashtable::HasHashLinks<$id> for $self {
            const OFFSET: usize = ::core::mem::offset_of!($self, $field);
        }
    )*};
}
pub use impl_has_hash_links;

/// An item of a [`HashTable`] with this `ID`: it has the node, the [`ListArc`] token and a key.
pub trait HashItem<const ID: u64 = 0>: ListArcSafe<ID> + HasHashLinks<ID> + Sized {
    /// The key the table finds its items by.
    type Key: Eq + ?Sized;

    /// The item's key. It must not change while the item is in a table (lookups could then
    /// miss, but memory stays safe).
    fn key(&self) -> &Self::Key;

    /// Hashes `key` with the table's secret `seed`. Equal keys must give equal hashes, and the
    /// hash should depend on the seed in every bit, so that keys chosen without knowing the
    /// seed spread over the buckets.
    fn hash(key: &Self::Key, seed: u64) -> u64;
}

/// The number of buckets a table starts with.
const MIN_BUCKETS: usize = 16;

/// An intrusive hash table of reference-counted items with unique keys.
///
/// # Invariants
///
/// - `buckets` is empty or holds a power of two of chain heads; every node linked from them is
///   the [`HashLinks<ID>`] of an item of type `T` (at `T::OFFSET`), in the bucket of its key's
///   hash with `seed`, and its `pprev` points at the pointer that links it.
/// - The table owns one [`ListArc<T, ID>`] of each of its `len` items, turned into a raw
///   pointer with [`ListArc::into_raw`].
/// - No two items have equal keys.
/// - `buckets` is never reallocated while it holds nodes (their `pprev` point into it): it is
///   only replaced, by [`HashTable::reserve`], after every node is linked into the new one.
pub struct HashTable<T: HashItem<ID>, const ID: u64 = 0> {
    buckets: KVVec<bindings::hlist_head>,
    len: usize,
    seed: u64,
    _items: PhantomData<ListArc<T, ID>>,
}

// SAFETY: The table owns `ListArc`s of its items, which may move to and drop on any thread if
// `T: Send + Sync`; the raw pointers of the chains are only followed through the table.
unsafe impl<T: HashItem<ID> + Send + Sync, const ID: u64> Send for HashTable<T, ID> {}
// SAFETY: A `&HashTable` only gives out `ArcBorrow<T>`, which is fine if `T: Sync`.
unsafe impl<T: HashItem<ID> + Send + Sync, const ID: u64> Sync for HashTable<T, ID> {}

impl<T: HashItem<ID>, const ID: u64> Default for HashTable<T, ID> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: HashItem<ID>, const ID: u64> HashTable<T, ID> {
    /// An empty table, without buckets (the first [`HashTable::reserve`] allocates them).
    pub const fn new() -> Self {
        // INVARIANT: No bucket and no item.
        Self {
            buckets: KVVec::new(),
            len: 0,
            seed: 0,
            _items: PhantomData,
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no item.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The node of `item`.
    fn node(item: *const T) -> *mut bindings::hlist_node {
        // `HashLinks<ID>` is a transparent `Opaque<hlist_node>`, at `T::OFFSET`.
        item.cast::<u8>()
            .wrapping_add(T::OFFSET)
            .cast::<bindings::hlist_node>()
            .cast_mut()
    }

    /// The item whose node is `node`.
    fn item(node: *mut bindings::hlist_node) -> *const T {
        // By the type invariants, `node` is the `HashLinks<ID>` of a `T` at `T::OFFSET`.
        node.cast::<u8>().wrapping_sub(T::OFFSET).cast::<T>()
    }

    /// The bucket of `key`; `None` without buckets.
    fn bucket(&self, key: &T::Key) -> Option<usize> {
        let n = self.buckets.len();
        if n == 0 {
            return None;
        }
        // `n` is a power of two: the mask picks a bucket in range.
        Some((T::hash(key, self.seed) as usize) & (n - 1))
    }

    /// The first item of the chain at `head` whose key is `key`.
    fn find(head: *const bindings::hlist_head, key: &T::Key) -> *const T {
        // SAFETY: `head` is a bucket of this table, valid while it is borrowed.
        let mut node = unsafe { (*head).first };
        while !node.is_null() {
            let item = Self::item(node);
            // SAFETY: `node` is in this table, so `item` is live while the table is borrowed.
            if unsafe { &*item }.key() == key {
                return item;
            }
            // SAFETY: `node` is a valid node of this table.
            node = unsafe { (*node).next };
        }
        ptr::null()
    }

    /// The item with this key, if any.
    pub fn get(&self, key: &T::Key) -> Option<ArcBorrow<'_, T>> {
        let head = self.buckets.as_ptr().wrapping_add(self.bucket(key)?);
        let item = Self::find(head, key);
        if item.is_null() {
            return None;
        }
        // SAFETY: The table made the pointer with `ListArc::into_raw`, which is
        // `Arc::into_raw`, and keeps that reference while `self` is borrowed.
        Some(unsafe { ArcBorrow::from_raw(item) })
    }

    /// Makes room for one more item: allocates the buckets or, once there are as many items as
    /// buckets, twice as many. `ENOMEM` only if the table has no bucket at all; a table that
    /// cannot grow goes on with longer chains.
    pub fn reserve(&mut self) -> Result {
        let n = self.buckets.len();
        if n != 0 && self.len < n {
            return Ok(());
        }
        let new = if n == 0 { MIN_BUCKETS } else { n * 2 };
        let mut buckets = match KVVec::with_capacity(new, GFP_KERNEL) {
            Ok(b) => b,
            Err(_) if n != 0 => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for _ in 0..new {
            // Within the capacity just allocated.
            let _ = buckets.push_within_capacity(bindings::hlist_head {
                first: ptr::null_mut(),
            });
        }
        if n == 0 {
            // SAFETY: `get_random_u64` may be called from any context.
            self.seed = unsafe { bindings::get_random_u64() };
        }
        let mask = new - 1;
        for i in 0..n {
            let old = self.buckets.as_mut_ptr().wrapping_add(i);
            loop {
                // SAFETY: `old` is a bucket of the old array, which `&mut self` holds.
                let node = unsafe { (*old).first };
                if node.is_null() {
                    break;
                }
                // SAFETY: `node` is in the table: its item is live.
                let key = unsafe { &*Self::item(node) }.key();
                let j = (T::hash(key, self.seed) as usize) & mask;
                let head = buckets.as_mut_ptr().wrapping_add(j);
                // SAFETY: `node` is the first node of `old`'s chain and `head` a bucket of the
                // new array, which nothing else uses; both stay valid across the moves.
                unsafe {
                    unlink(node);
                    link_head(node, head);
                }
            }
        }
        // INVARIANT: Every node is linked into the new array, in the bucket of its hash; the
        // old array is empty and goes.
        self.buckets = buckets;
        Ok(())
    }

    /// Inserts `item`; if an item with an equal key is there already, or the table has no
    /// bucket (no [`HashTable::reserve`] yet), gives `item` back.
    pub fn insert(&mut self, item: ListArc<T, ID>) -> Result<(), ListArc<T, ID>> {
        let Some(i) = self.bucket(item.key()) else {
            return Err(item);
        };
        let head = self.buckets.as_mut_ptr().wrapping_add(i);
        if !Self::find(head, item.key()).is_null() {
            return Err(item);
        }
        let node = Self::node(ListArc::into_raw(item));
        // SAFETY: `node` is the node of the item just turned into a raw pointer, which the
        // table now owns; the `ListArc` was the only one for `ID`, so the item is in no other
        // table of this `ID` and its node is empty. `head` is a bucket of this table.
        unsafe { link_head(node, head) };
        // INVARIANT: The node is in the bucket of its key, which was not in the table; the
        // table owns the `ListArc`.
        self.len += 1;
        Ok(())
    }

    /// Removes `item` from this table and gives back the table's reference to it; `None` if
    /// the item is in no table.
    ///
    /// # Safety
    ///
    /// `item` is not in, or being inserted into, another table with this `ID`.
    pub unsafe fn remove(&mut self, item: &T) -> Option<ListArc<T, ID>> {
        let item = ptr::from_ref(item);
        let node = Self::node(item);
        // SAFETY: The item is in this table, which `&mut self` excludes others from, or in no
        // table, where no one writes its node (the caller's precondition).
        if unsafe { (*node).pprev }.is_null() {
            // By the invariant of `HashLinks`, in no table.
            return None;
        }
        // SAFETY: The node is in a table, by the caller's precondition this one.
        unsafe { unlink(node) };
        // At least one: this item.
        self.len = self.len.saturating_sub(1);
        // INVARIANT: The node is empty again, and the table gives up its `ListArc`.
        // SAFETY: The table made `item`'s pointer with `ListArc::into_raw` when it inserted it.
        Some(unsafe { ListArc::from_raw(item) })
    }
}

/// Links `node` at the head of the chain `head`.
///
/// # Safety
///
/// `node` is an empty node that no one else accesses, and `head` a valid chain head whose
/// nodes no one else accesses.
unsafe fn link_head(node: *mut bindings::hlist_node, head: *mut bindings::hlist_head) {
    // SAFETY: By the function's precondition.
    unsafe {
        let first = (*head).first;
        (*node).next = first;
        if !first.is_null() {
            (*first).pprev = &raw mut (*node).next;
        }
        (*head).first = node;
        (*node).pprev = &raw mut (*head).first;
    }
}

/// Unlinks `node` from its chain and empties it.
///
/// # Safety
///
/// `node` is linked in a chain whose nodes and head no one else accesses.
unsafe fn unlink(node: *mut bindings::hlist_node) {
    // SAFETY: By the function's precondition: `pprev` points at the pointer that links `node`,
    // and `next` is NULL or the next node, whose `pprev` points at `node.next`.
    unsafe {
        let next = (*node).next;
        let pprev = (*node).pprev;
        *pprev = next;
        if !next.is_null() {
            (*next).pprev = pprev;
        }
        (*node).next = ptr::null_mut();
        (*node).pprev = ptr::null_mut();
    }
}

impl<T: HashItem<ID>, const ID: u64> Drop for HashTable<T, ID> {
    fn drop(&mut self) {
        for i in 0..self.buckets.len() {
            let head = self.buckets.as_mut_ptr().wrapping_add(i);
            loop {
                // SAFETY: `head` is a bucket of the table, which is going away.
                let node = unsafe { (*head).first };
                if node.is_null() {
                    break;
                }
                let item = Self::item(node);
                // SAFETY: `node` is the first node of the chain; no one else accesses it.
                unsafe { unlink(node) };
                // INVARIANT: The item is in no table now; the table gives up its `ListArc`.
                // SAFETY: The table made the pointer with `ListArc::into_raw`.
                drop(unsafe { ListArc::<T, ID>::from_raw(item) });
            }
        }
    }
}

#[kunit_tests(rust_hashtable)]
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
        links: HashLinks<1>,
    }

    impl_list_arc_safe! {
        impl ListArcSafe<0> for Item { untracked; }
        impl ListArcSafe<1> for Item { untracked; }
    }
    impl_has_hash_links! {
        impl HasHashLinks<1> for Item { self.links }
    }
    impl HashItem<1> for Item {
        type Key = u64;
        fn key(&self) -> &u64 {
            &self.key
        }
        fn hash(key: &u64, seed: u64) -> u64 {
            // Keys below 1000 all collide: long chains, in the test.
            if *key < 1000 {
                return seed;
            }
            (key ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }
    }

    /// An item, its table token (`ListArc<_, 1>`) and a plain reference.
    fn item(key: u64) -> Result<(ListArc<Item, 1>, Arc<Item>)> {
        let unique = crate::sync::UniqueArc::pin_init(
            pin_init!(Item {
                key,
                links <- HashLinks::new(),
            }),
            GFP_KERNEL,
        )?;
        let (list, table) = ListArc::<Item, 0>::pair_from_pin_unique::<1>(unique);
        Ok((table, list.into_arc()))
    }

    #[test]
    fn insert_get_remove_across_growth() -> Result {
        let mut t = HashTable::<Item, 1>::new();
        let mut items = KVec::new();
        // Spread keys, and 40 keys that share one chain; the table grows from 16 buckets.
        for i in Iterator::chain((0..200u64).map(|i| i * 7919 + 1000), 0..40) {
            let (token, item) = item(i)?;
            t.reserve()?;
            assert!(t.insert(token).is_ok());
            items.push(item, GFP_KERNEL)?;
        }
        assert_eq!(t.len(), 240);
        for it in items.iter() {
            assert_eq!(t.get(&it.key).map(|x| x.key), Some(it.key));
        }
        assert!(t.get(&999).is_none());
        assert!(t.get(&3).is_some());
        for it in items.iter().step_by(2) {
            // SAFETY: `t` is the only table with ID 1.
            let back = unsafe { t.remove(it) };
            assert_eq!(back.map(|b| b.key), Some(it.key));
            // SAFETY: As above.
            assert!(unsafe { t.remove(it) }.is_none());
        }
        assert_eq!(t.len(), 120);
        for (n, it) in items.iter().enumerate() {
            assert_eq!(t.get(&it.key).is_some(), n % 2 == 1);
        }
        Ok(())
    }

    #[test]
    fn duplicate_key_and_no_bucket_give_the_item_back() -> Result {
        let mut t = HashTable::<Item, 1>::new();
        let (a, a_ref) = item(5)?;
        // No bucket yet.
        let a = match t.insert(a) {
            Err(a) => a,
            Ok(()) => return Err(EINVAL),
        };
        t.reserve()?;
        assert!(t.insert(a).is_ok());
        let (b, b_ref) = item(5)?;
        let back = t.insert(b);
        assert!(back.as_ref().is_err_and(|b| ptr::eq(&**b, &*b_ref)));
        // SAFETY: `t` is the only table with ID 1.
        assert!(unsafe { t.remove(&b_ref) }.is_none());
        assert!(t.get(&5).is_some_and(|x| ptr::eq(&*x, &*a_ref)));
        Ok(())
    }

    #[test]
    fn drop_gives_every_reference_back() -> Result {
        let mut refs = KVec::new();
        {
            let mut t = HashTable::<Item, 1>::new();
            for i in 0..50 {
                let (token, item) = item(i * 1000)?;
                t.reserve()?;
                assert!(t.insert(token).is_ok());
                refs.push(item, GFP_KERNEL)?;
            }
        }
        let mut t = HashTable::<Item, 1>::new();
        t.reserve()?;
        for r in refs.into_iter() {
            // The table's reference is gone: this one is the last.
            let Some(unique) = Arc::into_unique_or_drop(r) else {
                return Err(EINVAL);
            };
            // The node was emptied: the item is in no table.
            // SAFETY: `t` is the only table with ID 1.
            assert!(unsafe { t.remove(&unique) }.is_none());
            assert!(t.insert(ListArc::from(unique)).is_ok());
        }
        Ok(())
    }
}
