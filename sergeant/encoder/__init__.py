"""Tasks to bytes and back: a serializer, then an optional compressor."""

from sergeant.encoder.encoder import Encoder

__all__ = ['Encoder']
