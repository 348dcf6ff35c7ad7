/* SPDX-License-Identifier: MIT */
/*
 * dir.c - a region's data directory seen from outside, for programs that
 * are not its writer (the pagetrack command is one): its status, a check
 * of every byte (verify), a walk of the page log, a checkpoint asked of the
 * running writer or done in its place, and the shared replicas in
 * /dev/shm.  Everything here only reads the directory, with the rules
 * every reader applies (no link followed, no FIFO waited on, only files of
 * the directory's owner that no one else can write), except
 * pt_dir_checkpoint, which writes only through the writer's own code or
 * the one field of the state block the writer reads requests from.  It
 * never prints: findings go to the caller's callback, numbers into its
 * structs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "io.h"
#include "pagelog.h"
#include "image.h"
#include "state.h"
#include "bitmap.h"
#include "replica.h"

/* A checkpoint that drops the records being read makes a reader look again,
 * this many times at most. */
#define LOOK_AGAIN	5

/* ---- opening ---------------------------------------------------------- */

/*
 * The directory as the writer and replicas open it: O_NOFOLLOW, so that a
 * symbolic link put in its place (by whoever can write its parent) cannot
 * point us at another region.  Linux says ELOOP for one; the contract says
 * -ENOTDIR, as the writer's open does.
 */
static int open_dir(const char *dir, int *dirfd)
{
	if (!dir)
		return -EINVAL;
	*dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*dirfd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno;
	return 0;
}

static int open_region(const char *dir, int *dirfd, struct pt_image *img)
{
	int ret = open_dir(dir, dirfd);

	if (ret)
		return ret;
	ret = pt_image_open(img, *dirfd, false);
	if (ret) {
		close(*dirfd);
		*dirfd = -1;
	}
	return ret;
}

/* ---- findings ----------------------------------------------------------- */

struct reporter {
	pt_dir_problem_fn fn;
	void *arg;
	uint64_t problems;	/* PT_LOG_ERROR findings */
};

static void say(struct reporter *rep, enum pt_log_level level, const char *file, uint64_t offset,
		uint64_t page, uint64_t epoch, int error, const char *fmt, ...)
	__attribute__((format(printf, 8, 9)));
static void say(struct reporter *rep, enum pt_log_level level, const char *file, uint64_t offset,
		uint64_t page, uint64_t epoch, int error, const char *fmt, ...)
{
	struct pt_dir_problem p = { .level = level, .file = file, .offset = offset,
				    .page = page, .epoch = epoch, .error = error };
	char msg[768];
	va_list ap;

	if (level == PT_LOG_ERROR)
		rep->problems++;
	if (!rep->fn)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	p.message = msg;
	rep->fn(&p, rep->arg);
}

/*
 * In words, what pt_dir_reach() found when it returned -ENOTRECOVERABLE:
 * which durable epochs cannot be reached and where the log stops, or that
 * the state block cannot say which epochs were durable.
 */
static void report_lost(struct reporter *rep, const struct pt_dir_reach *r)
{
	char seg[64], where[256], epochs[96];

	if (r->state_error) {
		say(rep, PT_LOG_ERROR, PT_STATE_NAME, 0, UINT64_MAX, 0, -ENOTRECOVERABLE,
		    "the state block cannot be trusted (%s): which epochs were durable is "
		    "unknown; the image (epoch %" PRIu64 ") and the log reach epoch %" PRIu64,
		    pt_strerror(r->state_error), r->image_epoch, r->reached);
		return;
	}
	seg[0] = '\0';
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
	say(rep, PT_LOG_ERROR, seg[0] ? seg : NULL, r->log_error ? r->error_offset : 0, UINT64_MAX,
	    r->reached + 1, -ENOTRECOVERABLE, "%s be reached: the image (epoch %" PRIu64 ") and "
	    "the log reach epoch %" PRIu64 " (%s)", epochs, r->image_epoch, r->reached, where);
}

/*
 * Name each file of another history than the image's (pt_dir_reach()
 * returned -ESTALE).  Which side was copied in, the image or the others,
 * cannot be told from here: the closing line says both.  It is a problem
 * of its own only when no file could be named (they went meanwhile).
 */
static void report_foreign(struct reporter *rep, int dirfd, const struct pt_image *img)
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
			say(rep, PT_LOG_ERROR, name, 0, UINT64_MAX, 0, -ESTALE,
			    "%s: of another history than the image (%016" PRIx64 ")", name,
			    img->id.history_id);
			named++;
		}
	}
	free(segs);
	if (pt_state_read(dirfd, &img->id, &st) == -ESTALE) {
		if (!pt_state_read(dirfd, NULL, &st))
			say(rep, PT_LOG_ERROR, PT_STATE_NAME, 0, UINT64_MAX, 0, -ESTALE,
			    "%s: of history %016" PRIx64 " (%" PRIu64 " pages), the image of %016"
			    PRIx64 " (%" PRIu64 " pages)", PT_STATE_NAME, st.history_id, st.npages,
			    img->id.history_id, img->id.npages);
		else
			say(rep, PT_LOG_ERROR, PT_STATE_NAME, 0, UINT64_MAX, 0, -ESTALE,
			    "%s: of another history than the image (%016" PRIx64 ")", PT_STATE_NAME,
			    img->id.history_id);
		named++;
	}
	say(rep, named ? PT_LOG_WARN : PT_LOG_ERROR, NULL, 0, UINT64_MAX, 0, -ESTALE,
	    "files of two histories: the image or the files %s were copied from another region",
	    named ? "above" : "of the log or the state block");
}

/* What a pt_dir_reach() verdict other than 0 means, through rep. */
static void report_reach(struct reporter *rep, int dirfd, const struct pt_image *img, int verdict,
			 const struct pt_dir_reach *reach)
{
	if (verdict == -ENOTRECOVERABLE)
		report_lost(rep, reach);
	else if (verdict == -ESTALE)
		report_foreign(rep, dirfd, img);
	else if (verdict)
		say(rep, PT_LOG_ERROR, NULL, 0, UINT64_MAX, 0, verdict,
		    "cannot tell how far the directory reaches: %s", pt_strerror(verdict));
}

/* ---- status -------------------------------------------------------------- */

/*
 * Does a writer hold the lock?  The lock, not the state block, says so: a
 * writer that crashed left its pid there.  The writer holds LOCK_EX, so a
 * shared lock we can take (and drop at once) means none runs.  1 yes, 0
 * no (or no lock file), -errno when the lock file is not one to open.
 */
static int writer_running(int dirfd, uid_t owner)
{
	int fd = pt_open_file(dirfd, PT_LOCK_NAME, O_RDONLY, owner);
	int running;

	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	running = flock(fd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK;
	close(fd);		/* drops our shared lock, if we took it */
	return running;
}

PT_EXPORT int pt_dir_status(const char *dir, struct pt_dir_status *out, pt_dir_problem_fn report,
			    void *arg)
{
	struct reporter rep = { .fn = report, .arg = arg };
	struct pt_segment_info *segs = NULL;
	struct pt_dir_status s = { 0 };
	struct pt_dir_reach reach;
	struct pt_state state;
	struct pt_image img;
	size_t nsegs = 0;
	uid_t owner;
	int ret, dirfd, running;

	/* Its first version: smaller is a mistake; a newer caller's is larger. */
	if (!out || out->sz < sizeof(*out))
		return -EINVAL;
	ret = open_region(dir, &dirfd, &img);
	if (ret)
		return ret;
	s.history_id = img.id.history_id;
	s.npages = img.id.npages;
	s.page_size = img.id.page_size;
	s.image_epoch = img.hdr.epoch;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		goto out;
	ret = pt_segments_list(dirfd, &img.id, &segs, &nsegs);
	if (ret)
		goto out;
	s.segments = nsegs > UINT32_MAX ? UINT32_MAX : (uint32_t)nsegs;
	for (size_t i = 0; i < nsegs; i++)
		s.log_bytes += segs[i].size;
	running = writer_running(dirfd, owner);
	if (running < 0) {
		ret = running;
		goto out;
	}
	s.state_error = pt_state_read(dirfd, &img.id, &state);
	if (!s.state_error) {
		s.published = state.published;
		s.durable = state.durable;
		s.checkpointed = state.checkpointed;
		s.state_durable = state.durable;
		if (state.last_error && state.last_error < 4096)
			s.last_error = -(int)state.last_error;
	}
	if (running)
		s.writer_pid = !s.state_error && state.writer_pid && state.writer_pid <= INT32_MAX ?
			       (int32_t)state.writer_pid : -1;
	/* The image may be ahead of a state block the writer had no chance
	 * to update (a checkpoint, then a crash): levels never go down. */
	if (s.checkpointed < s.image_epoch)
		s.checkpointed = s.image_epoch;
	if (s.durable < s.checkpointed)
		s.durable = s.checkpointed;
	if (s.published < s.durable)
		s.published = s.durable;
	s.reach = pt_dir_reach(dirfd, &img, &reach);
	s.reached = reach.reached;
	s.log_error = reach.log_error;
	s.log_error_segment = reach.log_error ? reach.error_seq : 0;
	s.log_error_offset = reach.log_error ? reach.error_offset : 0;
	s.foreign = reach.foreign;
	report_reach(&rep, dirfd, &img, s.reach, &reach);
	s.sz = out->sz;
	memcpy(out, &s, sizeof(s));
	ret = 0;
out:
	free(segs);
	pt_image_close(&img);
	close(dirfd);
	return ret;
}

/* ---- verify ------------------------------------------------------------------ */

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
 * records we were reading makes us look again.  Returns the pages found
 * good on the second look.
 */
static uint64_t recheck_pages(int dirfd, const struct bad_pages *b, struct reporter *rep)
{
	uint64_t changed = 0, *covered = NULL;
	unsigned char *page = NULL;
	struct pt_image img;
	int ret = -ESTALE;

	for (int attempt = 0; attempt < LOOK_AGAIN && ret == -ESTALE; attempt++) {
		struct pt_pagelog_reader rd;
		struct pt_record rec;

		ret = pt_image_open(&img, dirfd, false);
		if (ret)
			break;
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
		for (size_t i = 0; i < b->n; i++)
			say(rep, PT_LOG_ERROR, PT_IMAGE_NAME, 0, b->v[i], 0, ret,
			    "image page %" PRIu64 " failed and cannot be checked again: %s", b->v[i],
			    pt_strerror(ret));
		goto out;
	}
	for (size_t i = 0; i < b->n; i++) {
		uint64_t p = b->v[i], off = img.hdr.data_offset + p * img.id.page_size;
		char msg[256];

		ret = p < img.id.npages ? pt_image_verify_page(&img, p, page, msg, sizeof(msg)) : 0;
		if (ret == 0)
			changed++;
		else if (ret > 0 && pt_bit_test(covered, p))
			say(rep, PT_LOG_WARN, PT_IMAGE_NAME, off, p, 0, -EBADMSG,
			    "%s; a log record after the image's epoch rewrites it (a checkpoint "
			    "writing it, or one a crash cut): recovery repairs it", msg);
		else if (ret > 0)
			say(rep, PT_LOG_ERROR, PT_IMAGE_NAME, off, p, 0, -EBADMSG, "%s", msg);
		else
			say(rep, PT_LOG_ERROR, PT_IMAGE_NAME, off, p, 0, ret, "image page %" PRIu64
			    ": %s", p, pt_strerror(ret));
	}
	pt_image_close(&img);
out:
	free(covered);
	free(page);
	return changed;
}

/* Every record of every segment, each checked whole; returns the good ones. */
static uint64_t verify_segments(int dirfd, const struct pt_image *img, uid_t owner,
				const struct pt_segment_info *segs, size_t nsegs,
				struct reporter *rep)
{
	unsigned char *buf = NULL;
	uint64_t records = 0;
	size_t cap = 0;

	for (size_t i = 0; i < nsegs; i++) {
		struct pt_record rec;
		char name[64];
		uint64_t off, n = 0;
		int fd;

		pt_segment_name(name, sizeof(name), segs[i].seq);
		/* Of another history: the reach check names it. */
		if (segs[i].bad == -ESTALE)
			continue;
		if (segs[i].bad) {
			say(rep, PT_LOG_ERROR, name, 0, UINT64_MAX, 0, segs[i].bad,
			    "%s: header: %s", name, pt_strerror(segs[i].bad));
			continue;
		}
		fd = pt_open_file(dirfd, name, O_RDONLY, owner);
		if (fd < 0) {
			say(rep, PT_LOG_ERROR, name, 0, UINT64_MAX, 0, fd, "%s: %s", name,
			    pt_strerror(fd));
			continue;
		}
		for (off = img->id.page_size;;) {
			int64_t len = pt_record_read(fd, segs[i].seq, off, segs[i].first_epoch, &img->id,
						     &buf, &cap, &rec);
			bool tail = i + 1 == nsegs;

			/* The end, or a recycled file's old records. */
			if (len == 0)
				break;
			if (len > 0) {
				n++;
				off += (uint64_t)len;
				continue;
			}
			/*
			 * The newest segment's end may be a record being
			 * written or one a crash tore; an older segment
			 * torn at its end was followed by a new one after a
			 * write error (the chain check below says whether
			 * anything went missing).  Anything else is damage.
			 */
			if (tail)
				say(rep, PT_LOG_WARN, name, off, UINT64_MAX, 0, (int)len,
				    "%s at offset %" PRIu64 ": %s (the newest segment's end: a record "
				    "being written, or torn by a crash)", name, off,
				    pt_strerror((int)len));
			else
				say(rep, len == -ENODATA ? PT_LOG_WARN : PT_LOG_ERROR, name, off,
				    UINT64_MAX, 0, (int)len, "%s at offset %" PRIu64 ": %s; the rest of "
				    "the segment is not read", name, off, pt_strerror((int)len));
			break;
		}
		say(rep, PT_LOG_INFO, name, 0, UINT64_MAX, segs[i].first_epoch, 0,
		    "segment %s: epochs from %" PRIu64 ", %" PRIu64 " good records, %" PRIu64
		    " bytes", name, segs[i].first_epoch, n, segs[i].size);
		records += n;
		close(fd);
	}
	free(buf);
	return records;
}

/*
 * The chain a recovery would follow, from the image as it is now: a
 * checkpoint since the start may have dropped the records after the header
 * read first.  Returns the epoch it reaches; a stop other than the newest
 * segment's torn end is a problem.
 */
static uint64_t verify_chain(int dirfd, struct pt_image *img, uint64_t newest_seq,
			     struct reporter *rep)
{
	struct pt_pagelog_reader rd;
	struct pt_record rec;
	uint64_t last;
	int ret;

	for (int attempt = 0;; attempt++) {
		struct pt_image now;

		if (attempt && !pt_image_open(&now, dirfd, false)) {
			pt_image_close(img);
			*img = now;
		}
		pt_pagelog_reader_init(&rd, dirfd, &img->id, img->hdr.epoch + 1, img->hdr.chain);
		rd.quiet = true;
		while ((ret = pt_pagelog_next(&rd, UINT64_MAX, &rec)) > 0)
			;
		if (!(ret == -ESTALE && rd.dropped) || attempt == LOOK_AGAIN - 1)
			break;
		pt_pagelog_reader_free(&rd);
	}
	last = rd.next_epoch - 1;
	if (ret < 0 && !(ret == -ENODATA && rd.error_seq == newest_seq)) {
		char seg[64];

		pt_segment_name(seg, sizeof(seg), rd.error_seq);
		say(rep, PT_LOG_ERROR, seg, rd.error_offset, UINT64_MAX, last + 1, ret,
		    "the log after the image stops at epoch %" PRIu64 " (segment %016" PRIx64
		    ", offset %" PRIu64 "): %s", last + 1, rd.error_seq, rd.error_offset,
		    pt_strerror(ret));
	}
	pt_pagelog_reader_free(&rd);
	return last;
}

PT_EXPORT int pt_dir_verify(const char *dir, pt_dir_problem_fn report, void *arg)
{
	struct reporter rep = { .fn = report, .arg = arg };
	struct pt_segment_info *segs = NULL;
	struct bad_pages bp = { 0 };
	struct pt_dir_reach reach;
	struct pt_image img;
	uint64_t records, bad_pages = 0, changed = 0, last;
	size_t nsegs = 0;
	uid_t owner;
	int ret, dirfd;

	ret = open_region(dir, &dirfd, &img);
	if (ret)
		return ret;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		goto out;
	say(&rep, PT_LOG_INFO, PT_IMAGE_NAME, 0, UINT64_MAX, img.hdr.epoch, 0,
	    "image: epoch %" PRIu64 ", header slot %d, %" PRIu64 " pages", img.hdr.epoch, img.slot,
	    img.id.npages);
	ret = pt_image_verify(&img, note_bad_page, &bp, &bad_pages);
	if (ret || bp.nomem)
		say(&rep, PT_LOG_ERROR, PT_IMAGE_NAME, 0, UINT64_MAX, 0, ret ? ret : -ENOMEM,
		    "image: %s", pt_strerror(ret ? ret : -ENOMEM));
	if (bp.n)
		changed = recheck_pages(dirfd, &bp, &rep);
	free(bp.v);
	if (changed)
		say(&rep, PT_LOG_INFO, PT_IMAGE_NAME, 0, UINT64_MAX, 0, 0, "image: %" PRIu64 " pages "
		    "changed while read (a checkpoint); good when checked again", changed);
	ret = pt_segments_list(dirfd, &img.id, &segs, &nsegs);
	if (ret)
		goto out;
	records = verify_segments(dirfd, &img, owner, segs, nsegs, &rep);
	last = verify_chain(dirfd, &img, nsegs ? segs[nsegs - 1].seq : 0, &rep);
	/* The files every reader opens: anything but a regular file of the
	 * owner in their place makes the writer and replicas refuse the
	 * directory. */
	for (int i = 0; i < 2; i++) {
		const char *name = i ? PT_STATE_NAME : PT_LOCK_NAME;
		int fd = pt_open_file(dirfd, name, O_RDONLY, owner);

		if (fd >= 0)
			close(fd);
		else if (fd != -ENOENT)
			say(&rep, PT_LOG_ERROR, name, 0, UINT64_MAX, 0, fd, "%s: %s", name,
			    pt_strerror(fd));
	}
	/*
	 * The log may end cleanly and still short: a segment deleted or cut at
	 * a record's end leaves nothing torn to see.  The state block says how
	 * far the writer had made epochs durable; reaching less is a loss.
	 */
	report_reach(&rep, dirfd, &img, pt_dir_reach(dirfd, &img, &reach), &reach);
	say(&rep, PT_LOG_INFO, NULL, 0, UINT64_MAX, last, 0, "recovery would reach epoch %" PRIu64
	    "; %" PRIu64 " records checked, %" PRIu64 " problems", last, records, rep.problems);
	ret = rep.problems > INT_MAX ? INT_MAX : (int)rep.problems;
out:
	free(segs);
	pt_image_close(&img);
	close(dirfd);
	return ret;
}

/* ---- walk ------------------------------------------------------------------------ */

PT_EXPORT int pt_dir_walk(const char *dir, pt_dir_record_fn fn, void *arg)
{
	struct pt_segment_info *segs = NULL;
	struct pt_dir_record dr;
	unsigned char *buf = NULL;
	struct pt_image img;
	size_t nsegs = 0, cap = 0;
	uid_t owner;
	int ret, dirfd;

	if (!fn)
		return -EINVAL;
	ret = open_region(dir, &dirfd, &img);
	if (ret)
		return ret;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		goto out;
	ret = pt_segments_list(dirfd, &img.id, &segs, &nsegs);
	if (ret)
		goto out;
	dr = (struct pt_dir_record){ .what = PT_DIR_IMAGE, .history_id = img.id.history_id,
				     .epoch = img.hdr.epoch };
	ret = fn(&dr, arg);
	for (size_t i = 0; i < nsegs && !ret; i++) {
		char name[64];
		uint64_t off;
		int fd;

		pt_segment_name(name, sizeof(name), segs[i].seq);
		dr = (struct pt_dir_record){ .what = PT_DIR_SEGMENT, .history_id = img.id.history_id,
					     .segment = name, .segment_seq = segs[i].seq,
					     .epoch = segs[i].bad ? 0 : segs[i].first_epoch,
					     .length = segs[i].size, .error = segs[i].bad };
		ret = fn(&dr, arg);
		if (ret || segs[i].bad)
			continue;
		fd = pt_open_file(dirfd, name, O_RDONLY, owner);
		if (fd < 0) {
			dr = (struct pt_dir_record){ .what = PT_DIR_STOP, .segment = name,
						     .history_id = img.id.history_id,
						     .segment_seq = segs[i].seq, .error = fd };
			ret = fn(&dr, arg);
			continue;
		}
		for (off = img.id.page_size; !ret;) {
			struct pt_record rec;
			int64_t len = pt_record_read(fd, segs[i].seq, off, segs[i].first_epoch, &img.id,
						     &buf, &cap, &rec);

			/* The end, or a recycled file's old records. */
			if (len == 0)
				break;
			dr = (struct pt_dir_record){ .what = len > 0 ? PT_DIR_RECORD : PT_DIR_STOP,
						     .history_id = img.id.history_id, .segment = name,
						     .segment_seq = segs[i].seq, .offset = off };
			if (len < 0) {
				dr.error = (int)len;
				ret = fn(&dr, arg);
				break;
			}
			dr.epoch = rec.hdr->epoch;
			dr.page_count = rec.hdr->page_count;
			dr.length = rec.hdr->length;
			dr.header_checksum = rec.hdr->header_checksum;
			dr.prev = rec.hdr->prev;
			dr.pages = rec.index;
			ret = fn(&dr, arg);
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

/* ---- checkpoint ---------------------------------------------------------------------- */

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Ask the running writer: its checkpoint thread reads checkpoint_request
 * each checkpoint_interval_ms and checkpoints when it is above the image's
 * epoch; we watch checkpointed.  The state file is the writer's, mapped
 * shared: the one store here is to checkpoint_request, which only the
 * writer's open resets.  Returns the epoch checkpointed, -ETIMEDOUT,
 * -EAGAIN when the writer let go of the lock meanwhile (do it ourselves),
 * or -errno.
 */
static int64_t ask_writer(const char *dir, int dirfd, uid_t owner, int lockfd, int timeout_ms,
			  int32_t *pid)
{
	struct pt_state *st, copy;
	uint64_t want, deadline, got;
	struct stat sb;
	int64_t ret;
	int fd;

	fd = pt_open_file(dirfd, PT_STATE_NAME, O_RDWR, owner);
	if (fd < 0)
		return fd;
	/* A state file shorter than the block would make the store below a
	 * SIGBUS: check before mapping. */
	if (fstat(fd, &sb)) {
		ret = -errno;
		goto out_close;
	}
	if ((size_t)sb.st_size < sizeof(*st)) {
		ret = -EBADMSG;
		goto out_close;
	}
	st = mmap(NULL, sizeof(*st), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (st == MAP_FAILED) {
		ret = -errno;
		goto out_close;
	}
	memcpy(&copy, st, sizeof(copy));
	ret = pt_state_check(&copy, (uint64_t)sb.st_size, NULL);
	if (ret)
		goto out;
	*pid = copy.writer_pid <= INT32_MAX ? (int32_t)copy.writer_pid : -1;
	want = __atomic_load_n(&st->published, __ATOMIC_ACQUIRE);
	__atomic_store_n(&st->checkpoint_request, want, __ATOMIC_RELEASE);
	deadline = monotonic_ms() + (timeout_ms < 0 ? 0 : (uint64_t)timeout_ms);
	for (unsigned int n = 0;; n++) {
		got = __atomic_load_n(&st->checkpointed, __ATOMIC_ACQUIRE);
		if (got >= want) {
			ret = (int64_t)got;
			break;
		}
		if (timeout_ms >= 0 && monotonic_ms() >= deadline) {
			pt_log(PT_LOG_INFO, "%s: the writer did not checkpoint epoch %" PRIu64 " in %d ms "
			       "(is its checkpoint thread off?)", dir, want, timeout_ms);
			ret = -ETIMEDOUT;
			break;
		}
		/* A writer that closed (or died) will not answer: the lock
		 * free again means the region is ours to open. */
		if (n % 10 == 9 && !flock(lockfd, LOCK_SH | LOCK_NB)) {
			flock(lockfd, LOCK_UN);
			ret = -EAGAIN;
			break;
		}
		usleep(10000);
	}
out:
	munmap(st, sizeof(*st));
out_close:
	pt_io->close(fd);	/* opened writable, through pt_io */
	return ret;
}

PT_EXPORT pt_epoch_t pt_dir_checkpoint(const char *dir, int timeout_ms, int32_t *writer_pid)
{
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_region *r;
	int32_t pid = 0;
	int64_t e = -EBUSY;
	uid_t owner;
	int ret, dirfd, lockfd = -1;

	if (timeout_ms < -1)
		return -EINVAL;
	if (writer_pid)
		*writer_pid = 0;
	ret = open_dir(dir, &dirfd);
	if (ret)
		return ret;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		goto out;
	for (int attempt = 0; attempt < LOOK_AGAIN; attempt++) {
		/* The lock says whether a writer runs (it holds LOCK_EX). */
		if (lockfd < 0) {
			lockfd = pt_open_file(dirfd, PT_LOCK_NAME, O_RDONLY, owner);
			if (lockfd < 0 && lockfd != -ENOENT) {
				ret = lockfd;
				goto out;
			}
		}
		if (lockfd >= 0 && flock(lockfd, LOCK_SH | LOCK_NB) && errno == EWOULDBLOCK) {
			e = ask_writer(dir, dirfd, owner, lockfd, timeout_ms, &pid);
			if (e != -EAGAIN)
				break;
			continue;
		}
		if (lockfd >= 0)
			flock(lockfd, LOCK_UN);
		/* No writer: be it, for one checkpoint.  One that starts
		 * meanwhile makes the open -EBUSY: ask it instead. */
		pid = 0;
		ret = pt_region_open(&r, dir, &o);
		if (ret == -EBUSY)
			continue;
		if (ret) {
			e = ret;
			break;
		}
		e = pt_region_checkpoint(r);
		ret = pt_region_close(r);
		if (e >= 0 && ret)
			e = ret;
		break;
	}
	if (e == -EAGAIN)
		e = -EBUSY;	/* a writer came and went each time we looked */
	if (e >= 0 && writer_pid)
		*writer_pid = pid;
	ret = 0;
out:
	if (lockfd >= 0)
		close(lockfd);
	close(dirfd);
	return ret ? ret : e;
}

/* ---- shared replicas ------------------------------------------------------------------ */

PT_EXPORT int pt_dir_shared(const char *dir, pt_dir_shared_fn fn, void *arg)
{
	struct pt_dir_shared_reader *readers = NULL;
	struct pt_shared_ctl *ctl = NULL;
	struct pt_image img;
	struct dirent *de;
	struct stat dirst;
	DIR *d = NULL;
	int ret, region_fd;

	if (!fn)
		return -EINVAL;
	ret = open_region(dir, &region_fd, &img);
	if (ret)
		return ret;
	if (fstat(region_fd, &dirst)) {
		ret = -errno;
		goto out;
	}
	ctl = malloc(sizeof(*ctl));
	readers = calloc(PT_SHARED_READERS, sizeof(*readers));
	if (!ctl || !readers) {
		ret = -ENOMEM;
		goto out;
	}
	d = opendir("/dev/shm");
	if (!d) {
		ret = -errno;
		goto out;
	}
	/*
	 * Anyone can make a file in /dev/shm, named as they like: only
	 * regular files (a FIFO would block the open), owned by the caller or
	 * the region's owner and writable by no one else, whose control block
	 * checks for this region, are listed.  The control block is read into
	 * a copy and checked there before any of its numbers is used.
	 */
	while (!ret && (de = readdir(d))) {
		struct pt_dir_shared s = { .name = de->d_name + 10, .reader = readers };
		struct stat st;
		int fd;

		if (strncmp(de->d_name, "pagetrack-", 10) || !de->d_name[10])
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) || !S_ISREG(st.st_mode) ||
		    (st.st_uid != geteuid() && st.st_uid != dirst.st_uid) ||
		    (st.st_mode & (S_IWGRP | S_IWOTH)) ||
		    pt_read_full(fd, ctl, sizeof(*ctl), 0) != (ssize_t)sizeof(*ctl) ||
		    pt_shared_ctl_check(ctl, &img.id, (uint64_t)st.st_size)) {
			close(fd);
			continue;
		}
		close(fd);
		s.epoch = (pt_epoch_t)ctl->copy_epoch[ctl->current];
		for (int i = 0; i < PT_SHARED_READERS; i++) {
			int32_t pid = ctl->readers[i].pid;

			/* pid > 0 (checked): kill() never reaches a group. */
			if (!pid || (kill(pid, 0) && errno == ESRCH))
				continue;
			readers[s.readers].pid = pid;
			/* <= INT64_MAX: pt_shared_ctl_check() */
			readers[s.readers].epoch = (pt_epoch_t)ctl->readers[i].epoch;
			if (!s.readers || readers[s.readers].epoch < s.oldest_reader_epoch)
				s.oldest_reader_epoch = readers[s.readers].epoch;
			s.readers++;
		}
		ret = fn(&s, arg);
	}
out:
	if (d)
		closedir(d);
	free(readers);
	free(ctl);
	pt_image_close(&img);
	close(region_fd);
	return ret;
}

PT_EXPORT pt_epoch_t pt_dir_epoch(const char *dir)
{
	struct pt_state st;
	int dirfd, ret;

	dirfd = pt_open_dir(dir);
	if (dirfd < 0)
		return dirfd;
	ret = pt_state_read(dirfd, NULL, &st);
	close(dirfd);
	return ret ? ret : (pt_epoch_t)st.published;
}
