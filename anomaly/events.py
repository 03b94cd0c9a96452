"""The alert events the worker publishes (JSON on the alerts topic), and what the training job
reads back of them (`episode_id`, `asset_id`, `type`, `started_at`, `ended_at`).

Several families share the topic, told apart by `type`:

- an asset's anomaly episodes (`open`, then any number of `quiet` and `resume`, then
  `resolve`: anomaly/rules.py; their top features carry the deciding window's actual and
  expected values), with `suppress` and `unsuppress` when a maintenance window or a shelf
  starts or stops holding its page back (anomaly/calendar.py; every episode event's
  `suppressed` says why it is held, null while it pages); only these carry an `episode_id`;
- its sensors out of order, all `kind: instrumentation`: fallen silent (`sensor_silent`,
  `sensor_resolve`: worker/sensors.py) or broken (`sensor_fault`, `sensor_fault_resolve`:
  stuck, out of range, noisy, anomaly/instruments.py);
- its operating state (`stopped`, `started`: anomaly/states.py);
- incidents, the episodes of several assets that share a cause (`incident_open`,
  `incident_update`, `incident_resolve`: anomaly/incidents.py; keyed by the incident's id,
  they name their member episodes; each episode event's `incident` names its own, null
  while it does not page).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

from anomaly.incidents import IncidentChange, Member
from anomaly.rules import Episode, EventType, SourceRef
from anomaly.settings import DEFAULT_MODEL

SensorEventType = Literal["sensor_silent", "sensor_resolve"]
FaultEventType = Literal["sensor_fault", "sensor_fault_resolve"]
# An episode's events: the rules' own, and its page held back or released (worker/decide.py).
AlertType = EventType | Literal["suppress", "unsuppress"]


@dataclass(frozen=True)
class EventContext:
    """What every event of a batch shares: the model that scored it and when."""

    model_version: str
    threshold: float
    features: tuple[str, ...]
    top_features: int
    detected_at: datetime
    model: str = DEFAULT_MODEL  # the named model (anomaly/model/store.py)

    def stamp(self) -> dict[str, object]:
        """What every event says of who decided it: the model, its version and when."""
        return {"model": self.model, "model_version": self.model_version,
                "detected_at": _iso(self.detected_at)}  # fmt: skip


@dataclass(frozen=True)
class AlertEvent:
    """An open, quiet, resume or resolve of `episode`, triggered by the record at `source`
    (`ts`, its judged `score`); `shares`: each feature's share of its error (None: none, an
    evicted asset's resolve); `filled`: the features whose values in the deciding window were
    filled (a sensor that dropped out); `threshold`: the asset's (None: the model's);
    `evidence`: the deciding window and the model's reconstruction of it, shown for the top
    features; `reason`: why it happened other than by the rules (`evicted`); `released`: what
    held the page back until an `unsuppress`."""

    kind: AlertType
    episode: Episode
    asset_id: str
    ts: datetime
    source: SourceRef
    score: float
    shares: npt.NDArray[np.float64] | None = None
    filled: tuple[str, ...] = ()
    threshold: float | None = None
    evidence: Evidence | None = None
    reason: str | None = None
    released: str | None = None

    def json(self, context: EventContext) -> bytes:
        """The event's JSON as published, with what the batch's events share."""
        episode, kind = self.episode, self.kind
        event: dict[str, object] = {
            "type": kind,
            "episode_id": episode.episode_id,
            "asset_id": self.asset_id,
            "ts": _iso(self.ts),
            "source": _source(self.source),
            "score": self.score,
            "threshold": context.threshold if self.threshold is None else self.threshold,
            "model": context.model,
            "model_version": context.model_version,
            "top_features": top_features(
                self.shares, context.features, context.top_features, self.evidence
            ),
            "detected_at": _iso(context.detected_at),
            "started_at": _iso(episode.started_at),
            "filled": list(self.filled),
            "suppressed": episode.held,
            "incident": episode.incident,
        }
        if kind == "resume" and episode.resumed is not None:  # its active stretch starts here
            event["resumed_at"] = _iso(episode.resumed[0])
        if kind in ("quiet", "resolve"):  # the episode's records above end at ended_at
            event.update(
                ended_at=_iso(episode.ended_at),
                records=episode.records,
                peak_score=episode.peak_score,
            )
        if self.released is not None:
            event["released"] = self.released
        if self.reason is not None:
            event["reason"] = self.reason
        return json.dumps(event).encode()


@dataclass(frozen=True)
class SensorEvent:
    """A sensor of an asset (served by `model`) fell silent (`sensor_silent`: it has not
    reported for longer than the staleness bound) or reports again (`sensor_resolve`), at
    the record at `source` (None: at no record, `reason`); `last_reported`: its last report
    before the silence (epoch s; None: never)."""

    kind: SensorEventType
    asset_id: str
    model: str
    feature: str
    ts: datetime
    source: SourceRef | None
    last_reported: float | None
    reason: str | None = None

    def json(self, context: EventContext, stale_after_s: float, topic: str) -> bytes:
        """The event's JSON as published (`topic`: the input topic, named where the event
        came from no record)."""
        last = self.last_reported
        event: dict[str, object] = {
            "type": self.kind,
            "asset_id": self.asset_id,
            "feature": self.feature,
            "ts": _iso(self.ts),
            "source": _source(self.source or SourceRef(topic, -1, -1)),
            "last_reported_at": None if last is None else _iso(datetime.fromtimestamp(last, UTC)),
            "stale_after_s": stale_after_s,
            "kind": "instrumentation",
            "fault": "silent",
            **context.stamp(),
        }
        if self.reason is not None:
            event["reason"] = self.reason
        return json.dumps(event).encode()


@dataclass(frozen=True)
class SensorFaultEvent:
    """A sensor of an asset broke (`sensor_fault`: stuck, out_of_range or noisy, its `fault`,
    anomaly/instruments.py) or behaves again (`sensor_fault_resolve`), at the record at
    `source`, whose value of it was `value`; while it lasts, a record of the asset above its
    threshold is judged without it (worker/score.py), so no process episode opens for it."""

    kind: FaultEventType
    asset_id: str
    model: str
    feature: str
    fault: str
    ts: datetime
    source: SourceRef
    value: float
    reason: str | None = None  # a resolve at no record: `evicted`

    def json(self, context: EventContext) -> bytes:
        event: dict[str, object] = {
            "type": self.kind,
            "asset_id": self.asset_id,
            "feature": self.feature,
            "kind": "instrumentation",
            "fault": self.fault,
            "ts": _iso(self.ts),
            "source": _source(self.source),
            "value": None if math.isnan(self.value) else _value(self.value),
            **context.stamp(),
        }
        if self.reason is not None:
            event["reason"] = self.reason
        return json.dumps(event).encode()


@dataclass(frozen=True)
class StateEvent:
    """An asset stopped (`stopped`: its record at `source` meets its model's operating-state
    rule) or runs again (`started`: its first running record; the next `grace_s` seconds of
    its records are its start-up, not scored)."""

    kind: Literal["stopped", "started"]
    asset_id: str
    model: str
    ts: datetime
    source: SourceRef
    rule: str
    grace_s: float

    def json(self, context: EventContext) -> bytes:
        event: dict[str, object] = {
            "type": self.kind,
            "asset_id": self.asset_id,
            "ts": _iso(self.ts),
            "source": _source(self.source),
            "stopped_when": self.rule,
            **context.stamp(),
        }
        if self.kind == "started":
            event["grace_s"] = self.grace_s
        return json.dumps(event).encode()


@dataclass(frozen=True)
class IncidentEvent:
    """Episodes of several assets share a cause (anomaly/incidents.py): `incident_open` (a
    second member joined), `incident_update` (another joined, or a member resolved),
    `incident_resolve` (its last member resolved), at the member `change.member`'s page or
    end; the members listed on the open and the resolve."""

    change: IncidentChange

    def json(self, context: EventContext) -> bytes:
        change = self.change
        event: dict[str, object] = {
            "type": change.kind,
            "incident_id": change.incident_id,
            "area": change.area,
            "ts": _iso(change.ts),
            "started_at": _iso(change.started_at),
            "member": change.member.episode_id,
            "member_asset_id": change.member.asset_id,
            "member_open": change.member.open,
            "size": change.size,
            "open_members": change.open_members,
            **context.stamp(),
        }
        if change.kind != "incident_update":
            event["members"] = [_member(m) for m in change.members]
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


def _member(m: Member) -> dict[str, object]:
    return {"episode_id": m.episode_id, "asset_id": m.asset_id, "paged_at": _iso(m.paged_at),
            "open": m.open}  # fmt: skip


def _value(v: float) -> float:
    return float(f"{v:.6g}")


def _source(ref: SourceRef) -> dict[str, object]:
    return {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset}


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
