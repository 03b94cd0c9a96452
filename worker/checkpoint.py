"""Alert state that travels with the offsets: saved in each commit, restored with the partition.

Beyond its window, what a worker knows about an asset is its alert-rule state (`RuleState`):
a run of records above the threshold, an open episode (active, or quiet and waiting its hold
to resolve), a raised threshold after an episode that the drop rule ended. When the worker dies
or the partition moves to another worker, that state must follow the offsets, or an open
episode never gets its `resolve` and a run that was one record short of opening one starts
again from zero. So it is written into the offset commit itself (Kafka's offset-commit
metadata, one string per partition): the saved state always describes exactly the records
before the committed offset, and the next owner restores it before it processes the
partition's next record.

Windows are not saved: after a move an asset's first `window - 1` records refill its window
(counted as warming up), as for an asset seen for the first time. Nor are its sensors' state
(anomaly/instruments.py): a sensor stuck across a restart is found again by the new owner
(its `sensor_fault` said again), its readings counted for the few records until it is seen
held, and whether it is stopped (anomaly/states.py). Nor is the judged score's
average of an asset with nothing else to save (anomaly/rules.py): it starts again at the
asset's first record scored there. The drift's average (one value per feature) exists only
while there is something else to save, and is saved with it.

The text is "v1:" + base64(zlib(JSON)). Brokers cap it (Kafka's `offset.metadata.max.bytes`,
4096 bytes by default): when a partition's assets do not fit, open episodes are kept first,
most recent first, and the rest are left out and counted.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from anomaly.rules import Episode, RuleState, SourceRef

PREFIX = "v1:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class Handover:
    """Partitions that changed hands since the last batch: those this worker lost, and those it
    gained with the text committed with their offsets (None where nothing was saved)."""

    lost: frozenset[TopicPartition]
    gained: Mapping[TopicPartition, str | None]


class CheckpointError(ValueError):
    """The committed text is not a checkpoint this version can read."""


# A saved asset takes at least this many bytes of text: more candidates than fit are not even
# written out (the cost of a checkpoint stays bounded in an alert storm).
_MIN_ROW_BYTES = 24


def encode(
    states: Iterable[tuple[str, RuleState]], max_bytes: int, guess: int | None = None
) -> tuple[str, int]:
    """The text for one partition's assets, and how many assets did not fit in `max_bytes`.
    `guess`: how many fitted last time (where to start when not all do)."""
    candidates = list(states)
    # what to keep first when the text is too long: open episodes, then the latest runs
    candidates.sort(key=_priority, reverse=True)
    kept = min(len(candidates), max_bytes // _MIN_ROW_BYTES)
    if guess is not None and guess < kept:
        # a little more room than last time, never more than there are
        kept = min(kept, guess + max(1, guess // 10))
    rows = [_row(asset_id, rules) for asset_id, rules in candidates[:kept]]
    for _ in range(4):
        text = _pack(rows[:kept])
        if len(text) <= max_bytes:
            return text, len(candidates) - kept
        kept = min(kept - 1, int(kept * max_bytes / len(text) * 0.95))
        if kept <= 0:
            break
    return "", len(candidates)


def decode(text: str | None) -> dict[str, RuleState]:
    """Asset id -> rule state from a partition's committed text ("" or None: nothing saved)."""
    if not text:
        return {}
    if not text.startswith(PREFIX):
        raise CheckpointError(f"not a checkpoint: starts with {text[:8]!r}")
    try:
        rows = json.loads(zlib.decompress(base64.b64decode(text[len(PREFIX) :], validate=True)))
        return {row[0]: _rules(row) for row in rows}
    except (ValueError, TypeError, IndexError, zlib.error) as exc:
        raise CheckpointError(f"unreadable checkpoint: {exc}") from exc


def _priority(candidate: tuple[str, RuleState]) -> tuple[bool, datetime]:
    """Open episodes before runs and raised thresholds, the latest (episode end, run start)
    first."""
    rules = candidate[1]
    if rules.episode is not None:
        return True, rules.episode.ended_at
    return False, rules.run_start[0] if rules.run_start is not None else _EPOCH


def _pack(rows: list[list[Any]]) -> str:
    packed = zlib.compress(json.dumps(rows, separators=(",", ":")).encode(), 6)
    return PREFIX + base64.b64encode(packed).decode()


def _row(asset_id: str, rules: RuleState) -> list[Any]:
    run = None
    if rules.above_run and rules.run_start is not None:
        ts, ref = rules.run_start
        run = [_us(ts), *_ref(ref)]
    episode = rules.episode
    saved = None
    if episode is not None:
        saved = [
            episode.episode_id, _ref(episode.start), _us(episode.started_at),
            _us(episode.ended_at), episode.records, episode.peak_score, episode.span,
        ]  # fmt: skip
        resumed = episode.resumed
        later = [
            None if resumed is None else [_us(resumed[0]), *_ref(resumed[1])],
            episode.held,
            episode.incident,
        ]
        while later and later[-1] is None:  # what an older reader knows ends the row
            later.pop()
        saved += later
    drift = None if rules.drift is None else rules.drift.tolist()
    return [asset_id, rules.above_run, rules.below_run, run, rules.run_peak, saved, rules.level,
            rules.drop_run, rules.floor, int(rules.quiet), rules.judged, drift]  # fmt: skip


def _rules(row: list[Any]) -> RuleState:
    # rows written before the hold and the judged score existed (0.4) have 9 fields, before
    # the drift (0.5) 11
    asset_id, above_run, below_run, run, run_peak, saved, level, drop_run, floor, *later = row
    if not isinstance(asset_id, str):
        raise TypeError(f"asset id {asset_id!r}")
    quiet, judged, drift = [*later, None][:3] if later else (0, None, None)
    rules = RuleState(above_run=int(above_run), below_run=int(below_run), level=float(level),
                      drop_run=int(drop_run), floor=float(floor), quiet=bool(quiet),
                      judged=None if judged is None else float(judged))  # fmt: skip
    if drift is not None:
        rules.drift = np.array(drift, dtype=np.float64)
    rules.run_peak = float(run_peak)
    if isinstance(run, list):
        rules.run_start = (_ts(run[0]), SourceRef(run[1], int(run[2]), int(run[3])))
    if isinstance(saved, list):
        episode_id, start, started, ended, records, peak, span, *later = saved
        resumed, held, incident = [*later, None, None, None][:3]
        rules.episode = Episode(
            episode_id=str(episode_id),
            start=SourceRef(start[0], int(start[1]), int(start[2])),
            started_at=_ts(started),
            ended_at=_ts(ended),
            records=int(records),
            peak_score=float(peak),
            span=int(span),
            held=None if held is None else str(held),
            incident=None if incident is None else str(incident),
        )
        if resumed is not None:  # [time, topic, partition, offset] (absent, null: never resumed)
            at, topic, partition, offset = resumed
            rules.episode.resumed = (_ts(at), SourceRef(topic, int(partition), int(offset)))
    return rules


def _ref(ref: SourceRef) -> list[Any]:
    return [ref.topic, ref.partition, ref.offset]


def _us(ts: datetime) -> int:
    """Microseconds since the epoch, exactly (below 2**53, float seconds round back)."""
    return round(ts.timestamp() * 1_000_000)


def _ts(us: Any) -> datetime:
    return _EPOCH + int(us) * _US
