/* SPDX-License-Identifier: MIT */
/*
 * state.c - the writer's state block as its readers see it (checked on a
 * copy: the writer changes it under them), and how far a data directory
 * reaches, and whether that is as far as the region had made durable: the
 * rule every reader of a directory applies (the writer's recovery,
 * replicas, verify, status).
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
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "state.h"

int pt_state_check(const struct pt_state *st, uint64_t file_size, const struct pt_region_id *id)
{
	static const char zero[8];

	if (file_size < sizeof(*st))
		return -ENODATA;
	if (memcmp(st->magic, PT_STATE_MAGIC, 8))
		/* All zero: a writer is creating the region right now. */
		return memcmp(st->magic, zero, 8) ? -EBADMSG : -ENOENT;
	if (st->version != PT_FORMAT_VERSION || st->size != sizeof(*st))
		return -EPROTO;
	if (id && st->page_size != id->page_size)
		return -EXDEV;
	if (id && (st->history_id != id->history_id || st->npages != id->npages))
		return -ESTALE;
	/* Levels come in order; a block that says otherwise is damaged.
	 * (durable <= published is checked only once the writer has closed:
	 * a copy taken while it runs may hold a newer durable than the
	 * published it copied first.) */
	if (st->checkpointed > st->durable || (!st->writer_pid && st->durable > st->published))
		return -EBADMSG;
	for (int i = 0; i < PT_RING_DESCS; i++) {
		const struct pt_ring_desc *d = &st->ring[i];

		if (d->epoch && (d->offset > st->staging_bytes ||
				 d->length > st->staging_bytes - d->offset))
			return -EBADMSG;
	}
	return 0;
}

/* Open the state file as every reader must (pt_open_file) and its size. */
static int state_open_ro(int dirfd, uint64_t *size)
{
	struct stat sb;
	uid_t owner = 0;
	int fd, ret;

	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		return ret;
	fd = pt_open_file(dirfd, PT_STATE_NAME, O_RDONLY, owner);
	if (fd < 0)
		return fd;
	if (fstat(fd, &sb)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*size = (uint64_t)sb.st_size;
	return fd;
}

int pt_state_read(int dirfd, const struct pt_region_id *id, struct pt_state *copy)
{
	uint64_t size = 0;
	ssize_t n;
	int fd;

	fd = state_open_ro(dirfd, &size);
	if (fd < 0)
		return fd;
	n = pt_read_full(fd, copy, sizeof(*copy), 0);
	close(fd);
	if (n < 0)
		return (int)n;
	return (size_t)n < sizeof(*copy) ? (n ? -ENODATA : -ENOENT) :
		pt_state_check(copy, size, id);
}

int pt_state_map_ro(int dirfd, const struct pt_state **st, int *fdp)
{
	struct pt_state copy;
	uint64_t size = 0;
	void *p;
	int fd, ret;

	fd = state_open_ro(dirfd, &size);
	if (fd < 0)
		return fd;
	if (size < sizeof(struct pt_state)) {
		ret = -ENODATA;
		goto err;
	}
	p = mmap(NULL, sizeof(struct pt_state), PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		ret = -errno;
		goto err;
	}
	/* Checked on a copy: the writer changes the block under us. */
	memcpy(&copy, p, sizeof(copy));
	ret = pt_state_check(&copy, size, NULL);
	if (ret) {
		munmap(p, sizeof(struct pt_state));
		goto err;
	}
	*st = p;
	*fdp = fd;
	return 0;
err:
	close(fd);
	return ret;
}

int pt_reach_judge(int dirfd, const struct pt_region_id *id, struct pt_dir_reach *out)
{
	struct pt_segment_info *segs;
	struct pt_state st;
	int ret, untrusted;
	size_t n;

	out->foreign = 0;
	out->state_error = 0;
	out->state_ok = false;
	out->durable = 0;
	ret = pt_segments_list(dirfd, id, &segs, &n);
	if (ret)
		return ret;
	untrusted = 0;
	for (size_t i = 0; i < n; i++) {
		if (segs[i].bad == -ESTALE)
			out->foreign++;
		/* A segment of another user, writable by others, or not a
		 * regular file: not a missing record but a file planted or
		 * tampered with, and refused as such. */
		if ((segs[i].bad == -EPERM || segs[i].bad == -EMEDIUMTYPE) && !untrusted)
			untrusted = segs[i].bad;
	}
	free(segs);
	if (untrusted)
		return untrusted;
	ret = pt_state_read(dirfd, id, &st);
	if (ret == -ESTALE)
		out->foreign++;
	if (out->foreign)
		return -ESTALE;
	if (ret == -EPERM || ret == -EMEDIUMTYPE)
		return ret;
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
	struct pt_pagelog_reader rd;
	struct pt_record rec;
	int ret;

	memset(out, 0, sizeof(*out));
	out->image_epoch = img->hdr.epoch;
	pt_pagelog_reader_init(&rd, dirfd, &img->id, img->hdr.epoch + 1, img->hdr.chain);
	rd.quiet = true;
	while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0)
		;
	out->reached = rd.next_epoch - 1;
	out->reached_chain = rd.chain;
	if (ret < 0) {
		out->log_error = ret;
		out->error_seq = rd.error_seq;
		out->error_offset = rd.error_offset;
	}
	pt_pagelog_reader_free(&rd);
	return pt_reach_judge(dirfd, &img->id, out);
}
