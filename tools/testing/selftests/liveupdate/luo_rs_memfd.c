// SPDX-License-Identifier: GPL-2.0-only
/*
 * memfd across one kexec, whichever handler ("memfd-v2", C or Rust) wrote it
 * and whichever reads it: contents byte for byte, size, seals, f_pos (also a
 * position changed after PRESERVE_FD), holes, fallocated pages, writes after
 * PRESERVE_FD (into data and into holes), a file never retrieved (FINISH must
 * give its memory back), an MFD_NOEXEC_SEAL memfd (its mode and seals, and a
 * writable shared mapping of it), seals added after PRESERVE_FD, a writer that
 * keeps filling holes while the kexec runs (every write that returned success
 * must arrive), and an O_TMPFILE file linked after PRESERVE_FD (it must still
 * cross, keep its id, and thaw when unpreserved), and a memfd of shmem THP
 * folios (they must come back as 2 MiB folios, not split).
 *
 * Built as luo_rs_memfd_corrupt (LUO_RS_MEMFD_CORRUPT, see that file), it
 * instead corrupts handovers on purpose through the Rust handler's test file
 * (debugfs liveupdate/test_memfd, CONFIG_LIVEUPDATE_RUST_TEST) and checks that the
 * next kernel refuses each with an errno, sticky, and that FINISH still works.
 *
 * Stage 1 (-s 1) creates one session per case plus a state session and leaves
 * the session fds (and some memfd fds) to a daemonized child so that they are
 * still open when the kexec serializes them. Stage 2 (-s 2) runs every check
 * on its own session and prints one KTAP line per case. --list prints the case
 * names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/reboot.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_sysfs.h"

#define STATE_SESSION_NAME	"luo_rs_memfd_state"
#define STATE_MEMFD_TOKEN	995
#define MEMFD_TEST_DEV		"/sys/kernel/debug/liveupdate/test_memfd"
#define MEMFD_CORRUPT		_IO('M', 1)
#define MEMFD_HOLD_LOCK		_IO('M', 2)

#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC		0x0020
#endif

/* glibc has it from 2.38 on. */
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL		0x0008U
#endif

#define ALL_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | \
		   F_SEAL_FUTURE_WRITE | F_SEAL_EXEC)

struct mcase {
	const char *name;
	const char *session;
	void (*setup)(int luo_fd, const struct mcase *c);
	int (*check)(int luo_fd, const struct mcase *c);
	int corrupt;	/* mode for the corruption cases, 0 otherwise */
	int want;	/* errno RETRIEVE_FD must give, corruption cases */
};

static const char *cur_case = "";

static __printf(1, 2) int fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ksft_print_msg("%s: %s\n", cur_case, buf);
	return -1;
}

static const char *res(long ret)
{
	static char buf[4][48];
	static int i;
	char *b = buf[i++ % 4];

	if (ret >= 0)
		snprintf(b, sizeof(buf[0]), "success (%ld)", ret);
	else
		snprintf(b, sizeof(buf[0]), "%s", strerrorname_np(-ret) ?: "unknown errno");
	return b;
}

static size_t psz(void)
{
	return getpagesize();
}

static unsigned char pattern(unsigned int seed, size_t off)
{
	return (off * 31 + (off / psz()) * 7 + seed * 101 + 1) & 0xff;
}

static void fill(int fd, size_t off, size_t len, unsigned int seed)
{
	unsigned char buf[4096];
	size_t done, i, n;

	for (done = 0; done < len; done += n) {
		n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		for (i = 0; i < n; i++)
			buf[i] = pattern(seed, off + done + i);
		if (pwrite(fd, buf, n, off + done) != (ssize_t)n)
			fail_exit("pwrite at %zu", off + done);
	}
}

/* Check [off, off+len) of @fd: pattern(@seed), or zeroes if @seed is 0. */
static int verify(int fd, size_t off, size_t len, unsigned int seed)
{
	unsigned char buf[4096];
	size_t done, i, n;

	for (done = 0; done < len; done += n) {
		n = len - done < sizeof(buf) ? len - done : sizeof(buf);
		if (pread(fd, buf, n, off + done) != (ssize_t)n)
			return fail("pread of %zu bytes at %zu: %s", n, off + done,
				    strerror(errno));
		for (i = 0; i < n; i++) {
			unsigned char want = seed ? pattern(seed, off + done + i) : 0;

			if (buf[i] != want)
				return fail("byte %zu is %#x, want %#x", off + done + i,
					    buf[i], want);
		}
	}
	return 0;
}

static int check_size(int fd, size_t size)
{
	struct stat st;

	if (fstat(fd, &st))
		return fail("fstat: %s", strerror(errno));
	if ((size_t)st.st_size != size)
		return fail("size %lld, want %zu", (long long)st.st_size, size);
	return 0;
}

static long blocks_kib(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : (long)(st.st_blocks / 2);
}

static int new_memfd(size_t size, unsigned int flags)
{
	int fd = memfd_create("luo_rs_memfd", flags);

	if (fd < 0)
		fail_exit("memfd_create");
	if (ftruncate(fd, size))
		fail_exit("ftruncate to %zu", size);
	return fd;
}

static int setup_session(int luo_fd, const struct mcase *c)
{
	int sfd = luo_create_session(luo_fd, c->session);

	if (sfd < 0)
		fail_exit("%s: create session %s: %s", c->name, c->session, res(sfd));
	return sfd;	/* kept open by the daemonized child */
}

static void preserve(int sfd, const struct mcase *c, int mfd, __u64 token)
{
	int ret = luo_session_preserve_fd(sfd, mfd, token);

	if (ret)
		fail_exit("%s: preserve token %llu: %s", c->name, (unsigned long long)token,
			  res(ret));
}

static int get_session(int luo_fd, const struct mcase *c)
{
	int sfd = luo_retrieve_session(luo_fd, c->session);

	if (sfd < 0)
		fail("RETRIEVE_SESSION %s: %s", c->session, res(sfd));
	return sfd;
}

static int get_fd(int sfd, __u64 token)
{
	int fd = luo_session_retrieve_fd(sfd, token);

	if (fd < 0)
		fail("RETRIEVE_FD %llu: %s", (unsigned long long)token, res(fd));
	return fd;
}

/* Retrieve token 1 of the case's session, run @fn on it, FINISH. */
static int with_memfd(int luo_fd, const struct mcase *c, int (*fn)(int mfd))
{
	int sfd, mfd, ret = -1;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = get_fd(sfd, 1);
	if (mfd >= 0) {
		ret = fn(mfd);
		close(mfd);
		if (!ret && luo_session_finish(sfd))
			ret = fail("FINISH failed");
	}
	close(sfd);
	return ret;
}

/* ---- dense: 5 pages and 100 bytes, sealed, positioned ---- */
#define DENSE_SIZE	(5 * psz() + 100)
#define DENSE_POS	1234
#define DENSE_SEALS	(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

static void setup_dense(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(DENSE_SIZE, MFD_ALLOW_SEALING);

	fill(mfd, 0, DENSE_SIZE, 1);
	if (fcntl(mfd, F_ADD_SEALS, DENSE_SEALS))
		fail_exit("F_ADD_SEALS");
	if (lseek(mfd, DENSE_POS, SEEK_SET) != DENSE_POS)
		fail_exit("lseek");
	preserve(sfd, c, mfd, 1);
	close(mfd);
}

static int dense_ok(int mfd)
{
	int seals = fcntl(mfd, F_GET_SEALS);
	off_t pos = lseek(mfd, 0, SEEK_CUR);

	if (seals != DENSE_SEALS)
		return fail("seals %#x, want %#x", seals, DENSE_SEALS);
	if (pos != DENSE_POS)
		return fail("position %lld, want %d", (long long)pos, DENSE_POS);
	if (check_size(mfd, DENSE_SIZE) || verify(mfd, 0, DENSE_SIZE, 1))
		return -1;
	/* Sealed against writes and growth, as before. */
	if (pwrite(mfd, "x", 1, 0) != -1 || errno != EPERM)
		return fail("a write to the F_SEAL_WRITE memfd did not fail with EPERM");
	if (ftruncate(mfd, 2 * DENSE_SIZE) != -1 || errno != EPERM)
		return fail("growing the F_SEAL_GROW memfd did not fail with EPERM");
	return 0;
}

static int check_dense(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, dense_ok);
}

/* ---- all seals ---- */
static void setup_all_seals(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(psz(), MFD_ALLOW_SEALING);

	fill(mfd, 0, psz(), 2);
	if (fcntl(mfd, F_ADD_SEALS, ALL_SEALS))
		fail_exit("F_ADD_SEALS all");
	preserve(sfd, c, mfd, 1);
	close(mfd);
}

static int all_seals_ok(int mfd)
{
	int seals = fcntl(mfd, F_GET_SEALS);

	if (seals != ALL_SEALS)
		return fail("seals %#x, want %#x", seals, ALL_SEALS);
	/*
	 * F_SEAL_SEAL: no more seals. Both attempts must fail with EPERM, each on
	 * its own: adding no seal (memfd_add_seals() checks F_SEAL_SEAL before
	 * looking at what is added) and adding one that is already set. Either
	 * one succeeding means F_SEAL_SEAL is not in force on the new file.
	 */
	if (fcntl(mfd, F_ADD_SEALS, 0) != -1 || errno != EPERM)
		return fail("F_ADD_SEALS(0) on an F_SEAL_SEAL memfd did not fail with EPERM");
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK) != -1 || errno != EPERM)
		return fail("F_ADD_SEALS(F_SEAL_SHRINK) on an F_SEAL_SEAL memfd: not EPERM");
	return verify(mfd, 0, psz(), 2);
}

static int check_all_seals(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, all_seals_ok);
}

/* ---- empty ---- */
static void setup_empty(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(0, 0);

	preserve(sfd, c, mfd, 1);
	close(mfd);
}

static int empty_ok(int mfd)
{
	char b;

	if (check_size(mfd, 0))
		return -1;
	if (read(mfd, &b, 1) != 0)
		return fail("read of an empty memfd did not return 0");
	/* Not sealed: it can grow and be written. */
	if (ftruncate(mfd, psz()) || pwrite(mfd, "y", 1, 0) != 1)
		return fail("the retrieved empty memfd cannot grow: %s", strerror(errno));
	return 0;
}

static int check_empty(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, empty_ok);
}

/* ---- holes: 64 pages, pages 0, 10 and the first half of 63 written ---- */
#define HOLES_PAGES	64

static void setup_holes(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(HOLES_PAGES * psz(), 0);

	fill(mfd, 0, psz(), 3);
	fill(mfd, 10 * psz(), psz(), 3);
	fill(mfd, 63 * psz(), psz() / 2, 3);
	ksft_print_msg("%s: %ld KiB allocated before PRESERVE_FD\n", c->name, blocks_kib(mfd));
	preserve(sfd, c, mfd, 1);
	ksft_print_msg("%s: %ld KiB allocated after PRESERVE_FD (C handler: every hole filled)\n",
		       c->name, blocks_kib(mfd));
	close(mfd);
}

static int holes_ok(int mfd)
{
	size_t p = psz();

	ksft_print_msg("%s: %ld KiB allocated after RETRIEVE_FD\n", cur_case, blocks_kib(mfd));
	if (check_size(mfd, HOLES_PAGES * p))
		return -1;
	if (verify(mfd, 0, p, 3) || verify(mfd, p, 9 * p, 0) || verify(mfd, 10 * p, p, 3) ||
	    verify(mfd, 11 * p, 52 * p, 0) || verify(mfd, 63 * p, p / 2, 3) ||
	    verify(mfd, 63 * p + p / 2, p / 2, 0))
		return -1;
	return 0;
}

static int check_holes(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, holes_ok);
}

/* ---- fallocated, never written: reads zero ---- */
static void setup_fallocated(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(8 * psz(), 0);

	if (fallocate(mfd, 0, 2 * psz(), 4 * psz()))
		fail_exit("fallocate");
	fill(mfd, 7 * psz(), psz(), 4);
	preserve(sfd, c, mfd, 1);
	close(mfd);
}

static int fallocated_ok(int mfd)
{
	return check_size(mfd, 8 * psz()) || verify(mfd, 0, 7 * psz(), 0) ||
	       verify(mfd, 7 * psz(), psz(), 4);
}

static int check_fallocated(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, fallocated_ok);
}

/*
 * ---- after PRESERVE_FD: the position moves, data is overwritten and a hole
 * is written (the fd stays open until the kexec) ----
 */
#define LATE_PAGES	16
#define LATE_POS	777

static void setup_late_writes(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(LATE_PAGES * psz(), 0);
	char *m;

	fill(mfd, 0, 2 * psz(), 5);
	if (lseek(mfd, 100, SEEK_SET) != 100)
		fail_exit("lseek");
	preserve(sfd, c, mfd, 1);
	/* Overwrite page 1, write holes 5 and 12 (one through a mapping). */
	fill(mfd, psz(), psz(), 6);
	fill(mfd, 5 * psz(), psz(), 6);
	m = mmap(NULL, LATE_PAGES * psz(), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (m == MAP_FAILED)
		fail_exit("mmap");
	for (size_t i = 0; i < psz(); i++)
		m[12 * psz() + i] = pattern(6, 12 * psz() + i);
	munmap(m, LATE_PAGES * psz());
	if (lseek(mfd, LATE_POS, SEEK_SET) != LATE_POS)
		fail_exit("lseek");
	/* Growing is refused while preserved. */
	if (ftruncate(mfd, 2 * LATE_PAGES * psz()) != -1 || errno != EPERM)
		fail_exit("%s: growing a preserved memfd did not fail with EPERM", c->name);
	/* mfd stays open: the child keeps it until the kexec. */
}

static int late_writes_ok(int mfd)
{
	size_t p = psz();
	off_t pos = lseek(mfd, 0, SEEK_CUR);

	if (pos != LATE_POS)
		return fail("position %lld, want %d (set after PRESERVE_FD)", (long long)pos,
			    LATE_POS);
	if (check_size(mfd, LATE_PAGES * p) || verify(mfd, 0, p, 5) || verify(mfd, p, p, 6) ||
	    verify(mfd, 2 * p, 3 * p, 0) || verify(mfd, 5 * p, p, 6) ||
	    verify(mfd, 6 * p, 6 * p, 0) || verify(mfd, 12 * p, p, 6) ||
	    verify(mfd, 13 * p, 3 * p, 0))
		return -1;
	return 0;
}

static int check_late_writes(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, late_writes_ok);
}

/* ---- a bigger dense memfd: 8 MiB of pattern ---- */
#define BIG_SIZE	(8 << 20)

static void setup_big(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(BIG_SIZE, 0);

	fill(mfd, 0, BIG_SIZE, 7);
	preserve(sfd, c, mfd, 1);
	close(mfd);
}

static int big_ok(int mfd)
{
	return check_size(mfd, BIG_SIZE) || verify(mfd, 0, BIG_SIZE, 7);
}

static int check_big(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, big_ok);
}

/*
 * ---- shmem THP: a memfd of 2 MiB folios comes back in 2 MiB folios ----
 * Stage 1 turns shmem THP on for the internal mount (shmem_enabled "always",
 * put back afterwards), writes 8 MiB of a 10 MiB memfd (four PMD-sized
 * folios, a 2 MiB hole) and checks ShmemHugePages grew by 8 MiB. Stage 2
 * boots with shmem THP off: RETRIEVE_FD must bring ShmemHugePages up by the
 * same 8 MiB (the folios kept their size, not split to 4 KiB), the contents
 * and the hole must be intact, and punching 4 KiB out of a restored folio
 * (which splits it) must zero just that range.
 */
#define THP_SIZE	(10 << 20)
#define THP_DATA	(8 << 20)
#define THP_CTL		"/sys/kernel/mm/transparent_hugepage/shmem_enabled"

static void thp_set(const char *mode)
{
	int fd = open(THP_CTL, O_WRONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : write(fd, mode, strlen(mode));

	if (n != (ssize_t)strlen(mode))
		fail_exit("writing %s to %s", mode, THP_CTL);
	close(fd);
}

static void setup_thp(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd;
	long before = meminfo_kib("ShmemHugePages"), after;

	thp_set("always");
	mfd = new_memfd(THP_SIZE, 0);
	fill(mfd, 0, THP_DATA, 12);
	after = meminfo_kib("ShmemHugePages");
	thp_set("never");
	if (before < 0 || after - before != THP_DATA >> 10)
		fail_exit("%s: ShmemHugePages %ld -> %ld kB, want %d more: no shmem THP",
			  c->name, before, after, THP_DATA >> 10);
	preserve(sfd, c, mfd, 1);
	/* Pinning may migrate a folio out of KHO's scratch: still whole? */
	if (meminfo_kib("ShmemHugePages") != after)
		fail_exit("%s: ShmemHugePages %ld -> %ld kB at PRESERVE_FD: a folio was split",
			  c->name, after, meminfo_kib("ShmemHugePages"));
	close(mfd);
}

static int check_thp(int luo_fd, const struct mcase *c)
{
	long before = meminfo_kib("ShmemHugePages"), after;
	int sfd, mfd, ret = -1;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = get_fd(sfd, 1);
	if (mfd < 0)
		goto out;
	after = meminfo_kib("ShmemHugePages");
	if (before < 0 || after - before != THP_DATA >> 10) {
		fail("ShmemHugePages %ld -> %ld kB at RETRIEVE_FD, want %d more: the folios did not come back whole",
		     before, after, THP_DATA >> 10);
	} else if (!check_size(mfd, THP_SIZE) && !verify(mfd, 0, THP_DATA, 12) &&
		   !verify(mfd, THP_DATA, THP_SIZE - THP_DATA, 0)) {
		if (fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 4096))
			fail("punching 4 KiB out of a restored folio: %s", strerror(errno));
		else if (!verify(mfd, 0, 1 << 20, 12) && !verify(mfd, 1 << 20, 4096, 0) &&
			 !verify(mfd, (1 << 20) + 4096, THP_DATA - (1 << 20) - 4096, 12))
			ret = 0;
	}
	close(mfd);
	if (!ret && luo_session_finish(sfd))
		ret = fail("FINISH failed");
out:
	close(sfd);
	return ret;
}

/*
 * ---- never retrieved: FINISH frees it, the next file of the session is intact ----
 *
 * Token 1 is a big memfd, every page written, that stage 2 never retrieves;
 * token 2 a small one it does. A never-retrieved file is the handler's to free
 * at FINISH (finish() with no retrieve: memfd_luo_discard_folios() in C,
 * discard_folios() in Rust). Until then its folios are reserved memory, not
 * free (KHO keeps them out of the allocator). So FINISH must raise MemFree by
 * about UNRETRIEVED_SIZE: the assertion asks for at least 3/4 of it. The slack
 * covers pages that the free path leaves on the per-CPU lists (not counted in
 * MemFree; a few MiB at most with 2 CPUs) and unrelated allocations meanwhile
 * (nothing else runs); a leak of the folios (never restored, or restored and
 * not put) frees ~0 and cannot reach it. 128 MiB is unmistakable in a 2 GiB
 * guest and still leaves room for the kexec there, with KASAN too.
 */
#define UNRETRIEVED_SIZE	(128UL << 20)
#define UNRETRIEVED_MIN_FREED	(UNRETRIEVED_SIZE / 4 * 3)

static void setup_unretrieved(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), a = new_memfd(UNRETRIEVED_SIZE, 0);
	int b = new_memfd(psz(), 0);
	unsigned char *m;

	/* Every page allocated and dirty (a hole would not be preserved memory). */
	m = mmap(NULL, UNRETRIEVED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, a, 0);
	if (m == MAP_FAILED)
		fail_exit("mmap of %lu bytes", UNRETRIEVED_SIZE);
	memset(m, 0x5a, UNRETRIEVED_SIZE);
	munmap(m, UNRETRIEVED_SIZE);
	fill(b, 0, psz(), 9);
	preserve(sfd, c, a, 1);
	preserve(sfd, c, b, 2);
	close(a);
	close(b);
}

static int check_unretrieved(int luo_fd, const struct mcase *c)
{
	long free0, free1, total0, total1;
	int sfd, mfd, ret = -1;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = get_fd(sfd, 2);
	if (mfd >= 0) {
		ret = verify(mfd, 0, psz(), 9);
		free0 = meminfo_kib("MemFree");
		total0 = meminfo_kib("MemTotal");
		if (!ret && luo_session_finish(sfd))
			ret = fail("FINISH with token 1 never retrieved failed");
		free1 = meminfo_kib("MemFree");
		total1 = meminfo_kib("MemTotal");
		if (!ret && (free0 < 0 || free1 < 0))
			ret = fail("no MemFree in /proc/meminfo");
		if (!ret) {
			/* MemTotal too grows if the handler restored the folios (KHO). */
			ksft_print_msg("%s: FINISH freed %ld KiB (MemTotal %+ld KiB), want >= %lu\n",
				       cur_case, free1 - free0, total1 - total0,
				       UNRETRIEVED_MIN_FREED >> 10);
			if (free1 - free0 < (long)(UNRETRIEVED_MIN_FREED >> 10))
				ret = fail("FINISH freed %ld KiB of the %lu KiB never retrieved",
					   free1 - free0, UNRETRIEVED_SIZE >> 10);
		}
		/* The retrieved one survives FINISH. */
		if (!ret)
			ret = verify(mfd, 0, psz(), 9);
		close(mfd);
	}
	close(sfd);
	return ret;
}

/*
 * ---- MFD_NOEXEC_SEAL: mode 0666 and F_SEAL_EXEC, writable; it must come back
 * so, not 0777 and write-sealed (F_SEAL_EXEC added to a file with exec bits
 * adds the write seals): a VMM maps its guest RAM shared and writable ----
 */
#define NOEXEC_PAGES	4
#define NOEXEC_MODE	0666

/* The permission bits of @fd, -1 if fstat() fails. */
static int mode_of(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : (int)(st.st_mode & 07777);
}

static void setup_noexec(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c);
	int mfd = new_memfd(NOEXEC_PAGES * psz(), MFD_NOEXEC_SEAL | MFD_ALLOW_SEALING);
	int mode = mode_of(mfd), seals = fcntl(mfd, F_GET_SEALS);

	if (mode != NOEXEC_MODE || seals != F_SEAL_EXEC)
		fail_exit("%s: MFD_NOEXEC_SEAL made mode %#o and seals %#x, want %#o and %#x",
			  c->name, mode, seals, NOEXEC_MODE, F_SEAL_EXEC);
	fill(mfd, 0, NOEXEC_PAGES * psz(), 11);
	preserve(sfd, c, mfd, 1);
	close(mfd);
}

static int noexec_ok(int mfd)
{
	size_t i, len = NOEXEC_PAGES * psz();
	int mode = mode_of(mfd), seals = fcntl(mfd, F_GET_SEALS);
	unsigned char *m;

	if (mode != NOEXEC_MODE)
		return fail("mode %#o, want %#o (as MFD_NOEXEC_SEAL made it)", mode, NOEXEC_MODE);
	if (seals != F_SEAL_EXEC)
		return fail("seals %#x, want %#x (F_SEAL_EXEC only)", seals, F_SEAL_EXEC);
	if (check_size(mfd, len) || verify(mfd, 0, len, 11))
		return -1;
	/* F_SEAL_EXEC is in force: the exec bits cannot be set. */
	if (fchmod(mfd, 0777) != -1 || errno != EPERM)
		return fail("fchmod(0777) of the F_SEAL_EXEC memfd did not fail with EPERM");
	/* A VMM maps it as guest RAM and writes through the mapping. */
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (m == MAP_FAILED)
		return fail("mmap(PROT_READ | PROT_WRITE, MAP_SHARED): %s", strerror(errno));
	for (i = 0; i < len; i++)
		m[i] = pattern(12, i);
	munmap(m, len);
	return verify(mfd, 0, len, 12);
}

static int check_noexec(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, noexec_ok);
}

/*
 * ---- seals added after PRESERVE_FD: F_SEAL_SHRINK before it, F_SEAL_GROW and
 * then F_SEAL_SEAL after it (the fd stays open until the kexec); all three
 * must come back ----
 */
#define LATE_SEALS	(F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static void setup_late_seals(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(2 * psz(), MFD_ALLOW_SEALING);
	int seals;

	fill(mfd, 0, 2 * psz(), 13);
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK))
		fail_exit("F_ADD_SEALS(F_SEAL_SHRINK)");
	preserve(sfd, c, mfd, 1);
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_GROW))
		fail_exit("%s: F_ADD_SEALS(F_SEAL_GROW) after PRESERVE_FD", c->name);
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SEAL))
		fail_exit("%s: F_ADD_SEALS(F_SEAL_SEAL) after PRESERVE_FD", c->name);
	seals = fcntl(mfd, F_GET_SEALS);
	if (seals != LATE_SEALS)
		fail_exit("%s: seals %#x after PRESERVE_FD, want %#x", c->name, seals, LATE_SEALS);
	/* mfd stays open: the child keeps it until the kexec. */
}

static int late_seals_ok(int mfd)
{
	int seals = fcntl(mfd, F_GET_SEALS);

	if (seals != LATE_SEALS)
		return fail("seals %#x, want %#x (F_SEAL_GROW and F_SEAL_SEAL added after PRESERVE_FD)",
			    seals, LATE_SEALS);
	if (check_size(mfd, 2 * psz()) || verify(mfd, 0, 2 * psz(), 13))
		return -1;
	if (ftruncate(mfd, 4 * psz()) != -1 || errno != EPERM)
		return fail("growing the F_SEAL_GROW memfd did not fail with EPERM");
	if (ftruncate(mfd, psz()) != -1 || errno != EPERM)
		return fail("shrinking the F_SEAL_SHRINK memfd did not fail with EPERM");
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE) != -1 || errno != EPERM)
		return fail("F_ADD_SEALS on the F_SEAL_SEAL memfd did not fail with EPERM");
	/* Not write-sealed. */
	if (pwrite(mfd, "z", 1, 0) != 1)
		return fail("a write to the memfd failed: %s", strerror(errno));
	return 0;
}

static int check_late_seals(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, late_seals_ok);
}

/* ---- corruption (Rust handler's test file only) ---- */
#define CORRUPT_PAGES	512

/*
 * ---- a writer racing the kexec ----
 * Token 1 is a 256 MiB memfd of holes; token 2 a one-page log, written before
 * PRESERVE_FD so that its page exists and is preserved. A child waits until
 * stage 1 has exited (the harness kexecs right after), then writes page after
 * page into the holes of token 1 as fast as it can and, after each pwrite()
 * that returned success, stores the count of pages written into the log
 * through a shared mapping. It runs until the CPUs stop for the jump, well past
 * the handler's last look at the file. Stage 2 checks every page the log
 * counts: a write that returned success must have arrived. (A handler may
 * refuse writes into holes once it has taken its last look: the writer stops
 * at the first failure.)
 */
#define RACE_PAGES	65536UL

struct race_log {
	uint64_t done;		/* pages 0..done-1 were written, pwrite() said so */
};

static void race_page(unsigned char *buf, uint64_t k)
{
	for (size_t i = 0; i < psz(); i++)
		buf[i] = pattern(7, k * psz() + i);
	memcpy(buf, &k, sizeof(k));
}

static void setup_race(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(RACE_PAGES * psz(), 0);
	int lfd = new_memfd(psz(), 0);
	pid_t parent = getpid(), pid;

	fill(lfd, 0, psz(), 0);
	if (pwrite(lfd, &(uint64_t){ 0 }, sizeof(uint64_t), 0) != sizeof(uint64_t))
		fail_exit("%s: zeroing the log", c->name);
	preserve(sfd, c, mfd, 1);
	preserve(sfd, c, lfd, 2);
	pid = fork();
	if (pid < 0)
		fail_exit("%s: fork", c->name);
	if (pid == 0) {
		struct race_log *log = mmap(NULL, psz(), PROT_READ | PROT_WRITE, MAP_SHARED,
					    lfd, 0);
		unsigned char *buf = malloc(psz());

		if (log == MAP_FAILED || !buf)
			_exit(1);
		/* Stage 1 exits after the last setup; then the harness kexecs. */
		while (getppid() == parent)
			usleep(1000);
		for (uint64_t k = 0; k < RACE_PAGES; k++) {
			race_page(buf, k);
			if (pwrite(mfd, buf, psz(), k * psz()) != (ssize_t)psz())
				break;
			__atomic_store_n(&log->done, k + 1, __ATOMIC_RELEASE);
		}
		/* Finished before the jump: stage 2 says so. */
		for (;;)
			pause();
	}
}

static int check_race(int luo_fd, const struct mcase *c)
{
	int sfd, mfd = -1, lfd = -1, ret = -1;
	unsigned char *want = malloc(psz()), *got = malloc(psz());
	uint64_t done = 0;

	sfd = get_session(luo_fd, c);
	if (sfd < 0 || !want || !got)
		goto out;
	mfd = get_fd(sfd, 1);
	lfd = get_fd(sfd, 2);
	if (mfd < 0 || lfd < 0)
		goto out_close;
	if (pread(lfd, &done, sizeof(done), 0) != sizeof(done)) {
		fail("reading the log: %s", strerror(errno));
		goto out_close;
	}
	ksft_print_msg("%s: %llu of %lu pages written before the kexec\n", c->name,
		       (unsigned long long)done, RACE_PAGES);
	if (done == 0 || done >= RACE_PAGES) {
		/* The writer never ran, or finished early: nothing raced the kexec. */
		fail("the writer wrote %llu of %lu pages: it did not race the kexec",
		     (unsigned long long)done, RACE_PAGES);
		goto out_close;
	}
	if (check_size(mfd, RACE_PAGES * psz()))
		goto out_close;
	for (uint64_t k = 0; k < done; k++) {
		race_page(want, k);
		if (pread(mfd, got, psz(), k * psz()) != (ssize_t)psz()) {
			fail("pread of page %llu: %s", (unsigned long long)k, strerror(errno));
			goto out_close;
		}
		if (memcmp(want, got, psz())) {
			uint64_t lost = 0;

			for (uint64_t j = k; j < done; j++) {
				race_page(want, j);
				if (pread(mfd, got, psz(), j * psz()) != (ssize_t)psz() ||
				    memcmp(want, got, psz()))
					lost++;
			}
			fail("page %llu, written with success before the kexec, is not there (%llu of %llu such pages lost)",
			     (unsigned long long)k, (unsigned long long)lost,
			     (unsigned long long)done);
			goto out_close;
		}
	}
	ret = luo_session_finish(sfd) ? fail("FINISH failed") : 0;
out_close:
	if (mfd >= 0)
		close(mfd);
	if (lfd >= 0)
		close(lfd);
	close(sfd);
out:
	free(want);
	free(got);
	return ret;
}

/*
 * ---- an O_TMPFILE tmpfs file linked after PRESERVE_FD ----
 * It was a memfd to the handler when preserved (a shmem file without links);
 * linkat() then names it. It must still freeze and cross the kexec. A second
 * one, in a session closed before the kexec, must thaw when unpreserved (it
 * can be resized again) and give its id back: unlinked again, it can be
 * preserved again.
 */
#define TMPFILE_PAGES	2

static int new_tmpfile(const struct mcase *c)
{
	int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);

	if (fd < 0)
		fail_exit("%s: open(O_TMPFILE) in /tmp", c->name);
	if (ftruncate(fd, TMPFILE_PAGES * psz()))
		fail_exit("%s: ftruncate", c->name);
	fill(fd, 0, TMPFILE_PAGES * psz(), 9);
	return fd;
}

static void link_tmpfile(const struct mcase *c, int fd, const char *name)
{
	char path[64], proc[64];

	snprintf(path, sizeof(path), "/tmp/%s", name);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW))
		fail_exit("%s: linkat %s", c->name, path);
}

static void setup_tmpfile(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), fd = new_tmpfile(c);
	int other, tfd, ret;

	preserve(sfd, c, fd, 1);
	link_tmpfile(c, fd, "luo_rs_tmpfile");

	tfd = new_tmpfile(c);
	other = luo_create_session(luo_fd, "rs-memfd-tmpfile-other");
	if (other < 0)
		fail_exit("%s: create session rs-memfd-tmpfile-other: %s", c->name, res(other));
	ret = luo_session_preserve_fd(other, tfd, 1);
	if (ret)
		fail_exit("%s: preserve the second file: %s", c->name, res(ret));
	link_tmpfile(c, tfd, "luo_rs_tmpfile_thaw");
	if (ftruncate(tfd, psz()) != -1 || errno != EPERM)
		fail_exit("%s: resizing a preserved file did not fail with EPERM", c->name);
	/* Closing the session unpreserves the file. */
	close(other);
	if (ftruncate(tfd, psz()))
		fail_exit("%s: resizing the file after its session closed: %s", c->name,
			  strerror(errno));
	if (unlink("/tmp/luo_rs_tmpfile_thaw"))
		fail_exit("%s: unlink", c->name);
	other = luo_create_session(luo_fd, "rs-memfd-tmpfile-other");
	if (other < 0)
		fail_exit("%s: create session rs-memfd-tmpfile-other again: %s", c->name,
			  res(other));
	ret = luo_session_preserve_fd(other, tfd, 1);
	if (ret)
		fail_exit("%s: preserving the file again after its session closed: %s, want success",
			  c->name, res(ret));
	close(other);
	close(tfd);
	/* fd stays open: the child keeps it until the kexec. */
}

static int tmpfile_ok(int mfd)
{
	if (check_size(mfd, TMPFILE_PAGES * psz()) || verify(mfd, 0, TMPFILE_PAGES * psz(), 9))
		return -1;
	return 0;
}

static int check_tmpfile(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, tmpfile_ok);
}

static void setup_corrupt(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(CORRUPT_PAGES * psz(), 0);
	int dev, ret = -1;

	fill(mfd, 0, 2 * psz(), 10);
	fill(mfd, 100 * psz(), psz(), 10);
	fill(mfd, 300 * psz(), psz(), 10);
	preserve(sfd, c, mfd, 1);
	dev = open(MEMFD_TEST_DEV, O_RDWR);
	if (dev >= 0) {
		ret = ioctl(dev, MEMFD_CORRUPT, (unsigned long)mfd << 8 | c->corrupt);
		close(dev);
	}
	if (ret)
		fail_exit("%s: cannot arm the corruption through %s: %s", c->name,
			  MEMFD_TEST_DEV, strerror(errno));
	close(mfd);
}

static int check_corrupt(int luo_fd, const struct mcase *c)
{
	int sfd, mfd, ret = -1;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd >= 0) {
		close(mfd);
		fail("RETRIEVE_FD of a corrupt memfd succeeded, want %s", strerrorname_np(c->want));
	} else if (mfd != -c->want) {
		fail("RETRIEVE_FD: %s, want %s", res(mfd), strerrorname_np(c->want));
	} else if (luo_session_retrieve_fd(sfd, 1) != -c->want) {
		fail("a second RETRIEVE_FD did not give %s again", strerrorname_np(c->want));
	} else if (luo_session_finish(sfd)) {
		fail("FINISH after the failed retrieve failed");
	} else {
		ret = 0;
	}
	close(sfd);
	return ret;
}

#ifdef LUO_RS_MEMFD_CORRUPT
/*
 * Mode 9 drops the DIRTY flag of every folio entry: the handover is sound, but
 * a clean shmem folio has no copy anywhere, and reclaim would drop it. The
 * folios must come back with their data, and dirty (/proc/kpageflags).
 */
#define KPF_DIRTY	4

static int page_dirty(int fd, size_t off)
{
	uint64_t ent = 0, flags = 0;
	int pm, kf, ret = -1;
	char *m;

	m = mmap(NULL, psz(), PROT_READ, MAP_SHARED, fd, off);
	if (m == MAP_FAILED)
		return fail("mmap: %s", strerror(errno));
	/* Fault the page in (a read the compiler cannot drop). */
	(void)__atomic_load_n(m, __ATOMIC_RELAXED);
	pm = open("/proc/self/pagemap", O_RDONLY);
	kf = open("/proc/kpageflags", O_RDONLY);
	if (pm < 0 || kf < 0) {
		fail("open /proc/self/pagemap or /proc/kpageflags: %s", strerror(errno));
	} else if (pread(pm, &ent, 8, (uintptr_t)m / psz() * 8) != 8 || !(ent >> 63) ||
		   !(ent & ((1ULL << 55) - 1))) {
		fail("no pfn for the page at %zu (pagemap %#llx)", off, (unsigned long long)ent);
	} else if (pread(kf, &flags, 8, (ent & ((1ULL << 55) - 1)) * 8) != 8) {
		fail("reading kpageflags: %s", strerror(errno));
	} else {
		ret = (flags >> KPF_DIRTY) & 1;
	}
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	munmap(m, psz());
	return ret;
}

static int clean_entries_ok(int mfd)
{
	static const size_t pages[] = { 0, 1, 100, 300 };
	size_t i;
	int d;

	for (i = 0; i < ARRAY_SIZE(pages); i++) {
		if (verify(mfd, pages[i] * psz(), psz(), 10))
			return -1;
		d = page_dirty(mfd, pages[i] * psz());
		if (d < 0)
			return -1;
		if (!d)
			return fail("page %zu came back clean", pages[i]);
	}
	return 0;
}

static int check_clean_entries(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, clean_entries_ok);
}
#endif

/*
 * A task holds the memfd's inode lock through a reboot (the test file
 * sleeps 3 s holding it, as a write(2) stuck on a fault would) while freeze
 * needs it (a hole was written after PRESERVE_FD): freeze gives up after a
 * second, the reboot fails with EBUSY instead of hanging, and the file
 * is as before: writable, holes too (new folios allowed again), still
 * preserved (not resizable). Stage 2 finds the page written after the failed
 * reboot. It runs first, before any corruption is armed.
 */
struct hold {
	int dev, mfd, ret;
};

static void *hold_lock(void *arg)
{
	struct hold *h = arg;

	h->ret = ioctl(h->dev, MEMFD_HOLD_LOCK, h->mfd) ? -errno : 0;
	return NULL;
}

static void setup_held_lock(int luo_fd, const struct mcase *c)
{
	int sfd = setup_session(luo_fd, c), mfd = new_memfd(4 * psz(), 0);
	struct hold h = { .mfd = mfd };
	pthread_t t;
	long rb;

	fill(mfd, 0, psz(), 11);
	preserve(sfd, c, mfd, 1);
	/* A page the last walk must find: freeze needs the inode lock. */
	fill(mfd, psz(), psz(), 11);
	h.dev = open(MEMFD_TEST_DEV, O_RDWR);
	if (h.dev < 0)
		fail_exit("%s: open %s", c->name, MEMFD_TEST_DEV);
	if (pthread_create(&t, NULL, hold_lock, &h))
		fail_exit("%s: pthread_create", c->name);
	usleep(300 * 1000);
	rb = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		     LINUX_REBOOT_CMD_KEXEC, NULL) ? -errno : 0;
	pthread_join(t, NULL);
	close(h.dev);
	if (h.ret)
		fail_exit("%s: HOLD_LOCK: %s", c->name, strerror(-h.ret));
	if (rb != -EBUSY)
		fail_exit("%s: the reboot gave %s, want EBUSY", c->name, res(rb));
	/* A hole can be written again, and the file is still preserved. */
	fill(mfd, 2 * psz(), psz(), 11);
	if (ftruncate(mfd, psz()) != -1 || errno != EPERM)
		fail_exit("%s: resizing the memfd after the failed reboot did not fail with EPERM",
			  c->name);
	/* mfd stays open: the child keeps it until the kexec. */
}

static int held_lock_ok(int mfd)
{
	size_t p = psz();

	if (check_size(mfd, 4 * p) || verify(mfd, 0, 3 * p, 11) || verify(mfd, 3 * p, p, 0))
		return -1;
	return 0;
}

static int check_held_lock(int luo_fd, const struct mcase *c)
{
	return with_memfd(luo_fd, c, held_lock_ok);
}

#define CORRUPT_CASE(n, mode, err) \
	{ "corrupt_" n, "rs-memfd-corrupt-" n, setup_corrupt, check_corrupt, mode, err }

#ifndef LUO_RS_MEMFD_CORRUPT
static const struct mcase cases[] = {
	{ "dense_contents_size_seals_pos", "rs-memfd-dense", setup_dense, check_dense },
	{ "all_seals", "rs-memfd-all-seals", setup_all_seals, check_all_seals },
	{ "empty", "rs-memfd-empty", setup_empty, check_empty },
	{ "holes_read_zero", "rs-memfd-holes", setup_holes, check_holes },
	{ "fallocated_reads_zero", "rs-memfd-falloc", setup_fallocated, check_fallocated },
	{ "writes_and_pos_after_preserve", "rs-memfd-late", setup_late_writes, check_late_writes },
	{ "dense_8mib", "rs-memfd-big", setup_big, check_big },
	{ "unretrieved_freed_by_finish", "rs-memfd-unretrieved", setup_unretrieved,
	  check_unretrieved },
	{ "noexec_seal_mode_seals_writable_map", "rs-memfd-noexec", setup_noexec, check_noexec },
	{ "seals_added_after_preserve", "rs-memfd-late-seals", setup_late_seals,
	  check_late_seals },
	{ "tmpfile_linked_after_preserve", "rs-memfd-tmpfile", setup_tmpfile, check_tmpfile },
	{ "thp_folios_come_back_large", "rs-memfd-thp", setup_thp, check_thp },
	/* Last: its writer starts when stage 1 exits. */
	{ "writes_racing_the_kexec_are_kept", "rs-memfd-race", setup_race, check_race },
};
#else
static const struct mcase cases[] = {
	{ "freeze_gives_up_on_a_held_inode_lock", "rs-memfd-held-lock", setup_held_lock,
	  check_held_lock },
	/* A sound memfd next to the corrupt ones comes back intact. */
	{ "sound_memfd_next_to_corrupt_ones", "rs-memfd-dense", setup_dense, check_dense },
	CORRUPT_CASE("bad_pfn", 1, EINVAL),
	CORRUPT_CASE("index_beyond_size", 2, EINVAL),
	CORRUPT_CASE("nr_folios_beyond_array", 3, EINVAL),
	CORRUPT_CASE("unknown_folio_flags", 4, EINVAL),
	CORRUPT_CASE("unknown_header_flags", 5, EINVAL),
	CORRUPT_CASE("unknown_seals", 6, EOPNOTSUPP),
	CORRUPT_CASE("bad_array_address", 7, EINVAL),
	CORRUPT_CASE("unsorted_indices", 8, EINVAL),
	{ "entries_without_dirty_come_back_dirty", "rs-memfd-corrupt-clean", setup_corrupt,
	  check_clean_entries, 9, 0 },
};
#endif

static void run_stage_1(int luo_fd)
{
	size_t i;

	ksft_print_msg("[STAGE 1] preparing %zu sessions\n", ARRAY_SIZE(cases));
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	for (i = 0; i < ARRAY_SIZE(cases); i++)
		cases[i].setup(luo_fd, &cases[i]);
	close(luo_fd);
	daemonize_and_wait();
}

static void run_stage_2(int luo_fd, int state_session_fd)
{
	size_t i;
	int stage, r;

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(cases));
	restore_and_read_stage(state_session_fd, STATE_MEMFD_TOKEN, &stage);
	if (stage != 2)
		ksft_exit_fail_msg("state session says stage %d, want 2\n", stage);

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		cur_case = cases[i].name;
		r = cases[i].check(luo_fd, &cases[i]);
		if (r)
			ksft_test_result_fail("%s\n", cases[i].name);
		else
			ksft_test_result_pass("%s\n", cases[i].name);
	}

	if (luo_session_finish(state_session_fd))
		ksft_print_msg("FINISH of the state session failed\n");
	close(state_session_fd);
	close(luo_fd);
	ksft_finished();
}

int main(int argc, char *argv[])
{
	size_t i;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (i = 0; i < ARRAY_SIZE(cases); i++)
			printf("%s\n", cases[i].name);
		return 0;
	}
	return luo_test(argc, argv, STATE_SESSION_NAME, run_stage_1, run_stage_2);
}
