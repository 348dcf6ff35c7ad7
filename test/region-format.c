/* region-format: a directory of an older format version is refused (-EPROTO) by every reader, untouched, with a message saying how to carry it over. */
/*
 * Format version 3 changed the records (the sum of each page in the head;
 * the payload checksum over the head only).  A directory written by a
 * library of version 2 has the same files with version 2 in every header:
 * this test makes one by rewriting the version of a region's image slots,
 * segment headers, records and state block (each checksum made right
 * again), so that the version is the only thing amiss.  Then the writer's
 * open, a replica, the directory status and verify must each fail with
 * -EPROTO, the library's message must name the way over (export with the
 * pagetrack that made it, import with this one), and no file may change.
 * A single record of version 2 among version 3 ones is also refused where
 * it lies: the reader stops there with -EPROTO.
 */
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "pagelog.h"

#define NPAGES	32
#define EPOCHS	12

static char dir[128];
static char messages[4096];

static void keep_log(enum pt_log_level level, const char *msg, void *arg)
{
	size_t used = strlen(messages);

	(void)level;
	(void)arg;
	snprintf(messages + used, sizeof(messages) - used, "%s\n", msg);
}

static void build(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .segment_bytes = 64u << 10 };
	size_t ps = t_page_size();
	struct pt_region *r;
	unsigned char *m;
	int ret;

	ret = pt_region_create(&r, dir, NPAGES * ps, &o);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	m = pt_region_base(r);
	for (int e = 1; e <= EPOCHS; e++) {
		for (int k = 0; k < 4; k++)
			m[(size_t)((e * 5 + k * 7) % NPAGES) * ps + (size_t)e] = (unsigned char)e;
		if (pt_region_sync(r) != e)
			DIE("sync %d", e);
		if (e == EPOCHS / 2 && pt_region_checkpoint(r) != e)
			DIE("checkpoint at %d", e);
	}
	ret = pt_region_close(r);
	if (ret)
		DIE("close: %s", pt_strerror(ret));
}

static int open_in(const char *name, int flags)
{
	char p[300];
	int fd;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	fd = open(p, flags | O_CLOEXEC);
	if (fd < 0)
		DIE("%s: %s", p, strerror(errno));
	return fd;
}

static void rw(int fd, void *buf, size_t len, off_t off, bool write)
{
	ssize_t n = write ? pwrite(fd, buf, len, off) : pread(fd, buf, len, off);

	if (n != (ssize_t)len)
		DIE("%s at %lld: %s", write ? "pwrite" : "pread", (long long)off,
		    n < 0 ? strerror(errno) : "short");
}

/* Rewrite every record of a segment as version `version`. */
static void records_as(int fd, uint16_t version, int only_epoch)
{
	size_t ps = t_page_size();
	struct pt_record_header h;
	off_t off = (off_t)ps;

	for (;;) {
		if (pread(fd, &h, sizeof(h), off) != (ssize_t)sizeof(h) || h.magic != PT_RECORD_MAGIC)
			return;
		if (only_epoch < 0 || h.epoch == (uint64_t)only_epoch) {
			h.version = version;
			h.header_checksum = pt_header_checksum(&h, sizeof(h),
							       offsetof(struct pt_record_header,
									header_checksum));
			rw(fd, &h, sizeof(h), off, true);
		}
		off += (off_t)h.length;
	}
}

/* Every file of the directory as a library of format version 2 wrote it. */
static void make_version_2(void)
{
	size_t ps = t_page_size();
	struct pt_image_header ih;
	struct pt_segment_header sh;
	struct pt_state st;
	struct dirent *de;
	DIR *d;
	int fd;

	fd = open_in(PT_IMAGE_NAME, O_RDWR);
	for (int slot = 0; slot < 2; slot++) {
		rw(fd, &ih, sizeof(ih), (off_t)slot * (off_t)ps, false);
		if (memcmp(ih.magic, PT_IMAGE_MAGIC, 8))
			continue;	/* a slot never written */
		ih.version = 2;
		ih.checksum = pt_header_checksum(&ih, sizeof(ih),
						 offsetof(struct pt_image_header, checksum));
		rw(fd, &ih, sizeof(ih), (off_t)slot * (off_t)ps, true);
	}
	close(fd);
	d = opendir(dir);
	if (!d)
		DIE("opendir %s", dir);
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "log-", 4))
			continue;
		fd = open_in(de->d_name, O_RDWR);
		rw(fd, &sh, sizeof(sh), 0, false);
		sh.version = 2;
		sh.checksum = pt_header_checksum(&sh, sizeof(sh),
						 offsetof(struct pt_segment_header, checksum));
		rw(fd, &sh, sizeof(sh), 0, true);
		records_as(fd, 2, -1);
		close(fd);
	}
	closedir(d);
	fd = open_in(PT_STATE_NAME, O_RDWR);
	rw(fd, &st, sizeof(st), 0, false);
	st.version = 2;
	rw(fd, &st, sizeof(st), 0, true);
	close(fd);
}

/* A hash of every file's name and content: nothing may change. */
static uint64_t dir_hash(void)
{
	XXH3_state_t *s = XXH3_createState();
	struct dirent *de;
	char names[64][256];
	int n = 0;
	DIR *d = opendir(dir);
	uint64_t h;

	if (!s || !d)
		DIE("dir_hash");
	while ((de = readdir(d)) && n < 64)
		if (de->d_name[0] != '.')
			snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	XXH3_64bits_reset(s);
	for (int i = 0; i < n; i++) {
		char buf[4096];
		ssize_t got;
		int fd = open_in(names[i], O_RDONLY);

		XXH3_64bits_update(s, names[i], strlen(names[i]));
		while ((got = read(fd, buf, sizeof(buf))) > 0)
			XXH3_64bits_update(s, buf, (size_t)got);
		close(fd);
	}
	h = XXH3_64bits_digest(s);
	XXH3_freeState(s);
	return h;
}

static void no_problem(const struct pt_dir_problem *p, void *arg)
{
	(void)p;
	(void)arg;
}

static bool version_2_directory(char *why, size_t why_len)
{
	struct pt_dir_status ds = { .sz = sizeof(ds) };
	struct pt_replica *rep = NULL;
	struct pt_region *r = NULL;
	uint64_t before;
	int ret;

	(void)why;
	(void)why_len;
	make_version_2();
	before = dir_hash();

	messages[0] = '\0';
	ret = pt_region_open(&r, dir, NULL);
	CHECK(ret == -EPROTO, "pt_region_open: %d (%s)", ret, pt_strerror(ret));
	CHECK(strstr(messages, "format version 2") && strstr(messages, "pagetrack export") &&
	      strstr(messages, "pagetrack import"),
	      "the writer's open says nothing of the way over: %s", messages);
	ret = pt_region_open(&r, dir, &(struct pt_region_opts){ .sz = sizeof(struct pt_region_opts),
								.flags = PT_REGION_ACCEPT_LOSS });
	CHECK(ret == -EPROTO, "pt_region_open accepting loss: %d (%s)", ret, pt_strerror(ret));
	messages[0] = '\0';
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == -EPROTO, "pt_replica_open: %d (%s)", ret, pt_strerror(ret));
	CHECK(strstr(messages, "pagetrack export"), "the replica says nothing of the way over: %s",
	      messages);
	ret = pt_dir_status(dir, &ds, no_problem, NULL);
	CHECK(ret == -EPROTO, "pt_dir_status: %d (%s)", ret, pt_strerror(ret));
	ret = pt_dir_verify(dir, no_problem, NULL);
	CHECK(ret == -EPROTO, "pt_dir_verify: %d (%s)", ret, pt_strerror(ret));
	CHECK(dir_hash() == before, "a refused open changed the directory");
	return true;
}

/* One record of version 2 among version 3 ones: refused where it lies. */
static bool version_2_record(char *why, size_t why_len)
{
	struct pt_pagelog_reader rd;
	struct pt_region_id id = { 0 };
	struct pt_record rec;
	struct dirent *de;
	uint64_t last = 0;
	int ret, dirfd;
	DIR *d;

	(void)why;
	(void)why_len;
	d = opendir(dir);
	if (!d)
		DIE("opendir %s", dir);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "log-", 4)) {
			int fd = open_in(de->d_name, O_RDWR);

			records_as(fd, 2, EPOCHS - 2);
			close(fd);
		}
	closedir(d);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(dirfd >= 0, "open %s", dir);
	{
		struct pt_image_header ih;
		int fd = open_in(PT_IMAGE_NAME, O_RDONLY);

		rw(fd, &ih, sizeof(ih), 0, false);
		close(fd);
		id.history_id = ih.history_id;
		id.npages = ih.npages;
		id.page_size = ih.page_size;
		id.page_shift = (unsigned int)__builtin_ctzll(ih.page_size);
	}
	for (int heads = 0; heads < 2; heads++) {
		pt_pagelog_reader_init(&rd, dirfd, &id, 1, pt_chain_seed(id.history_id));
		rd.quiet = true;
		rd.heads_only = heads;
		while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0)
			last = rec.hdr->epoch;
		pt_pagelog_reader_free(&rd);
		CHECK(ret == -EPROTO && last == EPOCHS - 3,
		      "%s reader: stopped after epoch %llu with %d (%s)", heads ? "head" : "whole",
		      (unsigned long long)last, ret, pt_strerror(ret));
	}
	close(dirfd);
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "version-2-record", version_2_record },
		{ "version-2-directory", version_2_directory },
	};

	pt_set_log(keep_log, PT_LOG_ERROR, NULL);
	t_tmpdir_make(dir, sizeof(dir), "pt-region-format");
	build();
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	t_tmpdir_remove(dir);
	return t_exit();
}
