"""The delivery executor through a real broker, registry and HTTP receiver: retries,
Retry-After, timeouts, 410, dead letters and their re-drive, outcomes on the topic."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from streams.settings import REPO_ROOT
from tests.integration.core.harness import wait_for
from tests.integration.delivery.conftest import (
    DeliveryStack,
    ExecutorProcess,
    Receiver,
    executor_env,
)


def cli(stack: DeliveryStack, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "streams.delivery", *args], cwd=REPO_ROOT,
                          env=executor_env(stack.settings), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def statuses(stack: DeliveryStack, action_id: str) -> list[str]:
    return [o["status"] for o in stack.outcomes() if o["action_id"] == action_id]


def test_retries_timeouts_429_and_410(delivery: DeliveryStack, receiver: Receiver,
                                      executors: Callable[..., ExecutorProcess]) -> None:
    delivery.publish_destinations({
        "crm": {"url": receiver.url("crm"), "timeout": "PT1S", "concurrency": 4,
                "signing_secrets": ["TEST_SECRET"], "routes": [{"channel": "crm"}]}})
    receiver.script = {
        ("crm", "flaky"): [500, 500, 200],
        ("crm", "slow"): ["hang", 200],
        ("crm", "busy"): [(429, {"Retry-After": "2"}), 200],
        ("crm", "gone"): [410],
    }
    ex = executors(delivery.settings)
    delivery.send([delivery.command(a) for a in ("ok", "flaky", "slow", "busy")])
    wait_for(lambda: all("delivered" in statuses(delivery, a)
                         for a in ("ok", "flaky", "slow", "busy")), 60, "four deliveries")
    assert receiver.got().count("flaky") == 3 and receiver.got().count("ok") == 1
    assert all(r.verified for r in receiver.receipts)  # standardwebhooks verified each
    assert statuses(delivery, "flaky") == ["retrying", "retrying", "delivered"]
    slow = [o for o in delivery.outcomes() if o["action_id"] == "slow"]
    assert slow[0]["error"] == "timeout"
    busy = [r.at for r in receiver.receipts if r.webhook_id == "busy"]
    assert (busy[1] - busy[0]).total_seconds() >= 1.9  # Retry-After: 2 honoured
    # 410: the destination is disabled; later commands are dead-lettered, not sent
    delivery.send([delivery.command("gone")])
    wait_for(lambda: statuses(delivery, "gone") == ["disabled"], 30, "the 410")
    wait_for(lambda: '"crm"' in cli(delivery, "status"), 30, "crm disabled")
    delivery.send([delivery.command("after")])
    wait_for(lambda: statuses(delivery, "after") == ["disabled"], 30, "dead-lettered at once")
    assert "after" not in receiver.got()
    assert 'delivery_outcomes_total{destination="crm",status="disabled"} 2.0' in ex.metrics()
    # enabled again by hand, the dead letter re-driven: delivered once, nothing else
    cli(delivery, "enable", "crm")
    wait_for(lambda: '"crm"' not in cli(delivery, "status"), 30, "crm enabled")
    listed = cli(delivery, "deadletters", "list", "--reason-code", "destination_disabled")
    assert listed.count('"destination": "crm"') == 2
    receiver.script[("crm", "gone")] = [200]
    assert "re-drove 2" in cli(delivery, "deadletters", "redrive", "--destination", "crm")
    wait_for(lambda: statuses(delivery, "after")[-1:] == ["delivered"]
             and statuses(delivery, "gone")[-1:] == ["delivered"], 60, "the re-drive")
    assert receiver.got().count("after") == 1


def test_a_4xx_is_dead_lettered_with_status_and_body(
        delivery: DeliveryStack, receiver: Receiver,
        executors: Callable[..., ExecutorProcess]) -> None:
    delivery.publish_destinations({
        "crm": {"url": receiver.url("crm"), "signing_secrets": ["TEST_SECRET"],
                "routes": [{"channel": "crm"}]}})
    receiver.script = {("crm", "bad"): [422]}
    executors(delivery.settings)
    delivery.send([delivery.command("bad")])
    wait_for(lambda: statuses(delivery, "bad") == ["dead_lettered"], 60, "the dead letter")
    listed = cli(delivery, "deadletters", "list")
    assert '"reason_code": "rejected"' in listed and "HTTP 422: answer 422" in listed
    assert receiver.got() == ["bad"]
