/* SPDX-License-Identifier: MIT */
/*
 * seeds.h - what the seed makers share: writing one input of a target's
 * corpus, its flags byte (fuzz.h) first.
 */
#ifndef PT_FUZZ_SEEDS_H
#define PT_FUZZ_SEEDS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static const char *corpus;		/* the corpus directory, from argv */

static void put(const char *target, const char *name, uint8_t flags, const void *p, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", corpus, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", corpus, target, name);
	f = fopen(path, "w");
	if (!f || fwrite(&flags, 1, 1, f) != 1 || (len && fwrite(p, 1, len, f) != len) || fclose(f)) {
		perror(path);
		exit(1);
	}
}

#endif /* PT_FUZZ_SEEDS_H */
