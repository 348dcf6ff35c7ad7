/* SPDX-License-Identifier: MIT */
/*
 * pagelog.c - segment files of records: naming, creation, sealing a staged
 * record, and the reader every consumer uses (recovery, checkpoint,
 * replicas, verify, inspect).
 *
 * The reader hands out a record only after checking all of it: magic,
 * version, header checksum, page size, history, lengths, payload checksum
 * (the head: index and page sums), page indices, each page against its
 * sum, and that it continues the hash chain (its prev is the header
 * checksum of the epoch before).  It never hands out part of a record.
 * A reader of heads (the checkpoint, a replica applying many records at
 * once) gets each record's head so checked and reads the pages it wants
 * itself, checking each against its sum.
 *
 * Segment order is by sequence number.  A segment may end in a torn or
 * abandoned record: after a failed write or fsync the writer starts a new
 * segment at the first epoch it cannot vouch for and writes those records
 * again (byte for byte the same), and after a crash the writer starts a new
 * segment at the epoch after the last intact one.  So at the end of the
 * records of one segment the reader continues in the next segment whose
 * first epoch is not beyond the epoch it wants, and skips records it
 * already has.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "io.h"
#include "pagelog.h"
#include "internal.h"

void pt_segment_name(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, "log-%016" PRIx64 ".seg", seq);
}


static int read_segment_header(int fd, const struct pt_region_id *id, struct pt_segment_header *h)
{
	ssize_t n = pt_read_full(fd, h, sizeof(*h), 0);

	if (n < 0)
		return (int)n;
	if ((size_t)n < sizeof(*h))
		return -ENODATA;
	if (memcmp(h->magic, PT_SEGMENT_MAGIC, 8))
		return -EBADMSG;
	if (h->version != PT_FORMAT_VERSION || h->header_size != sizeof(*h))
		return -EPROTO;
	if (h->checksum != pt_header_checksum(h, sizeof(*h), offsetof(struct pt_segment_header, checksum)))
		return -EBADMSG;
	if (h->page_size != id->page_size)
		return -EXDEV;
	if (h->history_id != id->history_id || h->npages != id->npages)
		return -ESTALE;
	if (!h->first_epoch)
		return -EMSGSIZE;
	return 0;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct pt_segment_info *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int pt_segments_list(int dirfd, const struct pt_region_id *id, struct pt_segment_info **out,
		     size_t *nr)
{
	struct pt_segment_info *v = NULL, *nv;
	size_t n = 0, cap = 0;
	struct dirent *de;
	uid_t owner = 0;
	DIR *d;
	int fd, ret = 0;

	*out = NULL;
	*nr = 0;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		return ret;
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d))) {
		struct pt_segment_header h;
		unsigned long long seq;
		char tail[8];
		int sfd;

		if (sscanf(de->d_name, "log-%16llx.se%1s", &seq, tail) != 2 || strcmp(tail, "g") ||
		    strlen(de->d_name) != 24)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				ret = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		memset(&v[n], 0, sizeof(v[n]));
		v[n].seq = seq;
		sfd = pt_open_file(dirfd, de->d_name, O_RDONLY, owner);
		if (sfd < 0) {
			/* Dropped by a checkpoint while we listed. */
			if (sfd == -ENOENT)
				continue;
			v[n].bad = sfd;
		} else {
			off_t end = lseek(sfd, 0, SEEK_END);

			v[n].bad = read_segment_header(sfd, id, &h);
			if (!v[n].bad && h.seq != seq)
				v[n].bad = -EBADMSG;
			v[n].first_epoch = v[n].bad ? 0 : h.first_epoch;
			v[n].size = end > 0 ? (uint64_t)end : 0;
			close(sfd);
		}
		n++;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), seg_cmp);
	*out = v;
	*nr = n;
	v = NULL;
out:
	free(v);
	closedir(d);
	return ret;
}

void pt_spare_name(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, "spare-%016" PRIx64 ".seg", seq);
}

/* A spare segment file left by pt_segment_retire(), or "" if none. */
static void find_spare(int dirfd, char *name, size_t len)
{
	struct dirent *de;
	DIR *d;
	int fd;

	name[0] = 0;
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (!strncmp(de->d_name, "spare-", 6) && n < len) {
			memcpy(name, de->d_name, n + 1);
			break;
		}
	}
	closedir(d);
}

/* The header page of segment seq whose first record is first_epoch
 * (calloc()ed), or NULL. */
static unsigned char *segment_header(const struct pt_region_id *id, uint64_t seq,
				     uint64_t first_epoch)
{
	unsigned char *page = calloc(1, id->page_size);
	struct pt_segment_header *h = (struct pt_segment_header *)page;

	if (!page)
		return NULL;
	memcpy(h->magic, PT_SEGMENT_MAGIC, 8);
	h->version = PT_FORMAT_VERSION;
	h->header_size = sizeof(*h);
	h->page_size = id->page_size;
	h->npages = id->npages;
	h->history_id = id->history_id;
	h->seq = seq;
	h->first_epoch = first_epoch;
	h->created = (uint64_t)time(NULL);
	h->checksum = pt_header_checksum(h, sizeof(*h), offsetof(struct pt_segment_header, checksum));
	return page;
}

/*
 * A spare recycled: it gets its new header under its spare name and is made
 * durable before a rename (pt_segment_install) makes it a segment: a crash
 * leaves either a spare or a whole segment, never a segment with another
 * segment's header.  Its old records stay behind the new ones until
 * overwritten; readers stop at the first record older than the segment's
 * first epoch (pt_record_stale).
 */
int pt_segment_prepare(int dirfd, const struct pt_region_id *id, uint64_t seq,
		       uint64_t first_epoch, char *spare, size_t len)
{
	unsigned char *page;
	uid_t owner = 0;
	int fd, ret;

	find_spare(dirfd, spare, len);
	if (!spare[0])
		return -ENOENT;
	ret = pt_dir_owner(dirfd, &owner);
	if (ret)
		return ret;
	fd = pt_open_file(dirfd, spare, O_RDWR, owner);
	if (fd < 0)
		return fd;
	page = segment_header(id, seq, first_epoch);
	ret = page ? pt_write_full(fd, page, id->page_size, 0) : -ENOMEM;
	free(page);
	if (!ret)
		ret = pt_io->fdatasync(fd);
	if (ret) {
		/* Not usable: the next one is made fresh. */
		pt_io->close(fd);
		if (ret != -ENOMEM)
			pt_io->unlinkat(dirfd, spare);
		return ret;
	}
	return fd;
}

int pt_segment_install(int dirfd, const char *spare, uint64_t seq)
{
	char name[64];

	pt_segment_name(name, sizeof(name), seq);
	return pt_io->renameat(dirfd, spare, name);
}

int pt_segment_create(int dirfd, const struct pt_region_id *id, uint64_t seq, uint64_t first_epoch)
{
	unsigned char *page;
	char name[64], spare[64];
	int fd, ret;

	fd = pt_segment_prepare(dirfd, id, seq, first_epoch, spare, sizeof(spare));
	if (fd >= 0) {
		ret = pt_segment_install(dirfd, spare, seq);
		if (!ret)
			return fd;
		pt_io->close(fd);
		pt_io->unlinkat(dirfd, spare);
	}
	page = segment_header(id, seq, first_epoch);
	if (!page)
		return -ENOMEM;
	pt_segment_name(name, sizeof(name), seq);
	fd = pt_create_file(dirfd, name, O_RDWR);
	if (fd < 0) {
		free(page);
		return fd;
	}
	ret = pt_write_full(fd, page, id->page_size, 0);
	free(page);
	if (ret) {
		pt_io->close(fd);
		pt_io->unlinkat(dirfd, name);
		return ret;
	}
	return fd;
}

int pt_segment_retire(int dirfd, uint64_t seq, unsigned int keep)
{
	char name[64], spare[64];
	unsigned int spares = 0;
	struct dirent *de;
	DIR *d;
	int fd;

	pt_segment_name(name, sizeof(name), seq);
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d && fd >= 0)
		close(fd);
	while (d && (de = readdir(d)))
		spares += !strncmp(de->d_name, "spare-", 6);
	if (d)
		closedir(d);
	if (spares >= keep)
		return pt_io->unlinkat(dirfd, name);
	pt_spare_name(spare, sizeof(spare), seq);
	return pt_io->renameat(dirfd, name, spare);
}

void pt_record_fill(void *buf, const struct pt_region_id *id, uint64_t epoch,
		    uint32_t page_count, uint64_t prev)
{
	struct pt_record_header *h = buf;

	h->magic = PT_RECORD_MAGIC;
	h->version = PT_FORMAT_VERSION;
	h->header_size = sizeof(*h);
	h->page_size = id->page_size;
	h->page_count = page_count;
	h->epoch = epoch;
	h->history_id = id->history_id;
	h->length = pt_record_length(page_count, id->page_size);
	h->prev = prev;
}

/*
 * Each page is hashed once, here: its sum goes into the head, and the
 * payload checksum covers the head, so the record's checksums cover the
 * pages without hashing them a second time.
 */
void pt_record_seal(void *buf)
{
	struct pt_record_header *h = buf;

	pt_record_sum(buf, h->page_count, h->page_size, 0, h->page_count);
	pt_record_seal_head(buf);
}

void pt_record_sum(void *buf, uint32_t page_count, size_t page_size, uint32_t first, uint32_t n)
{
	uint64_t *sums = (uint64_t *)((unsigned char *)buf + sizeof(struct pt_record_header)) +
			 page_count;
	const unsigned char *data = (const unsigned char *)buf +
				    pt_record_head_length(page_count, page_size);

	for (uint32_t i = first; i < first + n; i++)
		sums[i] = pt_checksum(data + (size_t)i * page_size, page_size);
}

void pt_record_seal_head(void *buf)
{
	struct pt_record_header *h = buf;

	h->payload_checksum = pt_checksum((unsigned char *)buf + sizeof(*h),
					  pt_record_head_length(h->page_count, h->page_size) -
					  sizeof(*h));
	h->header_checksum = 0;
	h->header_checksum = pt_checksum(h, sizeof(*h));
}

static int grow(unsigned char **buf, size_t *cap, size_t need)
{
	unsigned char *nb;

	if (*cap >= need)
		return 0;
	nb = realloc(*buf, need);
	if (!nb)
		return -ENOMEM;
	*buf = nb;
	*cap = need;
	return 0;
}

static int check_header(const struct pt_record_header *h, const struct pt_region_id *id)
{
	if (h->magic != PT_RECORD_MAGIC)
		return -EBADMSG;
	if (h->version != PT_FORMAT_VERSION || h->header_size != sizeof(*h))
		return -EPROTO;
	if (h->header_checksum != pt_header_checksum(h, sizeof(*h),
						    offsetof(struct pt_record_header, header_checksum)))
		return -EBADMSG;
	if (h->page_size != id->page_size)
		return -EXDEV;
	if (h->history_id != id->history_id)
		return -ESTALE;
	if (!h->epoch || h->page_count > id->npages ||
	    h->length != pt_record_length(h->page_count, id->page_size))
		return -EMSGSIZE;
	return 0;
}

/* How much of a record record_read() reads and checks. */
enum read_mode {
	READ_HEADER,	/* the header alone: skipping records one has */
	READ_HEAD,	/* the head (header, index, sums): pages not read */
	READ_WHOLE,	/* everything, each page against its sum */
};

static int64_t record_read(int fd, uint64_t seq, uint64_t offset, const struct pt_region_id *id,
			   unsigned char **buf, size_t *cap, struct pt_record *rec,
			   enum read_mode mode)
{
	const struct pt_record_header *h;
	uint64_t head, want, prev_index = 0;
	size_t ps = id->page_size;
	ssize_t n;
	int ret;

	ret = grow(buf, cap, ps);
	if (ret)
		return ret;
	n = pt_read_full(fd, *buf, mode == READ_HEADER ? sizeof(*h) : ps, (off_t)offset);
	if (n < 0)
		return n;
	if (n == 0)
		return 0;
	if ((size_t)n < sizeof(*h))
		return -ENODATA;
	h = (const struct pt_record_header *)*buf;
	/* Zeros where a record would start: the end of the records (a
	 * recycled segment's end marker, or space allocated and not written). */
	if (!h->magic && !h->header_checksum && !h->length)
		return 0;
	ret = check_header(h, id);
	if (ret)
		return ret;
	memset(rec, 0, sizeof(*rec));
	rec->seq = seq;
	rec->offset = offset;
	if (mode == READ_HEADER) {
		rec->hdr = h;
		return (int64_t)h->length;
	}
	/* Every record is at least a page long: a first read cut short by the
	 * end of the file is a torn record, whatever its header says (the
	 * rest of the buffer holds an earlier record's bytes). */
	if ((uint64_t)n < ps)
		return -ENODATA;
	head = pt_record_head_length(h->page_count, ps);
	want = mode == READ_WHOLE ? h->length : head;
	if (want > (uint64_t)n) {
		ret = grow(buf, cap, want);
		if (ret)
			return ret;
		h = (const struct pt_record_header *)*buf;
		n = pt_read_full(fd, *buf + ps, want - ps, (off_t)(offset + ps));
		if (n < 0)
			return n;
		if ((uint64_t)n < want - ps)
			return -ENODATA;
	}
	if (mode == READ_HEAD) {
		struct stat st;

		/* The pages are read later, by the caller: the file must hold
		 * them now, or the record is torn (the whole read says so). */
		if (fstat(fd, &st))
			return -errno;
		if ((uint64_t)st.st_size < offset + h->length)
			return -ENODATA;
	}
	if (h->payload_checksum != pt_checksum(*buf + sizeof(*h), head - sizeof(*h)))
		return -EBADMSG;
	rec->hdr = h;
	rec->index = (const uint64_t *)(*buf + sizeof(*h));
	rec->sums = rec->index + h->page_count;
	rec->data_offset = offset + head;
	for (uint32_t i = 0; i < h->page_count; i++) {
		if (rec->index[i] >= id->npages || (i && rec->index[i] <= prev_index))
			return -EMSGSIZE;
		prev_index = rec->index[i];
	}
	if (mode == READ_WHOLE) {
		rec->data = *buf + head;
		for (uint32_t i = 0; i < h->page_count; i++)
			if (pt_checksum(rec->data + (size_t)i * ps, ps) != rec->sums[i])
				return -EBADMSG;
	}
	return (int64_t)h->length;
}

int64_t pt_record_read(int fd, uint64_t seq, uint64_t offset, uint64_t first_epoch,
		       const struct pt_region_id *id, unsigned char **buf, size_t *cap,
		       struct pt_record *rec)
{
	int64_t len = record_read(fd, seq, offset, id, buf, cap, rec, READ_HEADER);

	if (len <= 0 || pt_record_stale(rec->hdr, first_epoch))
		return len < 0 ? len : 0;
	return record_read(fd, seq, offset, id, buf, cap, rec, READ_WHOLE);
}

void pt_pagelog_reader_init(struct pt_pagelog_reader *r, int dirfd, const struct pt_region_id *id,
			uint64_t next_epoch, uint64_t chain)
{
	memset(r, 0, sizeof(*r));
	r->dirfd = dirfd;
	r->id = *id;
	r->fd = -1;
	r->next_epoch = next_epoch;
	r->chain = chain;
}

void pt_pagelog_reader_free(struct pt_pagelog_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	free(r->buf);
	r->buf = NULL;
	r->cap = 0;
	free(r->segs);
	r->segs = NULL;
	r->nsegs = 0;
}

static int reader_list(struct pt_pagelog_reader *r)
{
	free(r->segs);
	r->segs = NULL;
	r->nsegs = 0;
	return pt_segments_list(r->dirfd, &r->id, &r->segs, &r->nsegs);
}

static int reader_switch(struct pt_pagelog_reader *r, const struct pt_segment_info *s)
{
	uid_t owner = 0;
	char name[64];
	int fd, ret;

	ret = pt_dir_owner(r->dirfd, &owner);
	if (ret)
		return ret;
	pt_segment_name(name, sizeof(name), s->seq);
	fd = pt_open_file(r->dirfd, name, O_RDONLY, owner);
	if (fd < 0)
		return fd;
	if (r->fd >= 0)
		close(r->fd);
	r->fd = fd;
	r->seq = s->seq;
	r->seg_first = s->first_epoch;
	r->offset = r->id.page_size;
	return 1;
}

/*
 * Is the file we read still segment r->seq?  A dropped segment may have
 * been kept as a spare (renamed) and recycled as a newer segment, its
 * blocks rewritten: then its link count says nothing, its name does.
 */
static bool still_named(struct pt_pagelog_reader *r, const struct stat *ours)
{
	struct stat now;
	char name[64];

	pt_segment_name(name, sizeof(name), r->seq);
	return !fstatat(r->dirfd, name, &now, AT_SYMLINK_NOFOLLOW) && now.st_ino == ours->st_ino &&
	       now.st_dev == ours->st_dev;
}

/*
 * Position on the newest segment that can hold next_epoch.  The listing
 * opens every segment: keep it, and list again only when it cannot help
 * (recovery and checkpoints walk through hundreds of segments).
 */
static int reader_open_for(struct pt_pagelog_reader *r)
{
	const struct pt_segment_info *best = NULL;
	bool any = false;
	int ret;

	if (!r->segs) {
		ret = reader_list(r);
		if (ret)
			return ret;
	}
	for (size_t i = 0; i < r->nsegs; i++) {
		if (r->segs[i].bad)
			continue;
		any = true;
		if (r->segs[i].first_epoch <= r->next_epoch)
			best = &r->segs[i];
	}
	if (!best) {
		free(r->segs);
		r->segs = NULL;		/* list again next time */
		r->dropped = any;
		return any ? -ESTALE : 0;
	}
	ret = reader_switch(r, best);
	if (ret == -ENOENT) {
		/* Dropped by a checkpoint since the listing (segments go
		 * no other way): what we want is in the image now. */
		free(r->segs);
		r->segs = NULL;
		r->dropped = true;
		return -ESTALE;
	}
	return ret;
}

/* After the records of the current segment: the next one that continues. */
static int reader_continue(struct pt_pagelog_reader *r)
{
	for (int pass = 0; pass < 2; pass++) {
		if (pass || !r->segs) {
			int ret = reader_list(r);

			if (ret)
				return ret;
		}
		for (size_t i = 0; i < r->nsegs; i++) {
			if (r->segs[i].seq <= r->seq || r->segs[i].bad)
				continue;
			if (r->segs[i].first_epoch <= r->next_epoch)
				return reader_switch(r, &r->segs[i]);
		}
	}
	return 0;
}

/*
 * A segment after the current one that starts at or below the epoch wanted:
 * the writer wrote that epoch again there, byte for byte after a failed
 * write or fdatasync, or as another epoch after a crash (recovery stopped
 * before it).  Either way the copy here is not the one to take.  The whole
 * read finds that out from the copy here failing its checks; a head read
 * does not read the pages, so it must know where the writer went on.
 */
static const struct pt_segment_info *rewritten_later(const struct pt_pagelog_reader *r)
{
	for (size_t i = 0; i < r->nsegs; i++)
		if (r->segs[i].seq > r->seq && !r->segs[i].bad &&
		    r->segs[i].first_epoch <= r->next_epoch)
			return &r->segs[i];
	return NULL;
}

int pt_pagelog_next(struct pt_pagelog_reader *r, uint64_t limit, struct pt_record *rec)
{
	int64_t len;
	int err, ret;

	r->last_error = 0;
	r->dropped = false;
	if (r->next_epoch > limit)
		return 0;
	for (;;) {
		if (r->fd < 0) {
			ret = reader_open_for(r);
			if (ret <= 0)
				return ret;
		}
		len = record_read(r->fd, r->seq, r->offset, &r->id, &r->buf, &r->cap, rec,
				  READ_HEADER);
		if (len > 0) {
			uint64_t e = rec->hdr->epoch;

			if (pt_record_stale(rec->hdr, r->seg_first)) {
				/* A recycled file's old records: the end. */
				err = 0;
				goto stop;
			}
			if (e < r->next_epoch) {
				r->offset += (uint64_t)len;
				continue;
			}
			if (e > r->next_epoch) {
				err = -EILSEQ;
				goto stop;
			}
			if (r->heads_only && rewritten_later(r)) {
				ret = reader_switch(r, rewritten_later(r));
				if (ret < 0) {
					err = ret;
					goto stop;
				}
				continue;
			}
			len = record_read(r->fd, r->seq, r->offset, &r->id, &r->buf, &r->cap, rec,
					  r->heads_only ? READ_HEAD : READ_WHOLE);
			if (len <= 0) {
				err = len ? (int)len : -ENODATA;
				goto stop;
			}
			if (rec->hdr->prev != r->chain && !r->any_chain) {
				err = -ESTALE;
				goto stop;
			}
			r->offset += (uint64_t)len;
			r->any_chain = false;
			r->next_epoch++;
			r->chain = rec->hdr->header_checksum;
			return 1;
		}
		err = (int)len;
stop:
		/* The rest of this segment is unusable: continue where the
		 * writer went on, if it did. */
		r->error_seq = r->seq;
		r->error_offset = r->offset;
		ret = reader_continue(r);
		if (ret == -ENOENT) {
			/* The next segment was dropped between listing and
			 * opening: so was what we want. */
			r->dropped = true;
			return -ESTALE;
		}
		if (ret < 0)
			return ret;
		if (ret > 0) {
			if (err && !r->quiet)
				pt_log(PT_LOG_INFO,
				       "log segment %016" PRIx64 " ends at offset %" PRIu64
				       " with an abandoned record (%s); continuing in segment %016" PRIx64,
				       r->error_seq, r->error_offset, pt_strerror(err), r->seq);
			continue;
		}
		{
			struct stat st;

			/* nlink, not the listing: readdir is no snapshot, it
			 * can show this segment and miss the next one that a
			 * checkpoint dropped just after it. */
			if (!fstat(r->fd, &st) && (st.st_nlink == 0 || !still_named(r, &st))) {
				/* Our segment was dropped by a checkpoint while
				 * we read it, and the next ones too. */
				close(r->fd);
				r->fd = -1;
				r->dropped = true;
				return -ESTALE;
			}
		}
		if (!err) {
			/* A clean end; but a later segment beyond a gap means
			 * records are missing. */
			for (size_t i = 0; i < r->nsegs; i++)
				if (r->segs[i].seq > r->seq && !r->segs[i].bad &&
				    r->segs[i].first_epoch > r->next_epoch) {
					err = -EILSEQ;
					break;
				}
			if (!err)
				return 0;
		}
		r->last_error = err;
		return err;
	}
}

int pt_pagelog_record_checksum(int dirfd, const struct pt_region_id *id, uint64_t epoch, uint64_t *sum)
{
	struct pt_pagelog_reader rd;
	struct pt_record rec;
	int ret;

	pt_pagelog_reader_init(&rd, dirfd, id, epoch, 0);
	rd.any_chain = true;
	rd.quiet = true;
	ret = pt_pagelog_next(&rd, epoch, &rec);
	if (ret > 0)
		*sum = rec.hdr->header_checksum;
	else if (ret == 0 || rd.dropped)
		ret = -ENOENT;
	pt_pagelog_reader_free(&rd);
	return ret > 0 ? 0 : ret;
}
