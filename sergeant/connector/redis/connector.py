"""The Redis connector: every multi-step change is one Lua script, so a client that dies between
two commands can never lose or duplicate a task.

Data model per queue (key names in :func:`queue_keys`, details in ``_functions.lua``):

- ready: two lists, HIGH and NORMAL; fetches take HIGH first, each list is FIFO.
- delayed: a sorted set scored by due time (ms); members carry a unique id from the queue's
  sequence so identical payloads are all kept. Fetch scripts promote due members to ready.
- leased: one lease per fetch, holding the whole batch: a list of its payloads, one field in a meta
  hash (deliveries, how many came from HIGH, size), one member in a deadlines sorted set, and a set
  of the indexes done when only part of the batch was acknowledged. A counter keeps the number of
  leased tasks. An expired lease is re-issued under a NEW id, so the old holder's receipts no
  longer match and its late ack, renew or release does nothing.
- dead: a list of msgpack ``[payload, reason, buried_at]`` entries, oldest first.

A receipt is one int, ``lease id << INDEX_BITS | index``: cheap to build, hash and sort, which
matters because a worker handles one per task. Receipts are turned into (lease id, first index,
last index) runs before they are sent, so acknowledging a whole batch sends three numbers.
Large batches are moved into their lease list server-side and read back by a pipelined LRANGE
(see :meth:`RedisNodeConnector.lease`), so their payloads never pass through Lua.

Times come from the client clock (``time.time()``) and are passed in ARGV, so every script is
deterministic; clients sharing a queue are expected to have synchronised clocks.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import importlib.resources
import itertools
import threading
import time
import typing

import hiredis
import msgpack
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sergeant.connector.base import Connector, DeadLetter, Leased, QueueLengths, check_priority
from sergeant.connector.nodes import MultiNodeConnector, Node
from sergeant.errors import ConnectorError, NodeUnavailableError

KEY_PREFIX: typing.Final = '__sergeant__'
PRIORITY_LETTER: typing.Final = {'HIGH': 'H', 'NORMAL': 'N'}

INDEX_BITS: typing.Final = 20
INDEX_MASK: typing.Final = (1 << INDEX_BITS) - 1
MAX_LEASE_SIZE: typing.Final = INDEX_MASK
"""Indexes stay below INDEX_MASK, so consecutive receipt ints never run from one lease into the next."""
LEASE_IDS_KEY: typing.Final = f'{KEY_PREFIX}.lease_ids'
"""Node-wide counter of lease ids: scripts INCR it, clients reserve blocks of LEASE_ID_BLOCK."""
LEASE_ID_BLOCK: typing.Final = 1024
STAGED_LEASE_SIZE: typing.Final = 32
"""From this many tasks up, a lease's payloads are read by a pipelined LRANGE instead of coming
back through Lua: carrying them through a Lua table costs more than the LRANGE and a second reply."""
MAINTENANCE_SECONDS: typing.Final = 0.1
"""How stale a single-task pop may let delayed promotion and lease expiry get (see pop)."""


# -- key names: the only place that knows how keys are spelt ------------------------------
class QueueKeys(typing.NamedTuple):
    ready_high: str
    ready_normal: str
    delayed: str
    sequence: str
    dead: str
    lease_meta: str
    lease_deadlines: str
    leased_count: str
    lease_prefix: str
    """Each lease's payload list is ``<lease_prefix><id>``, its done indexes ``<lease_prefix><id>.acked``."""
    fetch: tuple[str, ...]
    """The KEYS of pop.lua and lease.lua, in order."""


@functools.lru_cache(maxsize=1024)
def queue_keys(queue: str) -> QueueKeys:
    base = f'{KEY_PREFIX}.queue.{queue}'
    # The lease keys are named apart from the per-task '.leased' hash and '.lease_deadlines' of
    # earlier versions, so a server still holding those is never misread (see docs/redis.md).
    keys = dict(
        ready_high=f'{base}.ready.high',
        ready_normal=f'{base}.ready.normal',
        delayed=f'{base}.delayed',
        sequence=f'{base}.sequence',
        dead=f'{base}.dead',
        lease_meta=f'{base}.lease_meta',
        lease_deadlines=f'{base}.lease_expiry',
        leased_count=f'{base}.leased_count',
        lease_prefix=f'{base}.lease.',
    )
    fetch = ('ready_high', 'ready_normal', 'delayed', 'lease_meta', 'lease_deadlines', 'leased_count')
    return QueueKeys(**keys, fetch=(*(keys[name] for name in fetch), LEASE_IDS_KEY, keys['lease_prefix']))


def value_key(name: str) -> str:
    return f'{KEY_PREFIX}.key.{name}'


def lock_key(name: str) -> str:
    return f'{KEY_PREFIX}.lock.{name}'


# -- scripts ---------------------------------------------------------------------------------
SCRIPTS_NEEDING_FUNCTIONS: typing.Final = frozenset({'pop', 'lease', 'ack', 'release'})


class LuaScript(typing.NamedTuple):
    source: str
    sha: str


@functools.cache
def script(name: str) -> LuaScript:
    """Read a script once per process; the scripts that need them get the shared helpers prepended."""
    package = importlib.resources.files(__package__ or 'sergeant.connector.redis')
    source = (package / f'{name}.lua').read_text()
    if name in SCRIPTS_NEEDING_FUNCTIONS:
        source = (package / '_functions.lua').read_text() + '\n' + source
    return LuaScript(source, hashlib.sha1(source.encode()).hexdigest())


# -- receipts --------------------------------------------------------------------------------
def receipt_runs(receipts: typing.Sequence[typing.Hashable]) -> list[int]:
    """Receipts as flat (lease id, first index, last index) runs, sorted, duplicates dropped.

    A whole batch becomes one run; the halving below finds runs in O(runs * log n) on the
    sorted receipts instead of looking at every receipt in Python.
    """
    receipts = typing.cast(typing.Sequence[int], receipts)
    if len(receipts) == 1:
        index = receipts[0] & INDEX_MASK
        return [receipts[0] >> INDEX_BITS, index, index]
    ordered = sorted(set(receipts))
    runs: list[int] = []
    if ordered:
        _collect_runs(ordered, 0, len(ordered), runs)
    return runs


def _collect_runs(ordered: list[int], low: int, high: int, runs: list[int]) -> None:
    first, last = ordered[low], ordered[high - 1]
    if last - first == high - 1 - low:  # distinct and sorted: a full span is consecutive
        lease_id, first_index = first >> INDEX_BITS, first & INDEX_MASK
        if runs and runs[-3] == lease_id and runs[-1] + 1 == first_index:
            runs[-1] = last & INDEX_MASK
        else:
            runs += (lease_id, first_index, last & INDEX_MASK)
        return
    middle = (low + high) // 2
    _collect_runs(ordered, low, middle, runs)
    _collect_runs(ordered, middle, high, runs)


_new_tuple: typing.Final = tuple.__new__


def leased_items(reply: list[typing.Any]) -> list[Leased]:
    """lease.lua's ``{lease id, deliveries, payloads}`` entries as Leased tuples.

    Built with tuple.__new__ over C iterators: about twice as fast as calling Leased per task,
    which is most of the client's time in a lease of 1,000 tasks.
    """
    if len(reply) == 1:
        lease_id, deliveries, payloads = reply[0]
        first = lease_id << INDEX_BITS
        if len(payloads) == 1:  # one task at a time: skip building iterators
            return [_new_tuple(Leased, (first, payloads[0], deliveries))]
        return list(
            map(
                _new_tuple,
                itertools.repeat(Leased),
                zip(range(first, first + len(payloads)), payloads, itertools.repeat(deliveries)),
            )
        )
    leased: list[Leased] = []
    for lease_id, deliveries, payloads in reply:
        first = lease_id << INDEX_BITS
        leased += map(
            _new_tuple,
            itertools.repeat(Leased),
            zip(range(first, first + len(payloads)), payloads, itertools.repeat(deliveries)),
        )
    return leased


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


# -- one node --------------------------------------------------------------------------------
class RedisNodeConnector(Connector):
    """One redis-server over one connection. Connects lazily, so it can be built while the server is down.

    Commands are sent straight on the connection (scripts by EVALSHA, loaded on NOSCRIPT): redis-py's
    Script, client and pool checkout layers cost about as much client time as a one-task lease.
    Replies are redis-py's raw ones, which is all this connector needs.
    """

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
        self.connection: typing.Any = None
        """The one connection, taken from the pool on first use and never given back; None until then."""
        self.maintenance_due: dict[str, float] = {}
        """Per queue: when pop must next run its script rather than a plain LMPOP (monotonic seconds)."""
        self.promotion_due: dict[str, float] = {}
        """Per queue: when a lease must next promote due delayed tasks (monotonic seconds)."""
        self.lmpop_supported = True
        self.mutex = threading.Lock()
        """One command and its reply at a time: task threads may push while the main thread fetches."""
        self.lease_id_next = self.lease_id_end = 0
        """The block of lease ids reserved for this client: [next, end)."""

    def failure(self, error: redis.RedisError) -> ConnectorError:
        """Our error for a redis-py one, naming the node; only a failed connect is failover-safe."""
        if isinstance(error, NotConnectedError):
            return NodeUnavailableError(f'redis node {self.name} cannot be reached: {error}')
        return ConnectorError(f'redis node {self.name} failed: {type(error).__name__}: {error}')

    def ready_connection(self) -> typing.Any:
        """The connection, checked before sending: one the server closed (a restart) is replaced now,
        so a node that went down raises NotConnectedError before anything is sent, as a pool checkout would."""
        connection = self.connection
        if connection is None:
            self.connection = connection = self.pool.get_connection()  # connects
            return connection
        try:
            if connection.can_read():  # end of stream, or a reply nobody read: start afresh
                connection.disconnect()
        except NotConnectedError:
            raise
        except redis.ConnectionError:
            connection.disconnect()  # closed by the server; sending connects again
        return connection

    def execute(self, command: list[typing.Any], lua: LuaScript | None = None) -> typing.Any:
        """Send one command and return the raw reply; an EVALSHA of ``lua`` loads it on NOSCRIPT.

        Raises redis-py errors. The connection is dropped on any failure but an error reply, so it is
        never left with an unread reply.
        """
        with self.mutex:
            return self._execute_locked(command, lua)

    def _execute_locked(self, command: list[typing.Any], lua: LuaScript | None) -> typing.Any:
        connection = self.ready_connection()
        try:
            try:
                # hiredis packs the whole command in C; redis-py's packer checks every argument in Python.
                connection.send_packed_command([hiredis.pack_command(tuple(command))])
                return connection.read_response()
            except redis.exceptions.NoScriptError:
                if lua is None:
                    raise
                # The script did not run: load it and send the call again.
                connection.send_command('SCRIPT', 'LOAD', lua.source)
                connection.read_response()
                connection.send_packed_command([hiredis.pack_command(tuple(command))])
                return connection.read_response()
        except redis.ResponseError:
            raise
        except BaseException:
            connection.disconnect()
            raise

    def command(self, *command: typing.Any) -> typing.Any:
        """One plain command, for the operations that are not on the per-task path."""
        try:
            return self.execute(list(command))
        except redis.RedisError as error:
            raise self.failure(error) from error

    def call(self, name: str, keys: typing.Sequence[str], args: typing.Iterable[typing.Any] = ()) -> typing.Any:
        """One script call, for the operations that are not on the per-task path."""
        lua = script(name)
        try:
            return self.execute(['EVALSHA', lua.sha, len(keys), *keys, *args], lua)
        except redis.RedisError as error:
            raise self.failure(error) from error

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
        if consumable_from > time.time():
            self.call('push_delayed', (keys.delayed, keys.sequence), (milliseconds(consumable_from), letter, *payloads))
        else:
            self.command('RPUSH', keys.ready_high if letter == 'H' else keys.ready_normal, *payloads)
        return len(payloads)

    def pop(self, queue: str, count: int) -> list[bytes]:
        """At most once. A single-task pop between two maintenance passes is one LMPOP, no script.

        The script (promote due delayed tasks, drain expired leases, then pop) runs at least every
        MAINTENANCE_SECONDS per queue, so a due delayed task or an expired lease waits at most that
        long; a worker fetching one task at a time pays a plain command's server time otherwise.
        """
        if count <= 0:
            return []
        keys = queue_keys(queue)
        now = time.monotonic()
        if count == 1 and self.lmpop_supported and now < self.maintenance_due.get(queue, 0.0):
            try:
                reply = self.execute(['LMPOP', 2, keys.ready_high, keys.ready_normal, 'LEFT'])
            except redis.ResponseError:
                self.lmpop_supported = False  # Redis before 7.0: always use the script
            except redis.RedisError as error:
                raise self.failure(error) from error
            else:
                return [] if reply is None else list(reply[1])
        lua = script('pop')
        try:
            taken: list[bytes] = self.execute(['EVALSHA', lua.sha, 8, *keys.fetch, int(time.time() * 1000), count], lua)
        except redis.RedisError as error:
            raise self.failure(error) from error
        self.maintenance_due[queue] = now + MAINTENANCE_SECONDS
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
        count = min(max(count, 0), MAX_LEASE_SIZE)
        lease_id = self.lease_id_next
        if lease_id >= self.lease_id_end:
            lease_id = self.reserve_lease_ids()
        self.lease_id_next = lease_id + 1  # spent, unless the reply shows it was not used
        keys = queue_keys(queue)
        lua = script('lease')
        now = time.time()
        monotonic_now = time.monotonic()
        promote = count > 0 and monotonic_now >= self.promotion_due.get(queue, 0.0)
        staged = count >= STAGED_LEASE_SIZE
        command = [
            'EVALSHA',
            lua.sha,
            8,
            *keys.fetch,
            int(now * 1000),
            int((now + lease_seconds) * 1000),
            count,
            lease_id,
            '0' if staged else '1',
            '1' if promote else '0',
        ]
        if ack:
            command += receipt_runs(ack)
        fresh: list[bytes] = []
        try:
            if staged:
                reply, fresh = self.execute_staged(lua, command, f'{keys.lease_prefix}{lease_id}')
            else:
                reply = self.execute(command, lua)
        except redis.RedisError as error:
            raise self.failure(error) from error
        if promote:
            self.promotion_due[queue] = monotonic_now + MAINTENANCE_SECONDS
        if fresh:
            first = lease_id << INDEX_BITS
            fresh_items = map(
                _new_tuple, itertools.repeat(Leased), zip(range(first, first + len(fresh)), fresh, itertools.repeat(1))
            )
            if not reply:
                return list(fresh_items)
            leased = leased_items(reply)
            leased += fresh_items
            return leased
        if not reply:
            self.lease_id_next = lease_id
            return []
        if not staged and reply[-1][0] != lease_id:
            self.lease_id_next = lease_id
        return leased_items(reply)

    def reserve_lease_ids(self) -> int:
        """Reserve the next block of lease ids; returns its first."""
        last = int(self.command('INCRBY', LEASE_IDS_KEY, LEASE_ID_BLOCK))
        self.lease_id_end = last + 1
        return last - LEASE_ID_BLOCK + 1

    def execute_staged(self, lua: LuaScript, command: list[typing.Any], list_key: str) -> tuple[typing.Any, typing.Any]:
        """The lease script and an LRANGE of its new lease in one round trip: (script reply, payloads).

        The lease's id is reserved by this client, so nobody else writes that list; the LRANGE runs
        right after the script, long before the lease can expire and be re-issued elsewhere.
        """
        try:
            return self._execute_staged(command, list_key)
        except redis.exceptions.NoScriptError:  # the script did not run, so the LRANGE read nothing
            self.execute(['SCRIPT', 'LOAD', lua.source])
            return self._execute_staged(command, list_key)

    def _execute_staged(self, command: list[typing.Any], list_key: str) -> tuple[typing.Any, typing.Any]:
        with self.mutex:
            return self._execute_staged_locked(command, list_key)

    def _execute_staged_locked(self, command: list[typing.Any], list_key: str) -> tuple[typing.Any, typing.Any]:
        connection = self.ready_connection()
        try:
            connection.send_packed_command(
                [
                    hiredis.pack_command(tuple(command))
                    + hiredis.pack_command(tuple[typing.Any, ...](('LRANGE', list_key, 0, -1)))
                ]
            )
            try:
                reply = connection.read_response()
            except redis.ResponseError:
                connection.read_response()  # the LRANGE's, so the connection stays in step
                raise
            return reply, connection.read_response()
        except redis.ResponseError:
            raise
        except BaseException:
            connection.disconnect()
            raise

    def ack(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        if not receipts:
            return 0
        keys = queue_keys(queue)
        acknowledged: int = self.call(
            'ack', (keys.lease_meta, keys.lease_deadlines, keys.leased_count, keys.lease_prefix), receipt_runs(receipts)
        )
        return acknowledged

    def renew(self, queue: str, receipts: typing.Sequence[typing.Hashable], lease_seconds: float) -> int:
        if not receipts:
            return 0
        per_lease = collections.Counter(receipt >> INDEX_BITS for receipt in set(typing.cast(typing.Any, receipts)))
        renewed: int = self.call(
            'renew',
            (queue_keys(queue).lease_deadlines,),
            (milliseconds(time.time() + lease_seconds), *itertools.chain.from_iterable(per_lease.items())),
        )
        return renewed

    def release(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        if not receipts:
            return 0
        keys = queue_keys(queue)
        released: int = self.call(
            'release',
            (
                keys.ready_high,
                keys.ready_normal,
                keys.lease_meta,
                keys.lease_deadlines,
                keys.leased_count,
                keys.lease_prefix,
            ),
            receipt_runs(receipts),
        )
        return released

    def lengths(self, queue: str) -> QueueLengths:
        keys = queue_keys(queue)
        ready, delayed, leased, dead = self.call(
            'lengths',
            (keys.ready_high, keys.ready_normal, keys.delayed, keys.leased_count, keys.dead),
            (milliseconds(time.time()),),
        )
        return QueueLengths(ready, delayed, leased, dead)

    def purge(self, queue: str) -> int:
        keys = queue_keys(queue)
        removed: int = self.call(
            'purge',
            (
                keys.ready_high,
                keys.ready_normal,
                keys.delayed,
                keys.lease_meta,
                keys.lease_deadlines,
                keys.leased_count,
                keys.lease_prefix,
            ),
        )
        return removed

    # -- dead letters ------------------------------------------------------------------
    def bury(self, queue: str, payloads: typing.Sequence[bytes], reason: str) -> int:
        if not payloads:
            return 0
        buried_at = time.time()
        # Old-style msgpack (no bin type): the only kind redis' Lua cmsgpack can read in redrive.lua.
        entries = [msgpack.packb([payload, reason, buried_at], use_bin_type=False) for payload in payloads]
        self.command('RPUSH', queue_keys(queue).dead, *entries)
        return len(payloads)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        entries: list[typing.Any] = self.command('LRANGE', queue_keys(queue).dead, 0, limit - 1)
        letters = []
        for entry in entries:
            payload, reason, buried_at = msgpack.unpackb(entry, raw=True)
            letters.append(DeadLetter(payload, reason.decode(), buried_at))
        return letters

    def redrive(self, queue: str, limit: int | None = None) -> int:
        keys = queue_keys(queue)
        moved: int = self.call('redrive', (keys.dead, keys.ready_normal), (-1 if limit is None else limit,))
        return moved

    def purge_dead(self, queue: str) -> int:
        removed: int = self.call('purge_dead', (queue_keys(queue).dead,))
        return removed

    # -- keys -------------------------------------------------------------------------
    def set_key(self, name: str, value: bytes) -> bool:
        return self.command('SET', value_key(name), value) is not None

    def get_key(self, name: str) -> bytes | None:
        value: bytes | None = self.command('GET', value_key(name))
        return value

    def delete_key(self, name: str) -> bool:
        return bool(self.command('DEL', value_key(name)))

    # -- locks --------------------------------------------------------------------------
    def lock_acquire(self, name: str, token: str, ttl: float) -> bool:
        return self.command('SET', lock_key(name), token, 'NX', 'PX', max(1, milliseconds(ttl))) is not None

    def lock_release(self, name: str, token: str) -> bool:
        return bool(self.call('lock_release', (lock_key(name),), (token,)))

    def lock_set_ttl(self, name: str, token: str, ttl: float) -> bool:
        return bool(self.call('lock_set_ttl', (lock_key(name),), (token, max(1, milliseconds(ttl)))))

    def lock_ttl(self, name: str) -> float | None:
        remaining: int = self.command('PTTL', lock_key(name))
        # -2: no such key. -1 (no expiry) cannot happen: locks are only ever written with one.
        return None if remaining < 0 else remaining / 1000

    def close(self) -> None:
        if self.connection is not None:
            self.connection.disconnect()
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
