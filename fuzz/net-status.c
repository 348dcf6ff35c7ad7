/* Fuzz target: bytes as a status record file, checked and decoded as pt_net_status_read() does. */
/*
 * Input: a flags byte (fuzz.h), then the file's bytes (at most one more
 * than a record, as the reader reads them).  They go through
 * status_record_get() under a file name: with FZ_FIX_ID the one the
 * record's role and stream give (so that the fuzzer passes the name
 * check), else a fixed one; with NS_GATHERED that name and "@<16 hex
 * digits>", as a publisher names a follower's record it gathered.
 * FZ_FIX_SUMS recomputes the checksum of a whole record.
 *
 * What must hold: no access outside the block (ASan), no undefined
 * behaviour (UBSan), and a record accepted only with the invariants its
 * callers rely on: strings NUL-terminated inside their fields with no
 * control byte, a known role, an error that is a -errno and its time,
 * and a gathered name only on a follower's record.
 */
#include <limits.h>

#include "fuzz.h"
#include "status-record.h"
#include "wire.h"

#define NS_ROLE_AT	10	/* docs/network.md, "Status records" */
#define NS_STREAM_AT	256
#define NS_GATHERED	0x10	/* this target's flag: a gathered record's name */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_string(const char *s, size_t field)
{
	size_t n = strnlen(s, field);

	if (n == field)
		abort();	/* not terminated inside its field */
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[NAME_MAX + 1] = STATUS_PREFIX "publisher-fuzz", why[256];
	struct status_record r;
	unsigned char *b;
	uint8_t flags;

	if (!size || size > STATUS_SIZE + 2)
		return -1;
	flags = data[0];
	data++;
	size--;
	/* A copy of its exact size, so that ASan sees a read past it. */
	b = malloc(size ? size : 1);
	if (!b)
		abort();
	memcpy(b, data, size);
	if (size >= STATUS_SIZE) {
		if (flags & FZ_FIX_ID) {
			char stream[STATUS_STREAM_LEN + 1] = "";

			memcpy(stream, b + NS_STREAM_AT, STATUS_STREAM_LEN);
			snprintf(name, sizeof(name), STATUS_PREFIX "%s-%s%s",
				 status_role_name((enum pt_net_role)wire_get16(b + NS_ROLE_AT)), stream,
				 flags & NS_GATHERED ? "@0123456789abcdef" : "");
		}
		if (flags & FZ_FIX_SUMS)
			status_record_seal(b);
	}
	if (!status_record_get(b, size, name, &r, why, sizeof(why))) {
		check_string(r.st.host, STATUS_HOST_LEN);
		check_string(r.st.stream, STATUS_STREAM_LEN);
		check_string(r.st.last_error_text, STATUS_ERROR_TEXT_LEN);
		if ((r.st.role != PT_NET_PUBLISHER && r.st.role != PT_NET_FOLLOWER) ||
		    r.st.last_error > 0 || r.st.last_error < -4095 || r.st.epoch < 0 ||
		    !net_stream_name_ok(r.st.stream) ||
		    (strchr(name, '@') && r.st.role != PT_NET_FOLLOWER))
			abort();
	} else if (!why[0]) {
		abort();	/* refused without saying why */
	}
	free(b);
	return 0;
}
