"""How a fetched batch of tasks is run: one by one in the main thread, or in a pool."""
