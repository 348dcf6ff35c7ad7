/* SPDX-License-Identifier: MIT */
/*
 * snapshot-format.h - the values of the snapshot's bucket (docs/network.md,
 * "Snapshot"): the manifest, the page tables and the page values, both
 * halves (encoding and checking) in snapshot-format.c.  Pure functions of
 * their buffers: snapshot.c moves the values to and from the bucket, the
 * fuzz targets call the checks on bytes of their own.
 */
#ifndef PT_NET_SNAPSHOT_FORMAT_H
#define PT_NET_SNAPSHOT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "pagetrack.h"

#define SNAP_TABLE_PAGES	8192u		/* pages a table value describes */

/* A manifest, decoded (or to be encoded). */
struct snap_manifest {
	uint64_t history, epoch, chain, npages;
	uint32_t page_size, tables;
	uint64_t written_ns;		/* CLOCK_REALTIME of the update (not checked) */
	uint64_t *table_sum;		/* tables entries (malloc()ed by the decoder) */
};

/* Tables of a region of npages, and the pages table t describes. */
uint32_t snap_tables(uint64_t npages);
uint32_t snap_table_count(const struct snap_manifest *m, uint32_t t);

/* The largest value of a region of (npages, page_size): a buffer that
 * holds any of its encoded values. */
size_t snap_value_max(uint64_t npages, uint32_t page_size);

/* Encode the manifest m (its table_sum filled in) at out; its length. */
size_t snap_manifest_encode(unsigned char *out, const struct snap_manifest *m);

/*
 * Check and decode a manifest value: magic, version, length, checksum, and
 * a region the decoders can hold.  m->table_sum is allocated (free() it,
 * also after an error).  0, -EBADMSG or -ENOMEM, with why.
 */
int snap_manifest_decode(const unsigned char *val, size_t len, struct snap_manifest *m, char *why,
			 size_t why_len);

/* Encode table t of m, from the versions of every page v; its length. */
size_t snap_table_encode(unsigned char *out, const struct snap_manifest *m, uint32_t t,
			 const struct pt_page_version *v);

/*
 * Check table t's value against the manifest (its checksum first: then
 * every field is the publisher's) and decode it into v (the versions of
 * every page of m).  0, -EAGAIN (not the table the manifest names: being
 * rewritten, or damaged), -EBADMSG, with why.
 */
int snap_table_decode(const unsigned char *val, size_t len, const struct snap_manifest *m,
		      uint32_t t, struct pt_page_version *v, char *why, size_t why_len);

/*
 * Encode page `index` of history (its version v, its bytes page) at out
 * (snap_value_max bytes): a wire entry against a zero page.  zero, scratch:
 * page_size bytes.  Its length.
 */
size_t snap_page_encode(unsigned char *out, uint64_t history, uint64_t index,
			const struct pt_page_version *v, const unsigned char *page, uint32_t page_size,
			const unsigned char *zero, unsigned char *scratch);

/*
 * Check page `index`'s value against m and the version v its table gives,
 * and decode it into out (a page).  zero: a zero page.  0; 1 when the value
 * is newer than the table (the publisher moved on); -EBADMSG, with why.
 */
int snap_page_decode(const unsigned char *val, size_t len, const struct snap_manifest *m,
		     uint64_t index, const struct pt_page_version *v, unsigned char *out,
		     const unsigned char *zero, char *why, size_t why_len);

#endif /* PT_NET_SNAPSHOT_FORMAT_H */
