/* net-restart: `pagetrack publish` and `pagetrack follow` killed with SIGKILL mid-run and restarted (each alone, then both): the follower's directory ends equal to the writer, equal at every epoch a replica on it showed, and verifies. */
#include "nettest.h"

#define NPAGES	256
#define EPOCHS	1500
#define DEADLINE_MS 150000

static uint64_t hashes[EPOCHS + 2];
static uint64_t hashed;
static int stop_flag;

static pid_t start_publisher(const char *tool, const char *url, const char *src)
{
	char *argv[] = { (char *)tool, "publish", (char *)src, "--nats", (char *)url, "--stream",
			 "restart", NULL };

	return nt_spawn(argv, nt_path("publish.log"));
}

static pid_t start_follower(const char *tool, const char *url, const char *dst)
{
	char *argv[] = { (char *)tool, "follow", (char *)url, "--stream", "restart", (char *)dst,
			 NULL };

	return nt_spawn(argv, nt_path("follow.log"));
}

static int exit_status(pid_t pid)
{
	int status;

	kill(pid, SIGTERM);
	for (int i = 0; i < 1000; i++) {	/* 10 s */
		if (waitpid(pid, &status, WNOHANG) == pid) {
			nt_forget(pid);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		nt_sleep_ms(10);
	}
	nt_kill(pid, SIGKILL);
	return -1;
}

static void show_log(const char *name)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "tail -n 20 '%s' >&2", nt_path("%s", name));
	if (system(cmd))
		return;
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .durability = PT_DURABLE_BACKGROUND };
	struct nt_checker chk = { .hashes = hashes, .hashed = &hashed, .stop = &stop_flag,
				  .deadline_ms = DEADLINE_MS };
	struct natsd server;
	const char *tool;
	char *src, *dst;
	pid_t pub, fol;
	struct pt_region *w;
	unsigned char *mem;
	uint64_t seed = 9, t0;
	size_t ps;
	int err, kills = 0;

	nt_init("net-restart: publisher and follower processes killed -9 mid-run and restarted; "
		"nothing lost or torn");
	tool = nt_tool();
	ps = (size_t)sysconf(_SC_PAGESIZE);
	natsd_start(&server, "nats", NULL);
	src = strdup(nt_path("src"));
	dst = strdup(nt_path("dst"));
	chk.dir = dst;
	err = pt_region_create(&w, src, NPAGES * ps, &wo);
	if (err)
		DIE("writer: %s", pt_strerror(err));
	mem = pt_region_base(w);
	pt_region_sync(w);
	hashes[1] = nt_hash(mem, NPAGES * ps);
	__atomic_store_n(&hashed, 1, __ATOMIC_RELEASE);
	pub = start_publisher(tool, server.url, src);
	fol = start_follower(tool, server.url, dst);
	pthread_create(&chk.thread, NULL, nt_checker_run, &chk);
	t0 = nt_ms();
	for (int e = 2; e <= EPOCHS; e++) {
		for (int k = 0; k < 1 + (int)(nt_rnd(&seed) % 6); k++) {
			uint64_t page = nt_rnd(&seed) % NPAGES, *words = (uint64_t *)(mem + page * ps);

			for (int i = 0; i < 3; i++)
				words[nt_rnd(&seed) % (ps / 8)] = nt_rnd(&seed);
		}
		((uint64_t *)mem)[e % (ps / 8)] += (uint64_t)e;
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
		hashes[e] = nt_hash(mem, NPAGES * ps);
		__atomic_store_n(&hashed, (uint64_t)e, __ATOMIC_RELEASE);
		nt_sleep_ms(1);
		switch (e) {
		case 300:	/* the publisher alone */
			nt_kill(pub, SIGKILL);
			kills++;
			break;
		case 450:
			pub = start_publisher(tool, server.url, src);
			break;
		case 650:	/* the follower alone */
			nt_kill(fol, SIGKILL);
			kills++;
			break;
		case 800:
			fol = start_follower(tool, server.url, dst);
			break;
		case 1000:	/* both */
			nt_kill(pub, SIGKILL);
			nt_kill(fol, SIGKILL);
			kills += 2;
			break;
		case 1100:
			fol = start_follower(tool, server.url, dst);
			pub = start_publisher(tool, server.url, src);
			break;
		}
		if (e > 300 && e < 450 && pt_region_wait(w, (uint64_t)e, PT_LEVEL_REPLICATED, 0) == 0)
			DIE("epoch %d reported replicated with no publisher running", e);
		if (nt_ms() - t0 > DEADLINE_MS / 2)
			DIE("the writer took too long (epoch %d)", e);
	}
	err = pt_region_wait(w, EPOCHS, PT_LEVEL_REPLICATED, 30000);
	if (err) {
		show_log("publish.log");
		DIE("PT_LEVEL_REPLICATED for epoch %d: %s", EPOCHS, pt_strerror(err));
	}
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	pthread_join(chk.thread, NULL);
	if (chk.err) {
		show_log("follow.log");
		DIE("checker: %s", chk.msg);
	}
	if ((err = exit_status(pub)) != 0) {
		show_log("publish.log");
		DIE("publish exited %d on SIGTERM", err);
	}
	if ((err = exit_status(fol)) != 0) {
		show_log("follow.log");
		DIE("follow exited %d on SIGTERM", err);
	}
	err = pt_dir_verify(dst, NULL, NULL);
	if (err)
		DIE("verify of the follower's directory: %d", err);
	{
		struct pt_replica_opts ro = { .sz = sizeof(ro) };
		struct pt_replica *r;

		err = pt_replica_open(&r, dst, &ro);
		if (err || pt_replica_epoch(r) != EPOCHS || memcmp(pt_replica_base(r), mem, NPAGES * ps))
			DIE("the follower's directory is not the writer's epoch %d", EPOCHS);
		pt_replica_close(r);
	}
	printf("%d kills; %d epochs; the replica on the follower checked at %llu epochs (%llu "
	       "reopens after a follower's crash)\n", kills, EPOCHS, (unsigned long long)chk.checks,
	       (unsigned long long)chk.reopens);
	pt_region_close(w);
	natsd_stop(&server);
	free(src);
	free(dst);
	printf("done\n");
	return 0;
}
