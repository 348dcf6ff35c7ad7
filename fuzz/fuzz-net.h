/* SPDX-License-Identifier: MIT */
/*
 * fuzz-net.h - what the network layer's fuzz targets (net-*) and their
 * seed maker share, beside fuzz.h's flags byte: the key a follower holds
 * when the input's flags say NET_FZ_KEY.
 */
#ifndef PT_FUZZ_NET_H
#define PT_FUZZ_NET_H

#include <stdbool.h>

#include "wire.h"

#define NET_FZ_KEY	0x10	/* the reader holds the fuzz key (else none) */

/* The fuzz key when on, else no key. */
static inline void net_fz_key(struct wire_key *k, bool on)
{
	unsigned char bytes[32];

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(i * 7 + 1);
	wire_key_set(k, on ? bytes : NULL, on ? sizeof(bytes) : 0);
}

#endif /* PT_FUZZ_NET_H */
