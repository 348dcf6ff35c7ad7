/* SPDX-License-Identifier: MIT */
/*
 * softdirty-emu.c - a soft-dirty kernel emulated with uffd-wp, put under the
 * soft-dirty backend through its /proc seam (src/softdirty.h), so that the
 * backend's own logic runs where the kernel lacks CONFIG_MEM_SOFT_DIRTY.
 *
 * Most kernels this project is tested on lack CONFIG_MEM_SOFT_DIRTY, so the
 * real soft-dirty tests (softdirty-trackers, softdirty-converge) skip.  With
 * PT_SOFTDIRTY_EMULATE=1 they call t_softdirty_emulate() first and run their
 * cells here instead (test/softdirty-emulated.sh).  What that checks is the
 * backend's logic: the registry, the folds into pending bitmaps, the freeze
 * around the clear, the resident bitmap, fork.  What it cannot check are the
 * kernel facts the backend relies on (which are argued at the top of
 * softdirty.c).
 *
 * The emulated kernel, built from userfaultfd async write-protect and
 * PAGEMAP_SCAN (so it needs the uffd-wp backend's kernel, >= 6.7):
 *  - pagemap bit 55 of a page := written since the last emulated clear
 *    (PAGE_IS_WRITTEN on a present or swapped page), or its range was never
 *    cleared (a new VMA is VM_SOFTDIRTY); bits 63 and 62 as the kernel's;
 *  - writing "4" to clear_refs := write-protect every range pagemap was read
 *    for (the backend reads every tracked range before each clear).
 * Like the real bit, the emulated one is set by a fault after the clear, and
 * mprotect(PROT_READ | PROT_WRITE) keeps a protected page protected, so the
 * freeze/thaw sequence meets the same kernel behaviour as on 6.1+.
 * Taking out the freeze makes the convergence cells fail here (stale pages),
 * which is what shows the emulation has teeth.
 *
 * This file reaches into the static library (compat.h, softdirty.h); it is
 * an object of its own in libptest.a, so only the programs that call
 * t_softdirty_emulate() link it.
 */
#include <pthread.h>
#include <sys/syscall.h>

#include "compat.h"
#include "harness.h"
#include "softdirty.h"

#define EMU_MAX_RANGES 1024
#define EMU_SCAN_VEC 512

static struct {
	pthread_mutex_t lock;
	int uffd;
	pid_t uffd_pid;
	struct {
		uint64_t start, end;
		bool cleared;
	} ranges[EMU_MAX_RANGES];
	int nranges;
} emu = { .lock = PTHREAD_MUTEX_INITIALIZER, .uffd = -1 };

/* One userfaultfd per process: a forked child must not act on the parent's mm. */
static void emu_uffd(void)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};

	if (emu.uffd >= 0 && emu.uffd_pid == getpid())
		return;
	emu.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (emu.uffd < 0 || ioctl(emu.uffd, UFFDIO_API, &api))
		DIE("emulation: userfaultfd: %s", strerror(errno));
	emu.uffd_pid = getpid();
	emu.nranges = 0;
}

/* pagemap is the kernel's (PAGEMAP_SCAN needs it); clear_refs is /dev/null,
 * its effect is emu_write()'s. */
static int emu_open(const char *path, int flags)
{
	int fd;

	if (!strcmp(path, "/proc/self/clear_refs"))
		fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	else if (!strcmp(path, "/proc/self/pagemap"))
		fd = open(path, flags);
	else
		return -ENOENT;
	return fd < 0 ? -errno : fd;
}

static int emu_close(int fd)
{
	return close(fd) ? -errno : 0;
}

/* A read of pagemap entries for [start, end): see the top of the file. */
static ssize_t emu_pread(int fd, void *buf, size_t len, off_t off)
{
	uint64_t page = t_page_size(), *entry = buf, n = len / sizeof(uint64_t);
	uint64_t start = (uint64_t)off / sizeof(uint64_t) * page, end = start + n * page;
	struct uffdio_register reg = {
		.range = { .start = start, .len = end - start },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	struct page_region vec[EMU_SCAN_VEC];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = EMU_SCAN_VEC,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_WRITTEN,
	};
	bool cleared = false;
	int known = -1;

	memset(buf, 0, len);
	pthread_mutex_lock(&emu.lock);
	emu_uffd();
	/* Registering again is a no-op; registering fails on a hole. */
	if (ioctl(emu.uffd, UFFDIO_REGISTER, &reg)) {
		pthread_mutex_unlock(&emu.lock);
		return (ssize_t)len;
	}
	for (int i = 0; i < emu.nranges; i++)
		if (emu.ranges[i].start == start && emu.ranges[i].end == end)
			known = i;
	if (known < 0) {
		if (emu.nranges == EMU_MAX_RANGES)
			DIE("emulation: too many ranges");
		known = emu.nranges++;
		emu.ranges[known].start = start;
		emu.ranges[known].end = end;
		emu.ranges[known].cleared = false;
	}
	cleared = emu.ranges[known].cleared;
	pthread_mutex_unlock(&emu.lock);

	while (arg.start < end) {
		long k = ioctl(fd, PAGEMAP_SCAN, &arg);
		uint64_t last = arg.start;

		if (k < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < k; i++) {
			uint64_t c = vec[i].categories, e = 0;

			if (c & PAGE_IS_PRESENT)
				e |= 1ull << 63;
			if (c & PAGE_IS_SWAPPED)
				e |= 1ull << 62;
			if ((c & PAGE_IS_WRITTEN) && (c & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)))
				e |= 1ull << 55;
			for (uint64_t v = vec[i].start; v < vec[i].end; v += page)
				entry[(v - start) / page] = e;
			last = vec[i].end;
		}
		/* A full vector is the only sign the walk stopped early (the
		 * stale walk_end of 6.18, see uffd.c). */
		if (k < EMU_SCAN_VEC)
			break;
		arg.start = arg.walk_end > last ? arg.walk_end : last;
	}
	if (!cleared)
		for (uint64_t i = 0; i < n; i++)
			entry[i] |= 1ull << 55;
	return (ssize_t)len;
}

/* "4" to clear_refs: write-protect every range pagemap was read for. */
static ssize_t emu_write(int fd, const void *buf, size_t len)
{
	(void)fd;
	if (len == 1 && *(const char *)buf == '4') {
		pthread_mutex_lock(&emu.lock);
		emu_uffd();
		for (int i = 0; i < emu.nranges; i++) {
			struct uffdio_writeprotect wp = {
				.range = { .start = emu.ranges[i].start,
					   .len = emu.ranges[i].end - emu.ranges[i].start },
				.mode = UFFDIO_WRITEPROTECT_MODE_WP,
			};

			/* ENOENT for a range unmapped since: nothing to clear. */
			(void)ioctl(emu.uffd, UFFDIO_WRITEPROTECT, &wp);
			emu.ranges[i].cleared = true;
		}
		pthread_mutex_unlock(&emu.lock);
	}
	return (ssize_t)len;
}

static const struct pt_procfs_ops emu_procfs = {
	.open = emu_open,
	.pread = emu_pread,
	.write = emu_write,
	.close = emu_close,
};

int t_softdirty_emulate(char *why, size_t why_len)
{
	const char *on = getenv("PT_SOFTDIRTY_EMULATE");
	char reason[256] = "";

	if (!on || strcmp(on, "1"))
		return 0;
	if (!t_backend_usable(PT_BACKEND_UFFD_WP, reason, sizeof(reason))) {
		snprintf(why, why_len, "the emulation needs uffd-wp: %s", reason);
		return T_SKIP;
	}
	pt_softdirty_set_procfs(&emu_procfs);
	printf("soft-dirty emulated with uffd-wp (PT_SOFTDIRTY_EMULATE=1)\n");
	return 0;
}
