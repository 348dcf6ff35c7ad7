/* mprotect-slots: trackers opened and closed from many threads, under writes, and after munmap, stay independent. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"

#define NPAGES 8
#define NTHREADS 4
#define CYCLES 300

/* Each thread opens, writes, collects and closes its own trackers. */
struct worker {
	pthread_t thread;
	int index;
	char why[200];
	bool ok;
};

static bool worker_cycles(struct worker *w)
{
	size_t ps = t_page_size(), len = NPAGES * ps;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t seed = 0x5eed + (uint64_t)w->index;

	if (mem == MAP_FAILED) {
		snprintf(w->why, sizeof(w->why), "mmap: %s", strerror(errno));
		return false;
	}
	for (int c = 0; c < CYCLES; c++) {
		struct pt_tracker *t;
		uint8_t want[NPAGES] = { 0 }, got[NPAGES];
		int ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, mem, len), n, expect = 0;

		if (ret) {
			snprintf(w->why, sizeof(w->why), "cycle %d: open: %s", c, strerror(-ret));
			goto fail;
		}
		for (int i = 0; i < 3; i++) {
			uint64_t p = t_rnd_next(&seed) % NPAGES;

			mem[p * ps + (size_t)w->index] = (char)c;
			expect += !want[p];
			want[p] = 1;
		}
		n = t_collect_map(t, PT_COLLECT_RESET, got, NPAGES, w->why, sizeof(w->why));
		pt_tracker_close(t);
		if (n != expect || memcmp(want, got, NPAGES)) {
			snprintf(w->why, sizeof(w->why), "cycle %d: %d pages reported, want %d", c, n,
				 expect);
			goto fail;
		}
		/* Closed: plain memory again. */
		mem[(uint64_t)c % NPAGES * ps] = 1;
	}
	munmap(mem, len);
	return true;
fail:
	munmap(mem, len);
	return false;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	w->ok = worker_cycles(w);
	return NULL;
}

static bool many_threads(char *why, size_t why_len)
{
	struct worker w[NTHREADS];

	for (int i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .index = i };
		CHECK(pthread_create(&w[i].thread, NULL, worker_main, &w[i]) == 0, "pthread_create");
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(w[i].thread, NULL);
	for (int i = 0; i < NTHREADS; i++)
		if (!w[i].ok) {
			snprintf(why, why_len, "thread %d: %s", i, w[i].why);
			return false;
		}
	return true;
}

/* Writers keep writing while the range's tracker is opened and closed:
 * faults that land just as close unpublishes the range must not crash. */
struct writer {
	pthread_t thread;
	char *mem;
	atomic_int *stop;
	uint64_t seed, writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t words = NPAGES * t_page_size() / 8;

	while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
		uint64_t r = t_rnd_next(&w->seed);

		atomic_store_explicit((_Atomic uint64_t *)w->mem + r % words, r, memory_order_relaxed);
		if (!(++w->writes % 16))
			sched_yield();
	}
	return NULL;
}

static bool close_under_writes(char *why, size_t why_len)
{
	size_t len = NPAGES * t_page_size();
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct writer w[2];
	atomic_int stop = 0;
	uint64_t reported = 0;
	int c, ret = 0;

	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	for (int i = 0; i < 2; i++) {
		w[i] = (struct writer){ .mem = mem, .stop = &stop, .seed = 77 + (uint64_t)i };
		CHECK(pthread_create(&w[i].thread, NULL, writer_main, &w[i]) == 0, "pthread_create");
	}
	for (c = 0; c < CYCLES; c++) {
		struct pt_tracker *t;
		uint8_t got[NPAGES];
		int n;

		ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, mem, len);
		if (ret)
			break;
		sched_yield();
		n = t_collect_map(t, PT_COLLECT_RESET, got, NPAGES, why, why_len);
		sched_yield();
		pt_tracker_close(t);
		if (n < 0) {
			ret = n;
			break;
		}
		reported += (uint64_t)n;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i].thread, NULL);
	munmap(mem, len);
	CHECK(ret == 0, "cycle %d: %s", c, strerror(-ret));
	printf("    %d open/close cycles, %llu pages reported, %llu writes\n", c,
	       (unsigned long long)reported, (unsigned long long)(w[0].writes + w[1].writes));
	CHECK(reported > 0, "writers never seen by a tracker");
	return true;
}

static bool close_after_munmap(char *why, size_t why_len)
{
	size_t len = NPAGES * t_page_size();
	struct pt_tracker *t;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret, n;
	uint8_t got[NPAGES];

	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, mem, len);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	mem[0] = 1;
	munmap(mem, len);
	pt_tracker_close(t);
	/* The range is free again for a tracker on new memory there. */
	mem = mmap(mem, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		   -1, 0);
	CHECK(mem != MAP_FAILED, "mmap again: %s", strerror(errno));
	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, mem, len);
	CHECK(ret == 0, "open on the same addresses: %s", strerror(-ret));
	mem[t_page_size()] = 1;
	n = t_collect_map(t, 0, got, NPAGES, why, why_len);
	pt_tracker_close(t);
	munmap(mem, len);
	CHECK(n == 1 && got[1], "%d pages reported, want 1", n);
	return true;
}

static bool overlap_refused(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = NPAGES * ps;
	char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct pt_tracker *a, *b = NULL;
	int ret;

	(void)why;
	(void)why_len;
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	ret = t_tracker_open_on(&a, PT_BACKEND_MPROTECT, mem, 4 * ps);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	ret = t_tracker_open_on(&b, PT_BACKEND_MPROTECT, mem + 3 * ps, 4 * ps);
	CHECK(ret == -EEXIST, "overlapping open returned %d", ret);
	ret = t_tracker_open_on(&b, PT_BACKEND_MPROTECT, mem + 4 * ps, 4 * ps);
	CHECK(ret == 0, "adjacent open: %s", strerror(-ret));
	pt_tracker_close(a);
	pt_tracker_close(b);
	munmap(mem, len);
	return true;
}

int main(void)
{
	static const struct t_cell cases[] = {
		{ "trackers in many threads", many_threads },
		{ "open/close under writes", close_under_writes },
		{ "close after munmap", close_after_munmap },
		{ "overlapping ranges refused", overlap_refused },
	};
	char why[256] = "";

	if (!t_backend_usable(PT_BACKEND_MPROTECT, why, sizeof(why))) {
		printf("skip: mprotect backend unavailable: %s\n", why);
		return T_SKIP;
	}
	t_run_cells(cases, sizeof(cases) / sizeof(cases[0]));
	return t_exit();
}
