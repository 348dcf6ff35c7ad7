/* SPDX-License-Identifier: MIT */
/*
 * standby.c - a standby region's jump to its source's state at a later
 * epoch (pt_region_jump): what a follower does when its stream no longer
 * holds the epochs it lacks and it copies the pages that changed from a
 * snapshot instead.
 *
 * Why this is safe.  Every check comes before any change: the epoch, the
 * generations, and the content of every page of the result (the given
 * pages and the kept ones) against the source's checksums.  The only
 * durable change is one rename: a complete new image at the new epoch,
 * fsynced as image.tmp, replaces the old image.  Before the rename a crash
 * leaves the old image and the log, the region at its old epoch; after
 * it, recovery reads the new image and looks for records from epoch + 1 on:
 * the segments still there hold only older epochs, which the reader passes
 * by.  The segments are dropped right after the rename (a replica that
 * reads them then finds its next record gone and catches up from the new
 * image, whose page table has the source's generations), and the log
 * thread is told to start a new segment for the next record, so that no
 * segment holds a gap between epochs.
 *
 * Lock order: sync_lock, then ckpt_lock, then lock (the checkpoint takes
 * ckpt_lock then lock and never sync_lock).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "region.h"

PT_EXPORT uint64_t pt_page_checksum(const void *page, size_t page_size)
{
	return page ? pt_checksum(page, page_size) : 0;
}

/* Every page of the result against its version: 0, -EINVAL or -EBADMSG. */
static int check_jump(struct pt_region *r, const struct pt_jump *j, uint64_t epoch)
{
	size_t ps = r->id.page_size;
	uint64_t next = 0;

	if ((uint64_t)j->epoch <= epoch) {
		pt_log(PT_LOG_ERROR, "%s: a jump to epoch %" PRId64 ", the region is at %" PRIu64,
		       r->dir, j->epoch, epoch);
		return -EINVAL;
	}
	for (uint64_t i = 0; i < j->count; i++)
		if (j->pages[i] >= r->id.npages || (i && j->pages[i] <= j->pages[i - 1]))
			return -EINVAL;
	for (uint64_t p = 0; p < r->id.npages; p++) {
		const struct pt_page_version *v = &j->versions[p];
		const unsigned char *content = (const unsigned char *)r->base + p * ps;

		if (v->generation < 0 || v->generation > j->epoch)
			return -EINVAL;
		if (next < j->count && j->pages[next] == p)
			content = (const unsigned char *)j->data + next++ * ps;
		if (pt_checksum(content, ps) != v->checksum) {
			pt_log(PT_LOG_ERROR, "%s: a jump to epoch %" PRId64 ": page %" PRIu64 " (%s) "
			       "does not have the checksum of its version (generation %" PRId64 ")",
			       r->dir, j->epoch, p, content == (const unsigned char *)r->base + p * ps
			       ? "kept" : "given", v->generation);
			return -EBADMSG;
		}
	}
	return 0;
}

/* Drop every segment: each holds epochs below the new image's. */
static void drop_all_segments(struct pt_region *r)
{
	struct pt_segment_info *segs;
	size_t n;

	if (pt_segments_list(r->dirfd, &r->id, &segs, &n))
		return;
	for (size_t i = 0; i < n; i++)
		pt_segment_retire(r->dirfd, segs[i].seq, SPARE_SEGMENTS);
	free(segs);
	state_store(&r->state->log_bytes, 0);
}

PT_EXPORT pt_epoch_t pt_region_jump(struct pt_region *r, const struct pt_jump *j)
{
	const uint64_t epoch_wanted = j && j->epoch > 0 ? (uint64_t)j->epoch : 0;
	uint64_t current;
	int ret;

	if (!r || !j || j->sz < offsetof(struct pt_jump, data) + sizeof(j->data) || !j->versions ||
	    (j->count && (!j->pages || !j->data)) || j->count > r->id.npages)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	pthread_mutex_lock(&r->sync_lock);
	pthread_mutex_lock(&r->ckpt_lock);
	pthread_mutex_lock(&r->lock);
	/* Everything published durable first: the old image and log must
	 * be whole should the rename not happen. */
	if (r->durable < r->assigned) {
		if (r->durable_request < r->assigned)
			r->durable_request = r->assigned;
		pthread_cond_signal(&r->work);
		while (r->durable < r->assigned && !r->error && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
	}
	ret = r->error;
	current = r->assigned;
	pthread_mutex_unlock(&r->lock);
	if (!ret)
		ret = check_jump(r, j, current);
	if (!ret)
		ret = pt_image_write(r->dirfd, &r->id, epoch_wanted, j->chain, r->img.hdr.seq + 1,
				     r->base, j->versions, j->count, j->pages, j->data);
	if (ret) {
		if (ret != -EINVAL && ret != -EBADMSG)
			pt_log(PT_LOG_ERROR, "%s: a jump to epoch %" PRIu64 ": %s; the region stays "
			       "at epoch %" PRIu64, r->dir, epoch_wanted, pt_strerror(ret), current);
		goto out;
	}
	/* The directory is at the new epoch from here on. */
	pt_image_close(&r->img);
	ret = pt_image_open(&r->img, r->dirfd, true);
	if (!ret)
		ret = pt_image_load_entries(&r->img);
	if (ret)
		pt_log(PT_LOG_ERROR, "%s: the image written for epoch %" PRIu64 " cannot be read "
		       "back: %s; close the region", r->dir, epoch_wanted, pt_strerror(ret));
	drop_all_segments(r);
	for (uint64_t i = 0; i < j->count; i++)
		memcpy((unsigned char *)r->base + j->pages[i] * r->id.page_size,
		       (const unsigned char *)j->data + i * r->id.page_size, r->id.page_size);
	/* The stores just made, and any the caller made, belong to the new
	 * epoch: the next record holds only what is written after this. */
	if (!ret)
		ret = pt_tracker_reset(r->tracker);
	memset(r->pending, 0, (r->id.npages + 63) / 64 * 8);
	r->npending = 0;
	/* Pre-copies are of the memory the jump replaced. */
	pt_precopy_forget(r);
	pthread_mutex_lock(&r->lock);
	r->assigned = r->published = r->durable = r->logged = r->checkpointed = epoch_wanted;
	r->chain = j->chain;
	r->durable_chain = j->chain;
	r->durable_chain_epoch = epoch_wanted;
	/* The current segment is gone: the next record starts a new one. */
	r->seg_suspect = true;
	state_store(&r->state->published_chain, j->chain);
	state_store(&r->state->logged, epoch_wanted);
	state_store(&r->state->durable, epoch_wanted);
	state_store(&r->state->checkpointed, epoch_wanted);
	state_store(&r->state->published, epoch_wanted);
	__atomic_add_fetch(&r->state->futex, 1, __ATOMIC_RELEASE);
	pt_futex_wake(&r->state->futex);
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pt_log(PT_LOG_INFO, "%s: jumped from epoch %" PRIu64 " to %" PRIu64 " (%" PRIu64
	       " pages given)", r->dir, current, epoch_wanted, j->count);
out:
	pthread_mutex_unlock(&r->ckpt_lock);
	pthread_mutex_unlock(&r->sync_lock);
	return ret ? ret : (pt_epoch_t)epoch_wanted;
}
