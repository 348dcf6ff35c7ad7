/* region-damage: random damage to a region's files never yields wrong data, a silent loss, a crash or a hang. */
/*
 * A reference region is built once: 60 epochs of random writes to 128
 * pages, checkpoints at epochs 15, 30 and 45, segments of 64 KiB (about
 * twenty), closed cleanly, so its last durable epoch is its last epoch and
 * the hash of its memory then is the one right answer.  A second region of
 * the same size (another history) provides foreign files.
 *
 * Each trial copies the reference directory, applies one damage (a kind
 * from the table below, its file, offset and bytes drawn from the trial's
 * own random stream) and then, in a forked child bounded by an alarm:
 *   verify      `pagetrack verify DIR` (when $O/pagetrack exists);
 *   private     a private replica, refreshed with timeout 0 until its
 *               epoch stops moving;
 *   shared      the same with a shared replica of a name of its own;
 *   open        pt_region_open, last: as the writer it renames orphan
 *               segments and rewrites the state block.
 * Each must show exactly the last durable epoch with its hash, or fail
 * with an error: different content, or an older epoch without an error,
 * is a failure; so is a crash or a hang of the child; and verify may exit
 * 0 only when open reaches the last durable epoch.
 *
 * PT_DAMAGE_SEED sets the seed (printed first), PT_DAMAGE_TRIALS the number
 * of trials (default 300), PT_DAMAGE_ONLY runs one trial by its number.
 * A failure prints the seed, the trial and the damage, so it can be run
 * again alone.
 */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES		128
#define EPOCHS		60
#define FOREIGN_EPOCHS	25
#define SEGMENT_BYTES	(64u << 10)
#define RETAIN_BYTES	(512u << 10)
#define CHILD_SECONDS	30	/* a trial's checks, all four */
#define VERIFY_SECONDS	20
#define MAX_SEGS	256

enum damage {
	D_BIT_FLIP,
	D_MULTI_FLIP,
	D_TRUNCATE,
	D_ZERO_BLOCK,
	D_DELETE_SEGMENT,
	D_SWAP_SEGMENTS,
	D_DUPLICATE_SEGMENT,
	D_FOREIGN_IMAGE,
	D_FOREIGN_SEGMENT,
	D_KINDS
};

static const char *const damage_names[D_KINDS] = {
	"bit flip", "multi-byte flip", "truncation", "zeroed 4 KiB block",
	"deleted segment", "swapped segments", "duplicated segment",
	"foreign image", "foreign segment",
};

enum outcome { O_SKIP, O_OK, O_ERR, O_BAD, O_NOUTCOMES };

static const char *const outcome_names[O_NOUTCOMES] = { "skip", "ok", "error", "WRONG" };

enum check { C_VERIFY, C_PRIVATE, C_SHARED, C_OPEN, C_CHECKS };

static const char *const check_names[C_CHECKS] = { "verify", "private", "shared", "open" };

/* What a trial's child sends back. */
struct result {
	int outcome[C_CHECKS];
	int err[C_CHECKS];		/* the -errno of an O_ERR, verify's exit code */
	char why[600];
};

static char base[64], ref_dir[128], foreign_dir[128], trial_dir[128], tool[256];
static uint64_t last_epoch, last_hash;
static size_t region_size;

/* ---- files ------------------------------------------------------------- */



static int seq_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The sequence numbers of dir's segments, ascending. */
static size_t list_segments(const char *dir, uint64_t *seqs)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d = opendir(dir);

	if (!d)
		DIE("opendir %s: %s", dir, strerror(errno));
	while ((de = readdir(d)) && n < MAX_SEGS) {
		unsigned long long s;
		char tail[8];

		if (strlen(de->d_name) == 24 &&
		    sscanf(de->d_name, "log-%16llx.se%1s", &s, tail) == 2 && !strcmp(tail, "g"))
			seqs[n++] = s;
	}
	closedir(d);
	qsort(seqs, n, sizeof(*seqs), seq_cmp);
	return n;
}

static void seg_path(char *buf, size_t len, const char *dir, uint64_t seq)
{
	snprintf(buf, len, "%s/log-%016llx.seg", dir, (unsigned long long)seq);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : st.st_size;
}

/* ---- the reference regions ---------------------------------------------- */

static uint64_t mem_hash(const void *p)
{
	return XXH3_64bits(p, region_size);
}

/* epochs of random writes, with checkpoints at the given epochs. */
static uint64_t build_region(const char *dir, int epochs, uint64_t *rng)
{
	struct pt_region_opts o = {
		.sz = sizeof(o),
		.flags = PT_REGION_NO_CHECKPOINT_THREAD,
		.segment_bytes = SEGMENT_BYTES,
		.retain_bytes = RETAIN_BYTES,
	};
	size_t ps = t_page_size();
	struct pt_region *r;
	unsigned char *mem;
	uint64_t hash;
	int64_t e = 0;
	int ret;

	ret = pt_region_create(&r, dir, region_size, &o);
	if (ret)
		DIE("pt_region_create %s: %s", dir, pt_strerror(ret));
	mem = pt_region_base(r);
	for (int i = 1; i <= epochs; i++) {
		unsigned int pages = 1 + t_rnd_next(rng) % 8;

		for (unsigned int k = 0; k < pages; k++) {
			unsigned char *p = mem + t_rnd_next(rng) % NPAGES * ps;
			size_t off = t_rnd_next(rng) % ps, len = 1 + t_rnd_next(rng) % (ps - off);

			memset(p + off, (int)(t_rnd_next(rng) | 1), len);
		}
		e = pt_region_sync(r);
		if (e != i)
			DIE("sync of epoch %d returned %lld", i, (long long)e);
		if (i % 15 == 0 && i < epochs && pt_region_checkpoint(r) < 0)
			DIE("checkpoint at epoch %d failed", i);
	}
	hash = mem_hash(mem);
	ret = pt_region_close(r);
	if (ret)
		DIE("pt_region_close %s: %s", dir, pt_strerror(ret));
	return hash;
}

/* ---- damage --------------------------------------------------------------- */

/* A file of the trial directory to damage: the image, the state block or
 * a segment, by name in buf. */
static void pick_file(char *buf, size_t len, uint64_t *rng)
{
	uint64_t seqs[MAX_SEGS];
	size_t n = list_segments(trial_dir, seqs);
	uint64_t pick = t_rnd_next(rng) % (n + 3);

	if (pick < 2)		/* the image twice as often as the state */
		snprintf(buf, len, "%s/image", trial_dir);
	else if (pick == 2)
		snprintf(buf, len, "%s/state", trial_dir);
	else
		seg_path(buf, len, trial_dir, seqs[pick - 3]);
}

static void xor_bytes(const char *path, off_t off, const unsigned char *x, size_t len)
{
	unsigned char b[64];
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0 || pread(fd, b, len, off) != (ssize_t)len)
		DIE("read %s: %s", path, strerror(errno));
	for (size_t i = 0; i < len; i++)
		b[i] ^= x[i];
	if (pwrite(fd, b, len, off) != (ssize_t)len)
		DIE("write %s: %s", path, strerror(errno));
	close(fd);
}

/* An offset in a file of size sz, drawn towards the headers half the time:
 * that is where the decisions are. */
static off_t pick_offset(off_t sz, uint64_t *rng)
{
	off_t head = sz < 3 * 4096 ? sz : 3 * 4096;

	if (sz <= 0)
		return 0;
	if (t_rnd_next(rng) % 2)
		return (off_t)(t_rnd_next(rng) % (uint64_t)head);
	return (off_t)(t_rnd_next(rng) % (uint64_t)sz);
}

/* Apply damage kind k to trial_dir; describe it in what. */
static void apply_damage(enum damage k, uint64_t *rng, char *what, size_t len)
{
	uint64_t seqs[MAX_SEGS], fseqs[MAX_SEGS];
	size_t n = list_segments(trial_dir, seqs), fn;
	char path[600], path2[600];
	unsigned char x[64];
	off_t sz, off;

	switch (k) {
	case D_BIT_FLIP:
	case D_MULTI_FLIP: {
		size_t cnt = k == D_BIT_FLIP ? 1 : 2 + t_rnd_next(rng) % 15;

		pick_file(path, sizeof(path), rng);
		sz = file_size(path);
		if (sz <= 0)
			break;
		off = pick_offset(sz, rng);
		if ((off_t)cnt > sz - off)
			cnt = (size_t)(sz - off);
		for (size_t i = 0; i < cnt; i++)
			x[i] = k == D_BIT_FLIP ? (unsigned char)(1u << (t_rnd_next(rng) % 8))
					       : (unsigned char)(1 + t_rnd_next(rng) % 255);
		xor_bytes(path, off, x, cnt);
		snprintf(what, len, "%s of %zu byte(s) at %s offset %lld", damage_names[k], cnt,
			 strrchr(path, '/') + 1, (long long)off);
		return;
	}
	case D_TRUNCATE:
		pick_file(path, sizeof(path), rng);
		sz = file_size(path);
		if (sz <= 0)
			break;
		off = t_rnd_next(rng) % 4 ? pick_offset(sz, rng) : (off_t)(t_rnd_next(rng) % (uint64_t)sz);
		if (truncate(path, off))
			DIE("truncate %s: %s", path, strerror(errno));
		snprintf(what, len, "%s truncated to %lld of %lld bytes", strrchr(path, '/') + 1,
			 (long long)off, (long long)sz);
		return;
	case D_ZERO_BLOCK: {
		static const unsigned char zero[4096];
		int fd;

		pick_file(path, sizeof(path), rng);
		sz = file_size(path);
		if (sz <= 0)
			break;
		/* The image's header slots and table half the time. */
		if (strstr(path, "/image") && t_rnd_next(rng) % 2)
			off = (off_t)(t_rnd_next(rng) % 3) * 4096;
		else
			off = (off_t)(t_rnd_next(rng) % (((uint64_t)sz + 4095) / 4096)) * 4096;
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || pwrite(fd, zero, (size_t)(sz - off < 4096 ? sz - off : 4096), off) < 0)
			DIE("zero %s: %s", path, strerror(errno));
		close(fd);
		snprintf(what, len, "%s zeroed at offset %lld", strrchr(path, '/') + 1, (long long)off);
		return;
	}
	case D_DELETE_SEGMENT:
		if (!n)
			break;
		seg_path(path, sizeof(path), trial_dir, seqs[t_rnd_next(rng) % n]);
		unlink(path);
		snprintf(what, len, "%s deleted (of %zu segments)", strrchr(path, '/') + 1, n);
		return;
	case D_SWAP_SEGMENTS: {
		size_t i, j;

		if (n < 2)
			break;
		i = t_rnd_next(rng) % n;
		j = (i + 1 + t_rnd_next(rng) % (n - 1)) % n;
		seg_path(path, sizeof(path), trial_dir, seqs[i]);
		seg_path(path2, sizeof(path2), trial_dir, seqs[j]);
		{
			char tmp[600];

			snprintf(tmp, sizeof(tmp), "%s/swap.tmp", trial_dir);
			if (rename(path, tmp) || rename(path2, path) || rename(tmp, path2))
				DIE("swap: %s", strerror(errno));
		}
		snprintf(what, len, "segments %016llx and %016llx swapped",
			 (unsigned long long)seqs[i], (unsigned long long)seqs[j]);
		return;
	}
	case D_DUPLICATE_SEGMENT: {
		uint64_t from, to;

		if (!n)
			break;
		from = seqs[t_rnd_next(rng) % n];
		/* After the last, or in a gap before the first, or anywhere free. */
		switch (t_rnd_next(rng) % 3) {
		case 0: to = seqs[n - 1] + 1 + t_rnd_next(rng) % 3; break;
		case 1: to = seqs[0] > 1 ? seqs[0] - 1 : seqs[n - 1] + 1; break;
		default: to = seqs[n - 1] + 100 + t_rnd_next(rng) % 100; break;
		}
		seg_path(path, sizeof(path), trial_dir, from);
		seg_path(path2, sizeof(path2), trial_dir, to);
		if (t_copy_file(path, path2))
			DIE("copy %s: %s", path, strerror(errno));
		snprintf(what, len, "segment %016llx copied as %016llx", (unsigned long long)from,
			 (unsigned long long)to);
		return;
	}
	case D_FOREIGN_IMAGE:
		snprintf(path, sizeof(path), "%s/image", foreign_dir);
		snprintf(path2, sizeof(path2), "%s/image", trial_dir);
		if (t_copy_file(path, path2))
			DIE("copy %s: %s", path, strerror(errno));
		snprintf(what, len, "image replaced by another region's");
		return;
	case D_FOREIGN_SEGMENT: {
		uint64_t from, to;

		fn = list_segments(foreign_dir, fseqs);
		if (!fn)
			break;
		from = fseqs[t_rnd_next(rng) % fn];
		to = n && t_rnd_next(rng) % 2 ? seqs[t_rnd_next(rng) % n] : (n ? seqs[n - 1] + 1 : from);
		seg_path(path, sizeof(path), foreign_dir, from);
		seg_path(path2, sizeof(path2), trial_dir, to);
		if (t_copy_file(path, path2))
			DIE("copy %s: %s", path, strerror(errno));
		snprintf(what, len, "another region's segment %016llx put as %016llx",
			 (unsigned long long)from, (unsigned long long)to);
		return;
	}
	default:
		break;
	}
	snprintf(what, len, "%s: nothing to damage", damage_names[k]);
}

/* ---- the checks, in the trial's child ---------------------------------------- */

static void say(struct result *res, const char *fmt, ...)
{
	size_t used = strlen(res->why);
	va_list ap;

	if (used >= sizeof(res->why) - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(res->why + used, sizeof(res->why) - used, fmt, ap);
	va_end(ap);
}

static int run_verify(struct result *res)
{
	time_t deadline = time(NULL) + VERIFY_SECONDS;
	pid_t pid;
	int st;

	if (access(tool, X_OK))
		return O_SKIP;
	pid = fork();
	if (pid < 0)
		return O_SKIP;
	if (!pid) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl(tool, tool, "verify", trial_dir, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		pid_t w = waitpid(pid, &st, WNOHANG);

		if (w == pid)
			break;
		if (time(NULL) > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			say(res, "verify hung (killed after %d s); ", VERIFY_SECONDS);
			return O_BAD;
		}
		usleep(2000);
	}
	if (WIFSIGNALED(st)) {
		say(res, "verify died of signal %d; ", WTERMSIG(st));
		return O_BAD;
	}
	res->err[C_VERIFY] = WEXITSTATUS(st);
	return WEXITSTATUS(st) == 0 ? O_OK : O_ERR;
}

/* Right epoch and hash: ok; else wrong (reported). */
static int judge(struct result *res, enum check c, uint64_t epoch, const void *mem)
{
	uint64_t h;

	if (epoch != last_epoch) {
		say(res, "%s at epoch %llu without an error (last durable %llu); ", check_names[c],
		    (unsigned long long)epoch, (unsigned long long)last_epoch);
		return O_BAD;
	}
	h = mem_hash(mem);
	if (h != last_hash) {
		say(res, "%s at epoch %llu with other content (hash %016llx, want %016llx); ",
		    check_names[c], (unsigned long long)epoch, (unsigned long long)h,
		    (unsigned long long)last_hash);
		return O_BAD;
	}
	return O_OK;
}

static void remove_shared(const char *name)
{
	char prefix[200], path[512];
	struct dirent *de;
	DIR *d = opendir("/dev/shm");

	snprintf(prefix, sizeof(prefix), "pagetrack-%s", name);
	if (!d)
		return;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)) &&
		    (de->d_name[strlen(prefix)] == '\0' || de->d_name[strlen(prefix)] == '.')) {
			snprintf(path, sizeof(path), "/dev/shm/%s", de->d_name);
			unlink(path);
		}
	closedir(d);
}

static int check_replica(struct result *res, enum check c, const char *name)
{
	struct pt_replica_opts o = {
		.sz = sizeof(o),
		.mode = c == C_SHARED ? PT_REPLICA_SHARED : PT_REPLICA_PRIVATE,
		.name = name,
	};
	struct pt_replica *r;
	int64_t e, prev = -1;
	int ret, out;

	ret = pt_replica_open(&r, trial_dir, &o);
	if (ret) {
		res->err[c] = ret;
		return O_ERR;
	}
	for (int i = 0; i < 10000; i++) {
		e = pt_replica_refresh(r, 0);
		if (e < 0) {
			res->err[c] = (int)e;
			pt_replica_close(r);
			return O_ERR;
		}
		if (e == prev)
			break;
		prev = e;
	}
	if (prev != pt_replica_epoch(r)) {
		say(res, "%s: refresh returned %lld but the replica shows %llu; ", check_names[c],
		    (long long)prev, (unsigned long long)pt_replica_epoch(r));
		out = O_BAD;
	} else {
		out = judge(res, c, (uint64_t)prev, pt_replica_base(r));
	}
	pt_replica_close(r);
	return out;
}

static int check_open(struct result *res)
{
	struct pt_region *r;
	int ret, out;

	ret = pt_region_open(&r, trial_dir, NULL);
	if (ret) {
		res->err[C_OPEN] = ret;
		return O_ERR;
	}
	out = judge(res, C_OPEN, (uint64_t)pt_region_epoch(r), pt_region_base(r));
	pt_region_close(r);
	return out;
}

static void trial_child(int fd, int trial)
{
	struct result res;
	char name[64];

	memset(&res, 0, sizeof(res));
	alarm(CHILD_SECONDS);
	snprintf(name, sizeof(name), "pt-damage-%d-%d", (int)getppid(), trial);
	res.outcome[C_VERIFY] = run_verify(&res);
	res.outcome[C_PRIVATE] = check_replica(&res, C_PRIVATE, NULL);
	res.outcome[C_SHARED] = check_replica(&res, C_SHARED, name);
	remove_shared(name);
	res.outcome[C_OPEN] = check_open(&res);
	if (res.outcome[C_VERIFY] == O_OK && res.outcome[C_OPEN] != O_OK)
		say(&res, "verify exited 0 but open did not reach epoch %llu; ",
		    (unsigned long long)last_epoch);
	if (write(fd, &res, sizeof(res)) != sizeof(res))
		_exit(2);
	_exit(0);
}

/* ---- the trials ------------------------------------------------------------- */

static unsigned int counts[D_KINDS][C_CHECKS][O_NOUTCOMES], tried[D_KINDS], failed[D_KINDS];

/* Run trial number t; true if it passed. */
static bool run_trial(uint64_t seed, int t)
{
	uint64_t rng = seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(t + 1));
	struct result res;
	enum damage k;
	char what[400], name[64];
	bool ok = true;
	int pfd[2], st;
	ssize_t n;
	pid_t pid;

	t_rnd_next(&rng);
	k = (enum damage)(t_rnd_next(&rng) % D_KINDS);
	t_tmpdir_remove(trial_dir);
	t_copy_dir(ref_dir, trial_dir, NULL);
	apply_damage(k, &rng, what, sizeof(what));
	tried[k]++;
	if (pipe(pfd))
		DIE("pipe: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		DIE("fork: %s", strerror(errno));
	if (!pid) {
		close(pfd[0]);
		trial_child(pfd[1], t);
	}
	close(pfd[1]);
	memset(&res, 0, sizeof(res));
	n = read(pfd[0], &res, sizeof(res));
	close(pfd[0]);
	waitpid(pid, &st, 0);
	snprintf(name, sizeof(name), "pt-damage-%d-%d", (int)getpid(), t);
	remove_shared(name);
	if (WIFSIGNALED(st) || n != sizeof(res)) {
		printf("  FAILED trial %d (seed %llu): %s: the checks %s\n", t, (unsigned long long)seed,
		       what, WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? "hung (alarm)" :
		       WIFSIGNALED(st) ? strsignal(WTERMSIG(st)) : "ended without a result");
		failed[k]++;
		return false;
	}
	for (int c = 0; c < C_CHECKS; c++) {
		counts[k][c][res.outcome[c]]++;
		if (res.outcome[c] == O_BAD)
			ok = false;
	}
	if (res.outcome[C_VERIFY] == O_OK && res.outcome[C_OPEN] != O_OK)
		ok = false;
	if (!ok) {
		printf("  FAILED trial %d (seed %llu): %s: %s\n", t, (unsigned long long)seed, what,
		       res.why);
		printf("      outcomes:");
		for (int c = 0; c < C_CHECKS; c++)
			printf(" %s %s%s%s", check_names[c], outcome_names[res.outcome[c]],
			       res.outcome[c] == O_ERR && c != C_VERIFY ? " " : "",
			       res.outcome[c] == O_ERR && c != C_VERIFY ? pt_strerror(res.err[c]) : "");
		printf("\n");
		failed[k]++;
	} else if (getenv("PT_DAMAGE_VERBOSE")) {
		printf("  trial %d: %s: verify %s, private %s, shared %s, open %s (%s)\n", t, what,
		       outcome_names[res.outcome[C_VERIFY]], outcome_names[res.outcome[C_PRIVATE]],
		       outcome_names[res.outcome[C_SHARED]], outcome_names[res.outcome[C_OPEN]],
		       res.outcome[C_OPEN] == O_ERR ? pt_strerror(res.err[C_OPEN]) : "-");
	}
	return ok;
}

static void cleanup(void)
{
	char d[600];

	if (!base[0])
		return;
	t_tmpdir_remove(trial_dir);
	t_tmpdir_remove(ref_dir);
	t_tmpdir_remove(foreign_dir);
	snprintf(d, sizeof(d), "%s", base);
	rmdir(d);
}

int main(void)
{
	const char *s = getenv("PT_DAMAGE_SEED"), *tr = getenv("PT_DAMAGE_TRIALS");
	const char *only = getenv("PT_DAMAGE_ONLY"), *o = getenv("O");
	uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
	int trials = tr ? atoi(tr) : 300, first = 0, nfail = 0;
	uint64_t rng;

	setvbuf(stdout, NULL, _IOLBF, 0);
	region_size = NPAGES * t_page_size();
	printf("region-damage: seed %llu (PT_DAMAGE_SEED), %d trials (PT_DAMAGE_TRIALS)\n",
	       (unsigned long long)seed, trials);
	snprintf(tool, sizeof(tool), "%s/pagetrack", o && *o ? o : "build");
	if (access(tool, X_OK))
		printf("  %s not built: verify is not checked\n", tool);
	t_tmpdir_make(base, sizeof(base), "pt-damage");
	atexit(cleanup);
	snprintf(ref_dir, sizeof(ref_dir), "%s/ref", base);
	snprintf(foreign_dir, sizeof(foreign_dir), "%s/foreign", base);
	snprintf(trial_dir, sizeof(trial_dir), "%s/trial", base);
	rng = seed | 1;
	last_hash = build_region(ref_dir, EPOCHS, &rng);
	last_epoch = EPOCHS;
	build_region(foreign_dir, FOREIGN_EPOCHS, &rng);
	if (only) {
		first = atoi(only);
		trials = first + 1;
	}
	for (int t = first; t < trials; t++)
		if (!run_trial(seed, t))
			nfail++;

	printf("  %-20s %6s  %-22s %-22s %-22s %-22s\n", "damage", "trials", "verify ok/err",
	       "private ok/err/WRONG", "shared ok/err/WRONG", "open ok/err/WRONG");
	for (int k = 0; k < D_KINDS; k++) {
		char cell[C_CHECKS][32];

		for (int c = 0; c < C_CHECKS; c++)
			snprintf(cell[c], sizeof(cell[c]), "%u/%u/%u", counts[k][c][O_OK],
				 counts[k][c][O_ERR], counts[k][c][O_BAD]);
		printf("  %-20s %6u  %-22s %-22s %-22s %-22s%s\n", damage_names[k], tried[k], cell[0],
		       cell[1], cell[2], cell[3], failed[k] ? "  FAILED" : "");
	}
	printf("region-damage: %d of %d trials failed (seed %llu)\n", nfail, trials - first,
	       (unsigned long long)seed);
	return nfail ? T_FAIL : T_PASS;
}
