"""One value per message (OPC UA and MQTT bridges, report by exception): each asset's
readings assembled into its model's records.

Per asset, each sensor's last value and when it came. A record every `cadence` seconds of the
messages' own time, on a grid that starts at the asset's first message: the record at tick T
holds each sensor's last value reported at or before T if it is no older than the staleness
bound (`WORKER_SENSORS__STALE_AFTER_S`), else the sensor is missing there (worker/sensors.py
then makes the record incomplete and says the sensor is silent). A sensor that reports only
when its value changes is thus carried forward for as long as the bound allows: set the
bound above the longest a bridge stays quiet (its keep-alive). The record at T goes out when
the asset's first message after T arrives (one asset's messages come in time order, from one
partition), so a reading waits for the next message at most. Over a gap, ticks go out until
every sensor is older than the bound (the silences need one), then the grid jumps to the new
message. Like a window, this state is not saved with the offsets: after a restart or a
partition move, an asset's sensors are missing until they report again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_EPSILON = 1e-9  # seconds: times on the grid compare equal within this


@dataclass(slots=True)
class Assembly:
    """One asset's sensors as last reported (`values`, `times`: NaN and -inf for none), and
    its grid: the next record is at `start + ticks * cadence`."""

    values: FloatArray
    times: FloatArray
    start: float
    ticks: int = 0

    @classmethod
    def begin(cls, n_features: int, start: float) -> Assembly:
        return cls(np.full(n_features, math.nan), np.full(n_features, -math.inf), start)


# An assembled record: its time (epoch seconds), the values (NaN where missing) and the
# indexes of the missing features.
Assembled = tuple[float, tuple[float, ...], tuple[int, ...]]


def assemble(
    assembly: Assembly,
    t: float,
    feature: int,
    value: float | None,
    cadence: float,
    stale_after_s: float,
) -> list[Assembled]:
    """Take in one reading (`value` None: the sensor reported no value) at time `t`; return
    the records of the ticks it closes, oldest first."""
    out: list[Assembled] = []
    horizon = assembly.times.max() + stale_after_s + cadence  # then every sensor is stale
    while (tick := assembly.start + assembly.ticks * cadence) < t - _EPSILON:
        if tick > horizon:  # nothing more to say until this reading: jump to it
            assembly.ticks = math.ceil((t - assembly.start) / cadence - _EPSILON)
            break
        out.append(_record_at(assembly, tick, stale_after_s))
        assembly.ticks += 1
    if value is not None:
        assembly.values[feature] = value
        assembly.times[feature] = t
    return out


def _record_at(assembly: Assembly, tick: float, stale_after_s: float) -> Assembled:
    fresh = tick - assembly.times <= stale_after_s + _EPSILON
    values = np.where(fresh, assembly.values, math.nan)
    missing = tuple(int(i) for i in np.flatnonzero(~fresh))
    return tick, tuple(values.tolist()), missing
