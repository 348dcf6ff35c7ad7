/* SPDX-License-Identifier: MIT */
/*
 * tracker.c - the backend-independent tracker: argument checks, backend
 * choice (PT_BACKEND_AUTO, PAGETRACK_BACKEND), dispatch, marks, and the
 * statistics.  The adaptive policy (PT_TRACK_ADAPTIVE) is adaptive.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "internal.h"

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
	/* Three versions so far: up to flags, with hot_after and probation,
	 * with pause_budget_us; a size between them cuts a field in two. */
	if (opts && opts->sz < sizeof(o) && opts->sz != offsetof(struct pt_tracker_opts, hot_after) &&
	    opts->sz != offsetof(struct pt_tracker_opts, pause_budget_us))
		return -EINVAL;
	ret = pt_opts_take(&o, sizeof(o), opts, offsetof(struct pt_tracker_opts, flags) +
			   sizeof(o.flags));
	if (ret)
		return ret;
	if ((o.flags & ~(PT_TRACK_ADAPTIVE | PT_TRACK_CHUNKS)) || o.hot_after > 255)
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
	t->flags = o.flags;
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
		ret = pt_adaptive_open(t, &o);
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
	pt_bits_set(t->marked, first, first + count);
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
	uint64_t *bits = t->marked, p;
	int ret = 0;

	for (size_t i = 0; i < t->out.nr; i++)
		pt_bits_set(bits, t->out.v[i].first, t->out.v[i].first + t->out.v[i].count);
	t->out.nr = 0;
	for (p = pt_bit_next(bits, 0, t->npages, true); p < t->npages && !ret;) {
		uint64_t end = pt_bit_next(bits, p, t->npages, false);

		ret = pt_ranges_add(&t->out, p, end - p);
		p = pt_bit_next(bits, end, t->npages, true);
	}
	if (ret) {
		t->out.nr = 0;
		return ret;
	}
	if (reset) {
		memset(bits, 0, (t->npages + 63) / 64 * sizeof(*bits));
		t->any_marked = false;
	}
	return 0;
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
		pt_adaptive_before_collect(t);
	ret = t->ops->collect(t, reset);
	t->skip = t->keep = NULL;
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&t->mark_lock);
	if (reset) {
		t->stats.collects++;
		/* Adaptive tracking counts the pages that were not hot. */
		if (!t->adaptive)
			for (size_t i = 0; i < t->out.nr; i++)
				t->stats.faulted += t->out.v[i].count;
	}
	if (t->adaptive)
		pt_adaptive_after_collect(t, reset);
	if (t->any_marked)
		ret = merge_marks(t, reset);
	pthread_mutex_unlock(&t->mark_lock);
	if (ret < 0) {
		/* What the backend re-armed is in the marks now. */
		pt_log(PT_LOG_ERROR, "collect: cannot merge marked pages: %s", strerror(-ret));
		return ret;
	}
	if (t->adaptive && reset)
		pt_adaptive_watch(t);
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
		pthread_mutex_lock(&t->mark_lock);
		pt_adaptive_reset(t);
		pthread_mutex_unlock(&t->mark_lock);
	}
	return ret;
}

PT_EXPORT int pt_tracker_unchanged(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	if (!t || !count || first >= t->npages || count > t->npages - first)
		return -EINVAL;
	if (getpid() != t->owner)
		return -ECHILD;
	if (!t->adaptive)
		return 0;
	pthread_mutex_lock(&t->mark_lock);
	pt_adaptive_unchanged(t, first, count);
	pthread_mutex_unlock(&t->mark_lock);
	return 0;
}

PT_EXPORT int pt_tracker_stats(struct pt_tracker *t, struct pt_tracker_stats *st)
{
	struct pt_tracker_stats s;
	size_t sz;

	/* The first version of the struct ends at reported_unwritten. */
	if (!t || !st || st->sz < offsetof(struct pt_tracker_stats, reported_unwritten) +
	    sizeof(st->reported_unwritten))
		return -EINVAL;
	sz = st->sz < sizeof(s) ? st->sz : sizeof(s);
	pthread_mutex_lock(&t->mark_lock);
	s = t->stats;
	if (t->adaptive)
		pt_adaptive_stats(t, &s);
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
	pt_adaptive_free(t->adaptive);
	free(t);
}

PT_EXPORT enum pt_backend pt_tracker_backend(const struct pt_tracker *t)
{
	return t && t->ops ? t->ops->id : PT_BACKEND_AUTO;
}
