"""What every scenario script shares; imported by path from every peer's virtualenv.

A scenario is one measured thing (push one at a time, push in bulk, consume one at a time,
consume in batches) for one library, run in its own fresh process. It reads a JSON spec from
argv[1] and prints one JSON line on stdout:
{tasks_per_second, processed, lost, duplicates, peak_rss_bytes, seconds, ...}.

Only the standard library is used here, so any virtualenv can import it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import typing

BULK_SIZE: typing.Final = 1000


def read_spec() -> dict[str, typing.Any]:
    spec: dict[str, typing.Any] = json.loads(sys.argv[1])
    return spec


def task_kwargs(task_id: int) -> dict[str, typing.Any]:
    """The small kwargs every library's task carries: an id to count, and a little payload."""
    return {'task_id': task_id, 'name': 'benchmark', 'weight': 1.5}


def chunks(total: int, size: int) -> typing.Iterator[range]:
    for start in range(0, total, size):
        yield range(start, min(start + size, total))


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class HandledIds:
    """How many times each task id was handled: one byte per id, preallocated, no allocation per task."""

    def __init__(self, number_of_tasks: int) -> None:
        self.counts = bytearray(number_of_tasks)
        self.handled = 0
        self.first_handled_at: float | None = None
        self.last_handled_at = 0.0
        self.extraneous = 0

    def record(self, task_id: int) -> None:
        if 0 <= task_id < len(self.counts):
            if self.counts[task_id] < 255:
                self.counts[task_id] += 1
        else:
            self.extraneous += 1
        self.handled += 1
        self.last_handled_at = time.perf_counter()

    def verdict(self) -> dict[str, int]:
        lost = self.counts.count(0)
        duplicates = self.handled - self.extraneous - (len(self.counts) - lost)
        return {'processed': self.handled, 'lost': lost, 'duplicates': duplicates + self.extraneous}


def report(number_of_tasks: int, seconds: float, verdict: dict[str, int], **extra: typing.Any) -> None:
    result = {
        'tasks': number_of_tasks,
        'seconds': seconds,
        'tasks_per_second': (verdict['processed'] / seconds) if seconds > 0 else 0.0,
        **verdict,
        'peak_rss_bytes': peak_rss_bytes(),
        **extra,
    }
    stdout = sys.__stdout__ or sys.stdout  # celery swaps sys.stdout for a logging proxy
    stdout.write(json.dumps(result) + '\n')
    stdout.flush()


def queued_verdict(number_of_tasks: int, queued: int) -> dict[str, int]:
    """For producers: what landed in the queue, compared with what was pushed."""
    return {
        'processed': number_of_tasks,
        'lost': max(number_of_tasks - queued, 0),
        'duplicates': max(queued - number_of_tasks, 0),
    }


def wait_until(condition: typing.Callable[[], bool], timeout: float, poll: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def run_operation(library: str, operations: dict[str, typing.Callable[[dict[str, typing.Any]], None]]) -> None:
    """Run the operation the orchestrator asked for ('push_one', 'consume_batch', ...) with its spec."""
    spec = read_spec()
    operation = operations.get(spec['op'])
    if operation is None:
        raise SystemExit(f'{library} has no {spec["op"]!r}')
    operation(spec)
    sys.stdout.flush()
