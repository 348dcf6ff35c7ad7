/* SPDX-License-Identifier: MIT */
/*
 * snapshot.h - the snapshot a publisher keeps in the cluster (a JetStream
 * key-value bucket: the region's pages with their generations, page tables,
 * a manifest) and a follower's catch-up from it when the stream no longer
 * holds the epochs it lacks.  Both halves are in snapshot.c; the format is
 * in docs/network.md, "Snapshot".
 */
#ifndef PT_NET_SNAPSHOT_H
#define PT_NET_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "wire.h"

/* ---- publisher ---------------------------------------------------------- */

struct snap_pub;

/*
 * Bind (or create: file storage, the stream's replicas, one value per key)
 * the bucket of the stream's snapshot.  The first update reads what the
 * bucket holds and puts only what differs.  key: the publisher's (kept, it
 * must outlive the handle; len 0: none): with one, every value carries an
 * HMAC (snapshot-format.h), and values without it or with another key's
 * are put again.  0 or -errno (net_fail set).
 */
int snap_pub_open(struct snap_pub **out, struct net_conn *c, const struct pt_net_opts *o,
		  const struct wire_key *key, const char *stream, uint64_t history, uint64_t npages,
		  uint32_t page_size);
void snap_pub_close(struct snap_pub *s);

/* Time for an update: the interval passed, or half the stream's max_msgs
 * or max_bytes went by since the last one (st: the publisher's counts). */
bool snap_pub_due(const struct snap_pub *s, const struct pt_publisher_stats *st,
		  pt_epoch_t source_epoch);

/*
 * Make the bucket the snapshot of src at its epoch: the pages whose
 * version changed since the bucket's, then the page tables that changed,
 * then the manifest (a reader trusts nothing the manifest does not
 * name).  Counts go to st.  0, -EAGAIN (a put failed: the next update
 * reads the bucket again), or another -errno.
 */
int snap_pub_update(struct snap_pub *s, struct pt_replica *src, struct pt_publisher_stats *st);

/* The epoch and chain of the snapshot this handle last wrote (0: none). */
pt_epoch_t snap_pub_epoch(const struct snap_pub *s, uint64_t *chain);

/* ---- follower ------------------------------------------------------------ */

/* Where the stream stops holding what the standby needs. */
struct snap_gap {
	uint64_t epoch;			/* the first epoch the stream has after the standby's */
	uint32_t part;			/* of the message found there (not 0: its start is gone) */
	uint64_t prev_chain;		/* that message's prev_chain */
	uint64_t npages;		/* the region's size, as that message says */
	uint64_t seq;			/* its sequence */
	bool trimmed;			/* the stream starts there: older ones are gone,
					 * not a gap the publisher made */
};

/*
 * Bring the standby (*standby, NULL: none yet, created here with the
 * snapshot's history and size) to the snapshot's epoch: read and check the
 * manifest and page tables, transfer the pages whose generation is above
 * the standby's epoch, check each, and install them with pt_region_jump().
 * key: the follower's (len 0: none); every value's MAC is checked with it
 * before the value is used.  Nothing reaches the standby unless everything
 * checked.  Returns 0 (the standby is at the snapshot's epoch), or -errno
 * with net_fail's message (which names the bucket and the key):
 *  -EAGAIN   no snapshot yet, or one that does not reach past the gap (the
 *            publisher updates it), or it changed under the transfer too
 *            often: call again later;
 *  -EILSEQ   a gap inside the stream no snapshot accounts for;
 *  -EBADMSG  a value of the bucket fails its checks;
 *  -EPROTO   a value of a snapshot format this library does not read;
 *  -ENOKEY   a value with an HMAC, and no key;
 *  -EKEYREJECTED  a value without an HMAC and a key, or whose HMAC the key
 *            does not verify;
 *  -ESTALE   the snapshot is of another history than the standby;
 *  -EXDEV    of another page size;
 *  the errors of pt_region_create() and pt_region_jump().
 */
int snap_catch_up(struct net_conn *c, const struct pt_net_opts *o, const struct wire_key *key,
		  const char *stream, const char *dir, struct pt_region **standby,
		  const struct snap_gap *gap, struct pt_follower_stats *st);

#endif /* PT_NET_SNAPSHOT_H */
