/* SPDX-License-Identifier: MIT */
/*
 * pagetrack.h - the one public header of libpagetrack.
 *
 * libpagetrack reports which pages of a memory range were written since the
 * last time it looked, without ever missing one, and builds replication on
 * that: epochs, a checksummed page log, a durable image and replicas.
 *
 * Conventions (every call in this header):
 *  - int-returning calls return >= 0 on success and -errno on failure; they
 *    never rely on, and may clobber, errno;
 *  - handles are opaque and returned through an out-parameter;
 *  - option structs start with `size_t sz`, set to sizeof(struct ...) by the
 *    caller, so they can grow without breaking old binaries; a NULL options
 *    pointer means the documented defaults;
 *  - the library never prints; see pt_set_log().
 *
 * Kernel requirements, backends and guarantees are in pagetrack(7).
 */
#ifndef PAGETRACK_H
#define PAGETRACK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAGETRACK_VERSION_MAJOR 0
#define PAGETRACK_VERSION_MINOR 1
#define PAGETRACK_VERSION_PATCH 0
#define PAGETRACK_VERSION "0.1.0"

/* The library's version at run time (may differ from the header's). */
const char *pt_version(void);

/* ------------------------------------------------------------------ */
/* Logging                                                             */
/* ------------------------------------------------------------------ */

enum pt_log_level {
	PT_LOG_ERROR = 0,
	PT_LOG_WARN,
	PT_LOG_INFO,
	PT_LOG_DEBUG,
};

typedef void (*pt_log_fn)(enum pt_log_level level, const char *msg, void *arg);

/*
 * Route the library's diagnostics to fn (NULL: silence, the default) for
 * messages at or below max_level.  The environment variable
 * PAGETRACK_LOG=error|warn|info|debug, read once, sends messages up to that
 * level to stderr when no callback is set.  Process-wide; call it before
 * other threads use the library.
 */
void pt_set_log(pt_log_fn fn, enum pt_log_level max_level, void *arg);

/* ------------------------------------------------------------------ */
/* Tracker: which pages of a range were written                        */
/* ------------------------------------------------------------------ */

enum pt_backend {
	PT_BACKEND_AUTO = 0,	/* uffd-wp, else soft-dirty, else mprotect */
	PT_BACKEND_UFFD_WP,	/* userfaultfd async write-protect + PAGEMAP_SCAN, Linux >= 6.7 */
	PT_BACKEND_SOFT_DIRTY,	/* /proc/self/clear_refs + pagemap bit 55, CONFIG_MEM_SOFT_DIRTY */
	PT_BACKEND_MPROTECT,	/* mprotect + SIGSEGV, any POSIX system */
};

/* A run of pages, relative to the first page of the tracked range. */
struct pt_range {
	uint64_t first;
	uint64_t count;
};

struct pt_tracker_opts {
	size_t sz;		/* sizeof(struct pt_tracker_opts) */
	enum pt_backend backend;/* PT_BACKEND_AUTO unless you must have one */
	unsigned int flags;	/* none defined yet: must be 0 */
};

/* pt_tracker_collect() flag: re-arm every reported page in the same step. */
#define PT_COLLECT_RESET 1u

struct pt_tracker;

/*
 * Start tracking writes to [addr, addr + len).  addr and len must be
 * multiples of the page size and len > 0; the range must be mapped readable
 * and writable by the caller.  The whole range starts clean: writes made
 * before this call are not reported.
 *
 * With PT_BACKEND_AUTO the environment variable PAGETRACK_BACKEND
 * (uffd-wp, soft-dirty or mprotect) forces the backend; a forced backend
 * that cannot work here fails, there is no fallback.
 *
 * Returns 0 and *out, or:
 *  -EINVAL      misaligned or zero length, overflow, unknown backend or flags,
 *               bad PAGETRACK_BACKEND value;
 *  -EOPNOTSUPP  the backend asked for (or every backend, for AUTO) is not
 *               available on this kernel; pt_log() says why;
 *  -EPERM       the kernel refused (userfaultfd disabled for this process);
 *  -EEXIST      the range overlaps one that another tracker holds
 *               (mprotect and uffd-wp);
 *  -ENOMEM, or another -errno from the kernel.
 */
int pt_tracker_open(struct pt_tracker **out, void *addr, size_t len,
		    const struct pt_tracker_opts *opts);

/*
 * Report the pages written since open or the last reset, as ascending,
 * non-overlapping, maximal ranges.  *ranges points into a buffer owned by
 * the tracker, valid until the next call on it; *nr is the count.
 *
 * With PT_COLLECT_RESET each reported page is re-armed in the same step: a
 * write that races with the collect is reported by this collect or by the
 * next one, never lost.  Copy the reported pages after collect returns.
 *
 * No false negatives.  False positives only where the kernel offers no
 * finer answer (see pagetrack(7)).
 *
 * Returns the number of pages reported (>= 0), or -errno:
 *  -ECHILD  called in a child forked after open (tracking does not follow
 *           fork; open a new tracker in the child);
 *  -ENOMEM, -EIO or another -errno from the kernel: nothing was re-armed
 *           that was not reported.
 */
int pt_tracker_collect(struct pt_tracker *t, unsigned int flags,
		       const struct pt_range **ranges, size_t *nr);

/* Re-arm the whole range: writes before this call are forgotten. */
int pt_tracker_reset(struct pt_tracker *t);

/* Stop tracking and free t (NULL is fine).  Safe before or after munmap. */
void pt_tracker_close(struct pt_tracker *t);

/* The backend in use (never PT_BACKEND_AUTO). */
enum pt_backend pt_tracker_backend(const struct pt_tracker *t);

/* "uffd-wp", "soft-dirty", "mprotect", "auto"; NULL for an unknown value. */
const char *pt_backend_name(enum pt_backend b);

/*
 * Can backend b track writes in this process?  Returns 0 if yes, or -errno
 * (-EOPNOTSUPP, -EPERM, ...) with a one-line reason in why (may be NULL).
 */
int pt_backend_probe(enum pt_backend b, char *why, size_t why_len);

/* @@REPLICATION@@ (epochs, log, image, replicas: see below) */

#ifdef __cplusplus
}
#endif

#endif /* PAGETRACK_H */
