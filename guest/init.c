// SPDX-License-Identifier: GPL-2.0
/*
 * PID 1 of the test VMs.
 *
 * What to run comes after "--" on the kernel command line, which the kernel
 * never reads as parameters. (It passes those words to init as arguments,
 * but also any parameter before "--" it does not know, such as an early
 * one, so init reads them from /proc/cmdline, split at spaces: the harness
 * quotes nothing.)
 *   test=NAME     run /tests/NAME
 *   stages=N      number of boots (1: single boot; 2+: kexec chain)
 *   stage=K       which boot this is (1 when absent)
 *   test=none     run nothing (KUnit runs at boot, before init)
 *   test=canary   the harness's canary: make the kernel report a problem
 *                 on purpose (LKDTM), which the verdict must fail;
 *                 canary=warn (a WARN, the default), hung (a task blocked
 *                 in D state: the hung-task detector), lockup (a CPU
 *                 spinning with preemption off: the soft-lockup detector),
 *                 err (a kernel message of level err) or luo-warn (a
 *                 warning-level message with LUO's prefix)
 * Every other word after "--" is the test's, passed on in order, after
 * "-s K" when stages > 1: "... -- test=luo_rs_corrupt stages=2 --mode=3"
 * runs "/tests/luo_rs_corrupt -s 1 --mode=3", and the next boot, with
 * stage=2 added, "/tests/luo_rs_corrupt -s 2 --mode=3".
 *
 * Before every boot but the last, /kernel and /initrd.img are loaded with
 * kexec_file_load (so KHO passes its state) and reboot(KEXEC) is called
 * once the test has passed. A child process copies every kernel message of
 * level err or worse to the console as "LUO-KMSG-ERR: ...", so the host can
 * fail a test on a LUO pr_err even though the console shows no levels.
 *
 * Lines for the host, one per event:
 *   LUO-HARNESS: stage K start
 *   LUO-HARNESS: stage K exit STATUS
 *   LUO-HARNESS: kexec-load failed ERRNO / kexec failed ERRNO
 *   LUO-HARNESS: done
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CMDLINE_MAX 4096
#define MAX_TEST_ARGS 32
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* /proc/cmdline, cut into words. */
static char cmdline[CMDLINE_MAX];
/* The words after "--": init's and the test's, in order. */
static char *init_words[MAX_TEST_ARGS + 8];
static int nr_init_words;
/* The test's words, in order. */
static char *test_args[MAX_TEST_ARGS + 1];
static int nr_test_args;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		write(1, buf, n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1);
}

static void power_off(void)
{
	sync();
	/* No ACPI in the test kernel: QEMU runs with -no-reboot, so a reboot ends it. */
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}

/* Print kernel messages of level err (3) or worse as they arrive. */
static pid_t start_kmsg_monitor(void)
{
	pid_t pid = fork();
	char rec[2048];
	int fd;

	if (pid)
		return pid;
	fd = open("/dev/kmsg", O_RDONLY);
	if (fd < 0)
		_exit(1);
	for (;;) {
		ssize_t n = read(fd, rec, sizeof(rec) - 1);
		char *msg, *nl;
		int level;

		if (n < 0) {
			if (errno == EPIPE || errno == EINTR)
				continue;
			_exit(1);
		}
		rec[n] = 0;
		level = atoi(rec) & 7;
		msg = strchr(rec, ';');
		if (level > 3 || !msg)
			continue;
		msg++;
		nl = strchr(msg, '\n');
		if (nl)
			*nl = 0;
		say("LUO-KMSG-ERR: %s\n", msg);
	}
}

static void stop_kmsg_monitor(pid_t pid)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	/* Let it drain what the kernel printed last. */
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/*
 * Load /kernel and /initrd.img for boot @next_stage: this boot's kernel
 * parameters (/proc/cmdline up to "--"), then "--", init's words and
 * the test's as this boot got them (@kernel_words, then init_words), with
 * stage=@next_stage.
 */
static int load_next_kernel(char *const kernel_words[], int nr_kernel_words, int next_stage)
{
	char next[CMDLINE_MAX + 32];
	size_t len = 0;
	int kfd, ifd, i;
	long ret;

	next[0] = 0;
	for (i = 0; i < nr_kernel_words && len < sizeof(next); i++)
		len += snprintf(next + len, sizeof(next) - len, "%s ", kernel_words[i]);
	if (len < sizeof(next))
		len += snprintf(next + len, sizeof(next) - len, "--");
	for (i = 0; i < nr_init_words && len < sizeof(next); i++)
		if (strncmp(init_words[i], "stage=", 6))
			len += snprintf(next + len, sizeof(next) - len, " %s", init_words[i]);
	if (len < sizeof(next))
		len += snprintf(next + len, sizeof(next) - len, " stage=%d", next_stage);
	if (len >= sizeof(next))
		return -E2BIG;

	kfd = open("/kernel", O_RDONLY | O_CLOEXEC);
	ifd = open("/initrd.img", O_RDONLY | O_CLOEXEC);
	if (kfd < 0 || ifd < 0)
		return -ENOENT;
	ret = syscall(SYS_kexec_file_load, kfd, ifd, strlen(next) + 1, next, 0UL);
	close(kfd);
	close(ifd);
	return ret ? -errno : 0;
}

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	n = n == (ssize_t)strlen(text) ? 0 : -errno;
	close(fd);
	return n;
}

/*
 * The canary: make the kernel report a problem through LKDTM and report one
 * KTAP case that passes as far as userspace can tell. The host's verdict
 * must fail it on the kernel's report, or the verdict is blind.
 *
 * warn: LKDTM's WARNING prints a WARN and returns.
 * hung: with a hung-task timeout of 1 s, a child blocks in D state in
 * LKDTM's HUNG_TASK; the detector reports it and panics (hung_task_panic=1
 * on the VMs' command line) within a few seconds.
 * lockup: with watchdog_thresh=1 (a soft lockup after 2 s), a child spins
 * with preemption off in LKDTM's SOFTLOCKUP; the detector reports it and
 * panics (softlockup_panic=1).
 * For these two the VM ends in the panic: the case has no result line,
 * and the report fails the run either way.
 * err, luo-warn: a message of level err ("<3>"), or of level warning with
 * LUO's prefix ("<4>luo: "), written to /dev/kmsg: the verdict reads the
 * console's level prefixes (console_msg_format=syslog).
 */
static int canary(const char *kind)
{
	const char *direct = "/sys/kernel/debug/provoke-crash/DIRECT";
	int err;
	pid_t pid;

	say("TAP version 13\n1..1\n");
	if (!strcmp(kind, "warn") || !strcmp(kind, "err") || !strcmp(kind, "luo-warn")) {
		if (!strcmp(kind, "warn"))
			err = write_file(direct, "WARNING\n");
		else if (!strcmp(kind, "err"))
			err = write_file("/dev/kmsg", "<3>canary: a message of level err\n");
		else
			err = write_file("/dev/kmsg", "<4>luo: canary: a warning of LUO\n");
		if (err) {
			say("not ok 1 %s_triggered # write failed: errno %d\n", kind, -err);
			return 1;
		}
		say("ok 1 %s_triggered\n", kind);
		return 0;
	}
	if (!strcmp(kind, "hung"))
		err = write_file("/proc/sys/kernel/hung_task_timeout_secs", "1\n");
	else if (!strcmp(kind, "lockup"))
		err = write_file("/proc/sys/kernel/watchdog_thresh", "1\n");
	else
		err = -EINVAL;
	if (err) {
		say("not ok 1 %s_triggered # setting the detector up: errno %d\n", kind, -err);
		return 1;
	}
	pid = fork();
	if (pid < 0)
		return 1;
	if (!pid) {
		err = write_file(direct, strcmp(kind, "hung") ? "SOFTLOCKUP\n" : "HUNG_TASK\n");
		_exit(err ? 1 : 0);
	}
	/* The panic ends the VM long before this sleep does. */
	sleep(60);
	say("ok 1 %s_triggered\n", kind);
	return 0;
}

static int run_test(const char *name, const char *canary_kind, int stage, int stages)
{
	char path[256], sarg[16], *argv[MAX_TEST_ARGS + 4];
	int status;
	pid_t pid;

	/* test=none: nothing to run (e.g. KUnit ran at boot). */
	if (!strcmp(name, "none"))
		return 0;
	if (!strcmp(name, "canary"))
		return canary(canary_kind);
	snprintf(path, sizeof(path), "/tests/%s", name);
	snprintf(sarg, sizeof(sarg), "%d", stage);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		char *envp[] = { "PATH=/tests", "HOME=/", NULL };
		int n = 0;

		argv[n++] = path;
		if (stages > 1) {
			argv[n++] = "-s";
			argv[n++] = sarg;
		}
		memcpy(argv + n, test_args, (nr_test_args + 1) * sizeof(*argv));
		execve(path, argv, envp);
		say("LUO-HARNESS: exec %s failed %d\n", path, errno);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) < 0)
		return -1;
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int main(void)
{
	const char *test = NULL, *canary_kind = "warn";
	char *kernel_words[CMDLINE_MAX / 2], *p;
	int i, fd, stage = 1, stages = 1, ret, nr_kernel_words = 0, after = 0;
	ssize_t n;
	pid_t mon;

	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);

	fd = open("/proc/cmdline", O_RDONLY);
	n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline) - 1) : -1;
	if (n <= 0) {
		say("LUO-HARNESS: cannot read /proc/cmdline\n");
		power_off();
	}
	close(fd);
	cmdline[n] = 0;
	for (p = strtok(cmdline, " \n"); p; p = strtok(NULL, " \n")) {
		if (!after && !strcmp(p, "--"))
			after = 1;
		else if (!after)
			kernel_words[nr_kernel_words++] = p;
		else if (nr_init_words < (int)ARRAY_SIZE(init_words))
			init_words[nr_init_words++] = p;
		else
			test = "";
	}
	for (i = 0; i < nr_init_words && (!test || *test); i++) {
		p = init_words[i];
		if (!strncmp(p, "test=", 5))
			test = p + 5;
		else if (!strncmp(p, "stages=", 7))
			stages = atoi(p + 7);
		else if (!strncmp(p, "stage=", 6))
			stage = atoi(p + 6);
		else if (!strncmp(p, "canary=", 7))
			canary_kind = p + 7;
		else if (nr_test_args < MAX_TEST_ARGS)
			test_args[nr_test_args++] = p;
		else
			test = "";
	}
	if (!test || !*test) {
		say("LUO-HARNESS: no test= (or more than %d test arguments) after \"--\" on the command line\n",
		    MAX_TEST_ARGS);
		power_off();
	}

	mon = start_kmsg_monitor();
	say("LUO-HARNESS: stage %d start\n", stage);

	if (stage < stages) {
		ret = load_next_kernel(kernel_words, nr_kernel_words, stage + 1);
		if (ret) {
			say("LUO-HARNESS: kexec-load failed %d\n", -ret);
			stop_kmsg_monitor(mon);
			power_off();
		}
	}

	ret = run_test(test, canary_kind, stage, stages);
	say("LUO-HARNESS: stage %d exit %d\n", stage, ret);
	stop_kmsg_monitor(mon);

	if (ret == 0 && stage < stages) {
		sync();
		reboot(RB_KEXEC);
		say("LUO-HARNESS: kexec failed %d\n", errno);
		power_off();
	}
	say("LUO-HARNESS: done\n");
	power_off();
	return 0;
}
