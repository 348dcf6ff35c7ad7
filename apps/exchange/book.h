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
 * Price levels: each symbol owns a chunk of level_chunk slots at the start
 * of the level pool and takes its levels there first, the shared rest of the
 * pool only when its chunk is full.  A symbol's levels then share a page or
 * two instead of being scattered over the pool: fewer pages written per
 * epoch, so less for the region to copy and the replicas to apply.
 *
 * Order ids: serial * max_orders + slot, serial counting from 1, so an id
 * names its slot without a lookup table and ids grow with arrival time.
 * Slots of finished orders go to the tail of a FIFO free list, so the
 * status of an order stays readable for as long as possible after it ends.
 */
#ifndef EXCHANGE_BOOK_H
#define EXCHANGE_BOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XB_MAGIC	0x4b4f4f4248435845ull	/* "EXCHBOOK" */
#define XB_VERSION	2u
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
	uint32_t next, prev;	/* while live: FIFO in the level; free: free list */
	uint8_t side, kind, status, pad[5];
};

struct xb_level {
	int64_t price;
	uint64_t qty;		/* sum of the orders' remaining quantities */
	uint32_t norders;
	uint32_t head, tail;	/* orders, oldest first */
	uint32_t next, prev;	/* levels of one side, best first; free: free list */
	uint32_t pad;
};

struct xb_symbol {
	uint32_t best[2];	/* best level per side (XB_BUY: highest bid) */
	uint32_t nlevels[2];
	int64_t last_price;
	uint64_t volume;
	uint64_t trades;
	uint64_t chunk_used;	/* bit i: level slot sym * level_chunk + i is in use */
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
	uint32_t level_chunk;	/* level slots reserved per symbol (0..64), at the pool's start */
	uint64_t off_symbols, off_levels, off_orders, off_trades, off_sessions;
	uint64_t next_serial;	/* serial of the next order, from 1 */
	uint64_t commands;	/* submits and cancels applied, rejected ones included */
	uint64_t trade_count;
	uint64_t book_hash;	/* additive hash of the live state */
	uint64_t live_orders;
	uint32_t order_bump;	/* slots >= this were never used */
	uint32_t order_free_head, order_free_tail, order_free_count;
	uint32_t level_bump;	/* shared level slots >= this were never used */
	uint32_t level_free_head, level_free_count;	/* freed shared level slots */
	uint32_t pad1;
};

struct xb_config {
	uint32_t nsymbols;
	uint32_t max_orders;
	uint32_t max_levels;
	uint32_t trade_ring;	/* power of two */
	uint32_t nsessions;
	uint32_t level_chunk;	/* level slots reserved per symbol, 0..64 (see book.c) */
};

/* A process-local view of a block: pointers computed from its offsets. */
struct xb_book {
	struct xb_header *h;
	struct xb_symbol *sym;
	struct xb_level *lvl;
	struct xb_order *ord;
	struct xb_trade *trd;
	struct xb_session *ses;
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

#endif /* EXCHANGE_BOOK_H */
