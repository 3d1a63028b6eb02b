// SPDX-License-Identifier: GPL-2.0-only
/*
 * Failure paths of the Rust LUO across a kexec, driven through the Rust test
 * file handler (CONFIG_LIVEUPDATE_RUST_TEST, debugfs liveupdate/test_handler).
 *
 *   -s 1  two test objects in session "faults", with the test FLB linked to
 *         the handler; the second freeze is told to fail with EIO:
 *         reboot(KEXEC) must fail with EIO, the first file must have been
 *         unfrozen, and LUO must work again (a third object is preserved).
 *         Then the kexec happens, with the FLB used by the three files.
 *   -s 2  a failed retrieve is sticky (same errno, handler not called again,
 *         even once the fault is gone); can_finish == false makes FINISH fail
 *         with EBUSY and finish nothing; then FINISH finishes the three files.
 *         The test FLB, linked again only after the first open of
 *         /dev/liveupdate built the sessions, is put by each file's finish
 *         (the FLBs linked to the handler at finish, as in the C LUO), so it
 *         is finished with the last one.
 *
 * KTAP per check; --list prints all case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_faults_state"
#define STATE_MEMFD_TOKEN	995
#define SESSION_NAME		"faults"
#define VALUE_A			0xA1
#define VALUE_B			0xB2

#define T_CREATE		_IO('L', 1)
#define T_FAIL_FREEZE		_IO('L', 2)
#define T_FAIL_RETRIEVE		_IO('L', 3)
#define T_CAN_FINISH		_IO('L', 4)
#define T_COUNT			_IO('L', 5)
#define T_FLB			_IO('L', 12)
#define T_VALUE			_IO('L', 16)

enum { C_PRESERVE, C_UNPRESERVE, C_FREEZE, C_UNFREEZE, C_RETRIEVE, C_FINISH };
enum { FLB_UNLINK, FLB_LINK, FLB_GET_INCOMING };

static const char * const cases[] = {
	"s1_test_device_present",
	"s1_preserve_two_objects",
	"s1_freeze_failure_fails_reboot",
	"s1_frozen_files_unfrozen",
	"s1_luo_usable_after_failed_reboot",
	"s2_retrieve_good_object",
	"s2_failed_retrieve_errno",
	"s2_failed_retrieve_sticky",
	"s2_can_finish_false_busy",
	"s2_finish_all",
	"s2_flb_linked_after_open_put_by_finish",
};

static int ktap_nr;
static int ktap_failures;

static long count(int which)
{
	return tctl(T_COUNT, which);
}

static void stage_1(int luo_fd)
{
	long freezes, unfreezes, r, link;
	int s, a, b, tmp;

	printf("1..5\n");
	result("s1_test_device_present", tdev() >= 0, "open " LUO_TEST_HANDLER ": %s",
	       strerror(errno));

	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	/* Every test object preserved from now on uses the test FLB. */
	link = tctl(T_FLB, FLB_LINK);
	s = luo_create_session(luo_fd, SESSION_NAME);
	a = tctl(T_CREATE, VALUE_A);
	b = tctl(T_CREATE, VALUE_B);
	r = (s >= 0 && a >= 0 && b >= 0) ? luo_session_preserve_fd(s, a, 1) : -EINVAL;
	if (!r)
		r = luo_session_preserve_fd(s, b, 2);
	result("s1_preserve_two_objects", !link && !r, "link FLB %s, session %d objects %d %d: %ld",
	       res(link), s, a, b, r);
	close(a);
	close(b);

	/* Fail the freeze of the 2nd test object (the first is frozen first). */
	freezes = count(C_FREEZE);
	unfreezes = count(C_UNFREEZE);
	tctl(T_FAIL_FREEZE, EIO | (2 << 16));
	r = syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
		    LINUX_REBOOT_CMD_KEXEC, NULL);
	result("s1_freeze_failure_fails_reboot", r == -1 && errno == EIO,
	       "reboot returned %ld errno %d", r, errno);
	result("s1_frozen_files_unfrozen",
	       count(C_FREEZE) - freezes == 2 && count(C_UNFREEZE) - unfreezes == 1,
	       "freeze calls %ld, unfreeze calls %ld",
	       count(C_FREEZE) - freezes, count(C_UNFREEZE) - unfreezes);
	tctl(T_FAIL_FREEZE, 0);

	tmp = luo_create_session(luo_fd, "faults-after");
	r = tmp >= 0 ? luo_session_preserve_fd(s, tctl(T_CREATE, 7), 3) : tmp;
	result("s1_luo_usable_after_failed_reboot", tmp >= 0 && !r,
	       "create %d, preserve %ld", tmp, r);
	if (tmp >= 0)
		close(tmp);

	close(luo_fd);
	daemonize_and_wait();
}

static void stage_2(int luo_fd, int state_fd)
{
	int s, fd, value;
	long r1, r2, calls, fin, link, flb_before, flb_after;
	struct liveupdate_session_finish fa = { .size = sizeof(fa) };

	printf("1..6\n");
	(void)state_fd;
	/* After the first open (luo_test() opened /dev/liveupdate): see below. */
	link = tctl(T_FLB, FLB_LINK);
	s = luo_retrieve_session(luo_fd, SESSION_NAME);

	fd = s >= 0 ? luo_session_retrieve_fd(s, 2) : s;
	value = fd >= 0 ? ioctl(fd, T_VALUE) : -1;
	result("s2_retrieve_good_object", fd >= 0 && value == VALUE_B,
	       "fd %d value %#x", fd, value);

	tctl(T_FAIL_RETRIEVE, ENOSPC);
	calls = count(C_RETRIEVE);
	r1 = s >= 0 ? luo_session_retrieve_fd(s, 1) : s;
	r2 = s >= 0 ? luo_session_retrieve_fd(s, 1) : s;
	result("s2_failed_retrieve_errno", r1 == -ENOSPC, "retrieve gave %ld", r1);
	tctl(T_FAIL_RETRIEVE, 0);
	r2 = s >= 0 ? luo_session_retrieve_fd(s, 1) : s;
	result("s2_failed_retrieve_sticky",
	       r2 == -ENOSPC && count(C_RETRIEVE) - calls == 1,
	       "retrieve again gave %ld, handler called %ld times", r2,
	       count(C_RETRIEVE) - calls);

	fin = count(C_FINISH);
	tctl(T_CAN_FINISH, 0);
	r1 = ioctl(s, LIVEUPDATE_SESSION_FINISH, &fa) ? -errno : 0;
	result("s2_can_finish_false_busy", r1 == -EBUSY && count(C_FINISH) == fin,
	       "finish gave %ld, finish calls %ld", r1, count(C_FINISH) - fin);
	tctl(T_CAN_FINISH, 1);
	/* Handed over and not finished yet: a get (put back at once) works. */
	flb_before = tctl(T_FLB, FLB_GET_INCOMING);
	r1 = ioctl(s, LIVEUPDATE_SESSION_FINISH, &fa) ? -errno : 0;
	r2 = luo_session_retrieve_fd(s, 2);
	result("s2_finish_all", !r1 && count(C_FINISH) - fin == 3 && r2 == -ENOENT,
	       "finish gave %ld, finish calls %ld, retrieve after %ld", r1,
	       count(C_FINISH) - fin, r2);
	/*
	 * The FLB was linked after the sessions were built: the three files put
	 * it at finish all the same (the previous kernel's count, 3), so it is
	 * finished and there is no incoming object any more (ENODATA).
	 */
	flb_after = tctl(T_FLB, FLB_GET_INCOMING);
	result("s2_flb_linked_after_open_put_by_finish",
	       !link && !flb_before && flb_after == -ENODATA,
	       "link %s, get_incoming before finish %s, after %s", res(link), res(flb_before),
	       res(flb_after));
	luo_session_finish(state_fd);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	return ktap_main(argc, argv, cases, ARRAY_SIZE(cases), STATE_SESSION_NAME, stage_1,
			 stage_2);
}
