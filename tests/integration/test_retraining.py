"""Scheduled retraining against real components: the broker(s), a running worker and a real
Pushgateway. The job reads a time range of the topic, cleans it, gates the candidate against
the model in service, publishes it, and the running worker swaps it in."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from anomaly.kafka import make_producer
from anomaly.model import ModelStore
from anomaly.records import parse_ts
from devtools import simulator
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import committed_total, create_topics
from tests.support.kafka import Running, alert_events, fresh, processed, produce, read
from tests.support.models import write_csv
from tests.support.observability import gateway_metrics
from tests.support.values import by_exception, quantised
from tests.support.waiting import wait_until
from training.job import train
from training.settings import TrainingSettings
from training.topic import read_topic
from worker.settings import WorkerSettings


@pytest.mark.parametrize("which", ["tansu", "kafka4", "kafka09"])
def test_the_time_range_read_keeps_the_range_and_ends_while_records_keep_coming(
    which: str, request: pytest.FixtureRequest
) -> None:
    """Kafka 4 and Tansu find the range's start by the broker's time lookup; Kafka 0.9 has
    none (nor timestamps), so the job scans from the beginning and drops what is too old."""
    broker: LocalBroker = request.getfixturevalue({"tansu": "broker"}.get(which, which))
    kafka, topics = fresh(broker)
    settings = TrainingSettings(data={"source": "kafka", "since": "1h"}, kafka=kafka,
                                topics=topics)  # fmt: skip
    if which != "kafka09":  # Kafka 0.9 creates it on first use
        create_topics(settings.kafka, {settings.topics.input: 3})
    now = datetime.now(UTC)
    old = Fleet(n_assets=3, seed=1, start=now - timedelta(days=2))
    recent = Fleet(n_assets=3, seed=2, start=now - timedelta(minutes=10))
    producer = make_producer(settings.kafka)
    two_days_ago = int((now - timedelta(days=2)).timestamp() * 1000)
    for key, value in old.records(100):  # broker time (where the broker keeps one) 2 days ago
        stamp = {"timestamp_ms": two_days_ago} if which != "kafka09" else {}
        producer.send(settings.topics.input, key=key, value=value, **stamp)
    for key, value in recent.records(200):
        producer.send(settings.topics.input, key=key, value=value)
    producer.flush()

    stop = threading.Event()

    def keep_producing() -> None:  # records keep arriving while the job reads
        more = Fleet(n_assets=3, seed=3, start=now - timedelta(minutes=5))
        while not stop.is_set():
            for key, value in more.records(20):
                producer.send(settings.topics.input, key=key, value=value)
            producer.flush()

    thread = threading.Thread(target=keep_producing)
    thread.start()
    try:
        history, summary = read_topic(settings, simulator.FEATURES, datetime.now(UTC))
        assert thread.is_alive()  # the read ended although the topic kept growing
    finally:
        stop.set()
        thread.join(30)
        producer.close()
    assert history.rows >= 600  # all recent records, perhaps some that came during the read
    assert summary.by_broker_time is (which != "kafka09")
    assert all(s.ts.min() >= (now - timedelta(hours=1)).timestamp() for s in history.series)
    assert summary.out_of_range in (0, 300)  # an exact lookup never reads the old ones
    if which == "kafka09":  # scanned from the beginning: the old ones were read and dropped
        assert summary.out_of_range == 300
    if which == "kafka4":  # its lookup lands past the old ones: none is read
        assert summary.out_of_range == 0


@pytest.mark.parametrize("which", ["tansu", "kafka4"])
def test_an_explicit_range_is_read_whole_and_alone_on_every_broker(
    which: str, request: pytest.FixtureRequest
) -> None:
    """`fit --source kafka --start X --end Y`: both ends found by the records' broker times.
    Tansu answers every time lookup with offset 0 (taken as the end, nothing was read)."""
    broker: LocalBroker = request.getfixturevalue({"tansu": "broker"}.get(which, which))
    kafka, topics = fresh(broker)
    fleet = Fleet(n_assets=3, seed=5, start=datetime.now(UTC).replace(microsecond=0)
                  - timedelta(hours=3))  # fmt: skip
    start, end = simulator.timestamp(100, fleet.start), simulator.timestamp(250, fleet.start)
    settings = TrainingSettings(data={"source": "kafka", "start": start, "end": end},
                                kafka=kafka, topics=topics)  # fmt: skip
    create_topics(settings.kafka, {settings.topics.input: 3})
    producer = make_producer(settings.kafka)
    for key, value in fleet.records(400):  # stamped by the broker as of their reading
        stamp = int(parse_ts(json.loads(value)["ts"]).timestamp() * 1000)
        producer.send(settings.topics.input, key=key, value=value, timestamp_ms=stamp)
    producer.flush()
    producer.close()
    history, summary = read_topic(settings, simulator.FEATURES, datetime.now(UTC))
    assert history.rows == 3 * 150  # readings 100 to 249 of each pump
    assert all(s.ts.min() == start.timestamp() for s in history.series)
    assert all(s.ts.max() == simulator.timestamp(249, fleet.start).timestamp()
               for s in history.series)  # fmt: skip
    assert summary.out_of_range == 0  # nothing outside the range was read


def test_the_job_reads_one_value_per_message_as_the_same_records_as_whole_ones(
    kafka4: LocalBroker,
) -> None:
    """The same plant on two topics: whole records, and one sensor's value per message, only
    when it changed (an OPC UA or MQTT bridge, its own field names, epoch milliseconds). The
    job assembles the second into the first's records: the same rows, the same values."""
    fleet = Fleet(n_assets=3, seed=12, start=datetime.now(UTC).replace(microsecond=0)
                  - timedelta(minutes=30))  # fmt: skip
    whole = quantised(fleet.records(200))
    histories = []
    for shape, messages in (("record", whole), ("value", by_exception(whole))):
        kafka, topics = fresh(kafka4)
        layout = {"shape": shape, "asset_field": "node", "time_field": "time",
                  "sensor_field": "tag", "cadence_s": 1, "stale_after_s": 600}  # fmt: skip
        settings = TrainingSettings(
            data={"source": "kafka", "since": "1h"}, kafka=kafka, topics=topics,
            input=layout if shape == "value" else {},
        )  # fmt: skip
        create_topics(settings.kafka, {settings.topics.input: 3})
        producer = make_producer(settings.kafka)
        for key, value in messages:
            producer.send(settings.topics.input, key=key, value=value)
        producer.flush()
        producer.close()
        history, summary = read_topic(settings, None, datetime.now(UTC))
        assert not summary.invalid, summary
        histories.append(history)
    records, assembled = histories
    assert assembled.features == records.features == tuple(sorted(simulator.FEATURES))
    assert [s.asset_id for s in assembled.series] == [s.asset_id for s in records.series]
    for got, want in zip(assembled.series, records.series, strict=True):
        assert got.ts.tolist() == want.ts.tolist()
        assert np.array_equal(got.values, want.values)


@pytest.mark.parametrize("where", ["directory", "s3"])
def test_retraining_from_the_stream_cleans_gates_publishes_and_the_worker_swaps(
    broker: LocalBroker, store: Path, pushgateway: str, where: str, request: pytest.FixtureRequest
) -> None:
    """The same on a shared directory and on a bucket (SeaweedFS: s3://models/<prefix>)."""
    location = str(store)
    if where == "s3":
        location = request.getfixturevalue("s3_location")
        models = ModelStore(store)
        version = models.current_version()
        assert version is not None
        with ModelStore(location).staging() as staging:  # the service model, on the bucket
            shutil.copytree(store / "versions" / version, staging, dirs_exist_ok=True)
            ModelStore(location).publish(staging)
    kafka, topics = fresh(broker)
    worker_settings = WorkerSettings(
        kafka=kafka, topics=topics, batch={"size": 500, "max_wait_ms": 50},
        store={"path": location, "reload_interval_s": 0.05}, http={"port": 0},
    )  # fmt: skip
    create_topics(worker_settings.kafka, {topics["input"]: 3, topics["alerts"]: 1,
                                          topics["dead_letters"]: 1})  # fmt: skip
    service = ModelStore(location).current_version()
    now = datetime.now(UTC).replace(microsecond=0)
    fleet = Fleet(n_assets=8, seed=11, start=now - timedelta(minutes=30))
    faults = fleet.faults(900, first=300)
    running = Running(worker_settings)
    try:
        n = produce(worker_settings, fleet.records(900, faults))
        wait_until(lambda: processed(running.metrics) >= n, 120, "the stream scored")
        job = f"training-{topics['input']}"
        outcome = train(
            TrainingSettings(
                data={"source": "kafka", "since": "2h"}, kafka=kafka, topics=topics,
                model={"epochs": 60, "patience": 8, "window": 1},  # the service model's
                store={"path": location},
                pushgateway={"url": pushgateway, "job": job},
            )
        )  # fmt: skip
        report = json.loads(ModelStore(location).read_file(outcome.version, "report.json"))
        removed = report["removed"]["by_rule"]
        assert removed["service_model"] > 0
        assert removed["alert_episodes"] > 0
        assert report["read"]["records"] == n
        faulty = sum(f.end - f.start for f in faults)
        assert report["removed"]["total"] >= faulty // 2
        assert outcome.decision.promoted, outcome.decision.reasons
        assert ModelStore(location).current_version() == outcome.version != service

        wait_until(
            lambda: running.metrics.registry.get_sample_value(
                "anomaly_model_info", {"model": "default", "version": outcome.version}
            ) == 1,
            what="the worker on the new version",
        )  # fmt: skip
        later = Fleet(n_assets=8, seed=12, start=now)
        more = produce(worker_settings, later.records(200, later.faults(200, first=50)))
        wait_until(lambda: processed(running.metrics) >= n + more, 120, "the later records")
        opened = running.metrics.registry.get_sample_value(
            "anomaly_alert_events_total", {"type": "open"}
        )
        resolved = running.metrics.registry.get_sample_value(
            "anomaly_alert_events_total", {"type": "resolve"}
        )
        assert opened is not None
        assert resolved is not None
        alerts = read(worker_settings, topics["alerts"], alert_events(running.metrics))
        events = [json.loads(record.value or b"") for record in alerts]
        assert events[-1]["model_version"] == outcome.version  # the newest carry the new one

        assert processed(running.metrics) == n + more  # nothing lost, nothing twice
        wait_until(
            lambda: (
                committed_total(worker_settings.kafka, topics["group"], topics["input"]) == n + more
            ),
            what="every offset committed",
        )

        ModelStore(location).set_current(str(service))  # rollback: one call, followed like any
        wait_until(
            lambda: running.metrics.registry.get_sample_value(
                "anomaly_model_info", {"model": "default", "version": str(service)}
            ) == 1,
            what="the worker back on the old version",
        )  # fmt: skip
    finally:
        running.stop()

    pushed = gateway_metrics(pushgateway, job)
    assert pushed["anomaly_training_promoted"][0]["value"] == "1"
    assert pushed["anomaly_training_rows_read"][0]["value"] == str(n)
    rules = {m["labels"]["rule"]: m["value"] for m in pushed["anomaly_training_rows_removed"]}  # type: ignore[index]
    assert rules["service_model"] == str(removed["service_model"])
    assert pushed["anomaly_training_model_info"][0]["labels"]["version"] == outcome.version  # type: ignore[index]
    assert float(pushed["anomaly_training_last_success_timestamp_seconds"][0]["value"]) > 0  # type: ignore[arg-type]


def test_a_worse_candidate_is_rejected_and_the_service_model_stays(
    store: Path, tmp_path: Path
) -> None:
    service = ModelStore(store).current_version()
    rows = simulator.clean_rows(10_000, seed=3)
    rng = np.random.default_rng(4)
    for start in range(0, 10_000, 250):  # a fault in every stretch of 250 readings
        kind = simulator.FAULT_KINDS[int(rng.integers(4))]
        sensor = simulator.FEATURES[int(rng.integers(6))]
        fault = simulator.Fault("pump", kind, sensor, start, start + 120, simulator.START,
                                simulator.START)  # fmt: skip
        rows = simulator.inject(rows, fault, seed=start)
    data = tmp_path / "faulty.csv"
    write_csv(data, rows)
    outcome = train(
        TrainingSettings(
            data={"path": data, "timestamp_column": "timestamp"},
            model={"epochs": 40, "patience": 8, "window": 1},  # the service model's
            clean={"enabled": False},
            store={"path": store},
        )
    )  # fmt: skip
    assert not outcome.decision.promoted
    assert any("false-positive rate" in r or "error" in r for r in outcome.decision.reasons)
    models = ModelStore(store)
    assert models.current_version() == service
    [info] = [v for v in models.list_versions() if v.name == outcome.version]
    assert info.status is not None
    assert info.status.startswith("rejected: ")
    decision = json.loads((Path(outcome.location) / "decision.json").read_text())
    assert decision["promoted"] is False
    assert decision["reasons"] == outcome.decision.reasons
