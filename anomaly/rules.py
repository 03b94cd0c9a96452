"""The alert rules: one value (`Rules`), one streaming state machine (`RuleState`), and the
offline entry points built on it (`changes`, `flags`).

Episodes per asset: open after k records in a row above the threshold; go quiet after m in a
row below, or after m in a row that score less than 1/drop of the episode's own level; resolve
once quiet for `resolve_after_s` seconds of record time. A run of k records above while quiet
joins the episode again (`resume`): one fault that dips under its threshold and comes back is
one episode, one page, whether the asset reports every second or every three minutes.
An episode's active stretches run from the first record of the run that opened (or resumed)
it to its last record above the threshold before it went quiet; a record inside one is
"flagged". A quiet gap is not (the asset was back within its normal), though the episode, and
its page, stay open through it.

Events, per asset: `open` (the page), then any number of `quiet` (the asset went back under:
the episode resolves after the hold unless the fault returns) and `resume` (it returned, same
episode, no new page), then `resolve`. With `resolve_after_s` 0 an episode resolves at its
m-th record below, as before the hold existed (manifest formats 1 to 4).

`Rules` is recorded in each model's manifest when it is trained: the worker applies the
rules of the model it serves (an operator may override them, WORKER_ALERTS__*), and the
training job's cleaning, the gate's labelled check and the benchmarks' replay apply the same
value through `flags`/`changes`, which run the very state machine the worker runs.

The drop rule (`end_drop` > 1) ends an episode when the
state that opened it has ended even though the asset has not come back to what the model knows
as normal: a test rig that settles a little off its training state after a fault would
otherwise stay in one episode for good. The episode's level is the geometric mean of its
scores (over the opening run, then an exponential average with rate LEVEL_RATE over its
records above the threshold); m records in a row above the threshold but below level / drop
resolve it. The asset then keeps that line (level / drop) as a raised threshold of its own, so
the new state does not reopen an episode at once; the raised threshold is cleared when m
records in a row score below the model's threshold again (back to normal). Four numbers per
asset: `level`, `drop_run`, `floor` and the counters already there.

The judged score (`score_rate` < 1): each record is judged, against the threshold and by every
rule below, by an exponential average of its asset's log scores, not by its own score alone.
The rate is 1 / the model's window unless set (`Rules.for_window`, at training: 0.1 at the
default window of 10, about the last ten records; a window-1 model judges each record by its
own score, as a window of one asks). A fault whose scores wander around the threshold (a
process that its control loops partly compensate) stays above it instead of opening and
closing episodes, and a blip of one or two records above it opens none; a large excess still
crosses within a few records (ten times the average: within 3 at rate 0.1). The average starts at an
asset's first scored record; it is saved with the offsets only with the rest of an asset's
rule state (worker/checkpoint.py): an asset with nothing to save starts again at its first
record after a restart, as its window does.

The drift (a model with one: anomaly/model/drift.py): while an episode is active, a record
whose asset's residuals are drifting counts as above the threshold even when its judged score
is not, so a fault that its control loops bring back under the threshold while some sensor
stays displaced stays one active episode. Nothing else: drift never starts a run, opens,
resumes or holds a quiet episode (a normal day pages as without it), and the episode's level
(and the drop rule that reads it) follows the judged score alone, so a fault whose state has
changed still ends by the drop rule. The average runs only while the rules follow the asset
(`RuleState.step`): from a record above the threshold until the asset is idle again, when it
is dropped. An asset at rest costs nothing, and what there is to save with the offsets is
exactly what there is to continue from.

The onset rule (`onset_step` > 0): outside an episode, a run above the threshold starts only
at a record with onset evidence: some sensor has just stepped (its short mean moved by more
than `onset_step` noise units within the last `onset_span` records), or the score is more
than `onset_bypass` times the threshold. Records above the threshold before that are not
counted; once started, the run goes on while the records stay above, and opens an episode
after k of them as before, starting at its first record. A model whose normal slowly drifts
away from its training (scores creeping over the threshold for hours) then stays quiet, while
a fault that moves a sensor, or one the model sees as far out, opens an episode about as
soon as before (anomaly/onset.py: the confirmation delay). The state machine takes that
evidence per record (`onset`); anomaly/onset.py computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

EventType = Literal["open", "quiet", "resume", "resolve"]

# How fast an episode's level follows its scores (an exponential average of log scores).
LEVEL_RATE = 0.05
_TINY = 1e-300  # log of an exactly zero score
# How long a quiet episode waits before it resolves (Rules.resolve_after_s): a fault that
# dips under its threshold and returns within the hour is still one fault.
HOLD_S = 3600.0


class Rules(BaseModel):
    """When episodes open and end: k (`open_after`), m (`resolve_after`), the drop rule
    (`end_drop` > 1 turns it on; 0 or 1: off), the onset rule (`onset_step` > 0 turns it on;
    see anomaly/onset.py) and the hold (`resolve_after_s`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    open_after: int = Field(default=3, ge=1, description="k: records in a row above to open")
    resolve_after: int = Field(default=5, ge=1, description="m: records in a row below to end")
    end_drop: float = Field(
        default=2.0,
        ge=0.0,
        description="end an episode after m records under its own level / end_drop (0, 1: off)",
    )
    onset_step: float = Field(
        default=8.0,
        ge=0.0,
        description="open only once some sensor's short mean moved by more than this many "
        "noise units within onset_span records (0: off)",
    )
    onset_span: int = Field(default=60, ge=2, description="records a step may take")
    onset_mean: int = Field(default=5, ge=1, description="records in the short mean")
    onset_bypass: float = Field(
        default=10.0,
        ge=0.0,
        description="a score over this many times the threshold opens without a step (0: off)",
    )
    score_rate: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="a record is judged by an exponential average of its asset's log scores "
        "at this rate (1: by its own score; None: 1 / the model's window, set at training)",
    )
    resolve_after_s: float = Field(
        default=HOLD_S,
        ge=0.0,
        description="seconds (record time) an episode stays open once quiet; a run of k above "
        "in that time resumes it (0: resolve at once)",
    )

    @model_validator(mode="after")
    def _mean_within_span(self) -> Rules:
        if self.onset_mean >= self.onset_span:
            raise ValueError("onset_mean must be below onset_span")
        return self

    @property
    def history(self) -> int:
        """Records of an asset's past the onset rule reads (0 when it is off)."""
        return self.onset_span if self.onset_step > 0 else 0

    def for_window(self, window: int) -> Rules:
        """These rules for a model of `window` records: the judged score's rate, where left
        to the model, 1 / window (its average spans about as many records as a window)."""
        if self.score_rate is not None:
            return self
        return self.model_copy(update={"score_rate": 1.0 / window})

    def without_onset(self) -> Rules:
        return self.model_copy(update={"onset_step": 0.0})


class Drifting(Protocol):
    """A model's residual drift (anomaly.model.drift.Drift)."""

    def advance(
        self, z: npt.NDArray[np.float64] | None, residual: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], float]: ...


@dataclass(frozen=True)
class SourceRef:
    """Where a record came from."""

    topic: str
    partition: int
    offset: int


class Mark(NamedTuple):
    """One scored record as the rules read it: its time, where it came from, its (judged)
    score, whether that is over its threshold, and whether the onset rule sees a step or a
    far excess at it (always True when the rule is off: anomaly/onset.py)."""

    ts: datetime
    ref: SourceRef
    score: float
    above: bool
    onset: bool = True


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
    # the first record of the run that last resumed it (None: never resumed); its records
    # from there to `records` are the active stretch, the quiet gap before it is not flagged
    resumed: tuple[datetime, SourceRef] | None = None
    # why its page is held back (anomaly/calendar.py: a maintenance window or a shelf), as of
    # its asset's latest record; None: it pages. The rules never set it: the worker does.
    held: str | None = None
    # the incident its page belongs to (anomaly/incidents.py: its own id while alone); None:
    # it does not page. The rules never set it: the worker does.
    incident: str | None = None


@dataclass
class RuleState:
    """One asset's progress through the alert rules.

    `level`: the open episode's (or the current run's) mean log score; `drop_run`: records in
    a row below level / drop in an episode; `floor`: the asset's raised threshold after an
    episode ended by the drop rule (0.0: none). Outside an active episode with a floor set,
    `below_run` counts the records in a row below the model's threshold that clear it.
    `quiet`: the episode has ended its records above and waits `resolve_after_s` (from its
    `ended_at`) to resolve; a run of k above resumes it. `judged` and `drift`: the averages
    its records are judged by (`judge`, anomaly/model/drift.py).
    """

    above_run: int = 0
    below_run: int = 0
    run_start: tuple[datetime, SourceRef] | None = None
    run_peak: float = 0.0
    episode: Episode | None = None
    level: float = 0.0
    drop_run: int = 0
    floor: float = 0.0
    quiet: bool = False
    judged: float | None = None  # the average log score (None: no record scored yet)
    # the average of its residuals while the rules follow it (`step`; None: idle, or no drift)
    drift: npt.NDArray[np.float64] | None = None

    def step(
        self,
        mark: Mark,
        rules: Rules,
        residual: npt.NDArray[np.float64] | None,
        drift: Drifting | None,
    ) -> tuple[EventType, Episode] | None:
        """`observe` with the residual drift: a record above the threshold, or one of an asset
        the rules follow, advances the asset's average by its `residual` (`drift` None: the
        model has none); an asset idle after it drops the average."""
        drifting = False
        if drift is not None and residual is not None and (mark.above or not self.idle):
            self.drift, excess = drift.advance(self.drift, residual)
            drifting = excess > 1.0
        change = self.observe(mark, rules, drifting)
        if self.drift is not None and self.idle:
            self.drift = None
        return change

    def judge(self, score: float, rules: Rules) -> float:
        """The score this record is judged by (and advance the average by it); a rate left
        unset (`Rules.for_window` sets it) judges each record by its own score."""
        rate = rules.score_rate or 1.0
        self.judged = average(self.judged, score, rate)
        return score if rate >= 1.0 else math.exp(self.judged)

    @property
    def idle(self) -> bool:
        """True when a record below the model's threshold would change nothing."""
        return self.episode is None and self.above_run == 0 and not self.floor

    def observe(
        self, mark: Mark, rules: Rules, drifting: bool = False
    ) -> tuple[EventType, Episode] | None:
        """Advance by one scored record (`drifting`: its asset's residuals drift); returns the
        event it triggers, if any."""
        episode = self.episode
        active = episode is not None and not self.quiet
        above = self._counts_above(mark, rules, active, drifting)
        if episode is not None:
            episode.span += 1
        if above and not (mark.onset or active or self.above_run):
            return None  # the onset rule: a run starts only at an onset (resumes too)
        if not above:
            return self._below(mark.ts, rules)
        return self._above(mark, rules, active)

    def _counts_above(self, mark: Mark, rules: Rules, active: bool, drifting: bool) -> bool:
        """Whether the record counts as above: over the model's threshold and any raised
        one (cleared once back to normal), or drifting within an active episode."""
        if self.floor and not active:
            self.below_run = 0 if mark.above else self.below_run + 1
            if self.below_run >= rules.resolve_after:  # back to normal: the floor is cleared
                self.floor, self.below_run = 0.0, 0
        floor_cleared = not self.floor or mark.score > self.floor
        return (mark.above and floor_cleared) or (active and drifting)

    def _below(self, ts: datetime, rules: Rules) -> tuple[EventType, Episode] | None:
        self.above_run = 0
        if self.episode is None:
            return None
        if self.quiet:
            return self._hold(ts, rules)
        self.drop_run = 0
        self.below_run += 1
        return self._quieten(ts, rules) if self.below_run >= rules.resolve_after else None

    def _above(self, mark: Mark, rules: Rules, active: bool) -> tuple[EventType, Episode] | None:
        ts, score, episode = mark.ts, mark.score, self.episode
        log_score = math.log(max(score, _TINY))
        self.below_run = 0
        if self.above_run == 0:
            self.run_start, self.run_peak = (ts, mark.ref), score
            if not active:
                self.level = log_score
        elif not active:  # the opening (or resuming) run's mean log score
            self.level += (log_score - self.level) / (self.above_run + 1)
        self.above_run += 1
        self.run_peak = max(self.run_peak, score)
        if episode is None:
            return self._open(ts) if self.above_run >= rules.open_after else None
        if self.quiet:  # a run of k above joins the episode again
            if self.above_run < rules.open_after:
                return None
            self.quiet, self.drop_run = False, 0
            episode.records, episode.ended_at, episode.resumed = episode.span, ts, self.run_start
            episode.peak_score = max(episode.peak_score, self.run_peak)
            return "resume", episode
        drop = rules.end_drop
        if drop > 1.0 and log_score < self.level - math.log(drop):
            self.drop_run += 1
            if self.drop_run < rules.resolve_after:
                return None
            # the state that opened the episode has ended: the asset keeps level / drop as
            # its threshold until it is back to normal
            self.floor = math.exp(self.level) / drop
            return self._quieten(ts, rules)
        self.drop_run = 0
        self.level += LEVEL_RATE * (log_score - self.level)
        episode.records, episode.ended_at = episode.span, ts
        episode.peak_score = max(episode.peak_score, score)
        return None

    def _open(self, ts: datetime) -> tuple[EventType, Episode]:
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

    def _quieten(self, ts: datetime, rules: Rules) -> tuple[EventType, Episode]:
        """The episode's records above have ended (m below, or m under its level / drop)."""
        self.quiet, self.above_run, self.below_run, self.drop_run = True, 0, 0, 0
        return self._hold(ts, rules) or ("quiet", self._episode())

    def _hold(self, ts: datetime, rules: Rules) -> tuple[EventType, Episode] | None:
        """A quiet episode resolves once `resolve_after_s` have passed since its last record
        above."""
        episode = self._episode()
        if (ts - episode.ended_at).total_seconds() < rules.resolve_after_s:
            return None
        self.episode, self.quiet, self.above_run = None, False, 0
        return "resolve", episode

    def _episode(self) -> Episode:
        assert self.episode is not None
        return self.episode


def average(previous: float | None, score: float, rate: float) -> float:
    """An asset's average log score after one more record (`previous` None: its first)."""
    log_score = math.log(max(score, _TINY))
    return log_score if previous is None else previous + rate * (log_score - previous)
