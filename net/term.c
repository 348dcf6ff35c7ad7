/* SPDX-License-Identifier: MIT */
/*
 * term.c - term markers in a stream: how a promoted standby closes the old
 * writer's term and opens its own (docs/network.md, "Failover").
 *
 * A term marker is a message on pagetrack.<stream>.term (wire version 2)
 * naming the new term, a holder id, and the last whole epoch and chain the
 * new term continues from.  It is appended with ExpectLastSeq = the last
 * sequence the promoted standby had applied: JetStream stores it only if
 * nothing was appended since, so
 *  - every message stored before it, in particular every epoch whose last
 *    part the old writer's publisher had acknowledged (PT_LEVEL_REPLICATED),
 *    was applied by the new writer before it took over: no acknowledged
 *    epoch is lost;
 *  - every publish of the old writer after it carries an ExpectLastSeq
 *    below the marker's sequence and is refused (JetStream error 10071):
 *    its publisher re-reads the stream, finds a marker of a newer term and
 *    deposes its region.
 * The newest marker is one request away (the last message on the term
 * subject): a publisher checks its region's term against it whenever it
 * re-reads the stream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "term.h"

void term_subject(char *buf, size_t len, const char *stream)
{
	snprintf(buf, len, "pagetrack.%s.term", stream);
}

void term_all_subjects(char *buf, size_t len, const char *stream)
{
	snprintf(buf, len, "pagetrack.%s.*", stream);
}

/* The last message on subject: 1 and *h, 0 none, -EAGAIN, or fatal. */
static int last_on(struct net_conn *c, const char *stream, const char *subject,
		   const struct wire_key *k, uint64_t *seq, struct wire_header *h)
{
	jsErrCode jerr = 0;
	natsMsg *m = NULL;
	char why[256];
	natsStatus s;
	int err;

	*seq = 0;
	s = js_GetLastMsg(&m, c->js, stream, subject, &c->jsopts, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return 0;
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "stream %s: reading the last message on %s: %s", stream,
				subject, net_status_text(s));
	*seq = natsMsg_GetSequence(m);
	err = wire_check(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), h, why, sizeof(why));
	if (!err)
		err = wire_authenticate(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), h, k,
					why, sizeof(why));
	natsMsg_Destroy(m);
	if (err)
		return net_fail(err, "stream %s: sequence %llu on %s: %s", stream,
				(unsigned long long)*seq, subject, why);
	return 1;
}

int term_last(struct net_conn *c, const char *stream, const struct wire_key *k,
	      struct term_marker *m)
{
	char subject[128];
	int ret;

	term_subject(subject, sizeof(subject), stream);
	ret = last_on(c, stream, subject, k, &m->seq, &m->h);
	if (ret == 1 && !(m->h.flags & WIRE_FLAG_TERM))
		return net_fail(-EBADMSG, "stream %s: sequence %llu on %s is not a term marker",
				stream, (unsigned long long)m->seq, subject);
	return ret;
}

int term_tip(struct net_conn *c, const char *stream, const struct wire_key *k,
	     struct term_tip *t)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		jsStreamInfo *si = NULL;
		jsErrCode jerr = 0;
		struct wire_header e;
		uint64_t e_seq;
		natsStatus s;
		int err;

		memset(t, 0, sizeof(*t));
		s = js_GetStreamInfo(&si, c->js, stream, &c->jsopts, &jerr);
		if (s != NATS_OK) {
			if (jerr == JSStreamNotFoundErr)
				return net_fail(-ENOENT, "stream %s does not exist", stream);
			return net_fail(-EAGAIN, "stream %s: reading its state: %s", stream,
					net_status_text(s));
		}
		t->last_seq = si->State.LastSeq;
		jsStreamInfo_Destroy(si);
		err = last_on(c, stream, c->subject, k, &e_seq, &e);
		if (err < 0)
			return err;
		if (e_seq && (e.flags & WIRE_FLAG_TERM))
			return net_fail(-EBADMSG, "stream %s: sequence %llu is a term marker on %s",
					stream, (unsigned long long)e_seq, c->subject);
		err = term_last(c, stream, k, &t->marker);
		if (err < 0)
			return err;
		t->marked = err == 1;
		if (e_seq > t->last_seq || t->marker.seq > t->last_seq)
			continue;	/* appended meanwhile: look again */
		if (t->marked && e_seq && t->marker.h.history_id != e.history_id)
			return net_fail(-EBADMSG, "stream %s: the term marker at sequence %llu is of "
					"history %016llx, the epochs of %016llx", stream,
					(unsigned long long)t->marker.seq,
					(unsigned long long)t->marker.h.history_id,
					(unsigned long long)e.history_id);
		if (t->marked && t->marker.seq > e_seq) {
			e = t->marker.h;
		} else if (!e_seq) {
			return 0;	/* no epoch */
		} else if (e.part + 1 < e.parts) {
			/* A half-published epoch: the one before is whole. */
			t->half = true;
			e.chain = e.prev_chain;
			e.epoch--;
		}
		t->history_id = e.history_id;
		t->npages = e.npages;
		t->page_size = e.page_size;
		t->epoch = e.epoch;
		t->chain = e.chain;
		return 0;
	}
	return net_fail(-EAGAIN, "stream %s kept growing while its last messages were read",
			stream);
}

int term_stream_prepare(struct net_conn *c, const char *stream)
{
	jsStreamInfo *si = NULL, *updated = NULL;
	jsStreamConfig cfg;
	const char **subjects = NULL;
	char subject[128];
	jsErrCode jerr = 0;
	natsStatus s;
	int n, err = 0;

	term_subject(subject, sizeof(subject), stream);
	s = js_GetStreamInfo(&si, c->js, stream, &c->jsopts, &jerr);
	if (s != NATS_OK) {
		if (jerr == JSStreamNotFoundErr)
			return net_fail(-ENOENT, "stream %s does not exist", stream);
		return net_fail(-EAGAIN, "stream %s: reading its configuration: %s", stream,
				net_status_text(s));
	}
	n = si->Config->SubjectsLen;
	for (int i = 0; i < n; i++)
		if (!strcmp(si->Config->Subjects[i], subject))
			goto out;
	subjects = calloc((size_t)n + 1, sizeof(*subjects));
	if (!subjects) {
		err = net_fail(-ENOMEM, "out of memory");
		goto out;
	}
	memcpy(subjects, si->Config->Subjects, (size_t)n * sizeof(*subjects));
	subjects[n] = subject;
	cfg = *si->Config;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = n + 1;
	jerr = 0;
	s = js_UpdateStream(&updated, c->js, &cfg, &c->jsopts, &jerr);
	if (s != NATS_OK)
		err = net_fail(-EAGAIN, "stream %s: adding the subject %s: %s%s%.0d", stream,
			       subject, net_status_text(s), jerr ? ", JetStream error " : "",
			       (int)jerr);
	else
		net_log(PT_LOG_INFO, "stream %s: now takes term markers on %s", stream, subject);
	jsStreamInfo_Destroy(updated);
out:
	free(subjects);
	jsStreamInfo_Destroy(si);
	return err;
}

int term_publish(struct net_conn *c, const char *stream, const struct wire_header *h,
		 const struct wire_key *k, uint64_t timeout_ms, uint64_t *seq)
{
	unsigned char msg[WIRE_HEADER_SIZE + WIRE_TERM_BODY + WIRE_MAC_SIZE];
	char subject[128], msg_id[128];
	jsPubAck *ack = NULL;
	jsErrCode jerr = 0;
	jsPubOptions po;
	natsStatus s;
	long len = wire_term_put(msg, h, k);

	if (len < 0)
		return net_fail((int)len, "the term marker's HMAC could not be computed");

	term_subject(subject, sizeof(subject), stream);
	/* A retry of the same marker (its acknowledgement lost) is dropped
	 * as a duplicate; another holder's marker of the same term is not. */
	snprintf(msg_id, sizeof(msg_id), "%016llx-term-%llu-%016llx",
		 (unsigned long long)h->history_id, (unsigned long long)h->term.term,
		 (unsigned long long)h->term.holder);
	jsPubOptions_Init(&po);
	po.MsgId = msg_id;
	po.MaxWait = (int64_t)timeout_ms;
	po.ExpectLastSeq = h->term.after_seq;
	s = js_Publish(&ack, c->js, subject, msg, (int)len, &po, &jerr);
	if (s == NATS_OK) {
		bool duplicate = ack->Duplicate;

		*seq = ack->Sequence;
		jsPubAck_Destroy(ack);
		if (duplicate)
			return net_fail(-EAGAIN, "stream %s: the term %llu marker was already stored",
					stream, (unsigned long long)h->term.term);
		return 0;
	}
	if (jerr == JSStreamWrongLastSequenceErr)
		return net_fail(-EBUSY, "stream %s: appending the term %llu marker after sequence "
				"%llu: the stream moved on (JetStream error 10071)", stream,
				(unsigned long long)h->term.term,
				(unsigned long long)h->term.after_seq);
	return net_fail(-EAGAIN, "stream %s: appending the term %llu marker: %s%s%.0d", stream,
			(unsigned long long)h->term.term, net_status_text(s),
			jerr ? ", JetStream error " : "", (int)jerr);
}

void term_host(char host[WIRE_HOST_MAX])
{
	char name[256] = "";

	memset(host, 0, WIRE_HOST_MAX);
	if (gethostname(name, sizeof(name) - 1))
		snprintf(name, sizeof(name), "unknown");
	for (size_t i = 0; i < WIRE_HOST_MAX - 1 && name[i]; i++)
		host[i] = name[i] > 0x20 && name[i] < 0x7f ? name[i] : '?';
}

uint64_t term_random_id(void)
{
	uint64_t id = 0;

	while (!id)
		if (getrandom(&id, sizeof(id), 0) != sizeof(id))
			id = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ net_now_ns();
	return id;
}
