/* SPDX-License-Identifier: MIT */
/*
 * status-record.h - the status record's format (docs/network.md, "Status
 * records"): a fixed block, both halves (encoding and checking) in
 * status-record.c.  Pure functions of their buffers: status.c writes and
 * reads the files, the fuzz target calls the check on bytes of its own.
 */
#ifndef PT_NET_STATUS_RECORD_H
#define PT_NET_STATUS_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pagetrack-net.h"

#define STATUS_SIZE		512
#define STATUS_PREFIX		"net-status-"	/* then <role>-<stream>, and for a
						 * follower's record a publisher
						 * gathered, @<its id> */
#define STATUS_TMP_SUFFIX	".tmp"
#define STATUS_ID_LEN		16		/* a gathered record's id: hex digits */
#define STATUS_FLAG_CLOSED	1u
#define STATUS_HOST_LEN		64		/* the string fields, NUL included */
#define STATUS_STREAM_LEN	64
#define STATUS_ERROR_TEXT_LEN	184

/* A record decoded, or to be encoded: its strings point into the block
 * (decoded) or the writer's buffers (encoded). */
struct status_record {
	struct pt_net_status st;
	uint32_t flags;
	uint32_t interval_ms;
};

/* "publisher" or "follower", as the record's file name says it. */
const char *status_role_name(enum pt_net_role role);

/* Encode r as a STATUS_SIZE block at b, its checksum last. */
void status_record_put(unsigned char *b, const struct status_record *r);

/* Write the checksum of the STATUS_SIZE block b (the last step of status_record_put). */
void status_record_seal(unsigned char *b);

/* name is base@<STATUS_ID_LEN lowercase hex digits>: a follower's record a
 * publisher gathered (status-gather.c). */
bool status_gathered_name(const char *name, const char *base);

/*
 * Decode and check block b (len bytes read) of the file `name`: size,
 * magic, version, checksum, every field possible (strings NUL-terminated
 * without control bytes, a valid stream name, role, pid, error, times) and
 * `name` the one the record's role and stream give (a follower's, or
 * gathered: with @<id>).  Returns 0, or -EBADMSG / -EPROTO (another
 * version) / -ENODATA (short: torn or cut), with why.
 */
int status_record_get(const unsigned char *b, size_t len, const char *name,
		      struct status_record *r, char *why, size_t why_len);

#endif /* PT_NET_STATUS_RECORD_H */
