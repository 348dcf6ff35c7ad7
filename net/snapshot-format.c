/* SPDX-License-Identifier: MIT */
/*
 * snapshot-format.c - the values of the snapshot's bucket, both halves:
 * the publisher's encoding and the follower's checks (docs/network.md,
 * "Snapshot").  Little-endian, each with its magic and version:
 *   manifest       the snapshot's epoch S, the chain of the source's record
 *                  S, the region's history and size, the XXH3-64 of every
 *                  table as it is at S; its own XXH3-64 last
 *   table.<n>      pages n*8192 .. : generation and XXH3-64 of each; its
 *                  checksum is the one the manifest names
 *   page.<index>   one page: history, index, generation (the epoch that
 *                  last changed it), its XXH3-64, the page as a wire entry
 *                  (LZ4 against a zero page, or raw); an XXH3-64 of the
 *                  header and the entry
 * A reader trusts nothing in a value before its checks pass, and nothing
 * that does not lead back to the manifest: a table by the checksum the
 * manifest names, a page by the generation and checksum its table gives.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_STATIC_LINKING_ONLY	/* XXH3_state_t on the stack */
#include <xxhash.h>

#include "snapshot-format.h"
#include "wire.h"

#define SNAP_VERSION		1		/* a value */
#define SNAP_VERSION_MAC	2		/* the same and an HMAC-SHA256 of it */
#define MANIFEST_MAGIC		"PTSNAP1"	/* 8 bytes with the NUL */
#define TABLE_MAGIC		"PTSNTB1"
#define PAGE_MAGIC		"PTSNPG1"
#define MANIFEST_HEAD		80
#define TABLE_HEAD		32
#define PAGE_HEAD		64
#define TABLE_ENTRY		16

static int bad(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

uint32_t snap_tables(uint64_t npages)
{
	return (uint32_t)((npages + SNAP_TABLE_PAGES - 1) / SNAP_TABLE_PAGES);
}

static size_t manifest_size(uint32_t tables)
{
	return MANIFEST_HEAD + (size_t)tables * 8 + 8;
}

static uint32_t version_for(const struct wire_key *k)
{
	return k->len ? SNAP_VERSION_MAC : SNAP_VERSION;
}

/*
 * The version of a value at least 12 bytes long (key: its name, for why):
 * the size of its MAC (0 or WIRE_MAC_SIZE), or -EPROTO for a version this
 * library does not read.  Judged before anything else, as the wire's: a
 * later version may lay the value out otherwise.
 */
static long value_mac_size(const unsigned char *val, const char *key, char *why, size_t why_len)
{
	uint32_t version = wire_get32(val + 8);

	if (version == SNAP_VERSION || version == SNAP_VERSION_MAC)
		return version == SNAP_VERSION_MAC ? WIRE_MAC_SIZE : 0;
	snprintf(why, why_len, "%s: snapshot value version %u, this library reads %d and %d", key,
		 version, SNAP_VERSION, SNAP_VERSION_MAC);
	return -EPROTO;
}

/* The MAC of a value of len bytes (its MAC included) whose checksums
 * passed: 0, or -ENOKEY / -EKEYREJECTED / -ENOMEM with why. */
static int value_authentic(const unsigned char *val, size_t len, const char *key,
			   const struct wire_key *k, char *why, size_t why_len)
{
	uint32_t version = wire_get32(val + 8);
	char what[48], mac_why[200];
	int err;

	snprintf(what, sizeof(what), "snapshot value version %u", version);
	err = wire_verify(val, len, version == SNAP_VERSION_MAC, what, k, mac_why, sizeof(mac_why));
	if (err)
		snprintf(why, why_len, "%s: %s", key, mac_why);
	return err;
}

/* The value's MAC after its len bytes when k has a key: its new length, or -ENOMEM. */
static long seal(unsigned char *val, size_t len, const struct wire_key *k)
{
	return k->len ? wire_seal(val, len, k) : (long)len;
}

long snap_manifest_seal(unsigned char *val, size_t len, const struct wire_key *k)
{
	wire_put64(val + len - 8, wire_checksum(val, len - 8));
	return seal(val, len, k);
}

long snap_manifest_encode(unsigned char *out, const struct snap_manifest *m,
			  const struct wire_key *k)
{
	memset(out, 0, MANIFEST_HEAD);
	memcpy(out, MANIFEST_MAGIC, 8);
	wire_put32(out + 8, version_for(k));
	wire_put32(out + 12, MANIFEST_HEAD);
	wire_put64(out + 16, m->history);
	wire_put64(out + 24, m->epoch);
	wire_put64(out + 32, m->chain);
	wire_put64(out + 40, m->npages);
	wire_put32(out + 48, m->page_size);
	wire_put32(out + 52, SNAP_TABLE_PAGES);
	wire_put32(out + 56, m->tables);
	wire_put64(out + 64, m->written_ns);
	for (uint32_t i = 0; i < m->tables; i++)
		wire_put64(out + MANIFEST_HEAD + (size_t)i * 8, m->table_sum[i]);
	return snap_manifest_seal(out, manifest_size(m->tables), k);
}

int snap_manifest_decode(const unsigned char *v, size_t len, const struct wire_key *k,
			 struct snap_manifest *m, char *why, size_t why_len)
{
	long mac;
	int err;

	memset(m, 0, sizeof(*m));
	if (len < MANIFEST_HEAD + 8 || memcmp(v, MANIFEST_MAGIC, 8))
		return bad(why, why_len, "manifest: not a manifest (%zu bytes)", len);
	mac = value_mac_size(v, "manifest", why, why_len);
	if (mac < 0)
		return (int)mac;
	m->tables = wire_get32(v + 56);
	if (wire_get32(v + 12) != MANIFEST_HEAD || len != manifest_size(m->tables) + (size_t)mac)
		return bad(why, why_len, "manifest: %zu bytes for %u tables", len, m->tables);
	if (wire_get64(v + len - mac - 8) != wire_checksum(v, len - mac - 8))
		return bad(why, why_len, "manifest: checksum");
	err = value_authentic(v, len, "manifest", k, why, why_len);
	if (err)
		return err;
	m->history = wire_get64(v + 16);
	m->epoch = wire_get64(v + 24);
	m->chain = wire_get64(v + 32);
	m->npages = wire_get64(v + 40);
	m->page_size = wire_get32(v + 48);
	m->written_ns = wire_get64(v + 64);
	if (!m->epoch || m->epoch > INT64_MAX || !wire_region_ok(m->npages, m->page_size) ||
	    wire_get32(v + 52) != SNAP_TABLE_PAGES || m->tables != snap_tables(m->npages))
		return bad(why, why_len, "manifest: epoch %llu, %llu pages of %u bytes, %u tables "
			   "of %u pages: impossible", (unsigned long long)m->epoch,
			   (unsigned long long)m->npages, m->page_size, m->tables,
			   wire_get32(v + 52));
	m->table_sum = malloc((size_t)m->tables * 8);
	if (!m->table_sum) {
		snprintf(why, why_len, "manifest: out of memory for %u tables", m->tables);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < m->tables; i++)
		m->table_sum[i] = wire_get64(v + MANIFEST_HEAD + (size_t)i * 8);
	return 0;
}

uint32_t snap_table_count(const struct snap_manifest *m, uint32_t t)
{
	uint64_t first = (uint64_t)t * SNAP_TABLE_PAGES;

	return (uint32_t)(m->npages - first < SNAP_TABLE_PAGES ? m->npages - first : SNAP_TABLE_PAGES);
}

long snap_table_seal(unsigned char *val, size_t len, const struct wire_key *k)
{
	return seal(val, len, k);
}

long snap_table_encode(unsigned char *out, const struct snap_manifest *m, uint32_t t,
		       const struct pt_page_version *v, const struct wire_key *k)
{
	uint32_t count = snap_table_count(m, t);
	uint64_t first = (uint64_t)t * SNAP_TABLE_PAGES;

	memcpy(out, TABLE_MAGIC, 8);
	wire_put32(out + 8, version_for(k));
	wire_put32(out + 12, count);
	wire_put64(out + 16, first);
	wire_put64(out + 24, m->history);
	for (uint32_t i = 0; i < count; i++) {
		wire_put64(out + TABLE_HEAD + (size_t)i * TABLE_ENTRY, (uint64_t)v[first + i].generation);
		wire_put64(out + TABLE_HEAD + (size_t)i * TABLE_ENTRY + 8, v[first + i].checksum);
	}
	return snap_table_seal(out, TABLE_HEAD + (size_t)count * TABLE_ENTRY, k);
}

int snap_table_decode(const unsigned char *val, size_t len, const struct snap_manifest *m,
		      uint32_t t, const struct wire_key *k, struct pt_page_version *v, char *why,
		      size_t why_len)
{
	uint32_t count = snap_table_count(m, t);
	uint64_t first = (uint64_t)t * SNAP_TABLE_PAGES;
	char key[32];
	long mac;
	int err;

	snprintf(key, sizeof(key), "table.%u", t);
	if (wire_checksum(val, len) != m->table_sum[t]) {
		snprintf(why, why_len, "%s is not the one the manifest of epoch %llu names "
			 "(checksum)", key, (unsigned long long)m->epoch);
		return -EAGAIN;
	}
	if (len < TABLE_HEAD || memcmp(val, TABLE_MAGIC, 8))
		return bad(why, why_len, "%s: not a table (%zu bytes)", key, len);
	mac = value_mac_size(val, key, why, why_len);
	if (mac < 0)
		return (int)mac;
	if (len != TABLE_HEAD + (size_t)count * TABLE_ENTRY + (size_t)mac)
		return bad(why, why_len, "%s: %zu bytes for %u pages", key, len, count);
	err = value_authentic(val, len, key, k, why, why_len);
	if (err)
		return err;
	if (wire_get32(val + 12) != count || wire_get64(val + 16) != first ||
	    wire_get64(val + 24) != m->history)
		return bad(why, why_len, "%s: not a table of %u pages from page %llu of history "
			   "%016llx", key, count, (unsigned long long)first,
			   (unsigned long long)m->history);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t g = wire_get64(val + TABLE_HEAD + (size_t)i * TABLE_ENTRY);

		if (g > m->epoch)
			return bad(why, why_len, "%s: page %llu of generation %llu in a snapshot "
				   "of epoch %llu", key, (unsigned long long)(first + i),
				   (unsigned long long)g, (unsigned long long)m->epoch);
		v[first + i].generation = (pt_epoch_t)g;
		v[first + i].checksum = wire_get64(val + TABLE_HEAD + (size_t)i * TABLE_ENTRY + 8);
	}
	return 0;
}

/* A page value's checksum: its header's first 56 bytes, then its body. */
static uint64_t page_value_checksum(const unsigned char *val, size_t body)
{
	XXH3_state_t st;

	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, val, 56);
	XXH3_64bits_update(&st, val + PAGE_HEAD, body);
	return XXH3_64bits_digest(&st);
}

long snap_page_seal(unsigned char *val, size_t len, const struct wire_key *k)
{
	wire_put64(val + 48, len - PAGE_HEAD);
	wire_put64(val + 56, page_value_checksum(val, len - PAGE_HEAD));
	return seal(val, len, k);
}

long snap_page_encode(unsigned char *out, uint64_t history, uint64_t index,
		      const struct pt_page_version *v, const unsigned char *page, uint32_t ps,
		      const unsigned char *zero, unsigned char *scratch, const struct wire_key *k)
{
	enum wire_encoding enc;
	size_t body = wire_encode_page(out + PAGE_HEAD, index, page, zero, ps, scratch, &enc);

	memset(out, 0, PAGE_HEAD);
	memcpy(out, PAGE_MAGIC, 8);
	wire_put32(out + 8, version_for(k));
	wire_put32(out + 12, PAGE_HEAD);
	wire_put64(out + 16, history);
	wire_put64(out + 24, index);
	wire_put64(out + 32, (uint64_t)v->generation);
	wire_put64(out + 40, v->checksum);
	return snap_page_seal(out, PAGE_HEAD + body, k);
}

static const unsigned char *zero_page(uint64_t index, void *arg)
{
	(void)index;
	return arg;
}

int snap_page_decode(const unsigned char *val, size_t len, const struct snap_manifest *m,
		     uint64_t index, const struct pt_page_version *v, const struct wire_key *k,
		     unsigned char *out, const unsigned char *zero, char *why, size_t why_len)
{
	struct wire_header h = { .npages = m->npages, .page_size = m->page_size, .count = 1 };
	uint64_t generation, body, got_index;
	char key[48], decode_why[200];
	long mac;
	int err;

	snprintf(key, sizeof(key), "page.%llu", (unsigned long long)index);
	if (len < PAGE_HEAD || memcmp(val, PAGE_MAGIC, 8))
		return bad(why, why_len, "%s: not a page value (%zu bytes)", key, len);
	mac = value_mac_size(val, key, why, why_len);
	if (mac < 0)
		return (int)mac;
	body = wire_get64(val + 48);
	if (wire_get32(val + 12) != PAGE_HEAD || len < PAGE_HEAD + (size_t)mac ||
	    body != len - PAGE_HEAD - (size_t)mac ||
	    wire_get64(val + 56) != page_value_checksum(val, body))
		return bad(why, why_len, "%s: length or checksum", key);
	err = value_authentic(val, len, key, k, why, why_len);
	if (err)
		return err;
	generation = wire_get64(val + 32);
	if (wire_get64(val + 16) != m->history || wire_get64(val + 24) != index)
		return bad(why, why_len, "%s: a value of page %llu of history %016llx", key,
			   (unsigned long long)wire_get64(val + 24),
			   (unsigned long long)wire_get64(val + 16));
	if (generation > (uint64_t)v->generation)
		return 1;
	if (generation < (uint64_t)v->generation || wire_get64(val + 40) != v->checksum)
		return bad(why, why_len, "%s: generation %llu, checksum %016llx; the table "
			   "says generation %lld, checksum %016llx", key,
			   (unsigned long long)generation, (unsigned long long)wire_get64(val + 40),
			   (long long)v->generation, (unsigned long long)v->checksum);
	h.body_length = body;
	if (wire_decode(&h, val + PAGE_HEAD, UINT64_MAX, &got_index, out, zero_page, (void *)zero,
			decode_why, sizeof(decode_why)))
		return bad(why, why_len, "%s: %s", key, decode_why);
	if (got_index != index || pt_page_checksum(out, m->page_size) != v->checksum)
		return bad(why, why_len, "%s: its bytes do not have its checksum", key);
	return 0;
}

size_t snap_value_max(uint64_t npages, uint32_t page_size)
{
	size_t page = PAGE_HEAD + WIRE_ENTRY_SIZE + (size_t)page_size + WIRE_MAC_SIZE;
	size_t table = TABLE_HEAD + (size_t)SNAP_TABLE_PAGES * TABLE_ENTRY + WIRE_MAC_SIZE;
	size_t manifest = manifest_size(snap_tables(npages)) + WIRE_MAC_SIZE;

	if (page < table)
		page = table;
	return page < manifest ? manifest : page;
}
