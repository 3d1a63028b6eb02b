// SPDX-License-Identifier: GPL-2.0
/*
 * VT-d translation kept across a live update ("vtd-lu-rs-v1"), for devices
 * that keep running, and doing DMA, through a kexec.
 *
 * Outgoing kernel: a live update handler calls iommu_liveupdate_keep() at
 * freeze for a device that will keep running. Its context entry is recorded
 * and the pages the hardware walks for it (the root table, the context table
 * of its bus, every page-table page of its domain) are preserved with KHO.
 * At the kexec, intel_iommu_shutdown() leaves translation on for a unit with
 * kept devices, and clears every other context and root entry first, so that
 * no device that was not kept can reach memory through stale tables.
 *
 * Next kernel: init_dmars() finds translation on. It adopts the unit's
 * tables (the kdump path: the context entries are copied, their domain IDs
 * reserved, and each stays in place until its device is attached to a new
 * domain) only if everything the hardware would walk was listed and
 * preserved, each page-table page is reached once, and every page a
 * translation reaches is preserved memory. Otherwise it installs an empty
 * root table with translation still on (every DMA faults) instead of
 * turning translation off as it does today: a device that was kept running
 * would then write to the physical addresses its IOVAs name.
 *
 * See include/linux/kho/abi/vtd_lu_rs.h for the handover.
 */

#define pr_fmt(fmt)	"DMAR-LU: " fmt

#include <linux/iommu-liveupdate.h>
#include <linux/kexec_handover.h>
#include <linux/kho/abi/vtd_lu_rs.h>
#include <linux/mm.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/random.h>
#include <linux/siphash.h>
#include <linux/slab.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include "iommu.h"
#include "liveupdate.h"

#define VTD_LU_MAX	((PAGE_SIZE - sizeof(struct vtd_lu_rs)) / \
			 sizeof(struct vtd_lu_rs_dev))
#define VTD_PTE_ADDR	GENMASK_ULL(51, 12)
#define VTD_PTES	512

/* ---- walking second-stage tables, in either kernel ---- */

struct vtd_lu_walk {
	/* False at the kexec, with the other CPUs stopped. */
	bool may_sleep;
	/* Called for each page-table page, the top one first. */
	int (*table)(struct vtd_lu_walk *w, phys_addr_t pa);
	/* Called for each leaf: the range it translates to. */
	int (*leaf)(struct vtd_lu_walk *w, phys_addr_t pa, u64 size);
};

static int vtd_lu_walk_level(struct vtd_lu_walk *w, phys_addr_t pa, int level)
{
	const u64 *t;
	int i, ret;

	if (!pfn_valid(PHYS_PFN(pa)))
		return -EINVAL;
	ret = w->table(w, pa);
	if (ret)
		return ret;
	t = phys_to_virt(pa);
	if (w->may_sleep)
		cond_resched();
	for (i = 0; i < VTD_PTES; i++) {
		u64 e = READ_ONCE(t[i]);
		phys_addr_t next = e & VTD_PTE_ADDR;

		if (!(e & (DMA_PTE_READ | DMA_PTE_WRITE)))
			continue;
		if (level == 1 || (e & DMA_PTE_LARGE_PAGE)) {
			/* Superpages are 2 MiB (level 2) and 1 GiB (level 3). */
			u64 size = 1ULL << (VTD_PAGE_SHIFT + (level - 1) * LEVEL_STRIDE);

			if (level > 3 || (next & (size - 1)))
				return -EINVAL;
			ret = w->leaf(w, next, size);
		} else {
			ret = vtd_lu_walk_level(w, next, level - 1);
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* Walks the tables of @levels levels whose top page is @pgd. */
static int vtd_lu_walk(struct vtd_lu_walk *w, phys_addr_t pgd, int levels)
{
	if (levels < 3 || levels > 5)
		return -EINVAL;
	return vtd_lu_walk_level(w, pgd, levels);
}

/* ---- the outgoing kernel ---- */

#ifdef CONFIG_LIVEUPDATE_RUST_TEST
/*
 * Corrupting the handover on purpose, to test how the next kernel refuses
 * it: 1 the root table is not preserved, 2 the kept context entry names a
 * page-table page that is not preserved, 3 the handover's domain ID is not
 * the context entry's, 4 a context entry of a device that is not kept stays
 * present, 5 a leaf of the first kept device's tables is changed at the
 * kexec, as an unmap and a map after freeze would (those tables are then
 * not handed over). Set by iommu_liveupdate_test_corrupt(), which the
 * vfio-pci handler's test controls call.
 */
static unsigned int vtd_lu_test_corrupt;

/**
 * iommu_liveupdate_test_corrupt - Corrupt the next handover on purpose (test)
 * @mode: the corruption, 1 to 5 (see above), or 0 for none
 *
 * Return: 0, or -EINVAL for an unknown mode.
 */
int iommu_liveupdate_test_corrupt(unsigned int mode)
{
	if (mode > 5)
		return -EINVAL;
	WRITE_ONCE(vtd_lu_test_corrupt, mode);
	return 0;
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_test_corrupt);

static inline bool vtd_lu_corrupting(unsigned int mode)
{
	return READ_ONCE(vtd_lu_test_corrupt) == mode;
}
#else
static inline bool vtd_lu_corrupting(unsigned int mode)
{
	return false;
}
#endif

/*
 * A device whose translation is kept: its entry in the handover, and the
 * pages it holds preserved (each counted once in vtd_lu_refs, however many
 * kept devices hold it).
 */
struct vtd_lu_kept {
	struct list_head link;
	struct device *dev;
	struct intel_iommu *iommu;
	struct vtd_lu_rs_dev ser;
	struct xarray pages;	/* pfn -> xa_mk_value(1) */
	unsigned long nr_pages;
	/* What its leaves translate to, at keep: see vtd_lu_leaves_walk. */
	u64 leaves;
	unsigned long nr_leaves;
	/* Set at the kexec if its tables changed since keep: not handed over. */
	bool changed;
};

/*
 * vtd_lu_mutex protects the list of kept devices, vtd_lu_refs and the
 * handover page. It is taken by live update handlers (freeze, unfreeze),
 * never with an IOMMU lock held; iommu->lock nests inside it. The shutdown
 * path reads the list without it: every other CPU is stopped by then.
 */
static DEFINE_MUTEX(vtd_lu_mutex);
static LIST_HEAD(vtd_lu_kept_list);
static DEFINE_XARRAY(vtd_lu_refs);	/* pfn -> xa_mk_value(holders) */
static struct vtd_lu_rs *vtd_lu_out;

static int vtd_lu_ref(unsigned long pfn)
{
	void *old = xa_load(&vtd_lu_refs, pfn);
	unsigned long n = old ? xa_to_value(old) : 0;
	int ret;

	if (!n) {
		ret = kho_preserve_pages(pfn_to_page(pfn), 1);
		if (ret)
			return ret;
	}
	ret = xa_err(xa_store(&vtd_lu_refs, pfn, xa_mk_value(n + 1), GFP_KERNEL));
	if (ret && !n)
		kho_unpreserve_pages(pfn_to_page(pfn), 1);
	return ret;
}

static void vtd_lu_unref(unsigned long pfn)
{
	void *old = xa_load(&vtd_lu_refs, pfn);
	unsigned long n = old ? xa_to_value(old) : 0;

	if (n > 1) {
		/* Replaces a present entry: allocates nothing, cannot fail. */
		xa_store(&vtd_lu_refs, pfn, xa_mk_value(n - 1), GFP_KERNEL);
		return;
	}
	if (n == 1) {
		xa_erase(&vtd_lu_refs, pfn);
		kho_unpreserve_pages(pfn_to_page(pfn), 1);
	}
}

/* Preserves the page at @pa for @k; -ELOOP if @k holds it already. */
static int vtd_lu_hold(struct vtd_lu_kept *k, phys_addr_t pa)
{
	unsigned long pfn = PHYS_PFN(pa);
	int ret;

	if (!pfn_valid(pfn))
		return -EINVAL;
	if (xa_load(&k->pages, pfn))
		return -ELOOP;
	ret = xa_err(xa_store(&k->pages, pfn, xa_mk_value(1), GFP_KERNEL));
	if (ret)
		return ret;
	ret = vtd_lu_ref(pfn);
	if (ret)
		xa_erase(&k->pages, pfn);
	else
		k->nr_pages++;
	return ret;
}

static void vtd_lu_release(struct vtd_lu_kept *k)
{
	unsigned long pfn;
	void *entry;

	xa_for_each(&k->pages, pfn, entry)
		vtd_lu_unref(pfn);
	xa_destroy(&k->pages);
}

/*
 * What a device's leaves translate to, in walk (IOVA) order, as a keyed hash
 * (the key is secret, so no VMM can choose mappings that collide) and a
 * count: taken at keep and again at the kexec, where a difference means a
 * map or unmap since freeze, which may reach memory that is not preserved.
 */
struct vtd_lu_leaves_walk {
	struct vtd_lu_walk w;
	struct vtd_lu_kept *k;
	u64 hash;
	unsigned long n;
};

static siphash_key_t vtd_lu_key;

static int vtd_lu_keep_table(struct vtd_lu_walk *w, phys_addr_t pa)
{
	return vtd_lu_hold(container_of(w, struct vtd_lu_leaves_walk, w)->k, pa);
}

static int vtd_lu_leaf_hash(struct vtd_lu_walk *w, phys_addr_t pa, u64 size)
{
	struct vtd_lu_leaves_walk *lw = container_of(w, struct vtd_lu_leaves_walk, w);

	lw->hash = siphash_3u64(lw->hash, pa, size, &vtd_lu_key);
	lw->n++;
	return 0;
}

/* Rewrites the handover page from the list. */
static void vtd_lu_publish(void)
{
	struct vtd_lu_kept *k;
	u32 n = 0;

	if (!vtd_lu_out)
		return;
	list_for_each_entry(k, &vtd_lu_kept_list, link)
		vtd_lu_out->devs[n++] = k->ser;
	vtd_lu_out->nr = n;
}

static int vtd_lu_publish_init(void)
{
	struct vtd_lu_rs *out;
	int ret;

	if (vtd_lu_out)
		return 0;
	out = kho_alloc_preserve(PAGE_SIZE);
	if (IS_ERR_OR_NULL(out))
		return out ? PTR_ERR(out) : -ENOMEM;
	out->magic = VTD_LU_RS_MAGIC;
	out->nr = 0;
	ret = kho_add_subtree(VTD_LU_RS_SUBTREE, out, PAGE_SIZE);
	if (ret) {
		kho_unpreserve_free(out);
		return ret;
	}
	vtd_lu_out = out;
	return 0;
}

static struct vtd_lu_kept *vtd_lu_find(struct device *dev)
{
	struct vtd_lu_kept *k;

	list_for_each_entry(k, &vtd_lu_kept_list, link)
		if (k->dev == dev)
			return k;
	return NULL;
}

static int vtd_lu_count_alias(struct pci_dev *pdev, u16 alias, void *data)
{
	(*(int *)data)++;
	return 0;
}

/**
 * iommu_liveupdate_keep - keep a device's translation across the kexec
 * @dev: a PCI device attached to a second-stage paging domain of a VT-d
 *       unit in legacy mode, with no DMA alias but itself
 *
 * For a live update handler whose device keeps doing DMA through the kexec,
 * at freeze: the device's context entry is handed over, and every page the
 * hardware walks for it is preserved. Userspace can still map and unmap in
 * the domain until the kexec: vtd_lu_shutdown() walks the tables again and
 * hands over no device whose tables grew a page that was not preserved.
 *
 * Return: 0; -EEXIST if kept already; -EOPNOTSUPP if the device, its unit or
 * its domain cannot be kept, or KHO is off; -ENOSPC past the handover's
 * capacity; -EINVAL if its context entry is not what its domain should have
 * made; or an allocation or KHO error.
 */
int iommu_liveupdate_keep(struct device *dev)
{
	struct device_domain_info *info = dev_iommu_priv_get(dev);
	struct vtd_lu_leaves_walk kw = {
		.w = { .may_sleep = true, .table = vtd_lu_keep_table, .leaf = vtd_lu_leaf_hash },
	};
	struct context_entry *ce, ctx;
	struct intel_iommu *iommu;
	struct dmar_domain *domain;
	struct vtd_lu_kept *k;
	int aliases = 0, ret;

	if (!kho_is_enabled() || !dev_is_pci(dev) || !info || !info->iommu)
		return -EOPNOTSUPP;
	iommu = info->iommu;
	domain = info->domain;
	if (sm_supported(iommu) || !domain || !intel_domain_is_ss_paging(domain))
		return -EOPNOTSUPP;
	pci_for_each_dma_alias(to_pci_dev(dev), vtd_lu_count_alias, &aliases);
	if (aliases != 1)
		return -EOPNOTSUPP;
	/*
	 * Not yet: behind a bridge, which pci_device_shutdown() stops from
	 * forwarding DMA at the kexec, nor with a PM capability, which runtime
	 * PM in the next kernel puts in D3hot before anything opens it.
	 */
	if (!pci_is_root_bus(to_pci_dev(dev)->bus) || to_pci_dev(dev)->pm_cap)
		return -EOPNOTSUPP;

	guard(mutex)(&vtd_lu_mutex);
	if (vtd_lu_find(dev))
		return -EEXIST;
	/*
	 * One unit only, for now: the next kernel checks each unit's leaves
	 * against that unit's tables, and a device of one unit must not reach
	 * the tables of another.
	 */
	list_for_each_entry(k, &vtd_lu_kept_list, link)
		if (k->iommu != iommu)
			return -EOPNOTSUPP;
	ret = vtd_lu_publish_init();
	if (ret)
		return ret;
	if (list_empty(&vtd_lu_kept_list))
		get_random_bytes(&vtd_lu_key, sizeof(vtd_lu_key));
	if (list_count_nodes(&vtd_lu_kept_list) >= VTD_LU_MAX)
		return -ENOSPC;

	spin_lock(&iommu->lock);
	ce = iommu_context_addr(iommu, info->bus, info->devfn, 0);
	if (ce)
		ctx = *ce;
	spin_unlock(&iommu->lock);
	if (!ce || !context_present(&ctx) || ((ctx.lo >> 2) & 3) != CONTEXT_TT_MULTI_LEVEL ||
	    context_domain_id(&ctx) != domain_id_iommu(domain, iommu))
		return -EINVAL;

	k = kzalloc_obj(*k, GFP_KERNEL);
	if (!k)
		return -ENOMEM;
	xa_init(&k->pages);
	k->dev = get_device(dev);
	k->iommu = iommu;
	k->ser = (struct vtd_lu_rs_dev){
		.reg_phys = iommu->reg_phys,
		.root = virt_to_phys(iommu->root_entry),
		.ctx = virt_to_phys(ce) & VTD_PAGE_MASK,
		.pgd = ctx.lo & VTD_PAGE_MASK,
		.segment = info->segment,
		.did = context_domain_id(&ctx),
		.bus = info->bus,
		.devfn = info->devfn,
		.aw = ctx.hi & 7,
	};
	kw.k = k;
	ret = vtd_lu_hold(k, k->ser.root);
	if (!ret)
		ret = vtd_lu_hold(k, k->ser.ctx);
	if (!ret)
		ret = vtd_lu_walk(&kw.w, k->ser.pgd, agaw_to_level(k->ser.aw));
	if (ret) {
		vtd_lu_release(k);
		put_device(k->dev);
		kfree(k);
		return ret == -ELOOP ? -EINVAL : ret;
	}
	k->leaves = kw.hash;
	k->nr_leaves = kw.n;
	if (vtd_lu_corrupting(1) && xa_load(&vtd_lu_refs, PHYS_PFN(k->ser.root))) {
		xa_erase(&vtd_lu_refs, PHYS_PFN(k->ser.root));
		xa_erase(&k->pages, PHYS_PFN(k->ser.root));
		kho_unpreserve_pages(virt_to_page(iommu->root_entry), 1);
		pr_info("test: the root table is not preserved\n");
	}
	list_add_tail(&k->link, &vtd_lu_kept_list);
	vtd_lu_publish();
	pci_info(to_pci_dev(dev), "live update: translation kept (domain %u, %lu pages preserved)\n",
		 k->ser.did, k->nr_pages);
	return 0;
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_keep);

/**
 * iommu_liveupdate_unkeep - undo iommu_liveupdate_keep()
 * @dev: the device (nothing happens if it is not kept)
 *
 * For a failed reboot (unfreeze) or an unpreserved device.
 */
void iommu_liveupdate_unkeep(struct device *dev)
{
	struct vtd_lu_kept *k;

	guard(mutex)(&vtd_lu_mutex);
	k = vtd_lu_find(dev);
	if (!k)
		return;
	list_del(&k->link);
	vtd_lu_publish();
	vtd_lu_release(k);
	put_device(k->dev);
	kfree(k);
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_unkeep);

/* At the kexec: every table page must be one preserved at keep. */
static int vtd_lu_shutdown_table(struct vtd_lu_walk *w, phys_addr_t pa)
{
	return xa_load(&vtd_lu_refs, PHYS_PFN(pa)) ? 0 : -ENOENT;
}

static bool vtd_lu_is_kept(struct intel_iommu *iommu, u8 bus, u8 devfn,
			   const struct context_entry *ce)
{
	struct vtd_lu_kept *k;

	list_for_each_entry(k, &vtd_lu_kept_list, link)
		if (k->iommu == iommu && k->ser.bus == bus && k->ser.devfn == devfn)
			return !k->changed &&
			       context_domain_id((struct context_entry *)ce) == k->ser.did &&
			       (ce->lo & VTD_PAGE_MASK) == k->ser.pgd &&
			       (ce->hi & 7) == k->ser.aw;
	return false;
}

/*
 * Mode 5 of the test corruption: the first 4 KiB leaf of the first kept
 * device of @iommu now translates to the page of the next leaf, as an unmap
 * and a map after freeze would. That page is preserved, so only the check
 * at the kexec can tell.
 */
static void vtd_lu_test_change_leaf(struct intel_iommu *iommu)
{
	struct vtd_lu_kept *k;
	int level, i;
	u64 *t;

	if (!vtd_lu_corrupting(5))
		return;
	list_for_each_entry(k, &vtd_lu_kept_list, link)
		if (k->iommu == iommu)
			break;
	if (list_entry_is_head(k, &vtd_lu_kept_list, link))
		return;
	t = phys_to_virt(k->ser.pgd);
	for (level = agaw_to_level(k->ser.aw); level > 0; level--) {
		for (i = 0; i < VTD_PTES; i++)
			if (t[i] & (DMA_PTE_READ | DMA_PTE_WRITE))
				break;
		if (i == VTD_PTES || (level > 1 && (t[i] & DMA_PTE_LARGE_PAGE)))
			return;
		if (level == 1) {
			int j = i + 1;

			while (j < VTD_PTES && !(t[j] & (DMA_PTE_READ | DMA_PTE_WRITE)))
				j++;
			if (j == VTD_PTES)
				return;
			t[i] = (t[i] & ~VTD_PTE_ADDR) | (t[j] & VTD_PTE_ADDR);
			__iommu_flush_cache(iommu, &t[i], sizeof(t[i]));
			pr_info("test: a leaf changed after freeze\n");
			return;
		}
		t = phys_to_virt(t[i] & VTD_PTE_ADDR);
	}
}

/* Modes 2 and 3 of the test corruption, on the first kept device of @iommu. */
static void vtd_lu_test_corrupt_shutdown(struct intel_iommu *iommu)
{
	struct vtd_lu_rs_dev *d = NULL;
	struct context_entry *ce;
	u32 i;

	if ((!vtd_lu_corrupting(2) && !vtd_lu_corrupting(3)) || !vtd_lu_out)
		return;
	for (i = 0; i < vtd_lu_out->nr && !d; i++)
		if (vtd_lu_out->devs[i].reg_phys == iommu->reg_phys)
			d = &vtd_lu_out->devs[i];
	if (!d)
		return;
	if (vtd_lu_corrupting(3)) {
		d->did ^= 1;
		return;
	}
	/* A page nobody preserved, with no present entry: DMA through it faults. */
	ce = phys_to_virt(d->ctx);
	ce += d->devfn;
	d->pgd = page_to_phys(ZERO_PAGE(0));
	ce->lo = (ce->lo & ~VTD_PAGE_MASK) | d->pgd;
	__iommu_flush_cache(iommu, ce, sizeof(*ce));
}

/**
 * vtd_lu_shutdown - the kexec: leave translation on for kept devices
 * @iommu: a unit, from intel_iommu_shutdown()
 *
 * Context: every other CPU is stopped; no lock is taken.
 * Return: true if @iommu has kept devices: then every other context entry,
 * and every root entry of a bus without a kept device, is cleared and the
 * caches are invalidated, and translation must stay on.
 */
bool vtd_lu_shutdown(struct intel_iommu *iommu)
{
	struct root_entry *root = iommu->root_entry;
	struct vtd_lu_kept *k;
	bool any = false;
	int bus, devfn;

	list_for_each_entry(k, &vtd_lu_kept_list, link)
		any |= k->iommu == iommu;
	if (!any || !root)
		return false;

	/*
	 * A map since keep may have added a table page that is not preserved,
	 * which the next kernel may hand out while the device still walks it,
	 * or a leaf onto memory that is not preserved, and an unmap may have
	 * let a page the device reaches be freed: such a device is not handed
	 * over (its entry is cleared below).
	 */
	vtd_lu_test_change_leaf(iommu);
	list_for_each_entry(k, &vtd_lu_kept_list, link) {
		struct vtd_lu_leaves_walk lw = {
			.w = { .table = vtd_lu_shutdown_table, .leaf = vtd_lu_leaf_hash },
			.k = k,
		};

		if (k->iommu == iommu &&
		    (vtd_lu_walk(&lw.w, k->ser.pgd, agaw_to_level(k->ser.aw)) ||
		     lw.hash != k->leaves || lw.n != k->nr_leaves)) {
			k->changed = true;
			pr_warn("%s: %02x:%02x.%d: its tables changed since freeze, not handed over\n",
				iommu->name, k->ser.bus, PCI_SLOT(k->ser.devfn),
				PCI_FUNC(k->ser.devfn));
		}
	}

	for (bus = 0; bus < 256; bus++) {
		struct context_entry *ctx;
		bool keep_bus = false;

		if (!(root[bus].lo & 1))
			continue;
		ctx = phys_to_virt(root[bus].lo & VTD_PAGE_MASK);
		for (devfn = 0; devfn < 256; devfn++) {
			if (!context_present(&ctx[devfn]))
				continue;
			if (vtd_lu_is_kept(iommu, bus, devfn, &ctx[devfn]))
				keep_bus = true;
			else if (vtd_lu_corrupting(4))
				keep_bus = true;
			else
				context_clear_entry(&ctx[devfn]);
		}
		__iommu_flush_cache(iommu, ctx, VTD_PAGE_SIZE);
		if (!keep_bus) {
			root[bus].lo = 0;
			root[bus].hi = 0;
		}
	}
	vtd_lu_test_corrupt_shutdown(iommu);
	__iommu_flush_cache(iommu, root, VTD_PAGE_SIZE);
	iommu->flush.flush_context(iommu, 0, 0, 0, DMA_CCMD_GLOBAL_INVL);
	iommu->flush.flush_iotlb(iommu, 0, 0, 0, DMA_TLB_GLOBAL_FLUSH);
	/*
	 * A fault until the next kernel sets its handler up is recorded, and
	 * reported then, but must not raise the interrupt this kernel set up:
	 * the next one would find no handler for that vector.
	 */
	writel(DMA_FECTL_IM, iommu->reg + DMAR_FECTL_REG);
	pr_info("%s: translation left on for the next kernel\n", iommu->name);
	return true;
}

/* ---- the next kernel ---- */

/*
 * A device whose translation this kernel adopted: its context entry stays
 * as the previous kernel left it until iommu_liveupdate_end_adopted() or an
 * attach replaces it; the entry stays listed until vfio opens the device.
 */
struct vtd_lu_adopted {
	struct list_head link;
	struct intel_iommu *iommu;
	u32 segment;
	u8 bus;
	u8 devfn;
	/* Taken by iommu_liveupdate_take_kept() or iommu_liveupdate_forget(). */
	bool taken;
};

/* Written by init_dmars() (one thread, at boot), then under vtd_lu_mutex. */
static LIST_HEAD(vtd_lu_adopted_list);
static bool vtd_lu_adopted_live;
/* Set once this kernel adopted a handover (kdump copies contexts too). */
static bool vtd_lu_adopted_once;
/* Folios held while adopted translations are in place: pfn -> folio. */
static DEFINE_XARRAY(vtd_lu_held);
/* Pages of the adopted tables, taken from KHO at boot: pfn -> value 1. */
static DEFINE_XARRAY(vtd_lu_owned);
/* A copy of the handover: a running device may write to the page. */
static const struct vtd_lu_rs *vtd_lu_in;
static phys_addr_t vtd_lu_in_phys;
static bool vtd_lu_in_read;

static const struct vtd_lu_rs *vtd_lu_incoming(void)
{
	const struct vtd_lu_rs *in;
	phys_addr_t phys;
	size_t size;

	if (vtd_lu_in_read)
		return vtd_lu_in;
	vtd_lu_in_read = true;
	if (kho_retrieve_subtree(VTD_LU_RS_SUBTREE, &phys, &size))
		return NULL;
	if (size < PAGE_SIZE || kho_preserved_order(phys) != 0) {
		pr_warn("ignoring a handover that is not one preserved page\n");
		return NULL;
	}
	in = kmemdup(phys_to_virt(phys), PAGE_SIZE, GFP_KERNEL);
	if (!in)
		return NULL;
	if (in->magic != VTD_LU_RS_MAGIC || in->nr > VTD_LU_MAX) {
		pr_warn("ignoring a handover of magic %#x, %u entries\n", in->magic, in->nr);
		kfree(in);
		return NULL;
	}
	vtd_lu_in = in;
	vtd_lu_in_phys = phys;
	return in;
}

/* Whether [pa, pa + size) is all preserved, not yet restored memory. */
static bool vtd_lu_preserved(phys_addr_t pa, u64 size)
{
	phys_addr_t end = pa + size, p = pa;

	while (p < end) {
		unsigned int order;
		bool found = false;

		for (order = 0; order <= PUD_SHIFT - PAGE_SHIFT; order++) {
			phys_addr_t start = ALIGN_DOWN(p, PAGE_SIZE << order);
			int o = kho_preserved_order(start);

			if (o > PUD_SHIFT - PAGE_SHIFT)
				continue;
			if (o >= (int)order && start + (PAGE_SIZE << o) > p) {
				p = start + (PAGE_SIZE << o);
				found = true;
				break;
			}
		}
		if (!found)
			return false;
	}
	return true;
}

struct vtd_lu_check_walk {
	struct vtd_lu_walk w;
	struct xarray *seen;	/* page-table pages met so far, in this unit */
};

static int vtd_lu_check_table(struct vtd_lu_walk *w, phys_addr_t pa)
{
	struct xarray *seen = container_of(w, struct vtd_lu_check_walk, w)->seen;

	if (kho_preserved_order(pa) != 0)
		return -EINVAL;
	/* A table met twice: not a tree, or two domains sharing one. */
	if (xa_load(seen, PHYS_PFN(pa)))
		return -ELOOP;
	return xa_err(xa_store(seen, PHYS_PFN(pa), xa_mk_value(1), GFP_KERNEL));
}

static int vtd_lu_check_leaf(struct vtd_lu_walk *w, phys_addr_t pa, u64 size)
{
	return vtd_lu_preserved(pa, size) ? 0 : -EINVAL;
}

/*
 * Walks the domain whose top table is @pgd, unless a device met before has
 * it: then it must have the same domain ID and width. A top table met as an
 * inner table of another domain is refused.
 */
static int vtd_lu_check_domain(struct vtd_lu_check_walk *cw, struct xarray *domains,
			       phys_addr_t pgd, u16 did, int aw)
{
	unsigned long key = PHYS_PFN(pgd), val = ((unsigned long)did << 8) | aw;
	void *old = xa_load(domains, key);
	unsigned long k;
	void *v;
	int ret;

	if (old)
		return xa_to_value(old) == val ? 0 : -EINVAL;
	if (xa_load(cw->seen, key))
		return -ELOOP;
	/* One domain ID, one domain: they would share cached translations. */
	xa_for_each(domains, k, v)
		if ((xa_to_value(v) >> 8) == did)
			return -EINVAL;
	ret = xa_err(xa_store(domains, key, xa_mk_value(val), GFP_KERNEL));
	if (ret)
		return ret;
	return vtd_lu_walk(&cw->w, pgd, agaw_to_level(aw));
}

static int vtd_lu_no_table(struct vtd_lu_walk *w, phys_addr_t pa)
{
	return 0;
}

/* A leaf must not reach a table, nor the root, a context table or the list. */
static int vtd_lu_leaf_not_seen(struct vtd_lu_walk *w, phys_addr_t pa, u64 size)
{
	struct xarray *seen = container_of(w, struct vtd_lu_check_walk, w)->seen;
	unsigned long idx = PHYS_PFN(pa);

	return xa_find(seen, &idx, PHYS_PFN(pa + size - 1), XA_PRESENT) ? -EINVAL : 0;
}

/*
 * Once every table of @iommu's domains is in @seen: no leaf may let a device
 * rewrite its own tables, or the handover, after they were checked.
 */
static int vtd_lu_check_leaves(struct xarray *seen, struct xarray *domains,
			       phys_addr_t root_pa, const struct vtd_lu_rs *in,
			       struct intel_iommu *iommu)
{
	struct vtd_lu_check_walk cw = {
		.w = { .may_sleep = true, .table = vtd_lu_no_table, .leaf = vtd_lu_leaf_not_seen },
		.seen = seen,
	};
	unsigned long key;
	void *val;
	u32 i;
	int ret;

	ret = xa_err(xa_store(seen, PHYS_PFN(root_pa), xa_mk_value(1), GFP_KERNEL));
	if (!ret)
		ret = xa_err(xa_store(seen, PHYS_PFN(vtd_lu_in_phys), xa_mk_value(1), GFP_KERNEL));
	for (i = 0; i < in->nr && !ret; i++)
		if (in->devs[i].reg_phys == iommu->reg_phys)
			ret = xa_err(xa_store(seen, PHYS_PFN(in->devs[i].ctx), xa_mk_value(1),
					      GFP_KERNEL));
	xa_for_each(domains, key, val) {
		if (ret)
			break;
		ret = vtd_lu_walk(&cw.w, PFN_PHYS(key), agaw_to_level(xa_to_value(val) & 7));
	}
	return ret;
}

static const struct vtd_lu_rs_dev *vtd_lu_listed(const struct vtd_lu_rs *in,
						 struct intel_iommu *iommu,
						 u8 bus, u8 devfn)
{
	u32 i;

	for (i = 0; i < in->nr; i++) {
		const struct vtd_lu_rs_dev *d = &in->devs[i];

		if (d->reg_phys == iommu->reg_phys && d->bus == bus && d->devfn == devfn)
			return d;
	}
	return NULL;
}

/*
 * Checks every root and context entry the hardware would use on @iommu
 * against the handover, and walks each listed domain's tables. Returns the
 * number of devices adopted (> 0), 0 if the handover names nothing on
 * @iommu, or an error.
 */
static int vtd_lu_check(const struct vtd_lu_rs *in, struct intel_iommu *iommu,
			phys_addr_t root_pa, struct xarray *seen, struct xarray *domains)
{
	struct vtd_lu_check_walk cw = {
		.w = { .may_sleep = true, .table = vtd_lu_check_table, .leaf = vtd_lu_check_leaf },
		.seen = seen,
	};
	const struct root_entry *root;
	int bus, devfn, nr = 0, listed = 0, ret;
	u32 i;

	for (i = 0; i < in->nr; i++) {
		const struct vtd_lu_rs_dev *d = &in->devs[i];

		if (d->reg_phys != iommu->reg_phys)
			continue;
		if (d->root != root_pa || d->segment != iommu->segment ||
		    memchr_inv(d->reserved, 0, sizeof(d->reserved)))
			return -EINVAL;
		listed++;
	}
	if (!listed)
		return 0;
	if (kho_preserved_order(root_pa) != 0)
		return -EINVAL;

	root = phys_to_virt(root_pa);
	for (bus = 0; bus < 256; bus++) {
		phys_addr_t ctx_pa = root[bus].lo & VTD_PAGE_MASK;
		const struct context_entry *ctx;

		if (root[bus].hi)
			return -EINVAL;
		if (!(root[bus].lo & 1))
			continue;
		/* Every present root entry must lead to a listed device. */
		if (kho_preserved_order(ctx_pa) != 0)
			return -EINVAL;
		ctx = phys_to_virt(ctx_pa);
		for (devfn = 0; devfn < 256; devfn++) {
			struct context_entry ce = ctx[devfn];
			const struct vtd_lu_rs_dev *d;
			int aw = ce.hi & 7;

			if (!context_present(&ce))
				continue;
			d = vtd_lu_listed(in, iommu, bus, devfn);
			if (!d || d->ctx != ctx_pa)
				return -EINVAL;
			if (((ce.lo >> 2) & 3) != CONTEXT_TT_MULTI_LEVEL ||
			    (ce.lo & VTD_PAGE_MASK) != d->pgd || aw != d->aw ||
			    !(cap_sagaw(iommu->cap) & BIT(aw)) ||
			    context_domain_id(&ce) != d->did || !d->did ||
			    d->did >= cap_ndoms(iommu->cap))
				return -EINVAL;
			/* Devices of one domain share its tables: walk them once. */
			ret = vtd_lu_check_domain(&cw, domains, d->pgd, d->did, aw);
			if (ret)
				return ret;
			nr++;
		}
	}
	/* Every listed device of this unit must have been met. */
	if (nr != listed)
		return -EINVAL;
	ret = vtd_lu_check_leaves(seen, domains, root_pa, in, iommu);
	return ret ? ret : nr;
}

/**
 * vtd_lu_adopt_failed - forget what was adopted on a unit
 * @iommu: a unit vtd_lu_adopt() adopted, whose tables could not be copied
 *
 * Return: true if @iommu had adopted devices: then translation must stay on,
 * with an empty root table, as for a refused handover.
 */
bool vtd_lu_adopt_failed(struct intel_iommu *iommu)
{
	struct vtd_lu_adopted *a, *n;
	bool any = false;

	list_for_each_entry_safe(a, n, &vtd_lu_adopted_list, link) {
		if (a->iommu != iommu)
			continue;
		list_del(&a->link);
		kfree(a);
		any = true;
	}
	return any;
}

/* How many units the handover names. */
static unsigned int vtd_lu_units(const struct vtd_lu_rs *in)
{
	unsigned int n = 0;
	u32 i, j;

	for (i = 0; i < in->nr; i++) {
		for (j = 0; j < i; j++)
			if (in->devs[j].reg_phys == in->devs[i].reg_phys)
				break;
		n += j == i;
	}
	return n;
}

/*
 * Takes the pages the hardware walks for @iommu's checked handover (its
 * page-table pages, in @seen, the root table and the context tables) out of
 * KHO, so that no file handler can restore one of them for userspace (a
 * handover could name a memfd's page as a table too), and so that they can
 * be freed once no device uses them. Return: 0, or -EINVAL if one of them is
 * not preserved any more (then the handover is refused; what was taken
 * stays allocated).
 */
static int vtd_lu_claim(const struct vtd_lu_rs *in, struct intel_iommu *iommu,
			struct xarray *seen)
{
	unsigned long pfn;
	void *entry;
	u32 i;
	int ret;

	for (i = 0; i < in->nr; i++) {
		const struct vtd_lu_rs_dev *d = &in->devs[i];

		if (d->reg_phys != iommu->reg_phys)
			continue;
		ret = xa_err(xa_store(seen, PHYS_PFN(d->root), xa_mk_value(1), GFP_KERNEL));
		if (!ret)
			ret = xa_err(xa_store(seen, PHYS_PFN(d->ctx), xa_mk_value(1), GFP_KERNEL));
		if (ret)
			return ret;
	}
	xa_for_each(seen, pfn, entry) {
		phys_addr_t pa = PFN_PHYS(pfn);

		ret = xa_err(xa_store(&vtd_lu_owned, pfn, xa_mk_value(1), GFP_KERNEL));
		if (ret)
			return ret;
		if (kho_preserved_order(pa) != 0 || !kho_restore_pages(pa, 1)) {
			xa_erase(&vtd_lu_owned, pfn);
			return -EINVAL;
		}
	}
	return 0;
}

/**
 * vtd_lu_adopt - find translation left on by a live update
 * @iommu: a unit whose translation is on at boot, outside kdump
 *
 * Return: VTD_LU_ADOPT when the handover names this unit's devices and
 * everything checks out (then its tables are copied as kdump copies them),
 * VTD_LU_NONE when there is no handover for it (turn translation off, as
 * before), VTD_LU_REFUSE when it does not check out (install an empty root
 * table, translation on).
 */
enum vtd_lu_adopt vtd_lu_adopt(struct intel_iommu *iommu)
{
	const struct vtd_lu_rs *in = vtd_lu_incoming();
	struct xarray seen, domains;
	u64 rtaddr;
	int ret;
	u32 i;

	if (!in)
		return VTD_LU_NONE;
	for (i = 0; i < in->nr; i++)
		if (in->devs[i].reg_phys == iommu->reg_phys)
			break;
	if (i == in->nr)
		return VTD_LU_NONE;
	rtaddr = readq(iommu->reg + DMAR_RTADDR_REG);
	xa_init(&seen);
	xa_init(&domains);
	if ((rtaddr & DMA_RTADDR_SMT) || sm_supported(iommu))
		ret = -EOPNOTSUPP;
	else if (vtd_lu_units(in) != 1)
		ret = -EOPNOTSUPP;
	else
		ret = vtd_lu_check(in, iommu, rtaddr & VTD_PAGE_MASK, &seen, &domains);
	if (ret > 0) {
		int err = vtd_lu_claim(in, iommu, &seen);

		if (err)
			ret = err;
	}
	xa_destroy(&seen);
	xa_destroy(&domains);
	if (!ret)
		return VTD_LU_NONE;
	if (ret < 0) {
		pr_warn("%s: refusing the translation a live update left on (%d): every DMA is blocked\n",
			iommu->name, ret);
		return VTD_LU_REFUSE;
	}
	for (i = 0; i < in->nr; i++) {
		const struct vtd_lu_rs_dev *d = &in->devs[i];
		struct vtd_lu_adopted *a;

		if (d->reg_phys != iommu->reg_phys)
			continue;
		a = kzalloc_obj(*a, GFP_KERNEL);
		if (!a) {
			/* Each adopted entry must be known, to be ended. */
			vtd_lu_adopt_failed(iommu);
			pr_warn("%s: refusing the translation a live update left on (%d): every DMA is blocked\n",
				iommu->name, -ENOMEM);
			return VTD_LU_REFUSE;
		}
		a->iommu = iommu;
		a->segment = d->segment;
		a->bus = d->bus;
		a->devfn = d->devfn;
		list_add_tail(&a->link, &vtd_lu_adopted_list);
	}
	vtd_lu_adopted_live = true;
	vtd_lu_adopted_once = true;
	pr_info("%s: adopting the translation of %d device(s) a live update kept\n",
		iommu->name, ret);
	return VTD_LU_ADOPT;
}

static struct vtd_lu_adopted *vtd_lu_find_adopted(struct device *dev)
{
	struct vtd_lu_adopted *a;
	struct pci_dev *pdev;

	if (!dev_is_pci(dev))
		return NULL;
	pdev = to_pci_dev(dev);
	list_for_each_entry(a, &vtd_lu_adopted_list, link)
		if (a->segment == pci_domain_nr(pdev->bus) &&
		    a->bus == pdev->bus->number && a->devfn == pdev->devfn)
			return a;
	return NULL;
}

/**
 * iommu_liveupdate_take_kept - was this device kept running, and adopted
 * @dev: a PCI device that a live update handler just handed to the process
 *       that retrieved it
 *
 * True once for a device the previous kernel kept running whose translation
 * this kernel adopted: its driver must not reset it or clear its bus
 * mastering when that process opens it. Later calls, and calls for any other
 * device, return false. Only the handler may ask: any other opener gets
 * iommu_liveupdate_forget().
 */
bool iommu_liveupdate_take_kept(struct device *dev)
{
	struct vtd_lu_adopted *a;

	guard(mutex)(&vtd_lu_mutex);
	a = vtd_lu_find_adopted(dev);
	if (!a || a->taken)
		return false;
	a->taken = true;
	return true;
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_take_kept);

/*
 * Once no device uses them: frees the pages taken at boot for the adopted
 * translations (every page-table page of the adopted domains, and the old
 * root and context tables, which the copy at boot replaced). The handover
 * page stays: debugfs shows it.
 */
static unsigned long vtd_lu_free_tables(void)
{
	unsigned long pfn, n = 0;
	void *entry;

	xa_for_each(&vtd_lu_owned, pfn, entry) {
		__free_page(pfn_to_page(pfn));
		if (!(++n % 512))
			cond_resched();
	}
	xa_destroy(&vtd_lu_owned);
	return n;
}

/*
 * Ends the adopted translations once no adopted context entry is left in
 * place: drops the folios held for them, and frees their tables. An entry
 * goes when copied_context_tear_down() clears it: its device attached to a
 * domain of this kernel, set up for pass-through, forgotten, or ended with
 * the rest.
 */
static void vtd_lu_release_if_done(void)
{
	struct vtd_lu_adopted *a;
	unsigned long pfn, n = 0;
	struct folio *folio;

	lockdep_assert_held(&vtd_lu_mutex);
	if (!vtd_lu_adopted_live)
		return;
	list_for_each_entry(a, &vtd_lu_adopted_list, link)
		if (context_copied(a->iommu, a->bus, a->devfn))
			return;
	WRITE_ONCE(vtd_lu_adopted_live, false);
	xa_for_each(&vtd_lu_held, pfn, folio) {
		n += folio_nr_pages(folio);
		folio_put(folio);
		cond_resched();
	}
	xa_destroy(&vtd_lu_held);
	pr_info("the translation adopted from the previous kernel ended (%lu held pages released, %lu table pages freed)\n",
		n, vtd_lu_free_tables());
}

static void vtd_lu_release_work_fn(struct work_struct *work)
{
	guard(mutex)(&vtd_lu_mutex);
	vtd_lu_release_if_done();
}

static DECLARE_WORK(vtd_lu_release_work, vtd_lu_release_work_fn);

/**
 * vtd_lu_switched - a device's adopted context entry was replaced
 * @iommu: its unit
 * @bus: its bus
 * @devfn: its device and function
 * @did: the domain ID of the new entry
 * @ns: how long the entry was not present, with the flushes
 *
 * Called by domain_context_mapping_one() after it replaced a copied context
 * entry, possibly in atomic context (a deferred attach on the DMA API path),
 * to log the switch; vtd_lu_copied_gone() saw the old entry go.
 */
void vtd_lu_switched(struct intel_iommu *iommu, u8 bus, u8 devfn, u16 did, u64 ns)
{
	/*
	 * Not vtd_lu_adopted_live: the work vtd_lu_copied_gone() scheduled may
	 * already have ended the adoption, if this was its last entry.
	 */
	if (!READ_ONCE(vtd_lu_adopted_once))
		return;
	pr_info("%s: %02x:%02x.%d switched from the adopted translation to domain %u in %llu ns\n",
		iommu->name, bus, PCI_SLOT(devfn), PCI_FUNC(devfn), did, ns);
}

/**
 * vtd_lu_copied_gone - a copied context entry was torn down
 *
 * Called by copied_context_tear_down(), with the unit's lock held, whoever
 * tore the entry down (an attach, a pass-through setup, the end of an
 * adopted translation): if it was the last adopted one, a work item
 * releases what was held for them.
 */
void vtd_lu_copied_gone(void)
{
	if (READ_ONCE(vtd_lu_adopted_live))
		schedule_work(&vtd_lu_release_work);
}

/* Clears every adopted context entry and releases the held folios. */
static void vtd_lu_end_all(void)
{
	struct vtd_lu_adopted *a;

	lockdep_assert_held(&vtd_lu_mutex);
	list_for_each_entry(a, &vtd_lu_adopted_list, link)
		vtd_lu_tear_down_copied(a->iommu, a->bus, a->devfn);
	vtd_lu_release_if_done();
}

/**
 * iommu_liveupdate_forget - end a device's adopted translation
 * @dev: a PCI device opened by a driver other than through the live update
 *       handler that retrieved it (or whose file was finished unretrieved)
 *
 * Its copied context entry is cleared: its DMA faults until it is attached
 * to a domain, and no new owner of the device reaches the memory of the one
 * that preserved it. Nothing happens for a device that was not adopted.
 */
void iommu_liveupdate_forget(struct device *dev)
{
	struct vtd_lu_adopted *a;

	/* Not live: no adopted entry is left (vtd_lu_release_if_done()). */
	if (!READ_ONCE(vtd_lu_adopted_live))
		return;
	guard(mutex)(&vtd_lu_mutex);
	a = vtd_lu_find_adopted(dev);
	if (!a)
		return;
	a->taken = true;
	vtd_lu_tear_down_copied(a->iommu, a->bus, a->devfn);
	vtd_lu_release_if_done();
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_forget);

/**
 * iommu_liveupdate_adopted - is a translation adopted at boot still in place
 *
 * Return: true while a device's context entry adopted from the previous
 * kernel is in place; once false, it stays false.
 */
bool iommu_liveupdate_adopted(void)
{
	return READ_ONCE(vtd_lu_adopted_live);
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_adopted);

/**
 * iommu_liveupdate_hold_folio - keep a restored folio while devices reach it
 * @folio: a folio the previous kernel preserved, just restored by a live
 *         update file handler that will give it to userspace
 *
 * An adopted translation may reach @folio: a device kept running may write
 * to it until it is attached to a domain of this kernel. Userspace may free
 * the folio before that (truncate the file it is in), so while adopted
 * translations are in place this takes a reference on it, dropped when the
 * last of them ends. Every folio is held, not only those a translation
 * reaches: the handler cannot tell, and the references go once the devices
 * are switched. If the folio cannot be recorded, every adopted translation
 * is ended instead (their DMA faults), which is as safe.
 *
 * Context: process context; takes vtd_lu_mutex.
 */
void iommu_liveupdate_hold_folio(struct folio *folio)
{
	if (!READ_ONCE(vtd_lu_adopted_live))
		return;
	guard(mutex)(&vtd_lu_mutex);
	/* The last entry may have been replaced before the work ran. */
	vtd_lu_release_if_done();
	if (!vtd_lu_adopted_live)
		return;
	folio_get(folio);
	if (xa_err(xa_store(&vtd_lu_held, folio_pfn(folio), folio, GFP_KERNEL))) {
		folio_put(folio);
		pr_warn("cannot hold guest memory for the adopted translations: ending them\n");
		vtd_lu_end_all();
	}
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_hold_folio);

/**
 * iommu_liveupdate_end_adopted - end every translation adopted at boot
 *
 * An adopted translation reaches memory the previous kernel preserved (the
 * guest's RAM). A live update file handler that frees such memory itself,
 * without handing it to userspace held (iommu_liveupdate_hold_folio()),
 * calls this first. The context entries of the adopted devices are cleared,
 * so their DMA faults until userspace attaches them to a domain of its own.
 * The first call does the work, the others nothing.
 *
 * Context: process context; takes vtd_lu_mutex and each unit's lock.
 */
void iommu_liveupdate_end_adopted(void)
{
	if (!READ_ONCE(vtd_lu_adopted_live))
		return;
	guard(mutex)(&vtd_lu_mutex);
	vtd_lu_end_all();
}
EXPORT_SYMBOL_GPL(iommu_liveupdate_end_adopted);
