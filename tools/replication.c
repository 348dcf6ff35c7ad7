/* SPDX-License-Identifier: MIT */
/*
 * replication.c - the pagetrack subcommands that look after a region's data
 * directory:
 *
 *   status DIR [--json|--prometheus]
 *                             epochs published / durable / checkpointed, log
 *                             size, each shared replica's epoch and lag, the
 *                             publishers and the follower serving DIR
 *   verify DIR                every checksum of the image and the log, and
 *                             exactly what is wrong where
 *   inspect DIR [--pages]     the log's segments and records
 *   replica DIR [--name N]    keep a shared replica current until stopped
 *   checkpoint DIR            apply the durable log to the image now
 *   recover DIR [--accept-loss]
 *                             open the region as its writer and close it: its
 *                             recovery, with the loss of durable epochs
 *                             accepted only when asked
 *
 * They are built on the library's public calls only (pt_dir_status,
 * pt_dir_verify, pt_dir_walk, pt_dir_shared, pt_dir_checkpoint and the
 * region and replica calls; pt_net_status_read of libpagetrack-net for the
 * status records of publishers and followers), which read the directory
 * with the checks
 * every reader applies: no link followed, no FIFO waited on, only the
 * owner's files.  Only checkpoint and recover write, and only through the
 * writer's code.  What the library finds comes back as numbers and
 * one-line messages; this file only lays them out.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pagetrack.h"
#include "pagetrack-net.h"
#include "commands.h"
#include "prom.h"

/*
 * Parse "[options] DIR": returns the directory or NULL after a usage error.
 * An empty DIR is wrong usage for every subcommand (open("") would say
 * ENOENT, the library EINVAL).
 */
static const char *one_dir(const char *cmd, int argc, char **argv, int *ret)
{
	if (optind >= argc) {
		*ret = usage_error(cmd, "missing the region's directory");
		return NULL;
	}
	if (optind + 1 < argc) {
		*ret = usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
		return NULL;
	}
	if (!argv[optind][0]) {
		*ret = usage_error(cmd, "the region's directory is an empty name");
		return NULL;
	}
	return argv[optind];
}

/* ------------------------------------------------------------------ */
/* Findings, kept in order to be printed later                         */
/* ------------------------------------------------------------------ */

struct finding {
	enum pt_log_level level;
	int error;
	char *message;
};

struct findings {
	struct finding *v;
	size_t n, cap;
	bool nomem;
};

static void keep_finding(const struct pt_dir_problem *p, void *arg)
{
	struct findings *f = arg;
	char *msg;

	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct finding *v = realloc(f->v, cap * sizeof(*v));

		if (!v) {
			f->nomem = true;
			return;
		}
		f->v = v;
		f->cap = cap;
	}
	msg = strdup(p->message);
	if (!msg) {
		f->nomem = true;
		return;
	}
	f->v[f->n++] = (struct finding){ .level = p->level, .error = p->error, .message = msg };
}

static void findings_free(struct findings *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->v[i].message);
	free(f->v);
}

/* ------------------------------------------------------------------ */
/* status                                                              */
/* ------------------------------------------------------------------ */

/* A shared replica as pt_dir_shared() listed it, copied out of the call. */
struct shared_info {
	char path[300];
	pt_epoch_t epoch;
	uint32_t readers;
	struct pt_dir_shared_reader *reader;
};

struct shared_list {
	struct shared_info *v;
	size_t n, cap;
};

static int keep_shared(const struct pt_dir_shared *s, void *arg)
{
	struct shared_list *l = arg;
	struct shared_info *si;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct shared_info *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	si = &l->v[l->n];
	snprintf(si->path, sizeof(si->path), "/dev/shm/pagetrack-%s", s->name);
	si->epoch = s->epoch;
	si->readers = s->readers;
	si->reader = NULL;
	if (s->readers) {
		si->reader = malloc(s->readers * sizeof(*si->reader));
		if (!si->reader)
			return -ENOMEM;
		memcpy(si->reader, s->reader, s->readers * sizeof(*si->reader));
	}
	l->n++;
	return 0;
}

static void shared_free(struct shared_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].reader);
	free(l->v);
}

/*
 * A name from /dev/shm for the text output: control characters (a newline
 * would start a line of its own) shown as '?'.
 */
static const char *printable(const char *in, char *buf, size_t len)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < len; i++)
		buf[i] = (unsigned char)in[i] < 0x20 || in[i] == 0x7f ? '?' : in[i];
	buf[i] = '\0';
	return buf;
}

/* A status record as pt_net_status_read() gave it, copied out of the call. */
struct net_record {
	struct pt_net_status st;
	char file[256], message[256], host[64], stream[64], error_text[256];
};

struct net_list {
	struct net_record *v;
	size_t n, cap;
};

/* The record's strings are its own copies (again after the array moved). */
static void net_record_point(struct net_record *r)
{
	r->st.file = r->file;
	r->st.message = r->message;
	r->st.host = r->host;
	r->st.stream = r->stream;
	r->st.last_error_text = r->error_text;
}

static int keep_net(const struct pt_net_status *st, void *arg)
{
	struct net_list *l = arg;
	struct net_record *r;

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 4;
		struct net_record *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
		for (size_t i = 0; i < l->n; i++)
			net_record_point(&l->v[i]);
	}
	r = &l->v[l->n++];
	r->st = *st;
	snprintf(r->file, sizeof(r->file), "%s", st->file);
	snprintf(r->message, sizeof(r->message), "%s", st->message ? st->message : "");
	snprintf(r->host, sizeof(r->host), "%s", st->host ? st->host : "");
	snprintf(r->stream, sizeof(r->stream), "%s", st->stream ? st->stream : "");
	snprintf(r->error_text, sizeof(r->error_text), "%s",
		 st->last_error_text ? st->last_error_text : "");
	net_record_point(r);
	return 0;
}

/* A gathered follower's id (its file's name after the @), or NULL. */
static const char *gathered_id(const struct pt_net_status *n)
{
	const char *at = n->gathered ? strchr(n->file, '@') : NULL;

	return at ? at + 1 : NULL;
}

static const char *net_role(enum pt_net_role role)
{
	return role == PT_NET_PUBLISHER ? "publisher" : "follower";
}

static const char *net_state(enum pt_net_state state)
{
	switch (state) {
	case PT_NET_LIVE: return "live";
	case PT_NET_STOPPED: return "stopped";
	case PT_NET_GONE: return "gone";
	case PT_NET_STALE: return "stale";
	}
	return "unknown";
}

static void status_help(void)
{
	printf("Usage: pagetrack status DIR [--json | --prometheus]\n"
	       "\n"
	       "The region in DIR: its epochs (published, durable, checkpointed), the\n"
	       "writer, the log's size, and each shared replica's epoch and lag (how many\n"
	       "epochs it is behind the published one); how far the image and the log\n"
	       "reach against the last durable epoch, and the durable epochs lost or the\n"
	       "files of another history when there are any.  Then the publishers that\n"
	       "read DIR and the follower that writes it (their status records): epoch,\n"
	       "lag, bytes a second raw and on the wire, last error, and whether they\n"
	       "still run.\n"
	       "\n"
	       "  --json        one JSON object on stdout\n"
	       "  --prometheus  the Prometheus text exposition format\n"
	       "  --help        this text\n"
	       "\n"
	       "Exit status: 0, or 1 when the directory cannot be read or does not reach\n"
	       "its last durable epoch (the report is printed first), 64 wrong usage.\n");
}

/* What status reports, gathered once for either form. */
struct status {
	const char *dir;
	struct pt_dir_status st;
	struct findings reach;		/* why st.reach is not 0 */
	struct shared_list shared;
	/* what a publisher reported (PT_LEVEL_REPLICATED), if one ever did */
	int repl;			/* 0, or -ENOENT: none, or its error */
	pt_epoch_t repl_epoch;
	int repl_deposed;
	int32_t repl_pid;
	struct net_list net;		/* status records of publishers and followers */
	int net_error;			/* pt_net_status_read's, 0: none */
};

static uint64_t lag(pt_epoch_t published, pt_epoch_t epoch)
{
	return published > epoch ? published - epoch : 0;
}

/* A state block that is there and of this history but cannot be trusted. */
static int state_damage(const struct pt_dir_status *st)
{
	return st->state_error == -ENOENT || st->state_error == -ESTALE ? 0 : st->state_error;
}

/* "1.5 s" or "3 min" ago, for the text form. */
static void format_age(char *buf, size_t len, uint64_t ms)
{
	if (ms < 60000)
		snprintf(buf, len, "%llu.%llu s", (unsigned long long)ms / 1000,
			 (unsigned long long)ms % 1000 / 100);
	else if (ms < 7200000)
		snprintf(buf, len, "%llu min", (unsigned long long)ms / 60000);
	else
		snprintf(buf, len, "%llu h", (unsigned long long)ms / 3600000);
}

static uint64_t age_of(uint64_t now_ns, uint64_t then_ns)
{
	return now_ns > then_ns ? (now_ns - then_ns) / 1000000 : 0;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The publishers and followers, from their status records. */
static void net_text(const struct status *s)
{
	uint64_t now = realtime_ns();
	char buf[300];

	if (s->net_error)
		printf("network       status records cannot be listed: %s\n",
		       pt_strerror(s->net_error));
	else if (!s->net.n)
		printf("network       no publisher or follower has written a status record here\n");
	for (size_t i = 0; i < s->net.n; i++) {
		const struct pt_net_status *n = &s->net.v[i].st;
		char age[32], raw[32], wire[32], lag[32];

		if (n->error) {
			printf("network       %s: cannot be used: %s (%s)\n",
			       printable(n->file, buf, sizeof(buf)), n->message, pt_strerror(n->error));
			continue;
		}
		format_age(age, sizeof(age), n->age_ms);
		printf("%-14s%s stream %s, pid %d on %s%s%s: ", net_role(n->role),
		       n->role == PT_NET_PUBLISHER ? "to" : "from", n->stream, n->pid,
		       printable(n->host, buf, sizeof(buf)), n->gathered ?
		       " (through the stream's server), id " : "",
		       n->gathered ? gathered_id(n) : "");
		switch (n->state) {
		case PT_NET_LIVE:
			printf("running (updated %s ago)\n", age);
			break;
		case PT_NET_STOPPED:
			printf("stopped %s ago\n", age);
			break;
		case PT_NET_GONE:
			printf("GONE: the process is not running (killed or crashed; record of %s "
			       "ago)\n", age);
			break;
		case PT_NET_STALE:
			printf("STALE: not updated for %s\n", age);
			break;
		}
		if (n->lag_epochs == PT_NET_LAG_UNKNOWN)
			snprintf(lag, sizeof(lag), "unknown");
		else
			snprintf(lag, sizeof(lag), "%llu", (unsigned long long)n->lag_epochs);
		printf("  at          epoch %" PRId64 " (stream sequence %" PRIu64 "), lag %s epochs, "
		       "%" PRId64 " ms\n", n->epoch, n->stream_seq, lag, n->lag_ms);
		format_bytes(raw, sizeof(raw), n->bytes_raw_per_s);
		format_bytes(wire, sizeof(wire), n->bytes_wire_per_s);
		printf("  rate        pages %s/s, wire %s/s", raw, wire);
		format_bytes(raw, sizeof(raw), n->bytes_raw);
		format_bytes(wire, sizeof(wire), n->bytes_wire);
		printf(" (in all: %" PRIu64 " epochs, pages %s, wire %s, %" PRIu64 " retries)\n",
		       n->epochs, raw, wire, n->retries);
		if (n->last_error) {
			format_age(age, sizeof(age), age_of(now, n->last_error_ns));
			printf("  last error  %s ago: %s\n", age,
			       printable(n->last_error_text[0] ? n->last_error_text :
					 pt_strerror(n->last_error), buf, sizeof(buf)));
		}
	}
}

static void status_text(const struct status *s)
{
	const struct pt_dir_status *st = &s->st;

	printf("region        %s\n", s->dir);
	printf("history id    %016" PRIx64 "\n", st->history_id);
	printf("size          %" PRIu64 " pages of %u bytes\n", st->npages, st->page_size);
	printf("writer        %s", st->writer_pid ? "running" : "none");
	if (st->writer_pid > 0)
		printf(" (pid %ld)", (long)st->writer_pid);
	printf("\nepochs        published %" PRId64 ", durable %" PRId64 ", checkpointed %"
	       PRId64 "\n", st->published, st->durable, st->checkpointed);
	if (st->last_error)
		printf("log error     %s (retrying)\n", pt_strerror(st->last_error));
	printf("log           %" PRIu64 " bytes in %u segments\n", st->log_bytes, st->segments);
	printf("reach         image epoch %" PRId64 ", image and log reach %" PRId64 ", durable "
	       "%" PRId64 "%s\n", st->image_epoch, st->reached, st->state_durable,
	       st->state_error ? " (no state block to tell)" : "");
	for (size_t i = 0; i < s->reach.n; i++) {
		const struct finding *f = &s->reach.v[i];

		printf("%-14s%s\n", f->error == -ENOTRECOVERABLE ? "lost" :
		       f->error == -ESTALE ? "foreign" : "reach error", f->message);
	}
	if (!s->repl)
		printf("replicated    epoch %" PRId64 ", lag %" PRIu64 " (publisher pid %ld)%s\n",
		       s->repl_epoch, lag(st->published, s->repl_epoch), (long)s->repl_pid,
		       s->repl_deposed ? ", DEPOSED: another writer took over the stream" : "");
	else if (s->repl == -ENOENT)
		printf("replicated    no publisher has reported\n");
	else
		printf("replicated    %s\n", pt_strerror(s->repl));
	for (size_t i = 0; i < s->shared.n; i++) {
		const struct shared_info *sh = &s->shared.v[i];
		char path[sizeof(sh->path)];

		printf("shared        %s: epoch %" PRId64 ", lag %" PRIu64 ", %u readers\n",
		       printable(sh->path, path, sizeof(path)), sh->epoch,
		       lag(st->published, sh->epoch), sh->readers);
		for (uint32_t k = 0; k < sh->readers; k++)
			printf("  reader      pid %d at epoch %" PRId64 ", lag %" PRIu64 "\n",
			       sh->reader[k].pid, sh->reader[k].epoch,
			       lag(st->published, sh->reader[k].epoch));
	}
	if (!s->shared.n)
		printf("shared        no shared replica (private replicas are not listed)\n");
	net_text(s);
}

static struct json_object *net_json(const struct status *s, bool *failed)
{
	struct json_object *a = jout_array(failed);
	uint64_t now = realtime_ns();

	for (size_t i = 0; i < s->net.n; i++) {
		const struct pt_net_status *n = &s->net.v[i].st;
		struct json_object *o = jout_object(failed);
		char history[17];

		jout_put(o, "file", jout_str(n->file, failed), failed);
		jout_put(o, "error", jout_str(n->error ? pt_strerror(n->error) : NULL, failed),
			 failed);
		if (n->error) {
			jout_put(o, "message", jout_str(n->message, failed), failed);
			jout_append(a, o, failed);
			continue;
		}
		snprintf(history, sizeof(history), "%016" PRIx64, n->history_id);
		jout_put(o, "role", jout_str(net_role(n->role), failed), failed);
		jout_put(o, "state", jout_str(net_state(n->state), failed), failed);
		jout_put(o, "pid", jout_i64(n->pid, failed), failed);
		jout_put(o, "host", jout_str(n->host, failed), failed);
		jout_put(o, "gathered_id", jout_str(gathered_id(n), failed), failed);
		jout_put(o, "stream", jout_str(n->stream, failed), failed);
		jout_put(o, "history_id", jout_str(history, failed), failed);
		jout_put(o, "epoch", jout_i64(n->epoch, failed), failed);
		jout_put(o, "stream_seq", jout_u64(n->stream_seq, failed), failed);
		jout_put(o, "lag_epochs", n->lag_epochs == PT_NET_LAG_UNKNOWN ? NULL :
			 jout_u64(n->lag_epochs, failed), failed);
		jout_put(o, "lag_ms", jout_i64(n->lag_ms, failed), failed);
		jout_put(o, "bytes_raw_per_s", jout_u64(n->bytes_raw_per_s, failed), failed);
		jout_put(o, "bytes_wire_per_s", jout_u64(n->bytes_wire_per_s, failed), failed);
		jout_put(o, "epochs", jout_u64(n->epochs, failed), failed);
		jout_put(o, "messages", jout_u64(n->messages, failed), failed);
		jout_put(o, "pages", jout_u64(n->pages, failed), failed);
		jout_put(o, "bytes_raw", jout_u64(n->bytes_raw, failed), failed);
		jout_put(o, "bytes_wire", jout_u64(n->bytes_wire, failed), failed);
		jout_put(o, "retries", jout_u64(n->retries, failed), failed);
		jout_put(o, "last_error", jout_str(n->last_error ? pt_strerror(n->last_error) : NULL,
						   failed), failed);
		jout_put(o, "last_error_text", n->last_error ?
			 jout_str(n->last_error_text, failed) : NULL, failed);
		jout_put(o, "last_error_age_ms", n->last_error ?
			 jout_u64(age_of(now, n->last_error_ns), failed) : NULL, failed);
		jout_put(o, "updated_age_ms", jout_u64(n->age_ms, failed), failed);
		jout_put(o, "started_age_ms", jout_u64(age_of(now, n->started_ns), failed), failed);
		jout_append(a, o, failed);
	}
	return a;
}

/*
 * The whole status in the Prometheus text format: the region's figures,
 * its shared replicas, what a publisher reported, then the publishers and
 * followers from their records.  Every sample has the label dir.
 */
static int status_prometheus(const struct status *s)
{
	const struct pt_dir_status *st = &s->st;
	const char *dir[] = { "dir", s->dir, NULL };
	char history[17];
	struct prom_net *nv;
	size_t nn = 0;
	bool header = false;

	snprintf(history, sizeof(history), "%016" PRIx64, st->history_id);
	prom_family(stdout, "pagetrack_region_info", PROM_GAUGE, "the region in dir (always 1)");
	prom_u64(stdout, "pagetrack_region_info",
		 (const char *[]){ "dir", s->dir, "history_id", history, NULL }, 1);
	prom_family(stdout, "pagetrack_region_pages", PROM_GAUGE, "pages in the region");
	prom_u64(stdout, "pagetrack_region_pages", dir, st->npages);
	prom_family(stdout, "pagetrack_region_page_size_bytes", PROM_GAUGE, "bytes in a page");
	prom_u64(stdout, "pagetrack_region_page_size_bytes", dir, st->page_size);
	prom_family(stdout, "pagetrack_writer_running", PROM_GAUGE,
		    "1 when a writer holds the region's lock");
	prom_u64(stdout, "pagetrack_writer_running", dir, st->writer_pid != 0);
	prom_family(stdout, "pagetrack_epoch", PROM_GAUGE,
		    "the region's newest epoch at each level");
	prom_i64(stdout, "pagetrack_epoch",
		 (const char *[]){ "dir", s->dir, "level", "published", NULL }, st->published);
	prom_i64(stdout, "pagetrack_epoch",
		 (const char *[]){ "dir", s->dir, "level", "durable", NULL }, st->durable);
	prom_i64(stdout, "pagetrack_epoch",
		 (const char *[]){ "dir", s->dir, "level", "checkpointed", NULL },
		 st->checkpointed);
	if (!s->repl)
		prom_i64(stdout, "pagetrack_epoch",
			 (const char *[]){ "dir", s->dir, "level", "replicated", NULL },
			 s->repl_epoch);
	prom_family(stdout, "pagetrack_log_error", PROM_GAUGE,
		    "the writer's latched log error (errno), 0: none");
	prom_u64(stdout, "pagetrack_log_error", dir, (uint64_t)-st->last_error);
	prom_family(stdout, "pagetrack_log_bytes", PROM_GAUGE, "bytes in the log's segments");
	prom_u64(stdout, "pagetrack_log_bytes", dir, st->log_bytes);
	prom_family(stdout, "pagetrack_log_segments", PROM_GAUGE, "the log's segments");
	prom_u64(stdout, "pagetrack_log_segments", dir, st->segments);
	prom_family(stdout, "pagetrack_image_epoch", PROM_GAUGE, "the image's epoch");
	prom_i64(stdout, "pagetrack_image_epoch", dir, st->image_epoch);
	prom_family(stdout, "pagetrack_reached_epoch", PROM_GAUGE,
		    "newest epoch the image and the intact log records reach");
	prom_i64(stdout, "pagetrack_reached_epoch", dir, st->reached);
	prom_family(stdout, "pagetrack_reach_ok", PROM_GAUGE,
		    "1 when the image and the log reach the last durable epoch");
	prom_u64(stdout, "pagetrack_reach_ok", dir, !st->reach);
	prom_family(stdout, "pagetrack_foreign_files", PROM_GAUGE, "files of another history");
	prom_u64(stdout, "pagetrack_foreign_files", dir, st->foreign);
	if (!s->repl) {
		prom_family(stdout, "pagetrack_replicated_lag_epochs", PROM_GAUGE,
			    "epochs published and not yet reported stored by a stream");
		prom_u64(stdout, "pagetrack_replicated_lag_epochs", dir,
			 lag(st->published, s->repl_epoch));
		prom_family(stdout, "pagetrack_replicated_deposed", PROM_GAUGE,
			    "1 when a publisher reported the region deposed");
		prom_u64(stdout, "pagetrack_replicated_deposed", dir, s->repl_deposed != 0);
	}
	for (int f = 0; f < 3; f++) {
		static const char *const names[] = { "pagetrack_shared_replica_epoch",
						     "pagetrack_shared_replica_lag_epochs",
						     "pagetrack_shared_replica_readers" };
		static const char *const helps[] = { "the epoch of a shared replica's copy",
						     "epochs a shared replica is behind",
						     "live readers of a shared replica" };

		for (size_t i = 0; i < s->shared.n; i++) {
			const struct shared_info *sh = &s->shared.v[i];
			const char *labels[] = { "dir", s->dir, "path", sh->path, NULL };
			uint64_t v = f == 0 ? (uint64_t)sh->epoch : f == 1 ?
				lag(st->published, sh->epoch) : sh->readers;

			if (!i)
				prom_family(stdout, names[f], PROM_GAUGE, helps[f]);
			prom_u64(stdout, names[f], labels, v);
		}
	}
	nv = calloc(s->net.n ? s->net.n : 1, sizeof(*nv));
	if (!nv)
		return runtime_error("status", -ENOMEM, "%s", s->dir);
	for (size_t i = 0; i < s->net.n; i++) {
		const struct pt_net_status *n = &s->net.v[i].st;

		if (n->error)
			continue;
		nv[nn++] = (struct prom_net){
			.dir = s->dir, .role = net_role(n->role), .stream = n->stream,
			.follower = gathered_id(n), .from_record = true, .epoch = n->epoch, .stream_seq = n->stream_seq,
			.lag_epochs = n->lag_epochs, .lag_ms = n->lag_ms, .epochs = n->epochs,
			.messages = n->messages, .pages = n->pages, .bytes_raw = n->bytes_raw,
			.bytes_wire = n->bytes_wire, .retries = n->retries,
			.last_error = n->last_error, .up = n->state == PT_NET_LIVE,
			.bytes_raw_per_s = n->bytes_raw_per_s, .bytes_wire_per_s = n->bytes_wire_per_s,
			.age_ms = n->age_ms, .updated_ns = n->updated_ns,
		};
	}
	prom_net(stdout, nv, nn);
	free(nv);
	for (size_t i = 0; i < s->net.n; i++) {
		const struct pt_net_status *n = &s->net.v[i].st;

		if (!n->error)
			continue;
		if (!header)
			prom_family(stdout, "pagetrack_net_record_error", PROM_GAUGE,
				    "a status record that cannot be used: its errno");
		header = true;
		prom_u64(stdout, "pagetrack_net_record_error",
			 (const char *[]){ "dir", s->dir, "file", n->file, NULL },
			 (uint64_t)-n->error);
	}
	if (fflush(stdout) || ferror(stdout))
		return runtime_error("status", -EIO, "writing the output");
	return 0;
}

static int status_json(const struct status *s)
{
	const struct pt_dir_status *st = &s->st;
	bool failed = false;
	struct json_object *o = jout_object(&failed);
	struct json_object *shared = jout_array(&failed);
	char history[17];

	snprintf(history, sizeof(history), "%016" PRIx64, st->history_id);
	jout_put(o, "dir", jout_str(s->dir, &failed), &failed);
	jout_put(o, "history_id", jout_str(history, &failed), &failed);
	jout_put(o, "pages", jout_u64(st->npages, &failed), &failed);
	jout_put(o, "page_size", jout_u64(st->page_size, &failed), &failed);
	jout_put(o, "published", jout_u64(st->published, &failed), &failed);
	jout_put(o, "durable", jout_u64(st->durable, &failed), &failed);
	jout_put(o, "checkpointed", jout_u64(st->checkpointed, &failed), &failed);
	jout_put(o, "writer", jout_bool(st->writer_pid != 0, &failed), &failed);
	jout_put(o, "writer_pid", jout_i64(st->writer_pid > 0 ? st->writer_pid : 0, &failed),
		 &failed);
	jout_put(o, "log_error", jout_str(st->last_error ? pt_strerror(st->last_error) : NULL,
					  &failed), &failed);
	jout_put(o, "log_bytes", jout_u64(st->log_bytes, &failed), &failed);
	jout_put(o, "segments", jout_u64(st->segments, &failed), &failed);
	{
		struct json_object *r = jout_object(&failed), *lost = NULL;

		jout_put(r, "image_epoch", jout_u64(st->image_epoch, &failed), &failed);
		jout_put(r, "reached", jout_u64(st->reached, &failed), &failed);
		jout_put(r, "durable", jout_u64(st->state_durable, &failed), &failed);
		jout_put(r, "state_ok", jout_bool(!st->state_error, &failed), &failed);
		if (st->reach == -ENOTRECOVERABLE && !state_damage(st)) {
			lost = jout_array(&failed);
			jout_append(lost, jout_u64(st->reached + 1, &failed), &failed);
			jout_append(lost, jout_u64(st->state_durable, &failed), &failed);
		}
		jout_put(r, "lost_durable_epochs", lost, &failed);
		jout_put(r, "foreign_files", jout_u64(st->foreign, &failed), &failed);
		jout_put(r, "log_error", jout_str(st->log_error ? pt_strerror(st->log_error) : NULL,
						  &failed), &failed);
		jout_put(r, "state_error", jout_str(state_damage(st) ?
						    pt_strerror(state_damage(st)) : NULL,
						    &failed), &failed);
		jout_put(r, "error", jout_str(st->reach ? pt_strerror(st->reach) : NULL, &failed),
			 &failed);
		jout_put(o, "reach", r, &failed);
	}
	for (size_t i = 0; i < s->shared.n; i++) {
		const struct shared_info *sh = &s->shared.v[i];
		struct json_object *so = jout_object(&failed), *readers = jout_array(&failed);

		jout_put(so, "path", jout_str(sh->path, &failed), &failed);
		jout_put(so, "epoch", jout_u64(sh->epoch, &failed), &failed);
		jout_put(so, "lag", jout_u64(lag(st->published, sh->epoch), &failed), &failed);
		for (uint32_t k = 0; k < sh->readers; k++) {
			struct json_object *ro = jout_object(&failed);

			jout_put(ro, "pid", jout_i64(sh->reader[k].pid, &failed), &failed);
			jout_put(ro, "epoch", jout_u64(sh->reader[k].epoch, &failed), &failed);
			jout_put(ro, "lag", jout_u64(lag(st->published, sh->reader[k].epoch),
						     &failed), &failed);
			jout_append(readers, ro, &failed);
		}
		jout_put(so, "readers", readers, &failed);
		jout_append(shared, so, &failed);
	}
	jout_put(o, "shared_replicas", shared, &failed);
	{
		struct json_object *rp = NULL;

		if (!s->repl) {
			rp = jout_object(&failed);
			jout_put(rp, "epoch", jout_u64(s->repl_epoch, &failed), &failed);
			jout_put(rp, "lag", jout_u64(lag(st->published, s->repl_epoch), &failed),
				 &failed);
			jout_put(rp, "deposed", jout_bool(s->repl_deposed, &failed), &failed);
			jout_put(rp, "publisher_pid", jout_i64(s->repl_pid, &failed), &failed);
		}
		jout_put(o, "replicated", rp, &failed);
	}
	jout_put(o, "net", net_json(s, &failed), &failed);
	return jout_print("status", o, failed, false);
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct status s = { .st = { .sz = sizeof(s.st) } };
	bool json = false, prometheus = false;
	int c, ret = 0;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'p':
			prometheus = true;
			break;
		case 'h':
			ret = alone("status", "--help", argc);
			if (!ret)
				status_help();
			return ret;
		default:
			return option_error("status", argv);
		}
	}
	if (json && prometheus)
		return usage_error("status", "--json and --prometheus are exclusive");
	s.dir = one_dir("status", argc, argv, &ret);
	if (!s.dir)
		return ret;
	ret = pt_dir_status(s.dir, &s.st, keep_finding, &s.reach);
	if (ret) {
		ret = runtime_error("status", ret, "%s", s.dir);
		goto out;
	}
	s.repl = pt_dir_replicated(s.dir, &s.repl_epoch, &s.repl_deposed, &s.repl_pid);
	/* /dev/shm unreadable or gone leaves the list empty, as it is. */
	ret = pt_dir_shared(s.dir, keep_shared, &s.shared);
	if (ret == -ENOMEM || s.reach.nomem) {
		ret = runtime_error("status", -ENOMEM, "%s", s.dir);
		goto out;
	}
	s.net_error = pt_net_status_read(s.dir, keep_net, &s.net);
	if (s.net_error == -ENOMEM) {
		ret = runtime_error("status", -ENOMEM, "%s", s.dir);
		goto out;
	}
	if (json) {
		ret = status_json(&s);
	} else if (prometheus) {
		ret = status_prometheus(&s);
	} else {
		status_text(&s);
		ret = 0;
	}
	/* The report is out; the exit status says whether it showed a loss. */
	if (!ret && s.st.reach)
		ret = 1;
out:
	findings_free(&s.reach);
	shared_free(&s.shared);
	free(s.net.v);
	return ret;
}

/* ------------------------------------------------------------------ */
/* verify                                                              */
/* ------------------------------------------------------------------ */

/* Each finding as it comes: problems are BAD, notes NOTE, the rest as is. */
static void print_finding(const struct pt_dir_problem *p, void *arg)
{
	(void)arg;
	if (p->level == PT_LOG_ERROR)
		printf("  BAD   %s\n", p->message);
	else if (p->level == PT_LOG_WARN)
		printf("  NOTE  %s\n", p->message);
	else
		printf("%s\n", p->message);
}

static void verify_help(void)
{
	printf("Usage: pagetrack verify DIR\n"
	       "\n"
	       "Check every checksum of the region in DIR: the image's headers, table and\n"
	       "pages, every segment header and every log record, and that the records\n"
	       "after the image's epoch follow each other; say exactly what is wrong where.\n"
	       "A page a running checkpoint is writing is checked again, and not reported\n"
	       "when it is good then or a log record after the image's epoch rewrites it.\n"
	       "Then check that the image and the log reach the last epoch the writer made\n"
	       "durable (else say which durable epochs are lost) and that every file is of\n"
	       "the image's history (else name the others).\n"
	       "\n"
	       "Exit status: 0 all good and the last durable epoch reached, 1 something is\n"
	       "wrong (listed), 64 wrong usage.\n");
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *dir;
	int c, ret = 0;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			ret = alone("verify", "--help", argc);
			if (!ret)
				verify_help();
			return ret;
		}
		return option_error("verify", argv);
	}
	dir = one_dir("verify", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = pt_dir_verify(dir, print_finding, NULL);
	if (ret < 0) {
		fflush(stdout);
		return runtime_error("verify", ret, "%s", dir);
	}
	return ret ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* inspect                                                             */
/* ------------------------------------------------------------------ */

static void inspect_help(void)
{
	printf("Usage: pagetrack inspect DIR [--pages]\n"
	       "\n"
	       "List the log of the region in DIR: each segment, and in it each record\n"
	       "with its epoch, page count, length and checksums.\n"
	       "\n"
	       "  --pages  also list each record's page numbers\n"
	       "  --help   this text\n");
}

static int print_record(const struct pt_dir_record *rec, void *arg)
{
	const bool *pages = arg;

	switch (rec->what) {
	case PT_DIR_IMAGE:
		printf("image at epoch %" PRId64 " (history %016" PRIx64 ")\n", rec->epoch,
		       rec->history_id);
		break;
	case PT_DIR_SEGMENT:
		if (rec->error)
			printf("%s: unreadable header: %s\n", rec->segment, pt_strerror(rec->error));
		else
			printf("%s: first epoch %" PRId64 ", %" PRIu64 " bytes\n", rec->segment,
			       rec->epoch, rec->length);
		break;
	case PT_DIR_STOP:
		if (rec->offset)
			printf("  offset %-10" PRIu64 " %s\n", rec->offset, pt_strerror(rec->error));
		else
			printf("  %s\n", pt_strerror(rec->error));
		break;
	case PT_DIR_RECORD:
		printf("  offset %-10" PRIu64 " epoch %-8" PRId64 " %6u pages %10" PRIu64
		       " bytes  header %016" PRIx64 " prev %016" PRIx64 "\n", rec->offset, rec->epoch,
		       rec->page_count, rec->length, rec->header_checksum, rec->prev);
		if (*pages) {
			for (uint32_t k = 0; k < rec->page_count; k++)
				printf("%s%" PRIu64, k % 16 ? " " : "    pages ", rec->pages[k]);
			if (rec->page_count)
				printf("\n");
		}
		break;
	}
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pages", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool pages = false;
	const char *dir;
	int c, ret = 0;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			pages = true;
			break;
		case 'h':
			ret = alone("inspect", "--help", argc);
			if (!ret)
				inspect_help();
			return ret;
		default:
			return option_error("inspect", argv);
		}
	}
	dir = one_dir("inspect", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = pt_dir_walk(dir, print_record, &pages);
	if (ret) {
		fflush(stdout);
		return runtime_error("inspect", ret, "%s", dir);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* replica                                                             */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void replica_help(void)
{
	printf("Usage: pagetrack replica DIR [--name NAME] [--once] [--verbose]\n"
	       "\n"
	       "Keep the shared replica /dev/shm/pagetrack-NAME of the region in DIR\n"
	       "current until interrupted (SIGINT, SIGTERM), so that query processes that\n"
	       "open it with pt_replica_open(PT_REPLICA_SHARED) find it fresh.\n"
	       "\n"
	       "  --name NAME  the shared copy's name, 1 to 200 characters without '/'\n"
	       "               (default: the region's history id)\n"
	       "  --once       bring it up to date once and exit\n"
	       "  --verbose    print each epoch reached\n"
	       "  --help       this text\n");
}

int cmd_replica(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED };
	struct sigaction sa = { .sa_handler = on_stop };
	bool once = false, verbose = false;
	struct pt_replica *rep;
	const char *dir;
	int64_t e, shown = -1;
	int c, ret = 0;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			/* The library's rule for a name, checked here so that the
			 * message blames the name, not DIR. */
			if (!optarg[0] || strchr(optarg, '/') || strlen(optarg) > 200)
				return usage_error("replica", "bad --name '%s': want 1 to 200 "
						   "characters, no '/'", optarg);
			o.name = optarg;
			break;
		case 'o':
			once = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			ret = alone("replica", "--help", argc);
			if (!ret)
				replica_help();
			return ret;
		default:
			return option_error("replica", argv);
		}
	}
	dir = one_dir("replica", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = pt_replica_open(&rep, dir, &o);
	if (ret)
		return runtime_error("replica", ret, "%s", dir);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	do {
		e = pt_replica_refresh(rep, once ? 0 : 200);
		if (e < 0) {
			ret = runtime_error("replica", (int)e, "%s", dir);
			break;
		}
		if (verbose && e != shown) {
			printf("epoch %lld\n", (long long)e);
			fflush(stdout);
		}
		shown = e;
	} while (!once && !stop_requested);
	if (!ret && !verbose)
		printf("shared replica of %s at epoch %lld\n", dir, (long long)shown);
	pt_replica_close(rep);
	return ret;
}

/* ------------------------------------------------------------------ */
/* checkpoint                                                          */
/* ------------------------------------------------------------------ */

static void checkpoint_help(void)
{
	printf("Usage: pagetrack checkpoint DIR [--timeout SECONDS]\n"
	       "\n"
	       "Apply the durable log of the region in DIR to its image, fsync it and drop\n"
	       "the segments nothing needs.  With no writer running it opens the region\n"
	       "(recovering it) and checkpoints; with a writer running it asks the\n"
	       "writer's checkpoint thread and waits for it.\n"
	       "\n"
	       "  --timeout SECONDS  how long to wait for a running writer, 0 to 86400\n"
	       "                     (default 30)\n"
	       "  --help             this text\n");
}

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	long long timeout = 30;
	const char *dir;
	int32_t pid = 0;
	int64_t e;
	int c, ret = 0;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			ret = parse_number("checkpoint", "--timeout", optarg, 0, 86400, &timeout);
			if (ret)
				return ret;
			break;
		case 'h':
			ret = alone("checkpoint", "--help", argc);
			if (!ret)
				checkpoint_help();
			return ret;
		default:
			return option_error("checkpoint", argv);
		}
	}
	dir = one_dir("checkpoint", argc, argv, &ret);
	if (!dir)
		return ret;
	/* 86400 s is 86,400,000 ms: an int holds it. */
	e = pt_dir_checkpoint(dir, (int)(timeout * 1000), &pid);
	if (e == -ETIMEDOUT)
		return runtime_error("checkpoint", 0, "%s: the writer did not checkpoint within %lld s "
				     "(is its checkpoint thread off?)", dir, timeout);
	if (e < 0)
		return runtime_error("checkpoint", (int)e, "%s", dir);
	if (pid)
		printf("%s: checkpointed by the writer at epoch %lld\n", dir, (long long)e);
	else
		printf("%s: checkpointed at epoch %lld\n", dir, (long long)e);
	return 0;
}

/* ------------------------------------------------------------------ */
/* recover                                                             */
/* ------------------------------------------------------------------ */

static void recover_help(void)
{
	printf("Usage: pagetrack recover DIR [--accept-loss]\n"
	       "\n"
	       "Open the region in DIR as its writer, which recovers it (the image plus\n"
	       "every intact log record after it), print the epoch recovered, and close\n"
	       "it.  When epochs the writer had made durable cannot be reached (a log\n"
	       "segment deleted, cut short or damaged), it fails and says which: the\n"
	       "region is left as it is.\n"
	       "\n"
	       "  --accept-loss  recover what can be reached anyway and give up the lost\n"
	       "                 epochs for good (the library logs the loss)\n"
	       "  --help         this text\n"
	       "\n"
	       "Exit status: 0 recovered, 1 not (why on stderr), 64 wrong usage.\n");
}

/* Keep the first message that says which durable epochs are lost. */
static void keep_lost(const struct pt_dir_problem *p, void *arg)
{
	char *lost = arg;

	if (p->error == -ENOTRECOVERABLE && !lost[0])
		snprintf(lost, 512, "%s", p->message);
}

int cmd_recover(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "accept-loss", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_dir_status st = { .sz = sizeof(st) };
	struct pt_region *r;
	bool accept = false;
	const char *dir;
	char lost[512] = "";
	int c, ret = 0;
	int64_t e;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			accept = true;
			break;
		case 'h':
			ret = alone("recover", "--help", argc);
			if (!ret)
				recover_help();
			return ret;
		default:
			return option_error("recover", argv);
		}
	}
	dir = one_dir("recover", argc, argv, &ret);
	if (!dir)
		return ret;
	/*
	 * What would be lost, read before the open changes anything: with
	 * --accept-loss the writer's recovery goes on from what it reaches, and
	 * afterwards the directory no longer shows what it gave up.
	 */
	ret = pt_dir_status(dir, &st, keep_lost, lost);
	if (ret)
		return runtime_error("recover", ret, "%s", dir);

	if (accept)
		o.flags |= PT_REGION_ACCEPT_LOSS;
	ret = pt_region_open(&r, dir, &o);
	if (ret == -ENOTRECOVERABLE)
		return runtime_error("recover", 0, "%s: %s; 'pagetrack recover --accept-loss' "
				     "recovers what is left and gives up the rest", dir,
				     lost[0] ? lost : pt_strerror(ret));
	if (ret == -EBUSY)
		return runtime_error("recover", ret, "%s: a writer has the region open (it "
				     "recovered it when it opened)", dir);
	if (ret == -ESTALE)
		return runtime_error("recover", 0, "%s: files of two histories, one copied from "
				     "another region ('pagetrack verify %s' names them)", dir, dir);
	if (ret)
		return runtime_error("recover", ret, "%s", dir);
	e = pt_region_epoch(r);
	ret = pt_region_close(r);
	if (ret)
		return runtime_error("recover", ret, "%s: close", dir);
	if (lost[0])
		printf("%s: recovered epoch %lld, accepting the loss: %s\n", dir, (long long)e, lost);
	else
		printf("%s: recovered epoch %lld\n", dir, (long long)e);
	return 0;
}
