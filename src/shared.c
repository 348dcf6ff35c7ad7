/* SPDX-License-Identifier: MIT */
/*
 * shared.c - shared replicas: copies of a region in /dev/shm that several
 * processes map, kept current by whichever of them refreshes.
 *
 * Why a double buffer: readers need a stable copy at a fixed address
 * between refreshes, and must never make the writer wait.  With two full
 * copies the one readers use is never written; a refresh applies the log
 * to the other one and switches.  Page-level copy-on-write (LMDB's way)
 * would need the data's own layout; memory is what a region can always
 * afford twice.  Readers pin the copy they map in a reader table
 * (pid, generation, time); the updater never writes a pinned copy, so a
 * reader that does not refresh delays the shared copy's freshness, never
 * the writer.  Pinning and the updater's check form a Dekker pair (store
 * pin, re-read current / store current, read pins), both sequentially
 * consistent; the argument is at pin_current().
 *
 * Stuck readers: a reader that has neither refreshed nor pinned for
 * stuck_reader_ms since the switch that left its copy behind (SIGSTOP, a
 * hang, a pid reused by another process) would hold every other reader at
 * that epoch.  The updater then leaves that copy's file to it: it makes a
 * new file (a new generation) from the current copy, applies the log
 * there, puts it in the slot and unlinks the old one.  The stuck reader
 * keeps mapping the old inode, one whole epoch that nothing writes again;
 * its next refresh maps the current copy and the kernel frees the old one,
 * as it does when the reader exits.  Memory: the two copies, plus at most
 * one unlinked copy per stuck reader (readers stuck on the same copy share
 * it), plus the one an updater is making.
 *
 * Trust: /dev/shm is writable by every local user.  Files are created
 * O_EXCL | O_NOFOLLOW, mode 0600; a file found there is used only if it is
 * a regular file of our effective uid that no one else can write; every
 * number of the control block is checked (pt_shared_ctl_check) on a copy
 * taken once, before it names a file or indexes an array.  Nothing in the
 * block is an offset: each copy is a whole file of the region's size.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "io.h"
#include "replica.h"

#define STUCK_READER_MS_DEFAULT	1000
/* Names taken by files not ours are skipped, a few times at most. */
#define CREATE_TRIES		16
/* Pinning retries when copies switch under it faster than it can map. */
#define PIN_TRIES		1000

static bool pid_alive(int32_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static size_t ctl_len(void)
{
	return (size_t)pt_round_up(sizeof(struct pt_shared_ctl), (uint64_t)sysconf(_SC_PAGESIZE));
}

static void copy_path(const struct pt_replica *r, uint64_t gen, char *buf, size_t len)
{
	snprintf(buf, len, "%s.%016" PRIx64, r->shm_path, gen);
}

/* ---- the control block's numbers ------------------------------------------- */

int pt_shared_ctl_check(const struct pt_shared_ctl *ctl, const struct pt_region_id *id,
			uint64_t file_size)
{
	if (file_size < offsetof(struct pt_shared_ctl, history_id) ||
	    memcmp(ctl->magic, PT_SHARED_MAGIC, 8))
		return -EBADMSG;
	if (ctl->version != PT_SHARED_VERSION)
		return -EPROTO;
	if (file_size < sizeof(*ctl) || ctl->size != sizeof(*ctl))
		return -EBADMSG;
	if (!ctl->page_size || ctl->page_size & (ctl->page_size - 1) || !ctl->npages ||
	    ctl->npages > UINT64_MAX / ctl->page_size)
		return -EBADMSG;
	if (ctl->current > 1 || !ctl->next_gen || ctl->building_gen >= ctl->next_gen)
		return -EBADMSG;
	for (int i = 0; i < 2; i++)
		if (!ctl->copy_gen[i] || ctl->copy_gen[i] >= ctl->next_gen ||
		    ctl->copy_need_image[i] > 1 || ctl->copy_epoch[i] > INT64_MAX)
			return -EBADMSG;
	if (ctl->copy_gen[0] == ctl->copy_gen[1])
		return -EBADMSG;
	for (int i = 0; i < PT_SHARED_READERS; i++) {
		const struct pt_shared_reader *rd = &ctl->readers[i];

		if (rd->pid < 0 || rd->pin >= ctl->next_gen || rd->epoch > INT64_MAX)
			return -EBADMSG;
	}
	/* Last: -ESTALE says the block is sound, so that its reader table
	 * can be read to decide whether it may be made again. */
	if (id && (ctl->history_id != id->history_id || ctl->npages != id->npages ||
		   ctl->page_size != id->page_size))
		return -ESTALE;
	return 0;
}

/*
 * Copy the block's numbers, each loaded once, in the reverse of the order
 * they are stored: a reader stores its pin after loading a generation,
 * which an updater stores after bumping next_gen; so loading the pins,
 * then the copies, then next_gen, sees every generation below next_gen
 * even while others move.  The header is written only under the flock
 * with no live reader (shared_init_ctl), never while a reader looks.
 */
static void ctl_snapshot(const struct pt_shared_ctl *ctl, struct pt_shared_ctl *s)
{
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < PT_SHARED_READERS; i++) {
		const struct pt_shared_reader *rd = &ctl->readers[i];

		s->readers[i].pid = __atomic_load_n(&rd->pid, __ATOMIC_SEQ_CST);
		s->readers[i].pin = __atomic_load_n(&rd->pin, __ATOMIC_SEQ_CST);
		s->readers[i].pin_ms = __atomic_load_n(&rd->pin_ms, __ATOMIC_RELAXED);
		s->readers[i].epoch = __atomic_load_n(&rd->epoch, __ATOMIC_RELAXED);
	}
	s->current = __atomic_load_n(&ctl->current, __ATOMIC_SEQ_CST);
	s->switched_ms = __atomic_load_n(&ctl->switched_ms, __ATOMIC_RELAXED);
	for (int i = 0; i < 2; i++) {
		s->copy_gen[i] = __atomic_load_n(&ctl->copy_gen[i], __ATOMIC_SEQ_CST);
		s->copy_epoch[i] = __atomic_load_n(&ctl->copy_epoch[i], __ATOMIC_ACQUIRE);
		s->copy_chain[i] = __atomic_load_n(&ctl->copy_chain[i], __ATOMIC_RELAXED);
		s->copy_need_image[i] = __atomic_load_n(&ctl->copy_need_image[i], __ATOMIC_RELAXED);
	}
	s->building_gen = __atomic_load_n(&ctl->building_gen, __ATOMIC_SEQ_CST);
	s->next_gen = __atomic_load_n(&ctl->next_gen, __ATOMIC_SEQ_CST);
	s->updater_pid = __atomic_load_n(&ctl->updater_pid, __ATOMIC_RELAXED);
	memcpy(s->magic, ctl->magic, sizeof(s->magic));
	s->version = ctl->version;
	s->size = ctl->size;
	s->history_id = ctl->history_id;
	s->npages = ctl->npages;
	s->page_size = ctl->page_size;
}

/* Snapshot and check; a bad block is reported once per call, by name. */
static int ctl_read(struct pt_replica *r, struct pt_shared_ctl *s)
{
	int ret;

	ctl_snapshot(r->ctl, s);
	ret = pt_shared_ctl_check(s, &r->id, r->ctl_size);
	if (ret == -EBADMSG)
		pt_log(PT_LOG_ERROR, "%s: the control block holds numbers that cannot be; "
		       "remove the file and its copies (%s.*)", r->shm_path, r->shm_path);
	else if (ret == -EPROTO)
		pt_log(PT_LOG_ERROR, "%s: control block of layout %u, this library reads %u; "
		       "remove the file", r->shm_path, s->version, PT_SHARED_VERSION);
	return ret;
}

/* ---- files in /dev/shm --------------------------------------------------------- */

/*
 * A file found in /dev/shm (opened O_NOFOLLOW | O_NONBLOCK, so that a FIFO
 * cannot hang us) is ours only if it is a regular file of our effective
 * uid that no one else can write: anyone can create names there, ahead
 * of us, to read or rewrite what our readers see.  -EPERM otherwise.
 */
static int shm_file_check(int fd, const char *path, struct stat *st)
{
	if (fstat(fd, st))
		return -errno;
	if (!S_ISREG(st->st_mode)) {
		pt_log(PT_LOG_ERROR, "%s: not a regular file; refusing it", path);
		return -EPERM;
	}
	if (st->st_uid != geteuid()) {
		pt_log(PT_LOG_ERROR, "%s: owned by uid %u, not by this process's uid %u; refusing it",
		       path, (unsigned int)st->st_uid, (unsigned int)geteuid());
		return -EPERM;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		pt_log(PT_LOG_ERROR, "%s: writable by group or others (mode %03o); refusing it",
		       path, (unsigned int)(st->st_mode & 0777));
		return -EPERM;
	}
	return 0;
}

/* Open the copy file of generation gen: a descriptor, or -errno (-ENOENT:
 * replaced since its name was read). */
static int copy_open(struct pt_replica *r, uint64_t gen, int flags)
{
	char path[sizeof(r->shm_path) + 20];
	struct stat st;
	int fd, ret;

	copy_path(r, gen, path, sizeof(path));
	fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = shm_file_check(fd, path, &st);
	if (!ret && (uint64_t)st.st_size != r->size) {
		/* Mapped beyond its end, a read would be a SIGBUS. */
		pt_log(PT_LOG_ERROR, "%s: %lld bytes, not the region's %zu", path,
		       (long long)st.st_size, r->size);
		ret = -EBADMSG;
	}
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * Make a new copy file, zero-filled, with every page allocated now:
 * /dev/shm may be too small for another copy, and a store through the
 * mapping to a page tmpfs cannot allocate is a SIGBUS.  Called with the
 * flock held.  building_gen names it until it is in a slot, so that the
 * next updater removes it if this one dies first.  Returns the descriptor
 * and *gen, or -errno.
 */
static int copy_create(struct pt_replica *r, uint64_t *gen)
{
	char path[sizeof(r->shm_path) + 20];
	int fd, ret;

	for (int i = 0; i < CREATE_TRIES; i++) {
		uint64_t g = __atomic_load_n(&r->ctl->next_gen, __ATOMIC_SEQ_CST);

		__atomic_store_n(&r->ctl->next_gen, g + 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&r->ctl->building_gen, g, __ATOMIC_SEQ_CST);
		copy_path(r, g, path, sizeof(path));
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST) {
			pt_log(PT_LOG_WARN, "%s: exists already; skipping that name", path);
			continue;
		}
		if (fd < 0)
			return -errno;
		ret = -posix_fallocate(fd, 0, (off_t)r->size);
		if (ret) {
			pt_log(PT_LOG_ERROR, "%s: cannot allocate %zu bytes for a shared copy: %s",
			       path, r->size, strerror(-ret));
			close(fd);
			unlink(path);
			return ret;
		}
		*gen = g;
		return fd;
	}
	return -EEXIST;
}

static void copy_unlink(struct pt_replica *r, uint64_t gen)
{
	char path[sizeof(r->shm_path) + 20];

	copy_path(r, gen, path, sizeof(path));
	if (unlink(path) && errno != ENOENT)
		pt_log(PT_LOG_WARN, "%s: %s", path, strerror(errno));
}

/* ---- readers ---------------------------------------------------------------- */

/* Map the copy file fd read-only at r->base, over what was there. */
static int view_map(struct pt_replica *r, int fd)
{
	void *p = mmap(r->base, r->size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);

	return p == MAP_FAILED ? -errno : 0;
}

/*
 * Move this reader to the current copy if it is newer than what we show.
 *
 * The Dekker pair: we store our pin (seq_cst), then re-read current and
 * its generation (seq_cst); an updater stores current (seq_cst, at a
 * switch), and later, before writing the other copy in place, reads the
 * pins (seq_cst).  In the single total order of these operations, either
 * the updater's read sees our pin (it does not write that file), or it
 * comes before our store, so our re-read comes after its switch away from
 * the copy it writes and we see current or the generation moved: we pin
 * again.  Once the re-read agrees, the file we map is written by no one
 * while our pin stands.  Revocation does not change this: an updater that
 * finds only stuck readers on a copy writes a new file and puts its new
 * generation in the slot; the old file is never written again, whoever
 * maps it.  A pin on a generation no slot holds any more holds nothing.
 *
 * The file is opened before the pin moves: after, the view we had is no
 * longer protected, so what can fail (the name being replaced meanwhile,
 * the checks) fails while it still is.
 */
static int pin_current(struct pt_replica *r)
{
	struct pt_shared_reader *me = &r->ctl->readers[r->slot];
	struct pt_shared_ctl *s = r->snap;
	int ret = -EAGAIN;

	for (int tries = 0; tries < PIN_TRIES; tries++) {
		uint32_t c;
		uint64_t g, e;
		int fd;

		ret = ctl_read(r, s);
		if (ret)
			break;
		c = s->current;
		g = s->copy_gen[c];
		if (s->copy_epoch[c] < r->epoch ||
		    (g == r->view_gen && __atomic_load_n(&me->pin, __ATOMIC_SEQ_CST) == g)) {
			ret = 0;
			break;
		}
		fd = copy_open(r, g, O_RDONLY);
		if (fd == -ENOENT) {
			ret = fd;
			continue;	/* replaced since we read its name */
		}
		if (fd < 0) {
			ret = fd;
			break;
		}
		/* pin_ms first: an updater that sees the new pin sees the
		 * new time with it, and never takes us for stuck on it. */
		__atomic_store_n(&me->pin_ms, now_ms(), __ATOMIC_SEQ_CST);
		__atomic_store_n(&me->pin, g, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&r->ctl->current, __ATOMIC_SEQ_CST) != c ||
		    __atomic_load_n(&r->ctl->copy_gen[c], __ATOMIC_SEQ_CST) != g) {
			close(fd);
			continue;
		}
		/* Read after the re-check: the copy was rewritten in place
		 * since the snapshot if current went away and came back. */
		e = load64(&r->ctl->copy_epoch[c]);
		ret = e > INT64_MAX || e < r->epoch ? -EBADMSG : view_map(r, fd);
		close(fd);
		if (ret) {
			/* Our old view is unprotected now: show nothing rather
			 * than a copy that may be written under the caller. */
			mmap(r->base, r->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
			     MAP_NORESERVE, -1, 0);
			r->view_gen = 0;
			break;
		}
		r->view_gen = g;
		r->epoch = e;
		__atomic_store_n(&me->epoch, e, __ATOMIC_RELEASE);
		break;
	}
	return ret;
}

/* ---- the updater --------------------------------------------------------------- */

enum copy_holders { COPY_FREE, COPY_PINNED, COPY_STUCK };

/*
 * Who holds the copy of generation gen (not the current one).  A live
 * reader pinned on it holds it, unless it has been stuck_reader_ms since
 * both its pin and the switch that left its copy behind (readers get that
 * long to notice a switch): then it is stuck, and the copy is left to it.
 * A reader that died pinned has its slot freed.
 */
static enum copy_holders copy_holders(struct pt_replica *r, uint64_t gen, uint64_t switched_ms)
{
	uint64_t now = now_ms();
	bool stuck = false;

	for (int i = 0; i < PT_SHARED_READERS; i++) {
		struct pt_shared_reader *rd = &r->ctl->readers[i];
		int32_t pid = __atomic_load_n(&rd->pid, __ATOMIC_SEQ_CST);
		uint64_t since;

		if (!pid || __atomic_load_n(&rd->pin, __ATOMIC_SEQ_CST) != gen)
			continue;
		if (!pid_alive(pid)) {
			__atomic_store_n(&rd->pin, 0, __ATOMIC_SEQ_CST);
			__atomic_compare_exchange_n(&rd->pid, &pid, 0, false, __ATOMIC_SEQ_CST,
						    __ATOMIC_SEQ_CST);
			continue;
		}
		since = __atomic_load_n(&rd->pin_ms, __ATOMIC_SEQ_CST);
		if (since < switched_ms)
			since = switched_ms;
		if (now < since + r->stuck_reader_ms)
			return COPY_PINNED;
		stuck = true;
	}
	return stuck ? COPY_STUCK : COPY_FREE;
}

/*
 * The copy to write, mapped read-write at *mem, in cs: the slot's own file
 * (no one pins it), or a new one made from the current copy (only stuck
 * readers pin it).  Returns the new file's generation, 0 for the slot's
 * own, or -errno.
 */
static int64_t copy_for_update(struct pt_replica *r, const struct pt_shared_ctl *s, bool fresh,
			       unsigned char **mem, struct copy_state *cs)
{
	uint32_t cur = s->current, tgt = !cur;
	uint32_t from = fresh ? cur : tgt;
	uint64_t gen = 0;
	void *src;
	int fd, src_fd;

	cs->epoch = s->copy_epoch[from];
	cs->chain = s->copy_chain[from];
	cs->need_image = s->copy_need_image[from];
	if (!fresh) {
		fd = copy_open(r, s->copy_gen[tgt], O_RDWR);
	} else {
		fd = copy_create(r, &gen);
		if (fd < 0)
			return fd;
		/* The current copy is written by no one: we hold the flock
		 * and updaters write only the other slot. */
		src_fd = copy_open(r, s->copy_gen[cur], O_RDONLY);
		src = src_fd < 0 ? MAP_FAILED : mmap(NULL, r->size, PROT_READ, MAP_SHARED, src_fd, 0);
		if (src == MAP_FAILED) {
			int ret = src_fd < 0 ? src_fd : -errno;

			if (src_fd >= 0)
				close(src_fd);
			close(fd);
			copy_unlink(r, gen);
			return ret;
		}
		close(src_fd);
		*mem = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (*mem != MAP_FAILED)
			memcpy(*mem, src, r->size);
		munmap(src, r->size);
		close(fd);
		if (*mem == MAP_FAILED) {
			*mem = NULL;
			copy_unlink(r, gen);
			return -ENOMEM;
		}
		pt_log(PT_LOG_INFO, "%s: a reader stuck for %u ms keeps its copy; made %016" PRIx64
		       " for the others", r->shm_path, r->stuck_reader_ms, gen);
		return (int64_t)gen;
	}
	if (fd < 0)
		return fd;
	*mem = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (*mem == MAP_FAILED) {
		*mem = NULL;
		return -errno;
	}
	return 0;
}

/*
 * If no one else is updating: bring the copy no reader uses up to the
 * newest published epoch and make it current.  0, 1 if switched, -errno.
 *
 * The copy is mapped for this update only: a mapping kept by a process
 * that later stops would keep a replaced copy's memory alive, beyond the
 * one-per-stuck-reader bound.  The cost is a page fault per page written.
 */
static int try_update(struct pt_replica *r)
{
	struct pt_shared_ctl *ctl = r->ctl, *s = r->snap;
	unsigned char *mem = NULL;
	struct copy_state cs;
	enum copy_holders holders;
	uint32_t cur, tgt;
	int64_t gen = 0;
	uint64_t p;
	int ret = 0;

	if (flock(r->shmfd, LOCK_EX | LOCK_NB))
		return 0;
	ret = ctl_read(r, s);
	if (ret)
		goto out;
	if (s->building_gen) {
		/* An updater died making a copy: its file is no one's. */
		copy_unlink(r, s->building_gen);
		__atomic_store_n(&ctl->building_gen, 0, __ATOMIC_SEQ_CST);
	}
	cur = s->current;
	tgt = !cur;
	p = load64(&r->state->published);
	if (s->copy_epoch[cur] >= p)
		goto out;
	holders = copy_holders(r, s->copy_gen[tgt], s->switched_ms);
	if (holders == COPY_PINNED)
		goto out;
	__atomic_store_n(&ctl->updater_pid, (uint64_t)getpid(), __ATOMIC_RELAXED);
	gen = copy_for_update(r, s, holders == COPY_STUCK, &mem, &cs);
	if (gen == -ENOENT && holders == COPY_FREE) {
		/* The slot's file is gone (removed by hand): make it again. */
		gen = copy_for_update(r, s, true, &mem, &cs);
	}
	if (gen < 0) {
		ret = (int)gen;
		gen = 0;
		goto out;
	}
	ret = pt_replica_check_writer(r, cs.epoch, cs.chain);
	if (ret) {
		if (gen)
			copy_unlink(r, (uint64_t)gen);
		goto out;
	}
	/* An updater that dies half way leaves the copy's epoch as it was:
	 * applying the records again from there is idempotent.  An image
	 * catch-up in progress is remembered in copy_need_image. */
	ret = pt_replica_advance(r, mem, &cs, p);
	if (gen) {
		/* The new file takes the slot whatever advance did: it is a
		 * copy at cs.epoch, and the stuck readers must let go of the
		 * old one.  The old file is unlinked, never written again;
		 * those that map it keep it until they refresh or exit. */
		__atomic_store_n(&ctl->copy_gen[tgt], (uint64_t)gen, __ATOMIC_SEQ_CST);
		copy_unlink(r, s->copy_gen[tgt]);
	}
	__atomic_store_n(&ctl->copy_need_image[tgt], cs.need_image, __ATOMIC_RELAXED);
	__atomic_store_n(&ctl->copy_chain[tgt], cs.chain, __ATOMIC_RELAXED);
	__atomic_store_n(&ctl->copy_epoch[tgt], cs.epoch, __ATOMIC_RELEASE);
	__atomic_store_n(&ctl->building_gen, 0, __ATOMIC_SEQ_CST);
	if (ret >= 0 && !cs.need_image && cs.epoch > s->copy_epoch[cur]) {
		__atomic_store_n(&ctl->switched_ms, now_ms(), __ATOMIC_RELAXED);
		__atomic_store_n(&ctl->current, tgt, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&ctl->futex, 1, __ATOMIC_RELEASE);
		pt_futex_wake(&ctl->futex);
		ret = 1;
	}
out:
	if (mem)
		munmap(mem, r->size);
	flock(r->shmfd, LOCK_UN);
	return ret;
}

int64_t pt_shared_refresh(struct pt_replica *r, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
	uint64_t before = r->epoch;
	int ret;

	for (;;) {
		uint32_t fs = __atomic_load_n(&r->state->futex, __ATOMIC_ACQUIRE);
		uint32_t fc = __atomic_load_n(&r->ctl->futex, __ATOMIC_ACQUIRE);
		uint32_t c;
		uint64_t wait_ms;

		if (load64(&r->state->history_id) != r->id.history_id)
			return -ESTALE;
		ret = pin_current(r);
		if (ret)
			return ret;
		ret = try_update(r);
		if (ret < 0 && r->epoch == before)
			return ret;
		ret = pin_current(r);
		if (ret)
			return ret;
		if (r->epoch > before || !timeout_ms)
			return (int64_t)r->epoch;
		wait_ms = 10;
		if (timeout_ms > 0) {
			uint64_t now = now_ms();

			if (now >= deadline)
				return (int64_t)r->epoch;
			if (deadline - now < wait_ms)
				wait_ms = deadline - now;
		}
		/* Someone else may be the updater (wait for its switch), or
		 * no one is (wait for the writer): wait for either, briefly.
		 * current was checked by pin_current, but may be changed
		 * since: index with it only once checked again. */
		c = __atomic_load_n(&r->ctl->current, __ATOMIC_SEQ_CST);
		if (c > 1)
			return -EBADMSG;
		if (load64(&r->state->published) > load64(&r->ctl->copy_epoch[c]))
			pt_futex_wait(&r->ctl->futex, fc, (int)wait_ms);
		else
			pt_futex_wait(&r->state->futex, fs, (int)wait_ms);
	}
}

/* ---- opening and closing ------------------------------------------------------ */

/*
 * (Re)initialise the control block, with the flock held and no live
 * reader: two new copy files of epoch 0 (a region starts zero-filled).
 * old: the block found (checked, of another region) or NULL; its copy
 * files go, and generations go on from its next_gen so that no name is
 * reused while an old file could still exist.
 */
static int shared_init_ctl(struct pt_replica *r, const struct pt_shared_ctl *old)
{
	struct pt_shared_ctl *ctl = r->ctl;
	uint64_t gen[2] = { 0, 0 };
	int ret = 0;

	if (old) {
		copy_unlink(r, old->copy_gen[0]);
		copy_unlink(r, old->copy_gen[1]);
		if (old->building_gen)
			copy_unlink(r, old->building_gen);
	}
	memset(ctl, 0, sizeof(*ctl));
	ctl->next_gen = old ? old->next_gen : 1;
	for (int i = 0; i < 2; i++) {
		int fd = copy_create(r, &gen[i]);

		if (fd < 0) {
			ret = fd;
			break;
		}
		close(fd);
	}
	if (ret) {
		for (int i = 0; i < 2; i++)
			if (gen[i])
				copy_unlink(r, gen[i]);
		/* Back to a block that is not one: the next opener starts over. */
		memset(ctl, 0, sizeof(*ctl));
		return ret;
	}
	ctl->version = PT_SHARED_VERSION;
	ctl->size = sizeof(*ctl);
	ctl->history_id = r->id.history_id;
	ctl->npages = r->id.npages;
	ctl->page_size = r->id.page_size;
	ctl->building_gen = 0;
	ctl->copy_gen[0] = gen[0];
	ctl->copy_gen[1] = gen[1];
	ctl->copy_chain[0] = ctl->copy_chain[1] = pt_chain_seed(r->id.history_id);
	__atomic_store_n((uint64_t *)ctl->magic, *(const uint64_t *)PT_SHARED_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

/* Open or create the control block's file: a checked descriptor or -errno. */
static int ctl_file_open(struct pt_replica *r)
{
	struct stat st;
	int fd = -1, ret;

	for (int i = 0; i < 2 && fd < 0; i++) {
		fd = open(r->shm_path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 && errno == ENOENT)
			fd = open(r->shm_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK |
				  O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			break;	/* EEXIST: made since we looked; open it */
	}
	if (fd < 0) {
		ret = -errno;
		pt_log(PT_LOG_ERROR, "%s: %s", r->shm_path, strerror(errno));
		return ret;
	}
	ret = shm_file_check(fd, r->shm_path, &st);
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

int pt_shared_open(struct pt_replica *r, const struct pt_replica_opts *o)
{
	const char *name = o->name;
	struct pt_shared_ctl *s;
	struct stat st;
	char def[32];
	int ret;

	if (!name) {
		snprintf(def, sizeof(def), "%016" PRIx64, r->id.history_id);
		name = def;
	}
	if (!*name || strchr(name, '/') || strlen(name) > 200)
		return -EINVAL;
	r->stuck_reader_ms = o->stuck_reader_ms ? o->stuck_reader_ms : STUCK_READER_MS_DEFAULT;
	snprintf(r->shm_path, sizeof(r->shm_path), "/dev/shm/pagetrack-%s", name);
	r->shmfd = ctl_file_open(r);
	if (r->shmfd < 0)
		return r->shmfd;
	s = r->snap = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (flock(r->shmfd, LOCK_EX))
		return -errno;
	/* Its size again, under the lock: a maker may have been at work. */
	if (fstat(r->shmfd, &st)) {
		ret = -errno;
		goto out;
	}
	if (!st.st_size && ftruncate(r->shmfd, (off_t)ctl_len())) {
		ret = -errno;
		goto out;
	}
	r->ctl_size = st.st_size ? (uint64_t)st.st_size : ctl_len();
	r->ctl = mmap(NULL, ctl_len(), PROT_READ | PROT_WRITE, MAP_SHARED, r->shmfd, 0);
	if (r->ctl == MAP_FAILED) {
		r->ctl = NULL;
		ret = -errno;
		goto out;
	}
	ctl_snapshot(r->ctl, s);
	ret = pt_shared_ctl_check(s, &r->id, r->ctl_size);
	if (ret && r->ctl_size >= sizeof(*s) && !memcmp(s->magic, "\0\0\0\0\0\0\0\0", 8)) {
		/* Made by an opener that died before writing the magic (the
		 * last thing it writes), or just made by us. */
		ret = shared_init_ctl(r, NULL);
	} else if (ret == -ESTALE) {
		/* Of a region since recreated (another size or history):
		 * start over if no live reader holds it. */
		int32_t user = 0;

		for (int i = 0; i < PT_SHARED_READERS && !user; i++)
			if (pid_alive(s->readers[i].pid))
				user = s->readers[i].pid;
		if (user)
			pt_log(PT_LOG_ERROR, "%s: a copy of another region (another size or "
			       "history), still used by pid %d", r->shm_path, (int)user);
		else
			ret = shared_init_ctl(r, s);
	} else if (ret == -EBADMSG) {
		pt_log(PT_LOG_ERROR, "%s: not a sound control block; remove the file and its copies "
		       "(%s.*)", r->shm_path, r->shm_path);
	} else if (ret == -EPROTO) {
		pt_log(PT_LOG_ERROR, "%s: control block of layout %u, this library reads %u; "
		       "remove the file", r->shm_path, s->version, PT_SHARED_VERSION);
	}
	if (ret)
		goto out;
	ret = -EUSERS;
	for (int i = 0; i < PT_SHARED_READERS; i++) {
		struct pt_shared_reader *rd = &r->ctl->readers[i];
		int32_t pid = __atomic_load_n(&rd->pid, __ATOMIC_SEQ_CST);

		if (pid && pid_alive(pid))
			continue;
		if (__atomic_compare_exchange_n(&rd->pid, &pid, (int32_t)getpid(), false,
						__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&rd->pin, 0, __ATOMIC_SEQ_CST);
			__atomic_store_n(&rd->epoch, 0, __ATOMIC_RELAXED);
			r->slot = i;
			ret = 0;
			break;
		}
	}
out:
	flock(r->shmfd, LOCK_UN);
	return ret;
}

void pt_shared_close(struct pt_replica *r)
{
	if (r->ctl) {
		if (r->slot >= 0) {
			__atomic_store_n(&r->ctl->readers[r->slot].pin, 0, __ATOMIC_SEQ_CST);
			__atomic_store_n(&r->ctl->readers[r->slot].pid, 0, __ATOMIC_SEQ_CST);
		}
		munmap(r->ctl, ctl_len());
	}
	if (r->shmfd >= 0)
		close(r->shmfd);
	free(r->snap);
}
