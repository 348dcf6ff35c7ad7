/* SPDX-License-Identifier: MIT */
/*
 * status.c - the status record of a publisher or a follower, both halves:
 * the writer the handles call (net_status_*) and the reader
 * pt_net_status_read() that `pagetrack status` is built on.
 *
 * The record is a fixed 512-byte block (docs/network.md, "Status
 * records"; its format and checks are in status-record.c), in the
 * directory the handle serves: net-status-<role>-<stream>.  It is
 * replaced whole: written to net-status-<role>-<stream>.tmp (created 0600
 * without following links, truncated), then renamed over the record, so
 * a reader sees the old record or the new one, never half of each.  It is
 * not fsynced: it says how things are, and a record lost or torn by a
 * crash is reported as such by the reader, which trusts nothing in the
 * file: the checks of the core's readers (a regular file of the
 * directory's owner that no one else can write, opened without blocking),
 * then magic, version, size, checksum and every field
 * (status_record_get).
 *
 * Whether the writer still runs is the reader's judgement: the record
 * holds its pid and host; a record of this host whose pid is gone is
 * "gone", one not rewritten for PT_NET_STALE_MS is "stale" (the writer
 * rewrites it every NET_STATUS_INTERVAL_MS while its run calls run).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "status-gather.h"
#include "status-record.h"
#include "status.h"
#include "wire.h"

/* A publisher whose followers' bucket did not open tries again this often,
 * from its status updates (each try in a thread of its own). */
#define GATHER_RETRY_MS	10000

/* ------------------------------------------------------------------ */
/* The writer                                                          */
/* ------------------------------------------------------------------ */

struct net_status {
	char dir[PATH_MAX];
	int dirfd;			/* -1 until the directory exists */
	char name[128];			/* net-status-<role>-<stream>: at most 85 */
	char remote[192];		/* follower: the subject of its record in the
					 * stream's status bucket (status-gather.c) */
	struct net_gather *gather;	/* publisher: the followers' records */
	struct net_conn *gather_conn;	/* to open it again with, if it failed */
	unsigned int gather_replicas;
	uint64_t gather_next_ms;	/* CLOCK_MONOTONIC of the next try */
	pthread_t opener;		/* opening it, off the publisher's path */
	bool opening;			/* opener runs (or ran, not joined yet) */
	bool opener_says;		/* its failure is a warning (the first) */
	bool opened;			/* opener done: its result in gather_new */
	struct net_gather *gather_new;
	struct status_record rec;
	char host[STATUS_HOST_LEN];
	char stream[STATUS_STREAM_LEN];
	char error_text[STATUS_ERROR_TEXT_LEN];
	bool written;			/* the record was written once */
	uint64_t last_ms;		/* CLOCK_MONOTONIC of the last write */
	uint64_t last_raw, last_wire;	/* the totals then */
	int write_error;		/* the last failed write's, logged once */
};

/* The record's strings hold no control byte (a reader refuses one). */
static void no_control(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

int net_status_open(struct net_status **out, const char *dir, enum pt_net_role role,
		    const char *stream)
{
	struct net_status *s = calloc(1, sizeof(*s));

	*out = NULL;
	if (!s)
		return net_fail(-ENOMEM, "out of memory");
	s->dirfd = -1;
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	snprintf(s->stream, sizeof(s->stream), "%s", stream);
	snprintf(s->name, sizeof(s->name), STATUS_PREFIX "%s-%s", status_role_name(role), s->stream);
	if (gethostname(s->host, sizeof(s->host) - 1))
		snprintf(s->host, sizeof(s->host), "unknown");
	no_control(s->host);
	if (role == PT_NET_FOLLOWER)
		gather_subject(s->remote, sizeof(s->remote), s->stream, s->host, s->dir);
	s->rec.st.role = role;
	s->rec.st.pid = (int32_t)getpid();
	s->rec.st.host = s->host;
	s->rec.st.stream = s->stream;
	s->rec.st.last_error_text = s->error_text;
	s->rec.st.started_ns = net_now_ns();
	s->rec.interval_ms = NET_STATUS_INTERVAL_MS;
	*out = s;
	return 0;
}

/* The opener: the bucket, its watcher and the directory's old records,
 * in a thread of its own, so that a cluster slow to answer (a consumer
 * needs the metadata leader, 4 to 9 s to elect after a lost node) never
 * holds up the publisher's open or runs. */
static void *opener(void *arg)
{
	struct net_status *s = arg;
	struct net_gather *g;

	gather_open(&g, s->gather_conn, s->dir, s->stream, s->gather_replicas, s->opener_says);
	s->gather_new = g;
	__atomic_store_n(&s->opened, true, __ATOMIC_RELEASE);
	return NULL;
}

static void start_opener(struct net_status *s, bool say)
{
	s->opener_says = say;
	s->opened = false;
	s->gather_new = NULL;
	if (!pthread_create(&s->opener, NULL, opener, s)) {
		s->opening = true;
		return;
	}
	gather_open(&s->gather, s->gather_conn, s->dir, s->stream, s->gather_replicas, say);
	s->gather_next_ms = net_mono_ms() + GATHER_RETRY_MS;
}

/* The opener's result, once it is done: taken, the thread joined. */
static void take_opened(struct net_status *s)
{
	if (!s->opening || !__atomic_load_n(&s->opened, __ATOMIC_ACQUIRE))
		return;
	pthread_join(s->opener, NULL);
	s->opening = false;
	s->gather = s->gather_new;
	s->gather_new = NULL;
	s->gather_next_ms = net_mono_ms() + GATHER_RETRY_MS;
	if (s->gather && !s->opener_says)
		net_log(PT_LOG_INFO, "stream %s: the followers are listed now", s->stream);
}

void net_status_gather(struct net_status *s, struct net_conn *c, unsigned int replicas)
{
	s->gather_conn = c;
	s->gather_replicas = replicas;
	start_opener(s, true);
}

void net_status_close(struct net_status *s)
{
	if (!s)
		return;
	if (s->opening) {
		pthread_join(s->opener, NULL);
		gather_close(s->gather_new);
	}
	gather_close(s->gather);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s);
}

int status_file_put(int dirfd, const char *name, const unsigned char *b)
{
	char tmp[NAME_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s" STATUS_TMP_SUFFIX, name) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	/* O_NOFOLLOW and O_NONBLOCK: a link or a FIFO put in the temporary
	 * file's place is refused, never written through or waited on. */
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
		    0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		err = -EMEDIUMTYPE;
	else if (fchmod(fd, 0600))
		err = -errno;
	else if ((n = pwrite(fd, b, STATUS_SIZE, 0)) != (ssize_t)STATUS_SIZE)
		err = n < 0 ? -errno : -EIO;
	if (close(fd) && !err)
		err = -errno;
	if (!err && renameat(dirfd, tmp, dirfd, name))
		err = -errno;
	return err;
}

/* Write the record b (the directory once it exists): 0 or -errno. */
static int write_record(struct net_status *s, const unsigned char *b)
{
	if (s->dirfd < 0) {
		/* A follower's standby is created with its first epoch. */
		s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (s->dirfd < 0)
			return errno == ENOENT ? 0 : -errno;
	}
	return status_file_put(s->dirfd, s->name, b);
}

/*
 * Note a run's error (its text is this thread's last error: the run failed
 * just now), and say whether the record is to be written now: at close, at
 * first, on another error than it holds, or once an interval passed.
 */
static bool due(struct net_status *s, int ret, bool closing)
{
	if (ret < 0) {
		bool another = ret != s->rec.st.last_error;

		s->rec.st.last_error = ret;
		s->rec.st.last_error_ns = net_now_ns();
		snprintf(s->error_text, sizeof(s->error_text), "%s", pt_net_last_error());
		no_control(s->error_text);
		if (another)
			return true;
	}
	return closing || !s->written || net_mono_ms() - s->last_ms >= NET_STATUS_INTERVAL_MS;
}

/* Write the record with the figures filled in, the rates over the interval
 * since the last write; a failure is logged once per error.  A follower's
 * record goes to the stream's status bucket too (conn: its connection),
 * for the publisher to gather; not waited for, nor retried. */
static void write_now(struct net_status *s, bool closing, struct net_conn *conn)
{
	struct pt_net_status *st = &s->rec.st;
	uint64_t now = net_mono_ms(), ms = now - s->last_ms;
	unsigned char b[STATUS_SIZE];
	int err;

	if (s->written && ms) {
		st->bytes_raw_per_s = (st->bytes_raw - s->last_raw) * 1000 / ms;
		st->bytes_wire_per_s = (st->bytes_wire - s->last_wire) * 1000 / ms;
	}
	st->updated_ns = net_now_ns();
	if (closing)
		s->rec.flags |= STATUS_FLAG_CLOSED;
	status_record_put(b, &s->rec);
	if (conn && conn->nc && s->remote[0])
		natsConnection_Publish(conn->nc, s->remote, b, STATUS_SIZE);
	err = write_record(s, b);
	if (err && err != s->write_error)
		net_log(PT_LOG_WARN, "%s: writing the status record %s: %s", s->dir, s->name,
			strerror(-err));
	s->write_error = err;
	s->written = true;
	s->last_ms = now;
	s->last_raw = st->bytes_raw;
	s->last_wire = st->bytes_wire;
}

void net_status_publisher(struct net_status *s, const struct pt_publisher *p, int ret,
			  bool closing)
{
	struct pt_publisher_stats ps = { .sz = sizeof(ps) };
	struct pt_net_status *st = &s->rec.st;
	pt_epoch_t published;

	if (!due(s, ret, closing) || pt_publisher_stats(p, &ps))
		return;
	st->history_id = ps.history_id;
	st->epoch = ps.epoch;
	st->stream_seq = ps.stream_seq;
	st->epochs = ps.epochs;
	st->messages = ps.messages;
	st->pages = ps.pages;
	st->bytes_raw = ps.bytes_raw;
	st->bytes_wire = ps.bytes_wire;
	st->retries = ps.retries;
	/* The writer's state block only: no log read once a second. */
	published = pt_dir_epoch(s->dir);
	if (published < 0) {
		st->lag_epochs = PT_NET_LAG_UNKNOWN;
		st->lag_ms = 0;
	} else {
		st->lag_epochs = published > ps.epoch ? (uint64_t)(published - ps.epoch) : 0;
		st->lag_ms = 0;
		if (st->lag_epochs) {
			uint64_t now = net_now_ns();

			st->lag_ms = now > ps.caught_up_ns ?
				(int64_t)((now - ps.caught_up_ns) / 1000000) : 0;
		}
	}
	write_now(s, closing, NULL);
	take_opened(s);
	if (!s->gather && !s->opening && s->gather_conn && !closing &&
	    net_mono_ms() >= s->gather_next_ms)
		start_opener(s, false);
	gather_run(s->gather, ps.history_id);
}

/*
 * The stream's last whole epoch, for a follower's lag: asked of the
 * server (its last message) only when messages are pending, so at most
 * once a record and only while behind, with a short wait so that a slow
 * server does not hold the run up.  0 or -errno.
 */
static int stream_last_epoch(struct net_status *s, struct net_conn *c, uint64_t history,
			     uint64_t *epoch)
{
	jsOptions o = c->jsopts;
	struct wire_header h;
	jsErrCode jerr = 0;
	natsMsg *m = NULL;
	char why[256];
	natsStatus ns;
	int err;

	if (o.Wait > NET_STATUS_INTERVAL_MS / 2)
		o.Wait = NET_STATUS_INTERVAL_MS / 2;
	ns = js_GetLastMsg(&m, c->js, s->stream, c->subject, &o, &jerr);
	if (ns != NATS_OK)
		return -EAGAIN;
	err = wire_check(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &h, why, sizeof(why));
	natsMsg_Destroy(m);
	if (err || (history && h.history_id != history))
		return -EBADMSG;
	*epoch = h.flags & WIRE_FLAG_LAST ? h.epoch : h.epoch - 1;
	return 0;
}

void net_status_follower(struct net_status *s, const struct pt_follower *f,
			 struct net_conn *conn, int ret, bool closing)
{
	struct pt_follower_stats fs = { .sz = sizeof(fs) };
	struct pt_net_status *st = &s->rec.st;
	uint64_t last;

	if (!due(s, ret, closing) || pt_follower_stats(f, &fs))
		return;
	st->history_id = fs.history_id;
	st->epoch = fs.epoch;
	st->stream_seq = fs.stream_seq;
	st->epochs = fs.epochs;
	st->messages = fs.messages;
	st->pages = fs.pages;
	st->bytes_raw = fs.bytes_raw;
	st->bytes_wire = fs.bytes_wire;
	st->retries = fs.retries;
	st->lag_ms = fs.lag_ms > 0 ? fs.lag_ms : 0;
	/* Nothing pending after the last message received: every whole epoch
	 * the stream has is applied (the last message may be part of one the
	 * publisher is still sending). */
	if (!fs.pending || closing || !conn || !conn->js) {
		st->lag_epochs = fs.pending ? PT_NET_LAG_UNKNOWN : 0;
	} else if (!stream_last_epoch(s, conn, fs.history_id, &last)) {
		st->lag_epochs = last > (uint64_t)fs.epoch ? last - (uint64_t)fs.epoch : 0;
	} else {
		st->lag_epochs = PT_NET_LAG_UNKNOWN;
	}
	write_now(s, closing, conn);
}

/* ------------------------------------------------------------------ */
/* The reader                                                          */
/* ------------------------------------------------------------------ */

static bool same_host(const char *host)
{
	char mine[STATUS_HOST_LEN] = "";

	if (gethostname(mine, sizeof(mine) - 1))
		return false;
	return !strcmp(mine, host);
}

static enum pt_net_state judge(const struct status_record *r)
{
	const struct pt_net_status *st = &r->st;

	if (r->flags & STATUS_FLAG_CLOSED)
		return PT_NET_STOPPED;
	/* EPERM: alive, another user's. */
	if (same_host(st->host) && kill(st->pid, 0) && errno == ESRCH)
		return PT_NET_GONE;
	if (st->age_ms > PT_NET_STALE_MS)
		return PT_NET_STALE;
	return PT_NET_LIVE;
}

/*
 * Open and read `name` as the core's readers read a region's files: no
 * link followed, no blocking (a FIFO is refused), a regular file of the
 * directory's owner that no one else can write.  Returns bytes read (up to
 * len; more than STATUS_SIZE if the file is larger) or -errno with why.
 */
static ssize_t read_checked(int dirfd, const char *name, uid_t owner, unsigned char *b,
			    size_t len, char *why, size_t why_len)
{
	struct stat st;
	ssize_t n, total = 0;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int err = errno == ELOOP ? -EMEDIUMTYPE : -errno;

		snprintf(why, why_len, "%s", err == -EMEDIUMTYPE ? "a symbolic link" :
			 strerror(-err));
		return err;
	}
	if (fstat(fd, &st)) {
		snprintf(why, why_len, "%s", strerror(errno));
		close(fd);
		return -EIO;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "not a regular file");
		close(fd);
		return -EMEDIUMTYPE;
	}
	if (st.st_uid != owner || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		snprintf(why, why_len, "owned by uid %u (the directory's owner is %u), mode %03o: "
			 "not trusted", (unsigned)st.st_uid, (unsigned)owner,
			 (unsigned)(st.st_mode & 0777));
		close(fd);
		return -EPERM;
	}
	while ((size_t)total < len) {
		n = pread(fd, b + total, len - (size_t)total, total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(why, why_len, "%s", strerror(errno));
			close(fd);
			return -EIO;
		}
		if (!n)
			break;
		total += n;
	}
	close(fd);
	return total;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_record_name(const char *name)
{
	size_t n = strlen(name), t = strlen(STATUS_TMP_SUFFIX);

	return !strncmp(name, STATUS_PREFIX, strlen(STATUS_PREFIX)) &&
	       !(n >= t && !strcmp(name + n - t, STATUS_TMP_SUFFIX));
}

/* The names of the records in dirfd, sorted; *count of them.  0 or -errno. */
static int list_records(int dirfd, char ***out, size_t *count)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int fd, err = 0;
	DIR *d;

	*out = NULL;
	*count = 0;
	fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		if (!is_record_name(de->d_name))
			continue;
		if (n == cap) {
			char **v = realloc(names, (cap ? cap * 2 : 8) * sizeof(*v));

			if (!v) {
				err = -ENOMEM;
				break;
			}
			names = v;
			cap = cap ? cap * 2 : 8;
		}
		names[n] = strdup(de->d_name);
		if (!names[n]) {
			err = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (err) {
		while (n)
			free(names[--n]);
		free(names);
		return err;
	}
	if (n)
		qsort(names, n, sizeof(*names), by_name);
	*out = names;
	*count = n;
	return 0;
}

PT_EXPORT int pt_net_status_read(const char *dir, pt_net_status_fn fn, void *arg)
{
	unsigned char b[STATUS_SIZE + 1];
	struct stat dst;
	char **names = NULL;
	size_t count = 0;
	int dirfd, ret = 0;

	if (!dir || !fn)
		return net_fail(-EINVAL, "status: NULL directory or function");
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0) {
		ret = errno == ELOOP ? -ENOTDIR : -errno;
		return net_fail(ret, "%s: %s", dir, strerror(-ret));
	}
	/* The core's rule for a data directory: someone else able to replace
	 * its files could make them say anything. */
	if (fstat(dirfd, &dst)) {
		ret = net_fail(-errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	if ((dst.st_mode & (S_IWGRP | S_IWOTH)) || (dst.st_uid != geteuid() && geteuid() != 0)) {
		ret = net_fail(-EPERM, "%s: writable by others or another user's (uid %u, mode %03o)",
			       dir, (unsigned)dst.st_uid, (unsigned)(dst.st_mode & 0777));
		goto out;
	}
	ret = list_records(dirfd, &names, &count);
	if (ret) {
		ret = net_fail(ret, "%s: listing it: %s", dir, strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < count && !ret; i++) {
		struct status_record r;
		char why[256] = "";
		ssize_t n = read_checked(dirfd, names[i], dst.st_uid, b, sizeof(b), why, sizeof(why));
		int err = n < 0 ? (int)n : status_record_get(b, (size_t)n, names[i], &r, why, sizeof(why));

		uint64_t now = net_now_ns();

		if (err) {
			struct pt_net_status bad = { .file = names[i], .error = err, .message = why };

			ret = fn(&bad, arg);
			continue;
		}
		r.st.file = names[i];
		r.st.message = "";
		r.st.gathered = strchr(names[i], '@') != NULL;
		r.st.age_ms = now > r.st.updated_ns ? (now - r.st.updated_ns) / 1000000 : 0;
		r.st.state = judge(&r);
		ret = fn(&r.st, arg);
	}
out:
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	close(dirfd);
	return ret;
}
