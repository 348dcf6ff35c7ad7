/* log-corrupt: a table of log and image corruptions; reading stops at the last valid record with each one's specific error, and recovery never applies a corrupt record. */
#include <dirent.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "pagelog.h"
#include "image.h"

#define NPAGES	32
#define EPOCHS	10
#define VICTIM	6	/* the record corrupted */

static char src[128], dst[128];
static uint64_t hashes[EPOCHS + 1];



/* Build the region the cases corrupt: EPOCHS records in one segment. */
static void build(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r;
	char *m;
	int ret;

	ret = pt_region_create(&r, src, size, &o);
	if (ret)
		DIE("create: %s", strerror(-ret));
	m = pt_region_base(r);
	hashes[0] = XXH3_64bits(m, size);
	for (int e = 1; e <= EPOCHS; e++) {
		/* Epoch e writes pages e-1 and e+9 (two runs). */
		m[(size_t)(e - 1) * ps + 1] = (char)e;
		m[(size_t)(e + 9) * ps + 2] = (char)e;
		if (pt_region_sync(r) != e)
			DIE("sync %d", e);
		hashes[e] = XXH3_64bits(m, size);
	}
	ret = pt_region_close(r);
	if (ret)
		DIE("close: %s", strerror(-ret));
}

struct seg {
	int fd;
	uint64_t off[EPOCHS + 2];	/* record offsets by epoch */
	uint64_t len[EPOCHS + 2];
};

static void seg_open(struct seg *s)
{
	char p[512];
	struct pt_record_header h;
	uint64_t off = t_page_size();

	snprintf(p, sizeof(p), "%s/log-0000000000000001.seg", dst);
	s->fd = open(p, O_RDWR);
	if (s->fd < 0)
		DIE("%s: %s", p, strerror(errno));
	for (int e = 1; e <= EPOCHS; e++) {
		if (pread(s->fd, &h, sizeof(h), (off_t)off) != sizeof(h) || h.epoch != (uint64_t)e)
			DIE("record %d not found at %llu", e, (unsigned long long)off);
		s->off[e] = off;
		s->len[e] = h.length;
		off += h.length;
	}
}

static void hdr_get(struct seg *s, int e, struct pt_record_header *h)
{
	if (pread(s->fd, h, sizeof(*h), (off_t)s->off[e]) != sizeof(*h))
		DIE("pread");
}

/* Write a changed header back with a checksum that matches it: the
 * corruption is then only what the case says. */
static void hdr_put(struct seg *s, int e, struct pt_record_header *h)
{
	h->header_checksum = 0;
	h->header_checksum = XXH3_64bits(h, sizeof(*h));
	if (pwrite(s->fd, h, sizeof(*h), (off_t)s->off[e]) != sizeof(*h))
		DIE("pwrite");
}

static void flip(struct seg *s, uint64_t off, int bit)
{
	unsigned char c;

	if (pread(s->fd, &c, 1, (off_t)off) != 1)
		DIE("pread");
	c ^= (unsigned char)(1u << bit);
	if (pwrite(s->fd, &c, 1, (off_t)off) != 1)
		DIE("pwrite");
}

/* ---- the cases ---------------------------------------------------------- */

static void c_flip_data(struct seg *s)
{
	flip(s, s->off[VICTIM] + s->len[VICTIM] - 100, 3);
}

static void c_flip_index(struct seg *s)
{
	flip(s, s->off[VICTIM] + sizeof(struct pt_record_header), 0);
}

static void c_flip_header(struct seg *s)
{
	flip(s, s->off[VICTIM] + offsetof(struct pt_record_header, epoch), 5);
}

static void c_bad_magic(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.magic = 0x12345678;
	hdr_put(s, VICTIM, &h);
}

static void c_wrong_checksum(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.payload_checksum ^= 1;
	hdr_put(s, VICTIM, &h);
}

static void c_truncated_header(struct seg *s)
{
	if (ftruncate(s->fd, (off_t)(s->off[VICTIM] + sizeof(struct pt_record_header) / 2)))
		DIE("ftruncate");
}

static void c_cut_at_page(struct seg *s)
{
	/* The header page and one of the two data pages. */
	if (ftruncate(s->fd, (off_t)(s->off[VICTIM] + s->len[VICTIM] - t_page_size())))
		DIE("ftruncate");
}

static void c_zero_length(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.length = 0;
	hdr_put(s, VICTIM, &h);
}

static void c_oversized_length(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.length = 1ull << 40;
	hdr_put(s, VICTIM, &h);
}

static void c_oversized_count(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.page_count = NPAGES + 1;
	hdr_put(s, VICTIM, &h);
}

static void c_out_of_order(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.epoch = VICTIM + 1;
	hdr_put(s, VICTIM, &h);
}

static void c_version(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.version = 99;
	hdr_put(s, VICTIM, &h);
}

static void c_page_size(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.page_size *= 2;
	hdr_put(s, VICTIM, &h);
}

static void c_history(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.history_id ^= 0x10;
	hdr_put(s, VICTIM, &h);
}

static void c_broken_chain(struct seg *s)
{
	struct pt_record_header h;

	hdr_get(s, VICTIM, &h);
	h.prev ^= 1;
	hdr_put(s, VICTIM, &h);
}

/* An index beyond the region with every checksum right. */
static void c_index_range(struct seg *s)
{
	size_t len = s->len[VICTIM];
	unsigned char *buf = malloc(len);
	struct pt_record_header *h = (struct pt_record_header *)buf;
	uint64_t *index = (uint64_t *)(buf + sizeof(*h));

	if (pread(s->fd, buf, len, (off_t)s->off[VICTIM]) != (ssize_t)len)
		DIE("pread");
	index[h->page_count - 1] = NPAGES;
	h->payload_checksum = XXH3_64bits(buf + sizeof(*h), pt_record_head_length(h->page_count,
									h->page_size) -
					  sizeof(*h));
	if (pwrite(s->fd, buf, len, (off_t)s->off[VICTIM]) != (ssize_t)len)
		DIE("pwrite");
	free(buf);
	{
		struct pt_record_header hh;

		hdr_get(s, VICTIM, &hh);
		hdr_put(s, VICTIM, &hh);
	}
}

static const struct {
	const char *name;
	void (*corrupt)(struct seg *);
	int error;
} cases[] = {
	{ "bit-flip-in-page-data", c_flip_data, -EBADMSG },
	{ "bit-flip-in-page-index", c_flip_index, -EBADMSG },
	{ "bit-flip-in-header", c_flip_header, -EBADMSG },
	{ "bad-magic", c_bad_magic, -EBADMSG },
	{ "wrong-payload-checksum", c_wrong_checksum, -EBADMSG },
	{ "truncated-header", c_truncated_header, -ENODATA },
	{ "cut-at-a-page-boundary", c_cut_at_page, -ENODATA },
	{ "zero-length", c_zero_length, -EMSGSIZE },
	{ "oversized-length", c_oversized_length, -EMSGSIZE },
	{ "oversized-page-count", c_oversized_count, -EMSGSIZE },
	{ "index-beyond-region", c_index_range, -EMSGSIZE },
	{ "epochs-out-of-order", c_out_of_order, -EILSEQ },
	{ "format-version", c_version, -EPROTO },
	{ "page-size", c_page_size, -EXDEV },
	{ "other-history", c_history, -ESTALE },
	{ "broken-hash-chain", c_broken_chain, -ESTALE },
};

static bool run_case(size_t i, char *why, size_t why_len)
{
	struct pt_region_opts accept = { .sz = sizeof(accept), .flags = PT_REGION_ACCEPT_LOSS };
	size_t size = NPAGES * t_page_size();
	struct pt_pagelog_reader rd;
	struct pt_record rec;
	struct pt_image img;
	struct pt_region *r;
	struct seg s;
	uint64_t last = 0;
	int ret, dirfd;

	(void)why;
	(void)why_len;
	t_copy_dir(src, dst, NULL);
	seg_open(&s);
	cases[i].corrupt(&s);
	close(s.fd);

	/* The reader: records 1 .. VICTIM-1, then the case's error. */
	dirfd = open(dst, O_RDONLY | O_DIRECTORY);
	ret = pt_image_open(&img, dirfd, false);
	CHECK(ret == 0, "image: %s", strerror(-ret));
	pt_pagelog_reader_init(&rd, dirfd, &img.id, 1, img.hdr.chain);
	rd.quiet = true;
	while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0)
		last = rec.hdr->epoch;
	pt_pagelog_reader_free(&rd);
	pt_image_close(&img);
	close(dirfd);
	CHECK(last == VICTIM - 1, "reader went to epoch %llu", (unsigned long long)last);
	CHECK(ret == cases[i].error, "reader stopped with %d (%s), want %d (%s)", ret,
	      pt_strerror(ret), cases[i].error, pt_strerror(cases[i].error));

	/* The damaged record was durable: recovery refuses to come back at an
	 * older epoch unless told to accept the loss. */
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == -ENOTRECOVERABLE, "open without accepting the loss: %d (%s)", ret,
	      pt_strerror(ret));
	/* Accepted: the same epoch, its memory, the corrupt record not applied. */
	ret = pt_region_open(&r, dst, &accept);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	CHECK(pt_region_epoch(r) == VICTIM - 1, "recovered epoch %lld",
	      (long long)pt_region_epoch(r));
	CHECK(XXH3_64bits(pt_region_base(r), size) == hashes[VICTIM - 1],
	      "recovered memory is not epoch %d's", VICTIM - 1);
	/* It goes on from there, and a second recovery agrees. */
	((char *)pt_region_base(r))[5] = 1;
	CHECK(pt_region_sync(r) == VICTIM, "sync after recovery");
	pt_region_close(r);
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == 0 && pt_region_epoch(r) == VICTIM, "second recovery: %d", ret);
	pt_region_close(r);
	return true;
}

/* Image and directory problems: each a clear error at open. */
static bool image_cases(char *why, size_t why_len)
{
	struct pt_region *r;
	struct pt_replica *rep;
	char p[512];
	uint32_t v;
	int fd, ret;

	(void)why;
	(void)why_len;
	snprintf(p, sizeof(p), "%s/image", dst);

	t_copy_dir(src, dst, NULL);
	fd = open(p, O_RDWR);
	CHECK(pwrite(fd, "X", 1, 0) == 1 && pwrite(fd, "X", 1, (off_t)t_page_size()) == 1, "write");
	close(fd);
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == -EBADMSG, "image magic: %d", ret);
	ret = pt_replica_open(&rep, dst, NULL);
	CHECK(ret == -EBADMSG, "replica, image magic: %d", ret);

	t_copy_dir(src, dst, NULL);
	fd = open(p, O_RDWR);
	v = 99;
	CHECK(pwrite(fd, &v, 4, 8) == 4, "write");
	close(fd);
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == -EPROTO, "image version: %d", ret);

	t_copy_dir(src, dst, NULL);
	CHECK(truncate(p, (off_t)t_page_size() * 4) == 0, "truncate");
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == -ENODATA, "truncated image: %d", ret);

	t_copy_dir(src, dst, NULL);
	unlink(p);
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == -EMEDIUMTYPE, "no image: %d", ret);
	ret = pt_replica_open(&rep, dst, NULL);
	CHECK(ret == -EMEDIUMTYPE, "replica, no image: %d", ret);

	/* A checkpointed page that is corrupt, with no record after it. */
	t_copy_dir(src, dst, NULL);
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == 0, "open: %d", ret);
	CHECK(pt_region_checkpoint(r) == EPOCHS, "checkpoint");
	pt_region_close(r);
	{
		struct pt_image img;
		int dirfd = open(dst, O_RDONLY | O_DIRECTORY);

		CHECK(pt_image_open(&img, dirfd, false) == 0, "image");
		fd = open(p, O_RDWR);
		CHECK(pwrite(fd, "Z", 1, (off_t)(img.hdr.data_offset + 3 * t_page_size() + 7)) == 1,
		      "write");
		close(fd);
		pt_image_close(&img);
		close(dirfd);
	}
	ret = pt_region_open(&r, dst, NULL);
	CHECK(ret == -EBADMSG, "corrupt image page: %d", ret);
	return true;
}

int main(void)
{
	char why[256];

	snprintf(src, sizeof(src), "/dev/shm/pt-log-corrupt-XXXXXX");
	snprintf(dst, sizeof(dst), "/dev/shm/pt-log-corrupt-copy-XXXXXX");
	if (!mkdtemp(src) || !mkdtemp(dst))
		DIE("mkdtemp: %s", strerror(errno));
	rmdir(src);
	build();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		why[0] = '\0';
		t_cell_report(cases[i].name, run_case(i, why, sizeof(why)) ? T_PASS : T_FAIL, why);
	}
	why[0] = '\0';
	t_cell_report("image-and-directory", image_cases(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	t_tmpdir_empty(src);
	rmdir(src);
	t_tmpdir_empty(dst);
	rmdir(dst);
	return t_exit();
}
