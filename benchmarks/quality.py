"""Detection quality: alert episodes back to per-row decisions, and the scores of decisions.

Pure functions, no I/O; `benchmarks.skab` feeds them the events read from the alerts topic
and, only at the very end, the labels.

A row is flagged when it lies inside an episode: from the episode's `started_at` (the first
record of the run above the threshold that opened it, not the k-th record that triggered the
`open` event) to its `ended_at` (the last record above the threshold, carried by the
`resolve` event), both included. An episode still open when the stream ends covers every
row from its start to the last row. This is the worker's own definition of "flagged"
(`anomaly.rules`); the records between `ended_at` and the `resolve` event (below the
threshold, waiting for m of them) are not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from anomaly.records import parse_ts

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class EpisodeSpan:
    """One alert episode of one asset, by record time (epoch seconds); end None: still open."""

    episode_id: str
    asset_id: str
    start: float
    end: float | None


def episodes_from_events(events: Iterable[Mapping[str, Any]]) -> list[EpisodeSpan]:
    """The episodes that `open` and `resolve` events describe, one per episode id (other
    events are skipped).

    Events may repeat (the worker publishes at least once: a replayed batch publishes its
    events again, with the same episode id); a `resolve` closes its episode whichever order
    the copies come in. A `resolve` without its `open` (the open fell before the range read)
    still gives the episode, from its `started_at`.
    """
    starts: dict[str, tuple[str, float]] = {}
    ends: dict[str, float] = {}
    for event in events:
        if event["type"] not in ("open", "resolve"):
            continue  # a sensor's silence (sensor_silent, sensor_resolve) is not an episode
        episode_id = str(event["episode_id"])
        starts.setdefault(episode_id, (str(event["asset_id"]), _epoch(event["started_at"])))
        if event["type"] == "resolve":
            ends[episode_id] = _epoch(event["ended_at"])
    return [
        EpisodeSpan(episode_id, asset_id, start, ends.get(episode_id))
        for episode_id, (asset_id, start) in sorted(starts.items(), key=lambda kv: kv[1][1])
    ]


def row_flags(
    episodes: Iterable[EpisodeSpan], asset_id: str, row_ts: npt.NDArray[np.float64]
) -> BoolArray:
    """Per row of `asset_id` (timestamps in epoch seconds): True inside one of its episodes."""
    flags = np.zeros(len(row_ts), dtype=bool)
    for episode in episodes:
        if episode.asset_id != asset_id:
            continue
        inside = row_ts >= episode.start
        if episode.end is not None:
            inside &= row_ts <= episode.end
        flags |= inside
    return flags


def episode_rows(
    episodes: Iterable[EpisodeSpan], asset_id: str, row_ts: npt.NDArray[np.float64]
) -> list[tuple[str, int, int]]:
    """(episode id, first row, last row) of each episode of `asset_id` that covers a row."""
    out = []
    for episode in episodes:
        if episode.asset_id != asset_id:
            continue
        inside = row_flags([episode], asset_id, row_ts)
        if inside.any():
            rows = np.flatnonzero(inside)
            out.append((episode.episode_id, int(rows[0]), int(rows[-1])))
    return out


@dataclass(frozen=True)
class Confusion:
    """Counts of per-row decisions against labels; pooled by adding."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, flagged: BoolArray, anomalous: BoolArray) -> Confusion:
        """Compare decisions with labels of the same rows."""
        if flagged.shape != anomalous.shape:
            raise ValueError(f"{flagged.shape} decisions for {anomalous.shape} labels")
        return cls(
            tp=int((flagged & anomalous).sum()),
            fp=int((flagged & ~anomalous).sum()),
            fn=int((~flagged & anomalous).sum()),
            tn=int((~flagged & ~anomalous).sum()),
        )

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def rows(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def f1(self) -> float:
        """TP / (TP + (FP + FN) / 2); 1.0 when there is nothing to find and nothing flagged."""
        wrong = self.fp + self.fn
        return self.tp / (self.tp + wrong / 2) if self.tp + wrong else 1.0

    @property
    def far(self) -> float:
        """False-alarm rate FP / (FP + TN): the share of normal rows flagged (0 without any)."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    @property
    def mar(self) -> float:
        """Missed-alarm rate FN / (FN + TP): the share of anomalous rows missed (0 without any)."""
        return self.fn / (self.fn + self.tp) if self.fn + self.tp else 0.0

    def figures(self) -> dict[str, float | int]:
        """Counts and rates, for the results file."""
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
            "f1": round(self.f1, 4), "far": round(self.far, 4), "mar": round(self.mar, 4),
        }  # fmt: skip


def _epoch(value: object) -> float:
    """Epoch seconds of an ISO 8601 time (naive means UTC, as in input records)."""
    return parse_ts(value).timestamp()
