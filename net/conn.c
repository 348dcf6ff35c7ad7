/* SPDX-License-Identifier: MIT */
/*
 * conn.c - options, the NATS connection, errors and diagnostics shared by
 * the publisher and the follower.
 *
 * Reconnects are libnats's: it retries every server of the list without
 * end (natsOptions_SetMaxReconnect(-1)), buffering nothing we rely on: a
 * publish that did not get its acknowledgement is treated as failed, and
 * the publisher re-reads the stream before going on (publisher.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "lease.h"
#include "wire.h"

static __thread char last_error[512];

static pt_log_fn log_fn;
static enum pt_log_level log_max;
static void *log_arg;

PT_EXPORT const char *pt_net_last_error(void)
{
	return last_error;
}

PT_EXPORT void pt_net_set_log(pt_log_fn fn, enum pt_log_level max_level, void *arg)
{
	log_fn = fn;
	log_max = max_level;
	log_arg = arg;
}

static void vlog(enum pt_log_level level, const char *fmt, va_list ap, char *out, size_t len)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	if (out)
		snprintf(out, len, "%s", buf);
	if (log_fn && level <= log_max)
		log_fn(level, buf, log_arg);
}

void net_log(enum pt_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(level, fmt, ap, NULL, 0);
	va_end(ap);
}

int net_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	/* The caller gets the error and reports it: for the log it is a
	 * detail (a returned error is not said twice). */
	vlog(PT_LOG_DEBUG, fmt, ap, last_error, sizeof(last_error));
	va_end(ap);
	return err;
}

const char *net_status_text(natsStatus s)
{
	natsStatus st;
	const char *text = nats_GetLastError(&st), *end;

	if (!text || !*text)
		return natsStatus_GetText(s);
	/* libnats starts its texts with "(file.c:line): ": not for users. */
	if (text[0] == '(' && (end = strstr(text, "): ")) && end - text < 40)
		text = end + 3;
	return text;
}

int net_errno(natsStatus s)
{
	switch (s) {
	case NATS_OK:
		return 0;
	case NATS_NO_MEMORY:
		return -ENOMEM;
	case NATS_NO_SERVER:
		return -ECONNREFUSED;
	case NATS_CONNECTION_AUTH_FAILED:
	case NATS_NOT_PERMITTED:
	case NATS_SSL_ERROR:
	case NATS_SECURE_CONNECTION_WANTED:
	case NATS_SECURE_CONNECTION_REQUIRED:
		return -EACCES;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
		return -EINVAL;
	case NATS_MAX_PAYLOAD:
		return -EMSGSIZE;
	default:
		return -EAGAIN;
	}
}

uint64_t net_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t net_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000;
}

int net_opts_copy(struct pt_net_opts *o, const struct pt_net_opts *in, enum pt_net_role role,
		  struct wire_key *key)
{
	memset(o, 0, sizeof(*o));
	if (in) {
		size_t n = in->sz < sizeof(*o) ? in->sz : sizeof(*o);

		/* No option struct will outgrow a page: a larger sz is garbage
		 * (and would have the loop below read past the caller's). */
		if (in->sz < sizeof(size_t) || in->sz > 4096)
			return net_fail(-EINVAL, "options: sz %zu is not a size of the options",
					in->sz);
		/* A newer caller's fields this library does not know must be
		 * zero: it would otherwise ignore what it was asked. */
		for (size_t i = sizeof(*o); i < in->sz; i++)
			if (((const unsigned char *)in)[i])
				return net_fail(-EINVAL,
						"options: byte %zu is set, past the %zu bytes this "
						"library knows", i, sizeof(*o));
		memcpy(o, in, n);
	}
	o->sz = sizeof(*o);
	if (!o->urls || !*o->urls)
		return net_fail(-EINVAL, "options: no NATS server URL");
	if (!o->replicas)
		o->replicas = 1;
	if (o->replicas > 5)
		return net_fail(-EINVAL, "options: %u stream replicas (1 to 5)", o->replicas);
	if (!o->connect_timeout_ms)
		o->connect_timeout_ms = 2000;
	if (!o->request_timeout_ms)
		o->request_timeout_ms = 5000;
	if (!o->ping_ms)
		o->ping_ms = NET_PING_MS;
	if (o->ping_ms < 100 || o->ping_ms > 60000)
		return net_fail(-EINVAL, "options: pings every %u ms (100 to 60000)", o->ping_ms);
	if ((o->user != NULL) != (o->password != NULL))
		return net_fail(-EINVAL, "options: a user needs a password and the reverse");
	if (o->creds_file && o->user)
		return net_fail(-EINVAL, "options: user/password and a credentials file both given");
	if ((o->tls_cert != NULL) != (o->tls_key != NULL))
		return net_fail(-EINVAL, "options: a TLS certificate needs its key and the reverse");
	if ((o->hmac_key != NULL) != (o->hmac_key_len != 0))
		return net_fail(-EINVAL, "options: an HMAC key needs its length and the reverse");
	if (o->hmac_key && (o->hmac_key_len < WIRE_KEY_MIN || o->hmac_key_len > WIRE_KEY_MAX))
		return net_fail(-EINVAL, "options: an HMAC key of %zu bytes (%d to %d)",
				o->hmac_key_len, WIRE_KEY_MIN, WIRE_KEY_MAX);
	if (role != PT_NET_FOLLOWER && (o->standby_retain_bytes || o->standby_segment_bytes))
		return net_fail(-EINVAL, "options: the standby's retain and segment bytes are a "
				"follower's");
	/* The region's own bound, told at open rather than at the first epoch. */
	if (o->standby_segment_bytes > (1ull << 40))
		return net_fail(-EINVAL, "options: standby segments of %llu bytes (at most 1 TiB)",
				(unsigned long long)o->standby_segment_bytes);
	wire_key_set(key, o->hmac_key, o->hmac_key_len);
	o->hmac_key = NULL;
	o->hmac_key_len = 0;
	if (o->lease_ms && (o->lease_ms < 100 || o->lease_ms > 600000))
		return net_fail(-EINVAL, "options: a lease of %u ms (100 to 600000)", o->lease_ms);
	if (o->advertise && !lease_advertise_ok(o->advertise))
		return net_fail(-EINVAL, "options: '%.80s' is no address to advertise (HOST:PORT, "
				"at most %d bytes)", o->advertise, LEASE_ADVERTISE_MAX - 1);
	if (o->advertise && role == PT_NET_PUBLISHER && !o->lease_ms)
		return net_fail(-EINVAL, "options: an address to advertise goes with the lease "
				"(lease_ms 0 holds none)");
	return 0;
}

struct pt_region_opts net_standby_opts(const struct pt_net_opts *o, uint64_t history)
{
	/* PT_DURABLE_NONE: the follower makes its epochs durable itself, in
	 * batches (follower.c). */
	return (struct pt_region_opts){
		.sz = sizeof(struct pt_region_opts), .durability = PT_DURABLE_NONE,
		.history_id = history, .retain_bytes = o->standby_retain_bytes,
		.segment_bytes = o->standby_segment_bytes,
	};
}

/*
 * The name the connection callbacks print.  libnats runs them on its own
 * thread and may run one after natsConnection_Destroy() has returned (the
 * disconnected callback of the close itself): their argument must outlive
 * the handle that made the connection.  Names are kept for the process's
 * life, one copy per distinct stream name (a handful at most).
 */
static const char *callback_name(const char *stream)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static char *names[64];
	const char *found = "(a stream)";

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!names[i])
			names[i] = strdup(stream);
		if (names[i] && !strcmp(names[i], stream)) {
			found = names[i];
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return found;
}

static void on_disconnected(natsConnection *nc, void *arg)
{
	/* Closing the connection (net_disconnect) runs this too: no news. */
	if (natsConnection_IsClosed(nc))
		return;
	net_log(PT_LOG_WARN, "stream %s: disconnected from NATS, reconnecting", (char *)arg);
}

static void on_reconnected(natsConnection *nc, void *arg)
{
	char url[256] = "";

	natsConnection_GetConnectedUrl(nc, url, sizeof(url));
	net_log(PT_LOG_INFO, "stream %s: reconnected to %s", (char *)arg, url);
}

int net_connect(struct net_conn *c, const struct pt_net_opts *o, const char *stream)
{
	natsOptions *no = NULL;
	natsStatus s;
	char *urls = NULL, *save, *tok;
	const char *list[32];
	int n = 0, err;

	memset(c, 0, sizeof(*c));
	snprintf(c->subject, sizeof(c->subject), "pagetrack.%s.epochs", stream);
	urls = strdup(o->urls);
	if (!urls)
		return net_fail(-ENOMEM, "out of memory");
	for (tok = strtok_r(urls, ",", &save); tok && n < 32; tok = strtok_r(NULL, ",", &save))
		list[n++] = tok;
	if (!n) {
		err = net_fail(-EINVAL, "options: no NATS server URL in '%s'", o->urls);
		goto out;
	}
	s = natsOptions_Create(&no);
	if (s == NATS_OK)
		s = natsOptions_SetServers(no, list, n);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(no, o->connect_timeout_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(no, -1);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(no, 200);
	/* A server cut off by the network (no FIN, no RST) is noticed by
	 * pings only: libnats's default (2 minutes, 2 outstanding) would leave
	 * a standby watching a lease through a dead connection for minutes. */
	if (s == NATS_OK)
		s = natsOptions_SetPingInterval(no, o->ping_ms);
	if (s == NATS_OK)
		s = natsOptions_SetMaxPingsOut(no, 2);
	if (s == NATS_OK)
		s = natsOptions_SetName(no, "pagetrack");
	if (s == NATS_OK)
		s = natsOptions_SetDisconnectedCB(no, on_disconnected, (void *)callback_name(stream));
	if (s == NATS_OK)
		s = natsOptions_SetReconnectedCB(no, on_reconnected, (void *)callback_name(stream));
	if (s == NATS_OK && o->user)
		s = natsOptions_SetUserInfo(no, o->user, o->password);
	if (s == NATS_OK && o->creds_file)
		s = natsOptions_SetUserCredentialsFromFiles(no, o->creds_file, NULL);
	if (s == NATS_OK && (o->tls_ca || o->tls_cert))
		s = natsOptions_SetSecure(no, true);
	if (s == NATS_OK && o->tls_ca)
		s = natsOptions_LoadCATrustedCertificates(no, o->tls_ca);
	if (s == NATS_OK && o->tls_cert)
		s = natsOptions_LoadCertificatesChain(no, o->tls_cert, o->tls_key);
	if (s != NATS_OK) {
		err = net_fail(s == NATS_NO_MEMORY ? -ENOMEM : -EINVAL,
			       "NATS options (credentials or TLS files): %s", net_status_text(s));
		goto out;
	}
	s = natsConnection_Connect(&c->nc, no);
	if (s != NATS_OK) {
		const char *text = net_status_text(s);

		err = net_errno(s);
		/* libnats reports a refused authorization as "no server" after
		 * trying them all: its last error text says which it was. */
		if (strcasestr(text, "authorization") || strcasestr(text, "authentication") ||
		    strcasestr(text, "permission"))
			err = -EACCES;
		else if (err == -EAGAIN)
			err = -ECONNREFUSED;
		err = net_fail(err, "connecting to %s: %s", o->urls, text);
		c->nc = NULL;
		goto out;
	}
	c->max_payload = natsConnection_GetMaxPayload(c->nc);
	jsOptions_Init(&c->jsopts);
	c->jsopts.Wait = o->request_timeout_ms;
	s = natsConnection_JetStream(&c->js, c->nc, &c->jsopts);
	if (s != NATS_OK) {
		err = net_fail(net_errno(s), "JetStream context: %s", net_status_text(s));
		goto out;
	}
	err = 0;
out:
	natsOptions_Destroy(no);
	free(urls);
	if (err)
		net_disconnect(c);
	return err;
}

/* How long net_sub_drop() waits for its flush's answer before it keeps the
 * subscription until the close instead. */
#define DROP_FLUSH_MS	1000

/* What is kept (net_sub_drop): a gather's opener thread (status.c) may
 * drop while its owner does. */
static pthread_mutex_t later_lock = PTHREAD_MUTEX_INITIALIZER;

static void later_destroy(const struct net_later *l)
{
	if (l->watcher)
		kvWatcher_Destroy(l->watcher);
	else
		natsSubscription_Destroy(l->sub);
}

/* Keep l for later; false when out of memory. */
static bool keep(struct net_conn *c, struct net_later l)
{
	struct net_later *grown;

	pthread_mutex_lock(&later_lock);
	grown = realloc(c->later, (c->nlater + 1) * sizeof(*grown));
	if (grown) {
		l.gen = ++c->later_gen;
		grown[c->nlater++] = l;
		c->later = grown;
	}
	pthread_mutex_unlock(&later_lock);
	return grown != NULL;
}

/*
 * Flushed after an unsubscribe: the read thread is done with it, and with
 * every subscription unsubscribed and kept before the flush began (not one
 * another thread kept meanwhile): those are destroyed.
 */
static bool flushed(struct net_conn *c)
{
	int64_t ms = c->jsopts.Wait > 0 && c->jsopts.Wait < DROP_FLUSH_MS ? c->jsopts.Wait :
		     DROP_FLUSH_MS;
	uint64_t before;
	size_t n = 0;

	pthread_mutex_lock(&later_lock);
	before = c->later_gen;
	pthread_mutex_unlock(&later_lock);
	/* Reconnecting, a flush would wait its whole time: kept instead. */
	if (natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED ||
	    natsConnection_FlushTimeout(c->nc, ms) != NATS_OK)
		return false;
	pthread_mutex_lock(&later_lock);
	for (size_t i = 0; i < c->nlater; i++) {
		if (c->later[i].out && c->later[i].gen <= before)
			later_destroy(&c->later[i]);
		else
			c->later[n++] = c->later[i];
	}
	c->nlater = n;
	pthread_mutex_unlock(&later_lock);
	return true;
}

void net_sub_drop(struct net_conn *c, natsSubscription *sub, bool delete)
{
	if (!sub)
		return;
	if (delete) {
		natsSubscription_Unsubscribe(sub);
		/* Still valid: not out of the table (an ordered consumer's
		 * reset was changing its id): kept until the close. */
		delete = !natsSubscription_IsValid(sub);
		if (delete && flushed(c)) {
			natsSubscription_Destroy(sub);
			return;
		}
	}
	if (!keep(c, (struct net_later){ .sub = sub, .out = delete }))
		/* Never destroyed: a leak, not a crash. */
		net_log(PT_LOG_WARN, "out of memory: a subscription is left as it is");
}

void net_watcher_drop(struct net_conn *c, kvWatcher *w)
{
	if (!w)
		return;
	/* Unsubscribes, deletes its consumer; failed, it may still be in
	 * the table: kept until the close. */
	bool out = kvWatcher_Stop(w) == NATS_OK;

	if (out && flushed(c))
		kvWatcher_Destroy(w);
	else if (!keep(c, (struct net_later){ .watcher = w, .out = out }))
		net_log(PT_LOG_WARN, "out of memory: a KV watcher is left as it is");
}

size_t net_kept(const struct net_conn *c, bool out)
{
	size_t n = 0;

	pthread_mutex_lock(&later_lock);
	for (size_t i = 0; i < c->nlater; i++)
		n += c->later[i].out == out;
	pthread_mutex_unlock(&later_lock);
	return n;
}

void net_close(struct net_conn *c)
{
	/* Joins the read thread: nothing kept is used after this. */
	if (c->nc)
		natsConnection_Close(c->nc);
	pthread_mutex_lock(&later_lock);
	for (size_t i = 0; i < c->nlater; i++)
		later_destroy(&c->later[i]);
	free(c->later);
	c->later = NULL;
	c->nlater = 0;
	pthread_mutex_unlock(&later_lock);
}

void net_disconnect(struct net_conn *c)
{
	net_close(c);
	if (c->js)
		jsCtx_Destroy(c->js);
	if (c->nc)
		natsConnection_Destroy(c->nc);
	c->js = NULL;
	c->nc = NULL;
}
