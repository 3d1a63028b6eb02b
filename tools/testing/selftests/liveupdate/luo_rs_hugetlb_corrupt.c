// SPDX-License-Identifier: GPL-2.0-only
/*
 * Hostile hugetlbfs memfd handovers ("hugetlb-memfd-rs-v1"), refused by the
 * next kernel's Rust memfd handler: the corruption modes of its test file
 * (debugfs liveupdate/test_memfd, CONFIG_LIVEUPDATE_RUST_TEST, see mod test of
 * mm/memfd_luo_rs.rs) that apply to a hugetlbfs memfd, the generic ones (a
 * pfn of no preserved folio, an index beyond the size, nr_folios beyond the
 * folio array, unknown folio flags, unknown header flags, unknown seals, a
 * folio-array descriptor naming no preserved page, indices out of order) and
 * the hugetlb ones (a page size no kernel has, the other huge page size, a
 * pfn inside a huge page, the reserved word set, an entry not uptodate).
 * Both kernels boot with hugepagesz=2M hugepages=4 hugepagesz=1G (the 1 GiB
 * hstate, without pages, is what mode 11 needs).
 *
 *   -s 1  - pool_setup: the 2 MiB pool grown to 32 pages at run time;
 *         - armed_MODE: per mode, a 6 MiB (3 page) 2 MiB hugetlbfs memfd,
 *           pages 0 and 2 written (two folios, a hole between), preserved
 *           as token MODE of session "huge-corrupt" and armed with MODE;
 *         - sound_file_preserved: a file like them, of known contents,
 *           token 100, not armed.
 *   -s 2  - pool_before_retrieve: the pools are what the command line made;
 *         - refused_MODE: RETRIEVE_FD of token MODE fails with the errno the
 *           handler gives that corruption, and again on a second try;
 *         - sound_file_intact: token 100 comes back byte for byte, its hole
 *           a hole (st_blocks);
 *         - finish_succeeds: FINISH of the session;
 *         - pool_after_close: the sound file closed, both pools are what
 *           the command line made (no page of a refused file in them, none
 *           reserved, no surplus);
 *         - kernel_healthy: a new hugetlbfs memfd is written, preserved and
 *           unpreserved again, reads back, and its page returns to the pool.
 *
 * KTAP per check; --list prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libliveupdate.h>
#include <linux/memfd.h>

#include "luo_rs_ktap.h"
#include "luo_rs_sysfs.h"

#define SESSION		"huge-corrupt"
#define AFTER_SESSION	"huge-corrupt-after"
#define MEMFD_TEST_DEV	"/sys/kernel/debug/liveupdate/test_memfd"
#define MEMFD_CORRUPT	_IO('M', 1)
#define SZ_2M		(2UL << 20)
#define NR_PAGES	3	/* per file; pages 0 and 2 written */
#define NR_WRITTEN	2
#define BOOT_2M		4
#define POOL_2M		32
#define SOUND_TOKEN	100
#define SOUND_SEED	0x3c
#define H2M		"/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define H1G		"/sys/kernel/mm/hugepages/hugepages-1048576kB/"

/* One corrupt file: its mode (also its token) and the errno RETRIEVE_FD gives. */
struct mode {
	int mode;
	int want;
	const char *armed;
	const char *refused;
};

#define MODE(n, name, err) { n, err, "s1_armed_" name, "s2_refused_" name }

/* Where the next kernel's retrieve refuses each (mm/memfd_luo_rs.rs). */
static const struct mode modes[] = {
	MODE(1, "bad_pfn", EINVAL),			/* IncomingFolio::restore_handover */
	MODE(2, "index_beyond_size", EINVAL),		/* abi::check_folios */
	MODE(3, "nr_folios_beyond_array", EINVAL),	/* MemfdSer::validate */
	MODE(4, "unknown_folio_flags", EINVAL),		/* abi::check_folios */
	MODE(5, "unknown_header_flags", EINVAL),	/* MemfdSer::validate */
	MODE(6, "unknown_seals", EOPNOTSUPP),		/* MemfdSer::validate */
	MODE(7, "bad_array_address", EINVAL),		/* HandoverArray::restore */
	MODE(8, "unsorted_indices", EINVAL),		/* abi::check_folios */
	MODE(10, "unsupported_page_size", EOPNOTSUPP),	/* MemfdSer::validate: no hstate */
	MODE(11, "other_page_size", EINVAL),		/* NewMemfd::insert_folio: order */
	MODE(12, "pfn_inside_huge_page", EINVAL),	/* IncomingFolio::restore_handover */
	MODE(13, "reserved_set", EINVAL),		/* MemfdSer::read */
	MODE(14, "entry_not_uptodate", EINVAL),		/* NewMemfd::insert_folio */
};

#define NR_MODES	ARRAY_SIZE(modes)

/* The case names, in the order they run (build_cases()). */
static const char *cases[2 * NR_MODES + 7];
static size_t nr_cases;

static void build_cases(void)
{
	size_t i;

	cases[nr_cases++] = "s1_pool_setup";
	for (i = 0; i < NR_MODES; i++)
		cases[nr_cases++] = modes[i].armed;
	cases[nr_cases++] = "s1_sound_file_preserved";
	cases[nr_cases++] = "s2_pool_before_retrieve";
	for (i = 0; i < NR_MODES; i++)
		cases[nr_cases++] = modes[i].refused;
	cases[nr_cases++] = "s2_sound_file_intact";
	cases[nr_cases++] = "s2_finish_succeeds";
	cases[nr_cases++] = "s2_pool_after_close";
	cases[nr_cases++] = "s2_kernel_healthy";
}

/* Is huge page @i of a file written (pages 0 and 2, a hole between)? */
static int written(int i)
{
	return i != 1;
}

/* The byte at @off of a file written with @seed (0 in a hole). */
static unsigned char pattern(unsigned int seed, unsigned long off)
{
	if (!written(off / SZ_2M))
		return 0;
	return (off * 131 + (off >> 12) * 7 + seed) & 0xff;
}

/* Are a pool's counters (nr_hugepages, free, resv, surplus) these? */
static int pool_is(const char *dir, long nr, long free, long resv, long surplus, char *why,
		   size_t len)
{
	long p_nr = sysfs_num(dir, "nr_hugepages"), p_free = sysfs_num(dir, "free_hugepages");
	long p_resv = sysfs_num(dir, "resv_hugepages");
	long p_surplus = sysfs_num(dir, "surplus_hugepages");

	snprintf(why, len, "%s: nr %ld free %ld resv %ld surplus %ld, want %ld %ld %ld %ld",
		 dir, p_nr, p_free, p_resv, p_surplus, nr, free, resv, surplus);
	return p_nr == nr && p_free == free && p_resv == resv && p_surplus == surplus;
}

/* Both pools as the command line made them: BOOT_2M free 2 MiB pages, no 1 GiB page. */
static int pools_at_boot(char *why, size_t len)
{
	char w2[160], w1[160];
	int ok2 = pool_is(H2M, BOOT_2M, BOOT_2M, 0, 0, w2, sizeof(w2));
	int ok1 = pool_is(H1G, 0, 0, 0, 0, w1, sizeof(w1));

	snprintf(why, len, "%s; %s", w2, w1);
	return ok2 && ok1;
}

/*
 * A 2 MiB hugetlbfs memfd of @nr pages, the pages written() filled: with
 * @seed's pattern(), or with @seed's bytes if @fast (a file whose contents
 * are never read back; a byte loop over 4 MiB is slow in an emulated VM).
 * fallocate() takes each page from the pool first (ENOSPC, not SIGBUS, if it
 * is empty), then a mapping without a reservation writes it. The fd, or
 * -errno.
 */
static int huge_file(const char *name, int nr, unsigned int seed, int fast)
{
	int fd = memfd_create(name, MFD_HUGETLB | MFD_HUGE_2MB | MFD_ALLOW_SEALING | MFD_CLOEXEC);
	unsigned char *p;
	int e;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, nr * SZ_2M))
		goto fail;
	for (int i = 0; i < nr; i++)
		if (written(i) && fallocate(fd, 0, i * SZ_2M, SZ_2M))
			goto fail;
	p = mmap(NULL, nr * SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	for (int i = 0; i < nr; i++) {
		if (!written(i))
			continue;
		if (fast) {
			memset(p + i * SZ_2M, seed, SZ_2M);
			continue;
		}
		for (unsigned long off = i * SZ_2M; off < (i + 1) * SZ_2M; off++)
			p[off] = pattern(seed, off);
	}
	munmap(p, nr * SZ_2M);
	return fd;
fail:
	e = -errno;
	close(fd);
	return e;
}

/* ---- stage 1 ---- */

static int luo_fd = -1, session = -1;

static void s1_pool_setup(void)
{
	int r = sysfs_set(H2M, "nr_hugepages", POOL_2M);
	char why[160];
	int ok = !r && pool_is(H2M, POOL_2M, POOL_2M, 0, 0, why, sizeof(why));

	result("s1_pool_setup", ok, "growing the pool: %s; %s", res(r), why);
}

/* A file preserved as token @m->mode, then armed with that corruption mode. */
static void s1_armed(int dev, const struct mode *m)
{
	int fd = huge_file(m->armed, NR_PAGES, m->mode, 1);
	int r = fd >= 0 ? luo_session_preserve_fd(session, fd, m->mode) : fd, ok = 0;
	char why[160];

	if (fd < 0)
		snprintf(why, sizeof(why), "memfd: %s", res(fd));
	else if (r)
		snprintf(why, sizeof(why), "PRESERVE_FD: %s", res(r));
	else if (dev < 0)
		snprintf(why, sizeof(why), "cannot open %s", MEMFD_TEST_DEV);
	else if (ioctl(dev, MEMFD_CORRUPT, (unsigned long)fd << 8 | m->mode))
		snprintf(why, sizeof(why), "arming mode %d: %s", m->mode, strerror(errno));
	else
		ok = 1;
	/* LUO holds the file until the kexec. */
	if (fd >= 0)
		close(fd);
	result(m->armed, ok, "%s", why);
}

static void s1_sound_file_preserved(void)
{
	int fd = huge_file("sound", NR_PAGES, SOUND_SEED, 0), r = -1;

	if (fd >= 0) {
		r = luo_session_preserve_fd(session, fd, SOUND_TOKEN);
		close(fd);
	}
	result("s1_sound_file_preserved", fd >= 0 && !r, "memfd %s, preserve %s", res(fd), res(r));
}

static void stage_1(void)
{
	int dev;

	printf("1..%zu\n", NR_MODES + 2);
	luo_fd = luo_open_device();
	session = luo_fd >= 0 ? luo_create_session(luo_fd, SESSION) : -1;
	if (session < 0) {
		printf("Bail out! /dev/liveupdate or session %s: %s\n", SESSION, strerror(errno));
		exit(1);
	}
	dev = open(MEMFD_TEST_DEV, O_RDWR | O_CLOEXEC);
	s1_pool_setup();
	for (size_t i = 0; i < NR_MODES; i++)
		s1_armed(dev, &modes[i]);
	s1_sound_file_preserved();
	if (dev >= 0)
		close(dev);
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

/* ---- stage 2 ---- */

static int sound = -1;

static void s2_pool_before_retrieve(void)
{
	char why[360];

	result("s2_pool_before_retrieve", pools_at_boot(why, sizeof(why)), "%s", why);
}

static void s2_refused(const struct mode *m)
{
	int r1 = luo_session_retrieve_fd(session, m->mode), r2 = -1;

	if (r1 >= 0)
		close(r1);
	else
		r2 = luo_session_retrieve_fd(session, m->mode);
	if (r2 >= 0)
		close(r2);
	result(m->refused, r1 == -m->want && r2 == -m->want,
	       "RETRIEVE_FD of token %d: %s, then %s; want %s twice", m->mode, res(r1),
	       r1 >= 0 ? "not tried" : res(r2), strerrorname_np(m->want));
}

static void s2_sound_file_intact(void)
{
	static unsigned char buf[SZ_2M];
	long bad = -1;
	struct stat st;

	sound = luo_session_retrieve_fd(session, SOUND_TOKEN);
	if (sound < 0) {
		result("s2_sound_file_intact", 0, "RETRIEVE_FD: %s", res(sound));
		return;
	}
	if (fstat(sound, &st))
		st.st_size = st.st_blocks = -1;
	/* pread() reads a hole as zeroes without allocating a page (a mapping would). */
	for (int i = 0; i < NR_PAGES && bad < 0; i++) {
		if (pread(sound, buf, SZ_2M, i * SZ_2M) != (ssize_t)SZ_2M) {
			bad = i * SZ_2M;
			break;
		}
		for (unsigned long b = 0; b < SZ_2M; b++)
			if (buf[b] != pattern(SOUND_SEED, i * SZ_2M + b)) {
				bad = i * SZ_2M + b;
				break;
			}
	}
	result("s2_sound_file_intact",
	       bad < 0 && st.st_size == (off_t)(NR_PAGES * SZ_2M) &&
	       st.st_blocks == (blkcnt_t)(NR_WRITTEN * SZ_2M / 512),
	       "first bad byte %ld, size %lld, st_blocks %lld (want %lu)", bad,
	       (long long)st.st_size, (long long)st.st_blocks, NR_WRITTEN * SZ_2M / 512);
}

static void s2_finish_succeeds(void)
{
	int r = luo_session_finish(session);

	result("s2_finish_succeeds", !r, "FINISH: %s", res(r));
}

static void s2_pool_after_close(void)
{
	char why[360];

	if (sound >= 0)
		close(sound);
	result("s2_pool_after_close", pools_at_boot(why, sizeof(why)), "%s", why);
}

/*
 * The handler and hugetlb still work: a new file takes a page from the pool,
 * is preserved and unpreserved (its session closed), reads back, and gives
 * the page back when closed.
 */
static void s2_kernel_healthy(void)
{
	int s = luo_create_session(luo_fd, AFTER_SESSION);
	int fd = huge_file("after", 1, 0x77, 1), r = -1;
	unsigned char got[64], want[64];
	int same = 0;
	char why[360] = "";

	memset(want, 0x77, sizeof(want));
	if (s >= 0 && fd >= 0) {
		r = luo_session_preserve_fd(s, fd, 1);
		close(s);
		same = pread(fd, got, sizeof(got), SZ_2M - sizeof(got)) == sizeof(got) &&
		       !memcmp(got, want, sizeof(want));
	} else if (s >= 0) {
		close(s);
	}
	if (fd >= 0)
		close(fd);
	result("s2_kernel_healthy", !r && same && pools_at_boot(why, sizeof(why)),
	       "session %s: %s, memfd %s, preserve %s, reads back %d, %s", AFTER_SESSION,
	       res(s), res(fd), res(r), same, why);
}

static void stage_2(void)
{
	printf("1..%zu\n", NR_MODES + 5);
	s2_pool_before_retrieve();
	luo_fd = luo_open_device();
	session = luo_fd >= 0 ? luo_retrieve_session(luo_fd, SESSION) : -1;
	if (session < 0) {
		printf("Bail out! /dev/liveupdate or session %s: %s\n", SESSION, strerror(errno));
		exit(1);
	}
	for (size_t i = 0; i < NR_MODES; i++)
		s2_refused(&modes[i]);
	s2_sound_file_intact();
	s2_finish_succeeds();
	s2_pool_after_close();
	s2_kernel_healthy();
	ktap_exit();
}

int main(int argc, char *argv[])
{
	build_cases();
	return ktap_stages_main(argc, argv, cases, nr_cases, stage_1, stage_2);
}
