/* Fuzz target: bytes as a shared replica's control block, checked by pt_shared_ctl_check. */
/*
 * Input: a flags byte (fuzz.h), then the control file's bytes.  The block
 * is copied into an aligned struct pt_shared_ctl (zero-filled past the
 * input, as the library's snapshot of a short file would be) and checked
 * with the input's length as the file size, against the fuzz region and
 * against any region (id NULL).  With FZ_FIX_ID the magic, version, size
 * and the region's identity are made right first, so the generations,
 * pins and epochs behind them are what gets tried.  A block the check
 * accepts must be one the shared code can use without further checks:
 * current 0 or 1, two distinct copy generations below next_gen, every pin
 * below next_gen, no negative pid.
 */
#include "fuzz.h"
#include "replica.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_shared_ctl *ctl;
	struct pt_region_id id;
	uint8_t flags;
	int ret;

	ctl = fz_block(data, &size, sizeof(*ctl), &flags, &id);
	if (!ctl)
		return -1;
	if (flags & FZ_FIX_ID) {
		memcpy(ctl->magic, PT_SHARED_MAGIC, 8);
		ctl->version = PT_SHARED_VERSION;
		ctl->size = sizeof(*ctl);
		ctl->history_id = id.history_id;
		ctl->npages = id.npages;
		ctl->page_size = id.page_size;
		if (size < sizeof(*ctl))
			size = sizeof(*ctl);
	}
	ret = pt_shared_ctl_check(ctl, &id, size);
	if (!ret) {
		if (size < sizeof(*ctl) || ctl->current > 1 ||
		    ctl->copy_gen[0] == ctl->copy_gen[1] || !ctl->copy_gen[0] || !ctl->copy_gen[1] ||
		    ctl->copy_gen[0] >= ctl->next_gen || ctl->copy_gen[1] >= ctl->next_gen)
			abort();	/* a block the copies cannot be found by passed */
		for (int i = 0; i < PT_SHARED_READERS; i++)
			if (ctl->readers[i].pid < 0 || ctl->readers[i].pin >= ctl->next_gen)
				abort();	/* a reader slot that cannot be passed */
		if (ctl->npages != id.npages || ctl->page_size != id.page_size)
			abort();	/* another region's block passed */
	}
	pt_shared_ctl_check(ctl, NULL, size);
	free(ctl);
	return 0;
}
