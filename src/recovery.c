/* SPDX-License-Identifier: MIT */
/*
 * recovery.c - rebuilding a region's memory when its writer opens it: the
 * image, then every intact record after it in chain order, stopping at the
 * first torn or corrupt one; the reach of that compared with what the
 * region had made durable (state.c); segments after a corrupt record set
 * aside; every segment read made durable before the recovered epoch is
 * reported durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "state.h"
#include "bitmap.h"
#include "region.h"

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

int pt_recover(struct pt_region *r)
{
	struct pt_pagelog_reader rd;
	struct pt_record rec;
	uint64_t *suspect = NULL, nsuspect = 0, copied = 0, max_seq = 0;
	size_t ps = r->id.page_size;
	struct pt_dir_reach reach = { 0 };
	int ret, judged;

	suspect = calloc((r->id.npages + 63) / 64, 8);
	if (!suspect)
		return -ENOMEM;
	ret = pt_image_copy_newer(&r->img, 0, r->base, suspect, &nsuspect, &copied, NULL);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: cannot read the image: %s", r->dir, pt_strerror(ret));
		goto out;
	}
	pt_pagelog_reader_init(&rd, r->dirfd, &r->id, r->img.hdr.epoch + 1, r->img.hdr.chain);
	while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0) {
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
		pt_pagelog_reader_free(&rd);
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
			pt_pagelog_reader_free(&rd);
			goto out;
		}
		pt_log(PT_LOG_ERROR, "%s: %s; accepting the loss as asked: the region goes on "
		       "from epoch %" PRIu64, r->dir, what, r->published);
	} else if (judged) {
		ret = judged;
		pt_pagelog_reader_free(&rd);
		goto out;
	}
	if (ret < 0) {
		pt_log(PT_LOG_WARN, "%s: recovery stops at epoch %" PRIu64 " in segment %016" PRIx64
		       " at offset %" PRIu64 ": %s; recovered epoch %" PRIu64, r->dir,
		       rd.next_epoch, rd.error_seq, rd.error_offset, pt_strerror(ret),
		       r->published);
		orphan_after(r, rd.seq > rd.error_seq ? rd.seq : rd.error_seq);
	}
	pt_pagelog_reader_free(&rd);
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
	r->durable_chain = r->chain;
	r->durable_chain_epoch = r->durable;
	r->checkpointed = r->img.hdr.epoch;
	pt_log(PT_LOG_INFO, "%s: recovered epoch %" PRIu64 " (image at %" PRIu64 ", %" PRIu64
	       " pages from it)", r->dir, r->published, r->checkpointed, copied);
out:
	free(suspect);
	return ret;
}
