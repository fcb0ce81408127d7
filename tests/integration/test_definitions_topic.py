"""Definitions published to the real definitions topic; followers agree on the one in force."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.activation import distribution
from streams.activation.cli import main
from streams.activation.definitions import snapshot
from streams.activation.distribution import (
    DefinitionsFollower,
    Published,
    publish,
    read_history,
)
from streams.settings import Settings
from streams.topics import DEFINITIONS

REPO_DEFINITIONS = Path("definitions")
Follow = Callable[..., DefinitionsFollower]


def wait_until(check: Callable[[], bool], what: str, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline}s: {what}")
        time.sleep(0.05)


def sequence_of(follower: DefinitionsFollower) -> int | None:
    current = follower.current()
    return None if current is None else current.sequence


@pytest.fixture
def follow(settings: Settings) -> Iterator[Follow]:
    """Start followers that are stopped after the test, whatever happens in it."""
    started: list[DefinitionsFollower] = []

    def start(on_change: Callable[[Published], None] | None = None) -> DefinitionsFollower:
        follower = DefinitionsFollower(settings, on_change)
        started.append(follower)
        follower.start()
        assert follower.loaded.wait(20), "follower did not finish its initial read"
        return follower

    yield start
    for follower in started:
        follower.stop()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads ACTIVATION_*: point it at this test's broker and topic prefix."""
    monkeypatch.setenv("ACTIVATION_KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("ACTIVATION_SCHEMA_REGISTRY_URL", settings.schema_registry_url)
    monkeypatch.setenv("ACTIVATION_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("ACTIVATION_APP_ID", settings.app_id)


def modified_copy(tmp_path: Path, name: str) -> Path:
    """The repository definitions with one audience's description changed: a new version."""
    target = tmp_path / name
    shutil.copytree(REPO_DEFINITIONS, target)
    audience = target / "audiences" / "trial_ending.yaml"
    text = audience.read_text(encoding="utf-8")
    assert "has not bought yet" in text
    audience.write_text(text.replace("has not bought yet", f"has not paid ({name})"),
                        encoding="utf-8")
    return target


def broken_copy(tmp_path: Path) -> Path:
    target = tmp_path / "broken"
    shutil.copytree(REPO_DEFINITIONS, target)
    journey = target / "journeys" / "churn_prevention.yaml"
    text = journey.read_text(encoding="utf-8")
    assert "timeout: P14D" in text
    journey.write_text(text.replace("timeout: P14D", "timeout: P14X"), encoding="utf-8")
    return target


@pytest.mark.usefixtures("cli_env")
def test_publish_is_versioned_and_idempotent(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    first, written = publish(settings, REPO_DEFINITIONS, "ana")
    assert written and first.sequence == 1 and first.published_by == "ana"
    assert first.published_at.utcoffset() is not None
    again, written = publish(settings, REPO_DEFINITIONS, "bo")
    assert not written and again.sequence == 1 and again.published_by == "ana"
    assert again.version == first.version

    assert main(["publish", str(REPO_DEFINITIONS), "--author", "bo"]) == 0
    out = capsys.readouterr().out
    assert f"unchanged: version {first.version} is already in force (sequence 1)" in out
    assert main(["show"]) == 0
    out = capsys.readouterr().out
    assert f"version {first.version} in force: sequence 1, published by ana" in out
    assert "contract_ending, lapsed_buyers, trial_ending" in out
    assert "churn_prevention, dunning, trial_conversion, win_back" in out
    assert "sms -> actions.sms" in out
    assert [p.sequence for p in read_history(settings)] == [1]


@pytest.mark.usefixtures("cli_env")
def test_follower_sees_new_versions_and_keeps_them_when_one_is_refused(
    settings: Settings, follow: Follow, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, REPO_DEFINITIONS, "ana")
    changes: list[int] = []
    follower = follow(lambda p: changes.append(p.sequence))
    assert sequence_of(follower) == 1
    wait_until(lambda: changes == [1], "on_change for the version found at start")

    assert main(["publish", str(modified_copy(tmp_path, "v2")), "--author", "bo"]) == 0
    second = read_history(settings)[-1]
    assert "published definitions version " + second.version + " as sequence 2" \
        in capsys.readouterr().out
    wait_until(lambda: sequence_of(follower) == 2, "follower reports sequence 2")
    current = follower.current()
    assert current is not None and current.version == second.version
    assert current.published_by == "bo"
    assert "has not paid (v2)" in current.definitions.audiences["trial_ending"].description
    wait_until(lambda: changes == [1, 2], "on_change for sequence 2")

    assert main(["publish", str(broken_copy(tmp_path))]) == 1
    err = capsys.readouterr().err
    assert "invalid definitions: journeys/churn_prevention.yaml: " \
        "steps[2].wait_for_event.timeout: not an ISO 8601 duration" in err
    assert [p.sequence for p in read_history(settings)] == [1, 2]  # nothing was written
    assert sequence_of(follower) == 2 and changes == [1, 2]


def test_garbage_records_are_skipped(
    settings: Settings, follow: Follow, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="streams.activation.distribution")
    publish(settings, REPO_DEFINITIONS, "ana")
    second, _ = publish(settings, modified_copy(tmp_path, "v2"), "bo")
    follower = follow()
    assert sequence_of(follower) == 2

    # Records no publisher of ours would write: not JSON, and a snapshot whose content no
    # longer matches its version hash (claiming a higher sequence, to tempt the readers).
    tampered = (b'{"sequence":4,"version":"%s","published_by":"eve",'
                b'"published_at":"2026-01-01T00:00:00+00:00","snapshot":%s}'
                % (second.version.encode(),
                   snapshot(second.definitions).replace(b"has not paid", b"has paid")))
    producer = Producer({**settings.kafka_client_config(), "acks": "all"})
    producer.produce(settings.topic(DEFINITIONS), key=b"v00000003", value=b"garbage{")
    producer.produce(settings.topic(DEFINITIONS), key=b"v00000004", value=tampered)
    assert producer.flush(15) == 0

    def warned(key: str) -> bool:
        return any(key in r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING)

    wait_until(lambda: warned("v00000003") and warned("v00000004"), "garbage seen and skipped")
    assert sequence_of(follower) == 2
    assert sequence_of(follow()) == 2  # a follower starting now reads past them too
    assert [p.sequence for p in read_history(settings)] == [1, 2]

    # The next publication goes above every key on the topic, readable or not.
    third, written = publish(settings, REPO_DEFINITIONS, "ana")
    assert written and third.sequence == 5
    wait_until(lambda: sequence_of(follower) == 5, "follower reports sequence 5")


@pytest.mark.usefixtures("cli_env")
def test_nothing_published_yet(follow: Follow, capsys: pytest.CaptureFixture[str]) -> None:
    follower = follow()
    assert follower.current() is None
    assert main(["show"]) == 0
    assert "no definitions published yet" in capsys.readouterr().out


@pytest.mark.usefixtures("cli_env")
def test_history_lists_every_publication(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(settings, REPO_DEFINITIONS, "ana")
    publish(settings, modified_copy(tmp_path, "v2"), "bo")
    publish(settings, REPO_DEFINITIONS, "cy")
    assert main(["history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1", "2", "3"]
    assert lines[0].endswith("by ana") and lines[2].endswith("by cy  (in force)")


def test_racing_publishers_both_stay_in_the_history(
    settings: Settings, follow: Follow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(settings, REPO_DEFINITIONS, "ana")
    # Both publishers read the topic (sequence 1 in force) before either writes: the race.
    seen = distribution._scan(settings, 10.0)
    monkeypatch.setattr(distribution, "_scan", lambda *_: seen)
    bo, _ = publish(settings, modified_copy(tmp_path, "v2"), "bo")
    cy, _ = publish(settings, modified_copy(tmp_path, "v3"), "cy")
    monkeypatch.undo()
    assert bo.sequence == cy.sequence == 2 and bo.record_id != cy.record_id

    history = read_history(settings)
    # Distinct keys: compaction keeps both; the later record is in force everywhere.
    assert [(p.sequence, p.published_by) for p in history] == [(1, "ana"), (2, "bo"), (2, "cy")]
    assert sequence_of(follow()) == 2 and follow().current() == cy
    following, _ = publish(settings, REPO_DEFINITIONS, "dee")
    assert following.sequence == 3


@pytest.mark.usefixtures("cli_env")
def test_a_staged_rollout_is_promoted_or_rolled_back(
        settings: Settings, follow: Follow, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", str(REPO_DEFINITIONS), "--author", "bo"]) == 0
    v2 = modified_copy(tmp_path, "v2")
    assert main(["publish", str(v2), "--author", "al", "--rollout-percent", "30"]) == 0
    follower = follow()
    history = read_history(settings)
    stable, staged = history[-2], history[-1]
    assert staged.rollout is not None and staged.rollout.stable_sequence == stable.sequence
    wait_until(lambda: follower.stable() is not None, "the stable version known")
    versions = [follower.for_profile(f"p-{i}").version for i in range(1000)]  # type: ignore[union-attr]
    share = versions.count(staged.version) / len(versions)
    assert 0.2 < share < 0.4 and set(versions) == {stable.version, staged.version}
    assert main(["rollback", "--author", "cy"]) == 0
    wait_until(lambda: sequence_of(follower) == staged.sequence + 1, "the rollback")
    assert follower.current().version == stable.version  # type: ignore[union-attr]
    assert main(["publish", str(v2), "--rollout-audience", "trial_ending"]) == 0
    assert main(["promote", "--author", "dee"]) == 0
    wait_until(lambda: sequence_of(follower) == staged.sequence + 3, "the promotion")
    current = follower.current()
    assert current is not None and current.rollout is None
    assert current.version == staged.version and current.published_by == "dee"
    assert {follower.for_profile(f"p-{i}").version for i in range(50)} == {  # type: ignore[union-attr]
        staged.version}
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert "staged for 30% of profiles" in out and "rolled back to version" in out


@pytest.mark.usefixtures("cli_env")
def test_a_publication_can_require_a_second_approving_key(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from ingest.auth import ADMIN, APPROVE_DEFINITIONS, KeyRecord, hash_key, new_key
    from ingest.keystore import KeyWriter, ensure_keys_topic

    ensure_keys_topic(settings)
    pepper = settings.api_key_pepper.get_secret_value()
    keys = {}
    for name, scopes in (("alice", (ADMIN,)), ("bob", (APPROVE_DEFINITIONS,))):
        key_id, key = new_key()
        KeyWriter(settings).put(KeyRecord(key_id, hash_key(key, pepper), scopes, name))
        keys[name] = key
    assert main(["publish", str(REPO_DEFINITIONS), "--author", "bo"]) == 0
    monkeypatch.setenv("ACTIVATION_DEFINITIONS_REQUIRE_APPROVAL", "true")
    in_force = read_history(settings)[-1]
    draft = modified_copy(tmp_path, "v2")
    assert main(["publish", str(draft), "--author", "alice"]) == 1  # no key
    assert main(["publish", str(draft), "--author", "alice", "--api-key", keys["alice"]]) == 0
    proposal_id = next(line.split()[1] for line in capsys.readouterr().out.splitlines()
                       if line.startswith("proposal "))
    assert read_history(settings)[-1].sequence == in_force.sequence  # not in force yet
    assert main(["approve", proposal_id, "--api-key", keys["alice"]]) == 1  # her own key
    assert main(["approve", proposal_id, "--api-key", keys["bob"], "--author", "bob"]) == 0
    published = read_history(settings)[-1]
    assert published.sequence == in_force.sequence + 1
    assert "alice" in published.published_by and "approved by bob" in published.published_by
    assert main(["proposals"]) == 0
    assert proposal_id not in capsys.readouterr().out
