/* SPDX-License-Identifier: MIT */
/*
 * tracker.c - the backend-independent tracker: argument checks, backend
 * choice (PT_BACKEND_AUTO, PAGETRACK_BACKEND), dispatch, and the adaptive
 * policy (PT_TRACK_ADAPTIVE) that leaves pages written at every epoch
 * unprotected.
 *
 * Adaptive tracking, and why it loses no write.  A hot page is one the
 * backend no longer write-protects (ops->unprotect) and the collect's scan
 * leaves alone (t->skip), so the kernel cannot tell us whether it was
 * written.  Two rules keep the contract (every page written since the last
 * collect with reset is reported by the next one):
 *
 *  1. Every page that is hot when a collect starts is reported by it
 *     (adaptive_collect() ORs the hot set into the marks before anything
 *     else changes it).  A write to a hot page at any time before that
 *     collect's report is in the page the caller copies after it returns.
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
 * bookkeeping and the page tables disagree after a failed ioctl, it is
 * always in the safe direction: a page marked hot but still protected is
 * reported every collect (a fault more, nothing lost); a page not marked
 * hot but unprotected reads as written to the next scan (see
 * uffd_unprotect()), and a cooling page whose protection failed stays hot.
 *
 * Cooling.  The tracker cannot see content.  A hot page is re-armed once
 * every `probation` collects (staggered by 64-page block, so each collect
 * re-arms a share of the hot set): if the next scan finds it written it
 * turns hot again at once (its streak goes on), else it stays in plain
 * tracking.  A still-hot page thus pays one fault per probation period
 * instead of one per epoch.  A caller that compares its copies can cool a
 * page sooner with pt_tracker_unchanged(): the page cools at the next
 * collect, by rule 2.  (The region layer does not: its staged copy of a
 * page's previous epoch is in a ring that may have been recycled, and
 * comparing would read every hot page twice on the writer's pause.)
 *
 * Cost model (adaptive_open()): a fault of the backend and a page copy are
 * timed at open.  A page written in a share q of epochs costs q * (fault +
 * copy) per epoch tracked and one copy hot: hot wins when q > copy /
 * (fault + copy).  hot_after in a row is the evidence asked for, fewer the
 * dearer the fault (2 at fault >= 8 copies, 3 at >= 2, 4 at >= 1/2, never
 * below); probation is 4 x fault / copy rounded up to a power of two, 4 to
 * 32, so that probation faults stay at most a quarter of plain tracking's
 * and a page that stopped being written is copied in vain for about
 * probation / 2 epochs, worth at most a couple of faults.  When every page
 * is hot a collect reports the whole range, which is a full copy.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

bool pt_adaptive_swap_order;
bool pt_adaptive_unprotect_after_scan;

struct pt_adaptive {
	unsigned int hot_after, probation;
	uint64_t fault_ns, copy_ns;
	uint64_t collects;		/* collects with reset */
	uint64_t words;			/* of each bitmap */
	uint64_t *hot;			/* unprotected, left out of scans, always reported */
	uint64_t *probing;		/* re-armed by the last collect for a probation */
	uint64_t *cool_next;		/* pt_tracker_unchanged(), under t->mark_lock */
	uint64_t *deferred;		/* pt_adaptive_swap_order: protect at the next collect */
	bool any_cool_next, any_deferred;
	uint32_t *last_written;		/* the collect that last saw the page written or hot */
	uint8_t *streak;		/* collects in a row it was */
	struct pt_ranges runs;		/* scratch: runs to protect or unprotect */
	struct pt_tracker_stats st;
	uint64_t probations_written;
};

static inline bool bit_test(const uint64_t *b, uint64_t p)
{
	return b[p / 64] & (1ull << (p % 64));
}

static inline void bit_set(uint64_t *b, uint64_t p)
{
	b[p / 64] |= 1ull << (p % 64);
}

static inline void bit_clear(uint64_t *b, uint64_t p)
{
	b[p / 64] &= ~(1ull << (p % 64));
}

/* AUTO tries these in order. */
static const struct pt_backend_ops *const backends[] = {
	&pt_uffd_ops,
	&pt_softdirty_ops,
	&pt_mprotect_ops,
};

static const struct pt_backend_ops *backend_ops(enum pt_backend b)
{
	for (size_t i = 0; i < PT_ARRAY_SIZE(backends); i++)
		if (backends[i]->id == b)
			return backends[i];
	return NULL;
}

PT_EXPORT const char *pt_backend_name(enum pt_backend b)
{
	const struct pt_backend_ops *ops = backend_ops(b);

	if (b == PT_BACKEND_AUTO)
		return "auto";
	return ops ? ops->name : NULL;
}

PT_EXPORT int pt_backend_probe(enum pt_backend b, char *why, size_t why_len)
{
	const struct pt_backend_ops *ops = backend_ops(b);

	if (b == PT_BACKEND_AUTO)
		return pt_why(why, why_len, -EINVAL, "auto is a choice, not a backend: "
			      "probe uffd-wp, soft-dirty or mprotect");
	if (!ops)
		return pt_why(why, why_len, -EINVAL, "unknown backend %d", (int)b);
	if (why && why_len)
		why[0] = '\0';
	return ops->probe(why, why_len);
}

/* PAGETRACK_BACKEND, if set, names the backend AUTO must use. */
static int backend_from_env(enum pt_backend *b)
{
	const char *v = getenv("PAGETRACK_BACKEND");

	*b = PT_BACKEND_AUTO;
	if (!v || !*v || !strcmp(v, "auto"))
		return 0;
	for (size_t i = 0; i < PT_ARRAY_SIZE(backends); i++) {
		if (!strcmp(v, backends[i]->name)) {
			*b = backends[i]->id;
			return 0;
		}
	}
	pt_log(PT_LOG_ERROR,
	       "PAGETRACK_BACKEND=%s: unknown backend (uffd-wp, soft-dirty, mprotect or auto)", v);
	return -EINVAL;
}

static void adaptive_free(struct pt_adaptive *a)
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

/* After the backend opened: measure, choose the knobs, allocate.  A
 * backend without the hooks leaves t->adaptive NULL (plain tracking). */
static int adaptive_open(struct pt_tracker *t, const struct pt_tracker_opts *o)
{
	struct pt_adaptive *a;
	double ratio;
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
	ret = t->ops->fault_cost(&a->fault_ns, &a->copy_ns);
	if (ret) {
		pt_log(PT_LOG_ERROR, "adaptive tracking: cannot time a fault: %s", strerror(-ret));
		goto err;
	}
	ratio = (double)a->fault_ns / (double)(a->copy_ns ? a->copy_ns : 1);
	a->hot_after = o->hot_after ? o->hot_after :
		       ratio >= 8 ? 2 : ratio >= 2 ? 3 : ratio >= 0.5 ? 4 : 0;
	a->probation = o->probation ? o->probation : round_up_pow2((uint64_t)(4 * ratio + 1));
	if (!o->probation && a->probation < 4)
		a->probation = 4;
	if (!o->probation && a->probation > 32)
		a->probation = 32;
	a->st.adaptive = 1;
	a->st.hot_after = a->hot_after;
	a->st.probation = a->probation;
	a->st.fault_ns = a->fault_ns;
	a->st.copy_ns = a->copy_ns;
	pt_log(PT_LOG_DEBUG, "adaptive tracking: fault %llu ns, page copy %llu ns: hot after %u, "
	       "probation every %u collects", (unsigned long long)a->fault_ns,
	       (unsigned long long)a->copy_ns, a->hot_after, a->probation);
	t->adaptive = a;
	return 0;
err:
	adaptive_free(a);
	return ret;
}

static int tracker_start(struct pt_tracker *t, const struct pt_backend_ops *ops)
{
	t->ops = ops;
	return ops->open(t);
}

/* PAGETRACK_ADAPTIVE=1 or 0, if set, forces PT_TRACK_ADAPTIVE on or off. */
static unsigned int adaptive_from_env(unsigned int flags)
{
	const char *v = getenv("PAGETRACK_ADAPTIVE");

	if (v && !strcmp(v, "1"))
		return flags | PT_TRACK_ADAPTIVE;
	if (v && !strcmp(v, "0"))
		return flags & ~PT_TRACK_ADAPTIVE;
	return flags;
}

PT_EXPORT int pt_tracker_open(struct pt_tracker **out, void *addr, size_t len,
			      const struct pt_tracker_opts *opts)
{
	struct pt_tracker_opts o = { .sz = sizeof(o), .backend = PT_BACKEND_AUTO };
	long page_size = sysconf(_SC_PAGESIZE);
	uintptr_t start = (uintptr_t)addr;
	struct pt_tracker *t;
	char why[256];
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	/* Two versions so far: up to flags, and with the adaptive knobs; a
	 * size between them cuts a field in two. */
	if (opts && opts->sz < sizeof(o) && opts->sz != offsetof(struct pt_tracker_opts, hot_after))
		return -EINVAL;
	ret = pt_opts_take(&o, sizeof(o), opts, offsetof(struct pt_tracker_opts, flags) +
			   sizeof(o.flags));
	if (ret)
		return ret;
	if ((o.flags & ~PT_TRACK_ADAPTIVE) || o.hot_after > 255)
		return -EINVAL;
	o.flags = adaptive_from_env(o.flags);
	if (page_size <= 0 || !addr || !len || start % (uintptr_t)page_size ||
	    len % (size_t)page_size || start + len < start)
		return -EINVAL;
	/* Pages the mprotect backend tracks are read-only on purpose: the
	 * backend's own overlap check gives those their -EEXIST. */
	ret = pt_mprotect_overlaps(start, len) ? 0 : pt_range_writable(start, len);
	if (ret) {
		pt_log(PT_LOG_ERROR, "tracker: [%#lx, %#lx) is not all mapped readable and writable",
		       (unsigned long)start, (unsigned long)(start + len));
		return ret;
	}
	if (o.backend == PT_BACKEND_AUTO) {
		ret = backend_from_env(&o.backend);
		if (ret)
			return ret;
	}
	if (o.backend != PT_BACKEND_AUTO && !backend_ops(o.backend))
		return -EINVAL;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->start = start;
	t->len = len;
	t->page_size = (size_t)page_size;
	t->page_shift = (unsigned int)__builtin_ctzl((unsigned long)page_size);
	t->npages = len >> t->page_shift;
	t->owner = getpid();
	pthread_mutex_init(&t->mark_lock, NULL);

	if (o.backend != PT_BACKEND_AUTO) {
		const struct pt_backend_ops *ops = backend_ops(o.backend);

		ret = ops->probe(why, sizeof(why));
		if (ret) {
			pt_log(PT_LOG_ERROR, "backend %s unavailable: %s", ops->name, why);
			goto err;
		}
		ret = tracker_start(t, ops);
		if (ret)
			goto err;
	} else {
		ret = -EOPNOTSUPP;
		for (size_t i = 0; i < PT_ARRAY_SIZE(backends); i++) {
			if (backends[i]->probe(why, sizeof(why))) {
				pt_log(PT_LOG_INFO, "backend %s skipped: %s", backends[i]->name, why);
				continue;
			}
			ret = tracker_start(t, backends[i]);
			if (!ret)
				break;
			/* A range the backend cannot take (EEXIST, EINVAL) is the
			 * caller's problem, not a reason to try the next one. */
			if (ret != -EOPNOTSUPP)
				goto err;
			pt_log(PT_LOG_INFO, "backend %s could not open: %s",
			       backends[i]->name, strerror(-ret));
		}
		if (ret)
			goto err;
	}
	if (o.flags & PT_TRACK_ADAPTIVE) {
		ret = adaptive_open(t, &o);
		if (ret) {
			t->ops->close(t);
			goto err;
		}
	}
	pt_log(PT_LOG_DEBUG, "tracking %zu bytes at %p with %s", len, addr, t->ops->name);
	*out = t;
	return 0;
err:
	free(t->marked);
	pthread_mutex_destroy(&t->mark_lock);
	free(t);
	return ret;
}

PT_EXPORT int pt_tracker_mark(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	if (!t || !count || first >= t->npages || count > t->npages - first)
		return -EINVAL;
	if (getpid() != t->owner)
		return -ECHILD;
	pthread_mutex_lock(&t->mark_lock);
	if (!t->marked) {
		t->marked = calloc((t->npages + 63) / 64, sizeof(*t->marked));
		if (!t->marked) {
			pthread_mutex_unlock(&t->mark_lock);
			return -ENOMEM;
		}
	}
	for (uint64_t p = first; p < first + count; p++)
		t->marked[p / 64] |= 1ull << (p % 64);
	t->any_marked = true;
	pthread_mutex_unlock(&t->mark_lock);
	return 0;
}

/*
 * Fold what the backend reported into the marks, then rebuild t->out from
 * them, so the result stays ascending and maximal.  Working in place needs
 * no allocation but t->out's growth, and a failure leaves every reported
 * page marked: the next collect reports it.  With reset the marks are
 * consumed; without, they stay (those pages are still dirty anyway).
 */
static int merge_marks(struct pt_tracker *t, bool reset)
{
	size_t words = (t->npages + 63) / 64;
	uint64_t *bits = t->marked;
	uint64_t p = 0;
	int ret = 0;

	for (size_t i = 0; i < t->out.nr; i++)
		for (uint64_t q = t->out.v[i].first; q < t->out.v[i].first + t->out.v[i].count; q++)
			bits[q / 64] |= 1ull << (q % 64);
	t->out.nr = 0;
	while (p < t->npages && !ret) {
		uint64_t end;

		if (!(bits[p / 64] >> (p % 64))) {
			p = (p / 64 + 1) * 64;
			continue;
		}
		if (!(bits[p / 64] & (1ull << (p % 64)))) {
			p++;
			continue;
		}
		for (end = p + 1; end < t->npages && (bits[end / 64] & (1ull << (end % 64))); end++)
			;
		ret = pt_ranges_add(&t->out, p, end - p);
		p = end;
	}
	if (ret) {
		t->out.nr = 0;
		return ret;
	}
	if (reset) {
		memset(bits, 0, words * sizeof(*bits));
		t->any_marked = false;
	}
	return 0;
}

/* The runs of set bits of b into a->runs, clearing them from b when clear. */
static int runs_of(struct pt_tracker *t, uint64_t *b, bool clear)
{
	struct pt_adaptive *a = t->adaptive;
	uint64_t p = 0;
	int ret = 0;

	a->runs.nr = 0;
	while (p < t->npages) {
		uint64_t end;

		if (!b[p / 64]) {
			p = (p / 64 + 1) * 64;
			continue;
		}
		if (!bit_test(b, p)) {
			p++;
			continue;
		}
		for (end = p + 1; end < t->npages && bit_test(b, end); end++)
			;
		if (clear)
			for (uint64_t q = p; q < end; q++)
				bit_clear(b, q);
		if (!ret)
			ret = pt_ranges_add(&a->runs, p, end - p);
		p = end;
	}
	return ret;
}

/*
 * Before the backend's collect with reset: what the swapped-order test
 * hook deferred is protected now, after the caller's copy (the bug it
 * demonstrates), and the hot pages are left out of the scan.
 */
static void adaptive_before_collect(struct pt_tracker *t)
{
	struct pt_adaptive *a = t->adaptive;

	if (a->any_deferred) {
		if (!runs_of(t, a->deferred, true))
			for (size_t i = 0; i < a->runs.nr; i++)
				t->ops->protect(t, a->runs.v[i].first, a->runs.v[i].count);
		a->any_deferred = false;
	}
	t->skip = pt_adaptive_unprotect_after_scan ? NULL : a->hot;
}

/*
 * After the backend's collect (t->out: the pages the kernel saw written,
 * hot ones aside).  Rule 1 of the top of this file first: the hot set goes
 * into the report.  Then streaks, probation outcomes, cooling (protect,
 * rule 2), and promotion (unprotect).  Called with t->mark_lock held.
 * Without reset only rule 1 applies.
 */
static void adaptive_collect(struct pt_tracker *t, bool reset)
{
	struct pt_adaptive *a = t->adaptive;
	uint32_t n;
	bool any_hot = a->st.hot_pages > 0;

	if (any_hot) {
		for (uint64_t w = 0; w < a->words; w++)
			t->marked[w] |= a->hot[w];
		t->any_marked = true;
	}
	if (!reset)
		return;
	n = (uint32_t)++a->collects;
	a->st.collects++;
	a->st.hot_reports += a->st.hot_pages;

	/* Streaks of what the kernel saw written; promotions into a->runs. */
	a->runs.nr = 0;
	for (size_t i = 0; i < t->out.nr; i++) {
		for (uint64_t p = t->out.v[i].first; p < t->out.v[i].first + t->out.v[i].count; p++) {
			if (bit_test(a->hot, p))
				continue;	/* unprotect_after_scan: re-armed, reported, hot */
			a->st.faulted++;
			if (a->last_written[p] == n - 1 && n > 1)
				a->streak[p] = a->streak[p] < 255 ? a->streak[p] + 1 : 255;
			else
				a->streak[p] = 1;
			a->last_written[p] = n;
			if (a->hot_after && a->streak[p] >= a->hot_after)
				pt_ranges_add(&a->runs, p, 1);	/* on ENOMEM: not promoted */
		}
	}

	/* Probation outcomes: written again (turning hot again now) or cooled. */
	for (uint64_t w = 0; w < a->words; w++) {
		uint64_t bits = a->probing[w];

		while (bits) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

			bits &= bits - 1;
			if (a->last_written[p] == n)
				a->probations_written++;
			else
				a->st.cooled++;
		}
		a->probing[w] = 0;
	}

	/* Promote: unprotect what the scan just re-armed.  On failure the pages
	 * stay cold; any that lost their protection reads as written next time. */
	for (size_t i = 0; i < a->runs.nr; i++) {
		uint64_t first = a->runs.v[i].first, count = a->runs.v[i].count;

		if (t->ops->unprotect(t, first, count))
			continue;
		for (uint64_t p = first; p < first + count; p++)
			bit_set(a->hot, p);
		a->st.hot_pages += count;
	}

	/* Hot pages due for probation (staggered by 64-page block), or named
	 * by pt_tracker_unchanged(), cool: off the hot set, into a->probing. */
	if (any_hot || a->any_cool_next) {
		for (uint64_t w = 0; w < a->words; w++) {
			uint64_t due = (n + w) % a->probation ? 0 : ~0ull;
			uint64_t told = a->any_cool_next ? a->cool_next[w] & a->hot[w] : 0;
			uint64_t cool;

			if (!a->hot[w])
				continue;
			/* Pages promoted just now (last_written == n, not hot
			 * before) are not due: they were reported by the scan. */
			cool = a->hot[w] & (due | told);
			for (uint64_t bits = cool; bits; bits &= bits - 1) {
				uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);

				if (a->last_written[p] == n)
					cool &= ~(1ull << (p % 64));
			}
			a->st.unchanged += (uint64_t)__builtin_popcountll(told & cool);
			a->probing[w] = cool;
			a->hot[w] &= ~cool;
			a->st.hot_pages -= (uint64_t)__builtin_popcountll(cool);
			a->st.probations += (uint64_t)__builtin_popcountll(cool);
			/* Still hot: as if written, so a probation write continues the streak. */
			for (uint64_t bits = a->hot[w] | cool; bits; bits &= bits - 1)
				a->last_written[w * 64 + (uint64_t)__builtin_ctzll(bits)] = n;
		}
		if (a->any_cool_next) {
			memset(a->cool_next, 0, a->words * sizeof(uint64_t));
			a->any_cool_next = false;
		}
	}

	/* Rule 2: protect the cooling pages before this collect returns. */
	if (runs_of(t, a->probing, false))
		goto keep_hot;
	if (pt_adaptive_swap_order) {
		for (uint64_t w = 0; w < a->words; w++)
			a->deferred[w] |= a->probing[w];
		a->any_deferred = a->runs.nr > 0;
		goto unprotect_rest;
	}
	for (size_t i = 0; i < a->runs.nr; i++) {
		uint64_t first = a->runs.v[i].first, count = a->runs.v[i].count;

		if (!t->ops->protect(t, first, count))
			continue;
		/* Not (all) protected: they stay hot, reported every collect. */
		for (uint64_t p = first; p < first + count; p++) {
			bit_clear(a->probing, p);
			bit_set(a->hot, p);
		}
		a->st.hot_pages += count;
		a->st.probations -= count;
	}
unprotect_rest:
	/* unprotect_after_scan: the scan re-armed the hot pages; open them
	 * again (those that stay hot and were not promoted just now, which
	 * are open already; opening them twice is harmless). */
	if (pt_adaptive_unprotect_after_scan && !runs_of(t, a->hot, false))
		for (size_t i = 0; i < a->runs.nr; i++)
			t->ops->unprotect(t, a->runs.v[i].first, a->runs.v[i].count);
	return;
keep_hot:
	/* No memory for the runs: nothing cools this time. */
	for (uint64_t w = 0; w < a->words; w++) {
		a->st.hot_pages += (uint64_t)__builtin_popcountll(a->probing[w]);
		a->st.probations -= (uint64_t)__builtin_popcountll(a->probing[w]);
		a->hot[w] |= a->probing[w];
		a->probing[w] = 0;
	}
	goto unprotect_rest;
}

PT_EXPORT int pt_tracker_collect(struct pt_tracker *t, unsigned int flags,
				 const struct pt_range **ranges, size_t *nr)
{
	bool reset = flags & PT_COLLECT_RESET;
	uint64_t pages = 0;
	int ret;

	if (!t || !ranges || !nr || (flags & ~PT_COLLECT_RESET))
		return -EINVAL;
	*ranges = NULL;
	*nr = 0;
	if (getpid() != t->owner)
		return -ECHILD;
	t->out.nr = 0;
	if (t->adaptive && reset)
		adaptive_before_collect(t);
	ret = t->ops->collect(t, reset);
	t->skip = NULL;
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&t->mark_lock);
	if (t->adaptive)
		adaptive_collect(t, reset);
	if (t->any_marked)
		ret = merge_marks(t, reset);
	pthread_mutex_unlock(&t->mark_lock);
	if (ret < 0) {
		/* What the backend re-armed is in the marks now. */
		pt_log(PT_LOG_ERROR, "collect: cannot merge marked pages: %s", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < t->out.nr; i++)
		pages += t->out.v[i].count;
	*ranges = t->out.v;
	*nr = t->out.nr;
	return pages > INT32_MAX ? INT32_MAX : (int)pages;
}

PT_EXPORT int pt_tracker_reset(struct pt_tracker *t)
{
	int ret;

	if (!t)
		return -EINVAL;
	if (getpid() != t->owner)
		return -ECHILD;
	pthread_mutex_lock(&t->mark_lock);
	if (t->any_marked) {
		memset(t->marked, 0, (t->npages + 63) / 64 * sizeof(*t->marked));
		t->any_marked = false;
	}
	pthread_mutex_unlock(&t->mark_lock);
	ret = t->ops->reset(t);
	if (!ret && t->adaptive) {
		/* Every page is armed again, the hot ones too. */
		struct pt_adaptive *a = t->adaptive;

		memset(a->hot, 0, a->words * sizeof(uint64_t));
		memset(a->probing, 0, a->words * sizeof(uint64_t));
		memset(a->deferred, 0, a->words * sizeof(uint64_t));
		a->any_deferred = false;
		a->st.hot_pages = 0;
	}
	return ret;
}

PT_EXPORT int pt_tracker_unchanged(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	struct pt_adaptive *a;

	if (!t || !count || first >= t->npages || count > t->npages - first)
		return -EINVAL;
	if (getpid() != t->owner)
		return -ECHILD;
	a = t->adaptive;
	if (!a)
		return 0;
	pthread_mutex_lock(&t->mark_lock);
	for (uint64_t p = first; p < first + count; p++)
		bit_set(a->cool_next, p);
	a->any_cool_next = true;
	pthread_mutex_unlock(&t->mark_lock);
	return 0;
}

PT_EXPORT int pt_tracker_stats(struct pt_tracker *t, struct pt_tracker_stats *st)
{
	struct pt_tracker_stats s = { .sz = sizeof(s) };
	size_t sz;

	if (!t || !st || st->sz < offsetof(struct pt_tracker_stats, reported_unwritten) +
	    sizeof(st->reported_unwritten))
		return -EINVAL;
	sz = st->sz < sizeof(s) ? st->sz : sizeof(s);
	pthread_mutex_lock(&t->mark_lock);
	if (t->adaptive) {
		struct pt_adaptive *a = t->adaptive;

		s = a->st;
		/* The share of probations that found the page written again
		 * stands for the share of hot reports that were writes. */
		if (s.probations)
			s.faults_avoided = (uint64_t)((double)s.hot_reports *
				(double)a->probations_written / (double)s.probations);
		else
			s.faults_avoided = s.hot_reports;
		s.reported_unwritten = s.hot_reports - s.faults_avoided;
	}
	pthread_mutex_unlock(&t->mark_lock);
	s.sz = st->sz;
	memcpy(st, &s, sz);
	return 0;
}

PT_EXPORT void pt_tracker_close(struct pt_tracker *t)
{
	if (!t)
		return;
	/* In a forked child the backend state belongs to the parent's
	 * tracking: only free the memory, except for uffd-wp, whose close
	 * acts on this process alone (its fork handler already closed the
	 * inherited descriptors) and frees the backend's memory too. */
	if (t->ops && (getpid() == t->owner || t->ops == &pt_uffd_ops))
		t->ops->close(t);
	pt_ranges_free(&t->out);
	pthread_mutex_destroy(&t->mark_lock);
	free(t->marked);
	adaptive_free(t->adaptive);
	free(t);
}

PT_EXPORT enum pt_backend pt_tracker_backend(const struct pt_tracker *t)
{
	return t && t->ops ? t->ops->id : PT_BACKEND_AUTO;
}
