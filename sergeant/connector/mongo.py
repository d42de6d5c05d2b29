"""The MongoDB backend: one node per replica set, several independent nodes through nodes.py.

Every claim is decided by a write that is atomic on a single document on any server that
speaks the MongoDB protocol, FerretDB included: an insert refused by a unique ``_id``.
No multi-document transaction, no findAndModify, no atomic update and no TTL index is
relied on, because FerretDB reads and then writes for those, so two callers can both win.

Per queue there are three collections (their names derive from the queue name):

- ``ready``:  ``{_id: task id, priority: 0 HIGH / 1 NORMAL, visible_at, payload}``; a task is
  delayed while ``visible_at`` is in the future, so nothing has to move it when it is due.
  Task ids are strings that sort in push order within a process, so sorting by
  ``(priority, _id)`` gives HIGH first and FIFO.
- ``leased``: ``{_id: '<task id>:<delivery>', task, priority, payload, deliveries, deadline}``.
  The key of a lease names its delivery, so claiming delivery k+1 of an expired lease is an
  insert that only one caller wins, and a receipt of delivery k can never touch delivery k+1.
- ``dead``:   ``{_id: sortable id, payload, reason, buried_at}``.

Claiming a ready task: insert its lease (the unique key picks one winner), check that the
task is still in ``ready`` (a caller that read it before it was consumed must not get it
again), delete it from ``ready``. A lease whose task was never deleted (a crash between the
two steps) is handled when it expires: the new delivery deletes the task first. Released
and re-driven tasks get new ids derived from the old ones, so an id is never reused and a
delete by ``_id`` always means the document the caller saw.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import threading
import time
import typing

import pymongo
import pymongo.errors
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from sergeant.connector.base import Connector, DeadLetter, Leased, QueueLengths, check_priority
from sergeant.connector.nodes import MultiNodeConnector, Node
from sergeant.errors import ConnectorError, NodeUnavailableError

logger = logging.getLogger('sergeant.connector.mongo')

Document = dict[str, typing.Any]

DATABASE_NAME: typing.Final = 'sergeant'
PRIORITY_RANK: typing.Final = {'HIGH': 0, 'NORMAL': 1}
DUPLICATE_KEY: typing.Final = 11000
ALREADY_INITIALIZED: typing.Final = 23
COMMAND_NOT_FOUND: typing.Final = 59
NO_REPLICATION_ENABLED: typing.Final = 76
POP_CLAIM_SECONDS: typing.Final = 60.0
DELETE_CHUNK: typing.Final = 10_000
"""Documents deleted or moved per command: FerretDB's SQLite backend turns a delete into one SQL
statement with a variable per document and fails past SQLite's 32,766."""
"""How long a popped task stays claimed if the popping process dies before deleting the claim."""
CLAIM_ATTEMPTS: typing.Final = 4
"""Candidate batches read per fetch when other consumers win the first ones."""
PLAIN_QUEUE_NAME: typing.Final = re.compile(r'[A-Za-z0-9_.:\-]{1,100}')


class SortableIds:
    """Ids that sort in creation order within a process and do not collide across processes.

    A nanosecond stamp forced to grow by at least one per id, then a random tag per process.
    """

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.last_stamp = 0
        self.process_id = -1
        self.process_tag = ''

    def take(self, count: int) -> list[str]:
        with self.mutex:
            if self.process_id != os.getpid():
                self.process_id = os.getpid()
                self.process_tag = secrets.token_hex(8)
            first = max(time.time_ns(), self.last_stamp + 1)
            self.last_stamp = first + count - 1
            tag = self.process_tag
        return [f'{stamp:016x}{tag}' for stamp in range(first, first + count)]


sortable_ids = SortableIds()


def lease_key(task_id: str, deliveries: int) -> str:
    return f'{task_id}:{deliveries}'


def released_task_id(key: str) -> str:
    """Sorts right after the task it came from, before any task pushed later, and is new."""
    return f'{key}r'


def collection_prefix(queue: str) -> str:
    """Readable collection names for ordinary queue names, a hash for anything else."""
    if PLAIN_QUEUE_NAME.fullmatch(queue):
        return f'queue.{queue}'
    return f'queuehash.{hashlib.sha256(queue.encode()).hexdigest()[:40]}'


class QueueCollections(typing.NamedTuple):
    ready: Collection[Document]
    leased: Collection[Document]
    dead: Collection[Document]


def delete_all(collection: Collection[Document]) -> int:
    """Delete every document in chunks of DELETE_CHUNK ids, which every server can take in one command."""
    deleted = 0
    while True:
        ids = [document['_id'] for document in collection.find({}, projection=['_id'], limit=DELETE_CHUNK)]
        if not ids:
            return deleted
        deleted += collection.delete_many({'_id': {'$in': ids}}).deleted_count


class MongoNodeConnector(Connector):
    """One MongoDB (or FerretDB) server. Built without touching the network; errors come on use."""

    def __init__(
        self,
        host: str,
        port: int,
        replica_set: str,
        username: str | None = None,
        password: str | None = None,
        auth_source: str = 'admin',
        tls: bool = False,
        connect_timeout: float = 2.0,
        server_selection_timeout: float = 5.0,
        socket_timeout: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.replica_set = replica_set
        self.node_names = [node_name(host, port)]
        self.client_options: dict[str, typing.Any] = {
            'username': username,
            'password': password,
            'authSource': auth_source,
            'tls': tls,
            'connectTimeoutMS': int(connect_timeout * 1000),
            'serverSelectionTimeoutMS': int(server_selection_timeout * 1000),
            'socketTimeoutMS': None if socket_timeout is None else int(socket_timeout * 1000),
            # A retried write could be applied twice; our claims count on each write running once.
            'retryWrites': False,
            'appname': 'sergeant',
        }
        self.server_selection_timeout = server_selection_timeout
        self.mutex = threading.RLock()
        self.client: pymongo.MongoClient[Document] | None = None
        self.database: Database[Document] | None = None
        self.queues: dict[str, QueueCollections] = {}

    # -- plumbing ---------------------------------------------------------------------
    @contextlib.contextmanager
    def errors(self, operation: str) -> typing.Iterator[None]:
        """Turn pymongo errors into ours; NodeUnavailableError only when nothing reached the server."""
        try:
            yield
        except ConnectorError:
            raise
        except pymongo.errors.ServerSelectionTimeoutError as error:
            raise NodeUnavailableError(
                f'mongo node {self.node_names[0]} is unreachable ({operation}): {error}'
            ) from error
        except pymongo.errors.PyMongoError as error:
            raise ConnectorError(f'mongo node {self.node_names[0]} failed {operation}: {error}') from error

    def connect_client(self) -> Database[Document]:
        """Initiate the replica set when needed, then connect to it; done once, on first use."""
        with self.mutex:
            if self.database is not None:
                return self.database
            try:
                is_replica_set = self.initiate_replica_set()
            except ConnectorError:
                raise
            except pymongo.errors.PyMongoError as error:
                raise NodeUnavailableError(f'mongo node {self.node_names[0]} is unreachable: {error}') from error
            if is_replica_set:
                client: pymongo.MongoClient[Document] = pymongo.MongoClient(
                    self.host, self.port, replicaSet=self.replica_set, **self.client_options
                )
            else:
                client = pymongo.MongoClient(self.host, self.port, directConnection=True, **self.client_options)
            self.client = client
            self.database = client.get_database(DATABASE_NAME, write_concern=WriteConcern(w='majority', j=True))
            return self.database

    def initiate_replica_set(self) -> bool:
        """True when the server serves our replica set; False when it cannot be one (a standalone server)."""
        direct: pymongo.MongoClient[Document] = pymongo.MongoClient(
            self.host, self.port, directConnection=True, **self.client_options
        )
        try:
            set_name = direct.admin.command('isMaster').get('setName')
            if set_name == self.replica_set:
                return True
            if set_name is not None:
                raise ConnectorError(
                    f'mongo node {self.node_names[0]} belongs to replica set {set_name!r}, '
                    f'not to replica_set {self.replica_set!r} as configured'
                )
            member = {'_id': 0, 'host': f'{self.host}:{self.port}'}
            try:
                direct.admin.command('replSetInitiate', {'_id': self.replica_set, 'members': [member]})
            except pymongo.errors.OperationFailure as error:
                if error.code == ALREADY_INITIALIZED:
                    return True
                if error.code in (COMMAND_NOT_FOUND, NO_REPLICATION_ENABLED):
                    logger.warning(
                        'mongo node %s is not a replica set and cannot be made one (%s); connecting to it directly',
                        self.node_names[0],
                        error.details,
                    )
                    return False
                raise
            self.wait_for_primary(direct)
            return True
        finally:
            direct.close()

    def wait_for_primary(self, direct: pymongo.MongoClient[Document]) -> None:
        """A freshly initiated set elects its member after a moment; writes before that fail."""
        deadline = time.monotonic() + max(10.0, self.server_selection_timeout)
        while time.monotonic() < deadline:
            if direct.admin.command('isMaster').get('ismaster'):
                return
            time.sleep(0.2)
        raise NodeUnavailableError(
            f'mongo node {self.node_names[0]} did not become primary of replica set '
            f'{self.replica_set!r} after replSetInitiate'
        )

    def collections(self, queue: str) -> QueueCollections:
        """The queue's collections, with their indexes created the first time this connector uses them."""
        known = self.queues.get(queue)
        if known is not None:
            return known
        database = self.connect_client()
        prefix = collection_prefix(queue)
        collections = QueueCollections(
            database[f'{prefix}.ready'], database[f'{prefix}.leased'], database[f'{prefix}.dead']
        )
        collections.ready.create_index([('priority', pymongo.ASCENDING), ('_id', pymongo.ASCENDING)])
        collections.ready.create_index([('visible_at', pymongo.ASCENDING)])
        collections.leased.create_index([('deadline', pymongo.ASCENDING)])
        self.queues[queue] = collections
        return collections

    @staticmethod
    def insert_unique(collection: Collection[Document], documents: list[Document]) -> list[Document]:
        """Insert what the unique _id allows; return the documents this call inserted."""
        if not documents:
            return []
        try:
            collection.insert_many(documents, ordered=False)
        except pymongo.errors.BulkWriteError as error:
            write_errors = error.details.get('writeErrors', [])
            if error.details.get('writeConcernErrors') or any(
                item.get('code') != DUPLICATE_KEY for item in write_errors
            ):
                raise
            refused = {item['index'] for item in write_errors}
            return [document for index, document in enumerate(documents) if index not in refused]
        return documents

    # -- claims ---------------------------------------------------------------------------
    def claim(self, collections: QueueCollections, count: int, deadline: float) -> list[Leased]:
        """Lease up to ``count`` tasks, expired leases first, then ready ones by priority and age."""
        if count <= 0:
            return []
        now = time.time()
        leased = self.claim_expired(collections, count, now, deadline)
        if len(leased) < count:
            leased.extend(self.claim_ready(collections, count - len(leased), now, deadline))
        return leased

    def claim_expired(self, collections: QueueCollections, count: int, now: float, deadline: float) -> list[Leased]:
        expired = list(
            collections.leased.find(
                {'deadline': {'$lte': now}},
                sort=[('task', pymongo.ASCENDING), ('deliveries', pymongo.ASCENDING)],
                limit=count,
            )
        )
        if not expired:
            return []
        renewed = [
            {
                **old,
                '_id': lease_key(old['task'], old['deliveries'] + 1),
                'deliveries': old['deliveries'] + 1,
                'deadline': deadline,
            }
            for old in expired
        ]
        won = self.insert_unique(collections.leased, renewed)
        if not won:
            return []
        previous = {lease_key(lease['task'], lease['deliveries'] - 1): lease for lease in won}
        # A previous delivery that is gone was acknowledged or released meanwhile: not ours to deliver.
        still_leased = {
            document['_id']
            for document in collections.leased.find({'_id': {'$in': list(previous)}}, projection=['_id'])
        }
        kept = [lease for key, lease in previous.items() if key in still_leased]
        dropped = [lease['_id'] for key, lease in previous.items() if key not in still_leased]
        if dropped:
            collections.leased.delete_many({'_id': {'$in': dropped}})
        if kept:
            # The task is deleted before its old lease, so no fresh claim can take it in between.
            collections.ready.delete_many({'_id': {'$in': [lease['task'] for lease in kept]}})
            collections.leased.delete_many({'_id': {'$in': list(still_leased)}})
        return [Leased(lease['_id'], bytes(lease['payload']), lease['deliveries']) for lease in kept]

    def claim_ready(self, collections: QueueCollections, count: int, now: float, deadline: float) -> list[Leased]:
        claimed: list[Leased] = []
        tried: list[str] = []
        for _ in range(CLAIM_ATTEMPTS):
            wanted = count - len(claimed)
            query: Document = {'visible_at': {'$lte': now}}
            if tried:
                query['_id'] = {'$nin': tried}
            candidates = list(
                collections.ready.find(
                    query, sort=[('priority', pymongo.ASCENDING), ('_id', pymongo.ASCENDING)], limit=wanted
                )
            )
            if not candidates:
                break
            tried.extend(task['_id'] for task in candidates)
            won = self.insert_unique(
                collections.leased,
                [
                    {
                        '_id': lease_key(task['_id'], 1),
                        'task': task['_id'],
                        'priority': task['priority'],
                        'payload': task['payload'],
                        'deliveries': 1,
                        'deadline': deadline,
                    }
                    for task in candidates
                ],
            )
            if won:
                claimed.extend(self.confirm_fresh_claims(collections, won))
            if len(candidates) < wanted or len(claimed) >= count:
                break
        return claimed

    @staticmethod
    def confirm_fresh_claims(collections: QueueCollections, won: list[Document]) -> list[Leased]:
        """Keep the leases whose task is still ready; a caller whose read was stale drops its lease."""
        task_ids = [lease['task'] for lease in won]
        present = {task['_id'] for task in collections.ready.find({'_id': {'$in': task_ids}}, projection=['_id'])}
        stale = [lease['_id'] for lease in won if lease['task'] not in present]
        if stale:
            collections.leased.delete_many({'_id': {'$in': stale}})
        if present:
            collections.ready.delete_many({'_id': {'$in': list(present)}})
        return [Leased(lease['_id'], bytes(lease['payload']), 1) for lease in won if lease['task'] in present]

    # -- queues -------------------------------------------------------------------------
    def push(
        self,
        queue: str,
        payloads: typing.Sequence[bytes],
        priority: str = 'NORMAL',
        consumable_from: float = 0.0,
    ) -> int:
        rank = PRIORITY_RANK[check_priority(priority)]
        if not payloads:
            return 0
        visible_at = consumable_from if consumable_from > time.time() else 0.0
        documents = [
            {'_id': task_id, 'priority': rank, 'visible_at': visible_at, 'payload': bytes(payload)}
            for task_id, payload in zip(sortable_ids.take(len(payloads)), payloads, strict=True)
        ]
        with self.errors('push'):
            self.collections(queue).ready.insert_many(documents, ordered=False)
        return len(documents)

    def pop(self, queue: str, count: int) -> list[bytes]:
        with self.errors('pop'):
            collections = self.collections(queue)
            leased = self.claim(collections, count, time.time() + POP_CLAIM_SECONDS)
            if leased:
                collections.leased.delete_many({'_id': {'$in': [item.receipt for item in leased]}})
        return [item.payload for item in leased]

    def lease(
        self,
        queue: str,
        count: int,
        lease_seconds: float,
        ack: typing.Sequence[typing.Hashable] = (),
    ) -> list[Leased]:
        with self.errors('lease'):
            collections = self.collections(queue)
            if ack:
                collections.leased.delete_many({'_id': {'$in': list(ack)}})
            return self.claim(collections, count, time.time() + lease_seconds)

    def ack(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        if not receipts:
            return 0
        with self.errors('ack'):
            return self.collections(queue).leased.delete_many({'_id': {'$in': list(receipts)}}).deleted_count

    def renew(self, queue: str, receipts: typing.Sequence[typing.Hashable], lease_seconds: float) -> int:
        if not receipts:
            return 0
        with self.errors('renew'):
            result = self.collections(queue).leased.update_many(
                {'_id': {'$in': list(receipts)}}, {'$set': {'deadline': time.time() + lease_seconds}}
            )
            return result.matched_count

    def release(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        """Each task goes back under a new id that sorts where the old one was (one trip per task: rare path)."""
        if not receipts:
            return 0
        released = 0
        with self.errors('release'):
            collections = self.collections(queue)
            leases = list(collections.leased.find({'_id': {'$in': list(receipts)}}, sort=[('_id', pymongo.ASCENDING)]))
            for lease in leases:
                task_id = released_task_id(lease['_id'])
                self.insert_unique(
                    collections.ready,
                    [{'_id': task_id, 'priority': lease['priority'], 'visible_at': 0.0, 'payload': lease['payload']}],
                )
                if collections.leased.delete_one({'_id': lease['_id']}).deleted_count == 1:
                    released += 1
                else:
                    # Acknowledged or delivered again meanwhile: the copy just put back must go.
                    collections.ready.delete_one({'_id': task_id})
        return released

    def lengths(self, queue: str) -> QueueLengths:
        now = time.time()
        with self.errors('lengths'):
            collections = self.collections(queue)
            return QueueLengths(
                ready=collections.ready.count_documents({'visible_at': {'$lte': now}}),
                delayed=collections.ready.count_documents({'visible_at': {'$gt': now}}),
                leased=collections.leased.count_documents({}),
                dead=collections.dead.count_documents({}),
            )

    def purge(self, queue: str) -> int:
        with self.errors('purge'):
            collections = self.collections(queue)
            return delete_all(collections.ready) + delete_all(collections.leased)

    # -- dead letters ------------------------------------------------------------------
    def bury(self, queue: str, payloads: typing.Sequence[bytes], reason: str) -> int:
        if not payloads:
            return 0
        now = time.time()
        documents = [
            {'_id': letter_id, 'payload': bytes(payload), 'reason': reason, 'buried_at': now}
            for letter_id, payload in zip(sortable_ids.take(len(payloads)), payloads, strict=True)
        ]
        with self.errors('bury'):
            self.collections(queue).dead.insert_many(documents, ordered=False)
        return len(documents)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        with self.errors('dead_letters'):
            letters = self.collections(queue).dead.find({}, sort=[('_id', pymongo.ASCENDING)], limit=limit)
            return [DeadLetter(bytes(letter['payload']), letter['reason'], letter['buried_at']) for letter in letters]

    def redrive(self, queue: str, limit: int | None = None) -> int:
        """Insert each letter as a task with an id derived from it (so two re-drives cannot both move it),
        then delete the letters that were still there."""
        if limit is not None and limit <= 0:
            return 0
        moved = 0
        while limit is None or moved < limit:
            wanted = DELETE_CHUNK if limit is None else min(DELETE_CHUNK, limit - moved)
            chunk = self._redrive_chunk(queue, wanted)
            if not chunk:
                break
            moved += chunk
        return moved

    def _redrive_chunk(self, queue: str, limit: int) -> int:
        with self.errors('redrive'):
            collections = self.collections(queue)
            letters = list(collections.dead.find({}, sort=[('_id', pymongo.ASCENDING)], limit=limit))
            if not letters:
                return 0
            won = self.insert_unique(
                collections.ready,
                [
                    {
                        '_id': f'{letter["_id"]}d',
                        'priority': PRIORITY_RANK['NORMAL'],
                        'visible_at': 0.0,
                        'payload': letter['payload'],
                    }
                    for letter in letters
                ],
            )
            letter_ids = [task['_id'][:-1] for task in won]
            present = {
                letter['_id'] for letter in collections.dead.find({'_id': {'$in': letter_ids}}, projection=['_id'])
            }
            stale = [f'{letter_id}d' for letter_id in letter_ids if letter_id not in present]
            if stale:
                collections.ready.delete_many({'_id': {'$in': stale}})
            if present:
                collections.dead.delete_many({'_id': {'$in': list(present)}})
            return len(present)

    def purge_dead(self, queue: str) -> int:
        with self.errors('purge_dead'):
            return delete_all(self.collections(queue).dead)

    # -- keys -------------------------------------------------------------------------
    def keys(self) -> Collection[Document]:
        return self.connect_client()['keys']

    def set_key(self, name: str, value: bytes) -> bool:
        with self.errors('set_key'):
            for _ in range(3):
                try:
                    self.keys().replace_one({'_id': name}, {'value': bytes(value)}, upsert=True)
                    return True
                except pymongo.errors.DuplicateKeyError:
                    continue  # a concurrent upsert inserted it first; replacing it now succeeds
            raise ConnectorError(f'mongo node {self.node_names[0]} kept refusing set_key({name!r})')

    def get_key(self, name: str) -> bytes | None:
        with self.errors('get_key'):
            document = self.keys().find_one({'_id': name})
        return None if document is None else bytes(document['value'])

    def delete_key(self, name: str) -> bool:
        with self.errors('delete_key'):
            return self.keys().delete_one({'_id': name}).deleted_count == 1

    # -- locks --------------------------------------------------------------------------
    def locks(self) -> Collection[Document]:
        return self.connect_client()['locks']

    def lock_acquire(self, name: str, token: str, ttl: float) -> bool:
        """An expired record is deleted first, so the lock is free at once; the unique _id picks one holder."""
        now = time.time()
        with self.errors('lock_acquire'):
            locks = self.locks()
            locks.delete_one({'_id': name, 'expires_at': {'$lte': now}})
            try:
                locks.insert_one({'_id': name, 'token': token, 'expires_at': now + ttl})
            except pymongo.errors.DuplicateKeyError:
                return False
        return True

    def lock_release(self, name: str, token: str) -> bool:
        with self.errors('lock_release'):
            result = self.locks().delete_one({'_id': name, 'token': token, 'expires_at': {'$gt': time.time()}})
            return result.deleted_count == 1

    def lock_set_ttl(self, name: str, token: str, ttl: float) -> bool:
        now = time.time()
        with self.errors('lock_set_ttl'):
            result = self.locks().update_one(
                {'_id': name, 'token': token, 'expires_at': {'$gt': now}}, {'$set': {'expires_at': now + ttl}}
            )
            return result.matched_count == 1

    def lock_ttl(self, name: str) -> float | None:
        now = time.time()
        with self.errors('lock_ttl'):
            document = self.locks().find_one({'_id': name})
        if document is None or document['expires_at'] <= now:
            return None
        return float(document['expires_at']) - now

    def close(self) -> None:
        with self.mutex:
            if self.client is not None:
                self.client.close()
            self.client = None
            self.database = None
            self.queues = {}


def node_name(host: str, port: int) -> str:
    return f'mongo:{host}:{port}'


def connect(nodes: list[dict[str, typing.Any]], backoff_seconds: float = 5.0) -> Connector:
    """One node is served directly; several go behind the multi-node layer, each built on first use."""
    if len(nodes) == 1:
        return MongoNodeConnector(**nodes[0])
    return MultiNodeConnector(
        [Node(node_name(node['host'], node['port']), functools.partial(MongoNodeConnector, **node)) for node in nodes],
        backoff_seconds,
    )
