/* net-snapshot: followers past a small stream's retention, a new follower on a trimmed stream, and a publisher whose stream is behind the region's image catch up from the snapshot in the cluster, transferring exactly the pages changed since their epoch, and equal the writer; corrupted bucket values are refused with nothing applied. */
#include <nats/nats.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "nettest.h"

#define NPAGES	256
#define MAX_MSGS 40			/* the stream keeps this many messages */
#define EPOCHS	2000
#define KEY_LEN	32
#define MAC	32			/* bytes of HMAC-SHA256 */
#define VALUE_MAX (1 << 18)		/* the largest value read or made (RESIZE: 128 KiB) */
#define HUGE_NPAGES (1ull << 27)	/* RESIZE's region: 512 GiB, 3 GiB of tables */

static struct pt_region *w;
static unsigned char *mem;
static size_t ps;
static uint64_t seed = 29;
static pt_epoch_t epoch;
static const char *src;
static struct pt_net_opts o = { .sz = sizeof(o), .max_msgs = MAX_MSGS,
				.snapshot_interval_ms = 600000 };
static unsigned char hmac_key[KEY_LEN], other_key[KEY_LEN];

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
	printf("    %-44s done (epoch %lld -> %lld: %llu of %d pages, %llu bytes)\n", what,
	       (long long)from, (long long)fs.snapshot_to, (unsigned long long)fs.snapshot_pages,
	       NPAGES, (unsigned long long)fs.snapshot_bytes);
}

/* ---- the bucket, read and written as anyone allowed to could ------------- */

static kvStore *kv;

static int value_get(const char *key, unsigned char *buf, int cap)
{
	kvEntry *e = NULL;
	int len;

	if (kvStore_Get(&e, kv, key) != NATS_OK)
		DIE("no %s in the bucket", key);
	len = kvEntry_ValueLen(e);
	if (len > cap)
		DIE("%s: %d bytes", key, len);
	memcpy(buf, kvEntry_Value(e), (size_t)len);
	kvEntry_Destroy(e);
	return len;
}

static void value_put(const char *key, const unsigned char *buf, int len)
{
	if (kvStore_Put(NULL, kv, key, buf, len) != NATS_OK)
		DIE("putting %s", key);
}

/* An HMAC-SHA256 of len bytes at v, with k, written after them. */
static void mac_after(unsigned char *v, int len, const unsigned char *k)
{
	unsigned int n = 0;

	if (!HMAC(EVP_sha256(), k, KEY_LEN, v, (size_t)len, v + len, &n) || n != MAC)
		DIE("HMAC");
}

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }	/* x86: little-endian */
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

/* A follower on dir must refuse the bucket with err (and the words says,
 * unless NULL), nothing applied. */
static void refused(const char *dir, pt_epoch_t standby_epoch, int want, const char *what,
		    const char *says)
{
	uint64_t calls = 0, start = nt_ms();
	struct pt_follower *f = follower(dir, &calls);
	int err;

	do {
		err = pt_follower_run(f, 10);
	} while (err >= 0 && nt_ms() - start < 20000);
	if (err != want || (says && !strstr(pt_net_last_error(), says)))
		DIE("%s: %d (%s), expected %d%s%s", what, err, pt_net_last_error(), want,
		    says ? " saying " : "", says ? says : "");
	pt_follower_close(f);
	if (standby_epoch) {
		if (pt_dir_epoch(dir) != standby_epoch || pt_dir_verify(dir, NULL, NULL))
			DIE("%s: the standby moved from epoch %lld", what, (long long)standby_epoch);
	} else {
		struct pt_dir_status ds = { .sz = sizeof(ds) };

		if (pt_dir_status(dir, &ds, NULL, NULL) == 0)
			DIE("%s: a region was made", what);
	}
	printf("    %-44s done, %s (%s)\n", what, standby_epoch ? "standby at an epoch" :
	       "new standby", pt_net_last_error());
}

/* A value of the bucket changed as a cell says. */
enum change {
	FLIP,		/* a byte flipped at offset (from the end if < 0) */
	STRIP_MAC,	/* version 1, as without a key, its checksum right (a manifest) */
	OTHER_KEY_MAC,	/* the MAC of another key */
	ADD_MAC,	/* version 2 and a MAC (another key's), its checksum right (a manifest) */
	MOVE,		/* the value of the key `from` */
	REPLAY,		/* the value the key held in an earlier snapshot */
	RESIZE,		/* a manifest of a region of HUGE_NPAGES, its checksum right */
};

struct cell {
	const char *what;
	const char *key;		/* "page" for the page the test picks */
	enum change change;
	long offset;
	int want;
	bool at_epoch;			/* also refused by A, at its epoch */
	const char *says;		/* in the error (NULL: not checked) */
};

static char page_key[32], move_key[32], replay_key[32];
static unsigned char replay_value[VALUE_MAX];
static int replay_len;

/* The cell's change put in the bucket, refused by a new follower (and A),
 * then the value put back. */
static void bad_value(const struct cell *c, const char *a, pt_epoch_t a_epoch)
{
	static unsigned char saved[VALUE_MAX], v[VALUE_MAX + MAC];
	const char *key = !strcmp(c->key, "page") ? page_key : c->key;
	int len, n;

	if (c->change == REPLAY)
		key = replay_key;
	len = value_get(key, saved, VALUE_MAX);
	n = len;
	memcpy(v, saved, (size_t)len);
	switch (c->change) {
	case FLIP:
		v[c->offset < 0 ? len + c->offset : c->offset] ^= 0x10;
		break;
	case STRIP_MAC:
		n = len - MAC;
		put32(v + 8, 1);
		put64(v + n - 8, XXH3_64bits(v, (size_t)n - 8));
		break;
	case OTHER_KEY_MAC:
		mac_after(v, len - MAC, other_key);
		break;
	case ADD_MAC:
		put32(v + 8, 2);
		put64(v + len - 8, XXH3_64bits(v, (size_t)len - 8));
		mac_after(v, len, other_key);
		n = len + MAC;
		break;
	case MOVE:
		n = value_get(move_key, v, VALUE_MAX);
		break;
	case RESIZE:
		/* As many tables as such a region has, their checksums 0:
		 * before any table is read, the region's size must be the
		 * stream's, so nothing is allocated for it. */
		n = 80 + (int)(HUGE_NPAGES / 8192) * 8 + 8;
		memset(v + 80, 0, (size_t)n - 80);
		put64(v + 40, HUGE_NPAGES);
		put32(v + 56, (uint32_t)(HUGE_NPAGES / 8192));
		put64(v + n - 8, XXH3_64bits(v, (size_t)n - 8));
		break;
	case REPLAY:
		if (replay_len == len && !memcmp(replay_value, saved, (size_t)len))
			DIE("%s: the page did not change since the earlier snapshot", c->what);
		memcpy(v, replay_value, (size_t)replay_len);
		n = replay_len;
		break;
	}
	value_put(key, v, n);
	if (c->at_epoch)
		refused(a, a_epoch, c->want, c->what, c->says);
	refused(nt_path("c"), 0, c->want, c->what, c->says);
	value_put(key, saved, len);
}

/* ---- a bucket without direct gets ----------------------------------------- */

static bool no_direct_said;

static void log_line(enum pt_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	if (strstr(msg, "answers no direct get"))
		no_direct_said = true;
}

/* The bucket's stream allows direct gets, or not (as another client may
 * have made it). */
static void allow_direct(jsCtx *js, const char *bucket, bool allow)
{
	jsStreamInfo *si = NULL;
	char name[96];

	snprintf(name, sizeof(name), "KV_%s", bucket);
	if (js_GetStreamInfo(&si, js, name, NULL, NULL) != NATS_OK)
		DIE("stream %s", name);
	si->Config->AllowDirect = allow;
	if (js_UpdateStream(NULL, js, si->Config, NULL, NULL) != NATS_OK)
		DIE("stream %s: AllowDirect %d", name, allow);
	jsStreamInfo_Destroy(si);
}

/* ---- one variant ---------------------------------------------------------- */

struct variant {
	const char *name;
	const char *stream;
	const unsigned char *key;	/* the publisher's and the followers' (NULL: none) */
	const struct cell *cells;	/* bad values, refused */
};

/* The writer, its publisher and followers on the variant's stream, from a
 * new region each time. */
static void scenario(const char *url, const struct variant *v)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				     .segment_bytes = 64 << 10, .retain_bytes = 1 };
	struct pt_replica_opts dro = { .sz = sizeof(dro), .flags = PT_REPLICA_DELTAS };
	struct pt_publisher_stats pst = { .sz = sizeof(pst) };
	struct pt_follower *a, *b, *fs[2];
	struct pt_publisher *p;
	uint64_t calls_a = 0, calls_b = 0, calls = 0;
	pt_epoch_t a_epoch, stream_epoch, image_epoch;
	char bucket[64];
	const char *dir_a, *dir_b;
	int err;
	natsConnection *nc;
	jsCtx *js;

	printf("  %s:\n", v->name);
	o.urls = url;
	o.stream = v->stream;
	o.hmac_key = v->key;
	o.hmac_key_len = v->key ? KEY_LEN : 0;
	epoch = 0;
	memset(written, 0, EPOCHS * sizeof(*written));
	src = nt_path("%s-src", v->stream);
	src = strdup(src);
	dir_a = strdup(nt_path("%s-a", v->stream));
	dir_b = strdup(nt_path("%s-b", v->stream));
	snprintf(bucket, sizeof(bucket), "%s-snapshot", v->stream);
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
	a = follower(dir_a, &calls_a);
	pump(p, &a, 1, epoch);
	pt_follower_close(a);
	a_epoch = epoch;
	if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		DIE("raw connection");

	/* 300 epochs on a quarter of the pages: the stream keeps the last 40
	 * messages, the publisher updates the snapshot every 20. */
	for (int i = 0; i < 30; i++) {
		write_epochs(10, NPAGES / 4, 2);
		pump(p, NULL, 0, epoch);
		/* A page value of an early snapshot, for a replay later. */
		if (i == 2) {
			uint64_t pg = 0;

			pt_publisher_stats(p, &pst);
			if (js_KeyValue(&kv, js, bucket) != NATS_OK)
				DIE("bucket %s", bucket);
			while (pg < NPAGES / 4 && !(written[pst.snapshot_epoch][pg / 8] &
						      (1u << (pg % 8))))
				pg++;
			snprintf(replay_key, sizeof(replay_key), "page.%llu", (unsigned long long)pg);
			replay_len = value_get(replay_key, replay_value, VALUE_MAX);
		}
	}
	pt_publisher_stats(p, &pst);
	if (pst.snapshot_updates < 10 || pst.snapshot_epoch + MAX_MSGS < epoch)
		DIE("%llu snapshot updates, the last at epoch %lld of %lld",
		    (unsigned long long)pst.snapshot_updates, (long long)pst.snapshot_epoch,
		    (long long)epoch);

	/* A comes back past the retention; B is new.  Both catch up from the
	 * snapshot, then follow the stream. */
	a = follower(dir_a, &calls_a);
	b = follower(dir_b, &calls_b);
	fs[0] = a;
	fs[1] = b;
	pump(p, fs, 2, epoch);
	write_epochs(30, NPAGES / 4, 2);
	pump(p, fs, 2, epoch);
	check_transfer(a, a_epoch, "past the retention", calls_a);
	check_transfer(b, 0, "new follower, trimmed stream", calls_b);
	same_as_writer(dir_a, "past the retention");
	same_as_writer(dir_b, "new follower");
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
	a = follower(dir_a, &calls);
	pump(p, &a, 1, epoch);
	if ((err = pt_region_wait(w, epoch, PT_LEVEL_REPLICATED, 5000)))
		DIE("PT_LEVEL_REPLICATED %lld: %s", (long long)epoch, pt_strerror(err));
	if (pt_region_wait(w, image_epoch, PT_LEVEL_REPLICATED, 0))
		DIE("the image's epoch, in the snapshot, is not reported replicated");
	check_transfer(a, a_epoch, "publisher behind the image", calls);
	same_as_writer(dir_a, "publisher behind the image");
	a_epoch = epoch;
	pt_follower_close(a);

	/* Bad values: the publisher is stopped (it would not put them right:
	 * they are not what changed), the stream trimmed past A.  Each is
	 * refused by A (at its epoch) and by a new follower, then put back. */
	write_epochs(60, NPAGES / 4, 2);
	pump(p, NULL, 0, epoch);
	pt_publisher_stats(p, &pst);
	pt_publisher_close(p);
	for (uint64_t pg = 0, found = 0; pg < NPAGES && found < 2; pg++)
		if (written[pst.snapshot_epoch][pg / 8] & (1u << (pg % 8)))
			snprintf(found++ ? move_key : page_key, sizeof(page_key), "page.%llu",
				 (unsigned long long)pg);
	for (const struct cell *c = v->cells; c->what; c++)
		bad_value(c, dir_a, a_epoch);

	/* Put right, the same standby catches up. */
	a = follower(dir_a, &calls);
	pump(NULL, &a, 1, pst.snapshot_epoch);
	pt_follower_close(a);
	printf("    %-44s done (epoch %lld)\n", "the bucket put right", (long long)pst.snapshot_epoch);

	/* Without direct gets the pages come one kvStore_Get at a time: the
	 * same pages, the same standby. */
	allow_direct(js, bucket, false);
	no_direct_said = false;
	pt_net_set_log(log_line, PT_LOG_INFO, NULL);
	calls = 0;
	b = follower(nt_path("%s-nodirect", v->stream), &calls);
	pump(NULL, &b, 1, epoch);
	pt_net_set_log(NULL, PT_LOG_ERROR, NULL);
	if (!no_direct_said)
		DIE("no direct gets: the follower did not say it got the pages one at a time");
	check_transfer(b, 0, "no direct gets: one get a page", calls);
	same_as_writer(nt_path("%s-nodirect", v->stream), "no direct gets");
	pt_follower_close(b);
	allow_direct(js, bucket, true);

	if (!v->key) {
		/* A key added to the keyless stream: its publisher puts every
		 * value again with a MAC (none of the bucket's verifies), and
		 * once the stream holds only MAC'd messages a new follower with
		 * the key catches up from the bucket: every page ever written. */
		o.hmac_key = hmac_key;
		o.hmac_key_len = KEY_LEN;
		if (pt_publisher_open(&p, src, &o))
			DIE("publisher with a key added: %s", pt_net_last_error());
		write_epochs(MAX_MSGS + 5, NPAGES / 4, 2);
		pump(p, NULL, 0, epoch);
		b = follower(nt_path("%s-keyed", v->stream), &calls_b);
		calls_b = 0;
		pump(p, &b, 1, epoch);
		check_transfer(b, 0, "a key added: new follower with it", calls_b);
		same_as_writer(nt_path("%s-keyed", v->stream), "a key added");
		pt_follower_close(b);
		pt_publisher_close(p);
	}

	kvStore_Destroy(kv);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	pt_replica_close(observer);
	pt_region_close(w);
	free((void *)src);
	free((void *)dir_a);
	free((void *)dir_b);
}

/* Bad values refused whatever the key: by their checksums. */
#define CHECKSUM_CELLS \
	{ "a page's bytes", "page", FLIP, 80, -EBADMSG, true }, \
	{ "a page's generation", "page", FLIP, 32, -EBADMSG, false }, \
	{ "the manifest", "manifest", FLIP, 24, -EBADMSG, false }, \
	{ "a page table", "table.0", FLIP, 40, -EBADMSG, false }

static const struct cell keyless_cells[] = {
	CHECKSUM_CELLS,
	{ "the manifest with a MAC (version 2)", "manifest", ADD_MAC, 0, -ENOKEY, true },
	{ "a manifest of a 512 GiB region", "manifest", RESIZE, 0, -EBADMSG, false,
	  "is of a region of 256" },
	{ 0 },
};

static const struct cell keyed_cells[] = {
	CHECKSUM_CELLS,
	{ "a page's MAC flipped", "page", FLIP, -1, -EKEYREJECTED, true },
	{ "the manifest without a MAC (version 1)", "manifest", STRIP_MAC, 0, -EKEYREJECTED, true },
	{ "the manifest with another key's MAC", "manifest", OTHER_KEY_MAC, 0, -EKEYREJECTED, false },
	/* Not the bytes the manifest names by checksum. */
	{ "a table with another key's MAC", "table.0", OTHER_KEY_MAC, 0, -EBADMSG, false },
	/* Each MAC'd by the key: the values name their page and generation. */
	{ "a page's value under another page's key", "page", MOVE, 0, -EBADMSG, false },
	{ "a page's value of an earlier snapshot", "page", REPLAY, 0, -EBADMSG, true },
	{ 0 },
};

/*
 * The server refuses the snapshot's puts (its bucket made beforehand with
 * room for a few pages): the publisher's update fails with -EAGAIN naming
 * the refusal, no manifest is put (a follower at the gap finds no
 * snapshot), and once the bucket has room the next update completes and a
 * new follower catches up.
 */
static void refused_puts(const char *url)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_net_opts po = { .sz = sizeof(po), .urls = url, .stream = "full", .max_msgs = 4,
				  .snapshot_interval_ms = 1 };
	struct pt_publisher_stats pst = { .sz = sizeof(pst) };
	const char *full_src = strdup(nt_path("full-src")), *full_dst = strdup(nt_path("full-dst"));
	struct pt_follower_stats fst = { .sz = sizeof(fst) };
	struct pt_publisher *p;
	struct pt_follower *f;
	struct pt_region *fw;
	jsStreamInfo *si = NULL;
	natsConnection *nc;
	kvEntry *e = NULL;
	kvConfig kc;
	jsCtx *js;
	uint64_t start;
	int err = 0;

	if (natsConnection_ConnectTo(&nc, url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		DIE("raw connection");
	kvConfig_Init(&kc);
	kc.Bucket = "full-snapshot";
	kc.History = 1;
	kc.StorageType = js_FileStorage;
	kc.MaxBytes = 6 * (int64_t)ps;
	if (js_CreateKeyValue(&kv, js, &kc) != NATS_OK)
		DIE("bucket full-snapshot");
	if ((err = pt_region_create(&fw, full_src, 64 * ps, &wo)))
		DIE("writer: %s", pt_strerror(err));
	/* Pages of noise: each value is a raw page, the bucket holds 6. */
	for (int e1 = 1; e1 <= 10; e1++) {
		for (size_t pg = (size_t)e1 % 3; pg < 64; pg += 3)
			for (size_t i = 0; i < ps / 8; i++)
				((uint64_t *)((unsigned char *)pt_region_base(fw) + pg * ps))[i] =
					nt_rnd(&seed);
		if (pt_region_sync(fw) != e1)
			DIE("sync");
	}
	if (pt_publisher_open(&p, full_src, &po))
		DIE("publisher: %s", pt_net_last_error());
	for (start = nt_ms(); nt_ms() - start < 20000;) {
		err = pt_publisher_run(p, 50);
		if (err < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
		if (err == -EAGAIN && strstr(pt_net_last_error(), "puts failed"))
			break;
	}
	pt_publisher_stats(p, &pst);
	if (err != -EAGAIN || pst.snapshot_updates)
		DIE("puts refused by the server: %d, %llu updates: %s", err,
		    (unsigned long long)pst.snapshot_updates, pt_net_last_error());
	printf("    %-44s done (%s)\n", "puts refused: the update fails", pt_net_last_error());
	if (kvStore_Get(&e, kv, "manifest") != NATS_NOT_FOUND)
		DIE("a manifest was put after refused puts");
	if (pt_follower_open(&f, full_dst, &po))
		DIE("follower: %s", pt_net_last_error());
	err = pt_follower_run(f, 100);
	if (err != -EAGAIN || !strstr(pt_net_last_error(), "no snapshot"))
		DIE("a follower at the gap, with no manifest: %d %s", err, pt_net_last_error());
	printf("    %-44s done (%s)\n", "no manifest: no catch-up", pt_net_last_error());

	/* Room in the bucket: the next update puts it all. */
	if (js_GetStreamInfo(&si, js, "KV_full-snapshot", NULL, NULL) != NATS_OK)
		DIE("the bucket's stream");
	si->Config->MaxBytes = -1;
	if (js_UpdateStream(NULL, js, si->Config, NULL, NULL) != NATS_OK)
		DIE("the bucket's limit");
	jsStreamInfo_Destroy(si);
	for (start = nt_ms(); !pst.snapshot_updates && nt_ms() - start < 20000;) {
		err = pt_publisher_run(p, 50);
		if (err < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
		pt_publisher_stats(p, &pst);
	}
	for (start = nt_ms(); fst.epoch < 10 && nt_ms() - start < 20000;) {
		err = pt_follower_run(f, 50);
		if (err < 0 && err != -EAGAIN)
			DIE("follower: %s", pt_net_last_error());
		pt_follower_stats(f, &fst);
	}
	if (fst.epoch != 10 || fst.snapshot_catchups != 1)
		DIE("after the bucket had room: the follower at %lld, %llu catch-ups: %s",
		    (long long)fst.epoch, (unsigned long long)fst.snapshot_catchups,
		    pt_net_last_error());
	printf("    %-44s done (epoch %lld)\n", "room again: update, catch-up", (long long)fst.epoch);
	pt_follower_close(f);
	pt_publisher_close(p);
	pt_region_close(fw);
	free((void *)full_src);
	free((void *)full_dst);
	kvStore_Destroy(kv);
	kv = NULL;
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
}

int main(void)
{
	const struct variant variants[] = {
		{ "no key (snapshot values version 1)", "snap", NULL, keyless_cells },
		{ "an HMAC key (version 2)", "ksnap", hmac_key, keyed_cells },
	};
	struct natsd server;

	nt_init("net-snapshot: catch-up from the snapshot in the cluster");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	for (int i = 0; i < KEY_LEN; i++) {
		hmac_key[i] = (unsigned char)(i * 13 + 5);
		other_key[i] = hmac_key[i] ^ (i == 3);
	}
	natsd_start(&server, "nats", NULL);
	written = calloc(EPOCHS, sizeof(*written));
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
		scenario(server.url, &variants[i]);
	printf("  a bucket the server refuses puts into:\n");
	refused_puts(server.url);
	natsd_stop(&server);
	free(written);
	printf("done\n");
	return 0;
}
