/* SPDX-License-Identifier: MIT */
/*
 * prom.h - the Prometheus text exposition format (version 0.0.4) the
 * command writes: `pagetrack status --prometheus` and the /metrics of
 * `publish` and `follow` (tools/metrics.c).  One writer, so that both
 * name and escape things alike.
 *
 * A metric family is its HELP and TYPE lines then all its samples, which
 * must not be split: callers write family by family.  Label values are
 * escaped (backslash, double quote, newline); a value that is not valid
 * UTF-8 (a path's bytes may be anything) has its bytes outside ASCII and
 * its control bytes written as '?'.
 */
#ifndef PT_TOOL_PROM_H
#define PT_TOOL_PROM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum prom_type { PROM_GAUGE, PROM_COUNTER };

/* The HELP and TYPE lines of family name. */
void prom_family(FILE *out, const char *name, enum prom_type type, const char *help);

/*
 * One sample: name{k1="v1",...} value.  labels: pairs of key and value,
 * ended by NULL; a pair whose value is NULL is left out.
 */
void prom_u64(FILE *out, const char *name, const char *const *labels, uint64_t v);
void prom_i64(FILE *out, const char *name, const char *const *labels, int64_t v);
/* A number of milliseconds written as seconds (3 decimals). */
void prom_ms(FILE *out, const char *name, const char *const *labels, int64_t ms);

/*
 * A publisher or a follower, from a handle's statistics (the /metrics of
 * publish and follow) or from a status record (status --prometheus).
 */
struct prom_net {
	const char *dir;
	const char *role;		/* "publisher" or "follower" */
	const char *stream;
	const char *follower;		/* a gathered follower's id (its label), or NULL */
	bool from_record;		/* the fields below the line are set */
	int64_t epoch;
	uint64_t stream_seq;
	uint64_t lag_epochs;		/* UINT64_MAX: unknown (no sample) */
	int64_t lag_ms;
	uint64_t epochs, messages, pages, bytes_raw, bytes_wire, retries;
	int last_error;			/* -errno or 0 */
	/* ---- status records only ---- */
	bool up;			/* live */
	uint64_t bytes_raw_per_s, bytes_wire_per_s;
	uint64_t age_ms;
	uint64_t updated_ns;
};

/* Every family of the network figures, each with the samples of all n. */
void prom_net(FILE *out, const struct prom_net *v, size_t n);

#endif /* PT_TOOL_PROM_H */
