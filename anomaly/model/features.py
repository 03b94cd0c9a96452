"""From raw sensor values to model inputs: a robust scaler and sliding windows.

The scaler is fitted on training rows and stored in the artifact, so training and scoring
transform values with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# A standard normal's interquartile range; dividing by it makes the IQR comparable to a
# standard deviation on Gaussian data.
_IQR_TO_STD = 1.3489795
# Scaled values are clipped here so that an absurd reading (1e300 is finite) still yields a
# finite float32 error instead of inf.
CLIP = 1e6
# Floors under each feature's scale, so that a sensor quiet in training (flat, quantised, or
# wandering far less than it will) cannot turn a normal later move into a score of thousands,
# which would raise the calibrated threshold with it and blind the model:
# - its resolution: the smallest step between two values it took in training;
# - LEVEL_SHARE of its level: no industrial sensor resolves better than 0.1% of its reading;
# - SPAN_SHARE of the span of its central 80% (10th to 90th percentile): a sensor that stepped
#   once in training moves by that much in normal operation (on Gaussian data this floor is a
#   quarter of the robust scale, so it changes nothing there; up to 10% of wild readings in
#   training do not widen it).
LEVEL_SHARE = 1e-3
SPAN_SHARE = 0.1
# A feature flat in training (its 10th and 90th percentiles equal) has no spread to learn: its
# scaled value saturates at +-FLAT_LIMIT, so leaving its constant is an event of its own (the
# feature tops the alert) with a bounded weight in the score instead of an unbounded one.
FLAT_LIMIT = 10.0
# A median absolute deviation over this is a standard deviation on Gaussian data.
_MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class RobustScaler:
    """Per-feature centre (median) and scale (IQR / 1.349), insensitive to training outliers,
    with floors under the scale (resolution, level, span: see above) and a bounded range for
    the features that were flat in training (`flat`).

    A feature whose IQR is zero falls back to its standard deviation (before the floors), and
    a constant one at zero to 1.0, so every scale is positive and finite.

    `noise` is each feature's record-to-record noise (the robust standard deviation of its
    first differences over sqrt 2, with the resolution and level floors): the unit in which
    the onset rule measures a step (anomaly/onset.py). A slow sensor wanders over many noise
    units in normal operation, a step moves it by many at once. None: the scale.
    """

    center: FloatArray
    scale: FloatArray
    flat: npt.NDArray[np.bool_] | None = None  # None: no feature is flat
    noise: FloatArray | None = None
    limit: FloatArray = field(init=False, repr=False, compare=False)  # +- bound per feature

    def __post_init__(self) -> None:
        if self.center.shape != self.scale.shape or self.center.ndim != 1:
            raise ValueError("center and scale must be 1-D arrays of the same length")
        if not (np.all(np.isfinite(self.center)) and np.all(np.isfinite(self.scale))):
            raise ValueError("scaler parameters must be finite")
        if np.any(self.scale <= 0):
            raise ValueError("scaler scales must be positive")
        if self.flat is not None and self.flat.shape != self.center.shape:
            raise ValueError("flat must have one entry per feature")
        if self.noise is not None and (
            self.noise.shape != self.center.shape
            or not np.all(np.isfinite(self.noise))
            or np.any(self.noise <= 0)
        ):
            raise ValueError("noise must have one positive, finite entry per feature")
        limit = np.full(self.center.shape, CLIP)
        if self.flat is not None:
            limit[self.flat] = FLAT_LIMIT
        object.__setattr__(self, "limit", limit)

    @classmethod
    def fit(cls, rows: FloatArray) -> RobustScaler:
        """Fit on rows of shape (n, n_features); n must be at least 1."""
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise ValueError("fit needs a non-empty 2-D array of rows")
        center = np.median(rows, axis=0)
        q90, q75, q25, q10 = np.percentile(rows, [90, 75, 25, 10], axis=0)
        tiny = 1e-12 * np.maximum(1.0, np.abs(center))
        scale = (q75 - q25) / _IQR_TO_STD
        scale = np.where(scale > tiny, scale, rows.std(axis=0))
        quantum, level = resolution(rows), LEVEL_SHARE * np.abs(center)
        scale = np.maximum.reduce([scale, quantum, level, SPAN_SHARE * (q90 - q10)])
        scale = np.where(scale > tiny, scale, 1.0)
        flat = q90 - q10 <= tiny
        steps = np.diff(rows, axis=0)
        noise = np.zeros_like(scale)
        if len(steps):
            deviation = np.abs(steps - np.median(steps, axis=0))
            noise = _MAD_TO_STD * np.median(deviation, axis=0) / np.sqrt(2.0)
        noise = np.maximum.reduce([noise, quantum, level])
        noise = np.where(noise > tiny, noise, scale)
        return cls(
            center=center.astype(np.float64),
            scale=scale.astype(np.float64),
            flat=flat if flat.any() else None,
            noise=noise.astype(np.float64),
        )

    @property
    def n_features(self) -> int:
        return int(self.center.shape[0])

    @property
    def step_unit(self) -> FloatArray:
        """What a step is measured in, per feature: the noise, else the scale."""
        return self.scale if self.noise is None else self.noise

    def transform(self, values: FloatArray) -> npt.NDArray[np.float32]:
        """Scale values whose last axis is the features; returns float32, clipped to +-CLIP."""
        scaled = (np.asarray(values, dtype=np.float64) - self.center) / self.scale
        return np.clip(scaled, -self.limit, self.limit).astype(np.float32)

    def flat_features(self) -> tuple[int, ...]:
        """Indices of the features that were flat in training."""
        return () if self.flat is None else tuple(np.flatnonzero(self.flat).tolist())


def resolution(rows: FloatArray) -> FloatArray:
    """Per feature: the smallest positive step between two distinct values in rows (0.0 for a
    feature with one value): a quantised sensor's quantum, about 0 for a continuous one."""
    out = np.zeros(rows.shape[1])
    for f in range(rows.shape[1]):
        steps = np.diff(np.unique(rows[:, f]))
        if len(steps):
            out[f] = steps.min()
    return out


def sliding_windows(rows: FloatArray, window: int) -> FloatArray:
    """Windows of `window` consecutive rows, one per row from the window-th on.

    rows has shape (n, n_features); the result has shape (n - window + 1, window, n_features)
    (empty when n < window) and is a read-only view, so no data is copied.
    """
    if window < 1:
        raise ValueError("window must be >= 1")
    if rows.shape[0] < window:
        return np.empty((0, window, rows.shape[1]), dtype=rows.dtype)
    view = np.lib.stride_tricks.sliding_window_view(rows, window, axis=0)
    # sliding_window_view puts the window axis last: (n - w + 1, n_features, w).
    return view.transpose(0, 2, 1)
