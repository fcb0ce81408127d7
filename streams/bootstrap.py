"""Make a cluster ready for the platform: declared topics exist, schemas are registered.

The action topics are those of the channels in ``ACTIVATION_DEFINITIONS_DIR``
(``channels/``, or the built-in four); ``scripts/definitions publish`` provisions the
channels of what it publishes the same way (streams/activation/provision.py).

Idempotent; run at every start (``make run`` does). Schemas go through the same
checked workflow as ``scripts/schemas register``: an incompatible change stops
the start with the reasons instead of being forced.
"""

from __future__ import annotations

import sys

from streams.activation.channels import channel_topics
from streams.errors import ActivationError, IncompatibleSchemaError
from streams.schema_workflow import SchemaWorkflow
from streams.settings import Settings, load_settings
from streams.topics import admin_client, declared_topics, ensure_topics


def bootstrap(settings: Settings) -> list[str]:
    """Create missing topics and register schemas; returns a line per thing done."""
    done = []
    # Action topics for the channels of the definitions directory, as publishing makes.
    topics = declared_topics(settings, channel_topics(settings.definitions_dir))
    created = ensure_topics(admin_client(settings), topics, settings.kafka_replication_factor)
    done += [f"created topic {name}" for name in created]
    flow = SchemaWorkflow(settings)
    for plan in flow.plans():
        result, schema_id = flow.register(plan)
        if schema_id is not None:
            done.append(f"registered {plan.subject} ({result.status}) as schema id {schema_id}")
    return done


def main() -> int:
    try:
        settings = load_settings()
        for line in bootstrap(settings):
            print(line)
    except IncompatibleSchemaError as exc:
        print(f"bootstrap: {exc}\nsee README, 'Evolving a schema'", file=sys.stderr)
        return 1
    except ActivationError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        return 2
    print("platform topics and schemas are ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
