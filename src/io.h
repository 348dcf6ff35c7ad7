/* SPDX-License-Identifier: MIT */
/*
 * io.h - the file layer under the replication code (io.c): every write,
 * fsync, rename and unlink of a region's files goes through pt_io, so that
 * tests can record a trace or inject errors; the checked opens every reader
 * of a region's files uses; the futexes and the fence of the protocols that
 * cross processes (the state block, the staging seqlock, shared replicas).
 */
#ifndef PT_IO_H
#define PT_IO_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
 * The file operations the writer and the checkpoint use.  Each returns >= 0
 * or -errno.  Tests replace them (pt_io_set) to record a write trace for the
 * storage crash simulator or to inject ENOSPC/EIO; reads go straight to the
 * kernel.
 */
struct pt_io_ops {
	int (*openat)(int dirfd, const char *name, int flags, mode_t mode);
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	int (*renameat)(int dirfd, const char *from, const char *to);
	int (*unlinkat)(int dirfd, const char *name);
	int (*close)(int fd);
};

extern const struct pt_io_ops *pt_io;
extern const struct pt_io_ops pt_io_system;
void pt_io_set(const struct pt_io_ops *ops);	/* NULL: the system calls */

/* pwrite all of buf (retrying short writes and EINTR); 0 or -errno. */
int pt_write_full(int fd, const void *buf, size_t len, off_t off);
/* pread len bytes; returns bytes read (short at EOF) or -errno. */
ssize_t pt_read_full(int fd, void *buf, size_t len, off_t off);
/* preadv into every buffer of iov (which it changes, to go on after a short
 * read); returns bytes read (short at EOF) or -errno. */
ssize_t pt_readv_full(int fd, struct iovec *iov, int iovcnt, off_t off);
/* Create name in dirfd: O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600. */
int pt_create_file(int dirfd, const char *name, int flags);
/* Directory checks for a data directory: a directory, ours, not writable
 * by others.  Returns 0 or -errno with a pt_log message. */
int pt_check_dir(int dirfd, const char *dir);
/*
 * Open name in dirfd (flags: O_RDONLY or O_RDWR, plus O_CREAT... not
 * allowed: use pt_create_file) as every reader of a region's files must:
 * O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, so that a FIFO or a device put in
 * its place cannot hang the caller, then fstat: only a regular file owned
 * by owner (the directory's owner) with no group or other write bit.
 * Writable opens go through pt_io.  Returns the descriptor, or -errno:
 * -ENOENT, -EMEDIUMTYPE (not a regular file), -EPERM (owner or mode).
 */
int pt_open_file(int dirfd, const char *name, int flags, uid_t owner);
/* Open a data directory as its readers do (O_NOFOLLOW: a symbolic link in
 * its place is -ENOTDIR) and apply pt_check_dir(): the fd or -errno. */
int pt_open_dir(const char *dir);
/* The owner every file in dirfd must have (the directory's), or -errno. */
int pt_dir_owner(int dirfd, uid_t *owner);

/* Shared futexes on a word of a MAP_SHARED file mapping (the state block,
 * a shared replica's control block): wake every waiter; wait while *addr
 * == val, at most timeout_ms (-1: forever); 0 or -ETIMEDOUT. */
void pt_futex_wake(uint32_t *addr);
int pt_futex_wait(const uint32_t *addr, uint32_t val, int timeout_ms);

/*
 * A full memory fence, for the staging seqlock.  GCC's TSan refuses
 * atomic_thread_fence; under it a sequentially consistent read-modify-write
 * of a dummy gives the same ordering on the machines it runs on.
 */
static inline void pt_fence(void)
{
#if defined(__SANITIZE_THREAD__)
	static uint32_t dummy;

	__atomic_fetch_add(&dummy, 0, __ATOMIC_SEQ_CST);
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

#endif /* PT_IO_H */
