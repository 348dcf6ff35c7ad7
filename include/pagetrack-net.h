/* SPDX-License-Identifier: MIT */
/*
 * pagetrack-net.h - the public header of libpagetrack-net: regions followed
 * from other machines through a NATS JetStream stream.
 *
 * A publisher reads a region's data directory (as a local replica does: it
 * never slows the writer) and appends every epoch to a JetStream stream, as
 * one or more messages (pages XORed with their previous content and LZ4
 * compressed, checksummed end to end).  A follower on another machine reads
 * the stream and keeps a standby region directory whose records are the
 * source's, byte for byte (same history, same chain): local replicas,
 * `pagetrack status` and `verify` work on it unchanged.  The wire format, the
 * guarantees and what happens on each failure are in docs/network.md.
 *
 * Link with -lpagetrack-net -lpagetrack.  Conventions are those of
 * pagetrack.h: int-returning calls return >= 0 on success and -errno on
 * failure; option structs start with sz; the library never prints (see
 * pt_net_set_log() and pt_net_last_error()).
 */
#ifndef PAGETRACK_NET_H
#define PAGETRACK_NET_H

#include <stddef.h>
#include <stdint.h>

#include "pagetrack.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The newest wire format these calls read (docs/network.md): they read 1
 * to 4.  A publisher writes 2 (version 1 and an HMAC-SHA256 of each
 * message) when it has a key, else 1, which older followers read too; a
 * promotion (failover) writes a term marker as 3, or 4 with a key.
 */
#define PT_NET_WIRE_VERSION 4

/*
 * Progress of a follower's catch-up from a snapshot (docs/network.md): the
 * pages it transfers, reported after each batch and at the end, so that a
 * program can show a long catch-up (`pagetrack follow` does on a terminal).
 */
struct pt_net_progress {
	size_t sz;			/* sizeof(struct pt_net_progress), set by the library */
	pt_epoch_t from;		/* the standby's epoch (0: a new standby) */
	pt_epoch_t to;			/* the snapshot's */
	uint64_t pages_done;		/* pages transferred and checked so far */
	uint64_t pages_total;		/* pages newer than `from`: all that travel */
	uint64_t bytes_wire;		/* bytes read from the bucket so far */
};

typedef void (*pt_net_progress_fn)(const struct pt_net_progress *p, void *arg);

/* Every field's zero value means its default; NULL options mean all defaults
 * (and then no URL: the calls need one). */
struct pt_net_opts {
	size_t sz;			/* sizeof(struct pt_net_opts) */
	const char *urls;		/* "nats://host:port[,nats://host:port...]", required */
	const char *stream;		/* the JetStream stream; publisher: default
					 * "pagetrack-<history id in hex>"; follower:
					 * required */
	unsigned int replicas;		/* publisher, when it creates the stream: its
					 * replicas (1-5), default 1 */
	const char *user;		/* user/password authentication */
	const char *password;
	const char *creds_file;		/* or a NATS credentials file (JWT + nkey seed) */
	const char *tls_ca;		/* TLS: trusted CA certificates (PEM); setting any
					 * of the three turns TLS on */
	const char *tls_cert;		/* client certificate chain (PEM), with tls_key */
	const char *tls_key;
	unsigned int connect_timeout_ms;	/* per connection attempt, default 2000 */
	unsigned int request_timeout_ms;	/* a publish's acknowledgement and other
						 * JetStream requests, default 5000 */
	/* Fields added with snapshots (docs/network.md, "Snapshot"). */
	int64_t max_msgs;		/* publisher, when it creates the stream: keep at
					 * most this many messages (the oldest go);
					 * 0: no limit */
	int64_t max_bytes;		/* likewise in bytes; 0: no limit */
	unsigned int snapshot_interval_ms;	/* publisher: update the snapshot at
						 * most this often while epochs come,
						 * default 10000; sooner when half of
						 * max_msgs or max_bytes went by */
	pt_net_progress_fn progress;	/* follower: catch-up progress (NULL: none) */
	void *progress_arg;
	/* Authenticity independent of the servers: an HMAC-SHA256 of every
	 * message and every value of the snapshot with a key both sides
	 * share.  A publisher with a key adds one to each (wire version 2,
	 * snapshot values version 2); a follower with a key refuses a message
	 * or value without one or with a wrong one (-EKEYREJECTED), a
	 * follower without a key refuses one that has one (-ENOKEY).
	 * The bytes are copied at open. */
	const void *hmac_key;		/* NULL: none */
	size_t hmac_key_len;		/* 16 to 1024 bytes (0 with no key) */
	/* Follower: the standby region's pt_region_opts.retain_bytes and
	 * segment_bytes, when it creates it and each time it reopens it;
	 * 0: the region's defaults (64 MiB each).  A publisher refuses them. */
	uint64_t standby_retain_bytes;
	uint64_t standby_segment_bytes;
	unsigned int lease_ms;		/* the writer's lease (failover, see below):
					 * publisher: hold it, with this TTL when it
					 * creates the lease bucket (0: hold none);
					 * follower: the TTL a promotion creates the
					 * bucket with if missing (0: 1000).  100 to
					 * 600000; the bucket's own TTL wins */
	/* Failover, the clients' side: where the writer's service (an
	 * engine's port) is reached, "HOST:PORT" (HOST a DNS name, an IPv4
	 * address or an IPv6 one in brackets; at most 63 bytes).  Stored with
	 * the lease by its holder, a publisher holding it or a standby
	 * promoting itself, for pt_net_lease_read() to find; NULL: none
	 * (a publisher refuses one without lease_ms).
	 * Read when the lease is taken: by pt_publisher_open() and by
	 * pt_follower_promote(), until which the string must stay valid. */
	const char *advertise;
	/* How often each connection pings its server, two unanswered pings
	 * making it reconnect to another URL: how soon a server lost without
	 * a FIN (its host cut off) is noticed.  0: 1000; 100 to 60000. */
	unsigned int ping_ms;
};

/*
 * The message of the last failure of a call of this library in the calling
 * thread (what failed, the stream and sequence concerned, the server's
 * words), "" when none.  Valid until the thread's next call.  Never NULL.
 */
const char *pt_net_last_error(void);

/*
 * Route the library's diagnostics (connections lost and regained, resumes,
 * refusals) to fn for messages at or below max_level; NULL (the default)
 * silences them.  Process-wide; call it before opening handles.
 */
void pt_net_set_log(pt_log_fn fn, enum pt_log_level max_level, void *arg);

/* ------------------------------------------------------------------ */
/* Publisher                                                           */
/* ------------------------------------------------------------------ */

struct pt_publisher;

/*
 * Publish the region in dir to a stream.  The source is a PT_REPLICA_DELTAS
 * replica of dir (read-only access to its files, plus the file `replicated`
 * it writes for the writer's PT_LEVEL_REPLICATED waits).  Connects, creates
 * the stream if it is missing (file storage, opts->replicas), and reads the
 * stream's last message: the publisher goes on after it (a stream holding
 * epochs 1..N of this region gets N+1 next; a half-published epoch is
 * completed from its missing parts).  The region's log need not hold the
 * epochs the stream already has: when a checkpoint dropped them, the source
 * starts from the region's image (pt_replica_jump); when the image is past
 * the stream's last epoch J, the publisher writes the snapshot at the
 * image's epoch and the stream goes on after it.
 *
 * The snapshot: the publisher keeps the region in the JetStream key-value
 * bucket "<stream>-snapshot" (created with the stream's replicas): each
 * page with its generation and checksum, page tables, a manifest written
 * last; updated with the pages that changed every snapshot_interval_ms
 * while epochs come, or once half of max_msgs or max_bytes went by.
 *
 * Returns 0 and *out, or:
 *  -EINVAL       no URL, bad options (unknown non-zero bytes after the
 *                fields this library knows), a bad stream name;
 *  -ECONNREFUSED no server could be reached;
 *  -EACCES       the server refused the credentials (or TLS failed);
 *  -ESTALE       the stream holds another history's epochs;
 *  -EOWNERDEAD   the stream holds an epoch of this history that this region
 *                wrote differently (another writer of the same history), or
 *                its newest term marker is of a newer term than the region's
 *                writer (a standby was promoted): the region is marked
 *                deposed;
 *  -EINPROGRESS  the region was promoted to a term (pt_replicated_get_term)
 *                whose marker the stream does not hold: that promotion did
 *                not complete (promote the directory again);
 *  -EPROTO       the stream's last message is of another wire version;
 *  -EBADMSG      the stream's last message fails its checks;
 *  -ENOTSUP      the server has no JetStream;
 *  the errors of pt_replica_open() and pt_replicated_open(), -ENOMEM.
 * pt_net_last_error() says exactly what failed.
 */
int pt_publisher_open(struct pt_publisher **out, const char *dir, const struct pt_net_opts *opts);

/*
 * Publish every epoch the region made since the last call, waiting up to
 * timeout_ms (0: not at all, -1: forever) for a first one; returns after
 * about timeout_ms even when epochs keep coming.  Messages are pipelined:
 * up to 64 messages (16 MiB) are sent before their acknowledgements come,
 * each expecting the stream's sequence and message id of the one before it,
 * so the stream stores them in order or not at all.  As soon as the last
 * part of an epoch, and every message before it, is acknowledged, the epoch
 * is reported in the region's `replicated` file (PT_LEVEL_REPLICATED).  The
 * call returns once every message it sent is answered.
 *
 * Returns the number of epochs published and acknowledged (>= 0), or
 * -errno:
 *  -EAGAIN       a publish or a request failed or timed out (connection
 *                lost, a cluster electing a leader): nothing is lost; call
 *                again, the publisher re-reads the stream's last message and
 *                sends again, after it, the messages the stream lacks; or,
 *                with a lease, the publisher does not hold the writer's
 *                lease (held by another, or not renewed in time): it
 *                publishes nothing until it holds it again;
 *  -EOWNERDEAD   fenced: another publisher appended to the stream (a
 *                message was refused for its expected last sequence, error
 *                10071, or message id, 10070, and the stream's last message
 *                is not one this publisher sent), the stream holds a
 *                different version of an epoch, or a standby was promoted
 *                (a term marker newer than the region's term); the region
 *                is marked deposed (pt_replicated_depose: its
 *                PT_LEVEL_REPLICATED waits return -EOWNERDEAD) and the
 *                publisher stops: every later call returns the same;
 *  -ESTALE       the stream went back behind this publisher and the region
 *                no longer holds what it lacks;
 *  -EMSGSIZE     the server's max payload cannot hold one page;
 *  -EINVAL       timeout_ms negative and not -1;
 *  the errors of pt_replica_step().
 * Errors other than -EAGAIN are kept: later calls return them again.
 */
int pt_publisher_run(struct pt_publisher *p, int timeout_ms);

struct pt_publisher_stats {
	size_t sz;			/* sizeof(struct pt_publisher_stats), set by the caller */
	uint64_t history_id;
	pt_epoch_t epoch;		/* newest epoch the stream acknowledged */
	uint64_t stream_seq;		/* the stream's last sequence as this publisher knows it */
	uint64_t epochs;		/* epochs published by this handle */
	uint64_t messages;		/* messages acknowledged */
	uint64_t pages;			/* pages published */
	uint64_t pages_unchanged;	/* of which sent as "unchanged" (no bytes) */
	uint64_t pages_raw;		/* of which sent whole (did not compress) */
	uint64_t bytes_raw;		/* pages * page size */
	uint64_t bytes_wire;		/* message bytes (headers and bodies) */
	uint64_t retries;		/* runs that failed with -EAGAIN and resumed */
	int last_error;			/* the last run's error, 0: none */
	char stream[64];		/* the stream's name */
	/* The snapshot in the cluster (fields added with it). */
	pt_epoch_t snapshot_epoch;	/* epoch of the snapshot this handle last wrote */
	uint64_t snapshot_updates;	/* updates written */
	uint64_t snapshot_pages;	/* pages put by them (only changed ones) */
	uint64_t snapshot_bytes;	/* bytes put (pages, tables, manifests) */
	uint64_t caught_up_ns;		/* when a run last found no epoch left to publish
					 * (CLOCK_REALTIME ns), or the handle was opened if
					 * none did yet: the lag in time counts from it */
	uint64_t term;			/* the region's writer term (0: never promoted) */
	int lease_held;			/* 1 holds the writer's lease, 0 waits for it,
					 * -1 holds none (opts.lease_ms 0) */
};

/* Fill *st; returns 0 or -EINVAL (NULL, sz too small). */
int pt_publisher_stats(const struct pt_publisher *p, struct pt_publisher_stats *st);

/* Disconnect and free p (NULL is fine).  Returns 0. */
int pt_publisher_close(struct pt_publisher *p);

/* ------------------------------------------------------------------ */
/* Follower                                                            */
/* ------------------------------------------------------------------ */

struct pt_follower;

/*
 * Keep dir as a standby region directory fed by the stream opts->stream.
 * If dir holds a region, it is opened as its writer (pt_region_open) and
 * its epoch is the follower's position: the follower finds the stream
 * sequence of the next epoch.  If not, the region is created when the first
 * epoch (which must be epoch 1) has been received and checked, with the
 * stream's history and size.  The standby runs PT_DURABLE_NONE: the
 * follower makes its epochs durable itself, in batches (pt_follower_run).
 * When the stream no longer holds the standby's next epoch (trimmed by its
 * limits, or a new follower on a stream that no longer starts at epoch 1),
 * the follower's first run catches up from the publisher's snapshot: only
 * the pages whose generation is above the standby's epoch travel, each
 * checked, installed by pt_region_jump(); then it goes on from the stream.
 * opts->progress sees the pages done and total.
 *
 * Returns 0 and *out, or:
 *  -EINVAL, -ECONNREFUSED, -EACCES, -ENOTSUP  as for pt_publisher_open()
 *                (a stream name is required);
 *  -ENOENT       the stream does not exist;
 *  -ESTALE       dir's region is of another history than the stream;
 *  the errors of pt_region_open(), -ENOMEM.
 */
int pt_follower_open(struct pt_follower **out, const char *dir, const struct pt_net_opts *opts);

/*
 * Apply every whole epoch the stream holds after the standby's, waiting up
 * to timeout_ms (0: not at all, -1: forever) for the first message; returns
 * after about timeout_ms even when epochs keep coming.  Each message is
 * checked whole before use (magic, version, both checksums, history, epoch,
 * chain, parts in order, page indices, lengths, decoded sizes); an epoch's
 * pages are written into the standby, and pt_region_sync()ed, only once
 * its last part is checked and the record they make (pt_delta_chain) has
 * the stream's chain; the standby's record must then have it too.
 *
 * Durability in batches: the epochs applied are made durable together (one
 * fdatasync) as soon as no further message is waiting, and while messages
 * keep coming at least every 256 epochs, 16 MiB of pages or 20 ms.  Past
 * timeout_ms a call finishes the batch of epochs already received (at most
 * 20 ms more; a call with timeout_ms 0 takes one epoch).  Before it
 * returns, whatever it returns, every epoch it applied is durable: its
 * count and stats.epoch only ever name durable epochs.  A follower killed
 * in between loses at most the epochs applied since the last sync (the
 * standby recovers whole records only), never one it reported, and goes on
 * from the standby's epoch when opened again.
 *
 * Returns the number of epochs applied, all durable (>= 0), or -errno:
 *  -EAGAIN       the connection or the consumer failed: call again, it
 *                resumes after the standby's epoch; or the stream no longer
 *                holds the standby's next epoch and the snapshot does not
 *                reach it yet (the publisher updates it): call again;
 *  -EBADMSG      a message fails its checks (magic, checksum, lengths, an
 *                impossible page index or encoding), or an epoch's pages do
 *                not make the chain its messages claim (forged, with valid
 *                checksums), or a value of the snapshot's bucket fails its
 *                checks: nothing of it applied;
 *  -EPROTO       a message of another wire version, or a value of the
 *                snapshot of another format version;
 *  -ESTALE       a message, or the snapshot, of another history;
 *  -EKEYREJECTED, -ENOKEY  a message's or a snapshot value's HMAC (see
 *                hmac_key);
 *  -EILSEQ       a message out of order: not the next epoch or part, or an
 *                epoch that does not chain to the standby's, or a later
 *                epoch inside the stream that no snapshot accounts for;
 *  -ENOTRECOVERABLE  the standby's record of an epoch does not have the
 *                stream's chain although its pages made it before they
 *                were written (a bug: the standby holds that epoch; stop and
 *                investigate);
 *  -EINVAL       timeout_ms negative and not -1;
 *  the errors of pt_region_create(), pt_region_sync(), pt_region_jump()
 *                and of making the epochs durable (pt_region_wait: -ENOSPC,
 *                -EIO...).
 * pt_net_last_error() names the stream sequence.  Errors other than -EAGAIN
 * are kept: the follower stops, and later calls return them again.
 */
int pt_follower_run(struct pt_follower *f, int timeout_ms);

struct pt_follower_stats {
	size_t sz;			/* sizeof(struct pt_follower_stats), set by the caller */
	uint64_t history_id;		/* 0 until known */
	pt_epoch_t epoch;		/* the standby's epoch, durable */
	uint64_t stream_seq;		/* sequence of the last message used */
	uint64_t pending;		/* messages the stream holds after it (as of the
					 * last message received) */
	uint64_t epochs;		/* epochs applied by this handle */
	uint64_t messages;
	uint64_t pages;
	uint64_t bytes_raw;		/* pages * page size */
	uint64_t bytes_wire;		/* message bytes */
	int64_t lag_ms;			/* when `epoch` became durable, minus the
					 * publisher's clock when it sent it (clocks of
					 * two hosts: rough) */
	uint64_t retries;		/* runs that failed with -EAGAIN and resumed */
	int last_error;
	char stream[64];
	/* Catch-ups from the snapshot (fields added with it). */
	uint64_t snapshot_catchups;	/* catch-ups done */
	uint64_t snapshot_pages;	/* pages they transferred (only newer ones) */
	uint64_t snapshot_bytes;	/* bytes they read from the bucket */
	pt_epoch_t snapshot_from, snapshot_to;	/* the last one's epochs */
	uint64_t syncs;			/* fdatasyncs of the standby the follower asked
					 * for: epochs / syncs is its batching */
};

/* Fill *st; returns 0 or -EINVAL. */
int pt_follower_stats(const struct pt_follower *f, struct pt_follower_stats *st);

/*
 * Disconnect, close the standby region (pt_region_close: its epochs
 * durable) and free f (NULL is fine).  Returns 0 or pt_region_close()'s
 * error.
 */
int pt_follower_close(struct pt_follower *f);

/* ------------------------------------------------------------------ */
/* Status records                                                      */
/* ------------------------------------------------------------------ */

/*
 * Every publisher and follower handle keeps a status record in the
 * directory it serves (a publisher in the region's data directory, a
 * follower in its standby directory, once the standby exists): the file
 * net-status-publisher-STREAM or net-status-follower-STREAM, mode 0600,
 * replaced whole (written to a .tmp file, then renamed), not fsynced.  It
 * is written at open, by the run calls at most once a second (and at once
 * when a run fails with another error than the record holds), and at
 * close, which marks it stopped.  pt_net_status_read() lists them; it is
 * what `pagetrack status` shows.
 *
 * A follower also sends its record to the key-value bucket
 * <stream>-status, and the stream's publisher writes each one it gets
 * (checked whole) into the directory it reads, as
 * net-status-follower-<stream>@<id> (id: 16 hex digits of the follower's
 * host and directory), renewed as they come, removed a minute after the
 * last and when the publisher closes: the writer's directory lists the
 * followers of its stream on every host.
 */
enum pt_net_role {
	PT_NET_PUBLISHER = 1,
	PT_NET_FOLLOWER = 2,
};

enum pt_net_state {
	PT_NET_LIVE = 1,	/* updated in the last PT_NET_STALE_MS by a process alive */
	PT_NET_STOPPED,		/* its handle was closed: the record is its last word */
	PT_NET_GONE,		/* its process (on this host) is not alive: killed or crashed */
	PT_NET_STALE,		/* not updated for PT_NET_STALE_MS (its process hangs, or
				 * runs on another host, or stopped calling the run call) */
};

#define PT_NET_STALE_MS		10000
#define PT_NET_LAG_UNKNOWN	UINT64_MAX

/* One record as pt_net_status_read() found it; strings valid during the call. */
struct pt_net_status {
	const char *file;		/* its file name in the directory */
	int error;			/* 0: the record checks; else why it cannot be
					 * used (-EBADMSG, -EPROTO, -EPERM, -EMEDIUMTYPE,
					 * -ENODATA...): only file and message are set */
	const char *message;		/* with error: what is wrong, one line; else "" */
	enum pt_net_role role;
	enum pt_net_state state;	/* judged by the reader, see enum pt_net_state */
	int32_t pid;			/* the writing process, on host */
	const char *host;
	const char *stream;
	uint64_t history_id;		/* 0: not known yet (a follower before epoch 1) */
	pt_epoch_t epoch;		/* publisher: newest epoch the stream acknowledged;
					 * follower: the standby's */
	uint64_t stream_seq;		/* the stream's sequence of that epoch's last part */
	uint64_t lag_epochs;		/* publisher: epochs the region is ahead; follower:
					 * whole epochs the stream holds after the standby's;
					 * PT_NET_LAG_UNKNOWN when it could not be told */
	int64_t lag_ms;			/* publisher: ms since it last had published every
					 * epoch of the region (0: it has); follower: the last
					 * applied epoch's, now minus the publisher's clock
					 * when it sent it */
	uint64_t epochs, messages, pages, bytes_raw, bytes_wire, retries;	/* the
					 * handle's totals (its stats) */
	uint64_t bytes_raw_per_s;	/* page bytes a second, over the interval before */
	uint64_t bytes_wire_per_s;	/* message bytes a second, the same interval */
	int last_error;			/* the last run's error that was not 0 (-errno), 0: none */
	const char *last_error_text;	/* its pt_net_last_error() text, "" none */
	uint64_t last_error_ns;		/* when (CLOCK_REALTIME ns), 0: none */
	uint64_t started_ns;		/* when the handle was opened */
	uint64_t updated_ns;		/* when the record was written */
	uint64_t age_ms;		/* now minus updated_ns (0 if the clock went back) */
	int gathered;			/* 1: a follower's record its stream's publisher
					 * wrote here (file ...@<id>); 0: the record of
					 * a handle serving this directory */
};

typedef int (*pt_net_status_fn)(const struct pt_net_status *s, void *arg);

/*
 * Call fn for each status record in dir (net-status-*, .tmp files
 * skipped), in the order of their names.  Each file is read with the
 * checks of the core's readers: opened without following links or
 * blocking, only a regular file of the directory's owner that no one else
 * can write, and the record checks whole (magic, version, size, checksum,
 * every field); a file that fails is still passed to fn, with error and a
 * message, and the others go on.  Returns 0, fn's non-zero value, or
 * -errno: -EINVAL (NULL), -ENOTDIR (dir is a symbolic link or no
 * directory), -EPERM (dir writable by others or another user's), -ENOENT,
 * -ENOMEM.
 */
int pt_net_status_read(const char *dir, pt_net_status_fn fn, void *arg);

/* ------------------------------------------------------------------ */
/* Failover                                                            */
/* ------------------------------------------------------------------ */

/*
 * A standby takes over from a writer whose host is gone: exactly one
 * writer at a time, the old one unable to report anything replicated once
 * replaced, no epoch lost that was reported replicated.  The coordination
 * is JetStream's (docs/network.md, "Failover"):
 *
 *  - the writer's lease: the key "writer" in the key-value bucket
 *    pagetrack-lease-<stream>, whose TTL is the lease; a publisher with
 *    opts.lease_ms holds it (compare-and-set, renewed every TTL/3) and
 *    publishes only while it does; a standby watches it
 *    (pt_follower_lease) and may promote itself once it lapses;
 *  - the fence: a promotion appends a term marker to the stream with the
 *    expected last sequence of the last message it applied, so the new
 *    term starts after every epoch the stream stored, and every later
 *    publish of the old writer is refused; its publisher finds the marker
 *    and deposes its region (PT_LEVEL_REPLICATED waits: -EOWNERDEAD).
 */

/* The writer's lease as pt_follower_lease() read it. */
struct pt_lease_info {
	size_t sz;			/* sizeof(struct pt_lease_info), set by the caller */
	uint64_t term;			/* the holder's term (0: a region never promoted) */
	uint64_t holder;		/* the holder id of that term (0 for term 0) */
	uint64_t revision;		/* the key's revision */
	int32_t pid;			/* the holder's process, on host */
	char host[32];
	unsigned int ttl_ms;		/* the lease (the bucket's TTL) */
	uint64_t stream_term;		/* the stream's newest term marker's (0: none) */
	char advertise[64];		/* the address its holder advertises
					 * (opts.advertise, checked as it says),
					 * "" none (field added with it) */
};

/*
 * Read the writer's lease of f's stream now.  Returns 1 (held: *info
 * filled), 0 (lapsed: nobody holds it, or its holder is of an older term
 * than the stream's newest term marker: a deposed writer), or -errno:
 *  -ENOENT       there is no lease bucket: the writer holds no lease (a
 *                publisher without opts.lease_ms), nothing to watch;
 *  -EAGAIN       the server did not answer;
 *  -EBADMSG      the key holds something that is not a lease;
 *  -EINVAL       NULL, sz too small.
 */
int pt_follower_lease(struct pt_follower *f, struct pt_lease_info *info);

#define PT_PROMOTE_FORCE	1u	/* take the lease from a writer that still holds it */

struct pt_promote_opts {
	size_t sz;			/* sizeof(struct pt_promote_opts) */
	unsigned int flags;		/* PT_PROMOTE_* */
	unsigned int timeout_ms;	/* to catch up and append the marker,
					 * default 30000 */
};

struct pt_promote_info {
	size_t sz;			/* sizeof(struct pt_promote_info), set by the caller */
	uint64_t term;			/* the term won */
	uint64_t holder;		/* its holder id (recorded in the directory) */
	pt_epoch_t epoch;		/* the last epoch of the old term: the directory's */
	uint64_t stream_seq;		/* the term marker's sequence */
	uint64_t applied;		/* epochs applied while promoting */
	uint64_t elapsed_ms;
};

/*
 * Turn f's standby directory into the writable region of a new term:
 *  1. take the writer's lease by compare-and-set, for the term after the
 *     newest the stream, the lease and the directory know (-EBUSY when a
 *     writer holds it, unless PT_PROMOTE_FORCE); it is renewed from then
 *     on, until pt_follower_close();
 *  2. apply every epoch the stream holds (the standby must then be at the
 *     stream's last whole epoch, with its chain);
 *  3. record the term in the directory (pt_replicated_set_term), durable;
 *  4. append the term marker with the expected last sequence of the last
 *     message applied; if the stream moved meanwhile (the old writer was
 *     still publishing), apply what came and try again, until timeout_ms;
 *  5. close the standby region: the directory is an ordinary region
 *     directory, its epoch the old term's last, for a writer
 *     (pt_region_open) and a publisher (which holds the lease and
 *     publishes from the next epoch).
 * f follows no more: later runs return -EALREADY.  Keep f open until the
 * publisher on the directory is open: f renews the lease meanwhile.
 *
 * Returns 0 and *info (may be NULL), or -errno:
 *  -EBUSY        the lease is held by a live writer (no PT_PROMOTE_FORCE),
 *                another standby took it first, or was promoted meanwhile;
 *  -ENODATA      the stream holds no epoch: nothing to take over;
 *  -ESTALE       the standby is of another history than the stream, or holds
 *                epochs the stream does not (it is ahead, or another
 *                version of the stream's last epoch: not a standby of this
 *                stream);
 *  -ETIMEDOUT    not caught up with the stream within timeout_ms (the old
 *                writer kept publishing, or the stream no longer holds the
 *                standby's next epoch and no snapshot is past that gap yet:
 *                the message says which);
 *  -EALREADY     f was promoted already;
 *  -EINVAL       bad options;
 *  the errors of pt_follower_run() (the standby could not apply an epoch)
 *  and of pt_replicated_set_term().
 * pt_net_last_error() says what happened.
 */
int pt_follower_promote(struct pt_follower *f, const struct pt_promote_opts *po,
			struct pt_promote_info *info);

/*
 * pt_follower_open(dir, opts), pt_follower_promote() and
 * pt_follower_close(): the directory of a follower that is not running.
 * The lease is then renewed until the call returns: open the directory's
 * publisher within a lease, or another standby may take over.  Returns as
 * pt_follower_promote(), and the errors of pt_follower_open().
 */
int pt_dir_promote(const char *dir, const struct pt_net_opts *opts,
		   const struct pt_promote_opts *po, struct pt_promote_info *info);

/*
 * Read the writer's lease of opts->stream now, without a follower: what a
 * client of the writer's service calls to find where it runs (the address
 * the holder advertises), at start and after losing it.  Connects with
 * opts (urls, stream, auth, TLS, connect and request timeouts; hmac_key
 * to authenticate the term markers), reads the lease and the stream's
 * newest term marker, disconnects.  Every field of the value is checked (a
 * value without an address, of a writer of an older release, is read with
 * advertise "").  Returns as pt_follower_lease(): 1 (held: *info filled,
 * advertise "" when the holder gives none), 0 (nobody holds it, or a
 * deposed writer of an older term than the stream's newest marker: *info
 * filled as far as known, treat it as no writer), or -errno:
 *  -ENOENT       no lease bucket for the stream (its writer holds no lease);
 *  -EBADMSG      the key holds something that is not a lease, or a marker
 *                that fails its checks;
 *  -EAGAIN       the server did not answer;
 *  -EINVAL       NULL, sz too small, no URL or stream, a bad stream name;
 *  -ECONNREFUSED, -EACCES  as pt_follower_open().
 */
int pt_net_lease_read(const struct pt_net_opts *opts, struct pt_lease_info *info);

#ifdef __cplusplus
}
#endif

#endif /* PAGETRACK_NET_H */
