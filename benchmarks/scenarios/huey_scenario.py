"""Huey: RedisHuey on the benchmark's Redis, or SqliteHuey next to our local (SQLite) connector.

Huey enqueues one task per call (no bulk enqueue) and its worker dequeues one at a time. The
consumer runs in this process with one worker thread; results are off, as ours keeps none.
"""

from __future__ import annotations

import time
import typing

import common
from huey import RedisHuey, SqliteHuey

QUEUE_NAME: typing.Final = 'benchmark'


def setup(spec: dict[str, typing.Any], handled: common.HandledIds | None) -> tuple[typing.Any, typing.Any]:
    if spec.get('sqlite_path'):
        huey = SqliteHuey(QUEUE_NAME, filename=spec['sqlite_path'], results=False)
    else:
        node = spec['redis']
        huey = RedisHuey(QUEUE_NAME, host=node['host'], port=node['port'], db=node['db'], results=False)

    @huey.task()
    def noop(task_id: int, name: str, weight: float) -> None:
        assert handled is not None
        handled.record(task_id)

    return huey, noop


def push(spec: dict[str, typing.Any]) -> None:
    number_of_tasks = spec['n']
    huey, noop = setup(spec, None)
    all_kwargs = [common.task_kwargs(task_id) for task_id in range(number_of_tasks)]
    started = time.perf_counter()
    for kwargs in all_kwargs:
        noop(**kwargs)
    seconds = time.perf_counter() - started
    common.report(number_of_tasks, seconds, common.queued_verdict(number_of_tasks, huey.pending_count()))


def consume(spec: dict[str, typing.Any]) -> None:
    number_of_tasks = spec['n']
    handled = common.HandledIds(number_of_tasks)
    huey, _ = setup(spec, handled)
    consumer = huey.create_consumer(
        workers=1, worker_type='thread', periodic=False, initial_delay=0.001, max_delay=0.05, check_worker_health=False
    )
    started = time.perf_counter()
    consumer.start()
    finished = common.wait_until(lambda: handled.handled >= number_of_tasks, timeout=spec.get('timeout', 3600))
    seconds = handled.last_handled_at - started
    time.sleep(0.2)  # a duplicate delivered right after the last task would still be counted
    consumer.stop(graceful=True)
    common.report(number_of_tasks, seconds, handled.verdict(), left_in_queue=huey.pending_count(), finished=finished)


def main() -> None:
    common.run_operation(
        'huey',
        {
            'push_one': lambda spec: push(spec),
            'fill': lambda spec: push(spec),
            'consume_one': lambda spec: consume(spec),
        },
    )


if __name__ == '__main__':
    main()
