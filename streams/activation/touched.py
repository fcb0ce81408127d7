"""What an update of a profile changed, in the terms audiences read
(:func:`streams.activation.compiled.dependencies`): the facts that differ and the
events that entered or left the (bounded) history. Only the audiences reading a
changed fact are evaluated again (streams/activation/audiences.py).
"""

from __future__ import annotations

from typing import Any

from streams.activation.facts import active_subscription, canceled_subscription
from streams.core import timeline_json
from streams.core.profile import Profile
from streams.core.timeline_json import ENTRIES


def _events(profile: Profile) -> dict[str, str]:
    return {e["event_id"]: e["event_name"] for e in profile.timeline
            if e.get("kind", "event") == "event"}


def _changed(prefix: str, new: dict[str, list[Any]], old: dict[str, list[Any]]) -> set[str]:
    """Names of the ``[value, stamp]`` entries whose value differs (a stamp alone is no
    change to the facts)."""
    if new == old:  # most events change no trait nor consent: one C-level comparison
        return set()
    return {prefix + k for k in new.keys() | old.keys()
            if (new.get(k) or (None,))[0] != (old.get(k) or (None,))[0]}


def _subscriptions(profile: Profile) -> dict[str, dict[str, Any]]:
    return {sid: {k: v[0] for k, v in attrs.items()}
            for sid, attrs in profile.subscriptions.items()}


def touched(before: Profile | None, after: Profile) -> frozenset[str] | None:
    """What an update changed, in :func:`streams.activation.compiled.dependencies`
    terms: the facts that differ, and ``event:<name>`` for events that entered or left
    the (bounded) history. None for a new profile: everything is new."""
    if before is None:
        return None
    names = _changed("traits.", after.traits, before.traits)
    names |= _changed("consent.", after.consent, before.consent)
    if after.subscriptions != before.subscriptions:  # the fields of "the" subscriptions
        now, then = _subscriptions(after), _subscriptions(before)
        for root, pick in (("subscription", active_subscription),
                           ("canceled_subscription", canceled_subscription)):
            new, old = pick(now), pick(then)
            names |= {f"{root}.{k}" for k in new.keys() | old.keys()
                      if new.get(k) != old.get(k)}
    if after.order_count != before.order_count:
        names.add("aggregates.order_count")
    if after.last_purchase != before.last_purchase:
        names.add("aggregates.last_purchase_at")
    if after.lifetime_value != before.lifetime_value:
        names |= {f"aggregates.lifetime_value.{c}" for c in
                  after.lifetime_value.keys() | before.lifetime_value.keys()
                  if after.lifetime_value.get(c) != before.lifetime_value.get(c)}
    return frozenset(names | {f"event:{name}" for name in _moved(after, before)})


def _moved(after: Profile, before: Profile) -> set[str]:
    """Names of the events that entered or left the history."""
    in_front = _moved_in_front(after, before)
    if in_front is not None:
        return in_front
    new, old = after.timeline, before.timeline
    # Most events go in front of the timeline, which keeps the rest (the same entries):
    # only the first entry can be new, and it is unless its id was there already.
    if len(new) == len(old) + 1 and new[1:] == old:
        first = new[0]
        if first.get("kind", "event") != "event" \
                or first["event_id"] in _events(before):
            return set()
        return {first["event_name"]}
    new_events, old_events = _events(after), _events(before)
    moved = {name for eid, name in new_events.items() if eid not in old_events}
    moved |= {name for eid, name in old_events.items() if eid not in new_events}
    return moved


def _moved_in_front(after: Profile, before: Profile) -> set[str] | None:
    """:func:`_moved` for the usual event, put in front of a timeline kept as read
    (streams/core/timeline_json.py): ``before``'s entries are not decoded, but for
    those trimmed off. None: not that case."""
    new, old = after.__dict__.get(ENTRIES), before.__dict__.get(ENTRIES)
    if new is None or old is None:
        return None
    gone = timeline_json.dropped(new, old)
    if gone is None:
        return None
    first = timeline_json.first(new)
    if timeline_json.may_hold(old, first["event_id"]):
        return None
    moved = {e["event_name"] for e in timeline_json.decode(gone)
             if e.get("kind", "event") == "event"}
    if first.get("kind", "event") == "event":
        moved.add(first["event_name"])
    return moved
