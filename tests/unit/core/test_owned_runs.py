"""How a partition's records are cut into transactions (agents/owned.py ``runs``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from agents.owned import runs, unapplied


def records(sizes: list[int]) -> list[Any]:
    return [SimpleNamespace(offset=i, value=b"x" * n if n else None)
            for i, n in enumerate(sizes)]


def test_small_records_share_a_transaction_and_a_large_one_has_its_own() -> None:
    cut = runs(records([10, 10, 10, 100, 0, 5]), limit=40)
    assert [[m.offset for m in run] for run in cut] == [[0, 1, 2], [3], [4, 5]]


def test_records_without_a_value_still_get_a_transaction() -> None:
    assert [[m.offset for m in run] for run in runs(records([0, 0]), limit=1)] == [[0, 1]]
    assert runs([], limit=10) == []


@given(st.lists(st.integers(0, 50), max_size=40), st.integers(1, 60))
def test_every_record_once_in_order_and_runs_within_the_limit(sizes: list[int],
                                                              limit: int) -> None:
    cut = runs(records(sizes), limit)
    assert [m.offset for run in cut for m in run] == list(range(len(sizes)))
    for run in cut:
        assert run
        total = sum(len(m.value or b"") for m in run)
        assert total <= limit or len(run) == 1


def test_a_record_delivered_twice_in_one_group_is_done_once() -> None:
    group = records([1, 1, 1, 1])
    group.insert(2, group[0])  # offset 0 again, after a seek
    todo = unapplied(group, lambda offset: offset == 3)  # 3 applied earlier
    assert [m.offset for m in todo] == [0, 1, 2]
