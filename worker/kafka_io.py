"""The only module that touches kafka-python: the consumer, the producer and topic creation.

Records are read as raw bytes (no deserializer in the client) with auto-commit off; offsets
are committed explicitly, after the batch's messages were acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from worker.errors import BrokerUnavailableError, CommitError, PublishError
from worker.pipeline import Outbound, SourceRecord
from worker.settings import KafkaSettings, WorkerSettings

log = logging.getLogger(__name__)


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
    """The worker's consumer: joins the group, polls batches, commits offsets."""

    def __init__(self, settings: WorkerSettings) -> None:
        try:
            self.consumer = make_consumer(
                settings.kafka, settings.topics.group, max_poll_records=settings.batch.size
            )
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot create the consumer: {exc!r}") from exc
        self.consumer.subscribe([settings.topics.input])

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        """Up to `max_records` records, in offset order within each partition."""
        batches = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return [record for records in batches.values() for record in records]

    def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit the next offset to read of each partition; CommitError if it fails."""
        if not offsets:
            return
        try:
            self.consumer.commit(
                {
                    TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
                    for (topic, partition), offset in offsets.items()
                }
            )
        except KafkaError as exc:
            raise CommitError(f"offset commit failed: {exc!r}") from exc

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

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


class KafkaSink:
    """The worker's producer: publishes a batch's messages and waits for every ack."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.timeout_s = settings.kafka.flush_timeout_s
        try:
            self.producer = make_producer(settings.kafka)
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot create the producer: {exc!r}") from exc

    def publish(self, messages: Sequence[Outbound]) -> None:
        """Send all, flush, and raise PublishError unless every message was acknowledged."""
        if not messages:
            return
        try:
            futures = [self.producer.send(m.topic, key=m.key, value=m.value) for m in messages]
            self.producer.flush(timeout=self.timeout_s)
        except Exception as exc:  # whatever the client raises, the batch was not published
            raise PublishError(f"publishing {len(messages)} messages failed: {exc!r}") from exc
        for future in futures:
            if not future.is_done:
                raise PublishError(f"no ack within {self.timeout_s} s for {len(messages)} messages")
            if future.failed():
                raise PublishError(f"the broker refused a message: {future.exception!r}")

    def close(self) -> None:
        self.producer.close(timeout=self.timeout_s)


class TopicReader:
    """Reads every partition of a topic from the beginning, outside any group (demo, tests)."""

    def __init__(self, kafka: KafkaSettings, topic: str) -> None:
        self.consumer = make_consumer(kafka, None)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.consumer.seek_to_beginning()

    def poll(self, timeout_ms: int = 200) -> list[SourceRecord]:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        return [record for records in batches.values() for record in records]

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
