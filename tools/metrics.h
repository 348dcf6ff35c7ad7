/* SPDX-License-Identifier: MIT */
/*
 * metrics.h - the /metrics endpoint of `pagetrack publish` and `follow`
 * (tools/metrics.c, libmicrohttpd).
 */
#ifndef PT_TOOL_METRICS_H
#define PT_TOOL_METRICS_H

#include <stdio.h>

struct metrics;

/* Writes the metrics (prom.h) to out; called on the server's thread. */
typedef void (*metrics_render_fn)(FILE *out, void *arg);

/*
 * Serve GET /metrics on address ("HOST:PORT" or "[IPv6]:PORT"; port 0:
 * one the system picks, see metrics_port) from a thread of its own, each
 * answer written by render(out, arg).  Returns 0 and *out, or the exit
 * status of the usage or runtime error it printed (a bad address, a port
 * taken).
 */
int metrics_start(struct metrics **out, const char *cmd, const char *address,
		  metrics_render_fn render, void *arg);

/* The port it listens on. */
unsigned int metrics_port(const struct metrics *m);

/* Stop serving (waits for the answers under way) and free m (NULL: fine). */
void metrics_stop(struct metrics *m);

#endif /* PT_TOOL_METRICS_H */
