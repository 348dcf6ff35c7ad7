/* Fuzz target: bytes as the values of a snapshot's bucket, checked and decoded as a follower's catch-up does. */
/*
 * Input: a flags byte (fuzz.h; NET_FZ_KEY, fuzz-net.h: the follower holds
 * the fuzz key), the standby's epoch (one byte), then values, each a
 * little-endian u32 length and its bytes, in the order a catch-up reads
 * them: the manifest, its tables (table.0 ...), then the value of each page
 * whose generation is above the standby's epoch, in page order.  They go
 * through snap_manifest_decode(), snap_table_decode() and
 * snap_page_decode() as snapshot.c's attempt() calls them; the first
 * refusal (or a value missing) ends the input, as it ends an attempt.  The
 * follower's checks against its standby and the stream (history, the
 * system's page size, the gap) are not made: the decoders must be safe
 * without them.
 *
 * FZ_FIX_SUMS reseals each value with the publisher's own sealing
 * (snap_*_seal: checksums, and for version 2 with the key the MAC) and
 * writes the tables' checksums into the manifest, so that the fuzzer
 * reaches the checks behind them; FZ_FIX_ID also writes each value's
 * version (2 with NET_FZ_KEY, else 1).
 *
 * What must hold: no access outside a value or the buffers (ASan), no
 * undefined behaviour (UBSan), generations no later than the manifest's
 * epoch, and every page decoded with the checksum its table gives.
 */
#include "fuzz.h"
#include "fuzz-net.h"
#include "snapshot-format.h"

#define NS_MAX_VALUES	64
#define NS_MAX_PAGES	(3 * SNAP_TABLE_PAGES)	/* larger regions refused here */
#define NS_MAX_PAGE	65536
#define NS_MANIFEST_HEAD 80			/* docs/network.md, "Snapshot" */
#define NS_PAGE_HEAD	64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct value {
	unsigned char *bytes;
	size_t len;
};

static bool has_mac(const struct value *v)
{
	return v->len >= 12 + WIRE_MAC_SIZE && wire_get32(v->bytes + 8) == 2;
}

/* Reseal a value of the given kind (its MAC, when it has one, made again). */
static void reseal(struct value *v, int kind, uint8_t flags, const struct wire_key *key)
{
	struct wire_key none;
	size_t len;
	long n;

	if (v->len < 12)
		return;
	if (flags & FZ_FIX_ID)
		wire_put32(v->bytes + 8, flags & NET_FZ_KEY ? 2 : 1);
	net_fz_key(&none, false);
	len = v->len - (has_mac(v) ? WIRE_MAC_SIZE : 0);
	if (kind == 'm' && len >= NS_MANIFEST_HEAD + 8)
		n = snap_manifest_seal(v->bytes, len, has_mac(v) ? key : &none);
	else if (kind == 't')
		n = snap_table_seal(v->bytes, len, has_mac(v) ? key : &none);
	else if (kind == 'p' && len >= NS_PAGE_HEAD)
		n = snap_page_seal(v->bytes, len, has_mac(v) ? key : &none);
	else
		return;
	if (n < 0)
		abort();
}

/* A catch-up's attempt: the manifest, its tables, the pages above `have`. */
static void catch_up(struct value *vals, int nvals, uint64_t have, uint8_t flags,
		     const struct wire_key *key)
{
	struct snap_manifest m;
	struct pt_page_version *v = NULL;
	unsigned char *page = NULL, *zero = NULL;
	char why[300];
	int next;

	if (flags & FZ_FIX_SUMS)
		reseal(&vals[0], 'm', flags, key);
	if (snap_manifest_decode(vals[0].bytes, vals[0].len, key, &m, why, sizeof(why)))
		goto out;
	if (flags & FZ_FIX_SUMS) {
		/* The tables as given, named by the manifest. */
		for (uint32_t t = 0; t < m.tables && 1 + (int)t < nvals; t++) {
			reseal(&vals[1 + t], 't', flags, key);
			wire_put64(vals[0].bytes + NS_MANIFEST_HEAD + (size_t)t * 8,
				   wire_checksum(vals[1 + t].bytes, vals[1 + t].len));
		}
		free(m.table_sum);
		reseal(&vals[0], 'm', flags, key);
		if (snap_manifest_decode(vals[0].bytes, vals[0].len, key, &m, why, sizeof(why)))
			abort();	/* resealed with its own tables, it stays valid */
	}
	if (m.npages > NS_MAX_PAGES || m.page_size > NS_MAX_PAGE || m.epoch <= have)
		goto out;
	v = calloc(m.npages, sizeof(*v));
	page = malloc(m.page_size);
	zero = calloc(1, m.page_size);
	if (!v || !page || !zero)
		abort();
	for (uint32_t t = 0; t < m.tables; t++) {
		if (1 + (int)t >= nvals ||
		    snap_table_decode(vals[1 + t].bytes, vals[1 + t].len, &m, t, key, v, why,
				      sizeof(why)))
			goto out;
	}
	next = 1 + (int)m.tables;
	for (uint64_t p = 0; p < m.npages; p++) {
		if ((uint64_t)v[p].generation > m.epoch || v[p].generation < 0)
			abort();	/* the table decoder let an impossible generation through */
		if ((uint64_t)v[p].generation <= have)
			continue;
		if (next >= nvals)
			goto out;	/* a page value missing */
		if (flags & FZ_FIX_SUMS)
			reseal(&vals[next], 'p', flags, key);
		if (snap_page_decode(vals[next].bytes, vals[next].len, &m, p, &v[p], key, page, zero,
				     why, sizeof(why)))
			goto out;	/* refused, or newer than the table: start over */
		if (pt_page_checksum(page, m.page_size) != v[p].checksum)
			abort();	/* decoded, and not the page its table gives */
		next++;
	}
out:
	free(m.table_sum);
	free(v);
	free(page);
	free(zero);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct value vals[NS_MAX_VALUES];
	struct wire_key key;
	uint8_t flags, have;
	int nvals = 0;

	if (size < 2 || size > FZ_MAX_FILE)
		return -1;
	flags = data[0];
	have = data[1];
	data += 2;
	size -= 2;
	while (nvals < NS_MAX_VALUES && size >= 4) {
		size_t len = wire_get32(data);

		data += 4;
		size -= 4;
		if (len > size)
			len = size;
		/* A copy of its exact size, so that ASan sees a read past it
		 * (resealing writes a MAC in the place of the one it has). */
		vals[nvals].bytes = malloc(len ? len : 1);
		if (!vals[nvals].bytes)
			abort();
		memcpy(vals[nvals].bytes, data, len);
		vals[nvals].len = len;
		nvals++;
		data += len;
		size -= len;
	}
	net_fz_key(&key, flags & NET_FZ_KEY);
	if (nvals)
		catch_up(vals, nvals, have, flags, &key);
	for (int i = 0; i < nvals; i++)
		free(vals[i].bytes);
	wire_key_clear(&key);
	return 0;
}
