"""Run a batch one task at a time in the main thread."""

from __future__ import annotations

import typing

from sergeant.killer.alarm import AlarmKiller

if typing.TYPE_CHECKING:
    from sergeant.broker import TaskBatch
    from sergeant.worker import Worker


class SerialExecutor:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        timeouts = worker.config.timeouts
        self.killer = AlarmKiller(timeouts.timeout, timeouts.grace_period)

    def execute(self, batch: TaskBatch) -> list[int]:
        """Run tasks until the batch ends or the worker must stop; return the positions not started.

        Finished tasks are handed to the lease keeper once per batch (also when a task
        escapes with a BaseException), not once per task.
        """
        worker = self.worker
        handle_task = worker.handle_task
        killer = self.killer
        tasks = batch.tasks
        done = 0
        try:
            for task in tasks:
                if worker.should_stop():
                    break
                handle_task(task, killer)
                done += 1
        finally:
            worker.counters['tasks'] += done
            if batch.receipts is not None and done:
                worker.tasks_finished(batch.receipts[:done])
        return list(range(done, len(tasks)))

    def drain(self) -> None:
        self.killer.drain()

    def close(self) -> None:
        self.killer.close()
