"""The window stage's hand-off: the records of one batch that one model scores, each with its
window and the onset rule's history as they stood at that record.

A record's rows are copied out of its asset's ring (worker/assets.py) when it is taken in,
so that an asset with several records in a batch gets a window for each; one array per model
and batch, grown when one-value messages complete more records than the batch read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from anomaly.instrument_table import InstrumentTable
from anomaly.model import Artifact
from anomaly.records import SourceRecord
from anomaly.rules import Rules
from anomaly.states import Rule
from worker.assets import AssetState


@dataclass(frozen=True)
class Served:
    """A model in service: its name, its artifact, and the rules the worker applies with it
    (the model's, with the operator's overrides); its operating-state rule, read once, and
    the start-up grace (anomaly/states.py; None: the model knows no stop); the state of its
    assets' sensors (anomaly/instruments.py; None: the model tells no broken sensor)."""

    name: str
    artifact: Artifact
    rules: Rules
    stopped: Rule | None = None
    grace_s: float = 0.0
    instruments: InstrumentTable | None = None


class Pending(NamedTuple):
    """A record with a full window: the message it came from, its asset's state and id, its
    time, and the features with a filled value in its window (worker/sensors.py)."""

    message: SourceRecord
    state: AssetState
    asset_id: str
    ts: datetime
    filled: tuple[str, ...]


@dataclass
class ModelWindows:
    """One model's records of a batch, in order: each one's history (the model's window is
    its last rows), how many records of its asset that history holds, and its asset's
    threshold."""

    served: Served
    history: npt.NDArray[np.float64]
    seen: npt.NDArray[np.int64]
    limits: npt.NDArray[np.float64]
    pending: list[Pending] = field(default_factory=list)

    @classmethod
    def start(cls, served: Served, size: int) -> ModelWindows:
        """Room for `size` records."""
        manifest = served.artifact.manifest
        rows = max(manifest.window, served.rules.history)
        return cls(
            served, np.empty((size, rows, len(manifest.features))),
            np.empty(size, dtype=np.int64), np.empty(size),
        )  # fmt: skip

    def add(self, state: AssetState, pending: Pending) -> None:
        """A record whose window is full, its rows as its asset's ring holds them now."""
        n = len(self.pending)
        if n == len(self.seen):  # more records than the batch read (assembled ones)
            self._grow()
        state.buffer.copy_last(self.history[n])
        self.seen[n] = state.buffer.count
        self.limits[n] = state.threshold
        self.pending.append(pending)

    def _grow(self) -> None:
        size = max(1, len(self.seen))
        self.history = np.concatenate([self.history, np.empty((size, *self.history.shape[1:]))])
        self.seen = np.concatenate([self.seen, np.empty(size, dtype=np.int64)])
        self.limits = np.concatenate([self.limits, np.empty(size)])

    def windows(self) -> npt.NDArray[np.float64]:
        """The model's windows of the records taken in: (records, window, features)."""
        window = self.served.artifact.manifest.window
        return self.history[: len(self.pending), self.history.shape[1] - window :]
