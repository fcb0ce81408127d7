"""Staged rollout: who gets the candidate (streams/activation/rollout.py), and the
publication record carrying it (streams/activation/distribution.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.activation.definitions import DefinitionError, DefinitionSet
from streams.activation.distribution import Published, decode_record, encode_record
from streams.activation.governance_rules import GovernanceRules
from streams.activation.rollout import Rollout, for_profile, in_cohort


def defs(version: str) -> DefinitionSet:
    return DefinitionSet(version=version, audiences={}, journeys={},
                         governance=GovernanceRules())


def test_a_percent_cohort_is_about_that_share_and_stable() -> None:
    rollout = Rollout(3, percent=10)
    chosen = [in_cohort(rollout, f"p-{i}", "v2", ()) for i in range(10_000)]
    assert 800 < sum(chosen) < 1200
    assert chosen == [in_cohort(rollout, f"p-{i}", "v2", ()) for i in range(10_000)]
    assert not any(in_cohort(Rollout(3, percent=0), f"p-{i}", "v2", ()) for i in range(500))
    assert all(in_cohort(Rollout(3, percent=100), f"p-{i}", "v2", ()) for i in range(500))


def test_an_audience_cohort_and_the_sets_each_profile_gets() -> None:
    stable, candidate = defs("v1"), defs("v2")
    qa = Rollout(1, audience="qa_testers")
    assert for_profile(candidate, qa, stable, "p-1", ["qa_testers"]) is candidate
    assert for_profile(candidate, qa, stable, "p-2", ["other"]) is stable
    assert for_profile(candidate, None, stable, "p-2") is candidate


def test_a_rollout_names_exactly_one_cohort() -> None:
    with pytest.raises(DefinitionError):
        Rollout(1)
    with pytest.raises(DefinitionError):
        Rollout(1, percent=10, audience="qa")
    with pytest.raises(DefinitionError):
        Rollout(1, percent=120)


def test_the_publication_record_keeps_the_rollout() -> None:
    from streams.activation.definitions import load_definitions
    from streams.settings import REPO_ROOT

    definitions = load_definitions(REPO_ROOT / "definitions")
    staged = Published(4, definitions.version, "ops", datetime(2026, 11, 30, tzinfo=UTC),
                       definitions, "abc", Rollout(3, percent=10))
    back = decode_record(*encode_record(staged))
    assert back.rollout == Rollout(3, percent=10) and back.sequence == 4
    plain = Published(5, definitions.version, "ops", datetime(2026, 11, 30, tzinfo=UTC),
                      definitions, "abd")
    key, value = encode_record(plain)
    assert b"rollout" not in value and decode_record(key, value).rollout is None
