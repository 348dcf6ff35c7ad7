/* mprotect-fork: a child forked while ranges are tracked or frozen writes freely; the parent's tracking stays right. */
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "internal.h"

#define NPAGES 8

/* Wait for the child; it gets a few seconds before it counts as hung. */
static bool child_ok(pid_t pid, char *why, size_t why_len)
{
	int status;

	if (waitpid(pid, &status, 0) != pid) {
		snprintf(why, why_len, "waitpid: %s", strerror(errno));
		return false;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return true;
	if (WIFSIGNALED(status))
		snprintf(why, why_len, "child killed by signal %d%s", WTERMSIG(status),
			 WTERMSIG(status) == SIGALRM ? " (hung)" : "");
	else
		snprintf(why, why_len, "child exited %d", WEXITSTATUS(status));
	return false;
}

static bool fork_tracked(struct t_mem *m, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct pt_tracker *t;
	uint8_t map[NPAGES];
	pid_t pid;
	int ret, n;

	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, m->addr, m->len);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	m->addr[2 * ps] = 1;
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		struct pt_tracker *t2;
		const struct pt_range *r;
		size_t nr;

		alarm(10);
		/* Every page, the parent's dirty one included: no crash, no hang. */
		for (int p = 0; p < NPAGES; p++)
			m->addr[p * ps + 9] = 2;
		/* The parent's tracker is not the child's. */
		if (pt_tracker_collect(t, 0, &r, &nr) != -ECHILD)
			_exit(3);
		/* The child may track the same range itself. */
		if (t_tracker_open_on(&t2, PT_BACKEND_MPROTECT, m->addr, m->len))
			_exit(4);
		m->addr[4 * ps] = 2;
		if (pt_tracker_collect(t2, PT_COLLECT_RESET, &r, &nr) != 1 || r[0].first != 4)
			_exit(5);
		pt_tracker_close(t2);
		pt_tracker_close(t);
		m->addr[5 * ps] = 2;
		_exit(0);
	}
	m->addr[3 * ps] = 1;
	CHECK(child_ok(pid, why, why_len), "child failed");
	/* The parent's view: its own writes, before and after the fork.  The
	 * child's writes to shared memory went through the child's page
	 * tables and are not seen (as with every backend). */
	n = t_collect_map(t, PT_COLLECT_RESET, map, NPAGES, why, why_len);
	CHECK(n == 2 && map[2] && map[3], "parent: %d pages reported, want 2 and 3", n);
	/* And the parent's range is still armed. */
	m->addr[6 * ps] = 1;
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 1 && map[6], "parent after fork: %d pages reported, want 6", n);
	pt_tracker_close(t);
	return true;
}

static bool fork_frozen(struct t_mem *m, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	pid_t pid;
	int ret;

	ret = pt_write_freeze((uintptr_t)m->addr, m->len);
	CHECK(ret == 0, "freeze: %s", strerror(-ret));
	pid = fork();
	if (pid == 0) {
		alarm(10);
		/* No thaw will ever come in the child: it must not wait for one. */
		for (int p = 0; p < NPAGES; p++)
			m->addr[p * ps + 11] = 3;
		_exit(0);
	}
	if (pid < 0) {
		pt_write_thaw((uintptr_t)m->addr, m->len);
		CHECK(pid >= 0, "fork: %s", strerror(errno));
	}
	ret = child_ok(pid, why, why_len);
	pt_write_thaw((uintptr_t)m->addr, m->len);
	CHECK(ret, "child failed");
	m->addr[11] = 4;
	return true;
}

int main(void)
{
	static const struct {
		const char *name;
		bool (*fn)(struct t_mem *, char *, size_t);
	} cases[] = {
		{ "fork while tracked", fork_tracked },
		{ "fork while frozen", fork_frozen },
	};
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD };
	char why[256] = "";

	if (!t_backend_usable(PT_BACKEND_MPROTECT, why, sizeof(why))) {
		printf("skip: mprotect backend unavailable: %s\n", why);
		return T_SKIP;
	}
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
			char name[96];
			struct t_mem m;
			int r;

			why[0] = '\0';
			snprintf(name, sizeof(name), "%s x %s", cases[c].name, t_mem_kind_names[kinds[k]]);
			r = t_mem_map(&m, kinds[k], NPAGES * t_page_size(), why, sizeof(why));
			if (r) {
				t_cell_report(name, r, why);
				continue;
			}
			t_cell_report(name, cases[c].fn(&m, why, sizeof(why)) ? T_PASS : T_FAIL, why);
			t_mem_unmap(&m);
		}
	}
	return t_exit();
}
