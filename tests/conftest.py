from __future__ import annotations

import pathlib
import typing
import uuid

import pytest

from sergeant import config
from sergeant.connector import Connector, connect
from tests.backends import LAYOUTS, connector_config


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connector_settings(layout: str, tmp_path: pathlib.Path) -> config.Connector:
    return connector_config(layout, tmp_path)


@pytest.fixture
def queue_name() -> str:
    """A queue of its own for every test, so tests sharing a server never see each other's tasks."""
    return f'test-{uuid.uuid4().hex[:12]}'


@pytest.fixture
def connector(connector_settings: config.Connector, queue_name: str) -> typing.Iterator[Connector]:
    """A connector to the layout under test; the test's queue and its dead letters are emptied afterwards."""
    built = connect(connector_settings)
    yield built
    built.purge(queue_name)
    built.purge_dead(queue_name)
    built.close()
