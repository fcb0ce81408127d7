"""Checks across definition files, run when a set is loaded: each yields the problems
found, each naming the file, the path in it and what is wrong.

- references: a journey's trigger audience and step ids, a schedule's audience exist;
- channels: every send (journey step, schedule), cap, quiet-hours list and destination
  route names a declared channel, and an action type it takes with the payload fields
  it needs. A channel journeys still use cannot be removed: the set that drops it is
  refused here, naming the journey step that still sends on it;
- loops: a journey whose data actions (``update_profile``) write what its own trigger
  reads, directly or through other journeys (an audience whose entry sets the trait
  that defines it), would feed itself; refused, with the chain.

The models are only read here (their modules import this one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from streams.activation.compiled import dependencies

if TYPE_CHECKING:
    from streams.activation.channels import ChannelDef
    from streams.activation.definitions import (
        Audience,
        DefinitionSet,
        Journey,
        SendSpec,
    )

# (kind, id) -> the file it came from; missing: "<kind>/<id>.yaml"
Files = Mapping[tuple[str, str], str]
# journey id -> (journey it can start, why, index of the writing step)
Edges = Mapping[str, list[tuple[str, str, int]]]


def where(files: Files, kind: str, item_id: str) -> str:
    return files.get((kind, item_id), f"{kind}/{item_id}.yaml")


def step_refs(journey: Journey) -> Iterator[tuple[str, str]]:
    """(path, referenced step id) for every step reference in a journey."""
    for i, step in enumerate(journey.steps):
        if step.next is not None:
            yield f"steps[{i}].next", step.next
        if step.wait_for_event is not None:
            yield f"steps[{i}].wait_for_event.on_event", step.wait_for_event.on_event
            yield f"steps[{i}].wait_for_event.on_timeout", step.wait_for_event.on_timeout
        if step.branch is not None:
            for c, case in enumerate(step.branch.cases):
                yield f"steps[{i}].branch.cases[{c}].next", case.next
            yield f"steps[{i}].branch.otherwise", step.branch.otherwise
        if step.split is not None:
            for v, variant in enumerate(step.split.variants):
                yield f"steps[{i}].split.variants[{v}].next", variant.next


def references(definitions: DefinitionSet, files: Files) -> Iterator[str]:
    audiences = definitions.audiences
    for jid, journey in sorted(definitions.journeys.items()):
        rel, trigger = where(files, "journeys", jid), journey.trigger.audience
        if trigger is not None and trigger not in audiences:
            yield (f"{rel}: trigger.audience: unknown audience {trigger!r} "
                   f"(known: {sorted(audiences)})")
        ids = {s.id for s in journey.steps}
        for path, ref in step_refs(journey):
            if ref not in ids:
                yield f"{rel}: {path}: unknown step id {ref!r} (steps: {sorted(ids)})"
    for sid, schedule in sorted(definitions.schedules.items()):
        if schedule.audience is not None and schedule.audience not in audiences:
            yield (f"{where(files, 'schedules', sid)}: audience: unknown audience "
                   f"{schedule.audience!r} (known: {sorted(audiences)})")


def _send(send: SendSpec, channels: Mapping[str, ChannelDef], path: str) -> str | None:
    channel = channels.get(send.channel)
    if channel is None:
        return (f"{path}.channel: unknown channel {send.channel!r}: declare it in channels/ "
                f"(declared: {', '.join(sorted(channels))}); a channel that journeys or "
                f"schedules still send on cannot be removed")
    problem = channel.problem(send.action_type, send.payload)
    return None if problem is None else f"{path}: {problem}"


def _sends(definitions: DefinitionSet, files: Files) -> Iterator[tuple[SendSpec, str]]:
    for jid, journey in sorted(definitions.journeys.items()):
        for i, step in enumerate(journey.steps):
            if step.send is not None:
                yield step.send, f"{where(files, 'journeys', jid)}: steps[{i}].send"
    for sid, schedule in sorted(definitions.schedules.items()):
        if schedule.action is not None:
            yield schedule.action, f"{where(files, 'schedules', sid)}: action"


def _named(definitions: DefinitionSet, files: Files) -> Iterator[tuple[str, str]]:
    """(where, channel) for every other place a channel is named."""
    gov = definitions.governance
    for i, cap in enumerate(gov.frequency_caps):
        yield f"governance.yaml: frequency_caps[{i}].channel", cap.channel
    for i, name in enumerate(gov.quiet_hours.channels if gov.quiet_hours else []):
        yield f"governance.yaml: quiet_hours.channels[{i}]", name
    for did, destination in sorted(definitions.destinations.items()):
        for r, route in enumerate(destination.routes):
            yield f"{where(files, 'destinations', did)}: routes[{r}].channel", route.channel


def channel_use(definitions: DefinitionSet, files: Files) -> Iterator[str]:
    channels = definitions.all_channels
    for send, path in _sends(definitions, files):
        if (problem := _send(send, channels, path)) is not None:
            yield problem
    for path, name in _named(definitions, files):
        if name not in channels:
            yield f"{path}: unknown channel {name!r} (declared: {', '.join(sorted(channels))})"


def _started_by(written: frozenset[str], audiences: Mapping[str, Audience],
                journeys: Mapping[str, Journey]) -> Iterator[tuple[str, str]]:
    """(journey id, why) for every journey a write of ``written`` can start."""
    for jid, journey in sorted(journeys.items()):
        trigger = journey.trigger
        if trigger.event is not None and f"event:{trigger.event}" in written:
            yield jid, f"the {trigger.event} event, which starts journey {jid}"
        audience = audiences.get(trigger.audience or "")
        if audience is None:
            continue
        read = sorted(dependencies(audience.condition) & written)
        if read:
            yield jid, (f"{read[0]}, which audience {audience.id} reads, and entering it "
                        f"starts journey {jid}")


def _edges(definitions: DefinitionSet) -> Edges:
    edges: dict[str, list[tuple[str, str, int]]] = {}
    for jid, journey in sorted(definitions.journeys.items()):
        for index, step in enumerate(journey.steps):
            if step.update_profile is None:
                continue
            for target, why in _started_by(step.update_profile.written,
                                           definitions.audiences, definitions.journeys):
                edges.setdefault(jid, []).append((target, why, index))
    return edges


def loops(definitions: DefinitionSet, files: Files) -> Iterator[str]:
    """One problem per cycle of journeys whose writes start one another."""
    edges = _edges(definitions)
    reported: set[frozenset[str]] = set()
    for start in sorted(edges):
        chain = _cycle(start, edges)
        members = frozenset(j for j, _, _ in chain or [])
        if chain is None or members in reported:
            continue
        reported.add(members)
        story = "; ".join(f"journey {j} writes {why}" for j, why, _ in chain)
        yield (f"{where(files, 'journeys', start)}: steps[{chain[0][2]}].update_profile: "
               f"a loop: {story}")


def _cycle(start: str, edges: Edges) -> list[tuple[str, str, int]] | None:
    """A path of (journey, why, step index) from ``start`` back to it, or None."""
    stack: list[tuple[str, list[tuple[str, str, int]]]] = [(start, [])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for target, why, index in edges.get(node, []):
            step = [*path, (node, why, index)]
            if target == start:
                return step
            if target not in seen:
                seen.add(target)
                stack.append((target, step))
    return None
