"""The ceiling: redis-py sending the bare list commands a queue needs, nothing on top.

Payloads are the same small kwargs, pickled, so the bytes on the wire are comparable.
"""

from __future__ import annotations

import pickle
import time
import typing

import common
import redis

QUEUE_KEY: typing.Final = 'raw_benchmark_queue'


def connect(spec: dict[str, typing.Any]) -> redis.Redis:
    node = spec['redis']
    return redis.Redis(host=node['host'], port=node['port'], db=node['db'])


def encoded_payloads(number_of_tasks: int) -> list[bytes]:
    return [pickle.dumps(common.task_kwargs(task_id)) for task_id in range(number_of_tasks)]


def push(spec: dict[str, typing.Any], one_by_one: bool) -> None:
    number_of_tasks = spec['n']
    connection = connect(spec)
    connection.delete(QUEUE_KEY)
    payloads = encoded_payloads(number_of_tasks)
    started = time.perf_counter()
    if one_by_one:
        for payload in payloads:
            connection.rpush(QUEUE_KEY, payload)
    else:
        for chunk in common.chunks(number_of_tasks, common.BULK_SIZE):
            connection.rpush(QUEUE_KEY, *payloads[chunk.start : chunk.stop])
    seconds = time.perf_counter() - started
    queued = connection.llen(QUEUE_KEY)
    common.report(number_of_tasks, seconds, common.queued_verdict(number_of_tasks, queued))


def consume(spec: dict[str, typing.Any], batch_size: int) -> None:
    number_of_tasks = spec['n']
    connection = connect(spec)
    handled = common.HandledIds(number_of_tasks)
    started = time.perf_counter()
    while handled.handled < number_of_tasks:
        if batch_size == 1:
            payload = connection.lpop(QUEUE_KEY)
            payloads = [payload] if payload is not None else []
        else:
            payloads = connection.lpop(QUEUE_KEY, batch_size) or []
        if not payloads:
            break
        for payload in payloads:
            handled.record(pickle.loads(payload)['task_id'])
    seconds = time.perf_counter() - started
    common.report(number_of_tasks, seconds, handled.verdict(), left_in_queue=connection.llen(QUEUE_KEY))


def main() -> None:
    common.run_operation(
        'redis-py',
        {
            'push_one': lambda spec: push(spec, one_by_one=True),
            'push_bulk': lambda spec: push(spec, one_by_one=False),
            'fill': lambda spec: push(spec, one_by_one=False),
            'consume_one': lambda spec: consume(spec, 1),
            'consume_batch': lambda spec: consume(spec, common.BULK_SIZE),
        },
    )


if __name__ == '__main__':
    main()
