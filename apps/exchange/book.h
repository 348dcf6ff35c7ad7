/* SPDX-License-Identifier: MIT */
/*
 * book.h - the exchange's matching engine core: price-time priority order
 * books for many symbols, with every byte of state in one caller-provided
 * block of fixed size.
 *
 * The block is what the engine replicates: it lives in a pagetrack region
 * and query processes read copies of it mapped at other addresses.  So:
 *  - no raw pointers inside the block, only 32-bit pool indices (XB_NIL = none);
 *  - fixed pools (symbols, price levels, orders, a ring of recent trades,
 *    client sessions) laid out after a header that names their offsets;
 *  - every change happens inside one xb_submit()/xb_cancel() call, so a
 *    copy taken between two calls (an epoch) is a consistent book;
 *  - readers (xb_top, xb_depth, xb_trades, xb_order, xb_validate, the hash)
 *    check every index they follow and bound every walk, so a damaged copy
 *    gives an error, never a crash or an endless loop.
 *
 * The header keeps an additive hash of the live state (each live order and
 * each symbol's trade statistics contribute one XXH3 value, summed modulo
 * 2^64), updated with every change.  xb_hash_walk() recomputes it from the
 * books; the two agree on any consistent copy, and two copies at the same
 * epoch agree with each other: that is the consistency check of the demo.
 *
 * Page locality: every page an epoch writes costs a write-protect fault in
 * the engine and a copy in the region, the log, the image and every replica,
 * so the layout keeps the writes of an epoch on few pages.  Levels and
 * orders are 64 bytes and come in groups of 64 slots, one 4 KiB page each,
 * page-aligned; a directory says how many slots of each group are free and
 * chains them (LIFO, inside the group, so a freed slot is taken again while
 * its page is still dirty).  A new order takes a slot in the group of the
 * last order of its price level (or of the nearest level of its side),
 * a new level one in the group of its neighbour in price; failing that,
 * the current group of its symbol's family (16 symbols in a row share
 * one, so quiet symbols share pages too), else one at least half free,
 * else a never-used one (see fresh_group() in book.c).  The orders of
 * a level, and the levels near a symbol's mid, so share pages: the fills,
 * cancels and links of an epoch write where the epoch already wrote.
 *
 * Order ids: serial * max_orders + slot, serial counting from 1, so an id
 * names its slot without a lookup table and ids grow with arrival time.
 * An ended order's status stays readable until its slot is taken again
 * (soon, on a busy page); after that its id reads as ended.
 */
#ifndef EXCHANGE_BOOK_H
#define EXCHANGE_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XB_MAGIC	0x4b4f4f4248435845ull	/* "EXCHBOOK" */
#define XB_VERSION	3u
#define XB_GROUP	64u	/* slots of a level or order group: one 4 KiB page */
#define XB_NIL		0xffffffffu

/* Limits every order must respect (also the wire protocol's). */
#define XB_MAX_PRICE	1000000000ll	/* in ticks */
#define XB_MAX_QTY	1000000u
#define XB_MAX_SYMBOLS	65536u

enum xb_side { XB_BUY = 0, XB_SELL = 1 };
enum xb_kind { XB_LIMIT = 0, XB_MARKET = 1 };
enum xb_status {
	XB_FREE = 0,		/* slot never used */
	XB_LIVE = 1,		/* resting in the book */
	XB_FILLED = 2,		/* fully executed */
	XB_CANCELLED = 3,	/* cancelled by its owner */
	XB_KILLED = 4,		/* market order: the unfilled rest was dropped */
};

struct xb_order {
	uint64_t id;		/* 0: slot never used */
	int64_t price;		/* limit price; 0 for market orders */
	uint32_t qty;		/* remaining */
	uint32_t filled;
	uint32_t sym;
	uint32_t level;		/* while live: its price level */
	uint32_t next, prev;	/* while live: FIFO in the level; free: the group's free chain */
	uint8_t side, kind, status, pad[21];	/* 64 bytes: 64 to a page */
};

struct xb_level {
	int64_t price;
	uint64_t qty;		/* sum of the orders' remaining quantities */
	uint32_t norders;
	uint32_t head, tail;	/* orders, oldest first */
	uint32_t next, prev;	/* levels of one side, best first; free: the group's free chain */
	uint32_t pad[7];	/* 64 bytes: 64 to a page */
};

/* A group of XB_GROUP slots (one page of levels or of orders). */
struct xb_group {
	uint32_t free_head;	/* free slots of the group, LIFO */
	uint32_t nfree;
};

struct xb_symbol {
	uint32_t best[2];	/* best level per side (XB_BUY: highest bid) */
	uint32_t nlevels[2];
	int64_t last_price;
	uint64_t volume;
	uint64_t trades;
	uint32_t level_group;	/* where its new levels go when no neighbour's group has room */
	uint32_t order_group;	/* the same for orders */
};

struct xb_trade {
	uint64_t seq;		/* 1, 2, ...; 0: empty ring slot */
	uint64_t buy_id, sell_id;
	int64_t price;
	uint32_t qty;
	uint32_t sym;
	uint8_t aggressor;	/* side of the incoming order */
	uint8_t pad[7];
};

/* Client sessions: the last command sequence number applied per client, so a
 * client reconnecting after a crash learns what the recovered state holds. */
struct xb_session {
	uint64_t last_seq;
	uint64_t commands;
};

struct xb_header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	uint64_t block_size;
	uint32_t nsymbols, max_orders, max_levels, trade_ring, nsessions;
	uint32_t pad0;
	uint64_t off_symbols, off_levels, off_orders, off_trades, off_sessions;
	uint64_t off_level_groups, off_order_groups;
	uint64_t next_serial;	/* serial of the next order, from 1 */
	uint64_t commands;	/* submits and cancels applied, rejected ones included */
	uint64_t trade_count;
	uint64_t book_hash;	/* additive hash of the live state */
	uint64_t live_orders;
	uint32_t order_bump;	/* slots >= this were never handed out (a multiple of XB_GROUP, capped) */
	uint32_t order_free;	/* free slots in the groups below order_bump */
	uint32_t order_cursor;	/* where the search for a group with room goes on */
	uint32_t level_bump, level_free, level_cursor;
};

struct xb_config {
	uint32_t nsymbols;
	uint32_t max_orders;
	uint32_t max_levels;
	uint32_t trade_ring;	/* power of two */
	uint32_t nsessions;
};

/* A process-local view of a block: pointers computed from its offsets. */
struct xb_book {
	struct xb_header *h;
	struct xb_symbol *sym;
	struct xb_level *lvl;
	struct xb_order *ord;
	struct xb_trade *trd;
	struct xb_session *ses;
	struct xb_group *lgrp, *ogrp;
	size_t size;
};

/* Result of a submit or a cancel. */
struct xb_result {
	uint64_t order_id;
	uint32_t filled;	/* by this call */
	uint32_t remaining;	/* left resting (0 unless status is XB_LIVE) */
	uint8_t status;		/* the order's status after the call */
	uint32_t ntrades;
};

struct xb_level_view {
	int64_t price;
	uint64_t qty;
	uint32_t norders;
};

/* Bytes a block with this configuration needs (0 if the config is invalid). */
size_t xb_size(const struct xb_config *c);

/* Fill c with nsymbols and pools sized to use about `size` bytes. 0 or -EINVAL. */
int xb_config_for_size(struct xb_config *c, uint32_t nsymbols, size_t size);

/* Format a zero-filled block.  0, or -EINVAL (bad config), -ENOSPC (too small). */
int xb_init(struct xb_book *b, void *mem, size_t size, const struct xb_config *c);

/* Attach to a formatted block, checking its header against size.  0, or
 * -EBADMSG (no magic), -EPROTO (other version), -EINVAL (inconsistent header). */
int xb_attach(struct xb_book *b, void *mem, size_t size);

/* Apply one order.  Returns 0 and *res, or without any change:
 * -EINVAL bad side/kind/qty/price, -ENOENT unknown symbol, -ENOSPC pool full. */
int xb_submit(struct xb_book *b, uint32_t sym, int side, int kind, int64_t price,
	      uint32_t qty, struct xb_result *res);

/* Cancel a live order.  0, -ENOENT (no such order), -EALREADY (it has ended). */
int xb_cancel(struct xb_book *b, uint64_t order_id, struct xb_result *res);

/* Record that client `session` applied command `seq` (sessions out of range are ignored). */
void xb_session_note(struct xb_book *b, uint32_t session, uint64_t seq);

/* Readers: all check indices and bound their walks; -EIO on a damaged book. */
int xb_depth(const struct xb_book *b, uint32_t sym, int side, struct xb_level_view *out,
	     uint32_t max);
int xb_trades(const struct xb_book *b, uint32_t sym, struct xb_trade *out, uint32_t max);
int xb_order(const struct xb_book *b, uint64_t order_id, struct xb_order *out);

/* The stored additive hash, and the same recomputed by walking the books
 * (-EIO into *err if the walk meets damage). */
uint64_t xb_hash_stored(const struct xb_book *b);
uint64_t xb_hash_walk(const struct xb_book *b, int *err);

/* Check every invariant; 0 or -EIO with the first violation in why. */
int xb_validate(const struct xb_book *b, char *why, size_t why_len);
/* The same, with the hash its walk summed (as xb_hash_walk() would give)
 * into *walked_hash: one walk of the books for both. */
int xb_check(const struct xb_book *b, uint64_t *walked_hash, char *why, size_t why_len);

#endif /* EXCHANGE_BOOK_H */
