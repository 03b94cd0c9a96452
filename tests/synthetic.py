"""A synthetic plant for tests: correlated sensors driven by two hidden factors, and faults.

Sensor values are a fixed linear mix of a slow oscillation and a stationary AR(1) process,
plus independent noise, each in its own units. Sensors 0 and 1 follow the same factor closely,
so breaking their correlation is a fault that no single sensor's range reveals.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from worker.model.features import FloatArray

N_FEATURES = 6
FEATURES = tuple(f"sensor_{i}" for i in range(N_FEATURES))
_MIX = np.array([[1.0, 0.2], [0.95, 0.25], [0.3, 1.0], [-0.6, 0.5], [0.1, -0.9], [0.7, 0.7]])
_OFFSET = np.array([5.0, 20.0, -3.0, 100.0, 0.0, 50.0])
_UNIT = np.array([1.0, 4.0, 0.5, 10.0, 2.0, 30.0])
NOISE = 0.1


def clean_rows(n: int, seed: int) -> FloatArray:
    """n consecutive clean records (n, N_FEATURES) from the same stationary process."""
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
    standard = latent @ _MIX.T + rng.normal(scale=NOISE, size=(n, N_FEATURES))
    return np.asarray(standard * _UNIT + _OFFSET, dtype=np.float64)


def sensor_std(rows: FloatArray) -> FloatArray:
    return np.asarray(rows.std(axis=0), dtype=np.float64)


def spike(rows: FloatArray, sensor: int, at: np.ndarray, size: float = 8.0) -> FloatArray:
    """Single-record spikes of `size` standard deviations on one sensor."""
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


def broken_correlation(rows: FloatArray, seed: int) -> FloatArray:
    """Sensor 1 decouples from sensor 0: same range, values from elsewhere in time."""
    out = rows.copy()
    out[:, 1] = np.random.default_rng(seed).permutation(rows[:, 1])
    return out


def write_csv(path: Path, rows: FloatArray, delimiter: str = ",") -> None:
    """Rows as CSV with an ISO timestamp column (one per second) and FEATURES columns."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    lines = [delimiter.join(["timestamp", *FEATURES])]
    for i, row in enumerate(rows):
        ts = (start + dt.timedelta(seconds=i)).isoformat()
        lines.append(delimiter.join([ts, *(repr(float(v)) for v in row)]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
