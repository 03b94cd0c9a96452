"""Training data from the input topic: a bounded time range, decoded like the worker does.

The range is resolved with the broker's offset-for-time lookup where it exists (and each
record's broker timestamp is checked against the range); otherwise (Apache Kafka 0.9) the
topic is scanned and records are kept by their own `ts`. Reading stops
at the end offsets captured at the start, and reads at most `max_rows` records (the latest).
Invalid records are counted by reason, never fatal. Records of other named models (routed
elsewhere, anomaly/routing.py) are skipped and counted. No consumer group is used, so the
workers' offsets are never touched.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from anomaly.decoding import Decoded, Decoder
from anomaly.records import RecordError, parse_ts
from anomaly.settings import DEFAULT_MODEL
from training.assembled import training_rows
from training.data import DataError, SensorHistory, group_rows
from training.kafka_range import plan_range, read_planned
from training.settings import TrainingSettings

log = logging.getLogger(__name__)

# Episodes as (start, end) epoch seconds per asset; end is +inf while an episode is open.
Episodes = dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Recorded:
    """An episode as the alerts topic holds it: its asset, its first record's time and its
    last's (the resolve's `ended_at`; +inf while no resolve was read), epoch seconds."""

    asset_id: str
    begin: float
    end: float


def by_asset(recorded: dict[str, Recorded]) -> Episodes:
    """The recorded episodes' spans, per asset."""
    episodes: Episodes = defaultdict(list)
    for r in recorded.values():
        episodes[r.asset_id].append((r.begin, r.end))
    return dict(episodes)


@dataclass
class ReadSummary:
    """What reading the topic found."""

    read: int = 0
    out_of_range: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    by_broker_time: bool = True
    other_models: int = 0  # records routed to another named model


def read_topic(
    settings: TrainingSettings, features: tuple[str, ...] | None, now: datetime
) -> tuple[SensorHistory, ReadSummary]:
    """The input topic's records in the configured time range, grouped by asset."""
    start, end = settings.data.time_range(now)
    planned = plan_range(
        settings.kafka, settings.topics.input, _ms(start), _ms(end) if end else None,
        settings.data.max_rows,
    )  # fmt: skip
    log.info(
        "reading %s from %s to %s: up to %d records in %d partitions (%s)",
        settings.topics.input, start.isoformat(), end.isoformat() if end else "now",
        planned.size, len(planned.ends),
        "by broker time" if planned.by_broker_time else "scanning by record time",
    )  # fmt: skip
    summary = ReadSummary(by_broker_time=planned.by_broker_time)
    lo, hi = start.timestamp(), (end or now).timestamp()
    lo_ms, hi_ms = _ms(start), _ms(end) if end else math.inf

    decoder = Decoder(
        settings.input, settings.models, {settings.store.model: features or None},
        exclude=settings.data.exclude,
    )  # fmt: skip

    def messages() -> Iterator[tuple[int, Decoded]]:
        for record in read_planned(settings.kafka, planned):
            summary.read += 1
            if summary.read % 100_000 == 0:
                log.info("read %d of %d records", summary.read, planned.size)
            # The lookup's start is trusted only as far as each record's own broker time
            # agrees: Tansu 0.6 answers every lookup with offset 0.
            stamp = getattr(record, "timestamp", None) or -1
            if planned.by_broker_time and stamp >= 0 and not lo_ms <= stamp < hi_ms:
                summary.out_of_range += 1
                continue
            try:
                decoded = decoder.decode(record.value or b"")
            except RecordError as exc:
                if exc.reason == "no_model":  # routed to another named model
                    summary.other_models += 1
                else:
                    summary.invalid[exc.reason] += 1
                continue
            ts = decoded[1].ts.timestamp()
            if not planned.by_broker_time and not lo <= ts < hi:
                summary.out_of_range += 1
                continue
            yield record.offset, decoded

    decoded = list(messages())
    features, rows = training_rows(
        decoded, decoder.features[settings.store.model], settings.data.exclude,
        settings.input.cadence_s, settings.input.stale_after_s,
    )  # fmt: skip
    grouped = [(asset_id, t, values) for _, asset_id, t, values in rows]
    if not grouped or features is None:
        raise DataError(
            f"no usable records in {settings.topics.input} between {start.isoformat()} and "
            f"{end.isoformat() if end else 'now'} ({summary.read} read, invalid: "
            f"{dict(summary.invalid) or 'none'})"
        )
    source = f"kafka:{settings.topics.input}@{start.isoformat()}..{(end or now).isoformat()}"
    return group_rows(source, features, grouped, has_timestamps=True), summary


def read_episodes(settings: TrainingSettings, now: datetime) -> dict[str, Recorded]:
    """This model's alert episodes recorded on the alerts topic over the same range, by
    episode id: a resolve read gives the end (an open read after it changes nothing)."""
    start, end = settings.data.time_range(now)
    planned = plan_range(
        settings.kafka, settings.topics.alerts, _ms(start), _ms(end) if end else None,
        settings.data.max_rows,
    )  # fmt: skip
    recorded: dict[str, Recorded] = {}
    for record in read_planned(settings.kafka, planned):
        try:
            event = json.loads(record.value or b"")
            if event.get("model", DEFAULT_MODEL) != settings.store.model:
                continue  # another named model's episode
            begin = parse_ts(event["started_at"]).timestamp()
            resolved = event["type"] == "resolve"
            finish = parse_ts(event["ended_at"]).timestamp() if resolved else math.inf
            episode_id = str(event["episode_id"])
            if resolved or episode_id not in recorded:
                recorded[episode_id] = Recorded(str(event["asset_id"]), begin, finish)
        except (ValueError, KeyError, TypeError, AttributeError, RecordError):
            continue  # not an alert event of this product; nothing to learn from it
    return recorded


def _ms(ts: datetime) -> int:
    return int(ts.astimezone(UTC).timestamp() * 1000)
