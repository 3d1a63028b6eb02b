// SPDX-License-Identifier: GPL-2.0-only
/*
 * Session and file lifecycle rules of LUO across one kexec, which upstream's
 * kexec tests do not cover: RETRIEVE_FD idempotence, FINISH semantics, the
 * session kind checks on a real incoming session, name reuse, the implicit
 * FINISH on close, the preserved-files table (EBUSY) and the full memfd state
 * (size, seals, position and contents).
 *
 * Stage 1 (-s 1, before the kexec) creates one session per check plus a state
 * session, and leaves the session fds to a daemonized child so that they are
 * still open when the kexec serializes them. Stage 2 (-s 2) runs every check
 * on its own session and prints one KTAP result line per check. --list prints
 * the check names, one per line.
 *
 * The expected results are those of the upstream C LUO
 * (kernel/liveupdate/luo_session.c, luo_file.c, mm/memfd_luo.c).
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libliveupdate.h>
#include <linux/kcmp.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_kexec_state"
#define STATE_MEMFD_TOKEN	997

/* memfd_state_survives: 3 pages and a bit, sealed, positioned. */
#define STATE_EXTRA		100
#define STATE_POS		1234
#define STATE_SEALS		(F_SEAL_SHRINK | F_SEAL_GROW)

struct rs_case {
	const char *name;
	const char *session;
	void (*setup)(int luo_fd, const struct rs_case *c);
	int (*check)(int luo_fd, const struct rs_case *c);
};

static const char *cur_case = "";

/* Print why the current check failed; always returns -1. */
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

static void close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

static size_t page_size(void)
{
	return getpagesize();
}

/* A byte pattern that differs per seed, per page and per offset. */
static unsigned char pattern(unsigned int seed, size_t off)
{
	return (off * 31 + (off / page_size()) * 7 + seed * 101) & 0xff;
}

/*
 * A memfd of @size bytes filled with pattern(@seed). pwrite() is used, so the
 * file position stays 0.
 */
static int make_memfd(size_t size, unsigned int seed, unsigned int flags)
{
	unsigned char buf[4096];
	size_t off, i, n;
	int fd;

	fd = memfd_create("luo_rs_kexec", flags);
	if (fd < 0)
		fail_exit("memfd_create");
	if (ftruncate(fd, size))
		fail_exit("ftruncate to %zu", size);
	for (off = 0; off < size; off += n) {
		n = size - off < sizeof(buf) ? size - off : sizeof(buf);
		for (i = 0; i < n; i++)
			buf[i] = pattern(seed, off + i);
		if (pwrite(fd, buf, n, off) != (ssize_t)n)
			fail_exit("pwrite at %zu", off);
	}
	return fd;
}

/* Check that @fd is @size bytes long and holds pattern(@seed). */
static int verify_memfd(int fd, size_t size, unsigned int seed)
{
	unsigned char buf[4096];
	size_t off, i, n;
	struct stat st;

	if (fstat(fd, &st))
		return fail("fstat: %s", strerror(errno));
	if ((size_t)st.st_size != size)
		return fail("size %lld, want %zu", (long long)st.st_size, size);
	for (off = 0; off < size; off += n) {
		n = size - off < sizeof(buf) ? size - off : sizeof(buf);
		if (pread(fd, buf, n, off) != (ssize_t)n)
			return fail("pread of %zu bytes at %zu: %s", n, off, strerror(errno));
		for (i = 0; i < n; i++) {
			if (buf[i] != pattern(seed, off + i))
				return fail("byte %zu is %#x, want %#x", off + i, buf[i],
					    pattern(seed, off + i));
		}
	}
	return 0;
}

/* Stage 1 helpers: they end the test on any error (no kexec then). */
static int setup_session(int luo_fd, const struct rs_case *c)
{
	int sfd = luo_create_session(luo_fd, c->session);

	if (sfd < 0)
		fail_exit("%s: create session %s: %s", c->name, c->session, res(sfd));
	/* Never closed: the daemonized child keeps it open until the kexec. */
	return sfd;
}

static void preserve_memfd(int sfd, const struct rs_case *c, __u64 token, size_t size,
			   unsigned int seed)
{
	int mfd = make_memfd(size, seed, 0);
	int ret = luo_session_preserve_fd(sfd, mfd, token);

	if (ret)
		fail_exit("%s: preserve token %#llx: %s", c->name, (unsigned long long)token,
			  res(ret));
	close(mfd);
}

/* Stage 2 helper: retrieve the check's incoming session. */
static int get_session(int luo_fd, const struct rs_case *c)
{
	int sfd = luo_retrieve_session(luo_fd, c->session);

	if (sfd < 0)
		fail("RETRIEVE_SESSION %s: %s", c->session, res(sfd));
	return sfd;
}

static int finish(int sfd)
{
	int ret = luo_session_finish(sfd);

	if (ret)
		return fail("FINISH: %s, want success", res(ret));
	return 0;
}

/* ---- checks ---- */

/* Generic setup: one memfd of one page, token 1, seed 1. */
static void setup_one_memfd(int luo_fd, const struct rs_case *c)
{
	preserve_memfd(setup_session(luo_fd, c), c, 1, page_size(), 1);
}

static void setup_empty(int luo_fd, const struct rs_case *c)
{
	setup_session(luo_fd, c);
}

static int check_retrieve_twice_same_file(int luo_fd, const struct rs_case *c)
{
	int sfd, a = -1, b = -1, ret = -1;
	struct stat sa, sb;
	long k;
	off_t pos;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	a = luo_session_retrieve_fd(sfd, 1);
	b = luo_session_retrieve_fd(sfd, 1);
	if (a < 0 || b < 0) {
		fail("RETRIEVE_FD twice: %s, %s, want two fds", res(a), res(b));
		goto out;
	}
	if (a == b) {
		fail("RETRIEVE_FD twice returned the same fd number %d", a);
		goto out;
	}
	/*
	 * kcmp() fails without CONFIG_KCMP (as in the test kernels); the inode
	 * and the shared file position below decide then.
	 */
	k = syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, a, b);
	if (k > 0) {
		fail("kcmp(KCMP_FILE) = %ld: not the same struct file", k);
		goto out;
	}
	if (fstat(a, &sa) || fstat(b, &sb)) {
		fail("fstat: %s", strerror(errno));
		goto out;
	}
	if (sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino) {
		fail("different inodes %lu and %lu", (unsigned long)sa.st_ino,
		     (unsigned long)sb.st_ino);
		goto out;
	}
	if (lseek(a, 100, SEEK_SET) != 100) {
		fail("lseek: %s", strerror(errno));
		goto out;
	}
	pos = lseek(b, 0, SEEK_CUR);
	if (pos != 100) {
		fail("lseek on one fd did not move the other (pos %lld, want 100)",
		     (long long)pos);
		goto out;
	}
	if (verify_memfd(a, page_size(), 1))
		goto out;
	ret = finish(sfd);
out:
	close_fd(a);
	close_fd(b);
	close(sfd);
	return ret;
}

static int check_finish_then_retrieve_enoent(int luo_fd, const struct rs_case *c)
{
	int sfd, mfd, ret = -1;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd < 0) {
		fail("RETRIEVE_FD before FINISH: %s", res(mfd));
		goto out;
	}
	close(mfd);
	if (finish(sfd))
		goto out;
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd != -ENOENT) {
		fail("RETRIEVE_FD after FINISH: %s, want ENOENT", res(mfd));
		close_fd(mfd);
		goto out;
	}
	ret = 0;
out:
	close(sfd);
	return ret;
}

static int check_finish_twice_ok(int luo_fd, const struct rs_case *c)
{
	int sfd, mfd, r1, r2;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	close_fd(mfd);
	r1 = luo_session_finish(sfd);
	r2 = luo_session_finish(sfd);
	close(sfd);
	if (mfd < 0)
		return fail("RETRIEVE_FD: %s", res(mfd));
	if (r1 || r2)
		return fail("FINISH twice: %s, %s, want success twice", res(r1), res(r2));
	return 0;
}

static int check_preserve_on_incoming_einval(int luo_fd, const struct rs_case *c)
{
	int sfd, mfd, ret;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = make_memfd(page_size(), 2, 0);
	ret = luo_session_preserve_fd(sfd, mfd, 2);
	close(mfd);
	if (ret != -EINVAL) {
		close(sfd);
		return fail("PRESERVE_FD on an incoming session: %s, want EINVAL", res(ret));
	}
	ret = finish(sfd);
	close(sfd);
	return ret;
}

static int check_retrieve_session_twice_einval(int luo_fd, const struct rs_case *c)
{
	int sfd, again, ret;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	again = luo_retrieve_session(luo_fd, c->session);
	if (again != -EINVAL) {
		close_fd(again);
		close(sfd);
		return fail("second RETRIEVE_SESSION: %s, want EINVAL", res(again));
	}
	ret = finish(sfd);
	close(sfd);
	return ret;
}

static int check_new_session_reuses_incoming_name(int luo_fd, const struct rs_case *c)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int out, sfd, ret;

	/* The incoming session has not been retrieved yet: it is still listed. */
	out = luo_create_session(luo_fd, c->session);
	if (out < 0)
		return fail("CREATE_SESSION %s: %s, want success", c->session, res(out));
	ret = luo_get_session_name(out, name, sizeof(name));
	if (ret) {
		ret = fail("GET_NAME of the new session: %s", res(ret));
		goto out;
	}
	if (strcmp(name, c->session)) {
		ret = fail("GET_NAME of the new session gives \"%s\"", name);
		goto out;
	}
	/* The outgoing session does not hide the incoming one. */
	sfd = get_session(luo_fd, c);
	if (sfd < 0) {
		ret = -1;
		goto out;
	}
	ret = finish(sfd);
	close(sfd);
out:
	close(out);
	return ret;
}

static size_t state_size(void)
{
	return 3 * page_size() + STATE_EXTRA;
}

static void setup_memfd_state(int luo_fd, const struct rs_case *c)
{
	int sfd = setup_session(luo_fd, c);
	int mfd, ret;

	mfd = make_memfd(state_size(), 3, MFD_ALLOW_SEALING);
	if (fcntl(mfd, F_ADD_SEALS, STATE_SEALS))
		fail_exit("F_ADD_SEALS");
	if (lseek(mfd, STATE_POS, SEEK_SET) != STATE_POS)
		fail_exit("lseek");
	ret = luo_session_preserve_fd(sfd, mfd, 1);
	if (ret)
		fail_exit("%s: preserve: %s", c->name, res(ret));
	close(mfd);
}

static int check_memfd_state_survives(int luo_fd, const struct rs_case *c)
{
	int sfd, mfd, seals, ret = -1;
	char byte;
	off_t pos;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd < 0) {
		fail("RETRIEVE_FD: %s", res(mfd));
		goto out_session;
	}
	seals = fcntl(mfd, F_GET_SEALS);
	if (seals != STATE_SEALS) {
		fail("seals %#x (%s), want %#x", seals, seals < 0 ? strerror(errno) : "ok",
		     STATE_SEALS);
		goto out;
	}
	pos = lseek(mfd, 0, SEEK_CUR);
	if (pos != STATE_POS) {
		fail("position %lld, want %d", (long long)pos, STATE_POS);
		goto out;
	}
	if (verify_memfd(mfd, state_size(), 3))
		goto out;
	if (pread(mfd, &byte, 1, state_size()) != 0) {
		fail("pread at EOF did not return 0");
		goto out;
	}
	/* A plain read starts at the restored position. */
	if (read(mfd, &byte, 1) != 1 || (unsigned char)byte != pattern(3, STATE_POS)) {
		fail("read at the restored position does not give byte %d", STATE_POS);
		goto out;
	}
	ret = finish(sfd);
out:
	close(mfd);
out_session:
	close(sfd);
	return ret;
}

static void setup_two_memfds(int luo_fd, const struct rs_case *c)
{
	int sfd = setup_session(luo_fd, c);

	preserve_memfd(sfd, c, 1, page_size(), 4);
	preserve_memfd(sfd, c, 2, 2 * page_size(), 5);
}

static int check_unretrieved_file_finish(int luo_fd, const struct rs_case *c)
{
	int sfd, mfd, other, ret = -1;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd < 0) {
		fail("RETRIEVE_FD 1: %s", res(mfd));
		goto out_session;
	}
	if (verify_memfd(mfd, page_size(), 4))
		goto out;
	if (finish(sfd))
		goto out;
	other = luo_session_retrieve_fd(sfd, 2);
	if (other != -ENOENT) {
		fail("RETRIEVE_FD of the unretrieved file after FINISH: %s, want ENOENT",
		     res(other));
		close_fd(other);
		goto out;
	}
	/* The fd retrieved before FINISH holds its own reference. */
	ret = verify_memfd(mfd, page_size(), 4);
out:
	close(mfd);
out_session:
	close(sfd);
	return ret;
}

static int check_close_retrieved_session_finishes(int luo_fd, const struct rs_case *c)
{
	int sfd, mfd;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	close(sfd);
	if (mfd < 0)
		return fail("RETRIEVE_FD: %s", res(mfd));
	close(mfd);
	sfd = luo_retrieve_session(luo_fd, c->session);
	if (sfd != -ENOENT) {
		close_fd(sfd);
		return fail("RETRIEVE_SESSION after close: %s, want ENOENT", res(sfd));
	}
	return 0;
}

static int check_preserve_retrieved_file_busy(int luo_fd, const struct rs_case *c)
{
	char out_name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int sfd, mfd, out = -1, ret;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd < 0) {
		ret = fail("RETRIEVE_FD: %s", res(mfd));
		goto out_session;
	}
	snprintf(out_name, sizeof(out_name), "%s-out", c->session);
	out = luo_create_session(luo_fd, out_name);
	if (out < 0) {
		ret = fail("CREATE_SESSION %s: %s", out_name, res(out));
		goto out;
	}
	ret = luo_session_preserve_fd(out, mfd, 1);
	if (ret != -EBUSY) {
		ret = fail("PRESERVE_FD of a retrieved, unfinished file: %s, want EBUSY", res(ret));
		goto out;
	}
	ret = finish(sfd);
	if (ret)
		goto out;
	ret = luo_session_preserve_fd(out, mfd, 1);
	if (ret) {
		ret = fail("PRESERVE_FD after FINISH of its session: %s, want success", res(ret));
		goto out;
	}
	ret = verify_memfd(mfd, page_size(), 1);
out:
	close_fd(out);
	close(mfd);
out_session:
	close(sfd);
	return ret;
}

static int check_empty_session_roundtrip(int luo_fd, const struct rs_case *c)
{
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];
	int sfd, ret;

	sfd = get_session(luo_fd, c);
	if (sfd < 0)
		return -1;
	ret = luo_get_session_name(sfd, name, sizeof(name));
	if (ret)
		ret = fail("GET_NAME: %s", res(ret));
	else if (strcmp(name, c->session))
		ret = fail("GET_NAME gives \"%s\"", name);
	else
		ret = finish(sfd);
	close(sfd);
	return ret;
}

static const struct rs_case cases[] = {
	{ "retrieve_twice_same_file", "rs-retrieve-twice-file",
	  setup_one_memfd, check_retrieve_twice_same_file },
	{ "finish_then_retrieve_enoent", "rs-finish-enoent",
	  setup_one_memfd, check_finish_then_retrieve_enoent },
	{ "finish_twice_ok", "rs-finish-twice",
	  setup_one_memfd, check_finish_twice_ok },
	{ "preserve_on_incoming_einval", "rs-preserve-incoming",
	  setup_one_memfd, check_preserve_on_incoming_einval },
	{ "retrieve_session_twice_einval", "rs-retrieve-session-twice",
	  setup_one_memfd, check_retrieve_session_twice_einval },
	{ "new_session_reuses_incoming_name", "rs-reuse-name",
	  setup_one_memfd, check_new_session_reuses_incoming_name },
	{ "memfd_state_survives", "rs-memfd-state",
	  setup_memfd_state, check_memfd_state_survives },
	{ "unretrieved_file_finish", "rs-unretrieved",
	  setup_two_memfds, check_unretrieved_file_finish },
	{ "close_retrieved_session_finishes", "rs-close-finishes",
	  setup_one_memfd, check_close_retrieved_session_finishes },
	{ "preserve_retrieved_file_busy", "rs-busy",
	  setup_one_memfd, check_preserve_retrieved_file_busy },
	{ "empty_session_roundtrip", "rs-empty",
	  setup_empty, check_empty_session_roundtrip },
	/* The longest name (63 bytes and the NUL) survives, with a file. */
	{ "name_63_bytes_roundtrip",
	  "rs-63-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxend",
	  setup_one_memfd, check_empty_session_roundtrip },
};

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
	int stage;

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(cases));
	restore_and_read_stage(state_session_fd, STATE_MEMFD_TOKEN, &stage);
	if (stage != 2)
		ksft_exit_fail_msg("state session says stage %d, want 2\n", stage);

	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		cur_case = cases[i].name;
		if (cases[i].check(luo_fd, &cases[i]))
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
