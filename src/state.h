/* SPDX-License-Identifier: MIT */
/*
 * state.h - the writer's state block as its readers see it, and how far a
 * data directory reaches against the durable epoch the block records
 * (state.c).
 */
#ifndef PT_STATE_H
#define PT_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "image.h"
#include "image.h"

int pt_state_map_ro(int dirfd, const struct pt_state **st, int *fd);
/* Read and check the state block into *copy: 0, -ENOENT (no block yet, or
 * an empty or all-zero one: nothing to go by), or the error of
 * pt_state_check(). */
int pt_state_read(int dirfd, const struct pt_region_id *id, struct pt_state *copy);
/*
 * Check a state block copied out of its file (file_size bytes long) against
 * the region it should describe (id; NULL: any): 0, -ENODATA (short),
 * -EBADMSG (magic, or numbers that cannot be: epochs out of order, a ring
 * descriptor outside the staging memory), -EPROTO, -EXDEV, -ESTALE (another
 * history or size).  Cheap: readers call it on every copy they trust.
 */
int pt_state_check(const struct pt_state *st, uint64_t file_size, const struct pt_region_id *id);

/*
 * How far a data directory reaches, read without changing anything: the
 * image's epoch, then every intact record after it in chain order.  The
 * state block's durable epoch is what the writer had made durable; an
 * image plus log that reach less than that lost durable epochs.
 */
struct pt_dir_reach {
	uint64_t image_epoch;
	uint64_t reached;	/* newest epoch the image plus intact records reach */
	uint64_t reached_chain;	/* header checksum of record `reached` */
	uint64_t durable;	/* the state block's durable epoch (0: no state) */
	bool state_ok;		/* a state block of this history was read */
	int state_error;	/* why a state block present could not be
				 * trusted (-EBADMSG...; then -ENOTRECOVERABLE:
				 * what was durable is unknown) */
	int log_error;		/* why the log stops (0: a clean end) */
	uint64_t error_seq, error_offset;
	uint64_t foreign;	/* segments (or a state block) of another history */
};
/*
 * Fill *out for the directory whose image img is open.  Returns 0 when the
 * durable epochs are reached, -ENOTRECOVERABLE when not (out says how far),
 * -ESTALE when a segment or the state block belongs to another history than
 * the image, -EPERM or -EMEDIUMTYPE when one of them is not a file to trust
 * (another user's, writable by others, not a regular file), or another
 * -errno when it could not look.
 */
int pt_dir_reach(int dirfd, const struct pt_image *img, struct pt_dir_reach *out);
/* The same judgement for a caller that walked the log itself (recovery):
 * out->reached set, the rest filled in here. */
int pt_reach_judge(int dirfd, const struct pt_region_id *id, struct pt_dir_reach *out);

/* replicated.c: the replicated file of dirfd, for the writer's waits. */
struct pt_replicated;
int pt_replicated_openat(struct pt_replicated **out, int dirfd);
/* Wait until epoch is reported replicated: 0, -ETIMEDOUT, -EOWNERDEAD.
 * timeout_ms is what is left of the caller's deadline (-1: forever). */
int pt_replicated_wait(struct pt_replicated *h, uint64_t epoch, int timeout_ms);

#endif /* PT_STATE_H */
