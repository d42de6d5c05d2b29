"""A worker meant to run under the supervisor, with a lock and a delayed task.

Push:  .venv/bin/python examples/supervised.py push
Run:   .venv/bin/python -m sergeant.supervisor --worker-module=examples.supervised \
           --worker-class=ReportWorker --concurrent-workers=2
Look:  .venv/bin/sergeant status --worker-module=examples.supervised --worker-class=ReportWorker
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import sergeant


class ReportWorker(sergeant.worker.Worker):
    def generate_config(self) -> sergeant.config.WorkerConfig:
        return sergeant.config.WorkerConfig(
            name='reports',
            connector=sergeant.config.Connector(
                type='local',
                params={'file_path': os.path.join(tempfile.gettempdir(), 'sergeant-reports.sqlite3')},
            ),
            tasks_per_transaction=10,
            max_tasks_per_run=100,
            timeouts=sergeant.config.Timeouts(timeout=30.0),
            logging=sergeant.config.Logging(level=20, log_to_stdout=True),
        )

    def work(self, task: sergeant.objects.Task) -> None:
        # Only one report at a time across every process that shares the broker.
        lock = self.lock('report-writer')
        if not lock.acquire(timeout=10, check_interval=0.1, ttl=30):
            self.requeue(task)
        try:
            self.logger.info('writing report %s', task.kwargs['report'])
        finally:
            lock.release()


if __name__ == '__main__':
    producer = ReportWorker()
    producer.init_broker()
    if sys.argv[1:] == ['push']:
        producer.push_tasks([{'report': number} for number in range(20)])
        producer.push_task({'report': 'tomorrow'}, consumable_from=time.time() + 86_400)
    print(
        f'enqueued: {producer.number_of_enqueued_tasks()}, '
        f'with delayed: {producer.number_of_enqueued_tasks(include_delayed=True)}'
    )
