"""Process supervision: keep N worker processes running.

A worker that ends (max_tasks_per_run reached, respawn(), a crash, or killed for
using more memory than allowed) is replaced; one that called stop() is not. A worker
that fails at start-up is restarted after a back-off that doubles up to a minute,
never in a tight loop. SIGTERM (or SIGINT) stops every worker: each finishes its
current task, gives unstarted ones back, and is killed if it is still alive after
the grace period.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
import types
import typing

import psutil

POLL_SECONDS: typing.Final = 0.2
START_BACKOFF_SECONDS: typing.Final = 1.0
MAX_BACKOFF_SECONDS: typing.Final = 60.0
STOP_MARGIN_SECONDS: typing.Final = 5.0
DEFAULT_GRACE_SECONDS: typing.Final = 10.0


class SupervisedWorker:
    """One child process and the pipe its summary arrives on."""

    def __init__(self, command: list[str], slot: int) -> None:
        self.slot = slot
        read_fd, write_fd = os.pipe()
        self.process = subprocess.Popen(
            [*command, '--summary-fd', str(write_fd)], pass_fds=(write_fd,), start_new_session=False
        )
        os.close(write_fd)
        self.summary_stream = os.fdopen(read_fd, 'r')
        self.started = time.monotonic()
        self.killed_for_memory = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def read_summary(self) -> dict[str, typing.Any] | None:
        try:
            text = self.summary_stream.read()
        finally:
            self.summary_stream.close()
        try:
            summary = json.loads(text) if text else None
        except ValueError:
            return None
        return summary if isinstance(summary, dict) else None

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0


class Supervisor:
    def __init__(
        self,
        worker_module_name: str,
        worker_class_name: str,
        concurrent_workers: int,
        max_worker_memory_usage: int | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(concurrent_workers, bool) or not isinstance(concurrent_workers, int) or concurrent_workers < 1:
            raise ValueError(f'concurrent_workers must be an int >= 1, got {concurrent_workers!r}')
        if max_worker_memory_usage is not None and (
            not isinstance(max_worker_memory_usage, int) or max_worker_memory_usage <= 0
        ):
            raise ValueError(
                f'max_worker_memory_usage must be a positive number of bytes, got {max_worker_memory_usage!r}'
            )
        self.worker_module_name = worker_module_name
        self.worker_class_name = worker_class_name
        self.concurrent_workers = concurrent_workers
        self.max_worker_memory_usage = max_worker_memory_usage
        self.logger = logger or default_logger()
        self.workers: dict[int, SupervisedWorker] = {}
        self.stopping = False
        self.start_failures = 0
        self.next_start_at = 0.0
        self.stopped_slots: set[int] = set()
        self.events: list[dict[str, typing.Any]] = []
        self.stop_grace_seconds = DEFAULT_GRACE_SECONDS + STOP_MARGIN_SECONDS

    def _read_grace_period(self) -> None:
        """A worker gets its own grace_period to drain after SIGTERM, plus a margin, before it is killed."""
        try:
            from sergeant.child import load_worker_class

            worker_config = load_worker_class(self.worker_module_name, self.worker_class_name)().config
            self.stop_grace_seconds = worker_config.timeouts.grace_period + STOP_MARGIN_SECONDS
        except Exception as error:  # the workers will report the same error with its traceback
            self.logger.warning(
                'cannot read the worker config (%s); stopping workers allows %.0fs', error, self.stop_grace_seconds
            )

    def command(self) -> list[str]:
        return [
            sys.executable,
            '-m',
            'sergeant.child',
            '--worker-module',
            self.worker_module_name,
            '--worker-class',
            self.worker_class_name,
        ]

    def _on_signal(self, signum: int, frame: types.FrameType | None) -> None:
        if not self.stopping:
            self.logger.info('supervisor received signal %d: stopping %d worker(s)', signum, len(self.workers))
        self.stopping = True

    def _spawn(self, slot: int) -> None:
        worker = SupervisedWorker(self.command(), slot)
        self.workers[slot] = worker
        self.logger.info('spawned worker pid=%d slot=%d', worker.pid, slot)

    def _record(self, event: str, worker: SupervisedWorker, **details: typing.Any) -> None:
        entry = {'event': event, 'pid': worker.pid, 'slot': worker.slot, **details}
        self.events.append(entry)
        level = logging.INFO if event in ('worker_finished', 'worker_respawn') else logging.WARNING
        self.logger.log(level, '%s pid=%d %s', event, worker.pid, json.dumps(details, default=repr))

    def _reap(self, slot: int, worker: SupervisedWorker, exit_code: int) -> None:
        summary = worker.read_summary()
        del self.workers[slot]
        if worker.killed_for_memory:
            self._record('worker_killed_memory', worker, exit_code=exit_code, summary=summary)
            return
        if summary is None:
            self._record('worker_crashed', worker, exit_code=exit_code)
            return
        if summary.get('initialize_exception'):
            self.start_failures += 1
            backoff = min(START_BACKOFF_SECONDS * 2 ** (self.start_failures - 1), MAX_BACKOFF_SECONDS)
            self.next_start_at = time.monotonic() + backoff
            self._record(
                'worker_start_failed',
                worker,
                exit_code=exit_code,
                retry_in_seconds=backoff,
                reason=summary['initialize_exception'],
            )
            return
        self.start_failures = 0
        if summary.get('stop'):
            self.stopped_slots.add(slot)
            self._record('worker_stopped', worker, exit_code=exit_code, summary=summary)
        elif summary.get('respawn'):
            self._record('worker_respawn', worker, exit_code=exit_code, summary=summary)
        elif summary.get('executor_exception'):
            self._record('worker_failed', worker, exit_code=exit_code, summary=summary)
        else:
            self._record('worker_finished', worker, exit_code=exit_code, summary=summary)

    def _check_memory(self) -> None:
        if self.max_worker_memory_usage is None:
            return
        for worker in self.workers.values():
            rss = worker.rss()
            if rss > self.max_worker_memory_usage and not worker.killed_for_memory:
                self.logger.warning(
                    'worker pid=%d uses %d bytes, over the limit of %d: killing it',
                    worker.pid,
                    rss,
                    self.max_worker_memory_usage,
                )
                worker.killed_for_memory = True
                worker.process.kill()

    def supervise_once(self) -> None:
        for slot, worker in list(self.workers.items()):
            exit_code = worker.process.poll()
            if exit_code is not None:
                self._reap(slot, worker, exit_code)
        self._check_memory()
        if self.stopping or time.monotonic() < self.next_start_at:
            return
        for slot in range(self.concurrent_workers):
            if slot not in self.workers and slot not in self.stopped_slots:
                self._spawn(slot)
                if self.start_failures:
                    break

    def _stop_all(self) -> None:
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace_seconds
        while self.workers and time.monotonic() < deadline:
            for slot, worker in list(self.workers.items()):
                exit_code = worker.process.poll()
                if exit_code is not None:
                    self._reap(slot, worker, exit_code)
            time.sleep(0.05)
        for slot, worker in list(self.workers.items()):
            self.logger.warning(
                'worker pid=%d did not stop within %.0fs: killing it', worker.pid, self.stop_grace_seconds
            )
            worker.process.kill()
            self._reap(slot, worker, worker.process.wait())

    def start(self) -> None:
        """Supervise until SIGTERM/SIGINT, or until every worker called stop()."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
        self._read_grace_period()
        self.logger.info(
            'supervisor pid=%d starting %d worker(s) of %s.%s',
            os.getpid(),
            self.concurrent_workers,
            self.worker_module_name,
            self.worker_class_name,
        )
        try:
            while not self.stopping:
                self.supervise_once()
                if len(self.stopped_slots) == self.concurrent_workers and not self.workers:
                    self.logger.info('every worker called stop(): supervisor exits')
                    break
                time.sleep(POLL_SECONDS)
        finally:
            self._stop_all()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.logger.info('supervisor stopped')


def default_logger() -> logging.Logger:
    logger = logging.getLogger('sergeant.supervisor')
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return logger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m sergeant.supervisor', description='Run and supervise workers.')
    parser.add_argument('--worker-module', required=True, help='module that defines the worker class')
    parser.add_argument('--worker-class', required=True, help='the Worker subclass to run')
    parser.add_argument('--concurrent-workers', type=int, required=True, help='how many worker processes')
    parser.add_argument(
        '--max-worker-memory-usage',
        type=int,
        default=None,
        help='kill and replace a worker whose RSS exceeds this many bytes',
    )
    arguments = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())
    try:
        supervisor = Supervisor(
            arguments.worker_module,
            arguments.worker_class,
            arguments.concurrent_workers,
            arguments.max_worker_memory_usage,
        )
    except ValueError as error:
        parser.error(str(error))
    supervisor.start()
    return 0


if __name__ == '__main__':
    sys.exit(main())
