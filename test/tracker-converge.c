/* tracker-converge: writer threads never stop while a collector copies what collect+reset reports; the copy must end equal. */
/*
 * The property replication stands on: two writer threads write random
 * bytes, words and multi-word runs (some across a page boundary) at random
 * places, with a few hot pages written over and over, while the main thread
 * loops collect(PT_COLLECT_RESET) and copies each reported page into a
 * shadow buffer.  When the writers have stopped, one more collect and copy
 * must leave the shadow equal to the region, byte for byte: a write that
 * raced with a collect was reported by it or by a later one.  Every other
 * collect is a checkpoint: the writers pause right after it, one more
 * collect and copy must make the shadow equal, and they resume; so a write
 * lost by a racing collect is caught before a later write to the same page
 * could mask it.
 *
 * Stores and the copy use relaxed atomics, which compile to plain moves on
 * x86-64 and arm64; they only tell ThreadSanitizer that these races are
 * meant.  PAGETRACK_TEST_SECONDS sets the writing time per cell
 * (default 1.2); PAGETRACK_TEST_SEED repeats a run.
 */
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define REGION_LEN (4ul << 20)
#define WRITERS 2
#define HOT_PAGES 16

struct cell {
	struct t_mem *m;
	uint64_t npages;
	int stop;		/* atomic */
	unsigned pause;		/* atomic: nonzero, a checkpoint number: writers wait */
	unsigned ack[WRITERS];	/* atomic: the checkpoint each writer waits in */
	uint64_t seed;
	uint64_t writes[WRITERS];
};

struct writer {
	struct cell *c;
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
	struct cell *c = w->c;
	size_t ps = t_page_size();
	uint64_t rnd = c->seed * (uint64_t)(w->id + 3) | 1, n = 0;
	uint8_t *base = (uint8_t *)c->m->addr;
	size_t len = c->m->len;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		unsigned pause = __atomic_load_n(&c->pause, __ATOMIC_ACQUIRE);
		uint64_t r, page, v;
		size_t off;
		uint8_t *p;

		/* The ack names the checkpoint, so an ack left from the last
		 * one cannot let the collector go on while this thread still
		 * has a write to make. */
		if (pause) {
			__atomic_store_n(&c->ack[w->id], pause, __ATOMIC_RELEASE);
			while (__atomic_load_n(&c->pause, __ATOMIC_ACQUIRE) == pause)
				sched_yield();
			continue;
		}
		r = t_rnd_next(&rnd);
		page = (r & 3) ? (r >> 8) % c->npages : (r >> 8) % HOT_PAGES;
		off = (size_t)(t_rnd_next(&rnd) % ps);
		p = base + page * ps + off;
		v = t_rnd_next(&rnd);

		switch (r >> 4 & 3) {
		case 0:
			__atomic_store_n(p, (uint8_t)v, __ATOMIC_RELAXED);
			break;
		case 1:
			p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)3);
			__atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELAXED);
			break;
		case 2:
			p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
			__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
			break;
		default: {
			/* A run of up to 32 words, often across into the next page. */
			size_t words = 1 + (size_t)(v % 32);
			uint8_t *q = (uint8_t *)((uintptr_t)(base + page * ps + ps - 8 * (v % 24)) & ~(uintptr_t)7);

			if (r & 0x400)
				q = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
			for (size_t i = 0; i < words && q + 8 <= base + len; i++, q += 8)
				__atomic_store_n((uint64_t *)q, v + i, __ATOMIC_RELAXED);
			break;
		}
		}
		n++;
	}
	c->writes[w->id] = n;
	return NULL;
}

static void copy_page_range(uint8_t *dst, const uint8_t *src, size_t bytes)
{
	for (size_t i = 0; i < bytes; i += 8)
		__atomic_store_n((uint64_t *)(dst + i),
				 __atomic_load_n((const uint64_t *)(src + i), __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
}

/* Collect with reset and copy what it reports; returns pages or -errno. */
static int collect_copy(struct pt_tracker *t, uint8_t *shadow, const uint8_t *region,
			uint64_t npages, char *why, size_t why_len)
{
	const struct pt_range *r;
	size_t nr, ps = t_page_size();
	int n = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);

	if (n < 0) {
		snprintf(why, why_len, "collect: %s", strerror(-n));
		return n;
	}
	for (size_t i = 0; i < nr; i++) {
		if (r[i].first + r[i].count > npages) {
			snprintf(why, why_len, "range beyond the region");
			return -ERANGE;
		}
		copy_page_range(shadow + r[i].first * ps, region + r[i].first * ps,
				r[i].count * ps);
	}
	return n;
}

/* The shadow must equal the region now that no writer runs. */
static bool same(const uint8_t *shadow, const uint8_t *region, size_t len, const char *when,
		 uint64_t collects, char *why, size_t why_len)
{
	size_t off = 0;

	if (!memcmp(shadow, region, len))
		return true;
	while (shadow[off] == region[off])
		off++;
	snprintf(why, why_len, "%s: shadow differs from the region at page %zu byte %zu "
		 "after %llu collects: a write was lost", when, off / t_page_size(), off % t_page_size(),
		 (unsigned long long)collects);
	return false;
}

static bool converge(enum pt_backend b, struct t_mem *m, double seconds, uint64_t seed,
		     char *why, size_t why_len)
{
	struct cell c = { .m = m, .npages = m->len / t_page_size(), .seed = seed };
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	uint8_t *shadow = NULL, *region = (uint8_t *)m->addr;
	uint64_t collects = 0, checkpoints = 0, reported = 0, total_writes = 0;
	struct pt_tracker *t = NULL;
	int started = 0, ret, n;
	bool ok = false;
	double end;

	shadow = malloc(m->len);
	if (!shadow) {
		snprintf(why, why_len, "out of memory");
		return false;
	}
	/* Some content before tracking starts: the shadow starts as a copy. */
	for (uint64_t p = 0; p < c.npages; p += 3)
		region[p * t_page_size() + p % 61] = (uint8_t)p;
	ret = t_tracker_open_on(&t, b, m->addr, m->len);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(shadow, region, m->len);
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
	/* At least 12 collects, however slow the machine (TSan with other
	 * builds running made 10 in the time), within 20 times the time. */
	while (now() < end || (collects < 12 && now() < end + 20 * seconds)) {
		n = collect_copy(t, shadow, region, c.npages, why, why_len);
		if (n < 0)
			goto stop;
		collects++;
		reported += (uint64_t)n;
		if (collects % 2)
			continue;
		/*
		 * Checkpoint: stop the writers right after a racing collect,
		 * then collect and copy once more.  A write lost by the racing
		 * collect cannot hide behind a later write to the same page.
		 */
		__atomic_store_n(&c.pause, (unsigned)checkpoints + 1, __ATOMIC_RELEASE);
		for (int i = 0; i < started; i++)
			while (__atomic_load_n(&c.ack[i], __ATOMIC_ACQUIRE) != (unsigned)checkpoints + 1)
				sched_yield();
		n = collect_copy(t, shadow, region, c.npages, why, why_len);
		if (n < 0 || !same(shadow, region, m->len, "checkpoint", collects, why, why_len)) {
			__atomic_store_n(&c.pause, 0, __ATOMIC_RELEASE);
			goto stop;
		}
		checkpoints++;
		__atomic_store_n(&c.pause, 0, __ATOMIC_RELEASE);
		/* Let the writers dirty a varying amount between collects. */
		if (checkpoints % 4 == 0)
			usleep((useconds_t)(t_rnd_next(&seed) % 300));
	}
	ok = true;
stop:
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (!ok)
		goto out;
	ok = false;
	n = collect_copy(t, shadow, region, c.npages, why, why_len);
	if (n < 0)
		goto out;
	for (int i = 0; i < WRITERS; i++)
		total_writes += c.writes[i];
	if (!same(shadow, region, m->len, "end", collects, why, why_len))
		goto out;
	CHECK(total_writes > 1000 && collects > 10, "too little happened: %llu writes, %llu collects",
	      (unsigned long long)total_writes, (unsigned long long)collects);
	printf("    %llu writes, %llu collects, %llu checkpoints, %llu pages copied\n",
	       (unsigned long long)total_writes, (unsigned long long)collects,
	       (unsigned long long)checkpoints, (unsigned long long)reported);
	ok = true;
out:
	pt_tracker_close(t);
	free(shadow);
	return ok;
}

int main(void)
{
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD, T_MEM_SHM, T_MEM_FILE, T_MEM_THP };
	const char *env = getenv("PAGETRACK_TEST_SEED");
	const char *secs = getenv("PAGETRACK_TEST_SECONDS");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
	double seconds = secs ? atof(secs) : 1.2;

	if (!(seconds > 0 && seconds < 3600))
		DIE("PAGETRACK_TEST_SECONDS=%s: want a number of seconds", secs);
	printf("seed %llu\n", (unsigned long long)seed);
	for (size_t bi = 0; bi < ARRAY_LEN(t_all_backends); bi++) {
		enum pt_backend b = t_all_backends[bi];

		for (size_t k = 0; k < ARRAY_LEN(kinds); k++) {
			char name[64], why[256] = "";
			struct t_mem m;
			int r;

			snprintf(name, sizeof(name), "%s x %s", pt_backend_name(b), t_mem_kind_names[kinds[k]]);
			if (!t_backend_usable(b, why, sizeof(why))) {
				t_cell_report(name, T_SKIP, why);
				continue;
			}
			r = t_mem_map(&m, kinds[k], REGION_LEN, why, sizeof(why));
			if (r) {
				t_cell_report(name, r, why);
				continue;
			}
			why[0] = '\0';
			r = converge(b, &m, seconds, seed + bi * 7 + k, why, sizeof(why));
			t_cell_report(name, r ? T_PASS : T_FAIL, why);
			t_mem_unmap(&m);
		}
	}
	return t_exit();
}
