/* replica-catchup: a replica behind the retained log copies only the changed pages from the image, and from the log only the newest copy of each; history changes give -ESTALE; mapping at the writer's address. */
#include <dirent.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES 512

static char dir[128];


static void fresh_dir(void)
{
	if (dir[0])
		t_tmpdir_remove(dir);
	snprintf(dir, sizeof(dir), "/tmp/pt-replica-catchup-XXXXXX");
	if (!mkdtemp(dir))
		DIE("mkdtemp: %s", strerror(errno));
}

static const struct pt_region_opts small_log = {
	.sz = sizeof(struct pt_region_opts), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
	.segment_bytes = 64 << 10, .retain_bytes = 1, .durability = PT_DURABLE_NONE,
};

/* Count the segment files in dir. */
static int segments(void)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	int n = 0;

	while (dp && (de = readdir(dp)))
		n += !strncmp(de->d_name, "log-", 4);
	if (dp)
		closedir(dp);
	return n;
}

static bool catchup_counts(enum pt_replica_mode mode, char *why, size_t why_len)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .mode = mode, .name = "test-catchup" };
	size_t ps = t_page_size(), size = NPAGES * ps;
	uint8_t changed[NPAGES] = { 0 };
	uint64_t seed = 42, distinct = 0, e0;
	struct pt_replica *rep;
	struct pt_region *r;
	int64_t e;
	char *m;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	t_shm_remove("test-catchup");
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	/* Some history before the replica starts. */
	for (int i = 0; i < NPAGES; i += 2)
		m[(size_t)i * ps] = 1;
	e = pt_region_sync(r);
	CHECK(e == 1, "sync %lld", (long long)e);
	ret = pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, 5000);
	CHECK(ret == 0, "publish: %s", strerror(-ret));
	ret = pt_replica_open(&rep, dir, &ro);
	CHECK(ret == 0, "replica open: %s", strerror(-ret));
	CHECK(pt_replica_epoch(rep) == 1, "replica at %llu", (unsigned long long)pt_replica_epoch(rep));
	/* Epoch 2 changes page 0; the replica follows it through the log.  A
	 * shared replica then has one copy at epoch 2 and one at epoch 1. */
	m[0] = 2;
	e = pt_region_sync(r);
	CHECK(e == 2 && pt_region_wait(r, 2, PT_LEVEL_PUBLISHED, 5000) == 0, "sync 2");
	e = pt_replica_refresh(rep, 1000);
	CHECK(e == 2 && pt_replica_image_pages(rep) == 0, "refresh to 2: %lld", (long long)e);
	if (mode == PT_REPLICA_SHARED) {
		changed[0] = 1;
		distinct = 1;
	}
	e0 = mode == PT_REPLICA_SHARED ? 1 : 2;
	/* 50 epochs that change 10% of the pages, some several times. */
	for (int i = 1; i < 50; i++) {
		for (int w = 0; w < 3; w++) {
			uint64_t p = t_rnd_next(&seed) % (NPAGES / 10);

			m[p * ps + 8] = (char)(i + w + 2);
			if (!changed[p]++)
				distinct++;
		}
		e = pt_region_sync(r);
		CHECK(e == i + 2, "sync %lld", (long long)e);
	}
	e = pt_region_checkpoint(r);
	CHECK(e == 51, "checkpoint at %lld", (long long)e);
	CHECK(segments() <= 2, "%d segments left after the checkpoint", segments());
	/* And some log after the image. */
	m[(NPAGES - 1) * ps] = 7;
	e = pt_region_sync(r);
	CHECK(e == 52, "sync %lld", (long long)e);
	ret = pt_region_wait(r, 52, PT_LEVEL_PUBLISHED, 5000);
	CHECK(ret == 0, "publish: %s", strerror(-ret));

	e = pt_replica_refresh(rep, 1000);
	CHECK(e == 52, "refresh gave %lld", (long long)e);
	CHECK(pt_replica_image_pages(rep) == distinct,
	      "caught up from epoch %llu copying %llu pages from the image; %llu changed",
	      (unsigned long long)e0, (unsigned long long)pt_replica_image_pages(rep),
	      (unsigned long long)distinct);
	CHECK(!memcmp(pt_replica_base(rep), m, size), "replica differs from the writer");
	printf("    %s: %llu of %d pages copied from the image\n",
	       mode == PT_REPLICA_SHARED ? "shared" : "private",
	       (unsigned long long)distinct, NPAGES);
	pt_replica_close(rep);
	pt_region_close(r);
	t_shm_remove("test-catchup");
	return true;
}

static bool private_catchup(char *why, size_t why_len)
{
	return catchup_counts(PT_REPLICA_PRIVATE, why, why_len);
}

static bool shared_catchup(char *why, size_t why_len)
{
	return catchup_counts(PT_REPLICA_SHARED, why, why_len);
}

static bool recreated(char *why, size_t why_len)
{
	size_t size = 16 * t_page_size();
	struct pt_replica *rep;
	struct pt_region *r;
	int64_t e;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	((char *)pt_region_base(r))[0] = 1;
	CHECK(pt_region_sync(r) == 1, "sync");
	ret = pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, 5000);
	CHECK(ret == 0, "wait");
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0, "replica: %s", strerror(-ret));
	pt_region_close(r);
	t_tmpdir_remove(dir);
	CHECK(mkdir(dir, 0700) == 0, "mkdir");
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create again: %s", strerror(-ret));
	((char *)pt_region_base(r))[0] = 2;
	CHECK(pt_region_sync(r) == 1, "sync");
	pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, 5000);
	e = pt_replica_refresh(rep, 0);
	CHECK(e == -ESTALE, "refresh after the region was recreated: %lld", (long long)e);
	pt_replica_close(rep);
	pt_region_close(r);
	return true;
}

/* The writer loses epochs the replica applied (as a power loss would):
 * the replica must not follow the new path silently. */
static bool lost_epochs(char *why, size_t why_len)
{
	struct pt_region_opts o = small_log;
	size_t ps = t_page_size(), size = 16 * ps;
	struct pt_replica *rep;
	struct pt_region *r;
	char seg[300];
	struct stat st;
	int64_t e;
	int ret;

	(void)why;
	(void)why_len;
	o.segment_bytes = 1 << 20;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	for (int i = 0; i < 5; i++) {
		((char *)pt_region_base(r))[(size_t)i * ps] = (char)(i + 1);
		e = pt_region_sync(r);
		CHECK(e == i + 1, "sync");
	}
	pt_region_wait(r, 5, PT_LEVEL_DURABLE, 5000);
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0 && pt_replica_epoch(rep) == 5, "replica: %d", ret);
	pt_region_close(r);
	/* Cut the last record (epoch 5: a header page and one data page). */
	snprintf(seg, sizeof(seg), "%s/log-0000000000000001.seg", dir);
	CHECK(stat(seg, &st) == 0, "stat %s", seg);
	CHECK(truncate(seg, st.st_size - (off_t)(2 * ps)) == 0, "truncate");
	/* Epoch 5 was durable: the writer comes back without it only when
	 * told to accept the loss. */
	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == -ENOTRECOVERABLE, "reopen without accepting the loss: %d", ret);
	o.flags |= PT_REGION_ACCEPT_LOSS;
	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == 0 && pt_region_epoch(r) == 4, "reopen: %d, epoch %lld", ret,
	      ret ? 0ll : (long long)pt_region_epoch(r));
	e = pt_replica_refresh(rep, 0);
	CHECK(e == -ESTALE, "replica ahead of the writer: %lld", (long long)e);
	/* Even once the writer is past it again on another path. */
	((char *)pt_region_base(r))[15 * ps] = 9;
	CHECK(pt_region_sync(r) == 5, "sync");
	((char *)pt_region_base(r))[14 * ps] = 9;
	CHECK(pt_region_sync(r) == 6, "sync");
	CHECK(pt_region_wait(r, 6, PT_LEVEL_PUBLISHED, 5000) == 0, "publish");
	e = pt_replica_refresh(rep, 0);
	CHECK(e == -ESTALE, "replica on a lost path: %lld", (long long)e);
	pt_replica_close(rep);
	/* A new replica follows the new path. */
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0 && pt_replica_epoch(rep) == 6, "new replica: %d", ret);
	CHECK(!memcmp(pt_replica_base(rep), pt_region_base(r), size), "new replica differs");
	pt_replica_close(rep);
	pt_region_close(r);
	return true;
}

/* A clean restart of the writer, then a checkpoint that drops the record of
 * the replica's epoch: the replica goes on, through the image. */
static bool writer_restart(char *why, size_t why_len)
{
	size_t ps = t_page_size(), size = 16 * ps;
	struct pt_replica *rep;
	struct pt_region *r;
	int64_t e;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	for (int i = 1; i <= 10; i++) {
		((char *)pt_region_base(r))[(size_t)(i % 16) * ps] = (char)i;
		CHECK(pt_region_sync(r) == i, "sync");
	}
	CHECK(pt_region_wait(r, 10, PT_LEVEL_PUBLISHED, 5000) == 0, "publish");
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0 && pt_replica_epoch(rep) == 10, "replica: %d", ret);
	pt_region_close(r);
	ret = pt_region_open(&r, dir, &small_log);
	CHECK(ret == 0 && pt_region_epoch(r) == 10, "reopen: %d", ret);
	for (int i = 11; i <= 20; i++) {
		((char *)pt_region_base(r))[(size_t)(i % 16) * ps + 1] = (char)i;
		CHECK(pt_region_sync(r) == i, "sync");
	}
	CHECK(pt_region_checkpoint(r) == 20, "checkpoint");
	e = pt_replica_refresh(rep, 1000);
	CHECK(e == 20, "replica after the writer's restart: %lld", (long long)e);
	CHECK(!memcmp(pt_replica_base(rep), pt_region_base(r), size), "replica differs");
	pt_replica_close(rep);
	pt_region_close(r);
	return true;
}

static bool at_writer_address(char *why, size_t why_len)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_AT_WRITER_ADDRESS };
	size_t size = 16 * t_page_size();
	struct pt_region *r;
	void *base;
	pid_t pid;
	int st, ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	base = pt_region_base(r);
	*(void **)base = base;	/* a pointer into the region, stored in it */
	CHECK(pt_region_sync(r) == 1, "sync");
	pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, 5000);
	/* In this process the address is taken by the writer itself. */
	{
		struct pt_replica *rep;

		ret = pt_replica_open(&rep, dir, &ro);
		CHECK(ret == -EEXIST, "address in use: %d", ret);
	}
	/* Fork with the writer's threads idle (epoch 1 durable, nothing
	 * queued): a thread inside the allocator at fork() time leaves its
	 * lock held in the child, which a sanitizer's allocator does not
	 * always survive.  The child is bounded all the same. */
	CHECK(pt_region_wait(r, 1, PT_LEVEL_DURABLE, 5000) == 0, "durable");
	pid = fork();
	if (pid == 0) {
		struct pt_replica *rep;

		alarm(30);
		/* The child has the writer's mapping too: drop it first. */
		munmap(base, size);
		ret = pt_replica_open(&rep, dir, &ro);
		if (ret || pt_replica_base(rep) != base || *(void *const *)pt_replica_base(rep) != base) {
			printf("    child: open %d, base %p, writer's %p\n", ret,
			       ret ? NULL : pt_replica_base(rep), base);
			fflush(stdout);
			_exit(1);
		}
		pt_replica_close(rep);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "replica at the writer's address failed");
	pt_region_close(r);
	return true;
}

/* A shared reader that never refreshes holds back the shared copy, never the
 * writer, and its view does not change under it. */
static bool slow_shared_reader(char *why, size_t why_len)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .mode = PT_REPLICA_SHARED,
				      .name = "test-slow-reader" };
	size_t ps = t_page_size(), size = 16 * ps;
	struct pt_replica *slow, *fast;
	struct pt_region *r;
	char view[64];
	int64_t e;
	char *m;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	t_shm_remove("test-slow-reader");
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	m[0] = 1;
	CHECK(pt_region_sync(r) == 1 && pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, 5000) == 0, "sync");
	ret = pt_replica_open(&slow, dir, &ro);
	CHECK(ret == 0 && pt_replica_epoch(slow) == 1, "slow reader: %d", ret);
	memcpy(view, pt_replica_base(slow), sizeof(view));
	ret = pt_replica_open(&fast, dir, &ro);
	CHECK(ret == 0, "fast reader: %d", ret);
	/* The writer goes on regardless of the readers. */
	for (int i = 2; i <= 30; i++) {
		m[0] = (char)i;
		e = pt_region_sync(r);
		CHECK(e == i, "sync %d gave %lld", i, (long long)e);
	}
	CHECK(pt_region_wait(r, 30, PT_LEVEL_PUBLISHED, 5000) == 0, "publish");
	/* The fast reader gets the other copy once; the copy the slow one
	 * pins can then not be updated: the shared copy stays there. */
	e = pt_replica_refresh(fast, 0);
	CHECK(e == 30, "fast reader at %lld", (long long)e);
	m[0] = 31;
	CHECK(pt_region_sync(r) == 31 && pt_region_wait(r, 31, PT_LEVEL_PUBLISHED, 5000) == 0, "sync");
	e = pt_replica_refresh(fast, 50);
	CHECK(e == 30, "fast reader moved to %lld past a pinned copy", (long long)e);
	CHECK(!memcmp(view, pt_replica_base(slow), sizeof(view)) && ((const char *)pt_replica_base(slow))[0] == 1,
	      "the slow reader's view changed under it");
	/* Once the slow reader moves on (and updates the copy it let go of),
	 * the shared copy follows the writer again. */
	e = pt_replica_refresh(slow, 0);
	CHECK(e == 31, "slow reader refreshed to %lld", (long long)e);
	e = pt_replica_refresh(fast, 1000);
	CHECK(e == 31 && ((const char *)pt_replica_base(fast))[0] == 31, "fast reader at %lld", (long long)e);
	pt_replica_close(slow);
	pt_replica_close(fast);
	pt_region_close(r);
	t_shm_remove("test-slow-reader");
	return true;
}

/* A replica needs no write permission: one running as another user, on a
 * directory and files it may only read, follows the region, and the files
 * are left exactly as they were. */
static bool read_only_replica(char *why, size_t why_len)
{
	size_t size = 16 * t_page_size();
	struct pt_region *r;
	struct stat before, after;
	char p[512];
	pid_t pid;
	int st, ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &small_log);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	for (int i = 1; i <= 4; i++) {
		((char *)pt_region_base(r))[(size_t)i * t_page_size()] = (char)i;
		CHECK(pt_region_sync(r) == i, "sync");
	}
	pt_region_close(r);
	/* Readable by the other user only: files 0400, directory 0500. */
	{
		DIR *dp = opendir(dir);
		struct dirent *de;

		while (dp && (de = readdir(dp))) {
			if (de->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			CHECK(chown(p, 65534, 65534) == 0 && chmod(p, 0400) == 0, "chown %s", p);
		}
		if (dp)
			closedir(dp);
	}
	CHECK(chown(dir, 65534, 65534) == 0 && chmod(dir, 0500) == 0, "chown %s", dir);
	snprintf(p, sizeof(p), "%s/log-0000000000000001.seg", dir);
	CHECK(stat(p, &before) == 0, "stat");
	pid = fork();
	if (pid == 0) {
		struct pt_replica *rep;

		if (setgid(65534) || setuid(65534))
			_exit(2);
		ret = pt_replica_open(&rep, dir, NULL);
		if (ret || pt_replica_epoch(rep) != 4 || ((const char *)pt_replica_base(rep))[3 * t_page_size()] != 3) {
			printf("    replica as nobody: %d, epoch %llu\n", ret,
			       ret ? 0ull : (unsigned long long)pt_replica_epoch(rep));
			fflush(stdout);
			_exit(1);
		}
		pt_replica_close(rep);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "replica without write permission failed (%#x)", st);
	CHECK(stat(p, &after) == 0 && after.st_mtime == before.st_mtime && after.st_size == before.st_size,
	      "the log changed under a replica");
	chmod(dir, 0700);
	chown(dir, 0, 0);
	return true;
}

/*
 * A replica many records behind the writer, none of them left in the
 * writer's staging memory, reads from the log each page's newest copy and
 * the records' heads, nothing else; private and shared alike.
 */
#define HOT_PAGES	40
#define HOT_EPOCHS	30

static bool newest_copies_once(enum pt_replica_mode mode, char *why, size_t why_len)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .mode = mode, .name = "test-newest" };
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	uint64_t read0 = 0, read1 = 0, bound;
	struct pt_replica *rep;
	struct pt_region *r;
	bool counted;
	int ret, same;
	int64_t e;
	char *m;

	(void)why;
	(void)why_len;
	fresh_dir();
	t_shm_remove("test-newest");
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", pt_strerror(ret));
	m = pt_region_base(r);
	/* Every epoch rewrites the hot pages, and one page of its own. */
	for (int ep = 1; ep <= HOT_EPOCHS; ep++) {
		for (size_t p = 0; p < HOT_PAGES; p++)
			memset(m + p * ps, ep + (int)p, ps);
		memset(m + (HOT_PAGES + (size_t)ep) * ps, ep, ps);
		CHECK(pt_region_sync(r) == ep, "sync %d", ep);
	}
	counted = t_thread_read_bytes(&read0);
	ret = pt_replica_open(&rep, dir, &ro);
	counted = counted && t_thread_read_bytes(&read1);
	CHECK(ret == 0, "replica: %s", pt_strerror(ret));
	e = pt_replica_epoch(rep);
	same = !memcmp(pt_replica_base(rep), m, size);
	pt_replica_close(rep);
	pt_region_close(r);
	t_shm_remove("test-newest");
	CHECK(e == HOT_EPOCHS && same, "the replica shows epoch %lld%s", (long long)e,
	      same ? "" : ", not the writer's memory");
	/* A page of head a record, a page a page changed; the state block,
	 * the image's headers and the segments' are less than 64 KiB. */
	bound = (uint64_t)(HOT_EPOCHS + HOT_PAGES + HOT_EPOCHS) * ps + (64u << 10);
	if (!counted)
		printf("    no task I/O accounting in this kernel: the bytes read not counted\n");
	CHECK(!counted || read1 - read0 <= bound, "the replica read %llu bytes, more than %llu: "
	      "superseded copies", (unsigned long long)(read1 - read0), (unsigned long long)bound);
	return true;
}

static bool private_newest(char *why, size_t why_len)
{
	return newest_copies_once(PT_REPLICA_PRIVATE, why, why_len);
}

static bool shared_newest(char *why, size_t why_len)
{
	return newest_copies_once(PT_REPLICA_SHARED, why, why_len);
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "private-newest-copies-once", private_newest },
		{ "shared-newest-copies-once", shared_newest },
		{ "private-catchup-copies-only-changed", private_catchup },
		{ "shared-catchup-copies-only-changed", shared_catchup },
		{ "region-recreated-estale", recreated },
		{ "lost-epochs-estale", lost_epochs },
		{ "writer-restart-continues", writer_restart },
		{ "map-at-writer-address", at_writer_address },
		{ "slow-shared-reader", slow_shared_reader },
		{ "replica-needs-no-write-permission", read_only_replica },
	};

	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
		if (cells[i].fn == read_only_replica && geteuid() != 0) {
			t_cell_report(cells[i].name, T_SKIP, "switching to another user needs root");
			continue;
		}
		t_run_cell(&cells[i]);
	}
	if (dir[0])
		t_tmpdir_remove(dir);
	return t_exit();
}
