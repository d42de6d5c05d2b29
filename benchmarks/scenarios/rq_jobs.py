"""The job RQ runs: a module of its own so RQ can import it by name."""

from __future__ import annotations

import common

handled: common.HandledIds | None = None


def noop(task_id: int, name: str, weight: float) -> None:
    assert handled is not None
    handled.record(task_id)
