"""The worker's loop with in-memory Kafka: commit only after publishing, stop conditions,
hot reload, and the metrics it leaves behind."""

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from anomaly.model import ModelStore
from anomaly.model.artifact import GRAPH
from anomaly.settings import KafkaSettings
from devtools.simulator import Fleet
from tests.support.fakes import FakeRecord, FakeSink, FakeSource, as_records
from tests.support.models import edit_manifest, replace_graph
from tests.support.waiting import wait_until
from worker.errors import BrokerUnavailableError, ExitCode, InputUnreadableError
from worker.health import Health
from worker.logs import Repeats
from worker.metrics import Metrics
from worker.outbound import Outbound
from worker.runner import Worker
from worker.settings import WorkerSettings


def settings(store: Path) -> WorkerSettings:
    return WorkerSettings(
        topics={"input": "in", "alerts": "alerts", "dead_letters": "dlq"},
        batch={"size": 100, "max_wait_ms": 10},
        store={"path": store, "reload_interval_s": 0.01},
    )


def worker_with(
    store: Path, source: FakeSource, sink: FakeSink, outage_timeout_s: float = 0.5
) -> tuple[Worker, Metrics]:
    metrics = Metrics(CollectorRegistry())
    configured = settings(store).model_copy(
        update={"kafka": KafkaSettings(outage_timeout_s=outage_timeout_s)}
    )
    worker = Worker(configured, metrics, lambda s: source, lambda s: sink, serve_http=False)
    return worker, metrics


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def stream(n: int = 200) -> FakeSource:
    fleet = Fleet(n_assets=4, seed=5)
    return FakeSource(as_records(fleet.records(n, fleet.faults(n))))


def test_runs_until_idle_publishing_then_committing_everything(store: Path) -> None:
    source, sink = stream(), FakeSink()
    worker, metrics = worker_with(store, source, sink)
    assert worker.run(idle_timeout_s=0.2) == ExitCode.OK
    ends: dict[tuple[str, int], int] = {}
    for r in source.records:
        ends[(r.topic, r.partition)] = r.offset + 1
    assert source.committed == ends
    assert source.closed
    assert sink.closed
    events = [json.loads(m.value) for m in sink.messages]
    opened = [e for e in events if e["type"] == "open"]
    # pump-02's fault is a stuck sensor: an instrumentation event, no episode
    assert {e["asset_id"] for e in opened} == {"pump-00", "pump-01", "pump-03"}
    broken = [(e["asset_id"], e["fault"]) for e in events if e["type"] == "sensor_fault"]
    assert broken == [("pump-02", "stuck")]
    labels = {"asset_id": "pump-02", "feature": "current", "fault": "stuck", "model": "default"}
    assert metrics.registry.get_sample_value("anomaly_sensor_fault_open", labels) is None
    assert sample(metrics, "anomaly_records_total", outcome="scored") == 800
    assert sample(metrics, "anomaly_alert_events_total", type="open") == len(opened)
    assert sample(metrics, "anomaly_batch_records_count") == 8
    assert sample(metrics, "anomaly_stage_seconds_count", stage="score") == 8
    assert sample(metrics, "anomaly_assets_tracked") == 4
    last_event: dict[str, str] = {}
    for message in sink.messages:
        event = json.loads(message.value)
        if "type" in event:
            last_event[event["asset_id"]] = event["type"]
    still_open = {asset for asset, kind in last_event.items() if kind == "open"}
    shown = {
        s.labels["asset_id"]
        for family in metrics.registry.collect()
        if family.name == "anomaly_episode_open"
        for s in family.samples
    }
    assert shown == still_open  # one series per open episode, removed on resolve
    assert still_open  # the stream ends inside some episodes: the check above is not vacuous
    version = ModelStore(store).current_version()
    assert version is not None
    assert sample(metrics, "anomaly_model_info", model="default", version=version) == 1


def test_max_batches_stops_after_committing_that_many(store: Path) -> None:
    source = stream()
    worker, _ = worker_with(store, source, FakeSink())
    assert worker.run(max_batches=2) == ExitCode.OK
    assert sum(source.committed.values()) == 200


def test_the_models_score_with_the_configured_number_of_threads(store: Path) -> None:
    source = FakeSource(stream().records)
    for threads in (2, 1):
        worker = Worker(settings(store).model_copy(update={"score_threads": threads}),
                        Metrics(CollectorRegistry()), lambda s: source, lambda s: FakeSink(),
                        serve_http=False)  # fmt: skip
        assert worker.run(max_batches=1) == ExitCode.OK
        assert worker.processor.model is not None
        assert worker.processor.model.detector.graph.threads == threads


def test_each_commit_is_answered_during_the_next_poll_before_its_batch_is_processed(
    store: Path,
) -> None:
    steps: list[str] = []

    class Logged(FakeSource):
        def poll(self, timeout_ms: int, max_records: int) -> Sequence[FakeRecord]:
            steps.append("poll")
            return super().poll(timeout_ms, max_records)

        def commit(
            self, offsets: Mapping[tuple[str, int], int], states: Mapping[tuple[str, int], str]
        ) -> None:
            steps.append("commit sent")
            super().commit(offsets, states)

        def settle(self) -> None:
            if self._sent is not None:
                steps.append("commit answered")
            super().settle()

    class Published(FakeSink):
        def publish(self, messages: Sequence[Outbound]) -> None:
            steps.append("published")
            super().publish(messages)

    source = Logged(stream().records)
    worker, _ = worker_with(store, source, Published())
    assert worker.run(max_batches=3) == ExitCode.OK
    batch = ["published", "commit sent"]
    answered_in_the_next = ["poll", "commit answered"]
    # each batch processed once the commit before it is answered; the last one answered
    # before the worker stops
    assert steps == ["poll", *(batch + answered_in_the_next) * 2, *batch, "commit answered"]
    assert sum(source.committed.values()) == 300


def test_the_batch_before_an_unreadable_one_is_committed_before_the_worker_exits(
    store: Path,
) -> None:
    class Cut(FakeSource):
        def poll(self, timeout_ms: int, max_records: int) -> Sequence[FakeRecord]:
            if self._position:
                raise InputUnreadableError("cannot read the batch of in/0 at offset 100")
            return super().poll(timeout_ms, max_records)

    source = Cut(stream().records)
    worker, _ = worker_with(store, source, FakeSink())
    assert worker.run(idle_timeout_s=1) == ExitCode.UNREADABLE_BATCH
    assert sum(source.committed.values()) == 100  # the first batch's commit was answered


def test_a_commit_not_answered_is_tried_again_in_the_group_and_goes_through(store: Path) -> None:
    undisturbed = stream()
    assert worker_with(store, undisturbed, FakeSink())[0].run(idle_timeout_s=1) == ExitCode.OK
    source = stream()
    source.settle_failures = 3
    worker, _ = worker_with(store, source, FakeSink(), outage_timeout_s=30)
    assert worker.run(idle_timeout_s=1) == ExitCode.OK
    assert source.kept_alive == 3  # a keep-alive poll after each failure: still a member
    assert source.committed == undisturbed.committed


def test_a_failed_publish_exits_with_its_code_and_commits_nothing(store: Path) -> None:
    source = stream()
    worker, _ = worker_with(store, source, FakeSink(fail=True))
    assert worker.run(idle_timeout_s=1) == ExitCode.PUBLISH_FAILED
    assert source.committed == {}
    assert source.closed


def test_publishing_is_tried_again_while_the_brokers_are_away_not_ready_and_in_the_group(
    store: Path,
) -> None:
    reference, undisturbed = FakeSink(), stream()
    assert worker_with(store, undisturbed, reference)[0].run(idle_timeout_s=1) == ExitCode.OK
    assert any(m.topic == "alerts" for m in reference.messages)

    source, sink = stream(), Watched(failures=3)
    worker, _ = worker_with(store, source, sink, outage_timeout_s=30)
    sink.health = worker.health
    assert worker.run(idle_timeout_s=1) == ExitCode.OK
    assert sink.readiness[1:4] == [False, False, False]  # while it was tried again
    assert sink.readiness[0]
    assert sink.readiness[4]  # ready again once it went through
    assert source.kept_alive == 3  # a keep-alive poll after each failure: still a member
    assert undated(sink.messages) == undated(reference.messages)  # each once, in order
    assert source.committed == undisturbed.committed


def undated(messages: list[Outbound]) -> list[tuple[str, bytes | None, dict[str, object]]]:
    """The messages without the time they were made."""
    out = []
    for m in messages:
        body = json.loads(m.value)
        body.pop("detected_at", None)
        body.pop("dead_lettered_at", None)
        out.append((m.topic, m.key, body))
    return out


@dataclass
class Watched(FakeSink):
    """Notes whether the worker said it was ready at each attempt to publish."""

    health: Health | None = None
    readiness: list[bool] = field(default_factory=list)

    def publish(self, messages: Sequence[Outbound]) -> None:
        assert self.health is not None
        self.readiness.append(self.health.ready)
        super().publish(messages)


def test_readiness_names_each_reason_the_worker_cannot_serve() -> None:
    source, health = stream(), Health(liveness_timeout_s=60)
    assert health.not_ready() == ["no model", "no partitions"]
    health.model_loaded = health.partitions_assigned = True
    health.brokers_reachable = source.connected
    assert health.ready
    source.reachable = False
    assert health.not_ready() == ["no brokers"]
    source.reachable, health.retrying = True, "publishing failed, trying again: no ack"
    assert health.not_ready() == ["publishing failed, trying again: no ack"]
    health.retrying, health.topics_missing = None, ("dlq", "alerts")
    assert health.not_ready() == ["topics missing: dlq, alerts"]


def test_missing_topics_keep_it_unready_then_exit_with_their_code_naming_them(
    store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, sink = stream(), FakeSink(missing={"dlq", "alerts"})
    worker, _ = worker_with(store, source, sink)
    worker.settings = worker.settings.model_copy(
        update={"topics": worker.settings.topics.model_copy(update={"wait_s": 1.5})}
    )
    reasons: list[list[str]] = []
    worker.health.beat = lambda: reasons.append(worker.health.not_ready())  # type: ignore[method-assign]
    assert worker.run(idle_timeout_s=30) == ExitCode.TOPIC_MISSING
    assert ["topics missing: alerts, dlq", "no partitions"] in reasons
    assert source.committed == {}
    assert sink.messages == []
    waiting = [r for r in caplog.records if "topics missing" in r.getMessage()]
    assert len(waiting) == 2  # once when found missing, once when giving up
    assert "alerts, dlq" in waiting[-1].getMessage()


def test_a_topic_created_while_it_waits_is_taken_up(store: Path) -> None:
    source, sink = stream(), FakeSink(missing={"dlq"})
    worker, _ = worker_with(store, source, sink)
    thread = threading.Thread(target=worker.run, kwargs={"idle_timeout_s": 0.3})
    thread.start()
    try:
        wait_until(lambda: worker.health.topics_missing == ("dlq",), what="dlq missing")
        sink.missing.clear()
    finally:
        thread.join(30)
    assert source.committed  # it went on to read and commit
    assert worker.health.topics_missing == ()


def test_a_failed_commit_exits_with_its_code(store: Path) -> None:
    source = stream()
    source.fail_commit = True
    worker, _ = worker_with(store, source, FakeSink())
    assert worker.run(idle_timeout_s=1) == ExitCode.COMMIT_FAILED


def test_without_a_model_it_waits_not_ready_then_serves_the_first_published(
    tmp_path: Path, store: Path
) -> None:
    empty = tmp_path / "empty"
    source = stream()
    worker, metrics = worker_with(empty, source, FakeSink())
    thread = threading.Thread(target=worker.run, kwargs={"idle_timeout_s": 30})
    thread.start()
    try:
        wait_until(lambda: worker.health.last_beat > 0)
        assert not worker.health.ready
        assert source.committed == {}  # nothing consumed without a model
        # the training job publishes: whole, in one rename, as ModelStore does (a copy that the
        # watcher saw half-made would be refused, rightly, and not tried again)
        shutil.copytree(store, tmp_path / "staging")
        (tmp_path / "staging").rename(empty)
        wait_until(lambda: sum(source.committed.values()) == len(source.records))
        assert worker.health.ready
    finally:
        worker.stop()
        thread.join(10)
    assert sample(metrics, "anomaly_model_loads_total", model="default") == 1


def test_new_versions_are_swapped_in_and_a_corrupt_one_is_refused(
    store: Path, publish_random: Callable[[ModelStore, str], str]
) -> None:
    models = ModelStore(store)
    first = models.current_version()
    sources = [stream() for _ in range(4)]  # each run() reads a stream of its own
    metrics = Metrics(CollectorRegistry())
    worker = Worker(
        settings(store), metrics, lambda s: sources.pop(0), lambda s: FakeSink(), serve_http=False
    )
    # Each run ends after 0.3 s without records: far longer than the 0.01 s reload interval,
    # so the watcher has looked at the store whatever the timing.
    assert worker.run(idle_timeout_s=0.3) == ExitCode.OK
    assert worker.processor.model is not None
    assert worker.processor.model.version == first

    publish_random(models, "zz-second")  # same features, window 2
    assert worker.run(idle_timeout_s=0.3) == ExitCode.OK
    assert worker.processor.model.version == "zz-second"
    assert sample(metrics, "anomaly_model_info", model="default", version="zz-second") == 1
    assert (
        metrics.registry.get_sample_value(
            "anomaly_model_info", {"model": "default", "version": str(first)}
        )
        is None
    )

    publish_random(models, "zz-third")
    (Path(models.location, "versions") / "zz-third" / GRAPH).write_bytes(b"truncated")
    assert worker.run(idle_timeout_s=0.3) == ExitCode.OK
    assert worker.processor.model.version == "zz-second"  # the old one keeps serving
    assert sample(metrics, "anomaly_model_load_failures_total", model="default") == 1
    assert worker.run(idle_timeout_s=0.3) == ExitCode.OK
    assert (
        sample(metrics, "anomaly_model_load_failures_total", model="default") == 1
    )  # refused once, not per batch


def _truncate(d: Path) -> None:
    os.truncate(d / GRAPH, (d / GRAPH).stat().st_size // 2)


def _lie_about_features(d: Path) -> None:
    edit_manifest(d, lambda m: m.update(features=["extra", *m["features"]]))


def _lie_about_shapes(d: Path) -> None:
    edit_manifest(d, lambda m: m["architecture"].update(window=5))


def _forge_graph(d: Path) -> None:
    replace_graph(d, b"not an ONNX graph")


@pytest.mark.parametrize("damage", [_truncate, _lie_about_features, _lie_about_shapes,
                                    _forge_graph, None])  # fmt: skip
def test_a_bad_model_is_refused_with_a_metric_while_the_previous_one_serves(
    store: Path, publish_random: Callable[[ModelStore, str], str],
    damage: Callable[[Path], None] | None,
) -> None:  # fmt: skip
    """A truncated graph, a manifest lying about features or shapes, bytes posing as the
    graph (its checksum agreeing), and (None) a pointer to a version that does not exist."""
    models = ModelStore(store)
    first = models.current_version()
    metrics = Metrics(CollectorRegistry())
    worker = Worker(settings(store), metrics, lambda s: stream(), lambda s: FakeSink(),
                    serve_http=False)  # fmt: skip
    assert worker.run(idle_timeout_s=0.3) == ExitCode.OK
    if damage is None:
        Path(models.location, "current").write_text("zz-gone\n")
    else:
        publish_random(models, "zz-bad")
        damage(Path(models.location, "versions") / "zz-bad")
    assert worker.run(idle_timeout_s=0.3) == ExitCode.OK
    assert worker.processor.model is not None
    assert worker.processor.model.version == first  # the previous model kept serving
    assert sample(metrics, "anomaly_model_load_failures_total", model="default") == 1
    assert sample(metrics, "anomaly_records_total", outcome="scored") > 0


def test_unreachable_brokers_exit_with_their_code(store: Path) -> None:
    def no_broker(_: WorkerSettings) -> FakeSource:
        raise BrokerUnavailableError("cannot create the consumer: no brokers")

    metrics = Metrics(CollectorRegistry())
    worker = Worker(settings(store), metrics, no_broker, lambda s: FakeSink(), serve_http=False)
    assert worker.run(idle_timeout_s=5) == ExitCode.BROKER_UNAVAILABLE


def test_the_kafka_clients_repeats_are_held_back_and_counted() -> None:
    now = [0.0]
    repeats = Repeats(every_s=60, clock=lambda: now[0])

    def passed(name: str, message: str) -> str | None:
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, message, ("dlq",), None)
        return record.getMessage() if repeats.filter(record) else None

    flood = "Topic %s not found in cluster metadata"
    assert passed("kafka.cluster", flood) == "Topic dlq not found in cluster metadata"
    for _ in range(10):
        now[0] += 0.1
        assert passed("kafka.cluster", flood) is None
        assert passed("worker.runner", flood) is not None  # the worker's own lines all pass
    assert passed("kafka.cluster", "Topic %s is not authorized for this client") is not None
    now[0] = 61.0
    assert passed("kafka.cluster", flood) == (
        "Topic dlq not found in cluster metadata (and 10 times more in 61 s)"
    )
    assert passed("kafka.cluster", flood) is None
