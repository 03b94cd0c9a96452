"""An episode report on demand: why an alert fired, from what the worker had.

    anomaly-train report EPISODE_ID [--out DIR] [--margin-s 600]

The episode id names the record that opened it (`<input topic>/<partition>/<offset>`, as in
the events). The report reads that record, the episode's events from the alerts topic (the
open, and the resolve if it came), and the asset's records on that partition from `margin_s`
before the episode's first record to `margin_s` after its last (by the broker's times; to the
end of the partition while it is open: training.kafka_range.read_around). It scores them with the
model version the open event names, from the store, and writes `episode-<id>.json` and
`episode-<id>.png` into `out`: each top feature's actual values and the model's expectation
of them, with the episode shaded, and the score against the threshold. No consumer group is used.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

from anomaly.decoding import Decoder
from anomaly.model import Artifact, model_store, sliding_windows
from anomaly.records import RecordError, parse_ts
from anomaly.settings import DEFAULT_MODEL, KafkaSettings, RouteSettings
from training.assembled import training_rows
from training.data import DataError
from training.kafka_range import Around, TopicRange, plan_range, read_around, read_planned
from training.settings import StoreSettings, TrainingInputSettings, TrainingTopics

log = logging.getLogger(__name__)
EPISODE_ID = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)/(?P<partition>\d+)/(?P<offset>\d+)$")


class EpisodeError(DataError):
    """The episode cannot be reported: an unknown id, or its records or model are gone."""


class Sources(Protocol):
    """Where episodes are read from: the training job's settings, or the review page's."""

    @property
    def kafka(self) -> KafkaSettings: ...
    @property
    def topics(self) -> TrainingTopics: ...
    @property
    def input(self) -> TrainingInputSettings: ...
    @property
    def store(self) -> StoreSettings: ...


@dataclass(frozen=True)
class EpisodeReport:
    json_path: Path
    png_path: Path
    report: dict[str, Any]


@dataclass(frozen=True)
class Episode:
    """An episode as the topics hold it: where its opening record lies, and its events."""

    topic: str
    partition: int
    offset: int
    opened: dict[str, Any]
    resolved: dict[str, Any] | None


def find_episode(
    settings: Sources, episode_id: str, known: dict[str, Any] | None = None
) -> Episode:
    """The episode's open (and resolve) events; EpisodeError when the id is malformed or no
    such episode was opened. `known`: its events by type where the caller holds them (the
    review page follows the alerts topic): nothing is read."""
    match = EPISODE_ID.match(episode_id)
    if match is None:
        raise EpisodeError(
            f"{episode_id!r} is not an episode id: <input topic>/<partition>/<offset>, as in "
            "the events' episode_id"
        )
    topic, partition, offset = match["topic"], int(match["partition"]), int(match["offset"])
    if topic != settings.topics.input:
        raise EpisodeError(
            f"episode {episode_id} opened on topic {topic!r}, not on the input topic "
            f"{settings.topics.input!r} (TRAINING_TOPICS__INPUT)"
        )
    if known is not None:
        events = known
    else:
        opening = _one(settings, topic, partition, offset)
        if opening is None:
            raise EpisodeError(f"no record at {episode_id}: the episode id is unknown (or expired)")
        stamp = getattr(opening, "timestamp", None) or 0
        events = _events(settings, episode_id, max(0, stamp - 60_000))
    if "open" not in events:
        raise EpisodeError(
            f"no open event for episode {episode_id} on {settings.topics.alerts}: the episode "
            "id is unknown"
        )
    return Episode(topic, partition, offset, events["open"], events.get("resolve"))


def report_episode(
    settings: Sources, episode_id: str, out: Path, margin_s: float = 600.0
) -> EpisodeReport:
    report = episode_report(settings, find_episode(settings, episode_id), margin_s)
    out.mkdir(parents=True, exist_ok=True)
    name = "episode-" + episode_id.replace("/", "-")
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with png_path.open("wb") as png:
        draw(report, png)
    log.info("episode %s of %s: %d records; wrote %s and %s", episode_id, report["asset_id"],
             len(report["records"]["ts"]), json_path, png_path)  # fmt: skip
    return EpisodeReport(json_path, png_path, report)


def episode_report(
    settings: Sources, found: Episode, margin_s: float = 600.0, loaded: Artifact | None = None
) -> dict[str, Any]:
    """The episode's records around it, scored by the model version that opened it (or
    `loaded`, that version already in hand): each top feature against its expectation."""
    opened, resolved = found.opened, found.resolved
    asset_id, model_name = str(opened["asset_id"]), str(opened.get("model", DEFAULT_MODEL))
    version = str(opened["model_version"])
    artifact = loaded or model_store(settings.store.path, model_name).load(version)
    began = parse_ts(opened["started_at"])
    ended = parse_ts(resolved["ended_at"]) if resolved else None
    # read by broker time: the opening record's, and the episode's length in record time
    # after it (a live stream's broker times are its record times; a replay's run later)
    margin = int(margin_s * 1000)
    after = None if ended is None else int((ended - began).total_seconds() * 1000) + margin
    around = read_around(settings.kafka, found.topic, found.partition, found.offset, margin,
                         after)  # fmt: skip
    if around is None:
        raise EpisodeError(
            f"no record at {opened['episode_id']}: the episode's records have expired"
        )
    span = (began, ended)
    rows = _asset_rows(settings, artifact, asset_id, around, span, margin_s)
    return _score(artifact, asset_id, rows, opened, resolved, str(opened["episode_id"]))


def _one(settings: Sources, topic: str, partition: int, offset: int) -> Any:
    """The record at `offset` of a partition; None when the partition holds no such offset."""
    held = plan_range(settings.kafka, topic, 0, None, 10**12)
    if not held.starts.get(partition, 0) <= offset < held.ends.get(partition, 0):
        return None
    planned = TopicRange(topic, {partition: offset}, {partition: offset + 1}, True)
    return next(iter(read_planned(settings.kafka, planned)), None)


def _events(settings: Sources, episode_id: str, since_ms: int) -> dict[str, Any]:
    """The episode's open and resolve events, read from the alerts topic since `since_ms`."""
    planned = plan_range(settings.kafka, settings.topics.alerts, since_ms, None, 10**9)
    found: dict[str, Any] = {}
    for record in read_planned(settings.kafka, planned):
        try:
            event = json.loads(record.value or b"")
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("episode_id") == episode_id:
            found[str(event.get("type"))] = event
    return found


def _asset_rows(
    settings: Sources,
    artifact: Artifact,
    asset_id: str,
    around: Around,
    span: tuple[datetime, datetime | None],
    margin_s: float,
) -> list[tuple[datetime, int, list[float]]]:
    """The asset's records from `margin_s` before the episode's first record to `margin_s`
    after its last (record times, as the figure shows them; no last: to the end), of those
    read around it (by broker times, which equal record times on a live stream and are later
    on a replayed one): (time, offset, values)."""
    margin = timedelta(seconds=margin_s)
    lo, hi = span[0] - margin, None if span[1] is None else span[1] + margin
    features = artifact.manifest.features
    # every message read as this model's (the episode says which model scored it)
    decoder = Decoder(settings.input, RouteSettings(), {"model": features})
    decoded = []
    for record in around.records:
        try:
            message = decoder.decode(record.value or b"")
        except RecordError:
            continue  # a dead letter, or a record with a sensor out: not scored by the worker
        ts = message[1].ts
        if message[1].asset_id == asset_id and lo <= ts and (hi is None or ts <= hi):
            decoded.append((record.offset, message))
    _, assembled = training_rows(
        decoded, features, (), settings.input.cadence_s, settings.input.stale_after_s
    )
    rows = [(datetime.fromtimestamp(t, UTC), offset, values) for offset, _, t, values in assembled]
    if not rows:
        raise EpisodeError(f"no records of {asset_id} left on its partition around the episode")
    return rows


def _score(
    artifact: Artifact,
    asset_id: str,
    rows: list[tuple[datetime, int, list[float]]],
    opened: dict[str, Any],
    resolved: dict[str, Any] | None,
    episode_id: str,
) -> dict[str, Any]:
    manifest = artifact.manifest
    window, features = manifest.window, manifest.features
    values = np.array([r[2] for r in rows], dtype=np.float64)
    score: list[float | None] = [None] * len(rows)
    expected: list[list[float] | None] = [None] * len(rows)
    if len(rows) >= window:
        windows = sliding_windows(values, window)
        scored = artifact.detector.score(windows, reconstruct=True)
        assert scored.rebuilt is not None
        rebuilt = artifact.detector.expected(scored.rebuilt[:, -1])
        for j in range(len(windows)):
            score[window - 1 + j] = float(scored.score[j])
            expected[window - 1 + j] = [float(v) for v in rebuilt[j]]
    top = [str(t["feature"]) for t in opened.get("top_features", [])] or list(features[:3])
    shown = [(i, f) for i, f in enumerate(features) if f in top]
    return {
        "episode_id": episode_id,
        "asset_id": asset_id,
        "model": opened.get("model", DEFAULT_MODEL),
        "model_version": manifest.model_version,
        "threshold": manifest.threshold_for(asset_id).value,
        "window": window,
        "started_at": opened["started_at"],
        "ended_at": resolved["ended_at"] if resolved else None,
        "top_features": top,
        "events": {"open": opened, "resolve": resolved},
        "records": {
            "ts": [_iso(r[0]) for r in rows],
            "offset": [r[1] for r in rows],
            "score": score,
            "actual": {f: [float(v) for v in values[:, i]] for i, f in shown},
            "expected": {f: [e[i] if e else None for e in expected] for i, f in shown},
        },
    }


def draw(report: dict[str, Any], out: IO[bytes], image: str = "png") -> None:
    """The report's figure: each top feature's actual values and expectation, the score
    against the threshold, the episode shaded; written to `out` as `image` (png, svg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    records = report["records"]
    ts = [parse_ts(t) for t in records["ts"]]
    top = report["top_features"]
    rows = len(top) + 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.2 * rows), sharex=True)
    # fixed margins: tight_layout measured every label again, a third of the drawing's time
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.35 / rows, top=1 - 0.4 / rows,
                        hspace=0.15)  # fmt: skip
    start = parse_ts(report["started_at"])
    end = parse_ts(report["ended_at"]) if report["ended_at"] else ts[-1]
    for ax, feature in zip(axes, top, strict=False):
        ax.plot(ts, records["actual"][feature], color="tab:blue", label="actual")
        expected = [np.nan if v is None else v for v in records["expected"][feature]]
        ax.plot(ts, expected, color="tab:orange", linestyle="--", label="expected")
        ax.set_ylabel(feature)
    score = [np.nan if v is None else v for v in records["score"]]
    axes[-1].plot(ts, score, color="tab:red", label="score")
    axes[-1].axhline(report["threshold"], color="black", linestyle=":", label="threshold")
    axes[-1].set_yscale("log")
    axes[-1].set_ylabel("score")
    for ax in axes:
        ax.axvspan(start, end, color="tab:red", alpha=0.12)
        ax.legend(loc="upper left", fontsize="small")
    fig.suptitle(f"{report['asset_id']}: episode {report['episode_id']} "
                 f"(model {report['model']} {report['model_version']})")  # fmt: skip
    fig.savefig(out, dpi=100, format=image)
    plt.close(fig)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")
