/* SPDX-License-Identifier: MIT */
/*
 * promote.c - a standby takes over: the writer's lease (lease.c), the
 * epochs the stream holds, the new term recorded in the directory, and the
 * term marker that fences the old writer off (term.c).
 *
 * Why nothing acknowledged is lost.  The old writer's publisher reports an
 * epoch replicated (PT_LEVEL_REPLICATED) only once the stream stored its
 * last part.  The marker is appended with ExpectLastSeq = the stream's last
 * sequence L as read when the standby was found equal to the stream's last
 * whole epoch (term_tip reads only messages up to L): if JetStream stores
 * the marker, the stream held nothing after L, so every epoch it stored,
 * acknowledged or not, is at or before L and is the standby's.  If
 * something was appended after L, the marker is refused and the standby
 * applies it first.  A half-published epoch at the end is not the
 * standby's: it was never acknowledged, and followers drop it at the
 * marker.
 *
 * Why the old writer acknowledges nothing more.  Its publishes carry an
 * ExpectLastSeq below the marker's sequence: refused; its publisher
 * re-reads the stream, finds a marker of a newer term than its region's,
 * and deposes the region (publisher.c, check_term).  A restarted old
 * publisher finds the marker at open.
 *
 * The order of the steps: the lease first (two standbys watching one lease
 * do not both promote), the term recorded in the directory before the
 * marker exists (a publisher on the directory then knows its term whatever
 * happens next; a promotion that stopped between the two is refused by the
 * publisher as incomplete, -EINPROGRESS, and promoting again finishes it
 * with the next term).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "failover.h"
#include "lease.h"
#include "term.h"

#define PROMOTE_TIMEOUT_MS	30000

/* Copy a caller's struct of size sz into out (size n), refusing unknown
 * non-zero bytes past n. */
static int opts_copy(void *out, size_t n, const void *in, const char *what)
{
	size_t sz = in ? *(const size_t *)in : n;

	memset(out, 0, n);
	if (!in)
		return 0;
	if (sz < sizeof(size_t))
		return net_fail(-EINVAL, "%s: sz %zu is too small", what, sz);
	for (size_t i = n; i < sz; i++)
		if (((const unsigned char *)in)[i])
			return net_fail(-EINVAL, "%s: byte %zu is set, past the %zu bytes this "
					"library knows", what, i, n);
	memcpy(out, in, sz < n ? sz : n);
	return 0;
}

/* Fill a caller's result struct up to its sz. */
static void result_put(void *out, const void *full, size_t full_size)
{
	size_t sz = *(const size_t *)out, n = sz < full_size ? sz : full_size;

	if (n > sizeof(size_t))
		memcpy((char *)out + sizeof(size_t), (const char *)full + sizeof(size_t),
		       n - sizeof(size_t));
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* The follower's lease handle, opened on first use. */
static int lease_of(struct pt_follower *f, bool create, struct net_lease **out)
{
	struct net_lease **slot = follower_lease(f);
	const struct pt_net_opts *o = follower_opts(f);
	int err = 0;

	if (!*slot)
		err = lease_open(slot, follower_conn(f), follower_stream(f), o->lease_ms,
				 o->replicas, create);
	*out = *slot;
	return err;
}

/*
 * The lease l and the stream's newest term marker into *full: 1 held, 0
 * lapsed or held by a deposed writer, -errno.
 */
static int lease_info(struct net_lease *l, struct net_conn *c, const char *stream,
		      const struct wire_key *key, struct pt_lease_info *full)
{
	struct lease_value v;
	struct term_marker m;
	uint64_t rev = 0;
	int ret, marked;

	ret = lease_read(l, &v, &rev);
	if (ret < 0)
		return ret;
	marked = term_last(c, stream, key, &m);
	if (marked < 0)
		return marked;
	full->ttl_ms = lease_ttl_ms(l);
	full->stream_term = marked ? m.h.term.term : 0;
	if (ret == 1) {
		full->term = v.term;
		full->holder = v.holder;
		full->revision = rev;
		full->pid = v.pid;
		memcpy(full->host, v.host, sizeof(full->host));
		memcpy(full->advertise, v.advertise, sizeof(full->advertise));
		/* A holder of an older term than the stream's is a deposed
		 * writer that took the lapsed key again: no writer. */
		if (v.term < full->stream_term)
			ret = 0;
	}
	return ret;
}

PT_EXPORT int pt_follower_lease(struct pt_follower *f, struct pt_lease_info *info)
{
	struct pt_lease_info full = { .sz = sizeof(full) };
	struct net_lease *l;
	int ret;

	if (!f || !info || info->sz < offsetof(struct pt_lease_info, term))
		return net_fail(-EINVAL, "lease: NULL or sz too small");
	ret = lease_of(f, false, &l);
	if (ret)
		return ret;
	ret = lease_info(l, follower_conn(f), follower_stream(f), follower_key(f), &full);
	if (ret < 0)
		return ret;
	result_put(info, &full, sizeof(full));
	return ret;
}

PT_EXPORT int pt_net_lease_read(const struct pt_net_opts *opts, struct pt_lease_info *info)
{
	struct pt_lease_info full = { .sz = sizeof(full) };
	struct pt_net_opts o;
	struct wire_key *key;
	struct net_conn c;
	struct net_lease *l = NULL;
	int ret;

	if (!opts || !info || info->sz < offsetof(struct pt_lease_info, term))
		return net_fail(-EINVAL, "lease: NULL or sz too small");
	key = calloc(1, sizeof(*key));
	if (!key)
		return net_fail(-ENOMEM, "out of memory");
	ret = net_opts_copy(&o, opts, PT_NET_FOLLOWER, key);
	if (ret)
		goto out;
	if (!o.stream || !net_stream_name_ok(o.stream)) {
		ret = net_fail(-EINVAL, "reading a lease needs a stream name: 1 to %d of A-Z a-z "
			       "0-9 _ -", STREAM_NAME_MAX);
		goto out;
	}
	ret = net_connect(&c, &o, o.stream);
	if (ret)
		goto out;
	ret = lease_open(&l, &c, o.stream, 0, 0, false);
	if (!ret)
		ret = lease_info(l, &c, o.stream, key, &full);
	if (ret >= 0)
		result_put(info, &full, sizeof(full));
	lease_close(l);
	net_disconnect(&c);
out:
	wire_key_clear(key);
	free(key);
	return ret;
}

/* The term after every one the stream, the lease and the directory know. */
static int next_term(struct pt_follower *f, struct net_lease *l, const struct term_tip *tip,
		     uint64_t *term)
{
	struct pt_replicated *rep = NULL;
	struct lease_value v;
	uint64_t rev, t = tip->marked ? tip->marker.h.term.term : 0, dir_term = 0;
	int ret;

	ret = lease_read(l, &v, &rev);
	if (ret < 0 && ret != -EBADMSG)
		return ret;
	if (ret == 1 && v.term > t)
		t = v.term;
	ret = pt_replicated_open(&rep, follower_dir(f));
	if (ret)
		return net_fail(ret, "%s: the replicated file: %s", follower_dir(f),
				pt_strerror(ret));
	pt_replicated_get_term(rep, &dir_term, NULL);
	pt_replicated_close(rep);
	*term = (dir_term > t ? dir_term : t) + 1;
	return 0;
}

/*
 * The standby against the stream's tip: another history, or epochs the
 * stream does not hold (ahead of it, or another version of its last
 * epoch), is no standby of this stream.  Returns 1 when it must catch up
 * first, 0 when it is at the tip, or -ESTALE.
 */
static int check_standby(struct pt_follower *f, const struct term_tip *tip, pt_epoch_t *at)
{
	uint64_t history, epoch, chain;
	bool region = follower_position(f, &history, &epoch, &chain);

	*at = (pt_epoch_t)epoch;
	if (history && history != tip->history_id)
		return net_fail(-ESTALE, "%s holds history %016llx, stream %s %016llx: not a "
				"standby of it", follower_dir(f), (unsigned long long)history,
				follower_stream(f), (unsigned long long)tip->history_id);
	if (!region || epoch < tip->epoch)
		return 1;
	if (epoch > tip->epoch || chain != tip->chain)
		return net_fail(-ESTALE, "%s is at epoch %llu (chain %016llx), stream %s ends at "
				"epoch %llu (chain %016llx): it holds epochs the stream does not, "
				"it is not a standby of this stream", follower_dir(f),
				(unsigned long long)epoch, (unsigned long long)chain,
				follower_stream(f), (unsigned long long)tip->epoch,
				(unsigned long long)tip->chain);
	return 0;
}

/* Step 3: the term in the directory, durable, once. */
static int record_term(struct pt_follower *f, uint64_t term, uint64_t holder)
{
	struct pt_replicated *rep = NULL;
	uint64_t cur = 0, cur_holder = 0;
	int err;

	err = pt_replicated_open(&rep, follower_dir(f));
	if (!err) {
		pt_replicated_get_term(rep, &cur, &cur_holder);
		if (cur != term || cur_holder != holder)
			err = pt_replicated_set_term(rep, term, holder);
		pt_replicated_close(rep);
	}
	if (err)
		return net_fail(err, "%s: recording term %llu: %s", follower_dir(f),
				(unsigned long long)term, pt_strerror(err));
	return 0;
}

/* The steps; *took once the lease was taken for the new term. */
static int promote(struct pt_follower *f, const struct pt_promote_opts *po,
		   struct pt_promote_info *res, bool *took)
{
	struct net_conn *c;
	struct net_lease *l = NULL;
	struct lease_value mine = { .pid = getpid() };
	const char *advertise = follower_opts(f)->advertise;
	struct term_tip tip;
	const char *stream, *dir;
	uint64_t start = net_mono_ms(), deadline, marker_seq = 0;
	char waiting[256] = "";		/* why the standby could not catch up yet */
	bool recorded = false;
	int err;

	deadline = start + (po->timeout_ms ? po->timeout_ms : PROMOTE_TIMEOUT_MS);
	c = follower_conn(f);
	stream = follower_stream(f);
	dir = follower_dir(f);
	/* -EALREADY, or a kept error: said again. */
	err = follower_error(f);
	if (err)
		return pt_follower_run(f, 0);

	/* The stream takes term markers, and holds something to take over. */
	while ((err = term_stream_prepare(c, stream)) == -EAGAIN && net_mono_ms() < deadline)
		sleep_ms(50);
	while (!err && (err = term_tip(c, stream, follower_key(f), &tip)) == -EAGAIN && net_mono_ms() < deadline)
		sleep_ms(50);
	if (err)
		return err;
	net_log(PT_LOG_INFO, "stream %s: its tip read (epoch %llu, sequence %llu) after %llu ms",
		stream, (unsigned long long)tip.epoch, (unsigned long long)tip.last_seq,
		(unsigned long long)(net_mono_ms() - start));
	if (!tip.epoch)
		return net_fail(-ENODATA, "stream %s holds no epoch: there is nothing to take over",
				stream);
	err = check_standby(f, &tip, &res->epoch);
	if (err < 0)
		return err;

	/* 1. The lease, for a new term. */
	err = lease_of(f, true, &l);
	if (!err)
		err = next_term(f, l, &tip, &mine.term);
	if (err)
		return err;
	mine.holder = term_random_id();
	term_host(mine.host);
	if (advertise)	/* checked by net_opts_copy */
		snprintf(mine.advertise, sizeof(mine.advertise), "%s", advertise);
	err = lease_take(l, &mine, tip.marked ? tip.marker.h.term.term : 0,
			 po->flags & PT_PROMOTE_FORCE);
	if (!err)
		*took = true;
	if (err == -EBUSY)
		return net_fail(-EBUSY, "%s%s", pt_net_last_error(),
				po->flags & PT_PROMOTE_FORCE ? "" : ": a writer holds it (force to "
				"take it over)");
	if (!err)
		err = lease_keep(l);
	if (err)
		return err;
	net_log(PT_LOG_INFO, "stream %s: the lease taken for term %llu (holder %016llx) after "
		"%llu ms", stream, (unsigned long long)mine.term, (unsigned long long)mine.holder,
		(unsigned long long)(net_mono_ms() - start));

	/* 2-4. Catch up, record, mark; again while the stream moves. */
	for (;;) {
		if (net_mono_ms() >= deadline)
			return net_fail(-ETIMEDOUT, "stream %s: %s not caught up within %u ms (at "
					"epoch %llu, the stream at %llu): %s", stream, dir,
					po->timeout_ms ? po->timeout_ms : PROMOTE_TIMEOUT_MS,
					(unsigned long long)res->epoch, (unsigned long long)tip.epoch,
					waiting[0] ? waiting : "the old writer may still be "
					"publishing");
		if (!lease_held(l))
			return net_fail(-EBUSY, "stream %s: the lease for term %llu was lost while "
					"promoting %s", stream, (unsigned long long)mine.term, dir);
		err = term_tip(c, stream, follower_key(f), &tip);
		if (err == -EAGAIN) {
			sleep_ms(50);
			continue;
		}
		if (err)
			return err;
		if (tip.marked && tip.marker.h.term.term == mine.term &&
		    tip.marker.h.term.holder == mine.holder) {
			marker_seq = tip.marker.seq;	/* stored, its answer lost */
			break;
		}
		if (tip.marked && tip.marker.h.term.term >= mine.term)
			return net_fail(-EBUSY, "stream %s: term %llu was taken by holder %016llx "
					"on %s meanwhile", stream,
					(unsigned long long)tip.marker.h.term.term,
					(unsigned long long)tip.marker.h.term.holder,
					tip.marker.h.term.host);
		err = check_standby(f, &tip, &res->epoch);
		if (err < 0)
			return err;
		if (err) {
			err = pt_follower_run(f, 200);
			if (err < 0 && err != -EAGAIN)
				return err;
			/* Waiting for a snapshot past a gap, or the network. */
			if (err == -EAGAIN)
				snprintf(waiting, sizeof(waiting), "%s", pt_net_last_error());
			if (err > 0)
				res->applied += (uint64_t)err;
			continue;
		}
		if (!recorded) {
			err = record_term(f, mine.term, mine.holder);
			if (err)
				return err;
			recorded = true;
			net_log(PT_LOG_INFO, "%s: caught up at epoch %lld, term %llu recorded after "
				"%llu ms", dir, (long long)res->epoch, (unsigned long long)mine.term,
				(unsigned long long)(net_mono_ms() - start));
		}
		{
			struct wire_header h = {
				.history_id = tip.history_id, .epoch = tip.epoch,
				.chain = tip.chain, .npages = tip.npages,
				.page_size = tip.page_size, .sent_ns = net_now_ns(),
				.term = { .term = mine.term, .holder = mine.holder,
					  .after_seq = tip.last_seq },
			};

			memcpy(h.term.host, mine.host, sizeof(h.term.host));
			/* The promotion's wait (promote_wait), not a publish's:
			 * an answer lost is found by the next term_tip. */
			err = term_publish(c, stream, &h, follower_key(f),
					   (unsigned int)c->jsopts.Wait, &marker_seq);
		}
		if (!err)
			break;
		/* -EBUSY: appended meanwhile; -EAGAIN: look whether it landed. */
		net_log(PT_LOG_INFO, "%s", pt_net_last_error());
	}
	net_log(PT_LOG_INFO, "stream %s: the term marker at sequence %llu after %llu ms", stream,
		(unsigned long long)marker_seq, (unsigned long long)(net_mono_ms() - start));
	err = follower_release(f, "promoted: this follower follows no more");
	if (err)
		return net_fail(err, "%s: closing the standby region: %s", dir, pt_strerror(err));
	net_log(PT_LOG_INFO, "stream %s: %s promoted to term %llu after epoch %lld (marker at "
		"sequence %llu), the standby region closed after %llu ms", stream, dir,
		(unsigned long long)mine.term, (long long)res->epoch,
		(unsigned long long)marker_seq, (unsigned long long)(net_mono_ms() - start));
	res->term = mine.term;
	res->holder = mine.holder;
	res->stream_seq = marker_seq;
	res->elapsed_ms = net_mono_ms() - start;
	return 0;
}

/*
 * How long each of the promotion's requests waits: half a lease, at least
 * 250 ms, never more than the connection's wait.  A cluster that lost the
 * writer's node with it answers nothing while it elects leaders (nats-server
 * waits 4 to 9 s before a Raft group campaigns): a request sent then is
 * never answered, and asking again soon after the election beats sitting
 * out the connection's whole wait (5 s by default).  Every step retries
 * until the promotion's deadline.
 */
static int64_t promote_wait(unsigned int lease_ms, int64_t conn_wait)
{
	int64_t w = lease_ms / 2 < 250 ? 250 : lease_ms / 2;

	return conn_wait > 0 && conn_wait < w ? conn_wait : w;
}

PT_EXPORT int pt_follower_promote(struct pt_follower *f, const struct pt_promote_opts *opts,
				  struct pt_promote_info *info)
{
	struct pt_promote_info res = { .sz = sizeof(res) };
	struct pt_promote_opts po;
	struct net_conn *c;
	int64_t saved_wait;
	bool took = false;
	int err;

	if (!f)
		return net_fail(-EINVAL, "promote: no follower");
	if (info && info->sz < offsetof(struct pt_promote_info, term))
		return net_fail(-EINVAL, "promote: info sz too small");
	err = opts_copy(&po, sizeof(po), opts, "promote options");
	if (err)
		return err;
	if (po.flags & ~PT_PROMOTE_FORCE)
		return net_fail(-EINVAL, "promote: unknown flags %#x", po.flags);
	c = follower_conn(f);
	saved_wait = c->jsopts.Wait;
	c->jsopts.Wait = promote_wait(follower_opts(f)->lease_ms, saved_wait);
	err = promote(f, &po, &res, &took);
	c->jsopts.Wait = saved_wait;
	if (err && took) {
		/* No marker of ours is in the stream (or it would have
		 * succeeded): let the other standbys have the lease now. */
		char msg[512];

		snprintf(msg, sizeof(msg), "%s", pt_net_last_error());
		lease_release(*follower_lease(f));
		net_fail(err, "%s", msg);
	}
	if (!err && info)
		result_put(info, &res, sizeof(res));
	return err;
}

PT_EXPORT int pt_dir_promote(const char *dir, const struct pt_net_opts *opts,
			     const struct pt_promote_opts *po, struct pt_promote_info *info)
{
	struct pt_follower *f;
	char msg[512];
	int err, cerr;

	err = pt_follower_open(&f, dir, opts);
	if (err)
		return err;
	err = pt_follower_promote(f, po, info);
	snprintf(msg, sizeof(msg), "%s", pt_net_last_error());
	cerr = pt_follower_close(f);
	if (!err && cerr)
		return net_fail(cerr, "%s: closing: %s", dir, pt_strerror(cerr));
	if (err)
		net_fail(err, "%s", msg);	/* the promotion's words, not the close's */
	return err;
}
