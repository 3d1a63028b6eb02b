// SPDX-License-Identifier: GPL-2.0-only
/*
 * LUO micro-benchmark (not a test): times the LUO ioctls so that two LUO
 * implementations (the C one and the Rust one) can be compared on the same
 * machine: run it on a C LUO kernel and on a Rust LUO kernel, and compare
 * the "BENCH" lines it prints.
 *
 * Modes (-m MODE; single without):
 *
 *   single    one boot: N PRESERVE_FD of distinct memfds into one session,
 *             closing that session (unpreserves them), N CREATE_SESSION and
 *             closing those sessions. N defaults to 10000.
 *   sessions  two boots (-s 1, -s 2): stage 1 creates N sessions (default
 *             2000), writes a marker to /dev/kmsg and calls reboot(KEXEC)
 *             itself, with the sessions still open. The host measures the
 *             reboot path (freeze + serialization + shutdown) as the printk
 *             time between that marker and "kexec_core: Starting new kernel".
 *             Stage 2 times the first open of /dev/liveupdate (which
 *             deserializes), RETRIEVE_SESSION of every session, FINISH of
 *             every session and closing them.
 *   files     as sessions, with N memfds (default 500) in one session; stage
 *             2 times the open, RETRIEVE_FD of every file and FINISH.
 *
 * -n N sets N; -p PAGES gives
 * every memfd that many pages of data (default 0: empty memfds, so that the
 * memfd handler costs little).
 *
 * -c T caps every timed loop at T seconds: a loop that has run
 * longer stops there (checked every 64 operations), prints a "capped" line
 * and the program exits with status 3, before any kexec. The host then shows
 * "> T" for that operation instead of a time (the C LUO is quadratic in the
 * number of sessions and of files per session).
 *
 * Output, one line per measurement, written with a single write(2):
 *   BENCH <op> n=<count> ns=<total nanoseconds, CLOCK_MONOTONIC>
 *   BENCH mem <op> n=<count> slab=<bytes> used=<bytes>
 *   BENCH capped op=<op> n=<count> done=<operations done> ns=<elapsed>
 *   BENCH done mode=<mode> stage=<stage>
 * "mem" lines give the growth of the kernel's slab memory (Slab in
 * /proc/meminfo) and of all used memory (MemTotal - MemFree) across N
 * PRESERVE_FD or N CREATE_SESSION, the fds still open; "slab" lines
 *   BENCH slab <op> n=<count> cache=<name> bytes=<growth>
 * break the growth down by slab cache (when /proc/slabinfo exists).
 * Errors print "BENCH error ..." and exit 1.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#define BENCH_FILES_SESSION	"luo_rs_bench_files"
#define BENCH_REBOOT_MARKER	"luo_rs_bench: reboot_start"

enum bench_mode { MODE_SINGLE, MODE_SESSIONS, MODE_FILES };

static const char * const mode_names[] = {
	[MODE_SINGLE] = "single",
	[MODE_SESSIONS] = "sessions",
	[MODE_FILES] = "files",
};

static const long mode_default_n[] = {
	[MODE_SINGLE] = 10000,
	[MODE_SESSIONS] = 2000,
	[MODE_FILES] = 500,
};

static uint64_t cap_ns;
static int prof;

static __printf(1, 2) void out(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	if (n > 0 && write(STDOUT_FILENO, buf, n) < 0)
		_exit(1);
}

static __noreturn __printf(1, 2) void die(const char *fmt, ...)
{
	char buf[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	out("BENCH error %s\n", buf);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void report(const char *op, long n, uint64_t ns)
{
	out("BENCH %s n=%ld ns=%llu\n", op, n, (unsigned long long)ns);
}

/*
 * -P (for a profiler that counts the guest's instructions per
 * kernel function, such as a QEMU TCG plugin): every timed region is bracketed
 * by getppid() and getpgrp(), whose kernel entry points a profiler watching
 * the guest uses as start and stop markers, and "BENCH prof op=<op>" names
 * the regions in order. The reboot path ends in the kernel (machine_kexec).
 */
static void prof_on(void)
{
	if (prof)
		syscall(SYS_getppid);
}

static void prof_off(const char *op)
{
	if (prof) {
		syscall(SYS_getpgrp);
		out("BENCH prof op=%s\n", op);
	}
}

/*
 * Called in timed loops after operation @i (0-based) of @n: stop the program
 * (status 3, no kexec) once the loop started at @t0 has run past the cap.
 */
static void check_cap(const char *op, long n, long i, uint64_t t0)
{
	uint64_t el;

	if (!cap_ns || (i & 63) != 63 || i + 1 == n)
		return;
	el = now_ns() - t0;
	if (el <= cap_ns)
		return;
	out("BENCH capped op=%s n=%ld done=%ld ns=%llu\n", op, n, i + 1,
	    (unsigned long long)el);
	exit(3);
}

/* Slab and used memory (MemTotal - MemFree) in bytes, from /proc/meminfo. */
static void meminfo(long long *slab, long long *used)
{
	long long total = 0, mfree = 0, v;
	char line[128], key[64];
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		die("open /proc/meminfo: %s", strerror(errno));
	*slab = 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %lld", key, &v) != 2)
			continue;
		if (!strcmp(key, "MemTotal"))
			total = v;
		else if (!strcmp(key, "MemFree"))
			mfree = v;
		else if (!strcmp(key, "Slab"))
			*slab = v * 1024;
	}
	fclose(f);
	*used = (total - mfree) * 1024;
}

/* One slab cache of /proc/slabinfo: bytes in active objects. */
struct slab_cache {
	char name[40];
	long long bytes;
};

#define MAX_CACHES 512
static struct slab_cache caches0[MAX_CACHES];
static int ncaches0;

/*
 * Reads /proc/slabinfo (CONFIG_SLUB_DEBUG) into @c; returns the number of
 * caches, 0 if the file is missing (the breakdown is then left out).
 */
static int slabinfo(struct slab_cache *c)
{
	long long active, total, size;
	char line[512];
	int n = 0;
	FILE *f = fopen("/proc/slabinfo", "r");

	if (!f)
		return 0;
	while (n < MAX_CACHES && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%39s %lld %lld %lld", c[n].name, &active, &total,
			   &size) != 4)
			continue;	/* the two header lines */
		c[n++].bytes = active * size;
	}
	fclose(f);
	return n;
}

/* The memory counters before a measured loop. */
static void mem_start(long long *slab0, long long *used0)
{
	meminfo(slab0, used0);
	ncaches0 = slabinfo(caches0);
}

/*
 * "BENCH mem": growth of Slab and used memory since mem_start(); then one
 * "BENCH slab" line per slab cache that grew or shrank by 4 bytes per
 * operation or more: where the memory of an operation goes.
 */
static void report_mem(const char *op, long n, long long slab0, long long used0)
{
	static struct slab_cache now[MAX_CACHES];
	long long slab, used;
	int i, j, m;

	meminfo(&slab, &used);
	out("BENCH mem %s n=%ld slab=%lld used=%lld\n", op, n, slab - slab0, used - used0);
	m = slabinfo(now);
	for (i = 0; i < m; i++) {
		long long before = 0, d;

		for (j = 0; j < ncaches0; j++) {
			if (!strcmp(caches0[j].name, now[i].name)) {
				before = caches0[j].bytes;
				break;
			}
		}
		d = now[i].bytes - before;
		if (d >= 4 * n || d <= -4 * n)
			out("BENCH slab %s n=%ld cache=%s bytes=%lld\n", op, n, now[i].name, d);
	}
}

static void session_name(char *buf, long i)
{
	snprintf(buf, LIVEUPDATE_SESSION_NAME_LENGTH, "luo_rs_bench_%06ld", i);
}

static int *alloc_fds(long n)
{
	int *fds = calloc(n ? n : 1, sizeof(*fds));

	if (!fds)
		die("out of memory for %ld fds", n);
	return fds;
}

static void raise_nofile(long n)
{
	int ret = luo_ensure_nofile_limit(n + 64);

	if (ret)
		die("cannot raise RLIMIT_NOFILE to %ld: %s", n + 64, strerror(-ret));
}

static int open_device(void)
{
	int fd = luo_open_device();

	if (fd < 0)
		die("open %s: %s", LUO_DEVICE, strerror(errno));
	return fd;
}

/* N memfds of @pages pages each; created before any timing starts. */
static int *make_memfds(long n, long pages)
{
	size_t size = pages * getpagesize();
	int *fds = alloc_fds(n);
	long i, p;

	for (i = 0; i < n; i++) {
		fds[i] = memfd_create("luo_rs_bench", 0);
		if (fds[i] < 0)
			die("memfd_create #%ld: %s", i, strerror(errno));
		if (size && ftruncate(fds[i], size))
			die("ftruncate memfd #%ld: %s", i, strerror(errno));
		for (p = 0; p < pages; p++) {
			char c = (char)(i + p);

			if (pwrite(fds[i], &c, 1, p * getpagesize()) != 1)
				die("pwrite memfd #%ld: %s", i, strerror(errno));
		}
	}
	return fds;
}

static void close_all(int *fds, long n)
{
	long i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

/* PRESERVE_FD of every memfd (tokens 1..n) into @sfd, timed. */
static void preserve_all(int sfd, int *mfds, long n)
{
	long long slab0, used0;
	uint64_t t0, t1;
	long i;
	int ret;

	usleep(500000);
	mem_start(&slab0, &used0);
	t0 = now_ns();
	prof_on();
	for (i = 0; i < n; i++) {
		ret = luo_session_preserve_fd(sfd, mfds[i], i + 1);
		if (ret)
			die("PRESERVE_FD #%ld: %s", i, strerror(-ret));
		check_cap("preserve_fd", n, i, t0);
	}
	prof_off("preserve_fd");
	t1 = now_ns();
	report("preserve_fd", n, t1 - t0);
	report_mem("preserve_fd", n, slab0, used0);
	/* LUO holds its own reference: our fds are no longer needed. */
	close_all(mfds, n);
}

/* CREATE_SESSION of n sessions, timed; the fds are returned open. */
static int *create_sessions(int luo_fd, long n)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int *sfds = alloc_fds(n);
	long long slab0, used0;
	uint64_t t0, t1;
	long i;

	/* Let the frees of an earlier phase (RCU, deferred fput) settle. */
	usleep(500000);
	mem_start(&slab0, &used0);
	t0 = now_ns();
	prof_on();
	for (i = 0; i < n; i++) {
		session_name(name, i);
		sfds[i] = luo_create_session(luo_fd, name);
		if (sfds[i] < 0)
			die("CREATE_SESSION #%ld: %s", i, strerror(-sfds[i]));
		check_cap("create_session", n, i, t0);
	}
	prof_off("create_session");
	t1 = now_ns();
	report("create_session", n, t1 - t0);
	report_mem("create_session", n, slab0, used0);
	return sfds;
}

static void bench_single(long n, long pages)
{
	uint64_t t0, t1;
	int luo_fd, sfd;
	int *fds;

	raise_nofile(n);
	luo_fd = open_device();

	/* Files: N preserves into one session, then close it (unpreserve). */
	fds = make_memfds(n, pages);
	sfd = luo_create_session(luo_fd, BENCH_FILES_SESSION);
	if (sfd < 0)
		die("CREATE_SESSION %s: %s", BENCH_FILES_SESSION, strerror(-sfd));
	preserve_all(sfd, fds, n);
	free(fds);
	t0 = now_ns();
	prof_on();
	close(sfd);
	prof_off("unpreserve_fd");
	t1 = now_ns();
	report("unpreserve_fd", n, t1 - t0);

	/* Sessions: N creates, then close them all. */
	fds = create_sessions(luo_fd, n);
	t0 = now_ns();
	prof_on();
	close_all(fds, n);
	prof_off("close_session");
	t1 = now_ns();
	report("close_session", n, t1 - t0);
	free(fds);
	close(luo_fd);
}

/*
 * Stage 1 of a kexec mode: build the state, then kexec with it still open.
 * init loaded the next kernel before starting us; calling reboot(2) here
 * (rather than exiting and letting init do it) keeps the process exit, the
 * harness' own delays and sync() out of the measured reboot path.
 */
static void bench_stage1(enum bench_mode mode, long n, long pages)
{
	int luo_fd, sfd, kmsg;
	int *fds;

	raise_nofile(n);
	luo_fd = open_device();
	if (mode == MODE_SESSIONS) {
		fds = create_sessions(luo_fd, n);
	} else {
		fds = make_memfds(n, pages);
		sfd = luo_create_session(luo_fd, BENCH_FILES_SESSION);
		if (sfd < 0)
			die("CREATE_SESSION %s: %s", BENCH_FILES_SESSION, strerror(-sfd));
		preserve_all(sfd, fds, n);
	}
	close(luo_fd);
	out("BENCH done mode=%s stage=1\n", mode_names[mode]);

	kmsg = open("/dev/kmsg", O_WRONLY);
	if (kmsg < 0)
		die("open /dev/kmsg: %s", strerror(errno));
	sync();
	/*
	 * The reboot path is timed from the marker's printk time, and the
	 * console prints asynchronously: let what was written before it (our
	 * BENCH lines, kernel messages) reach the serial port first, so that
	 * the window holds the same console work on both kernels, not more on
	 * the one whose report was longer.
	 */
	tcdrain(STDOUT_FILENO);
	usleep(200000);
	/* KERN_NOTICE, like "Starting new kernel", so the console shows it. */
	if (write(kmsg, "<5>" BENCH_REBOOT_MARKER "\n",
		  sizeof("<5>" BENCH_REBOOT_MARKER "\n") - 1) < 0)
		die("write /dev/kmsg: %s", strerror(errno));
	if (prof)
		out("BENCH prof op=reboot_path\n");
	prof_on();
	reboot(RB_KEXEC);
	die("reboot(KEXEC): %s", strerror(errno));
}

/* Stage 2 of a kexec mode: restore everything, timed step by step. */
static void bench_stage2(enum bench_mode mode, long n)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	uint64_t t0, t1, start;
	int luo_fd, sfd, ret;
	int *fds;
	long i;

	raise_nofile(n);
	fds = alloc_fds(n);

	start = t0 = now_ns();
	prof_on();
	luo_fd = open_device();
	prof_off("restore_open");
	t1 = now_ns();
	report("restore_open", n, t1 - t0);

	if (mode == MODE_SESSIONS) {
		t0 = now_ns();
		prof_on();
		for (i = 0; i < n; i++) {
			session_name(name, i);
			fds[i] = luo_retrieve_session(luo_fd, name);
			if (fds[i] < 0)
				die("RETRIEVE_SESSION %s: %s", name, strerror(-fds[i]));
			check_cap("retrieve_session", n, i, t0);
		}
		prof_off("retrieve_session");
		t1 = now_ns();
		report("retrieve_session", n, t1 - t0);

		t0 = now_ns();
		prof_on();
		for (i = 0; i < n; i++) {
			ret = luo_session_finish(fds[i]);
			if (ret)
				die("FINISH #%ld: %s", i, strerror(-ret));
			check_cap("finish_session", n, i, t0);
		}
		prof_off("finish_session");
		t1 = now_ns();
		report("finish_session", n, t1 - t0);

		t0 = now_ns();
		prof_on();
		close_all(fds, n);
		prof_off("close_incoming_session");
		t1 = now_ns();
		report("close_incoming_session", n, t1 - t0);
	} else {
		t0 = now_ns();
		prof_on();
		sfd = luo_retrieve_session(luo_fd, BENCH_FILES_SESSION);
		if (sfd < 0)
			die("RETRIEVE_SESSION %s: %s", BENCH_FILES_SESSION, strerror(-sfd));
		for (i = 0; i < n; i++) {
			fds[i] = luo_session_retrieve_fd(sfd, i + 1);
			if (fds[i] < 0)
				die("RETRIEVE_FD token %ld: %s", i + 1, strerror(-fds[i]));
			check_cap("retrieve_fd", n, i, t0);
		}
		prof_off("retrieve_fd");
		t1 = now_ns();
		report("retrieve_fd", n, t1 - t0);

		t0 = now_ns();
		prof_on();
		ret = luo_session_finish(sfd);
		if (ret)
			die("FINISH: %s", strerror(-ret));
		close(sfd);
		prof_off("finish_files");
		t1 = now_ns();
		report("finish_files", n, t1 - t0);
		close_all(fds, n);
	}
	close(luo_fd);
	report("restore_total", n, now_ns() - start);
	free(fds);
	out("BENCH done mode=%s stage=2\n", mode_names[mode]);
}

int main(int argc, char *argv[])
{
	long n = -1, pages = -1, stage = 1;
	const char *mode_arg = NULL;
	enum bench_mode mode;
	int opt;

	while ((opt = getopt(argc, argv, "s:m:n:p:c:P")) != -1) {
		switch (opt) {
		case 's':
			stage = strtol(optarg, NULL, 0);
			break;
		case 'm':
			mode_arg = optarg;
			break;
		case 'n':
			n = strtol(optarg, NULL, 0);
			break;
		case 'p':
			pages = strtol(optarg, NULL, 0);
			break;
		case 'c':
			cap_ns = strtoull(optarg, NULL, 0) * 1000000000ull;
			break;
		case 'P':
			prof = 1;
			break;
		default:
			fprintf(stderr,
				"usage: %s [-s STAGE] [-m single|sessions|files] [-n N] [-p PAGES] [-c SECONDS] [-P]\n",
				argv[0]);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "%s: unexpected argument %s\n", argv[0], argv[optind]);
		return 2;
	}
	if (!mode_arg)
		mode_arg = "single";
	for (mode = MODE_SINGLE; mode <= MODE_FILES; mode++)
		if (!strcmp(mode_arg, mode_names[mode]))
			break;
	if (mode > MODE_FILES)
		die("unknown mode '%s'", mode_arg);
	if (n < 0)
		n = mode_default_n[mode];
	if (pages < 0)
		pages = 0;
	if (n < 1 || pages < 0 || (stage != 1 && stage != 2))
		die("bad arguments: n=%ld pages=%ld stage=%ld", n, pages, stage);

	out("BENCH start mode=%s stage=%ld n=%ld pages=%ld\n",
	    mode_names[mode], stage, n, pages);
	if (mode == MODE_SINGLE)
		bench_single(n, pages);
	else if (stage == 1)
		bench_stage1(mode, n, pages);
	else
		bench_stage2(mode, n);
	if (mode == MODE_SINGLE)
		out("BENCH done mode=single stage=1\n");
	return 0;
}
