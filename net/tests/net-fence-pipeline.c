/* net-fence-pipeline: a foreign message lands in a stream among the messages a publisher has in flight (epochs of two parts): none of the publisher's later messages is stored after it, the publisher is fenced and deposes its region, and PT_LEVEL_REPLICATED was reported for no epoch the stream does not hold whole. */
#include <nats/nats.h>
#include <pthread.h>
#include <xxhash.h>

#include "nettest.h"

#define NPAGES	256
#define EPOCHS	600
#define PAGES	12		/* per epoch, of noise: two parts of a 32 KiB payload */
#define STREAM	"pipeline"
#define SUBJECT	"pagetrack." STREAM ".epochs"

static struct pt_publisher *pub;
static int pub_err, pub_done;		/* pub_done atomic */
static char pub_msg[512];

static void *publisher(void *arg)
{
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	uint64_t start = nt_ms();

	(void)arg;
	while (nt_ms() - start < 60000) {
		int err = pt_publisher_run(pub, 50);

		if (err < 0 && err != -EAGAIN) {
			pub_err = err;
			snprintf(pub_msg, sizeof(pub_msg), "%s", pt_net_last_error());
			break;
		}
		pt_publisher_stats(pub, &st);
		if (st.epoch >= EPOCHS)
			break;
	}
	__atomic_store_n(&pub_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }	/* x86: little-endian */
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* A well-formed message of the same history and region, of an epoch far
 * ahead with no page: another writer's, as the publisher will read it. */
static void foreign(unsigned char *m, uint64_t history, uint64_t npages, uint32_t page_size)
{
	memset(m, 0, 128);
	memcpy(m, "PTNET01", 8);
	put16(m + 8, 1);		/* version */
	put16(m + 10, 1);		/* the last part */
	put32(m + 12, 128);
	put64(m + 16, history);
	put64(m + 24, 1000000);		/* epoch */
	put64(m + 40, 0x5eed5eed5eed5eedull);	/* chain */
	put64(m + 56, npages);
	put32(m + 64, page_size);
	put32(m + 76, 1);		/* parts */
	put64(m + 96, XXH3_64bits(m + 128, 0));
	put64(m + 120, XXH3_64bits(m, 120));
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_net_opts o = { .sz = sizeof(o), .stream = STREAM };
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	const char *subjects[1] = { SUBJECT };
	unsigned char msg[128], *mem;
	struct natsd server;
	struct pt_region *w;
	jsStreamInfo *si = NULL;
	jsPubAck *ack = NULL;
	natsConnection *nc;
	natsMsg *m = NULL;
	jsStreamConfig cfg;
	pthread_t thread;
	jsCtx *js;
	uint64_t seed = 41, start, landed, last, complete = 0;
	pt_epoch_t replicated = 0;
	bool running;
	int32_t pid = 0;
	int err, deposed = 0;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	nt_init("net-fence-pipeline: a foreign message among a publisher's messages in flight: "
		"fenced, nothing stored after it, PT_LEVEL_REPLICATED only for whole epochs stored");
	natsd_start(&server, "nats", "max_payload: 32768\n");
	o.urls = server.url;
	if (natsConnection_ConnectTo(&nc, server.url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		DIE("raw connection");
	jsStreamConfig_Init(&cfg);
	cfg.Name = STREAM;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	cfg.Storage = js_FileStorage;
	if (js_AddStream(NULL, js, &cfg, NULL, NULL) != NATS_OK)
		DIE("stream");

	/* A backlog the publisher sends with its window full. */
	if ((err = pt_region_create(&w, nt_path("src"), NPAGES * ps, &wo)))
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	for (int e = 1; e <= EPOCHS; e++) {
		for (int k = 0; k < PAGES; k++) {
			uint64_t *words = (uint64_t *)(mem + (nt_rnd(&seed) % NPAGES) * ps);

			for (size_t i = 0; i < ps / 8; i++)
				words[i] = nt_rnd(&seed);
		}
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
	}
	if ((err = pt_publisher_open(&pub, nt_path("src"), &o)))
		DIE("publisher: %s", pt_net_last_error());
	foreign(msg, pt_region_history(w), NPAGES, (uint32_t)ps);
	pthread_create(&thread, NULL, publisher, NULL);

	/* Once the stream holds some of its messages, the foreign one, with
	 * no expectation: it lands among those in flight. */
	for (start = nt_ms(); nt_ms() - start < 30000; nt_sleep_ms(1)) {
		if (js_GetStreamInfo(&si, js, STREAM, NULL, NULL) != NATS_OK)
			DIE("stream info");
		last = si->State.LastSeq;
		jsStreamInfo_Destroy(si);
		if (last >= 40 || __atomic_load_n(&pub_done, __ATOMIC_ACQUIRE))
			break;
	}
	running = !__atomic_load_n(&pub_done, __ATOMIC_ACQUIRE);
	if (js_Publish(&ack, js, SUBJECT, msg, sizeof(msg), NULL, NULL) != NATS_OK)
		DIE("the foreign message");
	landed = ack->Sequence;
	jsPubAck_Destroy(ack);
	pthread_join(thread, NULL);
	if (!running) {
		/* The publisher was done first: its next epoch meets the message. */
		((uint64_t *)mem)[0]++;
		if (pt_region_sync(w) < 0)
			DIE("sync");
		pub_err = pt_publisher_run(pub, 1000);
		snprintf(pub_msg, sizeof(pub_msg), "%s", pt_net_last_error());
	}
	printf("  the foreign message landed at sequence %llu (%s); the publisher: %s\n",
	       (unsigned long long)landed, running ? "publisher still sending" :
	       "publisher idle", pub_msg);
	if (pub_err != -EOWNERDEAD || !strstr(pub_msg, "fenced"))
		DIE("the publisher was not fenced: %d", pub_err);
	if (pt_publisher_run(pub, 0) != -EOWNERDEAD)
		DIE("a fenced publisher went on");
	pt_publisher_stats(pub, &st);

	/* Nothing of the publisher's after the foreign message. */
	if (js_GetStreamInfo(&si, js, STREAM, NULL, NULL) != NATS_OK)
		DIE("stream info");
	last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	if (last != landed)
		DIE("the stream ends at sequence %llu, after the foreign message at %llu",
		    (unsigned long long)last, (unsigned long long)landed);

	/* The newest whole epoch before it bounds PT_LEVEL_REPLICATED. */
	if (landed > 1) {
		const unsigned char *h;

		if (js_GetMsg(&m, js, STREAM, landed - 1, NULL, NULL) != NATS_OK)
			DIE("get %llu", (unsigned long long)landed - 1);
		h = (const unsigned char *)natsMsg_GetData(m);
		complete = get32(h + 72) + 1 == get32(h + 76) ? get64(h + 24) : get64(h + 24) - 1;
		natsMsg_Destroy(m);
	}
	if ((err = pt_dir_replicated(nt_path("src"), &replicated, &deposed, &pid)))
		DIE("replicated file: %s", pt_strerror(err));
	printf("  the stream holds epochs 1-%llu whole before it; PT_LEVEL_REPLICATED reported "
	       "%lld, the publisher's stats %lld; deposed %d\n", (unsigned long long)complete,
	       (long long)replicated, (long long)st.epoch, deposed);
	if ((uint64_t)replicated > complete || (uint64_t)st.epoch > complete)
		DIE("epoch %lld reported stored, the stream holds epochs up to %llu whole",
		    (long long)replicated, (unsigned long long)complete);
	if (!deposed)
		DIE("the region was not deposed");
	if (pt_region_wait(w, EPOCHS, PT_LEVEL_REPLICATED, 0) != -EOWNERDEAD)
		DIE("the writer's PT_LEVEL_REPLICATED wait does not say deposed");

	pt_publisher_close(pub);
	pt_region_close(w);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsd_stop(&server);
	printf("done\n");
	return 0;
}
