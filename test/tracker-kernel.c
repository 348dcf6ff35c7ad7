/* tracker-kernel: what the kernel does to tracked memory: read(2), MADV_DONTNEED, hole punch, fork, munmap, huge pages. */
/*
 * Each cell keeps a shadow copy of the region up to date the way
 * replication does (collect with reset, copy the reported pages) and
 * checks, after the kernel changed the memory, that the shadow equals the
 * region again: content that changed and was not reported is a false
 * negative, whoever changed it.  Where the backend gives exact answers
 * (uffd-wp on 4 KiB pages) the report must also be exactly the pages
 * expected; elsewhere false positives are counted.
 *
 * Measured on Linux 6.18 with uffd-wp (see src/uffd.c): MADV_DONTNEED,
 * reclaim and truncation turn a written page into an empty PTE, reported as
 * written, and anonymous pages zapped by MADV_DONTNEED read back as written
 * too; a protected page of shared memory keeps a PTE marker across hole
 * punching, so a clean page whose content the punch zeroed is not reported:
 * that is a change made through the file, not a store through the mapping,
 * which pagetrack(7) asks the caller to report with pt_tracker_mark(); the
 * cell checks that path and prints what the kernel did by itself.
 */
#include <sched.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define REGION_LEN (4ul << 20)		/* two 2 MiB huge pages */
#define STEP(x) do { if (!(x)) return false; } while (0)

/* ---- a shadow kept by collect + copy --------------------------------- */

struct ctx {
	enum pt_backend b;
	struct t_mem *m;
	struct pt_tracker *t;
	uint64_t npages;
	uint8_t *shadow;
	uint8_t *map;			/* pages reported by the last sync */
	uint64_t false_positives;
	char *why;
	size_t why_len;
};

static bool exact(const struct ctx *c)
{
	return c->b == PT_BACKEND_UFFD_WP && c->m->kind != T_MEM_THP;
}

static uint8_t *page(const struct ctx *c, uint64_t p)
{
	return (uint8_t *)c->m->addr + p * t_page_size();
}

/* Collect with reset, copy the reported pages into the shadow; then the
 * shadow must equal the region (nobody writes meanwhile). */
static bool sync_shadow(struct ctx *c, const char *what)
{
	size_t ps = t_page_size();
	int n = t_collect_map(c->t, PT_COLLECT_RESET, c->map, c->npages, c->why, c->why_len);

	CHECK(n >= 0, "%s: %s", what, c->why);
	for (uint64_t p = 0; p < c->npages; p++)
		if (c->map[p])
			memcpy(c->shadow + p * ps, page(c, p), ps);
	for (uint64_t p = 0; p < c->npages; p++) {
		if (memcmp(c->shadow + p * ps, page(c, p), ps)) {
			snprintf(c->why, c->why_len, "%s: page %llu changed and %s did not report it "
				 "(%d pages reported): a false negative", what, (unsigned long long)p,
				 pt_backend_name(c->b), n);
			printf("    %s\n", c->why);
			return false;
		}
	}
	return true;
}

/* The last sync reported exactly want[] (or a superset, counted). */
static bool reported(struct ctx *c, const char *what, const uint64_t *want, size_t nwant)
{
	uint64_t n = 0;

	for (size_t i = 0; i < nwant; i++)
		CHECK(c->map[want[i]], "%s: page %llu not reported", what, (unsigned long long)want[i]);
	for (uint64_t p = 0; p < c->npages; p++)
		n += c->map[p];
	CHECK(n >= nwant, "%s: duplicate pages in the expectation", what);
	CHECK(!exact(c) || n == nwant, "%s: %llu pages reported, want exactly %zu",
	      what, (unsigned long long)n, nwant);
	c->false_positives += n - nwant;
	return true;
}

static bool ctx_open(struct ctx *c)
{
	int ret = t_tracker_open_on(&c->t, c->b, c->m->addr, c->m->len);

	CHECK(ret == 0, "open: %s", strerror(-ret));
	memcpy(c->shadow, c->m->addr, c->m->len);
	return true;
}

static const char *kernel_release(void)
{
	static struct utsname u;

	return uname(&u) ? "?" : u.release;
}

/* ---- read(2) into the region ------------------------------------------ */

/* The kernel writes into a clean page: uffd-wp sees it (the write goes
 * through our page tables); under mprotect the copy faults in the kernel
 * and read(2) fails with EFAULT, the documented behaviour. */
static bool read_into(struct ctx *c, int fd, off_t at, bool pipe_fd)
{
	size_t len = 3000;
	uint8_t *dst = page(c, 5) - 1000;	/* pages 4 and 5 */
	uint64_t want[] = { 4, 5 };
	ssize_t got;

	STEP(ctx_open(c));
	got = pipe_fd ? read(fd, dst, len) : pread(fd, dst, len, at);
	if (c->b == PT_BACKEND_MPROTECT) {
		CHECK(got == -1 && errno == EFAULT,
		      "read(2) into a protected page: got %zd (%s), want EFAULT", got,
		      got < 0 ? strerror(errno) : "no error");
		STEP(sync_shadow(c, "after EFAULT"));
		return true;
	}
	CHECK(got == (ssize_t)len, "read(2): %zd (%s)", got, got < 0 ? strerror(errno) : "short");
	CHECK(dst[0] == 0x5a && dst[len - 1] == 0x5a, "read(2) did not land");
	STEP(sync_shadow(c, "after read(2)"));
	STEP(reported(c, "read(2) into pages 4-5", want, ARRAY_LEN(want)));
	return true;
}

static bool cell_read_pipe(struct ctx *c)
{
	uint8_t buf[3000];
	int p[2];
	bool ok;

	CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
	memset(buf, 0x5a, sizeof(buf));
	CHECK(write(p[1], buf, sizeof(buf)) == (ssize_t)sizeof(buf), "write to pipe");
	ok = read_into(c, p[0], 0, true);
	close(p[0]);
	close(p[1]);
	return ok;
}

static bool cell_read_file(struct ctx *c)
{
	char path[] = "/var/tmp/pagetrack-read-XXXXXX";
	uint8_t buf[8192];
	int fd = mkostemp(path, O_CLOEXEC);
	bool ok;

	CHECK(fd >= 0, "mkostemp: %s", strerror(errno));
	unlink(path);
	memset(buf, 0x5a, sizeof(buf));
	ok = write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf);
	if (ok)
		ok = read_into(c, fd, 100, false);
	else
		printf("    write to %s: %s\n", path, strerror(errno));
	close(fd);
	return ok;
}

/* ---- MADV_DONTNEED ---------------------------------------------------- */

/*
 * MADV_DONTNEED of pages [first, first + count).  uffd-wp sees the zap
 * (Linux 6.18 reads emptied PTEs as written); mprotect and soft-dirty take
 * no fault for it, so pagetrack(7) tells their users to mark the pages,
 * and this is what such a user does.
 */
static bool zap(struct ctx *c, uint64_t first, uint64_t count)
{
	int ret;

	CHECK(!madvise(page(c, first), count * t_page_size(), MADV_DONTNEED), "madvise: %s",
	      strerror(errno));
	if (c->b != PT_BACKEND_UFFD_WP) {
		ret = pt_tracker_mark(c->t, first, count);
		CHECK(ret == 0, "pt_tracker_mark: %s", strerror(-ret));
	}
	return true;
}

/*
 * Anonymous memory: the zapped pages read back as zeros, so pages that had
 * content must be reported.  Shared memory: the content stays; reporting
 * is optional, but an uncollected write before the zap must not be lost.
 */
static bool cell_dontneed(struct ctx *c)
{
	size_t ps = t_page_size(), hp = 2u << 20;
	uint64_t half = hp / ps;

	/* Content before tracking: pages 0-15, and (for huge pages) all of
	 * the second 2 MiB. */
	for (uint64_t p = 0; p < 16; p++)
		memset(page(c, p), (int)(0x10 + p), ps);
	memset(page(c, half), 0x77, hp);
	STEP(ctx_open(c));

	/* Page 10: written and collected, so clean again but with content. */
	page(c, 10)[1] = 1;
	STEP(sync_shadow(c, "setup"));

	page(c, 1)[7] = 0xa1;		/* written, not collected */
	page(c, 5)[7] = 0xa5;
	page(c, 300)[9] = 0xb3;		/* written, never touched before */
	STEP(zap(c, 0, 2));
	STEP(zap(c, 4, 2));
	STEP(zap(c, 10, 1));
	STEP(zap(c, 300, 1));
	STEP(zap(c, 400, 3));
	STEP(sync_shadow(c, "MADV_DONTNEED of written, clean and untouched pages"));
	if (c->m->kind != T_MEM_ANON && c->m->kind != T_MEM_THP) {
		/* Shared memory keeps the content, and the writes are in it. */
		CHECK(page(c, 1)[7] == 0xa1 && page(c, 300)[9] == 0xb3, "shared content lost");
	}

	/* Written again after the zap: reported again. */
	page(c, 0)[3] = 1;
	page(c, 300)[3] = 1;
	STEP(sync_shadow(c, "writes after MADV_DONTNEED"));
	{
		uint64_t want[] = { 0, 300 };

		STEP(reported(c, "writes after MADV_DONTNEED", want, ARRAY_LEN(want)));
	}

	/* A whole 2 MiB (a huge page where there is one): write into it,
	 * zap it all, zap a 4 KiB piece of the first one. */
	page(c, half + 3)[0] = 3;
	STEP(zap(c, half, hp / ps));
	STEP(zap(c, 7, 1));
	STEP(sync_shadow(c, "after MADV_DONTNEED of a whole 2 MiB"));
	page(c, half + 5)[0] = 5;
	STEP(sync_shadow(c, "write into the zapped 2 MiB"));
	{
		uint64_t want[] = { half + 5 };

		STEP(reported(c, "write into the zapped 2 MiB", want, ARRAY_LEN(want)));
	}
	return true;
}

/*
 * The same on the path for kernels that report emptied pages as clean:
 * collect first scans for empty PTEs and holes and re-arms them (here it
 * finds what the main scan would, and takes it away from it).
 */
extern bool pt_uffd_scan_empty;

static bool cell_dontneed_empty_scan(struct ctx *c)
{
	bool saved = pt_uffd_scan_empty, ok;

	pt_uffd_scan_empty = true;
	ok = cell_dontneed(c);
	pt_uffd_scan_empty = saved;
	return ok;
}

/* ---- hole punching -------------------------------------------------------- */

static bool punch(struct ctx *c, uint64_t first, uint64_t count)
{
	size_t ps = t_page_size();

	CHECK(!fallocate(c->m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			 (off_t)(first * ps), (off_t)(count * ps)),
	      "fallocate(PUNCH_HOLE): %s", strerror(errno));
	return true;
}

/* A written (uncollected) page punched: its content is now zero and the
 * write must not vanish from the report. */
static bool cell_punch_written(struct ctx *c)
{
	for (uint64_t p = 0; p < 8; p++)
		memset(page(c, p), 0x30 + (int)p, t_page_size());
	STEP(ctx_open(c));
	page(c, 3)[100] = 0xee;
	STEP(punch(c, 2, 3));		/* 2 clean, 3 written, 4 clean */
	/* Only page 3 is checked here; the clean pages are the next cell. */
	STEP(t_collect_map(c->t, PT_COLLECT_RESET, c->map, c->npages, c->why, c->why_len) >= 0);
	CHECK(c->map[3], "written page 3 not reported after the punch: the write is lost");
	CHECK(page(c, 3)[100] == 0, "punched page still has content");
	return true;
}

/*
 * A clean page punched: its content changed (to zeros) through the file,
 * not by a store through the mapping.  No backend sees that (Linux 6.18
 * keeps the uffd-wp PTE marker across the punch; mprotect and soft-dirty
 * take no fault), so pagetrack(7) tells the caller to mark what it
 * punches.  The cell does what such a caller does and checks the copy
 * converges; what the kernel reported by itself is printed, so a kernel
 * that starts reporting punches shows up here.
 */
static bool cell_punch_clean(struct ctx *c)
{
	int ret;

	for (uint64_t p = 0; p < 8; p++)
		memset(page(c, p), 0x30 + (int)p, t_page_size());
	STEP(ctx_open(c));
	STEP(punch(c, 2, 1));
	CHECK(page(c, 2)[0] == 0, "punched page still has content");
	STEP(t_collect_map(c->t, 0, c->map, c->npages, c->why, c->why_len) >= 0);
	printf("    %s on Linux %s: the punched clean page is %sreported without a mark\n",
	       pt_backend_name(c->b), kernel_release(), c->map[2] ? "" : "not ");
	ret = pt_tracker_mark(c->t, 2, 1);
	CHECK(ret == 0, "pt_tracker_mark: %s", strerror(-ret));
	STEP(sync_shadow(c, "a punched clean page, marked"));
	CHECK(c->map[2], "the marked page was not reported");
	/* The mark was consumed by the collect with reset. */
	STEP(sync_shadow(c, "after the marked collect"));
	CHECK(!c->map[2], "a consumed mark was reported again");
	return true;
}

/* ---- fork ------------------------------------------------------------------ */

static int child_run(struct ctx *c, int ready_fd, int go_fd)
{
	const struct pt_range *r;
	struct pt_tracker *t2;
	size_t nr;
	char byte;
	int ret;

	/* The child can write to the range, tracked or not. */
	page(c, 1)[0] = 0xc1;
	page(c, 2)[0] = 0xc2;
	ret = pt_tracker_collect(c->t, PT_COLLECT_RESET, &r, &nr);
	if (ret != -ECHILD)
		return 10;
	if (pt_tracker_reset(c->t) != -ECHILD)
		return 11;
	if (write(ready_fd, "r", 1) != 1 || read(go_fd, &byte, 1) != 1)
		return 12;
	/* Closing the inherited tracker must not disturb the parent. */
	pt_tracker_close(c->t);
	/* The child can track the range for itself. */
	ret = t_tracker_open_on(&t2, c->b, c->m->addr, c->m->len);
	if (ret)
		return 13;
	page(c, 6)[0] = 6;
	ret = pt_tracker_collect(t2, PT_COLLECT_RESET, &r, &nr);
	if (ret < 1 || !nr)
		return 14;
	pt_tracker_close(t2);
	if (write(ready_fd, "d", 1) != 1 || read(go_fd, &byte, 1) != 1)
		return 15;
	return 0;
}

/* Another process's writes to shared memory go through its own page
 * tables: no tracker of ours sees them (documented).  Take them into the
 * shadow by hand. */
static void accept_foreign(struct ctx *c, const uint64_t *pages, size_t n)
{
	if (c->m->kind == T_MEM_ANON || c->m->kind == T_MEM_THP)
		return;
	for (size_t i = 0; i < n; i++)
		memcpy(c->shadow + pages[i] * t_page_size(), page(c, pages[i]), t_page_size());
}

static bool wait_child(pid_t pid, const char *what)
{
	int status;

	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "%s: child %s %d", what, WIFEXITED(status) ? "exited with" : "killed by signal",
	      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return true;
}

static bool cell_fork(struct ctx *c)
{
	int to_parent[2], to_child[2];
	uint64_t want0[] = { 0, 3 }, want1[] = { 5 }, want2[] = { 8 };
	uint64_t child_pages[] = { 1, 2 }, child_own[] = { 6 };
	bool ok = false;
	char byte;
	pid_t pid;
	int ret;

	memset(c->m->addr, 0x11, 16 * t_page_size());
	STEP(ctx_open(c));
	page(c, 0)[0] = 1;		/* written before fork, not collected */
	CHECK(!pipe(to_parent) && !pipe(to_child), "pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(child_run(c, to_parent[1], to_child[0]));
	if (read(to_parent[0], &byte, 1) != 1) {
		printf("    child died before it was ready\n");
		goto reap;
	}
	/* The parent's tracking is unchanged by the fork and by the child's
	 * writes (its own page tables; for private memory, after COW). */
	accept_foreign(c, child_pages, ARRAY_LEN(child_pages));
	page(c, 3)[0] = 3;
	if (!sync_shadow(c, "parent after fork"))
		goto reap;
	if (!reported(c, "parent after fork", want0, ARRAY_LEN(want0)))
		goto reap;
	/* Child closes its copy and tracks on its own; parent still right. */
	if (write(to_child[1], "g", 1) != 1 || read(to_parent[0], &byte, 1) != 1) {
		printf("    child failed in pt_tracker_close or its own tracker\n");
		goto reap;
	}
	accept_foreign(c, child_own, ARRAY_LEN(child_own));
	page(c, 5)[0] = 5;
	ok = sync_shadow(c, "parent after the child closed") &&
	     reported(c, "parent after the child closed", want1, 1);
reap:
	if (write(to_child[1], "g", 1) != 1)
		kill(pid, SIGKILL);
	ok = wait_child(pid, "child") && ok;
	close(to_parent[0]);
	close(to_parent[1]);
	close(to_child[0]);
	close(to_child[1]);
	STEP(ok);

	/*
	 * A child that never closes the tracker must not pin the parent's
	 * registration: close and reopen while it lives.  (Regression: the
	 * inherited userfaultfd kept the range registered, reopen got EEXIST.)
	 */
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		pause();
		_exit(0);
	}
	pt_tracker_close(c->t);
	c->t = NULL;
	ret = t_tracker_open_on(&c->t, c->b, c->m->addr, c->m->len);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	CHECK(ret == 0, "reopen in the parent while a forked child lives: %s", strerror(-ret));
	memcpy(c->shadow, c->m->addr, c->m->len);
	page(c, 8)[0] = 8;
	STEP(sync_shadow(c, "reopened"));
	STEP(reported(c, "reopened", want2, 1));
	return true;
}

/* ---- close and munmap ---------------------------------------------------------- */

static bool cell_close_before_munmap(struct ctx *c)
{
	STEP(ctx_open(c));
	page(c, 2)[0] = 2;
	pt_tracker_close(c->t);
	c->t = NULL;
	/* Untracked now: writes just work, and a new tracker starts clean. */
	page(c, 3)[0] = 3;
	STEP(ctx_open(c));
	STEP(t_collect_map(c->t, 0, c->map, c->npages, c->why, c->why_len) == 0);
	return true;
}

/* Map anonymous memory again where the region was. */
static bool remap_same_place(struct ctx *c)
{
	void *again = mmap(c->m->map, c->m->map_len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (again == MAP_FAILED) {
		c->m->map = NULL;
		CHECK(false, "mmap at the old address: %s", strerror(errno));
	}
	c->m->map = again;
	c->m->kind = T_MEM_ANON;		/* what it is now */
	return true;
}

/*
 * Close after munmap, twice: once while another tracker already holds new
 * memory at the same address (closing the stale one must leave that one
 * alone), once with nothing mapped there.  Then the address can be tracked
 * afresh.
 */
static bool cell_close_after_munmap(struct ctx *c)
{
	struct pt_tracker *stale;
	uint64_t want[] = { 9 };

	STEP(ctx_open(c));
	page(c, 2)[0] = 2;
	CHECK(!munmap(c->m->map, c->m->map_len), "munmap: %s", strerror(errno));
	stale = c->t;
	c->t = NULL;
	STEP(remap_same_place(c));
	if (c->b != PT_BACKEND_UFFD_WP &&
	    t_tracker_open_on(&c->t, c->b, c->m->addr, c->m->len) == -EEXIST) {
		/* The backend still counts the stale tracker's range as held
		 * (uffd-wp's registration went with the mapping). */
		printf("    %s: EEXIST while the stale tracker is open\n", pt_backend_name(c->b));
		pt_tracker_close(stale);
		stale = NULL;
	}
	pt_tracker_close(c->t);
	c->t = NULL;
	STEP(ctx_open(c));
	pt_tracker_close(stale);
	page(c, 9)[0] = 9;
	STEP(sync_shadow(c, "tracker on new memory after the stale one closed"));
	STEP(reported(c, "tracker on new memory after the stale one closed", want, 1));

	CHECK(!munmap(c->m->map, c->m->map_len), "munmap: %s", strerror(errno));
	pt_tracker_close(c->t);
	c->t = NULL;
	STEP(remap_same_place(c));
	STEP(ctx_open(c));
	page(c, 9)[0] = 9;
	STEP(sync_shadow(c, "new mapping at the old address"));
	STEP(reported(c, "new mapping at the old address", want, 1));
	return true;
}

/*
 * Part of the range replaced by memory the tracker does not know (mmap
 * MAP_FIXED): PAGEMAP_SCAN walks the first part, re-arming its written
 * pages, then fails on the stranger with EPERM.  The pages it re-armed
 * must come back in a later collect.  (Regression: they were lost; the
 * failed call's pages were never handed back nor un-armed.)
 */
static bool cell_replaced_part(struct ctx *c)
{
	size_t half = c->m->len / 2;
	char *b = (char *)c->m->addr + half;
	const struct pt_range *r;
	size_t nr;
	int n;

	STEP(ctx_open(c));
	page(c, 1)[0] = 1;
	page(c, 7)[0] = 7;
	CHECK(mmap(b, half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == b,
	      "mmap MAP_FIXED: %s", strerror(errno));
	n = pt_tracker_collect(c->t, PT_COLLECT_RESET, &r, &nr);
	printf("    collect over the replaced part: %d (%s)\n", n, n < 0 ? strerror(-n) : "ok");
	if (n >= 0) {
		/* A backend that copes must have reported them now. */
		STEP(t_collect_map(c->t, 0, c->map, c->npages, c->why, c->why_len) >= 0);
		return true;
	}
	CHECK(!munmap(b, half), "munmap: %s", strerror(errno));
	n = t_collect_map(c->t, PT_COLLECT_RESET, c->map, c->npages, c->why, c->why_len);
	CHECK(n >= 0, "collect after the stranger went: %s", c->why);
	CHECK(c->map[1] && c->map[7], "pages written before the failed collect were lost");
	/* Back to exact reports afterwards. */
	page(c, 3)[0] = 3;
	n = t_collect_map(c->t, PT_COLLECT_RESET, c->map, c->npages, c->why, c->why_len);
	CHECK(n == 1 && c->map[3], "after recovery: %d pages", n);
	/* t_mem_unmap unmaps the whole mapping; the hole is fine. */
	return true;
}

/* ---- transparent huge pages --------------------------------------------------- */

static long anon_huge_kb(void *addr)
{
	char line[256], want[32];
	bool in = false;
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)addr);
	while (fgets(line, sizeof(line), f)) {
		if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' '))
			in = !strncmp(line, want, strlen(want));
		else if (in && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/* Huge pages populated before tracking starts: every write is reported;
 * the kernel splits a huge page on its first tracked write, so extra pages
 * are allowed but counted. */
static bool cell_thp(struct ctx *c)
{
	size_t ps = t_page_size();
	uint64_t rnd = 0x9e3779b97f4a7c15ull, want[64];
	long kb;

	memset(c->m->addr, 0x42, c->m->len);
	kb = anon_huge_kb(c->m->addr);
	printf("    %ld kB in huge pages before tracking\n", kb);
	STEP(ctx_open(c));
	for (int round = 0; round < 4; round++) {
		size_t n = 0;

		for (int i = 0; i < 40; i++) {
			uint64_t p = t_rnd_next(&rnd) % c->npages;
			bool dup = false;

			for (size_t j = 0; j < n; j++)
				dup |= want[j] == p;
			page(c, p)[t_rnd_next(&rnd) % ps] = (uint8_t)round;
			if (!dup)
				want[n++] = p;
		}
		STEP(sync_shadow(c, "random writes on huge pages"));
		STEP(reported(c, "random writes on huge pages", want, n));
	}
	printf("    %ld kB in huge pages after, %llu false positives\n", anon_huge_kb(c->m->addr),
	       (unsigned long long)c->false_positives);
	return true;
}

/* ---- the table ------------------------------------------------------------------ */

#define K(k) (1u << (k))

static const struct {
	const char *name;
	bool (*fn)(struct ctx *c);
	unsigned int kinds;
	enum pt_backend only;		/* AUTO: every backend */
} cells[] = {
	{ "read(2) from a pipe", cell_read_pipe, K(T_MEM_ANON) | K(T_MEM_MEMFD) | K(T_MEM_SHM) | K(T_MEM_FILE) | K(T_MEM_THP) },
	{ "read(2) from a file", cell_read_file, K(T_MEM_ANON) | K(T_MEM_MEMFD) | K(T_MEM_FILE) },
	{ "MADV_DONTNEED", cell_dontneed, K(T_MEM_ANON) | K(T_MEM_MEMFD) | K(T_MEM_SHM) | K(T_MEM_FILE) | K(T_MEM_THP) },
	{ "MADV_DONTNEED, empty-PTE scan", cell_dontneed_empty_scan,
	  K(T_MEM_ANON) | K(T_MEM_MEMFD) | K(T_MEM_SHM) | K(T_MEM_FILE) | K(T_MEM_THP), PT_BACKEND_UFFD_WP },
	{ "punch a written page", cell_punch_written, K(T_MEM_MEMFD) | K(T_MEM_SHM) | K(T_MEM_FILE) },
	{ "punch a clean page", cell_punch_clean, K(T_MEM_MEMFD) | K(T_MEM_SHM) | K(T_MEM_FILE) },
	{ "fork", cell_fork, K(T_MEM_ANON) | K(T_MEM_MEMFD) },
	{ "close before munmap", cell_close_before_munmap, K(T_MEM_ANON) | K(T_MEM_MEMFD) },
	{ "close after munmap", cell_close_after_munmap, K(T_MEM_ANON) | K(T_MEM_MEMFD) },
	{ "part of the range replaced", cell_replaced_part, K(T_MEM_ANON) | K(T_MEM_MEMFD),
	  PT_BACKEND_UFFD_WP },
	{ "huge pages populated", cell_thp, K(T_MEM_THP) },
};

int main(void)
{
	for (size_t ci = 0; ci < ARRAY_LEN(cells); ci++) {
		for (size_t bi = 0; bi < ARRAY_LEN(t_all_backends); bi++) {
			enum pt_backend b = t_all_backends[bi];

			for (int k = 0; k < T_MEM_NKINDS; k++) {
				char name[80], why[512] = "";
				struct ctx c = { .b = b, .why = why, .why_len = sizeof(why) };
				struct t_mem m;
				bool ok;
				int r;

				if (!(cells[ci].kinds & K(k)) || (cells[ci].only && cells[ci].only != b))
					continue;
				snprintf(name, sizeof(name), "%s: %s x %s", cells[ci].name,
					 pt_backend_name(b), t_mem_kind_names[k]);
				if (!t_backend_usable(b, why, sizeof(why))) {
					t_cell_report(name, T_SKIP, why);
					continue;
				}
				r = t_mem_map(&m, k, REGION_LEN, why, sizeof(why));
				if (r) {
					t_cell_report(name, r, why);
					continue;
				}
				why[0] = '\0';
				c.m = &m;
				c.npages = m.len / t_page_size();
				c.shadow = malloc(m.len);
				c.map = calloc(c.npages, 1);
				ok = c.shadow && c.map && cells[ci].fn(&c);
				pt_tracker_close(c.t);
				if (ok && c.false_positives)
					printf("    %llu false positives\n", (unsigned long long)c.false_positives);
				t_cell_report(name, ok ? T_PASS : T_FAIL, why);
				free(c.shadow);
				free(c.map);
				t_mem_unmap(&m);
			}
		}
	}
	return t_exit();
}
