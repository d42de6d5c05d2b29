"""The demo: push tasks into the embedded local broker, run a supervisor with workers,
show live progress and end with a summary that proves no task was lost.

Each demo worker writes the ids of the tasks it handled to a file of its own, so the
summary counts what was really handled (lost and duplicated ids), not what the
broker says is left.
"""

from __future__ import annotations

import collections
import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sergeant import config
from sergeant.objects import Task
from sergeant.worker import Worker

QUEUE_NAME: typing.Final = 'demo'
DEMO_DIRECTORY_VARIABLE: typing.Final = 'SERGEANT_DEMO_DIRECTORY'


def demo_connector(directory: str) -> config.Connector:
    return config.Connector('local', {'file_path': os.path.join(directory, 'broker.sqlite3')})


class DemoWorker(Worker):
    """Handles demo tasks and records every handled id; each process ends after 4,000 tasks to show respawns."""

    def generate_config(self) -> config.WorkerConfig:
        directory = os.environ[DEMO_DIRECTORY_VARIABLE]
        return config.WorkerConfig(
            name=QUEUE_NAME,
            connector=demo_connector(directory),
            max_tasks_per_run=4_000,
            tasks_per_transaction=200,
            encoder=config.Encoder(serializer='msgpack'),
        )

    def initialize(self) -> None:
        directory = os.environ[DEMO_DIRECTORY_VARIABLE]
        self.handled_ids_file = open(os.path.join(directory, f'handled-{os.getpid()}.txt'), 'a')

    def work(self, task: Task) -> None:
        self.handled_ids_file.write(f'{task.kwargs["id"]}\n')

    def finalize(self) -> None:
        self.handled_ids_file.close()


def count_handled(directory: str) -> collections.Counter[int]:
    handled: collections.Counter[int] = collections.Counter()
    for path in glob.glob(os.path.join(directory, 'handled-*.txt')):
        with open(path) as stream:
            handled.update(int(line) for line in stream if line.strip())
    return handled


def run_demo(number_of_tasks: int = 20_000, number_of_workers: int = 2, console: Console | None = None) -> int:
    console = console or Console()
    directory = tempfile.mkdtemp(prefix='sergeant-demo-')
    os.environ[DEMO_DIRECTORY_VARIABLE] = directory
    producer = DemoWorker()
    producer.init_broker()
    console.print(
        f'[bold]sergeant demo[/]: {number_of_tasks:,} tasks, {number_of_workers} worker processes, '
        f'embedded local broker at {directory}/broker.sqlite3'
    )

    pushed_started = time.perf_counter()
    for start in range(0, number_of_tasks, 1_000):
        producer.push_tasks([{'id': task_id} for task_id in range(start, min(start + 1_000, number_of_tasks))])
    push_seconds = time.perf_counter() - pushed_started
    console.print(
        f'pushed {number_of_tasks:,} tasks in {push_seconds:.2f}s ({number_of_tasks / push_seconds:,.0f} tasks/s)'
    )

    supervisor_log_path = os.path.join(directory, 'supervisor.log')
    with open(supervisor_log_path, 'w') as supervisor_log:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                '-m',
                'sergeant.supervisor',
                '--worker-module',
                'sergeant.demo',
                '--worker-class',
                'DemoWorker',
                '--concurrent-workers',
                str(number_of_workers),
            ],
            stdout=supervisor_log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    started = time.perf_counter()
    columns = (
        TextColumn('[bold blue]handling'),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn('{task.fields[rate]}'),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task('tasks', total=number_of_tasks, rate='')
            while True:
                lengths = producer.broker.lengths(QUEUE_NAME)
                remaining = lengths.ready + lengths.delayed + lengths.leased
                done = number_of_tasks - remaining
                elapsed = time.perf_counter() - started
                progress.update(bar, completed=done, rate=f'{done / elapsed:,.0f} tasks/s' if elapsed else '')
                if remaining == 0:
                    break
                if supervisor.poll() is not None:
                    console.print('[red]the supervisor exited early; see ' + supervisor_log_path)
                    break
                time.sleep(0.1)
        seconds = time.perf_counter() - started
    finally:
        if supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=60)

    handled = count_handled(directory)
    lost = sum(1 for task_id in range(number_of_tasks) if task_id not in handled)
    duplicates = sum(count - 1 for count in handled.values() if count > 1)
    dead = producer.broker.lengths(QUEUE_NAME).dead
    with open(supervisor_log_path) as supervisor_log:
        spawned = sum('spawned worker' in line for line in supervisor_log)
    console.print(
        f'worker processes started by the supervisor: {spawned} (each ends after 4,000 tasks and is replaced)'
    )
    console.print(
        f'[bold]summary[/]: tasks={number_of_tasks} handled={sum(handled.values())} seconds={seconds:.2f} '
        f'tasks/s={number_of_tasks / seconds:,.0f} lost={lost} duplicates={duplicates} dead={dead}'
    )
    producer.connector.close()
    return 0 if lost == 0 and duplicates == 0 and dead == 0 else 1
