"""The board's alarm rows: the assets in alarm shown actual against expected.

At most `explain_assets` assets hold a row, each from its episode's opening until
`explain_linger_s` after its end, so an alert storm cannot grow the metric's series
(worker/metrics.py). Each row shows the asset's latest scored record of the batch and the
reconstruction the score stage kept of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.decide import Decided
from worker.score import Scored


@dataclass(frozen=True)
class AlarmView:
    """An asset in alarm as its latest scored record of a batch shows it: each feature's
    value and the model's reconstruction of it (sensor units), its score and threshold;
    `open`: its episode is open (False: it resolved with this record)."""

    asset_id: str
    model: str
    features: tuple[str, ...]
    actual: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]
    score: float
    threshold: float
    open: bool


class AlarmSlots:
    """Which assets hold an alarm row: asset id -> None while its episode is open, else when
    it ended (`clock`: time.monotonic)."""

    def __init__(
        self, room: int, linger_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.room, self.linger_s, self.clock = room, linger_s, clock
        self.held: dict[str, float | None] = {}

    def forget(self, asset_id: str) -> None:
        """The asset left this worker (evicted, or its partition moved)."""
        self.held.pop(asset_id, None)

    def show(self, scored: Scored, decided: Decided) -> list[AlarmView]:
        """The rows one model's records of a batch show."""
        held, now = self.held, self.clock()
        for asset_id, ended in list(held.items()):  # slots free once their linger ends
            if ended is not None and now - ended >= self.linger_s:
                del held[asset_id]
        shown: dict[str, tuple[int, bool]] = {}  # asset -> its latest record, open
        pending = scored.windows.pending
        for i, is_open in decided.followed:
            asset_id = pending[i].asset_id
            if is_open and asset_id not in held and len(held) < self.room:
                held[asset_id] = None  # from its episode's opening; a storm cannot grow it
            if asset_id in held and (is_open or held[asset_id] is None):
                shown[asset_id] = (i, is_open)
                held[asset_id] = None if is_open else now  # resolved: shown a while yet
        if not shown:
            return []
        served, rebuilt = scored.windows.served, scored.scores.rebuilt
        assert rebuilt is not None
        windows, rows = scored.windows.windows(), [i for i, _ in shown.values()]
        expected = served.artifact.detector.expected(rebuilt[rows, -1])
        return [
            AlarmView(
                asset_id, served.name, served.artifact.manifest.features, windows[i, -1].copy(),
                row, float(scored.judged[i]), float(scored.limits[i]), is_open,
            )
            for (asset_id, (i, is_open)), row in zip(shown.items(), expected, strict=True)
        ]  # fmt: skip
