/* SPDX-License-Identifier: MIT */
/*
 * region.c - the writer's API: create and open a region (a tracked memfd,
 * its data directory, lock and state block), sync (collect with reset,
 * copy into staging memory, enqueue: the only pause the writer takes),
 * wait for a level, close; options and their bounds; fork.  The threads
 * and recovery are in the files region.h lists.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "bitmap.h"
#include "region.h"

#define MAX_SEGMENT_BYTES		(1ull << 40)
#define MAX_STAGING_BYTES		(1ull << 40)

static int cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t a;
	int ret;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	ret = pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
	return -ret;
}

static int opts_take(struct pt_region_opts *o, const struct pt_region_opts *in)
{
	int ret;

	memset(o, 0, sizeof(*o));
	o->sz = sizeof(*o);
	ret = pt_opts_take(o, sizeof(*o), in, offsetof(struct pt_region_opts, durable_interval_ms));
	if (ret)
		return ret;
	if ((unsigned int)o->durability > PT_DURABLE_NONE ||
	    (o->flags & ~(PT_REGION_NO_CHECKPOINT_THREAD | PT_REGION_ACCEPT_LOSS |
			  PT_REGION_ADAPTIVE | PT_REGION_CHUNKS | PT_REGION_DIRECT_LOG)) ||
	    o->segment_bytes > MAX_SEGMENT_BYTES || o->staging_bytes > MAX_STAGING_BYTES)
		return -EINVAL;
	if (!o->durable_interval_ms)
		o->durable_interval_ms = DEFAULT_DURABLE_INTERVAL_MS;
	if (!o->checkpoint_interval_ms)
		o->checkpoint_interval_ms = DEFAULT_CHECKPOINT_MS;
	if (!o->retain_bytes)
		o->retain_bytes = DEFAULT_RETAIN_BYTES;
	if (!o->segment_bytes)
		o->segment_bytes = DEFAULT_SEGMENT_BYTES;
	return 0;
}

/* The smallest memory.max of this process's cgroup v2 and its parents. */
static uint64_t cgroup_memory_limit(void)
{
	char path[4200], line[4096], *p;
	uint64_t limit = UINT64_MAX;
	FILE *f;

	f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return limit;
	p = NULL;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = 0;
			p = line + 3;
			break;
		}
	fclose(f);
	while (p && *p) {
		unsigned long long v;

		snprintf(path, sizeof(path), "/sys/fs/cgroup%s/memory.max", p);
		f = fopen(path, "re");
		if (f) {
			if (fscanf(f, "%llu", &v) == 1 && v < limit)
				limit = v;
			fclose(f);
		}
		/* Up one level: the parents' limits hold too. */
		if (!strcmp(p, "/"))
			break;
		*strrchr(p, '/') = 0;
		if (!*p)
			p[0] = '/', p[1] = 0;
	}
	return limit;
}

/*
 * The staging memory is allocated and faulted in whole at open: an absurd
 * size would get the process (and, on a machine without limits, others)
 * killed by the OOM killer.  Allow at most half of the memory this process
 * can have (RAM, or its cgroup's limit if lower).
 */
static int staging_fits(struct pt_region *r, uint64_t bytes)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t limit = cgroup_memory_limit();

	if (limit > ram)
		limit = ram;
	if (bytes <= limit / 2)
		return 0;
	pt_log(PT_LOG_ERROR, "%s: staging memory of %" PRIu64 " bytes is more than half of the "
	       "%" PRIu64 " bytes of memory this process may use", r->dir, bytes, limit);
	return -ENOMEM;
}

static void region_free(struct pt_region *r)
{
	if (r->tracker)
		pt_tracker_close(r->tracker);
	if (r->base && r->base != MAP_FAILED)
		munmap(r->base, r->size);
	if (r->q) {
		for (uint64_t i = r->q_head; i < r->q_tail; i++)
			pt_staging_release(r, slot_at(r, i));
		free(r->q);
	}
	if (r->state) {
		for (int i = 0; i < PT_RING_DESCS; i++)
			__atomic_store_n(&r->state->ring[i].epoch, 0, __ATOMIC_SEQ_CST);
		state_store(&r->state->staging_bytes, 0);
		state_store(&r->state->writer_pid, 0);
	}
	if (r->ring)
		munmap(r->ring, r->ring_size);
	if (r->staging_fd >= 0)
		close(r->staging_fd);
	if (r->state)
		munmap(r->state, r->id.page_size);
	pt_image_close(&r->img);
	if (r->seg_fd >= 0)
		pt_io->close(r->seg_fd);
	if (r->seg_dfd >= 0)
		pt_io->close(r->seg_dfd);
	if (r->next_fd >= 0)
		pt_io->close(r->next_fd);
	if (r->statefd >= 0)
		close(r->statefd);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->lockfd >= 0)
		close(r->lockfd);	/* releases the flock */
	if (r->dirfd >= 0)
		close(r->dirfd);
	pt_replicated_close(r->replicated);
	pt_precopy_free(r);
	free(r->pending);
	pthread_mutex_destroy(&r->sync_lock);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->ckpt_lock);
	pthread_cond_destroy(&r->cond);
	pthread_cond_destroy(&r->work);
	pthread_cond_destroy(&r->ckpt_cond);
	pthread_cond_destroy(&r->seal_work);
	free(r);
}

static int region_alloc(struct pt_region **out, const char *dir, const struct pt_region_opts *opts)
{
	struct pt_region *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dirfd = r->lockfd = r->memfd = r->statefd = r->seg_fd = r->seg_dfd = -1;
	r->staging_fd = r->next_fd = -1;
	r->owner = getpid();
	r->img.fd = -1;
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	pthread_mutex_init(&r->sync_lock, NULL);
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->ckpt_lock, NULL);
	ret = cond_init_mono(&r->cond);
	if (!ret)
		ret = cond_init_mono(&r->work);
	if (!ret)
		ret = cond_init_mono(&r->ckpt_cond);
	if (!ret)
		ret = cond_init_mono(&r->seal_work);
	if (!ret)
		ret = opts_take(&r->opts, opts);
	if (ret) {
		region_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

static int take_lock(struct pt_region *r)
{
	int fd = pt_create_file(r->dirfd, PT_LOCK_NAME, O_RDWR);

	if (fd == -EEXIST)
		fd = pt_open_file(r->dirfd, PT_LOCK_NAME, O_RDWR, geteuid());
	if (fd < 0) {
		pt_log(PT_LOG_ERROR, "%s: cannot open the lock file: %s", r->dir, strerror(-fd));
		return fd;
	}
	r->lockfd = fd;
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int err = errno;

		if (err == EWOULDBLOCK) {
			pt_log(PT_LOG_ERROR, "%s: the region is open for writing by another process "
			       "(one writer per region)", r->dir);
			return -EBUSY;
		}
		return -err;
	}
	return 0;
}

static int open_dir(struct pt_region *r, const char *dir, bool create)
{
	int ret;

	if (create && mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r->dirfd < 0) {
		ret = -errno;
		pt_log(PT_LOG_ERROR, "%s: %s", dir, strerror(-ret));
		return ret;
	}
	return pt_check_dir(r->dirfd, dir);
}

static int map_memory(struct pt_region *r)
{
	int flags = MAP_SHARED;

	r->memfd = memfd_create("pagetrack-region", MFD_CLOEXEC);
	if (r->memfd < 0)
		return -errno;
	if (ftruncate(r->memfd, (off_t)r->size))
		return -errno;
	if (r->opts.address)
		flags |= MAP_FIXED_NOREPLACE;
	r->base = mmap(r->opts.address, r->size, PROT_READ | PROT_WRITE, flags, r->memfd, 0);
	if (r->base == MAP_FAILED) {
		r->base = NULL;
		return -errno;
	}
	if (r->opts.address && r->base != r->opts.address) {
		munmap(r->base, r->size);
		r->base = NULL;
		return -EEXIST;
	}
	return 0;
}

static int state_open(struct pt_region *r)
{
	struct pt_state *st;
	uint64_t incarnation = 0;
	int fd, ret;

	fd = pt_open_file(r->dirfd, PT_STATE_NAME, O_RDWR, geteuid());
	if (fd == -ENOENT)
		fd = pt_create_file(r->dirfd, PT_STATE_NAME, O_RDWR);
	if (fd < 0) {
		pt_log(PT_LOG_ERROR, "%s: state file: %s", r->dir, pt_strerror(fd));
		return fd;
	}
	r->statefd = fd;
	if (ftruncate(fd, (off_t)r->id.page_size))
		return -errno;
	/* Allocate the block before writing through the mapping: a store to
	 * a page the file system cannot allocate (a full disk) is a SIGBUS,
	 * not an error anyone could return. */
	ret = posix_fallocate(fd, 0, (off_t)r->id.page_size);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: cannot allocate the state file: %s", r->dir, strerror(ret));
		return -ret;
	}
	st = mmap(NULL, r->id.page_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (st == MAP_FAILED)
		return -errno;
	r->state = st;
	/* Replicas may have it mapped: change it in place, the history id
	 * and the epochs last so a reader sees a coherent block. */
	if (!memcmp(st->magic, PT_STATE_MAGIC, 8) && st->history_id == r->id.history_id)
		incarnation = st->incarnation;
	for (int i = 0; i < PT_RING_DESCS; i++)
		__atomic_store_n(&st->ring[i].epoch, 0, __ATOMIC_SEQ_CST);
	state_store(&st->staging_bytes, 0);
	state_store(&st->published, r->published);
	state_store(&st->logged, r->published);
	state_store(&st->recovered, r->published);
	state_store(&st->durable, r->durable);
	state_store(&st->checkpointed, r->checkpointed);
	state_store(&st->published_chain, r->chain);
	st->version = PT_FORMAT_VERSION;
	st->size = sizeof(*st);
	st->page_size = r->id.page_size;
	st->npages = r->id.npages;
	st->writer_pid = (uint64_t)getpid();
	st->base_address = (uint64_t)(uintptr_t)r->base;
	st->incarnation = incarnation + 1;
	st->last_error = 0;
	st->checkpoint_request = 0;
	state_store(&st->history_id, r->id.history_id);
	memcpy(st->magic, PT_STATE_MAGIC, 8);
	__atomic_add_fetch(&st->futex, 1, __ATOMIC_RELEASE);
	pt_futex_wake(&st->futex);
	/* Made durable once per open (never on the sync path): after a power
	 * loss the block must still name this history and a durable epoch
	 * no newer than the truth, or the next open could not tell whether
	 * durable epochs were lost (see state.c). */
	if (fsync(fd))
		pt_log(PT_LOG_WARN, "%s: fsync of the state file: %s", r->dir, strerror(errno));
	return 0;
}

static int region_start(struct pt_region *r)
{
	struct pt_tracker_opts to = {
		.sz = sizeof(to), .backend = r->opts.backend,
		.flags = (r->opts.flags & PT_REGION_ADAPTIVE ? PT_TRACK_ADAPTIVE : 0) |
			 (r->opts.flags & PT_REGION_CHUNKS ? PT_TRACK_CHUNKS : 0),
	};
	int ret;

	r->size = r->id.npages * r->id.page_size;
	ret = map_memory(r);
	if (ret)
		return ret;
	ret = pt_image_load_entries(&r->img);
	if (ret)
		return ret;
	ret = pt_recover(r);
	if (ret)
		return ret;
	ret = state_open(r);
	if (ret)
		return ret;
	r->pending = calloc((r->id.npages + 63) / 64, 8);
	r->q = calloc(QUEUE_SLOTS, sizeof(*r->q));
	if (!r->pending || !r->q)
		return -ENOMEM;
	if (!r->opts.staging_bytes) {
		r->opts.staging_bytes = DEFAULT_STAGING_BYTES;
		if (r->size + (1u << 20) < r->opts.staging_bytes)
			r->opts.staging_bytes = r->size + (1u << 20);
	}
	ret = staging_fits(r, r->opts.staging_bytes);
	if (ret)
		return ret;
	r->ring_size = (size_t)pt_round_up(r->opts.staging_bytes, r->id.page_size);
	ret = pt_staging_create(r);
	if (ret)
		return ret;
	ret = pt_tracker_open(&r->tracker, r->base, r->size, &to);
	if (ret)
		return ret;
	ret = pt_logwriter_start(r);
	if (ret)
		return ret;
	return pt_checkpointer_start(r);
}

static void stop_threads(struct pt_region *r)
{
	pt_checkpointer_stop(r);
	pt_logwriter_stop(r);
}

static int open_locked(struct pt_region *r)
{
	int ret = pt_image_open(&r->img, r->dirfd, true);

	if (ret) {
		if (ret == -EMEDIUMTYPE)
			pt_log(PT_LOG_ERROR, "%s: not a region (no image file)", r->dir);
		else
			pt_log(PT_LOG_ERROR, "%s: image: %s", r->dir, pt_strerror(ret));
		return ret;
	}
	r->id = r->img.id;
	ret = region_start(r);
	if (ret)
		stop_threads(r);
	return ret;
}

/* A new region's directory holds no log: segments left by an earlier one
 * would be of another history, and every later open would refuse them. */
static int no_segments(struct pt_region *r)
{
	struct pt_region_id any = { 0 };
	struct pt_segment_info *segs;
	size_t n;
	int ret;

	ret = pt_segments_list(r->dirfd, &any, &segs, &n);
	if (ret)
		return ret;
	free(segs);
	if (!n)
		return 0;
	pt_log(PT_LOG_ERROR, "%s: holds %zu log segment(s) of an earlier region: remove them first",
	       r->dir, n);
	return -EEXIST;
}

PT_EXPORT int pt_region_create(struct pt_region **out, const char *dir, size_t size,
			       const struct pt_region_opts *opts)
{
	long page_size = sysconf(_SC_PAGESIZE);
	struct pt_region *r;
	struct stat st;
	int ret;

	if (!out || !dir || !*dir)
		return -EINVAL;
	*out = NULL;
	if (page_size <= 0 || !size || size % (size_t)page_size ||
	    size / (size_t)page_size > UINT32_MAX)
		return -EINVAL;
	ret = region_alloc(&r, dir, opts);
	if (ret)
		return ret;
	ret = open_dir(r, dir, true);
	if (ret)
		goto err;
	ret = take_lock(r);
	if (ret)
		goto err;
	if (!fstatat(r->dirfd, PT_IMAGE_NAME, &st, AT_SYMLINK_NOFOLLOW)) {
		pt_log(PT_LOG_ERROR, "%s: already holds a region", dir);
		ret = -EEXIST;
		goto err;
	}
	ret = no_segments(r);
	if (ret)
		goto err;
	r->id.page_size = (uint32_t)page_size;
	r->id.page_shift = (unsigned int)__builtin_ctzl((unsigned long)page_size);
	r->id.npages = size / (size_t)page_size;
	/* A standby follows a region of the history it was given: its records
	 * are then the source's, byte for byte (the history is in each). */
	r->id.history_id = r->opts.history_id;
	if (!r->id.history_id &&
	    getrandom(&r->id.history_id, sizeof(r->id.history_id), 0) != sizeof(r->id.history_id)) {
		ret = -EIO;
		goto err;
	}
	ret = pt_image_create(r->dirfd, &r->id);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: cannot create the image: %s", dir, strerror(-ret));
		goto err;
	}
	ret = open_locked(r);
	if (ret) {
		/* Nothing was published: leave no half region behind, so
		 * that a create can be tried again (once space returns). */
		unlinkat(r->dirfd, PT_STATE_NAME, 0);
		unlinkat(r->dirfd, PT_IMAGE_NAME, 0);
		goto err;
	}
	*out = r;
	return 0;
err:
	region_free(r);
	return ret;
}

PT_EXPORT int pt_region_open(struct pt_region **out, const char *dir, const struct pt_region_opts *opts)
{
	struct pt_region *r;
	int ret;

	if (!out || !dir || !*dir)
		return -EINVAL;
	*out = NULL;
	ret = region_alloc(&r, dir, opts);
	if (ret)
		return ret;
	ret = open_dir(r, dir, false);
	/* A directory without an image is no region: say so before the lock
	 * file is created, so that trying leaves nothing behind. */
	if (!ret && faccessat(r->dirfd, PT_IMAGE_NAME, F_OK, AT_SYMLINK_NOFOLLOW) &&
	    errno == ENOENT) {
		pt_log(PT_LOG_ERROR, "%s: not a region (no image file)", r->dir);
		ret = -EMEDIUMTYPE;
	}
	if (!ret)
		ret = take_lock(r);
	if (!ret)
		ret = open_locked(r);
	if (ret) {
		region_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

PT_EXPORT void *pt_region_base(struct pt_region *r)
{
	return r ? r->base : NULL;
}

PT_EXPORT size_t pt_region_size(const struct pt_region *r)
{
	return r ? r->size : 0;
}

PT_EXPORT int pt_region_threads(struct pt_region *r, pid_t *tids, size_t n)
{
	uint32_t *ids[3];
	size_t count = 0;

	if (!r || (!tids && n))
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	if (r->seal_started)
		ids[count++] = &r->seal_tid;
	if (r->log_started)
		ids[count++] = &r->log_tid;
	if (r->ckpt_started)
		ids[count++] = &r->ckpt_tid;
	for (size_t i = 0; i < count && i < n; i++)
		tids[i] = pt_thread_id(ids[i]);
	return (int)count;
}

PT_EXPORT pt_epoch_t pt_region_epoch(const struct pt_region *r)
{
	if (!r)
		return -EINVAL;
	return (int64_t)__atomic_load_n(&r->published, __ATOMIC_ACQUIRE);
}

/*
 * Pages of ranges, or of the pending set and the pre-copy store, into the
 * staged record, ascending.  merged: the sync put what it collected into
 * the pending set, to be merged with what pre-copy passes hold; a page
 * held and not pending keeps an empty slot, which the seal fills from the
 * store (pt_precopy_fill).  streamed: the log thread writes each run as
 * soon as it is here; then it and this caller hash the runs together.
 */
static void stage_pages(struct pt_region *r, const struct pt_range *ranges, size_t nr,
			bool merged, bool streamed, struct record_slot *s)
{
	unsigned char *buf = s->buf;
	uint32_t count = s->page_count;
	size_t ps = r->id.page_size;
	uint64_t *index = (uint64_t *)(buf + sizeof(struct pt_record_header));
	unsigned char *data = buf + pt_record_head_length(count, ps);
	uint64_t head = pt_record_head_length(count, ps);
	uint32_t k = 0, told = 0;

	/* Zero the header page(s): the padding is part of the checksum. */
	memset(buf, 0, head);
	if (!merged) {
		/* Streamed, the log thread writes each run of STREAM_PAGES
		 * as soon as it is here. */
		for (size_t i = 0; i < nr; i++) {
			uint64_t first = ranges[i].first, left = ranges[i].count;

			while (left) {
				uint64_t n = streamed && left > STREAM_PAGES ? STREAM_PAGES : left;

				memcpy(data + (size_t)k * ps, (char *)r->base + first * ps, n * ps);
				for (uint64_t p = 0; p < n; p++)
					index[k++] = first + p;
				first += n;
				left -= n;
				if (streamed && k - told >= STREAM_PAGES) {
					pt_stream_staged(r, k);
					told = k;
				}
			}
		}
		if (streamed) {
			pt_stream_staged(r, k);
			pt_stream_sum(r, s);
		}
		return;
	}
	for (uint64_t w = 0; w < (r->id.npages + 63) / 64; w++) {
		uint64_t bits = r->pending[w] | pt_precopy_word(r, w);

		while (bits) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			if (pt_bit_test(r->pending, p))
				memcpy(data + (size_t)k * ps, (char *)r->base + p * ps, ps);
			index[k++] = p;
		}
	}
}

/* Pages of the pending set and the pre-copy store together. */
static uint64_t merged_count(const struct pt_region *r)
{
	uint64_t n = 0;

	for (uint64_t w = 0; w < (r->id.npages + 63) / 64; w++)
		n += (uint64_t)__builtin_popcountll(r->pending[w] | pt_precopy_word(r, w));
	return n;
}

static void pending_add(struct pt_region *r, const struct pt_range *ranges, size_t nr)
{
	for (size_t i = 0; i < nr; i++)
		for (uint64_t p = ranges[i].first; p < ranges[i].first + ranges[i].count; p++)
			if (!pt_bit_test(r->pending, p)) {
				pt_bit_set(r->pending, p);
				r->npending++;
			}
}

#define SYNC_STATS_V1	(offsetof(struct pt_sync_stats, collect_ns) + sizeof(uint64_t))
#define REGION_STATS_V1	(offsetof(struct pt_region_stats, last_error) + sizeof(int))

/* The figures of the sync that queued s (lock held): from_store of its
 * pages came from pre-copy passes, resynced pages they held it copied
 * again. */
static void count_sync(struct pt_region *r, const struct record_slot *s, uint64_t t0, uint64_t t1,
		       uint64_t from_store, uint64_t resynced)
{
	uint64_t stall = now_ns() - t0;

	r->last_sync.precopied = from_store;
	r->totals.precopy_resynced += resynced;
	r->totals.precopy_extra_faults += resynced;
	r->last_sync.epoch = s->epoch;
	r->last_sync.pages = s->page_count;
	r->last_sync.bytes = s->len;
	r->last_sync.stall_ns = stall;
	r->last_sync.collect_ns = t1 - t0;
	r->totals.syncs++;
	r->totals.pages += s->page_count;
	r->totals.bytes += s->len;
	r->totals.stall_ns_total += stall;
	if (stall > r->totals.stall_ns_max)
		r->totals.stall_ns_max = stall;
}

PT_EXPORT int pt_region_stats(struct pt_region *r, struct pt_sync_stats *last,
			      struct pt_region_stats *total)
{
	struct pt_region_stats t;
	struct pt_sync_stats l;

	/* The first version of each struct ends at the field named here:
	 * smaller is a mistake.  Fields added later are filled only for a
	 * caller whose sz has them; a newer caller's larger struct gets what
	 * this library knows. */
	if (!r || (last && last->sz < SYNC_STATS_V1) || (total && total->sz < REGION_STATS_V1))
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	l = r->last_sync;
	t = r->totals;
	t.published = r->published;
	t.durable = r->durable;
	t.checkpointed = r->checkpointed;
	t.last_error = r->error;
	pthread_mutex_unlock(&r->lock);
	t.direct_log = (r->opts.flags & PT_REGION_DIRECT_LOG) &&
		       !__atomic_load_n(&r->direct_refused, __ATOMIC_RELAXED);
	t.log_bytes = __atomic_load_n(&r->state->log_bytes, __ATOMIC_RELAXED);
	if (total && total->sz > REGION_STATS_V1) {
		/* Outside r->lock: the tracker takes its own. */
		struct pt_tracker_stats ts = { .sz = sizeof(ts) };

		if (!pt_tracker_stats(r->tracker, &ts)) {
			t.adaptive = ts.adaptive;
			t.fault_ns = ts.fault_ns;
			t.faulted = ts.faulted;
			t.hot_pages = ts.hot_pages;
			t.hot_reports = ts.hot_reports;
			t.faults_avoided = ts.faults_avoided;
			t.reported_unwritten = ts.reported_unwritten;
			t.chunks = ts.chunks;
			t.chunks_scanned = ts.chunks_scanned;
			t.chunks_total = ts.chunks_total;
			t.chunks_cooled = ts.chunks_cooled;
		}
	}
	if (last) {
		l.sz = last->sz;
		memcpy(last, &l, last->sz < sizeof(l) ? last->sz : sizeof(l));
	}
	if (total) {
		t.sz = total->sz;
		memcpy(total, &t, total->sz < sizeof(t) ? total->sz : sizeof(t));
	}
	return 0;
}

PT_EXPORT pt_epoch_t pt_region_sync(struct pt_region *r)
{
	const struct pt_range *ranges;
	struct record_slot *s;
	unsigned char *buf;
	uint64_t count, epoch, t0, t1, from_store = 0, resynced;
	size_t nr, len;
	bool merged, streamed;
	int n, ret;

	if (!r)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	pthread_mutex_lock(&r->sync_lock);
	t0 = now_ns();
	n = pt_writer_collect(r, &ranges, &nr);
	t1 = now_ns();
	if (n < 0) {
		pthread_mutex_unlock(&r->sync_lock);
		return n;
	}
	/* With pages pending or pre-copied, the record is their union with
	 * what this collect reported, which then comes from memory. */
	resynced = pt_precopy_count_held(r, ranges, nr);
	merged = r->npending || pt_precopy_held(r);
	if (merged) {
		pending_add(r, ranges, nr);
		nr = 0;
		count = merged_count(r);
	} else {
		count = (uint64_t)n;
	}

	pthread_mutex_lock(&r->lock);
	if (!count && r->assigned) {
		epoch = r->assigned;
		pthread_mutex_unlock(&r->lock);
		pthread_mutex_unlock(&r->sync_lock);
		goto wait;
	}
	len = (size_t)pt_record_length(count, r->id.page_size);
	for (;;) {
		if (r->error) {
			ret = r->error;
			goto fail;
		}
		s = slot_at(r, r->q_tail);
		buf = pt_staging_alloc(r, len, s);
		if (buf)
			break;
		if (len > r->ring_size && r->q_tail - r->q_head < QUEUE_SLOTS) {
			/* No memory for a delta larger than the staging. */
			ret = -ENOMEM;
			goto fail;
		}
		/* Staging is full of records not yet durable: backpressure,
		 * whatever the policy. */
		if (r->durable_request < r->assigned)
			r->durable_request = r->assigned;
		pthread_cond_signal(&r->work);
		pthread_cond_wait(&r->cond, &r->lock);
	}
	s->len = len;
	s->page_count = (uint32_t)count;
	s->sealed = false;
	s->summed = false;
	s->epoch = r->assigned + 1;	/* this sync's, under sync_lock */
	/* Pages from pre-copy passes are copied in at the seal: not before. */
	streamed = !merged && pt_stream_start(r, s);
	pthread_mutex_unlock(&r->lock);

	stage_pages(r, ranges, nr, merged, streamed, s);
	from_store = pt_precopy_hand(r, s);
	if (r->npending) {
		memset(r->pending, 0, (r->id.npages + 63) / 64 * 8);
		r->npending = 0;
	}

	pthread_mutex_lock(&r->lock);
	epoch = ++r->assigned;
	s->epoch = epoch;
	r->q_tail++;
	count_sync(r, s, t0, t1, from_store, resynced);
	if (r->opts.durability == PT_DURABLE_ON_SYNC && !r->sealing && r->q_seal + 1 == r->q_tail) {
		/*
		 * This caller waits for durability anyway: it checksums and
		 * publishes its own record rather than wake the seal thread
		 * and sleep (one thread hand-off less on the durable path).
		 * Without that wait the checksum stays off the sync path.
		 */
		r->sealing = true;
		pthread_mutex_unlock(&r->sync_lock);
		pt_writer_seal(r, s);
		if (r->q_seal < r->q_tail)
			pthread_cond_signal(&r->seal_work);
		pthread_mutex_unlock(&r->lock);
		goto wait;
	}
	pthread_cond_signal(&r->seal_work);
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_unlock(&r->sync_lock);
wait:
	if (r->opts.durability == PT_DURABLE_ON_SYNC) {
		ret = pt_region_wait(r, epoch, PT_LEVEL_DURABLE, -1);
		if (ret)
			return ret;
	}
	return (int64_t)epoch;
fail:
	pthread_mutex_unlock(&r->lock);
	if (!merged)
		pending_add(r, ranges, nr);
	pthread_mutex_unlock(&r->sync_lock);
	return ret;
}

PT_EXPORT uint64_t pt_region_history(const struct pt_region *r)
{
	return r ? r->id.history_id : 0;
}

PT_EXPORT int pt_region_chain(const struct pt_region *r, pt_epoch_t *epoch, uint64_t *chain)
{
	if (!r || !epoch || !chain)
		return -EINVAL;
	/* The state block stores the chain before the epoch: read the epoch
	 * on both sides of the chain until they agree. */
	for (;;) {
		uint64_t e = __atomic_load_n(&r->state->published, __ATOMIC_ACQUIRE);
		uint64_t c = __atomic_load_n(&r->state->published_chain, __ATOMIC_ACQUIRE);

		if (__atomic_load_n(&r->state->published, __ATOMIC_ACQUIRE) == e) {
			*epoch = (pt_epoch_t)e;
			*chain = c;
			return 0;
		}
	}
}

/* PT_LEVEL_REPLICATED: what a publisher reports in the replicated file. */
static int wait_replicated(struct pt_region *r, uint64_t epoch, int timeout_ms)
{
	uint64_t deadline = timeout_ms >= 0 ? now_ns() + (uint64_t)timeout_ms * 1000000ull : 0;
	int ret;

	pthread_mutex_lock(&r->lock);
	if (epoch > r->assigned) {
		pthread_mutex_unlock(&r->lock);
		return -EINVAL;
	}
	if (!r->replicated) {
		ret = pt_replicated_openat(&r->replicated, r->dirfd);
		if (ret) {
			pthread_mutex_unlock(&r->lock);
			return ret;
		}
	}
	pthread_mutex_unlock(&r->lock);
	for (;;) {
		int left = -1;

		if (timeout_ms >= 0) {
			uint64_t now = now_ns();

			left = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
		}
		ret = pt_replicated_wait(r->replicated, epoch, left);
		if (ret != -ETIMEDOUT || !left || timeout_ms < 0)
			return ret;
	}
}

PT_EXPORT int pt_region_wait(struct pt_region *r, pt_epoch_t wanted, enum pt_level level,
			     int timeout_ms)
{
	uint64_t epoch = (uint64_t)wanted;	/* used once wanted >= 0 is checked */
	uint64_t deadline = 0;
	struct timespec ts;
	int ret = 0;

	/* -1 is forever; any other negative is a caller's mistake (a
	 * computed remaining time gone below zero), not "forever". */
	if (!r || wanted < 0 || level < PT_LEVEL_PUBLISHED || level > PT_LEVEL_REPLICATED ||
	    timeout_ms < -1)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;	/* the threads that advance the levels are the parent's */
	if (level == PT_LEVEL_REPLICATED)
		return wait_replicated(r, epoch, timeout_ms);
	if (timeout_ms >= 0)
		deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	pthread_mutex_lock(&r->lock);
	if (epoch > r->assigned) {
		ret = -EINVAL;
		goto out;
	}
	for (;;) {
		uint64_t cur = level == PT_LEVEL_PUBLISHED ? r->published :
			level == PT_LEVEL_DURABLE ? r->durable : r->checkpointed;

		if (cur >= epoch)
			break;
		if (r->error) {
			ret = r->error;
			break;
		}
		if (level == PT_LEVEL_CHECKPOINTED) {
			int64_t e;

			pthread_mutex_unlock(&r->lock);
			e = pt_checkpoint_now(r);
			pthread_mutex_lock(&r->lock);
			if (e < 0) {
				ret = (int)e;
				break;
			}
			if (r->checkpointed >= epoch)
				break;
		} else if (level == PT_LEVEL_DURABLE && r->durable_request < epoch) {
			r->durable_request = epoch;
			pthread_cond_signal(&r->work);
		}
		if (timeout_ms < 0) {
			pthread_cond_wait(&r->cond, &r->lock);
		} else {
			if (now_ns() >= deadline) {
				ret = -ETIMEDOUT;
				break;
			}
			deadline_ts(&ts, deadline);
			pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		}
	}
out:
	pthread_mutex_unlock(&r->lock);
	return ret;
}

/*
 * pt_region_close() in a child forked from the writer.  The child has
 * none of the writer's threads, no staging memory (MADV_DONTFORK) and
 * shares the state block and the lock with the parent, which goes on
 * writing: drop the child's descriptors and mappings and touch nothing
 * shared.  The flock stays the parent's: it belongs to the open file
 * description, which the parent still holds.
 */
static void forget_in_child(struct pt_region *r)
{
	int fds[] = { r->seg_fd, r->seg_dfd, r->statefd, r->memfd, r->lockfd, r->dirfd,
		      r->staging_fd, r->img.fd, r->next_fd };

	pt_tracker_close(r->tracker);	/* a child-safe close, see tracker.c */
	if (r->base && r->base != MAP_FAILED)
		munmap(r->base, r->size);
	if (r->state)
		munmap(r->state, r->id.page_size);
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	/* The rest (queue, image table, pending set) is heap or
	 * DONTFORK memory of this process's copy: leaked rather than walked,
	 * since walking the queue would read staging memory the child lacks. */
	free(r);
}

PT_EXPORT int pt_region_close(struct pt_region *r)
{
	int ret = 0;

	if (!r)
		return 0;
	if (getpid() != r->owner) {
		forget_in_child(r);
		return 0;
	}
	stop_threads(r);
	if (r->durable < r->assigned)
		ret = r->error ? r->error : -EIO;
	if (ret)
		pt_log(PT_LOG_ERROR, "%s: closed with epochs %" PRIu64 "..%" PRIu64 " not durable: %s",
		       r->dir, r->durable + 1, r->assigned, strerror(-ret));
	region_free(r);
	return ret;
}
