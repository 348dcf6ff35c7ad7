/* Fuzz target: bytes as a stream's messages, checked, authenticated and decoded as a follower takes them. */
/*
 * Input: a flags byte (fuzz.h; NET_FZ_KEY, fuzz-net.h: the follower holds
 * the fuzz key), then messages, each a little-endian u16 length and its bytes.
 * They go through what the follower's take() does with a message before
 * its standby sees anything: wire_check() (a term marker's body too),
 * wire_authenticate() with the key or none, then for an epoch message the
 * part sequence (wire_next_part()) and wire_decode() into an epoch buffer
 * of page_count pages against the "old" content of each page, and at the
 * last part, all pages there; a term marker drops a half-received epoch,
 * as take_term() does.  The first refused
 * message ends the input, as it stops a follower.  The follower's checks
 * against its standby (history, epoch and chain, the system's page size)
 * are not made: the decoders must be safe without them.
 *
 * FZ_FIX_SUMS recomputes a message's body length, body and header
 * checksums and, for a version with a MAC and the key, its MAC, so that
 * the fuzzer reaches the checks behind them; FZ_FIX_ID also writes the
 * magic, the header size and the version (2 or, for a term marker, 4 with
 * NET_FZ_KEY; else 1 or 3).
 *
 * What must hold: no access outside the message or the epoch buffer
 * (ASan), no undefined behaviour (UBSan), decoded indices ascending and
 * below npages, and a whole epoch exactly page_count pages.
 */
#include "fuzz.h"
#include "fuzz-net.h"

#define NW_MAX_MSGS	16
/* An epoch buffer larger than this is refused here (a follower would try
 * to allocate it; its size is bounded by the region the message claims). */
#define NW_MAX_EPOCH	(32u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct epoch {
	bool assembling;
	struct wire_header first;
	uint32_t next_part, got;
	uint64_t *index;
	unsigned char *data;
	unsigned char *old;		/* the content every page had before */
};

static const unsigned char *old_page(uint64_t index, void *arg)
{
	struct epoch *e = arg;

	if (index >= e->first.npages)
		abort();	/* the decoder asked for a page outside the region */
	return e->old;
}

static void fix(unsigned char *m, size_t len, uint8_t flags, const struct wire_key *key)
{
	size_t mac;

	if (len < WIRE_HEADER_SIZE)
		return;
	if (flags & FZ_FIX_ID) {
		bool term = wire_get16(m + 10) & WIRE_FLAG_TERM;

		memcpy(m, WIRE_MAGIC, 8);
		wire_put16(m + 8, term ? (flags & NET_FZ_KEY ? WIRE_VERSION_TERM_MAC : WIRE_VERSION_TERM) :
			   (flags & NET_FZ_KEY ? WIRE_VERSION_MAC : WIRE_VERSION));
		wire_put32(m + 12, WIRE_HEADER_SIZE);
		wire_put64(m + 112, 0);
	}
	mac = wire_has_mac(wire_get16(m + 8)) ? WIRE_MAC_SIZE : 0;
	if (len < WIRE_HEADER_SIZE + mac)
		return;
	wire_put64(m + 88, len - WIRE_HEADER_SIZE - mac);
	wire_put64(m + 96, wire_checksum(m + WIRE_HEADER_SIZE, len - WIRE_HEADER_SIZE - mac));
	wire_put64(m + 120, wire_checksum(m, 120));
	if (mac && key->len && wire_seal(m, len - mac, key) < 0)
		abort();
}

/* The follower's take(), up to the decoded epoch: false when it would stop. */
static bool take(struct epoch *e, const unsigned char *m, size_t len, const struct wire_key *key)
{
	struct wire_header h;
	char why[256];
	size_t ps;

	if (wire_check(m, len, &h, why, sizeof(why)) ||
	    wire_authenticate(m, len, &h, key, why, sizeof(why)))
		return false;
	if (h.flags & WIRE_FLAG_TERM) {
		if (!h.term.term || strnlen(h.term.host, sizeof(h.term.host)) == sizeof(h.term.host))
			abort();	/* wire_check passed a marker it promises to refuse */
		e->assembling = false;
		return true;
	}
	ps = h.page_size;
	if (!e->assembling) {
		if (h.part)
			return false;	/* a gap: the follower goes to the snapshot */
		if ((uint64_t)h.page_count * ps > NW_MAX_EPOCH)
			return false;
		free(e->index);
		free(e->data);
		free(e->old);
		e->index = malloc(((size_t)h.page_count + 1) * sizeof(*e->index));
		e->data = malloc((size_t)h.page_count * ps + 1);
		e->old = malloc(ps);
		if (!e->index || !e->data || !e->old)
			abort();
		memset(e->old, 0xa5, ps);
		e->first = h;
		e->next_part = 0;
		e->got = 0;
		e->assembling = true;
	} else if (!wire_next_part(&e->first, e->next_part, e->got, &h)) {
		return false;
	}
	if (wire_decode(&h, m + WIRE_HEADER_SIZE, e->got ? e->index[e->got - 1] : UINT64_MAX,
			e->index + e->got, e->data + (size_t)e->got * ps, old_page, e, why,
			sizeof(why)))
		return false;
	for (uint32_t i = e->got; i < e->got + h.count; i++)
		if (e->index[i] >= h.npages || (i && e->index[i] <= e->index[i - 1]))
			abort();	/* the decoder let an index through out of order or range */
	e->got += h.count;
	e->next_part++;
	if (h.part + 1 < h.parts)
		return true;
	e->assembling = false;
	if (e->got != h.page_count)
		return false;
	/* Applied: every page of the epoch is read, as the follower writes it. */
	{
		volatile uint64_t sink = wire_checksum(e->data, (size_t)e->got * ps);

		(void)sink;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_key key;
	struct epoch e = { 0 };
	uint8_t flags;

	if (!size || size > FZ_MAX_FILE)
		return -1;
	flags = data[0];
	data++;
	size--;
	net_fz_key(&key, flags & NET_FZ_KEY);
	for (int n = 0; n < NW_MAX_MSGS && size >= 2; n++) {
		size_t len = wire_get16(data);
		unsigned char *m;
		bool ok;

		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		/* A copy of its exact size, so that ASan sees a read past it. */
		m = malloc(len ? len : 1);
		if (!m)
			abort();
		memcpy(m, data, len);
		data += len;
		size -= len;
		if (flags & FZ_FIX_SUMS)
			fix(m, len, flags, &key);
		ok = take(&e, m, len, &key);
		free(m);
		if (!ok)
			break;
	}
	free(e.index);
	free(e.data);
	free(e.old);
	wire_key_clear(&key);
	return 0;
}
