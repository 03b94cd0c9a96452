"""From raw sensor values to model inputs: a robust scaler and sliding windows.

The scaler is fitted on training rows and stored in the artifact, so training and scoring
transform values with the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# A standard normal's interquartile range; dividing by it makes the IQR comparable to a
# standard deviation on Gaussian data.
_IQR_TO_STD = 1.3489795
# Scaled values are clipped here so that an absurd reading (1e300 is finite) still yields a
# finite float32 error instead of inf.
CLIP = 1e6


@dataclass(frozen=True)
class RobustScaler:
    """Per-feature centre (median) and scale (IQR / 1.349), insensitive to training outliers.

    A feature whose IQR is zero (quantised or nearly constant in training) falls back to its
    standard deviation, and a truly constant one to 1.0, so every scale is positive and finite.
    """

    center: FloatArray
    scale: FloatArray

    def __post_init__(self) -> None:
        if self.center.shape != self.scale.shape or self.center.ndim != 1:
            raise ValueError("center and scale must be 1-D arrays of the same length")
        if not (np.all(np.isfinite(self.center)) and np.all(np.isfinite(self.scale))):
            raise ValueError("scaler parameters must be finite")
        if np.any(self.scale <= 0):
            raise ValueError("scaler scales must be positive")

    @classmethod
    def fit(cls, rows: FloatArray) -> RobustScaler:
        """Fit on rows of shape (n, n_features); n must be at least 1."""
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise ValueError("fit needs a non-empty 2-D array of rows")
        center = np.median(rows, axis=0)
        q75, q25 = np.percentile(rows, [75, 25], axis=0)
        scale = (q75 - q25) / _IQR_TO_STD
        std = rows.std(axis=0)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(center)), scale, std)
        scale = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(center)), scale, 1.0)
        return cls(center=center.astype(np.float64), scale=scale.astype(np.float64))

    @property
    def n_features(self) -> int:
        return int(self.center.shape[0])

    def transform(self, values: FloatArray) -> npt.NDArray[np.float32]:
        """Scale values whose last axis is the features; returns float32, clipped to +-CLIP."""
        scaled = (np.asarray(values, dtype=np.float64) - self.center) / self.scale
        return np.clip(scaled, -CLIP, CLIP).astype(np.float32)


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
