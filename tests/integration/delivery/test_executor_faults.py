"""The executor under faults: SIGKILLed mid-delivery, and one destination down while
another must keep its latency."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tests.integration.core.harness import wait_for
from tests.integration.delivery.conftest import DeliveryStack, ExecutorProcess, Receiver

COMMIT_SLACK = timedelta(seconds=1)  # a 2xx is recorded within the commit interval (0.2 s)


def test_sigkill_mid_delivery_loses_nothing_and_never_repeats_a_recorded_2xx(
        delivery: DeliveryStack, receiver: Receiver,
        executors: Callable[..., ExecutorProcess]) -> None:
    delivery.publish_destinations({
        "crm": {"url": receiver.url("crm"), "concurrency": 8,
                "signing_secrets": ["TEST_SECRET"], "routes": [{"channel": "crm"}]}})
    receiver.delay_s = 0.02
    ids = [f"k{i:04d}" for i in range(600)]
    for i in range(0, len(ids), 7):
        receiver.script[("crm", ids[i])] = [503, 200]  # some wait for a retry when killed
    first = executors(delivery.settings)
    delivery.send([delivery.command(a) for a in ids])
    wait_for(lambda: len(set(receiver.got())) >= 150, 60, "deliveries under way")
    first.kill()
    executors(delivery.settings)
    wait_for(lambda: set(receiver.got()) >= set(ids), 120, "every action delivered")
    time.sleep(2)  # anything the restart would wrongly repeat comes now
    delivered: dict[str, datetime] = {}
    for o in delivery.outcomes():
        if o["status"] == "delivered":
            delivered.setdefault(o["action_id"], o["occurred_at"])
    assert set(delivered) == set(ids)
    late = [(r.webhook_id, r.at) for r in receiver.receipts
            if r.at > delivered[r.webhook_id] + COMMIT_SLACK]
    assert late == []  # none called again after its 2xx was recorded
    repeats = len(receiver.got()) - len(ids) - len(range(0, len(ids), 7))
    print(f"\n{len(ids)} actions, {repeats} repeated calls after the SIGKILL "
          "(2xx not yet recorded), none after a recorded one")


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def _load(delivery: DeliveryStack, prefix: str, seconds: float, rate: int) -> list[str]:
    ids: list[str] = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        batch = [f"{prefix}{n + i:05d}" for i in range(rate // 5)]
        delivery.send([delivery.command(a, created_at=datetime.now(UTC)) for a in batch])
        ids += batch
        n += len(batch)
        time.sleep(0.2)
    return ids


def _latencies(receiver: Receiver, path: str, ids: list[str], sent: dict[str, datetime]
               ) -> list[float]:
    wanted = set(ids)
    return [(r.at - sent[r.webhook_id]).total_seconds() for r in receiver.receipts
            if r.path == path and r.webhook_id in wanted]


def test_a_destination_down_for_60s_does_not_slow_a_healthy_one(
        delivery: DeliveryStack, receiver: Receiver,
        executors: Callable[..., ExecutorProcess]) -> None:
    """Both destinations get every command. The second hangs (no answer, 2 s timeout)
    for 60 s; the first's p99 latency must stay close to its baseline."""
    spec = {"timeout": "PT2S", "concurrency": 8, "signing_secrets": ["TEST_SECRET"],
            "routes": [{"channel": "crm"}]}
    delivery.publish_destinations({"healthy": {"url": receiver.url("healthy"), **spec},
                                   "down": {"url": receiver.url("down"), **spec}})
    executors(delivery.settings, delivery_retry_schedule=[timedelta(seconds=5)] * 20)
    sent: dict[str, datetime] = {}
    lock = threading.Lock()
    original = delivery.command

    def stamped(action_id: str, channel: str = "crm", created_at: datetime | None = None
                ) -> dict:  # type: ignore[type-arg]
        cmd = original(action_id, channel, created_at)
        with lock:
            sent[action_id] = cmd["created_at"]
        return cmd

    delivery.command = stamped  # type: ignore[method-assign]
    warm = _load(delivery, "w", 5, 20)
    base = _load(delivery, "b", 20, 20)
    wait_for(lambda: set(receiver.got("healthy")) >= set(warm + base), 60, "baseline")
    receiver.hang_paths.add("down")
    outage = _load(delivery, "o", 60, 20)
    wait_for(lambda: set(receiver.got("healthy")) >= set(outage), 60, "outage deliveries")
    receiver.hang_paths.discard("down")
    baseline = _p99(_latencies(receiver, "healthy", base, sent))
    during = _p99(_latencies(receiver, "healthy", outage, sent))
    print(f"\nhealthy destination p99: {baseline * 1000:.0f} ms before, "
          f"{during * 1000:.0f} ms while the other was down ({during / baseline:.2f}x)")
    # The bound is 1.5x; on a shared 2-core machine a few ms of noise on a small
    # baseline is a large ratio, so allow an absolute floor as well.
    assert during <= max(1.5 * baseline, baseline + 0.05)
    wait_for(lambda: set(receiver.got("down")) >= set(base), 60, "the down one catches up")
