/* standby-jump: a standby region takes its source's state at a later epoch (pt_region_jump) from the pages newer than its own epoch: content, chain, replicas, verify, reopen and the records after it are the source's; bad versions are refused with nothing changed. */
#include "harness.h"

#define NPAGES	64

static size_t ps;
static uint64_t seed = 11;
static uint64_t span = NPAGES / 2;	/* pages written: the others stay zero */

/* Epochs of random writes on w, n of them. */
static void write_epochs(struct pt_region *w, int n)
{
	unsigned char *mem = pt_region_base(w);

	for (int i = 0; i < n; i++) {
		int64_t before = pt_region_epoch(w), e;

		for (int k = 0; k < 1 + (int)(t_rnd_next(&seed) % 3); k++) {
			uint64_t page = t_rnd_next(&seed) % span;
			uint64_t *words = (uint64_t *)(mem + page * ps);

			words[t_rnd_next(&seed) % (ps / 8)] = t_rnd_next(&seed);
		}
		e = pt_region_sync(w);
		if (e != before + 1)
			DIE("sync: %lld after %lld", (long long)e, (long long)before);
	}
}

/* Apply each delta to the standby, as a follower does, checking its chain. */
static int apply(const struct pt_delta *d, const void *base, void *arg)
{
	struct pt_region *s = arg;
	unsigned char *mem = pt_region_base(s);
	pt_epoch_t e;
	uint64_t chain;

	(void)base;
	for (uint32_t i = 0; i < d->page_count; i++)
		memcpy(mem + d->pages[i] * ps, d->data + (size_t)i * ps, ps);
	if (pt_region_sync(s) != d->epoch || pt_region_chain(s, &e, &chain) || chain != d->chain)
		DIE("standby: epoch %lld does not have the source's chain", (long long)d->epoch);
	return 0;
}

static void follow(struct pt_replica *src, struct pt_region *s, pt_epoch_t until)
{
	while (pt_replica_epoch(src) < until) {
		int64_t e = pt_replica_step(src, 0, apply, s);

		if (e <= 0)
			DIE("step: %lld (%s)", (long long)e, pt_strerror((int)e));
	}
}

/* The source's state as a snapshot: versions of every page, and the pages
 * newer than `have` with their content. */
struct snap {
	pt_epoch_t epoch;
	uint64_t chain;
	struct pt_page_version v[NPAGES];
	uint64_t pages[NPAGES];
	unsigned char *data;
	uint64_t count;
};

static void snapshot(struct pt_replica *src, pt_epoch_t have, struct snap *sn)
{
	const unsigned char *base = pt_replica_base(src);
	pt_epoch_t gen[NPAGES];

	if (pt_replica_chain(src, &sn->epoch, &sn->chain) ||
	    pt_replica_generations(src, 0, NPAGES, gen))
		DIE("the source replica's chain or generations");
	if (pt_replica_generations(src, 1, NPAGES, gen) != -EINVAL)
		DIE("generations beyond the region accepted");
	free(sn->data);
	sn->data = malloc(NPAGES * ps);
	sn->count = 0;
	for (uint64_t p = 0; p < NPAGES; p++) {
		sn->v[p].generation = gen[p];
		sn->v[p].checksum = pt_page_checksum(base + p * ps, ps);
		if (gen[p] > sn->epoch)
			DIE("page %llu: generation %lld above the epoch", (unsigned long long)p,
			    (long long)gen[p]);
		if (gen[p] > have) {
			memcpy(sn->data + sn->count * ps, base + p * ps, ps);
			sn->pages[sn->count++] = p;
		}
	}
}

static struct pt_jump jump_of(const struct snap *sn)
{
	return (struct pt_jump){ .sz = sizeof(struct pt_jump), .epoch = sn->epoch,
				 .chain = sn->chain, .versions = sn->v, .count = sn->count,
				 .pages = sn->pages, .data = sn->data };
}

static void same(const char *what, const void *a, const void *b, pt_epoch_t ea, pt_epoch_t eb)
{
	if (ea != eb || memcmp(a, b, NPAGES * ps))
		DIE("%s: epoch %lld against %lld, or other content", what, (long long)ea,
		    (long long)eb);
	printf("  %-50s done (epoch %lld)\n", what, (long long)ea);
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .segment_bytes = 4 * 4096, .retain_bytes = 1,
				     .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_replica_opts dro = { .sz = sizeof(dro), .flags = PT_REPLICA_DELTAS };
	struct pt_replica_opts pro = { .sz = sizeof(pro) };
	struct pt_region *w, *s, *n;
	struct pt_replica *follow_src, *src, *rb;
	struct snap sn = { 0 };
	struct pt_jump j;
	char dir[128], wdir[160], sdir[160], ndir[160];
	unsigned char *before;
	uint64_t chain, newer = 0;
	pt_epoch_t e;
	int ret;

	ps = t_page_size();
	t_tmpdir_make(dir, sizeof(dir), "pt-standby-jump");
	snprintf(wdir, sizeof(wdir), "%s/w", dir);
	snprintf(sdir, sizeof(sdir), "%s/s", dir);
	snprintf(ndir, sizeof(ndir), "%s/n", dir);
	if ((ret = pt_region_create(&w, wdir, NPAGES * ps, &wo)))
		DIE("writer: %s", pt_strerror(ret));
	wo.history_id = pt_region_history(w);
	wo.flags = PT_REGION_NO_CHECKPOINT_THREAD;	/* counts below are exact */
	if ((ret = pt_region_create(&s, sdir, NPAGES * ps, &wo)))
		DIE("standby: %s", pt_strerror(ret));
	if ((ret = pt_replica_open(&follow_src, wdir, &dro)))
		DIE("delta replica: %s", pt_strerror(ret));

	/* The standby follows to 30, a replica on it shows 30. */
	write_epochs(w, 30);
	follow(follow_src, s, 30);
	if ((ret = pt_replica_open(&rb, sdir, &pro)) || pt_replica_epoch(rb) != 30)
		DIE("replica on the standby: %s", pt_strerror(ret));
	pt_replica_close(follow_src);

	/* The source goes on to 130 on a quarter of the pages written so far
	 * and drops its log: only its image holds the epochs the standby
	 * lacks. */
	span = NPAGES / 8;
	write_epochs(w, 100);
	span = NPAGES / 2;
	if (pt_region_checkpoint(w) != 130)
		DIE("checkpoint");
	if ((ret = pt_replica_open(&src, wdir, &dro)))
		DIE("delta replica: %s", pt_strerror(ret));
	if (pt_replica_step(src, 0, NULL, NULL) != -ESTALE || pt_replica_jump(src) != 130)
		DIE("the source's log still holds epoch 1, or the jump failed: the test tests nothing");
	if (pt_region_chain(w, &e, &chain) || pt_replica_chain(src, &e, &sn.chain) ||
	    e != 130 || chain != sn.chain)
		DIE("pt_replica_chain after a jump is not the writer's");
	snapshot(src, 30, &sn);
	for (uint64_t p = 0; p < NPAGES; p++)
		newer += sn.v[p].generation > 30;
	if (newer != sn.count || !newer || newer >= NPAGES / 2)
		DIE("%llu pages newer than 30 (%llu given): a test of nothing",
		    (unsigned long long)newer, (unsigned long long)sn.count);

	/* Refusals, each leaving the standby as it was. */
	before = malloc(NPAGES * ps);
	memcpy(before, pt_region_base(s), NPAGES * ps);
	j = jump_of(&sn);
	j.epoch = 30;
	if (pt_region_jump(s, &j) != -EINVAL)
		DIE("a jump to the standby's own epoch accepted");
	j = jump_of(&sn);
	sn.v[sn.pages[0]].checksum ^= 1;
	if (pt_region_jump(s, &j) != -EBADMSG)
		DIE("a given page with another checksum accepted");
	sn.v[sn.pages[0]].checksum ^= 1;
	for (uint64_t p = 0; p < NPAGES; p++)
		if (sn.v[p].generation <= 30 && sn.v[p].generation) {
			sn.v[p].checksum ^= 1;	/* a kept page the source has otherwise */
			if (pt_region_jump(s, &j) != -EBADMSG)
				DIE("a kept page with another checksum accepted");
			sn.v[p].checksum ^= 1;
			break;
		}
	sn.v[0].generation = 131;
	if (pt_region_jump(s, &j) != -EINVAL)
		DIE("a generation above the epoch accepted");
	sn.v[0].generation = 0;
	snapshot(src, 30, &sn);
	j = jump_of(&sn);
	j.sz = offsetof(struct pt_jump, data);
	if (pt_region_jump(s, &j) != -EINVAL)
		DIE("a short struct accepted");
	same("refused jumps change nothing", before, pt_region_base(s), pt_region_epoch(s), 30);
	if (pt_region_epoch(s) != 30 || pt_region_chain(s, &e, &chain) || e != 30)
		DIE("the standby moved");

	/* The jump: only the pages newer than 30 given. */
	j = jump_of(&sn);
	if ((e = pt_region_jump(s, &j)) != 130)
		DIE("jump: %lld (%s)", (long long)e, pt_strerror((int)e));
	if (pt_region_chain(s, &e, &chain) || e != 130 || chain != sn.chain)
		DIE("the standby's chain after the jump is not the source's");
	same("standby after the jump", pt_region_base(s), pt_region_base(w), pt_region_epoch(s),
	     pt_region_epoch(w));

	/* The replica at 30 catches up from the standby's new image with
	 * exactly the pages newer than 30. */
	if ((e = pt_replica_refresh(rb, 0)) != 130)
		DIE("replica on the standby: %lld (%s)", (long long)e, pt_strerror((int)e));
	same("replica on the standby", pt_replica_base(rb), pt_region_base(w), e, 130);
	if (pt_replica_image_pages(rb) != newer)
		DIE("the replica copied %llu pages, %llu are newer than its epoch",
		    (unsigned long long)pt_replica_image_pages(rb), (unsigned long long)newer);
	printf("  %-50s done (%llu of %d)\n", "replica copied only the newer pages",
	       (unsigned long long)newer, NPAGES);

	/* The records after the jump are the source's (apply checks chains). */
	write_epochs(w, 20);
	follow(src, s, 150);
	if ((e = pt_replica_refresh(rb, 0)) != 150)
		DIE("replica after the jump's next records: %lld", (long long)e);
	same("records after the jump", pt_replica_base(rb), pt_region_base(w), e, 150);
	if ((ret = pt_dir_verify(sdir, NULL, NULL)))
		DIE("verify of the standby: %d", ret);
	pt_replica_close(rb);
	if ((ret = pt_region_close(s)) || (ret = pt_region_open(&s, sdir, NULL)))
		DIE("standby reopen: %s", pt_strerror(ret));
	same("standby reopened", pt_region_base(s), pt_region_base(w), pt_region_epoch(s), 150);
	pt_region_close(s);
	if ((ret = pt_dir_verify(sdir, NULL, NULL)))
		DIE("verify of the reopened standby: %d", ret);

	/* A new standby (epoch 0) takes every page ever written. */
	wo.flags = PT_REGION_NO_CHECKPOINT_THREAD;	/* counts below are exact */
	if ((ret = pt_region_create(&n, ndir, NPAGES * ps, &wo)))
		DIE("new standby: %s", pt_strerror(ret));
	snapshot(src, 0, &sn);
	j = jump_of(&sn);
	if ((e = pt_region_jump(n, &j)) != 150)
		DIE("new standby's jump: %lld", (long long)e);
	same("new standby after the jump", pt_region_base(n), pt_region_base(w),
	     pt_region_epoch(n), 150);
	write_epochs(w, 5);
	follow(src, n, 155);
	pt_region_close(n);
	if ((ret = pt_dir_verify(ndir, NULL, NULL)))
		DIE("verify of the new standby: %d", ret);

	pt_replica_close(src);
	pt_region_close(w);
	free(sn.data);
	free(before);
	t_tmpdir_remove(dir);
	printf("done\n");
	return 0;
}
