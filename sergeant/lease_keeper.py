"""Keeps the leases of a worker's fetched tasks alive while it still holds them.

A background thread renews every held lease each ``lease_seconds / 3`` on a
connector of its own, so a long task is never handed to a second worker while the
first is alive, and a worker that dies stops renewing, so its tasks come back after
one lease. Finished tasks wait here for their acknowledgement (sent with the next
fetch) and are renewed until it is sent.
"""

from __future__ import annotations

import logging
import threading
import time
import typing

from sergeant.connector.base import Connector

logger = logging.getLogger('sergeant.lease_keeper')

Receipt = typing.Hashable


class LeaseKeeper:
    def __init__(self, connector_factory: typing.Callable[[], Connector], queue: str, lease_seconds: float) -> None:
        self.connector_factory = connector_factory
        self.queue = queue
        self.lease_seconds = lease_seconds
        self.mutex = threading.Lock()
        self.held: set[Receipt] = set()
        self.finished: list[Receipt] = []
        self.stopped = threading.Event()
        self.renewals = 0
        self.longest_renewal_gap = 0.0
        """The longest time between two renewals, in seconds: how close a lease came to expiring."""
        self.thread = threading.Thread(target=self._renew_forever, name='sergeant-lease-keeper', daemon=True)
        self.thread.start()

    def hold(self, receipts: typing.Iterable[Receipt]) -> None:
        with self.mutex:
            self.held.update(receipts)

    def finish(self, receipts: typing.Sequence[Receipt]) -> None:
        """These tasks' handling ended; acknowledge them with the next round trip."""
        with self.mutex:
            self.held.difference_update(receipts)
            self.finished.extend(receipts)

    def drop(self, receipts: typing.Iterable[Receipt]) -> None:
        """Stop renewing receipts that were released or acknowledged."""
        with self.mutex:
            for receipt in receipts:
                self.held.discard(receipt)

    def pending_acks(self) -> list[Receipt]:
        with self.mutex:
            return list(self.finished)

    def acknowledged(self, receipts: typing.Sequence[Receipt]) -> None:
        with self.mutex:
            done = set(receipts)
            self.finished = [receipt for receipt in self.finished if receipt not in done]

    def unstarted(self) -> list[Receipt]:
        with self.mutex:
            return list(self.held)

    def _renew_forever(self) -> None:
        interval = self.lease_seconds / 3
        connector: Connector | None = None
        last_renewal = time.monotonic()
        try:
            while not self.stopped.wait(interval):
                with self.mutex:
                    receipts = [*self.held, *self.finished]
                if not receipts:
                    last_renewal = time.monotonic()
                    continue
                try:
                    if connector is None:
                        connector = self.connector_factory()
                    connector.renew(self.queue, receipts, self.lease_seconds)
                    now = time.monotonic()
                    self.longest_renewal_gap = max(self.longest_renewal_gap, now - last_renewal)
                    last_renewal = now
                    self.renewals += 1
                except Exception as error:  # a failed renewal is retried on the next beat
                    logger.warning('renewing %d lease(s) on queue %s failed: %s', len(receipts), self.queue, error)
        finally:
            if connector is not None:
                connector.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)
