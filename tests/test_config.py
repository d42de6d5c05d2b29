from __future__ import annotations

import logging

import pytest

from sergeant import config
from sergeant.errors import ConfigError


def test_seed_examples_construct_as_written() -> None:
    redis_node = {'host': 'localhost', 'port': 6379, 'password': None, 'database': 0}
    config.Connector(type='redis', params={'nodes': [redis_node]})
    config.Connector(type='redis', params={'nodes': [redis_node, {**redis_node, 'port': 6380}]})
    mongo_node = {'host': 'localhost', 'port': 27017, 'replica_set': 'replica_set_name'}
    config.Connector(type='mongo', params={'nodes': [mongo_node]})
    config.Connector(type='mongo', params={'nodes': [mongo_node, {**mongo_node, 'port': 27018}]})


def test_defaults_follow_the_documented_api() -> None:
    worker_config = config.WorkerConfig(name='queue')
    assert worker_config.connector == config.Connector('local', {})
    assert worker_config.connector.checked_params()['file_path'].endswith('sergeant.sqlite3')
    assert (
        worker_config.max_tasks_per_run,
        worker_config.max_retries,
        worker_config.tasks_per_transaction,
        worker_config.number_of_threads,
    ) == (0, 0, 1, 1)
    assert worker_config.encoder == config.Encoder(None, 'pickle')
    assert worker_config.timeouts == config.Timeouts(0.0, 10.0)
    assert worker_config.logging.level == logging.ERROR
    assert worker_config.logging.events == config.LoggingEvents(False, True, True, True, True, True, True, True)
    assert worker_config.starvation is None
    assert worker_config.delivery == 'at_least_once'
    assert worker_config.lease_seconds == 60.0
    changed = worker_config.replace(max_retries=3)
    assert changed.max_retries == 3 and worker_config.max_retries == 0


@pytest.mark.parametrize(
    ('connector_type', 'params', 'message'),
    [
        ('kafka', {}, "Connector.type must be one of .*'kafka'"),
        ('redis', {}, 'nodes is required'),
        ('redis', {'nodes': []}, 'at least one node'),
        ('redis', {'nodes': [{'host': 'h', 'prot': 1}]}, r"nodes\[0\] has unknown field\(s\) \['prot'\]"),
        ('redis', {'nodes': [{'host': 'h'}]}, r'nodes\[0\]\.port is required'),
        ('redis', {'nodes': [{'host': 'h', 'port': '6379'}]}, r'nodes\[0\]\.port must be int, got str'),
        ('redis', {'nodes': [{'host': 'h', 'port': 70000}]}, r'port must be a port number 1-65535, got 70000'),
        ('redis', {'nodes': [{'host': 'h', 'port': 1, 'database': -1}]}, r'database must be a database number'),
        ('redis', {'nodes': [{'host': 'h', 'port': 1}, {'host': 'h', 'port': 1}]}, 'same host and port twice'),
        ('redis', {'nodes': [{'host': 'h', 'port': True}]}, 'port must be int, got bool'),
        ('mongo', {'nodes': [{'host': 'h', 'port': 1}]}, r'replica_set is required'),
        ('local', {'path': '/tmp/x'}, r"unknown field\(s\) \['path'\]"),
        ('local', {'file_path': 3}, 'file_path must be str or PathLike'),
        ('redis', 'nodes', 'params must be a dict'),
    ],
)
def test_bad_connector_config_names_the_field(connector_type: str, params: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.Connector(connector_type, params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ('build', 'message'),
    [
        (lambda: config.Encoder(compressor='zip'), 'Encoder.compressor'),
        (lambda: config.Encoder(serializer='json5'), 'Encoder.serializer'),
        (lambda: config.Timeouts(timeout=-1), 'Timeouts.timeout'),
        (lambda: config.WorkerConfig(name=''), 'WorkerConfig.name'),
        (lambda: config.WorkerConfig(name='q', tasks_per_transaction=0), 'tasks_per_transaction'),
        (lambda: config.WorkerConfig(name='q', number_of_threads=1.5), 'number_of_threads'),
        (lambda: config.WorkerConfig(name='q', delivery='exactly_once'), 'WorkerConfig.delivery'),
        (lambda: config.WorkerConfig(name='q', connector={'type': 'redis'}), 'WorkerConfig.connector'),
        (lambda: config.Starvation(time_with_no_tasks=0), 'Starvation.time_with_no_tasks'),
    ],
)
def test_bad_worker_config_names_the_field(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_configs_are_frozen() -> None:
    connector = config.Connector()
    with pytest.raises(AttributeError):
        connector.type = 'redis'  # type: ignore[misc]


def test_import_sergeant_exposes_public_modules() -> None:
    import sergeant

    for name in ('config', 'worker', 'objects', 'supervisor', 'logging'):
        assert getattr(sergeant, name).__name__ == f'sergeant.{name}'
