"""Exit codes of the README's lists, each from `anomaly-worker` or `anomaly-train` in a
process of its own against a real broker, with what it says: the status, and its own words
naming the cause.

Here: the worker's drain on SIGINT (0) and second SIGINT (130), a refused artifact in
`check-model` (4), an unacknowledged publish (5), a refused commit (6), brokers nobody
answers for (7), a batch the client cannot read (9), and the training job's missing input
topic (5); beside them, a loop stalled on a read that never returns, which only `/livez` can
report. The other codes come from real processes in other modules (docs/testing.md, "Which
test produces each exit code").
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kafka.record.default_records
from kafka import KafkaAdminClient
from kafka.producer.future import FutureRecordMetadata

from anomaly.kafka import client_config, make_producer
from anomaly.model import ModelStore
from devtools.local_broker import KAFKA09_HOME, LocalBroker, free_port
from devtools.simulator import Fleet
from devtools.topics import TopicReader, committed_total, create_topics
from tests.support.http import get
from tests.support.kafka import fresh, produce, settings_on
from tests.support.process import TRAIN, Process, run_worker, worker_env
from tests.support.waiting import wait_until
from training.cli import ExitCode as TrainingExit
from worker.errors import ExitCode
from worker.settings import WorkerSettings

BAD = b"{oops"  # a record that is not JSON: dead-lettered, so its batch has a message to publish


def test_the_first_sigint_drains_the_batch_in_hand_and_leaves_the_group(
    kafka4: LocalBroker, store: Path, tmp_path: Path
) -> None:
    """SIGINT while records keep arriving (every tenth malformed): the worker finishes the
    batch in hand, publishes it, commits it, leaves the group and exits 0. What it committed
    and what it published agree exactly: the dead letters of every record below the committed
    offsets are on the topic, and none of a record above them (a batch published but not
    committed would be read and published again by the next worker)."""
    settings = on_one_partition(kafka4, store)
    # a member that had not left would stay in the group for this long after its exit
    env = worker_env(settings, WORKER_KAFKA__SESSION_TIMEOUT_MS=60_000, WORKER_BATCH__SIZE=50)
    with Feed(settings) as feed, run_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: committed_total(settings.kafka, settings.topics.group,
                                           settings.topics.input) > 0, 90, "a first commit",
                   worker.state)  # fmt: skip
        worker.signal(signal.SIGINT)
        assert worker.wait() == ExitCode.OK, worker.state()
        sent = feed.stop()
    committed = committed_total(settings.kafka, settings.topics.group, settings.topics.input)
    assert 0 < committed < len(sent)  # stopped mid-stream
    malformed_below = sum(1 for offset, bad in sent if bad and offset < committed)
    assert malformed_below > 0
    assert len(read_all(settings, settings.topics.dead_letters)) == malformed_below
    assert worker.said("SIGINT: draining")
    assert worker.said("stopping after", "INFO")
    admin = KafkaAdminClient(**client_config(settings.kafka))
    try:
        group = admin.describe_groups([settings.topics.group])[settings.topics.group]
    finally:
        admin.close()
    assert group["members"] == []  # it left: nobody waits out its session timeout


def test_a_stalled_loop_fails_livez_and_a_second_sigint_exits_130(
    broker: LocalBroker, store: Path, tmp_path: Path
) -> None:
    """A read that never returns (the model store on a hard NFS mount whose server is gone:
    here its pointer becomes a FIFO nobody writes) stops the loop: `/livez` fails once it has
    not turned for WORKER_HTTP__LIVENESS_TIMEOUT_S, while `/metrics` still answers; a first
    SIGINT is taken (logged) but cannot drain; a second exits at once with 130."""
    settings = settings_on(broker, store)
    port = free_port()
    env = worker_env(settings, WORKER_HTTP__PORT=port, WORKER_HTTP__LIVENESS_TIMEOUT_S=1,
                     WORKER_STORE__RELOAD_INTERVAL_S=0.1)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with run_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: get(f"{base}/readyz") == (200, "ready\n"), 90, "ready", worker.state)
        assert get(f"{base}/livez") == (200, "ok\n")
        fifo = store / "current.fifo"
        os.mkfifo(fifo)
        fifo.replace(store / "current")  # the next look at the pointer blocks in open()
        wait_until(lambda: get(f"{base}/livez") == (503, "loop stalled\n"), 30,
                   "/livez failing", worker.state)  # fmt: skip
        assert get(f"{base}/metrics")[0] == 200  # the probes' thread is not the loop
        worker.signal(signal.SIGINT)
        worker.wait_said("SIGINT: draining")
        worker.signal(signal.SIGINT)
        assert worker.wait(60) == ExitCode.INTERRUPTED
    assert not worker.said("stopping after")  # it never got to drain


def test_dead_letters_unacknowledged_past_the_outage_timeout_exit_5(
    kafka4: LocalBroker, store: Path, tmp_path: Path
) -> None:
    """The dead-letter topic deleted under a running worker (a cluster that creates no
    topic on first use), then a malformed record: its publish is tried again for
    WORKER_KAFKA__OUTAGE_TIMEOUT_S, then the worker exits 5 naming the topic, its batch not
    committed."""
    settings = settings_on(kafka4, store)
    t = settings.topics
    n = produce(settings, Fleet(n_assets=3, seed=2).records(10))
    env = worker_env(settings, WORKER_KAFKA__OUTAGE_TIMEOUT_S=1, WORKER_KAFKA__FLUSH_TIMEOUT_S=1)
    with run_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: committed_total(settings.kafka, t.group, t.input) == n, 90,
                   f"{n} records committed", worker.state)  # fmt: skip
        delete_topic(settings, t.dead_letters)
        produce(settings, [(b"pump-00", BAD)])
        assert worker.wait() == ExitCode.PUBLISH_FAILED, worker.state()
    [fatal] = worker.said("fatal:", "ERROR")
    assert f"publishing 1 messages failed (1 unacknowledged by {t.dead_letters})" in fatal
    assert fatal.endswith("the batch was not committed and will be read again")
    assert committed_total(settings.kafka, t.group, t.input) == n


def test_an_offset_commit_refused_past_the_outage_timeout_exits_6(
    kafka09: LocalBroker, store: Path, tmp_path: Path
) -> None:
    """The group coordinator cannot store offsets while the input and alert topics stay
    writable: Apache Kafka 0.9 writes commits to its offsets topic waiting for every in-sync
    replica, and that topic is made to need two of its one (a cluster with a broker down).
    The commit is tried again for WORKER_KAFKA__OUTAGE_TIMEOUT_S, the worker still a member of
    its group between attempts (this broker drops a member that does not poll within its
    session timeout, shorter than the request timeout an attempt could take), then it exits
    6, the batch not committed."""
    client, topics = fresh(kafka09)  # its topics made on first use (0.9 has no admin API)
    settings = WorkerSettings(kafka=client, topics=topics, store={"path": store},
                              http={"port": 0, "host": "127.0.0.1"})  # fmt: skip
    t = settings.topics
    n = produce(settings, Fleet(n_assets=3, seed=2).records(10))
    env = worker_env(settings, WORKER_KAFKA__OUTAGE_TIMEOUT_S=7)
    with run_worker(env, tmp_path / "worker.log") as worker:
        wait_until(lambda: committed_total(settings.kafka, t.group, t.input) == n, 90,
                   f"{n} records committed", worker.state)  # fmt: skip
        with offsets_topic_needing_two_replicas(kafka09):
            produce(settings, Fleet(n_assets=3, seed=3).records(10))
            assert worker.wait() == ExitCode.COMMIT_FAILED, worker.state()
    assert worker.said("committing the batch failed, trying again for up to 7 s", "WARNING")
    assert not worker.said("the group rebalanced meanwhile")
    [fatal] = worker.said("fatal:", "ERROR")
    assert fatal.startswith("fatal: offset commit failed: ")
    assert fatal.endswith("the batch was not committed and will be read again")
    assert committed_total(settings.kafka, t.group, t.input) == n


def test_brokers_nobody_answers_for_at_start_exit_7(store: Path, tmp_path: Path) -> None:
    """A bootstrap address where nothing listens: exit 7 once WORKER_KAFKA__BOOTSTRAP_TIMEOUT_MS
    has passed, the log naming the address."""
    nowhere = f"127.0.0.1:{free_port()}"
    env = {"WORKER_KAFKA__BOOTSTRAP_SERVERS": nowhere, "WORKER_KAFKA__BOOTSTRAP_TIMEOUT_MS": "2000",
           "WORKER_STORE__PATH": str(store), "WORKER_HTTP__PORT": "0"}  # fmt: skip
    with run_worker(env, tmp_path / "worker.log") as worker:
        assert worker.wait() == ExitCode.BROKER_UNAVAILABLE, worker.state()
    [fatal] = worker.said("fatal:", "ERROR")
    assert "cannot create the producer" in fatal
    assert nowhere in fatal


def test_a_batch_the_client_cannot_read_exits_9_naming_its_place(
    broker: LocalBroker, store: Path, tmp_path: Path
) -> None:
    """A gzip batch whose stream is cut short (its CRC right: Tansu stores it as sent) after
    40 good records: the worker commits the 40, then exits 9 naming the batch's topic,
    partition and offset, without a traceback."""
    settings = settings_on(broker, store)
    t = settings.topics
    partition = produce_cut_gzip(settings, good=40, cut=10)
    with run_worker(worker_env(settings), tmp_path / "worker.log") as worker:
        assert worker.wait() == ExitCode.UNREADABLE_BATCH, worker.state()
    [fatal] = worker.said("fatal:", "ERROR")
    assert fatal.startswith(f"fatal: cannot read the batch of {t.input}/{partition} at offset 40")
    assert "the batch was not committed" in fatal
    assert "Traceback" not in worker.log.read_text()
    assert committed_total(settings.kafka, t.group, t.input) == 40


def test_check_model_refuses_a_truncated_artifact_with_exit_4(store: Path, tmp_path: Path) -> None:
    """`anomaly-worker check-model` loads the current version as the worker would: its weights
    cut short, it exits 4 naming the model, the version and the file."""
    version = ModelStore(store).current_version()
    assert version is not None
    weights = store / "versions" / version / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-100])
    env = {"WORKER_STORE__PATH": str(store)}
    with run_worker(env, tmp_path / "check.log", "check-model") as check:
        assert check.wait() == ExitCode.MODEL_REFUSED, check.state()
    [refused] = check.said("refused", "ERROR")
    assert refused.startswith("model default refused: ")
    assert f"{version}/weights.pt is corrupt or truncated" in refused


def test_the_training_job_exits_5_when_its_input_topic_is_missing(
    kafka4: LocalBroker, tmp_path: Path
) -> None:
    """`anomaly-train fit --source kafka` on a cluster without the input topic: exit 5 naming
    the topic, nothing published."""
    missing = fresh(kafka4)[1]["input"]
    env = {
        "TRAINING_KAFKA__BOOTSTRAP_SERVERS": kafka4.bootstrap,
        "TRAINING_TOPICS__INPUT": missing,
        "TRAINING_STORE__PATH": str(tmp_path / "store"),
    }
    with Process([TRAIN, "fit", "--source", "kafka"], env, tmp_path / "fit.log") as fit:
        assert fit.wait() == TrainingExit.KAFKA_ERROR, fit.state()
    said = fit.log.read_text()
    assert f"no model published: topic {missing!r} does not exist" in said
    assert ModelStore(tmp_path / "store").current_version() is None


# Helpers ------------------------------------------------------------------------------------


def on_one_partition(broker: LocalBroker, store: Path) -> WorkerSettings:
    """Fresh topics (one input partition: its offsets count the records) and group."""
    client, topics = fresh(broker)
    settings = WorkerSettings(kafka=client, topics=topics, store={"path": store},
                              http={"port": 0, "host": "127.0.0.1"})  # fmt: skip
    create_topics(settings.kafka, {topics["input"]: 1, topics["alerts"]: 1,
                                   topics["dead_letters"]: 1})  # fmt: skip
    return settings


class Feed:
    """The simulator's records produced from a thread at a steady pace until stopped, every
    tenth one malformed; `stop()` says where each landed: (offset, malformed)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.topic = settings.topics.input
        self.producer = make_producer(settings.kafka)
        self.sent: list[tuple[FutureRecordMetadata, bool]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for i, (key, value) in enumerate(Fleet(n_assets=6, seed=4).records(20_000)):
            if self._stop.is_set():
                return
            bad = i % 10 == 9
            self.sent.append((self.producer.send(self.topic, key=key, value=BAD if bad else value),
                              bad))  # fmt: skip
            if i % 20 == 19:
                self.producer.flush()
                self._stop.wait(0.02)  # paces the offered load; nothing waits on it

    def stop(self) -> list[tuple[int, bool]]:
        self._stop.set()
        self.thread.join(60)
        self.producer.flush()
        return [(future.get(30).offset, bad) for future, bad in self.sent]

    def __enter__(self) -> Feed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(60)
        self.producer.close()


def read_all(settings: WorkerSettings, topic: str) -> list[object]:
    """Every record of `topic` now (Apache Kafka 4: its end offsets are true)."""
    reader = TopicReader(settings.kafka, topic)
    consumer = reader.consumer
    ends = consumer.end_offsets(list(consumer.assignment()))
    out: list[object] = []

    def done() -> bool:
        out.extend(reader.poll(200))
        return all(consumer.position(tp) >= end for tp, end in ends.items())

    try:
        wait_until(done, 30, f"all of {topic}")
    finally:
        reader.close()
    return out


def delete_topic(settings: WorkerSettings, topic: str) -> None:
    admin = KafkaAdminClient(**client_config(settings.kafka))
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


@contextmanager
def offsets_topic_needing_two_replicas(kafka09: LocalBroker) -> Iterator[None]:
    """Apache Kafka 0.9's offsets topic set to need two in-sync replicas (it has one): every
    offset commit and group sync is refused meanwhile (NOT_ENOUGH_REPLICAS); set back after."""
    args = kafka09.processes[0].args
    assert isinstance(args, list)
    zookeeper = str(args[-1])  # zookeeper.properties, as start_kafka09 wrote it
    port = next(line.split("=", 1)[1] for line in Path(zookeeper).read_text().splitlines()
                if line.startswith("clientPort="))  # fmt: skip

    def config(*change: str) -> None:
        subprocess.run(
            [str(KAFKA09_HOME / "bin" / "kafka-run-class.sh"), "kafka.admin.ConfigCommand",
             "--zookeeper", f"127.0.0.1:{port}", "--alter", "--entity-type", "topics",
             "--entity-name", "__consumer_offsets", *change],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    config("--add-config", "min.insync.replicas=2")
    try:
        yield
    finally:
        config("--delete-config", "min.insync.replicas")


def produce_cut_gzip(settings: WorkerSettings, good: int, cut: int) -> int:
    """`good` records of one pump, then `cut` more in a gzip batch whose stream is cut short
    (kafka-python's encoder patched in this producer only: the worker's decoder is untouched);
    the partition they went to."""
    producer = make_producer(settings.kafka, compression_type="gzip", linger_ms=20)
    values = [value for _, value in Fleet(n_assets=1, seed=3).records(good)]
    futures = [producer.send(settings.topics.input, key=b"pump-00", value=v) for v in values]
    producer.flush()
    encode = kafka.record.default_records.gzip_encode
    try:
        kafka.record.default_records.gzip_encode = lambda data: encode(data)[:-12]  # type: ignore[assignment,unused-ignore]
        for value in values[:cut]:
            producer.send(settings.topics.input, key=b"pump-00", value=value)
        producer.flush()
    finally:
        kafka.record.default_records.gzip_encode = encode
    producer.close()
    return int(futures[0].get(30).partition)
