"""The stored form of :class:`ActivationState`: encoded once per event, decoded once.

The format is pydantic's JSON of the state, unchanged (the runtime prefixes the
position: streams/activation/runtime.py). Two things make it cheaper than
``model_dump_json`` / ``model_validate_json`` on every event:

- encoding with orjson, which walks the models' ``__dict__`` (activation's records have
  no aliases nor custom serializers, so the bytes are pydantic's, floats included,
  which msgspec writes otherwise: checked in tests/unit/activation/test_codec.py);
  pydantic's own encoder spent most of its time on the dozens of datetimes of a state.
  (orjson's output buffer is over-allocated; the value stored is the exact-size copy
  the position is joined into, so it is never kept: see notes.py.)
- a bounded cache of the values last read or written, by profile: a profile's events
  come in runs, and the stored bytes are compared (a memcmp) before an entry is
  trusted, so an entry never answers for other bytes, whatever wrote them. States are
  immutable (frozen models, changed by copy), so sharing one is safe.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pydantic_core
from pydantic import BaseModel

from streams.activation.engine import ActivationState

_OPTIONS = orjson.OPT_UTC_Z  # pydantic writes UTC as "Z"
KEPT = 2048  # profiles whose decoded state is kept: about 11 KB each with its bytes
# profile id -> (stored value, its state, position), oldest first
_DECODED: dict[str, tuple[bytes, ActivationState, int]] = {}


def _fields(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.__dict__  # the fields in their order, as pydantic dumps them
    return pydantic_core.to_jsonable_python(value)  # anything else: as pydantic would


def encode(state: ActivationState, position: int) -> bytes:
    """``b"<position> <state JSON>"``: the state is not encoded twice, as it was inside
    a JSON document."""
    return b"%d %s" % (position, orjson.dumps(state.__dict__, default=_fields,
                                              option=_OPTIONS))


def decode(raw: bytes, profile_id: str) -> tuple[ActivationState, int]:
    """A stored value back: this format, or the JSON document written before the
    position led the value."""
    cached = _DECODED.get(profile_id)
    if cached is not None and cached[0] == raw:
        return cached[1], cached[2]
    if raw.startswith(b"{"):
        doc = json.loads(raw)
        state, position = ActivationState.model_validate_json(doc["state"]), doc["last_offset"]
    else:
        head, _, body = raw.partition(b" ")
        state, position = ActivationState.model_validate_json(body), head
    remember(profile_id, raw, state, int(position))
    return state, int(position)


def remember(profile_id: str, raw: bytes, state: ActivationState, position: int) -> None:
    """``raw`` is what ``state`` at ``position`` is stored as (just written, or read)."""
    _DECODED.pop(profile_id, None)  # re-inserted last: the oldest entry goes first
    if len(_DECODED) >= KEPT:
        del _DECODED[next(iter(_DECODED))]
    _DECODED[profile_id] = (raw, state, position)
