"""The pure core of the worker: a batch of raw records in, messages and offsets out.

Stages, each batch-shaped at its edge: hand over (partitions gained and lost) -> decode and
validate -> missing values filled (worker/sensors.py) -> per-asset windows (and the onset
rule's history) -> one forward pass -> judged score -> threshold and onset evidence ->
alert rules (with the residual drift) -> messages. The per-asset windows live in
worker/assets.py, the state saved with each partition's offsets in worker/partitions.py. No
I/O: the runner polls, publishes what `process` returns, then commits its offsets.
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

from anomaly.events import (
    EventContext,
    Evidence,
    SensorEventType,
    event_json,
    sensor_event_json,
)
from anomaly.model import Artifact, Scores
from anomaly.model.calibration import exceed
from anomaly.onset import onsets
from anomaly.records import (
    Reading,
    RecordError,
    SourceRecord,
    field_at,
    from_object,
    parse_record,
    reading_from,
)
from anomaly.routing import no_model_reason, route
from anomaly.rules import Episode, EventType, Rules, SourceRef
from anomaly.settings import DEFAULT_MODEL, InputSettings, RouteSettings, TopicSettings
from worker.assembly import Assembly, assemble
from worker.assets import AssetState, AssetTable
from worker.checkpoint import CheckpointError, Handover, decode
from worker.partitions import PartitionStates
from worker.sensors import Sensors, fill, reported_all
from worker.settings import AlertSettings, BatchSettings, SensorSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outbound:
    """A message to publish: an alert event or a dead letter."""

    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class AlarmView:
    """An asset in alarm as its latest scored record of a batch shows it: each feature's
    value and the model's reconstruction of it (sensor units), its score and threshold;
    `open`: its episode is open (False: it resolved with this record)."""

    asset_id: str
    model: str
    features: tuple[str, ...]
    actual: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]
    score: float
    threshold: float
    open: bool


@dataclass
class BatchStats:
    """What the metrics and logs report of one batch."""

    # per model: records scored, above their threshold, above the median held-out score
    scored_by_model: Counter[str] = field(default_factory=Counter)
    outliers_by_model: Counter[str] = field(default_factory=Counter)
    above_median_by_model: Counter[str] = field(default_factory=Counter)
    warming_up: int = 0
    incomplete: int = 0  # records lacking a feature with no fresh value to fill it
    filled: Counter[str] = field(default_factory=Counter)  # values filled, by feature
    dead_letters: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    # (event type, asset id, top feature, model, its version) of each event, in order, for the
    # episode metric
    episodes: list[tuple[str, str, str | None, str, str]] = field(default_factory=list)
    evicted: int = 0
    # handover: assets whose state came with a gained partition, assets of lost partitions
    # forgotten, and the gained partitions whose saved state could not be read (with why)
    restored: int = 0
    released: int = 0
    unreadable: list[tuple[tuple[str, int], str]] = field(default_factory=list)
    alarms: list[AlarmView] = field(default_factory=list)  # assets explained (explain_assets)
    scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    record_times: list[float] = field(default_factory=list)
    decode_s: float = 0.0
    score_s: float = 0.0

    @property
    def scored(self) -> int:
        """Records scored, all models together."""
        return sum(self.scored_by_model.values())


@dataclass
class BatchResult:
    """What one batch produced: messages to publish, then offsets to commit, and its stats."""

    messages: list[Outbound] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    stats: BatchStats = field(default_factory=BatchStats)


# A record with a full window: its index in the batch, its asset's state and id, its time, and
# the features with a filled value in its window (worker/sensors.py).
_Scoring = tuple[int, AssetState, str, datetime, tuple[str, ...]]


@dataclass(frozen=True)
class Served:
    """A model in service: its name, its artifact, and the rules the worker applies with it
    (the model's, with the operator's overrides)."""

    name: str
    artifact: Artifact
    rules: Rules


@dataclass
class _ModelBatch:
    """The records of one batch that one model scores, in order: their windows (and the onset
    rule's history), how many records of its asset each history holds, each asset's
    threshold, and the records themselves."""

    served: Served
    context: EventContext
    history: npt.NDArray[np.float64]
    seen: npt.NDArray[np.int64]
    limits: npt.NDArray[np.float64]
    pending: list[_Scoring] = field(default_factory=list)

    def grow(self) -> None:
        """Room for as many records again (one value per message: a message may complete
        several records)."""
        size = max(1, len(self.seen))
        self.history = np.concatenate([self.history, np.empty((size, *self.history.shape[1:]))])
        self.seen = np.concatenate([self.seen, np.empty(size, dtype=np.int64)])
        self.limits = np.concatenate([self.limits, np.empty(size)])


def _mend(state: AssetState, sensors: Sensors) -> None:
    """After incomplete records (a hole in the asset's series), its window starts afresh: a
    window never spans a hole, whose two sides the model would take for a jump."""
    if sensors.hole:
        state.buffer.clear()
        sensors.forget_fills()
        sensors.hole = False


class BatchProcessor:
    """Turns batches of raw records into alert events and dead letters with the models it
    serves (named models: each record goes to one, anomaly/routing.py).

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
        sensors: SensorSettings | None = None,
        routes: RouteSettings | None = None,
        layout: InputSettings | None = None,
    ) -> None:
        self.topics, self.batch, self.alerts = topics, batch, alerts
        # assets in alarm shown actual against expected (AlarmView): at most
        # alerts.explain_assets, each from its episode's opening until explain_linger_s after
        # its end (None while open, else when it ended: time.monotonic)
        self.explained: dict[str, float | None] = {}
        self.layout = layout if layout is not None else InputSettings()
        self.sensors = sensors if sensors is not None else SensorSettings()
        self.routes = routes if routes is not None else RouteSettings()
        self.clock = clock
        self.silent = 0  # (asset, feature) pairs with an open sensor_silent event
        self.served: dict[str, Served] = {}
        self._only: str | None = None  # the model every record goes to, when that is so
        self.assets = AssetTable(alerts.max_assets, window=1, n_features=1)
        self.partitions = PartitionStates(clock)

    def _main(self) -> Served | None:
        """The model in service when there is one (the `default` one when there are more)."""
        if len(self.served) == 1:
            return next(iter(self.served.values()))
        return self.served.get(DEFAULT_MODEL)

    @property
    def model(self) -> Artifact | None:
        main = self._main()
        return main.artifact if main is not None else None

    @property
    def rules(self) -> Rules:
        """The rules the worker applies with `model`."""
        main = self._main()
        return main.rules if main is not None else Rules()

    def set_model(self, artifact: Artifact, name: str = DEFAULT_MODEL) -> None:
        """Score the records of model `name` with `artifact` from the next batch on; its
        assets' windows restart if their shape changes."""
        overrides = self.alerts.overrides()
        manifest = artifact.manifest
        rules = self.alerts.serving(manifest.rules)
        shape = (manifest.window, len(manifest.features), rules.history)
        if name not in self.served or shape != self.assets.shapes.get(name):
            self.assets.reshape(*shape, model=name)
        self.served[name] = Served(name, artifact, rules)
        self.assets.set_thresholds(lambda asset_id: manifest.threshold_for(asset_id).value, name)
        single = len(self.served) == 1 and not self.routes.configured
        self._only = next(iter(self.served)) if single else None
        if overrides:
            log.warning(
                "alert rules of model %s (%s) overridden by WORKER_ALERTS__*: %s (the model's: "
                "%s)", name, artifact.version, overrides, manifest.rules.model_dump(),
            )  # fmt: skip

    @property
    def open_episodes(self) -> int:
        return self.partitions.open_episodes

    def process(
        self, records: Sequence[SourceRecord], handover: Handover | None = None
    ) -> BatchResult:
        """Decode, score and apply the alert rules to a batch. Never raises on bad records.

        `handover` (partitions that changed hands before this batch) is applied first: the
        state of lost partitions' assets is forgotten, that of gained ones restored.
        """
        if not self.served:
            raise RuntimeError("process() before set_model()")
        result = BatchResult()
        detected_at = datetime.fromtimestamp(self.clock(), UTC)
        contexts = {
            name: EventContext(
                model_version=served.artifact.manifest.model_version,
                threshold=served.artifact.manifest.threshold.value,
                features=served.artifact.manifest.features,
                top_features=self.alerts.top_features,
                detected_at=detected_at,
                model=name,
            )
            for name, served in self.served.items()
        }
        if handover is not None:
            self._hand_over(handover, contexts, result)
        started = time.perf_counter()
        batches = self._decode(records, contexts, detected_at, result)
        result.stats.decode_s = time.perf_counter() - started
        started = time.perf_counter()
        scored = []
        for batch in batches.values():
            n = len(batch.pending)
            if not n:
                continue
            artifact, rules = batch.served.artifact, batch.served.rules
            window = artifact.manifest.window
            history = batch.history[:n]
            scores = artifact.detector.score(history[:, history.shape[1] - window :])
            # in order: an asset's records of a batch each advance its averages
            judged = np.array([
                pending[1].rules.judge(score, rules)
                for pending, score in zip(batch.pending, scores.score.tolist(), strict=True)
            ])  # fmt: skip
            limits = batch.limits[:n]
            above = exceed(judged, limits)  # each asset's threshold
            # the onset rule reads its span (the ring holds the window when that is longer)
            span = history[:, history.shape[1] - max(rules.history, 1) :]
            unit = artifact.detector.scaler.step_unit
            onset = onsets(span, batch.seen[:n], judged, above, limits, unit, rules)
            scored.append((batch, scores, judged, above, onset, limits))
        result.stats.score_s = time.perf_counter() - started
        for batch, scores, judged, above, onset, limits in scored:
            self._apply_rules(records, batch, scores, judged, above, onset, limits, result)
        if len(scored) > 1:
            result.stats.scores = np.concatenate([s.score for _, s, *_ in scored])
        elif scored:
            result.stats.scores = scored[0][1].score
        return result

    def _decode(
        self,
        records: Sequence[SourceRecord],
        contexts: dict[str, EventContext],
        detected_at: datetime,
        result: BatchResult,
    ) -> dict[str, _ModelBatch]:
        """Dead-letter the bad records, push the good ones into their assets' buffers; for
        each model, the latest records of its assets with a full window, in order
        (`_ModelBatch`)."""
        stats = result.stats
        batches: dict[str, _ModelBatch] = {}
        # the next offset to read of each partition: offsets grow within a partition
        result.offsets = {(r.topic, r.partition): r.offset + 1 for r in records}
        served_models, routes, only, layout = self.served, self.routes, self._only, self.layout
        per_value = layout.shape == "value"
        field = layout.asset_field

        def asset_of(obj: object) -> str | None:  # where the producer puts the asset id
            return None if layout.plain else field_at(obj, field)

        for index, record in enumerate(records):
            value = record.value
            name: str | None = None
            try:
                if value is None:
                    raise RecordError("empty", "record has no value (a tombstone)")
                if len(value) > self.batch.max_record_bytes:
                    raise RecordError(
                        "too_large",
                        f"record is {len(value)} bytes, over the limit of "
                        f"{self.batch.max_record_bytes}",
                    )
                obj = parse_record(value)
                if per_value:
                    reading = reading_from(obj, layout)
                    name = only or route(obj, routes, served_models, reading.asset_id)
                    if name is None:
                        raise RecordError("no_model", no_model_reason(obj, routes, served_models))
                    self._assemble(index, record, name, reading, contexts, batches, result)
                    continue
                name = only or route(obj, routes, served_models, asset_of(obj))
                if name is None:
                    raise RecordError("no_model", no_model_reason(obj, routes, served_models))
                features = served_models[name].artifact.manifest.features
                asset_id, ts, values, missing = from_object(obj, features, True, layout)
            except RecordError as exc:
                stats.dead_letters[exc.reason] += 1
                result.messages.append(self._dead_letter(record, exc, detected_at, name))
                continue
            state, evicted = self.assets.get(asset_id, name)
            if evicted is not None:
                stats.evicted += 1
                self._close_evicted(*evicted, contexts, result)
            self._take(index, record, name, state, asset_id, ts, values, missing, contexts[name],
                       batches, result, len(records))  # fmt: skip
        self.partitions.moved_to(result.offsets)
        return batches

    def _assemble(
        self,
        index: int,
        message: SourceRecord,
        name: str,
        reading: Reading,
        contexts: dict[str, EventContext],
        batches: dict[str, _ModelBatch],
        result: BatchResult,
    ) -> None:
        """One sensor's value into its asset's records (worker/assembly.py); each record it
        completes goes on like a record read whole."""
        manifest = self.served[name].artifact.manifest
        try:
            feature = manifest.features.index(reading.sensor)
        except ValueError:
            raise RecordError(
                "unknown_sensor",
                f"sensor {reading.sensor!r} is not a feature of model {name} "
                f"({', '.join(manifest.features)})",
            ) from None
        state, evicted = self.assets.get(reading.asset_id, name)
        if evicted is not None:
            result.stats.evicted += 1
            self._close_evicted(*evicted, contexts, result)
        t = reading.ts.timestamp()
        if state.assembly is None:
            state.assembly = Assembly.begin(len(manifest.features), t)
        cadence = self.layout.cadence_s or manifest.training.cadence_s or 1.0
        bound = self.sensors.stale_after_s
        for tick, values, missing in assemble(
            state.assembly, t, feature, reading.value, cadence, bound
        ):
            ts = datetime.fromtimestamp(tick, UTC)
            self._take(index, message, name, state, reading.asset_id, ts, values, missing,
                       contexts[name], batches, result, 1)  # fmt: skip

    def _take(
        self,
        index: int,
        record: SourceRecord,
        name: str,
        state: AssetState,
        asset_id: str,
        ts: datetime,
        values: tuple[float, ...],
        missing: tuple[int, ...],
        context: EventContext,
        batches: dict[str, _ModelBatch],
        result: BatchResult,
        size: int,
    ) -> None:
        """One valid record of `name`'s asset: its missing values filled (or the record
        incomplete), pushed into the asset's window, and queued to be scored once the window
        is full (`size`: room for the batch's records)."""
        stats = result.stats
        state.partition = record.partition
        t = ts.timestamp()
        stats.record_times.append(t)
        if missing:
            row = self._fill(state, asset_id, record, ts, values, missing, context, result)
            assert state.sensors is not None
            if row is None:
                stats.incomplete += 1
                state.sensors.hole = True
                return
            _mend(state, state.sensors)
            ready = state.buffer.push(row)
            state.sensors.filled_at[list(missing)] = state.buffer.count
        else:
            state.full_at = t
            sensors = state.sensors
            if sensors is not None and (sensors.silent or sensors.hole or sensors.latest
                                        is not None):  # fmt: skip
                for feature, last in reported_all(sensors):
                    self._sensor_event(
                        result, "sensor_resolve", asset_id, feature, ts, record, last, context
                    )
                _mend(state, sensors)
            ready = state.buffer.push(values)
        if not ready:
            stats.warming_up += 1
            return
        batch = batches.get(name)
        if batch is None:
            batch = batches[name] = self._model_batch(self.served[name], context, size)
        n = len(batch.pending)
        if n == len(batch.seen):  # more records than the batch read (assembled ones)
            batch.grow()
        state.buffer.copy_last(batch.history[n])
        batch.seen[n] = state.buffer.count
        batch.limits[n] = state.threshold
        filled: tuple[str, ...] = ()
        if state.sensors is not None:
            window = batch.served.artifact.manifest.window
            within = state.sensors.filled_within(state.buffer.count, window)
            filled = tuple(context.features[f] for f in within)
        batch.pending.append((index, state, asset_id, ts, filled))

    @staticmethod
    def _model_batch(served: Served, context: EventContext, size: int) -> _ModelBatch:
        manifest = served.artifact.manifest
        rows = max(manifest.window, served.rules.history)
        return _ModelBatch(
            served, context, np.empty((size, rows, len(manifest.features))),
            np.empty(size, dtype=np.int64), np.empty(size),
        )  # fmt: skip

    def _fill(
        self,
        state: AssetState,
        asset_id: str,
        record: SourceRecord,
        ts: datetime,
        values: tuple[float, ...],
        missing: tuple[int, ...],
        context: EventContext,
        result: BatchResult,
    ) -> npt.NDArray[np.float64] | None:
        """A record lacking `missing`: its row with the gaps filled, or None (incomplete);
        publishes the sensor events it triggers (worker/sensors.py)."""
        t = ts.timestamp()
        if state.sensors is None:
            state.sensors = Sensors.start(len(values), state.full_at, first=t)
        last_row = state.buffer.last() if state.buffer.count else None
        filled = fill(
            state.sensors, values, missing, t, state.full_at, last_row,
            self.sensors.stale_after_s,
        )  # fmt: skip
        changes: tuple[tuple[SensorEventType, tuple[tuple[int, float | None], ...]], ...] = (
            ("sensor_resolve", filled.back),
            ("sensor_silent", filled.silenced),
        )
        for kind, changed in changes:
            for feature, last in changed:
                self._sensor_event(result, kind, asset_id, feature, ts, record, last, context)
        for feature in filled.filled:
            result.stats.filled[context.features[feature]] += 1
        return filled.values

    def _sensor_event(
        self,
        result: BatchResult,
        kind: SensorEventType,
        asset_id: str,
        feature: int,
        ts: datetime,
        record: SourceRecord | None,
        last_reported: float | None,
        context: EventContext,
        reason: str | None = None,
    ) -> None:
        self.silent += 1 if kind == "sensor_silent" else -1
        ref = (
            SourceRef(record.topic, record.partition, record.offset)
            if record is not None
            else SourceRef(self.topics.input, -1, -1)
        )
        value = sensor_event_json(
            kind, asset_id, context.features[feature], ts, ref, last_reported,
            self.sensors.stale_after_s, context, reason,
        )  # fmt: skip
        result.messages.append(Outbound(self.topics.alerts, asset_id.encode(), value))
        result.stats.events[kind] += 1

    def _apply_rules(
        self,
        records: Sequence[SourceRecord],
        batch: _ModelBatch,
        scores: Scores,
        judged: npt.NDArray[np.float64],
        above: npt.NDArray[np.bool_],
        onset: npt.NDArray[np.bool_],
        limits: npt.NDArray[np.float64],
        result: BatchResult,
    ) -> None:
        """Advance each scored record's asset by its decision (its `judged` score `above`
        `limits`), onset evidence and residual (the drift's)."""
        stats, pending, context = result.stats, batch.pending, batch.context
        name = batch.served.name
        median = batch.served.artifact.manifest.validation.holdout_score_p50
        stats.scored_by_model[name] += len(pending)
        stats.outliers_by_model[name] += int(above.sum())
        stats.above_median_by_model[name] += int((scores.score > median).sum())
        rules, partitions = batch.served.rules, self.partitions
        artifact = batch.served.artifact
        drift = artifact.detector.drift
        windows = batch.history[: len(pending), batch.history.shape[1] - artifact.manifest.window :]
        shown: dict[str, tuple[int, bool]] = {}  # assets explained: the latest record, open
        explained, now = self.explained, time.monotonic()
        for asset_id, ended in list(explained.items()):  # slots free once their linger ends
            if ended is not None and now - ended >= self.alerts.explain_linger_s:
                del explained[asset_id]
        room = self.alerts.explain_assets
        for i, is_above in enumerate(above.tolist()):
            index, state, asset_id, ts, filled = pending[i]
            if not is_above and state.rules.idle:
                continue  # nothing to track: the rules would not change (the common case)
            record, score = records[index], float(judged[i])
            ref = SourceRef(record.topic, record.partition, record.offset)
            change = state.rules.step(
                ts, ref, score, is_above, rules, bool(onset[i]), scores.residual[i], drift
            )
            partitions.observed(asset_id, state)
            if change is not None:
                kind, episode = change
                window = windows[i]  # what decided, against what the model expected
                evidence = Evidence(window, artifact.detector.reconstruct(window[None])[0])
                event = (kind, episode, asset_id, ts, ref, score, scores.shares[i], filled)
                self._event(result, *event, float(limits[i]), context, evidence)
            is_open = state.rules.episode is not None
            if is_open and asset_id not in explained and len(explained) < room:
                explained[asset_id] = None  # from its episode's opening; a storm cannot grow it
            if asset_id in explained and (is_open or explained[asset_id] is None):
                shown[asset_id] = (i, is_open)
                explained[asset_id] = None if is_open else now  # resolved: shown a while yet
        if shown:
            self._show(batch, windows, judged, limits, shown, result)

    def _show(
        self,
        batch: _ModelBatch,
        windows: npt.NDArray[np.float64],
        judged: npt.NDArray[np.float64],
        limits: npt.NDArray[np.float64],
        shown: dict[str, tuple[int, bool]],
        result: BatchResult,
    ) -> None:
        """The assets in alarm, actual against expected (one forward pass for all of them)."""
        rows = [i for i, _ in shown.values()]
        expected = batch.served.artifact.detector.reconstruct(windows[rows])[:, -1]
        features = batch.served.artifact.manifest.features
        for (asset_id, (i, is_open)), row in zip(shown.items(), expected, strict=True):
            result.stats.alarms.append(AlarmView(
                asset_id, batch.served.name, features, windows[i, -1].copy(), row,
                float(judged[i]), float(limits[i]), is_open,
            ))  # fmt: skip

    def checkpoints(
        self, partitions: Iterable[tuple[str, int]], max_bytes: int
    ) -> tuple[dict[tuple[str, int], str], int]:
        """The text to commit with each partition's offset (worker/partitions.py)."""
        return self.partitions.checkpoints(partitions, max_bytes)

    def _hand_over(
        self, handover: Handover, contexts: dict[str, EventContext], result: BatchResult
    ) -> None:
        stats = result.stats
        lost = {partition for _, partition in handover.lost}
        if lost:
            gone = [asset_id for asset_id, state in self.assets if state.partition in lost]
            # their sensor_silent events stay open: the new owner knows nothing of them
            self.silent -= sum(
                len(state.sensors.silent)
                for _, state in self.assets
                if state.partition in lost and state.sensors is not None
            )
            self.assets.drop(gone)
            for asset_id in gone:
                self.explained.pop(asset_id, None)
            stats.released += len(gone)
            self.partitions.lost(handover.lost)
        for tp, text in handover.gained.items():
            try:
                saved = decode(text)
            except CheckpointError as exc:
                stats.unreadable.append((tp, str(exc)))
                continue
            for asset_id, rules in saved.items():
                state, evicted = self.assets.restore(asset_id)
                if evicted is not None:
                    stats.evicted += 1
                    self._close_evicted(*evicted, contexts, result)
                state.rules, state.partition = rules, tp[1]
                self.partitions.restored(asset_id, state)
            stats.restored += len(saved)

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
        filled: tuple[str, ...],
        threshold: float,
        context: EventContext,
        evidence: Evidence,
    ) -> None:
        value = event_json(
            kind, episode, asset_id, ts, ref, score, shares, context, filled=filled,
            threshold=threshold, evidence=evidence,
        )  # fmt: skip
        result.messages.append(Outbound(self.topics.alerts, asset_id.encode(), value))
        result.stats.events[kind] += 1
        top = context.features[int(np.argmax(shares))]
        result.stats.episodes.append((kind, asset_id, top, context.model, context.model_version))

    def _close_evicted(
        self,
        asset_id: str,
        state: AssetState,
        contexts: dict[str, EventContext],
        result: BatchResult,
    ) -> None:
        """An evicted asset's open episode is resolved now, marked so, rather than forgotten."""
        self.explained.pop(asset_id, None)
        context = contexts.get(state.model) or next(iter(contexts.values()))
        if self.partitions.evicted(asset_id, state):
            # its partition's saved state changes: commit it again even if no record came
            tp = (self.topics.input, state.partition)
            position = self.partitions.position(tp)
            if tp not in result.offsets and position is not None:
                result.offsets[tp] = position
        if state.sensors is not None and state.model in contexts:
            for feature, last in reported_all(state.sensors):
                self._sensor_event(
                    result, "sensor_resolve", asset_id, feature, context.detected_at, None,
                    last, context, reason="evicted",
                )  # fmt: skip
        episode = state.rules.episode
        if episode is None:
            return
        ref = SourceRef(self.topics.input, -1, -1)
        value = event_json(
            "resolve", episode, asset_id, episode.ended_at, ref, episode.peak_score, None,
            context, reason="evicted", threshold=state.threshold,
        )  # fmt: skip
        result.messages.append(Outbound(self.topics.alerts, asset_id.encode(), value))
        result.stats.events["resolve"] += 1
        result.stats.episodes.append(("resolve", asset_id, None, context.model, ""))

    def _dead_letter(
        self, record: SourceRecord, exc: RecordError, now: datetime, model: str | None
    ) -> Outbound:
        envelope = {
            "reason": exc.reason,
            "model": model,
            "error": str(exc),
            "source": {"topic": record.topic, "partition": record.partition,
                       "offset": record.offset},
            "key": base64.b64encode(record.key).decode() if record.key is not None else None,
            "value": base64.b64encode(record.value).decode() if record.value is not None else None,
            "dead_lettered_at": now.isoformat().replace("+00:00", "Z"),
        }  # fmt: skip
        return Outbound(self.topics.dead_letters, record.key, json.dumps(envelope).encode())
