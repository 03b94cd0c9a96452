"""The onset rule's evidence, per scored record: did some sensor just step?

From the last `span` records of the record's asset (the record included): each feature's mean
over `mean` consecutive records, at every position in that history; the largest minus the
smallest of those means, in the feature's noise units (`RobustScaler.step_unit`: its
record-to-record noise in training); the largest over the features. That is the record's
step. A record is an onset when its step exceeds `Rules.onset_step`, or when its score exceeds
`Rules.onset_bypass` times the threshold (a fault the model sees as far out needs no step).

Why it holds on rigs it has not seen: a model fitted on a few hours drifts out of its
training state slowly (thermal channels, wear), and its scores creep over the threshold for
hours; a fault moves a sensor within seconds to minutes. The step is measured against each
sensor's own noise, so it needs no unit and no range of the sensor.

Confirmation delay: a step shows once the short mean has moved, about `mean` records after a
jump (5 by default); the run still needs `open_after` records above the threshold, so an
episode opens at most max(open_after, mean) records after a jump, and a ramp opens once it
has risen by `onset_step` noise units within `span` records.

The worker and the offline replay call `steps` on the same history windows: the worker reads
each asset's last `span` records from its buffer, repeating the oldest while it has fewer
(worker/assets.py); `history_windows` builds them so from a series.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from anomaly.model.features import FloatArray, sliding_windows
from anomaly.rules import Rules


def steps(history: FloatArray, unit: FloatArray, mean: int) -> FloatArray:
    """Per history window (batch, span, features): the largest move of any feature's
    `mean`-record mean within the window, in units of `unit` (one per feature)."""
    totals = np.cumsum(history, axis=1)
    sums = totals[:, mean - 1 :].copy()
    sums[:, 1:] -= totals[:, :-mean]
    means = sums / mean
    moved = (means.max(axis=1) - means.min(axis=1)) / unit
    return np.asarray(moved.max(axis=1), dtype=np.float64)


def history_windows(values: FloatArray, span: int) -> FloatArray:
    """For each row of one asset's consecutive rows, the `span` rows up to it, the first row
    repeated before the series starts (as the worker pads an asset it has just met)."""
    padded = np.concatenate([np.repeat(values[:1], span - 1, axis=0), values])
    return sliding_windows(padded, span)


def onsets(
    step: FloatArray, score: FloatArray, threshold: float, rules: Rules
) -> npt.NDArray[np.bool_]:
    """Per record: the onset rule's evidence (all True when the rule is off)."""
    if rules.onset_step <= 0:
        return np.ones(len(score), dtype=bool)
    out = step > rules.onset_step
    if rules.onset_bypass > 0:
        out |= score > rules.onset_bypass * threshold
    return np.asarray(out, dtype=bool)
