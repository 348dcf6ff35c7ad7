/* SPDX-License-Identifier: MIT */
/*
 * staging.c - the staging memory: where each sync copies its dirty pages,
 * and where a record waits until it is durable.  It is a memfd that
 * replicas of the same user map read-only, so this file holds both halves
 * of the protocol through which they apply published records from it
 * without waiting for the log file: the writer's (allocate, publish a
 * descriptor, retire it) and the replica's (map, apply under the seqlock).
 *
 * The protocol: entry epoch % PT_RING_DESCS of the state block's ring says
 * where record `epoch` lies.  The writer zeroes the entry's epoch, sets
 * offset and length, then the epoch (release); before the space is reused
 * (the record is durable, so the log file has it) it zeroes the epoch
 * again, with a full fence.  A replica checks the epoch before copying the
 * header and indices, after them (so the indices it writes through are
 * the record's own) and after the pages (a seqlock): a change means the
 * space was reused while it copied, and it applies the record from the
 * file instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "bitmap.h"
#include "region.h"
#include "replica.h"

/* ---- the writer's half ---------------------------------------------------- */

/* Space for a record of len bytes at q_tail; lock held.  NULL: full. */
unsigned char *pt_staging_alloc(struct pt_region *r, size_t len, struct record_slot *s)
{
	size_t start = 0, off;
	bool live = false;

	if (r->q_tail - r->q_head >= QUEUE_SLOTS)
		return NULL;
	s->oversize = false;
	if (len > r->ring_size) {
		/* Bigger than all the staging memory: a mapping of its own,
		 * paid for by this (huge) sync only. */
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			return NULL;
		madvise(p, len, MADV_DONTFORK);	/* see pt_staging_create() */
		s->oversize = true;
		s->buf = p;
		return p;
	}
	for (uint64_t i = r->q_head; i < r->q_tail; i++) {
		if (!slot_at(r, i)->oversize) {
			start = slot_at(r, i)->ring_off;
			live = true;
			break;
		}
	}
	if (!live) {
		off = 0;
	} else if (r->ring_next > start) {
		if (r->ring_size - r->ring_next >= len)
			off = r->ring_next;
		else if (start >= len)
			off = 0;
		else
			return NULL;
	} else {
		if (start - r->ring_next >= len)
			off = r->ring_next;
		else
			return NULL;
	}
	r->ring_next = off + len;
	s->ring_off = off;
	s->buf = r->ring + off;
	return s->buf;
}

void pt_staging_release(struct pt_region *r, struct record_slot *s)
{
	struct pt_ring_desc *d = &r->state->ring[s->epoch % PT_RING_DESCS];

	/* Replicas reading it from staging memory must see it gone before
	 * the space is written again (the seqlock of struct pt_ring_desc). */
	if (!s->oversize && __atomic_load_n(&d->epoch, __ATOMIC_RELAXED) == s->epoch) {
		__atomic_store_n(&d->epoch, 0, __ATOMIC_SEQ_CST);
		pt_fence();
	}
	if (s->oversize)
		munmap(s->buf, s->len);
	s->buf = NULL;
	s->oversize = false;
}

void pt_staging_publish(struct pt_region *r, const struct record_slot *s)
{
	struct pt_ring_desc *d = &r->state->ring[s->epoch % PT_RING_DESCS];

	__atomic_store_n(&d->epoch, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&d->offset, s->ring_off, __ATOMIC_RELAXED);
	__atomic_store_n(&d->length, s->len, __ATOMIC_RELAXED);
	__atomic_store_n(&d->epoch, s->epoch, __ATOMIC_RELEASE);
}

/*
 * A child the writer forks (system(), popen(), a snapshot) never uses the
 * staging memory: sync in a child fails with -ECHILD before touching it.
 * Without MADV_DONTFORK a private staging ring would stay copy-on-write in
 * the writer after any fork, and the next syncs would take a page fault per
 * staging page they copy into; the memfd ring is shared (no copy-on-write)
 * but its page tables need not be copied either.  The region's own memory
 * is not marked: a forked child reading it is a supported case.
 */
static void staging_dontfork(struct pt_region *r)
{
	if (madvise(r->ring, r->ring_size, MADV_DONTFORK))
		pt_log(PT_LOG_DEBUG, "%s: MADV_DONTFORK on the staging memory: %s", r->dir,
		       strerror(errno));
}

/*
 * The staging memory is a memfd, mapped shared and pre-faulted (the sync
 * path must take no page faults).  Replicas of the same user open it as
 * /proc/<writer pid>/fd/<n> (the state block says which, and its inode
 * number), map it read-only and apply published records from it without
 * waiting for the log file.  A memfd has no name to leak: it goes when the
 * writer and the last replica mapping it are gone, kill -9 included.
 */
int pt_staging_create(struct pt_region *r)
{
	struct stat st;
	int fd, ret;

	fd = memfd_create("pagetrack-staging", MFD_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto private;
	}
	if (ftruncate(fd, (off_t)r->ring_size) || fstat(fd, &st)) {
		ret = -errno;
		goto private;
	}
	/* Allocated now, not at the first store: MAP_POPULATE ignores a
	 * failure, and a store shmem cannot back is a SIGBUS. */
	ret = -posix_fallocate(fd, 0, (off_t)r->ring_size);
	if (ret)
		goto private;
	r->ring = mmap(NULL, r->ring_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
	if (r->ring == MAP_FAILED) {
		r->ring = NULL;
		ret = -errno;
		goto private;
	}
	r->staging_fd = fd;
	staging_dontfork(r);
	state_store(&r->state->staging_fd, (uint64_t)fd);
	state_store(&r->state->staging_ino, (uint64_t)st.st_ino);
	state_store(&r->state->staging_bytes, r->ring_size);
	return 0;
private:
	/* Private staging memory still works; replicas then wait for the
	 * log file. */
	pt_log(PT_LOG_WARN, "%s: no shared staging memory (%s): replicas will read the log file "
	       "only", r->dir, strerror(-ret));
	if (fd >= 0)
		close(fd);
	r->ring = mmap(NULL, r->ring_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->ring == MAP_FAILED) {
		r->ring = NULL;
		return -ENOMEM;
	}
	staging_dontfork(r);
	return 0;
}

/* ---- the replica's half ---------------------------------------------------- */

/*
 * Map the writer's staging memory of its current incarnation, if it shares
 * one: its memfd, through /proc/<pid>/fd/<n>, which works for replicas of
 * the writer's user.  The inode number in the state block guards against a
 * reused pid or descriptor; anything amiss and the replica reads the files.
 */
void pt_staging_map(struct pt_replica *r)
{
	uint64_t inc = load64(&r->state->incarnation), len = load64(&r->state->staging_bytes);
	char path[64];
	struct stat st;
	void *p;
	int fd;

	if (r->ring_incarnation == inc && (r->ring || r->ring_tried))
		return;
	if (r->ring)
		munmap((void *)r->ring, r->ring_len);
	r->ring = NULL;
	r->ring_tried = false;
	r->ring_incarnation = inc;
	if (!len)
		return;		/* not (yet) shared: look again next time */
	r->ring_tried = true;
	snprintf(path, sizeof(path), "/proc/%" PRIu64 "/fd/%" PRIu64,
		 load64(&r->state->writer_pid), load64(&r->state->staging_fd));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (!fstat(fd, &st) && (uint64_t)st.st_ino == load64(&r->state->staging_ino) &&
	    (uint64_t)st.st_size == len && S_ISREG(st.st_mode) && st.st_uid == r->state_uid) {
		p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			r->ring = p;
			r->ring_len = len;
		}
	}
	close(fd);
}

/*
 * Apply record cs->epoch + 1 from the writer's staging memory.  Returns 1
 * (applied), 0 (not there: read the file), or -EAGAIN when the writer
 * reused the space while we copied: the pages of that record in mem may be
 * wrong, and the record, durable by then, must be applied from the file.
 *
 * The descriptor is a seqlock: its epoch is checked before the header and
 * indices are copied out, after (so the indices we write through are the
 * record's own), and after the pages are copied.  No checksum is needed:
 * this is the writer's memory, not storage, and a reuse is what the
 * seqlock catches.
 */
int pt_staging_apply(struct pt_replica *r, unsigned char *mem, struct copy_state *cs)
{
	uint64_t e = cs->epoch + 1, off, len, head, ps = r->id.page_size;
	const struct pt_ring_desc *d = &r->state->ring[e % PT_RING_DESCS];
	struct pt_record_header h;
	size_t need;

	if (!r->ring || __atomic_load_n(&d->epoch, __ATOMIC_ACQUIRE) != e)
		return 0;
	off = __atomic_load_n(&d->offset, __ATOMIC_RELAXED);
	len = __atomic_load_n(&d->length, __ATOMIC_RELAXED);
	if (off > r->ring_len || len > r->ring_len - off || len < sizeof(h))
		return 0;
	memcpy(&h, r->ring + off, sizeof(h));
	if (h.magic != PT_RECORD_MAGIC || h.epoch != e || h.length != len ||
	    h.history_id != r->id.history_id || h.page_count > r->id.npages ||
	    len != pt_record_length(h.page_count, ps) || h.prev != cs->chain)
		return 0;
	need = (size_t)h.page_count * sizeof(uint64_t);
	if (need > r->ring_index_cap) {
		uint64_t *ni = realloc(r->ring_index, need);

		if (!ni)
			return 0;
		r->ring_index = ni;
		r->ring_index_cap = need;
	}
	if (need)	/* an epoch with no page (epoch 1 may be): no index */
		memcpy(r->ring_index, r->ring + off + sizeof(h), need);
	pt_fence();
	if (__atomic_load_n(&d->epoch, __ATOMIC_RELAXED) != e)
		return 0;
	for (uint32_t i = 0; i < h.page_count; i++)
		if (r->ring_index[i] >= r->id.npages || (i && r->ring_index[i] <= r->ring_index[i - 1]))
			return 0;
	head = pt_record_head_length(h.page_count, ps);
	for (uint32_t i = 0; i < h.page_count;) {
		uint32_t j = i + 1;

		while (j < h.page_count && r->ring_index[j] == r->ring_index[j - 1] + 1)
			j++;
		memcpy(mem + r->ring_index[i] * ps, r->ring + off + head + i * ps, (j - i) * ps);
		i = j;
	}
	pt_fence();
	if (__atomic_load_n(&d->epoch, __ATOMIC_RELAXED) != e)
		return -EAGAIN;
	for (uint32_t i = 0; i < h.page_count && r->nsuspect; i++)
		if (pt_bit_clear(r->suspect, r->ring_index[i]))
			r->nsuspect--;
	cs->epoch = e;
	cs->chain = h.header_checksum;
	return 1;
}
