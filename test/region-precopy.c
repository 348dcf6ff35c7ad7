/* region-precopy: pre-copy passes while writers run; each epoch's record holds every page written in it with its content at the sync. */
/*
 * Per backend:
 *  - "rewritten": a page a pass copied and the writer wrote again is in
 *    the record with its content at the sync (read back with
 *    pt_replica_step), a page not written again comes from the pass, and
 *    the statistics count the pre-copies, the copies made again and the
 *    extra faults exactly;
 *  - "store full": with a store of 4 pages, a pass leaves the rest to the
 *    sync, and the record is still whole;
 *  - "jump": what a pass copied before pt_region_jump() replaced the
 *    memory never reaches a record;
 *  - "model": two writer threads (t_writers_start) write random pages
 *    while the main thread runs pre-copy passes; at each sync the writers
 *    pause (every third epoch after one more pass, so that the store
 *    surely serves the sync), the memory is the model, and a replica
 *    refreshed to that epoch must equal it byte for byte; at the end so
 *    must a replica opened from the checkpointed image.
 * And: pre-copy is refused with -EOPNOTSUPP under adaptive tracking, with
 * -ECHILD in a forked child, -EINVAL for NULL.
 * PAGETRACK_TEST_SEED repeats a run; PT_SOFTDIRTY_EMULATE=1 runs the
 * soft-dirty cells on a kernel without it (softdirty-emulated.sh).
 */
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define MODEL_PAGES 256
#define MODEL_EPOCHS 24
#define HOT_PAGES 8

static uint64_t seed;

static int region_on(struct pt_region **r, char *dir, size_t dir_len, const char *name,
		     enum pt_backend b, uint64_t npages, const struct pt_region_opts *base)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };

	if (base)
		o = *base;
	o.backend = b;
	t_tmpdir_make(dir, dir_len, name);
	return pt_region_create(r, dir, npages * t_page_size(), &o);
}

static void fill(struct pt_region *r, uint64_t page, int c)
{
	memset((char *)pt_region_base(r) + page * t_page_size(), c, t_page_size());
}

/* What a record must hold: pages (ascending) and the byte each is full of. */
struct want {
	uint32_t n;
	uint64_t page[16];
	int byte[16];
	bool ok;
	char why[200];
};

static int check_delta(const struct pt_delta *d, const void *base, void *arg)
{
	struct want *w = arg;
	size_t ps = t_page_size();

	(void)base;
	w->ok = false;
	if (d->page_count != w->n) {
		snprintf(w->why, sizeof(w->why), "epoch %lld: %u pages, want %u",
			 (long long)d->epoch, d->page_count, w->n);
		return 0;
	}
	for (uint32_t i = 0; i < w->n; i++) {
		const unsigned char *p = d->data + (size_t)i * ps;

		if (d->pages[i] != w->page[i]) {
			snprintf(w->why, sizeof(w->why), "epoch %lld: page %u is %llu, want %llu",
				 (long long)d->epoch, i, (unsigned long long)d->pages[i],
				 (unsigned long long)w->page[i]);
			return 0;
		}
		for (size_t k = 0; k < ps; k++)
			if (p[k] != (unsigned char)w->byte[i]) {
				snprintf(w->why, sizeof(w->why), "epoch %lld: page %llu holds %#x at "
					 "%zu, want %#x (a stale copy)", (long long)d->epoch,
					 (unsigned long long)d->pages[i], p[k], k, w->byte[i]);
				return 0;
			}
	}
	w->ok = true;
	return 0;
}

/* Step the delta replica to epoch and check its record against w. */
static bool record_is(struct pt_replica *rep, pt_epoch_t epoch, struct want *w, char *why,
		      size_t why_len)
{
	pt_epoch_t e = pt_replica_step(rep, 10000, check_delta, w);

	CHECK(e == epoch, "step: %lld, want epoch %lld", (long long)e, (long long)epoch);
	if (!w->ok)
		snprintf(why, why_len, "%s", w->why);
	return w->ok;
}

static bool rewritten(enum pt_backend b, char *why, size_t why_len)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	struct pt_sync_stats last = { .sz = sizeof(last) };
	struct pt_replica *rep = NULL;
	struct pt_region *r;
	struct want w;
	char dir[128];
	bool ok = false;
	int n;

	n = region_on(&r, dir, sizeof(dir), "pt-precopy", b, 32, NULL);
	CHECK(!n, "create: %s", pt_strerror(n));
	n = pt_replica_open(&rep, dir, &ro);
	if (n) {
		snprintf(why, why_len, "replica: %s", pt_strerror(n));
		goto out;
	}
	/* Epoch 1: 3 and 5 pre-copied, 3 written again, 7 after the pass. */
	fill(r, 3, 'a');
	fill(r, 5, 'b');
	n = pt_region_precopy(r);
	if (n != 2) {
		snprintf(why, why_len, "first pass copied %d pages, want 2", n);
		goto out;
	}
	fill(r, 3, 'c');
	fill(r, 7, 'd');
	if (pt_region_sync(r) != 1 || pt_region_stats(r, &last, &tot)) {
		snprintf(why, why_len, "sync 1");
		goto out;
	}
	w = (struct want){ .n = 3, .page = { 3, 5, 7 }, .byte = { 'c', 'b', 'd' } };
	if (!record_is(rep, 1, &w, why, why_len))
		goto out;
	if (last.pages != 3 || last.precopied != 1 || tot.precopy_passes != 1 ||
	    tot.precopied != 2 || tot.precopy_resynced != 1 || tot.precopy_extra_faults != 1) {
		snprintf(why, why_len, "epoch 1 stats: pages %llu from passes %llu, passes %llu "
			 "precopied %llu resynced %llu extra faults %llu (want 3 1 1 2 1 1)",
			 (unsigned long long)last.pages, (unsigned long long)last.precopied,
			 (unsigned long long)tot.precopy_passes, (unsigned long long)tot.precopied,
			 (unsigned long long)tot.precopy_resynced,
			 (unsigned long long)tot.precopy_extra_faults);
		goto out;
	}
	/* Epoch 2: nothing written after the pass; a pass with nothing new. */
	fill(r, 9, 'e');
	if (pt_region_precopy(r) != 1 || pt_region_precopy(r) != 0 || pt_region_sync(r) != 2) {
		snprintf(why, why_len, "epoch 2: pass or sync");
		goto out;
	}
	w = (struct want){ .n = 1, .page = { 9 }, .byte = { 'e' } };
	if (!record_is(rep, 2, &w, why, why_len))
		goto out;
	/* Epoch 3: written, copied, written, copied again: only the last
	 * copy counts, and it came from a pass. */
	fill(r, 9, 'f');
	n = pt_region_precopy(r);
	fill(r, 9, 'g');
	if (n != 1 || pt_region_precopy(r) != 1 || pt_region_sync(r) != 3 ||
	    pt_region_stats(r, &last, &tot)) {
		snprintf(why, why_len, "epoch 3: pass or sync");
		goto out;
	}
	w = (struct want){ .n = 1, .page = { 9 }, .byte = { 'g' } };
	if (!record_is(rep, 3, &w, why, why_len))
		goto out;
	if (last.precopied != 1 || tot.precopy_extra_faults != 2 || tot.precopy_resynced != 1) {
		snprintf(why, why_len, "epoch 3 stats: from passes %llu, extra faults %llu, "
			 "resynced %llu (want 1 2 1)", (unsigned long long)last.precopied,
			 (unsigned long long)tot.precopy_extra_faults,
			 (unsigned long long)tot.precopy_resynced);
		goto out;
	}
	/* Nothing written: no epoch, the pass copies nothing. */
	if (pt_region_precopy(r) != 0 || pt_region_sync(r) != 3) {
		snprintf(why, why_len, "an epoch with nothing written");
		goto out;
	}
	ok = true;
out:
	pt_replica_close(rep);
	n = pt_region_close(r);
	t_tmpdir_remove(dir);
	CHECK(!n, "close: %s", pt_strerror(n));
	return ok;
}

static bool store_full(enum pt_backend b, char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .staging_bytes = 4 * t_page_size() };
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };
	struct pt_sync_stats last = { .sz = sizeof(last) };
	struct pt_replica *rep = NULL;
	struct pt_region *r;
	struct want w = { .n = 10 };
	char dir[128];
	bool ok = false;
	int n;

	n = region_on(&r, dir, sizeof(dir), "pt-precopy-full", b, 32, &o);
	CHECK(!n, "create: %s", pt_strerror(n));
	n = pt_replica_open(&rep, dir, &ro);
	if (n) {
		snprintf(why, why_len, "replica: %s", pt_strerror(n));
		goto out;
	}
	for (int i = 0; i < 10; i++) {
		fill(r, (uint64_t)i * 2, 'A' + i);
		w.page[i] = (uint64_t)i * 2;
		w.byte[i] = 'A' + i;
	}
	n = pt_region_precopy(r);
	if (n != 4) {
		snprintf(why, why_len, "a pass into a 4-page store copied %d pages", n);
		goto out;
	}
	fill(r, 0, 'z');
	fill(r, 18, 'y');
	w.byte[0] = 'z';
	w.byte[9] = 'y';
	if (pt_region_sync(r) != 1 || pt_region_stats(r, &last, NULL)) {
		snprintf(why, why_len, "sync");
		goto out;
	}
	if (!record_is(rep, 1, &w, why, why_len))
		goto out;
	/* Pages 2, 4 and 6 came from the store; 0 was written again. */
	if (last.precopied != 3) {
		snprintf(why, why_len, "%llu pages from the store, want 3",
			 (unsigned long long)last.precopied);
		goto out;
	}
	ok = true;
out:
	pt_replica_close(rep);
	n = pt_region_close(r);
	t_tmpdir_remove(dir);
	CHECK(!n, "close: %s", pt_strerror(n));
	return ok;
}

/* A jump replaces the memory: what a pass copied before it is forgotten,
 * not put into the first record after it. */
static bool jump(enum pt_backend b, char *why, size_t why_len)
{
	struct pt_sync_stats last = { .sz = sizeof(last) };
	struct pt_page_version v[32];
	size_t ps = t_page_size();
	const uint64_t given[2] = { 3, 4 };
	unsigned char *data = calloc(2, ps);
	struct pt_region *r;
	struct pt_jump j;
	pt_epoch_t e;
	char dir[128];
	bool ok = false;
	int n;

	CHECK(data, "out of memory");
	n = region_on(&r, dir, sizeof(dir), "pt-precopy-jump", b, 32, NULL);
	if (n) {
		free(data);
		CHECK(!n, "create: %s", pt_strerror(n));
	}
	fill(r, 4, 'a');
	if (pt_region_sync(r) != 1 || pt_region_precopy(r) != 0) {
		snprintf(why, why_len, "epoch 1");
		goto out;
	}
	fill(r, 4, 'b');
	if (pt_region_precopy(r) != 1) {
		snprintf(why, why_len, "a pass after a write did not copy it");
		goto out;
	}
	/* The source's epoch 9: page 3 full of 'J', page 4 zero again. */
	memset(data, 'J', ps);
	for (uint64_t p = 0; p < 32; p++)
		v[p] = (struct pt_page_version){ .generation = 0,
						 .checksum = pt_page_checksum(data + ps, ps) };
	v[3] = (struct pt_page_version){ .generation = 9, .checksum = pt_page_checksum(data, ps) };
	v[4].generation = 9;
	j = (struct pt_jump){ .sz = sizeof(j), .epoch = 9, .chain = 0x1234, .versions = v,
			      .count = 2, .pages = given, .data = data };
	e = pt_region_jump(r, &j);
	if (e != 9) {
		snprintf(why, why_len, "jump: %s", pt_strerror((int)e));
		goto out;
	}
	/* Nothing written since the jump: no epoch, whatever the pass held. */
	e = pt_region_sync(r);
	if (e != 9) {
		snprintf(why, why_len, "the sync after the jump made epoch %lld from a stale "
			 "pre-copy", (long long)e);
		goto out;
	}
	fill(r, 5, 'c');
	if (pt_region_sync(r) != 10 || pt_region_stats(r, &last, NULL) || last.pages != 1 ||
	    last.precopied != 0) {
		snprintf(why, why_len, "epoch 10: %llu pages, %llu from passes (want 1, 0)",
			 (unsigned long long)last.pages, (unsigned long long)last.precopied);
		goto out;
	}
	ok = true;
out:
	n = pt_region_close(r);
	t_tmpdir_remove(dir);
	free(data);
	CHECK(!n, "close: %s", pt_strerror(n));
	return ok;
}

/* Wait (bounded) until the writers made at least n more writes. */
static void let_write(struct t_writers *w, uint64_t n)
{
	uint64_t start = t_writers_count(w);
	double end = t_now() + 5;

	while (t_writers_count(w) - start < n && t_now() < end)
		sched_yield();
}

static bool same_as(const unsigned char *copy, const unsigned char *model, size_t len,
		    const char *what, pt_epoch_t e, char *why, size_t why_len)
{
	size_t off = 0;

	if (!memcmp(copy, model, len))
		return true;
	while (copy[off] == model[off])
		off++;
	snprintf(why, why_len, "%s at epoch %lld differs from the memory at the sync: page %zu "
		 "byte %zu", what, (long long)e, off / t_page_size(), off % t_page_size());
	return false;
}

static bool model(enum pt_backend b, char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .durability = PT_DURABLE_NONE };
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	size_t len = MODEL_PAGES * t_page_size();
	uint64_t passes = 0, copied = 0, writes = 0, from_store = 0, rnd = seed | 1;
	struct pt_sync_stats last = { .sz = sizeof(last) };
	struct pt_replica *rep = NULL, *img = NULL;
	unsigned char *expect = malloc(len);
	struct t_writers w;
	struct pt_region *r;
	bool ok = false, writing = false;
	pt_epoch_t e = 0;
	char dir[128];
	int n;

	CHECK(expect, "out of memory");
	n = region_on(&r, dir, sizeof(dir), "pt-precopy-model", b, MODEL_PAGES, &o);
	if (n) {
		free(expect);
		CHECK(!n, "create: %s", pt_strerror(n));
	}
	n = pt_replica_open(&rep, dir, NULL);
	if (n) {
		snprintf(why, why_len, "replica: %s", pt_strerror(n));
		goto out;
	}
	if (!t_writers_start(&w, pt_region_base(r), len, HOT_PAGES, seed, why, why_len))
		goto out;
	writing = true;
	for (unsigned epoch = 1; epoch <= MODEL_EPOCHS; epoch++) {
		unsigned npass = (unsigned)(t_rnd_next(&rnd) % 4);

		for (unsigned i = 0; i < npass; i++) {
			let_write(&w, 64);
			n = pt_region_precopy(r);
			if (n < 0) {
				snprintf(why, why_len, "pass: %s", pt_strerror(n));
				goto out;
			}
			passes++;
			copied += (uint64_t)n;
		}
		let_write(&w, 64);
		/* The writer's consistent moment: no write during the sync. */
		t_writers_pause(&w, epoch);
		if (epoch % 3 == 0) {
			/* A last pass with nothing written after it: the sync
			 * takes all it copied from the store. */
			n = pt_region_precopy(r);
			if (n <= 0) {
				snprintf(why, why_len, "a pass after 64 writes: %d", n);
				t_writers_resume(&w);
				goto out;
			}
			passes++;
			copied += (uint64_t)n;
		}
		memcpy(expect, pt_region_base(r), len);
		e = pt_region_sync(r);
		t_writers_resume(&w);
		if (e < 0 || pt_region_stats(r, &last, NULL)) {
			snprintf(why, why_len, "sync: %s", pt_strerror((int)e));
			goto out;
		}
		from_store += last.precopied;
		n = pt_region_wait(r, e, PT_LEVEL_PUBLISHED, 10000);
		if (n || (pt_replica_epoch(rep) != e && pt_replica_refresh(rep, 10000) != e)) {
			snprintf(why, why_len, "epoch %lld not applied: %s", (long long)e,
				 pt_strerror(n));
			goto out;
		}
		if (!same_as(pt_replica_base(rep), expect, len, "the replica", e, why, why_len))
			goto out;
	}
	writes = t_writers_stop(&w);
	writing = false;
	/* The image, and the log after it, hold the last epoch too. */
	if (pt_region_checkpoint(r) != e || pt_replica_open(&img, dir, NULL) ||
	    pt_replica_epoch(img) != e) {
		snprintf(why, why_len, "checkpoint, or a replica from the image");
		goto out;
	}
	if (!same_as(pt_replica_base(img), expect, len, "the image's replica", e, why, why_len))
		goto out;
	if (pt_region_stats(r, NULL, &tot) || tot.precopy_passes != passes ||
	    tot.precopied != copied) {
		snprintf(why, why_len, "stats: %llu passes, %llu pre-copied; the calls said %llu, %llu",
			 (unsigned long long)tot.precopy_passes, (unsigned long long)tot.precopied,
			 (unsigned long long)passes, (unsigned long long)copied);
		goto out;
	}
	if (!passes || !copied || !from_store) {
		snprintf(why, why_len, "no record took a page from a pass (%llu passes copied %llu)",
			 (unsigned long long)passes, (unsigned long long)copied);
		goto out;
	}
	printf("    %llu writes, %lld epochs, %llu passes copied %llu pages, %llu records took "
	       "from them, %llu copied again at the sync, %llu extra faults\n",
	       (unsigned long long)writes, (long long)e, (unsigned long long)passes,
	       (unsigned long long)copied, (unsigned long long)from_store,
	       (unsigned long long)tot.precopy_resynced,
	       (unsigned long long)tot.precopy_extra_faults);
	ok = true;
out:
	if (writing)
		t_writers_stop(&w);
	pt_replica_close(img);
	pt_replica_close(rep);
	n = pt_region_close(r);
	t_tmpdir_remove(dir);
	free(expect);
	CHECK(!n, "close: %s", pt_strerror(n));
	return ok;
}

/* Adaptive tracking (uffd-wp) refuses pre-copy; a forked child, NULL too. */
static bool refused(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD |
				    PT_REGION_ADAPTIVE };
	struct pt_region *r;
	char dir[128];
	int n, status;
	pid_t pid;

	CHECK(pt_region_precopy(NULL) == -EINVAL, "NULL region accepted");
	n = region_on(&r, dir, sizeof(dir), "pt-precopy-adaptive", PT_BACKEND_UFFD_WP, 32, &o);
	CHECK(!n, "create: %s", pt_strerror(n));
	fill(r, 1, 1);
	n = pt_region_precopy(r);
	pid = fork();
	if (pid == 0)
		_exit(pt_region_precopy(r) == -ECHILD ? 0 : 1);
	status = -1;
	if (pid > 0)
		waitpid(pid, &status, 0);
	/* The page written before the refused pass is still in the epoch. */
	if (n == -EOPNOTSUPP && pt_region_sync(r) == 1) {
		struct pt_sync_stats last = { .sz = sizeof(last) };

		if (pt_region_stats(r, &last, NULL) || last.pages != 1)
			n = 1;
	}
	pt_region_close(r);
	t_tmpdir_remove(dir);
	CHECK(n == -EOPNOTSUPP, "adaptive region: pre-copy returned %d, want -EOPNOTSUPP "
	      "(or a sync lost the page)", n);
	CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "a forked child's pre-copy was not -ECHILD");
	(void)why;
	(void)why_len;
	return true;
}

int main(void)
{
	static const struct {
		const char *name;
		bool (*fn)(enum pt_backend b, char *why, size_t why_len);
	} cells[] = {
		{ "rewritten", rewritten },
		{ "store full", store_full },
		{ "model", model },
		{ "jump", jump },
	};
	const char *env = getenv("PAGETRACK_TEST_SEED");
	char why[256] = "";

	/* The test picks its tracking: adaptive where it says so. */
	unsetenv("PAGETRACK_ADAPTIVE");
	unsetenv("PAGETRACK_BACKEND");
	/* PT_SOFTDIRTY_EMULATE=1: the soft-dirty cells on uffd-wp's
	 * emulation of it (softdirty-emulated.sh). */
	if (t_softdirty_emulate(why, sizeof(why)) == T_SKIP) {
		printf("skip: %s\n", why);
		return T_SKIP;
	}
	seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) * 2654435761u;
	printf("seed %llu\n", (unsigned long long)seed);
	for (size_t bi = 0; bi < ARRAY_LEN(t_all_backends); bi++) {
		enum pt_backend b = t_all_backends[bi];

		for (size_t c = 0; c < ARRAY_LEN(cells); c++) {
			char name[64];

			snprintf(name, sizeof(name), "%s x %s", pt_backend_name(b), cells[c].name);
			if (!t_backend_usable(b, why, sizeof(why))) {
				t_cell_report(name, T_SKIP, why);
				continue;
			}
			why[0] = '\0';
			t_cell_report(name, cells[c].fn(b, why, sizeof(why)) ? T_PASS : T_FAIL, why);
		}
	}
	if (!t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		t_cell_report("refused", T_SKIP, why);
	} else {
		why[0] = '\0';
		t_cell_report("refused", refused(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	}
	return t_exit();
}
