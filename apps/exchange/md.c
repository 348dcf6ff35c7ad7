/* SPDX-License-Identifier: MIT */
/*
 * md.c - exchange-md, a query process: serves market data over TCP from
 * its own copy of the engine's books.
 *
 * The seed's model: between two batches of queries the process refreshes
 * its copy with the pages written since its epoch (store.c, a pagetrack
 * replica), then answers the batch from that one epoch.  Every answer says
 * the epoch it comes from, so a client can tell how fresh it is.  The
 * engine never waits for this process; several run side by side, each at
 * its own pace.
 *
 * The copy is read-only here and treated as untrusted: every reader in
 * book.c bounds its walks, so even a damaged copy yields an error answer,
 * not a crash.
 *
 * The server yields to the engine: by default it runs SCHED_BATCH, so that
 * waking up for a query never preempts the engine, at nice 0, so that it
 * still gets its share of a busy machine (set before the replica is opened:
 * a thread it starts inherits it).  On a machine with fewer cores than busy
 * threads, a server that preempts the engine inside its sync or its loop
 * stretches the writer's stall and every ack behind it; a niced server
 * starves instead, and its copy falls behind (docs/exchange.md, "Who runs
 * first", has the measurements).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "book.h"
#include "net.h"
#include "store.h"
#include "util.h"

#define OUT_LIMIT	(8u << 20)
#define MD_POLICY	SCHED_BATCH
#define MD_NICE		0

struct md {
	int mode, port, max_clients, idle_ms, wait_ms, policy, nice;
	const char *dir, *port_file, *shared_name, *listen, *epoch_log;
	bool quiet, shared;
	FILE *elog;			/* --epoch-log */
	uint64_t logged_epoch;
	struct xs_reader *rd;
	struct xb_book book;
	bool have_book;
	struct xn_server srv;
	uint64_t refreshes, queries, reopens;
	struct hist refresh_ns;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "exchange-md: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* ---- the copy ---------------------------------------------------------------- */

static void open_copy(struct md *m)
{
	uint64_t deadline = now_ns() + (uint64_t)m->wait_ms * 1000000ull;
	char why[512] = "";
	int ret;

	for (;;) {
		ret = xs_reader_open(&m->rd, m->mode, m->dir, m->shared, m->shared_name, why,
				     sizeof(why));
		if (!ret)
			return;
		if ((ret != -ENOENT && ret != -EAGAIN && ret != -ESTALE) || now_ns() > deadline || stop)
			die("%s", why);
		usleep(50000);	/* the engine is not up yet */
	}
}

static void attach(struct md *m)
{
	const void *base = xs_reader_base(m->rd);
	size_t size = xs_reader_size(m->rd);

	/* The copy is read-only; book.c's readers never write through the view. */
	m->have_book = base && xs_reader_epoch(m->rd) &&
		       !xb_attach(&m->book, (void *)(uintptr_t)base, size);
}

/*
 * --epoch-log: a line "EPOCH HASH" for each epoch the copy shows, HASH the
 * books' hash stored in it at that epoch (the engine's, as CHECK reports
 * it): who reads it can tell an epoch served with two contents apart.
 */
static void log_epoch(struct md *m)
{
	uint64_t e = xs_reader_epoch(m->rd);

	if (!m->elog || !m->have_book || e == m->logged_epoch)
		return;
	m->logged_epoch = e;
	if (fprintf(m->elog, "%llu %016llx\n", (unsigned long long)e,
		    (unsigned long long)xb_hash_stored(&m->book)) < 0 || fflush(m->elog))
		die("%s: %s", m->epoch_log, strerror(errno));
}

static void refresh(struct md *m, int timeout_ms)
{
	uint64_t t0 = now_ns();
	int64_t e = xs_reader_refresh(m->rd, timeout_ms);

	if (e < 0) {
		/* The engine's history changed under us (recreated), or the copy
		 * cannot follow any more: start over from whatever is there now. */
		fprintf(stderr, "exchange-md: refresh: %s; reopening\n", strerror((int)-e));
		xs_reader_close(m->rd);
		m->rd = NULL;
		m->have_book = false;
		m->reopens++;
		open_copy(m);
	} else {
		hist_add(&m->refresh_ns, now_ns() - t0);
	}
	m->refreshes++;
	attach(m);
	log_epoch(m);
}

/* ---- queries ---------------------------------------------------------------- */

static uint64_t epoch(struct md *m)
{
	return xs_reader_epoch(m->rd);
}

static int answer_error(struct xconn *c, unsigned code)
{
	return xn_queue_error(c, code, xp_err_name(code));
}

/* Returns 0, or an XP_E_* code that closes the connection. */
static unsigned handle(struct md *m, struct xconn *c, const struct xp_hdr *h, const void *body)
{
	unsigned err = xp_request_check(h, 1);

	if (err)
		return err;
	m->queries++;
	if (!m->have_book && h->type != XP_T_CONVERGE)
		return answer_error(c, XP_E_NO_DATA) ? XP_E_BUSY : 0;
	/* A well-formed query asking for what is not there is answered with
	 * the reason, and the connection goes on. */
	err = xp_query_check(h, m->have_book ? m->book.h->nsymbols : 0,
			     m->have_book ? m->book.h->nsessions : 0);
	if (err)
		return answer_error(c, err) ? XP_E_BUSY : 0;
	switch (h->type) {
	case XP_T_TOP: {
		const struct xp_sym_q *q = body;
		struct xb_level_view lv;
		struct xp_top t = { .epoch = epoch(m), .sym = q->sym };

		if (xb_depth(&m->book, q->sym, XB_BUY, &lv, 1) == 1) {
			t.bid = lv.price;
			t.bid_qty = lv.qty;
		}
		if (xb_depth(&m->book, q->sym, XB_SELL, &lv, 1) == 1) {
			t.ask = lv.price;
			t.ask_qty = lv.qty;
		}
		t.last = m->book.sym[q->sym].last_price;
		t.volume = m->book.sym[q->sym].volume;
		return xn_queue(c, XP_T_TOP_OK, &t, sizeof(t), NULL, 0, OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	case XP_T_DEPTH: {
		const struct xp_sym_q *q = body;
		static struct xb_level_view lv[2][XP_MAX_DEPTH];
		static struct xp_depth_level out[2 * XP_MAX_DEPTH];
		struct xp_depth d = { .epoch = epoch(m), .sym = q->sym };
		int nb, na;

		nb = xb_depth(&m->book, q->sym, XB_BUY, lv[0], q->n);
		na = xb_depth(&m->book, q->sym, XB_SELL, lv[1], q->n);
		if (nb < 0 || na < 0)
			return answer_error(c, XP_E_INTERNAL) ? XP_E_BUSY : 0;
		for (int i = 0; i < nb; i++)
			out[i] = (struct xp_depth_level){ lv[0][i].price, lv[0][i].qty, lv[0][i].norders, 0 };
		for (int i = 0; i < na; i++)
			out[nb + i] = (struct xp_depth_level){ lv[1][i].price, lv[1][i].qty,
							       lv[1][i].norders, 0 };
		d.nbids = (uint16_t)nb;
		d.nasks = (uint16_t)na;
		return xn_queue(c, XP_T_DEPTH_OK, &d, sizeof(d), out,
				(size_t)(nb + na) * sizeof(out[0]), OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	case XP_T_TRADES: {
		const struct xp_sym_q *q = body;
		static struct xb_trade tr[XP_MAX_TRADES];
		static struct xp_trade out[XP_MAX_TRADES];
		struct xp_trades t = { .epoch = epoch(m), .sym = q->sym };
		int n;

		n = xb_trades(&m->book, q->sym == XP_ALL_SYMBOLS ? XB_NIL : q->sym, tr, q->n);
		if (n < 0)
			return answer_error(c, XP_E_INTERNAL) ? XP_E_BUSY : 0;
		for (int i = 0; i < n; i++)
			out[i] = (struct xp_trade){ tr[i].seq, tr[i].buy_id, tr[i].sell_id, tr[i].price,
						    tr[i].qty, tr[i].sym };
		t.n = (uint32_t)n;
		return xn_queue(c, XP_T_TRADES_OK, &t, sizeof(t), out, (size_t)n * sizeof(out[0]),
				OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	case XP_T_ORDER: {
		const struct xp_order_q *q = body;
		struct xp_order_ans a = { .epoch = epoch(m), .order_id = q->order_id };
		struct xb_order o;
		int ret = xb_order(&m->book, q->order_id, &o);

		if (!ret) {
			a.price = o.price;
			a.qty = o.qty;
			a.filled = o.filled;
			a.sym = o.sym;
			a.side = o.side;
			a.kind = o.kind;
			a.status = o.status;
		}
		a.result = ret == 0 ? XP_OK : ret == -EALREADY ? XP_E_ENDED : XP_E_NO_ORDER;
		return xn_queue(c, XP_T_ORDER_OK, &a, sizeof(a), NULL, 0, OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	case XP_T_CHECK: {
		struct xp_check k = { .epoch = epoch(m), .stored_hash = xb_hash_stored(&m->book) };
		char why[256];

		/* One walk for the hash and the invariants: it visits every
		 * live order, and runs every --check-ms while queries wait. */
		k.valid = !xb_check(&m->book, &k.walked_hash, why, sizeof(why));
		if (!k.valid)
			fprintf(stderr, "exchange-md: copy at epoch %llu is damaged: %s\n",
				(unsigned long long)k.epoch, why);
		return xn_queue(c, XP_T_CHECK_OK, &k, sizeof(k), NULL, 0, OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	case XP_T_CONVERGE: {
		const struct xp_converge_q *q = body;
		uint64_t deadline = now_ns() + (uint64_t)q->timeout_ms * 1000000ull;
		struct xp_converge v = { 0 };

		while (epoch(m) < q->epoch && now_ns() < deadline && !stop)
			refresh(m, 10);
		v.epoch = epoch(m);
		if (m->have_book) {
			v.full_hash = XXH3_64bits(xs_reader_base(m->rd), xs_reader_size(m->rd));
			v.book_hash = xb_hash_stored(&m->book);
		}
		return xn_queue(c, XP_T_CONVERGE_OK, &v, sizeof(v), NULL, 0, OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	case XP_T_SESSION: {
		const struct xp_session_q *q = body;
		struct xp_session_ans s = { .epoch = epoch(m) };

		s.last_seq = m->book.ses[q->session].last_seq;
		return xn_queue(c, XP_T_SESSION_OK, &s, sizeof(s), NULL, 0, OUT_LIMIT) ? XP_E_BUSY : 0;
	}
	}
	return XP_E_TYPE;
}

/* ---- connections ---------------------------------------------------------------- */

static void on_readable(struct md *m, uint32_t i)
{
	struct xn_client *c = &m->srv.cl[i];
	int n;

	do {
		size_t off = 0;
		const struct xp_hdr *h;
		int r;

		n = xn_read(&c->c);
		if (n == -1) {
			xn_client_close(&m->srv, i);
			return;
		}
		while ((r = xn_frame(&c->c, off, sizeof(struct xp_hdr) + XP_MAX_REQUEST, &h)) == 1) {
			unsigned err = handle(m, &c->c, h, h + 1);

			if (err) {
				xn_protocol_error(&m->srv, i, err);
				return;
			}
			off += h->len;
		}
		if (r < 0) {
			xn_protocol_error(&m->srv, i, (unsigned)-r);
			return;
		}
		xn_consume(&c->c, off);
	} while (n > 0);
	xn_client_flush(&m->srv, i);
}

static void usage(FILE *f)
{
	fprintf(f,
"usage: exchange-md [options]\n"
"  -m, --mode MODE         pagetrack (default) or fullcopy: how the copy is kept\n"
"  -d, --dir DIR           the engine's data directory\n"
"  -l, --listen ADDR       the address to listen on, IPv4 or IPv6, numeric\n"
"                          (default 127.0.0.1: this machine only)\n"
"  -p, --port N            TCP port (default 0: any free port)\n"
"  -P, --port-file FILE    write the port there once listening\n"
"  -s, --shared            share one copy with the other md servers that ask for it\n"
"                          (pagetrack's shared replica) instead of keeping a private one\n"
"  -n, --shared-name NAME  the shared copy is /dev/shm/pagetrack-NAME (default: named\n"
"                          after the region; whoever runs the servers removes it)\n"
"  -w, --wait-ms N         wait up to N ms for the engine's data (default 10000)\n"
"  -c, --max-clients N     (default 256)\n"
"  -i, --idle-ms N         a frame must be whole N ms after its first byte, and a client\n"
"                          silent for N ms gives its place to a newcomer when the\n"
"                          clients or descriptors run out (default 5000)\n"
"      --sched POLICY      other, batch or idle: this server's scheduling policy\n"
"                          (default batch: it never preempts the engine on waking;\n"
"                          other: the engine's footing)\n"
"      --nice N            its nice value, -20..19 (default %d)\n"
"  -E, --epoch-log FILE    append a line \"EPOCH HASH\" for each epoch the copy shows\n"
"                          (HASH: the books' stored hash at that epoch)\n"
"  -q, --quiet\n", MD_NICE);
}

static void parse(struct md *m, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mode", required_argument, NULL, 'm' },
		{ "dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "epoch-log", required_argument, NULL, 'E' },
		{ "port", required_argument, NULL, 'p' },
		{ "port-file", required_argument, NULL, 'P' },
		{ "wait-ms", required_argument, NULL, 'w' },
		{ "shared", no_argument, NULL, 's' },
		{ "shared-name", required_argument, NULL, 'n' },
		{ "max-clients", required_argument, NULL, 'c' },
		{ "idle-ms", required_argument, NULL, 'i' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "sched", required_argument, NULL, 'B' },
		{ "nice", required_argument, NULL, 'N' },
		{ 0 }
	};
	uint64_t v;
	char *end;
	long nice;
	int o;

	m->mode = XS_PAGETRACK;
	m->policy = MD_POLICY;
	m->nice = MD_NICE;
	m->max_clients = 256;
	m->idle_ms = 5000;
	m->wait_ms = 10000;
	while ((o = getopt_long(argc, argv, "m:d:l:p:P:w:c:i:sn:E:qh", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			m->mode = xs_mode_parse(optarg);
			if (m->mode != XS_PAGETRACK && m->mode != XS_FULLCOPY)
				die("--mode: pagetrack or fullcopy, not '%s'", optarg);
			break;
		case 'd': m->dir = optarg; break;
		case 'l': m->listen = optarg; break;
		case 'E': m->epoch_log = optarg; break;
		case 'P': m->port_file = optarg; break;
		case 'q': m->quiet = true; break;
		case 's': m->shared = true; break;
		case 'B':
			m->policy = parse_policy(optarg);
			if (m->policy < 0)
				die("--sched: other, batch or idle, not '%s'", optarg);
			break;
		case 'N':
			errno = 0;
			nice = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || nice < -20 || nice > 19)
				die("--nice: '%s' is not a number in [-20, 19]", optarg);
			m->nice = (int)nice;
			break;
		case 'n':
			if (!*optarg || strchr(optarg, '/') || strlen(optarg) > 200)
				die("--shared-name: a file name without '/', not '%s'", optarg);
			m->shared_name = optarg;
			break;
		case 'p':
			if (parse_u64(optarg, 0, 65535, false, &v))
				die("--port: '%s' is not a port", optarg);
			m->port = (int)v;
			break;
		case 'w':
		case 'c':
		case 'i':
			if (parse_u64(optarg, 1, 3600000, false, &v))
				die("-%c: '%s' is not a number in [1, 3600000]", o, optarg);
			if (o == 'w')
				m->wait_ms = (int)v;
			else if (o == 'c')
				m->max_clients = (int)v;
			else
				m->idle_ms = (int)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc)
		die("unexpected argument '%s' (see --help)", argv[optind]);
	if (!m->dir)
		die("--dir is required");
}

int main(int argc, char **argv)
{
	static struct md md;
	struct md *m = &md;
	struct epoll_event evs[64];
	struct sigaction sa = { .sa_handler = on_signal };
	char text[XN_ADDR_TEXT];
	struct xn_addr at;
	int port, ret;

	parse(m, argc, argv);
	if (xn_addr_host(&at, m->listen ? m->listen : "127.0.0.1", m->port))
		die("--listen: '%s' is not a numeric IPv4 or IPv6 address", m->listen);
	if (m->epoch_log) {
		m->elog = fopen(m->epoch_log, "ae");
		if (!m->elog)
			die("%s: %s", m->epoch_log, strerror(errno));
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* Before the copy is opened: a thread the library starts for it
	 * inherits the placing. */
	ret = place_thread(m->policy, m->nice);
	if (ret)	/* started below it, unprivileged: stay there */
		fprintf(stderr, "exchange-md: --sched %s --nice %d: %s; left as started\n",
			policy_name(m->policy), m->nice, strerror(-ret));
	open_copy(m);
	refresh(m, 0);
	ret = xn_server_open(&m->srv, &at, &port, (uint32_t)m->max_clients, m->idle_ms, 64 * 1024);
	if (ret)
		die("listen on %s: %s", xn_addr_text(&at, text), strerror(-ret));
	xn_addr_set_port(&at, port);
	if (!m->quiet) {
		printf("exchange-md: listening on %s, %s copy of %s at epoch %llu (%s), "
		       "sched %s nice %d\n",
		       xn_addr_text(&at, text), m->shared ? "shared" : "private", m->dir,
		       (unsigned long long)xs_reader_epoch(m->rd), xs_mode_name(m->mode),
		       policy_name(m->policy), m->nice);
		fflush(stdout);
	}
	if (m->port_file) {
		ret = xn_write_port_file(m->port_file, port);
		if (ret)
			die("%s: %s", m->port_file, strerror(-ret));
	}
	while (!stop) {
		/* Idle, refresh every 50 ms anyway: a copy that follows closely
		 * has less to apply when the next query comes. */
		int n = epoll_wait(m->srv.epfd, evs, 64, 50);
		bool refreshed = false;

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			int i = xn_event(&m->srv, &evs[k]);

			if (i < 0)
				continue;
			/* One refresh per batch: the queries of one wakeup see one epoch. */
			if (!refreshed) {
				refresh(m, 0);
				refreshed = true;
			}
			on_readable(m, (uint32_t)i);
		}
		if (!n)
			refresh(m, 0);
		xn_sweep(&m->srv, now_ns());
	}
	xn_server_close(&m->srv);
	if (!m->quiet)
		printf("exchange-md: stopped at epoch %llu: %llu queries, %llu refreshes "
		       "(p50 %.1f us, p99 %.1f us), %llu reopens\n",
		       (unsigned long long)xs_reader_epoch(m->rd), (unsigned long long)m->queries,
		       (unsigned long long)m->refreshes, hist_pct(&m->refresh_ns, 0.5) / 1e3,
		       hist_pct(&m->refresh_ns, 0.99) / 1e3, (unsigned long long)m->reopens);
	xs_reader_close(m->rd);
	if (m->elog && fclose(m->elog))
		die("%s: %s", m->epoch_log, strerror(errno));
	return 0;
}
