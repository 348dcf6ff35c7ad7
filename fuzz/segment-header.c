/* Fuzz target: bytes as the first page of segment files, listed by pt_segments_list. */
/*
 * Input: a flags byte (fuzz.h), a byte that picks the file's sequence
 * number in its name (and, with FZ_FIX_ID, in the header), then the bytes of
 * the segment file from its start.  A second segment, valid, sits beside it
 * so that the listing sorts and mixes good and bad entries.  With
 * FZ_FIX_SUMS the header's checksum is recomputed.  The listing must come
 * back with every entry either bad (an error) or carrying the header's
 * first epoch, never a crash or an entry it cannot explain.
 */
#include "fuzz.h"
#include "pagelog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_segment_header h;
	struct pt_segment_info *segs;
	struct pt_region_id id;
	unsigned char *file;
	char name[64];
	uint64_t seq;
	uint8_t flags;
	size_t nr;
	int dirfd, fd, ret;

	if (size < 2 || size > FZ_MAX_FILE)
		return -1;
	flags = data[0];
	seq = data[1] % 4;	/* 0..3; the valid neighbour is 2 */
	data += 2;
	size -= 2;
	id = fz_id(flags, 0);
	dirfd = fz_dir();
	file = malloc(size + 1);
	if (!file)
		abort();
	memcpy(file, data, size);
	if (size >= sizeof(h) && (flags & (FZ_FIX_SUMS | FZ_FIX_ID))) {
		memcpy(&h, file, sizeof(h));
		if (flags & FZ_FIX_ID) {
			memcpy(h.magic, PT_SEGMENT_MAGIC, 8);
			h.version = PT_FORMAT_VERSION;
			h.header_size = sizeof(h);
			h.page_size = id.page_size;
			h.npages = id.npages;
			h.history_id = id.history_id;
			h.seq = seq;
		}
		h.checksum = pt_header_checksum(&h, sizeof(h), offsetof(struct pt_segment_header, checksum));
		memcpy(file, &h, sizeof(h));
	}
	for (uint64_t s = 0; s < 4; s++) {
		pt_segment_name(name, sizeof(name), s);
		unlinkat(dirfd, name, 0);
	}
	if (seq != 2) {
		fd = pt_segment_create(dirfd, &id, 2, 7);
		if (fd < 0)
			abort();
		close(fd);
	}
	pt_segment_name(name, sizeof(name), seq);
	fz_write_file(dirfd, name, file, size, 0, 0);
	free(file);

	ret = pt_segments_list(dirfd, &id, &segs, &nr);
	if (!ret) {
		if (nr != (seq == 2 ? 1u : 2u))
			abort();	/* every segment file is listed, good or bad */
		for (size_t i = 0; i < nr; i++) {
			if (i && segs[i].seq <= segs[i - 1].seq)
				abort();	/* ascending by seq */
			if (!segs[i].bad && !segs[i].first_epoch)
				abort();	/* a good header names its first epoch */
		}
	}
	free(segs);
	return 0;
}
