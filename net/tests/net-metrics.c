/* net-metrics: `pagetrack publish --metrics` and `follow --metrics` serve /metrics over HTTP (real GETs on 127.0.0.1): the Prometheus text format with the handles' epoch, lag and byte counters following the writer; 404 for other paths, 405 for other methods; only the address given is bound; bad addresses and a taken port refused. */
#include "nettest.h"
#include "ntvisible.h"

#define NPAGES	64
#define EPOCHS	30

static char answer[1 << 16];

/* GET /metrics until the sample name{labels} reaches want (30 s at most). */
static double wait_for(int port, const char *name, const char *labels, double want)
{
	uint64_t start = nt_ms();
	double v = NAN;
	char why[256];

	while (nt_ms() - start < 30000) {
		int code = nt_http("127.0.0.1", port, "GET /metrics HTTP/1.0\r\n\r\n", answer,
				   sizeof(answer));
		const char *body = nt_http_body(answer);

		if (code != 200)
			DIE("GET /metrics on port %d: %d\n%s", port, code, answer);
		if (!strstr(answer, "Content-Type: text/plain; version=0.0.4"))
			DIE("not the exposition format's content type:\n%s", answer);
		if (nt_prom_check(body, why, sizeof(why)))
			DIE("port %d: %s:\n%s", port, why, body);
		v = nt_prom_value(body, name, labels);
		if (v == want)
			break;
		nt_sleep_ms(100);
	}
	return v;
}

static pid_t start(char *const argv[], const char *log, int port)
{
	pid_t pid = nt_spawn(argv, log);

	for (int i = 0; i < 3000 && !nt_port_open(port); i++) {	/* 30 s */
		if (waitpid(pid, NULL, WNOHANG) == pid)
			DIE("%s %s ended (log %s)", argv[0], argv[1], log);
		nt_sleep_ms(10);
	}
	if (!nt_port_open(port))
		DIE("nothing listens on %d (log %s)", port, log);
	return pid;
}

/* `pagetrack publish DIR --metrics ARG` refused with exit status want. */
static void refused(const char *url, const char *dir, const char *arg, int want, const char *say)
{
	char *argv[] = { (char *)nt_tool(), "publish", (char *)dir, "--nats", (char *)url,
			 "--stream", "m2", "--metrics", (char *)arg, NULL };
	int st = nt_run(argv, nt_path("refused.log"));
	char *out = nt_read_file(nt_path("refused.log"));

	if (st != want || !out || !strstr(out, say))
		DIE("--metrics %s: exit %d (want %d), not '%s':\n%s", arg, st, want, say,
		    out ? out : "");
	printf("  --metrics %-22s refused, exit %d: done\n", arg, st);
	free(out);
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo) };
	struct natsd server;
	struct pt_region *w;
	char *src, *dst, pub_addr[64], fol_addr[64], labels[600], taken[64];
	unsigned char *mem;
	int pub_port, fol_port, code, err;
	pid_t pub, fol;
	double v;

	nt_init("net-metrics: /metrics of publish and follow over HTTP");
	natsd_start(&server, "nats", NULL);
	src = strdup(nt_path("src"));
	dst = strdup(nt_path("dst"));
	if ((err = pt_region_create(&w, src, NPAGES * (size_t)sysconf(_SC_PAGESIZE), &wo)))
		DIE("create: %s", pt_strerror(err));
	mem = pt_region_base(w);

	pub_port = nt_free_port();
	snprintf(pub_addr, sizeof(pub_addr), "127.0.0.1:%d", pub_port);
	pub = start((char *[]){ (char *)nt_tool(), "publish", src, "--nats", server.url, "--stream",
				"m", "--metrics", pub_addr, NULL }, nt_path("publish.log"), pub_port);
	fol_port = nt_free_port();
	snprintf(fol_addr, sizeof(fol_addr), "127.0.0.1:%d", fol_port);
	fol = start((char *[]){ (char *)nt_tool(), "follow", server.url, "--stream", "m", dst,
				"--metrics", fol_addr, NULL }, nt_path("follow.log"), fol_port);

	for (int e = 1; e <= EPOCHS; e++) {
		memset(mem + (size_t)(e % NPAGES) * (size_t)sysconf(_SC_PAGESIZE), e, 100);
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
	}
	snprintf(labels, sizeof(labels), "dir=\"%s\",role=\"publisher\",stream=\"m\"", src);
	if ((v = wait_for(pub_port, "pagetrack_net_epoch", labels, EPOCHS)) != EPOCHS)
		DIE("the publisher's /metrics says epoch %g, not %d:\n%s", v, EPOCHS, answer);
	if (wait_for(pub_port, "pagetrack_net_lag_epochs", labels, 0) != 0 ||
	    nt_prom_value(nt_http_body(answer), "pagetrack_net_epochs_total", labels) < 1 ||
	    nt_prom_value(nt_http_body(answer), "pagetrack_net_wire_bytes_total", labels) <= 0)
		DIE("the publisher's figures:\n%s", answer);
	printf("  publisher: epoch %d, lag 0, counters: done\n", EPOCHS);
	snprintf(labels, sizeof(labels), "dir=\"%s\",role=\"follower\",stream=\"m\"", dst);
	if ((v = wait_for(fol_port, "pagetrack_net_epoch", labels, EPOCHS)) != EPOCHS)
		DIE("the follower's /metrics says epoch %g, not %d:\n%s", v, EPOCHS, answer);
	if (wait_for(fol_port, "pagetrack_net_pending_messages", labels, 0) != 0 ||
	    nt_prom_value(nt_http_body(answer), "pagetrack_net_page_bytes_total", labels) <= 0)
		DIE("the follower's figures:\n%s", answer);
	printf("  follower: epoch %d, nothing pending, counters: done\n", EPOCHS);

	code = nt_http("127.0.0.1", pub_port, "GET /nothing HTTP/1.0\r\n\r\n", answer,
		       sizeof(answer));
	if (code != 404)
		DIE("GET /nothing: %d", code);
	code = nt_http("127.0.0.1", pub_port, "GET / HTTP/1.0\r\n\r\n", answer, sizeof(answer));
	if (code != 404)
		DIE("GET /: %d", code);
	code = nt_http("127.0.0.1", pub_port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
		       answer, sizeof(answer));
	if (code != 405 || !strstr(answer, "Allow: GET, HEAD"))
		DIE("POST /metrics: %d\n%s", code, answer);
	code = nt_http("127.0.0.1", pub_port, "HEAD /metrics HTTP/1.0\r\n\r\n", answer,
		       sizeof(answer));
	if (code != 200 || *nt_http_body(answer))
		DIE("HEAD /metrics: %d\n%s", code, answer);
	/* Not HTTP: refused (an error status, or closed unanswered), and the
	 * server goes on. */
	code = nt_http("127.0.0.1", pub_port, "garbage\r\n\r\n", answer, sizeof(answer));
	if (code && code < 400)
		DIE("a request that is not HTTP: %d", code);
	code = nt_http("127.0.0.1", pub_port, "GET /metrics HTTP/1.0\r\n\r\n", answer,
		       sizeof(answer));
	if (code != 200)
		DIE("GET /metrics after the garbage: %d", code);
	printf("  404 for other paths, 405 for POST, HEAD without a body, garbage refused: "
	       "done\n");
	/* Bound to 127.0.0.1 only: another loopback address of this host
	 * finds nothing on the port. */
	code = nt_http("127.0.0.2", pub_port, "GET /metrics HTTP/1.0\r\n\r\n", answer,
		       sizeof(answer));
	if (code != -ECONNREFUSED)
		DIE("127.0.0.2:%d answered (%d): the server bound more than 127.0.0.1", pub_port,
		    code);
	printf("  only 127.0.0.1 bound (127.0.0.2 refused): done\n");

	refused(server.url, src, "nonsense", 64, "want ADDRESS:PORT");
	refused(server.url, src, "127.0.0.1:", 64, "want ADDRESS:PORT");
	refused(server.url, src, "127.0.0.1:99999", 64, "bad --metrics port");
	refused(server.url, src, "[::1:9", 64, "bad --metrics address");
	snprintf(taken, sizeof(taken), "127.0.0.1:%d", fol_port);
	refused(server.url, src, taken, 1, "cannot serve on");

	nt_kill(fol, SIGTERM);
	nt_kill(pub, SIGTERM);
	pt_region_close(w);
	natsd_stop(&server);
	free(src);
	free(dst);
	printf("done\n");
	return 0;
}
