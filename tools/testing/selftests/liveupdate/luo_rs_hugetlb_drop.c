// SPDX-License-Identifier: GPL-2.0-only
/*
 * A hugetlbfs memfd preserved by the Rust memfd handler
 * ("hugetlb-memfd-rs-v1"), kexec'd into a kernel that has no handler for it.
 * Stage 1 (a kernel with the Rust memfd handler) preserves, in session
 * "hd-mixed", a shmem memfd (token 1), a 2 MiB hugetlbfs memfd (token 2) and
 * another shmem memfd (token 3), and a shmem memfd in session "hd-plain".
 *
 * Into the Rust LUO with upstream's C memfd handler (rust-c-memfd), the
 * hugetlb file is dropped with a warning and nothing else changes: both
 * shmem files of its session and the other session come back intact, its
 * token gives ENOENT, FINISH works, and the next kernel's 2 MiB pool is the
 * one its command line made (the dropped file's page is not in it).
 *
 * Into the C LUO (--into-c, in both boots, variant c):
 * upstream refuses the whole handover when a file has a compatible it has
 * no handler for ("No registered handler for compatible", then EIO from
 * every open of /dev/liveupdate), so no session of the previous kernel
 * can be retrieved. The test checks exactly that, and that the machine is
 * otherwise sound (pool as booted, a new memfd works). luod refuses to load
 * such a kernel in the first place (luod-tenants: the hugetlb case).
 *
 * KTAP per check; --list [--into-c] prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libliveupdate.h>
#include <linux/memfd.h>

#include "luo_rs_ktap.h"
#include "luo_rs_sysfs.h"

#define MIXED		"hd-mixed"
#define PLAIN		"hd-plain"
#define SZ_2M		(2UL << 20)
#define SHM_SIZE	(64UL << 10)
#define BOOT_2M		2
#define H2M		"/sys/kernel/mm/hugepages/hugepages-2048kB/"

static const char *const names_rust[] = {
	"s1_preserved",
	"s2_pool_as_booted",
	"s2_shmem_files_of_the_session_retrieved",
	"s2_hugetlb_file_dropped",
	"s2_other_session_retrieved",
	"s2_finish",
};

static const char *const names_c[] = {
	"s1_preserved",
	"s2_pool_as_booted",
	"s2_c_luo_refuses_the_handover",
	"s2_new_memfd_works",
};

static unsigned char pat(unsigned int seed, unsigned long off)
{
	return (off * 13 + seed * 29 + 3) & 0xff;
}

static int shm_memfd(unsigned int seed)
{
	static unsigned char buf[SHM_SIZE];
	int fd = memfd_create("hd", MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	for (unsigned long i = 0; i < SHM_SIZE; i++)
		buf[i] = pat(seed, i);
	if (pwrite(fd, buf, SHM_SIZE, 0) != (ssize_t)SHM_SIZE) {
		close(fd);
		return -EIO;
	}
	return fd;
}

/* 0 if @fd holds pat(@seed) over SHM_SIZE bytes. */
static long shm_bad(int fd, unsigned int seed)
{
	static unsigned char buf[SHM_SIZE];

	if (pread(fd, buf, SHM_SIZE, 0) != (ssize_t)SHM_SIZE)
		return -1;
	for (unsigned long i = 0; i < SHM_SIZE; i++)
		if (buf[i] != pat(seed, i))
			return i + 1;
	return 0;
}

/* ---- stage 1 ---- */

static void stage_1(void)
{
	int luo = luo_open_device(), mixed, plain, huge = -1, r = -1;
	int fds[3] = { -1, -1, -1 };
	unsigned char *p = NULL;

	printf("1..1\n");
	mixed = luo >= 0 ? luo_create_session(luo, MIXED) : -1;
	plain = luo >= 0 ? luo_create_session(luo, PLAIN) : -1;
	fds[0] = shm_memfd(1);
	fds[1] = shm_memfd(3);
	fds[2] = shm_memfd(4);
	huge = memfd_create("hd-huge", MFD_HUGETLB | MFD_HUGE_2MB | MFD_CLOEXEC);
	if (huge >= 0 && !ftruncate(huge, SZ_2M))
		p = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE, MAP_SHARED, huge, 0);
	if (p == MAP_FAILED)
		p = NULL;
	if (p) {
		memset(p, 0x77, SZ_2M);
		munmap(p, SZ_2M);
	}
	if (mixed >= 0 && plain >= 0 && p && fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0)
		r = luo_session_preserve_fd(mixed, fds[0], 1) ?:
		    luo_session_preserve_fd(mixed, huge, 2) ?:
		    luo_session_preserve_fd(mixed, fds[1], 3) ?:
		    luo_session_preserve_fd(plain, fds[2], 1);
	result("s1_preserved", !r, "device %s, sessions %s %s, hugetlb memfd %s (%s), preserve %s",
	       res(luo), res(mixed), res(plain), res(huge), p ? "written" : strerror(errno),
	       res(r));
	if (ktap_failures)
		exit(1);
	close(luo);
	daemonize_and_wait();
}

/* ---- stage 2 ---- */

static void pool_as_booted(void)
{
	long nr = sysfs_num(H2M, "nr_hugepages"), fr = sysfs_num(H2M, "free_hugepages");
	long su = sysfs_num(H2M, "surplus_hugepages");

	result("s2_pool_as_booted", nr == BOOT_2M && fr == BOOT_2M && su == 0,
	       "2 MiB pool: nr %ld free %ld surplus %ld, want %d %d 0", nr, fr, su, BOOT_2M,
	       BOOT_2M);
}

static void stage_2_c(void)
{
	int luo, again, fd;
	long bad = -1;

	printf("1..3\n");
	pool_as_booted();
	luo = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	luo = luo < 0 ? -errno : (close(luo), 0);
	again = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	again = again < 0 ? -errno : (close(again), 0);
	result("s2_c_luo_refuses_the_handover",
	       luo == -EIO && again == -EIO &&
	       count_in_log("No registered handler for compatible 'hugetlb-memfd-rs-v1'") >= 1,
	       "open of /dev/liveupdate: %s, again %s (want EIO, upstream's policy for an unknown compatible)",
	       res(luo), res(again));
	fd = shm_memfd(9);
	if (fd >= 0) {
		bad = shm_bad(fd, 9);
		close(fd);
	}
	result("s2_new_memfd_works", fd >= 0 && !bad, "memfd %s, first bad byte %ld", res(fd),
	       bad);
	ktap_exit();
}

static void stage_2_rust(void)
{
	int luo, mixed, plain = -1, f1 = -1, f3 = -1, f2, fp = -1, r = -1;
	long bad1 = -1, bad3 = -1, badp = -1;

	printf("1..5\n");
	pool_as_booted();
	luo = luo_open_device();
	mixed = luo >= 0 ? luo_retrieve_session(luo, MIXED) : -1;
	if (mixed >= 0) {
		f1 = luo_session_retrieve_fd(mixed, 1);
		f3 = luo_session_retrieve_fd(mixed, 3);
	}
	if (f1 >= 0)
		bad1 = shm_bad(f1, 1);
	if (f3 >= 0)
		bad3 = shm_bad(f3, 3);
	result("s2_shmem_files_of_the_session_retrieved", !bad1 && !bad3,
	       "device %s, session %s, token 1 %s (bad %ld), token 3 %s (bad %ld)", res(luo),
	       res(mixed), res(f1), bad1, res(f3), bad3);
	f2 = mixed >= 0 ? luo_session_retrieve_fd(mixed, 2) : -1;
	result("s2_hugetlb_file_dropped",
	       mixed >= 0 && f2 == -ENOENT &&
	       count_in_log("session [" MIXED "]: dropped token 0x2") == 1,
	       "RETRIEVE_FD of the hugetlb token: %s (want ENOENT, and one warning)", res(f2));
	if (luo >= 0)
		plain = luo_retrieve_session(luo, PLAIN);
	if (plain >= 0)
		fp = luo_session_retrieve_fd(plain, 1);
	if (fp >= 0)
		badp = shm_bad(fp, 4);
	result("s2_other_session_retrieved", !badp, "session %s, token 1 %s (bad %ld)",
	       res(plain), res(fp), badp);
	if (mixed >= 0 && plain >= 0)
		r = luo_session_finish(mixed) ?: luo_session_finish(plain);
	result("s2_finish", !r, "FINISH: %s", res(r));
	ktap_exit();
}

/* --into-c, in both boots. */
static int opt_into_c;

static int c_receiver(void)
{
	return opt_into_c;
}

static void stage_2(void)
{
	if (c_receiver())
		stage_2_c();
	stage_2_rust();
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "into-c", no_argument, &opt_into_c, 1 },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, NULL);

	if (a.list) {
		if (opt_into_c)
			ktap_list(names_c, ARRAY_SIZE(names_c));
		else
			ktap_list(names_rust, ARRAY_SIZE(names_rust));
		return 0;
	}
	return ktap_run_stages(a, stage_1, stage_2);
}
