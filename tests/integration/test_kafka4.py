"""The worker and the training job on Apache Kafka 4 (KRaft), the broker production users run.

What Tansu (the demo's broker) and Apache Kafka 0.9 cannot show: the alert state committed
with the offsets comes back (Tansu returns it empty), the producer runs idempotent, records
carry broker timestamps, and the training job finds its time range with the broker's
offset-for-time lookup (Tansu answers offset 0 to every lookup, Kafka 0.9 has none).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.structs import TopicPartition

from anomaly.kafka import client_config, make_producer
from anomaly.records import SourceRecord
from anomaly.settings import KafkaSettings
from devtools.local_broker import LocalBroker, free_port
from devtools.simulator import Fleet
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
from tests.support.models import REPO
from tests.support.records import good, outlier
from tests.support.waiting import wait_until
from training.kafka_range import plan_range
from worker.checkpoint import Handover, decode
from worker.errors import ExitCode
from worker.kafka_io import KafkaSource, _Rebalanced
from worker.settings import AlertSettings, WorkerSettings


def test_faults_are_alerted_and_the_alert_state_rides_with_the_offsets(
    kafka4: LocalBroker, store: Path
) -> None:
    settings = settings_on(kafka4, store)
    fleet = Fleet(n_assets=4, seed=5)
    faults = fleet.faults(300, first=240)  # each to the stream's end (spikes aside)
    producer = make_producer(settings.kafka, compression_type="zstd")  # idempotent here
    assert producer.config["enable_idempotence"]
    # faults still open when the stream ends: their state is what the commit must carry
    # (of the process: a stuck sensor is instrumentation, with no episode to carry)
    records = list(fleet.records(300, [f for f in faults if f.kind not in ("spike", "stuck")]))
    for key, value in records:
        producer.send(settings.topics.input, key=key, value=value)
    producer.flush()
    producer.close()
    metrics = run_until_processed(settings, len(records))
    events = [json.loads(r.value or b"") for r in read(settings, settings.topics.alerts,
                                                       alert_events(metrics))]  # fmt: skip
    assert {e["asset_id"] for e in events if e["type"] == "open"} >= {
        f.asset_id for f in faults if f.kind not in ("spike", "stuck")
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


def test_a_starting_worker_joins_its_group_once_holding_the_input_partitions(
    kafka4: LocalBroker, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A consumer that joins before its metadata knows the input topic assigns nothing, then
    rejoins; kafka-python 3.0.12 can lose that second join when a poll times out during it
    (the worker then idles for good: about one start in ten here). The worker fetches the
    topic's partitions first (KafkaSource._know_topic), so each start joins once. Without
    that, three starts in four joined twice."""
    for _ in range(3):  # each on fresh topics and a fresh group
        settings = settings_on(kafka4, store)
        sent = produce(settings, list(Fleet(n_assets=2, seed=3).records(20, [])))
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="kafka.coordinator"):
            run_until_processed(settings, sent)
        said = [r.getMessage() for r in caplog.records]
        assert sum("Successfully joined group" in m for m in said) == 1, said
        assert not any("No partition metadata" in m for m in said), said


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


def test_a_topic_missing_at_start_is_named_and_ends_the_worker_with_its_code(
    kafka4: LocalBroker, store: Path, tmp_path: Path
) -> None:
    """Topics are not created on first use here: with the dead-letter topic missing, the
    worker says so (log, /readyz) before it reads a record, then exits 10; the client's own
    line for it, ten a second, comes out once."""
    client, topics = fresh(kafka4)
    create_topics(KafkaSettings(**client), {topics["input"]: 3, topics["alerts"]: 1})
    port = free_port()
    env = {
        **os.environ, "WORKER_KAFKA__BOOTSTRAP_SERVERS": kafka4.bootstrap,
        **{f"WORKER_TOPICS__{k.upper()}": v for k, v in topics.items()},
        "WORKER_TOPICS__WAIT_S": "6", "WORKER_STORE__PATH": str(store),
        "WORKER_HTTP__HOST": "127.0.0.1", "WORKER_HTTP__PORT": str(port),
    }  # fmt: skip
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=env,
                                  stdout=out, stderr=out)  # fmt: skip
    try:
        dlq = topics["dead_letters"]
        wanted = f"not ready: topics missing: {dlq}; no partitions\n"
        wait_until(
            lambda: get(f"http://127.0.0.1:{port}/readyz")[1] == wanted,
            30,
            "/readyz naming the missing topic",
        )
        assert worker.wait(60) == ExitCode.TOPIC_MISSING
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    said = [(e["level"], e["message"]) for e in lines]
    assert sum("not found in cluster metadata" in m for _, m in said) == 1, said
    warned = [m for level, m in said if level == "WARNING" and "topics missing" in m]
    fatal = [m for level, m in said if level == "ERROR" and m.startswith("fatal")]
    assert len(warned) == 1
    assert dlq in warned[0]
    assert topics["alerts"] not in warned[0]
    assert len(fatal) == 1
    assert dlq in fatal[0]
    assert not any(m.startswith("partitions moved") for _, m in said)  # never joined to read


def test_a_publish_tried_again_keeps_the_worker_in_its_group(
    kafka4: LocalBroker, store: Path
) -> None:
    """The dead-letter topic deleted under a running worker, then a malformed record: the
    worker tries its batch again (not ready, naming the topic) for longer than the poll
    interval, stays the group's member meanwhile, and carries on once the topic is back."""
    settings = settings_on(kafka4, store, max_poll_interval_ms=2000, flush_timeout_s=1,
                           outage_timeout_s=120)  # fmt: skip
    topics = settings.topics
    admin = KafkaAdminClient(**client_config(settings.kafka))
    running = Running(settings)
    try:
        produce(settings, [(b"pump-00", good("pump-00", i)) for i in range(50)])
        wait_until(lambda: processed(running.metrics) >= 50, what="50 records processed")
        admin.delete_topics([topics.dead_letters])
        produce(settings, [(b"pump-00", b"not json")])
        health = running.worker.health
        wait_until(lambda: any(topics.dead_letters in r for r in health.not_ready()), 60,
                   "the publish tried again, naming the dead-letter topic")  # fmt: skip
        since = time.monotonic()
        while time.monotonic() - since < 3 * 2.0:  # three poll intervals go by, still held
            assert any(topics.dead_letters in r for r in health.not_ready())
            time.sleep(0.1)
        group = admin.describe_groups([topics.group])[topics.group]
        assert group["group_state"] == "Stable"
        assert len(group["members"]) == 1
        admin.create_topics([NewTopic(topics.dead_letters, 1, 1)])
        wait_until(lambda: health.ready, 60, "ready again")
        dead = read(settings, topics.dead_letters, 1)
        assert json.loads(dead[0].value or b"")["reason"] == "not_json"
    finally:
        admin.close()
        assert running.stop() == ExitCode.OK
    assert committed_total(settings.kafka, topics.group, topics.input) == 51
    released = running.metrics.registry.get_sample_value(
        "anomaly_checkpoint_assets_total", {"event": "released"}
    )
    assert released == 0.0  # the partitions never left this worker (the series exists)


def test_records_of_an_aborted_transaction_are_never_scored(
    kafka4: LocalBroker, store: Path
) -> None:
    """An upstream job writing exactly once (Flink, Kafka Streams, Connect) commits some
    transactions and aborts one: the worker (isolation read_committed) scores
    every committed record and none of the aborted batch, whose outliers would alert."""
    settings = settings_on(kafka4, store, isolation_level="read_committed")
    settings = settings.model_copy(update={"alerts": AlertSettings(open_after=1, onset_step=0)})
    topic = settings.topics.input
    producer = make_producer(settings.kafka, transactional_id=f"upstream-{uuid.uuid4().hex[:6]}")
    producer.init_transactions()
    committed, ends = 0, dict.fromkeys(range(3), 0)  # past each partition's last good record
    for batch, abort in ((0, False), (1, True), (2, False)):  # committed ts go on rising
        producer.begin_transaction()
        sent = []
        for i in range(40):
            asset = "ghost" if abort else f"pump-0{i % 4}"
            value = outlier(asset, i) if abort else good(asset, 40 * batch + i)
            sent.append(producer.send(topic, key=asset.encode(), value=value))
        if abort:  # written to the log first (an abort drops what is still unsent)
            producer.flush()
            producer.abort_transaction()
            continue
        producer.commit_transaction()
        committed += len(sent)
        for stored in (future.get(timeout=30) for future in sent):
            ends[stored.partition] = max(ends[stored.partition], stored.offset + 1)
    producer.close()
    running = Running(settings)
    try:
        wait_until(lambda: processed(running.metrics) >= committed, what="committed records")
        wait_until(lambda: committed_offsets(settings) == ends, what="offsets past them")
    finally:
        assert running.stop() == ExitCode.OK
    assert processed(running.metrics) == committed  # the aborted 40 were never read
    clean = alert_events(running.metrics)
    assert "ghost" not in opened(read(settings, settings.topics.alerts, clean) if clean else [])
    # read uncommitted (another group, the same alerts topic), the aborted outliers alert
    kafka = settings.kafka.model_copy(update={"isolation_level": "read_uncommitted"})
    topics = settings.topics.model_copy(update={"group": f"{settings.topics.group}-dirty"})
    dirty = run_until_processed(settings.model_copy(update={"kafka": kafka, "topics": topics}),
                                committed + 40)  # fmt: skip
    events = read(settings, settings.topics.alerts, clean + alert_events(dirty))
    assert "ghost" in opened(events[clean:])


def opened(events: list[SourceRecord]) -> set[str]:
    """The assets with an `open` among `events` (records of the alerts topic)."""
    decoded = (json.loads(r.value or b"") for r in events)
    return {e["asset_id"] for e in decoded if e["type"] == "open"}


def committed_offsets(settings: WorkerSettings) -> dict[int, int]:
    consumer = KafkaConsumer(**client_config(settings.kafka), group_id=settings.topics.group)
    try:
        topic = settings.topics.input
        return {p: consumer.committed(TopicPartition(topic, p)) or 0
                for p in sorted(consumer.partitions_for_topic(topic))}  # fmt: skip
    finally:
        consumer.close()


@pytest.mark.parametrize("which", ["broker", "kafka4"])  # Tansu, Apache Kafka 4
def test_the_lag_comes_from_the_fetch_and_is_true_on_tansu_too(
    which: str, request: pytest.FixtureRequest, store: Path
) -> None:
    """Tansu answers an end-offset query with the start of the partition's last batch (1
    after one batch of 1,000), so a lag computed from it is too low; the high-water mark in
    its fetch answers is true. The worker's lag comes from the fetch: 0 once all is read,
    on both brokers, after batches of many records, and never negative."""
    broker: LocalBroker = request.getfixturevalue(which)
    settings = settings_on(broker, store)
    fleet = Fleet(n_assets=6, seed=3)
    n = produce(settings, fleet.records(100))  # one flush: batches of many records
    metrics = run_until_processed(settings, n)
    topic = settings.topics.input
    lags = [
        metrics.registry.get_sample_value(
            "anomaly_consumer_lag_records", {"topic": topic, "partition": str(p)}
        )
        for p in range(3)
    ]
    assert lags == [0.0, 0.0, 0.0]
    if which == "broker":  # what an end-offset query would have made of it
        assert sum(end_offsets(settings.kafka, topic).values()) < n


def test_a_partition_kept_through_a_rebalance_is_read_on_where_the_worker_was(
    kafka4: LocalBroker, tmp_path: Path
) -> None:
    """A rebalance that leaves a partition with this worker keeps its position: what the
    worker read and has not committed (a batch whose commit the rebalance refused) is in
    its state and is not read again; the handover says nothing of the kept partitions, whose
    state stays current. Every record once, in order."""
    settings = settings_on(kafka4, tmp_path)
    settings = settings.model_copy(update={"batch": settings.batch.model_copy(update={"size": 10})})
    more = settings.topics.input + "-more"
    create_topics(settings.kafka, {more: 1})
    produce(settings, [(b"pump-1", good("pump-1", i)) for i in range(60)])  # one partition
    source = KafkaSource(settings)
    seen: list[int] = []
    moves: list[Handover] = []

    def read_some(n: int) -> None:
        target = len(seen) + n

        def more_read() -> bool:
            seen.extend(r.offset for r in source.poll(100, 10))
            moved = source.handover()
            if moved is not None:
                moves.append(moved)
            return len(seen) >= target

        wait_until(more_read, 60, f"{target} records read")

    try:
        read_some(10)
        partition = next(tp for tp in source.consumer.assignment()
                         if source.consumer.position(tp) == 10)  # fmt: skip
        source.commit({(partition.topic, partition.partition): 10}, {})
        source.settle()  # answered, as the worker's next poll would have it
        read_some(10)  # read, not committed
        # the group rebalances (this member subscribes to one more topic), the input's
        # partitions stay with it
        source.consumer.subscribe([settings.topics.input, more], listener=_Rebalanced(source))
        read_some(40)
    finally:
        source.close()
    assert seen == list(range(60))  # each record once, in order
    assert moves[-1].gained.keys() == {(more, 0)}
    assert not moves[-1].lost  # the input's partitions were kept: their state is current
