/* tracker-adaptive: PT_TRACK_ADAPTIVE loses no write: model and converging copies with hot pages that come and go, writer threads, every memory kind, and protect-before-copy. */
/*
 * Cells, each for every memory kind (hot_after 1-2 and a short probation,
 * so that pages turn hot and cool many times in a short run):
 *  - model: one thread writes a hot set every round, pages that are hot
 *    for a while and then stop (they must cool), and random pages; each
 *    collect with reset is copied into a shadow, which must then equal the
 *    memory, and every page written since the last collect must have been
 *    reported.  pt_tracker_unchanged() names reported pages the model did
 *    not write; collects without reset and pt_tracker_reset() are mixed in.
 *  - converge: two writer threads never stop (hot pages, pages turning hot
 *    then cold, random pages) while the main thread collects and copies,
 *    telling the tracker which copied pages were unchanged; at checkpoints
 *    (writers paused right after a racing collect) and at the end one more
 *    collect and copy must make the shadow equal to the memory.
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
 *    whole range and the kernel sees few faults (probations only).
 *  - other backends: mprotect opens with the flag and tracks plainly.
 *  - arguments.
 * Skips (77) when uffd-wp is unavailable.  PAGETRACK_TEST_SEED repeats a
 * run; PAGETRACK_TEST_SECONDS sets converge's writing time (default 1).
 */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define REGION_LEN (4ul << 20)
#define WRITERS 2
#define HOT 24		/* pages written at every round / constantly */
#define WARM 48		/* pages hot for a phase, then left alone */

/* The library's test hook (tracker.c; not exported, the test links the
 * static library). */
extern bool pt_adaptive_swap_order;

static uint64_t seed;
static double seconds = 1.0;

static int open_adaptive(struct pt_tracker **t, enum pt_backend b, void *addr, size_t len,
			 unsigned int hot_after, unsigned int probation)
{
	struct pt_tracker_opts o = {
		.sz = sizeof(o), .backend = b, .flags = PT_TRACK_ADAPTIVE,
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

static bool model_collect(struct model *md, const char *what)
{
	int n = collect_copy(md->t, md->shadow, md->mem, md->npages, md->map, true, md->why,
			     md->why_len);

	if (n < 0)
		return false;
	for (uint64_t p = 0; p < md->npages; p++)
		CHECK(!md->written[p] || md->map[p], "%s: written page %llu not reported", what,
		      (unsigned long long)p);
	memset(md->written, 0, md->npages);
	return shadow_equal(md->shadow, md->mem, md->npages * t_page_size(), what, md->why,
			    md->why_len);
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
		if (!model_collect(&md, "round"))
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

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
		case 0: case 1: case 2: case 3:
			page = (r >> 8) % HOT;
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
	end = now() + seconds;
	/* At least 12 collects, however slow the machine (a sanitizer, other
	 * work): hot pages need a few to turn hot and cool. */
	while (now() < end || (collects < 12 && now() < end + 20 * seconds)) {
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
	      st.fault_ns > 0, "stats after open: adaptive %d, hot after %u, "
	      "probation %u, fault %llu ns", st.adaptive, st.hot_after, st.probation,
	      (unsigned long long)st.fault_ns);
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
	} per_kind[] = {
		{ "model", model_cell },
		{ "converge", converge_cell },
	};
	static const struct t_cell once[] = {
		{ "arguments", arguments_cell },
		{ "protect then copy", order_cell },
		{ "swapped order is caught", swapped_cell },
		{ "all hot", all_hot_cell },
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
		for (int k = 0; k < T_MEM_NKINDS; k++) {
			char name[64];
			struct t_mem m;
			int r;

			snprintf(name, sizeof(name), "%s x %s", per_kind[c].name, t_mem_kind_names[k]);
			why[0] = '\0';
			r = t_mem_map(&m, (enum t_mem_kind)k, REGION_LEN, why, sizeof(why));
			if (r) {
				t_cell_report(name, r, why);
				continue;
			}
			why[0] = '\0';
			r = per_kind[c].fn(&m, why, sizeof(why)) ? T_PASS : T_FAIL;
			t_cell_report(name, r, why);
			t_mem_unmap(&m);
		}
	}
	return t_exit();
}
