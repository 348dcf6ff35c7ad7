# net.mk - libpagetrack-net, the network layer over NATS JetStream
# (included by the top Makefile).
#
#   libpagetrack-net.so.0, libpagetrack-net.a   from net/*.c, public header
#                     include/pagetrack-net.h; a user of the core's public
#                     header only (no -Isrc), linked against libpagetrack.so
#   net/tests/        its tests, in make check through APP_TESTS: each starts
#                     its own nats-server on 127.0.0.1 (skipped when none is
#                     installed)
#   make bench-net    figures against raw JetStream publishing, and failover
#                     time over repeated drills (net/bench/)
#   make demo-net     the exchange through publish, NATS and follow (net/demo.sh)
#   make demo-cluster the failover drill across three hosts (net/cluster.sh:
#                     network namespaces as root, else loopback ports)
#   make check-partition  net/tests/net-partition.sh (root; about 2 minutes, so
#                     not in make check)

NET_OUT      := $(O)/net
NET_SRCS     := $(wildcard net/*.c)
NET_OBJS     := $(NET_SRCS:net/%.c=$(NET_OUT)/obj/%.o)
NET_HDRS     := $(wildcard net/*.h) include/pagetrack-net.h include/pagetrack.h
NET_STATIC   := $(O)/libpagetrack-net.a
NET_SHARED   := $(O)/libpagetrack-net.so.$(VERSION)
NET_SONAME   := libpagetrack-net.so.$(SOMAJOR)
NET_CPPFLAGS := -Iinclude -Inet -D_GNU_SOURCE
NET_LIBS     := -L$(O) -lpagetrack -lnats -llz4 -lxxhash -lcrypto -lpthread

all: $(NET_STATIC) $(O)/$(NET_SONAME)

$(NET_OUT)/obj/%.o: net/%.c $(NET_HDRS)
	@mkdir -p $(@D)
	$(CC) $(NET_CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

$(NET_STATIC): $(NET_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(NET_SHARED): $(NET_OBJS) net/libpagetrack-net.map $(O)/$(SONAME)
	$(CC) -shared -Wl,-soname,$(NET_SONAME) -Wl,--version-script=net/libpagetrack-net.map \
		-Wl,--no-undefined $(LDFLAGS) -o $@ $(NET_OBJS) $(NET_LIBS)

$(O)/$(NET_SONAME): $(NET_SHARED)
	ln -sf $(notdir $<) $@
	ln -sf $(NET_SONAME) $(O)/libpagetrack-net.so

# The tests: programs built into $(NET_OUT)/tests/ ($(O) is two levels up),
# linked with libnats too (the injection tests publish raw messages) and
# libcrypto (net-hmac makes messages with MACs of its own).
NET_TEST_SRCS := $(wildcard net/tests/*.c)
NET_TEST_BINS := $(NET_TEST_SRCS:net/tests/%.c=$(NET_OUT)/tests/%)
APP_TESTS += $(NET_TEST_SRCS:%.c=%)

NET_TEST_LIB := -L$(O) -lpagetrack-net
# net-subdrop drives the connection's internals (net/conn.h): the static library.
$(NET_OUT)/tests/net-subdrop: NET_TEST_LIB = $(NET_STATIC) -llz4

$(NET_TEST_BINS): $(NET_OUT)/tests/%: net/tests/%.c net/tests/*.h $(NET_HDRS) \
		$(O)/$(NET_SONAME) $(NET_STATIC) $(TOOL)
	@mkdir -p $(@D)
	$(CC) $(NET_CPPFLAGS) -Inet/tests $(CFLAGS) $(LDFLAGS) -o $@ $< $(NET_TEST_LIB) -L$(O) \
		-lpagetrack -Wl,-rpath,'$$ORIGIN/../..' -lnats -lxxhash -lcrypto -lpthread

tests: $(NET_TEST_BINS) $(NET_LEADERS)

# make bench-net: figures of the network layer against raw JetStream
# publishing in the same run (net/bench/bench-net.c; figures, not pass/fail).
NET_BENCH := $(NET_OUT)/bench/bench-net

$(NET_BENCH): net/bench/bench-net.c net/tests/nettest.h $(NET_HDRS) $(O)/$(NET_SONAME)
	@mkdir -p $(@D)
	$(CC) $(NET_CPPFLAGS) -Inet/tests $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(O) -lpagetrack-net \
		-lpagetrack -Wl,-rpath,'$$ORIGIN/../..' -lnats -lxxhash -lpthread

# Failover time over repeated drills (net/bench/bench-failover.c, the drill
# of net/tests/drill.h): it runs the pagetrack command of this build.
NET_BENCH_FAILOVER := $(NET_OUT)/bench/bench-failover

$(NET_BENCH_FAILOVER): net/bench/bench-failover.c net/tests/*.h $(NET_HDRS) $(O)/$(NET_SONAME)
	@mkdir -p $(@D)
	$(CC) $(NET_CPPFLAGS) -Inet/tests $(CFLAGS) $(LDFLAGS) -o $@ $< -L$(O) -lpagetrack-net \
		-lpagetrack -Wl,-rpath,'$$ORIGIN/../..' -lnats -lxxhash -lpthread

# Moving streams' leaders off a server, for net/cluster.sh --leaders-elsewhere.
NET_LEADERS := $(NET_OUT)/bench/nats-leaders
$(NET_LEADERS): net/bench/nats-leaders.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< -lnats

# The exchange's own workload for the bytes on the wire: a short demo-net.
bench-net: all $(APP_BINS) $(NET_BENCH) $(NET_BENCH_FAILOVER)
	@$(NET_BENCH)
	@$(NET_BENCH_FAILOVER)
	@echo "exchange workload (net/demo.sh --seconds 5):"
	@O=$(O) net/demo.sh --seconds 5 2>/dev/null | sed -n '/^== demo-net/,$$p'

# make demo-net: the exchange's engine published through a local nats-server,
# followed into a standby that an md server reads (net/demo.sh; not in check).
# DEMO_NET_ARGS passes options to it, e.g. DEMO_NET_ARGS="--seconds 20".
demo-net: all $(APP_BINS)
	@O=$(O) net/demo.sh $(DEMO_NET_ARGS)

# make demo-cluster: net/cluster.sh, the drill with hosts A, B, C and a
# three-node NATS cluster; DEMO_CLUSTER_ARGS passes options to it.
demo-cluster: all $(APP_BINS) $(NET_LEADERS)
	@O=$(O) net/cluster.sh $(DEMO_CLUSTER_ARGS)

# make check-partition: the writer's host cut off from the NATS majority
# (net/tests/net-partition.sh; skipped without root or network namespaces).
check-partition: all $(APP_BINS) $(NET_LEADERS)
	@O=$(O) test/run.sh net/tests/net-partition.sh

install-net: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR)
	install -m 644 $(NET_STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(NET_SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(NET_SHARED)) $(DESTDIR)$(LIBDIR)/$(NET_SONAME)
	ln -sf $(NET_SONAME) $(DESTDIR)$(LIBDIR)/libpagetrack-net.so
	install -m 644 include/pagetrack-net.h $(DESTDIR)$(INCDIR)/

install: install-net

.PHONY: install-net demo-net bench-net demo-cluster check-partition
