"""Engineers' verdicts on episodes, and what the training job learns from them.

A verdict goes to the feedback topic (`TRAINING_TOPICS__FEEDBACK`): `anomaly-train verdict`
or the review page, one message (training/judgement.py). The training job reads the
verdicts given since the start of its range, the latest per episode (a verdict recorded twice
counts once; a changed mind counts as the last word), and takes each episode's span from the
alerts topic (`bound`): an engineer judges an episode while it still alarms, and it ends later.

- the records inside `false_alarm` episodes are normal data: no cleaning rule drops them;
- the records inside `confirmed` episodes are dropped;
- the gate checks both models on every judged episode (`judge`): a candidate that catches
  fewer confirmed episodes than the model in service, or flags a larger share of the
  false-alarm episodes' records, is rejected.

The job also reports how long the judged episodes waited for their verdict (`mean_ack_s`).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from anomaly.records import RecordError, parse_ts
from anomaly.scoring import series_flags
from anomaly.settings import DEFAULT_MODEL
from training.data import Masks, SensorHistory
from training.gate import Decision, Scored
from training.hygiene import inside_episodes
from training.judgement import VERDICTS, VerdictKind
from training.kafka_range import KafkaUnavailableError, plan_range, read_planned
from training.settings import TrainingSettings
from training.topic import Episodes, Recorded

log = logging.getLogger(__name__)


# Where a verdict's span ends: the episode's resolve on the alerts topic; the start of the
# asset's next episode there (no resolve read before it); the verdict's own record of the end
# (the episode is not on the alerts topic over the range); or nowhere: still open, it covers
# the asset's records to the range's end.
EndedBy = Literal["resolve", "next_episode", "as_judged", "open"]


@dataclass(frozen=True)
class Verdict:
    """A verdict on an episode, and the span of record times it covers (epoch seconds,
    both ends included; `end` +inf while the episode is open)."""

    episode_id: str
    asset_id: str
    verdict: VerdictKind
    begin: float
    end: float
    model: str = DEFAULT_MODEL
    ended_by: EndedBy = "as_judged"
    decided: float | None = None  # when it was given (epoch seconds); None: not said


def read_verdicts(settings: TrainingSettings, now: datetime) -> dict[str, Verdict]:
    """The latest verdict on each episode, given since the start of the job's range (none
    when the feedback topic does not exist yet), spans as given (see `bound`)."""
    start, _ = settings.data.time_range(now)
    try:
        planned = plan_range(settings.kafka, settings.topics.feedback,
                             int(start.timestamp() * 1000), None, 10**9)  # fmt: skip
    except KafkaUnavailableError as exc:
        log.info("no verdicts read (%s)", exc)
        return {}
    verdicts: dict[str, Verdict] = {}
    for record in read_planned(settings.kafka, planned):
        try:
            given = json.loads(record.value or b"")
            kind = given["verdict"]
            if kind not in VERDICTS:
                continue
            ended, decided = given.get("ended_at"), given.get("decided_at")
            verdicts[str(given["episode_id"])] = Verdict(
                str(given["episode_id"]), str(given["asset_id"]), kind,
                parse_ts(given["started_at"]).timestamp(),
                parse_ts(ended).timestamp() if ended else math.inf,
                str(given.get("model") or DEFAULT_MODEL),
                "as_judged" if ended else "open",
                parse_ts(decided).timestamp() if decided else None,
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError, RecordError):
            continue  # not a verdict of this product
    return verdicts


def bound(verdicts: dict[str, Verdict], recorded: dict[str, Recorded]) -> dict[str, Verdict]:
    """Each verdict with its episode's span as the alerts topic tells it (`recorded`, read
    over the range): to the resolve's end when one was read, whatever the verdict said; still
    open, to the range's end; and never into a later episode of the same asset, which ends it
    just before its first record."""
    starts: dict[str, list[tuple[float, str]]] = {}
    for episode_id, episode in recorded.items():
        starts.setdefault(episode.asset_id, []).append((episode.begin, episode_id))
    out: dict[str, Verdict] = {}
    for episode_id, v in verdicts.items():
        r, end, by = recorded.get(episode_id), v.end, v.ended_by
        if r is not None:  # the topic's word: a resolve read, or none (still open)
            end, by = r.end, "resolve" if math.isfinite(r.end) else "open"
        later = [
            b for b, other in starts.get(v.asset_id, ()) if other != episode_id and b > v.begin
        ]
        if later and min(later) <= end:
            end, by = math.nextafter(min(later), -math.inf), "next_episode"
        out[episode_id] = replace(v, end=end, ended_by=by)
    return out


def mean_ack_s(verdicts: dict[str, Verdict], recorded: dict[str, Recorded]) -> float:
    """The mean time, in seconds, from an episode's start on the alerts topic (`recorded`: its
    first record's time) to the verdict on it (one per episode, the latest) being given, over
    the judged episodes the topic holds; 0 when no verdict has both."""
    waits = [v.decided - recorded[episode_id].begin for episode_id, v in verdicts.items()
             if episode_id in recorded and v.decided is not None]  # fmt: skip
    return sum(waits) / len(waits) if waits else 0.0


def inside(history: SensorHistory, verdicts: dict[str, Verdict], kind: VerdictKind) -> Masks:
    """Rows of an asset inside one of its episodes judged `kind`."""
    spans: Episodes = {}
    for v in verdicts.values():
        if v.verdict == kind:
            spans.setdefault(v.asset_id, []).append((v.begin, v.end))
    return inside_episodes(history, spans)


@dataclass(frozen=True)
class Flagged:
    """A judged episode as a model sees it: its rows read, and those the model flags."""

    rows: int
    flagged: int


def episode_flags(
    model: Scored, history: SensorHistory, verdicts: dict[str, Verdict]
) -> dict[str, Flagged]:
    """Per judged episode whose rows were read: its rows, and those inside an episode of
    `model` (by its own rules, as the worker decides)."""
    judged = {v.asset_id for v in verdicts.values()}
    flags = {
        s.asset_id: (s.ts, series_flags(model.detector, model.threshold_for(s.asset_id),
                                         s.values, model.window, model.rules, model.instruments))
        for s in history.series if s.asset_id in judged
    }  # fmt: skip
    out: dict[str, Flagged] = {}
    for episode_id, v in verdicts.items():
        if v.asset_id not in flags:
            continue
        ts, flagged = flags[v.asset_id]
        span = (ts >= v.begin) & (ts <= v.end)
        if span.any():
            out[episode_id] = Flagged(int(span.sum()), int((flagged & span).sum()))
    return out


@dataclass(frozen=True)
class Tally:
    """One model's flags over the episodes of one verdict."""

    episodes: int  # judged episodes whose rows were read
    caught: int  # those with at least one row flagged
    rows: int
    flagged: int

    @property
    def share(self) -> float:
        """The share of the episodes' rows flagged (0 without rows)."""
        return self.flagged / self.rows if self.rows else 0.0


def tally(flags: dict[str, Flagged], verdicts: dict[str, Verdict], kind: VerdictKind) -> Tally:
    """The flags over the episodes judged `kind`."""
    mine = [f for episode_id, f in flags.items() if verdicts[episode_id].verdict == kind]
    return Tally(len(mine), sum(f.flagged > 0 for f in mine), sum(f.rows for f in mine),
                 sum(f.flagged for f in mine))  # fmt: skip


def judge(
    candidate: Scored,
    service: Scored | None,
    history: SensorHistory,
    verdicts: dict[str, Verdict],
    decision: Decision,
) -> dict[str, dict[str, int | None]]:
    """The gate's verdict rule, against the model in service (same features): the candidate
    must catch (flag a row of) as many confirmed episodes, and must not flag a larger share of
    the false-alarm episodes' rows, beyond its target false-positive rate (the share of clean
    records a model may flag). Returns each judged episode's flagged rows per model."""
    if not verdicts:
        return {}
    cand = episode_flags(candidate, history, verdicts)
    serv = (
        episode_flags(service, history, verdicts)
        if service is not None and service.features == candidate.features
        else None
    )
    tallies = {
        who: (tally(flags, verdicts, "confirmed"), tally(flags, verdicts, "false_alarm"))
        for who, flags in (("candidate", cand), ("service", serv)) if flags is not None
    }  # fmt: skip
    for who, (confirmed, false_alarms) in tallies.items():
        decision.figures[f"{who}_confirmed_caught"] = f"{confirmed.caught}/{confirmed.episodes}"
        decision.figures[f"{who}_confirmed_share"] = round(confirmed.share, 4)
        decision.figures[f"{who}_false_alarm_rows"] = f"{false_alarms.flagged}/{false_alarms.rows}"
        decision.figures[f"{who}_false_alarm_share"] = round(false_alarms.share, 4)
    per_episode = {
        episode_id: {"candidate_flagged": f.flagged,
                     "service_flagged": serv[episode_id].flagged if serv else None}
        for episode_id, f in cand.items()
    }  # fmt: skip
    if serv is None:
        return per_episode
    (c, c_false), (s, s_false) = tallies["candidate"], tallies["service"]
    if c.caught < s.caught:
        decision.reject(
            f"catches {c.caught} of {c.episodes} confirmed episodes, fewer than the service "
            f"model's {s.caught}"
        )
    if c_false.share > s_false.share + candidate.threshold.target_fpr:
        decision.reject(
            f"flags {c_false.share:.1%} of the {c_false.rows} records of episodes judged false "
            f"alarms ({c_false.flagged}), more than the service model's {s_false.share:.1%} and "
            f"the target false-positive rate {candidate.threshold.target_fpr:g}"
        )
    return per_episode


def described(
    verdicts: dict[str, Verdict],
    history: SensorHistory,
    flagged: dict[str, dict[str, int | None]],
    dropping: bool,
) -> list[dict[str, object]]:
    """The report's account of each verdict the run read: its episode's span as applied and
    what ended it, the asset's rows read inside it, those it kept as normal (`false_alarm`) or
    dropped (`confirmed`; none while hygiene is off), and the rows each model flags there."""
    out: list[dict[str, object]] = []
    for episode_id, v in sorted(verdicts.items(), key=lambda item: item[1].begin):
        rows = sum(
            int(((s.ts >= v.begin) & (s.ts <= v.end)).sum())
            for s in history.series
            if s.asset_id == v.asset_id
        )
        effect = {"kept": rows} if v.verdict == "false_alarm" else {"dropped": rows * dropping}
        out.append({
            "episode_id": episode_id, "asset_id": v.asset_id, "verdict": v.verdict,
            "started_at": _iso(v.begin), "ended_at": _iso(v.end), "ended_by": v.ended_by,
            "rows": rows, **effect,
            **flagged.get(episode_id, {"candidate_flagged": None, "service_flagged": None}),
        })  # fmt: skip
    return out


def _iso(epoch_s: float) -> str | None:
    """An epoch time as the events write it; None for an open end."""
    if not math.isfinite(epoch_s):
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")
