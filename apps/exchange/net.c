/* SPDX-License-Identifier: MIT */
/*
 * net.c - TCP with buffered, framed connections, and the servers' client
 * table with its deadlines (see net.h).
 *
 * The programs listen on 127.0.0.1 unless given an address (--listen): the
 * exchange's ports are for processes on this machine unless its operator
 * puts them on a network (the demo's hosts in namespaces).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

int xn_addr_host(struct xn_addr *a, const char *host, int port)
{
	char buf[XN_ADDR_TEXT];
	size_t n = strlen(host);

	memset(a, 0, sizeof(*a));
	if (port < 0 || port > 65535 || !n || n >= sizeof(buf))
		return -EINVAL;
	if (host[0] == '[') {
		if (n < 3 || host[n - 1] != ']')
			return -EINVAL;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = 0;
	} else {
		memcpy(buf, host, n + 1);
	}
	if (host[0] != '[') {
		struct sockaddr_in *in = (struct sockaddr_in *)&a->sa;

		if (inet_pton(AF_INET, buf, &in->sin_addr) == 1) {
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16_t)port);
			a->len = sizeof(*in);
			return 0;
		}
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->sa;

	if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1)
		return -EINVAL;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons((uint16_t)port);
	a->len = sizeof(*in6);
	return 0;
}

int xn_addr_parse(struct xn_addr *a, const char *s)
{
	char host[XN_ADDR_TEXT];
	const char *colon = strrchr(s, ':'), *p;
	int port = 0;

	/* "PORT" alone; an IPv6 address has colons, but not as its last
	 * part after a ']' or alone. */
	if (colon && s[0] != '[' && strchr(s, ':') != colon)
		return -EINVAL;	/* an IPv6 address without brackets: where is the port? */
	p = colon ? colon + 1 : s;
	if (!*p || strlen(p) > 5 || (*p == '0'))
		return -EINVAL;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		port = port * 10 + (*p - '0');
	}
	if (port < 1 || port > 65535)
		return -EINVAL;
	if (!colon)
		return xn_addr_host(a, "127.0.0.1", port);
	if ((size_t)(colon - s) >= sizeof(host) || colon == s)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	return xn_addr_host(a, host, port);
}

int xn_addr_port(const struct xn_addr *a)
{
	if (a->sa.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->sa)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->sa)->sin_port);
}

void xn_addr_set_port(struct xn_addr *a, int port)
{
	if (a->sa.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)port);
	else
		((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
}

const char *xn_addr_text(const struct xn_addr *a, char *buf)
{
	char host[INET6_ADDRSTRLEN] = "?";
	bool v6 = a->sa.ss_family == AF_INET6;

	if (v6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->sa)->sin6_addr, host,
			  sizeof(host));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->sa)->sin_addr, host,
			  sizeof(host));
	snprintf(buf, XN_ADDR_TEXT, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
		 xn_addr_port(a));
	return buf;
}

int xn_listen(const struct xn_addr *a, int *bound)
{
	struct xn_addr b = *a;
	socklen_t blen = sizeof(b.sa);
	int fd, one = 1, err;

	if (!a->len)
		return -EINVAL;
	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->sa, a->len) || listen(fd, 512) ||
	    getsockname(fd, (struct sockaddr *)&b.sa, &blen)) {
		err = -errno;
		close(fd);
		return err;
	}
	*bound = xn_addr_port(&b);
	return fd;
}

int xn_connect(const struct xn_addr *a, int timeout_ms)
{
	struct pollfd pfd;
	socklen_t elen = sizeof(int);
	int fd, one = 1, err = 0, ret;

	if (!a->len)
		return -EINVAL;
	fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)&a->sa, a->len)) {
		if (errno != EINPROGRESS) {
			err = -errno;
			goto fail;
		}
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		do
			ret = poll(&pfd, 1, timeout_ms);
		while (ret < 0 && errno == EINTR);
		if (ret <= 0) {
			err = ret ? -errno : -ETIMEDOUT;
			goto fail;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) || err) {
			err = err ? -err : -errno;
			goto fail;
		}
	}
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))) {
		err = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return err;
}

int xn_init(struct xconn *c, int fd, size_t in_cap)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->in_cap = in_cap;
	c->in = malloc(in_cap);
	c->out_cap = 4096;
	c->out = malloc(c->out_cap);
	c->active_ns = now_ns();
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
		c->active_ns = now_ns();
		if (!c->in_len)
			c->frame_ns = c->active_ns;
		c->in_len += (size_t)n;
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
		c->frame_ns = 0;
		return;
	}
	if (!n)
		return;
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
	/* The bytes left began a frame after the last one finished: they
	 * came in the latest read at the earliest. */
	c->frame_ns = c->active_ns;
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
		if (n)
			c->active_ns = now_ns();
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

int xn_write_port_file(const char *path, int port)
{
	const char *slash = strrchr(path, '/');
	char tmp[4096], text[16];
	int fd = -1, len, err, tries;
	ssize_t n;

	len = snprintf(text, sizeof(text), "%d\n", port);
	/*
	 * The temporary sits in path's directory, so the rename cannot cross
	 * file systems, under a name no one else picks: O_EXCL refuses
	 * anything already there (a symlink included), so a name guessed and
	 * planted by another user costs a retry, never a write through it.
	 */
	for (tries = 0; tries < 16 && fd < 0; tries++) {
		if (snprintf(tmp, sizeof(tmp), "%.*s.%s.%d.%llx.tmp", slash ? (int)(slash - path + 1) : 0,
			     path, slash ? slash + 1 : path, (int)getpid(),
			     (unsigned long long)(now_ns() ^ (uint64_t)tries << 40)) >= (int)sizeof(tmp))
			return -ENAMETOOLONG;
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	n = write(fd, text, (size_t)len);
	if (n != len) {
		err = n < 0 ? -errno : -EIO;
		goto err;
	}
	if (close(fd)) {
		fd = -1;
		err = -errno;
		goto err;
	}
	fd = -1;
	/* rename() replaces a symlink at path itself, never its target. */
	if (rename(tmp, path)) {
		err = -errno;
		goto err;
	}
	return 0;
err:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return err;
}

/* ---- a server's clients ---------------------------------------------------- */

uint64_t xn_tag(const struct xn_server *s, uint32_t i)
{
	return (uint64_t)s->cl[i].gen << 32 | i;
}

int xn_server_open(struct xn_server *s, const struct xn_addr *a, int *bound,
		   uint32_t max_clients, int idle_ms, size_t in_cap)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = XN_LISTENER };
	int err;

	memset(s, 0, sizeof(*s));
	s->lfd = s->epfd = s->reserve_fd = -1;
	s->nclients = max_clients;
	s->idle_ns = (uint64_t)idle_ms * 1000000ull;
	s->in_cap = in_cap;
	s->cl = calloc(max_clients, sizeof(*s->cl));
	if (!s->cl) {
		err = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < max_clients; i++)
		s->cl[i].c.fd = -1;
	/* Taken first, while descriptors are plentiful: it is what lets the
	 * server say no once they are not. */
	s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (s->reserve_fd < 0) {
		err = -errno;
		goto err;
	}
	s->lfd = xn_listen(a, bound);
	if (s->lfd < 0) {
		err = s->lfd;
		goto err;
	}
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->epfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev)) {
		err = -errno;
		goto err;
	}
	return 0;
err:
	xn_server_close(s);
	return err;
}

void xn_server_close(struct xn_server *s)
{
	if (s->cl)
		for (uint32_t i = 0; i < s->nclients; i++)
			xn_client_close(s, i);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	free(s->cl);
	s->cl = NULL;
	s->lfd = s->epfd = s->reserve_fd = -1;
}

void xn_client_close(struct xn_server *s, uint32_t i)
{
	struct xn_client *c = &s->cl[i];

	if (!c->used)
		return;
	xn_flush(&c->c);	/* a last error frame, if the socket takes it */
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->c.fd, NULL);
	xn_free(&c->c);
	c->used = false;
	c->owed = 0;
	c->gen++;
	if (s->on_close)
		s->on_close(s->owner, i);
}

static void close_with(struct xn_server *s, uint32_t i, unsigned code, const char *why)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "%s: closing", why);
	xn_queue_error(&s->cl[i].c, code, msg);
	xn_client_close(s, i);
}

void xn_protocol_error(struct xn_server *s, uint32_t i, unsigned code)
{
	s->protocol_errors++;
	close_with(s, i, code, xp_err_name(code));
}

void xn_client_flush(struct xn_server *s, uint32_t i)
{
	if (xn_flush(&s->cl[i].c) < 0)
		xn_client_close(s, i);
	else
		xn_arm(s->epfd, &s->cl[i].c, xn_tag(s, i));
}

uint32_t xn_clients(const struct xn_server *s)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < s->nclients; i++)
		n += s->cl[i].used;
	return n;
}

/* Bytes the kernel holds for us that we have not read yet. */
static bool unread(int fd)
{
	int n = 0;

	return !ioctl(fd, FIONREAD, &n) && n > 0;
}

/* The client idle longest, if past the idle deadline, closed for a newcomer. */
static bool evict_idlest(struct xn_server *s, uint64_t now)
{
	uint64_t oldest = now;
	uint32_t pick = UINT32_MAX;

	for (uint32_t i = 0; i < s->nclients; i++) {
		const struct xn_client *c = &s->cl[i];

		if (c->used && !c->owed && !c->c.no_input && c->c.active_ns < oldest) {
			oldest = c->c.active_ns;
			pick = i;
		}
	}
	if (pick == UINT32_MAX || now - oldest <= s->idle_ns || unread(s->cl[pick].c.fd))
		return false;
	s->evicted++;
	close_with(s, pick, XP_E_TIMEOUT, "idle while the server is full");
	return true;
}

/* Refuse a connection we have no room for: an error it can read, then close. */
static void refuse(struct xn_server *s, int fd)
{
	static const char text[] = "too many clients";
	struct {
		struct xp_hdr h;
		struct xp_error e;
		char t[sizeof(text) - 1];
	} __attribute__((packed)) f = {
		{ sizeof(f), XP_VERSION, XP_T_ERROR, 0 },
		{ XP_E_BUSY, sizeof(text) - 1, 0 }, "too many clients"
	};

	s->refused++;
	if (send(fd, &f, sizeof(f), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		(void)0;	/* it is being refused anyway */
	close(fd);
}

/*
 * Out of descriptors: give up the reserve to accept one pending connection
 * and refuse it, then take the reserve back.  1: one refused, 0: none was
 * waiting, -1: no reserve to give (the caller backs off instead).
 */
static int refuse_with_reserve(struct xn_server *s)
{
	int fd, err;

	if (s->reserve_fd < 0)
		return -1;
	close(s->reserve_fd);
	fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	err = errno;
	if (fd >= 0)
		refuse(s, fd);
	/* Another thread of the process (the library's) may take the number
	 * in between; then there is no reserve until the next sweep. */
	s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		return 1;
	return err == EAGAIN ? 0 : -1;
}

static void listen_off(struct xn_server *s, uint64_t now)
{
	if (s->listen_off_until)
		return;
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->lfd, NULL);
	s->listen_off_until = now + XN_BACKOFF_MS * 1000000ull;
}

static void on_accept(struct xn_server *s)
{
	uint64_t now = now_ns();

	/* Bounded: a flood of connections waits for the next wakeup rather
	 * than hold the loop away from the clients it has. */
	for (int k = 0; k < 64; k++) {
		int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct epoll_event ev = { .events = EPOLLIN };
		uint32_t i;

		if (fd < 0) {
			int err = errno;

			if (err == EINTR || err == ECONNABORTED)
				continue;
			if (err == EAGAIN)
				return;
			if ((err == EMFILE || err == ENFILE) && evict_idlest(s, now))
				continue;
			if (err == EMFILE || err == ENFILE) {
				int r = refuse_with_reserve(s);

				if (r > 0)
					continue;
				if (!r)
					return;
			}
			/* ENOBUFS, ENOMEM, no reserve: the listener would
			 * stay readable and the loop spin; leave it alone
			 * for a while. */
			listen_off(s, now);
			return;
		}
		for (i = 0; i < s->nclients && s->cl[i].used; i++)
			;
		if (i == s->nclients && evict_idlest(s, now))
			for (i = 0; i < s->nclients && s->cl[i].used; i++)
				;
		if (i == s->nclients) {
			refuse(s, fd);
			continue;
		}
		if (xn_init(&s->cl[i].c, fd, s->in_cap)) {
			close(fd);
			continue;
		}
		s->cl[i].used = true;
		s->cl[i].owed = 0;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		ev.data.u64 = xn_tag(s, i);
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev))
			xn_client_close(s, i);
	}
}

int xn_event(struct xn_server *s, const struct epoll_event *ev)
{
	uint64_t d = ev->data.u64;
	uint32_t i = (uint32_t)d;

	if (d == XN_LISTENER) {
		on_accept(s);
		return -1;
	}
	if (i >= s->nclients || !s->cl[i].used || s->cl[i].gen != (uint32_t)(d >> 32))
		return -1;
	if (ev->events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		return (int)i;
	if (ev->events & EPOLLOUT)
		xn_client_flush(s, i);
	return -1;
}

void xn_sweep(struct xn_server *s, uint64_t now)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = XN_LISTENER };

	if (now < s->next_sweep_ns)
		return;
	s->next_sweep_ns = now + XN_SWEEP_NS;
	if (s->reserve_fd < 0)
		s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (s->listen_off_until && now >= s->listen_off_until &&
	    !epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->lfd, &ev))
		s->listen_off_until = 0;
	for (uint32_t i = 0; i < s->nclients; i++) {
		const struct xn_client *c = &s->cl[i];

		/* A paused client (no_input) is waiting for us, not late. */
		if (c->used && c->c.frame_ns && !c->c.no_input &&
		    now - c->c.frame_ns > s->idle_ns && !unread(c->c.fd))
			xn_protocol_error(s, i, XP_E_TIMEOUT);
	}
}
