/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Helpers shared by the vfio-pci live update selftests (luo_rs_vfio.c,
 * luo_rs_vfio_corrupt.c): QEMU "edu" test devices (1234:11e8) bound to
 * vfio-pci and driven through their vfio cdev and an iommufd.
 *
 * The tests expect a QEMU q35 VM with four edu devices (-device edu), at
 * 0000:00:02.0 to 0000:00:05.0, behind QEMU's emulated Intel IOMMU
 * (-device intel-iommu, booted with intel_iommu=on). An edu device has a
 * 1 MiB BAR0: an ID register, a liveness register that returns the
 * complement of what was written, and a DMA engine that copies between bus
 * addresses (IOVAs here, 28-bit DMA mask) and a 4 KiB buffer of its own.
 *
 * Every helper that can fail returns 0 and records why with fail() (a case's
 * reasons accumulate, innermost first); on success it returns 1 or a file
 * descriptor. run_case() prints one KTAP line per case.
 */
#ifndef LUO_RS_VFIO_H
#define LUO_RS_VFIO_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

/*
 * The vfio-pci handler's test controls (CONFIG_LIVEUPDATE_RUST_TEST):
 * ioctls of debugfs liveupdate/test_vfio (drivers/vfio/pci/vfio_pci_luo_rs.rs).
 */
#define TEST_VFIO		"/sys/kernel/debug/liveupdate/test_vfio"
/* Corrupt the handover of the next preserved device (mode 1 to 5). */
#define TEST_VFIO_CORRUPT	_IO('V', 1)
/* BAR 0 writes done at the next freeze of a device kept running, or at the kexec. */
struct test_vfio_dma {
	__u32 when;		/* 1: right after its freeze; 2: at the kexec */
	__u32 n;		/* 1 to 4 */
	__u64 w[4][2];		/* offset in BAR 0, value */
};

#define TEST_VFIO_DMA_AT_FREEZE	1
#define TEST_VFIO_DMA_AT_KEXEC	2
#define TEST_VFIO_DMA		_IOW('V', 2, struct test_vfio_dma)
/* Corrupt the IOMMU's handover of the kept translation (mode 1 to 5, 0: none). */
#define TEST_VFIO_IOMMU_CORRUPT	_IO('V', 3)

#define EDU_VENDOR		0x1234
#define EDU_DEVICE		0x11e8
#define EDU_ID			0x010000ed
#define EDU_REG_ID		0x00
#define EDU_REG_LIVE		0x04
#define EDU_REG_DMA_SRC		0x80
#define EDU_REG_DMA_DST		0x88
#define EDU_REG_DMA_CNT		0x90
#define EDU_REG_DMA_CMD		0x98
#define EDU_DMA_RUN		0x1
#define EDU_DMA_TO_RAM		0x2
#define EDU_BUF			0x40000
/* QEMU 7.2 aborts on a transfer that ends exactly at the end of the buffer. */
#define EDU_DMA_MAX		4095
/* The edu DMA mask is 28 bits: every IOVA must be below this. */
#define EDU_IOVA_LIMIT		(1ULL << 28)
#define EDU_DMA_TIMEOUT_MS	10000

#define NR_EDU			4
enum { DEV_A, DEV_B, DEV_C, DEV_D };

static const char * const edu_bdf[NR_EDU] = {
	"0000:00:02.0", "0000:00:03.0", "0000:00:04.0", "0000:00:05.0",
};

/* One edu device opened through vfio. */
struct edu {
	const char *bdf;
	int fd;			/* vfio device fd, -1 if none */
	__u32 ioas;		/* the IOAS it is attached to, 0 if none */
	__u64 cfg_off;		/* config region offset in the device fd */
	__u64 bar_off;		/* BAR0 region offset in the device fd */
	__u64 bar_size;
	uint8_t *bar;		/* BAR0 mapping, NULL if none */
};

#define EDU_INIT(i)	{ .bdf = edu_bdf[i], .fd = -1 }

/* ---- case bookkeeping ---- */

static char why[512];

/* Record why the running case fails (appended to earlier reasons); returns 0. */
static __printf(1, 2) int fail(const char *fmt, ...)
{
	size_t n = strlen(why);
	va_list ap;

	if (n && n < sizeof(why) - 3)
		n += snprintf(why + n, sizeof(why) - n, "; ");
	if (n >= sizeof(why) - 1)
		return 0;
	va_start(ap, fmt);
	vsnprintf(why + n, sizeof(why) - n, fmt, ap);
	va_end(ap);
	return 0;
}

/* The name of errno @e ("EBUSY"), or "success" for 0. */
static const char *en(int e)
{
	const char *s;

	if (e < 0)
		e = -e;
	if (!e)
		return "success";
	s = strerrorname_np(e);
	return s ? s : "unknown errno";
}

/*
 * Cases are guarded: a SIGBUS or SIGSEGV while one runs (a BAR whose mapping
 * went away, memory decoding off) fails that case instead of killing the
 * test, so that every later case still prints its line.
 */
static sigjmp_buf case_jmp;
static sig_atomic_t case_armed, case_sig;

static void case_fault(int sig)
{
	if (!__atomic_load_n(&case_armed, __ATOMIC_SEQ_CST)) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	__atomic_store_n(&case_armed, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&case_sig, sig, __ATOMIC_SEQ_CST);
	siglongjmp(case_jmp, 1);
}

static void install_fault_handler(void)
{
	struct sigaction sa = { .sa_handler = case_fault };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
}

struct vcase {
	const char *name;
	int (*fn)(int arg);
	int arg;
};

/* Run one case and print its KTAP line, with the reason when it failed. */
static void run_case(const struct vcase *c)
{
	int ok;

	why[0] = 0;
	if (sigsetjmp(case_jmp, 1)) {
		ok = fail("%s (a BAR0 access?)", strsignal(case_sig));
	} else {
		__atomic_store_n(&case_armed, 1, __ATOMIC_SEQ_CST);
		ok = c->fn(c->arg);
	}
	__atomic_store_n(&case_armed, 0, __ATOMIC_SEQ_CST);
	result(c->name, ok, "%s", why[0] ? why : "failed");
}

static void run_cases(const struct vcase *c, size_t n)
{
	size_t i;

	install_fault_handler();
	printf("1..%zu\n", n);
	fflush(stdout);
	for (i = 0; i < n; i++)
		run_case(&c[i]);
}

static void list_cases(const struct vcase *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		printf("%s\n", c[i].name);
}

/* ---- sysfs ---- */

/* Read a small sysfs file into @buf (NUL-terminated, newline removed). */
static int sysfs_read(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return fail("open %s: %s", path, en(errno));
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return fail("read %s: %s", path, en(errno));
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return 1;
}

static int sysfs_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return fail("open %s: %s", path, en(errno));
	n = write(fd, val, strlen(val));
	close(fd);
	if (n != (ssize_t)strlen(val))
		return fail("write \"%s\" to %s: %s", val, path, n < 0 ? en(errno) : "short");
	return 1;
}

/* The last component of the symlink /sys/bus/pci/devices/BDF/@link, or "". */
static const char *dev_link(const char *bdf, const char *link, char *buf, size_t len)
{
	char path[256], target[256], *base;
	ssize_t n;

	buf[0] = 0;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, link);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return buf;
	target[n] = 0;
	base = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
	if (strlen(base) < len)
		memcpy(buf, base, strlen(base) + 1);
	return buf;
}

/*
 * @bdf's driver_override and driver are @override and @driver ("" for
 * none: the sysfs file shows "(null)" when no override is set).
 */
static int check_binding(const char *bdf, const char *override, const char *driver)
{
	char path[256], ov[64], drv[64];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	if (!sysfs_read(path, ov, sizeof(ov)))
		return 0;
	if (!strcmp(ov, "(null)"))
		ov[0] = 0;
	dev_link(bdf, "driver", drv, sizeof(drv));
	if (strcmp(ov, override) || strcmp(drv, driver))
		return fail("%s: driver_override \"%s\", driver \"%s\"; want \"%s\" and \"%s\"",
			    bdf, ov, drv, override, driver);
	return 1;
}

/* Is @bdf an edu device? */
static int edu_present(const char *bdf)
{
	char path[256], v[32], d[32];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", bdf);
	if (!sysfs_read(path, v, sizeof(v)))
		return fail("%s: no such PCI device", bdf);
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", bdf);
	if (!sysfs_read(path, d, sizeof(d)))
		return 0;
	if (strtoul(v, NULL, 0) != EDU_VENDOR || strtoul(d, NULL, 0) != EDU_DEVICE)
		return fail("%s is %s:%s, not an edu device", bdf, v, d);
	return 1;
}

/* Bind @bdf to vfio-pci (driver_override + drivers_probe), unless it is. */
static int bind_vfio_pci(const char *bdf)
{
	char path[256], drv[64];

	if (!strcmp(dev_link(bdf, "driver", drv, sizeof(drv)), "vfio-pci"))
		return 1;
	if (drv[0]) {
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver/unbind", bdf);
		if (!sysfs_write(path, bdf))
			return 0;
	}
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver_override", bdf);
	if (!sysfs_write(path, "vfio-pci") || !sysfs_write("/sys/bus/pci/drivers_probe", bdf))
		return 0;
	if (strcmp(dev_link(bdf, "driver", drv, sizeof(drv)), "vfio-pci"))
		return fail("%s: not bound to vfio-pci after drivers_probe (driver: %s)", bdf,
			    drv[0] ? drv : "none");
	return 1;
}

/* /dev/vfio/devices/vfioN of @bdf (bound to vfio-pci). */
static int cdev_path(const char *bdf, char *out, size_t len)
{
	char dir[256];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
	d = opendir(dir);
	if (!d)
		return fail("%s: %s", dir, en(errno));
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "vfio", 4))
			break;
	if (de)
		snprintf(out, len, "/dev/vfio/devices/%.32s", de->d_name);
	closedir(d);
	if (!de)
		return fail("%s: no vfioN entry", dir);
	return 1;
}

/* Open @bdf's vfio cdev: the fd, or -errno (the reason recorded if no path). */
static int cdev_open(const char *bdf)
{
	char path[128];
	int fd;

	if (!cdev_path(bdf, path, sizeof(path)))
		return -ENODEV;
	fd = open(path, O_RDWR | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Opening @bdf's cdev must fail with EBUSY (the device belongs to LUO). */
static int cdev_busy(const char *bdf)
{
	int fd = cdev_open(bdf);

	if (fd == -EBUSY)
		return 1;
	if (fd >= 0) {
		close(fd);
		return fail("opening %s's cdev succeeded, want EBUSY", bdf);
	}
	return fail("opening %s's cdev: %s, want EBUSY", bdf, en(fd));
}

/* The IOMMU group number of @bdf, or -1. */
static int iommu_group(const char *bdf)
{
	char grp[32];

	if (!dev_link(bdf, "iommu_group", grp, sizeof(grp))[0])
		return fail("%s has no IOMMU group", bdf) - 1;
	return atoi(grp);
}

/* ---- iommufd ---- */

static int iommufd_open(void)
{
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return fail("open /dev/iommu: %s", en(errno)) - 1;
	return fd;
}

static int ioas_alloc(int iommufd, __u32 *ioas)
{
	struct iommu_ioas_alloc a = { .size = sizeof(a) };

	if (ioctl(iommufd, IOMMU_IOAS_ALLOC, &a))
		return fail("IOMMU_IOAS_ALLOC: %s", en(errno));
	*ioas = a.out_ioas_id;
	return 1;
}

#define MAP_RW	(IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)

static int ioas_map(int iommufd, __u32 ioas, void *va, __u64 len, __u64 iova)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m), .flags = MAP_RW, .ioas_id = ioas,
		.user_va = (uintptr_t)va, .length = len, .iova = iova,
	};

	if (ioctl(iommufd, IOMMU_IOAS_MAP, &m))
		return fail("IOMMU_IOAS_MAP of %llu bytes at IOVA %#llx: %s",
			    (unsigned long long)len, (unsigned long long)iova, en(errno));
	return 1;
}

static int ioas_map_file(int iommufd, __u32 ioas, int fd, __u64 len, __u64 iova)
{
	struct iommu_ioas_map_file m = {
		.size = sizeof(m), .flags = MAP_RW, .ioas_id = ioas, .fd = fd,
		.start = 0, .length = len, .iova = iova,
	};

	if (ioctl(iommufd, IOMMU_IOAS_MAP_FILE, &m))
		return fail("IOMMU_IOAS_MAP_FILE of %llu bytes at IOVA %#llx: %s",
			    (unsigned long long)len, (unsigned long long)iova, en(errno));
	return 1;
}

/* ---- vfio device ---- */

/* BIND_IOMMUFD: -errno, or 0. */
static int vfio_bind_raw(int fd, int iommufd)
{
	struct vfio_device_bind_iommufd b = {
		.argsz = sizeof(b), .flags = 0, .iommufd = iommufd,
	};

	return ioctl(fd, VFIO_DEVICE_BIND_IOMMUFD, &b) ? -errno : 0;
}

/* Attach @e (bound) to @ioas. */
static int edu_attach(struct edu *e, __u32 ioas)
{
	struct vfio_device_attach_iommufd_pt at = { .argsz = sizeof(at), .pt_id = ioas };

	if (ioctl(e->fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at))
		return fail("%s: VFIO_DEVICE_ATTACH_IOMMUFD_PT %u: %s", e->bdf, ioas, en(errno));
	e->ioas = ioas;
	return 1;
}

/*
 * Bind @e (its fd already open) to @iommufd and attach it to @ioas (not if
 * @ioas is 0), then look up its config and BAR0 regions.
 */
static int edu_bind(struct edu *e, int iommufd, __u32 ioas)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri) };
	int r = vfio_bind_raw(e->fd, iommufd);

	if (r)
		return fail("%s: VFIO_DEVICE_BIND_IOMMUFD: %s", e->bdf, en(r));
	if (ioas && !edu_attach(e, ioas))
		return 0;
	ri.index = VFIO_PCI_CONFIG_REGION_INDEX;
	if (ioctl(e->fd, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return fail("%s: GET_REGION_INFO config: %s", e->bdf, en(errno));
	e->cfg_off = ri.offset;
	ri = (struct vfio_region_info){ .argsz = sizeof(ri), .index = VFIO_PCI_BAR0_REGION_INDEX };
	if (ioctl(e->fd, VFIO_DEVICE_GET_REGION_INFO, &ri))
		return fail("%s: GET_REGION_INFO BAR0: %s", e->bdf, en(errno));
	if (!(ri.flags & VFIO_REGION_INFO_FLAG_MMAP) || ri.size < EDU_BUF)
		return fail("%s: BAR0 flags %#x size %#llx: not an mmap-able edu BAR", e->bdf,
			    ri.flags, (unsigned long long)ri.size);
	e->bar_off = ri.offset;
	e->bar_size = ri.size;
	return 1;
}

/* Open @e's cdev, bind it to @iommufd and attach it to @ioas. */
static int edu_open_bind(struct edu *e, int iommufd, __u32 ioas)
{
	e->fd = cdev_open(e->bdf);
	if (e->fd < 0) {
		fail("opening %s's cdev: %s", e->bdf, en(e->fd));
		e->fd = -1;
		return 0;
	}
	return edu_bind(e, iommufd, ioas);
}

static int edu_map_bar(struct edu *e)
{
	void *p;

	if (e->bar)
		return 1;
	p = mmap(NULL, e->bar_size, PROT_READ | PROT_WRITE, MAP_SHARED, e->fd, e->bar_off);
	if (p == MAP_FAILED)
		return fail("%s: mmap of BAR0: %s", e->bdf, en(errno));
	e->bar = p;
	return 1;
}

/* MMIO: one plain access of the given width each (mov on x86), in order. */
static uint32_t rd32(struct edu *e, unsigned int reg)
{
	return __atomic_load_n((uint32_t *)(e->bar + reg), __ATOMIC_ACQUIRE);
}

static void wr32(struct edu *e, unsigned int reg, uint32_t v)
{
	__atomic_store_n((uint32_t *)(e->bar + reg), v, __ATOMIC_RELEASE);
}

static uint64_t rd64(struct edu *e, unsigned int reg)
{
	return __atomic_load_n((uint64_t *)(e->bar + reg), __ATOMIC_ACQUIRE);
}

static void wr64(struct edu *e, unsigned int reg, uint64_t v)
{
	__atomic_store_n((uint64_t *)(e->bar + reg), v, __ATOMIC_RELEASE);
}

/* Set @bits in PCI_COMMAND through the vfio config region. */
static int edu_set_command(struct edu *e, uint16_t bits)
{
	uint16_t cmd;

	if (pread(e->fd, &cmd, sizeof(cmd), e->cfg_off + PCI_COMMAND) != sizeof(cmd))
		return fail("%s: config read of PCI_COMMAND: %s", e->bdf, en(errno));
	if ((cmd & bits) == bits)
		return 1;
	cmd |= bits;
	if (pwrite(e->fd, &cmd, sizeof(cmd), e->cfg_off + PCI_COMMAND) != sizeof(cmd))
		return fail("%s: config write of PCI_COMMAND: %s", e->bdf, en(errno));
	if (pread(e->fd, &cmd, sizeof(cmd), e->cfg_off + PCI_COMMAND) != sizeof(cmd) ||
	    (cmd & bits) != bits)
		return fail("%s: PCI_COMMAND %#x lacks %#x after writing it", e->bdf, cmd, bits);
	return 1;
}

/* BAR0 mapped: the ID register and the liveness register answer. */
static int edu_alive(struct edu *e)
{
	uint32_t id, v = 0x5a0f00d1 ^ (uint32_t)time(NULL), got;

	if (!edu_map_bar(e) || !edu_set_command(e, PCI_COMMAND_MEMORY))
		return 0;
	id = rd32(e, EDU_REG_ID);
	if (id != EDU_ID)
		return fail("%s: ID register %#x, want %#x", e->bdf, id, EDU_ID);
	wr32(e, EDU_REG_LIVE, v);
	got = rd32(e, EDU_REG_LIVE);
	if (got != ~v)
		return fail("%s: liveness register %#x after writing %#x, want %#x", e->bdf,
			    got, v, ~v);
	return 1;
}

/* One edu DMA of @cnt bytes; @to_ram: device buffer -> RAM, else RAM -> buffer. */
static int edu_dma(struct edu *e, __u64 src, __u64 dst, __u64 cnt, int to_ram)
{
	struct timespec t = { 0, 5 * 1000 * 1000 };
	int ms;

	wr64(e, EDU_REG_DMA_SRC, src);
	wr64(e, EDU_REG_DMA_DST, dst);
	wr64(e, EDU_REG_DMA_CNT, cnt);
	wr64(e, EDU_REG_DMA_CMD, EDU_DMA_RUN | (to_ram ? EDU_DMA_TO_RAM : 0));
	for (ms = 0; rd64(e, EDU_REG_DMA_CMD) & EDU_DMA_RUN; ms += 5) {
		if (ms >= EDU_DMA_TIMEOUT_MS)
			return fail("%s: DMA %#llx -> %#llx (%llu bytes) still running after %d ms",
				    e->bdf, (unsigned long long)src, (unsigned long long)dst,
				    (unsigned long long)cnt, ms);
		nanosleep(&t, NULL);
	}
	__sync_synchronize();
	return 1;
}

/*
 * Copy @cnt bytes from IOVA @from to IOVA @to through the device: RAM ->
 * device buffer, then device buffer -> RAM. Bus mastering is enabled first.
 */
static int edu_dma_round_trip(struct edu *e, __u64 from, __u64 to, __u64 cnt)
{
	if (cnt > EDU_DMA_MAX || from + cnt > EDU_IOVA_LIMIT || to + cnt > EDU_IOVA_LIMIT)
		return fail("bad DMA parameters");
	if (!edu_map_bar(e) || !edu_set_command(e, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
		return 0;
	return edu_dma(e, from, EDU_BUF, cnt, 0) && edu_dma(e, EDU_BUF, to, cnt, 1);
}

/*
 * The strings of the running kernel's "LUO" note of type 1 (the handover
 * formats it accepts, kernel/liveupdate/luo_formats.c) into @out, each
 * NUL-terminated; their total length, or 0 (the reason recorded).
 */
static size_t luo_formats(char *out, size_t len)
{
	static uint8_t notes[16384];
	size_t n = 0, off = 0, got = 0;
	int fd = open("/sys/kernel/notes", O_RDONLY | O_CLOEXEC);
	ssize_t r;

	if (fd < 0)
		return fail("open /sys/kernel/notes: %s", en(errno));
	while ((r = read(fd, notes + n, sizeof(notes) - n)) > 0)
		n += r;
	close(fd);
	while (off + 12 <= n) {
		uint32_t namesz, descsz, type;
		size_t name, desc;

		memcpy(&namesz, notes + off, 4);
		memcpy(&descsz, notes + off + 4, 4);
		memcpy(&type, notes + off + 8, 4);
		name = off + 12;
		desc = name + ((namesz + 3) & ~3U);
		if (desc > n || descsz > n - desc)
			break;
		off = desc + ((descsz + 3) & ~3U);
		if (namesz != 4 || memcmp(notes + name, "LUO", 4) || type != 1 || descsz < 4)
			continue;
		/* u32 version 1, then the strings. */
		if (notes[desc] != 1)
			return fail("the LUO note has version %u, want 1", notes[desc]);
		got = descsz - 4 < len ? descsz - 4 : len;
		memcpy(out, notes + desc + 4, got);
		if (got)
			out[got - 1] = 0;
		return got ? got : fail("the LUO note is empty");
	}
	return fail("no LUO note of type 1 in /sys/kernel/notes");
}

/* Is @compat one of the @len bytes of NUL-terminated strings at @t? */
static int format_listed(const char *t, size_t len, const char *compat)
{
	size_t i = 0;

	while (i < len) {
		if (!strcmp(t + i, compat))
			return 1;
		i += strlen(t + i) + 1;
	}
	return 0;
}

static int vfio_device_info(int fd, struct vfio_device_info *info)
{
	*info = (struct vfio_device_info){ .argsz = sizeof(*info) };
	return ioctl(fd, VFIO_DEVICE_GET_INFO, info) ? -errno : 0;
}

/* ---- LUO ---- */

static int preserve(int sfd, int fd, __u64 token, const char *what)
{
	int r;

	if (sfd < 0)
		return fail("no session for %s (%s)", what, en(sfd));
	if (fd < 0)
		return fail("no fd for %s", what);
	r = luo_session_preserve_fd(sfd, fd, token);
	if (r)
		return fail("PRESERVE_FD of %s (token %llu): %s", what,
			    (unsigned long long)token, en(r));
	return 1;
}

/* PRESERVE_FD of @fd must be refused with ENOENT (no handler takes it). */
static int preserve_refused(int sfd, int fd, __u64 token, const char *what)
{
	int r;

	if (sfd < 0)
		return fail("no session to try %s with (%s)", what, en(sfd));
	if (fd < 0)
		return fail("no fd for %s", what);
	r = luo_session_preserve_fd(sfd, fd, token);
	if (r != -ENOENT)
		return fail("PRESERVE_FD of %s: %s, want ENOENT", what, en(r));
	return 1;
}

#endif /* LUO_RS_VFIO_H */
