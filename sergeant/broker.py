"""Task-level operations on top of one connector and one encoder.

Everything that is policy rather than storage lives here: which bytes are not a
task (dead letter, never a crash loop), how many deliveries a task may take before
it is presumed to kill its worker, how delays and priorities are spelt.
"""

from __future__ import annotations

import logging
import time
import typing

from sergeant.connector.base import Connector, DeadLetter, Lock, QueueLengths, check_priority
from sergeant.encoder import Encoder
from sergeant.errors import ConfigError, DecodeError
from sergeant.objects import Task

logger = logging.getLogger('sergeant.broker')

Receipt = typing.Hashable


class TaskBatch(typing.NamedTuple):
    """Fetched tasks, and under at_least_once their receipts in the same order (None under at_most_once).

    Two parallel lists rather than a pair per task: the hot path makes no per-task tuple.
    """

    tasks: list[Task]
    receipts: list[Receipt] | None


def _consumable_from(value: float | None) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f'consumable_from must be a Unix time (int or float) or None, got {value!r}')
    return float(value)


class Broker:
    def __init__(self, connector: Connector, encoder: Encoder) -> None:
        self.connector = connector
        self.encoder = encoder

    # -- producing ----------------------------------------------------------------------
    def push_kwargs(
        self,
        queue: str,
        kwargs_list: typing.Sequence[dict[str, typing.Any]],
        priority: str = 'NORMAL',
        consumable_from: float | None = None,
        trace_id: str | None = None,
    ) -> bool:
        check_priority(priority)
        for kwargs in kwargs_list:
            if not isinstance(kwargs, dict):
                raise ConfigError(f'task kwargs must be a dict, got {type(kwargs).__name__}: {kwargs!r}')
        if not kwargs_list:
            return True
        payloads = self.encoder.encode_kwargs_list(kwargs_list, trace_id, time.time())
        return self.connector.push(queue, payloads, priority, _consumable_from(consumable_from)) == len(payloads)

    def push_tasks(
        self, queue: str, tasks: typing.Sequence[Task], priority: str = 'NORMAL', consumable_from: float | None = None
    ) -> bool:
        payloads = [self.encoder.encode(task) for task in tasks]
        return self.connector.push(queue, payloads, check_priority(priority), _consumable_from(consumable_from)) == len(
            payloads
        )

    # -- consuming ----------------------------------------------------------------------
    def _bury_undecodable(self, queue: str, payload: bytes, error: DecodeError) -> None:
        """Bytes that are not a task go to the dead letters with the decoder's reason, never back to a worker."""
        logger.error('queue %s: a payload is not a task and goes to the dead letters: %s', queue, error)
        self.connector.bury(queue, [payload], str(error))

    def pop_tasks(self, queue: str, count: int) -> list[Task]:
        """At most once: the tasks are gone from the broker when this returns."""
        tasks: list[Task] = []
        decode = self.encoder.decode
        for payload in self.connector.pop(queue, count):
            try:
                tasks.append(decode(payload))
            except DecodeError as error:
                self._bury_undecodable(queue, payload, error)
        return tasks

    def lease_tasks(
        self,
        queue: str,
        count: int,
        lease_seconds: float,
        max_deliveries: int,
        ack: typing.Sequence[Receipt] = (),
    ) -> TaskBatch:
        """At least once: tasks stay in the broker until acknowledged.

        A task delivered more than ``max_deliveries`` times (its worker died each time)
        and bytes that are not a task go to the dead letters instead of to the worker.
        """
        tasks: list[Task] = []
        receipts: list[Receipt] = []
        leased = self.connector.lease(queue, count, lease_seconds, ack)
        if not leased:
            return TaskBatch(tasks, receipts)
        doomed: list[Receipt] = []
        decode = self.encoder.decode
        append_task = tasks.append
        append_receipt = receipts.append
        for receipt, payload, deliveries in leased:
            if deliveries > max_deliveries:
                reason = f'delivered {deliveries} times without being finished (max_deliveries={max_deliveries})'
                logger.error('queue %s: a task %s; it goes to the dead letters', queue, reason)
                self.connector.bury(queue, [payload], reason)
                doomed.append(receipt)
                continue
            try:
                append_task(decode(payload))
            except DecodeError as error:
                self._bury_undecodable(queue, payload, error)
                doomed.append(receipt)
                continue
            append_receipt(receipt)
        if doomed:
            self.connector.ack(queue, doomed)
        return TaskBatch(tasks, receipts)

    def ack(self, queue: str, receipts: typing.Sequence[Receipt]) -> int:
        return self.connector.ack(queue, receipts)

    def renew(self, queue: str, receipts: typing.Sequence[Receipt], lease_seconds: float) -> int:
        return self.connector.renew(queue, receipts, lease_seconds)

    def release(self, queue: str, receipts: typing.Sequence[Receipt]) -> int:
        return self.connector.release(queue, receipts)

    # -- inspecting and maintenance ---------------------------------------------------
    def lengths(self, queue: str) -> QueueLengths:
        return self.connector.lengths(queue)

    def number_of_enqueued_tasks(self, queue: str, include_delayed: bool = False) -> int:
        lengths = self.connector.lengths(queue)
        return lengths.ready + (lengths.delayed if include_delayed else 0)

    def purge_tasks(self, queue: str) -> bool:
        self.connector.purge(queue)
        return True

    def bury_task(self, queue: str, task: Task, reason: str) -> None:
        self.connector.bury(queue, [self.encoder.encode(task)], reason)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        return self.connector.dead_letters(queue, limit)

    def redrive(self, queue: str, limit: int | None = None) -> int:
        return self.connector.redrive(queue, limit)

    def lock(self, name: str) -> Lock:
        return self.connector.lock(name)
