"""One identity slot: its store as the partitioned protocol reads and writes it, and
the transaction (:class:`Tx`) a step runs in.

Today's families keep their formats (``d:``, ``i:``, ``r:``, ``k:``, ``x:``:
streams/core/identity_stage.py); the protocol adds (docs/partitioned-identity.md, 2.2):

``iv:<key>``        version of the key's hint: a repoint applies only if newer
``c:<key>``         claim: the id of the ticket that reserved an unknown key
``v:<pid>``         directory version, bumped by every change of ``r:``/``k:``
``l:<pid>``         lock: the token (``<event id>#<epoch>``) of the ticket holding it
``g:<home key>``    home guard: the undecided event of that home key
``wq:<resource>``   a waiter queue's bounds, ``head,next`` (absent when empty)
``w:<resource>:<n>`` the waiters, FIFO (20-digit sequence): an event ``E`` + MessagePack,
                    any other step a JSON item

A resource is ``c/<key>``, ``l/<pid>``, ``g/<home key>`` or ``i/<key>`` (tickets
waiting for a newer hint of a key that was not where its hint said). The queue keeps
its own bounds so that parking and resuming are point reads: no scan is needed, and
a worker's store needs only get, put and delete.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

from streams.core.identity_messages import EventRef, Message, Release
from streams.core.identity_outputs import Output, Send
from streams.core.pipeline import Store
from streams.core.routing import key_slot, profile_slot

_EVENT_WAITER = b"E"  # a packed event waiter's first byte; a JSON waiter's is "{"


def _key(family: bytes, name: str) -> bytes:
    return family + name.encode()


def _get_str(store: Store, key: bytes) -> str | None:
    raw = store.get(key)
    return None if raw is None else raw.decode()


def _delete(store: Store, key: bytes) -> None:
    if store.get(key) is not None:
        del store[key]


# --- hints and their versions ------------------------------------------------------------


def hint_pid(store: Store, key: str) -> str | None:
    """The key's hint alone (the fast path needs no version)."""
    return _get_str(store, _key(b"i:", key))


def hint(store: Store, key: str) -> tuple[str, int] | None:
    """The key's hint and its version (0 for a hint written before versions existed)."""
    pid = _get_str(store, _key(b"i:", key))
    if pid is None:
        return None
    return pid, int(_get_str(store, _key(b"iv:", key)) or 0)


def write_hint(store: Store, key: str, pid: str, version: int) -> bool:
    """Points ``key`` at ``pid`` unless the stored hint is as new or newer (hints come
    from several slots, whose messages overtake each other). True if written."""
    current = hint(store, key)
    if current is not None and current[1] >= version:
        return False
    store[_key(b"i:", key)] = pid.encode()
    store[_key(b"iv:", key)] = str(version).encode()
    return True


def suppressed(store: Store, key: str) -> bool:
    return store.get(_key(b"x:", key)) is not None


# --- directories ---------------------------------------------------------------------------


def redirect(store: Store, pid: str) -> str | None:
    return _get_str(store, _key(b"r:", pid))


def version(store: Store, pid: str) -> int:
    return int(_get_str(store, _key(b"v:", pid)) or 0)


def set_version(store: Store, pid: str, value: int) -> None:
    store[_key(b"v:", pid)] = str(value).encode()


# --- claims, locks and guards: one holder each -----------------------------------------

_FAMILY = {"c": b"c:", "l": b"l:", "g": b"g:"}


def holder(store: Store, resource: str) -> str | None:
    """Who holds ``resource`` (``c/<key>``, ``l/<pid>`` or ``g/<key>``); hint resources
    (``i/<key>``) are never held: their waiters wait for a write."""
    kind, _, name = resource.partition("/")
    family = _FAMILY.get(kind)
    return None if family is None else _get_str(store, _key(family, name))


def take(store: Store, resource: str, by: str) -> None:
    kind, _, name = resource.partition("/")
    store[_key(_FAMILY[kind], name)] = by.encode()


def give_back(store: Store, resource: str, by: str) -> bool:
    """Releases ``resource`` if ``by`` holds it; True if it did (its waiters may go on)."""
    if holder(store, resource) != by:
        return False
    kind, _, name = resource.partition("/")
    del store[_key(_FAMILY[kind], name)]
    return True


# --- waiter queues ---------------------------------------------------------------------------


def _bounds(store: Store, resource: str) -> tuple[int, int]:
    raw = _get_str(store, _key(b"wq:", resource))
    if raw is None:
        return 0, 0
    head, nxt = raw.split(",")
    return int(head), int(nxt)


def _set_bounds(store: Store, resource: str, head: int, nxt: int) -> None:
    if head == nxt:  # empty: no trace, so a slot at rest holds no queue keys
        _delete(store, _key(b"wq:", resource))
    else:
        store[_key(b"wq:", resource)] = f"{head},{nxt}".encode()


def _slot_key(resource: str, seq: int) -> bytes:
    return _key(b"w:", f"{resource}:{seq:020d}")


def waiting(store: Store, resource: str) -> int:
    head, nxt = _bounds(store, resource)
    return nxt - head


def park(store: Store, resource: str, item: bytes, limit: int) -> bool:
    """Appends ``item`` to ``resource``'s queue; False (nothing written) when the queue
    already holds ``limit`` waiters: the caller gives up instead of growing state."""
    head, nxt = _bounds(store, resource)
    if nxt - head >= limit:
        return False
    store[_slot_key(resource, nxt)] = item
    _set_bounds(store, resource, head, nxt + 1)
    return True


def pop_waiter(store: Store, resource: str) -> bytes | None:
    """The oldest waiter on ``resource``, removed from the queue (None: nobody waits)."""
    head, nxt = _bounds(store, resource)
    if head == nxt:
        return None
    key = _slot_key(resource, head)
    item = store.get(key)
    _delete(store, key)
    _set_bounds(store, resource, head + 1, nxt)
    return item


def wait(tx: Tx, resource: str, kind: str, body: dict[str, Any]) -> bool:
    """Parks a waiter (``kind``: what resumes it) on ``resource``; False when its queue
    is full (the caller gives up)."""
    return park(tx.store, resource, waiter(kind, body), tx.cfg.max_waiters)


def wait_event(tx: Tx, resource: str, event: EventRef) -> bool:
    """Parks an arrived event (kind ``event``) in its binary form (:meth:`EventRef.packed`):
    the waiter most often written, by far."""
    return park(tx.store, resource, _EVENT_WAITER + event.packed(), tx.cfg.max_waiters)


def waiter(kind: str, body: dict[str, Any]) -> bytes:
    """A parked step: JSON (orjson). Events are parked packed (:func:`wait_event`)."""
    return orjson.dumps({"kind": kind, "body": body})


def waiter_of(item: bytes) -> tuple[str, dict[str, Any] | EventRef]:
    """A waiter's kind and what resumes it: an :class:`EventRef` for a packed event
    (its first byte is not JSON's), else the JSON body, in either JSON spelling (a
    waiter lives only until it resumes, but one may have been parked by an older
    worker: a JSON event body reads as it always did)."""
    if item[:1] == _EVENT_WAITER:
        return "event", EventRef.unpacked(item[1:])
    doc = orjson.loads(item)
    return str(doc["kind"]), dict(doc["body"])


# --- the transaction of one step ----------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The slot count and the bounds of design 3.3 (``ACTIVATION_IDENTITY_*``)."""

    slots: int
    dedup_window: timedelta
    max_restarts: int = 8
    max_hops: int = 32
    max_waiters: int = 10_000


class Tx:
    """One input record's transaction at one slot: what it sends, what it resumes."""

    def __init__(self, store: Store, slot: int, cfg: Config) -> None:
        self.store, self.slot, self.cfg = store, slot, cfg
        self.out: list[Output] = []
        self.inline: deque[Message] = deque()  # messages for this very slot
        self.freed: deque[str] = deque()  # resources released: resume their waiters

    def key_slot(self, key: str) -> int:
        return key_slot(key, self.cfg.slots)

    def profile_slot(self, pid: str) -> int:
        return profile_slot(pid, self.cfg.slots)

    def send(self, slot: int, message: Message) -> None:
        """To ``slot``; to this slot itself it is handled later in this transaction (an
        earlier delivery than the topic would give). Only for what may wait: steps
        and resumed waiters run in between, so what it changes must stay guarded
        (locked, claimed) until it runs, or be done at once instead."""
        if slot == self.slot:
            self.inline.append(message)
        else:
            self.out.append(Send(slot, message))

    def emit(self, output: Output) -> None:
        self.out.append(output)

    def release(self, resource: str, by: str) -> None:
        """Releases a resource of this slot now (its waiters resume after this step)."""
        if give_back(self.store, resource, by):
            self.freed.append(resource)

    def release_at(self, slot: int, resource: str, by: str) -> None:
        """Releases a resource wherever it lives: here at once, not as a queued message,
        since the releasing ticket may take it again in this very transaction."""
        if slot == self.slot:
            self.release(resource, by)
        else:
            self.out.append(Send(slot, Release(by, resource)))

    def follow_here(self, pid: str) -> str:
        """``pid`` followed along redirects while they stay in this slot: the
        canonical profile, or the first one another slot keeps."""
        seen = {pid}
        while self.profile_slot(pid) == self.slot and (nxt := redirect(self.store, pid)):
            if nxt in seen:  # a cycle would be a bug; stop rather than spin
                break
            pid = nxt
            seen.add(pid)
        return pid

    def hint_written(self, key: str) -> None:
        """Tickets waiting for a newer hint of ``key`` may go on."""
        self.freed.append("i/" + key)
