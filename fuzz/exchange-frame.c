/* Fuzz target: bytes as a client's stream to exchange-engine or exchange-md, through the servers' own frame and request checks. */
/*
 * Input: a port byte (bit 0: the md port, else the order port), then the
 * bytes a client sent.  They go into a connection's input buffer as the
 * server's read would leave them, and are taken apart exactly as the
 * servers' read loops do: xn_frame() for the header, xp_request_check()
 * for the type, length and reserved fields, then the field checks
 * (xp_new_check, xp_query_check).  Frames that pass are acted on against
 * small books (book.c), as the engine or md would: orders submitted and
 * cancelled, depth, trades and orders read.  The first refused frame ends the
 * stream, as it closes a connection.
 *
 * What must hold: no read outside the frame (ASan), a frame accepted only
 * with the exact size of its type, an order that passes the checks never
 * refused by the books as out of range, and the books valid afterwards.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "book.h"
#include "net.h"
#include "proto.h"

#define BOOK_SIZE	(1u << 20)
#define NSYMBOLS	4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *block;

static void fail(const char *what)
{
	fprintf(stderr, "exchange-frame: %s\n", what);
	abort();
}

/* What the engine does with a frame the checks let through. */
static void act_order(struct xb_book *b, const struct xp_hdr *h)
{
	struct xb_result res;
	int ret;

	if (h->type == XP_T_NEW) {
		const struct xp_new *m = (const void *)(h + 1);

		if (xp_new_check(m, b->h->nsymbols))
			return;	/* acked with the reason, books untouched */
		ret = xb_submit(b, m->sym, m->side, m->kind, m->price, (uint32_t)m->qty, &res);
		/* The checks promise the books will not call it out of range. */
		if (ret == -EINVAL)
			fail("an order that passed xp_new_check was refused by the books");
	} else if (h->type == XP_T_CANCEL) {
		const struct xp_cancel *m = (const void *)(h + 1);

		xb_cancel(b, m->order_id, &res);
	}
}

/* What md does with a query the checks let through. */
static void act_query(const struct xb_book *b, const struct xp_hdr *h)
{
	static struct xb_level_view lv[XP_MAX_DEPTH];
	static struct xb_trade tr[XP_MAX_TRADES];
	const struct xp_sym_q *q = (const void *)(h + 1);
	struct xb_order o;

	if (xp_query_check(h, b->h->nsymbols, b->h->nsessions))
		return;	/* answered with an error, the connection goes on */
	switch (h->type) {
	case XP_T_TOP:
		xb_depth(b, q->sym, XB_BUY, lv, 1);
		xb_depth(b, q->sym, XB_SELL, lv, 1);
		break;
	case XP_T_DEPTH:
		if (xb_depth(b, q->sym, XB_BUY, lv, q->n) < 0 || xb_depth(b, q->sym, XB_SELL, lv, q->n) < 0)
			fail("depth of valid books failed");
		break;
	case XP_T_TRADES:
		if (xb_trades(b, q->sym == XP_ALL_SYMBOLS ? XB_NIL : q->sym, tr, q->n) < 0)
			fail("trades of valid books failed");
		break;
	case XP_T_ORDER:
		xb_order(b, ((const struct xp_order_q *)(h + 1))->order_id, &o);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xconn c = { .fd = -1 };
	const struct xp_hdr *h;
	struct xb_config cfg;
	struct xb_book b;
	size_t off = 0;
	char why[256];
	int md, r;

	if (!size || size > 64 * 1024)
		return -1;
	md = data[0] & 1;
	/* The servers' buffer is malloc'd: frames there start aligned. */
	c.in_cap = c.in_len = size - 1;
	c.in = malloc(c.in_cap ? c.in_cap : 1);
	if (!c.in)
		fail("out of memory");
	memcpy(c.in, data + 1, c.in_len);
	if (!block && !(block = malloc(BOOK_SIZE)))
		fail("out of memory");
	memset(block, 0, BOOK_SIZE);
	if (xb_config_for_size(&cfg, NSYMBOLS, BOOK_SIZE) || xb_init(&b, block, BOOK_SIZE, &cfg))
		fail("cannot make the books");
	while ((r = xn_frame(&c, off, sizeof(struct xp_hdr) + XP_MAX_REQUEST, &h)) == 1) {
		int body = xp_request_size(h->type, md);

		if (xp_request_check(h, md))
			break;
		if (body < 0 || h->len != sizeof(*h) + (size_t)body)
			fail("a frame passed the checks with the wrong size for its type");
		if (md)
			act_query(&b, h);
		else
			act_order(&b, h);
		off += h->len;
	}
	if (off > c.in_len)
		fail("the stream was read past its end");
	/* What is left is the start of the next frame, kept for the next read. */
	xn_consume(&c, off);
	if (xb_validate(&b, why, sizeof(why)))
		fail(why);
	free(c.in);
	return 0;
}
