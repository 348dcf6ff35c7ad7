/* SPDX-License-Identifier: MIT */
/*
 * logwriter.c - the seal thread and the log thread.
 *
 * The sync path (region.c) only collects, copies into staging memory and
 * enqueues.  The seal thread checksums each record (XXH3, chain) and
 * publishes it from the staging memory (state block descriptor + futex
 * wake); the log thread writes it to the segment with one pwrite and
 * fdatasyncs as the durability policy says.  The writer never waits for a
 * replica: replicas only read files and memory.
 *
 * The threads run SCHED_BATCH, so waking one never preempts the writer on
 * its CPU.  A durable-on-sync caller, which waits for the fdatasync anyway,
 * seals its own record when the seal thread has nothing to do, and has the
 * idle log thread write the record's pages while it copies them, and
 * share their checksums (the streamed write, below).
 *
 * A record stays in staging memory until it is durable.  If a write or an
 * fdatasync fails the segment is suspect (after a failed fdatasync Linux may
 * have dropped the dirty pages it could not write), so the log thread starts
 * a new segment at the oldest record not yet durable and writes every such
 * record again, byte for byte; durable only ever advances after an
 * fdatasync that succeeded.  Until then the error is latched: syncs fail
 * with it and put their pages in the pending set, so nothing is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "pagelog.h"
#include "region.h"

static void latch_error(struct pt_region *r, int err, const char *what)
{
	if (!r->error)
		pt_log(PT_LOG_ERROR, "%s: %s of the log failed: %s; will write the records again "
		       "into a new segment", r->dir, what, strerror(-err));
	r->error = err;
	r->seg_suspect = true;
	r->stream = NULL;		/* written whole, once sealed */
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
		struct record_slot *s = slot_at(r, r->q_head);

		/* The checkpoint checks its path through the log against it. */
		if (s->epoch == epoch) {
			r->durable_chain = ((struct pt_record_header *)s->buf)->header_checksum;
			r->durable_chain_epoch = epoch;
		}
		pt_staging_release(r, s);
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
static void publish_record(struct pt_region *r, struct record_slot *s, bool in_ring)
{
	if (in_ring)
		pt_staging_publish(r, s);
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
static int end_marker(struct pt_region *r)
{
	struct stat st;
	void *zero;
	int ret;

	if (fstat(r->seg_fd, &st) || (uint64_t)st.st_size <= r->seg_off)
		return 0;
	zero = calloc(1, r->id.page_size);
	if (!zero)
		return -ENOMEM;
	ret = pt_write_full(r->seg_fd, zero, r->id.page_size, (off_t)r->seg_off);
	free(zero);
	return ret;
}

/* The segment prepared ahead, forgotten (it stays a spare). */
static void drop_next(struct pt_region *r)
{
	if (r->next_fd >= 0)
		pt_io->close(r->next_fd);
	r->next_fd = -1;
}

/*
 * The prepared spare is still the file under its name.  A checkpoint
 * retiring a segment of the same number renames it over the spare (numbers
 * start again after a jump and a reopen): renamed as the next segment, that
 * file would hold a stranger's header, and the records written into ours
 * would be in no file.
 */
static bool still_named(struct pt_region *r)
{
	struct stat ours, now;

	return !fstat(r->next_fd, &ours) &&
	       !fstatat(r->dirfd, r->next_spare, &now, AT_SYMLINK_NOFOLLOW) &&
	       now.st_ino == ours.st_ino && now.st_dev == ours.st_dev;
}

/* The current segment ended: a zero page at seg_off, made durable. */
static int end_segment(struct pt_region *r)
{
	/* A recycled segment holds an older segment's bytes behind our
	 * records: end them with a zero page (a record cannot start with
	 * zeros) so that readers see a clean end, not the middle of an old
	 * record. */
	int ret = end_marker(r);

	/* A reader continues into the next segment only from a complete
	 * one: make this one durable first. */
	if (!ret)
		ret = pt_io->fdatasync(r->seg_fd);
	if (ret)
		return ret;
	pthread_mutex_lock(&r->lock);
	mark_durable(r, r->logged);
	pthread_mutex_unlock(&r->lock);
	r->seg_ended = true;
	return 0;
}

/*
 * PT_REGION_DIRECT_LOG: records go to the segment through a second
 * descriptor opened O_DIRECT, from staging memory to the disk: no copy into
 * the page cache, and no writeback at the fdatasync, which then only has
 * the disk flush its cache.  Records, their offsets in the segment and
 * staging memory are whole pages, as O_DIRECT wants.  Readers of the file
 * (the checkpoint, a replica behind the staging memory, recovery) then
 * read the disk.  Segment headers and end markers go through seg_fd; the
 * kernel keeps the two descriptors' views coherent.  A file system that
 * takes no O_DIRECT is said once in the log, and the region goes on
 * through the page cache.
 */
static void direct_refused(struct pt_region *r, int err)
{
	pt_log(PT_LOG_WARN, "%s: O_DIRECT writes of the log: %s; writing it through the page "
	       "cache instead", r->dir, strerror(-err));
	__atomic_store_n(&r->direct_refused, true, __ATOMIC_RELAXED);	/* read by stats */
}

static void open_direct(struct pt_region *r)
{
	struct stat a, b;
	char name[64];
	int fd;

	if (!(r->opts.flags & PT_REGION_DIRECT_LOG) || r->direct_refused)
		return;
	pt_segment_name(name, sizeof(name), r->seg_seq);
	fd = pt_io->openat(r->dirfd, name, O_WRONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd == -EINVAL || fd == -EOPNOTSUPP) {
		direct_refused(r, fd);
		return;
	}
	if (fd < 0) {
		/* Out of descriptors or memory: this segment only. */
		pt_log(PT_LOG_WARN, "%s: opening %s O_DIRECT: %s; this segment goes through the "
		       "page cache", r->dir, name, strerror(-fd));
		return;
	}
	/* The file this thread just made the segment (the directory is
	 * the writer's, locked). */
	if (fstat(fd, &a) || fstat(r->seg_fd, &b) || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
		pt_log(PT_LOG_WARN, "%s: %s is not the segment the log thread made; writing it "
		       "through the page cache", r->dir, name);
		pt_io->close(fd);
		return;
	}
	r->seg_dfd = fd;
}

/* Bytes of a record at off in the segment: O_DIRECT when it is open. */
static int seg_write(struct pt_region *r, const void *buf, size_t len, off_t off)
{
	if (r->seg_dfd >= 0) {
		int ret = pt_write_full(r->seg_dfd, buf, len, off);

		/* EINVAL is O_DIRECT's refusal (an alignment), not the
		 * disk's error: the same bytes through the page cache. */
		if (ret != -EINVAL)
			return ret;
		direct_refused(r, ret);
		pt_io->close(r->seg_dfd);
		r->seg_dfd = -1;
	}
	return pt_write_full(r->seg_fd, buf, len, off);
}

/* Whether a record of len bytes goes into a new segment.  Log thread. */
static bool needs_roll(const struct pt_region *r, size_t len)
{
	return r->seg_fd < 0 || r->seg_suspect ||
	       (r->seg_off > r->id.page_size && r->seg_off + len > r->opts.segment_bytes);
}

static int roll_segment(struct pt_region *r, uint64_t first_epoch)
{
	int fd = -1, ret;

	if (r->seg_fd >= 0) {
		if (!r->seg_suspect && !r->seg_ended) {
			ret = end_segment(r);
			if (ret)
				return ret;
		}
		pt_io->close(r->seg_fd);
		r->seg_fd = -1;
		if (r->seg_dfd >= 0)
			pt_io->close(r->seg_dfd);
		r->seg_dfd = -1;
	}
	/* Prepared ahead for this very segment: only the rename is left. */
	if (r->next_fd >= 0 && r->next_first == first_epoch && !r->seg_suspect &&
	    still_named(r) && !pt_segment_install(r->dirfd, r->next_spare, r->seg_seq + 1)) {
		fd = r->next_fd;
		r->next_fd = -1;
	}
	drop_next(r);
	if (fd < 0)
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
	open_direct(r);
	r->seg_off = r->id.page_size;
	r->seg_suspect = false;
	r->seg_ended = false;
	return 0;
}

/*
 * While the log thread is idle and everything is durable: when the next
 * record, if it is as long as the last, will not fit in the segment, do
 * the roll's work ahead of it: end the segment (its marker durable) and
 * give a spare the next segment's header.  The roll is then a rename and
 * the directory's fsync.  The next record's epoch is logged + 1 (records
 * come in epoch order, one an epoch; a rewrite after an error rolls
 * without what was prepared).  Guessed wrong, nothing is lost: a record
 * that fits overwrites the marker, and the prepared spare stays a spare.
 * Lock held, released while the files are written.
 */
static void roll_ahead(struct pt_region *r)
{
	uint64_t first = r->logged + 1, seq = r->seg_seq + 1;
	int ret = 0, fd;

	pthread_mutex_unlock(&r->lock);
	if (!r->seg_ended)
		ret = end_segment(r);
	if (r->next_fd >= 0 && r->next_first != first)
		drop_next(r);	/* guessed wrong last time */
	if (!ret && r->next_fd < 0) {
		fd = pt_segment_prepare(r->dirfd, &r->id, seq, first, r->next_spare,
					sizeof(r->next_spare));
		if (fd >= 0) {
			r->next_fd = fd;
			r->next_first = first;
		}
	}
	pthread_mutex_lock(&r->lock);
	/* Every record is durable already: no error to latch (nothing would
	 * clear it), but the next record goes to a new segment, as after a
	 * failed write. */
	if (ret) {
		pt_log(PT_LOG_WARN, "%s: ending a segment of the log failed: %s; the next record "
		       "starts a new one", r->dir, strerror(-ret));
		r->seg_suspect = true;
	}
}

/* Whether roll_ahead() has work now.  Lock held. */
static bool want_roll_ahead(const struct pt_region *r)
{
	return r->seg_fd >= 0 && !r->seg_suspect && !r->error && !r->stop && r->last_len &&
	       !r->stream &&
	       r->q_write == r->q_tail && r->durable >= r->logged &&
	       r->seg_off + r->last_len > r->opts.segment_bytes &&
	       (!r->seg_ended || r->next_fd < 0 || r->next_first != r->logged + 1) &&
	       r->ahead_tried != r->logged;
}

/*
 * The streamed record.  A durable-on-sync caller waits for the fdatasync
 * anyway; finding the log thread idle, it has it write the record's pages
 * while it is still copying them into staging memory, a run of
 * STREAM_PAGES at a time, and the record's head once it has sealed it.
 * The roll, when the record needs a new segment, is done then too.  The
 * page sums are shared: the log thread hashes a staged run whenever it
 * has nothing staged to write, the caller the runs left once it has
 * staged them all.  The copy, the checksums and the pwrite, one after
 * another, were 0.5 ms each for 1,000 pages here; now the write runs
 * beside the copy, and part of the checksums beside the write.
 *
 * Until the head is written, the record's place in the segment holds what
 * it held: nothing, zeros (an end marker), or a recycled segment's older
 * record.  A reader, or recovery after a crash, stops there as it always
 * did; the pages behind it are covered by the sums in the head, so no
 * reader takes them without it.  A failed write latches the error as any
 * write does: the record is written whole again, once sealed.
 */
bool pt_stream_start(struct pt_region *r, struct record_slot *s)
{
	if (r->opts.durability != PT_DURABLE_ON_SYNC || r->error || r->stop || r->stream ||
	    !s->page_count || s->oversize || r->q_write != r->q_tail || r->q_seal != r->q_tail)
		return false;
	r->stream = s;
	r->stream_written = 0;
	__atomic_store_n(&r->stream_ready, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&r->stream_sum_next, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&r->stream_summed, 0, __ATOMIC_SEQ_CST);
	s->summed = true;
	pthread_cond_signal(&r->work);
	return true;
}

/*
 * The hand-offs between a caller and the log thread (the streamed record's
 * two, and the collect's, below), each a futex word and a flag that its
 * one sleeper sets: the sleeper sets the flag then reads the word, the
 * other side stores the word then reads the flag, so one of the two sees
 * the other's store.  Sleep while *word is val (100 ms at most).
 */
static void handoff_sleep(uint32_t *word, uint32_t val, uint32_t *sleeping)
{
	__atomic_store_n(sleeping, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == val)
		pt_futex_wait(word, val, 100);
	__atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
}

/* *word was just stored: wake its sleeper, if any. */
static void handoff_wake(uint32_t *word, const uint32_t *sleeping)
{
	if (__atomic_load_n(sleeping, __ATOMIC_SEQ_CST))
		pt_futex_wake(word);
}

void pt_stream_staged(struct pt_region *r, uint32_t pages)
{
	__atomic_store_n(&r->stream_ready, pages, __ATOMIC_SEQ_CST);
	handoff_wake(&r->stream_ready, &r->stream_sleeping);
}

static uint32_t stream_runs(const struct record_slot *s)
{
	return (s->page_count + STREAM_PAGES - 1) / STREAM_PAGES;
}

/* Hash run j of the streamed record s, claimed by this thread alone. */
static void stream_sum_run(struct pt_region *r, struct record_slot *s, uint32_t j)
{
	uint32_t first = j * STREAM_PAGES, n = s->page_count - first;

	pt_record_sum(s->buf, s->page_count, r->id.page_size, first,
		      n < STREAM_PAGES ? n : STREAM_PAGES);
	__atomic_add_fetch(&r->stream_summed, 1, __ATOMIC_SEQ_CST);
	handoff_wake(&r->stream_summed, &r->stream_sum_waiting);
}

/*
 * The log thread, nothing staged left to write: hash a run of s that is
 * staged and not yet taken.  False when there is none.
 */
static bool stream_sum_one(struct pt_region *r, struct record_slot *s, uint32_t ready)
{
	uint32_t j = __atomic_load_n(&r->stream_sum_next, __ATOMIC_SEQ_CST);

	do {
		if (j >= stream_runs(s) ||
		    (ready < s->page_count && (j + 1) * STREAM_PAGES > ready))
			return false;
	} while (!__atomic_compare_exchange_n(&r->stream_sum_next, &j, j + 1, false,
					      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
	stream_sum_run(r, s, j);
	return true;
}

void pt_stream_sum(struct pt_region *r, struct record_slot *s)
{
	uint32_t runs = stream_runs(s), j, done;

	while ((j = __atomic_fetch_add(&r->stream_sum_next, 1, __ATOMIC_SEQ_CST)) < runs)
		stream_sum_run(r, s, j);
	/* The log thread finishes the run it holds without waiting for
	 * anything: this wait is short. */
	while ((done = __atomic_load_n(&r->stream_summed, __ATOMIC_SEQ_CST)) < runs)
		handoff_sleep(&r->stream_summed, done, &r->stream_sum_waiting);
}

/*
 * Write the streamed record's pages as they are staged, all of them (the
 * caller always stages the whole record), hashing its runs while none is
 * waiting to be written; then help the caller hash what is left.  Lock
 * held, released inside.
 */
static void stream_pages(struct pt_region *r)
{
	struct record_slot *s = r->stream;
	size_t ps = r->id.page_size;
	uint64_t head = pt_record_head_length(s->page_count, ps), epoch = s->epoch;
	bool roll = needs_roll(r, s->len);
	int ret;

	pthread_mutex_unlock(&r->lock);
	ret = roll ? roll_segment(r, epoch) : 0;
	while (!ret && r->stream_written < s->page_count) {
		uint32_t ready = __atomic_load_n(&r->stream_ready, __ATOMIC_SEQ_CST), n;

		if (ready == r->stream_written) {
			if (!stream_sum_one(r, s, ready))
				handoff_sleep(&r->stream_ready, ready, &r->stream_sleeping);
			continue;
		}
		n = ready - r->stream_written;
		ret = seg_write(r, s->buf + head + (size_t)r->stream_written * ps, (size_t)n * ps,
				(off_t)(r->seg_off + head + (uint64_t)r->stream_written * ps));
		if (!ret)
			r->stream_written = ready;
	}
	while (!ret && stream_sum_one(r, s, s->page_count))
		;
	pthread_mutex_lock(&r->lock);
	if (ret)
		latch_error(r, ret, roll ? "starting a segment" : "a write");
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
 * real-time or idle policy the application chose is kept.  Each is named
 * (pt-seal, pt-log, pt-checkpoint: /proc/<pid>/task/<tid>/comm), so that an
 * application can find and place them (sched_setaffinity, a cgroup).
 */
void pt_background_thread(pthread_t thread, const char *name)
{
	struct sched_param sp = { 0 };
	int policy;

	pthread_setname_np(thread, name);

	/* Set by the creator, before the thread can matter: glibc's thread
	 * attributes take no SCHED_BATCH. */
	if (!pthread_getschedparam(thread, &policy, &sp) && policy == SCHED_OTHER) {
		sp.sched_priority = 0;
		pthread_setschedparam(thread, SCHED_BATCH, &sp);
	}
}

void pt_thread_announce(uint32_t *tid)
{
	__atomic_store_n(tid, (uint32_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	pt_futex_wake(tid);
}

pid_t pt_thread_id(uint32_t *tid)
{
	uint32_t t;

	/* A thread just created may not have run yet: it announces itself
	 * before anything else, so this wait is its start. */
	while (!(t = __atomic_load_n(tid, __ATOMIC_ACQUIRE)))
		pt_futex_wait(tid, 0, 100);
	return (pid_t)t;
}

/*
 * Seal record q_seal (the caller set r->sealing under the lock, which makes
 * it the one sealer: records are sealed in epoch order, each naming the
 * one before in its chain), then, lock held again, publish it.  Sealed
 * once: a record written again after an error is the same bytes.
 */
void pt_writer_seal(struct pt_region *r, struct record_slot *s)
{
	pthread_mutex_unlock(&r->lock);
	if (s->precopy)
		pt_precopy_fill(r, s);	/* pages pre-copy passes took */
	pt_record_fill(s->buf, &r->id, s->epoch, s->page_count, r->chain);
	if (s->summed)
		pt_record_seal_head(s->buf);
	else
		pt_record_seal(s->buf);
	r->chain = ((struct pt_record_header *)s->buf)->header_checksum;
	pthread_mutex_lock(&r->lock);
	if (s->precopy)
		pt_precopy_release(r, s);
	s->sealed = true;
	r->q_seal++;
	r->sealing = false;
	/* In order only: after a record too large for staging memory, the
	 * log thread publishes as it writes. */
	if (!s->oversize && s->epoch == r->published + 1)
		publish_record(r, s, true);
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

	pt_thread_announce(&r->seal_tid);
	pthread_mutex_lock(&r->lock);
	for (;;) {
		if (r->q_seal < r->q_tail && !r->sealing) {
			r->sealing = true;
			pt_writer_seal(r, slot_at(r, r->q_seal));
			continue;
		}
		if (r->stop)
			break;
		pthread_cond_wait(&r->seal_work, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/*
 * Stepping aside for a collect.  Re-arming write protection (any backend)
 * flushes the TLB of each other CPU that is running a thread of this
 * process at that moment: PAGEMAP_SCAN flushes once per page table (2 MiB
 * of the region) in which it re-armed a page, and waits for every CPU it
 * interrupts.  That wait is a microsecond or two on bare metal; on the
 * 2-CPU guest of docs/replication.md it was 18 us at the median, and in
 * the bench's steady cycle of syncs the log thread, writing the record
 * before, was running on the other CPU for most of them: the interrupts
 * were about a third of the sync's time.  So the collect raises a flag,
 * and the log thread checks it before it writes a record and before an
 * fdatasync, and sleeps until the collect ends: its CPU then idles or runs
 * another process, and is not interrupted.  The collect pays a futex wake
 * only when a thread stepped aside.  A collect that begins during a write
 * or an fdatasync's writeback is still interrupted: in the bench's cycle
 * this halved the interrupts and took 5-18% off the sync's CPU in two sets
 * of runs (writing records in chunks, checking between, took a little
 * more, but split the writes that tell a record written whole from one
 * streamed, which region-stream checks).  The checkpoint and
 * seal threads do not check: the first runs seldom, the second briefly,
 * right after a sync.
 */
int pt_writer_collect(struct pt_region *r, const struct pt_range **ranges, size_t *nr)
{
	int n;

	__atomic_store_n(&r->collecting, 1, __ATOMIC_SEQ_CST);
	n = pt_tracker_collect(r->tracker, PT_COLLECT_RESET, ranges, nr);
	__atomic_store_n(&r->collecting, 0, __ATOMIC_SEQ_CST);
	handoff_wake(&r->collecting, &r->aside);
	return n;
}

/* The log thread, before a record's write or an fdatasync. */
static void step_aside(struct pt_region *r)
{
	while (__atomic_load_n(&r->collecting, __ATOMIC_SEQ_CST))
		handoff_sleep(&r->collecting, 1, &r->aside);
}

/* The log thread: writes sealed records, fdatasyncs, recovers from errors. */
static void *log_main(void *arg)
{
	struct pt_region *r = arg;
	struct timespec ts;
	int ret;

	pt_thread_announce(&r->log_tid);
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
			/* Streamed: its pages are in the segment, its head
			 * goes last.  (Sealed before this thread got to it:
			 * written as any record.) */
			bool streamed = s == r->stream && r->stream_written == s->page_count;
			size_t len = streamed ? (size_t)pt_record_head_length(s->page_count,
									      r->id.page_size) : s->len;
			bool roll = !streamed && needs_roll(r, s->len);

			if (s == r->stream)
				r->stream = NULL;
			pthread_mutex_unlock(&r->lock);
			ret = roll ? roll_segment(r, s->epoch) : 0;
			step_aside(r);
			if (!ret)
				ret = seg_write(r, s->buf, len, (off_t)r->seg_off);
			pthread_mutex_lock(&r->lock);
			if (ret) {
				latch_error(r, ret, roll ? "starting a segment" : "a write");
				continue;
			}
			r->seg_off += s->len;
			r->last_len = s->len;
			r->seg_ended = false;
			r->q_write++;
			if (s->epoch > r->logged) {
				r->logged = s->epoch;
				state_store(&r->state->logged, s->epoch);
				__atomic_add_fetch(&r->state->log_bytes, s->len, __ATOMIC_RELAXED);
			}
			if (s->epoch > r->published) {
				publish_record(r, s, !s->oversize);
				/* The records sealed behind a record too large for
				 * staging memory waited for it: publish them from
				 * staging memory now, not as they are written. */
				for (uint64_t i = r->q_write; i < r->q_seal; i++) {
					struct record_slot *n = slot_at(r, i);

					if (n->oversize || n->epoch != r->published + 1)
						break;
					publish_record(r, n, true);
				}
			} else {
				/* For replicas that read the file. */
				__atomic_add_fetch(&r->state->futex, 1, __ATOMIC_RELEASE);
				pt_futex_wake(&r->state->futex);
			}
			pthread_cond_broadcast(&r->cond);
			continue;
		}
		if (r->stream && r->stream_written < r->stream->page_count) {
			stream_pages(r);
			continue;
		}
		if (want_fsync(r, now)) {
			uint64_t target = r->logged;
			int fd = r->seg_fd;

			pthread_mutex_unlock(&r->lock);
			step_aside(r);
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
		if (want_roll_ahead(r)) {
			r->ahead_tried = r->logged;	/* once an epoch, done or not */
			roll_ahead(r);
			continue;
		}
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

int pt_logwriter_start(struct pt_region *r)
{
	int ret;

	ret = -pthread_create(&r->seal_thread, NULL, seal_main, r);
	if (ret)
		return ret;
	r->seal_started = true;
	pt_background_thread(r->seal_thread, "pt-seal");
	ret = -pthread_create(&r->log_thread, NULL, log_main, r);
	if (ret)
		return ret;
	r->log_started = true;
	pt_background_thread(r->log_thread, "pt-log");
	return 0;
}

void pt_logwriter_stop(struct pt_region *r)
{
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
	drop_next(r);
}
