/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - the /metrics endpoint of `pagetrack publish` and `follow`
 * (--metrics ADDR:PORT), served by libmicrohttpd on a thread of its own.
 *
 * It binds the one address given, never a wildcard the user did not write,
 * answers GET and HEAD of /metrics with the Prometheus text format (the
 * command's render function writes it, prom.h), 404 for any other path
 * and 405 for other methods.  The library's handles are not shared with
 * this thread: the render function reads a copy of their statistics that
 * the command's own thread refreshes under a lock (tools/net.c).
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "commands.h"
#include "metrics.h"

struct metrics {
	struct MHD_Daemon *daemon;
	metrics_render_fn render;
	void *arg;
	unsigned int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int code, char *body,
			     size_t len, const char *type)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result text_reply(struct MHD_Connection *c, unsigned int code, const char *text)
{
	char *body = strdup(text);

	return body ? reply(c, code, body, strlen(body), "text/plain; charset=utf-8") : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct metrics *m = cls;
	char *body = NULL;
	size_t len = 0;
	FILE *out;

	(void)version;
	(void)upload;
	(void)state;
	/* A request with a body is called again for each piece of it: the
	 * answer (405 below) is queued once the body is taken. */
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
	if (strcmp(url, "/metrics"))
		return text_reply(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
	out = open_memstream(&body, &len);
	if (!out)
		return MHD_NO;
	m->render(out, m->arg);
	if (fclose(out)) {
		free(body);
		return MHD_NO;
	}
	return reply(c, MHD_HTTP_OK, body, len, "text/plain; version=0.0.4; charset=utf-8");
}

/*
 * "HOST:PORT" or "[IPv6]:PORT" into an address: 0, or a usage error's
 * exit status.
 */
static int parse_address(const char *cmd, const char *arg, struct sockaddr_storage *sa,
			 socklen_t *sa_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	const char *colon = strrchr(arg, ':');
	char host[256], port[8];
	long long n;
	size_t hl;
	int ret;

	if (!colon || colon == arg || !colon[1])
		return usage_error(cmd, "bad --metrics '%s': want ADDRESS:PORT, e.g. "
				   "127.0.0.1:9464 or [::1]:9464", arg);
	hl = (size_t)(colon - arg);
	if (arg[0] == '[' && hl >= 2 && arg[hl - 1] == ']') {
		arg++;
		hl -= 2;
	}
	if (!hl || hl >= sizeof(host) || memchr(arg, ']', hl) || memchr(arg, '[', hl))
		return usage_error(cmd, "bad --metrics address in '%s'", arg);
	memcpy(host, arg, hl);
	host[hl] = '\0';
	if ((ret = parse_number(cmd, "--metrics port", colon + 1, 0, 65535, &n)))
		return ret;
	snprintf(port, sizeof(port), "%lld", n);
	ret = getaddrinfo(host, port, &hints, &res);
	if (ret || !res)
		return usage_error(cmd, "--metrics: address '%s': %s", host,
				   ret ? gai_strerror(ret) : "none");
	if ((res->ai_family != AF_INET && res->ai_family != AF_INET6) ||
	    res->ai_addrlen > sizeof(*sa)) {
		freeaddrinfo(res);
		return usage_error(cmd, "--metrics: address '%s' is neither IPv4 nor IPv6", host);
	}
	memcpy(sa, res->ai_addr, res->ai_addrlen);
	*sa_len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int metrics_start(struct metrics **out, const char *cmd, const char *address,
		  metrics_render_fn render, void *arg)
{
	struct sockaddr_storage sa;
	socklen_t sa_len = 0;
	sigset_t block, old;
	const union MHD_DaemonInfo *info;
	struct metrics *m;
	unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
	int ret;

	*out = NULL;
	ret = parse_address(cmd, address, &sa, &sa_len);
	if (ret)
		return ret;
	m = calloc(1, sizeof(*m));
	if (!m)
		return runtime_error(cmd, -ENOMEM, "--metrics");
	m->render = render;
	m->arg = arg;
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* SIGINT and SIGTERM are the command's: its server thread (which
	 * inherits this mask) must not take them. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	errno = 0;
	m->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m,
				     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				     MHD_OPTION_CONNECTION_LIMIT, 16u,
				     MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				     MHD_OPTION_END);
	ret = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!m->daemon) {
		free(m);
		return runtime_error(cmd, ret ? -ret : -EADDRNOTAVAIL,
				     "--metrics: cannot serve on %s", address);
	}
	info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info ? info->port : 0;
	*out = m;
	return 0;
}

unsigned int metrics_port(const struct metrics *m)
{
	return m->port;
}

void metrics_stop(struct metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->daemon);
	free(m);
}
