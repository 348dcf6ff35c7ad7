/* softdirty-converge: soft-dirty convergence: writer threads vs collect+copy on two trackers at once. */
/*
 * The property replication rests on, under the soft-dirty backend's two
 * hazards: the non-atomic read-then-clear (closed by the write freeze) and
 * the process-wide clear (closed by folding into pending bitmaps).
 *
 * Two regions, each with its own tracker.  Writer threads store sequence
 * numbers at random places in both regions, non-stop.  Two collector
 * threads, one per tracker, loop: collect with reset, copy the reported
 * pages into that region's shadow.  Each collect of one tracker clears the
 * soft-dirty bits of the other's region too, while its writers run.  After
 * the writers stop and a final collect and copy, each shadow must equal its
 * region byte for byte.  A lost write leaves a page of the shadow stale.
 *
 * Writers and copies use relaxed atomic 8-byte accesses: the races on the
 * tracked memory are the point of the test, and TSan must not stop it.
 *
 * With PT_SOFTDIRTY_EMULATE=1 the cells run on a soft-dirty kernel emulated
 * with uffd-wp (test/softdirty-emu.c), as test/softdirty-emulated.sh does.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"

#define REGION_PAGES 512
#define WRITERS_PER_REGION 2
#define RUN_SECONDS 2.0

struct region {
	uint64_t *mem;
	uint64_t *shadow;
	size_t words;
	struct pt_tracker *t;
	uint64_t collects, pages_copied;
	int error;
};

static struct region regions[2];
static atomic_bool stop;

struct writer {
	struct region *r;
	uint64_t seed;
	uint64_t writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t seq = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t i = t_rnd_next(&w->seed) % w->r->words;

		__atomic_store_n(&w->r->mem[i], ++seq ^ w->seed, __ATOMIC_RELAXED);
		w->writes++;
	}
	return NULL;
}

/* Collect with reset and copy what it reports.  Returns 0 or -errno. */
static int refresh(struct region *r)
{
	size_t words_per_page = t_page_size() / sizeof(uint64_t);
	const struct pt_range *ranges;
	size_t nr;
	int n;

	n = pt_tracker_collect(r->t, PT_COLLECT_RESET, &ranges, &nr);
	if (n < 0)
		return n;
	for (size_t i = 0; i < nr; i++) {
		size_t from = ranges[i].first * words_per_page;
		size_t to = (ranges[i].first + ranges[i].count) * words_per_page;

		for (size_t w = from; w < to; w++)
			r->shadow[w] = __atomic_load_n(&r->mem[w], __ATOMIC_RELAXED);
	}
	r->collects++;
	r->pages_copied += (uint64_t)n;
	return 0;
}

static void *collector_main(void *arg)
{
	struct region *r = arg;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int ret = refresh(r);

		if (ret) {
			r->error = ret;
			break;
		}
	}
	return NULL;
}

int main(void)
{
	struct writer writers[2 * WRITERS_PER_REGION];
	pthread_t wt[2 * WRITERS_PER_REGION], ct[2];
	size_t len = REGION_PAGES * t_page_size();
	char why[256] = "";
	int ret, failed = 0;
	double end;

	if (t_softdirty_emulate(why, sizeof(why)) == T_SKIP) {
		printf("skip: %s\n", why);
		return T_SKIP;
	}
	if (!t_backend_usable(PT_BACKEND_SOFT_DIRTY, why, sizeof(why))) {
		printf("skip: soft-dirty backend unavailable: %s\n", why);
		return T_SKIP;
	}
	for (int i = 0; i < 2; i++) {
		struct region *r = &regions[i];

		/* Separate mappings with a hole between: see softdirty-trackers. */
		r->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		r->shadow = calloc(1, len);
		if (r->mem == MAP_FAILED || !r->shadow)
			DIE("cannot map %zu bytes: %s", len, strerror(errno));
		r->words = len / sizeof(uint64_t);
		ret = t_tracker_open_on(&r->t, PT_BACKEND_SOFT_DIRTY, r->mem, len);
		if (ret)
			DIE("open: %s", strerror(-ret));
	}
	for (int i = 0; i < 2 * WRITERS_PER_REGION; i++) {
		writers[i].r = &regions[i % 2];
		writers[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		writers[i].writes = 0;
		if (pthread_create(&wt[i], NULL, writer_main, &writers[i]))
			DIE("pthread_create failed");
	}
	for (int i = 0; i < 2; i++)
		if (pthread_create(&ct[i], NULL, collector_main, &regions[i]))
			DIE("pthread_create failed");

	end = t_now() + RUN_SECONDS;
	while (t_now() < end)
		usleep(20000);
	atomic_store(&stop, true);
	for (int i = 0; i < 2 * WRITERS_PER_REGION; i++)
		pthread_join(wt[i], NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(ct[i], NULL);

	for (int i = 0; i < 2; i++) {
		struct region *r = &regions[i];
		uint64_t writes = 0, stale = 0;

		for (int w = i; w < 2 * WRITERS_PER_REGION; w += 2)
			writes += writers[w].writes;
		if (r->error) {
			printf("region %d: collect failed: %s\n", i, strerror(-r->error));
			failed++;
			continue;
		}
		ret = refresh(r);
		if (ret) {
			printf("region %d: final collect failed: %s\n", i, strerror(-ret));
			failed++;
			continue;
		}
		for (size_t p = 0; p < REGION_PAGES; p++)
			if (memcmp((char *)r->mem + p * t_page_size(), (char *)r->shadow + p * t_page_size(),
				   t_page_size()))
				stale++;
		printf("region %d: %llu writes, %llu collects, %llu pages copied, %llu stale pages\n",
		       i, (unsigned long long)writes, (unsigned long long)r->collects,
		       (unsigned long long)r->pages_copied, (unsigned long long)stale);
		if (stale)
			failed++;
		if (r->collects < 10 || writes < 1000) {
			printf("region %d: too little happened to prove anything\n", i);
			failed++;
		}
		pt_tracker_close(r->t);
		munmap(r->mem, len);
		free(r->shadow);
	}
	printf("%s\n", failed ? "FAILED: a shadow differs from its region" : "shadows converged");
	return failed ? T_FAIL : T_PASS;
}
