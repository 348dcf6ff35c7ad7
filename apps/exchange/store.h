/* SPDX-License-Identifier: MIT */
/*
 * store.h - where the engine's block lives and how copies of it reach the
 * query processes.  Three ways, so the benchmark can put them side by side:
 *
 *   none       plain memory, no copies (the engine alone: the baseline)
 *   pagetrack  a pagetrack region: each sync publishes the written pages as
 *              an epoch; replicas apply only those (the project's way)
 *   fullcopy   plain memory copied whole into a shared snapshot at each
 *              sync; replicas copy the whole snapshot (the naive way)
 */
#ifndef EXCHANGE_STORE_H
#define EXCHANGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum xs_mode { XS_NONE = 0, XS_PAGETRACK = 1, XS_FULLCOPY = 2 };

struct xs_writer;
struct xs_reader;

/* "none", "pagetrack", "fullcopy"; -1 for anything else. */
int xs_mode_parse(const char *s);
const char *xs_mode_name(int mode);

struct xs_writer_opts {
	int mode;
	const char *dir;	/* pagetrack: the region's data directory; fullcopy: the snapshot's */
	size_t size;		/* bytes, for a new block */
	int durable_ms;		/* pagetrack: make epochs durable every N ms in the background (0: at each sync) */
	bool adaptive;		/* pagetrack: adaptive tracking (PT_REGION_ADAPTIVE) */
	bool chunks;		/* pagetrack: chunk guard (PT_REGION_CHUNKS) */
};

/*
 * Open the engine's block: recover it from dir if dir holds one (*created
 * false), else create it zero-filled (*created true).  0 or -errno, with a
 * message in why.
 */
int xs_writer_open(struct xs_writer **out, const struct xs_writer_opts *o, bool *created,
		   char *why, size_t why_len);
void *xs_writer_base(struct xs_writer *w);
size_t xs_writer_size(const struct xs_writer *w);
/* Publish an epoch of the block as it is now: the epoch, or -errno. */
int64_t xs_writer_sync(struct xs_writer *w);
/* The last successful sync's figures, UINT64_MAX where a mode has none:
 * the pages it carried (pagetrack, the library's count, pt_region_stats(),
 * every sync, every backend; fullcopy, the whole block) and how long its
 * collect (the tracker's scan with its re-arm) took of its stall
 * (pagetrack).  Cheap, but not part of the sync: call it after timing it. */
void xs_writer_sync_figures(const struct xs_writer *w, uint64_t *pages, uint64_t *collect_ns);
int64_t xs_writer_epoch(const struct xs_writer *w);
/* pagetrack: the region's totals, the tracker's figures among them
 * (pt_region_stats()); -EOPNOTSUPP in the other modes. */
struct pt_region_stats;
int xs_writer_stats(struct xs_writer *w, struct pt_region_stats *st);
/* 0 once epoch is durable, -ETIMEDOUT if not within timeout_ms (0: just look). */
int xs_writer_wait_durable(struct xs_writer *w, uint64_t epoch, int timeout_ms);
/* 0 once epoch is durable and the directory's publisher (pagetrack publish)
 * reported it stored by its stream, -ETIMEDOUT, -EOWNERDEAD once a standby
 * took over (this engine is deposed), -EOPNOTSUPP outside pagetrack mode. */
int xs_writer_wait_replicated(struct xs_writer *w, uint64_t epoch, int timeout_ms);
void xs_writer_close(struct xs_writer *w);

/* A query process's copy.  open fails with -ENOENT while there is nothing to
 * read yet (the engine has not started): callers retry.  shared (pagetrack
 * only): one copy in shared memory for every process that asks for it,
 * /dev/shm/pagetrack-NAME (NULL: the library names it after the region). */
int xs_reader_open(struct xs_reader **out, int mode, const char *dir, bool shared,
		   const char *shared_name, char *why, size_t why_len);
/* Bring the copy up to the newest epoch (wait up to timeout_ms for a newer
 * one, 0: don't); returns the epoch now visible or -errno. */
int64_t xs_reader_refresh(struct xs_reader *r, int timeout_ms);
const void *xs_reader_base(const struct xs_reader *r);
size_t xs_reader_size(const struct xs_reader *r);
uint64_t xs_reader_epoch(const struct xs_reader *r);
void xs_reader_close(struct xs_reader *r);

#endif /* EXCHANGE_STORE_H */
