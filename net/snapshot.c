/* SPDX-License-Identifier: MIT */
/*
 * snapshot.c - the region's snapshot in the cluster, both halves: the
 * publisher keeps it, a follower that fell past the stream's retention (or
 * a new one on a stream that no longer starts at epoch 1) catches up from
 * it, then goes on from the stream.
 *
 * The snapshot is a JetStream key-value bucket, "<stream>-snapshot", one
 * value per key: page.<index> (a page), table.<n> (the generation and
 * checksum of 8192 pages), manifest (the snapshot's epoch and the checksum
 * of each table).  The values' format and checks are in snapshot-format.c;
 * this file moves them to and from the bucket (docs/network.md, "Snapshot").
 *
 * Complete at S, or not at all.  The publisher puts the pages that changed,
 * then the tables that changed, then the manifest: a manifest names tables
 * whose every page value was already there.  A reader trusts the manifest's
 * checksum, the tables it names by checksum, and a page value only if its
 * generation and checksum are the table's (then its bytes are the page at
 * S: a page with generation g is the content epoch g wrote, which nothing
 * changed until S).  A page value newer than its table means the publisher
 * moved on while the reader read: the reader starts over from the new
 * manifest (a few times, then it says so and tries again later).  A table
 * not matching its manifest is read again briefly for the same reason, and
 * is refused if it stays so.
 *
 * The follower transfers only the pages whose generation is above its
 * standby's epoch E: every other page is the same at E and at S, by direct
 * gets pipelined on an inbox of their own (a round trip a window of them,
 * not a page), after checking the manifest's region size against the
 * standby's or the stream's before allocating anything for it.
 * pt_region_jump() then checks every page of the result, transferred or
 * kept, against the table's checksums before it changes anything, and
 * installs S with the source's chain, so the stream's S+1 follows it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot-format.h"
#include "snapshot.h"
#include "wire.h"

#define DEFAULT_INTERVAL_MS	10000
#define PUT_WINDOW		256		/* puts in flight, at most (about 1 MiB) */
#define RESTARTS		8		/* a reader starting over, at most */
#define PROGRESS_EVERY		64		/* pages between progress reports */
#define GET_WINDOW		256		/* gets in flight, at most */

static void bucket_name(char *buf, size_t len, const char *stream)
{
	snprintf(buf, len, "%s-snapshot", stream);
}

/* ---- the bucket ------------------------------------------------------------ */

static const unsigned char *value_of(natsMsg *m)
{
	return (const unsigned char *)natsMsg_GetData(m);
}

/*
 * Get key's value from the bucket's stream leader: 0 (*m set), -ENOENT
 * (none, or deleted), -EAGAIN (the server).  Not a direct get (kvStore_Get
 * on a bucket that allows them), which any replica answers: a lagging one
 * with an older value, and a lost node's keeps taking its share of them,
 * never answered, until the other nodes drop their routes to it (10 to
 * 20 s), which made a promoted standby's publisher wait a whole request
 * timeout on its first manifest read.
 */
static int kv_get(struct net_conn *c, const char *bucket, const char *key, natsMsg **m)
{
	char stream[96], subject[160];
	const char *op = NULL;
	jsErrCode jerr = 0;
	natsStatus s;

	snprintf(stream, sizeof(stream), "KV_%s", bucket);
	snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, key);
	s = js_GetLastMsg(m, c->js, stream, subject, &c->jsopts, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
		*m = NULL;
		return -ENOENT;
	}
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "bucket %s: reading %s: %s", bucket, key,
				net_status_text(s));
	if (natsMsgHeader_Get(*m, "KV-Operation", &op) == NATS_OK && op &&
	    (!strcmp(op, "DEL") || !strcmp(op, "PURGE"))) {
		natsMsg_Destroy(*m);
		*m = NULL;
		return -ENOENT;
	}
	return 0;
}

/*
 * Read and check the manifest with key k: 0, -ENOENT (none), -EAGAIN (the
 * server: the last error says), or a decoder's error with why.
 */
static int manifest_read(struct net_conn *c, const char *bucket, const struct wire_key *k,
			 struct snap_manifest *m, uint64_t *bytes, char *why, size_t why_len)
{
	natsMsg *e;
	int err = kv_get(c, bucket, "manifest", &e);

	memset(m, 0, sizeof(*m));
	if (err) {
		snprintf(why, why_len, "%s", err == -ENOENT ? "no manifest" : pt_net_last_error());
		return err;
	}
	*bytes += (uint64_t)natsMsg_GetDataLength(e);
	err = snap_manifest_decode(value_of(e), (size_t)natsMsg_GetDataLength(e), k, m, why,
				   why_len);
	natsMsg_Destroy(e);
	return err;
}

/*
 * Every table the manifest names into v, checked with key k: 0; 1 when
 * one is missing or not the one the manifest names (the publisher may be
 * between a table and its manifest); -EAGAIN (the server: the last error
 * says); or a decoder's error; with why.
 */
static int tables_read(struct net_conn *c, const char *bucket, const struct snap_manifest *m,
		       const struct wire_key *k, struct pt_page_version *v, uint64_t *bytes,
		       char *why, size_t why_len)
{
	for (uint32_t t = 0; t < m->tables; t++) {
		char key[32];
		natsMsg *e;
		int err;

		snprintf(key, sizeof(key), "table.%u", t);
		err = kv_get(c, bucket, key, &e);
		if (err == -ENOENT) {
			snprintf(why, why_len, "%s is missing", key);
			return 1;
		}
		if (err) {
			snprintf(why, why_len, "%s", pt_net_last_error());
			return err;
		}
		*bytes += (uint64_t)natsMsg_GetDataLength(e);
		err = snap_table_decode(value_of(e), (size_t)natsMsg_GetDataLength(e), m, t, k, v,
					why, why_len);
		natsMsg_Destroy(e);
		if (err)
			return err == -EAGAIN ? 1 : err;
	}
	return 0;
}

/* ---- publisher -------------------------------------------------------------- */

struct snap_pub {
	struct net_conn *c;
	kvStore *kv;
	char bucket[96];
	const struct wire_key *key;	/* the publisher's: len 0, values without MACs */
	struct snap_manifest m;		/* the region's: history, npages, page size, tables */
	unsigned int interval_ms;
	int64_t max_msgs, max_bytes;
	pt_epoch_t *gens;
	struct pt_page_version *cur;	/* the source now */
	struct pt_page_version *held;	/* what the bucket's tables say (generation -1:
					 * unknown, put it) */
	uint64_t *held_sum;		/* the bucket's tables' checksums (0: put it) */
	uint8_t *dirty;			/* tables to put */
	bool loaded;			/* held and held_sum describe the bucket */
	bool trusted;			/* held was written by this handle from the
					 * same source: a page whose generation did not
					 * change has the checksum held says */
	pt_epoch_t epoch;		/* of the manifest this handle wrote */
	uint64_t chain;
	uint64_t last_ms, last_messages, last_bytes;
	unsigned char *buf;		/* a value being encoded */
	unsigned char *zero, *scratch;
	/* Pages and tables are put without waiting for each answer: on a
	 * context of their own, whose failures put_failed() counts (on
	 * libnats's thread; read after js_PublishAsyncComplete). */
	jsCtx *async;
	unsigned int wait_ms;
	uint64_t in_flight;		/* puts of the batch */
	int failed;			/* atomic: puts the server refused */
	int failed_code;		/* the first's JetStream error, and its */
	char failed_text[160];		/* words: written by the first only, read
					 * after js_PublishAsyncComplete (which
					 * waits for the handler under libnats's
					 * lock) */
};

static void put_failed(jsCtx *js, jsPubAckErr *pae, void *closure)
{
	struct snap_pub *s = closure;

	(void)js;
	if (__atomic_fetch_add(&s->failed, 1, __ATOMIC_ACQ_REL) == 0) {
		s->failed_code = pae->ErrCode;
		snprintf(s->failed_text, sizeof(s->failed_text), "%s",
			 pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err));
	}
}

/*
 * Forget the puts still in flight after js_PublishAsyncComplete gave up
 * waiting (only then: with no put ever made, libnats 3.4 has no list to
 * give): their answers, should they come, are dropped.
 */
static void puts_drop(struct snap_pub *s)
{
	natsMsgList pending;

	if (js_PublishAsyncGetPendingList(&pending, s->async) == NATS_OK)
		natsMsgList_Destroy(&pending);
}

int snap_pub_open(struct snap_pub **out, struct net_conn *c, const struct pt_net_opts *o,
		  const struct wire_key *key, const char *stream, uint64_t history, uint64_t npages,
		  uint32_t page_size)
{
	struct snap_pub *s = calloc(1, sizeof(*s));
	natsStatus st;
	int err;

	*out = NULL;
	if (!s)
		return net_fail(-ENOMEM, "out of memory");
	s->c = c;
	s->key = key;
	bucket_name(s->bucket, sizeof(s->bucket), stream);
	s->m.history = history;
	s->m.npages = npages;
	s->m.page_size = page_size;
	s->m.tables = snap_tables(npages);
	s->interval_ms = o->snapshot_interval_ms ? o->snapshot_interval_ms : DEFAULT_INTERVAL_MS;
	s->max_msgs = o->max_msgs;
	s->max_bytes = o->max_bytes;
	s->last_ms = net_mono_ms();
	s->wait_ms = o->request_timeout_ms;
	s->gens = malloc(npages * sizeof(*s->gens));
	s->cur = malloc(npages * sizeof(*s->cur));
	s->held = malloc(npages * sizeof(*s->held));
	s->held_sum = calloc(s->m.tables, 8);
	s->m.table_sum = calloc(s->m.tables, 8);
	s->dirty = calloc(s->m.tables, 1);
	s->buf = malloc(snap_value_max(npages, page_size));
	s->zero = calloc(1, page_size);
	s->scratch = malloc(page_size);
	if (!s->gens || !s->cur || !s->held || !s->held_sum || !s->m.table_sum || !s->dirty ||
	    !s->buf || !s->zero || !s->scratch) {
		err = net_fail(-ENOMEM, "out of memory for the snapshot of %llu pages",
			       (unsigned long long)npages);
		goto err;
	}
	st = js_KeyValue(&s->kv, c->js, s->bucket);
	if (st == NATS_NOT_FOUND) {
		kvConfig cfg;

		kvConfig_Init(&cfg);
		cfg.Bucket = s->bucket;
		cfg.History = 1;
		cfg.StorageType = js_FileStorage;
		cfg.Replicas = (int)o->replicas;
		st = js_CreateKeyValue(&s->kv, c->js, &cfg);
		if (st == NATS_OK)
			net_log(PT_LOG_INFO, "bucket %s created for the snapshot", s->bucket);
	}
	if (st != NATS_OK) {
		err = net_fail(net_errno(st) != -EAGAIN ? net_errno(st) :
			       st == NATS_TIMEOUT ? -ETIMEDOUT : -ECONNREFUSED,
			       "bucket %s (the snapshot): %s", s->bucket, net_status_text(st));
		goto err;
	}
	{
		jsOptions jo;

		jsOptions_Init(&jo);
		jo.Wait = s->wait_ms;
		jo.PublishAsync.MaxPending = PUT_WINDOW;
		/* A full window waits for the server as a put would. */
		jo.PublishAsync.StallWait = s->wait_ms;
		jo.PublishAsync.ErrHandler = put_failed;
		jo.PublishAsync.ErrHandlerClosure = s;
		st = natsConnection_JetStream(&s->async, c->nc, &jo);
		if (st != NATS_OK) {
			err = net_fail(net_errno(st), "bucket %s: %s", s->bucket, net_status_text(st));
			goto err;
		}
	}
	*out = s;
	return 0;
err:
	snap_pub_close(s);
	return err;
}

void snap_pub_close(struct snap_pub *s)
{
	if (!s)
		return;
	/* Nothing in flight: every update waits for its puts (puts_wait). */
	if (s->async)
		jsCtx_Destroy(s->async);
	if (s->kv)
		kvStore_Destroy(s->kv);
	free(s->gens);
	free(s->cur);
	free(s->held);
	free(s->held_sum);
	free(s->m.table_sum);
	free(s->dirty);
	free(s->buf);
	free(s->zero);
	free(s->scratch);
	free(s);
}

pt_epoch_t snap_pub_epoch(const struct snap_pub *s, uint64_t *chain)
{
	*chain = s->chain;
	return s->epoch;
}

bool snap_pub_due(const struct snap_pub *s, const struct pt_publisher_stats *st,
		  pt_epoch_t source_epoch)
{
	if (source_epoch <= s->epoch)
		return false;
	if (s->max_msgs > 0 && st->messages - s->last_messages >= (uint64_t)s->max_msgs / 2)
		return true;
	if (s->max_bytes > 0 && st->bytes_wire - s->last_bytes >= (uint64_t)s->max_bytes / 2)
		return true;
	return net_mono_ms() - s->last_ms >= s->interval_ms;
}

/* What the bucket holds, so that an update puts only what differs. */
static void pub_load(struct snap_pub *s, struct pt_publisher_stats *st)
{
	struct snap_manifest m;
	char why[256];
	uint64_t bytes = 0;
	int err;

	for (uint64_t p = 0; p < s->m.npages; p++)
		s->held[p].generation = -1;
	memset(s->held_sum, 0, (size_t)s->m.tables * 8);
	err = manifest_read(s->c, s->bucket, s->key, &m, &bytes, why, sizeof(why));
	if (!err && m.history == s->m.history && m.npages == s->m.npages &&
	    m.page_size == s->m.page_size) {
		for (uint32_t t = 0; t < m.tables; t++) {
			/* One table at a time: a bad one is put again. */
			char key[32];
			natsMsg *e;

			snprintf(key, sizeof(key), "table.%u", t);
			if (kv_get(s->c, s->bucket, key, &e))
				continue;
			bytes += (uint64_t)natsMsg_GetDataLength(e);
			if (!snap_table_decode(value_of(e), (size_t)natsMsg_GetDataLength(e), &m, t,
					       s->key, s->held, why, sizeof(why)))
				s->held_sum[t] = m.table_sum[t];
			else
				for (uint64_t p = (uint64_t)t * SNAP_TABLE_PAGES;
				     p < (uint64_t)t * SNAP_TABLE_PAGES + snap_table_count(&m, t); p++)
					s->held[p].generation = -1;
			natsMsg_Destroy(e);
		}
		net_log(PT_LOG_INFO, "bucket %s holds a snapshot at epoch %llu: updating what "
			"differs", s->bucket, (unsigned long long)m.epoch);
	} else if (err != -ENOENT) {
		/* Also a snapshot without MACs (or with another key's) when
		 * this publisher has a key, and the reverse: every value is
		 * put again, in the version the key gives. */
		net_log(PT_LOG_WARN, "bucket %s: %s: writing the snapshot anew", s->bucket,
			err ? why : "a snapshot of another region");
	}
	free(m.table_sum);
	st->snapshot_bytes += bytes;
	s->loaded = true;
	s->trusted = false;
}

/* Put the value encoded in s->buf, len bytes (< 0: its encoder's error),
 * waiting for the server's answer. */
static int put(struct snap_pub *s, const char *key, long len, struct pt_publisher_stats *st)
{
	natsStatus ns;

	if (len < 0)
		return net_fail((int)len, "bucket %s: computing the HMAC of %s failed", s->bucket,
				key);
	ns = kvStore_Put(NULL, s->kv, key, s->buf, (int)len);
	if (ns != NATS_OK) {
		/* What the bucket holds is unknown now: read it next time. */
		s->loaded = s->trusted = false;
		return net_fail(ns == NATS_MAX_PAYLOAD ? -EMSGSIZE : -EAGAIN,
				"bucket %s: putting %s (%ld bytes): %s", s->bucket, key, len,
				net_status_text(ns));
	}
	st->snapshot_bytes += (uint64_t)len;
	return 0;
}

/*
 * The same without waiting: a publish to the bucket's subject for key
 * (what kvStore_Put does: the bucket is no mirror, and the connection uses
 * the default API prefix), at most PUT_WINDOW in flight.  puts_wait()
 * tells how the batch went.
 */
static int put_async(struct snap_pub *s, const char *key, long len, struct pt_publisher_stats *st)
{
	char subject[160];
	natsStatus ns;

	if (len < 0)
		return net_fail((int)len, "bucket %s: computing the HMAC of %s failed", s->bucket,
				key);
	snprintf(subject, sizeof(subject), "$KV.%s.%s", s->bucket, key);
	ns = js_PublishAsync(s->async, subject, s->buf, (int)len, NULL);
	if (ns != NATS_OK) {
		s->loaded = s->trusted = false;
		return net_fail(ns == NATS_MAX_PAYLOAD ? -EMSGSIZE : -EAGAIN,
				"bucket %s: putting %s (%ld bytes): %s", s->bucket, key, len,
				net_status_text(ns));
	}
	s->in_flight++;
	st->snapshot_bytes += (uint64_t)len;
	return 0;
}

/*
 * Wait until the server answered every put of the batch (bounded: the
 * request timeout for the last PUT_WINDOW).  0 when all are stored;
 * -EAGAIN when one failed or did not answer (what the bucket holds is
 * unknown: the next update reads it).  Called after any put_async, also
 * when one failed, so that nothing is in flight once an update returns.
 */
static int puts_wait(struct snap_pub *s, int err)
{
	jsPubOptions po;
	natsStatus ns;
	int failed;

	jsPubOptions_Init(&po);
	po.MaxWait = s->wait_ms;
	ns = js_PublishAsyncComplete(s->async, &po);
	if (ns != NATS_OK)
		puts_drop(s);
	failed = __atomic_exchange_n(&s->failed, 0, __ATOMIC_ACQ_REL);
	if (!err && failed)
		err = net_fail(-EAGAIN, "bucket %s: %d of %llu puts failed: %s (JetStream error %d)",
			       s->bucket, failed, (unsigned long long)s->in_flight, s->failed_text,
			       s->failed_code);
	else if (!err && ns != NATS_OK)
		err = net_fail(-EAGAIN, "bucket %s: of %llu puts, some not answered in %u ms: %s",
			       s->bucket, (unsigned long long)s->in_flight, s->wait_ms,
			       net_status_text(ns));
	if (err)
		s->loaded = s->trusted = false;
	s->in_flight = 0;
	return err;
}

int snap_pub_update(struct snap_pub *s, struct pt_replica *src, struct pt_publisher_stats *st)
{
	const unsigned char *base = pt_replica_base(src);
	size_t ps = s->m.page_size;
	struct pt_page_version *swap;
	uint64_t *sums_swap, pages = 0;
	pt_epoch_t epoch;
	uint64_t chain;
	char key[48];
	int err = 0;

	if (pt_replica_chain(src, &epoch, &chain) ||
	    pt_replica_generations(src, 0, s->m.npages, s->gens))
		return net_fail(-EINVAL, "the source replica tells no generations");
	if (epoch <= 0)
		return 0;
	if (!s->loaded)
		pub_load(s, st);
	memset(s->dirty, 0, s->m.tables);
	for (uint64_t p = 0; p < s->m.npages; p++) {
		struct pt_page_version *c = &s->cur[p], *h = &s->held[p];

		c->generation = s->gens[p];
		if (s->trusted && c->generation == h->generation) {
			c->checksum = h->checksum;
			continue;
		}
		c->checksum = pt_page_checksum(base + p * ps, ps);
		if (c->generation == h->generation && c->checksum == h->checksum)
			continue;
		s->dirty[p / SNAP_TABLE_PAGES] = 1;
		/* A page never written is zero at every epoch: no reader
		 * transfers it, its table entry says all. */
		if (!c->generation)
			continue;
		snprintf(key, sizeof(key), "page.%llu", (unsigned long long)p);
		err = put_async(s, key, snap_page_encode(s->buf, s->m.history, p, c,
							 base + p * ps, (uint32_t)ps, s->zero,
							 s->scratch, s->key), st);
		if (err)
			break;
		pages++;
	}
	/* Every page stored before a table that names it. */
	err = puts_wait(s, err);
	if (err)
		return err;
	for (uint32_t t = 0; t < s->m.tables; t++) {
		long len;

		s->m.table_sum[t] = s->held_sum[t];
		if (!s->dirty[t] && s->held_sum[t])
			continue;
		snprintf(key, sizeof(key), "table.%u", t);
		len = snap_table_encode(s->buf, &s->m, t, s->cur, s->key);
		err = put_async(s, key, len, st);
		if (err)
			break;
		s->m.table_sum[t] = wire_checksum(s->buf, (size_t)len);
	}
	/* Every table stored before the manifest that names it. */
	err = puts_wait(s, err);
	if (err)
		return err;
	s->m.epoch = (uint64_t)epoch;
	s->m.chain = chain;
	s->m.written_ns = net_now_ns();
	err = put(s, "manifest", snap_manifest_encode(s->buf, &s->m, s->key), st);
	if (err)
		return err;
	swap = s->held;
	s->held = s->cur;
	s->cur = swap;
	sums_swap = s->held_sum;
	s->held_sum = s->m.table_sum;
	s->m.table_sum = sums_swap;
	s->trusted = true;
	s->epoch = epoch;
	s->chain = chain;
	s->last_ms = net_mono_ms();
	s->last_messages = st->messages;
	s->last_bytes = st->bytes_wire;
	st->snapshot_epoch = epoch;
	st->snapshot_updates++;
	st->snapshot_pages += pages;
	net_log(PT_LOG_INFO, "bucket %s: snapshot at epoch %lld (%llu pages put)", s->bucket,
		(long long)epoch, (unsigned long long)pages);
	return 0;
}

/* ---- follower --------------------------------------------------------------- */

/* A catch-up in progress. */
struct catch_up {
	struct net_conn *c;
	kvStore *kv;
	bool direct;			/* the bucket's stream answers direct gets */
	char bucket[96];
	const struct pt_net_opts *o;
	const struct wire_key *key;	/* the follower's: len 0, none */
	pt_epoch_t have;		/* the standby's epoch */
	uint64_t history;		/* the standby's, 0: none yet */
	size_t region_pages;		/* the standby's, 0: none yet */
	struct snap_manifest m;
	struct pt_page_version *v;
	uint64_t *pages;
	unsigned char *data;
	unsigned char *zero;
	uint64_t count, bytes;
};

static void progress(const struct catch_up *cu, uint64_t done)
{
	struct pt_net_progress p = {
		.sz = sizeof(p), .from = cu->have, .to = (pt_epoch_t)cu->m.epoch,
		.pages_done = done, .pages_total = cu->count, .bytes_wire = cu->bytes,
	};

	if (cu->o->progress)
		cu->o->progress(&p, cu->o->progress_arg);
}

/*
 * The snapshot does not reach past the gap.  A stream that lost its start
 * to retention waits for the publisher's next update; a gap inside the
 * stream that no snapshot accounts for is an error.
 */
static int not_covered(const struct catch_up *cu, const char *stream, const struct snap_gap *gap,
		       const char *what)
{
	if (gap->trimmed)
		return net_fail(-EAGAIN, "stream %s no longer holds epoch %lld, the standby's next "
				"(it starts at epoch %llu%s), and %s: waiting for the publisher to "
				"update the snapshot", stream, (long long)cu->have + 1,
				(unsigned long long)gap->epoch, gap->part ? ", part way" : "", what);
	return net_fail(-EILSEQ, "stream %s sequence %llu: epoch %llu part %u follows the "
			"standby's epoch %lld, and %s", stream, (unsigned long long)gap->seq,
			(unsigned long long)gap->epoch, gap->part, (long long)cu->have, what);
}

/* Check the value of the i-th page to transfer and decode it into its
 * place: 0, 1 (newer than its table: start over), -errno. */
static int take_page(struct catch_up *cu, uint64_t i, const void *val, size_t len)
{
	char why[300];
	int err;

	cu->bytes += len;
	err = snap_page_decode(val, len, &cu->m, cu->pages[i], &cu->v[cu->pages[i]], cu->key,
			       cu->data + i * cu->m.page_size, cu->zero, why, sizeof(why));
	if (err < 0)
		return net_fail(err, "bucket %s: %s", cu->bucket, why);
	return err;
}

static int page_missing(const struct catch_up *cu, uint64_t i)
{
	return net_fail(-EBADMSG, "bucket %s: page.%llu, of generation %lld in the snapshot of "
			"epoch %llu, is missing", cu->bucket, (unsigned long long)cu->pages[i],
			(long long)cu->v[cu->pages[i]].generation, (unsigned long long)cu->m.epoch);
}

/* The pages one kvStore_Get at a time, a round trip each: for a bucket
 * that answers no direct get.  0, 1 (start over), -errno. */
static int fetch_each(struct catch_up *cu)
{
	for (uint64_t i = 0; i < cu->count; i++) {
		char key[48];
		natsMsg *e;
		int err;

		snprintf(key, sizeof(key), "page.%llu", (unsigned long long)cu->pages[i]);
		err = kv_get(cu->c, cu->bucket, key, &e);
		if (err == -ENOENT)
			return page_missing(cu, i);
		if (err)
			return err;
		err = take_page(cu, i, value_of(e), (size_t)natsMsg_GetDataLength(e));
		natsMsg_Destroy(e);
		if (err)
			return err;
		if ((i + 1) % PROGRESS_EVERY == 0)
			progress(cu, i + 1);
	}
	return 0;
}

/*
 * One answer to a direct get: which page (the reply subject's last token),
 * and its value, checked into place.  0 taken, 1 (start over), 2 (no
 * direct gets here), 3 (not an answer of ours, or one already taken: a
 * request may be answered by more than one server), -errno.
 */
static int take_answer(struct catch_up *cu, natsMsg *m, uint8_t *got, uint64_t *index)
{
	const char *subj = natsMsg_GetSubject(m), *dot = strrchr(subj, '.'), *status = NULL;
	const char *op = NULL, *desc = NULL;
	char *end;
	uint64_t i;

	errno = 0;
	i = dot && dot[1] >= '0' && dot[1] <= '9' ? strtoull(dot + 1, &end, 10) : UINT64_MAX;
	if (i >= cu->count || errno || *end || got[i])
		return 3;
	*index = i;
	if (natsMsgHeader_Get(m, "Status", &status) == NATS_OK && status) {
		if (!strcmp(status, "404"))
			return page_missing(cu, i);
		if (!strcmp(status, "503"))
			return 2;
		natsMsgHeader_Get(m, "Description", &desc);
		return net_fail(-EAGAIN, "bucket %s: getting page.%llu: status %s%s%s", cu->bucket,
				(unsigned long long)cu->pages[i], status, desc ? ", " : "",
				desc ? desc : "");
	}
	/* A deleted or purged key's marker: no value. */
	if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op)
		return page_missing(cu, i);
	got[i] = 1;
	return take_page(cu, i, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
}

/*
 * The pages by direct gets of each key's last value (the bucket's stream
 * allows them: libnats makes buckets so), GET_WINDOW requests in flight on
 * an inbox of their own, so that the transfer pays a round trip a window,
 * not a page.  Each answer is matched to its request by its reply subject
 * and checked as it comes, as one kvStore_Get's.  0, 1 (start over), 2
 * (no server answers direct gets), -errno.
 */
static int fetch_pipelined(struct catch_up *cu)
{
	const char *api = cu->c->jsopts.Prefix ? cu->c->jsopts.Prefix : "$JS.API";
	natsSubscription *sub = NULL;
	natsInbox *inbox = NULL;
	uint8_t *got = calloc(cu->count ? cu->count : 1, 1);
	uint64_t sent = 0, done = 0;
	char subj[256], reply[160];
	natsStatus s;
	int err = 0;

	if (!got)
		return net_fail(-ENOMEM, "out of memory for %llu pages",
				(unsigned long long)cu->count);
	s = natsInbox_Create(&inbox);
	if (s == NATS_OK) {
		snprintf(reply, sizeof(reply), "%s.*", inbox);
		s = natsConnection_SubscribeSync(&sub, cu->c->nc, reply);
	}
	if (s != NATS_OK) {
		err = net_fail(-EAGAIN, "bucket %s: an inbox for the gets: %s", cu->bucket,
			       net_status_text(s));
		goto out;
	}
	while (done < cu->count) {
		uint64_t i = UINT64_MAX;
		natsMsg *m = NULL;

		for (; sent < cu->count && sent - done < GET_WINDOW; sent++) {
			snprintf(subj, sizeof(subj), "%s.DIRECT.GET.KV_%s.$KV.%s.page.%llu", api,
				 cu->bucket, cu->bucket, (unsigned long long)cu->pages[sent]);
			snprintf(reply, sizeof(reply), "%s.%llu", inbox, (unsigned long long)sent);
			s = natsConnection_PublishRequest(cu->c->nc, subj, reply, NULL, 0);
			if (s != NATS_OK) {
				err = net_fail(-EAGAIN, "bucket %s: getting page.%llu: %s", cu->bucket,
					       (unsigned long long)cu->pages[sent],
					       net_status_text(s));
				goto out;
			}
		}
		s = natsSubscription_NextMsg(&m, sub, (int64_t)cu->o->request_timeout_ms);
		if (s != NATS_OK) {
			err = net_fail(-EAGAIN, "bucket %s: %llu of %llu pages transferred, then %s",
				       cu->bucket, (unsigned long long)done,
				       (unsigned long long)cu->count, s == NATS_TIMEOUT ?
				       "no answer in time" : net_status_text(s));
			goto out;
		}
		err = take_answer(cu, m, got, &i);
		natsMsg_Destroy(m);
		if (err == 3) {
			err = 0;
			continue;
		}
		if (err)
			goto out;
		if (++done % PROGRESS_EVERY == 0)
			progress(cu, done);
	}
out:
	/* Answers may still be coming in after a failure. */
	net_sub_drop(cu->c, sub, true);
	natsInbox_Destroy(inbox);
	free(got);
	return err;
}

/* Whether the bucket's stream answers direct gets (a request to a stream
 * that does not goes unanswered): 0 or -EAGAIN. */
static int direct_gets(struct catch_up *cu)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	char name[112];
	natsStatus s;

	snprintf(name, sizeof(name), "KV_%s", cu->bucket);
	s = js_GetStreamInfo(&si, cu->c->js, name, &cu->c->jsopts, &jerr);
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "bucket %s: reading its stream's configuration: %s",
				cu->bucket, net_status_text(s));
	cu->direct = si->Config && si->Config->AllowDirect;
	jsStreamInfo_Destroy(si);
	return 0;
}

/* Transfer and check the pages newer than the standby: 0, 1 (start over), -errno. */
static int fetch_pages(struct catch_up *cu)
{
	int err;

	cu->count = 0;
	for (uint64_t p = 0; p < cu->m.npages; p++)
		if (cu->v[p].generation > cu->have)
			cu->pages[cu->count++] = p;
	progress(cu, 0);
	err = cu->direct ? fetch_pipelined(cu) : 2;
	if (err == 2) {
		net_log(PT_LOG_INFO, "bucket %s: its stream answers no direct get: one get a page",
			cu->bucket);
		err = fetch_each(cu);
	}
	if (!err)
		progress(cu, cu->count);
	return err;
}

/* One attempt at the snapshot as it is now: 1 every page needed is in
 * cu, 0 to start over, -errno. */
static int attempt(struct catch_up *cu, const char *stream, const struct snap_gap *gap,
		   int *table_misses)
{
	char why[300], what[160];
	long sys_page = sysconf(_SC_PAGESIZE);
	int err;

	free(cu->m.table_sum);
	err = manifest_read(cu->c, cu->bucket, cu->key, &cu->m, &cu->bytes, why, sizeof(why));
	if (err == -ENOENT)
		return not_covered(cu, stream, gap, "there is no snapshot yet");
	if (err == -EAGAIN)
		return err;
	if (err)
		return net_fail(err, "bucket %s: %s", cu->bucket, why);
	if (cu->history && cu->m.history != cu->history)
		return net_fail(-ESTALE, "bucket %s holds a snapshot of history %016llx, the standby "
				"is of %016llx", cu->bucket, (unsigned long long)cu->m.history,
				(unsigned long long)cu->history);
	if (cu->m.page_size != (uint64_t)sys_page)
		return net_fail(-EXDEV, "bucket %s: pages of %u bytes, this system's are %ld",
				cu->bucket, cu->m.page_size, sys_page);
	/* Sizes are checked before anything is allocated for them: what the
	 * follower holds is bounded by the region's size, the standby's or,
	 * for a new one, the stream's (the gap's message says it). */
	if (cu->region_pages && cu->m.npages != cu->region_pages)
		return net_fail(-EBADMSG, "bucket %s: a snapshot of %llu pages, the standby has %zu",
				cu->bucket, (unsigned long long)cu->m.npages, cu->region_pages);
	if (cu->m.npages != gap->npages)
		return net_fail(-EBADMSG, "bucket %s: a snapshot of %llu pages, stream %s sequence "
				"%llu is of a region of %llu", cu->bucket,
				(unsigned long long)cu->m.npages, stream,
				(unsigned long long)gap->seq, (unsigned long long)gap->npages);
	/* It must reach the stream's next epoch: S + 1 at least the gap's
	 * epoch (past it when the gap's epoch is there only part way), and
	 * chain to it when S + 1 is that epoch. */
	if ((pt_epoch_t)cu->m.epoch <= cu->have || cu->m.epoch + !gap->part < gap->epoch ||
	    (cu->m.epoch + 1 == gap->epoch && !gap->part && cu->m.chain != gap->prev_chain)) {
		snprintf(what, sizeof(what), "the snapshot is at epoch %llu%s",
			 (unsigned long long)cu->m.epoch,
			 cu->m.epoch + 1 == gap->epoch && cu->m.chain != gap->prev_chain ?
			 " with another chain than the stream's next epoch follows" : "");
		return not_covered(cu, stream, gap, what);
	}
	if (!cu->v) {
		cu->v = malloc(cu->m.npages * sizeof(*cu->v));
		cu->pages = malloc(cu->m.npages * sizeof(*cu->pages));
		cu->zero = calloc(1, cu->m.page_size);
		if (!cu->v || !cu->pages || !cu->zero)
			return net_fail(-ENOMEM, "out of memory for a snapshot of %llu pages",
					(unsigned long long)cu->m.npages);
	}
	err = tables_read(cu->c, cu->bucket, &cu->m, cu->key, cu->v, &cu->bytes, why, sizeof(why));
	if (err == 1 && ++*table_misses < RESTARTS) {
		/* The publisher may be between a table and its manifest. */
		usleep(100 * 1000);
		return 0;
	}
	if (err == -EAGAIN)
		return err;	/* the server: transient */
	if (err)
		return net_fail(err == 1 ? -EBADMSG : err, "bucket %s: %s", cu->bucket, why);
	free(cu->data);
	cu->data = NULL;
	cu->count = 0;
	for (uint64_t p = 0; p < cu->m.npages; p++)
		cu->count += cu->v[p].generation > cu->have;
	if (cu->count && !(cu->data = malloc(cu->count * cu->m.page_size)))
		return net_fail(-ENOMEM, "out of memory for %llu pages",
				(unsigned long long)cu->count);
	err = fetch_pages(cu);
	return err < 0 ? err : !err;
}

int snap_catch_up(struct net_conn *c, const struct pt_net_opts *o, const struct wire_key *key,
		  const char *stream, const char *dir, struct pt_region **standby,
		  const struct snap_gap *gap, struct pt_follower_stats *st)
{
	struct catch_up cu = { .c = c, .o = o, .key = key };
	int table_misses = 0, err = 0, tries;
	natsStatus ns;

	bucket_name(cu.bucket, sizeof(cu.bucket), stream);
	if (*standby) {
		cu.have = pt_region_epoch(*standby);
		cu.history = pt_region_history(*standby);
		cu.region_pages = pt_region_size(*standby) / (size_t)sysconf(_SC_PAGESIZE);
	}
	ns = js_KeyValue(&cu.kv, c->js, cu.bucket);
	if (ns == NATS_NOT_FOUND)
		return not_covered(&cu, stream, gap, "there is no snapshot (no bucket)");
	if (ns != NATS_OK)
		return net_fail(-EAGAIN, "bucket %s: %s", cu.bucket, net_status_text(ns));
	err = direct_gets(&cu);
	if (err)
		goto out;
	for (tries = 0; tries < RESTARTS * 2; tries++) {
		err = attempt(&cu, stream, gap, &table_misses);
		if (err)
			break;
	}
	if (!err) {
		err = net_fail(-EAGAIN, "bucket %s: the snapshot changed %d times while it was read: "
			       "trying again", cu.bucket, tries);
		goto out;
	}
	if (err < 0)
		goto out;
	if (!*standby) {
		struct pt_region_opts ro = net_standby_opts(o, cu.m.history);

		err = pt_region_create(standby, dir, cu.m.npages * cu.m.page_size, &ro);
		if (err) {
			err = net_fail(err, "%s: creating the standby region: %s", dir,
				       pt_strerror(err));
			goto out;
		}
	}
	{
		struct pt_jump j = {
			.sz = sizeof(j), .epoch = (pt_epoch_t)cu.m.epoch, .chain = cu.m.chain,
			.versions = cu.v, .count = cu.count, .pages = cu.pages, .data = cu.data,
		};
		pt_epoch_t e = pt_region_jump(*standby, &j);

		if (e < 0) {
			err = net_fail((int)e, "%s: taking the snapshot's epoch %llu (%llu pages from "
				       "bucket %s): %s%s", dir, (unsigned long long)cu.m.epoch,
				       (unsigned long long)cu.count, cu.bucket, pt_strerror((int)e),
				       e == -EBADMSG ? " (a page the standby kept is not the "
				       "source's: the standby is not on the stream's history)" : "");
			goto out;
		}
	}
	st->snapshot_catchups++;
	st->snapshot_pages += cu.count;
	st->snapshot_from = cu.have;
	st->snapshot_to = (pt_epoch_t)cu.m.epoch;
	net_log(PT_LOG_INFO, "%s: caught up from the snapshot in bucket %s: epoch %lld -> %llu, "
		"%llu pages transferred", dir, cu.bucket, (long long)cu.have,
		(unsigned long long)cu.m.epoch, (unsigned long long)cu.count);
	err = 0;
out:
	st->snapshot_bytes += cu.bytes;
	if (cu.kv)
		kvStore_Destroy(cu.kv);
	free(cu.m.table_sum);
	free(cu.v);
	free(cu.pages);
	free(cu.data);
	free(cu.zero);
	return err;
}
