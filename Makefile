# pagetrack - build, test, benchmark, install.
#
#   make                 library (static and shared) and the pagetrack command
#   make check           the test suite; ends with "N passed, N failed, N skipped"
#   make check-asan      the suite built with ASan+UBSan (in build-asan/)
#   make check-tsan      the threaded tests built with TSan (in build-tsan/)
#   make bench           the benchmarks (figures, never pass/fail)
#   make demo            the main job
#   make install PREFIX=/usr/local DESTDIR=
#
# O=dir puts every output under dir (default build/).  SAN=address,undefined
# or SAN=thread builds with sanitizers.

O        ?= build
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCDIR   ?= $(PREFIX)/include
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
PKGDIR   ?= $(LIBDIR)/pkgconfig

CC       ?= cc
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE
CFLAGS   ?=
override CFLAGS := -std=gnu11 $(OPT) $(WARN) $(CFLAGS)
LIBS     := -lxxhash -lpthread
# The command's own flags: the public header only, and its extra libraries
# (JSON output; the /metrics server of publish and follow).
TOOL_CPPFLAGS := -Iinclude -D_GNU_SOURCE
TOOL_LIBS := -ljson-c -lmicrohttpd -lpthread

ifneq ($(SAN),)
override CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SAN)
endif

VERSION  := $(shell sed -n 's/^\#define PAGETRACK_VERSION "\(.*\)"/\1/p' include/pagetrack.h)
SOMAJOR  := 0

LIB_SRCS := $(wildcard src/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(O)/%.o)
STATIC   := $(O)/libpagetrack.a
SHARED   := $(O)/libpagetrack.so.$(VERSION)
SONAME   := libpagetrack.so.$(SOMAJOR)
TOOL     := $(O)/pagetrack

# The test helpers (test/harness.h), compiled once into libptest.a and
# linked by every test program, the applications' tests and the benchmarks.
PTEST_SRCS := test/harness.c test/softdirty-emu.c
PTEST_OBJS := $(PTEST_SRCS:test/%.c=$(O)/test/obj/%.o)
PTEST      := $(O)/test/libptest.a
TEST_SRCS  := $(filter-out $(PTEST_SRCS),$(wildcard test/*.c))
TEST_BINS  := $(TEST_SRCS:test/%.c=$(O)/test/%)
TEST_SH    := $(filter-out test/run.sh,$(wildcard test/*.sh))
# Tests that start threads also run under TSan, and so does the emulated
# soft-dirty run (a script over softdirty-trackers and softdirty-converge);
# so does region-stream, whose point is the library's own threads working
# side by side.
TSAN_TESTS := $(shell grep -lE 'pthread_create|t_writers_start' $(TEST_SRCS) 2>/dev/null | sed 's|test/\(.*\)\.c|\1|') \
	      region-stream region-direct
TSAN_SH    := softdirty-emulated.sh
TSAN_SH_BINS := softdirty-trackers softdirty-converge region-precopy
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(O)/bench/%)
TOOL_SRCS  := $(wildcard tools/*.c)

all: $(STATIC) $(O)/$(SONAME) $(TOOL)

$(O)/src/%.o: src/%.c src/*.h include/pagetrack.h
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c -o $@ $<

$(STATIC): $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(SHARED): $(LIB_OBJS) src/libpagetrack.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libpagetrack.map \
		-Wl,--no-undefined $(LDFLAGS) -o $@ $(LIB_OBJS) $(LIBS)

$(O)/$(SONAME): $(SHARED)
	ln -sf $(notdir $<) $@
	ln -sf $(SONAME) $(O)/libpagetrack.so

# The command is a user of the library like any other: pagetrack.h only (no
# -Isrc), linked against the shared library.  It finds it next to itself in
# the build tree, then in ../lib beside an installed bin/ (any PREFIX, and
# DESTDIR staging), then in LIBDIR.
$(TOOL): $(TOOL_SRCS) tools/*.h $(O)/$(SONAME) $(O)/libpagetrack-net.so.$(SOMAJOR) include/pagetrack.h
	$(CC) $(TOOL_CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $(TOOL_SRCS) -L$(O) -lpagetrack-net -lpagetrack \
		-Wl,-rpath,'$$ORIGIN:$$ORIGIN/../lib:$(LIBDIR)' $(TOOL_LIBS)

# harness.c sees the public header only, so that programs linked against
# the shared library may link it; softdirty-emu.c puts an emulated kernel
# under the soft-dirty backend through src/softdirty.h, and only programs
# linked against the static library call it.
$(O)/test/obj/harness.o: PTEST_CPPFLAGS := $(TOOL_CPPFLAGS)
$(O)/test/obj/softdirty-emu.o: PTEST_CPPFLAGS := $(CPPFLAGS)
$(PTEST_OBJS): $(O)/test/obj/%.o: test/%.c test/harness.h src/*.h include/pagetrack.h
	@mkdir -p $(@D)
	$(CC) $(PTEST_CPPFLAGS) -Itest $(CFLAGS) -c -o $@ $<

$(PTEST): $(PTEST_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(O)/test/%: test/%.c test/*.h $(PTEST) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itest $(CFLAGS) $(LDFLAGS) -o $@ $< $(PTEST) $(STATIC) $(LIBS)

$(O)/bench/%: bench/%.c bench/*.h test/harness.h $(PTEST) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Ibench -Itest $(CFLAGS) $(LDFLAGS) -o $@ $< $(PTEST) $(STATIC) $(LIBS) -lm

# Applications (the exchange) and the fuzz targets bring their own rules.
-include apps/*/*.mk
-include fuzz/*.mk
-include net/*.mk

tests: all $(TEST_BINS) $(APP_BINS)

deps:
	@scripts/deps.sh

check: deps
	@$(MAKE) --no-print-directory tests
	@O=$(O) test/run.sh $(patsubst test/%.c,%,$(TEST_SRCS)) $(patsubst test/%,%,$(TEST_SH)) \
		$(APP_TESTS)

check-asan: deps
	@$(MAKE) --no-print-directory O=build-asan SAN=address,undefined OPT="-O1 -g" check

check-tsan: deps
	@$(MAKE) --no-print-directory O=build-tsan SAN=thread OPT="-O1 -g" \
		$(addprefix build-tsan/test/,$(sort $(TSAN_TESTS) $(TSAN_SH_BINS)))
	@O=build-tsan PAGETRACK_TSAN=1 test/run.sh $(TSAN_TESTS) $(TSAN_SH)

bench: deps all $(BENCH_BINS)
	@O=$(O) bench/run.sh $(notdir $(BENCH_BINS))

demo: deps all $(APP_BINS)
	@$(or $(DEMO_CMD),$(TOOL) demo)

pagetrack.pc: pagetrack.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCDIR@|$(INCDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LIBS)|' $< > $(O)/pagetrack.pc

install: all pagetrack.pc
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGDIR)
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf $(notdir $(SHARED)) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libpagetrack.so
	install -m 644 include/pagetrack.h $(DESTDIR)$(INCDIR)/
	install -m 755 $(TOOL) $(DESTDIR)$(BINDIR)/
	install -m 644 $(O)/pagetrack.pc $(DESTDIR)$(PKGDIR)/
	for s in 1 3 7; do \
		install -d $(DESTDIR)$(MANDIR)/man$$s; \
		for f in man/man$$s/*.$$s; do [ -e "$$f" ] && install -m 644 $$f $(DESTDIR)$(MANDIR)/man$$s/; done; \
	done; true

clean:
	rm -rf build build-asan build-tsan build-clang

.PHONY: all tests deps check check-asan check-tsan bench demo install clean pagetrack.pc
.SECONDARY:
