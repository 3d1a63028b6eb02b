// SPDX-License-Identifier: GPL-2.0-only
/*
 * Data and lifecycle across a kexec, with any LUO on either side (it runs on
 * the C and the Rust LUO, and in the interop runs from one into the other):
 *
 *   -s 1  - "lc-flb": two small memfds with the tokens 0 and U64_MAX;
 *         - "lc-big": a 256 MiB memfd, mapped shared and writable, with
 *           holes. A quarter of it is written before PRESERVE_FD, another
 *           quarter (holes until then) and part of a third through the
 *           mapping after it; the last quarter stays a hole. Sealed with
 *           F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE before
 *           PRESERVE_FD, file position 12345;
 *         - "lc-sealed": a 4 MiB memfd written with write() and sealed with
 *           F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL;
 *         - "lc-empty": an empty memfd;
 *         - "lc-511": a memfd of 511 * 256 pages, each written, so its
 *           folio array (16 bytes a folio) fills exactly one KHO vmalloc
 *           chunk of 511 pages and KHO links an empty chunk after it.
 *   -s 2  - each of lib/tests/liveupdate.c's three test FLBs found the data
 *           the previous kernel wrote, once ("found flb data");
 *         - every byte, the size, the seals and the file position of each
 *           memfd (upstream's helper compares only the first page);
 *         - the FLBs' finish runs only after the last file that used them
 *           is finished: not after the lc-* sessions, once per FLB after the
 *           state session's memfd.
 *
 * With --small (in both boots; for runs with less time, such as on KASAN
 * kernels; "--list --small" lists its cases) lc-big is
 * 16 MiB and lc-511 is left out: writing and checking the 767 MiB of the
 * two is most of this test's time under QEMU TCG.
 *
 * KTAP per check; --list prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_lifecycle_state"
#define STATE_MEMFD_TOKEN	993

#define NR_TEST_FLBS		3
#define BIG_SIZE		(256UL << 20)
#define BIG_SIZE_SMALL		(16UL << 20)
#define CHUNK			(1UL << 20)
#define BIG_POS			12345
#define BIG_SEALS		(F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE)
#define SEALED_SIZE		(4UL << 20)
#define SEALED_SEALS		(F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)
/* Folios (order 0) whose 16-byte entries fill one full vmalloc chunk of 511 pages. */
#define PAGES_511		(511UL * 256)
#define FLB_TOKEN_LO		0ULL
#define FLB_TOKEN_HI		(~0ULL)

static const char * const cases[] = {
	"s1_flb_memfds",
	"s1_big_memfd_preserved",
	"s1_big_memfd_written_after_preserve",
	"s1_sealed_memfd",
	"s1_empty_memfd",
	"s1_memfd_511_page_array",
	"s2_flb_data_found",
	"s2_flb_memfds",
	"s2_big_memfd_every_byte",
	"s2_big_memfd_size_seals_pos",
	"s2_sealed_memfd",
	"s2_empty_memfd",
	"s2_memfd_511_page_array",
	"s2_flb_no_finish_while_a_file_is_left",
	"s2_flb_finish_after_last_file",
};

/* --small: lc-big's size, and no lc-511. */
static int small;
static size_t big_size = BIG_SIZE;

/* Phases of lc-big: written before PRESERVE_FD (A), after it (B). */
#define SEED_A	0x243f6a8885a308d3ULL
#define SEED_B	0x13198a2e03707344ULL

static uint64_t word(uint64_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;

	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ULL;
}

/*
 * What lc-big holds at byte offset @off (word aligned), by 1 MiB chunk:
 *   c % 4 == 0: phase A, whole chunk
 *   c % 4 == 1: phase B, whole chunk (a hole when it was preserved)
 *   c % 4 == 2: phase A in its first half, then phase B over its second
 *               quarter (written twice: the later write must win)
 *   c % 4 == 3: a hole (zeros)
 */
static uint64_t big_expected(uint64_t off)
{
	uint64_t c = off / CHUNK, in = off % CHUNK, i = off / 8;

	switch (c % 4) {
	case 0:
		return word(SEED_A, i);
	case 1:
		return word(SEED_B, i);
	case 2:
		if (in >= CHUNK / 4 && in < CHUNK / 2)
			return word(SEED_B, i);
		return in < CHUNK / 2 ? word(SEED_A, i) : 0;
	default:
		return 0;
	}
}

static void fill(uint64_t *map, uint64_t from, uint64_t to, uint64_t seed)
{
	for (uint64_t off = from; off < to; off += 8)
		map[off / 8] = word(seed, off / 8);
}

static unsigned char sealed_byte(size_t off)
{
	return (off * 7 + (off >> 12) * 31 + 5) & 0xff;
}

static int new_memfd(const char *name, size_t size)
{
	int fd = memfd_create(name, MFD_ALLOW_SEALING);

	if (fd >= 0 && ftruncate(fd, size)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void stage_1(int luo_fd)
{
	int s_flb, s_big, s_sealed, s_empty, a, b, big, sealed, empty, r1, r2, r;
	uint64_t *map = MAP_FAILED;
	unsigned char *buf;
	uint64_t c;

	printf("1..%d\n", small ? 5 : 6);
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);

	s_flb = luo_create_session(luo_fd, "lc-flb");
	a = s_flb >= 0 ? create_and_preserve_memfd(s_flb, FLB_TOKEN_LO, "flb low token") : -1;
	b = -1;
	if (s_flb >= 0) {
		/* create_and_preserve_memfd() takes an int token: preserve by hand. */
		b = memfd_create("lc-flb-hi", 0);
		if (b >= 0 && (write(b, "flb high token", 14) != 14 ||
			       luo_session_preserve_fd(s_flb, b, FLB_TOKEN_HI)))
			b = -1;
	}
	result("s1_flb_memfds", s_flb >= 0 && a >= 0 && b >= 0,
	       "session %d, memfds %d %d", s_flb, a, b);

	s_big = luo_create_session(luo_fd, "lc-big");
	big = new_memfd("lc-big", big_size);
	if (big >= 0)
		map = mmap(NULL, big_size, PROT_READ | PROT_WRITE, MAP_SHARED, big, 0);
	r1 = -EINVAL;
	if (s_big >= 0 && map != MAP_FAILED) {
		for (c = 0; c < big_size / CHUNK; c++) {
			if (c % 4 == 0)
				fill(map, c * CHUNK, (c + 1) * CHUNK, SEED_A);
			else if (c % 4 == 2)
				fill(map, c * CHUNK, c * CHUNK + CHUNK / 2, SEED_A);
		}
		r1 = fcntl(big, F_ADD_SEALS, BIG_SEALS) ? -errno : 0;
		if (!r1)
			r1 = lseek(big, BIG_POS, SEEK_SET) == BIG_POS ? 0 : -errno;
		if (!r1)
			r1 = luo_session_preserve_fd(s_big, big, 1);
	}
	result("s1_big_memfd_preserved", !r1, "session %d, memfd %d, map %s, preserve %d",
	       s_big, big, map == MAP_FAILED ? "failed" : "ok", r1);
	/* After PRESERVE_FD, through the mapping taken before the seal. */
	if (!r1) {
		for (c = 0; c < big_size / CHUNK; c++) {
			if (c % 4 == 1)
				fill(map, c * CHUNK, (c + 1) * CHUNK, SEED_B);
			else if (c % 4 == 2)
				fill(map, c * CHUNK + CHUNK / 4, c * CHUNK + CHUNK / 2, SEED_B);
		}
	}
	/* The seal holds: no new writable mapping. */
	r2 = -EINVAL;
	if (!r1) {
		void *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, big, 0);

		r2 = w == MAP_FAILED ? -errno : 0;
		if (w != MAP_FAILED)
			munmap(w, 4096);
	}
	result("s1_big_memfd_written_after_preserve", !r1 && r2 == -EPERM,
	       "preserve %d, a new writable mapping gave %d (want EPERM)", r1, r2);

	s_sealed = luo_create_session(luo_fd, "lc-sealed");
	sealed = new_memfd("lc-sealed", SEALED_SIZE);
	buf = malloc(SEALED_SIZE);
	r = -EINVAL;
	if (s_sealed >= 0 && sealed >= 0 && buf) {
		for (size_t i = 0; i < SEALED_SIZE; i++)
			buf[i] = sealed_byte(i);
		r = pwrite(sealed, buf, SEALED_SIZE, 0) == (ssize_t)SEALED_SIZE ? 0 : -errno;
		if (!r)
			r = fcntl(sealed, F_ADD_SEALS, SEALED_SEALS) ? -errno : 0;
		if (!r)
			r = luo_session_preserve_fd(s_sealed, sealed, 2);
	}
	free(buf);
	result("s1_sealed_memfd", !r, "session %d, memfd %d, preserve %d", s_sealed, sealed, r);

	s_empty = luo_create_session(luo_fd, "lc-empty");
	empty = new_memfd("lc-empty", 0);
	r = s_empty >= 0 && empty >= 0 ? luo_session_preserve_fd(s_empty, empty, 3) : -EINVAL;
	result("s1_empty_memfd", !r, "session %d, memfd %d, preserve %d", s_empty, empty, r);
	if (small)
		goto done;

	s_empty = luo_create_session(luo_fd, "lc-511");
	empty = new_memfd("lc-511", PAGES_511 * 4096);
	r = -EINVAL;
	if (s_empty >= 0 && empty >= 0) {
		unsigned char *m = mmap(NULL, PAGES_511 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
					empty, 0);

		if (m != MAP_FAILED) {
			for (unsigned long i = 0; i < PAGES_511; i++)
				m[i * 4096 + i % 4096] = (i % 251) + 1;
			munmap(m, PAGES_511 * 4096);
			r = luo_session_preserve_fd(s_empty, empty, 4);
		}
	}
	result("s1_memfd_511_page_array", !r, "session %d, memfd %d, preserve %d", s_empty, empty,
	       r);

done:
	if (ktap_failures)
		exit(1);
	close(luo_fd);
	/* The sessions, the memfds and the mapping stay in the daemonized child. */
	daemonize_and_wait();
}

/* Retrieve @token of session @name; the session fd goes to *sfd. */
static int retrieve(int luo_fd, const char *name, uint64_t token, int *sfd)
{
	*sfd = luo_retrieve_session(luo_fd, name);
	if (*sfd < 0)
		return *sfd;
	return luo_session_retrieve_fd(*sfd, token);
}

static int finish(int sfd)
{
	int r = sfd >= 0 ? luo_session_finish(sfd) : -EBADF;

	if (sfd >= 0)
		close(sfd);
	return r;
}

static int read_all(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len, 0);

	return n < 0 ? -errno : (int)n;
}

static void stage_2(int luo_fd, int state_fd)
{
	int s_flb, s_big, s_sealed, s_empty, lo, hi, big, sealed, empty, r, fin, found;
	char what[64], buf[64];
	uint64_t off, bad = ~0ULL, got = 0;
	struct stat st = { 0 };
	const uint64_t *map;
	unsigned char *sbuf;
	int seals, n1, n2;
	off_t pos;

	printf("1..%d\n", small ? 8 : 9);
	found = 0;
	for (int i = 0; i < NR_TEST_FLBS; i++) {
		snprintf(what, sizeof(what), "liveupdate-test-flb-v%d: found flb data", i);
		found += count_in_log(what) == 1;
	}
	result("s2_flb_data_found", found == NR_TEST_FLBS,
	       "%d of %d test FLBs found their data once", found, NR_TEST_FLBS);

	lo = retrieve(luo_fd, "lc-flb", FLB_TOKEN_LO, &s_flb);
	hi = s_flb >= 0 ? luo_session_retrieve_fd(s_flb, FLB_TOKEN_HI) : -EBADF;
	n1 = lo >= 0 ? read_all(lo, buf, sizeof(buf)) : lo;
	/* A page from create_and_preserve_memfd(): the string, then zeros. */
	r = n1 == (int)sizeof(buf) && !memcmp(buf, "flb low token", 14);
	n2 = hi >= 0 ? read_all(hi, buf, sizeof(buf)) : hi;
	r = r && n2 == 14 && !memcmp(buf, "flb high token", 14);
	result("s2_flb_memfds", r, "session %d, token 0: %d (read %d), token U64_MAX: %d (read %d)",
	       s_flb, lo, n1, hi, n2);

	big = retrieve(luo_fd, "lc-big", 1, &s_big);
	map = MAP_FAILED;
	if (big >= 0)
		map = mmap(NULL, big_size, PROT_READ, MAP_SHARED, big, 0);
	if (map != MAP_FAILED) {
		for (off = 0; off < big_size; off += 8) {
			if (map[off / 8] != big_expected(off)) {
				bad = off;
				got = map[off / 8];
				break;
			}
		}
	}
	result("s2_big_memfd_every_byte", big >= 0 && map != MAP_FAILED && bad == ~0ULL,
	       "retrieve %d, map %s, first bad word at %#llx: %#llx, want %#llx", big,
	       map == MAP_FAILED ? "failed" : "ok", (unsigned long long)bad,
	       (unsigned long long)got, (unsigned long long)(bad == ~0ULL ? 0 : big_expected(bad)));
	if (map != MAP_FAILED)
		munmap((void *)map, big_size);
	seals = big >= 0 ? fcntl(big, F_GET_SEALS) : -1;
	pos = big >= 0 ? lseek(big, 0, SEEK_CUR) : -1;
	if (big >= 0)
		fstat(big, &st);
	result("s2_big_memfd_size_seals_pos",
	       st.st_size == (off_t)big_size && seals == BIG_SEALS && pos == BIG_POS,
	       "size %lld (want %zu), seals %#x (want %#x), position %lld (want %d)",
	       (long long)st.st_size, big_size, seals, BIG_SEALS, (long long)pos, BIG_POS);

	sealed = retrieve(luo_fd, "lc-sealed", 2, &s_sealed);
	sbuf = malloc(SEALED_SIZE);
	bad = ~0ULL;
	r = sealed >= 0 && sbuf && pread(sealed, sbuf, SEALED_SIZE, 0) == (ssize_t)SEALED_SIZE;
	for (size_t i = 0; r && i < SEALED_SIZE; i++) {
		if (sbuf[i] != sealed_byte(i)) {
			bad = i;
			break;
		}
	}
	free(sbuf);
	seals = sealed >= 0 ? fcntl(sealed, F_GET_SEALS) : -1;
	n1 = sealed >= 0 && pwrite(sealed, "x", 1, 0) < 0 ? errno : 0;
	st.st_size = -1;
	if (sealed >= 0)
		fstat(sealed, &st);
	result("s2_sealed_memfd",
	       r && bad == ~0ULL && seals == SEALED_SEALS && n1 == EPERM &&
	       st.st_size == (off_t)SEALED_SIZE,
	       "retrieve %d, read %d, first bad byte %lld, seals %#x (want %#x), write errno %d, size %lld",
	       sealed, r, bad == ~0ULL ? -1LL : (long long)bad, seals, SEALED_SEALS, n1,
	       (long long)st.st_size);

	empty = retrieve(luo_fd, "lc-empty", 3, &s_empty);
	st.st_size = -1;
	if (empty >= 0)
		fstat(empty, &st);
	result("s2_empty_memfd", empty >= 0 && st.st_size == 0, "retrieve %d, size %lld", empty,
	       (long long)st.st_size);

	fin = 0;
	if (!small) {
		int s511, f511 = retrieve(luo_fd, "lc-511", 4, &s511);
		unsigned long bad511 = ~0UL;
		unsigned char *m = MAP_FAILED;

		if (f511 >= 0)
			m = mmap(NULL, PAGES_511 * 4096, PROT_READ, MAP_SHARED, f511, 0);
		for (unsigned long i = 0; m != MAP_FAILED && i < PAGES_511; i++) {
			if (m[i * 4096 + i % 4096] != (i % 251) + 1) {
				bad511 = i;
				break;
			}
		}
		result("s2_memfd_511_page_array", f511 >= 0 && m != MAP_FAILED && bad511 == ~0UL,
		       "retrieve %d (session %d), map %s, first bad page %ld", f511, s511,
		       m == MAP_FAILED ? "failed" : "ok", (long)bad511);
		if (m != MAP_FAILED)
			munmap(m, PAGES_511 * 4096);
		if (f511 >= 0)
			close(f511);
		fin = finish(s511);
	}

	/* Every file but the state session's memfd is finished now. */
	n1 = count_in_log("finish was triggered");
	fin |= finish(s_flb) | finish(s_big) | finish(s_sealed) | finish(s_empty);
	n2 = count_in_log("finish was triggered");
	result("s2_flb_no_finish_while_a_file_is_left", !fin && n1 == 0 && n2 == 0,
	       "finish %d, FLB finishes before %d, after %d", fin, n1, n2);
	fin = luo_session_finish(state_fd);
	n2 = count_in_log("finish was triggered");
	result("s2_flb_finish_after_last_file", !fin && n2 == NR_TEST_FLBS,
	       "finish of the state session %d, %d FLB finishes (want %d)", fin, n2,
	       NR_TEST_FLBS);
	ktap_exit();
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "small", no_argument, &small, 1 },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, NULL);

	if (small)
		big_size = BIG_SIZE_SMALL;
	if (a.list) {
		for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
			if (!small || !strstr(cases[i], "_511_"))
				printf("%s\n", cases[i]);
		return 0;
	}
	return ktap_luo_test(argv[0], a, STATE_SESSION_NAME, stage_1, stage_2);
}
