"""Training settings: environment variables (TRAINING_...) overridden by command-line flags.

Nested parts use a double underscore: TRAINING_DATA__PATH, TRAINING_MODEL__WINDOW,
TRAINING_KAFKA__BOOTSTRAP_SERVERS, TRAINING_GATE__FPR_FACTOR... Validated once, at start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from anomaly import settings
from anomaly.model.architecture import DEFAULT_KERNEL, Kind
from anomaly.model.calibration import MethodChoice
from anomaly.model.drift import DRIFT_RATE
from anomaly.rules import Rules
from anomaly.settings import (
    DEFAULT_MODEL,
    AppSettings,
    InputSettings,
    KafkaSettings,
    RouteSettings,
    StoreLocation,
    TopicName,
    TopicSettings,
    check_model_name,
)


class TrainingTopics(TopicSettings):
    """The worker's topics, and where engineers' verdicts on episodes go
    (training/verdicts.py)."""

    feedback: TopicName = "sensor-alerts.verdicts"


# The client id the brokers see (their logs, quotas, ACL audit); the workers' is their own.
CLIENT_ID = "anomaly-training"
ENV_PREFIX = "TRAINING_"

Names = Annotated[tuple[str, ...], NoDecode]


def _split_names(value: object) -> object:
    """Comma-separated names from the environment or a flag; lists pass through."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class DataSettings(BaseModel):
    """Where the training rows come from and how to read them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Literal["file", "kafka"] = "file"
    path: Path | None = Field(default=None, description="CSV or JSON Lines file to train on")
    format: Literal["auto", "csv", "jsonl"] = "auto"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    timestamp_column: str | None = None
    asset_column: str | None = None
    features: Names = ()
    exclude: Names = ()
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    label_column: str | None = Field(default=None, description="only for validation files")
    since: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))
    start: datetime | None = None
    end: datetime | None = None
    max_rows: int = Field(default=1_000_000, ge=1)

    _split = field_validator("features", "exclude", mode="before")(_split_names)

    @field_validator("since", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """Accept 90s, 30m, 24h, 7d as well as ISO 8601 durations and seconds."""
        if isinstance(value, str) and value[:-1].replace(".", "", 1).isdigit():
            unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(value[-1])
            if unit:
                return timedelta(seconds=float(value[:-1]) * unit)
        return value

    def time_range(self, now: datetime) -> tuple[datetime, datetime | None]:
        """The range of record times to read from Kafka: [start, end); end None means now."""
        start = self.start or (self.end or now) - self.since
        return start, self.end


class ModelSettings(BaseModel):
    """The autoencoder's shape and how it is fitted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind = "dense"
    window: int = Field(default=10, ge=1)
    hidden: Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode] = (32, 16)
    latent: int | None = Field(default=None, ge=1)
    kernel: int = Field(default=DEFAULT_KERNEL, ge=1, description="conv: kernel length")
    epochs: int = Field(default=200, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    patience: int = Field(default=15, ge=1)
    seed: int = 0

    @field_validator("hidden", mode="before")
    @classmethod
    def _split_sizes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value


class CalibrationSettings(BaseModel):
    """The threshold's target false-positive rate on held-out clean data, its method, and a
    margin above the calibrated value for data that drifts beyond the held-out part; which
    assets get a threshold of their own (anomaly.model.calibration.asset_thresholds); the
    residual drift's rate (its threshold: the same target rate and method, no margin)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    method: MethodChoice = "auto"
    margin: float = Field(
        default=1.0, ge=1.0, description="the calibrated threshold is multiplied by this"
    )
    asset_min_windows: int = Field(
        default=1000,
        ge=1,
        description="held-out windows an asset needs for a threshold of its own",
    )
    asset_limit: int = Field(
        default=1000, ge=0, description="assets with a threshold of their own, at most (0: none)"
    )
    drift_rate: float = Field(
        default=DRIFT_RATE,
        ge=0.0,
        le=1.0,
        description="the residual drift's average rate (anomaly/model/drift.py; 0: no drift)",
    )


class CleanSettings(BaseModel):
    """Data hygiene: drop records the model in service flags (by its own alert rules), and
    recorded alert episodes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True


class StateSettings(BaseModel):
    """When an asset is not running (anomaly/states.py): its records are neither scored nor
    learnt, nor the start-up after a stop; recorded in the manifest for the workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stopped_when: str | None = Field(
        default=None, min_length=1,
        description="e.g. 'speed < 100': comparisons of features with numbers, and / or",
    )  # fmt: skip
    grace_s: float | None = Field(
        default=None, ge=0.0,
        description="seconds after a restart not scored (None: measured from the data's restarts)",
    )  # fmt: skip


class InstrumentSettings(BaseModel):
    """Broken sensors told apart from process faults (anomaly/instruments.py): what training
    shows of each sensor is recorded in the manifest for the workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    physical: dict[str, tuple[float | None, float | None]] = Field(
        default_factory=dict,
        description='each sensor\'s plausible range, e.g. {"pressure": [0, 16]} (null: open)',
    )


class GateSettings(BaseModel):
    """When a candidate may replace the model in service."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: float = Field(
        default=0.5, ge=0.0, lt=1.0,
        description="share of the held-out part kept for the gate (0: gate on calibration data)",
    )  # fmt: skip
    fpr_factor: float = Field(default=2.0, ge=1.0)
    error_margin: float = Field(default=0.1, ge=0.0)
    validation_path: Path | None = None
    validation_label: str = "anomaly"
    max_episodes_per_asset_week: float | None = Field(
        default=None, gt=0.0,
        description="refuse a candidate that opens more episodes per asset per week on the "
        "held-out records (None: no budget)",
    )  # fmt: skip


class TrainingInputSettings(InputSettings):
    """How the input topic's records are shaped (anomaly.settings.InputSettings). One value
    per message is assembled into records as the workers do (anomaly/assembly.py), on a grid
    of `cadence_s` seconds, which that shape needs: only complete records are trained on."""

    stale_after_s: float = Field(
        default=60.0, ge=0.0,
        description="value shape: how old a sensor's last value may be to stand in a record",
    )  # fmt: skip

    env_prefix: ClassVar[str] = "TRAINING_"  # the app whose variable a refusal names

    @model_validator(mode="after")
    def _cadence_for_values(self) -> TrainingInputSettings:
        if self.shape == "value" and self.cadence_s is None:
            raise ValueError(
                "one value per message (shape value) needs the records' cadence: set "
                f"{self.env_prefix}INPUT__CADENCE_S (seconds between assembled records)"
            )
        return self


class StoreSettings(BaseModel):
    """The model store shared with the workers (a directory, or s3://bucket/prefix:
    credentials and endpoint from the standard AWS variables), the named model this job
    trains (anomaly/model/store.py), and how much of its history to keep."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: StoreLocation = "model-store"
    model: str = Field(
        default=DEFAULT_MODEL,
        description="the named model to train and publish (default: the store's own, as "
        "before named models)",
    )
    keep: int = Field(default=10, ge=1)
    protect_s: float = Field(default=600.0, ge=0.0)

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        return check_model_name(value)


class PushgatewaySettings(BaseModel):
    """Where the job pushes its metrics (unset: not pushed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None
    job: str = "anomaly-training"


class TrainingSettings(AppSettings):
    """The training job's settings (one frozen object, validated at start)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    data: DataSettings = DataSettings()
    kafka: KafkaSettings = KafkaSettings(client_id=CLIENT_ID)
    topics: TrainingTopics = TrainingTopics()
    models: RouteSettings = RouteSettings()
    input: TrainingInputSettings = TrainingInputSettings()
    model: ModelSettings = ModelSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    clean: CleanSettings = CleanSettings()
    states: StateSettings = StateSettings()
    instruments: InstrumentSettings = InstrumentSettings()
    rules: Rules = Rules()  # recorded in the manifest: what the workers will apply
    gate: GateSettings = GateSettings()
    store: StoreSettings = StoreSettings()
    pushgateway: PushgatewaySettings = PushgatewaySettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka", mode="before")
    @classmethod
    def _own_client_id(cls, value: object) -> object:
        """The job's client id unless one is set: the connection fields are the worker's
        (anomaly.settings.KafkaSettings), and so would be its default id."""
        if isinstance(value, dict) and "client_id" not in value:
            return {**value, "client_id": CLIENT_ID}
        return value


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable behind a settings field, e.g. ('model', 'window')."""
    return settings.env_name(location, ENV_PREFIX)
