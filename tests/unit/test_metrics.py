import numpy as np
from prometheus_client import CollectorRegistry, Histogram

from worker.alarms import AlarmView
from worker.asset_metrics import AssetsInAlarm
from worker.histogram import BatchHistogram
from worker.metrics import Metrics


def test_batch_histogram_matches_prometheus_histogram_sample_for_sample() -> None:
    values = np.random.default_rng(0).lognormal(sigma=2.0, size=5000)
    values[:10] = [0.0, 1.0, 2.5, 10.0, np.inf, -1.0, 0.5, 5.0, 5.0, np.nan]  # edges included
    bounds = (0.5, 1.0, 2.5, 5.0, 10.0, 100.0)
    registry = CollectorRegistry()
    batch = BatchHistogram("batch", "test", bounds, registry)
    single = Histogram("single", "test", buckets=bounds, registry=registry)
    batch.observe_many(values[:2500])
    batch.observe_many(values[2500:])
    for v in values[~np.isnan(values)]:
        single.observe(float(v))
    for bound in [*map(str, bounds), "+Inf"]:
        assert registry.get_sample_value("batch_bucket", {"le": bound}) == (
            registry.get_sample_value("single_bucket", {"le": bound})
        ), bound
    assert registry.get_sample_value("batch_count") == registry.get_sample_value("single_count")
    assert registry.get_sample_value("batch_sum") == registry.get_sample_value("single_sum")


def test_an_asset_in_alarm_is_shown_until_linger_after_its_last_record() -> None:
    now = [0.0]
    registry = CollectorRegistry()
    alarms = AssetsInAlarm(registry, linger_s=60.0, clock=lambda: now[0])
    features = ("flow", "pressure")

    def view(asset_id: str, flow: float, is_open: bool) -> AlarmView:
        return AlarmView(asset_id, "pump", features, np.array([flow, 2.0]), np.array([1.0, 2.5]),
                         0.9, 0.5, is_open)  # fmt: skip

    def value(asset_id: str, feature: str, series: str) -> float | None:
        return registry.get_sample_value(
            "anomaly_asset_value",
            {"asset_id": asset_id, "model": "pump", "feature": feature, "series": series},
        )

    alarms.show([view("p1", 7.0, True), view("p2", 3.0, True)])
    assert value("p1", "flow", "actual") == 7.0
    assert value("p1", "flow", "expected") == 1.0
    assert value("p2", "pressure", "expected") == 2.5
    assert (
        registry.get_sample_value("anomaly_asset_score", {"asset_id": "p1", "model": "pump"}) == 0.9
    )
    now[0] = 50.0
    alarms.show([view("p1", 8.0, False)])  # p1's episode resolved; p2 sent nothing since
    assert value("p1", "flow", "actual") == 8.0
    now[0] = 70.0  # p2: 70 s since its last record; p1: 20 s since it resolved
    assert value("p2", "flow", "actual") is None
    assert value("p1", "flow", "actual") == 8.0
    now[0] = 110.0
    assert value("p1", "flow", "actual") is None
    assert alarms.assets == 0
    series = [
        s for m in registry.collect() if m.name.startswith("anomaly_asset_") for s in m.samples
    ]
    assert series == []


def test_the_assets_in_alarm_stay_within_their_bound_under_a_storm() -> None:
    registry = CollectorRegistry()
    alarms = AssetsInAlarm(registry, limit=3, linger_s=60.0)
    features = ("flow", "pressure")
    for n in range(50):  # more assets than the bound, whatever the pipeline sends
        view = AlarmView(f"p{n}", "pump", features, np.ones(2), np.zeros(2), 1.0, 0.5, True)
        alarms.show([view])
    samples = [
        s for m in registry.collect() if m.name.startswith("anomaly_asset_") for s in m.samples
    ]
    assert {s.labels["asset_id"] for s in samples} == {"p47", "p48", "p49"}  # the freshest
    assert len(samples) == 3 * (2 * len(features) + 2)  # actual and expected, score, threshold


def test_a_quiet_or_resumed_episode_keeps_its_page_until_it_resolves() -> None:
    metrics = Metrics(CollectorRegistry())

    def paged() -> float | None:
        labels = {
            "asset_id": "p1",
            "top_feature": "flow",
            "model": "default",
            "model_version": "v1",
            "incident": "p1",  # none said: the asset's own
        }
        return metrics.registry.get_sample_value("anomaly_episode_open", labels)

    metrics.episode("open", "p1", "flow", "default", "v1")
    assert paged() == 1.0
    for kind in ("quiet", "resume", "quiet"):
        metrics.episode(kind, "p1", "pressure", "default", "v1")  # no new page, none dropped
        assert paged() == 1.0
    metrics.episode("resolve", "p1", None, "default", "v1")
    assert paged() is None


def test_an_incident_pages_once_and_each_member_counts_for_its_asset() -> None:
    m = Metrics(CollectorRegistry())
    value = m.registry.get_sample_value
    m.episode("open", "p1", "flow", "default", "v1", None, "e1", 100.0, True)
    m.episode("open", "p2", "pressure", "default", "v1", None, "e1", 110.0, False)  # joins e1
    m.episode("open", "p3", "flow", "default", "v1", "shelved", None, 120.0, False)  # held
    m.episode("quiet", "p1", "flow", "default", "v1", None, "e1", 100.0, False)
    assert value("anomaly_pages_total", {"model": "default"}) == 1.0
    counted = {a: value("anomaly_asset_episodes_total", {"asset_id": a, "model": "default"})
               for a in ("p1", "p2", "p3")}  # fmt: skip
    assert counted == {"p1": 1.0, "p2": 1.0, "p3": None}
    member = {"asset_id": "p2", "top_feature": "pressure", "model": "default",
              "model_version": "v1", "incident": "e1"}  # fmt: skip
    assert value("anomaly_episode_open", member) == 1.0
    started = {"asset_id": "p2", "model": "default"}
    assert value("anomaly_episode_started_seconds", started) == 110.0
    m.episode("unsuppress", "p3", "flow", "default", "v1", None, "e3", 120.0, True)
    assert value("anomaly_pages_total", {"model": "default"}) == 2.0
    m.episode("resolve", "p2", None, "default", "v1", None, "e1", 110.0, False)
    assert value("anomaly_episode_open", member) is None
    assert value("anomaly_episode_started_seconds", started) is None
    assert value("anomaly_asset_episodes_total", {"asset_id": "p2", "model": "default"}) == 1.0
