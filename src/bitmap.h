/* SPDX-License-Identifier: MIT */
/*
 * bitmap.h - bitmaps of pages (suspect pages, pending pages, dirty table
 * blocks).
 */
#ifndef PT_BITMAP_H
#define PT_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

static inline void pt_bit_set(uint64_t *bm, uint64_t i)
{
	bm[i / 64] |= 1ull << (i % 64);
}

static inline bool pt_bit_test(const uint64_t *bm, uint64_t i)
{
	return bm[i / 64] >> (i % 64) & 1;
}

static inline bool pt_bit_clear(uint64_t *bm, uint64_t i)
{
	bool was = pt_bit_test(bm, i);

	bm[i / 64] &= ~(1ull << (i % 64));
	return was;
}

#endif /* PT_BITMAP_H */
