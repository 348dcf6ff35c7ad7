/* mprotect-read: read(2) into a protected page fails with EFAULT and writes nothing; the page stays intact. */
#include "harness.h"

/*
 * The kernel's copy to user memory does not raise SIGSEGV: on a page this
 * backend protects, read(2) fails with EFAULT (or stops short when the
 * buffer starts in a writable page).  The data is not written, so nothing
 * is reported: no write went unseen, but the program's read failed.  This
 * test pins that behaviour down (pagetrack(7) documents it).
 */

#define NPAGES 4

static bool read_checks(struct pt_tracker *t, struct t_mem *m, char *copy, int fd, char *why,
			size_t why_len)
{
	size_t ps = t_page_size();
	char *page2 = m->addr + 2 * ps, *page1 = m->addr + ps;
	uint8_t map[NPAGES];
	ssize_t got;
	int n;

	/* Into a protected page: EFAULT, no signal, nothing written. */
	errno = 0;
	got = read(fd, page2 + 100, 50);
	CHECK(got == -1 && errno == EFAULT, "read into a protected page returned %zd (%s), want EFAULT",
	      got, strerror(errno));
	CHECK(!memcmp(copy, m->addr, m->len), "memory changed by a failed read");
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 0, "a failed read reported %d pages", n);

	/*
	 * Starting in a written (writable) page and running into a protected
	 * one: the protected page stays untouched.  Seen on Linux 6.18: a
	 * pipe read fails with EFAULT after copying the part that fits in
	 * the writable page, and leaves the data in the pipe.
	 */
	page1[0] = 'w';
	copy[ps] = 'w';
	got = read(fd, page2 - 20, 60);
	CHECK((got == -1 && errno == EFAULT) || (got >= 0 && got <= 20),
	      "read across into a protected page returned %zd (%s)", got, strerror(errno));
	CHECK(!memcmp(copy + 2 * ps, page2, ps), "protected page changed by a read");
	for (size_t i = 2 * ps - 20; i < 2 * ps; i++)
		CHECK(m->addr[i] == copy[i] || m->addr[i] == 'x', "byte %zu is %d", i, m->addr[i]);
	memcpy(copy + 2 * ps - 20, page2 - 20, 20);
	CHECK(!memcmp(copy, m->addr, m->len), "memory differs from what was written");
	n = t_collect_map(t, 0, map, NPAGES, why, why_len);
	CHECK(n == 1 && map[1], "%d pages reported, want page 1 only", n);

	/* The documented way round: touch the page first, then read into it. */
	*(volatile char *)page2 = page2[0];
	got = read(fd, page2 + 100, 50);
	CHECK(got == 50, "read into a touched page returned %zd (%s)", got, strerror(errno));
	CHECK(page2[100] == 'x' && page2[149] == 'x', "read data missing");
	n = t_collect_map(t, PT_COLLECT_RESET, map, NPAGES, why, why_len);
	CHECK(n == 2 && map[1] && map[2], "%d pages reported, want pages 1 and 2", n);
	return true;
}

static bool read_efault(struct t_mem *m, char *why, size_t why_len)
{
	struct pt_tracker *t = NULL;
	int fds[2] = { -1, -1 }, ret;
	char buf[200], *copy;
	bool ok = false;

	copy = malloc(m->len);
	if (!copy) {
		snprintf(why, why_len, "out of memory");
		return false;
	}
	for (size_t i = 0; i < m->len; i++)
		m->addr[i] = (char)(i * 7 + 3);
	memcpy(copy, m->addr, m->len);
	memset(buf, 'x', sizeof(buf));
	if (pipe(fds) || write(fds[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf)) {
		snprintf(why, why_len, "pipe: %s", strerror(errno));
		goto out;
	}
	ret = t_tracker_open_on(&t, PT_BACKEND_MPROTECT, m->addr, m->len);
	if (ret) {
		snprintf(why, why_len, "open: %s", strerror(-ret));
		goto out;
	}
	ok = read_checks(t, m, copy, fds[0], why, why_len);
out:
	pt_tracker_close(t);
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	free(copy);
	return ok;
}

int main(void)
{
	char why[256] = "";

	if (!t_backend_usable(PT_BACKEND_MPROTECT, why, sizeof(why))) {
		printf("skip: mprotect backend unavailable: %s\n", why);
		return T_SKIP;
	}
	for (int k = 0; k < T_MEM_NKINDS; k++) {
		char name[64];
		struct t_mem m;
		int r;

		why[0] = '\0';
		snprintf(name, sizeof(name), "mprotect x %s", t_mem_kind_names[k]);
		r = t_mem_map(&m, k, NPAGES * t_page_size(), why, sizeof(why));
		if (r) {
			t_cell_report(name, r, why);
			continue;
		}
		t_cell_report(name, read_efault(&m, why, sizeof(why)) ? T_PASS : T_FAIL, why);
		t_mem_unmap(&m);
	}
	return t_exit();
}
