/* SPDX-License-Identifier: MIT */
/*
 * proto.c - the checks a server makes on a request before it acts on it
 * (see proto.h).  Pure functions of the bytes and the book's dimensions, so
 * that exchange-engine, exchange-md and the frame fuzzer run the very same
 * code: what the fuzzer proves about these checks holds for the servers.
 *
 * The header itself (version, length bounds, reserved field) is checked by
 * xn_frame() in net.c before any of this: these functions may assume a
 * whole frame of h->len bytes is in memory behind h, and nothing more.
 */
#include <stddef.h>

#include "book.h"
#include "proto.h"

int xp_request_size(int type, int port_is_md)
{
	if (!port_is_md) {
		switch (type) {
		case XP_T_HELLO: return sizeof(struct xp_hello);
		case XP_T_NEW: return sizeof(struct xp_new);
		case XP_T_CANCEL: return sizeof(struct xp_cancel);
		case XP_T_STATS: return 0;
		case XP_T_EPOCH_HASH: return sizeof(struct xp_epoch_q);
		case XP_T_FLUSH: return 0;
		default: return -1;
		}
	}
	switch (type) {
	case XP_T_TOP:
	case XP_T_DEPTH:
	case XP_T_TRADES: return sizeof(struct xp_sym_q);
	case XP_T_ORDER: return sizeof(struct xp_order_q);
	case XP_T_CHECK: return 0;
	case XP_T_CONVERGE: return sizeof(struct xp_converge_q);
	case XP_T_SESSION: return sizeof(struct xp_session_q);
	default: return -1;
	}
}

unsigned xp_request_check(const struct xp_hdr *h, int port_is_md)
{
	int size = xp_request_size(h->type, port_is_md);
	const void *body = h + 1;

	if (size < 0)
		return XP_E_TYPE;
	/* Exact, not "at least": the length is checked before any field is
	 * read, so no handler ever reads past the frame. */
	if (h->len != sizeof(*h) + (size_t)size)
		return XP_E_LENGTH;
	switch (h->type) {
	case XP_T_HELLO:
		return ((const struct xp_hello *)body)->zero ? XP_E_RESERVED : XP_OK;
	case XP_T_NEW:
		return ((const struct xp_new *)body)->zero ? XP_E_RESERVED : XP_OK;
	case XP_T_CONVERGE:
		return ((const struct xp_converge_q *)body)->zero ? XP_E_RESERVED : XP_OK;
	case XP_T_SESSION:
		return ((const struct xp_session_q *)body)->zero ? XP_E_RESERVED : XP_OK;
	}
	return XP_OK;
}

unsigned xp_new_check(const struct xp_new *m, uint32_t nsymbols)
{
	if (m->sym >= nsymbols)
		return XP_E_SYMBOL;
	if (m->side > XB_SELL || m->kind > XB_MARKET)
		return XP_E_SIDE;
	if (m->qty <= 0 || m->qty > XB_MAX_QTY)
		return XP_E_QTY;
	if (m->kind == XB_LIMIT ? m->price <= 0 || m->price > XB_MAX_PRICE : m->price != 0)
		return XP_E_PRICE;
	return XP_OK;
}

unsigned xp_query_check(const struct xp_hdr *h, uint32_t nsymbols, uint32_t nsessions)
{
	const struct xp_sym_q *q = (const void *)(h + 1);

	switch (h->type) {
	case XP_T_TOP:
		return q->sym < nsymbols ? XP_OK : XP_E_SYMBOL;
	case XP_T_DEPTH:
		if (q->sym >= nsymbols)
			return XP_E_SYMBOL;
		return q->n && q->n <= XP_MAX_DEPTH ? XP_OK : XP_E_QTY;
	case XP_T_TRADES:
		if (q->sym != XP_ALL_SYMBOLS && q->sym >= nsymbols)
			return XP_E_SYMBOL;
		return q->n && q->n <= XP_MAX_TRADES ? XP_OK : XP_E_QTY;
	case XP_T_CONVERGE:
		/* The server answers it in its loop: bound the wait. */
		return ((const struct xp_converge_q *)(h + 1))->timeout_ms <= XP_MAX_CONVERGE_MS ?
		       XP_OK : XP_E_QTY;
	case XP_T_SESSION:
		return ((const struct xp_session_q *)(h + 1))->session < nsessions ? XP_OK :
		       XP_E_SESSION;
	}
	return XP_OK;
}

const char *xp_err_name(unsigned code)
{
	static const char *const names[XP_E_COUNT] = {
		"ok", "unknown protocol version", "unknown message type",
		"bad frame length", "reserved field not zero", "unknown symbol",
		"quantity out of range", "price out of range", "unknown side or order kind",
		"books full", "no such order", "order already ended",
		"sequence number not above the last", "no session, or session busy",
		"too busy", "no data yet", "internal error",
		"too slow: a frame unfinished in time, or idle while others wait",
	};

	return code < XP_E_COUNT ? names[code] : "unknown error";
}
