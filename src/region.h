/* SPDX-License-Identifier: MIT */
/*
 * region.h - the writer's object and what its files share:
 *
 *   region.c        the API: create, open, sync, wait, close; options, the
 *                   memory, the state block, fork
 *   staging.c       the staging memory: records waiting to be durable, and
 *                   the seqlock through which replicas apply them from it
 *   logwriter.c     the seal thread (checksum, publish) and the log thread
 *                   (append, fdatasync, rewrite after an error)
 *   checkpointer.c  the checkpoint thread and dropping old segments
 *   recovery.c      rebuilding the memory from the image and the log at open
 *   precopy.c       pre-copy passes and the store the sync takes their
 *                   copies from
 *
 * Lock order: sync_lock before lock; ckpt_lock before lock.
 */
#ifndef PT_REGION_H
#define PT_REGION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "format.h"
#include "image.h"
#include "state.h"

#define DEFAULT_DURABLE_INTERVAL_MS	10
#define DEFAULT_CHECKPOINT_MS		1000
#define DEFAULT_RETAIN_BYTES		(64ull << 20)
#define DEFAULT_SEGMENT_BYTES		(64ull << 20)
#define DEFAULT_STAGING_BYTES		(64ull << 20)
#define QUEUE_SLOTS			4096
#define RETRY_MS			50
/* Dropped segments kept for the log thread to recycle (see pagelog.h). */
#define SPARE_SEGMENTS			2

struct pt_precopy;
struct pt_precopy_store;

struct record_slot {
	unsigned char *buf;
	size_t len;
	size_t ring_off;
	uint64_t epoch;
	uint32_t page_count;
	bool sealed;
	bool oversize;		/* own mapping, not in the ring */
	bool summed;		/* its page sums in place before the seal (streamed) */
	struct pt_precopy_store *precopy;	/* pages the seal copies in first */
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
	uint64_t *pending;	/* pages the next sync copies from memory: taken by
				 * a failed sync, or past the pre-copy store */
	uint64_t npending;
	struct pt_precopy *precopy;	/* NULL until the first pre-copy pass */

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
	uint64_t durable_chain;	/* header checksum of record durable_chain_epoch */
	uint64_t durable_chain_epoch;	/* == durable when known */
	uint64_t logged;	/* newest epoch written to the log file */
	uint64_t durable_request;
	uint64_t publish_time_ns;	/* first publish not yet durable */
	/* The streamed record (logwriter.c): a durable-on-sync caller stages
	 * it while the log thread writes its pages, then both hash them.
	 * stream under the lock; stream_ready, stream_sleeping and the
	 * stream_sum* atomic; stream_written the log thread's. */
	struct record_slot *stream;
	uint32_t stream_ready;		/* its pages staged so far (futex word) */
	uint32_t stream_sleeping;	/* the log thread waits on stream_ready */
	uint32_t stream_written;	/* its pages in the segment */
	uint32_t stream_sum_next;	/* the next run of STREAM_PAGES to hash */
	uint32_t stream_summed;		/* runs hashed (futex word) */
	uint32_t stream_sum_waiting;	/* the caller waits on stream_summed */
	/* A sync or a pre-copy pass collecting: the log thread steps aside
	 * (logwriter.c, pt_writer_collect).  Atomic; collecting is a futex
	 * word, aside says the log thread waits on it. */
	uint32_t collecting;
	uint32_t aside;
	int error;		/* latched log error, 0 if none */
	uint64_t retry_ns;
	bool stop;

	/* log thread only */
	int seg_fd;
	int seg_dfd;		/* seg_fd opened O_DIRECT (PT_REGION_DIRECT_LOG), or -1 */
	bool direct_refused;	/* the file system took no O_DIRECT: never again
				 * (pt_region_stats reads it, atomic) */
	bool seg_suspect;
	uint64_t seg_seq;	/* seq of seg_fd; the next segment gets seg_seq + 1 */
	uint64_t seg_off;
	uint64_t last_len;	/* of the last record written */
	bool seg_ended;		/* its end marker durable at seg_off (roll_ahead) */
	int next_fd;		/* the next segment prepared ahead, -1: none */
	uint64_t next_first;	/* its first epoch */
	char next_spare[64];	/* its spare name until installed */
	uint64_t ahead_tried;	/* logged when roll_ahead() last ran */
	uint64_t chain;		/* header checksum of the newest sealed record */
	pthread_t log_thread;
	bool log_started;
	pthread_t seal_thread;
	bool seal_started;
	/* Their thread ids, each set by the thread itself (futex words). */
	uint32_t seal_tid, log_tid, ckpt_tid;

	struct pt_replicated *replicated;	/* opened at the first REPLICATED wait */

	/* statistics (lock) */
	struct pt_sync_stats last_sync;
	struct pt_region_stats totals;

	/* checkpoint */
	pthread_mutex_t ckpt_lock;
	struct pt_image img;
	pthread_t ckpt_thread;
	bool ckpt_started;
	bool ckpt_stop;
	pthread_cond_t ckpt_cond;
};

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void deadline_ts(struct timespec *ts, uint64_t mono_ns)
{
	/* The condition variables run on CLOCK_MONOTONIC. */
	ts->tv_sec = (time_t)(mono_ns / 1000000000ull);
	ts->tv_nsec = (long)(mono_ns % 1000000000ull);
}

/* A field of the state block replicas read without a lock. */
static inline void state_store(uint64_t *field, uint64_t v)
{
	__atomic_store_n(field, v, __ATOMIC_RELEASE);
}

static inline struct record_slot *slot_at(struct pt_region *r, uint64_t i)
{
	return &r->q[i % QUEUE_SLOTS];
}

/* staging.c, the writer's half */
/* Create the staging memory (r->ring_size bytes): a memfd replicas map, or
 * private memory when that fails.  0 or -ENOMEM. */
int pt_staging_create(struct pt_region *r);
/* Space for a record of len bytes at q_tail; lock held.  NULL: full. */
unsigned char *pt_staging_alloc(struct pt_region *r, size_t len, struct record_slot *s);
/* The record of s is durable: its space may be reused. */
void pt_staging_release(struct pt_region *r, struct record_slot *s);
/* Tell replicas where the published record of s lies in staging memory. */
void pt_staging_publish(struct pt_region *r, const struct record_slot *s);

/* logwriter.c */
/* Seal record q_seal (r->sealing set by the caller under the lock, held on
 * entry and on return) and publish it. */
void pt_writer_seal(struct pt_region *r, struct record_slot *s);
/* Collect with reset (sync_lock held) while the log thread, which would
 * take the TLB flush of every page table re-armed, steps aside. */
int pt_writer_collect(struct pt_region *r, const struct pt_range **ranges, size_t *nr);
/* Pages staged a run at a time while the log thread writes them. */
#define STREAM_PAGES	64
/* Let the log thread write the pages of s (its len, page_count and epoch
 * set) as the caller stages them: true when it is idle and the caller
 * will seal s itself (durable on sync).  Lock held. */
bool pt_stream_start(struct pt_region *r, struct record_slot *s);
/* Pages [0, pages) of the streamed record are staged. */
void pt_stream_staged(struct pt_region *r, uint32_t pages);
/* All staged: hash the runs the log thread has not taken, wait for the
 * ones it has; then all the record's sums are in place. */
void pt_stream_sum(struct pt_region *r, struct record_slot *s);
int pt_logwriter_start(struct pt_region *r);
/* Stop the seal and log threads once everything queued is written. */
void pt_logwriter_stop(struct pt_region *r);
/* SCHED_BATCH and a name for a library thread (see logwriter.c). */
void pt_background_thread(pthread_t thread, const char *name);
/* First thing a library thread does: its id into *tid. */
void pt_thread_announce(uint32_t *tid);
/* The id a started thread announced (waits for it). */
pid_t pt_thread_id(uint32_t *tid);

/* checkpointer.c */
int pt_checkpointer_start(struct pt_region *r);
void pt_checkpointer_stop(struct pt_region *r);
/* Make what is published durable, apply it to the image, drop segments.
 * Returns the image's epoch or -errno. */
int64_t pt_checkpoint_now(struct pt_region *r);

/* precopy.c (sync_lock held, but for fill, release and free) */
/* Pages a pass copied that the next sync takes from the store. */
uint64_t pt_precopy_held(const struct pt_region *r);
/* Word w of the held set (0 without a store). */
uint64_t pt_precopy_word(const struct pt_region *r, uint64_t w);
/* How many pages of ranges the store holds (each copied again). */
uint64_t pt_precopy_count_held(const struct pt_region *r, const struct pt_range *ranges, size_t nr);
/* The sync laid s out for pending | held and copied the pending pages:
 * hand the store (what it holds that is not pending) to s and switch
 * stores.  Returns the pages s takes from it. */
uint64_t pt_precopy_hand(struct pt_region *r, struct record_slot *s);
/* The seal, before hashing s: copy the store's pages into s (lock not
 * held), then release the store (lock held). */
void pt_precopy_fill(struct pt_region *r, struct record_slot *s);
void pt_precopy_release(struct pt_region *r, struct record_slot *s);
/* Empty the store: a jump replaced the memory. */
void pt_precopy_forget(struct pt_region *r);
void pt_precopy_free(struct pt_region *r);

/* recovery.c: rebuild r->base from the image and the log (open). */
int pt_recover(struct pt_region *r);

#endif /* PT_REGION_H */
