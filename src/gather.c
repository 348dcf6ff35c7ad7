/* SPDX-License-Identifier: MIT */
/*
 * gather.c - the newest copy of each page among consecutive records, read
 * once: the checkpoint's way through the log, and a replica's when it
 * applies many records at once.
 *
 * A page rewritten in every epoch has as many copies in the log as there
 * are records; the region at the last of them needs only the newest.  So
 * the heads are collected first (a head is the record's index and the sum
 * of each page: a page of head for about 250 pages of data), and the pages
 * are read afterwards, only the newest copy of each, in batches: one
 * preadv(2) for each run of copies that lie next to each other in a
 * segment, scattered into a buffer in page order.  Each copy is checked
 * against the sum its head holds (one hash a page, the only one), and a
 * step hands out nothing before every copy it read matched.
 *
 * Steps bound the memory: a step takes as many records as have at most
 * `budget` distinct pages together, so the content it holds is at most
 * budget pages (or one record's pages, for a record larger than that).
 * Each step ends at a record: applying steps in turn moves a copy of the
 * region from whole epoch to whole epoch, and a failed step leaves it at
 * the epoch of the step before.  The price of the bound: records with
 * more distinct pages together than a step holds take several steps, and
 * a page they all rewrite is read once a step.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "gather.h"

void pt_gather_init(struct pt_gather *g, int dirfd, const struct pt_region_id *id)
{
	memset(g, 0, sizeof(*g));
	g->dirfd = dirfd;
	g->id = *id;
	for (int i = 0; i < PT_GATHER_FDS; i++)
		g->fds[i].fd = -1;
}

void pt_gather_free(struct pt_gather *g)
{
	for (int i = 0; i < PT_GATHER_FDS; i++)
		if (g->fds[i].fd >= 0)
			close(g->fds[i].fd);
	free(g->records);
	free(g->index);
	free(g->sums);
	free(g->table);
	free(g->copies);
	free(g->data);
	pt_gather_init(g, g->dirfd, &g->id);
}

void pt_gather_truncate(struct pt_gather *g, size_t from)
{
	if (from >= g->nrecords)
		return;
	g->nentries = g->records[from].first;
	g->nrecords = from;
	if (g->next > from)
		g->next = from;
}

/* Room for n elements of size sz in *v (capacity *cap, doubled). */
static int reserve(void **v, size_t *cap, size_t n, size_t sz)
{
	size_t c = *cap ? *cap : 64;
	void *p;

	if (n <= *cap)
		return 0;
	while (c < n)
		c *= 2;
	p = realloc(*v, c * sz);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = c;
	return 0;
}

static int add_record(struct pt_gather *g, const struct pt_record *rec)
{
	uint32_t count = rec->hdr->page_count;
	size_t ecap = g->entries_cap;
	int ret;

	if (g->nrecords >= UINT32_MAX)
		return -EOVERFLOW;
	ret = reserve((void **)&g->records, &g->records_cap, g->nrecords + 1, sizeof(*g->records));
	if (!ret)
		ret = reserve((void **)&g->index, &ecap, g->nentries + count, sizeof(uint64_t));
	if (!ret)
		ret = reserve((void **)&g->sums, &g->entries_cap, g->nentries + count,
			      sizeof(uint64_t));
	if (ret)
		return ret;
	g->records[g->nrecords++] = (struct pt_gather_record){
		.seq = rec->seq, .data_offset = rec->data_offset, .epoch = rec->hdr->epoch,
		.chain = rec->hdr->header_checksum, .first = g->nentries, .page_count = count,
	};
	if (count) {
		memcpy(g->index + g->nentries, rec->index, count * sizeof(uint64_t));
		memcpy(g->sums + g->nentries, rec->sums, count * sizeof(uint64_t));
	}
	g->nentries += count;
	return 0;
}

int pt_gather_collect(struct pt_gather *g, struct pt_pagelog_reader *rd, uint64_t limit)
{
	struct pt_record rec;
	int ret, n = 0;

	while ((ret = pt_pagelog_next(rd, limit, &rec)) > 0) {
		ret = add_record(g, &rec);
		if (ret)
			return ret;
		n++;
	}
	return ret < 0 ? ret : n;
}

/* ---- a step ------------------------------------------------------------- */

static size_t page_hash(uint64_t page, size_t cap)
{
	return (size_t)(page * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
}

/* A table of at least 2 * want slots, holding the copies noted so far. */
static int table_reserve(struct pt_gather *g, size_t want)
{
	struct pt_gather_copy *t;
	size_t cap = g->table_cap ? g->table_cap : 1024;

	if (2 * want <= g->table_cap)
		return 0;
	while (cap < 2 * want)
		cap *= 2;
	t = malloc(cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		t[i].page = UINT64_MAX;
	for (size_t i = 0; i < g->table_cap; i++) {
		size_t h;

		if (g->table[i].page == UINT64_MAX)
			continue;
		for (h = page_hash(g->table[i].page, cap); t[h].page != UINT64_MAX; h = (h + 1) & (cap - 1))
			;
		t[h] = g->table[i];
	}
	free(g->table);
	g->table = t;
	g->table_cap = cap;
	return 0;
}

/* The table's slot of page: its copy, or the free slot it would take. */
static struct pt_gather_copy *slot_of(struct pt_gather *g, uint64_t page)
{
	struct pt_gather_copy *e;
	size_t h;

	for (h = page_hash(page, g->table_cap); ; h = (h + 1) & (g->table_cap - 1)) {
		e = &g->table[h];
		if (e->page == page || e->page == UINT64_MAX)
			return e;
	}
}

/* The copy of page in slot of record: newer than any noted before. */
static void note(struct pt_gather *g, uint64_t page, uint32_t record, uint32_t slot)
{
	struct pt_gather_copy *e = slot_of(g, page);

	if (e->page == UINT64_MAX)
		g->ncopies++;
	*e = (struct pt_gather_copy){ .page = page, .record = record, .slot = slot };
}

/* The pages of record rc no record of the step has yet. */
static size_t new_pages(struct pt_gather *g, const struct pt_gather_record *rc)
{
	size_t n = 0;

	for (uint32_t s = 0; s < rc->page_count; s++)
		n += slot_of(g, g->index[rc->first + s])->page == UINT64_MAX;
	return n;
}

static int copy_by_page(const void *a, const void *b)
{
	const struct pt_gather_copy *x = a, *y = b;

	return x->page < y->page ? -1 : x->page > y->page;
}

static int segment_fd(struct pt_gather *g, uint64_t seq)
{
	int k = (int)(seq % PT_GATHER_FDS);
	uid_t owner = 0;
	char name[64];
	int ret;

	if (g->fds[k].fd >= 0 && g->fds[k].seq == seq)
		return g->fds[k].fd;
	if (g->fds[k].fd >= 0)
		close(g->fds[k].fd);
	g->fds[k].fd = -1;
	ret = pt_dir_owner(g->dirfd, &owner);
	if (ret)
		return ret;
	pt_segment_name(name, sizeof(name), seq);
	g->fds[k].seq = seq;
	g->fds[k].fd = pt_open_file(g->dirfd, name, O_RDONLY, owner);
	return g->fds[k].fd;
}

/* A copy to read: where it lies in the log, and its place in the step. */
struct place {
	uint32_t record, slot;
	uint32_t pos;
};

static int by_place(const void *a, const void *b)
{
	const struct place *x = a, *y = b;

	if (x->record != y->record)
		return x->record < y->record ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* The end of the run from pl[i]: copies next to each other in one record
 * (consecutive slots), at most max of them. */
static size_t run_end(const struct place *pl, size_t count, size_t i, size_t max)
{
	size_t j = i + 1;

	while (j < count && j - i < max && pl[j].record == pl[i].record &&
	       pl[j].slot == pl[i].slot + (j - i))
		j++;
	return j;
}

/*
 * Read the copies of the step into g->data, copy i at i * page_size.
 * Copies that lie next to each other in a record (consecutive slots) are
 * one read, whatever their places in the buffer.  pl: count copies sorted
 * by where they lie.
 *
 * Every run is announced first (POSIX_FADV_WILLNEED), so that the kernel
 * reads those not in the page cache all at once and only them: read one
 * by one, each missed page was a synchronous read that the kernel's
 * readahead also widened around it.  With the log written O_DIRECT
 * (nothing of it cached) this took the checkpoint of the bench's cycle
 * from 1.9-2.1 to 0.74-0.78 us of CPU a written page and from 169-229 to
 * 68-73 ms; with the log in the page cache it changed nothing measurable.
 */
static int read_copies(struct pt_gather *g, const struct place *pl, size_t count)
{
	size_t ps = g->id.page_size;
	struct iovec iov[64];
	int fd;

	for (size_t i = 0, j; i < count; i = j) {
		const struct pt_gather_record *rc = &g->records[pl[i].record];

		j = run_end(pl, count, i, SIZE_MAX);
		fd = segment_fd(g, rc->seq);
		if (fd < 0)
			return fd;
		/* Advice: if it fails, the reads below still read. */
		(void)posix_fadvise(fd, (off_t)(rc->data_offset + (uint64_t)pl[i].slot * ps),
				    (off_t)((j - i) * ps), POSIX_FADV_WILLNEED);
	}
	for (size_t i = 0, j; i < count; i = j) {
		const struct pt_gather_record *rc = &g->records[pl[i].record];
		ssize_t got;

		j = run_end(pl, count, i, sizeof(iov) / sizeof(iov[0]));
		for (size_t k = i; k < j; k++) {
			iov[k - i].iov_base = g->data + (size_t)pl[k].pos * ps;
			iov[k - i].iov_len = ps;
		}
		fd = segment_fd(g, rc->seq);
		if (fd < 0)
			return fd;
		got = pt_readv_full(fd, iov, (int)(j - i),
				    (off_t)(rc->data_offset + (uint64_t)pl[i].slot * ps));
		if (got < 0)
			return (int)got;
		g->reads++;
		g->bytes_read += (uint64_t)got;
		if ((size_t)got < (j - i) * ps)
			return -ENODATA;
	}
	return 0;
}

int pt_gather_step(struct pt_gather *g, size_t budget, struct pt_gather_step *st)
{
	size_t ps = g->id.page_size, end, n = 0;
	struct place *places;
	int ret;

	memset(st, 0, sizeof(*st));
	if (g->next >= g->nrecords)
		return 0;
	/* The records of the step, and the newest copy of each page. */
	g->ncopies = 0;
	for (size_t i = 0; i < g->table_cap; i++)
		g->table[i].page = UINT64_MAX;
	for (end = g->next; end < g->nrecords; end++) {
		const struct pt_gather_record *rc = &g->records[end];

		ret = table_reserve(g, g->ncopies + rc->page_count);
		if (ret)
			return ret;
		/* Pages the step has already cost nothing more. */
		if (end > g->next && g->ncopies + new_pages(g, rc) > budget)
			break;
		for (uint32_t s = 0; s < rc->page_count; s++)
			note(g, g->index[rc->first + s], (uint32_t)end, s);
	}
	ret = reserve((void **)&g->copies, &g->copies_cap, g->ncopies, sizeof(*g->copies));
	if (ret)
		return ret;
	for (size_t i = 0; i < g->table_cap; i++)
		if (g->table[i].page != UINT64_MAX)
			g->copies[n++] = g->table[i];
	if (n > 1)
		qsort(g->copies, n, sizeof(*g->copies), copy_by_page);
	if (n > g->data_pages) {
		/* Its old content is of no use: no realloc copying it. */
		free(g->data);
		g->data = malloc(n * ps);
		g->data_pages = g->data ? n : 0;
		if (!g->data)
			return -ENOMEM;
	}
	places = malloc((n ? n : 1) * sizeof(*places));
	if (!places)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		places[i] = (struct place){ .record = g->copies[i].record, .slot = g->copies[i].slot,
					    .pos = (uint32_t)i };
	if (n > 1)
		qsort(places, n, sizeof(*places), by_place);
	ret = read_copies(g, places, n);
	free(places);
	if (ret)
		return ret;
	for (size_t i = 0; i < n; i++) {
		const struct pt_gather_copy *c = &g->copies[i];
		const struct pt_gather_record *rc = &g->records[c->record];

		if (pt_checksum(g->data + i * ps, ps) != g->sums[rc->first + c->slot]) {
			st->bad_epoch = rc->epoch;
			return -EBADMSG;
		}
	}
	st->count = n;
	st->copies = g->copies;
	st->data = g->data;
	st->epoch = g->records[end - 1].epoch;
	st->chain = g->records[end - 1].chain;
	g->next = end;
	return 1;
}
