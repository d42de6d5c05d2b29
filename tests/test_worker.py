"""Worker behaviour in one process: handlers, retries, dead letters, delivery modes."""

from __future__ import annotations

import logging
import time
import typing

import pytest

from sergeant import config
from sergeant.objects import Task
from sergeant.worker import Worker
from tests.backends import WORKER_LAYOUTS

WorkFunction = typing.Callable[[Worker, Task], typing.Any]


@pytest.fixture(params=WORKER_LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Events(list[tuple[str, typing.Any]]):
    def names(self) -> list[str]:
        return [name for name, _ in self]


@pytest.fixture
def make_worker(
    connector_settings: config.Connector, queue_name: str
) -> typing.Iterator[typing.Callable[..., tuple[Worker, Events]]]:
    built: list[Worker] = []

    def make(work: WorkFunction = lambda worker, task: task.kwargs, **settings: typing.Any) -> tuple[Worker, Events]:
        events = Events()

        class RecordingWorker(Worker):
            def generate_config(self) -> config.WorkerConfig:
                return config.WorkerConfig(name=queue_name, connector=connector_settings, **settings)

            def work(self, task: Task) -> typing.Any:
                return work(self, task)

            def on_success(self, task: Task, returned_value: typing.Any) -> None:
                events.append(('success', returned_value))

            def on_failure(self, task: Task, exception: BaseException) -> None:
                events.append(('failure', str(exception)))
                if task.kwargs.get('retry_on_failure'):
                    self.retry(task)

            def on_retry(self, task: Task) -> None:
                events.append(('retry', task.run_count))

            def on_max_retries(self, task: Task) -> None:
                events.append(('max_retries', task.run_count))

            def on_requeue(self, task: Task) -> None:
                events.append(('requeue', task.kwargs))

            def on_timeout(self, task: Task) -> None:
                events.append(('timeout', task.kwargs))

            def on_stop(self, task: Task) -> None:
                events.append(('stop', task.kwargs))

            def on_starvation(self, time_with_no_tasks: int) -> None:
                events.append(('starvation', time_with_no_tasks))

            def pre_work(self, task: Task) -> None:
                events.append(('pre_work', task.kwargs))

            def post_work(self, task: Task, success: bool, exception: BaseException | None) -> None:
                events.append(('post_work', success))

        worker = RecordingWorker()
        worker.init_worker()
        built.append(worker)
        return worker, events

    yield make
    if built:
        built[0].purge_tasks()
        built[0].connector.purge_dead(queue_name)
    for worker in built:
        worker.connector.close()


def successes(events: Events) -> list[typing.Any]:
    return [value for name, value in events if name == 'success']


@pytest.mark.parametrize('delivery', ['at_least_once', 'at_most_once'])
@pytest.mark.parametrize('batch', [1, 7])
def test_work_loop_handles_each_task_once_and_stops_at_max(make_worker: typing.Any, delivery: str, batch: int) -> None:
    worker, events = make_worker(max_tasks_per_run=20, tasks_per_transaction=batch, delivery=delivery)
    assert worker.push_tasks([{'n': n} for n in range(25)]) is True
    summary = worker.work_loop()
    assert summary['executor']['tasks'] == 20
    assert summary['executor']['success'] == 20
    assert len(successes(events)) == 20
    assert len({value['n'] for value in successes(events)}) == 20
    assert worker.number_of_enqueued_tasks() == 5
    assert worker.broker.lengths(worker.config.name).leased == 0
    for key in (
        'start_time',
        'end_time',
        'executor_exception',
        'initialize_exception',
        'finalize_exception',
        'respawn',
        'stop',
    ):
        assert key in summary
    assert summary['end_time'] >= summary['start_time']
    assert events.names()[:3] == ['pre_work', 'success', 'post_work']


def test_high_priority_and_delayed_tasks(make_worker: typing.Any) -> None:
    worker, events = make_worker(max_tasks_per_run=3)
    worker.push_task({'n': 'normal'})
    worker.push_task({'n': 'high'}, priority='HIGH')
    worker.push_task({'n': 'later'}, consumable_from=time.time() + 1.0)
    assert worker.number_of_enqueued_tasks() == 2
    assert worker.number_of_enqueued_tasks(include_delayed=True) == 3
    worker.work_loop()
    assert [value['n'] for value in successes(events)] == ['high', 'normal', 'later']


def test_task_fields_and_trace_id(make_worker: typing.Any) -> None:
    worker, events = make_worker(
        max_tasks_per_run=1, work=lambda worker, task: (task.trace_id, task.run_count, task.date)
    )
    before = time.time()
    worker.push_task({'a': 1}, trace_id='trace-7')
    worker.work_loop()
    trace_id, run_count, date = successes(events)[0]
    assert (trace_id, run_count) == ('trace-7', 0)
    assert before - 1 <= date <= time.time()


def test_failure_then_retry_until_max_retries_goes_to_dead_letters(make_worker: typing.Any) -> None:
    def always_fails(worker: Worker, task: Task) -> None:
        raise ValueError(f'attempt {task.run_count}')

    worker, events = make_worker(work=always_fails, max_retries=2, max_tasks_per_run=3)
    worker.push_task({'retry_on_failure': True})
    summary = worker.work_loop()
    assert [event for event in events if event[0] in ('failure', 'retry', 'max_retries')] == [
        ('failure', 'attempt 0'),
        ('retry', 1),
        ('failure', 'attempt 1'),
        ('retry', 2),
        ('failure', 'attempt 2'),
        ('max_retries', 2),
    ]
    assert summary['executor']['failure'] == 3
    assert worker.number_of_enqueued_tasks() == 0
    letters = worker.dead_letters()
    assert len(letters) == 1 and 'max_retries=2' in letters[0].reason
    assert worker.redrive_dead_letters() == 1
    assert worker.number_of_enqueued_tasks() == 1


def test_retry_and_requeue_from_work(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> str:
        if task.kwargs['kind'] == 'retry' and task.run_count == 0:
            worker.retry(task)
        if task.kwargs['kind'] == 'requeue' and not task.kwargs.get('requeued'):
            task.kwargs['requeued'] = True
            worker.requeue(task, priority='HIGH')
        return task.kwargs['kind']

    worker, events = make_worker(work=work, max_tasks_per_run=4)
    worker.push_tasks([{'kind': 'retry'}, {'kind': 'requeue'}])
    summary = worker.work_loop()
    assert sorted(successes(events)) == ['requeue', 'retry']
    assert ('retry', 1) in events
    assert summary['executor']['retry'] == 1 and summary['executor']['requeue'] == 1


def test_interrupts_are_not_swallowed_by_except_exception(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> str:
        try:
            worker.retry(task)
        except Exception:
            return 'swallowed'
        return 'unreachable'

    worker, events = make_worker(work=work, max_tasks_per_run=1, max_retries=1)
    worker.push_task({})
    worker.work_loop()
    assert successes(events) == []
    assert ('retry', 1) in events


def test_handler_that_raises_is_logged_and_the_worker_goes_on(
    make_worker: typing.Any, caplog: pytest.LogCaptureFixture
) -> None:
    worker, _ = make_worker(max_tasks_per_run=3)

    def broken_handler(task: Task, returned_value: typing.Any) -> None:
        raise RuntimeError('handler bug')

    worker.on_success = broken_handler  # type: ignore[method-assign]
    worker.push_tasks([{}, {}, {}])
    with caplog.at_level(logging.ERROR):
        summary = worker.work_loop()
    assert summary['executor']['tasks'] == 3
    assert summary['executor_exception'] is None
    assert sum('handler on_success raised' in record.getMessage() for record in caplog.records) == 3


def test_undecodable_payload_goes_to_dead_letters_not_a_crash_loop(make_worker: typing.Any) -> None:
    worker, events = make_worker(max_tasks_per_run=2, tasks_per_transaction=3)
    worker.connector.push(worker.config.name, [b'\x80\x04not pickle at all'])
    worker.push_tasks([{'n': 1}, {'n': 2}])
    summary = worker.work_loop()
    assert summary['executor']['tasks'] == 2
    assert len(successes(events)) == 2
    letters = worker.dead_letters()
    assert [letter.payload for letter in letters] == [b'\x80\x04not pickle at all']
    assert 'cannot decode' in letters[0].reason
    assert worker.broker.lengths(worker.config.name).leased == 0


def test_stop_and_respawn_end_the_loop(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> None:
        if task.kwargs['action'] == 'stop':
            worker.stop()
        worker.respawn()

    worker, events = make_worker(work=work, tasks_per_transaction=5)
    worker.push_tasks([{'action': 'stop'}, {'action': 'x'}, {'action': 'y'}])
    summary = worker.work_loop()
    assert summary['stop'] is True and summary['respawn'] is False
    assert ('stop', {'action': 'stop'}) in events
    assert worker.number_of_enqueued_tasks() == 2, 'unstarted tasks of the batch go back'
    summary = worker.work_loop()
    assert summary['respawn'] is True
    assert worker.number_of_enqueued_tasks() == 1


def test_get_next_tasks_removes_and_purge_empties(make_worker: typing.Any) -> None:
    worker, _ = make_worker()
    worker.push_tasks([{'n': n} for n in range(5)])
    tasks = worker.get_next_tasks(3)
    assert [task.kwargs['n'] for task in tasks] == [0, 1, 2]
    assert worker.number_of_enqueued_tasks() == 2
    assert worker.purge_tasks() is True
    assert worker.number_of_enqueued_tasks() == 0
    assert worker.get_next_tasks(3) == []


def test_other_task_names_are_other_queues(make_worker: typing.Any, queue_name: str) -> None:
    worker, _ = make_worker()
    other = f'{queue_name}-other'
    worker.push_task({'n': 1}, task_name=other)
    assert worker.number_of_enqueued_tasks() == 0
    assert worker.number_of_enqueued_tasks(task_name=other) == 1
    assert [task.kwargs for task in worker.get_next_tasks(5, task_name=other)] == [{'n': 1}]


def test_bad_push_arguments_are_refused(make_worker: typing.Any) -> None:
    worker, _ = make_worker()
    with pytest.raises(ValueError, match='priority'):
        worker.push_task({}, priority='LOW')
    with pytest.raises(ValueError, match='kwargs must be a dict'):
        worker.push_tasks([{'a': 1}, ['not', 'a', 'dict']])  # type: ignore[list-item]
    with pytest.raises(ValueError, match='consumable_from'):
        worker.push_task({}, consumable_from='tomorrow')  # type: ignore[arg-type]
    assert worker.number_of_enqueued_tasks() == 0


def test_starvation_handler_runs_when_idle(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> None:
        worker.stop()

    worker, events = make_worker(work=work, starvation=config.Starvation(time_with_no_tasks=1))

    def on_starvation(time_with_no_tasks: int) -> None:
        events.append(('starvation', time_with_no_tasks))
        worker.push_task({})

    worker.on_starvation = on_starvation  # type: ignore[method-assign]
    started = time.monotonic()
    summary = worker.work_loop()
    assert ('starvation', 1) in events
    assert 1.0 <= time.monotonic() - started < 10
    assert summary['stop'] is True


def test_lease_is_renewed_while_a_long_task_runs(make_worker: typing.Any) -> None:
    seen_by_other: list[int] = []

    def work(worker: Worker, task: Task) -> None:
        other = worker.broker.connector
        for _ in range(5):
            time.sleep(0.4)
            seen_by_other.append(len(other.lease(worker.config.name, 1, 5.0)))

    worker, _events = make_worker(work=work, lease_seconds=0.9, max_tasks_per_run=1)
    worker.push_task({})
    worker.work_loop()
    assert seen_by_other == [0, 0, 0, 0, 0], 'a live worker keeps its lease past lease_seconds'
    assert worker.broker.lengths(worker.config.name).leased == 0


def test_serial_timeout_calls_on_timeout_and_goes_on(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> str:
        time.sleep(task.kwargs['sleep'])
        return 'done'

    worker, events = make_worker(work=work, max_tasks_per_run=2, timeouts=config.Timeouts(timeout=0.3))
    worker.push_tasks([{'sleep': 5}, {'sleep': 0}])
    started = time.monotonic()
    summary = worker.work_loop()
    assert time.monotonic() - started < 3
    assert ('timeout', {'sleep': 5}) in events
    assert successes(events) == ['done']
    assert summary['executor']['timeout'] == 1


def test_threaded_executor_runs_tasks_concurrently(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> int:
        time.sleep(0.3)
        return int(task.kwargs['n'])

    worker, events = make_worker(work=work, number_of_threads=4, tasks_per_transaction=8, max_tasks_per_run=8)
    worker.push_tasks([{'n': n} for n in range(8)])
    started = time.monotonic()
    summary = worker.work_loop()
    assert time.monotonic() - started < 1.5, 'eight 0.3 s tasks on four threads take about 0.6 s'
    assert sorted(successes(events)) == list(range(8))
    assert summary['executor']['tasks'] == 8
    assert worker.broker.lengths(worker.config.name).leased == 0


def test_threaded_timeout_interrupts_the_stuck_thread(make_worker: typing.Any) -> None:
    def work(worker: Worker, task: Task) -> str:
        deadline = time.monotonic() + task.kwargs['busy']
        while time.monotonic() < deadline:
            pass
        return 'done'

    worker, events = make_worker(
        work=work,
        number_of_threads=2,
        tasks_per_transaction=2,
        max_tasks_per_run=2,
        timeouts=config.Timeouts(timeout=0.3),
    )
    worker.push_tasks([{'busy': 5}, {'busy': 0}])
    started = time.monotonic()
    worker.work_loop()
    assert time.monotonic() - started < 3
    assert ('timeout', {'busy': 5}) in events
    assert successes(events) == ['done']


def test_locks_through_the_worker(make_worker: typing.Any, queue_name: str) -> None:
    worker, _ = make_worker()
    lock = worker.lock(f'{queue_name}-lock')
    assert lock.acquire(timeout=0, ttl=5)
    assert not worker.lock(f'{queue_name}-lock').acquire(timeout=0)
    assert lock.release()
