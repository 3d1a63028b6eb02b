// SPDX-License-Identifier: GPL-2.0-only
/*
 * memfd handler micro-benchmark (not a test): the time PRESERVE_FD (stage 1)
 * and RETRIEVE_FD (stage 2) take for one dense memfd, so that the C and the
 * Rust memfd handlers can be compared in the same VM.
 *
 * luo.memfd_mib=N on the kernel command line (or -n N) sets the size in MiB
 * (default 256); luo.memfd_sparse=1 makes a 16 GiB memfd with N MiB written
 * (1 MiB every 256 MiB) instead. Output:
 *   BENCH memfd_preserve mib=<N> ns=<nanoseconds>
 *   BENCH memfd_retrieve mib=<N> ns=<nanoseconds>
 * and the MiB/s of each, and what PRESERVE_FD moved out of CMA (KHO's scratch
 * areas are CMA, and a folio there must be migrated before it can be pinned
 * and preserved): the change of CmaFree in /proc/meminfo, in KiB, and of
 * pgmigrate_success in /proc/vmstat (-1: the kernel has no
 * CONFIG_VM_EVENT_COUNTERS, so /proc/vmstat has no such line).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#define STATE_SESSION_NAME	"luo_rs_memfd_bench_state"
#define STATE_MEMFD_TOKEN	993
#define SESSION			"rs-memfd-bench"

static long cmdline_num(const char *key, long def)
{
	char buf[4096] = "", *p;
	int fd = open("/proc/cmdline", O_RDONLY);

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = 0;
		close(fd);
	}
	p = strstr(buf, key);
	return p ? strtol(p + strlen(key), NULL, 0) : def;
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

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void report(const char *op, long mib, long long ns)
{
	char line[160];
	int n = snprintf(line, sizeof(line), "BENCH %s mib=%ld ns=%lld (%.1f MiB/s)\n", op, mib,
			 ns, ns ? mib * 1e9 / ns : 0.0);

	if (write(1, line, n) < 0)
		exit(1);
}

static void stage1(int luo_fd)
{
	long mib = cmdline_num("luo.memfd_mib=", 256);
	int sparse = cmdline_num("luo.memfd_sparse=", 0);
	unsigned long long size = sparse ? 16ULL << 30 : (unsigned long long)mib << 20;
	unsigned long long stride = sparse ? 256ULL << 20 : 1ULL << 20, off;
	static char buf[1 << 20];
	long long t, m, cma0, cma1, cma2;
	int sfd, mfd, ret;

	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	sfd = luo_create_session(luo_fd, SESSION);
	mfd = memfd_create("bench", 0);
	if (sfd < 0 || mfd < 0 || ftruncate(mfd, size))
		fail_exit("setup");
	cma0 = meminfo_kib("CmaFree");
	memset(buf, 0x5a, sizeof(buf));
	for (off = 0; off < size && off / stride < (unsigned long long)mib; off += stride)
		if (pwrite(mfd, buf, sizeof(buf), off) != sizeof(buf))
			fail_exit("pwrite");
	m = vmstat("pgmigrate_success");
	cma1 = meminfo_kib("CmaFree");
	t = now_ns();
	ret = luo_session_preserve_fd(sfd, mfd, 1);
	t = now_ns() - t;
	cma2 = meminfo_kib("CmaFree");
	m = m < 0 ? -1 : vmstat("pgmigrate_success") - m;
	if (ret)
		fail_exit("PRESERVE_FD: %s", strerror(-ret));
	report(sparse ? "memfd_preserve_sparse16g" : "memfd_preserve", mib, t);
	printf("BENCH memfd_preserve_migrated pages=%lld cma_free_kib=%lld,%lld,%lld (before writing, before PRESERVE_FD, after)\n",
	       m, cma0, cma1, cma2);
	fflush(stdout);
	close(mfd);
	close(luo_fd);
	daemonize_and_wait();
}

static void stage2(int luo_fd, int state_fd)
{
	long mib = cmdline_num("luo.memfd_mib=", 256);
	int sparse = cmdline_num("luo.memfd_sparse=", 0);
	long long t;
	int sfd, mfd;

	sfd = luo_retrieve_session(luo_fd, SESSION);
	if (sfd < 0)
		fail_exit("RETRIEVE_SESSION");
	t = now_ns();
	mfd = luo_session_retrieve_fd(sfd, 1);
	t = now_ns() - t;
	if (mfd < 0)
		fail_exit("RETRIEVE_FD: %s", strerror(-mfd));
	report(sparse ? "memfd_retrieve_sparse16g" : "memfd_retrieve", mib, t);
	printf("BENCH done\n");
	luo_session_finish(sfd);
	luo_session_finish(state_fd);
}

int main(int argc, char *argv[])
{
	return luo_test(argc, argv, STATE_SESSION_NAME, stage1, stage2);
}
