"""Run a batch one task at a time in the main thread."""

from __future__ import annotations

import typing

from sergeant.killer.alarm import AlarmKiller

if typing.TYPE_CHECKING:
    from sergeant.worker import Fetched, Worker


class SerialExecutor:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        timeouts = worker.config.timeouts
        self.killer = AlarmKiller(timeouts.timeout, timeouts.grace_period)

    def execute(self, batch: list[Fetched]) -> list[Fetched]:
        """Run tasks until the batch ends or the worker must stop; return the ones not started."""
        worker = self.worker
        for position, fetched in enumerate(batch):
            if worker.should_stop():
                return batch[position:]
            worker.handle_task(fetched.task, self.killer)
            worker.task_finished(fetched)
        return []

    def drain(self) -> None:
        self.killer.drain()

    def close(self) -> None:
        self.killer.close()
