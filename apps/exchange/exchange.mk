# exchange.mk - the exchange application (included by the top Makefile).
#
#   exchange-engine  the transaction process (matching engine)
#   exchange-md      a query process serving market data from a replica
#   exchange-load    the clients: order and query load, latency, checks
#   exchange-pages   pages of the block an epoch writes, by pool (offline, no network)
#
# `make demo` runs apps/exchange/demo.sh; `make bench-exchange` the benchmark.

XCH_DIR  := apps/exchange
XCH_OUT  := $(O)/apps/exchange
XCH_HDRS := $(wildcard $(XCH_DIR)/*.h) include/pagetrack.h
XCH_COMMON := $(XCH_DIR)/book.c $(XCH_DIR)/net.c $(XCH_DIR)/proto.c $(XCH_DIR)/store.c
# A user of the library: its public header only (no -Isrc), and the shared
# library, found from the build tree through a relative rpath ($(O) is two
# levels up from $(XCH_OUT)).
XCH_CPPFLAGS := $(filter-out -Isrc,$(CPPFLAGS)) -I$(XCH_DIR)
XCH_LIBPT := -L$(O) -lpagetrack -Wl,-rpath,'$$ORIGIN/../..'

XCH_BINS := $(XCH_OUT)/exchange-engine $(XCH_OUT)/exchange-md $(XCH_OUT)/exchange-load \
	    $(XCH_OUT)/exchange-pages
APP_BINS += $(XCH_BINS)

$(XCH_OUT)/exchange-%: $(XCH_DIR)/%.c $(XCH_COMMON) $(XCH_HDRS) $(O)/$(SONAME)
	@mkdir -p $(@D)
	$(CC) $(XCH_CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(XCH_COMMON) $(XCH_LIBPT) -lxxhash -lm

# The test programs that compile the exchange's sources in (and start its programs).
$(O)/test/exchange-book: $(XCH_DIR)/book.c $(XCH_DIR)/book.h
$(O)/test/exchange-badinput: $(XCH_DIR)/book.c $(XCH_DIR)/net.c $(XCH_DIR)/proto.c $(XCH_HDRS) $(XCH_BINS)
$(O)/test/exchange-starve: $(XCH_HDRS) $(XCH_BINS)

bench-exchange: deps all $(XCH_BINS)
	@O=$(O) $(XCH_DIR)/bench.sh

.PHONY: bench-exchange

# make demo runs the exchange; DEMO_ARGS passes options to demo.sh:
# "--crash [--kills N]" for the crash drill, "--shared", "--seconds N", "--dir DIR".
DEMO_CMD = O=$(O) $(XCH_DIR)/demo.sh $(DEMO_ARGS)
