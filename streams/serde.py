"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

confluent-kafka's ``SchemaRegistryClient`` talks to the registry; fastavro
encodes and decodes. We do not use confluent's ``AvroSerializer`` on the hot
path: writing with a pre-parsed schema and a cached id avoids a per-record
lookup, and decoding with the *writer's* schema (looked up once per id) means a
consumer built before a new event type was added still reads it, as a generic
event, without redeployment.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from io import BytesIO
from threading import Lock
from typing import Any

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.errors import DecodeError, EncodeError, RegistryError
from streams.schemas import SchemaCatalog

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
_ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, IndexError)
_DECODE_ERRORS = (ValueError, TypeError, EOFError, IndexError, KeyError, UnicodeDecodeError)

Record = dict[str, Any]


class RegistryClient:
    """The registry calls we need, with errors wrapped and answers cached."""

    def __init__(self, config: dict[str, str]) -> None:
        # Few retries: callers (the gateway's readiness, the CLI) want a prompt answer.
        self._client = SchemaRegistryClient({"max.retries": 2, "retries.wait.ms": 200, **config})
        self._writers: dict[int, Any] = {}
        self._lock = Lock()

    @property
    def raw(self) -> SchemaRegistryClient:
        return self._client

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one client call, turning its errors into :class:`RegistryError`."""
        try:
            return fn(*args, **kwargs)
        except SchemaRegistryError as exc:
            raise RegistryError(f"registry refused {what}: {exc.error_message}") from exc
        except Exception as exc:  # transport errors come from a vendored HTTP client
            raise RegistryError(f"registry unreachable during {what}: {exc}") from exc

    def schema_id(self, subject: str, schema_text: str, register: bool) -> int:
        """Id of this schema under the subject; registers it only if asked."""
        schema = Schema(schema_text, "AVRO")
        if register:
            return int(
                self.call(f"register {subject}", self._client.register_schema, subject, schema)
            )
        try:
            found = self._client.lookup_schema(subject, schema)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise RegistryError(
                    f"schema for {subject} is not registered; run 'scripts/schemas register'"
                ) from exc
            raise RegistryError(
                f"registry refused lookup of {subject}: {exc.error_message}"
            ) from exc
        except Exception as exc:
            raise RegistryError(f"registry unreachable during lookup of {subject}: {exc}") from exc
        if found.schema_id is None:
            raise RegistryError(f"registry returned no schema id for {subject}")
        return int(found.schema_id)

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed schema a record was written with (cached: ids are immutable)."""
        parsed = self._writers.get(schema_id)
        if parsed is not None:
            return parsed
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise DecodeError(f"unknown schema id {schema_id}") from exc
            raise RegistryError(f"registry refused schema id {schema_id}: {exc}") from exc
        except Exception as exc:
            raise RegistryError(f"registry unreachable fetching id {schema_id}: {exc}") from exc
        if not schema.schema_str:
            raise DecodeError(f"schema id {schema_id} has no schema text")
        parsed = fastavro.parse_schema(json.loads(schema.schema_str))
        with self._lock:
            self._writers[schema_id] = parsed
        return parsed


class Encoder:
    """Writes records of one Avro type under one subject."""

    def __init__(self, schema_id: int, parsed_schema: Any, subject: str) -> None:
        self.schema_id = schema_id
        self.subject = subject
        self._schema = parsed_schema
        self._header = _HEADER.pack(MAGIC_BYTE, schema_id)

    def __call__(self, record: Record) -> bytes:
        buf = BytesIO()
        buf.write(self._header)
        try:
            fastavro.schemaless_writer(buf, self._schema, record)
        except _ENCODE_ERRORS as exc:
            raise EncodeError(f"record does not fit {self.subject}: {exc}") from exc
        return buf.getvalue()


class AvroSerde:
    """Encoders per subject and one decoder for any Confluent-framed Avro record."""

    def __init__(self, registry: RegistryClient, catalog: SchemaCatalog) -> None:
        self.registry = registry
        self.catalog = catalog

    def encoder(self, subject: str, type_name: str, register: bool = False) -> Encoder:
        """An encoder for ``type_name`` records on ``subject``.

        Production code passes ``register=False``: schemas are registered by the
        schema workflow (``scripts/schemas register``) after a compatibility check,
        never implicitly by a producer.
        """
        text = self.catalog.schema_str(type_name)
        schema_id = self.registry.schema_id(subject, text, register)
        return Encoder(schema_id, self.catalog.parsed(type_name), subject)

    def decode(self, data: bytes | None) -> tuple[int, Record]:
        """(schema id, record) of a framed value; :class:`DecodeError` if it is not one."""
        if data is None or len(data) < _HEADER.size:
            raise DecodeError("value is empty or shorter than the 5-byte wire-format header")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise DecodeError(f"magic byte is {magic}, expected {MAGIC_BYTE}: not Confluent Avro")
        writer = self.registry.writer_schema(schema_id)
        body = BytesIO(data)
        body.seek(_HEADER.size)
        try:
            record = fastavro.schemaless_reader(body, writer, None)
        except _DECODE_ERRORS as exc:
            raise DecodeError(f"corrupt Avro body for schema id {schema_id}: {exc}") from exc
        if body.tell() != len(data):
            raise DecodeError(f"{len(data) - body.tell()} trailing bytes after the Avro body")
        if not isinstance(record, dict):
            raise DecodeError(f"schema id {schema_id} is not a record schema")
        return schema_id, record
