/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Small helpers shared by the luo_rs_* selftests that print their own KTAP
 * (one "ok N name" line per check, the diagnostic on a "# name: ..." line
 * before a failure, which a KTAP parser attaches to the case), main() of
 * those built on luo_test() (lib/lu_utils.c), and the Rust test file
 * handler's device (CONFIG_LIVEUPDATE_RUST_TEST).
 */
#ifndef LUO_RS_KTAP_H
#define LUO_RS_KTAP_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <libliveupdate.h>

static int ktap_nr, ktap_failures;

/* Report one case: @ok, and when it failed, why (printf format). */
static void __printf(3, 4)
result(const char *name, int ok, const char *fmt, ...)
{
	va_list ap;

	ktap_nr++;
	if (!ok) {
		ktap_failures++;
		printf("# %s: ", name);
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
		printf("\n");
	}
	printf("%sok %d %s\n", ok ? "" : "not ", ktap_nr, name);
	fflush(stdout);
	/*
	 * Wait until the serial console has sent the line: the kernel prints
	 * its messages straight to the UART and would overtake a line still in
	 * the tty's buffer, and the verdict charges a kernel message to the
	 * case whose result line follows it. (Not a tty: ENOTTY, nothing to
	 * wait for.)
	 */
	tcdrain(STDOUT_FILENO);
}

/* The end of a test's last stage: the failure count, and the exit status. */
static __noreturn void ktap_exit(void)
{
	printf("# Totals: %d failed\n", ktap_failures);
	exit(ktap_failures ? 1 : 0);
}

/*
 * main() of a two-stage luo_test() test whose case list does not depend on
 * its arguments: "--list" prints @cases, one a line; otherwise the stage of
 * this boot runs (@stage_2 in the boot after the kexec).
 */
static int ktap_main(int argc, char *argv[], const char *const cases[], size_t nr_cases,
		     const char *state_session, luo_test_stage1_fn stage_1,
		     luo_test_stage2_fn stage_2)
{
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < nr_cases; i++)
			printf("%s\n", cases[i]);
		return 0;
	}
	return luo_test(argc, argv, state_session, stage_1, stage_2);
}

/*
 * main() of a two-stage test that runs its own stages (no luo_test()):
 * "--list" prints @cases, one a line; "-s 2" runs @stage_2 (the boot after
 * the kexec), anything else @stage_1. Both end the process themselves.
 */
static int ktap_stages_main(int argc, char *argv[], const char *const cases[],
			    size_t nr_cases, void (*stage_1)(void), void (*stage_2)(void))
{
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < nr_cases; i++)
			printf("%s\n", cases[i]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "-s") && !strcmp(argv[2], "2"))
		stage_2();
	else
		stage_1();
	return 0;
}

/* "success (N)" or the errno name of a -errno result, for diagnostics. */
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

/* How many kernel messages of this boot contain @needle (-1: no /dev/kmsg). */
static int count_in_log(const char *needle)
{
	char rec[2048];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK), n = 0;
	ssize_t len;

	if (fd < 0)
		return -1;
	while ((len = read(fd, rec, sizeof(rec) - 1)) > 0 || (len < 0 && errno == EPIPE)) {
		if (len <= 0)
			continue;
		rec[len] = 0;
		if (strstr(rec, needle))
			n++;
	}
	close(fd);
	return n;
}

/*
 * The text of the first kernel message of this boot containing @needle,
 * from @needle on, into @out; 0 if there is none.
 */
static int log_from(const char *needle, char *out, size_t len)
{
	char rec[2048];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK), found = 0;
	ssize_t n;

	if (fd < 0 || !len)
		return 0;
	while (!found && ((n = read(fd, rec, sizeof(rec) - 1)) > 0 || (n < 0 && errno == EPIPE))) {
		char *p;

		if (n <= 0)
			continue;
		rec[n] = 0;
		p = strstr(rec, needle);
		if (p) {
			snprintf(out, len, "%s", p);
			found = 1;
		}
	}
	close(fd);
	return found;
}

/* Is @word (a whole "key=value" or "key" item) on the kernel command line? */
static int cmdline_has(const char *word)
{
	char buf[4096], *p, *save;
	int fd = open("/proc/cmdline", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (p = strtok_r(buf, " \n", &save); p; p = strtok_r(NULL, " \n", &save))
		if (!strcmp(p, word))
			return 1;
	return 0;
}

/*
 * debugfs liveupdate/test_handler: the control file of the Rust test file
 * handler (CONFIG_LIVEUPDATE_RUST_TEST), which answers its ioctls.
 */
#define LUO_TEST_HANDLER	"/sys/kernel/debug/liveupdate/test_handler"

/* The test handler's control file (opened once). */
static int tdev(void)
{
	static int fd = -1;

	if (fd < 0)
		fd = open(LUO_TEST_HANDLER, O_RDWR | O_CLOEXEC);
	return fd;
}

/* An ioctl on the test handler's control file: its result, or -errno. */
static long tctl(unsigned long cmd, unsigned long arg)
{
	long r = ioctl(tdev(), cmd, arg);

	return r < 0 ? -errno : r;
}

#endif /* LUO_RS_KTAP_H */
