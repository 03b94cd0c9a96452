"""A bounded range of a topic, read outside any consumer group (the training job's input).

The range is planned once (`plan_range`: start offsets from the broker's offset-for-time
lookup where it exists, end offsets captured now) and then read to its end
(`read_planned`), so reading always terminates however fast records keep arriving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from anomaly.kafka import make_consumer, poll_records
from anomaly.records import SourceRecord
from anomaly.settings import KafkaSettings

log = logging.getLogger(__name__)


class KafkaUnavailableError(Exception):
    """The brokers cannot be reached, or the topic does not exist."""


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
        raise KafkaUnavailableError(f"cannot reach {kafka.bootstrap_servers}: {exc!r}") from exc
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not parts:
            raise KafkaUnavailableError(f"topic {topic!r} does not exist or has no partitions")
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
        raise KafkaUnavailableError(f"cannot plan the read of {topic!r}: {exc!r}") from exc
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
