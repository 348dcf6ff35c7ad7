/* SPDX-License-Identifier: MIT */
/*
 * uffd.c - the uffd-wp backend: userfaultfd write-protect in async mode plus
 * the PAGEMAP_SCAN ioctl (Linux >= 6.7).
 *
 * Arming: the range is registered with UFFDIO_REGISTER_MODE_WP on a
 * userfaultfd opened with UFFD_FEATURE_WP_ASYNC, then write-protected.  In
 * async mode a write to a protected page is resolved by the kernel itself
 * (about 1 us, no thread of ours involved): it drops the protection and the
 * page now reads back as PAGE_IS_WRITTEN.  UFFD_FEATURE_WP_UNPOPULATED makes
 * pages that were never touched protected too, so their first write counts.
 *
 * Collecting: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING reports the written pages
 * and write-protects them again in the same page-table walk, under the page
 * table lock: a concurrent write either lands before (reported now) or faults
 * after (reported next time).  This is the atomic get-and-clear the 2007 loop
 * patch lacked.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "internal.h"

/* Regions per PAGEMAP_SCAN call; more calls are made when it fills. */
#define SCAN_VEC_LEN 4096

#define WANT_FEATURES (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)

struct uffd_state {
	int uffd;
	int pagemap;
	struct page_region *vec;
};

static int open_uffd(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API };
	int fd, ret;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	/* Ask for shmem/hugetlbfs write-protect as well where the kernel has
	 * it; WANT_FEATURES are the ones we cannot do without. */
	api.features = WANT_FEATURES;
	if (ioctl(fd, UFFDIO_API, &api)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*features = api.features;
	return fd;
}

static int probe_result;
static char probe_why[200];
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe_uffd(void)
{
	struct pm_scan_arg arg;
	uint64_t features = 0;
	int fd, pm;

	fd = open_uffd(&features);
	if (fd == -ENOSYS) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "kernel built without CONFIG_USERFAULTFD");
		return;
	}
	if (fd == -EPERM || fd == -EACCES) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EPERM,
				      "userfaultfd not permitted (seccomp, or vm.unprivileged_userfaultfd=0 on a kernel older than 5.11)");
		return;
	}
	if (fd == -EINVAL) {
		/* UFFD_USER_MODE_ONLY is Linux 5.11; UFFDIO_API rejects
		 * features it does not know with EINVAL. */
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "userfaultfd lacks UFFD_FEATURE_WP_ASYNC (needs Linux >= 6.7)");
		return;
	}
	if (fd < 0) {
		probe_result = pt_why(probe_why, sizeof(probe_why), fd,
				      "userfaultfd: %s", strerror(-fd));
		return;
	}
	close(fd);
	if ((features & WANT_FEATURES) != WANT_FEATURES) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "userfaultfd lacks WP_ASYNC or WP_UNPOPULATED (needs Linux >= 6.7)");
		return;
	}
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (pm < 0) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "/proc/self/pagemap: %s", strerror(errno));
		return;
	}
	/* An empty scan: ENOTTY means no PAGEMAP_SCAN (Linux < 6.7). */
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	if (ioctl(pm, PAGEMAP_SCAN, &arg) < 0 && errno == ENOTTY) {
		probe_result = pt_why(probe_why, sizeof(probe_why), -EOPNOTSUPP,
				      "no PAGEMAP_SCAN ioctl on /proc/self/pagemap (needs Linux >= 6.7)");
		close(pm);
		return;
	}
	close(pm);
	probe_result = 0;
}

static int uffd_probe(char *why, size_t why_len)
{
	pthread_once(&probe_once, probe_uffd);
	if (probe_result)
		return pt_why(why, why_len, probe_result, "%s", probe_why);
	return 0;
}

static int write_protect(struct uffd_state *s, uintptr_t start, size_t len)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	while (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp)) {
		if (errno != EINTR && errno != EAGAIN)
			return -errno;
	}
	return 0;
}

static void uffd_free(struct uffd_state *s)
{
	if (s->uffd >= 0)
		close(s->uffd);
	if (s->pagemap >= 0)
		close(s->pagemap);
	free(s->vec);
	free(s);
}

static int uffd_open(struct pt_tracker *t)
{
	struct uffdio_register reg = {
		.range = { .start = t->start, .len = t->len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct uffd_state *s;
	uint64_t features;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pagemap = -1;
	s->vec = calloc(SCAN_VEC_LEN, sizeof(*s->vec));
	s->uffd = open_uffd(&features);
	if (!s->vec || s->uffd < 0) {
		ret = s->uffd < 0 ? s->uffd : -ENOMEM;
		goto err;
	}
	s->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (s->pagemap < 0) {
		ret = -errno;
		goto err;
	}
	if (ioctl(s->uffd, UFFDIO_REGISTER, &reg)) {
		ret = -errno;
		/* EBUSY: another userfaultfd (another tracker) holds part of
		 * the range.  EINVAL: a hole, or memory uffd-wp cannot track. */
		if (ret == -EBUSY)
			ret = -EEXIST;
		pt_log(PT_LOG_ERROR, "UFFDIO_REGISTER of %zu bytes at %#lx: %s",
		       t->len, (unsigned long)t->start, strerror(-ret));
		goto err;
	}
	ret = write_protect(s, t->start, t->len);
	if (ret) {
		pt_log(PT_LOG_ERROR, "UFFDIO_WRITEPROTECT: %s", strerror(-ret));
		goto err;
	}
	t->priv = s;
	return 0;
err:
	uffd_free(s);
	return ret;
}

/* Drop protection: in async mode the pages then read back as written. */
static void unarm(struct uffd_state *s, uint64_t start, uint64_t len)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = 0,
	};

	while (ioctl(s->uffd, UFFDIO_WRITEPROTECT, &wp)) {
		if (errno == EINTR || errno == EAGAIN)
			continue;
		pt_log(PT_LOG_ERROR, "cannot un-arm pages after a failed collect: %s",
		       strerror(errno));
		return;
	}
}

/*
 * A collect that fails half way has re-armed pages it cannot hand back.
 * Un-arm them (those in t->out and those still in the scan vector from
 * index `from` on) so the next collect reports them: nothing is lost.
 */
static int collect_failed(struct pt_tracker *t, int err, long from, long n)
{
	struct uffd_state *s = t->priv;

	for (size_t i = 0; i < t->out.nr; i++)
		unarm(s, t->start + (t->out.v[i].first << t->page_shift),
		      t->out.v[i].count << t->page_shift);
	for (long i = from; i < n; i++)
		unarm(s, s->vec[i].start, s->vec[i].end - s->vec[i].start);
	t->out.nr = 0;
	pt_log(PT_LOG_ERROR, "collect failed: %s", strerror(-err));
	return err;
}

static int uffd_collect(struct pt_tracker *t, bool reset)
{
	struct uffd_state *s = t->priv;
	uint64_t end = t->start + t->len;
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_CHECK_WPASYNC | (reset ? PM_SCAN_WP_MATCHING : 0),
		.start = t->start,
		.end = end,
		.vec = (uintptr_t)s->vec,
		.vec_len = SCAN_VEC_LEN,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};

	while (arg.start < end) {
		long n = ioctl(s->pagemap, PAGEMAP_SCAN, &arg);
		uint64_t last_end = arg.start;

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return collect_failed(t, -errno, 0, 0);
		}
		for (long i = 0; i < n; i++) {
			int ret = pt_ranges_add(&t->out,
						(s->vec[i].start - t->start) >> t->page_shift,
						(s->vec[i].end - s->vec[i].start) >> t->page_shift);
			if (ret)
				return collect_failed(t, ret, i, n);
			last_end = s->vec[i].end;
		}
		/* Linux 6.18 can hand back a stale walk_end (below the true
		 * end of the walk) when one call flushed its buffer more than
		 * once; only a full vector means the walk stopped early. */
		if ((size_t)n < SCAN_VEC_LEN)
			break;
		arg.start = arg.walk_end > last_end ? arg.walk_end : last_end;
	}
	return 0;
}

static int uffd_reset(struct pt_tracker *t)
{
	return write_protect(t->priv, t->start, t->len);
}

static void uffd_close(struct pt_tracker *t)
{
	/* Closing the userfaultfd unregisters the range and drops the
	 * protection (in a forked child it only drops our reference).
	 * Never UFFDIO_UNREGISTER here: in a child it would act on the
	 * parent's memory, and after munmap there is nothing to act on. */
	uffd_free(t->priv);
	t->priv = NULL;
}

const struct pt_backend_ops pt_uffd_ops = {
	.id = PT_BACKEND_UFFD_WP,
	.name = "uffd-wp",
	.probe = uffd_probe,
	.open = uffd_open,
	.collect = uffd_collect,
	.reset = uffd_reset,
	.close = uffd_close,
};
