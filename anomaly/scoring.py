"""The scoring step, offline: one asset's series through sliding windows, then the threshold,
then the alert rules. The worker does the same record by record (worker/pipeline.py); the
training job's cleaning and gate, and the benchmarks' replay, call this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anomaly.model import Detector, Threshold, sliding_windows
from anomaly.model.features import FloatArray
from anomaly.rules import Rules, flags


@dataclass(frozen=True)
class SeriesScores:
    """The scores of a series' full windows: entry j belongs to row `window - 1 + j` (the
    first window - 1 rows have no full window and are not scored)."""

    window: int
    score: npt.NDArray[np.float64]
    shares: npt.NDArray[np.float64]
    above: npt.NDArray[np.bool_]

    def flags(self, rules: Rules, rows: int) -> npt.NDArray[np.bool_]:
        """Per row of the series: inside an episode by `rules` (unscored rows never are)."""
        out = np.zeros(rows, dtype=bool)
        if len(self.score):
            out[self.window - 1 :] = flags(self.score, self.above, rules)
        return out


def score_series(
    detector: Detector, threshold: Threshold, values: FloatArray, window: int
) -> SeriesScores:
    """Every full window of one asset's consecutive rows, scored and compared."""
    if len(values) < window:
        empty = np.empty(0)
        return SeriesScores(window, empty, np.empty((0, values.shape[1])), np.zeros(0, bool))
    scores = detector.score(sliding_windows(values, window))
    return SeriesScores(window, scores.score, scores.shares, threshold.exceeds(scores.score))


def series_scores(detector: Detector, values: FloatArray, window: int) -> npt.NDArray[np.float64]:
    """The score of every full window of one asset's consecutive rows (before any threshold:
    what calibration and the gate's rate check read)."""
    if len(values) < window:
        return np.empty(0)
    return detector.score(sliding_windows(values, window)).score


def series_flags(
    detector: Detector, threshold: Threshold, values: FloatArray, window: int, rules: Rules
) -> npt.NDArray[np.bool_]:
    """Per row of one asset's series: inside an alert episode, as the worker decides it."""
    return score_series(detector, threshold, values, window).flags(rules, len(values))
