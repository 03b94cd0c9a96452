"""The worker and the training job on Apache Kafka 4 (KRaft), the broker production users run.

What Tansu (the demo's broker) and Apache Kafka 0.9 cannot show: the alert state committed
with the offsets comes back (Tansu returns it empty), the producer runs idempotent, records
carry broker timestamps, and the training job finds its time range with the broker's
offset-for-time lookup (Tansu answers offset 0 to every lookup, Kafka 0.9 has none).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from anomaly.kafka import client_config, make_producer
from anomaly.settings import KafkaSettings
from devtools.local_broker import LocalBroker
from devtools.simulator import Fleet
from devtools.topics import create_topics
from tests.support.kafka import read, run_until_processed, settings_on
from training.kafka_range import plan_range
from worker.checkpoint import decode


def test_faults_are_alerted_and_the_alert_state_rides_with_the_offsets(
    kafka4: LocalBroker, store: Path
) -> None:
    settings = settings_on(kafka4, store)
    fleet = Fleet(n_assets=4, seed=5)
    faults = fleet.faults(300, first=240)  # each to the stream's end (spikes aside)
    producer = make_producer(settings.kafka, compression_type="zstd")  # idempotent here
    assert producer.config["enable_idempotence"]
    # faults still open when the stream ends: their state is what the commit must carry
    records = list(fleet.records(300, [f for f in faults if f.kind != "spike"]))
    for key, value in records:
        producer.send(settings.topics.input, key=key, value=value)
    producer.flush()
    producer.close()
    metrics = run_until_processed(settings, len(records))
    sample = metrics.registry.get_sample_value
    opens = sample("anomaly_alert_events_total", {"type": "open"}) or 0
    resolves = sample("anomaly_alert_events_total", {"type": "resolve"}) or 0
    events = [json.loads(r.value or b"") for r in read(settings, settings.topics.alerts,
                                                       int(opens + resolves))]  # fmt: skip
    assert {e["asset_id"] for e in events if e["type"] == "open"} >= {
        f.asset_id for f in faults if f.kind != "spike"
    }
    consumer = KafkaConsumer(**client_config(settings.kafka), group_id=settings.topics.group)
    try:
        saved = {}
        for p in range(3):
            tp = TopicPartition(settings.topics.input, p)
            committed = consumer.committed(tp, metadata=True)  # None: no record went there
            if committed is not None and committed.metadata:
                saved.update(decode(committed.metadata))
    finally:
        consumer.close()
    # the episodes still open at the end are in the state committed with the offsets
    still_open = {e["asset_id"] for e in events if e["type"] == "open"} - {
        e["asset_id"] for e in events if e["type"] == "resolve"
    }
    assert still_open
    assert still_open <= {asset for asset, state in saved.items() if state.episode is not None}


def test_the_training_range_is_found_by_the_brokers_time_lookup(kafka4: LocalBroker) -> None:
    """Records stamped when produced: a range that starts after the first 100 were produced
    begins, on each partition, where the next 60 begin."""
    kafka = KafkaSettings(bootstrap_servers=kafka4.bootstrap)
    topic = f"range-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, {topic: 2})
    producer = make_producer(kafka)
    for i in range(100):
        producer.send(topic, key=str(i % 2).encode(), value=b"before")
    producer.flush()
    start_ms = now_ms() + 1  # every record above is stamped before it
    while now_ms() < start_ms:  # until the clock reaches it: the next records stamp later
        pass
    after = end_offsets(kafka, topic)
    for i in range(60):
        producer.send(topic, key=str(i % 2).encode(), value=b"in range")
    producer.flush()
    producer.close()
    planned = plan_range(kafka, topic, start_ms, None, 1_000_000)
    assert planned.by_broker_time
    assert planned.starts == after
    assert planned.size == 60


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def end_offsets(kafka: KafkaSettings, topic: str) -> dict[int, int]:
    """Each partition's end offset now."""
    consumer = KafkaConsumer(**client_config(kafka))
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: end for tp, end in consumer.end_offsets(parts).items()}
    finally:
        consumer.close()
