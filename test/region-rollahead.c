/* region-rollahead: the log thread, idle with every record durable, ends a segment the next record will not fit in and prepares a spare as the next one ahead of time; the roll is then a rename.  Checked: the spare gets the next segment's header and epoch, the next record goes into it; a guess gone wrong (a record that fits after all) overwrites the end marker and the prepared spare stays a spare; a process killed after the roll was prepared reopens at its last epoch; a file renamed over the prepared spare (as a checkpoint retiring a segment of its number does) is not taken for it; replicas, reopen and verify see every epoch. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <xxhash.h>

#include "format.h"
#include "harness.h"

#define NPAGES	64

static char dir[128];
static size_t ps;
/* The spare whose header names segment seq, first epoch first: true when
 * one is there. */
static bool spare_named(uint64_t seq, uint64_t first, char *name, size_t len)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	bool found = false;

	while (d && !found && (de = readdir(d))) {
		struct pt_segment_header h;
		char p[512];
		int fd;

		if (strncmp(de->d_name, "spare-", 6))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
		    !memcmp(h.magic, PT_SEGMENT_MAGIC, 8) && h.seq == seq && h.first_epoch == first) {
			found = true;
			snprintf(name, len, "%s", de->d_name);
		}
		if (fd >= 0)
			close(fd);
	}
	if (d)
		closedir(d);
	return found;
}

static bool spare_prepared(uint64_t seq, uint64_t first)
{
	char name[256];

	return spare_named(seq, first, name, sizeof(name));
}

/* The highest segment's seq (from its name), 0 if none. */
static uint64_t last_segment(void)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	uint64_t last = 0, seq;

	while (d && (de = readdir(d)))
		if (sscanf(de->d_name, "log-%16" SCNx64 ".seg", &seq) == 1 && seq > last)
			last = seq;
	if (d)
		closedir(d);
	return last;
}

/* Segment seq's header names seq and first epoch first. */
static bool segment_header_is(uint64_t seq, uint64_t first)
{
	struct pt_segment_header h;
	char p[512];
	int fd;
	bool ok;

	snprintf(p, sizeof(p), "%s/log-%016" PRIx64 ".seg", dir, seq);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	ok = fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	     !memcmp(h.magic, PT_SEGMENT_MAGIC, 8) && h.seq == seq && h.first_epoch == first;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* Wait (at most 5 s) for the spare of segment seq at epoch first. */
static bool wait_prepared(uint64_t seq, uint64_t first)
{
	for (int i = 0; i < 500; i++) {
		if (spare_prepared(seq, first))
			return true;
		usleep(10000);
	}
	return false;
}

static void write_pages(struct pt_region *r, int n, int value)
{
	for (int i = 0; i < n; i++)
		memset((char *)pt_region_base(r) + (size_t)i * ps, value, ps);
}

int main(void)
{
	/* A record of 4 pages: a page of head and 4 of pages, 20 KiB.  Two
	 * fit in a segment of 52 KiB after its header page; a third does
	 * not, a record of 1 page (8 KiB) does. */
	struct pt_region_opts o = { .sz = sizeof(o), .segment_bytes = 52 << 10, .retain_bytes = 1,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .durability = PT_DURABLE_ON_SYNC };
	struct pt_replica *rep;
	struct pt_region *r;
	uint64_t seq, hash, rest;
	int64_t e = 0;
	int ret;
	pid_t pid;

	ps = t_page_size();
	if (ps != 4096) {
		printf("skip: the sizes here are for 4 KiB pages\n");
		return T_SKIP;
	}
	printf("region-rollahead: the next segment prepared while the log thread is idle\n");
	t_tmpdir_make(dir, sizeof(dir), "pt-rollahead");
	ret = pt_region_create(&r, dir, NPAGES * ps, &o);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret)
		DIE("replica: %s", pt_strerror(ret));

	/* Spares to recycle: fill segments, checkpoint them away. */
	for (int i = 1; i <= 12; i++) {
		write_pages(r, 4, i);
		e = pt_region_sync(r);
		if (e != i)
			DIE("sync %d: %lld", i, (long long)e);
		if (i % 4 == 0 && pt_region_checkpoint(r) != i)
			DIE("checkpoint at %d", i);
	}
	/* Epoch 13 starts a segment; 14 fills it: the next will not fit. */
	write_pages(r, 4, 13);
	e = pt_region_sync(r);
	seq = last_segment();
	write_pages(r, 4, 14);
	e = pt_region_sync(r);
	t_cell("two records in a segment", e == 14 && last_segment() == seq);
	t_cell("idle: a spare prepared as the next segment, for epoch 15",
	     wait_prepared(seq + 1, 15));
	write_pages(r, 4, 15);
	e = pt_region_sync(r);
	t_cell("epoch 15 in that segment, renamed", e == 15 && last_segment() == seq + 1 &&
	     !spare_prepared(seq + 1, 15));

	/* A wrong guess: 16 fills the segment, then a record of one page
	 * fits after all, over the end marker.  (The checkpoint makes
	 * spares again.) */
	if (pt_region_checkpoint(r) != 15)
		DIE("checkpoint at 15");
	write_pages(r, 4, 16);
	e = pt_region_sync(r);
	t_cell("epoch 16, the segment full for a record as long", e == 16 &&
	     last_segment() == seq + 1 && wait_prepared(seq + 2, 17));
	write_pages(r, 1, 17);
	e = pt_region_sync(r);
	t_cell("a shorter epoch 17 fits: written over the end marker", e == 17 &&
	     last_segment() == seq + 1);
	/* The log thread, idle again, may already have prepared it anew for
	 * epoch 18 (the segment is still too full for a 4-page record). */
	t_cell("the prepared spare is left a spare", spare_prepared(seq + 2, 17) ||
	     spare_prepared(seq + 2, 18));
	write_pages(r, 4, 18);
	e = pt_region_sync(r);
	t_cell("epoch 18 rolls to segment seq + 2 all the same", e == 18 &&
	     last_segment() == seq + 2);
	hash = XXH3_64bits(pt_region_base(r), NPAGES * ps);
	rest = XXH3_64bits((char *)pt_region_base(r) + 4 * ps, (NPAGES - 4) * ps);
	e = pt_replica_refresh(rep, 0);
	t_cell("a replica open from the start comes to 18, same content",
	     e == 18 && XXH3_64bits(pt_replica_base(rep), NPAGES * ps) == hash);
	pt_replica_close(rep);
	ret = pt_region_close(r);
	if (ret)
		DIE("close: %s", pt_strerror(ret));

	/* Killed with the roll prepared: reopened at its last epoch. */
	pid = fork();
	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (!pid) {
		if (pt_region_open(&r, dir, &o) || pt_region_checkpoint(r) != 18)
			_exit(2);
		for (int i = 19; i <= 20; i++) {
			write_pages(r, 4, i);
			if (pt_region_sync(r) != i)
				_exit(3);
		}
		if (!wait_prepared(last_segment() + 1, 21))
			_exit(4);
		kill(getpid(), SIGKILL);
	}
	t_cell("a child killed with the roll prepared", t_wait_killed(pid));
	ret = pt_region_open(&r, dir, &o);
	t_cell("reopened at epoch 20, its content", !ret && pt_region_epoch(r) == 20 &&
	     ((char *)pt_region_base(r))[3 * ps] == 20 &&
	     XXH3_64bits((char *)pt_region_base(r) + 4 * ps, (NPAGES - 4) * ps) == rest);
	if (!ret) {
		char name[256], from[512], to[768];
		bool swapped = false;
		int64_t last = 0;

		write_pages(r, 4, 21);
		e = pt_region_sync(r);
		t_cell("and goes on: epoch 21", e == 21);
		/* Another file renamed over the prepared spare, as a
		 * checkpoint retiring a segment of its number would: the roll
		 * must not take it. */
		if (pt_region_checkpoint(r) != 21)
			DIE("checkpoint at 21");
		for (int i = 22; i < 26 && !swapped; i++) {
			write_pages(r, 4, i);
			last = pt_region_sync(r);
			seq = last_segment();
			if (last == i && wait_prepared(seq + 1, (uint64_t)i + 1) &&
			    spare_named(seq + 1, (uint64_t)i + 1, name, sizeof(name))) {
				int fd;

				snprintf(from, sizeof(from), "%s/stranger", dir);
				snprintf(to, sizeof(to), "%s/%s", dir, name);
				fd = open(from, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
				if (fd < 0 || write(fd, "not a segment", 13) != 13 || close(fd) ||
				    rename(from, to))
					DIE("the stranger file: %s", strerror(errno));
				swapped = true;
			}
		}
		write_pages(r, 4, 26);
		e = pt_region_sync(r);
		t_cell("a file put over the prepared spare: the roll gives it a header", swapped &&
		     e == last + 1 && last_segment() == seq + 1 &&
		     segment_header_is(seq + 1, (uint64_t)e));
		hash = XXH3_64bits(pt_region_base(r), NPAGES * ps);
		ret = pt_region_close(r);
		ret = ret ? ret : pt_replica_open(&rep, dir, NULL);
		t_cell("a new replica at the last epoch, same content", !ret &&
		     pt_replica_epoch(rep) == e && XXH3_64bits(pt_replica_base(rep), NPAGES * ps) == hash);
		if (!ret)
			pt_replica_close(rep);
	}
	t_cell("verify finds no problem", t_verify(dir) == 0);
	t_tmpdir_remove(dir);
	printf("%s\n", t_failures ? "FAIL" : "PASS");
	return t_failures ? T_FAIL : 0;
}
