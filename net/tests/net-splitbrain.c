/* net-splitbrain: the writer's publisher (`pagetrack publish`, holding the lease) SIGSTOPped past its lease: a standby (`follow --standby --auto-promote`) takes over; resumed, the old publisher has none of its later epochs accepted anywhere (stream, standbys), reports that it was deposed, and its writer's PT_LEVEL_REPLICATED waits return -EOWNERDEAD; and without a lease, `pagetrack promote` while the old writer keeps publishing: every epoch it saw acknowledged is in the new writer's directory, none after the marker. */
#include "failtest.h"

#define NPAGES		256
#define MAX_EPOCHS	20000

static const char *tool, *url;
static struct ft_raw raw;
static uint64_t hashes[MAX_EPOCHS], chains[MAX_EPOCHS], old_chains[MAX_EPOCHS];

static struct pt_region *region(const char *dir, bool create)
{
	struct pt_region_opts wo = { .sz = sizeof(wo) };
	struct pt_region *r;
	int err;

	err = create ? pt_region_create(&r, dir, NPAGES * (size_t)sysconf(_SC_PAGESIZE), &wo)
		     : pt_region_open(&r, dir, &wo);
	if (err)
		DIE("region %s: %s", dir, pt_strerror(err));
	return r;
}

/* One epoch on r, its hash and chain kept. */
static pt_epoch_t write_epoch(struct pt_region *r)
{
	pt_epoch_t e = ft_write(r, 8, false), ce;

	if (e >= MAX_EPOCHS)
		DIE("too many epochs");
	hashes[e] = ft_region_hash(r);
	pt_region_chain(r, &ce, &chains[e]);
	return e;
}

static void wait_replicated(struct pt_region *r, pt_epoch_t e)
{
	int err = pt_region_wait(r, e, PT_LEVEL_REPLICATED, 30000);

	if (err)
		DIE("epoch %lld not replicated: %s", (long long)e, pt_strerror(err));
}

/* A child's end: it must exit with status want by itself. */
static void expect_exit(pid_t pid, int want, const char *log, const char *what)
{
	int st = ft_wait_exit(pid, 15000);

	if (st != want) {
		fprintf(stderr, "%s", ft_read_file(log));
		DIE("%s: exit status %d, want %d", what, st, want);
	}
}

/* No message of the stream has a chain of the old writer's epochs from..to
 * (old_chains: saved before the new writer made epochs of the same numbers). */
static void none_of_a(const char *stream, uint64_t after, pt_epoch_t from, pt_epoch_t to)
{
	uint64_t last = ft_raw_last_seq(&raw, stream), n = 0;

	for (uint64_t seq = 1; seq <= last; seq++) {
		natsMsg *m = ft_raw_get(&raw, stream, seq);

		if (!m)
			continue;
		for (pt_epoch_t e = from; e <= to && !(FT_FLAGS(m) & 2); e++)
			if (FT_CHAIN(m) == old_chains[e])
				DIE("stream %s sequence %llu is the old writer's epoch %lld", stream,
				    (unsigned long long)seq, (long long)e);
		n += seq > after;
		natsMsg_Destroy(m);
	}
	printf("  stream %s: none of the old writer's epochs %lld-%lld among its %llu messages "
	       "(%llu after sequence %llu)\n", stream, (long long)from, (long long)to,
	       (unsigned long long)last, (unsigned long long)n, (unsigned long long)after);
}

static uint64_t wait_marker(const char *stream, uint64_t *epoch, uint64_t *term)
{
	uint64_t start = nt_ms(), seq;

	while (!(seq = ft_last_marker(&raw, stream, epoch, term)) && nt_ms() - start < 30000)
		nt_sleep_ms(10);
	if (!seq)
		DIE("no term marker in stream %s", stream);
	return seq;
}

/* Cell 1: the lease holder stopped past its lease; the standby promotes itself. */
static void stopped_publisher(void)
{
	const char *da = nt_path("a1"), *db = nt_path("b1"), *dc = nt_path("c1");
	const char *plog = nt_path("a1-publish.log"), *blog = nt_path("b1-follow.log");
	char *pub_argv[] = { (char *)tool, "publish", (char *)da, "--nats", (char *)url, "--stream",
			     "sb1", "--lease-ms", "1000", "--quiet", NULL };
	char *b_argv[] = { (char *)tool, "follow", (char *)url, "--stream", "sb1", (char *)db,
			   "--standby", "--auto-promote", "--lease-ms", "1000", NULL };
	char *c_argv[] = { (char *)tool, "follow", (char *)url, "--stream", "sb1", (char *)dc,
			   "--quiet", NULL };
	struct pt_region *a, *b;
	uint64_t marker, m_epoch = 0, m_term = 0, t_stop, start, hb;
	pid_t pub, fb, fc;
	pt_epoch_t e, be;
	int err;

	printf("lease holder stopped past its lease:\n");
	a = region(da, true);
	pub = nt_spawn(pub_argv, plog);
	for (int i = 0; i < 20; i++)
		e = write_epoch(a);
	wait_replicated(a, e);
	fb = nt_spawn(b_argv, blog);
	fc = nt_spawn(c_argv, nt_path("c1-follow.log"));
	/* The standby sees the lease held before the publisher stops. */
	start = nt_ms();
	while (!strstr(ft_read_file(blog), "held by term 0") && nt_ms() - start < 20000)
		nt_sleep_ms(10);
	if (!strstr(ft_read_file(blog), "held by term 0"))
		DIE("the standby never saw the lease: %s", ft_read_file(blog));

	t_stop = nt_ms();
	kill(-pub, SIGSTOP);
	for (int i = 0; i < 5; i++)
		write_epoch(a);			/* 21-25: never published */
	if (pt_region_wait(a, 21, PT_LEVEL_REPLICATED, 0) != -ETIMEDOUT)
		DIE("epoch 21 replicated with the publisher stopped");
	marker = wait_marker("sb1", &m_epoch, &m_term);
	printf("  the standby promoted itself %llu ms after the stop: term %llu after epoch %llu "
	       "(sequence %llu)\n", (unsigned long long)(nt_ms() - t_stop),
	       (unsigned long long)m_term, (unsigned long long)m_epoch, (unsigned long long)marker);
	if (m_epoch != 20 || m_term != 1)
		DIE("marker: epoch %llu term %llu, want 20 and 1", (unsigned long long)m_epoch,
		    (unsigned long long)m_term);
	start = nt_ms();
	while (!strstr(ft_read_file(blog), "promoted") && nt_ms() - start < 10000)
		nt_sleep_ms(10);
	hb = ft_dir_hash(db, &be);
	if (be != 20 || hb != hashes[20])
		DIE("B at epoch %lld: not A's epoch 20", (long long)be);

	/* Resumed: it is refused, says so, exits; the writer is told. */
	kill(-pub, SIGCONT);
	expect_exit(pub, 1, plog, "the resumed publisher");
	if (!strstr(ft_read_file(plog), "deposed"))
		DIE("the publisher did not say it was deposed: %s", ft_read_file(plog));
	printf("  resumed publisher: %s", strstr(ft_read_file(plog), "pagetrack publish"));
	if ((err = pt_region_wait(a, 21, PT_LEVEL_REPLICATED, 5000)) != -EOWNERDEAD)
		DIE("the old writer's wait: %s", pt_strerror(err));
	e = write_epoch(a);
	if ((err = pt_region_wait(a, e, PT_LEVEL_REPLICATED, 1000)) != -EOWNERDEAD)
		DIE("the old writer's wait after: %s", pt_strerror(err));

	/* The new writer on B: its epochs 21-30 reach the stream and C. */
	memcpy(old_chains, chains, sizeof(chains));
	b = region(db, false);
	for (int i = 0; i < 10; i++)
		e = write_epoch(b);
	wait_replicated(b, e);
	start = nt_ms();
	while (pt_dir_epoch(dc) < e && nt_ms() - start < 30000)
		nt_sleep_ms(20);
	hb = ft_dir_hash(dc, &be);
	if (be != e || hb != hashes[e])
		DIE("C at epoch %lld, not B's %lld", (long long)be, (long long)e);
	printf("  the new writer's epochs 21-%lld replicated; a standby holds them\n", (long long)e);
	none_of_a("sb1", marker, 21, 26);

	kill(fb, SIGTERM);
	expect_exit(fb, 0, blog, "the promoted standby (now publishing)");
	kill(fc, SIGTERM);
	expect_exit(fc, 0, nt_path("c1-follow.log"), "the other standby");
	pt_region_close(b);
	pt_region_close(a);
}

/* Cell 2: no lease; an operator promotes while the old writer publishes. */
static void operator_promotes(void)
{
	const char *da = nt_path("a2"), *db = nt_path("b2");
	const char *plog = nt_path("a2-publish.log"), *prlog = nt_path("b2-promote.log");
	char *pub_argv[] = { (char *)tool, "publish", (char *)da, "--nats", (char *)url, "--stream",
			     "sb2", "--lease-ms", "0", "--quiet", NULL };
	char *b_argv[] = { (char *)tool, "follow", (char *)url, "--stream", "sb2", (char *)db,
			   "--quiet", NULL };
	char *pr_argv[] = { (char *)tool, "promote", (char *)db, "--nats", (char *)url, "--stream",
			    "sb2", NULL };
	struct pt_region *a;
	uint64_t marker, m_epoch = 0, m_term = 0, hb, start;
	pt_epoch_t e = 0, acked = 0, be, rep_epoch = 0;
	pid_t pub, fb, pr;
	int st = -1, deposed = 0;

	printf("no lease, promoted while the old writer publishes:\n");
	a = region(da, true);
	pub = nt_spawn(pub_argv, plog);
	for (int i = 0; i < 10; i++)
		e = write_epoch(a);
	wait_replicated(a, e);
	fb = nt_spawn(b_argv, nt_path("b2-follow.log"));
	acked = e;
	start = nt_ms();
	while (pt_dir_epoch(db) < e && nt_ms() - start < 20000)
		nt_sleep_ms(10);
	kill(fb, SIGTERM);
	expect_exit(fb, 0, nt_path("b2-follow.log"), "the standby");

	pr = nt_spawn(pr_argv, prlog);
	start = nt_ms();
	/* The writer goes on meanwhile, one epoch every 5 ms. */
	while (nt_ms() - start < 40000 && st < 0) {
		int err;

		e = write_epoch(a);
		while (acked < e && !(err = pt_region_wait(a, acked + 1, PT_LEVEL_REPLICATED, 0)))
			acked++;
		nt_sleep_ms(5);
		st = ft_wait_exit(pr, 0);
	}
	if (st != 0)
		DIE("promote: status %d: %s", st, ft_read_file(prlog));
	printf("  %s", ft_read_file(prlog));
	marker = wait_marker("sb2", &m_epoch, &m_term);
	/* The old writer goes on until its publisher is fenced. */
	start = nt_ms();
	while (nt_ms() - start < 20000) {
		e = write_epoch(a);
		if (pt_region_wait(a, e, PT_LEVEL_REPLICATED, 20) == -EOWNERDEAD)
			break;
	}
	expect_exit(pub, 1, plog, "the old publisher");
	if (!strstr(ft_read_file(plog), "deposed"))
		DIE("the publisher did not say it was deposed: %s", ft_read_file(plog));
	if (pt_dir_replicated(da, &rep_epoch, &deposed, NULL) || !deposed)
		DIE("the old writer's directory is not marked deposed");
	printf("  the old writer saw epochs up to %lld acknowledged (its replicated file: %lld), "
	       "the marker follows epoch %llu; it went on to epoch %lld\n", (long long)acked,
	       (long long)rep_epoch, (unsigned long long)m_epoch, (long long)e);
	if ((uint64_t)acked > m_epoch || (uint64_t)rep_epoch > m_epoch)
		DIE("epochs acknowledged after the marker's epoch");
	hb = ft_dir_hash(db, &be);
	if ((uint64_t)be != m_epoch || hb != hashes[be])
		DIE("B at epoch %lld, hash %016llx: not A's epoch %llu", (long long)be,
		    (unsigned long long)hb, (unsigned long long)m_epoch);
	memcpy(old_chains, chains, sizeof(chains));
	if (ft_raw_last_seq(&raw, "sb2") != marker)
		DIE("messages after the marker (sequence %llu) in a stream with no new writer",
		    (unsigned long long)marker);
	none_of_a("sb2", marker, (pt_epoch_t)m_epoch + 1, e);
	pt_region_close(a);
}

int main(void)
{
	struct natsd server;

	nt_init("net-splitbrain: a stopped lease holder resumed after a standby took over, and a "
		"promotion while the old writer publishes: the old writer is fenced and deposed");
	tool = nt_tool();
	natsd_start(&server, "nats", NULL);
	url = server.url;
	ft_raw_open(&raw, url);
	stopped_publisher();
	operator_promotes();
	ft_raw_close(&raw);
	natsd_stop(&server);
	printf("done\n");
	return 0;
}
