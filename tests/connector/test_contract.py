"""The connector contract: every backend and node layout must pass every test here."""

from __future__ import annotations

import multiprocessing
import time
import typing

import pytest

from sergeant import config
from sergeant.connector import Connector, connect


@pytest.fixture
def single_node(layout: str) -> bool:
    return not layout.endswith('-multi')


def payloads(count: int, prefix: str = 'task') -> list[bytes]:
    return [f'{prefix}-{index}'.encode() for index in range(count)]


def drain_pop(connector: Connector, queue: str, batch: int = 100) -> list[bytes]:
    taken: list[bytes] = []
    while True:
        got = connector.pop(queue, batch)
        if not got:
            return taken
        taken.extend(got)


def test_push_then_pop_returns_every_payload_once(connector: Connector, queue_name: str, single_node: bool) -> None:
    pushed = payloads(50)
    assert connector.push(queue_name, pushed[:10]) == 10
    for payload in pushed[10:]:
        connector.push(queue_name, [payload])
    taken = drain_pop(connector, queue_name, 7)
    if single_node:
        assert taken == pushed
    else:
        assert sorted(taken) == sorted(pushed)
    assert connector.lengths(queue_name).ready == 0


def test_pop_of_empty_queue_is_empty(connector: Connector, queue_name: str) -> None:
    assert connector.pop(queue_name, 10) == []
    assert connector.lease(queue_name, 10, 5.0) == []


def test_high_priority_comes_before_normal(connector: Connector, queue_name: str, single_node: bool) -> None:
    connector.push(queue_name, payloads(5, 'normal'), priority='NORMAL')
    connector.push(queue_name, payloads(3, 'high'), priority='HIGH')
    if single_node:
        assert connector.pop(queue_name, 3) == payloads(3, 'high')
        assert connector.pop(queue_name, 10) == payloads(5, 'normal')
    else:
        assert sorted(drain_pop(connector, queue_name)) == sorted(payloads(5, 'normal') + payloads(3, 'high'))


def test_unknown_priority_is_refused(connector: Connector, queue_name: str) -> None:
    with pytest.raises(ValueError, match='priority'):
        connector.push(queue_name, [b'x'], priority='URGENT')


def test_delayed_tasks_are_invisible_until_due(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, [b'now'])
    connector.push(queue_name, [b'later', b'later'], consumable_from=time.time() + 1.0)
    lengths = connector.lengths(queue_name)
    assert (lengths.ready, lengths.delayed) == (1, 2)
    assert connector.pop(queue_name, 10) == [b'now']
    assert connector.pop(queue_name, 10) == []
    time.sleep(1.2)
    assert connector.lengths(queue_name).delayed == 0
    assert sorted(connector.pop(queue_name, 10)) == [b'later', b'later']


def test_delayed_tasks_are_promoted_for_leases_too(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, [b'soon'], consumable_from=time.time() + 0.5)
    assert connector.lease(queue_name, 1, 5.0) == []
    time.sleep(0.7)
    leased = connector.lease(queue_name, 1, 5.0)
    assert [item.payload for item in leased] == [b'soon']


def test_identical_payloads_are_all_kept(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, [b'same'] * 20)
    connector.push(queue_name, [b'same'] * 20, consumable_from=time.time() + 60)
    connector.push(queue_name, [b'same'] * 20, priority='HIGH')
    lengths = connector.lengths(queue_name)
    assert (lengths.ready, lengths.delayed) == (40, 20)
    leased = connector.lease(queue_name, 15, 5.0)
    assert len(leased) == 15
    assert len({item.receipt for item in leased}) == 15
    assert connector.ack(queue_name, [item.receipt for item in leased]) == 15
    assert connector.lengths(queue_name).ready == 25


def test_binary_payloads_survive(connector: Connector, queue_name: str) -> None:
    binary = [bytes(range(256)), b'\x00' * 10, b'\xff\xfe\x00ok', b'']
    connector.push(queue_name, binary)
    assert sorted(drain_pop(connector, queue_name)) == sorted(binary)


def test_lease_hides_until_acknowledged(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, payloads(4))
    leased = connector.lease(queue_name, 3, 30.0)
    assert len(leased) == 3
    assert all(item.deliveries == 1 for item in leased)
    lengths = connector.lengths(queue_name)
    assert (lengths.ready, lengths.leased) == (1, 3)
    assert connector.ack(queue_name, [item.receipt for item in leased]) == 3
    assert connector.ack(queue_name, [item.receipt for item in leased]) == 0
    lengths = connector.lengths(queue_name)
    assert (lengths.ready, lengths.leased) == (1, 0)


def test_expired_lease_is_delivered_again_first(connector: Connector, queue_name: str, single_node: bool) -> None:
    connector.push(queue_name, [b'first'])
    first = connector.lease(queue_name, 1, 0.3)
    connector.push(queue_name, [b'second'])
    time.sleep(0.5)
    # Expired leases come first on their node; across nodes no order is promised, so take both there.
    again = connector.lease(queue_name, 1 if single_node else 2, 30.0)
    got = sorted((item.payload, item.deliveries) for item in again)
    assert got == ([(b'first', 2)] if single_node else [(b'first', 2), (b'second', 1)])
    # The first worker's late acknowledgement must not remove the new delivery.
    assert connector.ack(queue_name, [first[0].receipt]) == 0
    assert connector.renew(queue_name, [first[0].receipt], 30.0) == 0
    assert connector.lengths(queue_name).leased == len(again)
    assert connector.ack(queue_name, [item.receipt for item in again]) == len(again)


def test_renewed_lease_does_not_expire(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, [b'long'])
    leased = connector.lease(queue_name, 1, 0.6)
    for _ in range(3):
        time.sleep(0.3)
        assert connector.renew(queue_name, [leased[0].receipt], 0.6) == 1
    assert connector.lease(queue_name, 1, 5.0) == []
    assert connector.ack(queue_name, [leased[0].receipt]) == 1


def test_release_returns_tasks_to_the_front(connector: Connector, queue_name: str, single_node: bool) -> None:
    connector.push(queue_name, payloads(5))
    leased = connector.lease(queue_name, 2, 30.0)
    assert connector.release(queue_name, [item.receipt for item in leased]) == 2
    assert connector.lengths(queue_name).leased == 0
    taken = drain_pop(connector, queue_name)
    if single_node:
        assert taken == payloads(5)
    else:
        assert sorted(taken) == sorted(payloads(5))


def test_lease_acknowledges_in_the_same_call(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, payloads(4))
    first = connector.lease(queue_name, 2, 30.0)
    second = connector.lease(queue_name, 2, 30.0, ack=[item.receipt for item in first])
    assert len(second) == 2
    assert connector.lengths(queue_name).leased == 2
    connector.ack(queue_name, [item.receipt for item in second])
    assert connector.lengths(queue_name) == (0, 0, 0, 0)


def test_pop_also_takes_expired_leases(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, [b'orphan'])
    connector.lease(queue_name, 1, 0.2)
    time.sleep(0.4)
    assert connector.pop(queue_name, 5) == [b'orphan']
    assert connector.lengths(queue_name) == (0, 0, 0, 0)


def test_purge_removes_ready_delayed_and_leased(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, payloads(5))
    connector.push(queue_name, payloads(2), consumable_from=time.time() + 60)
    connector.lease(queue_name, 2, 30.0)
    connector.bury(queue_name, [b'dead'], 'test')
    assert connector.purge(queue_name) == 7
    assert connector.lengths(queue_name) == (0, 0, 0, 1)


def test_dead_letters_are_kept_listed_and_redriven(connector: Connector, queue_name: str) -> None:
    assert connector.bury(queue_name, [b'bad-1', b'bad-2'], 'cannot decode') == 2
    connector.bury(queue_name, [b'bad-3'], 'max retries')
    letters = connector.dead_letters(queue_name, 10)
    assert sorted(letter.payload for letter in letters) == [b'bad-1', b'bad-2', b'bad-3']
    assert {letter.reason for letter in letters} == {'cannot decode', 'max retries'}
    assert all(letter.buried_at <= time.time() for letter in letters)
    assert connector.lengths(queue_name).dead == 3
    assert connector.redrive(queue_name, 1) == 1
    assert connector.lengths(queue_name).dead == 2
    assert connector.redrive(queue_name) == 2
    assert sorted(drain_pop(connector, queue_name)) == [b'bad-1', b'bad-2', b'bad-3']
    connector.bury(queue_name, [b'bad-4'], 'x')
    assert connector.purge_dead(queue_name) == 1
    assert connector.dead_letters(queue_name) == []


def test_keys(connector: Connector, queue_name: str) -> None:
    name = f'{queue_name}-key'
    assert connector.get_key(name) is None
    assert connector.set_key(name, b'value-1')
    assert connector.set_key(name, b'value-2')
    assert connector.get_key(name) == b'value-2'
    assert connector.delete_key(name) is True
    assert connector.delete_key(name) is False
    assert connector.get_key(name) is None


def test_lock_has_one_holder_and_only_the_holder_releases(connector: Connector, queue_name: str) -> None:
    first = connector.lock(f'{queue_name}-lock')
    second = connector.lock(f'{queue_name}-lock')
    assert first.acquire(timeout=0) is True
    assert first.is_locked() and second.is_locked()
    assert second.acquire(timeout=0.3, check_interval=0.1) is False
    assert second.release() is False
    assert second.set_ttl(100) is False
    ttl = first.get_ttl()
    assert ttl is not None and 55 <= ttl <= 60
    assert first.set_ttl(100) is True
    ttl = second.get_ttl()
    assert ttl is not None and 95 <= ttl <= 100
    assert first.release() is True
    assert not second.is_locked()
    assert second.get_ttl() is None
    assert second.acquire(timeout=0) is True
    second.release()


def test_expired_lock_is_free_at_once(connector: Connector, queue_name: str) -> None:
    first = connector.lock(f'{queue_name}-lock')
    second = connector.lock(f'{queue_name}-lock')
    assert first.acquire(ttl=1)
    time.sleep(1.1)
    assert not first.is_locked()
    assert second.acquire(timeout=0) is True
    assert first.release() is False
    assert second.is_locked()
    second.release()


def test_large_batches(connector: Connector, queue_name: str) -> None:
    connector.push(queue_name, payloads(5000))
    assert connector.lengths(queue_name).ready == 5000
    seen: set[bytes] = set()
    while True:
        leased = connector.lease(queue_name, 1000, 30.0)
        if not leased:
            break
        seen.update(item.payload for item in leased)
        connector.ack(queue_name, [item.receipt for item in leased])
    assert seen == set(payloads(5000))
    assert connector.lengths(queue_name) == (0, 0, 0, 0)


def _lease_all(connector_settings: config.Connector, queue: str, results: typing.Any) -> None:
    connector = connect(connector_settings)
    taken: list[bytes] = []
    empty_rounds = 0
    while empty_rounds < 3:
        leased = connector.lease(queue, 7, 30.0)
        if not leased:
            empty_rounds += 1
            time.sleep(0.05)
            continue
        empty_rounds = 0
        taken.extend(item.payload for item in leased)
        connector.ack(queue, [item.receipt for item in leased])
    results.put(taken)
    connector.close()


def test_concurrent_consumers_never_share_a_task(
    connector: Connector, connector_settings: config.Connector, queue_name: str
) -> None:
    pushed = payloads(1500)
    connector.push(queue_name, pushed)
    context = multiprocessing.get_context('spawn')
    results = context.Queue()
    consumers = [context.Process(target=_lease_all, args=(connector_settings, queue_name, results)) for _ in range(3)]
    for consumer in consumers:
        consumer.start()
    taken = [payload for _ in consumers for payload in results.get(timeout=120)]
    for consumer in consumers:
        consumer.join(timeout=30)
    assert len(taken) == len(pushed)
    assert sorted(taken) == sorted(pushed)


def test_one_connector_shared_by_threads(connector: Connector, queue_name: str) -> None:
    import concurrent.futures

    def push_many(thread_number: int) -> None:
        for index in range(100):
            connector.push(queue_name, [f'{thread_number}-{index}'.encode()])

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(push_many, range(6)))
    assert connector.lengths(queue_name).ready == 600
    taken = drain_pop(connector, queue_name, 50)
    assert sorted(taken) == sorted(f'{thread}-{index}'.encode() for thread in range(6) for index in range(100))


def test_single_task_pops_see_due_delayed_tasks_and_expired_leases_promptly(
    connector: Connector, queue_name: str
) -> None:
    connector.push(queue_name, [b'orphan'])
    connector.lease(queue_name, 1, 0.3)
    connector.push(queue_name, [b'delayed'], consumable_from=time.time() + 0.3)
    started = time.monotonic()
    taken: list[bytes] = []
    while len(taken) < 2 and time.monotonic() - started < 5:
        taken += connector.pop(queue_name, 1)
        time.sleep(0.01)
    assert sorted(taken) == [b'delayed', b'orphan']
    assert time.monotonic() - started < 0.8, 'visible within a fraction of a second of being due'
