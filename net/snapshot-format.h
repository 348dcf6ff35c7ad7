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
#include "wire.h"

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

/* The largest value of a region of (npages, page_size), its MAC included:
 * a buffer that holds any of its encoded values. */
size_t snap_value_max(uint64_t npages, uint32_t page_size);

/*
 * Every value is written in version 1 without a key (k->len 0) and in
 * version 2 with one: the same bytes (version field 2), then an
 * HMAC-SHA256 with the key of all of them (WIRE_MAC_SIZE bytes).  The
 * encoders return the value's length, MAC included, or -ENOMEM (the
 * crypto library failed).  A decoder checks a value's version first
 * (-EPROTO for another), then its length and checksum (-EBADMSG), then
 * its MAC against k as the wire's are (wire_verify: -ENOKEY, a MAC and no
 * key; -EKEYREJECTED, no MAC and a key, or a MAC k does not verify), and
 * only then reads a field.  Each value names what it is of (its magic,
 * the history, a table's first page, a page's index, the manifest's epoch
 * and a page's generation) and the decoders check these against the key
 * read and the manifest, so the MAC binds a value to its key and its
 * snapshot.  Every error comes with why, which names the key.
 */

/* Encode the manifest m (its table_sum filled in) at out. */
long snap_manifest_encode(unsigned char *out, const struct snap_manifest *m,
			  const struct wire_key *k);

/*
 * Check and decode a manifest value: as above, and a region the decoders
 * can hold.  m->table_sum is allocated (free() it, also after an error).
 * 0, -EPROTO, -EBADMSG, -ENOKEY, -EKEYREJECTED or -ENOMEM.
 */
int snap_manifest_decode(const unsigned char *val, size_t len, const struct wire_key *k,
			 struct snap_manifest *m, char *why, size_t why_len);

/* Encode table t of m, from the versions of every page v. */
long snap_table_encode(unsigned char *out, const struct snap_manifest *m, uint32_t t,
		       const struct pt_page_version *v, const struct wire_key *k);

/*
 * Check table t's value against the manifest (first the checksum the
 * manifest names: -EAGAIN when it is not that table, being rewritten or
 * damaged) and decode it into v (the versions of every page of m).
 * 0, -EAGAIN, -EPROTO, -EBADMSG, -ENOKEY or -EKEYREJECTED.
 */
int snap_table_decode(const unsigned char *val, size_t len, const struct snap_manifest *m,
		      uint32_t t, const struct wire_key *k, struct pt_page_version *v, char *why,
		      size_t why_len);

/*
 * Encode page `index` of history (its version v, its bytes page) at out
 * (snap_value_max bytes): a wire entry against a zero page.  zero, scratch:
 * page_size bytes.
 */
long snap_page_encode(unsigned char *out, uint64_t history, uint64_t index,
		      const struct pt_page_version *v, const unsigned char *page, uint32_t page_size,
		      const unsigned char *zero, unsigned char *scratch, const struct wire_key *k);

/*
 * Check page `index`'s value against m and the version v its table gives,
 * and decode it into out (a page).  zero: a zero page.  0; 1 when the value
 * is newer than the table (the publisher moved on); -EPROTO, -EBADMSG,
 * -ENOKEY or -EKEYREJECTED.
 */
int snap_page_decode(const unsigned char *val, size_t len, const struct snap_manifest *m,
		     uint64_t index, const struct pt_page_version *v, const struct wire_key *k,
		     unsigned char *out, const unsigned char *zero, char *why, size_t why_len);

/*
 * The encoders' last step, for a value whose fields are written, of len
 * bytes without its MAC: its checksum (the manifest's last 8 bytes; a page
 * value's length and checksum fields; a table has none of its own) and,
 * with a key, its MAC after it.  The new length, or -ENOMEM.  The fuzz
 * targets call them to let changed values past the checksums.
 */
long snap_manifest_seal(unsigned char *val, size_t len, const struct wire_key *k);
long snap_table_seal(unsigned char *val, size_t len, const struct wire_key *k);
long snap_page_seal(unsigned char *val, size_t len, const struct wire_key *k);

#endif /* PT_NET_SNAPSHOT_FORMAT_H */
