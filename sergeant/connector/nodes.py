"""What the redis and mongo connectors share: several independent nodes behind one Connector.

Each node is a single-node Connector. This class spreads pushes over nodes in a
rotating order (shuffled per client so many producers do not all start on node 0),
fetches by visiting each node at most once per call until the batch is full, keeps
keys and locks on the node a stable hash of the name picks, and takes a node that
fails out of rotation for ``backoff_seconds`` before trying it again.

Failure rules:
- push and bury fail over to the next node only on NodeUnavailableError (nothing
  was sent), so a task is never written twice because of a failover;
- fetches skip a node that is down;
- ack, renew and release to a node that is down are dropped with a warning: the
  lease expires and the task is delivered again (at least once, never lost);
- keys, locks, counting and purging need every node they touch and raise
  ConnectorError naming the node that is down.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import typing
import zlib

from sergeant.connector.base import Connector, DeadLetter, Leased, NodeStatus, QueueLengths, check_priority
from sergeant.errors import ConnectorError, NodeUnavailableError

logger = logging.getLogger('sergeant.connector.nodes')

NodeFactory = typing.Callable[[], Connector]
T = typing.TypeVar('T')


def stable_node_index(name: str, number_of_nodes: int) -> int:
    """The same name maps to the same node in every process, whatever the shuffle."""
    return zlib.crc32(name.encode()) % number_of_nodes


class Node:
    """One node's connector, built lazily, and its health."""

    def __init__(self, name: str, factory: NodeFactory) -> None:
        self.name = name
        self.factory = factory
        self.connector: Connector | None = None
        self.down_until = 0.0
        self.outage_reported = False

    def get(self) -> Connector:
        if self.connector is None:
            self.connector = self.factory()
        return self.connector

    def is_available(self, now: float) -> bool:
        return now >= self.down_until

    def mark_down(self, error: Exception, backoff_seconds: float) -> None:
        self.down_until = time.monotonic() + backoff_seconds
        if not self.outage_reported:
            logger.warning('node %s is down, retrying it every %.1fs: %s', self.name, backoff_seconds, error)
            self.outage_reported = True
        if self.connector is not None:
            try:
                self.connector.close()
            except Exception:  # closing a broken client may fail too; it is dropped either way
                pass
            self.connector = None

    def mark_up(self) -> None:
        if self.outage_reported:
            logger.warning('node %s is reachable again', self.name)
            self.outage_reported = False
        self.down_until = 0.0


class MultiNodeConnector(Connector):
    def __init__(self, nodes: list[Node], backoff_seconds: float = 5.0) -> None:
        if not nodes:
            raise ConnectorError('a multi-node connector needs at least one node')
        self.nodes = nodes
        self.node_names = [node.name for node in nodes]
        self.backoff_seconds = backoff_seconds
        self.order = list(range(len(nodes)))
        random.shuffle(self.order)
        self.push_cursor = 0
        self.fetch_cursor = 0

    # -- plumbing ---------------------------------------------------------------------
    def _call(self, index: int, operation: typing.Callable[[Connector], T]) -> T:
        """Run one operation on one node, keeping its health up to date."""
        node = self.nodes[index]
        try:
            result = operation(node.get())
        except ConnectorError as error:
            node.mark_down(error, self.backoff_seconds)
            raise
        node.mark_up()
        return result

    def _rotation(self, cursor: int) -> list[int]:
        """Node indexes starting at ``cursor`` in the shuffled order, available ones first."""
        now = time.monotonic()
        rotated = self.order[cursor:] + self.order[:cursor]
        available = [index for index in rotated if self.nodes[index].is_available(now)]
        return available or rotated

    def _required(self, index: int, operation: typing.Callable[[Connector], T]) -> T:
        """An operation only this node can serve: a node that is down is an error."""
        node = self.nodes[index]
        if not node.is_available(time.monotonic()):
            raise ConnectorError(f'node {node.name} is down (it failed recently and is in back-off)')
        return self._call(index, operation)

    def _to_any_node(self, operation: typing.Callable[[Connector], T]) -> T:
        """Write to the next node in rotation, failing over only when nothing was sent."""
        errors: list[str] = []
        for index in self._rotation(self.push_cursor):
            self.push_cursor = (self.order.index(index) + 1) % len(self.order)
            try:
                return self._call(index, operation)
            except NodeUnavailableError as error:
                errors.append(f'{self.nodes[index].name}: {error}')
        raise ConnectorError(f'no node is reachable: {"; ".join(errors)}')

    def _by_node(self, receipts: typing.Sequence[typing.Hashable]) -> dict[int, list[typing.Hashable]]:
        grouped: dict[int, list[typing.Hashable]] = {}
        for receipt in receipts:
            index, inner = typing.cast(tuple[int, typing.Hashable], receipt)
            grouped.setdefault(index, []).append(inner)
        return grouped

    def _per_node_receipts(
        self,
        receipts: typing.Sequence[typing.Hashable],
        what: str,
        operation: typing.Callable[[Connector, list[typing.Hashable]], int],
    ) -> int:
        done = 0
        for index, inner in self._by_node(receipts).items():
            try:
                done += self._call(index, lambda connector, inner=inner: operation(connector, inner))  # type: ignore[misc]
            except ConnectorError as error:
                logger.warning(
                    '%s of %d task(s) on node %s failed, their leases will expire and they will be delivered again: %s',
                    what,
                    len(inner),
                    self.nodes[index].name,
                    error,
                )
        return done

    def _every_node(self, operation: typing.Callable[[Connector], T]) -> list[T]:
        return [self._required(index, operation) for index in range(len(self.nodes))]

    # -- queues -------------------------------------------------------------------------
    def push(
        self, queue: str, payloads: typing.Sequence[bytes], priority: str = 'NORMAL', consumable_from: float = 0.0
    ) -> int:
        check_priority(priority)
        if not payloads:
            return 0
        return self._to_any_node(lambda connector: connector.push(queue, payloads, priority, consumable_from))

    def _fetch(self, count: int, fetch_one_node: typing.Callable[..., list[T]]) -> list[T]:
        fetched: list[T] = []
        rotation = self._rotation(self.fetch_cursor)
        self.fetch_cursor = (self.fetch_cursor + 1) % len(self.order)
        now = time.monotonic()
        for index in rotation:
            if not self.nodes[index].is_available(now):
                continue
            wanted = count - len(fetched)
            try:
                fetched.extend(self._call(index, functools.partial(fetch_one_node, index, wanted=wanted)))
            except ConnectorError:
                continue
            if len(fetched) >= count:
                break
        return fetched

    def pop(self, queue: str, count: int) -> list[bytes]:
        return self._fetch(count, lambda index, connector, wanted: connector.pop(queue, wanted))

    def lease(
        self, queue: str, count: int, lease_seconds: float, ack: typing.Sequence[typing.Hashable] = ()
    ) -> list[Leased]:
        pending_acks = self._by_node(ack)

        def lease_one_node(index: int, connector: Connector, wanted: int) -> list[Leased]:
            leased = connector.lease(queue, wanted, lease_seconds, pending_acks.get(index, ()))
            pending_acks.pop(index, None)  # sent: only acks of nodes not visited (or failed) remain
            return [Leased((index, item.receipt), item.payload, item.deliveries) for item in leased]

        fetched = self._fetch(count, lease_one_node)
        if pending_acks:
            self._per_node_receipts(
                [(index, inner) for index, inners in pending_acks.items() for inner in inners],
                'acknowledgement',
                lambda connector, inner: connector.ack(queue, inner),
            )
        return fetched

    def ack(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        return self._per_node_receipts(
            receipts, 'acknowledgement', lambda connector, inner: connector.ack(queue, inner)
        )

    def renew(self, queue: str, receipts: typing.Sequence[typing.Hashable], lease_seconds: float) -> int:
        return self._per_node_receipts(
            receipts, 'lease renewal', lambda connector, inner: connector.renew(queue, inner, lease_seconds)
        )

    def release(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        return self._per_node_receipts(receipts, 'release', lambda connector, inner: connector.release(queue, inner))

    def lengths(self, queue: str) -> QueueLengths:
        total = QueueLengths(0, 0, 0, 0)
        for lengths in self._every_node(lambda connector: connector.lengths(queue)):
            total = total + lengths
        return total

    def node_status(self, queue: str) -> list[NodeStatus]:
        statuses = []
        for index, node in enumerate(self.nodes):
            try:
                statuses.append(NodeStatus(node.name, self._required(index, lambda c: c.lengths(queue)), None))
            except ConnectorError as error:
                statuses.append(NodeStatus(node.name, None, str(error)))
        return statuses

    def purge(self, queue: str) -> int:
        return sum(self._every_node(lambda connector: connector.purge(queue)))

    # -- dead letters ------------------------------------------------------------------
    def bury(self, queue: str, payloads: typing.Sequence[bytes], reason: str) -> int:
        if not payloads:
            return 0
        return self._to_any_node(lambda connector: connector.bury(queue, payloads, reason))

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        letters = [
            letter
            for per_node in self._every_node(lambda connector: connector.dead_letters(queue, limit))
            for letter in per_node
        ]
        letters.sort(key=lambda letter: letter.buried_at)
        return letters[:limit]

    def redrive(self, queue: str, limit: int | None = None) -> int:
        moved = 0
        for index in range(len(self.nodes)):
            if limit is not None and moved >= limit:
                break
            remaining = None if limit is None else limit - moved
            moved += self._required(index, lambda connector, remaining=remaining: connector.redrive(queue, remaining))  # type: ignore[misc]
        return moved

    def purge_dead(self, queue: str) -> int:
        return sum(self._every_node(lambda connector: connector.purge_dead(queue)))

    # -- keys and locks: on the node the name hashes to -------------------------------
    def _home(self, name: str) -> int:
        return stable_node_index(name, len(self.nodes))

    def set_key(self, name: str, value: bytes) -> bool:
        return self._required(self._home(name), lambda connector: connector.set_key(name, value))

    def get_key(self, name: str) -> bytes | None:
        return self._required(self._home(name), lambda connector: connector.get_key(name))

    def delete_key(self, name: str) -> bool:
        return self._required(self._home(name), lambda connector: connector.delete_key(name))

    def lock_acquire(self, name: str, token: str, ttl: float) -> bool:
        return self._required(self._home(name), lambda connector: connector.lock_acquire(name, token, ttl))

    def lock_release(self, name: str, token: str) -> bool:
        return self._required(self._home(name), lambda connector: connector.lock_release(name, token))

    def lock_set_ttl(self, name: str, token: str, ttl: float) -> bool:
        return self._required(self._home(name), lambda connector: connector.lock_set_ttl(name, token, ttl))

    def lock_ttl(self, name: str) -> float | None:
        return self._required(self._home(name), lambda connector: connector.lock_ttl(name))

    def close(self) -> None:
        for node in self.nodes:
            if node.connector is not None:
                node.connector.close()
                node.connector = None
