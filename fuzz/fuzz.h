/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what the fuzz targets (and the seed maker) share: the region
 * every input is decoded against, the flags byte that opens each input, one
 * temporary directory per process, and the checksum fixing that lets the
 * fuzzer past the checksums to the checks behind them.
 *
 * Every input starts with a flags byte:
 *   FZ_FIX_SUMS   recompute the checksums of the structures the input holds
 *                 before decoding, so that lengths, counts, epochs and
 *                 indices are tried by the decoder's own checks (a random
 *                 change otherwise stops at the checksum, which is right but
 *                 teaches nothing);
 *   FZ_FIX_ID     also write the expected magic, version, page size and
 *                 history id into the headers;
 *   FZ_BIG_PAGES  segments and records use the machine's page size instead
 *                 of 512 bytes (small pages keep the inputs and checksums
 *                 small; the log code takes its page size from the id);
 *   FZ_EXTEND     files are extended with zeros to the size their header
 *                 claims (so seeds need not carry a file's zero tail).
 */
#ifndef PT_FUZZ_H
#define PT_FUZZ_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "format.h"
#include "io.h"

#define FZ_FIX_SUMS	0x01
#define FZ_FIX_ID	0x02
#define FZ_BIG_PAGES	0x04
#define FZ_EXTEND	0x08

#define FZ_HISTORY	0x70616765747261ull	/* any fixed value */
#define FZ_NPAGES	4
#define FZ_SMALL_PAGE	512
/* Files are never made larger than this (the rss limit is the fuzzer's). */
#define FZ_MAX_FILE	(4u << 20)

static inline struct pt_region_id fz_id(uint8_t flags, uint32_t page_size)
{
	struct pt_region_id id = {
		.history_id = FZ_HISTORY,
		.npages = FZ_NPAGES,
	};

	if (!page_size)
		page_size = flags & FZ_BIG_PAGES ? (uint32_t)sysconf(_SC_PAGESIZE) : FZ_SMALL_PAGE;
	id.page_size = page_size;
	id.page_shift = (unsigned int)__builtin_ctz(page_size);
	return id;
}

/*
 * The input as a fixed-size block of shared memory or a state file: the
 * flags byte taken off (*flags, and the region *id it selects), the rest
 * copied into a zeroed buffer of at least min bytes (free() it).  NULL
 * when the input is empty or larger than 64 KiB.
 */
static inline void *fz_block(const uint8_t *data, size_t *size, size_t min, uint8_t *flags,
			     struct pt_region_id *id)
{
	void *b;

	if (!*size || *size > 65536)
		return NULL;
	*flags = data[0];
	(*size)--;
	*id = fz_id(*flags, (uint32_t)sysconf(_SC_PAGESIZE));
	b = calloc(1, min > *size ? min : *size);
	if (!b)
		abort();
	memcpy(b, data + 1, *size);
	return b;
}

static char fz_dir_path[64];
static int fz_dirfd = -1;

static inline void fz_dir_remove(void)
{
	char cmd[128];

	if (!fz_dir_path[0])
		return;
	/* A flat directory of our own files. */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fz_dir_path);
	if (system(cmd))
		fprintf(stderr, "fuzz: could not remove %s\n", fz_dir_path);
}

/* The process's one temporary directory, made at the first call. */
static inline int fz_dir(void)
{
	if (fz_dirfd >= 0)
		return fz_dirfd;
	snprintf(fz_dir_path, sizeof(fz_dir_path), "/tmp/pagetrack-fuzz-XXXXXX");
	if (!mkdtemp(fz_dir_path)) {
		perror("fuzz: mkdtemp");
		abort();
	}
	fz_dirfd = open(fz_dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fz_dirfd < 0) {
		perror("fuzz: open temporary directory");
		abort();
	}
	atexit(fz_dir_remove);
	return fz_dirfd;
}

/* Write name in dirfd afresh: data at offset off, then zeros up to size
 * (when size is larger).  Aborts on a failure: the harness is broken. */
static inline void fz_write_file(int dirfd, const char *name, const void *data, size_t len,
				 off_t off, uint64_t size)
{
	int fd = openat(dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);

	if (fd < 0) {
		perror("fuzz: create");
		abort();
	}
	if (len && pt_write_full(fd, data, len, off)) {
		perror("fuzz: write");
		abort();
	}
	if (size > (uint64_t)off + len && size <= FZ_MAX_FILE && ftruncate(fd, (off_t)size)) {
		perror("fuzz: ftruncate");
		abort();
	}
	close(fd);
}

/*
 * Make the record header at buf (len bytes from there) pass its checks
 * where it can: identity fields (fix_id), then the page sums and the
 * payload checksum of the head when the claimed length fits in len, then
 * the header checksum; with fix_id, prev
 * continues *chain, which becomes this record's checksum.  Returns the
 * record's claimed length, or 0 when no header fits.
 */
static inline uint64_t fz_fix_record(unsigned char *buf, size_t len, const struct pt_region_id *id,
				     bool fix_id, uint64_t *chain)
{
	struct pt_record_header h;

	if (len < sizeof(h))
		return 0;
	memcpy(&h, buf, sizeof(h));
	if (fix_id) {
		h.magic = PT_RECORD_MAGIC;
		h.version = PT_FORMAT_VERSION;
		h.header_size = sizeof(h);
		h.page_size = id->page_size;
		h.history_id = id->history_id;
		if (h.page_count <= id->npages)
			h.length = pt_record_length(h.page_count, id->page_size);
		h.prev = *chain;
	}
	if (h.length >= sizeof(h) && h.length <= len && h.page_size && h.page_count <= id->npages &&
	    pt_record_head_length(h.page_count, h.page_size) <= h.length) {
		uint64_t head = pt_record_head_length(h.page_count, h.page_size);
		unsigned char *sums = buf + sizeof(h) + (size_t)h.page_count * sizeof(uint64_t);

		/* The sums of the pages as far as the record holds them, then
		 * the head's checksum (memcpy: a record may start anywhere). */
		for (uint32_t i = 0; i < h.page_count &&
		     head + (uint64_t)(i + 1) * h.page_size <= h.length; i++) {
			uint64_t sum = XXH3_64bits(buf + head + (size_t)i * h.page_size, h.page_size);

			memcpy(sums + (size_t)i * sizeof(sum), &sum, sizeof(sum));
		}
		h.payload_checksum = XXH3_64bits(buf + sizeof(h), head - sizeof(h));
	}
	h.header_checksum = 0;
	h.header_checksum = XXH3_64bits(&h, sizeof(h));
	memcpy(buf, &h, sizeof(h));
	*chain = h.header_checksum;
	return h.length;
}

/* Fix each record of a record area in turn, as a reader would walk it. */
static inline void fz_fix_records(unsigned char *buf, size_t len, const struct pt_region_id *id,
				  bool fix_id)
{
	uint64_t chain = pt_chain_seed(id->history_id);
	size_t off = 0;

	while (off + sizeof(struct pt_record_header) <= len) {
		uint64_t l = fz_fix_record(buf + off, len - off, id, fix_id, &chain);

		if (!l || l > len - off)
			break;
		off += l;
	}
}

#endif /* PT_FUZZ_H */
