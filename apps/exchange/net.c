/* SPDX-License-Identifier: MIT */
/*
 * net.c - loopback TCP with buffered, framed connections (see net.h).
 *
 * Every listening socket binds 127.0.0.1 only: the exchange's ports are for
 * processes on this machine, never a network.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

static void loopback(struct sockaddr_in *a, int port)
{
	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

int xn_listen(int port, int *bound)
{
	struct sockaddr_in a;
	socklen_t alen = sizeof(a);
	int fd, one = 1, err;

	if (port < 0 || port > 65535)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	loopback(&a, port);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 512) ||
	    getsockname(fd, (struct sockaddr *)&a, &alen)) {
		err = -errno;
		close(fd);
		return err;
	}
	*bound = ntohs(a.sin_port);
	return fd;
}

int xn_connect(int port)
{
	struct sockaddr_in a;
	int fd, one = 1, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	loopback(&a, port);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) ||
	    fcntl(fd, F_SETFL, O_NONBLOCK)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int xn_init(struct xconn *c, int fd, size_t in_cap)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->in_cap = in_cap;
	c->in = malloc(in_cap);
	c->out_cap = 4096;
	c->out = malloc(c->out_cap);
	c->last_rx_ns = now_ns();
	if (!c->in || !c->out) {
		xn_free(c);
		return -ENOMEM;
	}
	return 0;
}

void xn_free(struct xconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	free(c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int xn_read(struct xconn *c)
{
	ssize_t n;

	if (c->in_len == c->in_cap)
		return -2;
	n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
	if (n > 0) {
		c->in_len += (size_t)n;
		c->last_rx_ns = now_ns();
		return (int)n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	return -1;
}

int xn_frame(const struct xconn *c, size_t off, size_t max, const struct xp_hdr **h)
{
	const struct xp_hdr *p;

	if (c->in_len - off < sizeof(*p))
		return 0;
	p = (const struct xp_hdr *)(c->in + off);
	/* Check the header before trusting len: a wrong version may mean the
	 * peer speaks something else entirely, and len is then noise. */
	if (p->version != XP_VERSION)
		return -XP_E_VERSION;
	if (p->len < sizeof(*p) || p->len > max)
		return -XP_E_LENGTH;
	if (p->zero)
		return -XP_E_RESERVED;
	if (c->in_len - off < p->len)
		return 0;
	*h = p;
	return 1;
}

void xn_consume(struct xconn *c, size_t n)
{
	if (n >= c->in_len) {
		c->in_len = 0;
		return;
	}
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

static int reserve(struct xconn *c, size_t add, size_t limit)
{
	size_t need;

	if (c->out_off && c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	need = c->out_len + add;
	if (need - c->out_off > limit)
		return -ENOBUFS;
	if (need > c->out_cap && c->out_off) {
		memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
		c->out_len -= c->out_off;
		c->out_off = 0;
		need = c->out_len + add;
	}
	if (need > c->out_cap) {
		size_t cap = c->out_cap;
		uint8_t *p;

		while (cap < need)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p)
			return -ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	return 0;
}

int xn_queue(struct xconn *c, int type, const void *body, size_t len, const void *extra,
	     size_t extra_len, size_t limit)
{
	struct xp_hdr h = { .len = (uint32_t)(sizeof(h) + len + extra_len), .version = XP_VERSION,
			    .type = (uint8_t)type };
	int ret = reserve(c, h.len, limit);

	if (ret)
		return ret;
	memcpy(c->out + c->out_len, &h, sizeof(h));
	if (len)
		memcpy(c->out + c->out_len + sizeof(h), body, len);
	if (extra_len)
		memcpy(c->out + c->out_len + sizeof(h) + len, extra, extra_len);
	c->out_len += h.len;
	return 0;
}

int xn_queue_error(struct xconn *c, unsigned code, const char *text)
{
	struct xp_error e = { .code = (uint16_t)code, .len = (uint16_t)strlen(text) };

	/* An error goes out even to a slow reader: allow it past the limit. */
	return xn_queue(c, XP_T_ERROR, &e, sizeof(e), text, e.len, SIZE_MAX / 2);
}

int xn_flush(struct xconn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 1 : -1;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	return 0;
}

int xn_arm(int epfd, struct xconn *c, uint64_t data)
{
	bool want = c->out_off < c->out_len;
	struct epoll_event ev = { .events = (c->no_input ? 0 : EPOLLIN) | (want ? EPOLLOUT : 0),
				  .data.u64 = data };

	if (want == c->out_armed && c->no_input == c->in_disarmed)
		return 0;
	c->out_armed = want;
	c->in_disarmed = c->no_input;
	return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) ? -errno : 0;
}

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

const char *xp_err_name(unsigned code)
{
	static const char *const names[XP_E_COUNT] = {
		"ok", "unknown protocol version", "unknown message type",
		"bad frame length", "reserved field not zero", "unknown symbol",
		"quantity out of range", "price out of range", "unknown side or order kind",
		"books full", "no such order", "order already ended",
		"sequence number not above the last", "no session, or session busy",
		"too busy", "no data yet", "internal error", "idle in the middle of a frame",
	};

	return code < XP_E_COUNT ? names[code] : "unknown error";
}
