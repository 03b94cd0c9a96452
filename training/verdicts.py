"""Engineers' verdicts on episodes, and what the training job learns from them.

    anomaly-train verdict EPISODE_ID false_alarm|confirmed [--note TEXT]

A verdict goes to the feedback topic (`TRAINING_TOPICS__FEEDBACK`), keyed by asset, as JSON:
the episode's id, asset, model and version, its span (record times, from its events), the
verdict, the note, when it was given. Only an episode the alerts topic holds can be judged.
The training job reads the verdicts given since the start of its range, the latest per
episode (a verdict recorded twice counts once; a changed mind counts as the last word):

- the records inside `false_alarm` episodes are normal data: no cleaning rule drops them;
- the records inside `confirmed` episodes are dropped, and the gate checks both models on
  every reviewed episode: a candidate that flags fewer confirmed episodes, or more false
  alarms, than the model in service is rejected.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from kafka.errors import KafkaError, KafkaTimeoutError

from anomaly.kafka import make_producer
from anomaly.records import RecordError, parse_ts
from anomaly.scoring import series_flags
from training.data import Masks, SensorHistory
from training.episode import EpisodeError, find_episode
from training.gate import Decision, Scored
from training.hygiene import inside_episodes
from training.kafka_range import KafkaUnavailableError, plan_range, read_planned
from training.settings import TrainingSettings
from training.topic import Episodes

log = logging.getLogger(__name__)

VerdictKind = Literal["false_alarm", "confirmed"]
VERDICTS: tuple[VerdictKind, ...] = ("false_alarm", "confirmed")
TOPIC_WAIT_S = 5  # how long the feedback topic's partitions are waited for


@dataclass(frozen=True)
class Verdict:
    episode_id: str
    asset_id: str
    verdict: VerdictKind
    begin: float  # the episode's span, epoch seconds of record time (end: inf while open)
    end: float


def record_verdict(
    settings: TrainingSettings, episode_id: str, verdict: str, note: str | None = None
) -> dict[str, object]:
    """Publish an engineer's verdict on an episode; EpisodeError for an unknown verdict or
    episode. Returns the message published."""
    if verdict not in VERDICTS:
        raise EpisodeError(f"{verdict!r} is not a verdict: say {' or '.join(VERDICTS)}")
    episode = find_episode(settings, episode_id)
    opened, resolved = episode.opened, episode.resolved
    message: dict[str, object] = {
        "episode_id": episode_id,
        "asset_id": opened["asset_id"],
        "verdict": verdict,
        "note": note,
        "model": opened.get("model"),
        "model_version": opened.get("model_version"),
        "started_at": opened["started_at"],
        "ended_at": resolved["ended_at"] if resolved else None,
        "decided_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    topic = settings.topics.feedback
    try:
        producer = make_producer(settings.kafka, max_block_ms=TOPIC_WAIT_S * 1000)
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"cannot reach {settings.kafka.bootstrap_servers}: {exc!r}"
        ) from exc
    try:
        try:  # asked by name: a cluster that creates topics on first use creates it
            producer.partitions_for(topic)
        except KafkaTimeoutError as exc:
            raise KafkaUnavailableError(
                f"the feedback topic {topic!r} (TRAINING_TOPICS__FEEDBACK) does not exist "
                f"(no partitions after {TOPIC_WAIT_S} s): create it as the other topics "
                "(docs/operations.md)"
            ) from exc
        producer.send(topic, key=str(opened["asset_id"]).encode(),
                      value=json.dumps(message).encode()).get(timeout=30)  # fmt: skip
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"the verdict could not be written to {topic!r}: {exc!r}"
        ) from exc
    finally:
        producer.close()
    return message


def read_verdicts(settings: TrainingSettings, now: datetime) -> dict[str, Verdict]:
    """The latest verdict on each episode, given since the start of the job's range (none
    when the feedback topic does not exist yet)."""
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
            ended = given.get("ended_at")
            verdicts[str(given["episode_id"])] = Verdict(
                str(given["episode_id"]), str(given["asset_id"]), kind,
                parse_ts(given["started_at"]).timestamp(),
                parse_ts(ended).timestamp() if ended else math.inf,
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, RecordError):
            continue  # not a verdict of this product
    return verdicts


def inside(history: SensorHistory, verdicts: dict[str, Verdict], kind: VerdictKind) -> Masks:
    """Rows of an asset inside one of its episodes judged `kind`."""
    spans: Episodes = {}
    for v in verdicts.values():
        if v.verdict == kind:
            spans.setdefault(v.asset_id, []).append((v.begin, v.end))
    return inside_episodes(history, spans)


def flagged_episodes(
    model: Scored, history: SensorHistory, verdicts: dict[str, Verdict]
) -> dict[VerdictKind, tuple[int, int]]:
    """Per verdict: (episodes the model flags at least one record of, episodes judged whose
    records were read)."""
    judged = {v.asset_id for v in verdicts.values()}
    flags = {
        s.asset_id: (s.ts, series_flags(model.detector, model.threshold_for(s.asset_id),
                                         s.values, model.window, model.rules))
        for s in history.series if s.asset_id in judged
    }  # fmt: skip
    out: dict[VerdictKind, tuple[int, int]] = {}
    for kind in VERDICTS:
        hit = total = 0
        for v in verdicts.values():
            if v.verdict != kind or v.asset_id not in flags:
                continue
            ts, flagged = flags[v.asset_id]
            span = (ts >= v.begin) & (ts <= v.end)
            if span.any():
                total += 1
                hit += bool((flagged & span).any())
        out[kind] = (hit, total)
    return out


def judge(
    candidate: Scored,
    service: Scored | None,
    history: SensorHistory,
    verdicts: dict[str, Verdict],
    decision: Decision,
) -> None:
    """The gate's verdict rule: no fewer confirmed episodes flagged than the model in
    service, no more false alarms."""
    if not verdicts:
        return
    cand = flagged_episodes(candidate, history, verdicts)
    for kind, (hit, total) in cand.items():
        decision.figures[f"candidate_{kind}_flagged"] = f"{hit}/{total}"
    if service is None or service.features != candidate.features:
        return
    serv = flagged_episodes(service, history, verdicts)
    for kind, (hit, total) in serv.items():
        decision.figures[f"service_{kind}_flagged"] = f"{hit}/{total}"
    if cand["confirmed"][0] < serv["confirmed"][0]:
        decision.reject(
            f"flags {cand['confirmed'][0]} of {cand['confirmed'][1]} confirmed episodes, fewer "
            f"than the service model's {serv['confirmed'][0]}"
        )
    if cand["false_alarm"][0] > serv["false_alarm"][0]:
        decision.reject(
            f"flags {cand['false_alarm'][0]} of {cand['false_alarm'][1]} episodes judged false "
            f"alarms, more than the service model's {serv['false_alarm'][0]}"
        )
