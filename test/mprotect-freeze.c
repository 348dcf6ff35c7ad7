/* mprotect-freeze: a write into a frozen range waits in the fault handler until the thaw, then lands. */
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"
#include "internal.h"

#define NPAGES 16
#define NWRITERS 3

struct writer {
	pthread_t thread;
	char *page;
	uint64_t value;
	atomic_int started, done;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	atomic_store(&w->started, 1);
	/* Faults and waits while the range is frozen. */
	atomic_store_explicit((_Atomic uint64_t *)(w->page + 64), w->value, memory_order_relaxed);
	atomic_store(&w->done, 1);
	return NULL;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static uint64_t load64(const char *p)
{
	return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_relaxed);
}

static bool freeze_blocks_writers(struct t_mem *m, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct writer w[NWRITERS];
	int ret;

	(void)why;
	(void)why_len;
	memset(w, 0, sizeof(w));
	for (int i = 0; i < NPAGES; i++)
		m->addr[i * ps] = (char)i;
	ret = pt_write_freeze((uintptr_t)m->addr, m->len);
	CHECK(ret == 0, "freeze: %s", strerror(-ret));
	/* Reading a frozen range never waits. */
	for (int i = 0; i < NPAGES; i++)
		CHECK(m->addr[i * ps] == (char)i, "page %d reads %d", i, m->addr[i * ps]);
	for (int i = 0; i < NWRITERS; i++) {
		w[i].page = m->addr + (size_t)(i * 5) * ps;
		w[i].value = 0x1111111111111111ull * (uint64_t)(i + 1);
		CHECK(pthread_create(&w[i].thread, NULL, writer_main, &w[i]) == 0, "pthread_create");
	}
	for (int i = 0; i < NWRITERS; i++)
		while (!atomic_load(&w[i].started))
			sleep_ms(1);
	sleep_ms(200);
	for (int i = 0; i < NWRITERS; i++) {
		CHECK(!atomic_load(&w[i].done), "writer %d finished while frozen", i);
		CHECK(load64(w[i].page + 64) == 0, "writer %d's write landed while frozen", i);
	}
	pt_write_thaw((uintptr_t)m->addr, m->len);
	for (int i = 0; i < NWRITERS; i++) {
		pthread_join(w[i].thread, NULL);
		CHECK(atomic_load(&w[i].done), "writer %d did not finish", i);
		CHECK(load64(w[i].page + 64) == w[i].value, "writer %d's write is missing", i);
	}
	/* Thawed: plain writable memory again. */
	m->addr[3 * ps + 1] = 7;
	CHECK(m->addr[3 * ps + 1] == 7, "write after thaw");
	return true;
}

/* Freeze and thaw many times while writers hammer the range: nothing lost. */
struct hammer {
	pthread_t thread;
	char *base;
	int index;
	atomic_int *stop;
	uint64_t last;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	size_t ps = t_page_size();
	uint64_t n = 0;

	while (!atomic_load_explicit(h->stop, memory_order_relaxed)) {
		n++;
		atomic_store_explicit((_Atomic uint64_t *)(h->base + (n % NPAGES) * ps + h->index * 8),
				      n, memory_order_relaxed);
	}
	h->last = n;
	return NULL;
}

static bool freeze_cycles(struct t_mem *m, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct hammer h[NWRITERS];
	atomic_int stop = 0;
	int cycles = 0, ret;
	struct timespec t0, t1;

	(void)why;
	(void)why_len;
	memset(m->addr, 0, m->len);
	for (int i = 0; i < NWRITERS; i++) {
		h[i] = (struct hammer){ .base = m->addr, .index = i, .stop = &stop };
		CHECK(pthread_create(&h[i].thread, NULL, hammer_main, &h[i]) == 0, "pthread_create");
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		ret = pt_write_freeze((uintptr_t)m->addr, m->len);
		if (ret)
			break;
		sleep_ms(1);
		pt_write_thaw((uintptr_t)m->addr, m->len);
		cycles++;
		clock_gettime(CLOCK_MONOTONIC, &t1);
	} while (t1.tv_sec - t0.tv_sec < 2);
	atomic_store(&stop, 1);
	for (int i = 0; i < NWRITERS; i++)
		pthread_join(h[i].thread, NULL);
	CHECK(ret == 0, "freeze in cycle %d: %s", cycles, strerror(-ret));
	/* Each writer's last value is where it wrote it last. */
	for (int i = 0; i < NWRITERS; i++) {
		uint64_t n = h[i].last;

		CHECK(n > 0, "writer %d never wrote", i);
		CHECK(load64(m->addr + (n % NPAGES) * ps + i * 8) == n,
		      "writer %d: last write %llu not in memory", i, (unsigned long long)n);
	}
	printf("    %d freeze/thaw cycles\n", cycles);
	return true;
}

static bool freeze_args(struct t_mem *m, char *why, size_t why_len)
{
	size_t ps = t_page_size();
	struct pt_tracker *t;
	int ret;

	CHECK(pt_write_freeze((uintptr_t)m->addr + 1, ps) == -EINVAL, "misaligned start");
	CHECK(pt_write_freeze((uintptr_t)m->addr, 0) == -EINVAL, "zero length");
	CHECK(pt_write_freeze((uintptr_t)m->addr, ps + 3) == -EINVAL, "misaligned length");
	CHECK(pt_write_freeze(UINTPTR_MAX & ~(uintptr_t)(ps - 1), 2 * ps) == -EINVAL, "overflow");
	/* An mprotect tracker and a freeze never share pages. */
	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, m->addr, 4 * ps);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	CHECK(pt_write_freeze((uintptr_t)m->addr + 2 * ps, 4 * ps) == -EEXIST, "overlap with a tracker");
	ret = pt_write_freeze((uintptr_t)m->addr + 4 * ps, 4 * ps);
	CHECK(ret == 0, "adjacent freeze: %s", strerror(-ret));
	CHECK(pt_write_freeze((uintptr_t)m->addr + 6 * ps, ps) == -EEXIST, "freeze twice");
	pt_write_thaw((uintptr_t)m->addr + 4 * ps, 4 * ps);
	/* A thaw of a range that is not frozen changes nothing. */
	pt_write_thaw((uintptr_t)m->addr + 4 * ps, 4 * ps);
	m->addr[5 * ps] = 1;
	m->addr[1 * ps] = 1;
	{
		uint8_t map[4];
		int n = t_collect_map(t, 0, map, 4, why, why_len);

		CHECK(n == 1 && map[1], "tracker beside a freeze reports %d pages", n);
	}
	pt_tracker_close(t);
	return true;
}

/* A thread waiting for the thaw still takes signals; its write lands after. */
static atomic_int usr1_seen;

static void on_usr1(int sig)
{
	(void)sig;
	atomic_store(&usr1_seen, 1);
}

static bool freeze_signal_waiter(struct t_mem *m, char *why, size_t why_len)
{
	struct sigaction sa = { .sa_handler = on_usr1 }, old;
	struct writer w;
	int ret;

	(void)why;
	(void)why_len;
	memset(&w, 0, sizeof(w));
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, &old) == 0, "sigaction: %s", strerror(errno));
	atomic_store(&usr1_seen, 0);
	ret = pt_write_freeze((uintptr_t)m->addr, m->len);
	CHECK(ret == 0, "freeze: %s", strerror(-ret));
	w.page = m->addr + 2 * t_page_size();
	w.value = 0xabcdef;
	if (pthread_create(&w.thread, NULL, writer_main, &w)) {
		pt_write_thaw((uintptr_t)m->addr, m->len);
		CHECK(false, "pthread_create");
	}
	while (!atomic_load(&w.started))
		sleep_ms(1);
	sleep_ms(50);
	pthread_kill(w.thread, SIGUSR1);
	for (int i = 0; i < 2000 && !atomic_load(&usr1_seen); i++)
		sleep_ms(1);
	ret = atomic_load(&usr1_seen) && !atomic_load(&w.done);
	pt_write_thaw((uintptr_t)m->addr, m->len);
	pthread_join(w.thread, NULL);
	sigaction(SIGUSR1, &old, NULL);
	CHECK(ret, "the waiting writer did not take SIGUSR1 while frozen (seen %d, done %d)",
	      atomic_load(&usr1_seen), atomic_load(&w.done));
	CHECK(load64(w.page + 64) == w.value, "the write did not land after the thaw");
	return true;
}

/* The freezing thread writing into its own frozen range would wait for its
 * own thaw: it must fail (the fault is passed on), never hang. */
static bool freeze_self_write(struct t_mem *m, char *why, size_t why_len)
{
	int status;
	pid_t pid = fork();

	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		alarm(10);
		if (pt_write_freeze((uintptr_t)m->addr, m->len))
			_exit(3);
		m->addr[0] = 1;
		_exit(4);
	}
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
		snprintf(why, why_len, "the freezing thread hung on its own write");
		return false;
	}
	CHECK(!WIFEXITED(status) || (WEXITSTATUS(status) != 3 && WEXITSTATUS(status) != 4),
	      "child exited %d", WEXITSTATUS(status));
	printf("    child status %#x\n", status);
	return true;
}

int main(void)
{
	static const struct {
		const char *name;
		bool (*fn)(struct t_mem *, char *, size_t);
	} cases[] = {
		{ "writers wait for the thaw", freeze_blocks_writers },
		{ "freeze/thaw cycles under writers", freeze_cycles },
		{ "arguments and overlaps", freeze_args },
		{ "the freezer's own write fails", freeze_self_write },
		{ "a waiting writer takes signals", freeze_signal_waiter },
	};
	static const enum t_mem_kind kinds[] = { T_MEM_ANON, T_MEM_MEMFD };

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
			char name[96], why[256] = "";
			struct t_mem m;
			int r;

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
