/* region-checkpoint: records rewriting the same pages; the image equals memory, generations = last change. */
/*
 * The checkpoint writes each page once, its newest copy among the records
 * it applies.  Here every record rewrites most of a run of hot pages longer
 * than one write of the checkpoint, skipping a different few each epoch, so
 * that neighbouring pages' newest copies come from different records; cold
 * pages are written once and warm ones now and then.  After each checkpoint
 * the image must hold the memory as it was at the checkpointed epoch, every
 * page's table entry its checksum and the epoch that last changed it, and a
 * reopen must rebuild the same memory.  One cell puts each record in a
 * segment of its own (more segments than the checkpoint keeps open).
 *
 * And the checkpoint reads the log once: the records' heads and the newest
 * copy of each page changed, nothing else (the bytes this thread read,
 * from /proc/thread-self/io, where the kernel counts them).  A checkpoint
 * of more pages than one of its steps holds; a durable copy damaged before
 * the checkpoint: the newest copy of a page (the checkpoint fails, the
 * image as it was), a copy a later record rewrote (never read: the
 * checkpoint goes through).
 *
 * Threaded: the checkpoint here reads the log the writer's log thread (the
 * library's pthread_create) writes, so it runs under TSan.
 */
#include <dirent.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "io.h"
#include "image.h"
#include "gather.h"

#define NPAGES 256
#define HOT 100			/* pages 0..99, more than one checkpoint write */
#define COLD 110		/* page COLD + e written once, at epoch e */
#define WARM 200		/* page WARM + e % 10 */
#define EPOCHS 40
#define MID 17			/* first checkpoint after this epoch */

static char dir[128];

static void write_page(unsigned char *m, size_t ps, uint64_t p, uint64_t e, uint64_t *gen)
{
	uint64_t v = e << 32 | p;

	memset(m + p * ps, (int)((e * 31 + p) & 0xff), ps);
	memcpy(m + p * ps, &v, sizeof(v));
	memcpy(m + p * ps + (e * 8) % ps, &v, sizeof(v));
	gen[p] = e;
}

static void epoch_writes(unsigned char *m, size_t ps, uint64_t e, uint64_t *gen)
{
	for (uint64_t p = 0; p < HOT; p++)
		if ((p + e) % 5)
			write_page(m, ps, p, e, gen);
	write_page(m, ps, COLD + e, e, gen);
	write_page(m, ps, WARM + e % 10, e, gen);
}

static void report_bad(void *arg, uint64_t page, const char *msg)
{
	(void)arg;
	printf("    image page %llu: %s\n", (unsigned long long)page, msg);
}

/* The image on disk against the memory snapshot and the model's generations. */
static bool image_matches(const unsigned char *snap, const uint64_t *gen, uint64_t npages,
			  uint64_t epoch, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct pt_image img;
	unsigned char *page = malloc(ps);
	uint64_t bad = 0;
	bool ok = false;
	int dfd, ret;

	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (!page || dfd < 0) {
		snprintf(why, why_len, "setup: %s", strerror(errno));
		free(page);
		if (dfd >= 0)
			close(dfd);
		return false;
	}
	ret = pt_image_open(&img, dfd, false);
	if (ret) {
		snprintf(why, why_len, "pt_image_open: %s", strerror(-ret));
		goto out_nocl;
	}
	if (img.hdr.epoch != epoch) {
		snprintf(why, why_len, "image epoch %llu, checkpointed %llu",
			 (unsigned long long)img.hdr.epoch, (unsigned long long)epoch);
		goto out;
	}
	ret = pt_image_verify(&img, report_bad, NULL, &bad);
	if (ret || bad) {
		snprintf(why, why_len, "verify: %s, %llu bad pages", strerror(-ret),
			 (unsigned long long)bad);
		goto out;
	}
	for (uint64_t p = 0; p < npages; p++) {
		const struct pt_image_entry *e = &img.entries[p];

		if (pt_read_full(img.fd, page, ps, (off_t)(img.hdr.data_offset + p * ps)) != (ssize_t)ps) {
			snprintf(why, why_len, "read image page %llu", (unsigned long long)p);
			goto out;
		}
		if (memcmp(page, snap + p * ps, ps)) {
			snprintf(why, why_len, "image page %llu differs from memory at epoch %llu",
				 (unsigned long long)p, (unsigned long long)epoch);
			goto out;
		}
		if (e->generation != gen[p]) {
			snprintf(why, why_len, "page %llu: generation %llu, last changed at %llu",
				 (unsigned long long)p, (unsigned long long)e->generation,
				 (unsigned long long)gen[p]);
			goto out;
		}
		if (gen[p] && e->page_checksum != XXH3_64bits(page, ps)) {
			snprintf(why, why_len, "page %llu: table checksum is not the page's",
				 (unsigned long long)p);
			goto out;
		}
	}
	ok = true;
out:
	pt_image_close(&img);
out_nocl:
	close(dfd);
	free(page);
	return ok;
}

/*
 * The bytes the checkpoint of epochs (last, ep] read: at most a page of
 * head and a record header per record, a page per page changed, and the
 * segments' headers listed (64 KiB is ample).
 */
static bool reads_once(uint64_t read, const uint64_t *gen, uint64_t last, uint64_t ep, size_t ps,
		       char *why, size_t why_len)
{
	uint64_t changed = 0, bound;

	for (uint64_t p = 0; p < NPAGES; p++)
		changed += gen[p] > last;
	bound = (ep - last + changed) * ps + (ep - last) * 128 + (64u << 10);
	if (read <= bound)
		return true;
	snprintf(why, why_len, "the checkpoint of epochs %llu..%llu read %llu bytes: more than "
		 "the heads and the %llu pages changed (%llu)", (unsigned long long)last + 1,
		 (unsigned long long)ep, (unsigned long long)read, (unsigned long long)changed,
		 (unsigned long long)bound);
	return false;
}

static bool run(uint64_t segment_bytes, char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .segment_bytes = segment_bytes };
	size_t ps = t_page_size(), size = NPAGES * ps;
	uint64_t gen[NPAGES] = { 0 }, last = 0, read0 = 0, read1 = 0;
	unsigned char *m, *snap = malloc(size);
	bool counted;
	struct pt_region *r = NULL;
	bool ok = false;
	int64_t e;
	int ret;

	t_tmpdir_make(dir, sizeof(dir), "pt-region-checkpoint");
	if (!snap) {
		snprintf(why, why_len, "malloc");
		goto out;
	}
	ret = pt_region_create(&r, dir, size, &o);
	if (ret) {
		snprintf(why, why_len, "create: %s", strerror(-ret));
		goto out;
	}
	m = pt_region_base(r);
	for (uint64_t ep = 1; ep <= EPOCHS; ep++) {
		epoch_writes(m, ps, ep, gen);
		e = pt_region_sync(r);
		if (e != (int64_t)ep) {
			snprintf(why, why_len, "sync returned %lld, expected epoch %llu", (long long)e,
				 (unsigned long long)ep);
			goto out;
		}
		if (ep != MID && ep != EPOCHS)
			continue;
		memcpy(snap, m, size);
		counted = t_thread_read_bytes(&read0);
		e = pt_region_checkpoint(r);
		counted = counted && t_thread_read_bytes(&read1);
		if (e != (int64_t)ep) {
			snprintf(why, why_len, "checkpoint returned %lld, expected %llu", (long long)e,
				 (unsigned long long)ep);
			goto out;
		}
		if (!image_matches(snap, gen, NPAGES, ep, why, why_len))
			goto out;
		if (counted && !reads_once(read1 - read0, gen, last, ep, ps, why, why_len))
			goto out;
		if (!counted)
			printf("    no task I/O accounting in this kernel: the bytes read not counted\n");
		last = ep;
	}
	ret = pt_region_close(r);
	r = NULL;
	if (ret) {
		snprintf(why, why_len, "close: %s", strerror(-ret));
		goto out;
	}
	ret = pt_region_open(&r, dir, &o);
	if (ret) {
		snprintf(why, why_len, "reopen: %s", strerror(-ret));
		goto out;
	}
	if (pt_region_epoch(r) != EPOCHS || memcmp(pt_region_base(r), snap, size)) {
		snprintf(why, why_len, "reopened at epoch %lld: memory differs from epoch %d",
			 (long long)pt_region_epoch(r), EPOCHS);
		goto out;
	}
	ok = true;
out:
	if (r)
		pt_region_close(r);
	free(snap);
	t_tmpdir_remove(dir);
	return ok;
}

static bool default_segments(char *why, size_t why_len)
{
	return run(0, why, why_len);
}

/* Each record (about 90 pages) is larger than a segment: one segment each. */
static bool segment_per_record(char *why, size_t why_len)
{
	return run(16 * t_page_size(), why, why_len);
}

/* Flip a byte of page p's copy in the record of epoch e (segment 1). */
static bool damage_copy(uint64_t e, uint64_t p, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct pt_record_header h;
	char path[300];
	uint64_t off = ps;
	unsigned char c;
	int fd;

	snprintf(path, sizeof(path), "%s/log-0000000000000001.seg", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, why_len, "%s: %s", path, strerror(errno));
		return false;
	}
	while (pread(fd, &h, sizeof(h), (off_t)off) == (ssize_t)sizeof(h) &&
	       h.magic == PT_RECORD_MAGIC && h.epoch != e)
		off += h.length;
	for (uint32_t i = 0; h.epoch == e && i < h.page_count; i++) {
		uint64_t page, at;

		if (pread(fd, &page, 8, (off_t)(off + sizeof(h) + i * 8)) != 8 || page != p)
			continue;
		at = off + pt_record_head_length(h.page_count, ps) + i * ps + 7;
		if (pread(fd, &c, 1, (off_t)at) == 1) {
			c ^= 1;
			if (pwrite(fd, &c, 1, (off_t)at) == 1) {
				close(fd);
				return true;
			}
		}
	}
	close(fd);
	snprintf(why, why_len, "no copy of page %llu in the record of epoch %llu",
		 (unsigned long long)p, (unsigned long long)e);
	return false;
}

/*
 * A durable record damaged under the running writer, before a checkpoint.
 * The copy the checkpoint needs (the only copy of a cold page): the
 * checkpoint fails, and nothing of it is in the image (the image's epoch
 * as before, every page of it good).  A copy a later record rewrote
 * (superseded): never read, the checkpoint goes through to the writer's
 * memory.
 */
static bool damaged(bool newest, char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	uint64_t gen[NPAGES] = { 0 };
	unsigned char *snap = malloc(size);
	struct pt_region *r = NULL;
	bool ok = false;
	int64_t e;
	int ret;

	t_tmpdir_make(dir, sizeof(dir), "pt-region-checkpoint");
	ret = snap ? pt_region_create(&r, dir, size, &o) : -ENOMEM;
	if (ret) {
		snprintf(why, why_len, "create: %s", strerror(-ret));
		goto out;
	}
	for (uint64_t ep = 1; ep <= 10; ep++) {
		epoch_writes(pt_region_base(r), ps, ep, gen);
		if (pt_region_sync(r) != (int64_t)ep) {
			snprintf(why, why_len, "sync %llu", (unsigned long long)ep);
			goto out;
		}
	}
	memcpy(snap, pt_region_base(r), size);
	/* Page 1 at epoch 3 is rewritten at 5; page COLD + 6 only at 6. */
	if (!damage_copy(newest ? 6 : 3, newest ? COLD + 6 : 1, why, why_len))
		goto out;
	e = pt_region_checkpoint(r);
	if (newest) {
		struct pt_image img;
		uint64_t bad = 0;
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (e >= 0) {
			snprintf(why, why_len, "the checkpoint over a damaged copy returned %lld",
				 (long long)e);
			goto out;
		}
		ret = dfd < 0 ? -errno : pt_image_open(&img, dfd, false);
		if (!ret) {
			if (img.hdr.epoch != 0)
				ret = -EILSEQ;
			else
				ret = pt_image_verify(&img, report_bad, NULL, &bad);
			pt_image_close(&img);
		}
		if (dfd >= 0)
			close(dfd);
		if (ret || bad) {
			snprintf(why, why_len, "the image after the failed checkpoint: %s, %llu bad "
				 "pages", pt_strerror(ret), (unsigned long long)bad);
			goto out;
		}
	} else {
		if (e != 10) {
			snprintf(why, why_len, "checkpoint returned %lld (%s)", (long long)e,
				 e < 0 ? pt_strerror((int)e) : "short");
			goto out;
		}
		if (!image_matches(snap, gen, NPAGES, 10, why, why_len))
			goto out;
	}
	ok = true;
out:
	if (r)
		pt_region_close(r);
	free(snap);
	t_tmpdir_remove(dir);
	return ok;
}

static bool damaged_newest(char *why, size_t why_len)
{
	return damaged(true, why, why_len);
}

static bool damaged_superseded(char *why, size_t why_len)
{
	return damaged(false, why, why_len);
}

/*
 * Three records with more distinct pages together than a step of the
 * checkpoint holds (half as many again): the checkpoint takes several
 * steps, each a checkpoint of its own, and the image ends as the memory.
 */
static bool more_pages_than_a_step(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size();
	uint64_t n = PT_GATHER_STEP_BYTES / ps * 3 / 2, *gen = calloc(n, sizeof(*gen));
	unsigned char *m, *snap = malloc(n * ps);
	const uint64_t from[3] = { 0, n / 3, 0 }, to[3] = { n * 2 / 3, n, n / 6 };
	struct pt_region *r = NULL;
	bool ok = false;
	int64_t e;
	int ret;

	t_tmpdir_make(dir, sizeof(dir), "pt-region-checkpoint");
	if (!gen || !snap) {
		snprintf(why, why_len, "malloc");
		goto out;
	}
	ret = pt_region_create(&r, dir, n * ps, &o);
	if (ret) {
		snprintf(why, why_len, "create: %s", strerror(-ret));
		goto out;
	}
	m = pt_region_base(r);
	for (uint64_t ep = 1; ep <= 3; ep++) {
		for (uint64_t p = from[ep - 1]; p < to[ep - 1]; p++)
			write_page(m, ps, p, ep, gen);
		e = pt_region_sync(r);
		if (e != (int64_t)ep) {
			snprintf(why, why_len, "sync returned %lld", (long long)e);
			goto out;
		}
	}
	memcpy(snap, m, n * ps);
	e = pt_region_checkpoint(r);
	if (e != 3) {
		snprintf(why, why_len, "checkpoint returned %lld", (long long)e);
		goto out;
	}
	ok = image_matches(snap, gen, n, 3, why, why_len);
out:
	if (r)
		pt_region_close(r);
	free(gen);
	free(snap);
	t_tmpdir_remove(dir);
	return ok;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "hot-pages-one-segment", default_segments },
		{ "hot-pages-segment-per-record", segment_per_record },
		{ "more-pages-than-a-step", more_pages_than_a_step },
		{ "damaged-newest-copy", damaged_newest },
		{ "damaged-superseded-copy", damaged_superseded },
	};

	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	return t_exit();
}
