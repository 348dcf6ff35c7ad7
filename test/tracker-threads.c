/* tracker-threads: many trackers in one process, opened, used and closed from different threads at once, stay independent. */
/*
 * Phase 1: each thread opens a tracker on its own slice of one shared
 * mapping (so registrations split and merge the same VMA concurrently),
 * writes random pages of its slice, collects and checks against its model,
 * closes, and starts over; half the time on a slice of its own private
 * mapping instead.  A page of another slice showing up is a failure: trackers
 * must be independent.
 * Phase 2: trackers opened by the main thread are written by one set of
 * threads, collected by another and closed by a third.
 */
#include <pthread.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define THREADS 4
#define SLICE_PAGES 64
#define ITERATIONS 200

struct job {
	enum pt_backend b;
	struct t_mem *shared;
	int id;
	uint64_t rnd;
	struct pt_tracker *t;
	uint8_t written[SLICE_PAGES];
	char why[256];
	bool ok;
};

static char *slice(struct job *j)
{
	return j->shared->addr + (size_t)j->id * SLICE_PAGES * t_page_size();
}

static void write_some(struct job *j, char *base)
{
	size_t ps = t_page_size();
	int n = 1 + (int)(t_rnd_next(&j->rnd) % 20);

	for (int i = 0; i < n; i++) {
		uint64_t p = t_rnd_next(&j->rnd) % SLICE_PAGES;

		base[p * ps + t_rnd_next(&j->rnd) % ps] = (char)(j->id + 1);
		j->written[p] = 1;
	}
}

/* Collect with reset: every written page reported, nothing outside the
 * slice (t_collect_map checks bounds), exact for uffd-wp. */
static bool check_slice(struct job *j)
{
	uint8_t map[SLICE_PAGES];
	bool exact = pt_tracker_backend(j->t) == PT_BACKEND_UFFD_WP;
	int n = t_collect_map(j->t, PT_COLLECT_RESET, map, SLICE_PAGES, j->why, sizeof(j->why));

	CHECK(n >= 0, "thread %d: %s", j->id, j->why);
	for (int p = 0; p < SLICE_PAGES; p++) {
		CHECK(!j->written[p] || map[p], "thread %d: written page %d not reported", j->id, p);
		CHECK(!exact || j->written[p] || map[p] == 0,
		      "thread %d: page %d reported but not written by this thread", j->id, p);
	}
	memset(j->written, 0, sizeof(j->written));
	return true;
}

static bool churn(struct job *j)
{
	size_t len = SLICE_PAGES * t_page_size();
	char *own = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool ok = false;

	CHECK(own != MAP_FAILED, "mmap: %s", strerror(errno));
	for (int it = 0; it < ITERATIONS; it++) {
		char *base = it & 1 ? own : slice(j);
		int ret = t_tracker_open_on(&j->t, j->b, base, len);

		if (ret) {
			printf("    thread %d: open: %s\n", j->id, strerror(-ret));
			goto out;
		}
		for (int round = 0; round < 3; round++) {
			write_some(j, base);
			if (!check_slice(j)) {
				pt_tracker_close(j->t);
				goto out;
			}
		}
		pt_tracker_close(j->t);
		j->t = NULL;
	}
	ok = true;
out:
	munmap(own, len);
	return ok;
}

static void *churn_main(void *arg)
{
	struct job *j = arg;

	j->ok = churn(j);
	return NULL;
}

static void *write_main(void *arg)
{
	struct job *j = arg;

	write_some(j, slice(j));
	return NULL;
}

static void *collect_main(void *arg)
{
	struct job *j = arg;

	j->ok = check_slice(j);
	return NULL;
}

static void *close_main(void *arg)
{
	struct job *j = arg;

	pt_tracker_close(j->t);
	j->t = NULL;
	return NULL;
}

/* Run fn on every job, each in its own thread, and wait for them. */
static bool each_in_thread(struct job *jobs, void *(*fn)(void *))
{
	pthread_t th[THREADS];
	int started = 0, ret = 0;

	for (; started < THREADS; started++) {
		ret = pthread_create(&th[started], NULL, fn, &jobs[started]);
		if (ret)
			break;
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	CHECK(!ret, "pthread_create: %s", strerror(ret));
	return true;
}

static bool run(enum pt_backend b, struct t_mem *m, char *why, size_t why_len)
{
	static struct job jobs[THREADS];
	int ret;

	for (int i = 0; i < THREADS; i++)
		jobs[i] = (struct job){ .b = b, .shared = m, .id = i, .rnd = 0x5eed + (uint64_t)i * 77 };
	if (!each_in_thread(jobs, churn_main))
		return false;
	for (int i = 0; i < THREADS; i++)
		if (!jobs[i].ok) {
			snprintf(why, why_len, "phase 1, thread %d: %s", i,
				 jobs[i].why[0] ? jobs[i].why : "see above");
			return false;
		}

	/* Phase 2: open here, write, collect and close from other threads. */
	for (int i = 0; i < THREADS; i++) {
		ret = t_tracker_open_on(&jobs[i].t, b, slice(&jobs[i]), SLICE_PAGES * t_page_size());
		if (ret) {
			snprintf(why, why_len, "phase 2 open: %s", strerror(-ret));
			while (i--)
				pt_tracker_close(jobs[i].t);
			return false;
		}
	}
	for (int round = 0; round < 5; round++) {
		if (!each_in_thread(jobs, write_main) || !each_in_thread(jobs, collect_main)) {
			snprintf(why, why_len, "phase 2: threads");
			each_in_thread(jobs, close_main);
			return false;
		}
		for (int i = 0; i < THREADS; i++)
			if (!jobs[i].ok) {
				snprintf(why, why_len, "phase 2, tracker %d: %s", i,
					 jobs[i].why[0] ? jobs[i].why : "see above");
				each_in_thread(jobs, close_main);
				return false;
			}
	}
	return each_in_thread(jobs, close_main);
}

int main(void)
{
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD };

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
			r = t_mem_map(&m, kinds[k], THREADS * SLICE_PAGES * t_page_size(), why, sizeof(why));
			if (r) {
				t_cell_report(name, r, why);
				continue;
			}
			why[0] = '\0';
			t_cell_report(name, run(b, &m, why, sizeof(why)) ? T_PASS : T_FAIL, why);
			t_mem_unmap(&m);
		}
	}
	return t_exit();
}
