"""The data engineer's schema workflow against the registry: check, register, list, diff.

Subjects follow TopicNameStrategy (``<topic>-value``) for every declared topic.
``register`` sets each subject's compatibility level, checks the local schema
against the registry (its verdict, plus a readable explanation from
:mod:`streams.schema_compat`), and registers only what passes. An intentional
break goes through only when ``avro_schemas/breaking-changes.json`` lists its
subject and fingerprint with a reason; it is then registered under level NONE
and the subject's level is restored at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from confluent_kafka.schema_registry import Schema

from streams.activation.channels import channel_topics
from streams.errors import IncompatibleSchemaError, RegistryError, SchemaParseError
from streams.schema_compat import diff, directions, violations
from streams.schemas import SchemaCatalog, fingerprint
from streams.serde import RegistryClient
from streams.settings import Settings
from streams.topics import TopicSpec, declared_topics

Status = Literal["new", "unchanged", "compatible", "incompatible", "approved-break"]


@dataclass(frozen=True)
class SubjectPlan:
    subject: str
    type_name: str
    compatibility: str
    schema_text: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.schema_text)


@dataclass
class CheckResult:
    plan: SubjectPlan
    status: Status
    reasons: list[str] = field(default_factory=list)
    latest_version: int | None = None
    approval: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "incompatible"


def plans(settings: Settings, catalog: SchemaCatalog) -> list[SubjectPlan]:
    """One plan per subject of the declared topics (the action topics: the channels of
    the definitions directory's, streams/activation/channels.py)."""
    return plans_for(declared_topics(settings, channel_topics(settings.definitions_dir)),
                     catalog)


def plans_for(specs: Iterable[TopicSpec], catalog: SchemaCatalog) -> list[SubjectPlan]:
    """One plan per subject of ``specs`` (topics without an Avro value have none)."""
    return [
        SubjectPlan(
            spec.value_subject,
            spec.value_type,
            spec.compatibility,
            catalog.schema_str(spec.value_type),
        )
        for spec in specs
        if spec.value_type is not None
    ]


def load_approved_breaks(path: Path) -> dict[tuple[str, str], str]:
    """(subject, fingerprint) -> reason, from the breaking-changes file."""
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("changes", [])
        return {(e["subject"], e["fingerprint"]): e["reason"] for e in entries}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise SchemaParseError(
            f"{path}: expected {{'changes': [{{'subject','fingerprint','reason'}}]}}: {exc}"
        ) from exc


class SchemaWorkflow:
    """Registry operations for the declared subjects."""

    def __init__(self, settings: Settings, registry: RegistryClient | None = None) -> None:
        self.settings = settings
        self.registry = registry or RegistryClient(settings.registry_client_config())
        self.catalog = SchemaCatalog.load(settings.schemas_dir)
        self.approved = load_approved_breaks(settings.breaking_changes_file)

    def plans(self) -> list[SubjectPlan]:
        return plans(self.settings, self.catalog)

    def versions(self, subject: str) -> list[int]:
        try:
            return sorted(self.registry.raw.get_versions(subject))
        except Exception as exc:  # a 404 means a subject without versions yet
            if getattr(exc, "http_status_code", None) == 404:
                return []
            raise RegistryError(f"registry unreachable listing {subject}: {exc}") from exc

    def schema_text(self, subject: str, version: int) -> str:
        found = self.registry.call(
            f"get {subject} v{version}", self.registry.raw.get_version, subject, version
        )
        return str(found.schema.schema_str)

    def check(self, plan: SubjectPlan) -> CheckResult:
        """Compare the local schema with what the registry holds for the subject."""
        versions = self.versions(plan.subject)
        if not versions:
            return CheckResult(plan, "new")
        latest = versions[-1]
        compared = versions if plan.compatibility.endswith("_TRANSITIVE") else [latest]
        texts = {v: self.schema_text(plan.subject, v) for v in compared}
        if fingerprint(texts[latest]) == plan.fingerprint:
            return CheckResult(plan, "unchanged", latest_version=latest)
        reasons = [
            f"against v{v}: {reason}"
            for v, text in texts.items()
            for reason in violations(text, plan.schema_text, plan.compatibility)
        ]
        if not reasons and not self._registry_says_compatible(plan, latest):
            reasons = [f"the registry refuses it under {plan.compatibility}"]
        if not reasons:
            return CheckResult(plan, "compatible", latest_version=latest)
        approval = self.approved.get((plan.subject, plan.fingerprint))
        status: Status = "approved-break" if approval else "incompatible"
        return CheckResult(plan, status, reasons, latest, approval)

    def _registry_says_compatible(self, plan: SubjectPlan, latest: int) -> bool:
        # The registry judges under the level configured on the subject; its
        # verdict only counts when that is the declared level (check never
        # changes the registry, register sets the level first).
        try:
            level = self.registry.raw.get_compatibility(plan.subject)
        except Exception:  # no level configured on the subject
            return True
        if level != plan.compatibility:
            return True
        verdict = self.registry.call(
            f"compatibility of {plan.subject}",
            self.registry.raw.test_compatibility,
            plan.subject,
            Schema(plan.schema_text, "AVRO"),
            latest,
        )
        return bool(verdict)

    def set_level(self, plan: SubjectPlan, level: str | None = None) -> None:
        self.registry.call(
            f"set compatibility of {plan.subject}",
            self.registry.raw.set_compatibility,
            plan.subject,
            level or plan.compatibility,
        )

    def register(self, plan: SubjectPlan) -> tuple[CheckResult, int | None]:
        """Check, then register if allowed. Raises on an unapproved incompatible change."""
        result = self.check(plan)
        if result.status == "incompatible":
            raise IncompatibleSchemaError(plan.subject, result.reasons)
        if result.status == "unchanged":
            return result, None
        if result.status == "approved-break":
            self.set_level(plan, "NONE")
            try:
                schema_id = self._register(plan)
            finally:
                self.set_level(plan)
            return result, schema_id
        self.set_level(plan)
        if result.status == "compatible" and not self._registry_says_compatible(
            plan, result.latest_version or 1
        ):
            reason = f"the registry refuses it under {plan.compatibility}"
            raise IncompatibleSchemaError(plan.subject, [reason])
        return result, self._register(plan)

    def _register(self, plan: SubjectPlan) -> int:
        return self.registry.schema_id(plan.subject, plan.schema_text, register=True)

    def diff(self, plan: SubjectPlan) -> list[str]:
        """Human-readable field changes from the registry's latest version to the local file."""
        versions = self.versions(plan.subject)
        if not versions:
            return ["(subject not registered yet: everything is new)"]
        old = json.loads(self.schema_text(plan.subject, versions[-1]))
        back, fwd = directions(plan.compatibility)
        lines = []
        for change in diff(old, json.loads(plan.schema_text)):
            breaks = [
                r
                for r, hit in (
                    ("BACKWARD", back and change.breaks_backward),
                    ("FORWARD", fwd and change.breaks_forward),
                )
                if hit
            ]
            mark = f"  [breaks {'+'.join(breaks)}]" if breaks else ""
            lines.append(f"{change.path}: {change.detail}{mark}")
        return lines

    def listing(self) -> list[dict[str, Any]]:
        """Every subject in the registry with its versions and compatibility level."""
        subjects = self.registry.call("list subjects", self.registry.raw.get_subjects)
        rows = []
        for subject in sorted(subjects):
            versions = self.versions(subject)
            try:
                level = self.registry.raw.get_compatibility(subject)
            except Exception:  # no per-subject level set: the registry default applies
                level = "(default)"
            rows.append({"subject": subject, "versions": versions, "compatibility": level})
        return rows
