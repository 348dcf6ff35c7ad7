/* Fuzz target: bytes as a log segment's record area, read by pt_record_read, the log reader (whole and heads only) and the gathering of newest copies. */
/*
 * Input: a flags byte (fuzz.h; FZ_TWO_SEGMENTS here splits the area into
 * two segments), then the records.  Each input is decoded:
 *  - from a memfd, record after record with pt_record_read, as inspect and
 *    verify walk a segment;
 *  - as the body of a segment made by pt_segment_create in the process's
 *    temporary directory, through pt_pagelog_next from epoch 1, so the reader's
 *    segment listing, chain checks and skipping are covered too; once
 *    reading whole records, once heads only, whose heads then go through
 *    pt_gather_collect and pt_gather_step (the checkpoint's and a lagging
 *    replica's way: the newest copy of each page, read and checked against
 *    its sum).
 * Every page a record or a step hands out is read whole, so that ASan sees
 * one that claims more than its buffer holds.
 */
#include <sys/mman.h>

#include "fuzz.h"
#include "gather.h"
#include "pagelog.h"

#define FZ_TWO_SEGMENTS 0x10

static int records_fd = -1;

/* Read every byte a checked record claims: its index, sums and pages
 * (a head only: no pages). */
static uint64_t touch(const struct pt_record *rec, const struct pt_region_id *id)
{
	uint64_t sum = rec->hdr->epoch;

	for (uint32_t i = 0; i < rec->hdr->page_count; i++) {
		if (rec->index[i] >= id->npages)
			abort();	/* the reader promised an index in range */
		sum += rec->index[i] + rec->sums[i];
		if (rec->data &&
		    XXH3_64bits(rec->data + (size_t)i * id->page_size, id->page_size) != rec->sums[i])
			abort();	/* a whole record with a page not its sum's */
	}
	return sum;
}

/* The newest copies of the heads collected, step by step. */
static uint64_t gather(int dirfd, const struct pt_region_id *id, struct pt_pagelog_reader *r)
{
	struct pt_gather_step st;
	struct pt_gather g;
	uint64_t sum = 0;

	pt_gather_init(&g, dirfd, id);
	pt_gather_collect(&g, r, UINT64_MAX);
	/* A small budget: several steps from few records. */
	while (pt_gather_step(&g, 2, &st) > 0) {
		for (size_t i = 0; i < st.count; i++) {
			if (st.copies[i].page >= id->npages || (i && st.copies[i].page <= st.copies[i - 1].page))
				abort();	/* pages in range, ascending, once */
			sum += XXH3_64bits(st.data + i * id->page_size, id->page_size);
		}
		sum += st.epoch;
	}
	pt_gather_free(&g);
	return sum;
}

static void walk_memfd(const unsigned char *area, size_t len, const struct pt_region_id *id)
{
	unsigned char *buf = NULL;
	struct pt_record rec;
	volatile uint64_t sink = 0;
	uint64_t off = 0;
	size_t cap = 0;
	int64_t n;

	if (records_fd < 0) {
		records_fd = memfd_create("fuzz-records", MFD_CLOEXEC);
		if (records_fd < 0)
			abort();
	}
	if (ftruncate(records_fd, 0) || (len && pt_write_full(records_fd, area, len, 0)))
		abort();
	for (;;) {
		n = pt_record_read(records_fd, 1, off, 0, id, &buf, &cap, &rec);
		if (n <= 0)
			break;
		if (rec.hdr->length != (uint64_t)n || off + (uint64_t)n > len)
			abort();	/* a record longer than the file was accepted */
		sink += touch(&rec, id);
		off += (uint64_t)n;
	}
	(void)sink;
	free(buf);
}

static void put_segment(int dirfd, const struct pt_region_id *id, uint64_t seq,
			uint64_t first_epoch, const unsigned char *body, size_t len)
{
	int fd = pt_segment_create(dirfd, id, seq, first_epoch);

	if (fd < 0)
		abort();
	if (len && pt_write_full(fd, body, len, id->page_size))
		abort();
	close(fd);
}

static void walk_reader(const unsigned char *area, size_t len, const struct pt_region_id *id,
			bool two)
{
	int dirfd = fz_dir();
	struct pt_pagelog_reader r;
	struct pt_record rec;
	volatile uint64_t sink = 0;
	uint64_t expect = 1;
	size_t split = len;
	char name[64];
	int ret;

	for (uint64_t seq = 1; seq <= 2; seq++) {
		pt_segment_name(name, sizeof(name), seq);
		unlinkat(dirfd, name, 0);
	}
	if (two) {
		split = len / 2 / id->page_size * id->page_size;
		put_segment(dirfd, id, 1, 1, area, split);
		/* The second segment starts at the epoch of its first record,
		 * as the writer makes it (a garbage one: at 2). */
		put_segment(dirfd, id, 2, len - split >= 24 && area[split + 16] ? area[split + 16] : 2,
			    area + split, len - split);
	} else {
		put_segment(dirfd, id, 1, 1, area, len);
	}
	for (int heads = 0; heads < 2; heads++) {
		expect = 1;
		pt_pagelog_reader_init(&r, dirfd, id, 1, pt_chain_seed(id->history_id));
		r.quiet = true;
		r.heads_only = heads;
		while ((ret = pt_pagelog_next(&r, UINT64_MAX, &rec)) > 0) {
			if (rec.hdr->epoch != expect++ || (heads && rec.data))
				abort();	/* in order; heads without pages */
			sink += touch(&rec, id);
		}
		pt_pagelog_reader_free(&r);
	}
	pt_pagelog_reader_init(&r, dirfd, id, 1, pt_chain_seed(id->history_id));
	r.quiet = true;
	r.heads_only = true;
	sink += gather(dirfd, id, &r);
	pt_pagelog_reader_free(&r);
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_region_id id;
	unsigned char *area;
	uint8_t flags;

	if (!size || size > FZ_MAX_FILE)
		return -1;
	flags = data[0];
	data++;
	size--;
	id = fz_id(flags, 0);
	area = malloc(size + 1);
	if (!area)
		abort();
	memcpy(area, data, size);
	if (flags & FZ_FIX_SUMS)
		fz_fix_records(area, size, &id, flags & FZ_FIX_ID);
	walk_memfd(area, size, &id);
	walk_reader(area, size, &id, flags & FZ_TWO_SEGMENTS);
	free(area);
	return 0;
}
