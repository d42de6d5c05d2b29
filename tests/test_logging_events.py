"""The LoggingEvents switches, log_to_stdout and user handlers."""

from __future__ import annotations

import logging
import pathlib
import subprocess
import sys
import textwrap

from sergeant import config
from sergeant.objects import Task
from sergeant.worker import Worker


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f'{record.levelname} {record.getMessage()}')


def run_worker(tmp_path: pathlib.Path, events: config.LoggingEvents, handler: logging.Handler) -> None:
    class FailingWorker(Worker):
        def generate_config(self) -> config.WorkerConfig:
            return config.WorkerConfig(
                name='events',
                connector=config.Connector('local', {'file_path': str(tmp_path / 'broker.sqlite3')}),
                max_tasks_per_run=2,
                logging=config.Logging(level=logging.INFO, events=events, handlers=[handler]),
            )

        def work(self, task: Task) -> str:
            if task.kwargs['fail']:
                raise ValueError('task failed on purpose')
            return 'fine'

    worker = FailingWorker()
    worker.init_worker()
    worker.push_tasks([{'fail': False}, {'fail': True}])
    worker.work_loop()
    worker.connector.close()


def test_each_event_is_logged_only_when_its_switch_is_on(tmp_path: pathlib.Path) -> None:
    all_on = ListHandler()
    run_worker(tmp_path / 'on', config.LoggingEvents(on_success=True, on_failure=True), all_on)
    assert any(message.startswith('INFO on_success') for message in all_on.messages)
    assert any(message.startswith('ERROR on_failure') for message in all_on.messages)

    all_off = ListHandler()
    run_worker(tmp_path / 'off', config.LoggingEvents(on_success=False, on_failure=False), all_off)
    assert not any('on_success' in message or 'on_failure' in message for message in all_off.messages)


def test_log_to_stdout_prints_the_worker_events(tmp_path: pathlib.Path) -> None:
    program = textwrap.dedent(f"""
        import logging
        from sergeant import config
        from sergeant.worker import Worker

        class Loud(Worker):
            def generate_config(self):
                return config.WorkerConfig(
                    name='loud',
                    connector=config.Connector('local', {{'file_path': {str(tmp_path / 'b.sqlite3')!r}}}),
                    max_tasks_per_run=1,
                    logging=config.Logging(level=logging.INFO, log_to_stdout=True),
                )

            def work(self, task):
                raise RuntimeError('printed failure')

        worker = Loud()
        worker.init_worker()
        worker.push_task({{}})
        worker.work_loop()
    """)
    finished = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert 'ERROR loud' in finished.stdout and 'RuntimeError: printed failure' in finished.stdout
