/* tracker-basic: the seed scenario, reset/re-write and marks, for every backend x memory kind. */
#include "harness.h"

#define NPAGES 10

static bool seed_scenario(enum pt_backend b, struct t_mem *m, char *why, size_t why_len)
{
	size_t elems = t_page_size() / sizeof(int);
	int *array = (int *)m->addr;
	struct pt_tracker *t;
	uint8_t map[NPAGES];
	int ret, n;

	ret = t_tracker_open_on(&t, b, m->addr, m->len);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	CHECK(pt_tracker_backend(t) == b, "backend %d", pt_tracker_backend(t));

	/* Nothing written yet. */
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "clean range reports %d pages (%s)", n, why);

	array[0] = 5;
	array[1] = 9;
	array[elems] = 14;
	array[3 * elems + 60] = 35;
	n = t_collect_map(t, PT_COLLECT_RESET, map, NPAGES, why, why_len);
	CHECK(n == 3, "seed writes report %d pages, want 3 (%s)", n, why);
	CHECK(map[0] && map[1] && map[3], "want pages 0, 1, 3");

	/* After reset: nothing until written again; page 1 again is reported again. */
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "after reset %d pages", n);
	array[elems] = 15;
	array[9 * elems] = 1;
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 2 && map[1] && map[9], "rewrite reports %d pages", n);
	/* Without reset they stay reported. */
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 2 && map[1] && map[9], "collect without reset lost pages: %d", n);
	/* pt_tracker_reset forgets them. */
	ret = pt_tracker_reset(t);
	CHECK(ret == 0, "reset: %s", strerror(-ret));
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "after pt_tracker_reset %d pages", n);
	/* Reading does not count as writing. */
	CHECK(array[3 * elems + 60] == 35, "data changed");
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "a read was reported as a write (%d pages)", n);
	/* Whole range. */
	for (int p = 0; p < NPAGES; p++)
		array[p * elems + 7] = p;
	n = t_collect_map(t, PT_COLLECT_RESET, map, NPAGES, why, why_len);
	CHECK(n == NPAGES, "all pages written, %d reported", n);

	/* Pages marked by the caller are reported with the written ones, kept
	 * by a collect without reset, consumed by one with reset. */
	CHECK(pt_tracker_mark(t, 0, 0) == -EINVAL, "zero-length mark accepted");
	CHECK(pt_tracker_mark(t, NPAGES - 1, 2) == -EINVAL, "mark past the end accepted");
	CHECK(pt_tracker_mark(t, UINT64_MAX, 2) == -EINVAL, "overflowing mark accepted");
	CHECK(pt_tracker_mark(t, 5, 2) == 0, "mark failed");
	array[6 * elems] = 6;
	array[8 * elems] = 8;
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 3 && map[5] && map[6] && map[8], "marks + writes: %d pages (%s)", n, why);
	n = t_collect_map(t, PT_COLLECT_RESET, map, NPAGES, why, why_len);
	CHECK(n == 3 && map[5] && map[6] && map[8], "marks kept: %d pages (%s)", n, why);
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "marks not consumed by the reset: %d pages", n);
	CHECK(pt_tracker_mark(t, 2, 1) == 0, "mark failed");
	CHECK(pt_tracker_reset(t) == 0, "reset failed");
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "pt_tracker_reset kept a mark: %d pages", n);
	pt_tracker_close(t);
	return true;
}

int main(void)
{
	for (size_t bi = 0; bi < sizeof(t_all_backends) / sizeof(t_all_backends[0]); bi++) {
		enum pt_backend b = t_all_backends[bi];

		for (int k = 0; k < T_MEM_NKINDS; k++) {
			char name[64], why[256] = "";
			struct t_mem m;
			int r;

			snprintf(name, sizeof(name), "%s x %s", pt_backend_name(b), t_mem_kind_names[k]);
			if (!t_backend_usable(b, why, sizeof(why))) {
				t_cell_report(name, T_SKIP, why);
				continue;
			}
			r = t_mem_map(&m, k, NPAGES * t_page_size(), why, sizeof(why));
			if (r) {
				t_cell_report(name, r, why);
				continue;
			}
			why[0] = '\0';
			t_cell_report(name, seed_scenario(b, &m, why, sizeof(why)) ? T_PASS : T_FAIL, why);
			t_mem_unmap(&m);
		}
	}
	return t_exit();
}
