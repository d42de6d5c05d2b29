"""The embedded default broker: one SQLite file shared by every process on the machine.

WAL mode lets readers run beside one writer; every write runs in an IMMEDIATE
transaction so two processes never both read a row and then both take it; the busy
timeout turns lock contention into waiting, not errors. Leased rows keep the id they
had in ``ready`` so a released task goes back to exactly where it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import typing

from sergeant.connector.base import (
    Connector,
    DeadLetter,
    Leased,
    QueueLengths,
    check_priority,
)
from sergeant.errors import ConnectorError

PRIORITY_RANK: typing.Final = {'HIGH': 0, 'NORMAL': 1}

SCHEMA: typing.Final = """
CREATE TABLE IF NOT EXISTS ready (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, priority INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS ready_order ON ready (queue, priority, id);
CREATE TABLE IF NOT EXISTS delayed (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, priority INTEGER NOT NULL,
    due REAL NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS delayed_due ON delayed (queue, due);
CREATE TABLE IF NOT EXISTS leased (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, priority INTEGER NOT NULL, deadline REAL NOT NULL,
    deliveries INTEGER NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS leased_deadline ON leased (queue, deadline);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, payload BLOB NOT NULL,
    reason TEXT NOT NULL, buried_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dead_order ON dead (queue, id);
CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, token TEXT NOT NULL, expires_at REAL NOT NULL);
"""

Receipt = tuple[int, int]
"""(row id, deliveries): the delivery count makes a stale receipt miss a re-leased row."""


class LocalConnector(Connector):
    def __init__(self, file_path: str, busy_timeout: float = 30.0) -> None:
        self.file_path = file_path
        self.node_names = [f'local:{file_path}']
        self.mutex = threading.RLock()
        try:
            directory = os.path.dirname(os.path.abspath(file_path))
            os.makedirs(directory, exist_ok=True)
            self.connection = sqlite3.connect(
                file_path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self.connection.execute(f'PRAGMA busy_timeout = {int(busy_timeout * 1000)}')
            self.connection.execute('PRAGMA journal_mode = WAL')
            self.connection.execute('PRAGMA synchronous = NORMAL')
            with self.transaction() as cursor:
                for statement in SCHEMA.split(';'):
                    if statement.strip():
                        cursor.execute(statement)
        except (sqlite3.Error, OSError) as error:
            raise ConnectorError(f'local connector cannot open SQLite file {file_path!r}: {error}') from error

    @contextlib.contextmanager
    def transaction(self) -> typing.Iterator[sqlite3.Cursor]:
        """One IMMEDIATE transaction: the write lock is taken before anything is read."""
        with self.mutex:
            cursor = self.connection.cursor()
            try:
                cursor.execute('BEGIN IMMEDIATE')
            except sqlite3.Error as error:
                raise ConnectorError(f'local connector {self.file_path!r}: {error}') from error
            try:
                yield cursor
            except BaseException:
                cursor.execute('ROLLBACK')
                raise
            else:
                try:
                    cursor.execute('COMMIT')
                except sqlite3.Error as error:
                    cursor.execute('ROLLBACK')
                    raise ConnectorError(f'local connector {self.file_path!r}: {error}') from error

    # -- queues -------------------------------------------------------------------------
    def push(
        self,
        queue: str,
        payloads: typing.Sequence[bytes],
        priority: str = 'NORMAL',
        consumable_from: float = 0.0,
    ) -> int:
        rank = PRIORITY_RANK[check_priority(priority)]
        with self.transaction() as cursor:
            if consumable_from > time.time():
                cursor.executemany(
                    'INSERT INTO delayed (queue, priority, due, payload) VALUES (?, ?, ?, ?)',
                    [(queue, rank, consumable_from, payload) for payload in payloads],
                )
            else:
                cursor.executemany(
                    'INSERT INTO ready (queue, priority, payload) VALUES (?, ?, ?)',
                    [(queue, rank, payload) for payload in payloads],
                )
        return len(payloads)

    @staticmethod
    def _promote_due(cursor: sqlite3.Cursor, queue: str, now: float) -> None:
        cursor.execute(
            'INSERT INTO ready (queue, priority, payload) '
            'SELECT queue, priority, payload FROM delayed WHERE queue = ? AND due <= ? ORDER BY due, id',
            (queue, now),
        )
        if cursor.rowcount:
            cursor.execute('DELETE FROM delayed WHERE queue = ? AND due <= ?', (queue, now))

    def pop(self, queue: str, count: int) -> list[bytes]:
        now = time.time()
        with self.transaction() as cursor:
            self._promote_due(cursor, queue, now)
            expired = cursor.execute(
                'DELETE FROM leased WHERE id IN '
                '(SELECT id FROM leased WHERE queue = ? AND deadline <= ? ORDER BY id LIMIT ?) '
                'RETURNING id, payload',
                (queue, now, count),
            ).fetchall()
            rows = (
                cursor.execute(
                    'DELETE FROM ready WHERE id IN '
                    '(SELECT id FROM ready WHERE queue = ? ORDER BY priority, id LIMIT ?) '
                    'RETURNING priority, id, payload',
                    (queue, count - len(expired)),
                ).fetchall()
                if len(expired) < count
                else []
            )
        expired.sort()
        rows.sort()
        return [payload for _, payload in expired] + [payload for _, _, payload in rows]

    def lease(
        self,
        queue: str,
        count: int,
        lease_seconds: float,
        ack: typing.Sequence[typing.Hashable] = (),
    ) -> list[Leased]:
        now = time.time()
        deadline = now + lease_seconds
        with self.transaction() as cursor:
            if ack:
                cursor.executemany(
                    'DELETE FROM leased WHERE id = ? AND deliveries = ?', typing.cast(typing.Sequence[Receipt], ack)
                )
            self._promote_due(cursor, queue, now)
            expired = cursor.execute(
                'UPDATE leased SET deadline = ?, deliveries = deliveries + 1 WHERE id IN '
                '(SELECT id FROM leased WHERE queue = ? AND deadline <= ? ORDER BY id LIMIT ?) '
                'RETURNING id, payload, deliveries',
                (deadline, queue, now, count),
            ).fetchall()
            rows: list[tuple[int, int, bytes]] = []
            if len(expired) < count:
                rows = cursor.execute(
                    'DELETE FROM ready WHERE id IN '
                    '(SELECT id FROM ready WHERE queue = ? ORDER BY priority, id LIMIT ?) '
                    'RETURNING priority, id, payload',
                    (queue, count - len(expired)),
                ).fetchall()
                cursor.executemany(
                    'INSERT INTO leased (id, queue, priority, deadline, deliveries, payload) VALUES (?, ?, ?, ?, 1, ?)',
                    [(row_id, queue, rank, deadline, payload) for rank, row_id, payload in rows],
                )
        expired.sort()
        rows.sort()
        leased = [Leased((row_id, deliveries), payload, deliveries) for row_id, payload, deliveries in expired]
        leased.extend(Leased((row_id, 1), payload, 1) for _, row_id, payload in rows)
        return leased

    def ack(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        if not receipts:
            return 0
        with self.transaction() as cursor:
            cursor.executemany(
                'DELETE FROM leased WHERE id = ? AND deliveries = ?', typing.cast(typing.Sequence[Receipt], receipts)
            )
            return cursor.rowcount

    def renew(self, queue: str, receipts: typing.Sequence[typing.Hashable], lease_seconds: float) -> int:
        if not receipts:
            return 0
        deadline = time.time() + lease_seconds
        with self.transaction() as cursor:
            cursor.executemany(
                'UPDATE leased SET deadline = ? WHERE id = ? AND deliveries = ?',
                [
                    (deadline, row_id, deliveries)
                    for row_id, deliveries in typing.cast(typing.Sequence[Receipt], receipts)
                ],
            )
            return cursor.rowcount

    def release(self, queue: str, receipts: typing.Sequence[typing.Hashable]) -> int:
        released = 0
        with self.transaction() as cursor:
            for row_id, deliveries in typing.cast(typing.Sequence[Receipt], receipts):
                row = cursor.execute(
                    'DELETE FROM leased WHERE id = ? AND deliveries = ? RETURNING queue, priority, payload',
                    (row_id, deliveries),
                ).fetchone()
                if row is not None:
                    cursor.execute(
                        'INSERT INTO ready (id, queue, priority, payload) VALUES (?, ?, ?, ?)', (row_id, *row)
                    )
                    released += 1
        return released

    def lengths(self, queue: str) -> QueueLengths:
        now = time.time()
        with self.mutex:
            execute = self.connection.execute
            ready = execute('SELECT count(*) FROM ready WHERE queue = ?', (queue,)).fetchone()[0]
            due = execute('SELECT count(*) FROM delayed WHERE queue = ? AND due <= ?', (queue, now)).fetchone()[0]
            delayed = execute('SELECT count(*) FROM delayed WHERE queue = ? AND due > ?', (queue, now)).fetchone()[0]
            leased = execute('SELECT count(*) FROM leased WHERE queue = ?', (queue,)).fetchone()[0]
            dead = execute('SELECT count(*) FROM dead WHERE queue = ?', (queue,)).fetchone()[0]
        return QueueLengths(ready + due, delayed, leased, dead)

    def purge(self, queue: str) -> int:
        with self.transaction() as cursor:
            removed = 0
            for table in ('ready', 'delayed', 'leased'):
                cursor.execute(f'DELETE FROM {table} WHERE queue = ?', (queue,))
                removed += cursor.rowcount
        return removed

    # -- dead letters ------------------------------------------------------------------
    def bury(self, queue: str, payloads: typing.Sequence[bytes], reason: str) -> int:
        now = time.time()
        with self.transaction() as cursor:
            cursor.executemany(
                'INSERT INTO dead (queue, payload, reason, buried_at) VALUES (?, ?, ?, ?)',
                [(queue, payload, reason, now) for payload in payloads],
            )
        return len(payloads)

    def dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        with self.mutex:
            rows = self.connection.execute(
                'SELECT payload, reason, buried_at FROM dead WHERE queue = ? ORDER BY id LIMIT ?', (queue, limit)
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def redrive(self, queue: str, limit: int | None = None) -> int:
        with self.transaction() as cursor:
            rows = cursor.execute(
                'DELETE FROM dead WHERE id IN (SELECT id FROM dead WHERE queue = ? ORDER BY id LIMIT ?) '
                'RETURNING id, payload',
                (queue, -1 if limit is None else limit),
            ).fetchall()
            rows.sort()
            cursor.executemany(
                'INSERT INTO ready (queue, priority, payload) VALUES (?, ?, ?)',
                [(queue, PRIORITY_RANK['NORMAL'], payload) for _, payload in rows],
            )
        return len(rows)

    def purge_dead(self, queue: str) -> int:
        with self.transaction() as cursor:
            cursor.execute('DELETE FROM dead WHERE queue = ?', (queue,))
            return cursor.rowcount

    # -- keys -------------------------------------------------------------------------
    def set_key(self, name: str, value: bytes) -> bool:
        with self.transaction() as cursor:
            cursor.execute('INSERT OR REPLACE INTO keys (name, value) VALUES (?, ?)', (name, value))
        return True

    def get_key(self, name: str) -> bytes | None:
        with self.mutex:
            row = self.connection.execute('SELECT value FROM keys WHERE name = ?', (name,)).fetchone()
        return None if row is None else bytes(row[0])

    def delete_key(self, name: str) -> bool:
        with self.transaction() as cursor:
            cursor.execute('DELETE FROM keys WHERE name = ?', (name,))
            return cursor.rowcount > 0

    # -- locks --------------------------------------------------------------------------
    def lock_acquire(self, name: str, token: str, ttl: float) -> bool:
        now = time.time()
        with self.transaction() as cursor:
            cursor.execute('DELETE FROM locks WHERE name = ? AND expires_at <= ?', (name, now))
            cursor.execute(
                'INSERT OR IGNORE INTO locks (name, token, expires_at) VALUES (?, ?, ?)', (name, token, now + ttl)
            )
            return cursor.rowcount == 1

    def lock_release(self, name: str, token: str) -> bool:
        with self.transaction() as cursor:
            cursor.execute(
                'DELETE FROM locks WHERE name = ? AND token = ? AND expires_at > ?', (name, token, time.time())
            )
            return cursor.rowcount == 1

    def lock_set_ttl(self, name: str, token: str, ttl: float) -> bool:
        now = time.time()
        with self.transaction() as cursor:
            cursor.execute(
                'UPDATE locks SET expires_at = ? WHERE name = ? AND token = ? AND expires_at > ?',
                (now + ttl, name, token, now),
            )
            return cursor.rowcount == 1

    def lock_ttl(self, name: str) -> float | None:
        now = time.time()
        with self.mutex:
            row = self.connection.execute(
                'SELECT expires_at FROM locks WHERE name = ? AND expires_at > ?', (name, now)
            ).fetchone()
        return None if row is None else row[0] - now

    def close(self) -> None:
        with self.mutex:
            self.connection.close()


def connect(file_path: str, busy_timeout: float = 30.0) -> LocalConnector:
    return LocalConnector(file_path, busy_timeout)
