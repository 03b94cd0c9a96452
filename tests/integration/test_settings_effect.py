"""Settings of the README's tables that no other test shows at work, each on Apache Kafka 4
(the broker production users run): where a new group starts, the client id, the room for
the alert state committed with the offsets, and the most records a training run reads.
Every documented setting is set at least once in tests/unit/test_settings_table.py; the
effects that need a broker are here."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.structs import TopicPartition

from anomaly.kafka import client_config, make_consumer, make_producer
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet, timestamp
from devtools.topics import committed_total, create_topics
from tests.support.kafka import Running, fresh, processed, produce, run_until_processed, settings_on
from tests.support.records import good, outlier
from tests.support.waiting import wait_until
from training.settings import TrainingSettings
from training.topic import read_topic
from worker.settings import AlertSettings, WorkerSettings


def test_a_new_group_set_to_latest_skips_the_records_already_there(
    kafka4: LocalBroker, store: Path
) -> None:
    """WORKER_KAFKA__AUTO_OFFSET_RESET=latest: a group with no commit starts at the end, so
    the malformed records already on the topic are never read (with `earliest`, the default,
    each would be dead-lettered); what arrives after it joined is. Its members carry
    WORKER_KAFKA__CLIENT_ID."""
    settings = settings_on(kafka4, store, auto_offset_reset="latest", client_id="plant-7-worker")
    produce(settings, [(f"pump-0{i % 4}".encode(), b"{oops") for i in range(40)])
    running = Running(settings)
    producer = make_producer(settings.kafka)
    sent = 0

    def read_something() -> bool:  # one more good record at each look, until one is read
        nonlocal sent
        producer.send(settings.topics.input, key=b"pump-00", value=good("pump-00", sent))
        producer.flush()
        sent += 1
        return processed(running.metrics) > 0

    admin = KafkaAdminClient(**client_config(settings.kafka))
    try:
        wait_until(lambda: running.worker.health.partitions_assigned, 60, "partitions assigned")
        wait_until(read_something, 60, "a record sent after the group joined, read")
        group = admin.describe_groups([settings.topics.group])[settings.topics.group]
    finally:
        admin.close()
        producer.close()
        running.stop()
    sample = running.metrics.registry.get_sample_value
    assert not sample("anomaly_records_total", {"outcome": "dead_lettered"})
    assert 0 < processed(running.metrics) <= sent
    assert [member["client_id"] for member in group["members"]] == ["plant-7-worker"]


def test_alert_state_longer_than_the_broker_takes_is_dropped_and_the_offsets_commit(
    kafka4: LocalBroker, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """WORKER_KAFKA__COMMIT_METADATA_MAX_BYTES above the broker's offset.metadata.max.bytes
    (Kafka's default, 4,096 bytes), 2,000 assets each with an open episode: the broker refuses
    the alert state committed with the offsets; the worker says so once, naming the setting,
    commits every offset without it from then on, and counts the assets left unsaved."""
    settings = settings_on(kafka4, store, commit_metadata_max_bytes=65_536)
    settings = settings.model_copy(update={"alerts": AlertSettings(open_after=1, onset_step=0)})
    assets = [f"pump-{i:04d}" for i in range(2000)]
    n = produce(settings, [(a.encode(), outlier(a, 0)) for a in assets])
    with caplog.at_level(logging.ERROR, logger="worker.kafka_io"):
        metrics = run_until_processed(settings, n)
    opened = metrics.registry.get_sample_value("anomaly_alert_events_total", {"type": "open"})
    assert opened == len(assets)  # every asset had state to save
    t = settings.topics
    assert committed_total(settings.kafka, t.group, t.input) == n
    assert set(committed_metadata(settings).values()) == {""}  # no partition's state kept
    # each asset counted as unsaved at least once (with the batch it was first seen in)
    unsaved = metrics.registry.get_sample_value(
        "anomaly_checkpoint_assets_total", {"event": "unsaved"}
    )
    assert unsaved is not None
    assert unsaved >= len(assets)
    [refused] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "refuses the alert state saved with the offsets as too long" in refused
    assert "WORKER_KAFKA__COMMIT_METADATA_MAX_BYTES" in refused


def test_a_training_run_reads_at_most_max_rows_the_latest(kafka4: LocalBroker) -> None:
    """TRAINING_DATA__MAX_ROWS caps the records read from the topic, keeping the latest."""
    client, topics = fresh(kafka4)
    data = {"source": "kafka", "since": "1h", "max_rows": 30}
    settings = TrainingSettings(kafka=client, topics={"input": topics["input"]}, data=data)
    create_topics(settings.kafka, {topics["input"]: 1})
    records = list(Fleet(n_assets=1, seed=6).records(100))
    producer = make_producer(settings.kafka)
    for key, value in records:
        producer.send(topics["input"], key=key, value=value)
    producer.flush()
    producer.close()
    history, summary = read_topic(settings, None, datetime.now(UTC))
    assert summary.read == 30
    [series] = history.series
    assert series.ts.tolist() == [timestamp(t).timestamp() for t in range(70, 100)]


def committed_metadata(settings: WorkerSettings) -> dict[int, str]:
    """The text committed with each partition's offset, by the worker's group."""
    consumer = make_consumer(settings.kafka, settings.topics.group)
    try:
        topic = settings.topics.input
        out = {}
        for p in sorted(consumer.partitions_for_topic(topic) or ()):
            committed = consumer.committed(TopicPartition(topic, p), metadata=True)
            if committed is not None:
                out[p] = committed.metadata
        return out
    finally:
        consumer.close(autocommit=False)
