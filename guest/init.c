// SPDX-License-Identifier: GPL-2.0
/*
 * PID 1 of the test VMs.
 *
 * The kernel command line says what to run:
 *   luo.test=NAME     run /tests/NAME
 *   luo.stages=N      number of boots (1: single boot; 2+: kexec chain)
 *   luo_stage=K       which boot this is (1 when absent)
 *   luo.test=none     run nothing (KUnit runs at boot, before init)
 *   luo.test=canary   the harness's canary: make the kernel report a problem
 *                     on purpose (LKDTM), which the verdict must fail;
 *                     luo.canary=warn (a WARN, the default), hung (a task
 *                     blocked in D state: the hung-task detector), lockup
 *                     (a CPU spinning with preemption off: the soft-lockup
 *                     detector), err (a kernel message of level err) or
 *                     luo-warn (a warning-level message with LUO's prefix)
 *
 * Tests get "-s K" when luo.stages > 1.
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

static char cmdline[CMDLINE_MAX];

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

static const char *param(const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while ((p = strstr(p, key))) {
		if ((p == cmdline || p[-1] == ' ') && p[klen] == '=') {
			size_t n = strcspn(p + klen + 1, " \n");

			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, p + klen + 1, n);
			out[n] = 0;
			return out;
		}
		p += klen;
	}
	return NULL;
}

static long param_long(const char *key, long def)
{
	char buf[32];

	return param(key, buf, sizeof(buf)) ? strtol(buf, NULL, 0) : def;
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

static int load_next_kernel(int next_stage)
{
	char next[CMDLINE_MAX + 32];
	char *p, *q;
	int kfd, ifd;
	long ret;

	/* Copy the command line without luo_stage=, then add the next one. */
	next[0] = 0;
	for (p = strtok(cmdline, " \n"); p; p = strtok(NULL, " \n")) {
		if (!strncmp(p, "luo_stage=", 10))
			continue;
		strncat(next, p, sizeof(next) - strlen(next) - 2);
		strcat(next, " ");
	}
	q = next + strlen(next);
	snprintf(q, sizeof(next) - (q - next), "luo_stage=%d", next_stage);

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
static int canary(void)
{
	const char *direct = "/sys/kernel/debug/provoke-crash/DIRECT";
	char kind[16];
	int err;
	pid_t pid;

	if (!param("luo.canary", kind, sizeof(kind)))
		strcpy(kind, "warn");
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

static int run_test(const char *name, int stage, int stages)
{
	char path[256], sarg[16];
	int status;
	pid_t pid;

	/* luo.test=none: nothing to run (e.g. KUnit ran at boot). */
	if (!strcmp(name, "none"))
		return 0;
	if (!strcmp(name, "canary"))
		return canary();
	snprintf(path, sizeof(path), "/tests/%s", name);
	snprintf(sarg, sizeof(sarg), "%d", stage);
	pid = fork();
	if (pid < 0)
		return -1;
	if (!pid) {
		char *argv_multi[] = { path, "-s", sarg, NULL };
		char *argv_single[] = { path, NULL };
		char *envp[] = { "PATH=/tests", "HOME=/", NULL };

		execve(path, stages > 1 ? argv_multi : argv_single, envp);
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
	char test[128];
	int fd, stage, stages, ret;
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

	if (!param("luo.test", test, sizeof(test))) {
		say("LUO-HARNESS: no luo.test= on the command line\n");
		power_off();
	}
	stage = param_long("luo_stage", 1);
	stages = param_long("luo.stages", 1);

	mon = start_kmsg_monitor();
	say("LUO-HARNESS: stage %d start\n", stage);

	if (stage < stages) {
		ret = load_next_kernel(stage + 1);
		if (ret) {
			say("LUO-HARNESS: kexec-load failed %d\n", -ret);
			stop_kmsg_monitor(mon);
			power_off();
		}
	}

	ret = run_test(test, stage, stages);
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
