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
 *
 * Slots come from groups of one page (book.h says why).  The hint chain of
 * an allocation (the neighbour's group, then the family's current group,
 * then a fresh group) keeps a level's orders and a symbol's levels on few
 * pages; a fresh group comes from the never-used part of the pool, else
 * from a sweep over the groups for one at least half free, else any slot at
 * all, so a pool with one free slot still takes an order.  (Taking slots
 * first on pages the current epoch already wrote, wherever they are, was
 * tried: it saves a page now and scatters the level's FIFO, and after
 * one to four million orders wrote 13-37% more pages per epoch.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "book.h"

#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)
#define ALIGN4K(x) (((x) + 4095) & ~(uint64_t)4095)

_Static_assert(sizeof(struct xb_order) * XB_GROUP == 4096, "an order group is one page");
_Static_assert(sizeof(struct xb_level) * XB_GROUP == 4096, "a level group is one page");

/* Symbols s - s % XB_FAMILY .. share a current group (see book.h). */
#define XB_FAMILY 16

static uint32_t ngroups(uint32_t slots)
{
	return (slots + XB_GROUP - 1) / XB_GROUP;
}


/* The layout: every offset, from the config (the one place that decides it). */
struct layout {
	uint64_t symbols, level_groups, order_groups, levels, orders, trades, sessions, end;
};

static void lay_out(const struct xb_config *c, struct layout *l)
{
	uint64_t off = ALIGN64(sizeof(struct xb_header));

	l->symbols = off;
	off += ALIGN64((uint64_t)c->nsymbols * sizeof(struct xb_symbol));
	l->level_groups = off;
	off += ALIGN64((uint64_t)ngroups(c->max_levels) * sizeof(struct xb_group));
	l->order_groups = off;
	off += ALIGN64((uint64_t)ngroups(c->max_orders) * sizeof(struct xb_group));
	off = ALIGN4K(off);
	l->levels = off;
	off += ALIGN4K((uint64_t)c->max_levels * sizeof(struct xb_level));
	l->orders = off;
	off += ALIGN64((uint64_t)c->max_orders * sizeof(struct xb_order));
	l->trades = off;
	off += ALIGN64((uint64_t)c->trade_ring * sizeof(struct xb_trade));
	l->sessions = off;
	off += ALIGN64((uint64_t)c->nsessions * sizeof(struct xb_session));
	l->end = off;
}

size_t xb_size(const struct xb_config *c)
{
	struct layout l;

	if (!c->nsymbols || c->nsymbols > XB_MAX_SYMBOLS || c->max_orders < 1 ||
	    c->max_levels < 1 || c->max_orders >= XB_NIL - XB_GROUP ||
	    c->max_levels >= XB_NIL - XB_GROUP || !c->trade_ring ||
	    (c->trade_ring & (c->trade_ring - 1)) || c->nsessions > (1u << 20))
		return 0;
	lay_out(c, &l);
	return (size_t)l.end;
}

int xb_config_for_size(struct xb_config *c, uint32_t nsymbols, size_t size)
{
	uint64_t fixed, per_order, n;

	memset(c, 0, sizeof(*c));
	c->nsymbols = nsymbols;
	c->trade_ring = 4096;
	c->nsessions = 1024;
	c->max_orders = 1;
	c->max_levels = 1;
	fixed = xb_size(c);
	if (!fixed || size <= fixed + 3 * 4096)
		return -EINVAL;
	/* One level per 4 orders: levels hold 4+ orders on average near the mid;
	 * each slot also has its share of a group's directory entry. */
	per_order = sizeof(struct xb_order) + sizeof(struct xb_level) / 4 + 2 * sizeof(struct xb_group);
	n = (size - fixed - 3 * 4096) / per_order;
	if (n < 16)
		return -EINVAL;
	if (n >= XB_NIL - 2 * XB_GROUP)
		n = XB_NIL - 2 * XB_GROUP;
	c->max_orders = (uint32_t)n;
	c->max_levels = (uint32_t)(n / 4 > 16 ? n / 4 : 16);
	while (xb_size(c) > size && c->max_orders > 16) {
		c->max_orders -= c->max_orders / 64 + 1;
		c->max_levels = c->max_orders / 4 > 16 ? c->max_orders / 4 : 16;
	}
	return xb_size(c) && xb_size(c) <= size ? 0 : -EINVAL;
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
	b->lgrp = (struct xb_group *)(base + b->h->off_level_groups);
	b->ogrp = (struct xb_group *)(base + b->h->off_order_groups);
	b->size = size;
}

int xb_init(struct xb_book *b, void *mem, size_t size, const struct xb_config *c)
{
	struct xb_header *h = mem;
	size_t need = xb_size(c);
	struct layout l;

	if (!need)
		return -EINVAL;
	if (size < need)
		return -ENOSPC;
	lay_out(c, &l);
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
	h->off_symbols = l.symbols;
	h->off_level_groups = l.level_groups;
	h->off_order_groups = l.order_groups;
	h->off_levels = l.levels;
	h->off_orders = l.orders;
	h->off_trades = l.trades;
	h->off_sessions = l.sessions;
	h->next_serial = 1;
	view(b, mem, size);
	/* Pools and group directories stay zero (the caller gave zeroed
	 * memory): untouched pages cost nothing to track or replicate.  A group
	 * is set up when it is first handed out.  Only the symbols need links. */
	for (uint32_t s = 0; s < c->nsymbols; s++) {
		b->sym[s].best[0] = b->sym[s].best[1] = XB_NIL;
		b->sym[s].nlevels[0] = b->sym[s].nlevels[1] = 0;
		b->sym[s].level_group = b->sym[s].order_group = XB_NIL;
		h->book_hash += symbol_hash(s, &b->sym[s]);
	}
	return 0;
}

int xb_attach(struct xb_book *b, void *mem, size_t size)
{
	const struct xb_header *h = mem;
	struct xb_config c;
	struct layout l;

	if (size < sizeof(*h) || h->magic != XB_MAGIC)
		return -EBADMSG;
	if (h->version != XB_VERSION || h->header_size != sizeof(*h))
		return -EPROTO;
	c = (struct xb_config){ .nsymbols = h->nsymbols, .max_orders = h->max_orders,
				.max_levels = h->max_levels, .trade_ring = h->trade_ring,
				.nsessions = h->nsessions };
	/* The layout follows from the sizes: any other offset is damage. */
	if (h->block_size > size || !xb_size(&c) || xb_size(&c) > h->block_size)
		return -EINVAL;
	lay_out(&c, &l);
	if (h->off_symbols != l.symbols || h->off_level_groups != l.level_groups ||
	    h->off_order_groups != l.order_groups || h->off_levels != l.levels ||
	    h->off_orders != l.orders || h->off_trades != l.trades || h->off_sessions != l.sessions)
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

/* ---- pools ---------------------------------------------------------------- */

/*
 * One allocator for both pools: slots in groups of XB_GROUP with a
 * directory entry each; next is the free-chain field of the slot type.
 */
struct pool {
	uint32_t max, *bump, *nfree, *cursor;
	struct xb_group *grp;
	uint32_t *(*next)(struct xb_book *b, uint32_t i);
};

static uint32_t *order_next(struct xb_book *b, uint32_t i)
{
	return &b->ord[i].next;
}

static uint32_t *level_next(struct xb_book *b, uint32_t i)
{
	return &b->lvl[i].next;
}

static struct pool orders(struct xb_book *b)
{
	return (struct pool){ b->h->max_orders, &b->h->order_bump, &b->h->order_free,
			      &b->h->order_cursor, b->ogrp, order_next };
}

static struct pool levels(struct xb_book *b)
{
	return (struct pool){ b->h->max_levels, &b->h->level_bump, &b->h->level_free,
			      &b->h->level_cursor, b->lgrp, level_next };
}

static bool pool_available(const struct pool *p)
{
	return *p->nfree || *p->bump < p->max;
}

static uint32_t group_size(const struct pool *p, uint32_t g)
{
	return p->max - g * XB_GROUP < XB_GROUP ? p->max - g * XB_GROUP : XB_GROUP;
}

/*
 * Look from the cursor through at most limit groups for one with at least
 * want free slots; move the cursor past it.  Reads only.
 */
static uint32_t sweep_groups(struct pool *p, uint32_t want, uint32_t limit)
{
	uint32_t n = ngroups(*p->bump), g;

	for (uint32_t k = 0; k < n && k < limit; k++) {
		g = (*p->cursor + k) % n;
		if (p->grp[g].nfree >= want) {
			if (*p->cursor != (g + 1) % n)
				*p->cursor = (g + 1) % n;
			return g;
		}
	}
	return XB_NIL;
}

/*
 * A group with room that the hints did not give: one at least half free,
 * so the symbol that takes it keeps it a while; else a never-used one;
 * else any room at all.  Half-free groups come before never-used ones so
 * that the pages the books touch stay what their live orders need: taking
 * fresh groups first, a steady book kept touching new pages until the
 * whole pool had been used once (the engine's RSS, and every copy's, grew
 * by ~1 MiB a minute at the demo's rate for half an hour).  The first look
 * is bounded (SWEEP_LIMIT groups from a cursor that moves on), so dense
 * books do not pay a sweep of the whole directory per group.
 */
#define SWEEP_LIMIT 256u

static uint32_t fresh_group(struct xb_book *b, struct pool *p)
{
	uint32_t g = sweep_groups(p, XB_GROUP / 2, SWEEP_LIMIT);

	if (g != XB_NIL)
		return g;
	if (*p->bump < p->max) {
		uint32_t size;

		g = *p->bump / XB_GROUP;
		size = group_size(p, g);
		/* Chain its slots, first one on top: writes to the page the
		 * caller is about to write anyway. */
		for (uint32_t k = 0; k < size; k++)
			*p->next(b, g * XB_GROUP + k) = k + 1 < size ? g * XB_GROUP + k + 1 : XB_NIL;
		p->grp[g].free_head = g * XB_GROUP;
		p->grp[g].nfree = size;
		*p->nfree += size;
		*p->bump = g * XB_GROUP + size;
		return g;
	}
	/* The pool is full: the whole directory, half free first. */
	g = sweep_groups(p, XB_GROUP / 2, UINT32_MAX);
	return g != XB_NIL ? g : sweep_groups(p, 1, UINT32_MAX);
}

static bool group_has_room(const struct pool *p, uint32_t g)
{
	return g != XB_NIL && g < ngroups(*p->bump) && p->grp[g].nfree;
}

/* A group with room for a new slot, by the block's hints only. */
static uint32_t pick_group(struct xb_book *b, struct pool *p, uint32_t g, uint32_t *current)
{
	if (group_has_room(p, g))
		return g;
	g = *current;
	if (!group_has_room(p, g)) {
		g = fresh_group(b, p);
		if (g != XB_NIL)
			*current = g;
	}
	return g;
}

/*
 * A slot near hint (a slot index or XB_NIL), else in *current (the
 * group of the symbol's family, updated when a fresh one is taken).
 * XB_NIL if the pool is full.
 */
static uint32_t pool_alloc(struct xb_book *b, struct pool *p, uint32_t hint, uint32_t *current)
{
	uint32_t g = hint != XB_NIL ? hint / XB_GROUP : XB_NIL, i;

	g = pick_group(b, p, g, current);
	if (g == XB_NIL)
		return XB_NIL;
	i = p->grp[g].free_head;
	p->grp[g].free_head = *p->next(b, i);
	p->grp[g].nfree--;
	(*p->nfree)--;
	return i;
}

static void pool_free(struct xb_book *b, struct pool *p, uint32_t i)
{
	uint32_t g = i / XB_GROUP;

	*p->next(b, i) = p->grp[g].free_head;
	p->grp[g].free_head = i;
	p->grp[g].nfree++;
	(*p->nfree)++;
}

static uint32_t order_alloc(struct xb_book *b, uint32_t s, uint32_t hint)
{
	struct pool p = orders(b);

	return pool_alloc(b, &p, hint, &b->sym[s - s % XB_FAMILY].order_group);
}

static void order_free(struct xb_book *b, uint32_t i)
{
	struct pool p = orders(b);

	b->ord[i].prev = XB_NIL;
	b->ord[i].level = XB_NIL;
	pool_free(b, &p, i);
}

static bool order_available(struct xb_book *b)
{
	struct pool p = orders(b);

	return pool_available(&p);
}

static uint32_t level_alloc(struct xb_book *b, uint32_t s, uint32_t hint)
{
	struct pool p = levels(b);

	return pool_alloc(b, &p, hint, &b->sym[s - s % XB_FAMILY].level_group);
}

static void level_free(struct xb_book *b, uint32_t i)
{
	struct pool p = levels(b);

	memset(&b->lvl[i], 0, sizeof(b->lvl[i]));
	b->lvl[i].prev = XB_NIL;
	pool_free(b, &p, i);
}

static bool level_available(struct xb_book *b)
{
	struct pool p = levels(b);

	return pool_available(&p);
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
	level_free(b, li);
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

/*
 * Where price p goes on one side: *at is its level (XB_NIL if it has none),
 * *prev the better level before it, *next the worse one after it.
 */
static void level_find(const struct xb_book *b, uint32_t s, int side, int64_t p, uint32_t *prev,
		       uint32_t *at, uint32_t *next)
{
	uint32_t pv = XB_NIL, li = b->sym[s].best[side];

	while (li != XB_NIL && better(side, b->lvl[li].price, p)) {
		pv = li;
		li = b->lvl[li].next;
	}
	*prev = pv;
	if (li != XB_NIL && b->lvl[li].price == p) {
		*at = li;
		*next = b->lvl[li].next;
	} else {
		*at = XB_NIL;
		*next = li;
	}
}

/* A new level of price p between prev and next (level_find); XB_NIL if the pool is empty. */
static uint32_t level_insert(struct xb_book *b, uint32_t s, int side, int64_t p, uint32_t prev,
			     uint32_t next)
{
	uint32_t ni = level_alloc(b, s, prev != XB_NIL ? prev : next);
	struct xb_level *n;

	if (ni == XB_NIL)
		return XB_NIL;
	n = &b->lvl[ni];
	n->price = p;
	n->qty = 0;
	n->norders = 0;
	n->head = n->tail = XB_NIL;
	n->prev = prev;
	n->next = next;
	if (prev != XB_NIL)
		b->lvl[prev].next = ni;
	else
		b->sym[s].best[side] = ni;
	if (next != XB_NIL)
		b->lvl[next].prev = ni;
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
	uint32_t oi, prev = XB_NIL, at = XB_NIL, next = XB_NIL, hint = XB_NIL;
	struct xb_order *o;
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
	if (!order_available(b) || (kind == XB_LIMIT && !level_available(b)))
		return -ENOSPC;

	/*
	 * Where it would rest: matching changes only the other side, so this
	 * stays true.  Its slot goes next to the last order of its level, or
	 * of the nearest level of its side: the pages a fill or a cancel there
	 * writes.
	 */
	if (kind == XB_LIMIT) {
		level_find(b, s, side, price, &prev, &at, &next);
		hint = at != XB_NIL ? b->lvl[at].tail : prev != XB_NIL ? b->lvl[prev].tail :
		       next != XB_NIL ? b->lvl[next].tail : XB_NIL;
	}
	oi = order_alloc(b, s, hint);
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
		uint32_t li = at != XB_NIL ? at : level_insert(b, s, side, price, prev, next);
		struct xb_level *l = &b->lvl[li];

		o->level = li;
		o->prev = l->tail;
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

static bool seen_once(uint8_t *seen, uint32_t i)
{
	if (seen[i / 8] & (1u << (i % 8)))
		return false;
	seen[i / 8] |= (uint8_t)(1u << (i % 8));
	return true;
}

/*
 * Walk every book, checking structure as it goes; sum the hash on the way.
 * seen and lseen (NULL, or both given) get a bit per live order and per
 * level visited, to catch one linked twice.
 */
static int walk(const struct xb_book *b, uint64_t *hash, uint64_t *nlive, uint64_t *nlevels,
		uint8_t *seen, uint8_t *lseen, char *why, size_t why_len)
{
	const struct xb_header *h = b->h;
	uint64_t sum = 0, live = 0, levels = 0;
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
				if (lseen && !seen_once(lseen, li))
					FAIL("level %u linked twice", li);
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
					if (seen && !seen_once(seen, oi))
						FAIL("order %u linked twice", oi);
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
		if ((y->level_group != XB_NIL && y->level_group >= ngroups(h->max_levels)) ||
		    (y->order_group != XB_NIL && y->order_group >= ngroups(h->max_orders)))
			FAIL("symbol %u: current group out of range", s);
		if (y->best[0] != XB_NIL && y->best[1] != XB_NIL &&
		    b->lvl[y->best[0]].price >= b->lvl[y->best[1]].price)
			FAIL("symbol %u: crossed book (bid %lld >= ask %lld)", s,
			     (long long)b->lvl[y->best[0]].price, (long long)b->lvl[y->best[1]].price);
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
	int ret = walk(b, &hash, &live, &levels, NULL, NULL, why, sizeof(why));

	if (err)
		*err = ret;
	return hash;
}

/*
 * A pool's groups: each free chain stays in its group, holds what the
 * directory says, and no slot in it is in the books (inbooks: the walk's
 * bits).  Free order slots hold an ended order, or none yet.
 */
static int check_pool(const struct xb_book *b, bool is_order, const uint8_t *inbooks,
		      uint64_t nbooks, char *why, size_t why_len)
{
	const struct xb_header *h = b->h;
	const struct xb_group *grp = is_order ? b->ogrp : b->lgrp;
	uint32_t max = is_order ? h->max_orders : h->max_levels;
	uint32_t bump = is_order ? h->order_bump : h->level_bump;
	uint32_t nfree = is_order ? h->order_free : h->level_free;
	const char *what = is_order ? "order" : "level";
	uint64_t total = 0;
	int ret = 0;

	if (bump > max || (bump % XB_GROUP && bump != max))
		FAIL("%s pool: %u slots handed out of %u", what, bump, max);
	for (uint32_t g = 0; g < ngroups(bump); g++) {
		uint32_t size = max - g * XB_GROUP < XB_GROUP ? max - g * XB_GROUP : XB_GROUP;
		uint32_t n = 0;

		for (uint32_t i = grp[g].free_head; i != XB_NIL;
		     i = is_order ? b->ord[i].next : b->lvl[i].next) {
			if (i / XB_GROUP != g || i >= max || ++n > grp[g].nfree)
				FAIL("%s group %u: free chain holds %u, or more than %u", what, g, i,
				     grp[g].nfree);
			if (inbooks[i / 8] & (1u << (i % 8)))
				FAIL("%s %u both in the books and free", what, i);
			if (is_order && b->ord[i].status == XB_LIVE)
				FAIL("free order %u has status %u", i, b->ord[i].status);
		}
		if (n != grp[g].nfree || n > size)
			FAIL("%s group %u: %u free slots chained, directory says %u", what, g, n,
			     grp[g].nfree);
		total += n;
	}
	if (total != nfree)
		FAIL("%s pool: %llu free slots in the groups, header says %u", what,
		     (unsigned long long)total, nfree);
	if (nbooks + total != bump)
		FAIL("%s pool: %llu in the books + %llu free != %u handed out", what,
		     (unsigned long long)nbooks, (unsigned long long)total, bump);
	if ((is_order ? h->order_cursor : h->level_cursor) > ngroups(max))
		FAIL("%s pool: sweep cursor past the pool", what);
out:
	return ret;
}

int xb_validate(const struct xb_book *b, char *why, size_t why_len)
{
	return xb_check(b, NULL, why, why_len);
}

int xb_check(const struct xb_book *b, uint64_t *walked_hash, char *why, size_t why_len)
{
	const struct xb_header *h = b->h;
	uint64_t hash = 0, live, levels;
	uint8_t *seen = calloc(h->max_orders / 8 + 1, 1);
	uint8_t *lseen = calloc(h->max_levels / 8 + 1, 1);
	int ret;

	if (!seen || !lseen) {
		snprintf(why, why_len, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	ret = walk(b, &hash, &live, &levels, seen, lseen, why, why_len);
	if (walked_hash)
		*walked_hash = hash;
	if (ret)
		goto out;
	if (hash != h->book_hash)
		FAIL("stored hash %016llx, books hash to %016llx", (unsigned long long)h->book_hash,
		     (unsigned long long)hash);
	if (live != h->live_orders)
		FAIL("%llu live orders in the books, header says %llu", (unsigned long long)live,
		     (unsigned long long)h->live_orders);
	ret = check_pool(b, true, seen, live, why, why_len);
	if (!ret)
		ret = check_pool(b, false, lseen, levels, why, why_len);
	if (ret)
		goto out;
	if (h->trade_count && b->trd[(h->trade_count - 1) & (h->trade_ring - 1)].seq !=
	    h->trade_count)
		FAIL("trade ring: newest slot does not hold trade %llu",
		     (unsigned long long)h->trade_count);
out:
	free(seen);
	free(lseen);
	return ret;
}
