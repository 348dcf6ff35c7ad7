# exchange.mk - the exchange application (included by the top Makefile).
#
#   exchange-engine  the transaction process (matching engine)
#   exchange-md      a query process serving market data from a replica
#   exchange-load    the clients: order and query load, latency, checks
#
# `make demo` runs apps/exchange/demo.sh; `make bench-exchange` the benchmark.

XCH_DIR  := apps/exchange
XCH_OUT  := $(O)/apps/exchange
XCH_HDRS := $(wildcard $(XCH_DIR)/*.h)

# The test programs that compile the engine's sources in.
$(O)/test/exchange-book: $(XCH_DIR)/book.c $(XCH_DIR)/book.h
