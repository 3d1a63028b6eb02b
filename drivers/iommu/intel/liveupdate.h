/* SPDX-License-Identifier: GPL-2.0 */
/*
 * VT-d translation kept across a live update: the hooks of iommu.c
 * (liveupdate.c).
 */
#ifndef _INTEL_IOMMU_LIVEUPDATE_H
#define _INTEL_IOMMU_LIVEUPDATE_H

#include <linux/types.h>

struct intel_iommu;

/* What init_dmars() does with a unit whose translation is on at boot. */
enum vtd_lu_adopt {
	VTD_LU_NONE,	/* no live update handover for it: turn it off */
	VTD_LU_ADOPT,	/* copy its tables, as kdump does */
	VTD_LU_REFUSE,	/* a corrupt handover: an empty root, translation on */
};

#ifdef CONFIG_INTEL_IOMMU_LIVEUPDATE
bool vtd_lu_shutdown(struct intel_iommu *iommu);
enum vtd_lu_adopt vtd_lu_adopt(struct intel_iommu *iommu);
bool vtd_lu_adopt_failed(struct intel_iommu *iommu);
void vtd_lu_tear_down_copied(struct intel_iommu *iommu, u8 bus, u8 devfn);
void vtd_lu_switched(struct intel_iommu *iommu, u8 bus, u8 devfn, u16 did, u64 ns);
void vtd_lu_copied_gone(void);
#else
static inline bool vtd_lu_shutdown(struct intel_iommu *iommu)
{
	return false;
}

static inline enum vtd_lu_adopt vtd_lu_adopt(struct intel_iommu *iommu)
{
	return VTD_LU_NONE;
}

static inline bool vtd_lu_adopt_failed(struct intel_iommu *iommu)
{
	return false;
}

static inline void vtd_lu_switched(struct intel_iommu *iommu, u8 bus, u8 devfn,
				   u16 did, u64 ns)
{
}

static inline void vtd_lu_copied_gone(void)
{
}
#endif

#endif /* _INTEL_IOMMU_LIVEUPDATE_H */
