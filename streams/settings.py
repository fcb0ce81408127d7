"""The one place configuration is read: ``Settings`` (env prefix ``ACTIVATION_``).

Every value has a default that works against the local stack started by
``scripts/stack up``; production overrides them through the environment or a
``.env`` file. ``load_settings`` turns pydantic's validation errors into a
:class:`~streams.errors.ConfigError` that names the variable and what to fix.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.delivery.policy import STANDARD_WEBHOOKS_SCHEDULE
from streams.errors import ConfigError

ENV_PREFIX = "ACTIVATION_"
EVERY_INTERFACE = ("0.0.0.0", "::")  # noqa: S104 - recognised, not bound to
REPO_ROOT = Path(__file__).resolve().parent.parent
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")

_DURATIONS = (
    "dedup_window",
    "ordering_window",
    "gateway_max_future_skew",
    "gateway_idempotency_ttl",
    "gateway_produce_timeout",
    "worker_session_timeout",
    "timer_interval",
    "delivery_breaker_cooldown",
    "delivery_commit_interval",
    "delivery_dedup_window",
    "console_session_idle",
    "console_stats_window",
)
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class Settings(BaseSettings):
    """Platform configuration; field ``foo_bar`` is read from ``ACTIVATION_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    # --- Kafka -----------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_replication_factor: int = Field(1, ge=1, le=10)
    topic_prefix: str = Field(
        "", pattern=r"^[A-Za-z0-9._\-]*$", description="Prepended to every topic name."
    )
    ingest_partitions: int = Field(
        6, ge=1, le=1024, description="Partitions of the ingestion topic (the unit of scale)."
    )
    action_partitions: int = Field(3, ge=1, le=1024)

    # --- Schema registry (Confluent-compatible API) ----------------------------
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7",
        description="Base URL of the Confluent-compatible API (Apicurio: .../apis/ccompat/v7).",
    )
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    schemas_dir: Path = REPO_ROOT / "avro_schemas"
    breaking_changes_file: Path = REPO_ROOT / "avro_schemas" / "breaking-changes.json"

    # --- Stream workers ----------------------------------------------------------
    app_id: str = Field("activation", pattern=r"^[A-Za-z0-9._\-]+$")
    data_dir: Path = REPO_ROOT / ".data" / "worker"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = Field(6066, ge=1, le=65535)
    worker_advertised_host: str | None = Field(
        None, description="Host name other workers reach this one's web port at (the "
        "profile API forwards requests to a partition's owner); default: worker_web_host.")
    dedup_window: timedelta = timedelta(days=7)
    ordering_window: timedelta = timedelta(seconds=5)
    standby_replicas: int = Field(0, ge=0, le=5)
    worker_restore_concurrency: int = Field(
        2, ge=1, le=64, description="Stores a worker rebuilds from their changelogs at "
        "once: faster (fetches overlap), and more memory (a prefetch and a batch each).")
    worker_fetch_max_bytes: int = Field(
        16 * 1024 * 1024, ge=64 * 1024, le=256 * 1024 * 1024,
        description="Most bytes a worker fetches per partition per request. Large fetches "
        "rebuild tables from their changelogs several times faster than Faust's 1 MiB.",
    )
    worker_fetch_max_wait: timedelta = Field(
        timedelta(milliseconds=50), ge=timedelta(milliseconds=1),
        le=timedelta(seconds=5),
        description="Longest a worker's fetch waits for data. aiokafka keeps one fetch "
        "in flight per broker, so a stage whose input another stage has just written "
        "waits for that fetch to return: short waits keep the stages flowing, at up to "
        "1 s / wait empty fetches a second per broker when idle (Faust's fixed 1.5 s).")
    worker_session_timeout: timedelta = Field(
        timedelta(seconds=10),
        description="Consumer-group session timeout: how soon a dead worker's partitions move.",
    )
    state_cache_bytes: int = Field(
        16 * 1024 * 1024, ge=0, le=4 * 1024 * 1024 * 1024,
        description="Committed values (and absent keys) each claimed store keeps in memory "
        "(tables/cache.py), per store: most of an event's reads then skip RocksDB. 0: off.",
    )
    worker_gc_threshold: int = Field(
        10_000, ge=100, le=1_000_000,
        description="Allocations between two young collections of Python's cyclic "
        "collector in a worker (Python's default: 700; an event's objects are freed by "
        "reference counting, and the collector cost about a tenth of a loaded worker's CPU).",
    )

    worker_take_records: int = Field(
        500, ge=1, le=10_000,
        description="Input records a stage takes from Faust at once (agents/owned.py): "
        "each partition's share is done in few transactions, the partitions concurrently.")
    worker_take_wait: timedelta = Field(
        timedelta(milliseconds=2),
        description="How long a stage waits for more input records before it works on "
        "those it has (each hop of an event pays it once; records arriving while a "
        "transaction commits are taken at once).")
    worker_transaction_bytes: int = Field(
        1_000_000, ge=1, le=64 * 1024 * 1024,
        description="Input bytes of one partition done in one transaction: many small "
        "records (the partitioned identity protocol's) share a commit; a full batch "
        "record of screening (up to 1 MB) still gets one of its own.")

    profile_timeline_limit: int = Field(200, ge=10, le=10_000)
    identity_partitions: int = Field(
        4, ge=1, le=256,
        description="Partitions (slots) of internal.identity: dedup and identity "
        "resolution spread over that many slots with the ticket protocol of "
        "docs/partitioned-identity.md, shared by the workers like the profile partitions "
        "(no stage on one partition by default). 1 keeps them on one partition, one "
        "owner: cheaper per event on one worker, but it caps the stage. Chosen when a "
        "deployment is created: fixed once the topic exists (scripts/identity migrate).",
    )
    screening: bool = Field(
        True, description="Whether the worker screens events.ingest onto the identity "
        "stage (on/off). Off drains the internal topics while producers keep writing to "
        "events.ingest: before an identity layout migration (docs/partitioned-identity.md, "
        "7.1); screening resumes from its committed offsets when turned on again.",
    )
    profile_partitions: int = Field(
        4, ge=1, le=256,
        description="Partitions of internal.profiles: profiles are spread over them by "
        "canonical profile id, and the workers share them (the profile stage's unit of "
        "scale). Fixed once the topic exists.",
    )

    # --- Activation ------------------------------------------------------------------
    definitions_dir: Path = Field(
        REPO_ROOT / "definitions", description="Audience, journey and governance YAML files."
    )
    definitions_require_approval: bool = Field(
        False, description="publications are proposals until a second key with the "
                           "definitions:approve scope approves them")
    activation_clock: Literal["system", "manual"] = Field(
        "system",
        description="manual: activation's clock moves only by tick commands (tests, demos).",
    )
    timer_interval: timedelta = Field(
        timedelta(seconds=1), description="How often due per-profile timers are checked."
    )
    timer_batch: int = Field(
        2000, ge=1, le=100_000, description="Most profile timers handled per check."
    )

    # --- Ingestion gateway ---------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8000, ge=1, le=65535)
    gateway_max_event_bytes: int = Field(32 * 1024, ge=1024)
    gateway_max_batch_bytes: int = Field(500 * 1024, ge=1024)
    gateway_max_batch_events: int = Field(500, ge=1, le=10_000)
    gateway_max_future_skew: timedelta = timedelta(minutes=5)
    gateway_unknown_events: Literal["accept", "reject"] = Field(
        "accept", description="accept: unknown event names travel with properties only."
    )
    gateway_rate_limit_per_second: float = Field(1000.0, gt=0)
    gateway_rate_limit_burst: int = Field(2000, ge=1)
    gateway_idempotency_ttl: timedelta = timedelta(hours=24)
    gateway_idempotency_max_entries: int = Field(
        200_000, ge=0, description="idempotency answers a gateway keeps (about 0.5 KB each: "
                                   "the default holds ~100 MB); the oldest go first")
    gateway_produce_timeout: timedelta = timedelta(seconds=10)
    api_key_pepper: SecretStr = Field(
        SecretStr("local-development-pepper"),
        description="Secret mixed into API key hashes; set a long random value in production.",
    )
    bootstrap_api_key: SecretStr | None = Field(
        None, description="If set, an admin key created at start (local runs and tests)."
    )

    # --- Delivery executor (streams/delivery/) -----------------------------------
    delivery_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Secrets destinations name (signing, auth), as a JSON object: "
                    '{"CRM_WEBHOOK_V1": "whsec_...", "CRM_TOKEN": "..."}.')
    delivery_url_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Destination id -> URL used instead of its definition's, for this "
                    "deployment (a container network, a staging receiver); JSON object.")
    delivery_retry_schedule: list[timedelta] = Field(
        default_factory=lambda: list(STANDARD_WEBHOOKS_SCHEDULE), min_length=0,
        description="Waits between attempts, a JSON list of seconds or ISO 8601 durations "
                    "(default: the Standard Webhooks schedule, ~3 days); after the last "
                    "the action has failed and is dead-lettered.")
    delivery_retry_jitter: float = Field(0.1, ge=0, lt=1)
    delivery_breaker_failures: int = Field(5, ge=1, description="failures in a row that "
                                           "open a destination's circuit")
    delivery_breaker_cooldown: timedelta = Field(timedelta(seconds=30))
    delivery_commit_interval: timedelta = Field(
        timedelta(milliseconds=200), description="how often outcomes and offsets commit")
    delivery_max_pending: int = Field(
        100_000, ge=100, description="jobs queued for the destinations (about 1 KB each) "
                                     "before the executor stops reading; waiting retries "
                                     "do not count")
    delivery_dedup_window: timedelta = Field(
        timedelta(days=7), description="how long a delivered action is remembered "
                                       "(the ledger topic's retention); keep it above the "
                                       "retry schedule's total")
    delivery_metrics_host: str = Field("127.0.0.1", description="the executor's probes "
                                       "and /metrics listen here (loopback: no key)")
    delivery_metrics_port: int = Field(6070, ge=0, le=65535)

    # --- Operator console (console/) ------------------------------------------------
    console_host: str = Field("127.0.0.1", description="where the console listens")
    console_port: int = Field(8088, ge=1, le=65535)
    console_worker_urls: list[str] = Field(
        default_factory=list,
        description="The workers' web URLs, a JSON list: the first answers the profile "
                    "API (any worker forwards to the owner), all are scraped for the "
                    "journey funnel; default: this host's worker_web_host and _port.")
    console_session_idle: timedelta = Field(
        timedelta(hours=8), description="a console session unused this long ends")
    console_stats_window: timedelta = Field(
        timedelta(days=7), description="how far back audience sizes, journey actions and "
                                       "delivery outcomes are read from their topics")
    console_live_backlog: int = Field(
        50, ge=0, le=1000, description="newest records per partition shown when the live "
                                       "view opens")
    console_live_rate: int = Field(
        50, ge=1, le=10_000, description="live records decoded and shown a second at most "
                                         "(the others are counted, not shown)")
    console_tls_certfile: Path | None = Field(
        None, description="PEM certificate: the console serves HTTPS (with _keyfile)")
    console_tls_keyfile: Path | None = None
    console_cookie_secure: Literal["auto", "always"] = Field(
        "auto", description="auto: the session cookie is Secure when the request came "
                            "over TLS; always: behind a proxy that terminates TLS")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        bad = [s for s in servers if not _HOST_PORT.match(s)]
        if not servers or bad:
            raise ValueError("expected host:port[,host:port...]")
        return ",".join(servers)

    @field_validator("schema_registry_url")
    @classmethod
    def _check_registry_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("expected an http(s):// URL")
        return value.rstrip("/")

    @field_validator(*_DURATIONS, mode="before")
    @classmethod
    def _seconds(cls, value: object) -> object:
        # Plain numbers in the environment mean seconds ("10"), as well as ISO 8601 ("PT10S").
        if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            return timedelta(seconds=float(value))
        return value

    @field_validator(*_DURATIONS)
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration (seconds or ISO 8601, e.g. P7D)")
        return value

    @model_validator(mode="after")
    def _check_delivery_window(self) -> Settings:
        horizon = sum(self.delivery_retry_schedule, timedelta(0))
        if self.delivery_dedup_window <= horizon:
            raise ValueError(
                f"delivery_dedup_window ({self.delivery_dedup_window}) must be longer than "
                f"the retry schedule ({horizon}): set {ENV_PREFIX}DELIVERY_DEDUP_WINDOW "
                "higher, or the schedule shorter")
        return self

    @model_validator(mode="after")
    def _check_sasl(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, val in (
                    ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                    ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                    ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
                )
                if val is None
            ]
            if missing:
                names = ", ".join(ENV_PREFIX + m for m in missing)
                raise ValueError(f"{self.kafka_security_protocol} needs {names}")
        return self

    @model_validator(mode="after")
    def _check_advertised_host(self) -> Settings:
        if self.worker_advertised_host is None and self.worker_web_host in EVERY_INTERFACE:
            raise ValueError(
                f"worker_web_host {self.worker_web_host} listens on every interface, so it "
                f"is no address for other workers: set {ENV_PREFIX}WORKER_ADVERTISED_HOST "
                "to this worker's host name")
        return self

    @model_validator(mode="after")
    def _check_console_tls(self) -> Settings:
        if (self.console_tls_certfile is None) != (self.console_tls_keyfile is None):
            raise ValueError(f"set both {ENV_PREFIX}CONSOLE_TLS_CERTFILE and "
                             f"{ENV_PREFIX}CONSOLE_TLS_KEYFILE, or neither")
        return self

    @property
    def console_workers(self) -> list[str]:
        """The workers' web URLs the console talks to (the first: the profile API)."""
        default = f"http://{self.advertised_host}:{self.worker_web_port}"
        return [u.rstrip("/") for u in self.console_worker_urls] or [default]

    @property
    def advertised_host(self) -> str:
        """Where other workers reach this one's web port."""
        return self.worker_advertised_host or self.worker_web_host

    def topic(self, name: str) -> str:
        """The full topic name for a logical name, with the configured prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def screen_group(self) -> str:
        """The screening stage's consumer group (the workers' Faust group is ``app_id``)."""
        return f"{self.app_id}-screen"

    @property
    def delivery_group(self) -> str:
        """The delivery executors' consumer group (streams/delivery/)."""
        return f"{self.app_id}-delivery"

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection properties."""
        conf = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_sasl_username
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        return conf

    def registry_client_config(self) -> dict[str, str]:
        """confluent-kafka ``SchemaRegistryClient`` configuration."""
        conf = {"url": self.schema_registry_url}
        if self.schema_registry_username and self.schema_registry_password:
            secret = self.schema_registry_password.get_secret_value()
            conf["basic.auth.user.info"] = f"{self.schema_registry_username}:{secret}"
        return conf


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(settings)"
        var = f"{ENV_PREFIX}{field.upper()}" if err["loc"] else "settings"
        given = err.get("input")
        secret = any(w in field for w in ("password", "pepper", "key"))
        shown = "" if secret or isinstance(given, dict) or given is None else f" (got {given!r})"
        lines.append(f"  {var}: {err['msg']}{shown}")
    return "invalid configuration, fix these environment variables:\n" + "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Read and validate settings, failing fast with a message that says what to fix."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
