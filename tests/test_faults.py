"""Tasks that misbehave: hang past their timeout, swallow the interrupt, hog the CPU past their lease."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import typing

import pytest

from sergeant import config
from sergeant.connector import Connector
from sergeant.encoder import Encoder
from tests.backends import WORKER_LAYOUTS
from tests.test_processes import REPOSITORY, push, start_supervisor, wait_until
from tests.workers import environment_for, read_records


@pytest.fixture(params=WORKER_LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class SummarizedWorker:
    """One worker process, and the summary it writes to a pipe when its loop ends."""

    def __init__(self, environment: dict[str, str]) -> None:
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'sergeant.child',
                '--worker-module',
                'tests.workers',
                '--worker-class',
                'RecordingWorker',
                '--summary-fd',
                str(write_fd),
            ],
            cwd=REPOSITORY,
            env=environment,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        self.summary_stream = os.fdopen(read_fd)

    def finish(self, timeout: float) -> tuple[int, dict[str, typing.Any] | None]:
        with self.summary_stream:
            text = self.summary_stream.read()
        exit_code = self.process.wait(timeout=timeout)
        return exit_code, (json.loads(text) if text else None)


def run_worker_with_summary(environment: dict[str, str], timeout: float) -> tuple[int, dict[str, typing.Any] | None]:
    return SummarizedWorker(environment).finish(timeout)


def test_task_that_swallows_the_timeout_is_killed_after_the_grace_period_and_comes_back(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': 1, 'action': 'stubborn', 'seconds': 30}])
    environment = environment_for(
        connector_settings, queue_name, record, lease_seconds=1.0, timeouts={'timeout': 0.5, 'grace_period': 0.5}
    )
    started = time.monotonic()
    exit_code, summary = run_worker_with_summary(environment, timeout=20)
    assert exit_code == -signal.SIGKILL
    assert summary is None
    assert time.monotonic() - started < 8, 'killed about timeout + grace period after the task started'
    assert read_records(record) == []
    time.sleep(1.2)
    again = connector.lease(queue_name, 1, 30.0)
    assert [item.deliveries for item in again] == [2], 'the task is not lost: it is delivered again after the lease'
    assert Encoder().decode(again[0].payload).kwargs['id'] == 1


def test_cpu_bound_task_longer_than_its_lease_is_delivered_once(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': 1, 'action': 'busy', 'seconds': 3.5}])
    environment = environment_for(connector_settings, queue_name, record, lease_seconds=1.0, max_tasks_per_run=1)
    worker = SummarizedWorker(environment)
    wait_until(lambda: connector.lengths(queue_name).leased == 1, 20, 'the worker leased the task')
    poller = subprocess.Popen(
        [
            sys.executable,
            '-c',
            (
                'import json, sys, time\n'
                'from sergeant import config\n'
                'from sergeant.connector import connect\n'
                'connector = connect(config.Connector(**json.loads(sys.argv[1])))\n'
                'stolen = 0\n'
                'deadline = time.monotonic() + 4.5\n'
                'while time.monotonic() < deadline:\n'
                '    stolen += len(connector.lease(sys.argv[2], 1, 30.0))\n'
                '    time.sleep(0.1)\n'
                'print(stolen)\n'
            ),
            json.dumps({'type': connector_settings.type, 'params': connector_settings.params}),
            queue_name,
        ],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
    )
    exit_code, summary = worker.finish(timeout=30)
    stolen, _ = poller.communicate(timeout=30)
    assert exit_code == 0
    assert int(stolen) == 0, 'no other consumer got the task while its worker was busy with it'
    assert read_records(record) == [1]
    assert summary is not None
    renewal_gap = summary['executor']['longest_renewal_gap_seconds']
    assert summary['executor']['lease_renewals'] >= 5
    assert 0 < renewal_gap < 1.0, f'renewals kept up under a CPU-bound task (longest gap {renewal_gap}s)'
    assert connector.lengths(queue_name) == (0, 0, 0, 0)


def test_sigterm_drain_kills_a_task_that_outlives_the_grace_period(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': 1, 'sleep': 30}, {'id': 2}])
    environment = environment_for(
        connector_settings,
        queue_name,
        record,
        tasks_per_transaction=2,
        lease_seconds=1.0,
        timeouts={'timeout': 0, 'grace_period': 1.0},
    )
    log_path = tmp_path / 'supervisor.log'
    supervisor = start_supervisor(environment, 1, log_path=log_path)
    wait_until(lambda: connector.lengths(queue_name).leased == 2, 20, 'the worker leased both tasks')
    stop_started = time.monotonic()
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert time.monotonic() - stop_started < 8, 'grace period 1 s + margin, not the 30 s task'
    assert 'worker_crashed' in log_path.read_text() or 'worker_killed' in log_path.read_text()
    time.sleep(1.2)
    leased = connector.lease(queue_name, 5, 30.0)
    assert sorted(Encoder().decode(item.payload).kwargs['id'] for item in leased) == [1, 2], 'nothing is lost'


def test_threaded_executor_reports_a_thread_it_could_not_stop(
    connector: Connector, connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    record = str(tmp_path / 'handled.txt')
    push(connector, queue_name, [{'id': 1, 'sleep': 2.0}, {'id': 2}])
    environment = environment_for(
        connector_settings,
        queue_name,
        record,
        number_of_threads=2,
        tasks_per_transaction=2,
        max_tasks_per_run=2,
        timeouts={'timeout': 0.3, 'grace_period': 0.3},
    )
    exit_code, summary = run_worker_with_summary(environment, timeout=30)
    assert exit_code == 0
    assert summary is not None
    assert summary['executor']['stuck_threads'] == 1, 'a thread sleeping in C ignores the interrupt until it wakes'
    assert summary['executor']['timeout'] == 1
    assert read_records(record) == [2]


def test_supervisor_reports_a_worker_module_that_does_not_import(
    connector_settings: config.Connector, queue_name: str, tmp_path: pathlib.Path
) -> None:
    environment = environment_for(connector_settings, queue_name, str(tmp_path / 'handled.txt'))
    log_path = tmp_path / 'supervisor.log'
    with open(log_path, 'w') as log:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'sergeant.supervisor',
                '--worker-module=tests.no_such_module',
                '--worker-class=Nope',
                '--concurrent-workers=1',
            ],
            cwd=REPOSITORY,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    time.sleep(3)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=20) == 0
    log = log_path.read_text()
    assert "No module named 'tests.no_such_module'" in log
    assert 'worker_start_failed' in log
    assert log.count('spawned worker') <= 3
