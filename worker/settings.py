"""Worker settings from the environment (WORKER_...), validated once at start.

Nested parts use a double underscore, e.g. WORKER_STORE__PATH.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "WORKER_"
NESTED_DELIMITER = "__"


class StoreSettings(BaseModel):
    """Where the worker finds the model store that the training job publishes to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Path("model-store")


class WorkerSettings(BaseSettings):
    """The worker's settings (one frozen object)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER, frozen=True, extra="forbid"
    )

    store: StoreSettings = StoreSettings()


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable behind a settings field, e.g. ('store', 'path')."""
    fields = [str(part) for part in location if isinstance(part, str)]
    return ENV_PREFIX + NESTED_DELIMITER.join(fields).upper()
