/* mprotect-enomem: more scattered dirty pages than vm.max_map_count allows: completes, misses nothing. */
#include <time.h>

#include "harness.h"

/*
 * Every isolated writable page inside a read-only range costs two VMAs, so
 * about max_map_count / 2 scattered writes exhaust the process's mappings and
 * mprotect fails with ENOMEM.  The backend must neither fault forever nor
 * lose a page: it unprotects larger spans, reports them whole, and says so.
 */

static int degrade_warnings;
static char last_warning[512];

/* No printing here: near the map limit stdio may not get its buffer. */
static void on_log(enum pt_log_level level, const char *msg, void *arg)
{
	(void)arg;
	if (level == PT_LOG_WARN && strstr(msg, "max_map_count"))
		degrade_warnings++;
	if (level <= PT_LOG_WARN)
		snprintf(last_warning, sizeof(last_warning), "%s", msg);
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Mappings that overlap [start, end): one when the range is uniformly protected. */
static long count_maps(const char *start, const char *end)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long lo, hi;
	char line[512];
	long n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo < (uintptr_t)end &&
		    (uintptr_t)start < hi)
			n++;
	fclose(f);
	return n;
}

/* Write one byte to pages first, first + step, ... and mark them in want. */
static void write_pages(struct t_mem *m, uint8_t *want, uint64_t npages, uint64_t first,
			uint64_t step, uint8_t value)
{
	size_t ps = t_page_size();

	for (uint64_t p = first; p < npages; p += step) {
		m->addr[p * ps + (p % 61) * 8] = value;
		want[p] = 1;
	}
}

/* Write pages first, first + step, ... in a random order. */
static bool write_pages_shuffled(struct t_mem *m, uint8_t *want, uint64_t npages, uint64_t first,
				 uint64_t step, uint8_t value)
{
	uint64_t n = (npages - first + step - 1) / step;
	uint64_t *order = t_rnd_permutation(n, 0x9e3779b97f4a7c15ull);
	size_t ps = t_page_size();

	if (!order)
		return false;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = first + order[i] * step;

		m->addr[p * ps + (p % 61) * 8] = value;
		want[p] = 1;
	}
	free(order);
	return true;
}

/* Every page in want must be in got; count the extra ones. */
static bool check_superset(const uint8_t *want, const uint8_t *got, uint64_t npages,
			   uint64_t *extra)
{
	*extra = 0;
	for (uint64_t p = 0; p < npages; p++) {
		if (want[p] && !got[p]) {
			printf("    page %llu written but not reported\n", (unsigned long long)p);
			return false;
		}
		*extra += got[p] && !want[p];
	}
	return true;
}

static bool run(struct t_mem *m, uint64_t npages, long max_map, char *why, size_t why_len)
{
	uint8_t *want = calloc(npages, 1), *got = calloc(npages, 1);
	struct pt_tracker *t = NULL;
	uint64_t extra;
	long maps_before;
	double t0;
	int ret, n;
	bool ok = false;

	if (!want || !got) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, m->addr, m->len);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	maps_before = count_maps(m->addr, m->addr + m->len);
	degrade_warnings = 0;

	/* Round 1: every other page, far more than the VMA limit allows. */
	t0 = t_now();
	write_pages(m, want, npages, 0, 2, 1);
	n = t_collect_map(t, PT_COLLECT_RESET, got, npages, why, why_len);
	/* No count of the maps at the peak: at the limit even fopen() can fail. */
	printf("    round 1: %llu pages written, %d reported, %.2f s, maps in the range %ld (limit %ld)\n",
	       (unsigned long long)(npages / 2), n, t_now() - t0, maps_before, max_map);
	if (n < 0)
		goto out;
	printf("    log: %s\n", last_warning);
	if (!check_superset(want, got, npages, &extra)) {
		snprintf(why, why_len, "round 1 lost pages");
		goto out;
	}
	printf("    round 1: %llu false positives\n", (unsigned long long)extra);
	/* The test must have reached the limit, or it proved nothing. */
	if (!degrade_warnings) {
		snprintf(why, why_len, "no degrade reported: the VMA limit was never hit");
		goto out;
	}
	/* Re-protecting merged the VMAs back. */
	if (count_maps(m->addr, m->addr + m->len) != maps_before) {
		snprintf(why, why_len, "after collect-with-reset %ld maps in the range, before %ld",
			 count_maps(m->addr, m->addr + m->len), maps_before);
		goto out;
	}
	n = t_collect_map(t, 0, got, npages, why, why_len);
	if (n != 0) {
		if (n > 0)
			snprintf(why, why_len, "after reset and no writes %d pages reported", n);
		goto out;
	}

	/* Round 2: the other half in a random order, and the limit again. */
	memset(want, 0, npages);
	degrade_warnings = 0;
	t0 = t_now();
	if (!write_pages_shuffled(m, want, npages, 1, 2, 2)) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	n = t_collect_map(t, PT_COLLECT_RESET, got, npages, why, why_len);
	printf("    round 2: %llu pages written, %d reported, %.2f s\n",
	       (unsigned long long)(npages / 2), n, t_now() - t0);
	if (n < 0)
		goto out;
	if (!check_superset(want, got, npages, &extra)) {
		snprintf(why, why_len, "round 2 lost pages");
		goto out;
	}
	printf("    round 2: %llu false positives\n", (unsigned long long)extra);
	if (!degrade_warnings) {
		snprintf(why, why_len, "round 2: no degrade reported");
		goto out;
	}

	/* Round 3: a few scattered pages, well under the limit: exact again. */
	memset(want, 0, npages);
	write_pages(m, want, npages, 7, 1000, 3);
	n = t_collect_map(t, PT_COLLECT_RESET, got, npages, why, why_len);
	if (n < 0)
		goto out;
	if (!check_superset(want, got, npages, &extra) || extra) {
		snprintf(why, why_len, "round 3: %d reported, %llu extra", n,
			 (unsigned long long)extra);
		goto out;
	}
	/* The data is all there. */
	for (uint64_t p = 0; p < npages; p++) {
		uint8_t v = m->addr[p * t_page_size() + (p % 61) * 8];
		uint8_t expect = p % 1000 == 7 ? 3 : (p % 2 ? 2 : 1);

		if (v != expect) {
			snprintf(why, why_len, "page %llu holds %u, want %u",
				 (unsigned long long)p, v, expect);
			goto out;
		}
	}

	/* Round 4: other mappings take most of the limit, unknown to the
	 * tracker's own count: its mprotect itself fails with ENOMEM. */
	{
		size_t ps = t_page_size(), scratch_pages = (size_t)max_map / 3 * 2;
		char *scratch = mmap(NULL, scratch_pages * ps, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (scratch == MAP_FAILED) {
			snprintf(why, why_len, "scratch mmap: %s", strerror(errno));
			goto out;
		}
		for (size_t p = 0; p < scratch_pages; p += 2)
			if (mprotect(scratch + p * ps, ps, PROT_READ))
				break;
		memset(want, 0, npages);
		degrade_warnings = 0;
		write_pages(m, want, npages, 0, 2, 4);
		n = t_collect_map(t, PT_COLLECT_RESET, got, npages, why, why_len);
		munmap(scratch, scratch_pages * ps);
		printf("    round 4 (%zu other mappings): %d reported\n", scratch_pages / 2, n);
		if (n < 0)
			goto out;
		if (!check_superset(want, got, npages, &extra)) {
			snprintf(why, why_len, "round 4 lost pages");
			goto out;
		}
		if (!degrade_warnings) {
			snprintf(why, why_len, "round 4: no degrade reported");
			goto out;
		}
	}
	ok = true;
out:
	pt_tracker_close(t);
	free(want);
	free(got);
	return ok;
}

int main(void)
{
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD };
	long max_map = read_long("/proc/sys/vm/max_map_count");
	uint64_t isolated, npages;

	if (max_map <= 0) {
		printf("skip: cannot read /proc/sys/vm/max_map_count\n");
		return T_SKIP;
	}
	/* Well past the limit: each isolated page needs two maps. */
	isolated = (uint64_t)max_map * 3 / 4;
	if (isolated < 100000)
		isolated = 100000;
	npages = isolated * 2;
	if (npages * t_page_size() > (4ull << 30)) {
		printf("skip: vm.max_map_count is %ld: reaching it needs more than 4 GiB\n", max_map);
		return T_SKIP;
	}
	pt_set_log(on_log, PT_LOG_WARN, NULL);
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		char name[64], why[256] = "";
		struct t_mem m;
		int r;

		snprintf(name, sizeof(name), "mprotect x %s, %llu pages", t_mem_kind_names[kinds[k]],
			 (unsigned long long)npages);
		r = t_mem_map(&m, kinds[k], npages * t_page_size(), why, sizeof(why));
		if (r) {
			t_cell_report(name, r, why);
			continue;
		}
		t_cell_report(name, run(&m, npages, max_map, why, sizeof(why)) ? T_PASS : T_FAIL, why);
		t_mem_unmap(&m);
	}
	return t_exit();
}
