// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
/*
 * Tests of libluodclient: against a real luod (`luod --fake-device` on a
 * private socket, started and always killed here), and the reply decoder
 * against canned and mutated replies on a socketpair.
 *
 *   luod-client-test LUOD_BINARY
 *
 * Prints `ok N name` / `not ok N name # reason` and exits non-zero if a
 * case failed.
 */
#include "luod-client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;
static char why[4096];
static char dir[] = "/tmp/luod-c-test.XXXXXX";
static char sock_path[256];
static pid_t luod_pid = -1;

/* A case fails with a reason: return false from it after fmt. */
static bool no(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool no(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return false;
}

/* Put what in front of the reason of a failed check. */
static bool in(const char *what)
{
	char inner[sizeof(why)];

	snprintf(inner, sizeof(inner), "%s", why);
	return no("%s: %s", what, inner);
}

static void report(const char *name, bool ok)
{
	int n = passed + failed + 1;

	if (ok) {
		passed++;
		printf("ok %d %s\n", n, name);
	} else {
		failed++;
		printf("not ok %d %s # %s\n", n, name, why);
	}
	fflush(stdout);
}

#define CASE(name, expr)                   \
	do {                               \
		why[0] = '\0';             \
		report(name, (expr));      \
	} while (0)

/* The call failed with errno want and a message. */
static bool refused(struct luod *l, int ret, int want)
{
	if (ret != -want)
		return no("returned %d (%s), expected -%d (%s); luod said: %s", ret,
			  ret < 0 ? strerror(-ret) : "success", want, strerror(want), luod_last_error(l));
	if (!luod_last_error(l)[0])
		return no("errno %d without a message", want);
	return true;
}

/* The call failed (any errno) with a message. */
static bool refused_any(struct luod *l, int ret)
{
	if (ret >= 0)
		return no("succeeded");
	if (!luod_last_error(l)[0])
		return no("errno %d without a message", -ret);
	return true;
}

static bool succeeded(struct luod *l, int ret, const char *what)
{
	if (ret != 0)
		return no("%s: %s (%s)", what, strerror(-ret), luod_last_error(l));
	return true;
}

/* ------------------------------------------------------------------------ */
/* luod */

static void kill_luod(void)
{
	if (luod_pid > 0) {
		kill(luod_pid, SIGKILL);
		waitpid(luod_pid, NULL, 0);
		luod_pid = -1;
	}
}

static void on_signal(int sig)
{
	kill_luod();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void cleanup(void)
{
	char cmd[512];

	kill_luod();
	if (dir[sizeof(dir) - 2] != 'X') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "# could not remove %s\n", dir);
	}
}

static void show_log(void)
{
	char path[512], line[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/luod.log", dir);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		printf("# luod: %s", line);
	fclose(f);
}

static bool start_luod(const char *luod, struct luod **out)
{
	char policy[512], state[512], logp[512];
	struct timespec pause = { 0, 50 * 1000 * 1000 };
	FILE *f;

	snprintf(sock_path, sizeof(sock_path), "%s/sock", dir);
	snprintf(policy, sizeof(policy), "%s/policy.toml", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(logp, sizeof(logp), "%s/luod.log", dir);
	f = fopen(policy, "w");
	if (!f)
		return no("%s: %s", policy, strerror(errno));
	fprintf(f, "ungranted = \"allow\"\n");
	fclose(f);

	luod_pid = fork();
	if (luod_pid < 0)
		return no("fork: %s", strerror(errno));
	if (luod_pid == 0) {
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		/* Dies with this test, whatever happens to it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		unsetenv("NOTIFY_SOCKET");
		unsetenv("LISTEN_FDS");
		unsetenv("LISTEN_PID");
		execl(luod, luod, "--fake-device", "--socket", sock_path, "--state-dir", state, "--policy",
		      policy, "--no-holder", (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", luod, strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < 200; i++) {
		int status;

		if (luod_connect(sock_path, out) == 0)
			return true;
		if (waitpid(luod_pid, &status, WNOHANG) == luod_pid) {
			luod_pid = -1;
			return no("luod exited (status %#x) before it listened", status);
		}
		nanosleep(&pause, NULL);
	}
	return no("luod did not listen on %s within 10 s", sock_path);
}

static int memfd_with(const char *data)
{
	int fd = memfd_create("luod-c-test", MFD_CLOEXEC);

	if (fd >= 0 && write(fd, data, strlen(data)) != (ssize_t)strlen(data)) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool t_status(struct luod *l)
{
	struct luod_status st;

	if (!succeeded(l, luod_status(l, &st), "status"))
		return false;
	if (st.version != LUOD_PROTOCOL_VERSION)
		return no("version %u", st.version);
	if (!st.device_ok)
		return no("device not ok: %s", st.device_error);
	if (st.uid != getuid())
		return no("luod saw uid %u, this is uid %u", st.uid, getuid());
	if (st.keeper != LUOD_KEEPER_NONE)
		return no("keeper %d with --no-holder outside systemd", st.keeper);
	if (st.outgoing.sessions != 0 || st.subscribers != 0)
		return no("%u sessions, %u subscribers at the start", st.outgoing.sessions, st.subscribers);
	return true;
}

static bool t_create_preserve_close(struct luod *l)
{
	struct luod_status st;
	int fd = memfd_with("guest memory");
	bool ok = false;

	if (fd < 0)
		return no("memfd: %s", strerror(errno));
	if (!succeeded(l, luod_create(l, "c-test"), "create"))
		goto out;
	if (!refused(l, luod_create(l, "c-test"), EEXIST))
		goto out;
	if (!succeeded(l, luod_preserve(l, "c-test", 1, fd), "preserve"))
		goto out;
	if (!succeeded(l, luod_status(l, &st), "status"))
		goto out;
	if (st.outgoing.sessions != 1 || st.outgoing.files != 1 || st.outgoing.bytes != strlen("guest memory")) {
		no("status after preserve: %u sessions, %u files, %llu bytes", st.outgoing.sessions,
		   st.outgoing.files, (unsigned long long)st.outgoing.bytes);
		goto out;
	}
	if (!succeeded(l, luod_close_session(l, "c-test"), "close"))
		goto out;
	if (!refused(l, luod_close_session(l, "c-test"), ENOENT))
		goto out;
	if (!succeeded(l, luod_status(l, &st), "status"))
		goto out;
	if (st.outgoing.sessions != 0)
		no("%u sessions after close", st.outgoing.sessions);
	else
		ok = true;
out:
	close(fd);
	return ok;
}

static bool t_bad_names(struct luod *l)
{
	char long_name[LUOD_MAX_NAME + 2];

	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	if (!refused(l, luod_create(l, ""), EINVAL))
		return in("empty name");
	if (!refused_any(l, luod_create(l, long_name)))
		return in("64-byte name");
	if (!refused(l, luod_create(l, "luod.mine"), EPERM))
		return in("luod.mine");
	return true;
}

static bool t_preserve_errors(struct luod *l)
{
	int fd = memfd_with("x");
	bool ok;

	if (fd < 0)
		return no("memfd: %s", strerror(errno));
	ok = refused(l, luod_preserve(l, "c-test-none", 1, fd), ENOENT);
	close(fd);
	if (!ok)
		return false;
	if (luod_preserve(l, "c-test-none", 1, -1) != -EBADF)
		return no("preserve of fd -1 was not refused locally with EBADF");
	return true;
}

static bool t_retrieve_errors(struct luod *l)
{
	int fd = 12345;

	if (!refused_any(l, luod_retrieve_session(l, "c-test-none")))
		return in("retrieve_session");
	if (!refused_any(l, luod_retrieve_fd(l, "c-test-none", 1, &fd)))
		return in("retrieve_fd");
	if (fd != -1)
		return no("retrieve_fd left *fd = %d", fd);
	if (!refused_any(l, luod_finish(l, "c-test-none")))
		return in("finish");
	return true;
}

static bool t_kexec_refused(struct luod *l)
{
	int k = memfd_with("not a kernel");
	bool ok = false;

	if (k < 0)
		return no("memfd: %s", strerror(errno));
	/* Unknown flag bits: the request does not even decode. */
	if (!refused(l, luod_kexec_load(l, k, -1, "liveupdate=on", 0x80, NULL), EINVAL)) {
		in("flag 0x80");
		goto out;
	}
	/* No liveupdate=on, and not a kernel: refused whoever asks. */
	if (!refused_any(l, luod_kexec_load(l, k, -1, "console=ttyS0", 0, NULL))) {
		in("no liveupdate=on");
		goto out;
	}
	ok = true;
out:
	close(k);
	return ok;
}

static bool t_still_usable(struct luod *l)
{
	struct luod_status st;

	return succeeded(l, luod_status(l, &st), "status after the errors");
}

/* ------------------------------------------------------------------------ */
/* The decoder, on a socketpair: replies are queued before each call. */

static size_t status_reply(uint8_t *b)
{
	static const uint8_t msg[] = {
		'L', 'U', 'O', 'D', 2, 0, 1, 0, /* header: version 2, op 1 */
		0, 0, 0, 0,                     /* errno 0 */
		2, 0,                           /* version */
		1,                              /* device ok */
		0, 0,                           /* device error "" */
		1,                              /* handed over */
		3, 0, 0, 0, 0, 0, 0, 0,         /* live update number */
		1, 0, 0, 0, 2, 0, 0, 0,         /* sessions, files */
		9, 0, 0, 0, 0, 0, 0, 0,         /* bytes */
		0, 0, 0, 0,                     /* dropped */
		4, 0, 0, 0, 5, 0, 0, 0,         /* incoming, retrieved */
		2,                              /* keeper: fd store */
		1,                              /* kexec loaded */
		0xe9, 3, 0, 0,                  /* uid 1001 */
		6, 0, 0, 0,                     /* subscribers */
	};

	memcpy(b, msg, sizeof(msg));
	return sizeof(msg);
}

/* Drop the requests the client sent before. */
static void drain(int peer)
{
	char buf[8192];

	while (recv(peer, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/* Queue the reply b (n > 0 bytes: an empty packet is end of file), with fd
 * attached if fd >= 0. */
static bool queue_fd(int peer, const uint8_t *b, size_t n, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)b, .iov_len = n };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	drain(peer);
	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = sizeof(ctl.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	return sendmsg(peer, &msg, 0) == (ssize_t)n;
}

static bool queue(int peer, const uint8_t *b, size_t n)
{
	return queue_fd(peer, b, n, -1);
}

static int open_fds(void)
{
	char path[64];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n += access(path, F_OK) == 0;
	}
	return n;
}

static bool t_decoder(void)
{
	uint8_t b[256], m[256];
	struct luod_status st;
	struct luod *l;
	int sv[2], ret;
	size_t n;
	uint32_t x = 0x12345678;
	bool ok = false;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return no("socketpair: %s", strerror(errno));
	if (luod_from_fd(sv[0], &l)) {
		close(sv[0]);
		close(sv[1]);
		return no("luod_from_fd failed");
	}
	n = status_reply(b);
	queue(sv[1], b, n);
	if (!succeeded(l, luod_status(l, &st), "canned status"))
		goto out;
	if (st.uid != 1001 || st.keeper != LUOD_KEEPER_FDSTORE || !st.kexec_loaded || st.subscribers != 6 ||
	    st.live_update_number != 3 || st.handed_over != 1 || st.outgoing.bytes != 9 || st.retrieved != 5) {
		no("canned status decoded wrong");
		goto out;
	}
	/* Every truncation and a trailing byte: -EPROTO, and the connection lives on. */
	for (size_t cut = 1; cut <= n; cut++) {
		size_t len = cut < n ? cut : n + 1;

		memcpy(m, b, n);
		m[n] = 0;
		queue(sv[1], m, len);
		ret = luod_status(l, &st);
		if (ret != -EPROTO) {
			no("status reply of %zu bytes (of %zu): %d (%s)", len, n, ret, luod_last_error(l));
			goto out;
		}
	}
	/* Reply to another op, and of another version. */
	memcpy(m, b, n);
	m[6] = 3;
	queue(sv[1], m, n);
	if (luod_status(l, &st) != -EPROTO) {
		no("reply to another op accepted");
		goto out;
	}
	m[6] = 1;
	m[4] = 1;
	queue(sv[1], m, n);
	if (luod_status(l, &st) != -EPROTO) {
		no("reply of version 1 accepted");
		goto out;
	}
	/* An error reply of version 1 (from an old luod) is read. */
	{
		static const uint8_t v1[] = { 'L', 'U', 'O', 'D', 1, 0, 0, 0, 71, 0, 0, 0, 3, 0, 'o', 'l', 'd' };

		queue(sv[1], v1, sizeof(v1));
		ret = luod_status(l, &st);
		if (ret != -EPROTO || strcmp(luod_last_error(l), "old") != 0) {
			no("v1 error reply: %d %s", ret, luod_last_error(l));
			goto out;
		}
	}
	/* Random mutations: any result but a crash (run it under ASan). */
	for (int i = 0; i < 20000; i++) {
		memcpy(m, b, n);
		for (int k = 0; k < 1 + (int)(x % 3); k++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			m[x % n] = (uint8_t)(x >> 8);
		}
		queue(sv[1], m, (x >> 16) % 4 ? n : 1 + x % n);
		ret = luod_status(l, &st);
		if (ret == -ENOTCONN || ret == -ETIMEDOUT) {
			no("mutation %d: %d (%s)", i, ret, luod_last_error(l));
			goto out;
		}
	}
	/* Replies with an fd they should not have: the fd is closed. */
	{
		int before = open_fds(), fd = memfd_with("x");

		queue_fd(sv[1], b, n, fd);
		ret = luod_status(l, &st);
		if (ret == 0) {
			m[0] = 'X';
			queue_fd(sv[1], m, n, fd);
			ret = luod_status(l, &st) == -EPROTO ? 0 : -1;
		}
		close(fd);
		if (ret != 0 || open_fds() != before) {
			no("status with an fd attached: %d (%s), %d fds open, %d before", ret, luod_last_error(l),
			   open_fds(), before);
			goto out;
		}
	}
	/* A timed-out call makes the connection unusable. */
	luod_set_timeout(l, 50);
	drain(sv[1]);
	ret = luod_status(l, &st);
	if (ret != -ETIMEDOUT) {
		no("no reply: %d (%s)", ret, luod_last_error(l));
		goto out;
	}
	send(sv[1], b, n, 0); /* the late reply */
	ret = luod_status(l, &st);
	if (ret != -ENOTCONN || !strstr(luod_last_error(l), "timed out")) {
		no("after a timeout: %d (%s)", ret, luod_last_error(l));
		goto out;
	}
	ok = true;
out:
	luod_close(l);
	close(sv[1]);
	return ok;
}

int main(int argc, char **argv)
{
	struct luod *l = NULL;
	bool up;

	if (argc != 2) {
		fprintf(stderr, "usage: %s LUOD_BINARY\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("KTAP version 1\n");
	CASE("decoder", t_decoder());

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);

	why[0] = '\0';
	up = start_luod(argv[1], &l);
	report("luod_up", up);
	if (up) {
		CASE("status", t_status(l));
		CASE("create_preserve_close", t_create_preserve_close(l));
		CASE("bad_names", t_bad_names(l));
		CASE("preserve_errors", t_preserve_errors(l));
		CASE("retrieve_errors", t_retrieve_errors(l));
		CASE("kexec_refused", t_kexec_refused(l));
		CASE("still_usable", t_still_usable(l));
		luod_close(l);
	}
	if (failed)
		show_log();
	kill_luod();
	printf("1..%d\n# %d passed, %d failed\n", passed + failed, passed, failed);
	return failed ? 1 : 0;
}
