/* SPDX-License-Identifier: MIT */
/*
 * softdirty.h - the soft-dirty backend's seam (softdirty.c): its accesses to
 * /proc/self/pagemap and /proc/self/clear_refs go through these operations,
 * so that a test can run the backend's own logic (the registry, the folds,
 * the freeze around the clear) against an emulated kernel where the real one
 * lacks CONFIG_MEM_SOFT_DIRTY.  Internal: not exported from the shared
 * library; tests reach it through the static one.
 */
#ifndef PT_SOFTDIRTY_H
#define PT_SOFTDIRTY_H

#include <sys/types.h>

/*
 * Each returns >= 0 or -errno, as pt_io_ops do.  open is only ever asked
 * for "/proc/self/pagemap" (O_RDONLY) and "/proc/self/clear_refs"
 * (O_WRONLY), pread only on the first, write only on the second.
 */
struct pt_procfs_ops {
	int (*open)(const char *path, int flags);
	ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
	ssize_t (*write)(int fd, const void *buf, size_t len);
	int (*close)(int fd);
};

extern const struct pt_procfs_ops pt_procfs_system;

/*
 * NULL: the system calls.  Call it before anything probes or opens a
 * soft-dirty tracker: the probe's verdict is taken once per process, and a
 * descriptor must be closed by the operations that opened it.
 */
void pt_softdirty_set_procfs(const struct pt_procfs_ops *ops);

#endif /* PT_SOFTDIRTY_H */
