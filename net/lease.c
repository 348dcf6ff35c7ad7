/* SPDX-License-Identifier: MIT */
/*
 * lease.c - the writer's lease: one key ("writer") in the JetStream
 * key-value bucket pagetrack-lease-<stream>, whose TTL (the bucket's max
 * age, kept by the server's clock) is the lease.  nats-server 2.9 has no
 * per-key TTL: the bucket's applies to every value, and a value is removed
 * TTL after it was written.  So:
 *
 *  - taking a lapsed lease is a write of the key expecting it to hold
 *    nothing (no message, or the delete marker a release left: its
 *    revision), and taking over a value is a write expecting its revision:
 *    compare-and-set (the stream's expected last subject sequence), one
 *    winner;
 *  - the holder renews by writing with its last revision every TTL/3; a
 *    renewal that fails because the value moved means someone else took
 *    the lease;
 *  - the holder counts the lease as its own until TTL - TTL/8 after it
 *    sent its last successful renewal, by its monotonic clock.  The server
 *    removes the value TTL after it received that write, which is later: a
 *    holder never believes it holds a lease the server already let go
 *    (clock rates aside).
 *
 * Every request waits at most half a lease (LEASE_WAIT): a renewal stuck
 * for the connection's request timeout (5 s) would outlive a 1 s lease,
 * and the next attempt, a third of a lease later, may reach a server that
 * answers.  Reads go to the stream leader (the stream's "get last message
 * by subject"), not to kvStore_Get: a key-value bucket is made with direct
 * gets allowed, which any replica answers, so after a node is lost its
 * replica keeps taking a share of the reads, never answered, until the
 * other nodes drop their route to it (10 to 20 s on a loaded machine); a
 * replica behind its leader may also answer an older value.  Writes are
 * the bucket's own (publish to its subject with the expected last subject
 * sequence), with the same wait.
 *
 * The lease is advice on who should write, not the safety: a paused holder
 * resumed after its lease passed to another may still publish before its
 * renewal fails, and it is the stream's fence (expected last sequence, term
 * markers: term.c) that refuses it.  The lease makes one standby, not two,
 * promote itself, and stops a healthy writer's publisher from being taken
 * over.
 *
 * The thread (lease_keep) shares the owner's connection (libnats handles
 * are thread safe); what it learns (revision, deadline, the other holder)
 * is under lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lease.h"

#define LEASE_KEY	"writer"
#define LEASE_MAGIC	"PTLEASE"	/* 8 bytes with its NUL */
#define LEASE_V1_SIZE	80		/* version 1: no advertised address */
#define LEASE_V2_SIZE	144		/* version 2: with one */
#define LEASE_SIZE	LEASE_V2_SIZE	/* the larger */
#define LEASE_WAIT_MIN	200		/* ms: a request's wait, half a lease, in */
#define LEASE_WAIT_MAX	5000		/* these bounds */

struct net_lease {
	struct net_conn *conn;
	kvStore *kv;
	char bucket[128];
	char kv_stream[160];		/* the bucket's stream, KV_<bucket> */
	char subject[200];		/* the key's subject, $KV.<bucket>.writer */
	int64_t wait_ms;		/* a request's wait */
	char stream[STREAM_NAME_MAX + 1];
	unsigned ttl_ms;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, stop;
	struct lease_value mine;	/* set by lease_take */
	uint64_t rev;			/* our value's revision; 0: not ours */
	uint64_t held_until_ms;		/* CLOCK_MONOTONIC */
	struct lease_value other;
	bool other_seen;
};

/* ---- the value: magic, version, fields, checksum (little-endian) ---- */

/*
 *  0 magic "PTLEASE\0"   16 term      32 pid (u64)   72 version 1: XXH3-64 of
 *  8 version u64         24 holder    40 host[32]       bytes 0..71
 *                                                     72 version 2: advertise[64],
 *                                                    136 XXH3-64 of bytes 0..135
 *
 * A holder that advertises no address writes version 1, which the
 * releases before version 2 read too; one that does writes version 2.
 */
bool lease_advertise_ok(const char *s)
{
	const char *colon, *host_end, *p;
	size_t len = strnlen(s, LEASE_ADVERTISE_MAX);
	unsigned long port = 0;

	if (!len || len >= LEASE_ADVERTISE_MAX)
		return false;
	colon = strrchr(s, ':');
	if (!colon || colon == s || !colon[1] || strlen(colon + 1) > 5)
		return false;
	for (p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port < 1 || port > 65535 || colon[1] == '0')
		return false;
	host_end = colon;
	if (*s == '[') {
		/* [IPv6]:PORT */
		if (colon[-1] != ']' || colon - s < 4)
			return false;
		for (p = s + 1; p < colon - 1; p++)
			if (!strchr("0123456789abcdefABCDEF:.", *p))
				return false;
		return true;
	}
	for (p = s; p < host_end; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
			return false;
	return true;
}

/* Returns the value's size. */
static int value_put(unsigned char out[LEASE_SIZE], const struct lease_value *v)
{
	size_t advertise = strnlen(v->advertise, LEASE_ADVERTISE_MAX - 1);
	int size = advertise ? LEASE_V2_SIZE : LEASE_V1_SIZE;

	memset(out, 0, LEASE_SIZE);
	memcpy(out, LEASE_MAGIC, 8);
	wire_put64(out + 8, advertise ? 2 : 1);
	wire_put64(out + 16, v->term);
	wire_put64(out + 24, v->holder);
	wire_put64(out + 32, (uint64_t)(uint32_t)v->pid);
	memcpy(out + 40, v->host, strnlen(v->host, WIRE_HOST_MAX - 1));
	memcpy(out + 72, v->advertise, advertise);
	wire_put64(out + size - 8, wire_checksum(out, (size_t)size - 8));
	return size;
}

static int value_get(const void *data, int len, struct lease_value *v)
{
	const unsigned char *p = data;
	uint64_t version;

	if ((len != LEASE_V1_SIZE && len != LEASE_V2_SIZE) || memcmp(p, LEASE_MAGIC, 8))
		return -EBADMSG;
	version = wire_get64(p + 8);
	if (version != (len == LEASE_V1_SIZE ? 1u : 2u) ||
	    wire_get64(p + len - 8) != wire_checksum(p, (size_t)len - 8) ||
	    wire_get64(p + 32) > INT32_MAX || p[40 + WIRE_HOST_MAX - 1])
		return -EBADMSG;
	memset(v, 0, sizeof(*v));
	if (version == 2) {
		/* NUL padded, and an address a client may connect to: checked
		 * whole, nothing replaced. */
		if (p[72 + LEASE_ADVERTISE_MAX - 1])
			return -EBADMSG;
		memcpy(v->advertise, p + 72, LEASE_ADVERTISE_MAX);
		for (size_t i = strlen(v->advertise); i < LEASE_ADVERTISE_MAX; i++)
			if (v->advertise[i])
				return -EBADMSG;
		if (!lease_advertise_ok(v->advertise))
			return -EBADMSG;
	}
	v->term = wire_get64(p + 16);
	v->holder = wire_get64(p + 24);
	v->pid = (int32_t)wire_get64(p + 32);
	memcpy(v->host, p + 40, WIRE_HOST_MAX);
	for (int i = 0; i < WIRE_HOST_MAX && v->host[i]; i++)
		if (v->host[i] < 0x21 || v->host[i] > 0x7e)
			v->host[i] = '?';
	return 0;
}

static bool same_holder(const struct lease_value *a, const struct lease_value *b)
{
	return a->term == b->term && a->holder == b->holder;
}

/* ---- the bucket ------------------------------------------------------ */

int lease_open(struct net_lease **out, struct net_conn *c, const char *stream, unsigned ttl_ms,
	       unsigned replicas, bool create)
{
	struct net_lease *l;
	kvStatus *st = NULL;
	natsStatus s;
	unsigned want = ttl_ms;
	int err;

	*out = NULL;
	if (!ttl_ms)
		ttl_ms = LEASE_DEFAULT_MS;
	if (ttl_ms < LEASE_MIN_MS || ttl_ms > LEASE_MAX_MS)
		return net_fail(-EINVAL, "a lease of %u ms (%d to %d)", ttl_ms, LEASE_MIN_MS,
				LEASE_MAX_MS);
	l = calloc(1, sizeof(*l));
	if (!l)
		return net_fail(-ENOMEM, "out of memory");
	l->conn = c;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	snprintf(l->bucket, sizeof(l->bucket), "pagetrack-lease-%s", stream);
	snprintf(l->kv_stream, sizeof(l->kv_stream), "KV_%s", l->bucket);
	snprintf(l->subject, sizeof(l->subject), "$KV.%s.%s", l->bucket, LEASE_KEY);
	snprintf(l->stream, sizeof(l->stream), "%s", stream);
	s = js_KeyValue(&l->kv, c->js, l->bucket);
	if (s == NATS_NOT_FOUND && create) {
		kvConfig cfg;

		kvConfig_Init(&cfg);
		cfg.Bucket = l->bucket;
		cfg.History = 1;
		cfg.TTL = (int64_t)ttl_ms * 1000000;
		cfg.StorageType = js_FileStorage;
		cfg.Replicas = (int)(replicas ? replicas : 1);
		s = js_CreateKeyValue(&l->kv, c->js, &cfg);
		if (s != NATS_OK)	/* made by another meanwhile, maybe otherwise */
			s = js_KeyValue(&l->kv, c->js, l->bucket);
		if (s == NATS_OK)
			net_log(PT_LOG_INFO, "lease bucket %s: TTL %u ms", l->bucket, ttl_ms);
	}
	if (s == NATS_NOT_FOUND) {
		err = net_fail(-ENOENT, "no lease bucket %s: the writer of stream %s holds no "
			       "lease", l->bucket, stream);
		goto err;
	}
	if (s != NATS_OK) {
		err = net_fail(-EAGAIN, "lease bucket %s: %s", l->bucket, net_status_text(s));
		goto err;
	}
	s = kvStore_Status(&st, l->kv);
	if (s != NATS_OK) {
		err = net_fail(-EAGAIN, "lease bucket %s: reading its TTL: %s", l->bucket,
			       net_status_text(s));
		goto err;
	}
	l->ttl_ms = (unsigned)(kvStatus_TTL(st) / 1000000);
	kvStatus_Destroy(st);
	if (l->ttl_ms < LEASE_MIN_MS || l->ttl_ms > LEASE_MAX_MS) {
		err = net_fail(-EINVAL, "lease bucket %s has a TTL of %u ms (%d to %d)", l->bucket,
			       l->ttl_ms, LEASE_MIN_MS, LEASE_MAX_MS);
		goto err;
	}
	l->wait_ms = l->ttl_ms / 2;
	if (l->wait_ms < LEASE_WAIT_MIN)
		l->wait_ms = LEASE_WAIT_MIN;
	if (l->wait_ms > LEASE_WAIT_MAX)
		l->wait_ms = LEASE_WAIT_MAX;
	if (want && l->ttl_ms != want)
		net_log(PT_LOG_WARN, "lease bucket %s has a TTL of %u ms, not %u: the lease is %u ms",
			l->bucket, l->ttl_ms, ttl_ms, l->ttl_ms);
	*out = l;
	return 0;
err:
	lease_close(l);
	return err;
}

unsigned lease_ttl_ms(const struct net_lease *l)
{
	return l->ttl_ms;
}

int lease_read(struct net_lease *l, struct lease_value *v, uint64_t *rev)
{
	const char *op = NULL;
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	jsOptions jo;
	natsStatus s;
	int err;

	*rev = 0;
	jsOptions_Init(&jo);
	jo.Wait = l->wait_ms;
	s = js_GetLastMsg(&m, l->conn->js, l->kv_stream, l->subject, &jo, &jerr);
	if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
		return 0;
	if (s != NATS_OK)
		return net_fail(-EAGAIN, "lease bucket %s: reading the lease: %s", l->bucket,
				net_status_text(s));
	*rev = natsMsg_GetSequence(m);
	/* A delete marker (lease_release): nobody holds it; *rev is what a
	 * take expects. */
	if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op &&
	    (!strcmp(op, "DEL") || !strcmp(op, "PURGE"))) {
		natsMsg_Destroy(m);
		return 0;
	}
	err = value_get(natsMsg_GetData(m), natsMsg_GetDataLength(m), v);
	natsMsg_Destroy(m);
	if (err)
		return net_fail(err, "lease bucket %s: revision %llu is not a lease", l->bucket,
				(unsigned long long)*rev);
	return 1;
}

/* Write the key if its last revision is expect (0: it holds nothing). */
static natsStatus put(struct net_lease *l, const void *buf, int size, uint64_t expect,
		      uint64_t *rev)
{
	jsPubOptions po;
	jsPubAck *pa = NULL;
	natsStatus s;

	jsPubOptions_Init(&po);
	po.MaxWait = l->wait_ms;
	if (expect)
		po.ExpectLastSubjectSeq = expect;
	else
		po.ExpectNoMessage = true;
	s = js_Publish(&pa, l->conn->js, l->subject, buf, size, &po, NULL);
	if (s == NATS_OK)
		*rev = pa->Sequence;
	jsPubAck_Destroy(pa);
	return s;
}

static void set_held(struct net_lease *l, uint64_t rev, uint64_t sent_ms)
{
	pthread_mutex_lock(&l->lock);
	l->rev = rev;
	l->held_until_ms = sent_ms + l->ttl_ms - l->ttl_ms / 8;
	pthread_mutex_unlock(&l->lock);
}

static void set_lost(struct net_lease *l, const struct lease_value *other)
{
	pthread_mutex_lock(&l->lock);
	l->rev = 0;
	l->held_until_ms = 0;
	if (other) {
		l->other = *other;
		l->other_seen = true;
	}
	pthread_mutex_unlock(&l->lock);
}

int lease_take(struct net_lease *l, const struct lease_value *mine, uint64_t void_below, bool force)
{
	unsigned char buf[LEASE_SIZE];
	struct lease_value cur;
	uint64_t rev = 0, cur_rev = 0, sent = net_mono_ms();
	natsStatus s;
	int ret, size;

	pthread_mutex_lock(&l->lock);
	l->mine = *mine;
	pthread_mutex_unlock(&l->lock);
	size = value_put(buf, mine);
	ret = lease_read(l, &cur, &cur_rev);
	if (ret == -EBADMSG && force)
		ret = 1;	/* not a lease: forced over */
	if (ret < 0)
		return ret;
	if (ret == 0 || same_holder(&cur, mine) || cur.term < void_below || force) {
		s = put(l, buf, size, cur_rev, &rev);
	} else {
		set_lost(l, &cur);
		return net_fail(-EBUSY, "the lease of stream %s is held by term %llu (holder "
				"%016llx, host %s, pid %d)", l->stream,
				(unsigned long long)cur.term, (unsigned long long)cur.holder,
				cur.host, (int)cur.pid);
	}
	if (s == NATS_OK) {
		set_held(l, rev, sent);
		return 0;
	}
	/* Someone else's write came first, or the answer was lost: look. */
	ret = lease_read(l, &cur, &cur_rev);
	if (ret == 1 && same_holder(&cur, mine)) {
		set_held(l, cur_rev, sent);
		return 0;
	}
	if (ret == 1) {
		set_lost(l, &cur);
		return net_fail(-EBUSY, "the lease of stream %s was taken by term %llu (holder "
				"%016llx, host %s, pid %d)", l->stream,
				(unsigned long long)cur.term, (unsigned long long)cur.holder,
				cur.host, (int)cur.pid);
	}
	return net_fail(-EAGAIN, "lease bucket %s: writing the lease: %s", l->bucket,
			net_status_text(s));
}

/* One renewal: 0 renewed, -EBUSY lost, -EAGAIN unknown (the deadline runs). */
static int renew(struct net_lease *l)
{
	unsigned char buf[LEASE_SIZE];
	struct lease_value mine, cur;
	uint64_t rev = 0, cur_rev = 0, last, sent = net_mono_ms();
	natsStatus s;
	int ret, size;

	pthread_mutex_lock(&l->lock);
	mine = l->mine;
	last = l->rev;
	pthread_mutex_unlock(&l->lock);
	size = value_put(buf, &mine);
	s = put(l, buf, size, last, &rev);
	if (s == NATS_OK) {
		set_held(l, rev, sent);
		return 0;
	}
	ret = lease_read(l, &cur, &cur_rev);
	if (ret == 1 && same_holder(&cur, &mine)) {
		set_held(l, cur_rev, sent);	/* the write landed, its answer did not */
		return 0;
	}
	if (ret == 1) {
		set_lost(l, &cur);
		net_log(PT_LOG_WARN, "the lease of stream %s passed to term %llu (holder %016llx, "
			"host %s, pid %d)", l->stream,
			(unsigned long long)cur.term, (unsigned long long)cur.holder, cur.host,
			(int)cur.pid);
		return -EBUSY;
	}
	if (ret == 0) {
		/* It lapsed (this holder was paused past its TTL) and nobody
		 * took it: take it again. */
		set_lost(l, NULL);
		return lease_take(l, &mine, mine.term, false);
	}
	return -EAGAIN;
}

static void *keeper(void *arg)
{
	struct net_lease *l = arg;
	unsigned period = l->ttl_ms / 3;

	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		bool ours = l->rev != 0;
		struct lease_value mine = l->mine;
		struct timespec until;

		pthread_mutex_unlock(&l->lock);
		if (ours)
			renew(l);
		else
			lease_take(l, &mine, mine.term, false);
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += (long)(period % 1000) * 1000000;
		until.tv_sec += period / 1000 + until.tv_nsec / 1000000000;
		until.tv_nsec %= 1000000000;
		pthread_mutex_lock(&l->lock);
		while (!l->stop && pthread_cond_timedwait(&l->cond, &l->lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int lease_keep(struct net_lease *l)
{
	pthread_condattr_t ca;
	int err;

	if (l->running)
		return 0;
	/* The renewal period is measured on the monotonic clock: a wall
	 * clock step must not delay a renewal past the TTL. */
	pthread_cond_destroy(&l->cond);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	err = pthread_create(&l->thread, NULL, keeper, l);
	if (err)
		return net_fail(-err, "starting the lease thread: %s", strerror(err));
	l->running = true;
	return 0;
}

static void stop_thread(struct net_lease *l)
{
	if (!l->running)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->thread, NULL);
	l->running = false;
	l->stop = false;	/* lease_keep may start it again */
}

void lease_stop(struct net_lease *l)
{
	if (!l)
		return;
	stop_thread(l);
	set_lost(l, NULL);
}

void lease_release(struct net_lease *l)
{
	struct lease_value cur, mine;
	uint64_t rev;

	if (!l)
		return;
	stop_thread(l);
	pthread_mutex_lock(&l->lock);
	mine = l->mine;
	pthread_mutex_unlock(&l->lock);
	set_lost(l, NULL);
	if (lease_read(l, &cur, &rev) == 1 && same_holder(&cur, &mine) &&
	    kvStore_Delete(l->kv, LEASE_KEY) == NATS_OK)
		net_log(PT_LOG_INFO, "the lease of stream %s released (term %llu)", l->stream,
			(unsigned long long)mine.term);
}

bool lease_held(struct net_lease *l)
{
	bool held;

	pthread_mutex_lock(&l->lock);
	held = l->rev && net_mono_ms() < l->held_until_ms;
	pthread_mutex_unlock(&l->lock);
	return held;
}

int lease_other(struct net_lease *l, struct lease_value *v)
{
	int seen;

	pthread_mutex_lock(&l->lock);
	seen = l->other_seen;
	if (seen)
		*v = l->other;
	pthread_mutex_unlock(&l->lock);
	return seen;
}

void lease_close(struct net_lease *l)
{
	if (!l)
		return;
	stop_thread(l);
	kvStore_Destroy(l->kv);
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
	free(l);
}
