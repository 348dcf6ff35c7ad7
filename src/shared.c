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
 * (pid, copy); the updater never writes a pinned copy, so a reader that
 * does not refresh delays the shared copy's freshness, never the writer.
 * Pinning and the updater's check form a Dekker pair (store pin, re-read
 * current / store current, read pins), both sequentially consistent.
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

#include "replica.h"

static bool pid_alive(int32_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static size_t ctl_len(void)
{
	return (size_t)pt_round_up(sizeof(struct pt_shared_ctl), (uint64_t)sysconf(_SC_PAGESIZE));
}

/* Map the copy c read-only at r->base. */
static int view_map(struct pt_replica *r, uint32_t c)
{
	void *p = mmap(r->base, r->size, PROT_READ, MAP_SHARED | MAP_FIXED, r->shmfd,
		       (off_t)r->ctl->copy_offset[c]);

	return p == MAP_FAILED ? -errno : 0;
}

/* Move this reader to the current copy if it is newer than what we show. */
static int pin_current(struct pt_replica *r)
{
	struct pt_shared_reader *me = &r->ctl->readers[r->slot];
	uint32_t c;
	int ret;

	for (;;) {
		c = __atomic_load_n(&r->ctl->current, __ATOMIC_SEQ_CST);
		if (me->pin == c + 1 || load64(&r->ctl->copy_epoch[c]) < r->epoch)
			return 0;
		__atomic_store_n(&me->pin, c + 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&r->ctl->current, __ATOMIC_SEQ_CST) == c)
			break;
	}
	ret = view_map(r, c);
	if (ret)
		return ret;
	r->epoch = load64(&r->ctl->copy_epoch[c]);
	__atomic_store_n(&me->epoch, r->epoch, __ATOMIC_RELEASE);
	return 0;
}

static bool copy_pinned(struct pt_replica *r, uint32_t c)
{
	for (int i = 0; i < PT_SHARED_READERS; i++) {
		struct pt_shared_reader *rd = &r->ctl->readers[i];
		int32_t pid = __atomic_load_n(&rd->pid, __ATOMIC_SEQ_CST);

		if (!pid || __atomic_load_n(&rd->pin, __ATOMIC_SEQ_CST) != c + 1)
			continue;
		if (pid_alive(pid))
			return true;
		/* A reader that died pinned: free its slot. */
		__atomic_store_n(&rd->pin, 0, __ATOMIC_SEQ_CST);
		__atomic_compare_exchange_n(&rd->pid, &pid, 0, false, __ATOMIC_SEQ_CST,
					    __ATOMIC_SEQ_CST);
	}
	return false;
}

/* If no one else is updating: bring the copy no reader uses up to the
 * newest published epoch and make it current.  0, 1 if switched, -errno. */
static int try_update(struct pt_replica *r)
{
	struct pt_shared_ctl *ctl = r->ctl;
	struct copy_state cs;
	uint32_t cur, tgt;
	uint64_t p;
	int ret = 0;

	if (flock(r->shmfd, LOCK_EX | LOCK_NB))
		return 0;
	cur = __atomic_load_n(&ctl->current, __ATOMIC_SEQ_CST);
	tgt = !cur;
	p = load64(&r->state->published);
	if (ctl->copy_epoch[cur] >= p || copy_pinned(r, tgt))
		goto out;
	if (!r->shm_rw) {
		r->shm_rw = mmap(NULL, r->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->shmfd, 0);
		if (r->shm_rw == MAP_FAILED) {
			r->shm_rw = NULL;
			ret = -errno;
			goto out;
		}
	}
	ctl->updater_pid = (uint64_t)getpid();
	cs.epoch = ctl->copy_epoch[tgt];
	cs.chain = ctl->copy_chain[tgt];
	cs.need_image = ctl->copy_need_image[tgt];
	ret = pt_replica_check_writer(r, cs.epoch, cs.chain);
	if (ret)
		goto out;
	/* An updater that dies half way leaves the copy's epoch as it was:
	 * applying the records again from there is idempotent.  An image
	 * catch-up in progress is remembered in copy_need_image. */
	ret = pt_replica_advance(r, r->shm_rw + ctl->copy_offset[tgt], &cs, p);
	ctl->copy_need_image[tgt] = cs.need_image;
	ctl->copy_chain[tgt] = cs.chain;
	__atomic_store_n(&ctl->copy_epoch[tgt], cs.epoch, __ATOMIC_RELEASE);
	if (ret >= 0 && !cs.need_image && cs.epoch > ctl->copy_epoch[cur]) {
		__atomic_store_n(&ctl->current, tgt, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&ctl->futex, 1, __ATOMIC_RELEASE);
		pt_futex_wake(&ctl->futex);
		ret = 1;
	}
out:
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
		 * no one is (wait for the writer): wait for either, briefly. */
		if (load64(&r->state->published) > r->ctl->copy_epoch[r->ctl->current])
			pt_futex_wait(&r->ctl->futex, fc, (int)wait_ms);
		else
			pt_futex_wait(&r->state->futex, fs, (int)wait_ms);
	}
}

static int shared_init_ctl(struct pt_replica *r)
{
	struct pt_shared_ctl *ctl = r->ctl;
	size_t cl = ctl_len();

	memset(ctl, 0, sizeof(*ctl));
	ctl->version = PT_FORMAT_VERSION;
	ctl->size = sizeof(*ctl);
	ctl->history_id = r->id.history_id;
	ctl->npages = r->id.npages;
	ctl->page_size = r->id.page_size;
	ctl->copy_offset[0] = cl;
	ctl->copy_offset[1] = cl + r->size;
	/* Both copies start as epoch 0: a region starts zero-filled. */
	ctl->copy_chain[0] = ctl->copy_chain[1] = pt_chain_seed(r->id.history_id);
	__atomic_store_n((uint64_t *)ctl->magic, *(const uint64_t *)PT_SHARED_MAGIC, __ATOMIC_RELEASE);
	return 0;
}

int pt_shared_open(struct pt_replica *r, const char *name)
{
	char def[32];
	struct stat st;
	bool fresh = false;
	int ret;

	if (!name) {
		snprintf(def, sizeof(def), "%016" PRIx64, r->id.history_id);
		name = def;
	}
	if (!*name || strchr(name, '/') || strlen(name) > 200)
		return -EINVAL;
	snprintf(r->shm_path, sizeof(r->shm_path), "/dev/shm/pagetrack-%s", name);
	r->shm_len = ctl_len() + 2 * r->size;
	r->shmfd = open(r->shm_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (r->shmfd < 0 && errno == ENOENT)
		r->shmfd = open(r->shm_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (r->shmfd < 0 && errno == EEXIST)
		r->shmfd = open(r->shm_path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (r->shmfd < 0)
		return -errno;
	if (flock(r->shmfd, LOCK_EX))
		return -errno;
	if (fstat(r->shmfd, &st)) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if ((size_t)st.st_size != r->shm_len) {
		if (st.st_size) {
			ret = -ESTALE;
			goto out;
		}
		/* Allocate every page now: /dev/shm may be too small for two
		 * copies, and a store through the mapping to a page tmpfs
		 * cannot allocate is a SIGBUS.  On failure the file goes back
		 * to size 0, which the next opener takes as fresh. */
		ret = -posix_fallocate(r->shmfd, 0, (off_t)r->shm_len);
		if (ret) {
			pt_log(PT_LOG_ERROR, "%s: cannot allocate %zu bytes for the shared copy: %s",
			       r->shm_path, r->shm_len, strerror(-ret));
			if (ftruncate(r->shmfd, 0))
				pt_log(PT_LOG_WARN, "%s: %s", r->shm_path, strerror(errno));
			goto out;
		}
		fresh = true;
	}
	r->ctl = mmap(NULL, ctl_len(), PROT_READ | PROT_WRITE, MAP_SHARED, r->shmfd, 0);
	if (r->ctl == MAP_FAILED) {
		r->ctl = NULL;
		ret = -errno;
		goto out;
	}
	if (fresh) {
		ret = shared_init_ctl(r);
	} else if (memcmp(r->ctl->magic, PT_SHARED_MAGIC, 8)) {
		ret = -EBADMSG;
	} else if (r->ctl->version != PT_FORMAT_VERSION) {
		ret = -EPROTO;
	} else if (r->ctl->history_id != r->id.history_id || r->ctl->npages != r->id.npages) {
		/* A copy of a region since recreated: start over if unused. */
		bool used = false;

		for (int i = 0; i < PT_SHARED_READERS; i++)
			used |= pid_alive(r->ctl->readers[i].pid);
		ret = used ? -ESTALE : shared_init_ctl(r);
	} else {
		ret = 0;
	}
	if (ret)
		goto out;
	ret = -EUSERS;
	for (int i = 0; i < PT_SHARED_READERS; i++) {
		int32_t pid = __atomic_load_n(&r->ctl->readers[i].pid, __ATOMIC_SEQ_CST);

		if (pid && pid_alive(pid))
			continue;
		if (__atomic_compare_exchange_n(&r->ctl->readers[i].pid, &pid, (int32_t)getpid(),
						false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&r->ctl->readers[i].pin, 0, __ATOMIC_SEQ_CST);
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
	if (r->shm_rw)
		munmap(r->shm_rw, r->shm_len);
	if (r->shmfd >= 0)
		close(r->shmfd);
}
