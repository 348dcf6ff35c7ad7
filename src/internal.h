/* SPDX-License-Identifier: MIT */
/*
 * internal.h - what the library's files share and the public header hides:
 * the tracker object, the backend interface, the range builder and logging.
 */
#ifndef PT_INTERNAL_H
#define PT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include "pagetrack.h"

#define PT_EXPORT __attribute__((visibility("default")))

#define PT_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Growable list of page ranges, kept ascending and maximal by pt_ranges_add(). */
struct pt_ranges {
	struct pt_range *v;
	size_t nr;
	size_t cap;
};

/* Append pages [first, first + count); merges with the last range when adjacent.
 * Callers add in ascending order.  Returns 0 or -ENOMEM. */
int pt_ranges_add(struct pt_ranges *r, uint64_t first, uint64_t count);
void pt_ranges_free(struct pt_ranges *r);

struct pt_tracker;

/*
 * A backend.  open() gets a tracker whose generic fields are filled in and
 * sets t->priv; collect() appends to t->out (already emptied) in ascending
 * order and re-arms what it reports when reset is true; close() must work on
 * a range that was already unmapped.
 */
struct pt_backend_ops {
	enum pt_backend id;
	const char *name;
	int (*probe)(char *why, size_t why_len);
	int (*open)(struct pt_tracker *t);
	int (*collect)(struct pt_tracker *t, bool reset);
	int (*reset)(struct pt_tracker *t);
	void (*close)(struct pt_tracker *t);
	/*
	 * Adaptive tracking (adaptive.c); NULL where the backend has none.
	 * protect() arms pages so that their next write is seen; unprotect()
	 * lets writes to them through unseen (adaptive.c then reports them at
	 * every collect).  Both take page runs, may be called only from
	 * collect's caller, and on failure may have done part of the run.
	 * fault_cost() times a fault of this backend on scratch memory of the
	 * tracker's own (kept until close): ns per first write, the cheapest
	 * of rounds rounds of pages pages each.  collect() with reset and
	 * t->skip set (a bitmap of pages, the hot ones) need not scan those
	 * pages, and must not re-arm one without reporting it: it may report
	 * skipped pages, and may re-arm some (reporting them) where a fault
	 * (t->fault_ns, 0: unknown) costs less than the scan it saves.  The
	 * pages in t->keep (NULL: none; set only with t->skip) must be
	 * scanned, and should not be re-armed: the tracker makes those found
	 * written hot again without unprotecting them.
	 */
	int (*protect)(struct pt_tracker *t, uint64_t first, uint64_t count);
	int (*unprotect)(struct pt_tracker *t, uint64_t first, uint64_t count);
	int (*fault_cost)(struct pt_tracker *t, unsigned int rounds, unsigned int pages,
			  uint64_t *fault_ns);
};

struct pt_tracker {
	const struct pt_backend_ops *ops;
	uintptr_t start;	/* page aligned */
	size_t len;		/* bytes, page multiple */
	uint64_t npages;
	size_t page_size;
	unsigned int page_shift;
	pid_t owner;		/* the process that opened it: trackers do not follow fork */
	unsigned int flags;	/* PT_TRACK_* in effect */
	struct pt_ranges out;	/* what collect returns */
	void *priv;		/* backend state */
	/* Pages the caller marked with pt_tracker_mark(): a bitmap allocated
	 * on first use, merged into the next collect's report. */
	pthread_mutex_t mark_lock;
	uint64_t *marked;
	bool any_marked;
	/* What pt_tracker_stats() reports, under mark_lock: every tracker
	 * counts its collects and the pages its backend reported. */
	struct pt_tracker_stats stats;
	/* PT_TRACK_ADAPTIVE's per-page policy (adaptive.c), NULL: off. */
	struct pt_adaptive *adaptive;
	const uint64_t *skip;	/* hot pages collect() need not scan, see above */
	const uint64_t *keep;	/* pages it should scan without re-arming */
	uint64_t fault_ns;	/* adaptive: a fault's cost, as last measured */
};

/* adaptive.c: PT_TRACK_ADAPTIVE's policy (the rules are at its top). */
int pt_adaptive_open(struct pt_tracker *t, const struct pt_tracker_opts *o);
void pt_adaptive_free(struct pt_adaptive *a);
void pt_adaptive_before_collect(struct pt_tracker *t);
void pt_adaptive_after_collect(struct pt_tracker *t, bool reset);
void pt_adaptive_watch(struct pt_tracker *t);
void pt_adaptive_reset(struct pt_tracker *t);
void pt_adaptive_unchanged(struct pt_tracker *t, uint64_t first, uint64_t count);
void pt_adaptive_stats(struct pt_tracker *t, struct pt_tracker_stats *s);

/* Test hook (not exported): cool hot pages in the wrong order, re-arming
 * them at the start of the next collect, after the caller's copy, instead
 * of before the collect that last reports them returns.  Loses writes; the
 * ordering test sets it to show that it notices. */
extern bool pt_adaptive_swap_order;

/* Test and bench hook (not exported): how uffd-wp's collect scans around
 * hot pages (uffd.c), and whether its clusters span hot pages. */
enum pt_hot_scan {
	PT_HOT_SCAN_AUTO = 0,	/* the cheaper way, as timed while running */
	PT_HOT_SCAN_RUNS,	/* a write-protecting scan per run of cold pages */
	PT_HOT_SCAN_READ_FIRST,	/* a read-only scan of the whole range, then a
				 * write-protecting scan per cluster of written
				 * cold pages */
};
extern enum pt_hot_scan pt_uffd_hot_scan;
/* Test hook: a read-first collect's clusters span any number of hot pages,
 * which its scans then re-arm (uffd.c). */
extern bool pt_uffd_merge_hot_always;
/* Test hooks (not exported) of the chunk guard (PT_TRACK_CHUNKS): called
 * by a collect with reset between the guard's re-protection of the marked
 * chunks and their scan; with swap_order, the scan comes first and the
 * hook between it and the re-protection, which loses writes (the ordering
 * test shows that it notices). */
extern void (*pt_uffd_guard_between)(void *arg);
extern void *pt_uffd_guard_between_arg;
extern bool pt_uffd_guard_swap_order;
/* Collects in a row a marked chunk must be found unwritten before the
 * guard re-arms it (default 32; 0: at every collect). */
extern unsigned int pt_uffd_guard_cool_after;

extern const struct pt_backend_ops pt_uffd_ops;
extern const struct pt_backend_ops pt_softdirty_ops;
extern const struct pt_backend_ops pt_mprotect_ops;
/* Free an mprotect tracker's state in a forked child (mprotect.c). */
void pt_mprotect_forget(struct pt_tracker *t);
/* Re-arm only pages [first, first + count) of an mprotect tracker. */
int pt_mprotect_rearm(struct pt_tracker *t, uint64_t first, uint64_t count);

/*
 * Write freeze, provided by mprotect.c's SIGSEGV handler for the soft-dirty
 * backend: pt_write_freeze() makes [start, start + len) read-only and makes
 * any thread that writes there wait in the fault handler until
 * pt_write_thaw() restores write access; then the write is retried.  Not
 * async-signal-safe to call; one freeze at a time per range.
 */
int pt_write_freeze(uintptr_t start, size_t len);
void pt_write_thaw(uintptr_t start, size_t len);

/* Logging: printf-like, goes to the callback of pt_set_log() or PAGETRACK_LOG. */
void pt_log(enum pt_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool pt_log_enabled(enum pt_log_level level);

/* snprintf into why (which may be NULL) and return err: the probes' idiom. */
int pt_why(char *why, size_t why_len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * Copy the caller's option struct in (NULL: leave dst, the defaults, as
 * it is): it starts with size_t sz; fields beyond what the caller's sz
 * holds keep dst's values, bytes beyond dst_size must be zero.  min_size:
 * the smallest sz accepted.  0 or -EINVAL.
 */
int pt_opts_take(void *dst, size_t dst_size, const void *in, size_t min_size);

/* Does a range the mprotect backend tracks or freezes (and so keeps
 * read-only) overlap [start, start + len)? */
bool pt_mprotect_overlaps(uintptr_t start, size_t len);

/* Is [start, start + len) mapped readable and writable?  0, -EFAULT. */
int pt_range_writable(uintptr_t start, size_t len);

/* CLOCK_MONOTONIC in ns, for timing the costs adaptive tracking weighs. */
static inline uint64_t pt_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Kernel version as major * 65536 + minor * 256 + patch (0 if unknown). */
unsigned int pt_kernel_version(void);

#endif /* PT_INTERNAL_H */
