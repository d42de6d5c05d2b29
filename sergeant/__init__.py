"""sergeant: a fast, reliable distributed task queue and worker framework."""

from sergeant import config, logging, objects, supervisor, worker

__all__ = ['config', 'logging', 'objects', 'supervisor', 'worker']
