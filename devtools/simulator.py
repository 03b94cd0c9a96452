"""A simulated fleet of pumps: correlated sensors, noise, and injected faults.

Each pump's eight sensors are a fixed linear mix of two hidden factors (a slow oscillation of
the duty cycle and a stationary AR(1) load), plus independent noise, each in its own units.
`pressure` and `flow` follow the same factor closely, so breaking their correlation is a fault
that no single sensor's range reveals. Used by the demo, the tests and the benchmarks.

A plant-wide upset (`Fleet.upsets`: a sag in the supply) moves several pumps' sensors together,
the same sensors by the same amounts on each.

Pumps stop and start (`Fleet.stops`): while stopped, every sensor sits at its stopped value
(speed 0 rpm: the operating-state rule `speed < 100` says so, anomaly/states.py), and after a
restart each sensor comes back to its running value along an exponential start-up transient.

A second asset type, compressors (`COMPRESSOR`: five sensors of their own, mixed otherwise),
makes a mixed fleet: each record says its type in `asset_type` (named models route by it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from anomaly.model.features import FloatArray

FEATURES = (
    "pressure", "flow", "current", "vibration", "temperature", "speed", "power", "bearing_temp"
)  # fmt: skip
N_FEATURES = len(FEATURES)
_MIX = np.array(
    [[1.0, 0.2], [0.95, 0.25], [0.3, 1.0], [-0.6, 0.5], [0.1, -0.9], [0.7, 0.7], [0.5, 0.8],
     [0.2, -0.6]]
)  # fmt: skip
_OFFSET = np.array([5.0, 20.0, -3.0, 100.0, 0.0, 1480.0, 15.0, 60.0])  # speed in rpm
_UNIT = np.array([1.0, 4.0, 0.5, 10.0, 2.0, 30.0, 3.0, 5.0])
NOISE = 0.1
START = datetime(2026, 1, 1, tzinfo=UTC)

FaultKind = Literal["spike", "drift", "stuck", "broken_correlation"]
FAULT_KINDS: tuple[FaultKind, ...] = ("spike", "drift", "stuck", "broken_correlation")


@dataclass(frozen=True)
class AssetType:
    """A kind of asset: its sensors, how they mix the hidden factors, their units, and the
    sensor each kind of fault hits."""

    name: str
    features: tuple[str, ...]
    mix: FloatArray
    offset: FloatArray
    unit: FloatArray
    fault_sensors: dict[str, str]

    @property
    def stopped(self) -> FloatArray:
        """Each sensor's value while the asset is stopped: 4 units under its running level,
        a speed of 0."""
        values = self.offset - 4.0 * self.unit
        if "speed" in self.features:
            values[self.features.index("speed")] = 0.0
        return np.asarray(values, dtype=np.float64)


STARTUP_TAU = 4.0  # records: the start-up transient's time constant after a stop


@dataclass(frozen=True)
class Stop:
    """One asset stopped for its readings [start, end) (indices into its stream)."""

    asset_id: str
    start: int
    end: int


@dataclass(frozen=True)
class Upset:
    """A plant-wide upset: one upstream cause (a sag in the supply that drives the pumps)
    moves several pumps together over readings [start, end): on each, the same sensors by the
    same amounts (UPSET, in the sensors' standard units), ramped in over UPSET_RAMP readings."""

    assets: tuple[str, ...]
    start: int
    end: int


# A supply sag: slower, lower current and power, and less flow and pressure with them.
UPSET = {"speed": -5.0, "current": -5.0, "power": -5.0, "flow": -2.5, "pressure": -2.5}
UPSET_RAMP = 5


def upset(rows: FloatArray, start: int, end: int, kind: AssetType) -> FloatArray:
    """`rows` with an upset over [start, end): each sensor UPSET names moved by its amount
    (in units of the sensor's spread), reached after UPSET_RAMP readings."""
    out = rows.copy()
    ramp = np.minimum(np.arange(1, end - start + 1) / UPSET_RAMP, 1.0)[:, None]
    shift = np.array([UPSET.get(f, 0.0) for f in kind.features]) * kind.unit
    out[start:end] += ramp * shift
    return out


def stop(rows: FloatArray, start: int, end: int, kind: AssetType) -> FloatArray:
    """`rows` with the asset stopped over [start, end), then starting up: each sensor moves
    from its stopped value back to its running one with time constant STARTUP_TAU."""
    out = rows.copy()
    out[start:end] = kind.stopped
    after = np.arange(1, len(rows) - end + 1)  # its first record at `end` runs again
    decay = np.exp(-after / STARTUP_TAU)[:, None]
    out[end:] = rows[end:] + (kind.stopped - rows[end:]) * decay
    return out


PUMP = AssetType(
    "pump", FEATURES, _MIX, _OFFSET, _UNIT,
    {"spike": "vibration", "drift": "temperature", "stuck": "current",
     "broken_correlation": "flow"},
)  # fmt: skip
COMPRESSOR = AssetType(
    "compressor",
    ("suction_pressure", "discharge_pressure", "motor_current", "vibration", "oil_temp"),
    np.array([[0.9, 0.3], [1.0, 0.2], [0.4, 0.9], [-0.5, 0.6], [0.2, -0.8]]),
    np.array([2.0, 9.0, 40.0, 5.0, 70.0]),
    np.array([0.3, 1.5, 6.0, 0.8, 4.0]),
    {"spike": "vibration", "drift": "oil_temp", "stuck": "motor_current",
     "broken_correlation": "discharge_pressure"},
)  # fmt: skip


def clean_rows(
    n: int, seed: int, noise: float = NOISE, kind: AssetType | None = None
) -> FloatArray:
    """n consecutive clean readings (n, sensors) of one asset of `kind` (a pump by default),
    from a stationary process (`noise`: the sensors' own noise, in standard units of the
    process)."""
    kind = kind or PUMP
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    t = np.arange(n)
    slow = np.sin(2 * np.pi * t / 97.0 + phase)
    ar = np.empty(n)
    ar[0] = rng.normal()
    shocks = rng.normal(scale=np.sqrt(1 - 0.95**2), size=n)
    for i in range(1, n):
        ar[i] = 0.95 * ar[i - 1] + shocks[i]
    latent = np.stack([slow, ar], axis=1)
    standard = latent @ kind.mix.T + rng.normal(scale=noise, size=(n, len(kind.features)))
    return np.asarray(standard * kind.unit + kind.offset, dtype=np.float64)


def sensor_std(rows: FloatArray) -> FloatArray:
    """Each sensor's standard deviation over `rows`."""
    return np.asarray(rows.std(axis=0), dtype=np.float64)


def spike(rows: FloatArray, sensor: int, at: np.ndarray, size: float = 8.0) -> FloatArray:
    """Spikes of `size` standard deviations on one sensor at the rows `at`."""
    out = rows.copy()
    out[at, sensor] += size * sensor_std(rows)[sensor]
    return out


def drift(rows: FloatArray, sensor: int, size: float = 6.0) -> FloatArray:
    """A ramp from 0 to `size` standard deviations over all rows on one sensor."""
    out = rows.copy()
    out[:, sensor] += np.linspace(0, size, len(rows)) * sensor_std(rows)[sensor]
    return out


def stuck(rows: FloatArray, sensor: int) -> FloatArray:
    """One sensor frozen at its first value while the others move on."""
    out = rows.copy()
    out[:, sensor] = rows[0, sensor]
    return out


def broken_correlation(rows: FloatArray, seed: int, sensor: int = 1) -> FloatArray:
    """One sensor (`flow`) decouples from its partner (`pressure`): same range, values from
    elsewhere in time."""
    out = rows.copy()
    out[:, sensor] = np.random.default_rng(seed).permutation(rows[:, sensor])
    return out


@dataclass(frozen=True)
class Fault:
    """A fault injected into one pump's readings [start, end) (indices into its stream)."""

    asset_id: str
    kind: FaultKind
    sensor: str
    start: int
    end: int
    start_ts: datetime
    end_ts: datetime  # the timestamp of the last faulty reading


def inject(
    rows: FloatArray, fault: Fault, seed: int, features: tuple[str, ...] = FEATURES
) -> FloatArray:
    """`rows` (columns: `features`) with `fault` applied to its rows [start, end)."""
    out = rows.copy()
    segment = out[fault.start : fault.end]
    sensor = features.index(fault.sensor)
    if fault.kind == "spike":
        segment = spike(segment, sensor, np.arange(len(segment)))
    elif fault.kind == "drift":
        segment = drift(segment, sensor)
    elif fault.kind == "stuck":
        segment = stuck(segment, sensor)
    else:
        segment = broken_correlation(segment, seed, sensor)
    out[fault.start : fault.end] = segment
    return out


def timestamp(index: int, start: datetime = START) -> datetime:
    """The simulated time of a pump's index-th reading (one per second from `start`)."""
    return start + timedelta(seconds=index)


def asset_name(i: int, kind: AssetType | None = None) -> str:
    return f"{(kind or PUMP).name}-{i:02d}"


@dataclass(frozen=True)
class Fleet:
    """`n_assets` pumps, each with its own seed; readings one per second per pump; the pumps
    in `noisy` run twice as noisy as the others (a pump of the same type, judged against its
    own normal: per-asset thresholds)."""

    n_assets: int = 8
    seed: int = 0
    start: datetime = START
    noisy: tuple[int, ...] = ()
    kind: AssetType = PUMP
    stops: tuple[Stop, ...] = ()
    upsets: tuple[Upset, ...] = ()

    @property
    def features(self) -> tuple[str, ...]:
        return self.kind.features

    def name(self, i: int) -> str:
        return asset_name(i, self.kind)

    def rows(self, asset: int, n: int) -> FloatArray:
        noise = NOISE * (2.0 if asset in self.noisy else 1.0)
        return clean_rows(n, seed=self.seed * 10_000 + asset, noise=noise, kind=self.kind)

    def faults(self, n: int, first: int = 100, length: int = 60) -> list[Fault]:
        """One fault per pump, kinds in turn, each `length` readings from `first` on
        (spikes last 6 readings: a burst, not one blip)."""
        out = []
        for i in range(self.n_assets):
            kind = FAULT_KINDS[i % len(FAULT_KINDS)]
            sensor = self.kind.fault_sensors[kind]
            span = 6 if kind == "spike" else length
            at = min(first + 17 * i, n - span)
            out.append(
                Fault(self.name(i), kind, sensor, at, at + span,
                      timestamp(at, self.start), timestamp(at + span - 1, self.start))
            )  # fmt: skip
        return out

    def records(self, n: int, faults: Sequence[Fault] = ()) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of n input records of every pump, interleaved in time order; the key
        is the asset id."""
        series = []
        for i in range(self.n_assets):
            rows = self.rows(i, n)
            for fault in faults:  # an asset may have several, in turn
                if fault.asset_id == self.name(i):
                    rows = inject(rows, fault, seed=self.seed + i, features=self.features)
            for shared in self.upsets:
                if self.name(i) in shared.assets:
                    rows = upset(rows, shared.start, shared.end, self.kind)
            for pause in self.stops:
                if pause.asset_id == self.name(i):
                    rows = stop(rows, pause.start, pause.end, self.kind)
            series.append(rows)
        names = [self.name(i) for i in range(self.n_assets)]
        for t in range(n):
            ts = timestamp(t, self.start).isoformat().replace("+00:00", "Z")
            for i, rows in enumerate(series):
                values = dict(zip(self.features, rows[t].tolist(), strict=True))
                record = {"asset_id": names[i], "asset_type": self.kind.name, "ts": ts,
                          "values": values}  # fmt: skip
                yield names[i].encode(), json.dumps(record).encode()
