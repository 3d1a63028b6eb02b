/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The "hugetlb-memfd-rs-v1" live update handover of a hugetlbfs memfd
 * (memfd_create(MFD_HUGETLB)), the format of the Rust memfd handler
 * (mm/memfd_luo_rs.rs).
 *
 * It is the "memfd-v2" format (include/linux/kho/abi/memfd.h) with the huge
 * page size added: the u64 handle that LUO stores for the file is the
 * physical address of a page preserved with kho_alloc_preserve(), which
 * starts with struct hugetlb_memfd_rs_ser; its @memfd part, and the folio
 * array it names (struct memfd_luo_folio_ser entries, indices in base pages),
 * mean what they mean for memfd-v2. Each folio entry names one huge page,
 * preserved with kho_preserve_folio() (KHO records its order), at an index
 * aligned to the huge page. Holes stay holes: only the pages the file has
 * are preserved.
 *
 * It is not the ABI of the unmerged upstream RFC "liveupdate: hugetlb
 * support" ("huge-memfd-v1", include/linux/kho/abi/hugetlb.h), which a kernel
 * with that series reads instead: that format leaves the page order of each
 * folio and its index unchecked against the file, and carries a per-hstate
 * page count as an FLB that the next kernel subtracts from its boot-time
 * pool. Under this name such a kernel finds no handler for these files
 * instead of misreading them.
 */
#ifndef _LINUX_KHO_ABI_HUGETLB_MEMFD_RS_H
#define _LINUX_KHO_ABI_HUGETLB_MEMFD_RS_H

#include <linux/compiler_types.h>
#include <linux/kho/abi/memfd.h>
#include <linux/types.h>

#define HUGETLB_MEMFD_RS_LUO_FH_COMPATIBLE "hugetlb-memfd-rs-v1"

/**
 * struct hugetlb_memfd_rs_ser - A preserved hugetlbfs memfd
 * @memfd: size, position, seals, flags and folio array, as for memfd-v2;
 *         every folio entry has MEMFD_LUO_FOLIO_DIRTY and
 *         MEMFD_LUO_FOLIO_UPTODATE (a hugetlbfs folio always holds data)
 * @page_shift: log2 of the huge page size in bytes (21 for 2 MiB, 30 for
 *              1 GiB on x86-64); the next kernel refuses the file if it has
 *              no huge pages of that size
 * @reserved: 0
 */
struct hugetlb_memfd_rs_ser {
	struct memfd_luo_ser memfd;
	u32 page_shift;
	u32 reserved;
} __packed;

#endif /* _LINUX_KHO_ABI_HUGETLB_MEMFD_RS_H */
