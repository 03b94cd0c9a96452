"""Worker settings from the environment (WORKER_...), validated once at start.

Nested parts use a double underscore: WORKER_KAFKA__BOOTSTRAP_SERVERS,
WORKER_TOPICS__INPUT, WORKER_BATCH__SIZE, WORKER_STORE__PATH, WORKER_ALERTS__OPEN_AFTER...
No other module reads the environment.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from anomaly import settings
from anomaly.incidents import IncidentRules
from anomaly.rules import Rules
from anomaly.settings import (
    AppSettings,
    InputSettings,
    KafkaSettings,
    RouteSettings,
    StoreLocation,
    TopicSettings,
    check_model_name,
)

ENV_PREFIX = "WORKER_"


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorkerTopics(TopicSettings):
    """The topics (anomaly.settings.TopicSettings), and how long the worker waits at start
    for them to exist (the input topic, the alerts and dead-letter topics), then exits 10."""

    wait_s: float = Field(
        default=60.0, ge=0.0, description="how long to wait at start for a missing topic"
    )


class BatchSettings(_Part):
    """How records are batched: at most `size` records, waiting at most `max_wait_ms`."""

    size: int = Field(default=2000, ge=1, le=100_000)
    max_wait_ms: int = Field(default=200, ge=1, le=60_000)
    max_record_bytes: int = Field(default=65_536, ge=64)


class ModelsSettings(RouteSettings):
    """The models this worker serves (`names`; empty: every model the store holds, found
    again at each reload interval) and how records find theirs (anomaly/routing.py)."""

    names: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _valid(self) -> ModelsSettings:
        for name in (*self.names, *self.routes.values()):
            check_model_name(name)
        if len(self.names) > 1 and not self.configured:
            raise ValueError(
                "several models need a route: set route_field (the record field that names "
                "the model) or routes (asset-id patterns)"
            )
        return self


class StoreSettings(_Part):
    """The model store the training job publishes to (a directory, or s3://bucket/prefix:
    credentials and endpoint from the standard AWS variables), and how often to look for a
    new model."""

    path: StoreLocation = "model-store"
    reload_interval_s: float = Field(default=10.0, gt=0)


class AlertSettings(_Part):
    """Alert episodes. The rules (k, m, the hold, the drop rule, the onset rule) come with each
    model, as it was trained and gated (anomaly.rules.Rules in its manifest); a value set here
    overrides the model's for every model this worker serves, and is logged when a model is
    loaded."""

    open_after: int | None = Field(default=None, ge=1, description="override k")
    resolve_after: int | None = Field(default=None, ge=1, description="override m")
    resolve_after_s: float | None = Field(
        default=None, ge=0.0, description="override the hold of a quiet episode (seconds)"
    )
    end_drop: float | None = Field(default=None, ge=0.0, description="override the drop rule")
    onset_step: float | None = Field(
        default=None, ge=0.0, description="override the onset rule's step (0: off)"
    )
    score_rate: float | None = Field(
        default=None, gt=0.0, le=1.0, description="override the judged score's rate (1: off)"
    )
    top_features: int = Field(default=3, ge=1)
    max_assets: int = Field(default=100_000, ge=1)
    # The board's "asset in alarm" row: each feature's value against the model's expectation
    explain_assets: int = Field(
        default=20, ge=0, description="assets in alarm shown at once, actual against expected "
        "(0: none)",
    )  # fmt: skip
    explain_linger_s: float = Field(
        default=300.0, ge=0.0, description="how long an asset stays shown after its episode "
        "resolves, or after its last record"
    )  # fmt: skip

    def overrides(self) -> dict[str, int | float]:
        """The rules set here, by field name (empty: the model's rules apply as trained)."""
        names = (
            "open_after", "resolve_after", "resolve_after_s", "end_drop", "onset_step",
            "score_rate",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def serving(self, rules: Rules) -> Rules:
        """The rules a worker applies to a model trained with `rules`: these overrides on them."""
        return rules.model_copy(update=self.overrides())


class SensorSettings(_Part):
    """Sensors that drop out (worker/sensors.py): a missing value is filled from the asset's
    last one while that is at most `stale_after_s` old (record time); beyond that the record
    is incomplete (counted, not scored) and the feature silent (a sensor_silent event)."""

    stale_after_s: float = Field(
        default=60.0, ge=0.0, description="how old a last value may be to fill a gap (0: never)"
    )


class IncidentSettings(_Part):
    """Episodes of several assets that share a cause, paged as one incident
    (anomaly/incidents.py): their pages start within `span_s` of each other (record time), on
    assets of one area, served by one model, their departures alike (the cosine of their
    residuals at least `similarity`). `areas`: asset-id patterns (fnmatch, first match) to
    areas, as JSON: {"north-*": "north"}; an asset none matches is in the area ""."""

    enabled: bool = True
    span_s: float = Field(default=300.0, ge=0.0, description="seconds between members' pages")
    similarity: float = Field(
        default=0.8, ge=-1.0, le=1.0, description="least cosine of the members' residuals"
    )
    areas: dict[str, str] = Field(default_factory=dict)
    area_field: str | None = Field(
        default=None, min_length=1,
        description="a record's field (dotted path) naming its asset's area; it wins over areas",
    )  # fmt: skip

    def rules(self) -> IncidentRules:
        return IncidentRules(self.enabled, self.span_s, self.similarity, dict(self.areas))


class HttpSettings(_Part):
    """The metrics and health endpoint (port 0 picks a free port)."""

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=0, le=65535)
    liveness_timeout_s: float = Field(default=60.0, gt=0)


class WorkerSettings(AppSettings):
    """The worker's settings (one frozen object)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    kafka: KafkaSettings = KafkaSettings()
    topics: WorkerTopics = WorkerTopics()
    batch: BatchSettings = BatchSettings()
    store: StoreSettings = StoreSettings()
    models: ModelsSettings = ModelsSettings()
    input: InputSettings = InputSettings()
    alerts: AlertSettings = AlertSettings()
    sensors: SensorSettings = SensorSettings()
    incidents: IncidentSettings = IncidentSettings()
    http: HttpSettings = HttpSettings()
    score_threads: int = Field(
        default=1, ge=1, le=64, description="threads that score a batch (the batch is small)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    def masked(self) -> dict[str, Any]:
        """The effective settings for the log: secrets appear as '**********'."""
        return self.model_dump(mode="json")


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable behind a worker settings field, e.g. ('store', 'path')."""
    return settings.env_name(location, ENV_PREFIX)


__all__ = ["KafkaSettings", "TopicSettings", "WorkerSettings", "env_name"]
