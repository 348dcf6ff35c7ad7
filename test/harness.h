/* SPDX-License-Identifier: MIT */
/*
 * harness.h - what the test programs share: the exit codes, the table of
 * backends x memory kinds, and a cell reporter that prints
 * "done", "skipped [reason]" or "failed [reason]" for each cell.
 *
 * The helpers are compiled once into libptest.a (harness.c, softdirty-emu.c)
 * and linked by every test program, the exchange's tests and the benchmarks.
 * Every name they export starts with t_ (T_ for constants); CHECK and DIE
 * are macros and keep their short names.  harness.c uses pagetrack.h only,
 * so programs that link the shared library (the exchange's tests) can use
 * it too; softdirty-emu.c reaches into the static library and is linked
 * only into the programs that call it.
 *
 * Each test is one program: exit 0 pass, 1 fail, 77 skip (reason printed).
 * A test never passes when the feature it tests is missing.
 */
#ifndef PT_TEST_HARNESS_H
#define PT_TEST_HARNESS_H

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "pagetrack.h"

#define T_PASS 0
#define T_FAIL 1
#define T_SKIP 77

/* Cells reported so far (t_cell_report); t_exit() decides from them. */
extern int t_failures, t_done, t_skipped;

/* Fail the current cell: print where and why, return false from a bool fn. */
#define CHECK(cond, ...) do {							\
	if (!(cond)) {								\
		printf("    %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
		printf(__VA_ARGS__);						\
		printf("\n");							\
		return false;							\
	}									\
} while (0)

#define DIE(...) do {								\
	fprintf(stderr, __VA_ARGS__);						\
	fprintf(stderr, "\n");							\
	exit(T_FAIL);								\
} while (0)

size_t t_page_size(void);

/* ---- memory kinds -------------------------------------------------- */

enum t_mem_kind {
	T_MEM_ANON,		/* private anonymous */
	T_MEM_MEMFD,		/* MAP_SHARED memfd */
	T_MEM_SHM,		/* MAP_SHARED file in /dev/shm */
	T_MEM_FILE,		/* MAP_SHARED regular file (TMPDIR or /var/tmp) */
	T_MEM_LOOP,		/* MAP_SHARED /dev/loopN over a file (root) */
	T_MEM_THP,		/* anonymous with MADV_HUGEPAGE */
	T_MEM_NKINDS
};

extern const char *const t_mem_kind_names[T_MEM_NKINDS];

struct t_mem {
	enum t_mem_kind kind;
	char *addr;		/* what tests use: aligned to 2 MiB for T_MEM_THP */
	size_t len;
	char *map;		/* what munmap needs */
	size_t map_len;
	int fd;
	int backing_fd;		/* T_MEM_LOOP: the file behind the loop device */
	char path[256];
	char loop_path[64];
};

/*
 * Map len bytes of the given kind, zero-filled.  Returns 0, or a skip
 * reason in why and T_SKIP, or T_FAIL with why.
 */
int t_mem_map(struct t_mem *m, enum t_mem_kind kind, size_t len, char *why, size_t why_len);
void t_mem_unmap(struct t_mem *m);

/* ---- backends ------------------------------------------------------- */

#define T_NBACKENDS 3
extern const enum pt_backend t_all_backends[T_NBACKENDS];

/* Backends not available here are skipped with the probe's reason. */
bool t_backend_usable(enum pt_backend b, char *why, size_t why_len);

/* Open a tracker on a forced backend; opts.backend beats PAGETRACK_BACKEND. */
int t_tracker_open_on(struct pt_tracker **t, enum pt_backend b, void *addr, size_t len);
/* The flags PAGETRACK_TEST_CHUNKS asks every test tracker for: =1
 * PT_TRACK_CHUNKS, =cool that too with every marked chunk re-armed at
 * every collect (test/tracker-chunks.sh); else 0. */
unsigned int t_test_track_flags(void);

/*
 * With PT_SOFTDIRTY_EMULATE=1 in the environment, run the soft-dirty
 * backend against a soft-dirty kernel emulated with uffd-wp
 * (softdirty-emu.c) and say so; call it before anything probes a backend.
 * Returns 0 (not asked, or emulating), or T_SKIP with the reason in why
 * (the emulation needs uffd-wp).
 */
int t_softdirty_emulate(char *why, size_t why_len);

/* ---- cells and the table --------------------------------------------- */

void t_cell_report(const char *name, int result, const char *why);

/* A named check: true if it passed, else false with the reason in why. */
struct t_cell {
	const char *name;
	bool (*fn)(char *why, size_t why_len);
};

/* Run one cell and report it. */
void t_run_cell(const struct t_cell *c);
/* Run a table of cells in order. */
void t_run_cells(const struct t_cell *cells, size_t n);
/* The program's exit: fail if any cell failed, skip if none ran. */
int t_exit(void);

/* Collect into a byte map of pages (1 = reported).  Returns pages or -errno;
 * checks the ranges are ascending, non-overlapping, maximal, inside npages. */
int t_collect_map(struct pt_tracker *t, unsigned flags, uint8_t *map, uint64_t npages, char *why,
		  size_t why_len);

/* ---- writer threads ------------------------------------------------------ */

/*
 * Threads that never stop writing random bytes, words and multi-word runs
 * (some across a page boundary) at random places of [base, base + len),
 * with the first hot_pages pages written over and over: what the
 * convergence tests race collects against.  Stores are relaxed atomics
 * (plain moves on x86-64 and arm64) so ThreadSanitizer knows the races
 * with a copy are meant.
 */
#define T_WRITERS 2

struct t_writers;
struct t_writer_arg {
	struct t_writers *w;
	int id;
	/* atomic: writes so far, published every 256 and at the end; on a
	 * cache line of its own, so the count costs the writers nothing. */
	uint64_t writes __attribute__((aligned(64)));
	char pad[56];
};

struct t_writers {
	uint8_t *base;
	size_t len;
	uint64_t npages, hot_pages, seed;
	int stop;			/* atomic */
	unsigned pause;			/* atomic: nonzero, a checkpoint number: writers wait */
	unsigned ack[T_WRITERS];	/* atomic: the checkpoint each writer waits in */
	struct t_writer_arg arg[T_WRITERS];
	pthread_t th[T_WRITERS];
	int started;
};

/* Start the writers; false with the reason in why (then none runs). */
bool t_writers_start(struct t_writers *w, void *base, size_t len, uint64_t hot_pages, uint64_t seed,
		     char *why, size_t why_len);
/* Make every writer wait (checkpoint: a number above 0, new each time)
 * and return once none will write until t_writers_resume(). */
void t_writers_pause(struct t_writers *w, unsigned checkpoint);
void t_writers_resume(struct t_writers *w);
/* Writes made so far. */
uint64_t t_writers_count(struct t_writers *w);
/* Stop and join the writers; returns the writes they made. */
uint64_t t_writers_stop(struct t_writers *w);
/* Copy [src, src + bytes) while writers store into it: 8-byte relaxed
 * atomic loads and stores, so ThreadSanitizer knows the race is meant. */
void t_copy_racing(uint8_t *dst, const uint8_t *src, size_t bytes);

/* CLOCK_MONOTONIC, in seconds. */
double t_now(void);

/* ---- temporary directories ------------------------------------------------ */

/* A fresh directory /tmp/<prefix>-XXXXXX in buf; exits the test on failure. */
void t_tmpdir_make(char *buf, size_t len, const char *prefix);
/* Remove the files of a flat directory (no subdirectories), keep it. */
void t_tmpdir_empty(const char *d);
/* Remove a flat directory made by t_tmpdir_make: its files, then itself. */
void t_tmpdir_remove(const char *d);
/* Run "timeout 20 $O/pagetrack ARGS" (stderr too) into out; returns its
 * exit status (124: it took longer than 20 s). */
int t_run_tool(char *out, size_t out_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The first two CPUs of set into a and b: false if it has fewer. */
bool t_two_cpus(const cpu_set_t *set, int *a, int *b);
/* The region's own threads (pt_region_threads()) on CPU cpu alone: false
 * if that fails. */
bool t_place_region_threads(struct pt_region *r, int cpu);
/* The threads of this process, into tids (at most max); returns the count. */
int t_tasks(pid_t *tids, int max);
/* The name of thread tid of this process (its comm) into name, "" if it
 * cannot be read. */
void t_task_name(pid_t tid, char *name, size_t len);
/* Wait for child pid: true if SIGKILL ended it, else false with how it
 * ended printed. */
bool t_wait_killed(pid_t pid);
/* A test made of cells: what it checked, done or FAILED, one a line;
 * t_failures counts the failed ones. */
extern int t_failures;
void t_cell(const char *what, bool ok);
/* pt_dir_verify(d), each error it finds printed: the number of errors
 * (0: none), or the -errno that kept it from looking. */
int t_verify(const char *d);
/* Copy a file (0600, replacing the target): 0, or -1 with errno. */
int t_copy_file(const char *from, const char *to);
/* Make `to` (if missing) an exact copy of the flat directory `from`,
 * leaving out the file named skip (NULL: none); dies on failure. */
void t_copy_dir(const char *from, const char *to, const char *skip);

/*
 * Remove every /dev/shm file whose name starts with prefix: a shared
 * replica's control block "pagetrack-NAME" and its copies
 * "pagetrack-NAME.<generation>".  Only system calls, so that a SIGALRM
 * handler may call it.
 */
void t_shm_remove_prefix(const char *prefix);
/* Remove the shared replica NAME: its control block and its copies. */
void t_shm_remove(const char *name);

/* Bytes the calling thread read with the read(2) family so far (rchar of
 * /proc/thread-self/io): false without task I/O accounting in the kernel. */
bool t_thread_read_bytes(uint64_t *bytes);

/* ---- random numbers ------------------------------------------------------- */

/* A fast reproducible PRNG (xorshift64*).  The exchange has its own
 * (apps/exchange/util.h), so that it depends on no test code. */
uint64_t t_rnd_next(uint64_t *s);

/* A random permutation of [0, n), the same for the same seed (Fisher-Yates);
 * NULL without memory.  The caller frees it. */
uint64_t *t_rnd_permutation(uint64_t n, uint64_t seed);

#endif /* PT_TEST_HARNESS_H */
