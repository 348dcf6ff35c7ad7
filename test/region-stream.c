/* region-stream: a durable-on-sync caller that finds the log thread idle has it write the record's pages while it copies them into staging memory, and the head last.  The library's threads are pinned to another CPU than the caller's, so that they run beside it (a scheduler may leave a woken thread queued behind the caller).  Checked: page runs written in order, then the head at the record's start; the log's content through a replica; a failed page run makes the sync write the record whole into a new segment; a process killed between a page run and the head, in a recycled segment, reopens at the epoch before, and verify finds nothing wrong. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <xxhash.h>

#include "format.h"
#include "harness.h"
#include "io.h"

#define NPAGES		4096
#define RECORD_PAGES	1024
#define MAX_WRITES	4096

static char dir[128];
static size_t ps;

/* What the hooked pwrite saw: every write of whole pages into a segment. */
struct write_seen {
	off_t off;
	size_t len;
};
static struct write_seen seen[MAX_WRITES];
static unsigned nseen;
static int fail_run = -1;	/* the page run to fail with EIO (count from 0) */
static int kill_run = -1;	/* the page run after which the process dies */
static int runs;
static int fired;		/* the failure was injected */

/* The length of a record's head (header, index, sums) at RECORD_PAGES. */
static size_t head_len(void)
{
	return (size_t)pt_record_head_length(RECORD_PAGES, ps);
}

/* Writes into log segments are recorded; a page run (whole pages, more
 * than one, neither a head nor a whole record; a single page is an end
 * marker or a segment's header) may be failed or followed by SIGKILL. */
static ssize_t hooked_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	char link[64], target[512];
	ssize_t tl;
	unsigned i;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	tl = readlink(link, target, sizeof(target) - 1);
	target[tl > 0 ? tl : 0] = 0;
	if (!strstr(target, "/log-"))
		return pt_io_system.pwrite(fd, buf, len, off);
	if (len % ps == 0 && len > ps && len != head_len() &&
	    len < (size_t)pt_record_length(RECORD_PAGES, ps)) {
		int run = __atomic_fetch_add(&runs, 1, __ATOMIC_SEQ_CST);

		if (run == __atomic_load_n(&fail_run, __ATOMIC_SEQ_CST)) {
			__atomic_store_n(&fired, 1, __ATOMIC_SEQ_CST);
			return -EIO;
		}
		if (run == __atomic_load_n(&kill_run, __ATOMIC_SEQ_CST)) {
			ssize_t n = pt_io_system.pwrite(fd, buf, len, off);

			(void)n;
			kill(getpid(), SIGKILL);
		}
	}
	i = __atomic_fetch_add(&nseen, 1, __ATOMIC_SEQ_CST);
	if (i < MAX_WRITES)
		seen[i] = (struct write_seen){ off, len };
	return pt_io_system.pwrite(fd, buf, len, off);
}

static cpu_set_t avail;	/* the CPUs this test may run on, read at its start */

/* The region's own threads on CPU a, the caller on CPU b (two of the
 * CPUs this test may use).  False when that fails. */
static bool pin_threads(struct pt_region *r)
{
	cpu_set_t mine;
	int a, b;

	if (!t_two_cpus(&avail, &a, &b) || !t_place_region_threads(r, a))
		return false;
	CPU_ZERO(&mine);
	CPU_SET(b, &mine);
	return !sched_setaffinity(0, sizeof(mine), &mine);
}

static void write_pages(struct pt_region *r, int value)
{
	/* RECORD_PAGES pages, every fourth page of the region from an
	 * offset that moves with the value: records of runs of one page. */
	for (int i = 0; i < RECORD_PAGES; i++)
		memset((char *)pt_region_base(r) + ((size_t)(i * 4 + value % 4) % NPAGES) * ps,
		       value, ps);
}

/*
 * The writes of the last sync, seen[from..nseen), leaving out single pages
 * (segment headers, end markers): 1 if they are runs of its pages at
 * increasing offsets, covering its pages exactly, then its head at the
 * record's start; 0 if they are the whole record in one write (the log
 * thread came to it once it was sealed); -1 for anything else.
 */
static int streamed_since(unsigned from)
{
	unsigned n = __atomic_load_n(&nseen, __ATOMIC_SEQ_CST), k = 0;
	off_t start, next;

	for (unsigned i = from; i < n && i < MAX_WRITES; i++)
		if (seen[i].len != ps)
			seen[k++ + from] = seen[i];
	if (k == 1 && seen[from].len == (size_t)pt_record_length(RECORD_PAGES, ps))
		return 0;
	if (k < 2 || seen[from + k - 1].len != head_len())
		return -1;
	start = seen[from + k - 1].off;
	next = start + (off_t)head_len();
	for (unsigned i = from; i < from + k - 1; i++) {
		if (seen[i].off != next)
			return -1;
		next += (off_t)seen[i].len;
	}
	return next == start + (off_t)pt_record_length(RECORD_PAGES, ps) ? 1 : -1;
}

static uint64_t memory_hash(const void *base)
{
	return XXH3_64bits(base, NPAGES * ps);
}

int main(void)
{
	/* Segments of two records, kept as spares when dropped: the
	 * records go into recycled segments too. */
	struct pt_region_opts o = { .sz = sizeof(o), .durability = PT_DURABLE_ON_SYNC,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD, .retain_bytes = 1 };
	struct pt_io_ops io = pt_io_system;
	struct pt_replica *rep;
	struct pt_region *r;
	int streamed = 0, wrong = 0, a, b, ret;
	uint64_t hash;
	int64_t e, last;
	pid_t pid;

	ps = t_page_size();
	if (sched_getaffinity(0, sizeof(avail), &avail))
		DIE("sched_getaffinity: %s", strerror(errno));
	o.segment_bytes = ps + 2 * pt_record_length(RECORD_PAGES, ps);
	printf("region-stream: a record's pages written while the sync copies them, the head last\n");
	t_tmpdir_make(dir, sizeof(dir), "pt-stream");
	ret = pt_region_create(&r, dir, NPAGES * ps, &o);
	if (ret)
		DIE("create: %s", pt_strerror(ret));
	if (!t_two_cpus(&avail, &a, &b)) {
		printf("skip: needs two CPUs to run the caller and the log thread apart\n");
		pt_region_close(r);
		t_tmpdir_remove(dir);
		return T_SKIP;
	}
	if (!pin_threads(r))
		DIE("could not place the region's threads (pt_region_threads, sched_setaffinity)");
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret)
		DIE("replica: %s", pt_strerror(ret));
	io.pwrite = hooked_pwrite;
	pt_io_set(&io);

	for (int i = 1; i <= 16; i++) {
		unsigned from = __atomic_load_n(&nseen, __ATOMIC_SEQ_CST);

		write_pages(r, i);
		e = pt_region_sync(r);
		if (e != i)
			DIE("sync %d: %lld", i, (long long)e);
		switch (streamed_since(from)) {
		case 1:
			streamed++;
			break;
		case -1:
			wrong++;
			break;
		}
		if (i % 4 == 0 && pt_region_checkpoint(r) != i)
			DIE("checkpoint at %d", i);
		/* Time for the log thread's work between syncs (a roll made
		 * ahead): a record it finds sealed already is written whole. */
		usleep(20000);
	}
	/* How many stream depends on the machine's load (a busy CPU for the
	 * log thread): at least one, and no write out of order. */
	printf("    %d of 16 syncs streamed, %d written otherwise than whole or streamed\n",
	       streamed, wrong);
	t_cell("syncs stream: page runs in order, then the head at the record's start",
	     streamed >= 1 && !wrong);
	e = pt_replica_refresh(rep, 0);
	t_cell("a replica comes to epoch 16 with the same content",
	     e == 16 && memory_hash(pt_replica_base(rep)) == memory_hash(pt_region_base(r)));

	/* A page run fails: the sync reports the error, as for any failed
	 * write of the log, and the log thread writes the record whole into
	 * a new segment (50 ms later), after which its epoch is durable.
	 * Armed until a record streams. */
	{
		unsigned from = 0;
		bool whole = false;
		int64_t failed = 0;

		for (e = 17; e < 40 && !__atomic_load_n(&fired, __ATOMIC_SEQ_CST); e++) {
			from = __atomic_load_n(&nseen, __ATOMIC_SEQ_CST);
			__atomic_store_n(&fail_run, __atomic_load_n(&runs, __ATOMIC_SEQ_CST),
					 __ATOMIC_SEQ_CST);
			write_pages(r, (int)e);
			failed = pt_region_sync(r);
			usleep(20000);
		}
		last = e - 1;
		__atomic_store_n(&fail_run, -1, __ATOMIC_SEQ_CST);
		ret = -EIO;
		for (int i = 0; i < 500 && ret; i++) {
			ret = pt_region_wait(r, (pt_epoch_t)last, PT_LEVEL_DURABLE, 0);
			if (ret)
				usleep(10000);
		}
		t_cell("a failed page run: the sync says -EIO", failed == -EIO);
		if (failed != -EIO)
			printf("    the sync of epoch %lld returned %lld\n", (long long)last,
			       (long long)failed);
		for (unsigned i = from; i < __atomic_load_n(&nseen, __ATOMIC_SEQ_CST) &&
					i < MAX_WRITES; i++)
			if (seen[i].len == (size_t)pt_record_length(RECORD_PAGES, ps))
				whole = true;
		t_cell("the epoch durable once the record is written whole again",
		     !ret && whole);
	}
	e = pt_replica_refresh(rep, 0);
	t_cell("the replica comes to that epoch, same content",
	     e == last && memory_hash(pt_replica_base(rep)) == memory_hash(pt_region_base(r)));
	pt_replica_close(rep);
	pt_io_set(NULL);
	ret = pt_region_close(r);
	if (ret)
		DIE("close: %s", pt_strerror(ret));

	/* Killed between a page run and the head, in a recycled segment:
	 * the record is not there, its place holds an older record.  Armed
	 * until a record streams. */
	pid = fork();
	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (!pid) {
		if (pt_region_open(&r, dir, &o) || !pin_threads(r))
			_exit(2);
		for (int i = 1; i <= 4; i++) {
			write_pages(r, (int)last + i);
			if (pt_region_sync(r) != last + i)
				_exit(3);
			if (i % 2 && pt_region_checkpoint(r) != last + i)
				_exit(4);
		}
		pt_io_set(&io);
		for (int i = 5; i < 30; i++) {
			__atomic_store_n(&kill_run, __atomic_load_n(&runs, __ATOMIC_SEQ_CST),
					 __ATOMIC_SEQ_CST);
			write_pages(r, (int)last + i);
			if (pt_region_sync(r) != last + i)
				_exit(3);
			usleep(20000);
		}
		_exit(5);
	}
	t_cell("a child killed after a page run, before the head", t_wait_killed(pid));
	ret = pt_region_open(&r, dir, &o);
	e = ret ? 0 : pt_region_epoch(r);
	t_cell("reopened at an epoch the child made", !ret && e >= last + 4);
	if (!ret) {
		bool same = true;

		/* The pages of the last epoch hold its value, none the next's. */
		for (int i = 0; i < RECORD_PAGES; i++)
			if (((char *)pt_region_base(r))[((size_t)(i * 4 + e % 4) % NPAGES) * ps] !=
			    (char)e)
				same = false;
		for (size_t p = 0; p < NPAGES; p++)
			if (((char *)pt_region_base(r))[p * ps] == (char)(e + 1))
				same = false;
		t_cell("its content is that epoch's, nothing of the next", same);
		write_pages(r, (int)e + 1);
		last = e + 1;
		e = pt_region_sync(r);
		t_cell("and goes on: the next epoch", e == last);
		hash = memory_hash(pt_region_base(r));
		ret = pt_region_close(r);
		ret = ret ? ret : pt_replica_open(&rep, dir, NULL);
		t_cell("a new replica at it, same content", !ret && pt_replica_epoch(rep) == last &&
		     memory_hash(pt_replica_base(rep)) == hash);
		if (!ret)
			pt_replica_close(rep);
	}
	t_cell("verify finds no problem", t_verify(dir) == 0);
	t_tmpdir_remove(dir);
	printf("%s\n", t_failures ? "FAIL" : "PASS");
	return t_failures ? T_FAIL : 0;
}
