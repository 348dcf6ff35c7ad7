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
/*
 * Versions: 1 an epoch message, a header and a body; 2 the same and an
 * HMAC-SHA256 of both; 3 a term marker (flag WIRE_FLAG_TERM, failover); 4
 * a term marker and its HMAC.  Markers have versions of their own so that
 * a follower of a release that knows none refuses them by version
 * (-EPROTO) instead of misreading them; epoch messages stay 1 (2 with a
 * key), so a stream that never failed over stays readable by older
 * followers.
 */
#define WIRE_VERSION		1
#define WIRE_VERSION_MAC	2
#define WIRE_VERSION_TERM	3
#define WIRE_VERSION_TERM_MAC	4
#define WIRE_VERSION_MAX	4		/* the newest this library reads */
#define WIRE_MAC_SIZE		32
#define WIRE_KEY_MIN		16
#define WIRE_KEY_MAX		1024

static inline bool wire_has_mac(uint16_t version)
{
	return version == WIRE_VERSION_MAC || version == WIRE_VERSION_TERM_MAC;
}
#define WIRE_HEADER_SIZE	128
#define WIRE_FLAG_LAST		1u		/* the epoch's last part */
#define WIRE_FLAG_TERM		2u		/* a term marker (versions 3 and 4) */
#define WIRE_TERM_BODY		64		/* a term marker's body */
#define WIRE_HOST_MAX		32		/* its host name field, NUL padded */
#define WIRE_ENTRY_SIZE		16		/* u64 index, u32 encoding, u32 length */
#define STREAM_NAME_MAX		63
#define WIRE_PAGE_MIN		512		/* page sizes the decoders take */
#define WIRE_PAGE_MAX		(1u << 24)
#define WIRE_REGION_MAX		(1ull << 40)	/* bytes */

enum wire_encoding {
	WIRE_RAW = 0,		/* the page's new content */
	WIRE_LZ4_XOR = 1,	/* LZ4 block of the page XOR its previous content */
	WIRE_UNCHANGED = 2,	/* XOR all zero: no bytes */
};

/*
 * A term marker's body (docs/network.md, "Term markers"): the term the
 * stream enters, the holder id naming that promotion, the stream sequence
 * it was appended after (its own is after_seq + 1: the fence), the
 * promoting host's name (for messages), and reserved zeros.
 */
struct wire_term {
	uint64_t term;
	uint64_t holder;
	uint64_t after_seq;
	char host[WIRE_HOST_MAX];
};

/* A message header, decoded (host order). */
struct wire_header {
	uint16_t version;	/* WIRE_VERSION* (0 when writing: 1) */
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
	/* A term marker (flags & WIRE_FLAG_TERM): its body, decoded and
	 * checked by wire_check(). */
	struct wire_term term;
};

/*
 * A region the decoders handle: a page size that is a power of two from
 * WIRE_PAGE_MIN to WIRE_PAGE_MAX (the XOR goes 8 bytes at a time, and
 * LZ4 takes an int), at most WIRE_REGION_MAX bytes.
 */
static inline bool wire_region_ok(uint64_t npages, uint32_t page_size)
{
	return page_size >= WIRE_PAGE_MIN && page_size <= WIRE_PAGE_MAX &&
	       !(page_size & (page_size - 1)) && npages && npages <= WIRE_REGION_MAX / page_size;
}

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
 * The same for any bytes: len bytes at msg, whose last WIRE_MAC_SIZE are
 * an HMAC-SHA256 of the others when has_mac (len >= WIRE_MAC_SIZE then).
 * what names the format and version for why ("wire version 2").  The
 * snapshot's values are checked with it too.
 */
int wire_verify(const void *msg, size_t len, bool has_mac, const char *what,
		const struct wire_key *k, char *why, size_t why_len);

/*
 * Decode and check a whole message: length, magic, version (1 or 2), header
 * checksum, the header's own consistency (part < parts, flags, first +
 * count <= page_count, page_count <= npages), body length and checksum;
 * for a term marker its fixed shape and body (h->term).
 * Returns 0, -EBADMSG or -EPROTO (another version) with why.
 */
int wire_check(const void *msg, size_t len, struct wire_header *h, char *why, size_t why_len);

/*
 * Whether h (checked) is the next part of the epoch whose part 0 is first,
 * after next_part parts holding got pages: the same epoch, chain, history,
 * region and page count, and the part and first page that follow.  The
 * decoder's output bounds rest on it: a part's pages go at got, and
 * first + count <= page_count holds for part 0's page_count.
 */
bool wire_next_part(const struct wire_header *first, uint32_t next_part, uint32_t got,
		    const struct wire_header *h);

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

/* A stream name NATS takes and the subject pagetrack.<stream>.epochs can
 * hold: [A-Za-z0-9_-], 1 to STREAM_NAME_MAX. */
bool net_stream_name_ok(const char *name);

/* Little-endian fields, for this format and the snapshot's (snapshot.c). */
static inline void wire_put16(unsigned char *p, uint16_t v) { v = htole16(v); memcpy(p, &v, 2); }
static inline void wire_put32(unsigned char *p, uint32_t v) { v = htole32(v); memcpy(p, &v, 4); }
static inline void wire_put64(unsigned char *p, uint64_t v) { v = htole64(v); memcpy(p, &v, 8); }
static inline uint16_t wire_get16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return le16toh(v); }
static inline uint32_t wire_get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return le32toh(v); }
static inline uint64_t wire_get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return le64toh(v); }

/*
 * A term marker (version 3, or 4 sealed with k when k has a key): h's
 * history_id, epoch (the last whole epoch the new term continues from) and
 * chain (that epoch's), npages, page_size, sent_ns and term are used; the
 * rest is set here.  out: room for WIRE_HEADER_SIZE + WIRE_TERM_BODY +
 * WIRE_MAC_SIZE bytes.  Returns the message's length, or -ENOMEM.
 */
long wire_term_put(unsigned char *out, const struct wire_header *h, const struct wire_key *k);

#endif /* PT_NET_WIRE_H */
