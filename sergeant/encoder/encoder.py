"""Encode tasks for the broker and decode them, turning any bad bytes into DecodeError."""

from __future__ import annotations

import typing

from sergeant.encoder.compressors import COMPRESSORS
from sergeant.encoder.serializers import SERIALIZERS
from sergeant.errors import ConfigError, DecodeError
from sergeant.objects import Task


class Encoder:
    """Stateless apart from its choice of serializer and compressor; cheap per task."""

    def __init__(self, serializer: str = 'pickle', compressor: str | None = None) -> None:
        if serializer not in SERIALIZERS:
            raise ConfigError(f'Encoder.serializer must be one of {tuple(SERIALIZERS)}, got {serializer!r}')
        if compressor is not None and compressor not in COMPRESSORS:
            raise ConfigError(f'Encoder.compressor must be one of {(None, *COMPRESSORS)}, got {compressor!r}')
        self.serializer = SERIALIZERS[serializer]()
        self.compressor = None if compressor is None else COMPRESSORS[compressor]

    def encode(self, task: Task) -> bytes:
        data = self.serializer.dumps((task.kwargs, task.trace_id, task.date, task.run_count))
        return data if self.compressor is None else self.compressor.compress(data)

    def encode_kwargs_list(
        self, kwargs_list: typing.Iterable[dict[str, typing.Any]], trace_id: str | None, date: float
    ) -> list[bytes]:
        """Encode many fresh tasks that share a trace id and a date, without making Task objects."""
        dumps = self.serializer.dumps
        payloads = [dumps((kwargs, trace_id, date, 0)) for kwargs in kwargs_list]
        if self.compressor is not None:
            compress = self.compressor.compress
            payloads = [compress(payload) for payload in payloads]
        return payloads

    def decode(self, payload: bytes) -> Task:
        try:
            data = payload if self.compressor is None else self.compressor.decompress(payload)
            kwargs, trace_id, date, run_count = self.serializer.loads(data)
            if not isinstance(kwargs, dict):
                raise TypeError(f'kwargs must be a dict, got {type(kwargs).__name__}')
        except Exception as error:  # anything a bad payload can make a decoder raise
            raise DecodeError(f'cannot decode task payload ({type(error).__name__}: {error})', payload) from error
        return Task(kwargs, trace_id, date, run_count)
