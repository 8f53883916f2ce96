#!/usr/bin/env bash
# Real Apache Kafka (KRaft, combined broker+controller nodes) on loopback for the integration
# tests and benchmarks.  Jars come from Maven Central via tests/kafka/pom.xml.
#
#   kafka.sh fetch                          install java/mvn if missing, populate tests/kafka/lib
#   kafka.sh start DIR                      start a broker whose state lives in DIR; prints HOST:PORT
#                                           (DIR may be one node of a cluster: it restarts that node)
#   kafka.sh start-cluster DIR [N]          N nodes (default 3) in DIR/node1..N, replication N (at most 3),
#                                           min.insync.replicas 2 (1 below 3 nodes); prints HOST:PORT,...
#   kafka.sh create-topics DIR name:parts[@leader][+key=value…]…
#                                           create topics (idempotent), wait until they have leaders;
#                                           @leader (cluster) makes that node the preferred leader of every partition;
#                                           +key=value: a topic config (e.g. +cleanup.policy=compact)
#   kafka.sh elect-leaders DIR              preferred leader election for every partition (cluster)
#   kafka.sh stop DIR [--purge]             SIGTERM (bounded), then SIGKILL; --purge also deletes DIR's contents
#                                           (a cluster DIR: every node)
#   kafka.sh status DIR                     exit 0 and print the bootstrap if running
#
# Environment: KAFKA_START_TIMEOUT (s, default 90), KAFKA_STOP_TIMEOUT (s, default 30),
#              KAFKA_HEAP (default -Xmx512m -Xms256m; cluster nodes -Xmx256m -Xms128m),
#              KAFKA_GC (the single node's collector options, default
#              "-XX:+UseG1GC -XX:MaxGCPauseMillis=20"), KAFKA_JVM_OPTS (more JVM options, every node,
#              e.g. -Xlog:gc:file=/tmp/gc.log),
#              KAFKA_LOG_LEVEL (root log4j level, default WARN),
#              KAFKA_WATCH_PID (stop the broker when that process exits),
#              KAFKA_SERVER_PROPS (extra server.properties lines, key=value separated by newlines
#              or spaces, appended last so they win; e.g. log.retention.check.interval.ms=500).
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
    sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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

# A cluster node's DIR/node.conf (written by start-cluster) holds key=value lines: node_id,
# nodes, replication, min_isr, voters, cluster_id.  A single broker has none.
conf_get() { sed -n "s/^$2=//p" "$1/node.conf" 2>/dev/null | head -n 1; }
node_id() { local id; id="$(conf_get "$1" node_id)"; echo "${id:-1}"; }
# A cluster's top DIR lists its node directories, one a line, in DIR/cluster.
cluster_nodes() { cat "$1/cluster"; }

broker_answers() {   # broker_answers HOST:PORT [NODE_ID]
    local bootstrap="$1" id="${2:-1}"
    if command -v kcat >/dev/null; then
        # -L without -t: listing all topics never auto-creates one.
        kcat -L -b "$bootstrap" -m 2 -X socket.connection.setup.timeout.ms=2000 2>/dev/null \
            | grep -q "^ *broker $id at $bootstrap"
    else
        (exec 3<>"/dev/tcp/${bootstrap%:*}/${bootstrap##*:}") 2>/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------
write_config() {
    local dir="$1" port="$2" cport="$3" id=1 voters rf=1 isr=1 kind="single-node" extra=""
    voters="1@127.0.0.1:$cport"
    if [ -f "$dir/node.conf" ]; then
        id="$(node_id "$dir")" voters="$(conf_get "$dir" voters)"
        rf="$(conf_get "$dir" replication)" isr="$(conf_get "$dir" min_isr)"
        kind="node $id of a $(conf_get "$dir" nodes)-node"
        # A killed node is fenced after the session timeout, and only then do its partitions get
        # new leaders: keep that short for fault tests.
        extra="broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500"
    fi
    cat >"$dir/server.properties" <<EOF
# generated by tests/kafka/kafka.sh — $kind KRaft (combined broker+controller) on loopback
process.roles=broker,controller
node.id=$id
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=$voters
log.dirs=$dir/data
num.partitions=6
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=4
$extra
$(printf '%s\n' ${KAFKA_SERVER_PROPS:-})
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

# format_node DIR CLUSTER_ID: formats DIR's log directory once.
format_node() {
    local dir="$1" id="$2"
    [ ! -f "$dir/data/meta.properties" ] || return 0
    mkdir -p "$dir/data"
    java_tool kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" --ignore-formatted \
        >>"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "storage format of $dir failed"; }
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

# launch_node DIR PORT: starts the JVM of DIR/server.properties in the background; records its
# pid and bootstrap.  Cluster nodes get a small heap and the serial collector (three JVMs share
# two cores in the tests).
launch_node() {
    local dir="$1" port="$2" jvm
    if [ -f "$dir/node.conf" ]; then
        jvm="${KAFKA_HEAP:--Xmx256m -Xms128m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
    else
        jvm="$HEAP ${KAFKA_GC:--XX:+UseG1GC -XX:MaxGCPauseMillis=20}"
    fi
    jvm="$jvm ${KAFKA_JVM_OPTS:-}"
    : >"$dir/kafka.log"
    (
        cd "$dir"
        # shellcheck disable=SC2086 # $jvm is a list of JVM options
        exec java $jvm -Djava.awt.headless=true \
            -Dkafka.logs.dir="$dir" -Dlog4j.configuration="file:$dir/log4j.properties" \
            -cp "$LIB/*" kafka.Kafka "$dir/server.properties"
    ) </dev/null >>"$dir/kafka.log" 2>&1 &
    echo "$!" >"$dir/pid"
    echo "127.0.0.1:$port" >"$dir/bootstrap"
}

# await_node DIR DEADLINE: 0 once DIR's broker answers, 1 when its JVM died, 2 past DEADLINE
# (a value of $SECONDS).
await_node() {
    local dir="$1" deadline="$2" pid id
    pid="$(cat "$dir/pid")" id="$(node_id "$dir")"
    while :; do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; rm -f "$dir/pid"; return 1; }
        if broker_answers "$(cat "$dir/bootstrap")" "$id"; then
            start_watchdog "$dir" "$pid"
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || return 2
        sleep 0.3
    done
}

start_prereqs() {
    cmd_fetch
    write_tools_log4j
    command -v python3 >/dev/null || die "python3 is needed (free ports, cluster id)"
}

# Restarts one node of a cluster on its own ports (the others know it by them).
restart_node() {
    local dir="$1" port cport t0=$SECONDS deadline
    read -r port cport <"$dir/ports" || die "$dir/ports is missing"
    deadline=$((SECONDS + 10))
    until port_free "$port" && port_free "$cport"; do
        [ "$SECONDS" -lt "$deadline" ] || die "ports $port/$cport of $dir are still taken"
        sleep 0.2
    done
    write_config "$dir" "$port" "$cport"
    format_node "$dir" "$(conf_get "$dir" cluster_id)"
    launch_node "$dir" "$port"
    local rc=0
    await_node "$dir" $((SECONDS + START_TIMEOUT)) || rc=$?
    [ "$rc" = 0 ] || fail_start "$dir" "node $(node_id "$dir") did not come back (rc $rc)"
    log "node $(node_id "$dir") up at 127.0.0.1:$port after $((SECONDS - t0)) s"
    echo "127.0.0.1:$port"
}

cmd_start() {
    local dir pid
    dir="$(need_dir "${1:-}" --create)"
    [ ! -f "$dir/cluster" ] || die "$dir is a cluster: use start-cluster (or start one of its nodes)"
    if pid="$(running_pid "$dir")"; then
        log "already running (pid $pid)"
        cat "$dir/bootstrap"
        return 0
    fi
    start_prereqs
    if [ -f "$dir/node.conf" ]; then
        restart_node "$dir"
        return 0
    fi

    local t0=$SECONDS attempt port cport rc
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
        format_node "$dir" "$(cluster_id)"
        launch_node "$dir" "$port"
        rc=0
        await_node "$dir" $((SECONDS + START_TIMEOUT)) || rc=$?
        if [ "$rc" = 0 ]; then
            log "broker up at 127.0.0.1:$port (controller $cport, pid $(cat "$dir/pid")) after $((SECONDS - t0)) s"
            echo "127.0.0.1:$port"
            return 0
        fi
        [ "$rc" = 1 ] || fail_start "$dir" "broker did not answer within ${START_TIMEOUT}s"
        # Lost the race for a port between choosing and binding: choose again.
        if grep -q 'Address already in use' "$dir/kafka.log"; then
            log "port taken before the broker bound it; retrying ($attempt)"
            rm -f "$dir/ports"
            continue
        fi
        fail_start "$dir" "broker exited during startup"
    done
    fail_start "$dir" "could not bind free ports after 3 attempts"
}

# start-cluster DIR [N]: N combined nodes in DIR/node1..N on loopback, formatted with one cluster
# id and started together (a node answers only once a majority of the controllers is up).
cmd_start_cluster() {
    local dir n="${2:-3}" k
    dir="$(need_dir "${1:-}" --create)"
    [[ "$n" =~ ^[1-9]$ ]] || die "start-cluster: N must be 1-9"
    [ -f "$dir/cluster_id" ] || cluster_id >"$dir/cluster_id"
    local all_up=1 boot=()
    for k in $(seq 1 "$n"); do running_pid "$dir/node$k" >/dev/null 2>&1 || all_up=0; done
    if [ "$all_up" = 1 ] && [ -f "$dir/bootstrap" ]; then
        log "cluster already running"
        cat "$dir/bootstrap"
        return 0
    fi
    start_prereqs
    local t0=$SECONDS attempt voters ports=() cports=() avoid=() port cport node
    for attempt in 1 2 3; do
        ports=() cports=() avoid=() voters=""
        for k in $(seq 1 "$n"); do
            node="$dir/node$k"
            mkdir -p "$node"
            port="" cport=""
            if [ -f "$node/ports" ]; then
                read -r port cport <"$node/ports" || true
                { port_free "$port" && port_free "$cport"; } || port="" cport=""
            fi
            [ -n "$port" ] || { port="$(free_port "${avoid[@]}")"; cport="$(free_port "${avoid[@]}" "$port")"; }
            avoid+=("$port" "$cport")
            ports+=("$port") cports+=("$cport")
            voters="${voters:+$voters,}$k@127.0.0.1:$cport"
        done
        boot=()
        for k in $(seq 1 "$n"); do
            node="$dir/node$k"
            echo "${ports[$((k - 1))]} ${cports[$((k - 1))]}" >"$node/ports"
            cat >"$node/node.conf" <<EOF
node_id=$k
nodes=$n
replication=$((n < 3 ? n : 3))
min_isr=$((n < 3 ? 1 : 2))
voters=$voters
cluster_id=$(cat "$dir/cluster_id")
EOF
            write_config "$node" "${ports[$((k - 1))]}" "${cports[$((k - 1))]}"
            boot+=("127.0.0.1:${ports[$((k - 1))]}")
        done
        # Listed before any JVM starts, so `stop DIR` finds every node whatever happens next.
        (for k in $(seq 1 "$n"); do echo "$dir/node$k"; done) >"$dir/cluster"
        # Formatting is a JVM per node: in parallel.
        local fpids=()
        for k in $(seq 1 "$n"); do
            (format_node "$dir/node$k" "$(cat "$dir/cluster_id")") &
            fpids+=("$!")
        done
        for k in "${fpids[@]}"; do wait "$k" || die "formatting failed"; done
        for k in $(seq 1 "$n"); do
            running_pid "$dir/node$k" >/dev/null 2>&1 || launch_node "$dir/node$k" "${ports[$((k - 1))]}"
        done
        local deadline=$((SECONDS + START_TIMEOUT)) rc bad=0
        for k in $(seq 1 "$n"); do
            rc=0
            await_node "$dir/node$k" "$deadline" || rc=$?
            [ "$rc" = 0 ] || { bad=$k; break; }
        done
        if [ "$bad" = 0 ]; then
            (IFS=,; echo "${boot[*]}") >"$dir/bootstrap"
            log "$n-node cluster up at $(cat "$dir/bootstrap") after $((SECONDS - t0)) s"
            cat "$dir/bootstrap"
            return 0
        fi
        for k in $(seq 1 "$n"); do
            if [ -f "$dir/node$k/pid" ]; then kill -KILL "$(cat "$dir/node$k/pid")" 2>/dev/null || true; fi
        done
        if [ "$rc" = 1 ] && grep -q 'Address already in use' "$dir/node$bad/kafka.log"; then
            log "a port was taken before node $bad bound it; retrying ($attempt)"
            for k in $(seq 1 "$n"); do rm -f "$dir/node$k/ports" "$dir/node$k/pid"; done
            sleep 1
            continue
        fi
        fail_start "$dir/node$bad" "node $bad did not start (rc $rc)"
    done
    die "could not bind free ports after 3 attempts"
}

# ---------------------------------------------------------------------------------------------
# create-topics, elect-leaders
# ---------------------------------------------------------------------------------------------
# cluster_info DIR: sets BOOTSTRAP, NODES, RF, MIN_ISR for a single broker's DIR or a cluster's.
cluster_info() {
    local dir="$1" k up=0
    if [ -f "$dir/cluster" ]; then
        BOOTSTRAP="$(cat "$dir/bootstrap")"
        local first
        first="$(head -n 1 "$dir/cluster")"
        NODES="$(conf_get "$first" nodes)" RF="$(conf_get "$first" replication)"
        MIN_ISR="$(conf_get "$first" min_isr)"
        while read -r k; do running_pid "$k" >/dev/null && up=1; done < <(cluster_nodes "$dir")
        [ "$up" = 1 ] || die "no node of the cluster in $dir is running"
    else
        running_pid "$dir" >/dev/null || die "no broker running in $dir"
        BOOTSTRAP="$(cat "$dir/bootstrap")" NODES=1 RF=1 MIN_ISR=1
    fi
}

# replica_assignment PARTS LEADER: "L:a:b,L:b:a,..." — LEADER first, the others rotating.
replica_assignment() {
    local parts="$1" leader="$2" p k out="" row others=()
    for k in $(seq 1 "$NODES"); do [ "$k" = "$leader" ] || others+=("$k"); done
    for p in $(seq 0 $((parts - 1))); do
        row="$leader"
        for k in $(seq 0 $((RF - 2))); do row="$row:${others[$(((p + k) % ${#others[@]}))]}"; done
        out="${out:+$out,}$row"
    done
    echo "$out"
}

cmd_create_topics() {
    local dir spec name parts leader
    dir="$(need_dir "${1:-}")"; shift
    [ "$#" -gt 0 ] || usage
    cluster_info "$dir"
    write_tools_log4j
    # With tests/kafka/create_topics.c built (`make integration` builds it), one CreateTopics
    # request through librdkafka; otherwise one TopicCommand JVM per topic, in parallel.
    local pids=() specs=() how tool="${KAFKA_CREATE_TOPICS:-$HERE/../../build/tests/create_topics}" args=() extra topic_cfg sfx
    [ -x "$tool" ] || tool=""
    for spec in "$@"; do
        # +key=value suffixes: topic configs
        topic_cfg=() sfx=""
        extra="${spec#*+}"
        if [ "$extra" != "$spec" ]; then
            sfx="+$extra"
            spec="${spec%%+*}"
            local kv
            IFS='+' read -r -a kvs <<<"$extra"
            for kv in "${kvs[@]}"; do topic_cfg+=(--config "$kv"); done
        fi
        name="${spec%%:*}"
        parts="${spec#*:}"
        [ "$name" != "$spec" ] || parts=6
        leader="${parts#*@}"
        [ "$leader" != "$parts" ] || leader=""
        parts="${parts%%@*}"
        [[ "$parts" =~ ^[1-9][0-9]*$ ]] && [ -n "$name" ] || die "bad topic spec '$spec' (want name:partitions[@leader])"
        if [ -n "$leader" ]; then
            [[ "$leader" =~ ^[1-9]$ ]] && [ "$leader" -le "$NODES" ] || die "bad leader in '$spec'"
            how=(--replica-assignment "$(replica_assignment "$parts" "$leader")")
            args+=("$name:$parts:@${how[1]}$sfx")
        else
            how=(--partitions "$parts" --replication-factor "$RF")
            args+=("$name:$parts:$RF$sfx")
        fi
        [ -z "$tool" ] || continue
        java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
            --create --if-not-exists --topic "$name" "${how[@]}" --config "min.insync.replicas=$MIN_ISR" \
            ${topic_cfg[@]+"${topic_cfg[@]}"} \
            >"$dir/topic-$name.log" 2>&1 &
        pids+=("$!"); specs+=("$spec")
    done
    local i rc=0
    if [ -n "$tool" ]; then
        "$tool" "$BOOTSTRAP" --config "min.insync.replicas=$MIN_ISR" "${args[@]}" || rc=1
    fi
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            log "creating ${specs[$i]} failed:"; cat "$dir/topic-${specs[$i]%%:*}.log" >&2; rc=1
        fi
    done
    [ "$rc" = 0 ] || exit 1
    # Wait (bounded) until every partition has a leader (the one asked for, if any), and check
    # partition counts.
    command -v kcat >/dev/null || return 0
    local deadline=$((SECONDS + 60)) md have want
    for spec in "$@"; do
        spec="${spec%%+*}"
        name="${spec%%:*}"; parts="${spec#*:}"; [ "$name" != "$spec" ] || parts=6
        leader="${parts#*@}"; [ "$leader" != "$parts" ] || leader='[0-9]*'
        parts="${parts%%@*}"
        while :; do
            md="$(kcat -L -b "$BOOTSTRAP" -t "$name" -m 5 2>/dev/null || true)"
            have="$(printf '%s\n' "$md" | grep -c "^ *partition [0-9]*, leader $leader," || true)"
            if printf '%s\n' "$md" | grep -q "^ *topic \"$name\" with $parts partitions" && [ "$have" = "$parts" ]; then
                break
            fi
            # (an unknown topic is listed "with 0 partitions: Broker: Unknown topic": not yet)
            if printf '%s\n' "$md" | grep -q "^ *topic \"$name\" with [1-9][0-9]* partitions:\$" \
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

# Moves every partition's leadership to its preferred replica (the first of its assignment);
# fails when a preferred replica is not in sync (wait for the ISR first).
cmd_elect_leaders() {
    local dir out
    dir="$(need_dir "${1:-}")"
    cluster_info "$dir"
    write_tools_log4j
    out="$(java_tool org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$BOOTSTRAP" \
               --election-type PREFERRED --all-topic-partitions 2>&1)" \
        || { printf '%s\n' "$out" >&2; die "leader election failed"; }
    [ -z "$out" ] || log "$out"
}

# ---------------------------------------------------------------------------------------------
# stop / status
# ---------------------------------------------------------------------------------------------
# stop_pids DIR...: SIGTERM the brokers of every DIR at once, SIGKILL what is left after
# KAFKA_STOP_TIMEOUT.
stop_dirs() {
    local d pid pids=() dirs=()
    for d in "$@"; do
        if pid="$(running_pid "$d")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid") dirs+=("$d")
        else
            log "not running in $d"
        fi
    done
    local deadline=$((SECONDS + STOP_TIMEOUT)) alive i
    while :; do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 1 ] && [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.2
    done
    for i in "${!pids[@]}"; do
        pid="${pids[$i]}"
        if kill -0 "$pid" 2>/dev/null; then
            log "broker $pid ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
        fi
        log "stopped (pid $pid)"
    done
    for d in "$@"; do rm -f "$d/pid"; done
}

purge_dir() {
    local dir="$1"
    rm -rf "$dir/data" "$dir/server.properties" "$dir/log4j.properties" "$dir/kafka.log" \
           "$dir/format.log" "$dir/bootstrap" "$dir/ports" "$dir/node.conf" "$dir"/topic-*.log
    rmdir "$dir" 2>/dev/null || true
}

cmd_stop() {
    local dir purge=0 nodes=() k
    [ -n "${1:-}" ] || usage
    [ -d "$1" ] || { log "not running ($1 does not exist)"; return 0; }
    dir="$(need_dir "$1")"; shift
    [ "${1:-}" != "--purge" ] || purge=1
    if [ -f "$dir/cluster" ]; then
        mapfile -t nodes < <(cluster_nodes "$dir")
    else
        nodes=("$dir")
    fi
    stop_dirs "${nodes[@]}"
    if [ "$purge" = 1 ]; then
        for k in "${nodes[@]}"; do [ "$k" = "$dir" ] || purge_dir "$k"; done
        rm -f "$dir/cluster" "$dir/cluster_id"
        purge_dir "$dir"
    fi
}

cmd_status() {
    local dir pid k
    dir="$(need_dir "${1:-}")"
    if [ -f "$dir/cluster" ]; then
        while read -r k; do
            pid="$(running_pid "$k")" || { log "$k not running"; exit 1; }
            broker_answers "$(cat "$k/bootstrap")" "$(node_id "$k")" || { log "$k: pid $pid alive but not answering"; exit 1; }
        done < <(cluster_nodes "$dir")
        cat "$dir/bootstrap"
        return 0
    fi
    pid="$(running_pid "$dir")" || { log "not running"; exit 1; }
    broker_answers "$(cat "$dir/bootstrap")" "$(node_id "$dir")" || { log "pid $pid alive but broker not answering"; exit 1; }
    cat "$dir/bootstrap"
}

cmd="${1:-}"; shift || true
case "$cmd" in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    start-cluster) cmd_start_cluster "$@" ;;
    create-topics) cmd_create_topics "$@" ;;
    elect-leaders) cmd_elect_leaders "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h|--help|help) usage 0 ;;
    "") usage ;;
    *) log "unknown command '$cmd'"; usage ;;
esac
