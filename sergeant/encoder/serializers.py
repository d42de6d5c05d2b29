"""Serializers: a Task's fields as one flat tuple, so no class path is stored in the bytes."""

from __future__ import annotations

import pickle
import typing

import msgpack
import orjson

Fields = tuple[typing.Any, ...]


class Serializer(typing.Protocol):
    def dumps(self, fields: Fields) -> bytes: ...
    def loads(self, data: bytes) -> typing.Any: ...


class PickleSerializer:
    """Any picklable kwargs. Only for producers you trust: unpickling runs code."""

    def dumps(self, fields: Fields) -> bytes:
        return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> typing.Any:
        return pickle.loads(data)


class MsgpackSerializer:
    """Compact and safe; kwargs of JSON-like types plus bytes."""

    def __init__(self) -> None:
        self.packer = msgpack.Packer(use_bin_type=True)

    def dumps(self, fields: Fields) -> bytes:
        packed: bytes = self.packer.pack(fields)
        return packed

    def loads(self, data: bytes) -> typing.Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)


class OrjsonSerializer:
    """JSON text; readable in the broker, fastest for JSON-like kwargs."""

    def dumps(self, fields: Fields) -> bytes:
        return orjson.dumps(fields)

    def loads(self, data: bytes) -> typing.Any:
        return orjson.loads(data)


SERIALIZERS: typing.Final[dict[str, typing.Callable[[], Serializer]]] = {
    'pickle': PickleSerializer,
    'msgpack': MsgpackSerializer,
    'orjson': OrjsonSerializer,
}
