"""Control flow a task can trigger. BaseException subclasses, so ``except Exception`` in
user code does not swallow them."""

from __future__ import annotations


class WorkerInterrupt(BaseException):
    """Base of every interrupt the worker raises into a running task."""


class WorkerRetry(WorkerInterrupt):
    """The task was pushed again with ``run_count + 1``."""


class WorkerMaxRetries(WorkerInterrupt):
    """The task reached ``max_retries`` and was moved to the dead letters instead of pushed again."""


class WorkerRequeue(WorkerInterrupt):
    """The task was pushed again unchanged."""


class WorkerStop(WorkerInterrupt):
    """The worker stops after this task and is not started again."""


class WorkerRespawn(WorkerInterrupt):
    """The worker ends after this task so the supervisor starts a fresh process."""


class WorkerTimedOut(WorkerInterrupt):
    """The task ran past ``timeouts.timeout``."""
