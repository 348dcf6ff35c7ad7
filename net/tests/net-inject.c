/* net-inject: malformed, truncated, replayed, reordered, foreign-history, bad-checksum, other-version, unchained and forged (valid checksums, other pages) messages, and bad term markers (on the wrong subject, not chaining, not after their sequence, version 1, a bad host), injected into a stream with the raw NATS API: the follower refuses each with an error naming its stream sequence, before writing anything: its directory stays at the last good epoch and content. */
#include <nats/nats.h>
#include <xxhash.h>

#include "nettest.h"

#define NPAGES	16
#define GOOD	6		/* epochs published */
#define KEEP	3		/* epochs before the injected message */

static size_t ps;
static uint64_t hashes[GOOD + 1];
static unsigned char *good[GOOD + 1];	/* the stream's message of each epoch */
static int good_len[GOOD + 1];

static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }	/* x86: little-endian */
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }

/* Recompute a message's body and header checksums after a change. */
static void reseal(unsigned char *m, int len)
{
	put64(m + 96, XXH3_64bits(m + 128, (size_t)len - 128));
	put64(m + 120, XXH3_64bits(m, 120));
}

/*
 * A term marker (wire version 2) going on from epoch e of the good stream,
 * appended after sequence after_seq: its header from e's, its body made
 * here, checksums right.
 */
static unsigned char *marker(int e, uint64_t after_seq, int *len)
{
	unsigned char *m = calloc(1, 128 + 64);
	uint64_t chain;

	memcpy(m, good[e], 128);
	memcpy(&chain, good[e] + 40, 8);
	m[8] = 3;				/* version: a term marker */
	m[10] = 3;				/* last part, term marker */
	put64(m + 32, chain);			/* prev_chain = chain */
	put64(m + 48, 0);			/* payload checksum */
	put32(m + 68, 0);			/* page_count */
	put32(m + 72, 0);			/* part 0 ... */
	put32(m + 76, 1);			/* ... of 1 */
	put32(m + 80, 0);
	put32(m + 84, 0);
	put64(m + 88, 64);			/* body length */
	put64(m + 128, 7);			/* term */
	put64(m + 136, 0x1234);			/* holder */
	put64(m + 144, after_seq);
	memcpy(m + 152, "standby-host", 12);
	*len = 128 + 64;
	reseal(m, *len);
	return m;
}

static unsigned char *copy(int e, int *len)
{
	unsigned char *m = malloc((size_t)good_len[e]);

	memcpy(m, good[e], (size_t)good_len[e]);
	*len = good_len[e];
	return m;
}

struct msg {
	unsigned char *data;
	int len;
	bool term;		/* on the term markers' subject */
};

struct cell {
	const char *name;
	int expect;		/* the follower's error */
	int nmsgs;		/* injected after epochs 1..KEEP */
	struct msg msgs[2];
};

static jsCtx *js;

static void publish_raw(const char *subject, const void *data, int len)
{
	jsErrCode jerr = 0;
	natsStatus s = js_Publish(NULL, js, subject, data, len, NULL, &jerr);

	if (s != NATS_OK)
		DIE("raw publish: %s (%d)", natsStatus_GetText(s), (int)jerr);
}

static bool run_cell(const char *url, int i, struct cell *c)
{
	char stream[32], subject[64], term_subject[64];
	const char *dir = nt_path("f%d", i);
	const char *subjects[2] = { subject, term_subject };
	struct pt_net_opts o = { .sz = sizeof(o), .urls = url, .stream = stream };
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_follower *f;
	struct pt_replica *r;
	jsStreamConfig cfg;
	jsErrCode jerr = 0;
	char want[64];
	uint64_t start = nt_ms();
	int err = 0;

	snprintf(stream, sizeof(stream), "inject%d", i);
	snprintf(subject, sizeof(subject), "pagetrack.%s.epochs", stream);
	snprintf(term_subject, sizeof(term_subject), "pagetrack.%s.term", stream);
	jsStreamConfig_Init(&cfg);
	cfg.Name = stream;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 2;
	if (js_AddStream(NULL, js, &cfg, NULL, &jerr) != NATS_OK)
		DIE("stream %s: %d", stream, (int)jerr);
	for (int e = 1; e <= KEEP; e++)
		publish_raw(subject, good[e], good_len[e]);
	for (int k = 0; k < c->nmsgs; k++)
		publish_raw(c->msgs[k].term ? term_subject : subject, c->msgs[k].data,
			    c->msgs[k].len);
	/* What comes after: the good rest, never reached. */
	for (int e = KEEP + 1; e <= GOOD; e++)
		publish_raw(subject, good[e], good_len[e]);

	if (pt_follower_open(&f, dir, &o))
		DIE("%s: open: %s", c->name, pt_net_last_error());
	while (nt_ms() - start < 10000) {
		err = pt_follower_run(f, 100);
		if (err < 0 && err != -EAGAIN)
			break;
	}
	printf("  %-16s %s\n", c->name, pt_net_last_error());
	snprintf(want, sizeof(want), "sequence %d:", KEEP + 1);
	if (err != c->expect) {
		printf("    error %d (%s), expected %d\n", err, pt_strerror(err), c->expect);
		pt_follower_close(f);
		return false;
	}
	if (!strstr(pt_net_last_error(), want)) {
		printf("    the message does not name %s\n", want);
		pt_follower_close(f);
		return false;
	}
	if (pt_follower_run(f, 0) != c->expect) {
		printf("    the follower went on after the error\n");
		pt_follower_close(f);
		return false;
	}
	if ((err = pt_follower_close(f))) {
		printf("    close: %s\n", pt_strerror(err));
		return false;
	}
	/* The directory stays at the last good epoch, with its content: its
	 * writer's state block says no later epoch was ever published. */
	if (pt_dir_epoch(dir) != KEEP) {
		printf("    the standby published epoch %lld, not %d\n", (long long)pt_dir_epoch(dir),
		       KEEP);
		return false;
	}
	err = pt_replica_open(&r, dir, &ro);
	if (err || pt_replica_epoch(r) != KEEP ||
	    nt_hash(pt_replica_base(r), NPAGES * ps) != hashes[KEEP]) {
		printf("    the directory is not the writer's epoch %d (%s, epoch %llu)\n", KEEP,
		       pt_strerror(err), err ? 0ull : (unsigned long long)pt_replica_epoch(r));
		if (!err)
			pt_replica_close(r);
		return false;
	}
	pt_replica_close(r);
	if (pt_dir_verify(dir, NULL, NULL)) {
		printf("    verify found problems\n");
		return false;
	}
	return true;
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_net_opts o = { .sz = sizeof(o), .stream = "source" };
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	struct natsd server;
	struct pt_publisher *p;
	struct pt_region *w;
	natsConnection *nc;
	unsigned char *mem;
	uint64_t start;
	int err, failed = 0;

	nt_init("net-inject: bad messages in the stream are refused, named by sequence, never "
		"applied");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;

	/* The good messages: a writer's epochs 1..GOOD through a publisher. */
	if ((err = pt_region_create(&w, nt_path("src"), NPAGES * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	mem = pt_region_base(w);
	for (int e = 1; e <= GOOD; e++) {
		((uint64_t *)(mem + (size_t)(e % NPAGES) * ps))[e] = (uint64_t)e * 77;
		((uint64_t *)(mem + (size_t)((e * 5) % NPAGES) * ps))[3] = (uint64_t)e;
		if (pt_region_sync(w) != e)
			DIE("sync");
		hashes[e] = nt_hash(mem, NPAGES * ps);
	}
	if ((err = pt_publisher_open(&p, nt_path("src"), &o)))
		DIE("publisher: %s", pt_net_last_error());
	for (start = nt_ms(); st.epoch < GOOD && nt_ms() - start < 10000;) {
		pt_publisher_run(p, 50);
		pt_publisher_stats(p, &st);
	}
	if (st.epoch != GOOD || st.messages != GOOD)
		DIE("published %llu epochs in %llu messages", (unsigned long long)st.epoch,
		    (unsigned long long)st.messages);
	pt_publisher_close(p);
	pt_region_close(w);

	if (natsConnection_ConnectTo(&nc, server.url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		DIE("raw connection");
	for (int e = 1; e <= GOOD; e++) {
		natsMsg *m;

		if (js_GetMsg(&m, js, "source", (uint64_t)e, NULL, NULL) != NATS_OK)
			DIE("get %d", e);
		good_len[e] = natsMsg_GetDataLength(m);
		good[e] = malloc((size_t)good_len[e]);
		memcpy(good[e], natsMsg_GetData(m), (size_t)good_len[e]);
		natsMsg_Destroy(m);
	}

	{
		struct cell cells[24];
		int n = 0, len;
		unsigned char *m;

		/* Noise. */
		m = malloc(300);
		for (int i = 0; i < 300; i++)
			m[i] = (unsigned char)(i * 37 + 11);
		cells[n++] = (struct cell){ "malformed", -EBADMSG, 1, { { m, 300 } } };
		/* The next epoch, cut short. */
		m = copy(KEEP + 1, &len);
		cells[n++] = (struct cell){ "truncated", -EBADMSG, 1, { { m, len - 7 } } };
		m = copy(KEEP + 1, &len);
		cells[n++] = (struct cell){ "header only", -EBADMSG, 1, { { m, 100 } } };
		/* An older epoch again. */
		m = copy(2, &len);
		cells[n++] = (struct cell){ "replayed", -EILSEQ, 1, { { m, len } } };
		/* Epoch KEEP + 2 before KEEP + 1. */
		m = copy(KEEP + 2, &len);
		cells[n++] = (struct cell){ "reordered", -EILSEQ, 2,
					    { { m, len }, { good[KEEP + 1], good_len[KEEP + 1] } } };
		/* Another history, checksums made right. */
		m = copy(KEEP + 1, &len);
		put64(m + 16, 0x1234567890abcdefull);
		reseal(m, len);
		cells[n++] = (struct cell){ "foreign history", -ESTALE, 1, { { m, len } } };
		/* A body byte flipped. */
		m = copy(KEEP + 1, &len);
		m[len - 1] ^= 0x40;
		cells[n++] = (struct cell){ "body checksum", -EBADMSG, 1, { { m, len } } };
		/* A header byte flipped (the epoch). */
		m = copy(KEEP + 1, &len);
		m[24] ^= 0x01;
		cells[n++] = (struct cell){ "header checksum", -EBADMSG, 1, { { m, len } } };
		/* Another wire version (this library reads 1 to 4). */
		m = copy(KEEP + 1, &len);
		m[8] = 5;
		reseal(m, len);
		cells[n++] = (struct cell){ "other version", -EPROTO, 1, { { m, len } } };
		/* A chain that does not follow the standby's. */
		m = copy(KEEP + 1, &len);
		put64(m + 32, 0xdeadbeef);
		reseal(m, len);
		cells[n++] = (struct cell){ "unchained", -EILSEQ, 1, { { m, len } } };
		/* Forged: the next epoch's header (its chain and prev_chain are
		 * right), a body of one raw page of other bytes, every checksum
		 * made right.  Only the chain computed from the pages tells. */
		len = 128 + 16 + (int)ps;
		m = calloc(1, (size_t)len);
		memcpy(m, good[KEEP + 1], 128);
		put32(m + 68, 1);		/* page_count */
		put32(m + 80, 0);		/* first */
		put32(m + 84, 1);		/* count */
		put64(m + 88, 16 + ps);		/* body length */
		put64(m + 128, 2);		/* page 2 ... */
		put32(m + 136, 0);		/* ... raw */
		put32(m + 140, (uint32_t)ps);
		memset(m + 144, 0x5a, ps);
		reseal(m, len);
		cells[n++] = (struct cell){ "forged chain", -EBADMSG, 1, { { m, len } } };
		/* A page index past the region, checksums made right. */
		m = copy(KEEP + 1, &len);
		put64(m + 128, NPAGES + 5);
		reseal(m, len);
		cells[n++] = (struct cell){ "page index", -EBADMSG, 1, { { m, len } } };
		/* An unknown page encoding. */
		m = copy(KEEP + 1, &len);
		m[128 + 8] = 9;
		reseal(m, len);
		cells[n++] = (struct cell){ "encoding", -EBADMSG, 1, { { m, len } } };
		/* A good term marker, on the epochs' subject. */
		m = marker(KEEP, KEEP, &len);
		cells[n++] = (struct cell){ "marker, epochs", -EBADMSG, 1, { { m, len } } };
		/* An epoch message on the markers' subject. */
		m = copy(KEEP + 1, &len);
		cells[n++] = (struct cell){ "epoch, term", -EBADMSG, 1, { { m, len, true } } };
		/* A marker going on from another epoch than the standby's. */
		m = marker(KEEP - 1, KEEP, &len);
		cells[n++] = (struct cell){ "marker chain", -EILSEQ, 1, { { m, len, true } } };
		/* A marker not right after the sequence it names (no fence). */
		m = marker(KEEP, KEEP - 1, &len);
		cells[n++] = (struct cell){ "marker fence", -EILSEQ, 1, { { m, len, true } } };
		/* A marker as version 1, which has none (markers are 3 and 4). */
		m = marker(KEEP, KEEP, &len);
		m[8] = 1;
		reseal(m, len);
		cells[n++] = (struct cell){ "marker v1", -EBADMSG, 1, { { m, len, true } } };
		/* An epoch message as version 3, a marker's version. */
		m = copy(KEEP + 1, &len);
		m[8] = 3;
		reseal(m, len);
		cells[n++] = (struct cell){ "epoch as v3", -EBADMSG, 1, { { m, len } } };
		/* A host name that is not printable. */
		m = marker(KEEP, KEEP, &len);
		m[153] = 0x01;
		reseal(m, len);
		cells[n++] = (struct cell){ "marker host", -EBADMSG, 1, { { m, len, true } } };

		for (int i = 0; i < n; i++) {
			bool ok = run_cell(server.url, i, &cells[i]);

			printf("  %-16s %s\n", cells[i].name, ok ? "done" : "failed");
			failed += !ok;
			/* Each cell's first message is its own copy. */
			free(cells[i].msgs[0].data);
		}
	}
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsd_stop(&server);
	for (int e = 1; e <= GOOD; e++)
		free(good[e]);
	if (failed)
		DIE("%d cells failed", failed);
	printf("done\n");
	return 0;
}
