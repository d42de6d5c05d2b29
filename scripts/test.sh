#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts the servers, runs the lint and
# type checks and the three server groups (local, redis, mongo) in parallel, stops the
# servers, and prints one closing line. Fails when any group fails or collects no test.
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

bash scripts/bootstrap.sh || exit 1
mkdir -p .servers/results
rm -f .servers/results/*

stop_servers() {
    bash scripts/redis-servers.sh stop >/dev/null 2>&1 || true
    bash scripts/mongo-servers.sh stop >/dev/null 2>&1 || true
}
trap stop_servers EXIT

bash scripts/redis-servers.sh start || { echo "test: could not start redis-server" >&2; exit 1; }
bash scripts/mongo-servers.sh start || { echo "test: could not start the MongoDB-compatible server" >&2; exit 1; }

run_group() {
    local name="$1"; shift
    local started=$SECONDS
    "$@" >".servers/results/$name.log" 2>&1
    local status=$?
    echo "$status" >".servers/results/$name.status"
    echo "test: group $name finished with status $status in $((SECONDS - started))s"
}

pytest_group() {
    local name="$1" marks="$2"
    .venv/bin/python -m pytest -m "$marks" -p no:cacheprovider -q -ra \
        --junitxml=".servers/results/$name.xml" "${@:3}"
}

started=$SECONDS
run_group lint bash -c '.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy' &
run_group local pytest_group local 'not redis and not mongo' &
run_group redis pytest_group redis 'redis' &
run_group mongo pytest_group mongo 'mongo' &
wait

failed=0
for name in lint local redis mongo; do
    status="$(cat ".servers/results/$name.status" 2>/dev/null || echo missing)"
    echo "================ $name (status $status) ================"
    tail -n 60 ".servers/results/$name.log"
    # pytest exits 5 when it collected no test: that is a failure here, never a green run.
    [[ "$status" == "0" ]] || failed=1
done

.venv/bin/python scripts/summarize_junit.py .servers/results/*.xml || failed=1
echo "test: total $((SECONDS - started))s"
exit "$failed"
