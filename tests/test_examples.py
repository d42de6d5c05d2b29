"""The examples run as documented."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent


def test_quickstart() -> None:
    finished = subprocess.run(
        [sys.executable, 'examples/quickstart.py'], cwd=REPOSITORY, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr
    assert '3 will be retried' in finished.stdout
    assert '3 squared is 9 (run 1)' in finished.stdout
    assert 'handled 5 tasks, 4 succeeded' in finished.stdout


def test_supervised_example() -> None:
    pushed = subprocess.run(
        [sys.executable, 'examples/supervised.py', 'push'], cwd=REPOSITORY, capture_output=True, text=True, timeout=60
    )
    assert pushed.returncode == 0, pushed.stderr
    enqueued = int(pushed.stdout.split('enqueued: ')[1].split(',')[0])
    assert enqueued >= 20
    supervisor = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'sergeant.supervisor',
            '--worker-module=examples.supervised',
            '--worker-class=ReportWorker',
            '--concurrent-workers=2',
        ],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    remaining = enqueued
    while time.monotonic() < deadline and remaining:
        time.sleep(0.3)
        status = subprocess.run(
            [sys.executable, 'examples/supervised.py'], cwd=REPOSITORY, capture_output=True, text=True, timeout=60
        )
        remaining = int(status.stdout.split('enqueued: ')[1].split(',')[0])
    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=30)
    assert remaining == 0
    assert supervisor.returncode == 0
    assert output.count('writing report') >= 20
    subprocess.run(
        [
            sys.executable,
            '-c',
            'import examples.supervised as e; w = e.ReportWorker(); w.init_broker(); w.purge_tasks()',
        ],
        cwd=REPOSITORY,
        check=True,
        timeout=60,
    )
