/* region-standby: a delta replica hands out each record; a standby region of the same history reproduces every record byte for byte (same chain); PT_LEVEL_REPLICATED follows the replicated file, which records a promoted writer's term. */
/*
 * This is the network layer's path without the network: the source's
 * records come out of pt_replica_step() (with the copy still at the epoch
 * before, for XOR encodings), the standby writes their pages and syncs,
 * and its record of each epoch must have the same header checksum as the
 * source's.  Epoch 1 is empty on purpose: the one epoch a sync makes with
 * no page.
 */
#include <pthread.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES	128
#define EPOCHS	60

struct follow {
	struct pt_region *standby;
	uint64_t last_epoch;
	uint64_t xor_nonzero;	/* pages whose content changed from the copy's */
	bool failed;
};

static int apply(const struct pt_delta *d, const void *base, void *arg)
{
	struct follow *f = arg;
	unsigned char *dst = pt_region_base(f->standby);
	pt_epoch_t epoch = 0, e;
	uint64_t chain = 0;

	for (uint32_t i = 0; i < d->page_count; i++) {
		const unsigned char *old = (const unsigned char *)base + d->pages[i] * d->page_size;

		if (memcmp(old, d->data + (size_t)i * d->page_size, d->page_size))
			f->xor_nonzero++;
		memcpy(dst + d->pages[i] * d->page_size, d->data + (size_t)i * d->page_size,
		       d->page_size);
	}
	e = pt_region_sync(f->standby);
	if (e != d->epoch || pt_region_chain(f->standby, &epoch, &chain) ||
	    epoch != d->epoch || chain != d->chain) {
		printf("    epoch %llu: standby made %lld, chain %016llx, source %016llx\n",
		       (unsigned long long)d->epoch, (long long)e, (unsigned long long)chain,
		       (unsigned long long)d->chain);
		f->failed = true;
		return -EIO;
	}
	f->last_epoch = d->epoch;
	return 0;
}

int main(void)
{
	struct pt_region_opts so = { .sz = sizeof(so), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };
	size_t ps = t_page_size(), size = NPAGES * ps;
	char src_dir[128], dst_dir[128];
	struct pt_replicated *rep;
	struct pt_replica *delta;
	struct pt_region *src;
	struct follow f = { 0 };
	uint64_t seed = 7;
	int64_t e;
	int ret;

	t_tmpdir_make(src_dir, sizeof(src_dir), "pt-standby-src");
	t_tmpdir_make(dst_dir, sizeof(dst_dir), "pt-standby-dst");
	ret = pt_region_create(&src, src_dir, size, &so);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	if (pt_region_sync(src) != 1)		/* empty */
		DIE("sync 1");
	for (int ep = 2; ep <= EPOCHS; ep++) {
		for (int k = 0; k < 1 + (int)(t_rnd_next(&seed) % 6); k++) {
			uint64_t p = t_rnd_next(&seed) % NPAGES;

			((uint64_t *)((char *)pt_region_base(src) + p * ps))[t_rnd_next(&seed) % 64] =
				t_rnd_next(&seed);
		}
		if (pt_region_sync(src) != ep)
			DIE("sync %d", ep);
		if (ep == EPOCHS / 2 && pt_region_checkpoint(src) != ep)
			DIE("checkpoint");
	}

	ret = pt_replica_open(&delta, src_dir, &ro);
	if (ret || pt_replica_epoch(delta) != 0)
		DIE("delta replica: %s", pt_strerror(ret));
	if (pt_replica_refresh(delta, 0) != -EINVAL)
		DIE("a delta replica refreshed");
	/* The standby is of the source's history. */
	{
		struct pt_dir_status ds = { .sz = sizeof(ds) };

		ret = pt_dir_status(src_dir, &ds, NULL, NULL);
		if (ret)
			DIE("dir status: %s", pt_strerror(ret));
		so.history_id = ds.history_id;
	}
	ret = pt_region_create(&f.standby, dst_dir, size, &so);
	if (ret)
		DIE("standby: %s", pt_strerror(ret));
	while ((e = pt_replica_step(delta, 0, apply, &f)) > 0)
		;
	if (e < 0 || f.failed || f.last_epoch != EPOCHS)
		DIE("standby stopped at %llu: %lld (%s)", (unsigned long long)f.last_epoch,
		    (long long)e, e < 0 ? pt_strerror((int)e) : "");
	if (memcmp(pt_region_base(f.standby), pt_region_base(src), size) ||
	    memcmp(pt_replica_base(delta), pt_region_base(src), size))
		DIE("standby or delta copy differs from the source");
	printf("standby reproduced %d records, %llu pages changed content\n", EPOCHS,
	       (unsigned long long)f.xor_nonzero);
	/* Nothing more: a step waits, then says so. */
	if (pt_replica_step(delta, 50, apply, &f) != 0)
		DIE("a step with nothing new");

	/* PT_LEVEL_REPLICATED follows what a publisher reports. */
	if (pt_region_wait(src, 3, PT_LEVEL_REPLICATED, 20) != -ETIMEDOUT)
		DIE("replicated before any report");
	if (pt_dir_replicated(src_dir, NULL, NULL, NULL) != -ENOENT)
		DIE("a replicated file before any publisher");
	ret = pt_replicated_open(&rep, src_dir);
	if (ret)
		DIE("replicated file: %s", pt_strerror(ret));
	pt_replicated_set(rep, 5);
	pt_replicated_set(rep, 4);	/* never backwards */
	if (pt_replicated_get(rep, NULL) != 5 || pt_region_wait(src, 5, PT_LEVEL_REPLICATED, 1000) ||
	    pt_region_wait(src, 6, PT_LEVEL_REPLICATED, 20) != -ETIMEDOUT)
		DIE("replicated level");
	if (pt_region_wait(src, EPOCHS + 1, PT_LEVEL_REPLICATED, 0) != -EINVAL)
		DIE("an epoch not synced yet");
	pt_replicated_depose(rep);
	if (pt_region_wait(src, 6, PT_LEVEL_REPLICATED, 1000) != -EOWNERDEAD)
		DIE("deposed not reported");
	{
		pt_epoch_t re = 0;
		int32_t pid = 0;
		int dep = 0;

		if (pt_dir_replicated(src_dir, &re, &dep, &pid) || re != 5 || !dep || pid != getpid())
			DIE("pt_dir_replicated: epoch %llu, deposed %d, pid %d",
			    (unsigned long long)re, dep, (int)pid);
	}
	/* A term: only forward, and a new one clears the deposed mark. */
	{
		uint64_t term = 1, holder = 1;

		if (pt_replicated_get_term(rep, &term, &holder) || term || holder)
			DIE("a region never promoted has term %llu holder %llx",
			    (unsigned long long)term, (unsigned long long)holder);
		if (pt_replicated_set_term(rep, 0, 7) != -EINVAL)
			DIE("term 0 recorded");
		if ((ret = pt_replicated_set_term(rep, 3, 0xabc)))
			DIE("set_term: %s", pt_strerror(ret));
		if (pt_replicated_set_term(rep, 3, 0xdef) != -EINVAL ||
		    pt_replicated_set_term(rep, 2, 0xdef) != -EINVAL)
			DIE("a term not above the recorded one was taken");
		if (pt_replicated_get_term(rep, &term, &holder) || term != 3 || holder != 0xabc)
			DIE("term %llu holder %llx, want 3 abc", (unsigned long long)term,
			    (unsigned long long)holder);
		if (pt_region_wait(src, 6, PT_LEVEL_REPLICATED, 20) != -ETIMEDOUT)
			DIE("still deposed after a new term");
	}
	pt_replicated_close(rep);
	/* Recorded in the file: a new handle reads it. */
	if ((ret = pt_replicated_open(&rep, src_dir)))
		DIE("replicated file again: %s", pt_strerror(ret));
	{
		uint64_t term = 0, holder = 0;

		if (pt_replicated_get_term(rep, &term, &holder) || term != 3 || holder != 0xabc)
			DIE("reopened: term %llu holder %llx", (unsigned long long)term,
			    (unsigned long long)holder);
	}
	pt_replicated_close(rep);

	pt_replica_close(delta);
	pt_region_close(f.standby);
	pt_region_close(src);
	t_tmpdir_remove(src_dir);
	t_tmpdir_remove(dst_dir);
	printf("done\n");
	return 0;
}
