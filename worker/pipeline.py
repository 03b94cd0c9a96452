"""The pure core of the worker: a batch of raw records in, messages and offsets out.

A one-way chain of stages, each a module returning a value to the next:

    hand over (partitions gained and lost: worker/checkpoint.py)
    -> decode (anomaly/decoding.py: a model and a record, or a dead letter)
    -> intake (worker/intake.py: values assembled, gaps filled, windows: worker/windows.py)
    -> score (worker/score.py: one forward pass per model, judged, threshold, onset)
    -> decide (worker/decide.py: the alert rules, with the residual drift)
    -> emit (worker/emit.py: alert events, sensor events, dead letters; worker/alarms.py:
       the board's alarm rows)

The state kept between batches: each asset's window and alert state (worker/assets.py), and
per partition what is saved with its offsets (worker/partitions.py). No I/O: the runner
polls, publishes what `process` returns, then commits its offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import numpy as np

from anomaly.calendar import Calendar
from anomaly.decoding import Decoded, Decoder
from anomaly.events import (
    AlertEvent,
    EventContext,
    IncidentEvent,
    SensorEvent,
)
from anomaly.incidents import IncidentRules, Incidents
from anomaly.instrument_table import InstrumentTable
from anomaly.model import Artifact
from anomaly.records import RecordError, SourceRecord
from anomaly.rules import Rules, SourceRef
from anomaly.settings import DEFAULT_MODEL, InputSettings, RouteSettings, TopicSettings
from worker.alarms import AlarmSlots
from worker.assets import AssetState, AssetTable
from worker.batch import BatchResult, BatchStats
from worker.checkpoint import CheckpointError, Handover, decode
from worker.decide import decide
from worker.emit import Emitted, alert_events, dead_letter, fault_events
from worker.faults import OpenFaults
from worker.intake import Intake, Taken
from worker.partitions import PartitionStates
from worker.score import Scored, score
from worker.sensors import reported_all
from worker.settings import AlertSettings, BatchSettings, SensorSettings
from worker.windows import Served

__all__ = ["BatchProcessor", "BatchResult", "BatchStats", "Served"]  # batch: worker/batch.py

log = logging.getLogger(__name__)


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
        incidents: IncidentRules | None = None,
        area_field: str | None = None,
    ) -> None:
        self.topics, self.batch, self.alerts = topics, batch, alerts
        self.layout = layout if layout is not None else InputSettings()
        self.sensors = sensors if sensors is not None else SensorSettings()
        self.routes = routes if routes is not None else RouteSettings()
        self.clock = clock
        self.silent = 0  # (asset, feature) pairs with an open sensor_silent event
        self.calendar = Calendar()  # maintenance windows and shelves (the runner keeps it)
        self.faults = OpenFaults()  # each asset's sensors out of order now
        self.incidents = Incidents(incidents if incidents is not None else IncidentRules())
        self.area_field = area_field  # where records say their asset's area (None: nowhere)
        self.served: dict[str, Served] = {}
        self.assets = AssetTable(alerts.max_assets, window=1, n_features=1)
        self.partitions = PartitionStates(clock)
        self.alarms = AlarmSlots(alerts.explain_assets, alerts.explain_linger_s)
        self.intake = Intake(self.assets, self.sensors, self.layout.cadence_s)
        self.decoder = self._decoder()

    @property
    def explained(self) -> dict[str, float | None]:
        """The assets holding an alarm row (worker/alarms.py)."""
        return self.alarms.held

    def _decoder(self) -> Decoder:
        features = {name: s.artifact.manifest.features for name, s in self.served.items()}
        field = self.area_field
        labels = None if field is None else (field, self.incidents.labels)
        return Decoder(self.layout, self.routes, features, partial=True,
                       max_bytes=self.batch.max_record_bytes, labels=labels)  # fmt: skip

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
        states, profile = manifest.states, manifest.instruments
        self.served[name] = Served(
            name, artifact, rules,
            states.rule(manifest.features) if states is not None else None,
            states.grace_s if states is not None else 0.0,
            InstrumentTable(profile) if profile is not None else None,
        )  # fmt: skip
        self.assets.set_thresholds(lambda asset_id: manifest.threshold_for(asset_id).value, name)
        self.decoder = self._decoder()
        if overrides:
            log.warning(
                "alert rules of model %s (%s) overridden by WORKER_ALERTS__*: %s (the model's: "
                "%s)", name, artifact.version, overrides, manifest.rules.model_dump(),
            )  # fmt: skip

    @property
    def stopped_assets(self) -> int:
        """Assets whose latest record showed them stopped (anomaly/states.py)."""
        return sum(1 for _, state in self.assets if state.stopped)

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
        stats, emitted = result.stats, Emitted()
        contexts = self._contexts()
        if handover is not None:
            self._hand_over(handover, contexts, stats, emitted, result.offsets)
        started = time.perf_counter()
        decoded = self._decode(records, contexts[next(iter(contexts))].detected_at, stats, emitted)
        # the next offset to read of each partition: offsets grow within a partition
        read = {(r.topic, r.partition): r.offset + 1 for r in records}
        result.offsets.update(read)
        self.partitions.moved_to(read)
        taken = self.intake.take(decoded, self.served)
        stats.decode_s = time.perf_counter() - started
        self._taken(taken, contexts, result, emitted)
        started = time.perf_counter()
        scored = [score(windows) for windows in taken.windows.values()]
        stats.score_s = time.perf_counter() - started
        for one in scored:
            self._decide(one, contexts[one.windows.served.name], stats, emitted)
        if scored:
            stats.scores = np.concatenate([one.scores.score for one in scored])
        result.messages = emitted.messages
        stats.events, stats.episodes = emitted.events, emitted.episodes
        stats.faults = emitted.faults
        return result

    def _contexts(self) -> dict[str, EventContext]:
        """What each model's events of this batch share."""
        detected_at = datetime.fromtimestamp(self.clock(), UTC)
        return {
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

    def _decode(
        self, records: Sequence[SourceRecord], now: datetime, stats: BatchStats, emitted: Emitted
    ) -> list[tuple[SourceRecord, Decoded]]:
        """The records that keep to the contract; the others dead-lettered."""
        decoded = []
        decoder = self.decoder
        for record in records:
            try:
                decoded.append((record, decoder.decode(record.value)))
            except RecordError as exc:
                stats.dead_letters[exc.reason] += 1
                emitted.messages.append(dead_letter(self.topics.dead_letters, record, exc, now))
        return decoded

    def _taken(
        self,
        taken: Taken,
        contexts: dict[str, EventContext],
        result: BatchResult,
        emitted: Emitted,
    ) -> None:
        """The intake's sensor events and evictions published, its counts kept."""
        stats = result.stats
        stale_s = self.sensors.stale_after_s
        for event in taken.sensor_events:
            self.silent += 1 if event.kind == "sensor_silent" else -1
            emitted.sensor(self.topics, event, contexts[event.model], stale_s)
        for state_event in taken.state_events:
            emitted.state(self.topics.alerts, state_event, contexts[state_event.model])
        for asset_id, state in taken.evicted:
            self._close_evicted(asset_id, state, contexts, emitted, result.offsets)
        stats.evicted += len(taken.evicted)
        stats.warming_up, stats.incomplete = taken.warming_up, taken.incomplete
        stats.stopped, stats.starting = taken.stopped, taken.starting
        stats.filled, stats.record_times = taken.filled, taken.record_times

    def _decide(
        self, scored: Scored, context: EventContext, stats: BatchStats, emitted: Emitted
    ) -> None:
        """One model's scored records through the rules, their events and alarm rows."""
        served = scored.windows.served
        name, n = served.name, len(scored.windows.pending)
        median = served.artifact.manifest.validation.holdout_score_p50
        stats.scored_by_model[name] += n
        stats.outliers_by_model[name] += int(scored.above.sum())
        stats.above_median_by_model[name] += int((scored.scores.score > median).sum())
        for fault in fault_events(scored, context):
            emitted.fault(self.topics.alerts, fault, context)
            self.faults.note(fault)
        decided = decide(scored, self.partitions, self.calendar, self.incidents)
        for event in alert_events(scored, decided):
            emitted.alert(self.topics.alerts, event, context)
        for change in decided.incidents:
            emitted.incident(self.topics.alerts, IncidentEvent(change), context)
        stats.alarms.extend(self.alarms.show(scored, decided))

    def _forget_faults(
        self, asset_id: str, model: str, emitted: Emitted, context: EventContext | None
    ) -> None:
        """An asset this worker lets go (`context`: evicted, its faults resolved with an event;
        None: its partition moved, the new owner finds them again)."""
        served = self.served.get(model)
        if served is not None and served.instruments is not None:
            served.instruments.release(asset_id)
        if context is None:
            emitted.faults += [
                (False, asset_id, f, k, model) for f, k in self.faults.take(asset_id)
            ]
            return
        for event in self.faults.evicted(asset_id, model, context.detected_at, self.topics.input):
            emitted.fault(self.topics.alerts, event, context)

    def checkpoints(
        self, partitions: Iterable[tuple[str, int]], max_bytes: int
    ) -> tuple[dict[tuple[str, int], str], int]:
        """The text to commit with each partition's offset (worker/partitions.py)."""
        return self.partitions.checkpoints(partitions, max_bytes)

    def _hand_over(
        self,
        handover: Handover,
        contexts: dict[str, EventContext],
        stats: BatchStats,
        emitted: Emitted,
        offsets: dict[tuple[str, int], int],
    ) -> None:
        """Lost partitions' assets forgotten, gained ones' alert state restored."""
        lost = {partition for _, partition in handover.lost}
        if lost:
            gone = [(a, s) for a, s in self.assets if s.partition in lost]
            # their sensor_silent events stay open: the new owner knows nothing of them
            self.silent -= sum(len(s.sensors.silent) for _, s in gone if s.sensors is not None)
            self.assets.drop(a for a, _ in gone)
            for asset_id, state in gone:
                self.alarms.forget(asset_id)
                if state.rules.episode is not None:
                    self.incidents.forget(state.rules.episode.episode_id)
                self._forget_faults(asset_id, state.model, emitted, None)
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
                    self._close_evicted(*evicted, contexts, emitted, offsets)
                state.rules, state.partition = rules, tp[1]
                self.partitions.restored(asset_id, state)
                episode = rules.episode
                if episode is not None and episode.incident is not None:
                    self.incidents.restore(episode.episode_id, episode.incident, asset_id,
                                           state.model, episode.started_at)  # fmt: skip
            stats.restored += len(saved)

    def _close_evicted(
        self,
        asset_id: str,
        state: AssetState,
        contexts: dict[str, EventContext],
        emitted: Emitted,
        offsets: dict[tuple[str, int], int],
    ) -> None:
        """An evicted asset's open episode is resolved now, marked so, rather than forgotten;
        its partition's saved state changes, so its offset is committed again (`offsets`)."""
        self.alarms.forget(asset_id)
        context = contexts.get(state.model) or next(iter(contexts.values()))
        self._forget_faults(asset_id, state.model, emitted, context)
        if self.partitions.evicted(asset_id, state):
            tp = (self.topics.input, state.partition)
            position = self.partitions.position(tp)
            if tp not in offsets and position is not None:
                offsets[tp] = position
        if state.sensors is not None and state.model in contexts:
            for feature, last in reported_all(state.sensors):
                back = SensorEvent(
                    "sensor_resolve", asset_id, state.model, context.features[feature],
                    context.detected_at, None, last, reason="evicted",
                )  # fmt: skip
                self.silent -= 1
                emitted.sensor(self.topics, back, context, self.sensors.stale_after_s)
        episode = state.rules.episode
        if episode is None:
            return
        ref = SourceRef(self.topics.input, -1, -1)
        resolve = AlertEvent(
            "resolve", episode, asset_id, episode.ended_at, ref, episode.peak_score,
            threshold=state.threshold, reason="evicted",
        )  # fmt: skip
        emitted.alert(self.topics.alerts, resolve, context)
        left = self.incidents.ended(episode.episode_id, episode.ended_at)
        if left is not None:
            emitted.incident(self.topics.alerts, IncidentEvent(left), context)
