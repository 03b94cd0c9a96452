"""The worker's producer: a batch's alert events and dead letters handed to the client
(`KafkaSink.send`), and every ack checked (`Delivery.wait`) before the batch's offsets are
committed (worker/runner.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka.errors import AuthorizationError, KafkaError, KafkaTimeoutError

from anomaly.kafka import LoginRefusedError, login_refusal, make_producer
from worker.errors import BrokerUnavailableError, PublishError
from worker.kafka_io import login_refused, refused
from worker.outbound import Outbound
from worker.settings import WorkerSettings


class KafkaSink:
    """The worker's producer: publishes a batch's messages and waits for every ack."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.timeout_s = settings.kafka.flush_timeout_s
        try:
            self.producer = make_producer(settings.kafka)
        except LoginRefusedError as exc:
            raise login_refused(exc) from exc
        except Exception as exc:
            raise BrokerUnavailableError(f"cannot create the producer: {exc!r}") from exc

    def send(self, messages: Sequence[Outbound]) -> Delivery:
        """Hand every message to the client without waiting for the acks (`Delivery.wait`
        waits for them). A message the client refuses at once fails the delivery."""
        futures: list[Any] = []
        try:
            for m in messages:
                futures.append(self.producer.send(m.topic, key=m.key, value=m.value))
        except AuthorizationError as exc:
            failing = messages[len(futures)]  # the send that raised
            return Delivery(self, messages, futures, refused(f"writing {failing.topic}", exc))
        except Exception as exc:  # whatever the client raises, these were not all published
            sent = len(futures)
            pending = [m for m, f in zip(messages[:sent], futures, strict=True) if not _acked(f)]
            error = PublishError(
                f"publishing {len(messages)} messages failed (sending to "
                f"{messages[sent].topic}): {exc!r}",
                pending + list(messages[sent:]),
            )
            return Delivery(self, messages, futures, error)
        return Delivery(self, messages, futures)

    def publish(self, messages: Sequence[Outbound]) -> None:
        """Send all and wait for the acks (`send`, then `Delivery.wait`)."""
        self.send(messages).wait()

    def partitions(self, topic: str, timeout_s: float) -> int | None:
        """The topic's partition count, asking the brokers by name for up to `timeout_s`
        (a cluster that creates topics on first use creates it); None if it is missing."""
        try:
            # the producer's own metadata wait, bounded here rather than by max_block_ms
            found = self.producer._wait_on_metadata(topic, int(timeout_s * 1000))
        except KafkaTimeoutError as exc:
            refusal = login_refusal(self.producer)  # told the brokers' version, it met them now
            if refusal is not None:
                raise login_refused(refusal) from exc
            return None
        except AuthorizationError as exc:
            raise refused(f"describing {topic}", exc) from exc
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"cannot read the metadata of topic {topic}: {exc!r}"
            ) from exc
        return len(found) if found else None

    def close(self) -> None:
        self.producer.close(timeout=self.timeout_s)


class Delivery:
    """A batch's messages handed to the producer: `wait` returns once every one is
    acknowledged, or raises PublishError holding those still unacknowledged (or the error the
    client raised while they were handed over)."""

    def __init__(
        self,
        sink: KafkaSink,
        messages: Sequence[Outbound],
        futures: Sequence[Any],
        error: Exception | None = None,
    ) -> None:
        self.sink, self.messages, self.futures, self.error = sink, messages, futures, error

    def wait(self) -> None:
        messages, futures = self.messages, self.futures
        if self.error is not None:
            raise self.error
        if not messages:
            return
        timeout_s = self.sink.timeout_s
        try:
            self.sink.producer.flush(timeout=timeout_s)
        except Exception as exc:  # the flush gave up: say where the acks did not come from
            pending = [m for m, f in zip(messages, futures, strict=True) if not _acked(f)]
            where = f" ({len(pending)} unacknowledged by {_topics(pending)})" if pending else ""
            raise PublishError(
                f"publishing {len(messages)} messages failed{where}: {exc!r}", pending
            ) from exc
        pending = [m for m, f in zip(messages, futures, strict=True) if not _acked(f)]
        if pending:
            for m, f in zip(messages, futures, strict=True):
                if f.is_done and isinstance(f.exception, AuthorizationError):
                    raise refused(f"writing {m.topic}", f.exception)
            failed = next((f.exception for f in futures if f.is_done and f.failed()), None)
            why = f"the broker refused: {failed!r}" if failed else f"no ack within {timeout_s} s"
            raise PublishError(f"{len(pending)} of {len(messages)} messages unpublished: {why}",
                               pending)  # fmt: skip


def _acked(future: Any) -> bool:
    return bool(future.is_done and future.succeeded())


def _topics(messages: Sequence[Outbound]) -> str:
    return ", ".join(sorted({m.topic for m in messages}))
