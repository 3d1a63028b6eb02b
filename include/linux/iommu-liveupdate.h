/* SPDX-License-Identifier: GPL-2.0 */
/*
 * IOMMU translation kept across a live update, for devices that keep doing
 * DMA through the kexec. Intel VT-d only (drivers/iommu/intel/liveupdate.c).
 */
#ifndef _LINUX_IOMMU_LIVEUPDATE_H
#define _LINUX_IOMMU_LIVEUPDATE_H

#include <linux/errno.h>
#include <linux/types.h>

struct device;
struct folio;

#ifdef CONFIG_INTEL_IOMMU_LIVEUPDATE
int iommu_liveupdate_keep(struct device *dev);
void iommu_liveupdate_unkeep(struct device *dev);
bool iommu_liveupdate_take_kept(struct device *dev);
void iommu_liveupdate_forget(struct device *dev);
void iommu_liveupdate_end_adopted(void);
bool iommu_liveupdate_adopted(void);
void iommu_liveupdate_hold_folio(struct folio *folio);
#ifdef CONFIG_LIVEUPDATE_RUST_TEST
int iommu_liveupdate_test_corrupt(unsigned int mode);
#endif
#else
static inline int iommu_liveupdate_keep(struct device *dev)
{
	return -EOPNOTSUPP;
}

static inline void iommu_liveupdate_unkeep(struct device *dev)
{
}

static inline bool iommu_liveupdate_take_kept(struct device *dev)
{
	return false;
}

static inline void iommu_liveupdate_forget(struct device *dev)
{
}

static inline void iommu_liveupdate_end_adopted(void)
{
}

static inline bool iommu_liveupdate_adopted(void)
{
	return false;
}

static inline void iommu_liveupdate_hold_folio(struct folio *folio)
{
}
#endif

#endif /* _LINUX_IOMMU_LIVEUPDATE_H */
