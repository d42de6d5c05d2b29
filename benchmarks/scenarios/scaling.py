"""Ours with several worker processes on one queue: how consumption scales with processes and nodes.

The parent forks ``workers`` processes, each pinned to core (index % cores), each running a
Worker that never stops by itself. Handled ids go to shared memory; when every task was handled
the parent stops the workers with SIGTERM (they finish the current task and give back the rest).
The time runs from the moment every worker is connected to the moment the last task was handled.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import signal
import time
import typing

import common

from sergeant import config, worker


def run_worker(
    spec: dict[str, typing.Any],
    index: int,
    counts: typing.Any,
    handled_per_worker: typing.Any,
    last_handled_per_worker: typing.Any,
    ready: typing.Any,
    go: typing.Any,
) -> None:
    cores = spec['cores']
    os.sched_setaffinity(0, {cores[index % len(cores)]})
    worker_config = config.WorkerConfig(
        name=spec['queue'],
        connector=config.Connector(type=spec['connector']['type'], params=spec['connector']['params']),
        tasks_per_transaction=spec['batch'],
        delivery=spec['delivery'],
    )
    number_of_tasks = spec['n']

    class ScalingWorker(worker.Worker):
        def generate_config(self) -> config.WorkerConfig:
            return worker_config

        def work(self, task: typing.Any) -> None:
            task_id = task.kwargs['task_id']
            if 0 <= task_id < number_of_tasks and counts[task_id] < 255:
                counts[task_id] += 1
            handled_per_worker[index] += 1
            last_handled_per_worker[index] = time.monotonic()

    scaling_worker = ScalingWorker()
    scaling_worker.init_worker()
    scaling_worker.number_of_enqueued_tasks()  # connects now, not inside the timing
    ready[index] = 1
    go.wait()
    scaling_worker.work_loop()


def main() -> None:
    spec = common.read_spec()
    number_of_tasks = spec['n']
    number_of_workers = spec['workers']
    context = multiprocessing.get_context('fork')
    counts = context.RawArray('B', number_of_tasks)
    handled_per_worker = context.RawArray('q', number_of_workers)
    last_handled_per_worker = context.RawArray('d', number_of_workers)
    ready = context.RawArray('b', number_of_workers)
    go = context.Event()
    processes = [
        context.Process(
            target=run_worker,
            args=(spec, index, counts, handled_per_worker, last_handled_per_worker, ready, go),
        )
        for index in range(number_of_workers)
    ]
    for process in processes:
        process.start()
    common.wait_until(lambda: all(ready), timeout=60)
    started = time.monotonic()
    go.set()
    finished = common.wait_until(lambda: sum(handled_per_worker) >= number_of_tasks, timeout=spec.get('timeout', 3600))
    time.sleep(0.2)  # a duplicate delivered right after the last task would still be counted
    for process in processes:
        if process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in processes:
        process.join(30)
    seconds = max(last_handled_per_worker) - started
    handled = sum(handled_per_worker)
    lost = bytes(counts).count(0)
    verdict = {'processed': handled, 'lost': lost, 'duplicates': handled - (number_of_tasks - lost)}
    common.report(
        number_of_tasks,
        seconds,
        verdict,
        finished=finished,
        per_worker=list(handled_per_worker),
        peak_rss_bytes_children=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    )


if __name__ == '__main__':
    main()
