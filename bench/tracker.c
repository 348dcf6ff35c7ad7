/* SPDX-License-Identifier: MIT */
/*
 * tracker.c - what tracking costs, per backend, side by side in one run:
 *
 *  1. first write: the cost of the first write to each page of a tracked
 *     range (a write-protect fault, resolved by the kernel for uffd-wp, by
 *     our SIGSEGV handler for mprotect), in ns per page, with untracked
 *     memory as the floor; pages in sequential and in scattered order.
 *  2. collect: pt_tracker_collect(PT_COLLECT_RESET) on a 1 GiB region with
 *     0, 100, 1,000 and 10,000 scattered dirty pages, next to the old way:
 *     reading /proc/self/pagemap for the range (8 bytes a page, pread in
 *     big chunks), plus clear_refs where soft-dirty exists.
 *  3. refresh, the seed's use: collect + copy the dirty pages into a second
 *     1 GiB buffer, next to memcpy of the whole region.
 *
 * Each for private anonymous memory, a MAP_SHARED memfd, and a MAP_SHARED
 * regular file (under $TMPDIR or /var/tmp; flagged, ext4 here: every first
 * write there goes through the filesystem's page_mkwrite, so no target
 * applies to it).  Each figure is the median of --reps runs (default 5).
 *
 * Usage: tracker [--reps N] [--json FILE] [--region-mib N] [--pages N]
 *   --json FILE   also write the results as one JSON object to FILE ("-":
 *                 stdout); bench/run.sh gathers them into $O/bench.json.
 * The targets of issue 2 are printed beside the figures: first write,
 * idle collect and refresh times (and their ratios to mprotect and to the
 * full copy) for uffd-wp, the backend this machine runs on; finishing the
 * 10,000-page case for mprotect.  The time targets are for a 1 GiB region
 * (--region-mib 1024) on anon and memfd memory.  Targets never change the
 * exit status: it is 1 only when a backend that probes usable fails (open
 * or collect error, a written page not reported, a copy that differs).
 *
 * Method notes:
 *  - The memory is populated before anything is timed (written for anon,
 *    memfd and the small first-write file; read for the 1 GiB file, so the
 *    run does not write a GiB to disk), so the floor is a plain store and
 *    the tracked figures are the tracking fault alone.
 *  - Anonymous memory gets MADV_NOHUGEPAGE: "anon" means 4 KiB pages,
 *    whatever the system's THP setting (a huge page's first tracked write
 *    splits it, a different figure).
 *  - Every backend sees the same pages in the same order (fixed seeds);
 *    each dirty page gets a byte with a new value, so it really changes.
 *  - After every timed collect the reported ranges are checked outside the
 *    timing: ascending, maximal, each written page reported; pages reported
 *    but not written (false positives) are counted and shown.
 */
#include <linux/magic.h>
#include <sys/statfs.h>

#include "bench.h"
#include "harness.h"

#define SEED_FIRST_WRITE 0x9e3779b97f4a7c15ull
#define SEED_DIRTY 0xc2b2ae3d27d4eb4full
/* Entries per pread of /proc/self/pagemap: 512 KiB a call. */
#define PAGEMAP_CHUNK 65536
#define PM_SOFT_DIRTY_BIT 55

static long region_mib = 1024;
static long first_write_pages = 16384;

static const struct bench_option options[] = {
	{ "region-mib", "size of the collect and refresh region in MiB (targets at 1024)", 64, 8192,
	  &region_mib },
	{ "pages", "pages written per first-write run", 64, 1L << 20, &first_write_pages },
	{ NULL, NULL, 0, 0, NULL },
};

static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD, T_MEM_FILE };
static const uint64_t dirty_counts[] = { 0, 100, 1000, 10000 };

static size_t ps;
static unsigned int page_shift;

/* The library's last error message, to explain a failure. */
static char last_log[512];

static void keep_log(enum pt_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	snprintf(last_log, sizeof(last_log), "%s", msg);
}

static const char *log_suffix(void)
{
	static char buf[600];

	snprintf(buf, sizeof(buf), "%s%s", last_log[0] ? "; library: " : "", last_log);
	return buf;
}

/* ---- memory ----------------------------------------------------------- */

struct region {
	struct t_mem m;
	char label[32];		/* "anon", "memfd", "ext4-file" */
	bool flagged;		/* a file: shown without targets */
	uint64_t npages;
};

static const char *file_label(int fd)
{
	struct statfs sfs;

	if (fstatfs(fd, &sfs))
		return "file";
	switch ((unsigned long)sfs.f_type) {
	case EXT4_SUPER_MAGIC:
		return "ext4-file";
	case TMPFS_MAGIC:
		return "tmpfs-file";
	case XFS_SUPER_MAGIC:
		return "xfs-file";
	case BTRFS_SUPER_MAGIC:
		return "btrfs-file";
	default:
		return "file";
	}
}

/* Touch one byte a page when MADV_POPULATE_* (Linux 5.14) is missing. */
static void touch_pages(char *addr, uint64_t npages, bool write)
{
	for (uint64_t p = 0; p < npages; p++) {
		volatile char *c = addr + (p << page_shift);

		if (write)
			*c = 0;
		else
			(void)*c;
	}
}

/*
 * Map and populate npages of a kind.  Returns 0, T_SKIP with a reason, or
 * T_FAIL with a reason.
 */
static int region_map(struct region *r, enum t_mem_kind kind, uint64_t npages, bool populate_write,
		      char *why, size_t why_len)
{
	size_t len = npages << page_shift;
	int ret;

	memset(r, 0, sizeof(*r));
	ret = t_mem_map(&r->m, kind, len, why, why_len);
	if (ret)
		return ret;
	r->npages = npages;
	if (kind == T_MEM_FILE) {
		snprintf(r->label, sizeof(r->label), "%s", file_label(r->m.fd));
		r->flagged = true;
		/* Mapped and open: a run that dies leaves no GiB file behind. */
		if (!unlink(r->m.path))
			r->m.path[0] = '\0';
	} else {
		snprintf(r->label, sizeof(r->label), "%s", t_mem_kind_names[kind]);
	}
	if (kind == T_MEM_ANON && madvise(r->m.addr, len, MADV_NOHUGEPAGE)) {
		snprintf(why, why_len, "madvise(MADV_NOHUGEPAGE): %s", strerror(errno));
		t_mem_unmap(&r->m);
		return T_FAIL;
	}
	if (madvise(r->m.addr, len, populate_write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ)) {
		if (errno != EINVAL) {
			snprintf(why, why_len, "populating %s memory: %s", r->label,
				 strerror(errno));
			t_mem_unmap(&r->m);
			return T_FAIL;
		}
		touch_pages(r->m.addr, npages, populate_write);
	}
	return 0;
}

/* ---- page sets and checks --------------------------------------------- */

/* The timed loop of the first-write figures: one byte in each page, in order. */
static void write_pages(char *base, const uint64_t *order, uint64_t n, uint8_t value)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = order ? order[i] : i;

		*(volatile char *)(base + (p << page_shift)) = (char)value;
	}
}

/*
 * Check what a collect returned against the pages written (want: a byte a
 * page, nwant of them set; NULL means every page): ranges non-empty,
 * ascending, maximal, inside the region, adding up to n, and covering
 * every written page.  Returns the false positives (reported, not
 * written), or -1 with the reason in why.
 */
static long check_ranges(const struct pt_range *r, size_t nr, int n, const uint8_t *want,
			 uint64_t nwant, uint64_t npages, char *why, size_t why_len)
{
	uint64_t prev_end = 0, total = 0, hit = 0;

	for (size_t i = 0; i < nr; i++) {
		if (!r[i].count || r[i].first >= npages || r[i].count > npages - r[i].first ||
		    (i && r[i].first <= prev_end)) {
			snprintf(why, why_len,
				 "range %zu malformed: first %llu count %llu (previous end %llu, %llu pages)",
				 i, (unsigned long long)r[i].first, (unsigned long long)r[i].count,
				 (unsigned long long)prev_end, (unsigned long long)npages);
			return -1;
		}
		if (want) {
			for (uint64_t p = r[i].first; p < r[i].first + r[i].count; p++)
				hit += want[p];
		} else {
			hit += r[i].count;
		}
		total += r[i].count;
		prev_end = r[i].first + r[i].count;
	}
	if (n < 0 || total != (uint64_t)n) {
		snprintf(why, why_len, "collect returned %d but its ranges hold %llu pages", n,
			 (unsigned long long)total);
		return -1;
	}
	if (hit != nwant) {
		snprintf(why, why_len, "%llu of %llu written pages not reported",
			 (unsigned long long)(nwant - hit), (unsigned long long)nwant);
		return -1;
	}
	return (long)(total - hit);
}

static int open_tracker(struct pt_tracker **t, enum pt_backend b, struct region *r)
{
	last_log[0] = '\0';
	return t_tracker_open_on(t, b, r->m.addr, r->npages << page_shift);
}

/* Probe a backend; prints the "unavailable" row itself.  True if usable. */
static bool usable(enum pt_backend b, const char *memory, const char *variant)
{
	char why[256];

	if (!pt_backend_probe(b, why, sizeof(why)))
		return true;
	bench_unavailable(memory, pt_backend_name(b), variant, "%s", why);
	return false;
}

static void false_positive_note(char *note, size_t len, long max_fp, long npages)
{
	if (max_fp > 0)
		snprintf(note, len, "false positives: up to %ld of %ld pages reported were not written",
			 max_fp, npages);
	else
		note[0] = '\0';
}

/* ---- 1. first write ----------------------------------------------------- */

struct order {
	const char *name;
	const uint64_t *pages;	/* NULL: sequential */
};

static void first_write(enum t_mem_kind kind, const uint64_t *scattered)
{
	uint64_t npages = (uint64_t)first_write_pages;
	double uffd[2] = { NAN, NAN }, mprot[2] = { NAN, NAN };
	const struct order orders[2] = { { "sequential", NULL }, { "scattered", scattered } };
	struct region r;
	char why[256];
	int ret;

	ret = region_map(&r, kind, npages, true, why, sizeof(why));
	if (ret) {
		if (ret == T_SKIP)
			bench_unavailable(t_mem_kind_names[kind], "-", "-", "%s", why);
		else
			bench_failed(t_mem_kind_names[kind], "-", "-", "%s", why);
		return;
	}

	for (int o = 0; o < 2; o++) {
		struct bench_samples s = { 0 };

		for (int rep = 0; rep < bench_opts.reps; rep++) {
			double t0 = bench_now_ns();

			write_pages(r.m.addr, orders[o].pages, npages, (uint8_t)(rep + 1));
			bench_add_sample(&s, (bench_now_ns() - t0) / (double)npages);
		}
		bench_row(&(struct bench_row){ .memory = r.label, .method = "untracked (floor)",
					       .variant = orders[o].name, .samples = &s });
	}

	for (size_t bi = 0; bi < BENCH_ARRAY_SIZE(t_all_backends); bi++) {
		enum pt_backend b = t_all_backends[bi];
		const char *name = pt_backend_name(b);
		struct pt_tracker *t;

		if (!usable(b, r.label, "-"))
			continue;
		ret = open_tracker(&t, b, &r);
		if (ret) {
			bench_failed(r.label, name, "-", "open: %s%s", strerror(-ret),
				     log_suffix());
			continue;
		}
		for (int o = 0; o < 2; o++) {
			struct bench_samples s = { 0 };
			struct bench_row row = { .memory = r.label, .method = name,
						 .variant = orders[o].name, .samples = &s };
			bool failed = false;

			for (int rep = 0; rep < bench_opts.reps && !failed; rep++) {
				const struct pt_range *rg;
				size_t nr;
				double t0 = bench_now_ns(), t1;
				int n;

				write_pages(r.m.addr, orders[o].pages, npages, (uint8_t)(rep + 11));
				t1 = bench_now_ns();
				bench_add_sample(&s, (t1 - t0) / (double)npages);
				/* Every page was written: all must come back, and
				 * the reset re-arms them for the next run. */
				n = pt_tracker_collect(t, PT_COLLECT_RESET, &rg, &nr);
				if (n < 0) {
					bench_failed(r.label, name, orders[o].name, "collect: %s%s",
						     strerror(-n), log_suffix());
					failed = true;
				} else if (check_ranges(rg, nr, n, NULL, npages, npages, why,
							sizeof(why)) < 0) {
					bench_failed(r.label, name, orders[o].name, "%s", why);
					failed = true;
				}
			}
			if (failed)
				break;
			if (b == PT_BACKEND_UFFD_WP && !r.flagged)
				row.targets[row.ntargets++] =
					(struct bench_target){ BENCH_AT_MOST, 1000, "<= 1000 ns" };
			bench_row(&row);
			if (b == PT_BACKEND_UFFD_WP)
				uffd[o] = bench_median(&s);
			if (b == PT_BACKEND_MPROTECT)
				mprot[o] = bench_median(&s);
		}
		pt_tracker_close(t);
	}

	/* uffd-wp must be >= 5x cheaper than mprotect, in the same run. */
	for (int o = 0; o < 2; o++) {
		struct bench_samples s = { 0 };
		struct bench_row row = { .memory = r.label, .method = "mprotect / uffd-wp",
					 .variant = orders[o].name, .unit = "x", .samples = &s };

		if (isnan(uffd[o]) || isnan(mprot[o])) {
			bench_unavailable(r.label, "mprotect / uffd-wp", orders[o].name,
					  "needs both backends measured in this run");
			continue;
		}
		bench_add_sample(&s, mprot[o] / uffd[o]);
		if (!r.flagged)
			row.targets[row.ntargets++] =
				(struct bench_target){ BENCH_AT_LEAST, 5, ">= 5x" };
		bench_row(&row);
	}
	t_mem_unmap(&r.m);
}

/* ---- 2. collect, and the old way ---------------------------------------- */

struct dirty_set {
	const uint64_t *pages;	/* the first count of the permutation */
	uint64_t count;
	uint8_t *want;		/* a byte a page: 1 if in the set */
};

static void dirty_set_select(struct dirty_set *d, const uint64_t *perm, uint64_t count,
			     uint64_t npages)
{
	memset(d->want, 0, npages);
	d->pages = perm;
	d->count = count;
	for (uint64_t i = 0; i < count; i++)
		d->want[perm[i]] = 1;
}

static void dirty(struct region *r, const struct dirty_set *d, uint8_t value)
{
	write_pages(r->m.addr, d->pages, d->count, value);
}

static const char *dirty_label(char *buf, size_t len, uint64_t count)
{
	if (count)
		snprintf(buf, len, "%llu dirty", (unsigned long long)count);
	else
		snprintf(buf, len, "idle");
	return buf;
}

/*
 * The old way: read the range's pagemap entries and pick the pages whose
 * soft-dirty bit (55) is set; with soft-dirty in the kernel, then clear
 * the bits through /proc/self/clear_refs ("4", process-wide).  Returns the
 * soft-dirty count or -errno.
 */
static long pagemap_scan_old_way(int pagemap, int clear_refs, const struct region *r,
				 uint64_t *entries)
{
	off_t base = (off_t)(((uintptr_t)r->m.addr >> page_shift) * sizeof(uint64_t));
	uint64_t done = 0;
	long soft_dirty = 0;

	while (done < r->npages) {
		uint64_t want = r->npages - done < PAGEMAP_CHUNK ? r->npages - done : PAGEMAP_CHUNK;
		ssize_t got = pread(pagemap, entries + done, want * sizeof(uint64_t),
				    base + (off_t)(done * sizeof(uint64_t)));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0 || got % (ssize_t)sizeof(uint64_t))
			return -EIO;
		for (uint64_t i = done; i < done + (uint64_t)got / sizeof(uint64_t); i++)
			soft_dirty += (entries[i] >> PM_SOFT_DIRTY_BIT) & 1;
		done += (uint64_t)got / sizeof(uint64_t);
	}
	if (clear_refs >= 0 && pwrite(clear_refs, "4", 1, 0) != 1)
		return errno ? -errno : -EIO;
	return soft_dirty;
}

static void collect_old_way(struct region *r, const uint64_t *perm, struct dirty_set *d)
{
	bool soft_dirty = false;
	int pagemap = -1, clear_refs = -1;
	uint64_t *entries = NULL;
	char why[256], label[32], note[400];
	const char *method;

	if (!pt_backend_probe(PT_BACKEND_SOFT_DIRTY, why, sizeof(why))) {
		soft_dirty = true;
		method = "pagemap+clear_refs (old)";
		note[0] = '\0';
	} else {
		method = "pagemap read (old way)";
		snprintf(note, sizeof(note),
			 "soft-dirty unavailable (%s): pagemap read and bit-55 scan only, no clear_refs",
			 why);
	}
	pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pagemap < 0) {
		bench_failed(r->label, method, "-", "/proc/self/pagemap: %s", strerror(errno));
		goto out;
	}
	if (soft_dirty) {
		clear_refs = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
		if (clear_refs < 0) {
			bench_failed(r->label, method, "-", "/proc/self/clear_refs: %s",
				     strerror(errno));
			goto out;
		}
	}
	entries = malloc(r->npages * sizeof(*entries));
	if (!entries) {
		bench_failed(r->label, method, "-", "out of memory");
		goto out;
	}
	for (size_t di = 0; di < BENCH_ARRAY_SIZE(dirty_counts); di++) {
		struct bench_samples s = { 0 };

		if (dirty_counts[di] > r->npages)
			continue;
		dirty_set_select(d, perm, dirty_counts[di], r->npages);
		dirty_label(label, sizeof(label), d->count);
		for (int rep = 0; rep < bench_opts.reps; rep++) {
			double t0;
			long n;

			dirty(r, d, (uint8_t)(rep + 21));
			t0 = bench_now_ns();
			n = pagemap_scan_old_way(pagemap, clear_refs, r, entries);
			bench_add_sample(&s, (bench_now_ns() - t0) / 1e6);
			if (n < 0) {
				bench_failed(r->label, method, label, "%s", strerror((int)-n));
				goto out;
			}
			/* With soft-dirty the old way must see every written page. */
			for (uint64_t i = 0; soft_dirty && i < d->count; i++) {
				if (!((entries[d->pages[i]] >> PM_SOFT_DIRTY_BIT) & 1)) {
					bench_failed(r->label, method, label,
						     "page %llu written but not soft-dirty",
						     (unsigned long long)d->pages[i]);
					goto out;
				}
			}
		}
		bench_row(&(struct bench_row){ .memory = r->label, .method = method,
					       .variant = label, .samples = &s,
					       .note = di == 0 ? note : NULL });
	}
out:
	free(entries);
	if (pagemap >= 0)
		close(pagemap);
	if (clear_refs >= 0)
		close(clear_refs);
}

/* ---- 3. refresh: collect + copy ----------------------------------------- */

static bool copy_matches(const struct region *r, const char *copy, const struct dirty_set *d,
			 char *why, size_t why_len)
{
	for (uint64_t i = 0; i < d->count; i++) {
		size_t off = d->pages[i] << page_shift;

		if (memcmp(copy + off, r->m.addr + off, ps)) {
			snprintf(why, why_len, "page %llu differs in the copy after refresh",
				 (unsigned long long)d->pages[i]);
			return false;
		}
	}
	return true;
}

static double full_copy(struct region *r, char *copy)
{
	struct bench_samples s = { 0 };

	for (int rep = 0; rep < bench_opts.reps; rep++) {
		double t0 = bench_now_ns();

		memcpy(copy, r->m.addr, r->npages << page_shift);
		bench_add_sample(&s, (bench_now_ns() - t0) / 1e6);
	}
	bench_row(&(struct bench_row){ .memory = r->label, .method = "memcpy whole region",
				       .variant = "-", .samples = &s });
	return bench_median(&s);
}

/*
 * Sections 2 and 3 for one backend: collect with reset at each dirty count,
 * and with copy set also copy the reported pages into it (the seed's
 * refresh), checking the copy.  The timed span is the collect, plus the
 * copy when there is one.
 */
static void measure_backend(struct region *r, enum pt_backend b, const uint64_t *perm,
			    struct dirty_set *d, char *copy, double full_ms)
{
	/* Issue 2's targets on uffd-wp, per GiB: idle collect, and collect + copy. */
	static const struct {
		uint64_t pages;
		double collect_ms, refresh_ms;
		const char *collect_text, *refresh_text;
	} counts[] = {
		{ 0, 0.5, NAN, "<= 0.5 ms", NULL },
		{ 100, NAN, 0.5, NULL, "<= 0.5 ms" },
		{ 1000, NAN, 1.5, NULL, "<= 1.5 ms" },
		{ 10000, NAN, 8, NULL, "<= 8 ms" },
	};
	bool judged = b == PT_BACKEND_UFFD_WP && !r->flagged && region_mib == 1024;
	const char *name = pt_backend_name(b);
	double at100 = NAN;
	struct pt_tracker *t;
	char why[256], label[32], note[200];
	int ret;

	ret = open_tracker(&t, b, r);
	if (ret) {
		bench_failed(r->label, name, "-", "open: %s%s", strerror(-ret), log_suffix());
		return;
	}
	for (size_t ci = 0; ci < BENCH_ARRAY_SIZE(counts); ci++) {
		double target_ms = copy ? counts[ci].refresh_ms : counts[ci].collect_ms;
		const char *target_text = copy ? counts[ci].refresh_text : counts[ci].collect_text;
		struct bench_samples s = { 0 };
		struct bench_row row = { .memory = r->label, .method = name, .samples = &s,
					 .note = note };
		long max_fp = 0;

		/* A refresh of nothing copies nothing: the idle case is the collect's. */
		if (counts[ci].pages > r->npages || (copy && !counts[ci].pages))
			continue;
		dirty_set_select(d, perm, counts[ci].pages, r->npages);
		row.variant = dirty_label(label, sizeof(label), d->count);
		for (int rep = 0; rep < bench_opts.reps; rep++) {
			const struct pt_range *rg;
			size_t nr;
			double t0;
			long fp;
			int n;

			dirty(r, d, (uint8_t)(rep + (copy ? 41 : 31)));
			t0 = bench_now_ns();
			n = pt_tracker_collect(t, PT_COLLECT_RESET, &rg, &nr);
			for (size_t i = 0; copy && n >= 0 && i < nr; i++)
				memcpy(copy + (rg[i].first << page_shift),
				       r->m.addr + (rg[i].first << page_shift), rg[i].count << page_shift);
			bench_add_sample(&s, (bench_now_ns() - t0) / 1e6);
			if (n < 0) {
				bench_failed(r->label, name, label, "collect: %s%s", strerror(-n),
					     log_suffix());
				goto out;
			}
			fp = check_ranges(rg, nr, n, d->want, d->count, r->npages, why,
					  sizeof(why));
			if (fp < 0 || (copy && !copy_matches(r, copy, d, why, sizeof(why)))) {
				bench_failed(r->label, name, label, "%s", why);
				goto out;
			}
			if (fp > max_fp)
				max_fp = fp;
		}
		if (judged && target_text)
			row.targets[row.ntargets++] =
				(struct bench_target){ BENCH_AT_MOST, target_ms, target_text };
		if (d->count == 10000 && b == PT_BACKEND_MPROTECT)
			row.targets[row.ntargets++] =
				(struct bench_target){ BENCH_COMPLETES, 0, "finishes" };
		false_positive_note(note, sizeof(note), max_fp, (long)r->npages);
		bench_row(&row);
		if (d->count == 100)
			at100 = bench_median(&s);
	}
	/* At 100 dirty pages the refresh must cost <= 1/50 of the full copy. */
	if (copy && !isnan(at100) && !isnan(full_ms) && at100 > 0) {
		struct bench_samples s = { 0 };
		struct bench_row row = { .memory = r->label, .unit = "x", .samples = &s };
		char method[48];

		snprintf(method, sizeof(method), "memcpy / %s", name);
		row.method = method;
		row.variant = "100 dirty";
		bench_add_sample(&s, full_ms / at100);
		if (judged)
			row.targets[row.ntargets++] =
				(struct bench_target){ BENCH_AT_LEAST, 50, ">= 50x" };
		bench_row(&row);
	}
out:
	pt_tracker_close(t);
}

/* Sections 2 and 3 on one populated region of a kind, freed at the end. */
static void big_region(enum t_mem_kind kind, const uint64_t *perm, struct dirty_set *d, char *copy)
{
	uint64_t npages = ((uint64_t)region_mib << 20) >> page_shift;
	char why[256], title[160];
	struct region r;
	double full_ms;
	int ret;

	/* The file is populated by reading: its sparse pages come into the
	 * page cache without a GiB of writeback. */
	ret = region_map(&r, kind, npages, kind != T_MEM_FILE, why, sizeof(why));
	snprintf(title, sizeof(title), "collect with reset, %ld MiB region, %s",
		 region_mib, ret ? t_mem_kind_names[kind] : r.label);
	bench_section("collect", title, "ms");
	if (ret) {
		if (ret == T_SKIP)
			bench_unavailable(t_mem_kind_names[kind], "-", "-", "%s", why);
		else
			bench_failed(t_mem_kind_names[kind], "-", "-", "%s", why);
		return;
	}
	collect_old_way(&r, perm, d);
	for (size_t bi = 0; bi < BENCH_ARRAY_SIZE(t_all_backends); bi++)
		if (usable(t_all_backends[bi], r.label, "-"))
			measure_backend(&r, t_all_backends[bi], perm, d, NULL, NAN);

	snprintf(title, sizeof(title),
		 "refresh: collect + copy the dirty pages into a second %ld MiB buffer, %s",
		 region_mib, r.label);
	bench_section("refresh", title, "ms");
	full_ms = full_copy(&r, copy);
	for (size_t bi = 0; bi < BENCH_ARRAY_SIZE(t_all_backends); bi++)
		if (usable(t_all_backends[bi], r.label, "-"))
			measure_backend(&r, t_all_backends[bi], perm, d, copy, full_ms);
	t_mem_unmap(&r.m);
}

int main(int argc, char **argv)
{
	uint64_t *scattered = NULL, *perm = NULL, npages;
	struct dirty_set d = { 0 };
	char *copy = MAP_FAILED;
	size_t region_len;
	char title[160];
	int ret = 1;

	bench_init(argc, argv, "tracker",
		   "first-write, collect and refresh costs of each tracking backend", options);
	ps = t_page_size();
	page_shift = (unsigned int)__builtin_ctzl(ps);
	npages = ((uint64_t)region_mib << 20) >> page_shift;
	region_len = npages << page_shift;
	pt_set_log(keep_log, PT_LOG_ERROR, NULL);
	bench_param("page_size", (double)ps);
	bench_param("first_write_pages", (double)first_write_pages);
	bench_param("region_bytes", (double)region_len);
	bench_note("file rows (%s) are flagged: a MAP_SHARED regular file, every first write goes "
		   "through the filesystem; no target applies to them",
		   getenv("TMPDIR") ? "$TMPDIR" : "/var/tmp");
	if (region_mib != 1024)
		bench_note("region is %ld MiB, not 1 GiB: the collect and refresh targets are not "
			   "evaluated", region_mib);

	scattered = t_rnd_permutation((uint64_t)first_write_pages, SEED_FIRST_WRITE);
	perm = t_rnd_permutation(npages, SEED_DIRTY);
	d.want = malloc(npages);
	if (!scattered || !perm || !d.want) {
		fprintf(stderr, "tracker: out of memory\n");
		goto out;
	}

	snprintf(title, sizeof(title), "first write to a tracked page, %ld pages populated",
		 first_write_pages);
	bench_section("first-write", title, "ns/page");
	for (size_t k = 0; k < BENCH_ARRAY_SIZE(kinds); k++)
		first_write(kinds[k], scattered);

	/* The copy target of the refresh: populated once, kept across kinds. */
	copy = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (copy == MAP_FAILED || madvise(copy, region_len, MADV_POPULATE_WRITE)) {
		if (copy == MAP_FAILED || errno != EINVAL) {
			bench_failed("anon", "copy buffer", "-", "%s", strerror(errno));
			goto done;
		}
		touch_pages(copy, npages, true);
	}
	for (size_t k = 0; k < BENCH_ARRAY_SIZE(kinds); k++)
		big_region(kinds[k], perm, &d, copy);
done:
	ret = bench_finish();
out:
	if (copy != MAP_FAILED)
		munmap(copy, region_len);
	free(scattered);
	free(perm);
	free(d.want);
	return ret;
}
