"""The emit stage: what a batch decided, as the messages the runner publishes (alert events
and dead letters) and the figures the metrics report of them."""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np

from anomaly.events import (
    AlertEvent,
    EventContext,
    Evidence,
    FaultEventType,
    IncidentEvent,
    SensorEvent,
    SensorFaultEvent,
    StateEvent,
)
from anomaly.records import RecordError, SourceRecord
from anomaly.rules import SourceRef
from anomaly.settings import TopicSettings
from worker.decide import Decided
from worker.outbound import Outbound
from worker.score import Scored


class EpisodeSeen(NamedTuple):
    """An alert event as the metrics count it (worker/metrics.py `Metrics.episode`)."""

    kind: str
    asset_id: str
    top_feature: str | None
    model: str
    version: str
    held: str | None  # what holds its page back
    incident: str | None  # the incident its page belongs to
    started_at: float  # epoch s, record time
    page: bool  # it starts paging as the first of its incident


@dataclass
class Emitted:
    """A batch's messages, in order, and what the metrics count of them: events by type,
    and each alert event's (type, asset id, top feature, model, its version, what holds its
    page back)."""

    messages: list[Outbound] = field(default_factory=list)
    events: Counter[str] = field(default_factory=Counter)
    episodes: list[EpisodeSeen] = field(default_factory=list)
    # each sensor out of order or back: (opened, asset id, feature, fault, model)
    faults: list[tuple[bool, str, str, str, str]] = field(default_factory=list)

    def alert(self, topic: str, event: AlertEvent, context: EventContext) -> None:
        self.messages.append(Outbound(topic, event.asset_id.encode(), event.json(context)))
        self.events[event.kind] += 1
        top = None if event.shares is None else context.features[int(np.argmax(event.shares))]
        version = context.model_version if event.reason is None else ""
        episode = event.episode
        page = event.kind in ("open", "unsuppress") and episode.incident == episode.episode_id
        self.episodes.append(EpisodeSeen(
            event.kind, event.asset_id, top, context.model, version, episode.held,
            episode.incident, episode.started_at.timestamp(), page,
        ))  # fmt: skip

    def incident(self, topic: str, event: IncidentEvent, context: EventContext) -> None:
        incident_id = event.change.incident_id
        self.messages.append(Outbound(topic, incident_id.encode(), event.json(context)))
        self.events[event.change.kind] += 1

    def state(self, topic: str, event: StateEvent, context: EventContext) -> None:
        self.messages.append(Outbound(topic, event.asset_id.encode(), event.json(context)))
        self.events[event.kind] += 1

    def sensor(
        self, topics: TopicSettings, event: SensorEvent, context: EventContext, stale_s: float
    ) -> None:
        value = event.json(context, stale_s, topics.input)
        self.messages.append(Outbound(topics.alerts, event.asset_id.encode(), value))
        self.events[event.kind] += 1
        opened = event.kind == "sensor_silent"
        self.faults.append((opened, event.asset_id, event.feature, "silent", event.model))

    def fault(self, topic: str, event: SensorFaultEvent, context: EventContext) -> None:
        self.messages.append(Outbound(topic, event.asset_id.encode(), event.json(context)))
        self.events[event.kind] += 1
        opened = event.kind == "sensor_fault"
        self.faults.append((opened, event.asset_id, event.feature, event.fault, event.model))


def alert_events(scored: Scored, decided: Decided) -> list[AlertEvent]:
    """Each change of one model's records as the event that says it, with the deciding
    window against its reconstruction (kept by the score stage)."""
    windows, rebuilt = scored.windows.windows(), scored.scores.rebuilt
    assert rebuilt is not None
    detector = scored.windows.served.artifact.detector
    out = []
    for change in decided.changes:
        i, pending = change.row, scored.windows.pending[change.row]
        out.append(AlertEvent(
            change.kind, change.episode, pending.asset_id, pending.ts, change.ref, change.score,
            scored.scores.shares[i], pending.filled, float(scored.limits[i]),
            Evidence(windows[i], detector.expected(rebuilt[i])), released=change.released,
        ))  # fmt: skip
    return out


def fault_events(scored: Scored, context: EventContext) -> list[SensorFaultEvent]:
    """Each sensor that broke or behaves again at one of the model's records (anomaly/
    instruments.py), as its event, with the sensor's reading there."""
    if scored.sensors is None:
        return []
    pending, rows, out = scored.windows.pending, scored.windows.history, []
    for i, change in scored.sensors.changes:
        message, _, asset_id, ts, _ = pending[i]
        kind: FaultEventType = "sensor_fault" if change.opened else "sensor_fault_resolve"
        out.append(SensorFaultEvent(
            kind, asset_id, context.model, context.features[change.feature], change.kind, ts,
            SourceRef(message.topic, message.partition, message.offset),
            float(rows[i, -1, change.feature]),
        ))  # fmt: skip
    return out


def dead_letter(topic: str, message: SourceRecord, error: RecordError, now: datetime) -> Outbound:
    """The envelope of a message that broke the input contract: why, and the message whole."""
    key, value = message.key, message.value
    envelope = {
        "reason": error.reason,
        "model": error.model,
        "error": str(error),
        "source": {"topic": message.topic, "partition": message.partition,
                   "offset": message.offset},
        "key": base64.b64encode(key).decode() if key is not None else None,
        "value": base64.b64encode(value).decode() if value is not None else None,
        "dead_lettered_at": now.isoformat().replace("+00:00", "Z"),
    }  # fmt: skip
    return Outbound(topic, key, json.dumps(envelope).encode())
