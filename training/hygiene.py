"""Clean data only: find the records that a model flags, that recorded episodes cover, or
whose sensors the model's profile finds out of order.

"Flagged" means what it means in the worker: inside an alert episode by the model's own
rules (anomaly.rules), scored over the same windows (anomaly.scoring).
"""

from __future__ import annotations

import numpy as np

from anomaly.instruments import SensorProfile, sensor_faults
from anomaly.scoring import series_flags
from training.data import Masks, SensorHistory
from training.gate import Scored
from training.topic import Episodes


def flagged_by(model: Scored, history: SensorHistory) -> Masks:
    """Rows inside an episode of `model` (records before a full window are not scored)."""
    return {
        i: series_flags(
            model.detector,
            model.threshold_for(s.asset_id),
            s.values,
            model.window,
            model.rules,
            model.instruments,
        )
        for i, s in enumerate(history.series)
    }


def inside_episodes(history: SensorHistory, episodes: Episodes) -> Masks:
    """Rows of an asset that fall inside one of its recorded episodes."""
    masks: Masks = {}
    for i, s in enumerate(history.series):
        mask = np.zeros(len(s.ts), dtype=bool)
        for begin, end in episodes.get(s.asset_id, ()):
            mask |= (s.ts >= begin) & (s.ts <= end)
        masks[i] = mask
    return masks


def sensor_faulted(profile: SensorProfile, history: SensorHistory) -> Masks:
    """Rows with some sensor out of order (stuck, out of range, noisy) as the model in
    service's profile tells it (anomaly/instruments.py): their values are not learnt."""
    return {
        i: np.asarray(sensor_faults(profile, s.values).any(axis=1))
        for i, s in enumerate(history.series)
    }


def union(*masks: Masks) -> Masks:
    """Rows marked by any of the masks."""
    out: Masks = {}
    for mask in masks:
        for i, marks in mask.items():
            out[i] = out[i] | marks if i in out else marks.copy()
    return out


def count(mask: Masks) -> int:
    return int(sum(int(m.sum()) for m in mask.values()))
