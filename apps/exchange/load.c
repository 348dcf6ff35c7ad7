/* SPDX-License-Identifier: MIT */
/*
 * load.c - exchange-load, the clients: order flow against the engine, query
 * flow against the md servers, and the checks that make the demo a test.
 *
 * One thread, one epoll loop over every connection:
 *  - K order connections, each a session with increasing sequence numbers
 *    and up to W orders in flight: Zipf-distributed symbols, limit prices
 *    around a per-symbol mid that drifts, some market orders, ~30% cancels
 *    of its own resting orders; paced to a target rate or flat out;
 *  - Q query connections spread over the md servers, one query in flight
 *    each: top of book, depth, last trades, an order's status;
 *  - one control connection to the engine and one to each md server for
 *    the consistency checks and the figures.
 *
 * Replica lag: each answer carries the epoch it comes from; the engine's
 * status page (a small shared file) says its newest epoch and when each
 * was published.  The lag of an answer is how long the first epoch it does
 * not include had been published when the answer arrived (0 if none).
 *
 * Consistency, live: every --check-ms each md server reports its epoch,
 * the hash stored in its copy and the hash recomputed by walking its books;
 * the engine reports the hash it stored at that epoch; all three must agree.
 * At the end: the engine publishes and makes durable a last epoch and
 * hashes its whole block; every md server must reach that epoch and hash
 * its whole copy to the same value.
 *
 * Crash drill: when the engine's connections drop, the load reconnects for
 * up to --reconnect-ms; HELLO tells each session the last command the
 * recovered engine holds.  Acks arrive in order, so every command up to the
 * highest one acked as durable must be there: anything below is a lost
 * durable order, counted and reported (the run then fails).
 *
 * Failover: with --nats and --stream the engine is wherever the holder of
 * the stream's writer lease says it is (pt_net_lease_read: the address it
 * advertises), looked up at start and again while the engine's connections
 * are down, so the load follows a standby that took over on another host;
 * while the lease names nobody, the old address is not dialled (a host cut
 * off would cost a connection timeout each time).
 * The first order acked after a reconnection is reported with the wall
 * clock's time: the end of the failover as the clients see it.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <pagetrack-net.h>

#include "book.h"
#include "flow.h"
#include "net.h"
#include "util.h"

#define MAX_MD		8
#define SEQ_RING	4096	/* > the largest window */
#define OUT_LIMIT	(16u << 20)
#define CONNECT_MS	500	/* a connection attempt's limit (a host cut off
				 * answers nothing: each attempt costs this) */
#define LOOKUP_CONNECT_MS 300	/* a lease look-up's connection to a NATS server
				 * (the list is tried in turn: a lost node's URL
				 * costs this much per look-up) */
#define LOOKUP_NS	250000000ull	/* lease look-ups at most this often */

enum conn_kind { K_ORDER, K_QUERY, K_ENGINE_CTL, K_MD_CTL };

struct conn {
	struct xconn c;
	int kind, index;	/* index: order/query number, or md number */
	bool up;
	uint64_t down_since;
	/* order connections */
	int session;
	bool hello_ok;
	uint64_t hellos;
	uint64_t next_seq, inflight, max_acked, max_durable;
	uint64_t durable_base;	/* max_durable at the last (re)connection */
	uint64_t send_ns[SEQ_RING];
	struct xf_live live;	/* its resting orders, for cancels */
	/* query connections */
	int md;
	bool busy;
	uint64_t q_send_ns;
	/* control connections: what each pending answer is for */
	uint64_t ctx[256];
	int ctx_head, ctx_tail;
};

struct load {
	/* options */
	struct xn_addr engine, md[MAX_MD];
	bool engine_set;
	bool holder_gone;	/* the last look-up: nobody holds the lease, or
				 * its holder advertises nothing (do not dial the
				 * old address: its engine is deposed or dead) */
	const char *nats, *stream;	/* find the engine through the lease */
	int nmd, korders, kqueries, window, reconnect_ms, check_ms;
	double seconds, rate, qrate, zipf_s;
	int session_base;
	const char *status_file;
	bool progress, quiet, kv;
	uint64_t seed;
	/* state */
	int epfd;
	struct conn *conns;
	int nconns;
	struct conn *ectl, *mctl[MAX_MD];
	const struct xe_status *status;
	uint32_t nsymbols;
	struct xf_flow flow;	/* the orders, and the symbols queries ask about */
	uint64_t start_ns, end_ns, sent_orders, sent_queries;
	bool stopping, engine_down;
	uint64_t last_lookup_ns;
	bool await_first_ack;		/* the engine's connections dropped since the last ack */
	uint64_t first_ack_realtime_ns;	/* the first ack after the last reconnection */
	uint64_t lookups, lookups_failed;
	/* figures */
	struct hist order_lat, query_lat, lag_ns, lag_epochs, reconnect_ns;
	uint64_t orders_acked, queries_answered, results[XP_E_COUNT], errors_seen;
	uint64_t trades, fills, cancels, cancels_forgotten;
	uint64_t checks_equal, checks_differ, checks_unknown, checks_invalid;
	uint64_t reconnects, lost_durable, lost_acked, sessions_checked, unacked_at_crash;
	uint64_t durable_checked;	/* durable-acked commands a recovered engine had to hold */
	bool final_done, flush_ok, flush_failed;
	struct xp_flush_ok flush;
	int converged, converge_answers;
	struct xp_stats stats;
	bool stats_ok;
	/* per-second progress */
	uint64_t last_progress_ns, prog_orders, prog_queries;
	struct hist prog_lat, prog_lag;
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "exchange-load: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

/* ---- connections ---------------------------------------------------------------- */

static const struct xn_addr *addr_of(struct load *l, struct conn *c)
{
	return c->kind == K_ORDER || c->kind == K_ENGINE_CTL ? &l->engine : &l->md[c->md];
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Where the engine is, from the writer's lease of --stream: 1 found (and
 * l->engine set), 0 not now (no holder, none advertised, the servers
 * silent: said once per cause until it changes), -1 never (an address that
 * is no numeric one).
 */
static int lookup_engine(struct load *l)
{
	static char said[256];
	struct pt_net_opts o = { .sz = sizeof(o), .urls = l->nats, .stream = l->stream,
				 .connect_timeout_ms = LOOKUP_CONNECT_MS,
				 .request_timeout_ms = 1000 };
	struct pt_lease_info li = { .sz = sizeof(li) };
	char why[sizeof(said)], was[XN_ADDR_TEXT], now[XN_ADDR_TEXT];
	struct xn_addr a;
	int ret;

	l->lookups++;
	l->last_lookup_ns = now_ns();
	ret = pt_net_lease_read(&o, &li);
	if (ret == 1 && li.advertise[0]) {
		if (xn_addr_parse(&a, li.advertise)) {
			fprintf(stderr, "exchange-load: the lease holder advertises '%s', not a "
				"numeric HOST:PORT\n", li.advertise);
			return -1;
		}
		if (!l->engine_set || a.len != l->engine.len || memcmp(&a.sa, &l->engine.sa, a.len))
			fprintf(stderr, "exchange-load: the engine is at %s (lease of stream %s: term "
				"%llu, host %s)%s%s\n", xn_addr_text(&a, now), l->stream,
				(unsigned long long)li.term, li.host, l->engine_set ? ", was " : "",
				l->engine_set ? xn_addr_text(&l->engine, was) : "");
		l->engine = a;
		l->engine_set = true;
		l->holder_gone = false;
		said[0] = 0;
		return 1;
	}
	l->lookups_failed++;
	if (ret >= 0)	/* not an error of the servers: an answer */
		l->holder_gone = true;
	if (ret < 0)
		snprintf(why, sizeof(why), "%s", pt_net_last_error());
	else if (ret == 0)
		snprintf(why, sizeof(why), "nobody holds it (term marker %llu)",
			 (unsigned long long)li.stream_term);
	else
		snprintf(why, sizeof(why), "its holder (term %llu, host %s) advertises no address",
			 (unsigned long long)li.term, li.host);
	if (strcmp(why, said)) {
		fprintf(stderr, "exchange-load: the writer's lease of stream %s: %s\n", l->stream,
			why);
		snprintf(said, sizeof(said), "%s", why);
	}
	return 0;
}

static void send_frame(struct load *l, struct conn *c, int type, const void *body, size_t len)
{
	(void)l;
	if (!c->up)
		return;
	if (xn_queue(&c->c, type, body, len, NULL, 0, OUT_LIMIT))
		die("output to the %s port backs up", c->kind == K_ORDER ? "engine" : "md");
}

static bool conn_up(struct load *l, struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	bool engine = c->kind == K_ORDER || c->kind == K_ENGINE_CTL;
	int fd;

	if (engine && (!l->engine_set || l->holder_gone))
		return false;
	fd = xn_connect(addr_of(l, c), CONNECT_MS);
	if (fd < 0)
		return false;
	if (xn_init(&c->c, fd, XP_MAX_FRAME + 64) || epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		close(fd);
		return false;
	}
	c->up = true;
	c->hello_ok = false;
	c->busy = false;
	c->inflight = 0;
	c->ctx_head = c->ctx_tail = 0;
	if (c->kind == K_ORDER) {
		struct xp_hello h = { .session = (uint32_t)c->session };

		send_frame(l, c, XP_T_HELLO, &h, sizeof(h));
	}
	return true;
}

static void conn_down(struct load *l, struct conn *c)
{
	if (!c->up)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->c.fd, NULL);
	xn_free(&c->c);
	c->up = false;
	c->down_since = now_ns();
	if (c->kind == K_ORDER) {
		l->unacked_at_crash += c->inflight;
		c->inflight = 0;
		l->await_first_ack = true;
	}
}

static void ctx_push(struct conn *c, uint64_t v)
{
	c->ctx[c->ctx_tail++ & 255] = v;
}

static uint64_t ctx_pop(struct conn *c)
{
	return c->ctx_head == c->ctx_tail ? UINT64_MAX : c->ctx[c->ctx_head++ & 255];
}

/* ---- order flow ---------------------------------------------------------------- */

static void send_order(struct load *l, struct conn *c)
{
	uint64_t seq = c->next_seq++;
	struct xf_order o;

	c->send_ns[seq % SEQ_RING] = now_ns();
	c->inflight++;
	l->sent_orders++;
	xf_next(&l->flow, &c->live, &o);
	if (o.cancel) {
		struct xp_cancel m = { .seq = seq, .order_id = o.order_id };

		l->cancels++;
		l->cancels_forgotten += o.forgotten;

		send_frame(l, c, XP_T_CANCEL, &m, sizeof(m));
	} else {
		struct xp_new m = { .seq = seq, .sym = o.sym, .side = o.side, .kind = o.kind,
				    .price = o.price, .qty = o.qty };

		send_frame(l, c, XP_T_NEW, &m, sizeof(m));
	}
}

static void on_ack(struct load *l, struct conn *c, const struct xp_ack *a, uint64_t now)
{
	uint64_t t = c->send_ns[a->seq % SEQ_RING];

	if (c->inflight)
		c->inflight--;
	if (l->await_first_ack && c->hellos > 1) {
		char at[XN_ADDR_TEXT];

		l->await_first_ack = false;
		l->first_ack_realtime_ns = realtime_ns();
		fprintf(stderr, "exchange-load: first order acked after the reconnection at "
			"%llu.%09llu (engine %s)\n",
			(unsigned long long)(l->first_ack_realtime_ns / 1000000000ull),
			(unsigned long long)(l->first_ack_realtime_ns % 1000000000ull),
			xn_addr_text(&l->engine, at));
	}
	if (a->seq > c->max_acked)
		c->max_acked = a->seq;
	if (a->level >= XP_LEVEL_DURABLE && a->seq > c->max_durable)
		c->max_durable = a->seq;
	if (t && now >= t) {
		hist_add(&l->order_lat, now - t);
		hist_add(&l->prog_lat, now - t);
	}
	l->orders_acked++;
	l->prog_orders++;
	l->results[a->result < XP_E_COUNT ? a->result : XP_E_INTERNAL]++;
	l->trades += a->ntrades;
	if (a->filled)
		l->fills++;
	/* Remember resting orders to cancel later. */
	if (!a->result && a->status == XB_LIVE && a->remaining && a->order_id)
		xf_resting(&c->live, a->order_id, a->seq);
}

static void on_hello(struct load *l, struct conn *c, const struct xp_hello_ok *h)
{
	c->hello_ok = true;
	if (!c->hellos++) {
		/* A fresh session continues after whatever an earlier run left. */
		l->nsymbols = h->nsymbols;
		c->next_seq = h->last_seq + 1;
		c->max_acked = c->max_durable = c->durable_base = h->last_seq;
		return;
	}
	/* A reconnection: does the recovered engine hold every durable ack? */
	l->sessions_checked++;
	l->durable_checked += c->max_durable - c->durable_base;
	if (h->last_seq < c->max_durable) {
		l->lost_durable += c->max_durable - h->last_seq;
		fprintf(stderr, "exchange-load: session %d: engine recovered up to command %llu, "
			"but %llu was acked durable\n", c->session, (unsigned long long)h->last_seq,
			(unsigned long long)c->max_durable);
	}
	if (h->last_seq < c->max_acked)
		l->lost_acked += c->max_acked - h->last_seq;
	if (c->next_seq <= h->last_seq)
		c->next_seq = h->last_seq + 1;
	/* The orders it remembered may be gone with the crash: forget them. */
	c->live.n = 0;
	c->live.nforgotten = 0;
	if (c->max_acked > h->last_seq)
		c->max_acked = h->last_seq;
	if (c->max_durable > h->last_seq)
		c->max_durable = h->last_seq;
	c->durable_base = c->max_durable;
}

/* ---- queries ---------------------------------------------------------------- */

static void send_query(struct load *l, struct conn *c)
{
	uint64_t r = rng_next(&l->flow.seed);
	int roll = (int)(r % 100);

	c->busy = true;
	c->q_send_ns = now_ns();
	l->sent_queries++;
	if (roll < 10) {
		struct conn *oc = &l->conns[(r >> 8) % (uint64_t)l->korders];
		struct xp_order_q q = { .order_id = oc->live.n ?
					oc->live.id[(r >> 16) % (uint64_t)oc->live.n] : 1 };

		send_frame(l, c, XP_T_ORDER, &q, sizeof(q));
	} else {
		struct xp_sym_q q = { .sym = xf_symbol(&l->flow) };
		int type = XP_T_TOP;

		if (roll < 35) {
			type = XP_T_DEPTH;
			q.n = 10;
		} else if (roll < 50) {
			type = XP_T_TRADES;
			q.n = 20;
			if (roll < 38)
				q.sym = XP_ALL_SYMBOLS;
		}
		send_frame(l, c, type, &q, sizeof(q));
	}
}

/* Lag of an answer from epoch e, against the engine's status page now. */
static void note_lag(struct load *l, uint64_t e, uint64_t now)
{
	uint64_t cur, pub, lag = 0;

	if (!l->status || !e)
		return;
	cur = __atomic_load_n(&l->status->epoch, __ATOMIC_ACQUIRE);
	if (e < cur) {
		pub = l->status->publish_ns[(e + 1) % XE_STATUS_RING];
		lag = now > pub ? now - pub : 0;
		if (cur - e >= XE_STATUS_RING)
			lag = now - l->start_ns;	/* off the ring: at least this */
	}
	hist_add(&l->lag_ns, lag);
	hist_add(&l->prog_lag, lag);
	hist_add(&l->lag_epochs, e < cur ? cur - e : 0);
}

static uint64_t answer_epoch(int type, const void *body, size_t len)
{
	/* Every market-data answer starts with its epoch. */
	switch (type) {
	case XP_T_TOP_OK: case XP_T_DEPTH_OK: case XP_T_TRADES_OK: case XP_T_ORDER_OK:
		if (len >= 8) {
			uint64_t e;

			memcpy(&e, body, 8);
			return e;
		}
		break;
	default:
		break;
	}
	return 0;
}

/* ---- checks ---------------------------------------------------------------- */

static void on_check(struct load *l, int md, const struct xp_check *k)
{
	struct xp_epoch_q q = { .epoch = k->epoch };

	if (!k->valid || k->stored_hash != k->walked_hash) {
		l->checks_invalid++;
		fprintf(stderr, "exchange-load: md %d: copy at epoch %llu is not consistent "
			"(valid %u, stored %016llx, walked %016llx)\n", md,
			(unsigned long long)k->epoch, k->valid, (unsigned long long)k->stored_hash,
			(unsigned long long)k->walked_hash);
		return;
	}
	if (!l->ectl->up) {
		l->checks_unknown++;
		return;
	}
	/* Ask the engine for its hash at that epoch; remember what md said. */
	ctx_push(l->ectl, (uint64_t)XP_T_EPOCH_HASH << 56 | (uint64_t)md << 48);
	ctx_push(l->ectl, k->stored_hash);
	send_frame(l, l->ectl, XP_T_EPOCH_HASH, &q, sizeof(q));
}

static void on_epoch_hash(struct load *l, const struct xp_epoch_hash *h, uint64_t md_hash, int md)
{
	if (!h->found) {
		l->checks_unknown++;
		return;
	}
	if (h->book_hash == md_hash) {
		l->checks_equal++;
	} else {
		l->checks_differ++;
		fprintf(stderr, "exchange-load: md %d at epoch %llu: hash %016llx, engine %016llx\n", md,
			(unsigned long long)h->epoch, (unsigned long long)md_hash,
			(unsigned long long)h->book_hash);
	}
}

/* ---- dispatch ---------------------------------------------------------------- */

static void on_frame(struct load *l, struct conn *c, const struct xp_hdr *h, uint64_t now)
{
	const void *body = h + 1;
	size_t len = h->len - sizeof(*h);

#define NEED(t) do { if (len < sizeof(t)) die("short %s answer (%zu bytes)", #t, len); } while (0)
	switch (h->type) {
	case XP_T_ERROR: {
		const struct xp_error *e = body;

		NEED(struct xp_error);
		l->errors_seen++;
		fprintf(stderr, "exchange-load: error from the %s: %s\n",
			c->kind == K_ORDER || c->kind == K_ENGINE_CTL ? "engine" : "md server",
			xp_err_name(e->code));
		if (c->kind == K_QUERY)
			c->busy = false;
		return;
	}
	case XP_T_HELLO_OK:
		NEED(struct xp_hello_ok);
		on_hello(l, c, body);
		return;
	case XP_T_ACK:
		NEED(struct xp_ack);
		on_ack(l, c, body, now);
		return;
	case XP_T_STATS_OK:
		NEED(struct xp_stats);
		ctx_pop(c);
		memcpy(&l->stats, body, sizeof(l->stats));
		l->stats_ok = true;
		return;
	case XP_T_EPOCH_HASH_OK: {
		uint64_t what = ctx_pop(c), md_hash = ctx_pop(c);

		NEED(struct xp_epoch_hash);
		on_epoch_hash(l, body, md_hash, (int)((what >> 48) & 0xff));
		return;
	}
	case XP_T_FLUSH_OK:
		NEED(struct xp_flush_ok);
		ctx_pop(c);
		memcpy(&l->flush, body, sizeof(l->flush));
		l->flush_ok = true;
		return;
	case XP_T_CHECK_OK:
		NEED(struct xp_check);
		ctx_pop(c);
		on_check(l, c->md, body);
		return;
	case XP_T_CONVERGE_OK: {
		const struct xp_converge *v = body;

		NEED(struct xp_converge);
		ctx_pop(c);
		l->converge_answers++;
		if (v->epoch >= l->flush.epoch && v->full_hash == l->flush.full_hash &&
		    v->book_hash == l->flush.book_hash)
			l->converged++;
		else
			fprintf(stderr, "exchange-load: md %d did not converge: epoch %llu (want %llu), "
				"hash %016llx (want %016llx)\n", c->md, (unsigned long long)v->epoch,
				(unsigned long long)l->flush.epoch, (unsigned long long)v->full_hash,
				(unsigned long long)l->flush.full_hash);
		return;
	}
	default:
		break;
	}
	if (c->kind == K_QUERY) {
		c->busy = false;
		l->queries_answered++;
		l->prog_queries++;
		hist_add(&l->query_lat, now - c->q_send_ns);
		note_lag(l, answer_epoch(h->type, body, len), now);
		return;
	}
	die("unexpected answer type %u", h->type);
#undef NEED
}

static void on_readable(struct load *l, struct conn *c)
{
	int n;

	do {
		size_t off = 0;
		const struct xp_hdr *h;
		uint64_t now = now_ns();
		int r;

		n = xn_read(&c->c);
		if (n == -1 || n == -2) {
			conn_down(l, c);
			return;
		}
		while ((r = xn_frame(&c->c, off, XP_MAX_FRAME, &h)) == 1) {
			on_frame(l, c, h, now);
			off += h->len;
		}
		if (r < 0)
			die("malformed answer: %s", xp_err_name((unsigned)-r));
		xn_consume(&c->c, off);
	} while (n > 0 && c->up);
}

/* ---- the run ---------------------------------------------------------------- */

static void progress(struct load *l, uint64_t now, bool last)
{
	double t = (double)(now - l->start_ns) / 1e9, dt = (double)(now - l->last_progress_ns) / 1e9;
	uint64_t epoch = l->status ? __atomic_load_n(&l->status->epoch, __ATOMIC_ACQUIRE) : 0;
	bool tty = isatty(2);

	if (dt <= 0)
		return;
	fprintf(stderr, "%s[%5.1fs] orders %8.0f/s  ack p99 %7.2f ms  queries %8.0f/s  lag p99 %6.2f ms"
		"  epoch %llu%s%s", tty ? "\r" : "", t, (double)l->prog_orders / dt,
		hist_pct(&l->prog_lat, 0.99) / 1e6, (double)l->prog_queries / dt,
		hist_pct(&l->prog_lag, 0.99) / 1e6, (unsigned long long)epoch,
		l->engine_down ? "  (engine down)" : "", tty && !last ? "   " : "\n");
	l->last_progress_ns = now;
	l->prog_orders = l->prog_queries = 0;
	memset(&l->prog_lat, 0, sizeof(l->prog_lat));
	memset(&l->prog_lag, 0, sizeof(l->prog_lag));
}

/* Top up every connection per the targets. */
static void drive(struct load *l, uint64_t now)
{
	double el = (double)(now - l->start_ns) / 1e9;
	uint64_t due_orders = l->rate > 0 ? (uint64_t)(l->rate * el) : UINT64_MAX;
	uint64_t due_queries = l->qrate > 0 ? (uint64_t)(l->qrate * el) : UINT64_MAX;
	bool more = true;

	/* Round-robin, one order per connection per pass, so the load spreads. */
	while (more && l->sent_orders < due_orders) {
		more = false;
		for (int i = 0; i < l->korders && l->sent_orders < due_orders; i++) {
			struct conn *c = &l->conns[i];

			if (c->up && c->hello_ok && c->inflight < (uint64_t)l->window) {
				send_order(l, c);
				more = true;
			}
		}
	}
	for (int i = 0; i < l->kqueries && l->sent_queries < due_queries; i++) {
		struct conn *c = &l->conns[l->korders + i];

		if (c->up && !c->busy)
			send_query(l, c);
	}
}

static void checks(struct load *l)
{
	for (int m = 0; m < l->nmd; m++) {
		struct conn *c = l->mctl[m];

		if (c->up && c->ctx_head == c->ctx_tail) {
			ctx_push(c, XP_T_CHECK);
			send_frame(l, c, XP_T_CHECK, NULL, 0);
		}
	}
}

static void flush_conns(struct load *l)
{
	for (int i = 0; i < l->nconns; i++) {
		struct conn *c = &l->conns[i];

		if (c->up && xn_flush(&c->c) < 0)
			conn_down(l, c);
		else if (c->up)
			xn_arm(l->epfd, &c->c, (uint64_t)(uintptr_t)c);
	}
}

/* Reconnect what dropped (the engine restarting); give up after reconnect_ms. */
static void reconnect(struct load *l, uint64_t now)
{
	static uint64_t last_try;
	bool any_down = false, engine_failed = false;

	if (now - last_try < 50000000)
		return;
	last_try = now;
	if (l->nats && (!l->ectl->up || !l->conns[0].up) && now - l->last_lookup_ns >= LOOKUP_NS &&
	    lookup_engine(l) < 0)
		die("no engine address to connect to");
	for (int i = 0; i < l->nconns; i++) {
		struct conn *c = &l->conns[i];
		uint64_t since = c->down_since;
		char at[XN_ADDR_TEXT];

		if (c->up)
			continue;
		any_down = true;
		if (now - since > (uint64_t)l->reconnect_ms * 1000000ull)
			die("connection to %s lost for more than %d ms", xn_addr_text(addr_of(l, c), at),
			    l->reconnect_ms);
		if (c->kind == K_ORDER || c->kind == K_ENGINE_CTL) {
			/* One failed attempt a round: an unreachable host costs
			 * CONNECT_MS an attempt. */
			if (engine_failed)
				continue;
			if (!conn_up(l, c)) {
				engine_failed = true;
				continue;
			}
			if (c->kind == K_ORDER)
				l->reconnects++;
			hist_add(&l->reconnect_ns, now - since);
		} else {
			conn_up(l, c);
		}
	}
	l->engine_down = any_down;
}

static void pump(struct load *l, int timeout_ms)
{
	struct epoll_event evs[128];
	int n = epoll_wait(l->epfd, evs, 128, timeout_ms);

	for (int k = 0; k < n; k++) {
		struct conn *c = evs[k].data.ptr;

		if (!c->up)
			continue;
		if (evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
			on_readable(l, c);
		if (c->up && (evs[k].events & EPOLLOUT) && xn_flush(&c->c) < 0)
			conn_down(l, c);
	}
}

static void run(struct load *l)
{
	uint64_t now = now_ns(), last_check = 0;

	l->start_ns = l->last_progress_ns = now;
	l->end_ns = now + (uint64_t)(l->seconds * 1e9);
	while (!interrupted && (now = now_ns()) < l->end_ns) {
		drive(l, now);
		if (now - last_check >= (uint64_t)l->check_ms * 1000000ull) {
			checks(l);
			last_check = now;
		}
		flush_conns(l);
		pump(l, 1);
		reconnect(l, now_ns());
		if (l->progress && now_ns() - l->last_progress_ns >= 1000000000ull)
			progress(l, now_ns(), false);
	}
	if (l->progress)
		progress(l, now_ns(), true);
	/* Let the orders in flight come back (acks wait for durability). */
	l->stopping = true;
	for (uint64_t until = now_ns() + 5000000000ull; now_ns() < until;) {
		uint64_t inflight = 0;

		for (int i = 0; i < l->korders; i++)
			inflight += l->conns[i].up ? l->conns[i].inflight : 0;
		for (int i = 0; i < l->kqueries; i++)
			inflight += l->conns[l->korders + i].busy;
		if (!inflight)
			break;
		flush_conns(l);
		pump(l, 5);
		reconnect(l, now_ns());
	}
}

static void finish(struct load *l)
{
	struct xp_converge_q q = { .timeout_ms = 10000 };
	uint64_t until = now_ns() + 20000000000ull;

	/* A last epoch from the engine, then every copy must reach it. */
	while (!l->ectl->up && now_ns() < until) {
		reconnect(l, now_ns());
		pump(l, 10);
	}
	ctx_push(l->ectl, XP_T_FLUSH);
	send_frame(l, l->ectl, XP_T_FLUSH, NULL, 0);
	ctx_push(l->ectl, XP_T_STATS);
	send_frame(l, l->ectl, XP_T_STATS, NULL, 0);
	while ((!l->flush_ok || !l->stats_ok) && now_ns() < until && l->ectl->up) {
		flush_conns(l);
		pump(l, 10);
	}
	if (!l->flush_ok)
		return;
	q.epoch = l->flush.epoch;
	for (int m = 0; m < l->nmd; m++) {
		ctx_push(l->mctl[m], XP_T_CONVERGE);
		send_frame(l, l->mctl[m], XP_T_CONVERGE, &q, sizeof(q));
	}
	while (l->converge_answers < l->nmd && now_ns() < until) {
		flush_conns(l);
		pump(l, 10);
	}
}

static const char *ms(char *buf, uint64_t ns)
{
	if (ns < 1000000)
		sprintf(buf, "%.0f us", ns / 1e3);
	else
		sprintf(buf, "%.2f ms", ns / 1e6);
	return buf;
}

/* Print the summary; return the exit status. */
static int summary(struct load *l)
{
	double secs = l->seconds;
	char a[32], b[32], c[32];
	bool ok = true;
	uint64_t live_checks = l->checks_equal + l->checks_differ;

	printf("\n== exchange: %.0f s, %u symbols, %d order + %d query connections, %d md server%s\n",
	       secs, l->nsymbols, l->korders, l->kqueries, l->nmd, l->nmd == 1 ? "" : "s");
	printf("orders       %9.0f/s   ack latency p50 %s  p99 %s  p99.9 %s   (acks: %s)\n",
	       (double)l->orders_acked / secs, ms(a, hist_pct(&l->order_lat, 0.5)),
	       ms(b, hist_pct(&l->order_lat, 0.99)), ms(c, hist_pct(&l->order_lat, 0.999)),
	       !l->stats_ok ? "?" : l->stats.ack_level == XP_LEVEL_REPLICATED ? "replicated" :
	       l->stats.ack_level == XP_LEVEL_DURABLE ? "durable" :
	       l->stats.ack_level == XP_LEVEL_PUBLISHED ? "published" : "applied");
	printf("             %llu trades, %llu rejected (books full %llu, ended %llu, unknown %llu)\n",
	       (unsigned long long)l->trades,
	       (unsigned long long)(l->orders_acked - l->results[XP_OK]),
	       (unsigned long long)l->results[XP_E_FULL], (unsigned long long)l->results[XP_E_ENDED],
	       (unsigned long long)l->results[XP_E_NO_ORDER]);
	printf("             %llu cancels (%.0f%% of commands), %llu of them of orders the session "
	       "no longer tracked\n", (unsigned long long)l->cancels,
	       l->sent_orders ? 100.0 * (double)l->cancels / (double)l->sent_orders : 0.0,
	       (unsigned long long)l->cancels_forgotten);
	printf("queries      %9.0f/s   latency p50 %s  p99 %s\n", (double)l->queries_answered / secs,
	       ms(a, hist_pct(&l->query_lat, 0.5)), ms(b, hist_pct(&l->query_lat, 0.99)));
	printf("replica lag  p50 %s  p99 %s  max %s   (epochs behind p50 %llu, p99 %llu)\n",
	       ms(a, hist_pct(&l->lag_ns, 0.5)), ms(b, hist_pct(&l->lag_ns, 0.99)),
	       ms(c, l->lag_ns.max), (unsigned long long)hist_pct(&l->lag_epochs, 0.5),
	       (unsigned long long)hist_pct(&l->lag_epochs, 0.99));
	if (l->stats_ok) {
		printf("engine       %llu syncs (%.0f/s), writer stall per sync p50 %s  p99 %s  max %s\n",
		       (unsigned long long)l->stats.syncs, (double)l->stats.syncs / secs,
		       ms(a, l->stats.stall_p50_ns), ms(b, l->stats.stall_p99_ns),
		       ms(c, l->stats.stall_max_ns));
		if (l->stats.pages_total != UINT64_MAX)
			printf("             pages per sync p50 %llu  p99 %llu; region %llu MiB; "
			       "sync to durable p50 %s p99 %s\n",
			       (unsigned long long)l->stats.pages_p50,
			       (unsigned long long)l->stats.pages_p99,
			       (unsigned long long)l->stats.region_size >> 20,
			       ms(a, l->stats.durable_p50_ns), ms(b, l->stats.durable_p99_ns));
		else
			printf("             pages per sync: none copied (no replication); region %llu MiB; "
			       "sync to durable p50 %s p99 %s\n",
			       (unsigned long long)l->stats.region_size >> 20,
			       ms(a, l->stats.durable_p50_ns), ms(b, l->stats.durable_p99_ns));
	}
	printf("consistency  live: %llu checks, %llu equal to the engine at the same epoch, %llu differ, "
	       "%llu damaged, %llu unverifiable\n", (unsigned long long)live_checks,
	       (unsigned long long)l->checks_equal, (unsigned long long)l->checks_differ,
	       (unsigned long long)l->checks_invalid, (unsigned long long)l->checks_unknown);
	if (l->flush_ok)
		printf("             end: engine at epoch %llu (block hash %016llx); %d of %d md servers "
		       "converged to it exactly\n", (unsigned long long)l->flush.epoch,
		       (unsigned long long)l->flush.full_hash, l->converged, l->nmd);
	else
		printf("             end: the engine gave no final epoch\n");
	if (l->reconnects || l->sessions_checked)
		printf("crash drill  %llu reconnections (p50 %s after the drop), %llu sessions checked: "
		       "%llu durable-acked commands lost of %llu, %llu acked commands lost, %llu in flight\n",
		       (unsigned long long)l->reconnects, ms(a, hist_pct(&l->reconnect_ns, 0.5)),
		       (unsigned long long)l->sessions_checked, (unsigned long long)l->lost_durable,
		       (unsigned long long)l->durable_checked,
		       (unsigned long long)l->lost_acked, (unsigned long long)l->unacked_at_crash);
	if (l->first_ack_realtime_ns)
		printf("failover     first order acked after the last reconnection at %llu.%09llu "
		       "(wall clock), by the engine at %s\n",
		       (unsigned long long)(l->first_ack_realtime_ns / 1000000000ull),
		       (unsigned long long)(l->first_ack_realtime_ns % 1000000000ull),
		       xn_addr_text(&l->engine, a));
	if (l->nats)
		printf("             %llu look-ups of the writer's lease, %llu without an engine "
		       "address\n", (unsigned long long)l->lookups,
		       (unsigned long long)l->lookups_failed);
	if (!l->orders_acked || (l->kqueries && !l->queries_answered)) {
		printf("FAIL: no %s went through\n", !l->orders_acked ? "order" : "query");
		ok = false;
	}
	if (l->checks_differ || l->checks_invalid || (l->nmd && !l->checks_equal)) {
		printf("FAIL: replicas did not match the engine\n");
		ok = false;
	}
	if (!l->flush_ok || l->converged != l->nmd) {
		printf("FAIL: the copies did not converge\n");
		ok = false;
	}
	if (l->lost_durable) {
		printf("FAIL: %llu durable-acked commands lost\n", (unsigned long long)l->lost_durable);
		ok = false;
	}
	if (l->errors_seen || l->results[XP_E_SEQ] || l->results[XP_E_INTERNAL]) {
		printf("FAIL: %llu error answers to well-formed requests\n",
		       (unsigned long long)(l->errors_seen + l->results[XP_E_SEQ] +
					    l->results[XP_E_INTERNAL]));
		ok = false;
	}
	if (l->kv)
		printf("kv: orders_per_s=%.0f ack_p50_ns=%llu ack_p99_ns=%llu ack_p999_ns=%llu "
		       "queries_per_s=%.0f lag_p50_ns=%llu lag_p99_ns=%llu stall_p50_ns=%llu "
		       "stall_p99_ns=%llu stall_max_ns=%llu syncs=%llu region_mib=%llu pages_p50=%lld "
		       "pages_p99=%lld first_ack_after_reconnect_ns=%llu ok=%d\n",
		       (double)l->orders_acked / secs,
		       (unsigned long long)hist_pct(&l->order_lat, 0.5),
		       (unsigned long long)hist_pct(&l->order_lat, 0.99),
		       (unsigned long long)hist_pct(&l->order_lat, 0.999),
		       (double)l->queries_answered / secs,
		       (unsigned long long)hist_pct(&l->lag_ns, 0.5),
		       (unsigned long long)hist_pct(&l->lag_ns, 0.99),
		       (unsigned long long)l->stats.stall_p50_ns, (unsigned long long)l->stats.stall_p99_ns,
		       (unsigned long long)l->stats.stall_max_ns, (unsigned long long)l->stats.syncs,
		       (unsigned long long)l->stats.region_size >> 20,
		       l->stats.pages_total == UINT64_MAX ? -1ll : (long long)l->stats.pages_p50,
		       l->stats.pages_total == UINT64_MAX ? -1ll : (long long)l->stats.pages_p99,
		       (unsigned long long)l->first_ack_realtime_ns, ok);
	printf("RESULT: %s\n", ok ? "PASS" : "FAIL");
	fflush(stdout);
	return ok ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: exchange-load {--engine [HOST:]PORT | --nats URLS --stream NAME}\n"
"                     [--md [HOST:]PORT]... [options]\n"
"  -e, --engine [HOST:]PORT  the engine's order port (HOST: a numeric IPv4 address,\n"
"                          or IPv6 in brackets; default 127.0.0.1)\n"
"  -n, --nats URL[,URL...] find the engine through these NATS servers instead: the\n"
"      --stream NAME       address the holder of the stream's writer lease advertises\n"
"                          (pagetrack publish --advertise), looked up at start and\n"
"                          while the engine is unreachable\n"
"  -m, --md [HOST:]PORT    an md server (repeat for each, up to 8)\n"
"  -S, --status FILE       the engine's status page (for replica lag)\n"
"  -k, --orders K          order connections (default 4)\n"
"  -Q, --queries Q         query connections, spread over the md servers (default 4)\n"
"  -t, --seconds T         run time (default 10)\n"
"  -r, --rate R            orders/s in total (default 0: flat out)\n"
"  -R, --query-rate R      queries/s in total (default 0: flat out)\n"
"  -w, --window W          orders in flight per connection (default 32)\n"
"  -z, --zipf S            Zipf exponent over symbols (default 1.0)\n"
"  -b, --session-base B    first session number (default 0)\n"
"  -c, --check-ms N        consistency check interval (default 200)\n"
"  -x, --reconnect-ms N    how long to retry a dropped engine (default 20000)\n"
"  -s, --seed N\n"
"  -p, --progress          a progress line every second\n"
"      --kv                end with one machine-readable line of key=value figures\n");
}

static void parse(struct load *l, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "engine", required_argument, NULL, 'e' }, { "md", required_argument, NULL, 'm' },
		{ "status", required_argument, NULL, 'S' }, { "orders", required_argument, NULL, 'k' },
		{ "queries", required_argument, NULL, 'Q' }, { "seconds", required_argument, NULL, 't' },
		{ "rate", required_argument, NULL, 'r' }, { "query-rate", required_argument, NULL, 'R' },
		{ "window", required_argument, NULL, 'w' }, { "zipf", required_argument, NULL, 'z' },
		{ "session-base", required_argument, NULL, 'b' },
		{ "check-ms", required_argument, NULL, 'c' },
		{ "reconnect-ms", required_argument, NULL, 'x' }, { "seed", required_argument, NULL, 's' },
		{ "progress", no_argument, NULL, 'p' }, { "help", no_argument, NULL, 'h' },
		{ "kv", no_argument, NULL, 'K' }, { "nats", required_argument, NULL, 'n' },
		{ "stream", required_argument, NULL, 'N' }, { 0 }
	};
	uint64_t v;
	char *end;
	int o;

	l->korders = 4;
	l->kqueries = 4;
	l->seconds = 10;
	l->window = 32;
	l->zipf_s = 1.0;
	l->check_ms = 200;
	l->reconnect_ms = 20000;
	l->seed = 0x9e3779b97f4a7c15ull;
	while ((o = getopt_long(argc, argv, "e:m:n:S:k:Q:t:r:R:w:z:b:c:x:s:ph", opts, NULL)) != -1) {
		switch (o) {
		case 'S': l->status_file = optarg; continue;
		case 'n': l->nats = optarg; continue;
		case 'N': l->stream = optarg; continue;
		case 'e':
			if (xn_addr_parse(&l->engine, optarg))
				die("--engine: '%s' is not [HOST:]PORT (a numeric host, a port 1 to "
				    "65535)", optarg);
			l->engine_set = true;
			continue;
		case 'm':
			if (l->nmd == MAX_MD)
				die("at most %d md servers", MAX_MD);
			if (xn_addr_parse(&l->md[l->nmd++], optarg))
				die("--md: '%s' is not [HOST:]PORT (a numeric host, a port 1 to 65535)",
				    optarg);
			continue;
		case 'p': l->progress = true; continue;
		case 'K': l->kv = true; continue;
		case 'h': usage(stdout); exit(0);
		case '?': usage(stderr); exit(2);
		case 't': case 'r': case 'R': case 'z': {
			double d = strtod(optarg, &end);

			if (*end || end == optarg || !(d >= 0) || d > 1e9 || (o == 't' && d < 0.1))
				die("-%c: '%s' is not a reasonable number", o, optarg);
			if (o == 't')
				l->seconds = d;
			else if (o == 'r')
				l->rate = d;
			else if (o == 'R')
				l->qrate = d;
			else
				l->zipf_s = d;
			continue;
		}
		default:
			break;
		}
		if (parse_u64(optarg, o == 'k' || o == 'Q' || o == 'b' ? 0 : 1,
			      o == 'w' ? SEQ_RING / 2 : 1000000, false, &v))
			die("-%c: '%s' is out of range", o, optarg);
		switch (o) {
		case 'k': l->korders = (int)v; break;
		case 'Q': l->kqueries = (int)v; break;
		case 'w': l->window = (int)v; break;
		case 'b': l->session_base = (int)v; break;
		case 'c': l->check_ms = (int)v; break;
		case 'x': l->reconnect_ms = (int)v; break;
		case 's': l->seed = v | 1; break;
		}
	}
	if (optind != argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (l->engine_set == !!l->nats)
		die("one of --engine [HOST:]PORT and --nats URLS is required");
	if (!l->nats != !l->stream)
		die("--nats and --stream go together");
	if (!l->nmd)
		l->kqueries = 0;
	if (!l->korders)
		die("--orders must be at least 1");
	if (l->korders + l->kqueries > 1000)
		die("at most 1000 connections");
}

int main(int argc, char **argv)
{
	static struct load ld;
	struct load *l = &ld;
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t until;
	int i;

	parse(l, argc, argv);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (l->status_file) {
		int fd = open(l->status_file, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			die("%s: %s", l->status_file, strerror(errno));
		l->status = mmap(NULL, sizeof(*l->status), PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
		if (l->status == MAP_FAILED || l->status->magic != XE_STATUS_MAGIC)
			die("%s is not an engine status page", l->status_file);
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->nconns = l->korders + l->kqueries + 1 + l->nmd;
	l->conns = calloc((size_t)l->nconns, sizeof(*l->conns));
	if (l->epfd < 0 || !l->conns)
		die("setup: %s", strerror(errno));
	/* Through the cluster: wait for a holder that advertises an address. */
	until = now_ns() + (uint64_t)l->reconnect_ms * 1000000ull;
	while (l->nats && !interrupted) {
		int found = lookup_engine(l);

		if (found < 0)
			die("no engine address to connect to");
		if (found)
			break;
		if (now_ns() > until)
			die("no engine found through the lease of stream %s within %d ms", l->stream,
			    l->reconnect_ms);
		usleep(200000);
	}
	for (i = 0; i < l->nconns; i++) {
		struct conn *c = &l->conns[i];

		c->c.fd = -1;
		c->down_since = now_ns();
		if (i < l->korders) {
			c->kind = K_ORDER;
			c->session = l->session_base + i;
			c->next_seq = 1;
		} else if (i < l->korders + l->kqueries) {
			c->kind = K_QUERY;
			c->md = (i - l->korders) % (l->nmd ? l->nmd : 1);
		} else if (i == l->korders + l->kqueries) {
			c->kind = K_ENGINE_CTL;
			l->ectl = c;
		} else {
			c->kind = K_MD_CTL;
			c->md = i - l->korders - l->kqueries - 1;
			l->mctl[c->md] = c;
		}
		if (!conn_up(l, c)) {
			char at[XN_ADDR_TEXT];

			die("cannot connect to %s", xn_addr_text(addr_of(l, c), at));
		}
	}
	/* Wait for the sessions to open; the first HELLO tells the symbol count. */
	until = now_ns() + 5000000000ull;
	for (;;) {
		bool all = true;

		for (i = 0; i < l->korders; i++)
			all &= l->conns[i].hello_ok;
		if (all)
			break;
		if (now_ns() > until)
			die("the engine did not open the sessions (session numbers in use?)");
		flush_conns(l);
		pump(l, 10);
	}
	if (xf_init(&l->flow, l->nsymbols, l->zipf_s, l->seed))
		die("out of memory");
	run(l);
	finish(l);
	return summary(l);
}
