/* Makes the fuzz targets' seed inputs with the library itself: make fuzz-seeds. */
/*
 * Usage: make-seeds CORPUS_DIR (fuzz/corpus).  Writes, for each target, a
 * few small valid inputs and a few damaged ones (named valid-* and bad-*),
 * each starting with the flags byte of fuzz.h.  Records and segment headers
 * are built with pt_record_fill/pt_record_seal and pt_segment_create for the
 * fuzz region (fuzz.h); images and state blocks are taken from a real
 * 4-page region made with pt_region_create, so they follow the library's
 * format as it is when the seeds are made.  Zero tails are cut (the image
 * target extends the file again with FZ_EXTEND).
 */
#include <sys/stat.h>

#include "pagetrack.h"
#include "fuzz.h"
#include "seeds.h"
#include "pagelog.h"

/* Length without the trailing zero bytes. */
static size_t trim(const unsigned char *p, size_t len)
{
	while (len && !p[len - 1])
		len--;
	return len;
}

/* Append a sealed record of epoch with the given pages to buf at *len. */
static void add_record(unsigned char *buf, size_t *len, const struct pt_region_id *id,
		       uint64_t epoch, const uint64_t *pages, uint32_t count, uint64_t *chain)
{
	unsigned char *r = buf + *len;
	uint64_t head = pt_record_head_length(count, id->page_size);

	memset(r, 0, pt_record_length(count, id->page_size));
	pt_record_fill(r, id, epoch, count, *chain);
	memcpy(r + sizeof(struct pt_record_header), pages, count * sizeof(*pages));
	for (uint32_t i = 0; i < count; i++)
		snprintf((char *)r + head + i * id->page_size, 32, "epoch %llu page %llu",
			 (unsigned long long)epoch, (unsigned long long)pages[i]);
	pt_record_seal(r);
	*chain = ((struct pt_record_header *)r)->header_checksum;
	*len += pt_record_length(count, id->page_size);
}

static void log_seeds(void)
{
	static unsigned char buf[1 << 16];
	struct pt_region_id id = fz_id(0, 0), big = fz_id(FZ_BIG_PAGES, 0);
	uint64_t p2[] = { 2 }, p03[] = { 0, 3 }, p1[] = { 1 }, bad_index[] = { 3, 1 };
	uint64_t chain;
	size_t len;

	len = 0;
	chain = pt_chain_seed(id.history_id);
	add_record(buf, &len, &id, 1, NULL, 0, &chain);
	put("log-record", "valid-empty", 0, buf, len);

	len = 0;
	chain = pt_chain_seed(id.history_id);
	add_record(buf, &len, &id, 1, p2, 1, &chain);
	add_record(buf, &len, &id, 2, p03, 2, &chain);
	add_record(buf, &len, &id, 3, NULL, 0, &chain);
	put("log-record", "valid-three", 0, buf, len);
	put("log-record", "valid-three-fixed", FZ_FIX_SUMS | FZ_FIX_ID, buf, len);
	put("log-record", "bad-truncated", 0, buf, len - 700);
	buf[1024 + 600] ^= 0x10;	/* page data of epoch 2 */
	put("log-record", "bad-payload-flip", 0, buf, len);

	/* Four one-page records: the halves are two segments, 1-2 and 3-4. */
	len = 0;
	chain = pt_chain_seed(id.history_id);
	for (uint64_t e = 1; e <= 4; e++)
		add_record(buf, &len, &id, e, p1, 1, &chain);
	put("log-record", "valid-two-segments", 0x10, buf, len);

	/* A gap: epoch 1 then 3. */
	len = 0;
	chain = pt_chain_seed(id.history_id);
	add_record(buf, &len, &id, 1, p1, 1, &chain);
	add_record(buf, &len, &id, 3, p1, 1, &chain);
	put("log-record", "bad-gap", 0, buf, len);

	/* Indices out of order, sealed as if valid. */
	len = 0;
	chain = pt_chain_seed(id.history_id);
	add_record(buf, &len, &id, 1, bad_index, 2, &chain);
	put("log-record", "bad-index-order", 0, buf, len);

	len = 0;
	chain = pt_chain_seed(big.history_id);
	add_record(buf, &len, &big, 1, p2, 1, &chain);
	put("log-record", "valid-big-pages", FZ_BIG_PAGES, buf, trim(buf, len));
}

static void segment_seeds(void)
{
	struct pt_region_id id = fz_id(0, 0);
	struct pt_segment_header h;
	unsigned char in[1 + sizeof(h)];
	char dir[] = "/tmp/pagetrack-seeds-XXXXXX", name[64];
	int dirfd, fd;

	if (!mkdtemp(dir) || (dirfd = open(dir, O_RDONLY | O_DIRECTORY)) < 0) {
		perror(dir);
		exit(1);
	}
	fd = pt_segment_create(dirfd, &id, 1, 5);
	if (fd < 0 || pt_read_full(fd, &h, sizeof(h), 0) != sizeof(h)) {
		fprintf(stderr, "segment: %s\n", strerror(fd < 0 ? -fd : EIO));
		exit(1);
	}
	close(fd);
	pt_segment_name(name, sizeof(name), 1);
	unlinkat(dirfd, name, 0);
	rmdir(dir);
	close(dirfd);

	in[0] = 1;	/* the file's sequence number */
	memcpy(in + 1, &h, sizeof(h));
	put("segment-header", "valid", 0, in, sizeof(in));
	put("segment-header", "valid-fixed", FZ_FIX_SUMS | FZ_FIX_ID, in, sizeof(in));
	in[0] = 3;
	put("segment-header", "bad-seq-name", 0, in, sizeof(in));
	in[0] = 1;
	in[1 + offsetof(struct pt_segment_header, first_epoch)] ^= 0x5;
	put("segment-header", "bad-checksum", 0, in, sizeof(in));
	memset(in + 1 + offsetof(struct pt_segment_header, first_epoch), 0, 8);
	put("segment-header", "bad-first-epoch-zero", FZ_FIX_SUMS, in, sizeof(in));
	put("segment-header", "bad-short", 0, in, 40);
}

/* The control block of a shared replica of the region in dir. */
static void shared_seeds(const char *dir)
{
	static struct pt_shared_ctl ctl;
	struct pt_replica_opts o = { .sz = sizeof(o), .mode = PT_REPLICA_SHARED };
	struct pt_replica *rep;
	char name[64], path[512];
	size_t n;
	FILE *f;
	int ret;

	snprintf(name, sizeof(name), "fuzz-seeds-%d", (int)getpid());
	o.name = name;
	ret = pt_replica_open(&rep, dir, &o);
	if (ret) {
		fprintf(stderr, "shared replica: %s\n", pt_strerror(ret));
		exit(1);
	}
	pt_replica_refresh(rep, 0);
	snprintf(path, sizeof(path), "/dev/shm/pagetrack-%s", name);
	f = fopen(path, "r");
	n = f ? fread(&ctl, 1, sizeof(ctl), f) : 0;
	if (f)
		fclose(f);
	pt_replica_close(rep);
	snprintf(path, sizeof(path), "rm -f /dev/shm/pagetrack-%s /dev/shm/pagetrack-%s.*", name, name);
	if (system(path))
		fprintf(stderr, "could not remove /dev/shm/pagetrack-%s*\n", name);
	if (n != sizeof(ctl)) {
		fprintf(stderr, "shared replica: control block of %zu bytes\n", n);
		exit(1);
	}
	ctl.history_id = FZ_HISTORY;
	put("shared-ctl", "bad-short", 0, &ctl, trim((unsigned char *)&ctl, sizeof(ctl)));
	put("shared-ctl", "valid-full", 0, &ctl, sizeof(ctl));
	put("shared-ctl", "valid-fixed", FZ_FIX_ID, &ctl, sizeof(ctl));
	ctl.readers[3].pin = ctl.next_gen + 7;
	ctl.readers[3].pid = 1;
	put("shared-ctl", "bad-pin", 0, &ctl, sizeof(ctl));
	ctl.readers[3].pin = 0;
	ctl.copy_gen[1] = ctl.copy_gen[0];
	put("shared-ctl", "bad-same-copies", 0, &ctl, sizeof(ctl));
	ctl.copy_gen[1] = ctl.next_gen;
	ctl.current = 7;
	put("shared-ctl", "bad-current", 0, &ctl, sizeof(ctl));
}

/* A 4-page region with a few epochs and a checkpoint; its image and state. */
static void region_seeds(void)
{
	char parent[] = "/tmp/pagetrack-seeds-XXXXXX", dir[64], path[512];
	struct pt_region_opts o = { .sz = sizeof(o), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	static unsigned char img[1 << 20], state_open[sizeof(struct pt_state)];
	struct pt_state st;
	struct pt_region *r;
	unsigned char *mem;
	size_t len, n;
	FILE *f;
	int ret;

	if (!mkdtemp(parent)) {
		perror(parent);
		exit(1);
	}
	snprintf(dir, sizeof(dir), "%s/r", parent);
	ret = pt_region_create(&r, dir, FZ_NPAGES * ps, &o);
	if (ret) {
		fprintf(stderr, "pt_region_create: %s\n", pt_strerror(ret));
		exit(1);
	}
	mem = pt_region_base(r);
	for (int e = 1; e <= 3; e++) {
		snprintf((char *)mem + (size_t)(e % 2) * ps, 64, "epoch %d", e);
		if (pt_region_sync(r) < 0)
			exit(1);
		if (e == 2 && pt_region_checkpoint(r) < 0)
			exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, PT_STATE_NAME);
	f = fopen(path, "r");
	if (!f || fread(state_open, 1, sizeof(state_open), f) != sizeof(state_open))
		exit(1);
	fclose(f);
	if (pt_region_close(r))
		exit(1);

	snprintf(path, sizeof(path), "%s/%s", dir, PT_IMAGE_NAME);
	f = fopen(path, "r");
	if (!f)
		exit(1);
	len = fread(img, 1, sizeof(img), f);
	fclose(f);
	n = trim(img, len);
	put("image", "valid-checkpointed", FZ_EXTEND, img, n);
	put("image", "valid-checkpointed-fixed", FZ_EXTEND | FZ_FIX_SUMS, img, n);
	put("image", "bad-truncated", 0, img, 3 * ps + 10);
	{
		static unsigned char dmg[1 << 20];

		memcpy(dmg, img, n);
		memset(dmg + 2 * ps, 0, ps);		/* the table block zeroed */
		put("image", "bad-zero-table", FZ_EXTEND, dmg, n);
		memcpy(dmg, img, n);
		dmg[ps + 40] ^= 1;			/* slot 1 (the newer) flipped */
		put("image", "bad-slot1-flip", FZ_EXTEND, dmg, n);
		memcpy(dmg, img, n);
		dmg[3 * ps + 3] ^= 0x20;		/* a data page flipped */
		put("image", "bad-page-flip", FZ_EXTEND, dmg, n);
	}

	/* The state block: as the writer left it open, and closed; the
	 * fuzz region's identity written in so that the id check passes. */
	memcpy(&st, state_open, sizeof(st));
	st.history_id = FZ_HISTORY;
	put("state", "valid-open", 0, &st, sizeof(st));
	snprintf(path, sizeof(path), "%s/%s", dir, PT_STATE_NAME);
	f = fopen(path, "r");
	if (!f || fread(&st, 1, sizeof(st), f) != sizeof(st))
		exit(1);
	fclose(f);
	st.history_id = FZ_HISTORY;
	put("state", "valid-closed", 0, &st, sizeof(st));
	put("state", "valid-closed-fixed", FZ_FIX_ID, &st, sizeof(st));
	put("state", "bad-short", 0, &st, 100);
	st.durable = st.published + 5;
	put("state", "bad-durable-ahead", 0, &st, sizeof(st));
	memcpy(&st, state_open, sizeof(st));
	st.history_id = FZ_HISTORY;
	st.ring[1].offset = st.staging_bytes - 8;
	st.ring[1].length = 4096;
	st.ring[1].epoch = 1;
	put("state", "bad-ring-outside", 0, &st, sizeof(st));

	shared_seeds(dir);

	snprintf(path, sizeof(path), "rm -rf '%s'", parent);
	if (system(path))
		fprintf(stderr, "could not remove %s\n", parent);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-seeds CORPUS_DIR\n");
		return 2;
	}
	corpus = argv[1];
	mkdir(corpus, 0755);
	log_seeds();
	segment_seeds();
	region_seeds();
	return 0;
}
