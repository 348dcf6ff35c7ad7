/* SPDX-License-Identifier: MIT */
/*
 * format.h - the replication layer's on-disk and shared-memory formats,
 * and nothing else: every structure a region's files and /dev/shm hold,
 * their magics and versions, and the checksums that seal them.  The code
 * that reads and writes them has its own headers: io.h (the file layer),
 * pagelog.h (segments and records), image.h, state.h (the state block and
 * a directory's reach), replica.h (shared replicas' control block).
 *
 * A region's data directory holds:
 *   lock              flock()ed by the one writer (empty)
 *   state             a small shared-memory status block, mmap()ed by the
 *                     writer read-write and by replicas read-only; recovery
 *                     trusts only its durable epoch (state.c), fsynced once
 *                     per open
 *   image             full copy at the checkpointed epoch: two header slots,
 *                     the page table (generation + checksum per page), data
 *   log-<seq>.seg     segments of records, seq in hex, ascending
 *   orphan-<seq>.seg  segments set aside by recovery (after a corrupt record)
 *   spare-<seq>.seg   dropped segments kept for the next segment to recycle
 *   replicated        what a publisher's stream stored (PT_LEVEL_REPLICATED)
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
#include <stddef.h>
#include <sys/types.h>


/*
 * 3: a record's head holds each page's checksum, and its payload checksum
 * covers the head only (2 hashed the whole record, so a reader had to read
 * every page of it to check any).  2: every image table entry is
 * checksummed (1 let zeros mean "never written"); shared replica control
 * blocks of another layout.  Older directories are refused with -EPROTO
 * (docs/replication.md says how to carry their content over).
 */
#define PT_FORMAT_VERSION	3

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
 *   [header | uint64_t index[page_count] | uint64_t sums[page_count] |
 *    zeros to a page boundary]  (the head)
 *   [page data, page_count pages, in index order]
 * length = head_length(page_count) + page_count * page_size.
 * index holds the page numbers, ascending; sums[i] is the XXH3-64 of page
 * i's data, taken once, when the record is sealed.  payload_checksum is the
 * XXH3-64 of the head after the header (index, sums and the zeros): the
 * pages are covered through their sums, so a reader checks a record's head
 * without reading its pages, and each page it does read against its sum
 * alone (the checkpoint reads only the newest copy of each page).
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


/* ---- replicated (written by a publisher, read by the writer) --------- */

/*
 * The file `replicated` in a data directory: the newest epoch a publisher's
 * stream acknowledged.  The publisher stores epoch (release), then bumps
 * futex and wakes; the writer's PT_LEVEL_REPLICATED waits load epoch and
 * wait on futex.  Only forward; flags PT_REPLICATED_DEPOSED is sticky until
 * a new term is recorded (or the file is recreated).
 *
 * term and term_holder: the writer's term when the directory was promoted
 * from a standby (libpagetrack-net's failover), 0 for a region that never
 * was; only forward.  A file written before they existed has zeros there.
 */
#define PT_REPLICATED_MAGIC	"PTREPLD"
#define PT_REPLICATED_NAME	"replicated"
#define PT_REPLICATED_DEPOSED	1u

struct pt_replicated_block {
	char magic[8];
	uint32_t version;
	uint32_t futex;
	uint64_t epoch;
	uint64_t flags;
	uint64_t publisher_pid;
	uint64_t term;
	uint64_t term_holder;
};

/* ---- what every file of a region agrees on, and checksums ------------ */

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

/* Bytes of index and sums a record of page_count pages holds. */
#define PT_RECORD_ENTRY_BYTES	(2 * sizeof(uint64_t))

static inline uint64_t pt_record_head_length(uint64_t page_count, uint64_t page_size)
{
	return pt_round_up(sizeof(struct pt_record_header) + page_count * PT_RECORD_ENTRY_BYTES,
			   page_size);
}

static inline uint64_t pt_record_length(uint64_t page_count, uint64_t page_size)
{
	return pt_record_head_length(page_count, page_size) + page_count * page_size;
}

uint64_t pt_chain_seed(uint64_t history_id);
uint64_t pt_checksum(const void *p, size_t len);	/* XXH3-64 */
uint64_t pt_header_checksum(const void *p, size_t len, size_t checksum_offset);

#endif /* PT_FORMAT_H */
