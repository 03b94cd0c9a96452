"""The training job's metrics, pushed to a Prometheus Pushgateway when it ends.

A batch job is gone before Prometheus could scrape it, so it pushes (POST: metrics of other
names in the job's group, such as the last success time, stay as they were).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

from training.settings import PushgatewaySettings

log = logging.getLogger(__name__)


@dataclass
class RunFigures:
    """What one run did; None where the run did not get that far."""

    duration_s: float = 0.0
    rows_read: int = 0
    rows_removed: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)  # episodes judged, by verdict
    episodes: int = 0  # alert episodes the alerts topic holds over the range
    ack_s: float = 0.0  # mean time from an episode's start to its verdict
    rows_used: int = 0
    holdout_loss: float | None = None
    threshold: float | None = None
    promoted: bool | None = None
    model_version: str | None = None
    succeeded: bool = False


def push(settings: PushgatewaySettings, figures: RunFigures) -> None:
    """Push the run's figures; a missing or unreachable Pushgateway is logged, not fatal."""
    if not settings.url:
        log.info("no Pushgateway configured (TRAINING_PUSHGATEWAY__URL): metrics not pushed")
        return
    try:
        pushadd_to_gateway(settings.url, job=settings.job, registry=registry(figures), timeout=10)
        log.info("pushed metrics to %s (job %s)", settings.url, settings.job)
    except OSError as exc:
        log.error("could not push metrics to %s: %s", settings.url, exc)


def registry(figures: RunFigures) -> CollectorRegistry:
    """Every metric of the run, in a registry of its own."""
    registry = CollectorRegistry()

    def gauge(name: str, text: str, value: float, **labels: str) -> None:
        g = Gauge(name, text, list(labels), registry=registry)
        (g.labels(**labels) if labels else g).set(value)

    now = time.time()
    gauge("anomaly_training_duration_seconds", "Duration of the last run.", figures.duration_s)
    gauge("anomaly_training_rows_read", "Records read by the last run.", figures.rows_read)
    removed = Gauge(
        "anomaly_training_rows_removed", "Records removed before fitting, by rule.", ["rule"],
        registry=registry,
    )  # fmt: skip
    for rule, count in figures.rows_removed.items():
        removed.labels(rule).set(count)
    verdicts = Gauge(
        "anomaly_training_verdicts",
        "Episodes of the last run's range that engineers judged, by verdict (false_alarm, "
        "confirmed).", ["verdict"], registry=registry,
    )  # fmt: skip
    for verdict in ("false_alarm", "confirmed"):
        verdicts.labels(verdict).set(figures.verdicts.get(verdict, 0))
    gauge("anomaly_training_episodes",
          "This model's alert episodes on the alerts topic over the last run's range (those "
          "with an event there: opened in it, or still open at its start), judged or not.",
          figures.episodes)  # fmt: skip
    gauge("anomaly_training_ack_seconds",
          "Mean time from an episode's start (started_at on the alerts topic: its first "
          "record's time) to its latest verdict (decided_at), over the episodes of "
          "anomaly_training_episodes with a verdict; 0 without one.", figures.ack_s)  # fmt: skip
    gauge("anomaly_training_rows_used", "Records the candidate was fitted on.", figures.rows_used)
    gauge("anomaly_training_last_run_timestamp_seconds", "When the last run ended.", now)
    if figures.holdout_loss is not None:
        gauge("anomaly_training_holdout_loss", "The candidate's held-out loss.",
              figures.holdout_loss)  # fmt: skip
    if figures.threshold is not None:
        gauge("anomaly_training_threshold", "The candidate's threshold.", figures.threshold)
    if figures.promoted is not None:
        gauge("anomaly_training_promoted", "1 if the last candidate was promoted, else 0.",
              1.0 if figures.promoted else 0.0)  # fmt: skip
    if figures.model_version is not None:
        gauge("anomaly_training_model_info", "The last candidate's version (value 1).", 1.0,
              version=figures.model_version)  # fmt: skip
    if figures.succeeded:
        gauge("anomaly_training_last_success_timestamp_seconds",
              "When a run last ended with a decision.", now)  # fmt: skip
    else:
        gauge("anomaly_training_last_failure_timestamp_seconds", "When a run last failed.", now)
    return registry
