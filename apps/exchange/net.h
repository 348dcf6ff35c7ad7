/* SPDX-License-Identifier: MIT */
/*
 * net.h - TCP plumbing the exchange's programs share: addresses (127.0.0.1
 * unless told otherwise), listening and connecting, per-connection input
 * and output buffers, frame
 * extraction with the length checked before anything else is read, and the
 * servers' client table with its deadlines and descriptor accounting.
 */
#ifndef EXCHANGE_NET_H
#define EXCHANGE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto.h"

struct epoll_event;

struct xconn {
	int fd;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	uint64_t active_ns;	/* last time a byte moved, in or out */
	uint64_t frame_ns;	/* when the unfinished frame's first byte came; 0: none */
	bool out_armed;		/* EPOLLOUT registered */
	bool no_input;		/* set by the owner: stop reading (back-pressure) */
	bool in_disarmed;	/* EPOLLIN not registered */
};

/* An IPv4 or IPv6 address with its port. */
struct xn_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

#define XN_ADDR_TEXT	64	/* "HOST:PORT" or "[V6]:PORT" with its NUL */

/*
 * A numeric host, IPv4 ("10.0.0.1") or IPv6 ("::1", brackets allowed), and
 * port (0 to 65535) into *a.  0, or -EINVAL for anything else (no names:
 * nothing here waits for a resolver).
 */
int xn_addr_host(struct xn_addr *a, const char *host, int port);

/*
 * "HOST:PORT" ("[V6]:PORT"), or "PORT" alone for 127.0.0.1:PORT, into *a;
 * the port 1 to 65535.  0 or -EINVAL.
 */
int xn_addr_parse(struct xn_addr *a, const char *s);

int xn_addr_port(const struct xn_addr *a);
void xn_addr_set_port(struct xn_addr *a, int port);

/* "HOST:PORT" into buf (XN_ADDR_TEXT bytes); returns buf. */
const char *xn_addr_text(const struct xn_addr *a, char *buf);

/* Listen on a (port 0: any free port).  Returns the fd and the bound port in
 * *bound, or -errno. */
int xn_listen(const struct xn_addr *a, int *bound);

/* Connect to a, giving up after timeout_ms (an unreachable host must not
 * hold a client's loop for the kernel's minutes); the fd comes back
 * non-blocking with TCP_NODELAY.  Returns the fd or -errno (-ETIMEDOUT). */
int xn_connect(const struct xn_addr *a, int timeout_ms);

/* Set up / free a connection's buffers (in_cap: the largest frame accepted). */
int xn_init(struct xconn *c, int fd, size_t in_cap);
void xn_free(struct xconn *c);

/* Read what is available.  Returns bytes read (> 0), 0 when nothing is
 * waiting, -1 when the peer closed or failed, -2 when the buffer is full
 * (which xn_frame prevents for well-formed streams). */
int xn_read(struct xconn *c);

/*
 * The next whole frame at *off in the input, or none.  Returns 1 and *h
 * when a whole frame is there, 0 when more bytes are needed, -XP_E_* when
 * the header is malformed (wrong version, len below the header or above max).
 */
int xn_frame(const struct xconn *c, size_t off, size_t max, const struct xp_hdr **h);

/* Drop the first n input bytes (the frames handled). */
void xn_consume(struct xconn *c, size_t n);

/* Queue a frame: header, body, then extra.  0, or -ENOBUFS when the output
 * would exceed limit bytes (a reader too slow to keep). */
int xn_queue(struct xconn *c, int type, const void *body, size_t len, const void *extra,
	     size_t extra_len, size_t limit);

/* Queue an XP_T_ERROR frame with a text. */
int xn_queue_error(struct xconn *c, unsigned code, const char *text);

/* Write queued output.  0: all written, 1: some left (wait for EPOLLOUT),
 * -1: the connection failed. */
int xn_flush(struct xconn *c);

/* Keep EPOLLOUT registered exactly while output is pending, and EPOLLIN
 * unless the owner set no_input. */
int xn_arm(int epfd, struct xconn *c, uint64_t data);

/*
 * Write "PORT\n" to path, replacing it whole: a file made with O_EXCL and
 * O_NOFOLLOW under a name of our own in path's directory, then renamed over
 * path, so no symlink planted at path or beside it is written through.
 * 0 or -errno.
 */
int xn_write_port_file(const char *path, int port);

/* ---- a server's clients ---------------------------------------------------- */

/*
 * The client table of exchange-engine and exchange-md: one listening socket,
 * one epoll set, max_clients slots.  Limits it keeps (all by idle_ms):
 *
 *   frame deadline  a frame must be whole within idle_ms of its first byte:
 *                   trickling bytes resets nothing.  Closed with XP_E_TIMEOUT.
 *   idle deadline   a client on which nothing moved for idle_ms (no byte in
 *                   or out, no answer owed to it) gives its slot, or its
 *                   descriptor, to a newcomer when the table or the process's
 *                   descriptors are full.  Quiet clients keep their
 *                   connection while nobody needs the room.
 *   descriptors     when accept() fails for want of descriptors, the idlest
 *                   client is dropped as above; with none idle enough, a
 *                   reserve descriptor is closed to accept the newcomer and
 *                   refuse it (XP_E_BUSY), so the backlog drains instead of
 *                   keeping the listener readable and the loop spinning.
 *                   Failing that, the listener leaves the epoll set for
 *                   XN_BACKOFF_MS.
 *
 * A deadline never fires on a client whose bytes wait unread in the kernel:
 * when the server itself was busy (a FLUSH, a CONVERGE), the fault is ours.
 */
#define XN_LISTENER	UINT64_MAX	/* the listening socket's epoll data */
#define XN_BACKOFF_MS	100
#define XN_SWEEP_NS	100000000ull	/* deadlines are checked this often */

struct xn_client {
	struct xconn c;
	uint32_t gen;		/* bumped at each reuse of the slot: stale events are dropped */
	bool used;
	uint32_t owed;		/* answers the owner still owes it (acks waiting for an
				 * epoch): a client waiting for us is not idle */
};

struct xn_server {
	struct xn_client *cl;
	uint32_t nclients;
	int epfd, lfd;
	int reserve_fd;		/* /dev/null, given up to accept one connection too many */
	uint64_t idle_ns;
	size_t in_cap;
	uint64_t listen_off_until;	/* 0: the listener is in the epoll set */
	uint64_t next_sweep_ns;
	uint64_t protocol_errors, refused, evicted;
	/* Called after a slot is closed, for the owner's per-slot state. */
	void (*on_close)(void *owner, uint32_t i);
	void *owner;
};

/* Listen on a (port 0: any), with max_clients slots taking frames of up to
 * in_cap bytes.  0 and the bound port in *bound, or -errno. */
int xn_server_open(struct xn_server *s, const struct xn_addr *a, int *bound,
		   uint32_t max_clients, int idle_ms, size_t in_cap);

/* Close every client, the listener and the epoll set. */
void xn_server_close(struct xn_server *s);

/* The epoll data that names slot i in its current use. */
uint64_t xn_tag(const struct xn_server *s, uint32_t i);

/* Handle what the table can of one epoll event (the listener, a stale
 * event, EPOLLOUT).  Returns the slot the owner must read, or -1. */
int xn_event(struct xn_server *s, const struct epoll_event *ev);

/* Flush slot i's output and rearm it, or close it if the peer failed. */
void xn_client_flush(struct xn_server *s, uint32_t i);

/* Close slot i (a no-op on a free slot), after trying to send what is queued. */
void xn_client_close(struct xn_server *s, uint32_t i);

/* Send an XP_T_ERROR with code and close slot i: a malformed stream. */
void xn_protocol_error(struct xn_server *s, uint32_t i, unsigned code);

/* The deadlines, and the listener's return after a back-off.  Call once per
 * loop; it does its work every XN_SWEEP_NS. */
void xn_sweep(struct xn_server *s, uint64_t now);

/* Slots in use. */
uint32_t xn_clients(const struct xn_server *s);

#endif /* EXCHANGE_NET_H */
