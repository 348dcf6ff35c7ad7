/* SPDX-License-Identifier: MIT */
/*
 * status-record.c - the status record's format, both halves: the block a
 * publisher or a follower writes (status_record_put) and the checks of
 * pt_net_status_read (status_record_get).  A fixed 512-byte block,
 * little-endian, with its magic, version and checksum (docs/network.md,
 * "Status records").  The reader trusts nothing in it: anyone able to
 * write the directory's files could have made it, and a checksum is no
 * proof of sense, so every field is checked before a caller sees it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "status-record.h"
#include "wire.h"

#define STATUS_MAGIC		"PTNSTAT"	/* 8 bytes with its NUL */
#define STATUS_VERSION		1

/* Field offsets (docs/network.md). */
enum {
	OFF_VERSION = 8, OFF_ROLE = 10, OFF_SIZE = 12, OFF_PID = 16, OFF_FLAGS = 20,
	OFF_INTERVAL = 24, OFF_LAST_ERROR = 28, OFF_HISTORY = 32, OFF_EPOCH = 40,
	OFF_SEQ = 48, OFF_LAG_EPOCHS = 56, OFF_LAG_MS = 64, OFF_EPOCHS = 72,
	OFF_MESSAGES = 80, OFF_PAGES = 88, OFF_RAW = 96, OFF_WIRE = 104, OFF_RETRIES = 112,
	OFF_RAW_RATE = 120, OFF_WIRE_RATE = 128, OFF_STARTED = 136, OFF_UPDATED = 144,
	OFF_ERROR_NS = 152, OFF_RESERVED = 160, OFF_HOST = 192, OFF_STREAM = 256,
	OFF_ERROR_TEXT = 320, OFF_CHECKSUM = 504,
	HOST_LEN = STATUS_HOST_LEN, STREAM_LEN = STATUS_STREAM_LEN,
	ERROR_TEXT_LEN = STATUS_ERROR_TEXT_LEN,
};

const char *status_role_name(enum pt_net_role role)
{
	return role == PT_NET_PUBLISHER ? "publisher" : "follower";
}

static void put_string(unsigned char *p, size_t len, const char *s)
{
	size_t n = strnlen(s, len - 1);

	memcpy(p, s, n);	/* the block is zeroed: the rest stays NUL */
}

void status_record_put(unsigned char *b, const struct status_record *r)
{
	const struct pt_net_status *st = &r->st;

	memset(b, 0, STATUS_SIZE);
	memcpy(b, STATUS_MAGIC, 8);
	wire_put16(b + OFF_VERSION, STATUS_VERSION);
	wire_put16(b + OFF_ROLE, (uint16_t)st->role);
	wire_put32(b + OFF_SIZE, STATUS_SIZE);
	wire_put32(b + OFF_PID, (uint32_t)st->pid);
	wire_put32(b + OFF_FLAGS, r->flags);
	wire_put32(b + OFF_INTERVAL, r->interval_ms);
	wire_put32(b + OFF_LAST_ERROR, (uint32_t)st->last_error);
	wire_put64(b + OFF_HISTORY, st->history_id);
	wire_put64(b + OFF_EPOCH, (uint64_t)st->epoch);
	wire_put64(b + OFF_SEQ, st->stream_seq);
	wire_put64(b + OFF_LAG_EPOCHS, st->lag_epochs);
	wire_put64(b + OFF_LAG_MS, (uint64_t)st->lag_ms);
	wire_put64(b + OFF_EPOCHS, st->epochs);
	wire_put64(b + OFF_MESSAGES, st->messages);
	wire_put64(b + OFF_PAGES, st->pages);
	wire_put64(b + OFF_RAW, st->bytes_raw);
	wire_put64(b + OFF_WIRE, st->bytes_wire);
	wire_put64(b + OFF_RETRIES, st->retries);
	wire_put64(b + OFF_RAW_RATE, st->bytes_raw_per_s);
	wire_put64(b + OFF_WIRE_RATE, st->bytes_wire_per_s);
	wire_put64(b + OFF_STARTED, st->started_ns);
	wire_put64(b + OFF_UPDATED, st->updated_ns);
	wire_put64(b + OFF_ERROR_NS, st->last_error_ns);
	put_string(b + OFF_HOST, HOST_LEN, st->host);
	put_string(b + OFF_STREAM, STREAM_LEN, st->stream);
	put_string(b + OFF_ERROR_TEXT, ERROR_TEXT_LEN, st->last_error_text);
	status_record_seal(b);
}

void status_record_seal(unsigned char *b)
{
	wire_put64(b + OFF_CHECKSUM, wire_checksum(b, OFF_CHECKSUM));
}

/* A string field: NUL-terminated inside it, zeros after, no control byte. */
static const char *get_string(const unsigned char *p, size_t len)
{
	size_t n = strnlen((const char *)p, len);

	if (n == len)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return NULL;
	for (size_t i = n; i < len; i++)
		if (p[i])
			return NULL;
	return (const char *)p;
}

bool status_gathered_name(const char *name, const char *base)
{
	size_t n = strlen(base);

	if (strncmp(name, base, n) || name[n] != '@' || strlen(name + n + 1) != STATUS_ID_LEN)
		return false;
	for (const char *p = name + n + 1; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

int status_record_get(const unsigned char *b, size_t len, const char *name,
		      struct status_record *r, char *why, size_t why_len)
{
	struct pt_net_status *st = &r->st;
	char want[NAME_MAX + 1];
	uint64_t sum;

	memset(r, 0, sizeof(*r));
	if (len < STATUS_SIZE) {
		snprintf(why, why_len, "%zu bytes, a record has %d (torn or cut short)", len,
			 STATUS_SIZE);
		return -ENODATA;
	}
	if (memcmp(b, STATUS_MAGIC, 8)) {
		snprintf(why, why_len, "bad magic (not a status record)");
		return -EBADMSG;
	}
	if (wire_get16(b + OFF_VERSION) != STATUS_VERSION) {
		snprintf(why, why_len, "record version %u, this library reads %u",
			 wire_get16(b + OFF_VERSION), STATUS_VERSION);
		return -EPROTO;
	}
	if (len != STATUS_SIZE || wire_get32(b + OFF_SIZE) != STATUS_SIZE) {
		snprintf(why, why_len, "%zu bytes, size field %u, want %d", len,
			 wire_get32(b + OFF_SIZE), STATUS_SIZE);
		return -EBADMSG;
	}
	sum = wire_checksum(b, OFF_CHECKSUM);
	if (sum != wire_get64(b + OFF_CHECKSUM)) {
		snprintf(why, why_len, "checksum %016llx, computed %016llx",
			 (unsigned long long)wire_get64(b + OFF_CHECKSUM), (unsigned long long)sum);
		return -EBADMSG;
	}
	st->role = (enum pt_net_role)wire_get16(b + OFF_ROLE);
	st->pid = (int32_t)wire_get32(b + OFF_PID);
	r->flags = wire_get32(b + OFF_FLAGS);
	r->interval_ms = wire_get32(b + OFF_INTERVAL);
	st->last_error = (int)wire_get32(b + OFF_LAST_ERROR);
	st->history_id = wire_get64(b + OFF_HISTORY);
	st->epoch = (pt_epoch_t)wire_get64(b + OFF_EPOCH);
	st->stream_seq = wire_get64(b + OFF_SEQ);
	st->lag_epochs = wire_get64(b + OFF_LAG_EPOCHS);
	st->lag_ms = (int64_t)wire_get64(b + OFF_LAG_MS);
	st->epochs = wire_get64(b + OFF_EPOCHS);
	st->messages = wire_get64(b + OFF_MESSAGES);
	st->pages = wire_get64(b + OFF_PAGES);
	st->bytes_raw = wire_get64(b + OFF_RAW);
	st->bytes_wire = wire_get64(b + OFF_WIRE);
	st->retries = wire_get64(b + OFF_RETRIES);
	st->bytes_raw_per_s = wire_get64(b + OFF_RAW_RATE);
	st->bytes_wire_per_s = wire_get64(b + OFF_WIRE_RATE);
	st->started_ns = wire_get64(b + OFF_STARTED);
	st->updated_ns = wire_get64(b + OFF_UPDATED);
	st->last_error_ns = wire_get64(b + OFF_ERROR_NS);
	st->host = get_string(b + OFF_HOST, HOST_LEN);
	st->stream = get_string(b + OFF_STREAM, STREAM_LEN);
	st->last_error_text = get_string(b + OFF_ERROR_TEXT, ERROR_TEXT_LEN);
	/* A checksum is no proof of sense: a record made by a bug or by hand
	 * must not show impossible figures as if they were. */
	for (size_t i = OFF_RESERVED; i < OFF_HOST; i++)
		if (b[i]) {
			snprintf(why, why_len, "reserved bytes not zero");
			return -EBADMSG;
		}
	if (!st->host || !st->stream || !st->last_error_text || !net_stream_name_ok(st->stream)) {
		snprintf(why, why_len, "a host, stream or error text that is not a string");
		return -EBADMSG;
	}
	if ((st->role != PT_NET_PUBLISHER && st->role != PT_NET_FOLLOWER) || st->pid <= 0 ||
	    (r->flags & ~STATUS_FLAG_CLOSED) || st->last_error > 0 || st->last_error < -4095 ||
	    st->epoch < 0 || st->lag_ms < 0 || !r->interval_ms ||
	    st->updated_ns < st->started_ns || (!st->last_error) != (!st->last_error_ns)) {
		snprintf(why, why_len, "impossible fields (role %u, pid %d, flags %#x, error %d, "
			 "epoch %lld)", (unsigned)st->role, st->pid, r->flags, st->last_error,
			 (long long)st->epoch);
		return -EBADMSG;
	}
	snprintf(want, sizeof(want), STATUS_PREFIX "%s-%s", status_role_name(st->role), st->stream);
	if (strcmp(want, name) && !(st->role == PT_NET_FOLLOWER && status_gathered_name(name, want))) {
		snprintf(why, why_len, "a record of the %s of stream %s under another name",
			 status_role_name(st->role), st->stream);
		return -EBADMSG;
	}
	return 0;
}
