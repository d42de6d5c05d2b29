"""Redis-only behaviour the shared contract cannot express: node placement, real node failure,
error classification, and locks held by another process."""

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
from sergeant.connector.redis.connector import RedisNodeConnector, node_name
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
        per_node = [lengths.ready for _, lengths in connector.node_lengths(queue_name)]
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
