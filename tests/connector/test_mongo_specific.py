"""Mongo-only behaviour the shared contract cannot express: many consumer processes on one
FerretDB node, data surviving a server restart, replica set initiation on a fresh server,
and how an unreachable node is reported."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import time
import typing
import uuid

import pymongo
import pytest

from sergeant import config
from sergeant.connector import Connector, connect
from sergeant.connector.mongo import MongoNodeConnector
from sergeant.errors import NodeUnavailableError
from tests.backends import MONGO_PORTS, mongo_node

pytestmark = pytest.mark.mongo

REPO_DIR = pathlib.Path(__file__).resolve().parents[2]
SERVERS_SCRIPT = REPO_DIR / 'scripts' / 'mongo-servers.sh'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def port_is_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(('127.0.0.1', port), timeout=0.2):
        return True
    return False


@pytest.fixture(scope='session')
def ferretdb_binary() -> str:
    """The binary scripts/mongo-servers.sh builds (and builds now if it is missing)."""
    completed = subprocess.run(['bash', str(SERVERS_SCRIPT), 'build'], check=True, capture_output=True, text=True)
    return completed.stdout.strip().splitlines()[-1]


class FerretDB:
    """One FerretDB process of the test's own, on its own port and data folder."""

    def __init__(self, binary: str, data_dir: pathlib.Path, port: int, replica_set: str | None) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = port
        self.replica_set = replica_set
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.data_dir / 'sqlite').mkdir(parents=True, exist_ok=True)
        arguments = [
            self.binary,
            '--handler=sqlite',
            f'--sqlite-url=file:{self.data_dir / "sqlite"}/',
            f'--state-dir={self.data_dir}',
            f'--listen-addr=127.0.0.1:{self.port}',
            '--debug-addr=-',
            '--telemetry=disable',
            '--log-level=warn',
        ]
        if self.replica_set is not None:
            arguments.append(f'--repl-set-name={self.replica_set}')
        log = (self.data_dir / 'ferretdb.log').open('ab')
        self.process = subprocess.Popen(arguments, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while not port_is_open(self.port):
            assert self.process.poll() is None, f'FerretDB exited: {(self.data_dir / "ferretdb.log").read_text()}'
            assert time.monotonic() < deadline, 'FerretDB did not listen within 20s'
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def node(self) -> dict[str, typing.Any]:
        checked = config.Connector(
            'mongo',
            {
                'nodes': [
                    {
                        'host': '127.0.0.1',
                        'port': self.port,
                        'replica_set': self.replica_set or f'rs{self.port}',
                    }
                ]
            },
        ).checked_params()
        return dict(checked['nodes'][0])


@pytest.fixture
def own_server(ferretdb_binary: str, tmp_path: pathlib.Path) -> typing.Iterator[FerretDB]:
    port = free_port()
    server = FerretDB(ferretdb_binary, tmp_path / 'ferretdb', port, f'rs{port}')
    server.start()
    yield server
    server.stop()


def single_node_settings() -> config.Connector:
    return config.Connector('mongo', {'nodes': [mongo_node(MONGO_PORTS[0])]})


def _consume(settings: config.Connector, queue: str, delivery: str, results: typing.Any) -> None:
    connector = connect(settings)
    taken: list[bytes] = []
    deliveries_above_one = 0
    empty_rounds = 0
    while empty_rounds < 3:
        if delivery == 'at_most_once':
            payloads = connector.pop(queue, 250)
        else:
            leased = connector.lease(queue, 250, 60.0)
            payloads = [item.payload for item in leased]
            deliveries_above_one += sum(item.deliveries > 1 for item in leased)
            if leased:
                connector.ack(queue, [item.receipt for item in leased])
        if not payloads:
            empty_rounds += 1
            time.sleep(0.05)
            continue
        empty_rounds = 0
        taken.extend(payloads)
    connector.close()
    results.put((taken, deliveries_above_one))


@pytest.mark.parametrize('delivery', ['at_most_once', 'at_least_once'])
def test_four_consumer_processes_handle_each_task_once(delivery: str) -> None:
    settings = single_node_settings()
    queue = f'test-{uuid.uuid4().hex[:12]}'
    producer = connect(settings)
    pushed = [f'task-{index}'.encode() for index in range(5000)]
    try:
        producer.push(queue, pushed)
        context = multiprocessing.get_context('spawn')
        results = context.Queue()
        consumers = [context.Process(target=_consume, args=(settings, queue, delivery, results)) for _ in range(4)]
        for consumer in consumers:
            consumer.start()
        outcomes = [results.get(timeout=55) for _ in consumers]
        for consumer in consumers:
            consumer.join(timeout=10)
        taken = [payload for payloads, _ in outcomes for payload in payloads]
        duplicates = [payload for payload, times in collections.Counter(taken).items() if times > 1]
        assert duplicates == []
        assert sorted(taken) == sorted(pushed)
        assert sum(redelivered for _, redelivered in outcomes) == 0
        assert producer.lengths(queue) == (0, 0, 0, 0)
    finally:
        producer.purge(queue)
        producer.close()


def test_tasks_survive_a_server_restart(own_server: FerretDB) -> None:
    queue = f'test-{uuid.uuid4().hex[:12]}'
    pushed = [f'durable-{index}'.encode() for index in range(200)]
    before = MongoNodeConnector(**own_server.node())
    before.push(queue, pushed)
    before.push(queue, [b'delayed'], consumable_from=time.time() + 3600)
    before.bury(queue, [b'dead'], 'kept')
    before.close()

    own_server.stop()
    assert not port_is_open(own_server.port)
    own_server.start()

    after = MongoNodeConnector(**own_server.node())
    assert after.lengths(queue) == (200, 1, 0, 1)
    taken: list[bytes] = []
    while batch := after.pop(queue, 64):
        taken.extend(batch)
    assert taken == pushed
    assert [letter.payload for letter in after.dead_letters(queue)] == [b'dead']
    after.close()


def test_fresh_replica_set_server_is_initiated_and_used_as_a_set(own_server: FerretDB) -> None:
    connector = MongoNodeConnector(**own_server.node())
    queue = f'test-{uuid.uuid4().hex[:12]}'
    assert connector.push(queue, [b'one', b'two']) == 2
    assert connector.pop(queue, 10) == [b'one', b'two']
    assert connector.client is not None
    assert connector.client.topology_description.topology_type_name == 'ReplicaSetWithPrimary'
    connector.close()
    # A second connector meets an already initiated set and simply uses it.
    again = MongoNodeConnector(**own_server.node())
    assert again.lengths(queue) == (0, 0, 0, 0)
    again.close()


def test_server_without_a_replica_set_is_used_directly(ferretdb_binary: str, tmp_path: pathlib.Path) -> None:
    server = FerretDB(ferretdb_binary, tmp_path / 'standalone', free_port(), None)
    server.start()
    try:
        connector = MongoNodeConnector(**server.node())
        queue = f'test-{uuid.uuid4().hex[:12]}'
        connector.push(queue, [b'x'])
        assert connector.pop(queue, 1) == [b'x']
        assert connector.client is not None
        assert connector.client.topology_description.topology_type_name == 'Single'
        connector.close()
    finally:
        server.stop()


def test_unreachable_node_is_built_then_reported_as_unavailable() -> None:
    port = free_port()
    connector = MongoNodeConnector('127.0.0.1', port, f'rs{port}', server_selection_timeout=0.3, connect_timeout=0.3)
    with pytest.raises(NodeUnavailableError, match=f'127.0.0.1:{port}'):
        connector.push('anything', [b'x'])
    connector.close()


def test_multi_node_skips_a_node_that_is_down(own_server: FerretDB) -> None:
    """Pushes and fetches go on over the live node; nothing pushed is lost or doubled."""
    down_port = free_port()
    settings = config.Connector(
        'mongo',
        {
            'nodes': [
                {'host': '127.0.0.1', 'port': own_server.port, 'replica_set': own_server.replica_set},
                {
                    'host': '127.0.0.1',
                    'port': down_port,
                    'replica_set': f'rs{down_port}',
                    'server_selection_timeout': 0.3,
                    'connect_timeout': 0.3,
                },
            ],
            'backoff_seconds': 30.0,
        },
    )
    connector: Connector = connect(settings)
    queue = f'test-{uuid.uuid4().hex[:12]}'
    for index in range(10):
        assert connector.push(queue, [f'task-{index}'.encode()]) == 1
    taken: list[bytes] = []
    while batch := connector.pop(queue, 3):
        taken.extend(batch)
    assert sorted(taken) == sorted(f'task-{index}'.encode() for index in range(10))
    connector.close()


def test_pymongo_sees_ferretdb_as_the_configured_replica_set() -> None:
    client: pymongo.MongoClient[dict[str, typing.Any]] = pymongo.MongoClient(
        '127.0.0.1', MONGO_PORTS[0], directConnection=True, serverSelectionTimeoutMS=2000
    )
    try:
        assert client.admin.command('isMaster').get('setName') == f'rs{MONGO_PORTS[0]}'
    finally:
        client.close()


def test_task_ids_grow_in_order_and_differ_per_process() -> None:
    """Ids are made per process: a forked child must not repeat its parent's id tag."""
    from sergeant.connector.mongo import sortable_ids

    parent_ids = sortable_ids.take(2)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.write(write_end, sortable_ids.take(1)[0].encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(child, 0)
    assert parent_ids[0] < parent_ids[1]
    assert child_id[16:] != parent_ids[0][16:]


def test_purges_larger_than_one_sql_statement_can_hold(queue_name: str) -> None:
    """FerretDB turns a delete into one SQL statement with a variable per document (at most 32,766)."""
    node = {'host': '127.0.0.1', 'port': MONGO_PORTS[0], 'replica_set': f'rs{MONGO_PORTS[0]}'}
    connector = connect(config.Connector('mongo', {'nodes': [node]}))
    try:
        many = [str(index).encode() for index in range(33_000)]
        connector.push(queue_name, many)
        assert connector.purge(queue_name) == 33_000
        connector.bury(queue_name, many, 'test')
        assert connector.purge_dead(queue_name) == 33_000
        assert connector.lengths(queue_name) == (0, 0, 0, 0)
    finally:
        connector.close()
