/* SPDX-License-Identifier: MIT */
/*
 * flow.h - the order flow the exchange is measured with: what exchange-load
 * sends the engine and what exchange-pages replays into the books offline,
 * one model so the two see the same commands.
 *
 * Symbols follow a Zipf law; each has a mid price that drifts one tick at a
 * time; most orders rest a few ticks behind the mid, a fifth cross it, 8%
 * are market orders; ~30% of the commands cancel one of the session's
 * remembered resting orders.  A session remembers at most XF_MAX_LIVE of
 * them; one it stops remembering is cancelled by its next command, so the
 * books hold at most XF_MAX_LIVE resting orders per session and stop
 * growing once full (they used to grow for as long as the load ran, and
 * the pages written per order with them).  Deterministic for a seed: the
 * same seed and the same acks give the same commands.
 */
#ifndef EXCHANGE_FLOW_H
#define EXCHANGE_FLOW_H

#include <stdbool.h>
#include <stdint.h>

#define XF_MAX_LIVE 512		/* resting orders a session remembers, for cancels */
#define XF_MAX_FORGOTTEN 512	/* ... and those it stopped remembering, to cancel */

struct xf_flow {
	uint64_t seed;		/* the PRNG's state (rng_next() in util.h) */
	uint32_t nsymbols;
	double *cdf;		/* Zipf: P(symbol <= s) */
	int64_t *mid;		/* per symbol, drifting */
};

/* The resting orders one session remembers, and those it has dropped from
 * that list but not cancelled yet. */
struct xf_live {
	uint64_t id[XF_MAX_LIVE];
	int n;
	uint64_t forgotten[XF_MAX_FORGOTTEN];
	int nforgotten;
	uint64_t lost;		/* dropped with the forgotten list full: never cancelled */
};

/* The next command: a cancel of order_id, or a new order. */
struct xf_order {
	bool cancel;
	bool forgotten;		/* a cancel of an order the session stopped remembering */
	uint64_t order_id;
	uint32_t sym;
	uint8_t side, kind;	/* XB_BUY/XB_SELL, XB_LIMIT/XB_MARKET */
	int64_t price;		/* 0 for a market order */
	uint32_t qty;
};

/* nsymbols >= 1, Zipf exponent zipf_s.  0 or -ENOMEM. */
int xf_init(struct xf_flow *f, uint32_t nsymbols, double zipf_s, uint64_t seed);
void xf_free(struct xf_flow *f);

/* A symbol, by the Zipf law (queries ask about the same symbols). */
uint32_t xf_symbol(struct xf_flow *f);

/* The next command of a session whose resting orders are *live; a cancel
 * takes its order out of *live.  An order the session has forgotten is
 * cancelled first, before any draw, so the draws (and the shares of new
 * orders, remembered cancels, market orders and symbols among them) are
 * those of the model without it. */
void xf_next(struct xf_flow *f, struct xf_live *live, struct xf_order *o);

/* Remember an order the command seq left resting.  When the list is full
 * it replaces one chosen by seq, so cancels lean to recent orders, as they
 * do in markets (most cancels follow their order closely); the one replaced
 * goes to the forgotten list, for xf_next() to cancel. */
void xf_resting(struct xf_live *live, uint64_t order_id, uint64_t seq);

#endif /* EXCHANGE_FLOW_H */
