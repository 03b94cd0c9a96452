"""Clean data only: find the records that a model flags, or that recorded episodes cover.

"Flagged" means what it means in the worker: inside an alert episode (k records in a row
above the threshold open it, m below close it), scored over the same windows.
"""

from __future__ import annotations

import numpy as np

from anomaly.model import Detector, Threshold, sliding_windows
from anomaly.rules import flag_episodes
from training.data import Masks, SensorHistory
from training.topic import Episodes


def flagged_by(
    detector: Detector, threshold: Threshold, window: int, history: SensorHistory, k: int, m: int
) -> Masks:
    """Rows inside an episode of `detector` (records before a full window are not scored)."""
    masks: Masks = {}
    for i, s in enumerate(history.series):
        above = np.zeros(len(s.ts), dtype=bool)
        if len(s.ts) >= window:
            scores = detector.score(sliding_windows(s.values, window)).score
            above[window - 1 :] = threshold.exceeds(scores)
        masks[i] = flag_episodes(above, k, m)
    return masks


def inside_episodes(history: SensorHistory, episodes: Episodes) -> Masks:
    """Rows of an asset that fall inside one of its recorded episodes."""
    masks: Masks = {}
    for i, s in enumerate(history.series):
        mask = np.zeros(len(s.ts), dtype=bool)
        for begin, end in episodes.get(s.asset_id, ()):
            mask |= (s.ts >= begin) & (s.ts <= end)
        masks[i] = mask
    return masks


def union(*masks: Masks) -> Masks:
    """Rows marked by any of the masks."""
    out: Masks = {}
    for mask in masks:
        for i, marks in mask.items():
            out[i] = out[i] | marks if i in out else marks.copy()
    return out


def count(mask: Masks) -> int:
    return int(sum(int(m.sum()) for m in mask.values()))
