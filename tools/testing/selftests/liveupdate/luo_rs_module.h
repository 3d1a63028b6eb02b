/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The test handler module of luo_rs_module and luo_rs_module_flb
 * (kernel/liveupdate/luo_rs_test_mod.rs, /tests/luo_rs_test_mod.ko): loading
 * and unloading it, and preserving the pipes its handler takes.
 */
#ifndef LUO_RS_MODULE_H
#define LUO_RS_MODULE_H

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <libliveupdate.h>

#define MODULE_PATH	"/tests/luo_rs_test_mod.ko"
#define MODULE_NAME	"luo_rs_test_mod"

/* finit_module() of the test module with @params: 0 or -errno. */
static int load_module(const char *params)
{
	int fd = open(MODULE_PATH, O_RDONLY | O_CLOEXEC), r;

	if (fd < 0)
		return -errno;
	r = syscall(SYS_finit_module, fd, params, 0) ? -errno : 0;
	close(fd);
	return r;
}

/* delete_module() of the test module, without waiting: 0 or -errno. */
static int unload(void)
{
	return syscall(SYS_delete_module, MODULE_NAME, O_NONBLOCK) ? -errno : 0;
}

/* PRESERVE_FD of a new pipe's read end under @token: 0 or -errno. */
static int preserve_pipe(int session, __u64 token)
{
	int p[2], r;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	r = luo_session_preserve_fd(session, p[0], token);
	close(p[0]);
	close(p[1]);
	return r;
}

#endif /* LUO_RS_MODULE_H */
