/* net-enospc: the follower's standby directory on a small tmpfs that fills up: the follower stops with a clear ENOSPC error naming the directory and the stream sequence, and once space returns a restarted follower resumes with nothing lost (root only: it mounts the tmpfs). */
#include <sys/mount.h>

#include "nettest.h"

#define NPAGES	64

static char mnt[256], filler[300];
static bool mounted;

static void unmount(void)
{
	if (mounted && umount2(mnt, MNT_DETACH) == 0)
		mounted = false;
}

static void on_signal(int sig)
{
	unmount();
	nt_on_signal(sig);
}

/* Fill the file system to the last byte. */
static void fill(void)
{
	static char buf[4096];
	int fd = open(filler, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	if (fd < 0)
		DIE("%s: %s", filler, strerror(errno));
	while (write(fd, buf, sizeof(buf)) > 0)
		;
	while (write(fd, buf, 1) > 0)
		;
	close(fd);
}

static struct pt_region *w;
static unsigned char *mem;
static size_t ps;
static uint64_t seed = 23;
static pt_epoch_t epoch;

/* An epoch of whole pages of noise: the standby's log grows by them.  Few
 * of them: a standby keeps up to retain_bytes (64 MiB) of log, and the
 * whole test must fit in the tmpfs once the filler is gone. */
static void write_epoch(void)
{
	for (int k = 0; k < 4; k++) {
		uint64_t *words = (uint64_t *)(mem + (nt_rnd(&seed) % NPAGES) * ps);

		for (size_t i = 0; i < ps / 8; i++)
			words[i] = nt_rnd(&seed);
	}
	if (pt_region_sync(w) != (int64_t)++epoch)
		DIE("sync %llu", (unsigned long long)epoch);
}

static int follower_run_until(struct pt_publisher *p, struct pt_follower *f, pt_epoch_t until)
{
	struct pt_follower_stats fs = { .sz = sizeof(fs) };
	uint64_t start = nt_ms();
	int err;

	while (nt_ms() - start < 20000) {
		err = pt_publisher_run(p, 5);
		if (err < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
		err = pt_follower_run(f, 5);
		if (err < 0 && err != -EAGAIN)
			return err;
		pt_follower_stats(f, &fs);
		if (fs.epoch >= until)
			return 0;
	}
	DIE("the follower is stuck at epoch %llu (want %llu)", (unsigned long long)fs.epoch,
	    (unsigned long long)until);
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_net_opts o = { .sz = sizeof(o), .stream = "enospc" };
	struct pt_follower_stats fs = { .sz = sizeof(fs) };
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct natsd server;
	struct pt_publisher *p;
	struct pt_follower *f;
	struct pt_replica *r;
	char *src;
	char dst[300];
	pt_epoch_t before;
	int err;

	nt_init("net-enospc: the follower's disk fills up; it stops with ENOSPC and resumes once "
		"space returns");
	if (geteuid() != 0) {
		printf("skip: mounting a tmpfs for the standby needs root\n");
		return T_SKIP;
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	snprintf(mnt, sizeof(mnt), "%s", nt_path("mnt"));
	if (mkdir(mnt, 0700))
		DIE("mkdir %s: %s", mnt, strerror(errno));
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m,mode=0700")) {
		printf("skip: mount -t tmpfs: %s\n", strerror(errno));
		return T_SKIP;
	}
	mounted = true;
	atexit(unmount);	/* before nt_cleanup removes the directory */
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	snprintf(dst, sizeof(dst), "%s/standby", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);

	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	src = strdup(nt_path("src"));
	if ((err = pt_region_create(&w, src, NPAGES * ps, &wo)))
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	if ((err = pt_publisher_open(&p, src, &o)))
		DIE("publisher: %s", pt_net_last_error());
	for (int i = 0; i < 20; i++)
		write_epoch();
	if ((err = pt_follower_open(&f, dst, &o)))
		DIE("follower: %s", pt_net_last_error());
	if ((err = follower_run_until(p, f, epoch)))
		DIE("follower before the disk filled: %s", pt_net_last_error());
	printf("  standby at epoch %llu; filling its file system\n", (unsigned long long)epoch);

	/* Full: the follower must stop, saying why, and stay stopped. */
	fill();
	for (int i = 0; i < 10; i++)
		write_epoch();
	err = follower_run_until(p, f, epoch);
	if (err != -ENOSPC)
		DIE("the follower on a full disk: %d (%s), expected -ENOSPC", err, pt_net_last_error());
	if (!strstr(pt_net_last_error(), dst) || !strstr(pt_net_last_error(), "sequence"))
		DIE("the error does not name the directory and the sequence: %s", pt_net_last_error());
	printf("  full disk: %s\n", pt_net_last_error());
	if (pt_follower_run(f, 0) != -ENOSPC)
		DIE("the follower went on after ENOSPC");
	pt_follower_stats(f, &fs);
	before = fs.epoch;
	pt_follower_close(f);	/* may report the log's error: the disk is full */

	/* Space back: a new follower recovers the standby and catches up. */
	if (unlink(filler))
		DIE("unlink %s: %s", filler, strerror(errno));
	for (int i = 0; i < 5; i++)
		write_epoch();
	if ((err = pt_follower_open(&f, dst, &o)))
		DIE("follower after space returned: %s", pt_net_last_error());
	pt_follower_stats(f, &fs);
	if (fs.epoch < before)
		DIE("the standby came back at epoch %llu, it had applied %llu",
		    (unsigned long long)fs.epoch, (unsigned long long)before);
	printf("  space back: the standby reopened at epoch %llu (it had applied %llu)\n",
	       (unsigned long long)fs.epoch, (unsigned long long)before);
	if ((err = follower_run_until(p, f, epoch)))
		DIE("follower after space returned: %s", pt_net_last_error());
	if ((err = pt_follower_close(f)))
		DIE("follower close: %s", pt_strerror(err));
	pt_publisher_close(p);
	if ((err = pt_dir_verify(dst, NULL, NULL)))
		DIE("verify of the standby: %d", err);
	err = pt_replica_open(&r, dst, &ro);
	if (err || pt_replica_epoch(r) != epoch || memcmp(pt_replica_base(r), mem, NPAGES * ps))
		DIE("the standby is not the writer's epoch %llu", (unsigned long long)epoch);
	pt_replica_close(r);
	printf("  the standby equals the writer at epoch %llu and verifies\n",
	       (unsigned long long)epoch);
	pt_region_close(w);
	natsd_stop(&server);
	unmount();
	free(src);
	printf("done\n");
	return 0;
}
