"""Every metric the worker exports, in one place, on an injectable registry.

Base units (seconds), `_total` counters, label values bounded and created at start so that
every series exists from the first scrape.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from anomaly.records import REASONS
from worker.asset_metrics import AssetEpisodes, AssetsInAlarm
from worker.histogram import BatchHistogram

OUTCOMES = ("scored", "dead_lettered", "warming_up", "incomplete", "stopped", "starting")
EVENT_TYPES = (
    "open", "quiet", "resume", "resolve", "suppress", "unsuppress", "sensor_silent",
    "sensor_resolve", "sensor_fault", "sensor_fault_resolve", "stopped", "started",
    "incident_open", "incident_update", "incident_resolve",
)  # fmt: skip
STAGES = ("poll", "decode", "score", "publish", "commit")
CHECKPOINT_EVENTS = ("restored", "released", "unsaved")

_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_LAG_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400)
_SCORES = tuple(10.0**e for e in range(-4, 5)) + tuple(3 * 10.0**e for e in range(-4, 4))
_BATCH = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Open episodes shown per asset: bounded, so that an alert storm cannot flood Prometheus.
MAX_EPISODE_SERIES = 1000


class Metrics:
    """The worker's metrics. Pass a fresh CollectorRegistry in tests and read it back."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.records = Counter(
            "anomaly_records", "Input records by outcome.", ["outcome"], registry=r
        )
        self.dead_letters = Counter(
            "anomaly_dead_letters", "Records sent to the dead-letter topic, by reason.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.outliers = Counter(
            "anomaly_outliers", "Scored records above their threshold, by model.", ["model"],
            registry=r,
        )  # fmt: skip
        self.scored = Counter(
            "anomaly_scored", "Scored records, by model (anomaly_records_total's scored, split).",
            ["model"], registry=r,
        )  # fmt: skip
        self.alert_events = Counter(
            "anomaly_alert_events", "Alert events published, by type.", ["type"], registry=r
        )
        self.open_episodes = Gauge("anomaly_open_episodes", "Alert episodes open now.", registry=r)
        self.alarms = AssetsInAlarm(r)
        self.episode_open = Gauge(
            "anomaly_episode_open",
            "1 for each open alert episode, by asset, the feature with the largest share, "
            "the model and its version, and the incident its page belongs to (at most "
            f"{MAX_EPISODE_SERIES} series).",
            ["asset_id", "top_feature", "model", "model_version", "incident"], registry=r,
        )  # fmt: skip
        self._episode_labels: dict[str, tuple[str, str, str, str]] = {}
        self.episode_started = Gauge(
            "anomaly_episode_started_seconds",
            "When each paging episode started (record time), by asset: the stale ones are "
            "the oldest (the same assets as anomaly_episode_open).",
            ["asset_id", "model"], registry=r,
        )  # fmt: skip
        self.pages = Counter(
            "anomaly_pages", "Pages: episodes that started paging and joined no incident "
            "already paging (an incident pages once), by model.", ["model"], registry=r,
        )  # fmt: skip
        self.asset_episodes = AssetEpisodes(r)
        self.incidents_open = Gauge(
            "anomaly_incidents_open", "Incidents (several assets' episodes of one cause) open.",
            registry=r,
        )  # fmt: skip
        self.episode_suppressed = Gauge(
            "anomaly_episode_suppressed",
            "1 for each open episode whose page a maintenance window or a shelf holds back, by "
            f"asset and what holds it (at most {MAX_EPISODE_SERIES} series).",
            ["asset_id", "held_by", "model"], registry=r,
        )  # fmt: skip
        self._held_labels: dict[str, tuple[str, str]] = {}
        self.shelved = Gauge(
            "anomaly_asset_shelved_until_seconds",
            "For each shelved asset, when its shelf expires (who shelved it and why).",
            ["asset_id", "shelved_by", "reason"], registry=r,
        )  # fmt: skip
        self._shelves: set[tuple[str, str, str]] = set()
        self.calendar_entries = Gauge(
            "anomaly_calendar_entries", "Maintenance windows and shelves read, by kind.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.calendar_errors = Counter(
            "anomaly_calendar_errors",
            "Calendar topic messages this worker could not read (the worker log says why).",
            registry=r,
        )  # fmt: skip
        self.values_filled = Counter(
            "anomaly_values_filled",
            "Missing values filled from the asset's last value of the feature, by feature.",
            ["feature"], registry=r,
        )  # fmt: skip
        self.sensor_fault_open = Gauge(
            "anomaly_sensor_fault_open",
            "1 for each sensor of an asset out of order now (silent, stuck, out_of_range, "
            f"noisy): the AnomalySensorFault alert (at most {MAX_EPISODE_SERIES} series).",
            ["asset_id", "feature", "fault", "model"], registry=r,
        )  # fmt: skip
        self._faults: dict[tuple[str, str], tuple[str, str]] = {}
        self.assets_stopped = Gauge(
            "anomaly_assets_stopped",
            "Assets whose latest record shows them stopped (their model's operating-state rule).",
            registry=r,
        )  # fmt: skip
        self.sensors_silent = Gauge(
            "anomaly_sensors_silent",
            "Sensors (asset and feature) with an open sensor_silent event.", registry=r,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "anomaly_stage_seconds", "Time per batch spent in each stage.", ["stage"],
            buckets=_SECONDS, registry=r,
        )  # fmt: skip
        self.batch_records = Histogram(
            "anomaly_batch_records", "Records per batch.", buckets=_BATCH, registry=r
        )
        self.decision_lag = BatchHistogram(
            "anomaly_decision_lag_seconds",
            "From a record's own timestamp to the commit of its decision.", _LAG_SECONDS, r,
        )  # fmt: skip
        self.score = BatchHistogram("anomaly_score", "Scores of scored records.", _SCORES, r)
        self.threshold = Gauge(
            "anomaly_threshold", "Each model's threshold (assets may have their own).",
            ["model"], registry=r,
        )  # fmt: skip
        self.target_rate = Gauge(
            "anomaly_target_outlier_rate",
            "The share of clean records each model's thresholds were calibrated to exceed.",
            ["model"], registry=r,
        )  # fmt: skip
        self.above_median = Counter(
            "anomaly_scores_above_median",
            "Scored records whose score exceeds their model's median held-out score (half of "
            "them while the model fits the data), by model.", ["model"], registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            "anomaly_model_info", "The version in service of each model (value 1).",
            ["model", "version"], registry=r,
        )  # fmt: skip
        self.model_created = Gauge(
            "anomaly_model_created_timestamp_seconds",
            "When the version in service of each model was trained.", ["model"], registry=r,
        )  # fmt: skip
        self.model_loads = Counter(
            "anomaly_model_loads", "Model versions loaded and swapped in.", ["model"],
            registry=r,
        )  # fmt: skip
        self.model_load_failures = Counter(
            "anomaly_model_load_failures", "Model versions refused at load.", ["model"],
            registry=r,
        )  # fmt: skip
        self.model_store_errors = Counter(
            "anomaly_model_store_errors",
            "Looks at the model store that failed (unreachable, server error); the model in "
            "service keeps scoring.", ["model"], registry=r,
        )  # fmt: skip
        self.consumer_lag = Gauge(
            "anomaly_consumer_lag_records", "Records behind the end of each assigned partition.",
            ["topic", "partition"], registry=r,
        )  # fmt: skip
        self.assets_tracked = Gauge(
            "anomaly_assets_tracked", "Assets with state in memory.", registry=r
        )
        self.assets_evicted = Counter(
            "anomaly_assets_evicted", "Assets evicted at the max_assets limit.", registry=r
        )
        self.checkpoint_assets = Counter(
            "anomaly_checkpoint_assets",
            "Assets' alert state saved with the offsets: restored with a gained partition, "
            "released with a lost one, or unsaved (over the commit metadata limit).",
            ["event"], registry=r,
        )  # fmt: skip
        self.unreadable_batches = Counter(
            "anomaly_unreadable_batches",
            "Fetched batches the Kafka client could not decode (each ends the worker with "
            "exit code 9).",
            registry=r,
        )
        self.ready = Gauge(
            "anomaly_ready", "1 when a model is loaded, partitions assigned, brokers answering.",
            registry=r,
        )  # fmt: skip
        self.last_batch = Gauge(
            "anomaly_last_batch_timestamp_seconds", "When the last batch was committed.",
            registry=r,
        )  # fmt: skip
        for outcome in OUTCOMES:
            self.records.labels(outcome)
        for reason in REASONS:
            self.dead_letters.labels(reason)
        for kind in EVENT_TYPES:
            self.alert_events.labels(kind)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for kind in ("window", "shelf"):
            self.calendar_entries.labels(kind)
        for event in CHECKPOINT_EVENTS:
            self.checkpoint_assets.labels(event)
        self._model_versions: dict[str, str] = {}

    def episode(
        self,
        kind: str,
        asset_id: str,
        top_feature: str | None,
        model: str,
        version: str,
        held: str | None = None,
        incident: str | None = None,
        started_at: float | None = None,
        page: bool = True,
    ) -> None:
        """Show an episode while it is open (one series per asset, bounded in number): what
        the board's episode table and the AnomalyAssetInAlarm alert read (`incident`: its
        page's, the asset's id where none is said), or, while its page is held back,
        `anomaly_episode_suppressed` instead. A quiet or resumed episode is still open: its
        series (its page) stays as it is. An episode that starts paging counts for its asset
        and, where it is its incident's first (`page`), as a page."""
        if kind in ("quiet", "resume"):
            return
        if kind in ("open", "unsuppress") and held is None:
            self.asset_episodes.inc(asset_id, model)
            if page:
                self.pages.labels(model).inc()
        previous = self._episode_labels.pop(asset_id, None)
        if previous is not None:
            self.episode_open.remove(asset_id, *previous)
            self.episode_started.remove(asset_id, previous[1])
        was_held = self._held_labels.pop(asset_id, None)
        if was_held is not None:
            self.episode_suppressed.remove(asset_id, *was_held)
        if kind == "resolve" or len(self._episode_labels) >= MAX_EPISODE_SERIES:
            return
        if held is not None:
            self.episode_suppressed.labels(asset_id, held, model).set(1)
            self._held_labels[asset_id] = (held, model)
        elif top_feature:
            group = incident or asset_id
            self.episode_open.labels(asset_id, top_feature, model, version, group).set(1)
            self._episode_labels[asset_id] = (top_feature, model, version, group)
            if started_at is not None:
                self.episode_started.labels(asset_id, model).set(started_at)

    def sensor_fault(
        self, opened: bool, asset_id: str, feature: str, fault: str, model: str
    ) -> None:
        """Show a sensor out of order while it is (one series per asset and feature, bounded
        in number)."""
        previous = self._faults.pop((asset_id, feature), None)
        if previous is not None:
            self.sensor_fault_open.remove(asset_id, feature, *previous)
        if opened and len(self._faults) < MAX_EPISODE_SERIES:
            self.sensor_fault_open.labels(asset_id, feature, fault, model).set(1)
            self._faults[(asset_id, feature)] = (fault, model)

    def show_calendar(self, windows: int, shelves: Sequence[tuple[str, str, str, float]]) -> None:
        """The calendar's entries, and each shelf in force: (asset, by, why, expiry)."""
        self.calendar_entries.labels("window").set(windows)
        self.calendar_entries.labels("shelf").set(len(shelves))
        now = set()
        for asset_id, by, reason, until in shelves:
            self.shelved.labels(asset_id, by, reason).set(until)
            now.add((asset_id, by, reason))
        for gone in self._shelves - now:
            self.shelved.remove(*gone)
        self._shelves = now

    def watch_model(self, model: str) -> None:
        """The series of a model this worker looks for exist from then on (0 until it loads)."""
        for counter in (self.model_loads, self.model_load_failures, self.model_store_errors,
                        self.outliers, self.above_median, self.scored):  # fmt: skip
            counter.labels(model)

    def set_model(
        self,
        model: str,
        version: str,
        threshold: float,
        created_at: float,
        features: Sequence[str] = (),
        target_rate: float = 0.0,
    ) -> None:
        """Show `version` as the version of `model` in service (and no other); its features'
        series of filled values exist from then on (a feature of an earlier model keeps its
        own)."""
        self.watch_model(model)
        self.pages.labels(model)  # its pages counted from 0 (an increase reads it)
        for feature in features:
            self.values_filled.labels(feature)
        previous = self._model_versions.get(model)
        if previous is not None:
            self.model_info.remove(model, previous)
        self.model_info.labels(model, version).set(1)
        self._model_versions[model] = version
        self.threshold.labels(model).set(threshold)
        self.target_rate.labels(model).set(target_rate)
        self.model_created.labels(model).set(created_at)
        self.model_loads.labels(model).inc()
