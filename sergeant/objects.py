"""The Task a worker receives."""

from __future__ import annotations

import dataclasses
import time
import typing


@dataclasses.dataclass(slots=True)
class Task:
    kwargs: dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    trace_id: str | None = None
    date: float = dataclasses.field(default_factory=time.time)
    run_count: int = 0
