"""The review page's settings (REVIEW_* variables; the README's configuration table)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
)
from pydantic_settings import NoDecode, SettingsConfigDict

from anomaly import settings
from anomaly.settings import AppSettings, KafkaSettings
from training.settings import StoreSettings, TrainingInputSettings, TrainingTopics

ENV_PREFIX = "REVIEW_"
CLIENT_ID = "anomaly-review"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _listed(value: object) -> object:
    """A comma-separated variable as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HttpSettings(_Part):
    """Where the page listens."""

    host: str = "0.0.0.0"  # a pod's address: its network policy lets only the proxy in
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free one (the log names it)
    threads: int = Field(default=8, ge=1, le=64)


class AuthSettings(_Part):
    """Who is asking: the identity proxy in front of the page says so in headers, which are
    believed only from the proxy's addresses; a judge belongs to `judge_group`."""

    user_header: str = Field(default="X-Forwarded-User", min_length=1)
    groups_header: str = Field(default="X-Forwarded-Groups", min_length=1)
    judge_group: str = Field(default="anomaly-judges", min_length=1)
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode, BeforeValidator(_listed)] = (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    # signs the forms' tokens; unset: a key of this process's own (one replica)
    form_key: SecretStr | None = Field(default=None, min_length=16)

    @field_validator("trusted_proxies")
    @classmethod
    def _some(cls, value: tuple[Network, ...]) -> tuple[Network, ...]:
        if not value:
            raise ValueError("name the identity proxy's addresses (CIDR, comma-separated)")
        return value


class ReviewInputSettings(TrainingInputSettings):
    """The input's shape, as the training job reads it (the figure decodes as it does)."""

    env_prefix: ClassVar[str] = ENV_PREFIX


class ReviewSettings(AppSettings):
    """The review page's settings (one frozen object, validated at start)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    kafka: KafkaSettings = KafkaSettings(client_id=CLIENT_ID)
    topics: TrainingTopics = TrainingTopics()
    input: ReviewInputSettings = ReviewInputSettings()
    store: StoreSettings = StoreSettings()
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    history_days: float = Field(default=28.0, gt=0.0, description="alerts read back at start")
    max_episodes: int = Field(default=50_000, ge=100)
    margin_s: float = Field(default=600.0, ge=0.0, description="records shown around an episode")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("kafka", mode="before")
    @classmethod
    def _own_client_id(cls, value: object) -> object:
        if isinstance(value, dict) and "client_id" not in value:
            return {**value, "client_id": CLIENT_ID}
        return value


def env_name(location: tuple[str | int, ...]) -> str:
    """The environment variable behind a settings field, e.g. ('auth', 'judge_group')."""
    return settings.env_name(location, ENV_PREFIX)
