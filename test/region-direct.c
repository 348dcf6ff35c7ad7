/* region-direct: PT_REGION_DIRECT_LOG writes every record through an O_DIRECT descriptor, in each durability policy, records larger than the staging memory too; replicas, a checkpoint, a reopen and verify read them back; a file system that refuses O_DIRECT when the segment is opened, or at a write, costs a warning and nothing else; an open that fails for want of descriptors costs that segment only. */
#include <xxhash.h>

#include "harness.h"
#include "io.h"

#define NPAGES		512
#define SYNCS		60
#define MAX_FDS		64

static char dir[128];
static size_t ps;

/* What the hooked file layer saw. */
static bool is_direct[MAX_FDS];		/* fd opened with O_DIRECT */
static unsigned direct_writes;		/* writes through such an fd */
static unsigned buffered_record_writes;	/* other writes into a segment, longer than a page */
static bool refuse_open;		/* O_DIRECT opens fail with EINVAL */
static bool emfile_once;		/* the next O_DIRECT open fails with EMFILE */
static bool refuse_write;		/* the next O_DIRECT write fails with EINVAL */
static unsigned refused;		/* EINVALs given */
static unsigned warnings;		/* library warnings naming O_DIRECT */

static int hooked_openat(int dirfd, const char *name, int flags, mode_t mode)
{
	int fd;

	if ((flags & O_DIRECT) && refuse_open) {
		refused++;
		return -EINVAL;
	}
	if ((flags & O_DIRECT) && emfile_once) {
		emfile_once = false;
		refused++;
		return -EMFILE;
	}
	fd = pt_io_system.openat(dirfd, name, flags, mode);
	if (fd >= 0 && fd < MAX_FDS)
		is_direct[fd] = flags & O_DIRECT;
	return fd;
}

static int hooked_close(int fd)
{
	if (fd >= 0 && fd < MAX_FDS)
		is_direct[fd] = false;
	return pt_io_system.close(fd);
}

static bool in_segment(int fd)
{
	char link[64], target[512];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = 0;
	return strstr(target, "/log-") != NULL;
}

static ssize_t hooked_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	if (fd >= 0 && fd < MAX_FDS && is_direct[fd]) {
		if (refuse_write) {
			refuse_write = false;
			refused++;
			return -EINVAL;
		}
		direct_writes++;
	} else if (len > ps && in_segment(fd)) {
		buffered_record_writes++;
	}
	return pt_io_system.pwrite(fd, buf, len, off);
}

static void count_warning(enum pt_log_level level, const char *msg, void *arg)
{
	(void)arg;
	if (level <= PT_LOG_WARN && strstr(msg, "O_DIRECT"))
		__atomic_add_fetch(&warnings, 1, __ATOMIC_SEQ_CST);
}

static void reset_counts(void)
{
	direct_writes = buffered_record_writes = refused = 0;
	__atomic_store_n(&warnings, 0, __ATOMIC_SEQ_CST);
}

/* Whether the file system under dir takes O_DIRECT writes of a page. */
static bool direct_works(char *why, size_t why_len)
{
	char path[256];
	void *page = NULL;
	bool ok = false;
	int fd;

	snprintf(path, sizeof(path), "%s/probe", dir);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, why_len, "the file system of %s opens nothing O_DIRECT: %s", dir,
			 strerror(errno));
	} else if (posix_memalign(&page, ps, ps)) {
		snprintf(why, why_len, "out of memory");
	} else {
		memset(page, 1, ps);
		ok = pwrite(fd, page, ps, 0) == (ssize_t)ps;
		if (!ok)
			snprintf(why, why_len, "the file system of %s takes no O_DIRECT write: %s",
				 dir, strerror(errno));
	}
	free(page);
	if (fd >= 0)
		close(fd);
	unlink(path);
	return ok;
}

/*
 * SYNCS syncs of 1 to 60 random pages, and of 300 for every 20th (more
 * than the staging memory holds: such a record has memory of its own), a
 * replica following
 * each, a checkpoint every 10, segments small enough to roll and be
 * recycled; then a replica that did not follow, a reopen and verify.
 */
static bool run_region(enum pt_durability durability, bool replica_each, int direct_log)
{
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	struct pt_region_opts o = {
		.sz = sizeof(o), .durability = durability, .segment_bytes = 2 << 20,
		.retain_bytes = 1, .staging_bytes = 256 * ps,
		.flags = PT_REGION_NO_CHECKPOINT_THREAD | PT_REGION_DIRECT_LOG,
	};
	struct pt_replica *follow = NULL, *late = NULL;
	uint64_t seed = 7 + (uint64_t)durability, hash;
	struct pt_region *r;
	int64_t e = 0;
	int ret;

	t_tmpdir_empty(dir);
	ret = pt_region_create(&r, dir, NPAGES * ps, &o);
	CHECK(!ret, "create: %s", pt_strerror(ret));
	CHECK(pt_region_sync(r) == 1, "sync 1");
	ret = pt_replica_open(&follow, dir, NULL);
	CHECK(!ret, "replica: %s", pt_strerror(ret));
	ret = pt_replica_open(&late, dir, NULL);
	CHECK(!ret, "replica: %s", pt_strerror(ret));
	for (int i = 2; i <= SYNCS; i++) {
		int n = 1 + (int)(t_rnd_next(&seed) % 60);

		for (int k = 0; k < n; k++)
			memset((char *)pt_region_base(r) + (t_rnd_next(&seed) % NPAGES) * ps,
			       (int)(t_rnd_next(&seed) | 1), ps);
		/* Every 20th, a record longer than the staging memory. */
		for (int k = 0; i % 20 == 0 && k < 300; k++)
			memset((char *)pt_region_base(r) + (size_t)k * ps, i, ps);
		e = pt_region_sync(r);
		CHECK(e == i, "sync %d: %lld (%s)", i, (long long)e,
		      e < 0 ? pt_strerror((int)e) : "");
		if (replica_each) {
			ret = pt_region_wait(r, e, PT_LEVEL_PUBLISHED, 10000);
			CHECK(!ret, "published %lld: %s", (long long)e, pt_strerror(ret));
			CHECK(pt_replica_refresh(follow, 10000) == e, "replica at %lld", (long long)e);
		}
		if (i % 10 == 0)
			CHECK(pt_region_checkpoint(r) == e, "checkpoint at %lld", (long long)e);
	}
	ret = pt_region_wait(r, e, PT_LEVEL_DURABLE, 10000);
	CHECK(!ret, "durable %lld: %s", (long long)e, pt_strerror(ret));
	CHECK(!pt_region_stats(r, NULL, &tot) && tot.direct_log == direct_log,
	      "pt_region_stats: direct_log %d, not %d", tot.direct_log, direct_log);
	hash = XXH3_64bits(pt_region_base(r), NPAGES * ps);
	CHECK(pt_replica_refresh(late, 10000) == e &&
	      XXH3_64bits(pt_replica_base(late), NPAGES * ps) == hash,
	      "a replica refreshed at the end differs");
	if (replica_each)
		CHECK(XXH3_64bits(pt_replica_base(follow), NPAGES * ps) == hash,
		      "the replica that followed differs");
	pt_replica_close(follow);
	pt_replica_close(late);
	ret = pt_region_close(r);
	CHECK(!ret, "close: %s", pt_strerror(ret));
	o.flags &= ~PT_REGION_DIRECT_LOG;
	ret = pt_region_open(&r, dir, &o);
	CHECK(!ret, "reopen: %s", pt_strerror(ret));
	CHECK(pt_region_epoch(r) == e && XXH3_64bits(pt_region_base(r), NPAGES * ps) == hash,
	      "reopened at %lld, not %lld with the same memory", (long long)pt_region_epoch(r),
	      (long long)e);
	ret = pt_region_close(r);
	CHECK(!ret, "close: %s", pt_strerror(ret));
	ret = t_verify(dir);
	CHECK(!ret, "verify: %d problems or %s", ret, ret < 0 ? pt_strerror(ret) : "");
	return true;
}

/* Every policy: each record through the O_DIRECT descriptor, none through
 * the page cache, no warning. */
static bool policy(enum pt_durability durability, char *why, size_t why_len)
{
	(void)why;
	(void)why_len;
	reset_counts();
	if (!run_region(durability, true, 1))
		return false;
	CHECK(direct_writes >= SYNCS && !buffered_record_writes && !warnings,
	      "%u writes O_DIRECT (of at least %d records), %u records through the page cache, "
	      "%u warnings", direct_writes, SYNCS, buffered_record_writes, warnings);
	return true;
}

static bool on_sync(char *why, size_t why_len)
{
	return policy(PT_DURABLE_ON_SYNC, why, why_len);
}

static bool background(char *why, size_t why_len)
{
	return policy(PT_DURABLE_BACKGROUND, why, why_len);
}

static bool none(char *why, size_t why_len)
{
	return policy(PT_DURABLE_NONE, why, why_len);
}

static bool refused_at_open(char *why, size_t why_len)
{
	bool ok;

	(void)why;
	(void)why_len;
	reset_counts();
	refuse_open = true;
	ok = run_region(PT_DURABLE_ON_SYNC, false, 0);
	refuse_open = false;
	if (!ok)
		return false;
	CHECK(refused >= 1 && !direct_writes && buffered_record_writes >= SYNCS - 1,
	      "%u opens refused, %u writes O_DIRECT, %u records through the page cache", refused,
	      direct_writes, buffered_record_writes);
	CHECK(warnings == 1, "%u warnings about O_DIRECT, not one", warnings);
	return true;
}

/* Out of descriptors at one open: that segment through the page cache,
 * the next ones O_DIRECT again. */
static bool transient_at_open(char *why, size_t why_len)
{
	bool ok;

	(void)why;
	(void)why_len;
	reset_counts();
	emfile_once = true;
	ok = run_region(PT_DURABLE_ON_SYNC, true, 1);
	emfile_once = false;
	if (!ok)
		return false;
	CHECK(refused == 1 && buffered_record_writes >= 1 && direct_writes >= 1,
	      "%u opens failed, %u records through the page cache, %u writes O_DIRECT", refused,
	      buffered_record_writes, direct_writes);
	CHECK(warnings == 1, "%u warnings about O_DIRECT, not one", warnings);
	return true;
}

/* The open succeeds for real here; the refused write is simulated. */
static bool refused_at_write(char *why, size_t why_len)
{
	bool ok;

	(void)why;
	(void)why_len;
	reset_counts();
	refuse_write = true;
	ok = run_region(PT_DURABLE_BACKGROUND, true, 0);
	refuse_write = false;
	if (!ok)
		return false;
	CHECK(refused == 1 && buffered_record_writes >= SYNCS - 1,
	      "%u writes refused, %u records through the page cache", refused,
	      buffered_record_writes);
	CHECK(warnings == 1, "%u warnings about O_DIRECT, not one", warnings);
	return true;
}

int main(void)
{
	/* needs: the cell needs a file system that takes O_DIRECT. */
	static const struct {
		struct t_cell c;
		bool needs;
	} cells[] = {
		{ { "on-sync: records O_DIRECT", on_sync }, true },
		{ { "background: records O_DIRECT", background }, true },
		{ { "none: records O_DIRECT", none }, true },
		{ { "refused at the open: the page cache, warned once", refused_at_open }, false },
		{ { "out of descriptors once: one segment buffered", transient_at_open }, true },
		{ { "refused at a write: written again, warned once", refused_at_write }, true },
	};
	struct pt_io_ops io = pt_io_system;
	char no_direct[400];
	bool direct;

	ps = t_page_size();
	printf("region-direct: the log written with O_DIRECT\n");
	t_tmpdir_make(dir, sizeof(dir), "pt-direct");
	direct = direct_works(no_direct, sizeof(no_direct));
	pt_set_log(count_warning, PT_LOG_WARN, NULL);
	io.openat = hooked_openat;
	io.close = hooked_close;
	io.pwrite = hooked_pwrite;
	pt_io_set(&io);

	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
		if (cells[i].needs && !direct)
			t_cell_report(cells[i].c.name, T_SKIP, no_direct);
		else
			t_run_cell(&cells[i].c);
	}

	pt_io_set(NULL);
	pt_set_log(NULL, PT_LOG_ERROR, NULL);
	t_tmpdir_remove(dir);
	return t_exit();
}
