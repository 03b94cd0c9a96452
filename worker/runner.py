"""The worker's loop: poll -> settle the previous commit -> process -> publish -> flush ->
send the commit, until told to stop. The commit's round trip to the group coordinator runs
while the next batch is polled, not in the loop's time.

Signal handlers only set a flag, checked between batches, so the batch in hand is always
finished (published, flushed, committed and its commit answered) before the worker leaves
the group and exits 0. A second SIGINT exits at once. `run()` also stops by itself after
`max_batches` batches or `idle_timeout_s` without records, which is how tests drive the real
loop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType
from typing import Protocol

from anomaly.model.graph import set_threads
from anomaly.records import SourceRecord
from worker.checkpoint import Handover
from worker.errors import (
    CommitError,
    ExitCode,
    FatalError,
    InputUnreadableError,
    PublishError,
    TopicMissingError,
)
from worker.health import Health, HealthServer
from worker.metrics import Metrics
from worker.observe import observe_batch
from worker.outbound import Outbound
from worker.pipeline import BatchProcessor, BatchStats
from worker.reload import ModelWatchers
from worker.settings import WorkerSettings

log = logging.getLogger(__name__)


class Source(Protocol):
    """Where batches come from, which partitions changed hands, and where offsets are committed
    with the state of each partition's assets (see kafka_io): `commit` sends them, `settle`
    waits for the answer (CommitError: not committed, and the next call tries again)."""

    def poll(self, timeout_ms: int, max_records: int) -> Sequence[SourceRecord]: ...
    def handover(self) -> Handover | None: ...
    def calendar(self) -> Sequence[tuple[bytes | None, bytes | None]]: ...
    def commit(
        self, offsets: Mapping[tuple[str, int], int], states: Mapping[tuple[str, int], str]
    ) -> None: ...
    def settle(self) -> None: ...
    def assigned(self) -> bool: ...
    def keeps_state(self) -> bool: ...
    def connected(self) -> bool: ...
    def lag(self) -> dict[tuple[str, int], int]: ...
    def keep_alive(self) -> None: ...
    def close(self) -> None: ...


class Sink(Protocol):
    """Where alert events and dead letters go; `publish` returns once all are acknowledged;
    `partitions` is a topic's partition count (None: the topic is missing after `timeout_s`;
    a broker that creates topics on first use creates it)."""

    def publish(self, messages: Sequence[Outbound]) -> None: ...
    def partitions(self, topic: str, timeout_s: float) -> int | None: ...
    def close(self) -> None: ...


def _kafka_source(settings: WorkerSettings) -> Source:
    from worker.kafka_io import KafkaSource

    return KafkaSource(settings)


def _kafka_sink(settings: WorkerSettings) -> Sink:
    from worker.kafka_sink import KafkaSink

    return KafkaSink(settings)


class Worker:
    """One worker process: the model watcher, the batch processor, Kafka I/O and the probes."""

    def __init__(
        self,
        settings: WorkerSettings,
        metrics: Metrics | None = None,
        source: Callable[[WorkerSettings], Source] = _kafka_source,
        sink: Callable[[WorkerSettings], Sink] = _kafka_sink,
        serve_http: bool = True,
    ) -> None:
        self.settings = settings
        # Before any model loads: one thread scores a batch of 500 in well under a ms; more
        # spin between batches and take the CPU the Kafka client needs.
        set_threads(settings.score_threads)
        self.metrics = metrics or Metrics()
        self.health = Health(settings.http.liveness_timeout_s)
        # readiness has one source, read at each scrape as at each probe
        self.metrics.ready.set_function(lambda: float(self.health.ready))
        self.watchers = ModelWatchers(
            settings.store.path, settings.models.names, settings.store.reload_interval_s,
            self.metrics,
        )  # fmt: skip
        self.processor = BatchProcessor(
            settings.topics, settings.batch, settings.alerts, sensors=settings.sensors,
            routes=settings.models, layout=settings.input, incidents=settings.incidents.rules(),
            area_field=settings.incidents.area_field,
        )  # fmt: skip
        # counted at a scrape from the processor's state, not kept by hand nor every batch
        p, m = self.processor, self.metrics
        m.open_episodes.set_function(lambda: p.open_episodes)
        m.sensors_silent.set_function(lambda: p.silent)
        m.assets_stopped.set_function(lambda: p.stopped_assets)
        m.incidents_open.set_function(lambda: p.incidents.announced)
        alerts = settings.alerts
        m.alarms.limit, m.alarms.linger_s = alerts.explain_assets, alerts.explain_linger_s
        self._make_source, self._make_sink = source, sink
        self._serve_http = serve_http
        self.http: HealthServer | None = None
        self._stop = threading.Event()
        self._interrupts = 0
        self._told_no_state = False
        self._partitions: dict[str, int] = {}  # of each topic found at start
        self._told_missing = False
        self._source: Source | None = None
        self._sink: Sink | None = None
        self._topics_due = 0.0  # when the topics must exist (set once the producer is made)
        self._idle_since = 0.0
        self._committing: tuple[Mapping[tuple[str, int], int], bool] | None = None  # sent last

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return (safe from any thread)."""
        self._stop.set()

    def run(self, max_batches: int | None = None, idle_timeout_s: float | None = None) -> ExitCode:
        """Run until stopped, `max_batches` batches, or `idle_timeout_s` without records."""
        restore = self._install_signal_handlers()
        if self._serve_http:
            self._serve()
        batches, self._idle_since = 0, time.monotonic()
        try:
            while not self._stop.is_set():
                self.health.beat()
                connected = self._connect()
                if connected is not None:
                    if self._batch(*connected):
                        batches, self._idle_since = batches + 1, time.monotonic()
                        if max_batches is not None and batches >= max_batches:
                            break
                elif self.health.model_loaded:
                    continue  # connecting: no idle time counts meanwhile
                if idle_timeout_s is not None and time.monotonic() - self._idle_since >= (
                    idle_timeout_s
                ):
                    break
            if self._source is not None:
                self._settle(self._source)
            log.info("stopping after %d batches: offsets committed, leaving the group", batches)
            return ExitCode.OK
        except FatalError as exc:
            if isinstance(exc, InputUnreadableError):
                self.metrics.unreadable_batches.inc()
            in_batch = isinstance(exc, PublishError | CommitError | InputUnreadableError)
            after = "; the batch was not committed and will be read again" if in_batch else ""
            log.error("fatal: %s%s", exc, after)
            return exc.exit_code
        finally:
            self.health.partitions_assigned = False
            self.health.brokers_reachable = lambda: True
            for closeable in (self._source, self._sink):
                if closeable is not None:
                    try:
                        closeable.close()
                    except Exception:
                        log.exception("error while closing %s", type(closeable).__name__)
            if self.http is not None:
                self.http.stop()
            restore()

    def _serve(self) -> None:
        http = self.settings.http
        self.http = HealthServer(http.host, http.port, self.metrics.registry, self.health)
        self.http.start()
        log.info("metrics and probes on port %d: /metrics /livez /readyz", self.http.port)

    def _connect(self) -> tuple[Source, Sink] | None:
        """One step towards polling, each call: the models loaded (in turn, swapped in when
        a new version is published), the producer made, the topics found, the consumer made.
        The consumer and the producer once all are there."""
        for name, artifact in self.watchers.poll():
            self.processor.set_model(artifact, name)
        self.health.model_loaded = self.watchers.all_loaded
        self.health.store_unavailable = self.watchers.unavailable
        if not self.health.model_loaded:
            self._stop.wait(min(self.settings.store.reload_interval_s, 1.0))
            return None
        if self._sink is None:
            self._sink = self._make_sink(self.settings)  # closed in `run` if the next fails
            self._topics_due = time.monotonic() + self.settings.topics.wait_s
            return None
        if self._source is None:
            if self._topics_exist(self._sink, self._topics_due):
                self._source = self._make_source(self.settings)
                self.health.brokers_reachable = self._source.connected
                self._idle_since = time.monotonic()
            return None
        return self._source, self._sink

    def _batch(self, source: Source, sink: Sink) -> bool:
        """Poll one batch and see it through to its commit, sent; False when nothing came.

        The commit is answered while the next batch is polled: it is settled (confirmed, or
        tried again synchronously) after that poll, before anything else, so a batch is logged
        processed only once the batch before it is committed, and a rebalance sees this
        worker's commits done."""
        settings = self.settings
        started = time.perf_counter()
        try:
            records = source.poll(settings.batch.max_wait_ms, settings.batch.size)
        except InputUnreadableError:
            self._settle(source)  # the batch before it is good: its commit answered first
            raise
        poll_s = time.perf_counter() - started
        settle_s = self._settle(source)
        self._read_calendar(source)
        handover = source.handover()
        self.health.partitions_assigned = source.assigned()
        if not records and handover is None:
            return False
        result = self.processor.process(records, handover)
        if handover is not None:
            self._handed_over(handover, result.stats)
        if records and log.isEnabledFor(logging.DEBUG):  # what the crash tests account with
            spans: dict[str, list[int]] = {}  # partition -> [first offset, next offset]
            for record in records:
                span = spans.setdefault(f"{record.topic}/{record.partition}", [record.offset, 0])
                span[1] = record.offset + 1
            log.debug("batch processed", extra={"offsets": spans})
        publish_s = self._publish(result.messages, sink, source)
        started = time.perf_counter()
        budget = settings.kafka.commit_metadata_max_bytes if source.keeps_state() else 0
        states, unsaved = self.processor.checkpoints(result.offsets, budget)
        source.commit(result.offsets, states)
        self._committing = (result.offsets, budget > 0)
        commit_s = settle_s + time.perf_counter() - started
        self.metrics.checkpoint_assets.labels("unsaved").inc(unsaved)
        if not records:
            return False
        stages = {"poll": poll_s, "decode": result.stats.decode_s, "score": result.stats.score_s,
                  "publish": publish_s, "commit": commit_s}  # fmt: skip
        observe_batch(self.metrics, result.stats, len(records), stages, source.lag(),
                      len(self.processor.assets))  # fmt: skip
        return True

    def _read_calendar(self, source: Source) -> None:
        """The calendar's new messages into the processor's calendar (anomaly/calendar.py); an
        entry it cannot read is logged and counted, and the calendar goes on without it."""
        calendar = self.processor.calendar
        for refused in calendar.apply_all(source.calendar()):
            log.warning("calendar entry refused: %s", refused)
            self.metrics.calendar_errors.inc()
        shelves = [(s.asset_id, s.by, s.reason, s.until.timestamp())
                   for s in calendar.shelved(time.time())]  # fmt: skip
        self.metrics.show_calendar(len(calendar.windows), shelves)

    def _settle(self, source: Source) -> float:
        """The last commit sent, answered (tried again while the brokers are away); the
        seconds it waited. Assets whose state the broker refused with it count as unsaved."""
        if self._committing is None:
            return 0.0
        started = time.perf_counter()
        offsets, with_state = self._committing
        self._deliver("committing the batch", source.settle, source)
        self._committing = None
        if with_state and not source.keeps_state():  # refused with this very commit: none saved
            self.metrics.checkpoint_assets.labels("unsaved").inc(
                self.processor.checkpoints(offsets, 0)[1]
            )
        return time.perf_counter() - started

    def _publish(self, messages: Sequence[Outbound], sink: Sink, source: Source) -> float:
        """Publish a batch's messages, sending again those not acknowledged; the seconds."""
        started = time.perf_counter()
        pending = messages

        def publish() -> None:
            nonlocal pending
            try:
                sink.publish(pending)
            except PublishError as exc:  # next time, only those not acknowledged
                pending = exc.pending or pending
                raise

        self._deliver("publishing the batch's alerts and dead letters", publish, source)
        return time.perf_counter() - started

    def _deliver(self, what: str, attempt: Callable[[], None], source: Source) -> None:
        """Publish or commit. When the brokers do not answer, try again (not ready meanwhile,
        still a member of the group) until they do or `outage_timeout_s` has passed; then
        the error ends the worker."""
        deadline = time.monotonic() + self.settings.kafka.outage_timeout_s
        backoff = 0.1  # doubling to 1 s between attempts
        while True:
            try:
                attempt()
            except (PublishError, CommitError) as exc:
                if time.monotonic() >= deadline or self._stop.is_set():
                    raise
                if self.health.retrying is None:
                    log.warning("%s failed, trying again for up to %.0f s: %s", what,
                                self.settings.kafka.outage_timeout_s, exc)  # fmt: skip
                self.health.retrying = f"{what} failed, trying again: {exc}"
                self.health.beat()  # waiting for the brokers is not a stalled loop
                source.keep_alive()  # no record is read meanwhile
                self._stop.wait(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(1.0, 2 * backoff)
                continue
            if self.health.retrying is not None:
                log.info("%s succeeded: the brokers answer again", what)
                self.health.retrying = None
            return

    def _topics_exist(self, sink: Sink, due: float) -> bool:
        """Whether the input, alerts and dead-letter topics exist; while some do not, the
        worker is not ready and names them, once in the log; TopicMissingError once `due`
        has passed. Asked by name, so a cluster that creates topics on first use does."""
        topics = self.settings.topics
        missing = []
        for name in dict.fromkeys((topics.input, topics.alerts, topics.dead_letters)):
            if name not in self._partitions:
                count = sink.partitions(name, timeout_s=1.0)
                if count is None:
                    missing.append(name)
                else:
                    self._partitions[name] = count
        self.health.topics_missing = tuple(missing)
        if not missing:
            log.info("topics found: input %s (%d partitions), alerts %s, dead letters %s",
                     topics.input, self._partitions[topics.input], topics.alerts,
                     topics.dead_letters)  # fmt: skip
            return True
        why = (f"{', '.join(missing)} (these brokers do not create topics on first use: "
               "create them; docs/operations.md, 'Topics, partitions and replicas')")  # fmt: skip
        if time.monotonic() >= due:
            raise TopicMissingError(f"topics missing after {topics.wait_s:g} s: {why}")
        if not self._told_missing:
            self._told_missing = True
            log.warning("waiting up to %g s for topics missing on the cluster: %s",
                        topics.wait_s, why)  # fmt: skip
        self._stop.wait(min(0.5, max(0.0, due - time.monotonic())))
        return False

    def _handed_over(self, handover: Handover, stats: BatchStats) -> None:
        def names(tps: Iterable[tuple[str, int]]) -> str:
            return ",".join(f"{topic}/{partition}" for topic, partition in sorted(tps)) or "-"

        log.info(
            "partitions moved: lost %s (%d assets forgotten), gained %s (%d assets' alert "
            "state restored)",
            names(handover.lost),
            stats.released,
            names(handover.gained),
            stats.restored,
        )
        for (topic, partition), why in stats.unreadable:
            log.warning("state saved with %s/%d not restored: %s", topic, partition, why)
        if any(text is None for text in handover.gained.values()) and not self._told_no_state:
            self._told_no_state = True
            log.info("no alert state was saved with some gained partitions (new partitions, "
                     "or a broker that keeps no commit metadata)")  # fmt: skip
        self.metrics.checkpoint_assets.labels("restored").inc(stats.restored)
        self.metrics.checkpoint_assets.labels("released").inc(stats.released)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if signum == signal.SIGINT:
                self._interrupts += 1
                if self._interrupts > 1:
                    os._exit(ExitCode.INTERRUPTED)
            log.info("%s: draining (finish the batch, commit, leave the group)",
                     signal.Signals(signum).name)  # fmt: skip
            self._stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        return restore
