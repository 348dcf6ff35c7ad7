/* SPDX-License-Identifier: MIT */
/*
 * checkpointer.c - the checkpoint thread: every checkpoint_interval_ms (or
 * when asked: pt_region_checkpoint, a PT_LEVEL_CHECKPOINTED wait, the
 * state block's checkpoint_request) it makes what is published durable,
 * applies the durable log to the image (image.c's algorithm), and drops
 * the segments the image and the retained log no longer need.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "region.h"

/* Drop segments wholly at or below the image's epoch, keeping retain_bytes. */

static void drop_segments(struct pt_region *r, uint64_t checkpointed)
{
	struct pt_segment_info *segs;
	uint64_t total = 0, current;
	bool dropped = false;
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
		if (pt_segment_retire(r->dirfd, segs[i].seq, SPARE_SEGMENTS))
			break;
		total -= segs[i].size;
		pt_log(PT_LOG_DEBUG, "%s: dropped %s (epochs %" PRIu64 "..%" PRIu64 ")", r->dir,
		       name, segs[i].first_epoch, segs[i + 1].first_epoch - 1);
		dropped = true;
	}
	if (dropped) {
		/* A spare, maybe, for the log thread's roll made ahead. */
		pthread_mutex_lock(&r->lock);
		r->ahead_tried = 0;
		pthread_cond_signal(&r->work);
		pthread_mutex_unlock(&r->lock);
	}
	state_store(&r->state->log_bytes, total);
	free(segs);
}

int64_t pt_checkpoint_now(struct pt_region *r)
{
	uint64_t target, chain;
	bool chain_known;
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
	chain = r->durable_chain;
	chain_known = r->durable_chain_epoch == target;
	pthread_mutex_unlock(&r->lock);
	e = pt_image_checkpoint(&r->img, r->dirfd, target, chain_known ? &chain : NULL);
	if (e >= 0) {
		pthread_mutex_lock(&r->lock);
		if ((uint64_t)e > r->checkpointed) {
			r->checkpointed = (uint64_t)e;
			r->totals.checkpoints++;
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

	pt_thread_announce(&r->ckpt_tid);
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
			pt_checkpoint_now(r);
		pthread_mutex_lock(&r->ckpt_lock);
	}
	pthread_mutex_unlock(&r->ckpt_lock);
	return NULL;
}

PT_EXPORT pt_epoch_t pt_region_checkpoint(struct pt_region *r)
{
	if (!r)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	return pt_checkpoint_now(r);
}

int pt_checkpointer_start(struct pt_region *r)
{
	int ret;

	if (r->opts.flags & PT_REGION_NO_CHECKPOINT_THREAD)
		return 0;
	ret = -pthread_create(&r->ckpt_thread, NULL, ckpt_main, r);
	if (ret)
		return ret;
	r->ckpt_started = true;
	pt_background_thread(r->ckpt_thread, "pt-checkpoint");
	return 0;
}

void pt_checkpointer_stop(struct pt_region *r)
{
	if (!r->ckpt_started)
		return;
	pthread_mutex_lock(&r->ckpt_lock);
	r->ckpt_stop = true;
	pthread_cond_signal(&r->ckpt_cond);
	pthread_mutex_unlock(&r->ckpt_lock);
	pthread_join(r->ckpt_thread, NULL);
	r->ckpt_started = false;
}
