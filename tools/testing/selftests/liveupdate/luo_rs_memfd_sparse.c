// SPDX-License-Identifier: GPL-2.0-only
/*
 * A sparse memfd across a kexec: 16 GiB in size, 64 MiB written (64 chunks of
 * 1 MiB, one every 256 MiB), meant for a 2 GiB VM.
 *
 * Stage 1 prints the used memory (MemTotal - MemFree) before writing, after
 * writing and after PRESERVE_FD, the system's shmem pages (Shmem) and the
 * memfd's blocks after PRESERVE_FD, and passes the figures to stage 2 in a
 * small memfd (token 2). A handler that fills holes (upstream's C one) needs
 * 16 GiB here: PRESERVE_FD fails or the VM runs out of memory, and stage 2
 * never runs.
 *
 * Stage 2 (KTAP) checks that PRESERVE_FD allocated no page for a hole (Shmem
 * grew by less than 8 MiB and the memfd still held 64 MiB of pages), that the
 * retrieved memfd has the size, the data where written and zeroes around it,
 * that SEEK_DATA/SEEK_HOLE see exactly the 64 chunks, and that it holds
 * 64 MiB of pages (st_blocks). --list prints the case names.
 *
 * The used memory is printed, not checked: on the debug kernels it grew by
 * 27 to 45 MiB at PRESERVE_FD while Shmem did not move, and the pages on the
 * per-CPU free lists (the "count:" lines of /proc/zoneinfo), which MemFree
 * does not count, grew by as much (8,123 pages for +32.9 MiB, one run). Pages
 * freed during PRESERVE_FD: pinning migrates written pages out of KHO's
 * scratch areas (CMA pageblocks, which the allocator uses once free CMA is
 * more than half of the free memory) and frees the old ones.
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

#define STATE_SESSION_NAME	"luo_rs_memfd_sparse_state"
#define STATE_MEMFD_TOKEN	994
#define SESSION			"rs-memfd-sparse"
#define SIZE			(16ULL << 30)
#define CHUNK			(1ULL << 20)
#define STRIDE			(256ULL << 20)
#define NR_CHUNKS		(SIZE / STRIDE)
#define MAX_GROWTH_KIB		(8 << 10)

static const char * const case_names[] = {
	"sparse_preserve_no_growth",
	"sparse_size_and_data",
	"sparse_holes_stay_holes",
	"pages_beyond_eof_keep_holes",
};

/*
 * Token 3: 8 pages, page 0 written, 16 pages fallocated beyond the end
 * (FALLOC_FL_KEEP_SIZE). The file holds 17 pages, more than its size: a
 * handler that takes "as many pages as the size" for "no holes" fills pages 1
 * to 7. They must stay holes; the pages beyond the end are not part of the
 * file's contents and are not carried.
 */
#define EOF_PAGES	8
#define BEYOND_PAGES	16

static long used_kib(void)
{
	char line[256];
	long total = -1, freek = -1, v;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %ld kB", &v) == 1)
			total = v;
		else if (sscanf(line, "MemFree: %ld kB", &v) == 1)
			freek = v;
	}
	fclose(f);
	return total < 0 || freek < 0 ? -1 : total - freek;
}

/* A /proc/meminfo field in KiB, -1 if absent. */
static long meminfo_kib(const char *field)
{
	char line[256], fmt[64];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	snprintf(fmt, sizeof(fmt), "%s: %%ld kB", field);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, fmt, &v) == 1)
			break;
	fclose(f);
	return v;
}

static unsigned char pat(unsigned long long off)
{
	return (off * 13 + (off >> 20) * 5 + 1) & 0xff;
}

static void stage1(int luo_fd)
{
	static unsigned char buf[CHUNK];
	long u0, u1, u2, sh1, sh2;
	char figures[160];
	struct stat st;
	int sfd, mfd, ffd, ret;
	unsigned long long c, i;

	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	sfd = luo_create_session(luo_fd, SESSION);
	if (sfd < 0)
		fail_exit("create session: %d", sfd);
	u0 = used_kib();
	mfd = memfd_create("luo_rs_memfd_sparse", 0);
	if (mfd < 0 || ftruncate(mfd, SIZE))
		fail_exit("memfd of 16 GiB");
	for (c = 0; c < NR_CHUNKS; c++) {
		for (i = 0; i < CHUNK; i++)
			buf[i] = pat(c * STRIDE + i);
		if (pwrite(mfd, buf, CHUNK, c * STRIDE) != (ssize_t)CHUNK)
			fail_exit("pwrite chunk %llu", c);
	}
	u1 = used_kib();
	ksft_print_msg("sparse: used memory %ld KiB before, %ld KiB after writing 64 MiB\n",
		       u0, u1);
	sh1 = meminfo_kib("Shmem");
	ret = luo_session_preserve_fd(sfd, mfd, 1);
	u2 = used_kib();
	sh2 = meminfo_kib("Shmem");
	ksft_print_msg("sparse: PRESERVE_FD of a 16 GiB memfd with 64 MiB written: %s; used memory %ld KiB (%+ld KiB), Shmem %ld KiB (%+ld KiB)\n",
		       ret ? strerror(-ret) : "ok", u2, u2 - u1, sh2, sh2 - sh1);
	if (ret)
		fail_exit("PRESERVE_FD of the sparse memfd: %s", strerror(-ret));
	if (fstat(mfd, &st))
		fail_exit("fstat of the sparse memfd");
	close(mfd);
	snprintf(figures, sizeof(figures), "%ld %ld %ld %ld %ld %lld", u0, u1, u2, sh1, sh2,
		 (long long)st.st_blocks);
	ffd = memfd_create("figures", 0);
	if (ffd < 0 || pwrite(ffd, figures, strlen(figures) + 1, 0) < 0)
		fail_exit("figures memfd");
	ret = luo_session_preserve_fd(sfd, ffd, 2);
	if (ret)
		fail_exit("PRESERVE_FD of the figures: %d", ret);
	close(ffd);
	mfd = memfd_create("beyond_eof", 0);
	if (mfd < 0 || ftruncate(mfd, EOF_PAGES * getpagesize()))
		fail_exit("memfd of %d pages", EOF_PAGES);
	memset(buf, 0x5a, getpagesize());
	if (pwrite(mfd, buf, getpagesize(), 0) != getpagesize())
		fail_exit("pwrite page 0");
	if (fallocate(mfd, FALLOC_FL_KEEP_SIZE, EOF_PAGES * getpagesize(),
		      BEYOND_PAGES * getpagesize()))
		fail_exit("fallocate beyond the end");
	ret = luo_session_preserve_fd(sfd, mfd, 3);
	if (ret)
		fail_exit("PRESERVE_FD of the memfd with pages beyond its end: %d", ret);
	close(mfd);
	close(luo_fd);
	daemonize_and_wait();
}

static int check_data(int mfd)
{
	static unsigned char buf[CHUNK];
	unsigned long long c, i;
	struct stat st;

	if (fstat(mfd, &st) || (unsigned long long)st.st_size != SIZE) {
		ksft_print_msg("size %lld, want %llu\n", (long long)st.st_size, SIZE);
		return -1;
	}
	for (c = 0; c < NR_CHUNKS; c++) {
		if (pread(mfd, buf, CHUNK, c * STRIDE) != (ssize_t)CHUNK)
			return -1;
		for (i = 0; i < CHUNK; i++) {
			if (buf[i] != pat(c * STRIDE + i)) {
				ksft_print_msg("byte %llu is %#x, want %#x\n", c * STRIDE + i,
					       buf[i], pat(c * STRIDE + i));
				return -1;
			}
		}
		/* The MiB after each chunk (a hole) reads zero. */
		if (pread(mfd, buf, CHUNK, c * STRIDE + CHUNK) != (ssize_t)CHUNK)
			return -1;
		for (i = 0; i < CHUNK; i++) {
			if (buf[i]) {
				ksft_print_msg("hole byte %llu is %#x\n", c * STRIDE + CHUNK + i,
					       buf[i]);
				return -1;
			}
		}
	}
	return 0;
}

static int check_holes(int mfd)
{
	unsigned long long c;
	struct stat st;
	off_t d, h;

	for (c = 0; c < NR_CHUNKS; c++) {
		d = lseek(mfd, c ? c * STRIDE - STRIDE + CHUNK : 0, SEEK_DATA);
		h = d < 0 ? -1 : lseek(mfd, d, SEEK_HOLE);
		if (d != (off_t)(c * STRIDE) || h != (off_t)(c * STRIDE + CHUNK)) {
			ksft_print_msg("data extent %llu is [%lld, %lld), want [%llu, %llu)\n", c,
				       (long long)d, (long long)h, c * STRIDE, c * STRIDE + CHUNK);
			return -1;
		}
	}
	if (fstat(mfd, &st))
		return -1;
	ksft_print_msg("sparse: the retrieved memfd holds %lld KiB, used memory %ld KiB\n",
		       (long long)st.st_blocks / 2, used_kib());
	if ((unsigned long long)st.st_blocks * 512 != NR_CHUNKS * CHUNK) {
		ksft_print_msg("st_blocks %lld, want %llu\n", (long long)st.st_blocks,
			       NR_CHUNKS * CHUNK / 512);
		return -1;
	}
	return 0;
}

static int check_beyond_eof(int mfd)
{
	unsigned char buf[4096];
	struct stat st;
	off_t h;
	int i;

	if (fstat(mfd, &st) || st.st_size != EOF_PAGES * getpagesize()) {
		ksft_print_msg("beyond_eof: size %lld, want %d\n", (long long)st.st_size,
			       EOF_PAGES * getpagesize());
		return -1;
	}
	if (pread(mfd, buf, sizeof(buf), 0) != sizeof(buf))
		return -1;
	for (i = 0; i < (int)sizeof(buf); i++)
		if (buf[i] != 0x5a) {
			ksft_print_msg("beyond_eof: byte %d is %#x\n", i, buf[i]);
			return -1;
		}
	h = lseek(mfd, 0, SEEK_HOLE);
	ksft_print_msg("beyond_eof: first hole at %lld, %lld KiB held\n", (long long)h,
		       (long long)st.st_blocks / 2);
	if (h != getpagesize() || st.st_blocks * 512 != getpagesize())
		return -1;
	return 0;
}

static void stage2(int luo_fd, int state_fd)
{
	long u0 = -1, u1 = -1, u2 = -1, sh1 = -1, sh2 = -1;
	long long blocks = -1;
	char figures[160] = "";
	int sfd, mfd, ffd, stage;

	ksft_print_header();
	ksft_set_plan(ARRAY_SIZE(case_names));
	restore_and_read_stage(state_fd, STATE_MEMFD_TOKEN, &stage);
	sfd = luo_retrieve_session(luo_fd, SESSION);
	if (sfd < 0)
		ksft_exit_fail_msg("RETRIEVE_SESSION: %d\n", sfd);
	ffd = luo_session_retrieve_fd(sfd, 2);
	if (ffd >= 0 && pread(ffd, figures, sizeof(figures) - 1, 0) > 0)
		sscanf(figures, "%ld %ld %ld %ld %ld %lld", &u0, &u1, &u2, &sh1, &sh2, &blocks);
	ksft_print_msg("sparse: previous kernel: used %ld KiB after writing, %ld KiB after PRESERVE_FD (%+ld KiB); Shmem %ld -> %ld KiB (%+ld KiB); the memfd held %lld KiB\n",
		       u1, u2, u2 - u1, sh1, sh2, sh2 - sh1, blocks / 2);
	ksft_test_result(sh1 > 0 && sh2 - sh1 < MAX_GROWTH_KIB &&
			 (unsigned long long)blocks * 512 == NR_CHUNKS * CHUNK,
			 "%s\n", case_names[0]);
	mfd = luo_session_retrieve_fd(sfd, 1);
	if (mfd < 0)
		ksft_print_msg("RETRIEVE_FD: %d\n", mfd);
	ksft_test_result(mfd >= 0 && !check_data(mfd), "%s\n", case_names[1]);
	ksft_test_result(mfd >= 0 && !check_holes(mfd), "%s\n", case_names[2]);
	if (mfd >= 0)
		close(mfd);
	mfd = luo_session_retrieve_fd(sfd, 3);
	if (mfd < 0)
		ksft_print_msg("RETRIEVE_FD of token 3: %d\n", mfd);
	ksft_test_result(mfd >= 0 && !check_beyond_eof(mfd), "%s\n", case_names[3]);
	if (mfd >= 0)
		close(mfd);
	if (luo_session_finish(sfd))
		ksft_print_msg("FINISH failed\n");
	luo_session_finish(state_fd);
	ksft_finished();
}

int main(int argc, char *argv[])
{
	size_t i;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		for (i = 0; i < ARRAY_SIZE(case_names); i++)
			printf("%s\n", case_names[i]);
		return 0;
	}
	return luo_test(argc, argv, STATE_SESSION_NAME, stage1, stage2);
}
