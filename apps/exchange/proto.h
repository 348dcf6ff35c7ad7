/* SPDX-License-Identifier: MIT */
/*
 * proto.h - the exchange's wire protocol, version 1.
 *
 * Every message is one frame: an 8-byte header, then a body whose size is
 * fixed by the type (except the variable answers of depth and trades, and
 * the error text).  Little-endian, no padding the compiler chooses: every
 * struct here is laid out by hand and checked by static asserts.
 *
 *   u32 len      whole frame, header included
 *   u8  version  XP_VERSION; anything else is refused with XP_E_VERSION
 *   u8  type     XP_T_*
 *   u16 zero     must be 0 (room for flags in a later version)
 *
 * A server checks, before it acts on a request: the version, a known type,
 * len equal to the type's exact size (so an oversized or truncated frame
 * never reaches a handler), reserved fields zero, then each field's range.
 * A malformed frame gets an XP_T_ERROR answer and the connection is closed
 * (the stream can no longer be trusted to be in step); a well-formed but
 * refused order gets an ack whose result says why, and the session goes on.
 */
#ifndef EXCHANGE_PROTO_H
#define EXCHANGE_PROTO_H

#include <stddef.h>
#include <stdint.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the exchange protocol is little-endian and this code does not convert yet"
#endif

#define XP_VERSION	1
#define XP_MAX_REQUEST	64		/* no request is larger */
#define XP_MAX_FRAME	(256 * 1024)	/* no answer is larger */
#define XP_MAX_DEPTH	1000
#define XP_MAX_TRADES	1000
#define XP_ALL_SYMBOLS	0xffffffffu
#define XP_MAX_CONVERGE_MS 60000	/* the longest wait a CONVERGE may ask for */

enum xp_type {
	/* order port (the engine) */
	XP_T_HELLO = 1,		/* start a session: xp_hello -> xp_hello_ok */
	XP_T_NEW = 2,		/* xp_new -> xp_ack */
	XP_T_CANCEL = 3,	/* xp_cancel -> xp_ack */
	XP_T_STATS = 4,		/* (empty) -> xp_stats */
	XP_T_EPOCH_HASH = 5,	/* xp_epoch_q -> xp_epoch_hash */
	XP_T_FLUSH = 6,		/* (empty) -> xp_flush_ok: sync now, wait until durable */
	/* market data port (exchange-md) */
	XP_T_TOP = 16,		/* xp_sym_q -> xp_top */
	XP_T_DEPTH = 17,	/* xp_sym_q -> xp_depth + levels */
	XP_T_TRADES = 18,	/* xp_sym_q -> xp_trades + trades */
	XP_T_ORDER = 19,	/* xp_order_q -> xp_order_ans */
	XP_T_CHECK = 20,	/* (empty) -> xp_check */
	XP_T_CONVERGE = 21,	/* xp_converge_q -> xp_converge */
	XP_T_SESSION = 22,	/* xp_session_q -> xp_session_ans */
	/* answers */
	XP_T_HELLO_OK = 0x81,
	XP_T_ACK = 0x82,
	XP_T_STATS_OK = 0x84,
	XP_T_EPOCH_HASH_OK = 0x85,
	XP_T_FLUSH_OK = 0x86,
	XP_T_TOP_OK = 0x90,
	XP_T_DEPTH_OK = 0x91,
	XP_T_TRADES_OK = 0x92,
	XP_T_ORDER_OK = 0x93,
	XP_T_CHECK_OK = 0x94,
	XP_T_CONVERGE_OK = 0x95,
	XP_T_SESSION_OK = 0x96,
	XP_T_ERROR = 0xff,
};

/* Error codes in xp_error.code and xp_ack.result (0: accepted). */
enum xp_err {
	XP_OK = 0,
	XP_E_VERSION = 1,	/* unknown protocol version */
	XP_E_TYPE = 2,		/* unknown type for this port */
	XP_E_LENGTH = 3,	/* frame length wrong for its type, or oversized */
	XP_E_RESERVED = 4,	/* a reserved field is not zero */
	XP_E_SYMBOL = 5,	/* unknown symbol */
	XP_E_QTY = 6,		/* quantity out of range (1..XB_MAX_QTY) */
	XP_E_PRICE = 7,		/* price out of range (1..XB_MAX_PRICE) */
	XP_E_SIDE = 8,		/* side or order kind unknown */
	XP_E_FULL = 9,		/* the books' pools are full */
	XP_E_NO_ORDER = 10,	/* no such order */
	XP_E_ENDED = 11,	/* the order already ended (filled, cancelled) */
	XP_E_SEQ = 12,		/* sequence number not above the session's last */
	XP_E_SESSION = 13,	/* no session yet, unknown or busy session */
	XP_E_BUSY = 14,		/* too many clients, or too slow a reader */
	XP_E_NO_DATA = 15,	/* the replica has no epoch yet */
	XP_E_INTERNAL = 16,
	XP_E_TIMEOUT = 17,	/* a frame not completed in time, or idle when the slot was needed */
	XP_E_COUNT
};

struct xp_hdr {
	uint32_t len;
	uint8_t version;
	uint8_t type;
	uint16_t zero;
};

struct xp_hello {
	uint32_t session;	/* 0 .. sessions-1, one connection each */
	uint32_t zero;
};

struct xp_hello_ok {
	uint64_t last_seq;	/* the last command of this session in the engine's state */
	uint64_t epoch;		/* the engine's newest epoch */
	uint32_t ack_level;	/* XP_LEVEL_* the engine waits for before acking */
	uint32_t nsymbols;
};

enum xp_level {
	XP_LEVEL_APPLIED = 0,	/* in the engine's memory only */
	XP_LEVEL_PUBLISHED = 1,	/* in an epoch replicas can see */
	XP_LEVEL_DURABLE = 2,	/* in an epoch that survives a crash */
	XP_LEVEL_REPLICATED = 3,	/* durable, and stored by the NATS stream a standby
				 * engine's host follows: survives losing this host */
};

struct xp_new {
	uint64_t seq;		/* > the session's last */
	uint32_t sym;
	uint8_t side;		/* 0 buy, 1 sell */
	uint8_t kind;		/* 0 limit, 1 market */
	uint16_t zero;
	int64_t price;		/* ticks; limit orders: 1..XB_MAX_PRICE; market: 0 */
	int64_t qty;		/* 1..XB_MAX_QTY */
};

struct xp_cancel {
	uint64_t seq;
	uint64_t order_id;
};

struct xp_ack {
	uint64_t seq;
	uint64_t order_id;
	uint64_t epoch;		/* the epoch that holds this command */
	uint32_t filled;	/* by this command */
	uint32_t remaining;	/* resting (new) or cancelled (cancel) */
	uint8_t status;		/* XB_* status of the order after the command */
	uint8_t level;		/* XP_LEVEL_* reached when the ack was sent */
	uint16_t result;	/* XP_OK or XP_E_* */
	uint32_t ntrades;
};

struct xp_epoch_q {
	uint64_t epoch;
};

struct xp_epoch_hash {
	uint64_t epoch;
	uint64_t book_hash;
	uint64_t commands;
	uint32_t found;		/* 0: epoch not in the engine's recent history */
	uint32_t zero;
};

struct xp_flush_ok {
	uint64_t epoch;
	uint64_t full_hash;	/* XXH3 of the whole block at epoch */
	uint64_t book_hash;
};

struct xp_stats {
	uint64_t epoch;
	uint64_t syncs;
	uint64_t commands;
	uint64_t trades;
	uint64_t live_orders;
	uint64_t stall_p50_ns, stall_p99_ns, stall_max_ns;
	uint64_t pages_p50, pages_p99, pages_total;	/* pages each sync copied (every
						 * sync); ~0: none copied (mode none) */
	uint64_t durable_p50_ns, durable_p99_ns;	/* sync to durable */
	uint64_t region_size;
	uint64_t clients, protocol_errors;
	uint64_t pauses;	/* times a client was no longer read: too many acks held */
	uint32_t mode;		/* 0 none, 1 pagetrack, 2 full copy */
	uint32_t ack_level;
};

struct xp_sym_q {
	uint32_t sym;		/* XP_ALL_SYMBOLS for trades of every symbol */
	uint32_t n;		/* depth levels per side / trades; ignored by TOP */
};

struct xp_top {
	uint64_t epoch;
	uint32_t sym, zero;
	int64_t bid, ask;	/* 0: no level on that side */
	uint64_t bid_qty, ask_qty;
	int64_t last;
	uint64_t volume;
};

struct xp_depth_level {
	int64_t price;
	uint64_t qty;
	uint32_t norders, zero;
};

struct xp_depth {
	uint64_t epoch;
	uint32_t sym;
	uint16_t nbids, nasks;	/* followed by nbids + nasks xp_depth_level, bids first */
};

struct xp_trade {
	uint64_t seq, buy_id, sell_id;
	int64_t price;
	uint32_t qty, sym;
};

struct xp_trades {
	uint64_t epoch;
	uint32_t sym, n;	/* followed by n xp_trade, newest first */
};

struct xp_order_q {
	uint64_t order_id;
};

struct xp_order_ans {
	uint64_t epoch;
	uint64_t order_id;
	int64_t price;
	uint32_t qty, filled, sym;
	uint8_t side, kind, status, result;	/* result: XP_OK, XP_E_NO_ORDER, XP_E_ENDED (slot reused) */
};

struct xp_check {
	uint64_t epoch;
	uint64_t stored_hash;	/* the hash the engine kept in the block */
	uint64_t walked_hash;	/* the same recomputed from this copy's books */
	uint32_t valid;		/* 1: every invariant holds */
	uint32_t zero;
};

struct xp_converge_q {
	uint64_t epoch;		/* wait until the replica reaches it */
	uint32_t timeout_ms;
	uint32_t zero;
};

struct xp_converge {
	uint64_t epoch;		/* the replica's epoch (below the one asked: timed out) */
	uint64_t full_hash;
	uint64_t book_hash;
};

struct xp_session_q {
	uint32_t session, zero;
};

struct xp_session_ans {
	uint64_t epoch;
	uint64_t last_seq;
};

struct xp_error {
	uint16_t code;		/* XP_E_* */
	uint16_t len;		/* of the text that follows (not NUL-terminated) */
	uint32_t zero;
};

#define XP_ASSERT_SIZE(t, n) _Static_assert(sizeof(struct t) == (n), #t " layout")
XP_ASSERT_SIZE(xp_hdr, 8);
XP_ASSERT_SIZE(xp_hello, 8);
XP_ASSERT_SIZE(xp_hello_ok, 24);
XP_ASSERT_SIZE(xp_new, 32);
XP_ASSERT_SIZE(xp_cancel, 16);
XP_ASSERT_SIZE(xp_ack, 40);
XP_ASSERT_SIZE(xp_epoch_hash, 32);
XP_ASSERT_SIZE(xp_stats, 144);
XP_ASSERT_SIZE(xp_top, 64);
XP_ASSERT_SIZE(xp_depth_level, 24);
XP_ASSERT_SIZE(xp_depth, 16);
XP_ASSERT_SIZE(xp_trade, 40);
XP_ASSERT_SIZE(xp_order_ans, 40);
XP_ASSERT_SIZE(xp_check, 32);
XP_ASSERT_SIZE(xp_converge_q, 16);

/* The request checks, in proto.c: the servers and the fuzzer share them. */

/* Exact body size of a request type, or -1 for a type the port does not take. */
int xp_request_size(int type, int port_is_md);

/*
 * A whole request frame (h->len bytes at h, its header already passed by
 * xn_frame): XP_OK, or XP_E_TYPE, XP_E_LENGTH, XP_E_RESERVED, the malformed
 * frames that close the connection.  Checked before any field is read.
 */
unsigned xp_request_check(const struct xp_hdr *h, int port_is_md);

/* The fields of a well-formed NEW against books of nsymbols: XP_OK, or the
 * ack's result (XP_E_SYMBOL, XP_E_SIDE, XP_E_QTY, XP_E_PRICE). */
unsigned xp_new_check(const struct xp_new *m, uint32_t nsymbols);

/* The fields of a well-formed market-data query: XP_OK, or the error it is
 * answered with while the connection stays open (XP_E_SYMBOL, XP_E_QTY,
 * XP_E_SESSION). */
unsigned xp_query_check(const struct xp_hdr *h, uint32_t nsymbols, uint32_t nsessions);

/* A short English name for an error code. */
const char *xp_err_name(unsigned code);

/*
 * The engine's status page: a small file the engine keeps mapped and the
 * load generator reads, to know the engine's newest epoch and when each was
 * published (CLOCK_MONOTONIC ns) at the moment a query answer arrives.
 * Not part of the wire protocol; same machine only.
 */
#define XE_STATUS_MAGIC 0x5441545348435845ull	/* "EXCHSTAT" */
#define XE_STATUS_RING 8192

struct xe_status {
	uint64_t magic;
	uint64_t pid;
	uint64_t epoch;			/* newest published */
	uint64_t starts;		/* engine starts on this file (restarts + 1) */
	uint64_t publish_ns[XE_STATUS_RING];	/* [epoch % ring]: when it was published */
};

#endif /* EXCHANGE_PROTO_H */
