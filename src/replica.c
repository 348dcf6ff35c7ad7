/* SPDX-License-Identifier: MIT */
/*
 * replica.c - copies of a region kept current from its data directory,
 * which they only read: private (this process's memory) and shared (two
 * copies in /dev/shm that several processes map), with catch-up from the
 * image through the generation table.
 *
 * A copy moves from epoch to epoch by whole records.  A record still in the
 * writer's staging memory (its memfd, mapped read-only) is copied from
 * there under a seqlock, without waiting for the log file: that is what
 * keeps the lag under a millisecond.  A record read from a file is checked
 * completely (checksums, chain) before any of its pages is applied.  When
 * the record it needs is no longer in
 * the log, it copies from the image the pages whose generation is above
 * its epoch (only those: cost follows what changed, not the region's size),
 * takes the image's epoch, and continues from the log.  Pages the image
 * returns torn (a checkpoint was writing them) are rewritten by the records
 * after the image's epoch; until every one is, the copy is not shown.
 *
 * History: each record names the header checksum of the one before (a hash
 * chain).  A replica remembers the checksum of its epoch; a record that does
 * not continue it, a writer that published less than the replica has, or a
 * writer that reopened and no longer has the replica's record in its log
 * all mean the replica may hold epochs the writer lost in a crash: -ESTALE.
 *
 * Shared mode (why a double buffer): readers need a stable copy at a fixed
 * address between refreshes, and must never make the writer wait.  With two
 * full copies the one readers use is never written; a refresh applies the
 * log to the other one and switches.  Page-level copy-on-write (LMDB's way)
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
#include <time.h>
#include <unistd.h>

#include "format.h"

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
	void *base;
	uint64_t epoch;		/* visible */
	uint64_t image_pages;
	struct pt_log_reader rd;
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

	/* shared mode */
	int shmfd;
	struct pt_shared_ctl *ctl;
	unsigned char *shm_rw;	/* the whole file, mapped by an updater */
	size_t shm_len;
	int slot;
	char shm_path[300];
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t load64(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* ---- moving a copy forward ---------------------------------------------- */

static int image_catch_up(struct pt_replica *r, unsigned char *mem, struct copy_state *cs)
{
	struct pt_image img;
	uint64_t copied = 0;
	int ret;

	ret = pt_image_open(&img, r->dirfd, false);
	if (ret)
		return ret;
	if (img.id.history_id != r->id.history_id) {
		ret = -ESTALE;
		goto out;
	}
	if (img.id.npages != r->id.npages) {
		ret = -EMSGSIZE;
		goto out;
	}
	if (img.hdr.epoch < cs->epoch) {
		/* The log lacks our next record yet the image is older than
		 * we are: nothing to catch up from. */
		ret = -EILSEQ;
		goto out;
	}
	cs->need_image = true;
	memset(r->suspect, 0, (r->id.npages + 63) / 64 * 8);
	r->nsuspect = 0;
	/* Redoing an interrupted catch-up from cs->epoch (the older image's)
	 * is enough: pages it left torn belong to records after that epoch,
	 * which the log replays. */
	ret = pt_image_copy_newer(&img, cs->epoch, mem, r->suspect, &r->nsuspect, &copied);
	if (ret)
		goto out;
	r->image_pages += copied;
	pt_log(PT_LOG_INFO, "%s: replica caught up from the image: epoch %" PRIu64 " -> %" PRIu64
	       ", %" PRIu64 " pages copied", r->dir, cs->epoch, img.hdr.epoch, copied);
	cs->epoch = img.hdr.epoch;
	cs->chain = img.hdr.chain;
out:
	pt_image_close(&img);
	return ret;
}

/*
 * Map the writer's staging memory of its current incarnation, if it shares
 * one: its memfd, through /proc/<pid>/fd/<n>, which works for replicas of
 * the writer's user.  The inode number in the state block guards against a
 * reused pid or descriptor; anything amiss and the replica reads the files.
 */
static void ring_map(struct pt_replica *r)
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
static int ring_apply(struct pt_replica *r, unsigned char *mem, struct copy_state *cs)
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

/*
 * Bring mem from cs->epoch to target (not beyond what is published).
 * Returns the number of records applied, or -errno when none could be.
 */
static int advance(struct pt_replica *r, unsigned char *mem, struct copy_state *cs, uint64_t target)
{
	size_t ps = r->id.page_size;
	struct pt_record rec;
	int applied = 0, ret = 0;
	bool copied = false;

	for (int attempt = 0; attempt < 8; attempt++) {
		if (cs->need_image && !copied) {
			ret = image_catch_up(r, mem, cs);
			if (ret)
				return ret;
			copied = true;
			applied++;
		}
		ring_map(r);
		while (cs->epoch < target) {
			int rr = ring_apply(r, mem, cs);

			if (rr > 0) {
				applied++;
				continue;
			}
			if (r->rd.next_epoch != cs->epoch + 1 || r->rd.chain != cs->chain) {
				/* After records from staging memory (or an image)
				 * the file reader starts afresh: where it stood may
				 * be a segment dropped since. */
				pt_log_reader_free(&r->rd);
				pt_log_reader_init(&r->rd, r->dirfd, &r->id, cs->epoch + 1, cs->chain);
				r->rd.quiet = true;
			}
			/* Only what the log file has: a record published from
			 * staging memory may be on its way there. */
			ret = pt_log_next(&r->rd, rr == -EAGAIN ? cs->epoch + 1 :
					  load64(&r->state->logged) < target ?
					  load64(&r->state->logged) : target, &rec);
			if (ret <= 0) {
				if (rr == -EAGAIN) {
					/* Pages of that record may be wrong: redo
					 * from the image next time. */
					cs->need_image = true;
					ret = ret ? ret : -EAGAIN;
				}
				break;
			}
			for (uint32_t i = 0; i < rec.hdr->page_count; i++) {
				memcpy(mem + rec.index[i] * ps, rec.data + (size_t)i * ps, ps);
				if (r->nsuspect && pt_bit_clear(r->suspect, rec.index[i]))
					r->nsuspect--;
			}
			cs->epoch = rec.hdr->epoch;
			cs->chain = rec.hdr->header_checksum;
			applied++;
		}
		if (ret == -ESTALE && r->rd.dropped) {
			/* Fell behind the retained log. */
			cs->need_image = true;
			copied = false;
			continue;
		}
		if (cs->need_image) {
			if (!r->nsuspect && ret >= 0) {
				cs->need_image = false;
			} else if (ret >= 0) {
				/* Torn pages from a checkpoint of records newer than
				 * target: follow the log further. */
				uint64_t p = load64(&r->state->published);

				if (p > target) {
					target = p;
					continue;
				}
				ret = -EBADMSG;
			}
		}
		if (ret < 0 && !applied) {
			if (ret != -ESTALE)
				pt_log(PT_LOG_ERROR, "%s: replica stops before epoch %" PRIu64
				       ": %s (segment %016" PRIx64 ", offset %" PRIu64 ")", r->dir,
				       cs->epoch + 1, pt_log_strerror(ret), r->rd.error_seq,
				       r->rd.error_offset);
			return ret;
		}
		if (cs->need_image)
			return -EBADMSG;
		return applied;
	}
	return ret < 0 ? ret : -EBADMSG;
}

/* ---- the writer's state block ---------------------------------------------- */

static int state_attach(struct pt_replica *r)
{
	struct stat st;
	int ret;

	ret = pt_state_map_ro(r->dirfd, &r->state, &r->statefd);
	if (ret)
		return ret;
	if (fstat(r->statefd, &st))
		return -errno;
	r->state_ino = st.st_ino;
	r->state_uid = st.st_uid;
	r->incarnation = load64(&r->state->incarnation);
	return 0;
}

static void state_detach(struct pt_replica *r)
{
	if (r->state)
		munmap((void *)r->state, sizeof(struct pt_state));
	if (r->statefd >= 0)
		close(r->statefd);
	r->state = NULL;
	r->statefd = -1;
}

/*
 * Is the writer still on our history?  -ESTALE when the region was
 * recreated, when the writer has published less than we show, or when it
 * reopened and its log no longer holds our epoch's record as we applied it.
 */
static int check_writer(struct pt_replica *r, uint64_t epoch, uint64_t chain)
{
	struct stat st;
	uint64_t inc, sum;
	int ret;

	/* The region was deleted and created again: our state file is gone
	 * (its inode number may have been reused, hence st_nlink). */
	if (!fstat(r->statefd, &st) && st.st_nlink == 0) {
		pt_log(PT_LOG_ERROR, "%s: the region was deleted or created again; reopen the replica",
		       r->dir);
		return -ESTALE;
	}
	if (load64(&r->state->history_id) != r->id.history_id)
		return -ESTALE;
	inc = load64(&r->state->incarnation);
	if (load64(&r->state->published) < epoch) {
		pt_log(PT_LOG_ERROR, "%s: the writer has epoch %" PRIu64 ", this replica %" PRIu64
		       ": epochs were lost in a crash; reopen the replica", r->dir,
		       load64(&r->state->published), epoch);
		return -ESTALE;
	}
	if (inc != r->incarnation) {
		/* The writer reopened: did it keep the epoch we show?  When it
		 * reopened once since we last looked and recovered at least our
		 * epoch, recovery read our records on the path we followed. */
		if (epoch && !(inc == r->incarnation + 1 && epoch <= load64(&r->state->recovered))) {
			ret = pt_log_record_checksum(r->dirfd, &r->id, epoch, &sum);
			if (ret == -ENOENT) {
				struct pt_image img;

				if (pt_image_open(&img, r->dirfd, false))
					return -ESTALE;
				ret = img.hdr.epoch == epoch ? 0 : -ESTALE;
				sum = img.hdr.chain;
				pt_image_close(&img);
				if (ret)
					return ret;
			} else if (ret) {
				return ret;
			}
			if (sum != chain) {
				pt_log(PT_LOG_ERROR, "%s: the writer's epoch %" PRIu64 " is not the one "
				       "this replica applied (a crash lost it); reopen the replica",
				       r->dir, epoch);
				return -ESTALE;
			}
		}
		r->incarnation = inc;
	}
	return 0;
}

/* ---- private replicas --------------------------------------------------------- */

static int64_t refresh_private(struct pt_replica *r, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;

	for (;;) {
		uint32_t f = __atomic_load_n(&r->state->futex, __ATOMIC_ACQUIRE);
		uint64_t p;
		int ret;

		ret = check_writer(r, r->priv.epoch, r->priv.chain);
		if (ret)
			return ret;
		p = load64(&r->state->published);
		if (p > r->priv.epoch) {
			ret = advance(r, r->base, &r->priv, p);
			r->epoch = r->priv.epoch;
			if (ret < 0)
				return ret;
			if (ret > 0)
				return (int64_t)r->epoch;
		}
		if (!timeout_ms)
			return (int64_t)r->epoch;
		if (timeout_ms > 0) {
			uint64_t now = now_ms();

			if (now >= deadline)
				return (int64_t)r->epoch;
			pt_futex_wait(&r->state->futex, f, (int)(deadline - now));
		} else {
			/* Bounded, to notice a state file replaced under us. */
			pt_futex_wait(&r->state->futex, f, 1000);
		}
	}
}

/* ---- shared replicas -------------------------------------------------------- */

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
	ret = check_writer(r, cs.epoch, cs.chain);
	if (ret)
		goto out;
	/* An updater that dies half way leaves the copy's epoch as it was:
	 * applying the records again from there is idempotent.  An image
	 * catch-up in progress is remembered in copy_need_image. */
	ret = advance(r, r->shm_rw + ctl->copy_offset[tgt], &cs, p);
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

static int64_t refresh_shared(struct pt_replica *r, int timeout_ms)
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

static int shared_open(struct pt_replica *r, const char *name)
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

/* ---- the API ---------------------------------------------------------------- */

static int reserve_writer_address(struct pt_replica *r)
{
	struct pt_state st;
	void *want, *p;
	ssize_t n;
	int fd;

	fd = openat(r->dirfd, PT_STATE_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pt_read_full(fd, &st, sizeof(st), 0);
	close(fd);
	if (n < 0)
		return (int)n;
	if ((size_t)n < sizeof(st) || memcmp(st.magic, PT_STATE_MAGIC, 8))
		return -ENOENT;
	want = (void *)(uintptr_t)st.base_address;
	r->size = st.npages * st.page_size;
	if (!want || !r->size)
		return -EINVAL;
	p = mmap(want, r->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
		 MAP_FIXED_NOREPLACE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	if (p != want) {
		/* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE. */
		munmap(p, r->size);
		return -EEXIST;
	}
	r->base = p;
	return 0;
}

PT_EXPORT int pt_replica_open(struct pt_replica **out, const char *dir,
			      const struct pt_replica_opts *opts)
{
	struct pt_replica_opts o = { .sz = sizeof(o) };
	struct pt_replica *r;
	struct pt_image img;
	int64_t e;
	int ret;

	if (!out || !dir)
		return -EINVAL;
	*out = NULL;
	if (opts) {
		if (opts->sz < offsetof(struct pt_replica_opts, flags) + sizeof(opts->flags))
			return -EINVAL;
		memcpy(&o, opts, opts->sz < sizeof(o) ? opts->sz : sizeof(o));
	}
	if ((unsigned int)o.mode > PT_REPLICA_SHARED || (o.flags & ~PT_REPLICA_AT_WRITER_ADDRESS))
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->dirfd = r->statefd = r->shmfd = -1;
	r->slot = -1;
	r->rd.fd = -1;
	snprintf(r->dir, sizeof(r->dir), "%s", dir);
	r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (r->dirfd < 0) {
		ret = -errno;
		goto err;
	}
	if (o.flags & PT_REPLICA_AT_WRITER_ADDRESS) {
		/* Reserve the address before anything else maps memory: a
		 * forked child that just unmapped the writer's region would
		 * otherwise see the next mmap land in the hole. */
		ret = reserve_writer_address(r);
		if (ret)
			goto err;
	}
	ret = pt_image_open(&img, r->dirfd, false);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: %s", dir, ret == -EMEDIUMTYPE ? "not a region (no image)" :
		       pt_log_strerror(ret));
		goto err;
	}
	r->id = img.id;
	pt_image_close(&img);
	ret = state_attach(r);
	if (ret) {
		pt_log(PT_LOG_ERROR, "%s: state file: %s", dir, pt_log_strerror(ret));
		goto err;
	}
	if (load64(&r->state->history_id) != r->id.history_id ||
	    r->state->npages != r->id.npages || r->state->page_size != r->id.page_size) {
		ret = -ESTALE;
		goto err;
	}
	if (r->base && r->size != r->id.npages * r->id.page_size) {
		ret = -ESTALE;
		goto err;
	}
	r->size = r->id.npages * r->id.page_size;
	r->shared = o.mode == PT_REPLICA_SHARED;
	r->priv.chain = pt_chain_seed(r->id.history_id);
	pt_log_reader_init(&r->rd, r->dirfd, &r->id, 1, r->priv.chain);
	r->rd.quiet = true;
	r->suspect = calloc((r->id.npages + 63) / 64, 8);
	if (!r->suspect) {
		ret = -ENOMEM;
		goto err;
	}
	if (!r->base) {
		/* Shared: an address range the pinned copy is mapped over. */
		r->base = mmap(NULL, r->size, r->shared ? PROT_NONE : PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (r->base == MAP_FAILED) {
			ret = -errno;
			r->base = NULL;
			goto err;
		}
	} else if (!r->shared && mprotect(r->base, r->size, PROT_READ | PROT_WRITE)) {
		ret = -errno;
		goto err;
	}
	/* Fault the private copy in now: a refresh that first touches a
	 * thousand pages pays a thousand page faults (about 1 us each),
	 * which would be most of the replica's lag. */
	if (!r->shared)
		madvise(r->base, r->size, MADV_POPULATE_WRITE);
	if (r->shared) {
		ret = shared_open(r, o.name);
		if (ret)
			goto err;
	}
	e = pt_replica_refresh(r, 0);
	if (e < 0) {
		ret = (int)e;
		goto err;
	}
	*out = r;
	return 0;
err:
	pt_replica_close(r);
	return ret;
}

PT_EXPORT int64_t pt_replica_refresh(struct pt_replica *r, int timeout_ms)
{
	if (!r)
		return -EINVAL;
	return r->shared ? refresh_shared(r, timeout_ms) : refresh_private(r, timeout_ms);
}

PT_EXPORT const void *pt_replica_base(const struct pt_replica *r)
{
	return r ? r->base : NULL;
}

PT_EXPORT uint64_t pt_replica_epoch(const struct pt_replica *r)
{
	return r ? r->epoch : 0;
}

PT_EXPORT uint64_t pt_replica_image_pages(const struct pt_replica *r)
{
	return r ? r->image_pages : 0;
}

PT_EXPORT void pt_replica_close(struct pt_replica *r)
{
	if (!r)
		return;
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
	if (r->base)
		munmap(r->base, r->size);
	if (r->ring)
		munmap((void *)r->ring, r->ring_len);
	free(r->ring_index);
	pt_log_reader_free(&r->rd);
	state_detach(r);
	if (r->dirfd >= 0)
		close(r->dirfd);
	free(r->suspect);
	free(r);
}
