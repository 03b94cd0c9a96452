"""The score stage: one model's windows of a batch scored in one forward pass.

Each record's score is judged (its asset's average, anomaly/rules.py: advanced in order, so
an asset's records of a batch each count), compared with its asset's threshold, and read by
the onset rule (anomaly/onset.py). The reconstruction of every window is kept: the events and
the board's alarm rows show it, without a second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anomaly.model import Scores
from anomaly.model.calibration import exceed
from anomaly.onset import Histories, onsets
from worker.windows import ModelWindows


@dataclass(frozen=True)
class Scored:
    """One model's records of a batch, decided: the network's scores (with each window's
    reconstruction), the judged scores, which are above their asset's threshold (`limits`),
    and which the onset rule lets open a run."""

    windows: ModelWindows
    scores: Scores
    judged: npt.NDArray[np.float64]
    above: npt.NDArray[np.bool_]
    onset: npt.NDArray[np.bool_]

    @property
    def limits(self) -> npt.NDArray[np.float64]:
        return self.windows.limits[: len(self.windows.pending)]


def score(windows: ModelWindows) -> Scored:
    """Score the records taken in for one model (at least one)."""
    artifact, rules = windows.served.artifact, windows.served.rules
    n = len(windows.pending)
    history = windows.history[:n]
    scores = artifact.detector.score(windows.windows(), reconstruct=True)
    judged = np.array([
        pending.state.rules.judge(value, rules)
        for pending, value in zip(windows.pending, scores.score.tolist(), strict=True)
    ])  # fmt: skip
    limits = windows.limits[:n]
    above = exceed(judged, limits)
    # the onset rule reads its span (the ring holds the window when that is longer)
    span = history[:, history.shape[1] - max(rules.history, 1) :]
    unit = artifact.detector.scaler.step_unit
    onset = onsets(Histories(span, windows.seen[:n]), judged, above, limits, unit, rules)
    return Scored(windows, scores, judged, above, onset)
