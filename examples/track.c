/* SPDX-License-Identifier: MIT */
/*
 * track.c - the smallest complete use of libpagetrack: track an anonymous
 * mapping, write a few pages, collect them with reset, print the runs.
 *
 *   cc track.c $(pkg-config --cflags --libs pagetrack) -o track && ./track
 */
#include <pagetrack.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGES 16

/* Collect with reset and print what was written; returns pages or -errno. */
static int show(struct pt_tracker *t, const char *when)
{
	const struct pt_range *r;
	size_t nr;
	int n = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);

	if (n < 0)
		return n;
	printf("%s: %d page(s) written:", when, n);
	for (size_t i = 0; i < nr; i++) {
		if (r[i].count == 1)
			printf(" %llu", (unsigned long long)r[i].first);
		else
			printf(" %llu-%llu", (unsigned long long)r[i].first,
			       (unsigned long long)(r[i].first + r[i].count - 1));
	}
	printf("\n");
	return n;
}

int main(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = PAGES * ps;
	struct pt_tracker *t;
	char *mem;
	int ret;

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	/* NULL options: the best backend here, or the one PAGETRACK_BACKEND names. */
	ret = pt_tracker_open(&t, mem, len, NULL);
	if (ret) {
		fprintf(stderr, "pt_tracker_open: %s (try: pagetrack probe)\n", strerror(-ret));
		return 1;
	}
	printf("libpagetrack %s, backend %s\n", pt_version(),
	       pt_backend_name(pt_tracker_backend(t)));

	mem[2 * ps] = 1;
	mem[3 * ps + 100] = 2;
	mem[7 * ps + ps - 1] = 3;
	ret = show(t, "first collect");
	if (ret >= 0) {
		mem[7 * ps] = 4;	/* written again after the reset: reported again */
		ret = show(t, "second collect");
	}
	if (ret >= 0)
		ret = show(t, "third collect");
	if (ret < 0)
		fprintf(stderr, "pt_tracker_collect: %s\n", strerror(-ret));

	pt_tracker_close(t);
	munmap(mem, len);
	return ret < 0 ? 1 : 0;
}
