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
 * catching up) may see such a half-written page (its checksum will not
 * match), or a page and its entry both written, of an epoch after the
 * header's (its generation says so): either is flagged "suspect" rather
 * than trusted, and the records after the header's epoch rewrite it.  A
 * suspect page no record covers is real corruption, and the caller says
 * so.
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
#include "gather.h"
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
		if (ret == -EPROTO && !memcmp(h[0].magic, PT_IMAGE_MAGIC, 8) &&
		    h[0].version < PT_FORMAT_VERSION)
			pt_log(PT_LOG_ERROR, "the image is of format version %" PRIu32 ", this "
			       "library reads version %d: carry the region over with the "
			       "pagetrack that made it (pagetrack export DIR FILE), then this "
			       "one (pagetrack import FILE NEWDIR)", h[0].version,
			       PT_FORMAT_VERSION);
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

		/* A page newer than the header's epoch is whole but ahead of
		 * it (a checkpoint wrote it and its entry): as suspect as a
		 * torn one, until the records after that epoch rewrite it. */
		if (!entry_ok(pe, first + i) || pe->generation > img->hdr.epoch ||
		    pe->page_checksum != pt_checksum(dst + i * ps, ps)) {
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
 * it applies, and reads nothing else of the log but the records' heads
 * (gather.c): a page rewritten in every epoch is read, hashed and written
 * once, whatever the number of records.  The sum the head holds for that
 * copy, checked against the page as read, is also the checksum its table
 * entry gets: no second hash.
 *
 * Which records: the heads are collected up to the target first, and the
 * path they make must end at the writer's own record of the target (its
 * header checksum, target_chain: a hash chain over every head on the way,
 * each head covering its pages' sums).  A head alone cannot tell a record
 * a crash tore in its pages, or one of a history recovery gave up, from the
 * writer's; ending at the writer's record proves every head on the path is
 * the writer's.  Otherwise, or without target_chain, or when a copy does
 * not match its sum (a torn copy the writer wrote again elsewhere) or
 * cannot be read, the checkpoint reads whole records instead, each page
 * checked as it comes, as recovery does, and takes the path that reading
 * takes.
 *
 * Steps (gather.c) bound the memory to PT_GATHER_STEP_BYTES of page
 * content, and each step is a checkpoint of its own: every copy it read
 * matched before one is written, then the pages, their table entries,
 * fdatasync, the other header slot with the step's last epoch, fdatasync.
 * A copy that fails leaves the image at the step before, nothing of its
 * step written.
 */

/* Write one step's pages and entries, then the header of its epoch. */
static int apply_step(struct pt_image *img, const struct pt_gather *g,
		      const struct pt_gather_step *st, uint64_t *dirty)
{
	size_t ps = img->id.page_size;
	size_t per_page = ps / sizeof(struct pt_image_entry);
	uint64_t ntable = (img->id.npages + per_page - 1) / per_page;
	struct pt_image_header h;
	int ret;

	memset(dirty, 0, (ntable + 63) / 64 * 8);
	/* Runs of adjacent pages, in page order: sequential image writes. */
	for (size_t i = 0; i < st->count;) {
		size_t j = i + 1;

		while (j < st->count && st->copies[j].page == st->copies[j - 1].page + 1)
			j++;
		ret = pt_write_full(img->fd, st->data + i * ps, (j - i) * ps,
				    (off_t)(img->hdr.data_offset + st->copies[i].page * ps));
		if (ret)
			return ret;
		i = j;
	}
	for (size_t i = 0; i < st->count; i++) {
		const struct pt_gather_copy *c = &st->copies[i];
		const struct pt_gather_record *rc = &g->records[c->record];

		entry_set(&img->entries[c->page], c->page, rc->epoch, g->sums[rc->first + c->slot]);
		pt_bit_set(dirty, c->page / per_page);
	}
	for (uint64_t t = 0; t < ntable; t++) {
		uint64_t first = t * per_page, cnt;

		if (!pt_bit_test(dirty, t))
			continue;
		cnt = img->id.npages - first < per_page ? img->id.npages - first : per_page;
		ret = pt_write_full(img->fd, &img->entries[first], cnt * sizeof(struct pt_image_entry),
				    (off_t)(img->hdr.table_offset + first * sizeof(struct pt_image_entry)));
		if (ret)
			return ret;
	}
	ret = pt_io->fdatasync(img->fd);
	if (ret)
		return ret;
	header_fill(&h, &img->id, st->epoch, st->chain, img->hdr.seq + 1);
	ret = pt_write_full(img->fd, &h, sizeof(h), (off_t)(!img->slot) * (off_t)ps);
	if (!ret)
		ret = pt_io->fdatasync(img->fd);
	if (ret)
		return ret;
	img->hdr = h;
	img->slot = !img->slot;
	return 0;
}

/*
 * Collect the heads after the image's epoch up to target: heads only when
 * *heads, and then only a path ending at the writer's record of target will
 * do; else *heads is cleared and whole records are read.  Returns the
 * number of records, or -errno.
 */
static int collect(struct pt_image *img, int dirfd, uint64_t target, const uint64_t *target_chain,
		   bool *heads, struct pt_gather *g)
{
	struct pt_pagelog_reader rd;
	int ret;

	for (;;) {
		pt_gather_truncate(g, 0);
		pt_pagelog_reader_init(&rd, dirfd, &img->id, img->hdr.epoch + 1, img->hdr.chain);
		rd.heads_only = *heads;
		ret = pt_gather_collect(g, &rd, target);
		if (!*heads || (ret > 0 && g->records[g->nrecords - 1].epoch == target &&
				g->records[g->nrecords - 1].chain == *target_chain))
			break;
		pt_log(PT_LOG_INFO, "checkpoint: the records' heads after epoch %" PRIu64 " do not "
		       "lead to the writer's epoch %" PRIu64 " (%s): reading whole records",
		       img->hdr.epoch, target, ret < 0 ? pt_strerror(ret) : "another path");
		*heads = false;
		pt_pagelog_reader_free(&rd);
	}
	if (ret < 0)
		pt_log(PT_LOG_ERROR, "checkpoint: cannot read the log after epoch %" PRIu64 ": %s",
		       rd.next_epoch - 1, pt_strerror(ret));
	pt_pagelog_reader_free(&rd);
	return ret;
}

int64_t pt_image_checkpoint(struct pt_image *img, int dirfd, uint64_t target,
			    const uint64_t *target_chain)
{
	size_t ps = img->id.page_size, budget = PT_GATHER_STEP_BYTES / ps;
	uint64_t ntable = (img->id.npages + ps / sizeof(struct pt_image_entry) - 1) /
			  (ps / sizeof(struct pt_image_entry));
	bool heads = target_chain != NULL, torn = false;
	struct pt_gather_step st;
	struct pt_gather g;
	uint64_t *dirty;
	int ret;

	if (!img->entries)
		return -EINVAL;
	if (target <= img->hdr.epoch)
		return (int64_t)img->hdr.epoch;
	dirty = calloc((ntable + 63) / 64, 8);
	if (!dirty)
		return -ENOMEM;
	pt_gather_init(&g, dirfd, &img->id);
	for (;;) {
		ret = collect(img, dirfd, target, target_chain, &heads, &g);
		if (ret <= 0)
			break;
		while ((ret = pt_gather_step(&g, budget, &st)) > 0) {
			ret = apply_step(img, &g, &st, dirty);
			if (ret) {
				torn = true;
				goto out;
			}
		}
		if (ret < 0 && ret != -ENOMEM && heads) {
			/* Whole records will say what is wrong, or go around it. */
			if (ret == -EBADMSG)
				pt_log(PT_LOG_INFO, "checkpoint: a page of the record of epoch %"
				       PRIu64 " does not match its sum: reading whole records",
				       st.bad_epoch);
			else
				pt_log(PT_LOG_INFO, "checkpoint: reading the newest copies: %s: "
				       "reading whole records", pt_strerror(ret));
			heads = false;
			continue;
		}
		if (ret == -EBADMSG)
			pt_log(PT_LOG_ERROR, "checkpoint: a page of the record of epoch %" PRIu64
			       " changed in the log since it was read", st.bad_epoch);
		break;
	}
out:
	pt_gather_free(&g);
	free(dirty);
	if (ret < 0) {
		/* The table in memory may hold entries of a step not written:
		 * take the one on disk again, or none (no checkpoint then). */
		if (torn && pt_image_load_entries(img)) {
			pt_log(PT_LOG_ERROR, "checkpoint: cannot read the image's table again");
			entries_free(img);
		}
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
