/* region-hostile: regressions for a damaged or hostile data directory: lost durable epochs, zeroed image table, foreign files, FIFOs, absurd options. */
/*
 * Each cell works on a fresh copy of one reference region (several
 * segments, a checkpoint in the middle, closed cleanly: every epoch
 * durable) and checks that the writer's open and a private replica either
 * come back at the last durable epoch with its exact content, or fail with
 * the error the contract names; never an older epoch without an error,
 * never a hang (an alarm bounds every cell).
 */
#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "image.h"

#define NPAGES	64
#define EPOCHS	12
#define MID	6	/* checkpoint after this epoch */

static char ref[128], other[128], dir[128];
static uint64_t last_hash;


/* A region of EPOCHS epochs in d; returns the hash of its last epoch. */
static uint64_t make_region(const char *d, uint64_t seed)
{
	struct pt_region_opts o = { .sz = sizeof(o), .segment_bytes = 8 * 4096,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r;
	uint64_t h;
	int ret;

	t_tmpdir_empty(d);
	ret = pt_region_create(&r, d, size, &o);
	if (ret)
		DIE("create %s: %s", d, strerror(-ret));
	for (int e = 1; e <= EPOCHS; e++) {
		for (int k = 0; k < 3; k++) {
			uint64_t p = t_rnd_next(&seed) % NPAGES;

			memset((char *)pt_region_base(r) + p * ps, (int)(t_rnd_next(&seed) | 1), ps);
		}
		if (pt_region_sync(r) != e)
			DIE("sync %d", e);
		if (e == MID && pt_region_checkpoint(r) != MID)
			DIE("checkpoint");
	}
	h = XXH3_64bits(pt_region_base(r), size);
	if (pt_region_close(r))
		DIE("close");
	return h;
}

/*
 * The outcomes the contract allows: the last epoch with its content, or
 * an error: want (ANY_ERROR: any).
 */
#define ANY_ERROR 1

static bool writer_gives(int want, char *why, size_t why_len)
{
	struct pt_region *r;
	int ret;

	ret = pt_region_open(&r, dir, NULL);
	if (ret) {
		snprintf(why, why_len, "writer open: %d (%s), want %d", ret, pt_strerror(ret), want);
		return ret == want || want == ANY_ERROR;
	}
	if (pt_region_epoch(r) != EPOCHS ||
	    XXH3_64bits(pt_region_base(r), NPAGES * t_page_size()) != last_hash) {
		snprintf(why, why_len, "writer open came back at epoch %lld%s, want error %d",
			 (long long)pt_region_epoch(r), pt_region_epoch(r) == EPOCHS ?
			 " with other content" : "", want);
		pt_region_close(r);
		return false;
	}
	pt_region_close(r);
	return true;
}

static bool replica_gives(int want, char *why, size_t why_len)
{
	struct pt_replica *rep;
	int64_t e = 0, prev;
	int ret;

	ret = pt_replica_open(&rep, dir, NULL);
	if (ret) {
		snprintf(why, why_len, "replica open: %d (%s), want %d", ret, pt_strerror(ret), want);
		return ret == want || want == ANY_ERROR;
	}
	do {
		prev = e;
		e = pt_replica_refresh(rep, 0);
	} while (e > prev);
	if (e < 0) {
		pt_replica_close(rep);
		snprintf(why, why_len, "replica refresh: %lld (%s), want %d", (long long)e,
			 pt_strerror((int)e), want);
		return e == want || want == ANY_ERROR;
	}
	if (e != EPOCHS || XXH3_64bits(pt_replica_base(rep), NPAGES * t_page_size()) != last_hash) {
		snprintf(why, why_len, "replica shows epoch %lld without an error", (long long)e);
		pt_replica_close(rep);
		return false;
	}
	pt_replica_close(rep);
	return true;
}

static void path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* The newest segment's name. */
static void newest_segment(char *buf, size_t len)
{
	struct dirent *de;
	DIR *dp = opendir(dir);

	buf[0] = 0;
	while (dp && (de = readdir(dp)))
		if (!strncmp(de->d_name, "log-", 4) && strcmp(de->d_name, buf) > 0)
			snprintf(buf, len, "%s", de->d_name);
	if (dp)
		closedir(dp);
}

static bool newest_segment_deleted(char *why, size_t why_len)
{
	struct pt_region_opts accept = { .sz = sizeof(accept), .flags = PT_REGION_ACCEPT_LOSS };
	struct pt_region *r;
	char name[256], p[400];
	int ret;

	t_copy_dir(ref, dir, "lock");
	newest_segment(name, sizeof(name));
	path(p, sizeof(p), name);
	CHECK(unlink(p) == 0, "unlink %s", p);
	if (!replica_gives(-ENOTRECOVERABLE, why, why_len) ||
	    !writer_gives(-ENOTRECOVERABLE, why, why_len))
		return false;
	/* Told to accept the loss, the writer goes on from what it reaches,
	 * and says so once: the next open is clean. */
	ret = pt_region_open(&r, dir, &accept);
	CHECK(ret == 0 && pt_region_epoch(r) < EPOCHS && pt_region_epoch(r) >= MID,
	      "accept loss: %d", ret);
	pt_region_close(r);
	ret = pt_region_open(&r, dir, NULL);
	CHECK(ret == 0, "open after accepting: %d", ret);
	pt_region_close(r);
	return true;
}

static bool every_segment_deleted(char *why, size_t why_len)
{
	char name[256], p[400];

	t_copy_dir(ref, dir, "lock");
	for (;;) {
		newest_segment(name, sizeof(name));
		if (!name[0])
			break;
		path(p, sizeof(p), name);
		CHECK(unlink(p) == 0, "unlink %s", p);
	}
	/* The image is at MID: a replica showing MID, or zeros, would lie. */
	return replica_gives(-ENOTRECOVERABLE, why, why_len) &&
	       writer_gives(-ENOTRECOVERABLE, why, why_len);
}

static bool newest_segment_truncated(char *why, size_t why_len)
{
	char name[256], p[400];
	struct stat st;

	t_copy_dir(ref, dir, "lock");
	newest_segment(name, sizeof(name));
	path(p, sizeof(p), name);
	CHECK(stat(p, &st) == 0 && truncate(p, st.st_size - 100) == 0, "truncate");
	/* The replica may name the torn record (-ENODATA) instead. */
	return replica_gives(ANY_ERROR, why, why_len) &&
	       writer_gives(-ENOTRECOVERABLE, why, why_len);
}

/* Format version 1 read a zeroed table block as "never written". */
static bool zeroed_image_table(char *why, size_t why_len)
{
	struct pt_image_header h;
	char p[300], zero[4096] = { 0 };
	int fd;

	t_copy_dir(ref, dir, "lock");
	path(p, sizeof(p), "image");
	fd = open(p, O_RDWR);
	CHECK(fd >= 0 && pread(fd, &h, sizeof(h), 0) == sizeof(h), "read header");
	CHECK(pwrite(fd, zero, sizeof(zero), (off_t)h.table_offset) == sizeof(zero), "zero");
	close(fd);
	/* The records after the image rewrite some pages, not all. */
	return writer_gives(-EBADMSG, why, why_len) && replica_gives(-EBADMSG, why, why_len);
}

static bool foreign_image(char *why, size_t why_len)
{
	char p[300], q[300];

	t_copy_dir(ref, dir, "lock");
	path(p, sizeof(p), "image");
	snprintf(q, sizeof(q), "%s/image", other);
	{
		/* cp A/image B/image: the same bytes in B's own file. */
		int in = open(q, O_RDONLY), out = open(p, O_WRONLY | O_TRUNC);
		char buf[65536];
		ssize_t n;

		CHECK(in >= 0 && out >= 0, "open");
		while ((n = read(in, buf, sizeof(buf))) > 0)
			CHECK(write(out, buf, (size_t)n) == n, "write");
		close(in);
		close(out);
	}
	return writer_gives(-ESTALE, why, why_len) && replica_gives(-ESTALE, why, why_len);
}

static bool foreign_segment(char *why, size_t why_len)
{
	char name[256], p[400], q[400], cmd[1000];
	DIR *dp;
	struct dirent *de;

	t_copy_dir(ref, dir, "lock");
	/* Another region's first segment, under a sequence number after ours. */
	dp = opendir(other);
	name[0] = 0;
	while (dp && (de = readdir(dp)))
		if (!strncmp(de->d_name, "log-", 4)) {
			snprintf(name, sizeof(name), "%s", de->d_name);
			break;
		}
	if (dp)
		closedir(dp);
	CHECK(name[0], "no segment in the other region");
	snprintf(q, sizeof(q), "%s/%s", other, name);
	path(p, sizeof(p), "log-00000000000000ff.seg");
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", q, p);
	CHECK(system(cmd) == 0, "%s", cmd);
	return writer_gives(-ESTALE, why, why_len) && replica_gives(-ESTALE, why, why_len);
}

/* A FIFO where a file should be hangs no reader (the alarm fails the test). */
static bool fifo_in_place_of(const char *what, char *why, size_t why_len)
{
	char name[256], p[400];

	t_copy_dir(ref, dir, "lock");
	if (!strcmp(what, "segment"))
		newest_segment(name, sizeof(name));
	else
		snprintf(name, sizeof(name), "%s", what);
	path(p, sizeof(p), name);
	unlink(p);
	CHECK(mkfifo(p, 0600) == 0, "mkfifo %s", p);
	alarm(20);
	{
		struct pt_region *r;
		struct pt_replica *rep;
		int a = pt_region_open(&r, dir, NULL), b = pt_replica_open(&rep, dir, NULL);

		if (!a)
			pt_region_close(r);
		if (!b)
			pt_replica_close(rep);
		alarm(0);
		snprintf(why, why_len, "FIFO as %s: open %d, replica %d", what, a, b);
		/* A FIFO in place of the state block is a region whose state
		 * is unknown: an error too.  Never success over a FIFO image. */
		return a < 0 && b < 0;
	}
}

static bool fifo_image(char *why, size_t why_len)
{
	return fifo_in_place_of("image", why, why_len);
}

static bool fifo_segment(char *why, size_t why_len)
{
	return fifo_in_place_of("segment", why, why_len);
}

static bool fifo_state(char *why, size_t why_len)
{
	return fifo_in_place_of("state", why, why_len);
}

static bool replica_refuses_open_dir(char *why, size_t why_len)
{
	struct pt_replica *rep;
	int ret;

	(void)why;
	(void)why_len;
	t_copy_dir(ref, dir, "lock");
	CHECK(chmod(dir, 0777) == 0, "chmod");
	ret = pt_replica_open(&rep, dir, NULL);
	chmod(dir, 0700);
	CHECK(ret == -EPERM, "replica of a world-writable directory: %d", ret);
	return true;
}

static bool absurd_options(char *why, size_t why_len)
{
	uint64_t ram = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	struct pt_region_opts o = { .sz = sizeof(o) };
	struct { struct pt_region_opts o; uint64_t tail; } big = { .o = { .sz = sizeof(big) } };
	struct pt_replica *rep;
	struct pt_region *r;
	int ret;

	(void)why;
	(void)why_len;
	t_tmpdir_empty(dir);
	o.staging_bytes = 1ull << 50;
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &o);
	CHECK(ret == -EINVAL, "staging 2^50: %d", ret);
	o.staging_bytes = ram / 2 + (1u << 20);
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &o);
	CHECK(ret == -ENOMEM, "staging above half the RAM: %d", ret);
	big.tail = 1;
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &big.o);
	CHECK(ret == -EINVAL, "unknown option bytes: %d", ret);
	big.tail = 0;
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &big.o);
	CHECK(ret == 0, "zero unknown option bytes: %d", ret);
	CHECK(pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, -2) == -EINVAL, "wait -2");
	CHECK(pt_region_sync(r) == 1, "sync");
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0, "replica: %d", ret);
	CHECK(pt_replica_refresh(rep, -2000000000) == -EINVAL, "refresh -2e9");
	pt_replica_close(rep);
	pt_region_close(r);
	return true;
}

static bool tracker_read_only(char *why, size_t why_len)
{
	size_t len = 4 * t_page_size();
	struct pt_tracker *t;
	void *p;
	int ret;

	(void)why;
	(void)why_len;
	p = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, "mmap");
	ret = pt_tracker_open(&t, p, len, NULL);
	if (!ret)
		pt_tracker_close(t);
	munmap(p, len);
	CHECK(ret == -EFAULT, "tracker on a read-only range: %d", ret);
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "newest-segment-deleted", newest_segment_deleted },
		{ "every-segment-deleted", every_segment_deleted },
		{ "newest-segment-truncated", newest_segment_truncated },
		{ "zeroed-image-table", zeroed_image_table },
		{ "foreign-image", foreign_image },
		{ "foreign-segment", foreign_segment },
		{ "fifo-image", fifo_image },
		{ "fifo-segment", fifo_segment },
		{ "fifo-state", fifo_state },
		{ "replica-refuses-open-dir", replica_refuses_open_dir },
		{ "absurd-options", absurd_options },
		{ "tracker-read-only", tracker_read_only },
	};

	t_tmpdir_make(ref, sizeof(ref), "pt-hostile-ref");
	t_tmpdir_make(other, sizeof(other), "pt-hostile-other");
	t_tmpdir_make(dir, sizeof(dir), "pt-hostile");
	last_hash = make_region(ref, 42);
	make_region(other, 43);
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	t_tmpdir_remove(ref);
	t_tmpdir_remove(other);
	t_tmpdir_remove(dir);
	return t_exit();
}
