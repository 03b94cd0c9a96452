"""Detection quality: alert episodes back to per-row decisions, and the scores of decisions.

Pure functions, no I/O; `benchmarks.skab` feeds them the events read from the alerts topic
and, only at the very end, the labels.

A row is flagged when it lies inside an episode: from the episode's `started_at` (the first
record of the run above the threshold that opened it, not the k-th record that triggered the
`open` event) to its `ended_at` (the last record above the threshold, carried by the
`resolve` event), both included, less the quiet gaps it resumed from (after a `quiet`
event's `ended_at`, before the next `resume` event's `resumed_at`). An episode still open when
the stream ends covers every row from its start to the last row (to its last `quiet` when it
is quiet). This is the worker's own definition of "flagged" (`anomaly.replay.flags`); the
records between `ended_at` and the `resolve` event (below the threshold, waiting for m of
them and the hold) are not flagged.

Events are counted as an operator meets them (`Encounter`): each episode is one page, on the
anomaly when it covers a labelled row, a false page when it lies wholly on normal rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from anomaly.records import parse_ts

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class EpisodeSpan:
    """One alert episode of one asset, by record time (epoch seconds); end None: still open.
    `gaps`: the quiet stretches it resumed from (after a `quiet` event's `ended_at`, before
    the `resume` event's `resumed_at`, both excluded): not flagged, though the episode (one
    page) spans them."""

    episode_id: str
    asset_id: str
    start: float
    end: float | None
    gaps: tuple[tuple[float, float], ...] = ()


def episodes_from_events(events: Iterable[Mapping[str, Any]]) -> list[EpisodeSpan]:
    """The episodes that `open`, `quiet`, `resume` and `resolve` events describe, one per
    episode id (other events are skipped).

    Events may repeat (the worker publishes at least once: a replayed batch publishes its
    events again, with the same episode id); a `resolve` closes its episode whichever order
    the copies come in. A `resolve` without its `open` (the open fell before the range read)
    still gives the episode, from its `started_at`. An episode left quiet when the events
    end ends at its last `quiet`'s `ended_at`.
    """
    starts: dict[str, tuple[str, float]] = {}
    ends: dict[str, float] = {}
    quiets: dict[str, set[float]] = {}
    resumes: dict[str, set[float]] = {}
    for event in events:
        kind = event["type"]
        if kind not in ("open", "quiet", "resume", "resolve"):
            continue  # a sensor's silence (sensor_silent, sensor_resolve) is not an episode
        episode_id = str(event["episode_id"])
        starts.setdefault(episode_id, (str(event["asset_id"]), _epoch(event["started_at"])))
        if kind == "resolve":
            ends[episode_id] = _epoch(event["ended_at"])
        elif kind == "quiet":
            quiets.setdefault(episode_id, set()).add(_epoch(event["ended_at"]))
        elif kind == "resume":
            resumes.setdefault(episode_id, set()).add(_epoch(event["resumed_at"]))
    out = []
    for episode_id, (asset_id, start) in sorted(starts.items(), key=lambda kv: kv[1][1]):
        quiet, resumed = sorted(quiets.get(episode_id, ())), sorted(resumes.get(episode_id, ()))
        gaps = tuple(
            (max(q for q in quiet if q < r), r) for r in resumed if any(q < r for q in quiet)
        )
        end = ends.get(episode_id)
        if end is None and quiet and (not resumed or quiet[-1] > resumed[-1]):
            end = quiet[-1]  # quiet when the events end: its records above ended there
        out.append(EpisodeSpan(episode_id, asset_id, start, end, gaps))
    return out


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
        for after, before in episode.gaps:
            inside &= (row_ts <= after) | (row_ts >= before)
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


# Events as an operator meets them: each episode is one page.
DAY_S = 86_400.0


@dataclass(frozen=True)
class Encounter:
    """One file's episodes as an operator meets them, against its labelled rows.

    `on_anomaly`: episodes covering at least one labelled row; `false_pages`: episodes wholly
    on normal rows; `delay_rows` / `delay_s`: from the first labelled row to the first one
    flagged, 0 when an episode was already active at the anomaly's first row (one quiet then
    counts from its resume); None when no labelled row is flagged (a miss) or there is none
    (`anomalous`).
    """

    anomalous: bool
    on_anomaly: int
    false_pages: int
    delay_rows: int | None
    delay_s: float | None

    @classmethod
    def of(
        cls,
        spans: Sequence[tuple[int, int]],
        labels: BoolArray,
        row_ts: npt.NDArray[np.float64],
        flags: BoolArray | None = None,
    ) -> Encounter:
        """From each episode's first and last row (both included) among the scored rows, the
        rows' labels and their timestamps (epoch seconds), and the rows flagged (None: every
        row of a span, as for episodes that never went quiet)."""
        if labels.shape != row_ts.shape:
            raise ValueError(f"{labels.shape} labels for {row_ts.shape} timestamps")
        anomalous = np.flatnonzero(labels)
        on = sum(bool(labels[first : last + 1].any()) for first, last in spans)
        if flags is None:
            flags = np.zeros(len(labels), dtype=bool)
            for first, last in spans:
                flags[first : last + 1] = True
        met = np.flatnonzero(flags & labels)
        if not len(anomalous) or not len(met):
            return cls(bool(len(anomalous)), on, len(spans) - on, None, None)
        # an episode active at the anomaly's first row (begun before it) meets it at once
        onset, first = int(anomalous[0]), int(met[0])
        delay_s = float(row_ts[first] - row_ts[onset])
        return cls(True, on, len(spans) - on, first - onset, delay_s)

    @property
    def pages(self) -> int:
        """Every episode the operator met on these rows."""
        return self.on_anomaly + self.false_pages

    def figures(self) -> dict[str, Any]:
        """The counts and the delay, for the results file."""
        return {
            "episodes_on_anomaly": self.on_anomaly, "false_pages": self.false_pages,
            "delay_rows": self.delay_rows,
            "delay_s": None if self.delay_s is None else round(self.delay_s, 3),
        }  # fmt: skip


def duration_s(row_ts: npt.NDArray[np.float64]) -> float:
    """The time the rows stand for: from the first timestamp to the last plus one median
    step (each row stands for one sampling interval: 960 rows 3 minutes apart are 48 h);
    0 for fewer than 2 rows."""
    if len(row_ts) < 2:
        return 0.0
    return float(row_ts[-1] - row_ts[0] + np.median(np.diff(row_ts)))


def per_day(episodes: int, seconds: float) -> float | None:
    """Episodes per 24 h of data (None without any data)."""
    return episodes * DAY_S / seconds if seconds > 0 else None


def detection_rate(flagged: BoolArray, labels: BoolArray) -> float | None:
    """The share of labelled rows flagged (1 - MAR); None without a labelled row."""
    anomalous = int(labels.sum())
    return int((flagged & labels).sum()) / anomalous if anomalous else None


def before_anomaly(flagged: BoolArray, labels: BoolArray) -> tuple[int, int]:
    """(rows flagged, rows) before the first labelled row: every row when none is labelled."""
    anomalous = np.flatnonzero(labels)
    first = int(anomalous[0]) if len(anomalous) else len(labels)
    return int(flagged[:first].sum()), first


def share(part: int, whole: int) -> float | None:
    """part / whole rounded for the results file; None when whole is 0."""
    return round(part / whole, 4) if whole else None
