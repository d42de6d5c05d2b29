"""The sergeant command line and the demo, run as a user would."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sergeant import config
from sergeant.cli import main
from sergeant.connector import connect
from sergeant.encoder import Encoder
from tests.backends import REDIS_PORTS

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


def test_status_purge_and_dead_letters(tmp_path: pathlib.Path) -> None:
    connector_config = config.Connector('local', {'file_path': str(tmp_path / 'broker.sqlite3')})
    connector = connect(connector_config)
    connector.push('emails', Encoder().encode_kwargs_list([{'to': 'a'}, {'to': 'b'}], None, 0.0))
    connector.bury('emails', [b'\x00garbage'], 'cannot decode')
    connector.bury('emails', Encoder().encode_kwargs_list([{'to': 'dead'}], None, 0.0), 'reached max_retries=3')
    as_json = json.dumps({'type': 'local', 'params': connector_config.params})
    target = ['--connector', as_json, '--queue', 'emails']
    runner = CliRunner()

    status = runner.invoke(main, ['status', *target])
    assert status.exit_code == 0, status.output
    assert 'local:' in status.output
    row = next(line for line in status.output.splitlines() if 'local:' in line)
    assert [cell.strip() for cell in row.split('│')[2:7]] == ['up', '2', '0', '0', '2']

    listed = runner.invoke(main, ['dead', 'list', *target], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert 'cannot decode' in listed.output and "{'to': 'dead'}" in listed.output

    redriven = runner.invoke(main, ['dead', 'redrive', *target, '--limit', '1'])
    assert 're-drove 1 dead letter' in redriven.output
    assert connector.lengths('emails') == (3, 0, 0, 1)

    purged = runner.invoke(main, ['purge', *target, '--yes'])
    assert 'purged 3 task' in purged.output
    dead_purged = runner.invoke(main, ['dead', 'purge', *target, '--yes'])
    assert 'deleted 1 dead letter' in dead_purged.output
    assert connector.lengths('emails') == (0, 0, 0, 0)


def test_bad_connector_is_reported_with_the_field() -> None:
    result = CliRunner().invoke(
        main, ['status', '--connector', '{"type": "redis", "params": {"nodes": []}}', '--queue', 'q']
    )
    assert result.exit_code == 1
    assert 'ConfigError: redis connector params.nodes must list at least one node' in result.output


def test_status_needs_a_target() -> None:
    result = CliRunner().invoke(main, ['status'])
    assert result.exit_code == 2
    assert '--worker-module' in result.output


def test_demo_runs_end_to_end() -> None:
    finished = subprocess.run(
        [sys.executable, '-m', 'sergeant.cli', 'demo', '--tasks', '3000', '--workers', '2'],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    summary = [line for line in finished.stdout.splitlines() if 'summary' in line or 'lost=' in line]
    assert 'lost=0' in ' '.join(summary) and 'duplicates=0' in ' '.join(summary)
    assert 'tasks=3000' in ' '.join(summary)


@pytest.mark.redis
def test_status_reports_a_node_that_is_down() -> None:
    nodes = [{'host': '127.0.0.1', 'port': REDIS_PORTS[0]}, {'host': '127.0.0.1', 'port': 1}]
    result = CliRunner().invoke(
        main,
        ['status', '--connector', json.dumps({'type': 'redis', 'params': {'nodes': nodes}}), '--queue', 'q'],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    live = next(line for line in result.output.splitlines() if f':{REDIS_PORTS[0]}/0' in line)
    dead = next(line for line in result.output.splitlines() if 'redis://127.0.0.1:1/0' in line and '│' in line)
    assert 'up' in live and 'down' in dead
    assert 'cannot be reached' in result.output
