"""Run a batch in a pool of threads.

A task past its timeout gets WorkerTimedOut raised in its thread (an asynchronous
exception, delivered when the thread next runs Python code); a thread that stays
stuck past the grace period is reported in the summary.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import threading
import time
import typing

from sergeant.interrupts import WorkerTimedOut

if typing.TYPE_CHECKING:
    from sergeant.broker import TaskBatch
    from sergeant.objects import Task
    from sergeant.worker import Worker


def raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> bool:
    """Raise ``exception`` in another thread at its next Python instruction (None clears a pending one)."""
    argument = None if exception is None else ctypes.py_object(exception)
    changed = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), argument)
    return bool(changed == 1)


class ThreadedExecutor:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=worker.config.number_of_threads, thread_name_prefix='sergeant-task'
        )
        self.timeout = worker.config.timeouts.timeout
        self.grace_period = worker.config.timeouts.grace_period
        self.running: dict[int, float] = {}
        self.interrupted: dict[int, float] = {}
        self.stuck_threads = 0
        self.mutex = threading.Lock()
        self.watching = threading.Event()
        if self.timeout > 0:
            threading.Thread(target=self._watch, name='sergeant-thread-timeouts', daemon=True).start()

    def arm(self) -> None:
        with self.mutex:
            self.running[threading.get_ident()] = time.monotonic()

    def disarm(self) -> None:
        thread_id = threading.get_ident()
        with self.mutex:
            self.running.pop(thread_id, None)
            if self.interrupted.pop(thread_id, None) is not None:
                raise_in_thread(thread_id, None)  # clear an interrupt that has not fired yet

    def _run(self, task: Task, receipt: typing.Hashable | None) -> bool:
        """Returns False when the task was not started because the worker is stopping."""
        if self.worker.should_stop():
            return False
        self.worker._count('tasks')
        self.worker.handle_task(task, self if self.timeout > 0 else None)
        if receipt is not None:
            self.worker.tasks_finished([receipt])
        return True

    def execute(self, batch: TaskBatch) -> list[int]:
        receipts = batch.receipts if batch.receipts is not None else [None] * len(batch.tasks)
        futures = [
            self.pool.submit(self._run, task, receipt) for task, receipt in zip(batch.tasks, receipts, strict=True)
        ]
        return [position for position, future in enumerate(futures) if not future.result()]

    def _watch(self) -> None:
        while not self.watching.wait(min(0.1, self.timeout / 4)):
            now = time.monotonic()
            with self.mutex:
                for thread_id, started in list(self.running.items()):
                    if thread_id in self.interrupted:
                        if now - self.interrupted[thread_id] > self.grace_period:
                            self.stuck_threads += 1
                            self.interrupted[thread_id] = float('inf')
                        continue
                    if now - started >= self.timeout:
                        raise_in_thread(thread_id, WorkerTimedOut)
                        self.interrupted[thread_id] = now

    def drain(self) -> None:
        """Running threads cannot be killed one by one; the supervisor kills the process after the grace period."""

    def close(self) -> None:
        self.watching.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
