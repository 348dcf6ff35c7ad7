/* SPDX-License-Identifier: MIT */
/*
 * replication.c - what replication costs the writer and its readers, side
 * by side in one run, on a region of --region-mib MiB (1 GiB by default;
 * the targets are for 1 GiB) in a data directory made under $TMPDIR or
 * /var/tmp and removed at the end (also on SIGINT, SIGTERM, SIGHUP, SIGPIPE
 * or a crash):
 *
 *  1. stall: the time inside pt_region_sync() with 0, 100, 1,000 and 10,000
 *     scattered dirty pages, for each durability policy: none and
 *     background (the sync returns once the record is queued for the log
 *     thread: durability not waited for) and on-sync (it returns once the
 *     record is fdatasynced).  Next to them, in the same runs: memcpy of the
 *     whole region into another pre-faulted buffer (refreshing a copy by
 *     copying everything), fork() of this writer holding its region, and
 *     fork() of a process holding the same size of populated private
 *     anonymous memory (Redis's way to a consistent copy: the child's
 *     copy-on-write view).
 *  2. lag: from the return of a sync of 1,000 scattered dirty pages to a
 *     private replica in another process having refreshed to that epoch;
 *     p50 and p99 over --lag-syncs syncs a run, for the background and the
 *     none policy (with on-sync the epoch is published before sync returns).
 *  3. catch-up: a replica at epoch N whose next record the log no longer
 *     holds (retention of 1 byte, one record a segment, a checkpoint)
 *     refreshes from the image after 1%, 10% and 100% of the pages changed;
 *     next to reading the whole image file.
 *  4. durable: an on-sync pt_region_sync() of 1,000 dirty pages next to
 *     pwrite + fdatasync of the same page bytes, appended to a file in the
 *     region's data directory.
 *  5. recycle: durable syncs into recycled log segments against new ones,
 *     into recycled ones written O_DIRECT (PT_REGION_DIRECT_LOG), and both
 *     again from regions whose own threads are placed on another CPU than
 *     this one (the streamed write runs beside the copy).
 *  6. cycle: each written page from collect to the image: syncs of an
 *     exchange-like workload (most writes to a hot set) followed by a
 *     private replica in another process, then a checkpoint; the CPU each
 *     written page costs outside its write fault (the writer's sync calls
 *     and threads, the checkpoint, the replica's refreshes), the bytes the
 *     checkpoint reads per byte of image it writes, the hashes per page at
 *     seal and at checkpoint, and the checkpoint's time; for a log written
 *     through the page cache and one written O_DIRECT, a cycle of each in
 *     turn (the second's checkpoint reads the disk: the log is dropped
 *     from the page cache after the lagging replica read it).
 *  7. precopy: the pause of a sync (background policy) at 1,000 and 10,000
 *     pages an epoch, with pre-copy and without, in the same reps: each
 *     epoch writes its pages in PRECOPY_CHUNKS chunks, each chunk after the
 *     first also writing again PRECOPY_REWRITE_PERCENT% as many pages
 *     written earlier in the epoch; the pre-copy region runs a pass
 *     (pt_region_precopy) after each chunk but the last, in the writer's
 *     thread (a writer calling it when it has a moment), so its sync finds
 *     the last chunk and the pages written again since the last pass.
 *     Next to the pauses: the time of the writes (their faults included)
 *     and of the passes, and the write faults per epoch (the tracker's).
 *
 * Usage: replication [--reps N] [--json FILE] [--region-mib N] [--lag-syncs N]
 *                    [--only N]
 * Each figure is the median of --reps runs (default 5, at least 3).  The
 * targets of the replication issue are printed beside the figures as met
 * or MISSED; they never change the exit status, which is 1 only when
 * something that should work did not (an API call failed, a replica
 * differs from the writer, a catch-up did not go through the image).
 *
 * Method notes:
 *  - Regions are populated (MADV_POPULATE_READ: shmem pages exist, none is
 *    reported written) before anything is timed.  Dirty pages get a new
 *    64-bit value each time, so every record really changes them; the
 *    write faults happen before the timed sync.
 *  - Between timed syncs the bench waits, untimed, for the epoch to become
 *    durable, so each sync finds the staging memory free: the figure is the
 *    pause of a writer whose syncs are further apart than the log needs.
 *  - Background checkpoints are off (PT_REGION_NO_CHECKPOINT_THREAD): they
 *    never run on the sync path, and on a 2-core machine they would only
 *    add noise; the catch-up section checkpoints explicitly.
 *  - The full-copy buffer is shared anonymous memory: it costs memcpy the
 *    same, and adds no page tables to the writer's own fork().  A fork()
 *    of the writer copies no page table of its MAP_SHARED region (and the
 *    child would see the writer's later writes: no consistent copy), so the
 *    fork targets are checked against the private-memory fork.  The
 *    writer's fork() is timed after its syncs, out of caution: the staging
 *    memory is shared and MADV_DONTFORK, so a fork no longer leaves it
 *    copy-on-write, but the writer's heap is.
 *  - Ratio rows are the median of per-rep ratios, each of two figures
 *    measured next to each other in that rep: the disk's fdatasync time and
 *    the CPU share of a shared machine drift by phases, and a phase then
 *    hits both sides.  The stall rows interleave the three policies the same
 *    way, each rep starting with another one.
 *  - Correctness is checked outside the timing: every sync returns the
 *    epoch it should, each region's replica equals its memory at the end
 *    (byte for byte in this process, by XXH3 across processes), and each
 *    catch-up copies exactly the changed pages from the image.
 */
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "bench.h"
#include "harness.h"

#define SEED_DIRTY	0xc2b2ae3d27d4eb4full
#define SEED_LAG	0x165667b19e3779f9ull
#define SEED_CATCHUP	0x27d4eb2f165667c5ull
#define LAG_PAGES	1000
#define DURABLE_PAGES	1000
#define CATCHUP_CHUNK	8192		/* pages per epoch while changing a share */
#define HELPER_TIMEOUT_MS 30000		/* a helper that says nothing for this long failed */
#define WAIT_MS		60000		/* pt_region_wait() bound */

#define CYCLE_PAGES	200		/* writes per sync in the cycle section */
#define CYCLE_HOT	2000		/* the hot set they mostly go to */
#define CYCLE_HOT_PERCENT 95
#define SEED_CYCLE	0x9e3779b185ebca87ull

#define PRECOPY_CHUNKS	8		/* chunks an epoch's pages are written in */
#define PRECOPY_REWRITE_PERCENT 10	/* of a chunk: pages written again */
#define SEED_PRECOPY	0x85ebca77c2b2ae63ull

static long region_mib = 1024;
static long lag_syncs = 100;
static long only_section;
static long cycle_syncs = 200;

static const struct bench_option options[] = {
	{ "region-mib", "region size in MiB (targets at 1024; smaller for a quick run)", 64, 8192,
	  &region_mib },
	{ "lag-syncs", "syncs per lag run (p50 and p99 over them)", 20, 10000, &lag_syncs },
	{ "only", "run only this section (1 stall, 2 lag, 3 catch-up, 4 durable, 5 recycle, "
	  "6 cycle, 7 precopy; 0: all)", 0, 7, &only_section },
	{ "cycle-syncs", "syncs between two checkpoints in the cycle section", 10, 10000,
	  &cycle_syncs },
	{ NULL, NULL, 0, 0, NULL },
};

static const uint64_t dirty_counts[] = { 0, 100, 1000, 10000 };

static const struct {
	enum pt_durability durability;
	const char *method;
	const char *dir;
	bool waited;
} policies[] = {
	{ PT_DURABLE_NONE, "sync none", "stall-none", false },
	{ PT_DURABLE_BACKGROUND, "sync background", "stall-background", false },
	{ PT_DURABLE_ON_SYNC, "sync on-sync", "stall-on-sync", true },
};

static const struct {
	uint64_t pages;
	double ms;
	const char *text;
} stall_targets[] = { { 100, 0.5, "<= 0.5 ms" }, { 1000, 1.5, "<= 1.5 ms" },
		      { 10000, 8, "<= 8 ms" } };

static size_t ps;
static unsigned int page_shift;
static uint64_t npages;
static size_t region_len;
static bool at_target_size;		/* region is 1 GiB: the size-bound targets apply */
static uint64_t stamp;			/* the value of the next page write, never repeats */
static char top_dir[200];

/* ---- the library's last message, to explain a failure ----------------- */

/* The library's threads log too: the message is kept under a lock. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_log[512];

static void keep_log(enum pt_log_level level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	pthread_mutex_lock(&log_lock);
	snprintf(last_log, sizeof(last_log), "%s", msg);
	pthread_mutex_unlock(&log_lock);
}

static const char *log_suffix(void)
{
	static char buf[600];

	pthread_mutex_lock(&log_lock);
	snprintf(buf, sizeof(buf), "%s%s", last_log[0] ? "; library: " : "", last_log);
	last_log[0] = '\0';
	pthread_mutex_unlock(&log_lock);
	return buf;
}

static const char *err_str(int64_t err)
{
	return err < 0 ? strerror((int)-err) : "unexpected value";
}

/* ---- the data directory ------------------------------------------------ */

struct linux_dirent64_ {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/*
 * Remove everything in the directory open as dirfd, one level of
 * subdirectories deep.  Plain system calls only: it also runs from the
 * signal handler.
 */
static void empty_dir(int dirfd, int depth)
{
	char buf[4096] __attribute__((aligned(8)));
	bool removed = true;

	/* Entries removed while reading may shift what getdents returns:
	 * go round until a pass removes nothing. */
	while (removed) {
		long n;

		removed = false;
		lseek(dirfd, 0, SEEK_SET);
		while ((n = syscall(SYS_getdents64, dirfd, buf, sizeof(buf))) > 0) {
			for (long off = 0; off < n;) {
				struct linux_dirent64_ *d = (struct linux_dirent64_ *)(buf + off);

				off += d->d_reclen;
				if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
					continue;
				if (!unlinkat(dirfd, d->d_name, 0)) {
					removed = true;
					continue;
				}
				if (errno == EISDIR && depth > 0) {
					int sub = openat(dirfd, d->d_name,
							 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

					if (sub >= 0) {
						empty_dir(sub, depth - 1);
						close(sub);
					}
					if (!unlinkat(dirfd, d->d_name, AT_REMOVEDIR))
						removed = true;
				}
			}
		}
	}
}

static void remove_tree(const char *path, int depth)
{
	int fd;

	if (!path[0])
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	empty_dir(fd, depth);
	close(fd);
	rmdir(path);
}

static void sub_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", top_dir, name);
}

/* ---- helper processes ------------------------------------------------- */

/*
 * Two helpers, forked at the start while this process is small and has no
 * threads: a forker (maps and populates private memory, then times fork())
 * and a reader (follows the lag region with a private replica).  Fixed-size
 * messages on pipes, both ways; a helper exits when its command pipe closes.
 */
enum msg_kind {
	CMD_MAP = 1,	/* forker: map and populate value bytes */
	CMD_FORK,	/* forker: time one fork() */
	CMD_UNMAP,	/* forker: release the memory */
	CMD_OPEN,	/* reader: open a private replica of reader_dirs[value] */
	CMD_RUN,	/* reader: refresh in a loop, report each new epoch */
	CMD_STOP,	/* reader: stop the loop, report the copy's hash */
	MSG_REPLY,
	MSG_EPOCH,	/* reader: refreshed to epoch at t_ns */
	MSG_DONE,	/* reader: stopped at epoch, copy hash, CPU seconds of the run */
};

/* The regions the reader follows, by CMD_OPEN's value. */
static const char *const reader_dirs[] = { "lag", "cycle", "cycle-direct" };

struct msg {
	int32_t kind;
	int32_t err;		/* 0 or -errno */
	int64_t epoch;
	double t_ns;		/* CLOCK_MONOTONIC: the same clock in every process */
	double value;
	uint64_t hash;
};

struct helper {
	pid_t pid;
	int cmd;		/* we write */
	int reply;		/* we read */
};

static struct helper forker = { -1, -1, -1 }, reader = { -1, -1, -1 };

/*
 * Signals after which the data directory (GiBs of image and log) is
 * removed before dying: the ones a user or a timeout sends, a reader of
 * our output that went away, and a crash.
 */
static const int cleanup_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE,
				       SIGBUS, SIGSEGV, SIGABRT };

static bool write_msg(int fd, const struct msg *m)
{
	ssize_t n;

	do
		n = write(fd, m, sizeof(*m));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*m);
}

/* 1: a message; 0: the other end closed; -1: error or timeout (errno). */
static int read_msg(int fd, struct msg *m, int timeout_ms)
{
	size_t got = 0;

	while (got < sizeof(*m)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0)
			errno = ETIMEDOUT;
		if (r <= 0)
			return -1;
		n = read(fd, (char *)m + got, sizeof(*m) - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		got += (size_t)n;
	}
	return 1;
}

/* A helper's request: send cmd, wait for its reply.  Returns 0 or -errno. */
static int helper_call(struct helper *h, struct msg *cmd, struct msg *reply)
{
	int r;

	if (h->pid <= 0 || !write_msg(h->cmd, cmd))
		return -EPIPE;
	r = read_msg(h->reply, reply, HELPER_TIMEOUT_MS);
	if (r <= 0)
		return r ? -errno : -EPIPE;
	return reply->kind == MSG_REPLY ? reply->err : -EPROTO;
}

static void forker_main(int cmd_fd, int reply_fd)
{
	char *mem = MAP_FAILED;
	size_t len = 0;
	struct msg c;

	while (read_msg(cmd_fd, &c, -1) == 1) {
		struct msg m = { .kind = MSG_REPLY };

		switch (c.kind) {
		case CMD_MAP:
			len = (size_t)c.value;
			mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				   -1, 0);
			/* 4 KiB pages, as a database's heap after THP is turned
			 * off (Redis asks for that): a huge page forks as one
			 * entry and would flatter fork(). */
			if (mem == MAP_FAILED || madvise(mem, len, MADV_NOHUGEPAGE)) {
				m.err = -errno;
			} else if (madvise(mem, len, MADV_POPULATE_WRITE)) {
				if (errno != EINVAL)
					m.err = -errno;
				else
					for (size_t o = 0; o < len; o += ps)
						mem[o] = 1;
			}
			break;
		case CMD_FORK: {
			double t0 = bench_now_ns();
			pid_t pid = fork();
			double t1 = bench_now_ns();

			if (pid == 0)
				_exit(0);
			if (pid < 0) {
				m.err = -errno;
				break;
			}
			m.value = (t1 - t0) / 1e6;
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
			break;
		}
		case CMD_UNMAP:
			if (mem != MAP_FAILED)
				munmap(mem, len);
			mem = MAP_FAILED;
			break;
		default:
			m.err = -EINVAL;
		}
		if (!write_msg(reply_fd, &m))
			break;
	}
	_exit(0);
}

/* CPU seconds of this process (every thread) so far. */
static double process_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the calling thread so far. */
static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Refresh until told to stop, reporting every new epoch with its time; the
 * last message says the CPU the run took (before the copy is hashed).
 */
static void reader_run(struct pt_replica *rep, int cmd_fd, int reply_fd, size_t len)
{
	uint64_t last = pt_replica_epoch(rep);
	double cpu0 = process_cpu();

	for (;;) {
		int64_t e = pt_replica_refresh(rep, 100);
		double t = bench_now_ns();
		struct pollfd p = { .fd = cmd_fd, .events = POLLIN };
		struct msg c;

		if (e < 0) {
			write_msg(reply_fd, &(struct msg){ .kind = MSG_DONE, .err = (int32_t)e });
			return;
		}
		if ((uint64_t)e > last) {
			last = (uint64_t)e;
			if (!write_msg(reply_fd, &(struct msg){ .kind = MSG_EPOCH, .epoch = e,
								.t_ns = t }))
				return;
		}
		if (poll(&p, 1, 0) <= 0)
			continue;
		if (read_msg(cmd_fd, &c, -1) != 1)
			return;
		/* CMD_STOP (or anything else: stop too). */
		c.value = process_cpu() - cpu0;
		write_msg(reply_fd, &(struct msg){
			.kind = MSG_DONE, .epoch = (int64_t)pt_replica_epoch(rep),
			.hash = XXH3_64bits(pt_replica_base(rep), len), .value = c.value });
		return;
	}
}

static void reader_main(int cmd_fd, int reply_fd)
{
	struct pt_replica *rep = NULL;
	char dir[256];
	struct msg c;

	while (read_msg(cmd_fd, &c, -1) == 1) {
		struct msg m = { .kind = MSG_REPLY };
		int ret;

		switch (c.kind) {
		case CMD_OPEN:
			pt_replica_close(rep);
			rep = NULL;
			if (c.value < 0 || c.value >= (double)BENCH_ARRAY_SIZE(reader_dirs)) {
				m.err = -EINVAL;
				break;
			}
			sub_path(dir, sizeof(dir), reader_dirs[(size_t)c.value]);
			ret = pt_replica_open(&rep, dir, NULL);
			m.err = ret;
			m.epoch = ret ? 0 : (int64_t)pt_replica_epoch(rep);
			break;
		case CMD_RUN:
			if (!rep) {
				m.err = -EBADF;
				break;
			}
			if (!write_msg(reply_fd, &m))
				goto out;
			reader_run(rep, cmd_fd, reply_fd, (size_t)c.value);
			continue;
		default:
			m.err = -EINVAL;
		}
		if (!write_msg(reply_fd, &m))
			break;
	}
out:
	pt_replica_close(rep);
	_exit(0);
}

static int helper_start(struct helper *h, void (*fn)(int, int))
{
	int to[2], from[2];

	if (pipe2(to, O_CLOEXEC))
		return -errno;
	if (pipe2(from, O_CLOEXEC)) {
		close(to[0]);
		close(to[1]);
		return -errno;
	}
	fflush(NULL);
	h->pid = fork();
	if (h->pid == 0) {
		/* Die with the bench; only the bench cleans up. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (size_t i = 0; i < BENCH_ARRAY_SIZE(cleanup_signals); i++)
			signal(cleanup_signals[i], SIG_DFL);
		close(to[1]);
		close(from[0]);
		if (forker.cmd >= 0)
			close(forker.cmd);
		if (forker.reply >= 0)
			close(forker.reply);
		fn(to[0], from[1]);
		_exit(0);
	}
	close(to[0]);
	close(from[1]);
	if (h->pid < 0) {
		close(to[1]);
		close(from[0]);
		return -errno;
	}
	h->cmd = to[1];
	h->reply = from[0];
	return 0;
}

static void helper_stop(struct helper *h)
{
	if (h->cmd >= 0)
		close(h->cmd);	/* the helper sees EOF and exits */
	if (h->reply >= 0)
		close(h->reply);
	if (h->pid > 0)
		while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
			;
	h->pid = h->cmd = h->reply = -1;
}

static void on_signal(int sig)
{
	if (forker.pid > 0)
		kill(forker.pid, SIGKILL);
	if (reader.pid > 0)
		kill(reader.pid, SIGKILL);
	remove_tree(top_dir, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- memory and pages -------------------------------------------------- */

/* Touch one byte a page where MADV_POPULATE_* (Linux 5.14) is missing. */
static int populate(char *addr, size_t len, bool write)
{
	if (!madvise(addr, len, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ))
		return 0;
	if (errno != EINVAL)
		return -errno;
	for (size_t o = 0; o < len; o += ps) {
		if (write)
			((volatile char *)addr)[o] = 0;
		else
			(void)((volatile char *)addr)[o];
	}
	return 0;
}

/* Map len bytes of pre-faulted memory; MAP_FAILED with errno on failure. */
static char *map_populated(size_t len, int share_flag)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, share_flag | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (p == MAP_FAILED)
		return p;
	ret = populate(p, len, true);
	if (ret) {
		munmap(p, len);
		errno = -ret;
		return MAP_FAILED;
	}
	return p;
}

/* Make v[0..k) a fresh random choice of k distinct pages (partial shuffle). */
static void pick(uint64_t *v, uint64_t n, uint64_t k, uint64_t *seed)
{
	for (uint64_t i = 0; i < k && i < n; i++) {
		uint64_t j = i + t_rnd_next(seed) % (n - i), x = v[i];

		v[i] = v[j];
		v[j] = x;
	}
}

/* Give each listed page a value it never had. */
static void write_pages(char *base, const uint64_t *pages, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		*(volatile uint64_t *)(base + (pages[i] << page_shift)) = ++stamp;
}

static const char *dirty_label(char *buf, size_t len, uint64_t count)
{
	if (count)
		snprintf(buf, len, "%llu dirty", (unsigned long long)count);
	else
		snprintf(buf, len, "idle");
	return buf;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of n sorted values. */
static double percentile(const double *sorted, size_t n, double p)
{
	size_t rank = (size_t)ceil(p * (double)n);

	if (!n)
		return NAN;
	return sorted[rank ? rank - 1 : 0];
}

/* ---- regions ---------------------------------------------------------- */

struct region_cfg {
	enum pt_durability durability;
	uint64_t retain_bytes, segment_bytes;	/* 0: defaults */
	unsigned int flags;			/* PT_REGION_* besides NO_CHECKPOINT_THREAD */
	bool populate;
};

/*
 * Create the region top_dir/name, populate it, and make epoch 1 (empty).
 * Prints a failed row (section, method) and returns NULL on failure.
 */
static struct pt_region *region_new(const char *name, const struct region_cfg *cfg,
				    const char *method, char *dir, size_t dir_len)
{
	struct pt_region_opts o = {
		.sz = sizeof(o), .durability = cfg->durability,
		.flags = PT_REGION_NO_CHECKPOINT_THREAD | cfg->flags, .retain_bytes = cfg->retain_bytes,
		.segment_bytes = cfg->segment_bytes,
	};
	struct pt_region *r;
	int64_t e;
	int ret;

	sub_path(dir, dir_len, name);
	ret = pt_region_create(&r, dir, region_len, &o);
	if (ret) {
		bench_failed("memfd", method, "-", "pt_region_create(%s): %s%s", dir, strerror(-ret),
			     log_suffix());
		return NULL;
	}
	if (cfg->populate) {
		ret = populate(pt_region_base(r), region_len, false);
		if (ret) {
			bench_failed("memfd", method, "-", "populating the region: %s",
				     strerror(-ret));
			goto err;
		}
	}
	e = pt_region_sync(r);
	if (e != 1) {
		bench_failed("memfd", method, "-", "first sync returned %lld: %s%s", (long long)e,
			     err_str(e), log_suffix());
		goto err;
	}
	ret = pt_region_wait(r, 1, PT_LEVEL_DURABLE, WAIT_MS);
	if (ret) {
		bench_failed("memfd", method, "-", "epoch 1 not durable: %s%s", strerror(-ret),
			     log_suffix());
		goto err;
	}
	return r;
err:
	pt_region_close(r);
	remove_tree(dir, 0);
	return NULL;
}

/* Close and delete; a failed close is a failure (epochs not durable). */
static bool region_done(struct pt_region *r, const char *dir, const char *method)
{
	int ret = pt_region_close(r);

	remove_tree(dir, 0);
	if (ret) {
		bench_failed("memfd", method, "close", "pt_region_close: %s%s", strerror(-ret),
			     log_suffix());
		return false;
	}
	return true;
}

/* A private replica in this process must equal the writer at its epoch. */
static bool verify_by_replica(struct pt_region *r, const char *dir, const char *method)
{
	int64_t e = pt_region_epoch(r);
	struct pt_replica *rep;
	int ret;

	ret = pt_region_wait(r, (uint64_t)e, PT_LEVEL_PUBLISHED, WAIT_MS);
	if (ret) {
		bench_failed("memfd", method, "verify", "epoch %lld not published: %s%s",
			     (long long)e, strerror(-ret), log_suffix());
		return false;
	}
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret) {
		bench_failed("memfd", method, "verify", "pt_replica_open: %s%s", strerror(-ret),
			     log_suffix());
		return false;
	}
	if ((int64_t)pt_replica_epoch(rep) != e ||
	    memcmp(pt_replica_base(rep), pt_region_base(r), region_len)) {
		bench_failed("memfd", method, "verify",
			     "a replica at epoch %llu differs from the writer at epoch %lld",
			     (unsigned long long)pt_replica_epoch(rep), (long long)e);
		pt_replica_close(rep);
		return false;
	}
	pt_replica_close(rep);
	return true;
}

/* ---- 1. writer stall per sync, and the other ways to a copy -------------- */

/* Involuntary context switches of the calling thread so far. */
static long preemptions(void)
{
	struct rusage u;

	return getrusage(RUSAGE_THREAD, &u) ? 0 : u.ru_nivcsw;
}

/*
 * Time one sync after dirtying count pages; checks the epoch it returns.
 * *preempted (may be NULL) counts the syncs during which this thread lost
 * its CPU to another: then the figure holds that other's work too.
 */
static bool timed_sync(struct pt_region *r, const char *method, const uint64_t *pages,
		       uint64_t count, bool waited, double *ms, int *preempted)
{
	int64_t before = pt_region_epoch(r), e;
	char label[32];
	long switches;
	double t0;
	int ret;

	write_pages(pt_region_base(r), pages, count);
	switches = preemptions();
	t0 = bench_now_ns();
	e = pt_region_sync(r);
	*ms = (bench_now_ns() - t0) / 1e6;
	if (preempted && preemptions() != switches)
		(*preempted)++;
	dirty_label(label, sizeof(label), count);
	if (e < 0 || e != before + (count ? 1 : 0)) {
		bench_failed("memfd", method, label, "sync returned %lld after epoch %lld: %s%s",
			     (long long)e, (long long)before, err_str(e), log_suffix());
		return false;
	}
	/* Untimed: the next sync must find the staging memory free. */
	ret = waited ? 0 : pt_region_wait(r, (uint64_t)e, PT_LEVEL_DURABLE, WAIT_MS);
	if (ret) {
		bench_failed("memfd", method, label, "epoch %lld not durable: %s%s", (long long)e,
			     strerror(-ret), log_suffix());
		return false;
	}
	return true;
}

/*
 * A ratio row: num / den for each pair of samples taken in the same rep
 * (adjacent in time, so a slow phase of the machine hits both), median of
 * the pairs.  text NULL: no target.
 */
static void ratio_row(const char *method, const char *variant, const struct bench_samples *num,
		      const struct bench_samples *den, enum bench_cmp cmp, double limit,
		      const char *text, const char *note)
{
	struct bench_samples s = { 0 };
	struct bench_row row = { .memory = "memfd", .method = method, .variant = variant,
				 .unit = "x", .samples = &s, .note = note };

	for (int i = 0; i < num->n && i < den->n; i++)
		if (den->v[i] > 0)
			bench_add_sample(&s, num->v[i] / den->v[i]);
	if (!s.n) {
		bench_unavailable("memfd", method, variant, "needs both figures from this run");
		return;
	}
	if (text)
		row.targets[row.ntargets++] = (struct bench_target){ cmp, limit, text };
	bench_row(&row);
}

/*
 * fork() of this process, the writer, holding its region: the child exits
 * at once and is reaped outside the timing.  Run after the timed syncs of
 * that region: the fork leaves the writer's heap copy-on-write (not the
 * staging memory, which is MADV_DONTFORK), a few faults in the next syncs.
 */
static bool fork_writer(struct bench_samples *s)
{
	for (int rep = 0; rep < bench_opts.reps; rep++) {
		double t0, t1;
		pid_t pid;

		fflush(NULL);
		t0 = bench_now_ns();
		pid = fork();
		t1 = bench_now_ns();
		if (pid == 0)
			_exit(0);
		if (pid < 0) {
			bench_failed("memfd", "fork() of this writer", "-", "fork: %s",
				     strerror(errno));
			return false;
		}
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		bench_add_sample(s, (t1 - t0) / 1e6);
	}
	return true;
}

static void stall_rows(size_t pi, const struct bench_samples *samples, const int *preempted)
{
	char label[32], note[320];

	for (size_t di = 0; di < BENCH_ARRAY_SIZE(dirty_counts); di++) {
		struct bench_row row = { .memory = "memfd", .method = policies[pi].method,
					 .samples = &samples[di], .note = note };

		if (dirty_counts[di] > npages)
			continue;
		row.variant = dirty_label(label, sizeof(label), dirty_counts[di]);
		for (size_t ti = 0; ti < BENCH_ARRAY_SIZE(stall_targets); ti++)
			if (stall_targets[ti].pages == dirty_counts[di] && !policies[pi].waited &&
			    at_target_size)
				row.targets[row.ntargets++] = (struct bench_target){
					BENCH_AT_MOST, stall_targets[ti].ms, stall_targets[ti].text
				};
		note[0] = '\0';
		if (di == 0)
			snprintf(note, sizeof(note), "%s",
				 policies[pi].waited ?
				 "durable before return: collect, copy, checksum (by the "
				 "caller), then the log thread's pwrite and fdatasync" :
				 "returns once queued (checksum, publish, pwrite happen "
				 "after, on the seal and log threads)");
		if (preempted[di])
			snprintf(note + strlen(note), sizeof(note) - strlen(note),
				 "%sthe writer lost its CPU inside %d of these %d syncs",
				 note[0] ? "; " : "", preempted[di], samples[di].n);
		bench_row(&row);
	}
}

static void stall_section(const uint64_t *perm)
{
	enum { NPOL = BENCH_ARRAY_SIZE(policies) };
	struct bench_samples stall[NPOL][BENCH_ARRAY_SIZE(dirty_counts)];
	struct bench_samples s_copy = { 0 }, s_fork_anon = { 0 }, s_fork_writer = { 0 };
	int preempted[NPOL][BENCH_ARRAY_SIZE(dirty_counts)] = { { 0 } };
	struct pt_region *regions[NPOL] = { NULL };
	char title[200], dirs[NPOL][256];
	bool ok = true, forker_mapped = false;
	char *copy = MAP_FAILED;
	struct msg m;
	int ret;

	memset(stall, 0, sizeof(stall));
	snprintf(title, sizeof(title),
		 "writer stall per sync (time inside pt_region_sync), %ld MiB region, vs a full copy "
		 "and fork()", region_mib);
	bench_section("stall", title, "ms");

	/* The baselines' memory, populated once. */
	copy = map_populated(region_len, MAP_SHARED);
	if (copy == MAP_FAILED) {
		bench_failed("memfd", "memcpy whole region", "-", "copy buffer: %s",
			     strerror(errno));
		ok = false;
	}
	ret = helper_call(&forker, &(struct msg){ .kind = CMD_MAP, .value = (double)region_len },
			  &m);
	if (ret)
		bench_failed("anon", "fork() private memory", "-", "forker: %s", strerror(-ret));
	else
		forker_mapped = true;
	for (size_t pi = 0; pi < NPOL && ok; pi++) {
		const struct region_cfg cfg = { .durability = policies[pi].durability,
						.populate = true };

		regions[pi] = region_new(policies[pi].dir, &cfg, policies[pi].method, dirs[pi],
					 sizeof(dirs[pi]));
		ok = regions[pi] != NULL;
	}

	/* Every rep: the baselines, then each policy in turn, starting with a
	 * different one each time; a drifting machine load hits them all. */
	for (int rep = 0; rep < bench_opts.reps && ok; rep++) {
		double t0 = bench_now_ns();

		memcpy(copy, pt_region_base(regions[0]), region_len);
		bench_add_sample(&s_copy, (bench_now_ns() - t0) / 1e6);
		if (memcmp(copy, pt_region_base(regions[0]), region_len)) {
			bench_failed("memfd", "memcpy whole region", "-", "the copy differs");
			ok = false;
			break;
		}
		if (forker_mapped) {
			ret = helper_call(&forker, &(struct msg){ .kind = CMD_FORK }, &m);
			if (ret) {
				bench_failed("anon", "fork() private memory", "-", "forker: %s",
					     strerror(-ret));
				forker_mapped = false;
			} else {
				bench_add_sample(&s_fork_anon, m.value);
			}
		}
		for (size_t k = 0; k < NPOL && ok; k++) {
			size_t pi = ((size_t)rep + k) % NPOL;
			double ms;

			/* An untimed idle sync first: each policy's figures
			 * start from the same state. */
			ok = timed_sync(regions[pi], policies[pi].method, perm, 0, true, &ms, NULL);
			for (size_t di = 0; di < BENCH_ARRAY_SIZE(dirty_counts) && ok; di++) {
				if (dirty_counts[di] > npages)
					continue;
				ok = timed_sync(regions[pi], policies[pi].method, perm,
						dirty_counts[di], policies[pi].waited, &ms,
						&preempted[pi][di]);
				bench_add_sample(&stall[pi][di], ms);
			}
		}
	}
	if (copy != MAP_FAILED)
		munmap(copy, region_len);
	if (forker_mapped)
		helper_call(&forker, &(struct msg){ .kind = CMD_UNMAP }, &m);
	/* Last, fork() of the writer holding its one region: the others are
	 * closed first, and its syncs are done (see fork_writer()). */
	for (size_t pi = NPOL; pi-- > 0;) {
		if (!regions[pi])
			continue;
		if (ok && pi == 0)
			ok = fork_writer(&s_fork_writer);
		if (ok)
			ok = verify_by_replica(regions[pi], dirs[pi], policies[pi].method);
		ok = region_done(regions[pi], dirs[pi], policies[pi].method) && ok;
	}
	if (!ok)
		return;
	for (size_t pi = 0; pi < NPOL; pi++) {
		stall_rows(pi, stall[pi], preempted[pi]);
		if (pi)
			continue;
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "memcpy whole region",
					       .variant = "-", .samples = &s_copy });
		bench_row(&(struct bench_row){
			.memory = "memfd", .method = "fork() of this writer", .variant = "-",
			.samples = &s_fork_writer,
			.note = "MAP_SHARED region: fork() copies none of its page tables, and "
				"the child would see later writes (no consistent copy)" });
		if (s_fork_anon.n)
			bench_row(&(struct bench_row){
				.memory = "anon", .method = "fork() private memory",
				.variant = "populated", .samples = &s_fork_anon,
				.note = "a process holding the region's size in private 4 KiB "
					"pages: Redis's copy-on-write snapshot" });
	}

	/* At 100 dirty pages: <= 1/20 of fork() and <= 1/50 of the full copy. */
	bench_section("stall-ratio", "other ways to a consistent copy, over the stall at 100 dirty pages",
		      "x");
	for (size_t pi = 0; pi < NPOL; pi++) {
		char method[48];

		if (policies[pi].waited || npages < 100)
			continue;
		snprintf(method, sizeof(method), "fork anon / %s", policies[pi].method);
		ratio_row(method, "100 dirty", &s_fork_anon, &stall[pi][1], BENCH_AT_LEAST, 20,
			  at_target_size ? ">= 20x" : NULL, NULL);
		snprintf(method, sizeof(method), "memcpy / %s", policies[pi].method);
		ratio_row(method, "100 dirty", &s_copy, &stall[pi][1], BENCH_AT_LEAST, 50,
			  at_target_size ? ">= 50x" : NULL, NULL);
		snprintf(method, sizeof(method), "fork writer / %s", policies[pi].method);
		ratio_row(method, "100 dirty", &s_fork_writer, &stall[pi][1], BENCH_AT_LEAST, 0, NULL,
			  pi == 0 ? "no target: that fork() gives no consistent copy of shared memory"
				  : NULL);
	}
}

/* ---- 2. replica lag ---------------------------------------------------- */

/*
 * Wait for the reader to report epoch e (or a later one) in *m.  Returns 0,
 * or with the reason in why: 1 when the reader may still be running, -1
 * when it stopped.  While waiting, a log that cannot publish fails at once.
 */
static int await_epoch(struct pt_region *r, int64_t e, struct msg *m, char *why, size_t len)
{
	double deadline = bench_now_ns() + HELPER_TIMEOUT_MS * 1e6;

	for (;;) {
		int ret = read_msg(reader.reply, m, 200);

		if (ret == 1 && m->kind == MSG_EPOCH) {
			if (m->epoch >= e)
				return 0;
			continue;
		}
		if (ret == 1) {
			snprintf(why, len, "the replica process stopped: %s",
				 m->kind == MSG_DONE ? err_str(m->err) : "unexpected message");
			return -1;
		}
		if (ret == 0) {
			snprintf(why, len, "the replica process exited");
			return -1;
		}
		if (errno != ETIMEDOUT) {
			snprintf(why, len, "reading from the replica process: %s", strerror(errno));
			return 1;
		}
		ret = pt_region_wait(r, (uint64_t)e, PT_LEVEL_PUBLISHED, 0);
		if (ret && ret != -ETIMEDOUT) {
			snprintf(why, len, "never published: %s%s", strerror(-ret), log_suffix());
			return 1;
		}
		if (bench_now_ns() > deadline) {
			snprintf(why, len, "%s, but the replica process did not reach it in %d s",
				 ret ? "not published" : "published", HELPER_TIMEOUT_MS / 1000);
			return 1;
		}
	}
}

/*
 * Stop the reader's refresh loop; its copy must be the writer's memory at
 * the writer's epoch.  *m is its last message (m->value: CPU seconds).
 */
static bool reader_stop(struct pt_region *r, const char *method, struct msg *m)
{
	int ret;

	if (!write_msg(reader.cmd, &(struct msg){ .kind = CMD_STOP })) {
		bench_failed("memfd", method, "-", "reader gone");
		return false;
	}
	do
		ret = read_msg(reader.reply, m, HELPER_TIMEOUT_MS);
	while (ret == 1 && m->kind == MSG_EPOCH);
	if (ret != 1 || m->kind != MSG_DONE || m->err) {
		bench_failed("memfd", method, "-", "reader did not stop cleanly: %s",
			     ret == 1 ? err_str(m->err) : "no answer");
		return false;
	}
	if (m->epoch != pt_region_epoch(r) ||
	    m->hash != XXH3_64bits(pt_region_base(r), region_len)) {
		bench_failed("memfd", method, "-",
			     "the replica process's copy at epoch %lld differs from the writer at %lld",
			     (long long)m->epoch, (long long)pt_region_epoch(r));
		return false;
	}
	return true;
}

/* After a failure: leave the reader idle for the next use (or its exit). */
static void reader_abandon(void)
{
	struct msg m;
	int ret;

	write_msg(reader.cmd, &(struct msg){ .kind = CMD_STOP });
	do
		ret = read_msg(reader.reply, &m, 5000);
	while (ret == 1 && m.kind == MSG_EPOCH);
}

/*
 * Replica lag with the writer on a policy that does not wait for
 * durability (with on-sync the epoch is published before sync returns).
 */
static void lag_run(enum pt_durability durability, const char *policy)
{
	const struct region_cfg cfg = { .durability = durability, .populate = true };
	struct bench_samples s50 = { 0 }, s99 = { 0 };
	uint64_t *pages = NULL, seed = SEED_LAG, early = 0;
	double *lag = NULL, worst = 0;
	char dir[256], note[200], method[48], m50[48], m99[48], why[800];
	struct pt_region *r = NULL;
	bool ok = false, running = false;
	struct msg m;
	int ret;

	snprintf(method, sizeof(method), "lag, %s", policy);
	snprintf(m50, sizeof(m50), "lag p50, %s", policy);
	snprintf(m99, sizeof(m99), "lag p99, %s", policy);
	if (npages < LAG_PAGES) {
		bench_unavailable("memfd", method, "-", "region smaller than %d pages", LAG_PAGES);
		return;
	}
	pages = t_rnd_permutation(npages, SEED_LAG);
	lag = malloc((size_t)lag_syncs * sizeof(*lag));
	if (!pages || !lag) {
		bench_failed("memfd", method, "-", "out of memory");
		goto out;
	}
	r = region_new("lag", &cfg, method, dir, sizeof(dir));
	if (!r)
		goto out;
	ret = helper_call(&reader, &(struct msg){ .kind = CMD_OPEN, .value = 0 }, &m);
	if (ret || m.epoch != 1) {
		bench_failed("memfd", method, "-", "replica in the reader process: %s, epoch %lld",
			     ret ? strerror(-ret) : "opened", (long long)m.epoch);
		goto out;
	}
	ret = helper_call(&reader, &(struct msg){ .kind = CMD_RUN, .value = (double)region_len },
			  &m);
	if (ret) {
		bench_failed("memfd", method, "-", "reader: %s", strerror(-ret));
		goto out;
	}
	running = true;
	for (int rep = 0; rep < bench_opts.reps; rep++) {
		for (long i = 0; i < lag_syncs; i++) {
			int64_t before = pt_region_epoch(r), e;
			double t_sync;

			pick(pages, npages, LAG_PAGES, &seed);
			write_pages(pt_region_base(r), pages, LAG_PAGES);
			e = pt_region_sync(r);
			t_sync = bench_now_ns();
			if (e != before + 1) {
				bench_failed("memfd", method, "-", "sync returned %lld after %lld: %s%s",
					     (long long)e, (long long)before, err_str(e),
					     log_suffix());
				goto out;
			}
			/* The reader reports every epoch it reaches; the next
			 * sync waits for it, so each epoch is timed alone. */
			ret = await_epoch(r, e, &m, why, sizeof(why));
			if (ret) {
				bench_failed("memfd", method, "-", "epoch %lld: %s", (long long)e, why);
				running = ret > 0;
				goto out;
			}
			if (m.epoch != e) {
				bench_failed("memfd", method, "-",
					     "the replica reports epoch %lld, the writer made %lld",
					     (long long)m.epoch, (long long)e);
				goto out;
			}
			/* The log thread may publish before sync returns. */
			lag[i] = (m.t_ns - t_sync) / 1e6;
			if (lag[i] < 0) {
				lag[i] = 0;
				early++;
			}
			if (lag[i] > worst)
				worst = lag[i];
		}
		qsort(lag, (size_t)lag_syncs, sizeof(*lag), cmp_double);
		bench_add_sample(&s50, percentile(lag, (size_t)lag_syncs, 0.50));
		bench_add_sample(&s99, percentile(lag, (size_t)lag_syncs, 0.99));
	}
	/* The copy in the other process must equal the writer's memory. */
	running = false;
	if (!reader_stop(r, method, &m))
		goto out;
	ok = true;
out:
	if (running)
		reader_abandon();
	if (r && !region_done(r, dir, method))
		ok = false;
	if (ok) {
		snprintf(note, sizeof(note),
			 "worst %.2f ms; %llu of %ld syncs published before sync returned (lag 0)",
			 worst, (unsigned long long)early, lag_syncs * bench_opts.reps);
		bench_row(&(struct bench_row){
			.memory = "memfd", .method = m50, .variant = "1000 dirty",
			.samples = &s50, .ntargets = 1,
			.targets = { { BENCH_AT_MOST, 1, "<= 1 ms" } } });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = m99,
					       .variant = "1000 dirty", .samples = &s99,
					       .note = note });
	}
	free(pages);
	free(lag);
}

static void lag_section(void)
{
	char title[200];

	snprintf(title, sizeof(title),
		 "replica lag: sync return to a private replica in another process refreshed to "
		 "that epoch, %d dirty pages, p50 and p99 of %ld syncs a run", LAG_PAGES, lag_syncs);
	bench_section("lag", title, "ms");
	lag_run(PT_DURABLE_BACKGROUND, "background");
	lag_run(PT_DURABLE_NONE, "none");
}

/* ---- 3. catch-up from the image ---------------------------------------- */

/* Time reading the whole image file into buf (len bytes, pre-faulted). */
static int read_image(const char *dir, char *buf, size_t len, double *ms)
{
	char path[300];
	size_t done = 0;
	double t0;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/image", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	t0 = bench_now_ns();
	while (done < len) {
		size_t want = len - done < (64u << 20) ? len - done : (64u << 20);
		ssize_t n = pread(fd, buf + done, want, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : -ENODATA;
			break;
		}
		done += (size_t)n;
	}
	*ms = (bench_now_ns() - t0) / 1e6;
	close(fd);
	return ret;
}

static void catchup_section(void)
{
	static const struct {
		unsigned int percent;
		const char *label;
	} shares[] = { { 1, "1% changed" }, { 10, "10% changed" }, { 100, "100% changed" } };
	/* One byte of retention and one record a segment: a checkpoint drops
	 * every segment but the newest, so the replica must go through the
	 * image. */
	const struct region_cfg cfg = { .durability = PT_DURABLE_NONE, .retain_bytes = 1,
					.segment_bytes = 1 };
	const char *method = "refresh from image";
	struct bench_samples s_catch[BENCH_ARRAY_SIZE(shares)], s_image = { 0 };
	uint64_t *pages = NULL, seed = SEED_CATCHUP;
	struct pt_replica *rep = NULL;
	struct pt_region *r = NULL;
	char title[200], dir[256], path[300], note[160];
	char *img = MAP_FAILED;
	size_t img_len = 0;
	struct stat st;
	bool ok = false;
	int ret;

	memset(s_catch, 0, sizeof(s_catch));
	snprintf(title, sizeof(title),
		 "catch-up: a private replica refreshes through the image (log retention 1 byte), "
		 "%ld MiB region, vs reading the whole image", region_mib);
	bench_section("catch-up", title, "ms");
	pages = t_rnd_permutation(npages, SEED_CATCHUP);
	if (!pages) {
		bench_failed("memfd", method, "-", "out of memory");
		return;
	}
	r = region_new("catch-up", &cfg, method, dir, sizeof(dir));
	if (!r)
		goto out;
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret) {
		bench_failed("memfd", method, "-", "pt_replica_open: %s%s", strerror(-ret),
			     log_suffix());
		goto out;
	}
	snprintf(path, sizeof(path), "%s/image", dir);
	if (stat(path, &st)) {
		bench_failed("memfd", "read whole image", "-", "%s: %s", path, strerror(errno));
		goto out;
	}
	img_len = (size_t)st.st_size;
	img = map_populated(img_len, MAP_PRIVATE);
	if (img == MAP_FAILED) {
		bench_failed("memfd", "read whole image", "-", "buffer: %s", strerror(errno));
		goto out;
	}

	for (int rep_i = 0; rep_i < bench_opts.reps; rep_i++) {
		for (size_t si = 0; si < BENCH_ARRAY_SIZE(shares); si++) {
			uint64_t k = npages * shares[si].percent / 100, n0 = pt_replica_image_pages(rep);
			int64_t start = pt_region_epoch(r), e, got;
			double t0, ms;

			if (!k)
				continue;
			/* The replica sits at the writer's epoch N. */
			if ((int64_t)pt_replica_epoch(rep) != start) {
				bench_failed("memfd", method, shares[si].label,
					     "replica at %llu before the changes, writer at %lld",
					     (unsigned long long)pt_replica_epoch(rep),
					     (long long)start);
				goto out;
			}
			pick(pages, npages, k, &seed);
			for (uint64_t done = 0; done < k; done += CATCHUP_CHUNK) {
				uint64_t n = k - done < CATCHUP_CHUNK ? k - done : CATCHUP_CHUNK;

				write_pages(pt_region_base(r), pages + done, n);
				e = pt_region_sync(r);
				if (e < 0) {
					bench_failed("memfd", method, shares[si].label, "sync: %s%s",
						     strerror((int)-e), log_suffix());
					goto out;
				}
			}
			/* One more epoch, on a page already changed, in a segment
			 * of its own: the one holding epoch N + 1 can go. */
			write_pages(pt_region_base(r), pages, 1);
			e = pt_region_sync(r);
			if (e <= start + 1) {
				bench_failed("memfd", method, shares[si].label,
					     "sync returned %lld after %lld: %s%s", (long long)e,
					     (long long)start, err_str(e), log_suffix());
				goto out;
			}
			got = pt_region_checkpoint(r);
			if (got != e) {
				bench_failed("memfd", method, shares[si].label,
					     "checkpoint reached %lld, not %lld: %s%s", (long long)got,
					     (long long)e, err_str(got), log_suffix());
				goto out;
			}

			t0 = bench_now_ns();
			got = pt_replica_refresh(rep, 0);
			ms = (bench_now_ns() - t0) / 1e6;
			if (got != e) {
				bench_failed("memfd", method, shares[si].label,
					     "refresh from %lld returned %lld, writer at %lld: %s%s",
					     (long long)start, (long long)got, (long long)e,
					     err_str(got), log_suffix());
				goto out;
			}
			/* Through the image, and only the changed pages. */
			if (pt_replica_image_pages(rep) - n0 != k) {
				bench_failed("memfd", method, shares[si].label,
					     "%llu pages came from the image, %llu changed%s",
					     (unsigned long long)(pt_replica_image_pages(rep) - n0),
					     (unsigned long long)k,
					     pt_replica_image_pages(rep) == n0 ?
					     " (the log still held the records?)" : "");
				goto out;
			}
			if (memcmp(pt_replica_base(rep), pt_region_base(r), region_len)) {
				bench_failed("memfd", method, shares[si].label,
					     "replica differs from the writer at epoch %lld",
					     (long long)e);
				goto out;
			}
			bench_add_sample(&s_catch[si], ms);
		}
		/* The baseline in the same run, from the same (warm) page cache. */
		ret = read_image(dir, img, img_len, &(double){ 0 });
		if (!ret) {
			double ms;

			ret = read_image(dir, img, img_len, &ms);
			bench_add_sample(&s_image, ms);
		}
		if (ret) {
			bench_failed("memfd", "read whole image", "-", "%s", strerror(-ret));
			goto out;
		}
	}
	ok = true;
out:
	pt_replica_close(rep);
	if (img != MAP_FAILED)
		munmap(img, img_len);
	if (r && !region_done(r, dir, method))
		ok = false;
	free(pages);
	if (!ok)
		return;
	for (size_t si = 0; si < BENCH_ARRAY_SIZE(shares); si++) {
		if (!s_catch[si].n)
			continue;
		snprintf(note, sizeof(note), "%llu pages copied from the image, checksummed",
			 (unsigned long long)(npages * shares[si].percent / 100));
		bench_row(&(struct bench_row){ .memory = "memfd", .method = method,
					       .variant = shares[si].label, .samples = &s_catch[si],
					       .note = note });
	}
	snprintf(note, sizeof(note), "%zu bytes with pread, page cache warm (as for the catch-up)",
		 img_len);
	bench_row(&(struct bench_row){ .memory = "memfd", .method = "read whole image",
				       .variant = "-", .samples = &s_image, .note = note });
	for (size_t si = 0; si < BENCH_ARRAY_SIZE(shares); si++)
		if (s_catch[si].n)
			ratio_row("whole image / catch-up", shares[si].label, &s_image,
				  &s_catch[si], BENCH_AT_LEAST, 0, NULL, NULL);
}

/* ---- 4. durable sync against the raw write ------------------------------ */

static void durable_section(const uint64_t *perm)
{
	const struct region_cfg cfg = { .durability = PT_DURABLE_ON_SYNC, .populate = true };
	const char *method = "sync on-sync";
	struct bench_samples s_sync = { 0 }, s_raw = { 0 };
	size_t raw_len = (size_t)DURABLE_PAGES << page_shift;
	char title[200], dir[256], path[300], note[200];
	struct pt_region *r = NULL;
	char *raw = NULL;
	off_t raw_off = 0;
	bool ok = false;
	int fd = -1;

	snprintf(title, sizeof(title),
		 "durable sync of %d pages vs pwrite + fdatasync of the same bytes, %ld MiB region",
		 DURABLE_PAGES, region_mib);
	bench_section("durable", title, "ms");
	if (npages < DURABLE_PAGES) {
		bench_unavailable("memfd", method, "-", "region smaller than %d pages",
				  DURABLE_PAGES);
		return;
	}
	raw = malloc(raw_len);
	if (!raw) {
		bench_failed("memfd", method, "-", "out of memory");
		return;
	}
	r = region_new("durable", &cfg, method, dir, sizeof(dir));
	if (!r)
		goto out;
	/* Beside the log, so both go to the same filesystem and device. */
	snprintf(path, sizeof(path), "%s/raw-baseline", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		bench_failed("memfd", "pwrite+fdatasync", "-", "%s: %s", path, strerror(errno));
		goto out;
	}
	for (int rep = 0; rep < bench_opts.reps; rep++) {
		/* Alternate which goes first: neither always follows the other's I/O. */
		for (int side = 0; side < 2; side++) {
			double ms, t0;

			if ((side ^ rep) & 1) {
				if (!timed_sync(r, method, perm, DURABLE_PAGES, true, &ms, NULL))
					goto out;
				bench_add_sample(&s_sync, ms);
				continue;
			}
			/* The same bytes: the pages the sync logs, appended as
			 * the log appends its records. */
			for (int i = 0; i < DURABLE_PAGES; i++)
				memcpy(raw + ((size_t)i << page_shift),
				       (char *)pt_region_base(r) + (perm[i] << page_shift), ps);
			t0 = bench_now_ns();
			if (pwrite(fd, raw, raw_len, raw_off) != (ssize_t)raw_len || fdatasync(fd)) {
				bench_failed("memfd", "pwrite+fdatasync", "-", "%s: %s", path,
					     strerror(errno ? errno : EIO));
				goto out;
			}
			bench_add_sample(&s_raw, (bench_now_ns() - t0) / 1e6);
			raw_off += (off_t)raw_len;
		}
	}
	ok = verify_by_replica(r, dir, method);
out:
	if (fd >= 0)
		close(fd);
	if (r && !region_done(r, dir, method))
		ok = false;
	free(raw);
	if (!ok)
		return;
	bench_row(&(struct bench_row){ .memory = "memfd", .method = method, .variant = "1000 dirty",
				       .samples = &s_sync });
	snprintf(note, sizeof(note), "%zu bytes appended to a file beside the log, then fdatasync",
		 raw_len);
	bench_row(&(struct bench_row){ .memory = "memfd", .method = "pwrite+fdatasync",
				       .variant = "same bytes", .samples = &s_raw, .note = note });
	ratio_row("on-sync / raw", "1000 dirty", &s_sync, &s_raw, BENCH_AT_MOST, 1.2,
		  at_target_size ? "<= 1.2x" : NULL, NULL);
}

/* ---- 5. recycled log segments against fresh ones ----------------------- */

/* Call fn on the path of each file in dir whose name starts with prefix. */
static void each_file(const char *dir, const char *prefix, void (*fn)(const char *path))
{
	struct dirent *de;
	char path[600];
	DIR *d = opendir(dir);

	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix))) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			fn(path);
		}
	if (d)
		closedir(d);
}

static void unlink_file(const char *path)
{
	unlink(path);
}

/* Remove the spare segments a checkpoint kept: the next segment is new. */
static void drop_spares(const char *dir)
{
	each_file(dir, "spare-", unlink_file);
}

/*
 * Durable syncs of DURABLE_PAGES pages into segments that hold two records,
 * a checkpoint (untimed) after every second sync dropping the full ones:
 * with the spares kept (recycled: appends overwrite allocated blocks) and
 * with them removed (every segment a new file); recycled, with the log
 * written O_DIRECT; and both of those again from regions whose own threads
 * run on another CPU than this one (an application that places its
 * threads, see docs/replication.md, "Scheduling": the log thread then
 * writes a record's pages while the sync copies them).  Baselines of the
 * same run: the same bytes appended to a growing file, and overwriting a
 * file written once beforehand, each followed by fdatasync.
 */
#define RECYCLE_REGIONS 5

static void recycle_section(const uint64_t *perm)
{
	static const struct {
		const char *name, *sub, *ratio_app, *ratio_over;
		unsigned int flags;
		bool apart, fresh, target;
	} cfgs[RECYCLE_REGIONS] = {
		{ "fresh segments", "fresh", NULL, NULL, 0, false, true, false },
		{ "recycled segments", "recycled", "recycled / raw append",
		  "recycled / raw overwrite", 0, false, false, true },
		{ "recycled, O_DIRECT", "direct", "O_DIRECT / raw append",
		  "O_DIRECT / raw overwrite", PT_REGION_DIRECT_LOG, false, false, false },
		{ "recycled, threads apart", "apart", NULL, "apart / raw overwrite", 0, true,
		  false, false },
		{ "O_DIRECT, threads apart", "direct-apart", "direct+apart / append",
		  "direct+apart / overwrite", PT_REGION_DIRECT_LOG, true, false, true },
	};
	size_t raw_len = (size_t)DURABLE_PAGES << page_shift;
	struct bench_samples s[RECYCLE_REGIONS] = { { 0 } }, s_app = { 0 }, s_over = { 0 };
	struct region_cfg cfg = { .durability = PT_DURABLE_ON_SYNC, .populate = true,
				  .retain_bytes = 1 };
	char dir[RECYCLE_REGIONS][256], path[300], title[200];
	struct pt_region *r[RECYCLE_REGIONS] = { NULL };
	cpu_set_t all, mine;
	bool apart, ok = false;
	int me, lib;
	off_t app_off = 0, over_off = 0;
	int afd = -1, ofd = -1;
	char *raw = NULL;

	/* A record: its head (header, then 16 bytes a page of index and
	 * sums, to a page boundary) and its pages.  Segments of two: a roll
	 * every second sync. */
	cfg.segment_bytes = ps + 2 * (raw_len + (size_t)DURABLE_PAGES * 16 + 2 * ps);
	snprintf(title, sizeof(title), "durable syncs of %d pages, segments of two records, "
		 "recycled or new; raw append and overwrite baselines", DURABLE_PAGES);
	bench_section("recycle", title, "ms");
	if (npages < DURABLE_PAGES) {
		bench_unavailable("memfd", cfgs[1].name, "-", "region smaller than %d pages",
				  DURABLE_PAGES);
		return;
	}
	raw = malloc(raw_len);
	if (!raw) {
		bench_failed("memfd", cfgs[1].name, "-", "out of memory");
		return;
	}
	apart = !sched_getaffinity(0, sizeof(all), &all) && t_two_cpus(&all, &lib, &me);
	if (apart) {
		CPU_ZERO(&mine);
		CPU_SET(me, &mine);
	}
	for (int k = 0; k < RECYCLE_REGIONS; k++) {
		if (cfgs[k].apart && !apart) {
			bench_unavailable("memfd", cfgs[k].name, "1000 dirty", "a single CPU");
			continue;
		}
		cfg.flags = cfgs[k].flags;
		r[k] = region_new(cfgs[k].sub, &cfg, cfgs[k].name, dir[k], sizeof(dir[k]));
		if (!r[k])
			goto out;
		if (cfgs[k].apart && !t_place_region_threads(r[k], lib)) {
			bench_failed("memfd", cfgs[k].name, "-",
				     "could not place the library's threads");
			goto out;
		}
	}
	snprintf(path, sizeof(path), "%s/raw-append", dir[0]);
	afd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	snprintf(path, sizeof(path), "%s/raw-overwrite", dir[0]);
	ofd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (afd < 0 || ofd < 0) {
		bench_failed("memfd", "pwrite+fdatasync", "-", "%s: %s", path, strerror(errno));
		goto out;
	}
	/* The overwrite baseline's file, written and made durable once. */
	memset(raw, 0x5a, raw_len);
	for (int i = 0; i < 4; i++)
		if (pwrite(ofd, raw, raw_len, (off_t)i * (off_t)raw_len) != (ssize_t)raw_len)
			goto out;
	if (fsync(ofd))
		goto out;
	for (int rep = 0; rep < 2 * bench_opts.reps + 4; rep++) {
		for (int k = 0; k < RECYCLE_REGIONS; k++) {
			double ms;
			bool timed;

			if (!r[k])
				continue;
			if (cfgs[k].apart)
				sched_setaffinity(0, sizeof(mine), &mine);
			timed = timed_sync(r[k], cfgs[k].name, perm, DURABLE_PAGES, true, &ms, NULL);
			if (cfgs[k].apart)
				sched_setaffinity(0, sizeof(all), &all);
			if (!timed)
				goto out;
			/* The first four fill and drop the first segments: from
			 * then on the recycled regions have spares to take. */
			if (rep >= 4)
				bench_add_sample(&s[k], ms);
			if (rep % 2 && pt_region_checkpoint(r[k]) < 0) {
				bench_failed("memfd", cfgs[k].name, "-", "checkpoint failed%s",
					     log_suffix());
				goto out;
			}
			if (cfgs[k].fresh)
				drop_spares(dir[k]);
		}
		for (int i = 0; i < DURABLE_PAGES; i++)
			memcpy(raw + ((size_t)i << page_shift),
			       (char *)pt_region_base(r[0]) + (perm[i] << page_shift), ps);
		{
			double t0 = bench_now_ns();

			if (pwrite(afd, raw, raw_len, app_off) != (ssize_t)raw_len || fdatasync(afd))
				goto out;
			if (rep >= 4)
				bench_add_sample(&s_app, (bench_now_ns() - t0) / 1e6);
			app_off += (off_t)raw_len;
			t0 = bench_now_ns();
			if (pwrite(ofd, raw, raw_len, over_off) != (ssize_t)raw_len || fdatasync(ofd))
				goto out;
			if (rep >= 4)
				bench_add_sample(&s_over, (bench_now_ns() - t0) / 1e6);
			over_off = (over_off + (off_t)raw_len) % (4 * (off_t)raw_len);
		}
	}
	ok = verify_by_replica(r[1], dir[1], cfgs[1].name) &&
	     verify_by_replica(r[2], dir[2], cfgs[2].name);
out:
	if (afd >= 0)
		close(afd);
	if (ofd >= 0)
		close(ofd);
	for (int k = 0; k < RECYCLE_REGIONS; k++)
		if (r[k] && !region_done(r[k], dir[k], cfgs[k].name))
			ok = false;
	free(raw);
	if (!ok)
		return;
	bench_row(&(struct bench_row){ .memory = "memfd", .method = "pwrite+fdatasync",
				       .variant = "append", .samples = &s_app });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = "pwrite+fdatasync",
				       .variant = "overwrite", .samples = &s_over });
	for (int k = 0; k < RECYCLE_REGIONS; k++) {
		if (!r[k] && cfgs[k].apart)
			continue;
		bench_row(&(struct bench_row){ .memory = "memfd", .method = cfgs[k].name,
					       .variant = "1000 dirty", .samples = &s[k] });
		if (cfgs[k].ratio_app)
			ratio_row(cfgs[k].ratio_app, "1000 dirty", &s[k], &s_app, BENCH_AT_MOST, 1.0,
				  cfgs[k].target ? "<= 1.0x" : NULL, NULL);
		if (cfgs[k].ratio_over)
			ratio_row(cfgs[k].ratio_over, "1000 dirty", &s[k], &s_over, BENCH_AT_MOST,
				  1.3, cfgs[k].target ? "<= 1.3x" : NULL, NULL);
	}
	ratio_row("recycled / fresh", "1000 dirty", &s[1], &s[0], BENCH_AT_MOST, 1.0, NULL, NULL);
}

/* ---- 6. each written page, from collect to the image ------------------- */

/*
 * Bytes hashed: this program's XXH3_64bits() and XXH3_64bits_dispatch()
 * stand in front of libxxhash's (the executable's definitions win, for the
 * library linked in statically too), count the bytes and call the real
 * ones.  The library is measured unchanged, so this program gives the
 * same figures for an older build, the baseline.
 */
static XXH64_hash_t (*real_xxh3)(const void *, size_t);
static uint64_t hashed_bytes;

XXH64_hash_t XXH3_64bits(const void *data, size_t len)
{
	__atomic_add_fetch(&hashed_bytes, len, __ATOMIC_RELAXED);
	return real_xxh3(data, len);
}

/* The vector unit's entry (x86), which the library's page hash calls. */
static XXH64_hash_t (*real_xxh3_dispatch)(const void *, size_t);
XXH64_hash_t XXH3_64bits_dispatch(const void *data, size_t len);
XXH64_hash_t XXH3_64bits_dispatch(const void *data, size_t len)
{
	__atomic_add_fetch(&hashed_bytes, len, __ATOMIC_RELAXED);
	return real_xxh3_dispatch(data, len);
}

static uint64_t hashed_now(void)
{
	return __atomic_load_n(&hashed_bytes, __ATOMIC_RELAXED);
}

/* The calling thread's read(2) family totals: bytes and calls (rchar, syscr). */
static bool thread_reads(uint64_t *bytes, uint64_t *calls)
{
	char line[128];
	int got = 0;
	FILE *f = fopen("/proc/thread-self/io", "re");

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "rchar: %llu", &v) == 1) {
			*bytes = v;
			got |= 1;
		} else if (sscanf(line, "syscr: %llu", &v) == 1) {
			*calls = v;
			got |= 2;
		}
	}
	fclose(f);
	return got == 3;
}

/* What one cycle (cycle_syncs syncs and a checkpoint) measured. */
struct cycle_figures {
	double sync_us, threads_us, ckpt_us, replica_us;	/* CPU per written page */
	double ckpt_ms;			/* the checkpoint's time */
	double read_ratio;		/* checkpoint bytes read / image page bytes */
	double reads_per_page;		/* read calls per image page */
	double seal_hashes;		/* page hashes per written page, syncs to durable */
	double ckpt_hashes;		/* page hashes per image page, in the checkpoint */
	double lag_ms;			/* a replica a cycle behind: its refresh */
	double lag_ratio;		/* its bytes read / the distinct pages' bytes */
	uint64_t pages, distinct;
};

/* Most writes go to a hot set (the order books), a few anywhere. */
static void cycle_pick(uint64_t *v, const uint64_t *hot, uint64_t *seed)
{
	for (int i = 0; i < CYCLE_PAGES; i++)
		v[i] = t_rnd_next(seed) % 100 < CYCLE_HOT_PERCENT ? hot[t_rnd_next(seed) % CYCLE_HOT]
								 : t_rnd_next(seed) % npages;
}

/*
 * The replica in this process, left at the cycle's first epoch, refreshes
 * to its last: cycle_syncs records, none in the writer's staging memory any
 * more (they are durable), so they come from the log file.
 */
static bool lagging_refresh(struct pt_region *r, struct pt_replica *lag, int64_t e,
			    const char *method, struct cycle_figures *f)
{
	uint64_t rb0 = 0, rc0 = 0, rb1 = 0, rc1 = 0;
	bool io = thread_reads(&rb0, &rc0);
	double t0 = bench_now_ns();
	int64_t got = pt_replica_refresh(lag, 0);

	f->lag_ms = (bench_now_ns() - t0) / 1e6;
	io = io && thread_reads(&rb1, &rc1);
	if (got != e || memcmp(pt_replica_base(lag), pt_region_base(r), region_len)) {
		bench_failed("memfd", method, "-", "a replica a cycle behind refreshed to %lld (%s), "
			     "writer at %lld%s", (long long)got,
			     got < 0 ? err_str(got) : got == e ? "not the writer's memory" : "short",
			     (long long)e, log_suffix());
		return false;
	}
	f->lag_ratio = io ? (double)(rb1 - rb0) / ((double)f->distinct * (double)ps) : NAN;
	return true;
}

/* Drop a file's clean pages from the page cache. */
static void uncache_file(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

/*
 * One cycle: cycle_syncs syncs, each followed by the reader reaching its
 * epoch (the replica applies every record alone, as one that keeps up
 * does), then the checkpoint of them all.  CPU outside the write faults:
 * this thread's inside pt_region_sync() and pt_region_checkpoint(), the
 * library's threads (the process's CPU less this thread's), the replica
 * process's.  Before the checkpoint, untimed for the CPU, a replica in this
 * process refreshes over the whole cycle at once.
 */
static bool cycle_run(struct pt_region *r, struct pt_replica *lag, const uint64_t *hot,
		      uint64_t *seed, uint64_t *seen, const char *method, const char *uncache,
		      struct cycle_figures *f)
{
	struct pt_region_stats st0 = { .sz = sizeof(st0) }, st1 = { .sz = sizeof(st1) };
	uint64_t v[CYCLE_PAGES], h0, h1, hc, h2, rb0 = 0, rc0 = 0, rb1 = 0, rc1 = 0;
	double proc0, self0, in_sync = 0, ckpt_cpu, t0, lib;
	char why[800];
	struct msg m;
	int64_t e = pt_region_epoch(r), got;
	int ret;

	memset(f, 0, sizeof(*f));
	memset(seen, 0, (npages + 63) / 64 * 8);
	ret = helper_call(&reader, &(struct msg){ .kind = CMD_RUN, .value = (double)region_len },
			  &m);
	if (ret) {
		bench_failed("memfd", method, "-", "reader: %s", strerror(-ret));
		return false;
	}
	pt_region_stats(r, NULL, &st0);
	proc0 = process_cpu();
	self0 = thread_cpu();
	h0 = hashed_now();
	for (long i = 0; i < cycle_syncs; i++) {
		double c0;

		cycle_pick(v, hot, seed);
		for (int k = 0; k < CYCLE_PAGES; k++) {
			if (!(seen[v[k] / 64] & (1ull << (v[k] % 64))))
				f->distinct++;
			seen[v[k] / 64] |= 1ull << (v[k] % 64);
		}
		write_pages(pt_region_base(r), v, CYCLE_PAGES);
		c0 = thread_cpu();
		e = pt_region_sync(r);
		in_sync += thread_cpu() - c0;
		if (e < 0) {
			bench_failed("memfd", method, "-", "sync: %s%s", err_str(e), log_suffix());
			goto fail;
		}
		ret = await_epoch(r, e, &m, why, sizeof(why));
		if (ret) {
			bench_failed("memfd", method, "-", "epoch %lld: %s", (long long)e, why);
			if (ret < 0)
				return false;
			goto fail;
		}
	}
	ret = pt_region_wait(r, (uint64_t)e, PT_LEVEL_DURABLE, WAIT_MS);
	if (ret) {
		bench_failed("memfd", method, "-", "epoch %lld not durable: %s%s", (long long)e,
			     strerror(-ret), log_suffix());
		goto fail;
	}
	h1 = hashed_now();
	/* The lagging replica, outside the figures of the cycle: it runs on
	 * this thread (not the library's), and its hashes are not the
	 * writer's. */
	if (!lagging_refresh(r, lag, e, method, f))
		goto fail;
	/* A log written O_DIRECT is not in the page cache, but the lagging
	 * refresh just read it there: out again, for the checkpoint. */
	if (uncache)
		each_file(uncache, "log-", uncache_file);
	hc = hashed_now();
	if (!thread_reads(&rb0, &rc0))
		rb0 = rc0 = 0;
	t0 = bench_now_ns();
	ckpt_cpu = thread_cpu();
	got = pt_region_checkpoint(r);
	ckpt_cpu = thread_cpu() - ckpt_cpu;
	f->ckpt_ms = (bench_now_ns() - t0) / 1e6;
	h2 = hashed_now();
	if (!thread_reads(&rb1, &rc1))
		rb1 = rc1 = 0;
	if (got != e) {
		bench_failed("memfd", method, "-", "checkpoint reached %lld, not %lld: %s%s",
			     (long long)got, (long long)e, err_str(got), log_suffix());
		goto fail;
	}
	/* The library's threads: everything this process ran but this
	 * thread; then this thread's share inside the library's calls. */
	lib = (process_cpu() - proc0) - (thread_cpu() - self0);
	if (!reader_stop(r, method, &m))
		return false;
	pt_region_stats(r, NULL, &st1);
	f->pages = st1.pages - st0.pages;
	if (!f->pages || !f->distinct) {
		bench_failed("memfd", method, "-", "no page written");
		return false;
	}
	f->sync_us = in_sync * 1e6 / (double)f->pages;
	f->threads_us = lib * 1e6 / (double)f->pages;
	f->ckpt_us = ckpt_cpu * 1e6 / (double)f->pages;
	f->replica_us = m.value * 1e6 / (double)f->pages;
	f->read_ratio = rb1 > rb0 ? (double)(rb1 - rb0) / ((double)f->distinct * (double)ps) : NAN;
	f->reads_per_page = rc1 > rc0 ? (double)(rc1 - rc0) / (double)f->distinct : NAN;
	f->seal_hashes = (double)(h1 - h0) / ((double)f->pages * (double)ps);
	f->ckpt_hashes = (double)(h2 - hc) / ((double)f->distinct * (double)ps);
	return true;
fail:
	reader_abandon();
	return false;
}

/* One way of writing the log in the cycle section, and what it measured. */
struct cycle_variant {
	const char *method;		/* the rows' method column */
	const char *name;		/* the region's directory, also the reader's */
	unsigned int flags;		/* PT_REGION_* added */
	int reader_dir;			/* index in reader_dirs */
	struct pt_region *r;
	struct pt_replica *lag;
	char dir[256];
	uint64_t seed, pages, distinct;
	bool io;
	struct bench_samples total, sync, threads, ckpt, replica, ms, ratio, reads, seal, chash,
			     lag_ms, lag_ratio;
};

static bool cycle_open(struct cycle_variant *v)
{
	const struct region_cfg cfg = { .durability = PT_DURABLE_BACKGROUND, .populate = true,
					.flags = v->flags };
	int ret;

	v->r = region_new(v->name, &cfg, v->method, v->dir, sizeof(v->dir));
	if (!v->r)
		return false;
	ret = pt_replica_open(&v->lag, v->dir, NULL);
	if (ret) {
		bench_failed("memfd", v->method, "-", "pt_replica_open: %s%s", strerror(-ret),
			     log_suffix());
		return false;
	}
	return true;
}

/* One cycle of v, the reader process following it; counted unless rep < 0. */
static bool cycle_rep(struct cycle_variant *v, const uint64_t *hot, uint64_t *seen, int rep)
{
	struct cycle_figures f;
	struct msg m;
	int ret;

	ret = helper_call(&reader, &(struct msg){ .kind = CMD_OPEN, .value = v->reader_dir }, &m);
	if (ret || m.err || m.epoch != pt_region_epoch(v->r)) {
		bench_failed("memfd", v->method, "-", "replica in the reader process: %s, epoch %lld",
			     ret ? strerror(-ret) : m.err ? strerror(-m.err) : "opened",
			     (long long)m.epoch);
		return false;
	}
	if (!cycle_run(v->r, v->lag, hot, &v->seed, seen, v->method,
		       v->flags & PT_REGION_DIRECT_LOG ? v->dir : NULL, &f))
		return false;
	if (rep < 0)
		return true;
	bench_add_sample(&v->sync, f.sync_us);
	bench_add_sample(&v->threads, f.threads_us);
	bench_add_sample(&v->ckpt, f.ckpt_us);
	bench_add_sample(&v->replica, f.replica_us);
	bench_add_sample(&v->total, f.sync_us + f.threads_us + f.ckpt_us + f.replica_us);
	bench_add_sample(&v->ms, f.ckpt_ms);
	bench_add_sample(&v->seal, f.seal_hashes);
	bench_add_sample(&v->chash, f.ckpt_hashes);
	bench_add_sample(&v->lag_ms, f.lag_ms);
	if (isnan(f.read_ratio) || isnan(f.reads_per_page) || isnan(f.lag_ratio)) {
		v->io = false;
	} else {
		bench_add_sample(&v->ratio, f.read_ratio);
		bench_add_sample(&v->reads, f.reads_per_page);
		bench_add_sample(&v->lag_ratio, f.lag_ratio);
	}
	v->pages = f.pages;
	v->distinct = f.distinct;
	return true;
}

static void cycle_rows(struct cycle_variant *v)
{
	const char *m = v->method;
	char note[240];

	snprintf(note, sizeof(note), "%llu pages written a cycle, %llu distinct (%.1f copies "
		 "of each in the log)", (unsigned long long)v->pages, (unsigned long long)v->distinct,
		 (double)v->pages / (double)v->distinct);
	bench_row(&(struct bench_row){
		.memory = "memfd", .method = m, .variant = "CPU per page", .samples = &v->total,
		.ntargets = 1, .targets = { { BENCH_AT_MOST, 3.5, "<= 3.5 us" } }, .note = note });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m, .variant = "sync calls",
				       .samples = &v->sync,
				       .note = "CPU per written page: collect and copy into staging "
					       "memory" });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m,
				       .variant = "library threads", .samples = &v->threads,
				       .note = "seal and log threads: checksums, pwrite, fdatasync" });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m, .variant = "checkpoint",
				       .samples = &v->ckpt });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m, .variant = "replica",
				       .samples = &v->replica,
				       .note = "the replica process's refreshes" });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m, .variant = "checkpoint time",
				       .unit = "ms", .samples = &v->ms });
	if (v->io) {
		bench_row(&(struct bench_row){
			.memory = "memfd", .method = m, .variant = "ckpt read / image",
			.unit = "x", .samples = &v->ratio, .ntargets = 1,
			.targets = { { BENCH_AT_MOST, 1.5, "<= 1.5x" } },
			.note = "bytes the checkpoint read per byte of page data it wrote" });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = m,
					       .variant = "ckpt reads / page", .unit = "calls",
					       .samples = &v->reads });
	} else {
		bench_unavailable("memfd", m, "ckpt read / image",
				  "/proc/thread-self/io unreadable (no task I/O accounting)");
	}
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m, .variant = "lagging refresh",
				       .unit = "ms", .samples = &v->lag_ms,
				       .note = "a private replica in this process a cycle behind, "
					       "from the log" });
	if (v->io)
		bench_row(&(struct bench_row){
			.memory = "memfd", .method = m, .variant = "lagging read / pages",
			.unit = "x", .samples = &v->lag_ratio,
			.note = "bytes its refresh read per byte of the distinct pages" });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m, .variant = "hashes, seal",
				       .unit = "pages", .samples = &v->seal,
				       .ntargets = 1, .targets = { { BENCH_AT_MOST, 1.05, "<= 1" } },
				       .note = "bytes hashed from sync to durable per written byte" });
	bench_row(&(struct bench_row){ .memory = "memfd", .method = m,
				       .variant = "hashes, checkpoint", .unit = "pages",
				       .samples = &v->chash,
				       .ntargets = 1, .targets = { { BENCH_AT_MOST, 1.1, "<= 1.1" } },
				       .note = "bytes hashed by the checkpoint per image byte: one "
					       "hash a page, and a page of head a record" });
}

/*
 * The cycle for a log written through the page cache (the default) and
 * one written O_DIRECT (PT_REGION_DIRECT_LOG), a cycle of each in turn,
 * both seeing the same writes.
 */
static void cycle_section(void)
{
	struct cycle_variant v[2] = {
		{ .method = "page cache", .name = "cycle", .reader_dir = 1 },
		{ .method = "O_DIRECT log", .name = "cycle-direct", .reader_dir = 2,
		  .flags = PT_REGION_DIRECT_LOG },
	};
	uint64_t *hot = NULL, *seen = NULL;
	char title[240];
	bool ok = false;

	snprintf(title, sizeof(title),
		 "cycle: %ld syncs of %d pages (%d%% to %d hot pages), a private replica in "
		 "another process following each, then a checkpoint; %ld MiB region; CPU per "
		 "written page",
		 cycle_syncs, CYCLE_PAGES, CYCLE_HOT_PERCENT, CYCLE_HOT, region_mib);
	bench_section("cycle", title, "us");
	if (npages < 2 * CYCLE_HOT) {
		bench_unavailable("memfd", v[0].method, "-", "region smaller than %d pages",
				  2 * CYCLE_HOT);
		return;
	}
	hot = t_rnd_permutation(npages, SEED_CYCLE);
	seen = calloc((npages + 63) / 64, 8);
	if (!hot || !seen) {
		bench_failed("memfd", v[0].method, "-", "out of memory");
		goto out;
	}
	for (int k = 0; k < 2; k++) {
		v[k].seed = SEED_CYCLE;
		v[k].io = true;
		if (!cycle_open(&v[k]))
			goto out;
	}
	/* A first cycle of each, not counted: the hot set's pages get their
	 * first record, the image its first checkpoint. */
	for (int rep = -1; rep < bench_opts.reps; rep++)
		for (int k = 0; k < 2; k++)
			if (!cycle_rep(&v[k], hot, seen, rep))
				goto out;
	ok = verify_by_replica(v[0].r, v[0].dir, v[0].method) &&
	     verify_by_replica(v[1].r, v[1].dir, v[1].method);
out:
	for (int k = 0; k < 2; k++) {
		pt_replica_close(v[k].lag);
		if (v[k].r && !region_done(v[k].r, v[k].dir, v[k].method))
			ok = false;
	}
	free(hot);
	free(seen);
	if (!ok)
		return;
	cycle_rows(&v[0]);
	cycle_rows(&v[1]);
}

/* ---- 7. pre-copy ------------------------------------------------------ */

static const uint64_t precopy_counts[] = { 1000, 10000 };

/* One epoch's figures. */
struct precopy_epoch {
	double pause_ms, collect_ms, write_ms, pass_ms;
	uint64_t faults, extra_faults, from_store;
};

/*
 * One epoch of count distinct pages (pages[0..count)) written in chunks,
 * with a pass after each chunk but the last when precopy is set, then the
 * timed sync.  rnd drives which earlier pages are written again; the
 * other region is given the same seed, so both see the same writes.
 */
static bool precopy_epoch(struct pt_region *r, bool precopy, const uint64_t *pages,
			  uint64_t count, uint64_t rnd, struct precopy_epoch *out)
{
	struct pt_region_stats before = { .sz = sizeof(before) }, after = { .sz = sizeof(after) };
	struct pt_sync_stats last = { .sz = sizeof(last) };
	const char *method = precopy ? "sync + pre-copy" : "sync";
	uint64_t chunk = count / PRECOPY_CHUNKS, done = 0;
	int64_t e, epoch = pt_region_epoch(r);
	char *base = pt_region_base(r);
	char label[32];
	double t0;
	int ret;

	memset(out, 0, sizeof(*out));
	dirty_label(label, sizeof(label), count);
	if (pt_region_stats(r, NULL, &before))
		return false;
	for (int c = 0; c < PRECOPY_CHUNKS; c++) {
		uint64_t n = c == PRECOPY_CHUNKS - 1 ? count - done : chunk;

		t0 = bench_now_ns();
		write_pages(base, pages + done, n);
		for (uint64_t i = 0; done && i < n * PRECOPY_REWRITE_PERCENT / 100; i++) {
			uint64_t p = pages[t_rnd_next(&rnd) % done];

			*(volatile uint64_t *)(base + (p << page_shift)) = ++stamp;
		}
		out->write_ms += (bench_now_ns() - t0) / 1e6;
		done += n;
		if (!precopy || c == PRECOPY_CHUNKS - 1)
			continue;
		t0 = bench_now_ns();
		ret = pt_region_precopy(r);
		out->pass_ms += (bench_now_ns() - t0) / 1e6;
		if (ret < 0) {
			bench_failed("memfd", method, label, "pt_region_precopy: %s%s",
				     pt_strerror(ret), log_suffix());
			return false;
		}
	}
	t0 = bench_now_ns();
	e = pt_region_sync(r);
	out->pause_ms = (bench_now_ns() - t0) / 1e6;
	if (e != epoch + 1) {
		bench_failed("memfd", method, label, "sync returned %lld after epoch %lld: %s%s",
			     (long long)e, (long long)epoch, err_str(e), log_suffix());
		return false;
	}
	ret = pt_region_wait(r, e, PT_LEVEL_DURABLE, WAIT_MS);
	if (!ret)
		ret = pt_region_stats(r, &last, &after);
	if (ret) {
		bench_failed("memfd", method, label, "epoch %lld: %s%s", (long long)e,
			     strerror(-ret), log_suffix());
		return false;
	}
	if (last.pages != count) {
		bench_failed("memfd", method, label, "the record holds %llu pages, not %llu",
			     (unsigned long long)last.pages, (unsigned long long)count);
		return false;
	}
	out->collect_ms = (double)last.collect_ns / 1e6;
	out->faults = after.faulted - before.faulted;
	out->extra_faults = after.precopy_extra_faults - before.precopy_extra_faults;
	out->from_store = last.precopied;
	return true;
}

static void precopy_section(void)
{
	enum { NC = BENCH_ARRAY_SIZE(precopy_counts) };
	struct bench_samples pause[2][NC], collect[2][NC], writes[2][NC], passes[NC], faults[2][NC];
	struct bench_samples extra[NC];
	const char *names[2] = { "precopy-off", "precopy-on" };
	struct pt_region *regions[2] = { NULL };
	const struct region_cfg cfg = { .durability = PT_DURABLE_BACKGROUND, .populate = true };
	uint64_t *pages = NULL, seed = SEED_PRECOPY, from_store[NC] = { 0 };
	char dirs[2][256], title[200], label[32], note[200];
	bool ok = true;

	memset(pause, 0, sizeof(pause));
	memset(collect, 0, sizeof(collect));
	memset(writes, 0, sizeof(writes));
	memset(passes, 0, sizeof(passes));
	memset(faults, 0, sizeof(faults));
	memset(extra, 0, sizeof(extra));
	snprintf(title, sizeof(title), "pre-copy: writer pause per sync (background policy), %ld MiB "
		 "region, %d chunks an epoch, a pass after each but the last", region_mib,
		 PRECOPY_CHUNKS);
	bench_section("precopy", title, "ms");
	pages = t_rnd_permutation(npages, SEED_PRECOPY);
	if (!pages) {
		bench_failed("memfd", "sync + pre-copy", "-", "out of memory");
		return;
	}
	for (int k = 0; k < 2 && ok; k++) {
		regions[k] = region_new(names[k], &cfg, k ? "sync + pre-copy" : "sync", dirs[k],
					sizeof(dirs[k]));
		ok = regions[k] != NULL;
	}
	/* Each rep: both regions at each count, the same writes, starting
	 * with the other region each time. */
	for (int rep = 0; rep < bench_opts.reps && ok; rep++) {
		for (size_t ci = 0; ci < NC && ok; ci++) {
			uint64_t count = precopy_counts[ci], rnd = t_rnd_next(&seed);

			if (count > npages)
				continue;
			pick(pages, npages, count, &seed);
			for (int j = 0; j < 2 && ok; j++) {
				int k = (rep + j) % 2;
				struct precopy_epoch pe;

				ok = precopy_epoch(regions[k], k, pages, count, rnd, &pe);
				if (!ok)
					break;
				bench_add_sample(&pause[k][ci], pe.pause_ms);
				bench_add_sample(&collect[k][ci], pe.collect_ms);
				bench_add_sample(&writes[k][ci], pe.write_ms);
				bench_add_sample(&faults[k][ci], (double)pe.faults);
				if (k) {
					bench_add_sample(&passes[ci], pe.pass_ms);
					bench_add_sample(&extra[ci], (double)pe.extra_faults);
					from_store[ci] += pe.from_store;
				}
			}
		}
	}
	for (int k = 0; k < 2; k++) {
		if (!regions[k])
			continue;
		if (ok)
			ok = verify_by_replica(regions[k], dirs[k], k ? "sync + pre-copy" : "sync");
		ok = region_done(regions[k], dirs[k], k ? "sync + pre-copy" : "sync") && ok;
	}
	free(pages);
	if (!ok)
		return;
	for (size_t ci = 0; ci < NC; ci++) {
		if (precopy_counts[ci] > npages)
			continue;
		dirty_label(label, sizeof(label), precopy_counts[ci]);
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "pause, sync",
					       .variant = label, .samples = &pause[0][ci] });
		snprintf(note, sizeof(note), "%.0f pages a record taken from the passes",
			 (double)from_store[ci] / pause[1][ci].n);
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "pause, sync + pre-copy",
					       .variant = label, .samples = &pause[1][ci],
					       .note = note });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "of which collect, sync",
					       .variant = label, .samples = &collect[0][ci] });
		bench_row(&(struct bench_row){ .memory = "memfd",
					       .method = "of which collect, + pre-copy",
					       .variant = label, .samples = &collect[1][ci] });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "passes, pre-copy",
					       .variant = label, .samples = &passes[ci],
					       .note = "the passes of an epoch together, off the pause" });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "writes, sync",
					       .variant = label, .samples = &writes[0][ci],
					       .note = "an epoch's writes, their faults included" });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "writes, sync + pre-copy",
					       .variant = label, .samples = &writes[1][ci] });
	}
	bench_section("precopy-ratio", "pre-copy: pause with over pause without, same rep", "x");
	for (size_t ci = 0; ci < NC; ci++) {
		if (precopy_counts[ci] > npages)
			continue;
		dirty_label(label, sizeof(label), precopy_counts[ci]);
		ratio_row("pause pre-copy / sync", label, &pause[1][ci], &pause[0][ci],
			  BENCH_AT_MOST, 0.25, precopy_counts[ci] == 10000 ? "<= 0.25x" : NULL, NULL);
	}
	bench_section("precopy-faults", "pre-copy: write faults per epoch (the tracker's count)",
		      "faults");
	for (size_t ci = 0; ci < NC; ci++) {
		if (precopy_counts[ci] > npages)
			continue;
		dirty_label(label, sizeof(label), precopy_counts[ci]);
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "faults, sync",
					       .variant = label, .samples = &faults[0][ci] });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "faults, sync + pre-copy",
					       .variant = label, .samples = &faults[1][ci],
					       .note = "passes and sync together" });
		bench_row(&(struct bench_row){ .memory = "memfd", .method = "extra faults, pre-copy",
					       .variant = label, .samples = &extra[ci],
					       .note = "pt_region_stats precopy_extra_faults: pages "
						       "written again after a pass re-armed them" });
	}
}

int main(int argc, char **argv)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	struct sigaction sa = { .sa_handler = on_signal };
	uint64_t *perm = NULL;
	double load[3];
	int ret;

	bench_init(argc, argv, "replication",
		   "writer stall per sync, replica lag, catch-up from the image, durable sync",
		   options);
	real_xxh3 = (XXH64_hash_t (*)(const void *, size_t))dlsym(RTLD_NEXT, "XXH3_64bits");
	/* Not every libxxhash has it (not built for x86): then the library
	 * does not call it either. */
	real_xxh3_dispatch = (XXH64_hash_t (*)(const void *, size_t))dlsym(RTLD_NEXT,
									    "XXH3_64bits_dispatch");
	if (!real_xxh3_dispatch)
		real_xxh3_dispatch = real_xxh3;
	if (!real_xxh3) {
		fprintf(stderr, "replication: XXH3_64bits not found in libxxhash: %s\n", dlerror());
		return 1;
	}
	ps = t_page_size();
	page_shift = (unsigned int)__builtin_ctzl(ps);
	region_len = (size_t)region_mib << 20;
	npages = region_len >> page_shift;
	at_target_size = region_mib == 1024;
	pt_set_log(keep_log, PT_LOG_WARN, NULL);
	bench_param("page_size", (double)ps);
	bench_param("region_bytes", (double)region_len);
	bench_param("lag_syncs", (double)lag_syncs);
	if (!at_target_size)
		bench_note("region is %ld MiB, not 1 GiB: only the replica-lag target is evaluated",
			   region_mib);

	snprintf(top_dir, sizeof(top_dir), "%s/pagetrack-bench-XXXXXX", tmp);
	if (!mkdtemp(top_dir)) {
		fprintf(stderr, "replication: mkdtemp %s: %s\n", top_dir, strerror(errno));
		top_dir[0] = '\0';
		return 1;
	}
	bench_note("data directory %s (removed at the end); background checkpoints off", top_dir);
	if (getloadavg(load, 3) == 3) {
		/* The figures of a shared machine are read against its load. */
		bench_note("load average at the start: %.2f %.2f %.2f on %ld CPUs", load[0], load[1],
			   load[2], sysconf(_SC_NPROCESSORS_ONLN));
		bench_param("load_1min", load[0]);
	}

	/* Helpers first: small, single-threaded, before any region exists. */
	ret = helper_start(&forker, forker_main);
	if (!ret)
		ret = helper_start(&reader, reader_main);
	if (ret) {
		fprintf(stderr, "replication: starting a helper process: %s\n", strerror(-ret));
		goto out;
	}
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < BENCH_ARRAY_SIZE(cleanup_signals); i++)
		sigaction(cleanup_signals[i], &sa, NULL);

	perm = t_rnd_permutation(npages, SEED_DIRTY);
	if (!perm) {
		fprintf(stderr, "replication: out of memory\n");
		goto out;
	}
	if (!only_section || only_section == 1)
		stall_section(perm);
	if (!only_section || only_section == 2)
		lag_section();
	if (!only_section || only_section == 4)
		durable_section(perm);
	if (!only_section || only_section == 5)
		recycle_section(perm);
	if (!only_section || only_section == 3)
		catchup_section();
	if (!only_section || only_section == 6)
		cycle_section();
	if (!only_section || only_section == 7)
		precopy_section();
	ret = bench_finish();
	free(perm);
	helper_stop(&forker);
	helper_stop(&reader);
	remove_tree(top_dir, 1);
	return ret;
out:
	free(perm);
	helper_stop(&forker);
	helper_stop(&reader);
	remove_tree(top_dir, 1);
	return 1;
}
