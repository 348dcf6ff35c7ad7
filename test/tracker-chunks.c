/* tracker-chunks: PT_TRACK_CHUNKS loses no write: which chunks a collect scans, re-arm before scan (and a swapped order caught), ranges not on chunk boundaries, kernel writes, refusals, fork, writer threads. */
/*
 * The chunk guard (uffd.c, guard_open()) keeps unwritten 2 MiB chunks of
 * a uffd-wp range read-only, so that a collect scans only the chunks
 * written since.  What must hold:
 *  - stats: exactly the written pages are reported, and only the marked
 *    chunks are scanned; a chunk unwritten for pt_uffd_guard_cool_after
 *    collects is guarded again, and its next write marks it again;
 *  - order: a write that lands between the guard's re-arm and the scan
 *    is reported.  With the hook that swaps the two, the same write is
 *    lost, and this test must see it lost (so the check can fail);
 *  - edges: a range that starts and ends inside chunks: its first and
 *    last pages are tracked, and pages just outside it stay writable (the
 *    guard's mprotect is clipped to the range), also after close;
 *  - kernel writes: read(2) into a guarded chunk fails with EFAULT (the
 *    documented price), into a chunk written since the last collect it
 *    works and is reported;
 *  - with PT_TRACK_ADAPTIVE: hot pages in a chunk, reported at every
 *    collect, the other chunks not scanned; a second tracker on the range
 *    -EEXIST; the mprotect backend ignores the flag;
 *  - fork: the child writes its copy without a fault;
 *  - converge: two writer threads never stop while the main thread
 *    collects and copies, with the default cooling and with a re-arm of
 *    every chunk at every collect; the copy must end equal.
 * Also run with the flag on the other tracker suites: tracker-chunks.sh.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

/* uffd.c's test hooks (not exported; the test links the static library). */
extern void (*pt_uffd_guard_between)(void *arg);
extern void *pt_uffd_guard_between_arg;
extern bool pt_uffd_guard_swap_order;
extern unsigned int pt_uffd_guard_cool_after;

#define CHUNK (2ul << 20)
#define COOL_DEFAULT 32u

static int open_chunks(struct pt_tracker **t, void *addr, size_t len)
{
	struct pt_tracker_opts o = {
		.sz = sizeof(o), .backend = PT_BACKEND_UFFD_WP, .flags = PT_TRACK_CHUNKS,
	};

	return pt_tracker_open(t, addr, len, &o);
}

static bool stats_of(struct pt_tracker *t, struct pt_tracker_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->sz = sizeof(*st);
	return pt_tracker_stats(t, st) == 0;
}

static void poke(char *base, uint64_t page, int v)
{
	((volatile char *)base)[page * t_page_size() + 17] = (char)v;
}

static bool stats_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 16ul << 20;
	uint64_t per = CHUNK / ps, npages = len / ps;
	uint8_t *map = calloc(npages, 1);
	struct pt_tracker_stats st;
	struct pt_tracker *t;
	struct t_mem m;
	int r, n;

	CHECK(map, "out of memory");
	r = t_mem_map(&m, T_MEM_MEMFD, len, why, why_len);
	CHECK(r == 0, "map: %s", why);
	memset(m.addr, 1, len);
	pt_uffd_guard_cool_after = COOL_DEFAULT;
	r = open_chunks(&t, m.addr, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	CHECK(stats_of(t, &st) && st.chunks == 1 && st.chunks_total == 8,
	      "chunks %d, %llu in all, want 1 and 8", st.chunks, (unsigned long long)st.chunks_total);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 0 && stats_of(t, &st) && st.chunks_scanned == 0,
	      "nothing written: %d pages, %llu chunks scanned", n, (unsigned long long)st.chunks_scanned);
	poke(m.addr, per + 3, 1);
	poke(m.addr, per + 400, 1);
	poke(m.addr, 5 * per + 511, 1);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 3 && map[per + 3] && map[per + 400] && map[5 * per + 511],
	      "3 pages written in chunks 1 and 5, %d reported (%s)", n, why);
	CHECK(stats_of(t, &st) && st.chunks_scanned == 2, "%llu chunks scanned, want 2",
	      (unsigned long long)st.chunks_scanned);
	/* Still marked: scanned, nothing reported, until they cool. */
	for (unsigned int i = 0; i < COOL_DEFAULT; i++) {
		n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
		CHECK(n == 0, "unwritten collect %u reported %d pages", i, n);
	}
	CHECK(stats_of(t, &st) && st.chunks_scanned == 2 + 2 * COOL_DEFAULT && st.chunks_cooled == 0,
	      "%llu chunks scanned, %llu cooled, want %u and 0", (unsigned long long)st.chunks_scanned,
	      (unsigned long long)st.chunks_cooled, 2 + 2 * COOL_DEFAULT);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 0 && stats_of(t, &st) && st.chunks_cooled == 2,
	      "after %u unwritten collects: %d pages, %llu chunks cooled, want 0 and 2", COOL_DEFAULT,
	      n, (unsigned long long)st.chunks_cooled);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 0 && stats_of(t, &st) && st.chunks_scanned == 4 + 2 * COOL_DEFAULT,
	      "cooled chunks still scanned: %llu", (unsigned long long)st.chunks_scanned);
	/* A write to a cooled chunk marks it again; without reset it stays. */
	poke(m.addr, per + 3, 2);
	n = t_collect_map(t, 0, map, npages, why, why_len);
	CHECK(n == 1 && map[per + 3], "rewrite of a cooled chunk: %d pages (%s)", n, why);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 1 && map[per + 3], "rewrite, collect with reset: %d pages (%s)", n, why);
	/* pt_tracker_reset() forgets writes and guards every chunk again. */
	poke(m.addr, 7 * per, 3);
	r = pt_tracker_reset(t);
	CHECK(r == 0, "reset: %s", strerror(-r));
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 0, "after reset: %d pages", n);
	poke(m.addr, 7 * per + 1, 3);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 1 && map[7 * per + 1], "write after reset: %d pages", n);
	pt_tracker_close(t);
	t_mem_unmap(&m);
	free(map);
	return true;
}

struct between {
	char *base;
	uint64_t page;
	int calls;
};

static void write_between(void *arg)
{
	struct between *b = arg;

	if (b->calls++ == 0)
		poke(b->base, b->page, 9);
}

/* One run of the ordering scenario; *seen: the page written between
 * re-arm and scan was reported by one of the two collects after it. */
static bool order_run(bool swap, bool *seen, char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 8ul << 20;
	uint64_t per = CHUNK / ps, npages = len / ps;
	uint8_t *map = calloc(npages, 1);
	struct between b = { 0 };
	struct pt_tracker *t;
	struct t_mem m;
	int r, n;

	CHECK(map, "out of memory");
	r = t_mem_map(&m, T_MEM_ANON, len, why, why_len);
	CHECK(r == 0, "map: %s", why);
	memset(m.addr, 1, len);
	pt_uffd_guard_cool_after = 0;
	r = open_chunks(&t, m.addr, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	poke(m.addr, 2 * per + 1, 1);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 1, "first write: %d pages", n);
	/* The chunk is marked again by this write; the collect re-arms it,
	 * and the hook writes another page of it in between. */
	poke(m.addr, 2 * per + 2, 1);
	b.base = m.addr;
	b.page = 2 * per + 100;
	pt_uffd_guard_between_arg = &b;
	pt_uffd_guard_between = write_between;
	pt_uffd_guard_swap_order = swap;
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	*seen = n > 0 && map[b.page];
	pt_uffd_guard_swap_order = false;
	pt_uffd_guard_between = NULL;
	CHECK(n >= 1 && map[2 * per + 2], "the write before the collect: %d pages (%s)", n, why);
	CHECK(b.calls == 1, "the hook ran %d times", b.calls);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n >= 0, "collect: %s", why);
	*seen = *seen || (n > 0 && map[b.page]);
	pt_tracker_close(t);
	t_mem_unmap(&m);
	free(map);
	pt_uffd_guard_cool_after = COOL_DEFAULT;
	return true;
}

static bool order_cell(char *why, size_t why_len)
{
	bool seen;

	if (!order_run(false, &seen, why, why_len))
		return false;
	CHECK(seen, "a write between the guard's re-arm and the scan was lost");
	if (!order_run(true, &seen, why, why_len))
		return false;
	CHECK(!seen, "scan before re-arm did not lose the write: the order check cannot fail");
	return true;
}

static bool edges_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), maplen = 8ul << 20;
	size_t off = (1ul << 20) + ps, len = (3ul << 20) + 2 * ps;
	uint64_t npages = len / ps;
	uint8_t *map = calloc(npages, 1);
	struct pt_tracker *t;
	struct t_mem m;
	char *base;
	int r, n;

	CHECK(map, "out of memory");
	r = t_mem_map(&m, T_MEM_MEMFD, maplen, why, why_len);
	CHECK(r == 0, "map: %s", why);
	base = m.addr + off;
	pt_uffd_guard_cool_after = 0;
	r = open_chunks(&t, base, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	for (int round = 0; round < 3; round++) {
		poke(base, 0, round);
		poke(base, npages - 1, round);
		/* Just outside, both sides: must not fault, never reported. */
		((volatile char *)base)[-1] = (char)round;
		((volatile char *)base)[len] = (char)round;
		n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
		CHECK(n == 2 && map[0] && map[npages - 1], "round %d: %d pages (%s)", round, n, why);
		((volatile char *)base)[-ps] = (char)round;
		((volatile char *)base)[len + ps] = (char)round;
	}
	pt_tracker_close(t);
	/* Writable again, all of it, with no tracker to catch a fault. */
	memset(base, 7, len);
	r = open_chunks(&t, base, len);
	CHECK(r == 0, "reopen: %s", strerror(-r));
	poke(base, npages / 2, 1);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 1 && map[npages / 2], "after reopen: %d pages", n);
	pt_tracker_close(t);
	t_mem_unmap(&m);
	free(map);
	pt_uffd_guard_cool_after = COOL_DEFAULT;
	return true;
}

static bool kernel_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 4ul << 20;
	uint64_t per = CHUNK / ps, npages = len / ps;
	uint8_t *map = calloc(npages, 1);
	struct pt_tracker *t;
	struct t_mem m;
	int fds[2], r, n;
	ssize_t got;

	CHECK(map, "out of memory");
	CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
	r = t_mem_map(&m, T_MEM_ANON, len, why, why_len);
	CHECK(r == 0, "map: %s", why);
	memset(m.addr, 1, len);
	r = open_chunks(&t, m.addr, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	CHECK(write(fds[1], "abcdefgh", 8) == 8, "pipe write");
	got = read(fds[0], m.addr + per * ps + 64, 8);
	CHECK(got < 0 && errno == EFAULT, "read(2) into a guarded chunk: %zd (%s), want EFAULT",
	      got, got < 0 ? strerror(errno) : "no error");
	/* A user write opens the chunk; the kernel's write is then tracked. */
	poke(m.addr, per, 1);
	got = read(fds[0], m.addr + (per + 9) * ps, 8);
	CHECK(got == 8, "read(2) into a written chunk: %zd (%s)", got, strerror(errno));
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 2 && map[per] && map[per + 9], "user and kernel writes: %d pages (%s)", n, why);
	pt_tracker_close(t);
	t_mem_unmap(&m);
	close(fds[0]);
	close(fds[1]);
	free(map);
	return true;
}

static bool others_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 8ul << 20;
	uint64_t per = CHUNK / ps, npages = len / ps, scanned;
	struct pt_tracker_opts o = {
		.sz = sizeof(o), .backend = PT_BACKEND_UFFD_WP,
		.flags = PT_TRACK_CHUNKS | PT_TRACK_ADAPTIVE, .hot_after = 2, .probation = 1000,
	};
	uint8_t *map = calloc(npages, 1);
	struct pt_tracker_stats st;
	struct pt_tracker *t, *t2;
	struct t_mem m;
	int r, n = 0;

	CHECK(map, "out of memory");
	r = t_mem_map(&m, T_MEM_ANON, len, why, why_len);
	CHECK(r == 0, "map: %s", why);
	memset(m.addr, 1, len);
	/* Adaptive: pages 0-7 of chunk 1 written at every collect turn hot. */
	pt_uffd_guard_cool_after = COOL_DEFAULT;
	r = pt_tracker_open(&t, m.addr, len, &o);
	CHECK(r == 0, "chunks with adaptive: %s", strerror(-r));
	for (int i = 0; i < 6; i++) {
		for (uint64_t p = 0; p < 8; p++)
			poke(m.addr, per + p, i);
		n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
		CHECK(n >= 8, "round %d: %d pages (%s)", i, n, why);
	}
	CHECK(stats_of(t, &st) && st.adaptive == 1 && st.chunks == 1 && st.hot_pages == 8,
	      "adaptive %d, chunks %d, %llu hot pages, want 1, 1, 8", st.adaptive, st.chunks,
	      (unsigned long long)st.hot_pages);
	scanned = st.chunks_scanned;
	/* A cold page of chunk 3 and the hot ones: all reported, chunks 1
	 * and 3 scanned, not the two others. */
	poke(m.addr, 3 * per + 5, 1);
	poke(m.addr, per + 1, 9);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 9 && map[3 * per + 5] && map[per] && map[per + 7],
	      "hot pages and one cold: %d pages (%s)", n, why);
	CHECK(stats_of(t, &st) && st.chunks_scanned - scanned == 2, "%llu chunks scanned, want 2",
	      (unsigned long long)(st.chunks_scanned - scanned));
	pt_tracker_close(t);
	r = open_chunks(&t, m.addr, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	r = open_chunks(&t2, m.addr + (1ul << 20), len / 2);
	CHECK(r == -EEXIST, "second tracker over the range: %s, want EEXIST", strerror(-r));
	pt_tracker_close(t);
	o.backend = PT_BACKEND_MPROTECT;
	o.flags = PT_TRACK_CHUNKS;
	r = pt_tracker_open(&t, m.addr, len, &o);
	CHECK(r == 0, "mprotect backend with the flag: %s", strerror(-r));
	CHECK(stats_of(t, &st) && st.chunks == 0, "mprotect says chunks %d", st.chunks);
	pt_tracker_close(t);
	t_mem_unmap(&m);
	free(map);
	return true;
}

static bool fork_cell(char *why, size_t why_len)
{
	size_t ps = t_page_size(), len = 4ul << 20;
	uint64_t npages = len / ps;
	uint8_t *map = calloc(npages, 1);
	struct pt_tracker *t;
	struct t_mem m;
	int r, n, status;
	pid_t pid;

	CHECK(map, "out of memory");
	r = t_mem_map(&m, T_MEM_ANON, len, why, why_len);
	CHECK(r == 0, "map: %s", why);
	memset(m.addr, 1, len);
	r = open_chunks(&t, m.addr, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* No handler of ours may be needed here: default SIGSEGV. */
		signal(SIGSEGV, SIG_DFL);
		memset(m.addr, 2, len);
		_exit(((volatile char *)m.addr)[len - 1] == 2 ? 0 : 3);
	}
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child's writes: status %#x", status);
	poke(m.addr, 3, 1);
	n = t_collect_map(t, PT_COLLECT_RESET, map, npages, why, why_len);
	CHECK(n == 1 && map[3], "parent after fork: %d pages (%s)", n, why);
	pt_tracker_close(t);
	t_mem_unmap(&m);
	free(map);
	return true;
}

static int collect_copy(struct pt_tracker *t, uint8_t *shadow, const uint8_t *region)
{
	const struct pt_range *r;
	size_t nr, ps = t_page_size();
	int n = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);

	for (size_t i = 0; n > 0 && i < nr; i++)
		t_copy_racing(shadow + r[i].first * ps, region + r[i].first * ps, r[i].count * ps);
	return n;
}

static bool converge_run(enum t_mem_kind kind, unsigned int cool, char *why, size_t why_len)
{
	/* Smaller and shorter under TSan (PAGETRACK_TSAN=1), ~10x slower. */
	bool tsan = getenv("PAGETRACK_TSAN") != NULL;
	size_t len = tsan ? 8ul << 20 : 32ul << 20;
	uint64_t min_collects = tsan ? 12 : 40;
	uint8_t *shadow = malloc(len), *region;
	uint64_t collects = 0, writes;
	struct pt_tracker_stats st;
	struct pt_tracker *t;
	struct t_writers w;
	struct t_mem m;
	double end;
	int r, n = 0;

	CHECK(shadow, "out of memory");
	r = t_mem_map(&m, kind, len, why, why_len);
	CHECK(r == 0, "map: %s", why);
	region = (uint8_t *)m.addr;
	memset(region, 1, len);
	pt_uffd_guard_cool_after = cool;
	r = open_chunks(&t, region, len);
	CHECK(r == 0, "open: %s", strerror(-r));
	memcpy(shadow, region, len);
	CHECK(t_writers_start(&w, region, len, 64, 42 + cool, why, why_len), "writers: %s", why);
	end = t_now() + (tsan ? 0.3 : 1.0);
	while ((t_now() < end || collects < min_collects) && n >= 0) {
		n = collect_copy(t, shadow, region);
		collects++;
		if (collects % 8 == 0)
			usleep(2000);
	}
	writes = t_writers_stop(&w);
	CHECK(n >= 0, "collect: %s", strerror(-n));
	n = collect_copy(t, shadow, region);
	CHECK(n >= 0, "collect: %s", strerror(-n));
	CHECK(stats_of(t, &st) && st.chunks_scanned > 0, "no chunk scanned");
	pt_tracker_close(t);
	if (memcmp(shadow, region, len)) {
		size_t off = 0;

		while (shadow[off] == region[off])
			off++;
		snprintf(why, why_len, "copy differs at page %zu after %llu collects, %llu writes: "
			 "a write was lost", off / t_page_size(), (unsigned long long)collects,
			 (unsigned long long)writes);
		return false;
	}
	printf("    %s, cool after %u: %llu writes, %llu collects, %llu chunks scanned, %llu cooled\n",
	       t_mem_kind_names[kind], cool, (unsigned long long)writes,
	       (unsigned long long)collects, (unsigned long long)st.chunks_scanned,
	       (unsigned long long)st.chunks_cooled);
	t_mem_unmap(&m);
	free(shadow);
	pt_uffd_guard_cool_after = COOL_DEFAULT;
	return writes > 1000 || (snprintf(why, why_len, "only %llu writes",
					  (unsigned long long)writes), false);
}

static bool converge_cell(char *why, size_t why_len)
{
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD, T_MEM_FILE };

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
		for (unsigned int cool = 0; cool <= 2; cool += 2)
			if (!converge_run(kinds[k], cool, why, why_len))
				return false;
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "stats: scanned and cooled chunks", stats_cell },
		{ "order: re-arm, then scan", order_cell },
		{ "edges: partial chunks", edges_cell },
		{ "kernel writes", kernel_cell },
		{ "adaptive, overlap, mprotect", others_cell },
		{ "fork", fork_cell },
		{ "converge: writer threads", converge_cell },
	};
	char why[256] = "";

	if (!t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		printf("skip: uffd-wp: %s\n", why);
		return T_SKIP;
	}
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	return t_exit();
}
