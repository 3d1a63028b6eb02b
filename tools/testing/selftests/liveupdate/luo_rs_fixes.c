// SPDX-License-Identifier: GPL-2.0-only
/*
 * Places where the Rust LUO deliberately behaves differently from the C LUO
 * (see Documentation/core-api/liveupdate-rust.rst). For the Rust LUO
 * (CONFIG_LIVEUPDATE_RUST): on the C LUO the first case makes the next
 * kernel panic.
 *
 *   -s 1  create sessions until the first handover block is exactly full
 *         (51 entries of 80 bytes with 4 KiB pages), then fail a duplicate
 *         CREATE_SESSION (EEXIST). The C LUO leaves an empty block linked
 *         after the full one, which the next kernel rejects with a panic.
 *   -s 2  the next kernel booted and every session came back
 *         (duplicate_create_keeps_handover_valid); a RETRIEVE_SESSION whose
 *         reply cannot be copied fails with EFAULT but leaves the session
 *         retrievable, with its data (the C LUO finishes it and its data is
 *         lost).
 *
 * With --c-reader (in both boots), stage 2 runs on the C LUO
 * (stage 1 on a Rust LUO kernel, then a kexec into a C LUO kernel): the C
 * kernel is the oracle for the handover the Rust LUO wrote after the failed
 * create (it panics on an empty block), and the last case measures the C
 * LUO's own behaviour instead (s2_c_loses_session_on_efault: the session is
 * gone). Stage 1 run on the C LUO, then a kexec into a C LUO kernel, shows
 * the upstream bug: that kernel panics at boot ("The incoming tree failed to
 * initialize properly"), and a run that checks the bug expects the panic.
 *
 * KTAP per check; --list [--c-reader] prints the case names.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libliveupdate.h>

#include "luo_rs_ktap.h"

#define STATE_SESSION_NAME	"luo_rs_fixes_state"
#define STATE_MEMFD_TOKEN	994
#define PER_BLOCK		((4096 - 16) / 80)	/* sessions per block */
#define DATA			"kept across a failed retrieve reply"

static void name_of(int i, char *buf, size_t len)
{
	snprintf(buf, len, "fixes-%03d", i);
}

static void stage_1(int luo_fd)
{
	char name[64], why[128];
	int i, s, err = 0;

	printf("1..2\n");
	create_state_file(luo_fd, STATE_SESSION_NAME, STATE_MEMFD_TOKEN, 2);
	/* The state session is entry 0; fixes-000 holds a memfd for stage 2. */
	for (i = 0; i < PER_BLOCK - 1 && !err; i++) {
		name_of(i, name, sizeof(name));
		s = luo_create_session(luo_fd, name);
		if (s < 0)
			err = s;
		else if (!i && create_and_preserve_memfd(s, 1, DATA) < 0)
			err = -EIO;
	}
	snprintf(why, sizeof(why), "creating sessions failed: %d", err);
	result("s1_fill_one_block", !err, "%s", why);
	name_of(0, name, sizeof(name));
	s = luo_create_session(luo_fd, name);
	snprintf(why, sizeof(why), "duplicate create gave %d", s);
	result("s1_duplicate_create_eexist", s == -EEXIST, "%s", why);
	close(luo_fd);
	daemonize_and_wait();
}

/* --c-reader: stage 2 runs on the C LUO. */
static int opt_c_reader;

static void stage_2(int luo_fd, int state_fd)
{
	struct liveupdate_ioctl_retrieve_session *ro;
	char name[64], why[128];
	int i, s, back = 0, r, fd = -1, c_reader = opt_c_reader;

	printf("1..3\n");
	for (i = 1; i < PER_BLOCK - 1; i++) {
		name_of(i, name, sizeof(name));
		s = luo_retrieve_session(luo_fd, name);
		if (s >= 0) {
			back++;
			luo_session_finish(s);
			close(s);
		}
	}
	snprintf(why, sizeof(why), "%d of %d sessions came back", back, PER_BLOCK - 2);
	result("s2_duplicate_create_keeps_handover_valid", back == PER_BLOCK - 2, "%s", why);

	/* The reply of RETRIEVE_SESSION lands in read-only memory: EFAULT. */
	ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro == MAP_FAILED) {
		result("s2_retrieve_reply_efault", 0, "mmap failed");
		result(c_reader ? "s2_c_loses_session_on_efault" : "s2_session_survives_efault", 0,
		       "mmap failed");
		exit(1);
	}
	ro->size = sizeof(*ro);
	name_of(0, (char *)ro->name, sizeof(ro->name));
	mprotect(ro, 4096, PROT_READ);
	r = ioctl(luo_fd, LIVEUPDATE_IOCTL_RETRIEVE_SESSION, ro) ? -errno : 0;
	snprintf(why, sizeof(why), "retrieve with a read-only reply gave %d", r);
	result("s2_retrieve_reply_efault", r == -EFAULT, "%s", why);

	name_of(0, name, sizeof(name));
	s = luo_retrieve_session(luo_fd, name);
	fd = s >= 0 ? restore_and_verify_memfd(s, 1, DATA) : -1;
	snprintf(why, sizeof(why), "retrieve again gave %d, memfd %d", s, fd);
	if (c_reader)
		result("s2_c_loses_session_on_efault", s == -ENOENT, "%s (want ENOENT)", why);
	else
		result("s2_session_survives_efault", s >= 0 && fd >= 0, "%s", why);
	if (s >= 0)
		luo_session_finish(s);
	luo_session_finish(state_fd);
	exit(ktap_failures ? 1 : 0);
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "c-reader", no_argument, &opt_c_reader, 1 },
		{ }
	};
	struct ktap_args a = ktap_args(argc, argv, opts, NULL);

	if (a.list) {
		printf("s1_fill_one_block\ns1_duplicate_create_eexist\n"
		       "s2_duplicate_create_keeps_handover_valid\ns2_retrieve_reply_efault\n"
		       "%s\n", opt_c_reader ? "s2_c_loses_session_on_efault" :
		       "s2_session_survives_efault");
		return 0;
	}
	return ktap_luo_test(argv[0], a, STATE_SESSION_NAME, stage_1, stage_2);
}
