/* SPDX-License-Identifier: MIT */
/*
 * net.c - the network subcommands, on libpagetrack-net (pagetrack-net.h):
 *
 *   publish DIR --nats URL[,URL...] [--stream NAME] ...   a region's epochs
 *                                                         to a JetStream stream
 *   follow URL --stream NAME DIR ...                      keep DIR a standby
 *                                                         region fed by it
 *   follow ... --standby [--auto-promote]                 and watch the writer's
 *                                                         lease; take over when
 *                                                         it lapses
 *   promote DIR --nats URL --stream NAME ...              make a standby the
 *                                                         writable region of a
 *                                                         new term
 *
 * Both run until SIGINT or SIGTERM (exit 0 then), print a progress line at
 * most once a second when something moved, and report a lost connection
 * once and go on (the library resumes); any other error ends them (exit 1)
 * with the library's message, which names the stream sequence concerned.
 * A cluster that is reached but does not answer at the start (-ETIMEDOUT:
 * leaders being elected) is waited for too; so is one that does not answer
 * a standby just promoted, whose publisher must start.
 * With --metrics ADDR:PORT they serve their figures at /metrics
 * (tools/metrics.c); the library writes their status records itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagetrack.h"
#include "pagetrack-net.h"
#include "commands.h"
#include "metrics.h"
#include "prom.h"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void catch_stop_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop };

	/* No SA_RESTART: a wait in the library returns at once. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void net_log_to_stderr(enum pt_log_level level, const char *msg, void *arg)
{
	char at[32] = "";

	/* Asked for (PAGETRACK_LOG=info): the time, to tell steps apart. */
	if (level >= PT_LOG_INFO) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		snprintf(at, sizeof(at), "%02d:%02d:%02d.%03ld ", tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000);
	}
	fprintf(stderr, "pagetrack %s: %s%s%s\n", (const char *)arg, at,
		level == PT_LOG_ERROR ? "" : level == PT_LOG_WARN ? "warning: " : "", msg);
}

/* The network layer's messages: warnings and errors, or down to
 * PAGETRACK_LOG's level (info, debug) when it asks for more. */
static enum pt_log_level net_log_level(void)
{
	const char *v = getenv("PAGETRACK_LOG");

	if (v && !strcasecmp(v, "info"))
		return PT_LOG_INFO;
	if (v && !strcasecmp(v, "debug"))
		return PT_LOG_DEBUG;
	return PT_LOG_WARN;
}

/* The options both commands take: connection, authentication, TLS,
 * HMAC, metrics. */
enum { OPT_STREAM = 256, OPT_REPLICAS, OPT_USER, OPT_PASSWORD, OPT_CREDS, OPT_TLS_CA,
       OPT_TLS_CERT, OPT_TLS_KEY, OPT_NATS, OPT_QUIET, OPT_MAX_MSGS, OPT_MAX_BYTES,
       OPT_SNAPSHOT_INTERVAL, OPT_HMAC_KEY_FILE, OPT_METRICS, OPT_RETAIN, OPT_SEGMENT,
       OPT_LEASE_MS, OPT_STANDBY, OPT_AUTO_PROMOTE, OPT_FORCE, OPT_TIMEOUT_MS, OPT_SCHED,
       OPT_ADVERTISE, OPT_CONNECT_TIMEOUT, OPT_REQUEST_TIMEOUT, OPT_PING_MS };

/* What the shared options ask for beyond struct pt_net_opts. */
struct net_args {
	bool quiet;
	int error;			/* a usage error's status, from net_option */
	const char *key_file;
	const char *metrics;
	unsigned char key[1024];	/* the HMAC key, read from key_file */
};

#define NET_LONGOPTS							\
	{ "stream", required_argument, NULL, OPT_STREAM },		\
	{ "user", required_argument, NULL, OPT_USER },			\
	{ "password", required_argument, NULL, OPT_PASSWORD },		\
	{ "creds", required_argument, NULL, OPT_CREDS },		\
	{ "tls-ca", required_argument, NULL, OPT_TLS_CA },		\
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },		\
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },		\
	{ "quiet", no_argument, NULL, OPT_QUIET },			\
	{ "hmac-key-file", required_argument, NULL, OPT_HMAC_KEY_FILE },	\
	{ "metrics", required_argument, NULL, OPT_METRICS },		\
	{ "lease-ms", required_argument, NULL, OPT_LEASE_MS },		\
	{ "advertise", required_argument, NULL, OPT_ADVERTISE },	\
	{ "connect-timeout-ms", required_argument, NULL, OPT_CONNECT_TIMEOUT },	\
	{ "request-timeout-ms", required_argument, NULL, OPT_REQUEST_TIMEOUT },	\
	{ "ping-ms", required_argument, NULL, OPT_PING_MS },		\
	{ "help", no_argument, NULL, 'h' }

/* 1: taken (a usage error in a->error), 0: not one of these. */
static int net_option(const char *cmd, int c, struct pt_net_opts *o, struct net_args *a)
{
	long long n;

	switch (c) {
	case OPT_LEASE_MS:
		if ((a->error = parse_number(cmd, "--lease-ms", optarg, 0, 600000, &n)))
			return 1;
		if (n && n < 100)
			a->error = usage_error(cmd, "--lease-ms: 0 (no lease) or 100 to 600000");
		o->lease_ms = (unsigned)n;
		return 1;
	case OPT_CONNECT_TIMEOUT:
		if (!(a->error = parse_number(cmd, "--connect-timeout-ms", optarg, 10, 600000, &n)))
			o->connect_timeout_ms = (unsigned)n;
		return 1;
	case OPT_REQUEST_TIMEOUT:
		if (!(a->error = parse_number(cmd, "--request-timeout-ms", optarg, 10, 600000, &n)))
			o->request_timeout_ms = (unsigned)n;
		return 1;
	case OPT_PING_MS:
		if (!(a->error = parse_number(cmd, "--ping-ms", optarg, 100, 60000, &n)))
			o->ping_ms = (unsigned)n;
		return 1;
	case OPT_ADVERTISE: o->advertise = optarg; return 1;	/* the library checks it */
	case OPT_STREAM: o->stream = optarg; return 1;
	case OPT_USER: o->user = optarg; return 1;
	case OPT_PASSWORD: o->password = optarg; return 1;
	case OPT_CREDS: o->creds_file = optarg; return 1;
	case OPT_TLS_CA: o->tls_ca = optarg; return 1;
	case OPT_TLS_CERT: o->tls_cert = optarg; return 1;
	case OPT_TLS_KEY: o->tls_key = optarg; return 1;
	case OPT_QUIET: a->quiet = true; return 1;
	case OPT_HMAC_KEY_FILE: a->key_file = optarg; return 1;
	case OPT_METRICS: a->metrics = optarg; return 1;
	}
	return 0;
}

/*
 * The HMAC key: the bytes of a regular file (links followed) that only its
 * owner may read or write, 16 to 1024 of them.  0, or an error's status.
 */
static int read_key_file(const char *cmd, struct net_args *a, struct pt_net_opts *o)
{
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	if (!a->key_file)
		return 0;
	fd = open(a->key_file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return runtime_error(cmd, -errno, "--hmac-key-file %s", a->key_file);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		ret = runtime_error(cmd, -EMEDIUMTYPE, "--hmac-key-file %s", a->key_file);
	else if (st.st_mode & 077)
		ret = runtime_error(cmd, 0, "--hmac-key-file %s: readable or writable by others "
				    "(mode %03o): a key must be its owner's alone (chmod 600)",
				    a->key_file, (unsigned)(st.st_mode & 0777));
	else if ((n = read(fd, a->key, sizeof(a->key))) < 0)
		ret = runtime_error(cmd, -errno, "--hmac-key-file %s", a->key_file);
	else if (n < 16 || st.st_size > (off_t)sizeof(a->key))
		ret = runtime_error(cmd, 0, "--hmac-key-file %s: %lld bytes, a key has 16 to %zu "
				    "(e.g. head -c 32 /dev/urandom)", a->key_file,
				    (long long)st.st_size, sizeof(a->key));
	else {
		o->hmac_key = a->key;
		o->hmac_key_len = (size_t)n;
	}
	close(fd);
	return ret;
}

static int check_auth(const char *cmd, struct pt_net_opts *o)
{
	/* A password on the command line is visible to other users in ps:
	 * the environment is the other way to pass it. */
	if (o->user && !o->password)
		o->password = getenv("PAGETRACK_NATS_PASSWORD");
	if (o->user && !o->password)
		return usage_error(cmd, "--user needs --password (or PAGETRACK_NATS_PASSWORD)");
	if (o->password && !o->user)
		return usage_error(cmd, "--password needs --user");
	if (o->creds_file && o->user)
		return usage_error(cmd, "--creds and --user are exclusive");
	if ((o->tls_cert != NULL) != (o->tls_key != NULL))
		return usage_error(cmd, "--tls-cert and --tls-key go together");
	return 0;
}

static const char net_auth_help[] =
	"  --stream NAME        the JetStream stream ([A-Za-z0-9_-], up to 63)\n"
	"  --user U --password P  user/password authentication (or the password in\n"
	"                       PAGETRACK_NATS_PASSWORD)\n"
	"  --creds FILE         a NATS credentials file (JWT and nkey seed)\n"
	"  --tls-ca FILE        trusted CA certificates (turns TLS on)\n"
	"  --tls-cert FILE --tls-key FILE  a client certificate\n"
	"  --hmac-key-file FILE an HMAC-SHA256 key (16 to 1024 bytes, mode 600): the\n"
	"                       publisher adds an HMAC to every message, the follower\n"
	"                       refuses any message it does not verify\n"
	"  --metrics ADDR:PORT  serve Prometheus metrics at http://ADDR:PORT/metrics\n"
	"  --lease-ms N         the writer's lease, a key of the stream's lease bucket\n"
	"                       whose TTL it is (100 to 600000, default 1000); the\n"
	"                       bucket's TTL wins once it exists\n"
	"  --advertise HOST:PORT  where clients reach the writer's service (e.g. its\n"
	"                       engine), stored with the lease by whoever takes it:\n"
	"                       publish, follow --auto-promote, promote\n"
	"  --connect-timeout-ms N  each connection attempt to a server (10 to 600000,\n"
	"                       default 2000; the URLs are tried in turn, so a server\n"
	"                       that is down costs this much each time)\n"
	"  --request-timeout-ms N  a request's or a publish's wait for the server (10\n"
	"                       to 600000, default 5000)\n"
	"  --ping-ms N          how often to ping the server (100 to 60000, default\n"
	"                       1000): two unanswered, reconnect to another URL\n"
	"  --quiet              no progress lines\n";

/* A retryable failure: said once until things move again. */
static void transient(const char *cmd, bool *said)
{
	if (!*said)
		fprintf(stderr, "pagetrack %s: %s (retrying)\n", cmd, pt_net_last_error());
	*said = true;
	usleep(200 * 1000);
}

/*
 * What /metrics shows: a copy of the handle's statistics, taken by the
 * command's thread after each run and read by the server's thread, both
 * under the lock (the handle itself is not shared).
 */
struct net_snapshot {
	pthread_mutex_t lock;
	const char *dir;
	bool publisher;
	struct pt_publisher_stats pub;
	struct pt_follower_stats fol;
};

/* A running publisher or follower, as the loop below drives it. */
struct net_cmd {
	void *handle;
	const char *dir;
	pt_epoch_t printed;	/* the epoch of the last progress line */
	struct net_snapshot *snap;	/* NULL: no --metrics */
	/* Run the handle once (up to 200 ms); with report, print a progress
	 * line if its epoch moved.  Returns the run's result. */
	int (*step)(struct net_cmd *c, bool report);
};

static void snapshot_take(struct net_cmd *c)
{
	struct net_snapshot *s = c->snap;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->publisher)
		pt_publisher_stats(c->handle, &s->pub);
	else
		pt_follower_stats(c->handle, &s->fol);
	pthread_mutex_unlock(&s->lock);
}

/* /metrics: the snapshot in the Prometheus text format (server's thread). */
static void render_metrics(FILE *out, void *arg)
{
	struct net_snapshot *s = arg;
	struct prom_net v = { .dir = s->dir };
	uint64_t now_ns;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	now_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	pthread_mutex_lock(&s->lock);
	if (s->publisher) {
		const struct pt_publisher_stats *st = &s->pub;
		/* The writer's state block only: cheap enough for each scrape. */
		pt_epoch_t published = pt_dir_epoch(s->dir);

		v.role = "publisher";
		v.stream = st->stream;
		v.epoch = st->epoch;
		v.stream_seq = st->stream_seq;
		v.lag_epochs = published < 0 ? UINT64_MAX :
			published > st->epoch ? (uint64_t)(published - st->epoch) : 0;
		v.lag_ms = v.lag_epochs && v.lag_epochs != UINT64_MAX && now_ns > st->caught_up_ns ?
			(int64_t)((now_ns - st->caught_up_ns) / 1000000) : 0;
		v.epochs = st->epochs;
		v.messages = st->messages;
		v.pages = st->pages;
		v.bytes_raw = st->bytes_raw;
		v.bytes_wire = st->bytes_wire;
		v.retries = st->retries;
		v.last_error = st->last_error;
	} else {
		const struct pt_follower_stats *st = &s->fol;

		v.role = "follower";
		v.stream = st->stream;
		v.epoch = st->epoch;
		v.stream_seq = st->stream_seq;
		/* Messages pending are not epochs: only "none" tells. */
		v.lag_epochs = st->pending ? UINT64_MAX : 0;
		v.lag_ms = st->lag_ms > 0 ? st->lag_ms : 0;
		v.epochs = st->epochs;
		v.messages = st->messages;
		v.pages = st->pages;
		v.bytes_raw = st->bytes_raw;
		v.bytes_wire = st->bytes_wire;
		v.retries = st->retries;
		v.last_error = st->last_error;
	}
	prom_net(out, &v, 1);
	if (!s->publisher) {
		const char *labels[] = { "dir", s->dir, "role", "follower", "stream", s->fol.stream,
					 NULL };

		prom_family(out, "pagetrack_net_pending_messages", PROM_GAUGE,
			    "messages the stream holds after the last one received");
		prom_u64(out, "pagetrack_net_pending_messages", labels, s->fol.pending);
	}
	pthread_mutex_unlock(&s->lock);
}

static int publisher_step(struct net_cmd *c, bool report)
{
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	char raw[32], wire[32];
	pt_epoch_t published;
	int ret = pt_publisher_run(c->handle, 200);

	snapshot_take(c);
	if (!report)
		return ret;
	pt_publisher_stats(c->handle, &st);
	if (st.epoch == c->printed)
		return ret;
	/* The writer's state block only: no log read once a second. */
	published = pt_dir_epoch(c->dir);
	if (published < 0)
		published = st.epoch;
	format_bytes(raw, sizeof(raw), st.bytes_raw);
	format_bytes(wire, sizeof(wire), st.bytes_wire);
	printf("epoch %lld  lag %lld epochs  seq %llu  %llu epochs  pages %s  wire %s\n",
	       (long long)st.epoch, (long long)(published > st.epoch ? published - st.epoch : 0),
	       (unsigned long long)st.stream_seq, (unsigned long long)st.epochs, raw, wire);
	c->printed = st.epoch;
	return ret;
}

static int follower_step(struct net_cmd *c, bool report)
{
	struct pt_follower_stats st = { .sz = sizeof(st) };
	char raw[32], wire[32];
	int ret = pt_follower_run(c->handle, 200);

	snapshot_take(c);
	if (!report)
		return ret;
	pt_follower_stats(c->handle, &st);
	if (st.epoch == c->printed)
		return ret;
	format_bytes(raw, sizeof(raw), st.bytes_raw);
	format_bytes(wire, sizeof(wire), st.bytes_wire);
	printf("epoch %lld  lag %llu messages %lld ms  seq %llu  %llu epochs  pages %s  wire %s\n",
	       (long long)st.epoch, (unsigned long long)st.pending, (long long)st.lag_ms,
	       (unsigned long long)st.stream_seq, (unsigned long long)st.epochs, raw, wire);
	c->printed = st.epoch;
	return ret;
}

/*
 * Run a publisher or a follower until SIGINT or SIGTERM: a transient
 * failure (-EAGAIN: the network) is said once and retried, anything else
 * ends the command.  A progress line at most once a second, when the epoch
 * moved.  Returns 0, or the exit status of the error it reported.
 */
static int run_until_stopped(const char *cmd, struct net_cmd *c, bool quiet)
{
	uint64_t last_print = 0;
	bool said = false;

	while (!stop_signal) {
		bool report = !quiet && now_ms() - last_print >= 1000;
		pt_epoch_t before = c->printed;
		int ret = c->step(c, report);

		if (c->printed != before) {
			fflush(stdout);
			last_print = now_ms();
		}
		if (ret == -EAGAIN) {
			transient(cmd, &said);
			continue;
		}
		if (ret < 0)
			return runtime_error(cmd, 0, "%s", pt_net_last_error());
		if (ret > 0)
			said = false;
	}
	return 0;
}

/* Run c, serving /metrics meanwhile when asked.  0 or an exit status. */
static int serve(const char *cmd, const struct net_args *a, struct net_cmd *c, bool publisher)
{
	struct net_snapshot snap = { .lock = PTHREAD_MUTEX_INITIALIZER, .dir = c->dir,
				     .publisher = publisher, .pub = { .sz = sizeof(snap.pub) },
				     .fol = { .sz = sizeof(snap.fol) } };
	struct metrics *m = NULL;
	int ret;

	if (a->metrics) {
		c->snap = &snap;
		snapshot_take(c);
		ret = metrics_start(&m, cmd, a->metrics, render_metrics, &snap);
		if (ret)
			return ret;
		if (!a->quiet)
			printf("metrics at http://%.*s:%u/metrics\n",
			       (int)(strrchr(a->metrics, ':') - a->metrics), a->metrics,
			       metrics_port(m));
		fflush(stdout);
	}
	ret = run_until_stopped(cmd, c, a->quiet);
	metrics_stop(m);
	c->snap = NULL;
	return ret;
}

static void publisher_summary(struct pt_publisher *p)
{
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	char raw[32], wire[32];

	pt_publisher_stats(p, &st);
	format_bytes(raw, sizeof(raw), st.bytes_raw);
	format_bytes(wire, sizeof(wire), st.bytes_wire);
	printf("stopped at epoch %llu (%llu epochs published, pages %s, wire %s; %llu bytes "
	       "raw, %llu on the wire)\n", (unsigned long long)st.epoch,
	       (unsigned long long)st.epochs, raw, wire, (unsigned long long)st.bytes_raw,
	       (unsigned long long)st.bytes_wire);
}

int cmd_publish(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "nats", required_argument, NULL, OPT_NATS },
		{ "replicas", required_argument, NULL, OPT_REPLICAS },
		{ "max-msgs", required_argument, NULL, OPT_MAX_MSGS },
		{ "max-bytes", required_argument, NULL, OPT_MAX_BYTES },
		{ "snapshot-interval", required_argument, NULL, OPT_SNAPSHOT_INTERVAL },
		{ "sched", required_argument, NULL, OPT_SCHED },
		NET_LONGOPTS,
		{ 0 },
	};
	const char *cmd = "publish";
	int policy = SCHED_BATCH;
	struct pt_net_opts o = { .sz = sizeof(o), .lease_ms = 1000 };
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	struct pt_publisher *p;
	struct net_args a = { 0 };
	bool said_timeout = false;
	const char *dir;
	long long n;
	int c, ret;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (net_option(cmd, c, &o, &a)) {
			if (a.error)
				return a.error;
			continue;
		}
		switch (c) {
		case OPT_NATS: o.urls = optarg; break;
		case OPT_REPLICAS:
			if ((ret = parse_number(cmd, "--replicas", optarg, 1, 5, &n)))
				return ret;
			o.replicas = (unsigned)n;
			break;
		case OPT_MAX_MSGS:
			if ((ret = parse_number(cmd, "--max-msgs", optarg, 2, INT64_MAX, &n)))
				return ret;
			o.max_msgs = n;
			break;
		case OPT_MAX_BYTES:
			if ((ret = parse_number(cmd, "--max-bytes", optarg, 1 << 20, INT64_MAX, &n)))
				return ret;
			o.max_bytes = n;
			break;
		case OPT_SNAPSHOT_INTERVAL:
			if ((ret = parse_number(cmd, "--snapshot-interval", optarg, 1, 86400000, &n)))
				return ret;
			o.snapshot_interval_ms = (unsigned)n;
			break;
		case OPT_SCHED:
			if (!strcmp(optarg, "batch") || !strcmp(optarg, "other"))
				policy = !strcmp(optarg, "batch") ? SCHED_BATCH : SCHED_OTHER;
			else
				return usage_error(cmd, "--sched: batch or other");
			break;
		case 'h':
			if ((ret = alone(cmd, "--help", argc)))
				return ret;
			printf("Usage: pagetrack publish DIR --nats URL[,URL...] [--stream NAME] "
			       "[--replicas N] [options]\n"
			       "\n"
			       "Append every epoch of the region in DIR to a NATS JetStream stream,\n"
			       "created if missing (default name pagetrack-<history id>), and report\n"
			       "the epochs it stored for the writer's PT_LEVEL_REPLICATED waits.\n"
			       "Keeps a snapshot of the region in the bucket NAME-snapshot, from which\n"
			       "followers past the stream's retention catch up.  It holds the writer's\n"
			       "lease (--lease-ms 0: none) and publishes only while it does; it stops\n"
			       "when a standby was promoted (deposed).  Its status record in DIR is\n"
			       "what `pagetrack status DIR` shows.  Runs until SIGINT or SIGTERM.\n"
			       "\n"
			       "  --nats URL[,URL...]  NATS servers, e.g. nats://10.0.0.1:4222\n"
			       "  --replicas N         the stream's replicas when it is created (1-5)\n"
			       "  --max-msgs N         when it is created: keep at most N messages\n"
			       "  --max-bytes N        when it is created: keep at most N bytes (>= 1 MiB)\n"
			       "  --snapshot-interval MS  update the snapshot at most this often\n"
			       "                       (default 10000; sooner after half of either limit)\n"
			       "  --sched batch|other  its scheduling policy (default batch: it never\n"
			       "                       preempts the writer on waking up)\n"
			       "%s", net_auth_help);
			return 0;
		default:
			return option_error(cmd, argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error(cmd, optind >= argc ? "no directory given" :
				   "one directory, then options");
	dir = argv[optind];
	if (!o.urls)
		return usage_error(cmd, "--nats URL is required");
	if ((ret = check_auth(cmd, &o)))
		return ret;
	if ((ret = read_key_file(cmd, &a, &o)))
		return ret;
	/* It yields to the writer on the same host: SCHED_BATCH never
	 * preempts a thread on waking up (the writer inside its sync), at the
	 * same share of a busy machine.  Set before the connection's threads
	 * start: they inherit it (docs/network.md, "Figures"). */
	if (sched_setscheduler(0, policy, &(struct sched_param){ 0 }))
		return runtime_error(cmd, 0, "--sched: %s", strerror(errno));
	pt_net_set_log(net_log_to_stderr, net_log_level(), (void *)cmd);
	catch_stop_signals();
	/* A cluster reached but not answering (leaders being elected, a
	 * loaded server) is waited for, as a run waits for the network. */
	while ((ret = pt_publisher_open(&p, dir, &o)) == -ETIMEDOUT && !stop_signal) {
		if (!said_timeout)
			fprintf(stderr, "pagetrack publish: %s: trying again every second\n",
				pt_net_last_error());
		said_timeout = true;
		sleep(1);
	}
	explicit_bzero(a.key, sizeof(a.key));	/* the handle has its copy */
	if (ret)
		return runtime_error(cmd, 0, "%s", pt_net_last_error());
	pt_publisher_stats(p, &st);
	if (!a.quiet)
		printf("publishing %s to stream %s at %s, from epoch %llu%s\n", dir, st.stream,
		       o.urls, (unsigned long long)st.epoch + 1,
		       o.hmac_key ? ", with an HMAC of each message" : "");
	fflush(stdout);
	ret = serve(cmd, &a, &(struct net_cmd){ .handle = p, .dir = dir, .printed = -1,
						.step = publisher_step }, true);
	if (ret) {
		pt_publisher_close(p);
		return ret;
	}
	if (!a.quiet)
		publisher_summary(p);
	pt_publisher_close(p);
	return 0;
}

/* A catch-up from the snapshot, shown on a terminal: one line rewritten
 * at most ten times a second, ended when the last page is in. */
static void show_progress(const struct pt_net_progress *p, void *arg)
{
	uint64_t *last = arg, now = now_ms();
	bool done = p->pages_done == p->pages_total;

	if (!done && now - *last < 100)
		return;
	*last = now;
	fprintf(stderr, "\rcatch-up from the snapshot: epoch %lld -> %lld: %llu of %llu pages "
		"(%llu%%)%s", (long long)p->from, (long long)p->to,
		(unsigned long long)p->pages_done, (unsigned long long)p->pages_total,
		(unsigned long long)(p->pages_total ? p->pages_done * 100 / p->pages_total : 100),
		done ? "\n" : "");
}

/*
 * A standby (follow --standby): the follower's step, then, every quarter
 * of a lease, a look at the writer's lease, said when it changes.  With
 * --auto-promote, a lapsed lease makes it promote the directory
 * (pt_follower_promote) and go on as the directory's publisher, holding
 * the lease without a gap: the command becomes `publish DIR`, and the
 * writer is to be started on DIR.
 */
struct standby {
	struct net_cmd c;		/* first: the loop's handle and step */
	struct pt_follower *f;
	struct pt_publisher *p;		/* after a promotion */
	struct pt_net_opts *o;
	bool auto_promote, quiet;
	uint64_t next_look_ms;
	int state;			/* the last look: 1 held, 0 lapsed, < 0 an error */
	uint64_t term;
	bool promoted;			/* the publisher still to open */
	bool said_waiting;		/* that it cannot start yet, said once */
	struct pt_promote_info pi;	/* the promotion, said once it publishes */
};

/*
 * Open the promoted directory's publisher.  The cluster may not answer yet
 * (a node was lost with the writer's host: its groups elect new leaders,
 * 4 to 9 s in nats-server's Raft): that is said once and tried again every
 * quarter lease, the follower's handle keeping the lease meanwhile, never
 * an exit that would leave the new term without a publisher.
 *
 * Only then is the promotion said ("promoted ...: start the writer on
 * it"), after one run of the publisher: its source stands at the image's
 * epoch (the standby's, at most the stream's last) before a writer
 * exists.  A writer started first could checkpoint past the stream's end
 * before the source read the image, and its first epochs would be
 * acknowledged only after a snapshot of the region.  0 or an error.
 */
static int standby_publish(struct standby *s)
{
	int ret;

	if (now_ms() < s->next_look_ms) {
		struct timespec ts = { 0, 20 * 1000000 };

		nanosleep(&ts, NULL);
		return 0;
	}
	ret = pt_publisher_open(&s->p, s->c.dir, s->o);
	if (ret == -ECONNREFUSED || ret == -EAGAIN || ret == -ETIMEDOUT) {
		if (!s->said_waiting)
			fprintf(stderr, "pagetrack follow: %s promoted to term %llu; its "
				"publisher cannot start yet: %s; trying again every %u ms\n",
				s->c.dir, (unsigned long long)s->pi.term, pt_net_last_error(),
				s->o->lease_ms / 4);
		s->said_waiting = true;
		s->next_look_ms = now_ms() + s->o->lease_ms / 4;
		return 0;
	}
	if (ret)
		return ret;
	s->promoted = false;
	/* The publisher holds the lease now (same term and holder): the
	 * follower's renewals end with it. */
	pt_follower_close(s->f);
	s->f = NULL;
	if (s->c.snap) {
		pthread_mutex_lock(&s->c.snap->lock);
		s->c.snap->publisher = true;
		pthread_mutex_unlock(&s->c.snap->lock);
	}
	s->c.handle = s->p;
	s->c.step = publisher_step;
	s->c.printed = -1;
	ret = pt_publisher_run(s->p, 0);	/* the source placed; -EAGAIN: later */
	if (ret < 0 && ret != -EAGAIN)
		return ret;
	printf("promoted %s to term %llu after epoch %lld (stream sequence %llu, %llu epochs "
	       "applied, %llu ms): start the writer on it\n", s->c.dir,
	       (unsigned long long)s->pi.term, (long long)s->pi.epoch,
	       (unsigned long long)s->pi.stream_seq, (unsigned long long)s->pi.applied,
	       (unsigned long long)s->pi.elapsed_ms);
	fflush(stdout);
	return 0;
}

static int standby_promote(struct standby *s)
{
	struct pt_promote_info pi = { .sz = sizeof(pi) };
	int ret = pt_follower_promote(s->f, NULL, &pi);

	if (ret == -EBUSY || ret == -ETIMEDOUT || ret == -EAGAIN) {
		/* Another standby won, or the writer came back: follow on. */
		fprintf(stderr, "pagetrack follow: not promoted: %s\n", pt_net_last_error());
		s->state = 1;
		return 0;
	}
	if (ret)
		return ret;
	s->pi = pi;
	s->o->standby_retain_bytes = s->o->standby_segment_bytes = 0;	/* a follower's */
	s->o->progress = NULL;
	s->promoted = true;
	s->next_look_ms = 0;
	return standby_publish(s);
}

static int standby_step(struct net_cmd *c, bool report)
{
	struct standby *s = (struct standby *)c;
	struct pt_lease_info li = { .sz = sizeof(li) };
	int ret, look;

	if (s->promoted)	/* the follower follows no more */
		return standby_publish(s);
	ret = follower_step(c, report);

	if ((ret < 0 && ret != -EAGAIN) || now_ms() < s->next_look_ms)
		return ret;
	look = pt_follower_lease(s->f, &li);
	s->next_look_ms = now_ms() + (look >= 0 ? li.ttl_ms / 4 : 1000);
	if (look == -EAGAIN)
		return ret;
	if (look != s->state || (look == 1 && li.term != s->term)) {
		if (look == 1 && !s->quiet)
			printf("the writer's lease: held by term %llu (host %s, pid %d%s%s), %u ms\n",
			       (unsigned long long)li.term, li.host, (int)li.pid,
			       li.advertise[0] ? ", advertising " : "", li.advertise, li.ttl_ms);
		else if (look == 0)
			printf("the writer's lease lapsed (%u ms)%s\n", li.ttl_ms, s->auto_promote ?
			       ": promoting" : ": run `pagetrack promote` to take over");
		else if (look < 0)
			fprintf(stderr, "pagetrack follow: the writer's lease: %s\n",
				pt_net_last_error());
		fflush(stdout);
		s->state = look;
		s->term = li.term;
	}
	if (look == 0 && s->auto_promote) {
		int err = standby_promote(s);

		if (err)
			return err;
	}
	return ret;
}

int cmd_follow(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "retain", required_argument, NULL, OPT_RETAIN },
		{ "segment", required_argument, NULL, OPT_SEGMENT },
		{ "standby", no_argument, NULL, OPT_STANDBY },
		{ "auto-promote", no_argument, NULL, OPT_AUTO_PROMOTE },
		NET_LONGOPTS,
		{ 0 },
	};
	const char *cmd = "follow";
	struct pt_net_opts o = { .sz = sizeof(o), .lease_ms = 1000 };
	struct pt_follower_stats st = { .sz = sizeof(st) };
	struct standby sb = { .state = 2 };
	struct net_args a = { 0 };
	bool standby = false;
	const char *dir;
	uint64_t progress_shown = 0;
	long long n;
	int c, ret;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (net_option(cmd, c, &o, &a)) {
			if (a.error)
				return a.error;
			continue;
		}
		switch (c) {
		case OPT_RETAIN:
			if ((ret = parse_number(cmd, "--retain", optarg, 1, LLONG_MAX, &n)))
				return ret;
			o.standby_retain_bytes = (uint64_t)n;
			break;
		case OPT_SEGMENT:
			if ((ret = parse_number(cmd, "--segment", optarg, 1, 1ll << 40, &n)))
				return ret;
			o.standby_segment_bytes = (uint64_t)n;
			break;
		case OPT_STANDBY: standby = true; break;
		case OPT_AUTO_PROMOTE: standby = sb.auto_promote = true; break;
		case 'h':
			if ((ret = alone(cmd, "--help", argc)))
				return ret;
			printf("Usage: pagetrack follow URL[,URL...] --stream NAME DIR [--standby "
			       "[--auto-promote]] [options]\n"
			       "\n"
			       "Keep DIR a standby region directory fed by a NATS JetStream stream that\n"
			       "`pagetrack publish` fills: created from the stream's first epoch if DIR\n"
			       "holds no region, else resumed after its epoch.  When the stream no\n"
			       "longer holds the next epoch, DIR catches up from the publisher's\n"
			       "snapshot first (progress shown when stderr is a terminal).  Local\n"
			       "replicas, status and verify work on DIR.  Runs until SIGINT or SIGTERM.\n"
			       "\n"
			       "  --retain BYTES       checkpointed log the standby keeps for its replicas\n"
			       "                       (default 64 MiB)\n"
			       "  --segment BYTES      the standby's log segment size (default 64 MiB)\n"
			       "  --standby            watch the writer's lease and say when it lapses\n"
			       "  --auto-promote       then promote DIR (as `pagetrack promote`) and go\n"
			       "                       on as its publisher, holding the lease: start the\n"
			       "                       writer on DIR\n"
			       "%s", net_auth_help);
			return 0;
		default:
			return option_error(cmd, argv);
		}
	}
	if (optind + 2 != argc)
		return usage_error(cmd, "want URL and DIR");
	o.urls = argv[optind];
	dir = argv[optind + 1];
	if (!o.stream)
		return usage_error(cmd, "--stream NAME is required");
	if (!o.lease_ms && standby)
		return usage_error(cmd, "--standby watches a lease: --lease-ms 0 makes none");
	if (o.advertise && !sb.auto_promote)
		return usage_error(cmd, "--advertise goes with --auto-promote (the lease it takes)");
	if ((ret = check_auth(cmd, &o)))
		return ret;
	if ((ret = read_key_file(cmd, &a, &o)))
		return ret;
	if (!a.quiet && isatty(STDERR_FILENO)) {
		o.progress = show_progress;
		o.progress_arg = &progress_shown;
	}
	pt_net_set_log(net_log_to_stderr, net_log_level(), (void *)cmd);
	catch_stop_signals();
	ret = pt_follower_open(&sb.f, dir, &o);
	/* The handle has its copy of the key; a standby that may become the
	 * directory's publisher keeps it for that handle until then. */
	if (!sb.auto_promote)
		explicit_bzero(a.key, sizeof(a.key));
	if (ret) {
		explicit_bzero(a.key, sizeof(a.key));
		return runtime_error(cmd, 0, "%s", pt_net_last_error());
	}
	pt_follower_stats(sb.f, &st);
	if (!a.quiet)
		printf("following stream %s at %s into %s, from epoch %llu%s%s\n", o.stream, o.urls,
		       dir, (unsigned long long)st.epoch + 1,
		       o.hmac_key ? ", checking each message's HMAC" : "",
		       sb.auto_promote ? ", standby taking over when the writer's lease lapses" :
		       standby ? ", standby" : "");
	fflush(stdout);
	sb.c = (struct net_cmd){ .handle = sb.f, .dir = dir, .printed = -1,
				 .step = standby ? standby_step : follower_step };
	sb.o = &o;
	sb.quiet = a.quiet;
	ret = serve(cmd, &a, &sb.c, false);
	explicit_bzero(a.key, sizeof(a.key));
	if (sb.p) {
		if (!ret && !a.quiet)
			publisher_summary(sb.p);
		pt_publisher_close(sb.p);
		return ret;
	}
	if (ret) {
		pt_follower_close(sb.f);
		return ret;
	}
	pt_follower_stats(sb.f, &st);
	if (!a.quiet)
		printf("stopped at epoch %llu (%llu epochs applied, lag of the last %lld ms)\n",
		       (unsigned long long)st.epoch, (unsigned long long)st.epochs,
		       (long long)st.lag_ms);
	ret = pt_follower_close(sb.f);
	if (ret)
		return runtime_error(cmd, ret, "closing %s", dir);
	return 0;
}

int cmd_promote(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "nats", required_argument, NULL, OPT_NATS },
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "timeout-ms", required_argument, NULL, OPT_TIMEOUT_MS },
		NET_LONGOPTS,
		{ 0 },
	};
	const char *cmd = "promote";
	struct pt_net_opts o = { .sz = sizeof(o), .lease_ms = 1000 };
	struct pt_promote_opts po = { .sz = sizeof(po) };
	struct pt_promote_info pi = { .sz = sizeof(pi) };
	struct net_args a = { 0 };
	const char *dir;
	long long n;
	int c, ret;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (net_option(cmd, c, &o, &a)) {
			if (a.error)
				return a.error;
			continue;
		}
		switch (c) {
		case OPT_NATS: o.urls = optarg; break;
		case OPT_FORCE: po.flags |= PT_PROMOTE_FORCE; break;
		case OPT_TIMEOUT_MS:
			if ((ret = parse_number(cmd, "--timeout-ms", optarg, 1, 3600000, &n)))
				return ret;
			po.timeout_ms = (unsigned)n;
			break;
		case 'h':
			if ((ret = alone(cmd, "--help", argc)))
				return ret;
			printf("Usage: pagetrack promote DIR --nats URL[,URL...] --stream NAME "
			       "[--force] [options]\n"
			       "\n"
			       "Make the standby directory DIR (kept by `pagetrack follow`, which must\n"
			       "not be running on it) the writable region of a new term: take the\n"
			       "writer's lease, apply every epoch the stream holds, record the term in\n"
			       "DIR and append the term marker that fences the old writer off (its\n"
			       "publishes are refused, its region deposed).  Then start the writer and\n"
			       "`pagetrack publish DIR` within a lease, or another standby may take\n"
			       "over.\n"
			       "\n"
			       "  --nats URL[,URL...]  NATS servers, e.g. nats://10.0.0.1:4222\n"
			       "  --force              take the lease from a writer that still holds it\n"
			       "  --timeout-ms N       to catch up with the stream (default 30000)\n"
			       "%s", net_auth_help);
			return 0;
		default:
			return option_error(cmd, argv);
		}
	}
	if (optind + 1 != argc)
		return usage_error(cmd, optind >= argc ? "no directory given" :
				   "one directory, then options");
	dir = argv[optind];
	if (!o.urls)
		return usage_error(cmd, "--nats URL is required");
	if (!o.stream)
		return usage_error(cmd, "--stream NAME is required");
	if (!o.lease_ms)
		return usage_error(cmd, "a promotion takes the lease: --lease-ms 0 makes none");
	if (a.metrics)
		return usage_error(cmd, "--metrics is for publish and follow");
	if ((ret = check_auth(cmd, &o)))
		return ret;
	if ((ret = read_key_file(cmd, &a, &o)))
		return ret;
	pt_net_set_log(net_log_to_stderr, net_log_level(), (void *)cmd);
	ret = pt_dir_promote(dir, &o, &po, &pi);
	explicit_bzero(a.key, sizeof(a.key));
	if (ret)
		return runtime_error(cmd, 0, "%s", pt_net_last_error());
	if (!a.quiet)
		printf("promoted %s to term %llu after epoch %lld (stream %s sequence %llu, %llu "
		       "epochs applied, %llu ms): start the writer and `pagetrack publish %s`\n",
		       dir, (unsigned long long)pi.term, (long long)pi.epoch, o.stream,
		       (unsigned long long)pi.stream_seq, (unsigned long long)pi.applied,
		       (unsigned long long)pi.elapsed_ms, dir);
	return 0;
}
