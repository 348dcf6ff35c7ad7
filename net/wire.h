/* SPDX-License-Identifier: MIT */
/*
 * wire.h - the stream's message format (docs/network.md, "Wire format"):
 * a fixed little-endian header and a body of page entries.  Both halves,
 * writing and checking, live in wire.c so the format is in one place.
 */
#ifndef PT_NET_WIRE_H
#define PT_NET_WIRE_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WIRE_MAGIC		"PTNET01"	/* 8 bytes with its NUL */
#define WIRE_VERSION		1		/* a header and a body */
#define WIRE_VERSION_MAC	2		/* the same and an HMAC-SHA256 of both */
#define WIRE_MAC_SIZE		32
#define WIRE_KEY_MIN		16
#define WIRE_KEY_MAX		1024
#define WIRE_HEADER_SIZE	128
#define WIRE_FLAG_LAST		1u		/* the epoch's last part */
#define WIRE_ENTRY_SIZE		16		/* u64 index, u32 encoding, u32 length */

enum wire_encoding {
	WIRE_RAW = 0,		/* the page's new content */
	WIRE_LZ4_XOR = 1,	/* LZ4 block of the page XOR its previous content */
	WIRE_UNCHANGED = 2,	/* XOR all zero: no bytes */
};

/* A message header, decoded (host order). */
struct wire_header {
	uint16_t version;	/* WIRE_VERSION, or WIRE_VERSION_MAC (0 when writing: 1) */
	uint16_t flags;
	uint32_t header_size;
	uint64_t history_id;
	uint64_t epoch;
	uint64_t prev_chain;
	uint64_t chain;
	uint64_t payload_checksum;
	uint64_t npages;
	uint32_t page_size;
	uint32_t page_count;	/* pages of the whole epoch */
	uint32_t part;
	uint32_t parts;
	uint32_t first;		/* index in the epoch's page list of this part's first page */
	uint32_t count;		/* pages in this part */
	uint64_t body_length;
	uint64_t body_checksum;
	uint64_t sent_ns;	/* the publisher's CLOCK_REALTIME when it encoded the epoch */
};

/* Write h (body_length and body_checksum included) as WIRE_HEADER_SIZE bytes. */
void wire_header_put(unsigned char *out, const struct wire_header *h);

/* An HMAC key, the handle's own copy (zeroed by wire_key_clear). */
struct wire_key {
	size_t len;		/* 0: none */
	unsigned char bytes[WIRE_KEY_MAX];
};

/* Copy the options' key (its length checked by net_opts_copy). */
void wire_key_set(struct wire_key *k, const void *bytes, size_t len);
void wire_key_clear(struct wire_key *k);

/*
 * A message of len bytes whose header says WIRE_VERSION_MAC: write its
 * HMAC-SHA256 with key k at msg + len (WIRE_MAC_SIZE bytes of room).
 * Returns the message's new length, or -ENOMEM (the crypto library failed).
 */
long wire_seal(unsigned char *msg, size_t len, const struct wire_key *k);

/*
 * The authentication of a message wire_check() passed: 0 when it has a
 * MAC that k verifies or when it has none and there is no key; else
 * -EKEYREJECTED (no MAC and a key, or a MAC k does not verify) or -ENOKEY
 * (a MAC and no key), with why.
 */
int wire_authenticate(const void *msg, size_t len, const struct wire_header *h,
		      const struct wire_key *k, char *why, size_t why_len);

/*
 * Decode and check a whole message: length, magic, version (1 or 2), header
 * checksum, the header's own consistency (part < parts, flags, first +
 * count <= page_count, page_count <= npages), body length and checksum.
 * Returns 0, -EBADMSG or -EPROTO (another version) with why.
 */
int wire_check(const void *msg, size_t len, struct wire_header *h, char *why, size_t why_len);

/*
 * Decode a checked message's body into the new content of its pages:
 * pages[first .. first+count) and data (count pages) of the epoch buffer.
 * old(index) is the content before the epoch.  Checks each entry: indices
 * ascending (also against prev_index, the part before's last, UINT64_MAX
 * for none) and < npages, encodings, lengths, and LZ4 giving exactly one
 * page.  Returns 0 or -EBADMSG with why.
 */
typedef const unsigned char *(*wire_old_fn)(uint64_t index, void *arg);
int wire_decode(const struct wire_header *h, const unsigned char *body, uint64_t prev_index,
		uint64_t *pages, unsigned char *data, wire_old_fn old, void *arg, char *why,
		size_t why_len);

/*
 * Encode page `index` (new content `now`, previous `before`) as an entry at
 * out (room for WIRE_ENTRY_SIZE + page_size bytes).  Returns the entry's
 * length and its encoding in *enc.  scratch: page_size bytes.
 */
size_t wire_encode_page(unsigned char *out, uint64_t index, const unsigned char *now,
			const unsigned char *before, size_t page_size, unsigned char *scratch,
			enum wire_encoding *enc);

uint64_t wire_checksum(const void *p, size_t len);

/* Little-endian fields, for this format and the snapshot's (snapshot.c). */
static inline void wire_put16(unsigned char *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void wire_put32(unsigned char *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void wire_put64(unsigned char *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline uint16_t wire_get16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t wire_get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t wire_get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

#endif /* PT_NET_WIRE_H */
