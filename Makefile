# firehose: one entry point. `make` builds bin/; `make test` installs what is missing, builds,
# and runs unit tests (plain and under ASan+UBSan) and integration tests against real Kafka.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   ?= build
BIN     ?= bin
PYTHON  ?= python3

PKGS      := rdkafka jansson libmicrohttpd sqlite3 libcurl libcrypto
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

.PHONY: fanout-tools all deps run test unit unit-asan integration bench docs install uninstall clean format format-check
all: $(PROGRAMS)

# ---- dependencies: installed on a fresh machine when missing --------------------------------
APT_PKGS := librdkafka-dev libjansson-dev libssl-dev libmicrohttpd-dev libcurl4-openssl-dev \
            libsqlite3-dev pkg-config kcat clang libclang-rt-14-dev openjdk-17-jre-headless maven \
            chromium nodejs npm docker-compose
deps:
	@missing=""; \
	for p in rdkafka jansson libmicrohttpd libcurl sqlite3 libcrypto; do \
	  pkg-config --exists $$p 2>/dev/null || missing=1; done; \
	for c in kcat clang java mvn pkg-config chromium node npm docker-compose; do command -v $$c >/dev/null || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing Debian packages: $(APT_PKGS)"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	fi
	@$(PYTHON) -c "import jsonschema, referencing, pytest, requests, websockets, yaml, buildbot, buildbot_worker, confluent_kafka" 2>/dev/null || \
	  $(PYTHON) -m pip install -q jsonschema referencing pytest requests websockets pyyaml buildbot buildbot-worker confluent-kafka
	@[ -d tests/dashboard/node_modules/playwright-core ] || \
	  (cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error)

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

BROKER_SRC := $(sort $(wildcard broker/*.c))
$(BIN)/firehose-broker: $(BROKER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_embed.o $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

# consumers/: firehose-replay and firehose-tail, and the pieces they share (unit-tested too)
CONSUMERS_LIB_SRC := consumers/cli_filter.c consumers/jscan.c consumers/summary.c consumers/ws_client.c
$(BUILD)/libconsumers.a: $(CONSUMERS_LIB_SRC:%.c=$(BUILD)/%.o)
	ar rcs $@ $^

$(BIN)/firehose-replay: $(BUILD)/consumers/firehose_replay.o $(BUILD)/libconsumers.a $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/firehose-tail: $(BUILD)/consumers/firehose_tail.o $(BUILD)/libconsumers.a $(BUILD)/libfirehose.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%.o: ALL_CFLAGS += -Iconsumers

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

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- tests ----------------------------------------------------------------------------------
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

unit: $(UNIT_BIN)
	$(UNIT_BIN)

# The same unit tests, built with clang under AddressSanitizer + UndefinedBehaviorSanitizer.
unit-asan:
	$(MAKE) --no-print-directory CC=clang BUILD=build/asan BIN=build/asan/bin SANFLAGS="$(SAN)" \
	  CFLAGS="-O1 -g" build/asan/unit-tests build/asan/bin/firehose-emit build/asan/bin/firehose-sim \
	  build/asan/bin/firehose-broker build/asan/bin/firehose-replay build/asan/bin/firehose-tail
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build/asan/unit-tests

integration: all
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

test: deps
	$(MAKE) --no-print-directory all
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory unit-asan
	$(MAKE) --no-print-directory integration

bench: deps all
	bash bench/ingest.sh
	bash bench/sim.sh
	bash bench/rest.sh
	bash bench/replay.sh
	bash bench/fanout.sh

docs: all
	tools/gen-config-doc.sh bin > docs/configuration.md

# ---- run: the broker on the embedded Kafka, with demo traffic -------------------------------
run: deps all
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
	clang-format -i lib/*.[ch] producers/*.c broker/*.c consumers/*.[ch] tests/unit/*.[ch] tools/*.c bench/fanout/*.c

format-check:
	clang-format --dry-run -Werror lib/*.[ch] producers/*.c broker/*.c consumers/*.[ch] tests/unit/*.[ch] tools/*.c bench/fanout/*.c

clean:
	rm -rf $(BUILD) $(BIN)
