/* bench-net: the network layer's figures against raw JetStream publishing in the same run (one nats-server on loopback, file storage); figures only, never pass or fail. */
/*
 * Medians of RUNS runs each, the baselines measured in the same runs:
 *   throughput   writer -> publish -> NATS -> follow (durable), TP_EPOCHS
 *                epochs of 64 pages of fresh random bytes (nothing
 *                compresses: one message of 263 KiB each), against raw
 *                JetStream publishing of as many messages of that size, of
 *                random bytes: pipelined (js_PublishAsync, up to 64
 *                acknowledgements pending) and one at a time (js_Publish,
 *                each waiting for its acknowledgement) -- the better of the
 *                two in each run is the goal's baseline -- and pipelined with
 *                an ordered consumer receiving them (raw publish -> NATS ->
 *                consume).  All are counted in page bytes: 256 KiB a message;
 *   wire bytes   XOR + LZ4 against raw pages, synthetic: each epoch rewrites
 *                a few bytes of each page it writes;
 *   lag          100 epochs/s of 200 pages, once the follower holds epoch 1:
 *                the writer's sync to the follower's durable epoch, p50/p99,
 *                against its floor, an fdatasync of as many bytes appended to
 *                a file at that rate on the same disk, and the writer's
 *                PT_LEVEL_REPLICATED wait, p50/p99;
 *   stall        the writer's pt_region_sync() at that rate, p50/p99, with
 *                no publisher and with a publisher and a follower attached;
 *   snapshot     a 64 MiB region of random pages: the publisher's first
 *                snapshot, and a new follower's catch-up from it, against
 *                a loop of kvStore_Put, then of kvStore_Get, of as many
 *                values of a page's size.
 * `bench-net pipeline|raw|paced|snapshot` runs one part only (for a profiler).
 */
#include <nats/nats.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#include "nettest.h"

#define RUNS		3
#define PACED_RUNS	5		/* the stall's runs: noisier */
#define TP_PAGES	64		/* per epoch: 256 KiB */
#define TP_EPOCHS	300
#define TP_REGION	4096		/* pages */
#define LAG_PAGES	200
#define LAG_REGION	4096
#define LAG_EPOCHS	400		/* 4 s at 100 epochs/s */
#define SNAP_REGION	16384		/* pages: 64 MiB */
/* A pipeline message: 64 raw page entries and the header. */
#define TP_MSG_BYTES	(TP_PAGES * (16 + 4096) + 128)
#define RAW_PENDING	64		/* acknowledgements pending, pipelined */

static size_t ps;
static struct natsd server;
static int stream_no;

/* ---- small statistics ------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static double median(double *v, int n)
{
	double t;

	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (v[j] < v[i]) {
				t = v[i];
				v[i] = v[j];
				v[j] = t;
			}
	return v[n / 2];
}

static double median3(double *v)
{
	return median(v, RUNS);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
	struct timespec ts = { (time_t)(t / 1000000000ull), (long)(t % 1000000000ull) };

	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* ---- publisher and follower ----------------------------------------------- */

/*
 * Where the publisher and the follower run.  By default each in a process
 * of its own, started before the writer's region exists (a fork after it
 * would share the region's pages copy-on-write), as `pagetrack publish`
 * runs beside a writer and `pagetrack follow` on another host (here the
 * same one): the publisher SCHED_BATCH, as the command runs it, the
 * follower SCHED_OTHER, as `pagetrack follow` runs.  BENCH_NET_PLACE=thread:
 * threads of the writer's process instead, sharing its address space (each
 * munmap or mprotect of theirs interrupts the writer's CPU to flush its
 * TLB), as this bench ran them before; BENCH_NET_POLICY=other: the
 * publisher SCHED_OTHER.  The throughput part always uses threads.
 */
static bool place_threads, policy_other;

struct pipe {
	const char *src, *dst;
	char stream[32];
	int go;				/* atomic: the region exists, start */
	int stop;			/* atomic */
	uint64_t target;		/* the follower stops at this epoch (atomic) */
	/* follower: when each epoch was applied (durable in the standby) */
	uint64_t *applied_ns;
	uint64_t nepochs;
	int run_ms;			/* the follower's pt_follower_run() timeout */
	bool follow, threads;		/* a follower; threads of this process */
	struct pt_publisher_stats pst;
	struct pt_follower_stats fst;
	pthread_t pt, ft;
	pid_t pub_pid, fol_pid;
};

/* Shared with the child processes: anonymous MAP_SHARED memory. */
static void *shared_alloc(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		DIE("mmap: %s", strerror(errno));
	return p;
}

static void *run_publisher(void *arg)
{
	struct pipe *pp = arg;
	struct pt_net_opts o = { .sz = sizeof(o), .urls = server.url, .stream = pp->stream };
	struct pt_publisher *p;
	int err;

	pthread_setname_np(pthread_self(), "publisher");
	/* As pagetrack publish: before its connection's threads start, which
	 * inherit it. */
	if (!policy_other && sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ 0 }))
		DIE("SCHED_BATCH: %s", strerror(errno));
	pp->pst.sz = sizeof(pp->pst);
	if ((err = pt_publisher_open(&p, pp->src, &o)))
		DIE("publisher: %s", pt_net_last_error());
	while (!__atomic_load_n(&pp->stop, __ATOMIC_ACQUIRE)) {
		err = pt_publisher_run(p, 200);	/* as pagetrack publish */
		if (err < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
	}
	pt_publisher_stats(p, &pp->pst);
	pt_publisher_close(p);
	return NULL;
}

static void *run_follower(void *arg)
{
	struct pipe *pp = arg;
	struct pt_net_opts o = { .sz = sizeof(o), .urls = server.url, .stream = pp->stream };
	struct pt_follower *f = NULL;
	uint64_t start = nt_ms(), seen = 0;
	int err = -ENOENT;

	pthread_setname_np(pthread_self(), "follower");
	pp->fst.sz = sizeof(pp->fst);
	while (err == -ENOENT && nt_ms() - start < 10000) {
		err = pt_follower_open(&f, pp->dst, &o);
		if (err == -ENOENT)
			nt_sleep_ms(5);
	}
	if (err)
		DIE("follower: %s", pt_net_last_error());
	for (;;) {
		err = pt_follower_run(f, pp->run_ms);
		if (err < 0 && err != -EAGAIN)
			DIE("follower: %s", pt_net_last_error());
		pt_follower_stats(f, &pp->fst);
		if ((uint64_t)pp->fst.epoch != seen) {
			uint64_t t = now_ns();

			for (uint64_t e = seen + 1; e <= (uint64_t)pp->fst.epoch && e < pp->nepochs; e++)
				__atomic_store_n(&pp->applied_ns[e], t, __ATOMIC_RELEASE);
			seen = (uint64_t)pp->fst.epoch;
		}
		if (seen >= __atomic_load_n(&pp->target, __ATOMIC_ACQUIRE) ||
		    (__atomic_load_n(&pp->stop, __ATOMIC_ACQUIRE) && nt_ms() - start > 120000))
			break;
	}
	pt_follower_close(f);
	return NULL;
}

static struct pipe *pipe_start(const char *name, uint64_t nepochs, bool follow, bool threads)
{
	struct pipe *pp = shared_alloc(sizeof(*pp));

	snprintf(pp->stream, sizeof(pp->stream), "bench%d", stream_no);
	pp->src = strdup(nt_path("%s-src%d", name, stream_no));
	pp->dst = strdup(nt_path("%s-dst%d", name, stream_no));
	stream_no++;
	pp->nepochs = nepochs + 2;
	pp->applied_ns = shared_alloc(pp->nepochs * sizeof(uint64_t));
	pp->target = UINT64_MAX;
	pp->run_ms = 1;
	pp->follow = follow;
	pp->threads = threads;
	pp->pub_pid = pp->fol_pid = -1;
	return pp;
}

/* A child process that waits for pipe_go(), runs fn, and exits. */
static pid_t child(struct pipe *pp, void *(*fn)(void *))
{
	uint64_t t0 = nt_ms();
	pid_t pid = fork();

	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (pid > 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	while (!__atomic_load_n(&pp->go, __ATOMIC_ACQUIRE)) {
		if (nt_ms() - t0 > 60000)
			_exit(3);
		nt_sleep_ms(1);
	}
	fn(pp);
	_exit(0);
}

/* In processes: started now, before the writer's region exists. */
static void pipe_spawn(struct pipe *pp)
{
	if (pp->threads)
		return;
	pp->pub_pid = child(pp, run_publisher);
	if (pp->follow)
		pp->fol_pid = child(pp, run_follower);
}

/* The region exists: the publisher and the follower start. */
static void pipe_go(struct pipe *pp)
{
	if (pp->threads) {
		pthread_create(&pp->pt, NULL, run_publisher, pp);
		if (pp->follow)
			pthread_create(&pp->ft, NULL, run_follower, pp);
	}
	__atomic_store_n(&pp->go, 1, __ATOMIC_RELEASE);
}

static void reap(pid_t pid, const char *what)
{
	int status = 0;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		DIE("the %s's process failed (status %#x)", what, status);
}

/* Wait for the follower to reach `last` (none: at once), then stop the
 * publisher. */
static void pipe_finish(struct pipe *pp, uint64_t last)
{
	__atomic_store_n(&pp->target, last, __ATOMIC_RELEASE);
	if (pp->follow) {
		if (pp->threads)
			pthread_join(pp->ft, NULL);
		else
			reap(pp->fol_pid, "follower");
	}
	__atomic_store_n(&pp->stop, 1, __ATOMIC_RELEASE);
	if (pp->threads)
		pthread_join(pp->pt, NULL);
	else
		reap(pp->pub_pid, "publisher");
	if (pp->follow && (uint64_t)pp->fst.epoch < last)
		DIE("the follower stopped at epoch %llu of %llu", (unsigned long long)pp->fst.epoch,
		    (unsigned long long)last);
}

static void remove_dirs(struct pipe *pp)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", pp->src, pp->dst);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", pp->src);
	free((void *)pp->src);
	free((void *)pp->dst);
	munmap(pp->applied_ns, pp->nepochs * sizeof(uint64_t));
	munmap(pp, sizeof(*pp));
}

/* ---- 1. throughput ----------------------------------------------------- */

static unsigned char *noise;		/* random bytes to copy pages from */
#define NOISE_BYTES (8u << 20)

struct tp_result {
	double mib_s;			/* page bytes, MiB/s */
	double epochs_per_sync;		/* the follower's batching */
};

static struct tp_result pipeline_throughput(void)
{
	struct tp_result res;
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct pipe *pp;
	struct pt_region *w;
	unsigned char *mem;
	uint64_t seed = 7, t0, t1;
	int err;

	/* Threads: this part runs after raw publishing initialized libnats in
	 * this process (a child forked then would inherit its state without
	 * its threads). */
	pp = pipe_start("tp", TP_EPOCHS, true, true);
	pp->run_ms = 200;	/* as pagetrack follow */
	if ((err = pt_region_create(&w, pp->src, TP_REGION * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	mem = pt_region_base(w);
	pt_region_sync(w);
	pipe_go(pp);
	/* Wait for epoch 1 to arrive: the clock starts with the stream made. */
	while (__atomic_load_n(&pp->applied_ns[1], __ATOMIC_ACQUIRE) == 0)
		nt_sleep_ms(1);
	t0 = now_ns();
	for (int e = 2; e <= TP_EPOCHS + 1; e++) {
		/* TP_PAGES distinct pages: an odd stride in a power of two. */
		uint64_t first = nt_rnd(&seed) % TP_REGION, stride = nt_rnd(&seed) % TP_REGION | 1;

		for (int k = 0; k < TP_PAGES; k++) {
			uint64_t page = (first + (uint64_t)k * stride) % TP_REGION;
			size_t off = (size_t)(nt_rnd(&seed) % (NOISE_BYTES / ps - 1)) * ps;

			memcpy(mem + page * ps, noise + off, ps);
		}
		if (pt_region_sync(w) != e)
			DIE("sync");
	}
	pipe_finish(pp, TP_EPOCHS + 1);
	t1 = pp->applied_ns[TP_EPOCHS + 1];
	pt_region_close(w);
	res.mib_s = (double)pp->pst.bytes_raw / ((double)(t1 - t0) / 1e9) / (1 << 20);
	res.epochs_per_sync = (double)pp->fst.epochs / (double)(pp->fst.syncs ? pp->fst.syncs : 1);
	remove_dirs(pp);
	return res;
}

/* Raw JetStream, the same messages as the pipeline's: how. */
enum raw_mode {
	RAW_ASYNC,		/* js_PublishAsync, RAW_PENDING acknowledgements pending */
	RAW_SYNC,		/* js_Publish, one at a time */
	RAW_CONSUMED,		/* as RAW_ASYNC, until an ordered consumer got them all */
};

static int raw_failed;		/* atomic: an asynchronous publish failed */

static void raw_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
	(void)js;
	(void)pae;
	(void)closure;
	__atomic_store_n(&raw_failed, 1, __ATOMIC_RELEASE);
}

struct raw_consumer {
	natsSubscription *sub;
	uint64_t n, got, done_ns;
	pthread_t thread;
};

static void *raw_consume(void *arg)
{
	struct raw_consumer *c = arg;
	uint64_t start = nt_ms();

	while (c->got < c->n && nt_ms() - start < 120000) {
		natsMsg *m = NULL;

		if (natsSubscription_NextMsg(&m, c->sub, 1000) == NATS_OK) {
			c->got++;
			natsMsg_Destroy(m);
		}
	}
	c->done_ns = now_ns();
	return NULL;
}

/* Page bytes per second (MiB/s) of TP_EPOCHS raw messages of TP_MSG_BYTES. */
static double raw_publish(enum raw_mode mode)
{
	const char *subjects[1];
	char name[32], subject[64];
	struct raw_consumer c = { .n = TP_EPOCHS };
	jsStreamConfig cfg;
	jsOptions jo;
	natsConnection *nc;
	jsCtx *js;
	uint64_t t0, t1;

	snprintf(name, sizeof(name), "raw%d", stream_no++);
	snprintf(subject, sizeof(subject), "raw.%s", name);
	subjects[0] = subject;
	jsOptions_Init(&jo);
	jo.PublishAsync.MaxPending = RAW_PENDING;
	jo.PublishAsync.ErrHandler = raw_error;
	jo.PublishAsync.StallWait = 10000;
	if (natsConnection_ConnectTo(&nc, server.url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, &jo) != NATS_OK)
		DIE("raw connection");
	jsStreamConfig_Init(&cfg);
	cfg.Name = name;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	if (js_AddStream(NULL, js, &cfg, NULL, NULL) != NATS_OK)
		DIE("raw stream");
	if (mode == RAW_CONSUMED) {
		jsSubOptions so;

		jsSubOptions_Init(&so);
		so.Stream = name;
		so.Ordered = true;
		if (js_SubscribeSync(&c.sub, js, subject, NULL, &so, NULL) != NATS_OK)
			DIE("raw consumer");
		pthread_create(&c.thread, NULL, raw_consume, &c);
	}
	__atomic_store_n(&raw_failed, 0, __ATOMIC_RELEASE);
	t0 = now_ns();
	for (uint64_t i = 0; i < TP_EPOCHS; i++) {
		size_t off = (size_t)(i * 7919 * ps) % (NOISE_BYTES - TP_MSG_BYTES);
		jsErrCode jerr = 0;
		jsPubAck *ack = NULL;
		natsStatus st;

		if (mode == RAW_SYNC) {
			st = js_Publish(&ack, js, subject, noise + off, TP_MSG_BYTES, NULL, &jerr);
			jsPubAck_Destroy(ack);
		} else {
			st = js_PublishAsync(js, subject, noise + off, TP_MSG_BYTES, NULL);
		}
		if (st != NATS_OK)
			DIE("raw publish: %s (%d)", natsStatus_GetText(st), (int)jerr);
	}
	if (mode != RAW_SYNC) {
		jsPubOptions po;

		jsPubOptions_Init(&po);
		po.MaxWait = 60000;
		if (js_PublishAsyncComplete(js, &po) != NATS_OK ||
		    __atomic_load_n(&raw_failed, __ATOMIC_ACQUIRE))
			DIE("raw asynchronous publishing failed");
	}
	t1 = now_ns();
	if (mode == RAW_CONSUMED) {
		pthread_join(c.thread, NULL);
		if (c.got != c.n)
			DIE("the raw consumer got %llu of %llu", (unsigned long long)c.got,
			    (unsigned long long)c.n);
		t1 = c.done_ns;
		natsSubscription_Destroy(c.sub);
	}
	js_DeleteStream(js, name, NULL, NULL);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	return (double)TP_EPOCHS * TP_PAGES * (double)ps / ((double)(t1 - t0) / 1e9) / (1 << 20);
}

/* ---- 2. wire bytes (synthetic) and 3./4. lag, replicated wait, stall -------- */

/*
 * The floor under the lag, on the same disk in the same run: 100 appends a
 * second of an epoch's record (LAG_PAGES pages), each fdatasynced, as the
 * follower's log does.  p50 and p99 in microseconds.
 */
static void fdatasync_floor(double *p50, double *p99)
{
	size_t len = LAG_PAGES * ps + 4096;
	uint64_t *t = calloc(LAG_EPOCHS, 8), next = now_ns();
	int fd = open(nt_path("fdatasync.dat"), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || !t)
		DIE("fdatasync file: %s", strerror(errno));
	for (int i = 0; i < LAG_EPOCHS; i++) {
		uint64_t t0;

		if (write(fd, noise + (size_t)i * ps % (NOISE_BYTES - len), len) != (ssize_t)len)
			DIE("write: %s", strerror(errno));
		t0 = now_ns();
		if (fdatasync(fd))
			DIE("fdatasync: %s", strerror(errno));
		t[i] = now_ns() - t0;
		next += 10000000;
		sleep_until(next);
	}
	close(fd);
	unlink(nt_path("fdatasync.dat"));
	*p50 = (double)pct(t, LAG_EPOCHS, 0.5) / 1e3;
	*p99 = (double)pct(t, LAG_EPOCHS, 0.99) / 1e3;
	free(t);
}

struct paced {
	double lag_p50, lag_p99, rep_p50, rep_p99, stall_p50, stall_p99;	/* microseconds */
	double paused_p50;		/* paired: the stall while they were stopped */
	double raw_over_wire;
};

/*
 * Paired (in processes only): blocks of PAIR_BLOCK epochs alternate between
 * the publisher (and follower) running and stopped (SIGSTOP), so that the
 * stall with them and without them is measured in the same run, a fraction
 * of a second apart, under the same load.  After a stopped block they are
 * let go and the writer waits until they caught up before the next block.
 */
#define PAIR_BLOCK	20

static void pipe_signal(struct pipe *pp, int sig)
{
	if (kill(pp->pub_pid, sig) || (pp->follow && kill(pp->fol_pid, sig)))
		DIE("signal %d: %s", sig, strerror(errno));
}

/* Let go after a stopped block: back once they hold epoch e. */
static void pipe_resume(struct pipe *pp, struct pt_region *w, int e)
{
	uint64_t t0 = nt_ms();

	pipe_signal(pp, SIGCONT);
	if (pt_region_wait(w, (uint64_t)e, PT_LEVEL_REPLICATED, 10000))
		DIE("epoch %d not replicated after a pause", e);
	while (pp->follow && !__atomic_load_n(&pp->applied_ns[e], __ATOMIC_ACQUIRE) &&
	       nt_ms() - t0 < 10000)
		nt_sleep_ms(1);
}

/* Who reads the writer's region in a paced run. */
enum attached {
	ALONE,			/* no one: the writer alone */
	PUBLISHER,		/* a publisher */
	BOTH,			/* a publisher, and a follower on the same machine */
	ATTACHED
};

static const char *const attached_what[ATTACHED] = {
	"no publisher", "a publisher", "a publisher and a follower",
};

/* 100 epochs/s of LAG_PAGES pages, a few bytes rewritten in each page. */
static struct paced paced_run(enum attached who)
{
	bool publish = who != ALONE;
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct paced res = { 0 };
	struct pipe *pp;
	struct pt_region *w;
	unsigned char *mem;
	uint64_t seed = 11, next;
	uint64_t *sync_ns = calloc(LAG_EPOCHS + 2, 8), *stall = calloc(LAG_EPOCHS + 2, 8);
	uint64_t *rep = calloc(LAG_EPOCHS + 2, 8), *lag = calloc(LAG_EPOCHS + 2, 8);
	uint64_t *paused = calloc(LAG_EPOCHS + 2, 8);
	size_t nrep = 0, nlag = 0, nstall = 0, npaused = 0;
	bool paired = publish && !place_threads, stopped = false;
	int err;

	pp = pipe_start(publish ? "lag" : "stall", LAG_EPOCHS, who == BOTH, place_threads);
	if (publish)
		pipe_spawn(pp);
	if ((err = pt_region_create(&w, pp->src, LAG_REGION * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	mem = pt_region_base(w);
	for (size_t i = 0; i < LAG_REGION * ps; i += 64)	/* content to XOR against */
		mem[i] = (unsigned char)nt_rnd(&seed);
	pt_region_sync(w);
	if (publish) {
		uint64_t t0 = nt_ms();

		pipe_go(pp);
		if (pt_region_wait(w, 1, PT_LEVEL_REPLICATED, 10000))
			DIE("epoch 1 not replicated");
		while (pp->follow && __atomic_load_n(&pp->applied_ns[1], __ATOMIC_ACQUIRE) == 0 &&
		       nt_ms() - t0 < 60000)
			nt_sleep_ms(1);
	}
	next = now_ns();
	for (int e = 2; e <= LAG_EPOCHS + 1; e++) {
		uint64_t t, first = nt_rnd(&seed) % (LAG_REGION - LAG_PAGES);
		bool stop = paired && (e - 2) / PAIR_BLOCK % 2;

		if (stop != stopped) {
			if (stop) {
				pipe_signal(pp, SIGSTOP);
			} else {
				pipe_resume(pp, w, e - 1);
				next = now_ns();
			}
			stopped = stop;
		}
		for (int k = 0; k < LAG_PAGES; k++) {
			uint64_t *words = (uint64_t *)(mem + (first + (uint64_t)k) * ps);

			for (int i = 0; i < 3; i++)
				words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
		}
		t = now_ns();
		if (pt_region_sync(w) != e)
			DIE("sync");
		sync_ns[e] = now_ns();
		if (stopped) {
			paused[npaused++] = sync_ns[e] - t;
			sync_ns[e] = UINT64_MAX;	/* no lag counted */
		} else {
			stall[nstall++] = sync_ns[e] - t;
		}
		if (publish && !stopped) {
			if (pt_region_wait(w, (uint64_t)e, PT_LEVEL_REPLICATED, 5000))
				DIE("PT_LEVEL_REPLICATED %d", e);
			rep[nrep++] = now_ns() - sync_ns[e];
		}
		next += 10000000;	/* 100 epochs/s */
		sleep_until(next);
	}
	if (stopped)
		pipe_signal(pp, SIGCONT);
	if (publish) {
		pipe_finish(pp, LAG_EPOCHS + 1);
		for (int e = 2; e <= LAG_EPOCHS + 1; e++)
			if (pp->applied_ns[e] > sync_ns[e] && sync_ns[e] != UINT64_MAX)
				lag[nlag++] = pp->applied_ns[e] - sync_ns[e];
		res.raw_over_wire = (double)pp->pst.bytes_raw / (double)(pp->pst.bytes_wire + 1);
	}
	res.paused_p50 = (double)pct(paused, npaused, 0.5) / 1e3;
	res.stall_p50 = (double)pct(stall, nstall, 0.5) / 1e3;
	res.stall_p99 = (double)pct(stall, nstall, 0.99) / 1e3;
	res.lag_p50 = (double)pct(lag, nlag, 0.5) / 1e3;
	res.lag_p99 = (double)pct(lag, nlag, 0.99) / 1e3;
	res.rep_p50 = (double)pct(rep, nrep, 0.5) / 1e3;
	res.rep_p99 = (double)pct(rep, nrep, 0.99) / 1e3;
	pt_region_close(w);
	remove_dirs(pp);
	free(sync_ns);
	free(stall);
	free(paused);
	free(rep);
	free(lag);
	return res;
}

/* ---- 5. the snapshot of a large region -------------------------------- */

struct snap_figures {
	double first_s, catch_up_s, put_s, get_s;	/* seconds */
};

static void publish_until(struct pt_publisher *p, pt_epoch_t epoch, uint64_t updates)
{
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	uint64_t start = nt_ms();

	while (st.epoch < epoch || st.snapshot_updates < updates) {
		int err = pt_publisher_run(p, 100);

		if (err < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
		pt_publisher_stats(p, &st);
		if (nt_ms() - start > 600000)
			DIE("publisher: stuck");
	}
}

static struct snap_figures snapshot_run(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct pt_net_opts o = { .sz = sizeof(o), .urls = server.url,
				 .snapshot_interval_ms = 600000 };
	struct pt_follower_stats fst = { .sz = sizeof(fst) };
	struct snap_figures fig;
	char stream[32], bucket[48], key[32];
	const char *src, *dst;
	struct pt_publisher *p;
	struct pt_follower *f;
	struct pt_region *w;
	natsConnection *nc;
	jsOptions jo;
	kvStore *kv;
	kvConfig kc;
	jsCtx *js;
	uint64_t t0;
	int err;

	snprintf(stream, sizeof(stream), "snapbench%d", stream_no++);
	o.stream = stream;
	src = strdup(nt_path("%s-src", stream));
	dst = strdup(nt_path("%s-dst", stream));
	if ((err = pt_region_create(&w, src, SNAP_REGION * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	for (uint64_t pg = 0; pg < SNAP_REGION; pg++)
		memcpy((unsigned char *)pt_region_base(w) + pg * ps,
		       noise + (size_t)(pg * 7919 % (NOISE_BYTES / ps - 1)) * ps, ps);
	pt_region_sync(w);
	/* Epoch 1 into the stream, no snapshot yet. */
	if (pt_publisher_open(&p, src, &o))
		DIE("publisher: %s", pt_net_last_error());
	publish_until(p, 1, 0);
	pt_publisher_close(p);
	/* The first snapshot: at once after epoch 2. */
	memset(pt_region_base(w), 1, 64);
	pt_region_sync(w);
	o.snapshot_interval_ms = 1;
	if (pt_publisher_open(&p, src, &o))
		DIE("publisher: %s", pt_net_last_error());
	t0 = now_ns();
	publish_until(p, 2, 1);
	fig.first_s = (double)(now_ns() - t0) / 1e9;
	pt_publisher_close(p);
	pt_region_close(w);

	/* A new follower on the stream without epoch 1: the catch-up. */
	if (natsConnection_ConnectTo(&nc, server.url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		DIE("raw connection");
	jsOptions_Init(&jo);
	jo.Stream.Purge.Keep = 1;
	if (js_PurgeStream(js, stream, &jo, NULL) != NATS_OK)
		DIE("purge");
	o.snapshot_interval_ms = 0;
	if (pt_follower_open(&f, dst, &o))
		DIE("follower: %s", pt_net_last_error());
	t0 = now_ns();
	while (fst.epoch < 2) {
		err = pt_follower_run(f, 100);
		if (err < 0 && err != -EAGAIN)
			DIE("follower: %s", pt_net_last_error());
		pt_follower_stats(f, &fst);
	}
	fig.catch_up_s = (double)(now_ns() - t0) / 1e9;
	if (fst.snapshot_catchups != 1)
		DIE("the follower did not catch up from the snapshot");
	pt_follower_close(f);

	/* Baselines: as many values of a page value's size, one request each. */
	snprintf(bucket, sizeof(bucket), "%s-raw", stream);
	kvConfig_Init(&kc);
	kc.Bucket = bucket;
	kc.History = 1;
	kc.StorageType = js_FileStorage;
	if (js_CreateKeyValue(&kv, js, &kc) != NATS_OK)
		DIE("bucket");
	t0 = now_ns();
	for (uint64_t pg = 0; pg < SNAP_REGION; pg++) {
		snprintf(key, sizeof(key), "page.%llu", (unsigned long long)pg);
		if (kvStore_Put(NULL, kv, key, noise + (pg % 1024) * ps, (int)ps + 80) != NATS_OK)
			DIE("put");
	}
	fig.put_s = (double)(now_ns() - t0) / 1e9;
	t0 = now_ns();
	for (uint64_t pg = 0; pg < SNAP_REGION; pg++) {
		kvEntry *e;

		snprintf(key, sizeof(key), "page.%llu", (unsigned long long)pg);
		if (kvStore_Get(&e, kv, key) != NATS_OK)
			DIE("get");
		kvEntry_Destroy(e);
	}
	fig.get_s = (double)(now_ns() - t0) / 1e9;
	kvStore_Destroy(kv);
	js_DeleteKeyValue(js, bucket);
	snprintf(bucket, sizeof(bucket), "%s-snapshot", stream);
	js_DeleteKeyValue(js, bucket);
	js_DeleteStream(js, stream, NULL, NULL);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", src, dst);
		if (system(cmd))
			fprintf(stderr, "could not remove %s\n", src);
	}
	free((void *)src);
	free((void *)dst);
	return fig;
}

static void snapshot_figures(void)
{
	double v[5][RUNS];

	for (int r = 0; r < RUNS; r++) {
		struct snap_figures fig = snapshot_run();

		v[0][r] = fig.first_s;
		v[1][r] = fig.put_s;
		v[2][r] = fig.catch_up_s;
		v[3][r] = fig.get_s;
		v[4][r] = fig.catch_up_s / fig.get_s;
		fprintf(stderr, "run %d: first snapshot %.2f s (put loop %.2f s), catch-up %.2f s "
			"(get loop %.2f s)\n", r + 1, fig.first_s, fig.put_s, fig.catch_up_s,
			fig.get_s);
	}
	printf("%-58s %.2f s\n", "first snapshot of a 64 MiB region (16384 random pages)",
	       median3(v[0]));
	printf("%-58s %.2f s\n", "baseline, kvStore_Put loop of 16384 page-size values",
	       median3(v[1]));
	printf("%-58s %.2f s\n", "a new follower's catch-up from it", median3(v[2]));
	printf("%-58s %.2f s\n", "baseline, kvStore_Get loop of 16384 values", median3(v[3]));
	printf("%-58s %.2f\n", "catch-up / kvStore_Get loop, same run", median3(v[4]));
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : "";
	bool tp_on = !*only || !strcmp(only, "pipeline"), raw_on = !*only || !strcmp(only, "raw");
	double tp[RUNS] = { 0 }, batch[RUNS] = { 0 }, raw[3][RUNS] = { { 0 } }, rel[RUNS] = { 0 };
	double v[4][PACED_RUNS] = { { 0 } }, ratio[PACED_RUNS] = { 0 };
	double stall[ATTACHED][2][PACED_RUNS] = { { { 0 } } }, over[ATTACHED][PACED_RUNS] = { { 0 } };
	double paired[ATTACHED][PACED_RUNS] = { { 0 } };
	double fsync_floor[2][PACED_RUNS] = { { 0 } };
	static const char *const raw_what[3] = {
		"raw js_PublishAsync, 64 pending",
		"raw js_Publish, one at a time",
		"raw js_PublishAsync -> NATS -> ordered consumer",
	};
	char load0[128], load1[128];
	uint64_t seed = 5;

	nt_init("bench-net: publish -> NATS -> follow against raw JetStream publishing, "
		"one nats-server on loopback, file storage (figures, not pass/fail)");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (ps != 4096)
		DIE("the messages' sizes assume 4 KiB pages, this system's are %zu bytes", ps);
	place_threads = getenv("BENCH_NET_PLACE") && !strcmp(getenv("BENCH_NET_PLACE"), "thread");
	policy_other = getenv("BENCH_NET_POLICY") && !strcmp(getenv("BENCH_NET_POLICY"), "other");
	nt_loadavg(load0, sizeof(load0));
	noise = malloc(NOISE_BYTES);
	for (size_t i = 0; i < NOISE_BYTES / 8; i++)
		((uint64_t *)noise)[i] = nt_rnd(&seed);
	natsd_start(&server, "nats", NULL);
	if (!strcmp(only, "snapshot")) {
		printf("\nbench-net snapshot, medians of %d runs; load average at start: %s; "
		       "%ld CPUs\n", RUNS, load0, sysconf(_SC_NPROCESSORS_ONLN));
		snapshot_figures();
		nt_loadavg(load1, sizeof(load1));
		printf("load average at end: %s\n", load1);
		natsd_stop(&server);
		free(noise);
		return 0;
	}

	/* First: a child forked by the paced part must not inherit libnats
	 * initialized in this process by the parts below. */
	for (int r = 0; r < PACED_RUNS && (!*only || !strcmp(only, "paced")); r++) {
		struct paced res[ATTACHED];

		/* Each in turn, first in its turn: drifts of the machine's
		 * load fall on each alike. */
		for (int k = 0; k < ATTACHED; k++) {
			enum attached who = (enum attached)((r + k) % ATTACHED);

			res[who] = paced_run(who);
		}
		fdatasync_floor(&fsync_floor[0][r], &fsync_floor[1][r]);
		v[0][r] = res[BOTH].lag_p50;
		v[1][r] = res[BOTH].lag_p99;
		v[2][r] = res[BOTH].rep_p50;
		v[3][r] = res[BOTH].rep_p99;
		ratio[r] = res[BOTH].raw_over_wire;
		for (int k = 0; k < ATTACHED; k++) {
			stall[k][0][r] = res[k].stall_p50;
			stall[k][1][r] = res[k].stall_p99;
			over[k][r] = res[k].stall_p50 / res[ALONE].stall_p50 - 1;
			if (k != ALONE && !place_threads)
				paired[k][r] = res[k].stall_p50 / res[k].paused_p50 - 1;
		}
		fprintf(stderr, "run %d: lag p50 %.0f p99 %.0f us; replicated p50 %.0f p99 %.0f us; "
			"stall p50/p99 %.0f/%.0f us alone, %.0f/%.0f us publisher (%+.1f%%), "
			"%.0f/%.0f us publisher + follower (%+.1f%%); fdatasync %.0f/%.0f us\n",
			r + 1, res[BOTH].lag_p50, res[BOTH].lag_p99, res[BOTH].rep_p50,
			res[BOTH].rep_p99, res[ALONE].stall_p50, res[ALONE].stall_p99,
			res[PUBLISHER].stall_p50, res[PUBLISHER].stall_p99, 100 * over[PUBLISHER][r],
			res[BOTH].stall_p50, res[BOTH].stall_p99, 100 * over[BOTH][r],
			fsync_floor[0][r], fsync_floor[1][r]);
		if (!place_threads)
			fprintf(stderr, "run %d, paired: stall p50 %.0f us running / %.0f us stopped "
				"(%+.1f%%) publisher, %.0f / %.0f us (%+.1f%%) publisher + follower\n",
				r + 1, res[PUBLISHER].stall_p50, res[PUBLISHER].paused_p50,
				100 * paired[PUBLISHER][r], res[BOTH].stall_p50, res[BOTH].paused_p50,
				100 * paired[BOTH][r]);
	}
	for (int r = 0; r < RUNS && (tp_on || raw_on); r++) {
		double best;

		if (tp_on) {
			struct tp_result t = pipeline_throughput();

			tp[r] = t.mib_s;
			batch[r] = t.epochs_per_sync;
		}
		for (int m = 0; m < 3 && raw_on; m++)
			raw[m][r] = raw_publish((enum raw_mode)m);
		best = raw[RAW_ASYNC][r] > raw[RAW_SYNC][r] ? raw[RAW_ASYNC][r] : raw[RAW_SYNC][r];
		rel[r] = best > 0 ? tp[r] / best : 0;
		fprintf(stderr, "run %d: pipeline %.1f MiB/s (%.1f epochs a sync); raw async %.1f, "
			"sync %.1f, consumed %.1f MiB/s; pipeline/best raw %.0f%%\n", r + 1, tp[r],
			batch[r], raw[0][r], raw[1][r], raw[2][r], 100 * rel[r]);
	}
	nt_loadavg(load1, sizeof(load1));
	natsd_stop(&server);

	printf("\nbench-net, medians of %d runs (the paced part: %d); load average at start: %s, "
	       "at end: %s; %ld CPUs\n", RUNS, PACED_RUNS, load0, load1,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-62s %s\n", "figure", "value");
	printf("%-62s %.1f MiB/s\n", "throughput, writer -> publish -> NATS -> follow (durable)",
	       median3(tp));
	printf("%-62s %.1f\n", "  the follower's epochs per fdatasync", median3(batch));
	for (int m = 0; m < 3; m++)
		printf("%-62s %.1f MiB/s\n", raw_what[m], median3(raw[m]));
	printf("%-62s %.0f%%\n", "pipeline / the better raw publishing, same run",
	       100 * median3(rel));
	printf("%-62s %.1fx fewer\n", "wire bytes, XOR+LZ4 vs raw (3 words rewritten a page)",
	       median(ratio, PACED_RUNS));
	printf("%-62s p50 %.2f ms  p99 %.2f ms\n", "lag, writer's sync -> follower durable "
	       "(100/s x 200 pages)", median(v[0], PACED_RUNS) / 1e3, median(v[1], PACED_RUNS) / 1e3);
	printf("%-62s p50 %.2f ms  p99 %.2f ms\n", "  floor: fdatasync of an 800 KiB append, same "
	       "disk, 100/s", median(fsync_floor[0], PACED_RUNS) / 1e3,
	       median(fsync_floor[1], PACED_RUNS) / 1e3);
	printf("%-62s p50 %.2f ms  p99 %.2f ms\n", "PT_LEVEL_REPLICATED wait after the sync",
	       median(v[2], PACED_RUNS) / 1e3, median(v[3], PACED_RUNS) / 1e3);
	printf("(the stall: medians of %d runs, %s%s)\n", PACED_RUNS, place_threads ?
	       "publisher and follower threads of the writer's process" :
	       "publisher and follower in processes of their own",
	       policy_other ? ", the publisher SCHED_OTHER" : ", the publisher SCHED_BATCH");
	for (int k = 0; k < ATTACHED; k++) {
		char what[96];

		snprintf(what, sizeof(what), "writer's stall (sync), %s", attached_what[k]);
		printf("%-62s p50 %.0f us  p99 %.0f us", what, median(stall[k][0], PACED_RUNS),
		       median(stall[k][1], PACED_RUNS));
		if (k != ALONE)
			printf("  p50 %+.1f%%", 100 * median(over[k], PACED_RUNS));
		printf("\n");
	}
	for (int k = PUBLISHER; k < ATTACHED && !place_threads; k++) {
		char what[96];

		snprintf(what, sizeof(what), "  paired: %s running / stopped", attached_what[k]);
		printf("%-62s p50 %+.1f%%\n", what, 100 * median(paired[k], PACED_RUNS));
	}
	if (!*only)
		snapshot_figures();
	free(noise);
	return 0;
}
