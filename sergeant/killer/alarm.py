"""Timeouts and draining for the serial executor.

SIGALRM raises WorkerTimedOut into a task that runs past ``timeout``. A watchdog
thread kills the process when the task cannot be interrupted (it swallows the
exception, or sits in a call that does not return to Python) ``grace_period``
seconds later, and when a task is still running ``grace_period`` seconds after
SIGTERM asked the worker to drain; the supervisor then starts a fresh process and,
under at_least_once, the task comes back after its lease.

The watchdog polls plain attributes instead of waiting on a lock, so arming,
disarming and draining are safe to call from a signal handler.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
import types

from sergeant.interrupts import WorkerTimedOut

logger = logging.getLogger('sergeant.killer')

WATCHDOG_POLL_SECONDS = 0.05
WATCHDOG_IDLE_POLL_SECONDS = 0.5


class AlarmKiller:
    """Arm before a task, disarm after it. Main thread only (signals are delivered there)."""

    def __init__(self, timeout: float, grace_period: float) -> None:
        self.timeout = timeout
        self.grace_period = grace_period
        self.running_since = math.inf
        self.drain_since = math.inf
        self.closed = False
        self.previous_handler = signal.signal(signal.SIGALRM, self._on_alarm) if timeout > 0 else None
        self.watchdog = threading.Thread(target=self._watch, name='sergeant-timeout-watchdog', daemon=True)
        self.watchdog.start()

    def _on_alarm(self, signum: int, frame: types.FrameType | None) -> None:
        raise WorkerTimedOut(f'task ran past its timeout of {self.timeout}s')

    def arm(self) -> None:
        self.running_since = time.monotonic()
        if self.timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def disarm(self) -> None:
        if self.timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self.running_since = math.inf

    def drain(self) -> None:
        """SIGTERM arrived: the running task has ``grace_period`` seconds left."""
        self.drain_since = time.monotonic()

    def kill_deadline(self) -> float:
        deadline = math.inf
        if self.running_since != math.inf:
            if self.timeout > 0:
                deadline = self.running_since + self.timeout + self.grace_period
            if self.drain_since != math.inf:
                deadline = min(deadline, max(self.drain_since, self.running_since) + self.grace_period)
        return deadline

    def _watch(self) -> None:
        while not self.closed:
            time.sleep(WATCHDOG_POLL_SECONDS if self.running_since != math.inf else WATCHDOG_IDLE_POLL_SECONDS)
            if time.monotonic() < self.kill_deadline():
                continue
            logger.critical(
                'task did not stop (timeout %.1fs, grace period %.1fs); killing worker process %d',
                self.timeout,
                self.grace_period,
                os.getpid(),
            )
            for handler in [*logging.getLogger().handlers, *logger.handlers]:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self.disarm()
        self.closed = True
        if self.previous_handler is not None:
            signal.signal(signal.SIGALRM, self.previous_handler)
