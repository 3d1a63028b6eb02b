/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Reading the memory counters the memfd and hugetlb tests check:
 * /proc/meminfo fields and the files of a hugetlb pool's sysfs directory.
 */
#ifndef LUO_RS_SYSFS_H
#define LUO_RS_SYSFS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A /proc/meminfo field in KiB, -1 if missing. */
static long meminfo_kib(const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':') {
			v = strtol(line + klen + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* The number in the file @name of directory @dir (ending in '/'), or -errno. */
static long sysfs_num(const char *dir, const char *name)
{
	char path[160], buf[32];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s%s", dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = 0;
	return strtol(buf, NULL, 10);
}

/* Writes @v to the file @name of directory @dir: 0 or -errno. */
static int sysfs_set(const char *dir, const char *name, long v)
{
	char path[160], buf[32];
	int fd, n, r;

	snprintf(path, sizeof(path), "%s%s", dir, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = snprintf(buf, sizeof(buf), "%ld", v);
	r = write(fd, buf, n) == n ? 0 : -errno;
	close(fd);
	return r;
}

#endif /* LUO_RS_SYSFS_H */
