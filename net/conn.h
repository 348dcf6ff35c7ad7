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
void net_disconnect(struct net_conn *c);

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
