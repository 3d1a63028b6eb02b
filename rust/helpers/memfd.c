// SPDX-License-Identifier: GPL-2.0

/*
 * Helpers for kernel::memfd and kernel::kho (folios of shmem files, and what
 * the memfd live update handler needs to preserve and restore them).
 */

#include <linux/cacheflush.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/io.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>
#include <linux/swap.h>

/* kernel::kho (CONFIG_KEXEC_HANDOVER): reading a preserved chunk page. */
__rust_helper void *rust_helper_phys_to_virt(phys_addr_t address)
{
	return phys_to_virt(address);
}

/*
 * kernel::memfd, built with CONFIG_LIVEUPDATE_MEMFD (which depends on SHMEM
 * and MEMFD_CREATE): without it, shmem_add_to_page_cache() and the other
 * shmem functions below do not exist and the helpers would not link.
 */
#ifdef CONFIG_LIVEUPDATE_MEMFD

__rust_helper void rust_helper_shmem_freeze(struct inode *inode, bool freeze)
{
	shmem_freeze(inode, freeze);
}

__rust_helper void rust_helper_inode_lock(struct inode *inode)
{
	inode_lock(inode);
}

__rust_helper int rust_helper_inode_trylock(struct inode *inode)
{
	return inode_trylock(inode);
}

__rust_helper void rust_helper_inode_unlock(struct inode *inode)
{
	inode_unlock(inode);
}

__rust_helper loff_t rust_helper_i_size_read(const struct inode *inode)
{
	return i_size_read(inode);
}

__rust_helper void rust_helper_i_size_write(struct inode *inode, loff_t i_size)
{
	i_size_write(inode, i_size);
}

__rust_helper unsigned long rust_helper_folio_pfn(const struct folio *folio)
{
	return folio_pfn(folio);
}

__rust_helper unsigned long rust_helper_folio_nr_pages(const struct folio *folio)
{
	return folio_nr_pages(folio);
}

/*
 * Makes a pinned folio of a frozen shmem mapping ready for a live update, as
 * mm/memfd_luo.c does: dirty, and zeroed and uptodate if it was never written.
 * A folio already dirty and uptodate (any folio that was written) needs
 * nothing, so the folio lock is not taken for it: PG_uptodate is never cleared
 * on a shmem folio, and PG_dirty is not cleared on a pinned one (reclaim skips
 * pinned folios, and the frozen mapping cannot be truncated). One call per
 * folio keeps the preserve loop as cheap as the C handler's.
 */
__rust_helper void rust_helper_folio_prepare_for_handover(struct folio *folio)
{
	if (folio_test_uptodate(folio) && folio_test_dirty(folio))
		return;
	folio_lock(folio);
	folio_mark_dirty(folio);
	if (!folio_test_uptodate(folio)) {
		folio_zero_range(folio, 0, folio_size(folio));
		flush_dcache_folio(folio);
		folio_mark_uptodate(folio);
	}
	folio_unlock(folio);
}

/* What the memfd live update handlers accept: an unlinked shmem file. */
__rust_helper bool rust_helper_shmem_file(struct file *file)
{
	return shmem_file(file);
}

__rust_helper bool rust_helper_shmem_file_is_unlinked(struct file *file)
{
	return shmem_file(file) && !file_inode(file)->i_nlink;
}

__rust_helper loff_t rust_helper_folio_pos(const struct folio *folio)
{
	return folio_pos(folio);
}

/* A folio's pfn, index and number of pages, in one call (the preserve loop). */
__rust_helper unsigned long rust_helper_folio_pfn_index_nr(const struct folio *folio,
							   pgoff_t *index,
							   unsigned long *nr)
{
	*index = folio->index;
	*nr = folio_nr_pages(folio);
	return folio_pfn(folio);
}

/*
 * The seals of a shmem file, read without the inode lock (as
 * memfd_check_seals_mmap() reads them): seals are only ever added, each
 * F_ADD_SEALS with one store under the inode lock.
 */
__rust_helper unsigned int rust_helper_shmem_seals(struct inode *inode)
{
	return READ_ONCE(SHMEM_I(inode)->seals);
}

/* Pages a shmem file holds: in the page cache, or swapped out. */
__rust_helper unsigned long rust_helper_shmem_present_pages(struct inode *inode)
{
	return READ_ONCE(inode->i_mapping->nrpages) +
	       READ_ONCE(SHMEM_I(inode)->swapped);
}

/*
 * Inserts a folio restored from KHO (refcount 1, unlocked, in no mapping) into
 * a shmem mapping at @index, charged and accounted, as mm/memfd_luo.c does.
 * One call per folio keeps the restore loop as cheap as the C handler's. The
 * caller checked that @index is aligned to the folio and inside the file. The
 * folio reference is consumed, on success and on error.
 */
__rust_helper int rust_helper_shmem_insert_restored_folio(struct inode *inode,
							  struct folio *folio,
							  pgoff_t index,
							  bool uptodate, bool dirty)
{
	struct address_space *mapping = inode->i_mapping;
	gfp_t gfp = mapping_gfp_mask(mapping);
	int err;

	__folio_set_locked(folio);
	__folio_set_swapbacked(folio);
	err = mem_cgroup_charge(folio, NULL, gfp);
	if (err)
		goto out;
	err = shmem_add_to_page_cache(folio, mapping, index, NULL, gfp);
	if (err)
		goto out;
	if (uptodate)
		folio_mark_uptodate(folio);
	if (dirty)
		folio_mark_dirty(folio);
	err = shmem_inode_acct_blocks(inode, folio_nr_pages(folio));
	if (err) {
		filemap_remove_folio(folio);
		goto out;
	}
	folio_add_lru(folio);
out:
	folio_unlock(folio);
	folio_put(folio);
	return err;
}

#endif /* CONFIG_LIVEUPDATE_MEMFD */
