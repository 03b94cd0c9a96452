"""The score stage: one model's windows of a batch scored in one forward pass.

The network scores every record, keeping each window's reconstruction (the events and the
board's alarm rows show it, without a second pass). Then each record's sensors are checked (a
model with a sensor profile: anomaly/instruments.py, all the batch's records at once): a
record above its threshold with a sensor out of order (stuck, out of range, noisy), or held
at one value far longer than training saw it held (a stuck sensor before its event), is
scored again without it (`Detector.without`: the sensor's values in the window replaced by
what the model expects of them given the others, the error of the others alone). So a broken
transmitter raises an instrumentation event and no process episode, while a process fault
still shows in the sensors that work. Each record's score is then judged (its asset's
average, anomaly/rules.py: advanced in order, so an asset's records of a batch each count),
compared with its asset's threshold, and read by the onset rule (anomaly/onset.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from anomaly.instrument_table import Stepped
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
    sensors: Stepped | None = None  # its records' sensors out of order (None: not checked)

    @property
    def limits(self) -> npt.NDArray[np.float64]:
        return self.windows.limits[: len(self.windows.pending)]


def _readings(windows: ModelWindows) -> npt.NDArray[np.float64]:
    """Each record's own row (its history's last), a value the worker filled in (a sensor that
    dropped out: worker/sensors.py) as missing: a carried value is no reading of the sensor."""
    n = len(windows.pending)
    rows = windows.history[:n, -1, :]
    filled = [(i, p.filled) for i, p in enumerate(windows.pending) if p.filled]
    if not filled:
        return rows
    rows, names = rows.copy(), windows.served.artifact.manifest.features
    for i, features in filled:
        rows[i, [names.index(f) for f in features]] = np.nan
    return rows


def score(windows: ModelWindows) -> Scored:
    """Score the records taken in for one model (at least one)."""
    artifact, rules = windows.served.artifact, windows.served.rules
    n = len(windows.pending)
    history = windows.history[:n]
    scores = artifact.detector.score(windows.windows(), reconstruct=True)
    raw, sensors = scores.score, None
    table = windows.served.instruments
    if table is not None:
        slots = table.slots([pending.asset_id for pending in windows.pending])
        sensors = table.step_batch(slots, _readings(windows))
        untrusted = sensors.faulted if sensors.held is None else sensors.faulted | sensors.held
        # a sensor out of order must not raise an alarm: where the record is above its
        # threshold with it, it is judged without it
        rows = np.flatnonzero(untrusted.any(axis=1) & exceed(raw, windows.limits[:n]))
        if len(rows):
            raw = raw.copy()
            rebuilt = None if scores.rebuilt is None else scores.rebuilt[rows]
            raw[rows] = artifact.detector.without(windows.windows()[rows], untrusted[rows], rebuilt)
    judged = np.array([
        pending.state.rules.judge(value, rules)
        for pending, value in zip(windows.pending, raw.tolist(), strict=True)
    ])  # fmt: skip
    limits = windows.limits[:n]
    above = exceed(judged, limits)
    # the onset rule reads its span (the ring holds the window when that is longer)
    span = history[:, history.shape[1] - max(rules.history, 1) :]
    unit = artifact.detector.scaler.step_unit
    onset = onsets(Histories(span, windows.seen[:n]), judged, above, limits, unit, rules)
    return Scored(windows, scores, judged, above, onset, sensors)
