/* SPDX-License-Identifier: MIT */
/*
 * window.c - a publisher's messages in flight.
 *
 * Messages are published with js_PublishMsgAsync: the publisher does not
 * wait for each acknowledgement, which would cost a round trip per message.
 * Each carries ExpectLastSeq = the sequence of the message before it (the
 * stream's last sequence plus its rank among those sent; ExpectNoMessage on
 * an empty stream) and, except the first sent after window_resend(),
 * ExpectLastMsgId = the id of the message before it.  JetStream stores a
 * message only right after this publisher's previous one: once one is
 * refused, every later one is refused too, even if another publisher's
 * message took exactly the sequence it expected.  So the messages stored
 * are always a prefix of those sent, in order, and an acknowledgement at
 * the expected sequence proves every message before it stored.  (The
 * first after a resend has only the sequence: it was read back as the
 * stream's last message, and this publisher's.)
 *
 * The acknowledgements come on libnats's thread (on_ack): a message is
 * stored at the sequence it expected, or it failed (refused, timed out
 * after timeout_ms, a duplicate, another sequence).  On the first failure
 * nothing more is sent; the publisher waits for the answers in flight
 * (window_drain), reads the stream and says which messages are stored
 * (window_stored_upto) and sends the rest again (window_resend) or gives
 * up.  PT_LEVEL_REPLICATED for an epoch is reported in on_ack as soon as
 * its last part is stored with every message before it.
 *
 * Lock order: the window's lock, then libnats's own (js_PublishMsgAsync is
 * never called with the window's lock held; on_ack takes it inside a
 * libnats callback, where libnats holds none of its locks).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "window.h"

enum msg_state {
	MSG_QUEUED,		/* encoded, to send */
	MSG_SENT,		/* its answer awaited */
	MSG_STORED,		/* acknowledged at the sequence it expected */
	MSG_FAILED,		/* refused, timed out, or acknowledged otherwise */
};

static void message_id(const struct net_window *w, const struct net_msg *m, char *buf,
		       size_t len)
{
	/* The id names the content (its chain): JetStream drops a repeat of
	 * this very message, never another writer's version of the epoch;
	 * a new term's epoch is never the old one's duplicate (term.c). */
	if (w->term)
		snprintf(buf, len, "%016llx-t%llu-%llu-%u-%016llx", (unsigned long long)w->history,
			 (unsigned long long)w->term, (unsigned long long)m->epoch, m->part,
			 (unsigned long long)m->chain);
	else
		snprintf(buf, len, "%016llx-%llu-%u-%016llx", (unsigned long long)w->history,
			 (unsigned long long)m->epoch, m->part, (unsigned long long)m->chain);
}

/* Wait for an answer until deadline (net_mono_ms); lock held.  ETIMEDOUT or 0. */
static int wait_answer(struct net_window *w, uint64_t deadline)
{
	uint64_t now = net_mono_ms();
	struct timespec ts;

	if (now >= deadline)
		return ETIMEDOUT;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)((deadline - now) / 1000);
	ts.tv_nsec += (long)((deadline - now) % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_cond_timedwait(&w->cond, &w->lock, &ts) == ETIMEDOUT ? ETIMEDOUT : 0;
}

/* A message failed: nothing more is sent; the first failure is the one said. */
static void note_failure(struct net_window *w, const struct net_msg *m, bool conflict,
			 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void note_failure(struct net_window *w, const struct net_msg *m, bool conflict,
			 const char *fmt, ...)
{
	char what[200];
	va_list ap;

	w->conflict |= conflict;
	if (w->failed)
		return;
	w->failed = true;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(w->failure, sizeof(w->failure), "publishing epoch %llu part %u expecting last "
		 "sequence %llu: %s", (unsigned long long)m->epoch, m->part,
		 (unsigned long long)m->seq - 1, what);
}

/* Messages stored in order from acked on: PT_LEVEL_REPLICATED.  Lock held. */
static void advance(struct net_window *w)
{
	while (w->acked < w->sent && w->msgs[w->acked].state == MSG_STORED) {
		const struct net_msg *m = &w->msgs[w->acked++];

		if (m->part + 1 == m->parts)
			pt_replicated_set(w->rep, (pt_epoch_t)m->epoch);
	}
}

/* libnats's thread: the answer to a message of the window. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
	struct net_window *w = closure;

	(void)js;
	pthread_mutex_lock(&w->lock);
	for (size_t i = w->acked; i < w->sent; i++) {
		struct net_msg *m = &w->msgs[i];

		if (m->sent != msg || m->state != MSG_SENT)
			continue;
		m->sent = NULL;
		w->inflight--;
		m->state = pa && !pa->Duplicate && pa->Sequence == m->seq ? MSG_STORED : MSG_FAILED;
		if (pa && pa->Duplicate)
			note_failure(w, m, true, "already stored (sequence %llu)",
				     (unsigned long long)pa->Sequence);
		else if (pa && m->state == MSG_FAILED)
			note_failure(w, m, true, "acknowledged at sequence %llu",
				     (unsigned long long)pa->Sequence);
		else if (pae && pae->ErrCode)
			note_failure(w, m, pae->ErrCode == JSStreamWrongLastSequenceErr ||
				     pae->ErrCode == JSStreamWrongLastMsgIDErr,
				     "refused (JetStream error %d: %s)", (int)pae->ErrCode,
				     pae->ErrText ? pae->ErrText : "");
		else if (!pa)
			note_failure(w, m, false, "%s", pae && pae->ErrText ? pae->ErrText :
				     natsStatus_GetText(pae ? pae->Err : NATS_ERR));
		break;
	}
	advance(w);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->lock);
	natsMsg_Destroy(msg);
}

/* The stored messages at the head, to fn and out of the window.  Lock held. */
static void retire(struct net_window *w, window_stored_fn fn, void *arg)
{
	while (w->head < w->acked) {
		const struct net_msg *m = &w->msgs[w->head++];

		w->bytes -= m->len;
		fn(m, arg);
	}
	if (w->head == w->tail)
		w->head = w->acked = w->sent = w->tail = 0;
}

static void reverse(struct net_msg *a, size_t n)
{
	for (size_t i = 0; i < n / 2; i++) {
		struct net_msg t = a[i];

		a[i] = a[n - 1 - i];
		a[n - 1 - i] = t;
	}
}

/* Rotate msgs[from, to) left by n: the messages keep their buffers. */
static void rotate(struct net_msg *a, size_t from, size_t to, size_t n)
{
	reverse(a + from, n);
	reverse(a + from + n, to - from - n);
	reverse(a + from, to - from);
}

int window_start(struct net_window *w, natsConnection *nc, const char *subject,
		 uint64_t history, uint64_t term, unsigned int timeout_ms,
		 struct pt_replicated *rep)
{
	pthread_condattr_t ca;
	jsOptions o;
	natsStatus s;

	if (w->ready)
		return 0;
	snprintf(w->subject, sizeof(w->subject), "%s", subject);
	w->history = history;
	w->term = term;
	w->timeout_ms = timeout_ms;
	w->rep = rep;
	jsOptions_Init(&o);
	o.Wait = timeout_ms;
	o.PublishAsync.AckHandler = on_ack;
	o.PublishAsync.AckHandlerClosure = w;
	s = natsConnection_JetStream(&w->js, nc, &o);
	if (s != NATS_OK) {
		w->js = NULL;
		return net_fail(s == NATS_NO_MEMORY ? -ENOMEM : -EAGAIN, "a JetStream context for "
				"%s: %s", subject, net_status_text(s));
	}
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->ready = true;
	return 0;
}

static void ignore(const struct net_msg *m, void *arg)
{
	(void)m;
	(void)arg;
}

void window_close(struct net_window *w, struct net_conn *c)
{
	if (w->ready) {
		jsPubOptions po;

		window_drain(w, ignore, NULL);
		/* An answer taken back in window_drain() may still be in
		 * on_ack: libnats counts it pending until on_ack returns. */
		jsPubOptions_Init(&po);
		po.MaxWait = 1000;
		js_PublishAsyncComplete(w->js, &po);
	}
	net_close(c);
	if (w->ready) {
		jsCtx_Destroy(w->js);
		pthread_mutex_destroy(&w->lock);
		pthread_cond_destroy(&w->cond);
	}
	for (size_t i = 0; i < w->cap; i++)
		free(w->msgs[i].buf);
	free(w->msgs);
	memset(w, 0, sizeof(*w));
}

int window_reserve(struct net_msg *m, size_t need)
{
	size_t cap = m->cap ? m->cap : 4096;
	unsigned char *b;

	if (need <= m->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	b = realloc(m->buf, cap);
	if (!b)
		return -ENOMEM;
	m->buf = b;
	m->cap = cap;
	return 0;
}

int window_push(struct net_window *w, size_t *at)
{
	struct net_msg *m;

	if (w->tail == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		struct net_msg *a;

		/* on_ack reads the array. */
		pthread_mutex_lock(&w->lock);
		a = realloc(w->msgs, cap * sizeof(*a));
		if (a) {
			memset(a + w->cap, 0, (cap - w->cap) * sizeof(*a));
			w->msgs = a;
			w->cap = cap;
		}
		pthread_mutex_unlock(&w->lock);
		if (!a)
			return -ENOMEM;
	}
	m = &w->msgs[w->tail];
	if (window_reserve(m, 4096))
		return -ENOMEM;
	m->len = 0;
	m->sent = NULL;
	m->state = MSG_QUEUED;
	*at = w->tail++;
	return 0;
}

void window_cut(struct net_window *w, size_t from, size_t n)
{
	/* Behind the tail, with their buffers, for later use. */
	rotate(w->msgs, from, w->tail, n);
	w->tail -= n;
}

void window_commit(struct net_window *w, size_t from)
{
	for (size_t i = from; i < w->tail; i++)
		w->bytes += w->msgs[i].len;
}

void window_send(struct net_window *w)
{
	while (w->sent < w->tail) {
		struct net_msg *m = &w->msgs[w->sent];
		natsMsg *nm = NULL, *sent;
		char id[96];
		jsPubOptions po;
		natsStatus st;

		message_id(w, m, id, sizeof(id));
		st = natsMsg_Create(&nm, w->subject, NULL, (const char *)m->buf, (int)m->len);
		jsPubOptions_Init(&po);
		po.MsgId = id;
		po.MaxWait = w->timeout_ms;
		if (w->send_seq)
			po.ExpectLastSeq = w->send_seq;
		else
			po.ExpectNoMessage = true;
		if (w->prev_id[0])
			po.ExpectLastMsgId = w->prev_id;
		pthread_mutex_lock(&w->lock);
		if (w->failed || st != NATS_OK) {
			if (st != NATS_OK)
				note_failure(w, m, false, "%s", net_status_text(st));
			pthread_mutex_unlock(&w->lock);
			natsMsg_Destroy(nm);
			return;
		}
		m->seq = w->send_seq + 1;
		m->sent = sent = nm;
		m->state = MSG_SENT;
		w->sent++;
		w->inflight++;
		pthread_mutex_unlock(&w->lock);
		st = js_PublishMsgAsync(w->js, &nm, &po);
		if (st != NATS_OK) {
			/* Not sent: libnats gave it back (nm); on_ack never sees it. */
			pthread_mutex_lock(&w->lock);
			if (m->sent == sent && m->state == MSG_SENT) {
				m->sent = NULL;
				m->state = MSG_FAILED;
				w->inflight--;
				w->too_big |= st == NATS_MAX_PAYLOAD;
				note_failure(w, m, false, "%s", net_status_text(st));
			}
			pthread_mutex_unlock(&w->lock);
			natsMsg_Destroy(nm);
			return;
		}
		w->send_seq++;
		snprintf(w->prev_id, sizeof(w->prev_id), "%s", id);
	}
}

int window_room(struct net_window *w, size_t limit_msgs, size_t limit_bytes,
		window_stored_fn fn, void *arg)
{
	uint64_t deadline = net_mono_ms() + w->timeout_ms + 1000;
	int err = 0;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		retire(w, fn, arg);
		if (w->head >= limit_msgs) {
			/* The live messages to the front: the array stays
			 * about as long as the window. */
			size_t n = w->head;

			rotate(w->msgs, 0, w->tail, n);
			w->head = 0;
			w->acked -= n;
			w->sent -= n;
			w->tail -= n;
		}
		if (w->failed) {
			err = -EAGAIN;
			break;
		}
		if (w->tail - w->head < limit_msgs && w->bytes < limit_bytes)
			break;
		if (wait_answer(w, deadline)) {
			/* Full, so messages are in flight: the oldest is late. */
			note_failure(w, &w->msgs[w->acked], false, "no answer in %u ms",
				     w->timeout_ms + 1000);
			err = -EAGAIN;
			break;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

/* Those still in flight are given up: failed, and on_ack never sees them. */
static void give_up(struct net_window *w, natsMsg *only)
{
	for (size_t i = w->acked; i < w->sent; i++) {
		struct net_msg *m = &w->msgs[i];

		if (m->state != MSG_SENT || (only && m->sent != only))
			continue;
		m->sent = NULL;
		m->state = MSG_FAILED;
		w->inflight--;
		note_failure(w, m, false, "no answer in %u ms", w->timeout_ms);
	}
}

void window_drain(struct net_window *w, window_stored_fn fn, void *arg)
{
	uint64_t deadline = net_mono_ms() + w->timeout_ms + 1000;
	natsMsgList taken = { 0 };

	if (!w->ready)
		return;
	pthread_mutex_lock(&w->lock);
	while (w->inflight && !wait_answer(w, deadline))
		;
	if (w->inflight) {
		/* libnats times an answer out after timeout_ms: one still
		 * missing a second later is lost.  Take them back. */
		pthread_mutex_unlock(&w->lock);
		if (js_PublishAsyncGetPendingList(&taken, w->js) != NATS_OK)
			taken.Count = 0;
		pthread_mutex_lock(&w->lock);
		for (int k = 0; k < taken.Count; k++)
			give_up(w, taken.Msgs[k]);
		/* One on_ack was handling as they were taken comes at once. */
		deadline = net_mono_ms() + 1000;
		while (w->inflight && !wait_answer(w, deadline))
			;
		give_up(w, NULL);
	}
	retire(w, fn, arg);
	pthread_mutex_unlock(&w->lock);
	if (taken.Count)
		natsMsgList_Destroy(&taken);
}

bool window_failed(struct net_window *w)
{
	bool failed;

	if (!w->ready)
		return false;
	pthread_mutex_lock(&w->lock);
	failed = w->failed;
	pthread_mutex_unlock(&w->lock);
	return failed;
}

ptrdiff_t window_find(const struct net_window *w, uint64_t epoch, uint32_t part, uint32_t parts,
		      uint64_t chain)
{
	for (size_t j = w->tail; j-- > w->head;) {
		const struct net_msg *m = &w->msgs[j];

		if (m->epoch == epoch && m->part == part && m->parts == parts && m->chain == chain)
			return (ptrdiff_t)j;
	}
	return -1;
}

void window_stored_upto(struct net_window *w, size_t j, uint64_t seq, window_stored_fn fn,
			void *arg)
{
	pthread_mutex_lock(&w->lock);
	/* Each expected the one before: all stored, at the sequences before seq. */
	for (size_t i = w->acked; i <= j; i++) {
		w->msgs[i].state = MSG_STORED;
		w->msgs[i].seq = seq - (j - i);
		if (i >= w->sent)
			w->sent = i + 1;
	}
	advance(w);
	retire(w, fn, arg);
	pthread_mutex_unlock(&w->lock);
}

void window_resend(struct net_window *w, uint64_t last_seq)
{
	if (w->ready)
		pthread_mutex_lock(&w->lock);
	for (size_t i = w->acked; i < w->tail; i++)
		w->msgs[i].state = MSG_QUEUED;
	w->sent = w->acked;
	w->send_seq = last_seq;
	w->prev_id[0] = 0;
	w->failed = false;
	w->conflict = false;
	w->too_big = false;
	w->failure[0] = 0;
	if (w->ready)
		pthread_mutex_unlock(&w->lock);
}

void window_clear(struct net_window *w, uint64_t last_seq)
{
	if (w->ready)
		pthread_mutex_lock(&w->lock);
	w->head = w->acked = w->sent = w->tail = 0;
	w->bytes = 0;
	if (w->ready)
		pthread_mutex_unlock(&w->lock);
	window_resend(w, last_seq);
}
