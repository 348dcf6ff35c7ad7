/* tool-untrusted: pagetrack's subcommands on files another local user can plant: crafted /dev/shm names, FIFOs in a region directory and in /dev/shm. */
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "format.h"
#include "pagelog.h"
#include "image.h"

#define NPAGES 16

static char dir[128], tool[256], out[65536];

/*
 * Run "timeout 10 pagetrack ARGS" (stderr too) into out; returns the exit
 * status, 124 when it hung.  With json, stdout alone is piped into a JSON
 * parser instead, which says "json: valid, N shared" (N shared replicas
 * listed) or "json: invalid".
 */
static int run(bool json, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(bool json, const char *fmt, ...)
{
	char cmd[1400], args[900];
	va_list ap;
	size_t n = 0;
	FILE *p;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	if (json)
		snprintf(cmd, sizeof(cmd), "json=$(timeout 10 %s %s); rc=$?; printf '%%s' \"$json\" | "
			 "python3 -c 'import json,sys; d = json.load(sys.stdin); print(\"json: valid, "
			 "%%d shared\" %% len(d.get(\"shared_replicas\", [])))' 2>&1 || "
			 "echo 'json: invalid'; exit $rc", tool, args);
	else
		snprintf(cmd, sizeof(cmd), "timeout 10 %s %s 2>&1", tool, args);
	p = popen(cmd, "r");
	if (!p)
		DIE("popen");
	while (n < sizeof(out) - 1 && fgets(out + n, (int)(sizeof(out) - n), p))
		n += strlen(out + n);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool make_region(uint64_t *history)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD,
				    .segment_bytes = 4 * 4096 };
	struct pt_region *r;
	struct pt_image_header h;
	char p[256], *m;
	int ret, fd;

	t_tmpdir_empty(dir);
	rmdir(dir);
	ret = pt_region_create(&r, dir, NPAGES * t_page_size(), &o);
	CHECK(ret == 0, "create: %s", strerror(-ret));
	m = pt_region_base(r);
	for (int e = 1; e <= 6; e++) {
		m[(size_t)(e % NPAGES) * t_page_size()] = (char)e;
		CHECK(pt_region_sync(r) == e, "sync %d", e);
	}
	ret = pt_region_close(r);
	CHECK(ret == 0, "close: %s", strerror(-ret));
	if (history) {
		snprintf(p, sizeof(p), "%s/image", dir);
		fd = open(p, O_RDONLY);
		CHECK(fd >= 0 && pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h), "image header");
		close(fd);
		*history = h.history_id;
	}
	return true;
}

/*
 * A file in /dev/shm named like a shared replica, holding a control block
 * of the region's history so that status lists it: its name, chosen by
 * whoever made it, must come out as one JSON string, not as keys.
 */
static bool shm_name_json(char *why, size_t why_len)
{
	static const char name[] = "/dev/shm/pagetrack-x\",\"writer\":true,\"y\":{\"\\\n}";
	struct pt_shared_ctl ctl = { .version = PT_SHARED_VERSION, .copy_gen = { 1, 2 },
				     .next_gen = 3 };
	uint64_t history;
	bool ok = false;
	int rc, fd;

	CHECK(make_region(&history), "region");
	memcpy(ctl.magic, PT_SHARED_MAGIC, 8);
	ctl.size = sizeof(ctl);
	ctl.history_id = history;
	ctl.npages = NPAGES;
	ctl.page_size = t_page_size();
	fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	CHECK(fd >= 0, "create %s: %s", name, strerror(errno));
	if (pwrite(fd, &ctl, sizeof(ctl), 0) != (ssize_t)sizeof(ctl)) {
		snprintf(why, why_len, "write %s: %s", name, strerror(errno));
		goto out;
	}
	rc = run(true, "status --json %s", dir);
	if (rc || !strstr(out, "json: valid, 1 shared")) {
		snprintf(why, why_len, "status --json with a crafted /dev/shm name: exit %d\n%s", rc, out);
		goto out;
	}
	/* The text form must not let the name start lines of its own. */
	rc = run(false, "status %s", dir);
	if (rc || strstr(out, "\n}") || !strstr(out, "?}: epoch")) {
		snprintf(why, why_len, "status with a crafted /dev/shm name: exit %d\n%s", rc, out);
		goto out;
	}
	ok = true;
out:
	close(fd);
	unlink(name);
	return ok;
}

/* The subcommands that read a region directory, each with what it needs. */
static const char *const commands[] = {
	"status %s", "status --json %s", "verify %s", "inspect %s", "checkpoint --timeout 2 %s",
	"replica --once --name pt-untrusted-test %s", "recover %s",
};

/*
 * Replace the file name in the region with a FIFO (no one ever opens its
 * other end): no subcommand may hang, and each one that needs the file
 * must fail with a message; may_pass names (by their first word) the ones
 * that do not need it and may succeed.  Those that fail must say so.
 */
static bool fifo_in_region(const char *name, const char *may_pass, char *why, size_t why_len)
{
	char p[256];
	int rc;

	CHECK(make_region(NULL), "region");
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
	CHECK(mkfifo(p, 0600) == 0, "mkfifo %s: %s", p, strerror(errno));
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		size_t word = strcspn(commands[i], " ");
		char args[512], cmd[32];

		snprintf(args, sizeof(args), commands[i], dir);
		snprintf(cmd, sizeof(cmd), "%.*s", (int)word, commands[i]);
		rc = run(false, "%s", args);
		t_shm_remove("pt-untrusted-test");
		if (rc == 124) {
			snprintf(why, why_len, "pagetrack %s hangs on a FIFO named %s", args, name);
			return false;
		}
		if (rc == 0 && strstr(may_pass, cmd))
			continue;
		if (rc == 0 || !out[0]) {
			snprintf(why, why_len, "pagetrack %s with a FIFO named %s: exit %d, want an "
				 "error with a message\n%s", args, name, rc, out);
			return false;
		}
	}
	return true;
}

static bool fifo_image(char *why, size_t why_len)
{
	return fifo_in_region(PT_IMAGE_NAME, "", why, why_len);
}

static bool fifo_state(char *why, size_t why_len)
{
	return fifo_in_region(PT_STATE_NAME, "inspect", why, why_len);
}

static bool fifo_lock(char *why, size_t why_len)
{
	return fifo_in_region(PT_LOCK_NAME, "inspect replica", why, why_len);
}

/* The first segment, which holds every epoch. */
static bool fifo_segment(char *why, size_t why_len)
{
	char name[64];

	pt_segment_name(name, sizeof(name), 1);
	return fifo_in_region(name, "inspect", why, why_len);
}

/* A segment named past the newest one, as another user could add it:
 * the epochs are all there, so only verify must call it wrong. */
static bool fifo_next_segment(char *why, size_t why_len)
{
	char name[64];

	pt_segment_name(name, sizeof(name), 0x7fff);
	return fifo_in_region(name, "status inspect checkpoint replica recover", why, why_len);
}

/*
 * Anyone can make a FIFO in /dev/shm named like a shared replica: status
 * lists shared replicas by reading every such file and must pass it by;
 * a replica asked for that name must refuse it.
 */
static bool fifo_in_shm(char *why, size_t why_len)
{
	static const char fifo[] = "/dev/shm/pagetrack-pt-untrusted-fifo";
	bool ok = false;
	int rc;

	CHECK(make_region(NULL), "region");
	unlink(fifo);
	CHECK(mkfifo(fifo, 0666) == 0, "mkfifo %s: %s", fifo, strerror(errno));
	rc = run(false, "status %s", dir);
	if (rc) {
		snprintf(why, why_len, "status with a FIFO in /dev/shm: exit %d%s\n%s", rc,
			 rc == 124 ? " (hangs)" : "", out);
		goto out;
	}
	rc = run(true, "status --json %s", dir);
	if (rc) {
		snprintf(why, why_len, "status --json with a FIFO in /dev/shm: exit %d%s\n%s", rc,
			 rc == 124 ? " (hangs)" : "", out);
		goto out;
	}
	rc = run(false, "replica --once --name pt-untrusted-fifo %s", dir);
	if (rc == 0 || rc == 124 || !out[0]) {
		snprintf(why, why_len, "replica onto a FIFO in /dev/shm: exit %d%s\n%s", rc,
			 rc == 124 ? " (hangs)" : "", out);
		goto out;
	}
	ok = true;
out:
	t_shm_remove("pt-untrusted-fifo");
	return ok;
}

int main(void)
{
	static const struct t_cell cells[] = {
		{ "shm-name-json", shm_name_json },
		{ "fifo-image", fifo_image },
		{ "fifo-state", fifo_state },
		{ "fifo-lock", fifo_lock },
		{ "fifo-segment", fifo_segment },
		{ "fifo-next-segment", fifo_next_segment },
		{ "fifo-in-shm", fifo_in_shm },
	};
	const char *o = getenv("O") ? getenv("O") : "build";

	snprintf(tool, sizeof(tool), "%s/pagetrack", o);
	if (access(tool, X_OK)) {
		printf("%s not built: run make first\n", tool);
		return T_FAIL;
	}
	if (system("timeout --version >/dev/null 2>&1")) {
		printf("skip: timeout(1) is not installed, a hang could not be told apart\n");
		return T_SKIP;
	}
	snprintf(dir, sizeof(dir), "/dev/shm/pt-tool-untrusted-XXXXXX");
	if (!mkdtemp(dir))
		DIE("mkdtemp: %s", strerror(errno));
	for (size_t i = 0; i < sizeof(cells) / sizeof(cells[0]); i++) {
		if (cells[i].fn == shm_name_json && system("python3 -c 'import json' 2>/dev/null")) {
			t_cell_report(cells[i].name, T_SKIP, "python3 is needed to check the JSON");
			continue;
		}
		t_run_cell(&cells[i]);
	}
	t_tmpdir_remove(dir);
	return t_exit();
}
