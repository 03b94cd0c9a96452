"""An engineer's verdict on an episode, as written to the feedback topic.

    anomaly-train verdict EPISODE_ID false_alarm|confirmed [--note TEXT] [--by NAME]

The command and the review page (review/) write the same message, keyed by asset: the
episode's id, asset, model and version, its span as known when it was given (record times,
from its events; `ended_at` null while it is open), the verdict, the note, who gave it and
when. Only an episode the alerts topic holds can be judged. What the training job learns from
the verdicts: training/verdicts.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from training.episode import EpisodeError, Sources, find_episode
from training.kafka_range import write_one

VerdictKind = Literal["false_alarm", "confirmed"]
VERDICTS: tuple[VerdictKind, ...] = ("false_alarm", "confirmed")
TOPIC_WAIT_S = 5  # how long the feedback topic's partitions are waited for


def record_verdict(
    settings: Sources,
    episode_id: str,
    verdict: str,
    note: str | None = None,
    by: str | None = None,
    known: dict[str, Any] | None = None,
) -> dict[str, object]:
    """Publish an engineer's verdict on an episode; EpisodeError for an unknown verdict or
    episode. `known`: the episode's events by type where the caller holds them. Returns the
    message published."""
    if verdict not in VERDICTS:
        raise EpisodeError(f"{verdict!r} is not a verdict: say {' or '.join(VERDICTS)}")
    episode = find_episode(settings, episode_id, known)
    opened, resolved = episode.opened, episode.resolved
    message: dict[str, object] = {
        "episode_id": episode_id,
        "asset_id": opened["asset_id"],
        "verdict": verdict,
        "note": note,
        "by": by,
        "model": opened.get("model"),
        "model_version": opened.get("model_version"),
        "started_at": opened["started_at"],
        "ended_at": resolved["ended_at"] if resolved else None,
        "decided_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    topic = settings.topics.feedback
    write_one(
        settings.kafka, topic, str(opened["asset_id"]).encode(), json.dumps(message).encode(),
        missing=f"the feedback topic {topic!r} (TRAINING_TOPICS__FEEDBACK) does not exist "
        "(create it as the other topics: docs/operations.md)",
        wait_s=TOPIC_WAIT_S,
    )  # fmt: skip
    return message
