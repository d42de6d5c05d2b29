from __future__ import annotations

import pathlib
import uuid

import pytest

from sergeant import config
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
