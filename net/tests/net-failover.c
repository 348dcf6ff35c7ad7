/* net-failover: the failover drill, 5 rounds: the writer's processes (the writer and its publisher) killed -9 at a random moment under load, the standby (`follow --standby --auto-promote`, lease 1 s) takes over and a new writer starts on its directory: no epoch acknowledged at PT_LEVEL_REPLICATED is lost, the new writer's content is the last replicated epoch, and a standby that followed every term holds the last writer's content. */
#include "drill.h"

int main(void)
{
	struct drill_result res;
	uint64_t p50, max;

	nt_init("net-failover: 5 failovers, the writer's processes killed at random moments; "
		"nothing acknowledged lost");
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	/* The drill forks its writer while libnats's threads run; a child of
	 * this ASan runtime can block for good on an allocator lock one of
	 * them held at the fork.  make check runs it unsanitized. */
	printf("skip: forks while libnats threads run, which this sanitizer runtime does not "
	       "survive (run without sanitizers in make check)\n");
	return T_SKIP;
#endif
	drill_run(5, 1000, 0x5eed ^ (uint64_t)getpid(), &res);
	if (res.rounds != 5)
		DIE("%u rounds", res.rounds);
	drill_p50_max(res.failover_ms, res.rounds, &p50, &max);
	printf("%u failovers, %llu epochs written, %llu half-published epochs dropped at a "
	       "marker; failover (kill to the new writer's first epoch acknowledged) p50 %llu ms, "
	       "max %llu ms, lease 1000 ms (figures: make bench-net)\n", res.rounds,
	       (unsigned long long)res.epochs, (unsigned long long)res.half_epochs,
	       (unsigned long long)p50, (unsigned long long)max);
	printf("done\n");
	return 0;
}
