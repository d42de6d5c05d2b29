"""The Logstash handlers against a real TCP listener in the test."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import typing

import pytest

from sergeant.logging.logstash import BufferedLogstashHandler, LogstashHandler


class Listener:
    """A json_lines TCP input: collects every line it receives."""

    def __init__(self) -> None:
        self.server = socket.create_server(('127.0.0.1', 0))
        self.port = self.server.getsockname()[1]
        self.lines: list[dict[str, typing.Any]] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with connection, connection.makefile('rb') as stream:
            for line in stream:
                self.lines.append(json.loads(line))

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.lines) >= count, f'got {len(self.lines)} of {count} lines'

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def listener() -> typing.Iterator[Listener]:
    started = Listener()
    yield started
    started.close()


def make_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f'logstash-test-{id(handler)}')
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


def test_each_record_is_one_json_line(listener: Listener) -> None:
    handler = LogstashHandler('127.0.0.1', listener.port)
    logger = make_logger(handler)
    logger.info('hello %s', 'world', extra={'task_id': 7})
    try:
        raise ValueError('boom')
    except ValueError:
        logger.exception('failed')
    listener.wait_for(2)
    handler.close()
    first, second = listener.lines
    assert first['message'] == 'hello world' and first['level'] == 'INFO' and first['task_id'] == 7
    assert '@timestamp' in first and first['logger_name'] == logger.name
    assert second['level'] == 'ERROR' and 'ValueError: boom' in second['exception']
    assert listener.connections == 1


def test_buffered_handler_sends_in_chunks_and_on_time(listener: Listener) -> None:
    handler = BufferedLogstashHandler('127.0.0.1', listener.port, chunk_size=3, max_store_time=1.0)
    logger = make_logger(handler)
    for number in range(2):
        logger.info('record %d', number)
    time.sleep(0.3)
    assert listener.lines == [], 'fewer than chunk_size records wait'
    logger.info('record 2')
    listener.wait_for(3, timeout=2)
    logger.info('record 3')
    listener.wait_for(4, timeout=3)
    handler.close()
    assert [line['message'] for line in listener.lines] == [f'record {n}' for n in range(4)]


def test_logstash_down_neither_blocks_nor_raises() -> None:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        closed_port = probe.getsockname()[1]
    handler = LogstashHandler('127.0.0.1', closed_port, timeout=0.5)
    logger = make_logger(handler)
    started = time.monotonic()
    for number in range(200):
        logger.error('nobody listens %d', number)
    assert time.monotonic() - started < 2.0
    assert handler.dropped == 200
    handler.close()


def test_reconnects_after_logstash_restarts(listener: Listener) -> None:
    handler = LogstashHandler('127.0.0.1', listener.port, timeout=0.2)
    logger = make_logger(handler)
    logger.info('before')
    listener.wait_for(1)
    assert handler.connection is not None
    handler.connection.close()  # the peer's side of a restart: the kept connection is dead
    logger.info('after')
    listener.wait_for(2)
    assert [line['message'] for line in listener.lines] == ['before', 'after']
    handler.close()
