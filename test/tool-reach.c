/* tool-reach: verify, status and recover on a region that lost durable epochs (newest segment deleted) or holds another region's image. */
#include <sys/wait.h>

#include "harness.h"
#include "format.h"
#include "pagelog.h"

#define NPAGES 16
#define EPOCHS 12

static char dir[128], other[128], tool[256], out[65536];

/* "pagetrack ARGS" into out: the exit status. */
#define run(...) t_run_tool(out, sizeof(out), __VA_ARGS__)

/*
 * A region in d of EPOCHS epochs, one page each, closed cleanly, with no
 * checkpoint (every epoch is in the log) and small segments (several).
 */
static bool make_region(const char *d)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .segment_bytes = 4 * t_page_size() };
	struct pt_region *r;
	char *m;
	int ret;

	t_tmpdir_empty(d);
	rmdir(d);
	ret = pt_region_create(&r, d, NPAGES * t_page_size(), &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	for (int e = 1; e <= EPOCHS; e++) {
		m[(size_t)(e % NPAGES) * t_page_size()] = (char)e;
		CHECK(pt_region_sync(r) == e, "sync %d", e);
	}
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	return true;
}

/* The newest segment's path in d, and its first epoch. */
static bool newest_segment(const char *d, char *path, size_t len, uint64_t *first_epoch)
{
	struct pt_segment_header h;
	DIR *dp = opendir(d);
	struct dirent *de;
	char best[256] = "";
	int fd;

	CHECK(dp, "opendir %s", d);
	while ((de = readdir(dp)))
		if (!strncmp(de->d_name, "log-", 4) && strcmp(de->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", de->d_name);
	closedir(dp);
	CHECK(best[0], "no segment in %s", d);
	snprintf(path, len, "%s/%s", d, best);
	fd = open(path, O_RDONLY);
	CHECK(fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h), "read %s", path);
	close(fd);
	*first_epoch = h.first_epoch;
	return true;
}

static bool good_region(char *why, size_t why_len)
{
	char want[64];
	int rc;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir), "region");
	rc = run("verify %s", dir);
	CHECK(rc == 0 && strstr(out, "0 problems"), "verify: %d\n%s", rc, out);
	rc = run("status %s", dir);
	snprintf(want, sizeof(want), "image and log reach %d, durable %d", EPOCHS, EPOCHS);
	CHECK(rc == 0 && strstr(out, want) && !strstr(out, "lost"), "status: %d\n%s", rc, out);
	rc = run("status --json %s", dir);
	CHECK(rc == 0 && strstr(out, "\"lost_durable_epochs\":null"), "status --json: %d\n%s", rc, out);
	rc = run("recover %s", dir);
	snprintf(want, sizeof(want), "recovered epoch %d\n", EPOCHS);
	CHECK(rc == 0 && strstr(out, want), "recover: %d\n%s", rc, out);
	return true;
}

/*
 * The newest segment deleted after a clean close: nothing is torn, the log
 * just ends early.  Every command must say that durable epochs are lost;
 * only recover --accept-loss goes on.
 */
static bool lost_segment(char *why, size_t why_len)
{
	char seg[512], want[128], json[128];
	uint64_t first;
	int rc;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir), "region");
	CHECK(newest_segment(dir, seg, sizeof(seg), &first), "newest segment");
	CHECK(first > 1 && first <= EPOCHS, "the newest segment starts at epoch %llu: want "
	      "several segments", (unsigned long long)first);
	CHECK(unlink(seg) == 0, "unlink %s", seg);
	if (first == EPOCHS)
		snprintf(want, sizeof(want), "durable epoch %d cannot be reached", EPOCHS);
	else
		snprintf(want, sizeof(want), "durable epochs %llu to %d cannot be reached",
			 (unsigned long long)first, EPOCHS);

	rc = run("verify %s", dir);
	CHECK(rc == 1 && strstr(out, want), "verify must fail and say %s: %d\n%s", want, rc, out);
	rc = run("status %s", dir);
	CHECK(rc == 1 && strstr(out, "lost ") && strstr(out, want), "status: %d\n%s", rc, out);
	rc = run("status --json %s", dir);
	snprintf(json, sizeof(json), "\"lost_durable_epochs\":[%llu,%d]", (unsigned long long)first,
		 EPOCHS);
	CHECK(rc == 1 && strstr(out, json), "status --json must hold %s: %d\n%s", json, rc, out);
	rc = run("recover %s", dir);
	CHECK(rc == 1 && strstr(out, want) && strstr(out, "--accept-loss"),
	      "recover without --accept-loss: %d\n%s", rc, out);
	rc = run("verify %s", dir);
	CHECK(rc == 1, "recover without --accept-loss changed the directory: verify %d\n%s", rc, out);
	rc = run("recover --accept-loss %s", dir);
	snprintf(json, sizeof(json), "recovered epoch %llu,", (unsigned long long)first - 1);
	CHECK(rc == 0 && strstr(out, json) && strstr(out, "accepting the loss") && strstr(out, want),
	      "recover --accept-loss: %d\n%s", rc, out);
	rc = run("verify %s", dir);
	CHECK(rc == 0, "verify after the loss was accepted: %d\n%s", rc, out);
	rc = run("recover %s", dir);
	CHECK(rc == 0, "recover after the loss was accepted: %d\n%s", rc, out);
	return true;
}

/* Another region's image (same size, another history) copied over this one's. */
static bool foreign_image(char *why, size_t why_len)
{
	char from[256], to[256], buf[65536];
	ssize_t n;
	int in, o, rc;

	(void)why;
	(void)why_len;
	CHECK(make_region(dir) && make_region(other), "regions");
	snprintf(from, sizeof(from), "%s/image", other);
	snprintf(to, sizeof(to), "%s/image", dir);
	in = open(from, O_RDONLY);
	o = open(to, O_WRONLY | O_TRUNC);
	CHECK(in >= 0 && o >= 0, "open images");
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(o, buf, (size_t)n) == n, "copy");
	close(in);
	close(o);

	rc = run("verify %s", dir);
	CHECK(rc == 1 && strstr(out, "another history") && strstr(out, "copied from another region"),
	      "verify must fail with a history message: %d\n%s", rc, out);
	rc = run("status %s", dir);
	CHECK(rc == 1 && strstr(out, "foreign "), "status: %d\n%s", rc, out);
	rc = run("recover %s", dir);
	CHECK(rc == 1, "recover of a foreign image: %d\n%s", rc, out);
	rc = run("recover --accept-loss %s", dir);
	CHECK(rc == 1, "recover --accept-loss of a foreign image: %d\n%s", rc, out);
	return true;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "good-region", good_region },
		{ "lost-newest-segment", lost_segment },
		{ "foreign-image", foreign_image },
	};
	const char *o = getenv("O") ? getenv("O") : "build";

	snprintf(tool, sizeof(tool), "%s/pagetrack", o);
	if (access(tool, X_OK)) {
		printf("%s not built: run make first\n", tool);
		return T_FAIL;
	}
	snprintf(dir, sizeof(dir), "/dev/shm/pt-tool-reach-XXXXXX");
	snprintf(other, sizeof(other), "/dev/shm/pt-tool-reach-other-XXXXXX");
	if (!mkdtemp(dir) || !mkdtemp(other))
		DIE("mkdtemp: %s", strerror(errno));
	t_run_cells(cells, sizeof(cells) / sizeof(cells[0]));
	t_tmpdir_remove(dir);
	t_tmpdir_remove(other);
	return t_exit();
}
