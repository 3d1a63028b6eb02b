// SPDX-License-Identifier: GPL-2.0-only
/*
 * Capacity across a kexec: what this kernel can write, the next one can read.
 * The handover can hold 510,000 sessions and 630,000 files per session; here
 * 100,000 empty sessions plus one session with 100,000 files (test objects of
 * the Rust test handler, CONFIG_LIVEUPDATE_RUST_TEST) go across and must all
 * come back. --count=N (in both boots) makes both counts N (a sanitizer
 * kernel takes minutes for 100,000).
 *
 *   -s 1  create "cap-00000".."cap-99999" and "cap-files" (100,000 objects,
 *         object i holding VALUE_BASE + i under token i); hold them.
 *   -s 2  every session comes back under its name, every object under its
 *         token with its number; then everything is finished.
 *
 * KTAP per check; --list prints all case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_capacity_state"
#define STATE_MEMFD_TOKEN	996
#define NR_DEFAULT		100000
#define VALUE_BASE		0x10000000L

#define T_CREATE		_IO('L', 1)
#define T_VALUE			_IO('L', 16)

static const char * const cases[] = {
	"s1_create_sessions",
	"s1_preserve_files",
	"s2_sessions_back",
	"s2_files_back",
	"s2_finish_all",
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The counts: NR_DEFAULT each, or --count=N (1..NR_DEFAULT). */
static int nr_sessions = NR_DEFAULT, nr_files = NR_DEFAULT;

static int take_option(int val, const char *arg)
{
	long v = strtol(arg, NULL, 10);

	if (val != 'c' || v < 1 || v > NR_DEFAULT)
		return -1;
	nr_sessions = nr_files = v;
	return 0;
}

static void session_name(int i, char *buf, size_t len)
{
	snprintf(buf, len, "cap-%05d", i);
}

static void stage_1(int luo_fd)
{
	char name[32];
	double t0 = now();
	int t, i, s = 0, o, r = 0;

	printf("1..2\n");
	t = open(LUO_TEST_HANDLER, O_RDWR | O_CLOEXEC);
	if (t < 0 || luo_ensure_nofile_limit(nr_sessions + nr_files + 64)) {
		printf("Bail out! no " LUO_TEST_HANDLER " or cannot raise RLIMIT_NOFILE\n");
		exit(1);
	}
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	for (i = 0; i < nr_sessions; i++) {
		session_name(i, name, sizeof(name));
		s = luo_create_session(luo_fd, name);
		if (s < 0)
			break;
	}
	result("s1_create_sessions", i == nr_sessions, "session %d: %s", i, strerror(-s));
	printf("# %d sessions in %.1f s\n", i, now() - t0);

	t0 = now();
	s = luo_create_session(luo_fd, "cap-files");
	for (i = 0; s >= 0 && i < nr_files; i++) {
		o = ioctl(t, T_CREATE, VALUE_BASE + i);
		r = o < 0 ? -errno : luo_session_preserve_fd(s, o, i);
		if (r)
			break;
		close(o);
	}
	result("s1_preserve_files", s >= 0 && i == nr_files, "session %d, file %d: %d", s, i, r);
	printf("# %d files in %.1f s\n", i, now() - t0);
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

static void stage_2(int luo_fd, int state_fd)
{
	char name[32];
	double t0 = now();
	int t, i, s, fd, bad = 0, finished = 1;
	long v;

	printf("1..3\n");
	t = open(LUO_TEST_HANDLER, O_RDWR | O_CLOEXEC);
	if (t < 0 || luo_ensure_nofile_limit(nr_files + 64)) {
		printf("Bail out! no " LUO_TEST_HANDLER " or cannot raise RLIMIT_NOFILE\n");
		exit(1);
	}
	for (i = 0; i < nr_sessions; i++) {
		session_name(i, name, sizeof(name));
		s = luo_retrieve_session(luo_fd, name);
		if (s < 0) {
			bad++;
			continue;
		}
		if (luo_session_finish(s))
			finished = 0;
		close(s);
	}
	result("s2_sessions_back", !bad, "%d of %d sessions missing", bad, nr_sessions);
	printf("# %d sessions retrieved and finished in %.1f s\n", nr_sessions - bad, now() - t0);

	t0 = now();
	bad = 0;
	s = luo_retrieve_session(luo_fd, "cap-files");
	for (i = 0; s >= 0 && i < nr_files; i++) {
		fd = luo_session_retrieve_fd(s, i);
		v = fd >= 0 ? ioctl(fd, T_VALUE) : -1;
		if (v != (long)(VALUE_BASE + i))
			bad++;
		if (fd >= 0)
			close(fd);
	}
	result("s2_files_back", s >= 0 && i == nr_files && !bad,
	       "session %d: %d of %d files missing or wrong", s, bad, i);
	printf("# %d files retrieved in %.1f s\n", i - bad, now() - t0);
	if (s < 0 || luo_session_finish(s))
		finished = 0;
	if (luo_session_finish(state_fd))
		finished = 0;
	result("s2_finish_all", finished, "a FINISH failed");
	ktap_exit();
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "count", required_argument, NULL, 'c' },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, take_option);

	if (a.list) {
		ktap_list(cases, ARRAY_SIZE(cases));
		return 0;
	}
	return ktap_luo_test(argv[0], a, STATE_SESSION_NAME, stage_1, stage_2);
}
