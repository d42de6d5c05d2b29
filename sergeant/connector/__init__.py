"""Broker backends behind one interface; :func:`connect` builds the one a config names."""

from __future__ import annotations

import importlib

from sergeant import config
from sergeant.connector.base import Connector, DeadLetter, Leased, Lock, QueueLengths

__all__ = ['Connector', 'DeadLetter', 'Leased', 'Lock', 'QueueLengths', 'connect']

BACKENDS = {
    'local': 'sergeant.connector.local:connect',
    'redis': 'sergeant.connector.redis.connector:connect',
    'mongo': 'sergeant.connector.mongo:connect',
}


def connect(connector_config: config.Connector) -> Connector:
    """Build a connector from its validated config; backends are imported only when used."""
    module_name, function_name = BACKENDS[connector_config.type].split(':')
    factory = getattr(importlib.import_module(module_name), function_name)
    connector: Connector = factory(**connector_config.checked_params())
    return connector
