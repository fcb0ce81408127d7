"""Four eyes on rule changes (``ACTIVATION_DEFINITIONS_REQUIRE_APPROVAL``, off by
default): ``scripts/definitions publish --api-key K`` then writes a *proposal* to the
definitions topic (key ``proposal-<id>``, never in force, ignored by the workers), and
``scripts/definitions approve <id> --api-key K2`` publishes it, if ``K2`` has the
``definitions:approve`` scope and is not the proposer's key. The publication records
both (``published_by``: "<proposer> (approved by <approver>)")."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.activation.definitions import DefinitionError, DefinitionSet, from_snapshot, snapshot
from streams.activation.rollout import Rollout

PREFIX = b"proposal-"


@dataclass(frozen=True)
class Proposal:
    proposal_id: str
    proposed_by: str  # "<name> (key <key id>)"
    key_id: str
    proposed_at: datetime
    definitions: DefinitionSet
    rollout: Rollout | None = None

    def encode(self) -> tuple[bytes, bytes]:
        doc: dict[str, Any] = {
            "proposal_id": self.proposal_id, "proposed_by": self.proposed_by,
            "key_id": self.key_id, "proposed_at": self.proposed_at.isoformat(),
            "snapshot": json.loads(snapshot(self.definitions)),
            "rollout": None if self.rollout is None else self.rollout.to_dict()}
        return PREFIX + self.proposal_id.encode(), json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> Proposal:
        doc = json.loads(value)
        rollout = None if doc.get("rollout") is None else Rollout.from_dict(doc["rollout"])
        return cls(doc["proposal_id"], doc["proposed_by"], doc["key_id"],
                   datetime.fromisoformat(doc["proposed_at"]),
                   from_snapshot(json.dumps(doc["snapshot"]).encode()), rollout)


def is_proposal(key: bytes | None) -> bool:
    return bool(key) and key is not None and key.startswith(PREFIX)


def propose(definitions: DefinitionSet, name: str, key_id: str,
            rollout: Rollout | None = None) -> Proposal:
    return Proposal(uuid.uuid4().hex[:12], f"{name} (key {key_id})", key_id,
                    datetime.now(UTC), definitions, rollout)


def check_approver(proposal: Proposal, approver_key_id: str, scopes: frozenset[str],
                   approve_scope: str) -> None:
    """Refuse an approval by the proposer's own key, or by a key without the scope."""
    if approver_key_id == proposal.key_id:
        raise DefinitionError("a proposal needs a second key: the proposer's cannot approve")
    if approve_scope not in scopes:
        raise DefinitionError(f"the approving key lacks the {approve_scope!r} scope")
