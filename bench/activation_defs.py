"""Synthetic activation definitions for ``bench.stream``: 50 audiences and 10 journeys.

    .venv/bin/python -m bench.activation_defs DIR   # write DIR, validate it, print a summary

The definitions are written over what the bench workload produces
(``tests/integration/core/workload.py``): the events ``purchase_completed`` (order_value,
currency EUR), ``subscription_started`` (plan basic/pro, start and contract end dates),
``subscription_canceled``, ``consent_updated``, ``page_viewed`` and ``identify`` (trait
``tier`` gold/silver). Audiences mix trait conditions, event history (did / did not do X
within a window, at least N times, ``sum_of`` order_value), dates relative to now
(``subscription.contract_end_date`` within_next, ``aggregates.last_purchase_at``
older_than, ``subscription.start_date`` within_last), combined with all/any/not.
Journeys are triggered by audiences and by events, and send on every channel, wait,
wait for events, branch and have exit criteria; governance is like
``definitions/governance.yaml`` (consent, caps, quiet hours, 10% holdout).

The workload's clock starts on 2026-01-01 and covers a few hours, which would make every
"within the last N days" condition depend on the day the bench runs. :func:`recent`
therefore rebases it (for every run of the bench alike): event times are spread over the
year before now (order and the workload's out-of-order skews kept), contracts run one
year from their start, and consent updates name the purpose:channel pairs the journeys
send on, so audiences split customers and governance lets some actions through.
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from streams.activation.definitions import DefinitionSet, load_definitions
from streams.records import Envelope

Doc = dict[str, Any]
PURCHASE, PAGE, CANCELED = "purchase_completed", "page_viewed", "subscription_canceled"
STARTED, IDENTIFY, CONSENT = "subscription_started", "identify", "consent_updated"
WORKLOAD_START = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
SPAN = timedelta(days=365)
CONTRACT = timedelta(days=365)
CONSENTS = ("marketing:email", "marketing:paid_media", "service:webhook", "service:crm",
            "marketing:sms")


# --- the workload, rebased to now --------------------------------------------------------

def _index(event: Envelope) -> int:
    """The workload's event number (``ev<i>``); its base time was WORKLOAD_START + i s."""
    return int(event.event_id.removeprefix("ev"))


def _payload(event: Envelope, when: datetime) -> dict[str, Any] | None:
    day = when.date()
    if event.payload is None:
        return None
    if event.event_name == STARTED:
        return {**event.payload, "start_date": day, "contract_end_date": day + CONTRACT}
    if event.event_name == CANCELED:
        return {**event.payload, "cancel_date": day}
    if event.event_name == CONSENT:
        pick = zlib.crc32(event.event_id.encode()) % len(CONSENTS)
        return {**event.payload, "consent_type": CONSENTS[pick]}
    return event.payload


def recent(events: Iterable[Envelope], total: int, now: datetime) -> list[Envelope]:
    """The workload with event ``i`` at ``now - 1h - SPAN + i/total * SPAN`` plus its skew.

    A pure function of each event, so the workload's re-sent duplicates stay identical.
    """
    start = now - timedelta(hours=1) - SPAN
    out = []
    for event in events:
        i = _index(event)
        skew = event.event_time - (WORKLOAD_START + timedelta(seconds=i))
        when = start + SPAN * (i / max(1, total)) + skew
        out.append(replace(event, event_time=when, received_time=when,
                           payload=_payload(event, when)))
    return out


# --- condition helpers ---------------------------------------------------------------------

def ev(name: str, within: str | None = None, **more: Any) -> Doc:
    return {"event": name, **({"within": within} if within else {}), **more}


def trait(path: str, op: str, value: Any = None) -> Doc:
    return {"trait": path, "op": op, **({} if value is None else {"value": value})}


def date(path: str, **window: Any) -> Doc:
    return {"date": path, **window}


def all_(*conditions: Doc) -> Doc:
    return {"all": list(conditions)}


def any_(*conditions: Doc) -> Doc:
    return {"any": list(conditions)}


def not_(condition: Doc) -> Doc:
    return {"not": condition}


ACTIVE = trait("subscription.status", "eq", "active")
GOLD = trait("tier", "eq", "gold")
EMAIL_OK = trait("consent.marketing:email", "eq", "GRANTED")

# --- 50 audiences: 10 families of 5 --------------------------------------------------------

Audience = tuple[str, str, Doc]


def _buying() -> list[Audience]:
    buyers = [(f"buyers_{d}d_{n}x", f"Bought at least {n} times in the last {d} days.",
               ev(PURCHASE, f"P{d}D", at_least=n))
              for d, n in ((7, 1), (30, 1), (30, 2), (90, 2), (180, 3))]
    spenders = [(f"spenders_{eur}_{d}d", f"Spent at least {eur} EUR in the last {d} days"
                 f"{' (gold or frequent)' if vip else ''}.",
                 all_(ev(PURCHASE, f"P{d}D", sum_of="order_value", sum_at_least=eur),
                      any_(GOLD, trait("aggregates.order_count", "gte", 3))) if vip
                 else ev(PURCHASE, f"P{d}D", sum_of="order_value", sum_at_least=eur))
                for eur, d, vip in ((100, 30, False), (250, 90, False), (500, 180, True),
                                    (1000, 365, False), (2000, 365, True))]
    lapsed = [(f"lapsed_{d}d_{n}x", f"Bought at least {n} times, nothing in {d} days.",
               all_(trait("aggregates.order_count", "gte", n),
                    date("aggregates.last_purchase_at", older_than=f"P{d}D")))
              for n, d in ((1, 30), (1, 60), (2, 90), (2, 120), (3, 180))]
    browsers = [(f"browsers_{d}d_{n}x", f"Viewed {n}+ pages in {d} days, bought nothing.",
                 all_(ev(PAGE, f"P{d}D", at_least=n), ev(PURCHASE, f"P{d}D", did=False)))
                for d, n in ((3, 1), (7, 1), (14, 2), (30, 2), (60, 3))]
    return buyers + spenders + lapsed + browsers


def _subscriptions() -> list[Audience]:
    renewal = [(f"renewal_{d}d_{plan or 'any'}", f"Contract ends within {d} days"
                f"{f' ({plan})' if plan else ''}, no cancellation in 30 days.",
                all_(date("subscription.contract_end_date", within_next=f"P{d}D"),
                     trait("subscription.plan", "eq", plan) if plan else ACTIVE,
                     not_(ev(CANCELED, "P30D"))))
               for d, plan in ((14, "pro"), (30, "pro"), (30, "basic"), (60, None), (90, None))]
    new = [(f"new_subscribers_{d}d_{plan or 'any'}", f"Subscribed in the last {d} days.",
            all_(date("subscription.start_date", within_last=f"P{d}D"),
                 trait("subscription.plan", "eq", plan) if plan else ACTIVE))
           for d, plan in ((7, None), (30, "pro"), (30, "basic"), (90, None), (180, "pro"))]
    churned = [(f"churned_{d}d", f"Canceled in the last {d} days, no active subscription.",
                all_(ev(CANCELED, f"P{d}D"), not_(trait("subscription.status", "exists"))))
               for d in (7, 14, 30, 90)]
    churned.append(("churned_but_buying", "Canceled in 180 days but still bought since.",
                    all_(ev(CANCELED, "P180D"), ev(PURCHASE, "P90D"),
                         not_(trait("subscription.status", "exists")))))
    return renewal + new + churned


def _segments() -> list[Audience]:
    tiers = [
        ("tier_gold", "Gold tier.", GOLD),
        ("tier_silver", "Silver tier.", trait("tier", "eq", "silver")),
        ("tier_known_subscriber", "Tier known and subscribed.",
         all_(trait("tier", "in", ["gold", "silver"]), ACTIVE)),
        ("gold_repeat_buyers", "Gold and two orders or more.",
         all_(GOLD, trait("aggregates.order_count", "gte", 2))),
        ("anonymous_browsers", "No tier yet, browsing lately.",
         all_(not_(trait("tier", "exists")), ev(PAGE, "P30D"))),
    ]
    reachable = [
        ("email_ok_recent_buyers", "Email consent, bought in 90 days.",
         all_(EMAIL_OK, ev(PURCHASE, "P90D"))),
        ("email_ok_pro", "Email consent, pro plan.",
         all_(EMAIL_OK, trait("subscription.plan", "eq", "pro"))),
        ("ads_ok_high_ltv", "Paid-media consent, lifetime value 500 EUR or more.",
         all_(trait("consent.marketing:paid_media", "eq", "GRANTED"),
              trait("aggregates.lifetime_value.EUR", "gte", 500))),
        ("any_channel_ok", "Some marketing consent granted.",
         any_(EMAIL_OK, trait("consent.marketing:paid_media", "eq", "GRANTED"),
              trait("consent.marketing:sms", "eq", "GRANTED"))),
        ("crm_ok_customers", "CRM consent and at least one order.",
         all_(trait("consent.service:crm", "eq", "GRANTED"),
              trait("aggregates.order_count", "gte", 1))),
    ]
    return tiers + reachable


def _engagement() -> list[Audience]:
    return [
        ("engaged_30d", "Active in the last 30 days.",
         any_(ev(PAGE, "P30D", at_least=2), ev(IDENTIFY, "P30D"), ev(PURCHASE, "P30D"))),
        ("silent_90d", "Nothing at all in 90 days.",
         not_(any_(ev(PAGE, "P90D"), ev(PURCHASE, "P90D"), ev(IDENTIFY, "P90D")))),
        ("sleeping_subscribers", "Subscribed, no page view in 60 days.",
         all_(ACTIVE, ev(PAGE, "P60D", did=False))),
        ("heavy_browsers", "Four page views or more in 180 days.", ev(PAGE, "P180D", at_least=4)),
        ("consent_changers", "Changed consent twice in 60 days.",
         ev(CONSENT, "P60D", at_least=2)),
    ]


def audiences() -> dict[str, Doc]:
    items = _buying() + _subscriptions() + _segments() + _engagement()
    return {aid: {"description": text, "condition": cond} for aid, text, cond in items}


# --- 10 journeys ---------------------------------------------------------------------------

def send(step_id: str, channel: str, payload: Doc, purpose: str = "marketing",
         **more: Any) -> Doc:
    kind = {"email": "send_email", "paid_media": "audience_add", "webhook": "call_webhook",
            "crm": "update_crm"}[channel]
    return {"id": step_id, "send": {"channel": channel, "action_type": kind,
                                    "purpose": purpose, "payload": payload}, **more}


def wait(step_id: str, duration: str) -> Doc:
    return {"id": step_id, "wait": {"duration": duration}}


def wait_for(step_id: str, event: str, timeout: str, on_event: str, on_timeout: str) -> Doc:
    return {"id": step_id, "wait_for_event": {"event": event, "timeout": timeout,
                                              "on_event": on_event, "on_timeout": on_timeout}}


def branch(step_id: str, cases: list[tuple[Doc, str]], otherwise: str) -> Doc:
    return {"id": step_id, "branch": {"cases": [{"when": w, "next": n} for w, n in cases],
                                      "otherwise": otherwise}}


def done(step_id: str = "done", reason: str = "completed") -> Doc:
    return {"id": step_id, "exit": {"reason": reason}}


def journey(trigger: Doc, steps: list[Doc], exits: list[str] | None = None,
            reentry: Any = "never", **more: Any) -> Doc:
    return {"version": 1, "trigger": trigger, "steps": steps,
            "exit_when": {"events": exits or [], "audience_exit": True},
            "reentry": reentry, **more}


def _retention_journeys() -> dict[str, Doc]:
    """Audience-triggered: renewal, win-back of lapsed buyers and of churned subscribers."""
    return {
        "renewal_reminder": journey({"audience": "renewal_30d_pro"}, [
            send("reminder", "email", {"template_id": "renewal_reminder"}),
            send("retarget", "paid_media", {"audience_id": "renewal_risk"}),
            wait_for("wait_buy", PURCHASE, "P14D", "thank_crm", "last_week"),
            send("thank_crm", "crm", {"task": "renewal_likely"}, "service", next="done"),
            {"id": "last_week", "wait": {"until": {"date": "subscription.contract_end_date",
                                                   "offset": "-P7D"}}},
            branch("value", [(trait("aggregates.order_count", "gte", 3), "offer")], "final"),
            send("offer", "email", {"template_id": "renewal_offer"}, next="done"),
            send("final", "email", {"template_id": "renewal_final"}),
            done()], exits=[CANCELED], reentry={"after": "P180D"}),
        "winback_lapsed": journey({"audience": "lapsed_60d_1x"}, [
            send("miss_you", "email", {"template_id": "we_miss_you"}),
            wait("pause", "P7D"),
            send("ads", "paid_media", {"audience_id": "lapsed_buyers"}),
            done()], exits=[PURCHASE], reentry="after_exit"),
        "churn_winback": journey({"audience": "churned_30d"}, [
            send("ads", "paid_media", {"audience_id": "churned"}),
            wait("cool_off", "P14D"),
            send("offer", "email", {"template_id": "come_back_offer"})],
            exits=[STARTED], reentry="after_exit"),
    }


def _growth_journeys() -> dict[str, Doc]:
    """Audience-triggered: VIP welcome, browse abandonment, upsell of engaged customers."""
    return {
        "vip_welcome": journey({"audience": "spenders_500_180d"}, [
            send("account_manager", "crm", {"task": "assign_vip_manager"}, "service"),
            send("vip_email", "email", {"template_id": "vip_welcome"}),
            send("notify_sales", "webhook", {"url": "https://crm.example.com/hooks/vip"},
                 "service")], holdout_percent=5),
        "browse_abandon": journey({"audience": "browsers_7d_1x"}, [
            send("nudge", "email", {"template_id": "still_looking"}),
            wait_for("wait_return", PAGE, "P2D", "ads", "done"),  # back browsing: retarget
            send("ads", "paid_media", {"audience_id": "browse_abandoners"}),
            done()], exits=[PURCHASE], reentry={"after": "P30D"}),
        "engaged_upsell": journey({"audience": "engaged_30d"}, [
            branch("by_tier", [(GOLD, "gold_hook"),
                               (trait("subscription.plan", "eq", "basic"), "upgrade")],
                   "done"),
            send("gold_hook", "webhook", {"url": "https://loyalty.example.com/hooks/gold"},
                 "service", next="done"),
            send("upgrade", "email", {"template_id": "upgrade_to_pro"}),
            done()], reentry={"after": "P90D"}),
    }


def _event_journeys() -> dict[str, Doc]:
    """Event-triggered: after a purchase, a cancellation, a subscription, a consent change."""
    return {
        "post_purchase": journey({"event": PURCHASE}, [
            send("thanks", "email", {"template_id": "order_thanks"}),
            wait("settle", "P3D"),
            branch("repeat", [(ev(PURCHASE, "P30D", at_least=2), "done")], "cross_sell"),
            send("cross_sell", "email", {"template_id": "cross_sell"}),
            done()], reentry={"after": "P30D"}),
        "cancel_survey": journey({"event": CANCELED}, [
            send("survey", "email", {"template_id": "cancel_survey"}),
            send("crm_flag", "crm", {"operation": "upsert", "status": "churned"}, "service"),
            wait_for("wait_back", STARTED, "P30D", "welcome_back", "winback"),
            send("welcome_back", "email", {"template_id": "welcome_back"}, next="done"),
            send("winback", "paid_media", {"audience_id": "canceled_recently"}),
            done()], reentry="after_exit"),
        "onboarding": journey({"event": STARTED}, [
            send("welcome", "email", {"template_id": "welcome"}),
            send("provision", "webhook", {"url": "https://app.example.com/hooks/provision"},
                 "service"),
            wait("day_one", "P1D"),
            send("tips", "email", {"template_id": "getting_started"})],
            exits=[CANCELED], reentry="after_exit"),
        "consent_sync": journey({"event": CONSENT}, [
            send("sync", "crm", {"operation": "upsert", "field": "consent"}, "service"),
            done("synced")], reentry="after_exit"),
    }


def journeys() -> dict[str, Doc]:
    return {**_retention_journeys(), **_growth_journeys(), **_event_journeys()}


GOVERNANCE: Doc = {
    "default_timezone": "Europe/Berlin",
    "suppression": {"profile_ids": [], "identifier_hashes": []},
    "frequency_caps": [{"channel": "email", "max_sends": 1, "per": "PT24H"},
                       {"channel": "email", "max_sends": 3, "per": "P7D"},
                       {"channel": "paid_media", "max_sends": 5, "per": "P7D"}],
    "quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["email"]},
    "holdout_percent": 10,
    "holdout_salt": "bench",
}


def _dump(path: Path, doc: Doc) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def write_definitions(directory: Path) -> DefinitionSet:
    """Write the definitions under ``directory`` (created) and return them validated."""
    for sub, docs in (("audiences", audiences()), ("journeys", journeys())):
        (directory / sub).mkdir(parents=True, exist_ok=True)
        for def_id, doc in docs.items():
            _dump(directory / sub / f"{def_id}.yaml", doc)
    _dump(directory / "governance.yaml", GOVERNANCE)
    return load_definitions(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    definitions = write_definitions(parser.parse_args().directory)
    print(f"definitions version {definitions.version}: {len(definitions.audiences)} "
          f"audiences, {len(definitions.journeys)} journeys")


if __name__ == "__main__":
    main()
