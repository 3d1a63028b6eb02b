// SPDX-License-Identifier: GPL-2.0-only
/*
 * A vfio-pci device kept running through a live update ("vfio-pci-rs-v2",
 * booted with vfio_pci_luo_rs.keep_running=1): its DMA goes on through the
 * kexec, through the VT-d translation the outgoing kernel keeps on and the
 * next kernel adopts ("vtd-lu-rs-v1"). The machine is luo_rs_vfio.c's (q35,
 * emulated Intel IOMMU, edu devices, see luo_rs_vfio.h), with the edu DMA
 * mask widened (dma_mask=0x7fffffffff), so that the guest RAM sits at an
 * IOVA above the VM's RAM: a DMA that bypassed translation would write to
 * no memory at all instead of to the physical address its IOVA names.
 *
 * The machine's devices A (00:02.0) and B (00:03.0) are both attached to one
 * IOAS (one domain, two context entries), where a 4 MiB guest RAM memfd is
 * mapped at IOVA 0x7f00000000. Each page of the memfd has its own role:
 * page 1 is the source of every DMA (loaded into a device's buffer first),
 * page 2 is what A's DMA armed in the reboot writes, page 3 what B's DMA
 * armed before reboot() writes, page 4 what A's DMA started in the next
 * kernel writes (before anything attaches A again), page 6 stage 1's round
 * trip (from page 5) and page 7 stage 2's, page 8 B's DMA once the memfd is
 * retrieved, page 10 A's once bound and page 11 A's across its attach;
 * every other byte keeps stage 1's pattern.
 *
 * --dma-at=freeze (the default) arms A's DMA right after A's freeze,
 * --dma-at=kexec at the kexec after device shutdown (a test hook in vfio-pci,
 * armed through debugfs liveupdate/test_vfio). edu starts a DMA 100 ms after its command, so
 * either runs after the jump into the next kernel.
 *
 *   -s 1  - formats_listed: the kernel's table of accepted formats names
 *           "vfio-pci-rs-v2" and "vtd-lu-rs-v1";
 *         - rig: A and B bound to vfio-pci, an iommufd, the memfd mapped, a
 *           DMA round trip through A;
 *         - preserve_running: A, B and the memfd preserved in session "dma";
 *         - dma_armed: both buffers loaded from page 1; A's DMA to page 2
 *           armed for the freeze or the kexec; B's DMA to page 3 started.
 *   -s 2  - translation_adopted: the next kernel adopted the unit's tables
 *           (two devices) and did not turn translation off;
 *         - dma_in_next_kernel: through its sysfs BAR (not opened, not
 *           attached), A copies its buffer to page 4, through the adopted
 *           translation;
 *         - not_reset: A, retrieved and bound to a new iommufd (attached
 *           to nothing), was enabled without a reset ("kept running, not
 *           reset");
 *         - dma_while_bound: A, so, copies its buffer to page 10 through its
 *           vfio BAR: the adopted translation still carries it;
 *         - dma_landed: the retrieved memfd: pages 2, 3, 4 and 10 hold page
 *           1's bytes, every other byte is as stage 1 left it;
 *         - memory_held: retrieving the memfd did not end the adopted
 *           translation (its folios are held for it instead): B's DMA to
 *           page 8, through sysfs, lands in the retrieved file;
 *         - switch: the memfd mapped in a new IOAS at the same IOVA, then A
 *           attached to it: the switch is logged with its window (how long
 *           A's context entry was not present), A's DMA to page 11 lands
 *           through the new domain, and no DMA faulted;
 *         - retrieve_failed: B, unbound from vfio-pci, cannot be retrieved
 *           (ENODEV); that stopped it and cleared its adopted entry, the
 *           last: the adopted translations ended;
 *         - dma_after: a DMA round trip through the new IOAS, then FINISH;
 *         - adoption_ended: they ended once, the held folios (at least the
 *           memfd's 1024 pages) were released and the pages the previous
 *           kernel preserved for the translation (tables, root and context
 *           tables) freed; no DMA of this boot faulted.
 *
 * With --vtd-corrupt=N (1 to 5: see drivers/iommu/intel/liveupdate.c),
 * stage 1 has the outgoing kernel corrupt the VT-d handover (5: changes a
 * leaf at the kexec, as a map after freeze would, so that it leaves the
 * devices' entries cleared and lists them still), and stage 2 checks that the
 * next kernel refuses it safely instead:
 *   -s 2  - translation_refused: the unit's handover was refused, not adopted,
 *           and translation was not turned off (an empty root table);
 *         - dma_blocked: A's DMA to page 4, started through sysfs, faults and
 *           writes nothing; the memfd is retrieved intact otherwise (pages 2
 *           and 3 may hold the DMAs that ran before the refusal);
 *         - reset_at_open: A, retrieved and bound, was enabled the usual way
 *           (reset, bus mastering off);
 *         - dma_after: as above.
 *
 * Into a kernel without "vtd-lu-rs-v1" (the interop run rust-to-rust-c-memfd
 * vfio-dma: rust-c-memfd is built without CONFIG_INTEL_IOMMU_LIVEUPDATE),
 * which is what its table of accepted formats says, stage 2 checks that it
 * behaves as before, safely:
 *   -s 2  - translation_turned_off: it turned translation off at boot, as
 *           any kernel outside kdump does, adopting and refusing nothing;
 *         - dma_blocked: as above (pages 2 and 3 may hold what landed
 *           through the old tables, before it turned translation off, or
 *           nowhere: their IOVAs are above the VM's RAM);
 *         - device_dropped: it has no handler for "vfio-pci-rs-v2": A's file
 *           was dropped (RETRIEVE_FD fails with ENOENT);
 *         - finish: FINISH of the session.
 *
 * KTAP per check; --list [--vtd-corrupt=N | --interop] prints the case names
 * (of a run into a corrupt or an older kernel; the test itself tells the
 * older one apart).
 */

#include <sys/mount.h>

#include "luo_rs_vfio.h"

#define STATE_SESSION_NAME	"luo_rs_vfio_dma_state"
#define STATE_MEMFD_TOKEN	995
#define SESSION			"dma"
#define TOKEN_DEV		1
#define TOKEN_RAM		2
#define RAM_SIZE		(4UL << 20)
#define RAM_IOVA		0x7f00000000ULL
#define PAGE			4096UL
#define TOKEN_DEV_B		3
#define SRC_PAGE		1
#define A_PAGE			2	/* A's DMA armed in the reboot */
#define B_PAGE			3	/* B's DMA armed before reboot() */
#define NEXT_PAGE		4	/* A's DMA started in the next kernel */
#define RT_FROM			5	/* the round trips */
#define RT_TO			6
#define HELD_PAGE		8	/* B's DMA once the memfd is retrieved */
#define BOUND_PAGE		10	/* A's DMA once bound in the next kernel */
#define SWITCH_PAGE		11	/* A's DMA in flight across its attach */
#define DMA_LEN			EDU_DMA_MAX

static int luo_fd = -1, state_fd = -1, iommufd = -1, ram_fd = -1, sess = -EBADF, ram_mapped;
static __u32 ioas;
static struct edu edu_a = EDU_INIT(DEV_A), edu_b = EDU_INIT(DEV_B);

/* Byte @off of what stage 1 writes in the guest RAM. */
static uint8_t ram_byte(uint64_t off)
{
	return (uint8_t)(off * 7 + (off >> 12));
}

/* Byte @off of the memfd after stage 1 and the DMAs across the kexec. */
static uint8_t want_byte(uint64_t off)
{
	uint64_t page = off / PAGE, in = off % PAGE;

	if (in < DMA_LEN && (page == A_PAGE || page == B_PAGE || page == NEXT_PAGE ||
			     page == BOUND_PAGE))
		return ram_byte(SRC_PAGE * PAGE + in);
	if (in < DMA_LEN && page == RT_TO)
		return ram_byte(RT_FROM * PAGE + in);
	return ram_byte(off);
}

static int s1_formats_listed(int arg)
{
	static char t[4096];
	size_t len = luo_formats(t, sizeof(t));
	int v2 = format_listed(t, len, "vfio-pci-rs-v2");
	int vtd = format_listed(t, len, "vtd-lu-rs-v1");

	if (!len)
		return 0;
	if (!v2 || !vtd)
		return fail("the LUO note lacks%s%s", v2 ? "" : " vfio-pci-rs-v2",
			    vtd ? "" : " vtd-lu-rs-v1");
	return 1;
}

static int new_ioas(void)
{
	iommufd = iommufd_open();
	return iommufd >= 0 && ioas_alloc(iommufd, &ioas);
}

static int s1_rig(int arg)
{
	uint8_t *b;
	uint64_t i;

	if (!edu_present(edu_a.bdf) || !edu_present(edu_b.bdf) || !bind_vfio_pci(edu_a.bdf) ||
	    !bind_vfio_pci(edu_b.bdf) || !new_ioas() || !edu_open_bind(&edu_a, iommufd, ioas) ||
	    !edu_open_bind(&edu_b, iommufd, ioas))
		return 0;
	ram_fd = memfd_create("vfio-dma-guest-ram", MFD_CLOEXEC);
	if (ram_fd < 0 || ftruncate(ram_fd, RAM_SIZE))
		return fail("memfd of %lu bytes: %s", RAM_SIZE, en(errno));
	b = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (b == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	for (i = 0; i < RAM_SIZE; i++)
		b[i] = ram_byte(i);
	munmap(b, RAM_SIZE);
	if (!ioas_map_file(iommufd, ioas, ram_fd, RAM_SIZE, RAM_IOVA) || !edu_map_bar(&edu_a) ||
	    !edu_set_command(&edu_a, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) ||
	    !edu_map_bar(&edu_b) ||
	    !edu_set_command(&edu_b, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
		return 0;
	return edu_dma(&edu_a, RAM_IOVA + RT_FROM * PAGE, EDU_BUF, DMA_LEN, 0) &&
	       edu_dma(&edu_a, EDU_BUF, RAM_IOVA + RT_TO * PAGE, DMA_LEN, 1);
}

static int s1_preserve_running(int arg)
{
	sess = luo_create_session(luo_fd, SESSION);
	if (sess < 0)
		return fail("CREATE_SESSION: %s", en(sess));
	return preserve(sess, edu_a.fd, TOKEN_DEV, "A") &&
	       preserve(sess, edu_b.fd, TOKEN_DEV_B, "B") &&
	       preserve(sess, ram_fd, TOKEN_RAM, "the guest RAM memfd");
}

/* --dma-at=: when A's DMA is armed, "freeze" or "kexec" (both boots). */
static const char *opt_dma_at = "freeze";
/* --vtd-corrupt=N: the VT-d handover corrupted on purpose, mode 1 to 5 (both boots). */
static unsigned long opt_vtd_corrupt;

/*
 * ioctl @cmd with @arg on debugfs liveupdate/test_vfio: 1 if it ends with
 * errno @want (0: it succeeds), else 0.
 */
static int test_vfio_want(unsigned long cmd, unsigned long arg, const char *what, int want)
{
	int fd, ret;

	if (mount("none", "/sys/kernel/debug", "debugfs", 0, NULL) && errno != EBUSY)
		return fail("mount debugfs: %s", en(errno));
	fd = open(TEST_VFIO, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("open %s: %s", TEST_VFIO, en(errno));
	ret = ioctl(fd, cmd, arg) ? errno : 0;
	close(fd);
	if (ret != want)
		return fail("%s: %s, expected %s", what, en(ret), en(want));
	return 1;
}

static int test_vfio(unsigned long cmd, unsigned long arg, const char *what)
{
	return test_vfio_want(cmd, arg, what, 0);
}

/* Bad arguments of TEST_VFIO_DMA are refused, and leave what is armed. */
static int dma_arm_refusals(struct test_vfio_dma d)
{
	struct test_vfio_dma bad = d;

	bad.n = 5;
	if (!test_vfio_want(TEST_VFIO_DMA, (unsigned long)&bad, "DMA of 5 writes", EINVAL))
		return 0;
	bad = d;
	bad.when = 3;
	if (!test_vfio_want(TEST_VFIO_DMA, (unsigned long)&bad, "DMA at 3", EINVAL))
		return 0;
	bad = d;
	bad.w[1][0] = 4;
	if (!test_vfio_want(TEST_VFIO_DMA, (unsigned long)&bad, "DMA at offset 4", EINVAL))
		return 0;
	return test_vfio_want(TEST_VFIO_DMA, 8, "DMA of a bad pointer", EFAULT);
}

static int s1_dma_armed(int arg)
{
	struct test_vfio_dma d = {
		.when = strcmp(opt_dma_at, "kexec") ? TEST_VFIO_DMA_AT_FREEZE :
						      TEST_VFIO_DMA_AT_KEXEC,
		.n = 4,
		.w = {
			{ EDU_REG_DMA_SRC, EDU_BUF },
			{ EDU_REG_DMA_DST, RAM_IOVA + A_PAGE * PAGE },
			{ EDU_REG_DMA_CNT, DMA_LEN },
			{ EDU_REG_DMA_CMD, EDU_DMA_RUN | EDU_DMA_TO_RAM },
		},
	};

	if (!edu_a.bar || !edu_b.bar)
		return fail("A's or B's BAR is not mapped (rig failed)");
	if (!edu_dma(&edu_a, RAM_IOVA + SRC_PAGE * PAGE, EDU_BUF, DMA_LEN, 0) ||
	    !edu_dma(&edu_b, RAM_IOVA + SRC_PAGE * PAGE, EDU_BUF, DMA_LEN, 0))
		return 0;
	if (opt_vtd_corrupt &&
	    !test_vfio(TEST_VFIO_IOMMU_CORRUPT, opt_vtd_corrupt, "TEST_VFIO_IOMMU_CORRUPT"))
		return 0;
	if (!test_vfio(TEST_VFIO_DMA, (unsigned long)&d, "TEST_VFIO_DMA") || !dma_arm_refusals(d))
		return 0;
	wr64(&edu_b, EDU_REG_DMA_SRC, EDU_BUF);
	wr64(&edu_b, EDU_REG_DMA_DST, RAM_IOVA + B_PAGE * PAGE);
	wr64(&edu_b, EDU_REG_DMA_CNT, DMA_LEN);
	wr64(&edu_b, EDU_REG_DMA_CMD, EDU_DMA_RUN | EDU_DMA_TO_RAM);
	return 1;
}

static const struct vcase s1_cases[] = {
	{ "s1_formats_listed", s1_formats_listed },
	{ "s1_rig", s1_rig },
	{ "s1_preserve_running", s1_preserve_running },
	{ "s1_dma_armed", s1_dma_armed },
};

static void stage_1(int fd)
{
	luo_fd = fd;
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	run_cases(s1_cases, ARRAY_SIZE(s1_cases));
	close(luo_fd);
	daemonize_and_wait();
}

static int s2_translation_adopted(int arg)
{
	int adopted = count_in_log("adopting the translation of 2 device(s)");
	int off = count_in_log("Translation was enabled for");
	int refused = count_in_log("refusing the translation");

	if (adopted != 1 || off || refused)
		return fail("adopted %d, turned off %d, refused %d times: want 1, 0, 0",
			    adopted, off, refused);
	return 1;
}

/*
 * Device @i copies its buffer to memfd page @page, through its BAR in sysfs
 * (nothing opened the device in this kernel yet).
 */
static int sysfs_dma(int i, uint64_t page)
{
	char path[128];
	struct edu e = EDU_INIT(i);
	int fd, ok;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource0", e.bdf);
	fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0)
		return fail("%s: %s", path, en(errno));
	e.bar = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (e.bar == MAP_FAILED)
		return fail("mmap of %s: %s", path, en(errno));
	/* Its buffer still holds page 1's bytes: nothing reset it. */
	ok = edu_dma(&e, EDU_BUF, RAM_IOVA + page * PAGE, DMA_LEN, 1);
	munmap(e.bar, 1 << 20);
	return ok;
}

static int s2_dma_in_next_kernel(int arg)
{
	return sysfs_dma(DEV_A, NEXT_PAGE);
}

/*
 * A, retrieved and bound to a new iommufd but attached to nothing yet, DMAs
 * through its vfio BAR: the adopted translation still carries it.
 */
static int s2_dma_while_bound(int arg)
{
	if (edu_a.fd < 0)
		return fail("A was not retrieved");
	return edu_map_bar(&edu_a) &&
	       edu_set_command(&edu_a, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) &&
	       edu_dma(&edu_a, EDU_BUF, RAM_IOVA + BOUND_PAGE * PAGE, DMA_LEN, 1);
}

static int s2_dma_landed(int arg)
{
	uint64_t i, bad = RAM_SIZE;
	struct stat st;
	uint8_t *b;

	if (sess < 0)
		return fail("the session was not retrieved");
	ram_fd = luo_session_retrieve_fd(sess, TOKEN_RAM);
	if (ram_fd < 0)
		return fail("RETRIEVE_FD of the memfd: %s", en(ram_fd));
	if (fstat(ram_fd, &st) || st.st_size != (off_t)RAM_SIZE)
		return fail("the memfd's size is %lld", (long long)st.st_size);
	b = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (b == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	for (i = 0; i < RAM_SIZE && bad == RAM_SIZE; i++)
		if (b[i] != want_byte(i))
			bad = i;
	if (bad != RAM_SIZE)
		fail("byte %#llx of the memfd (page %llu) is %#x, want %#x",
		     (unsigned long long)bad, (unsigned long long)bad / PAGE, b[bad],
		     want_byte(bad));
	munmap(b, RAM_SIZE);
	return bad == RAM_SIZE;
}

/* Do memfd pages @page hold page 1's bytes (@dma) or stage 1's own? */
static int page_is(uint64_t page, int dma)
{
	uint8_t *b = mmap(NULL, RAM_SIZE, PROT_READ, MAP_SHARED, ram_fd, 0);
	uint64_t i;

	if (b == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	for (i = 0; i < DMA_LEN; i++)
		if (b[page * PAGE + i] !=
		    (dma ? ram_byte(SRC_PAGE * PAGE + i) : ram_byte(page * PAGE + i)))
			break;
	munmap(b, RAM_SIZE);
	if (i != DMA_LEN)
		return fail("byte %#llx of page %llu is not %s", (unsigned long long)i,
			    (unsigned long long)page, dma ? "the DMA's" : "stage 1's");
	return 1;
}

/*
 * Retrieving the memfd did not end the adopted translation: its folios are
 * held for it instead, so B, which nothing attached, still DMAs into them,
 * and what it writes is in the retrieved file.
 */
static int s2_memory_held(int arg)
{
	int n = count_in_log("the translation adopted from the previous kernel ended");

	if (ram_fd < 0)
		return fail("the memfd was not retrieved");
	if (n)
		return fail("\"adopted translation ended\" logged %d times, want 0", n);
	return sysfs_dma(DEV_B, HELD_PAGE) && page_is(HELD_PAGE, 1);
}

/*
 * The switch: the memfd mapped in a new IOAS at the same IOVA, then A
 * attached to it. The attach replaces A's adopted context entry, logged
 * with how long the entry was not present (the window, measured here, not
 * probed: an edu DMA happens at one instant, 100 ms after its command). A's
 * DMA to page 11 then lands through the new domain, and no DMA of this boot
 * faulted. B still has its adopted entry: nothing ended.
 */
static int s2_switch(int arg)
{
	unsigned long long ns;
	unsigned int did;
	char rec[256];
	int n;

	if (edu_a.fd < 0 || !edu_a.bar || ram_fd < 0)
		return fail("A or the memfd was not retrieved");
	if (!ioas_map_file(iommufd, ioas, ram_fd, RAM_SIZE, RAM_IOVA))
		return 0;
	ram_mapped = 1;
	if (!edu_attach(&edu_a, ioas))
		return 0;
	n = count_in_log("00:02.0 switched from the adopted translation to domain");
	if (n != 1)
		return fail("\"00:02.0 switched\" logged %d times, want 1", n);
	if (!log_from("00:02.0 switched from", rec, sizeof(rec)) ||
	    sscanf(rec, "00:02.0 switched from the adopted translation to domain %u in %llu ns",
		   &did, &ns) != 2)
		return fail("the switch does not say how long it took");
	printf("# switch window: %llu ns (A's context entry to domain %u)\n", ns, did);
	if (!edu_dma(&edu_a, EDU_BUF, RAM_IOVA + SWITCH_PAGE * PAGE, DMA_LEN, 1))
		return 0;
	n = count_in_log("the translation adopted from the previous kernel ended");
	if (n)
		return fail("\"adopted translation ended\" logged %d times, want 0 (B has it)", n);
	n = count_in_log("DMAR: [DMA");
	if (n)
		return fail("%d DMA faults logged, want 0", n);
	return page_is(SWITCH_PAGE, 1);
}

/*
 * B, unbound from vfio-pci (root may), cannot be retrieved: ENODEV, for
 * good. That stopped B and cleared its adopted entry, the last one (A's was
 * replaced by the attach), so the adopted translations ended.
 */
static int s2_retrieve_failed(int arg)
{
	char path[128];
	int fd, n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", edu_b.bdf);
	if (!sysfs_write(path, edu_b.bdf))
		return 0;
	fd = luo_session_retrieve_fd(sess, TOKEN_DEV_B);
	if (fd >= 0) {
		close(fd);
		return fail("RETRIEVE_FD of B, unbound, succeeded: want ENODEV");
	}
	if (fd != -ENODEV)
		return fail("RETRIEVE_FD of B, unbound: %s, want ENODEV", en(fd));
	n = count_in_log("the translation adopted from the previous kernel ended");
	return n == 1 ? 1 : fail("\"adopted translation ended\" logged %d times, want 1", n);
}

/*
 * After FINISH: the adopted translations ended once (at B's failed
 * retrieve), the held folios (the memfd's 1024 pages, and any other file's
 * restored since) were released, and the tables taken at boot freed. No DMA
 * of this boot faulted.
 */
static int s2_adoption_ended(int arg)
{
	unsigned long held = 0, freed = 0;
	char rec[256];
	int n;

	n = count_in_log("the translation adopted from the previous kernel ended");
	if (n != 1)
		return fail("\"adopted translation ended\" logged %d times, want 1", n);
	if (!log_from("previous kernel ended (", rec, sizeof(rec)) ||
	    sscanf(rec, "previous kernel ended (%lu held pages released, %lu table pages freed)",
		   &held, &freed) != 2)
		return fail("the end of the adopted translations does not say what it released");
	if (held < RAM_SIZE / PAGE)
		return fail("%lu held pages released, want at least %lu", held, RAM_SIZE / PAGE);
	/*
	 * The root and context tables, and a top table and one below it at
	 * least (2 MiB leaves at level 2 need no more).
	 */
	if (freed < 4)
		return fail("%lu table pages freed, want at least 4", freed);
	printf("# %lu held pages released, %lu table pages freed\n", held, freed);
	n = count_in_log("DMAR: [DMA");
	return n ? fail("%d DMA faults logged, want 0", n) : 1;
}

static int s2_translation_refused(int arg)
{
	int adopted = count_in_log("adopting the translation of");
	int off = count_in_log("Translation was enabled for");
	int refused = count_in_log("refusing the translation a live update left on");

	if (adopted || off || refused != 1)
		return fail("adopted %d, turned off %d, refused %d times: want 0, 0, 1",
			    adopted, off, refused);
	return 1;
}

static int s2_dma_blocked(int arg)
{
	struct stat st;
	uint8_t *b;
	uint64_t i;

	if (!sysfs_dma(DEV_A, NEXT_PAGE))
		return 0;
	sess = luo_retrieve_session(luo_fd, SESSION);
	if (sess < 0)
		return fail("RETRIEVE_SESSION: %s", en(sess));
	ram_fd = luo_session_retrieve_fd(sess, TOKEN_RAM);
	if (ram_fd < 0)
		return fail("RETRIEVE_FD of the memfd: %s", en(ram_fd));
	if (fstat(ram_fd, &st) || st.st_size != (off_t)RAM_SIZE)
		return fail("the memfd's size is %lld", (long long)st.st_size);
	b = mmap(NULL, RAM_SIZE, PROT_READ, MAP_SHARED, ram_fd, 0);
	if (b == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	for (i = 0; i < RAM_SIZE; i++) {
		uint64_t page = i / PAGE;

		if (page == A_PAGE || page == B_PAGE)
			continue;
		if (b[i] != (page == RT_TO ? want_byte(i) : ram_byte(i)))
			break;
	}
	munmap(b, RAM_SIZE);
	if (i != RAM_SIZE)
		return fail("byte %#llx of the memfd (page %llu) changed%s", (unsigned long long)i,
			    (unsigned long long)i / PAGE,
			    i / PAGE == NEXT_PAGE ? ": the DMA went through" : "");
	return 1;
}

static int s2_reset_at_open(int arg)
{
	int n;

	edu_a.fd = luo_session_retrieve_fd(sess, TOKEN_DEV);
	if (edu_a.fd < 0) {
		fail("RETRIEVE_FD of A: %s", en(edu_a.fd));
		edu_a.fd = -1;
		return 0;
	}
	if (!new_ioas() || !edu_bind(&edu_a, iommufd, ioas))
		return 0;
	n = count_in_log("live update: kept running, not reset");
	return n ? fail("\"kept running, not reset\" logged %d times, want 0", n) : 1;
}

static int s2_translation_turned_off(int arg)
{
	int adopted = count_in_log("adopting the translation of");
	int off = count_in_log("Translation was enabled for dmar0 but we are not in kdump mode");
	int refused = count_in_log("refusing the translation");

	if (adopted || off != 1 || refused)
		return fail("adopted %d, turned off %d, refused %d times: want 0, 1, 0",
			    adopted, off, refused);
	return 1;
}

static int s2_device_dropped(int arg)
{
	int fd = luo_session_retrieve_fd(sess, TOKEN_DEV);

	if (fd >= 0) {
		close(fd);
		return fail("RETRIEVE_FD of A succeeded, want ENOENT (no vfio-pci-rs-v2 handler)");
	}
	return fd == -ENOENT ? 1 : fail("RETRIEVE_FD of A: %s, want ENOENT", en(fd));
}

static int s2_finish(int arg)
{
	int r = luo_session_finish(sess);

	return r ? fail("FINISH: %s", en(r)) : 1;
}

static int s2_not_reset(int arg)
{
	int n;

	sess = luo_retrieve_session(luo_fd, SESSION);
	if (sess < 0)
		return fail("RETRIEVE_SESSION: %s", en(sess));
	edu_a.fd = luo_session_retrieve_fd(sess, TOKEN_DEV);
	if (edu_a.fd < 0) {
		fail("RETRIEVE_FD of A: %s", en(edu_a.fd));
		edu_a.fd = -1;
		return 0;
	}
	/* Bound, not attached: the adopted translation stays. */
	if (!new_ioas() || !edu_bind(&edu_a, iommufd, 0))
		return 0;
	n = count_in_log("live update: kept running, not reset");
	/* B, never opened again, is not enabled. */
	if (n != 1)
		return fail("\"kept running, not reset\" logged %d times, want 1", n);
	return 1;
}

static int s2_dma_after(int arg)
{
	uint8_t *b;
	uint64_t i;
	int r;

	if (edu_a.fd < 0 || ram_fd < 0)
		return fail("A or the memfd was not retrieved");
	if (!edu_a.ioas && !edu_attach(&edu_a, ioas))
		return 0;
	if (!ram_mapped && !ioas_map_file(iommufd, ioas, ram_fd, RAM_SIZE, RAM_IOVA))
		return 0;
	ram_mapped = 1;
	if (!edu_map_bar(&edu_a) ||
	    !edu_set_command(&edu_a, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) ||
	    !edu_dma(&edu_a, RAM_IOVA + SRC_PAGE * PAGE, EDU_BUF, DMA_LEN, 0) ||
	    !edu_dma(&edu_a, EDU_BUF, RAM_IOVA + 7 * PAGE, DMA_LEN, 1))
		return 0;
	b = mmap(NULL, RAM_SIZE, PROT_READ, MAP_SHARED, ram_fd, 0);
	if (b == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	for (i = 0; i < DMA_LEN; i++)
		if (b[7 * PAGE + i] != ram_byte(SRC_PAGE * PAGE + i))
			break;
	munmap(b, RAM_SIZE);
	if (i != DMA_LEN)
		return fail("byte %#llx of the new DMA's target is wrong", (unsigned long long)i);
	r = luo_session_finish(sess);
	return r ? fail("FINISH: %s", en(r)) : 1;
}

static const struct vcase s2_cases[] = {
	{ "s2_translation_adopted", s2_translation_adopted },
	{ "s2_dma_in_next_kernel", s2_dma_in_next_kernel },
	{ "s2_not_reset", s2_not_reset },
	{ "s2_dma_while_bound", s2_dma_while_bound },
	{ "s2_dma_landed", s2_dma_landed },
	{ "s2_memory_held", s2_memory_held },
	{ "s2_switch", s2_switch },
	{ "s2_retrieve_failed", s2_retrieve_failed },
	{ "s2_dma_after", s2_dma_after },
	{ "s2_adoption_ended", s2_adoption_ended },
};

static const struct vcase s2_corrupt_cases[] = {
	{ "s2_translation_refused", s2_translation_refused },
	{ "s2_dma_blocked", s2_dma_blocked },
	{ "s2_reset_at_open", s2_reset_at_open },
	{ "s2_dma_after", s2_dma_after },
};

static const struct vcase s2_interop_cases[] = {
	{ "s2_translation_turned_off", s2_translation_turned_off },
	{ "s2_dma_blocked", s2_dma_blocked },
	{ "s2_device_dropped", s2_device_dropped },
	{ "s2_finish", s2_finish },
};

/* Does this kernel's table of accepted formats name "vtd-lu-rs-v1"? */
static int adopts(void)
{
	static char t[4096];
	size_t len = luo_formats(t, sizeof(t));

	return len && format_listed(t, len, "vtd-lu-rs-v1");
}

static void stage_2(int fd, int sfd)
{
	luo_fd = fd;
	state_fd = sfd;
	if (!adopts())
		run_cases(s2_interop_cases, ARRAY_SIZE(s2_interop_cases));
	else if (opt_vtd_corrupt)
		run_cases(s2_corrupt_cases, ARRAY_SIZE(s2_corrupt_cases));
	else
		run_cases(s2_cases, ARRAY_SIZE(s2_cases));
	luo_session_finish(state_fd);
	ktap_exit();
}

/* --interop: the stage-2 cases --list prints. */
static int opt_list_interop;

static int take_option(int val, const char *arg)
{
	char *end;

	if (val == 'v') {
		errno = 0;
		opt_vtd_corrupt = strtoul(arg, &end, 10);
		return errno || *end || opt_vtd_corrupt < 1 || opt_vtd_corrupt > 5 ? -1 : 0;
	}
	if (strcmp(arg, "freeze") && strcmp(arg, "kexec"))
		return -1;
	opt_dma_at = arg;
	return 0;
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "dma-at", required_argument, NULL, 'd' },
		{ "vtd-corrupt", required_argument, NULL, 'v' },
		{ "interop", no_argument, &opt_list_interop, 1 },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, take_option);

	if (a.list) {
		list_cases(s1_cases, ARRAY_SIZE(s1_cases));
		if (opt_vtd_corrupt)
			list_cases(s2_corrupt_cases, ARRAY_SIZE(s2_corrupt_cases));
		else if (opt_list_interop)
			list_cases(s2_interop_cases, ARRAY_SIZE(s2_interop_cases));
		else
			list_cases(s2_cases, ARRAY_SIZE(s2_cases));
		return 0;
	}
	return ktap_luo_test(argv[0], a, STATE_SESSION_NAME, stage_1, stage_2);
}
