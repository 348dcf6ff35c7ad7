/* SPDX-License-Identifier: MIT */
/*
 * conn.h - what the publisher and the follower share: their options, the
 * connection to NATS (servers, auth, TLS, reconnects), the mapping of NATS
 * statuses to -errno, diagnostics and the per-thread last error.
 */
#ifndef PT_NET_CONN_H
#define PT_NET_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <nats/nats.h>

#include "pagetrack-net.h"

#define PT_EXPORT __attribute__((visibility("default")))

/* How often a connection pings its server by default (pt_net_opts.ping_ms):
 * two unanswered, it reconnects. */
#define NET_PING_MS	1000

/* A connection with its JetStream context. */
struct net_conn {
	natsConnection *nc;
	jsCtx *js;
	jsOptions jsopts;
	int64_t max_payload;
	char subject[128];	/* pagetrack.<stream>.epochs */
	/* Dropped while the connection was open, destroyed once no message
	 * can be on its way to them (net_sub_drop). */
	struct net_later *later;
	size_t nlater;
	uint64_t later_gen;	/* of the last one kept */
};

/* A subscription (or a KV watcher's) kept by net_sub_drop(). */
struct net_later {
	natsSubscription *sub;
	kvWatcher *watcher;
	bool out;		/* unsubscribed: out of the connection's table */
	uint64_t gen;		/* kept after the flushes begun before it */
};

struct wire_key;

/*
 * Copy the caller's options into *o (defaults filled), rejecting unknown
 * non-zero bytes past the fields this library knows, and fields that are
 * not role's.  The HMAC key's bytes go to *key; o keeps no pointer to them
 * (the caller's memory need not outlive the open).  Returns 0 or -EINVAL.
 */
int net_opts_copy(struct pt_net_opts *o, const struct pt_net_opts *in, enum pt_net_role role,
		  struct wire_key *key);

/*
 * The options of a follower's standby region, wherever it is created or
 * reopened (follower.c, snapshot.c): PT_DURABLE_NONE (the follower makes
 * its epochs durable itself, in batches), the options' standby sizes, and
 * history (0 when reopening: the region's own).
 */
struct pt_region_opts net_standby_opts(const struct pt_net_opts *o, uint64_t history);

/* Connect as the options say.  Returns 0, or -errno with the last error set. */
int net_connect(struct net_conn *c, const struct pt_net_opts *o, const char *stream);
/* Close the connection (its read thread joined: no message comes in after
 * this) and destroy what net_sub_drop() kept; the handles stay, for what
 * must be destroyed after that (net/publisher.c).  Idempotent. */
void net_close(struct net_conn *c);
/* net_close(), then free the connection and its JetStream context. */
void net_disconnect(struct net_conn *c);

/*
 * Drop a subscription of c's connection: unsubscribe it (with delete, its
 * JetStream consumer too) and destroy it once no message can still be on
 * its way to it.
 *
 * libnats before 3.6.1 (Debian 12 has 3.4.1) looks up the subscription of
 * an arriving message, lets go of its table's lock, and only then takes the
 * subscription's own: a natsSubscription_Destroy() in between frees what
 * its read thread is about to lock (nats.c issue 637; a use after free that
 * a subscription dropped while messages stream in hits within a few
 * thousand drops).  The read thread handles what the server sends in
 * order, so once the answer to a flush sent after the UNSUB is back, it is
 * done with every message for the subscription, and then it is destroyed.
 * When the flush fails, or the connection is reconnecting (a flush would
 * wait its whole time), the subscription is kept until a later drop's
 * flush succeeds, or net_close().  Without delete (only
 * natsSubscription_Destroy() unsubscribes without deleting the consumer)
 * it is kept as it is until net_close(): it may go on receiving until then.
 */
void net_sub_drop(struct net_conn *c, natsSubscription *sub, bool delete);
/* Those kept: unsubscribed ones are destroyed at the next flush that
 * succeeds, the others by net_close(). */
size_t net_kept(const struct net_conn *c, bool out);
/* The same for a KV watcher (its subscription): stopped, flushed, destroyed. */
void net_watcher_drop(struct net_conn *c, kvWatcher *w);

/* -errno for a NATS status (and JetStream error code). */
int net_errno(natsStatus s);

/* Set the calling thread's last error and log it at level; returns err. */
int net_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void net_log(enum pt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The NATS library's own words for s: its last error text, or the status's. */
const char *net_status_text(natsStatus s);

uint64_t net_now_ns(void);		/* CLOCK_REALTIME */
uint64_t net_mono_ms(void);		/* CLOCK_MONOTONIC */

#endif /* PT_NET_CONN_H */
