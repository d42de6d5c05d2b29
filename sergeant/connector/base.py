"""The interface every broker backend implements, and the lock built on top of it.

The interface is deliberately primitive (queues of opaque byte strings, leases,
dead letters, keys and lock records); task encoding, retries, delivery limits and
the lock's waiting logic live above it, so each backend stays small and the same
contract test suite (tests/connector/) proves every backend behaves the same.

Queue model, per queue name:

- ready:   visible tasks. HIGH priority ones come out before NORMAL ones; within one
           priority, on one node, in the order they were pushed (FIFO).
- delayed: tasks pushed with ``consumable_from`` in the future. They are invisible
           until then and are promoted to ready by the server side of the fetch,
           never held in a client's memory.
- leased:  tasks handed out by :meth:`Connector.lease` and not yet acknowledged.
           Each lease has a deadline; a lease whose deadline passed is handed out
           again by the next ``lease`` call (before any ready task) with its
           ``deliveries`` count raised by one.
- dead:    tasks that could not be handled (undecodable bytes, too many
           deliveries, retries exhausted), kept with a reason until re-driven.
"""

from __future__ import annotations

import abc
import time
import typing

from sergeant.errors import ConfigError, SergeantError

PRIORITIES: typing.Final = ('HIGH', 'NORMAL')


class Leased(typing.NamedTuple):
    """One task handed out under a lease."""

    receipt: typing.Hashable
    """Opaque token; pass it back to ack, renew or release. Valid for this delivery only."""
    payload: bytes
    deliveries: int
    """1 on the first delivery, 2 after the first lease expired, and so on."""


class DeadLetter(typing.NamedTuple):
    payload: bytes
    reason: str
    buried_at: float


class NodeStatus(typing.NamedTuple):
    """One node's queue sizes, or why they could not be read."""

    node: str
    lengths: QueueLengths | None
    error: str | None


class QueueLengths(typing.NamedTuple):
    ready: int
    delayed: int
    leased: int
    dead: int

    def __add__(self, other: tuple[typing.Any, ...]) -> QueueLengths:
        return QueueLengths(*(mine + theirs for mine, theirs in zip(self, other, strict=True)))


def check_priority(priority: str) -> str:
    if priority not in PRIORITIES:
        raise ConfigError(f'priority must be one of {PRIORITIES}, got {priority!r}')
    return priority


class Connector(abc.ABC):
    """One broker backend. Safe to share between threads: task threads push while the loop fetches."""

    #: Human readable name of each node, in the order :meth:`node_status` reports them.
    node_names: list[str]

    # -- queues -------------------------------------------------------------------------
    @abc.abstractmethod
    def push(
        self,
        queue: str,
        payloads: typing.Sequence[bytes],
        priority: str = 'NORMAL',
        consumable_from: float = 0.0,
    ) -> int:
        """Append payloads; ``consumable_from`` in the future makes them delayed. Returns how many."""

    @abc.abstractmethod
    def pop(self, queue: str, count: int) -> list[bytes]:
        """At-most-once fetch: remove and return up to ``count`` ready payloads."""

    @abc.abstractmethod
    def lease(
        self,
        queue: str,
        count: int,
        lease_seconds: float,
        ack: typing.Sequence[typing.Hashable] = (),
    ) -> list[Leased]:
        """At-least-once fetch: lease up to ``count`` tasks, expired leases first.

        ``ack`` receipts are acknowledged in the same round trip, so a worker that
        acknowledges the previous batch while fetching the next pays no extra trip.
        """

    @abc.abstractmethod
    def ack(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        """Delete leased tasks for good. Receipts of expired-and-re-leased tasks are ignored."""

    @abc.abstractmethod
    def renew(self, queue: str, receipts: typing.Sequence[typing.Hashable], lease_seconds: float) -> int:
        """Push the deadline of live leases to now + ``lease_seconds``. Returns how many were still held."""

    @abc.abstractmethod
    def release(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        """Give leased tasks back to the front of ready, as if they had not been fetched."""

    @abc.abstractmethod
    def lengths(self, queue: str) -> QueueLengths:
        """Sizes summed over every node."""

    def node_status(self, queue: str) -> list[NodeStatus]:
        """Sizes per node, with a node that cannot be reached reported instead of raised."""
        try:
            return [NodeStatus(self.node_names[0], self.lengths(queue), None)]
        except SergeantError as error:
            return [NodeStatus(self.node_names[0], None, str(error))]

    @abc.abstractmethod
    def purge(self, queue: str) -> int:
        """Delete ready, delayed and leased tasks of a queue (dead letters stay). Returns how many."""

    # -- dead letters ------------------------------------------------------------------
    @abc.abstractmethod
    def bury(self, queue: str, payloads: typing.Sequence[bytes], reason: str) -> int:
        """Keep payloads in the queue's dead-letter store with a reason."""

    @abc.abstractmethod
    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters, without removing them."""

    @abc.abstractmethod
    def redrive(self, queue: str, limit: int | None = None) -> int:
        """Move up to ``limit`` (all when None) dead letters back to ready, oldest first."""

    @abc.abstractmethod
    def purge_dead(self, queue: str) -> int:
        """Delete the queue's dead letters."""

    # -- keys -------------------------------------------------------------------------
    @abc.abstractmethod
    def set_key(self, name: str, value: bytes) -> bool:
        """Store a value under a name, replacing any earlier one."""

    @abc.abstractmethod
    def get_key(self, name: str) -> bytes | None: ...

    @abc.abstractmethod
    def delete_key(self, name: str) -> bool:
        """True when a key was deleted."""

    # -- lock records (the waiting logic is in Lock) ---------------------------------
    @abc.abstractmethod
    def lock_acquire(self, name: str, token: str, ttl: float) -> bool:
        """Take the lock for ``token`` if it is free or expired."""

    @abc.abstractmethod
    def lock_release(self, name: str, token: str) -> bool:
        """Free the lock if ``token`` holds it."""

    @abc.abstractmethod
    def lock_set_ttl(self, name: str, token: str, ttl: float) -> bool:
        """Change the expiry of a lock that ``token`` holds."""

    @abc.abstractmethod
    def lock_ttl(self, name: str) -> float | None:
        """Seconds left on a held lock, None when it is free."""

    def lock(self, name: str) -> Lock:
        return Lock(self, name)

    @abc.abstractmethod
    def close(self) -> None: ...


class Lock:
    """A named lock held by one owner at a time across every process sharing the connector.

    Each Lock object has its own owner token; only that object's :meth:`release`
    and :meth:`set_ttl` act on the lock. An expired lock is free at once.
    """

    def __init__(self, connector: Connector, name: str) -> None:
        import uuid

        self.connector = connector
        self.name = name
        self.token = uuid.uuid4().hex
        self.acquired = False

    def acquire(self, timeout: float | None = None, check_interval: float = 1.0, ttl: int = 60) -> bool:
        """Wait up to ``timeout`` seconds (None: as long as it takes), polling every ``check_interval``."""
        if ttl <= 0:
            raise ConfigError(f'lock ttl must be positive, got {ttl!r}')
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.connector.lock_acquire(self.name, self.token, ttl):
                self.acquired = True
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            wait = check_interval if deadline is None else min(check_interval, max(0.0, deadline - time.monotonic()))
            time.sleep(wait)

    def release(self) -> bool:
        released = self.connector.lock_release(self.name, self.token)
        self.acquired = False
        return released

    def is_locked(self) -> bool:
        return self.connector.lock_ttl(self.name) is not None

    def set_ttl(self, ttl: int) -> bool:
        if ttl <= 0:
            raise ConfigError(f'lock ttl must be positive, got {ttl!r}')
        return self.connector.lock_set_ttl(self.name, self.token, ttl)

    def get_ttl(self) -> int | None:
        remaining = self.connector.lock_ttl(self.name)
        return None if remaining is None else max(0, round(remaining))

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
