/* region-stats: pt_region_stats reports each sync's pages, bytes and pause, the totals and the tracker's figures (plain, adaptive, chunk guard); pt_replica_size the copy's size. */
#include "harness.h"

#define NPAGES 64

/* The first version of struct pt_region_stats ends at last_error. */
#define REGION_STATS_V1 (offsetof(struct pt_region_stats, last_error) + sizeof(int))

/*
 * An adaptive region: page 3 written at every sync turns hot (when a fault
 * costs enough here), and every page copied is one the tracker saw written
 * or one it reported because hot.
 */
static void adaptive_region(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD |
					PT_REGION_ADAPTIVE };
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	size_t ps = t_page_size();
	struct pt_region *r;
	char dir[128], why[256];
	int ret;

	if (!t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		printf("adaptive region: not here (%s)\n", why);
		return;
	}
	o.backend = PT_BACKEND_UFFD_WP;
	t_tmpdir_make(dir, sizeof(dir), "pt-stats-adaptive");
	ret = pt_region_create(&r, dir, NPAGES * ps, &o);
	if (ret)
		DIE("create adaptive: %s", pt_strerror(ret));
	for (int i = 0; i < 12; i++) {
		((char *)pt_region_base(r))[3 * ps + (size_t)i] = (char)(i + 1);
		((char *)pt_region_base(r))[(size_t)(10 + i) * ps] = 1;
		if (pt_region_sync(r) != i + 1)
			DIE("adaptive sync %d", i + 1);
	}
	if (pt_region_stats(r, NULL, &tot))
		DIE("adaptive stats");
	printf("adaptive region: %llu pages copied: %llu the tracker saw written, %llu hot "
	       "(%llu hot now), fault %llu ns\n", (unsigned long long)tot.pages,
	       (unsigned long long)tot.faulted, (unsigned long long)tot.hot_reports,
	       (unsigned long long)tot.hot_pages, (unsigned long long)tot.fault_ns);
	if (tot.adaptive != 1 || !tot.fault_ns || tot.pages != tot.faulted + tot.hot_reports ||
	    tot.pages < 24 || tot.faults_avoided + tot.reported_unwritten != tot.hot_reports)
		DIE("adaptive region figures wrong");
	pt_region_close(r);
	t_tmpdir_remove(dir);
}

/*
 * A region with the chunk guard: 8 MiB, writes in chunks 0 and 3 only,
 * so each sync scans those two of the four; the same with adaptive
 * tracking too.
 */
static void chunks_region(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD |
					PT_REGION_CHUNKS | PT_REGION_ADAPTIVE };
	struct pt_region_stats tot = { .sz = sizeof(tot) };
	size_t ps = t_page_size(), size = 8ul << 20;
	struct pt_region *r;
	char dir[128], why[256];
	int ret;

	if (!t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		printf("chunks region: not here (%s)\n", why);
		return;
	}
	o.backend = PT_BACKEND_UFFD_WP;
	t_tmpdir_make(dir, sizeof(dir), "pt-stats-chunks");
	for (int k = 0; k < 2; k++) {
		if (k)
			o.flags &= ~PT_REGION_ADAPTIVE;
		ret = pt_region_create(&r, dir, size, &o);
		if (ret)
			DIE("create chunks%s: %s", k ? "" : " with adaptive", pt_strerror(ret));
		for (int i = 0; i < 4; i++) {
			((char *)pt_region_base(r))[(size_t)i * ps] = (char)(i + 1);
			((char *)pt_region_base(r))[(3ul << 20) + (size_t)i * ps] = (char)(i + 1);
			if (pt_region_sync(r) != i + 1)
				DIE("chunks sync %d", i + 1);
		}
		if (pt_region_stats(r, NULL, &tot))
			DIE("chunks stats");
		printf("chunks region%s: %llu pages copied, %llu chunks scanned of %llu a sync\n",
		       k ? "" : " with adaptive", (unsigned long long)tot.pages,
		       (unsigned long long)tot.chunks_scanned, (unsigned long long)tot.chunks_total);
		/* Adaptive: pages written at every sync may turn hot, and hot
		 * pages are reported whether written or not: at least 8. */
		if (tot.chunks != 1 || tot.chunks_total != 4 || tot.chunks_scanned != 8 ||
		    (k ? tot.pages != 8 : tot.pages < 8) || tot.adaptive != !k)
			DIE("chunks region figures wrong");
		pt_region_close(r);
		t_tmpdir_remove(dir);
	}
}

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
	/* The tracker's figures: plain tracking, every page copied was seen
	 * written. */
	if (tot.adaptive || tot.faulted != 6 || tot.hot_pages || tot.hot_reports)
		DIE("tracker figures wrong: adaptive %d, %llu faulted, %llu hot", tot.adaptive,
		    (unsigned long long)tot.faulted, (unsigned long long)tot.hot_pages);
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
	/* An older caller's struct, of the first version: the tracker's
	 * fields after it are not written. */
	{
		union { struct pt_region_stats s; unsigned char b[sizeof(struct pt_region_stats)]; } older;

		memset(&older, 0xa5, sizeof(older));
		older.s.sz = REGION_STATS_V1;
		if (pt_region_stats(r, NULL, &older.s) || older.s.syncs != 2)
			DIE("first version's struct");
		for (size_t i = REGION_STATS_V1; i < sizeof(older); i++)
			if (older.b[i] != 0xa5)
				DIE("byte %zu beyond the first version's struct written", i);
	}
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret || pt_replica_size(rep) != size)
		DIE("replica size: %d", ret);
	pt_replica_close(rep);
	pt_region_close(r);
	t_tmpdir_remove(dir);
	adaptive_region();
	chunks_region();
	printf("done\n");
	return 0;
}
