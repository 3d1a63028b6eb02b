// SPDX-License-Identifier: GPL-2.0-only
/*
 * Edge cases of the LUO userspace ABI (/dev/liveupdate and session fds) that
 * upstream's liveupdate.c does not cover: the "argsz" framing (size too small,
 * larger with a zero or non-zero tail), unknown and mis-encoded commands, bad
 * pointers, the order in which these checks run, the token rules, the session
 * kind checks, and replies that cannot be written back.
 *
 * Everything runs in a single boot. All sessions here are outgoing (created in
 * this kernel), so RETRIEVE_FD and FINISH can only be checked for their
 * rejection.
 *
 * The expected errnos are those of the upstream C LUO: luo_ioctl() in
 * kernel/liveupdate/luo_core.c, luo_session_ioctl() in luo_session.c and
 * luo_preserve_file() in luo_file.c. The dispatch order of both ioctl
 * handlers is:
 *   1. unknown _IOC_NR                          -> EINVAL
 *   2. get_user() of the leading size field     -> EFAULT
 *   3. same nr but another encoding             -> ENOTTY (-ENOIOCTLCMD)
 *   4. (session fd) wrong session kind          -> EINVAL
 *   5. size below the struct size               -> EINVAL
 *   6. copy_struct_from_user(): non-zero tail   -> E2BIG, fault -> EFAULT
 *   7. the command itself
 *
 * A missing /dev/liveupdate is a failure, not a skip.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <libliveupdate.h>
#include <linux/liveupdate.h>

#include "../kselftest.h"
#include "../kselftest_harness.h"

#define NAME_LEN	LIVEUPDATE_SESSION_NAME_LENGTH
#define LUO_TYPE	LIVEUPDATE_IOCTL_TYPE
#define OTHER_TYPE	(LIVEUPDATE_IOCTL_TYPE + 1)

/* An address in the kernel half: no user access can reach it. */
#define KERNEL_PTR	((void *)0xffffffff81000000UL)

/* Large enough for every command struct plus a tail of up to one page. */
#define BIG_LEN		4096

/* ioctl() returning its result, or -errno on failure. */
static int xioctl(int fd, unsigned long cmd, void *arg)
{
	int ret = ioctl(fd, cmd, arg);

	return ret < 0 ? -errno : ret;
}

static int create_session(int dev, const char *name)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
	int ret;

	snprintf((char *)arg.name, sizeof(arg.name), "%s", name);
	ret = xioctl(dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &arg);
	return ret < 0 ? ret : arg.fd;
}

static int create_session_raw(int dev, const __u8 name[NAME_LEN])
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
	int ret;

	memcpy(arg.name, name, NAME_LEN);
	ret = xioctl(dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &arg);
	return ret < 0 ? ret : arg.fd;
}

static int retrieve_session_raw(int dev, const __u8 name[NAME_LEN])
{
	struct liveupdate_ioctl_retrieve_session arg = { .size = sizeof(arg), .fd = -7 };
	int ret;

	memcpy(arg.name, name, NAME_LEN);
	ret = xioctl(dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &arg);
	return ret < 0 ? ret : arg.fd;
}

static int retrieve_session(int dev, const char *name)
{
	__u8 buf[NAME_LEN] = {};

	snprintf((char *)buf, sizeof(buf), "%s", name);
	return retrieve_session_raw(dev, buf);
}

static int preserve_fd(int sfd, int fd, __u64 token)
{
	struct liveupdate_session_preserve_fd arg = {
		.size = sizeof(arg),
		.fd = fd,
		.token = token,
	};

	return xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &arg);
}

static int get_name(int sfd, __u8 name[NAME_LEN])
{
	struct liveupdate_session_get_name arg = { .size = sizeof(arg) };
	int ret;

	ret = xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, &arg);
	if (!ret)
		memcpy(name, arg.name, NAME_LEN);
	return ret;
}

static int new_memfd(void)
{
	int fd = memfd_create("luo_rs_uapi", 0);

	if (fd >= 0 && ftruncate(fd, 4096)) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool all_zero(const unsigned char *p, size_t len)
{
	while (len--)
		if (*p++)
			return false;
	return true;
}

/* The fd number the next open() would get. */
static int lowest_free_fd(void)
{
	int fd = open("/", O_PATH | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

/*
 * Map two pages, the second one PROT_NONE, and return a pointer @len bytes
 * before the end of the first one: @len zeroed bytes are accessible and the
 * next byte faults.
 */
static void *before_guard(size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	char *p;

	p = mmap(NULL, 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (mprotect(p + pg, pg, PROT_NONE))
		return NULL;
	return p + pg - len;
}

/* A copy of @len bytes of @src in a page that is then made read-only. */
static void *readonly_copy(const void *src, size_t len)
{
	long pg = sysconf(_SC_PAGESIZE);
	void *p;

	p = mmap(NULL, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memcpy(p, src, len);
	if (mprotect(p, pg, PROT_READ))
		return NULL;
	return p;
}

FIXTURE(luo_uapi) {
	int dev;
};

FIXTURE_SETUP(luo_uapi)
{
	self->dev = open(LUO_DEVICE, O_RDWR);
	ASSERT_GE(self->dev, 0) TH_LOG("open %s: %s", LUO_DEVICE, strerror(errno));
}

FIXTURE_TEARDOWN(luo_uapi)
{
	if (self->dev >= 0)
		close(self->dev);
}

/* CREATE_SESSION with size < 72 -> EINVAL, nothing written back, nothing created. */
TEST_F(luo_uapi, create_size_too_small)
{
	static const __u32 sizes[] = { 0, 1, 4, 8, 71 };
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct liveupdate_ioctl_create_session arg = { .size = sizes[i], .fd = -7 };

		strcpy((char *)arg.name, "uapi-small");
		EXPECT_EQ(-EINVAL, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &arg))
			TH_LOG("size %u", sizes[i]);
		EXPECT_EQ(-7, arg.fd);
	}
	ASSERT_GE(create_session(self->dev, "uapi-small"), 0);
}

/* RETRIEVE_SESSION with size < 72 -> EINVAL (the size check precedes the lookup). */
TEST_F(luo_uapi, retrieve_session_size_too_small)
{
	struct liveupdate_ioctl_retrieve_session arg = { .size = 71, .fd = -7 };

	strcpy((char *)arg.name, "uapi-nothing");
	ASSERT_EQ(-EINVAL, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &arg));
	ASSERT_EQ(-7, arg.fd);
	arg.size = 0;
	ASSERT_EQ(-EINVAL, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &arg));
	arg.size = sizeof(arg);
	ASSERT_EQ(-ENOENT, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &arg));
}

/* PRESERVE_FD with size < 16 -> EINVAL, and nothing is preserved. */
TEST_F(luo_uapi, preserve_fd_size_too_small)
{
	static const __u32 sizes[] = { 0, 4, 8, 12, 15 };
	int sfd, mfd;
	unsigned int i;

	sfd = create_session(self->dev, "uapi-preserve-small");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct liveupdate_session_preserve_fd arg = {
			.size = sizes[i], .fd = mfd, .token = 0x51,
		};

		EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, &arg))
			TH_LOG("size %u", sizes[i]);
	}
	/* Neither the token nor the memfd were taken. */
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x51));
}

/* GET_NAME with size < 72 -> EINVAL, and the name is not written. */
TEST_F(luo_uapi, get_name_size_too_small)
{
	static const __u32 sizes[] = { 0, 4, 8, 71 };
	int sfd;
	unsigned int i;

	sfd = create_session(self->dev, "uapi-getname-small");
	ASSERT_GE(sfd, 0);
	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct liveupdate_session_get_name arg = { .size = sizes[i] };

		memset(arg.name, 'Z', sizeof(arg.name));
		EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, &arg))
			TH_LOG("size %u", sizes[i]);
		EXPECT_EQ('Z', arg.name[0]);
	}
}

/* CREATE_SESSION with size > 72 and a non-zero byte in the tail -> E2BIG, nothing created. */
TEST_F(luo_uapi, create_size_large_nonzero_tail)
{
	static const __u32 sizes[] = { 73, 80, 128, BIG_LEN };
	__u64 buf[BIG_LEN / 8];
	struct liveupdate_ioctl_create_session *arg = (void *)buf;
	unsigned char *b = (unsigned char *)buf;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		/* A non-zero byte first at the start, then at the end of the tail. */
		memset(buf, 0, sizeof(buf));
		arg->size = sizes[i];
		arg->fd = -7;
		strcpy((char *)arg->name, "uapi-big");
		b[sizeof(*arg)] = 1;
		EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, arg))
			TH_LOG("size %u, first tail byte set", sizes[i]);
		b[sizeof(*arg)] = 0;
		b[sizes[i] - 1] = 0x80;
		EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, arg))
			TH_LOG("size %u, last tail byte set", sizes[i]);
		EXPECT_EQ(-7, arg->fd);
	}
	ASSERT_GE(create_session(self->dev, "uapi-big"), 0);
}

/*
 * CREATE_SESSION with size > 72 and an all-zero tail -> success. The reply is
 * min(size, 72) bytes: the tail stays untouched (zero).
 */
TEST_F(luo_uapi, create_size_large_zero_tail)
{
	static const __u32 sizes[] = { 73, 80, 128, BIG_LEN };
	__u64 buf[BIG_LEN / 8];
	struct liveupdate_ioctl_create_session *arg = (void *)buf;
	unsigned char *b = (unsigned char *)buf;
	__u8 name[NAME_LEN];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(sizes); i++) {
		char want[NAME_LEN];

		snprintf(want, sizeof(want), "uapi-big-%u", sizes[i]);
		memset(buf, 0, sizeof(buf));
		arg->size = sizes[i];
		arg->fd = -7;
		strcpy((char *)arg->name, want);
		ASSERT_EQ(0, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, arg))
			TH_LOG("size %u", sizes[i]);
		ASSERT_GE(arg->fd, 0);
		ASSERT_EQ(sizes[i], arg->size);
		ASSERT_TRUE(all_zero(b + sizeof(*arg), BIG_LEN - sizeof(*arg)));
		ASSERT_EQ(0, get_name(arg->fd, name));
		ASSERT_STREQ(want, (char *)name);
	}
}

/* GET_NAME with size > 72: non-zero tail -> E2BIG, zero tail -> the name, tail untouched. */
TEST_F(luo_uapi, get_name_size_large)
{
	__u64 buf[BIG_LEN / 8];
	struct liveupdate_session_get_name *arg = (void *)buf;
	unsigned char *b = (unsigned char *)buf;
	int sfd;

	sfd = create_session(self->dev, "uapi-getname-big");
	ASSERT_GE(sfd, 0);

	memset(buf, 0, sizeof(buf));
	arg->size = 80;
	b[79] = 1;
	ASSERT_EQ(-E2BIG, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, arg));
	ASSERT_EQ(0, arg->name[0]);

	memset(buf, 0, sizeof(buf));
	arg->size = BIG_LEN;
	b[BIG_LEN - 1] = 1;
	ASSERT_EQ(-E2BIG, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, arg));

	b[BIG_LEN - 1] = 0;
	ASSERT_EQ(0, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, arg));
	ASSERT_STREQ("uapi-getname-big", (char *)arg->name);
	ASSERT_EQ(BIG_LEN, arg->size);
	ASSERT_TRUE(all_zero(b + sizeof(*arg), BIG_LEN - sizeof(*arg)));
}

/*
 * GET_NAME copies the name the way the C LUO's strscpy() does on 64-bit:
 * the name, zeroes to the end of the 8-byte word that holds its NUL (it
 * copies words), and the caller's bytes after that come back unchanged (the
 * reply echoes the input).
 */
TEST_F(luo_uapi, get_name_echoes_tail)
{
	struct liveupdate_session_get_name arg;
	const char *want = "uapi-getname-tail";
	size_t n = strlen(want);
	int sfd, i;

	sfd = create_session(self->dev, want);
	ASSERT_GE(sfd, 0);
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	memset(arg.name, 0xAA, sizeof(arg.name));
	ASSERT_EQ(0, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, &arg));
	ASSERT_STREQ(want, (char *)arg.name);
	for (i = n; i < (int)(n / 8 + 1) * 8; i++)
		ASSERT_EQ(0, arg.name[i]) TH_LOG("byte %d", i);
	for (; i < NAME_LEN; i++)
		ASSERT_EQ(0xAA, arg.name[i]) TH_LOG("byte %d", i);
}

/* PRESERVE_FD with size > 16: non-zero tail -> E2BIG (nothing preserved), zero tail -> 0. */
TEST_F(luo_uapi, preserve_fd_size_large)
{
	__u64 buf[BIG_LEN / 8] = {};
	struct liveupdate_session_preserve_fd *arg = (void *)buf;
	unsigned char *b = (unsigned char *)buf;
	int sfd, mfd;

	sfd = create_session(self->dev, "uapi-preserve-big");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);

	arg->size = 24;
	arg->fd = mfd;
	arg->token = 0x52;
	b[23] = 1;
	ASSERT_EQ(-E2BIG, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, arg));
	b[23] = 0;
	ASSERT_EQ(0, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, arg));
	/* It really is preserved now: the token is taken. */
	ASSERT_EQ(-EEXIST, preserve_fd(sfd, mfd, 0x52));
}

/*
 * Device fd, unknown _IOC_NR (>= 2, whatever the type byte or direction bits)
 * -> EINVAL, not ENOTTY.
 */
TEST_F(luo_uapi, device_unknown_nr)
{
	const unsigned long cmds[] = {
		_IO(LUO_TYPE, 2), _IO(LUO_TYPE, 3),
		_IO(LUO_TYPE, LIVEUPDATE_CMD_SESSION_PRESERVE_FD),
		_IO(LUO_TYPE, LIVEUPDATE_CMD_SESSION_GET_NAME),
		_IO(LUO_TYPE, 0xff), _IO(OTHER_TYPE, 2),
		_IOWR(LUO_TYPE, 2, struct liveupdate_ioctl_create_session),
	};
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
	unsigned int i;

	strcpy((char *)arg.name, "uapi-unknown-nr");
	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		EXPECT_EQ(-EINVAL, xioctl(self->dev, cmds[i], &arg))
			TH_LOG("cmd %#lx", cmds[i]);
	}
	ASSERT_GE(create_session(self->dev, "uapi-unknown-nr"), 0);
}

/* Session fd, _IOC_NR outside 0x40..0x43 (incl. the device commands) -> EINVAL. */
TEST_F(luo_uapi, session_unknown_nr)
{
	const unsigned long cmds[] = {
		_IO(LUO_TYPE, 0x44), _IO(LUO_TYPE, 0x3f),
		_IO(LUO_TYPE, LIVEUPDATE_CMD_CREATE_SESSION),
		_IO(LUO_TYPE, LIVEUPDATE_CMD_RETRIEVE_SESSION),
		_IO(LUO_TYPE, 0xff), _IO(OTHER_TYPE, 0x44),
		_IOWR(LUO_TYPE, 0x44, struct liveupdate_session_get_name),
	};
	struct liveupdate_session_get_name arg = { .size = sizeof(arg) };
	int sfd;
	unsigned int i;

	sfd = create_session(self->dev, "uapi-unknown-nr");
	ASSERT_GE(sfd, 0);
	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		EXPECT_EQ(-EINVAL, xioctl(sfd, cmds[i], &arg))
			TH_LOG("cmd %#lx", cmds[i]);
	}
}

/* Device fd, known nr with another type byte, direction or size -> ENOTTY. */
TEST_F(luo_uapi, device_wrong_encoding)
{
	const unsigned long cmds[] = {
		_IOW(LUO_TYPE, 0, struct liveupdate_ioctl_create_session),
		_IOR(LUO_TYPE, 0, struct liveupdate_ioctl_create_session),
		_IOWR(LUO_TYPE, 0, struct liveupdate_ioctl_create_session),
		_IOC(_IOC_NONE, LUO_TYPE, 0, 8),
		_IO(OTHER_TYPE, 0),
		_IOWR(LUO_TYPE, 1, struct liveupdate_ioctl_retrieve_session),
		_IO(OTHER_TYPE, 1),
	};
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg), .fd = -7 };
	unsigned int i;

	strcpy((char *)arg.name, "uapi-encoding");
	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		EXPECT_EQ(-ENOTTY, xioctl(self->dev, cmds[i], &arg))
			TH_LOG("cmd %#lx", cmds[i]);
	}
	EXPECT_EQ(-7, arg.fd);
	ASSERT_GE(create_session(self->dev, "uapi-encoding"), 0);
}

/* Session fd, known nr with another type byte, direction or size -> ENOTTY. */
TEST_F(luo_uapi, session_wrong_encoding)
{
	struct liveupdate_session_get_name gn = { .size = sizeof(gn) };
	struct liveupdate_session_preserve_fd pf = { .size = sizeof(pf), .token = 0x53 };
	struct liveupdate_session_retrieve_fd rf = { .size = sizeof(rf), .fd = -7 };
	struct liveupdate_session_finish fin = { .size = sizeof(fin) };
	int sfd, mfd;

	sfd = create_session(self->dev, "uapi-encoding");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	pf.fd = mfd;

	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IOW(LUO_TYPE, 0x40, struct liveupdate_session_preserve_fd),
				  &pf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(OTHER_TYPE, 0x40), &pf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IOC(_IOC_NONE, LUO_TYPE, 0x40, 16), &pf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IOWR(LUO_TYPE, 0x41, struct liveupdate_session_retrieve_fd),
				  &rf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IOW(LUO_TYPE, 0x42, struct liveupdate_session_finish),
				  &fin));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IOR(LUO_TYPE, 0x43, struct liveupdate_session_get_name),
				  &gn));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(OTHER_TYPE, 0x43), &gn));
	EXPECT_EQ(0, gn.name[0]);
	EXPECT_EQ(-7, rf.fd);
	/* The mis-encoded PRESERVE_FD did nothing. */
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x53));
}

/* Device fd, argument pointer not readable -> EFAULT, for both commands. */
TEST_F(luo_uapi, device_bad_pointer)
{
	void *ptrs[] = { NULL, (void *)1, before_guard(0), KERNEL_PTR };
	unsigned int i;

	ASSERT_NE(NULL, ptrs[2]);
	for (i = 0; i < ARRAY_SIZE(ptrs); i++) {
		EXPECT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, ptrs[i]))
			TH_LOG("ptr %p", ptrs[i]);
		EXPECT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, ptrs[i]))
			TH_LOG("ptr %p", ptrs[i]);
	}
}

/*
 * Session fd, argument pointer not readable -> EFAULT for all four commands,
 * including RETRIEVE_FD and FINISH, which are the wrong kind for an outgoing
 * session (the size is read before the kind is checked).
 */
TEST_F(luo_uapi, session_bad_pointer)
{
	const unsigned long cmds[] = {
		LIVEUPDATE_SESSION_PRESERVE_FD, LIVEUPDATE_SESSION_RETRIEVE_FD,
		LIVEUPDATE_SESSION_FINISH, LIVEUPDATE_SESSION_GET_NAME,
	};
	void *ptrs[] = { NULL, (void *)1, before_guard(0), KERNEL_PTR };
	unsigned int i, j;
	int sfd;

	ASSERT_NE(NULL, ptrs[2]);
	sfd = create_session(self->dev, "uapi-bad-pointer");
	ASSERT_GE(sfd, 0);
	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		for (j = 0; j < ARRAY_SIZE(ptrs); j++) {
			EXPECT_EQ(-EFAULT, xioctl(sfd, cmds[i], ptrs[j]))
				TH_LOG("cmd %#lx ptr %p", cmds[i], ptrs[j]);
		}
	}
}

/*
 * The size field is readable but the rest of the struct, or the tail that
 * size claims, is not -> EFAULT. A non-zero tail byte found before the fault
 * -> E2BIG (the tail is scanned in order).
 */
TEST_F(luo_uapi, struct_body_or_tail_faults)
{
	struct liveupdate_ioctl_create_session *c;
	struct liveupdate_session_get_name *g;
	struct liveupdate_session_preserve_fd *p;
	int sfd, mfd;

	/* CREATE_SESSION: only the size field mapped. */
	c = before_guard(sizeof(c->size));
	ASSERT_NE(NULL, c);
	c->size = sizeof(*c);
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));

	/* CREATE_SESSION: whole struct mapped, tail not. */
	c = before_guard(sizeof(*c));
	ASSERT_NE(NULL, c);
	c->size = sizeof(*c) + 8;
	strcpy((char *)c->name, "uapi-fault");
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));
	c->size = UINT32_MAX;
	ASSERT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));

	/* Huge size, but a non-zero tail byte comes before the unmapped page. */
	c = before_guard(sizeof(*c) + 8);
	ASSERT_NE(NULL, c);
	c->size = UINT32_MAX;
	strcpy((char *)c->name, "uapi-fault");
	((unsigned char *)c)[sizeof(*c)] = 1;
	ASSERT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));

	/* None of these created the session. */
	sfd = create_session(self->dev, "uapi-fault");
	ASSERT_GE(sfd, 0);

	/* GET_NAME: only the size field mapped. */
	g = before_guard(sizeof(g->size));
	ASSERT_NE(NULL, g);
	g->size = sizeof(*g);
	ASSERT_EQ(-EFAULT, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, g));

	/* PRESERVE_FD: size and fd mapped, token not; nothing gets preserved. */
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	p = before_guard(8);
	ASSERT_NE(NULL, p);
	p->size = sizeof(*p);
	p->fd = mfd;
	ASSERT_EQ(-EFAULT, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, p));
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0));
}

/* PRESERVE_FD of an O_PATH fd -> EBADF (fget() refuses O_PATH), token not taken. */
TEST_F(luo_uapi, preserve_fd_o_path)
{
	char path[64];
	int sfd, mfd, pfd;

	sfd = create_session(self->dev, "uapi-o-path");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);

	pfd = open("/", O_PATH);
	ASSERT_GE(pfd, 0);
	ASSERT_EQ(-EBADF, preserve_fd(sfd, pfd, 0x54));
	close(pfd);

	/* An O_PATH fd of the memfd itself, which would be preservable. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	pfd = open(path, O_PATH);
	ASSERT_GE(pfd, 0) TH_LOG("open %s: %s", path, strerror(errno));
	ASSERT_EQ(-EBADF, preserve_fd(sfd, pfd, 0x54));

	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x54));
}

/* PRESERVE_FD of -1, a closed fd, INT_MAX, INT_MIN -> EBADF, token not taken. */
TEST_F(luo_uapi, preserve_fd_bad_fd)
{
	int sfd, mfd, closed;

	sfd = create_session(self->dev, "uapi-bad-fd");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	closed = dup(mfd);
	ASSERT_GE(closed, 0);
	ASSERT_EQ(0, close(closed));

	ASSERT_EQ(-EBADF, preserve_fd(sfd, -1, 0x55));
	ASSERT_EQ(-EBADF, preserve_fd(sfd, closed, 0x55));
	ASSERT_EQ(-EBADF, preserve_fd(sfd, INT_MAX, 0x55));
	ASSERT_EQ(-EBADF, preserve_fd(sfd, INT_MIN, 0x55));
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x55));
}

/* PRESERVE_FD of fds no handler accepts (session fds, the device, a pipe) -> ENOENT. */
TEST_F(luo_uapi, preserve_fd_unsupported)
{
	int sfd, other, pipefd[2];

	sfd = create_session(self->dev, "uapi-unsupported");
	ASSERT_GE(sfd, 0);
	other = create_session(self->dev, "uapi-unsupported-2");
	ASSERT_GE(other, 0);
	ASSERT_EQ(0, pipe(pipefd));

	ASSERT_EQ(-ENOENT, preserve_fd(sfd, sfd, 1));
	ASSERT_EQ(-ENOENT, preserve_fd(sfd, other, 1));
	ASSERT_EQ(-ENOENT, preserve_fd(sfd, self->dev, 1));
	ASSERT_EQ(-ENOENT, preserve_fd(sfd, pipefd[0], 1));
	/* The failures did not take the token. */
	ASSERT_EQ(-EBADF, preserve_fd(sfd, -1, 1));
}

/*
 * A token already used in the session -> EEXIST, whatever the fd: another
 * memfd, or the very memfd that holds the token (EEXIST, not EBUSY: the token
 * is checked first).
 */
TEST_F(luo_uapi, preserve_duplicate_token)
{
	int sfd, a, b;

	sfd = create_session(self->dev, "uapi-dup-token");
	ASSERT_GE(sfd, 0);
	a = new_memfd();
	ASSERT_GE(a, 0);
	b = new_memfd();
	ASSERT_GE(b, 0);

	ASSERT_EQ(0, preserve_fd(sfd, a, 0x56));
	ASSERT_EQ(-EEXIST, preserve_fd(sfd, b, 0x56));
	ASSERT_EQ(-EEXIST, preserve_fd(sfd, a, 0x56));
	ASSERT_EQ(-EBUSY, preserve_fd(sfd, a, 0x57));
	ASSERT_EQ(0, preserve_fd(sfd, b, 0x57));
}

/* The same token in two different sessions is fine. */
TEST_F(luo_uapi, preserve_same_token_two_sessions)
{
	int s1, s2, a, b;

	s1 = create_session(self->dev, "uapi-token-1");
	ASSERT_GE(s1, 0);
	s2 = create_session(self->dev, "uapi-token-2");
	ASSERT_GE(s2, 0);
	a = new_memfd();
	ASSERT_GE(a, 0);
	b = new_memfd();
	ASSERT_GE(b, 0);

	ASSERT_EQ(0, preserve_fd(s1, a, 0x58));
	ASSERT_EQ(0, preserve_fd(s2, b, 0x58));
}

/* Any u64 is a token (0 and ~0 included), compared on all 64 bits. */
TEST_F(luo_uapi, preserve_token_any_value)
{
	static const __u64 tokens[] = { 0, 1ULL << 32, 1ULL << 63, ~0ULL, 0xffffffffULL };
	int sfd, mfd[ARRAY_SIZE(tokens)], extra;
	unsigned int i;

	sfd = create_session(self->dev, "uapi-token-values");
	ASSERT_GE(sfd, 0);
	for (i = 0; i < ARRAY_SIZE(tokens); i++) {
		mfd[i] = new_memfd();
		ASSERT_GE(mfd[i], 0);
		ASSERT_EQ(0, preserve_fd(sfd, mfd[i], tokens[i]))
			TH_LOG("token %#llx", (unsigned long long)tokens[i]);
	}
	extra = new_memfd();
	ASSERT_GE(extra, 0);
	for (i = 0; i < ARRAY_SIZE(tokens); i++) {
		ASSERT_EQ(-EEXIST, preserve_fd(sfd, extra, tokens[i]))
			TH_LOG("token %#llx", (unsigned long long)tokens[i]);
	}
}

/* RETRIEVE_FD on an outgoing session -> EINVAL, token present or not; fd not written. */
TEST_F(luo_uapi, retrieve_fd_on_outgoing)
{
	struct liveupdate_session_retrieve_fd arg = { .size = sizeof(arg), .fd = -7 };
	int sfd, mfd;

	sfd = create_session(self->dev, "uapi-retrieve-out");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x59));

	arg.token = 0x59;
	ASSERT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &arg));
	ASSERT_EQ(-7, arg.fd);
	arg.token = 0x5a;
	ASSERT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, &arg));
	ASSERT_EQ(-7, arg.fd);
}

/*
 * FINISH on an outgoing session -> EINVAL, also with reserved != 0: the kind
 * check (luo_session_ioctl) runs before the reserved check
 * (luo_session_finish). A non-zero tail does not turn it into E2BIG either.
 * The session keeps working afterwards.
 */
TEST_F(luo_uapi, finish_on_outgoing)
{
	static const __u32 reserved[] = { 0, 1, 0x80000000, UINT32_MAX };
	__u64 buf[4] = {};
	struct liveupdate_session_finish *arg = (void *)buf;
	__u8 name[NAME_LEN];
	int sfd, mfd;
	unsigned int i;

	sfd = create_session(self->dev, "uapi-finish-out");
	ASSERT_GE(sfd, 0);
	for (i = 0; i < ARRAY_SIZE(reserved); i++) {
		arg->size = sizeof(*arg);
		arg->reserved = reserved[i];
		EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_FINISH, arg))
			TH_LOG("reserved %#x", reserved[i]);
		arg->size = sizeof(buf);
		buf[3] = 1;
		EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_FINISH, arg))
			TH_LOG("reserved %#x, non-zero tail", reserved[i]);
		buf[3] = 0;
	}
	ASSERT_EQ(0, get_name(sfd, name));
	ASSERT_STREQ("uapi-finish-out", (char *)name);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x5b));
}

/* GET_NAME with reserved != 0 -> EINVAL, name not written; reserved == 0 -> the name. */
TEST_F(luo_uapi, get_name_reserved)
{
	static const __u32 reserved[] = { 1, 0x80000000, UINT32_MAX };
	struct liveupdate_session_get_name arg;
	int sfd;
	unsigned int i;

	sfd = create_session(self->dev, "uapi-reserved");
	ASSERT_GE(sfd, 0);
	for (i = 0; i < ARRAY_SIZE(reserved); i++) {
		memset(&arg, 0, sizeof(arg));
		arg.size = sizeof(arg);
		arg.reserved = reserved[i];
		memset(arg.name, 'Z', sizeof(arg.name));
		EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, &arg))
			TH_LOG("reserved %#x", reserved[i]);
		EXPECT_EQ('Z', arg.name[0]);
	}
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	ASSERT_EQ(0, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, &arg));
	ASSERT_STREQ("uapi-reserved", (char *)arg.name);
}

/*
 * RETRIEVE_SESSION of a name with no incoming session -> ENOENT: a made-up
 * name, the name of an outgoing session (separate lists), and names that
 * CREATE_SESSION would reject (RETRIEVE_SESSION does not check the name).
 */
TEST_F(luo_uapi, retrieve_session_missing)
{
	__u8 name[NAME_LEN];

	ASSERT_GE(create_session(self->dev, "uapi-outgoing"), 0);
	ASSERT_EQ(-ENOENT, retrieve_session(self->dev, "uapi-no-such-session"));
	ASSERT_EQ(-ENOENT, retrieve_session(self->dev, "uapi-outgoing"));
	ASSERT_EQ(-ENOENT, retrieve_session(self->dev, ""));
	memset(name, 'R', sizeof(name));
	ASSERT_EQ(-ENOENT, retrieve_session_raw(self->dev, name));
}

/* Check order 1 before 2: unknown nr AND bad pointer -> EINVAL. */
TEST_F(luo_uapi, order_nr_before_pointer)
{
	int sfd;

	sfd = create_session(self->dev, "uapi-order-nr");
	ASSERT_GE(sfd, 0);
	EXPECT_EQ(-EINVAL, xioctl(self->dev, _IO(LUO_TYPE, 2), (void *)1));
	EXPECT_EQ(-EINVAL, xioctl(self->dev, _IO(LUO_TYPE, 2), NULL));
	EXPECT_EQ(-EINVAL, xioctl(self->dev, _IO(LUO_TYPE, 0x40), KERNEL_PTR));
	EXPECT_EQ(-EINVAL, xioctl(sfd, _IO(LUO_TYPE, 0x44), (void *)1));
	EXPECT_EQ(-EINVAL, xioctl(sfd, _IO(LUO_TYPE, 0x3f), NULL));
	EXPECT_EQ(-EINVAL, xioctl(sfd, _IO(LUO_TYPE, 0), KERNEL_PTR));
}

/* Check order 2 before 3: known nr, wrong encoding AND bad pointer -> EFAULT. */
TEST_F(luo_uapi, order_pointer_before_encoding)
{
	int sfd;

	sfd = create_session(self->dev, "uapi-order-ptr");
	ASSERT_GE(sfd, 0);
	EXPECT_EQ(-EFAULT, xioctl(self->dev,
				  _IOW(LUO_TYPE, 0, struct liveupdate_ioctl_create_session),
				  (void *)1));
	EXPECT_EQ(-EFAULT, xioctl(self->dev, _IO(OTHER_TYPE, 1), NULL));
	EXPECT_EQ(-EFAULT, xioctl(sfd, _IO(OTHER_TYPE, 0x43), (void *)1));
	/* Also wrong kind for an outgoing session: still the pointer first. */
	EXPECT_EQ(-EFAULT, xioctl(sfd, _IOW(LUO_TYPE, 0x41, struct liveupdate_session_retrieve_fd),
				  KERNEL_PTR));
}

/*
 * Check order 3 before 4, 5 and 6: wrong encoding AND wrong kind / size too
 * small / non-zero tail -> ENOTTY.
 */
TEST_F(luo_uapi, order_encoding_before_kind_size_tail)
{
	__u64 buf[BIG_LEN / 8] = {};
	__u32 *size = (__u32 *)buf;
	int sfd;

	sfd = create_session(self->dev, "uapi-order-enc");
	ASSERT_GE(sfd, 0);

	*size = 0;
	EXPECT_EQ(-ENOTTY, xioctl(self->dev,
				  _IOW(LUO_TYPE, 0, struct liveupdate_ioctl_create_session), buf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(OTHER_TYPE, 0x40), buf));
	/* Wrong kind (RETRIEVE_FD/FINISH on outgoing) and size too small. */
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(OTHER_TYPE, 0x41), buf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IOW(LUO_TYPE, 0x42, struct liveupdate_session_finish),
				  buf));
	/* Non-zero tail. */
	*size = BIG_LEN;
	((unsigned char *)buf)[BIG_LEN - 1] = 1;
	EXPECT_EQ(-ENOTTY, xioctl(self->dev, _IO(OTHER_TYPE, 0), buf));
	EXPECT_EQ(-ENOTTY, xioctl(sfd, _IO(OTHER_TYPE, 0x43), buf));
}

/*
 * Check order 4 before 5 and 6 (session fd): wrong session kind AND size too
 * small, non-zero tail, or unreadable body -> EINVAL (not E2BIG or EFAULT).
 */
TEST_F(luo_uapi, order_kind_before_size_and_copy)
{
	__u64 buf[4] = {};
	struct liveupdate_session_retrieve_fd *rf = (void *)buf;
	struct liveupdate_session_finish *fin;
	int sfd;

	sfd = create_session(self->dev, "uapi-order-kind");
	ASSERT_GE(sfd, 0);

	/* Size too small: both checks say EINVAL. */
	rf->size = 4;
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, rf));
	rf->size = 0;
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_FINISH, rf));

	/* Non-zero tail: EINVAL, not E2BIG. */
	rf->size = sizeof(buf);
	buf[3] = 1;
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, rf));
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_FINISH, rf));

	/* Body unreadable: EINVAL, not EFAULT. */
	fin = before_guard(sizeof(fin->size));
	ASSERT_NE(NULL, fin);
	fin->size = sizeof(*fin);
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_FINISH, fin));
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_RETRIEVE_FD, fin));
}

/* Check order 5 before 6: size too small AND unreadable body -> EINVAL, not EFAULT. */
TEST_F(luo_uapi, order_size_before_copy)
{
	__u32 *size = before_guard(sizeof(*size));
	int sfd;

	ASSERT_NE(NULL, size);
	sfd = create_session(self->dev, "uapi-order-size");
	ASSERT_GE(sfd, 0);

	*size = 71;
	EXPECT_EQ(-EINVAL, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, size));
	EXPECT_EQ(-EINVAL, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, size));
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, size));
	*size = 15;
	EXPECT_EQ(-EINVAL, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, size));
}

/*
 * Check order 6 before 7: a non-zero tail -> E2BIG (and an unreadable tail ->
 * EFAULT) even when the command itself would fail with another errno.
 */
TEST_F(luo_uapi, order_copy_before_command)
{
	__u64 buf[BIG_LEN / 8];
	struct liveupdate_ioctl_create_session *c = (void *)buf;
	struct liveupdate_session_get_name *g = (void *)buf;
	struct liveupdate_session_preserve_fd *p = (void *)buf;
	unsigned char *b = (unsigned char *)buf;
	int sfd, mfd;

	sfd = create_session(self->dev, "uapi-order-copy");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x5c));

	/* CREATE_SESSION: empty name (EINVAL), 64 bytes without NUL (EINVAL), duplicate. */
	memset(buf, 0, sizeof(buf));
	c->size = 80;
	b[79] = 1;
	EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));
	memset(c->name, 'X', sizeof(c->name));
	EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));
	memset(c->name, 0, sizeof(c->name));
	strcpy((char *)c->name, "uapi-order-copy");
	EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));
	/* RETRIEVE_SESSION of a missing name (ENOENT). */
	EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, c));

	/* GET_NAME with reserved != 0 (EINVAL). */
	memset(buf, 0, sizeof(buf));
	g->size = 80;
	g->reserved = 1;
	b[79] = 1;
	EXPECT_EQ(-E2BIG, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, g));

	/* PRESERVE_FD of fd -1 (EBADF), of a used token (EEXIST). */
	memset(buf, 0, sizeof(buf));
	p->size = 24;
	p->fd = -1;
	p->token = 0x5d;
	b[23] = 1;
	EXPECT_EQ(-E2BIG, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, p));
	p->fd = mfd;
	p->token = 0x5c;
	EXPECT_EQ(-E2BIG, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, p));

	/* CREATE_SESSION with an empty name and an unreadable tail -> EFAULT. */
	c = before_guard(sizeof(*c));
	ASSERT_NE(NULL, c);
	c->size = sizeof(*c) + 1;
	EXPECT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, c));
}

/*
 * PRESERVE_FD with a used token AND a bad fd (-1, O_PATH, unsupported, or a
 * memfd preserved in another session) -> EEXIST: the token is checked before
 * fget() and the handler lookup.
 */
TEST_F(luo_uapi, order_token_before_fd)
{
	int sfd, other, a, b, pfd, nfd;

	sfd = create_session(self->dev, "uapi-order-token");
	ASSERT_GE(sfd, 0);
	other = create_session(self->dev, "uapi-order-token-2");
	ASSERT_GE(other, 0);
	a = new_memfd();
	ASSERT_GE(a, 0);
	b = new_memfd();
	ASSERT_GE(b, 0);
	pfd = open("/", O_PATH);
	ASSERT_GE(pfd, 0);
	nfd = open("/dev/null", O_RDWR);
	ASSERT_GE(nfd, 0);

	ASSERT_EQ(0, preserve_fd(sfd, a, 0x5e));
	ASSERT_EQ(0, preserve_fd(other, b, 0x5f));

	EXPECT_EQ(-EEXIST, preserve_fd(sfd, -1, 0x5e));
	EXPECT_EQ(-EEXIST, preserve_fd(sfd, pfd, 0x5e));
	EXPECT_EQ(-EEXIST, preserve_fd(sfd, nfd, 0x5e));
	EXPECT_EQ(-EEXIST, preserve_fd(sfd, b, 0x5e));
	/* With a free token the other errors show. */
	EXPECT_EQ(-EBADF, preserve_fd(sfd, -1, 0x60));
	EXPECT_EQ(-EBADF, preserve_fd(sfd, pfd, 0x60));
	EXPECT_EQ(-ENOENT, preserve_fd(sfd, nfd, 0x60));
	EXPECT_EQ(-EBUSY, preserve_fd(sfd, b, 0x60));
}

/*
 * The new fd is allocated first: with no free fd, CREATE_SESSION and
 * RETRIEVE_SESSION give EMFILE even for an invalid or missing name. The copy
 * checks still come before it (E2BIG). PRESERVE_FD and GET_NAME need no fd.
 */
TEST_F(luo_uapi, order_fd_alloc_first)
{
	struct liveupdate_ioctl_create_session c;
	__u64 buf[12] = {};
	__u8 name[NAME_LEN];
	struct rlimit rl;
	int sfd, mfd, last = -1, fd;

	sfd = create_session(self->dev, "uapi-emfile");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);

	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &rl));
	rl.rlim_cur = 32;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &rl));
	while ((fd = dup(mfd)) >= 0)
		last = fd;
	ASSERT_EQ(EMFILE, errno);
	ASSERT_GE(last, 0);

	memset(&c, 0, sizeof(c));
	c.size = sizeof(c);
	EXPECT_EQ(-EMFILE, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &c));
	strcpy((char *)c.name, "uapi-emfile");
	EXPECT_EQ(-EMFILE, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &c));
	strcpy((char *)c.name, "uapi-emfile-new");
	EXPECT_EQ(-EMFILE, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &c));
	EXPECT_EQ(-EMFILE, xioctl(self->dev, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, &c));

	c.size = sizeof(buf);
	memcpy(buf, &c, sizeof(c));
	buf[11] = 1;
	EXPECT_EQ(-E2BIG, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, buf));

	EXPECT_EQ(0, preserve_fd(sfd, mfd, 0x61));
	EXPECT_EQ(0, get_name(sfd, name));

	ASSERT_EQ(0, close(last));
	ASSERT_EQ(last, create_session(self->dev, "uapi-emfile-new"));
}

/*
 * The name is taken up to its first NUL: "abc\0def" creates "abc", and
 * "abc\0xyz" or "abc" are then duplicates (EEXIST).
 */
TEST_F(luo_uapi, create_name_embedded_nul)
{
	__u8 name[NAME_LEN] = "uapi\0def";
	__u8 got[NAME_LEN];
	int sfd;

	sfd = create_session_raw(self->dev, name);
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, get_name(sfd, got));
	ASSERT_STREQ("uapi", (char *)got);
	memcpy(name, "uapi\0xyz", 9);
	ASSERT_EQ(-EEXIST, create_session_raw(self->dev, name));
	ASSERT_EQ(-EEXIST, create_session(self->dev, "uapi"));
	ASSERT_GE(create_session(self->dev, "uapi2"), 0);
}

/* Any non-NUL byte is allowed in a name (63 of them), and GET_NAME gives them back. */
TEST_F(luo_uapi, create_name_any_bytes)
{
	__u8 low[NAME_LEN] = {}, high[NAME_LEN] = {}, got[NAME_LEN];
	int s1, s2, i;

	for (i = 0; i < NAME_LEN - 1; i++) {
		low[i] = 1 + i;		/* 0x01..0x3f: control chars, ' ', '/', '\n' */
		high[i] = 0xc1 + i;	/* 0xc1..0xff: not UTF-8 */
	}
	s1 = create_session_raw(self->dev, low);
	ASSERT_GE(s1, 0);
	s2 = create_session_raw(self->dev, high);
	ASSERT_GE(s2, 0);
	ASSERT_EQ(0, get_name(s1, got));
	ASSERT_EQ(0, memcmp(low, got, NAME_LEN));
	ASSERT_EQ(0, get_name(s2, got));
	ASSERT_EQ(0, memcmp(high, got, NAME_LEN));
	ASSERT_EQ(-EEXIST, create_session_raw(self->dev, low));
}

/*
 * CREATE_SESSION ignores the input fd, returns a new O_CLOEXEC fd of an O_RDWR
 * "[luo_session] <name>" anon file, and echoes the rest of the struct.
 */
TEST_F(luo_uapi, create_reply)
{
	static const int in_fds[] = { -1, 0, 12345 };
	char link[128], want[128], path[64];
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(in_fds); i++) {
		struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg) };
		__u8 name[NAME_LEN] = {};
		int expect = lowest_free_fd();
		ssize_t n;

		ASSERT_GE(expect, 0);
		snprintf((char *)name, sizeof(name), "uapi-reply-%u", i);
		name[NAME_LEN - 1] = 0x7f;	/* after the NUL: ignored, echoed */
		memcpy(arg.name, name, NAME_LEN);
		arg.fd = in_fds[i];
		ASSERT_EQ(0, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, &arg));
		ASSERT_EQ(expect, arg.fd);
		ASSERT_EQ(sizeof(arg), arg.size);
		ASSERT_EQ(0, memcmp(name, arg.name, NAME_LEN));
		ASSERT_EQ(FD_CLOEXEC, fcntl(arg.fd, F_GETFD) & FD_CLOEXEC);
		ASSERT_EQ(O_RDWR, fcntl(arg.fd, F_GETFL) & O_ACCMODE);

		snprintf(path, sizeof(path), "/proc/self/fd/%d", arg.fd);
		n = readlink(path, link, sizeof(link) - 1);
		ASSERT_GT(n, 0) TH_LOG("readlink %s: %s", path, strerror(errno));
		link[n] = 0;
		snprintf(want, sizeof(want), "anon_inode:[luo_session] uapi-reply-%u", i);
		ASSERT_STREQ(want, link);
	}
}

/*
 * Closing an outgoing session frees its name and unpreserves its files: the
 * name can be created again and the memfd preserved again.
 */
TEST_F(luo_uapi, close_session_releases_name_and_files)
{
	int sfd, mfd;

	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	sfd = create_session(self->dev, "uapi-reuse");
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x62));
	ASSERT_EQ(-EEXIST, create_session(self->dev, "uapi-reuse"));
	ASSERT_EQ(0, close(sfd));

	sfd = create_session(self->dev, "uapi-reuse");
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x62));
}

/*
 * Closing the device fd does not touch the sessions: they keep working, keep
 * their names, and the device can be opened again.
 */
TEST_F(luo_uapi, device_close_keeps_sessions)
{
	__u8 name[NAME_LEN];
	int sfd, a, b;

	a = new_memfd();
	ASSERT_GE(a, 0);
	b = new_memfd();
	ASSERT_GE(b, 0);
	sfd = create_session(self->dev, "uapi-survivor");
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, a, 0x63));
	ASSERT_EQ(0, close(self->dev));
	self->dev = -1;

	ASSERT_EQ(0, get_name(sfd, name));
	ASSERT_STREQ("uapi-survivor", (char *)name);
	ASSERT_EQ(0, preserve_fd(sfd, b, 0x64));
	ASSERT_EQ(-EEXIST, preserve_fd(sfd, b, 0x63));

	self->dev = open(LUO_DEVICE, O_RDWR);
	ASSERT_GE(self->dev, 0);
	ASSERT_EQ(-EEXIST, create_session(self->dev, "uapi-survivor"));
	ASSERT_EQ(-ENOENT, retrieve_session(self->dev, "uapi-survivor"));
}

/*
 * Exclusivity is per open file: a dup of the device fd keeps it busy after
 * the original is closed. Open flags are ignored: an O_RDONLY open works and
 * its fd can create sessions.
 */
TEST_F(luo_uapi, device_exclusive_dup_and_flags)
{
	int d2, fd;

	d2 = dup(self->dev);
	ASSERT_GE(d2, 0);
	ASSERT_EQ(0, close(self->dev));
	self->dev = -1;

	fd = open(LUO_DEVICE, O_RDWR);
	ASSERT_EQ(-1, fd);
	ASSERT_EQ(EBUSY, errno);
	fd = open(LUO_DEVICE, O_RDONLY);
	ASSERT_EQ(-1, fd);
	ASSERT_EQ(EBUSY, errno);
	ASSERT_GE(create_session(d2, "uapi-dup-dev"), 0);
	ASSERT_EQ(0, close(d2));

	self->dev = open(LUO_DEVICE, O_RDONLY);
	ASSERT_GE(self->dev, 0);
	ASSERT_GE(create_session(self->dev, "uapi-rdonly"), 0);
	fd = open(LUO_DEVICE, O_WRONLY);
	ASSERT_EQ(-1, fd);
	ASSERT_EQ(EBUSY, errno);
}

/*
 * CREATE_SESSION whose reply cannot be written (read-only struct) -> EFAULT;
 * the new session is released again and no fd is left behind.
 */
TEST_F(luo_uapi, reply_efault_create)
{
	struct liveupdate_ioctl_create_session arg = { .size = sizeof(arg), .fd = -7 };
	struct liveupdate_ioctl_create_session *ro;
	int before;

	strcpy((char *)arg.name, "uapi-efault");
	ro = readonly_copy(&arg, sizeof(arg));
	ASSERT_NE(NULL, ro);
	before = lowest_free_fd();
	ASSERT_GE(before, 0);

	ASSERT_EQ(-EFAULT, xioctl(self->dev, LIVEUPDATE_IOCTL_CREATE_SESSION, ro));
	ASSERT_EQ(before, lowest_free_fd());
	ASSERT_EQ(-7, ro->fd);
	ASSERT_GE(create_session(self->dev, "uapi-efault"), 0);
}

/* GET_NAME whose reply cannot be written -> EFAULT; the session is unaffected. */
TEST_F(luo_uapi, reply_efault_get_name)
{
	struct liveupdate_session_get_name arg = { .size = sizeof(arg) };
	struct liveupdate_session_get_name *ro;
	__u8 name[NAME_LEN];
	int sfd;

	sfd = create_session(self->dev, "uapi-efault-name");
	ASSERT_GE(sfd, 0);
	ro = readonly_copy(&arg, sizeof(arg));
	ASSERT_NE(NULL, ro);
	ASSERT_EQ(-EFAULT, xioctl(sfd, LIVEUPDATE_SESSION_GET_NAME, ro));
	ASSERT_EQ(0, get_name(sfd, name));
	ASSERT_STREQ("uapi-efault-name", (char *)name);
}

/*
 * PRESERVE_FD whose reply cannot be written -> EFAULT, but the file IS
 * preserved (no rollback): its token is taken and the memfd is busy. Closing
 * the session unpreserves it as usual.
 */
TEST_F(luo_uapi, reply_efault_preserve)
{
	struct liveupdate_session_preserve_fd arg = { .size = sizeof(arg), .token = 0x65 };
	struct liveupdate_session_preserve_fd *ro;
	int sfd, mfd;

	sfd = create_session(self->dev, "uapi-efault-preserve");
	ASSERT_GE(sfd, 0);
	mfd = new_memfd();
	ASSERT_GE(mfd, 0);
	arg.fd = mfd;
	ro = readonly_copy(&arg, sizeof(arg));
	ASSERT_NE(NULL, ro);

	ASSERT_EQ(-EFAULT, xioctl(sfd, LIVEUPDATE_SESSION_PRESERVE_FD, ro));
	ASSERT_EQ(-EEXIST, preserve_fd(sfd, mfd, 0x65));
	ASSERT_EQ(-EBUSY, preserve_fd(sfd, mfd, 0x66));

	ASSERT_EQ(0, close(sfd));
	sfd = create_session(self->dev, "uapi-efault-preserve");
	ASSERT_GE(sfd, 0);
	ASSERT_EQ(0, preserve_fd(sfd, mfd, 0x65));
}

TEST_HARNESS_MAIN
