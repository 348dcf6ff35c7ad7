# exchange.mk - the exchange application (included by the top Makefile).
#
#   exchange-engine  the transaction process (matching engine)
#   exchange-md      a query process serving market data from a replica
#   exchange-load    the clients: order and query load, latency, checks
#   exchange-pages   pages of the block an epoch writes, by pool (offline, no network)
#   libexchange.a    the code they share (books, order flow, network, protocol,
#                    store), which the exchange's tests (apps/exchange/tests/)
#                    link as well
#
# `make demo` runs apps/exchange/demo.sh; `make bench-exchange` the benchmark;
# `make soak` the exchange for minutes (not part of make check);
# `make check` runs the tests listed in APP_TESTS.

XCH_DIR  := apps/exchange
XCH_OUT  := $(O)/apps/exchange
XCH_HDRS := $(wildcard $(XCH_DIR)/*.h) include/pagetrack.h
XCH_LIB_SRCS := $(XCH_DIR)/book.c $(XCH_DIR)/flow.c $(XCH_DIR)/net.c $(XCH_DIR)/proto.c \
		$(XCH_DIR)/store.c
XCH_LIB  := $(XCH_OUT)/libexchange.a
# A user of the library: its public header only (no -Isrc), and the shared
# library, found from the build tree through a relative rpath ($(O) is two
# levels up from $(XCH_OUT), three from its tests/).
XCH_CPPFLAGS := $(filter-out -Isrc,$(CPPFLAGS)) -I$(XCH_DIR)
XCH_LIBPT := -L$(O) -lpagetrack
XCH_LIBS  := -lxxhash -lm

XCH_BINS := $(XCH_OUT)/exchange-engine $(XCH_OUT)/exchange-md $(XCH_OUT)/exchange-load \
	    $(XCH_OUT)/exchange-pages
APP_BINS += $(XCH_BINS)

$(XCH_OUT)/obj/%.o: $(XCH_DIR)/%.c $(XCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(XCH_CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(XCH_LIB): $(XCH_LIB_SRCS:$(XCH_DIR)/%.c=$(XCH_OUT)/obj/%.o)
	rm -f $@
	$(AR) rcs $@ $^

$(XCH_BINS): $(XCH_OUT)/exchange-%: $(XCH_DIR)/%.c $(XCH_LIB) $(XCH_HDRS) $(O)/$(SONAME)
	@mkdir -p $(@D)
	$(CC) $(XCH_CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(XCH_LIB) $(XCH_LIBPT) \
		-Wl,-rpath,'$$ORIGIN/../..' $(XCH_LIBS)

# exchange-load finds the engine through the NATS cluster (--nats, the
# writer's lease): it links libpagetrack-net as well.  libpagetrack stays a
# direct dependency although the load calls none of it: the executable's
# RUNPATH finds only its own dependencies, not libpagetrack-net's.
$(XCH_OUT)/exchange-load: XCH_LIBPT = -L$(O) -lpagetrack-net -Wl,--no-as-needed -lpagetrack \
	-Wl,--as-needed
$(XCH_OUT)/exchange-load: $(O)/libpagetrack-net.so.$(SOMAJOR) include/pagetrack-net.h

# The tests: programs built into $(XCH_OUT)/tests/, scripts run in place.
# test/run.sh takes both by path (APP_TESTS); they include test/harness.h
# and link its helpers from libptest.a (built by the top Makefile).
XCH_TEST_SRCS := $(wildcard $(XCH_DIR)/tests/*.c)
XCH_TEST_BINS := $(XCH_TEST_SRCS:$(XCH_DIR)/tests/%.c=$(XCH_OUT)/tests/%)
APP_TESTS += $(XCH_TEST_SRCS:%.c=%) $(wildcard $(XCH_DIR)/tests/*.sh)

# Those that talk to the programs start them from $(XCH_OUT).
$(XCH_TEST_BINS): $(XCH_OUT)/tests/%: $(XCH_DIR)/tests/%.c test/harness.h $(PTEST) $(XCH_LIB) \
		$(XCH_HDRS) $(O)/$(SONAME) $(XCH_BINS)
	@mkdir -p $(@D)
	$(CC) $(XCH_CPPFLAGS) -Itest $(CFLAGS) $(LDFLAGS) -o $@ $< $(PTEST) $(XCH_LIB) $(XCH_LIBPT) \
		-Wl,-rpath,'$$ORIGIN/../../..' $(XCH_LIBS)

tests: $(XCH_TEST_BINS)

bench-exchange: deps all $(XCH_BINS)
	@O=$(O) $(XCH_DIR)/bench.sh

.PHONY: bench-exchange

# make soak runs the exchange as the demo does for SOAK_MINUTES minutes
# (default 10) and prints its figures each minute and the soak row
# (apps/exchange/soak.sh --help); SOAK_ARGS passes more options to it.
SOAK_MINUTES ?= 10
soak: deps all $(XCH_BINS)
	@O=$(O) $(XCH_DIR)/soak.sh --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

.PHONY: soak

# make demo runs the exchange; DEMO_ARGS passes options to demo.sh:
# "--crash [--kills N]" for the crash drill, "--shared", "--seconds N", "--dir DIR".
DEMO_CMD = O=$(O) $(XCH_DIR)/demo.sh $(DEMO_ARGS)
