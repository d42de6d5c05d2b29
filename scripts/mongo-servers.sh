#!/usr/bin/env bash
# Start or stop the MongoDB-compatible servers the mongo tests use: FerretDB v1.24.2 on
# its SQLite backend, one instance per port, each reporting itself as replica set rs<port>.
#
#   scripts/mongo-servers.sh start [ports...]   (default 27017 27018)
#   scripts/mongo-servers.sh stop  [ports...]
#   scripts/mongo-servers.sh build              (only build the binary; prints its path)
#
# The binary is built once into ${XDG_CACHE_HOME:-$HOME/.cache}/sergeant/ferretdb-v1.24.2/
# and needs only Go and the Go module proxy. `go install ...@v1.24.2` is not enough:
# FerretDB embeds build/version/version.txt, which the module zip leaves empty, and its
# binary panics at start-up when that file lacks a version. So the module source is copied
# to a writable directory, the version is written there and the command is built from it.
#
# Each start wipes the instance's data folder (<repo>/.servers/ferretdb-<port>/) so a test
# run begins clean; starting a port that is already running leaves it alone.
set -euo pipefail

FERRETDB_VERSION=v1.24.2
FERRETDB_MODULE=github.com/FerretDB/FerretDB
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVERS_DIR="$REPO_DIR/.servers"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/sergeant/ferretdb-$FERRETDB_VERSION"
FERRETDB_BIN="${SERGEANT_FERRETDB_BIN:-$CACHE_DIR/ferretdb}"
START_TIMEOUT_SECONDS=30
STOP_TIMEOUT_SECONDS=15

log() { echo "mongo-servers: $*" >&2; }

build_ferretdb() {
    if [[ -x "$FERRETDB_BIN" ]]; then
        return
    fi
    command -v go >/dev/null || { log "Go is needed to build FerretDB and is not on PATH"; exit 1; }
    mkdir -p "$CACHE_DIR"
    log "building FerretDB $FERRETDB_VERSION into $FERRETDB_BIN (once)"
    local module_dir work_dir
    # Run outside any Go module so the download does not touch a go.mod.
    module_dir=$(cd "$CACHE_DIR" && GOFLAGS=-mod=mod go mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    if [[ -z "$module_dir" || ! -d "$module_dir" ]]; then
        log "could not download $FERRETDB_MODULE@$FERRETDB_VERSION"
        exit 1
    fi
    work_dir=$(mktemp -d "$CACHE_DIR/source.XXXXXX")
    cp -R "$module_dir/." "$work_dir/"
    chmod -R u+w "$work_dir"
    echo "$FERRETDB_VERSION" >"$work_dir/build/version/version.txt"
    if ! (cd "$work_dir" && GOFLAGS=-buildvcs=false go build -trimpath -o "$FERRETDB_BIN.partial" ./cmd/ferretdb); then
        rm -rf "$work_dir"
        log "building FerretDB failed"
        exit 1
    fi
    rm -rf "$work_dir"
    mv "$FERRETDB_BIN.partial" "$FERRETDB_BIN"
}

pid_file() { echo "$SERVERS_DIR/ferretdb-$1.pid"; }

running_pid() {
    # Prints the pid of the instance on port $1 when it is alive.
    local file pid
    file=$(pid_file "$1")
    [[ -f "$file" ]] || return 1
    pid=$(cat "$file")
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_one() {
    local port=$1 data_dir="$SERVERS_DIR/ferretdb-$1" log_file="$SERVERS_DIR/ferretdb-$1.log" pid
    if pid=$(running_pid "$port"); then
        log "port $port already served by pid $pid"
        return
    fi
    if port_open "$port"; then
        log "port $port is taken by another process"
        exit 1
    fi
    rm -rf "$data_dir"
    mkdir -p "$data_dir/sqlite" "$data_dir/state"
    setsid "$FERRETDB_BIN" \
        --handler=sqlite \
        --sqlite-url="file:$data_dir/sqlite/" \
        --state-dir="$data_dir/state" \
        --listen-addr="127.0.0.1:$port" \
        --repl-set-name="rs$port" \
        --debug-addr=- \
        --telemetry=disable \
        --log-level=warn \
        </dev/null >"$log_file" 2>&1 &
    echo $! >"$(pid_file "$port")"
    local waited=0
    until port_open "$port"; do
        if ! running_pid "$port" >/dev/null; then
            log "FerretDB on port $port exited at start-up; see $log_file"
            tail -n 20 "$log_file" >&2 || true
            exit 1
        fi
        if ((waited >= START_TIMEOUT_SECONDS * 10)); then
            log "FerretDB on port $port did not listen within ${START_TIMEOUT_SECONDS}s; see $log_file"
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    log "FerretDB listening on 127.0.0.1:$port (replica set rs$port, pid $(cat "$(pid_file "$port")"))"
}

stop_one() {
    local port=$1 pid waited=0
    if ! pid=$(running_pid "$port"); then
        rm -f "$(pid_file "$port")"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT_SECONDS * 10)); then
            log "FerretDB on port $port (pid $pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$(pid_file "$port")"
    log "stopped FerretDB on port $port"
}

main() {
    local command=${1:-}
    shift || true
    local ports=("$@")
    if ((${#ports[@]} == 0)); then
        ports=(27017 27018)
    fi
    case "$command" in
    start)
        build_ferretdb
        mkdir -p "$SERVERS_DIR"
        for port in "${ports[@]}"; do start_one "$port"; done
        ;;
    stop)
        for port in "${ports[@]}"; do stop_one "$port"; done
        ;;
    build)
        build_ferretdb
        echo "$FERRETDB_BIN"
        ;;
    *)
        echo "usage: $0 start|stop [ports...] | build" >&2
        exit 2
        ;;
    esac
}

main "$@"
