/* SPDX-License-Identifier: MIT */
/*
 * wire.c - the stream's message format, both halves: the publisher's
 * encoding and the follower's checks.  A follower trusts nothing it reads
 * from the stream (anyone allowed to publish on the subject could have
 * written it), so every field is checked before it is used, and a message
 * is decoded into a buffer, never into the standby's memory.
 *
 * Layout (little-endian, docs/network.md):
 *    0  magic "PTNET01\0"     64  page_size u32       96  body XXH3-64
 *    8  version u16           68  page_count u32     104  sent_ns
 *   10  flags u16 (1: last,   72  part u32           112  reserved, 0
 *       2: term marker)
 *   12  header size u32       76  parts u32          120  header XXH3-64 of
 *   16  history_id            80  first u32               bytes 0..119
 *   24  epoch                 84  count u32
 *   32  prev_chain            88  body length u64
 *   40  chain
 *   48  payload_checksum
 *   56  npages
 * Body: count entries { u64 index, u32 encoding, u32 length, bytes }.
 * Version 2 is version 1 followed by an HMAC-SHA256 (32 bytes) of the
 * header and the body with the key both sides were given: a checksum can be
 * made by anyone, the MAC only by who holds the key.  Version 1 stays what
 * a publisher without a key writes, so that followers of an older release
 * read its streams; they refuse version 2 (-EPROTO) rather than skip a MAC.
 * Versions 3 and 4 are versions 1 and 2 for a term marker (flags 3): no
 * page, one part, prev_chain = chain, a 64-byte body { u64 term, u64
 * holder, u64 after_seq, char host[32], 8 reserved zero bytes }.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lz4.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "wire.h"

uint64_t wire_checksum(const void *p, size_t len)
{
	return XXH3_64bits(p, len);
}

bool net_stream_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (!n || n > STREAM_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

void wire_header_put(unsigned char *out, const struct wire_header *h)
{
	memset(out, 0, WIRE_HEADER_SIZE);
	memcpy(out, WIRE_MAGIC, 8);
	wire_put16(out + 8, h->version ? h->version : WIRE_VERSION);
	wire_put16(out + 10, h->flags);
	wire_put32(out + 12, WIRE_HEADER_SIZE);
	wire_put64(out + 16, h->history_id);
	wire_put64(out + 24, h->epoch);
	wire_put64(out + 32, h->prev_chain);
	wire_put64(out + 40, h->chain);
	wire_put64(out + 48, h->payload_checksum);
	wire_put64(out + 56, h->npages);
	wire_put32(out + 64, h->page_size);
	wire_put32(out + 68, h->page_count);
	wire_put32(out + 72, h->part);
	wire_put32(out + 76, h->parts);
	wire_put32(out + 80, h->first);
	wire_put32(out + 84, h->count);
	wire_put64(out + 88, h->body_length);
	wire_put64(out + 96, h->body_checksum);
	wire_put64(out + 104, h->sent_ns);
	wire_put64(out + 120, wire_checksum(out, 120));
}

static int bad(char *why, size_t why_len, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int bad(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
	return err;
}

/*
 * A term marker's shape: one part with no page, a chain to continue from
 * (prev_chain = chain), and its body: a term, a host name of printable
 * characters, NUL padded, reserved zeros.
 */
static int term_check(const unsigned char *body, struct wire_header *h, char *why, size_t why_len)
{
	struct wire_term *t = &h->term;
	size_t host_len;

	if (h->parts != 1 || h->page_count || h->count || h->first || h->payload_checksum ||
	    h->prev_chain != h->chain || h->body_length != WIRE_TERM_BODY)
		return bad(why, why_len, -EBADMSG, "a term marker with pages, parts or a body of %llu "
			   "bytes", (unsigned long long)h->body_length);
	t->term = wire_get64(body);
	t->holder = wire_get64(body + 8);
	t->after_seq = wire_get64(body + 16);
	memcpy(t->host, body + 24, WIRE_HOST_MAX);
	host_len = strnlen(t->host, WIRE_HOST_MAX);
	if (!t->term || host_len == WIRE_HOST_MAX)
		return bad(why, why_len, -EBADMSG, "a term marker of term %llu or an unterminated "
			   "host name", (unsigned long long)t->term);
	for (size_t i = 0; i < WIRE_HOST_MAX; i++)
		if (i < host_len ? (t->host[i] < 0x21 || t->host[i] > 0x7e) : t->host[i])
			return bad(why, why_len, -EBADMSG, "a term marker's host name is not "
				   "printable");
	for (size_t i = 24 + WIRE_HOST_MAX; i < WIRE_TERM_BODY; i++)
		if (body[i])
			return bad(why, why_len, -EBADMSG, "a term marker's reserved bytes are not "
				   "zero");
	return 0;
}

int wire_check(const void *msg, size_t len, struct wire_header *h, char *why, size_t why_len)
{
	const unsigned char *p = msg;
	size_t mac;
	uint64_t sum;

	if (len < 16)
		return bad(why, why_len, -EBADMSG, "%zu bytes: shorter than a header", len);
	if (memcmp(p, WIRE_MAGIC, 8))
		return bad(why, why_len, -EBADMSG, "bad magic (not a pagetrack message)");
	h->version = wire_get16(p + 8);
	/* The version is judged before the rest: another version may lay the
	 * header out differently, so its checksum means nothing here. */
	if (h->version < WIRE_VERSION || h->version > WIRE_VERSION_MAX)
		return bad(why, why_len, -EPROTO, "wire version %u, this library reads %u to %u",
			   h->version, WIRE_VERSION, WIRE_VERSION_MAX);
	mac = wire_has_mac(h->version) ? WIRE_MAC_SIZE : 0;
	h->header_size = wire_get32(p + 12);
	if (h->header_size != WIRE_HEADER_SIZE)
		return bad(why, why_len, -EBADMSG, "header size %u, want %u", h->header_size,
			   WIRE_HEADER_SIZE);
	if (len < WIRE_HEADER_SIZE + mac)
		return bad(why, why_len, -EBADMSG, "%zu bytes: truncated header", len);
	sum = wire_checksum(p, 120);
	if (sum != wire_get64(p + 120))
		return bad(why, why_len, -EBADMSG, "header checksum %016llx, computed %016llx",
			   (unsigned long long)wire_get64(p + 120), (unsigned long long)sum);
	h->flags = wire_get16(p + 10);
	h->history_id = wire_get64(p + 16);
	h->epoch = wire_get64(p + 24);
	h->prev_chain = wire_get64(p + 32);
	h->chain = wire_get64(p + 40);
	h->payload_checksum = wire_get64(p + 48);
	h->npages = wire_get64(p + 56);
	h->page_size = wire_get32(p + 64);
	h->page_count = wire_get32(p + 68);
	h->part = wire_get32(p + 72);
	h->parts = wire_get32(p + 76);
	h->first = wire_get32(p + 80);
	h->count = wire_get32(p + 84);
	h->body_length = wire_get64(p + 88);
	h->body_checksum = wire_get64(p + 96);
	h->sent_ns = wire_get64(p + 104);
	if (wire_get64(p + 112))
		return bad(why, why_len, -EBADMSG, "reserved header bytes not zero");
	/* Versions 3 and 4 are term markers, and only they. */
	if (h->flags & ~(WIRE_FLAG_LAST | WIRE_FLAG_TERM) ||
	    !(h->flags & WIRE_FLAG_TERM) != (h->version < WIRE_VERSION_TERM))
		return bad(why, why_len, -EBADMSG, "unknown flags %#x (version %u)", h->flags,
			   h->version);
	if (!h->parts || h->part >= h->parts ||
	    !!(h->flags & WIRE_FLAG_LAST) != (h->part + 1 == h->parts))
		return bad(why, why_len, -EBADMSG, "part %u of %u, flags %#x", h->part, h->parts,
			   h->flags);
	if (!h->epoch || !wire_region_ok(h->npages, h->page_size))
		return bad(why, why_len, -EBADMSG, "epoch %llu, page size %u, %llu pages",
			   (unsigned long long)h->epoch, h->page_size,
			   (unsigned long long)h->npages);
	if (h->page_count > h->npages || h->first > h->page_count ||
	    h->count > h->page_count - h->first)
		return bad(why, why_len, -EBADMSG, "pages %u+%u of %u (region of %llu)", h->first,
			   h->count, h->page_count, (unsigned long long)h->npages);
	if (h->body_length != len - WIRE_HEADER_SIZE - mac)
		return bad(why, why_len, -EBADMSG, "body of %zu bytes%s, header says %llu",
			   len - WIRE_HEADER_SIZE - mac, mac ? " and a MAC" : "",
			   (unsigned long long)h->body_length);
	sum = wire_checksum(p + WIRE_HEADER_SIZE, h->body_length);
	if (sum != h->body_checksum)
		return bad(why, why_len, -EBADMSG, "body checksum %016llx, computed %016llx",
			   (unsigned long long)h->body_checksum, (unsigned long long)sum);
	memset(&h->term, 0, sizeof(h->term));
	if (h->flags & WIRE_FLAG_TERM)
		return term_check(p + WIRE_HEADER_SIZE, h, why, why_len);
	return 0;
}

bool wire_next_part(const struct wire_header *first, uint32_t next_part, uint32_t got,
		    const struct wire_header *h)
{
	return h->epoch == first->epoch && h->part == next_part && h->parts == first->parts &&
	       h->first == got && h->history_id == first->history_id && h->chain == first->chain &&
	       h->prev_chain == first->prev_chain &&
	       h->payload_checksum == first->payload_checksum && h->npages == first->npages &&
	       h->page_size == first->page_size && h->page_count == first->page_count;
}

int wire_decode(const struct wire_header *h, const unsigned char *body, uint64_t prev_index,
		uint64_t *pages, unsigned char *data, wire_old_fn old, void *arg, char *why,
		size_t why_len)
{
	const unsigned char *p = body, *end = body + h->body_length;
	size_t ps = h->page_size;

	for (uint32_t i = 0; i < h->count; i++) {
		unsigned char *dst = data + (size_t)i * ps;
		const unsigned char *before;
		uint64_t index;
		uint32_t enc, length;

		if ((size_t)(end - p) < WIRE_ENTRY_SIZE)
			return bad(why, why_len, -EBADMSG, "entry %u: body ends", i);
		index = wire_get64(p);
		enc = wire_get32(p + 8);
		length = wire_get32(p + 12);
		p += WIRE_ENTRY_SIZE;
		if (index >= h->npages)
			return bad(why, why_len, -EBADMSG, "entry %u: page %llu of a %llu-page region",
				   i, (unsigned long long)index, (unsigned long long)h->npages);
		if (prev_index != UINT64_MAX && index <= prev_index)
			return bad(why, why_len, -EBADMSG, "entry %u: page %llu after page %llu", i,
				   (unsigned long long)index, (unsigned long long)prev_index);
		if (length > (size_t)(end - p))
			return bad(why, why_len, -EBADMSG, "entry %u: %u bytes, %zu left", i, length,
				   (size_t)(end - p));
		before = old(index, arg);
		switch (enc) {
		case WIRE_RAW:
			if (length != ps)
				return bad(why, why_len, -EBADMSG, "entry %u: raw page of %u bytes", i,
					   length);
			memcpy(dst, p, ps);
			break;
		case WIRE_LZ4_XOR: {
			int n = LZ4_decompress_safe((const char *)p, (char *)dst, (int)length, (int)ps);

			if (n != (int)ps)
				return bad(why, why_len, -EBADMSG,
					   "entry %u: page %llu: LZ4 gives %d bytes, not a page", i,
					   (unsigned long long)index, n);
			for (size_t k = 0; k < ps; k += 8) {
				uint64_t a, b;

				memcpy(&a, dst + k, 8);
				memcpy(&b, before + k, 8);
				a ^= b;
				memcpy(dst + k, &a, 8);
			}
			break;
		}
		case WIRE_UNCHANGED:
			if (length)
				return bad(why, why_len, -EBADMSG, "entry %u: unchanged page with bytes",
					   i);
			memcpy(dst, before, ps);
			break;
		default:
			return bad(why, why_len, -EBADMSG, "entry %u: unknown encoding %u", i, enc);
		}
		p += length;
		pages[i] = index;
		prev_index = index;
	}
	if (p != end)
		return bad(why, why_len, -EBADMSG, "%zu bytes after the last entry",
			   (size_t)(end - p));
	return 0;
}

size_t wire_encode_page(unsigned char *out, uint64_t index, const unsigned char *now,
			const unsigned char *before, size_t page_size, unsigned char *scratch,
			enum wire_encoding *enc)
{
	uint64_t any = 0;
	uint32_t length = 0;
	int n;

	for (size_t k = 0; k < page_size; k += 8) {
		uint64_t a, b;

		memcpy(&a, now + k, 8);
		memcpy(&b, before + k, 8);
		a ^= b;
		any |= a;
		memcpy(scratch + k, &a, 8);
	}
	if (!any) {
		*enc = WIRE_UNCHANGED;
	} else {
		/* Raw when compression does not save: the bound is page_size. */
		n = LZ4_compress_default((const char *)scratch, (char *)out + WIRE_ENTRY_SIZE,
					 (int)page_size, (int)page_size - 1);
		if (n > 0) {
			*enc = WIRE_LZ4_XOR;
			length = (uint32_t)n;
		} else {
			*enc = WIRE_RAW;
			length = (uint32_t)page_size;
			memcpy(out + WIRE_ENTRY_SIZE, now, page_size);
		}
	}
	wire_put64(out, index);
	wire_put32(out + 8, *enc);
	wire_put32(out + 12, length);
	return WIRE_ENTRY_SIZE + length;
}

void wire_key_set(struct wire_key *k, const void *bytes, size_t len)
{
	wire_key_clear(k);
	if (bytes && len && len <= sizeof(k->bytes)) {
		memcpy(k->bytes, bytes, len);
		k->len = len;
	}
}

void wire_key_clear(struct wire_key *k)
{
	OPENSSL_cleanse(k, sizeof(*k));
}

static bool mac_of(const unsigned char *msg, size_t len, const struct wire_key *k,
		   unsigned char out[WIRE_MAC_SIZE])
{
	unsigned int n = 0;

	return HMAC(EVP_sha256(), k->bytes, (int)k->len, msg, len, out, &n) && n == WIRE_MAC_SIZE;
}

long wire_seal(unsigned char *msg, size_t len, const struct wire_key *k)
{
	if (!mac_of(msg, len, k, msg + len))
		return -ENOMEM;
	return (long)(len + WIRE_MAC_SIZE);
}

int wire_verify(const void *msg, size_t len, bool has_mac, const char *what,
		const struct wire_key *k, char *why, size_t why_len)
{
	unsigned char mac[WIRE_MAC_SIZE];

	if (!has_mac)
		return k->len ? bad(why, why_len, -EKEYREJECTED, "no HMAC (%s), and an HMAC key "
				    "was given: not authenticated", what) : 0;
	if (!k->len)
		return bad(why, why_len, -ENOKEY, "an HMAC (%s), and no HMAC key was given to "
			   "check it", what);
	if (!mac_of(msg, len - WIRE_MAC_SIZE, k, mac))
		return bad(why, why_len, -ENOMEM, "computing the HMAC failed");
	/* In constant time: a forger learns nothing from how long it took. */
	if (CRYPTO_memcmp(mac, (const unsigned char *)msg + len - WIRE_MAC_SIZE, WIRE_MAC_SIZE))
		return bad(why, why_len, -EKEYREJECTED, "its HMAC does not match the key given "
			   "(another key, or forged)");
	return 0;
}

int wire_authenticate(const void *msg, size_t len, const struct wire_header *h,
		      const struct wire_key *k, char *why, size_t why_len)
{
	char what[32];

	snprintf(what, sizeof(what), "wire version %u", h->version);
	return wire_verify(msg, len, wire_has_mac(h->version), what, k, why, why_len);
}

long wire_term_put(unsigned char *out, const struct wire_header *in, const struct wire_key *k)
{
	struct wire_header h = {
		.version = k->len ? WIRE_VERSION_TERM_MAC : WIRE_VERSION_TERM,
		.flags = WIRE_FLAG_LAST | WIRE_FLAG_TERM, .history_id = in->history_id,
		.epoch = in->epoch, .prev_chain = in->chain, .chain = in->chain,
		.npages = in->npages, .page_size = in->page_size, .parts = 1,
		.body_length = WIRE_TERM_BODY, .sent_ns = in->sent_ns,
	};
	unsigned char *body = out + WIRE_HEADER_SIZE;

	memset(body, 0, WIRE_TERM_BODY);
	wire_put64(body, in->term.term);
	wire_put64(body + 8, in->term.holder);
	wire_put64(body + 16, in->term.after_seq);
	memcpy(body + 24, in->term.host, strnlen(in->term.host, WIRE_HOST_MAX - 1));
	h.body_checksum = wire_checksum(body, WIRE_TERM_BODY);
	wire_header_put(out, &h);
	if (k->len)
		return wire_seal(out, WIRE_HEADER_SIZE + WIRE_TERM_BODY, k);
	return WIRE_HEADER_SIZE + WIRE_TERM_BODY;
}
