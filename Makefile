# firehose: one entry point. `make` builds bin/; `make test` installs what is missing, builds,
# and runs unit tests (plain, in a lone clone of HEAD, and under ASan+UBSan) and integration tests
# against real Kafka.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   ?= build
BIN     ?= bin
PYTHON  ?= python3

PKGS      := rdkafka jansson libmicrohttpd sqlite3 libcurl libcrypto zlib
WARN      := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
CFLAGS    ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(CFLAGS) $(SANFLAGS) -Ilib -MMD -MP \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread

SCHEMAS   := schemas/envelope.schema.json schemas/event.schema.json $(sort $(wildcard schemas/data/*.schema.json))
LIB_SRC   := $(sort $(wildcard lib/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/schemas_embed.o
PROGRAMS  := $(BIN)/firehose-emit $(BIN)/firehose-sim $(BIN)/firehose-broker $(BIN)/firehose-replay $(BIN)/firehose-tail
UNIT_SRC  := $(sort $(wildcard tests/unit/*.c))
UNIT_BIN  := $(BUILD)/unit-tests

.PHONY: python-client-test fanout-tools ingest-tools all deps deps-run deps-check deps-test lone-clone run test unit unit-asan integration integration-asan bench-test bench docs install uninstall clean format format-check
all: $(PROGRAMS)

# ---- dependencies: installed on a fresh machine when missing --------------------------------
# The package lists are tools/deps/*.txt; tools/deps.sh installs what is missing and never a
# package that another build of the same tool already stands in for (see its --help).
# deps-run: what building and running the broker needs; deps: that plus the test stack.
deps-run:
	@bash tools/deps.sh install run

deps:
	@bash tools/deps.sh install test

# deps-check: simulate installing every Debian package `make deps` may ask for on this machine.
deps-check:
	@bash tools/deps.sh check

# deps-test: tools/deps.sh's own tests (its check passes here and catches a conflicting package;
# an npm already on PATH keeps Debian's npm out). Simulations only, a few seconds.
deps-test:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/deps

# ---- build ----------------------------------------------------------------------------------
$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -O1 -o $@ $<

$(BUILD)/gen/schemas_embed.c: $(SCHEMAS) $(BUILD)/tools/embed
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $@ fh_embedded_schemas $(SCHEMAS)

$(BUILD)/gen/schemas_embed.o: $(BUILD)/gen/schemas_embed.c
	$(CC) -std=c11 -O1 -c -o $@ $<

WEB := web/index.html web/dashboard.js web/dashboard.css
$(BUILD)/gen/web_embed.c: $(WEB) $(BUILD)/tools/embed
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $@ fh_embedded_web $(WEB)

$(BUILD)/gen/web_embed.o: $(BUILD)/gen/web_embed.c
	$(CC) -std=c11 -O1 -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libfirehose.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BIN)/firehose-emit: $(BUILD)/producers/firehose_emit.o $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/firehose-sim: $(BUILD)/producers/firehose_sim.o $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

BROKER_SRC := $(sort $(wildcard broker/*.c broker/*/*.c))
# broker/ is a folder per subsystem; their headers include the shared ones (broker.h, http.h)
$(BUILD)/broker/%.o: ALL_CFLAGS += -Ibroker
$(BIN)/firehose-broker: $(BROKER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_embed.o $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# consumers/: firehose-replay and firehose-tail, and the pieces they share (unit-tested too)
CONSUMERS_LIB_SRC := consumers/cli_filter.c consumers/summary.c consumers/ws_client.c \
                     consumers/netpolicy.c consumers/lws_client.c
$(BUILD)/libconsumers.a: $(CONSUMERS_LIB_SRC:%.c=$(BUILD)/%.o)
	ar rcs $@ $^

$(BIN)/firehose-replay: $(BUILD)/consumers/firehose_replay.o $(BUILD)/libconsumers.a $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# firehose-tail speaks WebSocket through libwebsockets (ws://, wss://, proxies, permessage-deflate)
LWS_LIBS = $(shell pkg-config --libs libwebsockets 2>/dev/null)
$(BIN)/firehose-tail: $(BUILD)/consumers/firehose_tail.o $(BUILD)/libconsumers.a $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LWS_LIBS) $(LDLIBS)

$(BUILD)/tests/unit/%.o: ALL_CFLAGS += -Iconsumers
# test_view_tests.c includes the view's sources (broker/view/tests.c and what it runs on)
$(BUILD)/tests/unit/test_view_tests.o: ALL_CFLAGS += -Ibroker
# test_stream_ring.c, test_stream_index.c and test_stream_subs.c include broker/stream/ring.c, index.c and subs.c
$(BUILD)/tests/unit/test_stream_ring.o $(BUILD)/tests/unit/test_stream_index.o $(BUILD)/tests/unit/test_stream_subs.o: ALL_CFLAGS += -Ibroker

$(UNIT_BIN): $(UNIT_SRC:%.c=$(BUILD)/%.o) $(BUILD)/libconsumers.a $(BUILD)/libfirehose.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# bench/fanout: the fan-out benchmark's load client and paced producer (not part of `all`)
FANOUT_BIN := $(BUILD)/bench/loadclient $(BUILD)/bench/pacer
$(BUILD)/bench/fanout/%.o: ALL_CFLAGS += -Iconsumers
$(BUILD)/bench/loadclient: $(BUILD)/bench/fanout/loadclient.o $(BUILD)/libconsumers.a $(BUILD)/libfirehose.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench/pacer: $(BUILD)/bench/fanout/pacer.o $(BUILD)/libfirehose.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
fanout-tools: $(FANOUT_BIN)

# bench/deflate_bench: permessage-deflate's cost per event and per delivery (docs/performance.md)
$(BUILD)/bench/deflate_bench: $(BUILD)/bench/deflate_bench.o $(BUILD)/libfirehose.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
.PHONY: bench-deflate
bench-deflate: $(BUILD)/bench/deflate_bench
	nice $(BUILD)/bench/deflate_bench
# bench/view_tests_bench: the view applying test.results on its own SQLite file (docs/performance.md)
$(BUILD)/bench/view_tests_bench.o: ALL_CFLAGS += -Ibroker
$(BUILD)/bench/view_tests_bench: $(BUILD)/bench/view_tests_bench.o $(BUILD)/libfirehose.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
.PHONY: bench-view-tests
bench-view-tests: $(BUILD)/bench/view_tests_bench
	nice $(BUILD)/bench/view_tests_bench
# bench/ingest_post: the ingest benchmark's HTTP client (HttpStatusPush, GitHub, GitLab posts)
$(BUILD)/bench/ingest_post: $(BUILD)/bench/ingest_post.o $(BUILD)/libfirehose.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
ingest-tools: $(BUILD)/bench/ingest_post

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- tests ----------------------------------------------------------------------------------
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

unit: $(UNIT_BIN)
	$(UNIT_BIN)

# lone-clone: the committed tree is enough on its own. Clones HEAD into a fresh empty directory
# (nothing beside the clone, so a path that leaves the repository finds nothing), builds and runs
# the unit tests there, and removes it; fails when the build or any unit test fails there.
lone-clone:
	@tmp=$$(mktemp -d) && log=$$(mktemp) && trap 'rm -rf "$$tmp" "$$log"' EXIT && \
	git clone -q --no-local "$$(pwd)" "$$tmp/firehose" && \
	if $(MAKE) --no-print-directory -C "$$tmp/firehose" -j2 unit >"$$log" 2>&1; then \
	  echo "lone-clone: $$(git rev-parse --short HEAD) cloned alone: $$(tail -n 1 "$$log")"; \
	else \
	  grep -v '^ok   ' "$$log" | tail -n 40; echo "lone-clone: FAILED in a lone clone of $$(git rev-parse --short HEAD)"; exit 1; \
	fi

# The same unit tests, built with clang under AddressSanitizer + UndefinedBehaviorSanitizer.
unit-asan:
	$(MAKE) --no-print-directory CC=clang BUILD=build/asan BIN=build/asan/bin SANFLAGS="$(SAN)" \
	  CFLAGS="-O1 -g" build/asan/unit-tests build/asan/bin/firehose-emit build/asan/bin/firehose-sim \
	  build/asan/bin/firehose-broker build/asan/bin/firehose-replay build/asan/bin/firehose-tail
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/unit-tests

# tests/kafka/kafka.sh creates topics with this when it is built (one request, no JVM per topic).
KAFKA_TOOLS := $(BUILD)/tests/create_topics
$(BUILD)/tests/create_topics: $(BUILD)/tests/kafka/create_topics.o
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

integration: all $(KAFKA_TOOLS)
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

# The stream, webhook, fault and CI-ingest tests again, against the broker built with ASan+UBSan (unit-asan
# builds it): a use after free or a leak ends the process, and the tests check its exit status.
ASAN_INTEGRATION ?= tests/integration/test_stream_storm.py tests/integration/test_stream.py \
                    tests/integration/test_webhooks.py tests/integration/test_faults.py \
                    tests/integration/test_stream_deflate.py \
                    tests/integration/test_ingest_ci.py tests/integration/test_ci_metrics.py \
                    tests/integration/test_webhooks_chat.py tests/integration/test_webhooks_hosts.py
integration-asan: all $(KAFKA_TOOLS)
	FIREHOSE_TEST_BROKER=build/asan/bin/firehose-broker FIREHOSE_TEST_ASAN=1 \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(ASAN_INTEGRATION)

# consumers/python: the Python client built as a wheel, installed into a fresh virtualenv
# (websockets from PyPI), and its own tests run against the installed package, not the source.
PY_CLIENT := $(BUILD)/python-client
python-client-test:
	rm -rf $(PY_CLIENT) consumers/python/build consumers/python/src/*.egg-info && mkdir -p $(PY_CLIENT)
	$(PYTHON) -m pip wheel --no-deps -q -w $(PY_CLIENT)/dist ./consumers/python
	rm -rf consumers/python/build consumers/python/src/*.egg-info
	$(PYTHON) -m venv $(PY_CLIENT)/venv
	$(PY_CLIENT)/venv/bin/pip install -q $(PY_CLIENT)/dist/firehose_client-*.whl
	cd $(PY_CLIENT) && venv/bin/python -c 'import firehose_client as f; assert "site-packages" in f.__file__, f.__file__'
	cd $(PY_CLIENT) && venv/bin/python -m unittest discover -s $(CURDIR)/consumers/python/tests

# The benchmarks' own Python (bench/plot.py, the fan-out report): no Kafka, no build, a second.
bench-test:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/bench

test: deps
	$(MAKE) --no-print-directory deps-check
	$(MAKE) --no-print-directory deps-test
	$(MAKE) --no-print-directory format-check
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory lone-clone
	$(MAKE) --no-print-directory unit-asan
	$(MAKE) --no-print-directory fuzz-smoke
	$(MAKE) --no-print-directory bench-test
	$(MAKE) --no-print-directory python-client-test
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory integration-asan

bench: deps all
	bash bench/ingest.sh
	bash bench/sim.sh
	bash bench/rest.sh
	bash bench/replay.sh
	bash bench/fanout.sh
	bash bench/webhooks.sh
	bash bench/buildbot.sh
	bash bench/derive.sh

docs: all
	tools/gen-config-doc.sh bin > docs/configuration.md

# ---- fuzz: libFuzzer targets (tests/fuzz/README.md) -----------------------------------------
# Each target compiles the library sources it exercises (so libFuzzer's coverage reaches them)
# and takes the rest from the ASan+UBSan archive that unit-asan builds.
FUZZ_CC      ?= clang
FUZZ_TARGETS ?= fuzz_json fuzz_event fuzz_ws fuzz_filter fuzz_config fuzz_query fuzz_wsmsg fuzz_route \
                fuzz_rest fuzz_deflate fuzz_ci
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c11 \
                -D_GNU_SOURCE -pthread -Wall -Wextra -Werror -Ilib \
                $(shell pkg-config --cflags rdkafka jansson libcrypto 2>/dev/null)
FUZZ_LIBS     = build/asan/gen/schemas_embed.c build/asan/libfirehose.a \
                $(shell pkg-config --libs rdkafka jansson libcrypto zlib 2>/dev/null) -lm -pthread
fuzz_json_SRC   := lib/fh_json.c lib/fh_json_doc.c lib/fh_utf8.c lib/fh_error.c
fuzz_event_SRC  := lib/fh_json.c lib/fh_json_doc.c lib/fh_schema.c lib/fh_schema_compile.c lib/fh_pattern.c lib/fh_event.c lib/fh_error.c
fuzz_ws_SRC     := lib/fh_ws.c lib/fh_utf8.c lib/fh_base64.c
fuzz_filter_SRC := lib/fh_filter.c
fuzz_config_SRC := lib/fh_config.c lib/fh_error.c
fuzz_query_SRC  := lib/fh_param.c lib/fh_util.c lib/fh_auth.c
fuzz_wsmsg_SRC  := lib/fh_wsmsg.c lib/fh_cursor.c lib/fh_filter.c lib/fh_util.c
fuzz_route_SRC  := lib/fh_route.c
# fuzz_rest drives the broker's HTTP checks, REST handlers and an empty view (tests/fuzz/fuzz_rest.c).
fuzz_rest_SRC   := broker/http.c $(wildcard broker/rest/*.c broker/view/*.c) broker/dlq.c broker/health.c broker/dashboard.c \
                   lib/fh_util.c lib/fh_param.c lib/fh_route.c build/asan/gen/web_embed.c
fuzz_rest_CFLAGS := -Ibroker $(shell pkg-config --cflags libmicrohttpd sqlite3 2>/dev/null)
fuzz_rest_LIBS  := $(shell pkg-config --libs libmicrohttpd sqlite3 2>/dev/null)
fuzz_deflate_SRC := lib/fh_deflate.c lib/fh_ws.c lib/fh_error.c
fuzz_ci_SRC     := lib/fh_ci.c lib/fh_sign.c lib/fh_base64.c lib/fh_util.c
# Seeds (read-only) and extra flags per target.
fuzz_json_SEEDS   := schemas/examples/valid schemas/examples/invalid tests/fuzz/seeds
fuzz_event_SEEDS  := schemas/examples/valid schemas/examples/invalid
fuzz_ws_SEEDS     := tests/fuzz/seeds/ws
fuzz_filter_SEEDS := tests/fuzz/seeds/filter
fuzz_config_SEEDS := tests/fuzz/seeds/config
fuzz_query_SEEDS  := tests/fuzz/seeds/query
fuzz_wsmsg_SEEDS  := tests/fuzz/seeds/wsmsg
fuzz_route_SEEDS  := tests/fuzz/seeds/route
fuzz_rest_SEEDS   := tests/fuzz/seeds/rest
fuzz_deflate_SEEDS := tests/fuzz/seeds/deflate
fuzz_ci_SEEDS     := tests/fuzz/seeds/ci
fuzz_json_FLAGS   := -dict=tests/fuzz/json.dict
fuzz_event_FLAGS  := -dict=tests/fuzz/json.dict
fuzz_filter_FLAGS := -dict=tests/fuzz/json.dict
fuzz_config_FLAGS := -max_len=16384
fuzz_wsmsg_FLAGS  := -dict=tests/fuzz/wsmsg.dict -max_len=16384
fuzz_rest_FLAGS   := -dict=tests/fuzz/rest.dict -max_len=4096
fuzz_ci_FLAGS     := -dict=tests/fuzz/ci.dict -max_len=16384
# fuzz-smoke: bounded in count and in time (each target stops at whichever comes first).
FUZZ_SMOKE_RUNS    ?= 50000
FUZZ_SMOKE_SECONDS ?= 8
# fuzz-long: FUZZ_SECONDS per target, and FUZZ_RUNS (-1: no count limit).
FUZZ_SECONDS ?= 600
FUZZ_RUNS    ?= -1

.PHONY: fuzz fuzz-smoke fuzz-long
fuzz:
	$(MAKE) --no-print-directory CC=clang BUILD=build/asan BIN=build/asan/bin SANFLAGS="$(SAN)" \
	  CFLAGS="-O1 -g" build/asan/libfirehose.a build/asan/gen/schemas_embed.c build/asan/gen/web_embed.c
	$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=build/fuzz/%)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard lib/*.c lib/*.h broker/*.c broker/*.h broker/*/*.c broker/*/*.h) build/asan/libfirehose.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(fuzz_$*_CFLAGS) -o $@ $< $(fuzz_$*_SRC) $(FUZZ_LIBS) $(fuzz_$*_LIBS)

# fuzz-run-NAME runs one target from its working corpus build/fuzz/corpus/NAME plus its seeds;
# a crash, leak, timeout or failed check leaves build/fuzz/NAME-crash-* and fails the make.
# FUZZ_NICE="nice -n 19" keeps long runs out of other work's way.
FUZZ_NICE ?=
fuzz-smoke: fuzz
	$(MAKE) --no-print-directory -j1 $(FUZZ_TARGETS:%=fuzz-run-%) FUZZ_MODE=smoke \
	  FUZZ_ARGS="-runs=$(FUZZ_SMOKE_RUNS) -max_total_time=$(FUZZ_SMOKE_SECONDS)"

fuzz-long: fuzz
	$(MAKE) --no-print-directory -j1 $(FUZZ_TARGETS:%=fuzz-run-%) FUZZ_MODE=long \
	  FUZZ_ARGS="-runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_SECONDS)"

fuzz-run-%:
	@mkdir -p build/fuzz/corpus/$*
	@log=build/fuzz/$*.$(FUZZ_MODE).log; \
	if ! $(FUZZ_NICE) build/fuzz/$* $(FUZZ_ARGS) -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/$*- $($*_FLAGS) build/fuzz/corpus/$* $($*_SEEDS) >$$log 2>&1; then \
	  tail -n 40 $$log; echo "fuzz $(FUZZ_MODE): $* FAILED (log: $$log)"; exit 1; fi; \
	echo "fuzz $(FUZZ_MODE): $* ok: $$(grep -E '^#[0-9]+' $$log | tail -n 1)"

# ---- run: the broker on the embedded Kafka, with demo traffic -------------------------------
run: deps-run
	@$(MAKE) --no-print-directory all
	@bash tools/run-demo.sh

# ---- install --------------------------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/firehose/schemas/data
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 schemas/*.schema.json $(DESTDIR)$(PREFIX)/share/firehose/schemas/
	install -m 0644 schemas/data/*.schema.json $(DESTDIR)$(PREFIX)/share/firehose/schemas/data/
	install -d $(DESTDIR)$(PREFIX)/share/firehose/examples
	install -m 0644 schemas/examples/valid/*.json $(DESTDIR)$(PREFIX)/share/firehose/examples/
	install -m 0644 deploy/systemd/firehose-broker.service $(DESTDIR)$(PREFIX)/share/firehose/

uninstall:
	rm -f $(PROGRAMS:$(BIN)/%=$(DESTDIR)$(PREFIX)/bin/%)
	rm -rf $(DESTDIR)$(PREFIX)/share/firehose

format:
	clang-format -i lib/*.[ch] producers/*.c broker/*.[ch] broker/*/*.[ch] consumers/*.[ch] tests/unit/*.[ch] tools/*.c bench/fanout/*.c bench/*.c tests/kafka/*.c

format-check:
	clang-format --dry-run -Werror lib/*.[ch] producers/*.c broker/*.[ch] broker/*/*.[ch] consumers/*.[ch] tests/unit/*.[ch] tools/*.c bench/fanout/*.c bench/*.c tests/kafka/*.c

clean:
	rm -rf $(BUILD) $(BIN)
