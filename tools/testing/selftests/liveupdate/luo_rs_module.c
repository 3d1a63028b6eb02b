// SPDX-License-Identifier: GPL-2.0-only
/*
 * A file handler in a loadable module, loaded and unloaded while LUO uses it
 * (Documentation/core-api/liveupdate-rust.rst, "Handlers in modules"). The
 * module is /tests/luo_rs_test_mod.ko (kernel/liveupdate/luo_rs_test_mod.rs,
 * CONFIG_LIVEUPDATE_RUST_TEST_MOD=m): its handler takes pipes, and its
 * can_preserve() sleeps 1 ms before it says yes, so that an unload often
 * comes while a PRESERVE_FD is in it.
 *
 *   -s 1  - no_module_enoent: without the module, PRESERVE_FD of a pipe fails
 *           with ENOENT (no handler takes it);
 *         - preserved_pipe_pins_module: with it, a preserved pipe keeps it
 *           loaded (delete_module: EWOULDBLOCK) until its session is closed;
 *         - preserve_races_unload: NR_THREADS threads preserve pipes, one
 *           session each at a time, for RACE_MS while this thread loads and
 *           unloads the module: every PRESERVE_FD succeeds or fails with
 *           ENOENT, every unload succeeds or fails with EWOULDBLOCK, no
 *           unload succeeds while a pipe counted as preserved is in an open
 *           session, and the module was unloaded at least once;
 *         - sessions_for_kexec: the module loaded, NR_SESSIONS sessions of
 *           NR_PIPES pipes each, kept across the kexec.
 *   -s 2  the module is loaded and unloaded in a loop while the first open of
 *         /dev/liveupdate builds the incoming sessions:
 *         - first_open_succeeds: a module going away drops its files, never
 *           the open;
 *         - each_pipe_kept_or_dropped: each pipe of the previous kernel is in
 *           its session (RETRIEVE_FD gives the handler's EOPNOTSUPP) or was
 *           dropped, named in exactly one warning (ENOENT);
 *         - kept_pipes_pin_module: while a session with a kept pipe is not
 *           finished, the module cannot be unloaded;
 *         - unload_after_finish: once every session is finished, it can.
 *
 * A memfd session made first and kept to the end holds the test FLBs that
 * lib/tests/liveupdate.c links to every handler, so that preserving and
 * unpreserving pipes never runs (and logs) their preserve and unpreserve.
 *
 * The warnings for dropped pipes, of handler luo-rs-test-mod-v1, are expected:
 * the suite's allowlist names them. A kernel report (KASAN, lockdep, an oops
 * from calling into an unloaded module) fails the case through the harness.
 *
 * KTAP per check; --list prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"
#include "luo_rs_module.h"

#define COMPATIBLE	"luo-rs-test-mod-v1"
#define PIN_SESSION	"mod-flb-pin"
#define PIN_DATA	"keeps the test FLBs preserved"
#define NR_THREADS	2
#define RACE_MS		3000
#define NR_SESSIONS	16
#define NR_PIPES	4

static const char * const cases[] = {
	"s1_no_module_enoent",
	"s1_preserved_pipe_pins_module",
	"s1_preserve_races_unload",
	"s1_sessions_for_kexec",
	"s2_first_open_succeeds",
	"s2_each_pipe_kept_or_dropped",
	"s2_kept_pipes_pin_module",
	"s2_unload_after_finish",
};

static int luo_fd = -1;

/* Loads the test module: 0 or -errno. */
static int load(void)
{
	return load_module("");
}

static long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s1_no_module_enoent(void)
{
	int u = unload(), s = luo_create_session(luo_fd, "mod-s1-a");
	int r = s >= 0 ? preserve_pipe(s, 1) : s;

	result("s1_no_module_enoent", (u == 0 || u == -ENOENT) && s >= 0 && r == -ENOENT,
	       "unload %s, session %s, preserve %s (want ENOENT)", res(u), res(s), res(r));
	if (s >= 0)
		close(s);
}

static void s1_preserved_pipe_pins_module(void)
{
	int l = load(), s = luo_create_session(luo_fd, "mod-s1-b"), r, busy, u;

	r = s >= 0 ? preserve_pipe(s, 1) : s;
	busy = unload();
	if (s >= 0)
		close(s);
	u = unload();
	result("s1_preserved_pipe_pins_module",
	       !l && !r && busy == -EWOULDBLOCK && !u,
	       "load %s, preserve %s, unload while preserved %s (want EWOULDBLOCK), after close %s",
	       res(l), res(r), res(busy), res(u));
}

/* What the race's threads share. */
static struct {
	atomic_int stop;
	/* Pipes preserved in sessions not yet closed (see preserver()). */
	atomic_int held;
	atomic_int ok, enoent, bad, bad_errno;
} race;

/*
 * One session at a time, one pipe in it, kept for a moment, then the session
 * is closed. race.held counts the pipe from after its PRESERVE_FD succeeded to
 * before its session is closed: while it does, the module cannot be unloaded.
 */
static void *preserver(void *arg)
{
	long id = (long)arg;

	for (int round = 0; !atomic_load(&race.stop); round++) {
		char name[32];
		int s, r;

		snprintf(name, sizeof(name), "mod-r%ld-%d", id, round);
		s = luo_create_session(luo_fd, name);
		if (s < 0) {
			atomic_store(&race.bad_errno, s);
			atomic_fetch_add(&race.bad, 1);
			break;
		}
		r = preserve_pipe(s, 1);
		if (!r) {
			atomic_fetch_add(&race.held, 1);
			atomic_fetch_add(&race.ok, 1);
			usleep(300);
			atomic_fetch_sub(&race.held, 1);
		} else if (r == -ENOENT) {
			atomic_fetch_add(&race.enoent, 1);
		} else {
			atomic_store(&race.bad_errno, r);
			atomic_fetch_add(&race.bad, 1);
		}
		close(s);
		/* Gaps in which the module may be unloaded. */
		usleep(500);
	}
	return NULL;
}

static void s1_preserve_races_unload(void)
{
	int loads = 0, unloads = 0, busy = 0, bad = 0, bad_r = 0, pinned = 0, fin;
	pthread_t th[NR_THREADS];
	long end = now_ms() + RACE_MS;
	bool loaded = false;

	for (long i = 0; i < NR_THREADS; i++)
		pthread_create(&th[i], NULL, preserver, (void *)i);
	while (now_ms() < end) {
		int r;

		if (!loaded) {
			r = load();
			if (r && r != -EEXIST) {
				bad++;
				bad_r = r;
				break;
			}
			loads++;
			loaded = true;
		}
		r = unload();
		if (!r) {
			unloads++;
			loaded = false;
			/* Only this thread loads it: no pipe can be in it now. */
			if (atomic_load(&race.held))
				pinned++;
		} else if (r == -EWOULDBLOCK) {
			busy++;
			usleep(100);
		} else {
			bad++;
			bad_r = r;
			break;
		}
	}
	atomic_store(&race.stop, 1);
	for (int i = 0; i < NR_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Every session is closed: the module goes, if it is loaded. */
	fin = unload();
	printf("# preserve_races_unload: %d loads, %d unloads, %d busy; PRESERVE_FD: %d ok, %d ENOENT\n",
	       loads, unloads, busy, atomic_load(&race.ok), atomic_load(&race.enoent));
	if (bad || atomic_load(&race.bad))
		printf("# preserve_races_unload: load/unload errors %d (last %s), PRESERVE_FD errors %d (last %s)\n",
		       bad, res(bad_r), atomic_load(&race.bad), res(atomic_load(&race.bad_errno)));
	result("s1_preserve_races_unload",
	       !bad && !atomic_load(&race.bad) && !pinned && unloads > 0 &&
	       atomic_load(&race.ok) > 0 && (fin == 0 || fin == -ENOENT),
	       "%d errors, %d unloads with a pipe preserved, %d unloads, %d preserved, final unload %s",
	       bad + atomic_load(&race.bad), pinned, unloads, atomic_load(&race.ok), res(fin));
}

static void s1_sessions_for_kexec(void)
{
	int l = load(), bad = 0, bad_r = 0;

	for (int i = 0; i < NR_SESSIONS; i++) {
		char name[32];
		int s;

		snprintf(name, sizeof(name), "mod-k-%02d", i);
		s = luo_create_session(luo_fd, name);
		for (int t = 1; t <= NR_PIPES; t++) {
			int r = s >= 0 ? preserve_pipe(s, t) : s;

			if (r) {
				bad++;
				bad_r = r;
			}
		}
		/* The session fd stays open: its pipes go to the next kernel. */
	}
	result("s1_sessions_for_kexec", !l && !bad, "load %s, %d failures (last %s)", res(l),
	       bad, res(bad_r));
}

static void stage_1(void)
{
	int pin, m;

	printf("1..4\n");
	luo_fd = luo_open_device();
	if (luo_fd < 0) {
		printf("Bail out! cannot open /dev/liveupdate: %s\n", strerror(errno));
		exit(1);
	}
	pin = luo_create_session(luo_fd, PIN_SESSION);
	m = pin >= 0 ? create_and_preserve_memfd(pin, 1, PIN_DATA) : pin;
	if (m < 0) {
		printf("Bail out! FLB pin session: %s\n", res(m));
		exit(1);
	}
	s1_no_module_enoent();
	s1_preserved_pipe_pins_module();
	s1_preserve_races_unload();
	s1_sessions_for_kexec();
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	daemonize_and_wait();
}

/* The loader of stage 2: loads and unloads the module until told to stop. */
static atomic_int stop_loader;

/* Load/unload cycles the loader completed (a load, then an unload attempt). */
static atomic_int loader_cycles;

static void *loader(void *arg)
{
	int *bad_r = arg;

	while (!atomic_load(&stop_loader)) {
		int r = load();

		if (r && r != -EEXIST) {
			*bad_r = r;
			break;
		}
		atomic_fetch_add(&loader_cycles, 1);
		r = unload();
		if (r && r != -EWOULDBLOCK) {
			*bad_r = r;
			break;
		}
	}
	return NULL;
}

/* How many times each pipe of the previous kernel was named as dropped. */
static int dropped[NR_SESSIONS][NR_PIPES + 1];

static void read_drops(void)
{
	char rec[2048];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	ssize_t len;

	if (fd < 0)
		return;
	while ((len = read(fd, rec, sizeof(rec) - 1)) > 0 || (len < 0 && errno == EPIPE)) {
		unsigned int t;
		char *p;
		int i;

		if (len <= 0)
			continue;
		rec[len] = 0;
		p = strstr(rec, "session [mod-k-");
		if (!p || !strstr(p, "no registered handler for compatible '" COMPATIBLE "'"))
			continue;
		if (sscanf(p, "session [mod-k-%d]: dropped token 0x%x:", &i, &t) == 2 &&
		    i >= 0 && i < NR_SESSIONS && t >= 1 && t <= NR_PIPES)
			dropped[i][t]++;
	}
	close(fd);
}

static void stage_2(void)
{
	int loader_r = 0, kept = 0, gone = 0, mismatch = 0, busy = 0, bad_finish = 0;
	int sessions[NR_SESSIONS], pin, m, fp, l, u, before, after;
	char why[160] = "";
	pthread_t th;

	printf("1..4\n");
	pthread_create(&th, NULL, loader, &loader_r);
	/*
	 * Open only once the loader is cycling (the first finit_module of a
	 * KASAN kernel under an emulator can take long), and stop it only after
	 * it has cycled again, so that the open really races load and unload.
	 */
	for (int ms = 0; ms < 20000 && atomic_load(&loader_cycles) < 2 && !loader_r; ms++)
		usleep(1000);
	before = atomic_load(&loader_cycles);
	luo_fd = luo_open_device();
	if (luo_fd < 0)
		luo_fd = -errno;
	for (int ms = 0; ms < 20000 && atomic_load(&loader_cycles) < before + 2 && !loader_r; ms++)
		usleep(1000);
	atomic_store(&stop_loader, 1);
	pthread_join(th, NULL);
	after = atomic_load(&loader_cycles);
	printf("# first_open_succeeds: %d load/unload cycles before the open, %d after\n", before,
	       after - before);
	result("s2_first_open_succeeds", luo_fd >= 0 && !loader_r && before >= 2 &&
	       after >= before + 2,
	       "first open %s, loader %s, %d cycles before the open and %d after (want 2 each)",
	       res(luo_fd), res(loader_r), before, after - before);
	if (luo_fd < 0)
		exit(1);

	read_drops();
	for (int i = 0; i < NR_SESSIONS; i++) {
		char name[32];

		snprintf(name, sizeof(name), "mod-k-%02d", i);
		sessions[i] = luo_retrieve_session(luo_fd, name);
		for (int t = 1; t <= NR_PIPES; t++) {
			int r = sessions[i] >= 0 ? luo_session_retrieve_fd(sessions[i], t) :
						   sessions[i];
			bool ok = (r == -EOPNOTSUPP && !dropped[i][t]) ||
				  (r == -ENOENT && dropped[i][t] == 1);

			kept += r == -EOPNOTSUPP;
			gone += r == -ENOENT;
			if (!ok && !mismatch++)
				snprintf(why, sizeof(why), "%s token %d: retrieve %s, named %d times",
					 name, t, res(r), dropped[i][t]);
		}
	}
	printf("# each_pipe_kept_or_dropped: %d kept, %d dropped\n", kept, gone);
	result("s2_each_pipe_kept_or_dropped", !mismatch, "%d mismatches, first: %s", mismatch,
	       why);

	/* Kept pipes hold the module: it is loaded, and stays. */
	if (kept) {
		busy = unload();
		result("s2_kept_pipes_pin_module", busy == -EWOULDBLOCK,
		       "unload with %d pipes kept: %s (want EWOULDBLOCK)", kept, res(busy));
	} else {
		printf("# kept_pipes_pin_module: no pipe kept (the first open came while the module was out)\n");
		result("s2_kept_pipes_pin_module", 1, "no pipe kept");
	}

	for (int i = 0; i < NR_SESSIONS; i++) {
		if (sessions[i] < 0 || luo_session_finish(sessions[i]))
			bad_finish++;
		if (sessions[i] >= 0)
			close(sessions[i]);
	}
	pin = luo_retrieve_session(luo_fd, PIN_SESSION);
	m = pin >= 0 ? restore_and_verify_memfd(pin, 1, PIN_DATA) : pin;
	if (m >= 0)
		close(m);
	fp = pin >= 0 ? luo_session_finish(pin) : pin;
	l = load();
	u = unload();
	result("s2_unload_after_finish",
	       !bad_finish && m >= 0 && !fp && (!l || l == -EEXIST) && !u,
	       "%d sessions not finished, pin memfd %s, finish %s, load %s, unload %s", bad_finish,
	       res(m), res(fp), res(l), res(u));
	ktap_exit();
}

int main(int argc, char *argv[])
{
	return ktap_stages_main(argc, argv, cases, ARRAY_SIZE(cases), stage_1, stage_2);
}
