"""A worker outlives a broker outage: it reports it, retries with back-off, and goes on when the server is back."""

from __future__ import annotations

import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest

from sergeant import config
from sergeant.connector import connect
from tests.test_processes import push, start_supervisor, wait_until
from tests.workers import environment_for, read_records

pytestmark = pytest.mark.redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return int(probe.getsockname()[1])


def start_redis(port: int, directory: pathlib.Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [
            shutil.which('redis-server') or 'redis-server',
            '--port',
            str(port),
            '--bind',
            '127.0.0.1',
            '--save',
            '',
            '--appendonly',
            'no',
            '--dir',
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError(f'redis-server did not start on port {port}')


def test_worker_waits_out_a_broker_outage(tmp_path: pathlib.Path) -> None:
    port = free_port()
    connector_settings = config.Connector('redis', {'nodes': [{'host': '127.0.0.1', 'port': port}]})
    record = str(tmp_path / 'handled.txt')
    environment = environment_for(connector_settings, 'outage', record)
    log_path = tmp_path / 'supervisor.log'
    supervisor = start_supervisor(environment, 1, log_path=log_path)
    server = None
    try:
        wait_until(lambda: 'broker is unreachable' in log_path.read_text(), 20, 'the worker reported the outage')
        time.sleep(1.5)
        assert log_path.read_text().count('spawned worker') == 1, 'the worker stays up instead of crash-looping'
        assert log_path.read_text().count('broker is unreachable') == 1, 'the outage is reported once'
        server = start_redis(port, tmp_path)
        connector = connect(connector_settings)
        push(connector, 'outage', [{'id': n} for n in range(10)])
        wait_until(lambda: sorted(read_records(record)) == list(range(10)), 20, 'the tasks were handled')
        connector.close()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        supervisor.wait(timeout=30)
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
