/* exchange-book: the matching engine against a reference model, pool exhaustion, bad orders, damaged copies. */
#include "harness.h"

#include "book.h"
#include "util.h"

/*
 * The reference model: per symbol a plain array of resting orders; matching
 * scans it for the best price, then the oldest id.  Slow and obviously
 * right, which is the point.
 */
#define M_MAXLIVE 4096

struct m_order {
	uint64_t id;
	int64_t price;
	uint32_t qty, sym;
	int side;
};

struct model {
	struct m_order live[M_MAXLIVE];
	uint32_t nlive;
	uint32_t nsym;
	struct { uint64_t buy, sell; int64_t price; uint32_t qty, sym; } trades[256];
	uint32_t ntrades;
	uint64_t trade_total;
	int64_t last_price[64];
	uint64_t volume[64];
};

/* The model's own idea of a better price, not book.c's. */
static bool m_better(int side, int64_t p, int64_t q)
{
	return side == XB_BUY ? p > q : p < q;
}

static int m_best(struct model *m, uint32_t s, int side)
{
	int best = -1;

	for (uint32_t i = 0; i < m->nlive; i++) {
		struct m_order *o = &m->live[i];

		if (o->sym != s || o->side != side)
			continue;
		if (best < 0 || m_better(side, o->price, m->live[best].price) ||
		    (o->price == m->live[best].price && o->id < m->live[best].id))
			best = (int)i;
	}
	return best;
}

static uint32_t m_levels(struct model *m)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < m->nlive; i++) {
		bool dup = false;

		for (uint32_t j = 0; j < i && !dup; j++)
			dup = m->live[j].sym == m->live[i].sym && m->live[j].side == m->live[i].side &&
			      m->live[j].price == m->live[i].price;
		n += !dup;
	}
	return n;
}

static bool m_has_level(struct model *m, uint32_t s, int side, int64_t p)
{
	for (uint32_t i = 0; i < m->nlive; i++)
		if (m->live[i].sym == s && m->live[i].side == side && m->live[i].price == p)
			return true;
	return false;
}

static void m_remove(struct model *m, int i)
{
	m->live[i] = m->live[--m->nlive];
}

/* Match the incoming order; returns filled quantity, records trades. */
static uint32_t m_match(struct model *m, uint32_t s, int side, int kind, int64_t price,
			uint32_t qty, uint64_t id)
{
	uint32_t filled = 0;

	m->ntrades = 0;
	while (qty) {
		int bi = m_best(m, s, !side);
		struct m_order *o;
		uint32_t q;

		if (bi < 0)
			break;
		o = &m->live[bi];
		if (kind == XB_LIMIT && (side == XB_BUY ? o->price > price : o->price < price))
			break;
		q = qty < o->qty ? qty : o->qty;
		if (m->ntrades < 256) {
			m->trades[m->ntrades].buy = side == XB_BUY ? id : o->id;
			m->trades[m->ntrades].sell = side == XB_BUY ? o->id : id;
			m->trades[m->ntrades].price = o->price;
			m->trades[m->ntrades].qty = q;
			m->trades[m->ntrades].sym = s;
		}
		m->ntrades++;
		m->trade_total++;
		m->last_price[s] = o->price;
		m->volume[s] += q;
		qty -= q;
		filled += q;
		o->qty -= q;
		if (!o->qty)
			m_remove(m, bi);
	}
	return filled;
}

/* Compare one symbol's depth on both sides with the model. */
static bool same_books(struct xb_book *b, struct model *m, char *why, size_t why_len)
{
	static struct xb_level_view lv[M_MAXLIVE];

	for (uint32_t s = 0; s < m->nsym; s++) {
		for (int side = 0; side < 2; side++) {
			int n = xb_depth(b, s, side, lv, M_MAXLIVE);
			uint64_t total = 0;

			CHECK(n >= 0, "depth: %d", n);
			for (int i = 0; i < n; i++) {
				uint64_t q = 0;
				uint32_t cnt = 0;

				for (uint32_t j = 0; j < m->nlive; j++)
					if (m->live[j].sym == s && m->live[j].side == side &&
					    m->live[j].price == lv[i].price) {
						q += m->live[j].qty;
						cnt++;
					}
				CHECK(q == lv[i].qty && cnt == lv[i].norders,
				      "sym %u side %d price %lld: book qty %llu/%u, model %llu/%u",
				      s, side, (long long)lv[i].price, (unsigned long long)lv[i].qty,
				      lv[i].norders, (unsigned long long)q, cnt);
				total += cnt;
			}
			for (uint32_t j = 0; j < m->nlive; j++)
				if (m->live[j].sym == s && m->live[j].side == side)
					total--;
			CHECK(total == 0, "sym %u side %d: model has orders the book lacks", s, side);
		}
		CHECK(b->sym[s].last_price == m->last_price[s] && b->sym[s].volume == m->volume[s],
		      "sym %u stats", s);
	}
	CHECK(xb_validate(b, why, why_len) == 0, "validate: %s", why);
	(void)why_len;
	return true;
}

/*
 * Random flow: limits around a drifting mid, market orders, cancels of known,
 * ended and unknown ids, bad orders; every result checked against the model.
 */
static bool random_flow(uint32_t nsym, uint32_t max_orders, uint32_t max_levels, long ops,
			uint64_t seed, char *why, size_t why_len)
{
	struct xb_config c = { .nsymbols = nsym, .max_orders = max_orders,
			       .max_levels = max_levels, .trade_ring = 64, .nsessions = 4 };
	size_t size = xb_size(&c);
	struct model *m = calloc(1, sizeof(*m));
	uint64_t *ids = calloc(ops, sizeof(uint64_t)), nids = 0, last_id = 0;
	void *mem = calloc(1, size);
	int64_t mid[64];
	struct xb_book b = { 0 };
	long enospc = 0, fills = 0;
	bool ok = false;

	if (!m || !ids || !mem) {
		snprintf(why, why_len, "out of memory");
		goto out;
	}
	m->nsym = nsym;
	if (xb_init(&b, mem, size, &c)) {
		snprintf(why, why_len, "init failed");
		goto out;
	}
	for (uint32_t s = 0; s < nsym; s++)
		mid[s] = 1000 + s * 10;
	for (long op = 0; op < ops; op++) {
		uint64_t r = rng_next(&seed);
		uint32_t s = (uint32_t)(r % nsym);
		struct xb_result res;
		int roll = (int)((r >> 16) % 100), ret;

		if ((r >> 40) % 8 == 0)
			mid[s] += (int64_t)((r >> 44) % 3) - 1;
		if (roll < 30 && nids) {
			/* cancel: mostly a known id, sometimes garbage */
			uint64_t pick = (r >> 24) % 10;
			uint64_t id = pick == 0 ? (r >> 8) :
				      pick < 6 && m->nlive ? m->live[(r >> 32) % m->nlive].id :
				      ids[(r >> 32) % nids];
			int mi = -1;

			for (uint32_t j = 0; j < m->nlive; j++)
				if (m->live[j].id == id)
					mi = (int)j;
			ret = xb_cancel(&b, id, &res);
			if (mi >= 0) {
				if (ret != 0 || res.remaining != m->live[mi].qty) {
					snprintf(why, why_len, "op %ld: cancel of live order %llu: %d "
						 "remaining %u want %u", op, (unsigned long long)id, ret,
						 res.remaining, m->live[mi].qty);
					goto out;
				}
				m_remove(m, mi);
			} else if (ret != -ENOENT && ret != -EALREADY) {
				snprintf(why, why_len, "op %ld: cancel of ended/unknown id %llu: %d",
					 op, (unsigned long long)id, ret);
				goto out;
			}
		} else if (roll < 33) {
			/* bad orders change nothing but the command count */
			uint64_t before = b.h->book_hash, live = b.h->live_orders;
			int bad = (int)((r >> 24) % 6);

			ret = xb_submit(&b, bad == 0 ? nsym + (uint32_t)(r >> 50) : s,
					bad == 1 ? 2 : XB_BUY, bad == 2 ? 7 : XB_LIMIT,
					bad == 3 ? -5 : bad == 4 ? XB_MAX_PRICE + 1 : 100,
					bad == 5 ? 0 : 10, &res);
			if (ret >= 0 || b.h->book_hash != before || b.h->live_orders != live) {
				snprintf(why, why_len, "op %ld: bad order %d accepted (%d)", op, bad, ret);
				goto out;
			}
		} else {
			int side = (int)((r >> 20) & 1);
			int kind = roll < 40 ? XB_MARKET : XB_LIMIT;
			int64_t price = mid[s] + (int64_t)((r >> 28) % 11) - 5 + (side == XB_BUY ? -1 : 1);
			uint32_t qty = 1 + (uint32_t)((r >> 36) % 50);
			/* Counting levels is quadratic: only where they can run out.
			 * Wherever its slots are, a pool with one free slot takes an
			 * order, a full one refuses it: the model knows exactly. */
			bool small = kind == XB_LIMIT && max_levels < 1000;
			bool full = m->nlive == max_orders || (small && m_levels(m) == max_levels);
			uint32_t filled;

			ret = xb_submit(&b, s, side, kind, price, qty, &res);
			if (full) {
				if (ret != -ENOSPC) {
					snprintf(why, why_len, "op %ld: full pools, submit gave %d", op, ret);
					goto out;
				}
				enospc++;
				continue;
			}
			if (ret) {
				snprintf(why, why_len, "op %ld: submit: %d (live %u levels %u)", op, ret,
					 m->nlive, m_levels(m));
				goto out;
			}
			if (res.order_id <= last_id) {
				snprintf(why, why_len, "op %ld: id %llu not above %llu", op,
					 (unsigned long long)res.order_id, (unsigned long long)last_id);
				goto out;
			}
			last_id = res.order_id;
			filled = m_match(m, s, side, kind, price, qty, res.order_id);
			if (res.filled != filled || res.ntrades != m->ntrades) {
				snprintf(why, why_len, "op %ld: filled %u in %u trades, model %u in %u",
					 op, res.filled, res.ntrades, filled, m->ntrades);
				goto out;
			}
			fills += filled > 0;
			/* the newest trades in the ring are this order's, newest first */
			for (uint32_t t = 0; t < m->ntrades && t < 64 && t < 256; t++) {
				const struct xb_trade *bt =
					&b.trd[(b.h->trade_count - 1 - t) & (b.h->trade_ring - 1)];
				uint32_t mt = m->ntrades - 1 - t;

				if (bt->buy_id != m->trades[mt].buy || bt->sell_id != m->trades[mt].sell ||
				    bt->price != m->trades[mt].price || bt->qty != m->trades[mt].qty) {
					snprintf(why, why_len, "op %ld: trade %u differs from the model",
						 op, t);
					goto out;
				}
			}
			if (qty > filled && kind == XB_LIMIT) {
				if (m->nlive >= M_MAXLIVE) {
					snprintf(why, why_len, "model full");
					goto out;
				}
				m->live[m->nlive++] = (struct m_order){ res.order_id, price,
									qty - filled, s, side };
				if (res.status != XB_LIVE || res.remaining != qty - filled) {
					snprintf(why, why_len, "op %ld: status %u remaining %u", op,
						 res.status, res.remaining);
					goto out;
				}
			} else if (res.status != (qty == filled ? XB_FILLED : XB_KILLED)) {
				snprintf(why, why_len, "op %ld: status %u", op, res.status);
				goto out;
			}
			ids[nids++] = res.order_id;
			(void)m_has_level;
		}
		if (b.h->trade_count != m->trade_total) {
			snprintf(why, why_len, "op %ld: %llu trades, model %llu", op,
				 (unsigned long long)b.h->trade_count,
				 (unsigned long long)m->trade_total);
			goto out;
		}
		if (op % 997 == 0 || op == ops - 1) {
			if (!same_books(&b, m, why, why_len))
				goto out;
		}
	}
	/* Order status of every id ever issued: live ones match the model. */
	for (uint64_t i = 0; i < nids; i++) {
		struct xb_order o;
		int ret = xb_order(&b, ids[i], &o);
		bool live = false;

		for (uint32_t j = 0; j < m->nlive; j++)
			if (m->live[j].id == ids[i]) {
				live = true;
				if (ret || o.status != XB_LIVE || o.qty != m->live[j].qty) {
					snprintf(why, why_len, "status of live order %llu: %d/%u",
						 (unsigned long long)ids[i], ret, o.status);
					goto out;
				}
			}
		if (!live && ret == 0 && o.status == XB_LIVE) {
			snprintf(why, why_len, "ended order %llu reads as live", (unsigned long long)ids[i]);
			goto out;
		}
	}
	if ((max_orders < 1000 || max_levels < 1000) && !enospc) {
		snprintf(why, why_len, "small pools never filled: the test lost its point");
		goto out;
	}
	if (!fills) {
		snprintf(why, why_len, "no order ever matched");
		goto out;
	}
	printf("    %ld ops, %u live, %llu trades, %ld pool-full rejections\n", ops, m->nlive,
	       (unsigned long long)m->trade_total, enospc);
	ok = true;
out:
	free(mem);
	free(ids);
	free(m);
	return ok;
}

/* A copy at another address reads the same; damaged copies never crash a reader. */
static bool copies(char *why, size_t why_len)
{
	struct xb_config c;
	size_t size = 1u << 20;
	char *mem = calloc(1, size), *copy = malloc(size);
	struct xb_book b, cb;
	uint64_t seed = 42;
	int err, detected = 0;
	bool ok = false;

	if (!mem || !copy || xb_config_for_size(&c, 16, size) || xb_init(&b, mem, size, &c)) {
		snprintf(why, why_len, "setup");
		goto out;
	}
	for (int i = 0; i < 20000; i++) {
		uint64_t r = rng_next(&seed);
		struct xb_result res;

		if (r % 10 < 3 && b.h->order_bump)
			xb_cancel(&b, b.ord[(r >> 8) % b.h->order_bump].id, &res);
		else
			xb_submit(&b, (uint32_t)(r >> 20) % 16, (int)(r >> 30) & 1,
				  XB_LIMIT, 500 + (int64_t)((r >> 32) % 21) - 10,
				  1 + (uint32_t)(r >> 50) % 20, &res);
	}
	memcpy(copy, mem, size);
	if (xb_attach(&cb, copy, size) || xb_validate(&cb, why, why_len) ||
	    xb_hash_walk(&cb, &err) != xb_hash_stored(&b) || err) {
		if (!why[0])
			snprintf(why, why_len, "the copy hashes differently");
		goto out;
	}
	/* Flip bytes in the used part: the validator must not crash, and a
	 * damaged link or quantity is reported. */
	for (int round = 0; round < 300; round++) {
		size_t used = b.h->off_orders + (size_t)b.h->order_bump * sizeof(struct xb_order);
		struct xb_level_view lv[32];
		struct xb_trade tr[32];
		struct xb_order o;

		memcpy(copy, mem, size);
		for (int k = 0; k < 4; k++) {
			uint64_t r = rng_next(&seed);

			copy[sizeof(struct xb_header) + r % (used - sizeof(struct xb_header))] ^=
				(char)(1 + (r >> 40) % 255);
		}
		if (xb_attach(&cb, copy, size))
			continue;
		detected += xb_validate(&cb, why, why_len) != 0;
		xb_hash_walk(&cb, &err);
		for (uint32_t s = 0; s < 16; s++) {
			xb_depth(&cb, s, 0, lv, 32);
			xb_depth(&cb, s, 1, lv, 32);
			xb_trades(&cb, s, tr, 32);
		}
		xb_order(&cb, b.ord[0].id, &o);
	}
	if (!detected) {
		snprintf(why, why_len, "300 damaged copies, none detected");
		goto out;
	}
	/* A header from elsewhere is refused. */
	memcpy(copy, mem, size);
	((struct xb_header *)copy)->version = 99;
	if (xb_attach(&cb, copy, size) != -EPROTO) {
		snprintf(why, why_len, "wrong version accepted");
		goto out;
	}
	((struct xb_header *)copy)->magic = 0;
	if (xb_attach(&cb, copy, size) != -EBADMSG) {
		snprintf(why, why_len, "wrong magic accepted");
		goto out;
	}
	memcpy(copy, mem, size);
	((struct xb_header *)copy)->off_orders = size - 8;
	if (xb_attach(&cb, copy, size) != -EINVAL) {
		snprintf(why, why_len, "pool past the block accepted");
		goto out;
	}
	printf("    %d of 300 damaged copies detected by the validator\n", detected);
	ok = true;
out:
	free(mem);
	free(copy);
	return ok;
}

int main(void)
{
	char why[512] = "";

	static const struct {
		const char *name;
		uint32_t nsym, orders, levels;
		long ops;
		uint64_t seed;
	} flows[] = {
		{ "random flow, roomy pools", 8, 1 << 16, 1 << 14, 200000, 1 },
		{ "random flow, 40 symbols in three families", 40, 1 << 16, 1 << 14, 200000, 11 },
		{ "random flow, one symbol", 1, 1 << 12, 1 << 10, 50000, 7 },
		{ "random flow, one symbol, another seed", 1, 1 << 12, 1 << 10, 50000, 17 },
		{ "random flow, pools run out", 4, 60, 12, 50000, 3 },
		{ "random flow, pools of several groups run out", 4, 150, 70, 50000, 5 },
	};

	for (size_t i = 0; i < sizeof(flows) / sizeof(flows[0]); i++) {
		why[0] = '\0';
		t_cell_report(flows[i].name,
			      random_flow(flows[i].nsym, flows[i].orders, flows[i].levels, flows[i].ops,
					  flows[i].seed, why, sizeof(why)) ? T_PASS : T_FAIL,
			    why);
	}
	why[0] = '\0';
	t_cell_report("copies and damaged copies", copies(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	return t_exit();
}
