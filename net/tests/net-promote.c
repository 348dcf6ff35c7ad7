/* net-promote: a standby behind the stream is promoted (it applies the rest first): its content is the last replicated epoch, the old writer is deposed (its PT_LEVEL_REPLICATED waits -EOWNERDEAD, a restarted publisher refused), a half-published epoch of the old term is dropped by every follower, the new writer publishes on; promote is refused on another history, a directory ahead of or diverged from the stream, an empty stream, a held lease (unless forced), and after its timeout on a standby the purged stream cannot catch up until a snapshot is past the gap (then it catches up from the snapshot); an incomplete promotion is refused by the publisher; with an HMAC key the marker is sealed and a promotion without the key refused. */
#include "failtest.h"

#define NPAGES	1024

static struct pt_net_opts o = { .sz = sizeof(o), .stream = "promote" };
static struct ft_raw raw;

static struct pt_region *create(const char *dir)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_region *r;
	int err;

	if ((err = pt_region_create(&r, dir, NPAGES * (size_t)sysconf(_SC_PAGESIZE), &wo)))
		DIE("create %s: %s", dir, pt_strerror(err));
	return r;
}

static struct pt_region *reopen(const char *dir)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_region *r;
	int err;

	if ((err = pt_region_open(&r, dir, &wo)))
		DIE("open %s: %s", dir, pt_strerror(err));
	return r;
}

/* A follower on dir run until epoch, then closed. */
static void follow(const char *dir, const struct pt_net_opts *opts, pt_epoch_t epoch)
{
	struct pt_follower *f;
	int err;

	if (pt_follower_open(&f, dir, opts) || (err = ft_follow_to(f, epoch)))
		DIE("follower on %s: %s", dir, pt_net_last_error());
	if ((err = pt_follower_close(f)))
		DIE("follower close: %s", pt_strerror(err));
}

static void expect(int got, int want, const char *what)
{
	printf("  %-40s %s\n", what, pt_net_last_error());
	if (got != want)
		DIE("%s: %d (%s), expected %d (%s)", what, got, pt_strerror(got), want,
		    pt_strerror(want));
}

/*
 * Part 0 of the epoch the region in dir (a copy of A: its own replicated
 * file) holds last, appended raw to the stream after its last message:
 * what a writer killed in the middle of a multi-part epoch leaves.  The
 * message is made by publishing the copy to a scratch stream.
 */
static void append_half_epoch(const char *dir, pt_epoch_t epoch)
{
	struct pt_net_opts so = o;
	struct pt_publisher *p;
	char subject[64];
	jsPubOptions po;
	jsErrCode jerr = 0;
	bool done = false;

	so.stream = "scratch";
	if (pt_publisher_open(&p, dir, &so) || ft_publish_to(p, epoch))
		DIE("scratch publisher: %s", pt_net_last_error());
	pt_publisher_close(p);
	snprintf(subject, sizeof(subject), "pagetrack.%s.epochs", o.stream);
	for (uint64_t seq = 1; seq <= ft_raw_last_seq(&raw, "scratch") && !done; seq++) {
		natsMsg *m = ft_raw_get(&raw, "scratch", seq);

		if (m && FT_EPOCH(m) == (uint64_t)epoch && FT_PART(m) == 0) {
			if (FT_PARTS(m) < 2)
				DIE("epoch %lld is one message: not a half", (long long)epoch);
			jsPubOptions_Init(&po);
			po.ExpectLastSeq = ft_raw_last_seq(&raw, o.stream);
			if (js_Publish(NULL, raw.js, subject, natsMsg_GetData(m),
				       natsMsg_GetDataLength(m), &po, &jerr) != NATS_OK)
				DIE("raw publish: %d", (int)jerr);
			printf("  epoch %lld part 0 of %u appended alone\n", (long long)epoch,
			       FT_PARTS(m));
			done = true;
		}
		natsMsg_Destroy(m);
	}
	if (!done)
		DIE("no part 0 of epoch %lld in the scratch stream", (long long)epoch);
}

int main(void)
{
	struct pt_promote_info info = { .sz = sizeof(info) };
	struct pt_promote_opts force = { .sz = sizeof(force), .flags = PT_PROMOTE_FORCE };
	struct pt_publisher *pa, *pb, *p;
	struct pt_follower *f;
	struct pt_region *a, *b, *r;
	struct natsd server;
	uint64_t hashes[16], term = 0;
	const char *da, *db, *dc;
	pt_epoch_t e;
	int err;

	nt_init("net-promote: promote a standby behind the stream; the old writer deposed; refusals");
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	ft_raw_open(&raw, server.url);
	da = strdup(nt_path("a"));
	db = strdup(nt_path("b"));
	dc = strdup(nt_path("c"));

	/* A writes and publishes 1-5; B follows them, then stops. */
	a = create(da);
	if (pt_publisher_open(&pa, da, &o))
		DIE("publisher A: %s", pt_net_last_error());
	for (int i = 1; i <= 5; i++)
		if (ft_write(a, 8, false) != i)
			DIE("epoch %d", i);
	if (ft_publish_to(pa, 5))
		DIE("A: %s", pt_net_last_error());
	follow(db, &o, 5);
	/* A goes on to 10, all acknowledged; then epoch 11 of 600 whole pages
	 * (3 messages) is left half published. */
	for (int i = 6; i <= 10; i++) {
		ft_write(a, 8, false);
		hashes[i] = ft_region_hash(a);
	}
	if (ft_publish_to(pa, 10) || pt_region_wait(a, 10, PT_LEVEL_REPLICATED, 1000))
		DIE("A 10: %s", pt_net_last_error());
	{
		uint64_t seed = ft_seed;
		char cmd[600];

		/* The same epoch 11 in A and in a copy of A. */
		pt_region_close(a);
		snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", da, nt_path("a-copy"));
		if (system(cmd))
			DIE("copying A");
		a = reopen(da);
		r = reopen(nt_path("a-copy"));
		if (ft_write(r, 600, true) != 11)
			DIE("epoch 11 of the copy");
		pt_region_close(r);
		ft_seed = seed;
		if (ft_write(a, 600, true) != 11)
			DIE("epoch 11");
		append_half_epoch(nt_path("a-copy"), 11);
	}

	/* B, at 5, is promoted: it applies 6-10 first. */
	err = pt_dir_promote(db, &o, NULL, &info);
	expect(err, 0, "promote B (at epoch 5, the stream at 10)");
	if (info.term != 1 || info.epoch != 10 || info.applied != 5 || !info.holder)
		DIE("promoted: term %llu epoch %lld applied %llu", (unsigned long long)info.term,
		    (long long)info.epoch, (unsigned long long)info.applied);
	{
		pt_epoch_t be;
		uint64_t h = ft_dir_hash(db, &be);

		if (be != 10 || h != hashes[10])
			DIE("B at epoch %lld, hash %016llx, A's epoch 10 %016llx", (long long)be,
			    (unsigned long long)h, (unsigned long long)hashes[10]);
	}
	printf("  B holds A's epoch 10, the last replicated; term %llu, marker at sequence %llu, "
	       "%llu ms\n", (unsigned long long)info.term, (unsigned long long)info.stream_seq,
	       (unsigned long long)info.elapsed_ms);

	/* A's publisher goes on with epoch 11: fenced, A deposed. */
	err = pt_publisher_run(pa, 1000);
	expect(err, -EOWNERDEAD, "A's publisher after the promotion");
	if (!strstr(pt_net_last_error(), "term 1") || !strstr(pt_net_last_error(), "deposed"))
		DIE("the message does not say term 1 and deposed");
	if ((err = pt_region_wait(a, 11, PT_LEVEL_REPLICATED, 1000)) != -EOWNERDEAD)
		DIE("A's replicated wait: %s", pt_strerror(err));
	pt_publisher_close(pa);
	err = pt_publisher_open(&p, da, &o);
	expect(err, -EOWNERDEAD, "A's publisher restarted");

	/* B is the writer of term 1: epoch 11 (its own), published. */
	b = reopen(db);
	if (pt_publisher_open(&pb, db, &o))
		DIE("publisher B: %s", pt_net_last_error());
	{
		struct pt_publisher_stats st = { .sz = sizeof(st) };

		pt_publisher_stats(pb, &st);
		if (st.term != 1 || st.lease_held != -1)
			DIE("B's publisher: term %llu, lease %d", (unsigned long long)st.term,
			    st.lease_held);
	}
	if (ft_write(b, 20, false) != 11 || ft_publish_to(pb, 11) ||
	    pt_region_wait(b, 11, PT_LEVEL_REPLICATED, 1000))
		DIE("B epoch 11: %s", pt_net_last_error());
	hashes[11] = ft_region_hash(b);

	/* A new follower goes through A's 1-10, the half epoch 11, the
	 * marker and B's 11: it holds B's content. */
	follow(dc, &o, 11);
	{
		pt_epoch_t ce;
		uint64_t h = ft_dir_hash(dc, &ce);

		if (ce != 11 || h != hashes[11])
			DIE("C at %lld: not B's epoch 11", (long long)ce);
	}
	printf("  a new follower dropped A's half epoch 11 and holds B's\n");

	/* C promoted in turn once the lease B's promotion took lapsed (B's
	 * publisher holds none): term 2; B is fenced at its next publish. */
	{
		struct pt_lease_info li = { .sz = sizeof(li) };
		uint64_t start = nt_ms();

		if (pt_follower_open(&f, dc, &o))
			DIE("follower C: %s", pt_net_last_error());
		while ((err = pt_follower_lease(f, &li)) == 1 && nt_ms() - start < 10000)
			nt_sleep_ms(50);
		expect(err, 0, "the lease of B's promotion lapses");
		if (li.stream_term != 1 || nt_ms() - start > 5000)
			DIE("stream term %llu, lapsed after %llu ms", (unsigned long long)li.stream_term,
			    (unsigned long long)(nt_ms() - start));
		err = pt_follower_promote(f, NULL, &info);
		pt_follower_close(f);
	}
	expect(err, 0, "promote C (B's publisher holds no lease)");
	if (info.term != 2 || info.epoch != 11)
		DIE("C: term %llu epoch %lld", (unsigned long long)info.term, (long long)info.epoch);
	ft_write(b, 4, false);
	err = pt_publisher_run(pb, 1000);
	expect(err, -EOWNERDEAD, "B's publisher after C's promotion");
	pt_publisher_close(pb);
	pt_region_close(b);

	/* Refusals.  The old writer's own directory: it holds its epoch 11,
	 * not the stream's. */
	pt_region_close(a);
	err = pt_dir_promote(da, &o, NULL, &info);
	expect(err, -ESTALE, "promote the deposed writer's directory");
	/* Another history. */
	r = create(nt_path("other"));
	ft_write(r, 4, false);
	pt_region_close(r);
	err = pt_dir_promote(nt_path("other"), &o, NULL, &info);
	expect(err, -ESTALE, "promote a region of another history");

	/* A stream with no epoch. */
	{
		struct pt_net_opts eo = o;

		eo.stream = "empty";
		r = create(nt_path("e"));
		if (pt_publisher_open(&p, nt_path("e"), &eo))
			DIE("publisher e: %s", pt_net_last_error());
		pt_publisher_close(p);
		pt_region_close(r);
		err = pt_dir_promote(nt_path("e2"), &eo, NULL, &info);
		expect(err, -ENODATA, "promote on a stream with no epoch");
	}

	/* A standby the stream can no longer catch up: its next epoch was
	 * purged, and the snapshot (written at the publisher's first run, at
	 * epoch 3 at most; then every 10 s) is not past the gap.  Refused
	 * after the timeout, saying why. */
	{
		struct pt_promote_opts short_wait = { .sz = sizeof(short_wait), .timeout_ms = 2000 };
		struct pt_net_opts to = o;
		jsOptions jo;
		jsErrCode jerr = 0;

		to.stream = "trimmed";
		r = create(nt_path("t"));
		if (pt_publisher_open(&p, nt_path("t"), &to))
			DIE("publisher t: %s", pt_net_last_error());
		for (int i = 0; i < 3; i++)
			ft_write(r, 4, false);
		if (ft_publish_to(p, 3))
			DIE("t: %s", pt_net_last_error());
		follow(nt_path("t2"), &to, 3);
		for (int i = 0; i < 4; i++)
			ft_write(r, 4, false);
		if (ft_publish_to(p, 7))
			DIE("t: %s", pt_net_last_error());
		jsOptions_Init(&jo);
		jo.Stream.Purge.Sequence = 6;	/* epochs 4 and 5 gone */
		if (js_PurgeStream(raw.js, "trimmed", &jo, &jerr) != NATS_OK)
			DIE("purge: %d", (int)jerr);
		err = pt_dir_promote(nt_path("t2"), &to, &short_wait, &info);
		expect(err, -ETIMEDOUT, "promote a standby the stream cannot catch up");
		if (!strstr(pt_net_last_error(), "snapshot"))
			DIE("the refusal does not say it waits for a snapshot");
		/* A snapshot past the gap: the promotion catches up from it,
		 * then from the stream. */
		{
			struct pt_net_opts so = to;
			struct pt_publisher *ps;
			pt_epoch_t te;
			uint64_t want = ft_region_hash(r), h;

			so.snapshot_interval_ms = 1;
			pt_publisher_close(p);
			if (pt_publisher_open(&ps, nt_path("t"), &so))
				DIE("publisher t again: %s", pt_net_last_error());
			for (int i = 0; i < 20; i++)
				pt_publisher_run(ps, 10);	/* its snapshot at epoch 7 */
			pt_publisher_close(ps);
			err = pt_dir_promote(nt_path("t2"), &to, NULL, &info);
			expect(err, 0, "promote it once the snapshot is past the gap");
			h = ft_dir_hash(nt_path("t2"), &te);
			if (te != 7 || h != want)
				DIE("t2 at epoch %lld after its promotion, not the writer's 7",
				    (long long)te);
		}
		err = pt_publisher_open(&p, nt_path("t"), &to);
		expect(err, -EOWNERDEAD, "the trimmed stream's old writer after the promotion");

		/* A directory that says it was promoted to a term whose marker
		 * the stream does not hold (its promotion stopped between the
		 * two steps): its publisher refuses. */
		{
			struct pt_replicated *rep;

			if (pt_replicated_open(&rep, nt_path("t")) ||
			    pt_replicated_set_term(rep, 3, 42))
				DIE("set term");
			pt_replicated_close(rep);
		}
		err = pt_publisher_open(&p, nt_path("t"), &to);
		expect(err, -EINPROGRESS, "publisher of an incomplete promotion");
		pt_region_close(r);
	}

	/* An HMAC key on both sides: the marker carries its MAC (version 4),
	 * the old publisher reads it with its key and is fenced, a new keyed
	 * follower goes through it; a promotion without the key is refused. */
	{
		static const unsigned char key[32] = "failover-test-key-of-32-bytes..";
		struct pt_net_opts ko = o, nokey;
		struct pt_region *kr, *kb;
		struct pt_publisher *kp;
		pt_epoch_t ke;
		uint64_t h;

		ko.stream = "keyed";
		ko.hmac_key = key;
		ko.hmac_key_len = sizeof(key);
		nokey = ko;
		nokey.hmac_key = NULL;
		nokey.hmac_key_len = 0;
		kr = create(nt_path("k"));
		if (pt_publisher_open(&kp, nt_path("k"), &ko))
			DIE("keyed publisher: %s", pt_net_last_error());
		for (int i = 0; i < 3; i++)
			ft_write(kr, 4, false);
		if (ft_publish_to(kp, 3))
			DIE("keyed: %s", pt_net_last_error());
		follow(nt_path("k2"), &ko, 2);
		err = pt_dir_promote(nt_path("k2"), &nokey, NULL, &info);
		expect(err, -ENOKEY, "promote without the stream's key");
		err = pt_dir_promote(nt_path("k2"), &ko, NULL, &info);
		expect(err, 0, "promote with the key");
		ft_write(kr, 4, false);
		err = ft_publish_to(kp, 4);
		expect(err, -EOWNERDEAD, "the keyed old writer publishes");
		pt_publisher_close(kp);
		pt_region_close(kr);
		kb = reopen(nt_path("k2"));
		if (pt_publisher_open(&kp, nt_path("k2"), &ko))
			DIE("keyed publisher on the promoted directory: %s", pt_net_last_error());
		ft_write(kb, 4, false);
		if (ft_publish_to(kp, 4))
			DIE("keyed new writer: %s", pt_net_last_error());
		h = ft_region_hash(kb);
		follow(nt_path("k3"), &ko, 4);
		if (ft_dir_hash(nt_path("k3"), &ke) != h || ke != 4)
			DIE("a keyed follower through the marker: epoch %lld", (long long)ke);
		printf("  a keyed follower went through the sealed marker to the new writer's "
		       "epoch 4\n");
		pt_publisher_close(kp);
		pt_region_close(kb);
	}

	/* A writer holding the lease: refused, then forced. */
	{
		struct pt_net_opts lo = o;
		struct pt_lease_info li = { .sz = sizeof(li) };

		lo.stream = "leased";
		lo.lease_ms = 1000;
		r = create(nt_path("l"));
		if (pt_publisher_open(&p, nt_path("l"), &lo))
			DIE("publisher l: %s", pt_net_last_error());
		for (int i = 0; i < 3; i++)
			ft_write(r, 4, false);
		if (ft_publish_to(p, 3))
			DIE("l: %s", pt_net_last_error());
		if (pt_follower_open(&f, nt_path("l2"), &lo) || ft_follow_to(f, 3))
			DIE("follower l2: %s", pt_net_last_error());
		err = pt_follower_lease(f, &li);
		expect(err, 1, "the lease, read by the standby");
		if (li.term != 0 || li.pid != getpid() || li.ttl_ms != 1000 || li.stream_term)
			DIE("lease: term %llu pid %d ttl %u", (unsigned long long)li.term, li.pid,
			    li.ttl_ms);
		err = pt_follower_promote(f, NULL, &info);
		expect(err, -EBUSY, "promote while the writer holds the lease");
		/* The writer's next epoch is still its own. */
		ft_write(r, 4, false);
		if (ft_publish_to(p, 4))
			DIE("l after a refused promotion: %s", pt_net_last_error());
		err = pt_follower_promote(f, &force, &info);
		expect(err, 0, "promote with PT_PROMOTE_FORCE");
		term = info.term;
		err = pt_follower_run(f, 0);
		expect(err, -EALREADY, "the promoted follower runs");
		err = pt_follower_promote(f, NULL, &info);
		expect(err, -EALREADY, "promoted twice");
		pt_follower_close(f);
		ft_write(r, 4, false);
		err = ft_publish_to(p, 5);
		expect(err, -EOWNERDEAD, "the forced-out writer publishes");
		if ((err = pt_region_wait(r, 5, PT_LEVEL_REPLICATED, 1000)) != -EOWNERDEAD)
			DIE("l's replicated wait: %s", pt_strerror(err));
		pt_publisher_close(p);
		pt_region_close(r);
		if (term != 1)
			DIE("forced promotion: term %llu", (unsigned long long)term);
		/* The directory knows its term and holder. */
		e = pt_dir_epoch(nt_path("l2"));
		if (e != 4)
			DIE("l2 at epoch %lld, want 4", (long long)e);
	}

	ft_raw_close(&raw);
	natsd_stop(&server);
	free((char *)da);
	free((char *)db);
	free((char *)dc);
	printf("done\n");
	return 0;
}
