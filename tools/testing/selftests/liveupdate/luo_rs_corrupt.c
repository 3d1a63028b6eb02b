// SPDX-License-Identifier: GPL-2.0-only
/*
 * Corrupt handover data: the next kernel must boot, log what it rejected and
 * keep every session that validates. Needs the Rust test handler
 * (CONFIG_LIVEUPDATE_RUST_TEST), which corrupts the handover once written, at
 * device shutdown, as asked, in mode --mode=N (see
 * kernel/liveupdate/test_handler.rs), given in both boots. Every mode is also a
 * case of the KUnit suite luo_rs_handover; make check runs 3 and 10 here:
 *
 *   1 wrong compatible string   -> no session comes back
 *   2 file count off by one     -> the first session is dropped
 *   3 session chain loops       -> the loop is detected, all sessions kept
 *   4 files at a wild address   -> the first session is dropped
 *   5 name without its NUL      -> the first session is dropped
 *   6 FLB count too large       -> FLBs dropped, all sessions kept
 *   7 live update number U64_MAX -> all sessions kept (the number wraps)
 *   8 an FLB's user count U64_MAX -> that FLB dropped, all sessions kept
 *   9 file count U64_MAX        -> the first session is dropped
 *  10 session list far beyond memory -> no session comes back
 *  11 block entry count U64_MAX -> no session comes back (all in block 1)
 *  12 FLB table unaligned       -> FLBs dropped, all sessions kept
 *
 *   -s 1  sessions corrupt-a, corrupt-b, corrupt-c (in that order), each
 *         with a memfd; ask for the corruption; hold the fds for the kexec.
 *   -s 2  check which sessions came back (a dropped one must give exactly
 *         ENOENT), their data, the log, and that LUO still works for new
 *         sessions afterwards (luo_usable_after).
 *
 * KTAP per check; "--list --mode=N" prints the case names of mode N.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libliveupdate.h>

#define T_CORRUPT	_IO('L', 6)
#define LUO_TEST_HANDLER	"/sys/kernel/debug/liveupdate/test_handler"
#define NR_SESSIONS	3

static const char * const names[NR_SESSIONS] = { "corrupt-a", "corrupt-b", "corrupt-c" };

static const struct {
	int first_kept;		/* is corrupt-a expected back? */
	int others_kept;	/* are corrupt-b and corrupt-c? */
	const char *log;	/* expected in the kernel log */
} modes[] = {
	[1] = { 0, 0, "rejected handover" },
	[2] = { 0, 1, "dropped session [corrupt-a]" },
	[3] = { 1, 1, "session list is unusable" },
	[4] = { 0, 1, "dropped session [corrupt-a]" },
	[5] = { 0, 1, "dropped a session" },
	[6] = { 1, 1, "dropped all FLBs" },
	[7] = { 1, 1, "liveupdate number: 18446744073709551615" },
	[8] = { 1, 1, "bad user count 18446744073709551615" },
	[9] = { 0, 1, "dropped session [corrupt-a]: file count does not match" },
	[10] = { 0, 0, "session list is unusable" },
	[11] = { 0, 0, "bad entry count 18446744073709551615" },
	[12] = { 1, 1, "dropped all FLBs: its page is not a preserved page" },
};

#define NR_MODES ((int)ARRAY_SIZE(modes))

static int test_nr, failures;

static void result(int mode, const char *name, int ok, const char *why)
{
	test_nr++;
	failures += !ok;
	if (!ok)
		printf("# %s\n", why);
	printf("%sok %d m%d_%s\n", ok ? "" : "not ", test_nr, mode, name);
	fflush(stdout);
}

static char data_for(int i, char *buf, size_t len)
{
	snprintf(buf, len, "corrupt-test data of %s", names[i]);
	return 0;
}

static int log_contains(const char *needle)
{
	char rec[2048];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	int found = 0;
	ssize_t n;

	if (fd < 0)
		return 0;
	while ((n = read(fd, rec, sizeof(rec) - 1)) > 0 || (n < 0 && errno == EPIPE)) {
		if (n <= 0)
			continue;
		rec[n] = 0;
		if (strstr(rec, needle))
			found = 1;
	}
	close(fd);
	return found;
}

static int stage_1(int mode)
{
	char data[128];
	int luo, s, t, i;

	printf("1..2\n");
	luo = luo_open_device();
	for (i = 0; i < NR_SESSIONS; i++) {
		data_for(i, data, sizeof(data));
		s = luo >= 0 ? luo_create_session(luo, names[i]) : -1;
		if (s < 0 || create_and_preserve_memfd(s, i + 1, data) < 0)
			break;
	}
	result(mode, "preserve_sessions", i == NR_SESSIONS, "could not set up the sessions");
	t = open(LUO_TEST_HANDLER, O_RDWR);
	result(mode, "ask_corruption", t >= 0 && !ioctl(t, T_CORRUPT, mode),
	       "cannot reach " LUO_TEST_HANDLER);
	if (failures)
		return 1;
	close(luo);
	daemonize_and_wait();
	return 0;
}

/*
 * After a corrupt handover, LUO must still work for this boot's own sessions:
 * the rejected or dropped data must not have left the device unusable (EIO
 * for good), the name or file tables inconsistent, or the sessions list
 * broken. An outgoing session cannot be retrieved in the boot that made it,
 * so "works" is checked through what one boot can see: create a session,
 * preserve a memfd into it (0); preserving that memfd into a second session
 * gives EBUSY (it is tracked as preserved); a session may take the name of a
 * session the handover carried (outgoing and incoming names are separate);
 * RETRIEVE_SESSION of that name still gives ENOENT (a dropped session stays
 * dropped; a kept one is gone once finished and closed; a new outgoing one is
 * not incoming); closing the first session lets go of the memfd, which the
 * second session then takes (0).
 */
static int luo_usable(int luo, char *why, size_t len)
{
	int a = -1, b = -1, c = -1, m = -1, r, ok = 0;

	a = luo_create_session(luo, "corrupt-after-1");
	b = luo_create_session(luo, "corrupt-after-2");
	c = luo_create_session(luo, names[0]);
	m = memfd_create("corrupt-after", 0);
	if (a < 0 || b < 0 || c < 0 || m < 0) {
		snprintf(why, len, "create sessions %d %d %d (%s), memfd %d", a, b, c, names[0], m);
		goto out;
	}
	if (write(m, "after", 5) != 5) {
		snprintf(why, len, "memfd write failed");
		goto out;
	}
	r = luo_session_preserve_fd(a, m, 1);
	if (r) {
		snprintf(why, len, "PRESERVE_FD into a new session: %s", strerror(-r));
		goto out;
	}
	r = luo_session_preserve_fd(b, m, 1);
	if (r != -EBUSY) {
		snprintf(why, len, "PRESERVE_FD of a preserved memfd elsewhere: %d, want -EBUSY",
			 r);
		goto out;
	}
	r = luo_retrieve_session(luo, names[0]);
	if (r != -ENOENT) {
		snprintf(why, len, "RETRIEVE_SESSION %s at the end: %d, want -ENOENT", names[0],
			 r);
		if (r >= 0)
			close(r);
		goto out;
	}
	close(a);
	a = -1;
	r = luo_session_preserve_fd(b, m, 1);
	if (r) {
		snprintf(why, len, "PRESERVE_FD after the first session was closed: %s",
			 strerror(-r));
		goto out;
	}
	ok = 1;
out:
	if (m >= 0)
		close(m);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	if (c >= 0)
		close(c);
	return ok;
}

static int stage_2(int mode)
{
	char data[128], why[256] = "";
	int luo, i, ok_sessions = 1, ok_data = 1;

	printf("1..4\n");
	luo = luo_open_device();
	if (luo < 0) {
		ok_sessions = 0;
		snprintf(why, sizeof(why), "open %s: %s", LUO_DEVICE, strerror(errno));
	}
	for (i = 0; luo >= 0 && i < NR_SESSIONS; i++) {
		int want = i ? modes[mode].others_kept : modes[mode].first_kept;
		int s = luo_retrieve_session(luo, names[i]);
		int fd;

		/*
		 * A kept session must come back; a dropped one must be gone, i.e.
		 * RETRIEVE_SESSION gives exactly ENOENT, as for a name that was
		 * never handed over. Any other errno (EIO: the device or the
		 * session list broke; EINVAL: a half-built session left behind
		 * as already retrieved; ...) is a failure, not a drop.
		 */
		if (want ? s < 0 : s != -ENOENT) {
			ok_sessions = 0;
			snprintf(why, sizeof(why), "%s: retrieve gave %d, expected %s", names[i], s,
				 want ? "the session" : "-ENOENT (dropped)");
		}
		if (s < 0)
			continue;
		data_for(i, data, sizeof(data));
		fd = restore_and_verify_memfd(s, i + 1, data);
		if (fd < 0 || luo_session_finish(s) < 0)
			ok_data = 0;
		if (fd >= 0)
			close(fd);
		close(s);
	}
	result(mode, "expected_sessions_back", ok_sessions, why);
	result(mode, "kept_sessions_intact", luo >= 0 && ok_data,
	       "data or FINISH of a kept session failed");
	snprintf(why, sizeof(why), "no \"%s\" in the kernel log", modes[mode].log);
	result(mode, "rejection_logged", log_contains(modes[mode].log), why);
	snprintf(why, sizeof(why), "no /dev/liveupdate");
	result(mode, "luo_usable_after", luo >= 0 && luo_usable(luo, why, sizeof(why)), why);
	return failures ? 1 : 0;
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "list", no_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'm' },
		{ }
	};
	int c, list = 0, mode = 0, stage = 1;

	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c == 'l')
			list = 1;
		else if (c == 'm')
			mode = atoi(optarg);
		else if (c == 's')
			stage = atoi(optarg);
		else
			mode = 0;
	}
	if (optind != argc || mode < 1 || mode >= NR_MODES) {
		printf("Bail out! usage: %s [--list] [-s 1|2] --mode=1..%d\n", argv[0],
		       NR_MODES - 1);
		return 2;
	}
	if (list) {
		printf("m%d_preserve_sessions\nm%d_ask_corruption\nm%d_expected_sessions_back\n"
		       "m%d_kept_sessions_intact\nm%d_rejection_logged\nm%d_luo_usable_after\n",
		       mode, mode, mode, mode, mode, mode);
		return 0;
	}
	return stage == 1 ? stage_1(mode) : stage_2(mode);
}
