"""A bounded range of a topic, read outside any consumer group (the training job's input).

The range is planned once (`plan_range`: start and end offsets from the broker's
offset-for-time lookup where it exists, end offsets captured now) and then read to its end
(`read_planned`), so reading always terminates however fast records keep arriving.

A lookup's answer is checked against the record it points at: Kafka answers the first offset
whose broker time is at least the one asked, so that record cannot be older. Tansu 0.6
answers every lookup with offset 0; an answer whose record is older than the time asked is
not credible, and the offset is then found by bisection over the partition's records' broker
times (which assumes they grow with the offset, as the broker's own lookup does).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import TopicPartition

from anomaly.kafka import LoginRefusedError, make_consumer, make_producer, poll_records
from anomaly.records import SourceRecord
from anomaly.settings import KafkaSettings

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
_Client = TypeVar("_Client", KafkaConsumer, KafkaProducer)


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
    consumer = reached(make_consumer, kafka, None)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        if not parts:
            raise KafkaUnavailableError(f"topic {topic!r} does not exist or has no partitions")
        ends = _true_ends(consumer, parts)
        beginnings = consumer.beginning_offsets(parts)
        try:
            starts = _offsets_at(consumer, parts, start_ms, beginnings, ends)
            if end_ms is not None:
                ends = _offsets_at(consumer, parts, end_ms, starts, ends)
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


def reached(make: Callable[..., _Client], kafka: KafkaSettings, *args: Any, **kw: Any) -> _Client:
    """A client made by `make` (anomaly.kafka's make_consumer or make_producer), or
    KafkaUnavailableError: a refused login names the job's own variables to check
    (TRAINING_KAFKA__...), other failures the brokers that could not be reached."""
    try:
        return make(kafka, *args, **kw)
    except LoginRefusedError as exc:
        raise KafkaUnavailableError(exc.advice("TRAINING_")) from exc
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot reach {kafka.bootstrap_servers}: {exc!r}") from exc


def write_one(
    kafka: KafkaSettings,
    topic: str,
    key: bytes,
    value: bytes | None,
    missing: str,
    wait_s: float = 10,
) -> None:
    """Publish one message and wait for its ack; KafkaUnavailableError saying `missing` when
    the topic has no partitions after `wait_s` (asked by name: a cluster that creates topics
    on first use creates it), or why the message could not be written."""
    producer = reached(make_producer, kafka, max_block_ms=int(wait_s * 1000))
    try:
        try:
            producer.partitions_for(topic)
        except KafkaTimeoutError as exc:
            raise KafkaUnavailableError(f"{missing}: no partitions after {wait_s:g} s") from exc
        producer.send(topic, key=key, value=value).get(timeout=30)
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"a message could not be written to {topic!r}: {exc!r}"
        ) from exc
    finally:
        producer.close()


def read_planned(kafka: KafkaSettings, planned: TopicRange) -> Iterator[SourceRecord]:
    """Every record of the plan, in offset order within each partition, outside any group."""
    consumer = reached(make_consumer, kafka, None, max_poll_records=2000)
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


def _offsets_at(
    consumer: KafkaConsumer,
    parts: list[TopicPartition],
    at_ms: int,
    lows: Offsets,
    highs: Offsets,
) -> Offsets:
    """Each partition's first offset in [low, high) whose record has a broker time of at least
    `at_ms` (high when none has): the broker's lookup, where the record it points at is not
    older than `at_ms`; else found by bisection (Tansu 0.6 answers every lookup with 0)."""
    found = consumer.offsets_for_times(dict.fromkeys(parts, at_ms))
    answers = {
        tp: min(max(found[tp].offset, lows[tp]), highs[tp]) if found[tp] else highs[tp]
        for tp in parts
    }
    pointed = _first_records(consumer, {tp: o for tp, o in answers.items() if o < highs[tp]}, highs)
    doubtful = {
        tp: first[0] + 1
        for tp, first in pointed.items()
        if first is not None and 0 <= first[1] < at_ms
    }
    if doubtful:
        log.info(
            "the broker's time lookup points at records older than the time asked on %d "
            "partitions: finding the offsets by their records' broker times", len(doubtful),
        )  # fmt: skip
    return answers | _bisect(consumer, at_ms, doubtful, highs)


def _bisect(consumer: KafkaConsumer, at_ms: int, lows: Offsets, highs: Offsets) -> Offsets:
    """The first offset in [low, high) of each partition whose record's broker time is at
    least `at_ms` (high when none is), halving each partition's interval at every round."""
    lo, hi = dict(lows), {tp: highs[tp] for tp in lows}
    while todo := {tp: (lo[tp] + hi[tp]) // 2 for tp in lo if lo[tp] < hi[tp]}:
        firsts = _first_records(consumer, todo, highs)
        for tp, mid in todo.items():
            first = firsts[tp]
            if first is None or first[1] < 0 or first[1] >= at_ms:
                hi[tp] = mid  # nothing older from here on (an unknown time: read it)
            else:
                lo[tp] = first[0] + 1
    return lo


def _first_records(
    consumer: KafkaConsumer, wanted: Offsets, highs: Offsets
) -> dict[TopicPartition, tuple[int, int] | None]:
    """(offset, broker time) of the first record at or after each wanted offset and before
    the partition's high offset; None where there is none (only markers of transactions).
    KafkaUnavailableError when a partition yields nothing within the request timeout."""
    out: dict[TopicPartition, tuple[int, int] | None] = {}
    if not wanted:
        return out
    timeout_s = consumer.config["request_timeout_ms"] / 1000
    consumer.assign(list(wanted))
    for tp, offset in wanted.items():
        consumer.seek(tp, offset)
    deadline = time.monotonic() + timeout_s
    while len(out) < len(wanted):
        if time.monotonic() > deadline:
            missing = sorted(f"{tp.topic}/{tp.partition} at offset {wanted[tp]}"
                             for tp in wanted if tp not in out)  # fmt: skip
            raise KafkaUnavailableError(
                f"no record fetched within {timeout_s:g} s from {', '.join(missing)}"
            )
        for record in poll_records(consumer, 200, 500):
            tp = TopicPartition(record.topic, record.partition)
            if tp in wanted and tp not in out and record.offset >= wanted[tp]:
                stamp = getattr(record, "timestamp", None)
                out[tp] = None if record.offset >= highs[tp] else (
                    record.offset, -1 if stamp is None else int(stamp))  # fmt: skip
        for tp in wanted:
            if tp not in out and consumer.position(tp) >= highs[tp]:
                out[tp] = None
    return {tp: out[tp] for tp in wanted}


@dataclass(frozen=True)
class Around:
    """Records of one partition around one of its records: that record's broker time
    (`first_ms`), and the records read, in offset order."""

    first_ms: int
    records: list[SourceRecord]


READ_S = 30  # the longest one read around an episode may wait for the brokers


def read_around(
    kafka: KafkaSettings, topic: str, partition: int, first: int, before_ms: int,
    after_ms: int | None,
) -> Around | None:  # fmt: skip
    """The records of one partition from `before_ms` before the broker time of its record at
    offset `first` to `after_ms` after it (None: to the partition's end), with one consumer
    outside any group; None when the partition no longer holds `first`. The start is the
    brokers' time lookup (at most `first`; a broker that answers 0, Tansu 0.6, makes it a
    scan from there); the read stops at the first record past the end by more than a minute
    (producers' clocks differ), or at the partition's end (the fetches' high-water mark)."""
    # large fetches: the span is read in one or two; no wait at the partition's end
    consumer = reached(
        make_consumer, kafka, None, max_poll_records=10_000, fetch_max_wait_ms=50,
        max_partition_fetch_bytes=16 * 2**20, fetch_max_bytes=64 * 2**20,
    )  # fmt: skip
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        opening = _record_at(consumer, tp, first)
        if opening is None:
            return None
        first_ms = _stamp(opening)
        try:
            found = consumer.offsets_for_times({tp: max(0, first_ms - before_ms)})[tp]
            start = min(found.offset, first) if found is not None else first
        except (KafkaError, NotImplementedError, ValueError):  # no lookup (Kafka 0.9)
            start = consumer.beginning_offsets([tp])[tp]
        stop = None if after_ms is None or first_ms < 0 else first_ms + after_ms + 60_000
        consumer.seek(tp, start)
        records: list[SourceRecord] = []
        deadline = time.monotonic() + READ_S
        while time.monotonic() < deadline:
            batch = poll_records(consumer, 500, 10_000)
            for record in batch:
                if stop is not None and _stamp(record) > stop:
                    return Around(first_ms, records)
                records.append(record)
            mark = consumer.highwater(tp)
            if not batch and mark is not None and consumer.position(tp) >= mark:
                break
        return Around(first_ms, records)
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot read {topic}/{partition}: {exc!r}") from exc
    finally:
        consumer.close(autocommit=False)


def _record_at(consumer: KafkaConsumer, tp: TopicPartition, offset: int) -> Any:
    """The partition's record at `offset`; None when it holds none there (expired, or not yet
    written)."""
    consumer.seek(tp, offset)
    deadline = time.monotonic() + READ_S
    while time.monotonic() < deadline:
        batch = poll_records(consumer, 500, 1)
        if batch:
            return batch[0] if batch[0].offset == offset else None
        mark = consumer.highwater(tp)
        if mark is not None and consumer.position(tp) >= mark:
            return None
    return None


def _stamp(record: Any) -> int:
    """A record's broker time (ms); -1 where the broker keeps none (Kafka 0.9)."""
    stamp = getattr(record, "timestamp", None)
    return -1 if stamp is None else int(stamp)
