/* SPDX-License-Identifier: MIT */
/*
 * adaptive.c - PT_TRACK_ADAPTIVE: a per-page policy inside the tracker that
 * leaves pages written at every epoch unprotected (hot), so writing them
 * costs no fault, and reports them at every collect instead.
 *
 * Why no write is lost.  A hot page is one the backend no longer
 * write-protects (ops->unprotect) and the collect's scan need not look at
 * (t->skip), so the kernel cannot tell us whether it was written.  Two
 * rules keep the contract (every page written since the last collect with
 * reset is reported by the next one):
 *
 *  1. Every page that is hot when a collect starts is reported by it
 *     (pt_adaptive_after_collect() ORs the hot set into the marks before
 *     anything else changes it).  A write to a hot page at any time before
 *     that collect's report is in the page the caller copies after it
 *     returns.
 *
 *  2. A page leaves the hot set (cools) only inside a collect with reset
 *     that reports it by rule 1, and is write-protected (ops->protect)
 *     before that collect returns.  The caller copies after the return, so
 *     its copy holds every write made before the protection; a write after
 *     it faults and the next scan reports it.  Protecting after the copy
 *     instead (at the next collect, say) would wipe the written state of a
 *     write made between the copy and the protection: lost.  The test hook
 *     pt_adaptive_swap_order does exactly that, and tracker-adaptive's
 *     ordering cell shows it loses writes.
 *
 * A page turns hot in the collect that reports it written for the
 * hot_after-th time in a row: that scan reported (and re-armed) it, and it
 * is unprotected after; a write in between faults, harmlessly.  If the
 * bookkeeping and the page tables disagree, it is always in the safe
 * direction: a page marked hot but protected (a failed unprotect, a scan
 * that spanned it, see uffd.c) is reported every collect and its next write
 * faults, which unprotects it again; a page not marked hot but unprotected
 * reads as written to the next scan (see uffd_unprotect()); a cooling page
 * whose protection failed stays hot.
 *
 * Cooling.  The tracker cannot see content.  A hot page is re-armed once
 * every `probation` collects (staggered by 64-page block, so each collect
 * re-arms a share of the hot set): if the next scan finds it written it
 * turns hot again at once, else it goes back to plain tracking.  That scan
 * looks at the probing pages without re-arming them (t->keep), so one
 * written again is hot as its write left it: reported by this collect (the
 * scan saw it), and by every later one (rule 1).  A page that stays hot
 * thus pays one fault per probation period instead of one per epoch.  A
 * caller that compares its copies can cool a page sooner with
 * pt_tracker_unchanged(): the page cools at the next collect, by rule 2.
 * (The region layer does not: its staged copy of a page's previous epoch
 * is in a ring that may have been recycled, and comparing would read every
 * hot page twice on the writer's pause.)
 *
 * Cost model (choose_knobs()).  A fault of the backend is timed at open on
 * scratch memory and again about once a second while collects run (the
 * median of the last FAULT_SAMPLES samples is the estimate: a guest's
 * fault cost changes from one day, or hour, to the next); a page copy is
 * timed at open.  A page written in a share q of epochs costs q * (fault +
 * copy) per epoch tracked and one copy hot: hot wins when q > copy /
 * (fault + copy).  hot_after in a row is the evidence asked for, fewer the
 * dearer the fault (2 at fault >= 8 copies, 3 at >= 2, 4 at >= 1/2; below
 * that no page turns hot, and hot pages cool at their next probation).
 * Probation: a still-hot page pays fault / probation per epoch, so the
 * period is 64 x fault / copy rounded up to a power of two, 8 to 1024, which
 * keeps probation faults at most about 1/64 of the hot set's copy time:
 * when every page is hot a collect reports the whole range, a full copy,
 * and the probations make it at most a few percent dearer than copying
 * everything (bench/adaptive, "all").  The price of a long period is paid
 * by pages that stop being written: each is copied in vain for up to a
 * period.  That is the writer's pause (the caller copies on it), so it has
 * a budget: when the hot pages the recent probations found unwritten,
 * extrapolated to the hot set, would cost more than pause_budget to copy
 * per collect, probation drops to PROBATION_MIN collects (the caller's
 * probation too, if longer) until they have cooled.  The budget can act
 * only on what probations find: the first stale pages show up within one
 * probation period.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bitmap.h"
#include "internal.h"

bool pt_adaptive_swap_order;

#define FAULT_SAMPLES		5
#define SAMPLE_EVERY_NS		1000000000ull	/* re-measure the fault this often */
#define OPEN_ROUNDS		3		/* at open: the cheapest of 3 rounds */
#define OPEN_PAGES		64		/* of 64 faults each */
#define RUN_ROUNDS		2		/* while running: 2 rounds of 16 */
#define RUN_PAGES		16
#define COPY_PAGES		256
#define PROBATION_MIN		8
#define PROBATION_MAX		1024
#define DEFAULT_BUDGET_NS	100000		/* pause_budget_us 0: 100 us */

struct pt_adaptive {
	/* The caller's knobs (0: chosen here) and those in effect. */
	unsigned int want_hot_after, want_probation;
	unsigned int hot_after, probation;
	uint64_t pause_budget_ns;
	bool over_budget;
	/* Costs. */
	uint64_t copy_ns;
	uint64_t fault_ns;		/* median of samples[] */
	uint64_t fault_ns_open;
	uint64_t samples[FAULT_SAMPLES];	/* the last ones, a ring */
	uint64_t nsamples;
	uint64_t next_sample_ns;
	/* Per page. */
	uint64_t words;			/* of each bitmap */
	uint64_t *hot;			/* unprotected, always reported */
	uint64_t *probing;		/* re-armed by the last collect for a probation */
	uint64_t *cool_next;		/* pt_tracker_unchanged(), under t->mark_lock */
	uint64_t *deferred;		/* pt_adaptive_swap_order: protect at the next collect */
	bool any_cool_next, any_deferred;
	bool any_probing;		/* probing may have a bit set */
	bool kept;			/* this collect scanned probing without re-arming */
	uint32_t *last_written;		/* the collect that last saw the cold page written */
	uint8_t *streak;		/* collects in a row it was */
	struct pt_ranges runs;		/* scratch: runs to protect or unprotect */
	uint32_t collects;		/* collects with reset */
	/* Probation outcomes: since open, and recent (decaying by 1/8 a collect). */
	uint64_t probations_written;
	uint64_t recent_probes, recent_written;
};

void pt_adaptive_free(struct pt_adaptive *a)
{
	if (!a)
		return;
	free(a->hot);
	free(a->probing);
	free(a->cool_next);
	free(a->deferred);
	free(a->last_written);
	free(a->streak);
	pt_ranges_free(&a->runs);
	free(a);
}

static unsigned int round_up_pow2(uint64_t v)
{
	unsigned int p = 1;

	while (p < v && p < (1u << 30))
		p <<= 1;
	return p;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* The knobs from the costs and the budget (see the top of this file). */
static void choose_knobs(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;
	double ratio = (double)a->fault_ns / (double)a->copy_ns;
	unsigned int probation = round_up_pow2((uint64_t)(64 * ratio));

	if (probation < PROBATION_MIN)
		probation = PROBATION_MIN;
	if (probation > PROBATION_MAX)
		probation = PROBATION_MAX;
	if (a->want_probation)
		probation = a->want_probation;
	if (a->over_budget && probation > PROBATION_MIN)
		probation = PROBATION_MIN;
	a->hot_after = a->want_hot_after ? a->want_hot_after :
		       ratio >= 8 ? 2 : ratio >= 2 ? 3 : ratio >= 0.5 ? 4 : 0;
	a->probation = probation;
	t->fault_ns = a->fault_ns;
}

/* A new fault sample; the estimate is the median of the last ones. */
static void add_sample(struct pt_tracker *t, uint64_t fault_ns)
{
	struct pt_adaptive *a = t->adaptive;
	uint64_t v[FAULT_SAMPLES];
	size_t n;

	a->samples[a->nsamples++ % FAULT_SAMPLES] = fault_ns ? fault_ns : 1;
	n = a->nsamples < FAULT_SAMPLES ? (size_t)a->nsamples : FAULT_SAMPLES;
	memcpy(v, a->samples, n * sizeof(v[0]));
	qsort(v, n, sizeof(v[0]), cmp_u64);
	a->fault_ns = v[n / 2];
	choose_knobs(t);
}

/* A page copy, the cheapest of three rounds of COPY_PAGES pages between
 * populated buffers (~1 MiB each: about what a caller's copy of scattered
 * pages finds in the caches). */
static int copy_cost(size_t ps, uint64_t *copy_ns)
{
	size_t len = COPY_PAGES * ps;
	uint64_t best = UINT64_MAX;
	char *a, *b;

	a = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return -errno;
	b = a + len;
	memset(a, 1, 2 * len);
	for (int round = 0; round < 3; round++) {
		uint64_t t0 = pt_now_ns();

		memcpy(b, a, len);
		__asm__ __volatile__("" : : "r"(b) : "memory");
		t0 = pt_now_ns() - t0;
		if (t0 < best)
			best = t0;
	}
	munmap(a, 2 * len);
	*copy_ns = best / COPY_PAGES ? best / COPY_PAGES : 1;
	return 0;
}

int pt_adaptive_open(struct pt_tracker *t, const struct pt_tracker_opts *o)
{
	struct pt_adaptive *a;
	uint64_t fault_ns;
	int ret;

	if (!t->ops->protect || !t->ops->unprotect || !t->ops->fault_cost) {
		pt_log(PT_LOG_INFO, "adaptive tracking: backend %s has none, tracking every page",
		       t->ops->name);
		return 0;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->words = (t->npages + 63) / 64;
	a->hot = calloc(a->words, sizeof(uint64_t));
	a->probing = calloc(a->words, sizeof(uint64_t));
	a->cool_next = calloc(a->words, sizeof(uint64_t));
	a->deferred = calloc(a->words, sizeof(uint64_t));
	a->last_written = calloc(t->npages, sizeof(uint32_t));
	a->streak = calloc(t->npages, 1);
	if (!t->marked)
		t->marked = calloc(a->words, sizeof(uint64_t));
	if (!a->hot || !a->probing || !a->cool_next || !a->deferred || !a->last_written ||
	    !a->streak || !t->marked) {
		ret = -ENOMEM;
		goto err;
	}
	ret = copy_cost(t->page_size, &a->copy_ns);
	if (!ret)
		ret = t->ops->fault_cost(t, OPEN_ROUNDS, OPEN_PAGES, &fault_ns);
	if (ret) {
		pt_log(PT_LOG_ERROR, "adaptive tracking: cannot time a fault: %s", strerror(-ret));
		goto err;
	}
	a->want_hot_after = o->hot_after;
	a->want_probation = o->probation;
	a->pause_budget_ns = o->pause_budget_us ? (uint64_t)o->pause_budget_us * 1000 :
			     DEFAULT_BUDGET_NS;
	a->fault_ns_open = fault_ns;
	a->next_sample_ns = pt_now_ns() + SAMPLE_EVERY_NS;
	t->adaptive = a;
	add_sample(t, fault_ns);
	t->stats.adaptive = 1;
	pt_log(PT_LOG_DEBUG, "adaptive tracking: fault %llu ns, page copy %llu ns: hot after %u, "
	       "probation every %u collects", (unsigned long long)a->fault_ns,
	       (unsigned long long)a->copy_ns, a->hot_after, a->probation);
	return 0;
err:
	pt_adaptive_free(a);
	return ret;
}

/* The runs of set bits of b into a->runs, clearing them from b when clear. */
static int runs_of(struct pt_tracker *t, uint64_t *b, bool clear)
{
	struct pt_adaptive *a = t->adaptive;
	uint64_t p = pt_bit_next(b, 0, t->npages, true);
	int ret = 0;

	a->runs.nr = 0;
	while (p < t->npages) {
		uint64_t end = pt_bit_next(b, p, t->npages, false);

		if (clear)
			for (uint64_t q = p; q < end; q++)
				pt_bit_clear(b, q);
		if (!ret)
			ret = pt_ranges_add(&a->runs, p, end - p);
		p = pt_bit_next(b, end, t->npages, true);
	}
	return ret;
}

/*
 * Before the backend's collect with reset: what the swapped-order test
 * hook deferred is protected now, after the caller's copy (the bug it
 * demonstrates), and the hot pages are left out of the scan.
 */
void pt_adaptive_before_collect(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;

	if (a->any_deferred) {
		if (!runs_of(t, a->deferred, true))
			for (size_t i = 0; i < a->runs.nr; i++)
				t->ops->protect(t, a->runs.v[i].first, a->runs.v[i].count);
		a->any_deferred = false;
	}
	/* The pages on probation are scanned without being re-armed: those
	 * written again turn hot as they are, with no unprotect (which on
	 * shared memory would leave them read-only: a second fault). */
	a->kept = a->any_probing && a->hot_after;
	t->keep = a->kept ? a->probing : NULL;
	t->skip = t->stats.hot_pages || a->kept ? a->hot : NULL;
}

/*
 * The streaks of the cold pages the kernel saw written (t->out, hot pages
 * aside: a scan that spanned them reports them), and the probations'
 * outcomes; pages to promote go into a->runs.
 */
static void count_written(struct pt_tracker *t, uint32_t n)
{
	struct pt_adaptive *a = t->adaptive;
	uint64_t probes = 0, written = 0;

	a->runs.nr = 0;
	for (size_t i = 0; i < t->out.nr; i++) {
		uint64_t stop = t->out.v[i].first + t->out.v[i].count;

		for (uint64_t p = pt_bit_next(a->hot, t->out.v[i].first, stop, false); p < stop;
		     p = pt_bit_next(a->hot, p + 1, stop, false)) {
			t->stats.faulted++;
			if (pt_bit_clear(a->probing, p)) {
				/* Hot until the last collect and written again:
				 * its streak goes on. */
				probes++;
				written++;
				a->streak[p] = 255;
				a->last_written[p] = n;
				if (a->kept) {
					/* Scanned without a re-arm: its write left it
					 * unprotected, as a hot page is (if a scan did
					 * re-arm it, it is reported every collect and
					 * its next write opens it). */
					pt_bit_set(a->hot, p);
					t->stats.hot_pages++;
					continue;
				}
			} else if (a->last_written[p] == n - 1 && n > 1) {
				a->streak[p] = a->streak[p] < 255 ? a->streak[p] + 1 : 255;
			} else {
				a->streak[p] = 1;
			}
			a->last_written[p] = n;
			if (a->hot_after && a->streak[p] >= a->hot_after)
				pt_ranges_add(&a->runs, p, 1);	/* on ENOMEM: not promoted */
		}
	}
	/* Probing pages the scan did not report: cooled. */
	a->any_probing = false;
	for (uint64_t w = 0; w < a->words; w++) {
		uint64_t c = (uint64_t)__builtin_popcountll(a->probing[w]);

		if (!c)
			continue;
		for (uint64_t bits = a->probing[w]; bits; bits &= bits - 1)
			a->streak[w * 64 + (uint64_t)__builtin_ctzll(bits)] = 0;
		probes += c;
		t->stats.cooled += c;
		a->probing[w] = 0;
	}
	a->probations_written += written;
	/* In 1/1024 pages, decaying by an eighth a collect. */
	a->recent_probes += probes * 1024 - a->recent_probes / 8;
	a->recent_written += written * 1024 - a->recent_written / 8;
}

/*
 * Is the pause over its budget: would the hot pages that the recent
 * probations found unwritten, as a share of the hot set, cost more to copy
 * than pause_budget_ns?  The knobs follow.
 */
static void check_budget(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;
	double unwritten = 0;
	bool over;

	if (a->recent_probes)
		unwritten = 1.0 - (double)a->recent_written / (double)a->recent_probes;
	over = (double)t->stats.hot_pages * unwritten * (double)a->copy_ns >
	       (double)a->pause_budget_ns;
	if (over != a->over_budget) {
		a->over_budget = over;
		choose_knobs(t);
	}
}

/* Unprotect a->runs and make those pages hot.  On failure the pages stay
 * cold; any that lost its protection reads as written next time. */
static void promote(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;

	for (size_t i = 0; i < a->runs.nr; i++) {
		uint64_t first = a->runs.v[i].first, count = a->runs.v[i].count;

		if (t->ops->unprotect(t, first, count))
			continue;
		pt_bits_set(a->hot, first, first + count);
		t->stats.hot_pages += count;
	}
}

/*
 * Hot pages due for probation (staggered by 64-page block) or named by
 * pt_tracker_unchanged() leave the hot set for a->probing; pages promoted
 * by this very collect (last_written == n) are not due: the scan just
 * reported them.
 */
static void pick_cooling(struct pt_tracker *t, uint32_t n)
{
	struct pt_adaptive *a = t->adaptive;

	for (uint64_t w = 0; w < a->words; w++) {
		uint64_t due = (n + w) % a->probation ? 0 : ~0ull;
		uint64_t told = a->any_cool_next ? a->cool_next[w] : 0;
		uint64_t cool = a->hot[w] & (due | told), c;

		if (!cool)
			continue;
		for (uint64_t bits = cool; bits; bits &= bits - 1) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

			if (a->last_written[p] == n)
				cool &= ~(1ull << (p % 64));
		}
		c = (uint64_t)__builtin_popcountll(cool);
		t->stats.unchanged += (uint64_t)__builtin_popcountll(told & cool);
		a->probing[w] = cool;
		a->any_probing |= cool != 0;
		a->hot[w] &= ~cool;
		t->stats.hot_pages -= c;
		t->stats.probations += c;
	}
	if (a->any_cool_next) {
		memset(a->cool_next, 0, a->words * sizeof(uint64_t));
		a->any_cool_next = false;
	}
}

/* Rule 2 of the top of this file: protect the cooling pages before the
 * collect returns.  Those that cannot be stay hot. */
static void protect_cooling(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;

	if (runs_of(t, a->probing, false)) {
		/* No memory for the runs: nothing cools this time. */
		for (uint64_t w = 0; w < a->words; w++) {
			uint64_t c = (uint64_t)__builtin_popcountll(a->probing[w]);

			t->stats.hot_pages += c;
			t->stats.probations -= c;
			a->hot[w] |= a->probing[w];
			a->probing[w] = 0;
		}
		return;
	}
	if (pt_adaptive_swap_order) {
		for (uint64_t w = 0; w < a->words; w++)
			a->deferred[w] |= a->probing[w];
		a->any_deferred = a->runs.nr > 0;
		return;
	}
	for (size_t i = 0; i < a->runs.nr; i++) {
		uint64_t first = a->runs.v[i].first, count = a->runs.v[i].count;

		if (!t->ops->protect(t, first, count))
			continue;
		/* Not (all) protected: they stay hot, reported every collect. */
		for (uint64_t p = first; p < first + count; p++)
			pt_bit_clear(a->probing, p);
		pt_bits_set(a->hot, first, first + count);
		t->stats.hot_pages += count;
		t->stats.probations -= count;
	}
}

/*
 * After the backend's collect (t->out: the pages the kernel saw written).
 * Rule 1 of the top of this file first: the hot set goes into the report.
 * Then, with reset: streaks and probation outcomes, promotion (unprotect),
 * cooling (protect, rule 2).  Called with t->mark_lock held.
 */
void pt_adaptive_after_collect(struct pt_tracker *t, bool reset)
{
	struct pt_adaptive *a = t->adaptive;
	bool any_hot = t->stats.hot_pages > 0;
	uint32_t n;

	if (any_hot) {
		for (uint64_t w = 0; w < a->words; w++)
			t->marked[w] |= a->hot[w];
		t->any_marked = true;
	}
	if (!reset)
		return;
	n = ++a->collects;
	t->stats.hot_reports += t->stats.hot_pages;
	count_written(t, n);
	check_budget(t);
	promote(t);
	if (any_hot || a->any_cool_next)
		pick_cooling(t, n);
	protect_cooling(t);
}

/*
 * About once a second, a fault is timed again (a few pages, ~20-200 us on
 * the collect's caller) and the knobs follow.  Called after a collect with
 * reset, without t->mark_lock.
 */
void pt_adaptive_watch(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;
	uint64_t now = pt_now_ns(), fault_ns;

	if (now < a->next_sample_ns)
		return;
	a->next_sample_ns = now + SAMPLE_EVERY_NS;
	if (t->ops->fault_cost(t, RUN_ROUNDS, RUN_PAGES, &fault_ns))
		return;		/* keep the estimate we have */
	pthread_mutex_lock(&t->mark_lock);
	add_sample(t, fault_ns);
	pthread_mutex_unlock(&t->mark_lock);
}

/* pt_tracker_reset() re-armed every page, the hot ones too. */
void pt_adaptive_reset(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;

	memset(a->hot, 0, a->words * sizeof(uint64_t));
	memset(a->probing, 0, a->words * sizeof(uint64_t));
	memset(a->deferred, 0, a->words * sizeof(uint64_t));
	a->any_deferred = a->any_probing = false;
	t->stats.hot_pages = 0;
}

/* pt_tracker_unchanged(), with t->mark_lock held. */
void pt_adaptive_unchanged(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	struct pt_adaptive *a = t->adaptive;

	pt_bits_set(a->cool_next, first, first + count);
	a->any_cool_next = true;
}

/* The policy's part of pt_tracker_stats(), with t->mark_lock held. */
void pt_adaptive_stats(struct pt_tracker *t, struct pt_tracker_stats *s)
{
	struct pt_adaptive *a = t->adaptive;

	s->hot_after = a->hot_after;
	s->probation = a->probation;
	s->fault_ns = a->fault_ns;
	s->copy_ns = a->copy_ns;
	s->fault_ns_open = a->fault_ns_open;
	s->fault_samples = a->nsamples;
	s->pause_budget_ns = a->pause_budget_ns;
	/* The share of probations that found the page written again stands
	 * for the share of hot reports that were writes. */
	if (s->probations)
		s->faults_avoided = (uint64_t)((double)s->hot_reports *
					       (double)a->probations_written /
					       (double)s->probations);
	else
		s->faults_avoided = s->hot_reports;
	if (s->faults_avoided > s->hot_reports)
		s->faults_avoided = s->hot_reports;
	s->reported_unwritten = s->hot_reports - s->faults_avoided;
}
