"""Ship log records to Logstash as JSON lines over TCP (a ``tcp`` input with the ``json_lines`` codec).

Neither handler may hold up or break a task when Logstash is slow or down: sends
are bounded by ``timeout``, a failed connection is retried at most once per
``timeout`` seconds, records that cannot be sent are dropped (and counted), and no
exception ever reaches the code that logged.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import time
import typing

import orjson

RESERVED_ATTRIBUTES: typing.Final = frozenset(vars(logging.LogRecord('', 0, '', 0, '', (), None)).keys()) | {
    'message',
    'asctime',
}


def record_to_json_line(record: logging.LogRecord, formatter: logging.Formatter | None) -> bytes:
    document: dict[str, typing.Any] = {
        '@timestamp': datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(),
        'message': record.getMessage(),
        'level': record.levelname,
        'logger_name': record.name,
        'path': record.pathname,
        'line': record.lineno,
        'function': record.funcName,
        'process': record.process,
        'thread_name': record.threadName,
        'host': socket.gethostname(),
    }
    if record.exc_info:
        document['exception'] = (formatter or logging.Formatter()).formatException(record.exc_info)
    for name, value in vars(record).items():
        if name not in RESERVED_ATTRIBUTES and not name.startswith('_'):
            document[name] = value
    return orjson.dumps(document, default=repr, option=orjson.OPT_NON_STR_KEYS) + b'\n'


class LogstashHandler(logging.Handler):
    """Sends each record at once over one kept-open connection."""

    def __init__(self, host: str, port: int, timeout: float = 2.0) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connection: socket.socket | None = None
        self.next_connect_at = 0.0
        self.dropped = 0
        self.send_lock = threading.Lock()

    def _connect(self) -> socket.socket | None:
        if self.connection is not None:
            return self.connection
        if time.monotonic() < self.next_connect_at:
            return None
        try:
            self.connection = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError:
            self.next_connect_at = time.monotonic() + self.timeout
            return None
        return self.connection

    def _close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except OSError:
                pass
            self.connection = None

    def send_lines(self, lines: bytes, count: int) -> bool:
        """Send, reconnecting once if the kept connection went stale; count drops on failure."""
        with self.send_lock:
            for _attempt in range(2):
                connection = self._connect()
                if connection is None:
                    break
                try:
                    connection.sendall(lines)
                    return True
                except OSError:
                    self._close()
            self.dropped += count
            return False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.send_lines(record_to_json_line(record, self.formatter), 1)
        except Exception:  # a log call must never raise into the task
            self.handleError(record)

    def close(self) -> None:
        with self.send_lock:
            self._close()
        super().close()


class BufferedLogstashHandler(LogstashHandler):
    """Keeps records and sends them together when ``chunk_size`` wait or ``max_store_time`` passed."""

    def __init__(
        self, host: str, port: int, timeout: float = 2.0, chunk_size: int = 100, max_store_time: float = 60.0
    ) -> None:
        super().__init__(host, port, timeout)
        self.chunk_size = chunk_size
        self.max_store_time = max_store_time
        self.buffer: list[bytes] = []
        self.buffer_lock = threading.Lock()
        self.oldest_at = 0.0
        self.stopped = threading.Event()
        self.flusher = threading.Thread(target=self._flush_periodically, name='sergeant-logstash', daemon=True)
        self.flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = record_to_json_line(record, self.formatter)
        except Exception:
            self.handleError(record)
            return
        with self.buffer_lock:
            if not self.buffer:
                self.oldest_at = time.monotonic()
            self.buffer.append(line)
            full = len(self.buffer) >= self.chunk_size
        if full:
            self.flush()

    def flush(self) -> None:
        with self.buffer_lock:
            lines, self.buffer = self.buffer, []
        if lines:
            self.send_lines(b''.join(lines), len(lines))

    def _flush_periodically(self) -> None:
        while not self.stopped.wait(min(1.0, self.max_store_time)):
            with self.buffer_lock:
                due = bool(self.buffer) and time.monotonic() - self.oldest_at >= self.max_store_time
            if due:
                self.flush()

    def close(self) -> None:
        self.stopped.set()
        self.flush()
        super().close()
