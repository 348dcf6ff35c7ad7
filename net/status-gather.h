/* SPDX-License-Identifier: MIT */
/*
 * status-gather.h - the records of a stream's followers, sent by each to
 * the bucket <stream>-status and gathered by the publisher into the
 * directory it reads, so that the writer's `pagetrack status` lists them
 * (docs/network.md, "Status records").
 */
#ifndef PT_NET_STATUS_GATHER_H
#define PT_NET_STATUS_GATHER_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct net_gather;

/* Follower: the subject its record goes to, in buf: the bucket's key
 * follower-<id>, id the XXH3-64 of its host and standby directory. */
void gather_subject(char *buf, size_t len, const char *stream, const char *host,
		    const char *dir);

/*
 * Publisher: make (or bind) the bucket, watch it, and drop the gathered
 * records a previous run left in dir.  Best effort, each request waiting
 * at most 2 s: on failure it logs why (a warning with say, else at debug
 * level) and *out is NULL (gather_run and gather_close take NULL).  It
 * uses only c's connection (thread-safe) and a copy of its options, so
 * status.c runs it in a thread of its own.
 */
void gather_open(struct net_gather **out, struct net_conn *c, const char *dir,
		 const char *stream, unsigned int replicas, bool say);

/*
 * Take what the bucket sent since the last call: each record checked
 * whole (key, size, every field, the stream's name, history = history or
 * not known yet) before it is written to dir as
 * net-status-follower-<stream>@<id>; one not renewed for a minute goes.
 */
void gather_run(struct net_gather *g, uint64_t history);

void gather_close(struct net_gather *g);

#endif /* PT_NET_STATUS_GATHER_H */
