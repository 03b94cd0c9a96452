"""The scoring step, offline: one asset's series through sliding windows, the judged score
(an average of its log scores) and its residuals' drift, then the threshold and the onset
rule's evidence, then the alert rules. The worker does the same record by
record (worker/pipeline.py); the training job's cleaning and gate, and the benchmarks'
replay, call this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anomaly.instruments import SensorProfile, untrusted
from anomaly.model.calibration import Threshold
from anomaly.model.detector import Detector, Scores
from anomaly.model.drift import Drift
from anomaly.model.features import FloatArray, sliding_windows
from anomaly.onset import Histories, history_windows, onsets
from anomaly.replay import flags, judged_scores
from anomaly.rules import Rules


@dataclass(frozen=True)
class SeriesScores:
    """The scores of a series' full windows: entry j belongs to row `window - 1 + j` (the
    first window - 1 rows have no full window and are not scored)."""

    window: int
    score: npt.NDArray[np.float64]  # the judged score (anomaly.rules.judged_scores)
    shares: npt.NDArray[np.float64]
    above: npt.NDArray[np.bool_]
    onset: npt.NDArray[np.bool_]  # the onset rule's evidence (all True when it is off)
    residual: npt.NDArray[np.float64]  # each record's signed residual (the drift's input)
    drift: Drift | None  # the model's residual drift (None: none)

    def flags(self, rules: Rules, rows: int) -> npt.NDArray[np.bool_]:
        """Per row of the series: inside an episode by `rules` (unscored rows never are)."""
        out = np.zeros(rows, dtype=bool)
        if len(self.score):
            out[self.window - 1 :] = flags(
                self.score, self.above, rules, self.onset, self.residual, self.drift
            )
        return out


def score_series(
    detector: Detector,
    threshold: Threshold,
    values: FloatArray,
    window: int,
    rules: Rules,
    instruments: SensorProfile | None = None,
) -> SeriesScores:
    """Every full window of one asset's consecutive rows, scored and compared, with the onset
    rule's evidence of `rules`; with the model's sensor profile, a record with a sensor out
    of order scored without it, as the worker does (anomaly/instruments.py)."""
    if len(values) < window:
        empty, none, rows = np.empty(0), np.zeros(0, bool), np.empty((0, values.shape[1]))
        return SeriesScores(window, empty, rows, none, none, rows, detector.drift)
    windows = sliding_windows(values, window)
    missing = None if instruments is None else untrusted(instruments, values[window - 1 :])
    scores = detector.score(windows, reconstruct=missing is not None and bool(missing.any()))
    raw = scores.score
    if missing is not None:  # as the worker: above the threshold with it, judged without it
        some = np.flatnonzero(missing.any(axis=1) & threshold.exceeds(raw))
        if len(some):
            assert scores.rebuilt is not None
            raw = raw.copy()
            raw[some] = detector.without(windows[some], missing[some], scores.rebuilt[some])
    judged = judged_scores(raw, rules)
    history = history_windows(values, max(rules.history, 1))[window - 1 :]
    seen = np.arange(window, len(values) + 1)  # the records of the series up to each one
    unit = detector.scaler.step_unit
    above = threshold.exceeds(judged)
    onset = onsets(Histories(history, seen), judged, above, threshold.value, unit, rules)
    return SeriesScores(
        window, judged, scores.shares, above, onset, scores.residual, detector.drift
    )


def series_errors(detector: Detector, values: FloatArray, window: int) -> Scores:
    """The scores (and residuals) of every full window of one asset's consecutive rows,
    before any threshold: what calibration reads (none when shorter than a window)."""
    if len(values) < window:
        n = values.shape[1]
        return Scores(score=np.empty(0), shares=np.empty((0, n)), residual=np.empty((0, n)))
    return detector.score(sliding_windows(values, window))


def series_scores(detector: Detector, values: FloatArray, window: int) -> npt.NDArray[np.float64]:
    """The score of every full window of one asset's consecutive rows (before any threshold:
    what calibration and the gate's rate check read)."""
    return series_errors(detector, values, window).score


def series_flags(
    detector: Detector,
    threshold: Threshold,
    values: FloatArray,
    window: int,
    rules: Rules,
    instruments: SensorProfile | None = None,
) -> npt.NDArray[np.bool_]:
    """Per row of one asset's series: inside an alert episode, as the worker decides it."""
    scored = score_series(detector, threshold, values, window, rules, instruments)
    return scored.flags(rules, len(values))
