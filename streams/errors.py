"""Every error this platform raises on purpose, under one root.

Callers catch :class:`ActivationError` to handle anything of ours, or a leaf to
handle one situation. Third-party errors are wrapped (``raise ... from exc``) so
the original cause stays on ``__cause__`` while callers only need our names::

    ActivationError
    ├── ConfigError                  bad or missing settings; says what to fix
    ├── StartupError                 the worker cannot start as deployed (a stage's module
    │                                failed to import)
    ├── SchemaError                  problems with .avsc files or the registry's view of them
    │   ├── SchemaParseError         a file is not valid Avro, or names an unknown type
    │   └── IncompatibleSchemaError  a change breaks the subject's compatibility rule
    ├── ContractViolation            a decoded event breaks the envelope contract (dead-lettered;
    │                                defined in streams/core/contract.py)
    ├── DefinitionError              an audience/journey/governance file is invalid
    │                                (streams/activation/definitions.py)
    ├── IngestError                  gateway answers (ingest/errors.py): InvalidEvent,
    │                                PayloadTooLarge, AuthError > ForbiddenScope,
    │                                RateLimited, Unavailable
    ├── MigrationError               the identity state cannot move to another layout as it is
    │   └── NotDrainedError          (streams/core/identity_migrate.py); still in flight: drain
    ├── RegistryError                the schema registry is unreachable or answered unexpectedly
    ├── SerializationError           bytes <-> records in the Confluent wire format
    │   ├── EncodeError              a record does not fit its schema
    │   └── DecodeError              not our wire format, unknown schema id, corrupt body
    └── BrokerError                  Kafka is unreachable or refused an admin request
        ├── TopicConfigError         an existing topic differs from its declaration
        └── StateFencedError         another worker claimed a stage's state (tables/state.py)
"""

from __future__ import annotations


class ActivationError(Exception):
    """Root of every error raised on purpose by this platform."""


class ConfigError(ActivationError):
    """Settings are missing or invalid; the message names each variable to fix."""


class StartupError(ActivationError):
    """The worker cannot start as deployed; the message names the module and the cause."""


class SchemaError(ActivationError):
    """An Avro schema file or subject is not in a usable state."""


class SchemaParseError(SchemaError):
    """An ``.avsc`` file cannot be parsed or references an unknown named type."""


class IncompatibleSchemaError(SchemaError):
    """A schema change breaks the compatibility level of its subject."""

    def __init__(self, subject: str, reasons: list[str]) -> None:
        self.subject = subject
        self.reasons = reasons
        detail = "; ".join(reasons) if reasons else "the registry refused it"
        super().__init__(f"{subject}: incompatible change: {detail}")


class RegistryError(ActivationError):
    """The schema registry is unreachable or answered something unexpected."""


class SerializationError(ActivationError):
    """A record could not be converted to or from the Confluent wire format."""


class EncodeError(SerializationError):
    """A record does not conform to the schema it is written with."""


class DecodeError(SerializationError):
    """Bytes are not a valid Confluent-framed Avro record we can read."""


class BrokerError(ActivationError):
    """Kafka is unreachable or refused an administrative request."""


class TopicConfigError(BrokerError):
    """An existing topic's partitions or policy differ from its declaration."""


class StateFencedError(BrokerError):
    """Another worker claimed a stage's state: this one's transaction was fenced."""
