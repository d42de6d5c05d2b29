"""Timeouts for the serial executor: SIGALRM raises into the task, a watchdog kills the
process when the task cannot be interrupted (a C call or a blocked syscall that
ignores signals) so the supervisor can start a fresh one."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import types

from sergeant.interrupts import WorkerTimedOut

logger = logging.getLogger('sergeant.killer')


class AlarmKiller:
    """Arm before a task, disarm after it. Main thread only (signals are delivered there)."""

    def __init__(self, timeout: float, grace_period: float) -> None:
        self.timeout = timeout
        self.grace_period = grace_period
        self.generation = 0
        self.armed_generation = -1
        self.kill_at = 0.0
        self.condition = threading.Condition()
        self.previous_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        self.watchdog = threading.Thread(target=self._watch, name='sergeant-timeout-watchdog', daemon=True)
        self.watchdog.start()

    def _on_alarm(self, signum: int, frame: types.FrameType | None) -> None:
        raise WorkerTimedOut(f'task ran past its timeout of {self.timeout}s')

    def arm(self) -> None:
        with self.condition:
            self.generation += 1
            self.armed_generation = self.generation
            self.kill_at = time.monotonic() + self.timeout + self.grace_period
            self.condition.notify()
        signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def disarm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        with self.condition:
            self.armed_generation = -1
            self.condition.notify()

    def _watch(self) -> None:
        with self.condition:
            while True:
                if self.armed_generation < 0:
                    self.condition.wait()
                    continue
                remaining = self.kill_at - time.monotonic()
                if remaining > 0:
                    self.condition.wait(remaining)
                    continue
                logger.critical(
                    'task did not stop within timeout %.1fs + grace period %.1fs; killing worker process %d',
                    self.timeout,
                    self.grace_period,
                    os.getpid(),
                )
                for handler in logging.getLogger().handlers + logger.handlers:
                    handler.flush()
                os.kill(os.getpid(), signal.SIGKILL)

    def close(self) -> None:
        self.disarm()
        signal.signal(signal.SIGALRM, self.previous_handler)
