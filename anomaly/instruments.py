"""Broken sensors told apart from process faults: instrumentation events per asset and sensor.

A process fault moves the plant, and its sensors tell it; a broken transmitter stops telling
the truth about one sensor. Three kinds, each judged per sensor against what the model's clean
training rows showed of it (`SensorProfile.fit`: every asset of the model, each asset's series
on its own, so no run and no change spans two assets); defaults in `InstrumentRules`:

- **stuck**: it has held its value for `stuck_after` records in a row: 4 (`run_margin`) times
  its longest such run in training, at least 8 (`min_run`). Held: within 0.001 (`still_share`)
  of its `step`, its median non-zero change in training. Only a sensor that changes in 10%
  (`moving_share`) of its training records or more can be stuck (a status, a setpoint never
  is); an analyser that holds each sample a few records has a longer run in training, so a
  longer `stuck_after`. It ends when the sensor moves twice within `stuck_after` records (a
  valve at its stop that steps once in a while stays one event).
- **held** (no event: not trusted yet): a sensor that could be stuck has held its value for 3
  (`held_margin`) times its longest run in training, at least half of `min_run` (4): the
  worker scores its asset without it already (a stuck sensor would otherwise count for its
  first records); its event waits for `stuck_after`.
- **out_of_range**: beyond the trained range by more than 5 (`range_margin`) times the larger
  of its width and its magnitude (max |low|, |high|), or outside the operator's `physical`
  range. Process faults go far out of the trained range too: an 8-deviation spike 1.3 widths,
  a rig's vibration under imbalance 50 widths (SKAB), a valve driven open 3.3 times its
  magnitude (Tennessee Eastman). From training alone only an absurd value (a scaling error, a
  sentinel) is out of range; the operator's range catches a transmitter failed low or high.
- **noisy**: more than half of its last 61 (`window`) roughnesses, |x[t] - 2 x[t-1] + x[t-2]|
  (what no ramp or slow swing of the process explains), exceed 4 (`noise_margin`) times its
  `noise`: the largest median of 61 consecutive roughnesses in training (at least its step);
  a median, so a burst shorter than half the window is not noise. And it is alone: no other
  sensor of the asset has its median above 2 (`calm_margin`) times its noise (a transmitter
  breaks alone, a process disturbance roughens several sensors). It ends when its median is
  back within 2 times its noise.

One fault per sensor at a time, so one broken transmitter is one event: it opens at the first
record at which some rule holds, with the kind of the first of (out_of_range, stuck, noisy)
that holds, and ends at the first at which none does.

A missing value (NaN) is no evidence either way: never out of range, never held (its run
restarts at it and at the record after it, so a stuck sensor's fault ends at the record after
a NaN, as if it had moved twice), and its roughness and the next two records' are not rough.

`step` decides one record of an asset on its `InstrumentState` (O(features): counts, no loop
over the window): the rules as plainly as they go, the reference. The worker's form is
anomaly/instrument_table.py: the states of many assets of one model, a row each, a batch of
their records decided at once with the answers of `step` record by record. `sensor_faults`
marks the records inside faults of one asset's series offline (the training job), with the
same answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]
_T = TypeVar("_T", bound=np.generic)

Kind = Literal["stuck", "out_of_range", "noisy"]
KINDS: tuple[Kind, ...] = ("out_of_range", "stuck", "noisy")  # a fault's kind: the first held
_CHUNK = 4096  # training windows whose median is taken at once


class InstrumentRules(BaseModel):
    """The rules' constants (see the module's docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(default=61, ge=3, description="roughnesses whose median is the noise")
    noise_margin: float = Field(default=4.0, gt=1.0)
    calm_margin: float = Field(default=2.0, ge=1.0)
    range_margin: float = Field(default=5.0, ge=0.0)
    run_margin: float = Field(default=4.0, ge=1.0)
    min_run: int = Field(default=8, ge=2)
    # held (not trusted, no event yet): `held_margin` times the longest run, at least min_run / 2
    held_margin: float = Field(default=3.0, ge=1.0)
    still_share: float = Field(default=1e-3, gt=0.0, lt=1.0)
    moving_share: float = Field(default=0.1, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> InstrumentRules:
        if not self.noise_margin > self.calm_margin:
            raise ValueError("noise_margin must be above calm_margin")
        return self


@dataclass(frozen=True, eq=False)
class _Limits:
    tolerance: FloatArray
    stuck_after: FloatArray  # inf: never stuck
    held_after: FloatArray  # a run far longer than training held (inf: not a moving sensor)
    floor: FloatArray
    ceiling: FloatArray
    loud: FloatArray  # noise_margin * noise (inf: never noisy)
    calm: FloatArray  # calm_margin * noise


class SensorProfile(BaseModel):
    """What a model's training showed of each sensor (`features`), the operator's physical
    ranges (either bound may be None) and the rules' constants."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    features: tuple[str, ...] = Field(min_length=1)
    low: tuple[float, ...]
    high: tuple[float, ...]
    step: tuple[float, ...] = Field(description="median non-zero change (0: never moved)")
    changing: tuple[float, ...] = Field(description="share of records that changed")
    longest_run: tuple[int, ...] = Field(description="most records in a row holding a value")
    noise: tuple[float, ...] = Field(description="largest median of `window` roughnesses")
    physical: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    rules: InstrumentRules = InstrumentRules()

    @model_validator(mode="after")
    def _consistent(self) -> SensorProfile:
        n = len(self.features)
        if len(set(self.features)) != n:
            raise ValueError(f"features named twice: {self.features}")
        for name in ("low", "high", "step", "changing", "longest_run", "noise"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name}: {len(getattr(self, name))} values for {n} features")
        for name, (lo, hi) in self.physical.items():
            if name not in self.features or (lo is not None and hi is not None and lo >= hi):
                raise ValueError(f"physical range of {name!r}: ({lo}, {hi}) for {self.features}")
        return self

    @cached_property
    def limits(self) -> _Limits:
        """The rules' bounds per feature, as arrays (computed once)."""
        rules, step = self.rules, np.array(self.step)
        low, high = np.array(self.low), np.array(self.high)
        moves = (np.array(self.changing) >= rules.moving_share) & (step > 0)
        run = np.maximum(rules.min_run, np.ceil(rules.run_margin * np.array(self.longest_run)))
        scale = np.maximum(high - low, np.maximum(np.abs(low), np.abs(high)))
        margin = np.where(scale > 0, rules.range_margin * scale, np.inf)
        floor, ceiling = low - margin, high + margin
        for name, (lo, hi) in self.physical.items():
            f = self.features.index(name)
            floor[f] = floor[f] if lo is None else max(floor[f], lo)
            ceiling[f] = ceiling[f] if hi is None else min(ceiling[f], hi)
        noise = np.where(step > 0, np.array(self.noise), np.inf)
        held = np.maximum(rules.min_run / 2, rules.held_margin * np.array(self.longest_run))
        return _Limits(
            rules.still_share * step, np.where(moves, run, np.inf), np.where(moves, held, np.inf),
            floor, ceiling, rules.noise_margin * noise, rules.calm_margin * noise,
        )  # fmt: skip

    @classmethod
    def fit(
        cls,
        rows_per_asset: Sequence[FloatArray],
        features: Sequence[str],
        physical: Mapping[str, tuple[float | None, float | None]] | None = None,
        rules: InstrumentRules | None = None,
    ) -> SensorProfile:
        """Fitted on the clean training rows of each asset, (n, len(features)) each."""
        rules, features = rules or InstrumentRules(), tuple(features)
        series = [np.asarray(rows, dtype=np.float64) for rows in rows_per_asset]
        if not series:
            raise ValueError("fit needs the rows of at least one asset")
        for i, rows in enumerate(series):
            if rows.ndim != 2 or rows.shape[1] != len(features) or not len(rows):
                raise ValueError(f"asset {i}: rows of shape {rows.shape}, {len(features)} features")
            if not np.isfinite(rows).all():
                raise ValueError(f"asset {i}: rows must be finite")
        changes = [_changes(rows, 1) for rows in series]
        flat = np.concatenate([c[1:] for c in changes])
        step = np.array([np.median(c[c > 0]) if (c > 0).any() else 0.0 for c in flat.T])
        tolerance = rules.still_share * step
        changing = (flat > tolerance).mean(axis=0) if len(flat) else np.zeros(len(features))
        longest = np.max([_runs(c, tolerance).max(axis=0) for c in changes], axis=0)
        noise = np.max([_median(_changes(r, 2)[2:], rules.window) for r in series], axis=0)
        return cls(
            features=features, low=_floats(np.min([r.min(axis=0) for r in series], axis=0)),
            high=_floats(np.max([r.max(axis=0) for r in series], axis=0)), step=_floats(step),
            changing=_floats(changing), longest_run=tuple(int(r) for r in longest),
            noise=_floats(np.maximum(noise, step)), physical=dict(physical or {}), rules=rules,
        )  # fmt: skip


class Change(NamedTuple):
    """A feature's fault opened (`opened`) or ended at a record; `kind`: the kind it opened
    with."""

    feature: int
    kind: Kind
    opened: bool


@dataclass(slots=True)
class InstrumentState:
    """One asset's sensors as the rules follow them: its last two records, each feature's run
    of held values, which of its last `window` roughnesses were loud and rough (`ring`, their
    `counts`), whether each is stuck and noisy (`latched`), and its open fault (`kind`: an
    index into KINDS, -1 none)."""

    last: FloatArray  # (2, features): the record before, the last one
    run: npt.NDArray[np.int64]
    ring: npt.NDArray[np.int8]  # (window, 2, features)
    counts: npt.NDArray[np.int64]  # (2, features)
    latched: BoolArray  # (2, features): stuck, noisy
    kind: npt.NDArray[np.int64]
    slot: int = 0

    @classmethod
    def start(cls, profile: SensorProfile) -> InstrumentState:
        n = len(profile.features)
        return cls(
            last=np.full((2, n), np.nan), run=np.zeros(n, dtype=np.int64),
            ring=np.zeros((profile.rules.window, 2, n), dtype=np.int8),
            counts=np.zeros((2, n), dtype=np.int64), latched=np.zeros((2, n), dtype=bool),
            kind=np.full(n, -1, dtype=np.int64),
        )  # fmt: skip


def step(state: InstrumentState, profile: SensorProfile, values: FloatArray) -> list[Change]:
    """One record of the asset (`values`, one per feature): the faults that opened or ended."""
    limits, values = profile.limits, np.array(values, dtype=np.float64)
    before, last = state.last
    ran = state.run
    state.run = np.where(np.abs(values - last) <= limits.tolerance, ran + 1, 1)
    rough = np.abs(values - 2 * last + before)
    state.last = np.stack([last, values])
    flags = np.stack([rough > limits.loud, rough > limits.calm]).astype(np.int8)
    state.counts += flags - state.ring[state.slot]
    state.ring[state.slot] = flags
    state.slot = (state.slot + 1) % len(state.ring)
    loud, calm = state.counts > len(state.ring) // 2
    start = np.stack([state.run >= limits.stuck_after, loud & (calm.sum() - calm == 0)])
    end = np.stack([(state.run == 1) & (ran < limits.stuck_after), ~calm])
    state.latched = start | (state.latched & ~end)
    held = np.stack([(values < limits.floor) | (values > limits.ceiling), *state.latched])
    kind = np.where(held.any(axis=0), held.argmax(axis=0), -1)
    was = state.kind
    out = [
        Change(int(f), KINDS[max(kind[f], was[f])], bool(kind[f] >= 0))
        for f in np.flatnonzero((kind >= 0) != (was >= 0))
    ]
    state.kind = np.where(kind < 0, -1, np.where(was >= 0, was, kind))
    return out


def faulted(state: InstrumentState) -> BoolArray:
    """Per feature: whether its sensor is inside a fault now (its share of the score and its
    values are not to be trusted)."""
    return np.asarray(state.kind >= 0)


def sensor_faults(profile: SensorProfile, rows: FloatArray) -> BoolArray:
    """Per record and feature of one asset's consecutive rows (n, F): inside a sensor fault,
    as `step` decides from a fresh state record by record."""
    limits, window = profile.limits, profile.rules.window
    rows = np.asarray(rows, dtype=np.float64)
    run = _runs(_changes(rows, 1), limits.tolerance)
    ran = np.concatenate([np.zeros_like(run[:1]), run[:-1]])
    rough = _changes(rows, 2)
    loud, calm = (_rolling(rough > x, window) > window // 2 for x in (limits.loud, limits.calm))
    stuck = _latch(run >= limits.stuck_after, (run == 1) & (ran < limits.stuck_after))
    noisy = _latch(loud & (calm.sum(axis=1, keepdims=True) - calm == 0), ~calm)
    return np.asarray((rows < limits.floor) | (rows > limits.ceiling) | stuck | noisy)


def untrusted(profile: SensorProfile, rows: FloatArray) -> BoolArray:
    """Per record and feature of one asset's consecutive rows: a reading the worker does not
    count towards the process score, as it decides from a fresh state (anomaly/
    instrument_table.py): inside a sensor fault, or a moving sensor held far longer than
    training held it (`held_after`)."""
    rows = np.asarray(rows, dtype=np.float64)
    held = _runs(_changes(rows, 1), profile.limits.tolerance) >= profile.limits.held_after
    return np.asarray(sensor_faults(profile, rows) | held)


def _latch(start: BoolArray, end: BoolArray) -> BoolArray:
    """Per record: set at a `start`, until the next `end` (never both at one record)."""
    index = np.broadcast_to(np.arange(len(start))[:, None], start.shape)
    latest = [np.maximum.accumulate(np.where(at, index, -1), axis=0) for at in (start, end)]
    return np.asarray(latest[0] > latest[1])


def _changes(rows: FloatArray, order: int) -> FloatArray:
    """|first or second difference| per record and feature; NaN where none (the first)."""
    return np.abs(np.diff(rows, n=order, axis=0, prepend=np.full((order, rows.shape[1]), np.nan)))


def _runs(change: FloatArray, tolerance: FloatArray) -> npt.NDArray[np.int64]:
    """Per record: how many records in a row, itself included, held one value."""
    index = np.arange(len(change))[:, None]
    return np.asarray(
        index - np.maximum.accumulate(np.where(change <= tolerance, 0, index), axis=0) + 1
    )


def _rolling(flags: BoolArray, window: int) -> npt.NDArray[np.int64]:
    """Per record: how many of the last `window` flags (its own included) are set."""
    total = np.cumsum(flags, axis=0, dtype=np.int64)
    total[window:] -= total[:-window].copy()
    return total


def _median(rough: FloatArray, window: int) -> FloatArray:
    """The largest median (the lower one for an even count) of `window` consecutive values (of
    all of them when fewer); 0 with none."""
    if len(rough) < window:
        ordered = np.sort(rough, axis=0)
        return ordered[(len(rough) - 1) // 2] if len(rough) else np.zeros(rough.shape[1])
    kth, best = window - 1 - window // 2, np.zeros(rough.shape[1])
    view = np.lib.stride_tricks.sliding_window_view(rough, window, axis=0)
    for start in range(0, len(view), _CHUNK):
        part = np.partition(view[start : start + _CHUNK], kth, axis=-1)[..., kth]
        best = np.maximum(best, part.max(axis=0))
    return best


def _floats(values: FloatArray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)
