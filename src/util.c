/* SPDX-License-Identifier: MIT */
/*
 * util.c - small services every layer uses: logging, the range builder,
 * the kernel version, the library version.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>

#include "internal.h"

static pt_log_fn log_fn;
static void *log_arg;
static enum pt_log_level log_max = PT_LOG_ERROR;
static bool log_set;		/* pt_set_log() was called: ignore the environment */
static pthread_once_t log_env_once = PTHREAD_ONCE_INIT;
static enum pt_log_level log_env_max;
static bool log_env_on;

PT_EXPORT const char *pt_version(void)
{
	return PAGETRACK_VERSION;
}

int pt_opts_take(void *dst, size_t dst_size, const void *in, size_t min_size)
{
	size_t sz;

	if (!in)
		return 0;
	sz = *(const size_t *)in;
	/* An older caller's struct is shorter: take what it has.  A newer
	 * caller's is longer: what this library does not know must be zero,
	 * or the caller asks for something it cannot do.  No option struct
	 * will outgrow a page; a larger sz is garbage. */
	if (sz < min_size || sz > 4096)
		return -EINVAL;
	for (size_t i = dst_size; i < sz; i++)
		if (((const unsigned char *)in)[i])
			return -EINVAL;
	memcpy(dst, in, sz < dst_size ? sz : dst_size);
	*(size_t *)dst = dst_size;
	return 0;
}

int pt_range_writable(uintptr_t start, size_t len)
{
	uintptr_t want = start, end = start + len;
	char line[512];
	FILE *f;

	/* The maps file lists mappings in address order; walk them until
	 * the range is covered by read-write ones or a gap shows. */
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return 0;	/* no /proc: cannot tell, the backends will */
	while (want < end && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		char perms[8];

		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
			continue;
		if (hi <= want)
			continue;
		if (lo > want || perms[0] != 'r' || perms[1] != 'w')
			break;
		want = hi;
	}
	fclose(f);
	return want >= end ? 0 : -EFAULT;
}

PT_EXPORT const char *pt_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return "success";
	case EBADMSG: return "bad magic or checksum: the bytes are not what was written";
	case EPROTO: return "a format version this library does not read";
	case ESTALE: return "another history (the region was recreated, or a file belongs "
			"to another region), or an epoch no longer available";
	case ENODATA: return "truncated (a torn write, or a file cut short)";
	case EILSEQ: return "epochs out of order or missing";
	case EMSGSIZE: return "a length or number that cannot be";
	case EXDEV: return "written on a system with another page size";
	case EMEDIUMTYPE: return "not a region, or not a regular file";
	case ENOTRECOVERABLE: return "epochs the region made durable cannot be reached "
			"(log segments deleted or damaged)";
	case EOPNOTSUPP: return "not supported by this kernel or backend";
	case ECHILD: return "called in a process forked from the owner";
	case EUSERS: return "every reader slot of the shared replica is taken";
	default: return strerror(err);
	}
}

PT_EXPORT void pt_set_log(pt_log_fn fn, enum pt_log_level max_level, void *arg)
{
	log_fn = fn;
	log_arg = arg;
	log_max = max_level;
	log_set = true;
}

static void log_read_env(void)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *v = getenv("PAGETRACK_LOG");

	if (!v || !*v)
		return;
	if (!strcasecmp(v, "none") || !strcasecmp(v, "off") || !strcmp(v, "0"))
		return;
	for (size_t i = 0; i < PT_ARRAY_SIZE(names); i++) {
		if (!strcasecmp(v, names[i])) {
			log_env_max = (enum pt_log_level)i;
			log_env_on = true;
			return;
		}
	}
	/* An unknown value still asks for messages: give the most. */
	log_env_max = PT_LOG_DEBUG;
	log_env_on = true;
}

bool pt_log_enabled(enum pt_log_level level)
{
	if (log_set)
		return log_fn && level <= log_max;
	pthread_once(&log_env_once, log_read_env);
	return log_env_on && level <= log_env_max;
}

void pt_log(enum pt_log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	char msg[512];
	va_list ap;
	int saved = errno;

	if (!pt_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_set)
		log_fn(level, msg, log_arg);
	else
		fprintf(stderr, "pagetrack: %s: %s\n", tags[level], msg);
	errno = saved;
}

int pt_why(char *why, size_t why_len, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && why_len) {
		va_start(ap, fmt);
		vsnprintf(why, why_len, fmt, ap);
		va_end(ap);
	}
	return err;
}

int pt_ranges_add(struct pt_ranges *r, uint64_t first, uint64_t count)
{
	if (!count)
		return 0;
	if (r->nr) {
		struct pt_range *last = &r->v[r->nr - 1];

		if (last->first + last->count == first) {
			last->count += count;
			return 0;
		}
	}
	if (r->nr == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct pt_range *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->nr].first = first;
	r->v[r->nr].count = count;
	r->nr++;
	return 0;
}

void pt_ranges_free(struct pt_ranges *r)
{
	free(r->v);
	r->v = NULL;
	r->nr = r->cap = 0;
}

unsigned int pt_kernel_version(void)
{
	struct utsname u;
	unsigned int major = 0, minor = 0, patch = 0;

	if (uname(&u) || sscanf(u.release, "%u.%u.%u", &major, &minor, &patch) < 2)
		return 0;
	return major * 65536 + minor * 256 + (patch > 255 ? 255 : patch);
}
