"""The ledger's decisions and the offsets a partition may commit (streams/delivery/ledger.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams.delivery.ledger import Entry, Ledger, Offsets, ledger_key, split_key

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_entries_round_trip() -> None:
    e = Entry("retrying", 2, T, T + timedelta(seconds=1), T + timedelta(minutes=5), b"k", b"\x00v")
    assert Entry.decode(e.encode()) == e
    done = Entry("delivered", 3, T, T)
    assert Entry.decode(done.encode()) == done
    assert b'"v"' not in done.encode()  # a finished entry does not keep the command


def test_admit_once_unless_redriven_after_giving_up() -> None:
    ledger, key = Ledger(), ledger_key("actions.email", "crm", "a1")
    assert split_key(key) == ("actions.email", "crm", "a1")
    assert ledger.admit(key)
    ledger.start(key)
    assert not ledger.admit(key)  # under way
    ledger.record(key, Entry("retrying", 1, T, T, T))
    assert not ledger.admit(key) and not ledger.admit(key, redrive=True)  # waiting
    ledger.record(key, Entry("dead_lettered", 2, T, T))
    assert not ledger.admit(key) and ledger.admit(key, redrive=True)
    ledger.record(key, Entry("delivered", 3, T, T))
    assert not ledger.admit(key, redrive=True)  # a 2xx was recorded: never again


def test_restore_and_waiting_in_due_order() -> None:
    ledger = Ledger()
    ledger.restore("t|d|late", Entry("retrying", 1, T, T, T + timedelta(hours=1), None,
                                     b"x").encode())
    ledger.restore("t|d|soon", Entry("retrying", 1, T, T, T + timedelta(seconds=5), None,
                                     b"y").encode())
    ledger.restore("t|d|done", Entry("delivered", 1, T, T).encode())
    ledger.restore("t|d|gone", Entry("delivered", 1, T, T).encode())
    ledger.restore("t|d|gone", None)
    assert [k for k, _ in ledger.waiting()] == ["t|d|soon", "t|d|late"]
    assert set(ledger.entries) == {"t|d|late", "t|d|soon", "t|d|done"}


def test_offsets_commit_up_to_the_lowest_unsettled() -> None:
    offsets = Offsets()
    offsets.add(10, 2)  # two destinations
    offsets.add(11, 0)  # nothing to deliver
    offsets.add(12, 1)
    assert offsets.committable() == 10
    offsets.settle(10)
    assert offsets.committable() == 10
    offsets.settle(12)
    assert offsets.committable() == 10
    offsets.settle(10)
    assert offsets.committable() == 13
