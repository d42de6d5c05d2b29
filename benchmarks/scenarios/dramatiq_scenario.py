"""Dramatiq with its RedisBroker and an in-process Worker with one worker thread.

Dramatiq has no bulk enqueue. Its consumer fetches up to ``queue prefetch`` messages per round
trip (the dramatiq_queue_prefetch environment variable, read at import): 1 for one at a time,
1,000 for batches.
"""

from __future__ import annotations

import os
import time
import typing

import common

QUEUE_NAME: typing.Final = 'benchmark'


def setup(spec: dict[str, typing.Any], handled: common.HandledIds | None) -> tuple[typing.Any, typing.Any]:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    node = spec['redis']
    broker = RedisBroker(host=node['host'], port=node['port'], db=node['db'])
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name=QUEUE_NAME, max_retries=0)
    def noop(task_id: int, name: str, weight: float) -> None:
        assert handled is not None
        handled.record(task_id)

    return broker, noop


def queued(broker: typing.Any) -> int:
    return int(broker.client.llen(f'dramatiq:{QUEUE_NAME}'))


def push(spec: dict[str, typing.Any]) -> None:
    number_of_tasks = spec['n']
    broker, noop = setup(spec, None)
    all_kwargs = [common.task_kwargs(task_id) for task_id in range(number_of_tasks)]
    started = time.perf_counter()
    for kwargs in all_kwargs:
        noop.send(**kwargs)
    seconds = time.perf_counter() - started
    common.report(number_of_tasks, seconds, common.queued_verdict(number_of_tasks, queued(broker)))


def consume(spec: dict[str, typing.Any], prefetch: int) -> None:
    os.environ['dramatiq_queue_prefetch'] = str(prefetch)
    number_of_tasks = spec['n']
    handled = common.HandledIds(number_of_tasks)
    broker, _ = setup(spec, handled)
    from dramatiq import Worker

    worker = Worker(broker, worker_threads=1, worker_timeout=100)
    started = time.perf_counter()
    worker.start()
    finished = common.wait_until(lambda: handled.handled >= number_of_tasks, timeout=spec.get('timeout', 3600))
    seconds = handled.last_handled_at - started
    time.sleep(0.2)  # a duplicate delivered right after the last task would still be counted
    worker.stop()
    common.report(number_of_tasks, seconds, handled.verdict(), left_in_queue=queued(broker), finished=finished)


def main() -> None:
    common.run_operation(
        'dramatiq',
        {
            'push_one': lambda spec: push(spec),
            'fill': lambda spec: push(spec),
            'consume_one': lambda spec: consume(spec, 1),
            'consume_batch': lambda spec: consume(spec, common.BULK_SIZE),
        },
    )


if __name__ == '__main__':
    main()
