/* Makes the network layer's fuzz seeds with its own encoders: make fuzz-seeds. */
/*
 * Usage: make-net-seeds CORPUS_DIR (fuzz/corpus).  Writes, for net-wire,
 * net-snapshot and net-status, a few small valid inputs and a few damaged
 * ones (named valid-* and bad-*), each starting with the flags byte of
 * fuzz.h.  The messages are made with the publisher's encoders
 * (wire_encode_page, wire_header_put, wire_seal), the snapshot's values
 * with snap_*_encode and the records with status_record_put, so they
 * follow the formats as they are when the seeds are made.
 */
#include <sys/stat.h>

#include "fuzz.h"
#include "seeds.h"
#include "fuzz-net.h"
#include "snapshot-format.h"
#include "status-record.h"

/* ---- net-wire: a stream's messages ---------------------------------------- */

#define W_NPAGES	8
#define W_BUF		(1 << 16)

/* An input for net-wire: messages, each after its u16 length. */
struct stream {
	unsigned char bytes[W_BUF];
	size_t len;
	size_t at[8];		/* where each message starts */
	int count;
};

/* The content of page `index` at `epoch` (the "before" of epoch 1 is the
 * fuzz target's old content, 0xa5). */
static void content(unsigned char *p, size_t ps, uint64_t index, uint64_t epoch)
{
	memset(p, 0xa5, ps);
	if (epoch)
		snprintf((char *)p + index * 8 % (ps / 2), 40, "epoch %llu page %llu",
			 (unsigned long long)epoch, (unsigned long long)index);
}

/*
 * Append part `part` of `parts` of an epoch writing pages[0..count) (the
 * part's), first: the index in the epoch's page list of the part's first
 * page.  raw_index: a page sent raw (noise), UINT64_MAX for none.
 */
static void add_message(struct stream *s, const struct wire_key *k, uint32_t ps, uint64_t epoch,
			uint32_t part, uint32_t parts, uint32_t first, uint32_t page_count,
			const uint64_t *pages, uint32_t count, uint64_t raw_index)
{
	unsigned char now[4096], before[4096], scratch[4096];
	unsigned char *m = s->bytes + s->len + 2;
	struct wire_header h = {
		.version = k->len ? WIRE_VERSION_MAC : WIRE_VERSION,
		.flags = part + 1 == parts ? WIRE_FLAG_LAST : 0,
		.history_id = FZ_HISTORY, .epoch = epoch, .prev_chain = epoch * 1000,
		.chain = epoch * 1000 + 1000, .payload_checksum = epoch * 77, .npages = W_NPAGES,
		.page_size = ps, .page_count = page_count, .part = part, .parts = parts,
		.first = first, .count = count, .sent_ns = 1,
	};
	size_t body = 0;
	long len;

	for (uint32_t i = 0; i < count; i++) {
		enum wire_encoding enc;

		content(before, ps, pages[i], epoch - 1);
		content(now, ps, pages[i], epoch);
		if (pages[i] == raw_index)
			for (size_t b = 0; b < ps; b++)
				now[b] = (unsigned char)(b * 131 + (b >> 3) * 17 + epoch);
		if (pages[i] == 7)	/* written with the bytes it had */
			memcpy(now, before, ps);
		body += wire_encode_page(m + WIRE_HEADER_SIZE + body, pages[i], now, before, ps,
					 scratch, &enc);
	}
	h.body_length = body;
	h.body_checksum = wire_checksum(m + WIRE_HEADER_SIZE, body);
	wire_header_put(m, &h);
	len = WIRE_HEADER_SIZE + (long)body;
	if (k->len && (len = wire_seal(m, (size_t)len, k)) < 0)
		exit(1);
	if (s->len + 2 + (size_t)len > W_BUF)
		exit(1);
	wire_put16(s->bytes + s->len, (uint16_t)len);
	s->at[s->count++] = s->len + 2;
	s->len += 2 + (size_t)len;
}

/* A term marker going on from epoch `epoch` (whose chain add_message gave). */
static void add_term(struct stream *s, const struct wire_key *k, uint64_t epoch, uint64_t term)
{
	unsigned char *m = s->bytes + s->len + 2;
	struct wire_header h = {
		.history_id = FZ_HISTORY, .epoch = epoch, .chain = epoch * 1000 + 1000,
		.npages = W_NPAGES, .page_size = FZ_SMALL_PAGE, .sent_ns = 1,
		.term = { .term = term, .holder = 77, .after_seq = (uint64_t)s->count,
			  .host = "seed-host" },
	};
	long len = wire_term_put(m, &h, k);

	if (len < 0 || s->len + 2 + (size_t)len > W_BUF)
		exit(1);
	wire_put16(s->bytes + s->len, (uint16_t)len);
	s->at[s->count++] = s->len + 2;
	s->len += 2 + (size_t)len;
}

/* Epochs 1-3 of an 8-page region of 512-byte pages: epoch 2 in two parts. */
static void three_epochs(struct stream *s, const struct wire_key *k)
{
	static const uint64_t e1[] = { 0, 3 }, e2[] = { 1, 2, 5, 7 }, e3[] = { 6 };

	memset(s, 0, sizeof(*s));
	add_message(s, k, FZ_SMALL_PAGE, 1, 0, 1, 0, 2, e1, 2, 3);
	add_message(s, k, FZ_SMALL_PAGE, 2, 0, 2, 0, 4, e2, 2, UINT64_MAX);
	add_message(s, k, FZ_SMALL_PAGE, 2, 1, 2, 2, 4, e2 + 2, 2, UINT64_MAX);
	add_message(s, k, FZ_SMALL_PAGE, 3, 0, 1, 0, 1, e3, 1, UINT64_MAX);
}

static void wire_seeds(void)
{
	static struct stream s, d;
	struct wire_key none, key, other;
	unsigned char other_bytes[32] = { 9 };
	static const uint64_t p4[] = { 4 }, swapped[] = { 5, 2 };
	size_t m;

	net_fz_key(&none, false);
	net_fz_key(&key, true);
	wire_key_set(&other, other_bytes, sizeof(other_bytes));

	three_epochs(&s, &none);
	put("net-wire", "valid-three-epochs", 0, s.bytes, s.len);
	put("net-wire", "valid-three-epochs-fixed", FZ_FIX_SUMS | FZ_FIX_ID, s.bytes, s.len);
	put("net-wire", "bad-mac-missing", NET_FZ_KEY, s.bytes, s.len);
	d = s;
	d.bytes[d.at[1] + WIRE_HEADER_SIZE + 30] ^= 0x08;	/* epoch 2 part 0's first entry */
	put("net-wire", "bad-body-flip", 0, d.bytes, d.len);
	put("net-wire", "bad-body-flip-fixed", FZ_FIX_SUMS, d.bytes, d.len);
	d = s;
	m = d.at[0] + WIRE_HEADER_SIZE;			/* page 0's LZ4 block, zeroed */
	memset(d.bytes + m + WIRE_ENTRY_SIZE, 0, wire_get32(d.bytes + m + 12));
	put("net-wire", "bad-lz4-fixed", FZ_FIX_SUMS, d.bytes, d.len);
	put("net-wire", "bad-truncated", 0, s.bytes, s.at[2] + 100);

	three_epochs(&s, &key);
	put("net-wire", "valid-three-epochs-mac", NET_FZ_KEY, s.bytes, s.len);
	put("net-wire", "valid-three-epochs-mac-fixed", NET_FZ_KEY | FZ_FIX_SUMS | FZ_FIX_ID, s.bytes,
	    s.len);
	put("net-wire", "bad-mac-no-key", 0, s.bytes, s.len);
	d = s;
	m = d.at[1] + wire_get16(d.bytes + d.at[1] - 2) - 1;
	d.bytes[m] ^= 0x01;				/* epoch 2 part 0's MAC */
	put("net-wire", "bad-mac-flip", NET_FZ_KEY, d.bytes, d.len);
	memset(&d, 0, sizeof(d));
	add_message(&d, &other, FZ_SMALL_PAGE, 1, 0, 1, 0, 1, p4, 1, UINT64_MAX);
	put("net-wire", "bad-mac-other-key", NET_FZ_KEY, d.bytes, d.len);

	/* Parts out of order, and indices out of order inside a part. */
	memset(&d, 0, sizeof(d));
	add_message(&d, &none, FZ_SMALL_PAGE, 1, 1, 2, 1, 2, p4, 1, UINT64_MAX);
	add_message(&d, &none, FZ_SMALL_PAGE, 1, 0, 2, 0, 2, p4, 1, UINT64_MAX);
	put("net-wire", "bad-part-order", 0, d.bytes, d.len);
	memset(&d, 0, sizeof(d));
	add_message(&d, &none, FZ_SMALL_PAGE, 1, 0, 1, 0, 2, swapped, 2, UINT64_MAX);
	put("net-wire", "bad-index-order", 0, d.bytes, d.len);

	/* Term markers: after epoch 3; and after half of an epoch 4, which
	 * it drops, then epoch 4 again whole. */
	three_epochs(&s, &none);
	add_term(&s, &none, 3, 1);
	put("net-wire", "valid-term", 0, s.bytes, s.len);
	d = s;
	d.bytes[d.at[4] + WIRE_HEADER_SIZE + 24] = '\n';	/* its host name */
	put("net-wire", "bad-term-host-fixed", FZ_FIX_SUMS, d.bytes, d.len);
	three_epochs(&s, &key);
	add_term(&s, &key, 3, 2);
	put("net-wire", "valid-term-mac", NET_FZ_KEY, s.bytes, s.len);
	{
		static const uint64_t e4[] = { 1, 4 };

		three_epochs(&s, &none);
		add_message(&s, &none, FZ_SMALL_PAGE, 4, 0, 2, 0, 2, e4, 1, UINT64_MAX);
		add_term(&s, &none, 3, 1);
		add_message(&s, &none, FZ_SMALL_PAGE, 4, 0, 1, 0, 2, e4, 2, UINT64_MAX);
		put("net-wire", "valid-half-epoch-term", 0, s.bytes, s.len);
	}

	/* The machine's page size. */
	memset(&d, 0, sizeof(d));
	add_message(&d, &none, 4096, 1, 0, 1, 0, 1, p4, 1, UINT64_MAX);
	put("net-wire", "valid-4k-page", 0, d.bytes, d.len);
	wire_key_clear(&key);
}

/* ---- net-snapshot: a catch-up's values -------------------------------------- */

/* An input for net-snapshot: the standby's epoch, then values after their u32 lengths. */
struct values {
	unsigned char *bytes;
	size_t len, cap;
	size_t at[64];		/* where each value starts */
	int count;
};

static unsigned char *value_room(struct values *s, size_t max)
{
	if (s->len + 4 + max > s->cap) {
		s->cap = (s->len + 4 + max) * 2;
		s->bytes = realloc(s->bytes, s->cap);
		if (!s->bytes)
			exit(1);
	}
	return s->bytes + s->len + 4;
}

static void value_done(struct values *s, long len)
{
	if (len < 0)
		exit(1);
	wire_put32(s->bytes + s->len, (uint32_t)len);
	s->at[s->count++] = s->len + 4;
	s->len += 4 + (size_t)len;
}

/*
 * A snapshot at epoch 6 of a region of npages 512-byte pages: pages 0-3
 * written (generations 2, 6, 0, 4), the others never; the values a
 * follower at epoch `have` reads.  The page of generation 6 at npages - 1
 * when npages > 4, so that a second table has a page.
 */
static void snapshot(struct values *s, uint64_t npages, uint8_t have, const struct wire_key *k)
{
	static const pt_epoch_t gens[] = { 2, 6, 0, 4 };
	unsigned char page[FZ_SMALL_PAGE], zero[FZ_SMALL_PAGE] = { 0 }, scratch[FZ_SMALL_PAGE];
	struct pt_page_version *v = calloc(npages, sizeof(*v));
	struct snap_manifest m = {
		.history = FZ_HISTORY, .epoch = 6, .chain = 6000, .npages = npages,
		.page_size = FZ_SMALL_PAGE, .tables = snap_tables(npages), .written_ns = 1,
	};
	size_t max = snap_value_max(npages, FZ_SMALL_PAGE);

	m.table_sum = calloc(m.tables, 8);
	if (!v || !m.table_sum)
		exit(1);
	for (uint64_t p = 0; p < npages; p++) {
		v[p].generation = p < 4 ? gens[p] : p == npages - 1 ? 6 : 0;
		content(page, FZ_SMALL_PAGE, p, (uint64_t)v[p].generation);
		if (!v[p].generation)
			memset(page, 0, sizeof(page));
		v[p].checksum = pt_page_checksum(page, FZ_SMALL_PAGE);
	}
	/* The manifest first in the input, its table checksums known last. */
	memset(s, 0, sizeof(*s));
	value_room(s, max);
	s->bytes[0] = have;
	s->len = 1;
	value_done(s, snap_manifest_encode(value_room(s, max), &m, k));
	for (uint32_t t = 0; t < m.tables; t++) {
		unsigned char *out = value_room(s, max);
		long len = snap_table_encode(out, &m, t, v, k);

		m.table_sum[t] = wire_checksum(out, (size_t)len);
		value_done(s, len);
	}
	for (uint64_t p = 0; p < npages; p++) {
		if (v[p].generation <= have)
			continue;
		content(page, FZ_SMALL_PAGE, p, (uint64_t)v[p].generation);
		value_done(s, snap_page_encode(value_room(s, max), FZ_HISTORY, p, &v[p], page,
					       FZ_SMALL_PAGE, zero, scratch, k));
	}
	if (snap_manifest_encode(s->bytes + s->at[0], &m, k) < 0)
		exit(1);
	free(v);
	free(m.table_sum);
}

static void snapshot_seeds(void)
{
	struct wire_key none, key;
	struct values s = { 0 }, d = { 0 };

	net_fz_key(&none, false);
	net_fz_key(&key, true);
	snapshot(&s, 8, 0, &none);
	put("net-snapshot", "valid-new-standby", 0, s.bytes, s.len);
	put("net-snapshot", "valid-new-standby-fixed", FZ_FIX_SUMS | FZ_FIX_ID, s.bytes, s.len);
	put("net-snapshot", "bad-mac-missing", NET_FZ_KEY, s.bytes, s.len);
	d.bytes = malloc(s.len);
	memcpy(d.bytes, s.bytes, s.len);
	d.bytes[s.at[1] + 32 + 16 + 3] ^= 0x40;	/* table.0: page 1's generation */
	put("net-snapshot", "bad-table-flip", 0, d.bytes, s.len);
	put("net-snapshot", "bad-table-flip-fixed", FZ_FIX_SUMS, d.bytes, s.len);
	memcpy(d.bytes, s.bytes, s.len);
	d.bytes[s.at[2] + 32] ^= 0x07;		/* page.0: its generation */
	put("net-snapshot", "bad-page-generation-fixed", FZ_FIX_SUMS, d.bytes, s.len);
	memcpy(d.bytes, s.bytes, s.len);
	d.bytes[s.at[0] + 8] = 3;		/* the manifest's version */
	put("net-snapshot", "bad-version-fixed", FZ_FIX_SUMS, d.bytes, s.len);
	put("net-snapshot", "bad-truncated", 0, s.bytes, s.at[3] + 20);
	free(d.bytes);
	free(s.bytes);

	snapshot(&s, 8, 3, &none);
	put("net-snapshot", "valid-standby-at-3", 0, s.bytes, s.len);
	free(s.bytes);

	snapshot(&s, 8, 0, &key);
	put("net-snapshot", "valid-new-standby-mac", NET_FZ_KEY, s.bytes, s.len);
	put("net-snapshot", "valid-new-standby-mac-fixed", NET_FZ_KEY | FZ_FIX_SUMS | FZ_FIX_ID,
	    s.bytes, s.len);
	put("net-snapshot", "bad-mac-no-key", 0, s.bytes, s.len);
	s.bytes[s.at[3] - 5] ^= 0x01;		/* page.0's MAC (before page.1's length) */
	put("net-snapshot", "bad-mac-flip", NET_FZ_KEY, s.bytes, s.len);
	free(s.bytes);

	/* Two tables: the second of one page. */
	snapshot(&s, SNAP_TABLE_PAGES + 1, 0, &key);
	put("net-snapshot", "valid-two-tables-mac", NET_FZ_KEY, s.bytes, s.len);
	free(s.bytes);
	wire_key_clear(&key);
}

/* ---- net-status: a status record's file ----------------------------------- */

static void status_seeds(void)
{
	unsigned char b[STATUS_SIZE + 1];
	char host[] = "seed-host", stream[] = "fuzz", error[] = "stream fuzz: lost the server";
	struct status_record r = {
		.st = { .role = PT_NET_PUBLISHER, .pid = 4242, .host = host, .stream = stream,
			.last_error_text = "", .history_id = FZ_HISTORY, .epoch = 1234,
			.stream_seq = 1300, .epochs = 1234, .messages = 1300, .pages = 9000,
			.bytes_raw = 9000 * 4096ull, .bytes_wire = 2000000, .started_ns = 1000,
			.updated_ns = 2000 },
		.interval_ms = 1000,
	};

	status_record_put(b, &r);
	put("net-status", "valid-publisher", 0, b, STATUS_SIZE);
	put("net-status", "valid-publisher-fixed", FZ_FIX_SUMS | FZ_FIX_ID, b, STATUS_SIZE);
	put("net-status", "bad-short", 0, b, 300);
	put("net-status", "bad-long", 0, b, STATUS_SIZE + 1);
	b[100] ^= 0x04;
	put("net-status", "bad-checksum", 0, b, STATUS_SIZE);
	b[100] ^= 0x04;
	b[8] = 2;					/* the version */
	put("net-status", "bad-version", FZ_FIX_SUMS, b, STATUS_SIZE);
	b[8] = 1;
	b[192 + 3] = '\n';				/* a control byte in the host */
	put("net-status", "bad-control-byte", FZ_FIX_SUMS, b, STATUS_SIZE);

	r.st.role = PT_NET_FOLLOWER;
	r.st.last_error = -ECONNRESET;
	r.st.last_error_ns = 1500;
	r.st.last_error_text = error;
	r.st.lag_epochs = 5;
	r.st.lag_ms = 250;
	r.flags = STATUS_FLAG_CLOSED;
	status_record_put(b, &r);
	put("net-status", "valid-follower-closed", FZ_FIX_ID, b, STATUS_SIZE);
	put("net-status", "bad-renamed", 0, b, STATUS_SIZE);	/* under the publisher's name */
	r.st.last_error_ns = 0;
	status_record_put(b, &r);
	put("net-status", "bad-error-without-time", FZ_FIX_ID, b, STATUS_SIZE);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-net-seeds CORPUS_DIR\n");
		return 2;
	}
	corpus = argv[1];
	mkdir(corpus, 0755);
	wire_seeds();
	snapshot_seeds();
	status_seeds();
	return 0;
}
