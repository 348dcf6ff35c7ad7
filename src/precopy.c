/* SPDX-License-Identifier: MIT */
/*
 * precopy.c - pre-copy: passes that copy, while the writer runs, the pages
 * written so far in the epoch (pt_region_precopy), so that the next sync
 * copies from its own collect only what was written since the last pass.
 *
 * A pass collects with reset and copies each reported page into the
 * store: one slot per page, taken from a buffer reserved at the first
 * pass (MAP_NORESERVE: memory is used only by slots ever filled) and
 * reused from slot 0 after each sync.  A page a pass had copied and a
 * later pass reports again is copied again into the same slot: the store
 * holds one copy of each page, the newest.  Pages past the store's
 * capacity (the staging memory's size) go to the pending set instead,
 * which the sync copies from the region's memory.
 *
 * The sync (region.c) collects with reset, puts what it reports into the
 * pending set, and builds the record from pending | held, in ascending
 * page order: a pending page from the region's memory (its content at
 * the sync), a page held and not pending from its slot.  The record is
 * hashed when it is sealed, after the copy, as without pre-copy.  Then the
 * store is emptied.  A sync that fails keeps both sets for the next one.
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
 * copy is never used.  Pages no pass holds are untouched by pre-copy.
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
 *    but each pass freezes the writers for its collect: the pause moves
 *    from the sync into the pass rather than going away.
 * So pre-copy is allowed on every backend.
 *
 * Adaptive tracking (PT_TRACK_ADAPTIVE in effect, uffd-wp) is refused with
 * -EOPNOTSUPP: a hot page is never re-armed and is reported by every
 * collect, so each pass would copy every hot page again for nothing, and
 * the extra collects would count as epochs in the policy's "collects in a
 * row", turning pages hot that are written once an epoch.
 *
 * Extra faults: between two syncs, a page faults once per interval between
 * re-arms in which it is written, instead of once.  The store counts them:
 * each held page reported again (by a later pass, or by the sync) is one
 * fault the epoch would not have taken without pre-copy.
 *
 * Locking: a pass holds sync_lock for its collect and copy (it and the
 * sync use the tracker and the two sets); the statistics are under lock.
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

struct pt_precopy {
	uint64_t *held;		/* pages whose copy is in a slot */
	uint32_t *slot;		/* slot of each held page */
	unsigned char *pages;	/* capacity slots of a page each */
	uint64_t capacity;	/* slots */
	uint64_t used;		/* slots taken in this epoch */
	uint64_t nheld;
};

void pt_precopy_free(struct pt_region *r)
{
	struct pt_precopy *pc = r->precopy;

	if (!pc)
		return;
	if (pc->pages)
		munmap(pc->pages, pc->capacity * r->id.page_size);
	free(pc->held);
	free(pc->slot);
	free(pc);
	r->precopy = NULL;
}

static int precopy_alloc(struct pt_region *r)
{
	struct pt_precopy *pc;
	void *p;

	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	r->precopy = pc;
	pc->capacity = r->ring_size / r->id.page_size;
	if (pc->capacity > r->id.npages)
		pc->capacity = r->id.npages;
	pc->held = calloc((r->id.npages + 63) / 64, sizeof(*pc->held));
	pc->slot = malloc(r->id.npages * sizeof(*pc->slot));
	p = mmap(NULL, pc->capacity * r->id.page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p != MAP_FAILED) {
		pc->pages = p;
		/* As the staging memory: a forked child never uses it. */
		madvise(p, pc->capacity * r->id.page_size, MADV_DONTFORK);
	}
	if (!pc->held || !pc->slot || !pc->pages) {
		pt_precopy_free(r);
		return -ENOMEM;
	}
	return 0;
}

uint64_t pt_precopy_word(const struct pt_region *r, uint64_t w)
{
	return r->precopy ? r->precopy->held[w] : 0;
}

uint64_t pt_precopy_held(const struct pt_region *r)
{
	return r->precopy ? r->precopy->nheld : 0;
}

const void *pt_precopy_source(const struct pt_region *r, uint64_t page)
{
	const struct pt_precopy *pc = r->precopy;

	if (pt_bit_test(r->pending, page) || !pc || !pt_bit_test(pc->held, page))
		return (const char *)r->base + page * r->id.page_size;
	return pc->pages + (size_t)pc->slot[page] * r->id.page_size;
}

uint64_t pt_precopy_count_held(const struct pt_region *r, const struct pt_range *ranges, size_t nr)
{
	const struct pt_precopy *pc = r->precopy;
	uint64_t n = 0;

	if (!pc || !pc->nheld)
		return 0;
	for (size_t i = 0; i < nr; i++)
		n += pt_bit_count2(pc->held, NULL, ranges[i].first,
				   ranges[i].first + ranges[i].count);
	return n;
}

void pt_precopy_forget(struct pt_region *r)
{
	struct pt_precopy *pc = r->precopy;

	if (!pc || !pc->nheld)
		return;
	memset(pc->held, 0, (r->id.npages + 63) / 64 * sizeof(*pc->held));
	pc->nheld = 0;
	pc->used = 0;
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
	n = pt_tracker_collect(r->tracker, PT_COLLECT_RESET, &ranges, &nr);
	if (n < 0) {
		ret = n;
		goto out;
	}
	for (size_t i = 0; i < nr; i++) {
		for (uint64_t p = ranges[i].first; p < ranges[i].first + ranges[i].count; p++) {
			/* The sync copies a pending page from memory anyway. */
			if (pt_bit_test(r->pending, p))
				continue;
			if (pt_bit_test(pc->held, p)) {
				again++;
			} else if (pc->used < pc->capacity) {
				pc->slot[p] = (uint32_t)pc->used++;
				pt_bit_set(pc->held, p);
				pc->nheld++;
			} else {
				pt_bit_set(r->pending, p);
				r->npending++;
				overflow++;
				continue;
			}
			copy_racing(pc->pages + (size_t)pc->slot[p] * ps, (char *)r->base + p * ps, ps);
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
