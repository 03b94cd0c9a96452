"""Following the alerts and feedback topics into the page's index, outside any group: from
`history_days` back at start, then as they grow. Ready once it has read what the topics held
when it started; a broker that goes away is tried again, from where it was."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from anomaly.kafka import LoginRefusedError, UnreadableBatchError, make_consumer, poll_records
from review.episodes import EpisodeIndex
from review.settings import ENV_PREFIX, ReviewSettings
from training.kafka_range import KafkaUnavailableError, plan_range

log = logging.getLogger(__name__)
RETRY_S = 5.0


class Follower:
    """Feeds `index` from the topics in a thread of its own (`start`, `stop`)."""

    def __init__(self, settings: ReviewSettings, index: EpisodeIndex) -> None:
        self._settings, self._index = settings, index
        self.ready = threading.Event()
        self.problem: str | None = "starting"
        self._stop = threading.Event()
        self._positions: dict[TopicPartition, int] = {}
        self._thread = threading.Thread(target=self._run, name="follow-topics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except (KafkaUnavailableError, KafkaError, UnreadableBatchError) as exc:
                self.problem = str(exc)
                log.warning("following the topics failed (%s); again in %g s", exc, RETRY_S)
                self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        settings = self._settings
        try:  # a refused login named by this page's own variables (REVIEW_KAFKA__...)
            consumer: KafkaConsumer = make_consumer(settings.kafka, None, max_poll_records=2000)
        except LoginRefusedError as exc:
            raise KafkaUnavailableError(exc.advice(ENV_PREFIX)) from exc
        try:
            self._read(consumer)
        finally:
            consumer.close(autocommit=False)

    def _read(self, consumer: KafkaConsumer) -> None:
        settings = self._settings
        topics = (settings.topics.alerts, settings.topics.feedback)
        since_ms = int((time.time() - settings.history_days * 86_400) * 1000)
        ends: dict[TopicPartition, int] = {}
        for topic in topics:
            planned = plan_range(settings.kafka, topic, since_ms, None, 10**12)
            for p, end in planned.ends.items():
                tp = TopicPartition(topic, p)
                ends[tp] = end
                self._positions.setdefault(tp, planned.starts[p])
        consumer.assign(list(ends))
        for tp in ends:
            consumer.seek(tp, self._positions[tp])
        self.problem = None
        while not self._stop.is_set():
            for record in poll_records(consumer, 500, 2000):
                self._take(record.topic, record.value)
                self._positions[TopicPartition(record.topic, record.partition)] = record.offset + 1
            if not self.ready.is_set() and all(
                consumer.position(tp) >= end for tp, end in ends.items()
            ):
                log.info("read %d episodes of the last %g days; following",
                         len(self._index), settings.history_days)  # fmt: skip
                self.ready.set()

    def _take(self, topic: str, value: bytes | None) -> None:
        try:
            message: Any = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if topic == self._settings.topics.feedback:
            self._index.verdict(message)
        else:
            self._index.event(message)
