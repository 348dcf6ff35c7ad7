/* SPDX-License-Identifier: MIT */
/*
 * term.h - terms of a stream's writers (failover, docs/network.md "Failover"):
 * the term markers a promoted standby appends to the stream, and where the
 * stream's history stands (its tip) for the writer that takes over.
 */
#ifndef PT_NET_TERM_H
#define PT_NET_TERM_H

#include <stdint.h>

#include "conn.h"
#include "wire.h"

/* pagetrack.<stream>.term, where term markers go. */
void term_subject(char *buf, size_t len, const char *stream);
/* pagetrack.<stream>.*, what a follower consumes: epochs and markers. */
void term_all_subjects(char *buf, size_t len, const char *stream);

/* A term marker as read from the stream: its header (h.term its body). */
struct term_marker {
	uint64_t seq;
	struct wire_header h;
};

/*
 * The stream's newest term marker into *m, checked and authenticated with
 * k (wire_authenticate: with a key, a marker must carry its HMAC).
 * Returns 1, 0 when the stream holds none, -EAGAIN (the server did not
 * answer), or -EBADMSG / -EPROTO / -EKEYREJECTED / -ENOKEY (a message on
 * the term subject that is not a good marker), with the last error set.
 */
int term_last(struct net_conn *c, const char *stream, const struct wire_key *k,
	      struct term_marker *m);

/*
 * Where the stream's history stands: its last sequence, and the last whole
 * epoch it holds with that epoch's chain (after the newest term marker if
 * that is the stream's last word on epochs; a half-published epoch at the
 * end does not count, its prev_chain names the epoch before).  epoch 0:
 * the stream holds no epoch.  Every message read has a sequence up to
 * last_seq (read again if the stream moved meanwhile).
 */
struct term_tip {
	uint64_t last_seq;
	uint64_t history_id;
	uint64_t npages;
	uint32_t page_size;
	uint64_t epoch, chain;
	bool half;			/* a half-published epoch follows epoch */
	bool marked;			/* marker: the stream's newest term marker */
	struct term_marker marker;
};

/* Messages authenticated with k.  Returns 0, -EAGAIN, -ENOENT (no such
 * stream) or a fatal error. */
int term_tip(struct net_conn *c, const char *stream, const struct wire_key *k,
	     struct term_tip *t);

/*
 * Make sure the stream takes term markers: add the term subject to its
 * subjects when a stream made by an older publisher lacks it.  0, -EAGAIN
 * or a fatal error.
 */
int term_stream_prepare(struct net_conn *c, const char *stream);

/*
 * Append marker (wire_term_put's fields in h; sealed with k when it has a
 * key) with ExpectLastSeq = h->term.after_seq: stored only if nothing was
 * appended since.  Returns 0 and *seq, -EBUSY (the stream moved: JetStream
 * error 10071), -EAGAIN, or -ENOMEM.
 */
int term_publish(struct net_conn *c, const char *stream, const struct wire_header *h,
		 const struct wire_key *k, uint64_t timeout_ms, uint64_t *seq);

/* This host's name for markers and leases: printable, NUL padded. */
void term_host(char host[WIRE_HOST_MAX]);

/* A random 64-bit id, never 0 (a holder id). */
uint64_t term_random_id(void);

#endif /* PT_NET_TERM_H */
