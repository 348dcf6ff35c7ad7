/* SPDX-License-Identifier: MIT */
/*
 * util.h - small pieces the exchange's programs share: a monotonic clock,
 * a log-linear latency histogram, a PRNG, number parsing for options, the
 * placing of a thread (policy and nice value).
 *
 * CLOCK_MONOTONIC is one clock for every process on the machine, so a time
 * stamped by the engine can be compared with one taken by the load
 * generator: that is how replica lag is measured.
 */
#ifndef EXCHANGE_UTIL_H
#define EXCHANGE_UTIL_H

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * Histogram of nanosecond values: 8 sub-buckets per power of two, so any
 * percentile is within 12.5% of the true value; 512 counters cover 2^64.
 */
#define HIST_SUB 8
#define HIST_BUCKETS (64 * HIST_SUB)

struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n, sum, max;
};

static inline unsigned hist_bucket(uint64_t v)
{
	unsigned msb;

	if (v < HIST_SUB)
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return (msb - 2) * HIST_SUB + (unsigned)((v >> (msb - 3)) & (HIST_SUB - 1));
}

/* The upper bound of a bucket's values (what a percentile reports). */
static inline uint64_t hist_bucket_top(unsigned b)
{
	unsigned msb, sub;

	if (b < HIST_SUB)
		return b;
	msb = b / HIST_SUB + 2;
	sub = b % HIST_SUB;
	return ((uint64_t)(HIST_SUB + sub) << (msb - 3)) + ((1ull << (msb - 3)) - 1);
}

static inline void hist_add(struct hist *h, uint64_t v)
{
	h->count[hist_bucket(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

static inline void hist_merge(struct hist *to, const struct hist *from)
{
	for (unsigned i = 0; i < HIST_BUCKETS; i++)
		to->count[i] += from->count[i];
	to->n += from->n;
	to->sum += from->sum;
	if (from->max > to->max)
		to->max = from->max;
}

/* The value at quantile q (0..1); 0 for an empty histogram. */
static inline uint64_t hist_pct(const struct hist *h, double q)
{
	uint64_t want, seen = 0;

	if (!h->n)
		return 0;
	want = (uint64_t)(q * (double)h->n);
	if (want >= h->n)
		want = h->n - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen > want) {
			uint64_t top = hist_bucket_top(i);

			return top < h->max ? top : h->max;
		}
	}
	return h->max;
}

/*
 * The exchange's one PRNG (xorshift64*), for the order flow, the queries and
 * the exchange's tests: fast, reproducible from a seed, never 0 from a
 * non-zero state.  Not for anything that must be unpredictable.
 */
static inline uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Uniform double in [0, 1). */
static inline double rng_unit(uint64_t *s)
{
	return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/*
 * Parse an unsigned number with an optional k/M/G suffix (powers of 1024 for
 * sizes when binary is true, of 1000 otherwise) into [min, max].
 * Returns 0 or -EINVAL / -ERANGE.
 */
static inline int parse_u64(const char *s, uint64_t min, uint64_t max, bool binary, uint64_t *out)
{
	uint64_t mult = 1, v;
	char *end;

	if (!s || !*s || *s == '-')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': mult = binary ? 1ull << 10 : 1000; end++; break;
	case 'm': case 'M': mult = binary ? 1ull << 20 : 1000000; end++; break;
	case 'g': case 'G': mult = binary ? 1ull << 30 : 1000000000; end++; break;
	default: break;
	}
	if (*end)
		return -EINVAL;
	if (v && mult > UINT64_MAX / v)
		return -ERANGE;
	v *= mult;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/*
 * Place the calling thread: scheduling policy (SCHED_OTHER, SCHED_BATCH or
 * SCHED_IDLE) and nice value.  Linux keeps both per thread (setpriority()
 * with a thread id, sched_setscheduler() with 0, name the calling thread
 * only), and threads created afterwards inherit them: call it before
 * opening what starts threads that should share the placing, after for
 * those that should not.  Returns 0 or -errno: -EPERM when a nice value
 * below the current one needs CAP_SYS_NICE or RLIMIT_NICE.
 */
static inline int place_thread(int policy, int nice)
{
	struct sched_param sp = { 0 };

	if (sched_setscheduler(0, policy, &sp))
		return -errno;
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), nice))
		return -errno;
	return 0;
}

/* "other", "batch", "idle": a SCHED_* policy, or -1. */
static inline int parse_policy(const char *s)
{
	return !strcmp(s, "other") ? SCHED_OTHER : !strcmp(s, "batch") ? SCHED_BATCH :
	       !strcmp(s, "idle") ? SCHED_IDLE : -1;
}

static inline const char *policy_name(int policy)
{
	return policy == SCHED_BATCH ? "batch" : policy == SCHED_IDLE ? "idle" : "other";
}

#endif /* EXCHANGE_UTIL_H */
