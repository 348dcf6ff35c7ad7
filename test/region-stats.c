/* region-stats: pt_region_stats reports each sync's pages, bytes and pause, and the totals; pt_replica_size the copy's size. */
#include "harness.h"

#define NPAGES 64

int main(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_sync_stats last = { .sz = sizeof(last) };
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_replica *rep;
	struct pt_region *r;
	char dir[128];
	int ret;

	t_tmpdir_make(dir, sizeof(dir), "pt-stats");
	ret = pt_region_create(&r, dir, size, &o);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	if (pt_region_stats(r, &last, &tot) || last.epoch || tot.syncs)
		DIE("stats before any sync: epoch %llu, syncs %llu", (unsigned long long)last.epoch,
		    (unsigned long long)tot.syncs);
	for (int i = 0; i < 5; i++)
		((char *)pt_region_base(r))[(size_t)(i * 7) * ps] = 1;
	if (pt_region_sync(r) != 1)
		DIE("sync");
	if (pt_region_stats(r, &last, &tot))
		DIE("stats");
	printf("sync 1: %llu pages, %llu bytes, stall %llu ns (collect %llu ns)\n",
	       (unsigned long long)last.pages, (unsigned long long)last.bytes,
	       (unsigned long long)last.stall_ns, (unsigned long long)last.collect_ns);
	if (last.epoch != 1 || last.pages != 5 || last.bytes != ps + 5 * ps || !last.stall_ns ||
	    last.collect_ns > last.stall_ns)
		DIE("sync 1 figures wrong");
	if (tot.syncs != 1 || tot.pages != 5 || tot.published != 1 || tot.durable != 1 ||
	    tot.stall_ns_max != last.stall_ns)
		DIE("totals wrong after sync 1");
	/* No page written: the same epoch again, and no sync counted. */
	if (pt_region_sync(r) != 1 || pt_region_stats(r, &last, &tot) || tot.syncs != 1)
		DIE("an empty sync counted");
	((char *)pt_region_base(r))[3 * ps] = 2;
	if (pt_region_sync(r) != 2 || pt_region_stats(r, &last, &tot))
		DIE("sync 2");
	if (last.epoch != 2 || last.pages != 1 || tot.syncs != 2 || tot.pages != 6)
		DIE("sync 2 figures wrong");
	if (pt_region_checkpoint(r) != 2 || pt_region_stats(r, NULL, &tot) || tot.checkpoints != 1 ||
	    tot.checkpointed != 2)
		DIE("checkpoint not counted");
	/* A newer caller's larger struct: what the library knows is filled,
	 * the rest left alone; a smaller one is a mistake. */
	{
		struct { struct pt_sync_stats s; uint64_t guard; } newer = {
			.s = { .sz = sizeof(newer) }, .guard = 7 };

		if (pt_region_stats(r, &newer.s, NULL) || newer.s.epoch != 2 || newer.guard != 7 ||
		    newer.s.sz != sizeof(newer))
			DIE("larger struct");
		newer.s.sz = 8;
		if (pt_region_stats(r, &newer.s, NULL) != -EINVAL)
			DIE("a struct too short for its fields accepted");
	}
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret || pt_replica_size(rep) != size)
		DIE("replica size: %d", ret);
	pt_replica_close(rep);
	pt_region_close(r);
	t_tmpdir_remove(dir);
	printf("done\n");
	return 0;
}
