// SPDX-License-Identifier: GPL-2.0-only
/*
 * Hostile vfio-pci handovers: the "vfio-pci-rs-v1" handler of the next kernel
 * must refuse a corrupt one with an errno, keep refusing it (sticky), and
 * let FINISH of its session succeed, without an oops. Needs
 * CONFIG_LIVEUPDATE_RUST_TEST in the first kernel: ioctl(TEST_VFIO_CORRUPT,
 * MODE) on debugfs liveupdate/test_vfio corrupts the handover of the next vfio
 * file the handler preserves:
 *
 *   1 PCI domain 0x7fff (no such domain)        -> RETRIEVE_FD ENODEV
 *   2 bdf 0xffff (no such device)               -> RETRIEVE_FD ENODEV
 *   3 handle: an address KHO did not preserve   -> RETRIEVE_FD EINVAL
 *   4 handle 0                                  -> RETRIEVE_FD EINVAL
 *   5 another device ID (the bits flipped)      -> RETRIEVE_FD ENODEV
 *
 *   -s 1  edu devices A, B, C, D (see luo_rs_vfio.h) bound to vfio-pci and an
 *         iommufd; mode M corrupts the device that goes alone into session
 *         "vfio-corrupt-M" (A for 1, B for 2, C for 3, D for 4); a child
 *         holds the fds across the kexec.
 *   -s 2  all four bound to vfio-pci and held (EBUSY on a cdev open: the
 *         handler's list of preserved devices names them); per mode:
 *         RETRIEVE_FD fails with the mode's errno, again with the same
 *         errno, and FINISH succeeds. The list names each device's file by
 *         its handle: A and B (modes 1 and 2, whose records are corrupt but
 *         whose handles are not) are released when their files are
 *         finished; C and D (corrupt handles) stay held until the last of
 *         the four files is finished, and then all open.
 *
 * With --boot (in every boot; suite vfio-boot), what a boot makes of the
 * list of preserved devices:
 *
 *   -s 1  A (bound to vfio-pci and an iommufd) goes into session
 *         "vfio-boot-id" with mode 5: the same function, another device ID.
 *         C goes into session "corrupt-drop-c", which LUO's test handler
 *         corrupts (T_CORRUPT 13: its file count off by one).
 *   -s 2  LUO dropped "corrupt-drop-c" at boot and finished its file at the
 *         first open: C is released (its cdev opens). A is held until its
 *         file is finished; RETRIEVE_FD fails with
 *         ENODEV (the device at A's address is not the one preserved
 *         there), again; FINISH succeeds and A opens. Then B (bound) goes
 *         into session "vfio-boot-off", a child holds it across the kexec,
 *         and the next kernel is loaded with liveupdate=off.
 *   -s 3  Live update is off, so the handler does not register: B, in the
 *         list of preserved devices, is neither reserved for vfio-pci nor
 *         held (its cdev opens).
 *
 * KTAP per check; --list [--boot] prints every case name.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "luo_rs_vfio.h"

#define STATE_SESSION_NAME	"luo_rs_vfio_corrupt_state"
#define BOOT_STATE_NAME		"luo_rs_vfio_boot_state"
#define BOOT_SESSION		"vfio-boot-id"
#define MODE_WRONG_ID		5
#define OFF_SESSION		"vfio-boot-off"
#define DROP_SESSION		"corrupt-drop-c"
#define T_CORRUPT		_IO('L', 6)
#define STATE_MEMFD_TOKEN	995
#define NR_MODES		4	/* in the suite vfio-corrupt; 5 in vfio-boot */
#define TOKEN			1

static const int want_errno[NR_MODES + 1] = { 0, ENODEV, ENODEV, EINVAL, EINVAL };

static int luo_fd = -1, iommufd = -1, test_fd = -1;
static __u32 ioas;
static struct edu dev[NR_EDU] = { EDU_INIT(0), EDU_INIT(1), EDU_INIT(2), EDU_INIT(3) };
static int sess[NR_MODES + 1] = { -EBADF, -EBADF, -EBADF, -EBADF, -EBADF };
static int first[NR_MODES + 1];		/* stage 2: the first RETRIEVE_FD's result */

static const char *session_name(int mode)
{
	static char name[32];

	snprintf(name, sizeof(name), "vfio-corrupt-%d", mode);
	return name;
}

/* ---- stage 1 ---- */

static int s1_corrupt_rig(int arg)
{
	int i;

	for (i = 0; i < NR_EDU; i++)
		if (!edu_present(edu_bdf[i]) || !bind_vfio_pci(edu_bdf[i]))
			return 0;
	iommufd = iommufd_open();
	if (iommufd < 0 || !ioas_alloc(iommufd, &ioas))
		return 0;
	test_fd = open(TEST_VFIO, O_RDWR | O_CLOEXEC);
	if (test_fd < 0)
		return fail("open %s: %s (CONFIG_LIVEUPDATE_RUST_TEST?)", TEST_VFIO, en(errno));
	return 1;
}

static int s1_corrupt_preserve(int mode)
{
	struct edu *e = &dev[mode - 1];

	if (iommufd < 0 || !ioas)
		return fail("no iommufd and IOAS (s1_corrupt_rig failed)");
	if (!edu_open_bind(e, iommufd, ioas))
		return 0;
	sess[mode] = luo_create_session(luo_fd, session_name(mode));
	if (sess[mode] < 0)
		return fail("CREATE_SESSION %s: %s", session_name(mode), en(sess[mode]));
	/* Never preserve a device uncorrupted: stage 2 would count on the errno. */
	if (test_fd < 0)
		return fail("no %s to arm the corruption with", TEST_VFIO);
	if (ioctl(test_fd, TEST_VFIO_CORRUPT, mode))
		return fail("TEST_VFIO_CORRUPT %d: %s", mode, en(errno));
	return preserve(sess[mode], e->fd, TOKEN, e->bdf);
}

static const struct vcase s1_cases[] = {
	{ "s1_corrupt_rig", s1_corrupt_rig },
	{ "s1_corrupt_preserve_1", s1_corrupt_preserve, 1 },
	{ "s1_corrupt_preserve_2", s1_corrupt_preserve, 2 },
	{ "s1_corrupt_preserve_3", s1_corrupt_preserve, 3 },
	{ "s1_corrupt_preserve_4", s1_corrupt_preserve, 4 },
};

static void stage_1(int fd)
{
	luo_fd = fd;
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	run_cases(s1_cases, ARRAY_SIZE(s1_cases));
	close(luo_fd);
	daemonize_and_wait();
}

/* ---- stage 2 ---- */

static int s2_corrupt_bind_all(int arg)
{
	int i, ok = 1;

	for (i = 0; i < NR_EDU; i++)
		ok = bind_vfio_pci(edu_bdf[i]) && ok;
	return ok;
}

static int s2_corrupt_retrieve_errno(int mode)
{
	int fd;

	sess[mode] = luo_retrieve_session(luo_fd, session_name(mode));
	if (sess[mode] < 0)
		return fail("RETRIEVE_SESSION %s: %s", session_name(mode), en(sess[mode]));
	fd = luo_session_retrieve_fd(sess[mode], TOKEN);
	first[mode] = fd < 0 ? fd : 0;
	if (fd >= 0) {
		close(fd);
		return fail("RETRIEVE_FD of a corrupt handover succeeded, want %s",
			    en(want_errno[mode]));
	}
	if (fd != -want_errno[mode])
		return fail("RETRIEVE_FD: %s, want %s", en(fd), en(want_errno[mode]));
	return 1;
}

static int s2_corrupt_sticky(int mode)
{
	int fd;

	if (sess[mode] < 0)
		return fail("%s was not retrieved", session_name(mode));
	fd = luo_session_retrieve_fd(sess[mode], TOKEN);
	if (fd >= 0) {
		close(fd);
		return fail("a second RETRIEVE_FD succeeded (the first: %s), want %s",
			    en(first[mode]), en(want_errno[mode]));
	}
	if (fd != -want_errno[mode] || fd != first[mode])
		return fail("a second RETRIEVE_FD: %s (the first: %s), want %s", en(fd),
			    en(first[mode]), en(want_errno[mode]));
	return 1;
}

static int s2_corrupt_finish(int mode)
{
	int r;

	if (sess[mode] < 0)
		return fail("%s was not retrieved", session_name(mode));
	r = luo_session_finish(sess[mode]);
	if (r)
		return fail("FINISH of %s after the failed RETRIEVE_FD: %s", session_name(mode),
			    en(r));
	return 1;
}

#define ALL_EDU		((1 << NR_EDU) - 1)

/*
 * The devices of the previous kernel's list are held (EBUSY on a cdev open)
 * until their files are finished: of the devices in @mask (bit i: edu i),
 * with @want_busy every one must be EBUSY, else every one must open.
 */
static int check_held(int mask, int want_busy)
{
	int i, fd, ok = 1;

	for (i = 0; i < NR_EDU; i++) {
		if (!(mask & (1 << i)))
			continue;
		why[0] = 0;
		fd = cdev_open(edu_bdf[i]);
		if (fd >= 0)
			close(fd);
		if (want_busy && fd != -EBUSY)
			ok = fail("%s: cdev open: %s, want EBUSY", edu_bdf[i], en(fd < 0 ? fd : 0));
		if (!want_busy && fd < 0)
			ok = fail("%s: cdev open: %s%s%s, want success", edu_bdf[i], en(fd),
				  why[0] ? ", " : "", why);
	}
	return ok;
}

/* Held from boot, though their handovers are corrupt. */
static int s2_corrupt_held_at_boot(int arg)
{
	return check_held(ALL_EDU, 1);
}

/*
 * Three of the four files finished. The records of modes 1 and 2 name
 * functions that do not exist, but the list of preserved devices names each
 * device's file by its handle: A and B are released with their files.
 */
static int s2_corrupt_released_by_handle(int arg)
{
	return check_held(1 << DEV_A | 1 << DEV_B, 0);
}

/*
 * Mode 3's handle names no entry of the list, so which device it was is not
 * known: C and D stay held until the last listed file is finished.
 */
static int s2_corrupt_held_until_last_finish(int arg)
{
	return check_held(1 << DEV_C | 1 << DEV_D, 1);
}

/* All four finished: every device opens. */
static int s2_corrupt_released_after_finish(int arg)
{
	return check_held(ALL_EDU, 0);
}

static const struct vcase s2_cases[] = {
	{ "s2_corrupt_bind_all", s2_corrupt_bind_all },
	{ "s2_corrupt_held_at_boot", s2_corrupt_held_at_boot },
	{ "s2_corrupt_retrieve_errno_1", s2_corrupt_retrieve_errno, 1 },
	{ "s2_corrupt_sticky_1", s2_corrupt_sticky, 1 },
	{ "s2_corrupt_finish_1", s2_corrupt_finish, 1 },
	{ "s2_corrupt_retrieve_errno_2", s2_corrupt_retrieve_errno, 2 },
	{ "s2_corrupt_sticky_2", s2_corrupt_sticky, 2 },
	{ "s2_corrupt_finish_2", s2_corrupt_finish, 2 },
	{ "s2_corrupt_retrieve_errno_3", s2_corrupt_retrieve_errno, 3 },
	{ "s2_corrupt_sticky_3", s2_corrupt_sticky, 3 },
	{ "s2_corrupt_finish_3", s2_corrupt_finish, 3 },
	{ "s2_corrupt_released_by_handle", s2_corrupt_released_by_handle },
	{ "s2_corrupt_held_until_last_finish", s2_corrupt_held_until_last_finish },
	{ "s2_corrupt_retrieve_errno_4", s2_corrupt_retrieve_errno, 4 },
	{ "s2_corrupt_sticky_4", s2_corrupt_sticky, 4 },
	{ "s2_corrupt_finish_4", s2_corrupt_finish, 4 },
	{ "s2_corrupt_released_after_finish", s2_corrupt_released_after_finish },
};

static void stage_2(int fd, int state_fd)
{
	luo_fd = fd;
	run_cases(s2_cases, ARRAY_SIZE(s2_cases));
	luo_session_finish(state_fd);
	ktap_exit();
}

/* ---- --boot ---- */

static int boot_sess = -EBADF;

static int s1_boot_rig(int arg)
{
	return s1_corrupt_rig(arg);
}

static int s1_boot_preserve_wrong_id(int arg)
{
	struct edu *a = &dev[DEV_A];

	if (iommufd < 0 || !ioas || test_fd < 0)
		return fail("no iommufd, IOAS or %s (s1_boot_rig failed)", TEST_VFIO);
	if (!edu_open_bind(a, iommufd, ioas))
		return 0;
	boot_sess = luo_create_session(luo_fd, BOOT_SESSION);
	if (boot_sess < 0)
		return fail("CREATE_SESSION %s: %s", BOOT_SESSION, en(boot_sess));
	if (ioctl(test_fd, TEST_VFIO_CORRUPT, MODE_WRONG_ID))
		return fail("TEST_VFIO_CORRUPT %d: %s", MODE_WRONG_ID, en(errno));
	return preserve(boot_sess, a->fd, TOKEN, "A, with another device ID");
}

/*
 * C goes into session "corrupt-drop-c", whose file count LUO's test handler
 * writes off by one (T_CORRUPT 13): the next kernel drops the session.
 */
static int s1_boot_preserve_dropped(int arg)
{
	struct edu *c = &dev[DEV_C];
	int s;

	if (iommufd < 0 || !ioas)
		return fail("no iommufd and IOAS (s1_boot_rig failed)");
	if (!edu_open_bind(c, iommufd, ioas))
		return 0;
	s = luo_create_session(luo_fd, DROP_SESSION);
	if (s < 0)
		return fail("CREATE_SESSION %s: %s", DROP_SESSION, en(s));
	if (tdev() < 0 || ioctl(tdev(), T_CORRUPT, 13))
		return fail("T_CORRUPT 13: %s", en(errno));
	return preserve(s, c->fd, TOKEN, "C, in a session the next kernel drops");
}

static const struct vcase boot_s1_cases[] = {
	{ "s1_boot_rig", s1_boot_rig },
	{ "s1_boot_preserve_wrong_id", s1_boot_preserve_wrong_id },
	{ "s1_boot_preserve_dropped", s1_boot_preserve_dropped },
};

static void boot_stage_1(int fd)
{
	luo_fd = fd;
	create_state_file(luo_fd, BOOT_STATE_NAME, STATE_MEMFD_TOKEN, 2);
	run_cases(boot_s1_cases, ARRAY_SIZE(boot_s1_cases));
	close(luo_fd);
	daemonize_and_wait();
}

/* A's handover names its address but another device ID. */
static int s2_boot_wrong_id_enodev(int arg)
{
	int ok = bind_vfio_pci(edu_bdf[DEV_A]) && cdev_busy(edu_bdf[DEV_A]);
	int fd;

	boot_sess = luo_retrieve_session(luo_fd, BOOT_SESSION);
	if (boot_sess < 0)
		return fail("RETRIEVE_SESSION %s: %s", BOOT_SESSION, en(boot_sess));
	fd = luo_session_retrieve_fd(boot_sess, TOKEN);
	if (fd >= 0) {
		close(fd);
		return fail("RETRIEVE_FD of A with another device ID succeeded, want ENODEV");
	}
	if (fd != -ENODEV)
		return fail("RETRIEVE_FD of A with another device ID: %s, want ENODEV", en(fd));
	return ok;
}

static int s2_boot_wrong_id_sticky(int arg)
{
	int fd;

	if (boot_sess < 0)
		return fail("%s was not retrieved", BOOT_SESSION);
	fd = luo_session_retrieve_fd(boot_sess, TOKEN);
	if (fd >= 0)
		close(fd);
	if (fd != -ENODEV)
		return fail("a second RETRIEVE_FD: %s, want ENODEV", en(fd < 0 ? fd : 0));
	return 1;
}

static int s2_boot_wrong_id_finish_releases(int arg)
{
	int r, fd;

	if (boot_sess < 0)
		return fail("%s was not retrieved", BOOT_SESSION);
	r = luo_session_finish(boot_sess);
	if (r)
		return fail("FINISH of %s: %s", BOOT_SESSION, en(r));
	fd = cdev_open(edu_bdf[DEV_A]);
	if (fd < 0)
		return fail("opening A's cdev after FINISH: %s", en(fd));
	close(fd);
	return 1;
}

/*
 * Load /kernel and /initrd.img (what init loads) for the next boot, with
 * init's command line for it: this one's kernel parameters plus @extra, and
 * after "--" init's words with stage=@next_stage.
 */
static int load_next_kernel(int next_stage, const char *extra)
{
	char cmd[4096], next[4200], *p, *save, *init = NULL;
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC), kfd, ifd;
	ssize_t n = fd >= 0 ? read(fd, cmd, sizeof(cmd) - 1) : -1;
	long r;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return fail("reading /proc/cmdline: %s", en(errno));
	cmd[n] = 0;
	next[0] = 0;
	for (p = strtok_r(cmd, " \n", &save); p; p = strtok_r(NULL, " \n", &save)) {
		if (!strcmp(p, "--")) {
			init = save;
			break;
		}
		snprintf(next + strlen(next), sizeof(next) - strlen(next), "%s ", p);
	}
	if (!init)
		return fail("no \"--\" on the command line: no test words for init");
	snprintf(next + strlen(next), sizeof(next) - strlen(next), "%s --", extra);
	for (p = strtok_r(init, " \n", &save); p; p = strtok_r(NULL, " \n", &save))
		if (strncmp(p, "stage=", 6))
			snprintf(next + strlen(next), sizeof(next) - strlen(next), " %s", p);
	snprintf(next + strlen(next), sizeof(next) - strlen(next), " stage=%d", next_stage);
	kfd = open("/kernel", O_RDONLY | O_CLOEXEC);
	ifd = open("/initrd.img", O_RDONLY | O_CLOEXEC);
	if (kfd < 0 || ifd < 0)
		r = -1;
	else
		r = syscall(SYS_kexec_file_load, kfd, ifd, strlen(next) + 1, next, 0UL);
	if (r)
		fail("kexec_file_load with \"%s\": %s", extra, en(errno));
	if (kfd >= 0)
		close(kfd);
	if (ifd >= 0)
		close(ifd);
	return !r;
}

static int s2_boot_preserve_for_luo_off(int arg)
{
	struct edu *b = &dev[DEV_B];
	int sess;

	if (!bind_vfio_pci(b->bdf))
		return 0;
	if (iommufd < 0)
		iommufd = iommufd_open();
	if (iommufd < 0 || (!ioas && !ioas_alloc(iommufd, &ioas)))
		return 0;
	if (!edu_open_bind(b, iommufd, ioas))
		return 0;
	sess = luo_create_session(luo_fd, OFF_SESSION);
	if (sess < 0)
		return fail("CREATE_SESSION %s: %s", OFF_SESSION, en(sess));
	/* The child of daemonize_and_wait() keeps the session and B open. */
	return preserve(sess, b->fd, TOKEN, "B") && load_next_kernel(3, "liveupdate=off");
}

/*
 * LUO dropped C's session at boot, and finished its file at the first open
 * (before stage 2 ran): the handler released C, which opens.
 */
static int s2_boot_dropped_released(int arg)
{
	int s = luo_retrieve_session(luo_fd, DROP_SESSION), fd;

	if (s >= 0) {
		close(s);
		return fail("RETRIEVE_SESSION %s succeeded, want ENOENT (dropped)", DROP_SESSION);
	}
	if (s != -ENOENT)
		return fail("RETRIEVE_SESSION %s: %s, want ENOENT", DROP_SESSION, en(s));
	if (!bind_vfio_pci(edu_bdf[DEV_C]))
		return 0;
	fd = cdev_open(edu_bdf[DEV_C]);
	if (fd < 0)
		return fail("opening C's cdev, whose session was dropped: %s", en(fd));
	close(fd);
	return 1;
}

static const struct vcase boot_s2_cases[] = {
	{ "s2_boot_dropped_released", s2_boot_dropped_released },
	{ "s2_boot_wrong_id_enodev", s2_boot_wrong_id_enodev },
	{ "s2_boot_wrong_id_sticky", s2_boot_wrong_id_sticky },
	{ "s2_boot_wrong_id_finish_releases", s2_boot_wrong_id_finish_releases },
	{ "s2_boot_preserve_for_luo_off", s2_boot_preserve_for_luo_off },
};

static void boot_stage_2(int fd, int state_fd)
{
	luo_fd = fd;
	run_cases(boot_s2_cases, ARRAY_SIZE(boot_s2_cases));
	luo_session_finish(state_fd);
	close(luo_fd);
	daemonize_and_wait();
}

/* The boot after the kexec into a kernel with liveupdate=off. */
static int s3_boot_luo_off(int arg)
{
	int fd;

	if (!cmdline_has("liveupdate=off"))
		return fail("no liveupdate=off on the command line");
	fd = open("/dev/liveupdate", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return fail("/dev/liveupdate opens: live update is on");
	}
	if (errno != ENOENT)
		return fail("open /dev/liveupdate: %s, want ENOENT", en(errno));
	return 1;
}

/* B is in the previous kernel's list, but live update is off: no driver_override. */
static int s3_boot_luo_off_not_overridden(int arg)
{
	return check_binding(edu_bdf[DEV_B], "", "");
}

/* B is in the previous kernel's list, but no handler registered to finish it. */
static int s3_boot_luo_off_not_held(int arg)
{
	int fd;

	if (!bind_vfio_pci(edu_bdf[DEV_B]))
		return 0;
	fd = cdev_open(edu_bdf[DEV_B]);
	if (fd < 0)
		return fail("opening B's cdev with live update off: %s, want success", en(fd));
	close(fd);
	return 1;
}

static const struct vcase boot_s3_cases[] = {
	{ "s3_boot_luo_off", s3_boot_luo_off },
	{ "s3_boot_luo_off_not_overridden", s3_boot_luo_off_not_overridden },
	{ "s3_boot_luo_off_not_held", s3_boot_luo_off_not_held },
};

static void boot_stage_3(void)
{
	run_cases(boot_s3_cases, ARRAY_SIZE(boot_s3_cases));
	ktap_exit();
}

/* --boot: the suite vfio-boot (three boots). */
static int opt_boot;

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "boot", no_argument, &opt_boot, 1 },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, NULL);

	if (a.list && opt_boot) {
		list_cases(boot_s1_cases, ARRAY_SIZE(boot_s1_cases));
		list_cases(boot_s2_cases, ARRAY_SIZE(boot_s2_cases));
		list_cases(boot_s3_cases, ARRAY_SIZE(boot_s3_cases));
		return 0;
	}
	/* No /dev/liveupdate in the third boot: luo_test() would skip. */
	if (opt_boot && a.stage == 3)
		boot_stage_3();
	if (a.list) {
		list_cases(s1_cases, ARRAY_SIZE(s1_cases));
		list_cases(s2_cases, ARRAY_SIZE(s2_cases));
		return 0;
	}
	if (opt_boot)
		return ktap_luo_test(argv[0], a, BOOT_STATE_NAME, boot_stage_1, boot_stage_2);
	return ktap_luo_test(argv[0], a, STATE_SESSION_NAME, stage_1, stage_2);
}
