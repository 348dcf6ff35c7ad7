/* mprotect-race: writers fault on the few pages a concurrent collect-with-reset re-protects; the shadow copy converges. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"

/*
 * Few pages and several writers, so nearly every write faults right after
 * the collector re-protected its page: the fault handler and collect race
 * all the time.  Each short round ends with the writers stopped and a final
 * collect; the shadow built only from reported pages must then equal the
 * memory byte for byte.  A write lost by the race leaves them different.
 */

#define NPAGES 8
#define NWRITERS 3
#define ROUND_MS 15
#define TOTAL_MS 3000

struct shared {
	struct pt_tracker *t;
	char *mem, *shadow;
	size_t len;
	atomic_int stop_writers, stop_collector;
	atomic_int failed;
	char why[200];
	uint64_t collects, reported;
};

struct writer {
	pthread_t thread;
	struct shared *sh;
	uint64_t seed, writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t words = w->sh->len / 8;

	while (!atomic_load_explicit(&w->sh->stop_writers, memory_order_relaxed)) {
		uint64_t r = t_rnd_next(&w->seed);

		atomic_store_explicit((_Atomic uint64_t *)w->sh->mem + r % words, r,
				      memory_order_relaxed);
		/* Yield often: on a small machine a writer spinning on writable
		 * pages would starve the collector and the faults. */
		if (!(++w->writes % 8))
			sched_yield();
	}
	return NULL;
}

/* Copy the reported pages into the shadow; false (with why) on error. */
static bool collect_copy(struct shared *sh)
{
	size_t ps = t_page_size();
	const struct pt_range *r;
	size_t nr;
	int n = pt_tracker_collect(sh->t, PT_COLLECT_RESET, &r, &nr);

	if (n < 0) {
		snprintf(sh->why, sizeof(sh->why), "collect: %s", strerror(-n));
		return false;
	}
	sh->collects++;
	sh->reported += (uint64_t)n;
	for (size_t i = 0; i < nr; i++) {
		size_t off = r[i].first * ps, end = (r[i].first + r[i].count) * ps;

		if (r[i].first + r[i].count > NPAGES || (i && r[i].first <= r[i - 1].first + r[i - 1].count)) {
			snprintf(sh->why, sizeof(sh->why), "bad range %llu+%llu",
				 (unsigned long long)r[i].first, (unsigned long long)r[i].count);
			return false;
		}
		/* Word by word, as atomics: the writers are still running. */
		for (; off < end; off += 8)
			*(uint64_t *)(sh->shadow + off) =
				atomic_load_explicit((_Atomic uint64_t *)(sh->mem + off),
						     memory_order_relaxed);
	}
	return true;
}

static void *collector_main(void *arg)
{
	struct shared *sh = arg;

	while (!atomic_load_explicit(&sh->stop_collector, memory_order_relaxed)) {
		if (!collect_copy(sh)) {
			atomic_store(&sh->failed, 1);
			break;
		}
		sched_yield();
	}
	return NULL;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static double elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static bool race(struct t_mem *m, char *why, size_t why_len)
{
	struct shared sh = { .mem = m->addr, .len = m->len };
	struct writer w[NWRITERS];
	struct timespec t0;
	uint64_t writes = 0;
	int rounds = 0, ret;
	bool ok = false;

	sh.shadow = malloc(m->len);
	CHECK(sh.shadow, "out of memory");
	memcpy(sh.shadow, m->addr, m->len);
	ret = t_tracker_open_on(&sh.t, PT_BACKEND_MPROTECT, m->addr, m->len);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		free(sh.shadow);
		return false;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		pthread_t collector;

		atomic_store(&sh.stop_writers, 0);
		atomic_store(&sh.stop_collector, 0);
		for (int i = 0; i < NWRITERS; i++) {
			w[i] = (struct writer){ .sh = &sh, .seed = 0x12345 + 7919u * (uint64_t)(rounds * NWRITERS + i) };
			if (pthread_create(&w[i].thread, NULL, writer_main, &w[i]))
				DIE("pthread_create");
		}
		if (pthread_create(&collector, NULL, collector_main, &sh))
			DIE("pthread_create");
		sleep_ms(ROUND_MS);
		/* Writers stop first, the collector keeps racing with their
		 * last faults, then a final collect in this thread. */
		atomic_store(&sh.stop_writers, 1);
		for (int i = 0; i < NWRITERS; i++) {
			pthread_join(w[i].thread, NULL);
			writes += w[i].writes;
		}
		atomic_store(&sh.stop_collector, 1);
		pthread_join(collector, NULL);
		if (atomic_load(&sh.failed) || !collect_copy(&sh)) {
			snprintf(why, why_len, "round %d: %s", rounds, sh.why);
			goto out;
		}
		rounds++;
		if (memcmp(sh.shadow, m->addr, m->len)) {
			for (size_t off = 0; off < m->len; off += 8) {
				if (*(uint64_t *)(sh.shadow + off) != *(uint64_t *)(m->addr + off)) {
					snprintf(why, why_len,
						 "round %d: page %zu offset %zu differs: a write was lost",
						 rounds, off / t_page_size(), off % t_page_size());
					break;
				}
			}
			goto out;
		}
	} while (elapsed_ms(&t0) < TOTAL_MS);
	printf("    %d rounds, %llu writes, %llu collects, %llu pages reported\n", rounds,
	       (unsigned long long)writes, (unsigned long long)sh.collects,
	       (unsigned long long)sh.reported);
	/* A race test that never raced proves nothing. */
	if (sh.reported < 100 || writes < 1000) {
		snprintf(why, why_len, "too little happened: %llu writes, %llu pages reported",
			 (unsigned long long)writes, (unsigned long long)sh.reported);
		goto out;
	}
	ok = true;
out:
	pt_tracker_close(sh.t);
	free(sh.shadow);
	return ok;
}

int main(void)
{
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD };
	char why[256] = "";

	if (!t_backend_usable(PT_BACKEND_MPROTECT, why, sizeof(why))) {
		printf("skip: mprotect backend unavailable: %s\n", why);
		return T_SKIP;
	}
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		char name[64];
		struct t_mem m;
		int r;

		why[0] = '\0';
		snprintf(name, sizeof(name), "mprotect x %s", t_mem_kind_names[kinds[k]]);
		r = t_mem_map(&m, kinds[k], NPAGES * t_page_size(), why, sizeof(why));
		if (r) {
			t_cell_report(name, r, why);
			continue;
		}
		t_cell_report(name, race(&m, why, sizeof(why)) ? T_PASS : T_FAIL, why);
		t_mem_unmap(&m);
	}
	return t_exit();
}
