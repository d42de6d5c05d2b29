"""Ours or the original sergeant 0.27.0 (same import name, so each runs from its own venv).

Spec fields: op (push_one, push_bulk, fill, consume_one, consume_batch), n, queue,
connector ({'type', 'params'}), delivery (ours only).
"""

from __future__ import annotations

import time
import typing

import common

from sergeant import config, worker


def build_worker(spec: dict[str, typing.Any], batch_size: int, handled: common.HandledIds | None) -> worker.Worker:
    extra: dict[str, typing.Any] = {}
    if spec.get('delivery'):
        extra['delivery'] = spec['delivery']
    worker_config = config.WorkerConfig(
        name=spec['queue'],
        connector=config.Connector(type=spec['connector']['type'], params=spec['connector']['params']),
        max_tasks_per_run=spec['n'],
        tasks_per_transaction=batch_size,
        **extra,
    )

    class BenchmarkWorker(worker.Worker):
        def generate_config(self) -> config.WorkerConfig:
            return worker_config

        def work(self, task: typing.Any) -> None:
            assert handled is not None
            handled.record(task.kwargs['task_id'])

    return BenchmarkWorker()


def push(spec: dict[str, typing.Any], one_by_one: bool) -> None:
    number_of_tasks = spec['n']
    producer = build_worker(spec, 1, None)
    producer.init_broker()
    producer.purge_tasks()
    if one_by_one:
        all_kwargs = [common.task_kwargs(task_id) for task_id in range(number_of_tasks)]
        started = time.perf_counter()
        for kwargs in all_kwargs:
            producer.push_task(kwargs=kwargs)
        seconds = time.perf_counter() - started
    else:
        all_chunks = [
            [common.task_kwargs(task_id) for task_id in chunk]
            for chunk in common.chunks(number_of_tasks, common.BULK_SIZE)
        ]
        started = time.perf_counter()
        for chunk in all_chunks:
            producer.push_tasks(kwargs_list=chunk)
        seconds = time.perf_counter() - started
    queued = producer.number_of_enqueued_tasks()
    common.report(number_of_tasks, seconds, common.queued_verdict(number_of_tasks, queued))


def consume(spec: dict[str, typing.Any], batch_size: int) -> None:
    number_of_tasks = spec['n']
    handled = common.HandledIds(number_of_tasks)
    consumer = build_worker(spec, batch_size, handled)
    consumer.init_worker()
    started = time.perf_counter()
    summary = consumer.work_loop()
    seconds = handled.last_handled_at - started
    left = consumer.number_of_enqueued_tasks()
    errors = {key: repr(summary.get(key)) for key in ('executor_exception', 'initialize_exception') if summary.get(key)}
    common.report(number_of_tasks, seconds, handled.verdict(), left_in_queue=left, **errors)


def main() -> None:
    common.run_operation(
        'sergeant',
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
