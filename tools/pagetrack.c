/* SPDX-License-Identifier: MIT */
/*
 * pagetrack.c - the pagetrack command: global options, the table of
 * subcommands, and the subcommands that concern the tracker itself:
 *
 *   probe [--json]   which backends can track writes here, and why not
 *   pgwrites [--loop] the 2007 seed program, done with the library
 *
 * Exit status: 0 success, 1 runtime failure (message on stderr, with the
 * strerror of the library's -errno), 64 wrong usage (EX_USAGE).  Everything
 * meant for the user's eyes on success goes to stdout, diagnostics to stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/loop.h>

#include <json-c/json.h>

#include "pagetrack.h"
#include "commands.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *args;
	const char *summary;
};

/* The subcommands, in the order --help lists them. */
static const struct command commands[] = {
	{ "probe", cmd_probe, "[--json]", "which tracking backends work here, and why not" },
	{ "pgwrites", cmd_pgwrites, "[--loop]", "the 2007 seed program, done with the library" },
	/* Replication commands: add their lines below. */
	{ "status", cmd_status, "DIR [--json]", "a region's epochs, log, replicas, publish/follow" },
	{ "verify", cmd_verify, "DIR", "check every checksum of a region's image and log" },
	{ "inspect", cmd_inspect, "DIR [--pages]", "list a region's log records" },
	{ "replica", cmd_replica, "DIR [--name N]", "keep a shared replica current" },
	{ "checkpoint", cmd_checkpoint, "DIR", "apply a region's log to its image now" },
	{ "recover", cmd_recover, "DIR [--accept-loss]", "recover a region as its writer would" },
	{ "publish", cmd_publish, "DIR --nats URL", "append a region's epochs to a NATS stream" },
	{ "follow", cmd_follow, "URL --stream S DIR", "keep DIR a standby fed by a NATS stream" },
	{ "promote", cmd_promote, "DIR --nats URL --stream S", "make a standby the writer of a new term" },
	{ "import", cmd_import, "FILE DIR", "make a region holding a file's content" },
	{ "export", cmd_export, "[--force] DIR FILE", "write a region's newest epoch to a file" },
};

/* ------------------------------------------------------------------ */
/* Shared helpers (commands.h)                                         */
/* ------------------------------------------------------------------ */

int usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pagetrack%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'pagetrack %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
	return EXIT_USAGE;
}

int runtime_error(const char *cmd, int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pagetrack%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s", pt_strerror(err));
	fputc('\n', stderr);
	return 1;
}

int option_error(const char *cmd, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (optopt && arg[0] == '-' && arg[1] != '-')
		return usage_error(cmd, "invalid option -- '%c'", optopt);
	return usage_error(cmd, "invalid option '%s'", arg);
}

void getopt_restart(void)
{
	/* glibc: optind = 0 re-initializes getopt, including its "+" handling. */
	optind = 0;
	opterr = 0;
}

static int no_arguments(const char *cmd, int argc, char **argv)
{
	if (optind < argc)
		return usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	return 0;
}

void format_bytes(char *buf, size_t len, uint64_t bytes)
{
	if (bytes >= 10ull << 30)
		snprintf(buf, len, "%.1f GiB", (double)bytes / (1ull << 30));
	else if (bytes >= 10ull << 20)
		snprintf(buf, len, "%.1f MiB", (double)bytes / (1ull << 20));
	else if (bytes >= 10ull << 10)
		snprintf(buf, len, "%.1f KiB", (double)bytes / (1ull << 10));
	else
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
}

int alone(const char *cmd, const char *option, int argc)
{
	/* argv[0] is the command (or subcommand) name, argv[1] the option. */
	if (argc != 2)
		return usage_error(cmd, "%s takes no other argument", option);
	return 0;
}

/* ------------------------------------------------------------------ */
/* JSON output (json-c)                                                */
/* ------------------------------------------------------------------ */

static struct json_object *jout_check(struct json_object *o, bool *failed)
{
	if (!o)
		*failed = true;
	return o;
}

struct json_object *jout_str(const char *s, bool *failed)
{
	return s ? jout_check(json_object_new_string(s), failed) : NULL;
}

struct json_object *jout_u64(uint64_t v, bool *failed)
{
	return jout_check(json_object_new_uint64(v), failed);
}

struct json_object *jout_i64(int64_t v, bool *failed)
{
	return jout_check(json_object_new_int64(v), failed);
}

struct json_object *jout_bool(bool v, bool *failed)
{
	return jout_check(json_object_new_boolean(v), failed);
}

struct json_object *jout_object(bool *failed)
{
	return jout_check(json_object_new_object(), failed);
}

struct json_object *jout_array(bool *failed)
{
	return jout_check(json_object_new_array(), failed);
}

void jout_put(struct json_object *obj, const char *key, struct json_object *val, bool *failed)
{
	if (!obj || json_object_object_add(obj, key, val)) {
		json_object_put(val);
		*failed = true;
	}
}

void jout_append(struct json_object *arr, struct json_object *val, bool *failed)
{
	if (!arr || json_object_array_add(arr, val)) {
		json_object_put(val);
		*failed = true;
	}
}

int jout_print(const char *cmd, struct json_object *obj, bool failed, bool pretty)
{
	const char *text;
	int ret = 0;

	text = failed ? NULL : json_object_to_json_string_ext(obj, JSON_C_TO_STRING_NOSLASHESCAPE |
						(pretty ? JSON_C_TO_STRING_PRETTY |
							  JSON_C_TO_STRING_SPACED :
							  JSON_C_TO_STRING_PLAIN));
	if (!text)
		ret = runtime_error(cmd, -ENOMEM, "building the JSON output");
	else if (puts(text) == EOF || fflush(stdout))
		ret = runtime_error(cmd, -EIO, "writing the output");
	json_object_put(obj);
	return ret;
}

int parse_number(const char *cmd, const char *what, const char *arg, long long min,
		 long long max, long long *out)
{
	const char *digits = arg[0] == '-' && min < 0 ? arg + 1 : arg;
	char *end;
	long long v;

	/*
	 * strtoll() alone takes "" as 0, skips leading blanks, accepts a sign
	 * and saturates on overflow: demand digits, all of the argument, and
	 * no ERANGE, so that "--timeout=" or "1e3" is never read as a number.
	 */
	if (*digits < '0' || *digits > '9')
		goto bad;
	errno = 0;
	v = strtoll(arg, &end, 10);
	if (*end || errno == ERANGE || v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	return usage_error(cmd, "bad %s '%s': want a whole number from %lld to %lld", what, arg,
			   min, max);
}

/* ------------------------------------------------------------------ */
/* probe                                                               */
/* ------------------------------------------------------------------ */

static const enum pt_backend probe_order[] = {
	PT_BACKEND_UFFD_WP, PT_BACKEND_SOFT_DIRTY, PT_BACKEND_MPROTECT,
};

struct backend_report {
	enum pt_backend id;
	int ret;		/* pt_backend_probe(): 0 or -errno */
	char why[256];
	char note[256];		/* sysctl and platform facts that bear on it */
};

/* A /proc/sys value, or -1 when it cannot be read. */
static long read_sysctl(const char *path)
{
	char buf[64];
	ssize_t n;
	long v;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if (sscanf(buf, "%ld", &v) != 1)
		return -1;
	return v;
}

static void probe_help(void)
{
	printf("Usage: pagetrack probe [--json]\n"
	       "\n"
	       "Say, for each tracking backend, whether it can track writes in this\n"
	       "process and why not, and which one PT_BACKEND_AUTO would pick\n"
	       "(PAGETRACK_BACKEND, when set, forces it).\n"
	       "\n"
	       "  --json   one JSON object on stdout instead of text\n"
	       "  --help   this text\n"
	       "\n"
	       "Exit status: 0 if a tracker opened with PT_BACKEND_AUTO would get a\n"
	       "backend here, 1 if not (or PAGETRACK_BACKEND is invalid), 64 on wrong usage.\n");
}

int cmd_probe(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct backend_report rep[ARRAY_LEN(probe_order)];
	const char *env = getenv("PAGETRACK_BACKEND");
	bool json = false, env_bad = false;
	const char *forced = NULL, *chosen = NULL;
	long unpriv_uffd, max_map_count;
	struct utsname u;
	int c, ret;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			ret = alone("probe", "--help", argc);
			if (!ret)
				probe_help();
			return ret;
		default:
			return option_error("probe", argv);
		}
	}
	ret = no_arguments("probe", argc, argv);
	if (ret)
		return ret;

	if (uname(&u))
		memset(&u, 0, sizeof(u));
	unpriv_uffd = read_sysctl("/proc/sys/vm/unprivileged_userfaultfd");
	max_map_count = read_sysctl("/proc/sys/vm/max_map_count");

	if (env && *env && strcmp(env, "auto")) {
		for (size_t i = 0; i < ARRAY_LEN(probe_order); i++)
			if (!strcmp(env, pt_backend_name(probe_order[i])))
				forced = pt_backend_name(probe_order[i]);
		env_bad = !forced;
	}

	for (size_t i = 0; i < ARRAY_LEN(probe_order); i++) {
		struct backend_report *r = &rep[i];

		r->id = probe_order[i];
		r->why[0] = r->note[0] = '\0';
		r->ret = pt_backend_probe(r->id, r->why, sizeof(r->why));
		if (r->ret && !r->why[0])
			snprintf(r->why, sizeof(r->why), "%s", pt_strerror(r->ret));
		switch (r->id) {
		case PT_BACKEND_UFFD_WP:
			if (unpriv_uffd >= 0)
				snprintf(r->note, sizeof(r->note),
					 "vm.unprivileged_userfaultfd = %ld (%s)", unpriv_uffd,
					 unpriv_uffd ? "userfaultfd open to every user"
						     : "not needed: the library asks for user-mode-only faults, Linux >= 5.11");
			break;
		case PT_BACKEND_SOFT_DIRTY:
#if defined(__aarch64__) || defined(__arm__)
			snprintf(r->note, sizeof(r->note), "%s has no soft-dirty bit in Linux", u.machine);
#endif
			break;
		case PT_BACKEND_MPROTECT:
			if (max_map_count >= 0)
				snprintf(r->note, sizeof(r->note),
					 "vm.max_map_count = %ld (each isolated written page costs one mapping)",
					 max_map_count);
			break;
		default:
			break;
		}
		if (!r->ret && !chosen && !env_bad && (!forced || !strcmp(forced, pt_backend_name(r->id))))
			chosen = pt_backend_name(r->id);
	}

	if (json) {
		bool failed = false;
		struct json_object *o = jout_object(&failed);
		struct json_object *sysctl = jout_object(&failed);
		struct json_object *backends = jout_array(&failed);

		jout_put(o, "kernel", jout_str(u.release, &failed), &failed);
		jout_put(o, "machine", jout_str(u.machine, &failed), &failed);
		jout_put(o, "page_size", jout_i64(sysconf(_SC_PAGESIZE), &failed), &failed);
		jout_put(o, "euid", jout_u64(geteuid(), &failed), &failed);
		jout_put(sysctl, "vm.unprivileged_userfaultfd", jout_i64(unpriv_uffd, &failed), &failed);
		jout_put(sysctl, "vm.max_map_count", jout_i64(max_map_count, &failed), &failed);
		jout_put(o, "sysctl", sysctl, &failed);
		for (size_t i = 0; i < ARRAY_LEN(rep); i++) {
			struct json_object *b = jout_object(&failed);

			jout_put(b, "name", jout_str(pt_backend_name(rep[i].id), &failed), &failed);
			jout_put(b, "usable", jout_bool(!rep[i].ret, &failed), &failed);
			jout_put(b, "error", jout_str(rep[i].ret ? strerrorname_np(-rep[i].ret) : NULL,
						      &failed), &failed);
			jout_put(b, "reason", jout_str(rep[i].ret ? rep[i].why : NULL, &failed), &failed);
			jout_put(b, "note", jout_str(rep[i].note[0] ? rep[i].note : NULL, &failed),
				 &failed);
			jout_append(backends, b, &failed);
		}
		jout_put(o, "backends", backends, &failed);
		jout_put(o, "PAGETRACK_BACKEND", jout_str(env && *env ? env : NULL, &failed), &failed);
		jout_put(o, "auto", jout_str(chosen, &failed), &failed);
		ret = jout_print("probe", o, failed, true);
		if (ret)
			return ret;
	} else {
		printf("%-12s Linux %s %s, page size %ld, euid %u\n", "kernel:", u.release, u.machine,
		       sysconf(_SC_PAGESIZE), (unsigned)geteuid());
		for (size_t i = 0; i < ARRAY_LEN(rep); i++) {
			char label[32];

			snprintf(label, sizeof(label), "%s:", pt_backend_name(rep[i].id));
			if (rep[i].ret)
				printf("%-12s no: %s (%s)\n", label, rep[i].why,
				       strerrorname_np(-rep[i].ret));
			else
				printf("%-12s yes\n", label);
			if (rep[i].note[0])
				printf("%-12s %s\n", "", rep[i].note);
		}
		if (env_bad)
			printf("%-12s none: PAGETRACK_BACKEND=%s names no backend\n", "auto:", env);
		else if (forced && !chosen)
			printf("%-12s none: PAGETRACK_BACKEND=%s forces a backend that is not usable here\n",
			       "auto:", forced);
		else if (!chosen)
			printf("%-12s none: no backend is usable here\n", "auto:");
		else
			printf("%-12s %s%s\n", "auto:", chosen,
			       forced ? " (forced by PAGETRACK_BACKEND)" : "");
	}
	if (fflush(stdout) || ferror(stdout))
		return runtime_error("probe", -EIO, "writing the output");
	if (env_bad)
		return runtime_error("probe", 0,
				     "PAGETRACK_BACKEND=%s: unknown backend (uffd-wp, soft-dirty, mprotect or auto)",
				     env);
	return chosen ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* pgwrites: the 2007 seed program                                    */
/* ------------------------------------------------------------------ */

/* The seed's backing file: dd if=/dev/zero of=/root/file bs=4K count=10 */
#define DEMO_PAGES 10

struct demo {
	char dir[PATH_MAX];
	char file[PATH_MAX + 16];
	char loop_path[32];
	int file_fd;
	int loop_fd;
	bool loop_attached;
	void *map;
	size_t len;
	struct pt_tracker *tracker;
};

/*
 * Attach a free loop device to the backing file, as the seed did by hand.
 * LOOP_CTL_GET_FREE and LOOP_SET_FD are two steps: another program may
 * take the same device in between (EBUSY), so ask again a few times.
 * LO_FLAGS_AUTOCLEAR makes the kernel detach it when the last user closes
 * it, so an interrupted demo does not leave it behind.
 */
static int loop_attach(struct demo *d)
{
	struct loop_info64 info;
	int ctl, nr, ret = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return runtime_error("pgwrites", -errno, "/dev/loop-control");
	for (int attempt = 0; attempt < 8 && ret == -EBUSY; attempt++) {
		nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0) {
			ret = -errno;
			runtime_error("pgwrites", ret, "LOOP_CTL_GET_FREE");
			goto out;
		}
		snprintf(d->loop_path, sizeof(d->loop_path), "/dev/loop%d", nr);
		d->loop_fd = open(d->loop_path, O_RDWR | O_CLOEXEC);
		if (d->loop_fd < 0) {
			ret = -errno;
			runtime_error("pgwrites", ret, "%s", d->loop_path);
			goto out;
		}
		if (!ioctl(d->loop_fd, LOOP_SET_FD, d->file_fd)) {
			ret = 0;
			break;
		}
		ret = -errno;
		close(d->loop_fd);
		d->loop_fd = -1;
		if (ret != -EBUSY) {
			runtime_error("pgwrites", ret, "LOOP_SET_FD on %s", d->loop_path);
			goto out;
		}
	}
	if (ret) {
		runtime_error("pgwrites", ret, "no loop device stayed free long enough");
		goto out;
	}
	d->loop_attached = true;
	memset(&info, 0, sizeof(info));
	if (!ioctl(d->loop_fd, LOOP_GET_STATUS64, &info)) {
		info.lo_flags |= LO_FLAGS_AUTOCLEAR;
		/* Best effort: the explicit LOOP_CLR_FD at the end still runs. */
		(void)ioctl(d->loop_fd, LOOP_SET_STATUS64, &info);
	}
out:
	close(ctl);
	return ret ? 1 : 0;
}

static void demo_cleanup(struct demo *d)
{
	pt_tracker_close(d->tracker);
	if (d->map && d->map != MAP_FAILED)
		munmap(d->map, d->len);
	if (d->loop_fd >= 0) {
		if (d->loop_attached && ioctl(d->loop_fd, LOOP_CLR_FD, 0))
			runtime_error("pgwrites", -errno, "detaching %s", d->loop_path);
		close(d->loop_fd);
	}
	if (d->file_fd >= 0)
		close(d->file_fd);
	if (d->file[0])
		unlink(d->file);
	if (d->dir[0])
		rmdir(d->dir);
}

static void demo_help(void)
{
	printf("Usage: pagetrack pgwrites [--loop]\n"
	       "\n"
	       "The 2007 loop-device patch's test program, done with libpagetrack: map a\n"
	       "10-page file MAP_SHARED, track it, write array[0], array[1],\n"
	       "array[elemsPerPage] and array[3*elemsPerPage+60], collect, and print\n"
	       "one line \"offset N\" per written page, then \"backend NAME\".\n"
	       "\n"
	       "  --loop   map /dev/loopN over the file, as the seed did (needs root)\n"
	       "  --help   this text\n"
	       "\n"
	       "PAGETRACK_BACKEND=uffd-wp|soft-dirty|mprotect forces the backend.\n");
}

int cmd_pgwrites(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "loop", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct demo d = { .file_fd = -1, .loop_fd = -1 };
	const char *tmp = getenv("TMPDIR");
	const struct pt_range *ranges;
	size_t nr, elems_per_page;
	long page_size = sysconf(_SC_PAGESIZE);
	bool use_loop = false;
	int *array, c, n, ret;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			use_loop = true;
			break;
		case 'h':
			ret = alone("pgwrites", "--help", argc);
			if (!ret)
				demo_help();
			return ret;
		default:
			return option_error("pgwrites", argv);
		}
	}
	ret = no_arguments("pgwrites", argc, argv);
	if (ret)
		return ret;
	if (use_loop && geteuid() != 0)
		return runtime_error("pgwrites", -EPERM,
				     "--loop attaches a loop device, which needs root");
	if (page_size <= 0 || (size_t)page_size < 64 * sizeof(int))
		return runtime_error("pgwrites", 0, "unexpected page size %ld", page_size);

	if (!tmp || !*tmp)
		tmp = "/tmp";
	if ((size_t)snprintf(d.dir, sizeof(d.dir), "%s/pagetrack-demo-XXXXXX", tmp) >=
	    sizeof(d.dir)) {
		d.dir[0] = '\0';
		return runtime_error("pgwrites", -ENAMETOOLONG, "TMPDIR=%s", tmp);
	}
	if (!mkdtemp(d.dir)) {
		ret = runtime_error("pgwrites", -errno, "cannot make a directory in %s", tmp);
		d.dir[0] = '\0';
		return ret;
	}
	snprintf(d.file, sizeof(d.file), "%s/backing", d.dir);
	d.len = DEMO_PAGES * (size_t)page_size;
	d.file_fd = open(d.file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (d.file_fd < 0) {
		ret = runtime_error("pgwrites", -errno, "%s", d.file);
		d.file[0] = '\0';
		goto out;
	}
	if (ftruncate(d.file_fd, (off_t)d.len)) {
		ret = runtime_error("pgwrites", -errno, "sizing %s", d.file);
		goto out;
	}
	if (use_loop) {
		ret = loop_attach(&d);
		if (ret)
			goto out;
	}
	d.map = mmap(NULL, d.len, PROT_READ | PROT_WRITE, MAP_SHARED,
		     use_loop ? d.loop_fd : d.file_fd, 0);
	if (d.map == MAP_FAILED) {
		ret = runtime_error("pgwrites", -errno, "mmap of %s", use_loop ? d.loop_path : d.file);
		goto out;
	}

	ret = pt_tracker_open(&d.tracker, d.map, d.len, NULL);
	if (ret) {
		d.tracker = NULL;
		ret = runtime_error("pgwrites", ret, "cannot track the mapping");
		goto out;
	}

	/* The seed's writes, word for word. */
	array = d.map;
	elems_per_page = (size_t)page_size / sizeof(int);
	array[0] = 5;
	array[1] = 9;
	array[elems_per_page] = 14;
	array[3 * elems_per_page + 60] = 35;

	n = pt_tracker_collect(d.tracker, PT_COLLECT_RESET, &ranges, &nr);
	if (n < 0) {
		ret = runtime_error("pgwrites", n, "collect");
		goto out;
	}
	for (size_t i = 0; i < nr; i++)
		for (uint64_t p = 0; p < ranges[i].count; p++)
			printf("offset %llu\n", (unsigned long long)(ranges[i].first + p));
	printf("backend %s\n", pt_backend_name(pt_tracker_backend(d.tracker)));
	if (fflush(stdout)) {
		ret = runtime_error("pgwrites", -errno, "writing the output");
		goto out;
	}
	ret = 0;
out:
	demo_cleanup(&d);
	return ret;
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

static void help(void)
{
	printf("Usage: pagetrack [--help] [--version] COMMAND [ARGS]\n"
	       "\n"
	       "Track which pages of memory a program writes (libpagetrack %s).\n"
	       "\n"
	       "Commands:\n",
	       pt_version());
	for (size_t i = 0; i < ARRAY_LEN(commands); i++) {
		char head[48];

		snprintf(head, sizeof(head), "%s %s", commands[i].name, commands[i].args);
		printf("  %-28s %s\n", head, commands[i].summary);
	}
	printf("\n"
	       "Run 'pagetrack COMMAND --help' for a command's options.\n"
	       "Environment: PAGETRACK_BACKEND forces a backend, PAGETRACK_LOG=error|warn|info|debug\n"
	       "sets how much the library reports on stderr.\n"
	       "Exit status: 0 success, 1 failure, 64 wrong usage.  See pagetrack(1).\n");
}

/* Unless PAGETRACK_LOG asks for more, show the library's errors and warnings. */
static void log_to_stderr(enum pt_log_level level, const char *msg, void *arg)
{
	(void)arg;
	fprintf(stderr, "pagetrack: %s%s\n", level == PT_LOG_ERROR ? "" : "warning: ", msg);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	const char *log_env = getenv("PAGETRACK_LOG");
	int c, ret;

	if (!log_env || !*log_env)
		pt_set_log(log_to_stderr, PT_LOG_WARN, NULL);

	getopt_restart();
	while ((c = getopt_long(argc, argv, "+hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			ret = alone(NULL, "--help", argc);
			if (!ret)
				help();
			return ret;
		case 'V':
			ret = alone(NULL, "--version", argc);
			if (!ret)
				printf("pagetrack %s (libpagetrack %s)\n", PAGETRACK_VERSION,
				       pt_version());
			return ret;
		default:
			return option_error(NULL, argv);
		}
	}
	if (optind >= argc)
		return usage_error(NULL, "no command given");
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		if (!strcmp(argv[optind], commands[i].name))
			return commands[i].run(argc - optind, argv + optind);
	return usage_error(NULL, "unknown command '%s'", argv[optind]);
}
