/* net-checkpointed: a publisher restarted after checkpoints dropped the region's log past epoch 1 jumps to the image's epoch when the stream is at or past it (image behind the stream, image at the stream), and writes the snapshot at the image's epoch when the stream is behind the image (the follower crosses the gap from it); the follower stays equal to the writer. */
#include "nettest.h"

#define NPAGES	64

static struct pt_region *w;
static unsigned char *mem;
static size_t ps;
static uint64_t seed = 17;
static pt_epoch_t epoch;
static const char *src, *dst;
static struct pt_net_opts o = { .sz = sizeof(o), .stream = "checkpointed" };

/* Epochs of random writes, n of them. */
static void write_epochs(int n)
{
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < 1 + (int)(nt_rnd(&seed) % 4); k++) {
			uint64_t page = nt_rnd(&seed) % NPAGES, *words = (uint64_t *)(mem + page * ps);

			for (int j = 0; j < 4; j++)
				words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
		}
		if (pt_region_sync(w) != (int64_t)++epoch)
			DIE("sync %llu", (unsigned long long)epoch);
	}
}

static void checkpoint(void)
{
	int64_t e = pt_region_checkpoint(w);

	if (e != (int64_t)epoch)
		DIE("checkpoint: %lld, epoch %llu", (long long)e, (unsigned long long)epoch);
}

/* The log no longer holds epoch 1: a delta replica from 0 is told -ESTALE. */
static bool log_dropped_epoch_1(void)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro), .flags = PT_REPLICA_DELTAS };
	struct pt_replica *r;
	int64_t e;

	if (pt_replica_open(&r, src, &ro))
		DIE("delta replica");
	e = pt_replica_step(r, 0, NULL, NULL);
	pt_replica_close(r);
	return e == -ESTALE;
}

/* Run the publisher and the follower until the stream and the standby hold
 * epoch `until`; returns the publisher's last result (< 0: its error). */
static int pump(struct pt_publisher *p, struct pt_follower *f, pt_epoch_t until)
{
	struct pt_publisher_stats ps_ = { .sz = sizeof(ps_) };
	struct pt_follower_stats fs = { .sz = sizeof(fs) };
	uint64_t start = nt_ms();
	int err = 0, ferr;

	while (nt_ms() - start < 20000) {
		if (p) {
			err = pt_publisher_run(p, 10);
			if (err < 0 && err != -EAGAIN)
				return err;
			pt_publisher_stats(p, &ps_);
		}
		ferr = pt_follower_run(f, 10);
		if (ferr < 0 && ferr != -EAGAIN)
			DIE("follower: %s", pt_net_last_error());
		pt_follower_stats(f, &fs);
		if ((!p || ps_.epoch >= until) && fs.epoch >= until)
			return err;
	}
	DIE("stuck: publisher at %llu, follower at %llu, waiting for %llu (%s)",
	    (unsigned long long)ps_.epoch, (unsigned long long)fs.epoch,
	    (unsigned long long)until, pt_net_last_error());
}

static void same_as_writer(const char *when)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_replica *r;
	int err = pt_replica_open(&r, dst, &ro);

	if (err || pt_replica_epoch(r) != epoch || memcmp(pt_replica_base(r), mem, NPAGES * ps))
		DIE("%s: the follower's directory is not the writer's epoch %llu (%s, epoch %llu)",
		    when, (unsigned long long)epoch, pt_strerror(err),
		    err ? 0ull : (unsigned long long)pt_replica_epoch(r));
	pt_replica_close(r);
	printf("  %-40s done (epoch %llu)\n", when, (unsigned long long)epoch);
}

static struct pt_publisher *publisher(void)
{
	struct pt_publisher *p;

	if (pt_publisher_open(&p, src, &o))
		DIE("publisher: %s", pt_net_last_error());
	return p;
}

int main(void)
{
	/* Segments of 64 KiB, nothing retained: a checkpoint drops every
	 * segment wholly at or below the image's epoch. */
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				     .segment_bytes = 64 << 10, .retain_bytes = 1 };
	struct natsd server;
	struct pt_publisher *p;
	struct pt_follower *f;
	uint64_t stream_epoch;
	int err;

	nt_init("net-checkpointed: a publisher restarted on a region whose log was checkpointed "
		"past epoch 1");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	src = strdup(nt_path("src"));
	dst = strdup(nt_path("dst"));
	if ((err = pt_region_create(&w, src, NPAGES * ps, &wo)))
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);

	/* Epochs 1..250 published; checkpointed at 250 while it runs. */
	p = publisher();
	write_epochs(250);
	if (pt_follower_open(&f, dst, &o))
		DIE("follower: %s", pt_net_last_error());
	if ((err = pump(p, f, epoch)) < 0)
		DIE("publisher: %s", pt_net_last_error());
	checkpoint();
	write_epochs(50);
	if ((err = pump(p, f, epoch)) < 0)
		DIE("publisher: %s", pt_net_last_error());
	pt_publisher_close(p);
	if (!log_dropped_epoch_1())
		DIE("the log still holds epoch 1: the test tests nothing");

	/* Image at 250, stream at 300: the restarted publisher jumps to 250,
	 * checks the chain at 299 and 300, and goes on. */
	write_epochs(20);
	p = publisher();
	if ((err = pump(p, f, epoch)) < 0)
		DIE("restart, image behind the stream: %s", pt_net_last_error());
	if ((err = pt_region_wait(w, epoch, PT_LEVEL_REPLICATED, 5000)))
		DIE("PT_LEVEL_REPLICATED %llu: %s", (unsigned long long)epoch, pt_strerror(err));
	same_as_writer("image behind the stream");

	/* Image at the stream's epoch. */
	pt_publisher_close(p);
	checkpoint();
	p = publisher();
	write_epochs(30);
	if ((err = pump(p, f, epoch)) < 0)
		DIE("restart, image at the stream: %s", pt_net_last_error());
	same_as_writer("image at the stream's epoch");

	/* Image past the stream: the epochs only the image holds now go into
	 * the snapshot in the cluster, the stream goes on after the image's
	 * epoch, and the follower crosses the gap from the snapshot. */
	pt_publisher_close(p);
	stream_epoch = epoch;
	write_epochs(200);
	checkpoint();
	p = publisher();
	write_epochs(10);
	if ((err = pump(p, f, epoch)) < 0)
		DIE("restart, stream behind the image: %s", pt_net_last_error());
	{
		struct pt_follower_stats fs = { .sz = sizeof(fs) };

		pt_follower_stats(f, &fs);
		if (fs.snapshot_catchups != 1 || fs.snapshot_from != (pt_epoch_t)stream_epoch ||
		    fs.snapshot_to != (pt_epoch_t)stream_epoch + 200)
			DIE("the follower crossed the gap by %llu catch-ups, from %lld to %lld",
			    (unsigned long long)fs.snapshot_catchups, (long long)fs.snapshot_from,
			    (long long)fs.snapshot_to);
	}
	if ((err = pt_region_wait(w, epoch, PT_LEVEL_REPLICATED, 5000)))
		DIE("PT_LEVEL_REPLICATED %llu: %s", (unsigned long long)epoch, pt_strerror(err));
	same_as_writer("stream behind the image");
	pt_publisher_close(p);
	if ((err = pt_follower_close(f)))
		DIE("follower close: %s", pt_strerror(err));
	if ((err = pt_dir_verify(dst, NULL, NULL)))
		DIE("verify of the follower's directory: %d", err);
	pt_region_close(w);
	natsd_stop(&server);
	printf("done\n");
	return 0;
}
