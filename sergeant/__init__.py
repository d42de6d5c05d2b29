"""sergeant: a fast, reliable distributed task queue and worker framework.

The public modules are imported on first attribute access, so ``import sergeant``
stays cheap and ``python -m sergeant.supervisor`` runs without a double import.
"""

from __future__ import annotations

import importlib
import types

__all__ = ['config', 'logging', 'objects', 'supervisor', 'worker']


def __getattr__(name: str) -> types.ModuleType:
    if name in __all__:
        module = importlib.import_module(f'sergeant.{name}')
        globals()[name] = module
        return module
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
