"""Topic helpers for the demo, the tests and the benchmarks (production creates its own
topics and reads them through the worker and the training job)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.structs import TopicPartition

from anomaly.kafka import client_config, make_consumer, poll_records
from anomaly.records import SourceRecord
from anomaly.settings import KafkaSettings


def create_topics(
    kafka: KafkaSettings, partitions: Mapping[str, int], compacted: Iterable[str] = ()
) -> None:
    """Create topics that do not exist yet (for the demo and tests; production uses its own);
    those named in `compacted` keep the last message per key (the calendar)."""
    compact = set(compacted)
    admin = KafkaAdminClient(**client_config(kafka))
    try:
        for name, count in partitions.items():
            configs = {"cleanup.policy": "compact"} if name in compact else None
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, count, 1, topic_configs=configs)])
    finally:
        admin.close()


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
