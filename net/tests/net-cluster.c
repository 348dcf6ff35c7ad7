/* net-cluster: three nats-server nodes with JetStream and cluster routes, an R3 stream; >= 1,000 epochs writer -> publish -> cluster -> follow, the follower's directory and a replica on it equal to the writer at every epoch checked, through a kill -9 of the stream's leader node and of all three nodes (restarted on the same storage); PT_LEVEL_REPLICATED never reported for an epoch the stream had not acknowledged. */
#include <nats/nats.h>
#include <pthread.h>

#include "nettest.h"

#define NODES	3
#define NPAGES	256
#define EPOCHS	1200
#define KILL_ONE	300	/* kill -9 the stream's leader node */
#define RESTART_ONE	500
#define KILL_ALL	700	/* kill -9 the three nodes ... */
#define RESTART_ALL	800	/* ... and restart them on the same storage */
#define DEADLINE_MS 80000

static uint64_t hashes[EPOCHS + 2];
static uint64_t hashed;			/* atomic */
static int stop_flag;			/* atomic */
static struct natsd nodes[NODES];
static char urls[256];
static const char *src_dir, *dst_dir;
static size_t ps;
static uint64_t t0;

struct result {
	int err;
	char msg[512];
	uint64_t again;			/* -EAGAIN returns: faults ridden through */
	struct pt_publisher_stats ps;
	struct pt_follower_stats fs;
};

static bool stopping(void)
{
	return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE);
}

static bool late(void)
{
	return nt_ms() - t0 > DEADLINE_MS;
}

/* ---- the cluster ---------------------------------------------------- */

static void node_write_conf(int i)
{
	struct natsd *d = &nodes[i];
	FILE *fp = fopen(d->conf, "w");

	if (!fp)
		DIE("%s: %s", d->conf, strerror(errno));
	fprintf(fp, "server_name: n%d\nlisten: 127.0.0.1:%d\n"
		"jetstream { store_dir: \"%s\", max_memory_store: 64MB, max_file_store: 1GB }\n"
		"cluster {\n  name: pt\n  listen: 127.0.0.1:%d\n  routes: [\n", i, d->port,
		d->store, d->cluster_port);
	for (int j = 0; j < NODES; j++)
		if (j != i)
			fprintf(fp, "    nats-route://127.0.0.1:%d\n", nodes[j].cluster_port);
	fprintf(fp, "  ]\n}\n");
	if (fclose(fp))
		DIE("%s: %s", d->conf, strerror(errno));
}

/* Start node i from its configuration file; wait until it listens. */
static void node_start(int i)
{
	struct natsd *d = &nodes[i];
	char *argv[] = { "nats-server", "-c", d->conf, NULL };

	d->pid = nt_spawn(argv, d->log);
	for (int k = 0; k < 1000; k++) {	/* 10 s */
		if (nt_port_open(d->port))
			return;
		if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
			nt_forget(d->pid);
			DIE("nats-server n%d exited (log: %s)", i, d->log);
		}
		nt_sleep_ms(10);
	}
	DIE("nats-server n%d does not listen on %d (log: %s)", i, d->port, d->log);
}

static void node_kill(int i)
{
	nt_kill(nodes[i].pid, SIGKILL);
	nodes[i].pid = 0;
}

static void cluster_start(void)
{
	int n = 0;

	for (int i = 0; i < NODES; i++) {
		struct natsd *d = &nodes[i];

		d->port = nt_free_port();
		d->cluster_port = nt_free_port();
		snprintf(d->store, sizeof(d->store), "%s", nt_path("n%d-store", i));
		snprintf(d->conf, sizeof(d->conf), "%s", nt_path("n%d.conf", i));
		snprintf(d->log, sizeof(d->log), "%s", nt_path("n%d.log", i));
		snprintf(d->url, sizeof(d->url), "nats://127.0.0.1:%d", d->port);
		n += snprintf(urls + n, sizeof(urls) - (size_t)n, "%s%s", i ? "," : "", d->url);
	}
	for (int i = 0; i < NODES; i++)
		node_write_conf(i);
	for (int i = 0; i < NODES; i++)
		node_start(i);
}

/* A plain libnats connection to every node, for the test's own requests. */
static natsConnection *raw_nc;
static jsCtx *raw_js;

static void raw_connect(void)
{
	const char *list[NODES];
	natsOptions *no;

	for (int i = 0; i < NODES; i++)
		list[i] = nodes[i].url;
	if (natsOptions_Create(&no) != NATS_OK || natsOptions_SetServers(no, list, NODES) ||
	    natsOptions_SetMaxReconnect(no, -1) || natsOptions_SetReconnectWait(no, 100) ||
	    natsOptions_SetTimeout(no, 2000) || natsConnection_Connect(&raw_nc, no) != NATS_OK ||
	    natsConnection_JetStream(&raw_js, raw_nc, NULL) != NATS_OK)
		DIE("connecting to the cluster: %s", nats_GetLastError(NULL));
	natsOptions_Destroy(no);
}

/*
 * The R3 stream, created once the cluster has a JetStream leader: a
 * creation fails until the meta group elected one and three peers are
 * known, so try again until it succeeds.
 */
static void stream_create(void)
{
	const char *subjects[1] = { "pagetrack.cluster.epochs" };
	jsStreamConfig cfg;
	jsOptions jo;
	uint64_t start = nt_ms();
	natsStatus s = NATS_OK;
	jsErrCode jerr = 0;

	jsOptions_Init(&jo);
	jo.Wait = 2000;
	jsStreamConfig_Init(&cfg);
	cfg.Name = "cluster";
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	cfg.Replicas = 3;
	while (nt_ms() - start < 30000) {
		jerr = 0;
		s = js_AddStream(NULL, raw_js, &cfg, &jo, &jerr);
		if (s == NATS_OK) {
			printf("R3 stream created %.1f s after the nodes listened\n",
			       (double)(nt_ms() - start) / 1000);
			return;
		}
		nt_sleep_ms(200);
	}
	DIE("no R3 stream after 30 s: %s (JetStream error %d)", natsStatus_GetText(s), (int)jerr);
}

/* The node leading the stream now (-1 none known). */
static int stream_leader(void)
{
	jsStreamInfo *si = NULL;
	jsOptions jo;
	int leader = -1;

	jsOptions_Init(&jo);
	jo.Wait = 2000;
	for (int attempt = 0; attempt < 20 && leader < 0; attempt++) {
		if (js_GetStreamInfo(&si, raw_js, "cluster", &jo, NULL) == NATS_OK) {
			if (si->Cluster && si->Cluster->Leader &&
			    sscanf(si->Cluster->Leader, "n%d", &leader) != 1)
				leader = -1;
			jsStreamInfo_Destroy(si);
		}
		if (leader < 0)
			nt_sleep_ms(200);
	}
	return leader;
}

/* The epoch of the stream's last message (0: none), waiting for the
 * cluster to answer. */
static uint64_t stream_last_epoch(void)
{
	uint64_t start = nt_ms();
	jsOptions jo;

	jsOptions_Init(&jo);
	jo.Wait = 2000;
	while (nt_ms() - start < 30000) {
		natsMsg *m = NULL;
		jsErrCode jerr = 0;
		natsStatus s = js_GetLastMsg(&m, raw_js, "cluster", "pagetrack.cluster.epochs", &jo,
					     &jerr);

		if (s == NATS_OK) {
			uint64_t epoch = 0;

			if (natsMsg_GetDataLength(m) >= 32)
				memcpy(&epoch, natsMsg_GetData(m) + 24, 8);	/* header: epoch */
			natsMsg_Destroy(m);
			return epoch;
		}
		if (jerr == JSNoMessageFoundErr)
			return 0;
		nt_sleep_ms(100);
	}
	DIE("the restarted cluster does not answer for the stream after 30 s");
}

/* ---- publisher and follower threads ----------------------------------- */

static void *publisher(void *arg)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = urls, .stream = "cluster",
				 .replicas = 3 };
	struct result *res = arg;
	struct pt_publisher *p;
	int err;

	err = pt_publisher_open(&p, src_dir, &o);
	if (err) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "open: %s", pt_net_last_error());
		return NULL;
	}
	while (!late()) {
		err = pt_publisher_run(p, 50);
		if (err == -EAGAIN) {
			res->again++;
			nt_sleep_ms(20);
		} else if (err < 0) {
			res->err = err;
			snprintf(res->msg, sizeof(res->msg), "run: %s", pt_net_last_error());
			break;
		}
		pt_publisher_stats(p, &res->ps);
		if (stopping() && (uint64_t)res->ps.epoch >= __atomic_load_n(&hashed, __ATOMIC_ACQUIRE))
			break;
	}
	pt_publisher_stats(p, &res->ps);
	pt_publisher_close(p);
	return NULL;
}

static void *follower(void *arg)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = urls, .stream = "cluster" };
	struct result *res = arg;
	struct pt_follower *f;
	int err;

	err = pt_follower_open(&f, dst_dir, &o);
	if (err) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "open: %s", pt_net_last_error());
		return NULL;
	}
	while (!late()) {
		err = pt_follower_run(f, 50);
		if (err == -EAGAIN) {
			res->again++;
			nt_sleep_ms(20);
		} else if (err < 0) {
			res->err = err;
			snprintf(res->msg, sizeof(res->msg), "run: %s", pt_net_last_error());
			break;
		}
		pt_follower_stats(f, &res->fs);
		if (stopping() && (uint64_t)res->fs.epoch >= __atomic_load_n(&hashed, __ATOMIC_ACQUIRE))
			break;
	}
	pt_follower_stats(f, &res->fs);
	err = pt_follower_close(f);
	if (err && !res->err) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "close: %s", pt_strerror(err));
	}
	return NULL;
}

static bool replicated(struct pt_region *w, uint64_t e)
{
	return pt_region_wait(w, e, PT_LEVEL_REPLICATED, 0) == 0;
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct nt_checker chk = { .hashes = hashes, .hashed = &hashed, .stop = &stop_flag,
				  .deadline_ms = DEADLINE_MS };
	struct result pres = { 0 }, fres = { 0 };
	uint64_t seed = 3, acked_at_kill = 0, outage_ms = 0, t_outage = 0, last;
	pthread_t pt, ft;
	struct pt_region *w;
	unsigned char *mem;
	int err, leader = -1, waits = 0;

	nt_init("net-cluster: a 3-node JetStream cluster, an R3 stream, a node and then all nodes "
		"killed -9 and restarted under a publisher and a follower");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	pres.ps.sz = sizeof(pres.ps);
	fres.fs.sz = sizeof(fres.fs);
	t0 = nt_ms();
	cluster_start();
	raw_connect();
	stream_create();
	src_dir = strdup(nt_path("src"));
	dst_dir = strdup(nt_path("dst"));
	chk.dir = dst_dir;
	err = pt_region_create(&w, src_dir, NPAGES * ps, &wo);
	if (err)
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	if (pt_region_sync(w) != 1)
		DIE("epoch 1");
	hashes[1] = nt_hash(mem, NPAGES * ps);
	__atomic_store_n(&hashed, 1, __ATOMIC_RELEASE);
	pthread_create(&pt, NULL, publisher, &pres);
	pthread_create(&ft, NULL, follower, &fres);
	pthread_create(&chk.thread, NULL, nt_checker_run, &chk);

	for (int e = 2; e <= EPOCHS; e++) {
		for (int k = 0; k < 1 + (int)(nt_rnd(&seed) % 5); k++) {
			uint64_t page = nt_rnd(&seed) % NPAGES, *words = (uint64_t *)(mem + page * ps);

			if (nt_rnd(&seed) % 8 == 0) {
				for (size_t i = 0; i < ps / 8; i++)
					words[i] = nt_rnd(&seed);
			} else {
				for (int i = 0; i < 4; i++)
					words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
			}
		}
		((uint64_t *)mem)[e % (ps / 8)] += (uint64_t)e;
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
		hashes[e] = nt_hash(mem, NPAGES * ps);
		__atomic_store_n(&hashed, (uint64_t)e, __ATOMIC_RELEASE);

		if (e == KILL_ONE) {
			leader = stream_leader();
			if (leader < 0)
				DIE("the stream has no leader before the kill");
			printf("epoch %d: kill -9 n%d, the stream's leader\n", e, leader);
			node_kill(leader);
		} else if (e == RESTART_ONE) {
			printf("epoch %d: n%d restarted\n", e, leader);
			node_start(leader);
		} else if (e == KILL_ALL) {
			/* What the writer was told is acknowledged, then the
			 * nodes go: that much must be in the stream after. */
			for (uint64_t a = (uint64_t)e; a > 0 && !acked_at_kill; a--)
				if (replicated(w, a))
					acked_at_kill = a;
			for (int i = 0; i < NODES; i++)
				node_kill(i);
			t_outage = nt_ms();
			printf("epoch %d: kill -9 of the three nodes (epoch %llu was reported "
			       "replicated)\n", e, (unsigned long long)acked_at_kill);
		} else if (e > KILL_ALL && e < RESTART_ALL) {
			/* Nothing can acknowledge these. */
			if (replicated(w, (uint64_t)e))
				DIE("epoch %d reported replicated with every node down", e);
			nt_sleep_ms(2);
		} else if (e == RESTART_ALL) {
			uint64_t stored;

			for (int i = 0; i < NODES; i++)
				node_start(i);
			stored = stream_last_epoch();
			outage_ms = nt_ms() - t_outage;
			printf("epoch %d: the three nodes restarted after %llu ms; the stream ends at "
			       "epoch %llu\n", e, (unsigned long long)outage_ms,
			       (unsigned long long)stored);
			if (stored < acked_at_kill)
				DIE("the stream ends at epoch %llu, epoch %llu had been reported "
				    "replicated", (unsigned long long)stored,
				    (unsigned long long)acked_at_kill);
		}
		/* The writer paced by PT_LEVEL_REPLICATED, except with no node. */
		if (e % 50 == 0 && !(e >= KILL_ALL && e < RESTART_ALL)) {
			err = pt_region_wait(w, (uint64_t)e, PT_LEVEL_REPLICATED, 30000);
			if (err)
				DIE("PT_LEVEL_REPLICATED for epoch %d: %s (publisher: %s)", e,
				    pt_strerror(err), pres.msg);
			waits++;
		}
		if (late())
			DIE("the writer took too long (epoch %d)", e);
	}
	err = pt_region_wait(w, EPOCHS, PT_LEVEL_REPLICATED, 30000);
	if (err)
		DIE("PT_LEVEL_REPLICATED for epoch %d: %s (%s)", EPOCHS, pt_strerror(err), pres.msg);
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	pthread_join(pt, NULL);
	pthread_join(ft, NULL);
	pthread_join(chk.thread, NULL);
	if (pres.err || fres.err || chk.err)
		DIE("publisher: %s | follower: %s | checker: %s", pres.msg, fres.msg, chk.msg);
	if (fres.fs.epoch != EPOCHS)
		DIE("the follower reached epoch %llu of %d", (unsigned long long)fres.fs.epoch, EPOCHS);
	if (chk.checks < 100)
		DIE("the replica on the follower showed only %llu epochs",
		    (unsigned long long)chk.checks);
	last = stream_last_epoch();
	if (last != EPOCHS)
		DIE("the stream ends at epoch %llu, not %d", (unsigned long long)last, EPOCHS);
	err = pt_dir_verify(dst_dir, NULL, NULL);
	if (err)
		DIE("verify of the follower's directory: %d problems", err);
	{
		struct pt_replica_opts ro = { .sz = sizeof(ro) };
		struct pt_replica *r;

		err = pt_replica_open(&r, dst_dir, &ro);
		if (err || pt_replica_epoch(r) != EPOCHS || memcmp(pt_replica_base(r), mem, NPAGES * ps))
			DIE("the follower's directory differs from the writer at epoch %d", EPOCHS);
		pt_replica_close(r);
	}
	printf("%d epochs in %.1f s; replica on the follower checked at %llu epochs; %d replicated "
	       "waits; publisher retried %llu times, follower %llu; %llu messages, %llu bytes on "
	       "the wire\n", EPOCHS, (double)(nt_ms() - t0) / 1000,
	       (unsigned long long)chk.checks, waits, (unsigned long long)pres.again,
	       (unsigned long long)fres.again, (unsigned long long)pres.ps.messages,
	       (unsigned long long)pres.ps.bytes_wire);
	err = pt_region_close(w);
	if (err)
		DIE("close: %s", pt_strerror(err));
	jsCtx_Destroy(raw_js);
	natsConnection_Destroy(raw_nc);
	for (int i = 0; i < NODES; i++)
		node_kill(i);
	printf("done\n");
	return 0;
}
