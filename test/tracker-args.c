/* tracker-args: bad arguments get -EINVAL, forced backends never fall back, overlapping trackers get -EEXIST. */
/*
 * Every check runs for each backend given explicitly and for AUTO, so a
 * backend cannot skip the common argument checks.  PAGETRACK_BACKEND is set
 * and unset here with setenv(3); the library reads it at each open.
 */
#include <stdint.h>

#include "harness.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define NPAGES 16

static int open_with(struct pt_tracker **t, enum pt_backend b, void *addr, size_t len)
{
	struct pt_tracker_opts o = { .sz = sizeof(o), .backend = b };

	return pt_tracker_open(t, addr, len, &o);
}

/* Expect open to fail with want and leave *out NULL. */
#define OPEN_FAILS(want, call, what) do {					\
	struct pt_tracker *t_ = (struct pt_tracker *)&t_;			\
	int r_ = (call);							\
	if (r_ == 0)								\
		pt_tracker_close(t_);						\
	CHECK(r_ == (want), "%s: got %d (%s), want %d (%s)", what, r_,		\
	      strerror(r_ < 0 ? -r_ : 0), want, strerror(-(want)));		\
	CHECK(t_ == NULL, "%s: *out not cleared", what);			\
} while (0)

static bool bad_arguments(enum pt_backend b, struct t_mem *m)
{
	size_t ps = t_page_size(), len = m->len;
	char *a = m->addr;
	struct pt_tracker_opts o;
	struct {
		struct pt_tracker_opts o;
		uint64_t more[4];
	} big;
	const struct pt_range *r;
	struct pt_tracker *t;
	size_t nr;
	int ret;

	OPEN_FAILS(-EINVAL, open_with(&t_, b, a + 1, len - ps), "misaligned addr");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, a + ps / 2, ps), "addr half a page in");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, a, len - 1), "misaligned len");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, a, ps + 8), "len not a page multiple");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, a, 0), "zero length");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, NULL, len), "NULL addr");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, (void *)(UINTPTR_MAX & ~(uintptr_t)(ps - 1)), 2 * ps),
		   "addr + len overflows");
	OPEN_FAILS(-EINVAL, open_with(&t_, b, a, SIZE_MAX & ~(ps - 1)), "huge len overflows");
	ret = open_with(NULL, b, a, len);
	CHECK(ret == -EINVAL, "NULL out: %d", ret);

	o = (struct pt_tracker_opts){ .sz = sizeof(o), .backend = b, .flags = 1 };
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, a, len, &o), "flags 1");
	o.flags = 0x80000000u;
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, a, len, &o), "flags high bit");
	o = (struct pt_tracker_opts){ .sz = 0, .backend = b };
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, a, len, &o), "opts->sz 0");
	o.sz = sizeof(size_t);
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, a, len, &o), "opts->sz too small");
	o.sz = sizeof(o) - 1;
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, a, len, &o), "opts->sz one short");
	/* A newer caller's larger struct: fine while the unknown tail is zero,
	 * refused when it asks for something this library does not know. */
	memset(&big, 0, sizeof(big));
	big.o.sz = sizeof(big);
	big.o.backend = b;
	ret = pt_tracker_open(&t, a, len, &big.o);
	CHECK(ret == 0, "larger opts with a zero tail: %s", strerror(-ret));
	pt_tracker_close(t);
	big.more[2] = 1;
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, a, len, &big.o), "larger opts asking for more");

	/* Calls on a tracker. */
	ret = open_with(&t, b, a, len);
	CHECK(ret == 0, "open: %s", strerror(-ret));
	CHECK(b == PT_BACKEND_AUTO || pt_tracker_backend(t) == b, "backend %d", pt_tracker_backend(t));
	CHECK(pt_tracker_backend(t) != PT_BACKEND_AUTO, "pt_tracker_backend says auto");
	CHECK(pt_tracker_collect(NULL, 0, &r, &nr) == -EINVAL, "collect(NULL tracker)");
	CHECK(pt_tracker_collect(t, 0, NULL, &nr) == -EINVAL, "collect(NULL ranges)");
	CHECK(pt_tracker_collect(t, 0, &r, NULL) == -EINVAL, "collect(NULL nr)");
	CHECK(pt_tracker_collect(t, 2, &r, &nr) == -EINVAL, "collect(flags 2)");
	CHECK(pt_tracker_collect(t, ~0u, &r, &nr) == -EINVAL, "collect(flags ~0)");
	CHECK(pt_tracker_reset(NULL) == -EINVAL, "reset(NULL)");
	/* Nothing was armed off by the refused calls. */
	a[3 * ps] = 1;
	ret = pt_tracker_collect(t, PT_COLLECT_RESET, &r, &nr);
	CHECK(ret >= 1 && nr >= 1 && r[0].first <= 3 && r[0].first + r[0].count > 3,
	      "write after refused calls: %d pages", ret);
	pt_tracker_close(t);
	pt_tracker_close(NULL);
	return true;
}

/* Two trackers on overlapping ranges: the second is refused, adjacent ones
 * both work. */
static bool overlap(enum pt_backend b, struct t_mem *m)
{
	size_t ps = t_page_size();
	struct pt_tracker *t1, *t2;
	int ret;

	ret = open_with(&t1, b, m->addr, 8 * ps);
	CHECK(ret == 0, "first: %s", strerror(-ret));
	if (pt_tracker_backend(t1) == PT_BACKEND_SOFT_DIRTY) {
		/* -EEXIST is promised for uffd-wp and mprotect only. */
		ret = open_with(&t2, b, m->addr + 4 * ps, 8 * ps);
		CHECK(ret == 0 || ret == -EEXIST, "overlapping soft-dirty: %s", strerror(-ret));
		if (!ret)
			pt_tracker_close(t2);
		pt_tracker_close(t1);
		return true;
	}
	OPEN_FAILS(-EEXIST, open_with(&t_, b, m->addr + 4 * ps, 8 * ps), "overlapping tail");
	OPEN_FAILS(-EEXIST, open_with(&t_, b, m->addr, 8 * ps), "same range");
	OPEN_FAILS(-EEXIST, open_with(&t_, b, m->addr + 2 * ps, ps), "inside");
	OPEN_FAILS(-EEXIST, open_with(&t_, b, m->addr, NPAGES * ps), "around");
	ret = open_with(&t2, b, m->addr + 8 * ps, 8 * ps);
	CHECK(ret == 0, "adjacent: %s", strerror(-ret));
	pt_tracker_close(t1);
	/* Once closed, its range can be taken. */
	ret = open_with(&t1, b, m->addr + 2 * ps, 4 * ps);
	CHECK(ret == 0, "after close: %s", strerror(-ret));
	pt_tracker_close(t1);
	pt_tracker_close(t2);
	return true;
}

static bool names(void)
{
	static const struct {
		enum pt_backend b;
		const char *name;
	} want[] = {
		{ PT_BACKEND_AUTO, "auto" },
		{ PT_BACKEND_UFFD_WP, "uffd-wp" },
		{ PT_BACKEND_SOFT_DIRTY, "soft-dirty" },
		{ PT_BACKEND_MPROTECT, "mprotect" },
	};
	char why[128];

	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		const char *n = pt_backend_name(want[i].b);

		CHECK(n && !strcmp(n, want[i].name), "pt_backend_name(%d) = %s", (int)want[i].b,
		      n ? n : "NULL");
	}
	CHECK(pt_backend_name((enum pt_backend)4) == NULL, "name of 4");
	CHECK(pt_backend_name((enum pt_backend)-1) == NULL, "name of -1");
	CHECK(pt_backend_name((enum pt_backend)1000) == NULL, "name of 1000");
	CHECK(pt_tracker_backend(NULL) == PT_BACKEND_AUTO, "pt_tracker_backend(NULL)");
	CHECK(pt_backend_probe((enum pt_backend)99, why, sizeof(why)) == -EINVAL, "probe(99)");
	CHECK(pt_backend_probe((enum pt_backend)99, NULL, 0) == -EINVAL, "probe(99, NULL)");
	CHECK(pt_backend_probe(PT_BACKEND_AUTO, why, sizeof(why)) == -EINVAL, "probe(AUTO)");
	CHECK(strstr(why, "not a backend"), "probe(AUTO) says: %s", why);
	for (size_t i = 1; i < ARRAY_LEN(want); i++) {
		int r = pt_backend_probe(want[i].b, NULL, 0);

		CHECK(r == 0 || r < 0, "probe");
		r = pt_backend_probe(want[i].b, why, 1);
		CHECK(r == 0 || why[0] == '\0', "probe into a 1-byte buffer is not terminated");
	}
	return true;
}

/* Unknown backend values and PAGETRACK_BACKEND. */
static bool backend_choice(struct t_mem *m)
{
	static const char *const bad_env[] = { "nonsense", "UFFD-WP", "uffd", "mprotect ", " ", "0" };
	struct pt_tracker_opts o = { .sz = sizeof(o) };
	struct pt_tracker *t;
	char why[256];
	int ret;

	o.backend = (enum pt_backend)4;
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, m->addr, m->len, &o), "backend 4");
	o.backend = (enum pt_backend)-1;
	OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, m->addr, m->len, &o), "backend -1");

	for (size_t i = 0; i < ARRAY_LEN(bad_env); i++) {
		setenv("PAGETRACK_BACKEND", bad_env[i], 1);
		OPEN_FAILS(-EINVAL, pt_tracker_open(&t_, m->addr, m->len, NULL), bad_env[i]);
		OPEN_FAILS(-EINVAL, open_with(&t_, PT_BACKEND_AUTO, m->addr, m->len), bad_env[i]);
		/* An explicit backend does not read the environment. */
		if (t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
			ret = open_with(&t, PT_BACKEND_UFFD_WP, m->addr, m->len);
			CHECK(ret == 0, "explicit uffd-wp under PAGETRACK_BACKEND=%s: %s", bad_env[i],
			      strerror(-ret));
			pt_tracker_close(t);
		}
	}
	/* Empty and "auto" mean AUTO. */
	for (int i = 0; i < 2; i++) {
		setenv("PAGETRACK_BACKEND", i ? "auto" : "", 1);
		ret = pt_tracker_open(&t, m->addr, m->len, NULL);
		CHECK(ret == 0, "PAGETRACK_BACKEND='%s': %s", i ? "auto" : "", strerror(-ret));
		pt_tracker_close(t);
	}
	/* Each usable backend can be forced by name. */
	for (size_t i = 0; i < ARRAY_LEN(t_all_backends); i++) {
		enum pt_backend b = t_all_backends[i];

		if (!t_backend_usable(b, why, sizeof(why)))
			continue;
		setenv("PAGETRACK_BACKEND", pt_backend_name(b), 1);
		ret = pt_tracker_open(&t, m->addr, m->len, NULL);
		CHECK(ret == 0, "PAGETRACK_BACKEND=%s: %s", pt_backend_name(b), strerror(-ret));
		CHECK(pt_tracker_backend(t) == b, "PAGETRACK_BACKEND=%s gave %s", pt_backend_name(b),
		      pt_backend_name(pt_tracker_backend(t)));
		pt_tracker_close(t);
	}
	unsetenv("PAGETRACK_BACKEND");
	/* AUTO takes the first usable backend, in the documented order. */
	ret = pt_tracker_open(&t, m->addr, m->len, NULL);
	CHECK(ret == 0, "AUTO: %s", strerror(-ret));
	for (size_t i = 0; i < ARRAY_LEN(t_all_backends); i++) {
		if (t_backend_usable(t_all_backends[i], why, sizeof(why))) {
			CHECK(pt_tracker_backend(t) == t_all_backends[i], "AUTO chose %s, want %s",
			      pt_backend_name(pt_tracker_backend(t)), pt_backend_name(t_all_backends[i]));
			break;
		}
	}
	pt_tracker_close(t);
	return true;
}

/* A backend that cannot work here, forced by opts or by the environment,
 * fails with -EOPNOTSUPP: no silent fallback. */
static bool forced_unavailable(enum pt_backend b, struct t_mem *m)
{
	OPEN_FAILS(-EOPNOTSUPP, open_with(&t_, b, m->addr, m->len), "forced by opts");
	setenv("PAGETRACK_BACKEND", pt_backend_name(b), 1);
	OPEN_FAILS(-EOPNOTSUPP, pt_tracker_open(&t_, m->addr, m->len, NULL), "forced by PAGETRACK_BACKEND");
	OPEN_FAILS(-EOPNOTSUPP, open_with(&t_, PT_BACKEND_AUTO, m->addr, m->len),
		   "forced by PAGETRACK_BACKEND, AUTO in opts");
	unsetenv("PAGETRACK_BACKEND");
	return true;
}

static void run(const char *name, bool (*fn)(enum pt_backend, struct t_mem *), enum pt_backend b,
		bool need_usable)
{
	char why[256] = "";
	struct t_mem m;
	int r;

	if (need_usable && b != PT_BACKEND_AUTO && !t_backend_usable(b, why, sizeof(why))) {
		t_cell_report(name, T_SKIP, why);
		return;
	}
	r = t_mem_map(&m, T_MEM_ANON, NPAGES * t_page_size(), why, sizeof(why));
	if (r) {
		t_cell_report(name, r, why);
		return;
	}
	r = fn(b, &m) ? T_PASS : T_FAIL;
	unsetenv("PAGETRACK_BACKEND");
	t_cell_report(name, r, "");
	t_mem_unmap(&m);
}

static bool names_cell(enum pt_backend b, struct t_mem *m)
{
	(void)b;
	(void)m;
	return names();
}

static bool choice_cell(enum pt_backend b, struct t_mem *m)
{
	(void)b;
	return backend_choice(m);
}

int main(void)
{
	static const enum pt_backend with_auto[] = {
		PT_BACKEND_AUTO, PT_BACKEND_UFFD_WP, PT_BACKEND_SOFT_DIRTY, PT_BACKEND_MPROTECT,
	};
	char name[80], why[256];

	unsetenv("PAGETRACK_BACKEND");
	run("names and probe", names_cell, PT_BACKEND_AUTO, false);
	run("backend values and PAGETRACK_BACKEND", choice_cell, PT_BACKEND_AUTO, false);
	for (size_t i = 0; i < ARRAY_LEN(with_auto); i++) {
		snprintf(name, sizeof(name), "bad arguments: %s", pt_backend_name(with_auto[i]));
		run(name, bad_arguments, with_auto[i], true);
	}
	for (size_t i = 0; i < ARRAY_LEN(with_auto); i++) {
		snprintf(name, sizeof(name), "overlapping trackers: %s", pt_backend_name(with_auto[i]));
		run(name, overlap, with_auto[i], true);
	}
	for (size_t i = 0; i < ARRAY_LEN(t_all_backends); i++) {
		enum pt_backend b = t_all_backends[i];

		snprintf(name, sizeof(name), "forced unavailable: %s", pt_backend_name(b));
		if (t_backend_usable(b, why, sizeof(why))) {
			snprintf(why, sizeof(why), "%s is available here", pt_backend_name(b));
			t_cell_report(name, T_SKIP, why);
			continue;
		}
		run(name, forced_unavailable, b, false);
	}
	return t_exit();
}
