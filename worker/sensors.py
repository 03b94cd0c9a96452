"""Sensors that drop out: what a worker does with a record that lacks some of its model's
features (absent, or `null`: anomaly.records, `partial`).

- Each missing value is taken from the asset's last value of that feature, if that value is
  no older than `stale_after_s` (record time): the record is scored, and an alert event
  whose window holds such a value names the features that were filled (`filled`).
- Older than that, or never reported, the record is **incomplete**: valid data, counted and
  not scored (it is not a dead letter, and its asset's window does not move). The asset's
  next scored record starts its window afresh (warming up again): a window never spans such
  a hole, whose two sides the model would take for a jump.
- A feature absent for longer than `stale_after_s` (since its last report, or since the
  asset's first record if it never reported) is **silent**: a `sensor_silent` event opens for
  the asset and the feature, and a `sensor_resolve` event ends it when the feature reports
  again.

Time is the records' own (`ts`), so a replay decides as the live stream did. The state lives
in `Sensors`, created for an asset at its first record that lacks a feature: an asset whose
records are complete costs one float (`AssetState.full_at`). Like the window, this state is
not saved with the offsets: after a restart or a partition move, a gap is filled only from
values seen since, and a feature still silent opens its event again once the bound has
passed on the new owner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# A `filled_at` for a feature never filled: far before any window.
_NEVER = -(2**62)


@dataclass(slots=True)
class Sensors:
    """One asset's sensors once a record of it lacked a feature.

    `reported`: per feature, the time of its last report in a record that lacked others (the
    asset's `full_at` covers the complete records); `latest`: values reported in records not
    yet in the window (incomplete ones; NaN: none), or None; `filled_at`: per feature, the
    asset's record count when its value was last filled; `silent`: the features with an open
    `sensor_silent` event, with the time they last reported (None: never); `first`: the
    asset's first record time as far as this worker knows."""

    reported: FloatArray
    filled_at: npt.NDArray[np.int64]
    first: float
    latest: FloatArray | None = None
    silent: dict[int, float | None] = field(default_factory=dict)
    hole: bool = False  # incomplete records since the last row in the window

    @classmethod
    def start(cls, n_features: int, full_at: float, first: float) -> Sensors:
        return cls(
            reported=np.full(n_features, full_at),
            filled_at=np.full(n_features, _NEVER, dtype=np.int64),
            first=first,
        )

    def forget_fills(self) -> None:
        """The window restarted: none of its values were filled."""
        self.filled_at[:] = _NEVER

    def filled_within(self, count: int, window: int) -> list[int]:
        """The features with a filled value among the last `window` of `count` records."""
        return [int(f) for f in np.flatnonzero(self.filled_at > count - window)]


@dataclass(frozen=True)
class Filled:
    """What a record lacking features comes to: its values with the gaps filled (None: the
    record is incomplete), the features filled, those that went silent at it and those that
    reported again after a silence (each with when it last reported before: None, never)."""

    values: FloatArray | None
    filled: tuple[int, ...]
    silenced: tuple[tuple[int, float | None], ...]
    back: tuple[tuple[int, float | None], ...]


def reported_all(sensors: Sensors) -> tuple[tuple[int, float | None], ...]:
    """A record carried every feature: the values waiting outside the window are superseded,
    and every silent feature is back. Returns those, with when they last reported before."""
    sensors.latest = None
    back = tuple(sorted(sensors.silent.items()))
    sensors.silent.clear()
    return back


class Before(NamedTuple):
    """What an asset had before a record: when it last sent a complete record (-inf: never),
    and its last row in its window (None: none yet)."""

    full_at: float
    last_row: npt.NDArray[np.float32] | None


def fill(
    sensors: Sensors,
    values: tuple[float, ...],
    missing: tuple[int, ...],
    ts: float,
    before: Before,
    stale_after_s: float,
) -> Filled:
    """Decide one record that lacks the features `missing` (NaN in `values`), at time `ts`."""
    full_at, last_row = before
    row = np.array(values, dtype=np.float64)
    present = np.ones(len(row), dtype=bool)
    present[list(missing)] = False
    sensors.reported[present] = ts
    if sensors.latest is None:
        sensors.latest = np.full(len(row), math.nan)
    sensors.latest[present] = row[present]
    back = tuple((f, last) for f, last in sorted(sensors.silent.items()) if present[f])
    for feature, _ in back:
        del sensors.silent[feature]
    stale: list[int] = []
    for feature in missing:
        last = max(full_at, float(sensors.reported[feature]))
        value = float(sensors.latest[feature])
        if math.isnan(value) and last_row is not None and last > -math.inf:
            value = float(last_row[feature])
        if math.isnan(value) or ts - last > stale_after_s:
            stale.append(feature)
        else:
            row[feature] = value
    silenced = []
    for feature in stale:
        last = max(full_at, float(sensors.reported[feature]))
        since = last if last > -math.inf else sensors.first
        if feature not in sensors.silent and ts - since > stale_after_s:
            sensors.silent[feature] = last if last > -math.inf else None
            silenced.append((feature, sensors.silent[feature]))
    if stale:
        return Filled(None, (), tuple(silenced), back)
    sensors.latest = None  # every latest value goes into the window with this row
    return Filled(row, tuple(missing), tuple(silenced), back)
