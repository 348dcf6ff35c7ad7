/* tracker-adaptive: PT_TRACK_ADAPTIVE loses no write: model and converging copies with hot pages that come and go, writer threads, every memory kind and every way of scanning around hot pages, protect-before-copy, what a scan does to a hot page, the knobs. */
/*
 * Cells, each for every memory kind (hot_after 1-2 and a short probation,
 * so that pages turn hot and cool many times in a short run), and for each
 * way the uffd-wp backend scans around hot pages (forced with the hooks
 * pt_uffd_hot_scan and pt_uffd_merge_hot_always: auto, runs, read first,
 * read first with clusters spanning hot pages):
 *  - model: one thread writes a hot set every round (a bunched one and a
 *    scattered one), pages that are hot for a while and then stop (they
 *    must cool), and random pages; each collect with reset is copied into
 *    a shadow, every page written since the last collect must have been
 *    reported, and every 8th collect (and the last) the shadow must equal
 *    the memory.
 *    pt_tracker_unchanged() names reported pages the model did not write;
 *    collects without reset and pt_tracker_reset() are mixed in.
 *  - converge: two writer threads never stop (hot pages, pages turning hot
 *    then cold, random pages) while the main thread collects and copies,
 *    telling the tracker which copied pages were unchanged; at checkpoints
 *    (writers paused right after a racing collect) and at the end one more
 *    collect and copy must make the shadow equal to the memory.
 *  - probation: a cooled page is protected before its collect returns;
 *    written again, the next collect makes it hot without re-arming it.
 *  - a scan over a hot page: what a write-protecting scan does to an
 *    unprotected (hot) page, seen in the page tables with a read-only
 *    PAGEMAP_SCAN of the test's own: it re-arms it (and the collect
 *    reports it), a later write faults and unprotects it again, and
 *    nothing is lost; without merging, the page is left alone.
 * And once:
 *  - protect then copy: a hot page cools (pt_tracker_unchanged), the
 *    collect that reports it returns, the caller copies, then the page is
 *    written: the next collect must report it.
 *  - swapped order is caught: the same with the test hook that protects
 *    cooling pages after the copy instead (pt_adaptive_swap_order): the
 *    write must be lost, or this test could not tell the orders apart.
 *    PAGETRACK_TEST_SWAP_ORDER=1 swaps the order in every cell, and then
 *    the model, converge and ordering cells must fail.
 *  - all hot: every page written every round; the hot set becomes the
 *    whole range, each collect reports all of it, and the kernel sees few
 *    faults (probations only).
 *  - pause budget: hot pages stop being written; with a budget of 1 us
 *    probation drops to 8 collects once one is found unwritten, and they
 *    all cool sooner than with an unlimited budget.
 *  - fault cost watched: collects for over a second take a new fault
 *    sample (bounded wait: up to 10 s).
 *  - plain trackers count collects and faults too.
 *  - other backends: mprotect opens with the flag and tracks plainly.
 *  - arguments, and the option struct's three sizes.
 * Skips (77) when uffd-wp is unavailable.  PAGETRACK_TEST_SEED repeats a
 * run; PAGETRACK_TEST_SECONDS sets converge's writing time (default 1).
 */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "compat.h"
#include "harness.h"
#include "internal.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define REGION_LEN (4ul << 20)
#define WRITERS 2
#define HOT 24		/* pages written at every round / constantly */
#define WARM 48		/* pages hot for a phase, then left alone */
#define SCATTER 32	/* hot pages SCATTER_FIRST + 7 * i: many runs */
#define SCATTER_FIRST 400

/* The library's test hooks (adaptive.c, uffd.c; not exported, the test
 * links the static library) are declared in internal.h. */

/* The ways of scanning around hot pages, each cell run under each. */
static const struct scan_way {
	const char *name;
	enum pt_hot_scan scan;
	bool merge;
} ways[] = {
	{ "auto", PT_HOT_SCAN_AUTO, false },
	{ "runs", PT_HOT_SCAN_RUNS, false },
	{ "read first", PT_HOT_SCAN_READ_FIRST, false },
	{ "read first, merged", PT_HOT_SCAN_READ_FIRST, true },
};

static void use_way(const struct scan_way *w)
{
	pt_uffd_hot_scan = w->scan;
	pt_uffd_merge_hot_always = w->merge;
}

static uint64_t seed;
static double seconds = 1.0;

/* PAGETRACK_TEST_CHUNKS adds the chunk guard (t_test_track_flags()). */
static int open_adaptive(struct pt_tracker **t, enum pt_backend b, void *addr, size_t len,
			 unsigned int hot_after, unsigned int probation)
{
	struct pt_tracker_opts o = {
		.sz = sizeof(o), .backend = b, .flags = PT_TRACK_ADAPTIVE | t_test_track_flags(),
		.hot_after = hot_after, .probation = probation,
	};

	return pt_tracker_open(t, addr, len, &o);
}

static void copy_pages(uint8_t *dst, const uint8_t *src, size_t bytes)
{
	for (size_t i = 0; i < bytes; i += 8)
		__atomic_store_n((uint64_t *)(dst + i),
				 __atomic_load_n((const uint64_t *)(src + i), __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
}

/* Is page p of shadow equal to the memory? (racy reads: relaxed atomics) */
static bool page_same(const uint8_t *shadow, const uint8_t *mem, uint64_t p)
{
	size_t ps = t_page_size();

	for (size_t i = p * ps; i < (p + 1) * ps; i += 8)
		if (*(const uint64_t *)(shadow + i) !=
		    __atomic_load_n((const uint64_t *)(mem + i), __ATOMIC_RELAXED))
			return false;
	return true;
}

/*
 * Collect with reset, tell the tracker which reported pages did not change
 * since the shadow's copy (compared before copying: a hint, so a write
 * racing with the comparison is allowed to make it wrong), copy them, and
 * mark them in map (may be NULL).  Returns pages or -errno.
 */
static int collect_copy(struct pt_tracker *t, uint8_t *shadow, const uint8_t *mem,
			uint64_t npages, uint8_t *map, bool hints, char *why, size_t why_len)
{
	const struct pt_range *r;
	size_t nr, ps = t_page_size();
	int n = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);

	if (n < 0) {
		snprintf(why, why_len, "collect: %s", strerror(-n));
		return n;
	}
	if (map)
		memset(map, 0, npages);
	for (size_t i = 0; i < nr; i++) {
		if (r[i].first + r[i].count > npages || (i && r[i].first <= r[i - 1].first + r[i - 1].count)) {
			snprintf(why, why_len, "ranges not ascending and maximal, or beyond the range");
			return -ERANGE;
		}
		for (uint64_t p = r[i].first; p < r[i].first + r[i].count; p++) {
			bool same = hints && page_same(shadow, mem, p);

			copy_pages(shadow + p * ps, mem + p * ps, ps);
			if (same)
				pt_tracker_unchanged(t, p, 1);
			if (map)
				map[p] = 1;
		}
	}
	return n;
}

static bool shadow_equal(const uint8_t *shadow, const uint8_t *mem, size_t len, const char *when,
			 char *why, size_t why_len)
{
	size_t off = 0;

	if (!memcmp(shadow, mem, len))
		return true;
	while (shadow[off] == mem[off])
		off++;
	snprintf(why, why_len, "%s: the copy differs from the memory at page %zu byte %zu: a write "
		 "was not reported", when, off / t_page_size(), off % t_page_size());
	return false;
}

/* ---- model ------------------------------------------------------------ */

struct model {
	struct pt_tracker *t;
	uint8_t *mem, *shadow, *written, *map;
	uint64_t npages, rnd;
	char *why;
	size_t why_len;
};

static void touch(struct model *md, uint64_t p)
{
	size_t ps = t_page_size();

	md->mem[p * ps + t_rnd_next(&md->rnd) % ps] = (uint8_t)(t_rnd_next(&md->rnd) | 1);
	md->written[p] = 1;
}

/* Collect and copy; every written page must have been reported, and (when
 * compare) the shadow must equal the memory. */
static bool model_collect(struct model *md, const char *what, bool compare)
{
	int n = collect_copy(md->t, md->shadow, md->mem, md->npages, md->map, true, md->why,
			     md->why_len);

	if (n < 0)
		return false;
	for (uint64_t p = 0; p < md->npages; p++)
		CHECK(!md->written[p] || md->map[p], "%s: written page %llu not reported", what,
		      (unsigned long long)p);
	memset(md->written, 0, md->npages);
	return !compare || shadow_equal(md->shadow, md->mem, md->npages * t_page_size(), what,
					md->why, md->why_len);
}

static bool model_cell(struct t_mem *m, char *why, size_t why_len)
{
	struct model md = { .mem = (uint8_t *)m->addr, .npages = m->len / t_page_size(),
			    .rnd = seed | 1, .why = why, .why_len = why_len };
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	uint64_t warm_base = HOT + 7, max_hot = 0;
	bool ok = false;
	int ret;

	md.shadow = malloc(m->len);
	md.written = calloc(md.npages, 1);
	md.map = calloc(md.npages, 1);
	if (!md.shadow || !md.written || !md.map) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	ret = open_adaptive(&md.t, PT_BACKEND_UFFD_WP, m->addr, m->len, 2, 4);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(md.shadow, md.mem, m->len);
	for (int round = 0; round < 120; round++) {
		/* Hot pages, most rounds; a warm set moves every 10 rounds
		 * (its old pages stop being written and must cool). */
		for (uint64_t p = 0; p < HOT; p++)
			if (round % 13 != 12)
				touch(&md, p);
		for (uint64_t i = 0; i < SCATTER; i++)
			if (round % 11 != 10)
				touch(&md, SCATTER_FIRST + 7 * i);
		if (round % 10 == 0)
			warm_base = HOT + 7 + t_rnd_next(&md.rnd) % (md.npages - HOT - 7 - WARM);
		for (uint64_t p = 0; p < WARM; p += 1 + (round & 1))
			touch(&md, warm_base + p);
		for (int i = 0; i < 40; i++)
			touch(&md, t_rnd_next(&md.rnd) % md.npages);
		if (round % 17 == 5) {
			/* A collect without reset reports, re-arms nothing. */
			const struct pt_range *r;
			size_t nr;

			CHECK(pt_tracker_collect(md.t, 0, &r, &nr) >= 0, "collect without reset");
		}
		if (round == 70) {
			/* Forget everything: the shadow is refreshed by hand. */
			CHECK(pt_tracker_reset(md.t) == 0, "pt_tracker_reset");
			memcpy(md.shadow, md.mem, m->len);
			memset(md.written, 0, md.npages);
		}
		/* The whole shadow is compared every 8th round and at the end
		 * (4 MiB a time is most of the cell's time under TSan); the
		 * reports are checked at every round. */
		if (!model_collect(&md, "round", round % 8 == 7 || round == 119))
			goto close;
		CHECK(pt_tracker_stats(md.t, &st) == 0, "pt_tracker_stats");
		if (st.hot_pages > max_hot)
			max_hot = st.hot_pages;
	}
	CHECK(st.adaptive == 1, "adaptive not in effect on uffd-wp");
	CHECK(max_hot >= HOT / 2, "the hot set never grew (at most %llu pages)",
	      (unsigned long long)max_hot);
	CHECK(st.cooled > 0 && st.unchanged > 0, "no page ever cooled (%llu cooled, %llu unchanged)",
	      (unsigned long long)st.cooled, (unsigned long long)st.unchanged);
	printf("    %llu collects, %llu faulted, %llu hot reports, %llu probations, %llu cooled, "
	       "max hot %llu\n", (unsigned long long)st.collects, (unsigned long long)st.faulted,
	       (unsigned long long)st.hot_reports, (unsigned long long)st.probations,
	       (unsigned long long)st.cooled, (unsigned long long)max_hot);
	ok = true;
close:
	pt_tracker_close(md.t);
out:
	free(md.shadow);
	free(md.written);
	free(md.map);
	return ok;
}

/* ---- converge with writer threads --------------------------------------- */

struct conv {
	uint8_t *mem;
	size_t len;
	uint64_t npages;
	int stop;		/* atomic */
	unsigned pause;		/* atomic: a checkpoint number, writers wait */
	unsigned ack[WRITERS];	/* atomic */
	uint64_t warm_base;	/* atomic: where the warm set is now */
	uint64_t writes[WRITERS];
};

struct writer {
	struct conv *c;
	int id;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct conv *c = w->c;
	size_t ps = t_page_size();
	uint64_t rnd = seed * (uint64_t)(w->id + 3) | 1, n = 0;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		unsigned pause = __atomic_load_n(&c->pause, __ATOMIC_ACQUIRE);
		uint64_t r, page, v;
		uint8_t *p;

		if (pause) {
			__atomic_store_n(&c->ack[w->id], pause, __ATOMIC_RELEASE);
			while (__atomic_load_n(&c->pause, __ATOMIC_ACQUIRE) == pause)
				sched_yield();
			continue;
		}
		r = t_rnd_next(&rnd);
		v = t_rnd_next(&rnd);
		switch (r & 7) {
		case 0: case 1:
			page = (r >> 8) % HOT;
			break;
		case 2: case 3:
			page = SCATTER_FIRST + 7 * ((r >> 8) % SCATTER);
			break;
		case 4: case 5: case 6:
			page = __atomic_load_n(&c->warm_base, __ATOMIC_RELAXED) + (r >> 8) % WARM;
			break;
		default:
			page = (r >> 8) % c->npages;
			break;
		}
		p = c->mem + page * ps + ((r >> 32) % ps & ~(size_t)7);
		if (v & 1) {
			__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
		} else {
			/* A run of words, across into the next page when near the end. */
			for (size_t i = 0; i < 1 + v % 24 && p + 8 <= c->mem + c->len; i++, p += 8)
				__atomic_store_n((uint64_t *)p, v + i, __ATOMIC_RELAXED);
		}
		n++;
	}
	c->writes[w->id] = n;
	return NULL;
}

static bool converge_cell(struct t_mem *m, char *why, size_t why_len)
{
	struct conv c = { .mem = (uint8_t *)m->addr, .len = m->len, .npages = m->len / t_page_size(),
			  .warm_base = HOT + 5 };
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	struct pt_tracker *t = NULL;
	uint64_t collects = 0, checkpoints = 0, rnd = seed ^ 0x5bd1e995, total = 0;
	uint8_t *shadow = malloc(m->len);
	int started = 0, ret, n;
	bool ok = false;
	double end;

	if (!shadow) {
		snprintf(why, why_len, "out of memory");
		return false;
	}
	ret = open_adaptive(&t, PT_BACKEND_UFFD_WP, m->addr, m->len, 1, 3);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(shadow, c.mem, m->len);
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .c = &c, .id = i };
		ret = pthread_create(&th[i], NULL, writer_main, &w[i]);
		if (ret) {
			snprintf(why, why_len, "pthread_create: %s", strerror(ret));
			goto stop;
		}
		started++;
	}
	end = t_now() + seconds;
	/* At least 12 collects, however slow the machine (a sanitizer, other
	 * work): hot pages need a few to turn hot and cool. */
	while (t_now() < end || (collects < 12 && t_now() < end + 20 * seconds)) {
		n = collect_copy(t, shadow, c.mem, c.npages, NULL, true, why, why_len);
		if (n < 0)
			goto stop;
		collects++;
		/* The warm set moves now and then: its pages turn hot, then cold. */
		if (collects % 8 == 0)
			__atomic_store_n(&c.warm_base, HOT + 5 + t_rnd_next(&rnd) % (c.npages - HOT - 5 - WARM),
					 __ATOMIC_RELAXED);
		if (collects % 2)
			continue;
		__atomic_store_n(&c.pause, (unsigned)checkpoints + 1, __ATOMIC_RELEASE);
		for (int i = 0; i < started; i++)
			while (__atomic_load_n(&c.ack[i], __ATOMIC_ACQUIRE) != (unsigned)checkpoints + 1)
				sched_yield();
		n = collect_copy(t, shadow, c.mem, c.npages, NULL, true, why, why_len);
		if (n < 0 || !shadow_equal(shadow, c.mem, m->len, "checkpoint", why, why_len)) {
			__atomic_store_n(&c.pause, 0, __ATOMIC_RELEASE);
			goto stop;
		}
		checkpoints++;
		__atomic_store_n(&c.pause, 0, __ATOMIC_RELEASE);
		if (checkpoints % 4 == 0)
			usleep((useconds_t)(t_rnd_next(&rnd) % 300));
	}
	ok = true;
stop:
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (!ok)
		goto out;
	ok = false;
	if (collect_copy(t, shadow, c.mem, c.npages, NULL, false, why, why_len) < 0 ||
	    !shadow_equal(shadow, c.mem, m->len, "end", why, why_len))
		goto out;
	for (int i = 0; i < WRITERS; i++)
		total += c.writes[i];
	if (pt_tracker_stats(t, &st)) {
		snprintf(why, why_len, "pt_tracker_stats failed");
		goto out;
	}
	if (total < 200 || collects < 4 || !st.hot_reports || !st.cooled) {
		snprintf(why, why_len, "too little happened: %llu writes, %llu collects, %llu hot "
			 "reports, %llu cooled", (unsigned long long)total, (unsigned long long)collects,
			 (unsigned long long)st.hot_reports, (unsigned long long)st.cooled);
		goto out;
	}
	printf("    %llu writes, %llu collects, %llu checkpoints; %llu faulted, %llu hot reports, "
	       "%llu cooled, %llu named unchanged\n", (unsigned long long)total,
	       (unsigned long long)collects, (unsigned long long)checkpoints,
	       (unsigned long long)st.faulted, (unsigned long long)st.hot_reports,
	       (unsigned long long)st.cooled, (unsigned long long)st.unchanged);
	ok = true;
out:
	pt_tracker_close(t);
	free(shadow);
	return ok;
}

/* ---- a scan over a hot page --------------------------------------------- */

/* Is page p of [mem, +len) written (unprotected), by a read-only scan? */
static int kernel_written(const uint8_t *mem, size_t len, uint64_t p, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct page_region vec[64];
	struct pm_scan_arg arg = {
		.size = sizeof(arg), .flags = PM_SCAN_CHECK_WPASYNC,
		.start = (uintptr_t)mem, .end = (uintptr_t)mem + len,
		.vec = (uintptr_t)vec, .vec_len = 64,
		.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
	};
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	long n;

	if (fd < 0) {
		snprintf(why, why_len, "/proc/self/pagemap: %s", strerror(errno));
		return -1;
	}
	n = ioctl(fd, PAGEMAP_SCAN, &arg);
	close(fd);
	if (n < 0) {
		snprintf(why, why_len, "PAGEMAP_SCAN: %s", strerror(errno));
		return -1;
	}
	for (long i = 0; i < n; i++)
		if ((uintptr_t)mem + p * ps >= vec[i].start && (uintptr_t)mem + p * ps < vec[i].end)
			return 1;
	return 0;
}

/*
 * Page 10 turns hot; pages 9 and 11 (cold) are written and collected with
 * a read-first scan, with merging (one scan spans 9-11) or without.
 * Returns 1 if the scan re-armed page 10, 0 if not, -1 on a failure.
 */
static int scan_over_hot(struct t_mem *m, bool merge, char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 64 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	uint8_t *mem = (uint8_t *)m->addr, *shadow = malloc(len), map[64];
	struct pt_tracker *t = NULL;
	int ret, rearmed = -1, w;

	use_way(&(struct scan_way){ "", PT_HOT_SCAN_READ_FIRST, merge });
	if (!shadow) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	/* Hot after 2: pages 9 and 11, written once, stay cold. */
	ret = open_adaptive(&t, PT_BACKEND_UFFD_WP, mem, len, 2, 1000);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(shadow, mem, len);
	for (int i = 0; i < 2; i++) {
		mem[10 * ps] = (uint8_t)(1 + i);
		if (collect_copy(t, shadow, mem, 64, map, false, why, why_len) < 0)
			goto out;
	}
	pt_tracker_stats(t, &st);
	w = kernel_written(mem, len, 10, why, why_len);
	if (!map[10] || st.hot_pages != 1 || w != 1) {
		if (w >= 0)
			snprintf(why, why_len, "page 10 did not turn hot (reported %d, %llu hot, "
				 "unprotected %d)", map[10], (unsigned long long)st.hot_pages, w);
		goto out;
	}
	mem[9 * ps] = 2;
	mem[11 * ps] = 2;
	if (collect_copy(t, shadow, mem, 64, map, false, why, why_len) < 0)
		goto out;
	pt_tracker_stats(t, &st);
	w = kernel_written(mem, len, 10, why, why_len);
	if (w < 0)
		goto out;
	if (!map[9] || !map[10] || !map[11] || st.hot_pages != 1) {
		snprintf(why, why_len, "pages 9-11 reported %d%d%d, %llu hot", map[9], map[10],
			 map[11], (unsigned long long)st.hot_pages);
		goto out;
	}
	rearmed = !w;
	/* Written after the collect: reported next, and unprotected again. */
	mem[10 * ps + 1] = 3;
	w = kernel_written(mem, len, 10, why, why_len);
	if (w != 1) {
		if (w == 0)
			snprintf(why, why_len, "a write to the re-armed hot page left it protected");
		rearmed = -1;
		goto out;
	}
	if (collect_copy(t, shadow, mem, 64, map, false, why, why_len) < 0 ||
	    !shadow_equal(shadow, mem, len, "after the write", why, why_len)) {
		rearmed = -1;
		goto out;
	}
	if (!map[10]) {
		snprintf(why, why_len, "the hot page written after a scan re-armed it was not reported");
		rearmed = -1;
	}
out:
	use_way(&ways[0]);
	pt_tracker_close(t);
	free(shadow);
	return rearmed;
}

static bool scan_over_hot_cell(struct t_mem *m, char *why, size_t why_len)
{
	int r = scan_over_hot(m, true, why, why_len);

	if (r < 0)
		return false;
	CHECK(r == 1, "a scan spanning an unprotected hot page left it unprotected");
	memset(m->addr, 0, 64 * t_page_size());
	r = scan_over_hot(m, false, why, why_len);
	if (r < 0)
		return false;
	CHECK(r == 0, "a read-first collect without merging re-armed a hot page");
	return true;
}

/*
 * A hot page's probation: the collect that cools it protects it; written
 * again, the next collect reports it and makes it hot again without
 * re-arming it (the page tables still say unprotected after that collect),
 * and the write after that is reported.
 */
static bool probation_cell(struct t_mem *m, char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 64 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	uint8_t *mem = (uint8_t *)m->addr, *shadow = malloc(len), map[64];
	struct pt_tracker *t = NULL;
	bool ok = false, cooled = false;
	int ret, w;

	if (!shadow) {
		snprintf(why, why_len, "out of memory");
		return false;
	}
	/* Hot after 1, probation every 4 collects: page 5 (block 0) is due at
	 * collects 4, 8, ... */
	ret = open_adaptive(&t, PT_BACKEND_UFFD_WP, mem, len, 1, 4);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(shadow, mem, len);
	for (int n = 1; n <= 12 && !ok; n++) {
		mem[5 * ps + (size_t)n] = (uint8_t)n;
		if (collect_copy(t, shadow, mem, 64, map, false, why, why_len) < 0)
			goto out;
		pt_tracker_stats(t, &st);
		w = kernel_written(mem, len, 5, why, why_len);
		if (w < 0 || !map[5]) {
			if (w >= 0)
				snprintf(why, why_len, "collect %d: page 5 written, not reported", n);
			goto out;
		}
		if (st.hot_pages == 0) {
			/* This collect cooled it: protected before it returned. */
			if (w) {
				snprintf(why, why_len, "collect %d cooled page 5 but left it unprotected", n);
				goto out;
			}
			cooled = true;
		} else if (cooled) {
			/* Written while on probation: hot again, not re-armed. */
			if (!w) {
				snprintf(why, why_len, "collect %d: page 5 hot again but re-armed", n);
				goto out;
			}
			ok = true;
		}
	}
	if (!ok) {
		snprintf(why, why_len, "page 5 never went through a probation (cooled %d)", cooled);
		goto out;
	}
	mem[5 * ps + 100] = 99;
	ok = collect_copy(t, shadow, mem, 64, map, false, why, why_len) >= 0 &&
	     shadow_equal(shadow, mem, len, "after the probation", why, why_len);
	if (ok && !map[5]) {
		snprintf(why, why_len, "the write after the probation was not reported");
		ok = false;
	}
out:
	pt_tracker_close(t);
	free(shadow);
	return ok;
}

/* ---- protect, then copy --------------------------------------------------- */

/*
 * Page 3 turns hot (hot_after 1), the caller names it unchanged, and the
 * next collect cools it and reports it; after that collect returns the
 * caller copies, then page 3 is written.  Returns 1 if the following
 * collect reported page 3, 0 if not, -1 on a setup failure.
 */
static int write_after_cooling_seen(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 16 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	uint8_t *mem, *shadow, map[16];
	struct pt_tracker *t;
	int ret, seen = -1;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shadow = malloc(len);
	if (mem == MAP_FAILED || !shadow) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	/* A probation period longer than the test: only the hint cools. */
	ret = open_adaptive(&t, PT_BACKEND_UFFD_WP, mem, len, 1, 1000);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(shadow, mem, len);
	mem[3 * ps] = 1;
	if (collect_copy(t, shadow, mem, 16, map, false, why, why_len) < 0)
		goto close;
	pt_tracker_stats(t, &st);
	if (!map[3] || st.hot_pages != 1) {
		snprintf(why, why_len, "page 3 did not turn hot (reported %d, %llu hot)", map[3],
			 (unsigned long long)st.hot_pages);
		goto close;
	}
	/* Hot: reported without being written. */
	if (collect_copy(t, shadow, mem, 16, map, false, why, why_len) < 0)
		goto close;
	if (!map[3]) {
		snprintf(why, why_len, "a hot page was not reported");
		goto close;
	}
	pt_tracker_unchanged(t, 3, 1);
	/* This collect cools page 3 and reports it one last time... */
	if (collect_copy(t, shadow, mem, 16, map, false, why, why_len) < 0)
		goto close;
	pt_tracker_stats(t, &st);
	if (!map[3] || st.hot_pages != 0) {
		snprintf(why, why_len, "page 3 did not cool (reported %d, %llu hot)", map[3],
			 (unsigned long long)st.hot_pages);
		goto close;
	}
	/* ...the caller copied it (collect_copy), and now it is written. */
	mem[3 * ps + 100] = 2;
	if (collect_copy(t, shadow, mem, 16, map, false, why, why_len) < 0)
		goto close;
	seen = map[3];
	if (!seen)
		snprintf(why, why_len, "a write made after the copy of a cooled page was not reported");
close:
	pt_tracker_close(t);
out:
	if (mem != MAP_FAILED)
		munmap(mem, len);
	free(shadow);
	return seen;
}

static bool order_cell(char *why, size_t why_len)
{
	return write_after_cooling_seen(why, why_len) == 1;
}

static bool swapped_cell(char *why, size_t why_len)
{
	bool saved = pt_adaptive_swap_order;
	int seen;

	pt_adaptive_swap_order = true;
	seen = write_after_cooling_seen(why, why_len);
	pt_adaptive_swap_order = saved;
	if (seen < 0)
		return false;
	CHECK(seen == 0, "with the order swapped the write was still reported: "
	      "the ordering cell cannot tell the orders apart");
	why[0] = '\0';
	return true;
}

/* ---- all hot, other backends, arguments ------------------------------------ */

static bool all_hot_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 256 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	uint8_t *mem, *shadow, map[256];
	struct pt_tracker *t;
	uint64_t faulted_before = 0;
	bool ok = false;
	int ret, n = 0;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shadow = calloc(1, len);
	CHECK(mem != MAP_FAILED && shadow, "out of memory");
	ret = open_adaptive(&t, PT_BACKEND_UFFD_WP, mem, len, 2, 8);
	CHECK(!ret, "open: %s", strerror(-ret));
	for (int round = 0; round < 40; round++) {
		for (size_t p = 0; p < 256; p++)
			mem[p * ps + (size_t)round] = (uint8_t)round;
		n = collect_copy(t, shadow, mem, 256, map, false, why, why_len);
		if (n < 0)
			goto close;
		if (n != 256) {
			snprintf(why, why_len, "round %d: %d pages reported, all 256 written", round, n);
			goto close;
		}
		if (round == 7) {
			pt_tracker_stats(t, &st);
			faulted_before = st.faulted;
		}
	}
	pt_tracker_stats(t, &st);
	/* 32 rounds after warming up: plain tracking would fault 32 x 256 times;
	 * probation every 8 collects re-arms each page once per 8. */
	if (st.faulted - faulted_before > 32 * 256 / 4) {
		snprintf(why, why_len, "%llu faults in 32 rounds of 256 pages: not adaptive",
			 (unsigned long long)(st.faulted - faulted_before));
		goto close;
	}
	if (!shadow_equal(shadow, mem, len, "all hot", why, why_len))
		goto close;
	printf("    32 rounds x 256 pages: %llu faults (plain: 8192), %llu hot now\n",
	       (unsigned long long)(st.faulted - faulted_before), (unsigned long long)st.hot_pages);
	ok = true;
close:
	pt_tracker_close(t);
	munmap(mem, len);
	free(shadow);
	return ok;
}

/*
 * 256 pages hot, then no longer written: collects until none is hot (at
 * most 400).  Returns the collects it took, or -1.  The pages are 64-page
 * blocks 0, 16, 32 and 48, whose probations with a period of 64 come due
 * 16 collects apart.
 */
static int collects_to_cool(unsigned int budget_us, char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 4096 * ps;
	struct pt_tracker_opts o = {
		.sz = sizeof(o), .backend = PT_BACKEND_UFFD_WP, .flags = PT_TRACK_ADAPTIVE,
		.hot_after = 2, .probation = 64, .pause_budget_us = budget_us,
	};
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	const struct pt_range *r;
	struct pt_tracker *t;
	uint8_t *mem;
	size_t nr;
	int ret = 0, n = -1;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		snprintf(why, why_len, "mmap: %s", strerror(errno));
		return -1;
	}
	ret = pt_tracker_open(&t, mem, len, &o);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		munmap(mem, len);
		return -1;
	}
	for (int round = 0; round < 2 && ret >= 0; round++) {
		for (size_t p = 0; p < 256; p++)
			mem[(p / 64 * 16 * 64 + p % 64) * ps] = (uint8_t)round;
		ret = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);
	}
	pt_tracker_stats(t, &st);
	if (ret < 0 || st.hot_pages != 256) {
		snprintf(why, why_len, "256 written pages did not turn hot (%llu hot)",
			 (unsigned long long)st.hot_pages);
		goto out;
	}
	for (n = 1; n <= 400 && st.hot_pages; n++) {
		/* Another page (never twice in a row: it stays cold), so
		 * the collects are not all empty. */
		mem[(size_t)(3500 + n % 256) * ps] = 1;
		ret = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);
		if (ret < 0) {
			snprintf(why, why_len, "collect: %s", strerror(-ret));
			n = -1;
			goto out;
		}
		pt_tracker_stats(t, &st);
	}
	if (st.hot_pages) {
		snprintf(why, why_len, "%llu pages still hot after 400 collects",
			 (unsigned long long)st.hot_pages);
		n = -1;
	}
out:
	pt_tracker_close(t);
	munmap(mem, len);
	return n;
}

static bool budget_cell(char *why, size_t why_len)
{
	int tight = collects_to_cool(1, why, why_len), loose;

	if (tight < 0)
		return false;
	loose = collects_to_cool(UINT32_MAX / 2, why, why_len);
	if (loose < 0)
		return false;
	printf("    256 stale hot pages cooled in %d collects with a 1 us budget, %d without\n",
	       tight, loose);
	/* Probation 64: the first block comes due within 16 collects, the
	 * last within 64; once the first is found unwritten the tight budget
	 * makes probation 8. */
	CHECK(tight <= 16 + 8 + 2, "the tight budget took %d collects", tight);
	CHECK(tight < loose, "the budget changed nothing (%d and %d collects)", tight, loose);
	return true;
}

static bool watched_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 16 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	const struct pt_range *r;
	struct pt_tracker *t;
	uint8_t *mem;
	size_t nr;
	double end;
	int ret;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	ret = open_adaptive(&t, PT_BACKEND_UFFD_WP, mem, len, 0, 0);
	if (ret) {
		munmap(mem, len);
		snprintf(why, why_len, "open: %s", strerror(-ret));
		return false;
	}
	pt_tracker_stats(t, &st);
	end = t_now() + 10;
	while (st.fault_samples < 2 && t_now() < end) {
		mem[ps] = 1;
		pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);
		pt_tracker_stats(t, &st);
		usleep(20000);
	}
	pt_tracker_close(t);
	munmap(mem, len);
	CHECK(st.fault_samples >= 2, "no fault measured while collecting for 10 s");
	CHECK(st.fault_ns > 0 && st.fault_ns_open > 0 && st.copy_ns > 0,
	      "fault %llu ns (open %llu), copy %llu ns", (unsigned long long)st.fault_ns,
	      (unsigned long long)st.fault_ns_open, (unsigned long long)st.copy_ns);
	printf("    fault %llu ns at open, %llu ns after %llu samples\n",
	       (unsigned long long)st.fault_ns_open, (unsigned long long)st.fault_ns,
	       (unsigned long long)st.fault_samples);
	return true;
}

static bool plain_counts_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 64 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	const struct pt_range *r;
	struct pt_tracker *t;
	uint8_t *mem;
	size_t nr;
	int ret;

	(void)why;
	(void)why_len;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	ret = t_tracker_open_on(&t, PT_BACKEND_UFFD_WP, mem, len);
	CHECK(!ret, "open: %s", strerror(-ret));
	for (int round = 0; round < 3; round++) {
		for (size_t p = 0; p < 5; p++)
			mem[(p * 3 + (size_t)round) * ps] = 1;
		pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);
	}
	pt_tracker_collect(t, 0, &r, &nr);	/* without reset: not counted */
	pt_tracker_stats(t, &st);
	pt_tracker_close(t);
	munmap(mem, len);
	CHECK(st.adaptive == 0 && st.collects == 3 && st.faulted == 15 && !st.hot_reports,
	      "plain tracker: adaptive %d, %llu collects, %llu faulted, %llu hot reports",
	      st.adaptive, (unsigned long long)st.collects, (unsigned long long)st.faulted,
	      (unsigned long long)st.hot_reports);
	return true;
}

static bool other_backend_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 16 * ps;
	struct pt_tracker_stats st = { .sz = sizeof(st) };
	const struct pt_range *r;
	struct pt_tracker *t;
	uint8_t *mem;
	size_t nr;
	int ret;

	if (!t_backend_usable(PT_BACKEND_MPROTECT, why, why_len))
		return false;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	ret = open_adaptive(&t, PT_BACKEND_MPROTECT, mem, len, 0, 0);
	CHECK(!ret, "mprotect with PT_TRACK_ADAPTIVE: %s", strerror(-ret));
	for (int round = 0; round < 5; round++) {
		mem[5 * ps] = (uint8_t)round;
		ret = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);
		if (ret != 1 || nr != 1 || r[0].first != 5)
			break;
	}
	pt_tracker_stats(t, &st);
	pt_tracker_close(t);
	munmap(mem, len);
	CHECK(ret == 1, "mprotect: page 5 written, %d pages reported", ret);
	CHECK(st.adaptive == 0 && st.hot_pages == 0, "mprotect claims adaptive tracking");
	return true;
}

static bool arguments_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 16 * ps;
	struct pt_tracker_opts o = { .sz = sizeof(o), .backend = PT_BACKEND_UFFD_WP,
				     .flags = PT_TRACK_ADAPTIVE, .hot_after = 256 };
	struct pt_tracker_stats st = { .sz = 8 };
	struct pt_tracker *t = NULL;
	uint8_t *mem;
	int ret;

	(void)why;
	(void)why_len;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	CHECK(pt_tracker_open(&t, mem, len, &o) == -EINVAL, "hot_after 256 accepted");
	o.hot_after = 0;
	o.flags = 0x80;
	CHECK(pt_tracker_open(&t, mem, len, &o) == -EINVAL, "unknown flag accepted");
	o.flags = PT_TRACK_ADAPTIVE;
	/* The three sizes the struct has had, and none between. */
	o.sz = offsetof(struct pt_tracker_opts, hot_after);
	ret = pt_tracker_open(&t, mem, len, &o);
	CHECK(!ret, "open with the first version's size: %s", strerror(-ret));
	pt_tracker_close(t);
	o.sz = offsetof(struct pt_tracker_opts, pause_budget_us);
	ret = pt_tracker_open(&t, mem, len, &o);
	CHECK(!ret, "open with the second version's size: %s", strerror(-ret));
	pt_tracker_close(t);
	o.sz = offsetof(struct pt_tracker_opts, pause_budget_us) - 2;
	CHECK(pt_tracker_open(&t, mem, len, &o) == -EINVAL, "a size between versions accepted");
	o.sz = sizeof(o);
	ret = pt_tracker_open(&t, mem, len, &o);
	CHECK(!ret, "open: %s", strerror(-ret));
	CHECK(pt_tracker_stats(t, &st) == -EINVAL, "stats with a too small sz accepted");
	CHECK(pt_tracker_stats(NULL, &st) == -EINVAL, "stats of NULL accepted");
	CHECK(pt_tracker_unchanged(t, 16, 1) == -EINVAL, "unchanged beyond the range accepted");
	CHECK(pt_tracker_unchanged(t, 0, 0) == -EINVAL, "unchanged of no page accepted");
	CHECK(pt_tracker_unchanged(t, 15, 1) == 0, "unchanged of the last page");
	st.sz = sizeof(st);
	/* hot_after 0 is an answer too: faults cheaper than half a copy (a
	 * sanitizer's memcpy is slow). */
	CHECK(pt_tracker_stats(t, &st) == 0 && st.adaptive == 1 && st.probation >= 1 &&
	      st.fault_ns > 0 && st.fault_ns == st.fault_ns_open && st.fault_samples == 1 &&
	      st.pause_budget_ns == 100000, "stats after open: adaptive %d, hot after %u, "
	      "probation %u, fault %llu ns (open %llu, %llu samples), budget %llu ns",
	      st.adaptive, st.hot_after, st.probation, (unsigned long long)st.fault_ns,
	      (unsigned long long)st.fault_ns_open, (unsigned long long)st.fault_samples,
	      (unsigned long long)st.pause_budget_ns);
	{
		/* A caller of the first version: nothing written beyond it. */
		size_t v1 = offsetof(struct pt_tracker_stats, reported_unwritten) + sizeof(uint64_t);
		union { struct pt_tracker_stats s; unsigned char b[sizeof(st)]; } older;

		memset(&older, 0xa5, sizeof(older));
		older.s.sz = v1;
		CHECK(pt_tracker_stats(t, &older.s) == 0 && older.s.adaptive == 1,
		      "stats of the first version's size");
		for (size_t i = v1; i < sizeof(older); i++)
			CHECK(older.b[i] == 0xa5, "byte %zu beyond the first version written", i);
	}
	printf("    measured at open: fault %llu ns, page copy %llu ns: hot after %u, probation %u\n",
	       (unsigned long long)st.fault_ns, (unsigned long long)st.copy_ns, st.hot_after,
	       st.probation);
	pt_tracker_close(t);
	munmap(mem, len);
	return true;
}

int main(void)
{
	static const struct {
		const char *name;
		bool (*fn)(struct t_mem *m, char *why, size_t why_len);
		unsigned int ways;	/* bit i: ways[i] */
		unsigned int kinds;	/* bit k: memory kind k */
	} per_kind[] = {
		{ "model", model_cell, 0xf, ~0u },
		{ "converge", converge_cell, 0x2 | 0x8, ~0u },
		{ "converge", converge_cell, 0x1 | 0x4, 1u << T_MEM_ANON | 1u << T_MEM_MEMFD },
		{ "a scan over a hot page", scan_over_hot_cell, 0x1, ~0u },
		{ "probation", probation_cell, 0x2 | 0x4, 1u << T_MEM_ANON | 1u << T_MEM_MEMFD },
	};
	static const struct t_cell once[] = {
		{ "arguments", arguments_cell },
		{ "protect then copy", order_cell },
		{ "swapped order is caught", swapped_cell },
		{ "all hot", all_hot_cell },
		{ "pause budget", budget_cell },
		{ "fault cost watched", watched_cell },
		{ "plain trackers count", plain_counts_cell },
		{ "other backends ignore the flag", other_backend_cell },
	};
	const char *env = getenv("PAGETRACK_TEST_SEED");
	const char *secs = getenv("PAGETRACK_TEST_SECONDS");
	const char *swap = getenv("PAGETRACK_TEST_SWAP_ORDER");
	char why[256] = "";

	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
	if (secs)
		seconds = atof(secs);
	if (!(seconds > 0 && seconds < 3600))
		DIE("PAGETRACK_TEST_SECONDS=%s: want a number of seconds", secs);
	printf("seed %llu\n", (unsigned long long)seed);
	if (!t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		printf("skipped: adaptive tracking needs uffd-wp: %s\n", why);
		return T_SKIP;
	}
	if (swap && !strcmp(swap, "1")) {
		printf("PAGETRACK_TEST_SWAP_ORDER=1: cooling protects after the copy; cells must fail\n");
		pt_adaptive_swap_order = true;
	}
	t_run_cells(once, ARRAY_LEN(once));
	for (size_t c = 0; c < ARRAY_LEN(per_kind); c++) {
		for (size_t w = 0; w < ARRAY_LEN(ways); w++) {
			if (!(per_kind[c].ways & 1u << w))
				continue;
			for (int k = 0; k < T_MEM_NKINDS; k++) {
				char name[96];
				struct t_mem m;
				int r;

				if (!(per_kind[c].kinds & 1u << k))
					continue;
				snprintf(name, sizeof(name), "%s x %s x %s", per_kind[c].name,
					 t_mem_kind_names[k], ways[w].name);
				why[0] = '\0';
				r = t_mem_map(&m, (enum t_mem_kind)k, REGION_LEN, why, sizeof(why));
				if (r) {
					t_cell_report(name, r, why);
					continue;
				}
				why[0] = '\0';
				use_way(&ways[w]);
				r = per_kind[c].fn(&m, why, sizeof(why)) ? T_PASS : T_FAIL;
				use_way(&ways[0]);
				t_cell_report(name, r, why);
				t_mem_unmap(&m);
			}
		}
	}
	return t_exit();
}
