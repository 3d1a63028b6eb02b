// SPDX-License-Identifier: GPL-2.0-only
/*
 * An FLB in a loadable module (Documentation/core-api/liveupdate-rust.rst,
 * "Handlers in modules"): /tests/luo_rs_test_mod.ko loaded with flb=1 links
 * an FLB, a static of the module, to its pipe handler, and logs each FLB op
 * ("luo_rs_test_mod: FLB preserved", ...). At load it also calls
 * liveupdate_flb_get_incoming() and logs the result ("FLB incoming at load:
 * N"). The Rust test handler's device reports how many FLBs LUO keeps a
 * state for (FLB(4)).
 *
 *   -s 1  - flb_state_follows_module: 20 times, loading the module adds one
 *           FLB state and unloading it takes it away again (LUO keeps nothing
 *           that points into a gone module);
 *         - preserved_flb_pins_module: two pipes preserved: the FLB is
 *           preserved once, the module cannot be unloaded; closing the
 *           session unpreserves the FLB once, then the module unloads and its
 *           state is gone;
 *         - flb_for_kexec: three pipes preserved with the FLB, kept across
 *           the kexec.
 *   -s 2  - flb_retrieved_at_load: loading the module retrieves the FLB
 *           (its handle checked by the FLB) and get_incoming succeeds;
 *         - incoming_pins_module: the session's three pipes are back, and
 *           the module cannot be unloaded;
 *         - finish_finishes_flb: FINISH of the session finishes the FLB once;
 *           closing it lets the module go, and its state with it;
 *         - flb_retrieved_once: loaded again, get_incoming gives ENODATA and
 *           the FLB is not retrieved again (a new FLB object, the same
 *           incoming entry, taken once per boot).
 *
 * A memfd session, made first and kept, holds the test FLBs that
 * lib/tests/liveupdate.c links to every handler, as in luo_rs_module.
 *
 * KTAP per check; --list prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"
#include "luo_rs_module.h"

#define PIN_SESSION	"modflb-pin"
#define PIN_DATA	"keeps the test FLBs preserved"
#define KEXEC_SESSION	"modflb-k"
#define T_FLB		_IO('L', 12)
#define FLB_STATES	4
#define CYCLES		20

#define LOG_PRESERVED	"luo_rs_test_mod: FLB preserved"
#define LOG_UNPRESERVED	"luo_rs_test_mod: FLB unpreserved"
#define LOG_RETRIEVED	"luo_rs_test_mod: FLB retrieved 0x7e570f1b"
#define LOG_FINISHED	"luo_rs_test_mod: FLB finished"
#define LOG_LOAD_OK	"luo_rs_test_mod: FLB incoming at load: 0"
#define LOG_LOAD_NODATA	"luo_rs_test_mod: FLB incoming at load: -61"

static const char * const cases[] = {
	"s1_flb_state_follows_module",
	"s1_preserved_flb_pins_module",
	"s1_flb_for_kexec",
	"s2_flb_retrieved_at_load",
	"s2_incoming_pins_module",
	"s2_finish_finishes_flb",
	"s2_flb_retrieved_once",
};

static int luo_fd = -1;

/* Loads the test module with flb=1: 0 or -errno. */
static int load(void)
{
	return load_module("flb=1");
}

/* How many FLBs LUO keeps a state for: >= 0, or -errno. */
static int flb_states(void)
{
	int r = tdev() < 0 ? -1 : ioctl(tdev(), T_FLB, FLB_STATES);

	return r < 0 ? -errno : r;
}

/* The memfd session that keeps the built-in test FLBs preserved. */
static void pin_test_flbs(void)
{
	int pin = luo_create_session(luo_fd, PIN_SESSION);
	int m = pin >= 0 ? create_and_preserve_memfd(pin, 1, PIN_DATA) : pin;

	if (m < 0) {
		printf("Bail out! FLB pin session: %s\n", res(m));
		exit(1);
	}
}

static void s1_flb_state_follows_module(void)
{
	int n0 = flb_states(), bad = 0, l = 0, u = 0, loaded = 0, after = 0;

	for (int i = 0; i < CYCLES && !bad; i++) {
		l = load();
		loaded = flb_states();
		u = unload();
		after = flb_states();
		bad = l || u || loaded != n0 + 1 || after != n0;
	}
	result("s1_flb_state_follows_module", n0 >= 0 && !bad,
	       "before %d states; last cycle: load %s, %d states, unload %s, %d states",
	       n0, res(l), loaded, res(u), after);
}

static void s1_preserved_flb_pins_module(void)
{
	int n0 = flb_states(), p0 = count_in_log(LOG_PRESERVED);
	int up0 = count_in_log(LOG_UNPRESERVED);
	int l = load(), s = luo_create_session(luo_fd, "modflb-s1");
	int r1 = s >= 0 ? preserve_pipe(s, 1) : s, r2 = s >= 0 ? preserve_pipe(s, 2) : s;
	int p = count_in_log(LOG_PRESERVED) - p0, busy = unload(), up, u, n;

	if (s >= 0)
		close(s);
	up = count_in_log(LOG_UNPRESERVED) - up0;
	u = unload();
	n = flb_states();
	result("s1_preserved_flb_pins_module",
	       !l && !r1 && !r2 && p == 1 && busy == -EWOULDBLOCK && up == 1 && !u && n == n0,
	       "load %s, preserve %s %s, FLB preserved %d times (want 1), unload %s (want EWOULDBLOCK), unpreserved %d times (want 1), unload after close %s, states %d -> %d",
	       res(l), res(r1), res(r2), p, res(busy), up, res(u), n0, n);
}

static void s1_flb_for_kexec(void)
{
	int p0 = count_in_log(LOG_PRESERVED), l = load();
	int s = luo_create_session(luo_fd, KEXEC_SESSION), bad = 0, p;

	for (int t = 1; t <= 3; t++)
		bad += (s >= 0 ? preserve_pipe(s, t) : s) != 0;
	p = count_in_log(LOG_PRESERVED) - p0;
	/* The session fd stays open: its pipes, and the FLB, go to the next kernel. */
	result("s1_flb_for_kexec", !l && s >= 0 && !bad && p == 1,
	       "load %s, session %s, %d preserve failures, FLB preserved %d times (want 1)",
	       res(l), res(s), bad, p);
}

static void stage_1(void)
{
	printf("1..3\n");
	luo_fd = luo_open_device();
	if (luo_fd < 0) {
		printf("Bail out! cannot open /dev/liveupdate: %s\n", strerror(errno));
		exit(1);
	}
	pin_test_flbs();
	s1_flb_state_follows_module();
	s1_preserved_flb_pins_module();
	s1_flb_for_kexec();
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

static void stage_2(void)
{
	int n0 = flb_states(), l, s, busy, rets[3], back = 0, f, fin, u, n, l2, u2, nodata, retr;

	printf("1..4\n");
	l = load();
	result("s2_flb_retrieved_at_load",
	       !l && count_in_log(LOG_RETRIEVED) == 1 && count_in_log(LOG_LOAD_OK) == 1,
	       "load %s, FLB retrieved with its handle %d times (want 1), get_incoming at load succeeded %d times (want 1)",
	       res(l), count_in_log(LOG_RETRIEVED), count_in_log(LOG_LOAD_OK));

	luo_fd = luo_open_device();
	s = luo_fd >= 0 ? luo_retrieve_session(luo_fd, KEXEC_SESSION) : -errno;
	for (int t = 1; t <= 3; t++) {
		rets[t - 1] = s >= 0 ? luo_session_retrieve_fd(s, t) : s;
		/* The handler keeps nothing: its retrieve fails with EOPNOTSUPP. */
		back += rets[t - 1] == -EOPNOTSUPP;
	}
	busy = unload();
	result("s2_incoming_pins_module", s >= 0 && back == 3 && busy == -EWOULDBLOCK,
	       "session %s, retrieve %s %s %s (want EOPNOTSUPP), unload %s (want EWOULDBLOCK)",
	       res(s), res(rets[0]), res(rets[1]), res(rets[2]), res(busy));

	f = s >= 0 ? luo_session_finish(s) : s;
	fin = count_in_log(LOG_FINISHED);
	if (s >= 0)
		close(s);
	u = unload();
	n = flb_states();
	result("s2_finish_finishes_flb", !f && fin == 1 && !u && n == n0,
	       "finish %s, FLB finished %d times (want 1), unload %s, states %d -> %d (want %d)",
	       res(f), fin, res(u), n0 + 1, n, n0);

	l2 = load();
	nodata = count_in_log(LOG_LOAD_NODATA);
	retr = count_in_log(LOG_RETRIEVED);
	u2 = unload();
	result("s2_flb_retrieved_once", !l2 && nodata == 1 && retr == 1 && !u2,
	       "load %s, get_incoming gave ENODATA %d times (want 1), FLB retrieved %d times in all (want 1), unload %s",
	       res(l2), nodata, retr, res(u2));
	ktap_exit();
}

int main(int argc, char *argv[])
{
	return ktap_stages_main(argc, argv, cases, ARRAY_SIZE(cases), stage_1, stage_2);
}
