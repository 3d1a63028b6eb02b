// SPDX-License-Identifier: GPL-2.0

/*
 * Helpers for kernel::memfd (folios of shmem and hugetlbfs files, and what
 * the memfd live update handlers need to preserve and restore them).
 */

#include <linux/cacheflush.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/hugetlb.h>
#include <linux/io.h>
#include <linux/memcontrol.h>
#include <linux/mm.h>
#include <linux/pagemap.h>
#include <linux/shmem_fs.h>
#include <linux/swap.h>

/*
 * kernel::memfd, built with CONFIG_LIVEUPDATE_MEMFD (which depends on SHMEM
 * and MEMFD_CREATE) only, as kernel::memfd is.
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

__rust_helper bool rust_helper_shmem_file(struct file *file)
{
	return shmem_file(file);
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

#ifdef CONFIG_HUGETLBFS

/* The seals of a hugetlbfs file, read without the inode lock (as above). */
__rust_helper unsigned int rust_helper_hugetlbfs_seals(struct inode *inode)
{
	return READ_ONCE(HUGETLBFS_I(inode)->seals);
}

/* The huge page order of a hugetlbfs file (its hstate never changes). */
__rust_helper unsigned int rust_helper_hugetlbfs_file_page_order(struct file *file)
{
	return huge_page_order(hstate_file(file));
}

/* Pages in a file's page cache (a hugetlbfs file has no others). */
__rust_helper unsigned long rust_helper_mapping_nrpages(struct inode *inode)
{
	return READ_ONCE(inode->i_mapping->nrpages);
}

#endif /* CONFIG_HUGETLBFS */

#endif /* CONFIG_LIVEUPDATE_MEMFD */
