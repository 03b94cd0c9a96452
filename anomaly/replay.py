"""The alert rules over one asset's series offline: the events its scored records trigger
(`changes`) and the records inside an episode's active stretches (`flags`), stepping the same
`RuleState` the worker steps per record (anomaly/rules.py). What the offline replay, the
training job's cleaning and gate, and the evaluations read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from anomaly.rules import Drifting, Episode, EventType, Mark, Rules, RuleState, SourceRef


def judged_scores(scores: npt.NDArray[np.float64], rules: Rules) -> npt.NDArray[np.float64]:
    """What each of one asset's consecutive scores is judged by (`RuleState.judge`, from the
    first): how the offline replay, the cleaning and the gate see what the worker sees."""
    state = RuleState()
    return np.array([state.judge(score, rules) for score in scores.tolist()])  # float64, even empty


def changes(
    scores: npt.NDArray[np.float64],
    above: npt.NDArray[np.bool_],
    rules: Rules,
    times: Sequence[datetime] | None = None,
    onset: npt.NDArray[np.bool_] | None = None,
    residuals: npt.NDArray[np.float64] | None = None,
    drift: Drifting | None = None,
) -> Iterator[tuple[int, EventType, Episode]]:
    """The events one asset's consecutive scored records trigger, as the worker would publish
    them: (index of the record that triggers it, type, episode). An episode's `start.offset`
    is the index of its first record; `times` (one per record) dates the episodes; `onset`
    (one per record, anomaly.onset) is the onset rule's evidence (None: always there);
    `residuals` (one row per record) and `drift` the model's residual drift (None: none)."""
    state = RuleState()
    origin = datetime.fromtimestamp(0, UTC)
    evidence = [True] * len(scores) if onset is None else onset.tolist()
    for i, (score, is_above) in enumerate(zip(scores.tolist(), above.tolist(), strict=True)):
        ts = times[i] if times is not None else origin
        residual = residuals[i] if residuals is not None else None
        change = state.step(
            Mark(ts, SourceRef("", 0, i), score, is_above, evidence[i]), rules, residual, drift
        )
        if change is not None:
            yield i, change[0], change[1]


def flags(
    scores: npt.NDArray[np.float64],
    above: npt.NDArray[np.bool_],
    rules: Rules,
    onset: npt.NDArray[np.bool_] | None = None,
    residuals: npt.NDArray[np.float64] | None = None,
    drift: Drifting | None = None,
) -> npt.NDArray[np.bool_]:
    """Which of one asset's consecutive scored records lie inside an episode's active
    stretches (from its opening or a resume to its last record above before it went quiet),
    by `rules`: how training and evaluations turn scores back into per-record decisions."""
    out = np.zeros(len(above), dtype=bool)
    active: dict[str, tuple[int, Episode]] = {}  # episode id -> its stretch's first record
    for _, kind, episode in changes(scores, above, rules, None, onset, residuals, drift):
        if kind == "open":
            active[episode.episode_id] = (episode.start.offset, episode)
        elif kind == "resume" and episode.resumed is not None:
            active[episode.episode_id] = (episode.resumed[1].offset, episode)
        elif episode.episode_id in active:  # quiet, or resolved while active
            first, _ = active.pop(episode.episode_id)
            out[first : episode.start.offset + episode.records] = True
    for first, episode in active.values():  # still active when the records end
        out[first : episode.start.offset + episode.records] = True
    return out
