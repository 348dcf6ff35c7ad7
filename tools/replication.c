/* SPDX-License-Identifier: MIT */
/*
 * replication.c - the pagetrack subcommands that look after a region's data
 * directory:
 *
 *   status DIR [--json]       epochs published / durable / checkpointed, log
 *                             size, each shared replica's epoch and lag
 *   verify DIR                every checksum of the image and the log, and
 *                             exactly what is wrong where
 *   inspect DIR [--pages]     the log's segments and records
 *   replica DIR [--name N]    keep a shared replica current until stopped
 *   checkpoint DIR            apply the durable log to the image now
 *   recover DIR [--accept-loss]
 *                             open the region as its writer and close it: its
 *                             recovery, with the loss of durable epochs
 *                             accepted only when asked
 *
 * They read the directory with the library's own readers (src/format.h):
 * only checkpoint and recover write, and only through the writer's code.
 * Files they open themselves go through open_regular(): anyone who can
 * write the directory could have put a FIFO there.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagetrack.h"
#include "commands.h"
#include "format.h"
#include "replica.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "state.h"
#include "bitmap.h"

/*
 * Parse "[options] DIR": returns the directory or NULL after a usage error.
 * An empty DIR is wrong usage for every subcommand (open("") would say
 * ENOENT, the library EINVAL).
 */
static const char *one_dir(const char *cmd, int argc, char **argv, int *ret)
{
	if (optind >= argc) {
		*ret = usage_error(cmd, "missing the region's directory");
		return NULL;
	}
	if (optind + 1 < argc) {
		*ret = usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
		return NULL;
	}
	if (!argv[optind][0]) {
		*ret = usage_error(cmd, "the region's directory is an empty name");
		return NULL;
	}
	return argv[optind];
}

static int open_region_dir(const char *cmd, const char *dir, struct pt_image *img, int *dirfd)
{
	int ret;

	ret = open_dir_arg(cmd, dir, dirfd);
	if (ret)
		return ret;
	ret = pt_image_open(img, *dirfd, false);
	if (ret) {
		close(*dirfd);
		if (ret == -EMEDIUMTYPE)
			return runtime_error(cmd, 0, "%s: not a region (no image file)", dir);
		return runtime_error(cmd, 0, "%s: image: %s", dir, pt_strerror(ret));
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* How far the directory reaches (pt_dir_reach)                        */
/* ------------------------------------------------------------------ */

/*
 * In words, what pt_dir_reach() found when it returned -ENOTRECOVERABLE:
 * which durable epochs cannot be reached and where the log stops, or that
 * the state block cannot say which epochs were durable.
 */
static void lost_text(const struct pt_dir_reach *r, char *buf, size_t len)
{
	char seg[64], where[256], epochs[96];

	if (r->state_error) {
		snprintf(buf, len, "the state block cannot be trusted (%s): which epochs were "
			 "durable is unknown; the image (epoch %" PRIu64 ") and the log reach epoch %"
			 PRIu64, pt_strerror(r->state_error), r->image_epoch, r->reached);
		return;
	}
	if (r->log_error) {
		pt_segment_name(seg, sizeof(seg), r->error_seq);
		snprintf(where, sizeof(where), "the log stops in %s at offset %" PRIu64 ": %s", seg,
			 r->error_offset, pt_strerror(r->log_error));
	} else {
		snprintf(where, sizeof(where), "the log ends there: a segment deleted or cut short");
	}
	if (r->reached + 1 == r->durable)
		snprintf(epochs, sizeof(epochs), "durable epoch %" PRIu64 " cannot", r->durable);
	else
		snprintf(epochs, sizeof(epochs), "durable epochs %" PRIu64 " to %" PRIu64 " cannot",
			 r->reached + 1, r->durable);
	snprintf(buf, len, "%s be reached: the image (epoch %" PRIu64 ") and the log reach epoch %"
		 PRIu64 " (%s)", epochs, r->image_epoch, r->reached, where);
}

/*
 * Print each file of another history than the image's (pt_dir_reach()
 * returned -ESTALE), a line each after prefix; returns how many it named.
 * Which side was copied in, the image or the others, cannot be told from
 * here: the message says both.
 */
static uint64_t print_foreign(int dirfd, const struct pt_image *img, const char *prefix)
{
	struct pt_segment_info *segs = NULL;
	struct pt_state st;
	uint64_t named = 0;
	size_t nsegs = 0;
	char name[64];

	if (!pt_segments_list(dirfd, &img->id, &segs, &nsegs)) {
		for (size_t i = 0; i < nsegs; i++) {
			if (segs[i].bad != -ESTALE)
				continue;
			pt_segment_name(name, sizeof(name), segs[i].seq);
			printf("%s%s: of another history than the image (%016" PRIx64 ")\n", prefix,
			       name, img->id.history_id);
			named++;
		}
	}
	free(segs);
	if (pt_state_read(dirfd, &img->id, &st) == -ESTALE) {
		if (!pt_state_read(dirfd, NULL, &st))
			printf("%s%s: of history %016" PRIx64 " (%" PRIu64 " pages), the image of %016"
			       PRIx64 " (%" PRIu64 " pages)\n", prefix, PT_STATE_NAME, st.history_id,
			       st.npages, img->id.history_id, img->id.npages);
		else
			printf("%s%s: of another history than the image (%016" PRIx64 ")\n", prefix,
			       PT_STATE_NAME, img->id.history_id);
		named++;
	}
	printf("%sfiles of two histories: the image or the files above were copied from "
	       "another region\n", prefix);
	return named ? named : 1;
}

/* ------------------------------------------------------------------ */
/* status                                                              */
/* ------------------------------------------------------------------ */

struct shared_info {
	char path[300];
	uint64_t epoch[2];
	uint32_t current;
	int readers;
	int32_t pid[PT_SHARED_READERS];
	uint64_t reader_epoch[PT_SHARED_READERS];
};

/*
 * Shared replicas of this region in /dev/shm.  Anyone can make a file
 * there, named as they like: only regular files (a FIFO would block the
 * open), owned by the caller or the region's owner and not writable by
 * others, whose control block passes pt_shared_ctl_check() for this region,
 * are listed.  Their names are printed escaped (status_text, JSON).
 */
static int find_shared(const struct pt_region_id *id, uid_t region_owner, struct shared_info *out,
		       int max)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)) && n < max) {
		struct pt_shared_ctl ctl;
		struct shared_info *s = &out[n];
		struct stat st;
		int fd;

		if (strncmp(de->d_name, "pagetrack-", 10))
			continue;
		fd = open_regular(dirfd(d), de->d_name, O_RDONLY, &st);
		if (fd < 0)
			continue;
		if ((st.st_uid == geteuid() || st.st_uid == region_owner) && !(st.st_mode & S_IWOTH) &&
		    pt_read_full(fd, &ctl, sizeof(ctl), 0) == (ssize_t)sizeof(ctl) &&
		    !pt_shared_ctl_check(&ctl, id, (uint64_t)st.st_size)) {
			snprintf(s->path, sizeof(s->path), "/dev/shm/%s", de->d_name);
			s->epoch[0] = ctl.copy_epoch[0];
			s->epoch[1] = ctl.copy_epoch[1];
			s->current = ctl.current;
			s->readers = 0;
			for (int i = 0; i < PT_SHARED_READERS; i++) {
				/* pid > 0 (checked): kill() never reaches a group. */
				if (!ctl.readers[i].pid || (kill(ctl.readers[i].pid, 0) && errno == ESRCH))
					continue;
				s->pid[s->readers] = ctl.readers[i].pid;
				s->reader_epoch[s->readers++] = ctl.readers[i].epoch;
			}
			n++;
		}
		close(fd);
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * A name from /dev/shm for the text output: control characters (a newline
 * would start a line of its own) shown as '?'.
 */
static const char *printable(const char *in, char *buf, size_t len)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < len; i++)
		buf[i] = (unsigned char)in[i] < 0x20 || in[i] == 0x7f ? '?' : in[i];
	buf[i] = '\0';
	return buf;
}

static void status_help(void)
{
	printf("Usage: pagetrack status DIR [--json]\n"
	       "\n"
	       "The region in DIR: its epochs (published, durable, checkpointed), the\n"
	       "writer, the log's size, and each shared replica's epoch and lag (how many\n"
	       "epochs it is behind the published one); how far the image and the log\n"
	       "reach against the last durable epoch, and the durable epochs lost or the\n"
	       "files of another history when there are any.\n"
	       "\n"
	       "  --json   one JSON object on stdout\n"
	       "  --help   this text\n"
	       "\n"
	       "Exit status: 0, or 1 when the directory cannot be read or does not reach\n"
	       "its last durable epoch (the report is printed first), 64 wrong usage.\n");
}

/* What status reports, gathered once for either form. */
struct status {
	const char *dir;
	struct pt_region_id id;
	uint64_t published, durable, checkpointed, log_bytes, log_error;
	bool writer;
	long writer_pid;
	size_t nsegs;
	int nshared;
	struct shared_info shared[16];
	int reach_ret;			/* pt_dir_reach() */
	struct pt_dir_reach reach;
	const struct pt_image *img;
	int dirfd;
};

static uint64_t lag(uint64_t published, uint64_t epoch)
{
	return published > epoch ? published - epoch : 0;
}

static void status_text(const struct status *s)
{
	printf("region        %s\n", s->dir);
	printf("history id    %016" PRIx64 "\n", s->id.history_id);
	printf("size          %" PRIu64 " pages of %u bytes\n", s->id.npages, s->id.page_size);
	printf("writer        %s", s->writer ? "running" : "none");
	if (s->writer)
		printf(" (pid %ld)", s->writer_pid);
	printf("\nepochs        published %" PRIu64 ", durable %" PRIu64 ", checkpointed %"
	       PRIu64 "\n", s->published, s->durable, s->checkpointed);
	if (s->log_error)
		printf("log error     %s (retrying)\n", pt_strerror((int)s->log_error));
	printf("log           %" PRIu64 " bytes in %zu segments\n", s->log_bytes, s->nsegs);
	printf("reach         image epoch %" PRIu64 ", image and log reach %" PRIu64 ", durable "
	       "%" PRIu64 "%s\n", s->reach.image_epoch, s->reach.reached, s->reach.durable,
	       s->reach.state_ok ? "" : " (no state block to tell)");
	if (s->reach_ret == -ENOTRECOVERABLE) {
		char lost[512];

		lost_text(&s->reach, lost, sizeof(lost));
		printf("lost          %s\n", lost);
	} else if (s->reach_ret == -ESTALE) {
		print_foreign(s->dirfd, s->img, "foreign       ");
	} else if (s->reach_ret) {
		printf("reach error   %s\n", pt_strerror(s->reach_ret));
	}
	for (int i = 0; i < s->nshared; i++) {
		const struct shared_info *sh = &s->shared[i];
		uint64_t e = sh->epoch[sh->current];
		char path[sizeof(sh->path)];

		printf("shared        %s: epoch %" PRIu64 ", lag %" PRIu64 ", %d readers\n",
		       printable(sh->path, path, sizeof(path)), e, lag(s->published, e), sh->readers);
		for (int k = 0; k < sh->readers; k++)
			printf("  reader      pid %d at epoch %" PRIu64 ", lag %" PRIu64 "\n",
			       sh->pid[k], sh->reader_epoch[k], lag(s->published, sh->reader_epoch[k]));
	}
	if (!s->nshared)
		printf("shared        no shared replica (private replicas are not listed)\n");
}

static int status_json(const struct status *s)
{
	bool failed = false;
	struct json_object *o = jout_object(&failed);
	struct json_object *shared = jout_array(&failed);
	char history[17];

	snprintf(history, sizeof(history), "%016" PRIx64, s->id.history_id);
	jout_put(o, "dir", jout_str(s->dir, &failed), &failed);
	jout_put(o, "history_id", jout_str(history, &failed), &failed);
	jout_put(o, "pages", jout_u64(s->id.npages, &failed), &failed);
	jout_put(o, "page_size", jout_u64(s->id.page_size, &failed), &failed);
	jout_put(o, "published", jout_u64(s->published, &failed), &failed);
	jout_put(o, "durable", jout_u64(s->durable, &failed), &failed);
	jout_put(o, "checkpointed", jout_u64(s->checkpointed, &failed), &failed);
	jout_put(o, "writer", jout_bool(s->writer, &failed), &failed);
	jout_put(o, "writer_pid", jout_i64(s->writer ? s->writer_pid : 0, &failed), &failed);
	jout_put(o, "log_error", jout_str(s->log_error ? pt_strerror((int)s->log_error) : NULL,
					  &failed), &failed);
	jout_put(o, "log_bytes", jout_u64(s->log_bytes, &failed), &failed);
	jout_put(o, "segments", jout_u64(s->nsegs, &failed), &failed);
	{
		struct json_object *r = jout_object(&failed), *lost = NULL;

		jout_put(r, "image_epoch", jout_u64(s->reach.image_epoch, &failed), &failed);
		jout_put(r, "reached", jout_u64(s->reach.reached, &failed), &failed);
		jout_put(r, "durable", jout_u64(s->reach.durable, &failed), &failed);
		jout_put(r, "state_ok", jout_bool(s->reach.state_ok, &failed), &failed);
		if (s->reach_ret == -ENOTRECOVERABLE && !s->reach.state_error) {
			lost = jout_array(&failed);
			jout_append(lost, jout_u64(s->reach.reached + 1, &failed), &failed);
			jout_append(lost, jout_u64(s->reach.durable, &failed), &failed);
		}
		jout_put(r, "lost_durable_epochs", lost, &failed);
		jout_put(r, "foreign_files", jout_u64(s->reach.foreign, &failed), &failed);
		jout_put(r, "log_error", jout_str(s->reach.log_error ?
						  pt_strerror(s->reach.log_error) : NULL, &failed),
			 &failed);
		jout_put(r, "state_error", jout_str(s->reach.state_error ?
						    pt_strerror(s->reach.state_error) : NULL,
						    &failed), &failed);
		jout_put(r, "error", jout_str(s->reach_ret ? pt_strerror(s->reach_ret) : NULL,
					      &failed), &failed);
		jout_put(o, "reach", r, &failed);
	}
	for (int i = 0; i < s->nshared; i++) {
		const struct shared_info *sh = &s->shared[i];
		struct json_object *so = jout_object(&failed), *readers = jout_array(&failed);
		uint64_t e = sh->epoch[sh->current];

		jout_put(so, "path", jout_str(sh->path, &failed), &failed);
		jout_put(so, "epoch", jout_u64(e, &failed), &failed);
		jout_put(so, "lag", jout_u64(lag(s->published, e), &failed), &failed);
		for (int k = 0; k < sh->readers; k++) {
			struct json_object *ro = jout_object(&failed);

			jout_put(ro, "pid", jout_i64(sh->pid[k], &failed), &failed);
			jout_put(ro, "epoch", jout_u64(sh->reader_epoch[k], &failed), &failed);
			jout_put(ro, "lag", jout_u64(lag(s->published, sh->reader_epoch[k]), &failed),
				 &failed);
			jout_append(readers, ro, &failed);
		}
		jout_put(so, "readers", readers, &failed);
		jout_append(shared, so, &failed);
	}
	jout_put(o, "shared_replicas", shared, &failed);
	return jout_print("status", o, failed, false);
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct status s;
	struct pt_segment_info *segs = NULL;
	const struct pt_state *st = NULL;
	bool json = false;
	struct pt_image img;
	struct stat dirst;
	int c, ret = 0, dirfd, statefd = -1, lockfd;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			ret = alone("status", "--help", argc);
			if (!ret)
				status_help();
			return ret;
		default:
			return option_error("status", argv);
		}
	}
	s.dir = one_dir("status", argc, argv, &ret);
	if (!s.dir)
		return ret;
	ret = open_region_dir("status", s.dir, &img, &dirfd);
	if (ret)
		return ret;
	s.id = img.id;
	s.checkpointed = img.hdr.epoch;
	ret = pt_segments_list(dirfd, &img.id, &segs, &s.nsegs);
	if (ret) {
		ret = runtime_error("status", ret, "%s: listing the log", s.dir);
		goto out;
	}
	for (size_t i = 0; i < s.nsegs; i++)
		s.log_bytes += segs[i].size;
	/* The lock tells whether a writer runs, whatever the state says. */
	lockfd = open_regular(dirfd, PT_LOCK_NAME, O_RDONLY, NULL);
	if (lockfd >= 0) {
		s.writer = flock(lockfd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
		close(lockfd);
	} else if (lockfd != -ENOENT) {
		ret = runtime_error("status", lockfd, "%s/%s", s.dir, PT_LOCK_NAME);
		goto out;
	}
	if (!pt_state_map_ro(dirfd, &st, &statefd) && st->history_id == img.id.history_id) {
		s.published = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
		s.durable = __atomic_load_n(&st->durable, __ATOMIC_ACQUIRE);
		if (st->checkpointed > s.checkpointed)
			s.checkpointed = st->checkpointed;
		s.writer_pid = (long)st->writer_pid;
		s.log_error = st->last_error;
	}
	if (s.published < s.checkpointed)
		s.published = s.durable = s.checkpointed;
	s.img = &img;
	s.dirfd = dirfd;
	s.reach_ret = pt_dir_reach(dirfd, &img, &s.reach);
	if (fstat(dirfd, &dirst)) {
		ret = runtime_error("status", -errno, "%s", s.dir);
		goto out;
	}
	s.nshared = find_shared(&img.id, dirst.st_uid, s.shared, 16);
	if (json) {
		ret = status_json(&s);
	} else {
		status_text(&s);
		ret = 0;
	}
	/* The report is out; the exit status says whether it showed a loss. */
	if (!ret && s.reach_ret)
		ret = 1;
out:
	if (st)
		munmap((void *)st, sizeof(*st));
	if (statefd >= 0)
		close(statefd);
	free(segs);
	pt_image_close(&img);
	close(dirfd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* verify                                                              */
/* ------------------------------------------------------------------ */

/* Pages the first pass found bad, re-checked before any is called corrupt. */
struct bad_pages {
	uint64_t *v;
	size_t n, cap;
	bool nomem;
};

static void note_bad_page(void *arg, uint64_t page, const char *msg)
{
	struct bad_pages *b = arg;

	(void)msg;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		uint64_t *v = realloc(b->v, cap * sizeof(*v));

		if (!v) {
			b->nomem = true;
			return;
		}
		b->v = v;
		b->cap = cap;
	}
	b->v[b->n++] = page;
}

/*
 * A checkpoint running while we read writes pages, then their table
 * entries, then the other header slot: the first pass can see a page newer
 * than its entry.  Each page found bad is checked again against the image
 * as it is now (a fresh header and table): good now, it was being written;
 * still bad but rewritten by a log record after the image's epoch, it is
 * what recovery repairs (a checkpoint in progress, or one a crash cut);
 * only a page neither can explain is corrupt.  A checkpoint that drops the
 * records we were reading makes us look again.
 */
static uint64_t recheck_pages(int dirfd, const struct bad_pages *b, uint64_t *changed,
			      uint64_t *repaired)
{
	uint64_t bad = 0, *covered = NULL;
	unsigned char *page = NULL;
	struct pt_image img;
	int ret = -ESTALE;

	for (int attempt = 0; attempt < 5 && ret == -ESTALE; attempt++) {
		struct pt_pagelog_reader rd;
		struct pt_record rec;

		ret = pt_image_open(&img, dirfd, false);
		if (!ret)
			ret = pt_image_load_entries(&img);
		if (ret) {
			pt_image_close(&img);
			break;
		}
		free(covered);
		covered = calloc((img.id.npages + 63) / 64, 8);
		page = page ? page : malloc(img.id.page_size);
		if (!covered || !page) {
			ret = -ENOMEM;
			pt_image_close(&img);
			break;
		}
		pt_pagelog_reader_init(&rd, dirfd, &img.id, img.hdr.epoch + 1, img.hdr.chain);
		rd.quiet = true;
		while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0)
			for (uint32_t i = 0; i < rec.hdr->page_count; i++)
				pt_bit_set(covered, rec.index[i]);
		ret = ret == -ESTALE && rd.dropped ? -ESTALE : 0;
		pt_pagelog_reader_free(&rd);
		if (ret)
			pt_image_close(&img);
	}
	if (ret) {
		printf("  BAD   %zu image pages failed and cannot be checked again: %s\n", b->n,
		       pt_strerror(ret));
		bad = b->n;
		goto out;
	}
	for (size_t i = 0; i < b->n; i++) {
		uint64_t p = b->v[i];
		char msg[256];

		ret = p < img.id.npages ? pt_image_verify_page(&img, p, page, msg, sizeof(msg)) : 0;
		if (ret == 0) {
			(*changed)++;
		} else if (ret > 0 && pt_bit_test(covered, p)) {
			printf("  NOTE  %s; a log record after the image's epoch rewrites it (a "
			       "checkpoint writing it, or one a crash cut): recovery repairs it\n", msg);
			(*repaired)++;
		} else if (ret > 0) {
			printf("  BAD   %s\n", msg);
			bad++;
		} else {
			printf("  BAD   image page %" PRIu64 ": %s\n", p, pt_strerror(ret));
			bad++;
		}
	}
	pt_image_close(&img);
out:
	free(covered);
	free(page);
	return bad;
}

static void verify_help(void)
{
	printf("Usage: pagetrack verify DIR\n"
	       "\n"
	       "Check every checksum of the region in DIR: the image's headers, table and\n"
	       "pages, every segment header and every log record, and that the records\n"
	       "after the image's epoch follow each other; say exactly what is wrong where.\n"
	       "A page a running checkpoint is writing is checked again, and not reported\n"
	       "when it is good then or a log record after the image's epoch rewrites it.\n"
	       "Then check that the image and the log reach the last epoch the writer made\n"
	       "durable (else say which durable epochs are lost) and that every file is of\n"
	       "the image's history (else name the others).\n"
	       "\n"
	       "Exit status: 0 all good and the last durable epoch reached, 1 something is\n"
	       "wrong (listed), 64 wrong usage.\n");
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_segment_info *segs = NULL;
	struct bad_pages bp = { 0 };
	struct pt_dir_reach reach;
	unsigned char *buf = NULL;
	uint64_t bad = 0, records = 0, bad_pages = 0, changed = 0, repaired = 0, last;
	struct pt_pagelog_reader rd;
	struct pt_record rec;
	struct pt_image img;
	const char *dir;
	size_t nsegs = 0, cap = 0;
	int c, ret = 0, dirfd;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (c == 'h') {
			ret = alone("verify", "--help", argc);
			if (!ret)
				verify_help();
			return ret;
		}
		return option_error("verify", argv);
	}
	dir = one_dir("verify", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = open_region_dir("verify", dir, &img, &dirfd);
	if (ret)
		return ret;
	printf("image: epoch %" PRIu64 ", header slot %d, %" PRIu64 " pages\n", img.hdr.epoch, img.slot,
	       img.id.npages);
	ret = pt_image_verify(&img, note_bad_page, &bp, &bad_pages);
	if (ret || bp.nomem) {
		printf("  BAD   image: %s\n", pt_strerror(ret ? ret : -ENOMEM));
		bad++;
	}
	if (bp.n)
		bad += recheck_pages(dirfd, &bp, &changed, &repaired);
	if (changed)
		printf("image: %" PRIu64 " pages changed while read (a checkpoint); good when "
		       "checked again\n", changed);
	free(bp.v);
	ret = pt_segments_list(dirfd, &img.id, &segs, &nsegs);
	if (ret) {
		ret = runtime_error("verify", ret, "%s: listing the log", dir);
		goto out;
	}
	for (size_t i = 0; i < nsegs; i++) {
		char name[64];
		uint64_t off, n = 0;
		int fd;

		pt_segment_name(name, sizeof(name), segs[i].seq);
		/* Of another history: the reach check below names it. */
		if (segs[i].bad == -ESTALE)
			continue;
		if (segs[i].bad) {
			printf("  BAD   %s: header: %s\n", name, pt_strerror(segs[i].bad));
			bad++;
			continue;
		}
		fd = open_regular(dirfd, name, O_RDONLY, NULL);
		if (fd < 0) {
			printf("  BAD   %s: %s\n", name, pt_strerror(fd));
			bad++;
			continue;
		}
		for (off = img.id.page_size;;) {
			int64_t len = pt_record_read(fd, segs[i].seq, off, &img.id, &buf, &cap, &rec);

			if (len == 0)
				break;
			if (len < 0) {
				bool tail = i + 1 == nsegs;

				printf("  %s %s at offset %" PRIu64 ": %s%s\n", tail ? "NOTE " : "BAD  ", name,
				       off, pt_strerror((int)len),
				       tail ? " (the newest segment's end: a record being written, or "
					      "torn by a crash)" : "; the rest of the segment is not read");
				bad += !tail && len != -ENODATA;
				break;
			}
			n++;
			off += (uint64_t)len;
		}
		printf("segment %s: epochs from %" PRIu64 ", %" PRIu64 " good records, %" PRIu64
		       " bytes\n", name, segs[i].first_epoch, n, segs[i].size);
		records += n;
		close(fd);
	}
	/* The chain a recovery would follow, from the image as it is now: a
	 * checkpoint since the start may have dropped the records after the
	 * header we read first. */
	for (int attempt = 0;; attempt++) {
		struct pt_image now;

		if (attempt && !pt_image_open(&now, dirfd, false)) {
			pt_image_close(&img);
			img = now;
		}
		pt_pagelog_reader_init(&rd, dirfd, &img.id, img.hdr.epoch + 1, img.hdr.chain);
		rd.quiet = true;
		while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0)
			;
		if (!(ret == -ESTALE && rd.dropped) || attempt == 4)
			break;
		pt_pagelog_reader_free(&rd);
	}
	last = rd.next_epoch - 1;
	if (ret < 0 && !(ret == -ENODATA && rd.error_seq == (nsegs ? segs[nsegs - 1].seq : 0))) {
		printf("  BAD   the log after the image stops at epoch %" PRIu64 " (segment %016" PRIx64
		       ", offset %" PRIu64 "): %s\n", last + 1, rd.error_seq, rd.error_offset,
		       pt_strerror(ret));
		bad++;
	}
	pt_pagelog_reader_free(&rd);
	/*
	 * The log may end cleanly and still short: a segment deleted or cut at
	 * a record's end leaves nothing torn to see.  The state block says how
	 * far the writer had made epochs durable; reaching less is a loss.
	 */
	/* The files every reader opens: anything but a regular file in their
	 * place makes the writer and replicas refuse the directory. */
	for (size_t i = 0; i < 2; i++) {
		const char *name = i ? PT_STATE_NAME : PT_LOCK_NAME;
		int fd = open_regular(dirfd, name, O_RDONLY, NULL);

		if (fd >= 0) {
			close(fd);
		} else if (fd != -ENOENT) {
			printf("  BAD   %s: %s\n", name, pt_strerror(fd));
			bad++;
		}
	}
	ret = pt_dir_reach(dirfd, &img, &reach);
	if (ret == -ENOTRECOVERABLE) {
		char lost[512];

		lost_text(&reach, lost, sizeof(lost));
		printf("  BAD   %s\n", lost);
		bad++;
	} else if (ret == -ESTALE) {
		bad += print_foreign(dirfd, &img, "  BAD   ");
	} else if (ret) {
		printf("  BAD   cannot tell how far the directory reaches: %s\n", pt_strerror(ret));
		bad++;
	}
	printf("recovery would reach epoch %" PRIu64 "; %" PRIu64 " records checked, %" PRIu64
	       " problems\n", last, records, bad);
	ret = bad ? 1 : 0;
out:
	free(buf);
	free(segs);
	pt_image_close(&img);
	close(dirfd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* inspect                                                             */
/* ------------------------------------------------------------------ */

static void inspect_help(void)
{
	printf("Usage: pagetrack inspect DIR [--pages]\n"
	       "\n"
	       "List the log of the region in DIR: each segment, and in it each record\n"
	       "with its epoch, page count, length and checksums.\n"
	       "\n"
	       "  --pages  also list each record's page numbers\n"
	       "  --help   this text\n");
}

int cmd_inspect(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pages", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_segment_info *segs = NULL;
	unsigned char *buf = NULL;
	struct pt_record rec;
	struct pt_image img;
	bool pages = false;
	const char *dir;
	size_t nsegs = 0, cap = 0;
	int c, ret = 0, dirfd;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'p':
			pages = true;
			break;
		case 'h':
			ret = alone("inspect", "--help", argc);
			if (!ret)
				inspect_help();
			return ret;
		default:
			return option_error("inspect", argv);
		}
	}
	dir = one_dir("inspect", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = open_region_dir("inspect", dir, &img, &dirfd);
	if (ret)
		return ret;
	printf("image at epoch %" PRIu64 " (history %016" PRIx64 ")\n", img.hdr.epoch,
	       img.id.history_id);
	ret = pt_segments_list(dirfd, &img.id, &segs, &nsegs);
	if (ret) {
		ret = runtime_error("inspect", ret, "%s: listing the log", dir);
		goto out;
	}
	for (size_t i = 0; i < nsegs; i++) {
		char name[64];
		uint64_t off;
		int fd;

		pt_segment_name(name, sizeof(name), segs[i].seq);
		if (segs[i].bad) {
			printf("%s: unreadable header: %s\n", name, pt_strerror(segs[i].bad));
			continue;
		}
		printf("%s: first epoch %" PRIu64 ", %" PRIu64 " bytes\n", name, segs[i].first_epoch,
		       segs[i].size);
		fd = open_regular(dirfd, name, O_RDONLY, NULL);
		if (fd < 0) {
			printf("  %s\n", pt_strerror(fd));
			continue;
		}
		for (off = img.id.page_size;;) {
			int64_t len = pt_record_read(fd, segs[i].seq, off, &img.id, &buf, &cap, &rec);

			if (len <= 0) {
				if (len < 0)
					printf("  offset %-10" PRIu64 " %s\n", off, pt_strerror((int)len));
				break;
			}
			printf("  offset %-10" PRIu64 " epoch %-8" PRIu64 " %6u pages %10" PRIu64
			       " bytes  header %016" PRIx64 " prev %016" PRIx64 "\n", off,
			       rec.hdr->epoch, rec.hdr->page_count, rec.hdr->length,
			       rec.hdr->header_checksum, rec.hdr->prev);
			if (pages) {
				for (uint32_t k = 0; k < rec.hdr->page_count; k++)
					printf("%s%" PRIu64, k % 16 ? " " : "    pages ", rec.index[k]);
				if (rec.hdr->page_count)
					printf("\n");
			}
			off += (uint64_t)len;
		}
		close(fd);
	}
out:
	free(buf);
	free(segs);
	pt_image_close(&img);
	close(dirfd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* replica                                                             */
/* ------------------------------------------------------------------ */

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void replica_help(void)
{
	printf("Usage: pagetrack replica DIR [--name NAME] [--once] [--verbose]\n"
	       "\n"
	       "Keep the shared replica /dev/shm/pagetrack-NAME of the region in DIR\n"
	       "current until interrupted (SIGINT, SIGTERM), so that query processes that\n"
	       "open it with pt_replica_open(PT_REPLICA_SHARED) find it fresh.\n"
	       "\n"
	       "  --name NAME  the shared copy's name, 1 to 200 characters without '/'\n"
	       "               (default: the region's history id)\n"
	       "  --once       bring it up to date once and exit\n"
	       "  --verbose    print each epoch reached\n"
	       "  --help       this text\n");
}

int cmd_replica(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "once", no_argument, NULL, 'o' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED };
	struct sigaction sa = { .sa_handler = on_stop };
	bool once = false, verbose = false;
	struct pt_replica *rep;
	const char *dir;
	int64_t e, shown = -1;
	int c, ret = 0;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			/* The library's rule for a name, checked here so that the
			 * message blames the name, not DIR. */
			if (!optarg[0] || strchr(optarg, '/') || strlen(optarg) > 200)
				return usage_error("replica", "bad --name '%s': want 1 to 200 "
						   "characters, no '/'", optarg);
			o.name = optarg;
			break;
		case 'o':
			once = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			ret = alone("replica", "--help", argc);
			if (!ret)
				replica_help();
			return ret;
		default:
			return option_error("replica", argv);
		}
	}
	dir = one_dir("replica", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = pt_replica_open(&rep, dir, &o);
	if (ret)
		return runtime_error("replica", ret, "%s", dir);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	do {
		e = pt_replica_refresh(rep, once ? 0 : 200);
		if (e < 0) {
			ret = runtime_error("replica", (int)e, "%s", dir);
			break;
		}
		if (verbose && e != shown) {
			printf("epoch %lld\n", (long long)e);
			fflush(stdout);
		}
		shown = e;
	} while (!once && !stop_requested);
	if (!ret && !verbose)
		printf("shared replica of %s at epoch %lld\n", dir, (long long)shown);
	pt_replica_close(rep);
	return ret;
}

/* ------------------------------------------------------------------ */
/* checkpoint                                                          */
/* ------------------------------------------------------------------ */

static void checkpoint_help(void)
{
	printf("Usage: pagetrack checkpoint DIR [--timeout SECONDS]\n"
	       "\n"
	       "Apply the durable log of the region in DIR to its image, fsync it and drop\n"
	       "the segments nothing needs.  With no writer running it opens the region\n"
	       "(recovering it) and checkpoints; with a writer running it asks the\n"
	       "writer's checkpoint thread and waits for it.\n"
	       "\n"
	       "  --timeout SECONDS  how long to wait for a running writer, 0 to 86400\n"
	       "                     (default 30)\n"
	       "  --help             this text\n");
}

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_region *r;
	const char *dir;
	long long timeout = 30;
	int64_t e;
	int c, ret = 0, dirfd;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			ret = parse_number("checkpoint", "--timeout", optarg, 0, 86400, &timeout);
			if (ret)
				return ret;
			break;
		case 'h':
			ret = alone("checkpoint", "--help", argc);
			if (!ret)
				checkpoint_help();
			return ret;
		default:
			return option_error("checkpoint", argv);
		}
	}
	dir = one_dir("checkpoint", argc, argv, &ret);
	if (!dir)
		return ret;
	/* Refuse a symlinked DIR here too, before the library or the state
	 * file below could be reached through it. */
	ret = open_dir_arg("checkpoint", dir, &dirfd);
	if (ret)
		return ret;
	ret = pt_region_open(&r, dir, &o);
	if (ret == -EBUSY) {
		/* A writer runs: ask its checkpoint thread through the state block. */
		struct pt_state *st;
		struct stat sb;
		uint64_t want;
		int fd = open_regular(dirfd, PT_STATE_NAME, O_RDWR, &sb);

		close(dirfd);
		if (fd < 0)
			return runtime_error("checkpoint", fd, "%s: the writer's state file", dir);
		/* A state file shorter than the block would make the stores
		 * below a SIGBUS: check before mapping. */
		if ((size_t)sb.st_size < sizeof(*st)) {
			close(fd);
			return runtime_error("checkpoint", -EBADMSG, "%s: the writer's state file is "
					     "not a state block", dir);
		}
		st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (st == MAP_FAILED)
			return runtime_error("checkpoint", -errno, "%s: the writer's state file", dir);
		want = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
		__atomic_store_n(&st->checkpoint_request, want, __ATOMIC_RELEASE);
		for (long long ms = 0; ms <= timeout * 1000; ms += 10) {
			if (__atomic_load_n(&st->checkpointed, __ATOMIC_ACQUIRE) >= want)
				break;
			usleep(10000);
		}
		e = (int64_t)__atomic_load_n(&st->checkpointed, __ATOMIC_ACQUIRE);
		munmap(st, sizeof(*st));
		if ((uint64_t)e < want)
			return runtime_error("checkpoint", -ETIMEDOUT,
					     "%s: the writer did not checkpoint epoch %" PRIu64
					     " (is its checkpoint thread off?)", dir, want);
		printf("%s: checkpointed by the writer at epoch %lld\n", dir, (long long)e);
		return 0;
	}
	close(dirfd);
	if (ret)
		return runtime_error("checkpoint", ret, "%s", dir);
	e = pt_region_checkpoint(r);
	ret = pt_region_close(r);
	if (e < 0)
		return runtime_error("checkpoint", (int)e, "%s", dir);
	if (ret)
		return runtime_error("checkpoint", ret, "%s: close", dir);
	printf("%s: checkpointed at epoch %lld\n", dir, (long long)e);
	return 0;
}

/* ------------------------------------------------------------------ */
/* recover                                                             */
/* ------------------------------------------------------------------ */

static void recover_help(void)
{
	printf("Usage: pagetrack recover DIR [--accept-loss]\n"
	       "\n"
	       "Open the region in DIR as its writer, which recovers it (the image plus\n"
	       "every intact log record after it), print the epoch recovered, and close\n"
	       "it.  When epochs the writer had made durable cannot be reached (a log\n"
	       "segment deleted, cut short or damaged), it fails and says which: the\n"
	       "region is left as it is.\n"
	       "\n"
	       "  --accept-loss  recover what can be reached anyway and give up the lost\n"
	       "                 epochs for good (the library logs the loss)\n"
	       "  --help         this text\n"
	       "\n"
	       "Exit status: 0 recovered, 1 not (why on stderr), 64 wrong usage.\n");
}

int cmd_recover(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "accept-loss", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_dir_reach reach;
	struct pt_region *r;
	struct pt_image img;
	bool accept = false;
	const char *dir;
	char lost[512] = "";
	int c, ret = 0, dirfd, reach_ret;
	int64_t e;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			accept = true;
			break;
		case 'h':
			ret = alone("recover", "--help", argc);
			if (!ret)
				recover_help();
			return ret;
		default:
			return option_error("recover", argv);
		}
	}
	dir = one_dir("recover", argc, argv, &ret);
	if (!dir)
		return ret;
	/*
	 * What would be lost, read before the open changes anything: with
	 * --accept-loss the writer's recovery goes on from what it reaches, and
	 * afterwards the directory no longer shows what it gave up.
	 */
	ret = open_region_dir("recover", dir, &img, &dirfd);
	if (ret)
		return ret;
	reach_ret = pt_dir_reach(dirfd, &img, &reach);
	if (reach_ret == -ENOTRECOVERABLE)
		lost_text(&reach, lost, sizeof(lost));
	pt_image_close(&img);
	close(dirfd);

	if (accept)
		o.flags |= PT_REGION_ACCEPT_LOSS;
	ret = pt_region_open(&r, dir, &o);
	if (ret == -ENOTRECOVERABLE)
		return runtime_error("recover", 0, "%s: %s; 'pagetrack recover --accept-loss' "
				     "recovers what is left and gives up the rest", dir,
				     lost[0] ? lost : pt_strerror(ret));
	if (ret == -EBUSY)
		return runtime_error("recover", ret, "%s: a writer has the region open (it "
				     "recovered it when it opened)", dir);
	if (ret == -ESTALE)
		return runtime_error("recover", 0, "%s: files of two histories, one copied from "
				     "another region ('pagetrack verify %s' names them)", dir, dir);
	if (ret)
		return runtime_error("recover", ret, "%s", dir);
	e = pt_region_epoch(r);
	ret = pt_region_close(r);
	if (ret)
		return runtime_error("recover", ret, "%s: close", dir);
	if (lost[0])
		printf("%s: recovered epoch %lld, accepting the loss: %s\n", dir, (long long)e, lost);
	else
		printf("%s: recovered epoch %lld\n", dir, (long long)e);
	return 0;
}
