"""Real processes and real signals: kill -9 a worker, SIGTERM a worker and a supervisor."""

from __future__ import annotations

import collections
import pathlib
import signal
import subprocess
import sys
import time
import typing

import psutil
import pytest

from sergeant import config
from sergeant.connector import Connector
from sergeant.encoder import Encoder
from tests.backends import WORKER_LAYOUTS
from tests.workers import environment_for, read_records

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(params=WORKER_LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def push(connector: Connector, queue: str, kwargs_list: list[dict[str, typing.Any]]) -> None:
    encoder = Encoder()
    connector.push(queue, encoder.encode_kwargs_list(kwargs_list, None, time.time()))


def start_worker(environment: dict[str, str], worker_class: str = 'RecordingWorker') -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, '-m', 'sergeant.child', '--worker-module', 'tests.workers', '--worker-class', worker_class],
        cwd=REPOSITORY,
        env=environment,
    )


def start_supervisor(
    environment: dict[str, str],
    workers: int,
    *extra: str,
    worker_class: str = 'RecordingWorker',
    log_path: pathlib.Path,
) -> subprocess.Popen[bytes]:
    with open(log_path, 'w') as log:
        return subprocess.Popen(
            [
                sys.executable,
                '-m',
                'sergeant.supervisor',
                '--worker-module',
                'tests.workers',
                f'--worker-class={worker_class}',
                f'--concurrent-workers={workers}',
                *extra,
            ],
            cwd=REPOSITORY,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def wait_until(condition: typing.Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout}s waiting until {message}')
        time.sleep(0.05)


def test_sigkill_mid_batch_loses_no_task(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': n, 'sleep': 0.02} for n in range(120)])
    environment = environment_for(connector_settings, queue_name, record, tasks_per_transaction=50, lease_seconds=1.5)
    victim = start_worker(environment)
    wait_until(lambda: len(read_records(record)) >= 20, 30, 'the first worker handled 20 tasks')
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    handled_before_kill = set(read_records(record))
    assert 20 <= len(handled_before_kill) < 50, 'killed in the middle of its first batch'
    assert connector.lengths(queue_name).leased > 0, 'the killed worker held leases'

    successor = start_worker(environment)
    try:
        wait_until(lambda: set(read_records(record)) >= set(range(120)), 60, 'every task was handled')
    finally:
        successor.send_signal(signal.SIGTERM)
        assert successor.wait(timeout=20) == 0
    counts = collections.Counter(read_records(record))
    assert set(counts) == set(range(120))
    redelivered = {task_id for task_id, count in counts.items() if count > 1}
    assert redelivered <= set(range(50)), 'only tasks of the killed batch may come twice'
    assert connector.lengths(queue_name) == (0, 0, 0, 0)


@pytest.mark.parametrize('delivery', ['at_least_once', 'at_most_once'])
def test_sigterm_finishes_the_current_task_and_gives_back_the_rest(
    connector: Connector,
    connector_settings: config.Connector,
    queue_name: str,
    tmp_path: pathlib.Path,
    delivery: str,
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': n, 'sleep': 0.3} for n in range(40)])
    environment = environment_for(connector_settings, queue_name, record, tasks_per_transaction=40, delivery=delivery)
    worker = start_worker(environment)
    wait_until(lambda: len(read_records(record)) >= 2, 30, 'two tasks were handled')
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    handled = read_records(record)
    assert len(handled) == len(set(handled))
    lengths = connector.lengths(queue_name)
    assert lengths.leased == 0
    assert lengths.ready == 40 - len(handled), 'every unstarted task is back in the queue'
    remaining = {task.kwargs['id'] for task in (Encoder().decode(p) for p in connector.pop(queue_name, 100))}
    assert remaining | set(handled) == set(range(40))


def test_supervisor_replaces_workers_and_leaves_no_child_after_sigterm(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': n} for n in range(30)])
    environment = environment_for(connector_settings, queue_name, record, max_tasks_per_run=5)
    log_path = tmp_path / 'supervisor.log'
    supervisor = start_supervisor(environment, 2, log_path=log_path)
    children_seen: set[int] = set()

    def all_handled() -> bool:
        children_seen.update(child.pid for child in psutil.Process(supervisor.pid).children())
        return set(read_records(record)) == set(range(30))

    try:
        wait_until(all_handled, 60, 'every task was handled')
        wait_until(lambda: log_path.read_text().count('worker_finished') >= 6, 20, 'six workers finished')
        wait_until(lambda: log_path.read_text().count('spawned worker') >= 8, 20, 'two replacements started')
        wait_until(lambda: len(psutil.Process(supervisor.pid).children()) == 2, 20, 'two workers run again')
        children = psutil.Process(supervisor.pid).children()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in children_seen
    )
    log = log_path.read_text()
    assert log.count('spawned worker') >= 6 + 2, 'each worker ends after 5 tasks and is replaced'
    assert log.count('worker_finished') >= 6
    assert '"tasks": 5' in log, 'the log carries the worker summary'
    assert sorted(read_records(record)) == list(range(30))


def test_supervisor_backs_off_a_worker_that_cannot_start(
    connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    environment = environment_for(connector_settings, queue_name, str(tmp_path / 'handled.txt'))
    log_path = tmp_path / 'supervisor.log'
    supervisor = start_supervisor(environment, 2, worker_class='BrokenInitializeWorker', log_path=log_path)
    time.sleep(4)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=20) == 0
    log = log_path.read_text()
    assert 'initialize failed on purpose' in log
    assert 'worker_start_failed' in log
    assert 2 <= log.count('spawned worker') <= 5, 'a failing worker is restarted with back-off, not in a tight loop'


def test_worker_that_calls_stop_is_not_replaced(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': 1, 'action': 'stop'}])
    environment = environment_for(connector_settings, queue_name, record)
    log_path = tmp_path / 'supervisor.log'
    supervisor = start_supervisor(environment, 1, log_path=log_path)
    try:
        assert supervisor.wait(timeout=30) == 0, 'the supervisor exits once every worker stopped'
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    log = log_path.read_text()
    assert 'worker_stopped' in log
    assert log.count('spawned worker') == 1
    assert read_records(record) == [1]


def test_worker_over_the_memory_limit_is_replaced(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': 1, 'action': 'allocate', 'bytes': 300_000_000}, {'id': 2}])
    environment = environment_for(connector_settings, queue_name, record, lease_seconds=2.0)
    log_path = tmp_path / 'supervisor.log'
    supervisor = start_supervisor(environment, 1, '--max-worker-memory-usage=200000000', log_path=log_path)
    try:
        wait_until(lambda: 'worker_killed_memory' in log_path.read_text(), 30, 'the worker was killed for memory')
        wait_until(lambda: 2 in read_records(record), 30, 'the replacement handled the next task')
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
    assert log_path.read_text().count('spawned worker') >= 2
