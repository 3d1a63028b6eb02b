// SPDX-License-Identifier: GPL-2.0-only
/*
 * Two live updates in a row (A -> B -> C): data preserved in boot A is
 * retrieved in boot B, preserved again from B under the same session name
 * with new contents, and retrieved in boot C.
 *
 *   -s 1  session "chain": a 64 KiB memfd with pattern 1 (token 1);
 *         sessions "carry-retrieved" and "carry-never", a memfd each.
 *   -s 2  verify pattern 1, FINISH and close "chain", then create a new
 *         "chain" holding a new 64 KiB memfd with pattern 2 (token 2).
 *         Also retrieve "carry-retrieved" and its memfd, but finish
 *         neither, and leave "carry-never" alone.
 *   -s 3  verify pattern 2; token 1 must not have come along. Neither
 *         "carry-retrieved" (retrieved, not finished) nor "carry-never"
 *         (never retrieved) is carried into a third boot: what is not
 *         finished is dropped at the next live update, as in the C LUO.
 *
 * The stage travels through LUO itself: the session "luo_rs_chain_state"
 * holds a memfd with the number of the next stage, and is created again in
 * every stage that kexecs. Its absence means stage 1. Stages 1 and 2 leave
 * their session fds to a daemonized child so they are open at the kexec.
 *
 * Every stage prints KTAP with its own plan; case names carry the stage
 * (s1_..., s2_..., s3_...). --list prints the names of all stages' cases.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_chain_state"
#define STATE_MEMFD_TOKEN	996
#define CHAIN_SESSION_NAME	"chain"
#define CHAIN_SIZE		(64 * 1024)
#define NR_STAGES		3

/* Boot A preserves token 1 with pattern 1, boot B token 2 with pattern 2. */
#define TOKEN_A			1
#define SEED_A			1
#define TOKEN_B			2
#define SEED_B			2
/* Preserved in boot A, not finished in boot B. */
#define CARRY_RETRIEVED		"carry-retrieved"
#define CARRY_NEVER		"carry-never"
#define TOKEN_CARRY		7

static const char * const stage_cases[NR_STAGES][7] = {
	{
		"s1_stage_detected",
		"s1_preserve_first_pattern",
		"s1_preserve_carryover_sessions",
		"s1_save_state",
	},
	{
		"s2_stage_detected",
		"s2_verify_first_pattern",
		"s2_finish_first",
		"s2_preserve_second_pattern",
		"s2_retrieve_without_finish",
		"s2_save_state",
	},
	{
		"s3_stage_detected",
		"s3_verify_second_pattern",
		"s3_first_token_gone",
		"s3_unfinished_session_dropped",
		"s3_unretrieved_session_dropped",
		"s3_finish",
	},
};

static unsigned int case_idx;
static int cur_stage;

static const char *cur_case(void)
{
	return stage_cases[cur_stage - 1][case_idx];
}

static unsigned int nr_cases(int stage)
{
	unsigned int n = 0;

	while (n < ARRAY_SIZE(stage_cases[0]) && stage_cases[stage - 1][n])
		n++;
	return n;
}

/* Print why the current case failed; always returns -1. */
static __printf(1, 2) int fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	ksft_print_msg("%s: %s\n", cur_case(), buf);
	return -1;
}

/* Report the result of the current case and move on to the next one. */
static void report(int ret)
{
	if (ret)
		ksft_test_result_fail("%s\n", cur_case());
	else
		ksft_test_result_pass("%s\n", cur_case());
	case_idx++;
}

/* A failed case the stage cannot go on without: report it and stop. */
static void report_fatal(int ret)
{
	report(ret);
	if (ret)
		ksft_exit_fail_msg("stage %d cannot go on after %s\n", cur_stage,
				   stage_cases[cur_stage - 1][case_idx - 1]);
}

static unsigned char pattern(unsigned int seed, size_t off)
{
	return (off * 13 + (off >> 12) * 29 + seed * 89) & 0xff;
}

/* Create a CHAIN_SIZE memfd with pattern(@seed) and preserve it in @sfd. */
static int preserve_pattern(int sfd, __u64 token, unsigned int seed)
{
	unsigned char *buf;
	int mfd, ret;
	size_t i;

	mfd = memfd_create("luo_rs_chain", 0);
	if (mfd < 0)
		return fail("memfd_create: %s", strerror(errno));
	buf = malloc(CHAIN_SIZE);
	if (!buf) {
		close(mfd);
		return fail("out of memory");
	}
	for (i = 0; i < CHAIN_SIZE; i++)
		buf[i] = pattern(seed, i);
	ret = -1;
	if (ftruncate(mfd, CHAIN_SIZE)) {
		fail("ftruncate: %s", strerror(errno));
		goto out;
	}
	if (pwrite(mfd, buf, CHAIN_SIZE, 0) != CHAIN_SIZE) {
		fail("pwrite: %s", strerror(errno));
		goto out;
	}
	ret = luo_session_preserve_fd(sfd, mfd, token);
	if (ret)
		fail("PRESERVE_FD token %llu: %s", (unsigned long long)token, res(ret));
out:
	free(buf);
	close(mfd);
	return ret ? -1 : 0;
}

/* Retrieve @token from @sfd and check its size and pattern(@seed). */
static int verify_pattern(int sfd, __u64 token, unsigned int seed)
{
	unsigned char *buf;
	struct stat st;
	int mfd, ret = -1;
	size_t i;

	mfd = luo_session_retrieve_fd(sfd, token);
	if (mfd < 0)
		return fail("RETRIEVE_FD token %llu: %s", (unsigned long long)token, res(mfd));
	buf = malloc(CHAIN_SIZE);
	if (!buf) {
		close(mfd);
		return fail("out of memory");
	}
	if (fstat(mfd, &st)) {
		fail("fstat: %s", strerror(errno));
		goto out;
	}
	if (st.st_size != CHAIN_SIZE) {
		fail("size %lld, want %d", (long long)st.st_size, CHAIN_SIZE);
		goto out;
	}
	if (pread(mfd, buf, CHAIN_SIZE, 0) != CHAIN_SIZE) {
		fail("pread: %s", strerror(errno));
		goto out;
	}
	for (i = 0; i < CHAIN_SIZE; i++) {
		if (buf[i] != pattern(seed, i)) {
			fail("byte %zu is %#x, want %#x (pattern %u)", i, buf[i],
			     pattern(seed, i), seed);
			goto out;
		}
	}
	ret = 0;
out:
	free(buf);
	close(mfd);
	return ret;
}

/* Create the state session for the next boot; its fd stays open. */
static int save_state(int luo_fd, int next_stage)
{
	char buf[16];
	int sfd, ret;

	sfd = luo_create_session(luo_fd, STATE_SESSION_NAME);
	if (sfd < 0)
		return fail("CREATE_SESSION %s: %s", STATE_SESSION_NAME, res(sfd));
	snprintf(buf, sizeof(buf), "%d", next_stage);
	ret = create_and_preserve_memfd(sfd, STATE_MEMFD_TOKEN, buf);
	if (ret)
		return fail("preserving the state memfd: %s", res(ret));
	return 0;
}

/*
 * Work out the stage from the incoming state session; returns the stage (1
 * when there is none) and leaves the retrieved state session in *state_fd.
 */
static int detect_stage(int luo_fd, int *state_fd)
{
	char buf[16] = "";
	int mfd;

	*state_fd = luo_retrieve_session(luo_fd, STATE_SESSION_NAME);
	if (*state_fd == -ENOENT)
		return 1;
	if (*state_fd < 0)
		return fail("RETRIEVE_SESSION %s: %s", STATE_SESSION_NAME, res(*state_fd));
	mfd = luo_session_retrieve_fd(*state_fd, STATE_MEMFD_TOKEN);
	if (mfd < 0)
		return fail("RETRIEVE_FD of the state memfd: %s", res(mfd));
	if (pread(mfd, buf, sizeof(buf) - 1, 0) < 0) {
		close(mfd);
		return fail("reading the state memfd: %s", strerror(errno));
	}
	close(mfd);
	return atoi(buf);
}

/* Finish and close the incoming state session of this boot. */
static int drop_state(int state_fd)
{
	int ret = luo_session_finish(state_fd);

	close(state_fd);
	if (ret)
		return fail("FINISH of the state session: %s", res(ret));
	return 0;
}

/* Boot A: two more sessions that boot B will not finish (fds stay open). */
static int carryover_sessions(int luo_fd)
{
	static const char * const names[] = { CARRY_RETRIEVED, CARRY_NEVER };

	for (int i = 0; i < 2; i++) {
		int sfd = luo_create_session(luo_fd, names[i]);

		if (sfd < 0)
			return fail("CREATE_SESSION %s: %s", names[i], res(sfd));
		if (preserve_pattern(sfd, TOKEN_CARRY, SEED_A))
			return -1;
	}
	return 0;
}

/* Boot B: retrieve CARRY_RETRIEVED and its memfd; both fds stay open, unfinished. */
static int retrieve_without_finish(int luo_fd)
{
	int sfd = luo_retrieve_session(luo_fd, CARRY_RETRIEVED);
	int mfd;

	if (sfd < 0)
		return fail("RETRIEVE_SESSION %s: %s", CARRY_RETRIEVED, res(sfd));
	mfd = luo_session_retrieve_fd(sfd, TOKEN_CARRY);
	if (mfd < 0)
		return fail("RETRIEVE_FD %d of %s: %s", TOKEN_CARRY, CARRY_RETRIEVED, res(mfd));
	return 0;
}

/* Boot C: an unfinished session of boot A did not come along. */
static int expect_gone(int luo_fd, const char *name)
{
	int sfd = luo_retrieve_session(luo_fd, name);

	if (sfd == -ENOENT)
		return 0;
	if (sfd >= 0)
		close(sfd);
	return fail("RETRIEVE_SESSION %s: %s, want ENOENT", name, res(sfd));
}

static void stage_1(int luo_fd)
{
	int sfd;

	sfd = luo_create_session(luo_fd, CHAIN_SESSION_NAME);
	if (sfd < 0)
		report_fatal(fail("CREATE_SESSION %s: %s", CHAIN_SESSION_NAME, res(sfd)));
	report_fatal(preserve_pattern(sfd, TOKEN_A, SEED_A));
	report_fatal(carryover_sessions(luo_fd));
	report_fatal(save_state(luo_fd, 2));
	/* sfd and the state session stay open in the daemonized child. */
}

static void stage_2(int luo_fd, int state_fd)
{
	int sfd, ret;

	sfd = luo_retrieve_session(luo_fd, CHAIN_SESSION_NAME);
	if (sfd < 0)
		report_fatal(fail("RETRIEVE_SESSION %s: %s", CHAIN_SESSION_NAME, res(sfd)));
	report(verify_pattern(sfd, TOKEN_A, SEED_A));

	ret = luo_session_finish(sfd);
	close(sfd);
	if (ret) {
		report_fatal(fail("FINISH: %s", res(ret)));
	} else {
		/* Closed after FINISH: the incoming session is gone. */
		sfd = luo_retrieve_session(luo_fd, CHAIN_SESSION_NAME);
		ret = sfd == -ENOENT ? 0 :
		      fail("RETRIEVE_SESSION after FINISH and close: %s, want ENOENT", res(sfd));
		if (sfd >= 0)
			close(sfd);
		report(ret);
	}

	sfd = luo_create_session(luo_fd, CHAIN_SESSION_NAME);
	if (sfd < 0)
		report_fatal(fail("CREATE_SESSION %s again: %s", CHAIN_SESSION_NAME, res(sfd)));
	report_fatal(preserve_pattern(sfd, TOKEN_B, SEED_B));
	report(retrieve_without_finish(luo_fd));

	ret = drop_state(state_fd);
	report_fatal(ret ?: save_state(luo_fd, 3));
}

static void stage_3(int luo_fd, int state_fd)
{
	int sfd, mfd, ret;

	sfd = luo_retrieve_session(luo_fd, CHAIN_SESSION_NAME);
	if (sfd < 0)
		report_fatal(fail("RETRIEVE_SESSION %s: %s", CHAIN_SESSION_NAME, res(sfd)));
	report(verify_pattern(sfd, TOKEN_B, SEED_B));

	mfd = luo_session_retrieve_fd(sfd, TOKEN_A);
	ret = mfd == -ENOENT ? 0 :
	      fail("RETRIEVE_FD of boot A's token: %s, want ENOENT", res(mfd));
	if (mfd >= 0)
		close(mfd);
	report(ret);
	report(expect_gone(luo_fd, CARRY_RETRIEVED));
	report(expect_gone(luo_fd, CARRY_NEVER));

	ret = luo_session_finish(sfd);
	close(sfd);
	if (ret)
		ret = fail("FINISH of %s: %s", CHAIN_SESSION_NAME, res(ret));
	if (drop_state(state_fd))
		ret = -1;
	report(ret);
}

int main(int argc, char *argv[])
{
	int luo_fd, state_fd, stage = 1, detected, s;
	unsigned int i;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (s = 1; s <= NR_STAGES; s++)
			for (i = 0; i < nr_cases(s); i++)
				printf("%s\n", stage_cases[s - 1][i]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "-s"))
		stage = atoi(argv[2]);
	else if (argc != 1)
		ksft_exit_fail_msg("usage: %s [-s 1|2|3] | --list\n", argv[0]);
	if (stage < 1 || stage > NR_STAGES)
		ksft_exit_fail_msg("invalid stage %s\n", argv[2]);
	cur_stage = stage;

	ksft_print_header();
	ksft_set_plan(nr_cases(stage));

	luo_fd = luo_open_device();
	if (luo_fd < 0)
		ksft_exit_fail_msg("cannot open %s: %s\n", LUO_DEVICE, strerror(errno));

	detected = detect_stage(luo_fd, &state_fd);
	if (detected != stage && detected > 0)
		fail("the state session says stage %d, but this is stage %d", detected, stage);
	report_fatal(detected == stage ? 0 : -1);

	if (stage == 1)
		stage_1(luo_fd);
	else if (stage == 2)
		stage_2(luo_fd, state_fd);
	else
		stage_3(luo_fd, state_fd);

	close(luo_fd);
	if (stage < NR_STAGES) {
		/* Only go on to the kexec when every case of this stage passed. */
		if (ksft_get_fail_cnt())
			ksft_exit_fail();
		daemonize_and_wait();
	}
	ksft_finished();
}
