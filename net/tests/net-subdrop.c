/* net-subdrop: subscriptions dropped while messages stream in to them (net_sub_drop, net/conn.h).  libnats before 3.6.1 uses a subscription destroyed while its read thread hands it a message after it was freed (nats.c issue 637); net_sub_drop flushes before it destroys, or keeps the subscription until net_close.  Plain subscriptions dropped 2,000 times with an unsubscribe and 20 times kept; one whose flush goes unanswered (the server stopped) kept until the next flush; JetStream ordered consumers (the follower's kind) dropped both ways; a KV watcher dropped.  Under AddressSanitizer a child first drops the same way with natsSubscription_Destroy alone, to show that the workload reaches the race (reported, not required: it is a race). */
#include <dirent.h>
#include <pthread.h>

#include "nettest.h"
#include "conn.h"

#define SUBJECT		"drop.x"
#define STREAM		"drop"
#define PLAIN_ROUNDS	2000
#define KEPT_ROUNDS	20
#define JS_ROUNDS	20
#define PART_MS		60000	/* each part's bound */

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif

static const char *url;
static volatile int stop;
static int failures;

/* Publishes to SUBJECT and the stream's subject until stop. */
static void *flood(void *arg)
{
	natsConnection *nc;

	(void)arg;
	if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
		DIE("flood: connecting to %s", url);
	while (!stop) {
		for (int i = 0; i < 100; i++)
			natsConnection_PublishString(nc, SUBJECT, "a message");
		natsConnection_PublishString(nc, STREAM ".s", "a stored message");
		natsConnection_Flush(nc);
	}
	natsConnection_Destroy(nc);
	return NULL;
}

/* Every thread of pid stopped (SIGSTOP lands on each in its own time):
 * waited for at most 2 s. */
static bool all_stopped(pid_t pid)
{
	char path[64];

	for (int i = 0; i < 200; i++) {
		struct dirent *de;
		DIR *d;
		bool all = true;

		snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
		d = opendir(path);
		while (d && all && (de = readdir(d))) {
			char stat[384], buf[256], *p;
			FILE *f;

			if (de->d_name[0] == '.')
				continue;
			snprintf(stat, sizeof(stat), "%s/%s/stat", path, de->d_name);
			f = fopen(stat, "r");
			p = f && fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
			all = p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
			if (f)
				fclose(f);
		}
		if (d)
			closedir(d);
		if (d && all)
			return true;
		nt_sleep_ms(10);
	}
	return false;
}

static void take(natsSubscription *sub, int n)
{
	natsMsg *m;

	for (int i = 0; i < n; i++)
		if (natsSubscription_NextMsg(&m, sub, 2000) == NATS_OK)
			natsMsg_Destroy(m);
}

static uint64_t part_start;

static void cell(const char *what, bool ok, const char *why)
{
	printf("  %-56s %5.1f s %s%s%s\n", what, (nt_ms() - part_start) / 1000.0,
	       ok ? "done" : "failed [", ok ? "" : why, ok ? "" : "]");
	part_start = nt_ms();
	fflush(stdout);
	if (!ok)
		failures++;
}

/* The control: natsSubscription_Destroy alone, in a child of its own. */
static void control(void)
{
#ifdef ASAN
	pid_t pid = fork();
	int status, r = 0;

	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (!pid) {
		natsConnection *nc;
		pthread_t t;
		int fd = open(nt_path("control.log"), O_WRONLY | O_CREAT | O_TRUNC, 0600);

		if (fd < 0 || dup2(fd, 2) < 0)	/* the sanitizer's report */
			_exit(3);

		if (natsConnection_ConnectTo(&nc, url) != NATS_OK)
			_exit(3);
		pthread_create(&t, NULL, flood, NULL);
		for (uint64_t end = nt_ms() + PART_MS; r < PLAIN_ROUNDS && nt_ms() < end; r++) {
			natsSubscription *sub;

			if (natsConnection_SubscribeSync(&sub, nc, SUBJECT) != NATS_OK)
				_exit(3);
			take(sub, 3);
			natsSubscription_Destroy(sub);
		}
		_exit(0);	/* the flood thread still runs: no clean end */
	}
	if (waitpid(pid, &status, 0) != pid)
		DIE("waitpid: %s", strerror(errno));
	printf("  control, natsSubscription_Destroy alone: %s (%.1f s)\n",
	       WIFEXITED(status) && !WEXITSTATUS(status) ? "survived (the race was not hit)" :
	       "crashed (the race this test guards against)", (nt_ms() - part_start) / 1000.0);
#else
	printf("  control: only under AddressSanitizer\n");
#endif
}

int main(void)
{
	struct pt_net_opts o = { .sz = sizeof(o), .stream = STREAM, .request_timeout_ms = 5000,
				 .connect_timeout_ms = 5000, .ping_ms = NET_PING_MS };
	struct natsd server;
	struct net_conn c;
	jsStreamConfig cfg;
	jsErrCode jerr = 0;
	jsStreamInfo *si = NULL;
	kvStore *kv = NULL;
	kvConfig kc;
	pthread_t t;
	uint64_t end;
	int r;

	nt_init("net-subdrop: subscriptions dropped while messages stream in (net_sub_drop)");
	natsd_start(&server, "nats", NULL);
	url = server.url;
	part_start = nt_ms();
	control();
	part_start = nt_ms();

	o.urls = url;
	if (net_connect(&c, &o, STREAM))
		DIE("connecting: %s", pt_net_last_error());
	jsStreamConfig_Init(&cfg);
	cfg.Name = STREAM;
	cfg.Subjects = (const char *[]){ STREAM ".>" };
	cfg.SubjectsLen = 1;
	cfg.MaxMsgs = 10000;
	if (js_AddStream(&si, c.js, &cfg, NULL, &jerr) != NATS_OK)
		DIE("the stream: %d", (int)jerr);
	jsStreamInfo_Destroy(si);
	pthread_create(&t, NULL, flood, NULL);

	/* Unsubscribed, flushed, destroyed. */
	end = nt_ms() + PART_MS;
	for (r = 0; r < PLAIN_ROUNDS && nt_ms() < end; r++) {
		natsSubscription *sub;

		if (natsConnection_SubscribeSync(&sub, c.nc, SUBJECT) != NATS_OK)
			DIE("subscribing");
		take(sub, 3);
		net_sub_drop(&c, sub, true);
	}
	cell("plain subscriptions dropped with an unsubscribe", r == PLAIN_ROUNDS &&
	     !net_kept(&c, true) && !net_kept(&c, false), "too slow, or kept");

	/* A flush that fails: kept until one succeeds. */
	{
		natsSubscription *sub;

		if (natsConnection_SubscribeSync(&sub, c.nc, SUBJECT) != NATS_OK)
			DIE("subscribing");
		take(sub, 1);
		kill(server.pid, SIGSTOP);
		if (!all_stopped(server.pid))
			DIE("nats-server did not stop");
		net_sub_drop(&c, sub, true);	/* its flush waits 1 s */
		kill(server.pid, SIGCONT);
		cell("a flush unanswered: the subscription kept", net_kept(&c, true) == 1, "");
		if (natsConnection_SubscribeSync(&sub, c.nc, SUBJECT) != NATS_OK)
			DIE("subscribing");
		take(sub, 1);
		net_sub_drop(&c, sub, true);
		cell("destroyed at the next drop's flush", !net_kept(&c, true), "still kept");
	}

	/* Kept until the close. */
	end = nt_ms() + PART_MS;
	for (r = 0; r < KEPT_ROUNDS && nt_ms() < end; r++) {
		natsSubscription *sub;

		if (natsConnection_SubscribeSync(&sub, c.nc, SUBJECT) != NATS_OK)
			DIE("subscribing");
		take(sub, 1);
		net_sub_drop(&c, sub, false);
	}
	cell("plain subscriptions kept for the close", r == KEPT_ROUNDS &&
	     net_kept(&c, false) == KEPT_ROUNDS, "not all kept");

	/* Ordered consumers, as the follower's. */
	end = nt_ms() + PART_MS;
	for (r = 0; r < 2 * JS_ROUNDS && nt_ms() < end; r++) {
		jsSubOptions so;
		natsSubscription *sub;

		jsSubOptions_Init(&so);
		so.Stream = STREAM;
		so.Ordered = true;
		so.Config.DeliverPolicy = js_DeliverNew;
		if (js_SubscribeSync(&sub, c.js, STREAM ".>", NULL, &so, &jerr) != NATS_OK)
			DIE("an ordered consumer: %d", (int)jerr);
		take(sub, 5);
		net_sub_drop(&c, sub, r % 2);
	}
	cell("ordered consumers dropped, half of them kept", r == 2 * JS_ROUNDS &&
	     net_kept(&c, false) == KEPT_ROUNDS + JS_ROUNDS && !net_kept(&c, true),
	     "too slow, or not as many kept");

	/* A KV watcher. */
	kvConfig_Init(&kc);
	kc.Bucket = "drop";
	if (js_CreateKeyValue(&kv, c.js, &kc) != NATS_OK)
		DIE("a bucket");
	end = nt_ms() + PART_MS;
	for (r = 0; r < JS_ROUNDS && nt_ms() < end; r++) {
		kvWatcher *w;
		kvEntry *e = NULL;
		uint64_t rev;

		kvStore_PutString(&rev, kv, "k", "v");
		if (kvStore_WatchAll(&w, kv, NULL) != NATS_OK)
			DIE("a watcher");
		if (kvWatcher_Next(&e, w, 2000) == NATS_OK)
			kvEntry_Destroy(e);
		net_watcher_drop(&c, w);
	}
	cell("KV watchers dropped", r == JS_ROUNDS && !net_kept(&c, true), "too slow, or kept");
	kvStore_Destroy(kv);

	net_close(&c);
	cell("net_close destroyed what was kept", !c.nlater && !c.later, "left");
	stop = 1;
	pthread_join(t, NULL);
	net_disconnect(&c);
	printf("%s\n", failures ? "FAIL" : "PASS");
	return failures ? T_FAIL : 0;
}
