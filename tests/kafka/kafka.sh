#!/usr/bin/env bash
# Real Apache Kafka (KRaft, single combined broker+controller) on loopback for the
# integration tests and benchmarks.  Jars come from Maven Central via tests/kafka/pom.xml.
#
#   kafka.sh fetch                          install java/mvn if missing, populate tests/kafka/lib
#   kafka.sh start DIR                      start a broker whose state lives in DIR; prints HOST:PORT
#   kafka.sh create-topics DIR name:parts…  create topics (idempotent), wait until they have leaders
#   kafka.sh stop DIR [--purge]             SIGTERM (bounded), then SIGKILL; --purge also deletes DIR's contents
#   kafka.sh status DIR                     exit 0 and print the bootstrap if running
#
# Environment: KAFKA_START_TIMEOUT (s, default 90), KAFKA_STOP_TIMEOUT (s, default 30),
#              KAFKA_HEAP (default -Xmx512m -Xms256m), KAFKA_LOG_LEVEL (root log4j level, default WARN),
#              KAFKA_WATCH_PID (stop the broker when that process exits).
# Everything listens on 127.0.0.1 only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
LIB="$HERE/lib"
POM="$HERE/pom.xml"
STAMP="$LIB/.complete"
# Jars that must be present for a usable lib/ (a partial copy is caught by the stamp, this is belt and braces).
KEY_JARS=(kafka_2.13-3.9.1.jar kafka-clients-3.9.1.jar kafka-tools-3.9.1.jar kafka-server-3.9.1.jar
          kafka-raft-3.9.1.jar kafka-metadata-3.9.1.jar slf4j-reload4j-1.7.36.jar scala-library-2.13.15.jar)

START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
HEAP="${KAFKA_HEAP:--Xmx512m -Xms256m}"
LOG_LEVEL="${KAFKA_LOG_LEVEL:-WARN}"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-64}"
}

# ---------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------
apt_install() {
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
        sudo=(sudo)
    fi
    log "installing $* with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

pom_sum() { sha256sum "$POM" | cut -d' ' -f1; }

# lib/ is complete when its stamp names the current pom.xml and every jar mvn copied is still there.
lib_complete() {
    [ -f "$STAMP" ] || return 1
    [ "$(head -n 1 "$STAMP")" = "$(pom_sum)" ] || return 1
    [ "$(wc -l <"$STAMP")" -gt "${#KEY_JARS[@]}" ] || return 1
    local j
    for j in "${KEY_JARS[@]}"; do [ -f "$LIB/$j" ] || return 1; done
    while read -r j; do [ -f "$LIB/$j" ] || return 1; done < <(tail -n +2 "$STAMP")
    return 0
}

cmd_fetch() {
    local pkgs=()
    command -v java >/dev/null || pkgs+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || pkgs+=(maven)
    [ "${#pkgs[@]}" -eq 0 ] || apt_install "${pkgs[@]}"
    lib_complete && return 0
    log "copying Kafka jars into $LIB (cached in ~/.m2)"
    local tmp="$HERE/lib.tmp.$$"
    rm -rf "$tmp"
    # Copy into a temporary directory and swap, so an interrupted run never leaves a half lib/.
    local mvnlog="$HERE/lib.tmp.$$.log"
    if ! (cd "$HERE" && mvn -q -B dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime \
              >"$mvnlog" 2>&1); then
        sed 's/\x1b\[[0-9;]*m//g' "$mvnlog" >&2
        rm -rf "$tmp" "$mvnlog"
        die "mvn dependency:copy-dependencies failed"
    fi
    rm -f "$mvnlog"
    local j
    for j in "${KEY_JARS[@]}"; do [ -f "$tmp/$j" ] || { rm -rf "$tmp"; die "mvn did not produce $j"; }; done
    { pom_sum; (cd "$tmp" && ls -1 -- *.jar); } >"$tmp/.complete"
    rm -rf "$LIB.old.$$"
    [ ! -e "$LIB" ] || mv "$LIB" "$LIB.old.$$"
    mv "$tmp" "$LIB"
    rm -rf "$LIB.old.$$"
}

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
need_dir() {   # need_dir DIR [--create]: absolute, symlink-free path of DIR
    [ -n "${1:-}" ] || usage
    if [ "${2:-}" = --create ]; then mkdir -p "$1"; fi
    [ -d "$1" ] || die "no such directory: $1"
    (cd "$1" && pwd -P)
}

# A free TCP port on 127.0.0.1 (bind to 0 and let the kernel choose), avoiding the ones given.
free_port() {
    python3 - "$@" <<'EOF'
import socket, sys
avoid = {int(a) for a in sys.argv[1:]}
for _ in range(100):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    if p not in avoid:
        print(p)
        break
else:
    sys.exit("no free port")
EOF
}

# Free for a listener: SO_REUSEADDR as Kafka's own ServerSocket sets it, so connections of the
# previous run still in TIME_WAIT do not move a restarted broker to another port.
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# Kafka cluster ids are 16 random bytes, base64url without padding, never starting with '-'.
cluster_id() {
    python3 -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

# pid of the broker for DIR if it is alive and really is our java process.
running_pid() {
    local dir="$1" pid
    [ -f "$dir/pid" ] || return 1
    pid="$(cat "$dir/pid" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$dir/server.properties" || return 1
    echo "$pid"
}

java_tool() {
    # Short-lived JVMs for CLI tools: small heap, fast start, quiet logging.
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
         -Dlog4j.configuration="file:$HERE/tools-log4j.properties" \
         -cp "$LIB/*" "$@"
}

write_tools_log4j() {
    [ -f "$HERE/tools-log4j.properties" ] && return 0
    cat >"$HERE/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

broker_answers() {
    local bootstrap="$1"
    if command -v kcat >/dev/null; then
        # -L without -t: listing all topics never auto-creates one.
        kcat -L -b "$bootstrap" -m 2 -X socket.connection.setup.timeout.ms=2000 2>/dev/null \
            | grep -q "^ *broker 1 at $bootstrap"
    else
        (exec 3<>"/dev/tcp/${bootstrap%:*}/${bootstrap##*:}") 2>/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------
write_config() {
    local dir="$1" port="$2" cport="$3"
    cat >"$dir/server.properties" <<EOF
# generated by tests/kafka/kafka.sh — single-node KRaft (combined broker+controller) on loopback
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=1@127.0.0.1:$cport
log.dirs=$dir/data
num.partitions=6
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=4
EOF
    cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=$LOG_LEVEL, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# keep the milestones so kafka.log shows startup and shutdown
log4j.logger.kafka.Kafka\$=INFO
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.server.ControllerServer=INFO
log4j.logger.kafka.server.SharedServer=INFO
EOF
}

fail_start() {
    local dir="$1" msg="$2" pid
    log "$msg"
    if pid="$(running_pid "$dir")"; then
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
    if [ -f "$dir/kafka.log" ]; then
        log "---- tail of $dir/kafka.log ----"
        tail -n 40 "$dir/kafka.log" >&2
    fi
    exit 1
}

# KAFKA_WATCH_PID=N: stop the broker when process N exits (so a test runner killed with
# SIGKILL does not leave a JVM behind).  A detached loop polls both pids every second.
start_watchdog() {
    local dir="$1" pid="$2" watch="${KAFKA_WATCH_PID:-}"
    [ -n "$watch" ] || return 0
    [[ "$watch" =~ ^[0-9]+$ ]] || die "KAFKA_WATCH_PID must be a pid"
    (
        trap '' HUP INT
        while kill -0 "$watch" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
        if kill -0 "$pid" 2>/dev/null && [ "$(running_pid "$dir" 2>/dev/null)" = "$pid" ]; then
            echo "kafka.sh watchdog: process $watch is gone; stopping the broker" >>"$dir/kafka.log"
            "$HERE/kafka.sh" stop "$dir" >>"$dir/kafka.log" 2>&1
        fi
    ) </dev/null >/dev/null 2>&1 &
}

cmd_start() {
    local dir pid
    dir="$(need_dir "${1:-}" --create)"
    if pid="$(running_pid "$dir")"; then
        log "already running (pid $pid)"
        cat "$dir/bootstrap"
        return 0
    fi
    cmd_fetch
    write_tools_log4j
    command -v python3 >/dev/null || die "python3 is needed (free ports, cluster id)"

    local t0=$SECONDS attempt port cport id
    for attempt in 1 2 3; do
        # Reuse the ports of a previous run on this DIR when they are still free.
        port="" cport=""
        if [ -f "$dir/ports" ]; then
            read -r port cport <"$dir/ports" || true
            { port_free "$port" && port_free "$cport"; } || port="" cport=""
        fi
        if [ -z "$port" ]; then
            port="$(free_port)"
            cport="$(free_port "$port")"
        fi
        echo "$port $cport" >"$dir/ports"
        write_config "$dir" "$port" "$cport"

        if [ ! -f "$dir/data/meta.properties" ]; then
            id="$(cluster_id)"
            mkdir -p "$dir/data"
            java_tool kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" --ignore-formatted \
                >>"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "storage format failed"; }
        fi

        : >"$dir/kafka.log"
        (
            cd "$dir"
            exec java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
                -Dkafka.logs.dir="$dir" -Dlog4j.configuration="file:$dir/log4j.properties" \
                -cp "$LIB/*" kafka.Kafka "$dir/server.properties"
        ) </dev/null >>"$dir/kafka.log" 2>&1 &
        pid=$!
        echo "$pid" >"$dir/pid"
        echo "127.0.0.1:$port" >"$dir/bootstrap"

        local deadline=$((SECONDS + START_TIMEOUT)) died=0
        while :; do
            if ! kill -0 "$pid" 2>/dev/null; then died=1; break; fi
            if broker_answers "127.0.0.1:$port"; then
                start_watchdog "$dir" "$pid"
                log "broker up at 127.0.0.1:$port (controller $cport, pid $pid) after $((SECONDS - t0)) s"
                echo "127.0.0.1:$port"
                return 0
            fi
            [ "$SECONDS" -lt "$deadline" ] || fail_start "$dir" "broker did not answer within ${START_TIMEOUT}s"
            sleep 0.3
        done
        wait "$pid" 2>/dev/null || true
        rm -f "$dir/pid"
        # Lost the race for a port between choosing and binding: choose again.
        if [ "$died" = 1 ] && grep -q 'Address already in use' "$dir/kafka.log"; then
            log "port taken before the broker bound it; retrying ($attempt)"
            rm -f "$dir/ports"
            continue
        fi
        fail_start "$dir" "broker exited during startup"
    done
    fail_start "$dir" "could not bind free ports after 3 attempts"
}

# ---------------------------------------------------------------------------------------------
# create-topics
# ---------------------------------------------------------------------------------------------
cmd_create_topics() {
    local dir bootstrap spec name parts
    dir="$(need_dir "${1:-}")"; shift
    [ "$#" -gt 0 ] || usage
    running_pid "$dir" >/dev/null || die "no broker running in $dir"
    bootstrap="$(cat "$dir/bootstrap")"
    write_tools_log4j
    local pids=() specs=()
    for spec in "$@"; do
        name="${spec%%:*}"
        parts="${spec#*:}"
        [ "$name" != "$spec" ] || parts=6
        [[ "$parts" =~ ^[1-9][0-9]*$ ]] && [ -n "$name" ] || die "bad topic spec '$spec' (want name:partitions)"
        # One JVM per topic, in parallel (TopicCommand creates one topic per run).
        java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
            --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 \
            >"$dir/topic-$name.log" 2>&1 &
        pids+=("$!"); specs+=("$spec")
    done
    local i rc=0
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            log "creating ${specs[$i]} failed:"; cat "$dir/topic-${specs[$i]%%:*}.log" >&2; rc=1
        fi
    done
    [ "$rc" = 0 ] || exit 1
    # Wait (bounded) until every partition has a leader, and check partition counts.
    command -v kcat >/dev/null || return 0
    local deadline=$((SECONDS + 60)) md have
    for spec in "$@"; do
        name="${spec%%:*}"; parts="${spec#*:}"; [ "$name" != "$spec" ] || parts=6
        while :; do
            md="$(kcat -L -b "$bootstrap" -t "$name" -m 5 2>/dev/null || true)"
            have="$(printf '%s\n' "$md" | grep -c '^ *partition [0-9]*, leader 1,' || true)"
            if printf '%s\n' "$md" | grep -q "^ *topic \"$name\" with $parts partitions" && [ "$have" = "$parts" ]; then
                break
            fi
            if printf '%s\n' "$md" | grep -q "^ *topic \"$name\" with [0-9]* partitions" \
               && ! printf '%s\n' "$md" | grep -q "^ *topic \"$name\" with $parts partitions"; then
                log "warning: topic $name exists with a different partition count:"
                printf '%s\n' "$md" | grep "topic \"$name\"" >&2
                break
            fi
            [ "$SECONDS" -lt "$deadline" ] || die "topic $name has no leaders after 60 s"
            sleep 0.2
        done
        log "topic $name ready"
    done
}

# ---------------------------------------------------------------------------------------------
# stop / status
# ---------------------------------------------------------------------------------------------
cmd_stop() {
    local dir pid purge=0
    [ -n "${1:-}" ] || usage
    [ -d "$1" ] || { log "not running ($1 does not exist)"; return 0; }
    dir="$(need_dir "$1")"; shift
    [ "${1:-}" != "--purge" ] || purge=1
    if pid="$(running_pid "$dir")"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + STOP_TIMEOUT))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "broker $pid ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        fi
        log "stopped (pid $pid)"
    else
        log "not running in $dir"
    fi
    rm -f "$dir/pid"
    if [ "$purge" = 1 ]; then
        rm -rf "$dir/data" "$dir/server.properties" "$dir/log4j.properties" "$dir/kafka.log" \
               "$dir/format.log" "$dir/bootstrap" "$dir/ports" "$dir"/topic-*.log
        rmdir "$dir" 2>/dev/null || true
    fi
}

cmd_status() {
    local dir pid
    dir="$(need_dir "${1:-}")"
    pid="$(running_pid "$dir")" || { log "not running"; exit 1; }
    broker_answers "$(cat "$dir/bootstrap")" || { log "pid $pid alive but broker not answering"; exit 1; }
    cat "$dir/bootstrap"
}

cmd="${1:-}"; shift || true
case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    create-topics) cmd_create_topics "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h|--help|help) usage 0 ;;
    "") usage ;;
    *) log "unknown command '$cmd'"; usage ;;
esac
