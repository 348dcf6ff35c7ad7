/* mprotect-chain: faults outside tracked ranges reach the program's own SIGSEGV handler, or kill it as before. */
#include <setjmp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "harness.h"

#define NPAGES 8

static sigjmp_buf jump;
static volatile sig_atomic_t handler_calls, handler_code;
static void *volatile handler_addr;
static volatile sig_atomic_t mask_had_segv, mask_had_usr2, mask_had_usr1;

static void program_handler(int sig, siginfo_t *si, void *uc)
{
	sigset_t cur;

	(void)sig;
	(void)uc;
	handler_calls++;
	handler_addr = si->si_addr;
	handler_code = si->si_code;
	/* The mask the kernel would give this handler: its sa_mask plus SIGSEGV. */
	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	mask_had_segv = sigismember(&cur, SIGSEGV);
	mask_had_usr2 = sigismember(&cur, SIGUSR2);
	mask_had_usr1 = sigismember(&cur, SIGUSR1);
	siglongjmp(jump, 1);
}

/* Run fn; true if it faulted into program_handler. */
static bool faults(void (*fn)(void *), void *arg)
{
	int calls = handler_calls;

	if (sigsetjmp(jump, 1) == 0)
		fn(arg);
	return handler_calls == calls + 1;
}

static void do_write(void *p)
{
	*(volatile char *)p = 1;
}

static void do_read(void *p)
{
	(void)*(volatile char *)p;
}

static void do_raise(void *p)
{
	(void)p;
	raise(SIGSEGV);
}

/* A child that writes into a read-only page, with or without a tracker open. */
static int child_status(bool with_tracker)
{
	pid_t pid = fork();
	int status = -1;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };
		size_t ps = t_page_size();
		char *tracked = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		char *ro = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct pt_tracker *t = NULL;
		const struct pt_range *r;
		size_t nr;

		setrlimit(RLIMIT_CORE, &no_core);
		if (tracked == MAP_FAILED || ro == MAP_FAILED)
			_exit(10);
		if (with_tracker) {
			if (t_tracker_open_on(&t, PT_BACKEND_MPROTECT, tracked, NPAGES * ps))
				_exit(11);
			tracked[3 * ps] = 1;
			if (pt_tracker_collect(t, 0, &r, &nr) != 1 || r[0].first != 3)
				_exit(12);
		}
		ro[0] = 1;
		_exit(13);	/* survived a write to a read-only page */
	}
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return status;
}

static bool default_action(char *why, size_t why_len)
{
	struct sigaction cur;
	int control, tracked;

	sigaction(SIGSEGV, NULL, &cur);
	control = child_status(false);
	tracked = child_status(true);
	if (WIFEXITED(tracked) && WEXITSTATUS(tracked) >= 10 && WEXITSTATUS(tracked) <= 13) {
		snprintf(why, why_len, "child exited %d (%s)", WEXITSTATUS(tracked),
			 WEXITSTATUS(tracked) == 13 ? "survived the fault" : "setup failed");
		return false;
	}
	/* It dies exactly as it would have without the tracker. */
	CHECK(tracked == control, "status %#x with a tracker, %#x without", tracked, control);
	/* With nothing but SIG_DFL before us (no sanitizer), that is SIGSEGV. */
	if (!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_DFL)
		CHECK(WIFSIGNALED(tracked) && WTERMSIG(tracked) == SIGSEGV,
		      "status %#x, want killed by SIGSEGV", tracked);
	else
		printf("    a SIGSEGV handler was installed before ours (sanitizer): child status %#x\n",
		       tracked);
	return true;
}

static bool program_handler_chained(char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct sigaction sa = { .sa_sigaction = program_handler, .sa_flags = SA_SIGINFO };
	struct pt_tracker *t;
	char *tracked, *ro, *none, *gone;
	uint8_t map[NPAGES];
	sigset_t block_usr1, saved;
	int ret, n, calls;

	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0, "sigaction: %s", strerror(errno));
	tracked = mmap(NULL, NPAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ro = mmap(NULL, ps, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	none = mmap(NULL, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Never mapped: below vm.mmap_min_addr.  (An munmap'd page would do
	 * only until the next mmap, a sanitizer's included, reuses it.) */
	gone = (char *)(uintptr_t)ps;
	CHECK(tracked != MAP_FAILED && ro != MAP_FAILED && none != MAP_FAILED, "mmap: %s",
	      strerror(errno));

	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, tracked, NPAGES * ps);
	CHECK(ret == 0, "open: %s", strerror(-ret));

	/* A write to a read-only page nobody tracks: SEGV_ACCERR, ours to pass on. */
	CHECK(faults(do_write, ro), "write to a read-only page did not reach the program");
	CHECK(handler_addr == ro && handler_code == SEGV_ACCERR, "addr %p code %d",
	      handler_addr, (int)handler_code);
	CHECK(mask_had_segv && mask_had_usr2, "program handler ran with the wrong mask");
	/* The mask at the fault carries over: block SIGUSR1 around the fault. */
	sigemptyset(&block_usr1);
	sigaddset(&block_usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &block_usr1, &saved);
	CHECK(faults(do_write, ro), "second write to a read-only page");
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	CHECK(mask_had_usr1, "mask at the fault was not kept");
	CHECK(faults(do_read, none), "read of a PROT_NONE page did not reach the program");
	CHECK(handler_addr == none, "addr %p", handler_addr);
	CHECK(faults(do_write, gone), "write to an unmapped page did not reach the program");
	CHECK(handler_addr == gone && handler_code == SEGV_MAPERR, "addr %p code %d",
	      handler_addr, (int)handler_code);
	CHECK(faults(do_raise, NULL), "raise(SIGSEGV) did not reach the program");
	CHECK(handler_code == SI_TKILL || handler_code == SI_USER, "code %d", (int)handler_code);

	/* Tracked writes never reach it, and tracking still works. */
	calls = handler_calls;
	tracked[1 * ps] = 1;
	tracked[5 * ps + 17] = 2;
	CHECK(handler_calls == calls, "a tracked write reached the program's handler");
	n = t_collect_map(t, PT_COLLECT_RESET, map, NPAGES, why, why_len);
	CHECK(n == 2 && map[1] && map[5], "%d pages reported, want 1 and 5", n);
	/* The untracked pages were not changed by the attempts. */
	CHECK(ro[0] == 0, "read-only page changed");

	/* After close the range is plain writable memory; faults still chain. */
	pt_tracker_close(t);
	tracked[2 * ps] = 3;
	CHECK(faults(do_write, ro), "after close: write to a read-only page");
	CHECK(handler_addr == ro, "addr %p", handler_addr);

	munmap(tracked, NPAGES * ps);
	munmap(ro, ps);
	munmap(none, ps);
	return true;
}

int main(void)
{
	char why[256] = "";

	if (!t_backend_usable(PT_BACKEND_MPROTECT, why, sizeof(why))) {
		printf("skip: mprotect backend unavailable: %s\n", why);
		return T_SKIP;
	}
	/* First, while SIGSEGV still has the disposition the program started with. */
	why[0] = '\0';
	t_cell_report("default action kills the program", default_action(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	why[0] = '\0';
	t_cell_report("program handler gets untracked faults",
		      program_handler_chained(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	return t_exit();
}
