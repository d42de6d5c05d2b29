"""Run every benchmark scenario, interleaved, and write benchmarks/RESULTS.md.

Started by benchmarks/run.sh with the project's venv, after the peers' venvs and the servers
exist. Each measured scenario is a fresh process (the peer's venv python, or ours) pinned with
taskset; it prints one JSON line, see benchmarks/scenarios/common.py. Figures are medians over
the runs; lost and duplicate counts are summed over every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time
import typing

import redis

BENCHMARKS_DIR: typing.Final = pathlib.Path(__file__).resolve().parent
REPO_DIR: typing.Final = BENCHMARKS_DIR.parent
SCENARIOS_DIR: typing.Final = BENCHMARKS_DIR / 'scenarios'
VENVS_DIR: typing.Final = BENCHMARKS_DIR / '.venvs'
WORK_DIR: typing.Final = BENCHMARKS_DIR / '.work'
PEERS_DIR: typing.Final = BENCHMARKS_DIR / 'peers'
OUR_PYTHON: typing.Final = sys.executable

REDIS_HOST: typing.Final = '127.0.0.1'
REDIS_PORTS: typing.Final = (
    int(os.environ.get('BENCH_REDIS_PORT_1', 6390)),
    int(os.environ.get('BENCH_REDIS_PORT_2', 6391)),
)
MONGO_PORT: typing.Final = int(os.environ.get('BENCH_MONGO_PORT', 27027))
CLIENT_CORE: typing.Final = int(os.environ.get('BENCH_CLIENT_CORE', 1))
SERVER_CORE: typing.Final = int(os.environ.get('BENCH_SERVER_CORE', 1))
SCENARIO_TIMEOUT_SECONDS: typing.Final = 900

OPS: typing.Final = ('push_one', 'push_bulk', 'consume_one', 'consume_batch')
OP_TITLES: typing.Final = {
    'push_one': 'Push one task at a time',
    'push_bulk': 'Push in bulk (1,000 tasks per call)',
    'consume_one': 'Consume, fetching one task at a time',
    'consume_batch': 'Consume, fetching 1,000 tasks per round trip',
}
DELIVERIES: typing.Final = ('at_least_once', 'at_most_once')

# Which peer package each venv holds, and what each library cannot do.
PEER_PACKAGES: typing.Final = {
    'sergeant027': 'sergeant',
    'celery': 'celery',
    'rq': 'rq',
    'dramatiq': 'dramatiq',
    'huey': 'huey',
}
UNSUPPORTED: typing.Final = {
    'celery': ('push_bulk', 'consume_batch'),
    'rq': ('consume_batch',),
    'dramatiq': ('push_bulk',),
    'huey': ('push_bulk', 'consume_batch'),
}
UNSUPPORTED_WHY: typing.Final = {
    'celery': 'no bulk enqueue (a group publishes one message per task); its Redis transport fetches one '
    'message per BRPOP, so there is no batched fetch to measure',
    'rq': 'its worker dequeues one job per round trip',
    'dramatiq': 'no bulk enqueue',
    'huey': 'no bulk enqueue and its worker dequeues one task per round trip',
}


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the table: a library on a backend doing one operation."""

    library: str  # raw, ours, sergeant027, celery, rq, dramatiq, huey
    label: str
    backend: str  # redis-single, redis-multi, local, mongo-single
    op: str
    tasks: int
    delivery: str = ''

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.library, self.backend, self.op, self.delivery)


@dataclasses.dataclass
class Measured:
    case: Case
    runs: list[dict[str, typing.Any]] = dataclasses.field(default_factory=list)
    error: str = ''

    @property
    def rate(self) -> float:
        rates = [run['tasks_per_second'] for run in self.runs]
        return statistics.median(rates) if rates else 0.0


# -- running scenarios ------------------------------------------------------------------------
def python_for(library: str) -> str:
    if library in ('ours', 'raw', 'scaling'):
        return OUR_PYTHON
    return str(VENVS_DIR / library / 'bin' / 'python')


SCRIPTS: typing.Final = {
    'ours': 'sergeant_scenario.py',
    'sergeant027': 'sergeant_scenario.py',
    'raw': 'raw_redis.py',
    'celery': 'celery_scenario.py',
    'rq': 'rq_scenario.py',
    'dramatiq': 'dramatiq_scenario.py',
    'huey': 'huey_scenario.py',
    'scaling': 'scaling.py',
}


def run_scenario(library: str, spec: dict[str, typing.Any], pin: bool = True) -> dict[str, typing.Any]:
    command = [python_for(library), str(SCENARIOS_DIR / SCRIPTS[library]), json.dumps(spec)]
    if pin:
        command = ['taskset', '-c', str(CLIENT_CORE), *command]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_SECONDS, cwd=WORK_DIR, check=False
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith('{')]
    if completed.returncode != 0 or not lines:
        tail = '\n'.join((completed.stderr or completed.stdout).strip().splitlines()[-8:])
        raise RuntimeError(f'{library} {spec.get("op", "")} exited with {completed.returncode}:\n{tail}')
    result: dict[str, typing.Any] = json.loads(lines[-1])
    return result


def redis_node(port: int, database: int = 0) -> dict[str, typing.Any]:
    return {'host': REDIS_HOST, 'port': port, 'db': database}


def connector_for(library: str, backend: str) -> dict[str, typing.Any]:
    # sergeant 0.27.0 needs every node field spelt out.
    password: dict[str, typing.Any] = {'password': None, 'database': 0} if library == 'sergeant027' else {}
    if backend == 'redis-single':
        return {'type': 'redis', 'params': {'nodes': [{'host': REDIS_HOST, 'port': REDIS_PORTS[0], **password}]}}
    if backend == 'redis-multi':
        nodes = [{'host': REDIS_HOST, 'port': port, **password} for port in REDIS_PORTS]
        return {'type': 'redis', 'params': {'nodes': nodes}}
    if backend == 'local':
        return {'type': 'local', 'params': {'file_path': str(WORK_DIR / f'{library}-local.sqlite3')}}
    if backend == 'mongo-single':
        return {
            'type': 'mongo',
            'params': {'nodes': [{'host': REDIS_HOST, 'port': MONGO_PORT, 'replica_set': f'rs{MONGO_PORT}'}]},
        }
    raise ValueError(f'unknown backend {backend!r}')


def spec_for(case: Case, op: str) -> dict[str, typing.Any]:
    spec: dict[str, typing.Any] = {'op': op, 'n': case.tasks, 'queue': 'benchmark', 'redis': redis_node(REDIS_PORTS[0])}
    if case.library in ('ours', 'sergeant027'):
        spec['connector'] = connector_for(case.library, case.backend)
        if case.library == 'ours' and case.delivery:
            spec['delivery'] = case.delivery
    if case.library == 'huey' and case.backend == 'local':
        spec['sqlite_path'] = str(WORK_DIR / 'huey-local.sqlite3')
    return spec


def clean_backends() -> None:
    """Every scenario starts from empty servers: FLUSHALL the benchmark's own Redis nodes, new SQLite files."""
    for port in REDIS_PORTS:
        try:
            redis.Redis(host=REDIS_HOST, port=port).flushall()
        except redis.ConnectionError:
            pass
    for path in WORK_DIR.glob('*.sqlite3*'):
        path.unlink()


def measure_once(case: Case) -> dict[str, typing.Any]:
    clean_backends()
    if case.op.startswith('consume'):
        run_scenario(case.library, spec_for(case, 'fill'))
    return run_scenario(case.library, spec_for(case, case.op))


# -- the plan ------------------------------------------------------------------------------------
def library_label(library: str, versions: dict[str, str], backend: str = '', delivery: str = '') -> str:
    if library == 'raw':
        return f'redis-py {versions.get("redis-py", "")} (bare commands, the ceiling)'
    if library == 'ours':
        mode = {'at_least_once': ', at-least-once', 'at_most_once': ', at-most-once'}.get(delivery, '')
        return f'**sergeant {versions.get("ours", "")} (ours{mode})**'
    if library == 'sergeant027':
        return f'sergeant {versions.get("sergeant027", "0.27.0")} (original)'
    if library == 'huey':
        kind = 'SqliteHuey' if backend == 'local' else 'RedisHuey'
        return f'huey {versions.get("huey", "")} ({kind})'
    return f'{library} {versions.get(library, "")}'


def build_plan(
    arguments: argparse.Namespace, versions: dict[str, str], backends_ready: dict[str, str]
) -> tuple[list[Case], list[str]]:
    """All cases in the order they run inside one round, and notes on what was left out."""
    full = arguments.tasks
    caps = QUICK_CAPS if arguments.quick else FULL_CAPS
    notes: list[str] = []
    wanted = set(arguments.only or [])

    def included(*names: str) -> bool:
        return not wanted or bool(wanted.intersection(names))

    def tasks_for(library: str, backend: str, op: str) -> int:
        for key in ((library, backend, op), (library, backend, '*'), (library, '*', op), (library, '*', '*')):
            if key in caps:
                return min(caps[key], full)
        return full

    cases: list[Case] = []

    def add(library: str, backend: str, op: str, delivery: str = '') -> None:
        label = library_label(library, versions, backend, delivery)
        cases.append(Case(library, label, backend, op, tasks_for(library, backend, op), delivery))

    for op in OPS:
        deliveries = DELIVERIES if op.startswith('consume') else ('',)
        for backend in ('redis-single', 'redis-multi', 'local', 'mongo-single'):
            if not included('ours', backend):
                continue
            if backends_ready.get(backend):
                continue
            for delivery in deliveries:
                add('ours', backend, op, delivery)
        if included('raw', 'redis-single'):
            add('raw', 'redis-single', op)
        for library in ('sergeant027', 'celery', 'rq', 'dramatiq', 'huey'):
            if op in UNSUPPORTED.get(library, ()) or not included(library, 'redis-single'):
                continue
            add(library, 'redis-single', op)
        if included('sergeant027', 'local'):
            add('sergeant027', 'local', op)
        if op not in UNSUPPORTED['huey'] and included('huey', 'local'):
            add('huey', 'local', op)
    for backend, reason in backends_ready.items():
        if reason:
            notes.append(f'{backend} rows of ours skipped: {reason}')
    return cases, notes


FULL_CAPS: typing.Final[dict[tuple[str, str, str], int]] = {
    ('celery', '*', '*'): 20_000,
    ('rq', '*', 'push_one'): 20_000,
    ('rq', '*', 'consume_one'): 5_000,
    ('dramatiq', '*', 'push_one'): 20_000,
    ('dramatiq', '*', 'consume_one'): 2_000,
    ('dramatiq', '*', 'consume_batch'): 20_000,
    ('huey', '*', '*'): 20_000,
    ('sergeant027', 'local', '*'): 20_000,
    ('ours', 'local', 'push_one'): 20_000,
    ('ours', 'local', 'consume_one'): 20_000,
    ('ours', 'mongo-single', 'push_one'): 10_000,
    ('ours', 'mongo-single', 'consume_one'): 300,
    ('ours', 'mongo-single', 'consume_batch'): 20_000,
}
QUICK_CAPS: typing.Final[dict[tuple[str, str, str], int]] = {
    ('celery', '*', '*'): 5_000,
    ('rq', '*', 'consume_one'): 2_000,
    ('dramatiq', '*', 'consume_one'): 1_000,
    ('huey', '*', '*'): 5_000,
    ('sergeant027', 'local', '*'): 5_000,
    ('ours', 'local', 'push_one'): 5_000,
    ('ours', 'local', 'consume_one'): 5_000,
    ('ours', 'mongo-single', 'push_one'): 2_000,
    ('ours', 'mongo-single', 'consume_one'): 200,
}


def run_plan(cases: list[Case], runs: int) -> dict[tuple[str, str, str, str], Measured]:
    """Rounds of every case in turn (A B C A B C ...), so slow drift hits every library alike."""
    measured = {case.key: Measured(case) for case in cases}
    for round_number in range(1, runs + 1):
        for index, case in enumerate(cases, start=1):
            entry = measured[case.key]
            if entry.error:
                continue
            started = time.monotonic()
            try:
                result = measure_once(case)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                entry.error = str(error).strip().splitlines()[-1][:300] if str(error).strip() else repr(error)
                print(f'[{round_number}/{runs}] {index:>2}/{len(cases)} {case.label} {case.backend} {case.op}: FAILED')
                print('    ' + str(error).replace('\n', '\n    '), file=sys.stderr)
                continue
            entry.runs.append(result)
            print(
                f'[{round_number}/{runs}] {index:>2}/{len(cases)} {case.label} {case.backend} {case.op} '
                f'{case.delivery}: {result["tasks_per_second"]:,.0f} tasks/s '
                f'({result["processed"]:,} processed, {result["lost"]} lost, {result["duplicates"]} dup, '
                f'{time.monotonic() - started:.1f}s)',
                flush=True,
            )
    return measured


# -- scaling ---------------------------------------------------------------------------------------
SCALING_WORKERS: typing.Final = (1, 2, 4)
SCALING_NODES: typing.Final = (1, 2)
SCALING_BATCHES: typing.Final = (1, 1000)


def run_scaling(tasks: int, runs: int) -> dict[tuple[int, int, int], list[dict[str, typing.Any]]]:
    # Worker 0 shares the server's core (as in the main table); the next ones take the other cores in turn.
    cores = sorted(os.sched_getaffinity(0), key=lambda core: (core != SERVER_CORE, core))
    results: dict[tuple[int, int, int], list[dict[str, typing.Any]]] = {}
    layouts = [
        (batch, nodes, workers) for batch in SCALING_BATCHES for nodes in SCALING_NODES for workers in SCALING_WORKERS
    ]
    for round_number in range(1, runs + 1):
        for batch, nodes, workers in layouts:
            backend = 'redis-single' if nodes == 1 else 'redis-multi'
            connector = connector_for('ours', backend)
            clean_backends()
            fill = {'op': 'fill', 'n': tasks, 'queue': 'benchmark', 'connector': connector}
            spec = {
                'n': tasks,
                'queue': 'benchmark',
                'connector': connector,
                'workers': workers,
                'batch': batch,
                'delivery': 'at_least_once',
                'cores': cores,
            }
            try:
                run_scenario('ours', fill)
                result = run_scenario('scaling', spec, pin=False)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f'scaling {workers} workers x {nodes} nodes, batch {batch}: FAILED {error}', file=sys.stderr)
                continue
            results.setdefault((batch, nodes, workers), []).append(result)
            print(
                f'[{round_number}/{runs}] scaling batch={batch} nodes={nodes} workers={workers}: '
                f'{result["tasks_per_second"]:,.0f} tasks/s ({result["lost"]} lost, {result["duplicates"]} dup)',
                flush=True,
            )
    return results


# -- the report ------------------------------------------------------------------------------------
def command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ''


def machine_header(versions: dict[str, str], arguments: argparse.Namespace, mongo_port: int | None) -> list[str]:
    cpu_model = ''
    for line in pathlib.Path('/proc/cpuinfo').read_text().splitlines():
        if line.startswith('model name'):
            cpu_model = line.split(':', 1)[1].strip()
            break
    redis_version = command_output(['redis-server', '--version'])
    commit = command_output(['git', '-C', str(REPO_DIR), 'rev-parse', '--short', 'HEAD'])
    dirty = (
        ' (with uncommitted changes)' if command_output(['git', '-C', str(REPO_DIR), 'status', '--porcelain']) else ''
    )
    peers = ', '.join(f'{name} {versions[key]}' for key, name in PEER_PACKAGES.items() if key in versions)
    mode = '--quick: one run' if arguments.quick else f'median of {arguments.runs} runs'
    lines = [
        f'- Date: {datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")}; '
        f'sergeant {versions.get("ours", "")} at commit {commit}{dirty}',
        f'- Machine: {os.cpu_count()} cores, {cpu_model}; {platform.system()} {platform.release()}',
        f'- Python {platform.python_version()}; redis-py {versions.get("redis-py", "")} (ours and the ceiling); '
        f'{redis_version.split(" sha=")[0]}',
        f'- Peers, each from PyPI in its own virtualenv (pins in benchmarks/peers/): {peers}',
        f'- Pinning: every redis-server on core {SERVER_CORE}; each benchmark client process on core {CLIENT_CORE} '
        f'(`taskset -c {CLIENT_CORE}`), so client and server share a core: the ~17 µs loopback round trip, '
        f'not the ~120 µs cross-core one. Scaling runs pin worker 0 to core {SERVER_CORE} and the next ones '
        'to the other cores in turn.',
        f'- Method: {mode} per figure, every library in turn within a round; every scenario in a fresh '
        'process on freshly flushed servers; consumers count each task id they handle.',
    ]
    if mongo_port is not None:
        lines.append(f'- mongo-single: FerretDB (scripts/mongo-servers.sh) on port {mongo_port}, on core {SERVER_CORE}')
    return lines


def format_rate(rate: float) -> str:
    return f'{rate:,.0f}'


def format_ratio(ours: float, other: float) -> str:
    if not ours or not other:
        return '-'
    return f'{ours / other:.2f}x'


def format_bytes(size: int) -> str:
    return f'{size / 2**20:.0f} MiB'


def ours_reference(measured: dict[tuple[str, str, str, str], Measured], backend: str, op: str, delivery: str) -> float:
    reference_backend = 'local' if backend == 'local' else ('redis-single' if backend.startswith('redis') else backend)
    if op.startswith('push'):
        delivery = ''
    entry = measured.get(('ours', reference_backend, op, delivery))
    return entry.rate if entry is not None else 0.0


def main_tables(measured: dict[tuple[str, str, str, str], Measured]) -> list[str]:
    lines: list[str] = []
    for op in OPS:
        entries = [entry for entry in measured.values() if entry.case.op == op]
        if not entries:
            continue
        lines += [
            f'### {OP_TITLES[op]}',
            '',
            '| library | backend | tasks per run | tasks/s | processed | lost | duplicates | peak RSS '
            '| ours (at-least-once) ÷ this | ours (at-most-once) ÷ this |',
            '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
        ]
        for entry in entries:
            case = entry.case
            if entry.error or not entry.runs:
                lines.append(f'| {case.label} | {case.backend} | {case.tasks:,} | failed: {entry.error} | | | | | | |')
                continue
            processed = sum(run['processed'] for run in entry.runs)
            lost = sum(run['lost'] for run in entry.runs)
            duplicates = sum(run['duplicates'] for run in entry.runs)
            peak = max(run['peak_rss_bytes'] for run in entry.runs)
            ratios = ['-', '-']
            if case.library != 'ours':
                ratios = [
                    format_ratio(ours_reference(measured, case.backend, op, mode), entry.rate) for mode in DELIVERIES
                ]
            lines.append(
                f'| {case.label} | {case.backend} | {case.tasks:,} | {format_rate(entry.rate)} | {processed:,} '
                f'| {lost} | {duplicates} | {format_bytes(peak)} | {ratios[0]} | {ratios[1]} |'
            )
        lines.append('')
    return lines


def scaling_table(results: dict[tuple[int, int, int], list[dict[str, typing.Any]]]) -> list[str]:
    if not results:
        return []
    lines = [
        '## Scaling: worker processes x Redis nodes (ours, at-least-once)',
        '',
        '| fetch per round trip | Redis nodes | worker processes | tasks | tasks/s | processed | lost | duplicates '
        '| peak RSS of a worker |',
        '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for (batch, nodes, workers), runs in sorted(results.items()):
        rate = statistics.median(run['tasks_per_second'] for run in runs)
        lines.append(
            f'| {batch:,} | {nodes} | {workers} | {runs[0]["tasks"]:,} | {format_rate(rate)} '
            f'| {sum(run["processed"] for run in runs):,} | {sum(run["lost"] for run in runs)} '
            f'| {sum(run["duplicates"] for run in runs)} '
            f'| {format_bytes(max(run["peak_rss_bytes_children"] for run in runs))} |'
        )
    lines.append('')
    return lines


def read_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {'ours': metadata.version('sergeant'), 'redis-py': metadata.version('redis')}
    for key, package in PEER_PACKAGES.items():
        requirements = PEERS_DIR / f'{key}.txt'
        for line in requirements.read_text().splitlines():
            name, _, version = line.partition('==')
            if name.strip().lower() == package:
                versions[key] = version.strip()
    return versions


def check_backends(arguments: argparse.Namespace) -> dict[str, str]:
    """Why each of our backends cannot be measured now ('' when it can)."""
    reasons: dict[str, str] = {}
    probe = (
        'import sys, json; from sergeant import config; from sergeant.connector import connect; '
        'connector = connect(config.Connector(**json.loads(sys.argv[1]))); connector.lengths("probe")'
    )
    for backend in ('redis-single', 'redis-multi', 'local', 'mongo-single'):
        if backend == 'mongo-single' and arguments.skip_mongo:
            reasons[backend] = 'FerretDB was not started (run.sh could not build or start it)'
            continue
        completed = subprocess.run(
            [OUR_PYTHON, '-c', probe, json.dumps(connector_for('ours', backend))],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=WORK_DIR,
            check=False,
        )
        if completed.returncode != 0:
            last = (completed.stderr.strip().splitlines() or ['no output'])[-1]
            reasons[backend] = f'the connector does not work yet ({last[:200]})'
        else:
            reasons[backend] = ''
    return reasons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--quick', action='store_true', help='10,000 tasks, one run')
    parser.add_argument(
        '--only',
        nargs='*',
        help='library or backend names: ours raw sergeant027 celery rq dramatiq '
        'huey redis-single redis-multi local mongo-single scaling',
    )
    parser.add_argument('--runs', type=int, default=None)
    parser.add_argument('--tasks', type=int, default=None)
    parser.add_argument('--skip-mongo', action='store_true')
    parser.add_argument('--output', default=str(BENCHMARKS_DIR / 'RESULTS.md'))
    arguments = parser.parse_args()
    arguments.runs = arguments.runs or (1 if arguments.quick else 3)
    arguments.tasks = arguments.tasks or (10_000 if arguments.quick else 100_000)
    WORK_DIR.mkdir(exist_ok=True)
    began = time.monotonic()

    versions = read_versions()
    backends = check_backends(arguments)
    for backend, reason in backends.items():
        if reason:
            print(f'SKIPPING ours on {backend}: {reason}', flush=True)
    cases, notes = build_plan(arguments, versions, backends)
    measured = run_plan(cases, arguments.runs)
    scaling: dict[tuple[int, int, int], list[dict[str, typing.Any]]] = {}
    if (not arguments.only or 'scaling' in arguments.only) and not backends['redis-multi']:
        scaling = run_scaling(arguments.tasks, arguments.runs)

    unsupported = [f'{library}: {UNSUPPORTED_WHY[library]}' for library in UNSUPPORTED]
    capped = sorted(
        {f'{case.label} ({case.backend}, {case.op}): {case.tasks:,}' for case in cases if case.tasks < arguments.tasks}
    )
    lines = [
        '# sergeant benchmark results',
        '',
        f'Written by `bash benchmarks/run.sh{" --quick" if arguments.quick else ""}'
        f'{" --only " + " ".join(arguments.only) if arguments.only else ""}` in '
        f'{(time.monotonic() - began) / 60:.1f} minutes. No-op tasks with small kwargs; see docs/benchmarks.md '
        'for how to read this.',
        '',
        *machine_header(versions, arguments, MONGO_PORT if not backends.get('mongo-single') else None),
        '',
        f'Each figure is tasks per second for {arguments.tasks:,} tasks, except where "tasks per run" says fewer '
        '(slow peers get fewer tasks so the run stays short; a rate does not depend on it much). '
        '"processed", "lost" and "duplicates" are summed over all runs; a consumer row is only sound when '
        'lost and duplicates are 0. Push rows count what reached the queue. The ratio columns divide our '
        'figure for the same operation (and the same backend: redis-single for Redis peers, local for '
        "SqliteHuey) by the row's figure: above 1x we are faster.",
        '',
        *main_tables(measured),
        *scaling_table(scaling),
        '## Not measured',
        '',
        *[f'- {line}' for line in unsupported],
        *[f'- {note}' for note in notes],
        '',
    ]
    if capped:
        lines += ['## Fewer tasks per run', '', *[f'- {line}' for line in capped], '']
    report = '\n'.join(lines)
    pathlib.Path(arguments.output).write_text(report)
    print()
    print(report)
    print(f'written to {arguments.output}')
    shutil.rmtree(WORK_DIR / 'tmp', ignore_errors=True)


if __name__ == '__main__':
    main()
