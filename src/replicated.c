/* SPDX-License-Identifier: MIT */
/*
 * replicated.c - the `replicated` file of a data directory: how a publisher
 * (another process, pagetrack-net.h) tells the region's writer which epochs
 * its stream has stored, for PT_LEVEL_REPLICATED waits, and that it was
 * deposed (the stream fenced it off: another writer took over).
 *
 * One page, mapped shared by both: the publisher stores the epoch with
 * release, bumps the futex word and wakes; the writer loads the epoch with
 * acquire and waits on the word.  The epoch only moves forward (a stale
 * report is ignored), so a publisher that restarts cannot take back an
 * acknowledgement.  The file is the directory owner's, 0600, checked like
 * every file of the directory.
 *
 * It also records the term of the directory's writer once the directory
 * was promoted from a standby (network failover): only forward, durable
 * (msync) before pt_replicated_set_term() returns, and a new term clears
 * the deposed mark.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "internal.h"
#include "io.h"
#include "state.h"

struct pt_replicated {
	int fd;
	struct pt_replicated_block *b;
	size_t len;
};

int pt_replicated_openat(struct pt_replicated **out, int dirfd)
{
	long ps = sysconf(_SC_PAGESIZE);
	struct pt_replicated *h;
	struct stat st;
	uid_t owner = 0;
	void *p;
	int ret;

	*out = NULL;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		return ret;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->len = (size_t)ps;
	h->fd = pt_open_file(dirfd, PT_REPLICATED_NAME, O_RDWR, owner);
	if (h->fd == -ENOENT) {
		h->fd = pt_create_file(dirfd, PT_REPLICATED_NAME, O_RDWR);
		if (h->fd == -EEXIST)	/* made by the other side meanwhile */
			h->fd = pt_open_file(dirfd, PT_REPLICATED_NAME, O_RDWR, owner);
	}
	if (h->fd < 0) {
		ret = h->fd;
		goto err;
	}
	if (fstat(h->fd, &st)) {
		ret = -errno;
		goto err;
	}
	/* Allocated before it is written through the mapping: a full disk is
	 * an error here, not a SIGBUS later. */
	if ((size_t)st.st_size < h->len) {
		ret = -posix_fallocate(h->fd, 0, (off_t)h->len);
		if (ret)
			goto err;
	}
	p = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto err;
	}
	h->b = p;
	if (!memcmp(h->b->magic, "\0\0\0\0\0\0\0\0", 8)) {
		/* New: the first to look claims it (both sides write the same). */
		h->b->version = PT_FORMAT_VERSION;
		memcpy(h->b->magic, PT_REPLICATED_MAGIC, 8);
	} else if (memcmp(h->b->magic, PT_REPLICATED_MAGIC, 8)) {
		ret = -EBADMSG;
		goto err;
	} else if (h->b->version != PT_FORMAT_VERSION) {
		ret = -EPROTO;
		goto err;
	}
	*out = h;
	return 0;
err:
	pt_replicated_close(h);
	return ret;
}

PT_EXPORT int pt_replicated_open(struct pt_replicated **out, const char *dir)
{
	int dirfd, ret;

	if (!out || !dir)
		return -EINVAL;
	*out = NULL;
	dirfd = pt_open_dir(dir);
	if (dirfd < 0)
		return dirfd;
	ret = pt_replicated_openat(out, dirfd);
	close(dirfd);
	return ret;
}

static void wake(struct pt_replicated *h)
{
	__atomic_add_fetch(&h->b->futex, 1, __ATOMIC_RELEASE);
	pt_futex_wake(&h->b->futex);
}

PT_EXPORT int pt_replicated_set(struct pt_replicated *h, pt_epoch_t epoch)
{
	uint64_t cur;

	if (!h || epoch < 0)
		return -EINVAL;
	/* The pid first: a reader that sees an epoch sees a publisher. */
	__atomic_store_n(&h->b->publisher_pid, (uint64_t)getpid(), __ATOMIC_RELEASE);
	cur = __atomic_load_n(&h->b->epoch, __ATOMIC_ACQUIRE);
	while ((uint64_t)epoch > cur && !__atomic_compare_exchange_n(&h->b->epoch, &cur, (uint64_t)epoch, false,
							  __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
		;
	wake(h);
	return 0;
}

PT_EXPORT int pt_replicated_depose(struct pt_replicated *h)
{
	if (!h)
		return -EINVAL;
	__atomic_or_fetch(&h->b->flags, PT_REPLICATED_DEPOSED, __ATOMIC_RELEASE);
	__atomic_store_n(&h->b->publisher_pid, (uint64_t)getpid(), __ATOMIC_RELAXED);
	wake(h);
	return 0;
}

PT_EXPORT int pt_replicated_set_term(struct pt_replicated *h, uint64_t term, uint64_t holder)
{
	if (!h || !term || term <= __atomic_load_n(&h->b->term, __ATOMIC_ACQUIRE))
		return -EINVAL;
	/* The holder first: a reader that sees the term sees its holder. */
	__atomic_store_n(&h->b->term_holder, holder, __ATOMIC_RELAXED);
	__atomic_store_n(&h->b->term, term, __ATOMIC_RELEASE);
	__atomic_and_fetch(&h->b->flags, ~(uint64_t)PT_REPLICATED_DEPOSED, __ATOMIC_RELEASE);
	/* Durable before the caller claims the term anywhere else: a
	 * directory that forgot its term after a crash would take itself
	 * for deposed (safe, but a needless failover). */
	if (msync(h->b, h->len, MS_SYNC))
		return -errno;
	wake(h);
	return 0;
}

PT_EXPORT int pt_replicated_get_term(const struct pt_replicated *h, uint64_t *term,
				     uint64_t *holder)
{
	uint64_t t;

	if (!h)
		return -EINVAL;
	t = __atomic_load_n(&h->b->term, __ATOMIC_ACQUIRE);
	if (holder)
		*holder = __atomic_load_n(&h->b->term_holder, __ATOMIC_RELAXED);
	if (term)
		*term = t;
	return 0;
}

static uint64_t replicated_epoch(const struct pt_replicated *h, int *deposed)
{
	if (deposed)
		*deposed = h && (__atomic_load_n(&h->b->flags, __ATOMIC_ACQUIRE) & PT_REPLICATED_DEPOSED);
	return h ? __atomic_load_n(&h->b->epoch, __ATOMIC_ACQUIRE) : 0;
}

/* Only pt_replicated_set() writes the epoch, and never a negative one. */
PT_EXPORT pt_epoch_t pt_replicated_get(const struct pt_replicated *h, int *deposed)
{
	return (pt_epoch_t)replicated_epoch(h, deposed);
}

int pt_replicated_wait(struct pt_replicated *h, uint64_t epoch, int timeout_ms)
{
	for (;;) {
		uint32_t f = __atomic_load_n(&h->b->futex, __ATOMIC_ACQUIRE);
		int deposed;

		if (replicated_epoch(h, &deposed) >= epoch)
			return 0;
		if (deposed)
			return -EOWNERDEAD;
		if (pt_futex_wait(&h->b->futex, f, timeout_ms) == -ETIMEDOUT)
			return -ETIMEDOUT;
	}
}

PT_EXPORT void pt_replicated_close(struct pt_replicated *h)
{
	if (!h)
		return;
	if (h->b)
		munmap(h->b, h->len);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

PT_EXPORT int pt_dir_replicated(const char *dir, pt_epoch_t *epoch, int *deposed,
				int32_t *publisher_pid)
{
	struct pt_replicated_block b;
	uid_t owner = 0;
	int dirfd, fd, ret;
	ssize_t n;

	if (!dir)
		return -EINVAL;
	dirfd = pt_open_dir(dir);
	if (dirfd < 0)
		return dirfd;
	ret = pt_dir_owner(dirfd, &owner);
	fd = ret ? ret : pt_open_file(dirfd, PT_REPLICATED_NAME, O_RDONLY, owner);
	close(dirfd);
	if (fd < 0)
		return fd;
	n = pt_read_full(fd, &b, sizeof(b), 0);
	close(fd);
	if (n < 0)
		return (int)n;
	if ((size_t)n < sizeof(b) || !memcmp(b.magic, "\0\0\0\0\0\0\0\0", 8))
		return -ENOENT;	/* made, never written */
	if (memcmp(b.magic, PT_REPLICATED_MAGIC, 8))
		return -EBADMSG;
	if (b.version != PT_FORMAT_VERSION)
		return -EPROTO;
	/* The writer's own waits create the file: no publisher until one
	 * wrote its pid. */
	if (!b.publisher_pid)
		return -ENOENT;
	if (b.epoch > INT64_MAX)
		return -EBADMSG;	/* no publisher writes one: not an epoch */
	if (epoch)
		*epoch = (pt_epoch_t)b.epoch;
	if (deposed)
		*deposed = !!(b.flags & PT_REPLICATED_DEPOSED);
	if (publisher_pid)
		*publisher_pid = (int32_t)b.publisher_pid;
	return 0;
}
