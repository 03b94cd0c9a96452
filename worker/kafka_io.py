"""The worker's Kafka I/O: the consumer that polls and commits, the producer that publishes.

Records are read as raw bytes (no deserializer in the client) with auto-commit off; offsets
are committed explicitly, after the batch's messages were acknowledged. Client settings,
codecs and the decoding of a poll come from `anomaly.kafka`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.errors import (
    AuthorizationError,
    CommitFailedError,
    InvalidSessionTimeoutError,
    KafkaError,
    OffsetMetadataTooLargeError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata, TopicPartition

from anomaly.kafka import (
    LoginRefusedError,
    UnreadableBatchError,
    make_consumer,
    poll_records,
)
from anomaly.records import SourceRecord
from worker.checkpoint import Handover
from worker.errors import (
    BrokerUnavailableError,
    CommitError,
    InputUnreadableError,
    NotAuthorizedError,
    RefusedSettingError,
)
from worker.settings import ENV_PREFIX, WorkerSettings

log = logging.getLogger(__name__)


class KafkaSource:
    """The worker's consumer: joins the group, polls batches, commits offsets with the state
    of each partition's assets (worker/checkpoint.py), and says which partitions changed hands.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        try:
            self.consumer = make_consumer(
                settings.kafka, settings.topics.group, max_poll_records=settings.batch.size
            )
        except LoginRefusedError as exc:
            raise login_refused(exc) from exc
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot create the consumer: {exc!r}") from exc
        self.timeout_ms = settings.kafka.request_timeout_ms
        # One commit attempt ends while the group still counts this member: kafka-python
        # leaves the group when two polls are further apart than max_poll_interval_ms (on
        # brokers before 0.10.1, the session timeout: 10 s against a 30 s request timeout),
        # and a commit refused then would pass for a rebalance. A failed attempt is tried
        # again after a keep-alive poll, until WORKER_KAFKA__OUTAGE_TIMEOUT_S (exit 6).
        poll_interval_ms = int(self.consumer.config["max_poll_interval_ms"])
        self.commit_timeout_ms = min(self.timeout_ms, poll_interval_ms // 2)
        self.session_timeout_s = settings.kafka.session_timeout_ms / 1000
        self._heartbeat: Any = None  # kafka-python's metric of the last heartbeat sent
        self._held: set[TopicPartition] = set()  # as of the last handover
        self._committed: dict[TopicPartition, int] = {}  # this worker's last commit of each
        self._pending: dict[TopicPartition, OffsetAndMetadata] | None = None  # sent, unsettled
        self._sent: Any = None  # kafka-python's future of the pending commit (None: not sent)
        self._rebalanced = False
        self._metadata_refused = False
        self.topic = settings.topics.input
        self._topic_known = False
        self.consumer.subscribe([self.topic], listener=_Rebalanced(self))
        self._calendar = CalendarFeed(settings)

    def calendar(self) -> list[tuple[bytes | None, bytes | None]]:
        """The calendar topic's messages since the last call (the whole topic at the first)."""
        return self._calendar.read()

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        """Up to `max_records` records, in offset order within each partition."""
        try:
            self._know_topic()
            return poll_records(self.consumer, timeout_ms, max_records)
        except UnreadableBatchError as exc:
            raise InputUnreadableError(str(exc)) from exc
        except AuthorizationError as exc:
            raise refused("reading the input topic in its group", exc) from exc
        except InvalidSessionTimeoutError as exc:
            raise RefusedSettingError(
                f"the group coordinator refuses WORKER_KAFKA__SESSION_TIMEOUT_MS="
                f"{self.session_timeout_s * 1000:.0f}: outside the brokers' "
                "group.min.session.timeout.ms and group.max.session.timeout.ms"
            ) from exc
        except KafkaError as exc:  # not one the client tries again by itself
            raise BrokerUnavailableError(f"reading the input topic failed: {exc!r}") from exc

    def _know_topic(self) -> None:
        """Fetch the input topic's partitions before the first join.

        kafka-python 3.0.12 loses a join when the poll that started it times out while the
        leader's assignment catches up with newer metadata: the join completes, but no later
        poll takes its result (the member then holds nothing, sends no heartbeat and is
        dropped from the group: a worker idle for good, seen in about one start in ten on
        Kafka 4). A consumer whose metadata lacks the topic when it first joins assigns
        nothing, then rejoins when the metadata comes: exactly that case. Knowing the topic
        first, the first join assigns its partitions and is the only one."""
        if not self._topic_known:
            self._topic_known = bool(self.consumer.partitions_for_topic(self.topic))

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
        """Send the next offset to read of each partition with its state, without waiting for
        the coordinator's answer: `settle` waits for it (the loop polls the next batch
        meanwhile). The commit before it must be settled."""
        assert self._pending is None, "the previous commit was not settled"
        if not offsets:
            return
        commit = {
            TopicPartition(topic, partition): OffsetAndMetadata(
                offset, "" if self._metadata_refused else states.get((topic, partition), ""), -1
            )
            for (topic, partition), offset in offsets.items()
        }
        self._pending = commit
        # Sent at once only to a coordinator the client knows: otherwise kafka-python's future
        # is its coordinator lookup's, not the commit's, and `settle` commits synchronously.
        # (`_coordinator`: kafka-python 3.0's, pinned below 3.1 in pyproject.toml.)
        if not self.consumer._coordinator.coordinator_unknown():
            self._sent = self.consumer.commit_async(commit)

    def settle(self) -> None:
        """Wait for the answer to the commit sent last: done when it was committed, or when the
        group refused it (it rebalanced meanwhile: whoever holds each partition now reads on
        from its last commit). Otherwise (no answer in time, a coordinator away, the state
        refused as too long) it is committed again synchronously; CommitError if that fails,
        and the next call tries again."""
        commit, sent = self._pending, self._sent
        if commit is None:
            return
        self._sent = None
        if sent is not None:
            done = threading.Event()
            sent.add_both(lambda _: done.set())
            done.wait(self.commit_timeout_ms / 1000)
            if sent.succeeded():
                self._settled(commit)
                return
            if isinstance(sent.exception, CommitFailedError | RebalanceInProgressError):
                self._refused_by_group(sent.exception)
                return
        held = self.consumer.assignment()  # a partition lost meanwhile is its new holder's
        kept = {tp: o for tp, o in commit.items() if tp in held}
        if kept:
            self._commit_now(kept)
        else:
            self._pending = None

    def _commit_now(self, commit: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """The synchronous commit; a broker that refuses the state as too long gets the
        offsets without it."""
        try:
            try:
                self.consumer.commit(commit, timeout_ms=self.commit_timeout_ms)
            except OffsetMetadataTooLargeError:
                self._metadata_refused = True
                log.error(
                    "the broker refuses the alert state saved with the offsets as too long: "
                    "lower WORKER_KAFKA__COMMIT_METADATA_MAX_BYTES to the broker's "
                    "offset.metadata.max.bytes; committing offsets without it from now on"
                )
                commit = {tp: OffsetAndMetadata(o.offset, "", -1) for tp, o in commit.items()}
                self.consumer.commit(commit, timeout_ms=self.commit_timeout_ms)
        except AuthorizationError as exc:
            raise refused("committing offsets for its group", exc) from exc
        except (CommitFailedError, RebalanceInProgressError) as exc:
            self._refused_by_group(exc)
            return
        except KafkaError as exc:
            raise CommitError(f"offset commit failed: {exc!r}") from exc
        self._settled(commit)

    def _settled(self, commit: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        self._committed.update((tp, o.offset) for tp, o in commit.items())
        self._pending = None

    def _refused_by_group(self, exc: BaseException) -> None:
        """Not a failure of this worker: the group moved on without it (a session that
        expired, a rebalance). The batch's alerts are out; whoever holds each partition now
        reads on from its last commit, with the state committed there."""
        log.warning("offsets not committed, the group rebalanced meanwhile: %s", exc)
        self._pending = None

    def assigned(self) -> bool:
        return bool(self.consumer.assignment())

    def keeps_state(self) -> bool:
        """False once the broker refused the alert state as too long: offsets go without it."""
        return not self._metadata_refused

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
        """Records between the position and the high-water mark of each assigned partition,
        as the last fetch answered it (true on Tansu too, whose end-offset query is not)."""
        out = {}
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is not None:
                out[(tp.topic, tp.partition)] = max(0, end - self.consumer.position(tp))
        return out

    def keep_alive(self) -> None:
        """Stay in the group while a batch's publish or commit is tried again: a poll with
        every partition paused reads nothing but tells the coordinator this member lives
        (without it, the member leaves the group once max.poll.interval.ms has passed)."""
        held = self.consumer.assignment()
        self.consumer.pause(*held)
        try:
            self.consumer.poll(timeout_ms=0)
        except KafkaError as exc:  # the brokers are away: the retry says so
            log.debug("keep-alive poll failed: %r", exc)
        finally:
            self.consumer.resume(*(self.consumer.assignment() & held))

    def close(self) -> None:
        """Leave the group (offsets were committed per batch; nothing is auto-committed)."""
        self._calendar.close()
        self.consumer.close(autocommit=False)


class CalendarFeed:
    """The calendar topic (compacted: maintenance windows and shelves, anomaly/calendar.py),
    outside any group: read whole from its start at the first call, waiting until it is read
    to its end (so the first batch is judged with every entry), then followed without
    waiting. A topic that does not exist yet is looked for again every `RECHECK_S`; meanwhile,
    and while the brokers fail to answer it, the calendar stays as it was."""

    RECHECK_S = 30.0

    def __init__(self, settings: WorkerSettings) -> None:
        self.kafka, self.topic = settings.kafka, settings.topics.calendar
        self.wait_s = settings.kafka.request_timeout_ms / 1000
        self.consumer: Any = None
        self._looked = -math.inf
        self._told = False

    def read(self) -> list[tuple[bytes | None, bytes | None]]:
        try:
            if self.consumer is not None:
                return self._poll(0)
            if time.monotonic() - self._looked < self.RECHECK_S:
                return []
            self._looked = time.monotonic()
            return self._start()
        except KafkaError as exc:
            log.warning("the calendar topic %s could not be read (%r): windows and shelves as "
                        "they were", self.topic, exc)  # fmt: skip
            return []

    def _start(self) -> list[tuple[bytes | None, bytes | None]]:
        consumer = make_consumer(self.kafka, None)
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            consumer.close(autocommit=False)
            if not self._told:
                log.warning(
                    "the calendar topic %s does not exist: no maintenance window or shelf "
                    "holds an alarm back (create it compacted: docs/operations.md)", self.topic,
                )  # fmt: skip
                self._told = True
            return []
        parts = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        self.consumer = consumer
        read: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            read += self._poll(200)
            if all(_read_to_end(consumer, tp) for tp in parts):
                break
        else:
            log.warning("the calendar topic %s was not read to its end in %.0f s: the rest "
                        "follows", self.topic, self.wait_s)  # fmt: skip
        log.info("calendar: %d messages read from %s", len(read), self.topic)
        return read

    def _poll(self, timeout_ms: int) -> list[tuple[bytes | None, bytes | None]]:
        batches = self.consumer.poll(timeout_ms=timeout_ms)
        return [(r.key, r.value) for tp in sorted(batches) for r in batches[tp]]

    def close(self) -> None:
        if self.consumer is not None:
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


def _read_to_end(consumer: Any, tp: TopicPartition) -> bool:
    """Whether the consumer has read `tp` up to the high-water mark its last fetch saw."""
    mark = consumer.highwater(tp)
    return mark is not None and consumer.position(tp) >= mark


def refused(what: str, exc: Exception) -> NotAuthorizedError:
    """The error that ends the worker when the brokers refuse its principal `what`."""
    return NotAuthorizedError(
        f"the brokers refuse this worker's principal {what}: {exc!r}; grant its ACLs "
        "(docs/operations.md, 'Kafka 4 with TLS and SCRAM')"
    )


def login_refused(exc: LoginRefusedError) -> BrokerUnavailableError:
    """The error that ends the worker when the brokers refuse its login (exit 7): not brokers
    that are away, so it names the settings to check rather than waiting."""
    return BrokerUnavailableError(exc.advice(ENV_PREFIX))
