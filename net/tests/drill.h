/* SPDX-License-Identifier: MIT */
/*
 * drill.h - the failover drill, shared by the test (net-failover) and the
 * bench (bench-failover): a writer process and its publisher on "host" W,
 * a standby (`pagetrack follow --standby --auto-promote`) on "host" S; at
 * a random moment under load both of W's processes are killed -9; S
 * promotes itself and publishes, a new writer is started on S's directory,
 * a new standby on a fresh directory; W := S, and again.
 *
 * Checked at every round: the new term's first epoch is the old writer's
 * last acknowledged one or later (0 acknowledged epochs lost), the new
 * writer's content at it is the old writer's, the term goes up by one; at
 * the end, the last standby (which followed every term from epoch 1, old
 * terms' half-published epochs included) holds the last writer's content.
 * Measured: failover time, from the kill to the first epoch of the new
 * writer acknowledged by the stream.
 *
 * The writer is a forked child of the test (it shares the hashes of its
 * epochs and how far PT_LEVEL_REPLICATED went through shared memory); it
 * ends with _exit() (the test's atexit cleanup is the parent's).
 */
#ifndef PT_NET_DRILL_H
#define PT_NET_DRILL_H

#include <sys/mman.h>

#include "failtest.h"

#define DRILL_NPAGES	1024
#define DRILL_EPOCHS	200000

struct drill_shm {
	uint64_t hashes[DRILL_EPOCHS];	/* the region's hash at each epoch */
	int64_t written;		/* newest epoch synced */
	int64_t acked;			/* newest epoch PT_LEVEL_REPLICATED said */
	int64_t start_epoch;		/* the epoch the writer opened at */
	uint64_t start_hash;		/* and its content's hash */
	int ready, stop;
	int err;			/* the writer's last error (negative) */
};

struct drill_result {
	unsigned rounds;
	uint64_t failover_ms[64];	/* kill -> the new writer's first epoch acknowledged */
	uint64_t promoted_ms[64];	/* kill -> the term marker in the stream */
	uint64_t epochs;		/* epochs written in all */
	uint64_t half_epochs;		/* half-published epochs found before markers */
};

/* The writer: never returns. */
static inline void drill_writer(const char *dir, bool create, struct drill_shm *sh, uint64_t seed)
{
	struct pt_region_opts wo = { .sz = sizeof(wo) };
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct pt_region *r = NULL;
	uint64_t start = nt_ms();
	int64_t acked = 0;
	int err;

	/* A promotion closes the standby region just after its marker. */
	do {
		err = create ? pt_region_create(&r, dir, DRILL_NPAGES * ps, &wo)
			     : pt_region_open(&r, dir, &wo);
		if (err == -EBUSY)
			nt_sleep_ms(5);
	} while (err == -EBUSY && nt_ms() - start < 20000);
	if (err) {
		sh->err = err;
		_exit(2);
	}
	sh->start_epoch = pt_region_epoch(r);
	sh->start_hash = nt_hash(pt_region_base(r), pt_region_size(r));
	__atomic_store_n(&sh->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE) && nt_ms() - start < 600000) {
		unsigned char *mem = pt_region_base(r);
		/* One epoch in 12 writes 300 whole random pages: two messages,
		 * which a kill may cut in half. */
		bool big = nt_rnd(&seed) % 12 == 0;
		unsigned n = big ? 300 : 1 + (unsigned)(nt_rnd(&seed) % 24);
		int64_t e;

		for (unsigned i = 0; i < n; i++) {
			uint64_t *w = (uint64_t *)(mem + (nt_rnd(&seed) % DRILL_NPAGES) * ps);

			for (size_t j = 0; j < (big ? ps / 8 : 4); j++)
				w[big ? j : nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
		}
		/* Hashed before the sync: once synced, the epoch may be
		 * published before this process is killed. */
		e = pt_region_epoch(r) + 1;
		if (e >= DRILL_EPOCHS) {
			sh->err = -EFBIG;
			_exit(2);
		}
		sh->hashes[e] = nt_hash(mem, pt_region_size(r));
		if (pt_region_sync(r) != e) {
			sh->err = -EIO;
			_exit(2);
		}
		__atomic_store_n(&sh->written, e, __ATOMIC_RELEASE);
		/* An engine acking at `replicated`: at most 8 epochs ahead. */
		for (;;) {
			err = pt_region_wait(r, acked + 1, PT_LEVEL_REPLICATED, e - acked > 8 ? 100 : 0);
			if (err == -EOWNERDEAD) {
				sh->err = err;
				_exit(3);
			}
			if (err)
				break;
			__atomic_store_n(&sh->acked, ++acked, __ATOMIC_RELEASE);
			if (acked == e)
				break;
		}
		/* About 200 epochs a second: load, yet each new standby can
		 * catch up with the whole stream on a busy 2-CPU machine. */
		nt_sleep_ms(5);
	}
	pt_region_close(r);
	_exit(0);
}

static inline pid_t drill_fork_writer(const char *dir, bool create, struct drill_shm *sh,
				      uint64_t seed)
{
	pid_t pid;

	sh->written = sh->acked = sh->start_epoch = 0;
	sh->start_hash = 0;
	sh->ready = sh->stop = sh->err = 0;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		drill_writer(dir, create, sh, seed);
	}
	return nt_adopt(pid);
}

static inline void drill_wait(bool (*cond)(const void *), const void *arg, unsigned ms,
			      const char *what)
{
	uint64_t start = nt_ms();

	while (!cond(arg)) {
		if (nt_ms() - start > ms)
			DIE("%s: not within %u ms", what, ms);
		nt_sleep_ms(2);
	}
}

static inline bool drill_ready(const void *arg)
{
	const struct drill_shm *sh = arg;

	return __atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) || sh->err;
}

struct drill_log {
	const char *path;
	char text[64];
};

static inline bool drill_log_says(const void *arg)
{
	const struct drill_log *l = arg;

	return strstr(ft_read_file(l->path), l->text) != NULL;
}

static inline pid_t drill_standby(const char *tool, const char *url, const char *dir,
				  const char *log, const char *lease_ms)
{
	char *argv[] = { (char *)tool, "follow", (char *)url, "--stream", "drill", (char *)dir,
			 "--standby", "--auto-promote", "--lease-ms", (char *)lease_ms, NULL };

	return nt_spawn(argv, log);
}

/* How many half-published epochs (a last part missing) precede a marker. */
static inline uint64_t drill_half_epochs(struct ft_raw *raw)
{
	uint64_t last = ft_raw_last_seq(raw, "drill"), n = 0;
	uint32_t part = 0, parts = 0;
	bool open = false;

	for (uint64_t seq = 1; seq <= last; seq++) {
		natsMsg *m = ft_raw_get(raw, "drill", seq);

		if (!m)
			continue;
		if (FT_FLAGS(m) & 2) {
			n += open;
			open = false;
		} else {
			part = FT_PART(m);
			parts = FT_PARTS(m);
			open = part + 1 < parts;
		}
		natsMsg_Destroy(m);
	}
	return n;
}

/*
 * rounds kills (at most 64) with a lease of lease_ms; every check DIEs on
 * failure.  Fills *res.
 */
static inline void drill_run(unsigned rounds, unsigned lease_ms, uint64_t seed,
			     struct drill_result *res)
{
	struct drill_shm *sh;
	struct natsd server;
	struct ft_raw raw;
	const char *tool = nt_tool();
	char lease[16], wdir[256], sdir[256], slog[256];
	pid_t writer, publisher, standby;
	uint64_t term = 0;
	static unsigned drill_no;	/* each drill its own server and directories */
	char name[32];

	memset(res, 0, sizeof(*res));
	drill_no++;
	if (rounds > 64)
		rounds = 64;
	snprintf(lease, sizeof(lease), "%u", lease_ms);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		DIE("mmap: %s", strerror(errno));
	snprintf(name, sizeof(name), "nats%u", drill_no);
	natsd_start(&server, name, NULL);
	ft_raw_open(&raw, server.url);

	/* Round 0: the writer, `pagetrack publish` holding the lease. */
	snprintf(wdir, sizeof(wdir), "%s", nt_path("d%u-host0", drill_no));
	writer = drill_fork_writer(wdir, true, sh, seed);
	drill_wait(drill_ready, sh, 20000, "the first writer");
	if (sh->err)
		DIE("the first writer: %s", pt_strerror(sh->err));
	{
		char *argv[] = { (char *)tool, "publish", wdir, "--nats", server.url, "--stream",
				 "drill", "--lease-ms", lease, "--quiet", NULL };

		publisher = nt_spawn(argv, nt_path("d%u-host0-publish.log", drill_no));
	}
	for (unsigned round = 0; round < rounds; round++) {
		struct drill_log held = { .path = slog };
		uint64_t t_kill, t_marker = 0, marker = 0, m_epoch = 0, m_term = 0, start;
		int64_t acked_old, written_old;
		pt_epoch_t rep = 0;

		/* The stream exists once the writer's first epoch is acked. */
		while (__atomic_load_n(&sh->acked, __ATOMIC_ACQUIRE) < 20) {
			if (sh->err)
				DIE("writer: %s", pt_strerror(sh->err));
			nt_sleep_ms(2);
		}
		snprintf(sdir, sizeof(sdir), "%s", nt_path("d%u-host%u", drill_no, round + 1));
		snprintf(slog, sizeof(slog), "%s", nt_path("d%u-host%u-follow.log", drill_no, round + 1));
		standby = drill_standby(tool, server.url, sdir, slog, lease);
		snprintf(held.text, sizeof(held.text), "held by term %llu", (unsigned long long)term);
		drill_wait(drill_log_says, &held, 30000, "the standby watching the lease");
		/* Caught up (it chases a writer that goes on), then a random
		 * moment under load. */
		start = nt_ms();
		while (pt_dir_epoch(sdir) + 10 < __atomic_load_n(&sh->acked, __ATOMIC_ACQUIRE)) {
			if (nt_ms() - start > 120000)
				DIE("the standby does not catch up");
			nt_sleep_ms(10);
		}
		nt_sleep_ms(200 + (unsigned)(nt_rnd(&seed) % 1000));

		t_kill = nt_ms();
		kill(-writer, SIGKILL);
		kill(-publisher, SIGKILL);
		nt_kill(writer, SIGKILL);
		nt_kill(publisher, SIGKILL);
		acked_old = __atomic_load_n(&sh->acked, __ATOMIC_ACQUIRE);
		written_old = __atomic_load_n(&sh->written, __ATOMIC_ACQUIRE);
		res->epochs += (uint64_t)(written_old - sh->start_epoch);

		/* The standby's marker, then a writer on its directory. */
		while (nt_ms() - t_kill < 60000) {
			marker = ft_last_marker(&raw, "drill", &m_epoch, &m_term);
			if (marker && m_term == term + 1)
				break;
			nt_sleep_ms(2);
		}
		if (m_term != term + 1)
			DIE("round %u: no promotion: %s", round, ft_read_file(slog));
		t_marker = nt_ms();
		if ((int64_t)m_epoch < acked_old)
			DIE("round %u: the new term starts after epoch %llu, the old writer had "
			    "epoch %lld acknowledged", round, (unsigned long long)m_epoch,
			    (long long)acked_old);
		writer = drill_fork_writer(sdir, false, sh, seed + round + 1);
		drill_wait(drill_ready, sh, 30000, "the new writer");
		if (sh->err)
			DIE("round %u: the new writer: %s", round, pt_strerror(sh->err));
		if ((uint64_t)sh->start_epoch != m_epoch || sh->start_hash != sh->hashes[m_epoch])
			DIE("round %u: the new writer opened at epoch %lld (hash %016llx), the marker "
			    "follows epoch %llu (the old writer's hash %016llx)", round,
			    (long long)sh->start_epoch, (unsigned long long)sh->start_hash,
			    (unsigned long long)m_epoch, (unsigned long long)sh->hashes[m_epoch]);
		/* The new writer's first epoch acknowledged by the stream. */
		start = nt_ms();
		while (pt_dir_replicated(sdir, &rep, NULL, NULL) || rep <= (pt_epoch_t)m_epoch) {
			if (nt_ms() - start > 60000)
				DIE("round %u: the new writer's epochs are not published", round);
			if (sh->err)
				DIE("round %u: the new writer: %s", round, pt_strerror(sh->err));
			nt_sleep_ms(1);
		}
		res->failover_ms[round] = nt_ms() - t_kill;
		res->promoted_ms[round] = t_marker - t_kill;
		printf("  round %u: killed after epoch %lld (acknowledged %lld); term %llu after epoch "
		       "%llu; marker %llu ms, first new epoch %llu ms after the kill\n", round,
		       (long long)written_old, (long long)acked_old, (unsigned long long)m_term,
		       (unsigned long long)m_epoch, (unsigned long long)res->promoted_ms[round],
		       (unsigned long long)res->failover_ms[round]);
		fflush(stdout);
		term = m_term;
		publisher = standby;	/* the promoted standby publishes now */
		snprintf(wdir, sizeof(wdir), "%s", sdir);
		res->rounds++;
	}

	/* The end: a last standby follows every term; the writer stops, its
	 * epochs all published: the standby holds its content. */
	{
		struct drill_log held = { .path = slog };
		int64_t last;
		pt_epoch_t se;
		uint64_t h, start = nt_ms();

		snprintf(sdir, sizeof(sdir), "%s", nt_path("d%u-host-last", drill_no));
		snprintf(slog, sizeof(slog), "%s", nt_path("d%u-host-last-follow.log", drill_no));
		standby = drill_standby(tool, server.url, sdir, slog, lease);
		snprintf(held.text, sizeof(held.text), "held by term %llu", (unsigned long long)term);
		drill_wait(drill_log_says, &held, 30000, "the last standby watching the lease");
		__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
		if (ft_wait_exit(writer, 30000) != 0)
			DIE("the last writer did not stop cleanly (error %d)", sh->err);
		last = sh->written;
		res->epochs += (uint64_t)(last - sh->start_epoch);
		while (pt_dir_epoch(sdir) < last && nt_ms() - start < 120000)
			nt_sleep_ms(10);
		h = ft_dir_hash(sdir, &se);
		if (se != last || h != sh->hashes[last])
			DIE("the last standby at epoch %lld (hash %016llx), the writer's last epoch "
			    "%lld (%016llx)", (long long)se, (unsigned long long)h, (long long)last,
			    (unsigned long long)sh->hashes[last]);
		printf("  a standby that followed all %llu terms holds the last writer's epoch %lld\n",
		       (unsigned long long)term + 1, (long long)last);
		nt_kill(standby, SIGTERM);
		nt_kill(publisher, SIGTERM);
	}
	res->half_epochs = drill_half_epochs(&raw);
	ft_raw_close(&raw);
	natsd_stop(&server);
	munmap(sh, sizeof(*sh));
}

static int drill_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The median and the maximum of n values (sorted in place). */
static inline void drill_p50_max(uint64_t *v, unsigned n, uint64_t *p50, uint64_t *max)
{
	qsort(v, n, sizeof(*v), drill_cmp);
	*p50 = n ? (n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2) : 0;
	*max = n ? v[n - 1] : 0;
}

#endif /* PT_NET_DRILL_H */
