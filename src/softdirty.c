/* SPDX-License-Identifier: MIT */
/*
 * softdirty.c - the soft-dirty backend: /proc/self/clear_refs and bit 55 of
 * /proc/self/pagemap, where the kernel is built with CONFIG_MEM_SOFT_DIRTY
 * (x86, powerpc and s390 among others; not arm or arm64).  The fallback
 * between uffd-wp (Linux >= 6.7) and mprotect, for kernels 6.1 to 6.6 and
 * for processes that may not use userfaultfd.
 *
 * The kernel interface (Documentation/admin-guide/mm/soft-dirty.rst):
 * writing "4" to /proc/PID/clear_refs clears the soft-dirty bit of every PTE
 * and the VM_SOFTDIRTY flag of every VMA of the process, and write-protects
 * the PTEs; the next write to a page faults and the kernel sets its
 * soft-dirty bit again.  pagemap then reports bit 55 for written pages, and
 * for every page of a VMA still flagged VM_SOFTDIRTY.
 *
 * Two properties of that interface shape this file.
 *
 * 1. The clear is process-wide.  Writing clear_refs for one tracker would
 *    wipe what every other soft-dirty tracker of the process has not yet
 *    collected.  So the trackers share a registry under one mutex, and the
 *    one function that writes clear_refs, clear_all(), first folds the pages
 *    the kernel marks soft-dirty, for every registered tracker, into that
 *    tracker's private `pending` bitmap.  A tracker's written set is always
 *    pagemap-dirty | pending; collect reports exactly that, and a reset or a
 *    collect with reset empties only the caller's pending bitmap.  Every
 *    operation holds the mutex from its first pagemap read to its last
 *    bitmap update, so a fold for one tracker never interleaves with a
 *    collect of another.
 *
 * 2. Reading pagemap and writing clear_refs are two system calls, not one
 *    atomic get-and-clear (the flaw of the 2007 loop patch).  A write that
 *    lands after pagemap was read and before clear_refs cleared its bit
 *    would be lost.  clear_all() closes that window with the write freeze
 *    (pt_write_freeze(), mprotect.c): every tracked range is made read-only
 *    first, so a thread writing there waits in the SIGSEGV handler; then
 *    pagemap is read, clear_refs written, and the ranges thawed.  The
 *    waiting write is retried after the thaw, hits a PTE that clear_refs
 *    left write-protected and clean, faults in the kernel, and sets the
 *    soft-dirty bit: the next collect reports it.  And no write that came
 *    before the freeze is missed by the read: mprotect() returns only after
 *    the TLB flush, so no CPU can still store into the range through a
 *    stale writable entry, and a store to a soft-dirty-clean page always
 *    goes through the kernel's fault path (clean PTEs are write-protected),
 *    which sets the bit before the store completes.  Writable PTEs are
 *    soft-dirty already.
 *
 * Why the thaw does not undo the clear: mprotect(PROT_READ | PROT_WRITE)
 * only makes a PTE writable when no write fault is needed for it.  Since
 * Linux 6.1 (commit "mm/mprotect: fix soft-dirty check in
 * can_change_pte_writable()") that check asks vma_soft_dirty_enabled(),
 * which is true once clear_refs dropped VM_SOFTDIRTY, and keeps every
 * soft-dirty-clean PTE write-protected; shared mappings likewise keep a
 * write-protected vm_page_prot (vma_wants_writenotify()).  Before 6.1 the
 * test was inverted (VM_SOFTDIRTY set was taken to mean "tracking on"), and
 * mprotect could hand a clean, hardware-dirty PTE its write bit back, after
 * which writes were never seen.  So this backend requires Linux >= 6.1; the
 * probe refuses older kernels rather than lose writes on them.  The freeze
 * itself (PROT_READ) keeps the soft-dirty bits: pte_modify() preserves them.
 *
 * What the kernel cannot tell us exactly (false positives, never negatives):
 *  - a VMA created or grown after the last clear (mmap next to the range
 *    merging with it, mremap, brk) is VM_SOFTDIRTY: all its pages read as
 *    soft-dirty until the next clear;
 *  - transparent huge pages are tracked per PMD: one write marks 2 MiB;
 *  - a page that was present at the last clear and is not now is reported
 *    (see below), also when it was only evicted or swapped out.
 *
 * Writes that bypass the page tables: MADV_DONTNEED, hole punching and
 * truncation replace a page's content by dropping its PTE, which drops the
 * soft-dirty bit with it; reclaim of a written file or shmem page does the
 * same.  The kernel gives no record of that, so each tracker keeps a
 * `resident` bitmap (present at the last clear) and reports pages that were
 * present and no longer are.  A swapped-out page counts as gone: anonymous
 * swap entries keep the soft-dirty bit, but shared memory swaps through the
 * page cache and its PTE, bit included, is simply dropped.  A page dropped
 * and then faulted back in by a read between two collects still escapes:
 * pagetrack(7) says so.
 *
 * Kernel writes on the process's behalf (read(2) into the range) set the
 * soft-dirty bit like any write fault; during a freeze they fail with EFAULT
 * (the range is read-only for an instant), as they do under mprotect.
 *
 * A tracker whose range cannot be frozen during another tracker's clear (it
 * was unmapped before close, or mprotect ran out of mappings) cannot vouch
 * for a write racing with that clear: it is marked `all_dirty` and reports
 * its whole range at its next collect.  The tracker whose operation it is
 * fails instead, before anything is cleared.
 *
 * pagemap is read with pread() in chunks of PAGEMAP_CHUNK entries (8 bytes
 * per page).  PAGEMAP_SCAN with PAGE_IS_SOFT_DIRTY (Linux >= 6.7) could
 * return runs instead of entries, but a kernel that has PAGEMAP_SCAN also
 * has uffd-wp, which AUTO prefers; pread works on every soft-dirty kernel.
 *
 * Deadlock freedom of the freeze: the thread that freezes must not write
 * into a frozen range itself, or it would wait for its own thaw.  So the
 * per-tracker state, its bitmaps and the read buffer are mmap()ed, never
 * malloc()ed (they cannot lie inside a caller's tracked range); nothing is
 * logged or allocated until the thaw; and asynchronous signals are blocked
 * from freeze to thaw, so no signal handler of the program runs on this
 * thread in between.  The mappings are shared anonymous ones so that they
 * never merge with (and so never mark soft-dirty) a tracked private mapping
 * next to them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "softdirty.h"

/* /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_SOFT_DIRTY	(1ull << 55)
#define PM_PRESENT	(1ull << 63)

/* pagemap entries per pread(): 64 KiB of entries, 32 MiB of 4 KiB pages. */
#define PAGEMAP_CHUNK 8192

/* mprotect() stopped handing soft-dirty-clean PTEs their write bit in 6.1. */
#define SOFTDIRTY_MIN_KERNEL (6u * 65536 + 1u * 256)

struct sd_state {
	struct pt_tracker *t;
	struct sd_state *next;	/* the registry's list */
	uint64_t *pending;	/* written since the last reset, folded out of pagemap */
	uint64_t *resident;	/* present at the last clear */
	size_t bitmap_bytes;	/* each bitmap's size */
	size_t map_bytes;	/* this object's mapping: the struct and both bitmaps */
	bool all_dirty;		/* missed a freeze: report every page next time */
	bool frozen;		/* scratch for clear_all() */
};

/*
 * The registry: every soft-dirty tracker of this process, the /proc files
 * they share and the pagemap buffer.  `lock` serializes every operation of
 * the backend (see 1. above).  After fork() the child starts with an empty
 * registry: the parent's trackers are dead there (tracker.c answers
 * -ECHILD) and the parent's /proc/self files describe the parent.
 */
static struct {
	pthread_mutex_t lock;
	struct sd_state *head;
	int pagemap;
	int clear_refs;
	uint64_t *buf;		/* PAGEMAP_CHUNK entries */
} reg = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.pagemap = -1,
	.clear_refs = -1,
};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------------ */
/* the /proc files, through a seam (softdirty.h)                       */
/* ------------------------------------------------------------------ */

/*
 * Every open, pread, write and close of /proc/self/pagemap and
 * /proc/self/clear_refs goes through `procfs`, so that a test can put an
 * emulated soft-dirty kernel under this file (test/softdirty-emu.c) where
 * the real one is built without CONFIG_MEM_SOFT_DIRTY.
 */

static int sys_open(const char *path, int flags)
{
	int fd = open(path, flags);

	return fd < 0 ? -errno : fd;
}

static int sys_close(int fd)
{
	return close(fd) ? -errno : 0;
}

static ssize_t sys_write(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	return n < 0 ? -errno : n;
}

const struct pt_procfs_ops pt_procfs_system = {
	.open = sys_open,
	.pread = pt_read_full,
	.write = sys_write,
	.close = sys_close,
};

static const struct pt_procfs_ops *procfs = &pt_procfs_system;

void pt_softdirty_set_procfs(const struct pt_procfs_ops *ops)
{
	procfs = ops ? ops : &pt_procfs_system;
}

/* ------------------------------------------------------------------ */
/* bitmaps                                                             */
/* ------------------------------------------------------------------ */

static inline void bit_set(uint64_t *map, uint64_t i)
{
	map[i / 64] |= 1ull << (i % 64);
}

static inline void bit_assign(uint64_t *map, uint64_t i, bool v)
{
	if (v)
		map[i / 64] |= 1ull << (i % 64);
	else
		map[i / 64] &= ~(1ull << (i % 64));
}

static inline bool bit_test(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

/*
 * Memory for our own data.  mmap()ed, so that it is never inside a caller's
 * tracked range (see the top of the file), and MAP_SHARED, so that it never
 * merges with a neighbouring private anonymous mapping: the kernel marks a
 * VMA that grew by a merge VM_SOFTDIRTY, and a tracked range next to our
 * bitmaps would then read as entirely written.  MADV_DONTFORK: a child has
 * no use for it (and must not share it).
 */
static void *private_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	(void)madvise(p, len, MADV_DONTFORK);
	return p;
}

/* The state and its two bitmaps in one mapping (see private_alloc()). */
static struct sd_state *sd_alloc(uint64_t npages)
{
	size_t head = (sizeof(struct sd_state) + 63) & ~(size_t)63;
	size_t bitmap_bytes = (size_t)((npages + 63) / 64 * sizeof(uint64_t));
	size_t map_bytes = head + 2 * bitmap_bytes;
	struct sd_state *s = private_alloc(map_bytes);

	if (!s)
		return NULL;
	s->map_bytes = map_bytes;
	s->bitmap_bytes = bitmap_bytes;
	s->pending = (uint64_t *)((char *)s + head);
	s->resident = (uint64_t *)((char *)s + head + bitmap_bytes);
	return s;
}

static void sd_free(struct sd_state *s)
{
	if (s)
		munmap(s, s->map_bytes);
}

/* ------------------------------------------------------------------ */
/* the registry                                                        */
/* ------------------------------------------------------------------ */

/*
 * In the child of a fork, start from an empty registry.  Only a child
 * handler, no prepare/parent pair: holding our lock across fork() would
 * order it against mprotect.c's, whose handlers are registered at the first
 * freeze, after ours, and so run before ours in prepare; clear_all() takes
 * ours and then, inside the freeze, theirs: a deadlock.  The child needs
 * none of the parent's state anyway.  The child is single-threaded, so
 * re-initializing the lock (maybe held by a parent thread at fork) is safe.
 * The parent's sd_state objects are not mapped in the child
 * (MADV_DONTFORK); the child's copies of the parent's trackers can only be
 * closed there, and that close does not reach this file.
 */
static void atfork_child(void)
{
	pthread_mutex_init(&reg.lock, NULL);
	reg.head = NULL;
	if (reg.pagemap >= 0)
		procfs->close(reg.pagemap);
	if (reg.clear_refs >= 0)
		procfs->close(reg.clear_refs);
	reg.pagemap = reg.clear_refs = -1;
	reg.buf = NULL;		/* MADV_DONTFORK: not mapped in the child */
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

/* Open the shared /proc files on first use.  Called with the lock held. */
static int registry_ready(void)
{
	int fd;

	if (!reg.buf) {
		reg.buf = private_alloc(PAGEMAP_CHUNK * sizeof(uint64_t));
		if (!reg.buf)
			return -ENOMEM;
	}
	if (reg.pagemap < 0) {
		fd = procfs->open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fd;
		reg.pagemap = fd;
	}
	if (reg.clear_refs < 0) {
		fd = procfs->open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return fd;
		reg.clear_refs = fd;
	}
	return 0;
}

/* The last tracker is gone: give the descriptors back.  Lock held. */
static void registry_idle(void)
{
	if (reg.head)
		return;
	if (reg.pagemap >= 0)
		procfs->close(reg.pagemap);
	if (reg.clear_refs >= 0)
		procfs->close(reg.clear_refs);
	reg.pagemap = reg.clear_refs = -1;
}

static void registry_remove(struct sd_state *s)
{
	for (struct sd_state **p = &reg.head; *p; p = &(*p)->next) {
		if (*p == s) {
			*p = s->next;
			s->next = NULL;
			return;
		}
	}
}

/* ------------------------------------------------------------------ */
/* pagemap and clear_refs                                              */
/* ------------------------------------------------------------------ */

/* pread() exactly len bytes; pagemap may return fewer at once. */
static int pread_full(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = procfs->pread(fd, p, len, off);

		if (n == -EINTR)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		off += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * pending |= pages pagemap marks soft-dirty, and pages resident at the last
 * clear that no longer are.  With `snapshot`, also re-take the resident
 * bitmap (only when a clear follows).  Makes no call that could allocate or
 * log: it runs with ranges frozen.  Lock held.
 */
static int fold(struct sd_state *s, bool snapshot)
{
	struct pt_tracker *t = s->t;
	uint64_t first_vpage = t->start >> t->page_shift;

	for (uint64_t first = 0; first < t->npages;) {
		uint64_t n = t->npages - first;
		int ret;

		if (n > PAGEMAP_CHUNK)
			n = PAGEMAP_CHUNK;
		ret = pread_full(reg.pagemap, reg.buf, n * sizeof(uint64_t),
				 (off_t)((first_vpage + first) * sizeof(uint64_t)));
		if (ret)
			return ret;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t e = reg.buf[i], page = first + i;
			bool resident = e & PM_PRESENT;

			if ((e & PM_SOFT_DIRTY) || (!resident && bit_test(s->resident, page)))
				bit_set(s->pending, page);
			if (snapshot)
				bit_assign(s->resident, page, resident);
		}
		first += n;
	}
	return 0;
}

static int write_clear_refs(void)
{
	/* "4": clear soft-dirty bits (CLEAR_REFS_SOFT_DIRTY).  A kernel
	 * without CONFIG_MEM_SOFT_DIRTY accepts it and does nothing, which
	 * is why the probe tests the behaviour, not this write. */
	for (;;) {
		ssize_t n = procfs->write(reg.clear_refs, "4", 1);

		if (n == 1)
			return 0;
		if (n == -EINTR)
			continue;
		return n < 0 ? (int)n : -EIO;
	}
}

/*
 * The write freeze takes one freeze per range at a time, so overlapping
 * tracked ranges are frozen as their union: the span from the lowest start
 * to the highest end of a group of overlapping ranges.  Lists are short
 * (a process has a handful of trackers), so quadratic is fine.
 */
static void group_span(struct sd_state *s, uintptr_t *start, uintptr_t *end)
{
	bool grew = true;

	*start = s->t->start;
	*end = s->t->start + s->t->len;
	while (grew) {
		grew = false;
		for (struct sd_state *o = reg.head; o; o = o->next) {
			uintptr_t os = o->t->start, oe = o->t->start + o->t->len;

			if (os < *end && *start < oe && (os < *start || oe > *end)) {
				*start = os < *start ? os : *start;
				*end = oe > *end ? oe : *end;
				grew = true;
			}
		}
	}
}

/* Is s the first member of its overlap group (the one that freezes it)? */
static bool group_leader(struct sd_state *s)
{
	uintptr_t start, end;

	group_span(s, &start, &end);
	for (struct sd_state *o = reg.head; o != s; o = o->next) {
		uintptr_t os = o->t->start;

		if (os >= start && os < end)
			return false;
	}
	return true;
}

static void thaw_all(void)
{
	for (struct sd_state *s = reg.head; s; s = s->next) {
		uintptr_t start, end;

		if (!s->frozen || !group_leader(s))
			continue;
		group_span(s, &start, &end);
		pt_write_thaw(start, end - start);
	}
	for (struct sd_state *s = reg.head; s; s = s->next)
		s->frozen = false;
}

/*
 * The only writer of clear_refs.  Freeze every registered range, fold each
 * tracker's soft-dirty pages into its pending bitmap (re-taking its
 * resident bitmap), clear, thaw.  `self` is the tracker whose operation
 * this is: if its range cannot be frozen or read, nothing is cleared and
 * the error is returned.  Another tracker that cannot be frozen or read is
 * marked all_dirty and the clear goes on.  Lock held.
 */
static int clear_all(struct sd_state *self)
{
	struct sd_state *failed = NULL;
	int ret = 0, failed_err = 0;
	sigset_t all, saved;

	/* Synchronous faults stay deliverable: a write into a frozen range
	 * by another thread must reach the freeze's handler there, and a
	 * blocked SIGSEGV from a real fault would kill the process. */
	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	for (struct sd_state *s = reg.head; s; s = s->next)
		s->frozen = false;
	/* Freeze, a group of overlapping ranges at a time. */
	for (struct sd_state *s = reg.head; s; s = s->next) {
		uintptr_t start, end;
		bool has_self;
		int err;

		if (!group_leader(s))
			continue;
		group_span(s, &start, &end);
		has_self = self->t->start >= start && self->t->start < end;
		err = pt_write_freeze(start, end - start);
		if (err && has_self) {
			ret = err;
			goto thaw;
		}
		for (struct sd_state *o = reg.head; o; o = o->next) {
			if (o->t->start < start || o->t->start >= end)
				continue;
			if (!err) {
				o->frozen = true;
				continue;
			}
			o->all_dirty = true;
			failed = o;
			failed_err = err;
		}
	}
	/* Fold every tracker, frozen or not (an unfrozen one is all_dirty
	 * already; its fold only adds what is surely written).  One we
	 * cannot read is in the same state as one we could not freeze. */
	for (struct sd_state *s = reg.head; s; s = s->next) {
		int err = fold(s, true);

		if (!err)
			continue;
		if (s == self) {
			ret = err;
			goto thaw;
		}
		s->all_dirty = true;
		failed = s;
		failed_err = err;
	}
	ret = write_clear_refs();
thaw:
	thaw_all();
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	/* Ranges are writable again: now it is safe to log. */
	if (failed)
		pt_log(PT_LOG_WARN,
		       "soft-dirty: tracker at %#lx (%zu bytes) could not be frozen or read (%s): "
		       "its next collect reports its whole range",
		       (unsigned long)failed->t->start, failed->t->len, strerror(-failed_err));
	if (ret)
		pt_log(PT_LOG_ERROR, "soft-dirty: clearing failed, nothing was lost: %s",
		       strerror(-ret));
	return ret;
}

/* t->out = pending (or everything, after a missed freeze).  Lock held. */
static int report(struct sd_state *s)
{
	struct pt_tracker *t = s->t;
	uint64_t words = (t->npages + 63) / 64;
	uint64_t run_start = 0, run_len = 0;
	int ret;

	if (s->all_dirty)
		return pt_ranges_add(&t->out, 0, t->npages);
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = s->pending[w];

		if (!bits && !run_len)
			continue;
		for (unsigned int b = 0; b < 64; b++) {
			uint64_t page = w * 64 + b;

			if (page >= t->npages)
				break;
			if (bits >> b & 1) {
				if (!run_len)
					run_start = page;
				run_len++;
			} else if (run_len) {
				ret = pt_ranges_add(&t->out, run_start, run_len);
				if (ret)
					return ret;
				run_len = 0;
			}
			if (!(bits >> b) && !run_len)
				break;	/* the rest of this word is clear */
		}
	}
	if (run_len)
		return pt_ranges_add(&t->out, run_start, run_len);
	return 0;
}

static void forget(struct sd_state *s)
{
	memset(s->pending, 0, s->bitmap_bytes);
	s->all_dirty = false;
}

/* ------------------------------------------------------------------ */
/* the backend                                                         */
/* ------------------------------------------------------------------ */

static int probe_result;
static char probe_why[200];
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

#if defined(__aarch64__) || defined(__arm__)
#define NO_SOFT_DIRTY_ARCH " (arm and arm64 have no soft-dirty bit)"
#else
#define NO_SOFT_DIRTY_ARCH ""
#endif

/*
 * The truth is behavioural: a kernel without CONFIG_MEM_SOFT_DIRTY still
 * has clear_refs and accepts "4", and pagemap bit 55 just stays 0.  So
 * write a page of a fresh mapping (a new VMA is VM_SOFTDIRTY and a written
 * PTE soft-dirty) and look at its bit.  Never write clear_refs here: that
 * would wipe the state of trackers already open.
 */
static void probe_softdirty(void)
{
	long page_size = sysconf(_SC_PAGESIZE);
	unsigned int kv = pt_kernel_version();
	uint64_t entry = 0;
	int pm, cr, ret;
	char *p;

	pm = procfs->open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		probe_result = pt_why(probe_why, sizeof(probe_why),
				      pm == -EACCES || pm == -EPERM ? -EPERM : -EOPNOTSUPP,
				      "/proc/self/pagemap: %s", strerror(-pm));
		return;
	}
	/* Shared: a private page could merge with a tracked neighbour and
	 * mark it VM_SOFTDIRTY (see private_alloc()). */
	p = mmap(NULL, (size_t)page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		 0);
	if (p == MAP_FAILED) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -errno, "mmap: %s",
				      strerror(errno));
		procfs->close(pm);
		return;
	}
	*(volatile char *)p = 1;
	ret = pread_full(pm, &entry, sizeof(entry),
			 (off_t)((uintptr_t)p / (uintptr_t)page_size * sizeof(entry)));
	munmap(p, (size_t)page_size);
	procfs->close(pm);
	if (ret) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "reading /proc/self/pagemap: %s", strerror(-ret));
		return;
	}
	if (!(entry & PM_SOFT_DIRTY)) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "kernel built without CONFIG_MEM_SOFT_DIRTY%s",
				      NO_SOFT_DIRTY_ARCH);
		return;
	}
	cr = procfs->open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (cr < 0) {
		probe_result = pt_why(probe_why, sizeof(probe_why),
				      cr == -EACCES || cr == -EPERM ? -EPERM : -EOPNOTSUPP,
				      "/proc/self/clear_refs not writable: %s", strerror(-cr));
		return;
	}
	procfs->close(cr);
	if (kv && kv < SOFTDIRTY_MIN_KERNEL) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "needs Linux >= 6.1: older mprotect() can make soft-dirty-clean "
				      "pages writable, and writes would be lost");
		return;
	}
	probe_result = 0;
}

static int sd_probe(char *why, size_t why_len)
{
	pthread_once(&probe_once, probe_softdirty);
	if (probe_result)
		return pt_why(why, why_len, probe_result, "%s", probe_why);
	return 0;
}

static int sd_open(struct pt_tracker *t)
{
	struct sd_state *s;
	int ret;

	pthread_once(&atfork_once, register_atfork);
	s = sd_alloc(t->npages);
	if (!s)
		return -ENOMEM;
	s->t = t;

	pthread_mutex_lock(&reg.lock);
	ret = registry_ready();
	if (ret) {
		pt_log(PT_LOG_ERROR, "soft-dirty: cannot open /proc/self files: %s",
		       strerror(-ret));
		goto err;
	}
	/* Join first, so the clear folds and freezes this range too: it
	 * also takes its resident bitmap.  The whole range starts clean. */
	s->next = reg.head;
	reg.head = s;
	ret = clear_all(s);
	if (ret) {
		registry_remove(s);
		goto err;
	}
	forget(s);
	pthread_mutex_unlock(&reg.lock);
	t->priv = s;
	return 0;
err:
	registry_idle();
	pthread_mutex_unlock(&reg.lock);
	sd_free(s);
	return ret;
}

static int sd_collect(struct pt_tracker *t, bool reset)
{
	struct sd_state *s = t->priv;
	int ret;

	pthread_mutex_lock(&reg.lock);
	/* Without reset nothing is cleared: a fold alone is exact, since
	 * the pagemap bits it copies stay set, and no freeze is needed. */
	ret = reset ? clear_all(s) : fold(s, false);
	if (ret)
		goto out;
	ret = report(s);
	if (ret) {
		/* pending still holds everything: the next collect reports it. */
		t->out.nr = 0;
		goto out;
	}
	if (reset)
		forget(s);
out:
	pthread_mutex_unlock(&reg.lock);
	return ret;
}

static int sd_reset(struct pt_tracker *t)
{
	struct sd_state *s = t->priv;
	int ret;

	pthread_mutex_lock(&reg.lock);
	ret = clear_all(s);
	if (!ret)
		forget(s);
	pthread_mutex_unlock(&reg.lock);
	return ret;
}

static void sd_close(struct pt_tracker *t)
{
	struct sd_state *s = t->priv;

	if (!s)
		return;
	/* No clear: the soft-dirty bits of this range simply stop mattering.
	 * Nothing here touches the range, so munmap before close is fine. */
	pthread_mutex_lock(&reg.lock);
	registry_remove(s);
	registry_idle();
	pthread_mutex_unlock(&reg.lock);
	sd_free(s);
	t->priv = NULL;
}

const struct pt_backend_ops pt_softdirty_ops = {
	.id = PT_BACKEND_SOFT_DIRTY,
	.name = "soft-dirty",
	.probe = sd_probe,
	.open = sd_open,
	.collect = sd_collect,
	.reset = sd_reset,
	.close = sd_close,
};
