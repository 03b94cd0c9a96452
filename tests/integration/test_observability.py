"""A real Prometheus scrapes a real worker (and the Pushgateway the training job pushed to):
every query of the Grafana board returns data, and every alert rule stays silent on this
healthy run."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from anomaly.calendar import Shelf, shelf_message
from anomaly.kafka import make_producer
from devtools import simulator
from devtools.local_broker import LocalBroker
from devtools.simulator import Fault, Fleet
from devtools.topics import create_topics
from tests.support.kafka import Running, fresh, processed, produce
from tests.support.models import Trained, settings_for, write_csv
from tests.support.observability import (
    dashboard,
    dashboard_exprs,
    gateway_metrics,
    query,
    rule_exprs,
    running_prometheus,
)
from tests.support.records import MALFORMED
from tests.support.waiting import wait_until
from training.job import HYGIENE_RULES, train
from worker.settings import WorkerSettings

VARIABLES = {"$namespace": ".*", "$asset": ".*", "$model": ".*"}


@pytest.fixture
def running_worker(
    broker: LocalBroker, trained: Trained, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Running]:
    """A worker on fresh topics; `request.param` (indirect): its alert settings."""
    shutil.copytree(trained.root, tmp_path / "store")
    kafka, topics = fresh(broker)
    settings = WorkerSettings(
        kafka=kafka, topics=topics, batch={"size": 200, "max_wait_ms": 50},
        store={"path": tmp_path / "store"}, http={"port": 0, "host": "127.0.0.1"},
        alerts=getattr(request, "param", {}),
    )  # fmt: skip
    create_topics(settings.kafka, {topics["input"]: 3, topics["alerts"]: 1,
                                   topics["dead_letters"]: 1, topics["calendar"]: 1},
                  compacted=[topics["calendar"]])  # fmt: skip
    # one asset's alarm shelved, as `anomaly-train shelve` writes it (the board shows it)
    since = datetime.now(UTC).replace(microsecond=0)
    shelf = Shelf(asset_id="pump-03", since=since, until=since + timedelta(hours=2), by="ana",
                  reason="transmitter on order")  # fmt: skip
    key, value = shelf_message(shelf)
    producer = make_producer(settings.kafka)
    producer.send(topics["calendar"], key=key, value=value).get(timeout=30)
    producer.close()
    running = Running(settings)
    wait_until(lambda: running.worker.http is not None, what="the worker's HTTP server")
    yield running
    running.stop()


@pytest.fixture
def prometheus(running_worker: Running, pushgateway: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the worker and the Pushgateway every second."""
    assert running_worker.worker.http is not None
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sensor-anomaly-worker\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{running_worker.worker.http.port}']}}]\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        f"    static_configs: [{{targets: ['{pushgateway}']}}]\n"
    )
    with running_prometheus(tmp_path, config) as address:
        yield address


def test_every_board_query_returns_data_and_every_alert_rule_is_silent(
    running_worker: Running, prometheus: str, pushgateway: str, tmp_path: Path
) -> None:
    settings = running_worker.worker.settings
    wait_until(lambda: any(t["health"] == "up" for t in targets(prometheus)), 60, "a first scrape")
    # The training job pushes its metrics, as the CronJob would.
    data = tmp_path / "clean.csv"
    write_csv(data, simulator.clean_rows(2000, seed=30))
    training = settings_for(data, tmp_path / "trained", epochs=5)
    train(training.model_copy(update={"pushgateway": training.pushgateway.model_copy(
        update={"url": pushgateway, "job": "anomaly-training"})}))  # fmt: skip
    # This run's own group holds a series for every hygiene rule (none applied here: 0), not
    # only the rules that applied; before, its board panel showed data only when another
    # test had pushed a group that held one.
    pushed = gateway_metrics(pushgateway, "anomaly-training")
    rules = {m["labels"]["rule"] for m in pushed["anomaly_training_rows_removed"]}  # type: ignore[index]
    assert rules == {*HYGIENE_RULES, "maintenance", "not_running"}

    # Two bursts of readings (with faults and a few malformed records) while Prometheus scrapes.
    now = datetime.now(UTC)
    # Readings stamped around now, as from a live plant (the decision-lag rule looks at that).
    fleet = Fleet(n_assets=4, seed=21, start=now - timedelta(seconds=60))
    faults = fleet.faults(400, first=150)
    # pump-00 spikes twice more (three episodes in minutes: it chatters, the alarm-management
    # row shows it) and pump-01 vibrates hard to the end (an episode open, its age shown)
    spike = next(f for f in faults if f.asset_id == "pump-00")
    faults += [replace(spike, start=at, end=at + 6) for at in (250, 330)]
    faults.append(Fault("pump-01", "spike", "vibration", 340, 400, now, now))
    records = list(fleet.records(400, faults))
    sent = produce(settings, records[:800])
    wait_until(lambda: processed(running_worker.metrics) >= sent, 60, "the first burst")
    wait_until(lambda: scraped_records(prometheus) >= sent, 60, "a scrape of the first burst")
    # ... and a reading whose pressure sensor dropped out (filled from the one before it)
    key, last = next(r for r in reversed(records) if r[0] == b"pump-00")
    gap = json.loads(last)
    gap["ts"] = (datetime.fromisoformat(gap["ts"]) + timedelta(seconds=1)).isoformat()
    gap["values"]["pressure"] = None
    bad = [(b"pump-00", v) for v in MALFORMED.values()][:2]
    sent += produce(settings, [*records[800:], *bad, (key, json.dumps(gap).encode())])
    wait_until(lambda: processed(running_worker.metrics) >= sent, 60, "the second burst")
    wait_until(lambda: scraped_records(prometheus) >= sent, 60, "a scrape of the second burst")
    # the scrape that holds every record's outcome holds the value filled with them
    filled = query(prometheus, 'anomaly_values_filled_total{feature="pressure"}')
    assert [float(series["value"][1]) for series in filled] == [1.0]
    own = 'anomaly_training_rows_removed{job="anomaly-training"}'
    wait_until(lambda: bool(query(prometheus, own)), 60, "the pushed metrics")

    empty = []
    for expr in dashboard_exprs():
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        if not query(prometheus, expr):
            empty.append(expr)
    assert not empty, f"board queries that return nothing: {empty}"
    firing = {alert: query(prometheus, expr) for alert, expr in rule_exprs(assets=False).items()}
    assert not {a: r for a, r in firing.items() if r}, "alert rules firing on a healthy run"


def test_a_drifting_plant_raises_the_stale_model_rule_and_a_steady_one_does_not(
    running_worker: Running, prometheus: str
) -> None:
    """AnomalyModelStale's expression (its `for` aside) on the live worker's own series."""
    settings = running_worker.worker.settings
    stale = rule_exprs()["AnomalyModelStale"]
    wait_until(lambda: any(t["health"] == "up" for t in targets(prometheus)), 60, "a first scrape")
    start = datetime.now(UTC) - timedelta(seconds=60)
    sent = produce(settings, Fleet(n_assets=4, seed=22, start=start).records(400))
    wait_until(lambda: processed(running_worker.metrics) >= sent, 60, "the steady readings")
    wait_until(lambda: scraped_records(prometheus) >= sent, 60, "a scrape of them")
    assert not query(prometheus, stale), "a model that fits is said to be stale"

    # The plant warms up for good: both temperatures 3 standard deviations above training.
    drifting = Fleet(n_assets=4, seed=23, start=start + timedelta(seconds=400))
    std = simulator.sensor_std(drifting.rows(0, 1000))
    warmer = []
    for key, value in drifting.records(1000):
        record = json.loads(value)
        for sensor in ("temperature", "bearing_temp"):
            record["values"][sensor] += 3 * std[simulator.FEATURES.index(sensor)]
        warmer.append((key, json.dumps(record).encode()))
    sent += produce(settings, warmer)
    wait_until(lambda: processed(running_worker.metrics) >= sent, 60, "the drifting readings")
    wait_until(lambda: scraped_records(prometheus) >= sent, 60, "a scrape of them")
    fired = query(prometheus, stale)
    assert fired, "a drifted plant is not said to need a new model"
    assert float(fired[0]["value"][1]) > 0.75  # the share above the held-out median


ALARM_PANELS = "Asset in alarm"


@pytest.mark.parametrize("running_worker", [{"explain_linger_s": 1.0}], indirect=True)
def test_the_asset_in_alarm_row_shows_an_episode_and_nothing_after_it(
    running_worker: Running, prometheus: str
) -> None:
    """The board's "asset in alarm" queries, for the asset picked: each feature's actual and
    expected and the score against the threshold while its episode is open; nothing once it
    resolved and the linger (1 s here) passed."""
    settings = running_worker.worker.settings
    wait_until(lambda: any(t["health"] == "up" for t in targets(prometheus)), 60, "a first scrape")
    fleet = Fleet(n_assets=2, seed=21, start=datetime.now(UTC) - timedelta(seconds=300))
    faults = fleet.faults(300, first=100)
    fault = next(f for f in faults if f.asset_id == "pump-00")
    records = list(fleet.records(300, faults))
    readings = [i for i, (key, _) in enumerate(records) if key == b"pump-00"]
    cut = readings[(fault.start + fault.end) // 2] + 1  # into the middle of its fault
    sent = produce(settings, records[:cut])
    wait_until(lambda: processed(running_worker.metrics) >= sent, 60, "the readings so far")
    assert running_worker.worker.processor.explained.get("pump-00", 0) is None, "not in alarm"
    exprs = [e.replace("$asset", "pump-00") for e in alarm_exprs()]
    for name, value in VARIABLES.items():
        exprs = [e.replace(name, value) for e in exprs]
    wait_until(lambda: all(query(prometheus, e) for e in exprs), 30, "the row during the episode")
    actual, expected = (query(prometheus, e) for e in exprs[:2])
    features = set(running_worker.worker.processor.served["default"].artifact.manifest.features)
    assert {s["metric"]["feature"] for s in actual} == features
    assert {s["metric"]["feature"] for s in expected} == features
    assert {s["metric"]["asset_id"] for s in actual} == {"pump-00"}

    sent += produce(settings, records[cut:])  # the fault ends: the episode resolves
    wait_until(lambda: processed(running_worker.metrics) >= sent, 60, "the rest")
    wait_until(lambda: running_worker.worker.processor.open_episodes == 0, 30,
               "every episode resolved")  # fmt: skip
    wait_until(lambda: not any(query(prometheus, e) for e in exprs), 30, "the row empty after")


def alarm_exprs() -> list[str]:
    """The queries of the board's "asset in alarm" panels."""
    return [t["expr"] for p in dashboard()["panels"] if p["title"].startswith(ALARM_PANELS)
            for t in p["targets"]]  # fmt: skip


def targets(prometheus: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://{prometheus}/api/v1/targets", timeout=5) as response:
        active = json.loads(response.read())["data"]["activeTargets"]
    assert isinstance(active, list)
    return active


def scraped_records(prometheus: str) -> float:
    result = query(prometheus, "sum(anomaly_records_total)")
    return float(result[0]["value"][1]) if result else 0.0
