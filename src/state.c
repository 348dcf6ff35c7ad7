/* SPDX-License-Identifier: MIT */
/*
 * reach.c - how far a data directory reaches, and whether that is as far
 * as the region had made durable: the rule every reader of a directory
 * applies (the writer's recovery, replicas, verify, status).
 *
 * The image plus the intact records after it reach some epoch.  The state
 * block remembers the newest epoch an fdatasync covered; the writer stores
 * it only after that fdatasync succeeded, and the block is fsynced when a
 * writer opens it, so after any crash it says at most what really was
 * durable.  A directory that reaches less lost durable epochs (a segment
 * deleted, truncated or damaged): that is -ENOTRECOVERABLE for every
 * reader, and the writer goes on only when told to accept the loss.
 *
 * Files of another history (an image, segment or state block copied from
 * another region) are -ESTALE: a directory holds one history.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"

int pt_reach_judge(int dirfd, const struct pt_region_id *id, struct pt_dir_reach *out)
{
	struct pt_segment_info *segs;
	struct pt_state st;
	size_t n;
	int ret;

	out->foreign = 0;
	out->state_error = 0;
	out->state_ok = false;
	out->durable = 0;
	ret = pt_segments_list(dirfd, id, &segs, &n);
	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (segs[i].bad == -ESTALE)
			out->foreign++;
	free(segs);
	ret = pt_state_read(dirfd, id, &st);
	if (ret == -ESTALE)
		out->foreign++;
	if (out->foreign)
		return -ESTALE;
	if (ret == -ENOENT) {
		/* No state block (or an empty one: created, never written):
		 * a region that never made an epoch durable, or one whose
		 * state file was removed.  Nothing to go by. */
		return 0;
	}
	if (ret) {
		/* A damaged state block cannot say what was durable. */
		out->state_error = ret;
		return -ENOTRECOVERABLE;
	}
	out->state_ok = true;
	out->durable = st.durable;
	return out->reached < st.durable ? -ENOTRECOVERABLE : 0;
}

int pt_dir_reach(int dirfd, const struct pt_image *img, struct pt_dir_reach *out)
{
	struct pt_log_reader rd;
	struct pt_record rec;
	int ret;

	memset(out, 0, sizeof(*out));
	out->image_epoch = img->hdr.epoch;
	pt_log_reader_init(&rd, dirfd, &img->id, img->hdr.epoch + 1, img->hdr.chain);
	rd.quiet = true;
	while ((ret = pt_log_next(&rd, UINT64_MAX, &rec)) > 0)
		;
	out->reached = rd.next_epoch - 1;
	out->reached_chain = rd.chain;
	if (ret < 0) {
		out->log_error = ret;
		out->error_seq = rd.error_seq;
		out->error_offset = rd.error_offset;
	}
	pt_log_reader_free(&rd);
	return pt_reach_judge(dirfd, &img->id, out);
}
