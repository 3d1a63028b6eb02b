// SPDX-License-Identifier: GPL-2.0-only
/*
 * memfd handler micro-benchmark (not a test): the time PRESERVE_FD (stage 1)
 * and RETRIEVE_FD (stage 2) take for one dense memfd, so that the C and the
 * Rust memfd handlers can be compared in the same VM.
 *
 * Options, the same in both boots: --mib=N sets the size in MiB (default
 * 256); --sparse makes a 16 GiB memfd with N MiB written (1 MiB every
 * 256 MiB) instead. --kind=KIND says what the file is made of
 * (guest RAM as a VMM backs it):
 *   shmem      a memfd of 4 KiB pages (the default; shmem THP is off)
 *   thp        a memfd of 2 MiB shmem THP folios (shmem_enabled set to
 *              "always" while it is written, "never" again afterwards)
 *   hugetlb2m  an MFD_HUGETLB | MFD_HUGE_2MB memfd; the 2 MiB pool is grown
 *              to the file's size first
 *   hugetlb1g  an MFD_HUGETLB | MFD_HUGE_1GB memfd, of the boot-time pool
 *              (hugepagesz=1G hugepages=N on the command line)
 * The kind is checked, and the program fails (so no "BENCH done") if the file
 * is not what it claims: in stage 1, once written and again after
 * PRESERVE_FD, ShmemHugePages of /proc/meminfo grew by the whole file (thp)
 * or not at all, and no multi-size THP was allocated for shmem (shmem, from
 * the shmem_alloc counters of /sys/kernel/mm/transparent_hugepage/), or the
 * pool's free_hugepages fell by the file's pages (hugetlb); in stage 2,
 * RETRIEVE_FD brought ShmemHugePages up by the file again (thp) or made the
 * file's pages surplus pages (hugetlb). The first 8 bytes of every 4 KiB page
 * written hold a stamp of its offset, read back after RETRIEVE_FD through a
 * read-only mapping.
 *
 * Output (the MiB/s of each in brackets; SUFFIX is "" for shmem, _thp,
 * _hugetlb2m or _hugetlb1g, or _sparse16g for the sparse memfd):
 *   BENCH memfd_preserve<SUFFIX> mib=<N> ns=<nanoseconds>
 *   BENCH memfd_kind kind=<KIND> mib=<N> folios=<F> folio_kib=<S>
 *   BENCH memfd_preserve_migrated pages=<P> cma_free_kib=<A>,<B>,<C>
 *   BENCH memfd_retrieve<SUFFIX> mib=<N> ns=<nanoseconds>
 *   BENCH memfd_kind_restored kind=<KIND> mib=<N> folios=<F>
 *   BENCH done
 * F being the file's folios (pages, huge pages) as checked above, of S KiB
 * each. The third line is what PRESERVE_FD moved out of CMA (KHO's scratch
 * areas are CMA, and a folio there must be migrated before it can be pinned
 * and preserved): pgmigrate_success of /proc/vmstat across it (-1: the
 * kernel has no CONFIG_VM_EVENT_COUNTERS, so /proc/vmstat has no such line),
 * and CmaFree of /proc/meminfo in KiB before the file was written, before
 * PRESERVE_FD and after it.
 *
 * --timeline prints, after FINISH in stage 2, every line of the
 * kernel's timeline of the live update (debugfs liveupdate/timeline, the Rust
 * LUO) as "BENCH timeline: <line>", or "BENCH timeline-error: <why>".
 *
 * --prof brackets the two timed ioctls by getppid() and getpgrp()
 * and names them "BENCH prof op=memfd_preserve" and "op=memfd_retrieve", for
 * scripts/bench-prof.sh (as luo_rs_bench does).
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#define STATE_SESSION_NAME	"luo_rs_memfd_bench_state"
#define STATE_MEMFD_TOKEN	993
#define SESSION			"rs-memfd-bench"
#define CHUNK			(1ULL << 20)
#define STAMP_STRIDE		4096ULL
#define STAMP_MAGIC		0x6c756f2d62656e63ULL
#define THP_DIR			"/sys/kernel/mm/transparent_hugepage/"
#define HUGE_DIR		"/sys/kernel/mm/hugepages/"

struct kind {
	const char *name;
	const char *suffix;		/* of the BENCH operation names */
	unsigned long long folio;	/* bytes per folio */
	unsigned int mfd_flags;		/* of memfd_create() */
	const char *pool;		/* the hugetlb pool's sysfs directory */
};

static const struct kind kinds[] = {
	{ "shmem", "", 4096, 0, NULL },
	{ "thp", "_thp", 2ULL << 20, 0, NULL },
	{ "hugetlb2m", "_hugetlb2m", 2ULL << 20, MFD_HUGETLB | MFD_HUGE_2MB,
	  HUGE_DIR "hugepages-2048kB/" },
	{ "hugetlb1g", "_hugetlb1g", 1ULL << 30, MFD_HUGETLB | MFD_HUGE_1GB,
	  HUGE_DIR "hugepages-1048576kB/" },
};

/* A memfd of shmem THP folios? */
static int is_thp(const struct kind *k)
{
	return !k->pool && k->folio > 4096;
}

/* The options (see the top of this file). */
static const struct kind *opt_kind = &kinds[0];
static long opt_mib = 256;
static int opt_sparse, opt_timeline;

/* The kind that --kind= names, or NULL. */
static const struct kind *kind_named(const char *name)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(kinds); i++)
		if (!strcmp(name, kinds[i].name))
			return &kinds[i];
	return NULL;
}

/* A counter of /proc/vmstat (-1 if absent). */
static long long vmstat(const char *key)
{
	char line[256], name[128];
	long long v, r = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%127s %lld", name, &v) == 2 && !strcmp(name, key))
			r = v;
	fclose(f);
	return r;
}

/* A field of /proc/meminfo in KiB (-1 if absent). */
static long long meminfo_kib(const char *key)
{
	char line[256], name[128];
	long long v, r = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%127[^:]: %lld", name, &v) == 2 && !strcmp(name, key))
			r = v;
	fclose(f);
	return r;
}

/* A number in sysfs file DIR/NAME (-1 if unreadable). */
static long long sysfs_num(const char *dir, const char *name)
{
	char path[256], buf[32];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	return strtoll(buf, NULL, 10);
}

static void sysfs_write(const char *dir, const char *name, const char *text)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s%s", dir, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		fail_exit("writing %s to %s", text, path);
	close(fd);
}

/*
 * Multi-size THP folios allocated for shmem so far, all sizes together (the
 * shmem_alloc counter of each hugepages-<size>kB/stats directory), or -1 if
 * the kernel has none (no CONFIG_TRANSPARENT_HUGEPAGE: no large shmem folio).
 */
static long long shmem_large_allocs(void)
{
	char dir[512];
	long long sum = -1, v;
	struct dirent *e;
	DIR *d = opendir(THP_DIR);

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, "hugepages-", 10))
			continue;
		snprintf(dir, sizeof(dir), THP_DIR "%s/stats/", e->d_name);
		v = sysfs_num(dir, "shmem_alloc");
		if (v < 0)
			continue;
		sum = (sum < 0 ? 0 : sum) + v;
	}
	closedir(d);
	return sum;
}

static int prof;

static void prof_on(void)
{
	if (prof)
		syscall(SYS_getppid);
}

static void prof_off(const char *op)
{
	if (prof) {
		syscall(SYS_getpgrp);
		printf("BENCH prof op=%s\n", op);
		fflush(stdout);
	}
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(const char *op, const struct kind *k, int sparse, long mib, long long ns)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "BENCH %s%s mib=%ld ns=%lld (%.1f MiB/s)\n", op,
			 sparse ? "_sparse16g" : k->suffix, mib, ns, ns ? mib * 1e9 / ns : 0.0);

	if (write(1, line, n) < 0)
		exit(1);
}

/* The file's size and where its MiB chunks are written: one every @stride. */
static void layout(int sparse, long mib, unsigned long long *size, unsigned long long *stride)
{
	*size = sparse ? 16ULL << 30 : (unsigned long long)mib << 20;
	*stride = sparse ? 256ULL << 20 : CHUNK;
	if (mib <= 0 || (unsigned long long)mib * *stride > *size + *stride - CHUNK)
		fail_exit("--mib=%ld does not fit the file", mib);
}

static unsigned long long stamp(unsigned long long off)
{
	return off ^ STAMP_MAGIC;
}

/* Writes the chunks: 0x5a bytes (shmem) and a stamp every 4 KiB. */
static void fill(int mfd, const struct kind *k, long mib, unsigned long long size,
		 unsigned long long stride)
{
	static char buf[CHUNK];
	unsigned long long off, i;
	char *p;
	long c;

	if (k->pool) {
		/* hugetlbfs has no write(): through a shared mapping. */
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
		if (p == MAP_FAILED)
			fail_exit("mmap of the %s file", k->name);
		for (c = 0; c < mib; c++)
			for (i = 0; i < CHUNK; i += STAMP_STRIDE) {
				off = c * stride + i;
				*(unsigned long long *)(p + off) = stamp(off);
			}
		if (munmap(p, size))
			fail_exit("munmap");
		return;
	}
	memset(buf, 0x5a, sizeof(buf));
	for (c = 0; c < mib; c++) {
		off = c * stride;
		for (i = 0; i < CHUNK; i += STAMP_STRIDE)
			*(unsigned long long *)(buf + i) = stamp(off + i);
		if (pwrite(mfd, buf, sizeof(buf), off) != sizeof(buf))
			fail_exit("pwrite");
	}
}

/* Reads the stamps back through a read-only shared mapping. */
static void check_contents(int mfd, const struct kind *k, long mib, unsigned long long size,
			   unsigned long long stride)
{
	unsigned long long off, i, v;
	struct stat st;
	char *p;
	long c;

	if (fstat(mfd, &st) || (unsigned long long)st.st_size != size)
		fail_exit("retrieved %s file: size %lld, want %llu", k->name,
			  (long long)st.st_size, size);
	/* No reservation: a restored hugetlb file is read, nothing is added to it. */
	p = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_NORESERVE, mfd, 0);
	if (p == MAP_FAILED)
		fail_exit("mmap of the retrieved %s file", k->name);
	for (c = 0; c < mib; c++)
		for (i = 0; i < CHUNK; i += STAMP_STRIDE) {
			off = c * stride + i;
			v = *(unsigned long long *)(p + off);
			if (v != stamp(off))
				fail_exit("retrieved %s file: %#llx at offset %llu, want %#llx",
					  k->name, v, off, stamp(off));
		}
	munmap(p, size);
}

/* Free pages of a hugetlb pool after growing it, at run time, to hold @pages. */
static long long grow_pool(const struct kind *k, long long pages)
{
	long long nr = sysfs_num(k->pool, "nr_hugepages");
	long long free = sysfs_num(k->pool, "free_hugepages");
	char text[32];

	if (nr < 0 || free < 0)
		fail_exit("no hugetlb pool %s", k->pool);
	if (free < pages && k->folio < (1ULL << 30)) {
		snprintf(text, sizeof(text), "%lld", nr + pages - free);
		sysfs_write(k->pool, "nr_hugepages", text);
		free = sysfs_num(k->pool, "free_hugepages");
	}
	if (free < pages)
		fail_exit("%s: %lld free huge pages, want %lld%s", k->pool, free, pages,
			  k->folio >= (1ULL << 30) ?
			  " (hugepagesz=1G hugepages=N on the command line)" : "");
	return free;
}

/*
 * Checks that the file written holds what kind @k claims, @written bytes of
 * it (dense chunks), against the counters read before it was created, and
 * returns its folio count.
 */
static unsigned long long check_kind(const struct kind *k, unsigned long long written,
				     long long huge0, long long large0, long long free0,
				     const char *when)
{
	long long huge = meminfo_kib("ShmemHugePages"), large = shmem_large_allocs(), free;
	unsigned long long folios = written / k->folio;

	if (k->pool) {
		free = sysfs_num(k->pool, "free_hugepages");
		if (free0 - free != (long long)folios)
			fail_exit("%s %s: free_hugepages %lld -> %lld, want %llu fewer", k->name,
				  when, free0, free, folios);
	} else if (is_thp(k)) {
		if (huge0 < 0 || huge - huge0 != (long long)(written >> 10))
			fail_exit("%s %s: ShmemHugePages %lld -> %lld kB, want %llu more (no THP)",
				  k->name, when, huge0, huge, written >> 10);
	} else {
		if (huge0 >= 0 && huge != huge0)
			fail_exit("%s %s: ShmemHugePages %lld -> %lld kB: shmem THP is on",
				  k->name, when, huge0, huge);
		if (large0 >= 0 && large != large0)
			fail_exit("%s %s: %lld multi-size THP shmem folios allocated",
				  k->name, when, large - large0);
	}
	return folios;
}

static void stage1(int luo_fd)
{
	const struct kind *k = opt_kind;
	long mib = opt_mib;
	int sparse = opt_sparse;
	unsigned long long size, stride, written = (unsigned long long)mib << 20, folios;
	long long t, m, cma0, cma1, cma2, huge0, large0, free0 = 0;
	int sfd, mfd, ret;

	if (sparse && k != &kinds[0])
		fail_exit("--sparse is for shmem memfds of 4 KiB folios");
	layout(sparse, mib, &size, &stride);
	if (size % k->folio)
		fail_exit("--mib=%ld is not a whole number of %s folios", mib, k->name);
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	sfd = luo_create_session(luo_fd, SESSION);
	if (k->pool)
		free0 = grow_pool(k, size / k->folio);
	if (is_thp(k))
		sysfs_write(THP_DIR, "shmem_enabled", "always");
	huge0 = meminfo_kib("ShmemHugePages");
	large0 = shmem_large_allocs();
	mfd = memfd_create("bench", k->mfd_flags);
	if (sfd < 0 || mfd < 0 || ftruncate(mfd, size))
		fail_exit("setup");
	cma0 = meminfo_kib("CmaFree");
	fill(mfd, k, mib, size, stride);
	if (is_thp(k))
		sysfs_write(THP_DIR, "shmem_enabled", "never");
	folios = check_kind(k, written, huge0, large0, free0, "written");
	m = vmstat("pgmigrate_success");
	cma1 = meminfo_kib("CmaFree");
	t = now_ns();
	prof_on();
	ret = luo_session_preserve_fd(sfd, mfd, 1);
	prof_off("memfd_preserve");
	t = now_ns() - t;
	cma2 = meminfo_kib("CmaFree");
	m = m < 0 ? -1 : vmstat("pgmigrate_success") - m;
	if (ret)
		fail_exit("PRESERVE_FD: %s", strerror(-ret));
	/* Migrating a folio out of CMA to pin it must not have split it. */
	check_kind(k, written, huge0, large0, free0, "after PRESERVE_FD");
	report("memfd_preserve", k, sparse, mib, t);
	printf("BENCH memfd_kind kind=%s mib=%ld folios=%llu folio_kib=%llu\n", k->name, mib,
	       folios, k->folio >> 10);
	printf("BENCH memfd_preserve_migrated pages=%lld cma_free_kib=%lld,%lld,%lld (before writing, before PRESERVE_FD, after)\n",
	       m, cma0, cma1, cma2);
	fflush(stdout);
	close(mfd);
	close(luo_fd);
	daemonize_and_wait();
}

/* The kernel's timeline of this live update, line by line. */
static void print_timeline(void)
{
	static char buf[16384];
	char *line, *save = NULL;
	ssize_t n;
	int fd;

	if (mount("none", "/sys/kernel/debug", "debugfs", 0, NULL) && errno != EBUSY) {
		printf("BENCH timeline-error: mount debugfs: %s\n", strerror(errno));
		return;
	}
	fd = open("/sys/kernel/debug/liveupdate/timeline", O_RDONLY);
	n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		printf("BENCH timeline-error: %s\n", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	close(fd);
	buf[n] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		printf("BENCH timeline: %s\n", line);
	fflush(stdout);
}

static void stage2(int luo_fd, int state_fd)
{
	const struct kind *k = opt_kind;
	long mib = opt_mib;
	int sparse = opt_sparse;
	unsigned long long size, stride, written = (unsigned long long)mib << 20;
	unsigned long long folios = written / k->folio;
	long long t, huge0, huge, surp0 = 0, surp;
	int sfd, mfd;

	layout(sparse, mib, &size, &stride);
	sfd = luo_retrieve_session(luo_fd, SESSION);
	if (sfd < 0)
		fail_exit("RETRIEVE_SESSION");
	huge0 = meminfo_kib("ShmemHugePages");
	if (k->pool)
		surp0 = sysfs_num(k->pool, "surplus_hugepages");
	t = now_ns();
	prof_on();
	mfd = luo_session_retrieve_fd(sfd, 1);
	prof_off("memfd_retrieve");
	t = now_ns() - t;
	if (mfd < 0)
		fail_exit("RETRIEVE_FD: %s", strerror(-mfd));
	report("memfd_retrieve", k, sparse, mib, t);
	huge = meminfo_kib("ShmemHugePages");
	if (k->pool) {
		/* Restored hugetlb pages are surplus pages while the file holds them. */
		surp = sysfs_num(k->pool, "surplus_hugepages");
		if (surp0 < 0 || surp - surp0 != (long long)folios)
			fail_exit("%s after RETRIEVE_FD: surplus_hugepages %lld -> %lld, want %llu more",
				  k->name, surp0, surp, folios);
	} else if (is_thp(k)) {
		/* The folios came back whole, not split. */
		if (huge0 < 0 || huge - huge0 != (long long)(written >> 10))
			fail_exit("thp after RETRIEVE_FD: ShmemHugePages %lld -> %lld kB, want %llu more",
				  huge0, huge, written >> 10);
	} else if (huge != huge0) {
		fail_exit("shmem after RETRIEVE_FD: ShmemHugePages %lld -> %lld kB, want no change",
			  huge0, huge);
	}
	check_contents(mfd, k, mib, size, stride);
	printf("BENCH memfd_kind_restored kind=%s mib=%ld folios=%llu\n", k->name, mib, folios);
	printf("BENCH done\n");
	fflush(stdout);
	luo_session_finish(sfd);
	luo_session_finish(state_fd);
	if (opt_timeline)
		print_timeline();
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' },
		{ "sparse", no_argument, NULL, 'S' },
		{ "kind", required_argument, NULL, 'k' },
		{ "timeline", no_argument, NULL, 't' },
		{ "prof", no_argument, NULL, 'p' },
		{ }
	};
	char *stage = "1", *largv[] = { argv[0], "-s", NULL, NULL };
	int c;

	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			stage = optarg;
			break;
		case 'm':
			opt_mib = strtol(optarg, NULL, 0);
			break;
		case 'S':
			opt_sparse = 1;
			break;
		case 'k':
			opt_kind = kind_named(optarg);
			if (!opt_kind)
				goto usage;
			break;
		case 't':
			opt_timeline = 1;
			break;
		case 'p':
			prof = 1;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc)
		goto usage;
	/* luo_test() reads only "-s N". */
	largv[2] = stage;
	return luo_test(3, largv, STATE_SESSION_NAME, stage1, stage2);
usage:
	fprintf(stderr, "usage: %s [-s 1|2] [--mib=N] [--sparse] [--kind=KIND] [--timeline] [--prof]\n",
		argv[0]);
	return 2;
}
