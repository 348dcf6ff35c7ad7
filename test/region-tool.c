/* region-tool: pagetrack status, verify, inspect, replica and checkpoint on good, corrupt and wrong directories, with and without a running writer. */
#include <dirent.h>
#include <sys/wait.h>

#include "harness.h"
#include "format.h"
#include "image.h"

#define NPAGES 32

static char dir[128], tool[256], out[65536];


/* "pagetrack ARGS" into out: the exit status. */
#define run(...) t_run_tool(out, sizeof(out), __VA_ARGS__)

static bool make_region(struct pt_region **rp, int epochs, bool keep_open)
{
	struct pt_region_opts o = { .sz = sizeof(o), .checkpoint_interval_ms = 20 };
	struct pt_region *r;
	char *m;
	int ret;

	t_tmpdir_empty(dir);
	rmdir(dir);
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	for (int e = 1; e <= epochs; e++) {
		m[(size_t)(e % NPAGES) * t_page_size()] = (char)e;
		CHECK(pt_region_sync(r) == e, "sync %d", e);
	}
	if (keep_open) {
		*rp = r;
		return true;
	}
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	return true;
}

static bool good_region(char *why, size_t why_len)
{
	int rc;

	(void)why;
	(void)why_len;
	CHECK(make_region(NULL, 12, false), "region");
	rc = run("status %s", dir);
	CHECK(rc == 0 && strstr(out, "published 12, durable 12, checkpointed"), "status: %d\n%s", rc, out);
	rc = run("status --json %s", dir);
	CHECK(rc == 0 && strstr(out, "\"published\":12") && strstr(out, "\"writer\":false"),
	      "status --json: %d\n%s", rc, out);
	rc = run("inspect %s --pages", dir);
	CHECK(rc == 0 && strstr(out, "epoch 12 ") && strstr(out, "pages 12"), "inspect: %d\n%s", rc, out);
	rc = run("verify %s", dir);
	CHECK(rc == 0 && strstr(out, "recovery would reach epoch 12") && strstr(out, "0 problems"),
	      "verify: %d\n%s", rc, out);
	rc = run("checkpoint %s", dir);
	CHECK(rc == 0 && strstr(out, "checkpointed at epoch 12"), "checkpoint: %d\n%s", rc, out);
	rc = run("status %s", dir);
	CHECK(rc == 0 && strstr(out, "checkpointed 12"), "status after checkpoint: %d\n%s", rc, out);
	t_shm_remove("test-tool");
	rc = run("replica %s --once --name test-tool", dir);
	CHECK(rc == 0 && strstr(out, "at epoch 12"), "replica: %d\n%s", rc, out);
	rc = run("status %s", dir);
	CHECK(rc == 0 && strstr(out, "pagetrack-test-tool: epoch 12, lag 0"), "status lists the "
	      "shared replica: %d\n%s", rc, out);
	t_shm_remove("test-tool");
	return true;
}

static bool running_writer(char *why, size_t why_len)
{
	struct pt_region *r;
	int rc;

	(void)why;
	(void)why_len;
	CHECK(make_region(&r, 5, true), "region");
	rc = run("status %s", dir);
	CHECK(rc == 0 && strstr(out, "writer        running"), "status: %d\n%s", rc, out);
	/* The writer's checkpoint thread does it when asked. */
	rc = run("checkpoint %s --timeout 10", dir);
	CHECK(rc == 0 && strstr(out, "checkpointed by the writer at epoch 5"), "checkpoint: %d\n%s",
	      rc, out);
	pt_region_close(r);
	return true;
}

static bool bad_input(char *why, size_t why_len)
{
	char p[512];
	int rc, fd;

	(void)why;
	(void)why_len;
	rc = run("status");
	CHECK(rc == 64, "no directory: %d", rc);
	rc = run("verify %s %s", dir, dir);
	CHECK(rc == 64, "two directories: %d", rc);
	rc = run("inspect --bogus %s", dir);
	CHECK(rc == 64, "bad option: %d", rc);
	rc = run("status /tmp");
	CHECK(rc == 1 && strstr(out, "not a region"), "not a region: %d\n%s", rc, out);
	rc = run("verify /nonexistent-pagetrack-dir");
	CHECK(rc == 1, "missing directory: %d", rc);

	/* A flipped byte in the middle of the log: verify says where. */
	CHECK(make_region(NULL, 8, false), "region");
	snprintf(p, sizeof(p), "%s/log-0000000000000001.seg", dir);
	fd = open(p, O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, "X", 1, (off_t)(4 * t_page_size() * 2 + 100)) == 1, "corrupt");
	close(fd);
	rc = run("verify %s", dir);
	CHECK(rc == 1 && strstr(out, "BAD") && strstr(out, "log-0000000000000001.seg at offset") &&
	      strstr(out, "bad magic or checksum"), "verify a corrupt log: %d\n%s", rc, out);
	rc = run("inspect %s", dir);
	CHECK(rc == 0 && strstr(out, "bad magic or checksum"), "inspect a corrupt log: %d\n%s", rc, out);
	return true;
}

/*
 * A checkpoint writes an image page before its table entry and both before
 * the header: verify running meanwhile reads a page its entry does not
 * describe.  Here the image is left as a checkpoint cut half way leaves it
 * (a page of a record after the image's epoch written, its entry not):
 * verify must not call it corrupt, since recovery repairs it from the log.
 * A page no record rewrites, damaged the same way, is corrupt.
 */
static bool checkpoint_half_done(char *why, size_t why_len)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = t_page_size();
	struct pt_image_header h;
	struct pt_region *r;
	char p[512], *m;
	int ret, rc, fd;

	(void)why;
	(void)why_len;
	t_tmpdir_empty(dir);
	rmdir(dir);
	ret = pt_region_create(&r, dir, NPAGES * ps, &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	for (int e = 1; e <= 4; e++) {
		m[(size_t)e * ps] = (char)e;
		CHECK(pt_region_sync(r) == e, "sync %d", e);
	}
	CHECK(pt_region_checkpoint(r) == 4, "checkpoint");
	m[5 * ps] = 'Z';
	CHECK(pt_region_sync(r) == 5, "sync 5");
	CHECK(pt_region_close(r) == 0, "close");

	snprintf(p, sizeof(p), "%s/image", dir);
	fd = open(p, O_RDWR);
	CHECK(fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h), "image header");
	{
		struct pt_image_header h1;

		/* The checkpoint wrote the other slot: the higher seq. */
		CHECK(pread(fd, &h1, sizeof(h1), (off_t)ps) == (ssize_t)sizeof(h1), "slot 1");
		if (h1.seq > h.seq)
			h = h1;
	}
	CHECK(h.epoch == 4, "image at epoch %llu", (unsigned long long)h.epoch);
	/* Page 5 as record 5 has it, its entry still "never written". */
	CHECK(pwrite(fd, "Z", 1, (off_t)(h.data_offset + 5 * ps)) == 1, "write page 5");
	rc = run("verify %s", dir);
	CHECK(rc == 0 && strstr(out, "NOTE  image page 5") && strstr(out, "recovery repairs it") &&
	      !strstr(out, "BAD"), "verify of a half-done checkpoint: %d\n%s", rc, out);
	/* Page 2 was checkpointed at epoch 2 and no later record rewrites it. */
	CHECK(pwrite(fd, "Y", 1, (off_t)(h.data_offset + 2 * ps + 7)) == 1, "write page 2");
	close(fd);
	rc = run("verify %s", dir);
	CHECK(rc == 1 && strstr(out, "BAD   image page 2 ") && strstr(out, "1 problems"),
	      "verify of a corrupt page: %d\n%s", rc, out);
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "good-region", good_region },
		{ "running-writer", running_writer },
		{ "bad-input", bad_input },
		{ "checkpoint-half-done", checkpoint_half_done },
	};
	const char *o = getenv("O") ? getenv("O") : "build";

	snprintf(tool, sizeof(tool), "%s/pagetrack", o);
	if (access(tool, X_OK)) {
		printf("%s not built: run make first\n", tool);
		return T_FAIL;
	}
	snprintf(dir, sizeof(dir), "/dev/shm/pt-region-tool-XXXXXX");
	if (!mkdtemp(dir))
		DIE("mkdtemp: %s", strerror(errno));
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	t_tmpdir_remove(dir);
	return t_exit();
}
