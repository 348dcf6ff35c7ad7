/* SPDX-License-Identifier: MIT */
/*
 * book.c - price-time priority matching on fixed pools inside one block
 * (see book.h for the layout rules and why they exist).
 *
 * Levels of one side form a doubly linked list, best price first; orders of
 * one level form a FIFO.  Prices arrive around a mid, so a new level is
 * almost always found a few steps from the best one: a sorted list beats a
 * tree here and keeps depth queries a plain walk.
 *
 * Every mutation keeps the header's additive hash current: the old
 * contribution of a changed order or symbol is subtracted and the new one
 * added, so the hash costs a few XXH3 calls on 32 bytes per change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "book.h"

#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)

size_t xb_size(const struct xb_config *c)
{
	uint64_t off = ALIGN64(sizeof(struct xb_header));

	if (!c->nsymbols || c->nsymbols > XB_MAX_SYMBOLS || c->max_orders < 1 ||
	    c->max_levels < 1 || c->max_orders >= XB_NIL || c->max_levels >= XB_NIL ||
	    !c->trade_ring || (c->trade_ring & (c->trade_ring - 1)) || c->nsessions > (1u << 20) ||
	    c->level_chunk > 64 || (uint64_t)c->nsymbols * c->level_chunk >= c->max_levels)
		return 0;
	off += ALIGN64((uint64_t)c->nsymbols * sizeof(struct xb_symbol));
	off += ALIGN64((uint64_t)c->max_levels * sizeof(struct xb_level));
	off += ALIGN64((uint64_t)c->max_orders * sizeof(struct xb_order));
	off += ALIGN64((uint64_t)c->trade_ring * sizeof(struct xb_trade));
	off += ALIGN64((uint64_t)c->nsessions * sizeof(struct xb_session));
	return (size_t)off;
}

int xb_config_for_size(struct xb_config *c, uint32_t nsymbols, size_t size)
{
	uint64_t fixed, per_order, n;

	memset(c, 0, sizeof(*c));
	c->nsymbols = nsymbols;
	c->trade_ring = 4096;
	c->nsessions = 1024;
	c->level_chunk = 32;
	c->max_orders = 1;
	c->max_levels = nsymbols * c->level_chunk + 16;
	fixed = xb_size(c);
	if (!fixed || size <= fixed)
		return -EINVAL;
	/* One level per 4 orders: levels hold 4+ orders on average near the mid. */
	per_order = sizeof(struct xb_order) + sizeof(struct xb_level) / 4 + 1;
	fixed += (uint64_t)nsymbols * c->level_chunk * sizeof(struct xb_level);
	if (size <= fixed + 256)
		return -EINVAL;
	n = (size - fixed - 256) / per_order;
	if (n < 16)
		return -EINVAL;
	if (n >= XB_NIL - 1)
		n = XB_NIL - 2;
	c->max_orders = (uint32_t)n;
	/* Chunks, plus shared levels for the symbols that outgrow theirs. */
	c->max_levels = (uint32_t)(n / 4 > 16 ? n / 4 : 16);
	if ((uint64_t)c->max_levels < (uint64_t)nsymbols * c->level_chunk + 16)
		c->max_levels = nsymbols * c->level_chunk + 16;
	return xb_size(c) <= size ? 0 : -EINVAL;
}

static uint64_t symbol_hash(uint32_t s, const struct xb_symbol *y);

static void view(struct xb_book *b, void *mem, size_t size)
{
	char *base = mem;

	b->h = mem;
	b->sym = (struct xb_symbol *)(base + b->h->off_symbols);
	b->lvl = (struct xb_level *)(base + b->h->off_levels);
	b->ord = (struct xb_order *)(base + b->h->off_orders);
	b->trd = (struct xb_trade *)(base + b->h->off_trades);
	b->ses = (struct xb_session *)(base + b->h->off_sessions);
	b->size = size;
}

int xb_init(struct xb_book *b, void *mem, size_t size, const struct xb_config *c)
{
	struct xb_header *h = mem;
	size_t need = xb_size(c);
	uint64_t off;

	if (!need)
		return -EINVAL;
	if (size < need)
		return -ENOSPC;
	memset(h, 0, sizeof(*h));
	h->magic = XB_MAGIC;
	h->version = XB_VERSION;
	h->header_size = sizeof(*h);
	h->block_size = size;
	h->nsymbols = c->nsymbols;
	h->max_orders = c->max_orders;
	h->max_levels = c->max_levels;
	h->trade_ring = c->trade_ring;
	h->nsessions = c->nsessions;
	h->level_chunk = c->level_chunk;
	off = ALIGN64(sizeof(*h));
	h->off_symbols = off;
	off += ALIGN64((uint64_t)c->nsymbols * sizeof(struct xb_symbol));
	h->off_levels = off;
	off += ALIGN64((uint64_t)c->max_levels * sizeof(struct xb_level));
	h->off_orders = off;
	off += ALIGN64((uint64_t)c->max_orders * sizeof(struct xb_order));
	h->off_trades = off;
	off += ALIGN64((uint64_t)c->trade_ring * sizeof(struct xb_trade));
	h->off_sessions = off;
	h->next_serial = 1;
	h->level_bump = c->nsymbols * c->level_chunk;
	h->order_free_head = h->order_free_tail = h->level_free_head = XB_NIL;
	view(b, mem, size);
	/* Pools stay zero (the caller gave zeroed memory): untouched pages cost
	 * nothing to track or replicate.  Only the symbols need their links. */
	for (uint32_t s = 0; s < c->nsymbols; s++) {
		b->sym[s].best[0] = b->sym[s].best[1] = XB_NIL;
		b->sym[s].nlevels[0] = b->sym[s].nlevels[1] = 0;
		h->book_hash += symbol_hash(s, &b->sym[s]);
	}
	return 0;
}

static bool pool_fits(uint64_t off, uint64_t n, size_t elem, size_t size)
{
	return off % 8 == 0 && off <= size && n <= (size - off) / elem;
}

int xb_attach(struct xb_book *b, void *mem, size_t size)
{
	const struct xb_header *h = mem;

	if (size < sizeof(*h) || h->magic != XB_MAGIC)
		return -EBADMSG;
	if (h->version != XB_VERSION || h->header_size != sizeof(*h))
		return -EPROTO;
	if (h->block_size > size || !h->nsymbols || h->nsymbols > XB_MAX_SYMBOLS ||
	    !h->max_orders || h->max_orders >= XB_NIL || !h->max_levels ||
	    h->max_levels >= XB_NIL || !h->trade_ring || (h->trade_ring & (h->trade_ring - 1)) ||
	    h->level_chunk > 64 || (uint64_t)h->nsymbols * h->level_chunk >= h->max_levels ||
	    !pool_fits(h->off_symbols, h->nsymbols, sizeof(struct xb_symbol), size) ||
	    !pool_fits(h->off_levels, h->max_levels, sizeof(struct xb_level), size) ||
	    !pool_fits(h->off_orders, h->max_orders, sizeof(struct xb_order), size) ||
	    !pool_fits(h->off_trades, h->trade_ring, sizeof(struct xb_trade), size) ||
	    !pool_fits(h->off_sessions, h->nsessions, sizeof(struct xb_session), size))
		return -EINVAL;
	view(b, mem, size);
	return 0;
}

/* ---- the additive hash ------------------------------------------------- */

static uint64_t order_hash(const struct xb_order *o)
{
	struct { uint64_t id; int64_t price; uint32_t qty, sym, side, pad; } k = {
		o->id, o->price, o->qty, o->sym, o->side, 0
	};

	return XXH3_64bits(&k, sizeof(k));
}

static uint64_t symbol_hash(uint32_t s, const struct xb_symbol *y)
{
	struct { uint64_t s; int64_t last; uint64_t volume, trades; } k = {
		s, y->last_price, y->volume, y->trades
	};

	return XXH3_64bits_withSeed(&k, sizeof(k), 0x5359u);
}

uint64_t xb_hash_stored(const struct xb_book *b)
{
	return b->h->book_hash;
}

/* ---- pools --------------------------------------------------------------- */

static uint32_t order_alloc(struct xb_book *b)
{
	struct xb_header *h = b->h;
	uint32_t i;

	if (h->order_bump < h->max_orders)
		return h->order_bump++;
	i = h->order_free_head;
	if (i == XB_NIL)
		return XB_NIL;
	h->order_free_head = b->ord[i].next;
	if (h->order_free_head == XB_NIL)
		h->order_free_tail = XB_NIL;
	h->order_free_count--;
	return i;
}

static void order_free(struct xb_book *b, uint32_t i)
{
	struct xb_header *h = b->h;

	b->ord[i].next = XB_NIL;
	b->ord[i].prev = XB_NIL;
	b->ord[i].level = XB_NIL;
	if (h->order_free_tail != XB_NIL)
		b->ord[h->order_free_tail].next = i;
	else
		h->order_free_head = i;
	h->order_free_tail = i;
	h->order_free_count++;
}

static bool order_available(const struct xb_book *b)
{
	return b->h->order_bump < b->h->max_orders || b->h->order_free_head != XB_NIL;
}

static uint32_t chunk_start(const struct xb_book *b)
{
	return b->h->nsymbols * b->h->level_chunk;
}

static uint64_t chunk_mask(const struct xb_book *b)
{
	return b->h->level_chunk == 64 ? ~0ull : (1ull << b->h->level_chunk) - 1;
}

/* A level slot for symbol s: its own chunk first, then the shared pool. */
static uint32_t level_alloc(struct xb_book *b, uint32_t s)
{
	struct xb_header *h = b->h;
	uint64_t free_bits = ~b->sym[s].chunk_used & chunk_mask(b);
	uint32_t i;

	if (free_bits) {
		i = (uint32_t)__builtin_ctzll(free_bits);
		b->sym[s].chunk_used |= 1ull << i;
		return s * h->level_chunk + i;
	}
	if (h->level_bump < h->max_levels)
		return h->level_bump++;
	i = h->level_free_head;
	if (i == XB_NIL)
		return XB_NIL;
	h->level_free_head = b->lvl[i].next;
	h->level_free_count--;
	return i;
}

static void level_free(struct xb_book *b, uint32_t s, uint32_t i)
{
	memset(&b->lvl[i], 0, sizeof(b->lvl[i]));
	if (i < chunk_start(b)) {
		b->sym[s].chunk_used &= ~(1ull << (i - s * b->h->level_chunk));
		b->lvl[i].next = b->lvl[i].prev = XB_NIL;
		return;
	}
	b->lvl[i].next = b->h->level_free_head;
	b->lvl[i].prev = XB_NIL;
	b->h->level_free_head = i;
	b->h->level_free_count++;
}

static bool level_available(const struct xb_book *b, uint32_t s)
{
	return (~b->sym[s].chunk_used & chunk_mask(b)) || b->h->level_bump < b->h->max_levels ||
	       b->h->level_free_head != XB_NIL;
}

/* ---- book mutations ------------------------------------------------------- */

/* Is price p better than q for side s? */
static bool better(int side, int64_t p, int64_t q)
{
	return side == XB_BUY ? p > q : p < q;
}

static void level_unlink(struct xb_book *b, uint32_t s, int side, uint32_t li)
{
	struct xb_level *l = &b->lvl[li];

	if (l->prev != XB_NIL)
		b->lvl[l->prev].next = l->next;
	else
		b->sym[s].best[side] = l->next;
	if (l->next != XB_NIL)
		b->lvl[l->next].prev = l->prev;
	b->sym[s].nlevels[side]--;
	level_free(b, s, li);
}

/* Take order oi out of its level (freeing the level if it empties). */
static void order_unlink(struct xb_book *b, uint32_t oi)
{
	struct xb_order *o = &b->ord[oi];
	uint32_t li = o->level;
	struct xb_level *l = &b->lvl[li];

	if (o->prev != XB_NIL)
		b->ord[o->prev].next = o->next;
	else
		l->head = o->next;
	if (o->next != XB_NIL)
		b->ord[o->next].prev = o->prev;
	else
		l->tail = o->prev;
	l->norders--;
	l->qty -= o->qty;
	if (!l->norders)
		level_unlink(b, o->sym, o->side, li);
	b->h->live_orders--;
	b->h->book_hash -= order_hash(o);
}

/* Find or create the level of price p on one side; XB_NIL if the pool is empty. */
static uint32_t level_get(struct xb_book *b, uint32_t s, int side, int64_t p)
{
	uint32_t prev = XB_NIL, li = b->sym[s].best[side], ni;
	struct xb_level *n;

	while (li != XB_NIL && better(side, b->lvl[li].price, p)) {
		prev = li;
		li = b->lvl[li].next;
	}
	if (li != XB_NIL && b->lvl[li].price == p)
		return li;
	ni = level_alloc(b, s);
	if (ni == XB_NIL)
		return XB_NIL;
	n = &b->lvl[ni];
	n->price = p;
	n->qty = 0;
	n->norders = 0;
	n->head = n->tail = XB_NIL;
	n->prev = prev;
	n->next = li;
	if (prev != XB_NIL)
		b->lvl[prev].next = ni;
	else
		b->sym[s].best[side] = ni;
	if (li != XB_NIL)
		b->lvl[li].prev = ni;
	b->sym[s].nlevels[side]++;
	return ni;
}

static void trade(struct xb_book *b, uint32_t s, const struct xb_order *taker,
		  const struct xb_order *maker, uint32_t qty)
{
	struct xb_header *h = b->h;
	struct xb_symbol *y = &b->sym[s];
	struct xb_trade *t;

	h->book_hash -= symbol_hash(s, y);
	y->last_price = maker->price;
	y->volume += qty;
	y->trades++;
	h->book_hash += symbol_hash(s, y);
	h->trade_count++;
	t = &b->trd[(h->trade_count - 1) & (h->trade_ring - 1)];
	t->seq = h->trade_count;
	t->buy_id = taker->side == XB_BUY ? taker->id : maker->id;
	t->sell_id = taker->side == XB_BUY ? maker->id : taker->id;
	t->price = maker->price;
	t->qty = qty;
	t->sym = s;
	t->aggressor = taker->side;
}

int xb_submit(struct xb_book *b, uint32_t s, int side, int kind, int64_t price,
	      uint32_t qty, struct xb_result *res)
{
	struct xb_header *h = b->h;
	struct xb_order *o;
	uint32_t oi;
	int opp = !side;

	memset(res, 0, sizeof(*res));
	h->commands++;
	if ((side != XB_BUY && side != XB_SELL) || (kind != XB_LIMIT && kind != XB_MARKET) ||
	    !qty || qty > XB_MAX_QTY)
		return -EINVAL;
	if (kind == XB_LIMIT && (price <= 0 || price > XB_MAX_PRICE))
		return -EINVAL;
	if (s >= h->nsymbols)
		return -ENOENT;
	/* Check the pools before any change, so a rejected order changes nothing. */
	if (!order_available(b) || (kind == XB_LIMIT && !level_available(b, s)))
		return -ENOSPC;

	oi = order_alloc(b);
	o = &b->ord[oi];
	o->id = h->next_serial++ * (uint64_t)h->max_orders + oi;
	o->price = kind == XB_LIMIT ? price : 0;
	o->qty = qty;
	o->filled = 0;
	o->sym = s;
	o->side = (uint8_t)side;
	o->kind = (uint8_t)kind;
	o->status = XB_LIVE;
	o->level = o->next = o->prev = XB_NIL;
	res->order_id = o->id;

	while (o->qty) {
		uint32_t li = b->sym[s].best[opp], mi;
		struct xb_order *m;
		uint32_t q;

		if (li == XB_NIL)
			break;
		if (kind == XB_LIMIT && better(opp, price, b->lvl[li].price))
			break;	/* the best opposite price does not cross */
		mi = b->lvl[li].head;
		m = &b->ord[mi];
		q = o->qty < m->qty ? o->qty : m->qty;
		trade(b, s, o, m, q);
		res->ntrades++;
		o->qty -= q;
		o->filled += q;
		if (q == m->qty) {
			order_unlink(b, mi);
			m->filled += q;
			m->qty = 0;
			m->status = XB_FILLED;
			order_free(b, mi);
		} else {
			h->book_hash -= order_hash(m);
			m->qty -= q;
			m->filled += q;
			b->lvl[li].qty -= q;
			h->book_hash += order_hash(m);
		}
	}
	res->filled = o->filled;
	if (!o->qty) {
		o->status = XB_FILLED;
		order_free(b, oi);
	} else if (kind == XB_MARKET) {
		o->status = XB_KILLED;
		order_free(b, oi);
	} else {
		/* Matching only frees levels, so the check above still holds. */
		uint32_t li = level_get(b, s, side, price);
		struct xb_level *l = &b->lvl[li];

		o->level = li;
		o->prev = l->tail;
		o->next = XB_NIL;
		if (l->tail != XB_NIL)
			b->ord[l->tail].next = oi;
		else
			l->head = oi;
		l->tail = oi;
		l->norders++;
		l->qty += o->qty;
		h->live_orders++;
		h->book_hash += order_hash(o);
		res->remaining = o->qty;
	}
	res->status = o->status;
	return 0;
}

int xb_cancel(struct xb_book *b, uint64_t id, struct xb_result *res)
{
	struct xb_header *h = b->h;
	uint32_t oi = (uint32_t)(id % h->max_orders);
	struct xb_order *o = &b->ord[oi];

	memset(res, 0, sizeof(*res));
	h->commands++;
	res->order_id = id;
	if (!id || o->id != id) {
		/* Reused slot: the order existed and ended; else it never did. */
		if (id && id / h->max_orders < h->next_serial && o->id > id)
			return -EALREADY;
		return -ENOENT;
	}
	if (o->status != XB_LIVE) {
		res->status = o->status;
		return -EALREADY;
	}
	order_unlink(b, oi);
	o->status = XB_CANCELLED;
	res->remaining = o->qty;	/* what was cancelled */
	res->status = XB_CANCELLED;
	order_free(b, oi);
	return 0;
}

void xb_session_note(struct xb_book *b, uint32_t session, uint64_t seq)
{
	if (session >= b->h->nsessions)
		return;
	b->ses[session].last_seq = seq;
	b->ses[session].commands++;
}

/* ---- readers ---------------------------------------------------------------- */

int xb_depth(const struct xb_book *b, uint32_t s, int side, struct xb_level_view *out,
	     uint32_t max)
{
	const struct xb_header *h = b->h;
	uint32_t li, n = 0;

	if (s >= h->nsymbols || (side != XB_BUY && side != XB_SELL))
		return -EINVAL;
	li = b->sym[s].best[side];
	while (li != XB_NIL && n < max) {
		if (li >= h->max_levels)
			return -EIO;
		out[n].price = b->lvl[li].price;
		out[n].qty = b->lvl[li].qty;
		out[n].norders = b->lvl[li].norders;
		n++;
		li = b->lvl[li].next;
	}
	return (int)n;
}

int xb_trades(const struct xb_book *b, uint32_t s, struct xb_trade *out, uint32_t max)
{
	const struct xb_header *h = b->h;
	uint64_t seq = h->trade_count, stop;
	uint32_t n = 0;

	stop = seq > h->trade_ring ? seq - h->trade_ring : 0;
	for (; seq > stop && n < max; seq--) {
		const struct xb_trade *t = &b->trd[(seq - 1) & (h->trade_ring - 1)];

		if (t->seq != seq)
			return -EIO;
		if (s != XB_NIL && t->sym != s)
			continue;
		out[n++] = *t;
	}
	return (int)n;
}

int xb_order(const struct xb_book *b, uint64_t id, struct xb_order *out)
{
	const struct xb_header *h = b->h;
	const struct xb_order *o;

	if (!id)
		return -ENOENT;
	o = &b->ord[id % h->max_orders];
	if (o->id != id)
		return id / h->max_orders < h->next_serial && o->id > id ? -EALREADY : -ENOENT;
	*out = *o;
	return 0;
}

/* ---- hash walk and validation ------------------------------------------------ */

#define FAIL(...) do { snprintf(why, why_len, __VA_ARGS__); ret = -EIO; goto out; } while (0)

/*
 * Walk every book, checking structure as it goes; sum the hash on the way.
 * seen (may be NULL) gets a bit per live order visited, to catch an order
 * linked twice.
 */
static int walk(const struct xb_book *b, uint64_t *hash, uint64_t *nlive, uint64_t *nlevels,
		uint8_t *seen, char *why, size_t why_len)
{
	const struct xb_header *h = b->h;
	uint64_t sum = 0, live = 0, levels = 0, chunk_levels = 0;
	int ret = 0;

	for (uint32_t s = 0; s < h->nsymbols; s++) {
		const struct xb_symbol *y = &b->sym[s];

		sum += symbol_hash(s, y);
		for (int side = 0; side < 2; side++) {
			uint32_t li = y->best[side], prev = XB_NIL, count = 0;
			int64_t last = 0;

			while (li != XB_NIL) {
				const struct xb_level *l;
				uint32_t oi, oprev = XB_NIL, n = 0;
				uint64_t qty = 0, last_id = 0;

				if (li >= h->max_levels || ++count > h->max_levels)
					FAIL("symbol %u side %d: bad level index %u", s, side, li);
				if (li < h->nsymbols * h->level_chunk &&
				    (li / h->level_chunk != s ||
				     !(y->chunk_used & (1ull << (li % h->level_chunk)))))
					FAIL("symbol %u: level %u is not in its chunk or not marked used",
					     s, li);
				l = &b->lvl[li];
				if (l->prev != prev)
					FAIL("symbol %u side %d: level %u back link %u, want %u",
					     s, side, li, l->prev, prev);
				if (l->price <= 0 || l->price > XB_MAX_PRICE)
					FAIL("symbol %u: level %u price %lld", s, li, (long long)l->price);
				if (prev != XB_NIL && !better(side, last, l->price))
					FAIL("symbol %u side %d: levels not sorted (%lld then %lld)",
					     s, side, (long long)last, (long long)l->price);
				for (oi = l->head; oi != XB_NIL; oi = b->ord[oi].next) {
					const struct xb_order *o;

					if (oi >= h->max_orders || ++n > l->norders)
						FAIL("symbol %u level %u: bad order index %u or count",
						     s, li, oi);
					o = &b->ord[oi];
					if (o->prev != oprev || o->level != li || o->sym != s ||
					    o->side != side || o->status != XB_LIVE || !o->qty ||
					    o->price != l->price || o->kind != XB_LIMIT)
						FAIL("symbol %u level %u: order %u inconsistent "
						     "(status %u qty %u price %lld)", s, li, oi,
						     o->status, o->qty, (long long)o->price);
					if (o->id <= last_id || o->id % h->max_orders != oi ||
					    o->id / h->max_orders >= h->next_serial)
						FAIL("symbol %u level %u: order %u id %llu out of order",
						     s, li, oi, (unsigned long long)o->id);
					if (seen) {
						if (seen[oi / 8] & (1u << (oi % 8)))
							FAIL("order %u linked twice", oi);
						seen[oi / 8] |= (uint8_t)(1u << (oi % 8));
					}
					last_id = o->id;
					qty += o->qty;
					sum += order_hash(o);
					oprev = oi;
				}
				if (n != l->norders || !n || l->tail != oprev || qty != l->qty)
					FAIL("symbol %u level %u: %u orders qty %llu, header says %u "
					     "qty %llu", s, li, n, (unsigned long long)qty, l->norders,
					     (unsigned long long)l->qty);
				live += n;
				last = l->price;
				prev = li;
				li = l->next;
			}
			if (count != y->nlevels[side])
				FAIL("symbol %u side %d: %u levels, header says %u", s, side, count,
				     y->nlevels[side]);
			levels += count;
		}
		chunk_levels += (uint64_t)__builtin_popcountll(y->chunk_used);
		if (y->chunk_used & ~(h->level_chunk == 64 ? ~0ull : (1ull << h->level_chunk) - 1))
			FAIL("symbol %u: chunk bits past its chunk", s);
		if (y->best[0] != XB_NIL && y->best[1] != XB_NIL &&
		    b->lvl[y->best[0]].price >= b->lvl[y->best[1]].price)
			FAIL("symbol %u: crossed book (bid %lld >= ask %lld)", s,
			     (long long)b->lvl[y->best[0]].price, (long long)b->lvl[y->best[1]].price);
	}
	/* Every chunk slot marked used holds a level of the books. */
	{
		uint64_t in_chunks = 0;

		for (uint32_t s = 0; s < h->nsymbols && h->level_chunk; s++)
			for (int side = 0; side < 2; side++)
				for (uint32_t li = b->sym[s].best[side], k = 0;
				     li != XB_NIL && k < h->max_levels; li = b->lvl[li].next, k++)
					in_chunks += li < h->nsymbols * h->level_chunk;
		if (in_chunks != chunk_levels)
			FAIL("%llu chunk slots marked used, %llu levels in chunks",
			     (unsigned long long)chunk_levels, (unsigned long long)in_chunks);
		levels -= in_chunks;	/* the caller accounts for the shared pool */
	}
out:
	*hash = sum;
	*nlive = live;
	*nlevels = levels;
	return ret;
}

uint64_t xb_hash_walk(const struct xb_book *b, int *err)
{
	uint64_t hash, live, levels;
	char why[8];
	int ret = walk(b, &hash, &live, &levels, NULL, why, sizeof(why));

	if (err)
		*err = ret;
	return hash;
}

int xb_validate(const struct xb_book *b, char *why, size_t why_len)
{
	const struct xb_header *h = b->h;
	uint64_t hash, live, levels, n;
	uint8_t *seen = calloc(h->max_orders / 8 + 1, 1);
	uint32_t i;
	int ret;

	if (!seen) {
		snprintf(why, why_len, "out of memory");
		return -ENOMEM;
	}
	ret = walk(b, &hash, &live, &levels, seen, why, why_len);
	if (ret)
		goto out;
	if (hash != h->book_hash)
		FAIL("stored hash %016llx, books hash to %016llx", (unsigned long long)h->book_hash,
		     (unsigned long long)hash);
	if (live != h->live_orders)
		FAIL("%llu live orders in the books, header says %llu", (unsigned long long)live,
		     (unsigned long long)h->live_orders);
	if (h->order_bump > h->max_orders || h->level_bump > h->max_levels ||
	    h->level_bump < h->nsymbols * h->level_chunk)
		FAIL("bump pointers outside the pools");
	/* Order free list: FIFO, every slot in it ended, none of them live. */
	n = 0;
	for (i = h->order_free_head; i != XB_NIL; i = b->ord[i].next) {
		if (i >= h->order_bump || ++n > h->order_free_count)
			FAIL("order free list: bad index %u or longer than %u", i,
			     h->order_free_count);
		if (seen[i / 8] & (1u << (i % 8)))
			FAIL("order %u both live and free", i);
		if (b->ord[i].status == XB_LIVE || b->ord[i].status == XB_FREE)
			FAIL("free order %u has status %u", i, b->ord[i].status);
		if (b->ord[i].next == XB_NIL && i != h->order_free_tail)
			FAIL("order free list ends at %u, tail says %u", i, h->order_free_tail);
	}
	if (n != h->order_free_count)
		FAIL("order free list holds %llu, header says %u", (unsigned long long)n,
		     h->order_free_count);
	if (live + n != h->order_bump)
		FAIL("orders: %llu live + %llu free != %u used", (unsigned long long)live,
		     (unsigned long long)n, h->order_bump);
	n = 0;
	for (i = h->level_free_head; i != XB_NIL; i = b->lvl[i].next)
		if (i >= h->level_bump || i < h->nsymbols * h->level_chunk ||
		    ++n > h->level_free_count)
			FAIL("level free list: bad index %u", i);
	if (n != h->level_free_count || levels + n != h->level_bump - h->nsymbols * h->level_chunk)
		FAIL("shared levels: %llu in books + %llu free != %u used", (unsigned long long)levels,
		     (unsigned long long)n, h->level_bump - h->nsymbols * h->level_chunk);
	if (h->trade_count && b->trd[(h->trade_count - 1) & (h->trade_ring - 1)].seq !=
	    h->trade_count)
		FAIL("trade ring: newest slot does not hold trade %llu",
		     (unsigned long long)h->trade_count);
out:
	free(seen);
	return ret;
}
