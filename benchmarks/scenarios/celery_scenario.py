"""Celery with its Redis broker; the worker runs in this process with the solo pool.

Celery has no bulk enqueue (a group publishes its messages one by one), so only push_one,
fill and consume_one exist. Results are ignored, as ours keeps none; prefetch multiplier 1.
"""

from __future__ import annotations

import os
import threading
import time
import typing

import common
import redis
from celery import Celery
from celery.signals import worker_ready

QUEUE_NAME: typing.Final = 'benchmark'


def build_app(spec: dict[str, typing.Any], handled: common.HandledIds | None) -> tuple[Celery, typing.Any]:
    node = spec['redis']
    app = Celery('benchmark', broker=f'redis://{node["host"]}:{node["port"]}/{node["db"]}')
    app.conf.update(
        task_ignore_result=True,
        task_default_queue=QUEUE_NAME,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=False,
        worker_redirect_stdouts=False,
    )

    @app.task(name='benchmark.noop')
    def noop(task_id: int, name: str, weight: float) -> None:
        assert handled is not None
        handled.record(task_id)

    return app, noop


def queued(spec: dict[str, typing.Any]) -> int:
    node = spec['redis']
    return int(redis.Redis(host=node['host'], port=node['port'], db=node['db']).llen(QUEUE_NAME))


def push(spec: dict[str, typing.Any]) -> None:
    number_of_tasks = spec['n']
    _, noop = build_app(spec, None)
    all_kwargs = [common.task_kwargs(task_id) for task_id in range(number_of_tasks)]
    noop.apply_async(kwargs=all_kwargs[0])  # opens the connection outside the timing; still counted
    started = time.perf_counter()
    for kwargs in all_kwargs[1:]:
        noop.apply_async(kwargs=kwargs)
    seconds = time.perf_counter() - started
    common.report(number_of_tasks, seconds, common.queued_verdict(number_of_tasks, queued(spec)))


def consume(spec: dict[str, typing.Any]) -> None:
    """Celery's warm shutdown does not return from an in-process worker, so the report is written
    from a watcher thread as soon as every task was handled, and the process ends there."""
    number_of_tasks = spec['n']
    handled = common.HandledIds(number_of_tasks)
    app, _ = build_app(spec, handled)
    ready_at: list[float] = []
    worker_ready.connect(lambda **_: ready_at.append(time.perf_counter()), weak=False)
    started = time.perf_counter()

    def report_when_done() -> None:
        finished = common.wait_until(lambda: handled.handled >= number_of_tasks, timeout=spec.get('timeout', 3600))
        time.sleep(0.2)  # a duplicate delivered right after the last task would still be counted
        seconds = handled.last_handled_at - (ready_at[0] if ready_at else started)
        common.report(number_of_tasks, seconds, handled.verdict(), left_in_queue=queued(spec), finished=finished)
        os._exit(0)

    threading.Thread(target=report_when_done, daemon=True).start()
    celery_worker = app.Worker(
        pool='solo',
        concurrency=1,
        loglevel='ERROR',
        quiet=True,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        queues=[QUEUE_NAME],
    )
    celery_worker.start()


def main() -> None:
    common.run_operation(
        'celery',
        {
            'push_one': lambda spec: push(spec),
            'fill': lambda spec: push(spec),
            'consume_one': lambda spec: consume(spec),
        },
    )


if __name__ == '__main__':
    main()
