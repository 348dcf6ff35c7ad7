/* replica-trust: another local user's files in /dev/shm or a region directory are refused, never trusted or waited on. */
/*
 * Runs as root and plays two unprivileged users in forked children: the
 * victim (uid/gid 65533), who owns a region and opens replicas of it, and
 * the attacker (65534, nobody), who plants files where the victim will
 * look.  Each cell is bounded by an alarm in the children, so a hang is a
 * failure, not a stuck test; every file made is removed, on failure too.
 *
 * Cells:
 *   shm planted        the attacker made /dev/shm/pagetrack-NAME (0666, a
 *                      control block of garbage, its copy files too) before
 *                      the victim's shared replica of NAME: the open fails
 *                      and leaves the attacker's files as they were;
 *   shm private        the victim's shared replica's files cannot be opened
 *                      by the attacker, for writing or reading;
 *   dir mode 0777,
 *   dir not ours,
 *   image/segment/state not ours
 *                      the victim's replica refuses the region (-EPERM);
 *   fifo image/segment/state
 *                      a FIFO in a file's place: replica and writer open
 *                      fail within seconds;
 *   fifo shm           a FIFO as /dev/shm/pagetrack-NAME: the shared open
 *                      fails within seconds.
 */
#include <ftw.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"

#define VICTIM		65533
#define ATTACKER	65534
#define NPAGES		16
#define CELL_SECONDS	10
/* A child's exit status when it could not become the user. */
#define EXIT_NO_USER	99

static char base[64], template_dir[160], cases_dir[128];
static int case_nr;

/* ---- users ----------------------------------------------------------------- */

/*
 * Run fn(arg) as uid in a child within CELL_SECONDS.  Returns 0 with fn's
 * return value in *ret, or how the child ended without one: EXIT_NO_USER,
 * 128 + signal (SIGALRM: it hung), another exit code, or -1 (no fork).
 */
static int run_as(uid_t uid, int (*fn)(void *), void *arg, int *ret)
{
	int pfd[2], st, v = 0;
	ssize_t n;
	pid_t pid;

	fflush(stdout);
	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (!pid) {
		gid_t g = (gid_t)uid;

		close(pfd[0]);
		if (setgroups(1, &g) || setresgid(g, g, g) || setresuid(uid, uid, uid))
			_exit(EXIT_NO_USER);
		alarm(CELL_SECONDS);
		v = fn(arg);
		_exit(write(pfd[1], &v, sizeof(v)) == sizeof(v) ? 0 : 2);
	}
	close(pfd[1]);
	n = read(pfd[0], &v, sizeof(v));
	close(pfd[0]);
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	if (WEXITSTATUS(st))
		return WEXITSTATUS(st);
	if (n != sizeof(v))
		return 2;
	*ret = v;
	return 0;
}

static const char *child_status(int rc, char *buf, size_t len)
{
	if (rc == 128 + SIGALRM)
		snprintf(buf, len, "hung (killed after %d s)", CELL_SECONDS);
	else if (rc > 128)
		snprintf(buf, len, "died of signal %d (%s)", rc - 128, strsignal(rc - 128));
	else
		snprintf(buf, len, "exit %d", rc);
	return buf;
}

/* ---- files ------------------------------------------------------------------ */

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

static void rm_tree(const char *d)
{
	nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void rm_shm(const char *name)
{
	char prefix[128], path[512];
	struct dirent *de;
	DIR *d = opendir("/dev/shm");

	if (!d)
		return;
	snprintf(prefix, sizeof(prefix), "pagetrack-%s", name);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)) &&
		    (!de->d_name[strlen(prefix)] || de->d_name[strlen(prefix)] == '.')) {
			snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
			unlink(path);
		}
	closedir(d);
}

static bool copy_file(const char *from, const char *to, uid_t uid)
{
	char buf[65536];
	int in, out;
	ssize_t n;
	bool ok = false;

	in = open(from, O_RDONLY | O_CLOEXEC);
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (in < 0 || out < 0)
		goto out;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			goto out;
	ok = !n && !fchown(out, uid, uid);
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ok;
}

/* A fresh copy of the victim's region, all of it the victim's, in buf. */
static bool region_copy(char *buf, size_t len, char *why, size_t why_len)
{
	char a[512], b[512];
	struct dirent *de;
	DIR *d;

	snprintf(buf, len, "%s/%d", cases_dir, ++case_nr);
	if (mkdir(buf, 0700) || chown(buf, VICTIM, VICTIM)) {
		snprintf(why, why_len, "mkdir %s: %s", buf, strerror(errno));
		return false;
	}
	d = opendir(template_dir);
	if (!d) {
		snprintf(why, why_len, "opendir %s: %s", template_dir, strerror(errno));
		return false;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(a, sizeof(a), "%s/%s", template_dir, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", buf, de->d_name);
		if (!copy_file(a, b, VICTIM)) {
			snprintf(why, why_len, "copy %s: %s", a, strerror(errno));
			closedir(d);
			return false;
		}
	}
	closedir(d);
	return true;
}

/* The name of dir's newest segment, in buf. */
static bool newest_segment(const char *dir, char *buf, size_t len)
{
	struct dirent *de;
	DIR *d = opendir(dir);

	buf[0] = '\0';
	if (!d)
		return false;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "log-", 4) && strlen(de->d_name) < len &&
		    strcmp(de->d_name, buf) > 0)
			memcpy(buf, de->d_name, strlen(de->d_name) + 1);
	closedir(d);
	return buf[0];
}

/* ---- what the users do ------------------------------------------------------- */

struct job {
	const char *dir;
	const char *name;		/* shared replica name */
	enum pt_replica_mode mode;
	int ret;			/* filled by the child through its exit code */
};

static int victim_make_region(void *arg)
{
	const char *dir = arg;
	struct pt_region *r;
	unsigned char *mem;
	int ret;

	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), NULL);
	if (ret) {
		printf("    victim: pt_region_create: %s\n", pt_strerror(ret));
		return 1;
	}
	mem = pt_region_base(r);
	for (int e = 0; e < 5; e++) {
		memset(mem + (size_t)e * t_page_size(), 'a' + e, t_page_size());
		if (pt_region_sync(r) < 0)
			return 1;
	}
	if (pt_region_checkpoint(r) < 0)
		return 1;
	memset(mem, 'z', 100);
	if (pt_region_sync(r) < 0)
		return 1;
	return pt_region_close(r) ? 1 : 0;
}

/* 0 opened (and refreshed), else the -errno of the failure. */
static int victim_replica(void *arg)
{
	struct job *j = arg;
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = j->mode, .name = j->name };
	struct pt_replica *r;
	int ret;

	ret = pt_replica_open(&r, j->dir, &o);
	if (ret)
		return ret;
	ret = (int)pt_replica_refresh(r, 0);
	pt_replica_close(r);
	return ret < 0 ? ret : 0;
}

static int victim_region_open(void *arg)
{
	struct job *j = arg;
	struct pt_region *r;
	int ret;

	ret = pt_region_open(&r, j->dir, NULL);
	if (ret)
		return ret;
	pt_region_close(r);
	return 0;
}

static const unsigned char *garbage(size_t *len)
{
	static unsigned char g[8192];
	uint64_t s = 0x1234567;

	for (size_t i = 0; i < sizeof(g); i++)
		g[i] = (unsigned char)t_rnd_next(&s);
	/* A control block's magic and a version, then numbers that point
	 * anywhere. */
	memcpy(g, "PTSHARE", 8);
	g[8] = 2;
	g[9] = g[10] = g[11] = 0;
	*len = sizeof(g);
	return g;
}

static int attacker_plant(void *arg)
{
	const char *name = arg;
	char path[256];
	size_t len;
	const unsigned char *g = garbage(&len);

	umask(0);
	for (int i = 0; i < 3; i++) {
		int fd;

		if (i)
			snprintf(path, sizeof(path), "/dev/shm/pagetrack-%s.%016x", name, i);
		else
			snprintf(path, sizeof(path), "/dev/shm/pagetrack-%s", name);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0666);
		if (fd < 0 || write(fd, g, len) != (ssize_t)len || ftruncate(fd, 1 << 20))
			return 1;
		close(fd);
	}
	return 0;
}

static int attacker_fifo(void *arg)
{
	char path[256];

	umask(0);
	snprintf(path, sizeof(path), "/dev/shm/pagetrack-%s", (const char *)arg);
	return mkfifo(path, 0666) ? 1 : 0;
}

/* 0 when every file of the shared replica name is closed to us. */
static int attacker_try_open(void *arg)
{
	const char *name = arg;
	char prefix[128], path[512];
	struct dirent *de;
	int found = 0, opened = 0;
	DIR *d = opendir("/dev/shm");

	if (!d)
		return 2;
	snprintf(prefix, sizeof(prefix), "pagetrack-%s", name);
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		found++;
		snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
		for (int w = 0; w < 2; w++) {
			int fd = open(path, (w ? O_RDWR : O_RDONLY) | O_NONBLOCK);

			if (fd >= 0) {
				printf("    attacker opened %s %s\n", path, w ? "for writing" : "for reading");
				close(fd);
				opened++;
			}
		}
	}
	closedir(d);
	return !found ? 3 : opened ? 1 : 0;
}

/* ---- the cells ----------------------------------------------------------------- */

static void shm_name(char *buf, size_t len, const char *what)
{
	snprintf(buf, len, "pt-trust-%d-%s", (int)getpid(), what);
}

/* Run fn as uid; true with its value in *v, else false with why. */
static bool as_user(uid_t uid, int (*fn)(void *), void *arg, int *v, const char *what,
		    char *why, size_t why_len)
{
	char st[64];
	int rc = run_as(uid, fn, arg, v);

	if (!rc)
		return true;
	snprintf(why, why_len, "%s: %s", what, child_status(rc, st, sizeof(st)));
	return false;
}

static bool cell_shm_planted(char *why, size_t why_len)
{
	struct job j = { .dir = template_dir, .mode = PT_REPLICA_SHARED };
	char name[64], path[256];
	unsigned char buf[8192];
	size_t len;
	const unsigned char *g = garbage(&len);
	bool ok = false;
	int v, fd;

	shm_name(name, sizeof(name), "planted");
	j.name = name;
	rm_shm(name);
	if (!as_user(ATTACKER, attacker_plant, name, &v, "the attacker planting", why, why_len))
		goto out;
	if (v) {
		snprintf(why, why_len, "the attacker could not plant its files");
		goto out;
	}
	if (!as_user(VICTIM, victim_replica, &j, &v, "the victim's shared open", why, why_len))
		goto out;
	if (!v) {
		snprintf(why, why_len, "the victim's shared replica opened over the attacker's file");
		goto out;
	}
	printf("    victim's open: %s\n", pt_strerror(v));
	/* Nothing of the victim's went into the attacker's file. */
	snprintf(path, sizeof(path), "/dev/shm/pagetrack-%s", name);
	fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || memcmp(buf, g, len)) {
		snprintf(why, why_len, "the attacker's control file changed under the victim's open");
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	ok = true;
out:
	rm_shm(name);
	return ok;
}

static bool cell_shm_private(char *why, size_t why_len)
{
	struct job j = { .dir = template_dir, .mode = PT_REPLICA_SHARED };
	char name[64];
	bool ok = false;
	int v;

	shm_name(name, sizeof(name), "private");
	j.name = name;
	rm_shm(name);
	if (!as_user(VICTIM, victim_replica, &j, &v, "the victim's shared replica", why, why_len))
		goto out;
	if (v) {
		snprintf(why, why_len, "the victim's shared replica: %s", pt_strerror(v));
		goto out;
	}
	if (!as_user(ATTACKER, attacker_try_open, name, &v, "the attacker's opens", why, why_len))
		goto out;
	if (v == 3)
		snprintf(why, why_len, "no /dev/shm/pagetrack-%s* left after the victim's replica", name);
	else if (v)
		snprintf(why, why_len, "the attacker opened the victim's shared files");
	else
		ok = true;
out:
	rm_shm(name);
	return ok;
}

enum plant { P_DIR_0777, P_DIR_OWNER, P_IMAGE_OWNER, P_SEGMENT_OWNER, P_STATE_OWNER,
	     P_FIFO_IMAGE, P_FIFO_SEGMENT, P_FIFO_STATE };

/* A fresh region copy in dir, changed as p says. */
static bool plant_in_dir(enum plant p, char *dir, size_t dir_len, char *why, size_t why_len)
{
	char name[128], path[600];

	if (!region_copy(dir, dir_len, why, why_len))
		return false;
	switch (p) {
	case P_DIR_0777:
		if (chmod(dir, 0777)) {
			snprintf(why, why_len, "chmod %s: %s", dir, strerror(errno));
			return false;
		}
		return true;
	case P_DIR_OWNER:
		/* Readable by the victim, whose files it still holds. */
		if (chown(dir, ATTACKER, ATTACKER) || chmod(dir, 0755)) {
			snprintf(why, why_len, "chown %s: %s", dir, strerror(errno));
			return false;
		}
		return true;
	case P_IMAGE_OWNER:
	case P_FIFO_IMAGE:
		snprintf(name, sizeof(name), "image");
		break;
	case P_STATE_OWNER:
	case P_FIFO_STATE:
		snprintf(name, sizeof(name), "state");
		break;
	case P_SEGMENT_OWNER:
	case P_FIFO_SEGMENT:
		if (!newest_segment(dir, name, sizeof(name))) {
			snprintf(why, why_len, "no segment in %s", dir);
			return false;
		}
		break;
	}
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (p == P_FIFO_IMAGE || p == P_FIFO_STATE || p == P_FIFO_SEGMENT) {
		if (unlink(path) || mkfifo(path, 0600) || chown(path, VICTIM, VICTIM)) {
			snprintf(why, why_len, "fifo %s: %s", path, strerror(errno));
			return false;
		}
		return true;
	}
	/* The attacker's file, readable by all, as if swapped in. */
	if (chown(path, ATTACKER, ATTACKER) || chmod(path, 0644)) {
		snprintf(why, why_len, "chown %s: %s", path, strerror(errno));
		return false;
	}
	return true;
}

static bool dir_refused(enum plant p, char *why, size_t why_len)
{
	struct job j = { .mode = PT_REPLICA_PRIVATE };
	char dir[256];
	int v;

	if (!plant_in_dir(p, dir, sizeof(dir), why, why_len))
		return false;
	j.dir = dir;
	if (!as_user(VICTIM, victim_replica, &j, &v, "the victim's replica", why, why_len))
		return false;
	if (v == -EPERM)
		return true;
	if (!v)
		snprintf(why, why_len, "the victim's replica opened the region");
	else
		snprintf(why, why_len, "the victim's replica: %s (%d), want -EPERM", pt_strerror(v), v);
	return false;
}

static bool cell_dir_0777(char *why, size_t len) { return dir_refused(P_DIR_0777, why, len); }
static bool cell_dir_owner(char *why, size_t len) { return dir_refused(P_DIR_OWNER, why, len); }
static bool cell_image_owner(char *why, size_t len) { return dir_refused(P_IMAGE_OWNER, why, len); }
static bool cell_segment_owner(char *why, size_t len) { return dir_refused(P_SEGMENT_OWNER, why, len); }
static bool cell_state_owner(char *why, size_t len) { return dir_refused(P_STATE_OWNER, why, len); }

static bool fifo_refused(enum plant p, char *why, size_t why_len)
{
	struct job j = { .mode = PT_REPLICA_PRIVATE };
	char dir[256];
	int v;

	if (!plant_in_dir(p, dir, sizeof(dir), why, why_len))
		return false;
	j.dir = dir;
	if (!as_user(VICTIM, victim_replica, &j, &v, "replica open", why, why_len))
		return false;
	if (!v) {
		snprintf(why, why_len, "the replica opened");
		return false;
	}
	printf("    replica: %s\n", pt_strerror(v));
	if (!as_user(VICTIM, victim_region_open, &j, &v, "region open", why, why_len))
		return false;
	if (!v) {
		snprintf(why, why_len, "the region opened");
		return false;
	}
	printf("    region open: %s\n", pt_strerror(v));
	return true;
}

static bool cell_fifo_image(char *why, size_t len) { return fifo_refused(P_FIFO_IMAGE, why, len); }
static bool cell_fifo_segment(char *why, size_t len) { return fifo_refused(P_FIFO_SEGMENT, why, len); }
static bool cell_fifo_state(char *why, size_t len) { return fifo_refused(P_FIFO_STATE, why, len); }

static bool cell_fifo_shm(char *why, size_t why_len)
{
	struct job j = { .dir = template_dir, .mode = PT_REPLICA_SHARED };
	char name[64];
	bool ok = false;
	int v;

	shm_name(name, sizeof(name), "fifo");
	j.name = name;
	rm_shm(name);
	if (!as_user(ATTACKER, attacker_fifo, name, &v, "mkfifo as the attacker", why, why_len))
		goto out;
	if (v) {
		snprintf(why, why_len, "mkfifo as the attacker failed");
		goto out;
	}
	if (!as_user(VICTIM, victim_replica, &j, &v, "the shared open over a FIFO", why, why_len))
		goto out;
	if (!v) {
		snprintf(why, why_len, "the shared replica opened over a FIFO");
		goto out;
	}
	printf("    victim's open: %s\n", pt_strerror(v));
	ok = true;
out:
	rm_shm(name);
	return ok;
}

static const struct t_cell cells[] = {
	{ "shm planted by another user", cell_shm_planted },
	{ "shm files closed to others", cell_shm_private },
	{ "dir mode 0777", cell_dir_0777 },
	{ "dir owned by another user", cell_dir_owner },
	{ "image owned by another user", cell_image_owner },
	{ "segment owned by another user", cell_segment_owner },
	{ "state owned by another user", cell_state_owner },
	{ "fifo as image", cell_fifo_image },
	{ "fifo as segment", cell_fifo_segment },
	{ "fifo as state", cell_fifo_state },
	{ "fifo in /dev/shm", cell_fifo_shm },
};

static void cleanup(void)
{
	char name[64];

	if (base[0])
		rm_tree(base);
	for (size_t i = 0; i < 3; i++) {
		shm_name(name, sizeof(name), i == 0 ? "planted" : i == 1 ? "private" : "fifo");
		rm_shm(name);
	}
}

static int probe_user(void *arg)
{
	(void)arg;
	return 0;
}

int main(void)
{
	char vdir[96];
	int rc, v;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (geteuid() != 0) {
		printf("skip: playing two other users needs root (euid %u)\n", (unsigned int)geteuid());
		return T_SKIP;
	}
	rc = run_as(ATTACKER, probe_user, NULL, &v);
	if (rc == 0)
		rc = run_as(VICTIM, probe_user, NULL, &v);
	if (rc) {
		printf("skip: cannot become uid %u or %u here (setresuid in a child: exit %d)\n",
		       ATTACKER, VICTIM, rc);
		return T_SKIP;
	}
	t_tmpdir_make(base, sizeof(base), "pt-trust");
	atexit(cleanup);
	/* Both users pass through; only the victim writes below. */
	snprintf(vdir, sizeof(vdir), "%s/victim", base);
	snprintf(template_dir, sizeof(template_dir), "%s/region", vdir);
	snprintf(cases_dir, sizeof(cases_dir), "%s/cases", base);
	if (chmod(base, 0755) || mkdir(vdir, 0755) || chown(vdir, VICTIM, VICTIM) ||
	    mkdir(cases_dir, 0755))
		DIE("setting up %s: %s", base, strerror(errno));
	rc = run_as(VICTIM, victim_make_region, template_dir, &v);
	if (!rc)
		rc = v;
	if (rc == EXIT_NO_USER) {
		printf("skip: cannot become uid %u\n", VICTIM);
		return T_SKIP;
	}
	if (rc) {
		char st[64];

		printf("the victim could not make its region: %s\n", child_status(rc, st, sizeof(st)));
		return T_FAIL;
	}
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	return t_exit();
}
