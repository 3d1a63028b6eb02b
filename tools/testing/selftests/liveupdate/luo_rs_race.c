// SPDX-License-Identifier: GPL-2.0-only
/*
 * Races on /dev/liveupdate and session fds, for any LUO (C or Rust). Each
 * case runs several threads for a bounded number of iterations and then
 * checks invariants: errnos from a fixed set, counts, data, and that LUO is
 * still usable. A WARNING, lockdep report or error from the kernel fails the
 * case through the harness.
 *
 *   -s 1  - create_close: threads create, rename-collide (EEXIST), preserve
 *           memfds into and close sessions; afterwards every name and memfd
 *           is free again;
 *         - close_while_preserving: one thread preserves memfds into a
 *           session while another closes the session fd; afterwards every
 *           memfd can be preserved again (the closed session let go of all);
 *         - same_memfd_two_sessions: two threads preserve one memfd into
 *           two sessions at once, 200 times: exactly one wins, the other
 *           gets EBUSY;
 *         - device_close: the device fd is closed while threads create
 *           sessions through it; it can be opened again, and the sessions
 *           made through it still work;
 *         - flb_storm: threads preserve memfds (whose handler carries the
 *           test FLBs) into their own sessions and close them, at once;
 *         - reboot: threads create sessions with two memfds of known
 *           contents each, while this process calls reboot(KEXEC). Just
 *           before the reboot() call it records, in a memfd preserved in its
 *           own session (luo_rs_race_snap), how far each thread had got.
 *   -s 2  - the sessions that came back are exactly what the reboot must
 *           have kept: every session whose ioctls had all returned before
 *           reboot() was called (the record) is back, whole and exact, or
 *           gone if it had been closed; beyond that, each thread's sessions
 *           are a prefix of its work (see check_thread());
 *         - after all files are finished, the test FLBs' finish ran (the
 *           FLB counts survived the storms and the race with the reboot).
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

#define STATE_SESSION_NAME	"luo_rs_race_state"
#define STATE_MEMFD_TOKEN	993
#define SNAP_SESSION_NAME	"luo_rs_race_snap"
#define SNAP_MAGIC		"luo_rs_race v1"
#define NR_THREADS		4
#define ITERS			200
#define NR_REBOOT_SESSIONS	48
#define MEMFD_SIZE		4096
#define NR_TEST_FLBS		3

static const char * const cases[] = {
	"s1_create_close",
	"s1_close_while_preserving",
	"s1_same_memfd_two_sessions",
	"s1_device_close",
	"s1_flb_storm",
	"s2_sessions_consistent",
	"s2_flb_finish_after_last_file",
};

static int luo_fd;

/* Bit for an errno in an allowed set (errnos above 63 are never allowed). */
#define E(e)	(1ULL << (e))

/* A result outside `allowed` (0 is always fine) is counted in *bad. */
static void check(long r, unsigned long long allowed, long *bad, long *last_bad)
{
	if (r >= 0)
		return;
	if (-r < 64 && (allowed & E(-r)))
		return;
	__atomic_add_fetch(bad, 1, __ATOMIC_RELAXED);
	*last_bad = r;
}

static int new_memfd(unsigned int seed)
{
	char buf[MEMFD_SIZE];
	int fd = memfd_create("race", 0);
	unsigned int i;

	if (fd < 0)
		return -errno;
	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(seed * 131 + i * 7);
	if (write(fd, buf, sizeof(buf)) != sizeof(buf)) {
		close(fd);
		return -EIO;
	}
	return fd;
}

static int memfd_ok(int fd, unsigned int seed)
{
	char buf[MEMFD_SIZE];
	unsigned int i;

	if (pread(fd, buf, sizeof(buf), 0) != sizeof(buf))
		return 0;
	for (i = 0; i < sizeof(buf); i++)
		if (buf[i] != (char)(seed * 131 + i * 7))
			return 0;
	return 1;
}

static void run_threads(void *(*fn)(void *), void *args, size_t size, int n)
{
	pthread_t th[NR_THREADS * 2];
	int i;

	for (i = 0; i < n; i++)
		pthread_create(&th[i], NULL, fn, (char *)args + i * size);
	for (i = 0; i < n; i++)
		pthread_join(th[i], NULL);
}

/* --- create_close --------------------------------------------------------- */

struct cc_arg {
	int tid;
	long bad, last_bad, created;
};

static void *create_close(void *p)
{
	struct cc_arg *a = p;
	char name[32];
	int i;

	for (i = 0; i < ITERS; i++) {
		/* Names shared by all threads, so creates collide. */
		int s, m;

		snprintf(name, sizeof(name), "cc-%d", i % 8);
		s = luo_create_session(luo_fd, name);
		check(s, E(EEXIST), &a->bad, &a->last_bad);
		if (s < 0)
			continue;
		a->created++;
		m = new_memfd(a->tid * 1000 + i);
		if (m >= 0) {
			check(luo_session_preserve_fd(s, m, i), 0, &a->bad, &a->last_bad);
			close(m);
		}
		close(s);
	}
	return NULL;
}

static void case_create_close(void)
{
	struct cc_arg a[NR_THREADS] = {};
	long bad = 0, last = 0, created = 0;
	int i, again = 0;
	char name[32];

	for (i = 0; i < NR_THREADS; i++)
		a[i].tid = i;
	run_threads(create_close, a, sizeof(a[0]), NR_THREADS);
	for (i = 0; i < NR_THREADS; i++) {
		bad += a[i].bad;
		created += a[i].created;
		if (a[i].bad)
			last = a[i].last_bad;
	}
	for (i = 0; i < 8; i++) {
		int s;

		snprintf(name, sizeof(name), "cc-%d", i);
		s = luo_create_session(luo_fd, name);
		again += s >= 0;
		if (s >= 0)
			close(s);
	}
	result("s1_create_close", !bad && created > 0 && again == 8,
	       "%ld unexpected errnos (last %ld), %ld created, %d of 8 names free after", bad,
	       last, created, again);
}

/* --- close_while_preserving ----------------------------------------------- */

#define NR_CWP_MEMFDS	64

struct cwp {
	int session;
	int memfds[NR_CWP_MEMFDS];
	long bad, last_bad, preserved;
};

static void *cwp_preserver(void *p)
{
	struct cwp *c = p;
	int i;

	for (i = 0; i < NR_CWP_MEMFDS; i++) {
		long r = luo_session_preserve_fd(c->session, c->memfds[i], i);

		/* The session fd may be closed (EBADF) or reused by a new file (ENOTTY...). */
		check(r, E(EBADF) | E(ENOTTY) | E(EINVAL), &c->bad, &c->last_bad);
		c->preserved += !r;
	}
	return NULL;
}

static void *cwp_closer(void *p)
{
	struct cwp *c = p;
	struct timespec ts = { 0, (rand() % 2000) * 1000 };

	nanosleep(&ts, NULL);
	close(c->session);
	return NULL;
}

static void case_close_while_preserving(void)
{
	long bad = 0, last = 0, preserved = 0, busy = 0;
	int round, i;

	for (round = 0; round < 20; round++) {
		struct cwp c = { 0 };
		pthread_t t1, t2;
		int s2;

		c.session = luo_create_session(luo_fd, "cwp");
		for (i = 0; i < NR_CWP_MEMFDS; i++)
			c.memfds[i] = new_memfd(i);
		pthread_create(&t1, NULL, cwp_preserver, &c);
		pthread_create(&t2, NULL, cwp_closer, &c);
		pthread_join(t1, NULL);
		pthread_join(t2, NULL);
		bad += c.bad;
		if (c.bad)
			last = c.last_bad;
		preserved += c.preserved;
		/* Every memfd is free again: preserving it elsewhere works. */
		s2 = luo_create_session(luo_fd, "cwp-check");
		for (i = 0; i < NR_CWP_MEMFDS; i++) {
			if (s2 >= 0 && luo_session_preserve_fd(s2, c.memfds[i], i))
				busy++;
			close(c.memfds[i]);
		}
		if (s2 >= 0)
			close(s2);
		else
			busy++;
	}
	result("s1_close_while_preserving", !bad && !busy,
	       "%ld unexpected errnos (last %ld), %ld preserved, %ld memfds still held", bad,
	       last, preserved, busy);
}

/* --- same_memfd_two_sessions ---------------------------------------------- */

struct smts {
	pthread_barrier_t *bar;
	int session, memfd;
	long r;
};

static void *smts_thread(void *p)
{
	struct smts *s = p;

	pthread_barrier_wait(s->bar);
	s->r = luo_session_preserve_fd(s->session, s->memfd, 1);
	return NULL;
}

static void case_same_memfd_two_sessions(void)
{
	int round, wrong = 0;
	long r0 = 0, r1 = 0;
	int a = luo_create_session(luo_fd, "smts-a");
	int b = luo_create_session(luo_fd, "smts-b");

	for (round = 0; a >= 0 && b >= 0 && round < ITERS; round++) {
		pthread_barrier_t bar;
		struct smts t[2];
		pthread_t th[2];
		int m = new_memfd(round), i;

		pthread_barrier_init(&bar, NULL, 2);
		for (i = 0; i < 2; i++) {
			t[i] = (struct smts){ &bar, i ? b : a, m, 0 };
			pthread_create(&th[i], NULL, smts_thread, &t[i]);
		}
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&bar);
		if (!((t[0].r == 0 && t[1].r == -EBUSY) || (t[0].r == -EBUSY && t[1].r == 0))) {
			wrong++;
			r0 = t[0].r;
			r1 = t[1].r;
		}
		close(m);
		/* Start over with empty sessions, so tokens never collide. */
		close(a);
		close(b);
		a = luo_create_session(luo_fd, "smts-a");
		b = luo_create_session(luo_fd, "smts-b");
	}
	result("s1_same_memfd_two_sessions", a >= 0 && b >= 0 && !wrong,
	       "sessions %d %d; %d rounds without exactly one winner (last: %ld %ld)", a, b,
	       wrong, r0, r1);
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
}

/* --- device_close --------------------------------------------------------- */

struct dc_arg {
	int tid;
	long bad, last_bad;
	int sessions[ITERS];
	int n;
};

static void *dc_creator(void *p)
{
	struct dc_arg *a = p;
	char name[32];
	int i;

	for (i = 0; i < ITERS / 4; i++) {
		int s;

		snprintf(name, sizeof(name), "dc-%d-%d", a->tid, i);
		s = luo_create_session(luo_fd, name);
		/* After the close: EBADF, or the number reused by another file. */
		check(s, E(EBADF) | E(ENOTTY) | E(EINVAL), &a->bad, &a->last_bad);
		if (s >= 0)
			a->sessions[a->n++] = s;
	}
	return NULL;
}

static void case_device_close(void)
{
	struct dc_arg a[NR_THREADS] = {};
	struct timespec ts = { 0, 2 * 1000 * 1000 };
	pthread_t th[NR_THREADS];
	long bad = 0, last = 0;
	int i, j, usable = 0, total = 0, m;

	for (i = 0; i < NR_THREADS; i++) {
		a[i].tid = i;
		pthread_create(&th[i], NULL, dc_creator, &a[i]);
	}
	nanosleep(&ts, NULL);
	close(luo_fd);
	for (i = 0; i < NR_THREADS; i++)
		pthread_join(th[i], NULL);
	luo_fd = luo_open_device();
	m = new_memfd(7);
	for (i = 0; i < NR_THREADS; i++) {
		bad += a[i].bad;
		if (a[i].bad)
			last = a[i].last_bad;
		for (j = 0; j < a[i].n; j++) {
			total++;
			/* A session made through the old device fd still takes files. */
			if (!luo_session_preserve_fd(a[i].sessions[j], m, 1)) {
				usable++;
				close(a[i].sessions[j]);
			} else {
				close(a[i].sessions[j]);
			}
		}
	}
	close(m);
	result("s1_device_close", luo_fd >= 0 && !bad && usable == total,
	       "reopen %d, %ld unexpected errnos (last %ld), %d of %d sessions usable", luo_fd,
	       bad, last, usable, total);
}

/* --- flb_storm ------------------------------------------------------------ */

static void *flb_storm(void *p)
{
	struct cc_arg *a = p;
	char name[32];
	int i, j;

	for (i = 0; i < ITERS / 10; i++) {
		int s, m[4];

		snprintf(name, sizeof(name), "flb-%d-%d", a->tid, i);
		s = luo_create_session(luo_fd, name);
		check(s, 0, &a->bad, &a->last_bad);
		for (j = 0; j < 4; j++) {
			m[j] = new_memfd(j);
			if (s >= 0 && m[j] >= 0)
				check(luo_session_preserve_fd(s, m[j], j), 0, &a->bad,
				      &a->last_bad);
		}
		for (j = 0; j < 4; j++)
			if (m[j] >= 0)
				close(m[j]);
		if (s >= 0)
			close(s);
	}
	return NULL;
}

static void case_flb_storm(void)
{
	struct cc_arg a[NR_THREADS] = {};
	long bad = 0, last = 0;
	int i;

	for (i = 0; i < NR_THREADS; i++)
		a[i].tid = i;
	run_threads(flb_storm, a, sizeof(a[0]), NR_THREADS);
	for (i = 0; i < NR_THREADS; i++) {
		bad += a[i].bad;
		if (a[i].bad)
			last = a[i].last_bad;
	}
	result("s1_flb_storm", !bad, "%ld unexpected errnos (last %ld)", bad, last);
}

/* --- reboot --------------------------------------------------------------- */

/*
 * Each reboot thread works through NR_REBOOT_SESSIONS iterations in order:
 * create session rb-TID-I, preserve memfds at tokens 0 and 1 (each closed
 * once preserved: LUO holds its own reference), and for every fourth session
 * close the session fd again (which unpreserves the whole session).
 *
 * rb_done[tid] counts the leading iterations of thread tid whose LUO calls all
 * returned success; it only ever grows, one iteration at a time, and is
 * published with release semantics once the iteration's last call returned.
 * A failed call (before the reboot none may fail) is counted in rb_errors and
 * stops rb_done of that thread from growing.
 */
static int rb_done[NR_THREADS];
static int rb_errors, rb_last_err;

/* What stage 1 knew for certain when it called reboot(), for stage 2. */
struct rb_snap {
	char magic[16];
	int done[NR_THREADS];
	int errors, last_err;
};

static unsigned int rb_seed(int tid, int i, int token)
{
	return (tid * NR_REBOOT_SESSIONS + i) * 2 + token;
}

/* Does iteration @i end with the session closed (unpreserved) again? */
static int rb_closed(int i)
{
	return i % 4 == 3;
}

static void rb_fail(long r)
{
	__atomic_add_fetch(&rb_errors, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&rb_last_err, (int)r, __ATOMIC_RELAXED);
}

static void *rb_creator(void *p)
{
	int tid = *(int *)p, i, t;
	char name[32];

	for (i = 0; i < NR_REBOOT_SESSIONS; i++) {
		int s, ok = 1;

		snprintf(name, sizeof(name), "rb-%d-%d", tid, i);
		s = luo_create_session(luo_fd, name);
		if (s < 0) {
			rb_fail(s);
			continue;
		}
		for (t = 0; t < 2; t++) {
			int m = new_memfd(rb_seed(tid, i, t)), r;

			r = m < 0 ? m : luo_session_preserve_fd(s, m, t);
			if (r) {
				rb_fail(r);
				ok = 0;
			}
			if (m >= 0)
				close(m);
		}
		/* Every fourth session is closed again; the rest are kept. */
		if (rb_closed(i) && close(s)) {
			rb_fail(-errno);
			ok = 0;
		}
		/* Only the thread itself writes its count. */
		if (ok && __atomic_load_n(&rb_done[tid], __ATOMIC_RELAXED) == i)
			__atomic_store_n(&rb_done[tid], i + 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

static int rb_done_total(void)
{
	int t, n = 0;

	for (t = 0; t < NR_THREADS; t++)
		n += __atomic_load_n(&rb_done[t], __ATOMIC_ACQUIRE);
	return n;
}

/*
 * Record what is certain before calling reboot(): the rb_done counts and the
 * errors so far, read now. Everything they count returned to userspace before
 * reboot() was even called, so it happened before the kexec serialized the
 * sessions. The record goes into a memfd in its own session, preserved from
 * this (single) thread before reboot(), so it is certain to come back too.
 * The threads go on racing the reboot meanwhile: whatever they do from here on
 * is uncertain and only checked for consistency in stage 2.
 */
static void rb_record(void)
{
	struct rb_snap snap = { .magic = SNAP_MAGIC };
	int t, s, m, r;

	for (t = 0; t < NR_THREADS; t++)
		snap.done[t] = __atomic_load_n(&rb_done[t], __ATOMIC_ACQUIRE);
	/* Every error counted by now happened before reboot() was called. */
	snap.errors = __atomic_load_n(&rb_errors, __ATOMIC_ACQUIRE);
	snap.last_err = __atomic_load_n(&rb_last_err, __ATOMIC_RELAXED);
	s = luo_create_session(luo_fd, SNAP_SESSION_NAME);
	m = memfd_create("race-snap", 0);
	r = s < 0 ? s : m < 0 ? -errno : 0;
	if (!r && pwrite(m, &snap, sizeof(snap), 0) != sizeof(snap))
		r = -EIO;
	if (!r)
		r = luo_session_preserve_fd(s, m, 0);
	if (r) {
		printf("# cannot record stage 1's state for stage 2: %s\n", strerror(-r));
		exit(1);
	}
	close(m);
	/* The session fd stays open: its session goes across the kexec. */
	printf("# reboot: certain are the first");
	for (t = 0; t < NR_THREADS; t++)
		printf(" %d", snap.done[t]);
	printf(" of %d iterations of each thread; %d errors\n", NR_REBOOT_SESSIONS,
	       snap.errors);
	fflush(stdout);
}

static void case_reboot(void)
{
	struct timespec ts = { 0, 30 * 1000 * 1000 }, ms = { 0, 1000 * 1000 };
	pthread_t th[NR_THREADS];
	int tid[NR_THREADS], i;

	for (i = 0; i < NR_THREADS; i++) {
		tid[i] = i;
		pthread_create(&th[i], NULL, rb_creator, &tid[i]);
	}
	nanosleep(&ts, NULL);
	/*
	 * So that stage 2 has something certain to check: wait (at most 5 s)
	 * until a few iterations are complete. The threads keep running.
	 */
	for (i = 0; i < 5000 && rb_done_total() < NR_THREADS; i++)
		nanosleep(&ms, NULL);
	rb_record();
	/* Init loaded the next kernel; this does not return if the kexec happens. */
	syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_KEXEC,
		NULL);
	printf("# reboot failed: %s\n", strerror(errno));
	exit(1);
}

static void stage_1(int fd)
{
	printf("1..5\n");
	luo_fd = fd;
	srand(1);
	create_state_file(fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	case_create_close();
	case_close_while_preserving();
	case_same_memfd_two_sessions();
	case_device_close();
	case_flb_storm();
	if (ktap_failures)
		exit(1);
	case_reboot();
}

/* Stage 1's record (rb_record()), from its session; 0 or -errno. */
static int read_snap(int fd, struct rb_snap *snap)
{
	int s = luo_retrieve_session(fd, SNAP_SESSION_NAME), m, r = 0;

	if (s < 0)
		return s;
	m = luo_session_retrieve_fd(s, 0);
	if (m < 0)
		r = m;
	else if (pread(m, snap, sizeof(*snap), 0) != sizeof(*snap) ||
		 memcmp(snap->magic, SNAP_MAGIC, sizeof(SNAP_MAGIC)))
		r = -EBADMSG;
	if (m >= 0)
		close(m);
	/* Finished now: the FLB check below needs the state session to be the last. */
	if (luo_session_finish(s) && !r)
		r = -EBUSY;
	close(s);
	return r;
}

#define RB_ABSENT	(-1)

/*
 * What came back of thread @t's sessions: mask[i] is RB_ABSENT (ENOENT) or
 * the set of tokens present (bit 0: token 0, bit 1: token 1). Retrieves every
 * session and file, checks the data, FINISHes the sessions. Returns the number
 * of unexpected errnos and bad contents; counts sessions and files.
 */
static int collect_thread(int fd, int t, int *mask, int *sessions, int *files, char *why,
			  size_t wlen)
{
	int i, tok, bad = 0;
	char name[32];

	for (i = 0; i < NR_REBOOT_SESSIONS; i++) {
		int s;

		snprintf(name, sizeof(name), "rb-%d-%d", t, i);
		s = luo_retrieve_session(fd, name);
		mask[i] = RB_ABSENT;
		if (s < 0) {
			if (s != -ENOENT && !bad++)
				snprintf(why, wlen, "retrieve %s: %s", name, strerror(-s));
			continue;
		}
		(*sessions)++;
		mask[i] = 0;
		for (tok = 0; tok < 2; tok++) {
			int m = luo_session_retrieve_fd(s, tok);

			if (m == -ENOENT)
				continue;
			(*files)++;
			if (m < 0 || !memfd_ok(m, rb_seed(t, i, tok))) {
				if (!bad++)
					snprintf(why, wlen, "%s token %d: %s", name, tok,
						 m < 0 ? strerror(-m) : "wrong contents");
			} else {
				mask[i] |= 1 << tok;
			}
			if (m >= 0)
				close(m);
		}
		if (luo_session_finish(s) && !bad++)
			snprintf(why, wlen, "FINISH of %s failed", name);
		close(s);
	}
	return bad;
}

/*
 * Is what came back of thread @t (mask[], see collect_thread()) what the
 * reboot must have kept, given that its first @done iterations had completed
 * before reboot() was called? Returns 1 if so; otherwise says why.
 *
 * Certain (stage 1's record): iteration i < done completed before the kexec
 * serialized anything, so session rb-t-i is back with both files (or gone if
 * it was closed, rb_closed(i)).
 *
 * Prefix (derived): both LUOs serialize all sessions at one instant T, holding
 * off every session operation meanwhile (the C LUO's serialize rwsem, the
 * Rust LUO's state rwsem; after T the calls block or fail with EBUSY). A
 * thread's calls are sequential, so at T a thread has completed a prefix of
 * its calls: if rb-t-L is back (L the last one back), every iteration before
 * L had completed at T and must have its final state (kept whole, or closed
 * and gone), and rb-t-L itself holds a prefix of its tokens ({}, {0} or
 * {0, 1}; token 1 without token 0 cannot happen). Nothing after L is back, by
 * definition of L. What can legitimately go either way is only the one
 * iteration each thread had in flight at T, from done on.
 */
static int check_thread(int t, const int *mask, int done, char *why, size_t wlen)
{
	int i, last = -1;

	for (i = 0; i < NR_REBOOT_SESSIONS; i++)
		if (mask[i] != RB_ABSENT)
			last = i;
	for (i = 0; i < NR_REBOOT_SESSIONS && (i < done || i < last); i++) {
		int want = rb_closed(i) ? RB_ABSENT : 3;

		if (mask[i] != want) {
			snprintf(why, wlen, "rb-%d-%d: %s (mask %d), want %s; %s", t, i,
				 mask[i] == RB_ABSENT ? "not back" : "back", mask[i],
				 want == RB_ABSENT ? "gone (closed before the reboot)" :
						     "back with tokens 0 and 1",
				 i < done ? "it completed before reboot() was called" :
					    "a later session of this thread is back");
			return 0;
		}
	}
	if (last >= 0 && mask[last] == 2) {
		snprintf(why, wlen, "rb-%d-%d: token 1 back without token 0", t, last);
		return 0;
	}
	return 1;
}

static void stage_2(int fd, int state_fd)
{
	int t, sessions = 0, files = 0, bad = 0, fin = 0, before, certain = 0, r;
	int mask[NR_REBOOT_SESSIONS];
	struct rb_snap snap;
	char why[160] = "";

	printf("1..2\n");
	before = count_in_log("finish was triggered");
	r = read_snap(fd, &snap);
	if (r) {
		bad++;
		snprintf(why, sizeof(why), "stage 1's record (session %s): %s", SNAP_SESSION_NAME,
			 strerror(-r));
	} else if (snap.errors) {
		/* Calls that failed before reboot() was called: none may. */
		bad++;
		snprintf(why, sizeof(why), "%d calls failed in stage 1 before the reboot (last: %s)",
			 snap.errors, strerror(-snap.last_err));
	}
	for (t = 0; t < NR_THREADS; t++) {
		int done = r ? 0 : snap.done[t];

		certain += done;
		/* Retrieve and finish everything anyway, for the FLB check. */
		if (collect_thread(fd, t, mask, &sessions, &files, bad ? NULL : why,
				   bad ? 0 : sizeof(why)))
			bad++;
		else if (!bad && !check_thread(t, mask, done, why, sizeof(why)))
			bad++;
	}
	if (!bad && !certain) {
		bad++;
		snprintf(why, sizeof(why), "no session had completed before the reboot");
	}
	result("s2_sessions_consistent", !bad,
	       "%d sessions (%d certain), %d files back: %s", sessions, certain, files, why);
	fin |= luo_session_finish(state_fd);
	result("s2_flb_finish_after_last_file",
	       !fin && count_in_log("finish was triggered") - before == NR_TEST_FLBS,
	       "finish %d, %d FLB finishes", fin, count_in_log("finish was triggered") - before);
	printf("# %d sessions and %d files came back; %d iterations certain\n", sessions, files,
	       certain);
	printf("# Totals: %d failed\n", ktap_failures);
	exit(ktap_failures ? 1 : 0);
}

int main(int argc, char *argv[])
{
	if (argc > 1 && !strcmp(argv[1], "--list")) {
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			printf("%s\n", cases[i]);
		return 0;
	}
	return luo_test(argc, argv, STATE_SESSION_NAME, stage_1, stage_2);
}
