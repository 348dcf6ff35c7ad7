/* SPDX-License-Identifier: MIT */
/*
 * publisher.c - a region's epochs appended to a JetStream stream.
 *
 * The source is a PT_REPLICA_DELTAS replica of the data directory: it reads
 * the log's files only, so the writer never waits for the publisher (it may
 * wait for PT_LEVEL_REPLICATED, which the publisher reports here).  Each
 * epoch is encoded inside pt_replica_step()'s callback, where the replica's
 * copy still holds the epoch before: pages travel XORed with that content,
 * into the messages of the window (below); the source then moves on.
 *
 * The window (window.c).  Messages are published without waiting for each
 * one's acknowledgement: up to WINDOW_MSGS messages or WINDOW_BYTES are
 * encoded and not yet known stored, each keeping its bytes until it is, so
 * that nothing needs the source again after a failure.  Each message
 * expects the sequence and the id of the one before it, so the messages
 * stored are always a prefix of those sent, never one after another
 * publisher's message.
 *
 * Position and fencing.  The publisher keeps the stream's last sequence
 * known stored (last_seq, and c_* for which message of this history is
 * there) and where the stream ends once the window is stored (s_epoch,
 * s_part of s_parts, s_chain: the next epoch must follow it).  When
 * anything fails the publisher stops sending, waits for the answers in
 * flight, and does not guess: it re-reads the stream's last message
 * (resync) and matches it against the window (reconcile): one of its own
 * messages, or the one before them, and it goes on after it, sending the
 * rest again from the window; the stream gone back behind it, and it
 * publishes again from there; anything else, someone else appended, and the
 * publisher is fenced: it marks the region deposed and stops.  A refused
 * sequence (10071, 10070) or a duplicate is looked at at once.
 *
 * Invariant for PT_LEVEL_REPLICATED: pt_replicated_set(e) only after the
 * stream acknowledged the last part of epoch e and every message before it
 * in the window (or, on resume, after the stream's last message was read
 * back as epoch e's last part with this region's chain for e, or as a
 * message after it in the window; the chain covers every epoch before it).
 *
 * Failover (term.c, lease.c).  Whenever it reads the stream, the publisher
 * also reads the newest term marker: one of a newer term than its region's
 * (pt_replicated_get_term) means a standby took over: fenced.  With a lease
 * (opts.lease_ms), it publishes only while it holds the writer's lease, and
 * while it does not, it re-reads the stream at every run, so that a region
 * whose writer was replaced is deposed within a lease even if it makes no
 * new epoch.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "snapshot.h"
#include "status.h"
#include "lease.h"
#include "term.h"
#include "window.h"
#include "wire.h"

/* Room left in a message for NATS's own headers (message id, expectations;
 * about 150 bytes) and the HMAC a key adds (WIRE_MAC_SIZE). */
#define NATS_HEADER_ROOM 512

/* The window: messages encoded and not yet known stored. */
#define WINDOW_MSGS	64
#define WINDOW_BYTES	(16u << 20)

struct pt_publisher {
	struct pt_net_opts opts;
	char dir[PATH_MAX];
	char stream[STREAM_NAME_MAX + 1];
	struct net_conn conn;
	struct pt_replica *src;
	struct pt_replicated *rep;
	struct snap_pub *snap;		/* the snapshot in the cluster (snapshot.c) */
	uint64_t history;
	uint64_t npages;
	uint32_t page_size;
	size_t body_max;

	/* The stream (see the top of the file). */
	uint64_t last_seq;		/* its last sequence known stored */
	uint64_t c_epoch;		/* the message there, when of this history */
	uint32_t c_part, c_parts;
	uint64_t c_chain;
	uint64_t s_epoch;		/* where it ends once the window is stored; */
	uint32_t s_part, s_parts;	/* s_epoch 0: no message of this history */
	uint64_t s_chain, s_prev_chain;
	bool s_prev_known;		/* s_prev_chain read (not after a term marker) */
	bool resync;
	int fatal;			/* a kept error */

	/* Failover (term.c, lease.c): the term this region's writer is in
	 * (pt_replicated_get_term), and the writer's lease when asked for. */
	uint64_t term, holder;
	struct net_lease *lease;
	int step_err;			/* what the callback failed with */
	bool published;			/* the callback encoded its delta */
	int run_epochs;			/* epochs the current run saw stored */
	unsigned char *scratch;		/* a page: the XOR before compression */
	struct net_window win;		/* the messages not yet known stored */

	struct pt_publisher_stats st;
	struct net_status *status;	/* the record in dir (status.c) */
	struct wire_key key;		/* HMAC key, len 0: none */
};

/* Fenced: the region is told (PT_LEVEL_REPLICATED waits get -EOWNERDEAD). */
static int fenced(struct pt_publisher *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fenced(struct pt_publisher *p, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pt_replicated_depose(p->rep);
	lease_stop(p->lease);		/* it lapses: a deposed writer does not hold it */
	p->fatal = net_fail(-EOWNERDEAD, "stream %s: %s: this publisher is fenced; region %s "
			    "marked deposed", p->stream, buf, p->dir);
	return p->fatal;
}

/* The source's epoch, as the stream's are kept (never negative). */
static uint64_t src_epoch(const struct pt_publisher *p)
{
	return (uint64_t)pt_replica_epoch(p->src);
}

/*
 * The stream's newest term marker against this region's term (term.c): a
 * newer term, or this term won by another holder, fences this publisher
 * (the region is the old writer's); a marker of this region's own term that
 * comes after the last epoch message is where it goes on (a half-published
 * epoch of the old term before it does not count).  epochs_seq: the
 * sequence of the last epoch message (0: none; UINT64_MAX: only check, do
 * not move).  0, -EAGAIN or fatal.
 */
static int check_term(struct pt_publisher *p, uint64_t epochs_seq)
{
	struct term_marker m;
	const struct wire_term *t = &m.h.term;
	int ret = term_last(&p->conn, p->stream, &p->key, &m);

	if (ret < 0)
		return ret == -EAGAIN ? ret : (p->fatal = ret);
	if (ret == 1 && (m.h.history_id != p->history || m.h.npages != p->npages ||
			 m.h.page_size != p->page_size))
		return p->fatal = net_fail(-ESTALE, "stream %s: the term marker at sequence %llu is "
					   "of history %016llx (%llu pages of %u bytes), the region "
					   "in %s is %016llx", p->stream, (unsigned long long)m.seq,
					   (unsigned long long)m.h.history_id,
					   (unsigned long long)m.h.npages, m.h.page_size, p->dir,
					   (unsigned long long)p->history);
	if (ret == 1 && (t->term > p->term || (t->term == p->term && t->holder != p->holder)))
		return fenced(p, "the stream entered term %llu at sequence %llu (a standby on %s "
			      "was promoted after epoch %llu), this region's writer is in term "
			      "%llu", (unsigned long long)t->term, (unsigned long long)m.seq,
			      t->host, (unsigned long long)m.h.epoch, (unsigned long long)p->term);
	if ((ret == 0 && p->term) || (ret == 1 && t->term < p->term))
		return p->fatal = net_fail(-EINPROGRESS, "%s was promoted to term %llu, but stream "
					   "%s holds no marker of that term: the promotion did not "
					   "complete (promote it again)", p->dir,
					   (unsigned long long)p->term, p->stream);
	if (ret == 1 && m.seq > epochs_seq) {
		p->s_epoch = m.h.epoch;
		p->s_part = 0;
		p->s_parts = 1;
		p->s_chain = m.h.chain;
		p->s_prev_known = false;
	}
	return 0;
}

/* A message stored, out of the window: the stream's position moves. */
static void stored(const struct net_msg *m, void *arg)
{
	struct pt_publisher *p = arg;

	p->last_seq = m->seq;
	p->c_epoch = m->epoch;
	p->c_part = m->part;
	p->c_parts = m->parts;
	p->c_chain = m->chain;
	p->st.messages++;
	p->st.bytes_wire += m->len;
	p->st.stream_seq = p->last_seq;
	if (m->part + 1 == m->parts) {
		p->st.epoch = (pt_epoch_t)m->epoch;
		p->st.epochs++;
		p->st.pages += m->page_count;
		p->st.bytes_raw += (uint64_t)m->page_count * m->page_size;
		p->run_epochs++;
	}
}

/*
 * After a resync, with every answer in: the stream's last message against
 * the window.  One of the window's messages: it and those before it are
 * stored; the one before them: none is; then the rest is sent again.  The
 * stream behind that (recreated, purged): the window is dropped and the
 * source starts again (resync).  Anything else was appended by someone
 * else: fenced.  0 or the fence.
 */
static int reconcile(struct pt_publisher *p)
{
	struct net_window *w = &p->win;
	ptrdiff_t j = window_find(w, p->s_epoch, p->s_part, p->s_parts, p->s_chain);

	if (j >= 0) {
		window_stored_upto(w, (size_t)j, p->last_seq, stored, p);
	} else if (w->head < w->tail && (p->s_epoch != p->c_epoch || p->s_part != p->c_part ||
					 p->s_parts != p->c_parts || p->s_chain != p->c_chain)) {
		if (p->s_epoch > p->c_epoch || (p->s_epoch == p->c_epoch && p->s_part >= p->c_part))
			return fenced(p, "%s%sthe stream now ends at sequence %llu with epoch %llu "
				      "part %u, which this publisher did not send: another "
				      "publisher appended", w->failure, w->failure[0] ? "; " : "",
				      (unsigned long long)p->last_seq,
				      (unsigned long long)p->s_epoch, p->s_part);
		net_log(PT_LOG_WARN, "stream %s ends at epoch %llu part %u, behind the epoch %llu "
			"part %u it acknowledged: publishing again from there", p->stream,
			(unsigned long long)p->s_epoch, p->s_part, (unsigned long long)p->c_epoch,
			p->c_part);
		window_clear(w, p->last_seq);
	}
	if (w->head == w->tail) {
		p->c_epoch = p->s_epoch;
		p->c_part = p->s_part;
		p->c_parts = p->s_parts;
		p->c_chain = p->s_chain;
		window_clear(w, p->last_seq);
		return 0;
	}
	/* The rest goes again, after the stream's last message. */
	const struct net_msg *t = &w->msgs[w->tail - 1];

	p->s_epoch = t->epoch;
	p->s_part = t->part;
	p->s_parts = t->parts;
	p->s_chain = t->chain;
	p->s_prev_chain = t->prev_chain;
	p->s_prev_known = true;
	window_resend(w, p->last_seq);
	return 0;
}

/*
 * Read the stream's last message: where this publisher goes on.  Returns
 * 0, -EAGAIN (the server did not answer), or a fatal error.
 */
static int resync(struct pt_publisher *p)
{
	jsStreamInfo *si = NULL;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	struct wire_header h;
	char why[256];
	uint64_t seq = 0;
	natsStatus s;
	int err;

	s = js_GetStreamInfo(&si, p->conn.js, p->stream, &p->conn.jsopts, &jerr);
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "stream %s: reading its state: %s", p->stream,
				net_status_text(s));
	p->last_seq = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	jerr = 0;
	s = js_GetLastMsg(&m, p->conn.js, p->stream, p->conn.subject, &p->conn.jsopts, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
		p->s_epoch = 0;
		p->s_part = p->s_parts = 0;
		p->s_chain = p->s_prev_chain = 0;
		p->s_prev_known = false;
		goto done;
	}
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "stream %s: reading its last message: %s", p->stream,
				net_status_text(s));
	seq = natsMsg_GetSequence(m);
	if (seq > p->last_seq)
		p->last_seq = seq;
	err = wire_check(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &h, why, sizeof(why));
	/* A stream whose messages carry MACs is not gone on with another key
	 * or without one; one without gets them from here on (a key added). */
	if (!err && h.version == WIRE_VERSION_MAC)
		err = wire_authenticate(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &h,
					&p->key, why, sizeof(why));
	natsMsg_Destroy(m);
	if (err)
		return p->fatal = net_fail(err, "stream %s: its last message (sequence %llu) is "
					   "not one this publisher can go on from: %s", p->stream,
					   (unsigned long long)seq, why);
	if (h.history_id != p->history)
		return p->fatal = net_fail(-ESTALE, "stream %s holds history %016llx (sequence "
					   "%llu), the region in %s is %016llx: use another stream",
					   p->stream, (unsigned long long)h.history_id,
					   (unsigned long long)seq, p->dir,
					   (unsigned long long)p->history);
	if (h.npages != p->npages || h.page_size != p->page_size)
		return p->fatal = net_fail(-ESTALE, "stream %s: sequence %llu is of a region of "
					   "%llu pages of %u bytes, this one has %llu of %u",
					   p->stream, (unsigned long long)seq,
					   (unsigned long long)h.npages, h.page_size,
					   (unsigned long long)p->npages, p->page_size);
	p->s_epoch = h.epoch;
	p->s_part = h.part;
	p->s_parts = h.parts;
	p->s_chain = h.chain;
	p->s_prev_chain = h.prev_chain;
	p->s_prev_known = true;
done:
	err = check_term(p, seq);
	if (!err)
		err = reconcile(p);
	if (err)
		return err;
	/* The stream went back behind this publisher's source (recreated,
	 * purged): start the source again from epoch 0 to republish. */
	if (src_epoch(p) > p->s_epoch ||
	    (src_epoch(p) == p->s_epoch && p->s_part + 1 < p->s_parts)) {
		struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };

		if (src_epoch(p) > p->s_epoch)
			net_log(PT_LOG_WARN, "stream %s ends at epoch %llu, behind this publisher's "
				"%llu: publishing again from there", p->stream,
				(unsigned long long)p->s_epoch,
				(unsigned long long)pt_replica_epoch(p->src));
		pt_replica_close(p->src);
		p->src = NULL;
		err = pt_replica_open(&p->src, p->dir, &ro);
		if (err)
			return p->fatal = net_fail(err, "reopening the source replica of %s: %s",
						   p->dir, pt_strerror(err));
	}
	p->resync = false;
	net_log(PT_LOG_INFO, "stream %s: last sequence %llu, epoch %llu part %u of %u", p->stream,
		(unsigned long long)p->last_seq, (unsigned long long)p->s_epoch, p->s_part,
		p->s_parts);
	return 0;
}

/*
 * Encode d's pages into new slots at the window's tail, one per part, split
 * greedily at body_max (the split is the same for the same epoch and max
 * payload: a half-published epoch is completed with the parts from start).
 * Each entry is encoded where the part goes; one that does not fit moves
 * to the next part; with a key, each message gets its HMAC.  0, -EPROTO
 * (another split than the stream's), -ENOMEM, or wire_seal()'s error.
 */
static int encode(struct pt_publisher *p, const struct pt_delta *d, const unsigned char *base,
		  uint32_t start)
{
	struct net_window *w = &p->win;
	size_t ps = d->page_size, from = w->tail, cur, next;
	uint64_t sent_ns = net_now_ns();
	uint32_t parts = 1;
	int err = -ENOMEM;

	if (window_push(w, &cur))
		return -ENOMEM;
	w->msgs[cur].len = WIRE_HEADER_SIZE;
	w->msgs[cur].first = 0;
	for (uint32_t i = 0; i < d->page_count; i++) {
		struct net_msg *m = &w->msgs[cur];
		enum wire_encoding enc;
		size_t n;

		if (window_reserve(m, m->len + WIRE_ENTRY_SIZE + ps))
			goto err;
		n = wire_encode_page(m->buf + m->len, d->pages[i], d->data + (size_t)i * ps,
				     base + d->pages[i] * ps, ps, p->scratch, &enc);
		if (m->len - WIRE_HEADER_SIZE + n > p->body_max) {
			/* The entry opens the next part. */
			if (window_push(w, &next) ||
			    window_reserve(&w->msgs[next], WIRE_HEADER_SIZE + WIRE_ENTRY_SIZE + ps))
				goto err;
			m = &w->msgs[cur];	/* the array may have moved */
			memcpy(w->msgs[next].buf + WIRE_HEADER_SIZE, m->buf + m->len, n);
			m->count = i - m->first;
			w->msgs[next].len = WIRE_HEADER_SIZE;
			w->msgs[next].first = i;
			cur = next;
			parts++;
		}
		w->msgs[cur].len += n;
		p->st.pages_unchanged += enc == WIRE_UNCHANGED;
		p->st.pages_raw += enc == WIRE_RAW;
	}
	w->msgs[cur].count = d->page_count - w->msgs[cur].first;
	if (start && parts != p->s_parts) {
		err = -EPROTO;
		goto err;
	}
	for (uint32_t part = 0; part < parts; part++) {
		struct net_msg *m = &w->msgs[from + part];
		struct wire_header h = {
			.version = p->key.len ? WIRE_VERSION_MAC : WIRE_VERSION,
			.flags = part + 1 == parts ? WIRE_FLAG_LAST : 0,
			.history_id = d->history_id, .epoch = (uint64_t)d->epoch,
			.prev_chain = d->prev_chain, .chain = d->chain,
			.payload_checksum = d->payload_checksum, .npages = p->npages,
			.page_size = d->page_size, .page_count = d->page_count, .part = part,
			.parts = parts, .first = m->first, .count = m->count,
			.body_length = m->len - WIRE_HEADER_SIZE, .sent_ns = sent_ns,
		};

		h.body_checksum = wire_checksum(m->buf + WIRE_HEADER_SIZE, h.body_length);
		wire_header_put(m->buf, &h);
		if (p->key.len) {
			/* The MAC after the body (NATS_HEADER_ROOM leaves it room:
			 * the split into parts does not depend on the key). */
			long n;

			if (window_reserve(m, m->len + WIRE_MAC_SIZE))
				goto err;
			n = wire_seal(m->buf, m->len, &p->key);
			if (n < 0) {
				err = (int)n;
				goto err;
			}
			m->len = (size_t)n;
		}
		m->epoch = (uint64_t)d->epoch;
		m->chain = d->chain;
		m->prev_chain = d->prev_chain;
		m->part = part;
		m->parts = parts;
		m->page_count = d->page_count;
		m->page_size = d->page_size;
	}
	/* A half-published epoch: the stream has parts 0 to start - 1. */
	if (start)
		window_cut(w, from, start);
	window_commit(w, from);
	p->s_epoch = (uint64_t)d->epoch;
	p->s_part = parts - 1;
	p->s_parts = parts;
	p->s_chain = d->chain;
	p->s_prev_chain = d->prev_chain;
	p->s_prev_known = true;
	return 0;
err:
	/* The epoch stays unapplied: encoded again next time. */
	window_cut(w, from, w->tail - from);
	return err;
}

/* d follows the snapshot this publisher wrote when its stream lacked the
 * epochs only the image held (jump): the stream skips to d's epoch. */
static bool after_snapshot(const struct pt_publisher *p, const struct pt_delta *d)
{
	uint64_t chain;

	return snap_pub_epoch(p->snap, &chain) + 1 == d->epoch && chain == d->prev_chain;
}

/* Not holding the lease: publish nothing (-EAGAIN), say who holds it. */
static int lease_wait(struct pt_publisher *p)
{
	struct lease_value v;

	if (lease_other(p->lease, &v))
		return net_fail(-EAGAIN, "stream %s: waiting for the writer's lease, held by term "
				"%llu (host %s, pid %d)", p->stream, (unsigned long long)v.term,
				v.host, (int)v.pid);
	return net_fail(-EAGAIN, "stream %s: waiting for the writer's lease (not renewed in "
			"time)", p->stream);
}

static int on_delta(const struct pt_delta *d, const void *base, void *arg)
{
	struct pt_publisher *p = arg;
	uint32_t start = 0;
	const uint64_t epoch = (uint64_t)d->epoch;	/* >= 1: the library's */
	int err;

	p->published = false;
	if (d->history_id != p->history)
		return p->step_err = p->fatal = net_fail(-ESTALE, "%s: the log now holds history "
							 "%016llx, not %016llx", p->dir,
							 (unsigned long long)d->history_id,
							 (unsigned long long)p->history);
	if (epoch < p->s_epoch) {
		/* Already in the stream.  Its chain is checked at s_epoch. */
		if (epoch + 1 == p->s_epoch && p->s_prev_known && d->chain != p->s_prev_chain)
			return p->step_err = fenced(p, "the stream's epoch %llu follows another "
						    "version of epoch %llu than this region's",
						    (unsigned long long)p->s_epoch,
						    (unsigned long long)d->epoch);
		return 0;
	}
	if (epoch == p->s_epoch) {
		if (d->chain != p->s_chain)
			return p->step_err = fenced(p, "the stream holds another version of epoch "
						    "%llu (chain %016llx, this region's %016llx)",
						    (unsigned long long)d->epoch,
						    (unsigned long long)p->s_chain,
						    (unsigned long long)d->chain);
		if (p->s_part + 1 == p->s_parts) {
			pt_replicated_set(p->rep, d->epoch);
			p->st.epoch = d->epoch;
			return 0;
		}
		start = p->s_part + 1;
	} else if (epoch != p->s_epoch + 1 && !after_snapshot(p, d)) {
		return p->step_err = p->fatal = net_fail(-ESTALE, "stream %s: the source is at "
							 "epoch %llu, the stream at %llu",
							 p->stream, (unsigned long long)d->epoch,
							 (unsigned long long)p->s_epoch);
	} else if (epoch == p->s_epoch + 1 && p->s_epoch && d->prev_chain != p->s_chain) {
		return p->step_err = fenced(p, "the stream's epoch %llu is another version than "
					    "the one this region's epoch %llu follows",
					    (unsigned long long)p->s_epoch,
					    (unsigned long long)d->epoch);
	}
	if (p->lease && !lease_held(p->lease))
		return p->step_err = lease_wait(p);
	err = encode(p, d, base, start);
	if (err == -EPROTO)
		return p->step_err = p->fatal = net_fail(-EPROTO, "stream %s: epoch %llu was "
							 "half published in %u parts, it now "
							 "splits differently (another max "
							 "payload?)", p->stream,
							 (unsigned long long)d->epoch, p->s_parts);
	if (err == -ENOMEM)
		return p->step_err = net_fail(err, "out of memory encoding epoch %llu",
					      (unsigned long long)d->epoch);
	if (err)
		return p->step_err = p->fatal = net_fail(err, "stream %s: computing the HMAC of "
							 "epoch %llu failed", p->stream,
							 (unsigned long long)d->epoch);
	p->published = true;
	return 0;
}


/*
 * Hold the writer's lease (lease.c): taken now if free, ours already (a
 * restarted publisher) or held by an older term than this region's, and
 * kept by a thread from then on.  Held by another: not an error, the
 * publisher waits for it (pt_publisher_run says -EAGAIN).
 */
static int take_lease(struct pt_publisher *p)
{
	struct lease_value mine = { .term = p->term, .holder = p->holder, .pid = getpid() };
	int err;

	term_host(mine.host);
	if (p->opts.advertise)	/* checked by net_opts_copy */
		snprintf(mine.advertise, sizeof(mine.advertise), "%s", p->opts.advertise);
	err = lease_open(&p->lease, &p->conn, p->stream, p->opts.lease_ms, p->opts.replicas, true);
	if (err)	/* the server was reached: its bucket did not answer */
		return err == -EAGAIN ? -ETIMEDOUT : err;
	err = lease_take(p->lease, &mine, p->term, false);
	if (err && err != -EBUSY && err != -EAGAIN)
		return err;
	if (err)
		net_log(PT_LOG_WARN, "%s", pt_net_last_error());
	return lease_keep(p->lease);
}

PT_EXPORT int pt_publisher_open(struct pt_publisher **out, const char *dir,
				const struct pt_net_opts *opts)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };
	struct pt_dir_status ds = { .sz = sizeof(ds) };
	struct pt_publisher *p;
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s;
	int err;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return net_fail(-ENOMEM, "out of memory");
	err = net_opts_copy(&p->opts, opts, PT_NET_PUBLISHER, &p->key);
	if (err)
		goto err;
	if (!dir || strlen(dir) >= sizeof(p->dir)) {
		err = net_fail(-EINVAL, "no directory, or a path too long");
		goto err;
	}
	strcpy(p->dir, dir);
	err = pt_dir_status(dir, &ds, NULL, NULL);
	if (err) {
		err = net_fail(err, "%s: %s", dir, pt_strerror(err));
		goto err;
	}
	p->history = ds.history_id;
	p->npages = ds.npages;
	p->page_size = ds.page_size;
	if (p->opts.stream)
		snprintf(p->stream, sizeof(p->stream), "%s", p->opts.stream);
	else
		snprintf(p->stream, sizeof(p->stream), "pagetrack-%016llx",
			 (unsigned long long)p->history);
	if (!net_stream_name_ok(p->stream) || (p->opts.stream && strlen(p->opts.stream) > STREAM_NAME_MAX)) {
		err = net_fail(-EINVAL, "bad stream name '%s': 1 to %d of A-Z a-z 0-9 _ -",
			       p->opts.stream, STREAM_NAME_MAX);
		goto err;
	}
	snprintf(p->st.stream, sizeof(p->st.stream), "%s", p->stream);
	err = pt_replica_open(&p->src, dir, &ro);
	if (err) {
		err = net_fail(err, "%s: opening the source replica: %s", dir, pt_strerror(err));
		goto err;
	}
	err = pt_replicated_open(&p->rep, dir);
	if (err) {
		err = net_fail(err, "%s: the replicated file: %s", dir, pt_strerror(err));
		goto err;
	}
	pt_replicated_get_term(p->rep, &p->term, &p->holder);
	p->st.term = p->term;
	p->scratch = malloc(p->page_size);
	err = net_connect(&p->conn, &p->opts, p->stream);
	if (err)
		goto err;
	if (p->conn.max_payload < (int64_t)(WIRE_HEADER_SIZE + NATS_HEADER_ROOM + WIRE_ENTRY_SIZE +
					    p->page_size)) {
		err = net_fail(-EMSGSIZE, "the server's max payload (%lld bytes) cannot hold a page",
			       (long long)p->conn.max_payload);
		goto err;
	}
	p->body_max = (size_t)p->conn.max_payload - WIRE_HEADER_SIZE - NATS_HEADER_ROOM;
	if (!p->scratch) {
		err = net_fail(-ENOMEM, "out of memory");
		goto err;
	}
	s = js_GetStreamInfo(&si, p->conn.js, p->stream, &p->conn.jsopts, &jerr);
	if (s != NATS_OK && jerr == JSStreamNotFoundErr) {
		char term_subj[128];
		const char *subjects[2] = { p->conn.subject, term_subj };
		jsStreamConfig cfg;

		term_subject(term_subj, sizeof(term_subj), p->stream);
		jsStreamConfig_Init(&cfg);
		cfg.Name = p->stream;
		cfg.Subjects = subjects;
		cfg.SubjectsLen = 2;
		cfg.Storage = js_FileStorage;
		cfg.Replicas = p->opts.replicas;
		cfg.MaxMsgs = p->opts.max_msgs ? p->opts.max_msgs : -1;
		cfg.MaxBytes = p->opts.max_bytes ? p->opts.max_bytes : -1;
		jerr = 0;
		s = js_AddStream(&si, p->conn.js, &cfg, &p->conn.jsopts, &jerr);
		if (s == NATS_OK)
			net_log(PT_LOG_INFO, "stream %s created (%u replicas)", p->stream,
				p->opts.replicas);
	}
	if (s != NATS_OK) {
		err = jerr == 10039 /* JetStream not enabled for account */ || s == NATS_NO_RESPONDERS
			? -ENOTSUP : net_errno(s);
		if (err == -EAGAIN)	/* reached, not answered in time */
			err = s == NATS_TIMEOUT ? -ETIMEDOUT : -ECONNREFUSED;
		err = net_fail(err, "stream %s: %s%s", p->stream, net_status_text(s),
			       s == NATS_NO_RESPONDERS ? " (is JetStream enabled on the server?)" : "");
		goto err;
	}
	jsStreamInfo_Destroy(si);
	err = snap_pub_open(&p->snap, &p->conn, &p->opts, &p->key, p->stream, p->history, p->npages,
			    p->page_size);
	if (err)
		goto err;
	p->st.history_id = p->history;
	err = resync(p);
	if (err == -EAGAIN)	/* the stream's state not read in time */
		err = -ETIMEDOUT;
	if (!err)
		err = net_status_open(&p->status, dir, PT_NET_PUBLISHER, p->stream);
	if (err)
		goto err;
	net_status_gather(p->status, &p->conn, p->opts.replicas);
	if (p->opts.lease_ms) {
		err = take_lease(p);
		if (err)
			goto err;
	}
	p->st.lease_held = p->lease ? lease_held(p->lease) : -1;
	p->st.caught_up_ns = net_now_ns();	/* the lag in time counts from here */
	net_status_publisher(p->status, p, 0, false);
	*out = p;
	return 0;
err:
	pt_publisher_close(p);
	return err;
}

/*
 * The source's next record is no longer in the log (a checkpoint dropped
 * it: a restarted publisher on a long-lived region starts at epoch 0).
 * Epochs the stream already holds need not be read again: jump to the
 * image's epoch J and step on from there, provided J <= s_epoch, so that
 * every epoch after J the stream lacks is still in the log.  The chain is
 * still checked where the steps reach the stream (on_delta): at s_epoch
 * when J < s_epoch, at the first epoch published when J == s_epoch (its
 * prev_chain must be the stream's).  A stream behind the image (it lacks
 * epochs that only the image holds now) gets the snapshot at J first, and
 * the next epoch published after its last one is J + 1: followers cross
 * the gap from the snapshot.  0: go on stepping; else an error (-EAGAIN:
 * the image kept changing under a checkpoint, or the snapshot could not be
 * written: try again).
 */
static int jump(struct pt_publisher *p)
{
	uint64_t from = pt_replica_epoch(p->src);
	int64_t j = pt_replica_jump(p->src);

	if (j == -EAGAIN)
		return net_fail(-EAGAIN, "%s: the image kept changing while the source read it",
				p->dir);
	if (j < 0)
		return p->fatal = net_fail((int)j, "%s: the log no longer holds epoch %llu, the "
					   "next to publish (a checkpoint dropped it), and the "
					   "image could not be read: %s", p->dir,
					   (unsigned long long)from + 1, pt_strerror((int)j));
	if ((uint64_t)j <= from)
		return p->fatal = net_fail(-ESTALE, "%s: the log no longer holds epoch %llu, the "
					   "next to publish, and the image is at epoch %lld", p->dir,
					   (unsigned long long)from + 1, (long long)j);
	if ((uint64_t)j > p->s_epoch ||
	    ((uint64_t)j == p->s_epoch && p->s_part + 1 < p->s_parts)) {
		int err = snap_pub_update(p->snap, p->src, &p->st);

		if (err)
			return err == -EAGAIN ? err : (p->fatal = err);
		/* Stored by the cluster: the skipped epochs' result is there. */
		pt_replicated_set(p->rep, j);
		net_log(PT_LOG_WARN, "%s: the log no longer holds epoch %llu, the next to publish "
			"(a checkpoint dropped it): the image is at epoch %lld, stream %s ends at "
			"epoch %llu%s; the snapshot is at epoch %lld now, and the stream goes on "
			"with epoch %lld", p->dir,
			(unsigned long long)p->s_epoch + (p->s_part + 1 >= p->s_parts), (long long)j,
			p->stream, (unsigned long long)p->s_epoch,
			p->s_part + 1 < p->s_parts ? " (half published)" : "", (long long)j,
			(long long)j + 1);
		return 0;
	}
	net_log(PT_LOG_INFO, "%s: the log starts after epoch %llu: the source jumped to the "
		"image's epoch %lld (stream %s is at %llu)", p->dir, (unsigned long long)from + 1,
		(long long)j, p->stream, (unsigned long long)p->s_epoch);
	return 0;
}

PT_EXPORT int pt_publisher_run(struct pt_publisher *p, int timeout_ms)
{
	uint64_t start = net_mono_ms();
	int stepped = 0, err;
	bool failed_before;

	if (timeout_ms < -1)
		return net_fail(-EINVAL, "timeout %d ms", timeout_ms);
	if (p->fatal) {
		net_status_publisher(p->status, p, p->fatal, false);
		return p->fatal;
	}
	/* The message ids of a new term are its own (window.c). */
	err = window_start(&p->win, p->conn.nc, p->conn.subject, p->history, p->term,
			   p->opts.request_timeout_ms, p->rep);
	if (err)
		goto out;
	failed_before = window_failed(&p->win);	/* until a resync succeeds */
	p->run_epochs = 0;
	if (p->lease && !lease_held(p->lease)) {
		/* Not the writer now: look for a newer term's marker (the
		 * region is deposed at once, not at its next publish). */
		err = resync(p);
		if (!err)
			err = lease_wait(p);
		goto fail;
	}
	if (p->resync) {
		err = resync(p);
		if (err)
			goto fail;
	}
	for (;;) {
		uint64_t elapsed = net_mono_ms() - start;
		/* Forever is waited a status interval at a time: the record
		 * stays fresh while nothing comes. */
		int wait = stepped ? 0 : timeout_ms < 0 ? NET_STATUS_INTERVAL_MS :
			elapsed >= (uint64_t)timeout_ms ? 0 : timeout_ms - (int)elapsed;
		int64_t e;

		/* Only the lease's holder publishes, what it encoded too. */
		if (p->lease && !lease_held(p->lease)) {
			err = lease_wait(p);
			goto fail;
		}
		window_send(&p->win);
		err = p->fatal ? p->fatal :
			window_room(&p->win, WINDOW_MSGS, WINDOW_BYTES, stored, p);
		if (err)
			goto fail;
		net_status_publisher(p->status, p, 0, false);	/* what is stored so far */
		p->step_err = 0;
		e = pt_replica_step(p->src, wait, on_delta, p);
		if (e == 0) {
			p->st.caught_up_ns = net_now_ns();
			if (timeout_ms < 0 && !stepped)
				continue;
			break;
		}
		if (e < 0) {
			if (p->step_err) {
				err = p->step_err;
			} else if (e == -ESTALE) {
				err = jump(p);
				if (!err)
					continue;
			} else {
				err = p->fatal = net_fail((int)e, "%s: reading epoch %llu: %s", p->dir,
							  (unsigned long long)pt_replica_epoch(p->src) + 1,
							  pt_strerror((int)e));
			}
			goto fail;
		}
		stepped += p->published;
		if (timeout_ms >= 0 && net_mono_ms() - start >= (uint64_t)timeout_ms && stepped)
			break;
	}
	/* Every answer in before returning: the count is of epochs stored. */
	if (p->lease && !lease_held(p->lease)) {
		err = lease_wait(p);
		goto fail;
	}
	window_send(&p->win);
	window_drain(&p->win, stored, p);
	if (p->fatal || window_failed(&p->win)) {
		err = p->fatal ? p->fatal : -EAGAIN;
		goto fail;
	}
	/* Every epoch the source stepped is in the stream: a snapshot there. */
	if (snap_pub_due(p->snap, &p->st, pt_replica_epoch(p->src))) {
		/* Only the stream's current writer writes its snapshot: one
		 * replaced by a promotion (without a lease, and nothing
		 * published since) learns it here, not after overwriting the
		 * new term's snapshot with an older epoch. */
		err = check_term(p, UINT64_MAX);
		if (!err)
			err = snap_pub_update(p->snap, p->src, &p->st);
		if (err)
			goto fail;
	}
	p->st.last_error = 0;
	net_status_publisher(p->status, p, p->run_epochs, false);
	p->st.lease_held = p->lease ? lease_held(p->lease) : -1;
	return p->run_epochs;
fail:
	window_drain(&p->win, stored, p);
	if (p->win.too_big && !p->fatal)
		err = p->fatal = net_fail(-EMSGSIZE, "stream %s: %s (a message over the server's "
					  "max payload)", p->stream, p->win.failure);
	if (!p->fatal && !failed_before && window_failed(&p->win)) {
		err = net_fail(-EAGAIN, "stream %s: %s", p->stream, p->win.failure);
		if (p->win.conflict) {
			/* A refused sequence or a duplicate: someone else may
			 * have appended.  Look now: fenced, or go on. */
			int later = resync(p);

			if (later && later != -EAGAIN)
				err = later;
		}
	}
out:
	p->st.lease_held = p->lease ? lease_held(p->lease) : -1;
	if (err == -EAGAIN) {
		p->resync = true;
		p->st.retries++;
	}
	p->st.last_error = err;
	net_status_publisher(p->status, p, err, false);
	return err;
}

PT_EXPORT int pt_publisher_stats(const struct pt_publisher *p, struct pt_publisher_stats *st)
{
	size_t n;

	if (!p || !st || st->sz < offsetof(struct pt_publisher_stats, history_id))
		return net_fail(-EINVAL, "stats: NULL or sz too small");
	n = st->sz < sizeof(*st) ? st->sz : sizeof(*st);
	memcpy((char *)st + sizeof(size_t), (const char *)&p->st + sizeof(size_t),
	       n - sizeof(size_t));
	return 0;
}

PT_EXPORT int pt_publisher_close(struct pt_publisher *p)
{
	if (!p)
		return 0;
	if (p->status)
		net_status_publisher(p->status, p, 0, true);
	net_status_close(p->status);
	lease_close(p->lease);
	/* Waits for the answers in flight, then closes the connection: no
	 * answer comes in after that, and the window's and the snapshot's
	 * publishing contexts are destroyed with no message on its way to
	 * their subscriptions. */
	window_close(&p->win, &p->conn);
	snap_pub_close(p->snap);
	net_disconnect(&p->conn);
	pt_replica_close(p->src);
	pt_replicated_close(p->rep);
	free(p->scratch);
	wire_key_clear(&p->key);
	free(p);
	return 0;
}
