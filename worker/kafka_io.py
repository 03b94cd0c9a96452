"""The only module that touches kafka-python: the consumer, the producer and topic creation.

Records are read as raw bytes (no deserializer in the client) with auto-commit off; offsets
are committed explicitly, after the batch's messages were acknowledged.

Every compression codec Kafka defines is read (gzip, snappy, lz4, zstd): `check_codecs` proves
it at start, and a batch the client still cannot decode ends the reader with
UnreadableBatchError naming where it lies (`poll_records`), never with a bare traceback.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import (
    CommitFailedError,
    CorruptRecordError,
    KafkaError,
    OffsetMetadataTooLargeError,
    TopicAlreadyExistsError,
    UnsupportedCodecError,
)
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import OffsetAndMetadata, TopicPartition

from worker.checkpoint import Handover
from worker.errors import (
    BrokerUnavailableError,
    CodecUnavailableError,
    CommitError,
    PublishError,
    UnreadableBatchError,
)
from worker.pipeline import Outbound, SourceRecord
from worker.settings import KafkaSettings, WorkerSettings

log = logging.getLogger(__name__)


# Kafka's compression codecs: their id in a batch's attributes, the message formats (magic)
# a broker may serve them in, and what gives kafka-python each one. Kafka 0.8-0.9 frame lz4
# with a wrong header checksum (magic 0), which kafka-python mends with xxhash.
CODECS: dict[str, tuple[int, tuple[int, ...], str]] = {
    "gzip": (1, (0, 1, 2), "Python's zlib"),
    "snappy": (2, (0, 1, 2), "the python-snappy package"),
    "lz4": (3, (0, 1, 2), "the lz4 and xxhash packages"),
    "zstd": (4, (2,), "the zstandard package"),
}
_PROBE = b'{"asset_id": "codec-check", "values": {"x": 1.0}}' * 4


def check_codecs() -> None:
    """Write and read back a record batch in every codec and message format, as the consumer
    reads them; CodecUnavailableError naming each codec that fails and what provides it."""
    failed = []
    for name, (codec, formats, provider) in CODECS.items():
        for magic in formats:
            try:
                builder = MemoryRecordsBuilder(magic, codec, batch_size=1 << 16)
                builder.append(1_700_000_000_000, b"key", _PROBE, [])
                builder.close()
                batch = MemoryRecords(builder.buffer()).next_batch()
                values = [record.value for record in batch] if batch is not None else []
                if values != [_PROBE]:
                    raise ValueError(f"read back {len(values)} records, not the one written")
            except Exception as exc:
                failed.append(f"{name} (message format v{magic}: {exc}; needs {provider})")
                break
    if failed:
        raise CodecUnavailableError(
            "cannot read batches compressed with " + "; ".join(failed) + ": install the "
            "project's dependencies (pip install sensor-anomaly) in this environment"
        )


def poll_records(consumer: KafkaConsumer, timeout_ms: int, max_records: int) -> list[SourceRecord]:
    """One poll's records, in offset order within each partition; UnreadableBatchError when
    the client cannot decode a fetched batch (records of other partitions taken before it
    come out first: kafka-python raises at the next poll)."""
    try:
        batches = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
    except (UnsupportedCodecError, CorruptRecordError) as exc:
        raise _unreadable(consumer, exc) from exc
    except KafkaError:
        raise
    except Exception as exc:  # a decompressor's own error on a damaged batch (zlib, lz4...)
        raise _unreadable(consumer, exc) from exc
    return [record for records in batches.values() for record in records]


def _unreadable(consumer: KafkaConsumer, exc: Exception) -> UnreadableBatchError:
    """Where the batch that `exc` came from lies: the partition whose records the client was
    unpacking (kafka-python keeps it while the batch is not drained) and the next offset to
    read there, which is inside that batch. Unknown: the position of every partition."""
    pending = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
    tp = getattr(pending, "topic_partition", None)
    if isinstance(tp, TopicPartition):
        offset = consumer.position(tp)
        where = f"{tp.topic}/{tp.partition} at offset {offset}"
        return UnreadableBatchError(
            f"cannot read the batch of {where}: {exc!r}; no record of it can be scored or "
            "dead-lettered, so the worker stops rather than skip it (docs/operations.md, "
            "'An unreadable batch')",
            tp.topic,
            tp.partition,
            offset,
        )
    positions = {f"{t.topic}/{t.partition}": consumer.position(t) for t in consumer.assignment()}
    return UnreadableBatchError(
        f"cannot read a fetched batch: {exc!r} (positions {positions}); the worker stops "
        "rather than skip it (docs/operations.md, 'An unreadable batch')",
        None,
        None,
        None,
    )


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection settings shared by consumer, producer and admin client."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    optional = {
        "ssl_cafile": kafka.ssl_cafile,
        "ssl_certfile": kafka.ssl_certfile,
        "ssl_keyfile": kafka.ssl_keyfile,
        "ssl_password": kafka.ssl_password.get_secret_value() if kafka.ssl_password else None,
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_username,
        "sasl_plain_password": (
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        ),
        "api_version": kafka.api_version_tuple,
    }
    config.update({k: str(v) if k.endswith("file") else v for k, v in optional.items() if v})
    return config


def make_producer(kafka: KafkaSettings, **overrides: Any) -> KafkaProducer:
    """A producer that waits for all in-sync replicas (idempotent where the broker can)."""
    version = kafka.api_version_tuple
    config = {
        **client_config(kafka),
        "acks": "all",
        "linger_ms": 5,
        "max_block_ms": int(kafka.flush_timeout_s * 1000),
        "enable_idempotence": version is None or version >= (0, 11),
        **overrides,
    }
    return KafkaProducer(**config)


def make_consumer(kafka: KafkaSettings, group: str | None, **overrides: Any) -> KafkaConsumer:
    """A raw-bytes consumer with auto-commit off."""
    config = {
        **client_config(kafka),
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": kafka.auto_offset_reset,
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": max(100, kafka.session_timeout_ms // 3),
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        **overrides,
    }
    return KafkaConsumer(**config)


def create_topics(kafka: KafkaSettings, partitions: Mapping[str, int]) -> None:
    """Create topics that do not exist yet (for the demo and tests; production uses its own)."""
    admin = KafkaAdminClient(**client_config(kafka))
    try:
        for name, count in partitions.items():
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, count, 1)])
    finally:
        admin.close()


class KafkaSource:
    """The worker's consumer: joins the group, polls batches, commits offsets with the state
    of each partition's assets (worker/checkpoint.py), and says which partitions changed hands.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        try:
            self.consumer = make_consumer(
                settings.kafka, settings.topics.group, max_poll_records=settings.batch.size
            )
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot create the consumer: {exc!r}") from exc
        self.timeout_ms = settings.kafka.request_timeout_ms
        self.session_timeout_s = settings.kafka.session_timeout_ms / 1000
        self._heartbeat: Any = None  # kafka-python's metric of the last heartbeat sent
        self._held: set[TopicPartition] = set()  # as of the last handover
        self._committed: dict[TopicPartition, int] = {}  # this worker's last commit of each
        self._rebalanced = False
        self._metadata_refused = False
        self.consumer.subscribe([settings.topics.input], listener=_Rebalanced(self))

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        """Up to `max_records` records, in offset order within each partition."""
        return poll_records(self.consumer, timeout_ms, max_records)

    def handover(self) -> Handover | None:
        """The partitions lost and gained since the last call (None: nothing moved).

        A partition kept through a rebalance counts as gained (and lost) when someone else
        committed it meanwhile: this worker's state of it is then out of date.
        """
        if not self._rebalanced:
            return None
        now = set(self.consumer.assignment())
        gained: dict[tuple[str, int], str | None] = {}
        for tp in sorted(now):
            try:
                committed = self.consumer.committed(tp, metadata=True, timeout_ms=self.timeout_ms)
            except KafkaError as exc:
                raise BrokerUnavailableError(
                    f"cannot read the committed offset of {tp.topic}/{tp.partition}: {exc!r}"
                ) from exc
            offset = committed.offset if committed is not None else None
            if tp in self._held and offset == self._committed.get(tp):
                continue  # kept, and nobody else moved it on: the state here is current
            gained[(tp.topic, tp.partition)] = committed.metadata if committed else None
        lost = (self._held - now) | {tp for tp in self._held if (tp.topic, tp.partition) in gained}
        self._held, self._rebalanced = now, False
        self._committed = {tp: o for tp, o in self._committed.items() if tp in now}
        if not lost and not gained:
            return None  # a rebalance that left this worker's partitions where they were
        return Handover(frozenset((tp.topic, tp.partition) for tp in lost), gained)

    def commit(
        self, offsets: Mapping[tuple[str, int], int], states: Mapping[tuple[str, int], str]
    ) -> None:
        """Commit the next offset to read of each partition with its state; CommitError if
        it fails. A broker that refuses the state as too long gets the offsets without it."""
        if not offsets:
            return
        commit = {
            TopicPartition(topic, partition): OffsetAndMetadata(
                offset, "" if self._metadata_refused else states.get((topic, partition), ""), -1
            )
            for (topic, partition), offset in offsets.items()
        }
        try:
            try:
                self.consumer.commit(commit)
            except OffsetMetadataTooLargeError:
                self._metadata_refused = True
                log.error(
                    "the broker refuses the alert state saved with the offsets as too long: "
                    "lower WORKER_KAFKA__COMMIT_METADATA_MAX_BYTES to the broker's "
                    "offset.metadata.max.bytes; committing offsets without it from now on"
                )
                self.consumer.commit({tp: OffsetAndMetadata(o.offset, "", -1)
                                      for tp, o in commit.items()})  # fmt: skip
        except CommitFailedError as exc:
            # Not a failure of this worker: the group moved on without it (a session that
            # expired, a rebalance). The batch's alerts are out; whoever holds each partition
            # now reads on from its last commit, with the state committed there.
            log.warning("offsets not committed, the group rebalanced meanwhile: %s", exc)
            return
        except KafkaError as exc:
            raise CommitError(f"offset commit failed: {exc!r}") from exc
        self._committed.update((tp, o.offset) for tp, o in commit.items())

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def connected(self) -> bool:
        """False once no heartbeat has gone to the group coordinator for a session timeout:
        the brokers are away (kafka-python keeps the assignment through an outage)."""
        if self._heartbeat is None:  # found once: building every metric costs 0.1 ms
            for name, metric in (self.consumer.metrics(raw=True) or {}).items():
                if (name.group, name.name) == (
                    "consumer-coordinator-metrics",
                    "last-heartbeat-seconds-ago",
                ):
                    self._heartbeat = metric
                    break
            else:
                return True
        ago = float(self._heartbeat.value())
        # infinite: no heartbeat since the group was joined (the first comes a third of a
        # session timeout later), and joining is contact enough
        return math.isinf(ago) or ago <= self.session_timeout_s

    def lag(self) -> dict[tuple[str, int], int]:
        """Records between the position and the last known end of each assigned partition."""
        out = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is not None:
                out[(tp.topic, tp.partition)] = max(0, end - self.consumer.position(tp))
        return out

    def close(self) -> None:
        """Leave the group (offsets were committed per batch; nothing is auto-committed)."""
        self.consumer.close(autocommit=False)


class _Rebalanced:
    """Notes that the group rebalanced; `KafkaSource.handover` works out what moved (outside
    the client's callback, where it can ask the broker for the committed offsets). Registered
    as a ConsumerRebalanceListener, the type kafka-python checks for."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def on_partitions_revoked(self, revoked: object) -> None:
        pass

    def on_partitions_lost(self, lost: object) -> None:
        """Taken away without a revocation (the member was dropped from the group)."""

    def on_partitions_assigned(self, assigned: object) -> None:
        self.source._rebalanced = True


ConsumerRebalanceListener.register(_Rebalanced)


class KafkaSink:
    """The worker's producer: publishes a batch's messages and waits for every ack."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.timeout_s = settings.kafka.flush_timeout_s
        try:
            self.producer = make_producer(settings.kafka)
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot create the producer: {exc!r}") from exc

    def publish(self, messages: Sequence[Outbound]) -> None:
        """Send all and wait for the acks; PublishError, holding the messages still
        unacknowledged, unless every one was acknowledged."""
        if not messages:
            return
        futures = []
        try:
            for m in messages:
                futures.append(self.producer.send(m.topic, key=m.key, value=m.value))
            self.producer.flush(timeout=self.timeout_s)
        except Exception as exc:  # whatever the client raises, these were not all published
            sent = len(futures)
            pending = [m for m, f in zip(messages[:sent], futures, strict=True) if not _acked(f)]
            pending += messages[sent:]
            raise PublishError(
                f"publishing {len(messages)} messages failed: {exc!r}", pending
            ) from exc
        pending = [m for m, f in zip(messages, futures, strict=True) if not _acked(f)]
        if pending:
            failed = next((f.exception for f in futures if f.is_done and f.failed()), None)
            why = (
                f"the broker refused: {failed!r}" if failed else f"no ack within {self.timeout_s} s"
            )
            raise PublishError(f"{len(pending)} of {len(messages)} messages unpublished: {why}",
                               pending)  # fmt: skip

    def close(self) -> None:
        self.producer.close(timeout=self.timeout_s)


def _acked(future: Any) -> bool:
    return bool(future.is_done and future.succeeded())


class TopicReader:
    """Reads every partition of a topic from the beginning, outside any group (demo, tests)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.consumer = make_consumer(kafka, None)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 200) -> list[SourceRecord]:
        return poll_records(self.consumer, timeout_ms, 500)

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def committed_total(kafka: KafkaSettings, group: str, topic: str) -> int:
    """The offsets `group` has committed on `topic`, summed over partitions (0 where none).

    Compare it with the number of records produced, not with end offsets: Tansu 0.6 answers
    a "latest offset" query with the base offset of the last batch, short of the real end.
    """
    consumer = make_consumer(kafka, group)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.committed(tp) or 0 for tp in parts)
    finally:
        consumer.close(autocommit=False)


@dataclass
class TopicRange:
    """The offsets of a topic to read for a time range, fixed when the reader starts.

    `by_broker_time` is True when the broker resolved the range's start (and end) from its
    record timestamps; otherwise (Apache Kafka before 0.10.1) the reader starts at the
    beginning and the caller must keep only records whose own timestamp lies in the range.
    """

    topic: str
    starts: dict[int, int]
    ends: dict[int, int]
    by_broker_time: bool

    @property
    def size(self) -> int:
        return sum(self.ends[p] - self.starts[p] for p in self.ends)


def plan_range(
    kafka: KafkaSettings, topic: str, start_ms: int, end_ms: int | None, max_records: int
) -> TopicRange:
    """Decide what to read of `topic` between two broker times (end None: up to now).

    End offsets are captured now, so reading always terminates however fast records keep
    arriving. When the range holds more than `max_records`, each partition starts later, in
    proportion to its share, so that the latest `max_records` records are read.
    """
    try:
        consumer = make_consumer(kafka, None)
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot reach {kafka.bootstrap_servers}: {exc!r}") from exc
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not parts:
            raise BrokerUnavailableError(f"topic {topic!r} does not exist or has no partitions")
        ends = _true_ends(consumer, parts)
        beginnings = consumer.beginning_offsets(parts)
        try:
            found = consumer.offsets_for_times(dict.fromkeys(parts, start_ms))
            starts = {tp: found[tp].offset if found[tp] else ends[tp] for tp in parts}
            if end_ms is not None:
                found = consumer.offsets_for_times(dict.fromkeys(parts, end_ms))
                ends = {tp: min(ends[tp], found[tp].offset) if found[tp] else ends[tp]
                        for tp in parts}  # fmt: skip
            by_broker_time = True
        except (KafkaError, NotImplementedError) as exc:
            log.info("broker has no offset-for-time lookup (%r): scanning by record time", exc)
            starts, by_broker_time = dict(beginnings), False
        planned = TopicRange(
            topic,
            {tp.partition: max(starts[tp], beginnings[tp]) for tp in parts},
            {tp.partition: ends[tp] for tp in parts},
            by_broker_time,
        )
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot plan the read of {topic!r}: {exc!r}") from exc
    finally:
        consumer.close(autocommit=False)
    total = planned.size
    if total > max_records:
        for p, end in planned.ends.items():
            share = (end - planned.starts[p]) * max_records // total
            planned.starts[p] = end - share
    return planned


def read_planned(kafka: KafkaSettings, planned: TopicRange) -> Iterator[SourceRecord]:
    """Every record of the plan, in offset order within each partition, outside any group."""
    consumer = make_consumer(kafka, None, max_poll_records=2000)
    try:
        todo = {p for p in planned.ends if planned.ends[p] > planned.starts[p]}
        parts = {p: TopicPartition(planned.topic, p) for p in todo}
        consumer.assign(list(parts.values()))
        for p, tp in parts.items():
            consumer.seek(tp, planned.starts[p])
        while todo:
            for record in poll_records(consumer, 500, 2000):
                if record.offset < planned.ends[record.partition]:
                    yield record
            for p in list(todo):
                if consumer.position(parts[p]) >= planned.ends[p]:
                    todo.discard(p)
                    consumer.pause(parts[p])
    finally:
        consumer.close(autocommit=False)


def _true_ends(consumer: KafkaConsumer, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
    """End offsets now. Tansu answers the end-offset query with the last batch's base offset;
    a fetch from there reports the real high-water mark, so take the larger of the two."""
    ends = dict(consumer.end_offsets(parts))
    consumer.assign(parts)
    for tp in parts:
        consumer.seek(tp, ends[tp])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
        marks = {tp: consumer.highwater(tp) for tp in parts}
        if all(mark is not None for mark in marks.values()):
            return {tp: max(ends[tp], marks[tp] or 0) for tp in parts}
    return ends
