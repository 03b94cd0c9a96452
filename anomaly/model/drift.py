"""The residual drift: evidence that a fault is still present after its score has come back.

A control loop compensates many faults: the process returns close to its set points and the
reconstruction error falls back near its normal level, but some sensor stays a little off what
the model expects, record after record (in the Tennessee Eastman process, a step in the
condenser's cooling water: the loops bring the error back under the threshold within hours,
the fault runs on for days). One record's error says little; its sign, held for tens of
records, says much. So, per sensor, an exponentially weighted moving average of the signed
residual of each record (the reconstruction minus the reading, in scaled units, less its mean
on the fit part), the classic EWMA chart on residuals:

    z_f <- z_f + rate * (residual_f - center_f - z_f),    drift = max_f |z_f| / spread_f

`spread_f` is z_f's standard deviation over the fit part (after its start-up), and the drift's
threshold is calibrated on the held-out part to the threshold's target false-positive rate,
by the same method. `Drift.advance` reports the drift in units of that threshold (above 1:
drifting).

What it may do is narrow (anomaly/rules.py): drift keeps an *active* episode going; it never
opens, resumes or prolongs a quiet one. A normal day therefore pages exactly as without it,
and a fault whose score wanes while its sensors stay displaced stays one episode, flagged.
An asset's average runs only while the rules follow it (`RuleState.step`: from a record above
the threshold until the asset is idle again); the spread above is that of an average long
started, so one just started is, if anything, below it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from anomaly.model.calibration import MethodChoice, Threshold, calibrate
from anomaly.model.errors import CalibrationError

FloatArray = npt.NDArray[np.float64]

# How fast the average follows the residuals: about the last 20 records (rate 0.05).
DRIFT_RATE = 0.05
# The spread is measured after the average has forgotten its start at zero: 3 / rate records
# (95% of its weight on the series), or half a short series.
_START_MEMORY = 3.0
_TINY = 1e-9  # a feature whose residual never moves on the fit part


class Drift(BaseModel):
    """A model's residual drift calibration (the manifest's `drift`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(gt=0.0, le=1.0, description="the average's weight on each record")
    center: tuple[float, ...] = Field(min_length=1, description="each residual's mean (fit)")
    spread: tuple[float, ...] = Field(min_length=1, description="each average's spread (fit)")
    threshold: Threshold  # of max_f |z_f| / spread_f, on the held-out part

    @model_validator(mode="after")
    def _consistent(self) -> Drift:
        if len(self.center) != len(self.spread):
            raise ValueError(f"{len(self.center)} centre and {len(self.spread)} spread values")
        if not all(s > 0 and math.isfinite(s) for s in self.spread):
            raise ValueError("spread values must be finite and above 0")
        if not self.threshold.value > 0:
            raise ValueError("the drift threshold must be above 0")
        return self

    @cached_property
    def _arrays(self) -> tuple[FloatArray, FloatArray]:
        """The centre and 1 / (spread * threshold), as arrays: `advance` runs for every
        record an episode follows (a plain attribute: a pydantic private one costs more than
        the arithmetic)."""
        return np.array(self.center), 1.0 / (np.array(self.spread) * self.threshold.value)

    @property
    def n_features(self) -> int:
        return len(self.center)

    def advance(self, z: FloatArray | None, residual: FloatArray) -> tuple[FloatArray, float]:
        """One record more of one asset: its average (`z` None: its first record; updated in
        place otherwise) and its drift in units of the threshold."""
        center, inverse = self._arrays
        if z is None or z.shape != center.shape:
            z = np.zeros(center.shape)
        z += self.rate * (residual - center - z)
        return z, float((np.abs(z) * inverse).max())

    @classmethod
    def fit(
        cls,
        fit: Sequence[FloatArray],
        held: Sequence[FloatArray],
        rate: float,
        target_fpr: float,
        method: MethodChoice = "auto",
    ) -> Drift:
        """Calibrated on the residuals of each series of the fit part (centre, spread) and of
        the held-out part (threshold), each (records, F). Raises CalibrationError when the
        held-out part cannot support the rate."""
        center = np.concatenate(fit).mean(axis=0)
        started = []
        for part in fit:
            averages = _averages(part, center, rate)
            skip = min(len(part) // 2, math.ceil(_START_MEMORY / rate))
            started.append(averages[skip:])
        spread = np.maximum(np.concatenate(started).std(axis=0), _TINY)
        held_drift = np.concatenate(
            [np.abs(_averages(part, center, rate) / spread).max(axis=1) for part in held]
        )
        threshold = calibrate(held_drift, target_fpr, method)
        if not threshold.value > 0:
            raise CalibrationError(
                "the held-out part's residuals never drift (every average is 0): no drift "
                "threshold (set TRAINING_CALIBRATION__DRIFT_RATE=0 to go without it)"
            )
        return cls(
            rate=rate,
            center=tuple(center.tolist()),
            spread=tuple(spread.tolist()),
            threshold=threshold,
        )


def _averages(residuals: FloatArray, center: FloatArray, rate: float) -> FloatArray:
    """The running average z of (residual - center) after each record, from z = 0."""
    out = np.empty(residuals.shape)
    z = np.zeros(residuals.shape[1])
    for i, row in enumerate(residuals - center):
        z += rate * (row - z)
        out[i] = z
    return out
