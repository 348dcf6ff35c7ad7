/* Fuzz target: bytes as a region's state block, checked by pt_state_check. */
/*
 * Input: a flags byte (fuzz.h), then the state file's bytes.  The block is
 * copied into an aligned struct pt_state (zero-filled past the input, as a
 * reader's copy of a short file would be) and checked with the input's
 * length as the file size, against the fuzz region and against any region
 * (id NULL).  With FZ_FIX_ID the magic, version, size, page size, page count
 * and history id are made right first, so the numbers behind them (epochs,
 * ring descriptors, staging sizes) are what gets tried.  A block the check
 * accepts must hold what the check promises: checkpointed not above
 * durable, and ring descriptors inside the staging memory.
 */
#include "fuzz.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pt_region_id id;
	struct pt_state *st;
	uint8_t flags;
	int ret;

	st = fz_block(data, &size, sizeof(*st), &flags, &id);
	if (!st)
		return -1;
	if (flags & FZ_FIX_ID) {
		memcpy(st->magic, PT_STATE_MAGIC, 8);
		st->version = PT_FORMAT_VERSION;
		st->size = sizeof(*st);
		st->page_size = id.page_size;
		st->npages = id.npages;
		st->history_id = id.history_id;
		if (size < sizeof(*st))
			size = sizeof(*st);
	}
	ret = pt_state_check(st, size, &id);
	if (!ret) {
		if (size < sizeof(*st))
			abort();	/* a short file passed */
		if (st->checkpointed > st->durable)
			abort();	/* levels out of order passed */
		for (int i = 0; i < PT_RING_DESCS; i++) {
			const struct pt_ring_desc *d = &st->ring[i];

			if (d->epoch && (d->offset > st->staging_bytes ||
					 d->length > st->staging_bytes - d->offset))
				abort();	/* a descriptor outside the staging memory passed */
		}
	}
	pt_state_check(st, size, NULL);
	free(st);
	return 0;
}
