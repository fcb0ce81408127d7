"""A published set's channels get their topics and schema subjects first.

Channels are configuration (streams/activation/channels.py): publishing a set whose
channel is new creates the channel's action topic and registers the ``ActionCommand``
schema under its subject (``<topic>-value``, FULL_TRANSITIVE) through the same checked
workflow as ``scripts/schemas register`` (streams/schema_workflow.py), before the set is
written, so no worker ever sends a command to a topic or subject that is not there.
Idempotent: missing topics are created (existing ones are bootstrap's to check), and a
subject already holding the schema is left as it is.
"""

from __future__ import annotations

from streams.activation.definitions import DefinitionSet
from streams.schema_workflow import SchemaWorkflow, plans_for
from streams.settings import Settings
from streams.topics import action_topic_specs, admin_client, ensure_topics, partition_counts

LIST_TIMEOUT_S = 15.0


def provision_channels(settings: Settings, definitions: DefinitionSet) -> list[str]:
    """Create the channels' topics and register their subjects; a line per thing done.
    An incompatible subject stops it (IncompatibleSchemaError, with the reasons)."""
    specs = action_topic_specs(settings, sorted(
        {c.topic_name for c in definitions.all_channels.values()}))
    admin = admin_client(settings)
    existing = partition_counts(admin, [s.name for s in specs], LIST_TIMEOUT_S)
    # Only what is missing: an existing topic's shape is bootstrap's to check, and a
    # publisher's settings need not match the deployment's partition counts.
    missing = [s for s in specs if s.name not in existing]
    created = ensure_topics(admin, missing, settings.kafka_replication_factor)
    done = [f"created topic {name}" for name in created]
    flow = SchemaWorkflow(settings)
    for plan in plans_for(specs, flow.catalog):
        result, schema_id = flow.register(plan)
        if schema_id is not None:
            done.append(f"registered {plan.subject} ({result.status}) as schema id {schema_id}")
    return done
