/* net-fence: two publishers on one stream: a stale one is refused (JetStream error 10071), says so and marks its region deposed; a publisher whose region diverged from the stream, or of another history, is refused too. */
#include "failtest.h"

#define NPAGES 32

static size_t ps;

static void write_epoch(struct pt_region *r, uint64_t salt)
{
	unsigned char *mem = pt_region_base(r);

	((uint64_t *)(mem + (salt % NPAGES) * ps))[salt % 64] = salt * 0x9e3779b97f4a7c15ull;
	((uint64_t *)mem)[1] += salt;
	if (pt_region_sync(r) < 0)
		DIE("sync");
}

int main(void)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct natsd server;
	struct pt_net_opts o = { .sz = sizeof(o), .stream = "fence" };
	struct pt_publisher *a, *b, *a2, *c;
	struct pt_region *r1, *r2, *r3;
	char *d1, *d2, *d3;
	char cmd[600];
	int err;

	nt_init("net-fence: a second publisher on a stream fences the first; diverged and foreign "
		"publishers are refused");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	d1 = strdup(nt_path("r1"));
	d2 = strdup(nt_path("r2"));
	d3 = strdup(nt_path("r3"));

	/* Two regions of one history: r2 is a copy of r1 at epoch 5 (as a
	 * standby promoted while the old writer still runs would be). */
	if ((err = pt_region_create(&r1, d1, NPAGES * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	for (int e = 1; e <= 5; e++)
		write_epoch(r1, (uint64_t)e);
	if (pt_region_close(r1))
		DIE("close");
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", d1, d2);
	if (system(cmd))
		DIE("copying the region");
	if ((err = pt_region_open(&r1, d1, &wo)) || (err = pt_region_open(&r2, d2, &wo)))
		DIE("reopen: %s", pt_strerror(err));

	/* A publishes epochs 1-5 of r1. */
	if ((err = pt_publisher_open(&a, d1, &o)))
		DIE("open A: %s", pt_net_last_error());
	if ((err = ft_publish_to(a, 5)))
		DIE("A: %s", pt_net_last_error());
	if (pt_region_wait(r1, 5, PT_LEVEL_REPLICATED, 1000))
		DIE("r1 epoch 5 not replicated");

	/* B, on the copy, goes on after epoch 5 with its own epochs 6-7. */
	if ((err = pt_publisher_open(&b, d2, &o)))
		DIE("open B: %s", pt_net_last_error());
	write_epoch(r2, 1006);
	write_epoch(r2, 1007);
	if ((err = ft_publish_to(b, 7)))
		DIE("B: %s", pt_net_last_error());
	printf("B published epochs 6-7 of the copy after A's 1-5\n");

	/* A's next publish expects the sequence it last saw: refused. */
	write_epoch(r1, 6);
	err = pt_publisher_run(a, 1000);
	printf("A: %s\n", pt_net_last_error());
	if (err != -EOWNERDEAD || !strstr(pt_net_last_error(), "10071") ||
	    !strstr(pt_net_last_error(), "fenced"))
		DIE("A was not fenced: %d", err);
	if (pt_publisher_run(a, 0) != -EOWNERDEAD)
		DIE("a fenced publisher went on");
	if ((err = pt_region_wait(r1, 6, PT_LEVEL_REPLICATED, 1000)) != -EOWNERDEAD)
		DIE("r1 not deposed: %s", pt_strerror(err));
	pt_publisher_close(a);

	/* A new publisher on r1 finds the stream's epoch 7 does not follow
	 * r1's epoch 6: refused, r1 stays deposed. */
	write_epoch(r1, 7);
	if ((err = pt_publisher_open(&a2, d1, &o)))
		DIE("open A2: %s", pt_net_last_error());
	err = pt_publisher_run(a2, 1000);
	printf("A2: %s\n", pt_net_last_error());
	if (err != -EOWNERDEAD || !strstr(pt_net_last_error(), "another version"))
		DIE("A2 was not refused: %d", err);
	pt_publisher_close(a2);

	/* B goes on. */
	write_epoch(r2, 1008);
	if ((err = ft_publish_to(b, 8)))
		DIE("B after the fence: %s", pt_net_last_error());
	if (pt_region_wait(r2, 8, PT_LEVEL_REPLICATED, 1000))
		DIE("r2 epoch 8 not replicated");
	pt_publisher_close(b);

	/* Another history on the same stream: refused at open. */
	if ((err = pt_region_create(&r3, d3, NPAGES * ps, &wo)))
		DIE("create r3: %s", pt_strerror(err));
	write_epoch(r3, 1);
	err = pt_publisher_open(&c, d3, &o);
	printf("C: %s\n", pt_net_last_error());
	if (err != -ESTALE || !strstr(pt_net_last_error(), "history"))
		DIE("another history was not refused: %d", err);

	pt_region_close(r1);
	pt_region_close(r2);
	pt_region_close(r3);
	natsd_stop(&server);
	free(d1);
	free(d2);
	free(d3);
	printf("done\n");
	return 0;
}
