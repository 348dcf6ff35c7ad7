/* SPDX-License-Identifier: MIT */
/*
 * harness.c - the test helpers of harness.h, compiled once into libptest.a:
 * memory of every kind, the cell reporter, collecting into a page map,
 * temporary directories, shared replica cleanup, a reproducible generator.
 * It uses pagetrack.h only (it is built without -Isrc), so that programs
 * linked against the shared library may use it too.
 */
#include <linux/loop.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"

int t_failures, t_done, t_skipped;

size_t t_page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* ---- memory kinds -------------------------------------------------- */

const char *const t_mem_kind_names[T_MEM_NKINDS] = {
	"anon", "memfd", "shm", "file", "loop", "thp",
};

/*
 * Map len bytes of the given kind, zero-filled.  Returns 0, or a skip
 * reason in why and T_SKIP, or T_FAIL with why.
 */
int t_mem_map(struct t_mem *m, enum t_mem_kind kind, size_t len, char *why, size_t why_len)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
	int flags = MAP_SHARED;
	int result = T_SKIP;

	memset(m, 0, sizeof(*m));
	m->kind = kind;
	m->len = len;
	m->fd = m->backing_fd = -1;
	switch (kind) {
	case T_MEM_ANON:
	case T_MEM_THP: {
		size_t align = kind == T_MEM_THP ? (2u << 20) : 0;

		m->map_len = len + align;
		m->map = mmap(NULL, m->map_len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m->map == MAP_FAILED)
			goto fail;
		m->addr = align ? (char *)(((uintptr_t)m->map + align - 1) & ~(uintptr_t)(align - 1)) : m->map;
		if (kind == T_MEM_THP) {
			if (access("/sys/kernel/mm/transparent_hugepage/enabled", R_OK)) {
				snprintf(why, why_len, "no transparent huge pages in this kernel");
				munmap(m->map, m->map_len);
				return T_SKIP;
			}
			if (madvise(m->addr, len, MADV_HUGEPAGE))
				goto fail;
		}
		return 0;
	}
	case T_MEM_MEMFD:
		m->fd = memfd_create("pagetrack-test", MFD_CLOEXEC);
		break;
	case T_MEM_SHM:
		snprintf(m->path, sizeof(m->path), "/dev/shm/pagetrack-test-%d-%p", getpid(), (void *)m);
		m->fd = open(m->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		break;
	case T_MEM_FILE:
	case T_MEM_LOOP:
		snprintf(m->path, sizeof(m->path), "%s/pagetrack-test-XXXXXX", tmp);
		m->fd = mkostemp(m->path, O_CLOEXEC);
		break;
	default:
		snprintf(why, why_len, "unknown memory kind");
		return T_FAIL;
	}
	if (m->fd < 0 || ftruncate(m->fd, (off_t)len))
		goto fail;
	if (kind == T_MEM_LOOP) {
		int ctl, nr;

		if (geteuid() != 0) {
			snprintf(why, why_len, "a loop device needs root");
			goto skip;
		}
		ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
		nr = ctl < 0 ? -1 : ioctl(ctl, LOOP_CTL_GET_FREE);
		if (ctl >= 0)
			close(ctl);
		if (nr < 0) {
			snprintf(why, why_len, "no free loop device (/dev/loop-control: %s)", strerror(errno));
			goto skip;
		}
		snprintf(m->loop_path, sizeof(m->loop_path), "/dev/loop%d", nr);
		m->backing_fd = m->fd;
		m->fd = open(m->loop_path, O_RDWR | O_CLOEXEC);
		if (m->fd < 0 || ioctl(m->fd, LOOP_SET_FD, m->backing_fd)) {
			snprintf(why, why_len, "%s: %s", m->loop_path, strerror(errno));
			goto skip;
		}
	}
	m->map_len = len;
	m->map = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, m->fd, 0);
	if (m->map == MAP_FAILED)
		goto fail;
	m->addr = m->map;
	return 0;
fail:
	snprintf(why, why_len, "cannot map %s memory: %s", t_mem_kind_names[kind], strerror(errno));
	result = T_FAIL;
skip:
	t_mem_unmap(m);
	return result;
}

void t_mem_unmap(struct t_mem *m)
{
	if (m->map && m->map != MAP_FAILED)
		munmap(m->map, m->map_len);
	if (m->kind == T_MEM_LOOP && m->fd >= 0)
		ioctl(m->fd, LOOP_CLR_FD, 0);
	if (m->fd >= 0)
		close(m->fd);
	if (m->backing_fd >= 0)
		close(m->backing_fd);
	if (m->path[0])
		unlink(m->path);
	m->map = NULL;
	m->fd = m->backing_fd = -1;
	m->path[0] = '\0';
}

/* ---- backends ------------------------------------------------------- */

const enum pt_backend t_all_backends[T_NBACKENDS] = {
	PT_BACKEND_UFFD_WP, PT_BACKEND_SOFT_DIRTY, PT_BACKEND_MPROTECT,
};

/* Backends not available here are skipped with the probe's reason. */
bool t_backend_usable(enum pt_backend b, char *why, size_t why_len)
{
	return pt_backend_probe(b, why, why_len) == 0;
}

/* uffd.c's test hook: not exported, so weak, for the programs that link
 * the shared library (they never ask for "cool"). */
extern unsigned int pt_uffd_guard_cool_after __attribute__((weak));

unsigned int t_test_track_flags(void)
{
	const char *chunks = getenv("PAGETRACK_TEST_CHUNKS");

	if (!chunks || (strcmp(chunks, "1") && strcmp(chunks, "cool")))
		return 0;
	if (!strcmp(chunks, "cool")) {
		if (!&pt_uffd_guard_cool_after)
			DIE("PAGETRACK_TEST_CHUNKS=cool needs a test linked with the static library");
		pt_uffd_guard_cool_after = 0;
	}
	return PT_TRACK_CHUNKS;
}

/* Open a tracker on a forced backend; opts.backend beats PAGETRACK_BACKEND. */
int t_tracker_open_on(struct pt_tracker **t, enum pt_backend b, void *addr, size_t len)
{
	struct pt_tracker_opts o = { .sz = sizeof(o), .backend = b, .flags = t_test_track_flags() };

	return pt_tracker_open(t, addr, len, &o);
}

/* ---- cells and the table --------------------------------------------- */

void t_cell_report(const char *name, int result, const char *why)
{
	switch (result) {
	case T_PASS:
		t_done++;
		printf("  %-40s done\n", name);
		break;
	case T_SKIP:
		t_skipped++;
		printf("  %-40s skipped [%s]\n", name, why);
		break;
	default:
		t_failures++;
		printf("  %-40s failed [%s]\n", name, why && *why ? why : "see above");
		break;
	}
	fflush(stdout);
}

/* Run one cell and report it. */
void t_run_cell(const struct t_cell *c)
{
	char why[512] = "";

	t_cell_report(c->name, c->fn(why, sizeof(why)) ? T_PASS : T_FAIL, why);
}

/* Run a table of cells in order. */
void t_run_cells(const struct t_cell *cells, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t_run_cell(&cells[i]);
}

/* The program's exit: fail if any cell failed, skip if none ran. */
int t_exit(void)
{
	printf("%d done, %d failed, %d skipped\n", t_done, t_failures, t_skipped);
	if (t_failures)
		return T_FAIL;
	if (!t_done) {
		printf("skip: every cell skipped\n");
		return T_SKIP;
	}
	return T_PASS;
}

/* Collect into a byte map of pages (1 = reported).  Returns pages or -errno;
 * checks the ranges are ascending, non-overlapping, maximal, inside npages. */
int t_collect_map(struct pt_tracker *t, unsigned flags, uint8_t *map, uint64_t npages, char *why,
		  size_t why_len)
{
	const struct pt_range *r;
	size_t nr;
	int n = pt_tracker_collect(t, flags, &r, &nr);
	uint64_t total = 0, prev_end = 0;

	if (n < 0) {
		snprintf(why, why_len, "collect: %s", strerror(-n));
		return n;
	}
	memset(map, 0, npages);
	for (size_t i = 0; i < nr; i++) {
		if (!r[i].count || r[i].first + r[i].count > npages ||
		    (i && r[i].first <= prev_end)) {
			snprintf(why, why_len, "bad range %zu: first %llu count %llu (prev end %llu, pages %llu)",
				 i, (unsigned long long)r[i].first, (unsigned long long)r[i].count,
				 (unsigned long long)prev_end, (unsigned long long)npages);
			return -EPROTO;
		}
		memset(map + r[i].first, 1, r[i].count);
		prev_end = r[i].first + r[i].count;
		total += r[i].count;
	}
	if (total != (uint64_t)n) {
		snprintf(why, why_len, "collect returned %d but ranges hold %llu pages", n, (unsigned long long)total);
		return -EPROTO;
	}
	return n;
}

/* ---- temporary directories ------------------------------------------------ */

/* A fresh directory /tmp/<prefix>-XXXXXX in buf; exits the test on failure. */
void t_tmpdir_make(char *buf, size_t len, const char *prefix)
{
	snprintf(buf, len, "/tmp/%s-XXXXXX", prefix);
	if (!mkdtemp(buf))
		DIE("mkdtemp %s: %s", buf, strerror(errno));
}

/* Remove the files of a flat directory (no subdirectories), keep it. */
void t_tmpdir_empty(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *de;
	char p[512];

	if (!dp)
		return;
	while ((de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(p, sizeof(p), "%s/%s", d, de->d_name);
			unlink(p);
		}
	closedir(dp);
}

/* Remove a flat directory made by t_tmpdir_make: its files, then itself. */
void t_tmpdir_remove(const char *d)
{
	t_tmpdir_empty(d);
	rmdir(d);
}

bool t_two_cpus(const cpu_set_t *set, int *a, int *b)
{
	*a = *b = -1;
	for (int c = 0; c < CPU_SETSIZE && *b < 0; c++)
		if (CPU_ISSET(c, set)) {
			if (*a < 0)
				*a = c;
			else
				*b = c;
		}
	return *b >= 0;
}

bool t_place_region_threads(struct pt_region *r, int cpu)
{
	pid_t tids[4];
	cpu_set_t set;
	int n = pt_region_threads(r, tids, 4);

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (n < 2 || n > 4)
		return false;	/* the seal and log threads, at least */
	for (int i = 0; i < n; i++)
		if (sched_setaffinity(tids[i], sizeof(set), &set))
			return false;
	return true;
}

int t_tasks(pid_t *tids, int max)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	while (d && n < max && (de = readdir(d)))
		if (atoi(de->d_name) > 0)
			tids[n++] = atoi(de->d_name);
	if (d)
		closedir(d);
	return n;
}

void t_task_name(pid_t tid, char *name, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)tid);
	f = fopen(path, "re");
	if (!f || !fgets(name, (int)len, f))
		name[0] = 0;
	name[strcspn(name, "\n")] = 0;
	if (f)
		fclose(f);
}

int t_failures;

void t_cell(const char *what, bool ok)
{
	printf("  %-66s %s\n", what, ok ? "done" : "FAILED");
	fflush(stdout);
	if (!ok)
		t_failures++;
}

static void print_error(const struct pt_dir_problem *p, void *arg)
{
	(void)arg;
	if (p->level == PT_LOG_ERROR)
		printf("    verify: %s\n", p->message);
}

int t_verify(const char *d)
{
	return pt_dir_verify(d, print_error, NULL);
}

bool t_wait_killed(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		DIE("waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return true;
	if (WIFSIGNALED(status))
		printf("    the child died of signal %d\n", WTERMSIG(status));
	else
		printf("    the child exited %d\n", WEXITSTATUS(status));
	return false;
}

int t_copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in, out, ret = -1;
	ssize_t n;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0)
		goto out;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			goto out;
	ret = n < 0 ? -1 : 0;
out:
	if (out >= 0)
		close(out);
	close(in);
	return ret;
}

void t_copy_dir(const char *from, const char *to, const char *skip)
{
	char a[600], b[600];
	struct dirent *de;
	DIR *d;

	if (mkdir(to, 0700) && errno != EEXIST)
		DIE("mkdir %s: %s", to, strerror(errno));
	t_tmpdir_empty(to);
	d = opendir(from);
	if (!d)
		DIE("opendir %s: %s", from, strerror(errno));
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || (skip && !strcmp(de->d_name, skip)))
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
		if (t_copy_file(a, b))
			DIE("copy %s: %s", a, strerror(errno));
	}
	closedir(d);
}

/*
 * Remove every /dev/shm file whose name starts with prefix: a shared
 * replica's control block "pagetrack-NAME" and its copies
 * "pagetrack-NAME.<generation>".  Only system calls, so that a SIGALRM
 * handler may call it.
 */
void t_shm_remove_prefix(const char *prefix)
{
	struct dirent64_raw {
		uint64_t ino;
		int64_t off;
		unsigned short reclen;
		unsigned char type;
		char name[];
	};
	char buf[4096] __attribute__((aligned(8)));
	size_t plen = strlen(prefix);
	long n;
	int fd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return;
	while ((n = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0)
		for (long off = 0; off < n;) {
			struct dirent64_raw *d = (struct dirent64_raw *)(buf + off);

			if (!strncmp(d->name, prefix, plen))
				unlinkat(fd, d->name, 0);
			off += d->reclen;
		}
	close(fd);
}

/* Remove the shared replica NAME: its control block and its copies. */
void t_shm_remove(const char *name)
{
	char p[320];

	snprintf(p, sizeof(p), "pagetrack-%s.", name);
	t_shm_remove_prefix(p);
	snprintf(p, sizeof(p), "/dev/shm/pagetrack-%s", name);
	unlink(p);
}

bool t_thread_read_bytes(uint64_t *bytes)
{
	FILE *f = fopen("/proc/thread-self/io", "re");
	unsigned long long v;
	char line[128];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "rchar: %llu", &v) == 1) {
			*bytes = v;
			found = true;
		}
	fclose(f);
	return found;
}

/* A fast reproducible PRNG (xorshift64*). */
uint64_t t_rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* A random permutation of [0, n), the same for the same seed (Fisher-Yates);
 * NULL without memory.  The caller frees it. */
uint64_t *t_rnd_permutation(uint64_t n, uint64_t seed)
{
	uint64_t *v = malloc(n * sizeof(*v));

	if (!v)
		return NULL;
	for (uint64_t i = 0; i < n; i++)
		v[i] = i;
	for (uint64_t i = n ? n - 1 : 0; i > 0; i--) {
		uint64_t j = t_rnd_next(&seed) % (i + 1), x = v[i];

		v[i] = v[j];
		v[j] = x;
	}
	return v;
}

int t_run_tool(char *out, size_t out_len, const char *fmt, ...)
{
	const char *o = getenv("O") ? getenv("O") : "build";
	char cmd[1600], args[1200];
	size_t n = 0;
	va_list ap;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "timeout 20 %s/pagetrack %s 2>&1", o, args);
	p = popen(cmd, "r");
	if (!p)
		DIE("popen: %s", strerror(errno));
	while (n + 1 < out_len && fgets(out + n, (int)(out_len - n), p))
		n += strlen(out + n);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* ---- writer threads ------------------------------------------------------ */

static void *writer_main(void *arg)
{
	struct t_writer_arg *a = arg;
	struct t_writers *c = a->w;
	size_t ps = t_page_size();
	uint64_t rnd = c->seed * (uint64_t)(a->id + 3) | 1, n = 0;
	uint8_t *base = c->base;
	size_t len = c->len;

	while (!__atomic_load_n(&c->stop, __ATOMIC_RELAXED)) {
		unsigned pause = __atomic_load_n(&c->pause, __ATOMIC_ACQUIRE);
		uint64_t r, page, v;
		size_t off;
		uint8_t *p;

		/* The ack names the checkpoint, so an ack left from the last
		 * one cannot let the collector go on while this thread still
		 * has a write to make. */
		if (pause) {
			__atomic_store_n(&c->ack[a->id], pause, __ATOMIC_RELEASE);
			while (__atomic_load_n(&c->pause, __ATOMIC_ACQUIRE) == pause)
				sched_yield();
			continue;
		}
		r = t_rnd_next(&rnd);
		page = (r & 3) || !c->hot_pages ? (r >> 8) % c->npages : (r >> 8) % c->hot_pages;
		off = (size_t)(t_rnd_next(&rnd) % ps);
		p = base + page * ps + off;
		v = t_rnd_next(&rnd);

		switch (r >> 4 & 3) {
		case 0:
			__atomic_store_n(p, (uint8_t)v, __ATOMIC_RELAXED);
			break;
		case 1:
			p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)3);
			__atomic_store_n((uint32_t *)p, (uint32_t)v, __ATOMIC_RELAXED);
			break;
		case 2:
			p = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
			__atomic_store_n((uint64_t *)p, v, __ATOMIC_RELAXED);
			break;
		default: {
			/* A run of up to 32 words, often across into the next page. */
			size_t words = 1 + (size_t)(v % 32);
			uint8_t *q = (uint8_t *)((uintptr_t)(base + page * ps + ps - 8 * (v % 24)) & ~(uintptr_t)7);

			if (r & 0x400)
				q = (uint8_t *)((uintptr_t)p & ~(uintptr_t)7);
			for (size_t i = 0; i < words && q + 8 <= base + len; i++, q += 8)
				__atomic_store_n((uint64_t *)q, v + i, __ATOMIC_RELAXED);
			break;
		}
		}
		if (++n % 256 == 0)
			__atomic_store_n(&a->writes, n, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&a->writes, n, __ATOMIC_RELAXED);
	return NULL;
}

bool t_writers_start(struct t_writers *w, void *base, size_t len, uint64_t hot_pages, uint64_t seed,
		     char *why, size_t why_len)
{
	memset(w, 0, sizeof(*w));
	w->base = base;
	w->len = len;
	w->npages = len / t_page_size();
	w->hot_pages = hot_pages < w->npages ? hot_pages : w->npages;
	w->seed = seed;
	for (int i = 0; i < T_WRITERS; i++) {
		int ret;

		w->arg[i] = (struct t_writer_arg){ .w = w, .id = i };
		ret = pthread_create(&w->th[i], NULL, writer_main, &w->arg[i]);
		if (ret) {
			snprintf(why, why_len, "pthread_create: %s", strerror(ret));
			t_writers_stop(w);
			return false;
		}
		w->started++;
	}
	return true;
}

void t_writers_pause(struct t_writers *w, unsigned checkpoint)
{
	__atomic_store_n(&w->pause, checkpoint, __ATOMIC_RELEASE);
	for (int i = 0; i < w->started; i++)
		while (__atomic_load_n(&w->ack[i], __ATOMIC_ACQUIRE) != checkpoint)
			sched_yield();
}

void t_writers_resume(struct t_writers *w)
{
	__atomic_store_n(&w->pause, 0, __ATOMIC_RELEASE);
}

uint64_t t_writers_count(struct t_writers *w)
{
	uint64_t n = 0;

	for (int i = 0; i < T_WRITERS; i++)
		n += __atomic_load_n(&w->arg[i].writes, __ATOMIC_RELAXED);
	return n;
}

uint64_t t_writers_stop(struct t_writers *w)
{
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELAXED);
	t_writers_resume(w);
	for (int i = 0; i < w->started; i++)
		pthread_join(w->th[i], NULL);
	w->started = 0;
	return t_writers_count(w);
}

void t_copy_racing(uint8_t *dst, const uint8_t *src, size_t bytes)
{
	for (size_t i = 0; i < bytes; i += 8)
		__atomic_store_n((uint64_t *)(dst + i),
				 __atomic_load_n((const uint64_t *)(src + i), __ATOMIC_RELAXED),
				 __ATOMIC_RELAXED);
}

double t_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
