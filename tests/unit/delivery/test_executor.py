"""The executor's asyncio side, driven for real against a local HTTP receiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from streams.settings import Settings
from tests.unit.delivery.conftest import (
    SECRET,
    Receiver,
    command_record,
    definitions,
    destination,
    make_executor,
    settled,
)


def fast(settings_factory: Callable[..., Settings], **kw: Any) -> Settings:
    kw.setdefault("delivery_retry_schedule", [0.05, 0.05, 0.05])
    return settings_factory(delivery_secrets={"S": SECRET}, delivery_retry_jitter=0, **kw)


async def test_500_twice_then_200_is_delivered_once(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    rec.script["a1"] = [500, 500, 200]
    ex, staged = make_executor(fast(settings_factory), definitions(destination("crm", rec.url)))
    ex.accept([command_record("a1", 0)])
    await settled(lambda: any(o["status"] == "delivered" for o in staged.on("outcomes")))
    assert rec.got == ["a1", "a1", "a1"]  # the same webhook-id on every attempt
    assert [(o["status"], o["attempt"]) for o in staged.on("outcomes")] == [
        ("retrying", 1), ("retrying", 2), ("delivered", 3)]
    # the input offset was settled by the first outcome: a retry never blocks it
    assert staged.offsets[("actions.crm", 0)] == 1
    ex.accept([command_record("a1", 1)])  # Kafka hands it over again
    await asyncio.sleep(0.2)
    assert rec.got == ["a1", "a1", "a1"] and staged.offsets[("actions.crm", 0)] == 2
    await ex.close()


async def test_4xx_dead_letters_and_a_redrive_starts_over(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    rec.script["a2"] = [422, 200]
    ex, staged = make_executor(fast(settings_factory), definitions(destination("crm", rec.url)))
    ex.accept([command_record("a2", 0)])
    await settled(lambda: bool(staged.on("dead")))
    [letter] = staged.on("dead")
    assert letter["reason_code"] == "rejected" and "HTTP 422" in letter["reason"]
    assert "answer 422" in letter["reason"]
    ex.accept([command_record("a2", 1)])  # the same command again: not re-driven, no call
    await asyncio.sleep(0.1)
    assert rec.got == ["a2"]
    ex.accept([command_record("a2", 2, {"x-delivery-destination": b"crm",
                                        "x-activation-redrive-count": b"1"})])
    await settled(lambda: staged.on("outcomes")[-1]["status"] == "delivered")
    assert rec.got == ["a2", "a2"]
    await ex.close()


async def test_410_disables_and_exhausted_retries_fail(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    rec.script["gone"] = [410]
    rec.script["down"] = [503]
    ex, staged = make_executor(fast(settings_factory, delivery_breaker_failures=100),
                               definitions(destination("crm", rec.url)))
    ex.accept([command_record("gone", 0), command_record("down", 1)])
    await settled(lambda: len(staged.on("dead")) == 2)
    reasons = sorted(d["reason_code"] for d in staged.on("dead"))
    assert reasons == ["destination_disabled", "retries_exhausted"]
    assert rec.got.count("down") == 4  # the first attempt and three retries
    assert [k for t, k, _, _, _ in staged.records if t == "control"] == [b"crm"]
    await ex.close()


async def test_a_slow_destination_does_not_slow_another(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    slow, quick = await receiver(), await receiver()
    slow.delay_s = 2.0
    defs = definitions(destination("slow", slow.url, concurrency=1),
                       destination("quick", quick.url, concurrency=4))
    ex, staged = make_executor(fast(settings_factory), defs)
    ex.accept([command_record(f"c{i}", i) for i in range(20)])
    await settled(lambda: len(quick.got) == 20, timeout=3.0)
    assert len(slow.got) <= 2  # one at a time, two seconds each
    # The slow ones hold the commit back (nothing staged at all is fine too).
    assert staged.offsets.get(("actions.crm", 0), 0) == 0
    await ex.close()


async def test_a_revoked_partition_records_nothing_more(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    rec.delay_s = 0.3
    ex, staged = make_executor(fast(settings_factory), definitions(destination("crm", rec.url)))
    ex.accept([command_record("r1", 0)])
    await settled(lambda: rec.got == ["r1"])
    ex.revoked("actions.crm", 0)
    await asyncio.sleep(0.5)
    assert staged.on("outcomes") == []  # the new owner redoes it from the ledger
    await ex.close()


async def test_disabled_or_misconfigured_destinations_dead_letter_at_once(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    ex, staged = make_executor(settings_factory(delivery_secrets={}),
                               definitions(destination("crm", rec.url)))
    ex.accept([command_record("m1", 0)])
    [letter] = staged.on("dead")
    assert "misconfigured" in letter["reason"] and rec.got == []
    ex2, staged2 = make_executor(fast(settings_factory), definitions(
        destination("crm", rec.url)), disabled={"crm"})
    ex2.accept([command_record("m2", 0)])
    assert [d["reason_code"] for d in staged2.on("dead")] == ["destination_disabled"]
    await ex.close()
    await ex2.close()


async def test_a_deployment_overrides_a_destination_url(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    settings = fast(settings_factory, delivery_url_overrides={"crm": rec.url})
    ex, staged = make_executor(settings, definitions(destination("crm", "http://crm.invalid/x")))
    ex.accept([command_record("u1", 0), command_record("u2", 1)])
    await settled(lambda: len(staged.on("outcomes")) == 2)
    assert rec.got == ["u1", "u2"] and len(ex.lanes) == 1
    await ex.close()


async def test_a_registry_outage_holds_the_offset_and_retries(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    from streams.errors import RegistryError
    from tests.unit.delivery.conftest import JsonCodec

    class Flaky(JsonCodec):
        fails = 1

        def command(self, value: bytes) -> dict[str, Any]:
            if b'"b1"' in value and self.fails:
                self.fails -= 1
                raise RegistryError("registry unreachable")
            return super().command(value)

    rec: Receiver = await receiver()
    ex, staged = make_executor(fast(settings_factory), definitions(destination("crm", rec.url)))
    ex._codec = Flaky()
    ex.accept([command_record("a1", 0), command_record("b1", 1), command_record("c1", 2)])
    await settled(lambda: set(rec.got) == {"a1", "c1"})
    # Never past the one waiting (answers are staged in batches: maybe none yet).
    assert staged.offsets.get(("actions.crm", 0), 0) <= 1
    await settled(lambda: "b1" in rec.got, timeout=5)
    await settled(lambda: staged.offsets.get(("actions.crm", 0)) == 3)
    await ex.close()


async def test_a_bad_header_dead_letters_the_command_and_the_stream_goes_on(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    ex, staged = make_executor(fast(settings_factory), definitions(destination("crm", rec.url)))
    ex.accept([command_record("x1", 0, {"x-activation-redrive-count": b"many"}),
               command_record("x2", 1)])
    await settled(lambda: rec.got == ["x2"] and staged.offsets.get(("actions.crm", 0)) == 2)
    assert [d["reason_code"] for d in staged.on("dead")] == ["processing_error"]
    await ex.close()


async def test_queued_jobs_of_a_revoked_partition_are_not_sent(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    rec.delay_s = 0.3
    ex, _ = make_executor(fast(settings_factory),
                          definitions(destination("crm", rec.url, concurrency=1)))
    ex.accept([command_record(f"q{i}", i) for i in range(5)])
    await settled(lambda: len(rec.got) == 1)
    ex.revoked("actions.crm", 0)
    await asyncio.sleep(1.0)
    assert len(rec.got) <= 2  # the one under way (and at most one taken meanwhile)
    await ex.close()


async def test_an_open_circuit_writes_once_per_job_not_once_per_refusal(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    rec: Receiver = await receiver()
    for i in range(10):
        rec.script[f"o{i}"] = [503]
    settings = fast(settings_factory, delivery_breaker_failures=2,
                    delivery_breaker_cooldown=timedelta(seconds=0.3),
                    delivery_retry_schedule=[30.0])
    ex, staged = make_executor(settings, definitions(destination("crm", rec.url,
                                                                 concurrency=1)))
    ex.accept([command_record(f"o{i}", i) for i in range(10)])
    await asyncio.sleep(2.0)
    per_job: dict[str, int] = {}
    for o in staged.on("outcomes"):
        per_job[o["action_id"]] = per_job.get(o["action_id"], 0) + 1
    assert len(per_job) == 10 and max(per_job.values()) <= 2
    assert staged.offsets[("actions.crm", 0)] == 10  # every first outcome recorded
    await ex.close()


async def test_an_erasure_closes_the_profiles_waiting_retries(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    import json as _json

    rec: Receiver = await receiver()
    rec.script["r1"] = [503, 200]
    settings = fast(settings_factory, delivery_retry_schedule=[0.5])
    ex, staged = make_executor(settings, definitions(destination(
        "crm", rec.url, deletion_url=rec.url)))
    ex.accept([command_record("r1", 0)])
    await settled(lambda: rec.got == ["r1"])  # failed once, waiting for its retry
    erase = command_record("er", 1)
    doc = _json.loads(erase.value or b"{}")
    doc.update(action_type="erase_profile", profile_id="p-r1")
    ex.accept([replace(erase, value=_json.dumps(doc).encode())])
    await asyncio.sleep(1.0)
    assert rec.got == ["r1", "er"]  # the retry of r1 was never sent
    statuses = [(o["action_id"], o["status"]) for o in staged.on("outcomes")]
    assert ("r1", "failed") in statuses and ("er", "delivered") in statuses
    assert staged.on("dead") == []
    await ex.close()


async def test_answers_of_one_pass_are_settled_and_staged_together(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    """Each delivered once, in the ledger, the offset past all of them; and fewer staging
    calls than answers (one per partition and event-loop pass)."""
    rec: Receiver = await receiver()
    ex, staged = make_executor(fast(settings_factory),
                               definitions(destination("crm", rec.url, concurrency=8)))
    ex.accept([command_record(f"b{i}", i) for i in range(40)])
    await settled(lambda: len(staged.on("outcomes")) == 40)
    assert sorted(o["action_id"] for o in staged.on("outcomes")) == sorted(
        f"b{i}" for i in range(40))
    assert {o["status"] for o in staged.on("outcomes")} == {"delivered"}
    assert len([k for t, k, _, _, _ in staged.records if t == "ledger"]) == 40
    assert staged.offsets[("actions.crm", 0)] == 40
    assert staged.calls < 40
    await ex.close()


async def test_a_settlement_that_fails_leaves_the_others_of_its_pass_recorded(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    from tests.unit.delivery.conftest import JsonCodec

    class Broken(JsonCodec):
        def outcome(self, record: dict[str, Any]) -> bytes:
            if record["action_id"] == "f3":
                raise ValueError("a bug")
            return super().outcome(record)

    rec: Receiver = await receiver()
    ex, staged = make_executor(fast(settings_factory),
                               definitions(destination("crm", rec.url, concurrency=8)))
    ex._codec = Broken()
    ex.accept([command_record(f"f{i}", i) for i in range(8)])
    await settled(lambda: len(staged.on("outcomes")) == 7)
    assert "f3" not in {o["action_id"] for o in staged.on("outcomes")}
    assert staged.offsets.get(("actions.crm", 0), 0) <= 3  # held at the unsettled one
    await ex.close()


async def test_the_body_written_at_accept_goes_to_every_destination(
        receiver: Callable[..., Any], settings_factory: Callable[..., Settings]) -> None:
    one, two = await receiver(), await receiver()
    ex, staged = make_executor(fast(settings_factory), definitions(
        destination("one", one.url), destination("two", two.url)))
    ex.accept([command_record("w1", 0)])
    await settled(lambda: len(staged.on("outcomes")) == 2)
    assert one.bodies == two.bodies and len(one.bodies) == 1
    doc = json.loads(one.bodies[0])
    assert doc["type"] == "crm.update_crm" and doc["data"]["action_id"] == "w1"
    await ex.close()


def test_a_body_that_cannot_be_written_at_accept_is_left_to_the_lane() -> None:
    """The lane then fails on it as it always did (logged, the job unsettled)."""
    from streams.delivery.signing import body_or_none

    assert body_or_none({"channel": "crm", "action_type": "x", "created_at": object()}) is None
