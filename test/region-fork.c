/* region-fork: a child forked from the writer can neither sync nor harm the parent's region. */
/*
 * The child of a writer has none of the writer's threads and shares its
 * state block and lock: sync, wait and checkpoint must refuse (-ECHILD),
 * close must only drop the child's copies, and the parent must go on
 * syncing, durably, with its state untouched.  Regression test for a
 * close in the child that wrote the parent's state block and joined
 * threads the child does not have.
 */
#include <sys/wait.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES 32

static int child(struct pt_region *r)
{
	char *m = pt_region_base(r);

	/* The child's copy of the memory is readable and writable. */
	m[0] = 'c';
	if (pt_region_sync(r) != -ECHILD) {
		printf("    child: sync did not refuse\n");
		return 1;
	}
	if (pt_region_wait(r, 1, PT_LEVEL_DURABLE, 0) != -ECHILD) {
		printf("    child: wait did not refuse\n");
		return 1;
	}
	if (pt_region_checkpoint(r) != -ECHILD) {
		printf("    child: checkpoint did not refuse\n");
		return 1;
	}
	return pt_region_close(r) == 0 ? 0 : 1;
}

static bool run(char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct pt_region *r;
	uint64_t h;
	int64_t e, e2;
	pid_t pid;
	char dir[128];
	char *m;
	int st, ret;

	t_tmpdir_make(dir, sizeof(dir), "pt-region-fork");
	ret = pt_region_create(&r, dir, NPAGES * ps, NULL);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	memset(m, 1, 3 * ps);
	e = pt_region_sync(r);
	CHECK(e >= 1, "sync: %s", strerror((int)-e));

	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(child(r));
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status %#x)", st);

	/* The parent goes on, durably (the default policy). */
	m[5 * ps] = 5;
	m[0] = 'p';
	e2 = pt_region_sync(r);
	CHECK(e2 == e + 1, "sync after the child: %lld, want %lld", (long long)e2, (long long)e + 1);
	ret = pt_region_wait(r, (uint64_t)e2, PT_LEVEL_DURABLE, 5000);
	CHECK(ret == 0, "wait: %s", strerror(-ret));
	h = XXH3_64bits(m, NPAGES * ps);
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));

	/* Reopened, the region holds the parent's data, not the child's. */
	ret = pt_region_open(&r, dir, NULL);
	CHECK(ret == 0, "reopen: %s", strerror(-ret));
	CHECK(pt_region_epoch(r) == e2, "recovered epoch %lld, want %lld",
	      (long long)pt_region_epoch(r), (long long)e2);
	m = pt_region_base(r);
	CHECK(XXH3_64bits(m, NPAGES * ps) == h && m[0] == 'p', "recovered memory differs");
	pt_region_close(r);
	t_tmpdir_remove(dir);
	(void)why;
	(void)why_len;
	return true;
}

int main(void)
{
	char why[256] = "";

	t_cell_report("fork of the writer", run(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	return t_exit();
}
