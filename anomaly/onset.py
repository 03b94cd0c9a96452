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

The worker and the offline replay call `onsets` on the same history windows: the worker reads
each asset's last `span` records from its buffer, repeating the oldest while it has fewer
(worker/assets.py); `history_windows` builds them so from a series. Only the records above
the threshold are measured (a few per cent in a healthy fleet). While an asset's history is
not full (just met, or taken over after a restart: the history is not saved with the
offsets), its records count as onsets: no alert is lost to a step the worker did not see.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from anomaly.model.features import FloatArray, sliding_windows
from anomaly.rules import Rules

# History windows measured per call of `steps` (each call copies its windows once).
CHUNK = 4096


def steps(history: FloatArray, unit: FloatArray, mean: int) -> FloatArray:
    """Per history window (batch, span, features): the largest move of any feature's
    `mean`-record mean within the window, in units of `unit` (one per feature)."""
    positions = history.shape[1] - mean + 1
    sums = np.array(history[:, :positions], dtype=np.float64)
    for shift in range(1, mean):
        sums += history[:, shift : shift + positions]
    moved = (sums.max(axis=1) - sums.min(axis=1)) / (unit * mean)
    return np.asarray(moved.max(axis=1), dtype=np.float64)


def history_windows(values: FloatArray, span: int) -> FloatArray:
    """For each row of one asset's consecutive rows, the `span` rows up to it, the first row
    repeated before the series starts (as the worker pads an asset it has just met; the
    evidence of such a row does not depend on the padding: see `onsets`)."""
    padded = np.concatenate([np.repeat(values[:1], span - 1, axis=0), values])
    return sliding_windows(padded, span)


class Histories(NamedTuple):
    """The records' history windows (anything indexable by record: a view is not copied
    whole) and how many records of its asset each record's history holds, itself included
    (its history is full from `onset_span` on)."""

    windows: FloatArray
    seen: npt.NDArray[np.int64]


def onsets(
    histories: Histories,
    score: FloatArray,
    above: npt.NDArray[np.bool_],
    threshold: float | FloatArray,
    unit: FloatArray,
    rules: Rules,
) -> npt.NDArray[np.bool_]:
    """Per record: the onset rule's evidence (all True when the rule is off). `above` is the
    threshold's decision on each score (`Threshold.exceeds`), `threshold` its value (for the
    bypass; one per record where assets have thresholds of their own).

    A record whose history is not yet full (an asset just met, or just taken over after a
    restart or a rebalance: the history is not saved with the offsets) counts as an onset:
    a step may lie in the records before it, and a missed fault costs more than a false
    alarm. Only a record above the threshold can start a run, so only those are measured:
    the evidence of the others is never read (`RuleState.observe`), and most records of a
    healthy fleet are below the threshold."""
    if rules.onset_step <= 0:
        return np.ones(len(score), dtype=bool)
    history, seen = histories
    out = seen < rules.onset_span
    if rules.onset_bypass > 0:
        out |= score > rules.onset_bypass * threshold
    need = np.flatnonzero(above & ~out)
    for start in range(0, len(need), CHUNK):  # bounds the copies of the history windows
        chunk = need[start : start + CHUNK]
        out[chunk] = steps(history[chunk], unit, rules.onset_mean) > rules.onset_step
    return out
