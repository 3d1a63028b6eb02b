// SPDX-License-Identifier: GPL-2.0-only
/*
 * A file whose handler is missing in the next kernel (Rust LUO only, through
 * the Rust test file handler, CONFIG_LIVEUPDATE_RUST_TEST). The C LUO makes
 * /dev/liveupdate fail with EIO for good in that case; the Rust LUO drops
 * that file with a warning and keeps everything else
 * (Documentation/core-api/liveupdate-rust.rst, "Differences").
 *
 *   -s 1  "u-mixed": a memfd (token 1) and a test object (token 2);
 *         "u-only": a test object (token 3).
 *   -s 2  the test handler is unregistered before anything opens
 *         /dev/liveupdate, so the incoming sessions are built without it:
 *         - the open succeeds, and each dropped file is named once in a
 *           warning;
 *         - "u-mixed" gives back its memfd with its data, ENOENT for the
 *           dropped token, and finishes;
 *         - "u-only" is there with no file, and finishes.
 *
 * These warnings, one per dropped file of handler luo-rs-test-v1, are the
 * expected outcome: a run that fails a test on kernel warnings must allow
 * them, and only them.
 *
 * KTAP per check; --list prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define T_CREATE	_IO('L', 1)
#define T_UNREGISTER	_IO('L', 9)
#define T_REGISTER	_IO('L', 10)

#define VALUE_MIXED	0x4B0030
#define VALUE_ONLY	0x4B0031
#define DATA		"kept while its neighbour was dropped"

static const char * const cases[] = {
	"s1_sessions",
	"s2_open_without_handler",
	"s2_dropped_files_named",
	"s2_other_file_kept",
	"s2_dropped_token_enoent",
	"s2_session_of_dropped_file_finishes",
};

static void stage_1(void)
{
	int luo_fd = luo_open_device(), mixed = -1, only = -1, o2, o3, m = -1;

	printf("1..1\n");
	if (luo_fd >= 0) {
		mixed = luo_create_session(luo_fd, "u-mixed");
		only = luo_create_session(luo_fd, "u-only");
	}
	o2 = tctl(T_CREATE, VALUE_MIXED);
	o3 = tctl(T_CREATE, VALUE_ONLY);
	if (mixed >= 0)
		m = create_and_preserve_memfd(mixed, 1, DATA);
	result("s1_sessions",
	       mixed >= 0 && only >= 0 && m >= 0 && o2 >= 0 && o3 >= 0 &&
	       !luo_session_preserve_fd(mixed, o2, 2) && !luo_session_preserve_fd(only, o3, 3),
	       "device %d, sessions %d %d, memfd %d, objects %d %d", luo_fd, mixed, only, m, o2,
	       o3);
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

static void stage_2(void)
{
	long unreg = tctl(T_UNREGISTER, 0);
	int luo_fd, mixed, only, m, r2, r3, fm, fo, n2, n3;

	printf("1..5\n");
	luo_fd = luo_open_device();
	result("s2_open_without_handler", !unreg && luo_fd >= 0, "unregister %ld, open %d",
	       unreg, luo_fd < 0 ? -errno : luo_fd);
	if (luo_fd < 0)
		exit(1);
	n2 = count_in_log("session [u-mixed]: dropped token 0x2: no registered handler");
	n3 = count_in_log("session [u-only]: dropped token 0x3: no registered handler");
	result("s2_dropped_files_named", n2 == 1 && n3 == 1,
	       "warnings for token 2: %d, token 3: %d (want 1 each)", n2, n3);

	mixed = luo_retrieve_session(luo_fd, "u-mixed");
	m = mixed >= 0 ? restore_and_verify_memfd(mixed, 1, DATA) : -EBADF;
	result("s2_other_file_kept", mixed >= 0 && m >= 0, "session %d, memfd %d", mixed, m);
	r2 = mixed >= 0 ? luo_session_retrieve_fd(mixed, 2) : -EBADF;
	only = luo_retrieve_session(luo_fd, "u-only");
	r3 = only >= 0 ? luo_session_retrieve_fd(only, 3) : -EBADF;
	result("s2_dropped_token_enoent", r2 == -ENOENT && only >= 0 && r3 == -ENOENT,
	       "token 2: %d, session u-only %d, token 3: %d", r2, only, r3);
	fm = mixed >= 0 ? luo_session_finish(mixed) : -EBADF;
	fo = only >= 0 ? luo_session_finish(only) : -EBADF;
	result("s2_session_of_dropped_file_finishes", !fm && !fo, "finish u-mixed %d, u-only %d",
	       fm, fo);
	tctl(T_REGISTER, 0);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			printf("%s\n", cases[i]);
		return 0;
	}
	if (tdev() < 0) {
		printf("Bail out! cannot open " LUO_TEST_HANDLER ": %s\n", strerror(errno));
		return 1;
	}
	if (argc == 3 && !strcmp(argv[1], "-s") && !strcmp(argv[2], "2"))
		stage_2();
	else
		stage_1();
	return 0;
}
