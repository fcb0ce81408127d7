"""The guide's check, in a browser: sign in to the console, send the churn example's
events through the gateway, watch them arrive, find the customer, and see the withheld
email with its rule; then re-drive a dead letter and see it arrive. Real broker,
registry, worker, gateway, executor and console; Debian's chromium via Playwright.

With ``CONSOLE_SCREENSHOTS_DIR`` set, the test also saves every page there
(``CONSOLE_SCREENSHOTS_DIR=docs/console``: the README's pictures).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from activation_client import Client, make_event
from console.screenshots import capture, capture_login, sign_in
from ingest.auth import PROFILES_READ, KeyRecord, hash_key
from ingest.keystore import KeyWriter
from streams.core.contract import DEFAULT_FUTURE_SKEW
from streams.records import Envelope, Identifiers
from tests.integration.console.conftest import Platform
from tests.integration.core.harness import API_KEY, encode_all, produce
from tests.integration.core.test_activation import customer

READ_KEY = "ak_consoleread1_" + "r" * 30


def churn_events(client: Client, cust: str, email_consent: str) -> None:
    """What billing and the consent tool send for a contract ending in 20 days."""
    now = datetime.now(UTC)
    end = (now + timedelta(days=20)).date().isoformat()
    for name, props in (
        ("identify", {"timezone": "Europe/Berlin"}),
        ("consent_updated", {"consent_type": "marketing:email", "status": email_consent}),
        ("consent_updated", {"consent_type": "marketing:paid_media", "status": "GRANTED"}),
        ("subscription_started", {"plan": "pro", "start_date": now.date().isoformat(),
                                  "contract_end_date": end}),
    ):
        client.send(make_event(name, now, customer_id=cust, properties=props))


def reload_until(page: Any, locator: str, seconds: float = 90) -> Any:
    """Reload ``page`` until ``locator`` shows (the workers apply events in seconds)."""
    end = time.monotonic() + seconds
    while True:
        found = page.locator(locator)
        if found.count() > 0:
            return found.first
        if time.monotonic() > end:
            raise AssertionError(f"{locator} never appeared on {page.url}")
        page.wait_for_timeout(1000)
        page.reload()


def test_operator_console_end_to_end(platform: Platform, browser: Any) -> None:
    base = platform.console
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm before changes
    page.goto(base + "/live")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    sign_in(page, base, API_KEY)
    expect(page).to_have_url(re.compile(r"/live$"))
    expect(page.locator("#live-stats")).to_contain_text("shown", timeout=20_000)

    # The guide's churn events, through the HTTP API, while the live page watches.
    cust = customer("console")
    with Client(platform.gateway, API_KEY) as client:
        churn_events(client, cust, "DENIED")
    row = page.locator("#live-rows tr", has_text="subscription_started").first
    expect(row).to_contain_text("valid", timeout=30_000)
    expect(row).to_contain_text(cust)
    expect(row.locator(".reach")).to_contain_text("on the timeline", timeout=60_000)

    # Find the customer; the journey's email is withheld, and the timeline says why.
    page.goto(base + "/profiles")
    page.fill("#q", cust)
    page.click("form.search button")
    expect(page).to_have_url(re.compile(r"/profiles/p-[0-9a-f]{20}$"))
    profile_path = page.url.removeprefix(base)
    withheld = reload_until(page, "tr.decision[data-outcome=withheld]")
    expect(withheld).to_contain_text("email withheld by rule consent")
    expect(withheld.locator(".rule")).to_have_text("consent")
    expect(page.locator("section.card", has_text="Audiences and journeys")).to_contain_text(
        "contract_ending")

    redrive_a_dead_letter(platform, page, cust, profile_path)
    read_key_changes_nothing(platform, browser)

    out = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    if out:
        capture_login(browser.browser, base, Path(out))
        capture(page, base, Path(out), profile_path)


def redrive_a_dead_letter(platform: Platform, page: Any, cust: str, profile: str) -> None:
    """A producer whose clock ran ahead: dead-lettered as "in the future", then, once
    that time has come, re-driven from the console and applied."""
    base, core = platform.console, platform.core
    event_id = f"ahead-{cust}"
    ahead = datetime.now(UTC) + DEFAULT_FUTURE_SKEW + timedelta(seconds=15)
    envelope = Envelope(event_id=event_id, event_name="support_ticket_opened",
                        event_time=ahead, received_time=datetime.now(UTC), source="helpdesk",
                        identifiers=Identifiers(customer_id=cust), properties={"topic": "x"})
    produce(core.settings, core.ingest, encode_all(core.encode, [envelope]))
    page.goto(base + "/deadletters?reason=contract_violation")
    letter = reload_until(page, f"tr[data-offset]:has-text('{event_id}')")
    expect(letter).to_contain_text("in the future")
    wait = (ahead - DEFAULT_FUTURE_SKEW - datetime.now(UTC)).total_seconds() + 1
    page.wait_for_timeout(max(0.0, wait) * 1000)  # the producer's clock is right now
    letter.locator("input[name=offset]").check()
    page.click("#redrive button[type=submit]")
    expect(page.locator("#flash")).to_contain_text("Re-drove 1 dead letter", timeout=30_000)
    page.goto(base + "/live")
    arrived = page.locator("#live-rows tr", has_text=event_id).filter(has_text="re-driven")
    expect(arrived.first).to_contain_text("valid", timeout=30_000)
    expect(arrived.first.locator(".reach")).to_contain_text("on the timeline",
                                                            timeout=60_000)
    page.goto(base + profile)
    expect(page.locator("#timeline-rows")).to_contain_text("support_ticket_opened")


def read_key_changes_nothing(platform: Platform, browser: Any) -> None:
    """A profiles:read key sees the pages but no re-drive button, and the server
    refuses the change even when asked directly."""
    settings = platform.settings
    digest = hash_key(READ_KEY, settings.api_key_pepper.get_secret_value())
    KeyWriter(settings).put(KeyRecord("consoleread1", digest, (PROFILES_READ,), "read-only"))
    context = browser.browser.new_context()
    page = context.new_page()
    end = time.monotonic() + 30
    while True:  # the console follows the key topic: a new key counts within seconds
        sign_in_attempt(page, platform.console)
        if "/login" not in page.url or time.monotonic() > end:
            break
        page.wait_for_timeout(500)
    expect(page.locator(".who")).to_contain_text("read-only")
    page.goto(platform.console + "/deadletters")
    expect(page.locator("#redrive button[type=submit]")).to_have_count(0)
    token = json.loads(page.get_attribute("body", "hx-headers") or "{}")["X-CSRF-Token"]
    answer = page.request.post(platform.console + "/deadletters/redrive",
                               form={"kind": "stream", "offset": "0"},
                               headers={"X-CSRF-Token": token})
    assert answer.status == 403 and "read-only" in answer.text()
    context.close()


def sign_in_attempt(page: Any, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#api_key", READ_KEY)
    page.click("button[type=submit]")
    page.wait_for_load_state()
