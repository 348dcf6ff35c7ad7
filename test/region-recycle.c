/* region-recycle: dropped log segments are kept as spares and recycled; their old records never read as new ones, by recovery, a lagging replica or verify. */
/*
 * Small segments and no retained log make every checkpoint drop segments;
 * two are kept as spare files and the log thread recycles them, so most
 * segments here are files that still hold an older segment's records
 * behind the new ones.  Those records are whole and checksummed, of the
 * same history: only their epochs (older than the segment's first) tell
 * them apart.  After many epochs the region must reopen at its last epoch
 * with its content, a replica opened early and refreshed late must catch
 * up (from the image: the segments it was reading were recycled under it)
 * to the same content, and verify must find no problem.
 */
#include <dirent.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES	64
#define EPOCHS	300

static char dir[128];

static int count_files(const char *prefix)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	while (d && (de = readdir(d)))
		n += !strncmp(de->d_name, prefix, strlen(prefix));
	if (d)
		closedir(d);
	return n;
}

int main(void)
{
	struct pt_region_opts o = { .sz = sizeof(o), .segment_bytes = 6 * 4096, .retain_bytes = 1,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .durability = PT_DURABLE_ON_SYNC };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_replica *early, *late;
	struct pt_region *r;
	uint64_t seed = 11, hash;
	int ret, spares_seen = 0;
	int64_t e;

	t_tmpdir_make(dir, sizeof(dir), "pt-recycle");
	ret = pt_region_create(&r, dir, size, &o);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	if (pt_region_sync(r) != 1)
		DIE("sync 1");
	ret = pt_replica_open(&early, dir, NULL);
	if (ret)
		DIE("early replica: %s", pt_strerror(ret));
	for (int ep = 2; ep <= EPOCHS; ep++) {
		for (int k = 0; k < 1 + (int)(t_rnd_next(&seed) % 3); k++) {
			uint64_t p = t_rnd_next(&seed) % NPAGES;

			memset((char *)pt_region_base(r) + p * ps, (int)(t_rnd_next(&seed) | 1), ps);
		}
		if (pt_region_sync(r) != ep)
			DIE("sync %d", ep);
		if (ep % 7 == 0) {
			if (pt_region_checkpoint(r) != ep)
				DIE("checkpoint at %d", ep);
			spares_seen += count_files("spare-") > 0;
		}
	}
	hash = XXH3_64bits(pt_region_base(r), size);
	printf("%d segments and %d spares at the end; spares seen after %d of %d checkpoints\n",
	       count_files("log-"), count_files("spare-"), spares_seen, EPOCHS / 7);
	if (!spares_seen)
		DIE("no segment was kept as a spare: nothing was recycled");

	/* A replica that stood still while its segments were recycled. */
	e = pt_replica_refresh(early, 0);
	if (e != EPOCHS || XXH3_64bits(pt_replica_base(early), size) != hash)
		DIE("the early replica came to %lld (%s)", (long long)e,
		    e < 0 ? pt_strerror((int)e) : "content differs");
	pt_replica_close(early);
	ret = pt_replica_open(&late, dir, NULL);
	if (ret || pt_replica_epoch(late) != EPOCHS ||
	    XXH3_64bits(pt_replica_base(late), size) != hash)
		DIE("a new replica: %d", ret);
	pt_replica_close(late);

	ret = pt_region_close(r);
	if (ret)
		DIE("close: %s", pt_strerror(ret));
	ret = t_verify(dir);
	if (ret)
		DIE("verify: %d", ret);
	ret = pt_region_open(&r, dir, &o);
	if (ret || pt_region_epoch(r) != EPOCHS || XXH3_64bits(pt_region_base(r), size) != hash)
		DIE("reopen: %d, epoch %lld", ret, ret ? -1ll : (long long)pt_region_epoch(r));
	/* And it goes on writing into recycled segments after recovery. */
	for (int ep = EPOCHS + 1; ep <= EPOCHS + 40; ep++) {
		((char *)pt_region_base(r))[(size_t)(ep % NPAGES) * ps] = (char)ep;
		if (pt_region_sync(r) != ep)
			DIE("sync %d after reopen", ep);
		if (ep % 5 == 0 && pt_region_checkpoint(r) != ep)
			DIE("checkpoint %d after reopen", ep);
	}
	hash = XXH3_64bits(pt_region_base(r), size);
	pt_region_close(r);
	ret = pt_region_open(&r, dir, &o);
	if (ret || pt_region_epoch(r) != EPOCHS + 40 ||
	    XXH3_64bits(pt_region_base(r), size) != hash)
		DIE("second reopen: %d", ret);
	pt_region_close(r);
	t_tmpdir_remove(dir);
	printf("done\n");
	return 0;
}
