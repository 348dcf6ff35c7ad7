/* exchange-starve: idle and trickling clients, exhausted descriptors and planted port-file symlinks do not lock anyone out of exchange-engine and exchange-md. */
#include "harness.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "proto.h"

#define CAPACITY	256	/* the servers' default --max-clients */
#define IDLE_MS		"1000"
#define SERVED_WITHIN_NS 3000000000ull

static char dir[256], bindir[512];
static int engine_port, md_port;
static pid_t engine_pid, md_pid;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Start a server; nofile > 0 caps its descriptors (set in the child, before exec). */
static pid_t spawn(char *const argv[], rlim_t nofile)
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		/* Die with the test, even when a sanitizer aborts it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 1);
		if (nofile) {
			struct rlimit rl = { nofile, nofile };

			if (setrlimit(RLIMIT_NOFILE, &rl))
				_exit(126);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Stop a server; true if it exited 0 (a sanitizer report or a leak fails it). */
static bool stop(pid_t pid)
{
	int status;

	if (pid <= 0)
		return true;
	kill(pid, SIGTERM);
	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && !WEXITSTATUS(status);
}

/* The port a server wrote to path, waiting up to 5 s for it; -1 if none. */
static int read_port(const char *path)
{
	int port = -1;

	for (int i = 0; i < 200 && port < 0; i++) {
		FILE *f = fopen(path, "r");

		if (f) {
			if (fscanf(f, "%d", &port) != 1)
				port = -1;
			fclose(f);
		}
		if (port < 0)
			usleep(25000);
	}
	return port;
}

static int dial(int port, int timeout_ms)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* Receive one frame's header and body; its type, or -1 on close or timeout. */
static int recv_msg(int fd, void *buf, size_t cap)
{
	struct xp_hdr h;
	size_t got = 0;

	while (got < sizeof(h)) {
		ssize_t n = recv(fd, (char *)&h + got, sizeof(h) - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	if (h.len < sizeof(h) || h.len - sizeof(h) > cap)
		return -1;
	for (got = 0; got < h.len - sizeof(h);) {
		ssize_t n = recv(fd, (char *)buf + got, h.len - sizeof(h) - got, 0);

		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return h.type;
}

/*
 * A well-behaved client's one request: the engine's STATS, or md's TOP of
 * symbol 0.  True when answered; false when refused, closed or silent.
 */
static bool served(int port, bool md)
{
	struct { struct xp_hdr h; struct xp_sym_q q; } f = {
		{ md ? sizeof(f) : sizeof(f.h), XP_VERSION, md ? XP_T_TOP : XP_T_STATS, 0 }, { 0, 1 }
	};
	uint8_t buf[1024];
	int fd = dial(port, 300), t;

	if (fd < 0)
		return false;
	t = send(fd, &f, f.h.len, MSG_NOSIGNAL) == (ssize_t)f.h.len ? recv_msg(fd, buf, sizeof(buf)) : -1;
	close(fd);
	return t == (md ? XP_T_TOP_OK : XP_T_STATS_OK);
}

/* Keep trying as a well-behaved client would; ns until served, or 0 if not within the bound. */
static uint64_t served_within(int port, bool md, int *dribblers, int ndribblers)
{
	static const struct xp_hdr frame = { sizeof(struct xp_hdr) + sizeof(struct xp_new), XP_VERSION,
					     XP_T_NEW, 0 };
	uint64_t t0 = now_ns(), next_drip = t0;
	unsigned dripped = 0;

	for (int tries = 0; tries < 100 && now_ns() - t0 < SERVED_WITHIN_NS; tries++) {
		/* One byte of a frame every 0.5 s on each: never a whole frame. */
		if (now_ns() >= next_drip && dripped < sizeof(frame)) {
			for (int i = 0; i < ndribblers; i++)
				send(dribblers[i], (const char *)&frame + dripped, 1,
				     MSG_NOSIGNAL | MSG_DONTWAIT);
			dripped++;
			next_drip += 500000000ull;
		}
		if (served(port, md))
			return now_ns() - t0;
		usleep(100000);
	}
	return 0;
}

/* Fill every slot, half silent and half trickling; a newcomer must still be served. */
static bool crowd(int port, bool md, char *why, size_t why_len)
{
	int fds[CAPACITY], n = 0;
	uint64_t took;
	bool ok = false;

	while (n < CAPACITY) {
		fds[n] = dial(port, 1000);
		if (fds[n] < 0) {
			snprintf(why, why_len, "connection %d of %d failed: %s", n, CAPACITY,
				 strerror(errno));
			goto out;
		}
		n++;
	}
	/* Every slot is taken: the table is full before the newcomer comes. */
	usleep(200000);
	took = served_within(port, md, fds, CAPACITY / 2);
	if (!took) {
		snprintf(why, why_len, "a well-behaved client was not served within %.1f s while %d "
			 "silent and %d trickling connections held the slots", SERVED_WITHIN_NS / 1e9,
			 CAPACITY - CAPACITY / 2, CAPACITY / 2);
		goto out;
	}
	printf("    served after %.2f s (idle limit %s ms)\n", took / 1e9, IDLE_MS);
	ok = true;
out:
	while (n > 0)
		close(fds[--n]);
	return ok;
}

static bool engine_crowd(char *why, size_t why_len)
{
	return crowd(engine_port, false, why, why_len);
}

static bool md_crowd(char *why, size_t why_len)
{
	return crowd(md_port, true, why, why_len);
}

/* utime + stime of a process, in seconds; -1 if unreadable. */
static double cpu_seconds(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces: fields count from the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/*
 * An engine allowed 64 descriptors, flooded with 200 idle connections: it
 * must not spin on accept() (CPU well under the wall time), and once the
 * idle ones are past the limit a real client is served.
 */
static bool descriptors_exhausted(char *why, size_t why_len)
{
	char eng[600], port_file[600];
	int fds[200], n = 0, port;
	double cpu0, cpu1;
	uint64_t t0, t1, took;
	pid_t pid;
	bool ok = false;

	snprintf(eng, sizeof(eng), "%s/exchange-engine", bindir);
	snprintf(port_file, sizeof(port_file), "%s/port-nofile", dir);
	pid = spawn((char *[]){ eng, "--mode", "none", "--ack", "applied", "--port-file", port_file,
				"--idle-ms", IDLE_MS, NULL }, 64);
	port = read_port(port_file);
	if (port < 0) {
		snprintf(why, why_len, "the engine did not start under RLIMIT_NOFILE 64");
		goto out;
	}
	while (n < 200) {
		fds[n] = dial(port, 1000);
		if (fds[n] < 0) {
			snprintf(why, why_len, "connection %d failed: %s", n, strerror(errno));
			goto out;
		}
		n++;
	}
	/* The flood sits there: the engine should sleep, not spin. */
	cpu0 = cpu_seconds(pid);
	t0 = now_ns();
	usleep(1200000);
	cpu1 = cpu_seconds(pid);
	t1 = now_ns();
	if (cpu0 < 0 || cpu1 < 0) {
		snprintf(why, why_len, "cannot read /proc/%d/stat", (int)pid);
		goto out;
	}
	printf("    CPU during the flood: %.0f%% of %.1f s\n", 100 * (cpu1 - cpu0) / ((t1 - t0) / 1e9),
	       (t1 - t0) / 1e9);
	if (cpu1 - cpu0 > 0.3 * ((t1 - t0) / 1e9)) {
		snprintf(why, why_len, "the engine used %.2f s of CPU in %.2f s with its descriptors "
			 "exhausted: spinning", cpu1 - cpu0, (t1 - t0) / 1e9);
		goto out;
	}
	took = served_within(port, false, NULL, 0);
	if (!took) {
		snprintf(why, why_len, "a real client was not served within %.1f s with the "
			 "descriptors held by idle connections", SERVED_WITHIN_NS / 1e9);
		goto out;
	}
	printf("    served after %.2f s more\n", took / 1e9);
	if (waitpid(pid, NULL, WNOHANG) != 0) {
		snprintf(why, why_len, "the engine died");
		goto out;
	}
	ok = true;
out:
	while (n > 0)
		close(fds[--n]);
	if (!stop(pid) && ok) {
		snprintf(why, why_len, "the engine did not stop cleanly");
		ok = false;
	}
	return ok;
}

/* The file at path holds exactly text. */
static bool holds(const char *path, const char *text)
{
	char buf[256];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = '\0';
	return !strcmp(buf, text);
}

/*
 * Symlinks planted at PORT.tmp and at PORT, pointing at files of someone's:
 * the server must write neither, and leave PORT a regular file with its port.
 */
static bool port_file_symlinks(bool md, char *why, size_t why_len)
{
	char prog[600], data[600], port_file[600], tmp[700], victim[600], victim2[600], expect[32];
	struct stat st;
	const char *name = md ? "md" : "engine";
	int port;
	pid_t pid;
	bool ok = false;

	snprintf(prog, sizeof(prog), "%s/exchange-%s", bindir, name);
	snprintf(data, sizeof(data), "%s/snap", dir);
	snprintf(port_file, sizeof(port_file), "%s/%s-linked.port", dir, name);
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	snprintf(victim, sizeof(victim), "%s/%s-victim", dir, name);
	snprintf(victim2, sizeof(victim2), "%s/%s-victim2", dir, name);
	{
		FILE *a = fopen(victim, "w"), *b = fopen(victim2, "w");

		CHECK(a && b, "cannot make the victims: %s", strerror(errno));
		fputs("precious\n", a);
		fputs("precious too\n", b);
		fclose(a);
		fclose(b);
	}
	CHECK(!symlink(victim, tmp) && !symlink(victim2, port_file), "symlink: %s", strerror(errno));
	if (md)
		pid = spawn((char *[]){ prog, "--mode", "fullcopy", "--dir", data, "--port-file",
					port_file, NULL }, 0);
	else
		pid = spawn((char *[]){ prog, "--mode", "none", "--port-file", port_file, NULL }, 0);
	/* The symlink at PORT points at "precious too": wait for a port there. */
	for (int i = 0; i < 200; i++) {
		if (!lstat(port_file, &st) && S_ISREG(st.st_mode))
			break;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			pid = 0;
			break;
		}
		usleep(25000);
	}
	if (!holds(victim, "precious\n") || !holds(victim2, "precious too\n")) {
		snprintf(why, why_len, "exchange-%s wrote through a symlink planted at its port file",
			 name);
		goto out;
	}
	if (lstat(port_file, &st) || !S_ISREG(st.st_mode)) {
		snprintf(why, why_len, "%s is not a regular file after the server started", port_file);
		goto out;
	}
	port = read_port(port_file);
	snprintf(expect, sizeof(expect), "%d\n", port);
	if (port <= 0 || !holds(port_file, expect)) {
		snprintf(why, why_len, "no port in %s", port_file);
		goto out;
	}
	if (lstat(tmp, &st) || !S_ISLNK(st.st_mode)) {
		snprintf(why, why_len, "the symlink at %s was replaced or removed", tmp);
		goto out;
	}
	ok = true;
out:
	stop(pid);
	unlink(tmp);
	unlink(port_file);
	unlink(victim);
	unlink(victim2);
	return ok;
}

static bool engine_port_file(char *why, size_t why_len)
{
	return port_file_symlinks(false, why, why_len);
}

static bool md_port_file(char *why, size_t why_len)
{
	return port_file_symlinks(true, why, why_len);
}

int main(void)
{
	const char *o = getenv("O") ? getenv("O") : "build";
	char eng[600], md[600], eport[600], mport[600], snap[600];
	static const struct t_cell cells[] = {
		{ "engine: slots held by idle and trickling", engine_crowd },
		{ "md: slots held by idle and trickling", md_crowd },
		{ "engine: descriptors exhausted", descriptors_exhausted },
		{ "engine: port file symlinks", engine_port_file },
		{ "md: port file symlinks", md_port_file },
	};
	struct rlimit rl;

	snprintf(bindir, sizeof(bindir), "%s/apps/exchange", o);
	snprintf(eng, sizeof(eng), "%s/exchange-engine", bindir);
	snprintf(md, sizeof(md), "%s/exchange-md", bindir);
	if (access(eng, X_OK) || access(md, X_OK)) {
		printf("skip: %s not built (make tests builds it)\n", eng);
		return T_SKIP;
	}
	/* The test holds CAPACITY + 200 connections of its own at most. */
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < 1024) {
		rl.rlim_cur = rl.rlim_max < 1024 ? rl.rlim_max : 1024;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < CAPACITY + 100) {
		printf("skip: this process may open %llu descriptors; the test needs %d\n",
		       (unsigned long long)rl.rlim_cur, CAPACITY + 100);
		return T_SKIP;
	}
	t_tmpdir_make(dir, sizeof(dir), "exchange-starve");
	snprintf(eport, sizeof(eport), "%s/eport", dir);
	snprintf(mport, sizeof(mport), "%s/mport", dir);
	snprintf(snap, sizeof(snap), "%s/snap", dir);
	engine_pid = spawn((char *[]){ eng, "--mode", "fullcopy", "--dir", snap, "--size", "8M",
				       "--port-file", eport, "--idle-ms", IDLE_MS, "--ack", "published",
				       NULL }, 0);
	engine_port = read_port(eport);
	md_pid = spawn((char *[]){ md, "--mode", "fullcopy", "--dir", snap, "--port-file", mport,
				   "--idle-ms", IDLE_MS, NULL }, 0);
	md_port = read_port(mport);
	if (engine_port < 0 || md_port < 0)
		t_cell_report("start", T_FAIL, "the engine or the md server wrote no port file");
	else
		t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	if (waitpid(engine_pid, NULL, WNOHANG) != 0)
		t_cell_report("engine survived", T_FAIL, "the engine died");
	if (waitpid(md_pid, NULL, WNOHANG) != 0)
		t_cell_report("md survived", T_FAIL, "the md server died");
	if (!stop(md_pid))
		t_cell_report("md stops cleanly", T_FAIL, "exit status");
	if (!stop(engine_pid))
		t_cell_report("engine stops cleanly", T_FAIL, "exit status");
	{
		char cmd[700];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			printf("could not remove %s\n", dir);
	}
	return t_exit();
}
