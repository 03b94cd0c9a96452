"""The decide stage: each scored record advances its asset's alert rules (anomaly/rules.py),
in order, with its onset evidence and residual (the drift's); what changed is returned.

An asset at rest (below its threshold with nothing open) is skipped: its rules would not
change, which is the common case. The assets whose rules moved are noted with their
partition (worker/partitions.py: what is saved with its offsets).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from anomaly.rules import Episode, EventType, Mark, SourceRef
from worker.partitions import PartitionStates
from worker.score import Scored


@dataclass(frozen=True)
class Change:
    """An alert event to publish: the `row`-th scored record opened, quieted, resumed or
    resolved its asset's episode, with the judged `score`."""

    row: int
    kind: EventType
    episode: Episode
    ref: SourceRef
    score: float


@dataclass
class Decided:
    """The changes of one model's records, and every record whose asset's rules moved, with
    whether its episode is open after it (the board's alarm rows follow those)."""

    changes: list[Change] = field(default_factory=list)
    followed: list[tuple[int, bool]] = field(default_factory=list)


def decide(scored: Scored, partitions: PartitionStates) -> Decided:
    """Advance each asset's rules by its records of the batch, in order."""
    decided = Decided()
    rules = scored.windows.served.rules
    drift = scored.windows.served.artifact.detector.drift
    pending, judged, onset, residual = (
        scored.windows.pending, scored.judged, scored.onset, scored.scores.residual
    )  # fmt: skip
    for i, is_above in enumerate(scored.above.tolist()):
        message, state, asset_id, ts, _ = pending[i]
        if not is_above and state.rules.idle:
            continue  # nothing to track: the rules would not change (the common case)
        ref = SourceRef(message.topic, message.partition, message.offset)
        score = float(judged[i])
        mark = Mark(ts, ref, score, is_above, bool(onset[i]))
        change = state.rules.step(mark, rules, residual[i], drift)
        partitions.observed(asset_id, state)
        if change is not None:  # the episode as of this record (later ones move it on)
            decided.changes.append(Change(i, change[0], replace(change[1]), ref, score))
        decided.followed.append((i, state.rules.episode is not None))
    return decided
