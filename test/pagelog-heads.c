/* pagelog-heads: readers of heads take the writer's path where an epoch was written again in a later segment; the checkpoint and a replica applying newest copies end at the writer's content. */
/*
 * A head says nothing of its record's pages: a record torn in its pages by
 * a crash, or whose pages a disk damaged, has a head as good as any.  The
 * writer writes such epochs again in a later segment: byte for byte after a
 * failed write (the same records), or as other epochs after a crash
 * (recovery stopped before the damaged record; the records after it in the
 * same segment are a history the writer gave up).  A reader of whole
 * records leaves the old segment at the bad record; a reader of heads must
 * leave it where the later segment starts, or it would follow the given-up
 * history.  Cells:
 *   rewritten-after-crash   segment A: epochs 1..N, a page of epoch K
 *                           damaged; the writer recovers at K-1 (accepting
 *                           the loss) and writes K..M (M > N) in segment B.
 *   written-again           segment A: epochs 1..N, a page of epoch K torn;
 *                           segment B holds K..N again, byte for byte.
 * In each, the heads reader and the whole reader hand out the same epochs
 * and chains; a replica opened afterwards (which applies by the newest
 * copies) shows the writer's memory; the checkpoint reaches the writer's
 * last epoch reading only heads and newest copies, and a reopen from the
 * image has the writer's memory.
 */
#include <dirent.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "pagelog.h"

#define NPAGES	64
#define HOT	24		/* pages every epoch writes */
#define N	10		/* epochs in segment A */
#define K	6		/* the epoch damaged */
#define M	14		/* the writer's last epoch (rewritten-after-crash) */

static char dir[128];

static const struct pt_region_opts opts = {
	.sz = sizeof(struct pt_region_opts), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
	.retain_bytes = 1ull << 30,
};

/* Epoch e of history h writes every hot page and one more. */
static void epoch_writes(unsigned char *m, size_t ps, uint64_t e, unsigned int h)
{
	for (uint64_t p = 0; p < HOT; p++)
		memset(m + p * ps, (int)(e * 7 + p + h * 101), ps);
	memset(m + (HOT + e) * ps, (int)(e + h), ps);
}

static int open_dirfd(void)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		DIE("open %s: %s", dir, strerror(errno));
	return fd;
}

static struct pt_region_id region_id(int dirfd)
{
	struct pt_image_header h;
	struct pt_region_id id;
	int fd = openat(dirfd, PT_IMAGE_NAME, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		DIE("image of %s", dir);
	close(fd);
	id = (struct pt_region_id){ .history_id = h.history_id, .npages = h.npages,
				    .page_size = h.page_size,
				    .page_shift = (unsigned int)__builtin_ctzll(h.page_size) };
	return id;
}

/* Offset and length of the record of epoch e in segment seq. */
static uint64_t record_at(int dirfd, uint64_t seq, uint64_t e, uint64_t *len)
{
	struct pt_record_header h;
	char name[64];
	uint64_t off = t_page_size();
	int fd;

	pt_segment_name(name, sizeof(name), seq);
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		DIE("%s: %s", name, strerror(errno));
	for (;;) {
		if (pread(fd, &h, sizeof(h), (off_t)off) != (ssize_t)sizeof(h) ||
		    h.magic != PT_RECORD_MAGIC)
			DIE("epoch %llu not in %s", (unsigned long long)e, name);
		if (h.epoch == e)
			break;
		off += h.length;
	}
	close(fd);
	*len = h.length;
	return off;
}

/* Flip a byte of the last page of the record of epoch e in segment 1. */
static void damage_page(int dirfd, uint64_t e)
{
	uint64_t len, off = record_at(dirfd, 1, e, &len);
	int fd = openat(dirfd, "log-0000000000000001.seg", O_RDWR | O_CLOEXEC);
	unsigned char c;

	off += len - 100;
	if (fd < 0 || pread(fd, &c, 1, (off_t)off) != 1)
		DIE("read segment 1");
	c ^= 0x40;
	if (pwrite(fd, &c, 1, (off_t)off) != 1)
		DIE("write segment 1");
	close(fd);
}

/* The heads reader and the whole reader: the same epochs and chains. */
static bool same_paths(int dirfd, uint64_t last, char *why, size_t why_len)
{
	struct pt_region_id id = region_id(dirfd);
	uint64_t chains[2][64] = { { 0 } }, got[2] = { 0 };
	int end[2];

	for (int heads = 0; heads < 2; heads++) {
		struct pt_pagelog_reader rd;
		struct pt_record rec;
		int ret;

		pt_pagelog_reader_init(&rd, dirfd, &id, 1, pt_chain_seed(id.history_id));
		rd.quiet = true;
		rd.heads_only = heads;
		while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0 && got[heads] < 64)
			chains[heads][got[heads]++] = rec.hdr->header_checksum;
		end[heads] = ret;
		pt_pagelog_reader_free(&rd);
	}
	CHECK(got[0] == last && got[1] == last && end[0] == 0 && end[1] == 0,
	      "whole reader: %llu epochs (%d), heads reader: %llu epochs (%d), want %llu",
	      (unsigned long long)got[0], end[0], (unsigned long long)got[1], end[1],
	      (unsigned long long)last);
	CHECK(!memcmp(chains[0], chains[1], sizeof(chains[0])), "the readers took other records");
	(void)why;
	(void)why_len;
	return true;
}

/* A replica opened now, the checkpoint, a reopen: the writer's memory. */
static bool end_state(struct pt_region *r, uint64_t last, char *why, size_t why_len)
{
	size_t ps = t_page_size(), size = NPAGES * ps;
	unsigned char *snap = malloc(size);
	struct pt_replica *rep;
	uint64_t read0 = 0, read1 = 0;
	bool counted;
	int64_t e;
	int ret;

	(void)why;
	(void)why_len;
	CHECK(snap, "malloc");
	memcpy(snap, pt_region_base(r), size);
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0, "replica: %s", pt_strerror(ret));
	e = pt_replica_epoch(rep);
	ret = memcmp(pt_replica_base(rep), snap, size);
	pt_replica_close(rep);
	CHECK(e == (int64_t)last && !ret, "the replica shows epoch %lld%s", (long long)e,
	      ret ? ", not the writer's memory" : "");
	counted = t_thread_read_bytes(&read0);
	e = pt_region_checkpoint(r);
	counted = counted && t_thread_read_bytes(&read1);
	CHECK(e == (int64_t)last, "checkpoint reached %lld", (long long)e);
	/* Heads and newest copies only: never a whole record read again. */
	CHECK(!counted || read1 - read0 <= (last + HOT + last + 8) * ps + (64u << 10),
	      "the checkpoint read %llu bytes: whole records",
	      (unsigned long long)(read1 - read0));
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", pt_strerror(ret));
	ret = pt_region_open(&r, dir, &opts);
	CHECK(ret == 0, "reopen: %s", pt_strerror(ret));
	e = pt_region_epoch(r);
	ret = memcmp(pt_region_base(r), snap, size);
	pt_region_close(r);
	free(snap);
	CHECK(e == (int64_t)last && !ret, "reopened at epoch %lld%s", (long long)e,
	      ret ? ", not the writer's memory" : "");
	return true;
}

static struct pt_region *history(unsigned int h, uint64_t from, uint64_t to,
				 const struct pt_region_opts *o)
{
	size_t ps = t_page_size();
	struct pt_region *r;
	int ret = from == 1 ? pt_region_create(&r, dir, NPAGES * ps, o) : pt_region_open(&r, dir, o);

	if (ret)
		DIE("%s %s: %s", from == 1 ? "create" : "open", dir, pt_strerror(ret));
	for (uint64_t e = from; e <= to; e++) {
		epoch_writes(pt_region_base(r), ps, e, h);
		if (pt_region_sync(r) != (int64_t)e)
			DIE("sync %llu", (unsigned long long)e);
	}
	return r;
}

static bool rewritten_after_crash(char *why, size_t why_len)
{
	struct pt_region_opts accept = opts;
	struct pt_region *r;
	bool ok;
	int dirfd;

	t_tmpdir_make(dir, sizeof(dir), "pt-pagelog-heads");
	r = history(0, 1, N, &opts);
	CHECK(pt_region_close(r) == 0, "close");
	dirfd = open_dirfd();
	damage_page(dirfd, K);
	/* Recovery stops before K: epochs K..N of segment 1 are given up. */
	accept.flags |= PT_REGION_ACCEPT_LOSS;
	r = history(1, K, M, &accept);
	ok = same_paths(dirfd, M, why, why_len) && end_state(r, M, why, why_len);
	close(dirfd);
	t_tmpdir_remove(dir);
	return ok;
}

static bool written_again(char *why, size_t why_len)
{
	struct pt_region *r;
	uint64_t off, len, end_off, end_len;
	unsigned char *bytes;
	int dirfd, fd, ret;
	bool ok;

	t_tmpdir_make(dir, sizeof(dir), "pt-pagelog-heads");
	r = history(0, 1, N, &opts);
	CHECK(pt_region_close(r) == 0, "close");
	dirfd = open_dirfd();
	/* Segment 2 holds epochs K..N again, byte for byte, as the log thread
	 * writes them after a failed write; then K's copy in segment 1 tears. */
	off = record_at(dirfd, 1, K, &len);
	end_off = record_at(dirfd, 1, N, &end_len);
	len = end_off + end_len - off;
	bytes = malloc(len);
	CHECK(bytes, "malloc");
	fd = openat(dirfd, "log-0000000000000001.seg", O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && pread(fd, bytes, len, (off_t)off) == (ssize_t)len, "read segment 1");
	close(fd);
	{
		struct pt_region_id id = region_id(dirfd);

		fd = pt_segment_create(dirfd, &id, 2, K);
	}
	CHECK(fd >= 0, "segment 2: %s", pt_strerror(fd));
	ret = pwrite(fd, bytes, len, (off_t)t_page_size()) == (ssize_t)len && !fsync(fd) ? 0 : -errno;
	close(fd);
	free(bytes);
	CHECK(ret == 0, "write segment 2: %s", strerror(-ret));
	damage_page(dirfd, K);
	r = history(0, N + 1, N, &opts);	/* reopen only */
	ok = same_paths(dirfd, N, why, why_len) && end_state(r, N, why, why_len);
	close(dirfd);
	t_tmpdir_remove(dir);
	return ok;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "rewritten-after-crash", rewritten_after_crash },
		{ "written-again", written_again },
	};

	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	return t_exit();
}
