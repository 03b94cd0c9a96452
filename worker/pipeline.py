"""The pure core of the worker: a batch of raw records in, messages and offsets out.

decode + validate -> per-asset window -> one forward pass -> threshold -> alert rules.
No I/O: the runner polls, publishes what `process` returns, then commits its offsets.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from anomaly.events import EventContext, event_json
from anomaly.model import Artifact
from anomaly.records import RecordError, SourceRecord, decode_record
from anomaly.rules import Episode, EventType, Rules, SourceRef
from anomaly.settings import TopicSettings
from worker.assets import AssetState, AssetTable
from worker.checkpoint import CheckpointError, Handover, decode, encode
from worker.settings import AlertSettings, BatchSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outbound:
    """A message to publish: an alert event or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass
class BatchResult:
    """What one batch produced: messages to publish, then offsets to commit."""

    messages: list[Outbound] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    scored: int = 0
    warming_up: int = 0
    outliers: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    # (event type, asset id, top feature) of each event, in order, for the episode metric
    episodes: list[tuple[str, str, str | None]] = field(default_factory=list)
    evicted: int = 0
    # handover: assets whose state came with a gained partition, assets of lost partitions
    # forgotten, and the gained partitions whose saved state could not be read (with why)
    restored: int = 0
    released: int = 0
    unreadable: list[tuple[tuple[str, int], str]] = field(default_factory=list)
    scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    record_times: list[float] = field(default_factory=list)
    decode_s: float = 0.0
    score_s: float = 0.0


# A partition whose assets' alert state does not all fit in its commit (an alert storm) saves
# what fits at most this often: the text is lossy anyway, and writing it out for hundreds of
# open episodes at every batch would halve the worker's rate when it is needed most.
OVERFLOW_REFRESH_S = 1.0

# A record with a full window: its index in the batch, its asset's state and id, its time.
_Scoring = tuple[int, AssetState, str, datetime]


class BatchProcessor:
    """Turns batches of raw records into alert events and dead letters with one model.

    Keeps per-asset windows and alert state between batches (bounded by max_assets). Records
    are handled in the order given, so each asset's records keep their order. The alert state
    of each partition's assets is saved with its offsets (`checkpoints`) and restored when a
    partition is gained (`process(records, handover)`).
    """

    def __init__(
        self,
        topics: TopicSettings,
        batch: BatchSettings,
        alerts: AlertSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topics, self.batch, self.alerts = topics, batch, alerts
        self.clock = clock
        self.model: Artifact | None = None
        self.rules = Rules()  # the model's, with the operator's overrides (set_model)
        self.assets = AssetTable(alerts.max_assets, window=1, n_features=1)
        self.open_episodes = 0
        # assets whose alert state is not idle (a run above the threshold, an open episode, a
        # raised threshold): the only ones a checkpoint has to save
        # (partition -> asset id -> state)
        self._tracked: dict[int, dict[str, AssetState]] = {}
        # the next offset of each partition, as of the last batch that read it
        self._positions: dict[tuple[str, int], int] = {}
        # partitions whose assets' state did not all fit: (text, assets in it, when written)
        self._overflow: dict[int, tuple[str, int, float]] = {}

    def set_model(self, artifact: Artifact) -> None:
        """Score with `artifact` from the next batch on; windows restart if their shape changes."""
        shape = (artifact.manifest.window, len(artifact.manifest.features))
        if self.model is None or shape != (self.assets.window, self.assets.n_features):
            self.assets.reshape(*shape)
        self.model = artifact
        overrides = self.alerts.overrides()
        self.rules = artifact.manifest.rules.model_copy(update=overrides)
        if overrides:
            log.warning(
                "alert rules of model %s overridden by WORKER_ALERTS__*: %s (the model's: %s)",
                artifact.version,
                overrides,
                artifact.manifest.rules.model_dump(),
            )

    def process(
        self, records: Sequence[SourceRecord], handover: Handover | None = None
    ) -> BatchResult:
        """Decode, score and apply the alert rules to a batch. Never raises on bad records.

        `handover` (partitions that changed hands before this batch) is applied first: the
        state of lost partitions' assets is forgotten, that of gained ones restored.
        """
        if self.model is None:
            raise RuntimeError("process() before set_model()")
        manifest = self.model.manifest
        result = BatchResult()
        started = time.perf_counter()
        context = EventContext(
            model_version=manifest.model_version,
            threshold=manifest.threshold.value,
            features=manifest.features,
            top_features=self.alerts.top_features,
            detected_at=datetime.fromtimestamp(self.clock(), UTC),
        )
        if handover is not None:
            self._hand_over(handover, context, result)
        windows = np.empty((len(records), manifest.window, len(manifest.features)))
        pending: list[_Scoring] = []  # the records with a full window, in order
        # the next offset to read of each partition: offsets grow within a partition
        result.offsets = {(r.topic, r.partition): r.offset + 1 for r in records}
        record_times = result.record_times
        for index, record in enumerate(records):
            value = record.value
            try:
                if value is None:
                    raise RecordError("empty", "record has no value (a tombstone)")
                if len(value) > self.batch.max_record_bytes:
                    raise RecordError(
                        "too_large",
                        f"record is {len(value)} bytes, over the limit of "
                        f"{self.batch.max_record_bytes}",
                    )
                asset_id, ts, values = decode_record(value, manifest.features)
            except RecordError as exc:
                result.dead_letters[exc.reason] += 1
                result.messages.append(self._dead_letter(record, exc, context.detected_at))
                continue
            state, evicted = self.assets.get(asset_id)
            if evicted is not None:
                result.evicted += 1
                self._close_evicted(*evicted, context, result)
            state.partition = record.partition
            record_times.append(ts.timestamp())
            if not state.buffer.push(values):
                result.warming_up += 1
                continue
            state.buffer.copy_window(windows[len(pending)])
            pending.append((index, state, asset_id, ts))
        result.decode_s = time.perf_counter() - started
        self._positions.update(result.offsets)

        started = time.perf_counter()
        scores = self.model.detector.score(windows[: len(pending)]) if pending else None
        result.score_s = time.perf_counter() - started
        if scores is None:
            return result
        result.scored = len(pending)
        result.scores = scores.score
        above = self.model.threshold.exceeds(scores.score)
        result.outliers = int(above.sum())
        rules, tracked = self.rules, self._tracked
        for i, is_above in enumerate(above.tolist()):
            index, state, asset_id, ts = pending[i]
            state_rules = state.rules
            if not is_above and state_rules.idle:
                continue  # nothing to track: the rules would not change (the common case)
            record, score = records[index], float(scores.score[i])
            ref = SourceRef(record.topic, record.partition, record.offset)
            change = state_rules.observe(ts, ref, score, is_above, rules)
            if state_rules.idle:
                tracked.get(state.partition, {}).pop(asset_id, None)
            else:
                tracked.setdefault(state.partition, {})[asset_id] = state
            if change is not None:
                kind, episode = change
                event = (kind, episode, asset_id, ts, ref, score, scores.shares[i])
                self._event(result, *event, context)
        return result

    def checkpoints(
        self, partitions: Iterable[tuple[str, int]], max_bytes: int
    ) -> tuple[dict[tuple[str, int], str], int]:
        """The text to commit with each partition's offset (its assets' alert state), and how
        many assets did not fit in `max_bytes` per partition (0: save nothing). Where not all
        fit, the text is written anew at most every OVERFLOW_REFRESH_S seconds."""
        texts, unsaved, now = {}, 0, self.clock()
        for tp in partitions:
            held = self._tracked.get(tp[1], {})
            overflow = self._overflow.get(tp[1])
            if overflow is not None and now - overflow[2] < OVERFLOW_REFRESH_S:
                text, left_out = overflow[0], max(0, len(held) - overflow[1])
            else:
                states = [(a, s.rules) for a, s in held.items() if s.partition == tp[1]]
                fitted = overflow[1] if overflow is not None else None
                text, left_out = encode(states, max_bytes, fitted)
                if left_out:
                    self._overflow[tp[1]] = (text, len(states) - left_out, now)
                else:
                    self._overflow.pop(tp[1], None)
            texts[tp] = text
            unsaved += left_out
        return texts, unsaved

    def _hand_over(self, handover: Handover, context: EventContext, result: BatchResult) -> None:
        lost = {partition for _, partition in handover.lost}
        if lost:
            gone = [asset_id for asset_id, state in self.assets if state.partition in lost]
            self.assets.drop(gone)
            result.released += len(gone)
            for partition in lost:
                held = self._tracked.pop(partition, {})
                self.open_episodes -= sum(s.rules.episode is not None for s in held.values())
                self._overflow.pop(partition, None)
            for tp in handover.lost:
                self._positions.pop(tp, None)
        for tp, text in handover.gained.items():
            try:
                saved = decode(text)
            except CheckpointError as exc:
                result.unreadable.append((tp, str(exc)))
                continue
            for asset_id, rules in saved.items():
                state, evicted = self.assets.get(asset_id)
                if evicted is not None:
                    result.evicted += 1
                    self._close_evicted(*evicted, context, result)
                if state.rules.episode is not None:
                    self.open_episodes -= 1
                state.rules, state.partition = rules, tp[1]
                self._tracked.setdefault(tp[1], {})[asset_id] = state
                self.open_episodes += rules.episode is not None
            result.restored += len(saved)

    def _event(
        self,
        result: BatchResult,
        kind: EventType,
        episode: Episode,
        asset_id: str,
        ts: datetime,
        ref: SourceRef,
        score: float,
        shares: npt.NDArray[np.float64],
        context: EventContext,
    ) -> None:
        value = event_json(kind, episode, asset_id, ts, ref, score, shares, context)
        result.messages.append(Outbound(self.topics.alerts, asset_id.encode(), value))
        result.events[kind] += 1
        result.episodes.append((kind, asset_id, context.features[int(np.argmax(shares))]))
        self.open_episodes += 1 if kind == "open" else -1

    def _close_evicted(
        self, asset_id: str, state: AssetState, context: EventContext, result: BatchResult
    ) -> None:
        """An evicted asset's open episode is resolved now, marked so, rather than forgotten."""
        if self._tracked.get(state.partition, {}).pop(asset_id, None) is not None:
            # its partition's saved state changes: commit it again even if no record came
            tp = (self.topics.input, state.partition)
            if tp not in result.offsets and tp in self._positions:
                result.offsets[tp] = self._positions[tp]
        episode = state.rules.episode
        if episode is None:
            return
        ref = SourceRef(self.topics.input, -1, -1)
        value = event_json(
            "resolve", episode, asset_id, episode.ended_at, ref, episode.peak_score, None,
            context, reason="evicted",
        )  # fmt: skip
        result.messages.append(Outbound(self.topics.alerts, asset_id.encode(), value))
        result.events["resolve"] += 1
        result.episodes.append(("resolve", asset_id, None))
        self.open_episodes -= 1

    def _dead_letter(self, record: SourceRecord, exc: RecordError, now: datetime) -> Outbound:
        envelope = {
            "reason": exc.reason,
            "error": str(exc),
            "source": {"topic": record.topic, "partition": record.partition,
                       "offset": record.offset},
            "key": base64.b64encode(record.key).decode() if record.key is not None else None,
            "value": base64.b64encode(record.value).decode() if record.value is not None else None,
            "dead_lettered_at": now.isoformat().replace("+00:00", "Z"),
        }  # fmt: skip
        return Outbound(self.topics.dead_letters, record.key, json.dumps(envelope).encode())
