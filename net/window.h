/* SPDX-License-Identifier: MIT */
/*
 * window.h - a publisher's messages in flight (window.c): published to the
 * stream without waiting for each acknowledgement, each expecting the one
 * before it, and kept until known stored so that any of them can be sent
 * again after a failure.  The publisher (publisher.c) encodes the messages
 * into the window and decides, after a failure, where the stream is.
 */
#ifndef PT_NET_WINDOW_H
#define PT_NET_WINDOW_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nats/nats.h>

#include "pagetrack.h"

struct net_conn;

/* One message: a part of an epoch. */
struct net_msg {
	unsigned char *buf;		/* header and body; kept from one use to the next */
	size_t len, cap;
	uint64_t epoch, chain, prev_chain;
	uint32_t part, parts;
	uint32_t first, count;		/* its pages in the epoch's page list */
	uint32_t page_count, page_size;	/* the epoch's */
	uint64_t seq;			/* the stream sequence it takes when stored */
	natsMsg *sent;			/* window.c's: while its answer is awaited */
	int state;			/* window.c's */
};

/*
 * The messages in stream order: [head, acked) stored, [acked, sent) sent,
 * [sent, tail) to send.  The acknowledgements come on libnats's thread;
 * lock guards what it touches (the messages in [acked, sent), acked,
 * inflight, failed, conflict, failure).
 */
struct net_window {
	jsCtx *js;			/* the acknowledgements of its publishes come here */
	char subject[128];
	uint64_t history, term;		/* for the message ids */
	unsigned int timeout_ms;	/* for an acknowledgement */
	struct pt_replicated *rep;	/* PT_LEVEL_REPLICATED, reported as acks come */
	bool ready;			/* lock, cond and js made */
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* an answer came */
	struct net_msg *msgs;
	size_t cap, head, acked, sent, tail;
	size_t inflight;		/* sent, answer awaited */
	size_t bytes;			/* of the messages [head, tail) */
	uint64_t send_seq;		/* the stream's last sequence once every message
					 * sent is stored */
	char prev_id[96];		/* the id of the last message sent, "": none since
					 * window_resend() */
	bool failed;			/* a message failed: nothing more is sent */
	bool conflict;			/* one was refused for its expected sequence or
					 * message id, or was a duplicate */
	bool too_big;			/* one was over the server's max payload */
	char failure[300];		/* the first failure, in words */
};

/* Messages stored and taken out of the window, in order. */
typedef void (*window_stored_fn)(const struct net_msg *m, void *arg);

/* Make w ready on nc (the first time; then a no-op).  term: the writer's
 * (0: none, term.c).  0 or -errno. */
int window_start(struct net_window *w, natsConnection *nc, const char *subject,
		 uint64_t history, uint64_t term, unsigned int timeout_ms,
		 struct pt_replicated *rep);
/* Wait for the answers in flight (bounded), close c's connection
 * (net_close: an answer coming late must find no subscription being
 * destroyed under it), then free everything. */
void window_close(struct net_window *w, struct net_conn *c);

/* A new message at the tail, its index in *at (the array may move). */
int window_push(struct net_window *w, size_t *at);
/* Room for need bytes in m->buf.  0 or -ENOMEM. */
int window_reserve(struct net_msg *m, size_t need);
/* Take messages [from, from + n) out, none of them sent yet. */
void window_cut(struct net_window *w, size_t from, size_t n);
/* Messages [from, tail) are whole: they count in the window's bytes. */
void window_commit(struct net_window *w, size_t from);

/* Send the messages waiting, in order, until one cannot be sent. */
void window_send(struct net_window *w);
/*
 * Hand the stored messages at the head to fn, then wait while the window
 * holds limit_msgs messages or limit_bytes.  0, or -EAGAIN once a message
 * failed (or no answer came in time).
 */
int window_room(struct net_window *w, size_t limit_msgs, size_t limit_bytes,
		window_stored_fn fn, void *arg);
/* Wait until every message sent has its answer, then hand the stored ones to fn. */
void window_drain(struct net_window *w, window_stored_fn fn, void *arg);
bool window_failed(struct net_window *w);

/* After window_drain(), matching the stream's last message against it: */
/* The newest message with these fields, or -1. */
ptrdiff_t window_find(const struct net_window *w, uint64_t epoch, uint32_t part, uint32_t parts,
		      uint64_t chain);
/* Messages up to j are stored, j at sequence seq: to fn, out of the window. */
void window_stored_upto(struct net_window *w, size_t j, uint64_t seq, window_stored_fn fn,
			void *arg);
/* Send the rest again after the stream's last sequence last_seq; clears the failure. */
void window_resend(struct net_window *w, uint64_t last_seq);
/* Drop every message (the stream went back): as window_resend() with none. */
void window_clear(struct net_window *w, uint64_t last_seq);

#endif /* PT_NET_WINDOW_H */
