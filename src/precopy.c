/* SPDX-License-Identifier: MIT */
/*
 * precopy.c - pre-copy: passes that copy, while the writer runs, the pages
 * written so far in the epoch (pt_region_precopy), so that the next sync
 * collects and copies only what was written since the last pass.
 *
 * A pass collects with reset and copies each reported page into the
 * current store: one slot per page, taken from a buffer reserved at the
 * first pass (MAP_NORESERVE: memory is used only by slots ever filled).
 * A page a later pass reports again is copied again into the same slot:
 * a store holds one copy of each page, the newest.  Pages past the store's
 * capacity (the staging memory's size) go to the pending set instead,
 * which the sync copies from the region's memory.
 *
 * The sync (region.c) collects with reset, puts what it reports into the
 * pending set, and lays the record out for pending | held in ascending
 * page order: it copies each pending page from memory (its content at the
 * sync) and drops it from the store, and leaves the slot of each page the
 * store still holds empty.  It then hands the store to the record and
 * takes the other store for the next epoch's passes: the pause is the
 * collect and copy of what was written since the last pass.  Sealing the
 * record (logwriter.c), before it is hashed or published, copies the
 * store's pages into their slots (pt_precopy_fill) and frees the store.
 * A pass that finds its store still with an unsealed record waits for the
 * seal.  So the record is hashed at seal, as without pre-copy, and holds
 * one copy of each page.  A sync that fails before it hands the store
 * over keeps both sets for the next one.
 *
 * Why the record holds every page written in the epoch with its content
 * at the sync (no write is lost, no stale copy is taken).  Take a page p
 * written in the epoch.  If no pass reported p, the sync's collect does,
 * as without pre-copy.  Else let P be the last pass that reported p; P's
 * collect re-armed p before P copied it (the copy comes after the
 * collect returns).  A write to p that landed before P's collect re-armed
 * it is in memory before P's copy reads p (each backend's guarantee for
 * a collect with reset, below).  A write to p after the re-arm is
 * reported by the next collect with reset: not by a pass (P is the last
 * to report p), so by the sync's, and the sync copies p from memory.  So
 * either p was written after P's re-arm and the record takes p from
 * memory at the sync, or it was not and P's copy is p's content at the
 * sync.  A copy P made while a write raced with it may be torn; that
 * write came after the re-arm, so the sync copies p again and the torn
 * copy is never used.  Pages no pass reported are untouched by pre-copy.
 *
 * The guarantee each backend gives a collect with reset that runs while
 * other threads write, the one the sync already relies on ("writes that
 * race with it belong to this epoch or to the next"):
 *  - uffd-wp: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING tests and
 *    write-protects each PTE under the page table lock and flushes the TLB
 *    before the ioctl returns: a write either landed before (and the scan
 *    reported it, or reports it at the next scan if it set the written
 *    state after this scan passed the PTE) or faults on the protected PTE,
 *    which async mode resolves by marking it written again (uffd.c);
 *  - mprotect: the handler/collect protocol of mprotect.c (a writable page
 *    always has its bit set; collect clears a bit only after its
 *    mprotect(PROT_READ) has returned);
 *  - soft-dirty: the write freeze of softdirty.c (writers wait in the
 *    SIGSEGV handler while pagemap is read and clear_refs written).  Safe,
 *    but each pass freezes the writers for its collect, as a sync does.
 * So pre-copy is allowed on every backend.
 *
 * Adaptive tracking (PT_TRACK_ADAPTIVE in effect, uffd-wp) is refused with
 * -EOPNOTSUPP: a hot page is never re-armed and is reported by every
 * collect, so each pass would copy every hot page again for nothing, and
 * the extra collects would count as epochs in the policy's "collects in a
 * row", turning pages hot that are written once an epoch.
 *
 * Extra faults: between two syncs, a page faults once per interval between
 * re-arms in which it is written, instead of once.  Each held page
 * reported again (by a later pass, or by the sync) is one fault the epoch
 * would not have taken without pre-copy: pt_region_stats() counts them.
 *
 * Locking: passes and syncs hold sync_lock (they use the tracker, the
 * pending set and the current store).  A store handed to a record is the
 * sealer's alone until it clears `busy` (release, under lock, with a
 * broadcast of r->cond); everyone else reads `busy` before touching a
 * store.  Statistics are under lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "bitmap.h"
#include "region.h"

struct pt_precopy_store {
	uint64_t *held;		/* pages whose copy is in a slot */
	uint32_t *slot;		/* slot of each held page */
	unsigned char *pages;	/* capacity slots of a page each */
	uint64_t used;		/* slots taken */
	uint64_t nheld;
	bool busy;		/* atomic: handed to a record not yet sealed */
};

struct pt_precopy {
	struct pt_precopy_store store[2];
	int cur;		/* the store passes fill now */
	uint64_t capacity;	/* slots of each store */
};

void pt_precopy_free(struct pt_region *r)
{
	struct pt_precopy *pc = r->precopy;

	if (!pc)
		return;
	for (int i = 0; i < 2; i++) {
		if (pc->store[i].pages)
			munmap(pc->store[i].pages, pc->capacity * r->id.page_size);
		free(pc->store[i].held);
		free(pc->store[i].slot);
	}
	free(pc);
	r->precopy = NULL;
}

static int precopy_alloc(struct pt_region *r)
{
	struct pt_precopy *pc;

	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	r->precopy = pc;
	pc->capacity = r->ring_size / r->id.page_size;
	if (pc->capacity > r->id.npages)
		pc->capacity = r->id.npages;
	for (int i = 0; i < 2; i++) {
		struct pt_precopy_store *st = &pc->store[i];
		size_t len = pc->capacity * r->id.page_size;
		void *p;

		st->held = calloc((r->id.npages + 63) / 64, sizeof(*st->held));
		st->slot = malloc(r->id.npages * sizeof(*st->slot));
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p != MAP_FAILED) {
			st->pages = p;
			/* As the staging memory: a forked child never uses it. */
			madvise(p, len, MADV_DONTFORK);
		}
		if (!st->held || !st->slot || !st->pages) {
			pt_precopy_free(r);
			return -ENOMEM;
		}
	}
	return 0;
}

/* The store the sync takes pre-copies from: NULL when there is none, or
 * when the current one still belongs to an unsealed record (no pass could
 * use it, so it holds nothing of this epoch). */
static struct pt_precopy_store *current(const struct pt_region *r)
{
	struct pt_precopy *pc = r->precopy;
	struct pt_precopy_store *st;

	if (!pc)
		return NULL;
	st = &pc->store[pc->cur];
	return __atomic_load_n(&st->busy, __ATOMIC_ACQUIRE) ? NULL : st;
}

uint64_t pt_precopy_word(const struct pt_region *r, uint64_t w)
{
	const struct pt_precopy_store *st = current(r);

	return st ? st->held[w] : 0;
}

uint64_t pt_precopy_held(const struct pt_region *r)
{
	const struct pt_precopy_store *st = current(r);

	return st ? st->nheld : 0;
}

uint64_t pt_precopy_count_held(const struct pt_region *r, const struct pt_range *ranges, size_t nr)
{
	const struct pt_precopy_store *st = current(r);
	uint64_t n = 0;

	if (!st || !st->nheld)
		return 0;
	for (size_t i = 0; i < nr; i++)
		n += pt_bit_count2(st->held, NULL, ranges[i].first,
				   ranges[i].first + ranges[i].count);
	return n;
}

static void store_empty(const struct pt_region *r, struct pt_precopy_store *st)
{
	memset(st->held, 0, (r->id.npages + 63) / 64 * sizeof(*st->held));
	st->nheld = 0;
	st->used = 0;
}

void pt_precopy_forget(struct pt_region *r)
{
	struct pt_precopy_store *st = current(r);

	if (st && st->nheld)
		store_empty(r, st);
}

uint64_t pt_precopy_hand(struct pt_region *r, struct record_slot *s)
{
	struct pt_precopy_store *st = current(r);

	s->precopy = NULL;
	if (!st || !st->nheld)
		return 0;
	/* The sync copied the pending pages from memory: not from here. */
	st->nheld = 0;
	for (uint64_t w = 0; w < (r->id.npages + 63) / 64; w++) {
		st->held[w] &= ~r->pending[w];
		st->nheld += (uint64_t)__builtin_popcountll(st->held[w]);
	}
	if (!st->nheld) {
		store_empty(r, st);
		return 0;
	}
	__atomic_store_n(&st->busy, true, __ATOMIC_RELEASE);
	s->precopy = st;
	r->precopy->cur ^= 1;
	return st->nheld;
}

void pt_precopy_fill(struct pt_region *r, struct record_slot *s)
{
	struct pt_precopy_store *st = s->precopy;
	size_t ps = r->id.page_size;
	const uint64_t *index = (const uint64_t *)(s->buf + sizeof(struct pt_record_header));
	unsigned char *data = s->buf + pt_record_head_length(s->page_count, ps);

	for (uint32_t i = 0; i < s->page_count; i++)
		if (pt_bit_test(st->held, index[i]))
			memcpy(data + (size_t)i * ps, st->pages + (size_t)st->slot[index[i]] * ps, ps);
	store_empty(r, st);
}

void pt_precopy_release(struct pt_region *r, struct record_slot *s)
{
	/* Lock held: a pass waiting for the store sleeps on r->cond. */
	__atomic_store_n(&s->precopy->busy, false, __ATOMIC_RELEASE);
	s->precopy = NULL;
	pthread_cond_broadcast(&r->cond);
}

/*
 * Copy a page other threads may be writing: the torn copy that can make
 * is never used (see the top of this file).  ThreadSanitizer is told the
 * race is meant by relaxed atomic loads, which compile to plain moves;
 * other builds use memcpy.
 */
static void copy_racing(void *dst, const void *src, size_t len)
{
#if defined(__SANITIZE_THREAD__)
	const uint64_t *s = src;
	uint64_t *d = dst;

	for (size_t i = 0; i < len / sizeof(*d); i++)
		d[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
#else
	memcpy(dst, src, len);
#endif
}

PT_EXPORT int pt_region_precopy(struct pt_region *r)
{
	const struct pt_range *ranges;
	struct pt_precopy_store *st;
	struct pt_precopy *pc;
	size_t ps, nr;
	uint64_t copied = 0, again = 0, overflow = 0;
	int n, ret;

	if (!r)
		return -EINVAL;
	if (getpid() != r->owner)
		return -ECHILD;
	pthread_mutex_lock(&r->sync_lock);
	if (r->tracker->adaptive) {
		pt_log(PT_LOG_ERROR, "%s: pre-copy and adaptive tracking exclude each other "
		       "(hot pages are never re-armed, so every pass would copy them again)",
		       r->dir);
		ret = -EOPNOTSUPP;
		goto out;
	}
	if (!r->precopy) {
		ret = precopy_alloc(r);
		if (ret)
			goto out;
	}
	pc = r->precopy;
	ps = r->id.page_size;
	/* The store of this epoch may still be with the record of the one
	 * before last, if its seal has not run yet: wait for it. */
	st = &pc->store[pc->cur];
	if (__atomic_load_n(&st->busy, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&r->lock);
		while (__atomic_load_n(&st->busy, __ATOMIC_ACQUIRE))
			pthread_cond_wait(&r->cond, &r->lock);
		pthread_mutex_unlock(&r->lock);
	}
	n = pt_writer_collect(r, &ranges, &nr);
	if (n < 0) {
		ret = n;
		goto out;
	}
	for (size_t i = 0; i < nr; i++) {
		for (uint64_t p = ranges[i].first; p < ranges[i].first + ranges[i].count; p++) {
			/* The sync copies a pending page from memory anyway. */
			if (pt_bit_test(r->pending, p))
				continue;
			if (pt_bit_test(st->held, p)) {
				again++;
			} else if (st->used < pc->capacity) {
				st->slot[p] = (uint32_t)st->used++;
				pt_bit_set(st->held, p);
				st->nheld++;
			} else {
				pt_bit_set(r->pending, p);
				r->npending++;
				overflow++;
				continue;
			}
			copy_racing(st->pages + (size_t)st->slot[p] * ps, (char *)r->base + p * ps, ps);
			copied++;
		}
	}
	pthread_mutex_lock(&r->lock);
	r->totals.precopy_passes++;
	r->totals.precopied += copied;
	r->totals.precopy_extra_faults += again;
	pthread_mutex_unlock(&r->lock);
	if (overflow)
		pt_log(PT_LOG_DEBUG, "%s: pre-copy store full (%" PRIu64 " pages): %" PRIu64
		       " pages left for the sync", r->dir, pc->capacity, overflow);
	ret = copied > INT32_MAX ? INT32_MAX : (int)copied;
out:
	pthread_mutex_unlock(&r->sync_lock);
	return ret;
}
