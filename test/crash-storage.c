/* crash-storage: simulated storage crashes at >= 1,000 points, unsynced writes kept, dropped or torn, also with the log written O_DIRECT: no corrupt epoch accepted, no durable epoch lost. */
/*
 * The writer runs on a real directory with its file layer (pt_io) replaced
 * by a recorder that logs every create, write, truncate, fsync, rename and
 * unlink.  For each crash point a directory is rebuilt from a prefix of
 * that trace the way a disk could have left it: data written before a
 * file's last fsync is kept; each later write is kept, dropped, or torn
 * (512-byte sectors kept at random); namespace operations after the last
 * directory fsync survive as a random prefix (a journal commits in order).
 * The region is then opened there and must hold an epoch at least as new
 * as the newest one reported durable before the crash, whose memory hashes
 * as the writer recorded it.
 *
 * Threaded: the recorder runs on the writer's log thread and on the caller's
 * (the library calls pthread_create for its log thread), so this test also
 * runs under TSan.
 */
#include <dirent.h>
#include <pthread.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "harness.h"
#include "format.h"
#include "io.h"
#include "internal.h"

#define NPAGES		64
#define MAX_EPOCHS	1024
#define MAX_OPS		20000
#define MAX_OBJS	4096
#define MAX_NAMES	512
#define CRASH_POINTS	1200

enum op_kind { OP_CREATE, OP_WRITE, OP_TRUNC, OP_FSYNC, OP_FSYNC_DIR, OP_RENAME, OP_UNLINK,
	       OP_MARK_CREATED, OP_MARK_DURABLE, OP_FSYNC_FAILED };

struct op {
	enum op_kind kind;
	int obj;
	uint64_t off, len;	/* write: offset, length; trunc: length; durable: epoch */
	unsigned char *data;
	char name[64], to[64];
};

static struct op ops[MAX_OPS];
static int nops;
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;
static int fd_obj[4096];
static int nobjs;
static struct { char name[64]; int obj; } cur_ns[MAX_NAMES];
static int ncur;
static uint64_t hashes[MAX_EPOCHS];
/* Error injection: after creation, fail every Nth fsync with EIO and every
 * Nth write with ENOSPC after writing half of it (0: never). */
static int fail_fsync_every, fail_write_every, nfsync, nwrite, nfailed;
static bool inject;

static struct op *op_add(enum op_kind k)
{
	if (nops >= MAX_OPS)
		DIE("trace too long");
	memset(&ops[nops], 0, sizeof(ops[nops]));
	ops[nops].kind = k;
	return &ops[nops++];
}

static int ns_find(const char *name)
{
	for (int i = 0; i < ncur; i++)
		if (!strcmp(cur_ns[i].name, name))
			return i;
	return -1;
}

/* ---- the recorder ------------------------------------------------------ */

static int rec_openat(int dirfd, const char *name, int flags, mode_t mode)
{
	int fd = pt_io_system.openat(dirfd, name, flags, mode);
	int i;

	if (fd < 0 || fd >= 4096)
		return fd;
	pthread_mutex_lock(&trace_lock);
	i = ns_find(name);
	if ((flags & O_CREAT) && i < 0) {
		struct op *o = op_add(OP_CREATE);

		o->obj = nobjs++;
		snprintf(o->name, sizeof(o->name), "%s", name);
		snprintf(cur_ns[ncur].name, sizeof(cur_ns[ncur].name), "%s", name);
		cur_ns[ncur++].obj = o->obj;
		fd_obj[fd] = o->obj;
	} else {
		fd_obj[fd] = i >= 0 ? cur_ns[i].obj : -1;
	}
	pthread_mutex_unlock(&trace_lock);
	return fd;
}

static ssize_t rec_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	bool fail = false;
	ssize_t n;

	pthread_mutex_lock(&trace_lock);
	if (inject && fail_write_every && ++nwrite % fail_write_every == 0 && len > 1) {
		len /= 2;
		fail = true;
		nfailed++;
	}
	pthread_mutex_unlock(&trace_lock);
	n = pt_io_system.pwrite(fd, buf, len, off);

	if (n > 0 && fd < 4096 && fd_obj[fd] >= 0) {
		pthread_mutex_lock(&trace_lock);
		struct op *o = op_add(OP_WRITE);

		o->obj = fd_obj[fd];
		o->off = (uint64_t)off;
		o->len = (uint64_t)n;
		o->data = malloc((size_t)n);
		memcpy(o->data, buf, (size_t)n);
		pthread_mutex_unlock(&trace_lock);
	}
	return fail && n >= 0 ? -ENOSPC : n;
}

static int rec_sync(int fd, bool data_only)
{
	struct stat st;
	int ret;

	pthread_mutex_lock(&trace_lock);
	if (inject && fail_fsync_every && ++nfsync % fail_fsync_every == 0) {
		/* As Linux may: the dirty pages it could not write are
		 * marked clean, so no later fsync saves them. */
		if (fd < 4096 && fd_obj[fd] >= 0)
			op_add(OP_FSYNC_FAILED)->obj = fd_obj[fd];
		nfailed++;
		pthread_mutex_unlock(&trace_lock);
		return -EIO;
	}
	pthread_mutex_unlock(&trace_lock);
	ret = data_only ? pt_io_system.fdatasync(fd) : pt_io_system.fsync(fd);
	if (ret)
		return ret;
	pthread_mutex_lock(&trace_lock);
	if (!fstat(fd, &st) && S_ISDIR(st.st_mode)) {
		op_add(OP_FSYNC_DIR);
	} else if (fd < 4096 && fd_obj[fd] >= 0) {
		struct op *o = op_add(OP_FSYNC);

		o->obj = fd_obj[fd];
	}
	pthread_mutex_unlock(&trace_lock);
	return 0;
}

static int rec_fdatasync(int fd)
{
	return rec_sync(fd, true);
}

static int rec_fsync(int fd)
{
	return rec_sync(fd, false);
}

static int rec_ftruncate(int fd, off_t len)
{
	int ret = pt_io_system.ftruncate(fd, len);

	if (!ret && fd < 4096 && fd_obj[fd] >= 0) {
		pthread_mutex_lock(&trace_lock);
		struct op *o = op_add(OP_TRUNC);

		o->obj = fd_obj[fd];
		o->len = (uint64_t)len;
		pthread_mutex_unlock(&trace_lock);
	}
	return ret;
}

static int rec_renameat(int dirfd, const char *from, const char *to)
{
	int ret = pt_io_system.renameat(dirfd, from, to);

	if (!ret) {
		pthread_mutex_lock(&trace_lock);
		struct op *o = op_add(OP_RENAME);
		int i = ns_find(from), j = ns_find(to);

		snprintf(o->name, sizeof(o->name), "%s", from);
		snprintf(o->to, sizeof(o->to), "%s", to);
		if (j >= 0)
			cur_ns[j] = cur_ns[--ncur];
		i = ns_find(from);
		if (i >= 0)
			snprintf(cur_ns[i].name, sizeof(cur_ns[i].name), "%s", to);
		pthread_mutex_unlock(&trace_lock);
	}
	return ret;
}

static int rec_unlinkat(int dirfd, const char *name)
{
	int ret = pt_io_system.unlinkat(dirfd, name);

	if (!ret) {
		pthread_mutex_lock(&trace_lock);
		struct op *o = op_add(OP_UNLINK);
		int i = ns_find(name);

		snprintf(o->name, sizeof(o->name), "%s", name);
		if (i >= 0)
			cur_ns[i] = cur_ns[--ncur];
		pthread_mutex_unlock(&trace_lock);
	}
	return ret;
}

static int rec_close(int fd)
{
	if (fd >= 0 && fd < 4096)
		fd_obj[fd] = -1;
	return pt_io_system.close(fd);
}

static const struct pt_io_ops recorder = {
	.openat = rec_openat, .pwrite = rec_pwrite, .fdatasync = rec_fdatasync,
	.fsync = rec_fsync, .ftruncate = rec_ftruncate, .renameat = rec_renameat,
	.unlinkat = rec_unlinkat, .close = rec_close,
};

static void mark(enum op_kind k, uint64_t epoch)
{
	pthread_mutex_lock(&trace_lock);
	op_add(k)->len = epoch;
	pthread_mutex_unlock(&trace_lock);
}

/* ---- rebuilding a directory at a crash point ------------------------------ */

struct file {
	unsigned char *data;
	uint64_t size, cap;
	int pending[2048];	/* ops since the last fsync */
	int npending;
};

static struct file *files;

static void file_resize(struct file *f, uint64_t size)
{
	if (size > f->cap) {
		uint64_t cap = size * 2;

		f->data = realloc(f->data, cap);
		memset(f->data + f->cap, 0, cap - f->cap);
		f->cap = cap;
	}
	/* Bytes a file grows by read as zeros (and the buffer is reused). */
	if (size > f->size)
		memset(f->data + f->size, 0, size - f->size);
	f->size = size;
}

static void file_apply(struct file *f, const struct op *o, uint64_t *seed, bool torn)
{
	if (o->kind == OP_TRUNC) {
		file_resize(f, o->len);
		return;
	}
	if (o->off + o->len > f->size)
		file_resize(f, o->off + o->len);
	if (!torn) {
		memcpy(f->data + o->off, o->data, o->len);
		return;
	}
	for (uint64_t s = 0; s < o->len; s += 512) {
		uint64_t n = o->len - s < 512 ? o->len - s : 512;

		if (t_rnd_next(seed) & 1)
			memcpy(f->data + o->off + s, o->data + s, n);
	}
}

struct ns_entry {
	char name[64];
	int obj;
};

static int ns_apply(struct ns_entry *ns, int n, const struct op *o)
{
	int i;

	switch (o->kind) {
	case OP_CREATE:
		snprintf(ns[n].name, sizeof(ns[n].name), "%s", o->name);
		ns[n++].obj = o->obj;
		break;
	case OP_RENAME:
		for (i = 0; i < n; i++)
			if (!strcmp(ns[i].name, o->to)) {
				ns[i] = ns[--n];
				break;
			}
		for (i = 0; i < n; i++)
			if (!strcmp(ns[i].name, o->name)) {
				snprintf(ns[i].name, sizeof(ns[i].name), "%s", o->to);
				break;
			}
		break;
	case OP_UNLINK:
		for (i = 0; i < n; i++)
			if (!strcmp(ns[i].name, o->name)) {
				ns[i] = ns[--n];
				break;
			}
		break;
	default:
		break;
	}
	return n;
}


/*
 * Rebuild into out the directory as a crash after op `crash` may leave it.
 * Returns the newest epoch reported durable before the crash, or -1 if the
 * region's creation had not returned yet.
 */
static int64_t rebuild(int crash, const char *out, uint64_t *seed)
{
	static struct ns_entry dur_ns[MAX_NAMES], ns[MAX_NAMES];
	static int pend_ns[MAX_OPS];
	int ndur = 0, npend = 0, n, keep;
	int64_t durable = -1;

	for (int i = 0; i < nobjs; i++) {
		files[i].size = 0;
		files[i].npending = 0;
	}
	for (int i = 0; i < crash; i++) {
		const struct op *o = &ops[i];

		switch (o->kind) {
		case OP_CREATE:
		case OP_RENAME:
		case OP_UNLINK:
			pend_ns[npend++] = i;
			break;
		case OP_FSYNC_DIR:
			for (int k = 0; k < npend; k++)
				ndur = ns_apply(dur_ns, ndur, &ops[pend_ns[k]]);
			npend = 0;
			break;
		case OP_WRITE:
		case OP_TRUNC: {
			struct file *f = &files[o->obj];

			if (f->npending == (int)PT_ARRAY_SIZE(f->pending)) {
				/* Too many unsynced writes to track: count the
				 * oldest as having reached the disk. */
				file_apply(f, &ops[f->pending[0]], seed, false);
				memmove(f->pending, f->pending + 1, sizeof(int) * (size_t)--f->npending);
			}
			f->pending[f->npending++] = i;
			break;
		}
		case OP_FSYNC: {
			struct file *f = &files[o->obj];

			for (int k = 0; k < f->npending; k++)
				file_apply(f, &ops[f->pending[k]], seed, false);
			f->npending = 0;
			break;
		}
		case OP_FSYNC_FAILED: {
			struct file *f = &files[o->obj];

			/* Their fate is sealed now: kept, lost or torn. */
			for (int k = 0; k < f->npending; k++) {
				uint64_t fate = t_rnd_next(seed) % 3;

				if (fate < 2)
					file_apply(f, &ops[f->pending[k]], seed, fate == 1);
			}
			f->npending = 0;
			break;
		}
		case OP_MARK_CREATED:
			if (durable < 0)
				durable = 0;
			break;
		case OP_MARK_DURABLE:
			durable = (int64_t)o->len;
			break;
		}
	}
	/* Unsynced file writes: kept, dropped or torn, each on its own. */
	for (int i = 0; i < nobjs; i++) {
		struct file *f = &files[i];

		for (int k = 0; k < f->npending; k++) {
			uint64_t fate = t_rnd_next(seed) % 3;

			if (fate == 0)
				file_apply(f, &ops[f->pending[k]], seed, false);
			else if (fate == 1)
				file_apply(f, &ops[f->pending[k]], seed, true);
		}
	}
	/* Unsynced namespace operations: a prefix survives. */
	memcpy(ns, dur_ns, sizeof(ns[0]) * (size_t)ndur);
	n = ndur;
	keep = npend ? (int)(t_rnd_next(seed) % (uint64_t)(npend + 1)) : 0;
	for (int k = 0; k < keep; k++)
		n = ns_apply(ns, n, &ops[pend_ns[k]]);
	t_tmpdir_empty(out);
	for (int i = 0; i < n; i++) {
		char p[512];
		int fd;

		snprintf(p, sizeof(p), "%s/%.63s", out, ns[i].name);
		fd = open(p, O_CREAT | O_WRONLY | O_TRUNC, 0600);
		if (fd < 0)
			DIE("%s: %s", p, strerror(errno));
		if (files[ns[i].obj].size &&
		    pwrite(fd, files[ns[i].obj].data, files[ns[i].obj].size, 0) !=
		    (ssize_t)files[ns[i].obj].size)
			DIE("write %s", p);
		close(fd);
	}
	return durable;
}

/* ---- the workload ---------------------------------------------------------- */

static unsigned int extra_flags;	/* PT_REGION_* for the workload's region */
static int direct_seen;			/* its stats said direct_log at the end */

static bool workload(const char *dir, enum pt_durability dur, uint64_t seed, int *epochs)
{
	struct pt_region_opts o = {
		.sz = sizeof(o), .durability = dur,
		.flags = PT_REGION_NO_CHECKPOINT_THREAD | extra_flags,
		.segment_bytes = 40 << 10, .retain_bytes = 1,
	};
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r;
	uint64_t assigned = 0;
	char *m;
	int ret;

	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	mark(OP_MARK_CREATED, 0);
	pthread_mutex_lock(&trace_lock);
	inject = true;
	pthread_mutex_unlock(&trace_lock);
	m = pt_region_base(r);
	for (int i = 0; i < 80; i++) {
		int nw = 1 + (int)(t_rnd_next(&seed) % 8);
		int64_t e;

		for (int w = 0; w < nw; w++)
			m[(t_rnd_next(&seed) % NPAGES) * ps + t_rnd_next(&seed) % ps] = (char)(t_rnd_next(&seed) | 1);
		CHECK(assigned + 1 < MAX_EPOCHS, "too many epochs");
		hashes[assigned + 1] = XXH3_64bits(m, size);
		/* A failed sync loses nothing: sync again, writing nothing
		 * new, until it works; the epoch keeps this content. */
		for (int t = 0; (e = pt_region_sync(r)) < 0 && t < 400; t++) {
			CHECK(e == -EIO || e == -ENOSPC, "sync: %s", strerror((int)-e));
			usleep(2000);
		}
		CHECK(e == (int64_t)assigned + 1, "sync gave %lld", (long long)e);
		assigned = (uint64_t)e;
		if (dur == PT_DURABLE_ON_SYNC) {
			mark(OP_MARK_DURABLE, assigned);
		} else if (t_rnd_next(&seed) % 3 == 0) {
			for (int t = 0; (ret = pt_region_wait(r, assigned, PT_LEVEL_DURABLE, -1)) && t < 400; t++)
				usleep(2000);
			CHECK(ret == 0, "wait: %s", strerror(-ret));
			mark(OP_MARK_DURABLE, assigned);
		}
		if (t_rnd_next(&seed) % 10 == 0) {
			int64_t c = pt_region_checkpoint(r);

			CHECK(c >= 0 || fail_fsync_every || fail_write_every, "checkpoint: %s",
			      strerror((int)-c));
		}
	}
	pthread_mutex_lock(&trace_lock);
	inject = false;
	pthread_mutex_unlock(&trace_lock);
	ret = pt_region_wait(r, assigned, PT_LEVEL_DURABLE, 10000);
	CHECK(ret == 0 || ret == -EIO || ret == -ENOSPC, "wait: %s", strerror(-ret));
	{
		struct pt_region_stats st = { .sz = sizeof(st) };

		direct_seen = !pt_region_stats(r, NULL, &st) && st.direct_log;
	}
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	mark(OP_MARK_DURABLE, assigned);
	*epochs = (int)assigned;
	return true;
}


static bool run(enum pt_durability dur, int fail_every, int points, char *why, size_t why_len)
{
	size_t size = NPAGES * t_page_size();
	char dir[128], out[128];
	uint64_t seed = 0x5eed + (uint64_t)dur;
	int epochs = 0, opened = 0, recovered_beyond = 0;
	bool ok;

	snprintf(dir, sizeof(dir), "/dev/shm/pt-crash-storage-XXXXXX");
	snprintf(out, sizeof(out), "/dev/shm/pt-crash-storage-out-XXXXXX");
	if (!mkdtemp(dir) || !mkdtemp(out)) {
		snprintf(why, why_len, "mkdtemp: %s", strerror(errno));
		return false;
	}
	rmdir(dir);
	for (int i = 0; i < nops; i++)
		free(ops[i].data);
	nops = nobjs = ncur = 0;
	fail_fsync_every = fail_write_every = fail_every;
	nfsync = nwrite = nfailed = 0;
	inject = false;
	memset(fd_obj, 0xff, sizeof(fd_obj));
	pt_io_set(&recorder);
	ok = workload(dir, dur, seed, &epochs);
	pt_io_set(NULL);
	t_tmpdir_remove(dir);
	if (!ok)
		goto out;
	files = calloc((size_t)nobjs, sizeof(*files));
	for (int p = 0; p < points && ok; p++) {
		int crash = (int)(t_rnd_next(&seed) % (uint64_t)(nops + 1));
		int64_t durable = rebuild(crash, out, &seed);
		struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
		struct pt_region *r;
		int64_t e;
		int ret;

		ret = pt_region_open(&r, out, &o);
		if (durable < 0 && ret) {
			/* Crashed inside create: no region is fine, a clear
			 * error is required. */
			if (ret != -EMEDIUMTYPE && ret != -ENODATA && ret != -EBADMSG) {
				snprintf(why, why_len, "crash at op %d inside create: open gave %s", crash,
					 strerror(-ret));
				ok = false;
			}
			continue;
		}
		if (ret) {
			static const char *const kinds[] = { "create", "write", "trunc", "fsync",
				"fsync-dir", "rename", "unlink", "created", "durable" };

			for (int i = 0; i < crash && getenv("PT_TRACE"); i++)
				printf("      %4d %-9s obj %2d %-26s off %8llu len %8llu\n", i,
				       kinds[ops[i].kind], ops[i].obj, ops[i].name,
				       (unsigned long long)ops[i].off, (unsigned long long)ops[i].len);
			snprintf(why, why_len, "crash at op %d of %d: open failed: %s (durable %lld)",
				 crash, nops, strerror(-ret), (long long)durable);
			ok = false;
			break;
		}
		opened++;
		e = pt_region_epoch(r);
		if (e < durable) {
			snprintf(why, why_len, "crash at op %d: recovered epoch %lld, %lld was durable",
				 crash, (long long)e, (long long)durable);
			ok = false;
		} else if (e > epochs || XXH3_64bits(pt_region_base(r), size) != hashes[e]) {
			snprintf(why, why_len, "crash at op %d: epoch %lld recovered with wrong memory",
				 crash, (long long)e);
			ok = false;
		}
		recovered_beyond += e > durable;
		pt_region_close(r);
	}
	printf("    %s%s%s: %d trace ops, %d epochs, %d injected I/O errors, %d crash points opened "
	       "(%d recovered epochs beyond the durable one)%s\n",
	       dur == PT_DURABLE_ON_SYNC ? "durable-on-sync" : "group commit",
	       fail_every ? " with I/O errors" : "",
	       extra_flags & PT_REGION_DIRECT_LOG ? ", log O_DIRECT" : "", nops, epochs, nfailed, opened, recovered_beyond,
	       ok ? ": 0 corrupt accepted, 0 durable lost" : "");
	for (int i = 0; i < nobjs; i++)
		free(files[i].data);
	free(files);
	files = NULL;
out:
	if (ok || !getenv("PT_TRACE"))
		t_tmpdir_remove(out);
	else
		printf("    rebuilt directory left in %s\n", out);
	return ok;
}

int main(void)
{
	char why[256] = "";
	size_t size = NPAGES * t_page_size();
	void *zero = calloc(1, size);

	hashes[0] = XXH3_64bits(zero, size);
	free(zero);
	t_cell_report("durable-on-sync", run(PT_DURABLE_ON_SYNC, 0, CRASH_POINTS / 3, why,
					     sizeof(why)) ? T_PASS : T_FAIL, why);
	why[0] = '\0';
	t_cell_report("none-with-group-commit", run(PT_DURABLE_NONE, 0, CRASH_POINTS / 3, why,
						    sizeof(why)) ? T_PASS : T_FAIL, why);
	why[0] = '\0';
	t_cell_report("fsync-eio-and-enospc", run(PT_DURABLE_ON_SYNC, 7, CRASH_POINTS / 3, why,
						  sizeof(why)) ? T_PASS : T_FAIL, why);
	/* The log written O_DIRECT: its records go through a second
	 * descriptor of the same file, and a disk's volatile cache may still
	 * lose them until the fdatasync. */
	why[0] = '\0';
	extra_flags = PT_REGION_DIRECT_LOG;
	if (!run(PT_DURABLE_ON_SYNC, 0, CRASH_POINTS / 3, why, sizeof(why)))
		t_cell_report("durable-on-sync-direct-log", T_FAIL, why);
	else if (!direct_seen)
		t_cell_report("durable-on-sync-direct-log", T_SKIP,
			      "the file system of /dev/shm refused O_DIRECT");
	else
		t_cell_report("durable-on-sync-direct-log", T_PASS, "");
	extra_flags = 0;
	for (int i = 0; i < nops; i++)
		free(ops[i].data);
	return t_exit();
}
