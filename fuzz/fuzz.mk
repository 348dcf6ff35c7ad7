# fuzz.mk - libFuzzer targets for every decoder of outside input (included by
# the top Makefile).
#
#   make fuzz                  build every fuzz/*.c and run each for FUZZ_SECONDS
#                              (default 20) on a copy of fuzz/corpus/NAME/; fails
#                              on any crash, leak or sanitizer report
#   make fuzz-build            only build them, in $(O)/fuzz/
#   make fuzz-seeds            regenerate the valid seeds in fuzz/corpus/ (the
#                              damaged ones are kept as committed)
#   make fuzz FUZZ_TARGETS="image state" FUZZ_SECONDS=60
#
# The library is compiled in from src/*.c with the fuzz flags, not taken
# from the gcc-built static library, so that its code is instrumented for
# coverage and the sanitizers; the network layer's targets (net-*) also get
# its decoders (FUZZ_NET_SRCS: pure functions of a buffer, no libnats) and
# liblz4 and libcrypto.  Needs clang and its runtimes (Debian: clang
# libclang-rt-14-dev, in scripts/deps.sh --ci).
#
# The run copies the committed corpus to a temporary directory: libFuzzer
# adds what it finds to the corpus directory it is given, and the repository
# must not change under a run.  Crashing inputs go to $(O)/fuzz/artifacts/.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 20
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer
FUZZ_CPPFLAGS := -Iinclude -Isrc -D_GNU_SOURCE
FUZZ_LIBS    := -lxxhash -lpthread

FUZZ_SRCS    := $(wildcard fuzz/*.c)
FUZZ_NAMES   := $(FUZZ_SRCS:fuzz/%.c=%)
FUZZ_TARGETS ?= $(FUZZ_NAMES)
FUZZ_OUT     := $(O)/fuzz
FUZZ_LIB_OBJS := $(LIB_SRCS:src/%.c=$(FUZZ_OUT)/lib/%.o)
# The exchange's frame decoder and what it needs (proto.c once it exists).
FUZZ_XCH_SRCS := apps/exchange/book.c apps/exchange/net.c $(wildcard apps/exchange/proto.c)
# The network layer's decoders: the wire, the snapshot's values, the status record.
FUZZ_NET_SRCS := net/wire.c net/snapshot-format.c net/status-record.c
FUZZ_NET_OBJS := $(FUZZ_NET_SRCS:net/%.c=$(FUZZ_OUT)/net/%.o)
FUZZ_NET_CPPFLAGS := -Inet
FUZZ_NET_LIBS := -llz4 -lcrypto

# A compiler that cannot build a fuzzer must fail the make, never let it
# pass having fuzzed nothing.
$(FUZZ_OUT)/.clang-ok:
	@mkdir -p $(@D)
	@printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		> $(FUZZ_OUT)/probe.c
	@if ! $(FUZZ_CC) $(FUZZ_FLAGS) -o $(FUZZ_OUT)/probe $(FUZZ_OUT)/probe.c \
			>$(FUZZ_OUT)/probe.log 2>&1; then \
		cat $(FUZZ_OUT)/probe.log >&2; \
		echo "make fuzz: '$(FUZZ_CC)' cannot build a libFuzzer target with" \
		     "ASan+UBSan; install clang and libclang-rt-14-dev" \
		     "(scripts/deps.sh --ci), or set FUZZ_CC" >&2; \
		exit 1; \
	fi
	@touch $@

$(FUZZ_OUT)/lib/%.o: src/%.c src/*.h include/pagetrack.h $(FUZZ_OUT)/.clang-ok
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_FLAGS) -c -o $@ $<

$(FUZZ_OUT)/net/%.o: net/%.c net/*.h include/pagetrack.h include/pagetrack-net.h \
		$(FUZZ_OUT)/.clang-ok
	@mkdir -p $(@D)
	$(FUZZ_CC) -Iinclude $(FUZZ_NET_CPPFLAGS) -D_GNU_SOURCE $(FUZZ_FLAGS) -c -o $@ $<

$(FUZZ_NAMES:%=$(FUZZ_OUT)/%): $(FUZZ_OUT)/%: fuzz/%.c $(wildcard fuzz/*.h) $(FUZZ_LIB_OBJS) \
		$(FUZZ_NET_OBJS) $(FUZZ_OUT)/.clang-ok
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(if $(filter exchange-%,$*),-Iapps/exchange) \
		$(if $(filter net-%,$*),$(FUZZ_NET_CPPFLAGS)) $(FUZZ_FLAGS) -o $@ $< \
		$(if $(filter exchange-%,$*),$(FUZZ_XCH_SRCS)) $(if $(filter net-%,$*),$(FUZZ_NET_OBJS)) \
		$(FUZZ_LIB_OBJS) $(FUZZ_LIBS) $(if $(filter net-%,$*),$(FUZZ_NET_LIBS))

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_OUT)/%)

# One run per target, so that `make -j fuzz` runs them side by side.  The
# closing line of each is libFuzzer's last status: coverage (cov: edges,
# ft: features), corpus size and executions per second.
$(FUZZ_NAMES:%=fuzz-run-%): fuzz-run-%: $(FUZZ_OUT)/%
	@mkdir -p $(FUZZ_OUT)/artifacts
	@set -u; tmp=$$(mktemp -d /tmp/pagetrack-fuzz-$*-XXXXXX) || exit 1; \
	trap 'rm -rf "$$tmp"' EXIT; \
	if [ -d fuzz/corpus/$* ]; then cp -R fuzz/corpus/$*/. "$$tmp"/; fi; \
	log=$(FUZZ_OUT)/$*.log; \
	$(FUZZ_OUT)/$* "$$tmp" -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
		-error_exitcode=1 -timeout=10 -timeout_exitcode=1 -print_final_stats=1 \
		-artifact_prefix=$(FUZZ_OUT)/artifacts/$*- >"$$log" 2>&1; rc=$$?; \
	last=$$(grep -E '^#[0-9]+' "$$log" | tail -n 1); \
	cov=$$(echo "$$last" | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1, ft \2/p'); \
	corp=$$(echo "$$last" | sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p'); \
	eps=$$(sed -n 's/^stat::average_exec_per_sec: *//p' "$$log"); \
	runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' "$$log"); \
	if [ $$rc -ne 0 ] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error:)' "$$log"; then \
		grep -E -A40 'ERROR|runtime error|SUMMARY|Test unit written' "$$log" | head -n 60 | sed 's/^/    | /'; \
		echo "FUZZ FAIL  $*: exit $$rc after $${runs:-?} runs (log $$log, input in $(FUZZ_OUT)/artifacts/)"; \
		exit 1; \
	fi; \
	printf 'FUZZ PASS  %-18s %ss: %s runs, %s exec/s, %s, corpus %s\n' \
		$* $(FUZZ_SECONDS) "$${runs:-?}" "$${eps:-?}" "$${cov:-cov ?}" "$${corp:-?}"

fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)

# Valid seeds come from the library itself (fuzz/seeds/make-seeds.c).
$(FUZZ_OUT)/make-seeds: fuzz/seeds/make-seeds.c $(wildcard fuzz/*.h fuzz/seeds/*.h) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Ifuzz $(CFLAGS) $(LDFLAGS) -o $@ $< $(STATIC) $(LIBS)

# The network layer's (fuzz/seeds/make-net-seeds.c): its encoders, compiled in.
$(FUZZ_OUT)/make-net-seeds: fuzz/seeds/make-net-seeds.c $(wildcard fuzz/*.h fuzz/seeds/*.h) $(FUZZ_NET_SRCS) \
		net/*.h $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(FUZZ_NET_CPPFLAGS) -Ifuzz $(CFLAGS) $(LDFLAGS) -o $@ $< $(FUZZ_NET_SRCS) \
		$(STATIC) $(FUZZ_NET_LIBS) $(LIBS)

fuzz-seeds: $(FUZZ_OUT)/make-seeds $(FUZZ_OUT)/make-net-seeds
	$(FUZZ_OUT)/make-seeds fuzz/corpus
	$(FUZZ_OUT)/make-net-seeds fuzz/corpus

.PHONY: fuzz fuzz-build fuzz-seeds $(FUZZ_NAMES:%=fuzz-run-%)
