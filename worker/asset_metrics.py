"""The worker's series per asset that need more than a label: the board's "asset in alarm"
row (a collector over the assets explained now) and the episodes each asset paged (bounded in
number of assets). Part of the metrics (worker/metrics.py)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Assets counted one by one (anomaly_asset_episodes_total): those that paged most recently.
MAX_ASSET_SERIES = 10_000


class ExplainedAsset(Protocol):
    """An asset in alarm as one record shows it (worker.alarms.AlarmView)."""

    @property
    def asset_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def features(self) -> tuple[str, ...]: ...
    @property
    def actual(self) -> npt.NDArray[np.float64]: ...
    @property
    def expected(self) -> npt.NDArray[np.float64]: ...
    @property
    def score(self) -> float: ...
    @property
    def threshold(self) -> float: ...


class AssetEpisodes:
    """`anomaly_asset_episodes_total`: episodes that paged, per asset (the most-alarming
    assets, the chattering ones), for at most MAX_ASSET_SERIES assets: past that, the asset
    that paged least recently loses its series (counters restart; `increase` reads them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "anomaly_asset_episodes", "Episodes that paged (alone or in an incident), by asset "
            f"and model (at most {MAX_ASSET_SERIES} assets).", ["asset_id", "model"],
            registry=registry,
        )  # fmt: skip
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()

    def inc(self, asset_id: str, model: str) -> None:
        key = (asset_id, model)
        self._recent[key] = None
        self._recent.move_to_end(key)
        self.counter.labels(asset_id, model).inc()
        while len(self._recent) > MAX_ASSET_SERIES:
            self.counter.remove(*self._recent.popitem(last=False)[0])


class AssetsInAlarm(Collector):
    """The board's "asset in alarm" row: for each asset the worker explains (at most
    WORKER_ALERTS__EXPLAIN_ASSETS, chosen by the pipeline while their episodes last), each
    feature's latest value and the model's reconstruction of it, in the sensor's units
    (`anomaly_asset_value{series="actual"|"expected"}`), and its score and threshold. An
    asset's series go `linger_s` after its last record was shown: after its episode
    resolved, or once its records stopped (a rebalance, an eviction); never more than `limit`
    assets (the stalest go first)."""

    def __init__(
        self, registry: CollectorRegistry, limit: int = 20, linger_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.limit, self.linger_s, self.clock = limit, linger_s, clock
        self._shown: dict[str, tuple[ExplainedAsset, float]] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def show(self, views: Sequence[ExplainedAsset]) -> None:
        now = self.clock()
        with self._lock:
            for view in views:
                self._shown.pop(view.asset_id, None)
                self._shown[view.asset_id] = (view, now)  # the newest last
            while len(self._shown) > self.limit:  # the bound, whatever came: the stalest go
                del self._shown[next(iter(self._shown))]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        value = GaugeMetricFamily(
            "anomaly_asset_value",
            "Each feature of an asset in alarm: its latest value (series=actual) and the "
            "model's reconstruction of it (series=expected), in the sensor's units.",
            labels=["asset_id", "model", "feature", "series"],
        )
        score = GaugeMetricFamily("anomaly_asset_score", "An asset in alarm's latest score.",
                                  labels=["asset_id", "model"])  # fmt: skip
        threshold = GaugeMetricFamily(
            "anomaly_asset_threshold",
            "An asset in alarm's threshold (its own, or its model's).",
            labels=["asset_id", "model"],
        )
        now = self.clock()
        with self._lock:
            for asset_id in [a for a, (_, t) in self._shown.items() if now - t >= self.linger_s]:
                del self._shown[asset_id]
            shown = [view for view, _ in self._shown.values()]
        for view in shown:
            for i, feature in enumerate(view.features):
                labels = [view.asset_id, view.model, feature]
                value.add_metric([*labels, "actual"], float(view.actual[i]))
                value.add_metric([*labels, "expected"], float(view.expected[i]))
            score.add_metric([view.asset_id, view.model], view.score)
            threshold.add_metric([view.asset_id, view.model], view.threshold)
        yield from (value, score, threshold)

    @property
    def assets(self) -> int:
        with self._lock:
            return len(self._shown)
