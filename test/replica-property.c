/* replica-property: random writes and syncs; every replica (private, shared, several processes, a thread) equals the writer's hash at the epoch it shows. */
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES		256
#define MAX_EPOCHS	4096
#define WRITER_WAIT_S	60	/* the most a replica waits for the writer's hash */
#define SLOW_SYNC	50	/* the writer records this sync's hash late, */
#define SLOW_US		2000000	/* by this long */

/* Shared with the replica processes; atomics for the thread (TSan). */
struct shared {
	uint64_t hash[MAX_EPOCHS];
	uint32_t set[MAX_EPOCHS];
	uint32_t created;
	uint32_t done;
	uint64_t final_epoch;
	uint64_t checks[16];
	uint64_t image_pages[16];
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static struct shared *sh;
static char dir[128];
static char shm_name[64];


static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

	nanosleep(&ts, NULL);
}

/* Wait until *flag is set or the writer is done; true if *flag is set.
 * The time bound only keeps a writer that died from holding us forever. */
static bool wait_for(uint32_t *flag)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!LOAD(*flag) && !LOAD(sh->done)) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > WRITER_WAIT_S)
			break;
		sleep_us(200);
	}
	return LOAD(*flag);
}

/*
 * The writer's hash of epoch e into *h; false if its sync never returned
 * e.  A replica sees an epoch as soon as it is published, which may be
 * long before the writer's sync returns and it records the hash (a
 * durable-on-sync sync waits for fdatasync): wait for the hash, or for
 * the writer to be done (it records every epoch before that).
 */
static bool writer_hash(int64_t e, uint64_t *h)
{
	wait_for(&sh->set[e]);
	*h = LOAD(sh->hash[e]);
	return LOAD(sh->set[e]);
}

/* Follow the region until the writer is done; 0 if every epoch seen matched. */
static int follow(int id, enum pt_replica_mode mode, long pause_us)
{
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = mode, .name = shm_name };
	size_t size = NPAGES * t_page_size();
	struct pt_replica *rep = NULL;
	uint64_t last = 0;
	int ret;

	/* The writer may take seconds to make the region on a loaded machine. */
	if (!wait_for(&sh->created)) {
		printf("    replica %d: the writer never made the region\n", id);
		return 1;
	}
	for (int tries = 0; tries < 2000; tries++) {
		ret = pt_replica_open(&rep, dir, &o);
		if (ret == 0)
			break;
		if (ret != -ENOENT && ret != -EMEDIUMTYPE && ret != -ENODATA) {
			printf("    replica %d: open: %s\n", id, strerror(-ret));
			return 1;
		}
		sleep_us(1000);
	}
	if (!rep) {
		printf("    replica %d: region never appeared\n", id);
		return 1;
	}
	for (;;) {
		int64_t e = pt_replica_refresh(rep, 20);
		uint64_t h, want;

		if (e < 0) {
			printf("    replica %d: refresh: %s\n", id, strerror((int)-e));
			ret = 1;
			goto out;
		}
		if (e < (int64_t)last) {
			printf("    replica %d: went back from epoch %llu to %lld\n", id,
			       (unsigned long long)last, (long long)e);
			ret = 1;
			goto out;
		}
		if (e >= MAX_EPOCHS) {
			printf("    replica %d: epoch %lld, the writer made fewer\n", id, (long long)e);
			ret = 1;
			goto out;
		}
		last = (uint64_t)e;
		if (e > 0) {
			h = XXH3_64bits(pt_replica_base(rep), size);
			if (!writer_hash(e, &want) || h != want) {
				if (XXH3_64bits(pt_replica_base(rep), size) != h)
					printf("    replica %d: its copy changed without a refresh\n", id);
				printf("    replica %d (%s): epoch %lld: hash %016llx, writer %s %016llx\n",
				       id, mode == PT_REPLICA_SHARED ? "shared" : "private", (long long)e,
				       (unsigned long long)h, LOAD(sh->set[e]) ? "had" : "has no such epoch,",
				       (unsigned long long)want);
				ret = 1;
				goto out;
			}
			sh->checks[id]++;
		}
		if (LOAD(sh->done) && (uint64_t)e >= LOAD(sh->final_epoch))
			break;
		if (pause_us)
			sleep_us(pause_us);
	}
	sh->image_pages[id] = pt_replica_image_pages(rep);
	ret = 0;
out:
	pt_replica_close(rep);
	return ret;
}

static void *thread_follow(void *arg)
{
	return (void *)(intptr_t)follow((int)(intptr_t)arg, PT_REPLICA_PRIVATE, 0);
}

struct child_spec {
	enum pt_replica_mode mode;
	long pause_us;
};

static const struct child_spec children[] = {
	{ PT_REPLICA_PRIVATE, 0 },
	{ PT_REPLICA_PRIVATE, 30000 },	/* slow: falls behind retention */
	{ PT_REPLICA_SHARED, 0 },
	{ PT_REPLICA_SHARED, 2000 },
	{ PT_REPLICA_SHARED, 0 },
};
#define NCHILD (sizeof(children) / sizeof(children[0]))

static bool run(enum pt_durability dur, char *why, size_t why_len)
{
	struct pt_region_opts o = {
		.sz = sizeof(o), .durability = dur, .checkpoint_interval_ms = 20,
		.segment_bytes = 128 << 10, .retain_bytes = 1, .durable_interval_ms = 2,
		/* With no durability asked for, a small staging memory is
		 * reused while replicas copy records out of it. */
		.staging_bytes = dur == PT_DURABLE_NONE ? 160 << 10 : 0,
	};
	size_t ps = t_page_size(), size = NPAGES * ps;
	uint64_t seed = 0x1234567 + (uint64_t)dur, total_checks = 0;
	pid_t pids[NCHILD];
	struct pt_region *r;
	pthread_t th;
	void *th_ret;
	bool ok = true;
	int ret, epochs = 0;
	char *m;

	memset((void *)sh, 0, sizeof(*sh));
	snprintf(dir, sizeof(dir), "/tmp/pt-replica-prop-XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(why, why_len, "mkdtemp: %s", strerror(errno));
		return false;
	}
	rmdir(dir);	/* create makes it, replicas wait for it */
	snprintf(shm_name, sizeof(shm_name), "test-prop-%d-%d", getpid(), (int)dur);
	for (size_t i = 0; i < NCHILD; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			int rc = follow((int)i, children[i].mode, children[i].pause_us);

			fflush(stdout);
			_exit(rc);
		}
	}
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	STORE(sh->created, 1);
	ret = pthread_create(&th, NULL, thread_follow, (void *)(intptr_t)NCHILD);
	CHECK(ret == 0, "pthread_create");
	m = pt_region_base(r);
	for (int i = 0; i < 400; i++) {
		int nw = 1 + (int)(t_rnd_next(&seed) % 40);
		uint64_t h;
		int64_t e;

		for (int w = 0; w < nw; w++) {
			uint64_t p = t_rnd_next(&seed) % NPAGES;

			m[p * ps + t_rnd_next(&seed) % ps] = (char)t_rnd_next(&seed);
		}
		h = XXH3_64bits(m, size);
		e = pt_region_sync(r);
		CHECK(e > 0 && e < MAX_EPOCHS, "sync: %lld", (long long)e);
		/* As a sync held up (fdatasync, a descheduled writer) would:
		 * replicas may show the epoch long before its hash is known. */
		if (i == SLOW_SYNC)
			sleep_us(SLOW_US);
		STORE(sh->hash[e], h);
		STORE(sh->set[e], 1);
		epochs = (int)e;
		if (t_rnd_next(&seed) % 4 == 0)
			sleep_us((long)(t_rnd_next(&seed) % 3000));
	}
	STORE(sh->final_epoch, (uint64_t)epochs);
	STORE(sh->done, 1);
	ret = pt_region_wait(r, (uint64_t)epochs, PT_LEVEL_DURABLE, 10000);
	CHECK(ret == 0, "wait: %s", strerror(-ret));
	for (size_t i = 0; i < NCHILD; i++) {
		int st;

		waitpid(pids[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) {
			snprintf(why, why_len, "replica process %zu failed (status %#x)", i, st);
			ok = false;
		}
	}
	pthread_join(th, &th_ret);
	if (th_ret) {
		snprintf(why, why_len, "replica thread failed");
		ok = false;
	}
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	for (size_t i = 0; i <= NCHILD; i++)
		total_checks += sh->checks[i];
	printf("    %d epochs, %llu replica checks, slow replica copied %llu pages from the image\n",
	       epochs, (unsigned long long)total_checks, (unsigned long long)sh->image_pages[1]);
	CHECK(total_checks >= NCHILD + 1, "replicas checked too little");
	t_shm_remove(shm_name);
	t_tmpdir_remove(dir);
	return ok;
}

int main(void)
{
	static const struct {
		const char *name;
		enum pt_durability dur;
	} cells[] = {
		{ "durable-on-sync", PT_DURABLE_ON_SYNC },
		{ "background", PT_DURABLE_BACKGROUND },
		{ "none", PT_DURABLE_NONE },
	};
	char why[256];

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		DIE("mmap: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
		why[0] = '\0';
		t_cell_report(cells[i].name, run(cells[i].dur, why, sizeof(why)) ? T_PASS : T_FAIL, why);
	}
	return t_exit();
}
