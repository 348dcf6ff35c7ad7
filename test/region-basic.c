/* region-basic: create, sync, reopen, epochs, levels, one writer, and the errors of create/open. */
/*
 * Threaded: syncs, waits and checkpoints here meet the writer's log and
 * checkpoint threads (the library's pthread_create), so it runs under TSan.
 */
#include <dirent.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "io.h"

static char dir[128];


static void fresh_dir(void)
{
	if (dir[0])
		t_tmpdir_remove(dir);
	snprintf(dir, sizeof(dir), "/tmp/pt-region-basic-XXXXXX");
	if (!mkdtemp(dir))
		DIE("mkdtemp: %s", strerror(errno));
}

static uint64_t hash(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

#define NPAGES 64

static bool create_sync_reopen(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r, *r2;
	uint64_t h1, h3;
	int64_t e;
	char *m;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	CHECK(pt_region_size(r) == size, "size %zu", pt_region_size(r));
	CHECK(pt_region_epoch(r) == 0, "fresh epoch %lld", (long long)pt_region_epoch(r));
	m = pt_region_base(r);
	for (size_t i = 0; i < size; i++)
		CHECK(m[i] == 0, "fresh memory not zero at %zu", i);

	/* An empty first sync still makes epoch 1; another returns it again. */
	e = pt_region_sync(r);
	CHECK(e == 1, "first sync %lld", (long long)e);
	e = pt_region_sync(r);
	CHECK(e == 1, "empty sync %lld", (long long)e);

	m[0] = 1;
	m[5 * ps + 17] = 2;
	e = pt_region_sync(r);
	CHECK(e == 2, "sync %lld", (long long)e);
	h1 = hash(m, size);
	/* Default policy: durable when sync returns. */
	CHECK(pt_region_wait(r, 2, PT_LEVEL_DURABLE, 0) == 0, "epoch 2 not durable after sync");
	for (int p = 0; p < NPAGES; p += 3)
		m[p * ps + 100] = (char)p;
	e = pt_region_sync(r);
	CHECK(e == 3, "sync %lld", (long long)e);
	h3 = hash(m, size);
	CHECK(h3 != h1, "hash did not change");
	CHECK(pt_region_wait(r, 4, PT_LEVEL_PUBLISHED, 0) == -EINVAL, "wait for a future epoch");
	CHECK(pt_region_wait(r, 3, 7, 0) == -EINVAL, "wait for a bad level");
	ret = pt_region_wait(r, 2, PT_LEVEL_CHECKPOINTED, 5000);
	CHECK(ret == 0, "checkpoint wait: %s", strerror(-ret));

	/* One writer per region. */
	ret = pt_region_open(&r2, dir, NULL);
	CHECK(ret == -EBUSY, "second writer: %d", ret);
	ret = pt_region_create(&r2, dir, size, NULL);
	CHECK(ret == -EBUSY || ret == -EEXIST, "create over an open region: %d", ret);

	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	ret = pt_region_create(&r2, dir, size, NULL);
	CHECK(ret == -EEXIST, "create over a region: %d", ret);

	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == 0, "reopen: %s", strerror(-ret));
	CHECK(pt_region_epoch(r) == 3, "reopened at epoch %lld", (long long)pt_region_epoch(r));
	CHECK(pt_region_size(r) == size, "reopened size %zu", pt_region_size(r));
	m = pt_region_base(r);
	CHECK(hash(m, size) == h3, "reopened memory differs");
	/* Writing on after a reopen continues the history. */
	m[63 * ps] = 9;
	e = pt_region_sync(r);
	CHECK(e == 4, "sync after reopen %lld", (long long)e);
	h3 = hash(m, size);
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == 0, "reopen: %s", strerror(-ret));
	CHECK(pt_region_epoch(r) == 4 && hash(pt_region_base(r), size) == h3, "second reopen");
	pt_region_close(r);
	return true;
}

static bool group_commit(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .durability = PT_DURABLE_NONE };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r;
	int64_t e = 0;
	char *m;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	for (int i = 0; i < 20; i++) {
		m[(i % NPAGES) * ps] = (char)(i + 1);
		e = pt_region_sync(r);
		CHECK(e == i + 1, "sync %d gave %lld", i, (long long)e);
	}
	ret = pt_region_wait(r, (uint64_t)e, PT_LEVEL_PUBLISHED, 5000);
	CHECK(ret == 0, "wait published: %s", strerror(-ret));
	ret = pt_region_wait(r, (uint64_t)e, PT_LEVEL_DURABLE, 5000);
	CHECK(ret == 0, "wait durable: %s", strerror(-ret));
	e = pt_region_checkpoint(r);
	CHECK(e == 20, "checkpoint gave %lld", (long long)e);
	ret = pt_region_wait(r, 20, PT_LEVEL_CHECKPOINTED, 0);
	CHECK(ret == 0, "checkpointed: %s", strerror(-ret));
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	ret = pt_region_open(&r, dir, NULL);
	CHECK(ret == 0 && pt_region_epoch(r) == 20, "reopen: %d epoch %lld", ret,
	      (long long)(ret ? 0 : pt_region_epoch(r)));
	m = pt_region_base(r);
	for (int i = 0; i < 20; i++)
		CHECK(m[(i % NPAGES) * ps] == (char)(i + 1), "page %d", i);
	pt_region_close(r);
	return true;
}

static bool bad_input(char *why, size_t why_len)
{
	struct pt_region_opts bad = { .sz = sizeof(bad), .durability = 99 };
	struct pt_region *r;
	char path[256];
	int ret, fd;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, t_page_size() + 1, NULL);
	CHECK(ret == -EINVAL, "odd size: %d", ret);
	ret = pt_region_create(&r, dir, 0, NULL);
	CHECK(ret == -EINVAL, "zero size: %d", ret);
	ret = pt_region_create(&r, dir, t_page_size(), &bad);
	CHECK(ret == -EINVAL, "bad durability: %d", ret);
	ret = pt_region_open(&r, dir, NULL);
	CHECK(ret == -EMEDIUMTYPE, "empty directory: %d", ret);
	snprintf(path, sizeof(path), "%s/lock", dir);
	CHECK(access(path, F_OK) && errno == ENOENT, "opening an empty directory left a lock file");
	snprintf(path, sizeof(path), "%s/missing", dir);
	ret = pt_region_open(&r, path, NULL);
	CHECK(ret == -ENOENT, "missing directory: %d", ret);
	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	ret = pt_region_open(&r, path, NULL);
	CHECK(ret == -ENOTDIR, "a file: %d", ret);
	unlink(path);
	chmod(dir, 0777);
	ret = pt_region_create(&r, dir, t_page_size(), NULL);
	CHECK(ret == -EPERM, "world-writable directory: %d", ret);
	chmod(dir, 0700);
	return true;
}

/* opts.address: the region at the same address on every open. */
static bool fixed_address(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t size = NPAGES * t_page_size();
	struct pt_region *r;
	void *hole, *taken;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	hole = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(hole != MAP_FAILED, "mmap");
	munmap(hole, size);
	o.address = hole;
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0 && pt_region_base(r) == hole, "create at %p: %d", hole, ret);
	*(void **)pt_region_base(r) = hole;
	CHECK(pt_region_sync(r) == 1, "sync");
	pt_region_close(r);
	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == 0 && pt_region_base(r) == hole && *(void **)hole == hole, "reopen: %d", ret);
	pt_region_close(r);
	taken = mmap(hole, t_page_size(), PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		     -1, 0);
	CHECK(taken == hole, "mmap at %p", hole);
	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == -EEXIST, "open over a taken address: %d", ret);
	munmap(taken, t_page_size());
	return true;
}

/* A replica that cannot map the writer's staging memory (here: the inode
 * number the state block gives does not match) follows through the log
 * file; and one that can, through the staging memory. */
static bool staging_unreachable(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .durability = PT_DURABLE_NONE };
	size_t size = NPAGES * t_page_size();
	struct pt_replica *rep;
	struct pt_region *r;
	struct pt_state *st;
	char p[512];
	int64_t e;
	int fd, ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %d", ret);
	snprintf(p, sizeof(p), "%s/state", dir);
	fd = open(p, O_RDWR);
	CHECK(fd >= 0, "state");
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	CHECK(st != MAP_FAILED && st->staging_bytes, "the writer shares no staging memory");
	st->staging_ino ^= 1;
	ret = pt_replica_open(&rep, dir, NULL);
	CHECK(ret == 0, "replica: %d", ret);
	for (int i = 1; i <= 5; i++) {
		((char *)pt_region_base(r))[i * t_page_size()] = (char)i;
		e = pt_region_sync(r);
		CHECK(e == i, "sync %d", i);
	}
	e = pt_replica_refresh(rep, 5000);
	while (e >= 0 && e < 5)
		e = pt_replica_refresh(rep, 5000);
	CHECK(e == 5 && !memcmp(pt_replica_base(rep), pt_region_base(r), size), "replica at %lld",
	      (long long)e);
	pt_replica_close(rep);
	munmap(st, sizeof(*st));
	pt_region_close(r);
	return true;
}

/* An fdatasync that blocks until released, to hold the log thread in it. */
static int fsync_entered, fsync_release;

static int slow_fdatasync(int fd)
{
	__atomic_store_n(&fsync_entered, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&fsync_release, __ATOMIC_SEQ_CST))
		usleep(1000);
	return pt_io_system.fdatasync(fd);
}

/*
 * Publication never waits for the disk: with the log thread held inside an
 * fdatasync, a new epoch is still published (to this process and to a
 * replica, from staging memory).  Once the log thread did both the write
 * and the publish, so replicas waited behind its fdatasyncs.
 */
static bool publish_during_fsync(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .durability = PT_DURABLE_NONE,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_io_ops io = pt_io_system;
	struct pt_replica *rep = NULL;
	struct pt_region *r;
	bool ok = false;
	int64_t e1, e2;
	char *m;
	int ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %d", ret);
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret) {
		pt_region_close(r);
		CHECK(false, "replica: %d", ret);
	}
	m = pt_region_base(r);
	io.fdatasync = slow_fdatasync;
	__atomic_store_n(&fsync_entered, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&fsync_release, 0, __ATOMIC_SEQ_CST);
	pt_io_set(&io);
	m[ps] = 1;
	e1 = pt_region_sync(r);
	/* Ask for durability: the log thread goes into the held fdatasync. */
	pt_region_wait(r, (uint64_t)e1, PT_LEVEL_DURABLE, 0);
	for (int i = 0; i < 5000 && !__atomic_load_n(&fsync_entered, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	if (!__atomic_load_n(&fsync_entered, __ATOMIC_SEQ_CST)) {
		printf("    the log thread never called fdatasync\n");
		goto out;
	}
	m[2 * ps] = 2;
	e2 = pt_region_sync(r);
	ret = pt_region_wait(r, (uint64_t)e2, PT_LEVEL_PUBLISHED, 5000);
	if (e2 != e1 + 1 || ret) {
		printf("    epoch %lld not published while the log thread is in fdatasync: %s\n",
		       (long long)e2, strerror(-ret));
		goto out;
	}
	if (pt_replica_refresh(rep, 5000) != e2 ||
	    memcmp(pt_replica_base(rep), m, size)) {
		printf("    the replica did not reach epoch %lld during the fdatasync\n", (long long)e2);
		goto out;
	}
	ok = true;
out:
	__atomic_store_n(&fsync_release, 1, __ATOMIC_SEQ_CST);
	if (pt_region_wait(r, pt_region_epoch(r), PT_LEVEL_DURABLE, 10000))
		ok = false;
	pt_replica_close(rep);
	pt_region_close(r);
	pt_io_set(NULL);
	return ok;
}

/* The library's threads are SCHED_BATCH, so that waking one in sync does
 * not preempt the writer on its CPU, and named, so that an application
 * can find them. */
static bool threads_batch(char *why, size_t why_len)
{
	pid_t before[64], after[64];
	struct pt_region *r;
	int nb, na, ours = 0, named = 0, ret;

	(void)why;
	(void)why_len;
	fresh_dir();
	nb = t_tasks(before, 64);
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), NULL);
	CHECK(ret == 0, "create: %d", ret);
	na = t_tasks(after, 64);
	for (int i = 0; i < na; i++) {
		bool old = false;
		char name[32];
		int policy;

		for (int j = 0; j < nb; j++)
			old |= after[i] == before[j];
		if (old)
			continue;
		policy = sched_getscheduler(after[i]);
		CHECK(policy == SCHED_BATCH, "library thread %d has policy %d", (int)after[i], policy);
		t_task_name(after[i], name, sizeof(name));
		named += !strcmp(name, "pt-seal") + 2 * !strcmp(name, "pt-log") +
			 4 * !strcmp(name, "pt-checkpoint");
		ours++;
	}
	pt_region_close(r);
	CHECK(ours >= 3, "%d new threads (seal, log, checkpoint expected)", ours);
	CHECK(named == 7, "the new threads are not named pt-seal, pt-log, pt-checkpoint (%d)",
	      named);
	return true;
}

/* pt_region_threads: the ids of the seal, log and checkpoint threads, in
 * that order, threads of this process with those names; its errors. */
static bool thread_ids(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	static const char *const names[3] = { "pt-seal", "pt-log", "pt-checkpoint" };
	pid_t tids[4] = { -1, -1, -1, -1 }, all[64];
	struct pt_region *r;
	int n, na, ret, status;
	pid_t child;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), NULL);
	CHECK(ret == 0, "create: %d", ret);
	n = pt_region_threads(r, tids, 4);
	na = t_tasks(all, 64);
	for (int i = 0; i < n && i < 3; i++) {
		char name[32];
		bool mine = false;

		for (int j = 0; j < na; j++)
			mine |= all[j] == tids[i];
		t_task_name(tids[i], name, sizeof(name));
		if (!mine || strcmp(name, names[i])) {
			pt_region_close(r);
			CHECK(false, "thread %d: id %d, %s, named %s (%s expected)", i, (int)tids[i],
			      mine ? "of this process" : "not of this process", name, names[i]);
		}
	}
	CHECK(n == 3 && tids[3] == -1, "%d threads, the fourth slot %d (3, -1 expected)", n,
	      (int)tids[3]);
	tids[0] = tids[1] = -1;
	n = pt_region_threads(r, tids, 1);
	CHECK(n == 3 && tids[0] > 0 && tids[1] == -1, "n 1: %d, ids %d %d", n, (int)tids[0],
	      (int)tids[1]);
	n = pt_region_threads(r, NULL, 0);
	CHECK(n == 3, "tids NULL, n 0: %d", n);
	n = pt_region_threads(r, NULL, 2);
	CHECK(n == -EINVAL, "tids NULL, n 2: %d", n);
	n = pt_region_threads(NULL, tids, 4);
	CHECK(n == -EINVAL, "region NULL: %d", n);
	child = fork();
	CHECK(child >= 0, "fork: %s", strerror(errno));
	if (!child)
		_exit(pt_region_threads(r, tids, 4) == -ECHILD ? 0 : 1);
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && !WEXITSTATUS(status),
	      "a forked child was not told -ECHILD (status %#x)", status);
	pt_region_close(r);

	fresh_dir();
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &o);
	CHECK(ret == 0, "create without the checkpoint thread: %d", ret);
	n = pt_region_threads(r, tids, 4);
	pt_region_close(r);
	CHECK(n == 2, "without the checkpoint thread: %d threads (2 expected)", n);
	return true;
}

/*
 * What a fork of the writer copies: not the staging memory (MADV_DONTFORK:
 * after a fork a private ring would be copy-on-write and every sync would
 * fault on it), but the region itself, which a forked child may read.
 * VmFlags "dc" in smaps is VM_DONTCOPY.
 */
static bool fork_flags(char *why, size_t why_len)
{
	struct pt_region *r;
	int staging = -1, region = -1, ret;
	char line[512];
	int which = 0;	/* 1: staging mapping, 2: region mapping */
	FILE *f;

	(void)why;
	(void)why_len;
	fresh_dir();
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), NULL);
	CHECK(ret == 0, "create: %d", ret);
	f = fopen("/proc/self/smaps", "r");
	CHECK(f, "smaps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strchr(line, ' ') && !strstr(line, ":  ")) {
			which = strstr(line, "memfd:pagetrack-staging") ? 1 :
				strstr(line, "memfd:pagetrack-region") ? 2 : 0;
			continue;
		}
		if (!strncmp(line, "VmFlags:", 8) && which == 1)
			staging = strstr(line, " dc") != NULL;
		if (!strncmp(line, "VmFlags:", 8) && which == 2)
			region = strstr(line, " dc") != NULL;
	}
	fclose(f);
	pt_region_close(r);
	CHECK(staging == 1, "staging memory %s", staging < 0 ? "not found" : "is copied by fork");
	CHECK(region == 0, "region memory %s", region < 0 ? "not found" : "is not inherited by fork");
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "create-sync-reopen", create_sync_reopen },
		{ "group-commit", group_commit },
		{ "bad-input", bad_input },
		{ "fixed-address", fixed_address },
		{ "staging-unreachable", staging_unreachable },
		{ "threads-batch", threads_batch },
		{ "thread-ids", thread_ids },
		{ "fork-flags", fork_flags },
		{ "publish-during-fsync", publish_during_fsync },
	};

	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	if (dir[0])
		t_tmpdir_remove(dir);
	return t_exit();
}
