"""The Redis connector: every multi-step change is one Lua script, so a client that dies between
two commands can never lose or duplicate a task.

Data model per queue (key names in :func:`queue_keys`):

- ready: two lists, HIGH and NORMAL; fetches take HIGH first, each list is FIFO.
- delayed: a sorted set scored by due time (ms); members carry a unique id from the queue's
  sequence so identical payloads are all kept. Fetch scripts promote due members to ready.
- leased: a hash lease id -> priority, deliveries and payload, plus a sorted set lease id ->
  deadline (ms). An expired lease is re-leased under a NEW id, so the old holder's receipt
  (the lease id, an int) no longer matches and its late ack or renew does nothing.
- dead: a list of msgpack ``[payload, reason, buried_at]`` entries, oldest first.

Times come from the client clock (``time.time()``) and are passed in ARGV, so every script is
deterministic; clients sharing a queue are expected to have synchronised clocks.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import time
import typing

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from sergeant.connector.base import Connector, DeadLetter, Leased, QueueLengths, check_priority
from sergeant.connector.nodes import MultiNodeConnector, Node
from sergeant.errors import ConnectorError, NodeUnavailableError

KEY_PREFIX: typing.Final = '__sergeant__'
PRIORITY_LETTER: typing.Final = {'HIGH': 'H', 'NORMAL': 'N'}


# -- key names: the only place that knows how keys are spelt ------------------------------
class QueueKeys(typing.NamedTuple):
    ready_high: str
    ready_normal: str
    delayed: str
    leased: str
    lease_deadlines: str
    sequence: str
    dead: str


@functools.lru_cache(maxsize=1024)
def queue_keys(queue: str) -> QueueKeys:
    base = f'{KEY_PREFIX}.queue.{queue}'
    return QueueKeys(
        ready_high=f'{base}.ready.high',
        ready_normal=f'{base}.ready.normal',
        delayed=f'{base}.delayed',
        leased=f'{base}.leased',
        lease_deadlines=f'{base}.lease_deadlines',
        sequence=f'{base}.sequence',
        dead=f'{base}.dead',
    )


def value_key(name: str) -> str:
    return f'{KEY_PREFIX}.key.{name}'


def lock_key(name: str) -> str:
    return f'{KEY_PREFIX}.lock.{name}'


# -- scripts ---------------------------------------------------------------------------------
SCRIPTS_NEEDING_FUNCTIONS: typing.Final = frozenset({'pop', 'lease'})


@functools.cache
def script_source(name: str) -> str:
    """Read a script once per process; fetch scripts get the shared helpers prepended."""
    package = importlib.resources.files(__package__ or 'sergeant.connector.redis')
    source = (package / f'{name}.lua').read_text()
    if name in SCRIPTS_NEEDING_FUNCTIONS:
        source = (package / '_functions.lua').read_text() + '\n' + source
    return source


class Scripts:
    """Every script registered on one client; each call is one EVALSHA, loaded again on NOSCRIPT."""

    def __init__(self, client: redis.Redis) -> None:
        def register(name: str) -> Script:
            return client.register_script(script_source(name))

        self.push_delayed = register('push_delayed')
        self.pop = register('pop')
        self.lease = register('lease')
        self.ack = register('ack')
        self.renew = register('renew')
        self.release = register('release')
        self.purge = register('purge')
        self.redrive = register('redrive')
        self.purge_dead = register('purge_dead')
        self.lock_release = register('lock_release')
        self.lock_set_ttl = register('lock_set_ttl')


# -- connections -----------------------------------------------------------------------------
class NotConnectedError(redis.ConnectionError):
    """Raised while connecting, before any command was sent: safe to send it to another node."""


class NodeConnection(redis.Connection):
    """Marks every failure of the connect and handshake phase, so it can be told apart from a lost reply."""

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        try:
            super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)
        except NotConnectedError:
            raise
        except (redis.RedisError, OSError) as error:
            raise NotConnectedError(str(error)) from error


class SSLNodeConnection(redis.SSLConnection, NodeConnection):
    pass


def node_name(host: str, port: int, database: int) -> str:
    return f'redis://{host}:{port}/{database}'


def milliseconds(seconds: float) -> int:
    return int(seconds * 1000)


def lease_ids(receipts: typing.Sequence[typing.Hashable]) -> typing.Sequence[int]:
    """Receipts of this connector are the lease ids its scripts hand out."""
    return typing.cast(typing.Sequence[int], receipts)


# -- one node --------------------------------------------------------------------------------
class RedisNodeConnector(Connector):
    """One redis-server. Connects lazily, so it can be built while the server is down."""

    def __init__(
        self,
        host: str,
        port: int,
        password: str | None = None,
        database: int = 0,
        username: str | None = None,
        ssl: bool = False,
        socket_timeout: float = 10.0,
        socket_connect_timeout: float = 2.0,
    ) -> None:
        self.name = node_name(host, port, database)
        self.node_names = [self.name]
        # No client-side retries: a retried write whose reply was lost would store a task twice.
        self.pool = redis.ConnectionPool(
            connection_class=SSLNodeConnection if ssl else NodeConnection,
            host=host,
            port=port,
            db=database,
            username=username,
            password=password,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self.client = redis.Redis(connection_pool=self.pool)
        self.scripts = Scripts(self.client)

    @contextlib.contextmanager
    def errors(self) -> typing.Iterator[None]:
        """Turn redis-py errors into ours, naming the node; only a failed connect is failover-safe."""
        try:
            yield
        except NotConnectedError as error:
            raise NodeUnavailableError(f'redis node {self.name} cannot be reached: {error}') from error
        except redis.RedisError as error:
            raise ConnectorError(f'redis node {self.name} failed: {type(error).__name__}: {error}') from error

    # -- queues -------------------------------------------------------------------------
    def push(
        self,
        queue: str,
        payloads: typing.Sequence[bytes],
        priority: str = 'NORMAL',
        consumable_from: float = 0.0,
    ) -> int:
        letter = PRIORITY_LETTER[check_priority(priority)]
        if not payloads:
            return 0
        keys = queue_keys(queue)
        with self.errors():
            if consumable_from > time.time():
                self.scripts.push_delayed(
                    keys=[keys.delayed, keys.sequence], args=[milliseconds(consumable_from), letter, *payloads]
                )
            else:
                self.client.rpush(keys.ready_high if letter == 'H' else keys.ready_normal, *payloads)
        return len(payloads)

    def pop(self, queue: str, count: int) -> list[bytes]:
        if count <= 0:
            return []
        keys = queue_keys(queue)
        with self.errors():
            taken: list[bytes] = self.scripts.pop(
                keys=[keys.ready_high, keys.ready_normal, keys.delayed, keys.leased, keys.lease_deadlines],
                args=[milliseconds(time.time()), count],
            )
        return taken

    def lease(
        self,
        queue: str,
        count: int,
        lease_seconds: float,
        ack: typing.Sequence[typing.Hashable] = (),
    ) -> list[Leased]:
        if count <= 0 and not ack:
            return []
        keys = queue_keys(queue)
        now = time.time()
        with self.errors():
            flat = self.scripts.lease(
                keys=[
                    keys.ready_high,
                    keys.ready_normal,
                    keys.delayed,
                    keys.leased,
                    keys.lease_deadlines,
                    keys.sequence,
                ],
                args=[milliseconds(now), milliseconds(now + lease_seconds), max(count, 0), *lease_ids(ack)],
            )
        return [Leased(*fields) for fields in zip(flat[0::3], flat[2::3], flat[1::3], strict=True)]

    def ack(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        if not receipts:
            return 0
        keys = queue_keys(queue)
        with self.errors():
            deleted: int = self.scripts.ack(keys=[keys.leased, keys.lease_deadlines], args=lease_ids(receipts))
        return deleted

    def renew(self, queue: str, receipts: typing.Sequence[typing.Hashable], lease_seconds: float) -> int:
        if not receipts:
            return 0
        keys = queue_keys(queue)
        with self.errors():
            renewed: int = self.scripts.renew(
                keys=[keys.lease_deadlines], args=[milliseconds(time.time() + lease_seconds), *lease_ids(receipts)]
            )
        return renewed

    def release(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        if not receipts:
            return 0
        keys = queue_keys(queue)
        with self.errors():
            released: int = self.scripts.release(
                keys=[keys.ready_high, keys.ready_normal, keys.leased, keys.lease_deadlines], args=lease_ids(receipts)
            )
        return released

    def lengths(self, queue: str) -> QueueLengths:
        keys = queue_keys(queue)
        now = milliseconds(time.time())
        with self.errors():
            pipeline = self.client.pipeline(transaction=True)
            pipeline.llen(keys.ready_high)
            pipeline.llen(keys.ready_normal)
            pipeline.zcount(keys.delayed, '-inf', now)
            pipeline.zcard(keys.delayed)
            pipeline.hlen(keys.leased)
            pipeline.llen(keys.dead)
            high, normal, due, delayed, leased, dead = pipeline.execute()
        return QueueLengths(high + normal + due, delayed - due, leased, dead)

    def purge(self, queue: str) -> int:
        keys = queue_keys(queue)
        with self.errors():
            removed: int = self.scripts.purge(
                keys=[keys.ready_high, keys.ready_normal, keys.delayed, keys.leased, keys.lease_deadlines]
            )
        return removed

    # -- dead letters ------------------------------------------------------------------
    def bury(self, queue: str, payloads: typing.Sequence[bytes], reason: str) -> int:
        if not payloads:
            return 0
        buried_at = time.time()
        # Old-style msgpack (no bin type): the only kind redis' Lua cmsgpack can read in redrive.lua.
        entries = [msgpack.packb([payload, reason, buried_at], use_bin_type=False) for payload in payloads]
        with self.errors():
            self.client.rpush(queue_keys(queue).dead, *entries)
        return len(payloads)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        with self.errors():
            entries: list[typing.Any] = self.client.lrange(queue_keys(queue).dead, 0, limit - 1)
        letters = []
        for entry in entries:
            payload, reason, buried_at = msgpack.unpackb(entry, raw=True)
            letters.append(DeadLetter(payload, reason.decode(), buried_at))
        return letters

    def redrive(self, queue: str, limit: int | None = None) -> int:
        keys = queue_keys(queue)
        with self.errors():
            moved: int = self.scripts.redrive(
                keys=[keys.dead, keys.ready_normal], args=[-1 if limit is None else limit]
            )
        return moved

    def purge_dead(self, queue: str) -> int:
        with self.errors():
            removed: int = self.scripts.purge_dead(keys=[queue_keys(queue).dead])
        return removed

    # -- keys -------------------------------------------------------------------------
    def set_key(self, name: str, value: bytes) -> bool:
        with self.errors():
            return bool(self.client.set(value_key(name), value))

    def get_key(self, name: str) -> bytes | None:
        with self.errors():
            value = typing.cast(bytes | None, self.client.get(value_key(name)))
        return value

    def delete_key(self, name: str) -> bool:
        with self.errors():
            return bool(self.client.delete(value_key(name)))

    # -- locks --------------------------------------------------------------------------
    def lock_acquire(self, name: str, token: str, ttl: float) -> bool:
        with self.errors():
            return bool(self.client.set(lock_key(name), token, nx=True, px=max(1, milliseconds(ttl))))

    def lock_release(self, name: str, token: str) -> bool:
        with self.errors():
            return bool(self.scripts.lock_release(keys=[lock_key(name)], args=[token]))

    def lock_set_ttl(self, name: str, token: str, ttl: float) -> bool:
        with self.errors():
            return bool(self.scripts.lock_set_ttl(keys=[lock_key(name)], args=[token, max(1, milliseconds(ttl))]))

    def lock_ttl(self, name: str) -> float | None:
        with self.errors():
            remaining: int = self.client.pttl(lock_key(name))
        # -2: no such key. -1 (no expiry) cannot happen: locks are only ever written with one.
        return None if remaining < 0 else remaining / 1000

    def close(self) -> None:
        self.pool.disconnect()


def connect(nodes: list[dict[str, typing.Any]], backoff_seconds: float = 5.0) -> Connector:
    """One node: its connector itself. Several: the multi-node layer over one connector per node."""
    if len(nodes) == 1:
        return RedisNodeConnector(**nodes[0])
    return MultiNodeConnector(
        [
            Node(
                node_name(node['host'], node['port'], node.get('database', 0)),
                functools.partial(RedisNodeConnector, **node),
            )
            for node in nodes
        ],
        backoff_seconds,
    )
