/* SPDX-License-Identifier: MIT */
/*
 * image.c - the region's image: a full copy at the checkpointed epoch, a
 * page table (per page: the epoch it last changed, its XXH3 checksum) and
 * two header slots; creation, reading, catch-up copies and the checkpoint.
 *
 * The checkpoint updates the image in place, with the log as its redo log:
 * it writes the pages of the durable records after the image's epoch (each
 * page once, its newest copy), then their table entries, fdatasyncs, and
 * only then writes the other header slot with the new epoch and fdatasyncs
 * again.  Until that last write the header names the old epoch, and every
 * page the checkpoint may have torn belongs to a record after it, which
 * recovery and replicas apply anyway.
 * Segments are dropped only after the new header is durable (region.c).
 *
 * A reader copying from the image while a checkpoint runs (a replica
 * catching up) may see such a half-written page; its checksum will not
 * match, and it is flagged "suspect" rather than trusted: the records after
 * the header's epoch rewrite it.  A suspect page no record covers is real
 * corruption, and the caller says so.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "format.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "bitmap.h"
#include "internal.h"

#define TABLE_CHUNK (1u << 20)		/* bytes of page table read at once */

static uint64_t entry_checksum(const struct pt_image_entry *e, uint64_t index)
{
	return XXH3_64bits_withSeed(e, offsetof(struct pt_image_entry, checksum), index);
}

/*
 * Every entry carries a checksum, the entry of a page never written too
 * (generation 0, the checksum of a zero page): a block of zeros, which a
 * failing disk or a careless copy leaves, must not read as "never written,
 * zero" (format version 1 allowed that, and recovery served epoch-0 content
 * at the image's epoch).
 */
static bool entry_ok(const struct pt_image_entry *e, uint64_t index)
{
	return e->checksum == entry_checksum(e, index);
}

static void entry_set(struct pt_image_entry *e, uint64_t index, uint64_t generation,
		      uint64_t page_checksum)
{
	e->generation = generation;
	e->page_checksum = page_checksum;
	e->reserved = 0;
	e->checksum = entry_checksum(e, index);
}

static uint64_t zero_page_checksum(size_t page_size)
{
	static uint64_t sum;
	static size_t sum_for;
	uint64_t v;
	void *zero;

	if (__atomic_load_n(&sum_for, __ATOMIC_ACQUIRE) == page_size)
		return __atomic_load_n(&sum, __ATOMIC_RELAXED);
	zero = calloc(1, page_size);
	if (!zero)
		return 0;
	v = pt_checksum(zero, page_size);
	free(zero);
	__atomic_store_n(&sum, v, __ATOMIC_RELAXED);
	__atomic_store_n(&sum_for, page_size, __ATOMIC_RELEASE);
	return v;
}

/* Write the table of a new image: every page at generation 0, zero. */
static int table_create(int fd, const struct pt_region_id *id, uint64_t table_offset)
{
	size_t per = TABLE_CHUNK / sizeof(struct pt_image_entry);
	uint64_t zsum = zero_page_checksum(id->page_size);
	struct pt_image_entry *tab;
	int ret = 0;

	tab = malloc(per * sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (uint64_t base = 0; base < id->npages && !ret; base += per) {
		uint64_t cnt = id->npages - base < per ? id->npages - base : per;

		for (uint64_t i = 0; i < cnt; i++)
			entry_set(&tab[i], base + i, 0, zsum);
		ret = pt_write_full(fd, tab, cnt * sizeof(*tab),
				    (off_t)(table_offset + base * sizeof(*tab)));
	}
	free(tab);
	return ret;
}

static uint64_t table_bytes(const struct pt_region_id *id)
{
	return pt_round_up(id->npages * sizeof(struct pt_image_entry), id->page_size);
}

static void header_fill(struct pt_image_header *h, const struct pt_region_id *id, uint64_t epoch,
			uint64_t chain, uint64_t seq)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->magic, PT_IMAGE_MAGIC, 8);
	h->version = PT_FORMAT_VERSION;
	h->header_size = sizeof(*h);
	h->page_size = id->page_size;
	h->npages = id->npages;
	h->history_id = id->history_id;
	h->epoch = epoch;
	h->chain = chain;
	h->seq = seq;
	h->table_offset = 2ull * id->page_size;
	h->data_offset = h->table_offset + table_bytes(id);
	h->created = (uint64_t)time(NULL);
	h->checksum = pt_header_checksum(h, sizeof(*h), offsetof(struct pt_image_header, checksum));
}

/*
 * Write a whole image as image.tmp (header h in slot 0, then what fill
 * writes: the table and the data), fsync it and rename it over the image:
 * the directory holds either the old image or this one, whole.
 */
static int image_replace(int dirfd, const struct pt_image_header *h,
			 int (*fill)(int fd, const struct pt_image_header *h, void *arg), void *arg)
{
	int fd, ret;

	/* A leftover from a write that crashed half way. */
	pt_io->unlinkat(dirfd, PT_IMAGE_TMP_NAME);
	fd = pt_create_file(dirfd, PT_IMAGE_TMP_NAME, O_RDWR);
	if (fd < 0)
		return fd;
	ret = pt_io->ftruncate(fd, (off_t)(h->data_offset + h->npages * h->page_size));
	if (!ret)
		ret = fill(fd, h, arg);
	if (!ret)
		ret = pt_write_full(fd, h, sizeof(*h), 0);
	if (!ret)
		ret = pt_io->fsync(fd);
	pt_io->close(fd);
	if (!ret)
		ret = pt_io->renameat(dirfd, PT_IMAGE_TMP_NAME, PT_IMAGE_NAME);
	if (!ret)
		ret = pt_io->fsync(dirfd);
	if (ret)
		pt_io->unlinkat(dirfd, PT_IMAGE_TMP_NAME);
	return ret;
}

static int fill_new(int fd, const struct pt_image_header *h, void *arg)
{
	return table_create(fd, arg, h->table_offset);
}

int pt_image_create(int dirfd, const struct pt_region_id *id)
{
	struct pt_image_header h;

	header_fill(&h, id, 0, pt_chain_seed(id->history_id), 1);
	return image_replace(dirfd, &h, fill_new, (void *)id);
}

struct fill_jump {
	const struct pt_region_id *id;
	const unsigned char *mem;
	const struct pt_page_version *versions;
	uint64_t count;
	const uint64_t *pages;
	const unsigned char *data;
};

/* The table from the versions, the data from mem with the given pages over it. */
static int fill_jump(int fd, const struct pt_image_header *h, void *arg)
{
	const struct fill_jump *fj = arg;
	size_t per = TABLE_CHUNK / sizeof(struct pt_image_entry), ps = fj->id->page_size;
	uint64_t npages = fj->id->npages, next = 0;
	struct pt_image_entry *tab;
	int ret = 0;

	tab = malloc(per * sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (uint64_t base = 0; base < npages && !ret; base += per) {
		uint64_t cnt = npages - base < per ? npages - base : per;

		for (uint64_t i = 0; i < cnt; i++)
			entry_set(&tab[i], base + i, (uint64_t)fj->versions[base + i].generation,
				  fj->versions[base + i].checksum);
		ret = pt_write_full(fd, tab, cnt * sizeof(*tab),
				    (off_t)(h->table_offset + base * sizeof(*tab)));
	}
	free(tab);
	/* Runs of kept pages straight from memory, given pages from data. */
	for (uint64_t p = 0; p < npages && !ret;) {
		uint64_t end = next < fj->count ? fj->pages[next] : npages;

		if (p < end) {
			ret = pt_write_full(fd, fj->mem + p * ps, (size_t)(end - p) * ps,
					    (off_t)(h->data_offset + p * ps));
			p = end;
			continue;
		}
		ret = pt_write_full(fd, fj->data + next * ps, ps, (off_t)(h->data_offset + p * ps));
		next++;
		p++;
	}
	return ret;
}

int pt_image_write(int dirfd, const struct pt_region_id *id, uint64_t epoch, uint64_t chain,
		   uint64_t seq, const void *mem, const struct pt_page_version *versions,
		   uint64_t count, const uint64_t *pages, const void *data)
{
	struct fill_jump fj = { .id = id, .mem = mem, .versions = versions, .count = count,
				.pages = pages, .data = data };
	struct pt_image_header h;

	header_fill(&h, id, epoch, chain, seq);
	return image_replace(dirfd, &h, fill_jump, &fj);
}

static int check_slot(const struct pt_image_header *h, long page_size)
{
	if (memcmp(h->magic, PT_IMAGE_MAGIC, 8))
		return -EBADMSG;
	if (h->version != PT_FORMAT_VERSION || h->header_size != sizeof(*h))
		return -EPROTO;
	if (h->checksum != pt_header_checksum(h, sizeof(*h), offsetof(struct pt_image_header, checksum)))
		return -EBADMSG;
	if (h->page_size != (uint64_t)page_size)
		return -EXDEV;
	if (!h->npages || h->npages > (1ull << 40) ||
	    h->table_offset != 2ull * h->page_size ||
	    h->data_offset != h->table_offset +
	    pt_round_up(h->npages * sizeof(struct pt_image_entry), h->page_size))
		return -EMSGSIZE;
	return 0;
}

int pt_image_open(struct pt_image *img, int dirfd, bool writable)
{
	long page_size = sysconf(_SC_PAGESIZE);
	struct pt_image_header h[2];
	int err[2], best = -1, ret;
	uid_t owner = 0;
	struct stat st;
	ssize_t n;

	memset(img, 0, sizeof(*img));
	/* Through pt_io when it will be written: the checkpoint's writes are
	 * part of the trace the crash simulator replays. */
	img->writable = writable;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret) {
		img->fd = -1;
		return ret;
	}
	img->fd = pt_open_file(dirfd, PT_IMAGE_NAME, writable ? O_RDWR : O_RDONLY, owner);
	if (img->fd < 0) {
		ret = img->fd == -ENOENT ? -EMEDIUMTYPE : img->fd;
		img->fd = -1;
		return ret;
	}
	if (fstat(img->fd, &st)) {
		ret = -errno;
		goto err;
	}
	for (int s = 0; s < 2; s++) {
		n = pt_read_full(img->fd, &h[s], sizeof(h[s]), (off_t)s * page_size);
		if (n < 0) {
			ret = (int)n;
			goto err;
		}
		err[s] = (size_t)n < sizeof(h[s]) ? -ENODATA : check_slot(&h[s], page_size);
		if (!err[s] && (best < 0 || h[s].seq > h[best].seq))
			best = s;
	}
	if (best < 0) {
		/* Slot 0 is written at creation: its error is the telling one. */
		ret = err[0];
		goto err;
	}
	if (err[!best] && err[!best] != -EBADMSG && err[!best] != -ENODATA && h[!best].magic[0])
		pt_log(PT_LOG_WARN, "image header slot %d: %s", !best, pt_strerror(err[!best]));
	img->hdr = h[best];
	img->slot = best;
	img->id.history_id = h[best].history_id;
	img->id.npages = h[best].npages;
	img->id.page_size = h[best].page_size;
	img->id.page_shift = (unsigned int)__builtin_ctzll(h[best].page_size);
	if ((uint64_t)st.st_size < h[best].data_offset + h[best].npages * h[best].page_size) {
		ret = -ENODATA;
		goto err;
	}
	return 0;
err:
	pt_image_close(img);
	return ret;
}

/*
 * The table in memory (32 bytes a page: 8 MiB for 1 GiB) is a mapping of
 * its own marked MADV_DONTFORK: the checkpoint rewrites entries, and after a
 * fork of the writer each page of a malloc()ed table would be copy-on-write.
 * A forked child never checkpoints.
 */
static void entries_free(struct pt_image *img)
{
	if (img->entries)
		munmap(img->entries, img->entries_len);
	img->entries = NULL;
	img->entries_len = 0;
}

void pt_image_close(struct pt_image *img)
{
	if (img->fd >= 0 && img->writable)
		pt_io->close(img->fd);
	else if (img->fd >= 0)
		close(img->fd);
	img->fd = -1;
	entries_free(img);
}

int pt_image_load_entries(struct pt_image *img)
{
	size_t len = img->id.npages * sizeof(struct pt_image_entry);
	void *p;
	ssize_t n;

	entries_free(img);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	madvise(p, len, MADV_DONTFORK);
	img->entries = p;
	img->entries_len = len;
	n = pt_read_full(img->fd, img->entries, len, (off_t)img->hdr.table_offset);
	if (n < 0)
		return (int)n;
	if ((size_t)n < len)
		return -ENODATA;
	return 0;
}

/* Copy pages [first, first + count) of the image to mem and check each. */
static int copy_run(struct pt_image *img, const struct pt_image_entry *e, uint64_t first,
		    uint64_t count, unsigned char *mem, uint64_t *suspect, uint64_t *nsuspect)
{
	size_t ps = img->id.page_size;
	unsigned char *dst = mem + first * ps;
	ssize_t n;

	n = pt_read_full(img->fd, dst, count * ps, (off_t)(img->hdr.data_offset + first * ps));
	if (n < 0)
		return (int)n;
	if ((uint64_t)n < count * ps)
		return -ENODATA;
	for (uint64_t i = 0; i < count; i++) {
		const struct pt_image_entry *pe = &e[i];

		if (!entry_ok(pe, first + i) || pe->page_checksum != pt_checksum(dst + i * ps, ps)) {
			if (suspect && !pt_bit_test(suspect, first + i)) {
				pt_bit_set(suspect, first + i);
				(*nsuspect)++;
			}
		}
	}
	return 0;
}

int pt_image_copy_newer(struct pt_image *img, uint64_t have_epoch, void *mem, uint64_t *suspect,
			uint64_t *nsuspect, uint64_t *copied, pt_epoch_t *generations)
{
	size_t per = TABLE_CHUNK / sizeof(struct pt_image_entry);
	struct pt_image_entry *tab;
	uint64_t done = 0;
	int ret = 0;

	tab = malloc(per * sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (uint64_t base = 0; base < img->id.npages; base += per) {
		uint64_t cnt = img->id.npages - base < per ? img->id.npages - base : per;
		ssize_t n = pt_read_full(img->fd, tab, cnt * sizeof(*tab),
					 (off_t)(img->hdr.table_offset + base * sizeof(*tab)));
		uint64_t i = 0;

		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		if ((uint64_t)n < cnt * sizeof(*tab)) {
			ret = -ENODATA;
			goto out;
		}
		while (i < cnt) {
			uint64_t j = i;

			/* An entry that fails its checksum cannot say how old
			 * its page is: take the page. */
			while (j < cnt && j - i < 256 &&
			       (!entry_ok(&tab[j], base + j) || tab[j].generation > have_epoch))
				j++;
			if (j == i) {
				i++;
				continue;
			}
			ret = copy_run(img, &tab[i], base + i, j - i, mem, suspect, nsuspect);
			if (ret)
				goto out;
			/* An entry that fails its checksum left its page suspect:
			 * the caller copies again, so its value here is moot. */
			for (uint64_t k = i; generations && k < j; k++)
				generations[base + k] = (pt_epoch_t)tab[k].generation;
			done += j - i;
			i = j;
		}
	}
out:
	free(tab);
	if (copied)
		*copied = done;
	return ret;
}

/*
 * The checkpoint writes each page once, its newest copy among the records
 * it applies: a page rewritten in every epoch would otherwise be written
 * and hashed once per record.  The first pass reads every record through
 * the log reader (each checked whole) and keeps, per distinct page, where
 * its last copy is in the log and that copy's XXH3; the second pass reads
 * those copies back from the segments in page order, checks each against
 * the checksum taken from the verified record, and writes runs of pages.
 * Memory follows the distinct pages (24 bytes each, twice that in the hash
 * table) and the records (24 bytes each), never the region's size.
 */
struct ckpt_record {
	uint64_t seq;			/* segment */
	uint64_t data_offset;		/* of its first page in the segment */
	uint64_t epoch;
};

struct ckpt_page {
	uint64_t page;			/* UINT64_MAX: free slot */
	uint64_t checksum;		/* of the newest copy */
	uint32_t record;		/* index into the records */
	uint32_t slot;			/* page number inside the record */
};

struct ckpt {
	struct ckpt_record *records;
	size_t nrecords, records_cap;
	struct ckpt_page *pages;	/* open addressing, power-of-two size */
	size_t npages, pages_cap;
};

#define CKPT_RUN 64			/* pages written by one pwrite at most */
#define CKPT_FDS 16			/* segments kept open in the second pass */

static size_t page_hash(uint64_t page, size_t cap)
{
	return (size_t)(page * 0x9e3779b97f4a7c15ull >> 17) & (cap - 1);
}

static int ckpt_grow_pages(struct ckpt *c)
{
	size_t cap = c->pages_cap ? c->pages_cap * 2 : 1024;
	struct ckpt_page *t = malloc(cap * sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < cap; i++)
		t[i].page = UINT64_MAX;
	for (size_t i = 0; i < c->pages_cap; i++) {
		size_t h;

		if (c->pages[i].page == UINT64_MAX)
			continue;
		for (h = page_hash(c->pages[i].page, cap); t[h].page != UINT64_MAX; h = (h + 1) & (cap - 1))
			;
		t[h] = c->pages[i];
	}
	free(c->pages);
	c->pages = t;
	c->pages_cap = cap;
	return 0;
}

/* Note the copy of page at slot of the newest record (c->nrecords - 1). */
static int ckpt_note(struct ckpt *c, uint64_t page, uint32_t slot, uint64_t checksum)
{
	struct ckpt_page *e;
	size_t h;
	int ret;

	if ((c->npages + 1) * 2 > c->pages_cap) {
		ret = ckpt_grow_pages(c);
		if (ret)
			return ret;
	}
	for (h = page_hash(page, c->pages_cap); ; h = (h + 1) & (c->pages_cap - 1)) {
		e = &c->pages[h];
		if (e->page == page || e->page == UINT64_MAX)
			break;
	}
	if (e->page == UINT64_MAX)
		c->npages++;
	e->page = page;
	e->checksum = checksum;
	e->record = (uint32_t)(c->nrecords - 1);
	e->slot = slot;
	return 0;
}

static int ckpt_add_record(struct ckpt *c, const struct pt_record *rec)
{
	if (c->nrecords == UINT32_MAX)
		return -EOVERFLOW;
	if (c->nrecords == c->records_cap) {
		size_t cap = c->records_cap ? c->records_cap * 2 : 64;
		struct ckpt_record *t = realloc(c->records, cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		c->records = t;
		c->records_cap = cap;
	}
	c->records[c->nrecords++] = (struct ckpt_record){
		.seq = rec->seq,
		.data_offset = rec->offset + (uint64_t)(rec->data - (const unsigned char *)rec->hdr),
		.epoch = rec->hdr->epoch,
	};
	return 0;
}

static int ckpt_page_cmp(const void *a, const void *b)
{
	const struct ckpt_page *x = a, *y = b;

	return x->page < y->page ? -1 : x->page > y->page;
}

struct seg_fd {
	uint64_t seq;
	int fd;
};

static int segment_fd(struct seg_fd *cache, int dirfd, uint64_t seq)
{
	struct seg_fd *s = &cache[seq % CKPT_FDS];
	uid_t owner = 0;
	char name[64];
	int ret;

	if (s->fd >= 0 && s->seq == seq)
		return s->fd;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		return ret;
	pt_segment_name(name, sizeof(name), seq);
	s->seq = seq;
	s->fd = pt_open_file(dirfd, name, O_RDONLY, owner);
	return s->fd;
}

/*
 * Read the newest copies of pages[0, count) (consecutive pages) into buf,
 * check each against the checksum taken from its verified record, and set
 * their table entries.
 */
static int ckpt_read_run(struct pt_image *img, int dirfd, const struct ckpt *c,
			 const struct ckpt_page *pages, size_t count, struct seg_fd *fds,
			 unsigned char *buf)
{
	size_t ps = img->id.page_size;

	for (size_t i = 0; i < count;) {
		const struct ckpt_record *rc = &c->records[pages[i].record];
		size_t j = i + 1;
		ssize_t n;
		int fd;

		/* Consecutive pages of one record are consecutive in its data. */
		while (j < count && pages[j].record == pages[i].record &&
		       pages[j].slot == pages[j - 1].slot + 1)
			j++;
		fd = segment_fd(fds, dirfd, rc->seq);
		if (fd < 0)
			return fd;
		n = pt_read_full(fd, buf + i * ps, (j - i) * ps,
				 (off_t)(rc->data_offset + (uint64_t)pages[i].slot * ps));
		if (n < 0)
			return (int)n;
		if ((size_t)n < (j - i) * ps)
			return -ENODATA;
		i = j;
	}
	for (size_t i = 0; i < count; i++) {
		const struct ckpt_page *e = &pages[i];
		struct pt_image_entry *te = &img->entries[e->page];

		if (pt_checksum(buf + i * ps, ps) != e->checksum) {
			pt_log(PT_LOG_ERROR, "checkpoint: page %" PRIu64 " of the record of epoch %"
			       PRIu64 " changed in the log since it was read", e->page,
			       c->records[e->record].epoch);
			return -EBADMSG;
		}
		entry_set(te, e->page, c->records[e->record].epoch, e->checksum);
	}
	return 0;
}

int64_t pt_image_checkpoint(struct pt_image *img, int dirfd, uint64_t target)
{
	size_t ps = img->id.page_size;
	size_t per_page = ps / sizeof(struct pt_image_entry);
	uint64_t ntable = (img->id.npages + per_page - 1) / per_page;
	struct seg_fd fds[CKPT_FDS];
	struct pt_pagelog_reader rd;
	struct pt_image_header h;
	struct pt_record rec;
	struct ckpt c = { 0 };
	unsigned char *buf = NULL;
	uint64_t *dirty = NULL;
	uint64_t applied = 0;
	size_t n = 0;
	int ret;

	if (!img->entries)
		return -EINVAL;
	if (target <= img->hdr.epoch)
		return (int64_t)img->hdr.epoch;
	for (int i = 0; i < CKPT_FDS; i++)
		fds[i].fd = -1;
	dirty = calloc((ntable + 63) / 64, 8);
	buf = malloc(CKPT_RUN * ps);
	if (!dirty || !buf) {
		free(dirty);
		free(buf);
		return -ENOMEM;
	}
	pt_pagelog_reader_init(&rd, dirfd, &img->id, img->hdr.epoch + 1, img->hdr.chain);
	while ((ret = pt_pagelog_next(&rd, target, &rec)) > 0) {
		const struct pt_record_header *rh = rec.hdr;

		ret = ckpt_add_record(&c, &rec);
		if (ret)
			goto out;
		for (uint32_t i = 0; i < rh->page_count; i++) {
			ret = ckpt_note(&c, rec.index[i], i, pt_checksum(rec.data + (size_t)i * ps, ps));
			if (ret)
				goto out;
		}
		applied = rh->epoch;
	}
	if (ret < 0) {
		pt_log(PT_LOG_ERROR, "checkpoint: cannot read the log after epoch %" PRIu64 ": %s",
		       rd.next_epoch - 1, pt_strerror(ret));
		goto out;
	}
	if (!applied) {
		ret = (int)img->hdr.epoch;
		goto out;
	}
	/* The distinct pages, in page order: sequential writes to the image. */
	for (size_t i = 0; i < c.pages_cap; i++)
		if (c.pages[i].page != UINT64_MAX)
			c.pages[n++] = c.pages[i];
	qsort(c.pages, n, sizeof(*c.pages), ckpt_page_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && j - i < CKPT_RUN && c.pages[j].page == c.pages[j - 1].page + 1)
			j++;
		ret = ckpt_read_run(img, dirfd, &c, &c.pages[i], j - i, fds, buf);
		if (!ret)
			ret = pt_write_full(img->fd, buf, (j - i) * ps,
					    (off_t)(img->hdr.data_offset + c.pages[i].page * ps));
		if (ret)
			goto out;
		for (size_t k = i; k < j; k++)
			pt_bit_set(dirty, c.pages[k].page / per_page);
		i = j;
	}
	for (uint64_t t = 0; t < ntable; t++) {
		uint64_t first = t * per_page, cnt;

		if (!pt_bit_test(dirty, t))
			continue;
		cnt = img->id.npages - first < per_page ? img->id.npages - first : per_page;
		ret = pt_write_full(img->fd, &img->entries[first], cnt * sizeof(struct pt_image_entry),
				    (off_t)(img->hdr.table_offset + first * sizeof(struct pt_image_entry)));
		if (ret)
			goto out;
	}
	ret = pt_io->fdatasync(img->fd);
	if (ret)
		goto out;
	header_fill(&h, &img->id, applied, rd.chain, img->hdr.seq + 1);
	ret = pt_write_full(img->fd, &h, sizeof(h), (off_t)(!img->slot) * (off_t)ps);
	if (!ret)
		ret = pt_io->fdatasync(img->fd);
	if (ret)
		goto out;
	img->hdr = h;
	img->slot = !img->slot;
	ret = 0;
out:
	pt_pagelog_reader_free(&rd);
	for (int i = 0; i < CKPT_FDS; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	free(c.records);
	free(c.pages);
	free(buf);
	free(dirty);
	if (ret < 0) {
		if (ret != -ENOMEM)
			pt_log(PT_LOG_ERROR, "checkpoint to epoch %" PRIu64 " failed: %s", target,
			       pt_strerror(ret));
		return ret;
	}
	return (int64_t)img->hdr.epoch;
}

int pt_image_verify_page(struct pt_image *img, uint64_t p, unsigned char *page, char *msg,
			 size_t msg_len)
{
	const struct pt_image_entry *e = &img->entries[p];
	size_t ps = img->id.page_size;
	ssize_t n = pt_read_full(img->fd, page, ps, (off_t)(img->hdr.data_offset + p * ps));
	uint64_t sum;

	if (n < 0)
		return (int)n;
	if ((size_t)n < ps) {
		snprintf(msg, msg_len, "image page %" PRIu64 ": truncated", p);
		return 1;
	}
	if (!entry_ok(e, p)) {
		snprintf(msg, msg_len, "image table entry of page %" PRIu64 " (offset %" PRIu64
			 "): bad checksum", p, img->hdr.table_offset + p * sizeof(*e));
		return 1;
	}
	sum = pt_checksum(page, ps);
	if (sum != e->page_checksum) {
		snprintf(msg, msg_len, "image page %" PRIu64 " (offset %" PRIu64 ", generation %"
			 PRIu64 "): checksum %016" PRIx64 ", table says %016" PRIx64, p,
			 img->hdr.data_offset + p * ps, e->generation, sum, e->page_checksum);
		return 1;
	}
	return 0;
}

int pt_image_verify(struct pt_image *img,
		    void (*report)(void *arg, uint64_t page, const char *msg), void *arg,
		    uint64_t *bad)
{
	unsigned char *page;
	char msg[256];
	int ret;

	*bad = 0;
	ret = pt_image_load_entries(img);
	if (ret)
		return ret;
	page = malloc(img->id.page_size);
	if (!page)
		return -ENOMEM;
	for (uint64_t p = 0; p < img->id.npages; p++) {
		ret = pt_image_verify_page(img, p, page, msg, sizeof(msg));
		if (ret < 0)
			break;
		if (ret) {
			report(arg, p, msg);
			(*bad)++;
		}
		ret = 0;
	}
	free(page);
	return ret;
}
