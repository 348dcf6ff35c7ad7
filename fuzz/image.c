/* Fuzz target: bytes as an image file (header slots, page table, data), through open, catch-up copy and verify. */
/*
 * Input: a flags byte (fuzz.h), then the image file from its start.  With
 * FZ_EXTEND the file is extended with zeros to the size slot 0 claims (a
 * seed need not carry the zero pages of a small region).  With FZ_FIX_SUMS
 * both header slots get their checksum, and each non-zero table entry its
 * entry checksum (and, with FZ_FIX_ID, the checksum of its page), as far as
 * the slot-0 header places them inside the file.  The image is opened
 * read-only as replicas and verify open it; a good open is followed by
 * pt_image_load_entries, pt_image_copy_newer (from epoch 0, with the pages'
 * generations, and from half the image's epoch) and pt_image_verify, with
 * pt_image_verify_page for each page it reports.
 */
#include <sys/mman.h>

#include "fuzz.h"
#include "image.h"

/* Small regions only: the file is rewritten for every input. */
#define FZ_IMAGE_MAX (256u << 10)

static uint64_t reported;

static void report(void *arg, uint64_t page, const char *msg)
{
	(void)arg;
	(void)msg;
	reported++;
	(void)page;
}

static void fix_header(unsigned char *p, uint32_t ps, bool fix_id)
{
	struct pt_image_header h;

	memcpy(&h, p, sizeof(h));
	if (fix_id) {
		memcpy(h.magic, PT_IMAGE_MAGIC, 8);
		h.version = PT_FORMAT_VERSION;
		h.header_size = sizeof(h);
		h.page_size = ps;
		if (!h.npages || h.npages > 64)
			h.npages = FZ_NPAGES;
		h.table_offset = 2ull * ps;
		h.data_offset = h.table_offset +
				pt_round_up(h.npages * sizeof(struct pt_image_entry), ps);
	}
	h.checksum = pt_header_checksum(&h, sizeof(h), offsetof(struct pt_image_header, checksum));
	memcpy(p, &h, sizeof(h));
}

/* The table and pages where slot 0 says they are, if inside the file. */
static void fix_table(unsigned char *file, size_t len, bool fix_pages)
{
	struct pt_image_header h;
	uint64_t ps;

	memcpy(&h, file, sizeof(h));
	ps = h.page_size;
	if (!ps || ps > FZ_IMAGE_MAX || !h.npages || h.npages > len || h.table_offset > len ||
	    h.npages * sizeof(struct pt_image_entry) > len - h.table_offset)
		return;
	for (uint64_t i = 0; i < h.npages; i++) {
		struct pt_image_entry e;
		unsigned char *pe = file + h.table_offset + i * sizeof(e);

		memcpy(&e, pe, sizeof(e));
		if (!e.generation && !e.page_checksum && !e.reserved && !e.checksum)
			continue;
		if (fix_pages && h.data_offset <= len && i < (len - h.data_offset) / ps)
			e.page_checksum = XXH3_64bits(file + h.data_offset + i * ps, ps);
		e.checksum = XXH3_64bits_withSeed(&e, offsetof(struct pt_image_entry, checksum), i);
		memcpy(pe, &e, sizeof(e));
	}
}

static void exercise(int dirfd)
{
	unsigned char page[65536];
	struct pt_image img;
	uint64_t *suspect, nsuspect = 0, copied = 0, bad = 0;
	pt_epoch_t *gens;
	size_t ps, size;
	void *mem;
	int ret;

	ret = pt_image_open(&img, dirfd, false);
	if (ret)
		return;
	ps = img.id.page_size;
	if (ps > sizeof(page))
		abort();	/* open checks the page size against ours */
	size = img.id.npages * ps;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	suspect = calloc((img.id.npages + 63) / 64, sizeof(*suspect));
	gens = calloc(img.id.npages, sizeof(*gens));
	if (mem == MAP_FAILED || !suspect || !gens)
		abort();	/* open promised a file this large */
	ret = pt_image_copy_newer(&img, 0, mem, suspect, &nsuspect, &copied, gens);
	if (!ret && (copied > img.id.npages || nsuspect > copied))
		abort();
	nsuspect = 0;
	memset(suspect, 0, (img.id.npages + 63) / 64 * sizeof(*suspect));
	pt_image_copy_newer(&img, img.hdr.epoch / 2, mem, suspect, &nsuspect, &copied, NULL);
	if (!pt_image_load_entries(&img)) {
		reported = 0;
		ret = pt_image_verify(&img, report, NULL, &bad);
		for (uint64_t p = 0; p < img.id.npages && p < 8; p++) {
			char msg[256];

			pt_image_verify_page(&img, p, page, msg, sizeof(msg));
		}
	}
	free(suspect);
	free(gens);
	munmap(mem, size);
	pt_image_close(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t ps = (uint32_t)sysconf(_SC_PAGESIZE);
	struct pt_image_header h;
	unsigned char *file;
	size_t len;
	uint8_t flags;
	int dirfd;

	if (!size || size > FZ_IMAGE_MAX)
		return -1;
	flags = data[0];
	data++;
	size--;
	len = size;
	if (flags & FZ_FIX_ID && len < sizeof(h))
		len = sizeof(h);
	if (len >= sizeof(h) && flags & FZ_EXTEND) {
		memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
		if (size < sizeof(h))
			memset((char *)&h + size, 0, sizeof(h) - size);
		if (flags & FZ_FIX_ID && (!h.npages || h.npages > 64))
			h.npages = FZ_NPAGES;
		if (h.npages <= 64) {
			uint64_t want = 2ull * ps + pt_round_up(h.npages * sizeof(struct pt_image_entry), ps) +
					h.npages * ps;

			if (want > len && want <= FZ_IMAGE_MAX)
				len = want;
		}
	}
	file = calloc(1, len + 1);
	if (!file)
		abort();
	memcpy(file, data, size);
	if (flags & (FZ_FIX_SUMS | FZ_FIX_ID)) {
		if (len >= sizeof(h))
			fix_header(file, ps, flags & FZ_FIX_ID);
		if (len >= ps + sizeof(h) && memcmp(file + ps, "\0\0\0\0\0\0\0\0", 8))
			fix_header(file + ps, ps, flags & FZ_FIX_ID);
		if (len >= sizeof(h))
			fix_table(file, len, flags & FZ_FIX_ID);
	}
	dirfd = fz_dir();
	fz_write_file(dirfd, PT_IMAGE_NAME, file, len, 0, 0);
	free(file);
	exercise(dirfd);
	return 0;
}
