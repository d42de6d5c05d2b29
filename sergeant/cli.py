"""The ``sergeant`` command: run a supervisor, inspect and repair queues, run the demo."""

from __future__ import annotations

import json
import sys
import typing

import click
from rich.console import Console
from rich.table import Table

from sergeant import config
from sergeant.broker import Broker
from sergeant.connector import connect
from sergeant.encoder import Encoder
from sergeant.errors import SergeantError

console = Console()


class QueueTarget(typing.NamedTuple):
    broker: Broker
    queue: str


def _target(
    worker_module: str | None, worker_class: str | None, connector_json: str | None, queue: str | None
) -> QueueTarget:
    """The queue to act on: a worker's own config, or a connector given as JSON plus a queue name."""
    if worker_module and worker_class:
        import os

        sys.path.insert(0, os.getcwd())
        from sergeant.child import load_worker_class

        worker_config: config.WorkerConfig = load_worker_class(worker_module, worker_class)().config
        connector_config = worker_config.connector
        encoder_config = worker_config.encoder
        queue = queue or worker_config.name
    elif connector_json:
        try:
            given = json.loads(connector_json)
        except ValueError as error:
            raise click.BadParameter(f'not JSON: {error}', param_hint='--connector') from None
        if not isinstance(given, dict):
            raise click.BadParameter('must be a JSON object {"type": ..., "params": {...}}', param_hint='--connector')
        connector_config = config.Connector(**given)
        encoder_config = config.Encoder()
    else:
        raise click.UsageError(
            'name the queue with --worker-module and --worker-class, or with --connector and --queue'
        )
    if not queue:
        raise click.UsageError('--queue is required with --connector')
    encoder = Encoder(encoder_config.serializer, encoder_config.compressor)
    return QueueTarget(Broker(connect(connector_config), encoder), queue)


def queue_options(function: typing.Callable[..., typing.Any]) -> typing.Callable[..., typing.Any]:
    for option in reversed(
        (
            click.option('--worker-module', help='module of the worker whose config names the broker and queue'),
            click.option('--worker-class', help='the Worker subclass in that module'),
            click.option('--connector', 'connector_json', help='connector as JSON: {"type": "redis", "params": {...}}'),
            click.option('--queue', help='queue (task) name; defaults to the worker name'),
        )
    ):
        function = option(function)
    return function


class ReportingGroup(click.Group):
    """Turns sergeant's own errors (a bad config, a node that is down) into a one-line message and exit 1."""

    def invoke(self, ctx: click.Context) -> typing.Any:
        try:
            return super().invoke(ctx)
        except SergeantError as error:
            raise click.ClickException(f'{type(error).__name__}: {error}') from error


@click.group(cls=ReportingGroup)
def main() -> None:
    """sergeant: a fast, reliable task queue."""


@main.command()
@click.option('--worker-module', required=True)
@click.option('--worker-class', required=True)
@click.option('--concurrent-workers', type=click.IntRange(min=1), required=True)
@click.option('--max-worker-memory-usage', type=click.IntRange(min=1), default=None, help='bytes of RSS per worker')
def supervise(
    worker_module: str, worker_class: str, concurrent_workers: int, max_worker_memory_usage: int | None
) -> None:
    """Run and supervise worker processes until SIGTERM."""
    from sergeant.supervisor import Supervisor

    Supervisor(worker_module, worker_class, concurrent_workers, max_worker_memory_usage).start()


@main.command()
@queue_options
def status(worker_module: str | None, worker_class: str | None, connector_json: str | None, queue: str | None) -> None:
    """Show ready, delayed, leased and dead tasks per node."""
    target = _target(worker_module, worker_class, connector_json, queue)
    table = Table(title=f'queue {target.queue}')
    for column in ('node', 'state', 'ready', 'delayed', 'leased', 'dead'):
        table.add_column(column, justify='left' if column in ('node', 'state') else 'right')
    errors = []
    for status in target.broker.connector.node_status(target.queue):
        if status.lengths is None:
            table.add_row(status.node, '[red]down', '-', '-', '-', '-')
            errors.append(f'{status.node}: {status.error}')
        else:
            table.add_row(status.node, 'up', *(str(value) for value in status.lengths))
    console.print(table)
    for error in errors:
        console.print(f'[red]{error}')


@main.command()
@queue_options
@click.confirmation_option(prompt='Delete every ready, delayed and leased task of the queue?')
def purge(worker_module: str | None, worker_class: str | None, connector_json: str | None, queue: str | None) -> None:
    """Delete the queue's tasks (dead letters stay)."""
    target = _target(worker_module, worker_class, connector_json, queue)
    removed = target.broker.connector.purge(target.queue)
    console.print(f'purged {removed} task(s) from {target.queue}')


@main.group()
def dead() -> None:
    """List, re-drive or delete dead letters."""


@dead.command('list')
@queue_options
@click.option('--limit', type=click.IntRange(min=1), default=20)
def dead_list(
    worker_module: str | None, worker_class: str | None, connector_json: str | None, queue: str | None, limit: int
) -> None:
    """Show the oldest dead letters: when, why, and the task."""
    target = _target(worker_module, worker_class, connector_json, queue)
    table = Table(title=f'dead letters of {target.queue}')
    for column in ('buried at', 'reason', 'task'):
        table.add_column(column)
    import datetime

    for letter in target.broker.dead_letters(target.queue, limit):
        try:
            shown = repr(target.broker.encoder.decode(letter.payload).kwargs)
        except SergeantError:
            shown = f'{len(letter.payload)} undecodable bytes: {letter.payload[:40]!r}'
        buried = datetime.datetime.fromtimestamp(letter.buried_at).isoformat(timespec='seconds')
        table.add_row(buried, letter.reason, shown[:120])
    console.print(table)


@dead.command('redrive')
@queue_options
@click.option('--limit', type=click.IntRange(min=1), default=None, help='how many (default: all)')
def dead_redrive(
    worker_module: str | None,
    worker_class: str | None,
    connector_json: str | None,
    queue: str | None,
    limit: int | None,
) -> None:
    """Push dead letters back to the queue."""
    target = _target(worker_module, worker_class, connector_json, queue)
    console.print(f're-drove {target.broker.redrive(target.queue, limit)} dead letter(s) to {target.queue}')


@dead.command('purge')
@queue_options
@click.confirmation_option(prompt='Delete the dead letters of the queue for good?')
def dead_purge(
    worker_module: str | None, worker_class: str | None, connector_json: str | None, queue: str | None
) -> None:
    """Delete the dead letters for good."""
    target = _target(worker_module, worker_class, connector_json, queue)
    console.print(f'deleted {target.broker.connector.purge_dead(target.queue)} dead letter(s)')


@main.command()
@click.option('--tasks', 'number_of_tasks', type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option('--workers', 'number_of_workers', type=click.IntRange(min=1), default=2, show_default=True)
def demo(number_of_tasks: int, number_of_workers: int) -> None:
    """Push tasks to the embedded broker, run a supervisor with workers, show progress and a summary."""
    from sergeant.demo import run_demo

    sys.exit(run_demo(number_of_tasks, number_of_workers, console))


if __name__ == '__main__':
    main()
