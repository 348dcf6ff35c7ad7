/* SPDX-License-Identifier: MIT */
/*
 * store.c - the engine's block and the query processes' copies, three ways
 * (see store.h).
 *
 * The full-copy snapshot is a file under the given directory (put it on
 * tmpfs): a 4 KiB header with a sequence counter, then the block.  The
 * writer makes the counter odd, copies the whole block, stores the epoch
 * and makes it even again; a reader copies the block out and keeps the
 * copy only if the counter was even and unchanged around its copy (a
 * seqlock).  That is the cost pagetrack avoids: the writer copies the whole
 * block at every sync, and so does every reader.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagetrack.h"
#include "store.h"

/*
 * The fullcopy snapshot is a seqlock shared with other processes; its fences
 * order the sequence against the plain copy.  gcc's TSan does not model
 * fences and refuses them (-Wtsan); it cannot see the other process either,
 * so under it the warning is turned off for this file only.
 */
#if defined(__SANITIZE_THREAD__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif

#define SNAP_MAGIC 0x50414e5348435845ull	/* "EXCHSNAP" */
#define SNAP_HDR 4096

struct snap_hdr {
	uint64_t magic;
	uint64_t seq;		/* odd while the writer copies */
	uint64_t epoch;
	uint64_t size;
};

struct xs_writer {
	int mode;
	void *base;
	size_t size;
	int64_t epoch;
	/* fullcopy */
	struct snap_hdr *snap;
	size_t snap_len;
	struct pt_region *region;
	bool last_sync_new;	/* pagetrack: the last sync made an epoch (one with
				 * nothing written returns the newest one again) */
};

struct xs_reader {
	int mode;
	const void *base;
	size_t size;
	uint64_t epoch;
	/* fullcopy */
	const struct snap_hdr *snap;
	size_t snap_len;
	void *copy;
	struct pt_replica *replica;
};

int xs_mode_parse(const char *s)
{
	if (!strcmp(s, "none"))
		return XS_NONE;
	if (!strcmp(s, "pagetrack"))
		return XS_PAGETRACK;
	if (!strcmp(s, "fullcopy"))
		return XS_FULLCOPY;
	return -1;
}

const char *xs_mode_name(int mode)
{
	static const char *const names[] = { "none", "pagetrack", "fullcopy" };

	return mode >= 0 && mode <= XS_FULLCOPY ? names[mode] : "?";
}

static void *anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static size_t page_round(size_t size)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	return (size + ps - 1) & ~(ps - 1);
}

static void snap_path(char *buf, size_t len, const char *dir)
{
	snprintf(buf, len, "%s/fullcopy.snap", dir);
}

int xs_writer_open(struct xs_writer **out, const struct xs_writer_opts *o, bool *created,
		   char *why, size_t why_len)
{
	struct xs_writer *w = calloc(1, sizeof(*w));
	char path[PATH_MAX];
	int fd = -1, ret;

	if (!w)
		return -ENOMEM;
	w->mode = o->mode;
	w->size = page_round(o->size);
	*created = true;
	switch (o->mode) {
	case XS_NONE:
		w->base = anon(w->size);
		if (!w->base) {
			ret = -ENOMEM;
			snprintf(why, why_len, "cannot map %zu bytes", w->size);
			goto err;
		}
		break;
	case XS_FULLCOPY:
		w->base = anon(w->size);
		if (!w->base) {
			ret = -ENOMEM;
			snprintf(why, why_len, "cannot map %zu bytes", w->size);
			goto err;
		}
		if (mkdir(o->dir, 0700) && errno != EEXIST) {
			ret = -errno;
			snprintf(why, why_len, "%s: %s", o->dir, strerror(errno));
			goto err;
		}
		snap_path(path, sizeof(path), o->dir);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
		w->snap_len = SNAP_HDR + w->size;
		if (fd < 0 || ftruncate(fd, (off_t)w->snap_len)) {
			ret = -errno;
			snprintf(why, why_len, "%s: %s", path, strerror(errno));
			goto err;
		}
		w->snap = mmap(NULL, w->snap_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (w->snap == MAP_FAILED) {
			w->snap = NULL;
			ret = -errno;
			snprintf(why, why_len, "%s: mmap: %s", path, strerror(errno));
			goto err;
		}
		close(fd);
		fd = -1;
		w->snap->size = w->size;
		w->snap->magic = SNAP_MAGIC;
		break;
	case XS_PAGETRACK:
	{
		/* Durability in the background: the engine's loop never waits for
		 * an fdatasync; acks that need durability wait in pt_region_wait(). */
		struct pt_region_opts ro = { .sz = sizeof(ro), .durability = PT_DURABLE_BACKGROUND,
					     .durable_interval_ms = (unsigned)o->durable_ms,
					     .flags = (o->adaptive ? PT_REGION_ADAPTIVE : 0) |
						      (o->chunks ? PT_REGION_CHUNKS : 0) };

		ret = pt_region_open(&w->region, o->dir, &ro);
		if (ret == -ENOENT || ret == -EMEDIUMTYPE)
			ret = pt_region_create(&w->region, o->dir, w->size, &ro);
		else if (ret == 0)
			*created = false;
	}
		if (ret) {
			snprintf(why, why_len, "region %s: %s", o->dir, strerror(-ret));
			goto err;
		}
		w->base = pt_region_base(w->region);
		w->size = pt_region_size(w->region);
		w->epoch = pt_region_epoch(w->region);
		break;
	default:
		ret = -EINVAL;
		snprintf(why, why_len, "unknown mode %d", o->mode);
		goto err;
	}
	*out = w;
	return 0;
err:
	if (fd >= 0)
		close(fd);
	xs_writer_close(w);
	return ret;
}

void *xs_writer_base(struct xs_writer *w)
{
	return w->base;
}

size_t xs_writer_size(const struct xs_writer *w)
{
	return w->size;
}

int64_t xs_writer_sync(struct xs_writer *w)
{
	switch (w->mode) {
	case XS_NONE:
		return ++w->epoch;
	case XS_FULLCOPY:
		__atomic_store_n(&w->snap->seq, w->snap->seq + 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
		memcpy((char *)w->snap + SNAP_HDR, w->base, w->size);
		w->epoch++;
		__atomic_store_n(&w->snap->epoch, (uint64_t)w->epoch, __ATOMIC_RELAXED);
		__atomic_store_n(&w->snap->seq, w->snap->seq + 1, __ATOMIC_RELEASE);
		return w->epoch;
	case XS_PAGETRACK: {
		int64_t e = pt_region_sync(w->region);

		w->last_sync_new = e > w->epoch;
		if (e > 0)
			w->epoch = e;
		return e;
	}
	default:
		return -EINVAL;
	}
}

void xs_writer_sync_figures(const struct xs_writer *w, uint64_t *pages, uint64_t *collect_ns)
{
	struct pt_sync_stats last = { .sz = sizeof(last) };

	*pages = *collect_ns = UINT64_MAX;
	switch (w->mode) {
	case XS_FULLCOPY:
		*pages = w->size / (size_t)sysconf(_SC_PAGESIZE);
		break;
	case XS_PAGETRACK:
		/* The library's figures are those of the last sync that made an
		 * epoch: a sync that made none copied nothing. */
		if (!w->last_sync_new)
			*pages = 0;
		else if (!pt_region_stats(w->region, &last, NULL)) {
			*pages = last.pages;
			*collect_ns = last.collect_ns;
		}
		break;
	default:
		break;
	}
}

int64_t xs_writer_epoch(const struct xs_writer *w)
{
	return w->epoch;
}

int xs_writer_stats(struct xs_writer *w, struct pt_region_stats *st)
{
	if (w->mode != XS_PAGETRACK)
		return -EOPNOTSUPP;
	return pt_region_stats(w->region, NULL, st);
}

int xs_writer_wait_durable(struct xs_writer *w, uint64_t epoch, int timeout_ms)
{
	if (w->mode == XS_PAGETRACK)
		return pt_region_wait(w->region, epoch, PT_LEVEL_DURABLE, timeout_ms);
	/* The other modes keep nothing on disk: published is all there is. */
	(void)timeout_ms;
	return epoch <= (uint64_t)w->epoch ? 0 : -ETIMEDOUT;
}

int xs_writer_wait_replicated(struct xs_writer *w, uint64_t epoch, int timeout_ms)
{
	int ret;

	if (w->mode != XS_PAGETRACK)
		return -EOPNOTSUPP;
	ret = pt_region_wait(w->region, (pt_epoch_t)epoch, PT_LEVEL_DURABLE, timeout_ms);
	if (!ret)
		ret = pt_region_wait(w->region, (pt_epoch_t)epoch, PT_LEVEL_REPLICATED, timeout_ms);
	return ret;
}

void xs_writer_close(struct xs_writer *w)
{
	if (!w)
		return;
	switch (w->mode) {
	case XS_NONE:
	case XS_FULLCOPY:
		if (w->base)
			munmap(w->base, w->size);
		if (w->snap)
			munmap(w->snap, w->snap_len);
		break;
	case XS_PAGETRACK:
		if (w->region)
			pt_region_close(w->region);
		break;
	default:
		break;
	}
	free(w);
}

int xs_reader_open(struct xs_reader **out, int mode, const char *dir, bool shared,
		   const char *shared_name, char *why, size_t why_len)
{
	struct xs_reader *r = calloc(1, sizeof(*r));
	char path[PATH_MAX];
	struct stat st;
	int fd = -1, ret;

	if (!r)
		return -ENOMEM;
	r->mode = mode;
	switch (mode) {
	case XS_FULLCOPY:
		if (shared) {
			ret = -EINVAL;
			snprintf(why, why_len, "a full-copy replica is always private");
			goto err;
		}
		snap_path(path, sizeof(path), dir);
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 || fstat(fd, &st)) {
			ret = -errno;
			snprintf(why, why_len, "%s: %s", path, strerror(errno));
			goto err;
		}
		if ((size_t)st.st_size <= SNAP_HDR) {
			ret = -ENOENT;	/* the writer is still setting it up */
			snprintf(why, why_len, "%s: not ready", path);
			goto err;
		}
		r->snap_len = (size_t)st.st_size;
		r->snap = mmap(NULL, r->snap_len, PROT_READ, MAP_SHARED, fd, 0);
		if (r->snap == MAP_FAILED) {
			r->snap = NULL;
			ret = -errno;
			snprintf(why, why_len, "%s: mmap: %s", path, strerror(errno));
			goto err;
		}
		if (r->snap->magic != SNAP_MAGIC || r->snap->size + SNAP_HDR > r->snap_len) {
			ret = -ENOENT;
			snprintf(why, why_len, "%s: not ready", path);
			goto err;
		}
		r->size = r->snap->size;
		r->copy = anon(r->size);
		if (!r->copy) {
			ret = -ENOMEM;
			snprintf(why, why_len, "cannot map %zu bytes", r->size);
			goto err;
		}
		r->base = r->copy;
		close(fd);
		fd = -1;
		break;
	case XS_PAGETRACK:
	{
		struct pt_replica_opts ro = { .sz = sizeof(ro),
					      .mode = shared ? PT_REPLICA_SHARED : PT_REPLICA_PRIVATE,
					      .name = shared ? shared_name : NULL };

		ret = pt_replica_open(&r->replica, dir, &ro);
	}
		if (ret) {
			snprintf(why, why_len, "replica of %s: %s", dir, strerror(-ret));
			goto err;
		}
		r->base = pt_replica_base(r->replica);
		r->epoch = pt_replica_epoch(r->replica);
		break;
	default:
		ret = -EINVAL;
		snprintf(why, why_len, "mode %s has no replicas", xs_mode_name(mode));
		goto err;
	}
	*out = r;
	return 0;
err:
	if (fd >= 0)
		close(fd);
	xs_reader_close(r);
	return ret;
}

static int64_t snap_refresh(struct xs_reader *r, int timeout_ms)
{
	const char *data = (const char *)r->snap + SNAP_HDR;
	uint64_t deadline = 0;
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 +
		   (timeout_ms < 0 ? UINT32_MAX : (uint64_t)timeout_ms);
	for (;;) {
		uint64_t s1 = __atomic_load_n(&r->snap->seq, __ATOMIC_ACQUIRE), s2, e;

		e = __atomic_load_n(&r->snap->epoch, __ATOMIC_RELAXED);
		if (!(s1 & 1) && e != r->epoch && e) {
			memcpy(r->copy, data, r->size);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			s2 = __atomic_load_n(&r->snap->seq, __ATOMIC_RELAXED);
			if (s1 == s2) {
				r->epoch = e;
				return (int64_t)e;
			}
			continue;	/* the writer overwrote it meanwhile: copy again */
		}
		if (!(s1 & 1) && (e == r->epoch || !e)) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			if ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 >= deadline)
				return (int64_t)r->epoch;
		}
		usleep(100);
	}
}

int64_t xs_reader_refresh(struct xs_reader *r, int timeout_ms)
{
	switch (r->mode) {
	case XS_FULLCOPY:
		return snap_refresh(r, timeout_ms);
	case XS_PAGETRACK: {
		int64_t e = pt_replica_refresh(r->replica, timeout_ms);

		if (e >= 0) {
			r->epoch = (uint64_t)e;
			r->base = pt_replica_base(r->replica);
		}
		return e;
	}
	default:
		return -EINVAL;
	}
}

const void *xs_reader_base(const struct xs_reader *r)
{
	return r->base;
}

size_t xs_reader_size(const struct xs_reader *r)
{
	return r->mode == XS_PAGETRACK ? pt_replica_size(r->replica) : r->size;
}

uint64_t xs_reader_epoch(const struct xs_reader *r)
{
	return r->epoch;
}

void xs_reader_close(struct xs_reader *r)
{
	if (!r)
		return;
	if (r->snap)
		munmap((void *)r->snap, r->snap_len);
	if (r->copy)
		munmap(r->copy, r->size);
	if (r->replica)
		pt_replica_close(r->replica);
	free(r);
}
