/* net-status: the status records of publishers and followers: what a handle writes (epoch, lag in epochs and ms, rates, last error, stopped at close), what pt_net_status_read() makes of crafted, damaged and hostile files (live, stopped, gone, stale; a clear error for each bad one, never a crash or a hang), and `pagetrack status` in text, JSON and Prometheus forms on `publish` and `follow` processes (with --retain and --segment), killed -9 and stopped. */
#include <dirent.h>
#include <nats/nats.h>
#include <sched.h>
#include <xxhash.h>

#include "nettest.h"
#include "ntvisible.h"

static size_t ps;
static char host[64];

/* ---- crafted records (the layout of docs/network.md, written here anew) ---- */

struct rec {
	uint16_t version, role;
	uint32_t size, flags, interval;
	int32_t pid, last_error;
	uint64_t history, seq, lag_epochs, epochs, messages, pages, raw, wire, retries;
	uint64_t raw_rate, wire_rate, started, updated, error_ns;
	int64_t epoch, lag_ms;
	char host[64], stream[64], text[184];
};

static void put16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }	/* x86: little-endian */
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void seal(unsigned char *b)
{
	put64(b + 504, XXH3_64bits(b, 504));
}

static void craft(unsigned char *b, const struct rec *r)
{
	memset(b, 0, 512);
	memcpy(b, "PTNSTAT", 8);
	put16(b + 8, r->version);
	put16(b + 10, r->role);
	put32(b + 12, r->size);
	put32(b + 16, (uint32_t)r->pid);
	put32(b + 20, r->flags);
	put32(b + 24, r->interval);
	put32(b + 28, (uint32_t)r->last_error);
	put64(b + 32, r->history);
	put64(b + 40, (uint64_t)r->epoch);
	put64(b + 48, r->seq);
	put64(b + 56, r->lag_epochs);
	put64(b + 64, (uint64_t)r->lag_ms);
	put64(b + 72, r->epochs);
	put64(b + 80, r->messages);
	put64(b + 88, r->pages);
	put64(b + 96, r->raw);
	put64(b + 104, r->wire);
	put64(b + 112, r->retries);
	put64(b + 120, r->raw_rate);
	put64(b + 128, r->wire_rate);
	put64(b + 136, r->started);
	put64(b + 144, r->updated);
	put64(b + 152, r->error_ns);
	memcpy(b + 192, r->host, 64);
	memcpy(b + 256, r->stream, 64);
	memcpy(b + 320, r->text, 184);
	seal(b);
}

/* A good record of the follower of stream `stream`, by this process, now. */
static struct rec good_rec(const char *stream)
{
	struct rec r = { .version = 1, .role = 2, .size = 512, .interval = 1000,
			 .pid = (int32_t)getpid(), .history = 0x1234, .epoch = 7, .seq = 9,
			 .lag_epochs = 2, .lag_ms = 15, .epochs = 7, .messages = 9, .pages = 20,
			 .raw = 20 * 4096, .wire = 3000, .raw_rate = 4096, .wire_rate = 300 };

	r.updated = now_ns();
	r.started = r.updated - 5000000000ull;
	snprintf(r.host, sizeof(r.host), "%s", host);
	snprintf(r.stream, sizeof(r.stream), "%s", stream);
	return r;
}

static void write_file(const char *dir, const char *name, const void *b, size_t len, int mode)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, b, len) != (ssize_t)len) || fchmod(fd, (mode_t)mode) ||
	    close(fd))
		DIE("writing %s: %s", path, strerror(errno));
}

/* What pt_net_status_read() said of each file. */
struct seen {
	char file[128];
	int error;
	enum pt_net_state state;
	char message[256];
};

struct seen_list {
	struct seen v[64];
	int n;
};

static int collect(const struct pt_net_status *s, void *arg)
{
	struct seen_list *l = arg;
	struct seen *x;

	if (l->n == 64)
		DIE("more than 64 records");
	x = &l->v[l->n++];
	snprintf(x->file, sizeof(x->file), "%s", s->file);
	snprintf(x->message, sizeof(x->message), "%s", s->message);
	x->error = s->error;
	x->state = s->error ? 0 : s->state;
	if (!s->error && (!s->host || !s->stream || !s->last_error_text))
		DIE("%s: a good record with a NULL string", s->file);
	return 0;
}

static const struct seen *find(const struct seen_list *l, const char *file)
{
	for (int i = 0; i < l->n; i++)
		if (!strcmp(l->v[i].file, file))
			return &l->v[i];
	return NULL;
}

struct cell {
	const char *what;
	char file[64];
	int expect_error;		/* 0: a good record... */
	enum pt_net_state expect_state;	/* ...in this state */
};

/* A pid that is surely not running: a child that exited and was reaped. */
static int32_t dead_pid(void)
{
	pid_t pid = fork();

	if (pid < 0)
		DIE("fork");
	if (!pid)
		_exit(0);
	waitpid(pid, NULL, 0);
	return (int32_t)pid;
}

static int crafted(void)
{
	char *dir = strdup(nt_path("crafted"));
	struct pt_region *r;
	struct cell cells[32];
	struct seen_list seen = { .n = 0 };
	unsigned char b[1024];
	struct rec rc;
	int n = 0, failed = 0, err, bad = 0;

	printf("reader on crafted records:\n");
	if ((err = pt_region_create(&r, dir, 4 * ps, NULL)) || (err = pt_region_close(r)))
		DIE("region: %s", pt_strerror(err));
#define CELL(w, f, e, s) (cells[n] = (struct cell){ .what = (w), .expect_error = (e), \
						    .expect_state = (s) }, \
			  snprintf(cells[n].file, sizeof(cells[n].file), "%s", (f)), &cells[n++])
	rc = good_rec("c1");
	craft(b, &rc);
	write_file(dir, CELL("live", "net-status-follower-c1", 0, PT_NET_LIVE)->file, b, 512, 0600);
	rc = good_rec("c2");
	rc.flags = 1;
	craft(b, &rc);
	write_file(dir, CELL("stopped", "net-status-follower-c2", 0, PT_NET_STOPPED)->file, b, 512,
		   0600);
	rc = good_rec("c3");
	rc.pid = dead_pid();
	craft(b, &rc);
	write_file(dir, CELL("process gone", "net-status-follower-c3", 0, PT_NET_GONE)->file, b,
		   512, 0600);
	rc = good_rec("c4");
	rc.updated -= 60000000000ull;
	rc.started -= 60000000000ull;
	craft(b, &rc);
	write_file(dir, CELL("not updated", "net-status-follower-c4", 0, PT_NET_STALE)->file, b,
		   512, 0600);
	rc = good_rec("c5");
	rc.pid = dead_pid();
	snprintf(rc.host, sizeof(rc.host), "elsewhere.example");
	craft(b, &rc);
	/* Another host's pid means nothing here: judged by age only. */
	write_file(dir, CELL("other host, fresh", "net-status-follower-c5", 0, PT_NET_LIVE)->file, b,
		   512, 0600);
	rc.updated -= 60000000000ull;
	rc.started -= 60000000000ull;
	rc.stream[1] = '6';
	craft(b, &rc);
	write_file(dir, CELL("other host, old", "net-status-follower-c6", 0, PT_NET_STALE)->file, b,
		   512, 0600);
	rc = good_rec("c7");
	rc.role = 1;
	rc.last_error = -EAGAIN;
	rc.error_ns = now_ns();
	snprintf(rc.text, sizeof(rc.text), "stream c7: publishing epoch 8 part 0: timeout");
	craft(b, &rc);
	write_file(dir, CELL("publisher, error", "net-status-publisher-c7", 0, PT_NET_LIVE)->file, b,
		   512, 0600);

	rc = good_rec("d1");
	craft(b, &rc);
	write_file(dir, CELL("truncated", "net-status-follower-d1", -ENODATA, 0)->file, b, 100,
		   0600);
	write_file(dir, CELL("empty", "net-status-follower-d2", -ENODATA, 0)->file, b, 0, 0600);
	rc = good_rec("d3");
	craft(b, &rc);
	b[0] = 'X';
	write_file(dir, CELL("bad magic", "net-status-follower-d3", -EBADMSG, 0)->file, b, 512,
		   0600);
	rc = good_rec("d4");
	rc.version = 2;
	craft(b, &rc);
	write_file(dir, CELL("other version", "net-status-follower-d4", -EPROTO, 0)->file, b, 512,
		   0600);
	rc = good_rec("d5");
	craft(b, &rc);
	b[40] ^= 1;
	write_file(dir, CELL("checksum", "net-status-follower-d5", -EBADMSG, 0)->file, b, 512,
		   0600);
	rc = good_rec("d6");
	craft(b, &rc);
	b[512] = 0;
	write_file(dir, CELL("too long", "net-status-follower-d6", -EBADMSG, 0)->file, b, 513,
		   0600);
	rc = good_rec("d7");
	rc.role = 7;
	craft(b, &rc);
	write_file(dir, CELL("unknown role", "net-status-follower-d7", -EBADMSG, 0)->file, b, 512,
		   0600);
	rc = good_rec("d8");
	memset(rc.host, 'h', sizeof(rc.host));
	craft(b, &rc);
	write_file(dir, CELL("host not a string", "net-status-follower-d8", -EBADMSG, 0)->file, b,
		   512, 0600);
	rc = good_rec("d9");
	rc.last_error = -EIO;
	rc.error_ns = now_ns();
	snprintf(rc.text, sizeof(rc.text), "two\nlines");
	craft(b, &rc);
	write_file(dir, CELL("control byte", "net-status-follower-d9", -EBADMSG, 0)->file, b, 512,
		   0600);
	rc = good_rec("e1");
	craft(b, &rc);
	write_file(dir, CELL("under another name", "net-status-publisher-e1", -EBADMSG, 0)->file, b,
		   512, 0600);
	rc = good_rec("e2");
	rc.epoch = -5;
	craft(b, &rc);
	write_file(dir, CELL("negative epoch", "net-status-follower-e2", -EBADMSG, 0)->file, b, 512,
		   0600);
	rc = good_rec("e3");
	rc.stream[0] = '/';
	craft(b, &rc);
	write_file(dir, CELL("bad stream name", "net-status-follower-e3", -EBADMSG, 0)->file, b, 512,
		   0600);
	for (int i = 0; i < 512; i++)
		b[i] = (unsigned char)(i * 131 + 7);
	write_file(dir, CELL("noise", "net-status-follower-e4", -EBADMSG, 0)->file, b, 512, 0600);
	rc = good_rec("e5");
	craft(b, &rc);
	write_file(dir, CELL("group-writable", "net-status-follower-e5", -EPERM, 0)->file, b, 512,
		   0620);
	if (mkfifo(nt_path("crafted/net-status-follower-e6"), 0600))
		DIE("mkfifo: %s", strerror(errno));
	CELL("a FIFO", "net-status-follower-e6", -EMEDIUMTYPE, 0);
	if (symlink("net-status-follower-c1", nt_path("crafted/net-status-follower-e7")))
		DIE("symlink: %s", strerror(errno));
	CELL("a symbolic link", "net-status-follower-e7", -EMEDIUMTYPE, 0);
	if (mkdir(nt_path("crafted/net-status-publisher-e8"), 0700))
		DIE("mkdir: %s", strerror(errno));
	CELL("a directory", "net-status-publisher-e8", -EMEDIUMTYPE, 0);
	if (geteuid() == 0) {
		rc = good_rec("e9");
		craft(b, &rc);
		write_file(dir, CELL("another owner", "net-status-follower-e9", -EPERM, 0)->file, b,
			   512, 0600);
		if (chown(nt_path("crafted/net-status-follower-e9"), 65534, 65534))
			DIE("chown: %s", strerror(errno));
	} else {
		printf("  %-22s skipped [not root: cannot give a file to another owner]\n",
		       "another owner");
	}
	/* Temporary files are the writer's business: never listed. */
	write_file(dir, "net-status-follower-c1.tmp", "junk", 4, 0600);
#undef CELL

	if ((err = pt_net_status_read(dir, collect, &seen)))
		DIE("pt_net_status_read: %s", pt_net_last_error());
	for (int i = 0; i < n; i++) {
		const struct cell *c = &cells[i];
		const struct seen *s = find(&seen, c->file);
		bool ok = s && s->error == c->expect_error &&
			  (c->expect_error || s->state == c->expect_state) &&
			  (!c->expect_error || s->message[0]);

		bad += c->expect_error != 0;
		if (ok)
			printf("  %-22s done [%s]\n", c->what, s->error ? s->message : "checks");
		else
			printf("  %-22s FAILED: %s error %d state %d (want %d, %d) '%s'\n", c->what,
			       s ? "" : "not listed;", s ? s->error : 0, s ? (int)s->state : 0,
			       c->expect_error, (int)c->expect_state, s ? s->message : "");
		failed += !ok;
	}
	if (seen.n != n) {
		printf("  %d records listed, %d files made (the .tmp must not be)\n", seen.n, n);
		failed++;
	}
	for (int i = 1; i < seen.n; i++)
		if (strcmp(seen.v[i - 1].file, seen.v[i].file) >= 0) {
			printf("  not in the order of their names\n");
			failed++;
		}
	/* The directory itself is checked as the core checks it. */
	chmod(dir, 0770);
	err = pt_net_status_read(dir, collect, &(struct seen_list){ .n = 0 });
	chmod(dir, 0700);
	if (err != -EPERM) {
		printf("  a group-writable directory gave %d, not -EPERM\n", err);
		failed++;
	}
	if (symlink(dir, nt_path("crafted-link")) ||
	    (err = pt_net_status_read(nt_path("crafted-link"), collect,
				      &(struct seen_list){ .n = 0 })) != -ENOTDIR) {
		printf("  a symbolic link to the directory gave %d, not -ENOTDIR\n", err);
		failed++;
	}
	if ((err = pt_net_status_read(nt_path("nowhere"), collect, &seen)) != -ENOENT) {
		printf("  no directory gave %d, not -ENOENT\n", err);
		failed++;
	}

	/* The command on the same directory: every bad file named, and the
	 * region still reported (exit 0: the region is fine). */
	{
		char *argv[] = { (char *)nt_tool(), "status", (char *)dir, NULL };
		char *argj[] = { (char *)nt_tool(), "status", "--json", (char *)dir, NULL };
		char *argp[] = { (char *)nt_tool(), "status", "--prometheus", (char *)dir, NULL };
		char *out, *p, why[256] = "";
		int lines = 0, st;

		st = nt_run(argv, nt_path("crafted.txt"));
		out = nt_read_file(nt_path("crafted.txt"));
		for (p = out; p && (p = strstr(p, ": cannot be used: ")); p++)
			lines++;
		if (st || !out || lines != bad || !strstr(out, "GONE") || !strstr(out, "STALE") ||
		    !strstr(out, "last error") || !strstr(out, "stopped")) {
			printf("  status (exit %d) named %d bad records of %d:\n%s\n", st, lines, bad,
			       out ? out : "");
			failed++;
		}
		free(out);
		st = nt_run(argj, nt_path("crafted.json"));
		out = nt_read_file(nt_path("crafted.json"));
		if (st || !out || !strstr(out, "\"state\":\"gone\"") ||
		    !strstr(out, "\"error\":\"bad magic or checksum") ||
		    !strstr(out, "\"lag_epochs\":2")) {
			printf("  status --json (exit %d):\n%s\n", st, out ? out : "");
			failed++;
		}
		free(out);
		st = nt_run(argp, nt_path("crafted.prom"));
		out = nt_read_file(nt_path("crafted.prom"));
		char live[300], stale[300];

		snprintf(live, sizeof(live), "dir=\"%s\",role=\"follower\",stream=\"c1\"", dir);
		snprintf(stale, sizeof(stale), "dir=\"%s\",role=\"follower\",stream=\"c4\"", dir);
		if (st || !out || nt_prom_check(out, why, sizeof(why)) ||
		    !strstr(out, "pagetrack_net_record_error{") ||
		    nt_prom_value(out, "pagetrack_net_up", live) != 1 ||
		    nt_prom_value(out, "pagetrack_net_up", stale) != 0 ||
		    nt_prom_value(out, "pagetrack_net_lag_epochs", live) != 2) {
			printf("  status --prometheus (exit %d): %s\n%s\n", st, why, out ? out : "");
			failed++;
		}
		free(out);
	}
	printf("  %d cells, %s\n", n, failed ? "FAILED" : "done");
	free(dir);
	return failed;
}

/* ---- a handle's own record ---------------------------------------------- */

struct one {
	bool found;
	struct pt_net_status st;
	char stream[64], text[256];
	int error;
};

static int take_one(const struct pt_net_status *s, void *arg)
{
	struct one *o = arg;

	if (!s->error && s->gathered)
		return 0;	/* a follower's, through the stream's server */
	if (s->error) {
		o->error = s->error;
		return 0;
	}
	o->found = true;
	o->st = *s;
	snprintf(o->stream, sizeof(o->stream), "%s", s->stream);
	snprintf(o->text, sizeof(o->text), "%s", s->last_error_text);
	o->st.stream = o->stream;
	o->st.last_error_text = o->text;
	o->st.host = o->st.file = o->st.message = NULL;
	return 0;
}

/* The gathered record of id in dir (file net-status-follower-<stream>@id),
 * or any error a gathered file has. */
struct gathered {
	const char *id;
	bool found;
	struct pt_net_status st;
	char bad[256];
};

static int take_gathered(const struct pt_net_status *s, void *arg)
{
	struct gathered *g = arg;
	const char *at = strchr(s->file, '@');

	if (!at)
		return 0;
	if (s->error)
		snprintf(g->bad, sizeof(g->bad), "%s: %s", s->file, s->message);
	else if (!s->gathered)
		snprintf(g->bad, sizeof(g->bad), "%s: not marked gathered", s->file);
	else if (g->id && !strcmp(at + 1, g->id)) {
		g->found = true;
		g->st = *s;
		g->st.file = g->st.host = g->st.stream = g->st.message = NULL;
		g->st.last_error_text = NULL;
	}
	return 0;
}

/* The number of gathered records in dir (id's in *g, when there). */
static int gathered_in(const char *dir, struct gathered *g)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	g->found = false;
	g->bad[0] = 0;
	if (pt_net_status_read(dir, take_gathered, g))
		DIE("pt_net_status_read(%s): %s", dir, pt_net_last_error());
	if (g->bad[0])
		DIE("a gathered record that is not right: %s", g->bad);
	if (!d)
		DIE("%s: %s", dir, strerror(errno));
	while ((de = readdir(d)))
		n += strchr(de->d_name, '@') != NULL;
	closedir(d);
	return n;
}

/* The one good record in dir into *o (its strings point into *o). */
static void record_of(const char *dir, struct one *o)
{
	int err;

	memset(o, 0, sizeof(*o));
	err = pt_net_status_read(dir, take_one, o);
	if (err)
		DIE("pt_net_status_read(%s): %s", dir, pt_net_last_error());
	if (!o->found || o->error)
		DIE("%s: no good status record (error %d)", dir, o->error);
}

static void check(bool ok, const char *what, const struct pt_net_status *s)
{
	if (ok)
		return;
	DIE("%s: record of %s epoch %lld lag %llu epochs %lld ms, rate %llu/%llu, state %d, "
	    "error %d '%s'", what, s->role == PT_NET_PUBLISHER ? "publisher" : "follower",
	    (long long)s->epoch, (unsigned long long)s->lag_epochs, (long long)s->lag_ms,
	    (unsigned long long)s->bytes_raw_per_s, (unsigned long long)s->bytes_wire_per_s,
	    (int)s->state, s->last_error, s->last_error_text);
}

static void write_epochs(struct pt_region *w, int from, int to, int pages)
{
	unsigned char *mem = pt_region_base(w);

	for (int e = from; e <= to; e++) {
		for (int k = 0; k < pages; k++)
			memset(mem + (size_t)((e * 7 + k) % (int)(pt_region_size(w) / ps)) * ps + 64 * k,
			       e, 64);
		if (pt_region_sync(w) != e)
			DIE("sync %d", e);
	}
}

static int handles(struct natsd *server)
{
	struct pt_region_opts wo = { .sz = sizeof(wo) };
	struct pt_net_opts o = { .sz = sizeof(o), .urls = server->url, .stream = "st" };
	char *src = strdup(nt_path("src")), *dst = strdup(nt_path("dst"));
	struct pt_publisher_stats ps_ = { .sz = sizeof(ps_) };
	struct pt_follower_stats fs = { .sz = sizeof(fs) };
	struct pt_publisher *p;
	struct pt_follower *f;
	struct pt_region *w;
	struct stat sb;
	struct one r;
	uint64_t start, raw1;
	int err;

	printf("records of handles in this process:\n");
	if ((err = pt_region_create(&w, src, 64 * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	write_epochs(w, 1, 5, 3);
	if (pt_publisher_open(&p, src, &o))
		DIE("publisher: %s", pt_net_last_error());
	record_of(src, &r);
	check(r.st.role == PT_NET_PUBLISHER && r.st.state == PT_NET_LIVE && r.st.pid == getpid() &&
	      !strcmp(r.st.stream, "st") && r.st.epoch == 0 && r.st.lag_epochs == 5 &&
	      r.st.history_id == pt_region_history(w) && !r.st.last_error, "at open", &r.st);
	if (stat(nt_path("src/net-status-publisher-st"), &sb) || (sb.st_mode & 0777) != 0600 ||
	    !access(nt_path("src/net-status-publisher-st.tmp"), F_OK))
		DIE("the record is not mode 0600, or its temporary file stayed");
	printf("  publisher at open: epoch 0, lag 5 epochs: done\n");

	/* One epoch a call (a run with timeout 0 stops after the first),
	 * the record rewritten by the next run once a second passed. */
	nt_sleep_ms(1100);
	if (pt_publisher_run(p, 0) != 1)
		DIE("run: %s", pt_net_last_error());
	record_of(src, &r);
	check(r.st.epoch == 0 && r.st.lag_epochs == 5 && r.st.lag_ms >= 1000, "behind", &r.st);
	pt_publisher_stats(p, &ps_);
	raw1 = ps_.bytes_raw;
	nt_sleep_ms(1100);
	if (pt_publisher_run(p, 0) != 1)
		DIE("run: %s", pt_net_last_error());
	record_of(src, &r);
	check(r.st.epoch == 1 && r.st.lag_epochs == 4 && r.st.bytes_raw == raw1 &&
	      r.st.bytes_raw_per_s > 0 && r.st.bytes_raw_per_s <= raw1 &&
	      r.st.bytes_wire_per_s > 0 && r.st.epochs == 1, "one epoch in a second", &r.st);
	printf("  publisher behind: lag 4 epochs %lld ms, %llu page bytes/s: done\n",
	       (long long)r.st.lag_ms, (unsigned long long)r.st.bytes_raw_per_s);
	for (start = nt_ms(); ps_.epoch < 5 && nt_ms() - start < 30000;) {
		pt_publisher_run(p, 200);
		pt_publisher_stats(p, &ps_);
	}
	nt_sleep_ms(1100);
	if (pt_publisher_run(p, 0) != 0)
		DIE("run: %s", pt_net_last_error());
	record_of(src, &r);
	check(r.st.epoch == 5 && r.st.lag_epochs == 0 && r.st.lag_ms == 0, "caught up", &r.st);
	printf("  publisher caught up: lag 0: done\n");

	/* The follower: no record until its standby exists, then one epoch
	 * a call too, behind the stream's 5. */
	if (pt_follower_open(&f, dst, &o))
		DIE("follower: %s", pt_net_last_error());
	if ((err = pt_net_status_read(dst, take_one, &r)) != -ENOENT)
		DIE("a record before the standby exists? %d", err);
	for (start = nt_ms(); fs.epoch < 1 && nt_ms() - start < 30000;) {
		if ((err = pt_follower_run(f, 0)) < 0 && err != -EAGAIN)
			DIE("follower: %s", pt_net_last_error());
		pt_follower_stats(f, &fs);
	}
	nt_sleep_ms(1100);
	for (start = nt_ms(); fs.epoch < 2 && nt_ms() - start < 30000;) {
		if ((err = pt_follower_run(f, 0)) < 0 && err != -EAGAIN)
			DIE("follower: %s", pt_net_last_error());
		pt_follower_stats(f, &fs);
	}
	record_of(dst, &r);
	check(r.st.role == PT_NET_FOLLOWER && r.st.state == PT_NET_LIVE && r.st.epoch >= 1 &&
	      r.st.lag_epochs == 5 - (uint64_t)r.st.epoch && r.st.history_id == pt_region_history(w),
	      "follower behind", &r.st);
	printf("  follower behind: epoch %lld, lag %llu epochs: done\n", (long long)r.st.epoch,
	       (unsigned long long)r.st.lag_epochs);
	for (start = nt_ms(); fs.epoch < 5 && nt_ms() - start < 30000;) {
		pt_follower_run(f, 200);
		pt_follower_stats(f, &fs);
	}
	nt_sleep_ms(1100);
	pt_follower_run(f, 0);
	record_of(dst, &r);
	check(r.st.epoch == 5 && r.st.lag_epochs == 0 && r.st.lag_ms >= 0 && r.st.epochs == 5 &&
	      r.st.bytes_raw == fs.bytes_raw, "follower caught up", &r.st);
	printf("  follower caught up: done\n");

	/* An error is in the record at once, with the library's words. */
	natsd_stop(server);
	write_epochs(w, 6, 6, 2);
	for (start = nt_ms(); (err = pt_publisher_run(p, 200)) >= 0 && nt_ms() - start < 30000;)
		;
	if (err != -EAGAIN)
		DIE("publisher without a server: %d", err);
	record_of(src, &r);
	check(r.st.last_error == -EAGAIN && strstr(r.st.last_error_text, "stream st") &&
	      r.st.last_error_ns && r.st.lag_epochs == 1, "an error", &r.st);
	printf("  error recorded: '%s': done\n", r.st.last_error_text);
	natsd_run(server, NULL);
	for (start = nt_ms(); ps_.epoch < 6 && nt_ms() - start < 60000;) {
		pt_publisher_run(p, 200);
		pt_publisher_stats(p, &ps_);
	}
	if (ps_.epoch != 6)
		DIE("the publisher did not resume after the server came back");

	pt_follower_close(f);
	pt_publisher_close(p);
	record_of(src, &r);
	check(r.st.state == PT_NET_STOPPED && r.st.epoch == 6, "publisher closed", &r.st);
	record_of(dst, &r);
	check(r.st.state == PT_NET_STOPPED, "follower closed", &r.st);
	printf("  closed: both stopped: done\n");
	pt_region_close(w);
	free(src);
	free(dst);
	return 0;
}

/* ---- the commands --------------------------------------------------------- */


/* Every thread of the publish process runs SCHED_BATCH (it yields to the
 * writer): its connection's threads inherit the policy set before them. */
static void all_batch(pid_t pid)
{
	char path[64];
	struct dirent *d;
	int n = 0;
	DIR *dp;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if (!(dp = opendir(path)))
		DIE("%s: %s", path, strerror(errno));
	while ((d = readdir(dp))) {
		int policy;

		if (d->d_name[0] == '.')
			continue;
		policy = sched_getscheduler((pid_t)atoi(d->d_name));
		if (policy < 0 && errno == ESRCH)
			continue;	/* a thread that just ended */
		if (policy != SCHED_BATCH)
			DIE("publish thread %s: policy %d, not SCHED_BATCH", d->d_name, policy);
		n++;
	}
	closedir(dp);
	if (n < 2)
		DIE("publish: %d threads seen", n);
	printf("  publish: its %d threads SCHED_BATCH: done\n", n);
}


static char follower_id[32];		/* the follow process's, gathered */

/* One value put in the stream's status bucket, as anyone allowed to could. */
static void status_put(natsConnection *nc, const char *key, const void *b, int len)
{
	char subject[128];

	snprintf(subject, sizeof(subject), "$KV.st2-status.%s", key);
	if (natsConnection_Publish(nc, subject, b, len) != NATS_OK)
		DIE("publishing %s", subject);
}

/*
 * The writer's directory lists the follower of its stream (through the
 * stream's server), in status, --json and --prometheus; values put in the
 * bucket by others are listed only if they check whole.
 */
static void remote_followers(struct natsd *server, const char *src, pid_t pub, pid_t fol,
			     int epochs, uint64_t history)
{
	static const char *const refused[][2] = {
		{ "follower-zz", "a key that is not a follower's" },
		{ "follower-00000000000000aa", "a value of 100 bytes" },
		{ "follower-00000000000000bb", "a byte changed after the checksum" },
		{ "follower-00000000000000cc", "a record of another stream" },
		{ "follower-00000000000000dd", "a publisher's record" },
		{ "follower-00000000000000ee", "a record of another history" },
	};
	struct gathered g = { .id = NULL };
	char *argv[] = { (char *)nt_tool(), "status", NULL, NULL, NULL };
	char *out, why[256], labels[600], *id = follower_id;
	unsigned char b[512];
	natsConnection *nc;
	struct rec x;
	uint64_t start;
	DIR *d;
	struct dirent *de;
	int st;

	/* The follower's record, gathered by the publisher. */
	id[0] = 0;
	for (start = nt_ms(); nt_ms() - start < 30000 && !id[0]; nt_sleep_ms(100)) {
		if (!(d = opendir(src)))
			DIE("%s: %s", src, strerror(errno));
		while ((de = readdir(d)))
			if (strchr(de->d_name, '@') && !strstr(de->d_name, ".tmp"))
				snprintf(id, sizeof(follower_id), "%s", strchr(de->d_name, '@') + 1);
		closedir(d);
	}
	g.id = id;
	for (start = nt_ms(); nt_ms() - start < 30000; nt_sleep_ms(100))
		if (gathered_in(src, &g) && g.found && g.st.epoch == epochs)
			break;
	if (!g.found || g.st.epoch != epochs || g.st.pid != fol || g.st.role != PT_NET_FOLLOWER ||
	    g.st.state != PT_NET_LIVE || g.st.history_id != history || g.st.bytes_raw == 0)
		DIE("the follower is not listed in the writer's directory at epoch %d (%s: epoch "
		    "%lld, pid %d, state %d)", epochs, g.found ? "found" : "not found",
		    (long long)g.st.epoch, g.st.pid, (int)g.st.state);
	argv[2] = (char *)src;
	st = nt_run(argv, nt_path("status-remote.txt"));
	out = nt_read_file(nt_path("status-remote.txt"));
	snprintf(why, sizeof(why), "from stream st2, pid %d on %s (through the stream's server), "
		 "id %s: running", fol, host, id);
	if (st || !out || !strstr(out, why))
		DIE("status (exit %d), not '%s':\n%s", st, why, out ? out : "");
	free(out);
	argv[2] = "--json";
	argv[3] = (char *)src;
	st = nt_run(argv, nt_path("status-remote.json"));
	out = nt_read_file(nt_path("status-remote.json"));
	snprintf(why, sizeof(why), "\"gathered_id\":\"%s\"", id);
	if (st || !out || !strstr(out, why) || !strstr(out, "\"role\":\"follower\""))
		DIE("status --json (exit %d), no '%s':\n%s", st, why, out ? out : "");
	free(out);
	argv[2] = "--prometheus";
	st = nt_run(argv, nt_path("status-remote.prom"));
	out = nt_read_file(nt_path("status-remote.prom"));
	snprintf(labels, sizeof(labels), "dir=\"%s\",role=\"follower\",stream=\"st2\","
		 "follower=\"%s\"", src, id);
	if (st || !out || nt_prom_check(out, why, sizeof(why)) ||
	    nt_prom_value(out, "pagetrack_net_epoch", labels) != epochs ||
	    nt_prom_value(out, "pagetrack_net_up", labels) != 1)
		DIE("status --prometheus (exit %d): %s\n%s", st, why, out ? out : "");
	free(out);
	printf("  the follower listed in the writer's directory (id %s): done\n", id);

	/* Values put by others: each refused whole, then a good one, put
	 * last, listed (so the ones before were looked at). */
	if (natsConnection_ConnectTo(&nc, server->url) != NATS_OK)
		DIE("raw connection");
	x = good_rec("st2");
	x.pid = (int32_t)pub;
	x.history = history;
	craft(b, &x);
	status_put(nc, refused[0][0], b, 512);
	status_put(nc, refused[1][0], b, 100);
	b[100] ^= 1;
	status_put(nc, refused[2][0], b, 512);
	x = good_rec("other");
	x.history = history;
	craft(b, &x);
	status_put(nc, refused[3][0], b, 512);
	x = good_rec("st2");
	x.role = 1;
	x.history = history;
	craft(b, &x);
	status_put(nc, refused[4][0], b, 512);
	x = good_rec("st2");
	x.history = history ^ 1;
	craft(b, &x);
	status_put(nc, refused[5][0], b, 512);
	x = good_rec("st2");
	x.history = history;
	craft(b, &x);
	status_put(nc, "follower-00000000000000ff", b, 512);
	g.id = "00000000000000ff";
	for (start = nt_ms(); nt_ms() - start < 30000; nt_sleep_ms(100))
		if (gathered_in(src, &g) && g.found)
			break;
	if (!g.found || g.st.epoch != x.epoch || g.st.pid != x.pid)
		DIE("a good record put in the bucket is not listed");
	if (gathered_in(src, &g) != 2)
		DIE("%d gathered records, want 2 (the follower's and the good one)",
		    gathered_in(src, &g));
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		printf("    %-40s not listed: done\n", refused[i][1]);
	natsConnection_Destroy(nc);
}


/* The highest log segment number in dir (log-<seq>.seg), and the bytes of
 * its segments. */
static uint64_t segments(const char *dir, uint64_t *bytes)
{
	unsigned long long seq, top = 0;
	struct dirent *de;
	DIR *d = opendir(dir);
	char tail[8];

	*bytes = 0;
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct stat sb;

		if (sscanf(de->d_name, "log-%16llx.se%1s", &seq, tail) != 2 ||
		    fstatat(dirfd(d), de->d_name, &sb, 0))
			continue;
		*bytes += (uint64_t)sb.st_size;
		if (seq > top)
			top = seq;
	}
	closedir(d);
	return top;
}

static int commands(struct natsd *server)
{
	struct pt_region_opts wo = { .sz = sizeof(wo) };
	char *src = strdup(nt_path("src2")), *dst = strdup(nt_path("dst2"));
	const char *tool = nt_tool();
	char *pub_argv[] = { (char *)tool, "publish", (char *)src, "--nats", server->url,
			     "--stream", "st2", NULL };
	char *fol_argv[] = { (char *)tool, "follow", server->url, "--stream", "st2", (char *)dst,
			     "--segment", "65536", "--retain", "1", NULL };
	char *argv[] = { (char *)tool, "status", (char *)src, NULL, NULL };
	char *out, why[256], labels[600];
	const int epochs = 40;
	struct pt_region *w;
	struct one r = { .found = false };
	struct gathered g = { .id = follower_id };
	uint64_t start, seq = 0, bytes = 0;
	pid_t pub, fol;
	int err, st;

	printf("pagetrack publish, follow and status:\n");
	if ((err = pt_region_create(&w, src, 256 * ps, &wo)))
		DIE("create: %s", pt_strerror(err));
	pub = nt_spawn(pub_argv, nt_path("publish.log"));
	/* The follower once the stream exists (the publisher's record is
	 * written after it made it). */
	for (start = nt_ms(); nt_ms() - start < 30000 && !r.found; nt_sleep_ms(20))
		if (pt_net_status_read(src, take_one, &r))
			r.found = false;
	if (!r.found)
		DIE("no record of the publisher (log: %s)", nt_path("publish.log"));
	fol = nt_spawn(fol_argv, nt_path("follow.log"));
	/* 32 pages an epoch: each of the standby's records is larger than a
	 * 64 KiB segment, so each starts a segment of its own. */
	write_epochs(w, 1, epochs, 32);
	for (start = nt_ms(); nt_ms() - start < 60000; nt_sleep_ms(100)) {
		r.found = false;
		if (!pt_net_status_read(dst, take_one, &r) && r.found && r.st.epoch == epochs)
			break;
	}
	if (!r.found || r.st.epoch != epochs)
		DIE("the follower's record did not reach epoch %d (logs: %s, %s)", epochs,
		    nt_path("publish.log"), nt_path("follow.log"));
	/* The publisher's record is rewritten once a second too: it may come
	 * after the follower's. */
	for (start = nt_ms(); nt_ms() - start < 30000; nt_sleep_ms(100)) {
		record_of(src, &r);
		if (r.st.epoch == epochs)
			break;
	}
	check(r.st.state == PT_NET_LIVE && r.st.pid == pub && r.st.epoch == epochs,
	      "publish process", &r.st);
	all_batch(pub);
	/* --segment: a segment per record; --retain 1: the checkpoints drop all
	 * but the newest. */
	for (start = nt_ms(); nt_ms() - start < 30000; nt_sleep_ms(100)) {
		seq = segments(dst, &bytes);
		if (seq >= epochs / 2 && bytes <= 4 * 32 * ps + 65536)
			break;
	}
	if (seq < epochs / 2 || bytes > 4 * 32 * ps + 65536)
		DIE("the standby's log: last segment %llu, %llu bytes: --segment and --retain "
		    "not applied", (unsigned long long)seq, (unsigned long long)bytes);
	printf("  follow --segment 65536 --retain 1: segment %llu, %llu bytes kept: done\n",
	       (unsigned long long)seq, (unsigned long long)bytes);

	st = nt_run(argv, nt_path("status.txt"));
	out = nt_read_file(nt_path("status.txt"));
	snprintf(why, sizeof(why), "to stream st2, pid %d on %s: running", pub, host);
	if (st || !out || !strstr(out, why) || !strstr(out, "lag 0 epochs"))
		DIE("status (exit %d), not '%s':\n%s", st, why, out ? out : "");
	free(out);
	argv[2] = "--json";
	argv[3] = (char *)src;
	st = nt_run(argv, nt_path("status.json"));
	out = nt_read_file(nt_path("status.json"));
	if (st || !out || !strstr(out, "\"role\":\"publisher\"") ||
	    !strstr(out, "\"state\":\"live\"") || !strstr(out, "\"stream\":\"st2\""))
		DIE("status --json (exit %d):\n%s", st, out ? out : "");
	free(out);
	argv[2] = "--prometheus";
	st = nt_run(argv, nt_path("status.prom"));
	out = nt_read_file(nt_path("status.prom"));
	if (st || !out || nt_prom_check(out, why, sizeof(why)))
		DIE("status --prometheus (exit %d): %s\n%s", st, out ? why : "", out ? out : "");
	snprintf(labels, sizeof(labels), "dir=\"%s\",role=\"publisher\",stream=\"st2\"", src);
	if (nt_prom_value(out, "pagetrack_net_up", labels) != 1 ||
	    nt_prom_value(out, "pagetrack_net_epoch", labels) != epochs ||
	    nt_prom_value(out, "pagetrack_net_page_bytes_total", labels) <= 0)
		DIE("status --prometheus: not the publisher's figures:\n%s", out);
	snprintf(labels, sizeof(labels), "dir=\"%s\",level=\"published\"", src);
	if (nt_prom_value(out, "pagetrack_epoch", labels) != epochs)
		DIE("status --prometheus: not the region's epoch:\n%s", out);
	free(out);
	printf("  status, --json, --prometheus on the writer's directory: done\n");
	remote_followers(server, src, pub, fol, epochs, pt_region_history(w));

	/* Killed -9: gone at once (its pid is not running), never live; in
	 * the writer's directory too (its last record, gathered). */
	nt_kill(fol, SIGKILL);
	record_of(dst, &r);
	check(r.st.state == PT_NET_GONE, "follow killed -9", &r.st);
	gathered_in(src, &g);
	if (!g.found || g.st.state != PT_NET_GONE)
		DIE("the follower killed -9: in the writer's directory %s (state %d)",
		    g.found ? "listed" : "not listed", (int)g.st.state);
	argv[2] = (char *)dst;
	argv[3] = NULL;
	st = nt_run(argv, nt_path("status-dst.txt"));
	out = nt_read_file(nt_path("status-dst.txt"));
	if (st || !out || !strstr(out, "GONE: the process is not running"))
		DIE("status of the standby after kill -9 (exit %d):\n%s", st, out ? out : "");
	free(out);
	kill(pub, SIGTERM);
	for (start = nt_ms(); nt_ms() - start < 10000; nt_sleep_ms(10))
		if (waitpid(pub, &st, WNOHANG) == pub)
			break;
	nt_forget(pub);
	record_of(src, &r);
	check(r.st.state == PT_NET_STOPPED && r.st.epoch == epochs, "publish stopped", &r.st);
	if (gathered_in(src, &g))
		DIE("publish stopped: the followers' records it gathered are still in %s", src);
	printf("  follow killed -9: gone; publish stopped: stopped: done\n");
	pt_region_close(w);
	free(src);
	free(dst);
	return 0;
}

int main(void)
{
	struct natsd server;
	int failed;

	nt_init("net-status: status records of publishers and followers, their reader, and "
		"pagetrack status");
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (gethostname(host, sizeof(host) - 1))
		DIE("gethostname");
	failed = crafted();
	natsd_start(&server, "nats", NULL);
	failed += handles(&server);
	failed += commands(&server);
	natsd_stop(&server);
	if (failed)
		return T_FAIL;
	printf("done\n");
	return 0;
}
