/* SPDX-License-Identifier: MIT */
/*
 * transfer.c - the pagetrack subcommands that move a region's content in
 * and out as a plain file:
 *
 *   import FILE DIR      make a region in DIR holding FILE's content (the
 *                        2007 setup kept its data in an mmap'd file or a
 *                        loop device: this is how such data becomes a
 *                        region), durable and checkpointed
 *   export DIR FILE      write the region's newest published epoch out as a
 *                        plain file, fsynced
 *
 * Both use only the public API: import is a writer (pt_region_create,
 * then one sync), export a private replica.  Large files show their
 * progress on a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pagetrack.h"
#include "commands.h"

#define CHUNK (8u << 20)

/* A progress line on a terminal (stderr), at most a few times a second. */
struct progress {
	const char *what;
	uint64_t total;
	bool tty;
	struct timespec last;
};

static void progress_init(struct progress *p, const char *what, uint64_t total)
{
	p->what = what;
	p->total = total;
	p->tty = isatty(STDERR_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &p->last);
}

static void progress_show(struct progress *p, uint64_t done, bool last)
{
	struct timespec now;

	if (!p->tty || !p->total)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!last && (now.tv_sec - p->last.tv_sec) * 1000 +
	    (now.tv_nsec - p->last.tv_nsec) / 1000000 < 200)
		return;
	p->last = now;
	fprintf(stderr, "\r%s: %" PRIu64 " of %" PRIu64 " MiB (%u%%)%s", p->what, done >> 20,
		p->total >> 20, (unsigned int)(done * 100 / p->total), last ? "\n" : "");
}

static void import_help(void)
{
	printf("Usage: pagetrack import FILE DIR\n"
	       "Make a region in DIR (new; created mode 0700) holding FILE's content:\n"
	       "its size is FILE's rounded up to a page, the rest zero.  FILE may be a\n"
	       "regular file or a block device (a loop device).  The content becomes\n"
	       "epoch 1, durable and checkpointed into the image.  Prints the region's\n"
	       "size and epoch.\n");
}

int cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	long ps = sysconf(_SC_PAGESIZE);
	struct progress pr;
	struct pt_region *r = NULL;
	const char *file, *dir;
	uint64_t size, done = 0;
	struct stat st;
	int c, fd, ret;
	int64_t e;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			ret = alone("import", "--help", argc);
			if (!ret)
				import_help();
			return ret;
		default:
			return option_error("import", argv);
		}
	}
	if (argc - optind != 2)
		return usage_error("import", "takes FILE and DIR");
	file = argv[optind];
	dir = argv[optind + 1];
	if (!*file || !*dir)
		return usage_error("import", "an empty FILE or DIR");
	/* O_NONBLOCK: a FIFO given by mistake must not hang the command. */
	fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return runtime_error("import", -errno, "%s", file);
	if (fstat(fd, &st)) {
		ret = runtime_error("import", -errno, "%s", file);
		goto out;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);

		if (end < 0) {
			ret = runtime_error("import", -errno, "%s", file);
			goto out;
		}
		size = (uint64_t)end;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		ret = runtime_error("import", 0, "%s: not a regular file or a block device", file);
		goto out;
	}
	if (!size) {
		ret = runtime_error("import", 0, "%s: empty: a region has at least one page", file);
		goto out;
	}
	size = (size + (uint64_t)ps - 1) / (uint64_t)ps * (uint64_t)ps;
	ret = pt_region_create(&r, dir, size, &o);
	if (ret) {
		r = NULL;
		ret = runtime_error("import", ret, "%s", dir);
		goto out;
	}
	progress_init(&pr, "import", size);
	while (done < size) {
		ssize_t n = pread(fd, (char *)pt_region_base(r) + done,
				  size - done < CHUNK ? size - done : CHUNK, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = runtime_error("import", -errno, "%s", file);
			goto out;
		}
		if (n == 0)
			break;	/* the padding to a page stays zero */
		done += (uint64_t)n;
		progress_show(&pr, done, false);
	}
	progress_show(&pr, size, true);
	e = pt_region_sync(r);
	if (e < 0) {
		ret = runtime_error("import", (int)e, "%s: sync", dir);
		goto out;
	}
	e = pt_region_checkpoint(r);
	if (e < 0) {
		ret = runtime_error("import", (int)e, "%s: checkpoint", dir);
		goto out;
	}
	printf("%s: %" PRIu64 " bytes from %s at epoch %lld, durable and checkpointed\n", dir,
	       size, file, (long long)e);
	ret = 0;
out:
	if (r) {
		int cret = pt_region_close(r);

		if (cret && !ret)
			ret = runtime_error("import", cret, "%s: close", dir);
	}
	close(fd);
	return ret;
}

static void export_help(void)
{
	printf("Usage: pagetrack export [--force] DIR FILE\n"
	       "Write the newest published epoch of the region in DIR to FILE, a plain\n"
	       "file of the region's size, and fsync it.  The region is read as a\n"
	       "replica: its writer may be running.  Prints the epoch written.\n"
	       "  --force   replace FILE if it exists (else: an error)\n");
}

int cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct progress pr;
	struct pt_replica *rep;
	const char *dir, *file;
	bool force = false;
	uint64_t size, done = 0;
	int c, fd, ret;
	int64_t e;

	getopt_restart();
	while ((c = getopt_long(argc, argv, "fh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			force = true;
			break;
		case 'h':
			ret = alone("export", "--help", argc);
			if (!ret)
				export_help();
			return ret;
		default:
			return option_error("export", argv);
		}
	}
	if (argc - optind != 2)
		return usage_error("export", "takes DIR and FILE");
	dir = argv[optind];
	file = argv[optind + 1];
	if (!*file || !*dir)
		return usage_error("export", "an empty DIR or FILE");
	ret = pt_replica_open(&rep, dir, NULL);
	if (ret)
		return runtime_error("export", ret, "%s", dir);
	e = (int64_t)pt_replica_epoch(rep);
	size = pt_replica_size(rep);
	/* O_NOFOLLOW: the command never writes through a link planted at
	 * FILE; without --force it never replaces a file either. */
	fd = open(file, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (force ? O_TRUNC : O_EXCL),
		  0600);
	if (fd < 0) {
		ret = runtime_error("export", -errno, "%s%s", file,
				    errno == EEXIST ? " (--force replaces it)" : "");
		goto out;
	}
	progress_init(&pr, "export", size);
	while (done < size) {
		ssize_t n = pwrite(fd, (const char *)pt_replica_base(rep) + done,
				   size - done < CHUNK ? size - done : CHUNK, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = runtime_error("export", n ? -errno : -EIO, "%s", file);
			goto out_fd;
		}
		done += (uint64_t)n;
		progress_show(&pr, done, false);
	}
	progress_show(&pr, size, true);
	if (ftruncate(fd, (off_t)size) || fsync(fd)) {
		ret = runtime_error("export", -errno, "%s", file);
		goto out_fd;
	}
	printf("%s: epoch %lld of %s, %" PRIu64 " bytes\n", file, (long long)e, dir, size);
	ret = 0;
out_fd:
	close(fd);
out:
	pt_replica_close(rep);
	return ret;
}
