/* SPDX-License-Identifier: MIT */
/*
 * failtest.h - what the failover tests share (after nettest.h): regions
 * written with random pages, their hashes, publishing and following until
 * an epoch, and the stream's messages read raw.
 */
#ifndef PT_NET_FAILTEST_H
#define PT_NET_FAILTEST_H

#include <nats/nats.h>

#include "nettest.h"

static uint64_t ft_seed = 0x9e3779b97f4a7c15ull;

/* One epoch of n pages written with random words (or random pages whole
 * when full: they do not compress).  Returns the epoch. */
static inline pt_epoch_t ft_write(struct pt_region *r, unsigned n, bool full)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), npages = pt_region_size(r) / ps;
	unsigned char *mem = pt_region_base(r);
	pt_epoch_t e;

	for (unsigned i = 0; i < n; i++) {
		uint64_t *words = (uint64_t *)(mem + (nt_rnd(&ft_seed) % npages) * ps);

		if (full)
			for (size_t j = 0; j < ps / 8; j++)
				words[j] = nt_rnd(&ft_seed);
		else
			for (int j = 0; j < 4; j++)
				words[nt_rnd(&ft_seed) % (ps / 8)] = nt_rnd(&ft_seed);
	}
	e = pt_region_sync(r);
	if (e < 0)
		DIE("sync: %s", pt_strerror((int)e));
	return e;
}

static inline uint64_t ft_region_hash(struct pt_region *r)
{
	return nt_hash(pt_region_base(r), pt_region_size(r));
}

/* The content of the region in dir at its newest epoch (*epoch). */
static inline uint64_t ft_dir_hash(const char *dir, pt_epoch_t *epoch)
{
	struct pt_replica_opts ro = { .sz = sizeof(ro) };
	struct pt_replica *r;
	uint64_t h;
	int err;

	if ((err = pt_replica_open(&r, dir, &ro)))
		DIE("replica on %s: %s", dir, pt_strerror(err));
	if (pt_replica_refresh(r, 0) < 0)
		DIE("refresh %s", dir);
	*epoch = pt_replica_epoch(r);
	h = nt_hash(pt_replica_base(r), pt_replica_size(r));
	pt_replica_close(r);
	return h;
}

/* Run p until the stream acknowledged epoch; 0 or the run's error. */
static inline int ft_publish_to(struct pt_publisher *p, pt_epoch_t epoch)
{
	struct pt_publisher_stats st = { .sz = sizeof(st) };
	uint64_t start = nt_ms();

	while (nt_ms() - start < 20000) {
		int err = pt_publisher_run(p, 50);

		if (err < 0 && err != -EAGAIN)
			return err;
		pt_publisher_stats(p, &st);
		if (st.epoch >= epoch)
			return 0;
	}
	DIE("publisher stuck at epoch %lld, want %lld: %s", (long long)st.epoch, (long long)epoch,
	    pt_net_last_error());
}

/* Run f until its standby is at epoch; 0 or the run's error. */
static inline int ft_follow_to(struct pt_follower *f, pt_epoch_t epoch)
{
	struct pt_follower_stats st = { .sz = sizeof(st) };
	uint64_t start = nt_ms();

	while (nt_ms() - start < 20000) {
		int err = pt_follower_run(f, 50);

		if (err < 0 && err != -EAGAIN)
			return err;
		pt_follower_stats(f, &st);
		if (st.epoch >= epoch)
			return 0;
	}
	DIE("follower stuck at epoch %lld, want %lld: %s", (long long)st.epoch, (long long)epoch,
	    pt_net_last_error());
}

/* A connection of the test's own, for raw stream access. */
struct ft_raw {
	natsConnection *nc;
	jsCtx *js;
};

static inline void ft_raw_open(struct ft_raw *r, const char *url)
{
	if (natsConnection_ConnectTo(&r->nc, url) != NATS_OK ||
	    natsConnection_JetStream(&r->js, r->nc, NULL) != NATS_OK)
		DIE("raw connection to %s", url);
}

static inline void ft_raw_close(struct ft_raw *r)
{
	jsCtx_Destroy(r->js);
	natsConnection_Destroy(r->nc);
}

/* The stream's message at seq (NULL when there is none); destroy it. */
static inline natsMsg *ft_raw_get(struct ft_raw *r, const char *stream, uint64_t seq)
{
	natsMsg *m = NULL;
	jsErrCode jerr = 0;

	if (js_GetMsg(&m, r->js, stream, seq, NULL, &jerr) != NATS_OK)
		return NULL;
	return m;
}

static inline uint64_t ft_raw_last_seq(struct ft_raw *r, const char *stream)
{
	jsStreamInfo *si = NULL;
	uint64_t last;

	if (js_GetStreamInfo(&si, r->js, stream, NULL, NULL) != NATS_OK)
		DIE("stream info %s", stream);
	last = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	return last;
}

/* Little-endian fields of a stream message (the wire header). */
static inline uint64_t ft_u64(const natsMsg *m, size_t off)
{
	uint64_t v = 0;

	if ((size_t)natsMsg_GetDataLength((natsMsg *)m) >= off + 8)
		memcpy(&v, natsMsg_GetData((natsMsg *)m) + off, 8);
	return v;
}

static inline uint32_t ft_u32(const natsMsg *m, size_t off)
{
	uint32_t v = 0;

	if ((size_t)natsMsg_GetDataLength((natsMsg *)m) >= off + 4)
		memcpy(&v, natsMsg_GetData((natsMsg *)m) + off, 4);
	return v;
}

#define FT_EPOCH(m)	ft_u64(m, 24)
#define FT_CHAIN(m)	ft_u64(m, 40)
#define FT_FLAGS(m)	(ft_u32(m, 8) >> 16)
#define FT_PART(m)	ft_u32(m, 72)
#define FT_PARTS(m)	ft_u32(m, 76)
#define FT_TERM(m)	ft_u64(m, 128)	/* a term marker's term */

/* Wait up to timeout_ms for child pid to end by itself: its exit status
 * (128 + signal when killed), or -1 when it is still running. */
static inline int ft_wait_exit(pid_t pid, unsigned timeout_ms)
{
	uint64_t start = nt_ms();
	int status;

	do {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			nt_forget(pid);
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		nt_sleep_ms(10);
	} while (nt_ms() - start < timeout_ms);
	return -1;
}

/* A file's text (up to 64 KiB, NUL terminated; "" when unreadable). */
static inline const char *ft_read_file(const char *path)
{
	static char buf[65536];
	FILE *fp = fopen(path, "r");
	size_t n = 0;

	if (fp) {
		n = fread(buf, 1, sizeof(buf) - 1, fp);
		fclose(fp);
	}
	buf[n] = 0;
	return buf;
}

/* The stream's newest term marker: its sequence (0: none), epoch, term. */
static inline uint64_t ft_last_marker(struct ft_raw *r, const char *stream, uint64_t *epoch,
				      uint64_t *term)
{
	char subject[128];
	natsMsg *m = NULL;
	jsErrCode jerr = 0;
	uint64_t seq;

	snprintf(subject, sizeof(subject), "pagetrack.%s.term", stream);
	if (js_GetLastMsg(&m, r->js, stream, subject, NULL, &jerr) != NATS_OK)
		return 0;
	seq = natsMsg_GetSequence(m);
	*epoch = FT_EPOCH(m);
	*term = FT_TERM(m);
	natsMsg_Destroy(m);
	return seq;
}

#endif /* PT_NET_FAILTEST_H */
