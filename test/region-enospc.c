/* region-enospc: on a full tmpfs create and sync fail cleanly with ENOSPC (never SIGBUS); once space returns nothing is lost, through a reopen too. */
#include <dirent.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "harness.h"

#define NPAGES 64

static char mnt[128], dir[256], filler[256];


/* Fill the file system to the last byte. */
static void fill(void)
{
	static char buf[4096];
	int fd = open(filler, O_CREAT | O_WRONLY | O_TRUNC, 0600);

	while (write(fd, buf, sizeof(buf)) > 0)
		;
	while (write(fd, buf, 1) > 0)
		;
	close(fd);
}

static bool full_disk(enum pt_durability dur, char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .durability = dur,
				    .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size(), size = NPAGES * ps;
	struct pt_region *r;
	int failures = 0, ret;
	uint64_t h, seed = 7;
	int64_t e, last;
	char *m;

	(void)why;
	(void)why_len;
	t_tmpdir_empty(dir);
	rmdir(dir);
	ret = pt_region_create(&r, dir, size, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	m[0] = 1;
	last = pt_region_sync(r);
	CHECK(last == 1, "sync: %lld", (long long)last);
	CHECK(pt_region_wait(r, 1, PT_LEVEL_DURABLE, 5000) == 0, "durable");

	fill();
	/* Writes go on; syncs fail, their pages wait in the pending set. */
	for (int i = 0; i < 20; i++) {
		for (int w = 0; w < 4; w++)
			m[(t_rnd_next(&seed) % NPAGES) * ps + t_rnd_next(&seed) % ps] = (char)(i + 2);
		e = pt_region_sync(r);
		if (dur != PT_DURABLE_ON_SYNC && e > 0)
			e = pt_region_wait(r, (uint64_t)e, PT_LEVEL_DURABLE, 2000);
		if (e == -ENOSPC)
			failures++;
		else
			CHECK(e < 0, "sync on a full disk gave %lld", (long long)e);
	}
	CHECK(failures > 0, "no sync failed with ENOSPC");
	e = pt_region_checkpoint(r);
	CHECK(e == -ENOSPC || e == 1, "checkpoint on a full disk gave %lld", (long long)e);

	/* Space returns: the next syncs carry everything. */
	unlink(filler);
	h = XXH3_64bits(m, size);
	for (int t = 0; t < 400; t++) {
		e = pt_region_sync(r);
		if (e > 0)
			e = pt_region_wait(r, (uint64_t)e, PT_LEVEL_DURABLE, 2000) ?: e;
		if (e > 0)
			break;
		usleep(5000);
	}
	CHECK(e > last, "no sync worked after space returned: %lld", (long long)e);
	last = e;
	e = pt_region_checkpoint(r);
	CHECK(e == last, "checkpoint after space returned: %lld", (long long)e);
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	ret = pt_region_open(&r, dir, &o);
	CHECK(ret == 0, "reopen: %s", strerror(-ret));
	CHECK(pt_region_epoch(r) == last, "reopened at %lld, want %lld",
	      (long long)pt_region_epoch(r), (long long)last);
	CHECK(XXH3_64bits(pt_region_base(r), size) == h, "memory lost writes made on a full disk");
	pt_region_close(r);
	printf("    %d syncs failed with ENOSPC, then epoch %lld carried them\n", failures,
	       (long long)last);
	return true;
}

/*
 * Create on a file system with a few pages left, from none to enough: each
 * try must return -ENOSPC or succeed, never die (the state block is written
 * through a mapping: a page the file system cannot allocate would be a
 * SIGBUS), and a failed try must leave nothing that stops the next one.
 * In a child, so that a signal fails this cell and not the test.
 */
static bool create_full(char *why, size_t why_len)
{
	size_t ps = t_page_size();
	int status, nospace = 0, made = 0;
	pid_t pid;

	(void)why;
	(void)why_len;
	t_tmpdir_empty(dir);
	rmdir(dir);
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		struct stat st;

		fill();
		if (stat(filler, &st))
			_exit(2);
		for (int free_pages = 0; free_pages <= 8 && !made; free_pages++) {
			struct pt_region *r;
			int ret;

			if (truncate(filler, st.st_size - (off_t)(free_pages * ps)))
				_exit(2);
			ret = pt_region_create(&r, dir, NPAGES * ps, NULL);
			if (ret == -ENOSPC) {
				nospace++;
				continue;
			}
			if (ret) {
				printf("    create with %d pages free: %s\n", free_pages, strerror(-ret));
				fflush(stdout);
				_exit(3);
			}
			made = free_pages;
			pt_region_close(r);
		}
		printf("    create failed %d times with ENOSPC, then worked with %d pages free\n",
		       nospace, made);
		fflush(stdout);
		_exit(nospace && made ? 0 : 4);
	}
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
	unlink(filler);
	CHECK(!WIFSIGNALED(status), "create on a full disk died of %s", strsignal(WTERMSIG(status)));
	CHECK(WEXITSTATUS(status) == 0, "child exit %d", WEXITSTATUS(status));
	return true;
}

static bool on_sync(char *why, size_t why_len)
{
	return full_disk(PT_DURABLE_ON_SYNC, why, why_len);
}

static bool background(char *why, size_t why_len)
{
	return full_disk(PT_DURABLE_BACKGROUND, why, why_len);
}

int main(void)
{
	char why[256] = "";

	if (geteuid() != 0) {
		printf("skip: mounting a small tmpfs needs root\n");
		return T_SKIP;
	}
	snprintf(mnt, sizeof(mnt), "/tmp/pt-enospc-XXXXXX");
	if (!mkdtemp(mnt))
		DIE("mkdtemp: %s", strerror(errno));
	/* Room for the image (the region plus its table) and a little log. */
	if (mount("tmpfs", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=640k,mode=0700")) {
		printf("skip: cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
		rmdir(mnt);
		return T_SKIP;
	}
	snprintf(dir, sizeof(dir), "%s/region", mnt);
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	t_cell_report("create-on-full-disk", create_full(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	why[0] = '\0';
	t_cell_report("durable-on-sync", on_sync(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	why[0] = '\0';
	t_cell_report("background", background(why, sizeof(why)) ? T_PASS : T_FAIL, why);
	unlink(filler);
	t_tmpdir_empty(dir);
	rmdir(dir);
	umount2(mnt, MNT_DETACH);
	rmdir(mnt);
	return t_exit();
}
