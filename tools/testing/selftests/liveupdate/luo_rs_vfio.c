// SPDX-License-Identifier: GPL-2.0-only
/*
 * A vfio-pci device across a live update, the way a VMM keeps a passthrough
 * device: the LUO file handler "vfio-pci-rs-v1" preserves a vfio cdev fd
 * that is bound to an iommufd, freezes the device at reboot(KEXEC), and hands
 * a fresh cdev file for it to the next kernel, next to the guest's RAM (a
 * memfd) in the same session. The devices are QEMU edu devices (see luo_rs_vfio.h) at
 * 00:02.0 (A), 00:03.0 (B), 00:04.0 (C) and 00:05.0 (D), in a q35 VM with
 * an emulated Intel IOMMU.
 *
 *   -s 1  The kernel's table of accepted handover formats (the "LUO" note in
 *         /sys/kernel/notes) names the handler's private "vfio-pci-rs-v1",
 *         not the posted series' "vfio-pci-v1".
 *         A is bound to vfio-pci and an iommufd and does a DMA round trip;
 *         a device fd from the vfio group, an unbound cdev fd, a second
 *         (unbound) cdev fd of bound A and non-vfio fds are refused (in a
 *         scratch session, closed before the others are created); A and a
 *         64 MiB guest RAM memfd (DMA-mapped in A's IOAS) go into session
 *         "vfio-dev"; A's cdev is then busy. D, then C with INTx enabled, go
 *         into session "vfio-remove"; a child writes 1 to D's sysfs remove
 *         file, which waits for D's files to close: reboot(KEXEC) fails with
 *         EBUSY at D's freeze (not EINVAL at C's, nor a kexec that hangs in
 *         device_shutdown), and closing the session and the fds lets the
 *         removal finish; A, frozen by that reboot, stays frozen. B with
 *         INTx enabled goes into session "vfio-irq": reboot(KEXEC) fails with
 *         EINVAL at B's freeze, and A stays frozen (EIO; a fault on its BAR
 *         mapping gets SIGBUS).
 *         B is unpreserved, C goes into session "vfio-spare", then a child
 *         holds every fd across the kexec.
 *   -s 2  A and C, preserved, were bound to vfio-pci when the kernel found
 *         them, through a driver_override set before any driver could
 *         probe them; B, not preserved, was not.
 *         A's cdev is busy until it is retrieved; the retrieved fd is a fresh
 *         unbound cdev file (FINISH is refused while it is unbound, even
 *         once its fd is closed; retrieved again, it is the same file) that
 *         binds to a new iommufd; its BAR works, and it DMAs from and to the
 *         preserved guest RAM mapped with IOMMU_IOAS_MAP_FILE; FINISH, and
 *         the device still works. "vfio-spare" is finished without
 *         retrieving C, whose cdev then opens normally.
 *
 * Without -s (a single boot, no kexec) stage 1 runs: on a kernel without the
 * vfio handler s1_rig and the refusals pass and the rest fails (ENOENT from
 * PRESERVE_FD). The reboot(KEXEC) is only tried with B preserved and a kexec
 * image loaded, so that it cannot pass without reaching B's freeze.
 *
 * luo_rs_vfio_corrupt.c (same helpers, luo_rs_vfio.h) corrupts handovers on
 * purpose. KTAP per check; --list prints every case name (stage 1's, then
 * stage 2's).
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "luo_rs_vfio.h"

#define STATE_SESSION_NAME	"luo_rs_vfio_state"
#define STATE_MEMFD_TOKEN	995

#define TOKEN_DEV		1	/* A, session vfio-dev */
#define TOKEN_RAM		2	/* the guest RAM memfd, session vfio-dev */
#define TOKEN_IRQ		3	/* B, session vfio-irq */
#define TOKEN_SPARE		4	/* C, session vfio-spare */
#define TOKEN_REMOVE		5	/* D, session vfio-remove */
#define TOKEN_REMOVE_GUARD	6	/* C with INTx, session vfio-remove */
#define REMOVE_WAIT_MS		60000
#define TOKEN_REFUSED		100	/* fds that must be refused */

/* s1_rig's DMA buffer: anonymous memory, IOMMU_IOAS_MAP'd. */
#define RIG_IOVA		0x100000ULL
#define RIG_SIZE		0x10000UL
#define RIG_FROM		0x10UL
#define RIG_TO			0x8003UL

/* The guest RAM memfd, IOMMU_IOAS_MAP_FILE'd (the same IOVA in both kernels). */
#define RAM_IOVA		0x4000000ULL
#define RAM_SIZE		(64UL << 20)
#define RAM_XOR			0x5a17c0de0badf00dULL
#define RAM_FROM		0x1123UL			/* near the start */
#define RAM_TO			(RAM_SIZE - 0x2000 + 0x45)	/* near the end */

static int luo_fd = -1, state_fd = -1;
static int iommufd = -1;
static __u32 ioas;
static struct edu dev[NR_EDU] = { EDU_INIT(0), EDU_INIT(1), EDU_INIT(2), EDU_INIT(3) };
static int sess_dev = -EBADF, sess_irq = -EBADF, sess_spare = -EBADF, sess_refuse = -EBADF;
static int ram_fd = -1, irq_efd = -1, rebooted;
static int sess_remove = -EBADF, req_efd = -1, guard_efd = -1;
static pid_t remover = -1;

/* The iommufd and the IOAS every device of a stage is attached to. */
static int need_ioas(void)
{
	if (iommufd < 0)
		iommufd = iommufd_open();
	if (iommufd < 0)
		return 0;
	return ioas || ioas_alloc(iommufd, &ioas);
}

/* Byte @off of the guest RAM pattern: each 8-byte word is its offset ^ RAM_XOR. */
static uint8_t ram_byte(uint64_t off)
{
	return ((off & ~7ULL) ^ RAM_XOR) >> ((off & 7) * 8);
}

/*
 * Check the guest RAM: the pattern everywhere, except [@to, @to + @len),
 * which must hold the pattern of [@from, @from + @len) (@len 0: no copy).
 */
static int ram_check(const uint64_t *w, uint64_t from, uint64_t to, uint64_t len)
{
	const uint8_t *b = (const uint8_t *)w;
	uint64_t i, o;

	for (i = 0; i < RAM_SIZE / 8; i++) {
		o = i * 8;
		if (len && o + 8 > to && o < to + len)
			continue;
		if (w[i] != (o ^ RAM_XOR))
			return fail("guest RAM word at %#llx is %#llx, want %#llx%s",
				    (unsigned long long)o, (unsigned long long)w[i],
				    (unsigned long long)(o ^ RAM_XOR),
				    len ? " (outside the DMA target)" : "");
	}
	for (o = to & ~7ULL; len && o < ((to + len + 7) & ~7ULL); o++) {
		uint8_t want = (o >= to && o < to + len) ? ram_byte(from + o - to) : ram_byte(o);

		if (b[o] != want)
			return fail("guest RAM byte %#llx is %#x, want %#x (%s)",
				    (unsigned long long)o, b[o], want,
				    o >= to && o < to + len ? "DMA target" : "next to it");
	}
	return 1;
}

/* ---- stage 1 ---- */

static int s1_format_note_private(int arg)
{
	char t[1024];
	size_t len = luo_formats(t, sizeof(t));

	if (!len)
		return 0;
	if (!format_listed(t, len, "vfio-pci-rs-v1"))
		return fail("the kernel's format table lacks \"vfio-pci-rs-v1\"");
	if (format_listed(t, len, "vfio-pci-v1"))
		return fail("the kernel's format table claims upstream's \"vfio-pci-v1\"");
	return 1;
}

static int s1_rig(int arg)
{
	struct edu *a = &dev[DEV_A];
	uint8_t *buf, *want;
	size_t i;
	int ok;

	for (i = 0; i < NR_EDU; i++)
		if (!edu_present(edu_bdf[i]) || !bind_vfio_pci(edu_bdf[i]))
			return 0;
	if (!need_ioas() || !edu_open_bind(a, iommufd, ioas) || !edu_alive(a))
		return 0;

	/* A DMA round trip through anonymous memory, kept mapped (as a VMM would). */
	buf = mmap(NULL, RIG_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	want = malloc(RIG_SIZE);
	if (buf == MAP_FAILED || !want)
		return fail("cannot allocate the DMA buffer");
	if (getrandom(buf, RIG_SIZE, 0) != (ssize_t)RIG_SIZE)
		return fail("getrandom: %s", en(errno));
	memcpy(want, buf, RIG_SIZE);
	memcpy(want + RIG_TO, buf + RIG_FROM, EDU_DMA_MAX);
	if (!ioas_map(iommufd, ioas, buf, RIG_SIZE, RIG_IOVA) ||
	    !edu_dma_round_trip(a, RIG_IOVA + RIG_FROM, RIG_IOVA + RIG_TO, EDU_DMA_MAX))
		return 0;
	ok = 1;
	for (i = 0; i < RIG_SIZE && ok; i++)
		if (buf[i] != want[i])
			ok = fail("after the DMA round trip byte %#zx is %#x, want %#x (%s)", i,
				  buf[i], want[i], i >= RIG_TO && i < RIG_TO + EDU_DMA_MAX ?
				  "DMA target" : "outside the DMA target");
	free(want);
	return ok;
}

/* A scratch session for the fds that must be refused (closed afterwards). */
static int refuse_session(void)
{
	if (sess_refuse == -EBADF)
		sess_refuse = luo_create_session(luo_fd, "vfio-refuse");
	return sess_refuse;
}

static int s1_refuse_group_fd(int arg)
{
	struct edu *b = &dev[DEV_B];
	char path[64];
	int grp, gfd, dfd, ok;

	grp = iommu_group(b->bdf);
	if (grp < 0 || !need_ioas())
		return 0;
	snprintf(path, sizeof(path), "/dev/vfio/%d", grp);
	gfd = open(path, O_RDWR | O_CLOEXEC);
	if (gfd < 0)
		return fail("open %s: %s", path, en(errno));
	if (ioctl(gfd, VFIO_GROUP_SET_CONTAINER, &iommufd)) {
		fail("VFIO_GROUP_SET_CONTAINER with the iommufd: %s", en(errno));
		close(gfd);
		return 0;
	}
	dfd = ioctl(gfd, VFIO_GROUP_GET_DEVICE_FD, b->bdf);
	if (dfd < 0)
		ok = fail("VFIO_GROUP_GET_DEVICE_FD %s: %s", b->bdf, en(errno));
	else
		ok = preserve_refused(refuse_session(), dfd, TOKEN_REFUSED,
				      "a device fd from the vfio group");
	if (dfd >= 0)
		close(dfd);
	close(gfd);
	return ok;
}

static int s1_refuse_unbound_cdev(int arg)
{
	struct edu *b = &dev[DEV_B];

	b->fd = cdev_open(b->bdf);
	if (b->fd < 0) {
		fail("opening %s's cdev: %s", b->bdf, en(b->fd));
		b->fd = -1;
		return 0;
	}
	/* B stays open, unbound, for s1_irq_freeze_fails_reboot. */
	return preserve_refused(refuse_session(), b->fd, TOKEN_REFUSED + 1,
				"a cdev fd not bound to an iommufd");
}

/* The file itself must be bound: a second cdev fd of a bound device is not. */
static int s1_refuse_second_unbound_cdev(int arg)
{
	struct edu *a = &dev[DEV_A];
	int fd, ok;

	if (a->fd < 0 || !a->ioas)
		return fail("A is not open and bound (s1_rig failed)");
	fd = cdev_open(a->bdf);
	if (fd < 0)
		return fail("opening A's cdev a second time: %s", en(fd));
	ok = preserve_refused(refuse_session(), fd, TOKEN_REFUSED + 4,
			      "a second, unbound cdev fd of a bound device");
	close(fd);
	return ok;
}

static int s1_refuse_non_vfio_fd(int arg)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC), ok;

	ok = need_ioas() &&
	     preserve_refused(refuse_session(), iommufd, TOKEN_REFUSED + 2, "the iommufd");
	ok = preserve_refused(refuse_session(), null, TOKEN_REFUSED + 3, "/dev/null") && ok;
	if (null >= 0)
		close(null);
	/* Whatever was wrongly taken is unpreserved here. */
	if (sess_refuse >= 0)
		close(sess_refuse);
	sess_refuse = -1;
	return ok;
}

static int s1_preserve_device(int arg)
{
	struct edu *a = &dev[DEV_A];
	uint64_t *w, i;
	int ok;

	sess_dev = luo_create_session(luo_fd, "vfio-dev");
	if (sess_dev < 0)
		return fail("CREATE_SESSION vfio-dev: %s", en(sess_dev));

	/* The guest's RAM: a memfd with a known pattern, DMA-mapped in A's IOAS. */
	ram_fd = memfd_create("vfio-guest-ram", MFD_CLOEXEC);
	if (ram_fd < 0 || ftruncate(ram_fd, RAM_SIZE))
		return fail("memfd of %lu bytes: %s", RAM_SIZE, en(errno));
	w = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (w == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	for (i = 0; i < RAM_SIZE / 8; i++)
		w[i] = (i * 8) ^ RAM_XOR;
	munmap(w, RAM_SIZE);

	if (a->fd < 0 || !a->ioas)
		fail("%s is not open and attached to an IOAS (s1_rig failed)", a->bdf);
	ok = need_ioas() && ioas_map_file(iommufd, ioas, ram_fd, RAM_SIZE, RAM_IOVA);
	ok = preserve(sess_dev, a->fd, TOKEN_DEV, "A's device fd") && ok;
	/* The memfd goes in even if A did not, for stage 2's memfd checks. */
	ok = preserve(sess_dev, ram_fd, TOKEN_RAM, "the guest RAM memfd") && ok;
	return ok;
}

static int s1_preserved_cdev_busy(int arg)
{
	return cdev_busy(dev[DEV_A].bdf);
}

/* Make @efd the trigger of @e's interrupt @index (VFIO_DEVICE_SET_IRQS). */
static int set_irq_eventfd(struct edu *e, unsigned int index, int efd)
{
	struct {
		struct vfio_irq_set s;
		__s32 fd;
	} irq = { { .argsz = sizeof(irq), .index = index, .count = 1,
		    .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER }, efd };

	if (efd < 0)
		return fail("eventfd: %s", en(errno));
	if (ioctl(e->fd, VFIO_DEVICE_SET_IRQS, &irq))
		return fail("%s: VFIO_DEVICE_SET_IRQS index %u with an eventfd: %s", e->bdf, index,
			    en(errno));
	return 1;
}

static int image_loaded(void)
{
	char v[8];

	return sysfs_read("/sys/kernel/kexec_loaded", v, sizeof(v)) && !strcmp(v, "1");
}

/*
 * D is preserved while a child removes it (sysfs remove waits, in vfio, for
 * D's files to close): the reboot must fail at D's freeze with EBUSY. C,
 * preserved after D with INTx enabled, fails the reboot with EINVAL if D's
 * freeze does not, so that a kernel without the check fails this case
 * instead of kexecing into a hang in device_shutdown().
 */
static int s1_remove_fails_freeze(int arg)
{
	struct edu *c = &dev[DEV_C], *d = &dev[DEV_D];
	struct pollfd pfd;
	char path[128];
	long r;

	if (!need_ioas() || !edu_open_bind(d, iommufd, ioas))
		return 0;
	/* vfio signals it when the removal asks for D back. */
	req_efd = eventfd(0, EFD_CLOEXEC);
	if (!set_irq_eventfd(d, VFIO_PCI_REQ_IRQ_INDEX, req_efd))
		return 0;
	if (!edu_open_bind(c, iommufd, ioas))
		return 0;
	guard_efd = eventfd(0, EFD_CLOEXEC);
	if (!set_irq_eventfd(c, VFIO_PCI_INTX_IRQ_INDEX, guard_efd))
		return 0;
	sess_remove = luo_create_session(luo_fd, "vfio-remove");
	if (sess_remove < 0)
		return fail("CREATE_SESSION vfio-remove: %s", en(sess_remove));
	if (!preserve(sess_remove, d->fd, TOKEN_REMOVE, "D") ||
	    !preserve(sess_remove, c->fd, TOKEN_REMOVE_GUARD, "C with INTx enabled"))
		return 0;
	if (!image_loaded())
		return fail("no kexec image loaded: reboot(KEXEC) would fail before any freeze");

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/remove", d->bdf);
	remover = fork();
	if (remover < 0)
		return fail("fork: %s", en(errno));
	if (!remover) {
		/* Only the parent may hold D's files, or the removal never ends. */
		syscall(SYS_close_range, 3U, ~0U, 0U);
		_exit(sysfs_write(path, "1") ? 0 : 1);
	}
	pfd = (struct pollfd){ .fd = req_efd, .events = POLLIN };
	if (poll(&pfd, 1, REMOVE_WAIT_MS) != 1)
		return fail("no device request from the removal of %s within %d ms", d->bdf,
			    REMOVE_WAIT_MS);

	r = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		    LINUX_REBOOT_CMD_KEXEC, NULL);
	if (r != -1 || errno != EBUSY)
		return fail("reboot(KEXEC) with the removal of %s pending returned %ld (%s), want -1 (EBUSY)",
			    d->bdf, r, r ? en(errno) : "no error");
	return 1;
}

/* Unpreserved and closed, D is let go: the removal ends, D is gone. */
static int s1_remove_completes_after_unpreserve(int arg)
{
	struct edu *c = &dev[DEV_C], *d = &dev[DEV_D];
	char path[128];
	int status = 0, ms;
	pid_t w = 0;

	if (sess_remove >= 0)
		close(sess_remove);
	sess_remove = -EBADF;
	if (c->fd >= 0)
		close(c->fd);
	*c = (struct edu)EDU_INIT(DEV_C);
	if (d->fd >= 0)
		close(d->fd);
	*d = (struct edu)EDU_INIT(DEV_D);
	if (req_efd >= 0)
		close(req_efd);
	if (guard_efd >= 0)
		close(guard_efd);
	req_efd = guard_efd = -1;
	if (remover <= 0)
		return fail("no removal was started");
	for (ms = 0; ms < REMOVE_WAIT_MS && !(w = waitpid(remover, &status, WNOHANG)); ms += 10)
		usleep(10000);
	if (w != remover)
		return fail("the removal of %s did not end within %d ms of closing its files",
			    edu_bdf[DEV_D], REMOVE_WAIT_MS);
	remover = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return fail("writing 1 to %s's remove file failed", edu_bdf[DEV_D]);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", edu_bdf[DEV_D]);
	if (!access(path, F_OK))
		return fail("%s is still there after its removal", edu_bdf[DEV_D]);
	return 1;
}

static int s1_irq_freeze_fails_reboot(int arg)
{
	struct edu *b = &dev[DEV_B];
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_INTX_IRQ_INDEX };
	struct {
		struct vfio_irq_set s;
		__s32 fd;
	} irq = { { .argsz = sizeof(irq), .index = VFIO_PCI_INTX_IRQ_INDEX, .count = 1,
		    .flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER } };
	long r;

	if (b->fd < 0) {
		b->fd = cdev_open(b->bdf);
		if (b->fd < 0) {
			fail("opening %s's cdev: %s", b->bdf, en(b->fd));
			b->fd = -1;
			return 0;
		}
	}
	if (!need_ioas() || !edu_bind(b, iommufd, ioas))
		return 0;
	if (ioctl(b->fd, VFIO_DEVICE_GET_IRQ_INFO, &ii) || ii.count < 1 ||
	    !(ii.flags & VFIO_IRQ_INFO_EVENTFD))
		return fail("%s: INTx info: %s, count %u, flags %#x", b->bdf, en(errno),
			    ii.count, ii.flags);
	irq_efd = eventfd(0, EFD_CLOEXEC);
	irq.fd = irq_efd;
	if (irq_efd < 0 || ioctl(b->fd, VFIO_DEVICE_SET_IRQS, &irq))
		return fail("%s: enabling INTx with an eventfd: %s", b->bdf, en(errno));

	sess_irq = luo_create_session(luo_fd, "vfio-irq");
	if (sess_irq < 0)
		return fail("CREATE_SESSION vfio-irq: %s", en(sess_irq));
	if (!preserve(sess_irq, b->fd, TOKEN_IRQ, "B with INTx enabled"))
		return 0;	/* no reboot: nothing would stop it */
	if (!image_loaded())
		return fail("no kexec image loaded: reboot(KEXEC) would fail before any freeze");

	rebooted = 1;
	r = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		    LINUX_REBOOT_CMD_KEXEC, NULL);
	if (r != -1 || errno != EINVAL)
		return fail("reboot(KEXEC) returned %ld (%s), want -1 (EINVAL)", r,
			    r ? en(errno) : "no error");
	return 1;
}

static int s1_frozen_fd_eio(int arg)
{
	struct edu *a = &dev[DEV_A];
	struct vfio_device_info info;
	int r_info, r_read, r_mmap;
	uint32_t v;
	void *p;

	if (!rebooted)
		return fail("no failed reboot(KEXEC) happened, so A was never frozen");
	if (a->fd < 0)
		return fail("A has no fd");
	r_info = vfio_device_info(a->fd, &info);
	r_read = pread(a->fd, &v, sizeof(v), a->cfg_off) < 0 ? -errno : 0;
	p = mmap(NULL, a->bar_size ?: 0x100000, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd,
		 a->bar_off);
	r_mmap = p == MAP_FAILED ? -errno : 0;
	if (p != MAP_FAILED)
		munmap(p, a->bar_size ?: 0x100000);
	if (r_info != -EIO || r_read != -EIO || r_mmap != -EIO)
		return fail("GET_INFO: %s, config pread: %s, BAR0 mmap: %s; want EIO for each",
			    en(r_info), en(r_read), en(r_mmap));
	return 1;
}

static sigjmp_buf bar_jmp;

static void bar_fault(int sig)
{
	siglongjmp(bar_jmp, sig);
}

/*
 * A's BAR0, mapped before the freeze: the freeze zapped the mapping and
 * turned memory decoding off in the virtual config space too, so the fault
 * gets SIGBUS instead of mapping the BAR again.
 */
static int s1_frozen_bar_sigbus(int arg)
{
	struct sigaction sa = { .sa_handler = bar_fault }, old;
	struct edu *a = &dev[DEV_A];
	/* Static, not automatic: it is read after the siglongjmp(). */
	static uint32_t v;
	int sig;

	if (!rebooted)
		return fail("no failed reboot(KEXEC) happened, so A was never frozen");
	if (!a->bar)
		return fail("A's BAR0 was not mapped (s1_rig failed)");
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	sig = sigsetjmp(bar_jmp, 1);
	if (!sig)
		v = rd32(a, EDU_REG_ID);
	sigaction(SIGBUS, &old, NULL);
	if (sig != SIGBUS)
		return fail("reading A's mapped BAR0 after the freeze: %s (%#x), want SIGBUS",
			    sig ? strsignal(sig) : "no fault", v);
	return 1;
}

static int s1_luo_usable_after_failed_reboot(int arg)
{
	struct vfio_irq_set off = {
		.argsz = sizeof(off), .index = VFIO_PCI_INTX_IRQ_INDEX, .count = 0,
		.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
	};
	struct edu *b = &dev[DEV_B], *c = &dev[DEV_C];
	int fd;

	/* Closing "vfio-irq" unpreserves B, whose freeze failed: it works. */
	if (sess_irq >= 0)
		close(sess_irq);
	sess_irq = -EBADF;
	if (b->fd >= 0) {
		if (irq_efd >= 0 && ioctl(b->fd, VFIO_DEVICE_SET_IRQS, &off))
			return fail("%s: disabling INTx after the failed reboot: %s", b->bdf,
				    en(errno));
		close(b->fd);
		b->fd = -1;
	}
	if (irq_efd >= 0)
		close(irq_efd);
	irq_efd = -1;
	/* Unpreserved and closed, B is free again. */
	fd = cdev_open(b->bdf);
	if (fd < 0)
		return fail("opening %s's cdev after unpreserving and closing it: %s", b->bdf,
			    en(fd));
	close(fd);

	/* LUO takes new sessions and devices. */
	sess_spare = luo_create_session(luo_fd, "vfio-spare");
	if (sess_spare < 0)
		return fail("CREATE_SESSION vfio-spare: %s", en(sess_spare));
	return need_ioas() && edu_open_bind(c, iommufd, ioas) &&
	       preserve(sess_spare, c->fd, TOKEN_SPARE, "C");
}

static const struct vcase s1_cases[] = {
	{ "s1_format_note_private", s1_format_note_private },
	{ "s1_rig", s1_rig },
	{ "s1_refuse_group_fd", s1_refuse_group_fd },
	{ "s1_refuse_unbound_cdev", s1_refuse_unbound_cdev },
	{ "s1_refuse_second_unbound_cdev", s1_refuse_second_unbound_cdev },
	{ "s1_refuse_non_vfio_fd", s1_refuse_non_vfio_fd },
	{ "s1_preserve_device", s1_preserve_device },
	{ "s1_preserved_cdev_busy", s1_preserved_cdev_busy },
	{ "s1_remove_fails_freeze", s1_remove_fails_freeze },
	{ "s1_remove_completes_after_unpreserve", s1_remove_completes_after_unpreserve },
	{ "s1_irq_freeze_fails_reboot", s1_irq_freeze_fails_reboot },
	{ "s1_frozen_fd_eio", s1_frozen_fd_eio },
	{ "s1_frozen_bar_sigbus", s1_frozen_bar_sigbus },
	{ "s1_luo_usable_after_failed_reboot", s1_luo_usable_after_failed_reboot },
};

static void stage_1(int fd)
{
	luo_fd = fd;
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	run_cases(s1_cases, ARRAY_SIZE(s1_cases));
	/* The child keeps the sessions, A, C, the iommufd and the memfd open. */
	close(luo_fd);
	daemonize_and_wait();
}

/* ---- stage 2 ---- */

/* Before anything binds them: the kernel reserved A and C for vfio-pci. */
static int s2_listed_bound_at_boot(int arg)
{
	int ok = check_binding(dev[DEV_A].bdf, "vfio-pci", "vfio-pci");

	ok = check_binding(dev[DEV_C].bdf, "vfio-pci", "vfio-pci") && ok;
	return check_binding(dev[DEV_B].bdf, "", "") && ok;
}

static int s2_incoming_cdev_busy(int arg)
{
	return bind_vfio_pci(dev[DEV_A].bdf) && cdev_busy(dev[DEV_A].bdf);
}

static int s2_retrieve_device(int arg)
{
	struct edu *a = &dev[DEV_A];
	struct vfio_device_info info;
	int r;

	sess_dev = luo_retrieve_session(luo_fd, "vfio-dev");
	if (sess_dev < 0)
		return fail("RETRIEVE_SESSION vfio-dev: %s", en(sess_dev));
	a->fd = luo_session_retrieve_fd(sess_dev, TOKEN_DEV);
	if (a->fd < 0) {
		fail("RETRIEVE_FD of A: %s", en(a->fd));
		a->fd = -1;
		return 0;
	}
	/* A fresh cdev file: like any cdev fd, it does nothing before BIND_IOMMUFD. */
	r = vfio_device_info(a->fd, &info);
	if (r != -EINVAL)
		return fail("GET_INFO before BIND_IOMMUFD: %s, want EINVAL (a fresh unbound file)",
			    en(r));
	return 1;
}

static int s2_finish_unbound_busy(int arg)
{
	int r;

	if (dev[DEV_A].fd < 0)
		return fail("A was not retrieved (not calling FINISH)");
	r = luo_session_finish(sess_dev);
	if (r != -EBUSY)
		return fail("FINISH with A retrieved but unbound: %s, want EBUSY", en(r));
	return 1;
}

/*
 * Without the fd, the retrieved file is still unbound: FINISH is refused.
 * RETRIEVE_FD again gives the same file, still unbound.
 */
static int s2_finish_refused_after_unbound_close(int arg)
{
	struct edu *a = &dev[DEV_A];
	struct vfio_device_info info;
	int r, ok = 1;

	if (a->fd < 0)
		return fail("A was not retrieved (not calling FINISH)");
	close(a->fd);
	a->fd = -1;
	r = luo_session_finish(sess_dev);
	if (r != -EBUSY)
		ok = fail("FINISH with A retrieved, unbound and closed: %s, want EBUSY", en(r));
	a->fd = luo_session_retrieve_fd(sess_dev, TOKEN_DEV);
	if (a->fd < 0) {
		fail("RETRIEVE_FD of A again: %s", en(a->fd));
		a->fd = -1;
		return 0;
	}
	r = vfio_device_info(a->fd, &info);
	if (r != -EINVAL)
		return fail("GET_INFO on A retrieved again: %s, want EINVAL (still unbound)",
			    en(r));
	return ok;
}

/* The start of @bdf's BAR0 as sysfs says. */
static int bar0_start(const char *bdf, unsigned long long *start)
{
	char path[256], line[256];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	if (!sysfs_read(path, line, sizeof(line)))
		return 0;
	*start = strtoull(line, NULL, 0);
	return 1;
}

static int s2_bind_new_iommufd(int arg)
{
	struct edu *a = &dev[DEV_A];
	struct vfio_device_info info;
	unsigned long long start;
	uint32_t bar;
	int r;

	if (a->fd < 0)
		return fail("A was not retrieved");
	if (!need_ioas() || !edu_bind(a, iommufd, ioas))
		return 0;
	r = vfio_device_info(a->fd, &info);
	if (r)
		return fail("GET_INFO: %s", en(r));
	if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) ||
	    info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX || info.num_irqs < 1)
		return fail("GET_INFO: flags %#x, %u regions, %u irqs: not a vfio-pci device",
			    info.flags, info.num_regions, info.num_irqs);
	/* It is A: its config space shows A's BAR0 address. */
	if (pread(a->fd, &bar, sizeof(bar), a->cfg_off + PCI_BASE_ADDRESS_0) != sizeof(bar))
		return fail("config read of BAR0: %s", en(errno));
	if (!bar0_start(a->bdf, &start))
		return 0;
	if ((bar & PCI_BASE_ADDRESS_MEM_MASK) != (uint32_t)start)
		return fail("config BAR0 is %#x, but %s's BAR0 is at %#llx", bar, a->bdf, start);
	return 1;
}

static int s2_bar_id_liveness(int arg)
{
	if (dev[DEV_A].fd < 0 || !dev[DEV_A].ioas)
		return fail("A is not retrieved and bound");
	return edu_alive(&dev[DEV_A]);
}

static int s2_dma_guest_ram(int arg)
{
	struct edu *a = &dev[DEV_A];
	struct stat st;
	uint64_t *w;

	ram_fd = luo_session_retrieve_fd(sess_dev, TOKEN_RAM);
	if (ram_fd < 0)
		return fail("RETRIEVE_FD of the guest RAM memfd: %s", en(ram_fd));
	if (fstat(ram_fd, &st) || st.st_size != (off_t)RAM_SIZE)
		return fail("the memfd's size is %lld, want %lu", (long long)st.st_size, RAM_SIZE);
	w = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (w == MAP_FAILED)
		return fail("mmap of the memfd: %s", en(errno));
	if (!ram_check(w, 0, 0, 0))
		return 0;
	if (a->fd < 0 || !a->ioas)
		return fail("A is not retrieved and bound");
	if (!ioas_map_file(iommufd, ioas, ram_fd, RAM_SIZE, RAM_IOVA) ||
	    !edu_dma_round_trip(a, RAM_IOVA + RAM_FROM, RAM_IOVA + RAM_TO, EDU_DMA_MAX))
		return 0;
	return ram_check(w, RAM_FROM, RAM_TO, EDU_DMA_MAX);
}

static int s2_finish(int arg)
{
	int r;

	if (sess_dev < 0)
		return fail("vfio-dev was not retrieved");
	r = luo_session_finish(sess_dev);
	if (r)
		return fail("FINISH of vfio-dev: %s", en(r));
	if (dev[DEV_A].fd < 0 || !dev[DEV_A].ioas)
		return fail("A is not retrieved and bound");
	return edu_alive(&dev[DEV_A]);
}

static int s2_unretrieved_finished(int arg)
{
	struct edu *c = &dev[DEV_C];
	int s, r, ok;

	if (!bind_vfio_pci(c->bdf))
		return 0;
	/* Busy until its session is finished; the rest is checked either way. */
	ok = cdev_busy(c->bdf);
	s = luo_retrieve_session(luo_fd, "vfio-spare");
	if (s < 0)
		return fail("RETRIEVE_SESSION vfio-spare: %s", en(s));
	r = luo_session_finish(s);
	close(s);
	if (r)
		return fail("FINISH of vfio-spare, C never retrieved: %s", en(r));
	return need_ioas() && edu_open_bind(c, iommufd, ioas) && edu_alive(c) && ok;
}

static const struct vcase s2_cases[] = {
	{ "s2_listed_bound_at_boot", s2_listed_bound_at_boot },
	{ "s2_incoming_cdev_busy", s2_incoming_cdev_busy },
	{ "s2_retrieve_device", s2_retrieve_device },
	{ "s2_finish_unbound_busy", s2_finish_unbound_busy },
	{ "s2_finish_refused_after_unbound_close", s2_finish_refused_after_unbound_close },
	{ "s2_bind_new_iommufd", s2_bind_new_iommufd },
	{ "s2_bar_id_liveness", s2_bar_id_liveness },
	{ "s2_dma_guest_ram", s2_dma_guest_ram },
	{ "s2_finish", s2_finish },
	{ "s2_unretrieved_finished", s2_unretrieved_finished },
};

static void stage_2(int fd, int sfd)
{
	luo_fd = fd;
	state_fd = sfd;
	run_cases(s2_cases, ARRAY_SIZE(s2_cases));
	luo_session_finish(state_fd);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		list_cases(s1_cases, ARRAY_SIZE(s1_cases));
		list_cases(s2_cases, ARRAY_SIZE(s2_cases));
		return 0;
	}
	return luo_test(argc, argv, STATE_SESSION_NAME, stage_1, stage_2);
}
