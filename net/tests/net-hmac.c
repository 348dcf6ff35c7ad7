/* net-hmac: an HMAC-SHA256 over every message with a shared key: a follower with the key applies the publisher's epochs and refuses (naming the sequence, nothing applied) messages without a MAC, with a flipped or truncated one, or made with another key even when every checksum and the chain are right; a follower without the key refuses a stream with MACs; a follower with the key catches up from the snapshot (whose values carry MACs too) where the stream no longer starts at epoch 1; a publisher with another key or none will not go on after a MAC'd message; a key added to a keyless stream takes effect from there; bad keys and key files refused; publish and follow --hmac-key-file end to end. */
#include <nats/nats.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "nettest.h"
#include "ntvisible.h"

#define NPAGES	16
#define GOOD	6		/* epochs published */
#define KEEP	3		/* epochs before the injected message */

static size_t ps;
static uint64_t hashes[GOOD + 1];
static unsigned char *good[GOOD + 1];	/* the stream's message of each epoch */
static int good_len[GOOD + 1];
static unsigned char key[32], other_key[32];
static jsCtx *js;

static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }	/* x86: little-endian */

/* Checksums after a change (the MAC, if any, is not part of them). */
static void reseal(unsigned char *m, int len, int mac)
{
	put64(m + 96, XXH3_64bits(m + 128, (size_t)(len - 128 - mac)));
	put64(m + 120, XXH3_64bits(m, 120));
}

/* The MAC of a version 2 message of len bytes (its last 32), with k. */
static void remac(unsigned char *m, int len, const unsigned char *k)
{
	unsigned int n = 0;

	if (!HMAC(EVP_sha256(), k, 32, m, (size_t)len - 32, m + len - 32, &n) || n != 32)
		DIE("HMAC");
}

static unsigned char *copy(int e, int *len)
{
	unsigned char *m = malloc((size_t)good_len[e]);

	memcpy(m, good[e], (size_t)good_len[e]);
	*len = good_len[e];
	return m;
}

static void publish_raw(const char *subject, const void *data, int len)
{
	jsErrCode jerr = 0;

	if (js_Publish(NULL, js, subject, data, len, NULL, &jerr) != NATS_OK)
		DIE("raw publish: %d", (int)jerr);
}

static void add_stream(const char *stream, char *subject, size_t len)
{
	const char *subjects[1] = { subject };
	jsStreamConfig cfg;
	jsErrCode jerr = 0;

	snprintf(subject, len, "pagetrack.%s.epochs", stream);
	jsStreamConfig_Init(&cfg);
	cfg.Name = stream;
	cfg.Subjects = subjects;
	cfg.SubjectsLen = 1;
	if (js_AddStream(NULL, js, &cfg, NULL, &jerr) != NATS_OK)
		DIE("stream %s: %d", stream, (int)jerr);
}

/*
 * Follow stream into dir with key k (NULL: none) until it stops or 10 s
 * passed.  The follower's last result; *epoch the standby's then.
 */
static int follow(const char *url, const char *stream, const char *dir, const unsigned char *k,
		  int64_t *epoch)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = url, .stream = stream, .hmac_key = k,
				 .hmac_key_len = k ? 32 : 0 };
	struct pt_follower_stats st = { .sz = sizeof(st) };
	struct pt_follower *f;
	uint64_t start = nt_ms();
	int err = 0;

	if (pt_follower_open(&f, dir, &o))
		DIE("follower on %s: %s", stream, pt_net_last_error());
	while (nt_ms() - start < 10000) {
		err = pt_follower_run(f, 100);
		if (err < 0 && err != -EAGAIN)
			break;
		pt_follower_stats(f, &st);
		if (st.epoch == GOOD && err >= 0)
			break;
	}
	pt_follower_stats(f, &st);
	*epoch = st.epoch;
	if (err >= 0)
		err = 0;
	else if (pt_follower_run(f, 0) != err)
		DIE("the follower went on after %d", err);
	pt_follower_close(f);
	return err;
}

/* dir holds the writer's epoch e, whole, and verifies (or is absent, e = 0). */
static bool standby_is(const char *dir, int e)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_replica *r;
	bool ok;

	if (!e)
		return pt_dir_epoch(dir) <= 0;
	if (pt_dir_epoch(dir) != e || pt_replica_open(&r, dir, &ro))
		return false;
	ok = pt_replica_epoch(r) == e && nt_hash(pt_replica_base(r), NPAGES * ps) == hashes[e];
	pt_replica_close(r);
	return ok && !pt_dir_verify(dir, NULL, NULL);
}

struct cell {
	const char *name;
	const unsigned char *key;	/* the follower's */
	int expect;			/* its error, 0: it applies every epoch */
	int at;				/* the sequence named; the standby stays at at - 1 */
	unsigned char *msg;		/* injected after KEEP epochs; NULL: none */
	int len;
};

static bool run_cell(const char *url, int i, const struct cell *c)
{
	char stream[32], subject[64], want[64];
	const char *dir = nt_path("f%d", i);
	int64_t epoch;
	int err;

	snprintf(stream, sizeof(stream), "hmac%d", i);
	add_stream(stream, subject, sizeof(subject));
	for (int e = 1; e <= GOOD; e++) {
		if (c->msg && e == KEEP + 1)
			publish_raw(subject, c->msg, c->len);
		publish_raw(subject, good[e], good_len[e]);
	}
	err = follow(url, stream, dir, c->key, &epoch);
	printf("  %-26s %s\n", c->name, err ? pt_net_last_error() : "applied every epoch");
	snprintf(want, sizeof(want), "sequence %d:", c->at);
	if (err != c->expect) {
		printf("    error %d (%s), expected %d\n", err, pt_strerror(err), c->expect);
		return false;
	}
	if (err && !strstr(pt_net_last_error(), want)) {
		printf("    the message does not name %s\n", want);
		return false;
	}
	if (!standby_is(dir, err ? c->at - 1 : GOOD)) {
		printf("    the standby is not the writer's epoch %d (it is at %lld)\n",
		       err ? c->at - 1 : GOOD, (long long)epoch);
		return false;
	}
	return true;
}

static void make_epochs(struct pt_region *w, int from, int to)
{
	unsigned char *mem = pt_region_base(w);

	for (int e = from; e <= to; e++) {
		((uint64_t *)(mem + (size_t)(e % NPAGES) * ps))[e] = (uint64_t)e * 77;
		((uint64_t *)(mem + (size_t)((e * 5) % NPAGES) * ps))[3] = (uint64_t)e;
		if (pt_region_sync(w) != e)
			DIE("sync");
		if (e <= GOOD)
			hashes[e] = nt_hash(mem, NPAGES * ps);
	}
}

static int publish_all(struct pt_publisher *p, int64_t until)
{
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	uint64_t start = nt_ms();

	while (st.epoch < until && nt_ms() - start < 10000) {
		int err = pt_publisher_run(p, 50);

		if (err < 0 && err != -EAGAIN)
			return err;
		pt_publisher_stats(p, &st);
	}
	return st.epoch == until ? 0 : -ETIMEDOUT;
}

/* pt_publisher_open on dir and stream with key k: its result. */
static int open_publisher(const char *url, const char *dir, const char *stream,
			  const unsigned char *k, struct pt_publisher **out)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = url, .stream = stream, .hmac_key = k,
				 .hmac_key_len = k ? 32 : 0 };
	struct pt_publisher *p = NULL;
	int err = pt_publisher_open(&p, dir, &o);

	if (out)
		*out = p;
	else
		pt_publisher_close(p);
	return err;
}

static int key_files(const char *url)
{
	char *argv[] = { (char *)nt_tool(), "follow", (char *)url, "--stream", "x",
			 (char *)nt_path("k-dst"), "--hmac-key-file", NULL, NULL };
	static const struct {
		const char *name;
		int mode, len;
		const char *say;
	} cases[] = {
		{ "readable by others", 0644, 32, "readable or writable by others" },
		{ "too short", 0600, 8, "a key has 16 to" },
		{ "too long", 0600, 2000, "a key has 16 to" },
		{ "missing", -1, 0, "No such file" },
	};
	int failed = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[300], *out;
		int st;

		snprintf(path, sizeof(path), "%s", nt_path("key%zu", i));
		if (cases[i].mode >= 0) {
			unsigned char buf[2000] = { 1 };
			int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

			if (fd < 0 || write(fd, buf, (size_t)cases[i].len) != cases[i].len ||
			    fchmod(fd, (mode_t)cases[i].mode) || close(fd))
				DIE("%s", path);
		}
		argv[7] = path;
		st = nt_run(argv, nt_path("keyfile.log"));
		out = nt_read_file(nt_path("keyfile.log"));
		if (st != 1 || !out || !strstr(out, cases[i].say)) {
			printf("  --hmac-key-file %-18s exit %d, not '%s':\n%s", cases[i].name, st,
			       cases[i].say, out ? out : "");
			failed++;
		} else {
			printf("  --hmac-key-file %-18s refused: done\n", cases[i].name);
		}
		free(out);
	}
	return failed;
}

/* publish and follow --hmac-key-file on a region of their own. */
static int commands(const char *url)
{
	char *src = strdup(nt_path("t-src")), *dst = strdup(nt_path("t-dst"));
	char *key_path = strdup(nt_path("tool.key"));
	char *pub_argv[] = { (char *)nt_tool(), "publish", src, "--nats", (char *)url, "--stream",
			     "tooled", "--hmac-key-file", key_path, NULL };
	char *fol_argv[] = { (char *)nt_tool(), "follow", (char *)url, "--stream", "tooled", dst,
			     "--hmac-key-file", key_path, NULL };
	struct pt_region_opts wo = { .sz = sizeof(wo) };
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_region *w;
	struct pt_replica *r = NULL;
	uint64_t start;
	pid_t pub, fol;
	int fd, err, ok;

	fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, key, sizeof(key)) != sizeof(key) || close(fd))
		DIE("%s", key_path);
	if ((err = pt_region_create(&w, src, NPAGES * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	make_epochs(w, 1, 20);
	pub = nt_spawn(pub_argv, nt_path("t-publish.log"));
	for (start = nt_ms(); pt_region_wait(w, 20, PT_LEVEL_REPLICATED, 100) &&
	     nt_ms() - start < 30000;)
		;
	fol = nt_spawn(fol_argv, nt_path("t-follow.log"));
	for (start = nt_ms(); nt_ms() - start < 30000; nt_sleep_ms(50))
		if (pt_dir_epoch(dst) == 20)
			break;
	ok = pt_dir_epoch(dst) == 20 && !pt_replica_open(&r, dst, &ro) &&
	     !memcmp(pt_replica_base(r), pt_region_base(w), NPAGES * ps);
	if (r)
		pt_replica_close(r);
	nt_kill(fol, SIGTERM);
	nt_kill(pub, SIGTERM);
	pt_region_close(w);
	printf("  publish and follow --hmac-key-file: %s\n", ok ? "done" : "FAILED");
	if (!ok)
		printf("    logs: %s %s\n", nt_path("t-publish.log"), nt_path("t-follow.log"));
	free(src);
	free(dst);
	free(key_path);
	return !ok;
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct natsd server;
	struct pt_publisher *p;
	struct pt_region *w;
	natsConnection *nc;
	char *src, *plain;
	int err, failed = 0;

	nt_init("net-hmac: an HMAC-SHA256 of every message with a shared key");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	for (size_t i = 0; i < sizeof(key); i++) {
		key[i] = (unsigned char)(i * 37 + 11);
		other_key[i] = key[i] ^ (i == 7);	/* one bit apart */
	}
	natsd_start(&server, "nats", NULL);
	src = strdup(nt_path("src"));
	plain = strdup(nt_path("plain"));
	if (natsConnection_ConnectTo(&nc, server.url) != NATS_OK ||
	    natsConnection_JetStream(&js, nc, NULL) != NATS_OK)
		DIE("raw connection");

	/* Options. */
	{
		struct pt_net_opts o = { .sz = sizeof(o), .urls = server.url, .stream = "x",
					 .hmac_key = key, .hmac_key_len = 8 };
		struct pt_follower *f;
		struct pt_publisher *q;

		if (pt_follower_open(&f, nt_path("o"), &o) != -EINVAL ||
		    pt_publisher_open(&q, nt_path("o"), &o) != -EINVAL)
			DIE("a key of 8 bytes was taken");
		o.hmac_key = NULL;
		o.hmac_key_len = 32;
		if (pt_follower_open(&f, nt_path("o"), &o) != -EINVAL)
			DIE("a key length without a key was taken");
		o.hmac_key_len = 0;
		o.standby_segment_bytes = 65536;
		if (pt_publisher_open(&q, nt_path("o"), &o) != -EINVAL)
			DIE("a publisher took the standby's options");
		printf("  short key, length without key, standby options on a publisher: refused\n");
	}

	/* The good messages: epochs 1..GOOD through a publisher with the key. */
	if ((err = pt_region_create(&w, src, NPAGES * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	make_epochs(w, 1, GOOD);
	if (open_publisher(server.url, src, "source", key, &p) || publish_all(p, GOOD))
		DIE("publisher: %s", pt_net_last_error());
	pt_publisher_close(p);
	for (int e = 1; e <= GOOD; e++) {
		natsMsg *m;
		uint64_t body;

		if (js_GetMsg(&m, js, "source", (uint64_t)e, NULL, NULL) != NATS_OK)
			DIE("get %d", e);
		good_len[e] = natsMsg_GetDataLength(m);
		good[e] = malloc((size_t)good_len[e]);
		memcpy(good[e], natsMsg_GetData(m), (size_t)good_len[e]);
		natsMsg_Destroy(m);
		memcpy(&body, good[e] + 88, 8);
		if (good[e][8] != 2 || (uint64_t)good_len[e] != 128 + body + 32)
			DIE("epoch %d: version %u, %d bytes for a body of %llu: not version 2 with "
			    "a MAC", e, good[e][8], good_len[e], (unsigned long long)body);
	}
	printf("  a publisher with a key writes wire version 2, 32 bytes of MAC: done\n");

	/* A publisher goes on after a MAC'd message only with the same key. */
	if ((err = open_publisher(server.url, src, "source", NULL, NULL)) != -ENOKEY ||
	    !strstr(pt_net_last_error(), "no HMAC key"))
		DIE("a publisher without the key went on: %d %s", err, pt_net_last_error());
	if ((err = open_publisher(server.url, src, "source", other_key, NULL)) != -EKEYREJECTED)
		DIE("a publisher with another key went on: %d %s", err, pt_net_last_error());
	if ((err = open_publisher(server.url, src, "source", key, NULL)))
		DIE("the publisher with the key: %s", pt_net_last_error());
	printf("  publisher: no key -ENOKEY, another key -EKEYREJECTED, the key goes on: done\n");

	{
		struct cell cells[16];
		int n = 0, len;
		unsigned char *m;

		cells[n++] = (struct cell){ "the key", key, 0, 0, NULL, 0 };
		cells[n++] = (struct cell){ "no key", NULL, -ENOKEY, 1, NULL, 0 };
		cells[n++] = (struct cell){ "another key", other_key, -EKEYREJECTED, 1, NULL, 0 };
		/* Injected after epoch KEEP, in front of the good rest. */
		m = copy(KEEP + 1, &len);
		m[len - 1] ^= 0x01;
		cells[n++] = (struct cell){ "MAC flipped", key, -EKEYREJECTED, KEEP + 1, m, len };
		m = copy(KEEP + 1, &len);
		len -= 32;
		m[8] = 1;
		reseal(m, len, 0);
		cells[n++] = (struct cell){ "MAC stripped (version 1)", key, -EKEYREJECTED, KEEP + 1,
					    m, len };
		m = copy(KEEP + 1, &len);
		remac(m, len, other_key);
		cells[n++] = (struct cell){ "MAC of another key", key, -EKEYREJECTED, KEEP + 1, m,
					    len };
		/* Other page bytes with every checksum right, and a MAC: only the
		 * key tells (the chain check would too, later: the MAC first). */
		m = copy(KEEP + 1, &len);
		m[len - 32 - 1] ^= 0x55;
		reseal(m, len, 32);
		remac(m, len, other_key);
		cells[n++] = (struct cell){ "forged, another key's MAC", key, -EKEYREJECTED,
					    KEEP + 1, m, len };
		m = copy(KEEP + 1, &len);
		len -= 16;
		cells[n++] = (struct cell){ "MAC truncated", key, -EBADMSG, KEEP + 1, m, len };
		for (int i = 0; i < n; i++) {
			bool ok = run_cell(server.url, i, &cells[i]);

			printf("    %s\n", ok ? "done" : "FAILED");
			failed += !ok;
			free(cells[i].msg);
		}
	}

	/* A stream that no longer starts at epoch 1: a follower with the key
	 * catches up from the snapshot, whose values carry MACs too. */
	{
		struct pt_net_opts po = { .sz = sizeof(po), .urls = server.url, .stream = "trimmed",
					  .max_msgs = 3, .hmac_key = key, .hmac_key_len = 32 };
		struct pt_follower_stats fs = { .sz = sizeof(fs) };
		struct pt_follower *f;
		uint64_t start = nt_ms();

		if (pt_publisher_open(&p, src, &po) || publish_all(p, GOOD))
			DIE("publisher of a short stream: %s", pt_net_last_error());
		pt_publisher_close(p);
		po.max_msgs = 0;
		if (pt_follower_open(&f, nt_path("trimmed"), &po))
			DIE("follower: %s", pt_net_last_error());
		while (fs.epoch < GOOD && nt_ms() - start < 10000) {
			err = pt_follower_run(f, 100);
			if (err < 0 && err != -EAGAIN)
				DIE("a follower with the key at a gap: %s", pt_net_last_error());
			pt_follower_stats(f, &fs);
		}
		pt_follower_close(f);
		if (fs.snapshot_catchups != 1 || !standby_is(nt_path("trimmed"), GOOD))
			DIE("a follower with the key at a gap: %llu catch-ups, epoch %lld",
			    (unsigned long long)fs.snapshot_catchups, (long long)fs.epoch);
		printf("  a gap in a keyed stream: catch-up from the snapshot with MACs "
		       "(to epoch %lld): done\n", (long long)fs.snapshot_to);
	}

	/* A key added to a stream without MACs: from there on. */
	{
		struct pt_region *w2;
		int64_t epoch;

		if ((err = pt_region_create(&w2, plain, NPAGES * ps, &wo)))
			DIE("create: %s", pt_strerror(err));
		make_epochs(w2, 1, 3);
		if (open_publisher(server.url, plain, "plain", NULL, &p) || publish_all(p, 3))
			DIE("keyless publisher: %s", pt_net_last_error());
		pt_publisher_close(p);
		make_epochs(w2, 4, 5);
		if (open_publisher(server.url, plain, "plain", key, &p) || publish_all(p, 5))
			DIE("the publisher given a key: %s", pt_net_last_error());
		pt_publisher_close(p);
		pt_region_close(w2);
		err = follow(server.url, "plain", nt_path("plain-keyed"), key, &epoch);
		if (err != -EKEYREJECTED || epoch != 0 || !strstr(pt_net_last_error(), "sequence 1:"))
			DIE("a follower with the key on the keyless start: %d at %lld: %s", err,
			    (long long)epoch, pt_net_last_error());
		err = follow(server.url, "plain", nt_path("plain-keyless"), NULL, &epoch);
		if (err != -ENOKEY || epoch != 3 || !strstr(pt_net_last_error(), "sequence 4:"))
			DIE("a follower without the key: %d at %lld: %s", err, (long long)epoch,
			    pt_net_last_error());
		printf("  a key added to a keyless stream: MACs from epoch 4 on; a follower with "
		       "the key refuses 1, one without refuses 4: done\n");
	}

	failed += key_files(server.url);
	failed += commands(server.url);

	pt_region_close(w);
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	natsd_stop(&server);
	for (int e = 1; e <= GOOD; e++)
		free(good[e]);
	free(src);
	free(plain);
	if (failed)
		return T_FAIL;
	printf("done\n");
	return 0;
}
