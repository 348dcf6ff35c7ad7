/* SPDX-License-Identifier: MIT */
/*
 * status.h - the status record a publisher or a follower keeps in the
 * directory it serves (status.c has both halves: the writer the handles
 * call and pt_net_status_read(); the format is in docs/network.md).
 */
#ifndef PT_NET_STATUS_H
#define PT_NET_STATUS_H

#include "conn.h"

#define NET_STATUS_INTERVAL_MS	1000

struct net_status;

/*
 * A writer for dir's record of (role, stream).  Nothing is written yet.
 * Returns 0 and *out, or -ENOMEM (with the last error set).
 */
int net_status_open(struct net_status **out, const char *dir, enum pt_net_role role,
		    const char *stream);

/*
 * The hooks the handles call: at open (ret 0), in their run loops and as a
 * run returns (ret: the run's result, or 0 inside the loop), and before
 * they close (closing: the record is marked stopped).  The record is
 * written when closing, when ret is an error the record does not hold yet,
 * or when NET_STATUS_INTERVAL_MS passed since the last write; a failed
 * write is logged (once per error) and never changes the handle's result.
 * The follower passes its connection to tell its lag in epochs (it asks
 * the stream's last message only when messages are pending).
 */
void net_status_publisher(struct net_status *s, const struct pt_publisher *p, int ret,
			  bool closing);
void net_status_follower(struct net_status *s, const struct pt_follower *f,
			 struct net_conn *conn, int ret, bool closing);

/*
 * Publisher: gather the records its stream's followers send (each to the
 * bucket <stream>-status, beside its own directory's record) into the
 * publisher's directory, at each write of its record (status-gather.c).
 * Best effort: a bucket that cannot be made is logged, nothing else.
 */
void net_status_gather(struct net_status *s, struct net_conn *c, unsigned int replicas);

void net_status_close(struct net_status *s);

/* Write the STATUS_SIZE bytes b as dirfd's file name: to name.tmp
 * (created 0600, no link followed, no FIFO waited on), renamed over name.
 * 0 or -errno. */
int status_file_put(int dirfd, const char *name, const unsigned char *b);

#endif /* PT_NET_STATUS_H */
