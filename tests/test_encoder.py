from __future__ import annotations

import pickle

import pytest

from sergeant.encoder import Encoder
from sergeant.errors import ConfigError, DecodeError
from sergeant.objects import Task


@pytest.mark.parametrize('serializer', ['pickle', 'msgpack', 'orjson'])
@pytest.mark.parametrize('compressor', [None, 'zlib', 'gzip', 'bzip2', 'lzma'])
def test_round_trip(serializer: str, compressor: str | None) -> None:
    encoder = Encoder(serializer, compressor)
    task = Task(
        kwargs={'url': 'https://example.com', 'n': 3, 'nested': {'a': [1, 2.5, None, True]}},
        trace_id='trace-1',
        date=1700000000.25,
        run_count=2,
    )
    assert encoder.decode(encoder.encode(task)) == task
    payloads = encoder.encode_kwargs_list([{'a': 1}, {'b': 2}], None, 5.0)
    assert [encoder.decode(payload) for payload in payloads] == [
        Task({'a': 1}, None, 5.0, 0),
        Task({'b': 2}, None, 5.0, 0),
    ]


@pytest.mark.parametrize('serializer', ['pickle', 'msgpack', 'orjson'])
@pytest.mark.parametrize('compressor', [None, 'zlib', 'lzma'])
@pytest.mark.parametrize('garbage', [b'', b'\x00\x01garbage', b'{"not": "a task"}', pickle.dumps(['a', 'b'])])
def test_garbage_raises_decode_error_with_the_payload(serializer: str, compressor: str | None, garbage: bytes) -> None:
    encoder = Encoder(serializer, compressor)
    with pytest.raises(DecodeError) as raised:
        encoder.decode(garbage)
    assert raised.value.payload == garbage


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigError, match='serializer'):
        Encoder('yaml')
    with pytest.raises(ConfigError, match='compressor'):
        Encoder('pickle', 'zstd')
