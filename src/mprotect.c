/* SPDX-License-Identifier: MIT */
/*
 * mprotect.c - the mprotect backend (any POSIX system) and the write freeze.
 *
 * Arming: the tracked range is made PROT_READ.  The first write to a page
 * faults; one process-wide SIGSEGV handler finds the tracker that owns the
 * address, sets the page's bit in the tracker's bitmap and makes the page
 * writable again; the write is then retried by the CPU and lands.  Collect
 * reads the bitmap; with reset it makes the reported pages read-only again
 * and clears their bits.
 *
 * The handler/collect protocol (why no write is ever lost).
 * Each tracker has a lock (a futex word holding the owner's thread id) that
 * works inside a signal handler.  The invariant, true whenever the lock is
 * free:
 *
 *	a tracked page is writable  =>  its bit is set.
 *
 * The handler keeps it by setting the bit before mprotect(PROT_READ|PROT_WRITE),
 * both under the lock.  Collect-with-reset keeps it by calling
 * mprotect(PROT_READ) before clearing the bits, both under the lock, and it
 * clears only bits it has put into the report.  Without the lock the
 * interleaving set-bit (handler), clear-bit (collect), mprotect READ (collect),
 * mprotect RW (handler) would leave a writable page with a clear bit, and the
 * write that follows would be lost.  With it, take a write W to page p:
 *  - if W lands without faulting, p was writable, so its bit was set and
 *    stays set until a collect clears it; that collect clears it only after
 *    its mprotect(PROT_READ) of p has returned, and mprotect returns only
 *    once no CPU can still write p through an old TLB entry, so W is in
 *    memory before that collect returns and the caller's copy sees it;
 *  - if W faults, the handler sets the bit under the lock, so after any
 *    collect that cleared it: the next collect reports p.
 * Clean pages are therefore never writable, which lets collect re-protect
 * one span from the first to the last dirty page of a batch (the clean pages
 * inside are read-only already) instead of one call per run.
 * Collect never writes tracked memory, and takes the lock with every
 * blockable signal blocked, so a handler can never wait for a lock its own
 * thread holds; if it ever would (the range holds the library's own memory),
 * the handler gives up and chains instead of deadlocking.
 *
 * Finding the tracker from the handler is async-signal-safe: a fixed table
 * of slots, each guarded by a sequence count; a handler that matched a slot
 * holds the slot's user count, and close waits for it to drop to zero before
 * freeing.  A fault whose slot vanished before the handler looked (close or
 * thaw made the range writable, then unpublished it) is retried once per
 * retirement generation before it is passed on: the retry succeeds when the
 * page is writable now, and a real fault comes back and is chained.
 *
 * ENOMEM: each isolated writable page splits a VMA in three; at about
 * vm.max_map_count / 2 scattered pages (32,765 with the default 65,530)
 * mprotect fails with ENOMEM, and so does every mmap of the program (thread
 * stacks, malloc of large blocks, a sanitizer's allocator).  So the
 * trackers keep an estimate of the mappings they add (vma_delta(): +1 per
 * split, -1 per merge, recounted from the bitmap at each collect with
 * reset) and stop short of the limit, leaving an eighth of it (at least
 * 1,024) to the program.  Past that share, or when mprotect fails with
 * ENOMEM anyway, retrying would fault forever, so the handler degrades: it
 * makes writable the span from the nearest dirty pages on either side
 * (within 2 MiB) to the faulting page, which merges VMAs instead of
 * splitting them; failing that the enclosing 2 MiB chunk; failing that the
 * whole range.  Every page of the span gets its bit set first (false
 * positives, never negatives).  The handler cannot log; it counts, and the
 * next collect logs.  A collect-with-reset makes all those pages read-only
 * again, which merges the VMAs back.  If collect's own re-protection fails,
 * the pages it could not protect keep their bits (reported again next time)
 * and stay writable, so the invariant holds.
 *
 * What this backend cannot see: writes the kernel makes for the program.
 * read(2), recv(2) and the like into a protected page do not raise SIGSEGV:
 * the kernel's copy to user memory stops at the protected page and the call
 * fails with EFAULT (or returns a short count).  Nothing lands in the
 * protected page, so no write goes unseen, but the program's call failed.
 * Seen on Linux 6.18: a pipe read whose buffer starts in a writable page
 * copies that part, then fails with EFAULT and leaves the data in the pipe.
 * Write into a tracked range only from user code, or touch each page first
 * (test/mprotect-read.c).
 * Also: the handler stays installed for the life of the process; a program
 * that installs its own SIGSEGV handler after opening a tracker disables
 * tracking; close a tracker before unmapping its range and mapping something
 * else there (close restores PROT_READ|PROT_WRITE on whatever is mapped).
 *
 * Fork: the child inherits the protections and this file's state.  A
 * pthread_atfork handler makes every tracked or frozen range writable again
 * in the child and forgets it there (the parent's tracking is untouched), so
 * the child's writes never fault and the child may open trackers of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "internal.h"

/* Ranges (trackers and freezes) that can exist at once in a process. */
#define MAX_SLOTS 256

/* Collect re-protects at least this many pages per lock hold (whole runs). */
#define BATCH_PAGES 4096

/* Degrade granularity: the chunk and the neighbour search window. */
#define CHUNK_BYTES (2ul << 20)

#define LOCK_WAITERS 0x80000000u

enum slot_kind { SLOT_FREE, SLOT_TRACKER, SLOT_FREEZE };

struct mp_state {
	uintptr_t start, end;
	uint64_t npages;
	size_t page_size;
	unsigned int page_shift;
	int slot;
	_Atomic uint64_t *bits;
	size_t nwords;
	atomic_uint lock;		/* 0, or owner tid | LOCK_WAITERS */
	/* Counted by the handler, logged and cleared by the next collect. */
	atomic_uint degraded_near, degraded_chunk, degraded_whole, gave_up;
	/* Mappings this tracker's writable pages add (an estimate, see
	 * vma_delta()); changed under the lock. */
	atomic_long extra_vmas;
};

struct slot {
	atomic_uint seq;		/* odd while the slot changes */
	atomic_uint kind;
	atomic_uintptr_t start, end;
	_Atomic(struct mp_state *) state;
	atomic_uint frozen;		/* SLOT_FREEZE: futex word, 1 while frozen */
	atomic_uint freezer;		/* SLOT_FREEZE: thread id of the freezing thread */
	atomic_uint users;		/* handlers inside this slot */
} __attribute__((aligned(64)));

static struct slot slots[MAX_SLOTS];
static atomic_uint slots_high;		/* slots[0 .. slots_high) may be in use */
static atomic_uint retire_gen;		/* bumped each time a slot is unpublished */
static pthread_mutex_t slots_mutex = PTHREAD_MUTEX_INITIALIZER;
static bool handler_installed;
/* Mappings all trackers may add before they degrade on purpose: the rest of
 * vm.max_map_count stays free for the program (and its sanitizers), which
 * could not even mmap a thread stack if the trackers took all of it. */
static atomic_long extra_vmas_total;
static long vma_budget = 65530 - 8192;
static long vma_headroom = 8192;
static struct sigaction old_action;	/* the program's handler, chained to */

/* A miss the handler let retry, to pass it on if it comes straight back.
 * initial-exec: no lazy TLS allocation inside the signal handler. */
static __thread struct {
	uintptr_t addr;
	unsigned int gen;
	bool valid;
} last_miss __attribute__((tls_model("initial-exec")));

/* ---- async-signal-safe primitives ------------------------------------ */

static long futex_op(atomic_uint *word, int op, unsigned int val)
{
	return syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

static unsigned int self_tid(void)
{
	return (unsigned int)syscall(SYS_gettid);
}

/* Take the tracker lock; false if this thread already holds it. */
static bool state_lock(struct mp_state *s, unsigned int tid)
{
	unsigned int want = tid;

	for (;;) {
		unsigned int cur = 0;

		if (atomic_compare_exchange_strong_explicit(&s->lock, &cur, want,
							    memory_order_acquire,
							    memory_order_relaxed))
			return true;
		if ((cur & ~LOCK_WAITERS) == tid)
			return false;
		if (!(cur & LOCK_WAITERS) &&
		    !atomic_compare_exchange_strong_explicit(&s->lock, &cur, cur | LOCK_WAITERS,
							     memory_order_relaxed,
							     memory_order_relaxed))
			continue;
		futex_op(&s->lock, FUTEX_WAIT, cur | LOCK_WAITERS);
		/* Others may wait too: keep the flag so unlock wakes them. */
		want = tid | LOCK_WAITERS;
	}
}

static void state_unlock(struct mp_state *s)
{
	if (atomic_exchange_explicit(&s->lock, 0, memory_order_release) & LOCK_WAITERS)
		futex_op(&s->lock, FUTEX_WAKE, 1);
}

static void set_bits(struct mp_state *s, uint64_t first, uint64_t end)
{
	while (first < end) {
		uint64_t w = first / 64, lo = first % 64;
		uint64_t n = end - first < 64 - lo ? end - first : 64 - lo;
		uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << lo;

		atomic_fetch_or_explicit(&s->bits[w], mask, memory_order_relaxed);
		first += n;
	}
}

static void clear_bits(struct mp_state *s, uint64_t first, uint64_t end)
{
	while (first < end) {
		uint64_t w = first / 64, lo = first % 64;
		uint64_t n = end - first < 64 - lo ? end - first : 64 - lo;
		uint64_t mask = (n == 64 ? ~0ull : ((1ull << n) - 1)) << lo;

		atomic_fetch_and_explicit(&s->bits[w], ~mask, memory_order_relaxed);
		first += n;
	}
}

/* First page in [from, limit) whose bit is `set`, or limit. */
static uint64_t find_bit(struct mp_state *s, uint64_t from, uint64_t limit, bool set)
{
	while (from < limit) {
		uint64_t w = atomic_load_explicit(&s->bits[from / 64], memory_order_relaxed);

		if (!set)
			w = ~w;
		w &= ~0ull << (from % 64);
		if (w) {
			uint64_t p = (from & ~63ull) + (uint64_t)__builtin_ctzll(w);

			return p < limit ? p : limit;
		}
		from = (from & ~63ull) + 64;
	}
	return limit;
}

/* Last page in [lo, below) whose bit is set. */
static bool find_prev_set(struct mp_state *s, uint64_t below, uint64_t lo, uint64_t *out)
{
	while (below > lo) {
		uint64_t i = below - 1;
		uint64_t w = atomic_load_explicit(&s->bits[i / 64], memory_order_relaxed);

		w &= ~0ull >> (63 - i % 64);
		if (w) {
			uint64_t p = (i & ~63ull) + 63 - (uint64_t)__builtin_clzll(w);

			if (p < lo)
				return false;
			*out = p;
			return true;
		}
		below = i & ~63ull;
	}
	return false;
}

/* The last "page" of a chunk guard (uffd.c) may end past the range: clip. */
static int protect_pages(struct mp_state *s, uint64_t first, uint64_t end, int prot)
{
	uintptr_t a = s->start + (first << s->page_shift);
	uintptr_t b = s->start + (end << s->page_shift);

	return mprotect((void *)a, (b < s->end ? b : s->end) - a, prot);
}

/*
 * Mappings that making page writable adds: a split on each side whose
 * neighbour in the range is read-only, a merge on each side whose neighbour
 * is writable (set bit).  Outside the range a boundary exists already.
 */
static long vma_delta(struct mp_state *s, uint64_t page)
{
	long delta = 0;

	if (page > 0)
		delta += find_bit(s, page - 1, page, true) < page ? -1 : 1;
	if (page + 1 < s->npages)
		delta += find_bit(s, page + 1, page + 2, true) < page + 2 ? -1 : 1;
	return delta;
}

static void count_vmas(struct mp_state *s, long delta)
{
	atomic_fetch_add_explicit(&s->extra_vmas, delta, memory_order_relaxed);
	atomic_fetch_add_explicit(&extra_vmas_total, delta, memory_order_relaxed);
}

/*
 * Recount this tracker's mappings from the bitmap (lock held): each run of
 * set bits is a writable stretch, split from its read-only neighbours.
 * Done after each collect with reset, so the estimate never drifts far.
 */
static void resync_vmas(struct mp_state *s)
{
	uint64_t p = 0;
	long n = 0;

	while ((p = find_bit(s, p, s->npages, true)) < s->npages) {
		uint64_t end = find_bit(s, p, s->npages, false);

		n += (p > 0) + (end < s->npages);
		p = end;
	}
	count_vmas(s, n - atomic_load_explicit(&s->extra_vmas, memory_order_relaxed));
}

/*
 * The single page could not be made writable: mprotect failed with ENOMEM
 * (vm.max_map_count), or the trackers used up their share of it.  Make a
 * larger span writable, bits first.  Called with the lock held.
 */
static bool degrade(struct mp_state *s, uint64_t page)
{
	const int rw = PROT_READ | PROT_WRITE;
	uint64_t window = CHUNK_BYTES >> s->page_shift;
	uint64_t lo = page > window ? page - window : 0;
	uint64_t hi = page + window < s->npages ? page + window + 1 : s->npages;
	uint64_t left, right, first, end;
	bool has_left, has_right;
	uintptr_t chunk;

	/* Joining the nearest writable neighbours merges VMAs. */
	has_left = find_prev_set(s, page, lo, &left);
	right = find_bit(s, page + 1, hi, true);
	has_right = right < hi;
	if (has_left || has_right) {
		first = has_left ? left : page;
		end = has_right ? right + 1 : page + 1;
		set_bits(s, first, end);
		if (!protect_pages(s, first, end, rw)) {
			atomic_fetch_add_explicit(&s->degraded_near, 1, memory_order_relaxed);
			return true;
		}
	}
	/* A chunk in a read-only stretch costs two mappings: not when the
	 * headroom left to the program is running out. */
	if (atomic_load_explicit(&extra_vmas_total, memory_order_relaxed) >=
	    vma_budget + vma_headroom / 2)
		goto whole;
	chunk = (s->start + (page << s->page_shift)) & ~(uintptr_t)(CHUNK_BYTES - 1);
	first = chunk > s->start ? (chunk - s->start) >> s->page_shift : 0;
	end = chunk + CHUNK_BYTES < s->end ? (chunk + CHUNK_BYTES - s->start) >> s->page_shift
					   : s->npages;
	set_bits(s, first, end);
	if (!protect_pages(s, first, end, rw)) {
		count_vmas(s, 2);
		atomic_fetch_add_explicit(&s->degraded_chunk, 1, memory_order_relaxed);
		return true;
	}
whole:
	/* The whole range as one VMA needs no split inside it. */
	set_bits(s, 0, s->npages);
	if (!protect_pages(s, 0, s->npages, rw)) {
		count_vmas(s, -atomic_load_explicit(&s->extra_vmas, memory_order_relaxed));
		atomic_fetch_add_explicit(&s->degraded_whole, 1, memory_order_relaxed);
		return true;
	}
	return false;
}

/* A write fault on page `page` of s.  Returns false to pass the fault on. */
static bool tracker_fault(struct mp_state *s, uintptr_t addr)
{
	uint64_t page = (addr - s->start) >> s->page_shift;
	long delta;
	bool ok;

	if (!state_lock(s, self_tid())) {
		/* This thread holds the lock: the fault came from inside
		 * collect.  Waiting would deadlock. */
		atomic_fetch_add_explicit(&s->gave_up, 1, memory_order_relaxed);
		return false;
	}
	delta = vma_delta(s, page);
	set_bits(s, page, page + 1);
	if (delta > 0 && atomic_load_explicit(&extra_vmas_total, memory_order_relaxed) + delta >
			 vma_budget) {
		ok = degrade(s, page);
	} else {
		ok = !protect_pages(s, page, page + 1, PROT_READ | PROT_WRITE);
		if (ok)
			count_vmas(s, delta);
		else if (errno == ENOMEM)
			ok = degrade(s, page);
	}
	if (!ok)
		atomic_fetch_add_explicit(&s->gave_up, 1, memory_order_relaxed);
	state_unlock(s);
	return ok;
}

enum verdict { FAULT_RETRY, FAULT_CHAIN };

static enum verdict handle_fault(uintptr_t addr, const sigset_t *fault_mask)
{
	unsigned int gen = atomic_load(&retire_gen);
	unsigned int high = atomic_load(&slots_high);

	for (unsigned int i = 0; i < high; i++) {
		struct slot *sl = &slots[i];
		unsigned int seq = atomic_load(&sl->seq);
		unsigned int kind;
		struct mp_state *s;
		bool ok;

		if (seq & 1)
			continue;
		kind = atomic_load(&sl->kind);
		if (kind == SLOT_FREE || addr < atomic_load(&sl->start) ||
		    addr >= atomic_load(&sl->end))
			continue;
		s = atomic_load(&sl->state);
		/* Pin the slot; if it changed meanwhile, it is not ours. */
		atomic_fetch_add(&sl->users, 1);
		if (atomic_load(&sl->seq) != seq) {
			atomic_fetch_sub(&sl->users, 1);
			continue;
		}
		if (kind == SLOT_FREEZE) {
			unsigned int freezer = atomic_load(&sl->freezer);

			/* Slots are never freed: a waiter needs no pin, and
			 * one that a signal handler longjmps out of the wait
			 * leaves none behind for the thaw to wait on. */
			atomic_fetch_sub(&sl->users, 1);
			/* The thread that froze the range would wait for its
			 * own thaw forever: pass its fault on instead. */
			if (freezer == self_tid())
				return FAULT_CHAIN;
			/* No lock held: wait with the program's own mask, so a
			 * signal can still interrupt or kill a waiting thread
			 * (a nested fault into the range just waits too).  If
			 * the slot is reused meanwhile, frozen reads 0, or 1
			 * for another freeze, which ends soon too. */
			pthread_sigmask(SIG_SETMASK, fault_mask, NULL);
			while (atomic_load(&sl->frozen))
				futex_op(&sl->frozen, FUTEX_WAIT, 1);
			return FAULT_RETRY;
		}
		ok = tracker_fault(s, addr);
		atomic_fetch_sub(&sl->users, 1);
		return ok ? FAULT_RETRY : FAULT_CHAIN;
	}
	/* Not ours now; maybe ours when it faulted.  Retry once per
	 * generation; a real fault comes straight back and is passed on. */
	if (last_miss.valid && last_miss.addr == addr && last_miss.gen == gen) {
		last_miss.valid = false;
		return FAULT_CHAIN;
	}
	last_miss.addr = addr;
	last_miss.gen = gen;
	last_miss.valid = true;
	return FAULT_RETRY;
}

/* Hand the fault to the handler the program had before ours. */
static void chain(int sig, siginfo_t *si, void *ucontext)
{
	const struct sigaction *old = &old_action;
	struct sigaction dfl = { .sa_handler = SIG_DFL };
	ucontext_t *uc = ucontext;
	sigset_t mask;

	if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		/* Run it with the mask the kernel would have given it (no
		 * context: another library called us by hand; keep ours). */
		if (uc)
			mask = uc->uc_sigmask;
		else
			pthread_sigmask(SIG_BLOCK, NULL, &mask);
		sigorset(&mask, &mask, &old->sa_mask);
		if (!(old->sa_flags & SA_NODEFER))
			sigaddset(&mask, sig);
		pthread_sigmask(SIG_SETMASK, &mask, NULL);
		if (old->sa_flags & SA_SIGINFO)
			old->sa_sigaction(sig, si, ucontext);
		else
			old->sa_handler(sig);
		return;
	}
	/* Default (an ignored SIGSEGV from a fault is fatal too): restore it
	 * and let the fault happen again, or re-send a signal that was sent. */
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	if (!si || si->si_code <= 0)
		raise(sig);
}

static void segv_handler(int sig, siginfo_t *si, void *ucontext)
{
	int saved_errno = errno;

	/* Only a permission fault on a mapped page can be a tracked write;
	 * a read never faults on PROT_READ, so SEGV_ACCERR there is a write. */
	if (si && ucontext && si->si_code == SEGV_ACCERR &&
	    handle_fault((uintptr_t)si->si_addr, &((ucontext_t *)ucontext)->uc_sigmask) == FAULT_RETRY) {
		errno = saved_errno;
		return;
	}
	chain(sig, si, ucontext);
	errno = saved_errno;
}

/* ---- slots, installation, fork --------------------------------------- */

static void slot_unpublish(struct slot *sl, bool wait)
{
	atomic_fetch_add(&sl->seq, 1);
	atomic_store(&sl->kind, SLOT_FREE);
	atomic_store(&sl->state, NULL);
	atomic_store(&sl->start, 0);
	atomic_store(&sl->end, 0);
	atomic_fetch_add(&sl->seq, 1);
	atomic_fetch_add(&retire_gen, 1);
	/* A handler that pinned the slot before it changed finishes soon:
	 * it waits for nothing but this tracker's lock, which we do not hold. */
	while (wait && atomic_load(&sl->users))
		sched_yield();
}

/* Called with slots_mutex held.  Returns the slot index or -errno. */
static int slot_publish(enum slot_kind kind, uintptr_t start, uintptr_t end, struct mp_state *s)
{
	unsigned int high = atomic_load(&slots_high);
	int free_slot = -1;

	for (unsigned int i = 0; i < high; i++) {
		unsigned int k = atomic_load(&slots[i].kind);

		if (k == SLOT_FREE) {
			if (free_slot < 0)
				free_slot = (int)i;
			continue;
		}
		if (start < atomic_load(&slots[i].end) && atomic_load(&slots[i].start) < end)
			return -EEXIST;
	}
	if (free_slot < 0) {
		if (high == MAX_SLOTS) {
			pt_log(PT_LOG_ERROR, "mprotect: more than %d tracked or frozen ranges",
			       MAX_SLOTS);
			return -ENOSPC;
		}
		free_slot = (int)high;
		atomic_store(&slots_high, high + 1);
	}
	struct slot *sl = &slots[free_slot];

	atomic_fetch_add(&sl->seq, 1);
	atomic_store(&sl->start, start);
	atomic_store(&sl->end, end);
	atomic_store(&sl->state, s);
	atomic_store(&sl->frozen, kind == SLOT_FREEZE);
	atomic_store(&sl->freezer, kind == SLOT_FREEZE ? self_tid() : 0);
	atomic_store(&sl->kind, kind);
	atomic_fetch_add(&sl->seq, 1);
	return free_slot;
}

bool pt_mprotect_overlaps(uintptr_t start, size_t len)
{
	bool found = false;

	pthread_mutex_lock(&slots_mutex);
	for (unsigned int i = 0; i < atomic_load(&slots_high) && !found; i++)
		found = atomic_load(&slots[i].kind) != SLOT_FREE &&
			start < atomic_load(&slots[i].end) && atomic_load(&slots[i].start) < start + len;
	pthread_mutex_unlock(&slots_mutex);
	return found;
}

static void atfork_prepare(void)
{
	pthread_mutex_lock(&slots_mutex);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&slots_mutex);
}

/* The child is single-threaded: no handler is pinned, no lock is needed. */
static void atfork_child(void)
{
	unsigned int high = atomic_load(&slots_high);

	for (unsigned int i = 0; i < high; i++) {
		struct slot *sl = &slots[i];
		uintptr_t start = atomic_load(&sl->start), end = atomic_load(&sl->end);

		if (atomic_load(&sl->kind) == SLOT_FREE)
			continue;
		/* ENOMEM if the parent unmapped it: nothing to restore. */
		mprotect((void *)start, end - start, PROT_READ | PROT_WRITE);
		atomic_store(&sl->frozen, 0);
		slot_unpublish(sl, false);
		atomic_store(&sl->users, 0);
	}
	pthread_mutex_unlock(&slots_mutex);
}

/* Size the trackers' share of vm.max_map_count (Linux; else the default). */
static void read_map_limit(void)
{
	char buf[32] = "";
	long limit = 0;
	int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) > 0)
			limit = strtol(buf, NULL, 10);
		close(fd);
	}
	if (limit <= 0)
		limit = 65530;
	vma_headroom = limit / 8 > 1024 ? limit / 8 : 1024;
	vma_budget = limit > vma_headroom ? limit - vma_headroom : 0;
}

/* Called with slots_mutex held. */
static int install_handler(void)
{
	struct sigaction sa = { .sa_sigaction = segv_handler };
	int ret;

	if (handler_installed)
		return 0;
	read_map_limit();
	/* Block every signal while the handler runs: an asynchronous handler
	 * that writes a tracked page must not interrupt ours while it holds a
	 * tracker lock.  chain() gives the program's handler its own mask. */
	sigfillset(&sa.sa_mask);
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	ret = pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (ret)
		return -ret;
	if (sigaction(SIGSEGV, &sa, &old_action))
		return -errno;
	handler_installed = true;
	return 0;
}

/* Block the asynchronous signals around a locked section (see the top). */
static void block_signals(sigset_t *saved)
{
	sigset_t all;

	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGTRAP);
	sigdelset(&all, SIGABRT);
	pthread_sigmask(SIG_BLOCK, &all, saved);
}

static void restore_signals(const sigset_t *saved)
{
	pthread_sigmask(SIG_SETMASK, saved, NULL);
}

/* ---- the backend -------------------------------------------------------- */

static int mp_probe(char *why, size_t why_len)
{
	struct sigaction cur;

	if (sigaction(SIGSEGV, NULL, &cur))
		return pt_why(why, why_len, -EOPNOTSUPP, "sigaction(SIGSEGV): %s",
			      strerror(errno));
	return 0;
}

static void state_free(struct mp_state *s)
{
	free(s->bits);
	free(s);
}

static int mp_open(struct pt_tracker *t)
{
	struct mp_state *s;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->start = t->start;
	s->end = t->start + t->len;
	s->npages = t->npages;
	s->page_size = t->page_size;
	s->page_shift = t->page_shift;
	s->nwords = (size_t)((t->npages + 63) / 64);
	s->bits = calloc(s->nwords, sizeof(*s->bits));
	if (!s->bits) {
		ret = -ENOMEM;
		goto err;
	}
	pthread_mutex_lock(&slots_mutex);
	ret = install_handler();
	if (ret) {
		pthread_mutex_unlock(&slots_mutex);
		pt_log(PT_LOG_ERROR, "mprotect: cannot install the SIGSEGV handler: %s",
		       strerror(-ret));
		goto err;
	}
	ret = slot_publish(SLOT_TRACKER, s->start, s->end, s);
	pthread_mutex_unlock(&slots_mutex);
	if (ret < 0)
		goto err;
	s->slot = ret;
	/* Published first: from here on a fault in the range finds us. */
	if (mprotect((void *)s->start, t->len, PROT_READ)) {
		ret = -errno;
		pt_log(PT_LOG_ERROR, "mprotect(PROT_READ) of %zu bytes at %#lx: %s",
		       t->len, (unsigned long)t->start, strerror(-ret));
		/* Undo what part of it was done. */
		mprotect((void *)s->start, t->len, PROT_READ | PROT_WRITE);
		pthread_mutex_lock(&slots_mutex);
		slot_unpublish(&slots[s->slot], true);
		pthread_mutex_unlock(&slots_mutex);
		goto err;
	}
	t->priv = s;
	return 0;
err:
	state_free(s);
	return ret;
}

/* Say what the handler had to do since the last collect. */
static void log_degrades(struct mp_state *s)
{
	unsigned int near = atomic_exchange(&s->degraded_near, 0);
	unsigned int chunk = atomic_exchange(&s->degraded_chunk, 0);
	unsigned int whole = atomic_exchange(&s->degraded_whole, 0);
	unsigned int gave_up = atomic_exchange(&s->gave_up, 0);

	if (near || chunk || whole)
		pt_log(PT_LOG_WARN,
		       "mprotect: %u write faults could not unprotect a single page: the "
		       "trackers' share of vm.max_map_count (%ld mappings, %ld left to the "
		       "program) was used up, or mprotect failed with ENOMEM; unprotected larger "
		       "spans instead (%u up to the nearest dirty pages, %u 2 MiB chunks, "
		       "%u whole range) and report all their pages as written",
		       near + chunk + whole, vma_budget, vma_headroom, near, chunk, whole);
	if (gave_up)
		pt_log(PT_LOG_ERROR,
		       "mprotect: %u write faults in the range at %#lx could not be resolved "
		       "and were passed to the program's SIGSEGV handler",
		       gave_up, (unsigned long)s->start);
}

/* Put back the bits of everything already reported, for a failed collect. */
static int collect_failed(struct pt_tracker *t, int err)
{
	struct mp_state *s = t->priv;

	for (size_t i = 0; i < t->out.nr; i++)
		set_bits(s, t->out.v[i].first, t->out.v[i].first + t->out.v[i].count);
	t->out.nr = 0;
	pt_log(PT_LOG_ERROR, "mprotect: collect failed: %s", strerror(-err));
	return err;
}

/*
 * Re-protect the runs in [first, end) one by one, after protecting the whole
 * span failed, and clear the bits of those that worked.  Lock held.
 * Returns the pages left writable (still dirty, reported again next time).
 */
static uint64_t reprotect_runs(struct mp_state *s, uint64_t first, uint64_t end)
{
	uint64_t left = 0, p = first;

	while ((p = find_bit(s, p, end, true)) < end) {
		uint64_t run_end = find_bit(s, p, end, false);

		if (!protect_pages(s, p, run_end, PROT_READ))
			clear_bits(s, p, run_end);
		else
			left += run_end - p;
		p = run_end;
	}
	return left;
}

static int mp_collect(struct pt_tracker *t, bool reset)
{
	struct mp_state *s = t->priv;
	unsigned int tid = self_tid();
	uint64_t p = 0, left = 0;
	sigset_t saved;
	int ret = 0;

	if (!reset) {
		log_degrades(s);
		/* Read only: a bit set meanwhile is reported now or next time. */
		while ((p = find_bit(s, p, s->npages, true)) < s->npages) {
			uint64_t end = find_bit(s, p, s->npages, false);

			ret = pt_ranges_add(&t->out, p, end - p);
			if (ret)
				return collect_failed(t, ret);
			p = end;
		}
		return 0;
	}
	block_signals(&saved);
	while ((p = find_bit(s, p, s->npages, true)) < s->npages) {
		uint64_t first = p, end = p, q;
		bool span_ok;

		state_lock(s, tid);
		/* Whole runs, so the span never ends inside a writable VMA. */
		while ((q = find_bit(s, end, s->npages, true)) < s->npages &&
		       q - first < BATCH_PAGES)
			end = find_bit(s, q, s->npages, false);
		/*
		 * One span: its clean pages are read-only already.  Protect
		 * before reporting: at vm.max_map_count this merges VMAs back
		 * before pt_ranges_add() may need to map memory.
		 */
		span_ok = !protect_pages(s, first, end, PROT_READ);
		for (q = first; (q = find_bit(s, q, end, true)) < end; ) {
			uint64_t run_end = find_bit(s, q, end, false);

			ret = pt_ranges_add(&t->out, q, run_end - q);
			if (ret)
				break;
			q = run_end;
		}
		/* On error the bits stay: read-only pages with a set bit are
		 * only reported again. */
		if (!ret) {
			if (span_ok)
				clear_bits(s, first, end);
			else
				left += reprotect_runs(s, first, end);
		}
		state_unlock(s);
		if (ret)
			break;
		p = end;
	}
	state_lock(s, tid);
	resync_vmas(s);
	state_unlock(s);
	restore_signals(&saved);
	/* Logged now that re-protection merged the VMAs back: a log callback
	 * at vm.max_map_count could not even allocate. */
	log_degrades(s);
	if (ret)
		return collect_failed(t, ret);
	if (left)
		pt_log(PT_LOG_WARN,
		       "mprotect: could not re-protect %llu reported pages (%s); they stay "
		       "writable and are reported again next time",
		       (unsigned long long)left, strerror(ENOMEM));
	return 0;
}

/*
 * Make pages [first, end) read-only and clear their bits, under the lock
 * with the asynchronous signals blocked.  Returns the pages that could
 * not be protected: they keep their bits (reported again, never lost).
 */
static uint64_t rearm(struct mp_state *s, uint64_t first, uint64_t end)
{
	uint64_t left = 0;
	sigset_t saved;

	block_signals(&saved);
	state_lock(s, self_tid());
	if (!protect_pages(s, first, end, PROT_READ))
		clear_bits(s, first, end);
	else
		left = reprotect_runs(s, first, end);
	resync_vmas(s);
	state_unlock(s);
	restore_signals(&saved);
	return left;
}

static int mp_reset(struct pt_tracker *t)
{
	struct mp_state *s = t->priv;
	uint64_t left;

	log_degrades(s);
	left = rearm(s, 0, s->npages);
	if (left)
		pt_log(PT_LOG_WARN,
		       "mprotect: reset could not re-protect %llu pages; they are reported "
		       "as written next time", (unsigned long long)left);
	return 0;
}

static void mp_close(struct pt_tracker *t)
{
	struct mp_state *s = t->priv;
	sigset_t saved;

	if (!s)
		return;
	block_signals(&saved);
	state_lock(s, self_tid());
	/* ENOMEM when the range was unmapped already: nothing to restore. */
	if (mprotect((void *)s->start, s->end - s->start, PROT_READ | PROT_WRITE) &&
	    errno != ENOMEM)
		pt_log(PT_LOG_WARN, "mprotect: restoring write access at %#lx: %s",
		       (unsigned long)s->start, strerror(errno));
	count_vmas(s, -atomic_load_explicit(&s->extra_vmas, memory_order_relaxed));
	state_unlock(s);
	restore_signals(&saved);
	/* Writable before unpublished: a late fault finds the page writable. */
	pthread_mutex_lock(&slots_mutex);
	slot_unpublish(&slots[s->slot], true);
	pthread_mutex_unlock(&slots_mutex);
	state_free(s);
	t->priv = NULL;
}

/* Re-arm only pages [first, first + count), as reset does for all (the
 * chunk guard of uffd.c re-arms the chunks it chose).  0, or -ENOMEM when
 * some could not be protected (they keep their bits). */
int pt_mprotect_rearm(struct pt_tracker *t, uint64_t first, uint64_t count)
{
	return rearm(t->priv, first, first + count) ? -ENOMEM : 0;
}

/* In a forked child: the fork handler restored and unpublished the range
 * already, and the slot may be the child's own now; only free. */
void pt_mprotect_forget(struct pt_tracker *t)
{
	if (t->priv)
		state_free(t->priv);
	t->priv = NULL;
}

const struct pt_backend_ops pt_mprotect_ops = {
	.id = PT_BACKEND_MPROTECT,
	.name = "mprotect",
	.probe = mp_probe,
	.open = mp_open,
	.collect = mp_collect,
	.reset = mp_reset,
	.close = mp_close,
};

/* ---- the write freeze (used by the soft-dirty backend) ---------------- */

int pt_write_freeze(uintptr_t start, size_t len)
{
	long page_size = sysconf(_SC_PAGESIZE);
	int ret, slot;

	if (page_size <= 0 || !start || !len || start % (uintptr_t)page_size ||
	    len % (size_t)page_size || start + len < start)
		return -EINVAL;
	pthread_mutex_lock(&slots_mutex);
	ret = install_handler();
	if (!ret)
		ret = slot_publish(SLOT_FREEZE, start, start + len, NULL);
	pthread_mutex_unlock(&slots_mutex);
	if (ret < 0)
		return ret;
	slot = ret;
	if (mprotect((void *)start, len, PROT_READ)) {
		ret = -errno;
		mprotect((void *)start, len, PROT_READ | PROT_WRITE);
		pthread_mutex_lock(&slots_mutex);
		slot_unpublish(&slots[slot], true);
		pthread_mutex_unlock(&slots_mutex);
		return ret;
	}
	return 0;
}

void pt_write_thaw(uintptr_t start, size_t len)
{
	struct slot *sl = NULL;
	unsigned int high;

	pthread_mutex_lock(&slots_mutex);
	high = atomic_load(&slots_high);
	for (unsigned int i = 0; i < high; i++) {
		if (atomic_load(&slots[i].kind) == SLOT_FREEZE &&
		    atomic_load(&slots[i].start) == start &&
		    atomic_load(&slots[i].end) == start + len) {
			sl = &slots[i];
			break;
		}
	}
	if (!sl) {
		pthread_mutex_unlock(&slots_mutex);
		pt_log(PT_LOG_ERROR, "thaw of %zu bytes at %#lx that were not frozen",
		       len, (unsigned long)start);
		return;
	}
	/* Writable first, then wake the waiters, whose retried writes land. */
	if (mprotect((void *)start, len, PROT_READ | PROT_WRITE) && errno != ENOMEM)
		pt_log(PT_LOG_ERROR, "thaw: mprotect: %s", strerror(errno));
	atomic_store(&sl->frozen, 0);
	futex_op(&sl->frozen, FUTEX_WAKE, INT_MAX);
	slot_unpublish(sl, true);
	pthread_mutex_unlock(&slots_mutex);
}
