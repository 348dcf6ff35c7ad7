/* SPDX-License-Identifier: MIT */
/*
 * net.h - TCP plumbing the exchange's programs share: loopback-only
 * listening and connecting, per-connection input and output buffers, frame
 * extraction with the length checked before anything else is read.
 */
#ifndef EXCHANGE_NET_H
#define EXCHANGE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct xconn {
	int fd;
	uint8_t *in;
	size_t in_len, in_cap;
	uint8_t *out;
	size_t out_off, out_len, out_cap;
	uint64_t last_rx_ns;	/* last time bytes arrived */
	bool out_armed;		/* EPOLLOUT registered */
	bool no_input;		/* set by the owner: stop reading (back-pressure) */
	bool in_disarmed;	/* EPOLLIN not registered */
};

/* Listen on 127.0.0.1:port (0: any free port).  Returns the fd and the
 * bound port in *bound, or -errno. */
int xn_listen(int port, int *bound);

/* Connect to 127.0.0.1:port; the fd comes back non-blocking with
 * TCP_NODELAY.  Returns the fd or -errno. */
int xn_connect(int port);

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

#endif /* EXCHANGE_NET_H */
