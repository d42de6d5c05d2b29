"""The Worker users subclass: producer methods, hooks and handlers, and the work loop.

Delivery: under ``delivery='at_least_once'`` (the default) the loop leases tasks, a
background keeper renews the leases while the worker lives, and a task is
acknowledged only after its handling ended (acknowledgements ride on the next fetch,
so they cost no extra round trip). A worker that dies stops renewing and its tasks
come back after ``lease_seconds``. ``'at_most_once'`` removes tasks when fetched.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
import types
import typing

from sergeant import config as config_module
from sergeant.broker import Broker, TaskBatch
from sergeant.connector import Connector, connect
from sergeant.connector.base import DeadLetter, Lock
from sergeant.encoder import Encoder
from sergeant.errors import ConfigError, ConnectorError
from sergeant.interrupts import (
    WorkerInterrupt,
    WorkerMaxRetries,
    WorkerRequeue,
    WorkerRespawn,
    WorkerRetry,
    WorkerStop,
    WorkerTimedOut,
)
from sergeant.lease_keeper import LeaseKeeper
from sergeant.objects import Task

__all__ = [
    'Worker',
    'WorkerInterrupt',
    'WorkerMaxRetries',
    'WorkerRequeue',
    'WorkerRespawn',
    'WorkerRetry',
    'WorkerStop',
    'WorkerTimedOut',
]

LOG_FORMAT: typing.Final = '%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s'
IDLE_SLEEP_MIN: typing.Final = 0.02
IDLE_SLEEP_MAX: typing.Final = 0.5
BROKER_RETRY_MIN: typing.Final = 0.1
BROKER_RETRY_MAX: typing.Final = 5.0


class TimeoutGuard(typing.Protocol):
    def arm(self) -> None: ...
    def disarm(self) -> None: ...


class Executor(typing.Protocol):
    def execute(self, batch: TaskBatch) -> list[int]:
        """Run the batch; return the positions of the tasks it did not start."""

    def drain(self) -> None: ...
    def close(self) -> None: ...


EVENT_COUNTERS: typing.Final = (
    'success',
    'failure',
    'timeout',
    'retry',
    'max_retries',
    'requeue',
    'stop',
    'respawn',
    'starvation',
)


class Worker:
    """Subclass it: override ``generate_config`` and ``work``; the hooks and handlers are optional."""

    config: config_module.WorkerConfig
    logger: logging.Logger
    broker: Broker
    connector: Connector

    def __init__(self) -> None:
        generated = self.generate_config()
        if not isinstance(generated, config_module.WorkerConfig):
            raise ConfigError(
                f'{type(self).__name__}.generate_config() must return a sergeant.config.WorkerConfig, got {generated!r}'
            )
        self.config = generated
        self.logger = logging.getLogger(self.config.name)
        self.stop_requested = False
        self.end_reason: str | None = None
        self.lease_keeper: LeaseKeeper | None = None
        self.broker_outage_started: float | None = None
        self.executor: Executor | None = None
        self.counters = dict.fromkeys(('tasks', *EVENT_COUNTERS), 0)
        self.counters_mutex: threading.Lock | None = None
        self.calls_pre_work = self.calls_post_work = self.dispatches_success = True
        self.work_seconds = 0.0
        self.lease_renewals = 0
        self.longest_renewal_gap = 0.0

    # -- what users override ------------------------------------------------------------
    def generate_config(self) -> config_module.WorkerConfig:
        raise NotImplementedError(f'{type(self).__name__} must override generate_config() to return a WorkerConfig')

    def work(self, task: Task) -> typing.Any:
        raise NotImplementedError(f'{type(self).__name__} must override work(self, task)')

    def initialize(self) -> None:
        """Runs once before the loop, in the worker process."""

    def finalize(self) -> None:
        """Runs once after the loop, even when it ended with an error."""

    def pre_work(self, task: Task) -> None: ...

    def post_work(self, task: Task, success: bool, exception: BaseException | None) -> None: ...

    def on_success(self, task: Task, returned_value: typing.Any) -> None: ...

    def on_failure(self, task: Task, exception: BaseException) -> None: ...

    def on_timeout(self, task: Task) -> None: ...

    def on_retry(self, task: Task) -> None: ...

    def on_max_retries(self, task: Task) -> None: ...

    def on_requeue(self, task: Task) -> None: ...

    def on_starvation(self, time_with_no_tasks: int) -> None: ...

    def on_stop(self, task: Task) -> None: ...

    # -- set-up -----------------------------------------------------------------------
    def init_broker(self) -> None:
        """Connect; enough for a producer."""
        self.connector = connect(self.config.connector)
        encoder = Encoder(self.config.encoder.serializer, self.config.encoder.compressor)
        self.broker = Broker(self.connector, encoder)

    def init_logger(self) -> None:
        settings = self.config.logging
        self.logger.setLevel(settings.level)
        for handler in settings.handlers:
            if handler not in self.logger.handlers:
                self.logger.addHandler(handler)
        if settings.log_to_stdout and not any(getattr(h, 'sergeant_stdout', False) for h in self.logger.handlers):
            stdout_handler = logging.StreamHandler(sys.stdout)
            stdout_handler.setFormatter(logging.Formatter(LOG_FORMAT))
            stdout_handler.sergeant_stdout = True  # type: ignore[attr-defined]
            self.logger.addHandler(stdout_handler)

    def init_executor(self) -> None:
        if self.config.number_of_threads > 1:
            from sergeant.executor.threaded import ThreadedExecutor

            self.executor = ThreadedExecutor(self)
        else:
            from sergeant.executor.serial import SerialExecutor

            self.executor = SerialExecutor(self)

    def init_worker(self) -> None:
        """Connect and prepare logging and the executor."""
        self.init_logger()
        self.init_broker()
        self.init_executor()

    # -- producer API -------------------------------------------------------------------
    def push_task(
        self,
        kwargs: dict[str, typing.Any],
        task_name: str | None = None,
        priority: str = 'NORMAL',
        consumable_from: float | None = None,
        trace_id: str | None = None,
    ) -> bool:
        return self.broker.push_kwargs(task_name or self.config.name, [kwargs], priority, consumable_from, trace_id)

    def push_tasks(
        self,
        kwargs_list: typing.Sequence[dict[str, typing.Any]],
        task_name: str | None = None,
        priority: str = 'NORMAL',
        consumable_from: float | None = None,
        trace_id: str | None = None,
    ) -> bool:
        return self.broker.push_kwargs(task_name or self.config.name, kwargs_list, priority, consumable_from, trace_id)

    def get_next_tasks(self, number_of_tasks: int, task_name: str | None = None) -> list[Task]:
        """Remove and return up to ``number_of_tasks`` tasks (at most once)."""
        if isinstance(number_of_tasks, bool) or not isinstance(number_of_tasks, int) or number_of_tasks < 1:
            raise ConfigError(f'number_of_tasks must be an int >= 1, got {number_of_tasks!r}')
        return self.broker.pop_tasks(task_name or self.config.name, number_of_tasks)

    def number_of_enqueued_tasks(self, task_name: str | None = None, include_delayed: bool = False) -> int:
        return self.broker.number_of_enqueued_tasks(task_name or self.config.name, include_delayed)

    def purge_tasks(self, task_name: str | None = None) -> bool:
        return self.broker.purge_tasks(task_name or self.config.name)

    def lock(self, name: str) -> Lock:
        return self.broker.lock(name)

    def dead_letters(self, task_name: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return self.broker.dead_letters(task_name or self.config.name, limit)

    def redrive_dead_letters(self, task_name: str | None = None, limit: int | None = None) -> int:
        return self.broker.redrive(task_name or self.config.name, limit)

    # -- control from inside a task -------------------------------------------------------
    def retry(self, task: Task, priority: str = 'NORMAL', consumable_from: float | None = None) -> typing.NoReturn:
        """Push the task again with run_count + 1; past max_retries bury it and raise WorkerMaxRetries."""
        max_retries = self.config.max_retries
        if max_retries > 0 and task.run_count >= max_retries:
            self.broker.bury_task(self.config.name, task, f'reached max_retries={max_retries}')
            raise WorkerMaxRetries()
        task.run_count += 1
        self.broker.push_tasks(self.config.name, [task], priority, consumable_from)
        raise WorkerRetry()

    def requeue(self, task: Task, priority: str = 'NORMAL', consumable_from: float | None = None) -> typing.NoReturn:
        """Push the task again unchanged."""
        self.broker.push_tasks(self.config.name, [task], priority, consumable_from)
        raise WorkerRequeue()

    def stop(self) -> typing.NoReturn:
        raise WorkerStop()

    def respawn(self) -> typing.NoReturn:
        raise WorkerRespawn()

    # -- handling one task ----------------------------------------------------------------
    def _count(self, counter: str) -> None:
        if self.counters_mutex is None:
            self.counters[counter] += 1
            return
        with self.counters_mutex:
            self.counters[counter] += 1

    def _overrides(self, name: str) -> bool:
        """True when the user replaced a hook (in a subclass or on the instance)."""
        return getattr(getattr(self, name), '__func__', None) is not getattr(Worker, name)

    def _prepare_fast_path(self) -> None:
        """Decide once per loop which per-task calls can be skipped because they would do nothing."""
        self.counters_mutex = threading.Lock() if self.config.number_of_threads > 1 else None
        self.calls_pre_work = self._overrides('pre_work')
        self.calls_post_work = self._overrides('post_work')
        self.dispatches_success = self._overrides('on_success') or self.config.logging.events.on_success

    def _call_hook(self, name: str, *args: typing.Any) -> None:
        try:
            getattr(self, name)(*args)
        except WorkerInterrupt as interrupt:
            self.logger.error(
                '%s raised %s, which only work() and the failure handlers may raise', name, type(interrupt).__name__
            )
        except Exception:
            self.logger.exception('%s raised; the worker goes on', name)

    def _dispatch(self, event: str, task: Task, *args: typing.Any, may_interrupt: bool = False) -> None:
        """Log the event when its switch is on, then run the user's handler safely."""
        self._count(event.removeprefix('on_'))
        if getattr(self.config.logging.events, event):
            level = logging.INFO if event in ('on_success', 'on_retry', 'on_requeue', 'on_stop') else logging.ERROR
            self.logger.log(
                level,
                '%s: kwargs=%.300r trace_id=%s run_count=%d',
                event,
                task.kwargs,
                task.trace_id,
                task.run_count,
                exc_info=args[0] if event == 'on_failure' else None,
            )
        try:
            getattr(self, event)(task, *args)
        except WorkerInterrupt as interrupt:
            if may_interrupt:
                self._interrupted(task, interrupt)
            else:
                self.logger.error(
                    '%s raised %s, which only work(), on_failure and on_timeout may raise',
                    event,
                    type(interrupt).__name__,
                )
        except Exception:
            self.logger.exception('handler %s raised; the worker goes on', event)

    def _interrupted(self, task: Task, interrupt: WorkerInterrupt) -> None:
        if isinstance(interrupt, WorkerRetry):
            self._dispatch('on_retry', task)
        elif isinstance(interrupt, WorkerMaxRetries):
            self._dispatch('on_max_retries', task)
        elif isinstance(interrupt, WorkerRequeue):
            self._dispatch('on_requeue', task)
        elif isinstance(interrupt, WorkerStop):
            self.end_reason = 'stop'
            self._dispatch('on_stop', task)
        elif isinstance(interrupt, WorkerRespawn):
            self.end_reason = 'respawn'
            self._count('respawn')
            self.logger.info('worker asked to respawn')
        elif isinstance(interrupt, WorkerTimedOut):
            self._dispatch('on_timeout', task, may_interrupt=True)

    def handle_task(self, task: Task, guard: TimeoutGuard | None) -> None:
        """Run one task through pre_work, work, its handler and post_work; never raises.

        The success path skips hooks that were not overridden: it runs once per task. The
        executor counts the tasks it started (per batch, not per task).
        """
        if self.calls_pre_work:
            self._call_hook('pre_work', task)
        exception: BaseException | None = None
        started = time.perf_counter()
        try:
            try:
                if guard is not None:
                    guard.arm()
                returned_value = self.work(task)
            finally:
                if guard is not None:
                    guard.disarm()
        except WorkerInterrupt as interrupt:
            self.work_seconds += time.perf_counter() - started
            exception = interrupt
            self._interrupted(task, interrupt)
        except Exception as error:
            self.work_seconds += time.perf_counter() - started
            exception = error
            self._dispatch('on_failure', task, error, may_interrupt=True)
        else:
            self.work_seconds += time.perf_counter() - started
            if self.dispatches_success:
                self._dispatch('on_success', task, returned_value)
            elif self.counters_mutex is None:
                self.counters['success'] += 1
            else:
                self._count('success')
        if self.calls_post_work:
            self._call_hook('post_work', task, exception is None, exception)

    def tasks_finished(self, receipts: typing.Sequence[typing.Hashable]) -> None:
        if self.lease_keeper is not None:
            self.lease_keeper.finish(receipts)

    def should_stop(self) -> bool:
        return self.stop_requested or self.end_reason is not None

    # -- the loop ----------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: types.FrameType | None) -> None:
        if self.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop_requested = True
        if self.executor is not None:
            self.executor.drain()
        self.logger.info('received signal %d: stopping after the current task', signum)

    def _fetch(self, count: int) -> TaskBatch:
        queue = self.config.name
        if self.lease_keeper is None:
            return TaskBatch(self.broker.pop_tasks(queue, count), None)
        acks = self.lease_keeper.pending_acks()
        batch = self.broker.lease_tasks(queue, count, self.config.lease_seconds, self.config.max_deliveries, ack=acks)
        self.lease_keeper.acknowledged(acks)
        if batch.receipts:
            self.lease_keeper.hold(batch.receipts)
        return batch

    def _give_back(self, batch: TaskBatch, positions: typing.Sequence[int]) -> None:
        """Tasks fetched but not started go back to the front of the queue."""
        if not positions:
            return
        if batch.receipts is not None:
            receipts = [batch.receipts[position] for position in positions]
            self.broker.release(self.config.name, receipts)
            if self.lease_keeper is not None:
                self.lease_keeper.drop(receipts)
        else:
            self.broker.push_tasks(self.config.name, [batch.tasks[position] for position in positions], 'HIGH')
        self.logger.info('gave %d unstarted task(s) back to queue %s', len(positions), self.config.name)

    def _flush_acks(self) -> None:
        if self.lease_keeper is None:
            return
        acks = self.lease_keeper.pending_acks()
        if acks:
            self.broker.ack(self.config.name, acks)
            self.lease_keeper.acknowledged(acks)

    def _sleep(self, seconds: float) -> None:
        """Idle without missing a stop request for long."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

    def _loop(self) -> None:
        assert self.executor is not None
        batch_size = self.config.tasks_per_transaction
        max_tasks = self.config.max_tasks_per_run
        starvation = self.config.starvation
        last_task_time = time.monotonic()
        idle_sleep = IDLE_SLEEP_MIN
        while not self.should_stop():
            wanted = batch_size
            if max_tasks > 0:
                wanted = min(batch_size, max_tasks - self.counters['tasks'])
                if wanted <= 0:
                    break
            try:
                batch = self._fetch(wanted)
            except ConnectorError as error:
                outage_sleep = self._broker_unreachable(error)
                self._sleep(outage_sleep)
                continue
            if self.broker_outage_started is not None:
                self.logger.warning('broker reachable again after %.1fs', time.monotonic() - self.broker_outage_started)
                self.broker_outage_started = None
            if not batch.tasks:
                if starvation is not None and time.monotonic() - last_task_time >= starvation.time_with_no_tasks:
                    self._count('starvation')
                    if self.config.logging.events.on_starvation:
                        self.logger.warning('starvation: no tasks for %ss', starvation.time_with_no_tasks)
                    self._call_hook('on_starvation', starvation.time_with_no_tasks)
                    last_task_time = time.monotonic()
                self._sleep(idle_sleep)
                idle_sleep = min(idle_sleep * 2, IDLE_SLEEP_MAX)
                continue
            idle_sleep = IDLE_SLEEP_MIN
            last_task_time = time.monotonic()
            try:
                unstarted = self.executor.execute(batch)
            except BaseException:
                self._give_back(batch, self._held_positions(batch))
                raise
            self._give_back(batch, unstarted)

    def _broker_unreachable(self, error: ConnectorError) -> float:
        """Keep the worker alive while the broker is down: report the outage once, retry with back-off.

        Returns how long to wait before the next try (doubling up to BROKER_RETRY_MAX seconds).
        """
        now = time.monotonic()
        if self.broker_outage_started is None:
            self.broker_outage_started = now
            self.logger.error('cannot fetch tasks, the broker is unreachable; retrying: %s', error)
        elapsed = now - self.broker_outage_started
        return float(min(BROKER_RETRY_MIN * 2.0 ** int(elapsed), BROKER_RETRY_MAX))

    def _held_positions(self, batch: TaskBatch) -> list[int]:
        """Positions of a batch's tasks that are still held: fetched but not finished."""
        if self.lease_keeper is None or batch.receipts is None:
            return []
        held = set(self.lease_keeper.unstarted())
        return [position for position, receipt in enumerate(batch.receipts) if receipt in held]

    def work_loop(self) -> dict[str, typing.Any]:
        """Run until max_tasks_per_run tasks are done, stop()/respawn() is called or SIGTERM arrives."""
        if self.executor is None:
            self.init_worker()
        self.stop_requested = False
        self.end_reason = None
        self.counters = dict.fromkeys(self.counters, 0)
        self._prepare_fast_path()
        self.work_seconds = 0.0
        self.lease_renewals = 0
        self.longest_renewal_gap = 0.0
        summary: dict[str, typing.Any] = {
            'start_time': time.time(),
            'end_time': None,
            'executor_exception': None,
            'initialize_exception': None,
            'finalize_exception': None,
            'respawn': False,
            'stop': False,
            'sigterm': False,
            'executor': {},
        }
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous_handlers = {}
        if in_main_thread:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous_handlers[signum] = signal.signal(signum, self._on_sigterm)
        try:
            self._run_with_initialize(summary)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        summary['end_time'] = time.time()
        summary['respawn'] = self.end_reason == 'respawn'
        summary['stop'] = self.end_reason == 'stop'
        summary['sigterm'] = self.stop_requested
        summary['executor'] = self._executor_summary()
        return summary

    def _run_with_initialize(self, summary: dict[str, typing.Any]) -> None:
        try:
            self.initialize()
        except Exception as error:
            summary['initialize_exception'] = error
            self.logger.exception('initialize() raised; the work loop does not start')
            return
        if self.config.delivery == 'at_least_once':
            self.lease_keeper = LeaseKeeper(
                lambda: connect(self.config.connector), self.config.name, self.config.lease_seconds
            )
        try:
            self._loop()
        except Exception as error:
            summary['executor_exception'] = error
            self.logger.exception('the work loop stopped on an error')
        finally:
            try:
                self._flush_acks()
                if self.lease_keeper is not None:
                    leftover = self.lease_keeper.unstarted()
                    self._give_back(TaskBatch([], leftover), range(len(leftover)))
            except Exception:
                self.logger.exception('could not acknowledge or give back tasks; their leases will expire')
            if self.lease_keeper is not None:
                self.lease_keeper.stop()
                self.lease_renewals = self.lease_keeper.renewals
                self.longest_renewal_gap = self.lease_keeper.longest_renewal_gap
                self.lease_keeper = None
            try:
                self.finalize()
            except Exception as error:
                summary['finalize_exception'] = error
                self.logger.exception('finalize() raised')

    def _executor_summary(self) -> dict[str, typing.Any]:
        figures: dict[str, typing.Any] = dict(self.counters)
        figures['work_seconds'] = round(self.work_seconds, 6)
        figures['average_task_seconds'] = (
            round(self.work_seconds / self.counters['tasks'], 6) if self.counters['tasks'] else 0.0
        )
        figures['stuck_threads'] = getattr(self.executor, 'stuck_threads', 0)
        figures['lease_renewals'] = self.lease_renewals
        figures['longest_renewal_gap_seconds'] = round(self.longest_renewal_gap, 3)
        return figures
