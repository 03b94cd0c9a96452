"""Records from producers no code here wrote, in every compression codec Kafka defines.

Two librdkafka producers write the simulator's records: `kcat` (Debian's package) to Apache
Kafka 0.9 (message format v0: gzip, snappy, lz4 with 0.9's own lz4 framing) and
confluent-kafka to Tansu (format v2: gzip, snappy, lz4, zstd). Each codec's copy of the fleet
goes under asset ids of its own into one topic, so one worker reads every codec's batches
interleaved, and each copy must raise exactly the alerts of the uncompressed one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kafka.record.default_records
import pytest
from prometheus_client import CollectorRegistry

from anomaly.kafka import check_codecs, make_producer
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import committed_total, create_topics
from tests.support.kafka import Running, alert_events, fresh, processed, read
from tests.support.models import REPO
from tests.support.waiting import wait_until
from training.kafka_range import plan_range, read_planned
from worker.errors import ExitCode
from worker.metrics import Metrics
from worker.runner import Worker
from worker.settings import WorkerSettings

N_READINGS = 300  # per pump: every fault opens and resolves within it


def copies(codecs: list[str], fleet: Fleet) -> dict[str, list[tuple[str, str]]]:
    """For each codec, the fleet's (key, value) records with asset ids prefixed by the codec."""
    faults = fleet.faults(N_READINGS)
    out: dict[str, list[tuple[str, str]]] = {}
    for codec in codecs:
        records = []
        for _, value in fleet.records(N_READINGS, faults):
            record = json.loads(value)
            record["asset_id"] = f"{codec}.{record['asset_id']}"
            records.append((record["asset_id"], json.dumps(record)))
        out[codec] = records
    return out


def settings_on(broker: LocalBroker, store: Path, partitions: int) -> WorkerSettings:
    kafka, topics = fresh(broker)
    s = WorkerSettings(
        kafka={**kafka, "flush_timeout_s": 10},
        topics=topics,
        batch={"size": 200, "max_wait_ms": 50},
        store={"path": store, "reload_interval_s": 0.05},
        http={"port": 0, "host": "127.0.0.1"},
        log_format="text",
    )
    if broker.api_version is None:  # Kafka 0.9 has no topic creation: it auto-creates them
        create_topics(
            s.kafka, {s.topics.input: partitions, s.topics.alerts: 1, s.topics.dead_letters: 1}
        )
    return s


def alerts_by_codec(settings: WorkerSettings, expected_records: int) -> dict[str, list[object]]:
    """Run one worker over the input topic until every record is processed; its alert events
    per codec, as (pump, type, started_at, ended_at, top feature names)."""
    running = Running(settings)
    try:
        wait_until(
            lambda: processed(running.metrics) >= expected_records,
            120,
            f"{expected_records} records processed",
        )
    finally:
        assert running.stop() == ExitCode.OK
    sample = running.metrics.registry.get_sample_value
    assert sample("anomaly_records_total", {"outcome": "dead_lettered"}) == 0
    assert processed(running.metrics) == expected_records  # each record once, none lost
    events = alert_events(running.metrics)
    assert events > 0
    out: dict[str, list[object]] = {}
    for message in read(settings, settings.topics.alerts, events):
        event = json.loads(message.value or b"")
        if "episode_id" not in event:  # a sensor's event (pump-02's stuck current)
            continue
        codec, pump = event["asset_id"].split(".", 1)
        features = [f["feature"] for f in event["top_features"]]
        summary = (pump, event["type"], event["started_at"], event.get("ended_at"), features)
        out.setdefault(codec, []).append(summary)
    return {codec: sorted(events, key=repr) for codec, events in out.items()}


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (make system)")
@pytest.mark.parametrize("which", ["kafka09", "kafka4"])
def test_kcat_in_every_codec_raises_the_alerts_of_uncompressed_input(
    which: str, request: pytest.FixtureRequest, store: Path
) -> None:
    """Debian's kcat (librdkafka 2.0.2) to Apache Kafka 0.9 (its old protocol: no zstd) and
    to Apache Kafka 4 (zstd too)."""
    broker: LocalBroker = request.getfixturevalue(which)
    codecs = ["none", "gzip", "snappy", "lz4"] + (["zstd"] if which == "kafka4" else [])
    old = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.9.0"]
    settings = settings_on(broker, store, 3)
    produced = copies(codecs, Fleet(n_assets=4, seed=5))
    for codec, records in produced.items():
        lines = "".join(f"{key}\t{value}\n" for key, value in records)
        command = [
            "kcat", "-P", "-b", broker.bootstrap, "-t", settings.topics.input, "-K", "\t",
            "-z", codec, *(old if which == "kafka09" else []), "-X", "linger.ms=20",
        ]  # fmt: skip
        done = subprocess.run(command, input=lines, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    by_codec = alerts_by_codec(settings, sum(map(len, produced.values())))
    assert set(by_codec) == set(codecs)
    for codec in codecs[1:]:
        assert by_codec[codec] == by_codec["none"], codec


@pytest.mark.parametrize("which", ["broker", "kafka4"])  # Tansu, Apache Kafka 4
def test_confluent_kafka_in_every_codec_raises_the_alerts_of_uncompressed_input(
    which: str, request: pytest.FixtureRequest, store: Path
) -> None:
    from confluent_kafka import Producer

    broker: LocalBroker = request.getfixturevalue(which)
    codecs = ["none", "gzip", "snappy", "lz4", "zstd"]
    settings = settings_on(broker, store, 3)
    produced = copies(codecs, Fleet(n_assets=4, seed=5))
    failures: list[object] = []
    for codec, records in produced.items():
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "compression.codec": codec,
                "linger.ms": 20,
                "enable.idempotence": True,
            }
        )
        for key, value in records:
            producer.produce(
                settings.topics.input,
                key=key,
                value=value,
                on_delivery=lambda err, _: failures.append(err) if err else None,
            )
            producer.poll(0)
        assert producer.flush(60) == 0, codec
    assert failures == []
    # the training job's range reader takes every codec too
    planned = plan_range(settings.kafka, settings.topics.input, 0, None, 1_000_000)
    read_back = sorted(r.value or b"" for r in read_planned(settings.kafka, planned))
    assert read_back == sorted(
        value.encode() for records in produced.values() for _, value in records
    )
    by_codec = alerts_by_codec(settings, sum(map(len, produced.values())))
    assert set(by_codec) == set(codecs)
    for codec in codecs[1:]:
        assert by_codec[codec] == by_codec["none"], codec


def test_a_batch_the_client_cannot_read_stops_the_worker_with_its_code_and_place(
    broker: LocalBroker, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gzip batch whose stream is cut short (its CRC is right: Tansu stores it as sent):
    the records before it are scored and committed, the worker names the batch's partition
    and offset, counts it, exits 9, and commits nothing past it."""
    settings = settings_on(broker, store, 1)
    producer = make_producer(settings.kafka, compression_type="gzip", linger_ms=20)
    good = [json.dumps(r).encode() for r in _fleet_values(40)]
    for value in good:
        producer.send(settings.topics.input, key=b"pump-00", value=value)
    producer.flush()
    encode = kafka.record.default_records.gzip_encode
    try:  # this producer only: the worker's decoder is untouched
        kafka.record.default_records.gzip_encode = lambda data: encode(data)[:-12]  # type: ignore[assignment,unused-ignore]
        for value in good[:10]:
            producer.send(settings.topics.input, key=b"pump-00", value=value)
        producer.flush()
    finally:
        kafka.record.default_records.gzip_encode = encode
    producer.close()

    metrics = Metrics(CollectorRegistry())
    with caplog.at_level(logging.ERROR, logger="worker.runner"):
        code = Worker(settings, metrics, serve_http=False).run(idle_timeout_s=120)
    assert code == ExitCode.UNREADABLE_BATCH
    assert metrics.registry.get_sample_value("anomaly_unreadable_batches_total") == 1
    assert processed(metrics) == len(good)
    assert committed_total(settings.kafka, settings.topics.group, settings.topics.input) == len(
        good
    )
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"{settings.topics.input}/0 at offset {len(good)}" in line
    assert "Traceback" not in line


def _fleet_values(n: int) -> Iterator[dict[str, object]]:
    for _, value in Fleet(n_assets=1, seed=3).records(n):
        yield json.loads(value)


def test_every_codec_reads_back_in_this_installation() -> None:
    check_codecs()


@pytest.mark.parametrize("module", ["snappy", "lz4", "xxhash", "zstandard"])
def test_a_missing_codec_library_stops_the_worker_at_start(module: str, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / f"{module}.py").write_text(f"raise ImportError('{module} hidden by the test')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)]),
        "WORKER_STORE__PATH": str(tmp_path / "no-store"),
        "WORKER_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "WORKER_LOG_FORMAT": "text",
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == ExitCode.CODEC_UNAVAILABLE, done.stderr
    codec = {"snappy": "snappy", "lz4": "lz4", "xxhash": "lz4", "zstandard": "zstd"}[module]
    assert f"cannot read batches compressed with {codec}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_codec_library_stops_the_training_job_before_reading(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "zstandard.py").write_text("raise ImportError('hidden by the test')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)]),
        "TRAINING_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "fit",
            "--source",
            "kafka",
            "--store",
            str(tmp_path / "store"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 5, done.stderr  # training's KAFKA_ERROR
    assert "cannot read batches compressed with zstd" in done.stderr
    assert "Traceback" not in done.stderr
