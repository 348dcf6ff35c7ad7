/* SPDX-License-Identifier: MIT */
/*
 * pagelog.h - the page log (pagelog.c): segment files of records, one
 * record per epoch, and the reader every consumer uses (recovery, the
 * checkpoint, replicas, the directory tools).  "Page log", never "log":
 * pt_log() is the library's diagnostics.
 */
#ifndef PT_PAGELOG_H
#define PT_PAGELOG_H

#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "internal.h"

struct pt_segment_info {
	uint64_t seq;
	uint64_t first_epoch;
	uint64_t size;
	int bad;		/* header unreadable: -errno */
};

/* The segments in dirfd ascending by seq; *out is malloc()ed. */
int pt_segments_list(int dirfd, const struct pt_region_id *id, struct pt_segment_info **out,
		     size_t *nr);
void pt_segment_name(char *buf, size_t len, uint64_t seq);
void pt_spare_name(char *buf, size_t len, uint64_t seq);
/*
 * A segment no one needs any more: kept as a spare file for the next
 * pt_segment_create() to recycle (its blocks stay allocated: the log's
 * appends then overwrite them, cheaper than allocating, and so is their
 * fdatasync), while fewer than keep spares exist; else unlinked.
 */
int pt_segment_retire(int dirfd, uint64_t seq, unsigned int keep);
/*
 * A record older than its segment's first epoch is a recycled file's old
 * content, not a record of this segment: the segment's records end there.
 */
static inline bool pt_record_stale(const struct pt_record_header *h, uint64_t first_epoch)
{
	return h->epoch < first_epoch;
}
/* Create a segment file and write its header; returns the fd or -errno. */
int pt_segment_create(int dirfd, const struct pt_region_id *id, uint64_t seq,
		      uint64_t first_epoch);
/*
 * pt_segment_create() in two steps, so that the first can run ahead of
 * time: a spare given the header of segment seq and made durable, under
 * its spare name (in spare); returns the fd, -ENOENT when there is no
 * spare, or -errno.  Then pt_segment_install() renames it segment seq
 * (the caller fsyncs the directory).
 */
int pt_segment_prepare(int dirfd, const struct pt_region_id *id, uint64_t seq,
		       uint64_t first_epoch, char *spare, size_t len);
int pt_segment_install(int dirfd, const char *spare, uint64_t seq);

/* Fill in the header fields of a record staged in buf (not the checksums,
 * so that it can be published from staging memory first), then seal it:
 * the sum of each page (its one hash), the payload and header checksums.
 * pt_record_sum puts the sums of pages [first, first + n) in place (the
 * page count filled in or not: given apart), pt_record_seal_head seals a
 * head whose sums are all in place. */
void pt_record_fill(void *buf, const struct pt_region_id *id, uint64_t epoch,
		    uint32_t page_count, uint64_t prev);
void pt_record_seal(void *buf);
void pt_record_sum(void *buf, uint32_t page_count, size_t page_size, uint32_t first, uint32_t n);
void pt_record_seal_head(void *buf);


/* A record read and checked. */
struct pt_record {
	const struct pt_record_header *hdr;
	const uint64_t *index;
	const uint64_t *sums;		/* XXH3-64 of page i */
	const unsigned char *data;	/* page i at data + i * page_size; NULL: heads only */
	uint64_t seq;			/* where it was found */
	uint64_t offset;
	uint64_t data_offset;		/* page 0 in the segment file */
};

/*
 * Reads records in epoch order across segments, checking each completely
 * before handing it out.  Used by recovery, checkpoint, replicas, verify
 * and inspect.
 */
struct pt_pagelog_reader {
	int dirfd;
	struct pt_region_id id;
	int fd;				/* current segment, -1: none */
	uint64_t seq;
	uint64_t seg_first;		/* the current segment's first epoch */
	uint64_t offset;
	uint64_t next_epoch;		/* the epoch wanted next */
	uint64_t chain;			/* header checksum of record next_epoch - 1 */
	unsigned char *buf;
	size_t cap;
	bool quiet;			/* replicas: no pt_log for a missing tail */
	/*
	 * Hand out heads only (data NULL): header, head checksum, indices and
	 * that the file holds the whole record are checked, not the pages;
	 * the caller checks each page it reads against its sum.  Where a
	 * later segment holds the epoch wanted again, its copy is taken
	 * (rewritten_later() in pagelog.c).  The segments are listed at the
	 * first call: set it on a reader made after the newest record wanted
	 * was written.
	 */
	bool heads_only;
	bool any_chain;			/* take the first record whatever its prev */
	bool dropped;			/* the last call returned -ESTALE: not retained */
	int last_error;			/* why the last call stopped */
	uint64_t error_seq, error_offset;
	/* the segment list at the last look */
	struct pt_segment_info *segs;
	size_t nsegs;
};

void pt_pagelog_reader_init(struct pt_pagelog_reader *r, int dirfd, const struct pt_region_id *id,
			uint64_t next_epoch, uint64_t chain);
void pt_pagelog_reader_free(struct pt_pagelog_reader *r);
/*
 * The record of epoch r->next_epoch, if its epoch is <= limit.  Returns 1
 * (rec filled; next_epoch and chain advance), 0 when the log ends cleanly
 * before it, -ESTALE with r->dropped set when it is no longer retained
 * (dropped by a checkpoint: catch up from the image), -ESTALE without it
 * when the record does not continue the chain (another path of history),
 * or the error of the torn or corrupt record where reading stops
 * (r->error_seq/offset say where).
 */
int pt_pagelog_next(struct pt_pagelog_reader *r, uint64_t limit, struct pt_record *rec);
/*
 * Read and check the record at (fd, offset) of segment seq, whose first
 * epoch is first_epoch; returns its length (> 0), 0 at the end of the
 * segment's records (a clean end of file, zeros, or a recycled file's older
 * record: judged from its header alone, since the pages behind a stale
 * header may already be a newer record's), or -errno.  Fills rec.
 */
int64_t pt_record_read(int fd, uint64_t seq, uint64_t offset, uint64_t first_epoch,
		       const struct pt_region_id *id, unsigned char **buf, size_t *cap,
		       struct pt_record *rec);
const char *pt_strerror(int err);
/* The header checksum of the record of epoch: 0, -ENOENT (not in the log),
 * or the error that kept it from being read. */
int pt_pagelog_record_checksum(int dirfd, const struct pt_region_id *id, uint64_t epoch, uint64_t *sum);

#endif /* PT_PAGELOG_H */
