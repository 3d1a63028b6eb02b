// SPDX-License-Identifier: GPL-2.0-only
/*
 * Regression tests for the hardening of the Rust LUO, across a kexec, driven
 * through the Rust test file handler (CONFIG_LIVEUPDATE_RUST_TEST):
 *
 *   -s 1  - get_id of a Rust handler is used: two test objects with the same
 *           number cannot both be preserved (EBUSY), and the id is released
 *           when the first is unpreserved;
 *         - a failed reboot does not leave LUO half frozen: a thread calling
 *           GET_NAME while the reboot runs (its freeze sleeps, then fails)
 *           never gets EBUSY, and a session closed by another thread during
 *           it is really closed: its file is unpreserved and its name can be
 *           used again;
 *         - dropping the handler's Registration while a file it preserved is
 *           live is safe: new files find no handler (ENOENT), the preserved
 *           one is still unpreserved by the handler when its session closes,
 *           and the handler can be registered again;
 *         - an FLB op may call the FLB API: the test FLB, linked to the
 *           handler, calls liveupdate_flb_get_incoming() from its preserve
 *           op, then is unlinked (liveupdate_unregister_flb());
 *         - sessions "h-x", "h-y", "h-z" and "h-w" (a test object each) go
 *           to stage 2.
 *   -s 2  - the test FLB, unlinked and unpreserved in stage 1, was not handed
 *           over (first, see flb_checks());
 *         - a RETRIEVE_SESSION whose reply faults is taken back for the right
 *           session, even when the file of an earlier retrieve (of "h-x",
 *           still retrieved because its finish failed) was freed just before
 *           and its memory may be reused: "h-y" can be retrieved again and
 *           "h-x" cannot;
 *         - a file retrieved while another file with the same id is preserved
 *           ("h-w", whose object has the number of one preserved in this
 *           kernel; the kernel warns) does not take that file's claim on the
 *           id with it when it is finished: an object with that number still
 *           cannot be preserved (EBUSY);
 *         - a file of the previous kernel whose handler was unregistered
 *           after the sessions were built ("h-z") cannot be retrieved
 *           (ENODEV) and is finished without the handler.
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
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_hardening_state"
#define STATE_MEMFD_TOKEN	997

#define T_CREATE		_IO('L', 1)
#define T_FAIL_FREEZE		_IO('L', 2)
#define T_CAN_FINISH		_IO('L', 4)
#define T_COUNT			_IO('L', 5)
#define T_FREEZE_DELAY		_IO('L', 7)
#define T_UNREGISTER		_IO('L', 9)
#define T_REGISTER		_IO('L', 10)
#define T_FLB			_IO('L', 12)
#define T_VALUE			_IO('L', 16)

enum {
	C_PRESERVE, C_UNPRESERVE, C_FREEZE, C_UNFREEZE, C_RETRIEVE, C_FINISH,
	C_FLB_PRESERVE, C_FLB_UNPRESERVE
};

enum { FLB_UNLINK, FLB_LINK, FLB_GET_INCOMING, FLB_OP_API_RESULT };

#define SHARED_ID	0x5EED0001
#define VALUE_KEEP	0x4B0001
#define VALUE_CLOSE	0x4B0002
#define VALUE_FAIL	0x4B0003
#define VALUE_X		0x4B0010
#define VALUE_Y		0x4B0011
#define VALUE_Z		0x4B0012
#define VALUE_U		0x4B0020
#define VALUE_U2	0x4B0021
#define VALUE_FLB	0x4B0030
#define VALUE_W		0x4B0040

static const char * const cases[] = {
	"s1_get_id_second_preserve_busy",
	"s1_get_id_released_on_unpreserve",
	"s1_failed_reboot_fails",
	"s1_no_ebusy_during_failed_reboot",
	"s1_close_during_failed_reboot_unpreserves",
	"s1_name_free_after_close_during_reboot",
	"s1_unregistered_handler_takes_no_file",
	"s1_unpreserve_after_unregister",
	"s1_register_again",
	"s1_flb_op_calls_flb_api",
	"s1_sessions_for_stage_2",
	"s2_flb_not_handed_over",
	"s2_efault_retrieve_fails",
	"s2_efault_retrieve_taken_back",
	"s2_other_session_untouched",
	"s2_retrieve_id_collision_keeps_claim",
	"s2_retrieve_after_unregister_enodev",
	"s2_finish_after_unregister",
};

static void get_id_checks(int luo_fd)
{
	int a = tctl(T_CREATE, SHARED_ID), b = tctl(T_CREATE, SHARED_ID);
	int s1 = luo_create_session(luo_fd, "h-getid-1");
	int s2 = luo_create_session(luo_fd, "h-getid-2");
	int r1 = -EINVAL, r2 = -EINVAL, r3 = -EINVAL;

	if (a >= 0 && b >= 0 && s1 >= 0 && s2 >= 0) {
		r1 = luo_session_preserve_fd(s1, a, 1);
		r2 = luo_session_preserve_fd(s2, b, 1);
	}
	result("s1_get_id_second_preserve_busy", !r1 && r2 == -EBUSY,
	       "objects %d %d sessions %d %d: preserve gave %d then %d", a, b, s1, s2, r1, r2);
	/* Closing the first session unpreserves the object and frees its id. */
	if (s1 >= 0)
		close(s1);
	if (s2 >= 0 && b >= 0)
		r3 = luo_session_preserve_fd(s2, b, 2);
	result("s1_get_id_released_on_unpreserve", !r3, "preserve after unpreserve: %d", r3);
	if (s2 >= 0)
		close(s2);
	close(a);
	close(b);
}

struct race {
	int keep_fd, close_fd;
	int stop;
	long calls, ebusy, other;
};

static void *name_loop(void *p)
{
	struct race *r = p;
	char name[LIVEUPDATE_SESSION_NAME_LENGTH];

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		int e = luo_get_session_name(r->keep_fd, name, sizeof(name));

		r->calls++;
		if (e == -EBUSY)
			r->ebusy++;
		else if (e)
			r->other++;
	}
	return NULL;
}

static void *close_later(void *p)
{
	struct race *r = p;
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	/* The reboot below is in its (300 ms) freeze by then. */
	nanosleep(&ts, NULL);
	close(r->close_fd);
	return NULL;
}

static void failed_reboot_checks(int luo_fd)
{
	struct race r = { 0 };
	pthread_t t1, t2;
	long unpreserved, rb;
	int keep, fail, c, o_keep, o_close, o_fail, again;

	keep = luo_create_session(luo_fd, "h-keep");
	r.close_fd = luo_create_session(luo_fd, "h-close");
	fail = luo_create_session(luo_fd, "h-fail");
	o_keep = tctl(T_CREATE, VALUE_KEEP);
	o_close = tctl(T_CREATE, VALUE_CLOSE);
	o_fail = tctl(T_CREATE, VALUE_FAIL);
	c = keep >= 0 && r.close_fd >= 0 && fail >= 0 && o_keep >= 0 && o_close >= 0 &&
	    o_fail >= 0 &&
	    !luo_session_preserve_fd(keep, o_keep, 1) &&
	    !luo_session_preserve_fd(r.close_fd, o_close, 1) &&
	    !luo_session_preserve_fd(fail, o_fail, 1);
	close(o_keep);
	close(o_close);
	close(o_fail);
	r.keep_fd = keep;
	unpreserved = tctl(T_COUNT, C_UNPRESERVE);

	/* Every freeze sleeps 300 ms; the third (h-fail's) fails with EIO. */
	tctl(T_FREEZE_DELAY, 300);
	tctl(T_FAIL_FREEZE, EIO | (3 << 16));
	pthread_create(&t1, NULL, name_loop, &r);
	pthread_create(&t2, NULL, close_later, &r);
	rb = c ? syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
			 LINUX_REBOOT_CMD_KEXEC, NULL) : 0;
	rb = rb ? -errno : 0;
	pthread_join(t2, NULL);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t1, NULL);
	tctl(T_FREEZE_DELAY, 0);
	tctl(T_FAIL_FREEZE, 0);

	result("s1_failed_reboot_fails", c && rb == -EIO, "setup %d, reboot gave %ld", c, rb);
	result("s1_no_ebusy_during_failed_reboot", r.calls > 0 && !r.ebusy && !r.other,
	       "%ld GET_NAME calls: %ld EBUSY, %ld other errors", r.calls, r.ebusy, r.other);
	result("s1_close_during_failed_reboot_unpreserves",
	       tctl(T_COUNT, C_UNPRESERVE) - unpreserved == 1,
	       "%ld unpreserve calls", tctl(T_COUNT, C_UNPRESERVE) - unpreserved);
	again = luo_create_session(luo_fd, "h-close");
	result("s1_name_free_after_close_during_reboot", again >= 0,
	       "create h-close again: %d", again);
	if (again >= 0)
		close(again);
	close(keep);
	close(fail);
}

static void unregister_checks(int luo_fd)
{
	int s = luo_create_session(luo_fd, "h-unreg");
	int o = tctl(T_CREATE, VALUE_U), o2 = tctl(T_CREATE, VALUE_U2);
	long unpreserved, r_unreg, r_new, r_reg, r_after = -EINVAL;
	int ok = s >= 0 && o >= 0 && o2 >= 0 && !luo_session_preserve_fd(s, o, 1);

	r_unreg = tctl(T_UNREGISTER, 0);
	r_new = ok ? luo_session_preserve_fd(s, o2, 2) : -EINVAL;
	result("s1_unregistered_handler_takes_no_file", ok && !r_unreg && r_new == -ENOENT,
	       "setup %d, unregister %ld, preserve %ld", ok, r_unreg, r_new);
	unpreserved = tctl(T_COUNT, C_UNPRESERVE);
	if (s >= 0)
		close(s);
	result("s1_unpreserve_after_unregister", tctl(T_COUNT, C_UNPRESERVE) - unpreserved == 1,
	       "%ld unpreserve calls", tctl(T_COUNT, C_UNPRESERVE) - unpreserved);
	r_reg = tctl(T_REGISTER, 0);
	s = luo_create_session(luo_fd, "h-unreg");
	if (s >= 0)
		r_after = luo_session_preserve_fd(s, o2, 1);
	result("s1_register_again", !r_reg && !r_after, "register %ld, preserve %ld", r_reg,
	       r_after);
	if (s >= 0)
		close(s);
	close(o);
	close(o2);
}

/*
 * The test FLB's preserve op calls the FLB API, which takes LUO's flb_states
 * lock, with LUO holding the FLB's lock; the reboot takes every FLB's lock
 * under the registry lock. So liveupdate_unregister_flb() must not take the
 * registry lock under flb_states: lockdep reports that inversion at the reboot
 * that ends this stage, and the verdict charges it to the first case of
 * stage 2, s2_flb_not_handed_over.
 */
static void flb_checks(int luo_fd)
{
	long pres = tctl(T_COUNT, C_FLB_PRESERVE), unpres = tctl(T_COUNT, C_FLB_UNPRESERVE);
	long link, unlink = -EINVAL, api = -EINVAL, r = -EINVAL;
	int o = tctl(T_CREATE, VALUE_FLB), s = -1;

	link = tctl(T_FLB, FLB_LINK);
	if (!link) {
		s = luo_create_session(luo_fd, "h-flb");
		if (s >= 0 && o >= 0)
			r = luo_session_preserve_fd(s, o, 1);
		api = tctl(T_FLB, FLB_OP_API_RESULT);
		if (s >= 0)
			close(s);
		unlink = tctl(T_FLB, FLB_UNLINK);
	}
	pres = tctl(T_COUNT, C_FLB_PRESERVE) - pres;
	unpres = tctl(T_COUNT, C_FLB_UNPRESERVE) - unpres;
	/* No incoming object on this boot: ENODATA (no FLB table) or ENOENT. */
	result("s1_flb_op_calls_flb_api",
	       !link && !r && (api == -ENODATA || api == -ENOENT) && pres == 1 && unpres == 1 &&
	       !unlink,
	       "link %s, preserve %s, FLB API from the op %s, %ld preserve %ld unpreserve, unlink %s",
	       res(link), res(r), res(api), pres, unpres, res(unlink));
	if (o >= 0)
		close(o);
}

/*
 * "h-w" holds an object numbered VALUE_W from stage 1. An object with that
 * number, preserved here first, owns the id: retrieving h-w's file makes a
 * second object with the same id, whose claim fails (the kernel warns). When
 * h-w is finished, the first object's claim must stay: a third object with
 * that number cannot be preserved.
 */
static void id_collision_checks(int luo_fd)
{
	int o = tctl(T_CREATE, VALUE_W), o2 = tctl(T_CREATE, VALUE_W);
	int out = luo_create_session(luo_fd, "h-w-out");
	int out2 = luo_create_session(luo_fd, "h-w-out2");
	int w = luo_retrieve_session(luo_fd, "h-w");
	int fd = -EINVAL, value = -1;
	long r_out = -EINVAL, r_fin = -EINVAL, r_again = -EINVAL;

	if (o >= 0 && out >= 0)
		r_out = luo_session_preserve_fd(out, o, 1);
	if (!r_out && w >= 0) {
		fd = luo_session_retrieve_fd(w, 1);
		value = fd >= 0 ? ioctl(fd, T_VALUE) : -1;
		r_fin = luo_session_finish(w);
	}
	if (!r_fin && o2 >= 0 && out2 >= 0)
		r_again = luo_session_preserve_fd(out2, o2, 1);
	result("s2_retrieve_id_collision_keeps_claim",
	       !r_out && fd >= 0 && value == VALUE_W && !r_fin && r_again == -EBUSY,
	       "preserve %s, retrieve %s (value %#x), finish %s, preserve again %s",
	       res(r_out), res(fd), value, res(r_fin), res(r_again));
	if (fd >= 0)
		close(fd);
	if (w >= 0)
		close(w);
	if (out2 >= 0)
		close(out2);
	if (out >= 0)
		close(out);
	close(o);
	close(o2);
}

static void stage_1(int luo_fd)
{
	int x, y, z, w, ox, oy, oz, ow;

	printf("1..11\n");
	if (tdev() < 0) {
		printf("Bail out! cannot open " LUO_TEST_HANDLER ": %s\n", strerror(errno));
		exit(1);
	}
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	get_id_checks(luo_fd);
	failed_reboot_checks(luo_fd);
	unregister_checks(luo_fd);
	flb_checks(luo_fd);

	x = luo_create_session(luo_fd, "h-x");
	y = luo_create_session(luo_fd, "h-y");
	z = luo_create_session(luo_fd, "h-z");
	w = luo_create_session(luo_fd, "h-w");
	ox = tctl(T_CREATE, VALUE_X);
	oy = tctl(T_CREATE, VALUE_Y);
	oz = tctl(T_CREATE, VALUE_Z);
	ow = tctl(T_CREATE, VALUE_W);
	result("s1_sessions_for_stage_2",
	       x >= 0 && y >= 0 && z >= 0 && w >= 0 && !luo_session_preserve_fd(x, ox, 1) &&
	       !luo_session_preserve_fd(y, oy, 1) && !luo_session_preserve_fd(z, oz, 1) &&
	       !luo_session_preserve_fd(w, ow, 1),
	       "sessions %d %d %d %d objects %d %d %d %d", x, y, z, w, ox, oy, oz, ow);
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

static void stage_2(int luo_fd, int state_fd)
{
	struct liveupdate_ioctl_retrieve_session *arg;
	long pg = sysconf(_SC_PAGESIZE);
	int x, y, z, r, x_again;
	long r_unreg, r_fd = -EINVAL, r_fin = -EINVAL, finished, flb;

	printf("1..7\n");
	/* First: see flb_checks(). */
	flb = tctl(T_FLB, FLB_GET_INCOMING);
	result("s2_flb_not_handed_over", flb == -ENOENT, "get_incoming of the test FLB: %s",
	       res(flb));
	/* "h-x": retrieved, and its finish fails when its file is closed. */
	tctl(T_CAN_FINISH, 0);
	x = luo_retrieve_session(luo_fd, "h-x");
	if (x >= 0)
		close(x);
	tctl(T_CAN_FINISH, 1);

	/* "h-y": the reply cannot be written (read-only page): EFAULT. */
	arg = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(arg, 0, sizeof(*arg));
	arg->size = sizeof(*arg);
	memcpy(arg->name, "h-y", sizeof("h-y"));
	mprotect(arg, pg, PROT_READ);
	r = ioctl(luo_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, arg) ? -errno : 0;
	result("s2_efault_retrieve_fails", x >= 0 && r == -EFAULT,
	       "retrieve h-x %d, faulting retrieve of h-y %d", x, r);

	y = luo_retrieve_session(luo_fd, "h-y");
	result("s2_efault_retrieve_taken_back", y >= 0, "retrieve h-y again: %d", y);
	x_again = luo_retrieve_session(luo_fd, "h-x");
	result("s2_other_session_untouched", x_again == -EINVAL,
	       "retrieve h-x again: %d (it is retrieved, not taken back)", x_again);
	if (y >= 0) {
		luo_session_finish(y);
		close(y);
	}
	if (x_again >= 0)
		close(x_again);

	/* Before the handler is unregistered below: h-w's file needs it. */
	id_collision_checks(luo_fd);

	/* "h-z" was matched to the handler when the device was opened. */
	r_unreg = tctl(T_UNREGISTER, 0);
	finished = tctl(T_COUNT, C_FINISH);
	z = luo_retrieve_session(luo_fd, "h-z");
	if (z >= 0) {
		r_fd = luo_session_retrieve_fd(z, 1);
		r_fin = luo_session_finish(z);
		close(z);
	}
	result("s2_retrieve_after_unregister_enodev", !r_unreg && z >= 0 && r_fd == -ENODEV,
	       "unregister %ld, session %d, retrieve_fd %ld", r_unreg, z, r_fd);
	result("s2_finish_after_unregister", !r_fin && tctl(T_COUNT, C_FINISH) == finished,
	       "finish %ld, handler finish calls %ld", r_fin, tctl(T_COUNT, C_FINISH) - finished);
	tctl(T_REGISTER, 0);
	luo_session_finish(state_fd);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	return ktap_main(argc, argv, cases, ARRAY_SIZE(cases), STATE_SESSION_NAME, stage_1,
			 stage_2);
}
