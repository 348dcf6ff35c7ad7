/* net-single: a writer makes >= 1,000 epochs while a publisher and a follower run (one nats-server); the follower's directory and a replica on it equal the writer at every epoch checked; PT_LEVEL_REPLICATED waits succeed. */
#include <pthread.h>

#include "nettest.h"

#define NPAGES	256
#define EPOCHS	1200
#define DEADLINE_MS 120000

static uint64_t hashes[EPOCHS + 2];	/* the writer's memory at each epoch */
static uint64_t hashed;			/* epochs whose hash is set (atomic) */
static int stop_flag;			/* atomic */
static struct natsd server;
static const char *src_dir, *dst_dir;
static size_t ps;

struct result {
	int err;
	char msg[512];
	uint64_t checks;
	struct pt_publisher_stats ps;
	struct pt_follower_stats fs;
};

static bool stopping(void)
{
	return __atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE);
}

static void *publisher(void *arg)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = server.url, .stream = "single" };
	struct result *res = arg;
	struct pt_publisher *p;
	uint64_t start = nt_ms();
	int err;

	err = pt_publisher_open(&p, src_dir, &o);
	if (err) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "open: %s", pt_net_last_error());
		return NULL;
	}
	while (nt_ms() - start < DEADLINE_MS) {
		err = pt_publisher_run(p, 50);
		if (err < 0 && err != -EAGAIN) {
			res->err = err;
			snprintf(res->msg, sizeof(res->msg), "run: %s", pt_net_last_error());
			break;
		}
		if (stopping() && err == 0)
			break;
	}
	pt_publisher_stats(p, &res->ps);
	pt_publisher_close(p);
	return NULL;
}

static void *follower(void *arg)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = server.url, .stream = "single" };
	struct result *res = arg;
	struct pt_follower *f = NULL;
	uint64_t start = nt_ms();
	int err;

	/* The stream exists once the publisher made it. */
	while (nt_ms() - start < 10000) {
		err = pt_follower_open(&f, dst_dir, &o);
		if (err != -ENOENT)
			break;
		nt_sleep_ms(20);
	}
	if (err) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "open: %s", pt_net_last_error());
		return NULL;
	}
	while (nt_ms() - start < DEADLINE_MS) {
		err = pt_follower_run(f, 50);
		if (err < 0 && err != -EAGAIN) {
			res->err = err;
			snprintf(res->msg, sizeof(res->msg), "run: %s", pt_net_last_error());
			break;
		}
		pt_follower_stats(f, &res->fs);
		if (stopping() && (uint64_t)res->fs.epoch >= __atomic_load_n(&hashed, __ATOMIC_ACQUIRE))
			break;
	}
	pt_follower_stats(f, &res->fs);
	err = pt_follower_close(f);
	if (err && !res->err) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "close: %s", pt_strerror(err));
	}
	return NULL;
}

/* A replica on the follower's directory: its copy equals the writer's at
 * every epoch it shows. */
static void *checker(void *arg)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct result *res = arg;
	struct pt_replica *r = NULL;
	uint64_t start = nt_ms(), last = 0;
	int err = 0;

	while (nt_ms() - start < DEADLINE_MS && !r) {
		err = pt_replica_open(&r, dst_dir, &ro);
		if (err)
			nt_sleep_ms(5);
	}
	if (!r) {
		res->err = err;
		snprintf(res->msg, sizeof(res->msg), "replica on the follower: %s", pt_strerror(err));
		return NULL;
	}
	while (nt_ms() - start < DEADLINE_MS) {
		int64_t e = pt_replica_refresh(r, 20);

		if (e < 0) {
			res->err = (int)e;
			snprintf(res->msg, sizeof(res->msg), "refresh: %s", pt_strerror((int)e));
			break;
		}
		if ((uint64_t)e != last && e > 0) {
			uint64_t h = nt_hash(pt_replica_base(r), pt_replica_size(r));
			uint64_t asked = nt_ms();

			/* The writer hashes its memory after its sync returns:
			 * the follower may be there first. */
			while ((uint64_t)e > __atomic_load_n(&hashed, __ATOMIC_ACQUIRE) &&
			       nt_ms() - asked < 10000)
				nt_sleep_ms(1);
			if ((uint64_t)e > __atomic_load_n(&hashed, __ATOMIC_ACQUIRE) ||
			    h != hashes[e]) {
				res->err = -EBADMSG;
				snprintf(res->msg, sizeof(res->msg), "replica at epoch %lld: hash "
					 "%016llx, the writer's %016llx", (long long)e,
					 (unsigned long long)h, (unsigned long long)hashes[e]);
				break;
			}
			res->checks++;
			last = (uint64_t)e;
		}
		if (stopping() && last >= __atomic_load_n(&hashed, __ATOMIC_ACQUIRE))
			break;
	}
	pt_replica_close(r);
	return NULL;
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct result pres = { 0 }, fres = { 0 }, cres = { 0 };
	pthread_t pt, ft, ct;
	struct pt_region *w;
	uint64_t seed = 42, t0, t1, waits = 0;
	unsigned char *mem;
	int err;

	nt_init("net-single: >= 1,000 epochs writer -> publish -> nats-server -> follow, hashes "
		"compared at every epoch a replica on the follower shows");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	pres.ps.sz = sizeof(pres.ps);
	fres.fs.sz = sizeof(fres.fs);
	natsd_start(&server, "nats", NULL);
	src_dir = strdup(nt_path("src"));
	dst_dir = strdup(nt_path("dst"));
	err = pt_region_create(&w, src_dir, NPAGES * ps, &wo);
	if (err)
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	if (pt_region_sync(w) != 1)
		DIE("epoch 1");
	hashes[1] = nt_hash(mem, NPAGES * ps);
	__atomic_store_n(&hashed, 1, __ATOMIC_RELEASE);
	pthread_create(&pt, NULL, publisher, &pres);
	pthread_create(&ft, NULL, follower, &fres);
	pthread_create(&ct, NULL, checker, &cres);
	t0 = nt_ms();
	for (int e = 2; e <= EPOCHS; e++) {
		int n = 1 + (int)(nt_rnd(&seed) % 5);

		for (int k = 0; k < n; k++) {
			uint64_t page = nt_rnd(&seed) % NPAGES, *words = (uint64_t *)(mem + page * ps);

			switch (nt_rnd(&seed) % 8) {
			case 0:		/* a whole page of noise: sent raw */
				for (size_t i = 0; i < ps / 8; i++)
					words[i] = nt_rnd(&seed);
				break;
			case 1: {	/* the same value again: "unchanged" */
				volatile uint64_t *v = &words[nt_rnd(&seed) % (ps / 8)];

				*v = *v;
				break;
			}
			default:	/* a few words: XOR + LZ4 */
				for (int i = 0; i < 4; i++)
					words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
			}
		}
		/* At least one real change, so every sync makes an epoch. */
		((uint64_t *)mem)[e % (ps / 8)] += (uint64_t)e;
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
		hashes[e] = nt_hash(mem, NPAGES * ps);
		__atomic_store_n(&hashed, (uint64_t)e, __ATOMIC_RELEASE);
		if (e % 100 == 0) {
			err = pt_region_wait(w, (uint64_t)e, PT_LEVEL_REPLICATED, 20000);
			if (err)
				DIE("PT_LEVEL_REPLICATED wait for epoch %d: %s (publisher: %s)", e,
				    pt_strerror(err), pres.msg);
			waits++;
		}
		if (nt_ms() - t0 > DEADLINE_MS)
			DIE("the writer took too long (at epoch %d)", e);
	}
	t1 = nt_ms();
	err = pt_region_wait(w, EPOCHS, PT_LEVEL_REPLICATED, 30000);
	if (err)
		DIE("PT_LEVEL_REPLICATED for the last epoch: %s (%s)", pt_strerror(err), pres.msg);
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	pthread_join(pt, NULL);
	pthread_join(ft, NULL);
	pthread_join(ct, NULL);
	if (pres.err || fres.err || cres.err)
		DIE("publisher: %s | follower: %s | checker: %s", pres.msg, fres.msg, cres.msg);
	if (fres.fs.epoch != EPOCHS)
		DIE("the follower reached epoch %llu of %d", (unsigned long long)fres.fs.epoch, EPOCHS);
	if (cres.checks < 50)
		DIE("the replica on the follower showed only %llu epochs",
		    (unsigned long long)cres.checks);
	/* The follower's directory on its own: verify, and a new replica. */
	{
		struct pt_replica_opts ro = { .sz = sizeof(ro) };
		struct pt_replica *r;

		err = pt_dir_verify(dst_dir, NULL, NULL);
		if (err)
			DIE("verify of the follower's directory: %d problems", err);
		err = pt_replica_open(&r, dst_dir, &ro);
		if (err || pt_replica_epoch(r) != EPOCHS ||
		    nt_hash(pt_replica_base(r), NPAGES * ps) != hashes[EPOCHS] ||
		    memcmp(pt_replica_base(r), mem, NPAGES * ps))
			DIE("the follower's directory differs from the writer at epoch %d", EPOCHS);
		pt_replica_close(r);
	}
	printf("%d epochs in %.2f s (%.0f epochs/s, writer paced by %llu replicated waits); "
	       "replica on the follower checked at %llu epochs\n", EPOCHS,
	       (double)(t1 - t0) / 1000, (EPOCHS - 1) * 1000.0 / (double)(t1 - t0 + 1),
	       (unsigned long long)waits, (unsigned long long)cres.checks);
	printf("publisher: %llu pages (%llu unchanged, %llu raw), %llu messages, %llu bytes raw, "
	       "%llu on the wire (%.1fx fewer)\n", (unsigned long long)pres.ps.pages,
	       (unsigned long long)pres.ps.pages_unchanged, (unsigned long long)pres.ps.pages_raw,
	       (unsigned long long)pres.ps.messages, (unsigned long long)pres.ps.bytes_raw,
	       (unsigned long long)pres.ps.bytes_wire,
	       (double)pres.ps.bytes_raw / (double)(pres.ps.bytes_wire + 1));
	printf("follower: %llu epochs, %llu messages, %llu bytes on the wire\n",
	       (unsigned long long)fres.fs.epochs, (unsigned long long)fres.fs.messages,
	       (unsigned long long)fres.fs.bytes_wire);
	err = pt_region_close(w);
	if (err)
		DIE("close: %s", pt_strerror(err));
	natsd_stop(&server);
	printf("done\n");
	return 0;
}
