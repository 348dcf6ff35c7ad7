/* region-jump: a delta replica jumps to the image over records a checkpoint dropped; pt_delta_chain proves a delta's record before it is written; pt_dir_epoch and pt_region_history. */
#include <xxhash.h>

#include "harness.h"

#define NPAGES	64

static int check_chain(const struct pt_delta *d, const void *base, void *arg)
{
	uint64_t payload, chain;
	struct pt_delta forged = *d;
	unsigned char *copy;
	int *checked = arg;

	(void)base;
	if (pt_delta_chain(d, &payload, &chain) || payload != d->payload_checksum || chain != d->chain) {
		printf("    epoch %llu: computed chain %016llx, record's %016llx\n",
		       (unsigned long long)d->epoch, (unsigned long long)chain,
		       (unsigned long long)d->chain);
		return -EIO;
	}
	/* One byte of one page changed: another record, another chain. */
	if (d->page_count) {
		copy = malloc((size_t)d->page_count * d->page_size);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, d->data, (size_t)d->page_count * d->page_size);
		copy[d->page_size / 2] ^= 1;
		forged.data = copy;
		pt_delta_chain(&forged, &payload, &chain);
		free(copy);
		if (chain == d->chain)
			return -EIO;
	}
	(*checked)++;
	return 0;
}

int main(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .segment_bytes = 4 * 4096, .retain_bytes = 1,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_replica *delta;
	struct pt_region *r;
	char dir[128];
	uint64_t seed = 3, hash_at_ckpt = 0;
	int ret, checked = 0;
	int64_t e;

	t_tmpdir_make(dir, sizeof(dir), "pt-jump");
	ret = pt_region_create(&r, dir, size, &o);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	if (!pt_region_history(r) || pt_region_history(NULL))
		DIE("pt_region_history");
	ret = pt_replica_open(&delta, dir, &ro);
	if (ret)
		DIE("delta replica: %s", pt_strerror(ret));
	for (int ep = 1; ep <= 40; ep++) {
		for (int k = 0; k < 3; k++)
			memset((char *)pt_region_base(r) + (t_rnd_next(&seed) % NPAGES) * ps,
			       (int)t_rnd_next(&seed), ps);
		if (pt_region_sync(r) != ep)
			DIE("sync %d", ep);
	}
	if (pt_dir_epoch(dir) != 40)
		DIE("pt_dir_epoch: %lld", (long long)pt_dir_epoch(dir));
	/* Every record's chain is what pt_delta_chain computes. */
	while ((e = pt_replica_step(delta, 0, check_chain, &checked)) > 0 && e < 10)
		;
	if (e != 10 || checked != 10)
		DIE("stepping with chain checks: %lld, %d checked", (long long)e, checked);
	/* Now a checkpoint drops the segments that hold epochs 11..; the
	 * delta replica can no longer step, and jumps to the image. */
	if (pt_region_checkpoint(r) != 40)
		DIE("checkpoint");
	hash_at_ckpt = XXH3_64bits(pt_region_base(r), size);
	for (int ep = 41; ep <= 45; ep++) {
		((char *)pt_region_base(r))[(size_t)ep * 8] = (char)ep;
		if (pt_region_sync(r) != ep)
			DIE("sync %d", ep);
	}
	e = pt_replica_step(delta, 0, check_chain, &checked);
	if (e != -ESTALE)
		DIE("a step over dropped records: %lld, want -ESTALE", (long long)e);
	e = pt_replica_jump(delta);
	if (e != 40 || XXH3_64bits(pt_replica_base(delta), size) != hash_at_ckpt)
		DIE("jump: %lld (%s)", (long long)e, e < 0 ? pt_strerror((int)e) : "content differs");
	while ((e = pt_replica_step(delta, 0, check_chain, &checked)) > 0 && e < 45)
		;
	if (e != 45 || memcmp(pt_replica_base(delta), pt_region_base(r), size))
		DIE("after the jump: %lld", (long long)e);
	if (pt_replica_jump(delta) != -EILSEQ)
		DIE("a jump back to an older image");
	printf("%d records proved by pt_delta_chain; jumped from epoch 10 to the image at 40\n",
	       checked);
	pt_replica_close(delta);
	pt_region_close(r);
	t_tmpdir_remove(dir);
	printf("done\n");
	return 0;
}
