/* tracker-model: random write patterns against a model, 16 MiB and 1 GiB, every backend x memory kind. */
/*
 * Each round writes a pattern of pages, remembered in a model, then
 * collects: every written page must be reported (no false negatives, ever),
 * and for uffd-wp on 4 KiB pages nothing else (false positives are counted
 * for the other backends and for huge pages).  The ranges must be ascending
 * and non-overlapping, so no page is reported twice (t_collect_map checks).
 *
 * The patterns aim at PAGEMAP_SCAN's buffering: the kernel fills a bounce
 * buffer of 512 regions and flushes it into our vector several times per
 * ioctl, and Linux 6.18 returns a stale walk_end when that happened and the
 * walk then completed (KERNEL-NOTES).  Isolated pages make one region each,
 * so counts around 512 and around the library's 4,096-region vector (one
 * less, exact, one more, twice) hit every boundary: vector exactly full at
 * the end of the walk, full with pages left, and several flushes in one
 * call.  The 1 GiB cells dirty more than 50,000 scattered pages and touch
 * only those, so they stay light; they run on anon and memfd only.
 *
 * PAGETRACK_TEST_SEED=n repeats a run; the seed is printed.
 */
#include <time.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A step that printed its own failure. */
#define STEP(x) do { if (!(x)) return false; } while (0)

#define SMALL_LEN (16ul << 20)
#define LARGE_LEN (1ul << 30)

struct model {
	struct pt_tracker *t;
	struct t_mem *m;
	uint64_t npages;
	uint8_t *written;	/* pages written since the last reset */
	uint8_t *map;		/* what collect reported */
	uint64_t rnd;
	bool exact;
	uint64_t false_positives;
	uint64_t collects;
	char *why;
	size_t why_len;
};

static void touch(struct model *md, uint64_t page)
{
	size_t ps = t_page_size();
	volatile uint8_t *p = (volatile uint8_t *)md->m->addr + page * ps;

	p[t_rnd_next(&md->rnd) % ps] = (uint8_t)(t_rnd_next(&md->rnd) | 1);
	md->written[page] = 1;
}

/* Collect and compare with the model; with reset the model starts over. */
static bool check(struct model *md, unsigned int flags, const char *what)
{
	uint64_t fn = 0, fp = 0, first_fn = 0, want = 0;
	int n;

	n = t_collect_map(md->t, flags, md->map, md->npages, md->why, md->why_len);
	CHECK(n >= 0, "%s: %s", what, md->why);
	md->collects++;
	for (uint64_t p = 0; p < md->npages; p++) {
		want += md->written[p];
		if (md->written[p] && !md->map[p]) {
			if (!fn)
				first_fn = p;
			fn++;
		} else if (!md->written[p] && md->map[p]) {
			fp++;
		}
	}
	CHECK(!fn, "%s: %llu written pages not reported (first: page %llu), %llu written, %d reported",
	      what, (unsigned long long)fn, (unsigned long long)first_fn,
	      (unsigned long long)want, n);
	CHECK(!md->exact || !fp, "%s: %llu pages reported but not written (%llu written)",
	      what, (unsigned long long)fp, (unsigned long long)want);
	md->false_positives += fp;
	if (flags & PT_COLLECT_RESET)
		memset(md->written, 0, md->npages);
	return true;
}

/* count isolated pages spread over [lo, npages), none adjacent to another. */
static void isolated(struct model *md, uint64_t count, uint64_t lo)
{
	uint64_t span = md->npages - lo, stride = span / count;

	if (stride < 2 || !count)
		return;
	for (uint64_t i = 0; i < count; i++)
		touch(md, lo + i * stride + (stride > 2 ? t_rnd_next(&md->rnd) % (stride - 1) : 0));
}

static void random_pages(struct model *md, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++)
		touch(md, t_rnd_next(&md->rnd) % md->npages);
}

/* Runs of 1..max_run pages at random places. */
static void runs(struct model *md, uint64_t count, uint64_t max_run)
{
	for (uint64_t i = 0; i < count; i++) {
		uint64_t len = 1 + t_rnd_next(&md->rnd) % max_run;
		uint64_t at = t_rnd_next(&md->rnd) % md->npages;

		for (uint64_t p = at; p < at + len && p < md->npages; p++)
			touch(md, p);
	}
}

static bool rounds_small(struct model *md)
{
	/* Region counts around the kernel's 512-region bounce buffer. */
	static const uint64_t counts[] = { 1, 511, 512, 513, 1024, 1537, 2047, 2048 };

	STEP(check(md, PT_COLLECT_RESET, "clean range"));
	for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
		isolated(md, counts[i], 0);
		if (!check(md, PT_COLLECT_RESET, "isolated pages"))
			return false;
	}
	random_pages(md, 300);
	runs(md, 20, 600);
	/* First and last page. */
	touch(md, 0);
	touch(md, md->npages - 1);
	STEP(check(md, 0, "random + runs, no reset"));
	/* Without reset nothing changes; more writes add to it. */
	STEP(check(md, 0, "second collect without reset"));
	random_pages(md, 100);
	STEP(check(md, PT_COLLECT_RESET, "more writes, then reset"));
	STEP(check(md, PT_COLLECT_RESET, "nothing written after reset"));
	/* pt_tracker_reset forgets. */
	random_pages(md, 500);
	CHECK(pt_tracker_reset(md->t) == 0, "pt_tracker_reset");
	memset(md->written, 0, md->npages);
	STEP(check(md, PT_COLLECT_RESET, "after pt_tracker_reset"));
	runs(md, 5, 3000);
	STEP(check(md, PT_COLLECT_RESET, "long runs"));
	/* The whole range. */
	for (uint64_t p = 0; p < md->npages; p++)
		touch(md, p);
	STEP(check(md, PT_COLLECT_RESET, "whole range"));
	for (int r = 0; r < 6; r++) {
		random_pages(md, 1 + t_rnd_next(&md->rnd) % 2000);
		STEP(check(md, r & 1 ? PT_COLLECT_RESET : 0, "random round"));
	}
	STEP(check(md, PT_COLLECT_RESET, "last"));
	return true;
}

static bool rounds_large(struct model *md)
{
	/* Region counts around the library's 4,096-region scan vector. */
	static const uint64_t counts[] = { 4095, 4096, 4097, 8192, 12289 };

	STEP(check(md, PT_COLLECT_RESET, "clean range"));
	/* More than 50,000 scattered dirty pages, several vectors' worth. */
	random_pages(md, 60000);
	STEP(check(md, 0, "60,000 random pages, no reset"));
	STEP(check(md, PT_COLLECT_RESET, "60,000 random pages"));
	isolated(md, 52000, 0);
	STEP(check(md, PT_COLLECT_RESET, "52,000 isolated pages"));
	for (size_t i = 0; i < ARRAY_LEN(counts); i++) {
		isolated(md, counts[i], 0);
		if (!check(md, PT_COLLECT_RESET, "isolated pages"))
			return false;
		/* The same count packed at the very end of the range: the walk
		 * ends right after the vector fills. */
		isolated(md, counts[i], md->npages - 2 * counts[i]);
		if (!check(md, PT_COLLECT_RESET, "isolated pages at the end"))
			return false;
	}
	random_pages(md, 20000);
	runs(md, 50, 2000);
	STEP(check(md, PT_COLLECT_RESET, "random pages and runs"));
	random_pages(md, 1000);
	CHECK(pt_tracker_reset(md->t) == 0, "pt_tracker_reset");
	memset(md->written, 0, md->npages);
	STEP(check(md, PT_COLLECT_RESET, "after pt_tracker_reset"));
	return true;
}

static bool run_cell(enum pt_backend b, struct t_mem *m, bool large, uint64_t seed,
		     char *why, size_t why_len)
{
	struct model md = {
		.m = m, .npages = m->len / t_page_size(), .rnd = seed | 1,
		.why = why, .why_len = why_len,
	};
	bool ok = false;
	int ret;

	/* Exact only where the kernel answers per 4 KiB page. */
	md.exact = b == PT_BACKEND_UFFD_WP && m->kind != T_MEM_THP;
	md.written = calloc(md.npages, 1);
	md.map = calloc(md.npages, 1);
	if (!md.written || !md.map) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	ret = t_tracker_open_on(&md.t, b, m->addr, m->len);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	ok = large ? rounds_large(&md) : rounds_small(&md);
	if (ok && md.false_positives)
		printf("    %llu false positives over %llu collects\n",
		       (unsigned long long)md.false_positives, (unsigned long long)md.collects);
	if (!ok && !why[0])
		snprintf(why, why_len, "see above (seed %llu)", (unsigned long long)seed);
	pt_tracker_close(md.t);
out:
	free(md.written);
	free(md.map);
	return ok;
}

int main(void)
{
	const char *env = getenv("PAGETRACK_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;

	printf("seed %llu\n", (unsigned long long)seed);
	for (int large = 0; large < 2; large++) {
		for (size_t bi = 0; bi < ARRAY_LEN(t_all_backends); bi++) {
			enum pt_backend b = t_all_backends[bi];

			for (int k = 0; k < T_MEM_NKINDS; k++) {
				size_t len = large ? LARGE_LEN : SMALL_LEN;
				char name[64], why[256] = "";
				struct t_mem m;
				int r;

				snprintf(name, sizeof(name), "%s x %s x %s", pt_backend_name(b),
					 t_mem_kind_names[k], large ? "1 GiB" : "16 MiB");
				if (!t_backend_usable(b, why, sizeof(why))) {
					t_cell_report(name, T_SKIP, why);
					continue;
				}
				if (large && k != T_MEM_ANON && k != T_MEM_MEMFD) {
					t_cell_report(name, T_SKIP, "1 GiB runs on anon and memfd only: "
						      "other kinds would write it to disk or populate huge pages; "
						      "they run at 16 MiB");
					continue;
				}
				r = t_mem_map(&m, k, len, why, sizeof(why));
				if (r) {
					t_cell_report(name, r, why);
					continue;
				}
				why[0] = '\0';
				r = run_cell(b, &m, large, seed + bi * 131 + k, why, sizeof(why));
				t_cell_report(name, r ? T_PASS : T_FAIL, why);
				t_mem_unmap(&m);
			}
		}
	}
	return t_exit();
}
