#!/usr/bin/env bash
# Measure sergeant against the task queues people would otherwise pick; writes benchmarks/RESULTS.md.
#   bash benchmarks/run.sh [--quick] [--only NAME...] [--runs N] [--tasks N]
# Sets up the project venv (scripts/bootstrap.sh), one venv per peer under benchmarks/.venvs/
# from the pins in benchmarks/peers/, the benchmark's own redis-server nodes (ports 6390 and 6391,
# pinned to one core so the figures do not flip between core layouts) and, unless --only leaves
# it out, a FerretDB node on port 27027 for the mongo rows. Then runs benchmarks/bench.py.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench_dir="${repo_dir}/benchmarks"
server_core="${BENCH_SERVER_CORE:-1}"
redis_ports=("${BENCH_REDIS_PORT_1:-6390}" "${BENCH_REDIS_PORT_2:-6391}")
mongo_port="${BENCH_MONGO_PORT:-27027}"
export BENCH_SERVER_CORE="${server_core}"

log() { echo "benchmarks: $*" >&2; }

wants() {
    # True when the bench.py arguments include the rows named by any of $@ (or --only is absent).
    local arguments=" ${bench_arguments[*]} " name
    [[ "${arguments}" != *" --only "* ]] && return 0
    for name in "$@"; do
        [[ "${arguments}" == *" ${name} "* ]] && return 0
    done
    return 1
}

bench_arguments=("$@")

bash "${repo_dir}/scripts/bootstrap.sh"
project_python="${repo_dir}/.venv/bin/python"

for peer_file in "${bench_dir}"/peers/*.txt; do
    peer="$(basename "${peer_file}" .txt)"
    venv="${bench_dir}/.venvs/${peer}"
    stamp="${venv}/.installed"
    wanted="$(sha256sum "${peer_file}" | cut -d' ' -f1)"
    if [[ -f "${stamp}" && "$(cat "${stamp}")" == "${wanted}" ]]; then
        continue
    fi
    log "installing ${peer} into ${venv}"
    rm -rf "${venv}"
    python3 -m venv "${venv}"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${peer_file}"
    echo "${wanted}" > "${stamp}"
done

stop_servers() {
    bash "${repo_dir}/scripts/redis-servers.sh" stop "${redis_ports[@]}" >/dev/null 2>&1 || true
    bash "${repo_dir}/scripts/mongo-servers.sh" stop "${mongo_port}" >/dev/null 2>&1 || true
}
trap stop_servers EXIT

# The benchmark's own Redis nodes, apart from the test nodes (6379/6380), pinned with every thread.
taskset -c "${server_core}" bash "${repo_dir}/scripts/redis-servers.sh" start "${redis_ports[@]}"
for port in "${redis_ports[@]}"; do
    pid_file="${repo_dir}/.servers/redis-${port}.pid"
    if [[ -f "${pid_file}" ]]; then
        taskset -a -p -c "${server_core}" "$(cat "${pid_file}")" >/dev/null
    else
        log "no pid file for redis on ${port}; it is not pinned"
    fi
done

extra_arguments=()
if wants ours mongo-single; then
    if bash "${repo_dir}/scripts/mongo-servers.sh" start "${mongo_port}"; then
        taskset -a -p -c "${server_core}" "$(cat "${repo_dir}/.servers/ferretdb-${mongo_port}.pid")" >/dev/null
    else
        log "FerretDB did not start; the mongo rows are skipped"
        extra_arguments+=(--skip-mongo)
    fi
else
    extra_arguments+=(--skip-mongo)
fi

mkdir -p "${bench_dir}/.work"
"${project_python}" "${bench_dir}/bench.py" "${extra_arguments[@]}" "$@"
