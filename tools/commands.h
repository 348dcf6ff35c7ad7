/* SPDX-License-Identifier: MIT */
/*
 * commands.h - the subcommands of the pagetrack command.
 *
 * Each subcommand is int cmd_NAME(int argc, char **argv): argv[0] is the
 * subcommand's own name, so it can run getopt_long on its arguments as a
 * program would, and the return value is the process's exit status:
 *   0           success (and for --help)
 *   1           a runtime failure, reported on stderr with pt_strerror(-errno)
 *   EXIT_USAGE  wrong usage, reported on stderr
 * A subcommand is added by declaring it here and adding one line to the
 * table in tools/pagetrack.c; it may live in a file of its own under tools/.
 */
#ifndef PT_TOOL_COMMANDS_H
#define PT_TOOL_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* sysexits.h's EX_USAGE: wrong arguments, unknown command or option. */
#define EXIT_USAGE 64

int cmd_probe(int argc, char **argv);
int cmd_pgwrites(int argc, char **argv);

/* tools/replication.c */
int cmd_status(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_replica(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
int cmd_recover(int argc, char **argv);

/* tools/net.c (libpagetrack-net) */
int cmd_publish(int argc, char **argv);
int cmd_follow(int argc, char **argv);
int cmd_promote(int argc, char **argv);

/* tools/transfer.c */
int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);

/*
 * Shared by the subcommands (tools/pagetrack.c).
 *
 * usage_error() prints "pagetrack CMD: message" and a hint to stderr and
 * returns EXIT_USAGE.  runtime_error() prints "pagetrack CMD: message: pt_strerror(err)"
 * (err is a -errno; 0 leaves the error text out) and returns 1.
 */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int runtime_error(const char *cmd, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * After getopt_long() (with opterr = 0) returned '?' or ':': print what was
 * wrong with the option just parsed and return EXIT_USAGE.
 */
int option_error(const char *cmd, char **argv);

/* Reset getopt_long() before a subcommand parses its own arguments. */
void getopt_restart(void);

/*
 * --help and --version take no other argument: 0 when option (its name, for
 * the message) came alone, else a usage error (EXIT_USAGE).
 */
int alone(const char *cmd, const char *option, int argc);

/*
 * Parse arg, the value of the option called what, as a whole decimal
 * number from min to max into *out: 0, or a usage error (EXIT_USAGE) for
 * an empty value, blanks, a sign where min >= 0, anything after the
 * digits, or a value out of range.  Every number a subcommand takes goes
 * through it.
 */
int parse_number(const char *cmd, const char *what, const char *arg, long long min,
		 long long max, long long *out);

/* bytes as "123 B", "45.6 KiB", "7.8 MiB" or "9.0 GiB", in buf. */
void format_bytes(char *buf, size_t len, uint64_t bytes);

/*
 * JSON output through json-c, which escapes every string: names read from
 * /dev/shm or given by the user can hold any byte.  The constructors and
 * jout_put()/jout_append() (which take val) set *failed on an allocation
 * failure and go on, so a builder checks once, in jout_print(); jout_str()
 * of NULL is JSON null.  jout_print() prints obj and a newline, drops obj,
 * and returns 0 or a runtime error's exit status.
 */
struct json_object;
struct json_object *jout_str(const char *s, bool *failed);
struct json_object *jout_u64(uint64_t v, bool *failed);
struct json_object *jout_i64(int64_t v, bool *failed);
struct json_object *jout_bool(bool v, bool *failed);
struct json_object *jout_object(bool *failed);
struct json_object *jout_array(bool *failed);
void jout_put(struct json_object *obj, const char *key, struct json_object *val, bool *failed);
void jout_append(struct json_object *arr, struct json_object *val, bool *failed);
int jout_print(const char *cmd, struct json_object *obj, bool failed, bool pretty);

#endif /* PT_TOOL_COMMANDS_H */
