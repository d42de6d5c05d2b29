"""The public configuration: frozen dataclasses, validated when they are built.

Field names, order and defaults follow the documented sergeant API so existing
code runs unchanged; fields after the documented ones are our additions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import typing

from sergeant.errors import ConfigError

CONNECTOR_TYPES: typing.Final = ('redis', 'mongo', 'local')
SERIALIZERS: typing.Final = ('pickle', 'msgpack', 'orjson')
COMPRESSORS: typing.Final = (None, 'zlib', 'gzip', 'bzip2', 'lzma')
DELIVERY_MODES: typing.Final = ('at_least_once', 'at_most_once')


def default_local_file_path() -> str:
    """Where the embedded broker lives when nobody says: one file per machine user."""
    return os.path.join(tempfile.gettempdir(), 'sergeant.sqlite3')


class _Field(typing.NamedTuple):
    types: tuple[type, ...]
    required: bool
    default: typing.Any = None
    check: typing.Callable[[typing.Any], bool] | None = None
    expected: str = ''


def _port(value: typing.Any) -> bool:
    return bool(0 < value < 65536)


def _positive(value: typing.Any) -> bool:
    return bool(value > 0)


def _non_negative(value: typing.Any) -> bool:
    return bool(value >= 0)


def _non_empty(value: typing.Any) -> bool:
    return bool(value)


_OPTIONAL_STR = _Field((str, type(None)), False, None)
_TIMEOUT = _Field((int, float, type(None)), False, None, _positive, 'a positive number of seconds or None')

REDIS_NODE_FIELDS: typing.Final[dict[str, _Field]] = {
    'host': _Field((str,), True, None, _non_empty, 'a non-empty host name'),
    'port': _Field((int,), True, None, _port, 'a port number 1-65535'),
    'password': _OPTIONAL_STR,
    'database': _Field((int,), False, 0, _non_negative, 'a database number >= 0'),
    'username': _OPTIONAL_STR,
    'ssl': _Field((bool,), False, False),
    'socket_timeout': _Field((int, float), False, 10.0, _positive, 'a positive number of seconds'),
    'socket_connect_timeout': _Field((int, float), False, 2.0, _positive, 'a positive number of seconds'),
}
MONGO_NODE_FIELDS: typing.Final[dict[str, _Field]] = {
    'host': _Field((str,), True, None, _non_empty, 'a non-empty host name'),
    'port': _Field((int,), True, None, _port, 'a port number 1-65535'),
    'replica_set': _Field((str,), True, None, _non_empty, 'a non-empty replica set name'),
    'username': _OPTIONAL_STR,
    'password': _OPTIONAL_STR,
    'auth_source': _Field((str,), False, 'admin', _non_empty, 'a database name'),
    'tls': _Field((bool,), False, False),
    'connect_timeout': _Field((int, float), False, 2.0, _positive, 'a positive number of seconds'),
    'server_selection_timeout': _Field((int, float), False, 5.0, _positive, 'a positive number of seconds'),
    'socket_timeout': _TIMEOUT,
}
MULTI_NODE_FIELDS: typing.Final[dict[str, _Field]] = {
    'backoff_seconds': _Field((int, float), False, 5.0, _positive, 'a positive number of seconds'),
}
LOCAL_FIELDS: typing.Final[dict[str, _Field]] = {
    'file_path': _Field((str, os.PathLike), False, None, _non_empty, 'a path to a SQLite file'),
    'busy_timeout': _Field((int, float), False, 30.0, _positive, 'a positive number of seconds'),
}


def _check_fields(where: str, given: typing.Any, fields: dict[str, _Field]) -> dict[str, typing.Any]:
    """Validate one mapping against a schema; return it with defaults filled in."""
    if not isinstance(given, dict):
        raise ConfigError(f'{where} must be a dict, got {type(given).__name__}: {given!r}')
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ConfigError(f'{where} has unknown field(s) {unknown}; known fields are {sorted(fields)}')
    checked: dict[str, typing.Any] = {}
    for name, field in fields.items():
        if name not in given:
            if field.required:
                raise ConfigError(f'{where}.{name} is required')
            checked[name] = field.default
            continue
        value = given[name]
        wrong_type = not isinstance(value, field.types) or (isinstance(value, bool) and bool not in field.types)
        if wrong_type:
            names = ' or '.join('None' if kind is type(None) else kind.__name__ for kind in field.types)
            raise ConfigError(f'{where}.{name} must be {names}, got {type(value).__name__}: {value!r}')
        if value is not None and field.check is not None and not field.check(value):
            raise ConfigError(f'{where}.{name} must be {field.expected}, got {value!r}')
        checked[name] = value
    return checked


def _check_nodes(
    connector_type: str, params: dict[str, typing.Any], node_fields: dict[str, _Field]
) -> dict[str, typing.Any]:
    top_fields = {'nodes': _Field((list, tuple), True), **MULTI_NODE_FIELDS}
    checked = _check_fields(f'{connector_type} connector params', params, top_fields)
    if not checked['nodes']:
        raise ConfigError(f'{connector_type} connector params.nodes must list at least one node, got []')
    checked['nodes'] = [
        _check_fields(f'{connector_type} connector params.nodes[{index}]', node, node_fields)
        for index, node in enumerate(checked['nodes'])
    ]
    addresses = [(node['host'], node['port']) for node in checked['nodes']]
    if len(set(addresses)) != len(addresses):
        raise ConfigError(f'{connector_type} connector params.nodes names the same host and port twice: {addresses}')
    return checked


def validate_connector_params(connector_type: str, params: typing.Any) -> dict[str, typing.Any]:
    """Return params with defaults filled in, or raise ConfigError naming the bad field."""
    if connector_type == 'redis':
        return _check_nodes('redis', params, REDIS_NODE_FIELDS)
    if connector_type == 'mongo':
        return _check_nodes('mongo', params, MONGO_NODE_FIELDS)
    if connector_type == 'local':
        checked = _check_fields('local connector params', params, LOCAL_FIELDS)
        if checked['file_path'] is None:
            checked['file_path'] = default_local_file_path()
        checked['file_path'] = os.fspath(checked['file_path'])
        return checked
    raise ConfigError(f'Connector.type must be one of {CONNECTOR_TYPES}, got {connector_type!r}')


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_number(value: typing.Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Connector:
    type: str = 'local'
    params: dict[str, typing.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(isinstance(self.type, str), f'Connector.type must be a str, got {self.type!r}')
        validate_connector_params(self.type, self.params)

    def checked_params(self) -> dict[str, typing.Any]:
        """The params with every default filled in."""
        return validate_connector_params(self.type, self.params)


@dataclasses.dataclass(frozen=True)
class Encoder:
    compressor: str | None = None
    serializer: str = 'pickle'

    def __post_init__(self) -> None:
        _require(
            self.compressor in COMPRESSORS,
            f'Encoder.compressor must be one of {COMPRESSORS}, got {self.compressor!r}',
        )
        _require(
            self.serializer in SERIALIZERS,
            f'Encoder.serializer must be one of {SERIALIZERS}, got {self.serializer!r}',
        )


@dataclasses.dataclass(frozen=True)
class Timeouts:
    timeout: float = 0.0
    grace_period: float = 10.0

    def __post_init__(self) -> None:
        _require(
            _is_number(self.timeout) and self.timeout >= 0,
            f'Timeouts.timeout must be a number >= 0 (0 = never), got {self.timeout!r}',
        )
        _require(
            _is_number(self.grace_period) and self.grace_period >= 0,
            f'Timeouts.grace_period must be a number >= 0, got {self.grace_period!r}',
        )


@dataclasses.dataclass(frozen=True)
class LoggingEvents:
    on_success: bool = False
    on_failure: bool = True
    on_timeout: bool = True
    on_retry: bool = True
    on_max_retries: bool = True
    on_requeue: bool = True
    on_starvation: bool = True
    on_stop: bool = True


@dataclasses.dataclass(frozen=True)
class Logging:
    level: int = logging.ERROR
    log_to_stdout: bool = False
    events: LoggingEvents = dataclasses.field(default_factory=LoggingEvents)
    handlers: list[logging.Handler] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Starvation:
    time_with_no_tasks: int

    def __post_init__(self) -> None:
        _require(
            _is_number(self.time_with_no_tasks) and self.time_with_no_tasks > 0,
            f'Starvation.time_with_no_tasks must be a positive number of seconds, got {self.time_with_no_tasks!r}',
        )


def _positive_int(owner: str, name: str, value: typing.Any, minimum: int) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f'{owner}.{name} must be an int >= {minimum}, got {value!r}',
    )


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    name: str
    connector: Connector = dataclasses.field(default_factory=Connector)
    max_tasks_per_run: int = 0
    max_retries: int = 0
    tasks_per_transaction: int = 1
    number_of_threads: int = 1
    encoder: Encoder = dataclasses.field(default_factory=Encoder)
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    logging: Logging = dataclasses.field(default_factory=Logging)
    starvation: Starvation | None = None
    # Beyond the original API.
    delivery: str = 'at_least_once'
    lease_seconds: float = 60.0
    max_deliveries: int = 5
    """A task delivered this many times without being finished (its worker died each time) is buried."""

    def __post_init__(self) -> None:
        _require(
            isinstance(self.name, str) and bool(self.name),
            f'WorkerConfig.name must be a non-empty str, got {self.name!r}',
        )
        for name, minimum in (
            ('max_tasks_per_run', 0),
            ('max_retries', 0),
            ('tasks_per_transaction', 1),
            ('number_of_threads', 1),
            ('max_deliveries', 1),
        ):
            _positive_int('WorkerConfig', name, getattr(self, name), minimum)
        for name, kind in (
            ('connector', Connector),
            ('encoder', Encoder),
            ('timeouts', Timeouts),
            ('logging', Logging),
        ):
            value = getattr(self, name)
            _require(isinstance(value, kind), f'WorkerConfig.{name} must be a {kind.__name__}, got {value!r}')
        _require(
            self.starvation is None or isinstance(self.starvation, Starvation),
            f'WorkerConfig.starvation must be a Starvation or None, got {self.starvation!r}',
        )
        _require(
            self.delivery in DELIVERY_MODES,
            f'WorkerConfig.delivery must be one of {DELIVERY_MODES}, got {self.delivery!r}',
        )
        _require(
            _is_number(self.lease_seconds) and self.lease_seconds > 0,
            f'WorkerConfig.lease_seconds must be a positive number, got {self.lease_seconds!r}',
        )

    def replace(self, **changes: typing.Any) -> WorkerConfig:
        return dataclasses.replace(self, **changes)
