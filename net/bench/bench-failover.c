/* bench-failover: failover time over repeated drills (the writer's processes killed -9 at random moments under load, the standby promoting itself): p50 and max, with a 1 s lease and, as the baseline in the same run, a 500 ms lease; figures only, never pass or fail. */
/*
 * Per lease: DRILLS drills of ROUNDS failovers each (net/tests/drill.h; one
 * nats-server on loopback, file storage).  Failover: from the kill to the
 * first epoch of the new writer acknowledged by the stream (the new writer
 * is started as soon as the term marker is in the stream); promotion: from
 * the kill to the marker.  The lease is the floor of both: a standby waits
 * for it to lapse (up to a lease after the holder's last renewal, which
 * was up to a third of a lease before the kill, plus a quarter lease
 * between two looks at it).
 */
#include "drill.h"

#define DRILLS	2
#define ROUNDS	5

int main(void)
{
	static const unsigned leases[] = { 1000, 500 };
	uint64_t fo[2][DRILLS * ROUNDS], pr[2][DRILLS * ROUNDS];
	unsigned n[2] = { 0, 0 };
	char load0[128], load1[128];

	nt_init("bench-failover: failover time, the writer's processes killed -9 under load, "
		"the standby promoting itself (figures, not pass/fail)");
	nt_loadavg(load0, sizeof(load0));
	for (int d = 0; d < DRILLS; d++)
		for (int l = 0; l < 2; l++) {
			struct drill_result res;

			fprintf(stderr, "drill %d, lease %u ms:\n", d + 1, leases[l]);
			drill_run(ROUNDS, leases[l], 0xbe7c4 + (uint64_t)d * 77 + l, &res);
			for (unsigned r = 0; r < res.rounds; r++) {
				fo[l][n[l]] = res.failover_ms[r];
				pr[l][n[l]++] = res.promoted_ms[r];
			}
		}
	nt_loadavg(load1, sizeof(load1));
	printf("\nfailover over %u drills x %u kills per lease (load average %s at the start, %s "
	       "at the end):\n", DRILLS, ROUNDS, load0, load1);
	for (int l = 0; l < 2; l++) {
		uint64_t f50, fmax, p50, pmax;

		drill_p50_max(fo[l], n[l], &f50, &fmax);
		drill_p50_max(pr[l], n[l], &p50, &pmax);
		printf("  lease %4u ms: kill -> first new epoch acknowledged p50 %llu ms, max %llu ms "
		       "(%.2fx / %.2fx the lease); kill -> term marker p50 %llu ms, max %llu ms\n",
		       leases[l], (unsigned long long)f50, (unsigned long long)fmax,
		       (double)f50 / leases[l], (double)fmax / leases[l], (unsigned long long)p50,
		       (unsigned long long)pmax);
	}
	return 0;
}
