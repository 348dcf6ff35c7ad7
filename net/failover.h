/* SPDX-License-Identifier: MIT */
/*
 * failover.h - what promote.c needs of a follower (follower.c): its
 * connection, stream, directory and position, the lease it watches or
 * holds, and a way to let go of the standby region once promoted.
 */
#ifndef PT_NET_FAILOVER_H
#define PT_NET_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "wire.h"

struct net_lease;

struct net_conn *follower_conn(struct pt_follower *f);
const char *follower_stream(const struct pt_follower *f);
const char *follower_dir(const struct pt_follower *f);
const struct pt_net_opts *follower_opts(const struct pt_follower *f);
/* The follower's lease slot: NULL until promote.c opens it; closed with f. */
struct net_lease **follower_lease(struct pt_follower *f);
/* The standby's history (0: unknown), epoch and chain; true when the
 * standby region exists. */
bool follower_position(const struct pt_follower *f, uint64_t *history, uint64_t *epoch,
		       uint64_t *chain);
/* The follower's HMAC key (len 0: none): a marker is sealed with it. */
const struct wire_key *follower_key(const struct pt_follower *f);
/* The follower's kept error (-EALREADY once promoted), 0: none. */
int follower_error(const struct pt_follower *f);
/* Unsubscribe and close the standby region (its epochs durable); every
 * later run returns -EALREADY with why.  Returns pt_region_close()'s. */
int follower_release(struct pt_follower *f, const char *why);

#endif /* PT_NET_FAILOVER_H */
