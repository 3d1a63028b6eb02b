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

__rust_helper bool rust_helper_shmem_file(struct file *file)
{
	return shmem_file(file);
}

__rust_helper void rust_helper_shmem_freeze(struct inode *inode, bool freeze)
{
	shmem_freeze(inode, freeze);
}

__rust_helper void rust_helper_inode_lock(struct inode *inode)
{
	inode_lock(inode);
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

__rust_helper gfp_t rust_helper_mapping_gfp_mask(struct address_space *mapping)
{
	return mapping_gfp_mask(mapping);
}

__rust_helper unsigned long rust_helper_folio_pfn(const struct folio *folio)
{
	return folio_pfn(folio);
}

__rust_helper unsigned long rust_helper_folio_nr_pages(const struct folio *folio)
{
	return folio_nr_pages(folio);
}

__rust_helper void rust_helper_folio_lock(struct folio *folio)
{
	folio_lock(folio);
}

__rust_helper bool rust_helper_folio_test_uptodate(const struct folio *folio)
{
	return folio_test_uptodate(folio);
}

__rust_helper void rust_helper_folio_mark_uptodate(struct folio *folio)
{
	folio_mark_uptodate(folio);
}

/* Zeroes the whole (locked) folio and marks it uptodate. */
__rust_helper void rust_helper_folio_zero_and_mark_uptodate(struct folio *folio)
{
	folio_zero_range(folio, 0, folio_size(folio));
	flush_dcache_folio(folio);
	folio_mark_uptodate(folio);
}

__rust_helper void rust_helper___folio_set_locked(struct folio *folio)
{
	__folio_set_locked(folio);
}

__rust_helper void rust_helper___folio_set_swapbacked(struct folio *folio)
{
	__folio_set_swapbacked(folio);
}

__rust_helper int rust_helper_mem_cgroup_charge(struct folio *folio,
						struct mm_struct *mm, gfp_t gfp)
{
	return mem_cgroup_charge(folio, mm, gfp);
}

__rust_helper void *rust_helper_phys_to_virt(phys_addr_t address)
{
	return phys_to_virt(address);
}

/* What the memfd live update handlers accept: an unlinked shmem file. */
__rust_helper bool rust_helper_shmem_file_is_unlinked(struct file *file)
{
	return shmem_file(file) && !file_inode(file)->i_nlink;
}

__rust_helper loff_t rust_helper_folio_pos(const struct folio *folio)
{
	return folio_pos(folio);
}
