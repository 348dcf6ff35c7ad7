/* softdirty-trackers: soft-dirty seed scenario per memory kind, and trackers sharing the process-wide clear. */
/*
 * Writing clear_refs clears the soft-dirty bits of the whole process, so the
 * backend folds every tracker's dirty pages into a private pending set
 * before each clear.  These cells check that no tracker ever loses a write
 * to another's open, reset or collect, that overlapping ranges work, that a
 * tracker whose range vanished before close does not break the others, that
 * dropped pages (MADV_DONTNEED) and read(2) into the range are reported, and
 * that fork leaves the parent's tracking right.
 *
 * Anonymous regions sit between PROT_NONE guard pages: a private mapping
 * created next to a tracked one would merge with it and make the kernel
 * report the whole merged VMA as soft-dirty (a documented false positive),
 * which would blur the exact checks below.
 *
 * With PT_SOFTDIRTY_EMULATE=1 the cells run on a soft-dirty kernel emulated
 * with uffd-wp (test/softdirty-emu.c), as test/softdirty-emulated.sh does.
 */
#include <sys/wait.h>

#include "harness.h"

#define NPAGES 16

static char *guarded_map(size_t len)
{
	size_t pg = t_page_size();
	char *g = mmap(NULL, len + 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (g == MAP_FAILED)
		return NULL;
	if (mprotect(g + pg, len, PROT_READ | PROT_WRITE)) {
		munmap(g, len + 2 * pg);
		return NULL;
	}
	return g + pg;
}

static void guarded_unmap(char *p, size_t len)
{
	munmap(p - t_page_size(), len + 2 * t_page_size());
}

static void touch(char *base, int page, char v)
{
	base[(size_t)page * t_page_size() + 17] = v;
}

/*
 * Collect and compare with the expected pages (a -1-terminated list).  With
 * `exact` false, extra pages are allowed (huge pages, merged VMAs).
 */
static bool expect(struct pt_tracker *t, unsigned int flags, uint64_t npages, const int *want,
		   bool exact, const char *what)
{
	uint8_t map[4096], wanted[4096] = { 0 };
	char why[256] = "";
	int n, nwant = 0;

	if (npages > sizeof(map))
		DIE("expect: %llu pages is too many", (unsigned long long)npages);
	n = t_collect_map(t, flags, map, npages, why, sizeof(why));
	CHECK(n >= 0, "%s: %s", what, why);
	for (; *want >= 0; want++, nwant++)
		wanted[*want] = 1;
	for (uint64_t p = 0; p < npages; p++) {
		CHECK(!wanted[p] || map[p], "%s: page %llu written but not reported (lost write)",
		      what, (unsigned long long)p);
		CHECK(!exact || wanted[p] || !map[p], "%s: page %llu reported but never written",
		      what, (unsigned long long)p);
	}
	return true;
}

#define PAGES(...) ((const int[]){ __VA_ARGS__, -1 })
#define NONE ((const int[]){ -1 })

/* ---- the seed, on every memory kind ----------------------------------- */

static bool seed(struct t_mem *m)
{
	size_t elems = t_page_size() / sizeof(int);
	bool exact = m->kind != T_MEM_THP;	/* one write marks a whole 2 MiB page */
	int *array = (int *)m->addr;
	struct pt_tracker *t;
	int ret;

	ret = t_tracker_open_on(&t, PT_BACKEND_SOFT_DIRTY, m->addr, m->len);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	if (!expect(t, 0, NPAGES, NONE, exact, "clean"))
		goto fail;
	array[0] = 5;
	array[1] = 9;
	array[elems] = 14;
	array[3 * elems + 60] = 35;
	if (!expect(t, PT_COLLECT_RESET, NPAGES, PAGES(0, 1, 3), exact, "seed writes"))
		goto fail;
	if (!expect(t, 0, NPAGES, NONE, exact, "after collect with reset"))
		goto fail;
	array[elems] = 15;
	array[9 * elems] = 1;
	if (!expect(t, 0, NPAGES, PAGES(1, 9), exact, "rewritten"))
		goto fail;
	if (!expect(t, 0, NPAGES, PAGES(1, 9), exact, "collect without reset keeps them"))
		goto fail;
	ret = pt_tracker_reset(t);
	if (ret) {
		printf("    reset: %s\n", strerror(-ret));
		goto fail;
	}
	if (!expect(t, 0, NPAGES, NONE, exact, "after reset"))
		goto fail;
	pt_tracker_close(t);
	return true;
fail:
	pt_tracker_close(t);
	return false;
}

/* ---- several trackers -------------------------------------------------- */

static bool two_trackers(void)
{
	size_t len = NPAGES * t_page_size();
	char *a = guarded_map(len), *b = guarded_map(len), *c = guarded_map(len);
	struct pt_tracker *ta = NULL, *tb = NULL, *tc = NULL;
	bool ok = false;
	int ret;

	if (!a || !b || !c) {
		printf("    mmap: %s\n", strerror(errno));
		goto out;
	}
	if ((ret = t_tracker_open_on(&ta, PT_BACKEND_SOFT_DIRTY, a, len)) ||
	    (ret = t_tracker_open_on(&tb, PT_BACKEND_SOFT_DIRTY, b, len))) {
		printf("    open: %s\n", strerror(-ret));
		goto out;
	}
	touch(a, 1, 1);
	touch(a, 5, 1);
	touch(b, 2, 1);
	/* B's reset clears the whole process: A must keep 1 and 5. */
	ret = pt_tracker_reset(tb);
	if (ret) {
		printf("    reset B: %s\n", strerror(-ret));
		goto out;
	}
	if (!expect(ta, 0, NPAGES, PAGES(1, 5), true, "A after B's reset") ||
	    !expect(tb, 0, NPAGES, NONE, true, "B after its reset"))
		goto out;
	/* B's collect with reset clears again: A still keeps them. */
	touch(b, 3, 1);
	if (!expect(tb, PT_COLLECT_RESET, NPAGES, PAGES(3), true, "B collect") ||
	    !expect(ta, PT_COLLECT_RESET, NPAGES, PAGES(1, 5), true, "A after B's collect") ||
	    !expect(ta, 0, NPAGES, NONE, true, "A after its own collect"))
		goto out;
	/* Opening C starts it clean, with a clear: A keeps 9, B keeps 4. */
	touch(a, 9, 1);
	touch(b, 4, 1);
	if ((ret = t_tracker_open_on(&tc, PT_BACKEND_SOFT_DIRTY, c, len))) {
		printf("    open C: %s\n", strerror(-ret));
		goto out;
	}
	touch(c, 0, 1);
	if (!expect(ta, 0, NPAGES, PAGES(9), true, "A after C's open") ||
	    !expect(tc, PT_COLLECT_RESET, NPAGES, PAGES(0), true, "C") ||
	    !expect(tb, 0, NPAGES, PAGES(4), true, "B after C's open and collect"))
		goto out;
	/* Closing B does not disturb A; both pending and fresh writes show. */
	pt_tracker_close(tb);
	tb = NULL;
	touch(a, 10, 1);
	if (!expect(ta, PT_COLLECT_RESET, NPAGES, PAGES(9, 10), true, "A after B's close"))
		goto out;
	ok = true;
out:
	pt_tracker_close(ta);
	pt_tracker_close(tb);
	pt_tracker_close(tc);
	if (a)
		guarded_unmap(a, len);
	if (b)
		guarded_unmap(b, len);
	if (c)
		guarded_unmap(c, len);
	return ok;
}

/* Two trackers on overlapping ranges: frozen as one span, each exact. */
static bool overlapping(void)
{
	size_t pg = t_page_size(), len = 2 * NPAGES * pg;
	char *r = guarded_map(len);
	struct pt_tracker *lo = NULL, *hi = NULL;
	bool ok = false;
	int ret;

	CHECK(r, "mmap: %s", strerror(errno));
	if ((ret = t_tracker_open_on(&lo, PT_BACKEND_SOFT_DIRTY, r, NPAGES * pg)) ||
	    (ret = t_tracker_open_on(&hi, PT_BACKEND_SOFT_DIRTY, r + NPAGES / 2 * pg, NPAGES * pg))) {
		printf("    open: %s\n", strerror(-ret));
		goto out;
	}
	touch(r, 2, 1);			/* lo only */
	touch(r, NPAGES / 2 + 1, 1);	/* both: lo page 9, hi page 1 */
	touch(r, NPAGES + 3, 1);	/* hi only: hi page 11 */
	if (!expect(hi, PT_COLLECT_RESET, NPAGES, PAGES(1, 11), true, "hi") ||
	    !expect(lo, PT_COLLECT_RESET, NPAGES, PAGES(2, 9), true, "lo after hi's collect") ||
	    !expect(hi, 0, NPAGES, NONE, true, "hi after lo's collect"))
		goto out;
	ok = true;
out:
	pt_tracker_close(lo);
	pt_tracker_close(hi);
	guarded_unmap(r, len);
	return ok;
}

/*
 * A tracker whose range was unmapped before close cannot be frozen during
 * another tracker's clear: the other works on, and the orphan reports its
 * whole range (it cannot vouch for a racing write).
 */
static bool unmapped_before_close(void)
{
	size_t len = NPAGES * t_page_size();
	char *gone = guarded_map(len), *live = guarded_map(len);
	struct pt_tracker *tg = NULL, *tl = NULL;
	bool ok = false;
	int ret;

	CHECK(gone && live, "mmap: %s", strerror(errno));
	if ((ret = t_tracker_open_on(&tg, PT_BACKEND_SOFT_DIRTY, gone, len)) ||
	    (ret = t_tracker_open_on(&tl, PT_BACKEND_SOFT_DIRTY, live, len))) {
		printf("    open: %s\n", strerror(-ret));
		goto out;
	}
	guarded_unmap(gone, len);
	gone = NULL;
	touch(live, 6, 1);
	if (!expect(tl, PT_COLLECT_RESET, NPAGES, PAGES(6), true, "live tracker"))
		goto out;
	if (!expect(tg, 0, NPAGES,
		    PAGES(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), true,
		    "orphan reports its whole range"))
		goto out;
	ok = true;
out:
	pt_tracker_close(tg);
	pt_tracker_close(tl);
	if (gone)
		guarded_unmap(gone, len);
	if (live)
		guarded_unmap(live, len);
	return ok;
}

/* MADV_DONTNEED drops a written page's PTE and its soft-dirty bit with it:
 * the content changed (zeros), so it must be reported. */
static bool dontneed(void)
{
	size_t pg = t_page_size(), len = NPAGES * pg;
	char *r = guarded_map(len);
	struct pt_tracker *t = NULL;
	bool ok = false;
	int ret;

	CHECK(r, "mmap: %s", strerror(errno));
	touch(r, 3, 7);
	if ((ret = t_tracker_open_on(&t, PT_BACKEND_SOFT_DIRTY, r, len))) {
		printf("    open: %s\n", strerror(-ret));
		goto out;
	}
	if (madvise(r + 3 * pg, pg, MADV_DONTNEED)) {
		printf("    madvise: %s\n", strerror(errno));
		goto out;
	}
	if (r[3 * pg + 17] != 0) {
		printf("    MADV_DONTNEED left the data\n");
		goto out;
	}
	if (!expect(t, PT_COLLECT_RESET, NPAGES, PAGES(3), false, "dropped page"))
		goto out;
	ok = true;
out:
	pt_tracker_close(t);
	guarded_unmap(r, len);
	return ok;
}

/* read(2) into the range: the kernel's write faults like the program's. */
static bool read_into(void)
{
	size_t pg = t_page_size(), len = NPAGES * pg;
	char *r = guarded_map(len), buf[64];
	struct pt_tracker *t = NULL;
	int fds[2] = { -1, -1 }, ret;
	bool ok = false;

	CHECK(r, "mmap: %s", strerror(errno));
	memset(buf, 'x', sizeof(buf));
	if (pipe(fds) || write(fds[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
		printf("    pipe: %s\n", strerror(errno));
		goto out;
	}
	if ((ret = t_tracker_open_on(&t, PT_BACKEND_SOFT_DIRTY, r, len))) {
		printf("    open: %s\n", strerror(-ret));
		goto out;
	}
	if (read(fds[0], r + 6 * pg + 100, sizeof(buf)) != (ssize_t)sizeof(buf)) {
		printf("    read into the range: %s\n", strerror(errno));
		goto out;
	}
	if (!expect(t, PT_COLLECT_RESET, NPAGES, PAGES(6), true, "read(2) target"))
		goto out;
	ok = true;
out:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	pt_tracker_close(t);
	guarded_unmap(r, len);
	return ok;
}

/* fork: the child's copy of the tracker refuses (-ECHILD), the child can
 * track on its own, and the parent's tracking stays right. */
static bool fork_keeps_parent(void)
{
	size_t len = NPAGES * t_page_size();
	char *r = guarded_map(len);
	struct pt_tracker *t = NULL;
	bool ok = false;
	int ret, status;
	pid_t pid;

	CHECK(r, "mmap: %s", strerror(errno));
	if ((ret = t_tracker_open_on(&t, PT_BACKEND_SOFT_DIRTY, r, len))) {
		printf("    open: %s\n", strerror(-ret));
		goto out;
	}
	touch(r, 2, 1);
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		printf("    fork: %s\n", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		const struct pt_range *rr;
		struct pt_tracker *own;
		size_t nr;
		char *mine = guarded_map(len);

		touch(r, 8, 1);		/* the child's copy: must not fault or hang */
		if (pt_tracker_collect(t, 0, &rr, &nr) != -ECHILD)
			_exit(2);
		pt_tracker_close(t);
		if (!mine || t_tracker_open_on(&own, PT_BACKEND_SOFT_DIRTY, mine, len))
			_exit(3);
		touch(mine, 4, 1);
		if (!expect(own, PT_COLLECT_RESET, NPAGES, PAGES(4), true, "child's own tracker"))
			_exit(4);
		pt_tracker_close(own);
		_exit(0);
	}
	touch(r, 11, 1);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		printf("    child failed (status %#x)\n", status);
		goto out;
	}
	if (!expect(t, PT_COLLECT_RESET, NPAGES, PAGES(2, 11), true, "parent after fork"))
		goto out;
	ok = true;
out:
	pt_tracker_close(t);
	guarded_unmap(r, len);
	return ok;
}

static const struct {
	const char *name;
	bool (*run)(void);
} cells[] = {
	{ "two trackers, one process", two_trackers },
	{ "overlapping ranges", overlapping },
	{ "range unmapped before close", unmapped_before_close },
	{ "MADV_DONTNEED reported", dontneed },
	{ "read(2) into the range", read_into },
	{ "fork", fork_keeps_parent },
};

int main(void)
{
	char why[256] = "";

	if (t_softdirty_emulate(why, sizeof(why)) == T_SKIP) {
		printf("skip: %s\n", why);
		return T_SKIP;
	}
	if (!t_backend_usable(PT_BACKEND_SOFT_DIRTY, why, sizeof(why))) {
		printf("skip: soft-dirty backend unavailable: %s\n", why);
		return T_SKIP;
	}
	for (int k = 0; k < T_MEM_NKINDS; k++) {
		char name[64];
		struct t_mem m;
		int r;

		snprintf(name, sizeof(name), "seed x %s", t_mem_kind_names[k]);
		why[0] = '\0';
		r = t_mem_map(&m, k, NPAGES * t_page_size(), why, sizeof(why));
		if (r) {
			t_cell_report(name, r, why);
			continue;
		}
		t_cell_report(name, seed(&m) ? T_PASS : T_FAIL, "");
		t_mem_unmap(&m);
	}
	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++)
		t_cell_report(cells[i].name, cells[i].run() ? T_PASS : T_FAIL, "");
	return t_exit();
}
