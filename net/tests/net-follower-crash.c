/* net-follower-crash: a follower applying a backlog in batches (epochs queued, made durable together) is killed -9 again and again: each time its standby reopens at or after the last epoch it reported durable, equal to the writer's memory at that epoch, with nothing torn, and a new follower goes on to the end. */
#include <pthread.h>

#include "nettest.h"

#define NPAGES	64
#define EPOCHS	4000
#define KILLS	6
#define STREAM	"crash"

static uint64_t hashes[EPOCHS + 1];	/* the writer's memory at each epoch */
static size_t ps;

/*
 * The follower, in a process of its own (this program, run again): after
 * every run it prints the epoch its stats say durable.
 */
static int child(const char *url, const char *dir)
{
	struct pt_net_opts o = { .sz = sizeof(o), .urls = url, .stream = STREAM };
	struct pt_follower_stats st = { .sz = sizeof(st) };
	struct pt_follower *f;
	uint64_t start = nt_ms();
	int err;

	setvbuf(stdout, NULL, _IONBF, 0);
	if ((err = pt_follower_open(&f, dir, &o))) {
		printf("open: %s\n", pt_net_last_error());
		return T_FAIL;
	}
	while (nt_ms() - start < 60000) {
		err = pt_follower_run(f, 20);
		if (err < 0 && err != -EAGAIN) {
			printf("run: %s\n", pt_net_last_error());
			return T_FAIL;
		}
		pt_follower_stats(f, &st);
		printf("durable %lld\n", (long long)st.epoch);
		if (st.epoch >= EPOCHS)
			break;
	}
	if ((err = pt_follower_close(f))) {
		printf("close: %s\n", pt_strerror(err));
		return T_FAIL;
	}
	return st.epoch >= EPOCHS ? 0 : T_FAIL;
}

/* The last epoch a child's log says durable (0: none yet). */
static pt_epoch_t reported(const char *log)
{
	FILE *fp = fopen(log, "r");
	char line[512];
	long long e, last = 0;

	if (!fp)
		return 0;
	while (fgets(line, sizeof(line), fp))
		if (sscanf(line, "durable %lld", &e) == 1)
			last = e;
	fclose(fp);
	return last;
}

/* The standby after a crash: reachable, whole, the writer's at its epoch. */
static pt_epoch_t check_standby(const char *dir, pt_epoch_t at_least, int kill)
{
	struct pt_dir_status ds = { .sz = sizeof(ds) };
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_replica *r;
	pt_epoch_t e;
	int err;

	if ((err = pt_dir_status(dir, &ds, NULL, NULL)))
		DIE("kill %d: status of the standby: %s", kill, pt_strerror(err));
	if (ds.reach)
		DIE("kill %d: the standby does not reach its durable epoch %lld: %s", kill,
		    (long long)ds.state_durable, pt_strerror(ds.reach));
	if ((err = pt_replica_open(&r, dir, &ro)))
		DIE("kill %d: a replica on the standby: %s", kill, pt_strerror(err));
	e = pt_replica_epoch(r);
	if (e < at_least || e < ds.state_durable)
		DIE("kill %d: the standby is at epoch %lld, the follower had reported %lld durable "
		    "(state block: %lld)", kill, (long long)e, (long long)at_least,
		    (long long)ds.state_durable);
	if (nt_hash(pt_replica_base(r), NPAGES * ps) != hashes[e])
		DIE("kill %d: the standby at epoch %lld is not the writer's", kill, (long long)e);
	pt_replica_close(r);
	if ((err = pt_dir_verify(dir, NULL, NULL)))
		DIE("kill %d: verify of the standby: %d problems", kill, err);
	return e;
}

int main(int argc, char **argv)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct pt_publisher_stats pst = { .sz = sizeof(pst) };
	struct pt_net_opts o = { .sz = sizeof(o), .stream = STREAM };
	struct natsd server;
	struct pt_publisher *p;
	struct pt_region *w;
	unsigned char *mem;
	char self[4096], *dst, *cargv[5];
	uint64_t seed = 31, start;
	pt_epoch_t before = 0;
	int err, between = 0, status;
	ssize_t n;
	pid_t pid;

	if (argc == 4 && !strcmp(argv[1], "child"))
		return child(argv[2], argv[3]);
	nt_init("net-follower-crash: a follower killed -9 between its batched syncs resumes from "
		"its durable epoch, nothing torn");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		DIE("readlink /proc/self/exe");
	self[n] = 0;
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	dst = strdup(nt_path("standby"));

	/* The backlog: EPOCHS small epochs in the stream before any follower. */
	if ((err = pt_region_create(&w, nt_path("src"), NPAGES * ps, &wo)))
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	if ((err = pt_publisher_open(&p, nt_path("src"), &o)))
		DIE("publisher: %s", pt_net_last_error());
	for (int e = 1; e <= EPOCHS; e++) {
		for (int k = 0; k < 1 + (int)(nt_rnd(&seed) % 4); k++) {
			uint64_t *words = (uint64_t *)(mem + (nt_rnd(&seed) % NPAGES) * ps);

			for (int i = 0; i < 4; i++)
				words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
		}
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
		hashes[e] = nt_hash(mem, NPAGES * ps);
		if (e % 200 == 0 && (err = pt_publisher_run(p, 0)) < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
	}
	for (start = nt_ms(); pst.epoch < EPOCHS && nt_ms() - start < 60000;) {
		if ((err = pt_publisher_run(p, 100)) < 0 && err != -EAGAIN)
			DIE("publisher: %s", pt_net_last_error());
		pt_publisher_stats(p, &pst);
	}
	if (pst.epoch != EPOCHS)
		DIE("the stream holds %lld epochs of %d", (long long)pst.epoch, EPOCHS);
	pt_publisher_close(p);

	/* Followers killed at rising epochs of the standby, then one to the end. */
	for (int kill = 1; kill <= KILLS + 1; kill++) {
		const char *log = nt_path("follow%d.log", kill);
		pt_epoch_t target = kill <= KILLS ? (pt_epoch_t)EPOCHS * kill / (KILLS + 1) : 0;
		struct pt_dir_status ds = { .sz = sizeof(ds) };
		pt_epoch_t said, now;
		bool exited = false;

		cargv[0] = self;
		cargv[1] = "child";
		cargv[2] = server.url;
		cargv[3] = dst;
		cargv[4] = NULL;
		pid = nt_spawn(cargv, log);
		for (start = nt_ms(); nt_ms() - start < 60000; nt_sleep_ms(1)) {
			if (waitpid(pid, &status, WNOHANG) == pid) {
				nt_forget(pid);
				exited = true;
				break;
			}
			if (target && pt_dir_epoch(dst) >= target)
				break;
		}
		if (!target) {
			if (!exited)
				DIE("the last follower did not finish (log %s)", log);
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				DIE("the last follower failed (log %s)", log);
			now = check_standby(dst, EPOCHS, kill);
			if (now != EPOCHS)
				DIE("the standby ended at epoch %lld of %d", (long long)now, EPOCHS);
			printf("  the last follower reached epoch %d; the standby verifies\n", EPOCHS);
			break;
		}
		if (exited)
			DIE("follower %d exited before it was killed (log %s)", kill, log);
		nt_kill(pid, SIGKILL);
		said = reported(log);
		/* Between two syncs: the state block says epochs were
		 * published that the follower had not made durable yet. */
		if (!pt_dir_status(dst, &ds, NULL, NULL) && ds.published > ds.state_durable)
			between++;
		now = check_standby(dst, said > before ? said : before, kill);
		printf("  kill %d: reported durable %lld, state block published %lld durable %lld; "
		       "reopened at %lld, the writer's\n", kill, (long long)said,
		       (long long)ds.published, (long long)ds.state_durable, (long long)now);
		before = now;
	}
	printf("%d of %d kills came between two syncs of the standby\n", between, KILLS);
	pt_region_close(w);
	natsd_stop(&server);
	free(dst);
	printf("done\n");
	return 0;
}
