"""Training settings: environment variables (TRAINING_...) overridden by command-line flags.

Nested parts use a double underscore: TRAINING_DATA__PATH, TRAINING_MODEL__WINDOW,
TRAINING_CALIBRATION__TARGET_FPR, TRAINING_STORE__PATH. Validated once, at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from worker.model.calibration import MethodChoice

ENV_PREFIX = "TRAINING_"
NESTED_DELIMITER = "__"

Names = Annotated[tuple[str, ...], NoDecode]


def _split_names(value: object) -> object:
    """Comma-separated names from the environment or a flag; lists pass through."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


class DataSettings(BaseModel):
    """Where the training rows come from and how to read them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path | None = Field(default=None, description="CSV or JSON Lines file to train on")
    format: Literal["auto", "csv", "jsonl"] = "auto"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    timestamp_column: str | None = None
    asset_column: str | None = None
    features: Names = ()
    exclude: Names = ()
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)

    _split = field_validator("features", "exclude", mode="before")(_split_names)


class ModelSettings(BaseModel):
    """The autoencoder's shape and how it is fitted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=1, ge=1)
    hidden: Annotated[tuple[Annotated[int, Field(ge=1)], ...], NoDecode] = (32, 16)
    latent: int | None = Field(default=None, ge=1)
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
    """The threshold's target false-positive rate on held-out clean data, and its method."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    method: MethodChoice = "auto"


class StoreSettings(BaseModel):
    """The model store directory shared with the workers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Path("model-store")


class TrainingSettings(BaseSettings):
    """The training job's settings (one frozen object, validated at start)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    store: StoreSettings = StoreSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable behind a settings field, e.g. ('model', 'window')."""
    fields = [str(part) for part in location if isinstance(part, str)]
    return ENV_PREFIX + NESTED_DELIMITER.join(fields).upper()
