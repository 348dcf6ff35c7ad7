/* SPDX-License-Identifier: MIT */
/*
 * region.c - the writer: a tracked memfd region, sync into the log, the
 * seal thread (checksum, publish), the log thread (append, fdatasync), the
 * checkpoint thread, and recovery on open.
 *
 * The sync path (pt_region_sync) does only: collect with reset, copy the
 * dirty pages into pre-faulted staging memory (a ring, reused), enqueue.
 * Everything else happens on two threads: the seal thread checksums each
 * record (XXH3, chain) and publishes it from the staging memory, a memfd
 * replicas map (state block descriptor + futex wake); the log thread writes
 * it to the segment with one pwrite and fdatasyncs as the durability policy
 * says.  The writer never waits for a replica: replicas only read files and
 * memory.
 *
 * The threads run SCHED_BATCH, so waking one never preempts the writer on
 * its CPU.  A durable-on-sync caller, which waits for the fdatasync anyway,
 * seals its own record when the seal thread has nothing to do.
 *
 * A record stays in staging memory until it is durable.  If a write or an
 * fdatasync fails the segment is suspect (after a failed fdatasync Linux may
 * have dropped the dirty pages it could not write), so the log thread starts
 * a new segment at the oldest record not yet durable and writes every such
 * record again, byte for byte; durable only ever advances after an
 * fdatasync that succeeded.  Until then the error is latched: syncs fail
 * with it and put their pages in the pending set, so nothing is lost.
 *
 * Lock order: sync_lock before lock; ckpt_lock before lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format.h"

#define DEFAULT_DURABLE_INTERVAL_MS	10
#define DEFAULT_CHECKPOINT_MS		1000
#define DEFAULT_RETAIN_BYTES		(64ull << 20)
#define DEFAULT_SEGMENT_BYTES		(64ull << 20)
#define DEFAULT_STAGING_BYTES		(64ull << 20)
#define QUEUE_SLOTS			4096
#define RETRY_MS			50

struct record_slot {
	unsigned char *buf;
	size_t len;
	size_t ring_off;
	uint64_t epoch;
	uint32_t page_count;
	bool sealed;
	bool oversize;		/* own mapping, not in the ring */
};

struct pt_region {
	char dir[256];
	pid_t owner;		/* the writer process: a forked child is not one */
	int dirfd, lockfd, memfd, statefd;
	struct pt_state *state;
	struct pt_region_id id;
	struct pt_region_opts opts;
	void *base;
	size_t size;
	struct pt_tracker *tracker;

	/* sync path (sync_lock) */
	pthread_mutex_t sync_lock;
	uint64_t *pending;	/* pages taken by a failed sync */
	uint64_t npending;

	/* queue and levels (lock) */
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* levels moved, space freed */
	pthread_cond_t work;	/* something for the log thread */
	pthread_cond_t seal_work;	/* something for the seal thread */
	struct record_slot *q;
	uint64_t q_head;	/* oldest record not durable */
	uint64_t q_write;	/* next record to write */
	uint64_t q_seal;	/* next record to seal (q_write <= q_seal <= q_tail) */
	bool sealing;		/* someone seals q_seal now (owns chain) */
	uint64_t q_tail;	/* next free slot */
	unsigned char *ring;	/* staging memory: a memfd replicas map */
	size_t ring_size;
	size_t ring_next;
	int staging_fd;		/* the memfd behind ring, -1: private memory */
	uint64_t assigned;	/* newest epoch handed out */
	uint64_t published, durable, checkpointed;
	uint64_t logged;	/* newest epoch written to the log file */
	uint64_t durable_request;
	uint64_t publish_time_ns;	/* first publish not yet durable */
	int error;		/* latched log error, 0 if none */
	uint64_t retry_ns;
	bool stop;

	/* log thread only */
	int seg_fd;
	bool seg_suspect;
	uint64_t seg_seq;	/* seq of seg_fd; the next segment gets seg_seq + 1 */
	uint64_t seg_off;
	uint64_t chain;		/* header checksum of the newest sealed record */
	pthread_t log_thread;
	bool log_started;
	pthread_t seal_thread;
	bool seal_started;

	/* checkpoint */
	pthread_mutex_t ckpt_lock;
	struct pt_image img;
	pthread_t ckpt_thread;
	bool ckpt_started;
	bool ckpt_stop;
	pthread_cond_t ckpt_cond;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void deadline_ts(struct timespec *ts, uint64_t mono_ns)
{
	/* The condition variables run on CLOCK_MONOTONIC. */
	ts->tv_sec = (time_t)(mono_ns / 1000000000ull);
	ts->tv_nsec = (long)(mono_ns % 1000000000ull);
}

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

static void state_store(uint64_t *field, uint64_t v)
{
	__atomic_store_n(field, v, __ATOMIC_RELEASE);
}

/* ---- options ------------------------------------------------------------ */

#define MAX_SEGMENT_BYTES		(1ull << 40)
#define MAX_STAGING_BYTES		(1ull << 40)

static int opts_take(struct pt_region_opts *o, const struct pt_region_opts *in)
{
	int ret;

	memset(o, 0, sizeof(*o));
	o->sz = sizeof(*o);
	ret = pt_opts_take(o, sizeof(*o), in, offsetof(struct pt_region_opts, durable_interval_ms));
	if (ret)
		return ret;
	if ((unsigned int)o->durability > PT_DURABLE_NONE ||
	    (o->flags & ~(PT_REGION_NO_CHECKPOINT_THREAD | PT_REGION_ACCEPT_LOSS)) ||
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

/* ---- staging ring ---------------------------------------------------------- */

static struct record_slot *slot_at(struct pt_region *r, uint64_t i)
{
	return &r->q[i % QUEUE_SLOTS];
}

/* Space for a record of len bytes at q_tail; lock held.  NULL: full. */
static unsigned char *ring_alloc(struct pt_region *r, size_t len, struct record_slot *s)
{
	size_t start = 0, off;
	bool live = false;

	if (r->q_tail - r->q_head >= QUEUE_SLOTS)
		return NULL;
	s->oversize = false;
	if (len > r->ring_size) {
		/* Bigger than all the staging memory: a mapping of its own,
		 * paid for by this (huge) sync only. */
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return NULL;
		madvise(p, len, MADV_DONTFORK);	/* see staging_create() */
		s->oversize = true;
		s->buf = p;
		return p;
	}
	for (uint64_t i = r->q_head; i < r->q_tail; i++) {
		if (!slot_at(r, i)->oversize) {
			start = slot_at(r, i)->ring_off;
			live = true;
			break;
		}
	}
	if (!live) {
		off = 0;
	} else if (r->ring_next > start) {
		if (r->ring_size - r->ring_next >= len)
			off = r->ring_next;
		else if (start >= len)
			off = 0;
		else
			return NULL;
	} else {
		if (start - r->ring_next >= len)
			off = r->ring_next;
		else
			return NULL;
	}
	r->ring_next = off + len;
	s->ring_off = off;
	s->buf = r->ring + off;
	return s->buf;
}

static void slot_release(struct pt_region *r, struct record_slot *s)
{
	struct pt_ring_desc *d = &r->state->ring[s->epoch % PT_RING_DESCS];

	/* Replicas reading it from staging memory must see it gone before
	 * the space is written again (the seqlock of struct pt_ring_desc). */
	if (!s->oversize && __atomic_load_n(&d->epoch, __ATOMIC_RELAXED) == s->epoch) {
		__atomic_store_n(&d->epoch, 0, __ATOMIC_SEQ_CST);
		pt_fence();
	}
	if (s->oversize)
		munmap(s->buf, s->len);
	s->buf = NULL;
	s->oversize = false;
}

/* ---- the log thread ------------------------------------------------------ */

static void latch_error(struct pt_region *r, int err, const char *what)
{
	if (!r->error)
		pt_log(PT_LOG_ERROR, "%s: %s of the log failed: %s; will write the records again "
		       "into a new segment", r->dir, what, strerror(-err));
	r->error = err;
	r->seg_suspect = true;
	r->q_write = r->q_head;		/* everything not durable is written again */
	r->retry_ns = now_ns() + RETRY_MS * 1000000ull;
	state_store(&r->state->last_error, (uint64_t)-err);
	pthread_cond_broadcast(&r->cond);
}

/* Records up to epoch are durable; lock held. */
static void mark_durable(struct pt_region *r, uint64_t epoch)
{
	if (epoch <= r->durable)
		return;
	r->durable = epoch;
	while (r->q_head < r->q_write && slot_at(r, r->q_head)->epoch <= epoch) {
		slot_release(r, slot_at(r, r->q_head));
		r->q_head++;
	}
	if (r->durable >= r->logged) {
		r->publish_time_ns = 0;
		if (r->error && r->q_write == r->q_tail) {
			pt_log(PT_LOG_INFO, "%s: log writes work again", r->dir);
			r->error = 0;
			state_store(&r->state->last_error, 0);
		}
	}
	state_store(&r->state->durable, epoch);
	pthread_cond_broadcast(&r->cond);
}

/* Epoch of s is published; in staging memory too if in_ring.  Lock held. */
static void publish(struct pt_region *r, struct record_slot *s, bool in_ring)
{
	if (in_ring) {
		struct pt_ring_desc *d = &r->state->ring[s->epoch % PT_RING_DESCS];

		__atomic_store_n(&d->epoch, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&d->offset, s->ring_off, __ATOMIC_RELAXED);
		__atomic_store_n(&d->length, s->len, __ATOMIC_RELAXED);
		__atomic_store_n(&d->epoch, s->epoch, __ATOMIC_RELEASE);
	}
	/* pt_region_epoch() reads it without the lock. */
	__atomic_store_n(&r->published, s->epoch, __ATOMIC_RELEASE);
	if (!r->publish_time_ns)
		r->publish_time_ns = now_ns();
	state_store(&r->state->published_chain, ((struct pt_record_header *)s->buf)->header_checksum);
	state_store(&r->state->published, s->epoch);
	__atomic_add_fetch(&r->state->futex, 1, __ATOMIC_RELEASE);
	pt_futex_wake(&r->state->futex);
	pthread_cond_broadcast(&r->cond);
}

/* Close the current segment (fdatasync unless suspect) and start one at
 * first_epoch.  Log thread, lock not held. */
static int roll_segment(struct pt_region *r, uint64_t first_epoch)
{
	int fd, ret;

	if (r->seg_fd >= 0) {
		if (!r->seg_suspect) {
			/* A reader continues into the next segment only from
			 * a complete one: make this one durable first. */
			ret = pt_io->fdatasync(r->seg_fd);
			if (ret)
				return ret;
			pthread_mutex_lock(&r->lock);
			mark_durable(r, r->logged);
			pthread_mutex_unlock(&r->lock);
		}
		pt_io->close(r->seg_fd);
		r->seg_fd = -1;
	}
	fd = pt_segment_create(r->dirfd, &r->id, r->seg_seq + 1, first_epoch);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&r->lock);
	r->seg_seq++;
	pthread_mutex_unlock(&r->lock);
	ret = pt_io->fsync(r->dirfd);
	if (ret) {
		pt_io->close(fd);
		return ret;
	}
	r->seg_fd = fd;
	r->seg_off = r->id.page_size;
	r->seg_suspect = false;
	return 0;
}

static bool want_fsync(struct pt_region *r, uint64_t now)
{
	if (r->durable >= r->logged)
		return false;
	if (r->durable_request > r->durable || r->stop || r->error)
		return true;
	if (r->opts.durability == PT_DURABLE_BACKGROUND && r->publish_time_ns &&
	    now - r->publish_time_ns >= r->opts.durable_interval_ms * 1000000ull)
		return true;
	/* Records waiting for space in the staging ring. */
	return r->q_tail - r->q_head >= QUEUE_SLOTS / 2;
}

/*
 * The library's threads run SCHED_BATCH: a thread of that policy woken by
 * pt_region_sync() does not preempt the writer at once (CFS/EEVDF wake-up
 * preemption), so on a busy CPU the writer's stall no longer holds the seal
 * thread's checksum or the log thread's pwrite; they run on another CPU or
 * when the writer sleeps or its slice ends.  Only from the default policy: a
 * real-time or idle policy the application chose is kept.
 */
static void background_policy(pthread_t thread)
{
	struct sched_param sp = { 0 };
	int policy;

	/* Set by the creator, before the thread can matter: glibc's thread
	 * attributes take no SCHED_BATCH. */
	if (!pthread_getschedparam(thread, &policy, &sp) && policy == SCHED_OTHER) {
		sp.sched_priority = 0;
		pthread_setschedparam(thread, SCHED_BATCH, &sp);
	}
}

/*
 * Seal record q_seal (the caller set r->sealing under the lock, which makes
 * it the one sealer: records are sealed in epoch order, each naming the
 * one before in its chain), then, lock held again, publish it.  Sealed
 * once: a record written again after an error is the same bytes.
 */
static void seal_one(struct pt_region *r, struct record_slot *s)
{
	pthread_mutex_unlock(&r->lock);
	pt_record_fill(s->buf, &r->id, s->epoch, s->page_count, r->chain);
	pt_record_seal(s->buf);
	r->chain = ((struct pt_record_header *)s->buf)->header_checksum;
	pthread_mutex_lock(&r->lock);
	s->sealed = true;
	r->q_seal++;
	r->sealing = false;
	/* In order only: after a record too large for staging memory, the
	 * log thread publishes as it writes. */
	if (!s->oversize && s->epoch == r->published + 1)
		publish(r, s, true);
	pthread_cond_signal(&r->work);
}

/*
 * The seal thread: checksums each record, in epoch order, and publishes it
 * from staging memory at once.  It never touches the file, so replicas do
 * not wait behind a long write or an fdatasync of the log thread.  (A
 * durable-on-sync caller that will wait anyway seals its own record when
 * this thread is idle: see pt_region_sync.)
 */
static void *seal_main(void *arg)
{
	struct pt_region *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		if (r->q_seal < r->q_tail && !r->sealing) {
			r->sealing = true;
			seal_one(r, slot_at(r, r->q_seal));
			continue;
		}
		if (r->stop)
			break;
		pthread_cond_wait(&r->seal_work, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* The log thread: writes sealed records, fdatasyncs, recovers from errors. */
static void *log_main(void *arg)
{
	struct pt_region *r = arg;
	struct timespec ts;
	int ret;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		uint64_t now = now_ns();

		if (r->error && now < r->retry_ns) {
			if (r->stop)
				break;
			deadline_ts(&ts, r->retry_ns);
			pthread_cond_timedwait(&r->work, &r->lock, &ts);
			continue;
		}
		if (r->q_write < r->q_seal) {
			struct record_slot *s = slot_at(r, r->q_write);
			bool roll = r->seg_fd < 0 || r->seg_suspect ||
				(r->seg_off > r->id.page_size &&
				 r->seg_off + s->len > r->opts.segment_bytes);

			pthread_mutex_unlock(&r->lock);
			ret = roll ? roll_segment(r, s->epoch) : 0;
			if (!ret)
				ret = pt_write_full(r->seg_fd, s->buf, s->len, (off_t)r->seg_off);
			pthread_mutex_lock(&r->lock);
			if (ret) {
				latch_error(r, ret, roll ? "starting a segment" : "a write");
				continue;
			}
			r->seg_off += s->len;
			r->q_write++;
			if (s->epoch > r->logged) {
				r->logged = s->epoch;
				state_store(&r->state->logged, s->epoch);
				__atomic_add_fetch(&r->state->log_bytes, s->len, __ATOMIC_RELAXED);
			}
			if (s->epoch > r->published) {
				publish(r, s, !s->oversize);
				/* The records sealed behind a record too large for
				 * staging memory waited for it: publish them from
				 * staging memory now, not as they are written. */
				for (uint64_t i = r->q_write; i < r->q_seal; i++) {
					struct record_slot *n = slot_at(r, i);

					if (n->oversize || n->epoch != r->published + 1)
						break;
					publish(r, n, true);
				}
			} else {
				/* For replicas that read the file. */
				__atomic_add_fetch(&r->state->futex, 1, __ATOMIC_RELEASE);
				pt_futex_wake(&r->state->futex);
			}
			pthread_cond_broadcast(&r->cond);
			continue;
		}
		if (want_fsync(r, now)) {
			uint64_t target = r->logged;
			int fd = r->seg_fd;

			pthread_mutex_unlock(&r->lock);
			ret = fd >= 0 ? pt_io->fdatasync(fd) : 0;
			pthread_mutex_lock(&r->lock);
			if (ret)
				latch_error(r, ret, "fdatasync");
			else
				mark_durable(r, target);
			continue;
		}
		if (r->stop && r->q_seal == r->q_tail)
			break;
		if (r->opts.durability == PT_DURABLE_BACKGROUND && r->publish_time_ns) {
			deadline_ts(&ts, r->publish_time_ns + r->opts.durable_interval_ms * 1000000ull);
			pthread_cond_timedwait(&r->work, &r->lock, &ts);
		} else {
			pthread_cond_wait(&r->work, &r->lock);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* ---- checkpoint ---------------------------------------------------------- */

/* Drop segments wholly at or below the image's epoch, keeping retain_bytes. */
static void drop_segments(struct pt_region *r, uint64_t checkpointed)
{
	struct pt_segment_info *segs;
	uint64_t total = 0, current;
	size_t n;

	if (pt_segments_list(r->dirfd, &r->id, &segs, &n))
		return;
	pthread_mutex_lock(&r->lock);
	current = r->seg_seq;
	pthread_mutex_unlock(&r->lock);
	for (size_t i = 0; i < n; i++)
		total += segs[i].size;
	for (size_t i = 0; i + 1 < n; i++) {
		char name[64];

		if (segs[i].seq >= current || segs[i + 1].bad ||
		    segs[i + 1].first_epoch > checkpointed + 1)
			break;
		if (total - segs[i].size < r->opts.retain_bytes)
			break;
		pt_segment_name(name, sizeof(name), segs[i].seq);
		if (pt_io->unlinkat(r->dirfd, name))
			break;
		total -= segs[i].size;
		pt_log(PT_LOG_DEBUG, "%s: dropped %s (epochs %" PRIu64 "..%" PRIu64 ")", r->dir,
		       name, segs[i].first_epoch, segs[i + 1].first_epoch - 1);
	}
	state_store(&r->state->log_bytes, total);
	free(segs);
}

static int64_t checkpoint_now(struct pt_region *r)
{
	uint64_t target;
	int64_t e;

	pthread_mutex_lock(&r->ckpt_lock);
	pthread_mutex_lock(&r->lock);
	/* Only durable records go into the image: make what is published
	 * durable first, whatever the policy. */
	if (r->durable < r->assigned) {
		uint64_t want = r->assigned;

		if (r->durable_request < want)
			r->durable_request = want;
		pthread_cond_signal(&r->work);
		while (r->durable < want && !r->error && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
	}
	target = r->durable;
	pthread_mutex_unlock(&r->lock);
	e = pt_image_checkpoint(&r->img, r->dirfd, target);
	if (e >= 0) {
		pthread_mutex_lock(&r->lock);
		if ((uint64_t)e > r->checkpointed) {
			r->checkpointed = (uint64_t)e;
			state_store(&r->state->checkpointed, (uint64_t)e);
		}
		pthread_cond_broadcast(&r->cond);
		pthread_mutex_unlock(&r->lock);
		drop_segments(r, (uint64_t)e);
	}
	pthread_mutex_unlock(&r->ckpt_lock);
	return e;
}

static void *ckpt_main(void *arg)
{
	struct pt_region *r = arg;
	struct timespec ts;

	pthread_mutex_lock(&r->ckpt_lock);
	while (!r->ckpt_stop) {
		uint64_t req;
		bool due;

		deadline_ts(&ts, now_ns() + r->opts.checkpoint_interval_ms * 1000000ull);
		pthread_cond_timedwait(&r->ckpt_cond, &r->ckpt_lock, &ts);
		if (r->ckpt_stop)
			break;
		pthread_mutex_unlock(&r->ckpt_lock);
		req = __atomic_load_n(&r->state->checkpoint_request, __ATOMIC_ACQUIRE);
		pthread_mutex_lock(&r->lock);
		due = r->published > r->checkpointed || req > r->checkpointed;
		pthread_mutex_unlock(&r->lock);
		if (due)
			checkpoint_now(r);
		pthread_mutex_lock(&r->ckpt_lock);
	}
	pthread_mutex_unlock(&r->ckpt_lock);
	return NULL;
}

PT_EXPORT int64_t pt_region_checkpoint(struct pt_region *r)
{
	if (!r)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	return checkpoint_now(r);
}

/* ---- open, create, recovery -------------------------------------------- */

static void region_free(struct pt_region *r)
{
	if (r->tracker)
		pt_tracker_close(r->tracker);
	if (r->base && r->base != MAP_FAILED)
		munmap(r->base, r->size);
	if (r->q) {
		for (uint64_t i = r->q_head; i < r->q_tail; i++)
			slot_release(r, slot_at(r, i));
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
	if (r->statefd >= 0)
		close(r->statefd);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->lockfd >= 0)
		close(r->lockfd);	/* releases the flock */
	if (r->dirfd >= 0)
		close(r->dirfd);
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
	r->dirfd = r->lockfd = r->memfd = r->statefd = r->seg_fd = r->staging_fd = -1;
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
	 * durable epochs were lost (see reach.c). */
	if (fsync(fd))
		pt_log(PT_LOG_WARN, "%s: fsync of the state file: %s", r->dir, strerror(errno));
	return 0;
}

/* Make every record recovery read durable: after a process crash they may
 * still be only in the page cache. */
static int sync_segments(struct pt_region *r, uint64_t *max_seq)
{
	struct pt_segment_info *segs;
	struct stat st;
	size_t n;
	int ret;

	*max_seq = 0;
	ret = pt_segments_list(r->dirfd, &r->id, &segs, &n);
	if (ret)
		return ret;
	for (size_t i = 0; i < n && !ret; i++) {
		char name[64];
		int fd;

		if (segs[i].seq > *max_seq)
			*max_seq = segs[i].seq;
		pt_segment_name(name, sizeof(name), segs[i].seq);
		if (segs[i].bad && segs[i].size <= r->id.page_size) {
			/* Created, then a crash before its header was written:
			 * it never held a record. */
			pt_io->unlinkat(r->dirfd, name);
			continue;
		}
		fd = pt_io->openat(r->dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
			pt_io->close(fd);
			continue;	/* listed bad: never read */
		}
		ret = pt_io->fdatasync(fd);
		pt_io->close(fd);
	}
	free(segs);
	return ret;
}

/* Set aside the segments after the one recovery stopped in. */
static void orphan_after(struct pt_region *r, uint64_t seq)
{
	struct pt_segment_info *segs;
	size_t n;

	if (pt_segments_list(r->dirfd, &r->id, &segs, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		char from[64], to[64];

		if (segs[i].seq <= seq)
			continue;
		pt_segment_name(from, sizeof(from), segs[i].seq);
		snprintf(to, sizeof(to), "orphan-%016" PRIx64 ".seg", segs[i].seq);
		if (!pt_io->renameat(r->dirfd, from, to))
			pt_log(PT_LOG_WARN, "%s: %s follows the corrupt record: kept as %s, not used",
			       r->dir, from, to);
	}
	free(segs);
}

static int recover(struct pt_region *r)
{
	struct pt_log_reader rd;
	struct pt_record rec;
	uint64_t *suspect = NULL, nsuspect = 0, copied = 0, max_seq = 0;
	size_t ps = r->id.page_size;
	struct pt_dir_reach reach = { 0 };
	int ret, judged;

	suspect = calloc((r->id.npages + 63) / 64, 8);
	if (!suspect)
		return -ENOMEM;
	ret = pt_image_copy_newer(&r->img, 0, r->base, suspect, &nsuspect, &copied);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: cannot read the image: %s", r->dir, pt_log_strerror(ret));
		goto out;
	}
	pt_log_reader_init(&rd, r->dirfd, &r->id, r->img.hdr.epoch + 1, r->img.hdr.chain);
	while ((ret = pt_log_next(&rd, UINT64_MAX, &rec)) > 0) {
		const struct pt_record_header *h = rec.hdr;

		for (uint32_t i = 0; i < h->page_count; i++) {
			memcpy((char *)r->base + rec.index[i] * ps, rec.data + (size_t)i * ps, ps);
			if (nsuspect && pt_bit_clear(suspect, rec.index[i]))
				nsuspect--;
		}
	}
	r->published = rd.next_epoch - 1;
	r->chain = rd.chain;
	reach.reached = r->published;
	judged = pt_reach_judge(r->dirfd, &r->id, &reach);
	if (judged == -ESTALE) {
		pt_log(PT_LOG_ERROR, "%s: %" PRIu64 " file(s) of another history than the image "
		       "(%016" PRIx64 "): a file copied from another region? refusing", r->dir,
		       reach.foreign, r->id.history_id);
		ret = -ESTALE;
		pt_log_reader_free(&rd);
		goto out;
	}
	if (judged == -ENOTRECOVERABLE) {
		char what[160];

		if (reach.state_error)
			snprintf(what, sizeof(what), "the state block is damaged (%s): what was "
				 "durable is unknown", pt_strerror(reach.state_error));
		else
			snprintf(what, sizeof(what), "durable epochs %" PRIu64 "..%" PRIu64
				 " cannot be reached", r->published + 1, reach.durable);
		if (!(r->opts.flags & PT_REGION_ACCEPT_LOSS)) {
			pt_log(PT_LOG_ERROR, "%s: %s (the image and log reach epoch %" PRIu64
			       "%s%s); open with PT_REGION_ACCEPT_LOSS (pagetrack recover "
			       "--accept-loss) to go on from there", r->dir, what, r->published,
			       ret < 0 ? ", then: " : "", ret < 0 ? pt_strerror(ret) : "");
			ret = -ENOTRECOVERABLE;
			pt_log_reader_free(&rd);
			goto out;
		}
		pt_log(PT_LOG_ERROR, "%s: %s; accepting the loss as asked: the region goes on "
		       "from epoch %" PRIu64, r->dir, what, r->published);
	} else if (judged) {
		ret = judged;
		pt_log_reader_free(&rd);
		goto out;
	}
	if (ret < 0) {
		pt_log(PT_LOG_WARN, "%s: recovery stops at epoch %" PRIu64 " in segment %016" PRIx64
		       " at offset %" PRIu64 ": %s; recovered epoch %" PRIu64, r->dir,
		       rd.next_epoch, rd.error_seq, rd.error_offset, pt_log_strerror(ret),
		       r->published);
		orphan_after(r, rd.seq > rd.error_seq ? rd.seq : rd.error_seq);
	}
	pt_log_reader_free(&rd);
	if (nsuspect) {
		for (uint64_t p = 0; p < r->id.npages; p++)
			if (pt_bit_test(suspect, p)) {
				pt_log(PT_LOG_ERROR, "%s: image page %" PRIu64 " fails its checksum "
				       "and no log record rewrites it (%" PRIu64 " such pages)",
				       r->dir, p, nsuspect);
				break;
			}
		ret = -EBADMSG;
		goto out;
	}
	ret = sync_segments(r, &max_seq);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: cannot fdatasync the log: %s", r->dir, strerror(-ret));
		goto out;
	}
	r->seg_seq = max_seq;
	r->assigned = r->durable = r->logged = r->published;
	r->checkpointed = r->img.hdr.epoch;
	pt_log(PT_LOG_INFO, "%s: recovered epoch %" PRIu64 " (image at %" PRIu64 ", %" PRIu64
	       " pages from it)", r->dir, r->published, r->checkpointed, copied);
out:
	free(suspect);
	return ret;
}

/*
 * A child the writer forks (system(), popen(), a snapshot) never uses the
 * staging memory: sync in a child fails with -ECHILD before touching it.
 * Without MADV_DONTFORK a private staging ring would stay copy-on-write in
 * the writer after any fork, and the next syncs would take a page fault per
 * staging page they copy into; the memfd ring is shared (no copy-on-write)
 * but its page tables need not be copied either.  The region's own memory
 * is not marked: a forked child reading it is a supported case.
 */
static void staging_dontfork(struct pt_region *r)
{
	if (madvise(r->ring, r->ring_size, MADV_DONTFORK))
		pt_log(PT_LOG_DEBUG, "%s: MADV_DONTFORK on the staging memory: %s", r->dir,
		       strerror(errno));
}

/*
 * The staging memory is a memfd, mapped shared and pre-faulted (the sync
 * path must take no page faults).  Replicas of the same user open it as
 * /proc/<writer pid>/fd/<n> (the state block says which, and its inode
 * number), map it read-only and apply published records from it without
 * waiting for the log file.  A memfd has no name to leak: it goes when the
 * writer and the last replica mapping it are gone, kill -9 included.
 */
static int staging_create(struct pt_region *r)
{
	struct stat st;
	int fd, ret;

	fd = memfd_create("pagetrack-staging", MFD_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto private;
	}
	if (ftruncate(fd, (off_t)r->ring_size) || fstat(fd, &st)) {
		ret = -errno;
		goto private;
	}
	/* Allocated now, not at the first store: MAP_POPULATE ignores a
	 * failure, and a store shmem cannot back is a SIGBUS. */
	ret = -posix_fallocate(fd, 0, (off_t)r->ring_size);
	if (ret)
		goto private;
	r->ring = mmap(NULL, r->ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (r->ring == MAP_FAILED) {
		r->ring = NULL;
		ret = -errno;
		goto private;
	}
	r->staging_fd = fd;
	staging_dontfork(r);
	state_store(&r->state->staging_fd, (uint64_t)fd);
	state_store(&r->state->staging_ino, (uint64_t)st.st_ino);
	state_store(&r->state->staging_bytes, r->ring_size);
	return 0;
private:
	/* Private staging memory still works; replicas then wait for the
	 * log file. */
	pt_log(PT_LOG_WARN, "%s: no shared staging memory (%s): replicas will read the log file "
	       "only", r->dir, strerror(-ret));
	if (fd >= 0)
		close(fd);
	r->ring = mmap(NULL, r->ring_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->ring == MAP_FAILED) {
		r->ring = NULL;
		return -ENOMEM;
	}
	staging_dontfork(r);
	return 0;
}

static int region_start(struct pt_region *r)
{
	struct pt_tracker_opts to = { .sz = sizeof(to), .backend = r->opts.backend };
	int ret;

	r->size = r->id.npages * r->id.page_size;
	ret = map_memory(r);
	if (ret)
		return ret;
	ret = pt_image_load_entries(&r->img);
	if (ret)
		return ret;
	ret = recover(r);
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
	ret = staging_create(r);
	if (ret)
		return ret;
	ret = pt_tracker_open(&r->tracker, r->base, r->size, &to);
	if (ret)
		return ret;
	ret = -pthread_create(&r->seal_thread, NULL, seal_main, r);
	if (ret)
		return ret;
	r->seal_started = true;
	background_policy(r->seal_thread);
	ret = -pthread_create(&r->log_thread, NULL, log_main, r);
	if (ret)
		return ret;
	r->log_started = true;
	background_policy(r->log_thread);
	if (!(r->opts.flags & PT_REGION_NO_CHECKPOINT_THREAD)) {
		ret = -pthread_create(&r->ckpt_thread, NULL, ckpt_main, r);
		if (ret)
			return ret;
		r->ckpt_started = true;
		background_policy(r->ckpt_thread);
	}
	return 0;
}

static void stop_threads(struct pt_region *r)
{
	if (r->ckpt_started) {
		pthread_mutex_lock(&r->ckpt_lock);
		r->ckpt_stop = true;
		pthread_cond_signal(&r->ckpt_cond);
		pthread_mutex_unlock(&r->ckpt_lock);
		pthread_join(r->ckpt_thread, NULL);
		r->ckpt_started = false;
	}
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->work);
	pthread_cond_signal(&r->seal_work);
	pthread_mutex_unlock(&r->lock);
	if (r->seal_started) {
		pthread_join(r->seal_thread, NULL);
		r->seal_started = false;
	}
	if (r->log_started) {
		pthread_join(r->log_thread, NULL);
		r->log_started = false;
	}
}

static int open_locked(struct pt_region *r)
{
	int ret = pt_image_open(&r->img, r->dirfd, true);

	if (ret) {
		if (ret == -EMEDIUMTYPE)
			pt_log(PT_LOG_ERROR, "%s: not a region (no image file)", r->dir);
		else
			pt_log(PT_LOG_ERROR, "%s: image: %s", r->dir, pt_log_strerror(ret));
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
	if (getrandom(&r->id.history_id, sizeof(r->id.history_id), 0) != sizeof(r->id.history_id)) {
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

PT_EXPORT int64_t pt_region_epoch(const struct pt_region *r)
{
	if (!r)
		return -EINVAL;
	return (int64_t)__atomic_load_n(&r->published, __ATOMIC_ACQUIRE);
}

/* Pages of ranges (and of the pending set) into the staged record. */
static uint32_t stage_pages(struct pt_region *r, const struct pt_range *ranges, size_t nr,
			    unsigned char *buf, uint32_t count)
{
	size_t ps = r->id.page_size;
	uint64_t *index = (uint64_t *)(buf + sizeof(struct pt_record_header));
	unsigned char *data = buf + pt_record_head_length(count, ps);
	uint64_t head = pt_record_head_length(count, ps);
	uint32_t k = 0;

	/* Zero the header page(s): the padding is part of the checksum. */
	memset(buf, 0, head);
	if (!r->npending) {
		for (size_t i = 0; i < nr; i++) {
			memcpy(data + (size_t)k * ps, (char *)r->base + ranges[i].first * ps,
			       ranges[i].count * ps);
			for (uint64_t p = 0; p < ranges[i].count; p++)
				index[k++] = ranges[i].first + p;
		}
		return k;
	}
	for (uint64_t w = 0; w < (r->id.npages + 63) / 64; w++) {
		uint64_t bits = r->pending[w];

		while (bits) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			memcpy(data + (size_t)k * ps, (char *)r->base + p * ps, ps);
			index[k++] = p;
		}
	}
	return k;
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

PT_EXPORT int64_t pt_region_sync(struct pt_region *r)
{
	const struct pt_range *ranges;
	struct record_slot *s;
	unsigned char *buf;
	uint64_t count, epoch;
	size_t nr, len;
	int n, ret;

	if (!r)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	pthread_mutex_lock(&r->sync_lock);
	n = pt_tracker_collect(r->tracker, PT_COLLECT_RESET, &ranges, &nr);
	if (n < 0) {
		pthread_mutex_unlock(&r->sync_lock);
		return n;
	}
	if (r->npending)
		pending_add(r, ranges, nr);
	count = r->npending ? r->npending : (uint64_t)n;
	if (r->npending)
		nr = 0;

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
		buf = ring_alloc(r, len, s);
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
	pthread_mutex_unlock(&r->lock);

	s->len = len;
	s->page_count = stage_pages(r, ranges, nr, buf, (uint32_t)count);
	s->sealed = false;
	if (r->npending) {
		memset(r->pending, 0, (r->id.npages + 63) / 64 * 8);
		r->npending = 0;
	}

	pthread_mutex_lock(&r->lock);
	epoch = ++r->assigned;
	s->epoch = epoch;
	r->q_tail++;
	if (r->opts.durability == PT_DURABLE_ON_SYNC && !r->sealing && r->q_seal + 1 == r->q_tail) {
		/*
		 * This caller waits for durability anyway: it checksums and
		 * publishes its own record rather than wake the seal thread
		 * and sleep (one thread hand-off less on the durable path).
		 * Without that wait the checksum stays off the sync path.
		 */
		r->sealing = true;
		pthread_mutex_unlock(&r->sync_lock);
		seal_one(r, s);
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
	if (!r->npending)
		pending_add(r, ranges, nr);
	pthread_mutex_unlock(&r->sync_lock);
	return ret;
}

PT_EXPORT int pt_region_wait(struct pt_region *r, uint64_t epoch, enum pt_level level, int timeout_ms)
{
	uint64_t deadline = 0;
	struct timespec ts;
	int ret = 0;

	/* -1 is forever; any other negative is a caller's mistake (a
	 * computed remaining time gone below zero), not "forever". */
	if (!r || level < PT_LEVEL_PUBLISHED || level > PT_LEVEL_CHECKPOINTED || timeout_ms < -1)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;	/* the threads that advance the levels are the parent's */
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
			e = checkpoint_now(r);
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
	int fds[] = { r->seg_fd, r->statefd, r->memfd, r->lockfd, r->dirfd, r->staging_fd, r->img.fd };

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
