/* SPDX-License-Identifier: MIT */
/*
 * adaptive.c - plain against adaptive tracking (PT_TRACK_ADAPTIVE) on the
 * writer's side of an epoch: the stores (with the faults tracking makes
 * them take), the collect with reset, and the copy of what it reported, in
 * us per epoch, next to a full copy of the range, with the fault cost the
 * tracker measured at open in the same run beside every figure.
 *
 * Workloads on a --region-mib MiB MAP_SHARED memfd (what a region is), each
 * epoch:
 *  - rewrite: the same --hot pages (scattered) rewritten, plus 1% random
 *    others (the exchange's shape: 2,464 of 65,536 pages, the same ones);
 *  - fresh: --hot pages never written before in the run (no rewrites:
 *    adaptive must stay within a few percent of plain);
 *  - all: every page of the range (the hot set is everything: adaptive
 *    must not be worse than a full copy).
 * Methods: plain; adaptive (the scan around hot pages chosen as it runs,
 * the default); adaptive-runs and adaptive-read-first (each way of
 * scanning around hot pages forced, pt_uffd_hot_scan; see src/uffd.c);
 * fullcopy (memcpy of the whole range, no tracking).  --epochs epochs per run after --warm ones;
 * the figure per run is the median epoch, the row the median of --reps
 * runs, methods interleaved run by run so that other work on the machine
 * weighs on each alike; then each adaptive method over plain tracking and
 * over the full copy of the same rep, the median of those ratios.  Faults per epoch (pt_tracker_stats' faulted) are
 * printed as a note.
 */
#include <sys/mman.h>

#include "bench.h"
#include "pagetrack.h"

#include "internal.h"

static long region_mib = 256, hot_pages = 2464, epochs = 60, warm = 10;

static const struct bench_option options[] = {
	{ "region-mib", "size of the range in MiB", 16, 4096, &region_mib },
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
static char *mem, *shadow;
static uint64_t *perm;

static uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

struct run {
	double epoch_us;	/* median epoch: stores + collect + copy */
	double collect_us;	/* of which the collect, median */
	double faults_per_epoch;
	double fault_ns, copy_ns;
	double hot;
};

/* Write the workload's pages for epoch e; returns pages written. */
static uint64_t write_epoch(enum workload w, uint64_t e, uint64_t *rnd)
{
	uint64_t n = 0;

	switch (w) {
	case W_REWRITE:
		for (uint64_t i = 0; i < (uint64_t)hot_pages; i++)
			mem[perm[i] * ps + (e * 8) % ps] = (char)e, n++;
		for (uint64_t i = 0; i < npages / 100; i++)
			mem[(rnd_next(rnd) % npages) * ps + (e * 8) % ps] = (char)e, n++;
		break;
	case W_FRESH:
		for (uint64_t i = 0; i < (uint64_t)hot_pages; i++)
			mem[perm[(e * (uint64_t)hot_pages + i) % npages] * ps + (e * 8) % ps] = (char)e, n++;
		break;
	default:
		for (uint64_t p = 0; p < npages; p++)
			mem[p * ps + (e * 8) % ps] = (char)e, n++;
		break;
	}
	return n;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static bool one_run(enum workload w, enum method m, struct run *out)
{
	struct pt_tracker_opts o = { .sz = sizeof(o), .backend = PT_BACKEND_UFFD_WP,
				     .flags = m == M_PLAIN || m == M_FULLCOPY ? 0 : PT_TRACK_ADAPTIVE };
	struct pt_tracker_stats st = { .sz = sizeof(st) }, st0 = { .sz = sizeof(st0) };
	double *t = calloc((size_t)epochs, sizeof(double));
	double *c = calloc((size_t)epochs, sizeof(double));
	struct pt_tracker *tr = NULL;
	uint64_t rnd = 0x9e3779b97f4a7c15ull;
	int ret;

	if (!t || !c) {
		free(t);
		free(c);
		return false;
	}
	pt_uffd_hot_scan = m == M_RUNS ? PT_HOT_SCAN_RUNS :
			   m == M_READ_FIRST ? PT_HOT_SCAN_READ_FIRST : PT_HOT_SCAN_AUTO;
	if (m != M_FULLCOPY) {
		ret = pt_tracker_open(&tr, mem, npages * ps, &o);
		if (ret) {
			bench_failed("memfd", method_names[m], workload_names[w], "open: %s",
				     strerror(-ret));
			free(t);
			free(c);
			return false;
		}
	}
	for (long e = 0; e < warm + epochs; e++) {
		double t0 = bench_now_ns(), t1 = 0;
		const struct pt_range *r;
		size_t nr;

		write_epoch(w, (uint64_t)e, &rnd);
		if (m == M_FULLCOPY) {
			memcpy(shadow, mem, npages * ps);
		} else {
			t1 = bench_now_ns();
			ret = pt_tracker_collect(tr, PT_COLLECT_RESET, &r, &nr);
			t1 = bench_now_ns() - t1;
			if (ret < 0) {
				bench_failed("memfd", method_names[m], workload_names[w], "collect: %s",
					     strerror(-ret));
				pt_tracker_close(tr);
				free(t);
				free(c);
				return false;
			}
			for (size_t i = 0; i < nr; i++)
				memcpy(shadow + r[i].first * ps, mem + r[i].first * ps, r[i].count * ps);
		}
		if (e == warm - 1 || (!warm && !e && tr))
			pt_tracker_stats(tr, &st0);
		if (e >= warm) {
			t[e - warm] = (bench_now_ns() - t0) / 1e3;
			c[e - warm] = t1 / 1e3;
		}
	}
	qsort(t, (size_t)epochs, sizeof(double), cmp_double);
	qsort(c, (size_t)epochs, sizeof(double), cmp_double);
	out->epoch_us = t[epochs / 2];
	out->collect_us = c[epochs / 2];
	out->faults_per_epoch = out->fault_ns = out->copy_ns = out->hot = 0;
	if (tr) {
		pt_tracker_stats(tr, &st);
		out->faults_per_epoch = (double)(st.faulted - st0.faulted) / (double)epochs;
		out->fault_ns = (double)st.fault_ns;
		out->copy_ns = (double)st.copy_ns;
		out->hot = (double)st.hot_pages;
		pt_tracker_close(tr);
	}
	free(t);
	free(c);
	return true;
}

int main(int argc, char **argv)
{
	struct bench_samples s[W_N][M_N], faults[W_N][M_N], collect[W_N][M_N], fault_ns, copy_ns;
	static struct bench_samples vs_plain[W_N][M_N], vs_full[W_N][M_N];
	double epoch_us[W_N][M_N];
	char why[256], note[320];
	int fd;

	memset(s, 0, sizeof(s));
	memset(faults, 0, sizeof(faults));
	memset(collect, 0, sizeof(collect));
	memset(&fault_ns, 0, sizeof(fault_ns));
	memset(&copy_ns, 0, sizeof(copy_ns));
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
	fd = memfd_create("bench-adaptive", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)(npages * ps)))
		return bench_failed("memfd", "-", "-", "memfd: %s", strerror(errno)), bench_finish();
	mem = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	shadow = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	perm = malloc(npages * sizeof(*perm));
	if (mem == MAP_FAILED || shadow == MAP_FAILED || !perm)
		return bench_failed("memfd", "-", "-", "out of memory"), bench_finish();
	memset(mem, 1, npages * ps);
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
		for (int w = 0; w < W_N; w++) {
			for (int m = 0; m < M_N; m++) {
				struct run r;

				epoch_us[w][m] = 0;
				if (!one_run((enum workload)w, (enum method)m, &r))
					continue;
				epoch_us[w][m] = r.epoch_us;
				bench_add_sample(&s[w][m], r.epoch_us);
				bench_add_sample(&faults[w][m], r.faults_per_epoch);
				bench_add_sample(&collect[w][m], r.collect_us);
				if (m == M_ADAPTIVE && r.fault_ns > 0) {
					bench_add_sample(&fault_ns, r.fault_ns);
					bench_add_sample(&copy_ns, r.copy_ns);
				}
			}
			/* Against the baselines of the same rep. */
			for (int m = M_ADAPTIVE; m < M_FULLCOPY; m++) {
				if (epoch_us[w][m] > 0 && epoch_us[w][M_PLAIN] > 0)
					bench_add_sample(&vs_plain[w][m], epoch_us[w][m] / epoch_us[w][M_PLAIN]);
				if (epoch_us[w][m] > 0 && epoch_us[w][M_FULLCOPY] > 0)
					bench_add_sample(&vs_full[w][m],
							 epoch_us[w][m] / epoch_us[w][M_FULLCOPY]);
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
		      "same rep (the issue: fresh within 5% of plain, all no worse than the full "
		      "copy)", "x");
	for (int w = 0; w < W_N; w++) {
		for (int m = M_ADAPTIVE; m < M_FULLCOPY; m++) {
			struct bench_row row = { .memory = "memfd", .method = method_names[m],
						 .variant = workload_names[w] };
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
