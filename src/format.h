/* SPDX-License-Identifier: MIT */
/*
 * format.h - the replication layer's on-disk formats and the internal
 * interfaces between region.c (the writer), log.c (segments and records),
 * image.c (image, generation table, checkpoint), replica.c and io.c.
 *
 * A region's data directory holds:
 *   lock              flock()ed by the one writer (empty)
 *   state             a small shared-memory status block, mmap()ed by the
 *                     writer read-write and by replicas read-only; advisory
 *                     (recovery never trusts it), never fsynced
 *   image             full copy at the checkpointed epoch: two header slots,
 *                     the page table (generation + checksum per page), data
 *   log-<seq>.seg     segments of records, seq in hex, ascending
 *   orphan-<seq>.seg  segments set aside by recovery (after a corrupt record)
 *
 * Every integer is little-endian (the native order of the machines this
 * runs on; the format version would change before a big-endian port).
 * Every structure has a magic, a version and an XXH3-64 checksum; records
 * and segment bodies are page aligned so that a record's pages can be read
 * or mapped where they lie.
 */
#ifndef PT_FORMAT_H
#define PT_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

/* 2: every image table entry is checksummed (1 let zeros mean "never
 * written"); shared replica control blocks of another layout. */
#define PT_FORMAT_VERSION	2

#define PT_IMAGE_MAGIC		"PTIMAGE"	/* 8 bytes with the NUL */
#define PT_SEGMENT_MAGIC	"PTLOGSG"
#define PT_STATE_MAGIC		"PTSTATE"
#define PT_SHARED_MAGIC		"PTSHARE"
#define PT_RECORD_MAGIC		0x31435250u	/* "PRC1" */

#define PT_LOCK_NAME		"lock"
#define PT_STATE_NAME		"state"
#define PT_IMAGE_NAME		"image"
#define PT_IMAGE_TMP_NAME	"image.tmp"

/*
 * Error codes of the replication layer (see docs/replication.md):
 *   -EBADMSG      bad magic or checksum: the bytes are not what was written
 *   -EPROTO       format version this library does not read
 *   -ESTALE       another history (region recreated), or the epoch wanted
 *                 is no longer available (a replica ahead of a writer that
 *                 lost unsynced epochs, a chain mismatch)
 *   -ENODATA      truncated: a header or payload ends early (torn write)
 *   -EILSEQ       epochs out of order, or a gap between records
 *   -EMSGSIZE     lengths that cannot be (zero, beyond the region, not
 *                 matching the page count)
 *   -EXDEV        written with another page size
 *   -EMEDIUMTYPE  the directory is not a region
 */

/* ---- image ------------------------------------------------------------ */

/*
 * Two header slots, at offset 0 and page_size.  A checkpoint writes the slot
 * with the lower seq, then fdatasyncs: the newest slot with a good checksum
 * wins, so a torn header write falls back to the previous checkpoint (the
 * LMDB meta-page scheme).
 */
struct pt_image_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;		/* sizeof(struct pt_image_header) */
	uint32_t page_size;
	uint32_t reserved;
	uint64_t npages;
	uint64_t history_id;
	uint64_t epoch;			/* the data is the region at this epoch */
	uint64_t chain;			/* header checksum of record `epoch` */
	uint64_t seq;			/* slot sequence, higher wins */
	uint64_t table_offset;
	uint64_t data_offset;
	uint64_t created;		/* seconds since 1970 */
	uint64_t checksum;		/* XXH3-64 of this struct, checksum = 0 */
};

/*
 * One per page, always checksummed: a page never written has generation 0
 * and the checksum of a zero page, so an entry zeroed by damage fails
 * rather than pass for "never written".  checksum covers the first three
 * fields, seeded with the page index so an entry at the wrong place fails.
 */
struct pt_image_entry {
	uint64_t generation;		/* epoch this page last changed (0: never) */
	uint64_t page_checksum;		/* XXH3-64 of the page */
	uint64_t reserved;
	uint64_t checksum;
};

/* ---- log segments and records ---------------------------------------- */

/* The first page of a segment; records start at page_size. */
struct pt_segment_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint32_t page_size;
	uint32_t reserved;
	uint64_t npages;
	uint64_t history_id;
	uint64_t seq;
	uint64_t first_epoch;		/* the first record's epoch */
	uint64_t created;
	uint64_t checksum;
};

/*
 * A record is one epoch's delta, page aligned:
 *   [header | uint64_t index[page_count] | zeros to a page boundary]
 *   [page data, page_count pages, in index order]
 * length = head_length(page_count) + page_count * page_size.
 * payload_checksum covers everything after the header to the record's end.
 * prev is the header_checksum of the record of epoch - 1 (for the first
 * epoch: pt_chain_seed(history_id)): a hash chain, so a replica detects that
 * a writer came back from a crash on a different path than the one it
 * followed.
 */
struct pt_record_header {
	uint32_t magic;
	uint16_t version;
	uint16_t header_size;
	uint32_t page_size;
	uint32_t page_count;
	uint64_t epoch;
	uint64_t history_id;
	uint64_t length;
	uint64_t prev;
	uint64_t payload_checksum;
	uint64_t header_checksum;	/* XXH3-64 of the header, this field = 0 */
};

/* ---- state (shared memory status) ------------------------------------ */

/*
 * Where a published record lies in the writer's staging memory, a memfd that
 * replicas open as /proc/<writer_pid>/fd/<staging_fd> (checking its inode
 * number) and map read-only: they apply it from
 * there without waiting for the log file.  Entry epoch % PT_RING_DESCS.  The
 * writer sets offset and length, then epoch (release); it zeroes epoch
 * before the space can be reused (when the record is durable, so the log
 * file has it).  A reader checks epoch before and after reading (a seqlock).
 */
#define PT_RING_DESCS 64

struct pt_ring_desc {
	uint64_t epoch;
	uint64_t offset;
	uint64_t length;
};

struct pt_state {
	char magic[8];
	uint32_t version;
	uint32_t size;			/* sizeof(struct pt_state) */
	uint32_t page_size;
	uint32_t futex;			/* bumped after each publish, for FUTEX_WAIT */
	uint64_t npages;
	uint64_t history_id;
	uint64_t writer_pid;		/* 0 when closed cleanly */
	uint64_t base_address;		/* where the writer maps the region */
	uint64_t incarnation;		/* bumped by each open */
	uint64_t published;
	uint64_t durable;
	uint64_t checkpointed;
	uint64_t log_bytes;
	uint64_t published_chain;	/* header checksum of record `published` */
	uint64_t last_error;		/* positive errno of the latched log error */
	uint64_t checkpoint_request;	/* set by `pagetrack checkpoint` */
	uint64_t logged;		/* newest epoch written to the log file */
	uint64_t staging_bytes;		/* size of the staging memory, 0: not shared */
	uint64_t staging_fd;		/* its descriptor in the writer */
	uint64_t staging_ino;		/* and its inode number */
	uint64_t recovered;		/* the epoch this incarnation's open recovered */
	struct pt_ring_desc ring[PT_RING_DESCS];
};

/* ---- shared replica control block (in /dev/shm) ---------------------- */

/*
 * /dev/shm/pagetrack-NAME holds this block only; each copy of the region is
 * a file of its own, /dev/shm/pagetrack-NAME.<generation> (16 hex digits),
 * exactly npages * page_size bytes, the region at copy_epoch[i].  A
 * generation names one file for ever: a copy replaced while a stuck reader
 * maps it gets a new generation, so a name read here never refers to other
 * bytes than the ones it named (the protocol is in shared.c).
 *
 * Version 2: version 1 held both copies in this file at copy_offset[].
 */
#define PT_SHARED_VERSION	2
#define PT_SHARED_READERS	126

struct pt_shared_reader {
	int32_t pid;			/* 0: free */
	uint32_t reserved;
	uint64_t pin;			/* generation of the copy it maps, 0: none */
	uint64_t pin_ms;		/* CLOCK_MONOTONIC ms when it pinned */
	uint64_t epoch;			/* the epoch it shows */
};

struct pt_shared_ctl {
	char magic[8];
	uint32_t version;
	uint32_t size;			/* sizeof(struct pt_shared_ctl) */
	uint64_t history_id;
	uint64_t npages;
	uint64_t page_size;
	uint32_t current;		/* copy readers should move to: 0 or 1 */
	uint32_t futex;			/* bumped at each switch */
	uint64_t copy_gen[2];		/* the file of each copy; < next_gen, distinct */
	uint64_t copy_epoch[2];
	uint64_t copy_chain[2];
	uint32_t copy_need_image[2];	/* an image catch-up was interrupted */
	uint64_t next_gen;		/* the generation the next copy file gets */
	uint64_t building_gen;		/* a copy file being made, 0: none */
	uint64_t switched_ms;		/* CLOCK_MONOTONIC ms of the last switch */
	uint64_t updater_pid;
	struct pt_shared_reader readers[PT_SHARED_READERS];
};

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
struct pt_region_id;
int pt_shared_ctl_check(const struct pt_shared_ctl *ctl, const struct pt_region_id *id,
			uint64_t file_size);

/* ---- helpers ---------------------------------------------------------- */

/* What every file of one region must agree on. */
struct pt_region_id {
	uint64_t history_id;
	uint64_t npages;
	uint32_t page_size;
	unsigned int page_shift;
};

static inline uint64_t pt_round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static inline uint64_t pt_record_head_length(uint64_t page_count, uint64_t page_size)
{
	return pt_round_up(sizeof(struct pt_record_header) + page_count * 8, page_size);
}

static inline uint64_t pt_record_length(uint64_t page_count, uint64_t page_size)
{
	return pt_record_head_length(page_count, page_size) + page_count * page_size;
}

uint64_t pt_chain_seed(uint64_t history_id);
uint64_t pt_checksum(const void *p, size_t len);	/* XXH3-64 */
uint64_t pt_header_checksum(const void *p, size_t len, size_t checksum_offset);

/* ---- io.c: every write to a region's files goes through pt_io -------- */

/*
 * The file operations the writer and the checkpoint use.  Each returns >= 0
 * or -errno.  Tests replace them (pt_io_set) to record a write trace for the
 * storage crash simulator or to inject ENOSPC/EIO; reads go straight to the
 * kernel.
 */
struct pt_io_ops {
	int (*openat)(int dirfd, const char *name, int flags, mode_t mode);
	ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
	int (*fdatasync)(int fd);
	int (*fsync)(int fd);
	int (*ftruncate)(int fd, off_t len);
	int (*renameat)(int dirfd, const char *from, const char *to);
	int (*unlinkat)(int dirfd, const char *name);
	int (*close)(int fd);
};

extern const struct pt_io_ops *pt_io;
extern const struct pt_io_ops pt_io_system;
void pt_io_set(const struct pt_io_ops *ops);	/* NULL: the system calls */

/* pwrite all of buf (retrying short writes and EINTR); 0 or -errno. */
int pt_write_full(int fd, const void *buf, size_t len, off_t off);
/* pread len bytes; returns bytes read (short at EOF) or -errno. */
ssize_t pt_read_full(int fd, void *buf, size_t len, off_t off);
/* Create name in dirfd: O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600. */
int pt_create_file(int dirfd, const char *name, int flags);
/* Directory checks for a data directory: a directory, ours, not writable
 * by others.  Returns 0 or -errno with a pt_log message. */
int pt_check_dir(int dirfd, const char *dir);
/*
 * Open name in dirfd (flags: O_RDONLY or O_RDWR, plus O_CREAT... not
 * allowed: use pt_create_file) as every reader of a region's files must:
 * O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, so that a FIFO or a device put in
 * its place cannot hang the caller, then fstat: only a regular file owned
 * by owner (the directory's owner) with no group or other write bit.
 * Writable opens go through pt_io.  Returns the descriptor, or -errno:
 * -ENOENT, -EMEDIUMTYPE (not a regular file), -EPERM (owner or mode).
 */
int pt_open_file(int dirfd, const char *name, int flags, uid_t owner);
/* The owner every file in dirfd must have (the directory's), or -errno. */
int pt_dir_owner(int dirfd, uid_t *owner);

/* ---- log.c ------------------------------------------------------------ */

struct pt_segment_info {
	uint64_t seq;
	uint64_t first_epoch;
	uint64_t size;
	int bad;		/* header unreadable: -errno */
};

/* The segments in dirfd ascending by seq; *out is malloc()ed. */
int pt_segments_list(int dirfd, const struct pt_region_id *id, struct pt_segment_info **out,
		     size_t *nr);
void pt_segment_name(char *buf, size_t len, uint64_t seq);
/* Create a segment file and write its header; returns the fd or -errno. */
int pt_segment_create(int dirfd, const struct pt_region_id *id, uint64_t seq,
		      uint64_t first_epoch);

/* Fill in the header fields of a record staged in buf (not the checksums,
 * so that it can be published from staging memory first), then seal it. */
void pt_record_fill(void *buf, const struct pt_region_id *id, uint64_t epoch,
		    uint32_t page_count, uint64_t prev);
void pt_record_seal(void *buf);


/* A record read and checked. */
struct pt_record {
	const struct pt_record_header *hdr;
	const uint64_t *index;
	const unsigned char *data;	/* page i at data + i * page_size */
	uint64_t seq;			/* where it was found */
	uint64_t offset;
};

/*
 * Reads records in epoch order across segments, checking each completely
 * before handing it out.  Used by recovery, checkpoint, replicas, verify
 * and inspect.
 */
struct pt_log_reader {
	int dirfd;
	struct pt_region_id id;
	int fd;				/* current segment, -1: none */
	uint64_t seq;
	uint64_t offset;
	uint64_t next_epoch;		/* the epoch wanted next */
	uint64_t chain;			/* header checksum of record next_epoch - 1 */
	unsigned char *buf;
	size_t cap;
	bool quiet;			/* replicas: no pt_log for a missing tail */
	bool any_chain;			/* take the first record whatever its prev */
	bool dropped;			/* the last call returned -ESTALE: not retained */
	int last_error;			/* why the last call stopped */
	uint64_t error_seq, error_offset;
	/* the segment list at the last look */
	struct pt_segment_info *segs;
	size_t nsegs;
};

void pt_log_reader_init(struct pt_log_reader *r, int dirfd, const struct pt_region_id *id,
			uint64_t next_epoch, uint64_t chain);
void pt_log_reader_free(struct pt_log_reader *r);
/*
 * The record of epoch r->next_epoch, if its epoch is <= limit.  Returns 1
 * (rec filled; next_epoch and chain advance), 0 when the log ends cleanly
 * before it, -ESTALE with r->dropped set when it is no longer retained
 * (dropped by a checkpoint: catch up from the image), -ESTALE without it
 * when the record does not continue the chain (another path of history),
 * or the error of the torn or corrupt record where reading stops
 * (r->error_seq/offset say where).
 */
int pt_log_next(struct pt_log_reader *r, uint64_t limit, struct pt_record *rec);
/*
 * Read and check the record at (fd, offset) of segment seq; returns its
 * length (> 0), 0 at a clean end of file, or -errno.  Fills rec.
 */
int64_t pt_record_read(int fd, uint64_t seq, uint64_t offset, const struct pt_region_id *id,
		       unsigned char **buf, size_t *cap, struct pt_record *rec);
const char *pt_log_strerror(int err);
/* The header checksum of the record of epoch: 0, -ENOENT (not in the log),
 * or the error that kept it from being read. */
int pt_log_record_checksum(int dirfd, const struct pt_region_id *id, uint64_t epoch, uint64_t *sum);

/* ---- image.c ---------------------------------------------------------- */

struct pt_image {
	int fd;
	struct pt_region_id id;
	struct pt_image_header hdr;	/* the slot in use */
	int slot;
	bool writable;			/* opened through pt_io, for the checkpoint */
	struct pt_image_entry *entries;	/* writer/checkpoint only, mmap()ed */
	size_t entries_len;
};

int pt_image_create(int dirfd, const struct pt_region_id *id);
/* Open and read the newest good header slot (entries not loaded). */
int pt_image_open(struct pt_image *img, int dirfd, bool writable);
void pt_image_close(struct pt_image *img);
int pt_image_load_entries(struct pt_image *img);

/*
 * Copy into mem (npages * page_size) every page whose generation is above
 * have_epoch.  Pages whose checksum or entry fails are copied anyway and
 * flagged in suspect (a bitmap) with their count returned in *nsuspect: a
 * checkpoint in flight leaves such pages, and the log records after the
 * image's epoch rewrite every one of them; a suspect page that no record
 * covers is corruption.  *copied counts the pages copied.
 */
int pt_image_copy_newer(struct pt_image *img, uint64_t have_epoch, void *mem,
			uint64_t *suspect, uint64_t *nsuspect, uint64_t *copied);

/* Apply the records after the image's epoch up to target, fsync, advance
 * the header.  Returns the image's epoch afterwards or -errno. */
int64_t pt_image_checkpoint(struct pt_image *img, int dirfd, uint64_t target);

/*
 * Check every page checksum (entries loaded first); report each bad page
 * through report().  A checkpoint running meanwhile writes pages, then
 * entries, then the header: what it has half written reads as bad here, so
 * a caller re-checks each reported page (pt_image_verify_page, after a
 * fresh pt_image_open) before calling it corrupt.
 */
int pt_image_verify(struct pt_image *img,
		    void (*report)(void *arg, uint64_t page, const char *msg), void *arg,
		    uint64_t *bad);
/* Check page p (page: a page-sized buffer): 0 good, 1 bad (why in msg), -errno. */
int pt_image_verify_page(struct pt_image *img, uint64_t p, unsigned char *page, char *msg,
			 size_t msg_len);

/* ---- region.c / replica.c shared helpers ------------------------------ */

int pt_state_map_ro(int dirfd, const struct pt_state **st, int *fd);
/* Read and check the state block into *copy: 0, -ENOENT (no block yet, or
 * an empty or all-zero one: nothing to go by), or the error of
 * pt_state_check(). */
int pt_state_read(int dirfd, const struct pt_region_id *id, struct pt_state *copy);
/*
 * Check a state block copied out of its file (file_size bytes long) against
 * the region it should describe (id; NULL: any): 0, -ENODATA (short),
 * -EBADMSG (magic, or numbers that cannot be: epochs out of order, a ring
 * descriptor outside the staging memory), -EPROTO, -EXDEV, -ESTALE (another
 * history or size).  Cheap: readers call it on every copy they trust.
 */
int pt_state_check(const struct pt_state *st, uint64_t file_size, const struct pt_region_id *id);

/*
 * How far a data directory reaches, read without changing anything: the
 * image's epoch, then every intact record after it in chain order.  The
 * state block's durable epoch is what the writer had made durable; an
 * image plus log that reach less than that lost durable epochs.
 */
struct pt_dir_reach {
	uint64_t image_epoch;
	uint64_t reached;	/* newest epoch the image plus intact records reach */
	uint64_t reached_chain;	/* header checksum of record `reached` */
	uint64_t durable;	/* the state block's durable epoch (0: no state) */
	bool state_ok;		/* a state block of this history was read */
	int state_error;	/* why a state block present could not be
				 * trusted (-EBADMSG...; then -ENOTRECOVERABLE:
				 * what was durable is unknown) */
	int log_error;		/* why the log stops (0: a clean end) */
	uint64_t error_seq, error_offset;
	uint64_t foreign;	/* segments (or a state block) of another history */
};
/*
 * Fill *out for the directory whose image img is open.  Returns 0 when the
 * durable epochs are reached, -ENOTRECOVERABLE when not (out says how far),
 * -ESTALE when a segment or the state block belongs to another history than
 * the image, or another -errno when it could not look.
 */
int pt_dir_reach(int dirfd, const struct pt_image *img, struct pt_dir_reach *out);
/* The same judgement for a caller that walked the log itself (recovery):
 * out->reached set, the rest filled in here. */
int pt_reach_judge(int dirfd, const struct pt_region_id *id, struct pt_dir_reach *out);
void pt_futex_wake(uint32_t *addr);
int pt_futex_wait(const uint32_t *addr, uint32_t val, int timeout_ms);

/*
 * A full memory fence, for the staging seqlock.  GCC's TSan refuses
 * atomic_thread_fence; under it a sequentially consistent read-modify-write
 * of a dummy gives the same ordering on the machines it runs on.
 */
static inline void pt_fence(void)
{
#if defined(__SANITIZE_THREAD__)
	static uint32_t dummy;

	__atomic_fetch_add(&dummy, 0, __ATOMIC_SEQ_CST);
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline void pt_bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

static inline bool pt_bit_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static inline bool pt_bit_clear(uint64_t *bm, uint64_t i)
{
	bool was = pt_bit_test(bm, i);

	bm[i / 64] &= ~(1ull << (i % 64));
	return was;
}

#endif /* PT_FORMAT_H */
