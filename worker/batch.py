"""What one batch produced (the pipeline's result: worker/pipeline.py): the messages to publish,
the offsets to commit after them, and the figures the metrics and logs report of it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from worker.alarms import AlarmView
from worker.emit import EpisodeSeen
from worker.outbound import Outbound


@dataclass
class BatchStats:
    """What the metrics and logs report of one batch."""

    # per model: records scored, above their threshold, above the median held-out score
    scored_by_model: Counter[str] = field(default_factory=Counter)
    outliers_by_model: Counter[str] = field(default_factory=Counter)
    above_median_by_model: Counter[str] = field(default_factory=Counter)
    warming_up: int = 0
    incomplete: int = 0  # records lacking a feature with no fresh value to fill it
    stopped: int = 0  # records of stopped assets, and of assets starting up after a stop
    starting: int = 0
    filled: Counter[str] = field(default_factory=Counter)  # values filled, by feature
    dead_letters: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    # each alert event, in order, for the episode metric
    episodes: list[EpisodeSeen] = field(default_factory=list)
    # each sensor out of order or back, in order: (opened, asset, feature, fault, model)
    faults: list[tuple[bool, str, str, str, str]] = field(default_factory=list)
    evicted: int = 0
    # handover: assets whose state came with a gained partition, assets of lost partitions
    # forgotten, and the gained partitions whose saved state could not be read (with why)
    restored: int = 0
    released: int = 0
    unreadable: list[tuple[tuple[str, int], str]] = field(default_factory=list)
    alarms: list[AlarmView] = field(default_factory=list)  # assets explained (explain_assets)
    scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    record_times: list[float] = field(default_factory=list)
    decode_s: float = 0.0
    score_s: float = 0.0

    @property
    def scored(self) -> int:
        """Records scored, all models together."""
        return sum(self.scored_by_model.values())


@dataclass
class BatchResult:
    """What one batch produced: messages to publish, then offsets to commit, and its stats."""

    messages: list[Outbound] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    stats: BatchStats = field(default_factory=BatchStats)
