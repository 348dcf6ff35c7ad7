/* SPDX-License-Identifier: MIT */
/*
 * engine.c - exchange-engine, the transaction process.
 *
 * One thread, one epoll loop: read orders from every client, apply each to
 * the books in the block (book.c), and every N ms or M orders publish an
 * epoch (store.c: a pagetrack region sync).  An order's ack waits for the
 * level the engine was started with:
 *   applied    sent right after the order changed the books;
 *   published  sent once an epoch holding it is published (replicas see it);
 *   durable    sent once that epoch is durable (it survives a crash).
 * Acks leave in the order the commands were applied, so a client's acks
 * never overtake one another.
 *
 * The block is only changed between epoll events, never during a sync, so
 * every epoch is a consistent state of the books: the property replicas rely on.
 *
 * Outside input is checked at three layers: the frame header (net.c), the
 * exact size of each type and its reserved fields (proto.c, before
 * dispatch), the range of each field (proto.c, and again in book.c).  A
 * malformed frame closes that client's connection after an error frame; a
 * refused order gets an ack with the reason; neither touches anyone else.
 * The clients' slots, deadlines and descriptors are net.c's client table,
 * shared with exchange-md.
 *
 * The engine's thread comes first on the machine: once the region is open
 * (its threads started at the nice value the engine was started with) the
 * engine raises its own thread to --nice (default ENGINE_NICE) when it may
 * (root, CAP_SYS_NICE or RLIMIT_NICE), and the md servers run SCHED_BATCH,
 * never preempting it on waking (md.c).  See docs/exchange.md, "Who runs
 * first".
 *
 * SIGUSR1 prints one line of figures since the previous one (commands,
 * syncs, pages, stall): what `make soak` samples every minute; and, for a
 * region, one of its tracker's since open (faults, hot pages, the fault's
 * cost): what `make bench-exchange` reads.  The region tracks with
 * PT_REGION_CHUNKS (the engine writes its block only from user code, never
 * by read(2) into it), unless --track says plain or adaptive
 * (PT_REGION_ADAPTIVE); adaptive,chunks asks for both.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "book.h"
#include "pagetrack.h"
#include "net.h"
#include "store.h"
#include "util.h"

#define OUT_LIMIT	(4u << 20)	/* a client reading slower than this is dropped */
#define PEND_LIMIT	65536		/* acks held per client before it is no longer read */
#define EPOCH_RING	8192
#define ENGINE_NICE	-10

struct pending {
	uint32_t idx, gen;
	struct xp_ack ack;
};

struct engine {
	/* options */
	int mode, port, ack_level, max_clients, idle_ms, durable_ms, nice;
	bool adaptive;
	bool chunks;
	uint64_t sync_ns, sync_orders, size;
	uint32_t nsymbols;
	const char *dir, *port_file, *status_file, *listen;
	bool quiet;
	/* state */
	struct xs_writer *store;
	struct xb_book book;
	struct xn_server srv;	/* the clients; a slot's owed: its acks waiting for an epoch */
	int *session;		/* per slot: -1 until HELLO */
	struct pending *pend;
	size_t pend_head, pend_tail, pend_cap;	/* FIFO, by epoch */
	uint64_t released;		/* acks of epochs <= this are sent */
	bool dirty;
	bool deposed;			/* --ack replicated: a standby took over */
	uint64_t orders_since_sync, next_sync_ns;	/* the time the next sync is due */
	struct { uint64_t epoch, hash, commands; } ring[EPOCH_RING];
	struct xe_status *status;
	/* figures */
	struct hist stall, pages, durable_lat;
	uint64_t syncs, pages_total, sync_errors, pauses;
	bool pages_known;
	uint64_t sync_done_ns[EPOCH_RING];	/* for sync-to-durable latency */
	/* since the last report (SIGUSR1) */
	struct hist report_stall;
	struct hist report_collect;	/* of the stall, the tracker's collect */
	uint64_t report_ns, report_commands, report_syncs, report_pages;
};

static volatile sig_atomic_t stop, report;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		report = 1;
	else
		stop = 1;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "exchange-engine: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* ---- acks ------------------------------------------------------------------ */

static void pend_push(struct engine *e, uint32_t idx, const struct xp_ack *a)
{
	if (e->pend_tail == e->pend_cap) {
		if (e->pend_head) {
			memmove(e->pend, e->pend + e->pend_head,
				(e->pend_tail - e->pend_head) * sizeof(*e->pend));
			e->pend_tail -= e->pend_head;
			e->pend_head = 0;
		} else {
			size_t cap = e->pend_cap ? e->pend_cap * 2 : 4096;
			struct pending *p = realloc(e->pend, cap * sizeof(*p));

			if (!p)
				die("out of memory for pending acks");
			e->pend = p;
			e->pend_cap = cap;
		}
	}
	e->pend[e->pend_tail].idx = idx;
	e->pend[e->pend_tail].gen = e->srv.cl[idx].gen;
	e->srv.cl[idx].owed++;
	e->pend[e->pend_tail].ack = *a;
	e->pend_tail++;
}

static void send_ack(struct engine *e, uint32_t idx, struct xp_ack *a, int level)
{
	struct xn_client *c = &e->srv.cl[idx];

	a->level = (uint8_t)level;
	if (xn_queue(&c->c, XP_T_ACK, a, sizeof(*a), NULL, 0, OUT_LIMIT)) {
		xn_queue_error(&c->c, XP_E_BUSY, "reading acks too slowly");
		xn_client_close(&e->srv, idx);
	}
}

/* Send the acks of every epoch up to upto, then flush the clients touched. */
static void release(struct engine *e, uint64_t upto, int level)
{
	size_t i;

	for (i = e->pend_head; i < e->pend_tail && e->pend[i].ack.epoch <= upto; i++) {
		struct pending *p = &e->pend[i];

		if (e->srv.cl[p->idx].used && e->srv.cl[p->idx].gen == p->gen) {
			e->srv.cl[p->idx].owed--;
			send_ack(e, p->idx, &p->ack, level);
		}
	}
	e->pend_head = i;
	if (e->pend_head == e->pend_tail)
		e->pend_head = e->pend_tail = 0;
	if (upto > e->released)
		e->released = upto;
}

/* ---- epochs ------------------------------------------------------------------ */

static int do_sync(struct engine *e)
{
	uint64_t t0, t1, pages, collect_ns;
	int64_t ep;

	t0 = now_ns();
	ep = xs_writer_sync(e->store);
	t1 = now_ns();
	if (ep < 0) {
		/* Nothing is lost: the library keeps the pages for the next sync,
		 * and the acks wait for it. */
		if (!e->sync_errors++ || !(e->sync_errors % 1000))
			fprintf(stderr, "exchange-engine: sync failed: %s (%llu so far)\n",
				strerror((int)-ep), (unsigned long long)e->sync_errors);
		return (int)ep;
	}
	hist_add(&e->stall, t1 - t0);
	hist_add(&e->report_stall, t1 - t0);
	/* Every sync's own count, from the library: nothing to sample. */
	xs_writer_sync_figures(e->store, &pages, &collect_ns);
	if (collect_ns != UINT64_MAX)
		hist_add(&e->report_collect, collect_ns);
	if (pages != UINT64_MAX) {
		e->pages_known = true;
		hist_add(&e->pages, pages);
		e->pages_total += pages;
	}
	e->syncs++;
	e->dirty = false;
	e->orders_since_sync = 0;
	/*
	 * Syncs keep their cadence: the next one is due a period after this
	 * one was (not after it ended), so the stall and the loop's lateness
	 * do not stretch the period and every mode publishes the epochs per
	 * second it was asked for.  Late by a period or more (idle, or the CPU
	 * went elsewhere), the cadence starts again from now; a sync that
	 * overran its period (a full copy of a large block) starts it again
	 * from its end, rather than queue the next one behind it and leave
	 * no time for orders.
	 */
	if (t0 >= e->next_sync_ns && t0 - e->next_sync_ns < e->sync_ns)
		e->next_sync_ns += e->sync_ns;
	else
		e->next_sync_ns = t0 + e->sync_ns;
	if (e->next_sync_ns < t1)
		e->next_sync_ns = t1 + e->sync_ns;
	e->ring[ep % EPOCH_RING].epoch = (uint64_t)ep;
	e->ring[ep % EPOCH_RING].hash = xb_hash_stored(&e->book);
	e->ring[ep % EPOCH_RING].commands = e->book.h->commands;
	e->sync_done_ns[ep % EPOCH_RING] = t1;
	if (e->status) {
		e->status->publish_ns[ep % XE_STATUS_RING] = t1;
		__atomic_store_n(&e->status->epoch, (uint64_t)ep, __ATOMIC_RELEASE);
	}
	if (e->ack_level == XP_LEVEL_PUBLISHED)
		release(e, (uint64_t)ep, XP_LEVEL_PUBLISHED);
	return 0;
}

/* 0 once epoch reached the ack level (durable or replicated), -ETIMEDOUT,
 * or -EOWNERDEAD (replicated: this engine was deposed). */
static int wait_level(struct engine *e, uint64_t epoch, int timeout_ms)
{
	if (e->ack_level == XP_LEVEL_REPLICATED)
		return xs_writer_wait_replicated(e->store, epoch, timeout_ms);
	return xs_writer_wait_durable(e->store, epoch, timeout_ms);
}

/*
 * A standby engine's host took over the stream (pagetrack promote): this
 * engine's publisher was fenced off and its region marked deposed.  Orders
 * applied since the stream's last epoch are not the new engine's: none of
 * them is acked, and the engine stops (its clients reconnect to the engine
 * that holds the lease now).
 */
static void deposed(struct engine *e)
{
	if (!e->deposed)
		fprintf(stderr, "exchange-engine: deposed: a standby took over the stream this "
			"engine's epochs were replicated to; acking nothing more, stopping\n");
	e->deposed = true;
	stop = 1;
}

/* Durable (or replicated) acks: look without blocking whether the oldest
 * pending epoch (or better, the newest published one) reached the level. */
static void poll_durable(struct engine *e)
{
	uint64_t newest = (uint64_t)xs_writer_epoch(e->store), front, now;
	int ret;

	if (e->pend_head == e->pend_tail)
		return;
	front = e->pend[e->pend_head].ack.epoch;
	if (front > newest)
		return;		/* not published yet */
	now = now_ns();
	ret = wait_level(e, newest, 0);
	if (!ret) {
		for (uint64_t ep = e->released + 1; ep <= newest; ep++)
			if (e->ring[ep % EPOCH_RING].epoch == ep && e->sync_done_ns[ep % EPOCH_RING])
				hist_add(&e->durable_lat, now - e->sync_done_ns[ep % EPOCH_RING]);
		release(e, newest, e->ack_level);
		return;
	}
	if (ret != -EOWNERDEAD)
		ret = wait_level(e, front, 0);
	if (!ret)
		release(e, front, e->ack_level);
	else if (ret == -EOWNERDEAD)
		deposed(e);
}

/* The region's tracker since open, one line of key=value (pagetrack mode):
 * what `make bench-exchange` reads for faults per sync and the fault cost. */
static void print_tracker(struct engine *e)
{
	struct pt_region_stats st = { .sz = sizeof(st) };

	if (xs_writer_stats(e->store, &st))
		return;
	printf("exchange-engine: tracker: adaptive=%d fault_ns=%llu syncs=%llu pages=%llu "
	       "faulted=%llu hot_pages=%llu hot_reports=%llu faults_avoided=%llu "
	       "reported_unwritten=%llu chunks=%d chunks_scanned=%llu chunks_total=%llu "
	       "chunks_cooled=%llu\n", st.adaptive, (unsigned long long)st.fault_ns,
	       (unsigned long long)st.syncs, (unsigned long long)st.pages,
	       (unsigned long long)st.faulted, (unsigned long long)st.hot_pages,
	       (unsigned long long)st.hot_reports, (unsigned long long)st.faults_avoided,
	       (unsigned long long)st.reported_unwritten, st.chunks,
	       (unsigned long long)st.chunks_scanned, (unsigned long long)st.chunks_total,
	       (unsigned long long)st.chunks_cooled);
}

/* One line of figures since the previous report, and the counters reset;
 * then the tracker's line. */
static void print_report(struct engine *e)
{
	uint64_t now = now_ns(), commands = e->book.h->commands;
	uint64_t dc = commands - e->report_commands, dp = e->pages_total - e->report_pages;

	printf("exchange-engine: report: %.1f s, %llu commands, %llu syncs, %llu pages "
	       "(%.3f per command), stall p50 %llu ns p99 %llu ns max %llu ns (collect p50 %llu "
	       "ns), %llu live orders\n",
	       (double)(now - e->report_ns) / 1e9, (unsigned long long)dc,
	       (unsigned long long)(e->syncs - e->report_syncs), (unsigned long long)dp,
	       dc ? (double)dp / (double)dc : 0.0,
	       (unsigned long long)hist_pct(&e->report_stall, 0.50),
	       (unsigned long long)hist_pct(&e->report_stall, 0.99),
	       (unsigned long long)e->report_stall.max,
	       (unsigned long long)hist_pct(&e->report_collect, 0.50),
	       (unsigned long long)e->book.h->live_orders);
	print_tracker(e);
	fflush(stdout);
	e->report_ns = now;
	e->report_commands = commands;
	e->report_syncs = e->syncs;
	e->report_pages = e->pages_total;
	memset(&e->report_stall, 0, sizeof(e->report_stall));
	memset(&e->report_collect, 0, sizeof(e->report_collect));
}

/* ---- requests ------------------------------------------------------------------ */

static unsigned book_err(int ret)
{
	switch (ret) {
	case 0: return XP_OK;
	case -ENOENT: return XP_E_NO_ORDER;
	case -EALREADY: return XP_E_ENDED;
	case -ENOSPC: return XP_E_FULL;
	case -EINVAL: return XP_E_QTY;
	default: return XP_E_INTERNAL;
	}
}

static void queue_ack(struct engine *e, uint32_t idx, struct xp_ack *a)
{
	a->epoch = (uint64_t)xs_writer_epoch(e->store) + 1;
	e->dirty = true;
	e->orders_since_sync++;
	if (e->ack_level == XP_LEVEL_APPLIED)
		send_ack(e, idx, a, XP_LEVEL_APPLIED);
	else
		pend_push(e, idx, a);
}

/* Returns 0, or an XP_E_* code that closes the connection. */
static unsigned handle(struct engine *e, uint32_t idx, const struct xp_hdr *h, const void *body)
{
	struct xn_client *c = &e->srv.cl[idx];
	int *session = &e->session[idx];
	struct xb_result res;
	struct xp_ack a;
	unsigned err = xp_request_check(h, 0);

	if (err)
		return err;
	memset(&a, 0, sizeof(a));
	switch (h->type) {
	case XP_T_HELLO: {
		const struct xp_hello *m = body;
		struct xp_hello_ok ok = { 0 };

		if (*session >= 0 || m->session >= e->book.h->nsessions)
			return XP_E_SESSION;
		for (uint32_t i = 0; i < e->srv.nclients; i++)
			if (e->srv.cl[i].used && e->session[i] == (int)m->session)
				return XP_E_SESSION;
		*session = (int)m->session;
		ok.last_seq = e->book.ses[m->session].last_seq;
		ok.epoch = (uint64_t)xs_writer_epoch(e->store);
		ok.ack_level = (uint32_t)e->ack_level;
		ok.nsymbols = e->book.h->nsymbols;
		xn_queue(&c->c, XP_T_HELLO_OK, &ok, sizeof(ok), NULL, 0, OUT_LIMIT);
		return 0;
	}
	case XP_T_NEW: {
		const struct xp_new *m = body;
		int ret;

		if (*session < 0)
			return XP_E_SESSION;
		a.seq = m->seq;
		if (m->seq <= e->book.ses[*session].last_seq) {
			a.result = XP_E_SEQ;
			queue_ack(e, idx, &a);
			return 0;
		}
		xb_session_note(&e->book, (uint32_t)*session, m->seq);
		a.result = (uint16_t)xp_new_check(m, e->book.h->nsymbols);
		if (a.result) {
			queue_ack(e, idx, &a);
			return 0;
		}
		ret = xb_submit(&e->book, m->sym, m->side, m->kind, m->price, (uint32_t)m->qty, &res);
		a.result = (uint16_t)book_err(ret);
		a.order_id = res.order_id;
		a.filled = res.filled;
		a.remaining = res.remaining;
		a.status = res.status;
		a.ntrades = res.ntrades;
		queue_ack(e, idx, &a);
		return 0;
	}
	case XP_T_CANCEL: {
		const struct xp_cancel *m = body;
		int ret;

		if (*session < 0)
			return XP_E_SESSION;
		a.seq = m->seq;
		a.order_id = m->order_id;
		if (m->seq <= e->book.ses[*session].last_seq) {
			a.result = XP_E_SEQ;
			queue_ack(e, idx, &a);
			return 0;
		}
		xb_session_note(&e->book, (uint32_t)*session, m->seq);
		ret = xb_cancel(&e->book, m->order_id, &res);
		a.result = (uint16_t)book_err(ret);
		a.remaining = res.remaining;
		a.status = res.status;
		queue_ack(e, idx, &a);
		return 0;
	}
	case XP_T_STATS: {
		struct xp_stats s = { 0 };

		s.epoch = (uint64_t)xs_writer_epoch(e->store);
		s.syncs = e->syncs;
		s.commands = e->book.h->commands;
		s.trades = e->book.h->trade_count;
		s.live_orders = e->book.h->live_orders;
		s.stall_p50_ns = hist_pct(&e->stall, 0.50);
		s.stall_p99_ns = hist_pct(&e->stall, 0.99);
		s.stall_max_ns = e->stall.max;
		s.pages_p50 = e->pages_known ? hist_pct(&e->pages, 0.50) : UINT64_MAX;
		s.pages_p99 = e->pages_known ? hist_pct(&e->pages, 0.99) : UINT64_MAX;
		s.pages_total = e->pages_known ? e->pages_total : UINT64_MAX;
		s.durable_p50_ns = hist_pct(&e->durable_lat, 0.50);
		s.durable_p99_ns = hist_pct(&e->durable_lat, 0.99);
		s.region_size = xs_writer_size(e->store);
		s.clients = xn_clients(&e->srv);
		s.protocol_errors = e->srv.protocol_errors;
		s.pauses = e->pauses;
		s.mode = (uint32_t)e->mode;
		s.ack_level = (uint32_t)e->ack_level;
		xn_queue(&c->c, XP_T_STATS_OK, &s, sizeof(s), NULL, 0, OUT_LIMIT);
		return 0;
	}
	case XP_T_EPOCH_HASH: {
		const struct xp_epoch_q *m = body;
		struct xp_epoch_hash ans = { .epoch = m->epoch };

		if (e->ring[m->epoch % EPOCH_RING].epoch == m->epoch && m->epoch) {
			ans.found = 1;
			ans.book_hash = e->ring[m->epoch % EPOCH_RING].hash;
			ans.commands = e->ring[m->epoch % EPOCH_RING].commands;
		}
		xn_queue(&c->c, XP_T_EPOCH_HASH_OK, &ans, sizeof(ans), NULL, 0, OUT_LIMIT);
		return 0;
	}
	case XP_T_FLUSH: {
		struct xp_flush_ok ok;
		int ret;

		/* Publish whatever is pending, wait until it is durable, and
		 * hash the whole block: what every copy must converge to. */
		do {
			ret = do_sync(e);
		} while (ret && !stop);
		ret = wait_level(e, (uint64_t)xs_writer_epoch(e->store), 10000);
		if (ret == -EOWNERDEAD)
			deposed(e);
		if (ret)
			return XP_E_INTERNAL;
		release(e, (uint64_t)xs_writer_epoch(e->store), e->ack_level);
		ok.epoch = (uint64_t)xs_writer_epoch(e->store);
		ok.full_hash = XXH3_64bits(xs_writer_base(e->store), xs_writer_size(e->store));
		ok.book_hash = xb_hash_stored(&e->book);
		xn_queue(&c->c, XP_T_FLUSH_OK, &ok, sizeof(ok), NULL, 0, OUT_LIMIT);
		return 0;
	}
	}
	return XP_E_TYPE;
}

/* ---- connections ------------------------------------------------------------------ */

static void on_close(void *owner, uint32_t i)
{
	struct engine *e = owner;

	e->session[i] = -1;
}

/*
 * Back-pressure: while a client has PEND_LIMIT acks waiting (its epochs are
 * not durable yet, say the log cannot be written), the engine stops reading
 * it rather than hold an unbounded queue; the kernel's socket buffers then
 * push back on the client.  Reading resumes in resume_paused().
 */
static bool pause_if_full(struct engine *e, uint32_t i)
{
	struct xn_client *c = &e->srv.cl[i];

	if (c->owed < PEND_LIMIT)
		return false;
	if (!c->c.no_input)
		e->pauses++;
	c->c.no_input = true;
	xn_arm(e->srv.epfd, &c->c, xn_tag(&e->srv, i));
	return true;
}

static void on_readable(struct engine *e, uint32_t i)
{
	struct xn_client *c = &e->srv.cl[i];
	int n;

	if (pause_if_full(e, i))
		return;
	do {
		size_t off = 0;
		const struct xp_hdr *h;
		int r;

		n = xn_read(&c->c);
		if (n == -1) {
			xn_client_close(&e->srv, i);
			return;
		}
		while ((r = xn_frame(&c->c, off, sizeof(struct xp_hdr) + XP_MAX_REQUEST, &h)) == 1) {
			unsigned err = handle(e, i, h, h + 1);

			if (err) {
				xn_protocol_error(&e->srv, i, err);
				return;
			}
			if (!c->used)
				return;	/* dropped as too slow while answering */
			off += h->len;
			if (c->owed >= PEND_LIMIT)
				break;
		}
		if (c->owed >= PEND_LIMIT) {
			xn_consume(&c->c, off);
			pause_if_full(e, i);
			break;
		}
		if (r < 0) {
			xn_protocol_error(&e->srv, i, (unsigned)-r);
			return;
		}
		xn_consume(&c->c, off);
	} while (n > 0);
	xn_client_flush(&e->srv, i);
}

static void resume_paused(struct engine *e)
{
	for (uint32_t i = 0; i < e->srv.nclients; i++) {
		struct xn_client *c = &e->srv.cl[i];

		if (!c->used || !c->c.no_input || c->owed >= PEND_LIMIT / 2)
			continue;
		c->c.no_input = false;
		/* It was waiting for us, not idle: its deadlines start again. */
		c->c.active_ns = now_ns();
		if (c->c.frame_ns)
			c->c.frame_ns = c->c.active_ns;
		on_readable(e, i);	/* frames already buffered, then the socket */
	}
}

static void flush_all(struct engine *e)
{
	for (uint32_t i = 0; i < e->srv.nclients; i++) {
		struct xn_client *c = &e->srv.cl[i];

		if (c->used && c->c.out_off != c->c.out_len)
			xn_client_flush(&e->srv, i);
	}
}

/* ---- setup ------------------------------------------------------------------ */

static void open_status(struct engine *e)
{
	int fd;

	if (!e->status_file)
		return;
	fd = open(e->status_file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || ftruncate(fd, sizeof(struct xe_status)))
		die("%s: %s", e->status_file, strerror(errno));
	e->status = mmap(NULL, sizeof(struct xe_status), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (e->status == MAP_FAILED)
		die("%s: mmap: %s", e->status_file, strerror(errno));
	e->status->magic = XE_STATUS_MAGIC;
	e->status->pid = (uint64_t)getpid();
	e->status->starts++;
	e->status->publish_ns[xs_writer_epoch(e->store) % XE_STATUS_RING] = now_ns();
	__atomic_store_n(&e->status->epoch, (uint64_t)xs_writer_epoch(e->store), __ATOMIC_RELEASE);
}

static void write_port_file(struct engine *e, int port)
{
	int ret;

	if (!e->port_file)
		return;
	ret = xn_write_port_file(e->port_file, port);
	if (ret)
		die("%s: %s", e->port_file, strerror(-ret));
}

static void open_book(struct engine *e)
{
	struct xs_writer_opts so = { .mode = e->mode, .dir = e->dir, .size = e->size,
				     .durable_ms = e->durable_ms, .adaptive = e->adaptive,
				     .chunks = e->chunks };
	char why[512] = "";
	bool created;
	int ret;

	ret = xs_writer_open(&e->store, &so, &created, why, sizeof(why));
	if (ret)
		die("%s", why);
	if (created) {
		struct xb_config c;

		if (xb_config_for_size(&c, e->nsymbols, xs_writer_size(e->store)) ||
		    xb_init(&e->book, xs_writer_base(e->store), xs_writer_size(e->store), &c))
			die("a %zu-byte block cannot hold %u symbols", xs_writer_size(e->store),
			    e->nsymbols);
		/* Epoch 1 holds the empty books, so replicas always find a header. */
		if (do_sync(e) || xs_writer_wait_durable(e->store, 1, 10000))
			die("first sync failed");
		if (!e->quiet)
			printf("exchange-engine: new books: %u symbols, %u order slots, %zu MiB (%s%s)\n",
			       c.nsymbols, c.max_orders, xs_writer_size(e->store) >> 20,
			       xs_mode_name(e->mode),
			       e->adaptive && e->chunks ? ", adaptive tracking, chunk guard" :
			       e->adaptive ? ", adaptive tracking" : e->chunks ? ", chunk guard" : "");
		return;
	}
	ret = xb_attach(&e->book, xs_writer_base(e->store), xs_writer_size(e->store));
	if (ret)
		die("%s holds no exchange books (%s)", e->dir, strerror(-ret));
	if (xb_validate(&e->book, why, sizeof(why)))
		die("the books recovered from %s are damaged: %s", e->dir, why);
	e->ring[xs_writer_epoch(e->store) % EPOCH_RING].epoch = (uint64_t)xs_writer_epoch(e->store);
	e->ring[xs_writer_epoch(e->store) % EPOCH_RING].hash = xb_hash_stored(&e->book);
	e->ring[xs_writer_epoch(e->store) % EPOCH_RING].commands = e->book.h->commands;
	e->released = (uint64_t)xs_writer_epoch(e->store);
	if (!e->quiet)
		printf("exchange-engine: recovered %s at epoch %lld: %llu live orders, %llu commands\n",
		       e->dir, (long long)xs_writer_epoch(e->store),
		       (unsigned long long)e->book.h->live_orders,
		       (unsigned long long)e->book.h->commands);
}

/* --track: plain, or chunks and adaptive, alone or as "adaptive,chunks". */
static void parse_track(struct engine *e, const char *arg)
{
	e->adaptive = e->chunks = false;
	if (!strcmp(arg, "plain"))
		return;
	if (!strcmp(arg, "chunks") || !strcmp(arg, "adaptive") || !strcmp(arg, "adaptive,chunks") ||
	    !strcmp(arg, "chunks,adaptive")) {
		e->adaptive = strstr(arg, "adaptive") != NULL;
		e->chunks = strstr(arg, "chunks") != NULL;
		return;
	}
	die("--track: plain, chunks, adaptive or adaptive,chunks, not '%s'", arg);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: exchange-engine [options]\n"
"  -m, --mode MODE         pagetrack (default), fullcopy or none\n"
"  -d, --dir DIR           data directory (region or snapshot); reopened after a crash\n"
"  -l, --listen ADDR       the address to listen on, IPv4 or IPv6, numeric\n"
"                          (default 127.0.0.1: this machine only)\n"
"  -p, --port N            TCP port (default 0: any free port)\n"
"  -P, --port-file FILE    write the port there once listening\n"
"  -s, --size BYTES        block size for new books (default 64M)\n"
"  -n, --symbols N         symbols in new books (default 1000)\n"
"  -t, --sync-us N         publish an epoch every N microseconds (default 5000)\n"
"  -o, --sync-orders M     ... or every M orders, whichever comes first (default 1000)\n"
"  -a, --ack LEVEL         applied, published, durable (default) or replicated (durable,\n"
"                          and stored by the NATS stream `pagetrack publish DIR` feeds):\n"
"                          when to ack an order\n"
"  -D, --durable-ms N      fdatasync the log at most N ms after a publish (default 2)\n"
"  -S, --status FILE       keep the epoch status page there (for exchange-load)\n"
"  -c, --max-clients N     (default 256)\n"
"  -i, --idle-ms N         a frame must be whole N ms after its first byte, and a client\n"
"                          silent for N ms gives its place to a newcomer when the\n"
"                          clients or descriptors run out (default 5000)\n"
"  -T, --track HOW         pagetrack: chunks (default: a sync scans only the 2 MiB\n"
"                          chunks written lately, PT_REGION_CHUNKS), plain, adaptive\n"
"                          (hot pages copied at every sync without a fault,\n"
"                          PT_REGION_ADAPTIVE), or adaptive,chunks (both)\n"
"  -N, --nice N            raise the engine's thread to nice N, -20..19, when permitted\n"
"                          (default %d; 0: leave it at the default)\n"
"  -q, --quiet\n", ENGINE_NICE);
}

static void parse(struct engine *e, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "size", required_argument, NULL, 's' },
		{ "symbols", required_argument, NULL, 'n' },
		{ "sync-us", required_argument, NULL, 't' },
		{ "sync-orders", required_argument, NULL, 'o' },
		{ "ack", required_argument, NULL, 'a' },
		{ "durable-ms", required_argument, NULL, 'D' },
		{ "status", required_argument, NULL, 'S' },
		{ "max-clients", required_argument, NULL, 'c' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "nice", required_argument, NULL, 'N' },
		{ "track", required_argument, NULL, 'T' },
		{ 0 }
	};
	uint64_t v;
	int o;

	e->mode = XS_PAGETRACK;
	e->size = 64u << 20;
	e->nsymbols = 1000;
	e->sync_ns = 5000000;
	e->sync_orders = 1000;
	e->ack_level = XP_LEVEL_DURABLE;
	e->max_clients = 256;
	e->idle_ms = 5000;
	e->durable_ms = 2;
	e->nice = ENGINE_NICE;
	e->chunks = true;	/* the engine writes its block only from user code */
	while ((o = getopt_long(argc, argv, "m:d:l:p:P:s:n:t:o:a:D:S:c:i:N:T:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			e->mode = xs_mode_parse(optarg);
			if (e->mode < 0)
				die("--mode: pagetrack, fullcopy or none, not '%s'", optarg);
			break;
		case 'd': e->dir = optarg; break;
		case 'l': e->listen = optarg; break;
		case 'P': e->port_file = optarg; break;
		case 'S': e->status_file = optarg; break;
		case 'q': e->quiet = true; break;
		case 'N': {
			char *end;
			long nice;

			errno = 0;
			nice = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || nice < -20 || nice > 19)
				die("--nice: '%s' is not a number in [-20, 19]", optarg);
			e->nice = (int)nice;
			break;
		}
		case 'T':
			parse_track(e, optarg);
			break;
		case 'a':
			if (!strcmp(optarg, "applied"))
				e->ack_level = XP_LEVEL_APPLIED;
			else if (!strcmp(optarg, "published"))
				e->ack_level = XP_LEVEL_PUBLISHED;
			else if (!strcmp(optarg, "durable"))
				e->ack_level = XP_LEVEL_DURABLE;
			else if (!strcmp(optarg, "replicated"))
				e->ack_level = XP_LEVEL_REPLICATED;
			else
				die("--ack: applied, published, durable or replicated, not '%s'",
				    optarg);
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("exchange-engine, protocol %d, books format %u, replication: pagetrack %s\n",
			       XP_VERSION, XB_VERSION, pt_version());
			exit(0);
		default:
			if (o == '?') {
				usage(stderr);
				exit(2);
			}
			/* numeric options */
			{
				static const struct { int opt; uint64_t min, max; bool bin; } lim[] = {
					{ 'p', 0, 65535, false }, { 's', 1 << 20, 1ull << 40, true },
					{ 'n', 1, XB_MAX_SYMBOLS, false }, { 't', 10, 10000000, false },
					{ 'o', 1, 1u << 30, false }, { 'D', 1, 60000, false },
					{ 'c', 1, 65536, false }, { 'i', 1, 3600000, false },
				};
				size_t k;

				for (k = 0; k < sizeof(lim) / sizeof(lim[0]) && lim[k].opt != o; k++)
					;
				if (k == sizeof(lim) / sizeof(lim[0]) ||
				    parse_u64(optarg, lim[k].min, lim[k].max, lim[k].bin, &v))
					die("option -%c: '%s' is not a number in [%llu, %llu]", o, optarg,
					    (unsigned long long)lim[k].min, (unsigned long long)lim[k].max);
				switch (o) {
				case 'p': e->port = (int)v; break;
				case 's': e->size = v; break;
				case 'n': e->nsymbols = (uint32_t)v; break;
				case 't': e->sync_ns = v * 1000; break;
				case 'o': e->sync_orders = v; break;
				case 'D': e->durable_ms = (int)v; break;
				case 'c': e->max_clients = (int)v; break;
				case 'i': e->idle_ms = (int)v; break;
				}
			}
		}
	}
	if (optind != argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (e->mode != XS_NONE && !e->dir)
		die("--mode %s needs --dir", xs_mode_name(e->mode));
	if (e->ack_level == XP_LEVEL_REPLICATED && e->mode != XS_PAGETRACK)
		die("--ack replicated needs --mode pagetrack (a publisher reports what its stream "
		    "stored)");
}

int main(int argc, char **argv)
{
	static struct engine eng;
	struct engine *e = &eng;
	struct epoll_event evs[64];
	struct sigaction sa = { .sa_handler = on_signal };
	char text[XN_ADDR_TEXT];
	struct xn_addr at;
	int port, ret;

	parse(e, argc, argv);
	if (xn_addr_host(&at, e->listen ? e->listen : "127.0.0.1", e->port))
		die("--listen: '%s' is not a numeric IPv4 or IPv6 address", e->listen);
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	open_book(e);
	/*
	 * After the region is open: its threads (seal, log, checkpoint) keep
	 * the nice value the engine started with, this thread alone is raised.
	 * The log thread's fdatasync sleeps rather than computes, and the
	 * checkpoint is the work that should wait.
	 */
	ret = place_thread(SCHED_OTHER, e->nice);
	if (ret && !e->quiet)
		printf("exchange-engine: --nice %d: %s; running at the nice value it was started with\n",
		       e->nice, strerror(-ret));
	open_status(e);
	e->session = malloc((size_t)e->max_clients * sizeof(*e->session));
	if (!e->session)
		die("out of memory");
	for (int i = 0; i < e->max_clients; i++)
		e->session[i] = -1;
	ret = xn_server_open(&e->srv, &at, &port, (uint32_t)e->max_clients, e->idle_ms, 64 * 1024);
	if (ret)
		die("listen on %s: %s", xn_addr_text(&at, text), strerror(-ret));
	xn_addr_set_port(&at, port);
	e->srv.on_close = on_close;
	e->srv.owner = e;
	if (!e->quiet) {
		printf("exchange-engine: listening on %s, ack %s, sync every %llu us or %llu orders\n",
		       xn_addr_text(&at, text), e->ack_level == XP_LEVEL_REPLICATED ? "replicated" :
		       e->ack_level == XP_LEVEL_DURABLE ? "durable" :
		       e->ack_level == XP_LEVEL_PUBLISHED ? "published" : "applied",
		       (unsigned long long)e->sync_ns / 1000, (unsigned long long)e->sync_orders);
		fflush(stdout);
	}
	/* Last: whoever waits for the port file finds the log lines above written. */
	write_port_file(e, port);
	e->next_sync_ns = now_ns() + e->sync_ns;
	e->report_ns = now_ns();
	e->report_commands = e->book.h->commands;

	while (!stop) {
		struct timespec ts = { 0, 0 };
		uint64_t now = now_ns(), wait_ns = 100000000;
		int n;

		if (e->dirty)
			wait_ns = e->next_sync_ns > now ? e->next_sync_ns - now : 0;
		if (e->ack_level >= XP_LEVEL_DURABLE && e->pend_head != e->pend_tail &&
		    wait_ns > 200000)
			wait_ns = 200000;
		ts.tv_sec = (time_t)(wait_ns / 1000000000);
		ts.tv_nsec = (long)(wait_ns % 1000000000);
		n = epoll_pwait2(e->srv.epfd, evs, 64, &ts, NULL);
		if (n < 0 && errno != EINTR)
			die("epoll_pwait2: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			int i = xn_event(&e->srv, &evs[k]);

			if (i >= 0)
				on_readable(e, (uint32_t)i);
		}
		now = now_ns();
		if (e->dirty && (e->orders_since_sync >= e->sync_orders || now >= e->next_sync_ns))
			do_sync(e);
		if (report) {
			report = 0;
			print_report(e);
		}
		if (e->ack_level >= XP_LEVEL_DURABLE)
			poll_durable(e);
		resume_paused(e);
		flush_all(e);
		xn_sweep(&e->srv, now);
	}
	/* A clean stop: publish the last orders and make them durable (and
	 * replicated); a deposed engine acks nothing more. */
	if (e->dirty && !e->deposed)
		do_sync(e);
	ret = e->deposed ? -EOWNERDEAD : wait_level(e, (uint64_t)xs_writer_epoch(e->store), 10000);
	if (ret == -EOWNERDEAD)
		deposed(e);
	else if (!ret || e->ack_level != XP_LEVEL_REPLICATED)
		release(e, (uint64_t)xs_writer_epoch(e->store), e->ack_level);
	flush_all(e);
	xn_server_close(&e->srv);
	if (!e->quiet)
		printf("exchange-engine: stopped at epoch %lld after %llu syncs, %llu commands\n",
		       (long long)xs_writer_epoch(e->store), (unsigned long long)e->syncs,
		       (unsigned long long)e->book.h->commands);
	xs_writer_close(e->store);
	if (e->status)
		munmap(e->status, sizeof(*e->status));
	free(e->session);
	free(e->pend);
	return e->deposed ? 1 : 0;
}
