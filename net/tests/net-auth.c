/* net-auth: a server that wants a user and password: wrong or missing credentials, an unreadable TLS file and no server at all give clear errors (library and command); the right ones work. */
#include "nettest.h"

static int expect(const char *what, int err, int want, const char *text)
{
	printf("  %-22s %s\n", what, pt_net_last_error());
	if (err != want || !strcasestr(pt_net_last_error(), text)) {
		printf("    got %d (%s), want %d and \"%s\"\n", err, pt_strerror(err), want, text);
		return 1;
	}
	return 0;
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_net_opts o = { .sz = sizeof(o), .stream = "auth" };
	struct natsd server;
	struct pt_publisher *p = NULL;
	struct pt_follower *f = NULL;
	struct pt_region *w;
	char *src;
	char cmd[16384], url[80];
	int failed = 0, err;

	nt_init("net-auth: bad credentials, bad TLS files, no server: clear errors");
	natsd_start(&server, "nats", "authorization {\n  user: pt\n  password: s3cret\n}\n");
	o.urls = server.url;
	src = strdup(nt_path("src"));
	if ((err = pt_region_create(&w, src, 4 * (size_t)sysconf(_SC_PAGESIZE), &wo)))
		DIE("create: %s", pt_strerror(err));
	pt_region_sync(w);

	failed += expect("no credentials", pt_publisher_open(&p, src, &o), -EACCES, "authoriz");
	o.user = "pt";
	o.password = "wrong";
	failed += expect("wrong password", pt_publisher_open(&p, src, &o), -EACCES, "authoriz");
	failed += expect("follower, wrong", pt_follower_open(&f, nt_path("dst"), &o), -EACCES,
			 "authoriz");
	o.tls_ca = nt_path("no-such-ca.pem");
	failed += expect("missing CA file", pt_publisher_open(&p, src, &o), -EINVAL, "no-such-ca");
	o.tls_ca = NULL;
	o.password = "s3cret";
	err = pt_publisher_open(&p, src, &o);
	printf("  %-22s %s\n", "right password", err ? pt_net_last_error() : "connected");
	if (err)
		failed++;
	else if (pt_publisher_run(p, 1000) != 1)
		failed++, printf("    nothing published: %s\n", pt_net_last_error());
	pt_publisher_close(p);

	/* No server listening: refused quickly. */
	{
		struct pt_net_opts none = { .sz = sizeof(none), .urls = url, .stream = "auth",
					    .connect_timeout_ms = 500 };
		uint64_t t = nt_ms();

		snprintf(url, sizeof(url), "nats://127.0.0.1:%d", nt_free_port());
		failed += expect("no server", pt_publisher_open(&p, src, &none), -ECONNREFUSED,
				 "connecting");
		if (nt_ms() - t > 10000)
			failed++, printf("    took %llu ms\n", (unsigned long long)(nt_ms() - t));
	}
	/* Unknown bytes past the options this library knows. */
	{
		struct { struct pt_net_opts o; uint64_t more; } big = { .o = o, .more = 1 };

		big.o.sz = sizeof(big);
		failed += expect("unknown option bytes", pt_publisher_open(&p, src, &big.o), -EINVAL,
				 "past the");
	}

	/* The command says it too, and exits 1. */
	snprintf(cmd, sizeof(cmd), "'%s' follow %s --stream auth --user pt --password bad '%s' "
		 "> '%s' 2>&1", nt_tool(), server.url, nt_path("dst2"), nt_path("cli.log"));
	err = system(cmd);
	snprintf(cmd, sizeof(cmd), "cat '%s'; grep -qi 'authoriz' '%s'", nt_path("cli.log"),
		 nt_path("cli.log"));
	if (!WIFEXITED(err) || WEXITSTATUS(err) != 1 || system(cmd))
		failed++, printf("    pagetrack follow with a bad password: status %d\n", err);

	pt_region_close(w);
	natsd_stop(&server);
	if (failed)
		DIE("%d checks failed", failed);
	free(src);
	printf("done\n");
	return 0;
}
