"""The profile API's commands: ask what the stream would decide, undo a merge, erase a
customer (the routes are registered by :func:`agents.api.install`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from faust.web import View

from agents.activation import Activation
from agents.api_reader import NotServedHere, ProfileReader, error_answer, not_found
from agents.context import Worker
from streams.activation.ask import BadQuestion, Question, would_decide
from streams.activation.runtime import clock_now, load_state
from streams.core.erasure import MODES, Request
from streams.core.identity import identifier_keys
from streams.core.identity_messages import UndoMerge as UndoMessage
from streams.core.identity_messages import encode
from streams.core.pipeline import load_profile, merge_history
from streams.core.routing import COMMAND_HEADER, ERASE, IDENTITY_PROTOCOL, UNDO_MERGE, profile_slot
from streams.core.unmerge import undo_refusal
from streams.records import Identifiers


class Decide(View):
    """POST ``{"channel", "action_type", "purpose", "journey_id"?}``: would the stream
    allow that action for this profile now, and if not, which rule withholds it
    (streams/activation/ask.py). Read scope; nothing written or counted."""

    worker: Worker  # set on the subclass :func:`install` registers
    reader: ProfileReader
    activation: Activation

    async def post(self, request: Any, profile_id: str) -> Any:
        try:
            body = await request.json()
            Question.parse(body, None)  # the shape; the channel is checked against the
        except (ValueError, BadQuestion) as exc:  # definitions deciding (a JSON error
            return error_answer(self, 400, "invalid_question", str(exc))  # is a ValueError)
        try:
            return self.answer(profile_id, body)
        except NotServedHere as exc:
            return await self.reader.forwarded(self, request, exc, "/decide")

    def answer(self, profile_id: str, body: Any) -> Any:
        store, pid = self.reader.locate(profile_id)
        profile = load_profile(store, pid)
        definitions = self.activation.definitions_for(store, pid)
        if profile is None:
            return not_found(self, profile_id)
        if definitions is None:
            return error_answer(self, 409, "no_definitions", "no definitions are published yet")
        try:
            question = Question.parse(body, definitions.all_channels)
        except BadQuestion as exc:
            return error_answer(self, 400, "invalid_question", str(exc))
        manual = self.worker.settings.activation_clock == "manual"
        now = clock_now(store, manual, datetime.now(UTC))
        state = load_state(store, pid)[0]
        return self.json(would_decide(profile, state, definitions, question, now))


class UndoMerge(View):
    """POST: ask the profile's owner to undo a merge (applied asynchronously: 202)."""

    worker: Worker  # set on the subclass :func:`install` registers
    reader: ProfileReader

    async def post(self, request: Any, profile_id: str, event_id: str) -> Any:
        try:
            store, pid = self.reader.locate(profile_id)
        except NotServedHere as exc:
            return await self.reader.forwarded(self, request, exc,
                                               f"/merges/{quote(event_id)}/undo")
        refusal = undo_refusal(merge_history(store, pid), pid, event_id)
        if refusal is not None:
            return error_answer(self, *refusal)
        await self.request_undo(pid, event_id)
        return self.json({"status": "accepted", "profile_id": pid, "event_id": event_id},
                         status=202)

    async def request_undo(self, pid: str, event_id: str) -> None:
        """Today's ``undo-merge`` command to the one identity partition, or the
        protocol's to the profile's slot (partitioned layout)."""
        w = self.worker
        if w.slots == 1:
            body = json.dumps({"profile_id": pid, "event_id": event_id}).encode()
            await w.identity_topic.send(key=pid.encode(), value=body,
                                        headers={COMMAND_HEADER: UNDO_MERGE})
            return
        await w.identity_topic.send(key=pid.encode(), value=encode(UndoMessage(pid, event_id)),
                                    partition=profile_slot(pid, w.slots),
                                    headers={COMMAND_HEADER: IDENTITY_PROTOCOL})


class Erasures(View):
    """POST (admin): erase a customer by one identifier (streams/core/erasure.py):
    ``{"email": ...}`` (or customer_id, phone, anonymous_id) and an optional
    ``"mode"``; applied asynchronously, 202 with the request id the audit record on
    ``ops.erasures`` will carry."""

    worker: Worker  # set on the subclass :func:`install` registers

    async def post(self, request: Any) -> Any:
        try:
            body = await request.json()
            ids = Identifiers.from_clear(*(body.get(k) for k in (
                "customer_id", "email", "phone", "anonymous_id")))
            keys = identifier_keys(ids)
            mode = body.get("mode", "suppress_with_delete")
            if len(keys) != 1 or mode not in MODES:
                raise ValueError("give exactly one identifier, and a mode of " + str(MODES))
        except (ValueError, AttributeError, TypeError) as exc:
            return error_answer(self, 400, "invalid_erasure", str(exc))
        erasure = Request(uuid.uuid4().hex, keys[0], mode,
                          str(body.get("requested_by", "api")), datetime.now(UTC))
        await self.worker.identity_topic.send(key=b"erase", value=erasure.to_json(),
                                              headers={COMMAND_HEADER: ERASE})
        return self.json({"status": "accepted", "request_id": erasure.request_id,
                          "mode": mode}, status=202)
