"""The worker against a real broker (Tansu, started by the test session).

Each test gets fresh topics and a fresh consumer group. Workers run in-process (a thread,
stopped when a condition holds) or as a subprocess, and never by sleeping.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.kafka import make_producer
from anomaly.model import ModelStore
from anomaly.model.artifact import WEIGHTS
from anomaly.records import SourceRecord
from anomaly.scoring import series_flags
from anomaly.settings import InputSettings
from devtools import local_broker
from devtools.local_broker import LocalBroker, free_port
from devtools.simulator import COMPRESSOR, FEATURES, Fleet
from devtools.topics import committed_total, create_topics
from tests.support.http import get
from tests.support.kafka import (
    Running,
    alert_events,
    fresh,
    processed,
    produce,
    read,
    run_until_processed,
    settings_on,
)
from tests.support.models import REPO, Trained, train_compressors
from tests.support.records import MALFORMED, good
from tests.support.values import by_exception, quantised
from tests.support.waiting import wait_until
from training.job import train
from training.settings import TrainingSettings
from worker.errors import ExitCode
from worker.kafka_io import KafkaSource
from worker.kafka_sink import KafkaSink
from worker.metrics import Metrics
from worker.outbound import Outbound
from worker.runner import Worker
from worker.settings import (
    ModelsSettings,
    SensorSettings,
    StoreSettings,
    WorkerSettings,
    WorkerTopics,
)


@pytest.fixture
def settings(broker: LocalBroker, store: Path) -> WorkerSettings:
    """Fresh topics and group on the session's broker."""
    return settings_on(broker, store, flush_timeout_s=10)


def test_faults_become_open_and_resolve_events_on_the_alerts_topic(
    settings: WorkerSettings,
) -> None:
    fleet = Fleet(n_assets=4, seed=5)
    faults = fleet.faults(300)
    n = produce(settings, fleet.records(300, faults))
    metrics = run_until_processed(settings, n)
    opens = metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "open"})
    resolves = metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "resolve"})
    assert opens
    assert resolves
    events = read(settings, settings.topics.alerts, alert_events(metrics))
    decoded = [json.loads(e.value or b"") for e in events]
    for event, record in zip(decoded, events, strict=True):
        assert record.key == event["asset_id"].encode()  # alerts are keyed by asset
    for fault in faults:
        mine = [e for e in decoded if e["asset_id"] == fault.asset_id]
        if fault.kind == "stuck":  # a broken transmitter: instrumentation, no episode
            assert [(e["type"], e["fault"]) for e in mine] == [
                ("sensor_fault", "stuck"),
                ("sensor_fault_resolve", "stuck"),
            ], fault
            continue
        assert [e["type"] for e in mine[:1]] == ["open"], fault
        assert "resolve" in {e["type"] for e in mine}, fault
        expected = {"flow", "pressure"} if fault.kind == "broken_correlation" else {fault.sensor}
        assert mine[0]["top_features"][0]["feature"] in expected, fault


def test_a_sensor_that_drops_out_is_filled_then_silent_then_back(
    settings: WorkerSettings,
) -> None:
    """pump-00's pressure: null for 5 s (filled), then absent for 40 s with a 20 s bound
    (filled for 20 s, then incomplete and silent), then back. Nothing is dead-lettered."""
    settings = settings.model_copy(update={"sensors": SensorSettings(stale_after_s=20.0)})
    messages = []
    for i, (key, value) in enumerate(Fleet(n_assets=2, seed=7).records(200)):
        second, record = i // 2, json.loads(value)
        if key == b"pump-00" and 50 <= second < 55:
            record["values"]["pressure"] = None
        if key == b"pump-00" and 100 <= second < 140:
            del record["values"]["pressure"]
        messages.append((key, json.dumps(record).encode()))
    n = produce(settings, messages)
    metrics = run_until_processed(settings, n)
    sample = metrics.registry.get_sample_value
    assert sample("anomaly_values_filled_total", {"feature": "pressure"}) == 5 + 20
    assert sample("anomaly_records_total", {"outcome": "incomplete"}) == 20
    assert sample("anomaly_records_total", {"outcome": "dead_lettered"}) == 0
    assert sample("anomaly_sensors_silent") == 0
    silent = sample("anomaly_alert_events_total", {"type": "sensor_silent"})
    back = sample("anomaly_alert_events_total", {"type": "sensor_resolve"})
    assert (silent, back) == (1, 1)
    total = alert_events(metrics)
    events = [
        json.loads(e.value or b"") for e in read(settings, settings.topics.alerts, int(total))
    ]
    sensors = [e for e in events if e["type"].startswith("sensor_")]
    assert [(e["type"], e["asset_id"], e["feature"]) for e in sensors] == [
        ("sensor_silent", "pump-00", "pressure"),
        ("sensor_resolve", "pump-00", "pressure"),
    ]
    assert sensors[0]["ts"] == "2026-01-01T00:02:00Z"  # 21 s after its last report, at 99 s
    assert sensors[0]["last_reported_at"] == "2026-01-01T00:01:39Z"
    assert sensors[1]["ts"] == "2026-01-01T00:02:20Z"


def test_a_noisy_asset_is_judged_against_its_own_normal(
    settings: WorkerSettings, tmp_path: Path
) -> None:
    """One pump of four runs twice as noisy: trained with thresholds of their own (each pump
    has 1,200 held-out windows), it raises no more false alerts than the quiet ones, and a
    drift on a quiet pump is still caught. With the model's one threshold for all (the same
    stream replayed offline) the noisy pump alarms most."""
    fleet = Fleet(n_assets=4, seed=11, noisy=(3,))
    data = tmp_path / "fleet.jsonl"
    data.write_bytes(b"".join(value + b"\n" for _, value in fleet.records(6000)))
    store = tmp_path / "store"
    training = TrainingSettings(
        data={"path": data}, model={"window": 10, "epochs": 40, "patience": 5},
        clean={"enabled": False}, gate={"fraction": 0}, store={"path": store},
        log_level="WARNING",
    )  # fmt: skip
    outcome = train(training)
    manifest = outcome.manifest
    own = {asset: t.value for asset, t in manifest.asset_thresholds.items()}
    assert set(own) == {"pump-00", "pump-01", "pump-02", "pump-03"}
    assert own["pump-03"] > 1.5 * max(own[a] for a in own if a != "pump-03")

    # the same pumps' next 1,500 readings, with a drift on a quiet one
    trained, n = 6000, 7500
    fault = next(f for f in fleet.faults(n, first=6700) if f.asset_id == "pump-01")
    assert fault.kind == "drift"
    settings = settings.model_copy(update={"store": StoreSettings(path=store)})
    sent = produce(settings, itertools.islice(fleet.records(n, [fault]), 4 * trained, None))
    metrics = run_until_processed(settings, sent)
    alerts = read(settings, settings.topics.alerts, alert_events(metrics))
    events = [json.loads(e.value or b"") for e in alerts]
    opened = [e for e in events if e["type"] == "open"]
    assert all(e["threshold"] == own[e["asset_id"]] for e in opened)
    during = [e for e in opened if e["asset_id"] == fault.asset_id and fault.start_ts.isoformat()
              .replace("+00:00", "Z") <= e["started_at"] <= e["ts"]]  # fmt: skip
    assert during, "the drift on a quiet pump was missed"
    false = {f"pump-0{i}": 0 for i in range(4)}
    for e in opened:
        false[e["asset_id"]] += e not in during
    assert false["pump-03"] <= max(false[a] for a in false if a != "pump-03"), false

    # the same stream judged against the model's one threshold: the noisy pump alarms most
    artifact = ModelStore(store).load_current()
    rules, columns = manifest.rules, [FEATURES.index(f) for f in manifest.features]
    one = {}
    for i in range(4):
        rows = fleet.rows(i, n)[trained:, columns]
        flags = series_flags(artifact.detector, manifest.threshold, rows, 10, rules)
        one[f"pump-0{i}"] = int((np.diff(flags.astype(int)) == 1).sum() + flags[0])
    assert one["pump-03"] > max(one[a] for a in one if a != "pump-03") + false["pump-03"], one


def test_a_bridge_sending_values_by_exception_raises_the_alerts_of_whole_records(
    settings: WorkerSettings, broker: LocalBroker, store: Path
) -> None:
    """The same plant, sent whole to one topic and, to another, as an OPC UA or MQTT bridge
    would: one sensor's value per message, only when it changed, epoch milliseconds, fields
    named its own way. Two workers; the same alerts."""
    fleet = Fleet(3, seed=12)
    whole = quantised(fleet.records(300, fleet.faults(300, first=120)))
    bridge = settings.model_copy(update={
        "topics": WorkerTopics(**fresh(broker)[1]),
        "input": InputSettings(shape="value", asset_field="node", time_field="time",
                               sensor_field="tag"),
        "sensors": SensorSettings(stale_after_s=600),
    })  # fmt: skip
    create_topics(bridge.kafka, {bridge.topics.input: 3, bridge.topics.alerts: 1,
                                 bridge.topics.dead_letters: 1})  # fmt: skip
    alerts = []
    for run, messages in ((settings, whole), (bridge, by_exception(whole))):
        sent = produce(run, messages)
        running = Running(run)
        try:  # a message is not a record here: wait for the offsets, not the outcomes
            wait_until(partial(all_committed, run, sent), what=f"{sent} messages committed")
        finally:
            assert running.stop() == ExitCode.OK
        sample = running.metrics.registry.get_sample_value
        assert sample("anomaly_records_total", {"outcome": "dead_lettered"}) == 0
        assert sample("anomaly_scored_total", {"model": "default"}) == 900
        total = alert_events(running.metrics)
        events = [json.loads(r.value or b"") for r in read(run, run.topics.alerts, total)]
        alerts.append(sorted((e["type"], e["asset_id"], e["ts"], e.get("started_at"),
                              e.get("ended_at"), e.get("feature")) for e in events))  # fmt: skip
    assert alerts[0], "the faults raised no alert"
    assert alerts[1] == alerts[0]


def all_committed(settings: WorkerSettings, n: int) -> bool:
    t = settings.topics
    return committed_total(settings.kafka, t.group, t.input) >= n


def test_a_clean_stream_stays_within_the_calibrated_rate(
    settings: WorkerSettings, trained: Trained
) -> None:
    n = produce(settings, Fleet(n_assets=4, seed=6).records(500))
    metrics = run_until_processed(settings, n)
    scored = metrics.registry.get_sample_value("anomaly_records_total", {"outcome": "scored"})
    outliers = metrics.registry.get_sample_value("anomaly_outliers_total", {"model": "default"})
    assert scored == n
    assert outliers is not None
    target = trained.outcome.manifest.threshold.target_fpr
    # three binomial standard errors over the target for 2,000 records
    assert outliers / n <= target + 3 * (target * (1 - target) / n) ** 0.5


def test_malformed_records_are_dead_lettered_and_good_ones_scored(
    settings: WorkerSettings,
) -> None:
    settings = settings.model_copy(update={"batch": settings.batch.model_copy(
        update={"max_record_bytes": 2048})})  # fmt: skip
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, value in enumerate(MALFORMED.values()):
        messages += [(b"pump-1", good("pump-1", i)), (b"pump-1", value)]
    n = produce(settings, messages)
    metrics = run_until_processed(settings, n)
    assert metrics.registry.get_sample_value("anomaly_records_total", {"outcome": "scored"}) == len(
        MALFORMED
    )
    letters = read(settings, settings.topics.dead_letters, len(MALFORMED))
    envelopes = [json.loads(letter.value or b"") for letter in letters]
    assert [e["reason"] for e in envelopes] == list(MALFORMED)  # one partition: in order
    for envelope, (_, original) in zip(envelopes, messages[1::2], strict=True):
        assert envelope["source"]["topic"] == settings.topics.input
        assert envelope["source"]["offset"] % 2 == 1  # every other record of the partition
        if original is not None:
            assert base64.b64decode(envelope["value"]) == original
    for reason in MALFORMED:
        assert (
            metrics.registry.get_sample_value("anomaly_dead_letters_total", {"reason": reason}) == 1
        )


def test_a_stopped_worker_hands_over_without_losing_or_repeating_records(
    settings: WorkerSettings,
) -> None:
    n = produce(settings, Fleet(n_assets=6, seed=7).records(300))
    first = Worker(settings, Metrics(CollectorRegistry()), serve_http=False)
    assert first.run(max_batches=3) == ExitCode.OK  # stops mid-stream, after its commits
    done_first = int(processed(first.metrics))
    assert 0 < done_first < n
    committed = committed_total(settings.kafka, settings.topics.group, settings.topics.input)
    assert committed == done_first  # the commit is never ahead of the work
    second = run_until_processed(settings, n - done_first)
    assert processed(second) == n - done_first
    wait_until(
        lambda: committed_total(settings.kafka, settings.topics.group, settings.topics.input) == n,
        what="every offset committed",
    )


def test_a_failed_publish_exits_with_its_code_commits_nothing_and_is_redone_after_restart(
    settings: WorkerSettings,
) -> None:
    fleet = Fleet(n_assets=4, seed=5)
    n = produce(settings, fleet.records(100, fleet.faults(100, first=10)))
    doomed = local_broker.start()  # the alerts' broker: it goes away after the producer connects
    elsewhere = settings.kafka.model_copy(
        update={"bootstrap_servers": doomed.bootstrap, "flush_timeout_s": 3}
    )

    class Doomed(KafkaSink):
        def partitions(self, topic: str, timeout_s: float) -> int | None:
            return 1  # the topic check passes; the broker goes at the first publish

        def publish(self, messages: Sequence[Outbound]) -> None:
            doomed.stop()
            super().publish(messages)

    def sink(_: WorkerSettings) -> KafkaSink:
        return Doomed(settings.model_copy(update={"kafka": elsewhere}))

    # tried again for 2 s (WORKER_KAFKA__OUTAGE_TIMEOUT_S), then the worker gives up
    impatient = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"outage_timeout_s": 2})}
    )
    worker = Worker(impatient, Metrics(CollectorRegistry()), sink=sink, serve_http=False)
    assert worker.run(idle_timeout_s=30) == ExitCode.PUBLISH_FAILED
    assert committed_total(settings.kafka, settings.topics.group, settings.topics.input) == 0
    # the fault cleared (alerts reachable again), a restarted worker does the batch again
    metrics = run_until_processed(settings, n)
    assert committed_total(settings.kafka, settings.topics.group, settings.topics.input) == n
    opened = metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "open"})
    assert opened
    events = [json.loads(r.value or b"") for r in read(settings, settings.topics.alerts, 1)]
    assert events[0]["type"] in ("open", "sensor_fault")


def test_probes_metrics_and_hot_reload_of_a_running_worker(
    settings: WorkerSettings, store: Path, publish_random: Callable[[ModelStore, str], str]
) -> None:
    running = Running(settings)
    try:
        wait_until(lambda: running.worker.http is not None, what="the HTTP server")
        assert running.worker.http is not None
        base = f"http://127.0.0.1:{running.worker.http.port}"
        assert get(f"{base}/livez")[0] == 200
        n = produce(settings, Fleet(n_assets=3, seed=8).records(100))
        wait_until(lambda: processed(running.metrics) >= n)
        assert get(f"{base}/readyz") == (200, "ready\n")
        status, text = get(f"{base}/metrics")
        assert status == 200
        assert f'anomaly_records_total{{outcome="scored"}} {float(n)}' in text
        assert 'anomaly_consumer_lag_records{partition="0"' in text

        models = ModelStore(store)
        publish_random(models, "zz-new")
        wait_until(
            lambda: running.metrics.registry.get_sample_value(
                "anomaly_model_info", {"model": "default", "version": "zz-new"}
            ) == 1,
            what="the new version in service",
        )  # fmt: skip
        publish_random(models, "zz-broken")
        (Path(models.location, "versions") / "zz-broken" / WEIGHTS).write_bytes(b"not weights")
        wait_until(
            lambda: running.metrics.registry.get_sample_value(
                "anomaly_model_load_failures_total", {"model": "default"}
            ) == 1,
            what="the broken version refused",
        )  # fmt: skip
        produce(settings, Fleet(n_assets=3, seed=9).records(10))
        wait_until(lambda: processed(running.metrics) >= n + 30)
        assert running.worker.processor.model is not None
        assert running.worker.processor.model.version == "zz-new"
    finally:
        assert running.stop() == ExitCode.OK


def test_a_mixed_topic_is_scored_by_each_types_own_model(
    settings: WorkerSettings, trained: Trained, tmp_path: Path
) -> None:
    """Pumps and compressors (other sensors) on one topic, each scored by its named model and
    its alerts naming it; motors have no model and are dead-lettered; a new version of the
    compressors' model is taken up while the pumps' keeps serving."""
    root = tmp_path / "store"
    shutil.copytree(trained.root, root / "models" / "pump")
    train_compressors(root)
    settings = settings.model_copy(update={
        "store": StoreSettings(path=root, reload_interval_s=0.05),
        "models": ModelsSettings(route_field="asset_type"),
    })  # fmt: skip
    pumps, compressors = Fleet(3, seed=5), Fleet(3, seed=6, kind=COMPRESSOR)
    motor = {"asset_id": "motor-1", "asset_type": "motor", "ts": "2026-01-01T00:00:00Z",
             "values": {"rpm": 1.0}}  # fmt: skip
    running = Running(settings)
    try:
        n = produce(settings, [
            *pumps.records(300, pumps.faults(300, first=150)),
            *compressors.records(300, compressors.faults(300, first=150)),
            (b"motor-1", json.dumps(motor).encode()),
        ])  # fmt: skip
        wait_until(lambda: processed(running.metrics) >= n, what=f"{n} records processed")
        sample = running.metrics.registry.get_sample_value
        assert sample("anomaly_scored_total", {"model": "pump"}) == 900
        assert sample("anomaly_scored_total", {"model": "compressor"}) == 900
        letters = [
            json.loads(r.value or b"") for r in read(settings, settings.topics.dead_letters, 1)
        ]
        assert [(d["reason"], d["model"]) for d in letters] == [("no_model", None)]
        alerts = read(settings, settings.topics.alerts, alert_events(running.metrics))
        # each fault caught by its model: an episode, or (a stuck sensor) a sensor fault
        opened = {(e["asset_id"], e["model"]) for e in map(json.loads, (a.value or b"" for a in
                  alerts)) if e["type"] in ("open", "sensor_fault")}  # fmt: skip
        assert {f"pump-0{i}" for i in range(3)} <= {a for a, m in opened if m == "pump"}
        assert {f"compressor-0{i}" for i in range(3)} <= {a for a, m in opened if m == "compressor"}

        pump_version = sample_version(running.metrics, "pump")
        retrained = train_compressors(root, seed=1)
        wait_until(lambda: sample_version(running.metrics, "compressor") == retrained.version,
                   what="the compressors' new version in service")  # fmt: skip
        more = produce(settings, [*Fleet(3, seed=7).records(20),
                                  *Fleet(3, seed=8, kind=COMPRESSOR).records(20)])  # fmt: skip
        wait_until(lambda: processed(running.metrics) >= n + more, what="the next records")
        assert sample_version(running.metrics, "pump") == pump_version
        assert sample("anomaly_scored_total", {"model": "pump"}) == 960
        assert sample("anomaly_scored_total", {"model": "compressor"}) == 960
    finally:
        assert running.stop() == ExitCode.OK


def sample_version(metrics: Metrics, model: str) -> str | None:
    """The version of `model` the worker shows in service."""
    for family in metrics.registry.collect():
        if family.name == "anomaly_model_info":
            for s in family.samples:
                if s.labels.get("model") == model and s.value == 1:
                    return s.labels["version"]
    return None


def test_sigterm_drains_and_exits_zero_with_offsets_committed(
    settings: WorkerSettings, store: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "WORKER_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "WORKER_TOPICS__INPUT": settings.topics.input,
        "WORKER_TOPICS__ALERTS": settings.topics.alerts,
        "WORKER_TOPICS__DEAD_LETTERS": settings.topics.dead_letters,
        "WORKER_TOPICS__GROUP": settings.topics.group,
        "WORKER_STORE__PATH": str(store),
        "WORKER_HTTP__PORT": str(port),
        "WORKER_HTTP__HOST": "127.0.0.1",
    }
    n = produce(settings, Fleet(n_assets=4, seed=10).records(250))
    log = tmp_path / "worker.log"  # a file, not a pipe nobody reads until the worker exits
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    try:

        def progress() -> int:
            return committed_total(settings.kafka, settings.topics.group, settings.topics.input)

        wait_until(lambda: progress() > 0, 90, "the worker's first commit")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    logs = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in logs]
    assert any(m.startswith("SIGTERM: draining") for m in messages), messages
    assert any(m.startswith("stopping after") for m in messages), messages
    settings_line = next(m for m in messages if m.startswith("starting with settings"))
    assert "'sasl_password': None" in settings_line
    assert 0 < progress() <= n


# Rebalances for real: a second and a third worker join the group and leave it while records
# keep arriving. Partitions move; each partition is read in order by whoever holds it; every
# record is processed and committed; duplicates stay within what the membership changes allow.


class Recording(KafkaSource):
    """The worker's real source, noting the (partition, offset) of every record it hands out."""

    def __init__(self, settings: WorkerSettings, seen: list[tuple[int, int]]) -> None:
        super().__init__(settings)
        self.seen = seen

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        records = super().poll(timeout_ms, max_records)
        self.seen.extend((r.partition, r.offset) for r in records)
        return records


class Member:
    """One worker of the group, in a thread, with what it read."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.seen: list[tuple[int, int]] = []
        self.worker = Worker(settings, Metrics(CollectorRegistry()),
                             source=lambda s: Recording(s, self.seen),
                             serve_http=False)  # fmt: skip
        self.code: ExitCode | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def leave(self) -> ExitCode | None:
        self.worker.stop()
        self.thread.join(60)
        return self.code


class Stream:
    """A simulator fleet produced at a steady pace (in 50 ms ticks) until stopped."""

    def __init__(self, settings: WorkerSettings, rate: float = 300.0) -> None:
        self.settings, self.rate, self.sent = settings, rate, 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        fleet = Fleet(n_assets=12, seed=21)
        records = fleet.records(100_000)
        producer = make_producer(self.settings.kafka)
        start = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            for _ in range(due - self.sent):
                key, value = next(records)
                producer.send(self.settings.topics.input, key=key, value=value)
            self.sent = max(self.sent, due)
            self._stop.wait(0.05)  # pacing the offered load, not synchronising
        producer.flush()
        producer.close()

    def stop(self) -> int:
        self._stop.set()
        self.thread.join(60)
        return self.sent


def test_workers_joining_and_leaving_mid_stream_lose_and_reorder_nothing(
    settings: WorkerSettings,
) -> None:
    stream = Stream(settings)
    members = {"a": Member(settings)}
    try:
        wait_until(lambda: len(members["a"].seen) > 200, 60, "the first worker reads")
        members["b"] = Member(settings)
        wait_until(lambda: len(members["b"].seen) > 100, 60, "the second worker gets partitions")
        members["c"] = Member(settings)
        wait_until(lambda: len(members["c"].seen) > 100, 60, "the third worker gets partitions")
        assert members["b"].leave() == ExitCode.OK
        before = len(members["a"].seen) + len(members["c"].seen)
        wait_until(lambda: len(members["a"].seen) + len(members["c"].seen) > before + 200, 60,
                   "the others take the second worker's partitions")  # fmt: skip
        assert members["c"].leave() == ExitCode.OK
        n = stream.stop()

        def committed() -> int:
            return committed_total(settings.kafka, settings.topics.group, settings.topics.input)

        wait_until(lambda: committed() == n, 90, "every record committed by the one left")
    finally:
        stream.stop()
        for member in members.values():
            member.leave()

    by_partition: dict[int, set[int]] = defaultdict(set)
    for member in members.values():
        last: dict[int, int] = {}
        for partition, offset in member.seen:  # each holder reads a partition in order
            assert offset > last.get(partition, -1), (partition, offset)
            last[partition] = offset
            by_partition[partition].add(offset)
    assert sum(len(offsets) for offsets in by_partition.values()) == n  # every record, once+
    assert all(offsets == set(range(len(offsets))) for offsets in by_partition.values())
    read = sum(len(member.seen) for member in members.values())
    duplicates = read - n
    # At each change (b joins, c joins, b leaves, c leaves) every member already in the group
    # may have a batch in hand whose commit the rebalance refuses: its records are read again
    # by the partitions' new holders. One batch per member per change; leaving drains first.
    in_hand = 1 + 2 + 2 + 1
    assert 0 <= duplicates <= in_hand * settings.batch.size
    assert all(member.seen for member in members.values())  # partitions did move
