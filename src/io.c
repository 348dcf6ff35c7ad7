/* SPDX-License-Identifier: MIT */
/*
 * io.c - the file layer under the replication code: every write, fsync,
 * rename and unlink of a region's files goes through pt_io, so that tests
 * can record a write trace (the storage crash simulator rebuilds directories
 * from prefixes of it) or inject ENOSPC and EIO.  Reads go straight to the
 * kernel: they change nothing a crash could lose.
 *
 * Also here: checksums (XXH3-64 from libxxhash), directory checks, and the
 * futex calls that carry "a new epoch is published" to other processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#endif

#include "format.h"
#include "io.h"
#include "internal.h"

static int sys_openat(int dirfd, const char *name, int flags, mode_t mode)
{
	int fd = openat(dirfd, name, flags, mode);

	return fd < 0 ? -errno : fd;
}

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	ssize_t n = pwrite(fd, buf, len, off);

	return n < 0 ? -errno : n;
}

static int sys_fdatasync(int fd)
{
	return fdatasync(fd) ? -errno : 0;
}

static int sys_fsync(int fd)
{
	return fsync(fd) ? -errno : 0;
}

static int sys_ftruncate(int fd, off_t len)
{
	return ftruncate(fd, len) ? -errno : 0;
}

static int sys_renameat(int dirfd, const char *from, const char *to)
{
	return renameat(dirfd, from, dirfd, to) ? -errno : 0;
}

static int sys_unlinkat(int dirfd, const char *name)
{
	return unlinkat(dirfd, name, 0) ? -errno : 0;
}

static int sys_close(int fd)
{
	/* Linux releases the descriptor even when close fails. */
	return close(fd) ? -errno : 0;
}

const struct pt_io_ops pt_io_system = {
	.openat = sys_openat,
	.pwrite = sys_pwrite,
	.fdatasync = sys_fdatasync,
	.fsync = sys_fsync,
	.ftruncate = sys_ftruncate,
	.renameat = sys_renameat,
	.unlinkat = sys_unlinkat,
	.close = sys_close,
};

const struct pt_io_ops *pt_io = &pt_io_system;

void pt_io_set(const struct pt_io_ops *ops)
{
	pt_io = ops ? ops : &pt_io_system;
}

int pt_write_full(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pt_io->pwrite(fd, p, len, off);

		if (n == -EINTR)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

ssize_t pt_readv_full(int fd, struct iovec *iov, int iovcnt, off_t off)
{
	size_t done = 0;

	while (iovcnt > 0) {
		ssize_t n = preadv(fd, iov, iovcnt, off + (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
		/* A short read: go on after what it filled. */
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return (ssize_t)done;
}

ssize_t pt_read_full(int fd, void *buf, size_t len, off_t off)
{
	struct iovec v = { .iov_base = buf, .iov_len = len };

	return pt_readv_full(fd, &v, 1, off);
}

int pt_create_file(int dirfd, const char *name, int flags)
{
	return pt_io->openat(dirfd, name, flags | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
}

int pt_check_dir(int dirfd, const char *dir)
{
	struct stat st;

	if (fstat(dirfd, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode)) {
		pt_log(PT_LOG_ERROR, "%s: not a directory", dir);
		return -ENOTDIR;
	}
	/* Someone else able to replace our files could feed a replica or a
	 * recovery whatever they like: refuse shared writable directories. */
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		pt_log(PT_LOG_ERROR, "%s: writable by group or others (mode %03o): refusing",
		       dir, (unsigned int)(st.st_mode & 0777));
		return -EPERM;
	}
	if (st.st_uid != geteuid() && geteuid() != 0) {
		pt_log(PT_LOG_ERROR, "%s: owned by uid %u, not by us", dir, (unsigned int)st.st_uid);
		return -EPERM;
	}
	return 0;
}

int pt_open_dir(const char *dir)
{
	int fd, ret;

	if (!dir)
		return -EINVAL;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	ret = pt_check_dir(fd, dir);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

int pt_dir_owner(int dirfd, uid_t *owner)
{
	struct stat st;

	if (fstat(dirfd, &st))
		return -errno;
	*owner = st.st_uid;
	return 0;
}

int pt_open_file(int dirfd, const char *name, int flags, uid_t owner)
{
	bool writable = (flags & O_ACCMODE) != O_RDONLY;
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer
	 * (and a device may do anything); on a regular file it changes
	 * nothing for pread and pwrite. */
	flags |= O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
	if (writable) {
		fd = pt_io->openat(dirfd, name, flags, 0);
	} else {
		fd = openat(dirfd, name, flags);
		if (fd < 0)
			fd = -errno;
	}
	if (fd < 0)
		return fd == -ELOOP ? -EMEDIUMTYPE : fd;	/* a symbolic link */
	if (fstat(fd, &st)) {
		ret = -errno;
		goto err;
	}
	if (!S_ISREG(st.st_mode)) {
		pt_log(PT_LOG_ERROR, "%s: not a regular file: refusing", name);
		ret = -EMEDIUMTYPE;
		goto err;
	}
	/* Whoever could write the file could feed us anything (the
	 * directory's own check keeps others from replacing it). */
	if ((st.st_uid != owner && st.st_uid != geteuid()) || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		pt_log(PT_LOG_ERROR, "%s: owned by uid %u with mode %03o; a region's files must "
		       "belong to the directory's owner and be writable by no one else: refusing",
		       name, (unsigned int)st.st_uid, (unsigned int)(st.st_mode & 0777));
		ret = -EPERM;
		goto err;
	}
	return fd;
err:
	if (writable)
		pt_io->close(fd);
	else
		close(fd);
	return ret;
}

/*
 * Every page's hash.  On x86, libxxhash's XXH3_64bits is its SSE2 build;
 * its _dispatch entry picks the widest vector unit the CPU has at run
 * time (the same hash, bit for bit): 100-105 ns for a 4 KiB page here
 * with AVX2, against 220-240 ns.
 */
uint64_t pt_checksum(const void *p, size_t len)
{
#if defined(__x86_64__) || defined(__i386__)
	return XXH3_64bits_dispatch(p, len);
#else
	return XXH3_64bits(p, len);
#endif
}

uint64_t pt_header_checksum(const void *p, size_t len, size_t checksum_offset)
{
	unsigned char tmp[256];

	if (len > sizeof(tmp) || checksum_offset + 8 > len)
		return 0;
	memcpy(tmp, p, len);
	memset(tmp + checksum_offset, 0, 8);
	return XXH3_64bits(tmp, len);
}

uint64_t pt_chain_seed(uint64_t history_id)
{
	return XXH3_64bits_withSeed("pagetrack chain", 15, history_id);
}

/* Shared futexes: the state file is a MAP_SHARED file mapping in every
 * process, so no FUTEX_PRIVATE_FLAG.  FUTEX_WAIT only reads the word, which
 * works on the replicas' read-only mapping. */
void pt_futex_wake(uint32_t *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int pt_futex_wait(const uint32_t *addr, uint32_t val, int timeout_ms)
{
	struct timespec ts, *tsp = NULL;

	if (timeout_ms >= 0) {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
		tsp = &ts;
	}
	if (syscall(SYS_futex, addr, FUTEX_WAIT, val, tsp, NULL, 0))
		return errno == ETIMEDOUT ? -ETIMEDOUT : 0;
	return 0;
}

