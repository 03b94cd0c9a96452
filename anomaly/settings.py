"""Settings pieces both apps share: the Kafka connection, the topics, and how a refused
setting is named and shown (the environment variable, secrets masked). Each app reads its own
environment (WORKER_..., TRAINING_...); nothing here does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import NestedSecretsSettingsSource

NESTED_DELIMITER = "__"
# Where the pods mount the Kafka credentials Secret (deploy/base): a file per setting, named
# as the setting without the app's prefix (KAFKA__SASL_PASSWORD), so that one Secret serves
# both apps and no credential is an environment variable. A variable set wins over its file.
SECRETS_DIR = "/var/run/secrets/sensor-anomaly/kafka"


class AppSettings(BaseSettings):
    """The base of each app's settings (WorkerSettings, TrainingSettings, which name their
    `env_prefix`): frozen, unknown variables refused, nested parts by `NESTED_DELIMITER`; read
    from arguments, then the environment, then the files in `SECRETS_DIR` (absent: none),
    nested settings by their double-underscore names."""

    model_config = SettingsConfigDict(
        env_nested_delimiter=NESTED_DELIMITER, frozen=True, extra="forbid",
        secrets_dir=SECRETS_DIR,
    )  # fmt: skip

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:  # fmt: skip
        files = NestedSecretsSettingsSource(
            file_secret_settings, secrets_prefix="", secrets_nested_delimiter=NESTED_DELIMITER,
            secrets_dir_missing="ok",
        )  # fmt: skip
        return init_settings, env_settings, dotenv_settings, files


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Part):
    """How to reach the brokers."""

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "anomaly-worker"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    api_version: Annotated[str | None, Field(pattern=r"^\d+(\.\d+){1,2}$")] = Field(
        default=None, description="broker protocol version, e.g. 0.9 for old brokers"
    )
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    max_poll_interval_ms: int = Field(
        default=300_000,
        ge=1000,
        description="longest a consumer may go between polls before it leaves its group "
        "(brokers before 0.10.1: the session timeout)",
    )
    fetch_max_wait_ms: int = Field(
        default=50, ge=0, le=10_000, description="longest a fetch waits at the broker for data"
    )
    request_timeout_ms: int = Field(default=30_000, ge=1000)
    bootstrap_timeout_ms: int = Field(
        default=30_000,
        ge=1000,
        description="how long a client tries to reach the brokers when it is made (its first "
        "metadata) before giving up; a refused login ends it at once",
    )
    flush_timeout_s: float = Field(default=30.0, gt=0)
    outage_timeout_s: float = Field(
        default=300.0,
        ge=0,
        description="how long a batch's publish or commit is retried while the brokers do "
        "not answer before the worker exits (0: not retried)",
    )
    commit_metadata_max_bytes: int = Field(
        default=4096,
        ge=0,
        le=1_048_576,
        description="room for the alert state saved with each partition's offset "
        "(the broker's offset.metadata.max.bytes; 0 saves none)",
    )
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        default="read_uncommitted",
        description="read_committed: records of aborted transactions are never read "
        "(brokers from 0.11; Tansu answers no true last stable offset: keep the default)",
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password"
            )
        return self

    @property
    def api_version_tuple(self) -> tuple[int, ...] | None:
        return tuple(int(p) for p in self.api_version.split(".")) if self.api_version else None


TopicName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")]


class TopicSettings(_Part):
    """Where records come from and where alerts and dead letters go."""

    input: TopicName = "sensor-readings"
    alerts: TopicName = "sensor-alerts"
    dead_letters: TopicName = "sensor-readings.dlq"
    # maintenance windows and shelved alarms (compacted; anomaly/calendar.py)
    calendar: TopicName = "sensor-calendar"
    group: str = Field(default="anomaly-worker", min_length=1)


DEFAULT_MODEL = "default"  # the model of a store with one (anomaly/model/store.py)
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def check_model_name(name: str) -> str:
    """`name` if it can name a model (lower-case letters, digits, - and _; 63 at most)."""
    if not MODEL_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a model name: lower-case letters, digits, '-' and '_', starting "
            "with a letter or digit, at most 63"
        )
    return name


def check_store_location(value: object) -> str:
    """A model store's location: a directory, or `s3://bucket[/prefix]` (a bucket named as
    S3 names them)."""
    text = str(value).strip()
    if not text:
        raise ValueError("the model store needs a location: a directory or s3://bucket/prefix")
    if text.startswith("s3://"):
        bucket = text[len("s3://") :].partition("/")[0]
        if not S3_BUCKET.match(bucket):
            raise ValueError(
                f"{text!r}: {bucket!r} is not a bucket name (3-63 lower-case letters, digits, "
                "'.' and '-'); write s3://bucket/prefix"
            )
    elif "://" in text:
        raise ValueError(f"{text!r}: a model store is a directory or s3://bucket/prefix")
    return text


S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
StoreLocation = Annotated[str, BeforeValidator(check_store_location)]


TimeUnit = Literal["auto", "iso", "s", "ms", "us", "ns"]


class InputSettings(_Part):
    """How producers shape their records (anomaly/records.py): where the asset id, the time
    and the values are (dotted paths into the JSON, e.g. Telegraf's `tags.host`, `timestamp`,
    `fields`), the unit of numeric times, and whether a message is a whole record or one
    sensor's value (`shape: value`: `sensor_field` names the sensor, `value_field` its value;
    the worker assembles records from them, anomaly/assembly.py)."""

    shape: Literal["record", "value"] = "record"
    asset_field: str = Field(default="asset_id", min_length=1)
    time_field: str = Field(default="ts", min_length=1)
    values_field: str = Field(default="values", min_length=1)
    sensor_field: str = Field(default="sensor", min_length=1)
    value_field: str = Field(default="value", min_length=1)
    time_unit: TimeUnit = Field(
        default="auto",
        description="ISO 8601 strings, or epoch numbers in this unit (auto: told apart by "
        "magnitude: seconds below 1e11, milliseconds below 1e14, microseconds below 1e17, "
        "else nanoseconds)",
    )
    cadence_s: float | None = Field(
        default=None,
        gt=0,
        description="value shape: seconds between assembled records "
        "(default: the model's training cadence)",
    )

    @property
    def plain(self) -> bool:
        """Records of the documented contract: whole, with the default field names."""
        return (self.shape, self.asset_field, self.time_field, self.values_field) == (
            "record",
            "asset_id",
            "ts",
            "values",
        )


class RouteSettings(_Part):
    """How a record finds its model when a topic carries several asset types
    (anomaly/routing.py): the record field that names it, then asset-id patterns."""

    route_field: str | None = Field(
        default=None, min_length=1, description="record field naming the model, e.g. asset_type"
    )
    routes: dict[str, str] = Field(
        default_factory=dict,
        description='asset-id glob -> model, the first that matches, e.g. {"pump-*": "pumps"}',
    )

    @property
    def configured(self) -> bool:
        return self.route_field is not None or bool(self.routes)


SECRETS = frozenset({"ssl_password", "sasl_password"})
MASK = "**********"


def shown_input(location: tuple[str | int, ...], value: object) -> object:
    """A refused setting's value as an error message may show it: secrets masked, also
    inside the section a cross-field check received whole."""
    if any(part in SECRETS for part in location):
        return MASK
    if isinstance(value, dict):
        return {k: MASK if k in SECRETS else shown_input((), v) for k, v in value.items()}
    return value


def env_name(location: tuple[str | int, ...], prefix: str) -> str:
    """The environment variable behind a settings field, e.g. ('store', 'path')."""
    fields = [str(part) for part in location if isinstance(part, str)]
    return prefix + NESTED_DELIMITER.join(fields).upper()
