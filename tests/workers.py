"""Worker classes the tests run in real processes, configured through environment variables.

SERGEANT_TEST_CONNECTOR: the connector as JSON {"type": ..., "params": ...}
SERGEANT_TEST_QUEUE:     the worker (queue) name
SERGEANT_TEST_SETTINGS:  JSON of WorkerConfig fields to change (delivery, lease_seconds, ...)
SERGEANT_TEST_RECORD:    a file each handled task's kwargs['id'] is appended to (flushed per task)
"""

from __future__ import annotations

import json
import os
import time
import typing

from sergeant import config
from sergeant.objects import Task
from sergeant.worker import Worker


def environment_for(
    connector: config.Connector, queue: str, record_path: str, **settings: typing.Any
) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update(
        {
            'SERGEANT_TEST_CONNECTOR': json.dumps({'type': connector.type, 'params': connector.params}),
            'SERGEANT_TEST_QUEUE': queue,
            'SERGEANT_TEST_SETTINGS': json.dumps(settings),
            'SERGEANT_TEST_RECORD': record_path,
        }
    )
    return environment


def read_records(path: str) -> list[int]:
    if not os.path.exists(path):
        return []
    with open(path) as stream:
        return [int(line) for line in stream if line.strip().isdigit()]


class RecordingWorker(Worker):
    """Appends each task's id to the record file; kwargs may ask it to sleep, fail, stop or respawn."""

    def generate_config(self) -> config.WorkerConfig:
        connector = config.Connector(**json.loads(os.environ['SERGEANT_TEST_CONNECTOR']))
        settings = json.loads(os.environ.get('SERGEANT_TEST_SETTINGS', '{}'))
        if 'timeouts' in settings:
            settings['timeouts'] = config.Timeouts(**settings['timeouts'])
        return config.WorkerConfig(name=os.environ['SERGEANT_TEST_QUEUE'], connector=connector, **settings)

    def initialize(self) -> None:
        self.record = open(os.environ['SERGEANT_TEST_RECORD'], 'a')

    def work(self, task: Task) -> None:
        if task.kwargs.get('sleep'):
            time.sleep(task.kwargs['sleep'])
        if task.kwargs.get('action') == 'stop':
            self.record_task(task)
            self.stop()
        if task.kwargs.get('action') == 'respawn':
            self.record_task(task)
            self.respawn()
        if task.kwargs.get('action') == 'allocate':
            self.ballast = bytearray(task.kwargs['bytes'])
            for offset in range(0, len(self.ballast), 4096):
                self.ballast[offset] = 1
            time.sleep(5)
        if task.kwargs.get('action') == 'busy':
            deadline = time.monotonic() + task.kwargs['seconds']
            spins = 0
            while time.monotonic() < deadline:
                spins += 1
        if task.kwargs.get('action') == 'stubborn':
            deadline = time.monotonic() + task.kwargs['seconds']
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except BaseException:  # ignores WorkerTimedOut on purpose
                    pass
        self.record_task(task)

    def record_task(self, task: Task) -> None:
        self.record.write(f'{task.kwargs["id"]}\n')
        self.record.flush()

    def finalize(self) -> None:
        self.record.close()


class BrokenInitializeWorker(RecordingWorker):
    def initialize(self) -> None:
        raise RuntimeError('initialize failed on purpose')
