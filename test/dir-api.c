/* dir-api: pt_dir_status, pt_dir_verify, pt_dir_walk, pt_dir_checkpoint and pt_dir_shared on good, damaged and foreign directories, with and without a running writer. */
#include <sys/stat.h>

#include "harness.h"
#include "format.h"

#define NPAGES	16
#define EPOCHS	12

static char dir[128], other[128], shm_name[64];

/*
 * A region of EPOCHS epochs in d, epoch e writing page e % NPAGES, with
 * small segments (several) and no checkpoint thread.  Left open in *rp
 * when rp is not NULL, else closed.
 */
static bool make_region(const char *d, struct pt_region **rp, unsigned int flags,
			unsigned int checkpoint_ms)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = flags,
				    .checkpoint_interval_ms = checkpoint_ms,
				    .segment_bytes = 4 * t_page_size() };
	struct pt_region *r;
	char *m;
	int ret;

	t_tmpdir_empty(d);
	rmdir(d);
	ret = pt_region_create(&r, d, NPAGES * t_page_size(), &o);
	CHECK(ret == 0, "create %s: %s", d, pt_strerror(ret));
	m = pt_region_base(r);
	for (int e = 1; e <= EPOCHS; e++) {
		m[(size_t)(e % NPAGES) * t_page_size()] = (char)e;
		CHECK(pt_region_sync(r) == e, "sync %d", e);
	}
	if (rp) {
		*rp = r;
		return true;
	}
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", pt_strerror(ret));
	return true;
}

/* What a pt_dir_problem_fn saw. */
struct findings {
	int errors, warnings, infos;
	int error_kinds;		/* the last error's -errno */
	struct pt_dir_problem first;	/* the first PT_LOG_ERROR (message not kept) */
	char first_file[64];
	bool matched;			/* a problem at want_file, want_offset */
	const char *want_file;
	uint64_t want_offset;
	char text[4096];		/* every message, a line each */
};

static void collect(const struct pt_dir_problem *p, void *arg)
{
	struct findings *f = arg;
	size_t n = strlen(f->text);

	snprintf(f->text + n, sizeof(f->text) - n, "%d %s@%llu: %s\n", (int)p->level,
		 p->file ? p->file : "-", (unsigned long long)p->offset, p->message);
	if (p->level == PT_LOG_INFO) {
		f->infos++;
		return;
	}
	if (p->level == PT_LOG_WARN) {
		f->warnings++;
		return;
	}
	if (!f->errors++) {
		f->first = *p;
		snprintf(f->first_file, sizeof(f->first_file), "%s", p->file ? p->file : "");
	}
	f->error_kinds = p->error;
	if (f->want_file && p->file && !strcmp(p->file, f->want_file) &&
	    p->offset == f->want_offset)
		f->matched = true;
}

/* ---- status ------------------------------------------------------------- */

static bool status_good(char *why, size_t why_len)
{
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	struct pt_dir_status st = { .sz = sizeof(st) };
	struct findings f = { 0 };
	struct pt_region *r;
	int ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, &r, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	CHECK(pt_region_checkpoint(r) == EPOCHS, "checkpoint");
	CHECK(pt_region_stats(r, NULL, &tot) == 0, "stats");
	ret = pt_dir_status(dir, &st, collect, &f);
	CHECK(ret == 0, "status: %s", pt_strerror(ret));
	CHECK(st.writer_pid == getpid(), "writer_pid %d, want %d", st.writer_pid, getpid());
	CHECK(st.published == tot.published && st.durable == tot.durable &&
	      st.checkpointed == tot.checkpointed, "epochs %llu/%llu/%llu, the writer says "
	      "%llu/%llu/%llu", (unsigned long long)st.published, (unsigned long long)st.durable,
	      (unsigned long long)st.checkpointed, (unsigned long long)tot.published,
	      (unsigned long long)tot.durable, (unsigned long long)tot.checkpointed);
	CHECK(st.log_bytes == tot.log_bytes, "log_bytes %llu, the writer says %llu",
	      (unsigned long long)st.log_bytes, (unsigned long long)tot.log_bytes);
	CHECK(st.last_error == tot.last_error, "last_error %d", st.last_error);
	CHECK(st.npages == NPAGES && st.page_size == t_page_size() && st.history_id, "geometry");
	CHECK(st.image_epoch == EPOCHS && st.reached == EPOCHS && st.state_durable == EPOCHS &&
	      st.reach == 0 && st.state_error == 0 && st.log_error == 0 && st.foreign == 0 &&
	      st.segments > 1, "reach %d, reached %llu, segments %u", st.reach,
	      (unsigned long long)st.reached, st.segments);
	CHECK(f.errors == 0 && f.warnings == 0, "findings on a good region:\n%s", f.text);
	CHECK(pt_region_close(r) == 0, "close");
	ret = pt_dir_status(dir, &st, NULL, NULL);
	CHECK(ret == 0 && st.writer_pid == 0 && st.published == EPOCHS, "after close: %d, pid %d",
	      ret, st.writer_pid);
	return true;
}

/* The newest segment deleted after a clean close: durable epochs lost. */
static bool status_lost_segment(char *why, size_t why_len)
{
	struct pt_dir_status st = { .sz = sizeof(st) };
	struct findings f = { 0 };
	char best[256] = "", p[512];
	struct dirent *de;
	DIR *dp;
	int ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	dp = opendir(dir);
	CHECK(dp, "opendir");
	while ((de = readdir(dp)))
		if (!strncmp(de->d_name, "log-", 4) && strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	closedir(dp);
	snprintf(p, sizeof(p), "%s/%s", dir, best);
	CHECK(best[0] && unlink(p) == 0, "unlink the newest segment %s", best);
	ret = pt_dir_status(dir, &st, collect, &f);
	CHECK(ret == 0, "status: %s", pt_strerror(ret));
	CHECK(st.reach == -ENOTRECOVERABLE && st.reached < EPOCHS && st.state_durable == EPOCHS,
	      "reach %d (%s), reached %llu", st.reach, pt_strerror(st.reach),
	      (unsigned long long)st.reached);
	CHECK(f.errors == 1 && f.error_kinds == -ENOTRECOVERABLE &&
	      strstr(f.text, "cannot be reached"), "findings:\n%s", f.text);
	return true;
}

/* Another region's image (same size, another history) copied over. */
static bool status_foreign_image(char *why, size_t why_len)
{
	struct pt_dir_status st = { .sz = sizeof(st) };
	struct findings f = { 0 };
	char from[256], to[256], buf[65536];
	ssize_t n;
	int in, out, ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0) &&
	      make_region(other, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "regions");
	snprintf(from, sizeof(from), "%s/image", other);
	snprintf(to, sizeof(to), "%s/image", dir);
	in = open(from, O_RDONLY);
	out = open(to, O_WRONLY | O_TRUNC);
	CHECK(in >= 0 && out >= 0, "open the images");
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, (size_t)n) == n, "copy");
	close(in);
	close(out);
	ret = pt_dir_status(dir, &st, collect, &f);
	CHECK(ret == 0, "status: %s", pt_strerror(ret));
	CHECK(st.reach == -ESTALE && st.foreign > 0, "reach %d (%s), foreign %llu", st.reach,
	      pt_strerror(st.reach), (unsigned long long)st.foreign);
	CHECK(f.errors > 0 && f.error_kinds == -ESTALE && strstr(f.text, "another history"),
	      "findings:\n%s", f.text);
	return true;
}

static bool status_bad_input(char *why, size_t why_len)
{
	struct pt_dir_status st = { .sz = sizeof(st) - 1 };
	char link[256];
	int ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	ret = pt_dir_status(dir, &st, NULL, NULL);
	CHECK(ret == -EINVAL, "sz too small: %d", ret);
	st.sz = sizeof(st);
	CHECK(pt_dir_status(dir, NULL, NULL, NULL) == -EINVAL, "NULL status");
	ret = pt_dir_status("/tmp", &st, NULL, NULL);
	CHECK(ret == -EMEDIUMTYPE, "not a region: %d (%s)", ret, pt_strerror(ret));
	snprintf(link, sizeof(link), "%s-link", dir);
	unlink(link);
	CHECK(symlink(dir, link) == 0, "symlink");
	ret = pt_dir_status(link, &st, NULL, NULL);
	unlink(link);
	CHECK(ret == -ENOTDIR, "a symlinked directory: %d (%s)", ret, pt_strerror(ret));
	CHECK(pt_dir_walk(dir, NULL, NULL) == -EINVAL && pt_dir_shared(dir, NULL, NULL) == -EINVAL,
	      "NULL callbacks");
	CHECK(pt_dir_checkpoint(dir, -2, NULL) == -EINVAL, "timeout -2");
	return true;
}

/* ---- verify --------------------------------------------------------------- */

static bool verify_good(char *why, size_t why_len)
{
	struct findings f = { 0 };
	struct pt_region *r;
	int ret;

	(void)why;
	(void)why_len;
	/* With the writer running and checkpointing meanwhile: no false alarm. */
	CHECK(make_region(dir, &r, 0, 5), "region");
	ret = pt_dir_verify(dir, collect, &f);
	pt_region_close(r);
	CHECK(ret == 0 && f.errors == 0, "verify: %d\n%s", ret, f.text);
	CHECK(f.infos >= 2 && strstr(f.text, "0 problems"), "no summary:\n%s", f.text);
	memset(&f, 0, sizeof(f));
	ret = pt_dir_verify(dir, NULL, NULL);
	CHECK(ret == 0, "verify after close, no callback: %d", ret);
	return true;
}

/* Where the walk found each record: the first record of segment 1 holding a page. */
struct walk_find {
	uint64_t seq, offset, length;
	uint32_t page_count;
};

static int find_record(const struct pt_dir_record *rec, void *arg)
{
	struct walk_find *w = arg;

	if (rec->what == PT_DIR_RECORD && rec->page_count && !w->length) {
		w->seq = rec->segment_seq;
		w->offset = rec->offset;
		w->length = rec->length;
		w->page_count = rec->page_count;
	}
	return 0;
}

static bool flip(const char *path, uint64_t off)
{
	unsigned char c;
	int fd = open(path, O_RDWR);

	CHECK(fd >= 0 && pread(fd, &c, 1, (off_t)off) == 1, "read %s", path);
	c ^= 0x5a;
	CHECK(pwrite(fd, &c, 1, (off_t)off) == 1, "write %s", path);
	close(fd);
	return true;
}

/* A byte flipped in a record's page data: the problem names the segment and the record. */
static bool verify_flipped_segment(char *why, size_t why_len)
{
	struct walk_find w = { 0 };
	struct findings f = { 0 };
	char name[64], path[512];
	int ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	CHECK(pt_dir_walk(dir, find_record, &w) == 0 && w.length, "walk found no record");
	snprintf(name, sizeof(name), "log-%016llx.seg", (unsigned long long)w.seq);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	/* The last byte of the record: its last page's data. */
	CHECK(flip(path, w.offset + w.length - 1), "flip");
	f.want_file = name;
	f.want_offset = w.offset;
	ret = pt_dir_verify(dir, collect, &f);
	CHECK(ret > 0 && ret == f.errors, "verify: %d, %d errors reported\n%s", ret, f.errors,
	      f.text);
	CHECK(f.matched, "no problem at %s offset %llu:\n%s", name, (unsigned long long)w.offset,
	      f.text);
	CHECK(strstr(f.text, "bad magic or checksum"), "the reason is not given:\n%s", f.text);
	return true;
}

/* A byte flipped in an image page: the problem names the image, the page and its offset. */
static bool verify_flipped_image(char *why, size_t why_len)
{
	struct pt_image_header h, h1;
	struct findings f = { 0 };
	struct pt_region *r;
	char path[512];
	uint64_t page = 3, off;
	int fd, ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, &r, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	CHECK(pt_region_checkpoint(r) == EPOCHS, "checkpoint");
	CHECK(pt_region_close(r) == 0, "close");
	snprintf(path, sizeof(path), "%s/image", dir);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	      pread(fd, &h1, sizeof(h1), (off_t)t_page_size()) == (ssize_t)sizeof(h1), "headers");
	close(fd);
	if (h1.seq > h.seq)
		h = h1;
	off = h.data_offset + page * t_page_size();
	CHECK(flip(path, off + 100), "flip");
	f.want_file = "image";
	f.want_offset = off;
	ret = pt_dir_verify(dir, collect, &f);
	CHECK(ret == 1 && f.errors == 1, "verify: %d, %d errors\n%s", ret, f.errors, f.text);
	CHECK(f.matched && f.first.page == page && f.first.error == -EBADMSG,
	      "want image@%llu page %llu, got %s@%llu page %llu:\n%s", (unsigned long long)off,
	      (unsigned long long)page, f.first_file, (unsigned long long)f.first.offset,
	      (unsigned long long)f.first.page, f.text);
	return true;
}

/* ---- walk --------------------------------------------------------------------- */

struct walk_all {
	int images, segments, stops;
	pt_epoch_t next_epoch;
	uint64_t prev_checksum;
	bool bad_order, bad_pages, bad_chain;
};

static int walk_all(const struct pt_dir_record *rec, void *arg)
{
	struct walk_all *w = arg;

	switch (rec->what) {
	case PT_DIR_IMAGE:
		w->images++;
		break;
	case PT_DIR_SEGMENT:
		w->segments++;
		break;
	case PT_DIR_RECORD:
		if (rec->epoch != w->next_epoch)
			w->bad_order = true;
		/* Epoch e wrote page e % NPAGES, and only it. */
		if (rec->page_count != 1 || rec->pages[0] != (uint64_t)rec->epoch % NPAGES)
			w->bad_pages = true;
		if (w->next_epoch > 1 && rec->prev != w->prev_checksum)
			w->bad_chain = true;
		w->prev_checksum = rec->header_checksum;
		w->next_epoch = rec->epoch + 1;
		break;
	case PT_DIR_STOP:
		w->stops++;
		break;
	}
	return 0;
}

static int stop_at_three(const struct pt_dir_record *rec, void *arg)
{
	(void)arg;
	return rec->what == PT_DIR_RECORD && rec->epoch == 3 ? 42 : 0;
}

static bool walk_order(char *why, size_t why_len)
{
	struct walk_all w = { .next_epoch = 1 };
	int ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	ret = pt_dir_walk(dir, walk_all, &w);
	CHECK(ret == 0, "walk: %d", ret);
	CHECK(w.images == 1 && w.segments > 1 && w.stops == 0, "%d images, %d segments, %d stops",
	      w.images, w.segments, w.stops);
	CHECK(w.next_epoch == EPOCHS + 1 && !w.bad_order, "records end before epoch %llu or "
	      "out of order", (unsigned long long)w.next_epoch);
	CHECK(!w.bad_pages && !w.bad_chain, "pages %d, chain %d", w.bad_pages, w.bad_chain);
	CHECK(pt_dir_walk(dir, stop_at_three, NULL) == 42, "fn's value stops the walk");
	return true;
}

/* ---- checkpoint ---------------------------------------------------------------- */

static bool checkpoint_running_writer(char *why, size_t why_len)
{
	struct pt_dir_status st = { .sz = sizeof(st) };
	struct pt_region *r;
	int32_t pid = -2;
	int64_t e;

	(void)why;
	(void)why_len;
	/* A long interval: the writer checkpoints when it looks at the request. */
	CHECK(make_region(dir, &r, 0, 200), "region");
	e = pt_dir_checkpoint(dir, 10000, &pid);
	CHECK(e == EPOCHS && pid == getpid(), "checkpoint: %lld (%s), pid %d",
	      (long long)e, e < 0 ? pt_strerror((int)e) : "", pid);
	CHECK(pt_dir_status(dir, &st, NULL, NULL) == 0 && st.image_epoch == EPOCHS,
	      "image at %llu", (unsigned long long)st.image_epoch);
	CHECK(pt_region_close(r) == 0, "close");

	/* With its checkpoint thread off, no one answers. */
	CHECK(make_region(dir, &r, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	e = pt_dir_checkpoint(dir, 300, &pid);
	pt_region_close(r);
	CHECK(e == -ETIMEDOUT, "checkpoint with no checkpoint thread: %lld (%s)", (long long)e,
	      e < 0 ? pt_strerror((int)e) : "");
	return true;
}

static bool checkpoint_no_writer(char *why, size_t why_len)
{
	struct pt_dir_status st = { .sz = sizeof(st) };
	int32_t pid = -2;
	int64_t e;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	CHECK(pt_dir_status(dir, &st, NULL, NULL) == 0 && st.image_epoch == 0, "image at %llu",
	      (unsigned long long)st.image_epoch);
	e = pt_dir_checkpoint(dir, 0, &pid);
	CHECK(e == EPOCHS && pid == 0, "checkpoint: %lld (%s), pid %d", (long long)e,
	      e < 0 ? pt_strerror((int)e) : "", pid);
	CHECK(pt_dir_status(dir, &st, NULL, NULL) == 0 && st.image_epoch == EPOCHS &&
	      st.writer_pid == 0 && st.reach == 0, "after: image at %llu, reach %d",
	      (unsigned long long)st.image_epoch, st.reach);
	return true;
}

/* ---- shared replicas --------------------------------------------------------------- */

struct shared_find {
	int found;
	pt_epoch_t epoch;
	uint32_t readers;
	int32_t pid;
};

static int find_shared(const struct pt_dir_shared *s, void *arg)
{
	struct shared_find *f = arg;

	if (strcmp(s->name, shm_name))
		return 0;
	f->found++;
	f->epoch = s->epoch;
	f->readers = s->readers;
	f->pid = s->readers ? s->reader[0].pid : 0;
	return 0;
}

static bool shared_listed(char *why, size_t why_len)
{
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED, .name = shm_name };
	struct shared_find f = { 0 };
	struct pt_replica *rep;
	int ret;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir, NULL, PT_REGION_NO_CHECKPOINT_THREAD, 0), "region");
	t_shm_remove(shm_name);
	ret = pt_replica_open(&rep, dir, &o);
	CHECK(ret == 0, "replica: %s", pt_strerror(ret));
	if (pt_replica_refresh(rep, 0) != EPOCHS) {
		pt_replica_close(rep);
		t_shm_remove(shm_name);
		CHECK(false, "refresh");
	}
	ret = pt_dir_shared(dir, find_shared, &f);
	pt_replica_close(rep);
	if (ret || f.found != 1 || f.epoch != EPOCHS || f.readers != 1 || f.pid != getpid()) {
		t_shm_remove(shm_name);
		CHECK(false, "shared: %d, found %d, epoch %llu, %u readers, pid %d", ret, f.found,
		      (unsigned long long)f.epoch, f.readers, f.pid);
	}
	/* Closed: still there, with no reader. */
	memset(&f, 0, sizeof(f));
	ret = pt_dir_shared(dir, find_shared, &f);
	t_shm_remove(shm_name);
	CHECK(ret == 0 && f.found == 1 && f.readers == 0, "after close: %d, found %d, %u readers",
	      ret, f.found, f.readers);
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "status-good", status_good },
		{ "status-lost-newest-segment", status_lost_segment },
		{ "status-foreign-image", status_foreign_image },
		{ "status-bad-input", status_bad_input },
		{ "verify-good", verify_good },
		{ "verify-flipped-segment-byte", verify_flipped_segment },
		{ "verify-flipped-image-byte", verify_flipped_image },
		{ "walk-order", walk_order },
		{ "checkpoint-running-writer", checkpoint_running_writer },
		{ "checkpoint-no-writer", checkpoint_no_writer },
		{ "shared-listed", shared_listed },
	};

	snprintf(dir, sizeof(dir), "/dev/shm/pt-dir-api-XXXXXX");
	snprintf(other, sizeof(other), "/dev/shm/pt-dir-api-other-XXXXXX");
	if (!mkdtemp(dir) || !mkdtemp(other))
		DIE("mkdtemp: %s", strerror(errno));
	snprintf(shm_name, sizeof(shm_name), "pt-dir-api-%d", (int)getpid());
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	t_shm_remove(shm_name);
	t_tmpdir_remove(dir);
	t_tmpdir_remove(other);
	return t_exit();
}
