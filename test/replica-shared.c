/* replica-shared: a stopped shared reader holds no one back, a name reused at another size is made again, garbage in the control block is -EBADMSG, a file others can write is refused. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "internal.h"

#define MAX_EPOCHS	4096
#define STUCK_MS	200

/* Shared with the reader processes. */
struct shared {
	uint64_t hash[MAX_EPOCHS];	/* the writer's content hash at each epoch */
	uint32_t set[MAX_EPOCHS];
	uint64_t reader_epoch[4];	/* the epoch each reader shows */
	uint32_t ready[4];
	uint32_t resume;		/* the stopped reader was let go */
	uint32_t done;
	uint64_t final_epoch;
	char why[4][256];
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static struct shared *sh;
static char dir[128], dir2[128];
static char shm_prefix[64];	/* "pagetrack-test-shared-<pid>": every name of this test */
static pid_t kids[4];

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void shm_name(char *buf, size_t len, const char *cell)
{
	snprintf(buf, len, "test-shared-%d-%s", (int)getpid(), cell);
}

static void kill_kids(void)
{
	for (int i = 0; i < 4; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
}

/* A hung test leaves nothing behind in /dev/shm. */
static void on_alarm(int sig)
{
	static const char msg[] = "replica-shared: timed out\n";

	(void)sig;
	for (int i = 0; i < 4; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
	t_shm_remove_prefix(shm_prefix);
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(T_FAIL);
	_exit(T_FAIL);
}

static bool view_matches(struct pt_replica *rep, size_t size, int64_t e, char *why, size_t why_len)
{
	uint64_t h = XXH3_64bits(pt_replica_base(rep), size);

	/* The writer stores its hash just after the sync that published e. */
	for (int w = 0; e > 0 && e < MAX_EPOCHS && !LOAD(sh->set[e]) && w < 1000; w++)
		sleep_ms(1);
	if (e <= 0 || e >= MAX_EPOCHS || !LOAD(sh->set[e]) || LOAD(sh->hash[e]) != h) {
		snprintf(why, why_len, "epoch %lld: hash %016llx, the writer's %016llx", (long long)e,
			 (unsigned long long)h,
			 e > 0 && e < MAX_EPOCHS ? (unsigned long long)LOAD(sh->hash[e]) : 0ull);
		return false;
	}
	return true;
}

/* Does this process still map a deleted copy of the replica name? */
static bool maps_deleted_copy(const char *name)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, name) && strstr(line, "(deleted)"))
			found = true;
	fclose(f);
	return found;
}

/*
 * Reader id: refresh until the writer is done, checking every epoch seen.
 * The one to be stopped (stop) pins, says so, and waits to be let go; then
 * its view must still be the epoch it showed, and it must catch up.
 */
static int reader(int id, const char *name, bool stop, size_t size)
{
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED, .name = name,
				     .stuck_reader_ms = STUCK_MS };
	char *why = sh->why[id];
	struct pt_replica *rep;
	int64_t e;
	int ret;

	ret = pt_replica_open(&rep, dir, &o);
	if (ret) {
		snprintf(why, 256, "open: %s", strerror(-ret));
		return 1;
	}
	e = pt_replica_refresh(rep, 0);
	if (e <= 0 || !view_matches(rep, size, e, why, 256))
		return 1;
	STORE(sh->reader_epoch[id], (uint64_t)e);
	STORE(sh->ready[id], 1);
	if (stop) {
		/* SIGSTOPped here, pinned on epoch e. */
		while (!LOAD(sh->resume))
			sleep_ms(1);
		if (!view_matches(rep, size, e, why, 256) || pt_replica_epoch(rep) != e) {
			strncat(why, " (the stopped reader's view after SIGCONT)", 255 - strlen(why));
			return 1;
		}
	}
	for (;;) {
		e = pt_replica_refresh(rep, 20);
		if (e < 0) {
			snprintf(why, 256, "refresh: %s", strerror((int)-e));
			return 1;
		}
		if (!view_matches(rep, size, e, why, 256))
			return 1;
		STORE(sh->reader_epoch[id], (uint64_t)e);
		if (LOAD(sh->done) && (uint64_t)e >= LOAD(sh->final_epoch))
			break;
	}
	if (stop && maps_deleted_copy(name)) {
		snprintf(why, 256, "still maps the copy it was left after catching up");
		return 1;
	}
	pt_replica_close(rep);
	return 0;
}

static pid_t spawn(int id, const char *name, bool stop, size_t size)
{
	pid_t pid = fork();

	if (pid == 0) {
		int rc = reader(id, name, stop, size);

		_exit(rc);
	}
	return pid;
}

static bool wait_kid(int i, char *why, size_t why_len)
{
	int st;

	waitpid(kids[i], &st, 0);
	kids[i] = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		snprintf(why, why_len, "reader %d: %s (status %#x)", i, sh->why[i], st);
		return false;
	}
	return true;
}

static int64_t sync_epoch(struct pt_region *r, size_t size, uint64_t *seed)
{
	unsigned char *m = pt_region_base(r);
	size_t ps = t_page_size();
	uint64_t h;
	int64_t e;

	for (int w = 0; w < 4; w++)
		m[(t_rnd_next(seed) % (size / ps)) * ps + t_rnd_next(seed) % ps] = (unsigned char)t_rnd_next(seed);
	h = XXH3_64bits(m, size);
	e = pt_region_sync(r);
	if (e > 0 && e < MAX_EPOCHS) {
		STORE(sh->hash[e], h);
		STORE(sh->set[e], 1);
	}
	return e;
}

/*
 * (a) One reader SIGSTOPped while pinned; the writer goes on; two other
 * readers must keep advancing, each gap under a few deadlines.  Then the
 * stopped one, let go, still shows its whole epoch and catches up.
 */
static bool stopped_reader(char *why, size_t why_len)
{
	size_t size = 64 * t_page_size();
	uint64_t seed = 0x5eed, last_move[3] = { 0 }, seen[3] = { 0 }, worst = 0;
	struct pt_region_opts ro = { .sz = sizeof(ro) };
	struct pt_region *r;
	char name[64];
	int64_t e = 0;
	bool ok;
	int ret;

	memset(sh, 0, sizeof(*sh));
	shm_name(name, sizeof(name), "stopped");
	t_tmpdir_make(dir, sizeof(dir), "pt-replica-shared");
	rmdir(dir);
	ret = pt_region_create(&r, dir, size, &ro);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	CHECK(sync_epoch(r, size, &seed) == 1, "first sync");
	CHECK(pt_region_wait(r, 1, PT_LEVEL_PUBLISHED, 5000) == 0, "publish");
	kids[0] = spawn(0, name, true, size);
	for (int w = 0; w < 5000 && !LOAD(sh->ready[0]); w++)
		sleep_ms(1);
	CHECK(LOAD(sh->ready[0]), "the reader to stop never got ready: %s", sh->why[0]);
	kill(kids[0], SIGSTOP);
	kids[1] = spawn(1, name, false, size);
	kids[2] = spawn(2, name, false, size);
	for (int w = 0; w < 5000 && !(LOAD(sh->ready[1]) && LOAD(sh->ready[2])); w++)
		sleep_ms(1);
	CHECK(LOAD(sh->ready[1]) && LOAD(sh->ready[2]), "readers never got ready");
	/* 2 s of epochs, ten deadlines: the first switch leaves the stopped
	 * reader's copy behind, every later update needs it. */
	for (uint64_t start = ms_now(), now = start; now - start < 2000; now = ms_now()) {
		e = sync_epoch(r, size, &seed);
		CHECK(e > 0 && e < MAX_EPOCHS - 1, "sync: %lld", (long long)e);
		for (int i = 1; i <= 2; i++) {
			uint64_t re = LOAD(sh->reader_epoch[i]);

			if (re != seen[i] || !last_move[i]) {
				seen[i] = re;
				last_move[i] = now;
			}
			if (now - last_move[i] > worst)
				worst = now - last_move[i];
		}
		sleep_ms(3);
	}
	STORE(sh->final_epoch, (uint64_t)e);
	STORE(sh->done, 1);
	CHECK(pt_region_wait(r, (uint64_t)e, PT_LEVEL_PUBLISHED, 5000) == 0, "publish");
	printf("    %lld epochs; the running readers' longest stall %llu ms (deadline %d ms)\n",
	       (long long)e, (unsigned long long)worst, STUCK_MS);
	ok = worst < 4 * STUCK_MS;
	if (!ok)
		snprintf(why, why_len, "a running reader stalled %llu ms behind the stopped one "
			 "(at epochs %llu and %llu of %lld)", (unsigned long long)worst,
			 (unsigned long long)LOAD(sh->reader_epoch[1]),
			 (unsigned long long)LOAD(sh->reader_epoch[2]), (long long)e);
	kill(kids[0], SIGCONT);
	STORE(sh->resume, 1);
	for (int i = 0; i < 3; i++)
		if (!wait_kid(i, why, why_len))
			ok = false;
	pt_region_close(r);
	t_tmpdir_remove(dir);
	t_shm_remove(name);
	return ok;
}

/* A region in d of npages, at epoch 1 with page 0 starting with tag. */
static bool make_region(struct pt_region **r, const char *d, uint64_t npages, char tag)
{
	struct pt_region_opts ro = { .sz = sizeof(ro) };
	int ret;

	ret = pt_region_create(r, d, npages * t_page_size(), &ro);
	CHECK(ret == 0, "create %s: %s", d, strerror(-ret));
	((char *)pt_region_base(*r))[0] = tag;
	CHECK(pt_region_sync(*r) == 1, "sync");
	CHECK(pt_region_wait(*r, 1, PT_LEVEL_PUBLISHED, 5000) == 0, "publish");
	return true;
}

/*
 * (b) A name used by a region that was recreated at another size: -ESTALE
 * while a live reader holds it, made again once only dead ones do.
 */
static bool name_reused(char *why, size_t why_len)
{
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED };
	struct pt_replica *a, *b;
	struct pt_region *ra, *rb;
	char name[64];
	pid_t pid;
	int ret, st;

	(void)why;
	(void)why_len;
	shm_name(name, sizeof(name), "reused");
	o.name = name;
	t_tmpdir_make(dir, sizeof(dir), "pt-replica-shared");
	t_tmpdir_make(dir2, sizeof(dir2), "pt-replica-shared");
	rmdir(dir);
	rmdir(dir2);
	if (!make_region(&ra, dir, 16, 'a') || !make_region(&rb, dir2, 32, 'b'))
		return false;
	ret = pt_replica_open(&a, dir, &o);
	CHECK(ret == 0 && ((const char *)pt_replica_base(a))[0] == 'a', "open on the first region: %d", ret);
	ret = pt_replica_open(&b, dir2, &o);
	CHECK(ret == -ESTALE, "a name a live reader holds for another region: %s, not ESTALE",
	      strerror(-ret));
	/* A reader that died without closing holds nothing. */
	pid = fork();
	if (pid == 0) {
		struct pt_replica *c;

		_exit(pt_replica_open(&c, dir, &o) ? 1 : 0);
	}
	CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && !WEXITSTATUS(st),
	      "a second reader of the first region");
	pt_replica_close(a);
	ret = pt_replica_open(&b, dir2, &o);
	CHECK(ret == 0, "the name, unused, for a region of another size: %s", strerror(-ret));
	CHECK(pt_replica_epoch(b) == 1 && ((const char *)pt_replica_base(b))[0] == 'b' &&
	      !((const char *)pt_replica_base(b))[31 * t_page_size()], "the copy made again");
	pt_replica_close(b);
	pt_region_close(ra);
	pt_region_close(rb);
	t_tmpdir_remove(dir);
	t_tmpdir_remove(dir2);
	t_shm_remove(name);
	return true;
}

/* Open the control block of name read-write (it is ours). */
static struct pt_shared_ctl *ctl_map(const char *name)
{
	char p[128];
	void *m;
	int fd;

	snprintf(p, sizeof(p), "/dev/shm/pagetrack-%s", name);
	fd = open(p, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	m = mmap(NULL, sizeof(struct pt_shared_ctl), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return m == MAP_FAILED ? NULL : m;
}

enum garbage { G_CURRENT, G_GEN_SAME, G_GEN_BEYOND, G_PIN, G_PID, G_EPOCH, G_VERSION, G_NGARBAGE };
static const char *const garbage_names[] = {
	"current", "equal generations", "generation beyond next", "pin", "negative pid",
	"epoch", "version 1 layout",
};

static void spoil(struct pt_shared_ctl *c, enum garbage g)
{
	switch (g) {
	case G_CURRENT:		c->current = 0x7fff; break;
	case G_GEN_SAME:	c->copy_gen[1] = c->copy_gen[0]; break;
	case G_GEN_BEYOND:	c->copy_gen[c->current] = 0xdeadbeefcafe; break;
	case G_PIN:		c->readers[7].pin = ~0ull; break;
	case G_PID:		c->readers[3].pid = -1; break;
	case G_EPOCH:		c->copy_epoch[c->current] = 1ull << 63; break;
	case G_VERSION:		c->version = 1; break;
	default:		break;
	}
}

/*
 * (c) Garbage in the control block of a file of ours, whether found at
 * open or appearing under an open replica: -EBADMSG (-EPROTO for an old
 * layout), never a crash.
 */
static bool garbage(char *why, size_t why_len)
{
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED };
	struct pt_region *r;
	struct pt_replica *rep;
	char name[64];
	int ret;

	(void)why;
	(void)why_len;
	shm_name(name, sizeof(name), "garbage");
	o.name = name;
	t_tmpdir_make(dir, sizeof(dir), "pt-replica-shared");
	rmdir(dir);
	if (!make_region(&r, dir, 8, 'g'))
		return false;
	for (int g = 0; g < G_NGARBAGE; g++) {
		int want = g == G_VERSION ? -EPROTO : -EBADMSG;
		struct pt_shared_ctl *c;
		int64_t e;

		/* At open. */
		t_shm_remove(name);
		ret = pt_replica_open(&rep, dir, &o);
		CHECK(ret == 0, "open: %s", strerror(-ret));
		pt_replica_close(rep);
		c = ctl_map(name);
		CHECK(c, "map the control block");
		spoil(c, (enum garbage)g);
		ret = pt_replica_open(&rep, dir, &o);
		CHECK(ret == want, "%s at open: %s", garbage_names[g], strerror(-ret));
		munmap(c, sizeof(*c));
		/* Under an open replica, at its next refresh. */
		t_shm_remove(name);
		ret = pt_replica_open(&rep, dir, &o);
		CHECK(ret == 0, "open: %s", strerror(-ret));
		c = ctl_map(name);
		CHECK(c, "map the control block");
		spoil(c, (enum garbage)g);
		e = pt_replica_refresh(rep, 0);
		CHECK(e == want, "%s at refresh: %lld", garbage_names[g], (long long)e);
		pt_replica_close(rep);
		munmap(c, sizeof(*c));
	}
	pt_region_close(r);
	t_tmpdir_remove(dir);
	t_shm_remove(name);
	return true;
}

/* (d) A name made ahead of us that others can write, or not a file: -EPERM. */
static bool planted(char *why, size_t why_len)
{
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED };
	struct pt_region *r;
	struct pt_replica *rep;
	char name[64], p[128];
	int fd, ret;

	(void)why;
	(void)why_len;
	shm_name(name, sizeof(name), "planted");
	o.name = name;
	snprintf(p, sizeof(p), "/dev/shm/pagetrack-%s", name);
	t_tmpdir_make(dir, sizeof(dir), "pt-replica-shared");
	rmdir(dir);
	if (!make_region(&r, dir, 8, 'p'))
		return false;
	t_shm_remove(name);
	fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
	CHECK(fd >= 0 && !fchmod(fd, 0666), "make %s: %s", p, strerror(errno));
	close(fd);
	ret = pt_replica_open(&rep, dir, &o);
	CHECK(ret == -EPERM, "a control block file of mode 0666: %s, not EPERM", strerror(-ret));
	unlink(p);
	CHECK(!mkfifo(p, 0600), "mkfifo: %s", strerror(errno));
	ret = pt_replica_open(&rep, dir, &o);
	CHECK(ret == -EPERM, "a FIFO as control block: %s, not EPERM", strerror(-ret));
	unlink(p);
	/* A file of ours of mode 0600 is taken. */
	ret = pt_replica_open(&rep, dir, &o);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	pt_replica_close(rep);
	pt_region_close(r);
	t_tmpdir_remove(dir);
	t_shm_remove(name);
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "stopped-reader", stopped_reader },
		{ "name-reused-at-another-size", name_reused },
		{ "garbage-control-block", garbage },
		{ "planted-file", planted },
	};

	snprintf(shm_prefix, sizeof(shm_prefix), "pagetrack-test-shared-%d-", (int)getpid());
	signal(SIGALRM, on_alarm);
	alarm(60);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		DIE("mmap: %s", strerror(errno));
	for (size_t i = 0; i < PT_ARRAY_SIZE(cells); i++) {
		t_run_cell(&cells[i]);
		kill_kids();
		t_shm_remove_prefix(shm_prefix);
	}
	return t_exit();
}
