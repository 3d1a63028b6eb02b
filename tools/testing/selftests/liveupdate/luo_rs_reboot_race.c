// SPDX-License-Identifier: GPL-2.0-only
/*
 * Closing a session while the reboot serializes: the handover must not count
 * the closing session's files. The FLBs of lib/tests/liveupdate.c
 * (CONFIG_LIVEUPDATE_TEST) are linked to every handler, and each carries the
 * number of preserved files into the next kernel; there its finish runs when
 * that many files have finished ("finish was triggered"). If the reboot wrote
 * a count that still included a closed session's file, finish never runs.
 * Needs the Rust test handler (CONFIG_LIVEUPDATE_RUST_TEST).
 *
 *   -s 1  sessions "race-keep" and "race-close" with a test object each; a
 *         thread closes "race-close", whose unpreserve is made to sleep 500
 *         ms; 100 ms later this process calls reboot(KEXEC) itself.
 *   -s 2  "race-keep" came back and "race-close" did not; after every file
 *         is finished, each test FLB's finish has run.
 *
 * KTAP per check; --list prints all case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_reboot_race_state"
#define STATE_MEMFD_TOKEN	994
#define NR_TEST_FLBS		3

#define T_CREATE		_IO('L', 1)
#define T_UNPRESERVE_DELAY	_IO('L', 11)
#define T_VALUE			_IO('L', 16)

#define VALUE_KEEP		0x7A0001
#define VALUE_CLOSE		0x7A0002

static const char * const cases[] = {
	"s1_setup",
	"s2_kept_session_back",
	"s2_closed_session_gone",
	"s2_flb_finish_after_last_file",
};

static void *close_it(void *p)
{
	close(*(int *)p);
	return NULL;
}

static void stage_1(int luo_fd)
{
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	int t, keep, cl, ok_keep, ok_close;
	pthread_t th;

	printf("1..1\n");
	t = open(LUO_TEST_HANDLER, O_RDWR | O_CLOEXEC);
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	keep = luo_create_session(luo_fd, "race-keep");
	cl = luo_create_session(luo_fd, "race-close");
	ok_keep = t >= 0 && keep >= 0 &&
		  !luo_session_preserve_fd(keep, ioctl(t, T_CREATE, VALUE_KEEP), 1);
	ok_close = t >= 0 && cl >= 0 &&
		   !luo_session_preserve_fd(cl, ioctl(t, T_CREATE, VALUE_CLOSE), 1);
	result("s1_setup", ok_keep && ok_close && !ioctl(t, T_UNPRESERVE_DELAY, 500),
	       "device %d sessions %d %d", t, keep, cl);
	if (ktap_failures)
		exit(1);
	pthread_create(&th, NULL, close_it, &cl);
	nanosleep(&ts, NULL);
	/* The kexec image is loaded (by init); this does not return if it works. */
	syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC,
		NULL);
	printf("# reboot failed: %s\n", strerror(errno));
	exit(1);
}

static void stage_2(int luo_fd, int state_fd)
{
	int keep, cl, fd, fin, before;
	long v;

	printf("1..3\n");
	before = count_in_log("finish was triggered");
	keep = luo_retrieve_session(luo_fd, "race-keep");
	fd = keep >= 0 ? luo_session_retrieve_fd(keep, 1) : -1;
	v = fd >= 0 ? ioctl(fd, T_VALUE) : -1;
	result("s2_kept_session_back", v == VALUE_KEEP, "session %d, file %d, value %#lx", keep,
	       fd, v);
	cl = luo_retrieve_session(luo_fd, "race-close");
	result("s2_closed_session_gone", cl == -ENOENT, "retrieve race-close: %d", cl);
	fin = (keep >= 0 ? luo_session_finish(keep) : -1) | luo_session_finish(state_fd);
	result("s2_flb_finish_after_last_file",
	       !fin && count_in_log("finish was triggered") - before == NR_TEST_FLBS,
	       "finish %d, %d FLB finishes", fin, count_in_log("finish was triggered") - before);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	return ktap_main(argc, argv, cases, ARRAY_SIZE(cases), STATE_SESSION_NAME, stage_1,
			 stage_2);
}
