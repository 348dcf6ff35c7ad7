/* SPDX-License-Identifier: MIT */
/*
 * flow.c - the order flow model (see flow.h).  The draws happen in a fixed
 * order (the command's, the symbol's, the order's), so a seed names one flow
 * and exchange-pages' figures stay comparable from one layout to the next.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "book.h"
#include "flow.h"
#include "util.h"

int xf_init(struct xf_flow *f, uint32_t nsymbols, double zipf_s, uint64_t seed)
{
	double sum = 0;

	f->seed = seed;
	f->nsymbols = nsymbols;
	f->cdf = malloc(nsymbols * sizeof(double));
	f->mid = malloc(nsymbols * sizeof(int64_t));
	if (!f->cdf || !f->mid) {
		xf_free(f);
		return -ENOMEM;
	}
	for (uint32_t s = 0; s < nsymbols; s++)
		sum += 1.0 / pow((double)(s + 1), zipf_s);
	for (uint32_t s = 0; s < nsymbols; s++) {
		f->cdf[s] = (s ? f->cdf[s - 1] : 0) + 1.0 / pow((double)(s + 1), zipf_s) / sum;
		f->mid[s] = 10000 + (int64_t)(s % 97) * 10;
	}
	/* No rounding may leave a draw above the last symbol's bound. */
	f->cdf[nsymbols - 1] = 1.0;
	return 0;
}

void xf_free(struct xf_flow *f)
{
	free(f->cdf);
	free(f->mid);
	f->cdf = NULL;
	f->mid = NULL;
}

uint32_t xf_symbol(struct xf_flow *f)
{
	double u = rng_unit(&f->seed);
	uint32_t lo = 0, hi = f->nsymbols - 1;

	while (lo < hi) {
		uint32_t m = (lo + hi) / 2;

		if (f->cdf[m] < u)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

void xf_next(struct xf_flow *f, struct xf_live *live, struct xf_order *o)
{
	uint64_t r, r2;
	int64_t off;
	uint32_t s;

	*o = (struct xf_order){ 0 };
	if (live->nforgotten) {
		/* Before the draw: the flow's draws stay those of a session
		 * that never forgets. */
		o->cancel = o->forgotten = true;
		o->order_id = live->forgotten[--live->nforgotten];
		return;
	}
	r = rng_next(&f->seed);
	if (r % 100 < 30 && live->n) {
		int k = (int)((r >> 8) % (uint64_t)live->n);

		o->cancel = true;
		o->order_id = live->id[k];
		live->id[k] = live->id[--live->n];
		return;
	}
	s = xf_symbol(f);
	r2 = rng_next(&f->seed);
	o->sym = s;
	o->side = (uint8_t)((r >> 12) & 1);
	/* The mid drifts: a random walk, one tick at a time. */
	if (r2 % 8 == 0)
		f->mid[s] += (r2 >> 3) & 1 ? 1 : -1;
	if (f->mid[s] < 100)
		f->mid[s] = 100;
	o->qty = 1 + (uint32_t)((r2 >> 8) % 100);
	if ((r2 >> 20) % 100 < 8) {
		o->kind = XB_MARKET;
		return;
	}
	/* Most orders rest a few ticks behind the mid; a fifth cross it. */
	off = (int64_t)((r2 >> 28) % 8);
	if ((r2 >> 36) % 5 == 0)
		off = -1 - (int64_t)((r2 >> 40) % 3);
	o->kind = XB_LIMIT;
	o->price = o->side == XB_BUY ? f->mid[s] - 1 - off : f->mid[s] + 1 + off;
}

void xf_resting(struct xf_live *live, uint64_t order_id, uint64_t seq)
{
	uint64_t *slot;

	if (live->n < XF_MAX_LIVE) {
		live->id[live->n++] = order_id;
		return;
	}
	slot = &live->id[seq % XF_MAX_LIVE];
	/* One in per ack, one out per command sent: the list holds about the
	 * orders in flight, far below its size unless the window is huge. */
	if (live->nforgotten < XF_MAX_FORGOTTEN)
		live->forgotten[live->nforgotten++] = *slot;
	else
		live->lost++;
	*slot = order_id;
}
