"""The decide stage: each scored record advances its asset's alert rules (anomaly/rules.py),
in order, with its onset evidence and residual (the drift's); what changed is returned.

An asset at rest (below its threshold with nothing open) is skipped: its rules would not
change, which is the common case. The assets whose rules moved are noted with their
partition (worker/partitions.py: what is saved with its offsets).

An open episode's page is held back while the calendar holds its asset at the record's time
(anomaly/calendar.py: a maintenance window that suppresses alerts, a shelf): it opens
`suppressed`, or is `suppress`ed when a hold starts; once no hold covers a record of its
asset while it is active, it is `unsuppress`ed: it pages then. A quiet episode waits: it
pages only if it resumes, and resolves unpaged otherwise.

An episode that starts paging (it opens unheld, or is unsuppressed) joins an incident
(anomaly/incidents.py: its own, or one of other assets' episodes of the same cause); one that
stops (it resolves, or is suppressed) leaves it. The incident's events come with the
episode's changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import numpy.typing as npt

from anomaly.calendar import Calendar
from anomaly.events import AlertType
from anomaly.incidents import IncidentChange, Incidents
from anomaly.rules import Episode, Mark, SourceRef
from worker.partitions import PartitionStates
from worker.score import Scored


@dataclass(frozen=True)
class Change:
    """An alert event to publish: the `row`-th scored record opened, quieted, resumed or
    resolved its asset's episode, with the judged `score`."""

    row: int
    kind: AlertType
    episode: Episode
    ref: SourceRef
    score: float
    released: str | None = None  # what held its page back (an unsuppress)


@dataclass
class Decided:
    """The changes of one model's records, and every record whose asset's rules moved, with
    whether its episode is open after it (the board's alarm rows follow those)."""

    changes: list[Change] = field(default_factory=list)
    followed: list[tuple[int, bool]] = field(default_factory=list)
    incidents: list[IncidentChange] = field(default_factory=list)


def decide(
    scored: Scored, partitions: PartitionStates, calendar: Calendar, incidents: Incidents
) -> Decided:
    """Advance each asset's rules by its records of the batch, in order; hold pages back as
    the calendar says; episodes that page grouped into incidents."""
    decided = Decided()
    rules, paging = scored.windows.served.rules, _Paging(incidents, scored.windows.served.name)
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
            if change[0] == "open":
                change[1].held = calendar.hold(asset_id, ts.timestamp())
            joined = paging(change[0], change[1], asset_id, ts, residual[i])
            decided.changes.append(Change(i, change[0], replace(change[1]), ref, score))
            decided.incidents += joined
        episode = state.rules.episode
        if episode is not None and (change is None or change[0] != "open"):
            moved = _held(episode, calendar.hold(asset_id, ts.timestamp()), state.rules.quiet)
            if moved is not None:
                kind, released = moved
                joined = paging(kind, episode, asset_id, ts, residual[i])
                decided.changes.append(Change(i, kind, replace(episode), ref, score, released))
                decided.incidents += joined
        decided.followed.append((i, state.rules.episode is not None))
    return decided


def _held(episode: Episode, hold: str | None, quiet: bool) -> tuple[AlertType, str | None] | None:
    """An episode's page held back from this record on (`suppress`), or released
    (`unsuppress`, with what held it); None when neither: a change of hold while held (from a
    window to a shelf) is noted in the episode only."""
    before = episode.held
    if hold == before or (hold is None and quiet):
        return None
    episode.held = hold
    if hold is None:
        return "unsuppress", before
    return ("suppress", None) if before is None else None


@dataclass(frozen=True)
class _Paging:
    """Incidents of one model's episodes: an episode joins one as it starts paging, leaves it
    as it stops (its `incident` set, or cleared once its page is withdrawn)."""

    incidents: Incidents
    model: str

    def __call__(
        self,
        kind: AlertType,
        episode: Episode,
        asset_id: str,
        ts: datetime,
        direction: npt.NDArray[np.float64],
    ) -> list[IncidentChange]:
        """The incident's event, if any, of the episode's `kind` of change at record time `ts`."""
        if kind in ("open", "unsuppress") and episode.held is None:
            episode.incident, change = self.incidents.paged(
                episode.episode_id, asset_id, self.model, ts, direction
            )
        elif kind in ("resolve", "suppress") and episode.incident is not None:
            change = self.incidents.ended(episode.episode_id, ts)
            if kind == "suppress":
                episode.incident = None
        else:
            return []
        return [] if change is None else [change]
