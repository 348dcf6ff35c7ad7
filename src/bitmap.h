/* SPDX-License-Identifier: MIT */
/*
 * bitmap.h - bitmaps of pages (suspect pages, pending pages, dirty table
 * blocks, adaptive tracking's hot pages).
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

/* Set bits [i, end), whole words at a time. */
static inline void pt_bits_set(uint64_t *bm, uint64_t i, uint64_t end)
{
	while (i < end) {
		uint64_t w = ~0ull << (i % 64);

		if (end < (i / 64 + 1) * 64)
			w &= ~(~0ull << (end % 64));
		bm[i / 64] |= w;
		i = (i / 64 + 1) * 64;
	}
}

/* Word w of a | b (b may be NULL). */
static inline uint64_t pt_bits_or(const uint64_t *a, const uint64_t *b, uint64_t w)
{
	return a[w] | (b ? b[w] : 0);
}

/* The first i' in [i, n) whose bit in a | b (b may be NULL) is set (want
 * true) or clear (want false), n if none: whole words at a time. */
static inline uint64_t pt_bit_next2(const uint64_t *a, const uint64_t *b, uint64_t i, uint64_t n,
				    bool want)
{
	while (i < n) {
		uint64_t w = want ? pt_bits_or(a, b, i / 64) : ~pt_bits_or(a, b, i / 64);

		w &= ~0ull << (i % 64);
		if (w) {
			i = i / 64 * 64 + (uint64_t)__builtin_ctzll(w);
			return i < n ? i : n;
		}
		i = (i / 64 + 1) * 64;
	}
	return n;
}

static inline uint64_t pt_bit_next(const uint64_t *bm, uint64_t i, uint64_t n, bool want)
{
	return pt_bit_next2(bm, NULL, i, n, want);
}

/* How many bits of [i, end) are set in a | b (b may be NULL). */
static inline uint64_t pt_bit_count2(const uint64_t *a, const uint64_t *b, uint64_t i, uint64_t end)
{
	uint64_t n = 0;

	while (i < end) {
		uint64_t w = pt_bits_or(a, b, i / 64) & (~0ull << (i % 64));

		if (end < (i / 64 + 1) * 64)
			w &= ~(~0ull << (end % 64));
		n += (uint64_t)__builtin_popcountll(w);
		i = (i / 64 + 1) * 64;
	}
	return n;
}

#endif /* PT_BITMAP_H */
