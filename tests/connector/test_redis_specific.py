"""Redis-only behaviour the shared contract cannot express: node placement, real node failure,
error classification, locks held by another process, and the batch leases (partial
acknowledgements, splits of expired batches, partial releases, the leased counter)."""

from __future__ import annotations

import collections
import itertools
import multiprocessing
import pathlib
import re
import shutil
import socket
import subprocess
import time
import typing

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sergeant import config
from sergeant.connector import Connector, connect
from sergeant.connector.nodes import stable_node_index
from sergeant.connector.redis.connector import (
    INDEX_BITS,
    STAGED_LEASE_SIZE,
    RedisNodeConnector,
    node_name,
    queue_keys,
    receipt_runs,
)
from sergeant.errors import ConnectorError, NodeUnavailableError
from tests.backends import REDIS_PORTS, connector_config, redis_node

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def wait_for_ping(port: int, up: bool, seconds: float = 10.0) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                answered = bool(client.ping())
            except redis.RedisError:
                answered = False
            if answered == up:
                return
            time.sleep(0.05)
    finally:
        client.close()
    raise AssertionError(f'redis on port {port} is still {"down" if up else "up"} after {seconds}s')


class RedisProcess:
    """A redis-server this test owns; ``persistent`` keeps its data across a shutdown and restart."""

    def __init__(self, directory: pathlib.Path, persistent: bool) -> None:
        self.port = free_port()
        self.directory = directory / str(self.port)
        self.directory.mkdir()
        self.persistent = persistent
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        arguments = ['--port', str(self.port), '--bind', '127.0.0.1', '--save', '', '--dir', str(self.directory)]
        if self.persistent:
            arguments += ['--appendonly', 'yes', '--appendfsync', 'always']
        else:
            arguments += ['--appendonly', 'no']
        self.process = subprocess.Popen(
            ['redis-server', *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_ping(self.port, up=True)

    def shutdown(self) -> None:
        subprocess.run(
            ['redis-cli', '-p', str(self.port), 'shutdown', 'nosave'], capture_output=True, timeout=10, check=False
        )
        if self.process is not None:
            self.process.wait(timeout=10)
        wait_for_ping(self.port, up=False)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_process(tmp_path: pathlib.Path) -> typing.Iterator[typing.Callable[[bool], RedisProcess]]:
    if shutil.which('redis-server') is None or shutil.which('redis-cli') is None:
        pytest.skip('redis-server is not installed')
    started: list[RedisProcess] = []

    def start(persistent: bool = False) -> RedisProcess:
        server = RedisProcess(tmp_path, persistent)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.kill()


def multi_node_settings(ports: typing.Sequence[int]) -> config.Connector:
    return config.Connector('redis', {'nodes': [redis_node(port) for port in ports], 'backoff_seconds': 1.0})


def batches(count: int, size: int, prefix: str) -> list[list[bytes]]:
    return [[f'{prefix}-{batch}-{index}'.encode() for index in range(size)] for batch in range(count)]


def consume_all(connector: Connector, queue: str) -> list[bytes]:
    """Lease and acknowledge until the queue is empty, acknowledging each batch with the next lease."""
    consumed: list[bytes] = []
    leased = connector.lease(queue, 250, 30.0)
    while leased:
        consumed.extend(item.payload for item in leased)
        leased = connector.lease(queue, 250, 30.0, ack=[item.receipt for item in leased])
    return consumed


def test_pushes_are_balanced_over_two_nodes(tmp_path: pathlib.Path, queue_name: str) -> None:
    connector = connect(connector_config('redis-multi', tmp_path))
    try:
        for batch in batches(10, 1000, 'balance'):
            connector.push(queue_name, batch)
        per_node = [status.lengths.ready for status in connector.node_status(queue_name) if status.lengths is not None]
        assert len(per_node) == 2
        assert sum(per_node) == 10_000
        assert all(4_000 <= ready <= 6_000 for ready in per_node), per_node
    finally:
        connector.purge(queue_name)
        connector.close()


def test_keys_and_locks_of_one_name_live_on_one_node(tmp_path: pathlib.Path, queue_name: str) -> None:
    settings = connector_config('redis-multi', tmp_path)
    first, second = connect(settings), connect(settings)
    nodes = [RedisNodeConnector('127.0.0.1', port) for port in REDIS_PORTS]
    names = [f'{queue_name}-name-{index}' for index in range(20)]
    try:
        for name in names:
            home = stable_node_index(name, len(nodes))
            assert first.set_key(name, name.encode())
            assert second.get_key(name) == name.encode()
            assert [node.get_key(name) is not None for node in nodes] == [index == home for index in range(len(nodes))]

            holder = first.lock(name)
            assert holder.acquire(timeout=0, ttl=30)
            assert second.lock(name).acquire(timeout=0) is False
            assert [node.lock_ttl(name) is not None for node in nodes] == [index == home for index in range(len(nodes))]
            assert holder.release()
        assert {stable_node_index(name, len(nodes)) for name in names} == {0, 1}
    finally:
        for name in names:
            first.delete_key(name)
        for connector in (first, second, *nodes):
            connector.close()


def test_a_node_that_dies_is_skipped_then_used_again_and_no_task_is_lost(
    redis_process: typing.Callable[[bool], RedisProcess], queue_name: str
) -> None:
    healthy, failing = redis_process(False), redis_process(True)
    failing_name = node_name('127.0.0.1', failing.port, 0)
    connector = connect(multi_node_settings([healthy.port, failing.port]))
    healthy_node = RedisNodeConnector('127.0.0.1', healthy.port)
    failing_node = RedisNodeConnector('127.0.0.1', failing.port)
    pushed: list[bytes] = []
    planned = iter(batches(20, 100, 'failover'))

    def push_batches(count: int) -> None:
        for batch in itertools.islice(planned, count):
            assert connector.push(queue_name, batch) == len(batch)
            pushed.extend(batch)

    push_batches(8)
    stored_on_failing = failing_node.lengths(queue_name).ready
    assert 0 < stored_on_failing < len(pushed)

    failing.shutdown()
    ready_on_healthy = healthy_node.lengths(queue_name).ready
    push_batches(10)
    assert healthy_node.lengths(queue_name).ready == ready_on_healthy + 1000

    with pytest.raises(ConnectorError, match=re.escape(failing_name)):
        connector.lengths(queue_name)
    name_on_failing = next(
        name for name in (f'{queue_name}-key-{index}' for index in itertools.count()) if stable_node_index(name, 2) == 1
    )
    with pytest.raises(ConnectorError, match=re.escape(failing_name)):
        connector.get_key(name_on_failing)
    with pytest.raises(ConnectorError, match=re.escape(failing_name)):
        connector.lock(name_on_failing).acquire(timeout=0)

    failing.start()
    assert failing_node.lengths(queue_name).ready == stored_on_failing, 'the append-only file kept its tasks'
    time.sleep(1.1)  # the back-off
    push_batches(2)
    assert failing_node.lengths(queue_name).ready > stored_on_failing, 'the node is used again after the back-off'
    assert len(pushed) == 2000

    consumed = consume_all(connector, queue_name)
    assert collections.Counter(consumed) == collections.Counter(pushed)
    assert len(set(consumed)) == len(consumed) == 2000
    assert connector.lengths(queue_name) == (0, 0, 0, 0)
    for node in (connector, healthy_node, failing_node):
        node.close()


def test_a_node_that_refuses_connections_is_unavailable_and_named() -> None:
    port = free_port()
    connector = RedisNodeConnector('127.0.0.1', port, socket_connect_timeout=0.5)  # built while nothing listens
    with pytest.raises(NodeUnavailableError, match=re.escape(node_name('127.0.0.1', port, 0))):
        connector.push('anything', [b'x'])
    connector.close()


def test_a_timeout_after_sending_is_not_failover_safe(
    redis_process: typing.Callable[[bool], RedisProcess], queue_name: str
) -> None:
    server = redis_process(False)
    connector = RedisNodeConnector('127.0.0.1', server.port, socket_timeout=0.3)
    connector.push(queue_name, [b'x'])  # connected before the server stalls
    admin = redis.Redis(port=server.port)
    admin.client_pause(1500, all=True)
    with pytest.raises(ConnectorError, match=re.escape(connector.name)) as raised:
        connector.push(queue_name, [b'y'])
    assert not isinstance(raised.value, NodeUnavailableError)
    admin.client_unpause()
    admin.close()
    connector.close()


def test_scripts_survive_a_script_flush(redis_process: typing.Callable[[bool], RedisProcess], queue_name: str) -> None:
    server = redis_process(False)
    connector = RedisNodeConnector('127.0.0.1', server.port)
    connector.push(queue_name, [b'a', b'b'])
    assert connector.pop(queue_name, 1) == [b'a']
    redis.Redis(port=server.port).script_flush()
    assert connector.pop(queue_name, 1) == [b'b']
    connector.close()


def _hold_lock(settings: config.Connector, name: str, held: typing.Any, done: typing.Any, results: typing.Any) -> None:
    connector = connect(settings)
    lock = connector.lock(name)
    results.put(lock.acquire(timeout=5, ttl=30))
    held.set()
    done.wait(30)
    results.put(lock.release())
    connector.close()


def test_a_lock_held_by_another_process(tmp_path: pathlib.Path, queue_name: str) -> None:
    settings = connector_config('redis-multi', tmp_path)
    name = f'{queue_name}-lock'
    context = multiprocessing.get_context('spawn')
    held, done, results = context.Event(), context.Event(), context.Queue()
    holder = context.Process(target=_hold_lock, args=(settings, name, held, done, results))
    holder.start()
    connector = connect(settings)
    try:
        assert held.wait(30)
        assert results.get(timeout=5) is True
        mine = connector.lock(name)
        assert mine.is_locked()
        assert mine.acquire(timeout=0) is False
        assert mine.release() is False
        assert mine.set_ttl(5) is False
        assert mine.is_locked()
        done.set()
        assert results.get(timeout=30) is True
        assert mine.acquire(timeout=0) is True
        assert mine.release() is True
    finally:
        done.set()
        holder.join(timeout=30)
        connector.close()
    assert holder.exitcode == 0


# -- batch leases ----------------------------------------------------------------------------
@pytest.fixture
def node(queue_name: str) -> typing.Iterator[RedisNodeConnector]:
    """One node, so the order of tasks is exact."""
    connector = RedisNodeConnector('127.0.0.1', REDIS_PORTS[0])
    yield connector
    connector.purge(queue_name)
    connector.purge_dead(queue_name)
    connector.close()


def payloads(count: int, prefix: str) -> list[bytes]:
    return [f'{prefix}-{index}'.encode() for index in range(count)]


def lease_keys_left(queue: str) -> list[bytes]:
    """Every per-lease key and lease structure of a queue still on the server."""
    keys = queue_keys(queue)
    client = redis.Redis(port=REDIS_PORTS[0])
    try:
        found = list(client.scan_iter(match=f'{keys.lease_prefix}*', count=1000))
        found += [key for key in (keys.lease_meta, keys.lease_deadlines) if client.exists(key)]
        return typing.cast(list[bytes], found)
    finally:
        client.close()


def leased_on_server(queue: str) -> int:
    """The leased tasks counted the slow way, to check the counter lengths() reads."""
    keys = queue_keys(queue)
    client = redis.Redis(port=REDIS_PORTS[0])
    try:
        total = 0
        for lease_id in client.hkeys(keys.lease_meta):
            list_key = f'{keys.lease_prefix}{lease_id.decode()}'
            total += client.llen(list_key) - client.scard(f'{list_key}.acked')
        return total
    finally:
        client.close()


def assert_leased(connector: Connector, queue: str, expected: int) -> None:
    assert connector.lengths(queue).leased == expected
    assert leased_on_server(queue) == expected


def test_receipt_runs_sort_merge_and_drop_duplicates() -> None:
    def receipt(lease_id: int, index: int) -> int:
        return lease_id << INDEX_BITS | index

    whole = [receipt(7, index) for index in range(1000)]
    assert receipt_runs(whole) == [7, 0, 999]
    assert receipt_runs(list(reversed(whole)) + whole[:10]) == [7, 0, 999]
    assert receipt_runs([receipt(3, 5)]) == [3, 5, 5]
    mixed = [receipt(9, 4), receipt(2, 0), receipt(9, 0), receipt(9, 1), receipt(2, 1), receipt(9, 3), receipt(9, 1)]
    assert receipt_runs(mixed) == [2, 0, 1, 9, 0, 1, 9, 3, 4]
    assert receipt_runs([]) == []


@pytest.mark.parametrize('size', [5, STAGED_LEASE_SIZE + 8], ids=['inline', 'staged'])
def test_a_whole_batch_acknowledged_leaves_nothing_behind(node: RedisNodeConnector, queue_name: str, size: int) -> None:
    node.push(queue_name, payloads(size, 'task'))
    leased = node.lease(queue_name, size, 30.0)
    assert [item.payload for item in leased] == payloads(size, 'task')
    assert len({item.receipt for item in leased}) == size
    assert_leased(node, queue_name, size)
    assert node.ack(queue_name, [item.receipt for item in leased]) == size
    assert_leased(node, queue_name, 0)
    assert lease_keys_left(queue_name) == []


@pytest.mark.parametrize('size', [6, STAGED_LEASE_SIZE + 4], ids=['inline', 'staged'])
def test_partial_ack_then_expiry_delivers_only_the_unacknowledged(
    node: RedisNodeConnector, queue_name: str, size: int
) -> None:
    node.push(queue_name, payloads(size, 'task'))
    leased = node.lease(queue_name, size, 0.3)
    acked = [item for index, item in enumerate(leased) if index % 3 == 1]
    assert node.ack(queue_name, [item.receipt for item in acked]) == len(acked)
    assert node.ack(queue_name, [acked[0].receipt]) == 0, 'an index is acknowledged once'
    assert_leased(node, queue_name, size - len(acked))
    time.sleep(0.5)

    again = node.lease(queue_name, size, 30.0)
    expected = [item.payload for index, item in enumerate(leased) if index % 3 != 1]
    assert [item.payload for item in again] == expected
    assert {item.deliveries for item in again} == {2}
    assert_leased(node, queue_name, len(expected))
    late = [item.receipt for item in leased if item not in acked]
    assert node.ack(queue_name, late) == 0, 'receipts of the expired lease match nothing'
    assert node.renew(queue_name, late, 30.0) == 0
    assert node.release(queue_name, late) == 0
    assert node.ack(queue_name, [item.receipt for item in again]) == len(expected)
    assert_leased(node, queue_name, 0)
    assert lease_keys_left(queue_name) == []


def test_an_expired_batch_larger_than_asked_for_is_split(node: RedisNodeConnector, queue_name: str) -> None:
    node.push(queue_name, payloads(2, 'high'), priority='HIGH')
    node.push(queue_name, payloads(4, 'normal'))
    first = node.lease(queue_name, 6, 0.3)
    time.sleep(0.5)

    head = node.lease(queue_name, 3, 30.0)
    assert [(item.payload, item.deliveries) for item in head] == [(b'high-0', 2), (b'high-1', 2), (b'normal-0', 2)]
    assert_leased(node, queue_name, 6)
    late = [item.receipt for item in first]
    assert node.ack(queue_name, late) == 0, 'the old lease id is gone, whichever half the item is in'
    assert node.renew(queue_name, late, 30.0) == 0
    # The rest stayed expired, deliveries unchanged: it comes next, delivered a second time (not a third).
    tail = node.lease(queue_name, 10, 30.0)
    assert [(item.payload, item.deliveries) for item in tail] == [(payload, 2) for payload in payloads(4, 'normal')[1:]]
    assert node.ack(queue_name, [item.receipt for item in head + tail]) == 6
    assert_leased(node, queue_name, 0)
    assert lease_keys_left(queue_name) == []


def test_pop_takes_part_of_an_expired_batch(node: RedisNodeConnector, queue_name: str) -> None:
    node.push(queue_name, payloads(5, 'task'))
    leased = node.lease(queue_name, 5, 0.3)
    node.ack(queue_name, [leased[1].receipt])
    time.sleep(0.5)
    assert node.pop(queue_name, 2) == [b'task-0', b'task-2']
    assert_leased(node, queue_name, 2)
    rest = node.lease(queue_name, 5, 30.0)
    assert [(item.payload, item.deliveries) for item in rest] == [(b'task-3', 2), (b'task-4', 2)]
    assert node.ack(queue_name, [item.receipt for item in rest]) == 2
    assert lease_keys_left(queue_name) == []


@pytest.mark.parametrize('normal', [3, STAGED_LEASE_SIZE], ids=['inline', 'staged'])
def test_release_of_part_of_a_batch_goes_back_to_the_front_in_order(
    node: RedisNodeConnector, queue_name: str, normal: int
) -> None:
    node.push(queue_name, payloads(3, 'high'), priority='HIGH')
    node.push(queue_name, payloads(normal, 'normal'))
    leased = node.lease(queue_name, 3 + normal, 30.0)
    assert [item.payload for item in leased] == payloads(3, 'high') + payloads(normal, 'normal')
    node.push(queue_name, [b'pushed-later'])
    node.push(queue_name, [b'high-later'], priority='HIGH')
    given_back = [leased[4], leased[1], leased[3], leased[2]]  # out of order on purpose
    assert node.release(queue_name, [item.receipt for item in given_back]) == 4
    assert node.release(queue_name, [leased[1].receipt]) == 0, 'an item is released once'
    assert_leased(node, queue_name, 3 + normal - 4)

    assert node.pop(queue_name, 100) == [
        b'high-1',
        b'high-2',
        b'high-later',
        b'normal-0',
        b'normal-1',
        b'pushed-later',
    ]
    kept = [item.receipt for index, item in enumerate(leased) if index not in (1, 2, 3, 4)]
    assert node.ack(queue_name, kept) == len(kept)
    assert_leased(node, queue_name, 0)
    assert lease_keys_left(queue_name) == []


def test_a_batch_spanning_high_and_normal_keeps_its_order(node: RedisNodeConnector, queue_name: str) -> None:
    high, normal = payloads(STAGED_LEASE_SIZE + 5, 'high'), payloads(3 * STAGED_LEASE_SIZE, 'normal')
    node.push(queue_name, high, priority='HIGH')
    node.push(queue_name, normal)
    leased = node.lease(queue_name, 2 * STAGED_LEASE_SIZE, 30.0)
    assert [item.payload for item in leased] == (high + normal)[: 2 * STAGED_LEASE_SIZE]
    assert node.release(queue_name, [item.receipt for item in leased]) == len(leased)
    assert lease_keys_left(queue_name) == []
    assert node.pop(queue_name, 1000) == high + normal


def test_the_leased_counter_stays_exact(node: RedisNodeConnector, queue_name: str) -> None:
    node.push(queue_name, payloads(100, 'task'))
    node.push(queue_name, payloads(3, 'delayed'), consumable_from=time.time() + 60)
    big = node.lease(queue_name, 40, 30.0)
    small = node.lease(queue_name, 3, 0.3)
    one = node.lease(queue_name, 1, 30.0)
    assert_leased(node, queue_name, 44)
    node.ack(queue_name, [item.receipt for item in big[:10]])
    assert_leased(node, queue_name, 34)
    node.release(queue_name, [item.receipt for item in big[10:15]])
    assert_leased(node, queue_name, 29)
    node.ack(queue_name, [item.receipt for item in big[5:20]])  # overlaps the acknowledged and released ones
    assert_leased(node, queue_name, 24)
    time.sleep(0.5)
    again = node.lease(queue_name, 2, 30.0, ack=[one[0].receipt])  # `small` expired: 2 of its 3 re-issued
    assert [item.payload for item in again] == [item.payload for item in small[:2]]
    assert_leased(node, queue_name, 23)
    assert node.pop(queue_name, 1) == [small[2].payload]  # the expired rest of `small`
    assert_leased(node, queue_name, 22)
    assert node.lengths(queue_name) == (100 - 44 + 5, 3, 22, 0)
    assert node.purge(queue_name) == 61 + 3 + 22
    assert node.lengths(queue_name) == (0, 0, 0, 0)
    assert_leased(node, queue_name, 0)
    assert lease_keys_left(queue_name) == []
    assert node.ack(queue_name, [item.receipt for item in big]) == 0


def test_leases_survive_a_script_flush(redis_process: typing.Callable[[bool], RedisProcess], queue_name: str) -> None:
    server = redis_process(False)
    connector = RedisNodeConnector('127.0.0.1', server.port)
    connector.push(queue_name, payloads(2 * STAGED_LEASE_SIZE, 'task'))
    admin = redis.Redis(port=server.port)
    taken: list[bytes] = []
    for count in (1, STAGED_LEASE_SIZE):  # the inline and the staged (pipelined) calls
        admin.script_flush()
        leased = connector.lease(queue_name, count, 30.0)
        assert len(leased) == count
        taken += [item.payload for item in leased]
        admin.script_flush()
        assert connector.ack(queue_name, [item.receipt for item in leased]) == count
    assert taken == payloads(2 * STAGED_LEASE_SIZE, 'task')[: STAGED_LEASE_SIZE + 1]
    assert connector.lengths(queue_name) == (STAGED_LEASE_SIZE - 1, 0, 0, 0)
    admin.close()
    connector.close()


def test_a_large_lease_takes_expired_then_ready_tasks(node: RedisNodeConnector, queue_name: str) -> None:
    node.push(queue_name, payloads(10, 'first'))
    node.lease(queue_name, 10, 0.3)
    node.push(queue_name, payloads(2 * STAGED_LEASE_SIZE, 'second'))
    time.sleep(0.5)
    leased = node.lease(queue_name, STAGED_LEASE_SIZE + 10, 30.0)
    expected = [(payload, 2) for payload in payloads(10, 'first')]
    expected += [(payload, 1) for payload in payloads(STAGED_LEASE_SIZE, 'second')]
    assert [(item.payload, item.deliveries) for item in leased] == expected
    assert len({item.receipt for item in leased}) == len(leased)
    assert_leased(node, queue_name, len(leased))
    assert node.ack(queue_name, [item.receipt for item in leased]) == len(leased)
    assert lease_keys_left(queue_name) == []
