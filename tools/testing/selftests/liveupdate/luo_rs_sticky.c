// SPDX-License-Identifier: GPL-2.0-only
/*
 * A failure to build the incoming sessions at the first open of
 * /dev/liveupdate is sticky, as in the C LUO: that open and every later one
 * fail with EIO (rather than later opens succeeding with the sessions gone).
 * Needs the Rust LUO's fault-injection attribute fail_liveupdate_deserialize
 * (CONFIG_FAULT_INJECTION_DEBUG_FS), which makes the build fail, and the Rust
 * test handler (CONFIG_LIVEUPDATE_RUST_TEST) for the session's file.
 *
 *   -s 1  a session "sticky" with a test object; hold it for the kexec.
 *   -s 2  arm the fault for one failure, open (EIO), open again (still EIO,
 *         though the fault is spent).
 *
 * KTAP per check; --list prints all case names.
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

#define T_CREATE		_IO('L', 1)
#define FAULT_DIR		"/sys/kernel/debug/fail_liveupdate_deserialize/"

static const char * const cases[] = {
	"s1_session_preserved",
	"s2_fault_armed",
	"s2_first_open_fails_eio",
	"s2_failure_is_sticky",
};

/* Writes @val to the fault attribute @name: 0, or -errno. */
static int fault_set(const char *name, const char *val)
{
	char path[128];
	int fd, r = 0;

	snprintf(path, sizeof(path), FAULT_DIR "%s", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		r = -errno;
	close(fd);
	return r;
}

int main(int argc, char *argv[])
{
	int t, luo, s, o, r1, r2;

	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			printf("%s\n", cases[i]);
		return 0;
	}
	if (argc > 2 && !strcmp(argv[1], "-s") && atoi(argv[2]) == 2) {
		printf("1..3\n");
		/* Quietly (no stack dump), every time, once. */
		r1 = fault_set("verbose", "0");
		r1 = r1 ? r1 : fault_set("interval", "1");
		r1 = r1 ? r1 : fault_set("probability", "100");
		r1 = r1 ? r1 : fault_set("times", "1");
		result("s2_fault_armed", !r1, "writing " FAULT_DIR ": %s", strerror(-r1));
		if (r1)
			return 1;
		luo = open(LUO_DEVICE, O_RDWR);
		r1 = luo < 0 ? -errno : 0;
		result("s2_first_open_fails_eio", r1 == -EIO, "first open gave %d", r1);
		if (luo >= 0)
			close(luo);
		luo = open(LUO_DEVICE, O_RDWR);
		r2 = luo < 0 ? -errno : 0;
		result("s2_failure_is_sticky", r2 == -EIO, "second open gave %d", r2);
		return ktap_failures ? 1 : 0;
	}
	t = open(LUO_TEST_HANDLER, O_RDWR | O_CLOEXEC);
	if (t < 0) {
		printf("Bail out! cannot open " LUO_TEST_HANDLER ": %s\n", strerror(errno));
		return 1;
	}
	printf("1..1\n");
	luo = luo_open_device();
	s = luo >= 0 ? luo_create_session(luo, "sticky") : -1;
	o = ioctl(t, T_CREATE, 0x571C);
	result("s1_session_preserved", s >= 0 && o >= 0 && !luo_session_preserve_fd(s, o, 1),
	       "device %d session %d object %d", luo, s, o);
	if (ktap_failures)
		return 1;
	close(luo);
	daemonize_and_wait();
	return 0;
}
