/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The "vtd-lu-rs-v1" live update handover of Intel VT-d translation, for
 * devices that keep running, and doing DMA, through a kexec
 * (drivers/iommu/intel/liveupdate.c).
 *
 * The outgoing kernel leaves translation on at the kexec, with only the
 * context entries of the kept devices present, and preserves (KHO) the root
 * table, those devices' context tables and every page-table page of their
 * domains. It publishes one page, struct vtd_lu_rs, as the KHO subtree
 * VTD_LU_RS_SUBTREE, which names each kept device and what its context entry
 * held. The next kernel adopts a unit's tables only if everything the
 * hardware would walk is in that list and was preserved; else it installs an
 * empty root table with translation still on (every DMA then faults) instead
 * of turning translation off, which would let a running device write to the
 * physical addresses its IOVAs name.
 *
 * Legacy mode only (second-stage tables, no scalable-mode root table).
 * Fields are in the byte order of the kernel (x86_64: little-endian).
 */
#ifndef _LINUX_KHO_ABI_VTD_LU_RS_H
#define _LINUX_KHO_ABI_VTD_LU_RS_H

#include <linux/types.h>

#define VTD_LU_RS_SUBTREE	"vtd-lu-rs-v1"
#define VTD_LU_RS_MAGIC		0x56544c31	/* "VTL1" */

/**
 * struct vtd_lu_rs_dev - A device whose translation is kept
 * @reg_phys: the register base of its VT-d unit (which unit this is)
 * @root: the unit's root table (DMAR_RTADDR_REG at the kexec)
 * @ctx: the context table of @bus (the root entry's context-table pointer)
 * @pgd: the top page-table page of its domain (the context entry's
 *       address root)
 * @segment: its PCI segment
 * @did: the domain ID of its context entry
 * @bus: its bus
 * @devfn: its device and function
 * @aw: the address width field (AW) of its context entry
 * @reserved: 0
 */
struct vtd_lu_rs_dev {
	u64 reg_phys;
	u64 root;
	u64 ctx;
	u64 pgd;
	u32 segment;
	u16 did;
	u8 bus;
	u8 devfn;
	u8 aw;
	u8 reserved[7];
} __packed;

/**
 * struct vtd_lu_rs - The devices whose translation is kept (one page)
 * @magic: VTD_LU_RS_MAGIC
 * @nr: how many entries follow
 * @devs: the entries
 */
struct vtd_lu_rs {
	u32 magic;
	u32 nr;
	struct vtd_lu_rs_dev devs[];
} __packed;

#endif /* _LINUX_KHO_ABI_VTD_LU_RS_H */
