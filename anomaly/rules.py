"""Alert episodes per asset: open after k records in a row above the threshold, resolve after m
in a row below, or after m in a row that score less than 1/drop of the episode's own level.

An episode spans from the first record of the run that opened it to the last record above the
threshold before the run that resolved it; a record inside that span is "flagged". `RuleState`
is the pure state machine; `event_json` writes the events the worker publishes.

The drop rule (`drop` > 1, the worker's `WORKER_ALERTS__END_DROP`) ends an episode when the
state that opened it has ended even though the asset has not come back to what the model knows
as normal: a test rig that settles a little off its training state after a fault would
otherwise stay in one episode for good. The episode's level is the geometric mean of its
scores (over the opening run, then an exponential average with rate LEVEL_RATE over its
records above the threshold); m records in a row above the threshold but below level / drop
resolve it. The asset then keeps that line (level / drop) as a raised threshold of its own, so
the new state does not reopen an episode at once; the raised threshold is cleared when m
records in a row score below the model's threshold again (back to normal). Four numbers per
asset: `level`, `drop_run`, `floor` and the counters already there.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import numpy.typing as npt

EventType = Literal["open", "resolve"]

# How fast an episode's level follows its scores (an exponential average of log scores).
LEVEL_RATE = 0.05
_TINY = 1e-300  # log of an exactly zero score


@dataclass(frozen=True)
class SourceRef:
    """Where a record came from."""

    topic: str
    partition: int
    offset: int


@dataclass
class Episode:
    """An open (or just resolved) alert episode of one asset."""

    episode_id: str
    start: SourceRef
    started_at: datetime
    ended_at: datetime
    records: int
    peak_score: float
    span: int  # records since the start, including the below-threshold ones at the end


@dataclass
class RuleState:
    """One asset's progress through the alert rules.

    `level`: the open episode's (or the current run's) mean log score; `drop_run`: records in
    a row below level / drop in an episode; `floor`: the asset's raised threshold after an
    episode ended by the drop rule (0.0: none). Outside an episode with a floor set,
    `below_run` counts the records in a row below the model's threshold that clear it.
    """

    above_run: int = 0
    below_run: int = 0
    run_start: tuple[datetime, SourceRef] | None = None
    run_peak: float = 0.0
    episode: Episode | None = None
    level: float = 0.0
    drop_run: int = 0
    floor: float = 0.0

    @property
    def idle(self) -> bool:
        """True when a record below the model's threshold would change nothing."""
        return self.episode is None and self.above_run == 0 and not self.floor

    def observe(
        self,
        ts: datetime,
        ref: SourceRef,
        score: float,
        above: bool,
        k: int,
        m: int,
        drop: float = 0.0,
    ) -> tuple[EventType, Episode] | None:
        """Advance by one scored record (`above`: over the model's threshold); returns the event
        it triggers, if any. `drop` > 1 turns the drop rule on (see the module's docstring)."""
        episode = self.episode
        if self.floor and episode is None:
            self.below_run = 0 if above else self.below_run + 1
            if self.below_run >= m:  # back to normal: the raised threshold is cleared
                self.floor, self.below_run = 0.0, 0
        above = above and (not self.floor or score > self.floor)
        if episode is not None:
            episode.span += 1
        if above:
            log_score = math.log(max(score, _TINY))
            self.below_run = 0
            if self.above_run == 0:
                self.run_start, self.run_peak = (ts, ref), score
                if episode is None:
                    self.level = log_score
            elif episode is None:  # the opening run's mean log score
                self.level += (log_score - self.level) / (self.above_run + 1)
            self.above_run += 1
            self.run_peak = max(self.run_peak, score)
            if episode is not None:
                if drop > 1.0 and log_score < self.level - math.log(drop):
                    self.drop_run += 1
                    if self.drop_run >= m:  # the state that opened the episode has ended
                        self.floor = math.exp(self.level) / drop
                        self.episode, self.above_run, self.drop_run = None, 0, 0
                        return "resolve", episode
                    return None
                self.drop_run = 0
                self.level += LEVEL_RATE * (log_score - self.level)
                episode.records, episode.ended_at = episode.span, ts
                episode.peak_score = max(episode.peak_score, score)
                return None
            if self.above_run >= k:
                assert self.run_start is not None
                start_ts, start_ref = self.run_start
                self.episode = Episode(
                    episode_id=f"{start_ref.topic}/{start_ref.partition}/{start_ref.offset}",
                    start=start_ref,
                    started_at=start_ts,
                    ended_at=ts,
                    records=self.above_run,
                    peak_score=self.run_peak,
                    span=self.above_run,
                )
                self.drop_run = 0
                return "open", self.episode
            return None
        self.above_run = 0
        if episode is None:
            return None
        self.drop_run = 0
        self.below_run += 1
        if self.below_run >= m:
            self.episode, self.below_run = None, 0
            return "resolve", episode
        return None


def flag_episodes(
    above: npt.NDArray[np.bool_],
    k: int,
    m: int,
    scores: npt.NDArray[np.float64] | None = None,
    drop: float = 0.0,
) -> npt.NDArray[np.bool_]:
    """Which of one asset's consecutive records lie inside an episode, by the worker's rules.

    This is how training and evaluations turn scores back into per-record decisions. The drop
    rule needs the scores (`drop` > 1 with `scores`); without them only k and m apply.
    """
    state, episodes = RuleState(), []
    origin = datetime.fromtimestamp(0, UTC)
    values = scores.tolist() if scores is not None else [0.0] * len(above)
    drop = drop if scores is not None else 0.0
    for i, is_above in enumerate(above.tolist()):
        change = state.observe(origin, SourceRef("", 0, i), values[i], is_above, k, m, drop)
        if change is not None and change[0] == "open":
            episodes.append(change[1])
    flags = np.zeros(len(above), dtype=bool)
    for episode in episodes:
        flags[episode.start.offset : episode.start.offset + episode.records] = True
    return flags


@dataclass(frozen=True)
class EventContext:
    """What every event of a batch shares: the model that scored it and when."""

    model_version: str
    threshold: float
    features: tuple[str, ...]
    top_features: int
    detected_at: datetime


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
) -> bytes:
    """The JSON of an open or resolve event, triggered by the record at `ref`."""
    event: dict[str, object] = {
        "type": kind,
        "episode_id": episode.episode_id,
        "asset_id": asset_id,
        "ts": _iso(ts),
        "source": {"topic": ref.topic, "partition": ref.partition, "offset": ref.offset},
        "score": score,
        "threshold": context.threshold,
        "model_version": context.model_version,
        "top_features": top_features(shares, context.features, context.top_features),
        "detected_at": _iso(context.detected_at),
        "started_at": _iso(episode.started_at),
    }
    if kind == "resolve":
        event.update(
            ended_at=_iso(episode.ended_at),
            records=episode.records,
            peak_score=episode.peak_score,
        )
    if reason is not None:
        event["reason"] = reason
    return json.dumps(event).encode()


def top_features(
    shares: npt.NDArray[np.float64] | None, features: tuple[str, ...], n: int
) -> list[dict[str, object]]:
    """The n features with the largest share of the error, largest first."""
    if shares is None:
        return []
    order = np.argsort(-shares, kind="stable")[:n]
    return [{"feature": features[i], "share": round(float(shares[i]), 4)} for i in order]


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
