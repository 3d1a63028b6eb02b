// SPDX-License-Identifier: GPL-2.0-only
/*
 * hugetlbfs memfds (memfd_create(MFD_HUGETLB)) across a kexec, with the Rust
 * memfd handler's "hugetlb-memfd-rs-v1" format (Documentation/core-api/
 * liveupdate-memfd-rust.rst, "hugetlbfs memfds"). Both kernels boot with
 * hugepagesz=2M hugepages=4 hugepagesz=1G hugepages=1.
 *
 *   -s 1  - pool_setup: the 2 MiB pool grown to 16 pages at run time;
 *         - 2m_file_preserved: a 24 MiB (12 page) file, pages 0-9 written
 *           but 3 and 7 (8 pages, four holes), F_SEAL_GROW | F_SEAL_SHRINK,
 *           position 4096, preserved as token 1 of session "huge";
 *         - frozen_file_cannot_grow: a writable mmap() past its end, which
 *           would grow the preserved file, fails with EPERM (the handover
 *           carries the size of PRESERVE_FD);
 *         - 1g_file_preserved: a 1 GiB file, its page (the boot pool's)
 *           written at every 2 MiB, token 2;
 *         - unretrieved_file_preserved: a 2 MiB file of 2 pages, token 3,
 *           which the next kernel finishes without retrieving it;
 *         - preserve_takes_no_page: preserving allocated no huge page (holes
 *           stay holes) and took no reservation;
 *         - unpreserve_returns_pages: a file preserved in another session,
 *           that session closed (unpreserved) and the file closed: its pages
 *           are back in the pool, and it was usable in between;
 *         - thp_file_preserved: a shmem memfd (not hugetlbfs) of two 2 MiB
 *           THP folios (shmem_enabled "always" while it is written), token 4;
 *         - racing_writer_armed: a 128 MiB file of holes (token 5) and a
 *           shmem log (token 6); once stage 1 exits, a child fills hole
 *           after hole through a mapping, 5 ms apart, and logs each page
 *           it finished, until a fault gets SIGBUS (the handler took its
 *           last look) or the CPUs stop for the jump.
 *   -s 2  - pool_before_retrieve: the next kernel's pools are what its
 *           command line asked for (4 and 1 pages, all free): the preserved
 *           pages are not counted, nor handed out;
 *         - 2m_retrieved: size, seals, position, every byte of the 8 pages,
 *           holes read as zeroes, and st_blocks counts 8 pages (holes stayed
 *           holes); the file is bigger than the next kernel's free pool;
 *         - 2m_counted_as_surplus: while the file holds them, its 8 pages are
 *           surplus pages (HugePages_Total 12, Surp 8, Free 4, Rsvd 0);
 *         - 2m_writable: a shared mapping writes a page and fills a hole
 *           (that one from the pool);
 *         - 2m_holes_reserved_by_mmap: a mapping with reservations (no
 *           MAP_NORESERVE), as a VMM maps guest RAM, reserves exactly the 3
 *           holes left (HugePages_Rsvd 3), none for the restored pages; the
 *           reservations go when the file is closed (close_returns_pages);
 *         - 1g_retrieved: the 1 GiB page, every sample, counted as surplus;
 *         - thp_restored_as_thp: the shmem memfd's folios are THPs again
 *           (/proc/kpageflags: KPF_THP, a compound head every 2 MiB), every
 *           byte intact;
 *         - racing_writes_kept: every page the racing writer logged as
 *           written is there, every byte; the pages after the one it was
 *           writing are holes; it raced (did not finish before the jump);
 *         - finish_frees_unretrieved: FINISH of "huge" with token 3 never
 *           retrieved gives its 4 MiB back to the page allocator;
 *         - close_returns_pages: once the files are closed, the pools are as
 *           the command line made them (surplus 0, the hole's page free).
 *
 * KTAP per check; --list prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libliveupdate.h>
#include <linux/memfd.h>

#include "luo_rs_ktap.h"
#include "luo_rs_sysfs.h"

#define SESSION		"huge"
#define TMP_SESSION	"huge-tmp"
#define SZ_2M		(2UL << 20)
#define SZ_1G		(1UL << 30)
#define NR_2M		12
#define POOL_2M		16
#define BOOT_2M		4
#define POS		4096
#define SEALS		(F_SEAL_GROW | F_SEAL_SHRINK)
#define H2M		"/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define H1G		"/sys/kernel/mm/hugepages/hugepages-1048576kB/"
#define THP_CTL		"/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define NR_THP		2
#define RACE_2M		64
#define KPF_COMPOUND_HEAD	15
#define KPF_THP		22

static const char * const cases[] = {
	"s1_pool_setup",
	"s1_2m_file_preserved",
	"s1_frozen_file_cannot_grow",
	"s1_1g_file_preserved",
	"s1_unretrieved_file_preserved",
	"s1_preserve_takes_no_page",
	"s1_unpreserve_returns_pages",
	"s1_thp_file_preserved",
	"s1_racing_writer_armed",
	"s2_pool_before_retrieve",
	"s2_2m_retrieved",
	"s2_2m_counted_as_surplus",
	"s2_2m_writable",
	"s2_2m_holes_reserved_by_mmap",
	"s2_1g_retrieved",
	"s2_thp_restored_as_thp",
	"s2_racing_writes_kept",
	"s2_finish_frees_unretrieved",
	"s2_close_returns_pages",
};

/* Pages 0-9 of the 2 MiB file are written, but 3 and 7. */
static int written_2m(int i)
{
	return i < 10 && i != 3 && i != 7;
}

static unsigned char fill_2m(int i)
{
	return 0x40 + i;
}

/* The sample written at byte @off of the 1 GiB file. */
static unsigned long sample_1g(unsigned long off)
{
	return off ^ 0x6c756f2d68756765UL;
}

/* A pool's counters: nr_hugepages (persistent), free, resv, surplus. */
struct pool {
	long nr, free, resv, surplus;
};

static struct pool pool(const char *dir)
{
	return (struct pool){
		sysfs_num(dir, "nr_hugepages"), sysfs_num(dir, "free_hugepages"),
		sysfs_num(dir, "resv_hugepages"), sysfs_num(dir, "surplus_hugepages"),
	};
}

static int pool_is(const char *dir, long nr, long free, long resv, long surplus, char *why,
		   size_t len)
{
	struct pool p = pool(dir);

	snprintf(why, len, "%s: nr %ld free %ld resv %ld surplus %ld, want %ld %ld %ld %ld",
		 dir, p.nr, p.free, p.resv, p.surplus, nr, free, resv, surplus);
	return p.nr == nr && p.free == free && p.resv == resv && p.surplus == surplus;
}

/*
 * Free memory in kB: MemFree of /proc/meminfo plus the pages on the per-CPU
 * free lists (the "count" of each pageset in /proc/zoneinfo), where a freed
 * 2 MiB folio may wait without being counted in MemFree (-1 if unreadable).
 */
static long mem_free_kb(void)
{
	char line[128];
	long v = meminfo_kib("MemFree"), pcp = 0, n;
	FILE *f = fopen("/proc/zoneinfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, " count: %ld", &n) == 1)
			pcp += n;
	fclose(f);
	return v < 0 ? -1 : v + pcp * (getpagesize() >> 10);
}

static int huge_memfd(const char *name, unsigned int size_flag, unsigned long size)
{
	int fd = memfd_create(name, MFD_HUGETLB | size_flag | MFD_ALLOW_SEALING | MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size)) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

/* Maps @fd shared without a reservation: a fault on a hole takes a free page. */
static void *map(int fd, unsigned long size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* ---- stage 1 ---- */

static int luo_fd = -1, session = -1, kept2m = -1;

static void s1_pool_setup(void)
{
	int r = sysfs_set(H2M, "nr_hugepages", POOL_2M);
	char why[160];
	int ok = !r && pool_is(H2M, POOL_2M, POOL_2M, 0, 0, why, sizeof(why));

	result("s1_pool_setup", ok, "growing the pool: %s; %s", res(r), why);
}

static void s1_2m_file_preserved(void)
{
	int fd = huge_memfd("h2m", MFD_HUGE_2MB, NR_2M * SZ_2M), r = -1;
	unsigned char *p = fd >= 0 ? map(fd, NR_2M * SZ_2M) : NULL;
	char why[96] = "";

	if (p) {
		for (int i = 0; i < NR_2M; i++)
			if (written_2m(i))
				memset(p + i * SZ_2M, fill_2m(i), SZ_2M);
		munmap(p, NR_2M * SZ_2M);
		if (fcntl(fd, F_ADD_SEALS, SEALS) || lseek(fd, POS, SEEK_SET) != POS)
			snprintf(why, sizeof(why), "seals or lseek: %s", strerror(errno));
		else
			r = luo_session_preserve_fd(session, fd, 1);
		kept2m = fd;
	} else {
		snprintf(why, sizeof(why), "memfd %s, mmap %s", res(fd), strerror(errno));
	}
	result("s1_2m_file_preserved", !r, "%s preserve %s", why, res(r));
	/* The fd stays open until the kexec. */
}

static void s1_frozen_file_cannot_grow(void)
{
	void *p = kept2m >= 0 ? mmap(NULL, (NR_2M + 1) * SZ_2M, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_NORESERVE, kept2m, 0) : MAP_FAILED;
	int e = p == MAP_FAILED ? errno : 0;
	struct stat st;

	if (p != MAP_FAILED)
		munmap(p, (NR_2M + 1) * SZ_2M);
	if (kept2m < 0 || fstat(kept2m, &st))
		st.st_size = -1;
	result("s1_frozen_file_cannot_grow", e == EPERM && st.st_size == (off_t)(NR_2M * SZ_2M),
	       "mmap past the end: %s (want EPERM), size %lld", e ? strerrorname_np(e) : "mapped",
	       (long long)st.st_size);
}

static void s1_1g_file_preserved(void)
{
	int fd = huge_memfd("h1g", MFD_HUGE_1GB, SZ_1G), r = -1;
	unsigned char *p = fd >= 0 ? map(fd, SZ_1G) : NULL;

	if (p) {
		for (unsigned long off = 0; off < SZ_1G; off += SZ_2M)
			*(unsigned long *)(p + off) = sample_1g(off);
		munmap(p, SZ_1G);
		r = luo_session_preserve_fd(session, fd, 2);
	}
	result("s1_1g_file_preserved", !r, "memfd %s, mmap %s, preserve %s", res(fd),
	       p ? "ok" : strerror(errno), res(r));
}

static void s1_unretrieved_file_preserved(void)
{
	int fd = huge_memfd("h2m-fin", MFD_HUGE_2MB, 2 * SZ_2M), r = -1;
	unsigned char *p = fd >= 0 ? map(fd, 2 * SZ_2M) : NULL;

	if (p) {
		memset(p, 0x5a, 2 * SZ_2M);
		munmap(p, 2 * SZ_2M);
		r = luo_session_preserve_fd(session, fd, 3);
	}
	result("s1_unretrieved_file_preserved", !r, "memfd %s, preserve %s", res(fd), res(r));
}

static void s1_preserve_takes_no_page(void)
{
	char why[160];
	/* 8 + 2 pages written from the pool of 16; the 1 GiB page from the boot pool. */
	int ok = pool_is(H2M, POOL_2M, POOL_2M - 10, 0, 0, why, sizeof(why));
	char why1[160];
	int ok1 = pool_is(H1G, 1, 0, 0, 0, why1, sizeof(why1));

	result("s1_preserve_takes_no_page", ok && ok1, "%s; %s", why, why1);
}

static void s1_unpreserve_returns_pages(void)
{
	int s = luo_create_session(luo_fd, TMP_SESSION);
	int fd = huge_memfd("h2m-tmp", MFD_HUGE_2MB, 2 * SZ_2M), r = -1, w = 0;
	unsigned char *p = fd >= 0 ? map(fd, 2 * SZ_2M) : NULL;
	char why[160];

	if (p && s >= 0) {
		memset(p, 0x11, SZ_2M);
		r = luo_session_preserve_fd(s, fd, 1);
		close(s);
		s = -1;
		/* Unpreserved: the file works as before, holes included. */
		memset(p + SZ_2M, 0x22, SZ_2M);
		w = p[0] == 0x11 && p[SZ_2M] == 0x22;
		munmap(p, 2 * SZ_2M);
	}
	if (s >= 0)
		close(s);
	if (fd >= 0)
		close(fd);
	result("s1_unpreserve_returns_pages",
	       !r && w && pool_is(H2M, POOL_2M, POOL_2M - 10, 0, 0, why, sizeof(why)),
	       "preserve %s, usable after unpreserve %d, %s", res(r), w, why);
}

static int thp_set(const char *mode)
{
	int fd = open(THP_CTL, O_WRONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = write(fd, mode, strlen(mode)) == (ssize_t)strlen(mode) ? 0 : -errno;
	close(fd);
	return r;
}

static unsigned char fill_thp(unsigned long off)
{
	return 0x90 + off / 4096 % 61;
}

static void s1_thp_file_preserved(void)
{
	long before = meminfo_kib("ShmemHugePages"), after = -1;
	int on = thp_set("always"), fd = -1, r = -1;
	unsigned char *p = NULL;

	if (!on) {
		fd = memfd_create("thp", MFD_CLOEXEC);
		if (fd >= 0 && !ftruncate(fd, NR_THP * SZ_2M))
			p = map(fd, NR_THP * SZ_2M);
	}
	if (p) {
		for (unsigned long off = 0; off < NR_THP * SZ_2M; off++)
			p[off] = fill_thp(off);
		munmap(p, NR_THP * SZ_2M);
		after = meminfo_kib("ShmemHugePages");
		r = luo_session_preserve_fd(session, fd, 4);
		/* Pinning may migrate a folio out of KHO's scratch: still whole? */
		if (meminfo_kib("ShmemHugePages") != after)
			after = -1;
	}
	thp_set("never");
	result("s1_thp_file_preserved",
	       !on && !r && after - before == (long)(NR_THP * SZ_2M >> 10),
	       "shmem_enabled %s, ShmemHugePages %ld -> %ld kB (want %lu more), preserve %s",
	       res(on), before, after, NR_THP * SZ_2M >> 10, res(r));
	/* The fd stays open until the kexec. */
}

static unsigned char fill_race(unsigned long page)
{
	return 0x21 + page % 200;
}

/* The racing writer's log, a page of a preserved shmem memfd. */
struct race_log {
	uint64_t done;		/* pages 0..done-1 were written, every byte */
	uint64_t sigbus;	/* 1 + the page whose fault got SIGBUS, or 0 */
};

static sigjmp_buf race_jmp;

static void race_sigbus(int sig)
{
	siglongjmp(race_jmp, 1);
}

static void s1_racing_writer_armed(void)
{
	/*
	 * Twice the file: a page the writer takes from KHO's scratch (CMA) must
	 * move to a free huge page outside it when freeze pins it, or the
	 * reboot fails with ENOMEM (seen with no spare pages).
	 */
	int grow = sysfs_set(H2M, "nr_hugepages", POOL_2M + 2 * RACE_2M);
	int fd = huge_memfd("race", MFD_HUGE_2MB, RACE_2M * SZ_2M), r = -1;
	int log = memfd_create("race-log", MFD_CLOEXEC);
	static unsigned char zero[4096];
	pid_t parent = getpid(), pid = -1;

	if (!grow && fd >= 0 && log >= 0 && pwrite(log, zero, sizeof(zero), 0) == sizeof(zero))
		r = luo_session_preserve_fd(session, fd, 5) ?:
		    luo_session_preserve_fd(session, log, 6);
	if (!r)
		pid = fork();
	if (pid == 0) {
		unsigned char *p = map(fd, RACE_2M * SZ_2M);
		struct race_log *l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, log, 0);
		/* Not changed between sigsetjmp() and the siglongjmp() to it. */
		unsigned long k;

		if (!p || l == MAP_FAILED)
			_exit(1);
		signal(SIGBUS, race_sigbus);
		/* Stage 1 exits after its last case; then init kexecs. */
		while (getppid() == parent)
			usleep(1000);
		for (k = 0; k < RACE_2M; k++) {
			if (sigsetjmp(race_jmp, 1)) {
				__atomic_store_n(&l->sigbus, k + 1, __ATOMIC_RELEASE);
				break;
			}
			memset(p + k * SZ_2M, fill_race(k), SZ_2M);
			__atomic_store_n(&l->done, k + 1, __ATOMIC_RELEASE);
			usleep(5000);
		}
		for (;;)
			pause();
	}
	result("s1_racing_writer_armed", !r && pid > 0,
	       "pool to %d: %s, memfd %s, log %s, preserve %s, fork %d", POOL_2M + 2 * RACE_2M,
	       res(grow), res(fd), res(log), res(r), pid);
	/* fd and log stay open until the kexec. */
}

static void stage_1(void)
{
	printf("1..9\n");
	luo_fd = luo_open_device();
	session = luo_fd >= 0 ? luo_create_session(luo_fd, SESSION) : -1;
	if (session < 0) {
		printf("Bail out! /dev/liveupdate or session %s: %s\n", SESSION, strerror(errno));
		exit(1);
	}
	s1_pool_setup();
	s1_2m_file_preserved();
	s1_frozen_file_cannot_grow();
	s1_1g_file_preserved();
	s1_unretrieved_file_preserved();
	s1_preserve_takes_no_page();
	s1_unpreserve_returns_pages();
	s1_thp_file_preserved();
	s1_racing_writer_armed();
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

/* ---- stage 2 ---- */

static int fd2m = -1, fd1g = -1, fdthp = -1, fdrace = -1, fdlog = -1;

static void s2_pool_before_retrieve(void)
{
	char why[160], why1[160];
	int ok = pool_is(H2M, BOOT_2M, BOOT_2M, 0, 0, why, sizeof(why));
	int ok1 = pool_is(H1G, 1, 1, 0, 0, why1, sizeof(why1));

	result("s2_pool_before_retrieve", ok && ok1, "%s; %s", why, why1);
}

static void s2_2m_retrieved(void)
{
	static unsigned char buf[SZ_2M];
	struct stat st;
	int seals, bad = -1;
	off_t pos;

	fd2m = luo_session_retrieve_fd(session, 1);
	if (fd2m < 0) {
		result("s2_2m_retrieved", 0, "RETRIEVE_FD: %s", res(fd2m));
		return;
	}
	seals = fcntl(fd2m, F_GET_SEALS);
	pos = lseek(fd2m, 0, SEEK_CUR);
	if (fstat(fd2m, &st))
		st.st_size = st.st_blocks = -1;
	for (int i = 0; i < NR_2M && bad < 0; i++) {
		unsigned char want = written_2m(i) ? fill_2m(i) : 0;

		if (pread(fd2m, buf, SZ_2M, i * SZ_2M) != (ssize_t)SZ_2M) {
			bad = i;
			break;
		}
		for (unsigned long b = 0; b < SZ_2M; b++)
			if (buf[b] != want) {
				bad = i;
				break;
			}
	}
	result("s2_2m_retrieved",
	       st.st_size == (off_t)(NR_2M * SZ_2M) && seals == SEALS && pos == POS && bad < 0 &&
	       st.st_blocks == (blkcnt_t)(8 * SZ_2M / 512),
	       "size %lld, seals %#x, pos %lld, first bad page %d, st_blocks %lld (want %lu)",
	       (long long)st.st_size, seals, (long long)pos, bad, (long long)st.st_blocks,
	       8 * SZ_2M / 512);
}

static void s2_2m_counted_as_surplus(void)
{
	char why[160];

	/* nr_hugepages counts surplus pages too: the 8 restored pages are surplus. */
	result("s2_2m_counted_as_surplus",
	       fd2m >= 0 && pool_is(H2M, BOOT_2M + 8, BOOT_2M, 0, 8, why, sizeof(why)), "%s",
	       why);
}

static void s2_2m_writable(void)
{
	unsigned char *p = fd2m >= 0 ? map(fd2m, NR_2M * SZ_2M) : NULL;
	char why[160] = "no mapping";
	int ok = 0;

	if (p) {
		p[0] = 0xee;
		p[3 * SZ_2M] = 0xdd;
		ok = p[0] == 0xee && p[3 * SZ_2M] == 0xdd && p[SZ_2M] == fill_2m(1) &&
		     pool_is(H2M, BOOT_2M + 8, BOOT_2M - 1, 0, 8, why, sizeof(why));
		munmap(p, NR_2M * SZ_2M);
	}
	result("s2_2m_writable", ok, "%s", why);
}

static void s2_2m_holes_reserved_by_mmap(void)
{
	void *p = fd2m >= 0 ? mmap(NULL, NR_2M * SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED,
				   fd2m, 0) : MAP_FAILED;
	char why[160] = "no file";
	int ok = 0;

	if (p == MAP_FAILED) {
		snprintf(why, sizeof(why), "mmap: %s", strerror(errno));
	} else {
		/* 12 pages: 8 restored, 1 hole filled by 2m_writable, 3 holes. */
		ok = pool_is(H2M, BOOT_2M + 8, BOOT_2M - 1, 3, 8, why, sizeof(why));
		munmap(p, NR_2M * SZ_2M);
	}
	result("s2_2m_holes_reserved_by_mmap", ok, "%s", why);
}

static void s2_1g_retrieved(void)
{
	unsigned char *p;
	long bad = -1;
	char why[160] = "";

	fd1g = luo_session_retrieve_fd(session, 2);
	p = fd1g >= 0 ? mmap(NULL, SZ_1G, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd1g, 0) : NULL;
	if (p == MAP_FAILED)
		p = NULL;
	if (p) {
		for (unsigned long off = 0; off < SZ_1G && bad < 0; off += SZ_2M)
			if (*(unsigned long *)(p + off) != sample_1g(off))
				bad = off;
		munmap(p, SZ_1G);
	}
	result("s2_1g_retrieved",
	       p && bad < 0 && pool_is(H1G, 2, 1, 0, 1, why, sizeof(why)),
	       "retrieve %s, first bad offset %ld, %s", res(fd1g), bad, why);
}

/* The /proc/kpageflags word of the page mapped at @addr (0 on error). */
static unsigned long long kpageflags_of(const void *addr)
{
	unsigned long long ent = 0, flags = 0;
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	int kf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
	off_t vpn = (unsigned long)addr / getpagesize();

	if (pm >= 0 && kf >= 0 &&
	    pread(pm, &ent, sizeof(ent), vpn * sizeof(ent)) == sizeof(ent) &&
	    (ent >> 63) & 1 &&
	    pread(kf, &flags, sizeof(flags), (ent & ((1ULL << 55) - 1)) * 8) != sizeof(flags))
		flags = 0;
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return flags;
}

static void s2_thp_restored_as_thp(void)
{
	int fd = fdthp = luo_session_retrieve_fd(session, 4);
	unsigned char *p = fd >= 0 ? map(fd, NR_THP * SZ_2M) : NULL;
	long bad = -1;
	unsigned long long head = 0, tail = 0;
	int thp = 1;

	if (p) {
		for (unsigned long off = 0; off < NR_THP * SZ_2M && bad < 0; off++)
			if (p[off] != fill_thp(off))
				bad = off;
		for (int i = 0; i < NR_THP; i++) {
			head = kpageflags_of(p + i * SZ_2M);
			tail = kpageflags_of(p + i * SZ_2M + 4096);
			thp &= (head >> KPF_THP & 1) && (head >> KPF_COMPOUND_HEAD & 1) &&
			       (tail >> KPF_THP & 1) && !(tail >> KPF_COMPOUND_HEAD & 1);
		}
		munmap(p, NR_THP * SZ_2M);
	}
	/* Closed in close_returns_pages: FINISH must free only token 3. */
	result("s2_thp_restored_as_thp", p && bad < 0 && thp,
	       "retrieve %s, first bad byte %ld, kpageflags head %#llx tail %#llx (want THP, head then tail)",
	       res(fd), bad, head, tail);
}

static void s2_racing_writes_kept(void)
{
	static unsigned char want[SZ_2M], got[SZ_2M];
	struct race_log log = { 0 };
	long bad = -1, present = 0;
	struct stat st;

	fdrace = luo_session_retrieve_fd(session, 5);
	fdlog = luo_session_retrieve_fd(session, 6);
	if (fdrace < 0 || fdlog < 0 || pread(fdlog, &log, sizeof(log), 0) != sizeof(log) ||
	    fstat(fdrace, &st)) {
		result("s2_racing_writes_kept", 0, "retrieve %s and %s, or reading the log failed",
		       res(fdrace), res(fdlog));
		return;
	}
	printf("# %llu of %d pages written before the kexec, SIGBUS at page %lld\n",
	       (unsigned long long)log.done, RACE_2M, (long long)log.sigbus - 1);
	for (unsigned long k = 0; k < RACE_2M && bad < 0; k++) {
		/* The page being written when the CPUs stopped: anything. */
		if (k == log.done)
			continue;
		memset(want, k < log.done ? fill_race(k) : 0, SZ_2M);
		if (pread(fdrace, got, SZ_2M, k * SZ_2M) != (ssize_t)SZ_2M ||
		    memcmp(want, got, SZ_2M))
			bad = k;
	}
	present = st.st_blocks / (SZ_2M / 512);
	result("s2_racing_writes_kept",
	       log.done < RACE_2M && bad < 0 &&
	       (log.sigbus ? log.sigbus == log.done + 1 && present == (long)log.done :
			     present == (long)log.done || present == (long)log.done + 1),
	       "written %llu of %d (want fewer: the writer must race the kexec), first bad page %ld, %ld pages present, SIGBUS at %lld",
	       (unsigned long long)log.done, RACE_2M, bad, present, (long long)log.sigbus - 1);
}

static void s2_finish_frees_unretrieved(void)
{
	long before = mem_free_kb(), after;
	int r = luo_session_finish(session);

	after = mem_free_kb();
	/* 4 MiB come back; allow for what the kernel allocates meanwhile. */
	result("s2_finish_frees_unretrieved", !r && after - before >= 3584,
	       "finish %s, MemFree %ld -> %ld kB (want 4096 more)", res(r), before, after);
}

static void s2_close_returns_pages(void)
{
	char why[160], why1[160];
	int ok, ok1;

	close(fd2m);
	close(fd1g);
	close(fdthp);
	close(fdrace);
	close(fdlog);
	ok = pool_is(H2M, BOOT_2M, BOOT_2M, 0, 0, why, sizeof(why));
	ok1 = pool_is(H1G, 1, 1, 0, 0, why1, sizeof(why1));
	result("s2_close_returns_pages", ok && ok1, "%s; %s", why, why1);
}

static void stage_2(void)
{
	printf("1..10\n");
	s2_pool_before_retrieve();
	luo_fd = luo_open_device();
	session = luo_fd >= 0 ? luo_retrieve_session(luo_fd, SESSION) : -1;
	if (session < 0) {
		printf("Bail out! /dev/liveupdate or session %s: %s\n", SESSION, strerror(errno));
		exit(1);
	}
	s2_2m_retrieved();
	s2_2m_counted_as_surplus();
	s2_2m_writable();
	s2_2m_holes_reserved_by_mmap();
	s2_1g_retrieved();
	s2_thp_restored_as_thp();
	s2_racing_writes_kept();
	s2_finish_frees_unretrieved();
	s2_close_returns_pages();
	ktap_exit();
}

int main(int argc, char *argv[])
{
	return ktap_stages_main(argc, argv, cases, ARRAY_SIZE(cases), stage_1, stage_2);
}
