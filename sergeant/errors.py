"""Exceptions users may catch.

Every error that names bad input says which field or value is wrong, so a
misconfigured deployment fails at start-up with a message that points at the fix.
"""

from __future__ import annotations


class SergeantError(Exception):
    """Base of every error raised by sergeant itself."""


class ConfigError(SergeantError, ValueError):
    """A configuration value is missing, misspelt or of the wrong type or range."""


class ConnectorError(SergeantError):
    """The broker's server could not be reached or refused an operation."""


class DecodeError(SergeantError):
    """Bytes taken from the broker could not be turned back into a task."""

    def __init__(self, message: str, payload: bytes) -> None:
        super().__init__(message)
        self.payload = payload


class LockError(SergeantError):
    """A lock operation was attempted by a process that does not hold the lock."""


class NodeUnavailableError(ConnectorError):
    """A node could not be reached and the operation was not sent, so it is safe to try another node."""
