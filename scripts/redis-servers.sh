#!/usr/bin/env bash
# Start or stop the throwaway redis-server nodes the tests and benchmarks use.
#   scripts/redis-servers.sh start [ports...]   (default: 6379 6380)
#   scripts/redis-servers.sh stop  [ports...]
# Nodes listen on 127.0.0.1 only, keep nothing on disk, and keep pid and log files in <repo>/.servers.
# Starting is idempotent: a port that already answers PING is reused as it is.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
servers_dir="${repo_dir}/.servers"
wait_seconds=10

usage() {
    echo "usage: $0 start|stop [ports...]" >&2
    exit 2
}

answers_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null || true)" = "PONG" ]
}

ensure_installed() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return
    fi
    echo "redis-server not found, installing it with apt-get" >&2
    local run_as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        run_as_root=(sudo)
    fi
    "${run_as_root[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${run_as_root[@]}" apt-get install -y redis-server
    # Debian's package may start a system-wide server on 6379 with persistence; ours replaces it.
    if command -v service >/dev/null 2>&1; then
        "${run_as_root[@]}" service redis-server stop >/dev/null 2>&1 || true
    fi
}

start_node() {
    local port="$1"
    if answers_ping "${port}"; then
        echo "redis on port ${port} is already running, reusing it"
        return
    fi
    redis-server --port "${port}" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "${servers_dir}/redis-${port}.pid" --logfile "${servers_dir}/redis-${port}.log" \
        --dir "${servers_dir}"
    local deadline=$((SECONDS + wait_seconds))
    until answers_ping "${port}"; do
        if [ "${SECONDS}" -ge "${deadline}" ]; then
            echo "redis on port ${port} did not answer PING within ${wait_seconds}s; see ${servers_dir}/redis-${port}.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "redis on port ${port} is up"
}

stop_node() {
    local port="$1"
    local pid_file="${servers_dir}/redis-${port}.pid"
    if [ ! -f "${pid_file}" ]; then
        # Not started by this script (a server that was already running is reused, never stopped).
        echo "redis on port ${port} was not started by this script, leaving it alone"
        return
    fi
    if ! answers_ping "${port}"; then
        echo "redis on port ${port} is not running"
        rm -f "${pid_file}"
        return
    fi
    redis-cli -h 127.0.0.1 -p "${port}" shutdown nosave >/dev/null 2>&1 || true
    local deadline=$((SECONDS + wait_seconds))
    while answers_ping "${port}"; do
        if [ "${SECONDS}" -ge "${deadline}" ]; then
            echo "redis on port ${port} did not stop within ${wait_seconds}s" >&2
            exit 1
        fi
        sleep 0.1
    done
    rm -f "${pid_file}"
    echo "redis on port ${port} is stopped"
}

[ $# -ge 1 ] || usage
action="$1"
shift
ports=("$@")
if [ ${#ports[@]} -eq 0 ]; then
    ports=(6379 6380)
fi

case "${action}" in
    start)
        ensure_installed
        mkdir -p "${servers_dir}"
        for port in "${ports[@]}"; do
            start_node "${port}"
        done
        ;;
    stop)
        command -v redis-cli >/dev/null 2>&1 || { echo "redis-cli not found, nothing to stop"; exit 0; }
        for port in "${ports[@]}"; do
            stop_node "${port}"
        done
        ;;
    *)
        usage
        ;;
esac
