/* net-lease: pt_net_lease_read, how clients find the writer: no bucket (-ENOENT); a publisher's advertised address read back, then a promoted standby's with its term; a deposed holder read as no writer; a value of version 1 (no address) read; bad options refused (-EINVAL); malformed values and addresses in the bucket refused (-EBADMSG), checksums right or not. */
#include <xxhash.h>

#include "failtest.h"

#define STREAM		"lease"
#define BUCKET		"pagetrack-lease-" STREAM
#define V1_SIZE		80
#define V2_SIZE		144

static struct pt_net_opts o = { .sz = sizeof(o), .stream = STREAM };
static int failures;

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * A lease value as docs/network.md lays it out: magic, version, term,
 * holder, pid, host[32], then (version 2) the address[64], and the XXH3 of
 * what comes before as the last 8 bytes.  Returns its size.
 */
static size_t value(unsigned char *buf, int version, uint64_t term, const char *host,
		    const char *advertise, size_t advertise_len)
{
	size_t size = version == 2 ? V2_SIZE : V1_SIZE;

	memset(buf, 0, V2_SIZE + 8);
	memcpy(buf, "PTLEASE", 8);
	put64(buf + 8, (uint64_t)version);
	put64(buf + 16, term);
	put64(buf + 24, term ? 0x1234 : 0);
	put64(buf + 32, 4242);
	memcpy(buf + 40, host, strlen(host));
	if (version == 2)
		memcpy(buf + 72, advertise, advertise_len);
	put64(buf + size - 8, XXH3_64bits(buf, size - 8));
	return size;
}

static void put_raw(kvStore *kv, const unsigned char *buf, size_t len)
{
	uint64_t rev;

	if (kvStore_Put(&rev, kv, "writer", buf, (int)len) != NATS_OK)
		DIE("putting a value into %s", BUCKET);
}

static void cell(const char *what, bool ok, const char *why)
{
	printf("  %-58s %s%s%s\n", what, ok ? "done" : "failed [", ok ? "" : why, ok ? "" : "]");
	if (!ok)
		failures++;
}

static int read_lease(struct pt_lease_info *li)
{
	memset(li, 0, sizeof(*li));
	li->sz = sizeof(*li);
	return pt_net_lease_read(&o, li);
}

static struct pt_region *create(const char *dir)
{
	struct pt_region_opts wo = { .sz = sizeof(wo), .flags = PT_REGION_NO_CHECKPOINT_THREAD };
	struct pt_region *r;
	int err;

	if ((err = pt_region_create(&r, dir, 64 * (size_t)sysconf(_SC_PAGESIZE), &wo)))
		DIE("create %s: %s", dir, pt_strerror(err));
	return r;
}

int main(void)
{
	static const struct { const char *what, *addr; } good[] = {
		{ "an IPv4 address", "10.1.2.3:4000" },
		{ "an IPv6 address in brackets", "[::1]:9" },
		{ "a DNS name, the highest port", "engine-b.example:65535" },
	};
	static const struct { const char *what, *addr; } bad_addr[] = {
		{ "port 0", "10.0.0.1:0" },
		{ "port 65536", "10.0.0.1:65536" },
		{ "no port", "10.0.0.1" },
		{ "no host", ":80" },
		{ "a port with a sign", "10.0.0.1:+80" },
		{ "a space in the host", "a b:80" },
		{ "an IPv6 address without brackets", "::1:80" },
		{ "brackets around no IPv6 address", "[zz]:80" },
		{ "a control character", "host\x01:80" },
	};
	struct natsd server;
	struct ft_raw raw;
	struct pt_lease_info li;
	struct pt_promote_info info = { .sz = sizeof(info) };
	struct pt_promote_opts force = { .sz = sizeof(force), .flags = PT_PROMOTE_FORCE };
	struct pt_publisher *p;
	struct pt_follower *f;
	struct pt_region *r;
	kvStore *kv = NULL;
	unsigned char buf[V2_SIZE + 8];
	char host[65];
	size_t n;
	int err;

	nt_init("net-lease: pt_net_lease_read, addresses advertised with the writer's lease");
	natsd_start(&server, "nats", NULL);
	o.urls = server.url;
	ft_raw_open(&raw, server.url);
	gethostname(host, sizeof(host));
	host[31] = 0;	/* the lease keeps 31 bytes of it */

	err = read_lease(&li);
	cell("no lease bucket: -ENOENT", err == -ENOENT, pt_net_last_error());

	/* Options. */
	{
		struct pt_net_opts no_stream = o, bad_stream = o, bad_adv = o;
		struct pt_lease_info small = { .sz = 4 };

		no_stream.stream = NULL;
		bad_stream.stream = "a b";
		cell("NULL options: -EINVAL", pt_net_lease_read(NULL, &li) == -EINVAL, "");
		cell("an info of sz 4: -EINVAL", pt_net_lease_read(&o, &small) == -EINVAL, "");
		cell("no stream: -EINVAL", pt_net_lease_read(&no_stream, &li) == -EINVAL, "");
		cell("a bad stream name: -EINVAL", pt_net_lease_read(&bad_stream, &li) == -EINVAL, "");
		bad_adv.advertise = "10.0.0.1:80";
		r = create(nt_path("nolease"));
		err = pt_publisher_open(&p, nt_path("nolease"), &bad_adv);
		cell("publish --advertise without a lease: -EINVAL", err == -EINVAL,
		     pt_net_last_error());
		if (!err)
			pt_publisher_close(p);
		pt_region_close(r);
		bad_adv.lease_ms = 1000;
		for (size_t i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++) {
			char what[96];

			bad_adv.advertise = bad_addr[i].addr;
			r = create(nt_path("bad%zu", i));
			err = pt_publisher_open(&p, nt_path("bad%zu", i), &bad_adv);
			snprintf(what, sizeof(what), "publish --advertise, %s: -EINVAL", bad_addr[i].what);
			cell(what, err == -EINVAL, pt_net_last_error());
			if (!err)
				pt_publisher_close(p);
			pt_region_close(r);
		}
	}

	/* A publisher holding the lease advertises its address. */
	{
		struct pt_net_opts po = o, fo = o;

		po.lease_ms = 60000;	/* the values put below stay */
		po.advertise = "10.1.2.3:4000";
		fo.lease_ms = 60000;
		fo.advertise = "10.1.2.4:4001";
		r = create(nt_path("a"));
		if (pt_publisher_open(&p, nt_path("a"), &po))
			DIE("publisher: %s", pt_net_last_error());
		for (int i = 0; i < 3; i++)
			ft_write(r, 4, false);
		if (ft_publish_to(p, 3))
			DIE("publishing: %s", pt_net_last_error());
		err = read_lease(&li);
		cell("the publisher's lease: held, term 0, its address",
		     err == 1 && li.term == 0 && li.pid == getpid() && !strcmp(li.host, host) &&
		     !strcmp(li.advertise, "10.1.2.3:4000") && li.ttl_ms == 60000 && !li.stream_term,
		     err < 0 ? pt_net_last_error() : li.advertise);

		/* A standby promoted over it advertises its own. */
		if (pt_follower_open(&f, nt_path("b"), &fo) || ft_follow_to(f, 3))
			DIE("follower: %s", pt_net_last_error());
		err = pt_follower_promote(f, &force, &info);
		if (err)
			DIE("promote: %s", pt_net_last_error());
		err = read_lease(&li);
		cell("after a promotion: term 1, the standby's address",
		     err == 1 && li.term == 1 && li.term == info.term && li.stream_term == 1 &&
		     !strcmp(li.advertise, "10.1.2.4:4001"),
		     err < 0 ? pt_net_last_error() : li.advertise);
		memset(&li, 0, sizeof(li));
		li.sz = sizeof(li);
		err = pt_follower_lease(f, &li);
		cell("pt_follower_lease says the same", err == 1 && !strcmp(li.advertise, "10.1.2.4:4001"),
		     err < 0 ? pt_net_last_error() : li.advertise);
		pt_follower_close(f);
		pt_publisher_close(p);
		pt_region_close(r);
	}

	if (js_KeyValue(&kv, raw.js, BUCKET) != NATS_OK)
		DIE("the bucket %s", BUCKET);

	/* The deposed writer's value put back: read as nobody. */
	n = value(buf, 2, 0, host, "10.1.2.3:4000", 13);
	put_raw(kv, buf, n);
	err = read_lease(&li);
	cell("a holder of term 0 after the term 1 marker: 0 (no writer)",
	     err == 0 && li.stream_term == 1 && li.term == 0,
	     err < 0 ? pt_net_last_error() : "another answer");

	/* Version 1, as older releases write it: read, no address. */
	n = value(buf, 1, 1, "old-host", NULL, 0);
	put_raw(kv, buf, n);
	err = read_lease(&li);
	cell("a value of version 1: held, no address",
	     err == 1 && li.term == 1 && li.pid == 4242 && !strcmp(li.host, "old-host") &&
	     !li.advertise[0], err < 0 ? pt_net_last_error() : li.advertise);

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char what[96];

		n = value(buf, 2, 1, host, good[i].addr, strlen(good[i].addr));
		put_raw(kv, buf, n);
		err = read_lease(&li);
		snprintf(what, sizeof(what), "version 2, %s: read back", good[i].what);
		cell(what, err == 1 && !strcmp(li.advertise, good[i].addr),
		     err < 0 ? pt_net_last_error() : li.advertise);
	}

	/* Malformed values, each with a right checksum unless said. */
	for (size_t i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++) {
		char what[96];

		n = value(buf, 2, 1, host, bad_addr[i].addr, strlen(bad_addr[i].addr));
		put_raw(kv, buf, n);
		err = read_lease(&li);
		snprintf(what, sizeof(what), "an address with %s: -EBADMSG", bad_addr[i].what);
		cell(what, err == -EBADMSG, "read");
	}
	{
		static const char *what[] = {
			"version 1 cut short by a byte",
			"version 1 with a checksum off by one",
			"version 2 saying version 1",
			"version 1 saying version 2",
			"another magic",
			"a pid past INT32_MAX",
			"an address of 64 bytes, no NUL",
			"bytes after the address's NUL",
			"a host name of 32 bytes, no NUL",
			"version 2 with 8 bytes more",
			"version 3",
		};

		for (size_t i = 0; i < sizeof(what) / sizeof(what[0]); i++) {
			char text[96];

			n = i == 0 || i == 1 || i == 4 || i == 5 || i == 8 ?
			    value(buf, 1, 1, host, NULL, 0) : value(buf, 2, 1, host, "10.0.0.1:80", 11);
			switch (i) {
			case 0: n--; put64(buf + n - 8, XXH3_64bits(buf, n - 8)); break;
			case 1: buf[n - 1] ^= 1; break;
			case 2: put64(buf + 8, 1); break;
			case 3: n = V1_SIZE; put64(buf + 8, 2); break;
			case 4: buf[0] = 'X'; break;
			case 5: put64(buf + 32, (uint64_t)INT32_MAX + 1); break;
			case 6: memset(buf + 72, 'a', 64); memcpy(buf + 72 + 57, ".b:8080", 7); break;
			case 7: buf[72 + 20] = 'x'; break;
			case 8: memset(buf + 40, 'h', 32); break;
			case 9: n += 8; break;
			case 10: put64(buf + 8, 3); break;
			}
			if (i != 1)
				put64(buf + n - 8, XXH3_64bits(buf, n - 8));
			put_raw(kv, buf, n);
			err = read_lease(&li);
			snprintf(text, sizeof(text), "%s: -EBADMSG", what[i]);
			cell(text, err == -EBADMSG, "read");
		}
	}

	kvStore_Destroy(kv);
	ft_raw_close(&raw);
	printf("%s\n", failures ? "FAIL" : "PASS");
	return failures ? T_FAIL : 0;
}
