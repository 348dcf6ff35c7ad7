/* SPDX-License-Identifier: MIT */
/*
 * nettest.h - what the network layer's tests share: a temporary directory
 * removed at exit, nats-server processes on 127.0.0.1 ports they pick
 * (JetStream storage in the temporary directory), child processes killed
 * (by process group) at exit, on a failure and on SIGINT/SIGTERM, and a
 * skip (77) with the reason when nats-server is not installed.
 *
 * Each test: exit 0 pass, 1 fail, 77 skip.  Every wait is bounded.
 */
#ifndef PT_NET_TEST_H
#define PT_NET_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pagetrack.h"
#include "pagetrack-net.h"

#define T_FAIL 1
#define T_SKIP 77

#define DIE(...) do {								\
	fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);				\
	fprintf(stderr, __VA_ARGS__);						\
	fprintf(stderr, "\n");							\
	exit(T_FAIL);								\
} while (0)

static char nt_root[64];		/* the test's temporary directory */
static pid_t nt_pids[32];		/* process groups to kill at exit */

static inline uint64_t nt_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void nt_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static inline uint64_t nt_rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static inline void nt_forget(pid_t pid)
{
	for (int i = 0; i < 32; i++)
		if (nt_pids[i] == pid)
			nt_pids[i] = 0;
}

/* Kill a child's process group and reap it. */
static inline void nt_kill(pid_t pid, int sig)
{
	if (pid <= 0)
		return;
	kill(-pid, sig);
	kill(pid, sig);
	if (sig == SIGKILL || sig == SIGTERM || sig == SIGINT) {
		for (int i = 0; i < 1000; i++) {	/* 10 s, then SIGKILL */
			if (waitpid(pid, NULL, WNOHANG) == pid) {
				nt_forget(pid);
				return;
			}
			nt_sleep_ms(10);
		}
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		nt_forget(pid);
	}
}

static inline void nt_cleanup(void)
{
	for (int i = 0; i < 32; i++)
		if (nt_pids[i] > 0) {
			kill(-nt_pids[i], SIGKILL);
			waitpid(nt_pids[i], NULL, 0);
			nt_pids[i] = 0;
		}
	if (nt_root[0]) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", nt_root);
		if (system(cmd))
			fprintf(stderr, "could not remove %s\n", nt_root);
		nt_root[0] = 0;
	}
}

static inline void nt_on_signal(int sig)
{
	for (int i = 0; i < 32; i++)
		if (nt_pids[i] > 0)
			kill(-nt_pids[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

/*
 * Make the temporary directory, arrange the cleanup, and skip when no
 * nats-server is installed.  Prints the test's one-line description.
 */
static inline void nt_init(const char *what)
{
	printf("%s\n", what);
	fflush(stdout);
	if (system("command -v nats-server >/dev/null 2>&1")) {
		printf("skip: nats-server is not installed (Debian package nats-server)\n");
		exit(T_SKIP);
	}
	snprintf(nt_root, sizeof(nt_root), "/tmp/pt-net-XXXXXX");
	if (!mkdtemp(nt_root))
		DIE("mkdtemp: %s", strerror(errno));
	atexit(nt_cleanup);
	signal(SIGINT, nt_on_signal);
	signal(SIGTERM, nt_on_signal);
	signal(SIGHUP, nt_on_signal);
	signal(SIGPIPE, SIG_IGN);
}

/* A path under the temporary directory (static buffers, 8 in rotation). */
static inline const char *nt_path(const char *fmt, ...)
{
	static char bufs[8][256];
	static int next;
	char *b = bufs[next++ % 8];
	int n = snprintf(b, 256, "%s/", nt_root);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b + n, 256 - n, fmt, ap);
	va_end(ap);
	return b;
}

/* Put the child pid in a process group of its own, killed at exit. */
static inline pid_t nt_adopt(pid_t pid)
{
	setpgid(pid, pid);
	for (int i = 0; i < 32; i++)
		if (!nt_pids[i]) {
			nt_pids[i] = pid;
			break;
		}
	return pid;
}

/* The load average line of /proc/loadavg, "?" when it cannot be read. */
static inline void nt_loadavg(char *buf, size_t len)
{
	FILE *fp = fopen("/proc/loadavg", "r");

	if (!fp || !fgets(buf, (int)len, fp))
		snprintf(buf, len, "?");
	if (fp)
		fclose(fp);
	buf[strcspn(buf, "\n")] = 0;
}

/* Start argv as a child in a process group of its own, output to log. */
static inline pid_t nt_spawn(char *const argv[], const char *log)
{
	pid_t pid = fork();

	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);

		setpgid(0, 0);
		/* Killed with the test whatever ends it: a sanitizer's abort or
		 * SIGKILL runs none of the test's cleanup, and a nats-server
		 * (or a command) must never outlive it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return nt_adopt(pid);
}

/* ---- nats-server ---------------------------------------------------- */

struct natsd {
	pid_t pid;
	int port;
	int cluster_port;	/* 0: no cluster */
	char store[256];
	char conf[256];		/* extra configuration file, "" none */
	char log[256];
	char url[64];
};

static inline int nt_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    getsockname(fd, (struct sockaddr *)&a, &len))
		DIE("picking a port: %s", strerror(errno));
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static inline bool nt_port_open(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && !connect(fd, (struct sockaddr *)&a, sizeof(a));
	if (fd >= 0)
		close(fd);
	return ok;
}

/* (Re)start d on its port (picked the first time), waiting until it listens. */
static inline void natsd_run(struct natsd *d, const char *routes)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		char port[16], cport[32];
		char *argv[20];
		int n = 0;

		if (!d->port)
			d->port = nt_free_port();
		snprintf(port, sizeof(port), "%d", d->port);
		argv[n++] = "nats-server";
		argv[n++] = "-a";
		argv[n++] = "127.0.0.1";
		argv[n++] = "-p";
		argv[n++] = port;
		argv[n++] = "-js";
		argv[n++] = "-sd";
		argv[n++] = d->store;
		if (d->conf[0]) {
			argv[n++] = "-c";
			argv[n++] = d->conf;
		}
		if (d->cluster_port) {
			snprintf(cport, sizeof(cport), "nats://127.0.0.1:%d", d->cluster_port);
			argv[n++] = "--cluster_name";
			argv[n++] = "pt";
			argv[n++] = "--cluster";
			argv[n++] = cport;
			argv[n++] = "--routes";
			argv[n++] = (char *)routes;
			argv[n++] = "-n";
			argv[n++] = port;	/* server name: its port */
		}
		argv[n] = NULL;
		d->pid = nt_spawn(argv, d->log);
		for (int i = 0; i < 1000; i++) {	/* 10 s */
			if (nt_port_open(d->port)) {
				snprintf(d->url, sizeof(d->url), "nats://127.0.0.1:%d", d->port);
				return;
			}
			if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
				nt_forget(d->pid);
				d->pid = 0;
				break;
			}
			nt_sleep_ms(10);
		}
		if (d->pid)
			nt_kill(d->pid, SIGKILL);
		d->pid = 0;
		if (!d->cluster_port)
			d->port = 0;	/* taken meanwhile: another */
	}
	DIE("nats-server did not start (log: %s)", d->log);
}

/* A single server with JetStream in the temporary directory; conf: extra
 * configuration text (NULL: none). */
static inline void natsd_start(struct natsd *d, const char *name, const char *conf)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->store, sizeof(d->store), "%s", nt_path("%s-store", name));
	snprintf(d->log, sizeof(d->log), "%s", nt_path("%s.log", name));
	if (conf) {
		FILE *fp;

		snprintf(d->conf, sizeof(d->conf), "%s", nt_path("%s.conf", name));
		fp = fopen(d->conf, "w");
		if (!fp || fputs(conf, fp) < 0 || fclose(fp))
			DIE("writing %s", d->conf);
	}
	natsd_run(d, NULL);
}

static inline void natsd_stop(struct natsd *d)
{
	nt_kill(d->pid, SIGKILL);
	d->pid = 0;
}

/* ---- region hashes -------------------------------------------------- */

static inline uint64_t nt_hash(const void *p, size_t len)
{
	/* FNV-1a over 64-bit words: no dependency beyond libc. */
	const unsigned char *b = p;
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i += 8) {
		uint64_t w;

		memcpy(&w, b + i, 8);
		h = (h ^ w) * 1099511628211ull;
	}
	return h;
}

/*
 * A replica on a follower's directory, refreshed in a thread: its copy must
 * equal the writer's memory at every epoch it shows (hashes[] filled by the
 * writer up to *hashed).  A follower killed and restarted comes back from a
 * crash: the replica may be told -ESTALE and is opened again.
 */
#include <pthread.h>

struct nt_checker {
	const char *dir;
	const uint64_t *hashes;
	const uint64_t *hashed;		/* atomic */
	const int *stop;		/* atomic: stop once it shows *hashed */
	uint64_t deadline_ms;
	/* results */
	uint64_t checks, last, reopens;
	int err;
	char msg[256];
	pthread_t thread;
};

static inline void *nt_checker_run(void *arg)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct nt_checker *c = arg;
	struct pt_replica *r = NULL;
	uint64_t start = nt_ms();

	while (nt_ms() - start < c->deadline_ms) {
		int64_t e;

		if (!r && pt_replica_open(&r, c->dir, &ro)) {
			r = NULL;
			nt_sleep_ms(5);
			continue;
		}
		e = pt_replica_refresh(r, 20);
		if (e == -ESTALE || e == -ENOTRECOVERABLE) {
			pt_replica_close(r);
			r = NULL;
			c->reopens++;
			continue;
		}
		if (e < 0) {
			c->err = (int)e;
			snprintf(c->msg, sizeof(c->msg), "refresh: %s", pt_strerror((int)e));
			break;
		}
		if ((uint64_t)e != c->last && e > 0) {
			uint64_t h = nt_hash(pt_replica_base(r), pt_replica_size(r)), t = nt_ms();

			/* The writer hashes its memory after pt_region_sync()
			 * returns: on a loaded machine the epoch can cross
			 * publisher, server, follower and replica before that. */
			while ((uint64_t)e > __atomic_load_n(c->hashed, __ATOMIC_ACQUIRE) &&
			       nt_ms() - t < 2000)
				nt_sleep_ms(1);
			if ((uint64_t)e > __atomic_load_n(c->hashed, __ATOMIC_ACQUIRE) ||
			    h != c->hashes[e]) {
				c->err = -EBADMSG;
				snprintf(c->msg, sizeof(c->msg), "replica at epoch %lld: hash %016llx, "
					 "the writer's %016llx", (long long)e, (unsigned long long)h,
					 (unsigned long long)c->hashes[e]);
				break;
			}
			c->checks++;
			c->last = (uint64_t)e;
		}
		if (__atomic_load_n(c->stop, __ATOMIC_ACQUIRE) &&
		    c->last >= __atomic_load_n(c->hashed, __ATOMIC_ACQUIRE))
			break;
	}
	if (!c->err && c->last < __atomic_load_n(c->hashed, __ATOMIC_ACQUIRE)) {
		c->err = -ETIMEDOUT;
		snprintf(c->msg, sizeof(c->msg), "the replica on %s stopped at epoch %llu of %llu",
			 c->dir, (unsigned long long)c->last,
			 (unsigned long long)__atomic_load_n(c->hashed, __ATOMIC_ACQUIRE));
	}
	pt_replica_close(r);
	return NULL;
}

/* The pagetrack command of this build: $(O)/pagetrack, two levels up. */
static inline const char *nt_tool(void)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
	char *slash;

	if (n <= 0)
		DIE("readlink /proc/self/exe");
	path[n] = 0;
	for (int i = 0; i < 3; i++) {
		slash = strrchr(path, '/');
		if (!slash)
			DIE("where is the build directory?");
		*slash = 0;
	}
	strcat(path, "/pagetrack");
	if (access(path, X_OK))
		DIE("no %s", path);
	return path;
}

#endif /* PT_NET_TEST_H */
