"""RQ: enqueue and enqueue_many (a pipeline per call), consumed by a SimpleWorker in burst mode.

SimpleWorker runs jobs in this process instead of forking one child per job, which is RQ's
fastest way; results are not kept (result_ttl=0), as ours keeps none.
"""

from __future__ import annotations

import time
import typing

import common
import redis
import rq_jobs
from rq import Queue, SimpleWorker

QUEUE_NAME: typing.Final = 'benchmark'


class BenchmarkWorker(SimpleWorker):
    """A SimpleWorker without the pub/sub control channel: rq 3.0.0 hangs joining that channel's
    thread at the end of a burst run (redis-py 8), and no control command is sent here."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def open_queue(spec: dict[str, typing.Any]) -> Queue:
    node = spec['redis']
    return Queue(QUEUE_NAME, connection=redis.Redis(host=node['host'], port=node['port'], db=node['db']))


def push(spec: dict[str, typing.Any], one_by_one: bool) -> None:
    number_of_tasks = spec['n']
    queue = open_queue(spec)
    all_kwargs = [common.task_kwargs(task_id) for task_id in range(number_of_tasks)]
    started = time.perf_counter()
    if one_by_one:
        for kwargs in all_kwargs:
            queue.enqueue_call(rq_jobs.noop, kwargs=kwargs, result_ttl=0)
    else:
        for chunk in common.chunks(number_of_tasks, common.BULK_SIZE):
            queue.enqueue_many(
                [Queue.prepare_data(rq_jobs.noop, kwargs=all_kwargs[task_id], result_ttl=0) for task_id in chunk]
            )
    seconds = time.perf_counter() - started
    common.report(number_of_tasks, seconds, common.queued_verdict(number_of_tasks, queue.count))


def consume(spec: dict[str, typing.Any]) -> None:
    number_of_tasks = spec['n']
    rq_jobs.handled = handled = common.HandledIds(number_of_tasks)
    queue = open_queue(spec)
    worker = BenchmarkWorker([queue], connection=queue.connection)
    started = time.perf_counter()
    worker.work(burst=True, logging_level='ERROR', max_jobs=number_of_tasks)
    seconds = handled.last_handled_at - started
    common.report(number_of_tasks, seconds, handled.verdict(), left_in_queue=queue.count)


def main() -> None:
    common.run_operation(
        'rq',
        {
            'push_one': lambda spec: push(spec, one_by_one=True),
            'push_bulk': lambda spec: push(spec, one_by_one=False),
            'fill': lambda spec: push(spec, one_by_one=False),
            'consume_one': lambda spec: consume(spec),
        },
    )


if __name__ == '__main__':
    main()
