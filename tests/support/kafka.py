"""The worker on a real broker, for the integration tests: produce, run, read back."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from anomaly.kafka import make_producer
from anomaly.records import SourceRecord
from devtools.local_broker import LocalBroker
from devtools.topics import TopicReader, create_topics
from tests.support.waiting import wait_until
from worker.errors import ExitCode
from worker.metrics import EVENT_TYPES, OUTCOMES, Metrics
from worker.runner import Worker
from worker.settings import WorkerSettings


def produce(settings: WorkerSettings, messages: Iterable[tuple[bytes | None, bytes | None]]) -> int:
    producer = make_producer(settings.kafka)
    n = 0
    for key, value in messages:
        producer.send(settings.topics.input, key=key, value=value)
        n += 1
    producer.flush()
    producer.close()
    return n


def alert_events(metrics: Metrics) -> int:
    """Every event the worker published to the alerts topic, of every type."""
    sample = metrics.registry.get_sample_value
    return int(sum(sample("anomaly_alert_events_total", {"type": t}) or 0.0 for t in EVENT_TYPES))


def processed(metrics: Metrics) -> float:
    return sum(
        metrics.registry.get_sample_value("anomaly_records_total", {"outcome": o}) or 0
        for o in OUTCOMES
    )


class Running:
    """A worker running in a thread until stopped."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.worker = Worker(settings, self.metrics)
        self.code: ExitCode | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.worker.run()

    def stop(self) -> ExitCode | None:
        self.worker.stop()
        self.thread.join(60)
        return self.code


def run_until_processed(settings: WorkerSettings, n: int) -> Metrics:
    running = Running(settings)
    try:
        wait_until(lambda: processed(running.metrics) >= n, what=f"{n} records processed")
    finally:
        assert running.stop() == ExitCode.OK
    return running.metrics


def read(settings: WorkerSettings, topic: str, n: int) -> list[SourceRecord]:
    """The first n records of `topic`, waiting for them with a deadline."""
    reader = TopicReader(settings.kafka, topic)
    out: list[SourceRecord] = []

    def enough() -> bool:
        out.extend(reader.poll(200))
        return len(out) >= n

    try:
        wait_until(enough, 30, f"{n} records on {topic}")
    finally:
        reader.close()
    return out


def settings_on(broker: LocalBroker, store: str | Path, **kafka: object) -> WorkerSettings:
    """A worker's settings on fresh topics and a fresh group of `broker` (the topics created:
    3 input partitions), the model store `store`; `kafka`: more client settings."""
    client, topics = fresh(broker)
    s = WorkerSettings(
        kafka={**client, **kafka}, topics=topics, batch={"size": 200, "max_wait_ms": 50},
        store={"path": store, "reload_interval_s": 0.05},
        http={"port": 0, "host": "127.0.0.1"}, log_format="text",
    )  # fmt: skip
    create_topics(s.kafka, {s.topics.input: 3, s.topics.alerts: 1, s.topics.dead_letters: 1})
    return s


def fresh(broker: LocalBroker) -> tuple[dict[str, object], dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    kafka = {"bootstrap_servers": broker.bootstrap, "session_timeout_ms": 6000,
             "api_version": broker.api_version}  # fmt: skip
    topics = {"input": f"in-{run}", "alerts": f"alerts-{run}", "dead_letters": f"dlq-{run}",
              "calendar": f"calendar-{run}", "group": f"group-{run}"}  # fmt: skip
    return kafka, topics


def published_events(
    settings: WorkerSettings,
    stream: Iterable[tuple[bytes, bytes]],
    timeout_s: float = 60,
    after: int = 0,
) -> list[dict[str, Any]]:
    """Run a worker over `stream` until it is scored (its group goes on where the last one
    stopped, alert state included); the alert events it published (every type), the alerts
    topic holding `after` events before them (an earlier run's)."""
    running = Running(settings)
    try:
        sent = produce(settings, stream)
        wait_until(lambda: processed(running.metrics) >= sent, timeout_s, "the stream scored")
        events = alert_events(running.metrics)
    finally:
        running.stop()
    held = read(settings, settings.topics.alerts, after + int(events))
    return [json.loads(r.value or b"") for r in held[after : after + int(events)]]
