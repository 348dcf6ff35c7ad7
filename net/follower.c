/* SPDX-License-Identifier: MIT */
/*
 * follower.c - a standby region directory fed by a JetStream stream.
 *
 * The follower is the standby region's one writer: it writes the pages of
 * each epoch into the region's memory and calls pt_region_sync(), which
 * makes a record with the same pages, hence the same header checksum
 * ("chain") as the source's record when the bytes are the same.  The
 * record is computed from the decoded pages first (pt_delta_chain) and must
 * have the stream's chain before a byte is written, so a message forged
 * with valid checksums never reaches the standby; the standby's record is
 * compared again after the sync (the end-to-end check: anything but the
 * stream's chain is fatal).
 *
 * Nothing from the stream is trusted before it is checked whole
 * (wire_check, wire_decode), and an epoch is all or nothing: its parts are
 * decoded into a buffer (new content = the standby's page XOR the delta;
 * the standby's memory is the content before the epoch and is not touched
 * until the last part is checked).  A bad message stops the follower with
 * an error naming its stream sequence; the standby stays at its last good
 * epoch.
 *
 * Durability in batches.  The standby runs PT_DURABLE_NONE: pt_region_sync()
 * returns once the epoch is queued, and the follower asks the log thread
 * for the fdatasync itself (pt_region_wait PT_LEVEL_DURABLE with no wait:
 * one fdatasync covers every epoch queued before it), and goes on applying
 * while it runs: at once when no further message is waiting (a paced
 * writer's epochs are each durable as soon as they can be), and while
 * messages keep coming (a catch-up, a fast writer) every BATCH_EPOCHS
 * epochs, BATCH_BYTES of pages or BATCH_MS.  It looks whether they are
 * durable each PROBE_MS without a message, and waits for it only before
 * pt_follower_run() returns, whatever it returns: every epoch a run reports
 * (its count, stats.epoch) is durable.  Past its timeout a run finishes the
 * batch it already received, so that short runs wait once a batch, not
 * once an epoch.  The standby's record of an epoch is whole or absent
 * (checksummed, recovery stops before a torn one), so a follower killed
 * between two syncs reopens at an epoch at or after the last one reported,
 * never inside one, and goes on from there.  The end-to-end check (the
 * standby's record has the stream's chain) is made at each wait: a
 * record's chain covers every record before it.
 *
 * Position.  The standby's epoch E is the position; the stream sequence
 * of E+1's first part is found by a binary search over js_GetMsg (epochs
 * never decrease along a well-formed stream; every answer is checked when
 * the message arrives anyway).  Messages come from an ordered consumer
 * (libnats re-creates it at the right sequence after a gap or a lost
 * connection); after any other consumer error the follower subscribes
 * again after the last applied epoch, dropping a half-received one.
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
#include "failover.h"
#include "lease.h"
#include "term.h"
#include "wire.h"

/* While messages keep coming, ask for an fdatasync after this many epochs,
 * bytes of pages, or milliseconds since the oldest epoch not yet asked for. */
#define BATCH_EPOCHS	256
#define BATCH_BYTES	(16u << 20)
#define BATCH_MS	20
/* With epochs not yet durable, wait this long for a message before looking
 * whether their fdatasync (asked for already) is done. */
#define PROBE_MS	1

struct pt_follower {
	struct pt_net_opts opts;
	char dir[PATH_MAX];
	char stream[STREAM_NAME_MAX + 1];
	struct net_conn conn;
	natsSubscription *sub;
	jsCtx *sub_js;			/* the subscriptions' context (SUB_WAIT_MS) */
	struct pt_region *standby;	/* NULL until the first epoch (a new directory) */
	uint64_t history;		/* 0: not known yet */
	uint64_t epoch, chain;		/* the standby's: the last epoch applied */
	uint64_t next_seq;		/* where epoch + 1 starts in the stream */
	uint64_t taken_seq;		/* the last sequence taken */
	int fatal;
	bool need_snapshot;		/* the stream lacks epoch + 1: see gap */
	struct snap_gap gap;
	uint64_t term;			/* the newest term marker's, 0: none seen */
	struct net_lease *lease;	/* the writer's lease, watched or held (promote.c) */

	/* Durability (see the top of the file). */
	uint64_t durable;		/* the standby's epochs up to here are durable */
	uint64_t undurable_seq;		/* the stream sequence that starts epoch durable + 1 */
	uint64_t sent_ns;		/* the publisher's clock for epoch `epoch` */
	uint32_t batch_epochs;		/* applied since the last fdatasync asked for */
	uint64_t batch_bytes;
	uint64_t batch_start_ms;

	/* The epoch being received. */
	bool assembling;
	struct wire_header first;	/* its part 0's header */
	uint64_t first_seq;
	uint32_t next_part;
	uint32_t got;			/* pages decoded so far */
	uint64_t *index;
	unsigned char *data;
	size_t cap;			/* pages index and data hold */
	unsigned char *zero;		/* a zero page: the content before epoch 1 */

	struct pt_follower_stats st;
	struct net_status *status;	/* the record in dir (status.c) */
	struct wire_key key;		/* HMAC key, len 0: none */
};

static int stop(struct pt_follower *f, int err, uint64_t seq, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int stop(struct pt_follower *f, int err, uint64_t seq, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	f->assembling = false;
	f->fatal = net_fail(err, "stream %s sequence %llu: %s; refused, nothing of it applied "
			    "(%s stays at epoch %llu)", f->stream, (unsigned long long)seq, buf,
			    f->dir, (unsigned long long)f->epoch);
	return f->fatal;
}

static const unsigned char *old_page(uint64_t index, void *arg)
{
	struct pt_follower *f = arg;

	if (!f->standby)
		return f->zero;
	return (const unsigned char *)pt_region_base(f->standby) + index * f->first.page_size;
}

/*
 * The record the standby would write for the received epoch, computed from
 * the decoded pages before anything is written: its chain and payload
 * checksum must be the ones the message claims (the source's record).  A
 * message whose checksums are right but whose pages are not the source's
 * (forged, or a publisher's bug) is refused here, so it never reaches the
 * standby's memory or log.  0 or fatal.
 */
static int check_chain(struct pt_follower *f, uint64_t seq)
{
	const struct wire_header *h = &f->first;
	struct pt_delta d = {
		.history_id = h->history_id, .epoch = h->epoch, .prev_chain = h->prev_chain,
		.page_size = h->page_size, .page_count = h->page_count, .pages = f->index,
		.data = f->data,
	};
	uint64_t payload_checksum, chain;
	int err;

	err = pt_delta_chain(&d, &payload_checksum, &chain);
	if (err)
		return stop(f, err == -EINVAL ? -EBADMSG : err, f->first_seq, "epoch %llu: its "
			    "record could not be computed: %s", (unsigned long long)h->epoch,
			    pt_strerror(err));
	if (chain != h->chain || payload_checksum != h->payload_checksum)
		return stop(f, -EBADMSG, f->first_seq, "epoch %llu (sequences %llu-%llu): its "
			    "pages make a record with chain %016llx and payload checksum "
			    "%016llx, the message claims %016llx and %016llx (not the source's "
			    "pages)", (unsigned long long)h->epoch,
			    (unsigned long long)f->first_seq, (unsigned long long)seq,
			    (unsigned long long)chain, (unsigned long long)payload_checksum,
			    (unsigned long long)h->chain, (unsigned long long)h->payload_checksum);
	return 0;
}

/*
 * Wait until every applied epoch is durable, then check that the standby's
 * newest record has the chain the stream gave for it (the end-to-end check;
 * it covers every record before it).  0 or fatal.
 */
static int make_durable(struct pt_follower *f)
{
	pt_epoch_t epoch;
	uint64_t chain;
	int err;

	if (!f->standby || f->durable == f->epoch)
		return 0;
	err = pt_region_wait(f->standby, (pt_epoch_t)f->epoch, PT_LEVEL_DURABLE, -1);
	if (err)
		return f->fatal = net_fail(err, "%s: making epochs %llu-%llu durable (stream %s "
					   "sequences %llu-%llu): %s", f->dir,
					   (unsigned long long)f->durable + 1,
					   (unsigned long long)f->epoch, f->stream,
					   (unsigned long long)f->undurable_seq,
					   (unsigned long long)f->next_seq - 1, pt_strerror(err));
	if (pt_region_chain(f->standby, &epoch, &chain) || (uint64_t)epoch != f->epoch ||
	    chain != f->chain)
		return f->fatal = net_fail(-ENOTRECOVERABLE, "stream %s sequences %llu-%llu: the "
					   "standby's epoch %lld has chain %016llx, the stream's "
					   "epoch %llu has chain %016llx: %s no longer matches the "
					   "source", f->stream, (unsigned long long)f->undurable_seq,
					   (unsigned long long)f->next_seq - 1, (long long)epoch,
					   (unsigned long long)chain, (unsigned long long)f->epoch,
					   (unsigned long long)f->chain, f->dir);
	f->durable = f->epoch;
	f->batch_epochs = 0;
	f->batch_bytes = 0;
	f->st.epoch = (pt_epoch_t)f->durable;
	f->st.syncs++;
	f->st.lag_ms = (int64_t)(net_now_ns() - f->sent_ns) / 1000000;
	return 0;
}

/*
 * An epoch was applied: ask the log thread for an fdatasync, without
 * waiting (it syncs while the next epochs are applied), unless more
 * messages are waiting and the batch is not full yet.  0 or fatal.
 */
static int after_apply(struct pt_follower *f, bool more)
{
	int err;

	if (more && f->batch_epochs < BATCH_EPOCHS && f->batch_bytes < BATCH_BYTES &&
	    net_mono_ms() - f->batch_start_ms < BATCH_MS)
		return 0;
	err = pt_region_wait(f->standby, (pt_epoch_t)f->epoch, PT_LEVEL_DURABLE, 0);
	if (err && err != -ETIMEDOUT)
		return f->fatal = net_fail(err, "%s: making epochs up to %llu durable (stream %s "
					   "sequence %llu): %s", f->dir,
					   (unsigned long long)f->epoch, f->stream,
					   (unsigned long long)f->next_seq - 1, pt_strerror(err));
	f->batch_epochs = 0;
	f->batch_bytes = 0;
	f->st.syncs++;
	return 0;
}

/* Write the received epoch into the standby and queue its record.  1 or fatal. */
static int apply(struct pt_follower *f, uint64_t seq)
{
	const struct wire_header *h = &f->first;
	size_t ps = h->page_size;
	pt_epoch_t epoch, e;
	uint64_t chain;
	unsigned char *base;
	int err;

	if (!f->standby) {
		struct pt_region_opts ro = net_standby_opts(&f->opts, h->history_id);

		err = pt_region_create(&f->standby, f->dir, h->npages * ps, &ro);
		if (err)
			return f->fatal = net_fail(err, "%s: creating the standby region: %s", f->dir,
						   pt_strerror(err));
		f->history = h->history_id;
		f->st.history_id = f->history;
		if (pt_region_chain(f->standby, &epoch, &chain) || epoch != 0 ||
		    chain != h->prev_chain)
			return stop(f, -EILSEQ, f->first_seq, "epoch 1 does not chain to a new "
				    "region of history %016llx", (unsigned long long)f->history);
	}
	base = pt_region_base(f->standby);
	for (uint32_t i = 0; i < f->got; i++)
		memcpy(base + f->index[i] * ps, f->data + (size_t)i * ps, ps);
	e = pt_region_sync(f->standby);
	if (e < 0)
		return f->fatal = net_fail((int)e, "%s: syncing epoch %llu (stream %s sequence "
					   "%llu): %s", f->dir, (unsigned long long)h->epoch,
					   f->stream, (unsigned long long)seq, pt_strerror((int)e));
	if ((uint64_t)e != h->epoch)
		return f->fatal = net_fail(-ENOTRECOVERABLE, "stream %s sequence %llu: the "
					   "standby made epoch %lld for the stream's epoch %llu: %s "
					   "no longer matches the source", f->stream,
					   (unsigned long long)seq, (long long)e,
					   (unsigned long long)h->epoch, f->dir);
	if (f->durable == f->epoch)
		f->undurable_seq = f->first_seq;
	if (!f->batch_epochs)
		f->batch_start_ms = net_mono_ms();
	f->batch_epochs++;
	f->batch_bytes += (uint64_t)f->got * ps;
	f->epoch = h->epoch;
	f->chain = h->chain;	/* check_chain() computed it from the pages */
	f->sent_ns = h->sent_ns;
	f->next_seq = seq + 1;
	f->assembling = false;
	f->st.epochs++;
	f->st.pages += f->got;
	f->st.bytes_raw += (uint64_t)f->got * ps;
	return 1;
}

/*
 * The stream goes on after the standby's epoch with a later epoch (or part
 * way into the next): its start was trimmed by the stream's limits, or the
 * publisher skipped epochs it wrote into the snapshot.  The next run
 * catches up from the snapshot (snapshot.c).  Returns -EAGAIN.
 */
static int found_gap(struct pt_follower *f, const struct wire_header *h, uint64_t seq)
{
	f->assembling = false;
	f->need_snapshot = true;
	f->gap = (struct snap_gap){ .epoch = h->epoch, .part = h->part,
				    .prev_chain = h->prev_chain, .npages = h->npages, .seq = seq };
	return net_fail(-EAGAIN, "stream %s sequence %llu: epoch %llu part %u after the standby's "
			"epoch %llu: catching up from the snapshot", f->stream,
			(unsigned long long)seq, (unsigned long long)h->epoch, h->part,
			(unsigned long long)f->epoch);
}

/*
 * A term marker (term.c): the new term goes on after the standby's epoch,
 * which must be the one the marker names, with its chain; the marker must
 * sit right after the sequence it was appended after (the fence).  A
 * half-received epoch of the old term is dropped: the new writer did not
 * take it.  0 or fatal.
 */
static int take_term(struct pt_follower *f, const struct wire_header *h, uint64_t seq)
{
	if (!f->standby || h->epoch != f->epoch || h->chain != f->chain ||
	    h->term.after_seq + 1 != seq || h->term.term <= f->term)
		return stop(f, -EILSEQ, seq, "term %llu marker (after sequence %llu) goes on from "
			    "epoch %llu chain %016llx; the standby is at epoch %llu chain %016llx, "
			    "in term %llu", (unsigned long long)h->term.term,
			    (unsigned long long)h->term.after_seq, (unsigned long long)h->epoch,
			    (unsigned long long)h->chain, (unsigned long long)f->epoch,
			    (unsigned long long)f->chain, (unsigned long long)f->term);
	if (f->assembling)
		net_log(PT_LOG_INFO, "stream %s: epoch %llu (from sequence %llu) was half published "
			"when term %llu began: dropped", f->stream,
			(unsigned long long)f->first.epoch, (unsigned long long)f->first_seq,
			(unsigned long long)h->term.term);
	f->assembling = false;
	f->term = h->term.term;
	f->next_seq = seq + 1;
	return 0;
}

/* One message: 1 an epoch applied, 0 taken, or a fatal error. */
static int take(struct pt_follower *f, const void *msg, size_t len, uint64_t seq, bool term_subject)
{
	struct wire_header h;
	char why[256];
	int err;

	f->st.messages++;
	f->st.bytes_wire += len;
	f->st.stream_seq = seq;
	err = wire_check(msg, len, &h, why, sizeof(why));
	if (!err)
		err = wire_authenticate(msg, len, &h, &f->key, why, sizeof(why));
	if (err)
		return stop(f, err, seq, "%s", why);
	if (!!(h.flags & WIRE_FLAG_TERM) != term_subject)
		return stop(f, -EBADMSG, seq, "%s on the %s subject", term_subject ? "an epoch "
			    "message" : "a term marker", term_subject ? "term" : "epochs");
	if (f->history && h.history_id != f->history)
		return stop(f, -ESTALE, seq, "history %016llx, the standby's is %016llx",
			    (unsigned long long)h.history_id, (unsigned long long)f->history);
	if (term_subject)
		return take_term(f, &h, seq);
	if (f->assembling && !h.part && h.epoch > f->first.epoch)
		return found_gap(f, &h, seq);	/* after an epoch left half published */
	if (!f->assembling) {
		if (h.epoch > f->epoch + 1 || (h.epoch == f->epoch + 1 && h.part))
			return found_gap(f, &h, seq);
		if (h.epoch != f->epoch + 1)
			return stop(f, -EILSEQ, seq, "epoch %llu part %u, expected epoch %llu part 0",
				    (unsigned long long)h.epoch, h.part,
				    (unsigned long long)f->epoch + 1);
		if (f->standby && h.prev_chain != f->chain)
			return stop(f, -EILSEQ, seq, "epoch %llu follows chain %016llx, the "
				    "standby's epoch %llu has %016llx", (unsigned long long)h.epoch,
				    (unsigned long long)h.prev_chain, (unsigned long long)f->epoch,
				    (unsigned long long)f->chain);
		if (h.page_size != (uint32_t)sysconf(_SC_PAGESIZE))
			return stop(f, -EXDEV, seq, "pages of %u bytes, this system's are %ld",
				    h.page_size, sysconf(_SC_PAGESIZE));
		if (f->standby && h.npages * h.page_size != pt_region_size(f->standby))
			return stop(f, -EBADMSG, seq, "a region of %llu pages, the standby has %zu",
				    (unsigned long long)h.npages,
				    pt_region_size(f->standby) / h.page_size);
		if (!h.page_count && h.epoch != 1)
			return stop(f, -EBADMSG, seq, "epoch %llu with no page",
				    (unsigned long long)h.epoch);
		if (h.page_count > f->cap) {
			size_t n = h.page_count;
			uint64_t *ix = realloc(f->index, n * sizeof(*ix));
			unsigned char *d;

			if (ix)
				f->index = ix;
			d = ix ? realloc(f->data, n * h.page_size) : NULL;
			if (!d)
				return f->fatal = net_fail(-ENOMEM, "out of memory for %zu pages", n);
			f->data = d;
			f->cap = n;
		}
		if (!f->zero && !(f->zero = calloc(1, h.page_size)))
			return f->fatal = net_fail(-ENOMEM, "out of memory");
		f->first = h;
		f->first_seq = seq;
		f->next_part = 0;
		f->got = 0;
		f->assembling = true;
	} else if (!wire_next_part(&f->first, f->next_part, f->got, &h)) {
		return stop(f, -EILSEQ, seq, "epoch %llu part %u of %u (pages from %u), expected "
			    "epoch %llu part %u of %u (pages from %u), same chain",
			    (unsigned long long)h.epoch, h.part, h.parts, h.first,
			    (unsigned long long)f->first.epoch, f->next_part, f->first.parts, f->got);
	}
	err = wire_decode(&h, (const unsigned char *)msg + WIRE_HEADER_SIZE,
			  f->got ? f->index[f->got - 1] : UINT64_MAX, f->index + f->got,
			  f->data + (size_t)f->got * h.page_size, old_page, f, why, sizeof(why));
	if (err)
		return stop(f, err, seq, "epoch %llu part %u: %s", (unsigned long long)h.epoch,
			    h.part, why);
	f->got += h.count;
	f->next_part++;
	if (h.part + 1 < h.parts)
		return 0;
	if (f->got != h.page_count)
		return stop(f, -EBADMSG, seq, "epoch %llu ends with %u of its %u pages",
			    (unsigned long long)h.epoch, f->got, h.page_count);
	err = check_chain(f, seq);
	if (err)
		return err;
	return apply(f, seq);
}

/*
 * A message by its subject: the epochs' or the term markers'.  Another
 * subject of the stream is another kind of message, not this follower's:
 * passed over (said at PT_LOG_INFO).
 */
static int take_subject(struct pt_follower *f, natsMsg *m, uint64_t seq)
{
	const char *subject = natsMsg_GetSubject(m);
	char term[128];

	term_subject(term, sizeof(term), f->stream);
	if (!strcmp(subject, f->conn.subject) || !strcmp(subject, term))
		return take(f, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), seq,
			    !strcmp(subject, term));
	net_log(PT_LOG_INFO, "stream %s sequence %llu: subject %s is not for followers, passed "
		"over", f->stream, (unsigned long long)seq, subject);
	return 0;
}

/*
 * Read message seq into *out: its epoch, part, prev_chain and region size;
 * epoch 0 when it is missing or does not check (the search steps past it).
 * Returns 0 or -EAGAIN.
 */
static int probe(struct pt_follower *f, uint64_t seq, struct wire_header *out)
{
	struct wire_header h;
	jsErrCode jerr = 0;
	natsMsg *m = NULL;
	char why[256];
	natsStatus s;

	memset(out, 0, sizeof(*out));
	s = js_GetMsg(&m, f->conn.js, f->stream, seq, &f->conn.jsopts, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return 0;
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "stream %s: reading sequence %llu: %s", f->stream,
				(unsigned long long)seq, net_status_text(s));
	if (!wire_check(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &h, why,
			sizeof(why)) && (h.history_id == f->history || !f->history)) {
		*out = h;
		/* A term marker stands for what comes after it: the next
		 * epoch, which follows the marker's chain.  Epochs stay in
		 * order along the stream (a half-published epoch before a
		 * marker has the same number), and a stream trimmed up to a
		 * marker is a gap a snapshot at the marker's epoch crosses. */
		if (h.flags & WIRE_FLAG_TERM) {
			out->epoch = h.epoch + 1;
			out->part = 0;
			out->prev_chain = h.chain;
		}
	}
	natsMsg_Destroy(m);
	return 0;
}

/* Find where epoch + 1 starts: f->next_seq.  0, -EAGAIN or fatal. */
static int locate(struct pt_follower *f)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	uint64_t lo, hi, first, last;
	natsStatus s;
	int err;

	s = js_GetStreamInfo(&si, f->conn.js, f->stream, &f->conn.jsopts, &jerr);
	if (s != NATS_OK) {
		if (jerr == JSStreamNotFoundErr)
			return f->fatal = net_fail(-ENOENT, "stream %s does not exist", f->stream);
		return net_fail(-EAGAIN, "stream %s: reading its state: %s", f->stream,
				net_status_text(s));
	}
	first = si->State.FirstSeq ? si->State.FirstSeq : 1;
	last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	if (last < first) {
		f->next_seq = last + 1;
		return 0;
	}
	/* The first sequence whose epoch is above the standby's. */
	lo = first;
	hi = f->epoch ? last + 1 : first;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2, seq = mid;
		struct wire_header h = { 0 };

		/* A missing or foreign message: look at the next ones. */
		for (; seq < hi && !h.epoch; seq++) {
			err = probe(f, seq, &h);
			if (err)
				return err;
		}
		if (!h.epoch)
			hi = mid;
		else if (h.epoch > f->epoch)
			hi = mid;
		else
			lo = seq;
	}
	f->next_seq = lo;
	if (lo <= last) {
		struct wire_header h = { 0 };

		err = probe(f, lo, &h);
		if (err)
			return err;
		if (h.epoch > f->epoch + 1 || (h.epoch == f->epoch + 1 && h.part)) {
			found_gap(f, &h, lo);
			net_log(PT_LOG_INFO, "%s", pt_net_last_error());
		}
	}
	return 0;
}

/*
 * The subscription's context waits at most this long for the server on its
 * own: unsubscribing deletes the ordered consumer (best effort: the server
 * drops an ephemeral consumer nobody listens to by itself), and a consumer
 * on a node just lost made that delete wait the connection's whole request
 * timeout, 5 s in the middle of a promotion.
 */
#define SUB_WAIT_MS	1000

/* Drop the subscription; with delete, its ordered consumer too.  Without
 * (no request that a consumer on a lost node would leave unanswered), the
 * subscription stays, unread, until the connection closes (net_sub_drop),
 * and the server drops the consumer once nobody listens. */
static void drop_subscription(struct pt_follower *f, bool delete)
{
	net_sub_drop(&f->conn, f->sub, delete);
	f->sub = NULL;
	f->assembling = false;
}

static void unsubscribe(struct pt_follower *f)
{
	drop_subscription(f, true);
}

static int subscribe(struct pt_follower *f)
{
	char subjects[128];
	jsSubOptions so;
	jsErrCode jerr = 0;
	natsStatus s;

	unsubscribe(f);
	if (!f->sub_js) {
		jsOptions jo = f->conn.jsopts;

		if (jo.Wait <= 0 || jo.Wait > SUB_WAIT_MS)
			jo.Wait = SUB_WAIT_MS;
		s = natsConnection_JetStream(&f->sub_js, f->conn.nc, &jo);
		if (s != NATS_OK) {
			f->sub_js = NULL;
			return net_fail(-EAGAIN, "stream %s: a JetStream context: %s", f->stream,
					net_status_text(s));
		}
	}
	term_all_subjects(subjects, sizeof(subjects), f->stream);
	jsSubOptions_Init(&so);
	so.Stream = f->stream;
	so.Ordered = true;
	so.Config.DeliverPolicy = js_DeliverByStartSequence;
	so.Config.OptStartSeq = f->next_seq;
	/* The consumer's creation waits the connection's request timeout. */
	s = js_SubscribeSync(&f->sub, f->sub_js, subjects, &f->conn.jsopts, &so, &jerr);
	if (s != NATS_OK) {
		f->sub = NULL;
		return net_fail(-EAGAIN, "stream %s: consuming from sequence %llu: %s", f->stream,
				(unsigned long long)f->next_seq, net_status_text(s));
	}
	return 0;
}

/*
 * Catch up from the snapshot over the gap the stream has (snapshot.c),
 * then find where the stream goes on.  0, -EAGAIN (no snapshot past the
 * gap yet: the publisher writes one; or the network), or fatal.
 */
static int from_snapshot(struct pt_follower *f)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	pt_epoch_t epoch = 0;
	natsStatus s;
	int err;

	unsubscribe(f);
	s = js_GetStreamInfo(&si, f->conn.js, f->stream, &f->conn.jsopts, &jerr);
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "stream %s: reading its state: %s", f->stream,
				net_status_text(s));
	f->gap.trimmed = f->gap.seq <= si->State.FirstSeq;
	jsStreamInfo_Destroy(si);
	/* With a key, every value of the snapshot is authenticated with it
	 * before it is used, as the stream's messages are. */
	err = snap_catch_up(&f->conn, &f->opts, &f->key, f->stream, f->dir, &f->standby, &f->gap,
			    &f->st);
	if (err) {
		if (err != -EAGAIN)
			f->fatal = err;
		return err;
	}
	pt_region_chain(f->standby, &epoch, &f->chain);
	f->epoch = (uint64_t)epoch;	/* >= 1: the snapshot's */
	f->durable = f->epoch;		/* pt_region_jump() made it durable */
	f->history = pt_region_history(f->standby);
	f->st.epoch = epoch;
	f->st.history_id = f->history;
	f->need_snapshot = false;
	err = locate(f);
	if (!err && f->need_snapshot)
		err = -EAGAIN;	/* the stream lacks the snapshot's next epoch: said by locate */
	return err;
}

PT_EXPORT int pt_follower_open(struct pt_follower **out, const char *dir,
			       const struct pt_net_opts *opts)
{
	struct pt_dir_status ds = { .sz = sizeof(ds) };
	struct pt_follower *f;
	int err;

	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return net_fail(-ENOMEM, "out of memory");
	err = net_opts_copy(&f->opts, opts, PT_NET_FOLLOWER, &f->key);
	if (err)
		goto err;
	if (!f->opts.stream || !net_stream_name_ok(f->opts.stream)) {
		err = net_fail(-EINVAL, "a follower needs a stream name: 1 to %d of A-Z a-z 0-9 _ -",
			       STREAM_NAME_MAX);
		goto err;
	}
	strcpy(f->stream, f->opts.stream);
	snprintf(f->st.stream, sizeof(f->st.stream), "%s", f->stream);
	if (!dir || strlen(dir) >= sizeof(f->dir)) {
		err = net_fail(-EINVAL, "no directory, or a path too long");
		goto err;
	}
	strcpy(f->dir, dir);
	err = pt_dir_status(dir, &ds, NULL, NULL);
	if (!err) {
		struct pt_region_opts ro = net_standby_opts(&f->opts, 0);
		pt_epoch_t epoch = 0;

		f->history = ds.history_id;
		err = pt_region_open(&f->standby, dir, &ro);
		if (err) {
			err = net_fail(err, "%s: opening the standby region: %s", dir,
				       pt_strerror(err));
			goto err;
		}
		pt_region_chain(f->standby, &epoch, &f->chain);
		f->epoch = (uint64_t)epoch;	/* >= 0: an epoch, not an error */
		f->durable = f->epoch;		/* recovery made what it found durable */
	} else if (err != -ENOENT && err != -EMEDIUMTYPE) {
		err = net_fail(err, "%s: %s", dir, pt_strerror(err));
		goto err;
	}
	f->st.history_id = f->history;
	f->st.epoch = f->epoch;
	err = net_connect(&f->conn, &f->opts, f->stream);
	if (err)
		goto err;
	err = locate(f);
	if (err == -EAGAIN)
		err = -ECONNREFUSED;
	if (!err)
		err = net_status_open(&f->status, dir, PT_NET_FOLLOWER, f->stream);
	if (err)
		goto err;
	net_status_follower(f->status, f, &f->conn, 0, false);
	if (f->epoch && f->history)
		net_log(PT_LOG_INFO, "stream %s: %s at epoch %llu, going on at sequence %llu",
			f->stream, dir, (unsigned long long)f->epoch,
			(unsigned long long)f->next_seq);
	*out = f;
	return 0;
err:
	pt_follower_close(f);
	return err;
}

PT_EXPORT int pt_follower_run(struct pt_follower *f, int timeout_ms)
{
	uint64_t start = net_mono_ms();
	int count = 0, err;

	if (timeout_ms < -1)
		return net_fail(-EINVAL, "timeout %d ms", timeout_ms);
	if (f->fatal) {
		net_status_follower(f->status, f, &f->conn, f->fatal, false);
		return f->fatal;
	}
	if (f->need_snapshot) {
		err = from_snapshot(f);
		if (err)
			goto fail;
	}
	if (!f->sub) {
		err = subscribe(f);
		if (err)
			goto fail;
	}
	for (;;) {
		uint64_t elapsed = net_mono_ms() - start;
		/* Forever is waited a status interval at a time: the record
		 * stays fresh while nothing comes. */
		int64_t wait = timeout_ms < 0 ? (count ? 1 : NET_STATUS_INTERVAL_MS) :
			elapsed >= (uint64_t)timeout_ms ? 1 : timeout_ms - (int64_t)elapsed;
		jsMsgMetaData *meta = NULL;
		natsMsg *m = NULL;
		natsStatus s;
		uint64_t seq;

		net_status_follower(f->status, f, &f->conn, 0, false);
		if (f->durable != f->epoch && wait > PROBE_MS)
			wait = PROBE_MS;
		s = natsSubscription_NextMsg(&m, f->sub, wait);
		if (s == NATS_TIMEOUT && f->durable != f->epoch) {
			/* Quiet: are the epochs applied durable yet?  Messages
			 * are still taken while the fdatasync runs. */
			err = pt_region_wait(f->standby, (pt_epoch_t)f->epoch, PT_LEVEL_DURABLE, 0);
			if (err != -ETIMEDOUT) {
				err = make_durable(f);
				if (err)
					goto out;
			}
			continue;
		}
		if (s == NATS_TIMEOUT) {
			if (timeout_ms < 0 && !count)
				continue;
			break;
		}
		if (s != NATS_OK) {
			err = net_fail(-EAGAIN, "stream %s: receiving after sequence %llu: %s",
				       f->stream, (unsigned long long)f->next_seq - 1,
				       net_status_text(s));
			unsubscribe(f);
			goto fail;
		}
		if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
			natsMsg_Destroy(m);
			err = net_fail(-EAGAIN, "stream %s: a message without JetStream metadata",
				       f->stream);
			unsubscribe(f);
			goto fail;
		}
		seq = meta->Sequence.Stream;
		f->st.pending = meta->NumPending;
		jsMsgMetaData_Destroy(meta);
		if (seq < f->next_seq || (f->assembling && seq <= f->taken_seq)) {
			/* Already taken: delivered again (seen once right after
			 * a stream's leader was lost).  Sequences only grow. */
			net_log(PT_LOG_INFO, "stream %s: sequence %llu delivered again, skipped",
				f->stream, (unsigned long long)seq);
			natsMsg_Destroy(m);
			continue;
		}
		f->taken_seq = seq;
		err = take_subject(f, m, seq);
		natsMsg_Destroy(m);
		if (err < 0 && f->need_snapshot) {
			err = from_snapshot(f);
			if (!err && !f->sub)
				err = subscribe(f);
		}
		if (err < 0)
			goto fail;
		if (err > 0) {
			int queued = 0;

			natsSubscription_GetPending(f->sub, &queued, NULL);
			err = after_apply(f, f->st.pending > 0 || queued > 0);
			if (err)
				goto out;
			count++;
		}
		/* Past the timeout, a batch of epochs already received is
		 * finished first (at most BATCH_MS more): one fdatasync for it,
		 * not one a call.  A call that does not wait takes one epoch. */
		if (timeout_ms >= 0 && net_mono_ms() - start >= (uint64_t)timeout_ms &&
		    !f->assembling && (!f->batch_epochs || !timeout_ms))
			break;
	}
	err = make_durable(f);
	if (err)
		goto out;
	f->st.last_error = 0;
	net_status_follower(f->status, f, &f->conn, count, false);
	return count;
fail:
	/* The epochs applied before the failure are good: durable too.  A
	 * durability failure then counts more than a transient error, less
	 * than a refused message (said in the log). */
	if (f->durable != f->epoch) {
		char first[512];
		int later;

		snprintf(first, sizeof(first), "%s", pt_net_last_error());
		later = make_durable(f);
		if (later && err == -EAGAIN) {
			err = later;
		} else if (later) {
			net_log(PT_LOG_ERROR, "%s", pt_net_last_error());
			f->fatal = net_fail(err, "%s", first);
		}
	}
out:
	if (err == -EAGAIN)
		f->st.retries++;
	else
		unsubscribe(f);
	f->st.last_error = err;
	net_status_follower(f->status, f, &f->conn, err, false);
	return err;
}

PT_EXPORT int pt_follower_stats(const struct pt_follower *f, struct pt_follower_stats *st)
{
	size_t n;

	if (!f || !st || st->sz < offsetof(struct pt_follower_stats, history_id))
		return net_fail(-EINVAL, "stats: NULL or sz too small");
	n = st->sz < sizeof(*st) ? st->sz : sizeof(*st);
	memcpy((char *)st + sizeof(size_t), (const char *)&f->st + sizeof(size_t),
	       n - sizeof(size_t));
	return 0;
}

PT_EXPORT int pt_follower_close(struct pt_follower *f)
{
	int err = 0;

	if (!f)
		return 0;
	lease_close(f->lease);
	/*
	 * The ordered consumer is left to the server, which drops an
	 * ephemeral consumer nobody listens to, and the subscription goes
	 * with the connection just below.  Deleting it here had libnats 3.4.1
	 * (Debian 12) format its "not found" error with the consumer name of
	 * the subscription after an ordered reset on its own thread (after a
	 * reconnect, say) had freed that name: a use after free in
	 * jsSub_deleteConsumer() that net-status met once under ASan, closing
	 * a follower right after its server restarted.
	 */
	drop_subscription(f, false);
	if (f->sub_js)
		jsCtx_Destroy(f->sub_js);
	if (f->status)
		net_status_follower(f->status, f, &f->conn, 0, true);
	net_status_close(f->status);
	net_disconnect(&f->conn);
	if (f->standby)
		err = pt_region_close(f->standby);
	free(f->index);
	free(f->data);
	free(f->zero);
	wire_key_clear(&f->key);
	free(f);
	return err;
}

/* ---- for promote.c (failover.h) ---------------------------------- */

struct net_conn *follower_conn(struct pt_follower *f)
{
	return &f->conn;
}

const char *follower_stream(const struct pt_follower *f)
{
	return f->stream;
}

const char *follower_dir(const struct pt_follower *f)
{
	return f->dir;
}

const struct pt_net_opts *follower_opts(const struct pt_follower *f)
{
	return &f->opts;
}

struct net_lease **follower_lease(struct pt_follower *f)
{
	return &f->lease;
}

bool follower_position(const struct pt_follower *f, uint64_t *history, uint64_t *epoch,
		       uint64_t *chain)
{
	*history = f->history;
	*epoch = f->epoch;
	*chain = f->chain;
	return f->standby != NULL;
}

const struct wire_key *follower_key(const struct pt_follower *f)
{
	return &f->key;
}

int follower_error(const struct pt_follower *f)
{
	return f->fatal;
}

int follower_release(struct pt_follower *f, const char *why)
{
	int err = 0;

	/* In the middle of a promotion: the consumer is left to the server. */
	drop_subscription(f, false);
	if (f->standby)
		err = pt_region_close(f->standby);
	f->standby = NULL;
	f->fatal = net_fail(-EALREADY, "%s: %s", f->dir, why);
	f->st.last_error = f->fatal;
	return err;
}
