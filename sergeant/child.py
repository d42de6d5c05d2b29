"""Entry point of one supervised worker process.

Runs the worker's loop and writes its summary as one JSON document to the file
descriptor the supervisor passed, so user code printing to stdout cannot garble it.
Exit codes: 0 the loop ended, 2 the worker could not be loaded or initialized.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
import typing

EXIT_OK: typing.Final = 0
EXIT_START_FAILED: typing.Final = 2


def describe(value: typing.Any) -> typing.Any:
    """Exceptions in the summary become their repr; everything else JSON can hold."""
    if isinstance(value, BaseException):
        return f'{type(value).__name__}: {value}'
    if isinstance(value, dict):
        return {key: describe(item) for key, item in value.items()}
    return value


def load_worker_class(module_name: str, class_name: str) -> type:
    module = importlib.import_module(module_name)
    try:
        worker_class = getattr(module, class_name)
    except AttributeError:
        raise ImportError(f'module {module_name!r} has no class {class_name!r}') from None
    if not isinstance(worker_class, type):
        raise ImportError(f'{module_name}.{class_name} is not a class')
    return worker_class


def write_summary(summary_fd: int, summary: dict[str, typing.Any]) -> None:
    if summary_fd < 0:
        return
    with os.fdopen(summary_fd, 'w') as stream:
        json.dump(describe(summary), stream, default=repr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m sergeant.child')
    parser.add_argument('--worker-module', required=True)
    parser.add_argument('--worker-class', required=True)
    parser.add_argument('--summary-fd', type=int, default=-1)
    arguments = parser.parse_args(argv)
    started = time.time()
    try:
        worker = load_worker_class(arguments.worker_module, arguments.worker_class)()
        worker.init_worker()
    except Exception as error:
        traceback.print_exc()
        write_summary(
            arguments.summary_fd,
            {
                'start_time': started,
                'end_time': time.time(),
                'initialize_exception': error,
                'executor_exception': None,
                'finalize_exception': None,
                'respawn': False,
                'stop': False,
                'executor': {},
            },
        )
        return EXIT_START_FAILED
    summary = worker.work_loop()
    write_summary(arguments.summary_fd, summary)
    return EXIT_START_FAILED if summary.get('initialize_exception') else EXIT_OK


if __name__ == '__main__':
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
