// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause
/*
 * libluodclient: see luod-client.h and tools/liveupdate/PROTOCOL.md.
 *
 * Every reply is decoded by bounds-checked reads from the received packet:
 * a short, long or malformed reply is -EPROTO, never a read past the data.
 */
#include "luod-client.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAGIC "LUOD"
#define HEADER_LEN 8
#define MAX_REQUEST 4096
#define MAX_REPLY (64 * 1024)
#define RECV_FDS 8
#define ERR_LEN (LUOD_MAX_STRING + 256)

enum op {
	OP_STATUS = 1,
	OP_CREATE = 3,
	OP_PRESERVE = 4,
	OP_CLOSE = 5,
	OP_RETRIEVE_SESSION = 6,
	OP_RETRIEVE_FD = 7,
	OP_FINISH = 8,
	OP_KEXEC_LOAD = 9,
};

struct luod {
	int fd;
	unsigned int timeout_ms;
	/* Why the connection takes no more requests ("" while it does). */
	char broken[ERR_LEN];
	char err[ERR_LEN];
	uint8_t reply[MAX_REPLY];
};

/* ------------------------------------------------------------------------ */
/* Errors */

static int fail(struct luod *l, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct luod *l, int errnum, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(l->err, sizeof(l->err), fmt, ap);
	va_end(ap);
	return -errnum;
}

const char *luod_last_error(struct luod *l)
{
	return l ? l->err : "no connection";
}

int luod_fd(struct luod *l)
{
	return l->fd;
}

/* ------------------------------------------------------------------------ */
/* Requests */

struct wr {
	uint8_t b[MAX_REQUEST];
	size_t len;
	bool overflow;
};

static void put(struct wr *w, const void *p, size_t n)
{
	if (w->overflow || n > sizeof(w->b) - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->b + w->len, p, n);
	w->len += n;
}

static void put_u16(struct wr *w, uint16_t v)
{
	uint8_t b[2] = { v & 0xff, v >> 8 };

	put(w, b, sizeof(b));
}

static void put_u32(struct wr *w, uint32_t v)
{
	uint8_t b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (v >> (8 * i)) & 0xff;
	put(w, b, sizeof(b));
}

static void put_u64(struct wr *w, uint64_t v)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (v >> (8 * i)) & 0xff;
	put(w, b, sizeof(b));
}

/* A name or string: u16 length, then the bytes. */
static void put_str(struct wr *w, const char *s)
{
	size_t n = strlen(s);

	if (n > UINT16_MAX) {
		w->overflow = true;
		return;
	}
	put_u16(w, (uint16_t)n);
	put(w, s, n);
}

static void header(struct wr *w, enum op op)
{
	w->len = 0;
	w->overflow = false;
	put(w, MAGIC, 4);
	put_u16(w, LUOD_PROTOCOL_VERSION);
	put_u16(w, (uint16_t)op);
}

/* ------------------------------------------------------------------------ */
/* Replies: bounds-checked reads. */

struct rd {
	const uint8_t *p;
	size_t left;
	bool bad;
};

static const uint8_t *take(struct rd *r, size_t n)
{
	const uint8_t *p;

	if (r->bad || n > r->left) {
		r->bad = true;
		return NULL;
	}
	p = r->p;
	r->p += n;
	r->left -= n;
	return p;
}

static uint64_t get_le(struct rd *r, size_t n)
{
	const uint8_t *p = take(r, n);
	uint64_t v = 0;

	if (!p)
		return 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static uint8_t get_u8(struct rd *r)
{
	return (uint8_t)get_le(r, 1);
}

static uint16_t get_u16(struct rd *r)
{
	return (uint16_t)get_le(r, 2);
}

static uint32_t get_u32(struct rd *r)
{
	return (uint32_t)get_le(r, 4);
}

static uint64_t get_u64(struct rd *r)
{
	return get_le(r, 8);
}

static bool get_bool(struct rd *r)
{
	uint8_t v = get_u8(r);

	if (v > 1)
		r->bad = true;
	return v == 1;
}

/* A string into out (size out_len >= 1), NUL-terminated, cut if needed. */
static void get_str(struct rd *r, char *out, size_t out_len)
{
	uint16_t n = get_u16(r);
	const uint8_t *p;
	size_t copy;

	out[0] = '\0';
	if (n > LUOD_MAX_STRING) {
		r->bad = true;
		return;
	}
	p = take(r, n);
	if (!p)
		return;
	copy = n < out_len - 1 ? n : out_len - 1;
	memcpy(out, p, copy);
	out[copy] = '\0';
}

static void get_handover(struct rd *r, struct luod_handover *h)
{
	h->sessions = get_u32(r);
	h->files = get_u32(r);
	h->bytes = get_u64(r);
	h->dropped = get_u32(r);
}

/* ------------------------------------------------------------------------ */
/* Transport */

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int send_packet(struct luod *l, const struct wr *w, const int *fds, size_t nfds)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = (void *)w->b, .iov_len = w->len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds > 2)
		return fail(l, EINVAL, "too many fds for one request");
	if (nfds > 0) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		msg.msg_control = ctl.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	do
		n = sendmsg(l->fd, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			/* Nothing was sent: a packet goes whole or not at all. */
			return fail(l, ETIMEDOUT, "luod did not take the request within %u ms", l->timeout_ms);
		return fail(l, errno, "sending to luod: %s", strerror(errno));
	}
	if ((size_t)n != w->len)
		return fail(l, EIO, "short send of a request");
	return 0;
}

/*
 * Receive one packet into l->reply; its fds into fds[] (up to RECV_FDS,
 * *nfds of them). Returns its length or a negative errno; any failure after
 * the request was sent leaves the connection unusable.
 */
static ssize_t recv_packet(struct luod *l, int *fds, size_t *nfds)
{
	union {
		char buf[CMSG_SPACE(RECV_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = { .iov_base = l->reply, .iov_len = sizeof(l->reply) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;
	ssize_t n;

	*nfds = 0;
	msg.msg_control = ctl.buf;
	msg.msg_controllen = sizeof(ctl.buf);
	do
		n = recvmsg(l->fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int e = errno;

		if (e == EAGAIN || e == EWOULDBLOCK) {
			snprintf(l->broken, sizeof(l->broken),
				 "an earlier call timed out after %u ms waiting for luod's reply, which may still come",
				 l->timeout_ms);
			return fail(l, ETIMEDOUT, "luod did not answer within %u ms", l->timeout_ms);
		}
		snprintf(l->broken, sizeof(l->broken), "receiving a reply failed: %s", strerror(e));
		return fail(l, e, "receiving from luod: %s", strerror(e));
	}
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t count;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0))
			continue;
		count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*nfds < RECV_FDS)
				fds[(*nfds)++] = fd;
			else
				close(fd);
		}
	}
	if (n == 0 && *nfds == 0 && !(msg.msg_flags & MSG_TRUNC)) {
		snprintf(l->broken, sizeof(l->broken), "luod closed the connection");
		return fail(l, ECONNRESET, "luod closed the connection");
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		close_fds(fds, *nfds);
		*nfds = 0;
		return fail(l, EPROTO, "luod's reply is longer than %d bytes or has too many fds", MAX_REPLY);
	}
	return n;
}

/*
 * Send the request in w with fds, receive the reply, and check its header
 * and errno. On success *r reads the body, and *fd (if not NULL) is the one
 * fd that came with it (any other fds are closed; a missing one is an
 * error).
 */
static int call(struct luod *l, enum op op, const struct wr *w, const int *fds, size_t nfds, struct rd *r,
		int *fd)
{
	int got[RECV_FDS];
	size_t ngot = 0;
	struct rd hdr;
	uint16_t version, rop;
	uint32_t errnum;
	ssize_t n;
	int ret;

	if (fd)
		*fd = -1;
	l->err[0] = '\0';
	if (l->broken[0])
		return fail(l, ENOTCONN, "luod connection unusable: %s; connect again", l->broken);
	if (w->overflow)
		return fail(l, EMSGSIZE, "request longer than %d bytes", MAX_REQUEST);
	ret = send_packet(l, w, fds, nfds);
	if (ret)
		return ret;
	n = recv_packet(l, got, &ngot);
	if (n < 0)
		return (int)n;

	hdr = (struct rd){ .p = l->reply, .left = (size_t)n };
	{
		const uint8_t *magic = take(&hdr, 4);

		if (!magic || memcmp(magic, MAGIC, 4) != 0) {
			ret = fail(l, EPROTO, "luod protocol: bad magic (not a luod reply)");
			goto out;
		}
	}
	version = get_u16(&hdr);
	rop = get_u16(&hdr);
	errnum = get_u32(&hdr);
	if (hdr.bad) {
		ret = fail(l, EPROTO, "luod protocol: reply too short");
		goto out;
	}
	if (errnum != 0) {
		/* An error reply: same layout in every version, any op. */
		char msg[LUOD_MAX_STRING + 1];

		get_str(&hdr, msg, sizeof(msg));
		if (hdr.bad || hdr.left != 0 || version == 0 || errnum > 4095) {
			ret = fail(l, EPROTO, "luod protocol: malformed error reply");
			goto out;
		}
		ret = fail(l, (int)errnum, "%s", msg);
		goto out;
	}
	if (version != LUOD_PROTOCOL_VERSION) {
		ret = fail(l, EPROTO, "luod protocol: reply of version %u, this client speaks %d", version,
			   LUOD_PROTOCOL_VERSION);
		goto out;
	}
	if (rop != op) {
		ret = fail(l, EPROTO, "luod protocol: reply to operation %u, expected %d", rop, op);
		goto out;
	}
	if (fd) {
		if (ngot != 1) {
			ret = fail(l, EPROTO, "luod protocol: %zu fds in the reply, expected 1", ngot);
			goto out;
		}
		*fd = got[0];
		ngot = 0;
	}
	*r = hdr;
	ret = 0;
out:
	close_fds(got, ngot);
	return ret;
}

/* The body was read whole: no short read, no trailing bytes. */
static int body_end(struct luod *l, struct rd *r)
{
	if (r->bad)
		return fail(l, EPROTO, "luod protocol: reply too short or malformed");
	if (r->left != 0)
		return fail(l, EPROTO, "luod protocol: trailing bytes in the reply");
	return 0;
}

/* A request whose reply has no body. */
static int call_done(struct luod *l, enum op op, const struct wr *w, const int *fds, size_t nfds)
{
	struct rd r;
	int ret = call(l, op, w, fds, nfds, &r, NULL);

	return ret ? ret : body_end(l, &r);
}

static int name_request(struct luod *l, enum op op, const char *name)
{
	struct wr w;

	if (!name)
		return fail(l, EINVAL, "no session name");
	header(&w, op);
	put_str(&w, name);
	return call_done(l, op, &w, NULL, 0);
}

/* ------------------------------------------------------------------------ */
/* API */

int luod_set_timeout(struct luod *l, unsigned int timeout_ms)
{
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

	if (setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return fail(l, errno, "setting the socket timeout: %s", strerror(errno));
	l->timeout_ms = timeout_ms;
	return 0;
}

int luod_from_fd(int fd, struct luod **out)
{
	struct luod *l;
	int ret;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = fd;
	ret = luod_set_timeout(l, LUOD_DEFAULT_TIMEOUT_MS);
	if (ret) {
		free(l);
		return ret;
	}
	*out = l;
	return 0;
}

int luod_connect(const char *path, struct luod **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, ret;

	*out = NULL;
	if (!path)
		path = LUOD_DEFAULT_SOCKET;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	ret = luod_from_fd(fd, out);
	if (ret)
		close(fd);
	return ret;
}

void luod_close(struct luod *l)
{
	if (!l)
		return;
	close(l->fd);
	free(l);
}

int luod_status(struct luod *l, struct luod_status *st)
{
	struct wr w;
	struct rd r;
	uint64_t lun;
	uint8_t handed, keeper;
	int ret;

	header(&w, OP_STATUS);
	ret = call(l, OP_STATUS, &w, NULL, 0, &r, NULL);
	if (ret)
		return ret;
	memset(st, 0, sizeof(*st));
	st->version = get_u16(&r);
	st->device_ok = get_bool(&r);
	get_str(&r, st->device_error, sizeof(st->device_error));
	handed = get_u8(&r);
	if (handed > 2)
		r.bad = true;
	st->handed_over = handed == 2 ? -1 : handed;
	lun = get_u64(&r);
	st->has_live_update_number = lun != UINT64_MAX;
	st->live_update_number = st->has_live_update_number ? lun : 0;
	get_handover(&r, &st->outgoing);
	st->incoming = get_u32(&r);
	st->retrieved = get_u32(&r);
	keeper = get_u8(&r);
	if (keeper > LUOD_KEEPER_FDSTORE)
		r.bad = true;
	st->keeper = (enum luod_keeper)keeper;
	st->kexec_loaded = get_bool(&r);
	st->uid = get_u32(&r);
	st->subscribers = get_u32(&r);
	return body_end(l, &r);
}

int luod_create(struct luod *l, const char *name)
{
	return name_request(l, OP_CREATE, name);
}

int luod_preserve(struct luod *l, const char *name, uint64_t token, int fd)
{
	struct wr w;

	if (!name)
		return fail(l, EINVAL, "no session name");
	if (fd < 0)
		return fail(l, EBADF, "no file to preserve");
	header(&w, OP_PRESERVE);
	put_str(&w, name);
	put_u64(&w, token);
	return call_done(l, OP_PRESERVE, &w, &fd, 1);
}

int luod_close_session(struct luod *l, const char *name)
{
	return name_request(l, OP_CLOSE, name);
}

int luod_retrieve_session(struct luod *l, const char *name)
{
	return name_request(l, OP_RETRIEVE_SESSION, name);
}

int luod_retrieve_fd(struct luod *l, const char *name, uint64_t token, int *fd)
{
	struct wr w;
	struct rd r;
	int ret;

	*fd = -1;
	if (!name)
		return fail(l, EINVAL, "no session name");
	header(&w, OP_RETRIEVE_FD);
	put_str(&w, name);
	put_u64(&w, token);
	ret = call(l, OP_RETRIEVE_FD, &w, NULL, 0, &r, fd);
	if (!ret)
		ret = body_end(l, &r);
	if (ret && *fd >= 0) {
		close(*fd);
		*fd = -1;
	}
	return ret;
}

int luod_finish(struct luod *l, const char *name)
{
	return name_request(l, OP_FINISH, name);
}

int luod_kexec_load(struct luod *l, int kernel_fd, int initrd_fd, const char *cmdline, uint32_t flags,
		    struct luod_handover *handover)
{
	int fds[2] = { kernel_fd, initrd_fd };
	struct luod_handover h;
	struct wr w;
	struct rd r;
	int ret;

	if (kernel_fd < 0)
		return fail(l, EBADF, "no kernel file");
	if (!cmdline)
		cmdline = "";
	if (strlen(cmdline) > LUOD_MAX_STRING)
		return fail(l, EMSGSIZE, "command line longer than %d bytes", LUOD_MAX_STRING);
	header(&w, OP_KEXEC_LOAD);
	put_str(&w, cmdline);
	put_u32(&w, flags);
	ret = call(l, OP_KEXEC_LOAD, &w, fds, initrd_fd >= 0 ? 2 : 1, &r, NULL);
	if (ret)
		return ret;
	get_handover(&r, &h);
	ret = body_end(l, &r);
	if (!ret && handover)
		*handover = h;
	return ret;
}
