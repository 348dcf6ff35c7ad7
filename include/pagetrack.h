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
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAGETRACK_VERSION_MAJOR 0
#define PAGETRACK_VERSION_MINOR 2
#define PAGETRACK_VERSION_PATCH 0
#define PAGETRACK_VERSION "0.2.0"

/* The library's version at run time (may differ from the header's). */
const char *pt_version(void);

/*
 * What an error returned by this library means, in its own words: the
 * replication layer gives some errno values a meaning of their own (-ESTALE
 * another history, -EXDEV another page size, -ENOTRECOVERABLE durable epochs
 * lost...), which strerror() would misname.  err may be negative or
 * positive.  Never NULL; the string is static.
 */
const char *pt_strerror(int err);

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
	unsigned int flags;	/* PT_TRACK_* */
	/* PT_TRACK_ADAPTIVE's knobs; 0: chosen from the costs measured (see
	 * below).  Fields added in the PAGETRACK_0.4 symbol version. */
	unsigned int hot_after;	/* collects in a row a page must be reported
				 * written in to turn hot (1-255) */
	unsigned int probation;	/* a hot page is re-armed once every this many
				 * collects to see whether it is still written */
	unsigned int pause_budget_us;	/* the most the copies of hot pages that
					 * were not written may add to a collect's
					 * copy, estimated; 0: 100 */
};

/*
 * pt_tracker_opts.flags: adaptive tracking.  A page reported written by
 * hot_after collects in a row turns hot: it is no longer write-protected,
 * so writing it costs no fault, and every collect reports it whether or
 * not it was written (the contract allows reporting unwritten pages; it
 * never allows missing one).  A hot page cools back into plain tracking
 * when it is re-armed for its probation (once every `probation` collects)
 * and not written in that epoch, or when the caller says its content did
 * not change (pt_tracker_unchanged()).  Cooling write-protects the page
 * inside the collect that reports it for the last time, before that
 * collect returns: the caller's copy comes after, so any later write
 * faults and is reported.
 *
 * The cost model: a write-protect fault is timed at open and again about
 * once a second while collects run (a few faults on scratch memory; the
 * estimate is the median of the last five), a page copy at open
 * (pt_tracker_stats() shows both).  With hot_after and probation at 0,
 * the dearer the fault against a copy, the sooner a page turns hot (2
 * collects at 8 copies or more, 3 at 2, 4 at 1/2) and the rarer its
 * probation (64 x fault / copy, a power of two, 8-1024); when a fault
 * costs less than half a copy no page turns hot and hot pages cool.  When
 * the hot pages the recent probations found unwritten would cost more
 * than pause_budget_us to copy per collect, probation drops to 8 (also
 * from a longer probation of the caller's) until they have cooled.  When
 * every page is hot a collect reports the whole range: a full copy, never
 * more.  PAGETRACK_ADAPTIVE=1 in the environment sets the flag for every
 * tracker (=0 clears it).
 *
 * uffd-wp only.  The other backends ignore the flag and track every page
 * (pt_tracker_stats() says adaptive 0): it changes what tracking costs,
 * never what it reports, so a region asking for it opens on any backend.
 */
#define PT_TRACK_ADAPTIVE 2u	/* (1u stays undefined: older callers were told it is invalid) */

/*
 * pt_tracker_opts.flags: chunk guard (uffd-wp).  A collect walks the page
 * tables of the whole range, about 3.5 ns a page here (230-330 us for
 * 256 MiB) however few pages were written.  With this flag the range is
 * also guarded in 2 MiB chunks by mprotect(PROT_READ): the first write to
 * a guarded chunk raises SIGSEGV, which the mprotect backend's handler
 * resolves (the chunk becomes writable and is marked), and a collect
 * scans only the marked chunks.  A marked chunk that 32 collects in a row
 * found unwritten is guarded again, before the collect scans it, so that
 * no write is missed.  A collect then costs in proportion to the chunks
 * written lately; guarding a chunk again and its next write each cost an
 * mprotect of the chunk (~40 us here for a populated one).
 *
 * The price is the mprotect backend's rule: the kernel's writes into a
 * guarded chunk (read(2), recv(2) into the range) fail with EFAULT instead
 * of being tracked, so write into the range only from user code.  It also
 * installs the process-wide SIGSEGV handler (see PT_BACKEND_MPROTECT).
 * With PT_TRACK_ADAPTIVE too, the scan around the hot pages covers the
 * marked chunks only.  The other backends ignore the flag.
 * pt_tracker_stats() counts the chunks scanned.
 */
#define PT_TRACK_CHUNKS 4u

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
 *  -EFAULT      part of the range is not mapped readable and writable;
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

/*
 * Report pages [first, first + count) as written at the next collect, as if
 * they had been stored to.  For changes no backend can see because they are
 * not stores through this process's mapping: hole punching
 * (fallocate(FALLOC_FL_PUNCH_HOLE), MADV_REMOVE), truncation, write(2) or
 * another process's stores to the backing file, and, under mprotect and
 * soft-dirty, MADV_DONTNEED of private memory.  See pagetrack(7).
 * Marks survive a collect without PT_COLLECT_RESET; a collect with reset,
 * or pt_tracker_reset(), consumes them.  May be called from any thread.
 *
 * Returns 0, or -EINVAL (range outside the tracker), -ECHILD (forked
 * child), -ENOMEM.
 */
int pt_tracker_mark(struct pt_tracker *t, uint64_t first, uint64_t count);

/* Re-arm the whole range: writes before this call are forgotten. */
int pt_tracker_reset(struct pt_tracker *t);

/*
 * PT_TRACK_ADAPTIVE: pages [first, first + count), which the last collect
 * reported and the caller copied, held the same content as the caller's
 * previous copy: hot ones among them cool at the next collect with reset
 * (re-armed there before it returns, and reported by it once more, so a
 * write made after the caller's copy is not lost).  A hint: other pages,
 * and trackers without the flag, ignore it.  May be called from any thread.
 *
 * Returns 0, or -EINVAL (range outside the tracker), -ECHILD (forked
 * child), -ENOMEM.
 */
int pt_tracker_unchanged(struct pt_tracker *t, uint64_t first, uint64_t count);

/* What a tracker did since open (pt_tracker_stats()): collects and faults
 * for every tracker, the rest for PT_TRACK_ADAPTIVE. */
struct pt_tracker_stats {
	size_t sz;		/* sizeof(struct pt_tracker_stats), set by the caller */
	int adaptive;		/* 1: PT_TRACK_ADAPTIVE in effect, 0: plain tracking */
	unsigned int hot_after, probation;	/* the knobs in effect now */
	uint64_t fault_ns;	/* a write-protect fault: the estimate now (0: not measured) */
	uint64_t copy_ns;	/* a page copy, measured at open */
	uint64_t collects;	/* collects with reset */
	uint64_t faulted;	/* pages the backend reported because it saw them
				 * written (for uffd-wp and mprotect, a fault each) */
	uint64_t hot_pages;	/* hot now */
	uint64_t hot_reports;	/* pages reported because hot: each a fault avoided
				 * if it was written, a copy of an unwritten page if not */
	uint64_t probations;	/* hot pages re-armed to see if still written */
	uint64_t cooled;	/* probations that found the page unwritten: back to
				 * plain tracking */
	uint64_t unchanged;	/* pages pt_tracker_unchanged() cooled */
	uint64_t faults_avoided;	/* estimate: hot_reports x the share of probations
					 * that found the page written again */
	uint64_t reported_unwritten;	/* estimate: hot_reports - faults_avoided, the
					 * copies of pages that did not change */
	/* Added after the first version of the struct. */
	uint64_t fault_ns_open;	/* the fault as measured at open */
	uint64_t fault_samples;	/* fault measurements so far, open's included */
	uint64_t pause_budget_ns;	/* pause_budget_us in effect */
	/* Added with PT_TRACK_CHUNKS. */
	int chunks;		/* 1: PT_TRACK_CHUNKS in effect */
	uint64_t chunks_scanned;	/* chunks the collects with reset scanned */
	uint64_t chunks_total;	/* chunks in the range */
	uint64_t chunks_cooled;	/* chunks guarded again after staying unwritten */
};

/* Fill *st (st->sz set by the caller; a smaller, older struct gets what
 * fits).  Returns 0, or -EINVAL (NULL, sz below the first version). */
int pt_tracker_stats(struct pt_tracker *t, struct pt_tracker_stats *st);

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

/* ------------------------------------------------------------------ */
/* Replication: region (the writer), epochs, log, image, replicas      */
/* ------------------------------------------------------------------ */

/*
 * An epoch: 1, 2, 3... in the order the writer made them, 0 for none yet.
 * The one type every call and struct of this header uses for epochs.
 * Signed because the calls that return an epoch return -errno (< 0) on
 * failure; epochs stay far below 2^63, so no epoch is ever negative.
 */
typedef int64_t pt_epoch_t;

/*
 * A region is memory the library creates on shared memory (a memfd) and
 * tracks; its data directory holds the log (checksummed deltas, one record
 * per epoch) and the image (a full copy at the checkpointed epoch with a
 * generation table).  An epoch is a moment the writer declares consistent
 * with pt_region_sync(); it passes through three levels, in this order:
 */
enum pt_level {
	PT_LEVEL_PUBLISHED = 1,	/* sealed and visible to replicas on this machine (in the
				 * writer's staging memory, then in the log file) */
	PT_LEVEL_DURABLE,	/* its record is fdatasynced: survives a crash or power loss */
	PT_LEVEL_CHECKPOINTED,	/* it is in the image: the log before it may be dropped */
	PT_LEVEL_REPLICATED,	/* stored by another machine: a publisher
				 * (pagetrack-net.h) reported it acknowledged by
				 * its stream (see pt_replicated_open); not ordered
				 * with the levels above */
};

/* When pt_region_sync() returns, relative to fdatasync of the log. */
enum pt_durability {
	PT_DURABLE_ON_SYNC = 0,	/* default: sync returns once the epoch is durable (a
				 * database's commit); concurrent waiters share fsyncs */
	PT_DURABLE_BACKGROUND,	/* sync returns once queued; a log thread fdatasyncs
				 * at most durable_interval_ms after a publish */
	PT_DURABLE_NONE,	/* sync returns once queued; fdatasync only when asked
				 * (pt_region_wait), for checkpoints, when the staging
				 * memory fills, and at close */
};

/* pt_region_opts.flags */
#define PT_REGION_NO_CHECKPOINT_THREAD 1u	/* checkpoint only via pt_region_checkpoint() */
#define PT_REGION_ACCEPT_LOSS	2u	/* pt_region_open(): recover what can be
					 * reached even when epochs the region had
					 * made durable cannot be (logged as an
					 * error); see -ENOTRECOVERABLE */
#define PT_REGION_ADAPTIVE	4u	/* track with PT_TRACK_ADAPTIVE (see
					 * pt_tracker_open(3)); off by default */
#define PT_REGION_CHUNKS	8u	/* track with PT_TRACK_CHUNKS: write the
					 * region only from user code */
#define PT_REGION_DIRECT_LOG	16u	/* write records to the log with O_DIRECT,
					 * from staging memory to the disk, not
					 * through the page cache; see
					 * pt_region_create(3) */

/* Every field's zero value means its default; NULL options mean all defaults. */
struct pt_region_opts {
	size_t sz;			/* sizeof(struct pt_region_opts) */
	enum pt_durability durability;	/* default PT_DURABLE_ON_SYNC */
	unsigned int durable_interval_ms;	/* PT_DURABLE_BACKGROUND: default 10 */
	enum pt_backend backend;	/* tracker backend, default PT_BACKEND_AUTO */
	unsigned int flags;		/* PT_REGION_* */
	unsigned int checkpoint_interval_ms;	/* background checkpoint period, default 1000 */
	uint64_t retain_bytes;		/* checkpointed log kept for replicas that lag,
					 * default 64 MiB */
	uint64_t segment_bytes;		/* log segment size, default 64 MiB */
	uint64_t staging_bytes;		/* pre-faulted staging memory for deltas waiting to be
					 * written and fsynced, default min(64 MiB, size + 1 MiB) */
	void *address;			/* map the region here (it must be free), NULL: anywhere */
	uint64_t history_id;		/* pt_region_create: 0, a new history (random);
					 * else this one: a standby that follows a region
					 * of that history reproduces its records exactly */
};

struct pt_region;

/*
 * Create a region of size bytes (a multiple of the page size) whose data
 * directory is dir (created, mode 0700, if missing; it must not be writable
 * by group or others).  The memory starts zero-filled at epoch 0.  The
 * caller becomes the region's one writer.
 *
 * Returns 0 and *out, or:
 *  -EINVAL   bad size or options (unknown non-zero bytes after the fields
 *            this library knows included; sizes above 1 TiB);
 *  -ENOMEM   staging_bytes above half the memory the process may use;
 *  -EEXIST   dir already holds a region;
 *  -EBUSY    another process holds the region's lock;
 *  -EPERM    dir is writable by others or owned by someone else;
 *  -EOPNOTSUPP, -ENOMEM, -ENOSPC, or another -errno.
 */
int pt_region_create(struct pt_region **out, const char *dir, size_t size,
		     const struct pt_region_opts *opts);

/*
 * Reopen the region in dir as its writer, recovering after a crash: the
 * memory is rebuilt from the image plus every intact log record after it,
 * in epoch order.  Recovery stops at the first torn or corrupt record (a
 * pt_log() message says where and why) and never applies a corrupt one; it
 * loses no epoch that reached PT_LEVEL_DURABLE.  Segments that follow a
 * corrupt record are renamed orphan-*.seg, not deleted.
 *
 * Returns 0 and *out, or:
 *  -EBUSY        a writer has the region open (one writer per region);
 *  -EMEDIUMTYPE  dir is not a region (no image), or one of its files is not
 *                a regular file (a FIFO is refused, never opened blocking);
 *  -ENOTRECOVERABLE  the image and the intact records reach less than the
 *                epoch the region had made durable (a segment deleted,
 *                truncated or damaged), or the state block recording it is
 *                damaged: nothing changed; PT_REGION_ACCEPT_LOSS goes on
 *                from what is reached;
 *  -ESTALE       a segment or the state block is of another history than
 *                the image (a file copied from another region);
 *  -EBADMSG      the image's headers, or a page of it no log record
 *                rewrites, fail their checksum or magic;
 *  -EPROTO       a format version this library does not read;
 *  -EXDEV        written on a system with another page size;
 *  -ENODATA      the image is truncated;
 *  -EPERM        dir, or a file in it, is writable by others or belongs to
 *                another user;
 *  -ENOENT, -ENOTDIR, -ENOMEM, or another -errno.
 */
int pt_region_open(struct pt_region **out, const char *dir, const struct pt_region_opts *opts);

void *pt_region_base(struct pt_region *r);
size_t pt_region_size(const struct pt_region *r);

/*
 * The thread ids of the region's own threads, for placing them
 * (sched_setaffinity(2), a cgroup): the seal thread, the log thread, then
 * the checkpoint thread unless PT_REGION_NO_CHECKPOINT_THREAD; named
 * pt-seal, pt-log and pt-checkpoint.  Up to n of them into tids; returns
 * how many the region has (more than n: only n written).  A durable-on-sync
 * writer whose threads run on another CPU than its own has the log thread
 * write a record while it copies it (pt_region_sync(3)).
 * Errors: -EINVAL (r NULL, or tids NULL with n > 0), -ECHILD (a forked
 * child: the threads are the parent's).
 */
int pt_region_threads(struct pt_region *r, pid_t *tids, size_t n);

/*
 * Publish a new epoch: take the pages written since the last sync
 * (collect with reset), copy them into pre-faulted staging memory and hand
 * them to the library's threads, which checksum them, publish them to
 * replicas from that memory and append them to the log as one record.
 * Call it at a moment the data is consistent; writes that race with it
 * belong to this epoch or to the next, never to none.  With no page written
 * since the last epoch it returns that epoch again (epoch 1 is always made).
 *
 * The writer's pause is the collect plus one memcpy per dirty page: no
 * hashing, compression or fsync on this path.  It then waits as the
 * durability option says (PT_DURABLE_ON_SYNC by default).
 *
 * Returns the epoch (>= 1), or -errno, and then the pages it took go back
 * into a pending set that the next sync carries: nothing is lost.
 *  -ENOSPC, -EIO  the log cannot be written or fsynced (the error is kept
 *                 until a retry in the background succeeds); with
 *                 PT_DURABLE_ON_SYNC the epoch may have been assigned and may
 *                 become durable later, but is never reported durable unless
 *                 an fdatasync covering it succeeded;
 *  -ECHILD        called in a forked child;
 *  -ENOMEM        a delta larger than the staging memory found no memory,
 *                 or another -errno from the tracker.
 */
pt_epoch_t pt_region_sync(struct pt_region *r);

/*
 * Pre-copy (off unless called): copy now, while the writer may go on
 * writing, the pages written so far in the epoch, so that the next
 * pt_region_sync() collects and copies only the pages written since the
 * last pass.  The writer's pause then grows with the pages written since
 * the last pass instead of since the last sync: the pages the passes
 * copied go into the record when it is sealed, after the sync returned.
 * Call it from any thread of the writer's process when there is time (a
 * thread of the application's every few ms, or the writer's own thread
 * between two tasks); it runs under the lock a sync takes, so a sync that
 * starts during a pass waits for it: do not run one just before syncing.
 * A pass right after a sync whose record is not sealed yet waits for the
 * seal.
 *
 * The record a sync makes is the same as without pre-copy: every page
 * written in the epoch, with its content at the sync (a page copied by a
 * pass and written again is reported by the sync and copied again from
 * memory; the pass's copy is dropped).  What pre-copy costs: a copy of
 * each page per pass that reports it, memory for the copies (two stores of
 * at most the staging memory's size each, used as pages are copied; pages
 * past a store's size are left to the sync), and, with uffd-wp and
 * mprotect, one more write-protect fault for each page written again after
 * a pass reported it (pt_region_stats(): precopy_extra_faults).
 * With soft-dirty each pass freezes the writing threads for its collect,
 * as a sync does.
 *
 * Returns the pages copied (>= 0), or -errno:
 *  -EOPNOTSUPP  adaptive tracking is in effect (PT_REGION_ADAPTIVE or
 *               PAGETRACK_ADAPTIVE=1, uffd-wp): hot pages are never
 *               re-armed, so each pass would copy them all again; the two
 *               exclude each other;
 *  -ECHILD      called in a forked child;
 *  -ENOMEM      no memory for the pre-copy store (at the first pass);
 *  -EINVAL      r is NULL; or the tracker's -errno (nothing is lost: what
 *               it re-armed is reported at the next collect).
 */
int pt_region_precopy(struct pt_region *r);

/*
 * Placing the library's threads.  A region starts three threads when it is
 * created or opened (seal, log, checkpoint); they run SCHED_BATCH, so they
 * never preempt another thread on waking, at the nice value of the thread
 * that opened the region.  A replica starts none: its refresh runs in the
 * caller's thread.  The rest is the application's.  Every time another
 * thread takes the writer's core inside pt_region_sync() the pause grows,
 * and on a machine with fewer cores than busy threads that happens often:
 * put the writer first.  Raise the writer's thread (setpriority() with its
 * thread id: Linux keeps nice values per thread; a value below 0 needs
 * CAP_SYS_NICE or RLIMIT_NICE) after the region is open, so that the
 * library's threads keep the opener's value: the log thread mostly sleeps
 * in fdatasync, and the checkpoint is the work that should wait.  Run the
 * processes that read replicas SCHED_BATCH at an ordinary nice value, so a
 * reader waking for a query does not preempt the writer yet keeps its share
 * of the CPU; a niced or SCHED_IDLE reader starves on a busy machine and its
 * copy falls behind.  apps/exchange does this; docs/exchange.md has the
 * measurements.
 */

/* The newest published epoch (after open: the recovered one). */
pt_epoch_t pt_region_epoch(const struct pt_region *r);

/*
 * The header checksum of the record of the newest published epoch (its
 * "chain": the next record names it), with that epoch in *epoch.  A standby
 * compares it with the chain its source sent to know it holds the same
 * record, byte for byte.  Returns 0 or -EINVAL.
 */
int pt_region_chain(const struct pt_region *r, pt_epoch_t *epoch, uint64_t *chain);

/* The region's history id (random at create, or pt_region_opts.history_id). */
uint64_t pt_region_history(const struct pt_region *r);

/*
 * A page as of an epoch: the epoch that last changed it (0: never written,
 * a zero page) and the XXH3-64 of its content (the checksum an image's
 * page table holds; pt_page_checksum() computes it).
 */
struct pt_page_version {
	pt_epoch_t generation;
	uint64_t checksum;
};

/* The XXH3-64 of one page of page_size bytes, as pt_page_version holds it. */
uint64_t pt_page_checksum(const void *page, size_t page_size);

/* What pt_region_jump() installs: a source's region as of one epoch. */
struct pt_jump {
	size_t sz;			/* sizeof(struct pt_jump) */
	pt_epoch_t epoch;		/* the epoch to take, above the region's */
	uint64_t chain;			/* the header checksum of the source's record
					 * of that epoch: the next record names it */
	const struct pt_page_version *versions;	/* one per page of the region */
	uint64_t count;			/* pages given below (may be 0) */
	const uint64_t *pages;		/* their indices, ascending */
	const void *data;		/* their content, page i at i * page_size */
};

/*
 * A standby that fell behind what its source can still send one epoch at
 * a time (a follower past its stream's retention) takes the source's
 * state at a later epoch whole: the pages j->pages, with content j->data,
 * replace the region's, every other page keeps its content, and the
 * region is then at j->epoch with j->chain as its newest record's chain,
 * as if it had made every epoch in between.  Its next pt_region_sync()
 * makes epoch + 1 naming that chain, as the source's record does.
 *
 * Nothing changes unless every check passes first: j->epoch above the
 * region's epoch, each generation between 0 and j->epoch, and the
 * content of every page (given, or kept) hashing to its version's
 * checksum, so the region holds exactly the source's pages.  The
 * generations are the caller's word: they become the image's page table,
 * from which replicas that lag copy the pages newer than their epoch.
 *
 * Then, under the writer's locks: what is published is made durable, a
 * new image at j->epoch is written beside the old one, fsynced and renamed
 * over it (a crash before the rename leaves the region at its old epoch,
 * after it at j->epoch), the log's segments (all older) are dropped, the
 * pages are copied into the memory and tracking is reset (the caller's own
 * stores since the last sync, if any, are forgotten: their content is
 * checked above), and the state block says j->epoch (published, durable,
 * checkpointed).  Replicas on the directory catch up from the new image;
 * `pagetrack verify` and status see an ordinary region.  The caller must be
 * the one thread writing the memory and not sync meanwhile.
 *
 * Returns j->epoch, or -errno:
 *  -EINVAL   NULL, j->sz too small, an epoch not above the region's,
 *            a generation outside 0..j->epoch, pages not ascending or
 *            beyond the region, data NULL with count > 0;
 *  -EBADMSG  a page's content does not hash to its version's checksum
 *            (pt_log() names the first): nothing changed;
 *  -ECHILD   called in a forked child;
 *  -ENOMEM, -ENOSPC, -EIO, or another -errno writing the image: the region
 *            stays at its epoch; or the log's latched error.
 */
pt_epoch_t pt_region_jump(struct pt_region *r, const struct pt_jump *j);

/*
 * Where a publisher reports the epochs its stream has stored, for the
 * writer's PT_LEVEL_REPLICATED waits: the file `replicated` in the data
 * directory (created 0600 if missing), a counter and a futex word.  The
 * publisher opens it, sets each epoch once the stream acknowledged it
 * (only ever forward), and may mark the region deposed (the stream refused
 * its publishes: another writer took over); a writer then gets -EOWNERDEAD
 * from PT_LEVEL_REPLICATED waits.
 */
struct pt_replicated;
int pt_replicated_open(struct pt_replicated **out, const char *dir);
/* Record epoch as replicated (ignored if not newer); 0, or -EINVAL (< 0). */
int pt_replicated_set(struct pt_replicated *h, pt_epoch_t epoch);
/* Mark the region deposed; 0 or -errno. */
int pt_replicated_depose(struct pt_replicated *h);
/* The newest replicated epoch, and whether deposed (may be NULL). */
pt_epoch_t pt_replicated_get(const struct pt_replicated *h, int *deposed);
/*
 * Read the replicated file of dir without creating or writing it: the
 * newest replicated epoch, whether deposed, and the publisher's pid (any
 * may be NULL).  Returns 0, -ENOENT (no publisher ever reported), or the
 * readers' -errno (-EPERM, -EMEDIUMTYPE, -EBADMSG, -EPROTO).
 */
int pt_dir_replicated(const char *dir, pt_epoch_t *epoch, int *deposed, int32_t *publisher_pid);
void pt_replicated_close(struct pt_replicated *h);
/*
 * The term of the directory's writer, for network failover
 * (pagetrack-net.h): a standby directory promoted to be the writable
 * region records the term it won and a random holder id that names this
 * promotion; a publisher on the directory checks them against the stream's
 * term markers.  A region never promoted has term 0 and holder 0.
 * pt_replicated_set_term() records a term above the current one, clears the
 * deposed mark (the directory's writer is the new term's) and makes the
 * file durable before it returns: 0, -EINVAL (NULL, term 0 or not above
 * the recorded one), or msync's -errno (-EIO).  pt_replicated_get_term()
 * reads them (either pointer may be NULL): 0 or -EINVAL.
 */
int pt_replicated_set_term(struct pt_replicated *h, uint64_t term, uint64_t holder);
int pt_replicated_get_term(const struct pt_replicated *h, uint64_t *term, uint64_t *holder);

/*
 * Block until epoch reaches level, at most timeout_ms (-1: forever; another
 * negative value is -EINVAL).  PT_LEVEL_REPLICATED waits for a publisher
 * to report the epoch (pt_replicated_set); with none, until the timeout;
 * -EOWNERDEAD once the publisher reported the region deposed.  Asking
 * for PT_LEVEL_DURABLE makes the log thread fdatasync now (group commit:
 * publish several epochs, then wait once); PT_LEVEL_CHECKPOINTED runs a
 * checkpoint.  Returns 0, or -ETIMEDOUT, -EINVAL (no such epoch or level),
 * -ECHILD (a forked child: the writer's threads are the parent's), or the
 * log's pending error (-ENOSPC, -EIO).
 */
int pt_region_wait(struct pt_region *r, pt_epoch_t epoch, enum pt_level level, int timeout_ms);

/*
 * Apply the durable log to the image now, fsync it, advance its epoch and
 * drop the segments nothing needs (keeping retain_bytes).  The background
 * thread does the same every checkpoint_interval_ms.  Returns the image's
 * epoch or -errno (-ECHILD in a forked child).
 */
pt_epoch_t pt_region_checkpoint(struct pt_region *r);

/*
 * Write and fdatasync every published epoch, stop the threads, release the
 * memory and the lock.  Returns 0, or the error that kept the last epochs
 * from becoming durable (they are then lost only if the storage lost them).
 * In a child forked from the writer it only drops the child's descriptors
 * and mappings and returns 0: the region stays the parent's.
 */
int pt_region_close(struct pt_region *r);

/* pt_replica_opts.mode */
enum pt_replica_mode {
	PT_REPLICA_PRIVATE = 0,	/* this process's own copy, updated by refresh */
	PT_REPLICA_SHARED,	/* one copy in shared memory for several processes */
};

/* pt_replica_opts.flags */
#define PT_REPLICA_AT_WRITER_ADDRESS 1u	/* map at the writer's base address */
#define PT_REPLICA_DELTAS	2u	/* private only: start at epoch 0 and move
					 * one record at a time with
					 * pt_replica_step() (a publisher's source) */

struct pt_replica_opts {
	size_t sz;			/* sizeof(struct pt_replica_opts) */
	enum pt_replica_mode mode;
	unsigned int flags;		/* PT_REPLICA_* */
	const char *name;		/* shared: the copy's name in /dev/shm (a file
					 * "pagetrack-NAME"); NULL: from the history id */
	unsigned int stuck_reader_ms;	/* shared: a reader pinned this long without
					 * refreshing no longer holds the others back
					 * (it keeps its own copy); 0: 1000 */
};

struct pt_replica;

/*
 * Follow the region in dir, reading its files only (O_RDONLY: no write
 * permission needed, nothing it does can change them).  The replica starts
 * at the newest published epoch.
 *
 * Private: the copy is this process's memory; it changes only inside
 * pt_replica_refresh(), so the caller's queries between refreshes see one
 * whole epoch.
 *
 * Shared: a control block /dev/shm/pagetrack-NAME and two copies of the
 * region, files pagetrack-NAME.<generation>; the process that refreshes
 * first applies the log to the copy no reader uses, then switches; each
 * process maps the copy it pinned read-only, at the same address across
 * refreshes, and keeps it until its next refresh.  Readers never block the
 * writer.  A reader that has not refreshed for stuck_reader_ms after a
 * switch (stopped, hung) no longer holds the others back: its copy is
 * replaced by a new file and it keeps the old, unlinked one, a whole epoch,
 * until its next refresh or its exit.  Memory in /dev/shm: two copies, plus
 * at most one per stuck reader.  Files there are created mode 0600 and
 * reused only if they are regular files of this euid that no one else can
 * write.  Up to 126 processes at once.
 *
 * Returns 0 and *out, or:
 *  -EMEDIUMTYPE  dir is not a region;   -EBADMSG, -EPROTO, -EXDEV,
 *  -ENOTRECOVERABLE as for pt_region_open();
 *  -EPERM        dir, or a file in it, is writable by others or belongs to
 *                another user (the writer's rule), or a file in /dev/shm
 *                under the shared copy's name is not a regular file of this
 *                euid writable by no one else;
 *  -ESTALE       the shared copy is of another region and a live reader
 *                holds it (unused, it is made again);
 *  -EBADMSG, -EPROTO  also: the shared copy's control block is damaged, or
 *                of an older layout (remove pagetrack-NAME and its copies);
 *  -EEXIST       PT_REPLICA_AT_WRITER_ADDRESS and that address is taken;
 *  -EUSERS       the shared copy has no free reader slot;
 *  -ENOMEM, or another -errno.
 */
int pt_replica_open(struct pt_replica **out, const char *dir, const struct pt_replica_opts *opts);

/*
 * Apply every whole epoch up to the newest published one.  With none newer
 * than the replica's, wait up to timeout_ms for one (0: don't wait, -1:
 * forever).  A replica that fell behind the retained log copies from the
 * image only the pages whose generation is above its epoch, then continues
 * from the log.  Returns the epoch now visible (>= 0), or -errno when it
 * could not move at all:
 *  -ESTALE   the region was recreated, or the writer came back from a crash
 *            without epochs this replica had applied: reopen it; or files
 *            of another history are in the directory;
 *  -ENOTRECOVERABLE  the log ends before epochs the writer wrote and the
 *            image does not hold them: lost (reported at once, even after
 *            applying older records on the way);
 *  -EINVAL   timeout_ms negative and not -1;
 *  -EBADMSG, -ENODATA, -EILSEQ, -EMSGSIZE  a corrupt record (never applied;
 *            pt_log() says where);
 *  -EBADMSG, -EPROTO  shared: the control block holds numbers that cannot
 *            be, or was made again in an older layout (nothing is mapped
 *            from it);
 *  -ENOMEM, or another -errno.
 */
pt_epoch_t pt_replica_refresh(struct pt_replica *r, int timeout_ms);

/* One epoch's delta, as pt_replica_step() hands it out. */
struct pt_delta {
	uint64_t history_id;
	pt_epoch_t epoch;		/* the epoch it makes */
	uint64_t chain;			/* its record's header checksum */
	uint64_t prev_chain;		/* that of the record of epoch - 1 */
	uint64_t payload_checksum;	/* its record's payload checksum */
	uint32_t page_size;
	uint32_t page_count;		/* pages it writes */
	const uint64_t *pages;		/* their indices, ascending */
	const unsigned char *data;	/* their new content, page i at i * page_size */
};

/*
 * Called by pt_replica_step() with the next delta while the replica's copy
 * (base) still holds the epoch before it: the content each page had is at
 * base + pages[i] * page_size.  Return 0 to have it applied; a negative
 * value stops the step without applying it (pt_replica_step returns it and
 * hands the same delta out again next time).
 */
typedef int (*pt_delta_fn)(const struct pt_delta *d, const void *base, void *arg);

/*
 * Move a PT_REPLICA_DELTAS replica by exactly one epoch, read from the log
 * file (whole, checked records): fn sees it first, then it is applied.
 * Waits up to timeout_ms (0: not at all, -1: forever) for the next record
 * to be written.  Returns the epoch now shown (> the one before), 0 when
 * nothing came in time, or -errno: -EINVAL (not a PT_REPLICA_DELTAS
 * replica, bad timeout), fn's negative value, -ESTALE (the log no longer
 * holds the next epoch: a checkpoint dropped it, and a delta replica does
 * not jump over it; or another history), -ENOTRECOVERABLE, -EBADMSG... as
 * for pt_replica_refresh().
 */
pt_epoch_t pt_replica_step(struct pt_replica *r, int timeout_ms, pt_delta_fn fn, void *arg);

/*
 * For a PT_REPLICA_DELTAS replica whose next record the log no longer holds
 * (pt_replica_step returned -ESTALE: a checkpoint dropped it): copy from the
 * image the pages newer than the copy's epoch and take the image's epoch,
 * with no delta handed out (the caller knows the epochs it skips are ones
 * it has, e.g. a publisher whose stream is already at or past the image's
 * epoch).  Pages a running checkpoint was writing are read again until the
 * image is whole.  Returns the epoch now shown, -EAGAIN when the image kept
 * changing (try again), -EILSEQ when the image is older than the copy, or
 * another -errno.
 */
pt_epoch_t pt_replica_jump(struct pt_replica *r);

/*
 * A PT_REPLICA_DELTAS replica's page generations: out[i] is the epoch that
 * last changed page first + i as of the replica's epoch (0: never
 * written), from the records it stepped and the image's page table where
 * it jumped.  A publisher keeps a snapshot of the region with them (only
 * pages newer than a standby's epoch need to travel).  Returns 0, or
 * -EINVAL (not a delta replica, NULL, a range beyond the region).
 */
int pt_replica_generations(const struct pt_replica *r, uint64_t first, uint64_t count,
			   pt_epoch_t *out);

/*
 * The replica's epoch and the header checksum of the record that made it
 * (the image's chain after a jump or a catch-up; the history's seed at
 * epoch 0).  Private and delta replicas.  Returns 0, or -EINVAL (NULL, a
 * shared replica).
 */
int pt_replica_chain(const struct pt_replica *r, pt_epoch_t *epoch, uint64_t *chain);

/*
 * The payload checksum and chain (header checksum) of the record a delta
 * makes, computed from its history, epoch, prev_chain, page_size,
 * page_count, pages and data (its chain and payload_checksum fields are
 * ignored): a standby given a delta by someone else proves, before it
 * writes anything, that its own record will be the one the source wrote.
 * Returns 0, -EINVAL (pages not ascending, or NULL) or -ENOMEM.
 */
int pt_delta_chain(const struct pt_delta *d, uint64_t *payload_checksum, uint64_t *chain);

/* The copy (read-only for shared replicas); stays at this address. */
const void *pt_replica_base(const struct pt_replica *r);
pt_epoch_t pt_replica_epoch(const struct pt_replica *r);
/* Pages copied from the image by catch-ups so far (statistics). */
uint64_t pt_replica_image_pages(const struct pt_replica *r);
void pt_replica_close(struct pt_replica *r);

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

/* What one pt_region_sync() did. */
struct pt_sync_stats {
	size_t sz;			/* sizeof(struct pt_sync_stats), set by the caller */
	pt_epoch_t epoch;		/* the epoch it made (0: none yet) */
	uint64_t pages;			/* pages it copied (written since the sync before,
					 * plus pages a failed sync left pending) */
	uint64_t bytes;			/* bytes of its record (header, index, pages) */
	uint64_t stall_ns;		/* the writer's pause: collect + copy + enqueue */
	uint64_t collect_ns;		/* of which the tracker's collect (with re-arm) */
	/* Added after the first version of the struct. */
	uint64_t precopied;		/* of pages, those taken from pre-copy passes
					 * (pt_region_precopy) */
};

/* Everything a region's writer did since it was opened. */
struct pt_region_stats {
	size_t sz;			/* sizeof(struct pt_region_stats), set by the caller */
	pt_epoch_t published, durable, checkpointed;	/* epochs at each level */
	uint64_t syncs;			/* syncs that made an epoch */
	uint64_t pages;			/* pages copied by them */
	uint64_t bytes;			/* record bytes */
	uint64_t stall_ns_total, stall_ns_max;
	uint64_t log_bytes;		/* bytes in the log's segments now */
	uint64_t checkpoints;		/* checkpoints that advanced the image */
	int last_error;			/* the log's latched error (-errno), 0: none */
	/* The tracker's figures (pt_tracker_stats()), added after the first
	 * version of the struct. */
	int adaptive;			/* 1: PT_REGION_ADAPTIVE in effect (uffd-wp) */
	uint64_t fault_ns;		/* adaptive: a write-protect fault as last
					 * measured (0: not measured) */
	uint64_t faulted;		/* pages the tracker saw written (uffd-wp,
					 * mprotect: a fault each) */
	uint64_t hot_pages;		/* adaptive: pages hot now */
	uint64_t hot_reports;		/* adaptive: pages copied because hot */
	uint64_t faults_avoided;	/* adaptive, estimate: of those, written */
	uint64_t reported_unwritten;	/* adaptive, estimate: of those, unchanged */
	/* Pre-copy (pt_region_precopy()), added later still. */
	uint64_t precopy_passes;	/* passes that collected */
	uint64_t precopied;		/* pages the passes copied (a page copied by
					 * two passes counts twice) */
	uint64_t precopy_resynced;	/* pages a pass had copied that the sync
					 * copied again (written after the pass) */
	uint64_t precopy_extra_faults;	/* pages reported again after a pass had
					 * re-armed them, by a pass or the sync: for
					 * uffd-wp and mprotect, each a write-protect
					 * fault the epoch takes only because of
					 * pre-copy */
	/* The chunk guard (PT_REGION_CHUNKS), added later still. */
	int chunks;			/* 1: PT_REGION_CHUNKS in effect (uffd-wp) */
	uint64_t chunks_scanned;	/* 2 MiB chunks the syncs' collects scanned */
	uint64_t chunks_total;		/* chunks in the region */
	uint64_t chunks_cooled;		/* chunks guarded again after staying unwritten */
	/* The log written O_DIRECT (PT_REGION_DIRECT_LOG), added later still. */
	int direct_log;			/* 1: asked for, and not refused by the file
					 * system so far (a refusal is logged; the
					 * log then goes through the page cache) */
};

/*
 * The last sync's figures (*last) and the totals since open (*total);
 * either may be NULL.  Cheap (a lock and a copy): call it after every sync
 * if you like.  Returns 0, -EINVAL (NULL region, sz too small).
 */
int pt_region_stats(struct pt_region *r, struct pt_sync_stats *last, struct pt_region_stats *total);

/* The size of the replica's copy in bytes (the region's size). */
size_t pt_replica_size(const struct pt_replica *r);

/* ------------------------------------------------------------------ */
/* Data directories, from outside: status, verify, walk, checkpoint   */
/* ------------------------------------------------------------------ */

/*
 * These read a region's data directory without being its writer and
 * without writing to it (pt_dir_checkpoint excepted), with the checks every
 * reader applies (pagetrack(7)): the directory is opened O_NOFOLLOW (a
 * symbolic link is -ENOTDIR), each file without following links and
 * without blocking (a FIFO or a device in a file's place is refused,
 * -EMEDIUMTYPE, never waited on), and only files of the directory's owner
 * (or the caller) that no one else can write are read (-EPERM).  They are
 * what `pagetrack status`, `verify`, `inspect` and `checkpoint` are built
 * on.  Messages are the library's, in English, one line each.
 */

/* One finding of pt_dir_verify() (and of pt_dir_status(), on its reach). */
struct pt_dir_problem {
	enum pt_log_level level;	/* PT_LOG_ERROR: a problem (counted);
					 * PT_LOG_WARN: worth knowing, not a problem (a
					 * page recovery repairs, a torn record at the
					 * newest segment's end);
					 * PT_LOG_INFO: what was checked (the image, a
					 * segment, the closing summary) */
	const char *file;		/* "image", a segment's name, "state", "lock",
					 * NULL: the directory as a whole */
	uint64_t offset;		/* in file: the damaged page or record, 0: none */
	uint64_t page;			/* the region's page, UINT64_MAX: none */
	pt_epoch_t epoch;		/* the record's epoch, 0: none */
	int error;			/* -EBADMSG, -ENODATA, -ENOTRECOVERABLE (durable
					 * epochs lost), -ESTALE (another history)..., 0 */
	const char *message;		/* one line, exactly what is wrong; valid during
					 * the call */
};

typedef void (*pt_dir_problem_fn)(const struct pt_dir_problem *p, void *arg);

struct pt_dir_status {
	size_t sz;			/* sizeof(struct pt_dir_status), set by the caller */
	uint64_t history_id;
	uint64_t npages;
	uint32_t page_size;
	int32_t writer_pid;		/* a writer holds the region's lock: its pid (-1 when
					 * its state block does not say); 0: none runs */
	/* from the state block when it is of this history, never below the
	 * image's epoch (a region with no state block: all the image's epoch) */
	pt_epoch_t published, durable, checkpointed;
	int last_error;			/* the writer's latched log error (-errno), 0: none */
	/* from the files */
	uint64_t log_bytes;		/* bytes in the log's segments */
	uint32_t segments;
	pt_epoch_t image_epoch;
	pt_epoch_t reached;		/* newest epoch the image and intact records reach */
	int log_error;			/* why the log stops before its end (-errno), 0: a clean end */
	uint64_t log_error_segment;	/* where: the segment's seq (log-<seq>.seg, 16 hex
					 * digits) */
	uint64_t log_error_offset;	/* and the offset in it */
	pt_epoch_t state_durable;	/* the durable epoch the state block records: reach is
					 * judged against it (0: no state block to tell) */
	int state_error;		/* 0: a state block of this history was read; -ENOENT:
					 * none; -ESTALE: of another history; another -errno:
					 * damaged, so what was durable is unknown */
	int reach;			/* 0: the last durable epoch is reached;
					 * -ENOTRECOVERABLE: durable epochs lost (or the state
					 * block damaged); -ESTALE: files of another history;
					 * another -errno: it could not be told */
	uint64_t foreign;		/* files of another history */
};

/*
 * Fill *st for the region in dir.  Reads every record after the image's
 * epoch (as recovery would), so it costs a read of the log.  When st->reach
 * is not 0, report (may be NULL) is called with why, as pt_dir_verify()
 * would say it: which durable epochs are lost and where the log stops, or
 * each file of another history.  Returns 0 (the directory's own verdict is
 * st->reach), or -errno when dir cannot be read as a region:
 *  -EINVAL       st NULL or st->sz too small;
 *  -EMEDIUMTYPE  not a region (no image), or the image or lock is not a
 *                regular file;
 *  -EBADMSG, -EPROTO, -EXDEV, -ENODATA  the image's headers (as
 *                pt_region_open());
 *  -EPERM        the image, a segment or the lock belongs to another user or
 *                is writable by others;
 *  -ENOTDIR, -ENOENT, -ENOMEM, or another -errno.
 */
/*
 * The newest epoch the writer of the region in dir published, from its
 * state block (cheap: no log is read).  Returns it (>= 0), or -errno:
 * -ENOENT (no state block yet), -EBADMSG, -EPERM... as the readers' checks
 * say.
 */
pt_epoch_t pt_dir_epoch(const char *dir);

int pt_dir_status(const char *dir, struct pt_dir_status *st, pt_dir_problem_fn report, void *arg);

/*
 * Check every checksum of the image (each bad page re-checked, so a
 * checkpoint running meanwhile gives no false alarm; a page a log record
 * after the image's epoch rewrites is a note: recovery repairs it) and of
 * every record of every segment, the hash chain from the image's epoch on,
 * that the lock and state files are regular files, and the directory's
 * reach (as pt_dir_status).  report (may be NULL) is called for each
 * finding, in the order of the files, ending with a summary.  Returns the
 * number of problems (PT_LOG_ERROR findings; 0: the directory reaches its
 * last durable epoch and every byte checks), or -errno when it could not
 * look: the errors of pt_dir_status(), or one listing the log.
 */
int pt_dir_verify(const char *dir, pt_dir_problem_fn report, void *arg);

/* What a call of pt_dir_walk()'s fn is about. */
enum pt_dir_entry {
	PT_DIR_IMAGE = 0,		/* first, once: the image (epoch: its epoch) */
	PT_DIR_SEGMENT,			/* a segment's header (epoch: the first record's,
					 * length: the file's size; error: the header is
					 * unreadable or of another history, and no record
					 * of it follows) */
	PT_DIR_RECORD,			/* a record, checked whole */
	PT_DIR_STOP,			/* where a segment's records stop on an error
					 * (offset 0: the file could not be opened) */
};

/* One call of pt_dir_walk()'s fn. */
struct pt_dir_record {
	enum pt_dir_entry what;
	uint64_t history_id;		/* the image's */
	const char *segment;		/* the segment's file name, NULL for PT_DIR_IMAGE */
	uint64_t segment_seq;
	uint64_t offset;		/* of the record in the segment */
	pt_epoch_t epoch;		/* 0 when error is set */
	uint32_t page_count;
	uint64_t length;
	uint64_t header_checksum;	/* the record's, which the next record's prev holds */
	uint64_t prev;			/* the header checksum of the record before it */
	const uint64_t *pages;		/* page_count page indices, valid during the call */
	int error;			/* 0, or why reading stops here (-ENODATA: a torn end,
					 * -EBADMSG...); the walk goes on with the next segment */
};

typedef int (*pt_dir_record_fn)(const struct pt_dir_record *rec, void *arg);

/*
 * Call fn for the image, then for each segment in order (by seq) and each
 * record in it, each checked whole (checksums; not the chain across
 * segments: pt_dir_verify checks that), and once for the place where a
 * segment's records stop if they stop on an error.  fn returns 0 to go
 * on, anything else to stop (pt_dir_walk then returns it).  Returns 0, or
 * -errno: the image's errors as for pt_dir_status(), or one listing the log.
 */
int pt_dir_walk(const char *dir, pt_dir_record_fn fn, void *arg);

/*
 * Apply the durable log to the image now.  If a writer has the region
 * open (it holds the lock), ask it through its state block and wait up to
 * timeout_ms (-1: forever) for its checkpoint thread, which looks every
 * checkpoint_interval_ms; should the writer close meanwhile, go on as
 * with none.  With no writer, open the region as its writer (recovering
 * it; PT_REGION_NO_CHECKPOINT_THREAD), checkpoint, close.  *writer_pid (may
 * be NULL) is set to the pid of the writer that did it, 0 when this call
 * did.  Returns the image's epoch, or -errno:
 *  -ETIMEDOUT  the writer did not in time (perhaps its checkpoint thread is
 *              off: PT_REGION_NO_CHECKPOINT_THREAD);
 *  -EINVAL     a negative timeout_ms other than -1;
 *  -EBADMSG    the writer's state block is damaged or too short;
 *  the errors of pt_region_open(), pt_region_checkpoint() and
 *  pt_region_close().
 */
pt_epoch_t pt_dir_checkpoint(const char *dir, int timeout_ms, int32_t *writer_pid);

/* A live reader of a shared replica. */
struct pt_dir_shared_reader {
	int32_t pid;
	pt_epoch_t epoch;		/* the epoch it shows */
};

/* A shared replica of a region, as pt_dir_shared() lists it. */
struct pt_dir_shared {
	const char *name;		/* NAME of /dev/shm/pagetrack-NAME: any bytes but
					 * '/' and NUL (escape it before printing) */
	pt_epoch_t epoch;		/* of its current copy */
	uint32_t readers;		/* live readers */
	pt_epoch_t oldest_reader_epoch;	/* the epoch the slowest live reader shows
					 * (0: no reader) */
	const struct pt_dir_shared_reader *reader;	/* readers entries, valid
							 * during the call */
};

typedef int (*pt_dir_shared_fn)(const struct pt_dir_shared *s, void *arg);

/*
 * Call fn for each shared replica of the region in dir found in /dev/shm:
 * regular files (opened without blocking: a FIFO is passed by) of the
 * caller or of the directory's owner, writable by no one else, whose
 * control block checks and names this region.  Others are skipped.
 * Returns 0, fn's non-zero value, or -errno (the image's errors as for
 * pt_dir_status(), or /dev/shm cannot be read).
 */
int pt_dir_shared(const char *dir, pt_dir_shared_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* PAGETRACK_H */
