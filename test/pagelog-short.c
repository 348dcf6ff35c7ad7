/* pagelog-short: a record cut short inside its first page is torn (-ENODATA), even when the reader's buffer still holds bytes that would make its checksum match. */
/*
 * Found by fuzz/log-record: the reader read a record's first page, and when
 * the record claimed to be exactly one page (an epoch with no page) it took
 * the bytes past the end of the file from its buffer, left there by the
 * record it read before.  A record whose checksum was computed over those
 * stale bytes was accepted although the file ends inside it.
 */
#include <sys/mman.h>

#include "harness.h"
#include "format.h"
#include "io.h"
#include "pagelog.h"

int main(void)
{
	size_t ps = t_page_size();
	struct pt_region_id id = { .history_id = 42, .npages = 16, .page_size = (uint32_t)ps,
				   .page_shift = (unsigned int)__builtin_ctzl(ps) };
	unsigned char *a = calloc(1, 2 * ps), *b = calloc(1, ps), *buf = NULL;
	struct pt_record rec;
	struct pt_record_header *hb = (struct pt_record_header *)b;
	size_t cap = 0;
	int64_t n;
	int fd;

	if (!a || !b)
		DIE("calloc");
	/* Record A: epoch 1, one page (index 3), filled with a pattern. */
	pt_record_fill(a, &id, 1, 1, pt_chain_seed(id.history_id));
	((uint64_t *)(a + sizeof(struct pt_record_header)))[0] = 3;
	memset(a + ps, 0xab, ps);
	memset(a + sizeof(struct pt_record_header) + 8, 0x5a, 200);
	pt_record_seal(a);
	/* Record B: epoch 2, no page; its payload checksum over its own
	 * first 100 bytes followed by A's bytes at the same offsets, which is
	 * what a reader's buffer holds after reading A then 100 bytes of B. */
	pt_record_fill(b, &id, 2, 0, ((struct pt_record_header *)a)->header_checksum);
	memcpy(b + 100, a + 100, ps - 100);
	hb->payload_checksum = pt_checksum(b + sizeof(*hb), ps - sizeof(*hb));
	hb->header_checksum = 0;
	hb->header_checksum = pt_checksum(hb, sizeof(*hb));

	fd = memfd_create("pagelog-short", MFD_CLOEXEC);
	if (fd < 0 || pwrite(fd, a, 2 * ps, 0) != (ssize_t)(2 * ps) ||
	    pwrite(fd, b, 100, (off_t)(2 * ps)) != 100)
		DIE("memfd");
	n = pt_record_read(fd, 1, 0, 0, &id, &buf, &cap, &rec);
	if (n != (int64_t)(2 * ps))
		DIE("record A: %lld", (long long)n);
	n = pt_record_read(fd, 1, 2 * ps, 0, &id, &buf, &cap, &rec);
	printf("record B, 100 of %zu bytes in the file: %lld (%s)\n", ps, (long long)n,
	       n < 0 ? pt_strerror((int)n) : "accepted");
	if (n != -ENODATA)
		DIE("a record cut short was not reported torn");
	close(fd);
	free(buf);
	free(a);
	free(b);
	printf("done\n");
	return 0;
}
