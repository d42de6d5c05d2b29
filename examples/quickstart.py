"""Push a few tasks into the embedded broker and handle them with one worker.

Run: .venv/bin/python examples/quickstart.py
"""

from __future__ import annotations

import os
import tempfile

import sergeant


class SquareWorker(sergeant.worker.Worker):
    def generate_config(self) -> sergeant.config.WorkerConfig:
        return sergeant.config.WorkerConfig(
            name='squares',
            connector=sergeant.config.Connector(
                type='local',
                params={'file_path': os.path.join(tempfile.gettempdir(), 'sergeant-quickstart.sqlite3')},
            ),
            max_tasks_per_run=5,
            max_retries=2,
        )

    def work(self, task: sergeant.objects.Task) -> int:
        number = task.kwargs['number']
        if number == 3 and task.run_count == 0:
            self.retry(task)  # handled again later with run_count == 1
        return int(number * number)

    def on_success(self, task: sergeant.objects.Task, returned_value: int) -> None:
        print(f'{task.kwargs["number"]} squared is {returned_value} (run {task.run_count})')

    def on_retry(self, task: sergeant.objects.Task) -> None:
        print(f'{task.kwargs["number"]} will be retried')


if __name__ == '__main__':
    worker = SquareWorker()
    worker.init_broker()
    worker.purge_tasks()
    worker.push_tasks([{'number': number} for number in range(1, 5)])
    worker.init_worker()
    summary = worker.work_loop()
    print(f'handled {summary["executor"]["tasks"]} tasks, {summary["executor"]["success"]} succeeded')
