/* net-snapshot: followers past a small stream's retention, a new follower on a trimmed stream, and a publisher whose stream is behind the region's image catch up from the snapshot in the cluster, transferring exactly the pages changed since their epoch, and equal the writer; corrupted bucket values are refused with nothing applied. */
#include <nats/nats.h>

#include "nettest.h"

#define NPAGES	256
#define MAX_MSGS 40			/* the stream keeps this many messages */
#define EPOCHS	2000

static struct pt_region *w;
static unsigned char *mem;
static size_t ps;
static uint64_t seed = 29;
static pt_epoch_t epoch;
static const char *src;
static struct pt_net_opts o = { .sz = sizeof(o), .stream = "snap", .max_msgs = MAX_MSGS,
				.snapshot_interval_ms = 600000 };

/* The epoch that wrote each page, per epoch: from a delta replica on the
 * writer (the records' page lists, exactly what generations are made of). */
static uint8_t (*written)[NPAGES / 8];
static struct pt_replica *observer;

static int observe(const struct pt_delta *d, const void *base, void *arg)
{
	(void)base;
	(void)arg;
	for (uint32_t i = 0; i < d->page_count; i++)
		written[d->epoch][d->pages[i] / 8] |= (uint8_t)(1u << (d->pages[i] % 8));
	return 0;
}

/* Pages written in epochs (from, to]: what a catch-up from `from` to `to` must transfer. */
static uint64_t changed(pt_epoch_t from, pt_epoch_t to)
{
	uint64_t n = 0;

	for (uint64_t p = 0; p < NPAGES; p++)
		for (pt_epoch_t e = from + 1; e <= to; e++)
			if (written[e][p / 8] & (1u << (p % 8))) {
				n++;
				break;
			}
	return n;
}

/* Epochs of random writes, on pages [0, span). */
static void write_epochs(int n, uint64_t span, int per_epoch)
{
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < per_epoch; k++) {
			uint64_t page = nt_rnd(&seed) % span, *words = (uint64_t *)(mem + page * ps);

			words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
		}
		if (pt_region_sync(w) != ++epoch)
			DIE("sync %lld", (long long)epoch);
		if (epoch >= EPOCHS)
			DIE("the test makes more epochs than it planned");
	}
	while (pt_replica_epoch(observer) < epoch)
		if (pt_replica_step(observer, 1000, observe, NULL) <= 0)
			DIE("observer");
}

static void progress(const struct pt_net_progress *p, void *arg)
{
	uint64_t *calls = arg;

	if (p->pages_done > p->pages_total || p->to <= p->from)
		DIE("progress %llu of %llu, epochs %lld -> %lld", (unsigned long long)p->pages_done,
		    (unsigned long long)p->pages_total, (long long)p->from, (long long)p->to);
	(*calls)++;
}

static struct pt_follower *follower(const char *dir, uint64_t *progress_calls)
{
	struct pt_net_opts fo = o;
	struct pt_follower *f;

	fo.progress = progress;
	fo.progress_arg = progress_calls;
	if (pt_follower_open(&f, dir, &fo))
		DIE("follower %s: %s", dir, pt_net_last_error());
	return f;
}

/* Run the publisher (may be NULL) and the followers until they hold epoch
 * `until`; a follower's -EAGAIN (waiting for a snapshot) is not an error. */
static void pump(struct pt_publisher *p, struct pt_follower **f, int nf, pt_epoch_t until)
{
	struct pt_publisher_stats pst = { .sz = sizeof(pst) };
	uint64_t start = nt_ms();
	bool all;

	do {
		if (nt_ms() - start > 60000)
			DIE("stuck short of epoch %lld: %s", (long long)until, pt_net_last_error());
		if (p) {
			int err = pt_publisher_run(p, 10);

			if (err < 0 && err != -EAGAIN)
				DIE("publisher: %s", pt_net_last_error());
			pt_publisher_stats(p, &pst);
		}
		all = !p || pst.epoch >= until;
		for (int i = 0; i < nf; i++) {
			struct pt_follower_stats fs = { .sz = sizeof(fs) };
			int err = pt_follower_run(f[i], 10);

			if (err < 0 && err != -EAGAIN)
				DIE("follower %d: %s", i, pt_net_last_error());
			pt_follower_stats(f[i], &fs);
			all = all && fs.epoch >= until;
		}
	} while (!all);
}

static void same_as_writer(const char *dir, const char *what)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_replica *r;
	int err = pt_replica_open(&r, dir, &ro);

	if (err || pt_replica_epoch(r) != epoch || memcmp(pt_replica_base(r), mem, NPAGES * ps))
		DIE("%s: %s is not the writer's epoch %lld (%s, epoch %lld)", what, dir,
		    (long long)epoch, pt_strerror(err), err ? 0ll : (long long)pt_replica_epoch(r));
	pt_replica_close(r);
	if ((err = pt_dir_verify(dir, NULL, NULL)))
		DIE("%s: verify of %s: %d", what, dir, err);
}

/* The follower's last catch-up transferred exactly the pages changed since its epoch. */
static void check_transfer(struct pt_follower *f, pt_epoch_t from, const char *what,
			   uint64_t progress_calls)
{
	struct pt_follower_stats fs = { .sz = sizeof(fs) };
	uint64_t want;

	pt_follower_stats(f, &fs);
	if (fs.snapshot_catchups != 1 || fs.snapshot_from != from || fs.snapshot_to <= from)
		DIE("%s: %llu catch-ups, the last from %lld to %lld (expected one from %lld)", what,
		    (unsigned long long)fs.snapshot_catchups, (long long)fs.snapshot_from,
		    (long long)fs.snapshot_to, (long long)from);
	want = changed(from, fs.snapshot_to);
	if (fs.snapshot_pages != want || want >= NPAGES / 2 + (from ? 0 : NPAGES))
		DIE("%s: %llu pages transferred, %llu changed in epochs %lld..%lld", what,
		    (unsigned long long)fs.snapshot_pages, (unsigned long long)want,
		    (long long)from + 1, (long long)fs.snapshot_to);
	if (!progress_calls)
		DIE("%s: no progress reported", what);
	printf("  %-44s done (epoch %lld -> %lld: %llu of %d pages, %llu bytes)\n", what,
	       (long long)from, (long long)fs.snapshot_to, (unsigned long long)fs.snapshot_pages,
	       NPAGES, (unsigned long long)fs.snapshot_bytes);
}

/* Replace a value of the bucket with one byte flipped (offset from its end if < 0). */
static void corrupt(const char *url, const char *key, long offset, bool restore)
{
	static unsigned char saved[65536];
	static int saved_len;
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	kvStore *kv = NULL;
	kvEntry *e = NULL;
	unsigned char *v;
	int len;

	if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK ||
	    js_KeyValue(&kv, js, "snap-snapshot") != NATS_OK)
		DIE("raw connection to the bucket");
	if (restore) {
		if (kvStore_Put(NULL, kv, key, saved, saved_len) != NATS_OK)
			DIE("restoring %s", key);
	} else {
		if (kvStore_Get(&e, kv, key) != NATS_OK)
			DIE("no %s in the bucket", key);
		len = kvEntry_ValueLen(e);
		if (len > (int)sizeof(saved))
			DIE("%s: %d bytes", key, len);
		memcpy(saved, kvEntry_Value(e), (size_t)len);
		saved_len = len;
		v = malloc((size_t)len);
		memcpy(v, saved, (size_t)len);
		v[offset < 0 ? len + offset : offset] ^= 0x10;
		if (kvStore_Put(NULL, kv, key, v, len) != NATS_OK)
			DIE("corrupting %s", key);
		free(v);
		kvEntry_Destroy(e);
	}
	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

/* A follower on dir must refuse the corrupted bucket with err, nothing applied. */
static void refused(const char *dir, pt_epoch_t standby_epoch, int want, const char *what)
{
	uint64_t calls = 0, start = nt_ms();
	struct pt_follower *f = follower(dir, &calls);
	int err;

	do {
		err = pt_follower_run(f, 10);
	} while (err >= 0 && nt_ms() - start < 20000);
	if (err != want)
		DIE("%s: %d (%s), expected %d", what, err, pt_net_last_error(), want);
	pt_follower_close(f);
	if (standby_epoch) {
		if (pt_dir_epoch(dir) != standby_epoch || pt_dir_verify(dir, NULL, NULL))
			DIE("%s: the standby moved from epoch %lld", what, (long long)standby_epoch);
	} else {
		struct pt_dir_status ds = { .sz = sizeof(ds) };

		if (pt_dir_status(dir, &ds, NULL, NULL) == 0)
			DIE("%s: a region was made", what);
	}
	printf("  %-44s done (%s)\n", what, pt_net_last_error());
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				     .segment_bytes = 64 << 10, .retain_bytes = 1 };
	struct pt_replica_opts dro = { .sz = sizeof(dro), .flags = PT_REPLICA_DELTAS };
	struct pt_publisher_stats pst = { .sz = sizeof(pst) };
	struct pt_follower *a, *b, *fs[2];
	struct pt_publisher *p;
	struct natsd server;
	uint64_t calls_a = 0, calls_b = 0, calls = 0;
	pt_epoch_t a_epoch, stream_epoch, image_epoch;
	char key[64];
	int err;

	nt_init("net-snapshot: catch-up from the snapshot in the cluster");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	src = strdup(nt_path("src"));
	written = calloc(EPOCHS, sizeof(*written));
	if ((err = pt_region_create(&w, src, NPAGES * ps, &wo)))
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	if ((err = pt_replica_open(&observer, src, &dro)))
		DIE("observer: %s", pt_strerror(err));

	/* Every page written in the first 20 epochs; follower A follows them. */
	p = NULL;
	if (pt_publisher_open(&p, src, &o))
		DIE("publisher: %s", pt_net_last_error());
	write_epochs(20, NPAGES, 16);
	a = follower(nt_path("a"), &calls_a);
	pump(p, &a, 1, epoch);
	pt_follower_close(a);
	a_epoch = epoch;

	/* 300 epochs on a quarter of the pages: the stream keeps the last 40
	 * messages, the publisher updates the snapshot every 20. */
	for (int i = 0; i < 30; i++) {
		write_epochs(10, NPAGES / 4, 2);
		pump(p, NULL, 0, epoch);
	}
	pt_publisher_stats(p, &pst);
	if (pst.snapshot_updates < 10 || pst.snapshot_epoch + MAX_MSGS < epoch)
		DIE("%llu snapshot updates, the last at epoch %lld of %lld",
		    (unsigned long long)pst.snapshot_updates, (long long)pst.snapshot_epoch,
		    (long long)epoch);

	/* A comes back past the retention; B is new.  Both catch up from the
	 * snapshot, then follow the stream. */
	a = follower(nt_path("a"), &calls_a);
	b = follower(nt_path("b"), &calls_b);
	fs[0] = a;
	fs[1] = b;
	pump(p, fs, 2, epoch);
	write_epochs(30, NPAGES / 4, 2);
	pump(p, fs, 2, epoch);
	check_transfer(a, a_epoch, "past the retention", calls_a);
	check_transfer(b, 0, "new follower, trimmed stream", calls_b);
	same_as_writer(nt_path("a"), "past the retention");
	same_as_writer(nt_path("b"), "new follower");
	pt_follower_close(b);
	a_epoch = epoch;
	pt_follower_close(a);

	/* The publisher stays down while checkpoints drop the log past the
	 * stream's end: restarted, it writes the snapshot at the image's
	 * epoch and the stream goes on from there. */
	pt_publisher_close(p);
	stream_epoch = epoch;
	write_epochs(60, NPAGES / 4, 2);
	image_epoch = pt_region_checkpoint(w);
	if (image_epoch != epoch || image_epoch <= stream_epoch + 1)
		DIE("checkpoint at %lld, the stream at %lld", (long long)image_epoch,
		    (long long)stream_epoch);
	if (pt_publisher_open(&p, src, &o))
		DIE("publisher: %s", pt_net_last_error());
	write_epochs(5, NPAGES / 4, 2);
	a = follower(nt_path("a"), &calls);
	pump(p, &a, 1, epoch);
	if ((err = pt_region_wait(w, epoch, PT_LEVEL_REPLICATED, 5000)))
		DIE("PT_LEVEL_REPLICATED %lld: %s", (long long)epoch, pt_strerror(err));
	if (pt_region_wait(w, image_epoch, PT_LEVEL_REPLICATED, 0))
		DIE("the image's epoch, in the snapshot, is not reported replicated");
	check_transfer(a, a_epoch, "publisher behind the image", calls);
	same_as_writer(nt_path("a"), "publisher behind the image");
	a_epoch = epoch;
	pt_follower_close(a);

	/* Corrupted values: the publisher is stopped (it would not put them
	 * right: they are not what changed), the stream trimmed past A. */
	write_epochs(60, NPAGES / 4, 2);
	pump(p, NULL, 0, epoch);
	pt_publisher_stats(p, &pst);
	pt_publisher_close(p);
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		if (written[pst.snapshot_epoch][pg / 8] & (1u << (pg % 8))) {
			snprintf(key, sizeof(key), "page.%llu", (unsigned long long)pg);
			break;
		}
	corrupt(server.url, key, -1, false);
	refused(nt_path("a"), a_epoch, -EBADMSG, "a page's bytes, standby at an epoch");
	refused(nt_path("c"), 0, -EBADMSG, "a page's bytes, new standby");
	corrupt(server.url, key, 0, true);
	corrupt(server.url, key, 32, false);	/* its generation */
	refused(nt_path("c"), 0, -EBADMSG, "a page's generation");
	corrupt(server.url, key, 0, true);
	corrupt(server.url, "manifest", 24, false);
	refused(nt_path("c"), 0, -EBADMSG, "the manifest");
	corrupt(server.url, "manifest", 0, true);
	corrupt(server.url, "table.0", 40, false);
	refused(nt_path("c"), 0, -EBADMSG, "a page table");
	corrupt(server.url, "table.0", 0, true);

	/* Repaired, the same standby catches up. */
	a = follower(nt_path("a"), &calls);
	pump(NULL, &a, 1, pst.snapshot_epoch);
	pt_follower_close(a);
	printf("  %-44s done (epoch %lld)\n", "repaired bucket", (long long)pst.snapshot_epoch);

	pt_replica_close(observer);
	pt_region_close(w);
	natsd_stop(&server);
	free(written);
	printf("done\n");
	return 0;
}
