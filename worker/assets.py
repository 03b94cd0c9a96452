"""Per-asset state: the recent records (the window, or the onset rule's history when longer)
and the alert-rule state, bounded in number; each asset belongs to one named model, whose
shape its buffer has.

The table keeps at most `max_assets` assets; the least recently seen one is evicted when a new
asset arrives at the limit, so memory stays flat however many asset ids the stream carries.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from anomaly.assembly import Assembly
from anomaly.rules import RuleState
from anomaly.settings import DEFAULT_MODEL
from worker.sensors import Sensors


class WindowBuffer:
    """The last `size` records of one asset in a ring of `size` rows: the window, or the onset
    rule's history when that is longer (`size`).

    O(1) per record; reading copies the latest rows, oldest first, into the caller's array
    (the batch the model scores), so one ring per asset is all the memory it costs. Values are
    kept as float32, the precision the network computes in: half the memory of float64.
    """

    __slots__ = ("_data", "_pos", "count", "size", "window")

    def __init__(self, window: int, n_features: int, size: int = 0) -> None:
        self.window = window
        self.size = max(window, size)
        self._data = np.zeros((self.size, n_features), dtype=np.float32)
        self._pos = 0  # where the next record goes: the oldest row once the ring is full
        self.count = 0

    def push(self, values: Sequence[float] | npt.NDArray[np.float64]) -> bool:
        """Append a record; True once `window` records have been seen (a window is full)."""
        self._data[self._pos] = values
        self._pos = (self._pos + 1) % self.size
        self.count += 1
        return self.count >= self.window

    def clear(self) -> None:
        """Forget every record (the next one starts a new window)."""
        self._pos = 0
        self.count = 0

    def last(self) -> npt.NDArray[np.float32]:
        """The latest record (a view; only once one was pushed)."""
        row: npt.NDArray[np.float32] = self._data[(self._pos - 1) % self.size]
        return row

    def copy_last(self, out: npt.NDArray[np.float64]) -> None:
        """Write the latest len(out) records (at most `size`), oldest first, into `out`
        (rows, F); while fewer have been seen, the oldest seen fills the rows before them."""
        n, seen = len(out), min(self.count, self.size)
        if seen < n:  # the ring has not wrapped: rows 0 .. seen - 1, oldest first
            out[: n - seen] = self._data[0]
            out[n - seen :] = self._data[:seen]
            return
        start = (self._pos - n) % self.size
        if start + n <= self.size:  # contiguous: one copy
            out[:] = self._data[start : start + n]
            return
        split = self.size - start
        out[:split] = self._data[start:]
        out[split:] = self._data[: n - split]


@dataclass(slots=True)
class AssetState:
    """Everything the worker remembers about one asset, and the partition its records come
    from (its state is saved with that partition's offsets: worker/checkpoint.py); when it
    last sent a complete record (`full_at`, record time) and, once a record of it lacked a
    feature, its sensors' state (worker/sensors.py); the threshold its scores are compared
    with (the model's, or its own: Manifest.threshold_for)."""

    buffer: WindowBuffer
    rules: RuleState = field(default_factory=RuleState)
    partition: int = -1
    full_at: float = -math.inf
    sensors: Sensors | None = None
    threshold: float = math.inf
    model: str = ""  # the named model its records go to ("": none yet)
    assembly: Assembly | None = None  # one value per message: its sensors' last values
    # its operating state (anomaly/states.py): stopped, or starting up until this record time
    stopped: bool = False
    starting_until: float = -math.inf


class AssetTable:
    """Asset id -> AssetState, least recently seen first, at most `max_assets` entries."""

    def __init__(self, max_assets: int, window: int, n_features: int, history: int = 0) -> None:
        self.max_assets = max_assets
        # per model (named models): its buffers' shape and its assets' thresholds
        self.shapes: dict[str, tuple[int, int, int]] = {
            DEFAULT_MODEL: (window, n_features, history)
        }
        self._threshold_of: dict[str, Callable[[str], float]] = {}
        self._states: OrderedDict[str, AssetState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __iter__(self) -> Iterator[tuple[str, AssetState]]:
        return iter(self._states.items())

    def get(
        self, asset_id: str, model: str = DEFAULT_MODEL
    ) -> tuple[AssetState, tuple[str, AssetState] | None]:
        """The asset's state (created if new) as an asset of `model`, and the (id, state)
        evicted to make room, if any. An asset met under another model (or restored with its
        partition, before its first record) starts a buffer of `model`'s shape; its alert
        state is kept."""
        state = self._states.get(asset_id)
        if state is not None:
            self._states.move_to_end(asset_id)
            if state.model != model:
                self._assign(asset_id, state, model)
            return state, None
        state, evicted = self.restore(asset_id)
        self._assign(asset_id, state, model)
        return state, evicted

    def restore(self, asset_id: str) -> tuple[AssetState, tuple[str, AssetState] | None]:
        """The asset's state, created without a model if new (its alert state comes with a
        gained partition; its buffer with its first record), and the (id, state) evicted."""
        state = self._states.get(asset_id)
        if state is not None:
            self._states.move_to_end(asset_id)
            return state, None
        evicted = None
        if len(self._states) >= self.max_assets:
            evicted = self._states.popitem(last=False)
        state = AssetState(WindowBuffer(1, 1))
        self._states[asset_id] = state
        return state, evicted

    def _assign(self, asset_id: str, state: AssetState, model: str) -> None:
        state.model = model
        state.buffer = WindowBuffer(*self.shapes[model])
        state.sensors, state.full_at, state.assembly = None, -math.inf, None
        state.threshold = self._threshold_of.get(model, _no_threshold)(asset_id)

    def set_thresholds(
        self, threshold_of: Callable[[str], float], model: str = DEFAULT_MODEL
    ) -> None:
        """Each asset's threshold (a new version of `model`): now for its assets, and for
        new ones."""
        self._threshold_of[model] = threshold_of
        for asset_id, state in self._states.items():
            if state.model == model:
                state.threshold = threshold_of(asset_id)

    def drop(self, asset_ids: Iterable[str]) -> None:
        """Forget these assets (their partition moved to another worker)."""
        for asset_id in asset_ids:
            self._states.pop(asset_id, None)

    def reshape(
        self, window: int, n_features: int, history: int = 0, model: str = DEFAULT_MODEL
    ) -> None:
        """Start every buffer of `model`'s assets afresh for a version with another window
        length, features or onset history.

        Alert-rule state (open episodes) is kept: the asset is still in the same episode.
        """
        self.shapes[model] = (window, n_features, history)
        for state in self._states.values():
            if state.model != model:
                continue
            state.buffer = WindowBuffer(window, n_features, history)
            if state.sensors is not None and len(state.sensors.reported) != n_features:
                state.sensors = None  # other features: their silences end with the model


def _no_threshold(asset_id: str) -> float:
    return math.inf
