/* SPDX-License-Identifier: MIT */
/*
 * replica.c - copies of a region kept current from its data directory,
 * which they only read: private (this process's memory) and shared (two
 * copies in /dev/shm that several processes map), with catch-up from the
 * image through the generation table.
 *
 * A copy moves from epoch to epoch by whole records.  A record still in the
 * writer's staging memory (its memfd, mapped read-only) is copied from
 * there under a seqlock, without waiting for the log file: that is what
 * keeps the lag under a millisecond.  A record read from a file is checked
 * completely (checksums, chain) before any of its pages is applied; more
 * than one are applied together by the newest copy of each page, each
 * checked against its sum before any goes in (apply_newest).  When
 * the record it needs is no longer in
 * the log, it copies from the image the pages whose generation is above
 * its epoch (only those: cost follows what changed, not the region's size),
 * takes the image's epoch, and continues from the log.  Pages the image
 * returns torn (a checkpoint was writing them) are rewritten by the records
 * after the image's epoch; until every one is, the copy is not shown.
 *
 * History: each record names the header checksum of the one before (a hash
 * chain).  A replica remembers the checksum of its epoch; a record that does
 * not continue it, a writer that published less than the replica has, or a
 * writer that reopened and no longer has the replica's record in its log
 * all mean the replica may hold epochs the writer lost in a crash: -ESTALE.
 *
 * Shared mode (two copies in /dev/shm, readers' pins) is in shared.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "gather.h"
#include "state.h"
#include "bitmap.h"
#include "replica.h"

/* ---- moving a copy forward ---------------------------------------------- */

static int image_catch_up(struct pt_replica *r, unsigned char *mem, struct copy_state *cs)
{
	struct pt_image img;
	uint64_t copied = 0;
	int ret;

	ret = pt_image_open(&img, r->dirfd, false);
	if (ret)
		return ret;
	if (img.id.history_id != r->id.history_id) {
		ret = -ESTALE;
		goto out;
	}
	if (img.id.npages != r->id.npages) {
		ret = -EMSGSIZE;
		goto out;
	}
	if (img.hdr.epoch < cs->epoch) {
		/* The log lacks our next record yet the image is older than
		 * we are: nothing to catch up from. */
		ret = -EILSEQ;
		goto out;
	}
	cs->need_image = true;
	memset(r->suspect, 0, (r->id.npages + 63) / 64 * 8);
	r->nsuspect = 0;
	/* Redoing an interrupted catch-up from cs->epoch (the older image's)
	 * is enough: pages it left torn belong to records after that epoch,
	 * which the log replays. */
	ret = pt_image_copy_newer(&img, cs->epoch, mem, r->suspect, &r->nsuspect, &copied,
				  mem == r->base ? r->generations : NULL);
	if (ret)
		goto out;
	r->image_pages += copied;
	pt_log(PT_LOG_INFO, "%s: replica caught up from the image: epoch %" PRIu64 " -> %" PRIu64
	       ", %" PRIu64 " pages copied", r->dir, cs->epoch, img.hdr.epoch, copied);
	cs->epoch = img.hdr.epoch;
	cs->chain = img.hdr.chain;
out:
	pt_image_close(&img);
	return ret;
}

/*
 * Bring mem from cs->epoch to target (not beyond what is published).
 * Returns the number of records applied, or -errno when none could be.
 */
/* The image's epoch, if it is of our history. */
static int image_epoch(struct pt_replica *r, uint64_t *epoch)
{
	struct pt_image img;
	int ret;

	ret = pt_image_open(&img, r->dirfd, false);
	if (ret)
		return ret;
	ret = img.id.history_id == r->id.history_id && img.id.npages == r->id.npages ? 0 : -ESTALE;
	*epoch = img.hdr.epoch;
	pt_image_close(&img);
	return ret;
}

/* Records after epoch are missing from a log that should hold them: files
 * of another history in their place (-ESTALE), or lost (-ENOTRECOVERABLE). */
static int log_lost(struct pt_replica *r, uint64_t epoch)
{
	struct pt_dir_reach reach = { .reached = UINT64_MAX };

	int ret = pt_reach_judge(r->dirfd, &r->id, &reach);

	if (ret == -ESTALE) {
		pt_log(PT_LOG_ERROR, "%s: %" PRIu64 " file(s) of another history in the region's "
		       "directory: refusing", r->dir, reach.foreign);
		return -ESTALE;
	}
	if (ret == -EPERM || ret == -EMEDIUMTYPE)
		return ret;
	pt_log(PT_LOG_ERROR, "%s: the writer logged epochs up to %" PRIu64 " but the log ends "
	       "after epoch %" PRIu64 " and the image does not hold them: lost", r->dir,
	       load64(&r->state->logged), epoch);
	return -ENOTRECOVERABLE;
}

/*
 * The writer published a record of this epoch with another chain: the
 * heads were not its records.  Only for the published epoch (the state
 * block keeps that one's chain), read while published stays the same.
 */
static bool not_writers(struct pt_replica *r, uint64_t epoch, uint64_t chain)
{
	uint64_t p = load64(&r->state->published);
	uint64_t c = load64(&r->state->published_chain);

	return p == epoch && load64(&r->state->published) == p && c != chain;
}

/*
 * Records cs->epoch + 1 .. limit from the log file, by the newest copy of
 * each page only (gather.c): a replica more than a record behind copies
 * each page it needs once, however many records rewrote it.  Each copy is
 * checked against its sum before any of its step goes into mem, and each
 * step ends at a whole epoch.  Returns the number of records applied: 0
 * when it could not apply any (the caller goes record by record, and meets
 * whatever stopped this).
 */
static int apply_newest(struct pt_replica *r, unsigned char *mem, struct copy_state *cs,
			uint64_t limit)
{
	size_t ps = r->id.page_size;
	struct pt_pagelog_reader rd;
	struct pt_gather_step st;
	struct pt_gather g;
	int applied = 0;

	pt_gather_init(&g, r->dirfd, &r->id);
	pt_pagelog_reader_init(&rd, r->dirfd, &r->id, cs->epoch + 1, cs->chain);
	rd.quiet = true;
	rd.heads_only = true;
	/* An error after some records: apply those, the caller meets it. */
	pt_gather_collect(&g, &rd, limit);
	pt_pagelog_reader_free(&rd);
	if (g.nrecords < 2 || not_writers(r, g.records[g.nrecords - 1].epoch,
					  g.records[g.nrecords - 1].chain))
		goto out;
	for (;;) {
		size_t first = g.next;

		if (pt_gather_step(&g, PT_GATHER_STEP_BYTES / ps, &st) <= 0)
			break;
		for (size_t i = 0; i < st.count; i++) {
			uint64_t p = st.copies[i].page;

			memcpy(mem + p * ps, st.data + i * ps, ps);
			if (r->nsuspect && pt_bit_clear(r->suspect, p))
				r->nsuspect--;
		}
		cs->epoch = st.epoch;
		cs->chain = st.chain;
		applied += (int)(g.next - first);
	}
out:
	pt_gather_free(&g);
	return applied;
}

int pt_replica_advance(struct pt_replica *r, unsigned char *mem, struct copy_state *cs,
		       uint64_t target)
{
	size_t ps = r->id.page_size;
	struct pt_record rec;
	int applied = 0, ret = 0;
	bool copied = false;

	for (int attempt = 0; attempt < 8; attempt++) {
		if (cs->need_image && !copied) {
			ret = image_catch_up(r, mem, cs);
			if (ret)
				return ret;
			copied = true;
			applied++;
		}
		pt_staging_map(r);
		while (cs->epoch < target) {
			int rr = pt_staging_apply(r, mem, cs);
			uint64_t logged = load64(&r->state->logged);

			if (rr > 0) {
				applied++;
				continue;
			}
			if (!rr && (logged < target ? logged : target) > cs->epoch + 1) {
				int n = apply_newest(r, mem, cs, logged < target ? logged : target);

				if (n > 0) {
					applied += n;
					continue;
				}
			}
			if (r->rd.next_epoch != cs->epoch + 1 || r->rd.chain != cs->chain) {
				/* After records from staging memory (or an image)
				 * the file reader starts afresh: where it stood may
				 * be a segment dropped since. */
				pt_pagelog_reader_free(&r->rd);
				pt_pagelog_reader_init(&r->rd, r->dirfd, &r->id, cs->epoch + 1, cs->chain);
				r->rd.quiet = true;
			}
			/* Only what the log file has: a record published from
			 * staging memory may be on its way there. */
			ret = pt_pagelog_next(&r->rd, rr == -EAGAIN ? cs->epoch + 1 :
					  logged < target ? logged : target, &rec);
			if (ret <= 0) {
				if (rr == -EAGAIN) {
					/* Pages of that record may be wrong: redo
					 * from the image next time. */
					cs->need_image = true;
					ret = ret ? ret : -EAGAIN;
				}
				break;
			}
			for (uint32_t i = 0; i < rec.hdr->page_count; i++) {
				memcpy(mem + rec.index[i] * ps, rec.data + (size_t)i * ps, ps);
				if (r->nsuspect && pt_bit_clear(r->suspect, rec.index[i]))
					r->nsuspect--;
			}
			cs->epoch = rec.hdr->epoch;
			cs->chain = rec.hdr->header_checksum;
			applied++;
		}
		if (ret == -ESTALE && r->rd.dropped) {
			/* Fell behind the retained log. */
			cs->need_image = true;
			copied = false;
			continue;
		}
		if (ret <= 0 && ret != -EAGAIN && ret != -ESTALE && !cs->need_image &&
		    cs->epoch < target && cs->epoch < load64(&r->state->logged)) {
			/*
			 * The log ends, or breaks, before records the writer
			 * wrote.  The image may hold them (a checkpoint dropped
			 * the segments, or the damage lies in records it has
			 * applied); else they are gone, and showing an older
			 * epoch as if it were the newest would be a lie.
			 */
			uint64_t ie;

			if (!copied && !image_epoch(r, &ie) && ie > cs->epoch) {
				cs->need_image = true;
				continue;
			}
			if (!ret) {
				/* Whatever was applied on the way, the newest
				 * epochs are gone: say so now, not at the next
				 * refresh. */
				ret = log_lost(r, cs->epoch);
				return ret;
			}
		}
		if (cs->need_image) {
			if (!r->nsuspect && ret >= 0) {
				cs->need_image = false;
			} else if (ret >= 0) {
				/* Torn pages from a checkpoint of records newer than
				 * target: follow the log further. */
				uint64_t p = load64(&r->state->published);

				if (p > target) {
					target = p;
					continue;
				}
				ret = -EBADMSG;
			}
		}
		if (ret < 0 && !applied) {
			if (ret != -ESTALE)
				pt_log(PT_LOG_ERROR, "%s: replica stops before epoch %" PRIu64
				       ": %s (segment %016" PRIx64 ", offset %" PRIu64 ")", r->dir,
				       cs->epoch + 1, pt_strerror(ret), r->rd.error_seq,
				       r->rd.error_offset);
			return ret;
		}
		if (cs->need_image)
			return -EBADMSG;
		return applied;
	}
	return ret < 0 ? ret : -EBADMSG;
}

/* ---- the writer's state block ---------------------------------------------- */

static int state_attach(struct pt_replica *r)
{
	struct stat st;
	int ret;

	ret = pt_state_map_ro(r->dirfd, &r->state, &r->statefd);
	if (ret)
		return ret;
	if (fstat(r->statefd, &st))
		return -errno;
	r->state_ino = st.st_ino;
	r->state_uid = st.st_uid;
	r->incarnation = load64(&r->state->incarnation);
	return 0;
}

static void state_detach(struct pt_replica *r)
{
	if (r->state)
		munmap((void *)r->state, sizeof(struct pt_state));
	if (r->statefd >= 0)
		close(r->statefd);
	r->state = NULL;
	r->statefd = -1;
}

/*
 * Is the writer still on our history?  -ESTALE when the region was
 * recreated, when the writer has published less than we show, or when it
 * reopened and its log no longer holds our epoch's record as we applied it.
 */
int pt_replica_check_writer(struct pt_replica *r, uint64_t epoch, uint64_t chain)
{
	struct stat st;
	uint64_t inc, sum;
	int ret;

	/* The region was deleted and created again: our state file is gone
	 * (its inode number may have been reused, hence st_nlink). */
	if (!fstat(r->statefd, &st) && st.st_nlink == 0) {
		pt_log(PT_LOG_ERROR, "%s: the region was deleted or created again; reopen the replica",
		       r->dir);
		return -ESTALE;
	}
	if (load64(&r->state->history_id) != r->id.history_id)
		return -ESTALE;
	inc = load64(&r->state->incarnation);
	if (load64(&r->state->published) < epoch) {
		pt_log(PT_LOG_ERROR, "%s: the writer has epoch %" PRIu64 ", this replica %" PRIu64
		       ": epochs were lost in a crash; reopen the replica", r->dir,
		       load64(&r->state->published), epoch);
		return -ESTALE;
	}
	if (inc != r->incarnation) {
		/* The writer reopened: did it keep the epoch we show?  When it
		 * reopened once since we last looked and recovered at least our
		 * epoch, recovery read our records on the path we followed. */
		if (epoch && !(inc == r->incarnation + 1 && epoch <= load64(&r->state->recovered))) {
			ret = pt_pagelog_record_checksum(r->dirfd, &r->id, epoch, &sum);
			if (ret == -ENOENT) {
				struct pt_image img;

				if (pt_image_open(&img, r->dirfd, false))
					return -ESTALE;
				ret = img.hdr.epoch == epoch ? 0 : -ESTALE;
				sum = img.hdr.chain;
				pt_image_close(&img);
				if (ret)
					return ret;
			} else if (ret) {
				return ret;
			}
			if (sum != chain) {
				pt_log(PT_LOG_ERROR, "%s: the writer's epoch %" PRIu64 " is not the one "
				       "this replica applied (a crash lost it); reopen the replica",
				       r->dir, epoch);
				return -ESTALE;
			}
		}
		r->incarnation = inc;
	}
	return 0;
}

/* ---- private replicas --------------------------------------------------------- */

static int64_t refresh_private(struct pt_replica *r, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;

	for (;;) {
		uint32_t f = __atomic_load_n(&r->state->futex, __ATOMIC_ACQUIRE);
		uint64_t p;
		int ret;

		ret = pt_replica_check_writer(r, r->priv.epoch, r->priv.chain);
		if (ret)
			return ret;
		p = load64(&r->state->published);
		if (p > r->priv.epoch) {
			ret = pt_replica_advance(r, r->base, &r->priv, p);
			r->epoch = r->priv.epoch;
			if (ret < 0)
				return ret;
			if (ret > 0)
				return (int64_t)r->epoch;
		}
		if (!timeout_ms)
			return (int64_t)r->epoch;
		if (timeout_ms > 0) {
			uint64_t now = now_ms();

			if (now >= deadline)
				return (int64_t)r->epoch;
			pt_futex_wait(&r->state->futex, f, (int)(deadline - now));
		} else {
			/* Bounded, to notice a state file replaced under us. */
			pt_futex_wait(&r->state->futex, f, 1000);
		}
	}
}

/* ---- delta replicas ---------------------------------------------------------- */

/*
 * One record from the log file, handed to fn before it is applied.  Only
 * the file: a record in staging memory may be reused under us, and a
 * delta's consumer (a publisher) must see bytes that were checked whole.
 */
static int64_t step_once(struct pt_replica *r, pt_delta_fn fn, void *arg, bool *none)
{
	struct copy_state *cs = &r->priv;
	size_t ps = r->id.page_size;
	struct pt_record rec;
	struct pt_delta d;
	uint64_t logged;
	int ret;

	*none = false;
	ret = pt_replica_check_writer(r, cs->epoch, cs->chain);
	if (ret)
		return ret;
	logged = load64(&r->state->logged);
	if (logged <= cs->epoch) {
		*none = true;
		return 0;
	}
	if (r->rd.next_epoch != cs->epoch + 1 || r->rd.chain != cs->chain) {
		pt_pagelog_reader_free(&r->rd);
		pt_pagelog_reader_init(&r->rd, r->dirfd, &r->id, cs->epoch + 1, cs->chain);
		r->rd.quiet = true;
	}
	ret = pt_pagelog_next(&r->rd, cs->epoch + 1, &rec);
	if (ret == 0)
		return log_lost(r, cs->epoch);	/* logged, yet not in the file */
	if (ret < 0) {
		if (ret == -ESTALE && r->rd.dropped)
			pt_log(PT_LOG_ERROR, "%s: epoch %" PRIu64 " is no longer in the log (a "
			       "checkpoint dropped it): a delta replica cannot jump over it",
			       r->dir, cs->epoch + 1);
		return ret;
	}
	d = (struct pt_delta){
		.history_id = r->id.history_id,
		.epoch = rec.hdr->epoch,
		.chain = rec.hdr->header_checksum,
		.prev_chain = rec.hdr->prev,
		.payload_checksum = rec.hdr->payload_checksum,
		.page_size = r->id.page_size,
		.page_count = rec.hdr->page_count,
		.pages = rec.index,
		.data = rec.data,
	};
	ret = fn ? fn(&d, r->base, arg) : 0;
	if (ret < 0) {
		/* Not applied: read it again next time. */
		pt_pagelog_reader_free(&r->rd);
		pt_pagelog_reader_init(&r->rd, r->dirfd, &r->id, cs->epoch + 1, cs->chain);
		r->rd.quiet = true;
		return ret;
	}
	for (uint32_t i = 0; i < d.page_count; i++) {
		memcpy((unsigned char *)r->base + d.pages[i] * ps, d.data + (size_t)i * ps, ps);
		r->generations[d.pages[i]] = d.epoch;
	}
	cs->epoch = d.epoch;
	cs->chain = d.chain;
	r->epoch = d.epoch;
	return (int64_t)d.epoch;
}

PT_EXPORT pt_epoch_t pt_replica_jump(struct pt_replica *r)
{
	if (!r || !r->deltas)
		return -EINVAL;
	/*
	 * A checkpoint running meanwhile leaves torn pages (suspect): the
	 * records after the image's epoch would repair them, but a delta's
	 * consumer reads the copy as the content before each delta, so the
	 * copy must be whole when this returns.  Copy again from the same
	 * starting epoch until no page is suspect; the checkpoint finishes,
	 * and its new header covers what it wrote.
	 */
	for (int attempt = 0; attempt < 40; attempt++) {
		struct copy_state cs = r->priv;
		int ret = image_catch_up(r, r->base, &cs);

		if (ret)
			return ret;
		if (!r->nsuspect) {
			cs.need_image = false;
			r->priv = cs;
			r->epoch = cs.epoch;
			pt_pagelog_reader_free(&r->rd);
			pt_pagelog_reader_init(&r->rd, r->dirfd, &r->id, cs.epoch + 1, cs.chain);
			r->rd.quiet = true;
			return (int64_t)cs.epoch;
		}
		usleep(50000);
	}
	return -EAGAIN;
}

PT_EXPORT int pt_delta_chain(const struct pt_delta *d, uint64_t *payload_checksum, uint64_t *chain)
{
	struct pt_region_id id = { 0 };
	struct pt_record_header *h;
	unsigned char *head;
	uint64_t *sums;
	uint64_t len;

	if (!d || !payload_checksum || !chain || !d->page_size || (d->page_count && (!d->pages || !d->data)))
		return -EINVAL;
	for (uint32_t i = 1; i < d->page_count; i++)
		if (d->pages[i] <= d->pages[i - 1])
			return -EINVAL;
	/* The record's head as the writer seals it: header, index, the sum
	 * of each page, zeros to a page boundary. */
	len = pt_record_head_length(d->page_count, d->page_size);
	head = calloc(1, len);
	if (!head)
		return -ENOMEM;
	h = (struct pt_record_header *)head;
	id.history_id = d->history_id;
	id.page_size = d->page_size;
	pt_record_fill(h, &id, d->epoch, d->page_count, d->prev_chain);
	if (d->page_count)
		memcpy(head + sizeof(*h), d->pages, (size_t)d->page_count * sizeof(uint64_t));
	sums = (uint64_t *)(head + sizeof(*h)) + d->page_count;
	for (uint32_t i = 0; i < d->page_count; i++)
		sums[i] = pt_checksum(d->data + (size_t)i * d->page_size, d->page_size);
	pt_record_seal_head(head);
	*payload_checksum = h->payload_checksum;
	*chain = h->header_checksum;
	free(head);
	return 0;
}

PT_EXPORT pt_epoch_t pt_replica_step(struct pt_replica *r, int timeout_ms, pt_delta_fn fn, void *arg)
{
	uint64_t deadline;

	if (!r || !r->deltas || timeout_ms < -1)
		return -EINVAL;
	deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
	for (;;) {
		uint32_t f = __atomic_load_n(&r->state->futex, __ATOMIC_ACQUIRE);
		bool none;
		int64_t e = step_once(r, fn, arg, &none);

		if (!none)
			return e;
		if (!timeout_ms)
			return 0;
		if (timeout_ms > 0) {
			uint64_t now = now_ms();

			if (now >= deadline)
				return 0;
			pt_futex_wait(&r->state->futex, f, (int)(deadline - now));
		} else {
			pt_futex_wait(&r->state->futex, f, 1000);
		}
	}
}

/* ---- the API ---------------------------------------------------------------- */

static int reserve_writer_address(struct pt_replica *r)
{
	struct pt_state st;
	void *want, *p;

	int ret;

	ret = pt_state_read(r->dirfd, NULL, &st);
	if (ret)
		return ret;
	want = (void *)(uintptr_t)st.base_address;
	if (!st.npages || st.npages > SIZE_MAX / st.page_size)
		return -EBADMSG;
	r->size = st.npages * st.page_size;
	if (!want || (uintptr_t)want % st.page_size)
		return -EBADMSG;
	p = mmap(want, r->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
		 MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (p != want) {
		/* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE. */
		munmap(p, r->size);
		return -EEXIST;
	}
	r->base = p;
	return 0;
}

PT_EXPORT int pt_replica_open(struct pt_replica **out, const char *dir,
			      const struct pt_replica_opts *opts)
{
	struct pt_replica_opts o = { .sz = sizeof(o) };
	struct pt_replica *r;
	struct pt_image img;
	int64_t e;
	int ret;

	if (!out || !dir)
		return -EINVAL;
	*out = NULL;
	ret = pt_opts_take(&o, sizeof(o), opts, offsetof(struct pt_replica_opts, flags) +
			   sizeof(o.flags));
	if (ret)
		return ret;
	if ((unsigned int)o.mode > PT_REPLICA_SHARED ||
	    (o.flags & ~(PT_REPLICA_AT_WRITER_ADDRESS | PT_REPLICA_DELTAS)) ||
	    ((o.flags & PT_REPLICA_DELTAS) && o.mode != PT_REPLICA_PRIVATE))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dirfd = r->statefd = r->shmfd = -1;
	r->slot = -1;
	r->rd.fd = -1;
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r->dirfd < 0) {
		ret = -errno;
		pt_log(PT_LOG_ERROR, "%s: %s", dir, strerror(-ret));
		goto err;
	}
	/* The writer's rule: a directory others can write is one whose
	 * files they can swap for their own. */
	ret = pt_check_dir(r->dirfd, dir);
	if (ret)
		goto err;
	if (o.flags & PT_REPLICA_AT_WRITER_ADDRESS) {
		/* Reserve the address before anything else maps memory: a
		 * forked child that just unmapped the writer's region would
		 * otherwise see the next mmap land in the hole. */
		ret = reserve_writer_address(r);
		if (ret)
			goto err;
	}
	ret = pt_image_open(&img, r->dirfd, false);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: %s", dir, ret == -EMEDIUMTYPE ? "not a region (no image)" :
		       pt_strerror(ret));
		goto err;
	}
	r->id = img.id;
	pt_image_close(&img);
	{
		/* Any file of another history than the image: refuse now,
		 * whether or not the records we will read come from it. */
		struct pt_dir_reach reach = { .reached = UINT64_MAX };

		ret = pt_reach_judge(r->dirfd, &r->id, &reach);
		if (ret == -ESTALE)
			pt_log(PT_LOG_ERROR, "%s: %" PRIu64 " file(s) of another history than the "
			       "image: refusing", dir, reach.foreign);
		if (ret == -ESTALE || ret == -EPERM || ret == -EMEDIUMTYPE)
			goto err;
	}
	ret = state_attach(r);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: state file: %s", dir, pt_strerror(ret));
		goto err;
	}
	if (load64(&r->state->history_id) != r->id.history_id ||
	    r->state->npages != r->id.npages || r->state->page_size != r->id.page_size) {
		ret = -ESTALE;
		goto err;
	}
	if (r->base && r->size != r->id.npages * r->id.page_size) {
		ret = -ESTALE;
		goto err;
	}
	r->size = r->id.npages * r->id.page_size;
	r->shared = o.mode == PT_REPLICA_SHARED;
	r->priv.chain = pt_chain_seed(r->id.history_id);
	pt_pagelog_reader_init(&r->rd, r->dirfd, &r->id, 1, r->priv.chain);
	r->rd.quiet = true;
	r->suspect = calloc((r->id.npages + 63) / 64, 8);
	if (!r->suspect) {
		ret = -ENOMEM;
		goto err;
	}
	if (!r->base) {
		/* Shared: an address range the pinned copy is mapped over. */
		r->base = mmap(NULL, r->size, r->shared ? PROT_NONE : PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (r->base == MAP_FAILED) {
			ret = -errno;
			r->base = NULL;
			goto err;
		}
	} else if (!r->shared && mprotect(r->base, r->size, PROT_READ | PROT_WRITE)) {
		ret = -errno;
		goto err;
	}
	/* Fault the private copy in now: a refresh that first touches a
	 * thousand pages pays a thousand page faults (about 1 us each),
	 * which would be most of the replica's lag. */
	if (!r->shared)
		madvise(r->base, r->size, MADV_POPULATE_WRITE);
	if (r->shared) {
		ret = pt_shared_open(r, &o);
		if (ret)
			goto err;
	}
	/* A delta replica starts at epoch 0 (zeros), where the log starts:
	 * its consumer sees every record. */
	r->deltas = o.flags & PT_REPLICA_DELTAS;
	if (r->deltas && !(r->generations = calloc(r->id.npages, sizeof(*r->generations)))) {
		ret = -ENOMEM;
		goto err;
	}
	e = r->deltas ? 0 : pt_replica_refresh(r, 0);
	if (e < 0) {
		ret = (int)e;
		goto err;
	}
	*out = r;
	return 0;
err:
	pt_replica_close(r);
	return ret;
}

PT_EXPORT pt_epoch_t pt_replica_refresh(struct pt_replica *r, int timeout_ms)
{
	/* Only -1 means forever: another negative is a caller's bug. */
	if (!r || timeout_ms < -1)
		return -EINVAL;
	if (r->deltas)
		return -EINVAL;	/* one record at a time: pt_replica_step() */
	return r->shared ? pt_shared_refresh(r, timeout_ms) : refresh_private(r, timeout_ms);
}

PT_EXPORT const void *pt_replica_base(const struct pt_replica *r)
{
	return r ? r->base : NULL;
}

PT_EXPORT size_t pt_replica_size(const struct pt_replica *r)
{
	return r ? r->size : 0;
}

PT_EXPORT pt_epoch_t pt_replica_epoch(const struct pt_replica *r)
{
	return r ? (pt_epoch_t)r->epoch : 0;
}

PT_EXPORT uint64_t pt_replica_image_pages(const struct pt_replica *r)
{
	return r ? r->image_pages : 0;
}

PT_EXPORT void pt_replica_close(struct pt_replica *r)
{
	if (!r)
		return;
	pt_shared_close(r);
	if (r->base)
		munmap(r->base, r->size);
	if (r->ring)
		munmap((void *)r->ring, r->ring_len);
	free(r->ring_index);
	pt_pagelog_reader_free(&r->rd);
	state_detach(r);
	if (r->dirfd >= 0)
		close(r->dirfd);
	free(r->suspect);
	free(r->generations);
	free(r);
}

PT_EXPORT int pt_replica_generations(const struct pt_replica *r, uint64_t first, uint64_t count,
				     pt_epoch_t *out)
{
	if (!r || !r->deltas || !out || first > r->id.npages || count > r->id.npages - first)
		return -EINVAL;
	memcpy(out, r->generations + first, count * sizeof(*out));
	return 0;
}

PT_EXPORT int pt_replica_chain(const struct pt_replica *r, pt_epoch_t *epoch, uint64_t *chain)
{
	/* A shared replica's copies keep their chains in the control block. */
	if (!r || !epoch || !chain || r->shared)
		return -EINVAL;
	*epoch = (pt_epoch_t)r->epoch;
	*chain = r->priv.chain;
	return 0;
}
