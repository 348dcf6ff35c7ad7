/* exchange-badinput: malformed frames, bad orders, stalled and vanishing clients against exchange-engine and exchange-md. */
#include "harness.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "book.h"
#include "net.h"
#include "proto.h"
#include "util.h"

static char dir[256], bindir[512];
static int engine_port, md_port;
static pid_t engine_pid, md_pid;

static pid_t spawn(char *const argv[])
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		/* Die with the test, even when a sanitizer aborts it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 1);
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int read_port(const char *name)
{
	char path[512];
	int port = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int i = 0; i < 200 && port < 0; i++) {
		FILE *f = fopen(path, "r");

		if (f) {
			if (fscanf(f, "%d", &port) != 1)
				port = -1;
			fclose(f);
		}
		if (port < 0)
			usleep(25000);
	}
	return port;
}

static int dial(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 3, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static bool send_raw(int fd, const void *p, size_t n)
{
	return send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n;
}

static bool send_msg(int fd, int type, const void *body, size_t len)
{
	uint8_t buf[256];
	struct xp_hdr h = { .len = (uint32_t)(sizeof(h) + len), .version = XP_VERSION,
			    .type = (uint8_t)type };

	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), body, len);
	return send_raw(fd, buf, sizeof(h) + len);
}

/* Receive one frame: its type, body in buf.  -1 on close or timeout. */
static int recv_msg(int fd, void *buf, size_t cap)
{
	struct xp_hdr h;
	size_t got = 0;

	while (got < sizeof(h)) {
		ssize_t n = recv(fd, (char *)&h + got, sizeof(h) - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	if (h.len < sizeof(h) || h.len - sizeof(h) > cap)
		return -2;
	for (got = 0; got < h.len - sizeof(h);) {
		ssize_t n = recv(fd, (char *)buf + got, h.len - sizeof(h) - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return h.type;
}

/* Expect an error frame with code, then (if closes) the connection closing. */
static bool expect_error(int fd, unsigned code, bool closes, char *why, size_t why_len)
{
	uint8_t buf[1024];
	int t = recv_msg(fd, buf, sizeof(buf));
	struct xp_error e;

	CHECK(t == XP_T_ERROR, "want an error frame, got %d", t);
	memcpy(&e, buf, sizeof(e));
	CHECK(e.code == code, "error %u (%s), want %u (%s)", e.code, xp_err_name(e.code), code,
	      xp_err_name(code));
	if (closes)
		CHECK(recv_msg(fd, buf, sizeof(buf)) == -1, "connection left open");
	(void)why;
	(void)why_len;
	return true;
}

static int session_next = 10;

static int hello(int *fd)
{
	struct xp_hello h = { .session = (uint32_t)session_next++ };
	uint8_t buf[256];

	*fd = dial(engine_port);
	if (*fd < 0 || !send_msg(*fd, XP_T_HELLO, &h, sizeof(h)) ||
	    recv_msg(*fd, buf, sizeof(buf)) != XP_T_HELLO_OK)
		return -1;
	return 0;
}

static uint64_t seq = 1;

/* Send an order, return the ack (result field) or -1. */
static int order(int fd, uint32_t sym, int side, int kind, int64_t price, int64_t qty,
		 struct xp_ack *ack)
{
	struct xp_new m = { .seq = seq++, .sym = sym, .side = (uint8_t)side, .kind = (uint8_t)kind,
			    .price = price, .qty = qty };
	uint8_t buf[256];

	if (!send_msg(fd, XP_T_NEW, &m, sizeof(m)) || recv_msg(fd, buf, sizeof(buf)) != XP_T_ACK)
		return -1;
	memcpy(ack, buf, sizeof(*ack));
	return ack->result;
}

/* ---- cells ---------------------------------------------------------------- */

static bool malformed_frames(char *why, size_t why_len)
{
	struct { struct xp_hdr h; uint8_t body[40]; } f;
	int fd;

	/* wrong version */
	fd = dial(engine_port);
	memset(&f, 0, sizeof(f));
	f.h = (struct xp_hdr){ 8, 9, XP_T_STATS, 0 };
	CHECK(send_raw(fd, &f, 8) && expect_error(fd, XP_E_VERSION, true, why, why_len), "version");
	close(fd);
	/* unknown type */
	fd = dial(engine_port);
	f.h = (struct xp_hdr){ 8, XP_VERSION, 77, 0 };
	CHECK(send_raw(fd, &f, 8) && expect_error(fd, XP_E_TYPE, true, why, why_len), "type");
	close(fd);
	/* oversized: a length far above any request */
	fd = dial(engine_port);
	f.h = (struct xp_hdr){ 1u << 30, XP_VERSION, XP_T_NEW, 0 };
	CHECK(send_raw(fd, &f, 8) && expect_error(fd, XP_E_LENGTH, true, why, why_len), "oversize");
	close(fd);
	/* a length shorter than the header */
	fd = dial(engine_port);
	f.h = (struct xp_hdr){ 3, XP_VERSION, XP_T_NEW, 0 };
	CHECK(send_raw(fd, &f, 8) && expect_error(fd, XP_E_LENGTH, true, why, why_len), "undersize");
	close(fd);
	/* a NEW one byte short */
	CHECK(!hello(&fd), "hello");
	f.h = (struct xp_hdr){ 8 + 31, XP_VERSION, XP_T_NEW, 0 };
	CHECK(send_raw(fd, &f, 8 + 31) && expect_error(fd, XP_E_LENGTH, true, why, why_len), "short");
	close(fd);
	/* reserved header field */
	fd = dial(engine_port);
	f.h = (struct xp_hdr){ 8, XP_VERSION, XP_T_STATS, 1 };
	CHECK(send_raw(fd, &f, 8) && expect_error(fd, XP_E_RESERVED, true, why, why_len), "reserved");
	close(fd);
	/* reserved body field */
	CHECK(!hello(&fd), "hello");
	{
		struct xp_new m = { .seq = 1, .qty = 1, .price = 100, .zero = 5 };

		CHECK(send_msg(fd, XP_T_NEW, &m, sizeof(m)) &&
		      expect_error(fd, XP_E_RESERVED, true, why, why_len), "reserved body");
	}
	close(fd);
	return true;
}

static bool sessions(char *why, size_t why_len)
{
	struct xp_new m = { .seq = 1, .qty = 1, .price = 100 };
	struct xp_hello h = { .session = 5000000 };
	uint8_t buf[256];
	int fd, fd2;

	fd = dial(engine_port);
	CHECK(send_msg(fd, XP_T_NEW, &m, sizeof(m)) &&
	      expect_error(fd, XP_E_SESSION, true, why, why_len), "order before hello");
	close(fd);
	fd = dial(engine_port);
	CHECK(send_msg(fd, XP_T_HELLO, &h, sizeof(h)) &&
	      expect_error(fd, XP_E_SESSION, true, why, why_len), "session out of range");
	close(fd);
	h.session = 3;
	fd = dial(engine_port);
	fd2 = dial(engine_port);
	CHECK(send_msg(fd, XP_T_HELLO, &h, sizeof(h)) && recv_msg(fd, buf, sizeof(buf)) == XP_T_HELLO_OK,
	      "first hello");
	CHECK(send_msg(fd2, XP_T_HELLO, &h, sizeof(h)) &&
	      expect_error(fd2, XP_E_SESSION, true, why, why_len), "a session used twice");
	close(fd);
	close(fd2);
	return true;
}

static bool bad_orders(char *why, size_t why_len)
{
	struct xp_ack a;
	int fd, r;

	CHECK(!hello(&fd), "hello");
	CHECK((r = order(fd, 1000, XB_BUY, XB_LIMIT, 100, 10, &a)) == XP_E_SYMBOL, "symbol: %d", r);
	CHECK((r = order(fd, 0xffffffffu, XB_BUY, XB_LIMIT, 100, 10, &a)) == XP_E_SYMBOL, "sym: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, 100, -5, &a)) == XP_E_QTY, "negative qty: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, 100, 0, &a)) == XP_E_QTY, "zero qty: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, 100, 1ll << 40, &a)) == XP_E_QTY, "huge qty: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, -100, 5, &a)) == XP_E_PRICE, "neg price: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, 0, 5, &a)) == XP_E_PRICE, "zero price: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, INT64_MAX, 5, &a)) == XP_E_PRICE, "huge: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, XB_MARKET, 77, 5, &a)) == XP_E_PRICE, "market price: %d", r);
	CHECK((r = order(fd, 1, 2, XB_LIMIT, 100, 5, &a)) == XP_E_SIDE, "side: %d", r);
	CHECK((r = order(fd, 1, XB_BUY, 9, 100, 5, &a)) == XP_E_SIDE, "kind: %d", r);
	/* the connection still works, and duplicates are refused */
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, 100, 5, &a)) == XP_OK && a.status == XB_LIVE,
	      "a good order after bad ones: %d", r);
	seq--;
	CHECK((r = order(fd, 1, XB_BUY, XB_LIMIT, 100, 5, &a)) == XP_E_SEQ, "duplicate seq: %d", r);
	{
		struct xp_cancel c = { .seq = seq++, .order_id = 12345678901ull };
		uint8_t buf[256];

		CHECK(send_msg(fd, XP_T_CANCEL, &c, sizeof(c)) &&
		      recv_msg(fd, buf, sizeof(buf)) == XP_T_ACK, "cancel");
		memcpy(&a, buf, sizeof(a));
		CHECK(a.result == XP_E_NO_ORDER || a.result == XP_E_ENDED, "unknown cancel: %u",
		      a.result);
	}
	close(fd);
	(void)why;
	(void)why_len;
	return true;
}

/* Half a frame, then silence: dropped after the idle limit; others go on meanwhile. */
static bool stalled_and_vanished(char *why, size_t why_len)
{
	struct xp_hdr h = { sizeof(h) + sizeof(struct xp_new), XP_VERSION, XP_T_NEW, 0 };
	struct xp_ack a;
	int stall, good, gone;
	time_t t0 = time(NULL);

	CHECK(!hello(&stall) && !hello(&good) && !hello(&gone), "hello");
	CHECK(send_raw(stall, &h, sizeof(h)) && send_raw(stall, "abcd", 4), "half frame");
	/* a client that queues orders and vanishes without reading */
	for (int i = 0; i < 50; i++) {
		struct xp_new m = { .seq = 1000 + (uint64_t)i, .sym = 2, .side = XB_SELL, .price = 200,
				    .qty = 1 };

		send_msg(gone, XP_T_NEW, &m, sizeof(m));
	}
	{
		struct linger lg = { 1, 0 };	/* close with a reset */

		setsockopt(gone, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(gone);
	}
	for (int i = 0; i < 20; i++)
		CHECK(order(good, 3, XB_BUY, XB_LIMIT, 100 + i, 1, &a) == XP_OK,
		      "a good client was not served while another stalls");
	CHECK(expect_error(stall, XP_E_TIMEOUT, true, why, why_len), "stalled client not dropped");
	CHECK(time(NULL) - t0 < 10, "took too long");
	close(stall);
	CHECK(order(good, 3, XB_BUY, XB_LIMIT, 50, 1, &a) == XP_OK, "served after");
	close(good);
	return true;
}

/* Random garbage on many connections: all closed, the engine still serves. */
static bool garbage(char *why, size_t why_len)
{
	uint64_t s = 77;
	struct xp_ack a;
	int fd;

	for (int i = 0; i < 40; i++) {
		uint8_t junk[300];
		int g = dial(engine_port);
		int n = 1 + (int)(rng_next(&s) % sizeof(junk));
		uint8_t buf[1024];

		CHECK(g >= 0, "dial");
		for (int k = 0; k < n; k++)
			junk[k] = (uint8_t)rng_next(&s);
		if (i % 2) {	/* a plausible header with junk behind it */
			struct xp_hdr h = { (uint32_t)(8 + rng_next(&s) % 64), XP_VERSION,
					    (uint8_t)(rng_next(&s) % 8), 0 };

			memcpy(junk, &h, sizeof(h));
		}
		send_raw(g, junk, (size_t)n);
		shutdown(g, SHUT_WR);
		/* it gets an error and a close, or (a whole valid frame by chance) answers */
		while (recv_msg(g, buf, sizeof(buf)) >= 0)
			;
		close(g);
	}
	CHECK(!hello(&fd), "hello after garbage");
	CHECK(order(fd, 4, XB_SELL, XB_LIMIT, 300, 7, &a) == XP_OK, "order after garbage");
	close(fd);
	(void)why;
	(void)why_len;
	return true;
}

static bool too_many_clients(char *why, size_t why_len)
{
	int fds[16], extra;
	uint8_t buf[256];

	/* The engine runs with --max-clients 12; the others have closed. */
	usleep(100000);
	for (int i = 0; i < 12; i++)
		CHECK((fds[i] = dial(engine_port)) >= 0, "dial %d", i);
	extra = dial(engine_port);
	CHECK(extra >= 0 && expect_error(extra, XP_E_BUSY, true, why, why_len), "13th client");
	close(extra);
	for (int i = 0; i < 12; i++)
		close(fds[i]);
	usleep(100000);
	extra = dial(engine_port);
	CHECK(send_msg(extra, XP_T_STATS, NULL, 0) && recv_msg(extra, buf, sizeof(buf)) == XP_T_STATS_OK,
	      "served once slots free");
	close(extra);
	return true;
}

static bool md_input(char *why, size_t why_len)
{
	struct xp_sym_q q = { .sym = 5000 };
	uint8_t buf[64 * 1024];
	int fd = dial(md_port);

	CHECK(fd >= 0, "dial md");
	/* refused queries leave the connection open */
	CHECK(send_msg(fd, XP_T_TOP, &q, sizeof(q)) && expect_error(fd, XP_E_SYMBOL, false, why, why_len),
	      "unknown symbol");
	q.sym = 1;
	q.n = 0;
	CHECK(send_msg(fd, XP_T_DEPTH, &q, sizeof(q)) && expect_error(fd, XP_E_QTY, false, why, why_len),
	      "depth 0");
	q.n = 1000000;
	CHECK(send_msg(fd, XP_T_TRADES, &q, sizeof(q)) && expect_error(fd, XP_E_QTY, false, why, why_len),
	      "absurd trades count");
	q.n = 5;
	CHECK(send_msg(fd, XP_T_DEPTH, &q, sizeof(q)) && recv_msg(fd, buf, sizeof(buf)) == XP_T_DEPTH_OK,
	      "depth after errors");
	/* order-port types are unknown here */
	CHECK(send_msg(fd, XP_T_NEW, buf, sizeof(struct xp_new)) &&
	      expect_error(fd, XP_E_TYPE, true, why, why_len), "NEW on the md port");
	close(fd);
	fd = dial(md_port);
	{
		struct xp_hdr h = { 1u << 31, XP_VERSION, XP_T_TOP, 0 };

		CHECK(send_raw(fd, &h, sizeof(h)) && expect_error(fd, XP_E_LENGTH, true, why, why_len),
		      "oversize on md");
	}
	close(fd);
	return true;
}

/*
 * Back-pressure: an engine whose epochs come every 3 s holds acks; a client
 * that sends 66,000 orders without waiting is no longer read past 65,536
 * held acks, the engine keeps answering others, and once the epoch comes
 * every ack arrives, in order.
 */
static bool flood_while_acks_wait(char *why, size_t why_len)
{
	char eng[600], port_file[600], data[600];
	struct xp_hello hh = { .session = 1 };
	uint8_t buf[256];
	int port, fd, status, other;
	pid_t epid, child;
	bool ok = false;

	snprintf(eng, sizeof(eng), "%s/exchange-engine", bindir);
	snprintf(port_file, sizeof(port_file), "%s/eport2", dir);
	snprintf(data, sizeof(data), "%s/snap2", dir);
	epid = spawn((char *[]){ eng, "--mode", "fullcopy", "--dir", data, "--size", "32M",
				 "--port-file", port_file, "--ack", "published", "--sync-us", "3000000",
				 "--sync-orders", "1000000000", NULL });
	port = read_port("eport2");
	if (port < 0) {
		snprintf(why, why_len, "second engine did not start");
		goto out;
	}
	child = fork();
	if (child == 0) {
		struct timeval tv = { 15, 0 };
		int cfd = dial(port);
		uint64_t want = 1;

		if (cfd < 0 || !send_msg(cfd, XP_T_HELLO, &hh, sizeof(hh)) ||
		    recv_msg(cfd, buf, sizeof(buf)) != XP_T_HELLO_OK)
			_exit(2);
		setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		for (uint64_t i = 1; i <= 66000; i++) {
			struct xp_new m = { .seq = i, .sym = (uint32_t)(i % 50), .side = (uint8_t)(i & 1),
					    .price = 1000 + (int64_t)(i % 7), .qty = 1 };

			if (!send_msg(cfd, XP_T_NEW, &m, sizeof(m)))
				_exit(3);
		}
		for (; want <= 66000; want++) {
			struct xp_ack a;

			if (recv_msg(cfd, buf, sizeof(buf)) != XP_T_ACK)
				_exit(4);
			memcpy(&a, buf, sizeof(a));
			if (a.seq != want || a.result != XP_OK)
				_exit(5);
		}
		_exit(0);
	}
	/* While the flood waits, the engine still answers another client. */
	usleep(1000000);
	other = dial(port);
	CHECK(other >= 0 && send_msg(other, XP_T_STATS, NULL, 0) &&
	      recv_msg(other, buf, sizeof(buf)) == XP_T_STATS_OK, "engine unresponsive during a flood");
	close(other);
	waitpid(child, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(why, why_len, "flooding client: exit %d (2 hello, 3 send, 4 acks missing, "
			 "5 out of order or refused)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		goto out;
	}
	fd = dial(port);
	CHECK(fd >= 0 && send_msg(fd, XP_T_STATS, NULL, 0) &&
	      recv_msg(fd, buf, sizeof(buf)) == XP_T_STATS_OK, "stats after the flood");
	{
		struct xp_stats st;

		memcpy(&st, buf, sizeof(st));
		CHECK(st.commands >= 66000, "the engine applied %llu commands, want 66000",
		      (unsigned long long)st.commands);
		CHECK(st.pauses >= 1, "the flooding client was never paused");
	}
	close(fd);
	ok = true;
out:
	kill(epid, SIGTERM);
	waitpid(epid, &status, 0);
	return ok;
}

/* The books the engine published are valid and hold the good orders. */
static bool books_valid(char *why, size_t why_len)
{
	uint8_t buf[256];
	struct xp_flush_ok ok;
	char path[512];
	struct xb_book b;
	struct stat st;
	void *map;
	int fd = dial(engine_port), sfd, ret;

	CHECK(send_msg(fd, XP_T_FLUSH, NULL, 0) && recv_msg(fd, buf, sizeof(buf)) == XP_T_FLUSH_OK,
	      "flush");
	memcpy(&ok, buf, sizeof(ok));
	close(fd);
	snprintf(path, sizeof(path), "%s/snap/fullcopy.snap", dir);
	sfd = open(path, O_RDONLY);
	CHECK(sfd >= 0 && !fstat(sfd, &st), "%s: %s", path, strerror(errno));
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, sfd, 0);
	close(sfd);
	CHECK(map != MAP_FAILED, "mmap");
	ret = xb_attach(&b, (char *)map + 4096, (size_t)st.st_size - 4096);
	CHECK(ret == 0, "attach: %d", ret);
	ret = xb_validate(&b, why, why_len);
	CHECK(ret == 0, "books invalid: %s", why);
	CHECK(xb_hash_stored(&b) == ok.book_hash, "snapshot differs from the engine");
	CHECK(b.h->live_orders >= 20, "the good orders are not in the books (%llu live)",
	      (unsigned long long)b.h->live_orders);
	munmap(map, (size_t)st.st_size);
	return true;
}

int main(void)
{
	const char *o = getenv("O") ? getenv("O") : "build";
	char eport[600], mport[600], snap[600];
	int status;
	static const struct t_cell cells[] = {
		{ "malformed frames", malformed_frames },
		{ "sessions", sessions },
		{ "bad orders", bad_orders },
		{ "stalled and vanished clients", stalled_and_vanished },
		{ "garbage streams", garbage },
		{ "too many clients", too_many_clients },
		{ "md server input", md_input },
		{ "flood while acks wait", flood_while_acks_wait },
		{ "books valid afterwards", books_valid },
	};

	snprintf(bindir, sizeof(bindir), "%s/apps/exchange", o);
	snprintf(dir, sizeof(dir), "%s/exchange-badinput-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		DIE("mkdtemp: %s", strerror(errno));
	snprintf(eport, sizeof(eport), "%s/eport", dir);
	snprintf(mport, sizeof(mport), "%s/mport", dir);
	snprintf(snap, sizeof(snap), "%s/snap", dir);
	{
		char eng[600], md[600];

		snprintf(eng, sizeof(eng), "%s/exchange-engine", bindir);
		snprintf(md, sizeof(md), "%s/exchange-md", bindir);
		if (access(eng, X_OK) || access(md, X_OK)) {
			printf("skip: %s not built (make tests builds it)\n", eng);
			rmdir(dir);
			return T_SKIP;
		}
		engine_pid = spawn((char *[]){ eng, "--mode", "fullcopy", "--dir", snap, "--size", "8M",
					       "--port-file", eport, "--idle-ms", "300",
					       "--max-clients", "12", "--ack", "published", NULL });
		engine_port = read_port("eport");
		md_pid = spawn((char *[]){ md, "--mode", "fullcopy", "--dir", snap, "--port-file", mport,
					   NULL });
		md_port = read_port("mport");
	}
	if (engine_port < 0 || md_port < 0) {
		printf("the engine or the md server did not start\n");
		t_cell_report("start", T_FAIL, "no port file");
	} else {
		t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	}
	/* Both must still be alive, and stop cleanly. */
	if (waitpid(engine_pid, &status, WNOHANG) != 0)
		t_cell_report("engine survived", T_FAIL, "the engine died");
	if (waitpid(md_pid, &status, WNOHANG) != 0)
		t_cell_report("md survived", T_FAIL, "the md server died");
	kill(engine_pid, SIGTERM);
	kill(md_pid, SIGTERM);
	waitpid(engine_pid, &status, 0);
	t_cell_report("engine stops cleanly", WIFEXITED(status) && !WEXITSTATUS(status) ? T_PASS : T_FAIL,
		      "exit status");
	waitpid(md_pid, &status, 0);
	{
		char cmd[700];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			printf("could not remove %s\n", dir);
	}
	return t_exit();
}
