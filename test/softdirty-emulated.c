/* softdirty-emulated: the soft-dirty backend's own logic, run against a soft-dirty kernel emulated with uffd-wp. */
/*
 * Most kernels this project is tested on lack CONFIG_MEM_SOFT_DIRTY, so the
 * real soft-dirty tests (softdirty-trackers, softdirty-converge) skip.  This
 * program compiles src/softdirty.c itself with its four system calls on
 * /proc/self/pagemap and /proc/self/clear_refs redirected to an emulation,
 * then runs those two tests' cells on it.  What it checks is the backend's
 * logic: the registry, the folds into pending bitmaps, the freeze around the
 * clear, the resident bitmap, fork.  What it cannot check are the kernel
 * facts the backend relies on (which are argued at the top of softdirty.c).
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
 * The threaded cells (pthread_create) also run under TSan.
 */
#include "harness.h"
#include "compat.h"

#include <pthread.h>
#include <stdarg.h>
#include <sys/syscall.h>

#define EMU_MAX_FDS 4096
#define EMU_MAX_RANGES 1024
#define EMU_SCAN_VEC 512

static struct {
	pthread_mutex_t lock;
	char is_pagemap[EMU_MAX_FDS];
	char is_clear_refs[EMU_MAX_FDS];
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

static bool emu_fd(int fd)
{
	return fd >= 0 && fd < EMU_MAX_FDS;
}

static int emu_open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	int fd;

	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (!strcmp(path, "/proc/self/clear_refs")) {
		fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (emu_fd(fd))
			emu.is_clear_refs[fd] = 1;
		return fd;
	}
	fd = open(path, flags, mode);
	if (emu_fd(fd) && !strcmp(path, "/proc/self/pagemap"))
		emu.is_pagemap[fd] = 1;
	return fd;
}

static int emu_close(int fd)
{
	if (emu_fd(fd))
		emu.is_pagemap[fd] = emu.is_clear_refs[fd] = 0;
	return close(fd);
}

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

	if (!emu_fd(fd) || !emu.is_pagemap[fd])
		return pread(fd, buf, len, off);
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
			return -1;
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

static ssize_t emu_write(int fd, const void *buf, size_t len)
{
	if (!emu_fd(fd) || !emu.is_clear_refs[fd])
		return write(fd, buf, len);
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

/* The backend, compiled here with its /proc calls going to the emulation.
 * It defines pt_softdirty_ops, so the library's copy is not linked in. */
#define open emu_open
#define close emu_close
#define pread emu_pread
#define write emu_write
#include "../src/softdirty.c"
#undef open
#undef close
#undef pread
#undef write

/* The real tests' cells, with their main()s renamed. */
int trackers_main(void);
int converge_main(void);
#define main trackers_main
#include "softdirty-trackers.c"
#undef main
#define main converge_main
#include "softdirty-converge.c"
#undef main

int main(void)
{
	char why[256] = "";
	int a, b;

	if (!t_backend_usable(PT_BACKEND_UFFD_WP, why, sizeof(why))) {
		printf("skip: the emulation needs uffd-wp: %s\n", why);
		return T_SKIP;
	}
	printf("softdirty-trackers, emulated:\n");
	a = trackers_main();
	printf("softdirty-converge, emulated:\n");
	b = converge_main();
	if (a == T_FAIL || b == T_FAIL)
		return T_FAIL;
	if (a == T_SKIP || b == T_SKIP) {
		printf("skip: the emulated backend was not usable\n");
		return T_SKIP;
	}
	return T_PASS;
}
