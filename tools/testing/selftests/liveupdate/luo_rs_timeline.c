// SPDX-License-Identifier: GPL-2.0-only
/*
 * The timeline of a live update (debugfs liveupdate/timeline, Rust LUO).
 *
 * Stage 1 reads the timeline of a cold boot (live update 0: only this
 * kernel's points, the first open among them), then preserves three memfds in
 * two sessions and kexecs. Stage 2 opens /dev/liveupdate, retrieves every file
 * and finishes both sessions, then checks that every phase of both kernels is
 * in the file, with no point missing ("-"), the files counted per handler, and
 * every stamp in the order the phases ran, in one clock: the previous
 * kernel's reboot path, its freezes, the handover written, device and syscore
 * shutdown, then this kernel's early initcall, /dev/liveupdate registered,
 * the first open, the RETRIEVE_FDs and the FINISHes.
 *
 * With --from-c (stage 1 on the C LUO, interop c-to-rust), stage
 * 1 checks that the C LUO has no such file, and stage 2 that the previous
 * kernel's points are shown as not recorded ("-"), with no freeze span, that
 * the two kernels are not put on one clock ("continuous no"), and that this
 * kernel's points are all there, in order, from its early initcall.
 *
 * KTAP per check; --list [--from-c] prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define TIMELINE	"/sys/kernel/debug/liveupdate/timeline"
#define SA		"tl-a"
#define SB		"tl-b"
#define FILE_SIZE	(256UL << 10)
#define NR_FILES	3
#define MAX_LINES	64

static const char *const names[] = {
	"s1_cold_boot_timeline",
	"s1_preserved",
	"s2_retrieved_and_finished",
	"s2_every_phase_present",
	"s2_phases_in_order",
	"s2_files_counted_per_handler",
};

static const char *const names_c[] = {
	"s1_no_timeline_in_the_c_luo",
	"s1_preserved",
	"s2_retrieved_and_finished",
	"s2_previous_kernel_not_recorded",
	"s2_this_kernel_in_order",
};

/* One line of the file: a name, a handler (spans), up to two times, counts. */
struct rec {
	char name[32];
	char handler[64];
	int span;		/* out.freeze, in.retrieve, in.finish */
	int has_t;		/* t (a point) or first/last (a span) recorded */
	unsigned long long t, first, last, files, busy;
};

static struct rec recs[MAX_LINES];
static int nr_recs;
static char header[160];
static char why[512];

static int is_span(const char *name)
{
	return !strcmp(name, "out.freeze") || !strcmp(name, "in.retrieve") ||
	       !strcmp(name, "in.finish");
}

/* Reads the timeline: 0, or -errno (-EPROTO: a line that does not parse). */
static int read_timeline(void)
{
	static char buf[16384];
	char *line, *save = NULL;
	ssize_t n;
	int fd;

	if (mount("none", "/sys/kernel/debug", "debugfs", 0, NULL) && errno != EBUSY)
		return -errno;
	fd = open(TIMELINE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	nr_recs = 0;
	header[0] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct rec *r = &recs[nr_recs];
		char a[32], b[32];

		/* For the log: the file as read. */
		printf("# timeline: %s\n", line);

		if (!header[0]) {
			snprintf(header, sizeof(header), "%s", line);
			continue;
		}
		if (nr_recs == MAX_LINES)
			return -E2BIG;
		memset(r, 0, sizeof(*r));
		if (sscanf(line, "%31s", r->name) != 1)
			return -EPROTO;
		r->span = is_span(r->name);
		if (r->span) {
			if (sscanf(line, "%*s %63s %31s %31s files=%llu busy_ns=%llu",
				   r->handler, a, b, &r->files, &r->busy) != 5)
				return -EPROTO;
			r->has_t = strcmp(a, "-") && strcmp(b, "-");
			r->first = strtoull(a, NULL, 10);
			r->last = strtoull(b, NULL, 10);
		} else {
			if (sscanf(line, "%*s %31s", a) != 1)
				return -EPROTO;
			r->has_t = strcmp(a, "-");
			r->t = strtoull(a, NULL, 10);
		}
		nr_recs++;
	}
	return header[0] ? 0 : -ENODATA;
}

static struct rec *find(const char *name, const char *handler)
{
	for (int i = 0; i < nr_recs; i++)
		if (!strcmp(recs[i].name, name) && (!handler || !strcmp(recs[i].handler, handler)))
			return &recs[i];
	return NULL;
}

static int count(const char *prefix)
{
	int n = 0;

	for (int i = 0; i < nr_recs; i++)
		n += !strncmp(recs[i].name, prefix, strlen(prefix));
	return n;
}

/*
 * Checks that the points in @order (names; a span name stands for its first
 * then its last stamp, of handler "memfd-v2") are all recorded and do not go
 * backwards. 1 if so; else 0 with the reason in why[].
 */
static int in_order(const char *const order[], int n)
{
	unsigned long long prev = 0;
	const char *prev_name = "(start)";

	for (int i = 0; i < n; i++) {
		int span = is_span(order[i]);
		struct rec *r = find(order[i], span ? "memfd-v2" : NULL);
		unsigned long long t[2];

		if (!r || !r->has_t) {
			snprintf(why, sizeof(why), "%s %s", order[i], r ? "not recorded" : "missing");
			return 0;
		}
		t[0] = span ? r->first : r->t;
		t[1] = span ? r->last : r->t;
		for (int k = 0; k < 2; k++) {
			if (t[k] < prev) {
				snprintf(why, sizeof(why), "%s%s (%llu) before %s (%llu)",
					 order[i], span ? (k ? " last" : " first") : "",
					 t[k], prev_name, prev);
				return 0;
			}
			prev = t[k];
			prev_name = order[i];
		}
		if (span && r->busy > r->last - r->first) {
			snprintf(why, sizeof(why), "%s: busy %llu ns in a span of %llu ns",
				 order[i], r->busy, r->last - r->first);
			return 0;
		}
	}
	return 1;
}

/* --from-c, in both boots. */
static int opt_from_c;

static int from_c(void)
{
	return opt_from_c;
}

static void fill(int fd, unsigned int seed)
{
	static unsigned char buf[FILE_SIZE];

	for (unsigned long i = 0; i < FILE_SIZE; i++)
		buf[i] = (i * 7 + seed) & 0xff;
	if (pwrite(fd, buf, FILE_SIZE, 0) != (ssize_t)FILE_SIZE)
		exit(1);
}

static int good(int fd, unsigned int seed)
{
	static unsigned char buf[FILE_SIZE];

	if (pread(fd, buf, FILE_SIZE, 0) != (ssize_t)FILE_SIZE)
		return 0;
	for (unsigned long i = 0; i < FILE_SIZE; i++)
		if (buf[i] != ((i * 7 + seed) & 0xff))
			return 0;
	return 1;
}

/* ---- stage 1 ---- */

static void stage_1(void)
{
	static const char *const cold[] = { "in.boot", "in.init", "in.open", "in.opened" };
	int luo = luo_open_device(), sa = -1, sb = -1, r = -1, ok, err;
	int fds[NR_FILES];

	printf("1..2\n");
	err = read_timeline();
	if (from_c()) {
		result("s1_no_timeline_in_the_c_luo", err == -ENOENT, "reading %s: %s (want ENOENT)",
		       TIMELINE, res(err));
	} else {
		ok = !err && !strncmp(header, "liveupdate 0 ", 13) &&
		     strstr(header, "continuous no") && !count("out.") && in_order(cold, 4);
		result("s1_cold_boot_timeline", ok, "read: %s; header '%s'; %d out.* lines; %s",
		       res(err), header, count("out."), why);
	}
	if (luo >= 0) {
		sa = luo_create_session(luo, SA);
		sb = luo_create_session(luo, SB);
	}
	for (int i = 0; i < NR_FILES; i++) {
		fds[i] = memfd_create("tl", MFD_CLOEXEC);
		if (fds[i] >= 0)
			fill(fds[i], i + 1);
	}
	if (sa >= 0 && sb >= 0 && fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0)
		r = luo_session_preserve_fd(sa, fds[0], 1) ?:
		    luo_session_preserve_fd(sa, fds[1], 2) ?:
		    luo_session_preserve_fd(sb, fds[2], 1);
	result("s1_preserved", !r, "device %s, sessions %s %s, preserve %s", res(luo), res(sa),
	       res(sb), res(r));
	if (ktap_failures)
		exit(1);
	close(luo);
	daemonize_and_wait();
}

/* ---- stage 2 ---- */

static void retrieve_and_finish(void)
{
	int luo = luo_open_device(), sa = -1, sb = -1, f[NR_FILES] = { -1, -1, -1 }, r = -1;
	int ok = 0;

	if (luo >= 0) {
		sa = luo_retrieve_session(luo, SA);
		sb = luo_retrieve_session(luo, SB);
	}
	if (sa >= 0 && sb >= 0) {
		f[0] = luo_session_retrieve_fd(sa, 1);
		f[1] = luo_session_retrieve_fd(sa, 2);
		f[2] = luo_session_retrieve_fd(sb, 1);
		ok = f[0] >= 0 && f[1] >= 0 && f[2] >= 0 && good(f[0], 1) && good(f[1], 2) &&
		     good(f[2], 3);
		r = luo_session_finish(sa) ?: luo_session_finish(sb);
	}
	result("s2_retrieved_and_finished", ok && !r,
	       "device %s, sessions %s %s, files %s %s %s, contents %s, FINISH %s", res(luo),
	       res(sa), res(sb), res(f[0]), res(f[1]), res(f[2]), ok ? "ok" : "bad", res(r));
}

static void stage_2_c(void)
{
	static const char *const order[] = {
		"in.boot", "in.init", "in.open", "in.opened", "in.retrieve", "in.finish",
	};
	static const char *const out[] = { "out.reboot", "out.serialized", "out.devices",
					   "out.jump" };
	int err, ok, nr = 0;

	printf("1..3\n");
	retrieve_and_finish();
	err = read_timeline();
	ok = !err && !strncmp(header, "liveupdate 1 ", 13) && strstr(header, "continuous no") &&
	     !count("out.freeze");
	for (int i = 0; i < 4; i++) {
		struct rec *r = find(out[i], NULL);

		nr += r && !r->has_t;
	}
	result("s2_previous_kernel_not_recorded", ok && nr == 4,
	       "read %s; header '%s'; %d of 4 out.* points shown as '-', %d freeze spans", res(err),
	       header, nr, count("out.freeze"));
	ok = !err && find("in.boot", NULL) && find("in.boot", NULL)->t == 0 && in_order(order, 6);
	result("s2_this_kernel_in_order", ok, "%s", why);
	ktap_exit();
}

static void stage_2(void)
{
	static const char *const order[] = {
		"out.reboot", "out.freeze", "out.serialized", "out.devices", "out.jump",
		"in.boot", "in.init", "in.open", "in.opened", "in.retrieve", "in.finish",
	};
	struct rec *fz, *rt, *fn;
	int err, missing = 0;

	if (from_c())
		stage_2_c();
	printf("1..4\n");
	retrieve_and_finish();
	err = read_timeline();
	why[0] = 0;
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		struct rec *r = find(order[i], is_span(order[i]) ? "memfd-v2" : NULL);

		if (!r || !r->has_t) {
			missing++;
			snprintf(why + strlen(why), sizeof(why) - strlen(why), " %s", order[i]);
		}
	}
	result("s2_every_phase_present",
	       !err && !strncmp(header, "liveupdate 1 ", 13) &&
	       strstr(header, "continuous yes") && !missing,
	       "read %s; header '%s'; missing or '-':%s", res(err), header, why);
	why[0] = 0;
	result("s2_phases_in_order", !err && in_order(order, ARRAY_SIZE(order)), "%s", why);
	fz = find("out.freeze", "memfd-v2");
	rt = find("in.retrieve", "memfd-v2");
	fn = find("in.finish", "memfd-v2");
	result("s2_files_counted_per_handler",
	       fz && rt && fn && fz->files == NR_FILES && rt->files == NR_FILES &&
	       fn->files == NR_FILES && rt->busy > 0,
	       "memfd-v2 files: freeze %llu, retrieve %llu (busy %llu ns), finish %llu; want %d",
	       fz ? fz->files : 0, rt ? rt->files : 0, rt ? rt->busy : 0, fn ? fn->files : 0,
	       NR_FILES);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "from-c", no_argument, &opt_from_c, 1 },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, NULL);

	if (a.list) {
		if (opt_from_c)
			ktap_list(names_c, ARRAY_SIZE(names_c));
		else
			ktap_list(names, ARRAY_SIZE(names));
		return 0;
	}
	return ktap_run_stages(a, stage_1, stage_2);
}
