"""The intake stage: decoded messages into their assets' windows, in order.

Per message: its asset's state (worker/assets.py: the least recently seen asset is evicted
at the limit); one sensor's value assembled into the asset's records (anomaly/assembly.py);
each record's missing values filled or the record left incomplete (worker/sensors.py: the
sensor events it triggers); the record pushed into the asset's window; once the window is
full, the record handed to its model's scoring (worker/windows.py). Returns what it took in
(`Taken`); publishes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from anomaly.assembly import Assembly, assemble
from anomaly.decoding import Decoded
from anomaly.events import SensorEvent, SensorEventType, StateEvent
from anomaly.records import Reading, Record, SourceRecord
from anomaly.rules import SourceRef
from anomaly.states import stopped
from worker.assets import AssetState, AssetTable
from worker.sensors import Before, FloatArray, Sensors, fill, reported_all
from worker.settings import SensorSettings
from worker.windows import ModelWindows, Pending, Served


@dataclass
class Taken:
    """What a batch's messages came to: per model, the records to score; the sensor events;
    the assets evicted to make room (with their state); and the counts the metrics report."""

    size: int  # room for the batch's records in each model's windows
    windows: dict[str, ModelWindows] = field(default_factory=dict)
    sensor_events: list[SensorEvent] = field(default_factory=list)
    evicted: list[tuple[str, AssetState]] = field(default_factory=list)
    state_events: list[StateEvent] = field(default_factory=list)  # stopped, started
    warming_up: int = 0
    stopped: int = 0  # records of stopped assets (anomaly/states.py)
    starting: int = 0  # records within an asset's start-up grace after a stop
    incomplete: int = 0  # records lacking a feature with no fresh value to fill it
    filled: Counter[str] = field(default_factory=Counter)  # values filled, by feature
    record_times: list[float] = field(default_factory=list)


class Intake:
    """Takes decoded messages into the assets' windows (`take`)."""

    def __init__(
        self, assets: AssetTable, sensors: SensorSettings, cadence_s: float | None
    ) -> None:
        self.assets, self.stale_after_s, self.cadence_s = assets, sensors.stale_after_s, cadence_s

    def take(
        self, decoded: Sequence[tuple[SourceRecord, Decoded]], served: Mapping[str, Served]
    ) -> Taken:
        """Each message in order (each asset's records keep their order)."""
        taken = Taken(size=len(decoded))
        for message, (name, item) in decoded:
            state, evicted = self.assets.get(item.asset_id, name)
            if evicted is not None:
                taken.evicted.append(evicted)
            if isinstance(item, Reading):
                self._assemble(taken, message, served[name], state, item)
            else:
                self._row(taken, message, served[name], state, item)
        return taken

    def _assemble(
        self, taken: Taken, message: SourceRecord, served: Served, state: AssetState,
        reading: Reading,
    ) -> None:  # fmt: skip
        """One sensor's value; each record it completes goes on like a record read whole."""
        manifest = served.artifact.manifest
        t = reading.ts.timestamp()
        if state.assembly is None:
            state.assembly = Assembly.begin(len(manifest.features), t)
        cadence = self.cadence_s or manifest.training.cadence_s or 1.0
        feature = manifest.features.index(reading.sensor)
        for tick, values, missing in assemble(
            state.assembly, t, feature, reading.value, cadence, self.stale_after_s
        ):
            ts = datetime.fromtimestamp(tick, UTC)
            self._row(taken, message, served, state, Record(reading.asset_id, ts, values, missing))

    def _row(
        self, taken: Taken, message: SourceRecord, served: Served, state: AssetState,
        record: Record,
    ) -> None:  # fmt: skip
        """One record into its asset's window, its gaps filled first; handed to scoring once
        the window is full."""
        state.partition = message.partition
        asset_id, ts, values, missing = record
        t = ts.timestamp()
        taken.record_times.append(t)
        if served.stopped is not None and not self._running(taken, message, served, state, record):
            return
        if missing:
            row = self._fill(taken, message, served, state, record)
            sensors = state.sensors
            assert sensors is not None
            if row is None:
                taken.incomplete += 1
                sensors.hole = True
                return
            _mend(state, sensors)
            ready = state.buffer.push(row)
            sensors.filled_at[list(missing)] = state.buffer.count
        else:
            state.full_at = t
            sensors = state.sensors
            if sensors is not None and (sensors.silent or sensors.hole or sensors.latest
                                        is not None):  # fmt: skip
                names = served.artifact.manifest.features
                for feature, last in reported_all(sensors):
                    taken.sensor_events.append(SensorEvent(
                        "sensor_resolve", asset_id, served.name, names[feature], ts,
                        _ref(message), last,
                    ))  # fmt: skip
                _mend(state, sensors)
            ready = state.buffer.push(values)
        if not ready:
            taken.warming_up += 1
            return
        windows = taken.windows.get(served.name)
        if windows is None:
            windows = taken.windows[served.name] = ModelWindows.start(served, taken.size)
        filled: tuple[str, ...] = ()
        if state.sensors is not None:
            manifest = served.artifact.manifest
            within = state.sensors.filled_within(state.buffer.count, manifest.window)
            filled = tuple(manifest.features[f] for f in within)
        windows.add(state, Pending(message, state, asset_id, ts, filled))

    def _running(
        self, taken: Taken, message: SourceRecord, served: Served, state: AssetState,
        record: Record,
    ) -> bool:  # fmt: skip
        """Whether the record is scored as far as its asset's operating state goes: not when
        it shows the asset stopped, nor within the start-up grace after a stop; the asset's
        window restarts after either (no window spans a stop)."""
        assert served.stopped is not None
        asset_id, ts, values, _ = record
        t = ts.timestamp()
        states = served.artifact.manifest.states
        assert states is not None
        if stopped(served.stopped, values):
            if not state.stopped:
                state.stopped = True
                taken.state_events.append(StateEvent(
                    "stopped", asset_id, served.name, ts, _ref(message), states.stopped_when, 0.0
                ))  # fmt: skip
            state.buffer.clear()
            taken.stopped += 1
            return False
        if state.stopped:
            state.stopped, state.starting_until = False, t + served.grace_s
            taken.state_events.append(StateEvent(
                "started", asset_id, served.name, ts, _ref(message), states.stopped_when,
                served.grace_s,
            ))  # fmt: skip
        if t < state.starting_until:
            state.buffer.clear()
            taken.starting += 1
            return False
        return True

    def _fill(
        self, taken: Taken, message: SourceRecord, served: Served, state: AssetState,
        record: Record,
    ) -> FloatArray | None:  # fmt: skip
        """A record lacking some values: its row with the gaps filled, or None (incomplete)."""
        asset_id, ts, values, missing = record
        t = ts.timestamp()
        if state.sensors is None:
            state.sensors = Sensors.start(len(values), state.full_at, first=t)
        last_row = state.buffer.last() if state.buffer.count else None
        before = Before(state.full_at, last_row)
        filled = fill(state.sensors, values, missing, t, before, self.stale_after_s)
        changes: tuple[tuple[SensorEventType, tuple[tuple[int, float | None], ...]], ...] = (
            ("sensor_resolve", filled.back),
            ("sensor_silent", filled.silenced),
        )
        features = served.artifact.manifest.features
        for kind, changed in changes:
            for feature, last in changed:
                taken.sensor_events.append(SensorEvent(
                    kind, asset_id, served.name, features[feature], ts, _ref(message), last
                ))  # fmt: skip
        for feature in filled.filled:
            taken.filled[features[feature]] += 1
        return filled.values


def _mend(state: AssetState, sensors: Sensors) -> None:
    """After incomplete records (a hole in the asset's series), its window starts afresh: a
    window never spans a hole, whose two sides the model would take for a jump."""
    if sensors.hole:
        state.buffer.clear()
        sensors.forget_fills()
        sensors.hole = False


def _ref(message: SourceRecord) -> SourceRef:
    return SourceRef(message.topic, message.partition, message.offset)
