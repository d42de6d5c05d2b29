"""Connector configs for every backend and node layout the tests run against.

Servers are started by scripts/redis-servers.sh and scripts/mongo-servers.sh on loopback: redis on 6379 and 6380,
the MongoDB-compatible server on 27017 and 27018. Each layout carries a pytest mark
(``redis`` / ``mongo``) so the test command can run server groups in parallel.
"""

from __future__ import annotations

import os
import pathlib
import typing

import pytest

from sergeant import config

REDIS_PORTS = (
    int(os.environ.get('SERGEANT_TEST_REDIS_PORT_1', 6379)),
    int(os.environ.get('SERGEANT_TEST_REDIS_PORT_2', 6380)),
)
MONGO_PORTS = (
    int(os.environ.get('SERGEANT_TEST_MONGO_PORT_1', 27017)),
    int(os.environ.get('SERGEANT_TEST_MONGO_PORT_2', 27018)),
)


def redis_node(port: int) -> dict[str, typing.Any]:
    return {'host': '127.0.0.1', 'port': port, 'password': None, 'database': 0}


def mongo_node(port: int) -> dict[str, typing.Any]:
    return {'host': '127.0.0.1', 'port': port, 'replica_set': f'rs{port}'}


def connector_config(layout: str, tmp_path: pathlib.Path) -> config.Connector:
    if layout == 'local':
        return config.Connector('local', {'file_path': str(tmp_path / 'broker.sqlite3')})
    if layout == 'redis-single':
        return config.Connector('redis', {'nodes': [redis_node(REDIS_PORTS[0])]})
    if layout == 'redis-multi':
        return config.Connector('redis', {'nodes': [redis_node(port) for port in REDIS_PORTS], 'backoff_seconds': 1.0})
    if layout == 'mongo-single':
        return config.Connector('mongo', {'nodes': [mongo_node(MONGO_PORTS[0])]})
    if layout == 'mongo-multi':
        return config.Connector('mongo', {'nodes': [mongo_node(port) for port in MONGO_PORTS], 'backoff_seconds': 1.0})
    raise ValueError(layout)


LAYOUTS = [
    pytest.param('local', id='local'),
    pytest.param('redis-single', id='redis-single', marks=pytest.mark.redis),
    pytest.param('redis-multi', id='redis-multi', marks=pytest.mark.redis),
    pytest.param('mongo-single', id='mongo-single', marks=pytest.mark.mongo),
    pytest.param('mongo-multi', id='mongo-multi', marks=pytest.mark.mongo),
]

WORKER_LAYOUTS = [layout for layout in LAYOUTS if not str(layout.values[0]).endswith('-multi')]
"""Worker behaviour is the same code over every connector: one node of each backend is enough."""
