"""The Redis backend: one or several independent redis-server nodes; see :mod:`.connector`."""
