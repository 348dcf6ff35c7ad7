/* SPDX-License-Identifier: MIT */
/*
 * commands.h - the subcommands of the pagetrack command.
 *
 * Each subcommand is int cmd_NAME(int argc, char **argv): argv[0] is the
 * subcommand's own name, so it can run getopt_long on its arguments as a
 * program would, and the return value is the process's exit status:
 *   0           success (and for --help)
 *   1           a runtime failure, reported on stderr with strerror(-errno)
 *   EXIT_USAGE  wrong usage, reported on stderr
 * A subcommand is added by declaring it here and adding one line to the
 * table in tools/pagetrack.c; it may live in a file of its own under tools/.
 */
#ifndef PT_TOOL_COMMANDS_H
#define PT_TOOL_COMMANDS_H

/* sysexits.h's EX_USAGE: wrong arguments, unknown command or option. */
#define EXIT_USAGE 64

int cmd_probe(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* tools/replication.c */
int cmd_status(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_replica(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);

/*
 * Shared by the subcommands (tools/pagetrack.c).
 *
 * usage_error() prints "pagetrack CMD: message" and a hint to stderr and
 * returns EXIT_USAGE.  runtime_error() prints "pagetrack CMD: message: strerror(-err)"
 * (err is a -errno; 0 leaves the strerror out) and returns 1.
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

#endif /* PT_TOOL_COMMANDS_H */
