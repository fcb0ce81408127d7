"""Every topic the platform owns, declared once, and their idempotent creation.

Layout (see README, "Topics and ordering"): one ingestion topic whose value is
the ``EventEnvelope`` (a union of all typed payloads), keyed by the customer's
partition key, so that all of one customer's events, of every type, share a
partition and keep their order. A new event type is a new union branch: a
BACKWARD-compatible schema change, not a new topic every consumer must learn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.errors import BrokerError, TopicConfigError
from streams.settings import Settings

Compatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
]
DAY_MS = 24 * 3600 * 1000

# Logical topic names (the configured prefix is added by Settings.topic).
INGEST = "events.ingest"
DEAD_LETTER = "events.deadletter"
API_KEYS = "ops.api_keys"
# Published activation definitions (audiences, journeys, governance): compacted,
# one key, read fully by every worker so all agree on the version in force.
DEFINITIONS = "ops.definitions"
# Audience entries and exits, for downstream consumers (and the demo).
AUDIENCE_CHANGES = "activation.audience_changes"
# Valid events on their way to the identity stage, in batch records
# (streams/core/batch.py). One partition: the identity graph needs one owner
# (agents/identity.py); it is the light stage (dedup and graph lookups).
IDENTITY_INPUT = "internal.identity"
# Resolved events, merges and per-profile commands, partitioned by canonical profile id
# (streams/core/routing.py): the profile stage (agents/profiles.py), shared by workers.
PROFILES = "internal.profiles"
STAGE_MAX_BYTES = 4 * 1024 * 1024
# The delivery executor (streams/delivery/): outcomes per attempt, commands that gave up,
# its ledger (streams/delivery/ledger.py) and disabled destinations.
DELIVERY_OUTCOMES = "delivery.outcomes"
DELIVERY_DEAD_LETTER = "delivery.deadletter"
DELIVERY_LEDGER = "delivery.ledger"
DELIVERY_CONTROL = "delivery.control"
# Right to be forgotten (streams/core/erasure.py): identifier keys erased in
# suppress_with_delete mode (followed by screening), and the erasures' audit log.
SUPPRESSIONS = "ops.suppressions"
ERASURES = "ops.erasures"
# The built-in channels; a deployment's channels are configuration (definitions/channels/).
ACTION_CHANNELS = ("email", "paid_media", "webhook", "crm")

ENVELOPE = "io.activation.events.EventEnvelope"
ACTION_COMMAND = "io.activation.actions.ActionCommand"
DEAD_LETTER_RECORD = "io.activation.ops.DeadLetter"
AUDIENCE_CHANGE_RECORD = "io.activation.actions.AudienceMembershipChanged"
DELIVERY_OUTCOME_RECORD = "io.activation.delivery.DeliveryOutcome"


@dataclass(frozen=True)
class TopicSpec:
    """A topic's shape and the Avro type and compatibility rule of its values."""

    name: str
    partitions: int
    value_type: str | None
    compatibility: Compatibility = "BACKWARD"
    config: dict[str, str] = field(default_factory=dict)
    # Keys map to partitions by a count the code relies on (the profile stage's digest
    # routing): more partitions than declared is as wrong as fewer.
    exact_partitions: bool = False

    @property
    def value_subject(self) -> str:
        """TopicNameStrategy subject of the value schema."""
        return f"{self.name}-value"


def action_topic(channel: str) -> str:
    return f"actions.{channel}"


def action_topic_specs(settings: Settings, names: Iterable[str] | None = None
                       ) -> list[TopicSpec]:
    """The action topics ``names`` (logical; default: the built-in channels')."""
    if names is None:
        names = [action_topic(channel) for channel in ACTION_CHANNELS]
    # Action topics are read by services we do not deploy: they may lag behind
    # us (old readers, new data) or replay history (new readers, old data), so
    # every version must stay readable both ways: FULL_TRANSITIVE.
    return [TopicSpec(settings.topic(name), settings.action_partitions, ACTION_COMMAND,
                      "FULL_TRANSITIVE",
                      {"retention.ms": str(7 * DAY_MS), "cleanup.policy": "delete"})
            for name in names]


def declared_topics(settings: Settings, action_topics: Iterable[str] | None = None
                    ) -> list[TopicSpec]:
    """The topics this deployment needs, with prefix and partition counts applied.

    ``action_topics``: the channels' topics (logical names): bootstrap and the schema
    workflow pass those the definitions declare (streams/activation/channels.py); by
    default the built-in channels'."""
    return [*ingestion_topics(settings), *action_topic_specs(settings, action_topics),
            audience_changes_topic(settings), *ops_topics(settings),
            *internal_topics(settings), *erasure_topics(settings), *delivery_topics(settings)]


def ingestion_topics(settings: Settings) -> list[TopicSpec]:
    """The ingestion topic and its dead letters."""
    ingest = TopicSpec(
        settings.topic(INGEST),
        settings.ingest_partitions,
        ENVELOPE,
        "BACKWARD",
        {"retention.ms": str(14 * DAY_MS), "cleanup.policy": "delete"},
    )
    dead_letter = TopicSpec(
        settings.topic(DEAD_LETTER),
        1,
        DEAD_LETTER_RECORD,
        "BACKWARD",
        {"retention.ms": str(30 * DAY_MS), "cleanup.policy": "delete"},
    )
    return [ingest, dead_letter]


def audience_changes_topic(settings: Settings) -> TopicSpec:
    """Audience entries and exits."""
    # Read by services we do not deploy, like the action topics: FULL_TRANSITIVE.
    return TopicSpec(
        settings.topic(AUDIENCE_CHANGES),
        settings.action_partitions,
        AUDIENCE_CHANGE_RECORD,
        "FULL_TRANSITIVE",
        {"retention.ms": str(7 * DAY_MS), "cleanup.policy": "delete"},
    )


def ops_topics(settings: Settings) -> list[TopicSpec]:
    """The compacted API keys and published definitions."""
    # API keys (hashed) shared by every gateway instance: compacted, read fully
    # at start and tailed, so a revocation reaches all instances within seconds.
    api_keys = TopicSpec(
        settings.topic(API_KEYS),
        1,
        None,
        "NONE",
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
    )
    # Every publication is its own key (v<sequence>), so compaction never removes
    # the history of who published what, when; the highest sequence is in force.
    definitions = TopicSpec(
        settings.topic(DEFINITIONS),
        1,
        None,
        "NONE",
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
    )
    return [api_keys, definitions]


def internal_topics(settings: Settings) -> list[TopicSpec]:
    """The stage topics between ingestion and activation: identity, then profiles."""
    identity_input = TopicSpec(
        settings.topic(IDENTITY_INPUT),
        settings.identity_partitions,
        None,
        "NONE",
        # A batch is at most ~1 MB (streams/core/batch.py) but one oversized event
        # travels alone with its framing: room for the largest ingestion record.
        {"retention.ms": str(14 * DAY_MS), "cleanup.policy": "delete",
         "max.message.bytes": str(STAGE_MAX_BYTES)},
        exact_partitions=True,  # identifiers are placed by slot (key_slot, profile_slot)
    )
    profiles = TopicSpec(
        settings.topic(PROFILES),
        settings.profile_partitions,
        None,
        "NONE",
        {"retention.ms": str(14 * DAY_MS), "cleanup.policy": "delete",
         "max.message.bytes": str(STAGE_MAX_BYTES)},
        exact_partitions=True,
    )
    return [identity_input, profiles]


def erasure_topics(settings: Settings) -> list[TopicSpec]:
    """The right to be forgotten's suppressed keys and audit log."""
    suppressions = TopicSpec(
        settings.topic(SUPPRESSIONS), 1, None, "NONE",
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
    erasures = TopicSpec(  # the audit log: no personal data, kept for good
        settings.topic(ERASURES), 1, None, "NONE",
        {"cleanup.policy": "delete", "retention.ms": "-1"})
    return [suppressions, erasures]


def delivery_topics(settings: Settings) -> list[TopicSpec]:
    """The delivery executor's topics (streams/delivery/)."""
    outcomes = TopicSpec(  # read by services we do not deploy: FULL_TRANSITIVE
        settings.topic(DELIVERY_OUTCOMES), settings.action_partitions, DELIVERY_OUTCOME_RECORD,
        "FULL_TRANSITIVE", {"retention.ms": str(7 * DAY_MS), "cleanup.policy": "delete"})
    dead = TopicSpec(
        settings.topic(DELIVERY_DEAD_LETTER), 1, DEAD_LETTER_RECORD, "BACKWARD",
        {"retention.ms": str(30 * DAY_MS), "cleanup.policy": "delete"})
    # Partition p holds the entries of every action topic's partition p: one per
    # action-topic partition, exactly.
    window_ms = str(int(settings.delivery_dedup_window.total_seconds() * 1000))
    ledger = TopicSpec(
        settings.topic(DELIVERY_LEDGER), settings.action_partitions, None, "NONE",
        {"cleanup.policy": "compact,delete", "retention.ms": window_ms,
         "min.compaction.lag.ms": "0"}, exact_partitions=True)
    control = TopicSpec(
        settings.topic(DELIVERY_CONTROL), 1, None, "NONE",
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
    return [outcomes, dead, ledger, control]


def admin_client(settings: Settings) -> AdminClient:
    # Connection failures surface as exceptions with a message; librdkafka's
    # own per-retry log lines would only bury that message.
    return AdminClient({**settings.kafka_client_config(), "log_level": 2})


def ensure_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], replication_factor: int, timeout: float = 15.0
) -> list[str]:
    """Create missing topics; verify existing ones. Returns the names created."""
    specs = list(specs)
    existing = partition_counts(admin, [s.name for s in specs], timeout)
    missing = [s for s in specs if s.name not in existing]
    for spec in specs:
        if spec.name in existing:
            _check_partitions(spec, existing[spec.name])
    if not missing:
        return []
    return _create_topics(admin, missing, replication_factor, timeout)


def partition_counts(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    """The partition count of each of ``names`` that exists. DescribeTopics asks the
    broker for these topics only, and never creates one: listing every topic, as this
    did, cost 40 ms of CPU per call on a cluster of 8,700 topics, and each store's
    claim calls this for its changelog."""
    if not names:
        return {}
    try:
        futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout)
        counts = {}
        for name, future in futures.items():
            try:
                counts[name] = len(future.result().partitions)
            except KafkaException as exc:
                if _error_code(exc) != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise
        return counts
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka to describe topics: {exc}") from exc


def _error_code(exc: KafkaException) -> int | None:
    error = exc.args[0] if exc.args else None
    return error.code() if isinstance(error, KafkaError) else None


def _check_partitions(spec: TopicSpec, have: int) -> None:
    """Refuse an existing topic whose partition count breaks the declared key placement."""
    if have < spec.partitions:
        raise TopicConfigError(
            f"topic {spec.name} has {have} partitions, declared {spec.partitions}; "
            "raising partitions moves keys between partitions, do it deliberately"
        )
    if spec.exact_partitions and have != spec.partitions:
        raise TopicConfigError(
            f"topic {spec.name} has {have} partitions but {spec.partitions} are "
            "configured (ACTIVATION_PROFILE_PARTITIONS for internal.profiles, "
            "ACTIVATION_IDENTITY_PARTITIONS for internal.identity): state is "
            "placed by that count, so set it back to the topic's, or migrate "
            "deliberately (internal.identity: scripts/identity migrate --to N, "
            "docs/partitioned-identity.md, 7.1)"
        )


def _create_topics(admin: AdminClient, missing: list[TopicSpec], replication_factor: int,
                   timeout: float) -> list[str]:
    """Create ``missing``; one another instance created meanwhile counts as not created."""
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=replication_factor,
            config=s.config,
        )
        for s in missing
    ]
    created = []
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BrokerError(f"cannot create topic {name}: {exc}") from exc
    return created
