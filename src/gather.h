/* SPDX-License-Identifier: MIT */
/*
 * gather.h - the newest copy of each page among consecutive records
 * (gather.c): what the checkpoint writes into the image, and what a replica
 * that applies many records at once copies.  The records' heads are
 * collected first; then, step by step, the newest copy of each page is read
 * in batches and checked against its sum before any of it is handed out.
 */
#ifndef PT_GATHER_H
#define PT_GATHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "format.h"
#include "pagelog.h"

/* A record whose head was collected. */
struct pt_gather_record {
	uint64_t seq;			/* its segment */
	uint64_t data_offset;		/* of its page 0 in that segment */
	uint64_t epoch;
	uint64_t chain;			/* its header checksum */
	uint64_t first;			/* its index and sums at entries [first, first + count) */
	uint32_t page_count;
};

/* Where the newest copy of a page is, during a step. */
struct pt_gather_copy {
	uint64_t page;			/* UINT64_MAX: a free slot of the hash table */
	uint32_t record;		/* index into records */
	uint32_t slot;			/* page number inside the record */
};

#define PT_GATHER_FDS 16		/* segments kept open while reading */
/* Page content a step holds, for the checkpoint and replicas alike: the
 * distinct pages of about a second of an exchange's writes. */
#define PT_GATHER_STEP_BYTES (32u << 20)

struct pt_gather {
	int dirfd;
	struct pt_region_id id;
	/* the heads collected: records in epoch order, their entries */
	struct pt_gather_record *records;
	size_t nrecords, records_cap;
	uint64_t *index, *sums;
	size_t nentries, entries_cap;
	size_t next;			/* the first record no step has handed out */
	/* the step */
	struct pt_gather_copy *table;	/* open addressing, power-of-two size */
	size_t table_cap, ncopies;
	struct pt_gather_copy *copies;	/* the step's copies, by page */
	size_t copies_cap;
	unsigned char *data;		/* their content, in the same order */
	size_t data_pages;
	struct {
		uint64_t seq;
		int fd;
	} fds[PT_GATHER_FDS];
	/* statistics, for the callers' figures */
	uint64_t bytes_read, reads;
};

/* What a step hands out: count pages, ascending, with their content. */
struct pt_gather_step {
	size_t count;
	const struct pt_gather_copy *copies;	/* copies[i].page, .record */
	const unsigned char *data;		/* page i at data + i * page_size */
	uint64_t epoch, chain;		/* the step's last record: the epoch it makes */
	uint64_t bad_epoch;		/* -EBADMSG: the record whose page failed */
};

void pt_gather_init(struct pt_gather *g, int dirfd, const struct pt_region_id *id);
void pt_gather_free(struct pt_gather *g);
/* Forget the heads from record `from` on (a step failed there). */
void pt_gather_truncate(struct pt_gather *g, size_t from);

/*
 * Collect the heads rd hands out up to epoch limit (rd->heads_only, or a
 * whole reader: the pages are read again by the steps either way).
 * Returns the number of records collected, or rd's error (records up to it
 * are kept).
 */
int pt_gather_collect(struct pt_gather *g, struct pt_pagelog_reader *rd, uint64_t limit);

/*
 * The next step: the records from g->next on, as many as have at most
 * budget distinct pages together (at least one record), and the newest
 * copy of each of their pages, read and checked against its sum.  Returns
 * 1 (st filled, g->next moved past them), 0 when no record is left, or
 * -errno: -EBADMSG when a page does not match its sum (st->bad_epoch says
 * whose; g->next unchanged), -ENODATA when a segment is shorter than the
 * head said, or an I/O error.  st's arrays live until the next step.
 */
int pt_gather_step(struct pt_gather *g, size_t budget, struct pt_gather_step *st);

#endif /* PT_GATHER_H */
