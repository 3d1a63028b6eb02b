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
#include <getopt.h>
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

/* What every test's command line holds besides the test's own options. */
struct ktap_args {
	int list;	/* --list: print the case names, run nothing */
	int stage;	/* -s N: which boot of the test this is; 1 without */
};

/*
 * Read a test's command line: "--list", "-s N" and the test's own long
 * options @opts (NULL for none, else ending with a zeroed entry). A flag
 * sets its int through the option's flag pointer, as getopt_long() does;
 * for any other option (a val other than 0, 1 and 's'), @take(val, optarg)
 * is called and returns 0, or -1 to refuse the value. An unknown argument or a refused
 * value exits with status 2: a mistyped option must not run the test in
 * another mode than asked. (A test VM's init passes the words after "--" on
 * the kernel command line to the test; the same options, after "--list",
 * print the cases of that mode.)
 */
static struct ktap_args ktap_args(int argc, char *argv[], const struct option *opts,
				  int (*take)(int val, const char *arg))
{
	struct option all[16] = { { "list", no_argument, NULL, 1 } };
	struct ktap_args a = { 0, 1 };
	size_t i;
	int c;

	for (i = 0; opts && opts[i].name; i++) {
		if (i + 2 >= ARRAY_SIZE(all))
			goto usage;
		all[i + 1] = opts[i];
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "s:", all, NULL)) != -1) {
		if (c == 1)
			a.list = 1;
		else if (c == 's')
			a.stage = atoi(optarg);
		else if (c == 0)
			continue;	/* a flag, set by getopt_long() */
		else if (c == '?' || c == ':' || !take || take(c, optarg))
			goto usage;
	}
	if (optind == argc && a.stage >= 1)
		return a;
usage:
	fprintf(stderr, "%s: bad arguments (the comment at the top of its source lists them)\n",
		argv[0]);
	exit(2);
}

/* Print the case names @cases, one a line (for "--list"). */
static void ktap_list(const char *const cases[], size_t nr_cases)
{
	for (size_t i = 0; i < nr_cases; i++)
		printf("%s\n", cases[i]);
}

/*
 * Run boot @a.stage of a test built on luo_test() (lib/lu_utils.c), which
 * reads nothing but "-s N" from its argv.
 */
static int ktap_luo_test(char *prog, struct ktap_args a, const char *state_session,
			 luo_test_stage1_fn stage_1, luo_test_stage2_fn stage_2)
{
	char stage[16], *argv[4];

	snprintf(stage, sizeof(stage), "%d", a.stage);
	argv[0] = prog;
	argv[1] = "-s";
	argv[2] = stage;
	argv[3] = NULL;
	return luo_test(3, argv, state_session, stage_1, stage_2);
}

/*
 * main() of a two-stage luo_test() test without options of its own whose
 * case list does not depend on its arguments: "--list" prints @cases, one a
 * line; otherwise the stage of this boot runs (@stage_2 in the boot after
 * the kexec).
 */
static int ktap_main(int argc, char *argv[], const char *const cases[], size_t nr_cases,
		     const char *state_session, luo_test_stage1_fn stage_1,
		     luo_test_stage2_fn stage_2)
{
	struct ktap_args a = ktap_args(argc, argv, NULL, NULL);

	if (a.list) {
		ktap_list(cases, nr_cases);
		return 0;
	}
	return ktap_luo_test(argv[0], a, state_session, stage_1, stage_2);
}

/*
 * Run a two-stage test that runs its own stages (no luo_test()): @stage_2
 * in boot 2 (after the kexec), @stage_1 in any other. Both end the process
 * themselves.
 */
static int ktap_run_stages(struct ktap_args a, void (*stage_1)(void), void (*stage_2)(void))
{
	if (a.stage == 2)
		stage_2();
	else
		stage_1();
	return 0;
}

/*
 * main() of such a test without options of its own: "--list" prints
 * @cases, one a line; else ktap_run_stages().
 */
static int ktap_stages_main(int argc, char *argv[], const char *const cases[],
			    size_t nr_cases, void (*stage_1)(void), void (*stage_2)(void))
{
	struct ktap_args a = ktap_args(argc, argv, NULL, NULL);

	if (a.list) {
		ktap_list(cases, nr_cases);
		return 0;
	}
	return ktap_run_stages(a, stage_1, stage_2);
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

/*
 * Is @word (a whole "key=value" or "key" item) a parameter on the kernel
 * command line? The words after "--" are init's, not the kernel's.
 */
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
	for (p = strtok_r(buf, " \n", &save); p && strcmp(p, "--");
	     p = strtok_r(NULL, " \n", &save))
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
