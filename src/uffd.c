/* SPDX-License-Identifier: MIT */
/*
 * uffd.c - the uffd-wp backend: userfaultfd write-protect in async mode plus
 * the PAGEMAP_SCAN ioctl (Linux >= 6.7).
 *
 * Arming: the range is registered with UFFDIO_REGISTER_MODE_WP on a
 * userfaultfd opened with UFFD_FEATURE_WP_ASYNC, then write-protected.  In
 * async mode a write to a protected page is resolved by the kernel itself
 * (about 1 us, no thread of ours involved): it drops the protection and the
 * page now reads back as PAGE_IS_WRITTEN.  UFFD_FEATURE_WP_UNPOPULATED makes
 * pages that were never touched protected too, so their first write counts.
 *
 * Collecting: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports the written pages
 * and write-protects them again in the same page-table walk, under the page
 * table lock: a concurrent write either lands before (reported now) or faults
 * after (reported next time).  This is the atomic get-and-clear the 2007 loop
 * patch lacked.
 *
 * Resetting: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING and no output vector,
 * which touches only unprotected PTEs; UFFDIO_WRITEPROTECT rewrites all of
 * them (~18 ms for a populated GiB here, against well under 1 ms).
 *
 * What the kernel does to the protection outside writes (measured on 6.18):
 * MADV_DONTNEED empties the PTEs of anonymous pages (content now zeros) and
 * of written shared pages, and an empty PTE or page-table hole in an armed
 * range reads as written, so both are reported.  Older kernels read them as
 * clean and lose those writes; the probe detects that and collect then also
 * scans for empty PTEs (scan_empty()).  A protected page of shared memory
 * keeps its protection as a PTE marker across a zap, so content the file
 * system changes under it (hole punch, MADV_REMOVE, truncate, write(2) to
 * the file) is not reported: only writes through this process's page
 * tables are.
 *
 * Failure: a collect that fails part way may have re-armed pages it cannot
 * hand back.  Rather than trying to un-arm them (which can fail too), the
 * tracker remembers it and its next successful collect reports the whole
 * range: at least once, never lost.
 *
 * Adaptive tracking (adaptive.c) leaves hot pages unprotected and tells
 * collect which they are (t->skip).  A write-protecting scan over an
 * unprotected page matches it (to the kernel an unprotected page is a
 * written one): it is reported and re-armed, and its next write faults.
 * So collect scans around the hot pages, in one of two ways (scan_hot()):
 *
 *  - runs: one write-protecting scan per run of cold pages between hot
 *    ones.  Cheap when the hot pages are few or bunched: the cost is one
 *    ioctl (~1.6-2.5 us here, about a fault) per run.
 *  - read first: one read-only scan of the whole range (it changes
 *    nothing), then one write-protecting scan per cluster of the written
 *    cold pages it found, a cluster spanning no hot page.  Cheap when the
 *    hot pages are many and scattered and few cold pages were written
 *    (bench/adaptive's rewrite workload: 2,464 scattered hot pages make
 *    ~2,400 runs, while ~650 cold pages were written).  Why nothing is lost: the read-only scan
 *    re-arms nothing, so a page it saw written stays so until one of the
 *    write-protecting scans reports and re-arms it in one step; a cold page
 *    written after the read-only scan passed it is still unprotected at the
 *    next collect, whose scan finds it; and the report is the union of both
 *    scans, so a page the first saw written is reported even if the second
 *    did not see it again (an emptied PTE on an older kernel).
 *
 * Which is cheaper depends on the machine and on the shape of the hot set,
 * so both are timed as they run (ns per run, ns per read-first collect)
 * and each collect takes the one whose estimate is lower; the other is
 * tried again once every EXPLORE_EVERY collects so its estimate stays
 * current.  Two clusters of a read-first collect become one scan when
 * the hot pages between them would cost less in faults (t->fault_ns, the
 * policy's estimate) than the ioctl saved (ns per run): those hot pages
 * are re-armed and reported by that scan, and nothing is lost (they are
 * reported anyway, and their next write faults, which unprotects them
 * again).  The pages on probation (t->keep) are scanned either way but
 * never re-armed by the write-protecting scans: those written again turn
 * hot as their write left them, with no unprotect, which on shared memory
 * would cost one more fault (see uffd_unprotect()).  tracker-adaptive
 * proves all of it, for every memory kind, with each way forced
 * (pt_uffd_hot_scan, pt_uffd_merge_hot_always).
 *
 * Measured (bench/adaptive, 256 MiB memfds, 2 vCPU, 6.18, a fault ~1 us,
 * 2,464 scattered hot pages and 655 random cold pages written an epoch):
 * run by run a collect took ~4.5 ms (~2,400 ioctls; the epoch 1.08x plain
 * tracking's), read first ~1.3 ms (0.67x); with every page hot, run by run
 * ~0.1 ms against ~0.8 ms.  Re-arming the hot pages with the scan and
 * opening them again after it cost two PTE rewrites per hot page (199 ms
 * an epoch with every page hot, against 76 ms leaving them out).
 *
 * fork(): the child inherits the userfaultfd descriptor, and while any
 * process holds it the parent's registration stays, so the parent could
 * not close and reopen a tracker on its range (EEXIST) for as long as the
 * child lives.  Close unregisters explicitly, and a fork handler closes
 * the child's copies at once (they act on the parent's memory).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "compat.h"
#include "internal.h"

/* Regions per PAGEMAP_SCAN call; more calls are made when it fills. */
#define SCAN_VEC_LEN 4096
/* Scratch pages of fault_cost(). */
#define COST_PAGES 64

#define WANT_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

struct uffd_state {
	int uffd;
	int pagemap;
	bool resync;		/* a failed collect may have lost pages: report all next */
	struct page_region *vec;
	struct pt_ranges empty;	/* empty-PTE scan result, merge scratch */
	struct pt_ranges merged;
	/* Scanning around hot pages (see the top of this file). */
	struct pt_ranges seen;	/* read first: what the read-only scan found */
	uint64_t run_ns;	/* runs: ns per run, estimate() (0: not yet timed) */
	uint64_t read_first_ns;	/* read first: ns per collect, estimate() */
	uint64_t hot_collects;	/* collects with hot pages, for exploring */
	char *scratch;		/* fault_cost()'s COST_PAGES pages, registered */
	struct pt_tracker *guard;	/* PT_TRACK_CHUNKS: mprotect by chunk, see guard_open() */
	uint8_t *idle;		/* per chunk: collects in a row it was scanned unwritten */
	struct uffd_state *next;	/* on open_states, for the fork handler */
};

/* Every open state, so that a forked child can drop its copies of the
 * descriptors (see the top of this file). */
static pthread_mutex_t states_lock = PTHREAD_MUTEX_INITIALIZER;
static struct uffd_state *open_states;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_result;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&states_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&states_lock);
}

/* In the child: the descriptors act on the parent's registration and the
 * parent's /proc/self/pagemap; close them (close(2) is async-signal-safe). */
static void atfork_child(void)
{
	for (struct uffd_state *s = open_states; s; s = s->next) {
		if (s->uffd >= 0)
			close(s->uffd);
		if (s->pagemap >= 0)
			close(s->pagemap);
		s->uffd = s->pagemap = -1;
	}
	pthread_mutex_unlock(&states_lock);
}

static void atfork_register(void)
{
	atfork_result = -pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static int open_uffd(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd, ret;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	/* Ask for shmem/hugetlbfs write-protect as well where the kernel has
	 * it; WANT_FEATURES are the ones we cannot do without. */
	api.features = WANT_FEATURES;
	if (ioctl(fd, UFFDIO_API, &api)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*features = api.features;
	return fd;
}

static int probe_result;
static char probe_why[200];
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

/*
 * Does PAGEMAP_SCAN report a page emptied by MADV_DONTNEED as written?
 * Linux 6.18 here does (an empty PTE or page-table hole in a range armed
 * with WP_UNPOPULATED reads as written); kernels before the 2026 stable
 * fixes report only present and swapped pages, and then an anonymous page
 * zeroed by MADV_DONTNEED, or a written shared page whose PTE was zapped
 * (MADV_DONTNEED, reclaim) before a collect, is never reported.  There the
 * collect also scans for empty PTEs and holes (see scan_empty()).  Tests set
 * it (it is not exported) to run that path on a kernel that needs none.
 */
bool pt_uffd_scan_empty;

static bool kernel_reports_zapped(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct page_region vec[2];
	uint64_t features;
	bool yes = false;
	char *a;
	int fd, pm = -1;

	a = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return false;
	a[0] = 1;
	fd = open_uffd(&features);
	if (fd >= 0) {
		struct uffdio_register reg = {
			.range = { .start = (uintptr_t)a, .len = 2 * ps },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		struct uffdio_writeprotect wp = {
			.range = reg.range,
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.flags = PM_SCAN_CHECK_WPASYNC,
			.start = (uintptr_t)a,
			.end = (uintptr_t)a + 2 * ps,
			.vec = (uintptr_t)vec,
			.vec_len = 2,
			.category_mask = PAGE_IS_WRITTEN,
			.return_mask = PAGE_IS_WRITTEN,
		};

		pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (pm >= 0 && !ioctl(fd, UFFDIO_REGISTER, &reg) && !ioctl(fd, UFFDIO_WRITEPROTECT, &wp) &&
		    !madvise(a, ps, MADV_DONTNEED))
			yes = ioctl(pm, PAGEMAP_SCAN, &arg) == 1 && vec[0].start == (uintptr_t)a;
		if (pm >= 0)
			close(pm);
		close(fd);
	}
	munmap(a, 2 * ps);
	return yes;
}

static void probe_uffd(void)
{
	struct pm_scan_arg arg;
	uint64_t features = 0;
	int fd, pm;

	fd = open_uffd(&features);
	if (fd == -ENOSYS) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "kernel built without CONFIG_USERFAULTFD");
		return;
	}
	if (fd == -EPERM || fd == -EACCES) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EPERM,
				      "userfaultfd not permitted (seccomp, or vm.unprivileged_userfaultfd=0 on a kernel older than 5.11)");
		return;
	}
	if (fd == -EINVAL) {
		/* UFFD_USER_MODE_ONLY is Linux 5.11; UFFDIO_API rejects
		 * features it does not know with EINVAL. */
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "userfaultfd lacks UFFD_FEATURE_WP_ASYNC (needs Linux >= 6.7)");
		return;
	}
	if (fd < 0) {
		probe_result = pt_why(probe_why, sizeof(probe_why), fd,
				      "userfaultfd: %s", strerror(-fd));
		return;
	}
	close(fd);
	if ((features & WANT_FEATURES) != WANT_FEATURES) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "userfaultfd lacks WP_ASYNC or WP_UNPOPULATED (needs Linux >= 6.7)");
		return;
	}
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "/proc/self/pagemap: %s", strerror(errno));
		return;
	}
	/* An empty scan: ENOTTY means no PAGEMAP_SCAN (Linux < 6.7). */
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	if (ioctl(pm, PAGEMAP_SCAN, &arg) < 0 && errno == ENOTTY) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "no PAGEMAP_SCAN ioctl on /proc/self/pagemap (needs Linux >= 6.7)");
		close(pm);
		return;
	}
	close(pm);
	if (!kernel_reports_zapped()) {
		pt_log(PT_LOG_INFO, "PAGEMAP_SCAN does not report pages emptied by MADV_DONTNEED "
		       "as written on this kernel: collect scans for empty PTEs too");
		pt_uffd_scan_empty = true;
	}
	probe_result = 0;
}

static int uffd_probe(char *why, size_t why_len)
{
	pthread_once(&probe_once, probe_uffd);
	if (probe_result)
		return pt_why(why, why_len, probe_result, "%s", probe_why);
	return 0;
}

static int write_protect(struct uffd_state *s, uintptr_t start, size_t len)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	while (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp)) {
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	return 0;
}

/* Unlink and close under states_lock, so a concurrent fork() sees either
 * the descriptors on the list or closed. */
static void uffd_free(struct uffd_state *s)
{
	pthread_mutex_lock(&states_lock);
	for (struct uffd_state **p = &open_states; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			break;
		}
	}
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->pagemap >= 0)
		close(s->pagemap);
	pthread_mutex_unlock(&states_lock);
	free(s->vec);
	pt_ranges_free(&s->empty);
	pt_ranges_free(&s->merged);
	pt_ranges_free(&s->seen);
	if (s->scratch)
		munmap(s->scratch, COST_PAGES * (size_t)sysconf(_SC_PAGESIZE));
	free(s);
}

/*
 * The chunk guard (PT_TRACK_CHUNKS): an mprotect tracker of the same range
 * whose "pages" are GUARD_SHIFT chunks, so that a collect scans only the
 * chunks written since the last one.  mprotect.c's handler/collect protocol
 * keeps "a writable chunk is marked"; uffd-wp still says which pages of it
 * were written.  A collect with reset lists the marked chunks, makes those
 * that GUARD_COOL_AFTER collects in a row found unwritten read-only again
 * and unmarks them (cool_chunks()), then scans every chunk it listed with
 * PM_SCAN_WP_MATCHING.  Why nothing is lost: a chunk that stays marked is
 * scanned at every collect; for one being cooled, a write that landed
 * before it turned read-only is in the page tables, and the scan after
 * finds it, and a later write faults on the guard, which marks the chunk
 * before the write lands, so the next collect scans it.  An unmarked
 * chunk has been read-only since the scan that followed its unmarking, so
 * none of its pages were written since.  The guard is opened before the
 * range is armed, so the first collect needs no full scan; mprotect
 * leaves uffd-wp's PTE bits alone (a protected PTE stays read-only when
 * its chunk turns writable).  Chunks cool only after GUARD_COOL_AFTER
 * idle collects because an mprotect of a populated 2 MiB chunk rewrites
 * its 512 PTEs (~40 us here), to re-guard it and again at its next write,
 * while scanning a marked chunk costs a few microseconds.
 */
#define GUARD_SHIFT 21
#define GUARD_COOL_AFTER 32

static int guard_open(struct pt_tracker *t, struct uffd_state *s)
{
	struct pt_tracker *g = calloc(1, sizeof(*g));
	int ret;

	if (!g)
		return -ENOMEM;
	g->ops = &pt_mprotect_ops;
	g->start = t->start;
	g->len = t->len;
	g->page_size = (size_t)1 << GUARD_SHIFT;
	g->page_shift = GUARD_SHIFT;
	g->npages = (t->len + g->page_size - 1) >> GUARD_SHIFT;
	g->owner = t->owner;
	s->idle = calloc(g->npages, 1);
	ret = s->idle ? pt_mprotect_ops.open(g) : -ENOMEM;
	if (ret) {
		pt_log(PT_LOG_ERROR, "uffd-wp: the chunk guard (PT_TRACK_CHUNKS) of %zu bytes at "
		       "%#lx: %s", t->len, (unsigned long)t->start, strerror(-ret));
		free(g);
		free(s->idle);
		s->idle = NULL;
		return ret;
	}
	s->guard = g;
	t->stats.chunks = 1;
	t->stats.chunks_total = g->npages;
	return 0;
}

static void guard_close(struct pt_tracker *t, struct uffd_state *s)
{
	if (!s->guard)
		return;
	if (getpid() == t->owner)
		pt_mprotect_ops.close(s->guard);
	else
		pt_mprotect_forget(s->guard);
	pt_ranges_free(&s->guard->out);
	free(s->guard);
	free(s->idle);
	s->guard = NULL;
	s->idle = NULL;
}

static int uffd_open(struct pt_tracker *t)
{
	struct uffdio_register reg = {
		.range = { .start = t->start, .len = t->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffd_state *s;
	uint64_t features;
	int ret;

	pthread_once(&atfork_once, atfork_register);
	if (atfork_result)
		return atfork_result;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->uffd = s->pagemap = -1;
	s->vec = calloc(SCAN_VEC_LEN, sizeof(*s->vec));
	if (!s->vec) {
		free(s);
		return -ENOMEM;
	}
	/* Descriptors are born on the list (see uffd_free). */
	pthread_mutex_lock(&states_lock);
	s->uffd = open_uffd(&features);
	if (s->uffd >= 0)
		s->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ret = s->uffd < 0 ? s->uffd : s->pagemap < 0 ? -errno : 0;
	s->next = open_states;
	open_states = s;
	pthread_mutex_unlock(&states_lock);
	if (ret)
		goto err;
	if (t->flags & PT_TRACK_CHUNKS) {
		ret = guard_open(t, s);
		if (ret)
			goto err;
	}
	if (ioctl(s->uffd, UFFDIO_REGISTER, &reg)) {
		ret = -errno;
		/* EBUSY: another userfaultfd (another tracker) holds part of
		 * the range.  EINVAL: a hole, or memory uffd-wp cannot track. */
		if (ret == -EBUSY)
			ret = -EEXIST;
		pt_log(PT_LOG_ERROR, "UFFDIO_REGISTER of %zu bytes at %#lx: %s",
		       t->len, (unsigned long)t->start, strerror(-ret));
		goto err;
	}
	ret = write_protect(s, t->start, t->len);
	if (ret) {
		pt_log(PT_LOG_ERROR, "UFFDIO_WRITEPROTECT: %s", strerror(-ret));
		goto err;
	}
	t->priv = s;
	return 0;
err:
	guard_close(t, s);
	uffd_free(s);
	return ret;
}

/*
 * Append the scan's regions to out.  A region that starts below what is
 * already there would break the ascending order collect promises; it can
 * only come from a resumed walk that went back over reported pages, and
 * those pages are already in out, so clip it.
 */
static int add_regions(struct pt_tracker *t, struct pt_ranges *out, const struct page_region *vec,
		       long n, uint64_t *last_end)
{
	for (long i = 0; i < n; i++) {
		uint64_t start = vec[i].start, end = vec[i].end;
		int ret;

		if (start < *last_end)
			start = *last_end;
		if (end <= start)
			continue;
		ret = pt_ranges_add(out, (start - t->start) >> t->page_shift,
				    (end - start) >> t->page_shift);
		if (ret)
			return ret;
		*last_end = end;
	}
	return 0;
}

/*
 * One PAGEMAP_SCAN over the whole range, as many calls as the vector
 * needs, appending to out.  arg is filled in but for start/end/vec.
 * On failure with wp set, re-armed pages may be lost: s->resync is set.
 */
static int scan_span(struct pt_tracker *t, struct pm_scan_arg *arg, struct pt_ranges *out, bool wp,
		     uint64_t first, uint64_t count)
{
	struct uffd_state *s = t->priv;
	uint64_t end = t->start + ((first + count) << t->page_shift);
	uint64_t last_end = t->start + (first << t->page_shift);
	int ret;

	arg->size = sizeof(*arg);
	arg->start = last_end;
	arg->end = end;
	arg->vec = (uintptr_t)s->vec;
	arg->vec_len = SCAN_VEC_LEN;
	while (arg->start < end) {
		long n = ioctl(s->pagemap, PAGEMAP_SCAN, arg);

		if (n < 0) {
			ret = -errno;
			/* The failed call may have re-armed pages whose regions
			 * it did not return: from now on, report everything. */
			if (wp)
				s->resync = true;
			/* EINTR comes only with a fatal signal pending; retry
			 * from where we were, the resync covers the rest. */
			if (ret == -EINTR || ret == -EAGAIN)
				continue;
			pt_log(PT_LOG_ERROR, "PAGEMAP_SCAN: %s; the next collect reports the whole range",
			       strerror(-ret));
			return ret;
		}
		ret = add_regions(t, out, s->vec, n, &last_end);
		if (ret) {
			if (wp)
				s->resync = true;
			pt_log(PT_LOG_ERROR, "collect: %s; the next collect reports the whole range",
			       strerror(-ret));
			return ret;
		}
		/* Linux 6.18 can hand back a stale walk_end (below the true
		 * end of the walk) when one call flushed its buffer more than
		 * once; only a full vector means the walk stopped early, and
		 * then it stopped at or after the last region returned. */
		if ((size_t)n < SCAN_VEC_LEN)
			break;
		arg->start = arg->walk_end > last_end ? arg->walk_end : last_end;
	}
	return 0;
}

/* out = a | b, both ascending; out ascending and maximal. */
static int ranges_union(const struct pt_ranges *a, const struct pt_ranges *b, struct pt_ranges *out)
{
	size_t i = 0, j = 0;

	out->nr = 0;
	while (i < a->nr || j < b->nr) {
		const struct pt_range *r = j >= b->nr || (i < a->nr && a->v[i].first <= b->v[j].first) ?
					   &a->v[i++] : &b->v[j++];
		struct pt_range *last = out->nr ? &out->v[out->nr - 1] : NULL;
		int ret;

		if (last && r->first <= last->first + last->count) {
			if (r->first + r->count > last->first + last->count)
				last->count = r->first + r->count - last->first;
			continue;
		}
		ret = pt_ranges_add(out, r->first, r->count);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * A moving estimate of what a way of scanning costs: a sample below it
 * weighs a half, one above an eighth.  Other work on the machine only
 * ever makes a scan slower, so one preempted scan barely moves it, while
 * a real change in cost is followed within a few samples.
 */
static uint64_t estimate(uint64_t est, uint64_t sample)
{
	if (!est)
		return sample;
	return sample < est ? (est + sample) / 2 : (7 * est + sample) / 8;
}

/*
 * The runs of pages not in t->skip, each cut where t->keep starts or
 * stops: fn(t, first, count, keep, arg) for each, in order.
 */
static int for_each_run(struct pt_tracker *t, uint64_t lo, uint64_t hi,
			int (*fn)(struct pt_tracker *t, uint64_t first, uint64_t count, bool keep,
				  void *arg),
			void *arg)
{
	uint64_t p = pt_bit_next(t->skip, lo, hi, false);

	while (p < hi) {
		uint64_t end = pt_bit_next(t->skip, p, hi, true);

		for (uint64_t q = p; q < end;) {
			bool keep = t->keep && pt_bit_test(t->keep, q);
			uint64_t stop = t->keep ? pt_bit_next(t->keep, q, end, !keep) : end;
			int ret = fn(t, q, stop - q, keep, arg);

			if (ret)
				return ret;
			q = stop;
		}
		p = pt_bit_next(t->skip, end, hi, false);
	}
	return 0;
}

static int count_run(struct pt_tracker *t, uint64_t first, uint64_t count, bool keep, void *arg)
{
	(void)t;
	(void)first;
	(void)count;
	(void)keep;
	++*(uint64_t *)arg;
	return 0;
}

struct runs_scan {
	struct pm_scan_arg *arg;	/* write-protecting */
	struct pm_scan_arg read;	/* the same, read-only */
	struct pt_ranges *out;
};

static int scan_run(struct pt_tracker *t, uint64_t first, uint64_t count, bool keep, void *arg)
{
	struct runs_scan *rs = arg;

	return scan_span(t, keep ? &rs->read : rs->arg, rs->out, !keep, first, count);
}

/* A scan per run of pages of [lo, hi) not in t->skip: read-only over
 * t->keep, else write-protecting. */
static int scan_runs(struct pt_tracker *t, struct pm_scan_arg *arg, struct pt_ranges *out,
		     uint64_t lo, uint64_t hi)
{
	struct runs_scan rs = { .arg = arg, .read = *arg, .out = out };

	rs.read.flags &= ~(uint64_t)PM_SCAN_WP_MATCHING;
	return for_each_run(t, lo, hi, scan_run, &rs);
}

bool pt_uffd_merge_hot_always;

/*
 * A read-only scan of pages [lo, hi) into s->seen, then a write-protecting
 * scan of each cluster of the written pages in neither t->skip nor t->keep,
 * into out; out then becomes the union of both (hot pages included: the
 * tracker reports them anyway).  Two clusters are one when the skipped and
 * kept pages between them would cost less in faults than a scan (a scan
 * re-arms those it spans; see the top of this file).
 */
static int scan_read_first(struct pt_tracker *t, struct pm_scan_arg *arg, struct pt_ranges *out,
			   uint64_t lo, uint64_t hi)
{
	struct uffd_state *s = t->priv;
	struct pm_scan_arg read = *arg;
	uint64_t first = 0, end = 0, merge_hot = 0;
	struct pt_ranges tmp;
	bool open = false;
	int ret;

	if (pt_uffd_merge_hot_always)
		merge_hot = UINT64_MAX;
	else if (t->fault_ns)
		merge_hot = s->run_ns / t->fault_ns;

	read.flags &= ~(uint64_t)PM_SCAN_WP_MATCHING;
	s->seen.nr = 0;
	ret = scan_span(t, &read, &s->seen, false, lo, hi - lo);
	if (ret)
		return ret;
	for (size_t i = 0; i < s->seen.nr; i++) {
		uint64_t stop = s->seen.v[i].first + s->seen.v[i].count;
		uint64_t p = pt_bit_next2(t->skip, t->keep, s->seen.v[i].first, stop, false);

		while (p < stop) {
			uint64_t q = pt_bit_next2(t->skip, t->keep, p, stop, true);

			if (open && pt_bit_count2(t->skip, t->keep, end, p) <= merge_hot) {
				end = q;
			} else {
				if (open) {
					ret = scan_span(t, arg, out, true, first, end - first);
					if (ret)
						return ret;
				}
				first = p;
				end = q;
				open = true;
			}
			p = pt_bit_next2(t->skip, t->keep, q, stop, false);
		}
	}
	if (open) {
		ret = scan_span(t, arg, out, true, first, end - first);
		if (ret)
			return ret;
	}
	ret = ranges_union(out, &s->seen, &s->merged);
	if (ret)
		return ret;
	tmp = *out;
	*out = s->merged;
	s->merged = tmp;
	return 0;
}

/* Test and bench hook: force one way of scanning around hot pages. */
enum pt_hot_scan pt_uffd_hot_scan;

#define EXPLORE_EVERY 32

/*
 * A write-protecting collect of pages [lo, hi) around the hot pages
 * (t->skip), the cheaper way by the timings so far (see the top of this
 * file).
 */
static int scan_hot(struct pt_tracker *t, struct pm_scan_arg *arg, struct pt_ranges *out,
		    uint64_t lo, uint64_t hi)
{
	struct uffd_state *s = t->priv;
	uint64_t runs = 0, t0;
	bool by_runs;
	int ret;

	for_each_run(t, lo, hi, count_run, &runs);
	if (pt_uffd_hot_scan != PT_HOT_SCAN_AUTO)
		by_runs = pt_uffd_hot_scan == PT_HOT_SCAN_RUNS;
	else if (!s->run_ns || !s->read_first_ns)
		by_runs = !s->run_ns;	/* time each way once */
	else if (++s->hot_collects % EXPLORE_EVERY == 0)
		by_runs = runs * s->run_ns > s->read_first_ns;	/* the other one */
	else
		by_runs = runs * s->run_ns <= s->read_first_ns;
	t0 = pt_now_ns();
	if (by_runs) {
		ret = scan_runs(t, arg, out, lo, hi);
		if (!ret && runs)
			s->run_ns = estimate(s->run_ns, (pt_now_ns() - t0) / runs);
	} else {
		ret = scan_read_first(t, arg, out, lo, hi);
		if (!ret)
			s->read_first_ns = estimate(s->read_first_ns, pt_now_ns() - t0);
	}
	return ret;
}

/*
 * Scan pages [lo, hi): with reset and hot pages (t->skip), around them;
 * else at once (a read-only scan never re-arms a hot page).
 */
static int scan(struct pt_tracker *t, struct pm_scan_arg *arg, struct pt_ranges *out, bool wp,
		uint64_t lo, uint64_t hi)
{
	if (t->skip && wp)
		return scan_hot(t, arg, out, lo, hi);
	return scan_span(t, arg, out, wp, lo, hi - lo);
}

/*
 * On kernels that report emptied pages as clean (see pt_uffd_scan_empty):
 * find the pages that are neither present nor swapped (nor PTE markers,
 * which count as swapped), that is empty PTEs and holes, into s->empty.
 * After arming, WP_UNPOPULATED leaves none in the range, so each one lost
 * its page (and its protection) since: report it, and with reset arm it
 * again (UFFDIO_WRITEPROTECT installs a marker).  A write between the scan
 * and the re-arm is in the page the caller copies after collect returns.
 * This runs before the main scan, so that on a kernel that needs none of
 * it the re-armed pages still come only from here (the tests rely on it).
 */
static int scan_empty(struct pt_tracker *t, bool reset)
{
	struct uffd_state *s = t->priv;
	struct pm_scan_arg arg = {
		.flags = PM_SCAN_CHECK_WPASYNC,
		.category_inverted = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.category_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};
	int ret;

	s->empty.nr = 0;
	ret = scan(t, &arg, &s->empty, false, 0, t->npages);
	if (ret || !reset)
		return ret;
	for (size_t i = 0; i < s->empty.nr; i++) {
		ret = write_protect(s, t->start + (s->empty.v[i].first << t->page_shift),
				    s->empty.v[i].count << t->page_shift);
		if (ret) {
			/* Reported and left unprotected: found again next
			 * time, nothing lost. */
			pt_log(PT_LOG_WARN, "re-arming emptied pages: %s", strerror(-ret));
			break;
		}
	}
	return 0;
}

void (*pt_uffd_guard_between)(void *arg);
void *pt_uffd_guard_between_arg;
bool pt_uffd_guard_swap_order;
unsigned int pt_uffd_guard_cool_after = GUARD_COOL_AFTER;

/* Re-arm the marked chunks that stayed unwritten long enough (guard_open());
 * returns how many. */
static uint64_t cool_chunks(struct pt_tracker *t)
{
	struct uffd_state *s = t->priv;
	struct pt_tracker *g = s->guard;
	uint64_t cooled = 0;

	for (size_t i = 0; i < g->out.nr; i++) {
		for (uint64_t c = g->out.v[i].first; c < g->out.v[i].first + g->out.v[i].count; c++) {
			if (s->idle[c] < pt_uffd_guard_cool_after)
				continue;
			/* On failure the chunk stays marked and writable:
			 * scanned again next time, nothing lost. */
			if (!pt_mprotect_rearm(g, c, 1))
				cooled++;
			s->idle[c] = 0;
		}
	}
	return cooled;
}

/*
 * Collect from the chunks the guard marked (see guard_open()): re-arm the
 * guard of those unwritten for pt_uffd_guard_cool_after collects, then
 * scan them all.  A chunk written in every epoch stays marked and
 * writable, so its writes cost no signal and no mprotect.
 */
static int scan_chunks(struct pt_tracker *t, struct pm_scan_arg *arg, bool reset)
{
	struct uffd_state *s = t->priv;
	struct pt_tracker *g = s->guard;
	unsigned int shift = GUARD_SHIFT - t->page_shift;
	bool swap = reset && pt_uffd_guard_swap_order;
	uint64_t chunks = 0, cooled = 0;
	int ret;

	g->out.nr = 0;
	ret = pt_mprotect_ops.collect(g, false);
	if (ret)
		return ret;
	if (reset && !swap) {
		cooled = cool_chunks(t);
		if (pt_uffd_guard_between)
			pt_uffd_guard_between(pt_uffd_guard_between_arg);
	}
	for (size_t i = 0; i < g->out.nr; i++) {
		uint64_t first = g->out.v[i].first, end = first + g->out.v[i].count;
		uint64_t p_end = end << shift < t->npages ? end << shift : t->npages;
		/* The scan's first range may extend the last one there. */
		size_t from = t->out.nr ? t->out.nr - 1 : 0;

		/* Adaptive tracking too: around the hot pages, in the chunks. */
		ret = scan(t, arg, &t->out, reset, first << shift, p_end);
		if (ret)
			return ret;
		chunks += end - first;
		if (!reset)
			continue;
		/* Which of these chunks were written: idle counts the others. */
		for (uint64_t c = first; c < end; c++)
			if (s->idle[c] < UINT8_MAX)
				s->idle[c]++;
		for (size_t k = from; k < t->out.nr; k++) {
			uint64_t c0 = t->out.v[k].first >> shift;
			uint64_t c1 = (t->out.v[k].first + t->out.v[k].count - 1) >> shift;

			for (uint64_t c = c0 > first ? c0 : first; c <= c1 && c < end; c++)
				s->idle[c] = 0;
		}
	}
	if (swap) {
		/* The wrong order, for the test only: re-armed after the scan. */
		if (pt_uffd_guard_between)
			pt_uffd_guard_between(pt_uffd_guard_between_arg);
		cooled = cool_chunks(t);
	}
	if (reset) {
		pthread_mutex_lock(&t->mark_lock);
		t->stats.chunks_scanned += chunks;
		t->stats.chunks_cooled += cooled;
		pthread_mutex_unlock(&t->mark_lock);
	}
	return 0;
}

static int uffd_collect(struct pt_tracker *t, bool reset)
{
	struct uffd_state *s = t->priv;
	struct pm_scan_arg arg = {
		.flags = PM_SCAN_CHECK_WPASYNC | (reset ? PM_SCAN_WP_MATCHING : 0),
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	struct pt_ranges tmp;
	int ret;

	s->empty.nr = 0;
	if (pt_uffd_scan_empty) {
		ret = scan_empty(t, reset);
		if (ret)
			goto fail;
	}
	ret = s->guard ? scan_chunks(t, &arg, reset) : scan(t, &arg, &t->out, reset, 0, t->npages);
	if (ret)
		goto fail;
	if (s->empty.nr) {
		ret = ranges_union(&t->out, &s->empty, &s->merged);
		if (ret)
			goto fail;
		tmp = t->out;
		t->out = s->merged;
		s->merged = tmp;
	}
	if (s->resync) {
		/* Every written page was just re-armed (with reset) and is in
		 * the whole range we report instead. */
		t->out.nr = 0;
		ret = pt_ranges_add(&t->out, 0, t->npages);
		if (ret)
			goto fail;
		if (reset)
			s->resync = false;
	}
	return 0;
fail:
	/* Pages re-armed on the way are not handed back: report them all
	 * next time. */
	if (reset)
		s->resync = true;
	return ret;
}

/*
 * Re-arm the whole range.  PAGEMAP_SCAN with PM_SCAN_WP_MATCHING and no
 * output vector protects only what is not protected (and arms empty page
 * tables and holes like UFFDIO_WRITEPROTECT does); UFFDIO_WRITEPROTECT
 * rewrites every PTE: on a populated 1 GiB range, 6.18 here, ~0.3-0.6 ms
 * against ~18 ms.  The latter stays as the fallback.
 */
static int uffd_reset(struct pt_tracker *t)
{
	struct uffd_state *s = t->priv;
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_CHECK_WPASYNC | PM_SCAN_WP_MATCHING,
		.start = t->start,
		.end = t->start + t->len,
	};
	long n;
	int ret;

	/* Guard first: a write between the two faults on it and marks its
	 * chunk, and the re-arm then clears what the write left. */
	if (s->guard) {
		ret = pt_mprotect_ops.reset(s->guard);
		if (ret)
			return ret;
	}
	do
		n = ioctl(s->pagemap, PAGEMAP_SCAN, &arg);
	while (n < 0 && (errno == EINTR || errno == EAGAIN));
	if (n >= 0) {
		s->resync = false;
		return 0;
	}
	pt_log(PT_LOG_WARN, "PAGEMAP_SCAN reset: %s; using UFFDIO_WRITEPROTECT", strerror(errno));
	ret = write_protect(s, t->start, t->len);
	if (!ret)
		s->resync = false;
	return ret;
}

static void uffd_close(struct pt_tracker *t)
{
	struct uffd_state *s = t->priv;
	struct uffdio_register reg = {
		.range = { .start = t->start, .len = t->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	/*
	 * Closing the userfaultfd unregisters the range only when the last
	 * reference goes, and a forked child may hold one for a while (its
	 * fork handler may not have run yet): unregister explicitly, so the
	 * range can be tracked again at once.  UFFDIO_UNREGISTER does not
	 * necessarily check which userfaultfd a mapping belongs to (6.18
	 * does, with EINVAL), and after munmap the address may hold another
	 * tracker's mapping; registering it again first succeeds only if no
	 * other userfaultfd holds any of it (EBUSY) and it is all mapped
	 * (EINVAL), so nobody else's range is dropped on any kernel.
	 * Only in the process that opened it: in a child the descriptor would
	 * act on the parent's memory.
	 */
	/* Writable again before unregistering (mprotect.c's close). */
	guard_close(t, s);
	if (s->uffd >= 0 && getpid() == t->owner && !ioctl(s->uffd, UFFDIO_REGISTER, &reg))
		ioctl(s->uffd, UFFDIO_UNREGISTER, &reg.range);
	uffd_free(s);
	t->priv = NULL;
}

static int uffd_protect(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	return write_protect(t->priv, t->start + (first << t->page_shift), count << t->page_shift);
}

/*
 * UFFDIO_WRITEPROTECT with mode 0: the PTEs lose their protection (a
 * marker on an empty PTE goes, leaving it empty, which PAGEMAP_SCAN reads
 * as written where pt_uffd_scan_empty is false and scan_empty() finds
 * where it is true), so a page opened here and not reported by the
 * tracker would still be found by the next scan: nothing is lost when the
 * tracker's bookkeeping and the page tables disagree in this direction.
 * Seen on 6.18: a private anonymous page comes out writable, but a page
 * of shared memory (memfd, shm, a file) stays read-only, so its next
 * write takes one ordinary write fault (the file's dirty tracking); after
 * that it stays writable for as long as it stays hot.
 */
static int uffd_unprotect(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	struct uffd_state *s = t->priv;
	struct uffdio_writeprotect wp = {
		.range = { .start = t->start + (first << t->page_shift), .len = count << t->page_shift },
		.mode = 0,
	};

	while (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp)) {
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	return 0;
}

/*
 * What a write-protect fault costs here: scratch pages of the tracker's
 * own (mapped, populated and registered on its userfaultfd at the first
 * call, kept until close, so that only the fault is timed, never an
 * allocation), armed, then one store to each of the first pages pages,
 * the cheapest of rounds rounds.  Costs vary twentyfold between machines
 * and between days on one (KERNEL-NOTES): measured, not assumed, at open
 * and again while running (adaptive.c).  The scratch is private anonymous
 * memory: a fault on a file system's page (ext4's page_mkwrite) costs
 * more than this says.
 */
static int uffd_fault_cost(struct pt_tracker *t, unsigned int rounds, unsigned int pages,
			   uint64_t *fault_ns)
{
	struct uffd_state *s = t->priv;
	size_t ps = t->page_size, len = COST_PAGES * ps;
	uint64_t best = UINT64_MAX;

	if (pages > COST_PAGES)
		pages = COST_PAGES;
	if (!s->scratch) {
		struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };
		char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		int ret;

		if (a == MAP_FAILED)
			return -errno;
		madvise(a, len, MADV_NOHUGEPAGE);
		memset(a, 1, len);
		reg.range.start = (uintptr_t)a;
		reg.range.len = len;
		if (ioctl(s->uffd, UFFDIO_REGISTER, &reg)) {
			ret = -errno;
			munmap(a, len);
			return ret;
		}
		s->scratch = a;
	}
	for (unsigned int round = 0; round < rounds; round++) {
		uint64_t t0;
		int ret = write_protect(s, (uintptr_t)s->scratch, pages * ps);

		if (ret)
			return ret;
		t0 = pt_now_ns();
		for (size_t i = 0; i < pages; i++)
			((volatile char *)s->scratch)[i * ps] = (char)round;
		t0 = pt_now_ns() - t0;
		if (t0 < best)
			best = t0;
	}
	*fault_ns = best / pages;
	return 0;
}

const struct pt_backend_ops pt_uffd_ops = {
	.id = PT_BACKEND_UFFD_WP,
	.name = "uffd-wp",
	.probe = uffd_probe,
	.open = uffd_open,
	.collect = uffd_collect,
	.reset = uffd_reset,
	.close = uffd_close,
	.protect = uffd_protect,
	.unprotect = uffd_unprotect,
	.fault_cost = uffd_fault_cost,
};
