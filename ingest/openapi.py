"""The OpenAPI 3.0 document served at ``/openapi.json``, describing what the handlers do."""

from __future__ import annotations

from typing import Any

from streams.records import PAYLOAD_TYPES
from streams.settings import Settings

_REF = "#/components/schemas/"
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {_JSON: {"schema": _ref("Error")}}}
    if retry_after:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                          "description": "Seconds to wait before retrying"}}
    return out


def _write_responses(ok: str, ok_schema: str) -> dict[str, Any]:
    return {
        "200": {"description": ok, "content": {_JSON: {"schema": _ref(ok_schema)}}},
        "400": _error("Invalid payload; `problems` lists every field path and what was expected"),
        "401": _error("Missing, unknown or revoked API key"),
        "403": _error("The API key lacks the events:write scope"),
        "413": _error("Body, event or batch above the configured limits"),
        "415": _error("Content-Type is not application/json"),
        "429": _error("Rate limit of this API key exceeded", retry_after=True),
        "503": {**_error("Kafka, the schema registry or the key store is unavailable; "
                         "nothing was acknowledged that is not persisted", retry_after=True),
                "content": {_JSON: {"schema": {"oneOf": [_ref("Error"), _ref(ok_schema)]}}}},
    }


def _post(summary: str, body: str, ok: str, ok_schema: str, extra: list[Any] | None = None,
          description: str = "") -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "description": description,
        "security": [{"bearer": []}, {"basic": []}],
        "parameters": extra or [],
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(body)}}},
        "responses": _write_responses(ok, ok_schema),
    }}


def _event_schema(settings: Settings) -> dict[str, Any]:
    scalar = {"nullable": True, "oneOf": [{"type": "string"}, {"type": "number"},
                                          {"type": "boolean"}, {"type": "object"},
                                          {"type": "array", "items": {"type": "string"}}],
              "description": "Scalars as they are; nested values travel as JSON strings"}
    ident = {"type": "string", "minLength": 1, "maxLength": 256}
    event: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["event", "timestamp"],
        "description": "One of customer_id, email, phone, anonymous_id is required. Typed "
                       "fields of the known events (" + ", ".join(PAYLOAD_TYPES) + ") are read "
                       "from properties and checked against their Avro types.",
        "properties": {
            "event": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,99}$"},
            "timestamp": {"type": "string", "format": "date-time",
                          "description": "ISO 8601 with a time zone; at most "
                          f"{int(settings.gateway_max_future_skew.total_seconds())}s ahead"},
            "event_id": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
            "customer_id": ident, "email": {**ident, "format": "email"},
            "phone": {**ident, "description": "E.164 (+4915112345678)"},
            "anonymous_id": ident,
            "properties": {"type": "object", "additionalProperties": scalar},
        },
    }
    return event


def _schemas(settings: Settings) -> dict[str, Any]:
    error = {"type": "object", "required": ["error", "message"], "properties": {
        "error": {"type": "string"}, "message": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object", "properties": {
            "path": {"type": "string"}, "message": {"type": "string"}}}}}}
    accepted = {"type": "object", "required": ["status", "event_id"], "properties": {
        "status": {"type": "string", "enum": ["accepted"]}, "event_id": {"type": "string"},
        "success": {"type": "boolean"}}}
    batch_result = {"type": "object", "required": ["accepted", "failed", "results"],
                    "properties": {"accepted": {"type": "integer"},
                                   "failed": {"type": "integer"},
                                   "success": {"type": "boolean"},
                                   "results": {"type": "array", "items": {"type": "object"}}}}
    segment_call = {"type": "object", "properties": {
        "type": {"type": "string", "enum": ["track", "identify"]},
        "event": {"type": "string"}, "userId": {"type": "string"},
        "anonymousId": {"type": "string"}, "messageId": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "originalTimestamp": {"type": "string", "format": "date-time"},
        "properties": {"type": "object"}, "traits": {"type": "object"},
        "context": {"type": "object"}}}
    max_events = settings.gateway_max_batch_events
    return {
        "Event": _event_schema(settings), "Error": error, "Accepted": accepted,
        "BatchResult": batch_result,
        "Batch": {"type": "object", "required": ["events"], "properties": {
            "events": {"type": "array", "minItems": 1, "maxItems": max_events,
                       "items": _ref("Event")}}},
        "SegmentCall": segment_call,
        "SegmentBatch": {"type": "object", "required": ["batch"], "properties": {
            "batch": {"type": "array", "minItems": 1, "maxItems": max_events,
                      "items": _ref("SegmentCall")}}},
    }


def _probe_paths() -> dict[str, Any]:
    """The unauthenticated liveness and readiness probes."""
    health = {"get": {"summary": "Liveness", "security": [],
                      "responses": {"200": {"description": "The process answers"}}}}
    ready = {"get": {"summary": "Readiness: broker, registry and key store reachable",
                     "security": [], "responses": {
                         "200": {"description": "Ready"},
                         "503": {"description": "Not ready",
                                 "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}}}
    return {"/healthz": health, "/readyz": ready}


def _admin_paths() -> dict[str, Any]:
    """The authenticated GET endpoints: metrics and this document."""
    authed_get = {"responses": {"200": {"description": "OK"},
                                "401": _error("Missing or unknown API key"),
                                "403": _error("Missing scope"),
                                "503": _error("Key store loading", retry_after=True)}}
    return {
        "/metrics": {"get": {"summary": "Prometheus metrics (admin scope)", **authed_get}},
        "/openapi.json": {"get": {"summary": "This document", **authed_get}},
    }


def _ingest_paths() -> dict[str, Any]:
    """The ingestion endpoints: native and Segment-compatible."""
    idem = {"name": "Idempotency-Key", "in": "header", "required": False,
            "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"},
            "description": "Resending within the idempotency TTL returns the first answer"}
    batch_doc = ("Validation is all-or-nothing (400, nothing written); writing is per event. "
                 "If any event could not be persisted the answer is 503 with per-event results; "
                 "resending the same batch is safe (events are deduplicated by event_id).")
    return {
        "/v1/events": _post("Send one event", "Event", "Persisted in Kafka", "Accepted",
                            [idem]),
        "/v1/events/batch": _post("Send a batch of events", "Batch",
                                  "Every event persisted", "BatchResult",
                                  description=batch_doc),
        "/v1/track": _post("Segment track", "SegmentCall", "Persisted", "Accepted"),
        "/v1/identify": _post("Segment identify", "SegmentCall", "Persisted", "Accepted"),
        "/v1/batch": _post("Segment batch", "SegmentBatch", "Every call persisted",
                           "BatchResult", description=batch_doc),
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Activation ingestion gateway", "version": "1.0.0"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
            "schemas": _schemas(settings),
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {**_probe_paths(), **_admin_paths(), **_ingest_paths()},
    }
