/* SPDX-License-Identifier: MIT */
/*
 * image.h - the region's image (image.c): a full copy at the checkpointed
 * epoch with its page table, catch-up copies, the checkpoint, verification.
 */
#ifndef PT_IMAGE_H
#define PT_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "pagetrack.h"
#include "format.h"
#include "io.h"

struct pt_image {
	int fd;
	struct pt_region_id id;
	struct pt_image_header hdr;	/* the slot in use */
	int slot;
	bool writable;			/* opened through pt_io, for the checkpoint */
	struct pt_image_entry *entries;	/* writer/checkpoint only, mmap()ed */
	size_t entries_len;
};

int pt_image_create(int dirfd, const struct pt_region_id *id);
/* Open and read the newest good header slot (entries not loaded). */
int pt_image_open(struct pt_image *img, int dirfd, bool writable);
void pt_image_close(struct pt_image *img);
int pt_image_load_entries(struct pt_image *img);

/*
 * Copy into mem (npages * page_size) every page whose generation is above
 * have_epoch.  Pages whose checksum or entry fails are copied anyway and
 * flagged in suspect (a bitmap) with their count returned in *nsuspect: a
 * checkpoint in flight leaves such pages, and the log records after the
 * image's epoch rewrite every one of them; a suspect page that no record
 * covers is corruption.  *copied counts the pages copied.
 */
int pt_image_copy_newer(struct pt_image *img, uint64_t have_epoch, void *mem,
			uint64_t *suspect, uint64_t *nsuspect, uint64_t *copied,
			pt_epoch_t *generations);

/*
 * Replace the image whole (image.tmp written, fsynced, renamed over it):
 * at epoch with chain, header slot seq, the table from versions (one per
 * page), the data from mem with pages[0..count) (ascending) taken from
 * data instead.  0 or -errno; the old image stays on failure.
 */
int pt_image_write(int dirfd, const struct pt_region_id *id, uint64_t epoch, uint64_t chain,
		   uint64_t seq, const void *mem, const struct pt_page_version *versions,
		   uint64_t count, const uint64_t *pages, const void *data);

/*
 * Apply the records after the image's epoch up to target, fsync, advance
 * the header.  target_chain: the header checksum of the writer's record of
 * target, which lets the checkpoint read only the heads of the records and
 * the newest copy of each page (NULL: unknown; whole records are read).
 * Returns the image's epoch afterwards, or -errno (steps before the one
 * that failed may have gone in: img->hdr says where the image is).
 */
int64_t pt_image_checkpoint(struct pt_image *img, int dirfd, uint64_t target,
			    const uint64_t *target_chain);

/*
 * Check every page checksum (entries loaded first); report each bad page
 * through report().  A checkpoint running meanwhile writes pages, then
 * entries, then the header: what it has half written reads as bad here, so
 * a caller re-checks each reported page (pt_image_verify_page, after a
 * fresh pt_image_open) before calling it corrupt.
 */
int pt_image_verify(struct pt_image *img,
		    void (*report)(void *arg, uint64_t page, const char *msg), void *arg,
		    uint64_t *bad);
/* Check page p (page: a page-sized buffer): 0 good, 1 bad (why in msg), -errno. */
int pt_image_verify_page(struct pt_image *img, uint64_t p, unsigned char *page, char *msg,
			 size_t msg_len);

#endif /* PT_IMAGE_H */
