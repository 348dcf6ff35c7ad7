/* crash-kill: kill -9 the writer at random points during sync and checkpoint (>= 200 kills; half of the writers durable on sync, half of each with the log written O_DIRECT); reopen keeps every durable epoch and the memory hashes as recorded. */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES		128
#define KILLS		200
#define MAX_EPOCHS	(1 << 16)

struct shared {
	uint64_t hash[MAX_EPOCHS];	/* memory hash at each epoch, stored before its sync */
	uint64_t durable;		/* newest epoch reported durable to the child */
	uint64_t syncs;
	uint64_t checkpoints;
	uint32_t ready;			/* the child's number once its region is open */
	uint32_t in_checkpoint;		/* the child is inside pt_region_checkpoint() */
};

static struct shared *sh;
static char dir[128];


static struct pt_region_opts opts_for(int mode)
{
	struct pt_region_opts o = {
		.sz = sizeof(o), .checkpoint_interval_ms = 3, .segment_bytes = 48 << 10,
		.retain_bytes = 1,
		.durability = mode ? PT_DURABLE_NONE : PT_DURABLE_ON_SYNC,
	};

	return o;
}

/* The writer: random writes, syncs, waits and checkpoints until killed. */
static void child(int k, int mode, uint64_t seed)
{
	struct pt_region_opts o = opts_for(mode);
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r;
	char *m;
	int ret;

	/* Every other pair of writers writes the log with O_DIRECT. */
	if ((k / 2) % 2)
		o.flags |= PT_REGION_DIRECT_LOG;

	ret = pt_region_open(&r, dir, &o);
	if (ret) {
		printf("child: open: %s\n", strerror(-ret));
		fflush(stdout);
		_exit(1);
	}
	m = pt_region_base(r);
	__atomic_store_n(&sh->ready, (uint32_t)k + 1, __ATOMIC_RELEASE);
	for (;;) {
		int nw = 1 + (int)(t_rnd_next(&seed) % 24);
		int64_t got;

		for (int w = 0; w < nw; w++)
			m[(t_rnd_next(&seed) % NPAGES) * ps + t_rnd_next(&seed) % ps] = (char)t_rnd_next(&seed);
		{
			/* With PT_DURABLE_NONE the newest published epoch lags
			 * the newest assigned one: count them here. */
			static uint64_t assigned;

			if (!assigned)
				assigned = (uint64_t)pt_region_epoch(r);
			if (assigned + 1 >= MAX_EPOCHS)
				_exit(2);
			__atomic_store_n(&sh->hash[assigned + 1], XXH3_64bits(m, size), __ATOMIC_RELEASE);
			got = pt_region_sync(r);
			if (got != (int64_t)assigned + 1) {
				printf("child: sync gave %lld, expected %llu\n", (long long)got,
				       (unsigned long long)assigned + 1);
				fflush(stdout);
				_exit(1);
			}
			assigned = (uint64_t)got;
		}
		__atomic_add_fetch(&sh->syncs, 1, __ATOMIC_RELAXED);
		if (!mode) {
			__atomic_store_n(&sh->durable, (uint64_t)got, __ATOMIC_RELEASE);
		} else if (t_rnd_next(&seed) % 4 == 0) {
			/* Group commit: several epochs, one wait. */
			if (pt_region_wait(r, (uint64_t)got, PT_LEVEL_DURABLE, -1) == 0)
				__atomic_store_n(&sh->durable, (uint64_t)got, __ATOMIC_RELEASE);
		}
		if (t_rnd_next(&seed) % 8 == 0) {
			__atomic_store_n(&sh->in_checkpoint, 1, __ATOMIC_RELEASE);
			if (pt_region_checkpoint(r) >= 0)
				__atomic_add_fetch(&sh->checkpoints, 1, __ATOMIC_RELAXED);
			__atomic_store_n(&sh->in_checkpoint, 0, __ATOMIC_RELEASE);
		}
	}
}

static bool kill_loop(char *why, size_t why_len)
{
	size_t ps = t_page_size(), size = NPAGES * ps;
	uint64_t seed = 0xC0FFEE;
	struct pt_region_opts o = opts_for(0);
	struct pt_region *r;
	int ret, kills = 0, kills_in_checkpoint = 0, kills_wanted = KILLS;

	/* More for a soak run; never fewer than the CI count. */
	if (getenv("PT_KILLS") && atoi(getenv("PT_KILLS")) > KILLS)
		kills_wanted = atoi(getenv("PT_KILLS"));

	(void)ps;
	/* tmpfs: a kill -9 leaves the page cache, so the medium does not
	 * matter here, and fdatasync costs nothing (crash-storage tests that). */
	snprintf(dir, sizeof(dir), "/dev/shm/pt-crash-kill-XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(why, why_len, "mkdtemp: %s", strerror(errno));
		return false;
	}
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	pt_region_close(r);
	for (int k = 0; k < kills_wanted; k++) {
		uint64_t before = __atomic_load_n(&sh->durable, __ATOMIC_ACQUIRE), durable, h;
		long delay_us = (long)(t_rnd_next(&seed) % 10000);
		struct timespec ts = { 0, delay_us * 1000 };
		int64_t e;
		pid_t pid;
		int st;

		pid = fork();
		CHECK(pid >= 0, "fork: %s", strerror(errno));
		if (pid == 0)
			child(k, k % 2, t_rnd_next(&seed));
		/* Kill it at a random moment once it runs (not while it opens). */
		for (int w = 0; w < 10000 && __atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) != (uint32_t)k + 1; w++)
			usleep(100);
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		kills_in_checkpoint += (int)__atomic_load_n(&sh->in_checkpoint, __ATOMIC_ACQUIRE);
		__atomic_store_n(&sh->in_checkpoint, 0, __ATOMIC_RELEASE);
		waitpid(pid, &st, 0);
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		      "writer %d ended on its own (status %#x)", k, st);
		kills++;
		durable = __atomic_load_n(&sh->durable, __ATOMIC_ACQUIRE);
		(void)before;

		o = opts_for(0);
		o.flags = PT_REGION_NO_CHECKPOINT_THREAD;
		ret = pt_region_open(&r, dir, &o);
		CHECK(ret == 0, "reopen after kill %d: %s", k, strerror(-ret));
		e = pt_region_epoch(r);
		CHECK(e >= (int64_t)durable, "kill %d: recovered epoch %lld < durable %llu", k,
		      (long long)e, (unsigned long long)durable);
		h = XXH3_64bits(pt_region_base(r), size);
		CHECK(e == 0 || h == __atomic_load_n(&sh->hash[e], __ATOMIC_ACQUIRE),
		      "kill %d: memory at recovered epoch %lld does not hash as recorded", k, (long long)e);
		/* The child's next sync continues from here. */
		__atomic_store_n(&sh->durable, (uint64_t)e, __ATOMIC_RELEASE);
		ret = pt_region_close(r);
		CHECK(ret == 0, "close: %s", strerror(-ret));
	}
	printf("    %d kills (%d inside an explicit checkpoint), %llu syncs, %llu explicit checkpoints "
	       "completed\n", kills, kills_in_checkpoint, (unsigned long long)sh->syncs,
	       (unsigned long long)sh->checkpoints);
	CHECK(kills >= kills_wanted, "only %d kills", kills);
	CHECK(sh->syncs > (uint64_t)KILLS, "writers made too few syncs (%llu)",
	      (unsigned long long)sh->syncs);
	t_tmpdir_remove(dir);
	return true;
}

int main(void)
{
	char why[256] = "";

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		DIE("mmap: %s", strerror(errno));
	t_cell_report("kill-9-during-sync-and-checkpoint", kill_loop(why, sizeof(why)) ? T_PASS : T_FAIL,
		      why);
	if (t_failures)
		printf("    region left in %s for inspection\n", dir);
	return t_exit();
}
