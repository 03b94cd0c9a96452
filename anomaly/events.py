"""The alert events the worker publishes (JSON on the alerts topic), and what the training job
reads back of them (`episode_id`, `asset_id`, `type`, `started_at`, `ended_at`).

Two families share the topic, told apart by `type`: an asset's anomaly episodes (`open`, then
any number of `quiet` and `resume`, then `resolve`: anomaly/rules.py; their top features
carry the deciding window's actual and expected values), and
its sensors that fall silent (`sensor_silent`, `sensor_resolve`: one feature of one asset,
worker/sensors.py). Only the first carry an `episode_id`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from anomaly.rules import Episode, EventType, SourceRef
from anomaly.settings import DEFAULT_MODEL

SensorEventType = Literal["sensor_silent", "sensor_resolve"]


@dataclass(frozen=True)
class EventContext:
    """What every event of a batch shares: the model that scored it and when."""

    model_version: str
    threshold: float
    features: tuple[str, ...]
    top_features: int
    detected_at: datetime
    model: str = DEFAULT_MODEL  # the named model (anomaly/model/store.py)


def event_json(
    kind: EventType,
    episode: Episode,
    asset_id: str,
    ts: datetime,
    ref: SourceRef,
    score: float,
    shares: npt.NDArray[np.float64] | None,
    context: EventContext,
    reason: str | None = None,
    filled: tuple[str, ...] = (),
    threshold: float | None = None,
    evidence: Evidence | None = None,
) -> bytes:
    """The JSON of an open or resolve event, triggered by the record at `ref`; `filled`: the
    features whose values in the deciding window were filled (a sensor that dropped out);
    `threshold`: the asset's (None: the model's, `context.threshold`); `evidence`: the
    deciding window and the model's reconstruction of it, shown for the top features."""
    event: dict[str, object] = {
        "type": kind,
        "episode_id": episode.episode_id,
        "asset_id": asset_id,
        "ts": _iso(ts),
        "source": _source(ref),
        "score": score,
        "threshold": context.threshold if threshold is None else threshold,
        "model": context.model,
        "model_version": context.model_version,
        "top_features": top_features(shares, context.features, context.top_features, evidence),
        "detected_at": _iso(context.detected_at),
        "started_at": _iso(episode.started_at),
        "filled": list(filled),
    }
    if kind == "resume" and episode.resumed is not None:  # its active stretch starts here
        event["resumed_at"] = _iso(episode.resumed[0])
    if kind in ("quiet", "resolve"):  # the episode's records above end at ended_at
        event.update(
            ended_at=_iso(episode.ended_at),
            records=episode.records,
            peak_score=episode.peak_score,
        )
    if reason is not None:
        event["reason"] = reason
    return json.dumps(event).encode()


def sensor_event_json(
    kind: SensorEventType,
    asset_id: str,
    feature: str,
    ts: datetime,
    ref: SourceRef,
    last_reported: float | None,
    stale_after_s: float,
    context: EventContext,
    reason: str | None = None,
) -> bytes:
    """The JSON of a sensor_silent event (the feature has not reported for longer than
    `stale_after_s`) or of its sensor_resolve (it reports again), at the record at `ref`;
    `last_reported`: the feature's last report before the silence (epoch s; None: never)."""
    event: dict[str, object] = {
        "type": kind,
        "asset_id": asset_id,
        "feature": feature,
        "ts": _iso(ts),
        "source": _source(ref),
        "last_reported_at": (
            None if last_reported is None else _iso(datetime.fromtimestamp(last_reported, UTC))
        ),
        "stale_after_s": stale_after_s,
        "model": context.model,
        "model_version": context.model_version,
        "detected_at": _iso(context.detected_at),
    }
    if reason is not None:
        event["reason"] = reason
    return json.dumps(event).encode()


@dataclass(frozen=True)
class Evidence:
    """The window that decided (rows oldest first, one column per feature, in the sensors'
    own units) and the model's reconstruction of it: what the record looked like against
    what the model expected."""

    actual: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]


def top_features(
    shares: npt.NDArray[np.float64] | None,
    features: tuple[str, ...],
    n: int,
    evidence: Evidence | None = None,
) -> list[dict[str, object]]:
    """The n features with the largest share of the error, largest first; with `evidence`,
    each with its actual and expected values over the window (oldest first)."""
    if shares is None:
        return []
    order = np.argsort(-shares, kind="stable")[:n]
    top: list[dict[str, object]] = []
    for i in order:
        item: dict[str, object] = {"feature": features[i], "share": round(float(shares[i]), 4)}
        if evidence is not None:
            item["actual"] = [_value(v) for v in evidence.actual[:, i]]
            item["expected"] = [_value(v) for v in evidence.expected[:, i]]
        top.append(item)
    return top


def _value(v: float) -> float:
    return float(f"{v:.6g}")


def _source(ref: SourceRef) -> dict[str, object]:
    return {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset}


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
