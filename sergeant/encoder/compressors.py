"""Compressors: bytes in, bytes out."""

from __future__ import annotations

import bz2
import gzip
import lzma
import typing
import zlib


class Compressor(typing.NamedTuple):
    compress: typing.Callable[[bytes], bytes]
    decompress: typing.Callable[[bytes], bytes]


COMPRESSORS: typing.Final[dict[str, Compressor]] = {
    'zlib': Compressor(zlib.compress, zlib.decompress),
    'gzip': Compressor(gzip.compress, gzip.decompress),
    'bzip2': Compressor(bz2.compress, bz2.decompress),
    'lzma': Compressor(lzma.compress, lzma.decompress),
}
