/* SPDX-License-Identifier: MIT */
/*
 * pages.c - exchange-pages: how many pages of the block an epoch writes, by
 * pool, for the load's order flow, without network or replication.
 *
 * Every page an epoch writes costs the engine a write-protect fault and a
 * copy at the sync, and costs the log, the checkpoint and every replica a
 * page each; so the book's layout decides what replication costs.  This
 * tool drives book.c directly with the flow exchange-load sends (flow.c:
 * Zipf symbols, prices around a drifting mid, a fifth crossing, 8% market
 * orders, ~30% cancels of each session's remembered resting orders), tracks the
 * block with a pagetrack tracker (uffd-wp: a store of an unchanged value
 * counts, as it does for a region), and every --epoch orders collects and
 * re-arms, counting the written pages of each pool.  It also times the
 * matching with tracking and without: a twin of the block, untracked, gets
 * the very same commands first, so the difference is what the write-protect
 * faults cost the engine's own thread; and a third copy, tracked with
 * PT_TRACK_ADAPTIVE, gets them too: the faults it leaves, the pages it
 * reports (the hot ones whether written or not), and its matching time.
 * Last, the distinct pages over all the counted epochs: what applying them
 * together (a checkpoint of a second's epochs, a replica catching up)
 * needs to write at the least; and the 2 MiB chunks an epoch writes in,
 * what a sync with the chunk guard (PT_TRACK_CHUNKS) scans.
 *
 * Deterministic (a fixed seed): figures from two layouts are comparable on
 * a noisy machine where the end-to-end benchmark is not.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "book.h"
#include "flow.h"
#include "pagetrack.h"
#include "util.h"

#define SESSIONS	4
#define ADAPTIVE_WARMUP	10	/* epochs before the adaptive copy's figures count */

enum { P_HEADER, P_SYMBOLS, P_LEVELS, P_ORDERS, P_TRADES, P_SESSIONS, P_COUNT };
static const char *const pool_names[P_COUNT] = {
	"header", "symbols", "levels", "orders", "trades", "sessions"
};

/* The load's flow, its sessions taking turns. */
struct flow {
	struct xf_flow model;
	struct xf_live live[SESSIONS];
	uint64_t seq[SESSIONS];
	uint64_t n;
};

static void die(const char *msg, int err)
{
	fprintf(stderr, "exchange-pages: %s%s%s\n", msg, err ? ": " : "", err ? strerror(err) : "");
	exit(1);
}

/* One command, applied as the engine applies exchange-load's. */
static void one_order(struct flow *f, struct xb_book *b)
{
	int k = (int)(f->n++ % SESSIONS);
	struct xb_result res;
	struct xf_order o;

	xf_next(&f->model, &f->live[k], &o);
	xb_session_note(b, (uint32_t)k, ++f->seq[k]);
	if (o.cancel) {
		xb_cancel(b, o.order_id, &res);
		return;
	}
	if (!xb_submit(b, o.sym, o.side, o.kind, o.price, o.qty, &res) &&
	    res.status == XB_LIVE && res.remaining)
		xf_resting(&f->live[k], res.order_id, f->seq[k]);
}

static int pool_of(const struct xb_header *h, uint64_t off)
{
	if (off < h->off_symbols)
		return P_HEADER;
	if (off < h->off_levels)
		return P_SYMBOLS;
	if (off < h->off_orders)
		return P_LEVELS;
	if (off < h->off_trades)
		return P_ORDERS;
	if (off < h->off_sessions)
		return P_TRADES;
	return P_SESSIONS;
}

static void usage(FILE *out)
{
	fprintf(out,
"usage: exchange-pages [options]\n"
"  -s, --size BYTES      block size (default 256M)\n"
"  -n, --symbols N       symbols (default 1000)\n"
"  -e, --epoch N         orders per epoch (default 30000: 3M orders/s, 100 syncs/s)\n"
"  -w, --warmup N        orders before counting (default 2000000)\n"
"  -c, --count N         epochs to count (default 50)\n"
"  -z, --zipf S          Zipf exponent over symbols (default 1.0)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' }, { "symbols", required_argument, NULL, 'n' },
		{ "epoch", required_argument, NULL, 'e' }, { "warmup", required_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'c' }, { "zipf", required_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' }, { 0 }
	};
	uint64_t size = 256u << 20, nsym = 1000, epoch = 30000, warmup = 2000000, count = 50, v;
	uint64_t pages[P_COUNT] = { 0 }, total = 0, t_none = 0, t_tracked = 0, distinct = 0;
	uint64_t chunks = 0, last_chunk;
	uint64_t t_adaptive = 0, total_adaptive = 0;
	struct pt_tracker_opts ao = { .sz = sizeof(ao), .flags = PT_TRACK_ADAPTIVE };
	struct pt_tracker_stats st = { .sz = sizeof(st) }, st0 = { .sz = sizeof(st0) };
	struct pt_tracker_stats pst = { .sz = sizeof(pst) }, pst0 = { .sz = sizeof(pst0) };
	struct pt_tracker *ta = NULL;
	struct xb_book ab;
	void *ad_mem;
	uint8_t *seen;
	double zipf = 1.0;
	struct pt_tracker *t = NULL;
	struct xb_config c;
	struct xb_book b, twin;
	struct flow f, saved;
	long ps = sysconf(_SC_PAGESIZE);
	int64_t *saved_mid;
	void *mem, *twin_mem;
	int o, ret;

	while ((o = getopt_long(argc, argv, "s:n:e:w:c:z:h", opts, NULL)) != -1) {
		switch (o) {
		case 'h':
			usage(stdout);
			return 0;
		case 'z':
			zipf = strtod(optarg, NULL);
			if (!(zipf >= 0 && zipf <= 4))
				die("--zipf: a number in [0, 4]", 0);
			break;
		case 's': case 'n': case 'e': case 'w': case 'c':
			if (parse_u64(optarg, o == 'w' ? 0 : 1, o == 's' ? 1ull << 36 :
				      o == 'n' ? XB_MAX_SYMBOLS : 1ull << 32, o == 's', &v))
				die("a numeric option is out of range", 0);
			if (o == 's') size = v;
			else if (o == 'n') nsym = v;
			else if (o == 'e') epoch = v;
			else if (o == 'w') warmup = v;
			else count = v;
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	size = (size + (uint64_t)ps - 1) & ~((uint64_t)ps - 1);
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	twin_mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ad_mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || twin_mem == MAP_FAILED || ad_mem == MAP_FAILED)
		die("mmap", errno);
	if (xb_config_for_size(&c, (uint32_t)nsym, size) || xb_init(&b, mem, size, &c))
		die("the block cannot hold the books", 0);

	memset(&f, 0, sizeof(f));
	saved_mid = malloc(nsym * sizeof(int64_t));
	seen = calloc(size / (uint64_t)ps, 1);
	if (xf_init(&f.model, (uint32_t)nsym, zipf, 0x9e3779b97f4a7c15ull) || !saved_mid || !seen)
		die("out of memory", 0);

	for (uint64_t i = 0; i < warmup; i++)
		one_order(&f, &b);
	memcpy(twin_mem, mem, size);
	memcpy(ad_mem, mem, size);
	if (xb_attach(&twin, twin_mem, size) || xb_attach(&ab, ad_mem, size))
		die("the twin blocks", 0);
	ret = pt_tracker_open(&t, mem, size, NULL);
	if (!ret)
		ret = pt_tracker_open(&ta, ad_mem, size, &ao);
	if (ret)
		die("tracker", -ret);
	for (uint64_t e = 0; e < count; e++) {
		const struct pt_range *rg;
		uint64_t t0, t1;
		size_t nr;

		/* The same commands on the untracked twin, then on the block. */
		saved = f;
		memcpy(saved_mid, f.model.mid, nsym * sizeof(int64_t));
		t0 = now_ns();
		for (uint64_t i = 0; i < epoch; i++)
			one_order(&f, &twin);
		t1 = now_ns();
		t_none += t1 - t0;
		f = saved;
		memcpy(f.model.mid, saved_mid, nsym * sizeof(int64_t));
		t0 = now_ns();
		for (uint64_t i = 0; i < epoch; i++)
			one_order(&f, &b);
		t1 = now_ns();
		t_tracked += t1 - t0;
		ret = pt_tracker_collect(t, PT_COLLECT_RESET, &rg, &nr);
		if (ret < 0)
			die("collect", -ret);
		total += (uint64_t)ret;
		last_chunk = UINT64_MAX;	/* the ranges ascend: count each chunk once */
		for (size_t i = 0; i < nr; i++)
			for (uint64_t p = rg[i].first; p < rg[i].first + rg[i].count; p++) {
				pages[pool_of(b.h, p * (uint64_t)ps)]++;
				distinct += !seen[p];
				seen[p] = 1;
				if ((p * (uint64_t)ps) >> 21 != last_chunk) {
					last_chunk = (p * (uint64_t)ps) >> 21;
					chunks++;
				}
			}
		/* The adaptive copy: the same commands again.  Its first
		 * epochs, while pages turn hot, are not counted. */
		f = saved;
		memcpy(f.model.mid, saved_mid, nsym * sizeof(int64_t));
		t0 = now_ns();
		for (uint64_t i = 0; i < epoch; i++)
			one_order(&f, &ab);
		t1 = now_ns();
		ret = pt_tracker_collect(ta, PT_COLLECT_RESET, &rg, &nr);
		if (ret < 0)
			die("collect", -ret);
		if (e + 1 == ADAPTIVE_WARMUP) {
			pt_tracker_stats(ta, &st0);
			pt_tracker_stats(t, &pst0);
		}
		if (e >= ADAPTIVE_WARMUP) {
			t_adaptive += t1 - t0;
			total_adaptive += (uint64_t)ret;
		}
	}
	printf("block %llu MiB, %llu symbols, %llu orders per epoch, after %llu orders: "
	       "%llu live orders, %u order slots used of %u\n",
	       (unsigned long long)(size >> 20), (unsigned long long)nsym,
	       (unsigned long long)epoch, (unsigned long long)warmup,
	       (unsigned long long)b.h->live_orders, b.h->order_bump, b.h->max_orders);
	printf("pages per epoch %.1f (%.4f per order):", (double)total / (double)count,
	       (double)total / (double)count / (double)epoch);
	for (int p = 0; p < P_COUNT; p++)
		printf(" %s %.1f", pool_names[p], (double)pages[p] / (double)count);
	printf("\nmatching: %.0f ns per order untracked, %.0f ns tracked\n",
	       (double)t_none / (double)(count * epoch), (double)t_tracked / (double)(count * epoch));
	pt_tracker_stats(ta, &st);
	pt_tracker_stats(t, &pst);
	if (count > ADAPTIVE_WARMUP) {
		uint64_t n = count - ADAPTIVE_WARMUP;

		printf("adaptive (epochs %d-%llu): %.0f ns per order, faults per epoch %.1f against %.1f "
		       "plain, pages reported per epoch %.1f (%llu hot now); fault %llu ns as it "
		       "measured it\n", ADAPTIVE_WARMUP + 1, (unsigned long long)count,
		       (double)t_adaptive / (double)(n * epoch),
		       (double)(st.faulted - st0.faulted) / (double)n,
		       (double)(pst.faulted - pst0.faulted) / (double)n, (double)total_adaptive / (double)n,
		       (unsigned long long)st.hot_pages, (unsigned long long)st.fault_ns);
	}
	printf("distinct pages over the %llu epochs: %llu (%.1f%% of the %llu their records carry)\n",
	       (unsigned long long)count, (unsigned long long)distinct,
	       total ? 100.0 * (double)distinct / (double)total : 0.0, (unsigned long long)total);
	printf("2 MiB chunks written per epoch: %.1f of %llu\n", (double)chunks / (double)count,
	       (unsigned long long)((size + (2u << 20) - 1) >> 21));
	pt_tracker_close(t);
	pt_tracker_close(ta);
	if (xb_hash_stored(&twin) != xb_hash_stored(&b) || xb_hash_stored(&ab) != xb_hash_stored(&b))
		die("the twin blocks diverged", 0);
	munmap(mem, size);
	munmap(twin_mem, size);
	munmap(ad_mem, size);
	free(saved_mid);
	free(seen);
	xf_free(&f.model);
	return 0;
}
