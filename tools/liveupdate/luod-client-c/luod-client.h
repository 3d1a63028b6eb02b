/* SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause */
/*
 * libluodclient: a C client of luod, the Linux Live Update Orchestrator
 * daemon (protocol version 2, tools/liveupdate/PROTOCOL.md).
 *
 * luod is the single owner of /dev/liveupdate. A VMM asks it to create
 * LUO sessions and preserve files (guest memory in memfds, vfio devices)
 * in them; after the kexec it retrieves them and finishes the sessions.
 * Session names are relative to the caller's namespace (root's are the
 * kernel's names).
 *
 * Every function that can fail returns 0 or a negative errno: luod's
 * errno when luod refused the request (luod_last_error() then returns
 * luod's message), or a local one (-ETIMEDOUT, -EPROTO for a reply that
 * cannot be decoded, ...; luod_last_error() says what happened).
 *
 * Each call waits for its reply at most the connection's timeout (60 s by
 * default, luod_set_timeout()). A call that timed out after its request
 * was sent leaves the connection unusable (the late reply would answer
 * the next call): later calls fail with -ENOTCONN. Connect again.
 *
 * A struct luod is not thread-safe: use one per thread, or serialize the
 * calls (luod_last_error() belongs to the last call).
 */
#ifndef LUOD_CLIENT_H
#define LUOD_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LUOD_DEFAULT_SOCKET "/run/luod.sock"
#define LUOD_PROTOCOL_VERSION 2
/* Longest session name luod takes (less "u<uid>/" for non-root callers). */
#define LUOD_MAX_NAME 63
/* Longest string (error message, command line). */
#define LUOD_MAX_STRING 2048
#define LUOD_DEFAULT_TIMEOUT_MS 60000u

/* luod_kexec_load() flags. */
/* Load even though incoming sessions are not finished (they are dropped). */
#define LUOD_KEXEC_DROP_INCOMING 0x1u
/* Load a kernel whose support for the preserved files cannot be verified. */
#define LUOD_KEXEC_UNVERIFIED 0x2u

struct luod;

/* What keeps luod's sessions when luod exits. */
enum luod_keeper {
	LUOD_KEEPER_NONE = 0,    /* nothing: they die with luod */
	LUOD_KEEPER_HOLDER = 1,  /* luod's holder process */
	LUOD_KEEPER_FDSTORE = 2, /* systemd's fd store */
};

/* What a kexec would hand over. */
struct luod_handover {
	uint32_t sessions; /* outgoing sessions */
	uint32_t files;    /* files in them */
	uint64_t bytes;    /* their size */
	uint32_t dropped;  /* incoming sessions not finished: dropped */
};

/* luod_status(): counts are of what the caller may see. */
struct luod_status {
	uint16_t version;  /* luod's protocol version */
	bool device_ok;    /* luod holds an open /dev/liveupdate */
	char device_error[LUOD_MAX_STRING + 1]; /* why not, when !device_ok */
	int handed_over;   /* the previous kernel handed sessions over: 1, 0, -1 unknown */
	bool has_live_update_number;
	uint64_t live_update_number;
	struct luod_handover outgoing;
	uint32_t incoming;  /* incoming sessions, not retrieved */
	uint32_t retrieved; /* retrieved sessions */
	enum luod_keeper keeper;
	bool kexec_loaded;  /* a next kernel is loaded */
	uint32_t uid;       /* the caller's uid, as luod saw it */
	uint32_t subscribers; /* connections subscribed to kexec events */
};

/*
 * Connect to luod at path (NULL: LUOD_DEFAULT_SOCKET). On success *out is
 * a new connection (free it with luod_close()); on failure *out is NULL
 * and the errno says why (there is no connection to ask).
 */
int luod_connect(const char *path, struct luod **out);

/* Take over a connected SOCK_SEQPACKET socket (closed by luod_close()). */
int luod_from_fd(int fd, struct luod **out);

/* Close the connection (NULL is allowed). */
void luod_close(struct luod *l);

/* What the last failed call of this connection met ("" after a success). */
const char *luod_last_error(struct luod *l);

/* The socket, e.g. to poll it. */
int luod_fd(struct luod *l);

/* Timeout of each call in milliseconds; 0 waits forever. */
int luod_set_timeout(struct luod *l, unsigned int timeout_ms);

int luod_status(struct luod *l, struct luod_status *st);

/* Create the outgoing session name. */
int luod_create(struct luod *l, const char *name);

/* Preserve fd in the outgoing session name under token. */
int luod_preserve(struct luod *l, const char *name, uint64_t token, int fd);

/* Close the outgoing session name: its files are unpreserved. */
int luod_close_session(struct luod *l, const char *name);

/* Retrieve the incoming session name (idempotent for its owner). */
int luod_retrieve_session(struct luod *l, const char *name);

/*
 * Get the file preserved under token in the retrieved session name: *fd
 * is a new close-on-exec fd on success, -1 otherwise.
 */
int luod_retrieve_fd(struct luod *l, const char *name, uint64_t token, int *fd);

/* Finish the retrieved session name; luod forgets it. Can block. */
int luod_finish(struct luod *l, const char *name);

/*
 * Load the next kernel (needs CAP_SYS_BOOT): kernel_fd, initrd_fd or -1,
 * its command line (which must enable liveupdate), LUOD_KEXEC_* flags.
 * handover (may be NULL) gets what the kexec will hand over.
 */
int luod_kexec_load(struct luod *l, int kernel_fd, int initrd_fd, const char *cmdline, uint32_t flags,
		    struct luod_handover *handover);

#ifdef __cplusplus
}
#endif

#endif /* LUOD_CLIENT_H */
