"""A stage's state store against the real broker: transactions, fencing, rebuilds.

Two stores with one app id stand for two workers (each its own data directory): the
second claim fences the first, a crash mid-record leaves nothing the changelog lacks,
and a standby's catch-up follows the owner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.errors import StateFencedError
from streams.settings import Settings
from tables.state import StateStore


@pytest.fixture
def stores(stack_settings: Callable[..., Settings], tmp_path: Path
           ) -> Iterator[Callable[[str], StateStore]]:
    settings = stack_settings()
    made: list[StateStore] = []

    def make(name: str) -> StateStore:
        store = StateStore(settings.model_copy(update={"data_dir": tmp_path / name}), "state")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _commit(store: StateStore, **writes: bytes) -> None:
    store.begin()
    for key, value in writes.items():
        store[key.encode()] = value
    store.commit()


def test_a_second_claim_fences_the_first_owner(stores: Callable[[str], StateStore]) -> None:
    a, b = stores("a"), stores("b")
    a.claim()
    _commit(a, k1=b"from-a")
    a.begin()
    a[b"k2"] = b"in flight"  # a's open transaction when b takes over
    assert b.claim() >= 1
    assert b.get(b"k1") == b"from-a" and b.get(b"k2") is None  # committed only
    _commit(b, k3=b"from-b")
    with pytest.raises(StateFencedError):
        a.commit()
    a.abandon()
    a.claim()  # the takeover back: its unconfirmed write is gone, b's writes are there
    assert (a.get(b"k1"), a.get(b"k2"), a.get(b"k3")) == (b"from-a", None, b"from-b")


def test_a_crash_mid_record_is_rebuilt_from_the_changelog(
    stores: Callable[[str], StateStore]
) -> None:
    a = stores("a")
    a.claim()
    _commit(a, k1=b"v1")
    a.begin()
    a[b"k1"] = b"uncommitted"
    a[b"k2"] = b"uncommitted"
    a.close()  # a crash: the transaction is never committed
    again = stores("a")  # the same data directory, a new process
    again.claim()
    assert (again.get(b"k1"), again.get(b"k2")) == (b"v1", None)
    _commit(again, k2=b"v2")
    assert again.get(b"k2") == b"v2"


def test_a_standby_catches_up_and_deletes_travel(stores: Callable[[str], StateStore]) -> None:
    owner, standby = stores("owner"), stores("standby")
    owner.claim()
    _commit(owner, k1=b"v1", k2=b"v2")
    owner.begin()
    del owner[b"k1"]
    owner.commit()
    assert standby.catch_up() >= 2
    assert (standby.get(b"k1"), standby.get(b"k2")) == (None, b"v2")
    assert standby.scan(b"k", 10, b"k") == [(b"k2", b"v2")]
    with pytest.raises(RuntimeError, match="outside"):
        standby[b"k3"] = b"no transaction"


def test_applied_offsets_are_exact_and_trimmed_to_a_floor(
    stores: Callable[[str], StateStore]
) -> None:
    """Faust can deliver a record again before an earlier one after a seek: only the
    offsets really applied count as applied, not everything below the highest."""
    a = stores("a")
    a.claim()
    a.begin()
    for offset in (5, 7):
        a.mark_applied(offset)
    a.commit()
    assert [a.is_applied(o) for o in (5, 6, 7)] == [True, False, True]
    a.begin()
    assert a.trim_applied(below=7) == 1  # 5 goes; the floor is 5
    a.commit()
    a.abandon()
    b = stores("b")
    b.claim()  # from the changelog: the same answers
    assert [b.is_applied(o) for o in (3, 5, 6, 7)] == [True, True, False, True]
