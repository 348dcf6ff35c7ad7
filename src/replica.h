/* SPDX-License-Identifier: MIT */
/*
 * replica.h - what replica.c (opening a replica, moving a copy forward,
 * private mode) and shared.c (shared mode in /dev/shm) share: the replica
 * object and the few calls each makes into the other.
 */
#ifndef PT_REPLICA_H
#define PT_REPLICA_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "format.h"
#include "pagelog.h"

/* Progress of one copy. */
struct copy_state {
	uint64_t epoch;
	uint64_t chain;
	bool need_image;	/* an image catch-up is unfinished: redo it first */
};

struct pt_replica {
	char dir[256];
	int dirfd;
	int statefd;
	const struct pt_state *state;
	ino_t state_ino;
	uid_t state_uid;
	uint64_t incarnation;
	struct pt_region_id id;
	size_t size;
	bool shared;
	bool deltas;		/* PT_REPLICA_DELTAS: moved by pt_replica_step() only */
	pt_epoch_t *generations;	/* deltas: the epoch that last changed each page */
	void *base;
	uint64_t epoch;		/* visible */
	uint64_t image_pages;
	struct pt_pagelog_reader rd;
	uint64_t *suspect;
	uint64_t nsuspect;

	/* the writer's staging memory, mapped read-only */
	const unsigned char *ring;
	size_t ring_len;
	uint64_t ring_incarnation;
	bool ring_tried;	/* this incarnation's staging memory cannot be mapped */
	uint64_t *ring_index;	/* a record's page indices, copied out */
	size_t ring_index_cap;

	struct copy_state priv;	/* private mode */

	/* shared mode (shared.c) */
	int shmfd;			/* the control block's file */
	struct pt_shared_ctl *ctl;
	uint64_t ctl_size;		/* its file's size, checked at open */
	struct pt_shared_ctl *snap;	/* a copy of its numbers, checked before use */
	int slot;
	uint64_t view_gen;		/* the copy file mapped at base, 0: none */
	unsigned int stuck_reader_ms;
	char shm_path[300];		/* /dev/shm/pagetrack-NAME; copies add .<gen> */
};

/* Milliseconds of CLOCK_MONOTONIC: deadlines that a clock change cannot move. */
static inline uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Read a field the writer (or another process) stores concurrently. */
static inline uint64_t load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* replica.c: bring mem from cs->epoch towards target; records applied or -errno. */
int pt_replica_advance(struct pt_replica *r, unsigned char *mem, struct copy_state *cs,
		       uint64_t target);
/* replica.c: 0 while the writer is still on the history of (epoch, chain), else -ESTALE. */
int pt_replica_check_writer(struct pt_replica *r, uint64_t epoch, uint64_t chain);

/* staging.c: map the writer's staging memory of its current incarnation,
 * if it shares one (anything amiss: the replica reads the files). */
void pt_staging_map(struct pt_replica *r);
/* staging.c: apply record cs->epoch + 1 from staging memory: 1 applied,
 * 0 not there (read the file), -EAGAIN the space was reused while we
 * copied (mem may hold wrong pages of that record: apply it from the
 * file). */
int pt_staging_apply(struct pt_replica *r, unsigned char *mem, struct copy_state *cs);

/*
 * Check a control block copied out of its file (file_size bytes long)
 * before any of its numbers is used: 0, -EBADMSG (magic, size, or a number
 * that cannot be: current not 0 or 1, generations equal, zero or not below
 * next_gen, a pin not below next_gen, a negative pid, an epoch above
 * INT64_MAX), -EPROTO (another layout version), -ESTALE (the block is
 * sound but describes another region than id; id NULL: any).  The file
 * is writable by its owner only, but its owner's other processes may be
 * buggy or dead half way: nothing in it is memory to trust.
 */
int pt_shared_ctl_check(const struct pt_shared_ctl *ctl, const struct pt_region_id *id,
			uint64_t file_size);

/* shared.c: attach r to the shared copy o->name (NULL: the history id). */
int pt_shared_open(struct pt_replica *r, const struct pt_replica_opts *o);
/* shared.c: pt_replica_refresh() of a shared replica. */
int64_t pt_shared_refresh(struct pt_replica *r, int timeout_ms);
/* shared.c: give up r's reader slot and unmap the shared file. */
void pt_shared_close(struct pt_replica *r);

#endif /* PT_REPLICA_H */
