"""The worker's producer: a batch's alert events and dead letters published, every ack
checked, before the batch's offsets are committed (worker/runner.py)."""

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
        except AuthorizationError as exc:
            failing = messages[min(len(futures), len(messages) - 1)]  # the send that raised
            raise refused(f"writing {failing.topic}", exc) from exc
        except Exception as exc:  # whatever the client raises, these were not all published
            sent = len(futures)
            pending = [m for m, f in zip(messages[:sent], futures, strict=True) if not _acked(f)]
            pending += messages[sent:]
            where = f" (sending to {messages[sent].topic})" if sent < len(messages) else ""
            if not where and pending:  # the flush gave up: say where the acks did not come from
                where = f" ({len(pending)} unacknowledged by {_topics(pending)})"
            raise PublishError(
                f"publishing {len(messages)} messages failed{where}: {exc!r}", pending
            ) from exc
        pending = [m for m, f in zip(messages, futures, strict=True) if not _acked(f)]
        if pending:
            for m, f in zip(messages, futures, strict=True):
                if f.is_done and isinstance(f.exception, AuthorizationError):
                    raise refused(f"writing {m.topic}", f.exception)
            failed = next((f.exception for f in futures if f.is_done and f.failed()), None)
            why = (
                f"the broker refused: {failed!r}" if failed else f"no ack within {self.timeout_s} s"
            )
            raise PublishError(f"{len(pending)} of {len(messages)} messages unpublished: {why}",
                               pending)  # fmt: skip

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


def _acked(future: Any) -> bool:
    return bool(future.is_done and future.succeeded())


def _topics(messages: Sequence[Outbound]) -> str:
    return ", ".join(sorted({m.topic for m in messages}))
