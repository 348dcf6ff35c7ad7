/* SPDX-License-Identifier: MIT */
/*
 * status-gather.c - the followers of a stream, listed in the writer's
 * directory.  Each follower sends its status record (the 512 bytes it
 * writes in its standby directory, status.c) to the key-value bucket
 * <stream>-status, key follower-<id>, at each write: a plain publish,
 * never waited for.  The publisher watches the bucket and writes each
 * record it receives into the directory it reads, as
 * net-status-follower-<stream>@<id>, beside its own: pt_net_status_read()
 * and `pagetrack status` list them as they list the local records.
 *
 * What comes from the bucket is network input: anyone allowed to publish
 * there can put anything.  A value is written only if its key is
 * follower-<16 hex digits>, it is exactly one record that checks whole
 * (status_record_get: checksum, every field) under the file's name (so a
 * follower's record of this stream), and its history is the stream's (or
 * not known yet); else it is passed over, said once.  At most GATHER_MAX
 * followers are listed.  A record not renewed for GATHER_FORGET_MS goes
 * (the bucket's TTL drops it too), and all go when the publisher closes;
 * the reader's judgement (live, stale, gone, stopped) applies to the rest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "status-gather.h"
#include "status-record.h"
#include "status.h"
#include "wire.h"

#define GATHER_MAX		64		/* followers listed, at most */
#define GATHER_FORGET_MS	60000		/* a record not renewed for this long goes */
#define GATHER_BUCKET_BYTES	(1 << 20)	/* the bucket's size, at most */
#define KEY_PREFIX		"follower-"

struct gathered {
	char id[STATUS_ID_LEN + 1];
	uint64_t seen_ms;		/* CLOCK_MONOTONIC of its last record */
};

/* The bucket's requests (its lookup, creation and watcher) wait at most
 * this long; the open runs in a thread of its own (status.c), and a failed
 * one is tried again later. */
#define GATHER_WAIT_MS		2000

struct net_gather {
	struct net_conn *c;
	jsCtx *js;			/* GATHER_WAIT_MS */
	kvStore *kv;
	kvWatcher *w;
	int dirfd;
	char bucket[96];
	char base[128];			/* net-status-follower-<stream> */
	struct gathered v[GATHER_MAX];
	size_t n;
	bool said_bad, said_full, said_write;
};

static void bucket_name(char *buf, size_t len, const char *stream)
{
	snprintf(buf, len, "%s-status", stream);
}

void gather_subject(char *buf, size_t len, const char *stream, const char *host,
		    const char *dir)
{
	char bucket[96], who[2 * PATH_MAX];
	size_t h = strnlen(host, PATH_MAX - 1), d = strnlen(dir, PATH_MAX - 1);

	/* The host, a NUL, the directory: one follower, one key. */
	memcpy(who, host, h);
	who[h] = 0;
	memcpy(who + h + 1, dir, d);
	bucket_name(bucket, sizeof(bucket), stream);
	snprintf(buf, len, "$KV.%s." KEY_PREFIX "%016llx", bucket,
		 (unsigned long long)wire_checksum(who, h + 1 + d));
}

/* Remove the gathered records: at open those a previous run left (they
 * come back from the bucket if their followers still send them), at close
 * all. */
static void drop_old(struct net_gather *g)
{
	struct dirent *de;
	int fd = dup(g->dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);	/* the offset is shared with dirfd: read before */
	while ((de = readdir(d)))
		if (status_gathered_name(de->d_name, g->base))
			unlinkat(g->dirfd, de->d_name, 0);
	closedir(d);
}

void gather_open(struct net_gather **out, struct net_conn *c, const char *dir,
		 const char *stream, unsigned int replicas, bool say)
{
	struct net_gather *g = calloc(1, sizeof(*g));
	jsOptions jo = c->jsopts;
	kvWatchOptions wo;
	natsStatus s;

	*out = NULL;
	if (!g) {
		net_log(PT_LOG_WARN, "stream %s: followers not listed: out of memory", stream);
		return;
	}
	g->dirfd = -1;
	g->c = c;
	bucket_name(g->bucket, sizeof(g->bucket), stream);
	snprintf(g->base, sizeof(g->base), STATUS_PREFIX "%s-%s", status_role_name(PT_NET_FOLLOWER),
		 stream);
	g->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (g->dirfd < 0) {
		net_log(PT_LOG_WARN, "%s: followers not listed: %s", dir, strerror(errno));
		goto fail;
	}
	if (jo.Wait <= 0 || jo.Wait > GATHER_WAIT_MS)
		jo.Wait = GATHER_WAIT_MS;
	s = natsConnection_JetStream(&g->js, c->nc, &jo);
	if (s != NATS_OK) {
		g->js = NULL;
		goto failed;
	}
	s = js_KeyValue(&g->kv, g->js, g->bucket);
	if (s == NATS_NOT_FOUND) {
		kvConfig cfg;

		kvConfig_Init(&cfg);
		cfg.Bucket = g->bucket;
		cfg.History = 1;
		cfg.TTL = (int64_t)GATHER_FORGET_MS * 1000000;
		cfg.MaxValueSize = STATUS_SIZE;
		cfg.MaxBytes = GATHER_BUCKET_BYTES;
		cfg.StorageType = js_MemoryStorage;
		cfg.Replicas = (int)(replicas ? replicas : 1);
		s = js_CreateKeyValue(&g->kv, g->js, &cfg);
		if (s != NATS_OK)	/* made by another meanwhile, maybe otherwise */
			s = js_KeyValue(&g->kv, g->js, g->bucket);
	}
	if (s == NATS_OK) {
		kvWatchOptions_Init(&wo);
		wo.IgnoreDeletes = true;
		s = kvStore_WatchAll(&g->w, g->kv, &wo);
	}
failed:
	if (s != NATS_OK) {
		net_log(say ? PT_LOG_WARN : PT_LOG_DEBUG, "bucket %s: followers not listed: %s%s",
			g->bucket, net_status_text(s), say ? " (trying again every 10 s)" : "");
		goto fail;
	}
	drop_old(g);
	*out = g;
	return;
fail:
	gather_close(g);
}

/* The key's id (follower-<16 lowercase hex digits>), or NULL. */
static const char *key_id(const char *key)
{
	size_t n = strlen(KEY_PREFIX);

	if (!key || strncmp(key, KEY_PREFIX, n) || strlen(key + n) != STATUS_ID_LEN)
		return NULL;
	for (const char *p = key + n; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return NULL;
	return key + n;
}

/* One value from the bucket, checked: 0 and its file's name, or why not. */
static int check(struct net_gather *g, kvEntry *e, uint64_t history, char *name, size_t name_len,
		 char *why, size_t why_len)
{
	const char *id = key_id(kvEntry_Key(e));
	const unsigned char *val = kvEntry_Value(e);
	int len = kvEntry_ValueLen(e);
	struct status_record r;

	if (!id) {
		snprintf(why, why_len, "not a follower's key");
		return -EBADMSG;
	}
	snprintf(name, name_len, "%s@%s", g->base, id);
	if (len != STATUS_SIZE || !val) {
		snprintf(why, why_len, "%d bytes, a record has %d", len, STATUS_SIZE);
		return -EBADMSG;
	}
	if (status_record_get(val, (size_t)len, name, &r, why, why_len))
		return -EBADMSG;
	if (history && r.st.history_id && r.st.history_id != history) {
		snprintf(why, why_len, "history %016llx, the stream's is %016llx",
			 (unsigned long long)r.st.history_id, (unsigned long long)history);
		return -ESTALE;
	}
	return 0;
}

/* One value from the bucket: checked, then written. */
static void take(struct net_gather *g, kvEntry *e, uint64_t history)
{
	char name[NAME_MAX + 1], why[256];
	const char *id;
	size_t i;
	int err;

	if (kvEntry_Operation(e) != kvOp_Put)
		return;
	if (check(g, e, history, name, sizeof(name), why, sizeof(why))) {
		if (!g->said_bad)
			net_log(PT_LOG_WARN, "bucket %s: key %.80s: %s: not listed (said once)",
				g->bucket, kvEntry_Key(e), why);
		g->said_bad = true;
		return;
	}
	id = strchr(name, '@') + 1;
	for (i = 0; i < g->n && strcmp(g->v[i].id, id); i++)
		;
	if (i == g->n) {
		if (g->n == GATHER_MAX) {
			if (!g->said_full)
				net_log(PT_LOG_WARN, "bucket %s: more than %d followers: %s not "
					"listed (said once)", g->bucket, GATHER_MAX, kvEntry_Key(e));
			g->said_full = true;
			return;
		}
		snprintf(g->v[g->n++].id, sizeof(g->v[0].id), "%s", id);
	}
	g->v[i].seen_ms = net_mono_ms();
	err = status_file_put(g->dirfd, name, kvEntry_Value(e));
	if (err && !g->said_write)
		net_log(PT_LOG_WARN, "writing %s: %s (said once)", name, strerror(-err));
	g->said_write = g->said_write || err;
}

void gather_run(struct net_gather *g, uint64_t history)
{
	uint64_t now;
	kvEntry *e;

	if (!g)
		return;
	/* What arrived, without waiting (a millisecond, once a record);
	 * bounded: the next run takes the rest. */
	for (int k = 0; k < 4 * GATHER_MAX; k++) {
		e = NULL;
		if (kvWatcher_Next(&e, g->w, 1) != NATS_OK)
			break;
		if (e) {
			take(g, e, history);
			kvEntry_Destroy(e);
		}
	}
	now = net_mono_ms();
	for (size_t i = 0; i < g->n;) {
		char name[NAME_MAX + 1];

		if (now - g->v[i].seen_ms < GATHER_FORGET_MS) {
			i++;
			continue;
		}
		snprintf(name, sizeof(name), "%s@%s", g->base, g->v[i].id);
		unlinkat(g->dirfd, name, 0);
		g->v[i] = g->v[--g->n];
	}
}

void gather_close(struct net_gather *g)
{
	if (!g)
		return;
	/* No one renews them now. */
	if (g->dirfd >= 0)
		drop_old(g);
	net_watcher_drop(g->c, g->w);
	if (g->kv)
		kvStore_Destroy(g->kv);
	if (g->js)
		jsCtx_Destroy(g->js);
	if (g->dirfd >= 0)
		close(g->dirfd);
	free(g);
}
