/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the benchmark programs share: a monotonic clock, samples
 * and their median, the common options, and the results, printed as a table
 * row by row while they are measured and written at the end as one JSON
 * object per program (bench/run.sh gathers them into $O/bench.json).
 *
 * Figures are information, not verdicts.  A row may carry targets and say
 * whether its median meets them, but only bench_failed() (something that
 * should have worked did not) makes the program exit 1.
 *
 * The shape of a benchmark program:
 *
 *	bench_init(argc, argv, "name", "what it measures", extra_options);
 *	bench_section("id", "title printed above the rows", "ms");
 *	struct bench_samples s = { 0 };
 *	for (int i = 0; i < bench_opts.reps; i++) {
 *		double t0 = bench_now_ns();
 *		work();
 *		bench_add_sample(&s, (bench_now_ns() - t0) / 1e6);
 *	}
 *	bench_row(&(struct bench_row){ .memory = "anon", .method = "m",
 *				       .variant = "case", .samples = &s });
 *	return bench_finish();
 *
 * Common options: --reps N (median of N runs, 3..99, default 5),
 * --json FILE (write the JSON object there, "-" for stdout), --help.
 * One program per binary: the state below is static.
 */
#ifndef PT_BENCH_H
#define PT_BENCH_H

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define BENCH_MIN_REPS 3
#define BENCH_MAX_REPS 99
#define BENCH_DEFAULT_REPS 5
#define BENCH_EXIT_USAGE 64

#define BENCH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- time and samples ----------------------------------------------- */

/* Nanoseconds on CLOCK_MONOTONIC (a double holds them exactly for 104 days). */
static inline double bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

struct bench_samples {
	int n;
	double v[BENCH_MAX_REPS];
};

static inline void bench_add_sample(struct bench_samples *s, double v)
{
	if (s->n < BENCH_MAX_REPS)
		s->v[s->n++] = v;
}

/* The samples sorted into out (at least BENCH_MAX_REPS long); returns the count. */
static inline int bench_sorted(const struct bench_samples *s, double *out)
{
	int n = s->n < 0 ? 0 : s->n > BENCH_MAX_REPS ? BENCH_MAX_REPS : s->n;

	for (int i = 0; i < n; i++) {
		double x = s->v[i];
		int j = i;

		for (; j > 0 && out[j - 1] > x; j--)
			out[j] = out[j - 1];
		out[j] = x;
	}
	return n;
}

/* Median (mean of the middle two for an even count); NAN without samples. */
static inline double bench_median(const struct bench_samples *s)
{
	double v[BENCH_MAX_REPS];
	int n = bench_sorted(s, v);

	if (!n)
		return NAN;
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- rows ----------------------------------------------------------- */

enum bench_cmp {
	BENCH_AT_MOST,		/* median <= limit */
	BENCH_AT_LEAST,		/* median >= limit */
	BENCH_COMPLETES,	/* the row was measured at all */
};

struct bench_target {
	enum bench_cmp cmp;
	double limit;
	const char *text;	/* as printed: "<= 1000 ns" */
};

#define BENCH_MAX_TARGETS 2

/* One figure: what bench_row() takes.  NULL fields print as "-". */
struct bench_row {
	const char *memory;
	const char *method;
	const char *variant;
	const char *unit;		/* NULL: the section's unit */
	const struct bench_samples *samples;
	struct bench_target targets[BENCH_MAX_TARGETS];
	int ntargets;
	const char *note;		/* printed under the row, kept in the JSON */
};

enum bench_status { BENCH_MEASURED, BENCH_UNAVAILABLE, BENCH_FAILED };

struct bench_result {
	char section[32];
	char memory[32];
	char method[48];
	char variant[48];
	char unit[16];
	enum bench_status status;
	struct bench_samples samples;
	double median, min, max;
	struct bench_target targets[BENCH_MAX_TARGETS];
	char target_text[BENCH_MAX_TARGETS][40];
	bool met[BENCH_MAX_TARGETS];
	int ntargets;
	char note[320];
};

/* An extra integer option a program adds to the common ones. */
struct bench_option {
	const char *name;	/* long option, without "--" */
	const char *help;
	long min, max;
	long *value;		/* holds the default on entry */
};

#define BENCH_MAX_OPTIONS 8
#define BENCH_MAX_PARAMS 16
#define BENCH_MAX_NOTES 8

static struct {
	int reps;
	const char *json_path;
} bench_opts = { BENCH_DEFAULT_REPS, NULL };

static struct {
	const char *name;
	const char *description;
	char section[32];
	char unit[16];
	struct bench_result *v;
	size_t nr, cap;
	struct {
		char name[32];
		double value;
	} params[BENCH_MAX_PARAMS];
	int nparams;
	char notes[BENCH_MAX_NOTES][256];
	int nnotes;
	int failures;
	double start_ns;
	time_t start_time;
} bench_state;

static inline void bench_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "-");
}

/* Room for one more result; exits on out-of-memory (nothing sensible to measure then). */
static inline struct bench_result *bench_new_result(const char *memory, const char *method,
						    const char *variant, const char *unit)
{
	struct bench_result *r;

	if (bench_state.nr == bench_state.cap) {
		size_t cap = bench_state.cap ? bench_state.cap * 2 : 64;
		struct bench_result *v = realloc(bench_state.v, cap * sizeof(*v));

		if (!v) {
			fprintf(stderr, "%s: out of memory for results\n", bench_state.name);
			exit(1);
		}
		bench_state.v = v;
		bench_state.cap = cap;
	}
	r = &bench_state.v[bench_state.nr++];
	memset(r, 0, sizeof(*r));
	bench_copy(r->section, sizeof(r->section), bench_state.section);
	bench_copy(r->memory, sizeof(r->memory), memory);
	bench_copy(r->method, sizeof(r->method), method);
	bench_copy(r->variant, sizeof(r->variant), variant);
	bench_copy(r->unit, sizeof(r->unit), unit ? unit : bench_state.unit);
	r->median = r->min = r->max = NAN;
	return r;
}

/* A figure printed in few characters: 3 significant digits or more. */
static inline const char *bench_fmt(char *buf, size_t len, double v)
{
	double a = fabs(v);

	if (isnan(v))
		snprintf(buf, len, "-");
	else if (a >= 1000)
		snprintf(buf, len, "%.0f", v);
	else if (a >= 100)
		snprintf(buf, len, "%.1f", v);
	else if (a >= 1)
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "%.3f", v);
	return buf;
}

#define BENCH_ROW_FMT "  %-10s %-24s %-14s %10s  %-21s %-20s %s\n"

static inline void bench_print_note(const char *note)
{
	if (note && *note)
		printf("  %-10s   %s\n", "", note);
}

static inline void bench_print_result(const struct bench_result *r)
{
	char med[32], lo[32], hi[32], range[80], target[96] = "", status[32] = "";

	if (r->status != BENCH_MEASURED) {
		printf("  %-10s %-24s %-14s %s: %s\n", r->memory, r->method, r->variant,
		       r->status == BENCH_FAILED ? "FAILED" : "unavailable", r->note);
		fflush(stdout);
		return;
	}
	if (r->samples.n > 1)
		snprintf(range, sizeof(range), "%s .. %s", bench_fmt(lo, sizeof(lo), r->min),
			 bench_fmt(hi, sizeof(hi), r->max));
	else
		snprintf(range, sizeof(range), "-");
	for (int i = 0; i < r->ntargets; i++) {
		size_t used = strlen(target), sused = strlen(status);

		snprintf(target + used, sizeof(target) - used, "%s%s", i ? ", " : "",
			 r->target_text[i]);
		snprintf(status + sused, sizeof(status) - sused, "%s%s", i ? ", " : "",
			 r->met[i] ? "met" : "MISSED");
	}
	printf(BENCH_ROW_FMT, r->memory, r->method, r->variant,
	       bench_fmt(med, sizeof(med), r->median), range, target, status);
	bench_print_note(r->note);
	fflush(stdout);
}

/*
 * Start a group of rows: prints the title and the column heads.  id names
 * the group in the JSON; unit is the rows' default unit.
 */
static inline void bench_section(const char *id, const char *title, const char *unit)
{
	char median[32];

	bench_copy(bench_state.section, sizeof(bench_state.section), id);
	bench_copy(bench_state.unit, sizeof(bench_state.unit), unit);
	snprintf(median, sizeof(median), "median/%d", bench_opts.reps);
	printf("\n== %s  [%s]\n", title, unit);
	printf(BENCH_ROW_FMT, "memory", "method", "case", median, "min .. max", "target", "");
	fflush(stdout);
}

/* Record and print a measured row (the median of its samples, against its targets). */
static inline void bench_row(const struct bench_row *row)
{
	struct bench_result *r;
	double v[BENCH_MAX_REPS];
	int n;

	r = bench_new_result(row->memory, row->method, row->variant, row->unit);
	r->status = BENCH_MEASURED;
	if (row->samples)
		r->samples = *row->samples;
	n = bench_sorted(&r->samples, v);
	if (n) {
		r->min = v[0];
		r->max = v[n - 1];
		r->median = bench_median(&r->samples);
	}
	r->ntargets = row->ntargets < 0 ? 0 :
		      row->ntargets > BENCH_MAX_TARGETS ? BENCH_MAX_TARGETS : row->ntargets;
	for (int i = 0; i < r->ntargets; i++) {
		const struct bench_target *t = &row->targets[i];

		r->targets[i] = *t;
		bench_copy(r->target_text[i], sizeof(r->target_text[i]), t->text);
		r->targets[i].text = NULL;
		switch (t->cmp) {
		case BENCH_AT_MOST:
			r->met[i] = n && r->median <= t->limit;
			break;
		case BENCH_AT_LEAST:
			r->met[i] = n && r->median >= t->limit;
			break;
		case BENCH_COMPLETES:
			r->met[i] = true;
			break;
		}
	}
	if (row->note)
		bench_copy(r->note, sizeof(r->note), row->note);
	bench_print_result(r);
}

static inline void bench_vrow_status(enum bench_status status, const char *memory,
				     const char *method, const char *variant, const char *fmt,
				     va_list ap)
{
	struct bench_result *r = bench_new_result(memory, method, variant, NULL);

	r->status = status;
	vsnprintf(r->note, sizeof(r->note), fmt, ap);
	if (status == BENCH_FAILED)
		bench_state.failures++;
	bench_print_result(r);
}

/* A row that could not be measured here, and why (not a failure). */
static inline __attribute__((format(printf, 4, 5))) void
bench_unavailable(const char *memory, const char *method, const char *variant, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vrow_status(BENCH_UNAVAILABLE, memory, method, variant, fmt, ap);
	va_end(ap);
}

/* Something that should have worked did not: the program will exit 1. */
static inline __attribute__((format(printf, 4, 5))) void
bench_failed(const char *memory, const char *method, const char *variant, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	bench_vrow_status(BENCH_FAILED, memory, method, variant, fmt, ap);
	va_end(ap);
}

/* A parameter of the run (region size, page count), kept in the JSON. */
static inline void bench_param(const char *name, double value)
{
	if (bench_state.nparams >= BENCH_MAX_PARAMS)
		return;
	bench_copy(bench_state.params[bench_state.nparams].name,
		   sizeof(bench_state.params[0].name), name);
	bench_state.params[bench_state.nparams++].value = value;
}

/* A line of explanation, printed now and kept in the JSON. */
static inline __attribute__((format(printf, 1, 2))) void bench_note(const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("note: %s\n", line);
	fflush(stdout);
	if (bench_state.nnotes < BENCH_MAX_NOTES)
		bench_copy(bench_state.notes[bench_state.nnotes++], sizeof(line), line);
}

/* ---- options -------------------------------------------------------- */

static inline void bench_usage(FILE *f, const struct bench_option *extra)
{
	fprintf(f, "usage: %s [--reps N] [--json FILE]", bench_state.name);
	for (const struct bench_option *o = extra; o && o->name; o++)
		fprintf(f, " [--%s N]", o->name);
	fprintf(f, "\n%s\n\n", bench_state.description);
	fprintf(f, "  --reps N         runs per figure, the median is reported (%d..%d, default %d)\n",
		BENCH_MIN_REPS, BENCH_MAX_REPS, BENCH_DEFAULT_REPS);
	fprintf(f, "  --json FILE      also write the results as one JSON object to FILE (- for stdout)\n");
	for (const struct bench_option *o = extra; o && o->name; o++) {
		char flag[48];

		snprintf(flag, sizeof(flag), "--%s N", o->name);
		fprintf(f, "  %-16s %s (%ld..%ld, default %ld)\n", flag, o->help, o->min, o->max,
			*o->value);
	}
	fprintf(f, "  --help           this text\n");
}

static inline bool bench_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

/*
 * Parse the common options and the program's extra ones (an array ended
 * by a NULL name, or NULL).  Wrong usage prints a message and exits 64;
 * --help prints the usage and exits 0.
 */
static inline void bench_init(int argc, char **argv, const char *name, const char *description,
			      const struct bench_option *extra)
{
	struct option longopts[3 + BENCH_MAX_OPTIONS + 1];
	int nextra = 0, c, idx;
	long v;

	bench_state.name = name;
	bench_state.description = description;
	bench_state.start_ns = bench_now_ns();
	bench_state.start_time = time(NULL);
	longopts[0] = (struct option){ "reps", required_argument, NULL, 'r' };
	longopts[1] = (struct option){ "json", required_argument, NULL, 'j' };
	longopts[2] = (struct option){ "help", no_argument, NULL, 'h' };
	for (const struct bench_option *o = extra; o && o->name && nextra < BENCH_MAX_OPTIONS; o++)
		longopts[3 + nextra++] = (struct option){ o->name, required_argument, NULL, 'x' };
	longopts[3 + nextra] = (struct option){ NULL, 0, NULL, 0 };

	while ((c = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
		switch (c) {
		case 'r':
			if (!bench_parse_long(optarg, BENCH_MIN_REPS, BENCH_MAX_REPS, &v)) {
				fprintf(stderr, "%s: --reps %s: want a number from %d to %d\n",
					name, optarg, BENCH_MIN_REPS, BENCH_MAX_REPS);
				exit(BENCH_EXIT_USAGE);
			}
			bench_opts.reps = (int)v;
			break;
		case 'j':
			if (!*optarg) {
				fprintf(stderr, "%s: --json needs a file name\n", name);
				exit(BENCH_EXIT_USAGE);
			}
			bench_opts.json_path = optarg;
			break;
		case 'h':
			bench_usage(stdout, extra);
			exit(0);
		case 'x': {
			const struct bench_option *o = &extra[idx - 3];

			if (!bench_parse_long(optarg, o->min, o->max, o->value)) {
				fprintf(stderr, "%s: --%s %s: want a number from %ld to %ld\n",
					name, o->name, optarg, o->min, o->max);
				exit(BENCH_EXIT_USAGE);
			}
			break;
		}
		default:
			bench_usage(stderr, extra);
			exit(BENCH_EXIT_USAGE);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", name, argv[optind]);
		bench_usage(stderr, extra);
		exit(BENCH_EXIT_USAGE);
	}
	printf("%s: %s\n", name, description);
	fflush(stdout);
}

/* ---- JSON ----------------------------------------------------------- */

static inline void bench_json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", f);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* Whole numbers exactly, others to 6 digits; JSON has no NaN or infinity: null. */
static inline void bench_json_number(FILE *f, double v)
{
	if (isfinite(v) && v == floor(v) && fabs(v) < 1e15)
		fprintf(f, "%.0f", v);
	else if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

static inline void bench_json_result(FILE *f, const struct bench_result *r)
{
	static const char *const status[] = { "measured", "unavailable", "failed" };
	static const char *const cmp[] = { "<=", ">=", "completes" };

	fputs("    {\"section\": ", f);
	bench_json_string(f, r->section);
	fputs(", \"memory\": ", f);
	bench_json_string(f, r->memory);
	fputs(", \"method\": ", f);
	bench_json_string(f, r->method);
	fputs(", \"case\": ", f);
	bench_json_string(f, r->variant);
	fprintf(f, ", \"status\": \"%s\"", status[r->status]);
	if (r->status == BENCH_MEASURED) {
		fputs(", \"unit\": ", f);
		bench_json_string(f, r->unit);
		fputs(", \"median\": ", f);
		bench_json_number(f, r->median);
		fputs(", \"min\": ", f);
		bench_json_number(f, r->min);
		fputs(", \"max\": ", f);
		bench_json_number(f, r->max);
		fputs(", \"samples\": [", f);
		for (int i = 0; i < r->samples.n; i++) {
			if (i)
				fputs(", ", f);
			bench_json_number(f, r->samples.v[i]);
		}
		fputs("], \"targets\": [", f);
		for (int i = 0; i < r->ntargets; i++) {
			fprintf(f, "%s{\"text\": ", i ? ", " : "");
			bench_json_string(f, r->target_text[i]);
			fprintf(f, ", \"cmp\": \"%s\"", cmp[r->targets[i].cmp]);
			if (r->targets[i].cmp != BENCH_COMPLETES) {
				fputs(", \"limit\": ", f);
				bench_json_number(f, r->targets[i].limit);
			}
			fprintf(f, ", \"met\": %s}", r->met[i] ? "true" : "false");
		}
		fputc(']', f);
	}
	if (r->note[0]) {
		fputs(", \"note\": ", f);
		bench_json_string(f, r->note);
	}
	fputc('}', f);
}

static inline int bench_write_json(const char *path)
{
	bool to_stdout = !strcmp(path, "-");
	FILE *f = to_stdout ? stdout : fopen(path, "w");
	char started[64] = "";
	struct utsname u;
	struct tm tm;
	int ret = 0;

	if (!f) {
		fprintf(stderr, "%s: %s: %s\n", bench_state.name, path, strerror(errno));
		return -1;
	}
	if (uname(&u))
		memset(&u, 0, sizeof(u));
	if (gmtime_r(&bench_state.start_time, &tm))
		strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fputs("{\"benchmark\": ", f);
	bench_json_string(f, bench_state.name);
	fputs(", \"description\": ", f);
	bench_json_string(f, bench_state.description);
	fputs(",\n  \"kernel\": ", f);
	bench_json_string(f, u.release);
	fputs(", \"machine\": ", f);
	bench_json_string(f, u.machine);
	fprintf(f, ", \"cpus\": %ld, \"reps\": %d, \"started\": ", sysconf(_SC_NPROCESSORS_ONLN),
		bench_opts.reps);
	bench_json_string(f, started);
	fputs(", \"seconds\": ", f);
	bench_json_number(f, (bench_now_ns() - bench_state.start_ns) / 1e9);
	fprintf(f, ", \"failures\": %d,\n  \"params\": {", bench_state.failures);
	for (int i = 0; i < bench_state.nparams; i++) {
		fputs(i ? ", " : "", f);
		bench_json_string(f, bench_state.params[i].name);
		fputs(": ", f);
		bench_json_number(f, bench_state.params[i].value);
	}
	fputs("},\n  \"notes\": [", f);
	for (int i = 0; i < bench_state.nnotes; i++) {
		fputs(i ? ",\n    " : "\n    ", f);
		bench_json_string(f, bench_state.notes[i]);
	}
	fputs("],\n  \"results\": [\n", f);
	for (size_t i = 0; i < bench_state.nr; i++) {
		bench_json_result(f, &bench_state.v[i]);
		fputs(i + 1 < bench_state.nr ? ",\n" : "\n", f);
	}
	fputs("  ]}\n", f);
	if (ferror(f))
		ret = -1;
	if (to_stdout ? fflush(f) : fclose(f))
		ret = -1;
	if (ret)
		fprintf(stderr, "%s: writing %s failed\n", bench_state.name, path);
	return ret;
}

/*
 * Print the closing line, write the JSON if asked, free the results.
 * Returns the program's exit status: 1 if a row failed or the JSON could
 * not be written, else 0 (whatever the figures).
 */
static inline int bench_finish(void)
{
	int unavailable = 0, missed = 0, ret = 0;

	/* The missed targets again, together, so they are not lost in the table. */
	for (size_t i = 0; i < bench_state.nr; i++) {
		const struct bench_result *r = &bench_state.v[i];
		char med[32];

		unavailable += r->status == BENCH_UNAVAILABLE;
		for (int k = 0; k < r->ntargets; k++) {
			if (r->met[k])
				continue;
			printf("%s %s %s %s %s: %s %s, target %s\n",
			       missed++ ? "       " : "\nmissed:", r->section, r->memory, r->method, r->variant,
			       bench_fmt(med, sizeof(med), r->median), r->unit, r->target_text[k]);
		}
	}
	printf("\n%s: %zu rows, %d unavailable, %d failed, %d targets missed, %.1f s\n",
	       bench_state.name, bench_state.nr, unavailable, bench_state.failures, missed,
	       (bench_now_ns() - bench_state.start_ns) / 1e9);
	fflush(stdout);
	if (bench_opts.json_path && bench_write_json(bench_opts.json_path))
		ret = 1;
	if (bench_state.failures)
		ret = 1;
	free(bench_state.v);
	bench_state.v = NULL;
	bench_state.nr = bench_state.cap = 0;
	return ret;
}

#endif /* PT_BENCH_H */
