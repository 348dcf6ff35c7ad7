/* SPDX-License-Identifier: MIT */
/*
 * lease.h - the writer's lease on a stream: a key in a JetStream key-value
 * bucket whose TTL is the lease, taken and renewed by compare-and-set
 * (docs/network.md, "Failover").  The lease says who should write; the
 * stream's fence (term markers, expected last sequence) is what makes a
 * second writer harmless.
 */
#ifndef PT_NET_LEASE_H
#define PT_NET_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "wire.h"

#define LEASE_DEFAULT_MS	1000
#define LEASE_MIN_MS		100
#define LEASE_MAX_MS		600000
#define LEASE_ADVERTISE_MAX	64	/* "HOST:PORT" with its NUL */

/* The lease key's value: who holds it. */
struct lease_value {
	uint64_t term;			/* the holder's term (0: a region never promoted) */
	uint64_t holder;		/* its holder id (0 for term 0) */
	int32_t pid;
	char host[WIRE_HOST_MAX];
	char advertise[LEASE_ADVERTISE_MAX];	/* where clients reach the writer's
						 * service, "" none (a value of
						 * version 1) */
};

/*
 * An address a holder advertises: "HOST:PORT", HOST a DNS name or an IPv4
 * address ([A-Za-z0-9.-]) or an IPv6 one in brackets ([0-9A-Fa-f:.]), PORT
 * 1 to 65535 in decimal, at most LEASE_ADVERTISE_MAX - 1 bytes.
 */
bool lease_advertise_ok(const char *s);

struct net_lease;

/*
 * The lease bucket of stream ("pagetrack-lease-<stream>", key "writer"),
 * created with a TTL of ttl_ms (0: LEASE_DEFAULT_MS) when create is set and
 * it is missing.  The bucket's own TTL is the lease (a different ttl_ms, not
 * 0, is said at PT_LOG_WARN).
 * Returns 0, -ENOENT (no bucket and !create), -EAGAIN, or -errno.
 */
int lease_open(struct net_lease **out, struct net_conn *c, const char *stream, unsigned ttl_ms,
	       unsigned replicas, bool create);

/* The bucket's TTL in milliseconds. */
unsigned lease_ttl_ms(const struct net_lease *l);

/*
 * Read the key now, from the bucket's leader, waiting at most half a lease:
 * 1 and *v, *rev (someone holds it), 0 (nobody: it lapsed, was released or
 * was never taken; *rev the release's delete marker, 0 if none), -EAGAIN,
 * or -EBADMSG (a value that is not a
 * lease's: size, magic, version, checksum, a field out of its range, an
 * advertised address that lease_advertise_ok() refuses).
 */
int lease_read(struct net_lease *l, struct lease_value *v, uint64_t *rev);

/*
 * Take the lease for mine: when nobody holds it (create), when it is mine
 * already (same term and holder: a restarted holder), when its holder's term
 * is below void_below (a writer of a term the stream has left), or with
 * force; always by compare-and-set.  Returns 0, -EBUSY (someone else holds
 * it: lease_other() says who) or -EAGAIN.
 */
int lease_take(struct net_lease *l, const struct lease_value *mine, uint64_t void_below, bool force);

/*
 * Keep the lease from now on in a thread: renew it every TTL/3 while held,
 * else try lease_take(mine, mine->term, false) as often.  Once.
 */
int lease_keep(struct net_lease *l);

/* Stop renewing (a deposed holder): the lease lapses by itself. */
void lease_stop(struct net_lease *l);

/*
 * Stop renewing and delete the key if it still holds this holder's value
 * (a promotion that failed: the other standbys need not wait a lease).
 * The delete is not a compare-and-set (libnats 3.4 has none): a writer
 * that forced the lease over in between loses its key until its next
 * renewal, which takes it again; the fence keeps that harmless.
 */
void lease_release(struct net_lease *l);

/* Held: renewed less than a TTL ago (minus a margin), by this clock. */
bool lease_held(struct net_lease *l);

/* The holder seen when the lease was not ours: 1 and *v, or 0 (none seen). */
int lease_other(struct net_lease *l, struct lease_value *v);

/* Stop the thread, free l (NULL is fine).  The lease is not released: it
 * lapses after its TTL, so that a holder restarted at once takes it back. */
void lease_close(struct net_lease *l);

#endif /* PT_NET_LEASE_H */
