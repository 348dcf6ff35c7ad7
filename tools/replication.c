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
 *
 * They read the directory with the library's own readers (src/format.h):
 * only checkpoint writes, and only through the writer's code.
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
		return runtime_error(cmd, 0, "%s: image: %s", dir, pt_log_strerror(ret));
	}
	return 0;
}

/* Print s as the body of a JSON string. */
static void json_str(const char *s)
{
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
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

/* Shared replicas of this history in /dev/shm. */
static int find_shared(uint64_t history, struct shared_info *out, int max)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)) && n < max) {
		struct pt_shared_ctl ctl;
		struct shared_info *s = &out[n];
		int fd;

		if (strncmp(de->d_name, "pagetrack-", 10))
			continue;
		snprintf(s->path, sizeof(s->path), "/dev/shm/%s", de->d_name);
		fd = open(s->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (pread(fd, &ctl, sizeof(ctl), 0) == sizeof(ctl) &&
		    !memcmp(ctl.magic, PT_SHARED_MAGIC, 8) && ctl.history_id == history) {
			s->epoch[0] = ctl.copy_epoch[0];
			s->epoch[1] = ctl.copy_epoch[1];
			s->current = ctl.current & 1;
			s->readers = 0;
			for (int i = 0; i < PT_SHARED_READERS; i++) {
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

static void status_help(void)
{
	printf("Usage: pagetrack status DIR [--json]\n"
	       "\n"
	       "The region in DIR: its epochs (published, durable, checkpointed), the\n"
	       "writer, the log's size, and each shared replica's epoch and lag (how many\n"
	       "epochs it is behind the published one).\n"
	       "\n"
	       "  --json   one JSON object on stdout\n"
	       "  --help   this text\n");
}

int cmd_status(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	static struct shared_info shared[16];
	struct pt_segment_info *segs = NULL;
	const struct pt_state *st = NULL;
	uint64_t published = 0, durable = 0, checkpointed, log_bytes = 0, err = 0;
	bool json = false, writer = false;
	struct pt_image img;
	const char *dir;
	int c, ret = 0, dirfd, statefd = -1, nshared;
	size_t nsegs = 0;
	long pid = 0;

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
	dir = one_dir("status", argc, argv, &ret);
	if (!dir)
		return ret;
	ret = open_region_dir("status", dir, &img, &dirfd);
	if (ret)
		return ret;
	checkpointed = img.hdr.epoch;
	ret = pt_segments_list(dirfd, &img.id, &segs, &nsegs);
	if (ret) {
		ret = runtime_error("status", ret, "%s: listing the log", dir);
		goto out;
	}
	for (size_t i = 0; i < nsegs; i++)
		log_bytes += segs[i].size;
	if (!pt_state_map_ro(dirfd, &st, &statefd) && st->history_id == img.id.history_id) {
		published = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
		durable = __atomic_load_n(&st->durable, __ATOMIC_ACQUIRE);
		if (st->checkpointed > checkpointed)
			checkpointed = st->checkpointed;
		pid = (long)st->writer_pid;
		err = st->last_error;
		/* The lock tells whether a writer runs, whatever the state says. */
		{
			int lfd = openat(dirfd, PT_LOCK_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

			if (lfd >= 0) {
				writer = flock(lfd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
				close(lfd);
			}
		}
	}
	if (published < checkpointed)
		published = durable = checkpointed;
	nshared = find_shared(img.id.history_id, shared, 16);
	if (json) {
		printf("{\"dir\":\"");
		json_str(dir);
		printf("\",\"history_id\":\"%016" PRIx64 "\",\"pages\":%" PRIu64
		       ",\"page_size\":%u,\"published\":%" PRIu64 ",\"durable\":%" PRIu64
		       ",\"checkpointed\":%" PRIu64 ",\"writer\":%s,\"writer_pid\":%ld"
		       ",\"log_error\":%s%s%s,\"log_bytes\":%" PRIu64 ",\"segments\":%zu"
		       ",\"shared_replicas\":[",
		       img.id.history_id, img.id.npages, img.id.page_size, published, durable,
		       checkpointed, writer ? "true" : "false", writer ? pid : 0L,
		       err ? "\"" : "", err ? strerror((int)err) : "null", err ? "\"" : "",
		       log_bytes, nsegs);
		for (int i = 0; i < nshared; i++) {
			uint64_t e = shared[i].epoch[shared[i].current];

			printf("%s{\"path\":\"%s\",\"epoch\":%" PRIu64 ",\"lag\":%" PRIu64 ",\"readers\":[",
			       i ? "," : "", shared[i].path, e, published > e ? published - e : 0);
			for (int k = 0; k < shared[i].readers; k++)
				printf("%s{\"pid\":%d,\"epoch\":%" PRIu64 ",\"lag\":%" PRIu64 "}", k ? "," : "",
				       shared[i].pid[k], shared[i].reader_epoch[k],
				       published > shared[i].reader_epoch[k] ?
				       published - shared[i].reader_epoch[k] : 0);
			printf("]}");
		}
		printf("]}\n");
	} else {
		printf("region        %s\n", dir);
		printf("history id    %016" PRIx64 "\n", img.id.history_id);
		printf("size          %" PRIu64 " pages of %u bytes\n", img.id.npages, img.id.page_size);
		printf("writer        %s", writer ? "running" : "none");
		if (writer)
			printf(" (pid %ld)", pid);
		printf("\nepochs        published %" PRIu64 ", durable %" PRIu64 ", checkpointed %"
		       PRIu64 "\n", published, durable, checkpointed);
		if (err)
			printf("log error     %s (retrying)\n", strerror((int)err));
		printf("log           %" PRIu64 " bytes in %zu segments\n", log_bytes, nsegs);
		for (int i = 0; i < nshared; i++) {
			uint64_t e = shared[i].epoch[shared[i].current];

			printf("shared        %s: epoch %" PRIu64 ", lag %" PRIu64 ", %d readers\n",
			       shared[i].path, e, published > e ? published - e : 0, shared[i].readers);
			for (int k = 0; k < shared[i].readers; k++)
				printf("  reader      pid %d at epoch %" PRIu64 ", lag %" PRIu64 "\n",
				       shared[i].pid[k], shared[i].reader_epoch[k],
				       published > shared[i].reader_epoch[k] ?
				       published - shared[i].reader_epoch[k] : 0);
		}
		if (!nshared)
			printf("shared        no shared replica (private replicas are not listed)\n");
	}
	ret = 0;
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
		struct pt_log_reader rd;
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
		pt_log_reader_init(&rd, dirfd, &img.id, img.hdr.epoch + 1, img.hdr.chain);
		rd.quiet = true;
		while ((ret = pt_log_next(&rd, UINT64_MAX, &rec)) > 0)
			for (uint32_t i = 0; i < rec.hdr->page_count; i++)
				pt_bit_set(covered, rec.index[i]);
		ret = ret == -ESTALE && rd.dropped ? -ESTALE : 0;
		pt_log_reader_free(&rd);
		if (ret)
			pt_image_close(&img);
	}
	if (ret) {
		printf("  BAD   %zu image pages failed and cannot be checked again: %s\n", b->n,
		       pt_log_strerror(ret));
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
			printf("  BAD   image page %" PRIu64 ": %s\n", p, pt_log_strerror(ret));
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
	       "\n"
	       "Exit status: 0 all good, 1 something is wrong (listed), 64 wrong usage.\n");
}

int cmd_verify(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_segment_info *segs = NULL;
	struct bad_pages bp = { 0 };
	unsigned char *buf = NULL;
	uint64_t bad = 0, records = 0, bad_pages = 0, changed = 0, repaired = 0, last;
	struct pt_log_reader rd;
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
		printf("  BAD   image: %s\n", pt_log_strerror(ret ? ret : -ENOMEM));
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
		if (segs[i].bad) {
			printf("  BAD   %s: header: %s\n", name, pt_log_strerror(segs[i].bad));
			bad++;
			continue;
		}
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		for (off = img.id.page_size;;) {
			int64_t len = pt_record_read(fd, segs[i].seq, off, &img.id, &buf, &cap, &rec);

			if (len == 0)
				break;
			if (len < 0) {
				bool tail = i + 1 == nsegs;

				printf("  %s %s at offset %" PRIu64 ": %s%s\n", tail ? "NOTE " : "BAD  ", name,
				       off, pt_log_strerror((int)len),
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
		pt_log_reader_init(&rd, dirfd, &img.id, img.hdr.epoch + 1, img.hdr.chain);
		rd.quiet = true;
		while ((ret = pt_log_next(&rd, UINT64_MAX, &rec)) > 0)
			;
		if (!(ret == -ESTALE && rd.dropped) || attempt == 4)
			break;
		pt_log_reader_free(&rd);
	}
	last = rd.next_epoch - 1;
	if (ret < 0 && !(ret == -ENODATA && rd.error_seq == (nsegs ? segs[nsegs - 1].seq : 0))) {
		printf("  BAD   the log after the image stops at epoch %" PRIu64 " (segment %016" PRIx64
		       ", offset %" PRIu64 "): %s\n", last + 1, rd.error_seq, rd.error_offset,
		       pt_log_strerror(ret));
		bad++;
	}
	pt_log_reader_free(&rd);
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
			printf("%s: unreadable header: %s\n", name, pt_log_strerror(segs[i].bad));
			continue;
		}
		printf("%s: first epoch %" PRIu64 ", %" PRIu64 " bytes\n", name, segs[i].first_epoch,
		       segs[i].size);
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		for (off = img.id.page_size;;) {
			int64_t len = pt_record_read(fd, segs[i].seq, off, &img.id, &buf, &cap, &rec);

			if (len <= 0) {
				if (len < 0)
					printf("  offset %-10" PRIu64 " %s\n", off, pt_log_strerror((int)len));
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
