/* SPDX-License-Identifier: MIT */
/*
 * adaptive.c - plain against adaptive tracking (PT_TRACK_ADAPTIVE) on the
 * writer's side of an epoch: the stores (with the faults tracking makes
 * them take), the collect with reset, and the copy of what it reported, in
 * us per epoch, next to a full copy of the range, with the fault cost the
 * adaptive tracker measured in the same run beside every figure.
 *
 * Workloads on --region-mib MiB MAP_SHARED memfds (what a region is), each
 * epoch:
 *  - rewrite: the same --hot pages (scattered) rewritten, plus 1% random
 *    others (2,464 of 65,536 pages, the same ones: the exchange's books
 *    wrote that many per epoch before their page-group layout);
 *  - fresh: --hot pages never written before in the run (no rewrites:
 *    adaptive must stay within a few percent of plain);
 *  - all: every page of the range (the hot set is everything: adaptive
 *    must not be worse than a full copy).
 * Methods: plain; adaptive (the way of scanning around hot pages chosen as
 * it runs, the default); adaptive-runs and adaptive-read-first (each way
 * forced, pt_uffd_hot_scan; see src/uffd.c); fullcopy (memcpy of the whole
 * range, no tracking).  Each method has a memfd of its own (another one
 * each run), and the methods take turns epoch by epoch (in an order that
 * changes each epoch), so that other work on the machine weighs on each
 * alike within one run.  A run is
 * --warm epochs, then --epochs measured; its figure is the median epoch;
 * a row is the median of --reps runs.  Then each adaptive method over
 * plain tracking and over the full copy of the same run, the median of
 * those ratios.  Faults per epoch (pt_tracker_stats' faulted) and the
 * median collect are printed as notes.
 */
#include <sys/mman.h>

#include "bench.h"
#include "pagetrack.h"

#include "internal.h"

static long region_mib = 256, hot_pages = 2464, epochs = 60, warm = 10;

static const struct bench_option options[] = {
	{ "region-mib", "size of each range in MiB", 16, 4096, &region_mib },
	{ "hot", "pages written per epoch (rewrite, fresh)", 16, 1L << 20, &hot_pages },
	{ "epochs", "epochs measured per run", 10, 10000, &epochs },
	{ "warm", "epochs before measuring", 0, 1000, &warm },
	{ NULL, NULL, 0, 0, NULL },
};

enum workload { W_REWRITE, W_FRESH, W_ALL, W_N };
enum method { M_PLAIN, M_ADAPTIVE, M_RUNS, M_READ_FIRST, M_FULLCOPY, M_N };
static const char *const workload_names[W_N] = { "rewrite", "fresh", "all" };
static const char *const method_names[M_N] = { "plain", "adaptive", "adaptive-runs",
					       "adaptive-read-first", "fullcopy" };

static size_t ps;
static uint64_t npages;
static char *mem[M_N], *shadow;
/* Run r gives method m the memfd (m + r) % M_N: the same copy costs up to
 * 15% more from one memfd than from another here (which guest pages back
 * them, a virtual machine's doing), so each method uses each in turn. */
static int mem_shift;

static char *mem_of(enum method m)
{
	return mem[(m + mem_shift) % M_N];
}
static uint64_t *perm;

static uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* One method's run. */
struct run {
	struct pt_tracker *tr;
	uint64_t rnd;
	double *t, *c;		/* per measured epoch: all, collect (us) */
	struct pt_tracker_stats st0;
	double epoch_us;	/* median epoch: stores + collect + copy */
	double collect_us;	/* of which the collect, median */
	double faults_per_epoch;
	double fault_ns, copy_ns;
};

/* Write the workload's pages of epoch e into m. */
static void write_epoch(char *m, enum workload w, uint64_t e, uint64_t *rnd)
{
	switch (w) {
	case W_REWRITE:
		for (uint64_t i = 0; i < (uint64_t)hot_pages; i++)
			m[perm[i] * ps + (e * 8) % ps] = (char)e;
		for (uint64_t i = 0; i < npages / 100; i++)
			m[(rnd_next(rnd) % npages) * ps + (e * 8) % ps] = (char)e;
		break;
	case W_FRESH:
		for (uint64_t i = 0; i < (uint64_t)hot_pages; i++)
			m[perm[(e * (uint64_t)hot_pages + i) % npages] * ps + (e * 8) % ps] = (char)e;
		break;
	default:
		for (uint64_t p = 0; p < npages; p++)
			m[p * ps + (e * 8) % ps] = (char)e;
		break;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median_of(double *v, long n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return v[n / 2];
}

/* One epoch of method m; false on a failure (reported). */
static bool one_epoch(enum workload w, enum method m, struct run *r, long e)
{
	double t0 = bench_now_ns(), t1 = 0;
	const struct pt_range *rg;
	size_t nr;
	int ret;

	write_epoch(mem_of(m), w, (uint64_t)e, &r->rnd);
	if (m == M_FULLCOPY) {
		memcpy(shadow, mem_of(m), npages * ps);
	} else {
		pt_uffd_hot_scan = m == M_RUNS ? PT_HOT_SCAN_RUNS :
				   m == M_READ_FIRST ? PT_HOT_SCAN_READ_FIRST : PT_HOT_SCAN_AUTO;
		t1 = bench_now_ns();
		ret = pt_tracker_collect(r->tr, PT_COLLECT_RESET, &rg, &nr);
		t1 = bench_now_ns() - t1;
		pt_uffd_hot_scan = PT_HOT_SCAN_AUTO;
		if (ret < 0) {
			bench_failed("memfd", method_names[m], workload_names[w], "collect: %s",
				     strerror(-ret));
			return false;
		}
		for (size_t i = 0; i < nr; i++)
			memcpy(shadow + rg[i].first * ps, mem_of(m) + rg[i].first * ps, rg[i].count * ps);
	}
	if (e == warm - 1 && r->tr)
		pt_tracker_stats(r->tr, &r->st0);
	if (e >= warm) {
		r->t[e - warm] = (bench_now_ns() - t0) / 1e3;
		r->c[e - warm] = t1 / 1e3;
	}
	return true;
}

/* One run of workload w, every method, epochs interleaved. */
static bool one_run(enum workload w, struct run runs[M_N])
{
	bool ok = true;

	for (int m = 0; m < M_N; m++) {
		struct pt_tracker_opts o = { .sz = sizeof(o), .backend = PT_BACKEND_UFFD_WP,
					     .flags = m == M_PLAIN ? 0 : PT_TRACK_ADAPTIVE };
		int ret;

		runs[m] = (struct run){ .rnd = 0x9e3779b97f4a7c15ull,
					.st0 = { .sz = sizeof(struct pt_tracker_stats) } };
		runs[m].t = calloc((size_t)epochs, sizeof(double));
		runs[m].c = calloc((size_t)epochs, sizeof(double));
		if (!runs[m].t || !runs[m].c) {
			bench_failed("memfd", method_names[m], workload_names[w], "out of memory");
			ok = false;
			continue;
		}
		if (m == M_FULLCOPY)
			continue;
		ret = pt_tracker_open(&runs[m].tr, mem_of((enum method)m), npages * ps, &o);
		if (ret) {
			bench_failed("memfd", method_names[m], workload_names[w], "open: %s",
				     strerror(-ret));
			ok = false;
		}
	}
	/* Each epoch its own order: a step of 1 to M_N - 1 through the
	 * methods (M_N is prime), so that each method follows each of the
	 * others as often (one that follows plain tracking's epoch of 65,536
	 * faults was measured 15% slower). */
	for (long e = 0; ok && e < warm + epochs; e++)
		for (int i = 0; ok && i < M_N; i++) {
			long step = 1 + e % (M_N - 1);
			enum method m = (enum method)((e + i * step) % M_N);

			ok = one_epoch(w, m, &runs[m], e);
		}
	for (int m = 0; m < M_N; m++) {
		struct run *r = &runs[m];

		if (ok) {
			r->epoch_us = median_of(r->t, epochs);
			r->collect_us = median_of(r->c, epochs);
		}
		if (ok && r->tr) {
			struct pt_tracker_stats st = { .sz = sizeof(st) };

			pt_tracker_stats(r->tr, &st);
			r->faults_per_epoch = (double)(st.faulted - r->st0.faulted) / (double)epochs;
			r->fault_ns = (double)st.fault_ns;
			r->copy_ns = (double)st.copy_ns;
		}
		pt_tracker_close(r->tr);
		free(r->t);
		free(r->c);
	}
	return ok;
}

int main(int argc, char **argv)
{
	static struct bench_samples s[W_N][M_N], faults[W_N][M_N], collect[W_N][M_N];
	static struct bench_samples vs_plain[W_N][M_N], vs_full[W_N][M_N], fault_ns, copy_ns;
	char why[256], note[320];

	bench_init(argc, argv, "adaptive", "plain vs adaptive tracking: writer's time per epoch",
		   options);
	if (pt_backend_probe(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		bench_note("uffd-wp unavailable: %s", why);
		return bench_finish();
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	npages = (uint64_t)region_mib << 20 >> __builtin_ctzl(ps);
	if ((uint64_t)hot_pages * 4 > npages)
		hot_pages = (long)(npages / 4);
	for (int m = 0; m < M_N; m++) {
		int fd = memfd_create("bench-adaptive", MFD_CLOEXEC);

		if (fd < 0 || ftruncate(fd, (off_t)(npages * ps)))
			return bench_failed("memfd", "-", "-", "memfd: %s", strerror(errno)),
			       bench_finish();
		mem[m] = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (mem[m] == MAP_FAILED)
			return bench_failed("memfd", "-", "-", "mmap: %s", strerror(errno)),
			       bench_finish();
		memset(mem[m], 1, npages * ps);
	}
	shadow = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	perm = malloc(npages * sizeof(*perm));
	if (shadow == MAP_FAILED || !perm)
		return bench_failed("memfd", "-", "-", "out of memory"), bench_finish();
	memset(shadow, 1, npages * ps);
	{
		uint64_t rnd = 0xc2b2ae3d27d4eb4full;

		for (uint64_t i = 0; i < npages; i++)
			perm[i] = i;
		for (uint64_t i = npages - 1; i > 0; i--) {
			uint64_t j = rnd_next(&rnd) % (i + 1), x = perm[i];

			perm[i] = perm[j];
			perm[j] = x;
		}
	}
	bench_param("region_mib", (double)region_mib);
	bench_param("hot_pages", (double)hot_pages);
	bench_param("epochs", (double)epochs);
	for (int rep = 0; rep < bench_opts.reps; rep++) {
		mem_shift = rep % M_N;
		for (int w = 0; w < W_N; w++) {
			struct run r[M_N];

			if (!one_run((enum workload)w, r))
				continue;
			for (int m = 0; m < M_N; m++) {
				bench_add_sample(&s[w][m], r[m].epoch_us);
				bench_add_sample(&faults[w][m], r[m].faults_per_epoch);
				bench_add_sample(&collect[w][m], r[m].collect_us);
			}
			bench_add_sample(&fault_ns, r[M_ADAPTIVE].fault_ns);
			bench_add_sample(&copy_ns, r[M_ADAPTIVE].copy_ns);
			for (int m = M_ADAPTIVE; m < M_FULLCOPY; m++) {
				bench_add_sample(&vs_plain[w][m], r[m].epoch_us / r[M_PLAIN].epoch_us);
				bench_add_sample(&vs_full[w][m], r[m].epoch_us / r[M_FULLCOPY].epoch_us);
			}
		}
	}
	bench_section("epoch", "writer's time per epoch: stores + collect + copy of what it reported",
		      "us");
	for (int w = 0; w < W_N; w++) {
		for (int m = 0; m < M_N; m++) {
			snprintf(note, sizeof(note), "faults/epoch %.0f, collect %.0f us; fault %.0f ns, "
				 "page copy %.0f ns (medians over the runs, as adaptive measured them)",
				 bench_median(&faults[w][m]), bench_median(&collect[w][m]),
				 bench_median(&fault_ns), bench_median(&copy_ns));
			bench_row(&(struct bench_row){ .memory = "memfd", .method = method_names[m],
						       .variant = workload_names[w], .samples = &s[w][m],
						       .note = m == M_FULLCOPY ? NULL : note });
		}
	}
	bench_section("ratio", "the same, over plain tracking's and over the full copy's of the "
		      "same run (the issue: fresh within 5% of plain, all no worse than the full "
		      "copy)", "x");
	for (int w = 0; w < W_N; w++) {
		for (int m = M_ADAPTIVE; m < M_FULLCOPY; m++) {
			struct bench_row row = { .memory = "memfd", .method = method_names[m] };
			char vp[64], vf[64];

			snprintf(vp, sizeof(vp), "%s/plain", workload_names[w]);
			snprintf(vf, sizeof(vf), "%s/fullcopy", workload_names[w]);
			row.variant = vp;
			row.samples = &vs_plain[w][m];
			if (w == W_FRESH && m == M_ADAPTIVE)
				row.targets[row.ntargets++] = (struct bench_target){ BENCH_AT_MOST, 1.05,
										     "<= 1.05" };
			bench_row(&row);
			row.variant = vf;
			row.samples = &vs_full[w][m];
			row.ntargets = 0;
			if (w == W_ALL && m == M_ADAPTIVE)
				row.targets[row.ntargets++] = (struct bench_target){ BENCH_AT_MOST, 1.0,
										     "<= 1.0" };
			bench_row(&row);
		}
	}
	return bench_finish();
}
