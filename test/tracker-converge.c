/* tracker-converge: writer threads never stop while a collector copies what collect+reset reports; the copy must end equal. */
/*
 * The property replication stands on: two writer threads (t_writers_start)
 * write random bytes, words and multi-word runs (some across a page
 * boundary) at random places, with a few hot pages written over and over,
 * while the main thread
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
#define HOT_PAGES 16

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
		t_copy_racing(shadow + r[i].first * ps, region + r[i].first * ps,
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
	uint64_t npages = m->len / t_page_size();
	struct t_writers w;
	uint8_t *shadow = NULL, *region = (uint8_t *)m->addr;
	uint64_t collects = 0, checkpoints = 0, reported = 0, total_writes = 0;
	struct pt_tracker *t = NULL;
	int ret, n;
	bool ok = false;
	double end;

	shadow = malloc(m->len);
	if (!shadow) {
		snprintf(why, why_len, "out of memory");
		return false;
	}
	/* Some content before tracking starts: the shadow starts as a copy. */
	for (uint64_t p = 0; p < npages; p += 3)
		region[p * t_page_size() + p % 61] = (uint8_t)p;
	ret = t_tracker_open_on(&t, b, m->addr, m->len);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	memcpy(shadow, region, m->len);
	if (!t_writers_start(&w, region, m->len, HOT_PAGES, seed, why, why_len))
		goto out;
	end = t_now() + seconds;
	/* At least 12 collects and 2,000 writes, however slow the machine
	 * (TSan with other builds running made 10 collects in the time; under
	 * mprotect, collects racing the writers' faults left a few hundred
	 * writes), within 20 times the time. */
	while (t_now() < end || ((collects < 12 || t_writers_count(&w) < 2000) &&
			       t_now() < end + 20 * seconds)) {
		n = collect_copy(t, shadow, region, npages, why, why_len);
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
		t_writers_pause(&w, (unsigned)checkpoints + 1);
		n = collect_copy(t, shadow, region, npages, why, why_len);
		if (n < 0 || !same(shadow, region, m->len, "checkpoint", collects, why, why_len)) {
			t_writers_resume(&w);
			goto stop;
		}
		checkpoints++;
		t_writers_resume(&w);
		/* Let the writers dirty a varying amount between collects. */
		if (checkpoints % 4 == 0)
			usleep((useconds_t)(t_rnd_next(&seed) % 300));
	}
	ok = true;
stop:
	total_writes = t_writers_stop(&w);
	if (!ok)
		goto out;
	ok = false;
	n = collect_copy(t, shadow, region, npages, why, why_len);
	if (n < 0)
		goto out;
	if (!same(shadow, region, m->len, "end", collects, why, why_len))
		goto out;
	if (total_writes <= 1000 || collects <= 10) {
		snprintf(why, why_len, "too little happened: %llu writes, %llu collects",
			 (unsigned long long)total_writes, (unsigned long long)collects);
		goto out;
	}
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
